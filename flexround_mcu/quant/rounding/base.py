"""The interface every rounding method implements, and the grid (scale) search they share."""
from __future__ import annotations

import torch
from torch import nn

VALID_BITS = (2, 3, 4, 8)


class RoundSTE(torch.autograd.Function):
    """round() whose gradient is the identity (straight-through), for learning through quantization."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


def qmax_for(bits: int) -> int:
    """The largest weight integer: int8 127, 4 bits 7, 3 bits 3, 2 bits 1."""
    if bits not in VALID_BITS:
        raise ValueError(f"weight bits must be one of {VALID_BITS}, got {bits}")
    return (1 << (bits - 1)) - 1


def qmin_for(bits: int) -> int:
    """The smallest weight integer: -qmax (the symmetric narrow range: int8 [-127, 127], 4 bits [-7, 7], 3 bits
    [-3, 3]) except at 2 bits, where it is -2: the crumb's whole two's-complement range [-2, 1]. Narrow range
    there would leave a ternary grid, three of the four codes; the fourth level contains the ternary grid at every
    scale and cuts the least squared rounding error of Laplace-distributed weights by a fifth (0.266 to 0.208 of
    the variance). Zero point 0 either way, so the arithmetic is unchanged."""
    return -2 if bits == 2 else -qmax_for(bits)


def _channel_view(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    return w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)


def search_scale(w: torch.Tensor, bits: int, per_channel: bool, grid: str = "mse", p: float = 2.4,
                 candidates: int = 100) -> torch.Tensor:
    """Scale per tensor (shape (1,)) or per output channel (shape (C_out,)).

    minmax: max|W| / qmax. mse: BRECQ's shrink search, the s = (1 - 0.01 i) max|W| / qmax (i < candidates)
    with the least sum |W - W_hat|^p, p = 2.4 (an Lp score between MSE and max error), W_hat on [qmin, qmax]."""
    qmax, qmin = qmax_for(bits), qmin_for(bits)
    v = _channel_view(w.detach().float(), per_channel)
    amax = v.abs().amax(dim=1).clamp_min(1e-12)
    if grid == "minmax":
        return (amax / qmax).float()
    if grid != "mse":
        raise ValueError(f"unknown weight grid {grid!r}")
    best = amax / qmax
    best_err = torch.full_like(amax, float("inf"))
    for i in range(candidates):
        s = (1.0 - 0.01 * i) * amax / qmax
        err = ((torch.clamp(torch.round(v / s[:, None]), qmin, qmax) * s[:, None] - v).abs() ** p).sum(dim=1)
        better = err < best_err
        best = torch.where(better, s, best)
        best_err = torch.where(better, err, best_err)
    return best.float()


class WeightQuantizer(nn.Module):
    """Symmetric weight quantization of one layer: W_hat = s * clip(round_method(W / s), qmin, qmax).

    The interface the reconstruction loop relies on:
    - `forward(W)`: the fake-quantized weight (differentiable in the learned parameters, if any);
    - `integers(W)`: the integers the exporter stores; `scale`: the per-tensor or per-channel step (float32);
    - `learnable`, `param_groups()` (the learned tensors, each group with an lr factor), `regularization(progress)`
      (a loss term; progress in [0, 1]), `harden()` (called when a block is finished).
    """

    learnable = False

    def __init__(self, weight: torch.Tensor, bits: int, per_channel: bool, grid: str = "mse",
                 depthwise: bool = False):
        super().__init__()
        self.bits = bits
        self.qmax, self.qmin = qmax_for(bits), qmin_for(bits)
        self.per_channel = per_channel
        self.depthwise = depthwise
        self.register_buffer("grid_scale", search_scale(weight, bits, per_channel, grid))

    @property
    def scale(self) -> torch.Tensor:
        return self.grid_scale

    def scale_like(self, w: torch.Tensor) -> torch.Tensor:
        return self.scale.reshape((-1,) + (1,) * (w.dim() - 1))

    def integers(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.integers(w) * self.scale_like(w)

    def param_groups(self) -> list[dict]:
        """Optimizer groups: {"params": [...], "lr_scale": factor of the loop's learning rate}."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr_scale": 1.0}]

    def regularization(self, progress: float) -> torch.Tensor | float:
        return 0.0

    def harden(self) -> None:
        pass
