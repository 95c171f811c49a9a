"""BatchNorm folding: conv (or linear) followed by inference-mode BatchNorm becomes one conv with a new bias.

    y = gamma * (conv(x, W) + b - mean) / sqrt(var + eps) + beta
      = conv(x, W * k) + (b - mean) * k + beta,        k = gamma / sqrt(var + eps)   (one k per output channel)
Computed in float64 and stored as float32, so the folded model matches the unfolded one to float32 rounding.
"""
from __future__ import annotations

import torch
from torch import nn


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) of a conv/linear followed by `bn` -> the folded (W', b'). W's first dimension is C_out."""
    w = weight.detach().double()
    b = bias.detach().double() if bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    k = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    w_folded = w * k.reshape((-1,) + (1,) * (w.dim() - 1))
    b_folded = (b - bn.running_mean.detach().double()) * k + bn.bias.detach().double()
    return w_folded.float(), b_folded.float()
