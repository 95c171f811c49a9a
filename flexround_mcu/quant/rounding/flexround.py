"""FlexRound (Lee et al., ICML 2023): learnable rounding by element-wise division.

    W_hat = s1 * clip(round(W / S), qmin, qmax),    S = s1 * S2 * s3 * s4   (element-wise, broadcast)

s1 is the grid (one per tensor, or one per output channel), shared by the divisor and the multiplier; S2 has W's
shape; s3 is one per output channel; s4 one per input channel (a scalar for depthwise and linear layers, where
it would only repeat s3 or S2). All four are learned in log space, so they stay positive. log S2, log s3 and
log s4 start at exactly 0: step 0 is round to nearest on the searched grid. round() is straight-through and the
clip follows it, so saturated weights get no gradient through the division. With a straight-through round,
dL/dlog S2 = -dL/dW_hat * s1 * W / S: at step 0 proportional to W itself (the "reciprocal rule"), which is what
lets large weights move more than one grid step. The exported integers are clip(round(W / S)) in float32.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import RoundSTE, WeightQuantizer


class FlexRound(WeightQuantizer):
    learnable = True

    def __init__(self, weight: torch.Tensor, bits: int, per_channel: bool, grid: str = "mse",
                 depthwise: bool = False, s1_lr_scale: float = 1.0):
        super().__init__(weight, bits, per_channel, grid, depthwise)
        self.s1_lr_scale = s1_lr_scale
        cout = weight.shape[0]
        # log s1 = log(grid) + log_s1, with log_s1 starting at 0: exp(0) is exactly 1, so step 0 reproduces the
        # round-to-nearest grid bit for bit (exp(log(s)) would not).
        self.log_s1 = nn.Parameter(torch.zeros_like(self.grid_scale))
        self.log_s2 = nn.Parameter(torch.zeros_like(weight, dtype=torch.float32))
        self.log_s3 = nn.Parameter(torch.zeros((cout,) + (1,) * (weight.dim() - 1)))
        if weight.dim() == 4 and not depthwise:
            self.log_s4 = nn.Parameter(torch.zeros((1, weight.shape[1], 1, 1)))
        else:
            self.log_s4 = None

    def param_groups(self) -> list[dict]:
        rest = [p for p in (self.log_s2, self.log_s3, self.log_s4) if p is not None and p.requires_grad]
        s1 = [self.log_s1] if self.log_s1.requires_grad else []
        return [{"params": rest, "lr_scale": 1.0}, {"params": s1, "lr_scale": self.s1_lr_scale}]

    @property
    def scale(self) -> torch.Tensor:
        return self.grid_scale * torch.exp(self.log_s1)

    def divisor(self, w: torch.Tensor) -> torch.Tensor:
        log_rest = self.log_s2 + self.log_s3
        if self.log_s4 is not None:
            log_rest = log_rest + self.log_s4
        return self.scale_like(w) * torch.exp(log_rest)

    def integers(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.clamp(torch.round(w / self.divisor(w)), self.qmin, self.qmax)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q = torch.clamp(RoundSTE.apply(w / self.divisor(w)), self.qmin, self.qmax)
        return q * self.scale_like(w)
