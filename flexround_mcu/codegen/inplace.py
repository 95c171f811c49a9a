"""When a kernel may write its output over its input: each kernel's access order, and the shifts it makes safe.

A kernel runs as a sequence of steps. Each step reads what it needs of the input, then writes a part of the
output (a step's reads all come before its writes). `Access` holds, per step, the lowest input byte it reads and
one past the highest output byte it writes, both relative to the start of their tensor. With the output placed
at `input + d`, step s overwrites nothing a later step still reads when

    d + write_end[s] <= min(read_min[t] for t > s)          for every step s,

so every d <= max_shift = min over s of (the later steps' lowest read - write_end[s]) is safe: the output then
always trails the reads ("forward" in-place, the order every kernel here walks). Depthwise convs and pools read
and write each channel on its own: a step there is one output pixel, and d must be a whole number of pixels, so
that a write of channel c lands only on channel c of an input pixel (which no later step of channel c reads).

The step of each kernel is what its loops do (flexround_mcu/firmware/kernels/), e.g. frk_convolve_s8 writes one output channel
after reading the whole window (step = pixel x channel), frk_convolve_s8_dsp copies two windows to scratch and
then writes both pixels (step = two pixels), the Helium direct 1x1 conv writes two channels of three pixels
straight from the input (step = three pixels x a channel pair). tests/test_inplace.py builds small graphs on
which a shift one pixel past max_shift corrupts the output, so a wrong model here fails there.

Fusion: a residual ADD whose one input comes from the conv just before it, used nowhere else, runs with that conv
band by band (render.py): the conv computes `rows` output rows into scratch, the ADD adds them to the same rows of
its other input and writes the sum over them. The conv's output then never lives in the arena, and the ADD is
element-wise in place (d = 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..ir import OpKind, QGraph

_NONE = np.iinfo(np.int64).max  # "reads nothing": a window entirely in the padding
BAND_ALIGNMENT = 16  # a fused or ring op's bands start on this boundary in frk_scratch


def band_offset(kernel_scratch: int) -> int:
    """Where a fused or ring op's bands start in frk_scratch: after its kernel's own scratch, aligned."""
    return -(-kernel_scratch // BAND_ALIGNMENT) * BAND_ALIGNMENT


def _suffix_min(values: np.ndarray) -> np.ndarray:
    """out[s] = min(values[s:])."""
    return np.minimum.accumulate(values[::-1])[::-1]


@dataclass(frozen=True)
class Access:
    """read_min / write_end per step (int64 arrays), and `pixel` > 0 when the kernel works channel by channel
    (the shift must then be a multiple of that many bytes)."""

    read_min: np.ndarray
    write_end: np.ndarray
    pixel: int = 0
    order: str = ""  # one line: what a step is

    def max_shift(self) -> int:
        """The largest safe d (see the module docstring); any smaller d is safe too."""
        later = _suffix_min(self.read_min)
        if len(later) < 2:
            return _NONE
        return int((later[1:] - self.write_end[:-1]).min())


@dataclass(frozen=True)
class InPlace:
    """Output tensor `output` of op `op` placed at `shift` bytes from input `input` (which op `op` reads last).
    Any shift <= max_shift that is a multiple of `step` is safe; `shift` is the one the planner took."""

    op: int
    input: int
    output: int
    shift: int
    max_shift: int
    order: str
    step: int = 16

    def placed(self, in_bytes: int, out_bytes: int, input_at: int) -> "InPlace | None":
        """This decision with the shift that overlaps the input the most and, where the rule allows, brings the
        output back to the start of its group (`input_at`: where the input sits in its group, < 0 after shifts
        down): the output inside the input, or as near the group's start as the rule lets it; None when the
        output would not overlap the input at all."""
        want = max(in_bytes - out_bytes, 0) - min(input_at, 0)
        d = min(self.max_shift, want) // self.step * self.step
        if d + out_bytes <= 0 or d >= in_bytes:
            return None
        return InPlace(self.op, self.input, self.output, d, self.max_shift, self.order, self.step)


@dataclass(frozen=True)
class Fusion:
    """CONV op `conv` computed `rows` output rows at a time into scratch, each band added by ADD op `add` to the
    same rows of `residual` and written over them."""

    conv: int
    add: int
    output: int      # the conv's output tensor: it never enters the arena
    residual: int
    rows: int
    band_bytes: int

    def scratch_bytes(self, kernel_scratch: int) -> int:
        """frk_scratch this op needs: its kernel's, then one band."""
        return band_offset(kernel_scratch) + self.band_bytes


def _window_read_min(graph: QGraph, op) -> np.ndarray:
    """Per output pixel (row-major), the byte offset in the input of the first input pixel its window reads."""
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _, in_h, in_w, in_c = x.shape
    _, out_h, out_w, _ = y.shape
    p = op.params
    if op.kind in (OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D):
        (k_h, k_w), (d_h, d_w) = p.filter, (1, 1)
    else:
        w = graph.tensors[op.inputs[1]]
        k_h, k_w = (w.shape[1], w.shape[2])
        d_h, d_w = p.dilation

    def first_valid(origin: np.ndarray, k: int, d: int, n: int) -> np.ndarray:
        taps = origin[:, None] + d * np.arange(k)[None, :]
        valid = (taps >= 0) & (taps < n)
        first = np.where(valid, taps, n + 1).min(axis=1)
        return np.where(valid.any(axis=1), first, -1)

    iy = first_valid(np.arange(out_h) * p.stride[0] - p.padding[0], k_h, d_h, in_h)
    ix = first_valid(np.arange(out_w) * p.stride[1] - p.padding[1], k_w, d_w, in_w)
    rm = (iy[:, None] * in_w + ix[None, :]) * in_c
    rm = np.where((iy[:, None] < 0) | (ix[None, :] < 0), _NONE, rm)
    return rm.reshape(-1).astype(np.int64)


def _block_min(values: np.ndarray, block: int) -> np.ndarray:
    pad = (-len(values)) % block
    return np.concatenate([values, np.full(pad, _NONE, np.int64)]).reshape(-1, block).min(axis=1)


def access(graph: QGraph, k: int, kernel: str) -> Access | None:
    """The access order of op k run by `kernel` (codegen/kernels.py's name), or None where no in-place rule is
    known (fully connected, softmax, reshape)."""
    op = graph.ops[k]
    y = graph.tensors[op.outputs[0]]
    if op.kind == OpKind.ADD:
        n = y.size
        return Access(np.arange(n, dtype=np.int64), np.arange(1, n + 1, dtype=np.int64), 0,
                      "element by element (a vector of them at a time, reads before writes)")
    if op.kind not in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D):
        return None
    if y.shape[0] != 1:
        return None
    reads = _window_read_min(graph, op)
    pixels, out_c = len(reads), y.shape[-1]
    in_c = graph.tensors[op.inputs[0]].shape[-1]
    channelwise = op.kind in (OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D) or (
        op.kind == OpKind.DEPTHWISE_CONV_2D and op.params.depth_multiplier == 1)
    if channelwise and in_c == out_c:
        return Access(reads, (np.arange(pixels, dtype=np.int64) + 1) * out_c, out_c,
                      "pixel by pixel, each channel reading only its own channel")
    if kernel.endswith("_dsp"):  # two im2col columns, then every channel of both pixels
        starts = np.arange(0, pixels, 2, dtype=np.int64)
        return Access(_block_min(reads, 2), np.minimum(starts + 2, pixels) * out_c, 0,
                      "two pixels at a time: both windows copied to scratch, then both pixels written")
    if kernel.endswith("_mve"):
        starts = np.arange(0, pixels, 3, dtype=np.int64)
        block_reads = _block_min(reads, 3)
        ends = np.minimum(starts + 3, pixels)
        w = graph.tensors[op.inputs[1]]
        direct = (op.kind == OpKind.CONV_2D and w.shape[1] == w.shape[2] == 1 and op.params.padding[:2] == (0, 0)
                  and in_c % 16 == 0)
        if not direct:
            return Access(block_reads, ends * out_c, 0,
                          "three pixels at a time: the windows copied to scratch, then the three pixels written")
        # straight from the input: per block, channel pairs (then an odd last channel), each writing its
        # channels of the block's pixels
        chans = np.append(np.arange(2, out_c + 1, 2), [out_c] if out_c % 2 else [])
        write_end = ((ends - 1)[:, None] * out_c + chans[None, :]).reshape(-1)
        return Access(np.repeat(block_reads, len(chans)), write_end.astype(np.int64), 0,
                      "three pixels at a time straight from the input, two output channels after the other")
    # portable conv / depthwise: one output channel after the other, each reading its whole window
    write_end = (np.arange(pixels, dtype=np.int64)[:, None] * out_c + np.arange(1, out_c + 1)[None, :])
    return Access(np.repeat(reads, out_c), write_end.reshape(-1), 0,
                  "pixel by pixel, one output channel after the other, each reading the whole window")


def inplace_candidates(graph: QGraph, kernels: list[str], last_use: dict[int, int], root, alignment: int,
                       skip_inputs: set[int] = frozenset()) -> list[InPlace]:
    """For each op, its output over the input it reads last (the larger one for an ADD), where its access order
    allows. `root` maps a tensor to its arena buffer (RESHAPE aliases share one); `last_use[r]` is the last op
    reading buffer r; inputs in `skip_inputs` (graph inputs, graph outputs) are never written over."""
    out = []
    for k, op in enumerate(graph.ops):
        if op.kind == OpKind.RESHAPE:
            continue
        y = op.outputs[0]
        if root(y) != y:
            continue
        cands = []
        for t in op.inputs[:2] if op.kind == OpKind.ADD else op.inputs[:1]:
            r = root(t)
            if t == -1 or graph.tensors[r].is_constant or r in skip_inputs or last_use.get(r) != k:
                continue
            cands.append(r)
        if not cands:
            continue
        acc = access(graph, k, kernels[k])
        if acc is None:
            continue
        r = max(cands, key=lambda t: graph.tensors[t].size)
        step = math.lcm(alignment, acc.pixel or 1)
        limit = min(acc.max_shift(), graph.tensors[r].size)  # (a read-free op: anywhere inside its input)
        out.append(InPlace(k, r, y, limit // step * step, limit, acc.order, step))
    return out


@dataclass(frozen=True)
class Ring:
    """Op `op` computed `rows` output rows at a time into a ring of `bands` band buffers in scratch; band j is
    copied to the output (at `shift` bytes from the input it reads last) once band j + bands - 1 is computed,
    when no later band reads the input bytes it lands on. Costs the copies and a kernel call per band: taken only
    when a --ram-budget asks for it."""

    op: int
    input: int
    output: int
    rows: int
    bands: int
    band_bytes: int
    shift: int
    max_shift: int

    def scratch_bytes(self, kernel_scratch: int) -> int:
        """frk_scratch this op needs: its kernel's, then the ring."""
        return band_offset(kernel_scratch) + self.bands * self.band_bytes


def _ring_max_shift(reads: np.ndarray, row_pixels: int, rows: int, bands: int, band_bytes: int,
                    out_bytes: int) -> int:
    """The largest safe shift of a ring of `bands` bands of `rows` rows (see Ring)."""
    per_band = _block_min(reads, rows * row_pixels)
    n = len(per_band)
    if n <= bands:
        return _NONE
    later = _suffix_min(per_band)
    b = np.arange(n - bands)
    ends = np.minimum((b + 1) * band_bytes, out_bytes)
    return int((later[b + bands] - ends).min())


def ring_candidates(graph: QGraph, kernels: list[str], last_use: dict[int, int], root, alignment: int,
                    skip_inputs: set[int], extra_bands: int = 0, max_bands: int = 4) -> list[Ring]:
    """For each CONV_2D / DEPTHWISE_CONV_2D op whose input it reads last, the ring with the fewest bands that puts
    its output at a shift >= 0 from that input (no drift), where one exists; with `extra_bands` more, the ring may
    also move its output up (by a band each), which takes back the drift of the direct in-place ops after it."""
    out = []
    for k, op in enumerate(graph.ops):
        if op.kind not in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D):
            continue
        x, y = root(op.inputs[0]), op.outputs[0]
        if graph.tensors[x].is_constant or x in skip_inputs or last_use.get(x) != k or root(y) != y \
                or graph.tensors[y].shape[0] != 1:
            continue
        _, out_h, out_w, out_c = graph.tensors[y].shape
        rows = band_rows(kernels[k], out_h, out_w)
        reads = _window_read_min(graph, op)
        in_bytes, out_bytes = graph.tensors[x].size, graph.tensors[y].size
        for bands in range(1, max_bands + 1):
            limit = _ring_max_shift(reads, out_w, rows, bands, rows * out_w * out_c, out_bytes)
            if limit == _NONE:
                break  # the ring would hold the whole output
            d = min(limit, max(in_bytes - out_bytes, 0)) // alignment * alignment
            if d >= 0:
                bands += extra_bands
                limit = _ring_max_shift(reads, out_w, rows, bands, rows * out_w * out_c, out_bytes)
                if limit != _NONE:
                    out.append(Ring(k, x, y, rows, bands, rows * out_w * out_c, d, limit // alignment * alignment))
                break
    return out


def band_rows(kernel: str, out_h: int, out_w: int) -> int:
    """The fewest output rows of a band that hold a whole number of the pixels the kernel computes together
    (the dsp and Helium convs two and three, the depthwise convs one), so that no band adds a partly filled
    block; the whole height where none does."""
    block = 1 if "depthwise" in kernel else 2 if kernel.endswith("_dsp") else 3 if kernel.endswith("_mve") else 1
    return next(r for r in range(1, out_h + 1) if (r * out_w) % block == 0 or r == out_h)


def fusion_candidates(graph: QGraph, kernels: list[str], consumers: dict[int, list[int]], root,
                      last_use: dict[int, int], skip: set[int]) -> list[Fusion]:
    """CONV_2D / DEPTHWISE_CONV_2D ops whose output only the next op, an ADD, reads, where the ADD's other input
    is an arena buffer the ADD reads last (so the sum may go over it)."""
    out = []
    for k, op in enumerate(graph.ops[:-1]):
        nxt = graph.ops[k + 1]
        y = op.outputs[0]
        if op.kind not in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D) or nxt.kind != OpKind.ADD:
            continue
        if consumers.get(y) != [k + 1] or y in skip or y not in nxt.inputs[:2]:
            continue
        other = nxt.inputs[1] if nxt.inputs[0] == y else nxt.inputs[0]
        r = root(other)
        if other == y or graph.tensors[r].is_constant or r in skip or last_use.get(r) != k + 1 \
                or r == root(op.inputs[0]) or graph.tensors[other].shape != graph.tensors[y].shape:
            continue
        _, out_h, out_w, out_c = graph.tensors[y].shape
        rows = band_rows(kernels[k], out_h, out_w)
        out.append(Fusion(k, k + 1, y, r, rows, rows * out_w * out_c))
    return out
