"""Mixed precision under a flash budget: each weighted layer at 8, 4 or 2 bits, chosen exactly.

Two measured inputs per layer and width:
- its weight bytes as the export writes them for the chosen target and kernel set (the memory report's bytes of
  the layer's filter, bias and requantization arrays, from the model lowered once per width: packing, the fast
  kernels' padded layouts and per-channel tables included), so the budget is the one report.json counts;
- its sensitivity (quant/sensitivity.py: the KL divergence at the output with that layer alone at that width, by
  the export's rounding method, briefly reconstructed when the method learns).
`allocate_bits` then minimises the summed sensitivity under the budget by dynamic programming over bytes (a
multiple-choice knapsack: exact, O(layers x widths x budget)). FlexRound then reconstructs at those widths.
2 bits are offered only below the all-4-bit size (see choose_bits).
No torch at import; `choose_bits` imports the quantizer.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import UserError
from .ir import OpKind

WIDTHS = (8, 4, 2)  # 3 bits would take 4-bit containers: never cheaper than 4, never better
MEASURE = ("mean KL divergence of the class probabilities from the float model's, less the all-8-bit model's, with "
           "the layer alone at that width by {how}, the others at 8 bits, on the calibration inputs")
_WEIGHTED = (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED)


class BudgetTooSmall(UserError):
    def __init__(self, budget: int, smallest: int, how: str):
        super().__init__(f"--flash-budget {budget} cannot be met: the smallest weight size reachable is {smallest} B "
                         f"({how}); pass --flash-budget {smallest} or more")
        self.smallest = smallest


def allocate_bits(costs: dict[str, dict[int, int]], sensitivity: dict[str, dict[int, float]], budget: int,
                  fixed_bytes: int = 0) -> dict[str, int]:
    """The widths (one of costs[layer]'s keys per layer) with the least summed sensitivity whose bytes,
    fixed_bytes included, are at most `budget`; among equally sensitive choices, the fewest bytes. Raises
    BudgetTooSmall with the smallest reachable size."""
    names = list(costs)
    low = {n: min(costs[n].values()) for n in names}
    smallest = fixed_bytes + sum(low.values())
    if budget < smallest:
        raise BudgetTooSmall(budget, smallest, "every layer at its fewest bits")
    cap = min(budget - smallest, sum(max(costs[n].values()) - low[n] for n in names))
    best = np.full(cap + 1, np.inf)  # best[c]: least summed sensitivity of the layers so far at c extra bytes
    best[0] = 0.0
    picks = []
    for n in names:
        widths = sorted(costs[n])
        new = np.full(cap + 1, np.inf)
        pick = np.zeros(cap + 1, np.int8)
        for j, b in enumerate(widths):
            d = costs[n][b] - low[n]
            if d > cap:
                continue
            cand = np.full(cap + 1, np.inf)
            cand[d:] = best[:cap + 1 - d] + sensitivity[n][b]
            better = cand < new
            new[better], pick[better] = cand[better], j
        best = new
        picks.append((widths, pick))
    c = int(np.argmin(best))  # the first minimum: the fewest bytes among the least sensitive
    out = {}
    for n, (widths, pick) in zip(reversed(names), reversed(picks)):
        b = widths[pick[c]]
        out[n] = b
        c -= costs[n][b] - low[n]
    assert c == 0
    return {n: out[n] for n in names}


def layer_costs(qm, target: str, kernels: str | None, widths=WIDTHS) -> tuple[dict[str, dict[int, int]], int]:
    """({layer: {bits: weight bytes}}, bytes of the other constants) as the export for `target` writes them: the
    calibrated model `qm` with every weighted layer rounded to nearest at each uniform width in turn, lowered,
    through codegen's memory report. `qm` is left at 8 bits."""
    from .codegen.render import memory_report
    from .lower import lower
    from .quant.fakequant import set_layer_bits

    costs: dict[str, dict[int, int]] = {}
    fixed = None
    names = [n.name for n in qm.graph.weighted()]
    for b in widths:
        for name in names:
            set_layer_bits(qm, name, b)
        qg = lower(qm)
        mem = memory_report(qg, target, kernels)
        weighted = {qg.ops[la.op].name: la.total_bytes for la in mem.layers if qg.ops[la.op].kind in _WEIGHTED}
        for name, nbytes in weighted.items():
            costs.setdefault(name, {})[b] = nbytes
        fixed = mem.weight_bytes - sum(weighted.values()) if fixed is None else fixed
    for name in names:
        set_layer_bits(qm, name, 8)
    return costs, int(fixed)


def sensitivity_runs(graph, first_last_8bit: bool) -> int:
    """How many layer-and-width measurements choose_bits makes at most (for a progress bar; half of them when the
    budget is at or above the all-4-bit size, where 2 bits are not offered)."""
    from .quant.fakequant import kept_at_8bit
    return (len(graph.weighted()) - len(kept_at_8bit(graph, first_last_8bit))) * (len(WIDTHS) - 1)


def choose_bits(graph, calib_x, budget: int, granularity: str, first_last_8bit: bool, target: str,
                kernels: str | None, method: str = "rtn", lr: float = 1e-3,
                progress: Callable[[int], None] | None = None) -> tuple[dict[str, int], dict]:
    """Every weighted layer's bits under `budget` weight bytes, and what the choice rests on (report.json's
    `mixed`). With first_last_8bit the first and last layers stay at 8 bits and the rest is allocated. The
    sensitivity is measured with `method` (at `lr`, reconstructed briefly when it learns)."""
    from .quant.fakequant import kept_at_8bit, quantize_model
    from .quant.rounding import METHODS
    from .quant.sensitivity import SENSITIVITY_ITERS, layer_sensitivity

    kept = kept_at_8bit(graph, first_last_8bit)
    qm = quantize_model(graph, [calib_x[i:i + 128] for i in range(0, len(calib_x), 128)], "rtn", 8, granularity,
                        first_last_8bit=False)
    costs, fixed = layer_costs(qm, target, kernels)
    for name in kept:
        costs[name] = {8: costs[name][8]}
    smallest = fixed + sum(min(c.values()) for c in costs.values())
    if budget < smallest:  # before the sensitivity runs: nothing it could say would help
        raise BudgetTooSmall(budget, smallest, "every layer at 2 bits, the first and last at 8 "
                             "(--no-first-last-8bit allocates them too)" if kept else "every layer at 2 bits")
    # At or above the all-4-bit size no layer needs 2 bits to fit, and the additive measure underprices 2 bits
    # there: DS-CNN at the W4 size traded one 2-bit layer for five 8-bit ones and lost 1.4 points against uniform W4
    # (README, "Below 4 bits"). So 2 bits are offered only where the budget is below that size.
    all4 = fixed + sum(c.get(4, c[8]) for c in costs.values())
    widths = WIDTHS if budget < all4 else tuple(b for b in WIDTHS if b != 2)
    if widths != WIDTHS:
        for name in costs:
            costs[name] = {b: v for b, v in costs[name].items() if b in widths}
    sens = layer_sensitivity(qm, calib_x, widths, method, lr=lr, skip=kept, progress=progress)
    if progress and widths != WIDTHS:
        progress(len(sens) * (len(WIDTHS) - len(widths)))  # the 2-bit runs not made: the bar ends full
    for name in kept:
        sens[name] = {8: 0.0}
    order = [n.name for n in graph.weighted()]
    bits = allocate_bits({n: costs[n] for n in order}, {n: sens[n] for n in order}, budget, fixed)
    how = (f"{method}, its block reconstructed alone for {SENSITIVITY_ITERS} iterations"
           if METHODS[method].learnable else "round to nearest")
    info = {
        "flash_budget": budget,
        "widths": list(widths),
        "all_4bit_bytes": all4,
        "measure": MEASURE.format(how=how),
        "allocation": "dynamic programming over weight bytes (exact): least summed sensitivity within the budget",
        "predicted_weight_bytes": fixed + sum(costs[n][bits[n]] for n in order),
        "predicted_loss": round(sum(sens[n][bits[n]] for n in order), 6),
        "layers": [{"layer": n, "bits": bits[n], "bytes": {str(b): costs[n][b] for b in sorted(costs[n])},
                    "sensitivity": {str(b): round(sens[n][b], 6) for b in sorted(sens[n])}} for n in order],
    }
    return bits, info
