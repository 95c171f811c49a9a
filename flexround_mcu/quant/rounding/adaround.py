"""AdaRound (Nagel et al., 2020) with BRECQ's defaults: learn, per weight, whether to round down or up.

    W_hat = s * clip(floor(W / s) + h(V), qmin, qmax),   h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)

zeta = 1.1, gamma = -0.1 (the rectified sigmoid); V starts where h(V) equals the fractional part of W / s (so the
soft weight starts at the float weight, not at round to nearest). The regularizer
lambda * sum(1 - |2h - 1|^beta) pushes h to 0 or 1; it is off for the first 20 % of the iterations, then beta is
annealed linearly from 20 to 2 (lambda = 0.01). The grid s stays fixed. Hardened: floor(W / s) + [V >= 0].
"""
from __future__ import annotations

import torch
from torch import nn

from .base import WeightQuantizer

ZETA, GAMMA = 1.1, -0.1


class AdaRound(WeightQuantizer):
    learnable = True

    def __init__(self, weight: torch.Tensor, bits: int, per_channel: bool, grid: str = "mse",
                 depthwise: bool = False, reg_weight: float = 0.01, warmup: float = 0.2,
                 beta_start: float = 20.0, beta_end: float = 2.0):
        super().__init__(weight, bits, per_channel, grid, depthwise)
        s = self.scale_like(weight)
        rest = (weight / s - torch.floor(weight / s)).clamp(1e-6, 1 - 1e-6)
        self.V = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))
        self.reg_weight, self.warmup = reg_weight, warmup
        self.beta_start, self.beta_end = beta_start, beta_end
        self.soft = True

    def h(self) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.V) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def integers(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.clamp(torch.floor(w / self.scale_like(w)) + (self.V >= 0).float(), self.qmin, self.qmax)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.soft:
            return self.integers(w) * self.scale_like(w)
        s = self.scale_like(w)
        return torch.clamp(torch.floor(w / s) + self.h(), self.qmin, self.qmax) * s

    def regularization(self, progress: float) -> torch.Tensor | float:
        if progress < self.warmup:
            return 0.0
        t = (progress - self.warmup) / (1 - self.warmup)
        beta = self.beta_end + (self.beta_start - self.beta_end) * max(0.0, 1 - t)
        return self.reg_weight * (1 - torch.abs(2 * self.h() - 1) ** beta).sum()

    def harden(self) -> None:
        self.soft = False
