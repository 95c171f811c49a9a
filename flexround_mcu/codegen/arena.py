"""Static activation arena: one int8 buffer holding every intermediate tensor, planned from tensor lifetimes.

The plan follows TFLite Micro's greedy planner: buffers are placed in order of decreasing size, each at the lowest
aligned offset where it does not overlap any already placed buffer whose lifetime intersects its own. Lifetimes
are inclusive op-index intervals [first, last]: a buffer is alive from the op that writes it to the last op that
reads it, so an op's output never shares bytes with its inputs (the kernels are not in-place).

- The graph input is read from the caller's buffer and takes no arena space.
- A RESHAPE output aliases its input (the bytes are the same in the same order), so a chain of reshapes is one
  buffer whose lifetime covers every alias.
- Constants live in flash (weights.c), not in the arena.
- Graph outputs stay alive to the end of the graph (they are copied out after the last op).

`floor` is the largest sum of buffer bytes alive at one op: no plan can be smaller, and the greedy plan's
`arena_size` is >= floor (equal for chains and for ResNet-8).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..ir import OpKind, QGraph

ALIGNMENT = 16


@dataclass(frozen=True)
class Buffer:
    """One arena buffer: a produced tensor and the RESHAPE outputs that alias it (`aliases`, in graph order)."""

    tensor: int
    name: str
    bytes: int
    first_op: int
    last_op: int
    offset: int
    aliases: tuple[int, ...] = ()

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first_op <= other.last_op and other.first_op <= self.last_op

    def overlaps_in_space(self, other: "Buffer") -> bool:
        return self.offset < other.offset + other.bytes and other.offset < self.offset + self.bytes


@dataclass(frozen=True)
class ArenaPlan:
    """offsets: activation tensor index -> byte offset in the arena (aliases included; not the graph input)."""

    buffers: tuple[Buffer, ...]  # in placement order (decreasing size)
    offsets: dict[int, int]
    arena_size: int
    floor: int
    alignment: int
    num_ops: int

    def table(self, name_width: int = 48) -> str:
        """A fixed-width table of the buffers in offset order: tensor, bytes, first/last op, offset, name."""
        head = f"{'tensor':>6}  {'bytes':>8}  {'first':>5}  {'last':>5}  {'offset':>8}  name"
        lines = [head, "-" * (len(head) + name_width - 4)]
        for b in sorted(self.buffers, key=lambda b: (b.offset, b.first_op, b.tensor)):
            label = _short(b.name, name_width)
            if b.aliases:
                label += " (+ alias " + ", ".join(f"t{a}" for a in b.aliases) + ")"
            lines.append(f"{b.tensor:>6}  {b.bytes:>8}  {b.first_op:>5}  {b.last_op:>5}  {b.offset:>8}  {label}")
        lines.append(f"arena {self.arena_size} bytes, floor {self.floor} bytes (largest sum alive at one op), "
                     f"alignment {self.alignment}")
        return "\n".join(lines)


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def plan_arena(graph: QGraph, alignment: int = ALIGNMENT) -> ArenaPlan:
    """Plan the activation arena of `graph` (see the module docstring)."""
    if alignment < 1 or alignment & (alignment - 1):
        raise UserError(f"arena alignment must be a power of two, got {alignment}")
    n_ops = len(graph.ops)
    graph_inputs = set(graph.inputs)
    producer_op: dict[int, int] = {}
    for k, op in enumerate(graph.ops):
        for t in op.outputs:
            producer_op[t] = k

    roots: dict[int, int] = {}  # tensor -> root tensor (itself unless a RESHAPE output)

    def root(t: int) -> int:
        if t not in roots:
            k = producer_op.get(t)
            if k is not None and graph.ops[k].kind == OpKind.RESHAPE:
                roots[t] = root(graph.ops[k].inputs[0])
            else:
                roots[t] = t
        return roots[t]

    first: dict[int, int] = {}
    last: dict[int, int] = {}
    aliases: dict[int, list[int]] = {}

    def touch(t: int, k: int) -> None:
        r = root(t)
        if r in graph_inputs or graph.tensors[r].is_constant:
            return  # caller's buffer or flash: not in the arena
        first[r] = min(first.get(r, k), k)
        last[r] = max(last.get(r, k), k)

    for k, op in enumerate(graph.ops):
        for t in op.inputs:
            if t != -1 and not graph.tensors[t].is_constant:
                touch(t, k)
        for t in op.outputs:
            touch(t, k)
            if op.kind == OpKind.RESHAPE and root(t) != t:
                aliases.setdefault(root(t), []).append(t)
    for t in graph.outputs:
        r = root(t)
        if r in first:
            last[r] = max(last[r], n_ops - 1)

    def nbytes(t: int) -> int:
        return graph.tensors[t].size  # int8 activations: one byte per value

    # Decreasing size; ties by first use, then tensor index: fully deterministic.
    order = sorted(first, key=lambda t: (-nbytes(t), first[t], t))
    placed: list[Buffer] = []
    for t in order:
        cand = Buffer(t, graph.tensors[t].name, nbytes(t), first[t], last[t], 0, tuple(aliases.get(t, ())))
        live = sorted((b for b in placed if b.overlaps_in_time(cand)), key=lambda b: b.offset)
        offset = 0
        for b in live:  # first gap big enough, scanning live buffers by offset
            if offset + cand.bytes <= b.offset:
                break
            offset = max(offset, _align_up(b.offset + b.bytes, alignment))
        placed.append(Buffer(t, cand.name, cand.bytes, cand.first_op, cand.last_op, offset, cand.aliases))

    offsets = {}
    for b in placed:
        offsets[b.tensor] = b.offset
        for a in b.aliases:
            offsets[a] = b.offset
    offsets = dict(sorted(offsets.items()))
    arena_size = max((b.offset + b.bytes for b in placed), default=0)
    floor = max((sum(b.bytes for b in placed if b.first_op <= k <= b.last_op) for k in range(n_ops)), default=0)
    return ArenaPlan(tuple(placed), offsets, arena_size, floor, alignment, n_ops)
