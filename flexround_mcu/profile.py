"""Per-op profile of an exported model: one row per op of the QGraph (kind, output shape, multiply-accumulates)
with the instructions QEMU counted for it on a Cortex-M target, and the fixed-width table that `export` and
`run` print. No torch here: sim/, codegen/ and toolchain/ may use it.

A row is a dict: op (index), kind (OpKind value), layer (op name), output_shape, macs (QGraph.op_macs),
instructions (mean per inference, None when not counted: the host, or an ELF without layer marks) and
insn_per_mac (None when either is missing or macs is 0). A row of a RESHAPE, which has no code, counts only the
2 instructions of the layer mark (see flexround_mcu/toolchain/qemu.py).
"""
from __future__ import annotations

from collections.abc import Sequence

from .ir import QGraph


def op_rows(graph: QGraph, instructions: Sequence[float] | None = None) -> list[dict]:
    """One row per op of `graph`, in graph order. instructions: per op, as TargetResult.layer_instructions; None,
    or a sequence of another length than the graph's ops (a firmware that is not this graph's), leaves them None."""
    if instructions is not None and len(instructions) != len(graph.ops):
        instructions = None
    rows = []
    for k, op in enumerate(graph.ops):
        macs = graph.op_macs(k)
        ins = None if instructions is None else round(float(instructions[k]), 1)
        rows.append({"op": k, "kind": op.kind.value, "layer": op.name,
                     "output_shape": list(graph.tensors[op.outputs[0]].shape), "macs": macs,
                     "instructions": ins, "insn_per_mac": _per_mac(ins, macs)})
    return rows


def with_instructions(rows: Sequence[dict], instructions: Sequence[float]) -> list[dict]:
    """Rows (e.g. report.json's layers) with their instructions replaced by these, one per row; rows without an
    op index, or a count of another length, give index-only rows instead (op and instructions)."""
    if len(rows) != len(instructions) or any(not isinstance(r, dict) or r.get("op") != k for k, r in enumerate(rows)):
        return [{"op": k, "instructions": round(float(v), 1)} for k, v in enumerate(instructions)]
    out = []
    for r, v in zip(rows, instructions):
        ins = round(float(v), 1)
        out.append(dict(r, instructions=ins, insn_per_mac=_per_mac(ins, r.get("macs"))))
    return out


def _per_mac(instructions: float | None, macs) -> float | None:
    if instructions is None or not isinstance(macs, int) or macs <= 0:
        return None
    return round(instructions / macs, 3)


def _num(v, digits: int = 0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def layer_table(rows: Sequence[dict], total: float | None = None, tail: float | None = None,
                title: str = "") -> str:
    """The per-op table: op, kind, output shape, MACs, instructions, insn/MAC, share of `total` (instructions
    per inference; default: the sum of the rows and `tail`) and the op's name, then a total line. tail: the
    instructions after the last op (output copy, return), as its own line. Rows without a kind (index-only rows,
    as with_instructions gives without a report) print op, instructions and share only. Rows with weight bits
    (report.json's layers) also show each weighted op's bits and every op's constant bytes (filter, bias and
    requantization arrays; the fast kernels' ADD tables), totalling the weight bytes."""
    counted = [r["instructions"] for r in rows if r.get("instructions") is not None]
    if total is None and counted:
        total = sum(counted) + (tail or 0)
    full = any(r.get("kind") for r in rows)
    weights = full and any("bits" in r for r in rows)
    macs_known = [r["macs"] for r in rows if isinstance(r.get("macs"), int)]
    total_macs = sum(macs_known) if macs_known else None

    def share(v):
        return "" if v is None or not total else f"{v / total:.1%}"

    def line(op, kind, shape, macs, ins, per_mac, pct, name, bits="", nbytes=""):
        if not full:
            return f"{op:>4}  {ins:>13}  {pct:>6}  {kind}".rstrip()
        w = f"{bits:>4}  {nbytes:>9}  " if weights else ""
        return (f"{op:>4}  {kind:<17}  {shape:<14}  {w}{macs:>11}  {ins:>13}  {per_mac:>8}  {pct:>6}  "
                f"{name}").rstrip()

    head = line("op", "kind" if full else "", "output shape", "MACs", "instructions", "insn/MAC", "share",
                "name", "bits", "weight B")
    body = [line(r["op"], r.get("kind") or ("-" if full else ""), _shape(r.get("output_shape")), _num(r.get("macs")),
                 _num(r.get("instructions")), _num(r.get("insn_per_mac"), 2), share(r.get("instructions")),
                 _tail(r.get("layer") or "", 40), "" if r.get("bits") is None else str(r["bits"]),
                 _num(r["bytes"]) if r.get("bytes") else "") for r in rows]
    if tail is not None:
        body.append(line("", "(after last op)", "", "", _num(tail), "", share(tail), "output copy, return"))
    per_mac = _per_mac(total, total_macs) if total is not None else None
    weight_bytes = [r["bytes"] for r in rows if isinstance(r.get("bytes"), int)]  # an ADD's tables too (dsp)
    foot = line("", "total", "", _num(total_macs), _num(total), _num(per_mac, 2) if per_mac else "", share(total),
                "", "", _num(sum(weight_bytes)) if weight_bytes else "")
    rule = "-" * max(len(x) for x in [head, foot, *body])
    return "\n".join(([title] if title else []) + [head, rule, *body, rule, foot])


def _tail(name: str, width: int) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]
