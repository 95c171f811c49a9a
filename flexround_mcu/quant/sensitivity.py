"""Per-layer sensitivity to low-bit weights: what mixed precision allocates bits by.

The measure: start from the deployed 8-bit model (every weighted layer rounded to nearest at 8 bits, int8
activations), move one layer alone to b bits with the export's own rounding method and, for a learned method, a
short reconstruction of that layer's block (the other layers stay at 8 bits and are not trained), then take the
mean KL divergence of the class probabilities from the 8-bit model's, on the calibration inputs. Summing it over
layers is the allocator's model of the whole network's loss (an additive proxy, as in HAWQ's and Rusci et al.'s
allocations).

Why reconstructed and not rounded to nearest: the allocation needs each layer's cost per byte as the export will
pay it. Round to nearest ranks the layers unlike FlexRound does: on ResNet-8, W4 by round to nearest loses 14
points and FlexRound W4 none, so a rounded-to-nearest measure prices 4 bits far too high and buys 8-bit layers
with 2-bit ones (measured: the mixed rows fell below uniform W4 at the W4 size, 70.56% against 76.84%). A short
reconstruction (SENSITIVITY_ITERS iterations, a quarter of the export's shortest) ranks the layers as the full
one leaves them, at about one export's cost for all layers and widths.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .fakequant import QuantizedModel, set_layer_bits
from .graph import GraphModule
from .rounding import METHODS

SENSITIVITY_ITERS = 500


def _log_probs(qm: QuantizedModel, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([F.log_softmax(qm.module(x[i:i + batch], upto=qm.graph.logits).flatten(1), dim=1)
                          for i in range(0, len(x), batch)])


def layer_sensitivity(qm: QuantizedModel, calib_x: torch.Tensor, widths: tuple[int, ...], method: str = "rtn",
                      lr: float = 1e-3, iters: int = SENSITIVITY_ITERS, skip: set[str] = frozenset(),
                      progress: Callable[[int], None] | None = None) -> dict[str, dict[int, float]]:
    """{layer: {bits: mean KL(8-bit model || the model with this layer alone at bits)}} for every weighted layer
    not in `skip` and every width in `widths` (8 gives 0: the reference itself). `qm` is the all-8-bit model
    rounded to nearest; each layer is put back to that after its widths. With a learnable `method` the layer's
    block is reconstructed for `iters` iterations at `lr` on `calib_x` before the KL is taken."""
    from .reconstruct import reconstruct

    learned = METHODS[method].learnable
    float_module = GraphModule(qm.graph).eval()
    with torch.no_grad():
        ref = torch.cat([F.log_softmax(float_module(calib_x[i:i + 256], upto=qm.graph.logits).flatten(1), dim=1)
                         for i in range(0, len(calib_x), 256)])

    def divergence() -> float:
        lp = _log_probs(qm, calib_x)
        return float((ref.exp() * (ref - lp)).sum(dim=1).mean())

    floor = divergence()  # the all-8-bit model's own
    out: dict[str, dict[int, float]] = {}
    for n in qm.graph.weighted():
        if n.name in skip:
            continue
        out[n.name] = {}
        for b in widths:
            if b == 8:
                out[n.name][8] = 0.0
                continue
            set_layer_bits(qm, n.name, b, method if learned else "rtn")
            if learned:
                reconstruct(qm, calib_x, iters=iters, lr=lr)
            out[n.name][b] = divergence() - floor
            if progress:
                progress(1)
        set_layer_bits(qm, n.name, 8)
    return out
