"""Activation ranges from calibration data -> per-tensor asymmetric int8 (scale, zero point).

As the TFLite converter: the range is widened to include 0 (so real zero is exactly representable, which
padding and ReLU rely on), scale = (max - min) / 255 stored as float32, zero_point = round(-128 - min / scale).
Two estimators: the observed min/max, and an MSE search that may clip outliers (tries shrunken ranges and keeps
the one with the least squared quantization error on the calibration values).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.round(x / self.scale) + self.zero_point, -128, 127)

    def fake_quant(self, x: torch.Tensor) -> torch.Tensor:
        return (self.quantize(x) - self.zero_point) * self.scale


def qparams_from_range(lo: float, hi: float) -> QParams:
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-8:  # a constant-zero tensor: any scale works; keep it tiny but valid
        hi = lo + 1e-8
    scale = float(np.float32((hi - lo) / 255.0))
    zero_point = int(np.clip(np.floor(-128 - lo / scale + 0.5), -128, 127))  # std::round: half away
    return QParams(scale, zero_point)


class RangeObserver:
    """Collects values of one tensor over calibration batches (a bounded sample for the MSE search)."""

    def __init__(self, method: str = "minmax", sample: int = 1 << 18, seed: int = 0):
        if method not in ("minmax", "mse"):
            raise ValueError(f"unknown activation range method {method!r}")
        self.method = method
        self.lo, self.hi = float("inf"), float("-inf")
        self.sample = sample
        self.values: list[torch.Tensor] = []
        self.gen = torch.Generator().manual_seed(seed)

    def observe(self, x: torch.Tensor) -> None:
        x = x.detach().float().reshape(-1)
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        if self.method == "mse":
            keep = min(x.numel(), self.sample // 8)
            self.values.append(x[torch.randint(0, x.numel(), (keep,), generator=self.gen)])

    def qparams(self) -> QParams:
        if self.method == "minmax" or not self.values:
            return qparams_from_range(self.lo, self.hi)
        v = torch.cat(self.values)
        best, best_err = None, float("inf")
        for frac in np.linspace(1.0, 0.5, 26):
            q = qparams_from_range(self.lo * frac, self.hi * frac)
            err = float(torch.mean((q.fake_quant(v) - v) ** 2))
            if err < best_err:
                best, best_err = q, err
        return best
