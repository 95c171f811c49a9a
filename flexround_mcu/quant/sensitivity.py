"""Per-layer sensitivity to low-bit weights: what mixed precision allocates bits by.

The measure: start from the deployed 8-bit model (every weighted layer rounded to nearest at 8 bits, int8
activations), move one layer alone to b bits with the export's own rounding method and, for a learned method, a
reconstruction of that layer's block alone (the other layers stay at 8 bits and are not trained), then take the
mean KL divergence of the class probabilities from the float model's, less the all-8-bit model's own, on the
calibration inputs. Summing it over layers is the allocator's model of the whole network's loss (an additive
proxy, as in HAWQ's and Rusci et al.'s allocations).

Why reconstructed and not rounded to nearest: the allocation needs each layer's cost per byte as the export will
pay it. Round to nearest ranks the layers unlike FlexRound does: on ResNet-8, W4 by round to nearest loses 14
points and FlexRound W4 none, so a rounded-to-nearest measure prices 4 bits far too high and buys 8-bit layers
with 2-bit ones (measured: the mixed rows fell below uniform W4 at the W4 size, 70.56% against 76.84%).
Why from the float model: reconstruction pulls a block towards the float model's output, so measured from the
8-bit model a reconstructed 4-bit layer still showed the 8-bit model's own distance from float (0.02-0.03 per
layer on ResNet-8, summing to five times the whole W4 model's); less that floor, it costs about nothing.
SENSITIVITY_ITERS is the export's own iterations per block at 8, 4 and 3 bits.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .fakequant import QuantizedModel, set_layer_bits
from .graph import GraphModule
from .rounding import METHODS

SENSITIVITY_ITERS = 500


def _log_probs(module: GraphModule, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Log class probabilities of `module` (a float or fake-quant GraphModule) on x, in batches."""
    logits = module.graph.logits
    with torch.no_grad():
        return torch.cat([F.log_softmax(module(x[i:i + batch], upto=logits).flatten(1), dim=1)
                          for i in range(0, len(x), batch)])


def layer_sensitivity(qm: QuantizedModel, calib_x: torch.Tensor, widths: tuple[int, ...], method: str = "rtn",
                      lr: float = 1e-3, iters: int = SENSITIVITY_ITERS, skip: set[str] = frozenset(),
                      progress: Callable[[int], None] | None = None) -> dict[str, dict[int, float]]:
    """{layer: {bits: mean KL(float || this layer alone at bits) - mean KL(float || all 8-bit)}} for every
    weighted layer not in `skip` and every width in `widths` (8 gives 0: the reference itself; a learned width may
    come out slightly below 0). `qm` is the all-8-bit model
    rounded to nearest; each layer is put back to that after its widths. With a learnable `method` the layer's
    block is reconstructed for `iters` iterations at `lr` on `calib_x` before the KL is taken."""
    from .reconstruct import reconstruct

    learned = METHODS[method].learnable
    ref = _log_probs(GraphModule(qm.graph).eval(), calib_x)

    def divergence() -> float:
        lp = _log_probs(qm.module, calib_x)
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
