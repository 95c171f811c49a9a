"""Per-layer sensitivity to low-bit weights: what mixed precision allocates bits by.

The measure: quantize every weighted layer to 8 bits (round to nearest, int8 activations: the deployed 8-bit
model), then move one layer alone to b bits (round to nearest on its own searched grid) and take the mean KL
divergence of the class probabilities from the 8-bit model's, on calibration inputs. It is label-free (any
calibration set will do), it measures the damage at the output, where accuracy is decided, and it costs one
forward pass per layer and width. Summing it over layers is the allocator's model of the whole network's loss
(an additive proxy, as in HAWQ's and Rusci et al.'s allocations). Round to nearest overstates what FlexRound
loses (reconstruction recovers much of it, most at 2 bits); the allocation only needs the order of the
layers' costs per byte, which rounding to nearest ranks alike.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .fakequant import quantize_model, set_layer_bits
from .graph import FloatGraph


def _log_probs(qm, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([F.log_softmax(qm.module(x[i:i + batch], upto=qm.graph.logits).flatten(1), dim=1)
                          for i in range(0, len(x), batch)])


def layer_sensitivity(graph: FloatGraph, calib_x: torch.Tensor, widths: tuple[int, ...], granularity: str = "tensor",
                      skip: set[str] = frozenset(), progress: Callable[[int], None] | None = None
                      ) -> dict[str, dict[int, float]]:
    """{layer: {bits: mean KL(8-bit model || the model with this layer alone at bits)}} for every weighted layer
    not in `skip` and every width in `widths` (8 gives 0: the reference itself)."""
    qm = quantize_model(graph, [calib_x[i:i + 128] for i in range(0, len(calib_x), 128)], "rtn", 8, granularity,
                        first_last_8bit=False)
    ref = _log_probs(qm, calib_x)
    out: dict[str, dict[int, float]] = {}
    for n in graph.weighted():
        if n.name in skip:
            continue
        out[n.name] = {}
        for b in widths:
            if b == 8:
                out[n.name][8] = 0.0
                continue
            set_layer_bits(qm, n.name, b)
            lp = _log_probs(qm, calib_x)
            out[n.name][b] = float((ref.exp() * (ref - lp)).sum(dim=1).mean())
            if progress:
                progress(1)
        set_layer_bits(qm, n.name, 8)
    return out
