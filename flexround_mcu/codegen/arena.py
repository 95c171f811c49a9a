"""Static activation arena: one int8 buffer holding every intermediate tensor, planned from tensor lifetimes.

The plan follows TFLite Micro's greedy planner: buffers are placed in order of decreasing size, each at the lowest
aligned offset where it does not overlap any already placed buffer whose lifetime intersects its own. Lifetimes
are inclusive op-index intervals [first, last]: a buffer is alive from the op that writes it to the last op that
reads it.

- The graph input is read from the caller's buffer and takes no arena space.
- A RESHAPE output aliases its input (the bytes are the same in the same order), so a chain of reshapes is one
  buffer whose lifetime covers every alias.
- Constants live in flash (weights.c), not in the arena.
- Graph outputs stay alive to the end of the graph (they are copied out after the last op).
- Given the kernel of every op, an op may write its output over the input it reads last, at a shift its access
  order proves safe (codegen/inplace.py), and a conv feeding a residual ADD may run fused with it band by band
  (the conv's output then needs only a band of scratch, and the sum goes over the ADD's other input). Tensors
  written over one another form a group placed as one buffer. The plan keeps the in-place and fused decisions
  only when they make arena + scratch smaller than the plan without them.

`floor` is the largest sum of buffer bytes alive at one op without in-place: no plan of kernels that never write
over their inputs can be smaller (the greedy plan is >= floor, equal for chains and for ResNet-8).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..ir import OpKind, QGraph
from .inplace import Fusion, InPlace, Ring, fusion_candidates, inplace_candidates, ring_candidates

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
    group: int = -1  # the first tensor of its in-place group (-1: none)

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
    inplace: tuple[InPlace, ...] = ()
    fusions: tuple[Fusion, ...] = ()
    band_scratch: int = 0             # scratch the fused and ring ops need (kernel scratch + bands), 0 without
    arena_without_inplace: int = 0    # the greedy plan with no tensor written over another
    rings: tuple[Ring, ...] = ()
    kernel_scratch: int = 0           # the largest scratch of one kernel

    @property
    def scratch_bytes(self) -> int:
        """frk_scratch: the largest need of one op (a kernel's own, or a fused / ring op's with its bands)."""
        return max(self.band_scratch, self.kernel_scratch)

    @property
    def ram_bytes(self) -> int:
        """What the export plans in RAM: arena + scratch (the board's statics and stack come on top)."""
        return self.arena_size + self.scratch_bytes

    def ring_of(self, k: int) -> Ring | None:
        return next((r for r in self.rings if r.op == k), None)

    def peak(self) -> tuple[int, list[Buffer]]:
        """The first op at which the arena reaches its size, and the buffers alive there."""
        best_k, best_end = 0, -1
        for k in range(self.num_ops):
            end = max((b.offset + b.bytes for b in self.buffers if b.first_op <= k <= b.last_op), default=0)
            if end > best_end:
                best_k, best_end = k, end
        return best_k, [b for b in self.buffers if b.first_op <= best_k <= b.last_op]

    def fusion_of(self, k: int) -> Fusion | None:
        """The fusion op k takes part in (as its conv or its ADD), if any."""
        return next((f for f in self.fusions if k in (f.conv, f.add)), None)

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
        lines += self.sharing_lines()
        return "\n".join(lines)

    def sharing_lines(self) -> list[str]:
        """Which tensors share memory and why: one line per in-place output and per fused conv + ADD."""
        lines = []
        for ip in self.inplace:
            if self.fusion_of(ip.op) or self.ring_of(ip.op):
                continue
            bound = "any shift" if ip.max_shift >= self.arena_size else f"any shift <= {ip.max_shift:+d} B"
            lines.append(f"in place: t{ip.output} written at t{ip.input} {ip.shift:+d} B by op {ip.op} ({ip.order}; "
                         f"safe for {bound})")
        for f in self.fusions:
            lines.append(f"fused: op {f.conv} (conv) + op {f.add} (ADD): the conv's output t{f.output} never enters "
                         f"the arena; {f.rows} output row(s) at a time go to scratch ({f.band_bytes} B) and the ADD "
                         f"writes each band over the same rows of t{f.residual} (element-wise, read before written)")
        for r in self.rings:
            lines.append(f"ring: op {r.op} computes {r.rows} output row(s) at a time into a ring of {r.bands} "
                         f"band(s) of {r.band_bytes} B in scratch and copies band j to t{r.output} (at t{r.input} "
                         f"{r.shift:+d} B) once band j+{r.bands - 1} is done: no later band reads those bytes (safe for "
                         f"any shift <= {r.max_shift:+d} B; chosen for --ram-budget, it costs the copies)")
        return lines


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def plan_arena(graph: QGraph, alignment: int = ALIGNMENT, kernels: list[str] | None = None,
               scratch: list[int] | None = None, ram_budget: int | None = None) -> ArenaPlan:
    """Plan the activation arena of `graph` (see the module docstring). kernels: the kernel name of every op
    (codegen/kernels.py), which the in-place rules need; None plans without in-place and fusion. scratch: the
    kernel scratch bytes of every op (a fused or ring op's bands come after its kernel's scratch).

    Without ram_budget: the smallest arena + scratch among the plans that cost no copies (no in-place; in-place;
    in-place and fusion). With it, if that plan does not fit: the plans with ring buffers (depthwise convs, then
    every conv), in that order of cost, the first that fits; a UserError when none does."""
    plans = _candidates(graph, alignment, kernels, scratch)
    if kernels is None:
        return next(plans)
    free = [next(plans) for _ in range(3)]  # no in-place; in-place; in-place and fusion
    best = min(free, key=lambda p: p.ram_bytes)  # the first of equals: the fewest changes
    if ram_budget is None or best.ram_bytes <= ram_budget:
        return best
    tried = free
    for plan in plans:  # the ring-buffer plans, cheapest first
        tried.append(plan)
        if plan.ram_bytes <= ram_budget:
            return plan
    smallest = min(tried, key=lambda p: p.ram_bytes)
    k, alive = smallest.peak()
    op = graph.ops[k]
    what = ", ".join(f"t{b.tensor} {b.bytes} B" for b in sorted(alive, key=lambda b: b.offset))
    raise UserError(f"{graph.name}: the smallest plan needs {smallest.ram_bytes} B of RAM (arena "
                    f"{smallest.arena_size} B + scratch {smallest.scratch_bytes} B), over --ram-budget {ram_budget}: "
                    f"its peak is at op {k} ({op.kind.value}{' ' + op.name if op.name else ''}) with {what} alive; "
                    f"pass --ram-budget {smallest.ram_bytes} or more")


# The ring-buffer plans a --ram-budget may take, cheapest first: the depthwise convs, then every conv.
# (op kinds, extra bands): a band more lets a depthwise ring take back the pointwise convs' drift without copies of
# its own for them.
RING_STEPS = (((OpKind.DEPTHWISE_CONV_2D,), 0), ((OpKind.DEPTHWISE_CONV_2D,), 1),
              ((OpKind.DEPTHWISE_CONV_2D, OpKind.CONV_2D), 0))


def smallest_plan(graph: QGraph, alignment: int, kernels: list[str], scratch: list[int] | None = None) -> ArenaPlan:
    """The plan of least arena + scratch plan_arena can make, whatever it costs (what a --ram-budget can reach)."""
    return min(_candidates(graph, alignment, kernels, scratch), key=lambda p: p.ram_bytes)


def _candidates(graph: QGraph, alignment: int, kernels, scratch):
    """The plans plan_arena chooses from, in order of cost: without in-place (the only one when kernels is None),
    with the in-place rules, with fusion too, then with the ring buffers of RING_STEPS."""
    if alignment < 1 or alignment & (alignment - 1):
        raise UserError(f"arena alignment must be a power of two, got {alignment}")
    base = _plan(graph, alignment, None, None, False)
    if kernels is None:
        yield base
        return
    scratch = list(scratch or [0] * len(graph.ops))

    def finish(p: ArenaPlan) -> ArenaPlan:
        return ArenaPlan(p.buffers, p.offsets, p.arena_size, base.floor, alignment, p.num_ops, p.inplace, p.fusions,
                         p.band_scratch, base.arena_size, p.rings, max(scratch + [0]))

    yield finish(base)
    for fuse in (False, True):
        yield finish(_plan(graph, alignment, kernels, scratch, fuse))
    for kinds, extra in RING_STEPS:
        yield finish(_plan(graph, alignment, kernels, scratch, True, kinds, extra))


@dataclass
class _Lifetimes:
    """The buffers of a plan before placement: each root tensor's first and last op and its RESHAPE aliases."""

    first: dict[int, int]
    last: dict[int, int]
    aliases: dict[int, list[int]]


class _GraphIndex:
    """Who produces and who reads each tensor, and the buffer (root) a RESHAPE output aliases."""

    def __init__(self, graph: QGraph):
        self.graph = graph
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, list[int]] = {}
        for k, op in enumerate(graph.ops):
            for t in op.outputs:
                self.producer[t] = k
            for t in op.inputs:
                if t != -1:
                    self.consumers.setdefault(t, []).append(k)
        self._roots: dict[int, int] = {}

    def root(self, t: int) -> int:
        if t not in self._roots:
            k = self.producer.get(t)
            op = self.graph.ops[k] if k is not None else None
            self._roots[t] = self.root(op.inputs[0]) if op is not None and op.kind == OpKind.RESHAPE else t
        return self._roots[t]

    def lifetimes(self, skip: set[int]) -> _Lifetimes:
        """Inclusive [first, last] op of every arena buffer; the graph input, constants and `skip` (fused convs'
        outputs, which live in scratch) take no arena space; graph outputs live to the end."""
        g = self.graph
        lt = _Lifetimes({}, {}, {})

        def touch(t: int, k: int) -> None:
            r = self.root(t)
            if r in g.inputs or g.tensors[r].is_constant or r in skip:
                return
            lt.first[r] = min(lt.first.get(r, k), k)
            lt.last[r] = max(lt.last.get(r, k), k)

        for k, op in enumerate(g.ops):
            for t in op.inputs:
                if t != -1 and not g.tensors[t].is_constant:
                    touch(t, k)
            for t in op.outputs:
                touch(t, k)
                if op.kind == OpKind.RESHAPE and self.root(t) != t:
                    lt.aliases.setdefault(self.root(t), []).append(t)
        for t in g.outputs:
            r = self.root(t)
            if r in lt.first:
                lt.last[r] = max(lt.last[r], len(g.ops) - 1)
        return lt


def _decisions(graph: QGraph, index: _GraphIndex, lt: _Lifetimes, kernels, alignment: int, fusions,
               ring_kinds: tuple, extra_bands: int) -> tuple[list[InPlace], list[Ring]]:
    """The in-place candidates of a plan: the free rules, the fused ADDs over their residuals (shift 0), and the
    rings of `ring_kinds` where they overlap more than the free rule."""
    keep = set(graph.inputs) | {index.root(t) for t in graph.outputs}
    fused_adds = {f.add for f in fusions}
    inplace = [ip for ip in inplace_candidates(graph, kernels, lt.last, index.root, alignment, keep)
               if ip.op not in fused_adds]
    inplace += [InPlace(f.add, f.residual, graph.ops[f.add].outputs[0], 0, 0, "fused with its conv, element-wise")
                for f in fusions]
    fused_convs = {f.conv for f in fusions}
    free = {ip.op: ip for ip in inplace}
    rings = []
    for r in ring_candidates(graph, kernels, lt.last, index.root, alignment, keep, extra_bands):
        if graph.ops[r.op].kind not in ring_kinds or r.op in fused_convs:
            continue
        ip = free.get(r.op)
        if ip is not None and ip.shift >= min(r.shift, 0):
            continue  # the ring overlaps no more than the free in-place rule
        rings.append(r)
        inplace = [i for i in inplace if i.op != r.op] + [InPlace(r.op, r.input, r.output, r.shift, r.max_shift,
                                                                  "ring", alignment)]
    return sorted(inplace, key=lambda ip: ip.op), rings


def _groups(graph: QGraph, lt: _Lifetimes, inplace: list[InPlace]):
    """Chains of buffers each written over the previous one: per buffer its group's first buffer (head) and its
    place in the group (rel), with the in-place decisions as placed (InPlace.placed)."""
    over = {ip.output: ip for ip in inplace}  # output -> the in-place decision that may place it
    head: dict[int, int] = {}
    rel: dict[int, int] = {}
    taken: list[InPlace] = []
    for t in sorted(lt.first, key=lambda t: lt.first[t]):
        ip = over.get(t)
        if ip is not None and ip.input in rel:
            ip = ip.placed(graph.tensors[ip.input].size, graph.tensors[t].size, rel[ip.input])
        else:
            ip = None
        if ip is not None:
            head[t], rel[t] = head[ip.input], rel[ip.input] + ip.shift
            taken.append(ip)
        else:
            head[t], rel[t] = t, 0
    groups: dict[int, list[int]] = {}
    for t in sorted(lt.first, key=lambda t: lt.first[t]):
        groups.setdefault(head[t], []).append(t)
    return groups, rel, sorted(taken, key=lambda ip: ip.op)


def _place(graph: QGraph, lt: _Lifetimes, groups, rel, alignment: int) -> list[Buffer]:
    """Greedy placement of the groups, largest first, each as a whole at the lowest aligned offset where none of
    its members overlaps a placed buffer alive at the same time."""
    units = []  # (head, lo, size, first)
    for h, members in groups.items():
        lo = min(rel[t] for t in members)
        hi = max(rel[t] + graph.tensors[t].size for t in members)
        units.append((h, lo, hi - lo, min(lt.first[t] for t in members)))
    # Decreasing size; ties by first use, then tensor index: fully deterministic.
    units.sort(key=lambda u: (-u[2], u[3], u[0]))
    buffers: list[Buffer] = []
    for h, lo, _, _ in units:
        members = [Buffer(t, graph.tensors[t].name, graph.tensors[t].size, lt.first[t], lt.last[t], rel[t] - lo,
                          tuple(lt.aliases.get(t, ())), h if len(groups[h]) > 1 else -1) for t in groups[h]]
        # candidate offsets of the unit: 0, and each placed buffer's end less a member's place in the unit
        starts = sorted({0} | {_align_up(max(b.offset + b.bytes - m.offset, 0), alignment)
                               for b in buffers for m in members})
        for o in starts:
            if all(not (b.overlaps_in_time(m) and b.offset < o + m.offset + m.bytes
                        and o + m.offset < b.offset + b.bytes) for m in members for b in buffers):
                break
        buffers += [Buffer(m.tensor, m.name, m.bytes, m.first_op, m.last_op, o + m.offset, m.aliases, m.group)
                    for m in members]
    return buffers


def _plan(graph: QGraph, alignment: int, kernels, scratch, fuse: bool, ring_kinds: tuple = (),
          extra_bands: int = 0) -> ArenaPlan:
    """One greedy plan: without in-place (kernels None), with the in-place rules, with them and fusion, and with
    ring buffers for the ops of `ring_kinds`."""
    index = _GraphIndex(graph)
    lt = index.lifetimes(set())
    inplace: list[InPlace] = []
    fusions: list[Fusion] = []
    rings: list[Ring] = []
    if kernels is not None:
        if fuse:
            keep = set(graph.inputs) | {index.root(t) for t in graph.outputs}
            fusions = fusion_candidates(graph, kernels, index.consumers, index.root, lt.last, keep)
            lt = index.lifetimes({f.output for f in fusions})
        inplace, rings = _decisions(graph, index, lt, kernels, alignment, fusions, ring_kinds, extra_bands)
    groups, rel, inplace = _groups(graph, lt, inplace)
    shift_of = {ip.op: ip.shift for ip in inplace}
    rings = [Ring(r.op, r.input, r.output, r.rows, r.bands, r.band_bytes, shift_of[r.op], r.max_shift)
             for r in rings if r.op in shift_of]
    buffers = _place(graph, lt, groups, rel, alignment)

    offsets = {}
    for b in buffers:
        offsets[b.tensor] = b.offset
        for a in b.aliases:
            offsets[a] = b.offset
    offsets = dict(sorted(offsets.items()))
    arena_size = max((b.offset + b.bytes for b in buffers), default=0)
    n_ops = len(graph.ops)
    floor = max((sum(b.bytes for b in buffers if b.first_op <= k <= b.last_op) for k in range(n_ops)), default=0)
    band = max([f.scratch_bytes(scratch[f.conv]) for f in fusions] + [r.scratch_bytes(scratch[r.op]) for r in rings]
               + [0])
    return ArenaPlan(tuple(buffers), offsets, arena_size, floor, alignment, n_ops, tuple(inplace), tuple(fusions),
                     band, arena_size, tuple(rings), max(scratch or [0]))
