"""Which C kernel runs each op, and the export-time data the fast kernels want (docs/arithmetic.md 6).

Three kernel sets:
  portable  the C99 reference kernels (frk_convolve_s8, ...): the host's default and the reference of every test;
  dsp       the Armv7E-M kernels (frk_*_dsp.c: SXTB16/SMLAD/SMMULR), the default on the Cortex-M4/M7 boards;
  mve       the Helium kernels (frk_*_mve.c: VMLADAVA/VMUL/VQRDMULH) of every op (conv, fully connected,
            depthwise, ADD, pooling), the dsp kernels for layers they do not cover (a depthwise with C % 8 != 0,
            ...): the default on the Cortex-M55.
A dsp export still uses the portable kernel for a layer that a fast kernel does not cover or whose bounds do not
hold (`KernelChoice.reason` says which); the fast kernels' C versions of the DSP instructions let a dsp project
build and run on any target too.

What the export does for a fast conv / depthwise / fully connected layer, where the portable kernel does it at
run time or per MAC:
  - kernel_bias = bias + input_offset * sum(w) per output channel (6.1): no offset added per MAC, padding taps
    read the input zero point instead of being skipped;
  - the filter in the layout the kernel's inner loop loads (6.2): conv and FC rows padded to 4 (int8) or 8 (int4)
    values and interleaved in pairs, int4 "lane-nibbled" so that one AND gives two weights as the int16 lanes
    SMLAD multiplies (4096*w); depthwise weights grouped 4 channels by tap (int4: two taps per word);
  - the checks that make the fast requantization and the 4096x int4 sums exact (6.1), and the scratch size (6.3).
No torch here: this runs on the QGraph's integers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import OpKind, QGraph
from ..sim.elementwise import input_rescale_table

KERNEL_SETS = ("portable", "dsp", "mve")
DEPTHWISE_MAX_TAPS = 64  # FRK_DEPTHWISE_DSP_MAX_TAPS in frk_nn.h
_LIMIT_2_30 = 1 << 30
_LIMIT_2_31 = 1 << 31

PORTABLE = {
    (OpKind.CONV_2D, "int8"): "frk_convolve_s8",
    (OpKind.CONV_2D, "int4"): "frk_convolve_s4",
    (OpKind.DEPTHWISE_CONV_2D, "int8"): "frk_depthwise_conv_s8",
    (OpKind.DEPTHWISE_CONV_2D, "int4"): "frk_depthwise_conv_s4",
    (OpKind.FULLY_CONNECTED, "int8"): "frk_fully_connected_s8",
    (OpKind.FULLY_CONNECTED, "int4"): "frk_fully_connected_s4",
    (OpKind.CONV_2D, "int2"): "frk_convolve_s2",
    (OpKind.DEPTHWISE_CONV_2D, "int2"): "frk_depthwise_conv_s2",
    (OpKind.FULLY_CONNECTED, "int2"): "frk_fully_connected_s2",
    OpKind.ADD: "frk_elementwise_add_s8",
}
POOLS = {OpKind.AVERAGE_POOL_2D: "frk_avgpool_s8", OpKind.MAX_POOL_2D: "frk_max_pool_s8"}


@dataclass(frozen=True)
class KernelChoice:
    """The kernel of one op. For a fast weighted kernel: the filter bytes in its layout (`filter_values`, int8 or
    uint8), `kernel_bias` (int32, bias with the input offset folded in) and the int8 scratch it needs."""

    name: str
    fast: bool
    reason: str = ""                       # why the portable kernel runs in a dsp export ("" otherwise)
    filter_values: np.ndarray | None = None
    kernel_bias: np.ndarray | None = None
    scratch_bytes: int = 0
    table: np.ndarray | None = None        # ADD: the other input's rescaled values (6.4)
    swap_inputs: bool = False              # ADD: the graph's second input is the half-scale one, passed first


def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


# ----------------------------------------------------------------------------------------------- layouts
# Nibble n (bits 4n+3..4n) of an int4 word holds value LANE_ORDER[n] of its 8 (docs/arithmetic.md 6.2): then
# (word << 4s) & 0xF000F000 has, for s = 0, 1, 2, 3, the values (0, 2), (1, 3), (4, 6), (5, 7) as int16 lanes
# times 4096, the lanes SXTB16 / SXTB16-ROR8 make of the activations k..k+3 and k+4..k+7.
LANE_ORDER = (5, 4, 1, 0, 7, 6, 3, 2)
INT4_LANE_SCALE = 4096  # the int4 cores accumulate 4096 * sum(w * x)
# Crumb c (bits 2c+1..2c) of an int2 word holds value S2_LANE_ORDER[c] of its 16: (word << 2s) & 0xC000C000 then has
# values (4j, 4j+2) for s = 2j and (4j+1, 4j+3) for s = 2j+1 as int16 lanes times 16384 (frk__s2_lanes).
S2_LANE_ORDER = (13, 12, 9, 8, 5, 4, 1, 0, 15, 14, 11, 10, 7, 6, 3, 2)
INT2_LANE_SCALE = 16384  # the int2 cores accumulate 16384 * sum(w * x)


def lane_nibbles(values: np.ndarray) -> np.ndarray:
    """int4 values [..., 8] -> uint8 [..., 4]: the little-endian word whose nibble n holds value LANE_ORDER[n]."""
    v = (values.astype(np.int16) & 0x0F).astype(np.uint8)[..., list(LANE_ORDER)]
    return v[..., 0::2] | (v[..., 1::2] << 4)


def lane_crumbs(values: np.ndarray) -> np.ndarray:
    """int2 values [..., 16] -> uint8 [..., 4]: the little-endian word whose crumb c holds value S2_LANE_ORDER[c]."""
    v = (values.astype(np.int16) & 0x03).astype(np.uint8)[..., list(S2_LANE_ORDER)]
    return v[..., 0::4] | (v[..., 1::4] << 2) | (v[..., 2::4] << 4) | (v[..., 3::4] << 6)


def interleave_pairs(rows: np.ndarray, chunk: int) -> np.ndarray:
    """Byte rows [R, B] -> flat bytes with rows 2j, 2j+1 interleaved `chunk` bytes at a time; an odd last row
    follows alone."""
    r, b = rows.shape
    pairs = r // 2
    head = rows[:2 * pairs].reshape(pairs, 2, b // chunk, chunk).transpose(0, 2, 1, 3).reshape(-1)
    return np.concatenate([head, rows[2 * pairs:].reshape(-1)])


GEMM_GROUP = {"int8": 4, "int4": 8, "int2": 16}  # values per weight word of the dsp conv / FC cores


def gemm_filter_layout(w2d: np.ndarray, dtype: str) -> np.ndarray:
    """A conv / FC filter as rows [C_out, K] -> the bytes frk_convolve_s8_dsp / _s4_dsp load (6.2)."""
    group = GEMM_GROUP[dtype]
    cout, k = w2d.shape
    padded = np.zeros((cout, _round_up(k, group)), np.int8)
    padded[:, :k] = w2d
    if dtype == "int8":
        return interleave_pairs(padded.view(np.uint8), 4).view(np.int8)
    if dtype == "int2":
        return interleave_pairs(lane_crumbs(padded.reshape(cout, -1, 16)).reshape(cout, -1), 4)
    return interleave_pairs(lane_nibbles(padded.reshape(cout, -1, 8)).reshape(cout, -1), 4)


def depthwise_filter_layout(w: np.ndarray, dtype: str) -> np.ndarray:
    """A depthwise filter [1, KH, KW, C] (C % 4 == 0) -> the bytes frk_depthwise_conv_s8_dsp / _s4_dsp load:
    int8 [C/4, T, 4]; int4 [C/4, ceil(T/2), 4] bytes, a word per pair of taps (2u, 2u+1): lane_nibbles of their
    8 weights (tap 2u's 4 channels, then tap 2u+1's; 0 past the last tap)."""
    c = w.shape[-1]
    taps = w.reshape(-1, c // 4, 4).transpose(1, 0, 2)  # [C/4, T, 4]
    if dtype == "int8":
        return taps.reshape(-1).astype(np.int8)
    t = taps.shape[1]
    if t % 2:
        taps = np.concatenate([taps, np.zeros((c // 4, 1, 4), taps.dtype)], axis=1)
    return lane_nibbles(taps.reshape(c // 4, -1, 8)).reshape(-1)


def mve_gemm_filter_layout(w2d: np.ndarray, dtype: str) -> np.ndarray:
    """A conv / FC filter as rows [C_out, K] -> the bytes frk_convolve_s8_mve / _s4_mve load (7.1): rows padded to
    16 values; int8 as they are; int4 as 16 bytes per 32 values (byte i: w[k+i] low, w[k+16+i] high nibble) and,
    when the padded K is an odd multiple of 16, its last 16 values as int8 bytes 16 * w; pairs of rows interleaved
    16 bytes at a time."""
    cout, k = w2d.shape
    padded = np.zeros((cout, _round_up(k, 16)), np.int8)
    padded[:, :k] = w2d
    if dtype == "int8":
        return interleave_pairs(padded.view(np.uint8), 16).view(np.int8)
    main = padded.shape[1] // 32 * 32
    nib = (padded[:, :main].astype(np.int16) & 0x0F).astype(np.uint8).reshape(cout, -1, 2, 16)
    rows = (nib[:, :, 0, :] | (nib[:, :, 1, :] << 4)).reshape(cout, -1)
    tail = (16 * padded[:, main:].astype(np.int16)).astype(np.int8).view(np.uint8)  # 16 * w in [-128, 112]
    return interleave_pairs(np.concatenate([rows, tail], axis=1), 16)


def mve_depthwise_filter_layout(w: np.ndarray) -> np.ndarray:
    """A depthwise filter [1, KH, KW, C] (C % 8 == 0) -> frk_depthwise_conv_s8_mve's / _s4_mve's bytes: one int8
    value per weight, for each group of 8 channels the taps' 8 weights, [C/8, T, 8] (7.2), as uint8."""
    c = w.shape[-1]
    return w.reshape(-1, c // 8, 8).transpose(1, 0, 2).reshape(-1).astype(np.int8).view(np.uint8)


# -------------------------------------------------------------------------------------------------- checks
def _bounds_reason(w2d: np.ndarray, bias: np.ndarray, input_offset: int, shift: np.ndarray, dtype: str,
                   int4_seeded: bool = False, int4_scale: int = INT4_LANE_SCALE) -> str:
    """'' when the fast kernels are exact for these rows (6.1), else why not. int4_seeded: the int4 kernel starts
    its accumulators at int4_scale * kernel_bias (the dsp depthwise, 6.2; the mve conv, 7.1), so that term counts
    in its scaled sum too. int4_scale: 4096 for the dsp cores, 16 for the mve ones."""
    abs_w = np.abs(w2d.astype(np.int64)).sum(axis=1)
    left = np.maximum(np.broadcast_to(np.asarray(shift, np.int64), abs_w.shape), 0)
    acc_bound = np.abs(bias.astype(np.int64)) + 255 * abs_w
    if np.any(acc_bound * (np.int64(1) << left) >= _LIMIT_2_30):
        return "the accumulator bound |bias| + 255*sum|w| (times 2^shift) reaches 2^30"
    kernel_bias = _kernel_bias64(w2d, bias, input_offset)
    if np.any(np.abs(kernel_bias) >= _LIMIT_2_31):
        return "bias + input_offset*sum(w) does not fit int32"
    seed = np.abs(kernel_bias) if int4_seeded else 0
    if dtype == "int4" and np.any(int4_scale * (seed + 128 * abs_w) >= _LIMIT_2_31):
        return (f"{int4_scale} * (|bias + input_offset*sum(w)| + 128*sum|w|) reaches 2^31 (the int4 core's scaled "
                f"sum)" if int4_seeded else f"{int4_scale}*128*sum|w| reaches 2^31 (the int4 core's scaled sum)")
    if dtype == "int2" and np.any(INT2_LANE_SCALE * 128 * abs_w >= _LIMIT_2_31):
        return f"{INT2_LANE_SCALE}*128*sum|w| reaches 2^31 (the int2 core's scaled sum)"
    return ""


def _kernel_bias64(w2d: np.ndarray, bias: np.ndarray, input_offset: int) -> np.ndarray:
    return bias.astype(np.int64) + input_offset * w2d.astype(np.int64).sum(axis=1)


def _kernel_bias(w2d: np.ndarray, bias: np.ndarray, input_offset: int, scale: int = 1) -> np.ndarray:
    """scale * (bias + input_offset * sum(w)) as int32: scale is the int4 core's where its accumulators start
    there (_bounds_reason checked that it fits)."""
    return (scale * _kernel_bias64(w2d, bias, input_offset)).astype(np.int32)


# ------------------------------------------------------------------------------------------------- choice
def choose_kernel(graph: QGraph, op, kernels: str) -> KernelChoice:
    """The kernel of `op` in an export with kernel set `kernels` (one of KERNEL_SETS)."""
    if kernels not in KERNEL_SETS:
        raise ValueError(f"unknown kernel set {kernels!r}")
    if op.kind == OpKind.ADD:
        if kernels == "mve":  # any parameters, TFLM's arithmetic on four lanes (7.3): no table
            return KernelChoice("frk_elementwise_add_s8_mve", True)
        return _add_choice(graph, op) if kernels == "dsp" else KernelChoice(PORTABLE[OpKind.ADD], False)
    if op.kind in POOLS:  # the same parameters in every set; a fast one falls back itself (shapes it does not take)
        fast = kernels != "portable"
        return KernelChoice(POOLS[op.kind] + (f"_{kernels}" if fast else ""), fast)
    if op.kind not in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED):
        return KernelChoice("", False)
    w = graph.tensors[op.inputs[1]]
    portable = PORTABLE[(op.kind, w.dtype)]
    if kernels == "portable":
        return KernelChoice(portable, False)
    if w.dtype == "int2" and op.kind == OpKind.DEPTHWISE_CONV_2D:
        return KernelChoice(portable, False, "2-bit depthwise filters have the portable kernel only")
    x = graph.tensors[op.inputs[0]]
    cout = w.shape[-1] if op.kind == OpKind.DEPTHWISE_CONV_2D else w.shape[0]
    bias = graph.tensors[op.inputs[2]].data if op.inputs[2] != -1 else np.zeros(cout, np.int32)
    bias = np.asarray(bias, np.int64).reshape(-1)
    input_offset = -int(x.zero_point[0])
    shift = np.atleast_1d(np.asarray(op.params.shift, np.int64))

    if op.kind == OpKind.DEPTHWISE_CONV_2D:
        c = w.shape[-1]
        taps = int(np.prod(w.shape[1:3]))
        if op.params.depth_multiplier != 1:
            return KernelChoice(portable, False, "depth multiplier is not 1")
        if c % 4:
            return KernelChoice(portable, False, f"{c} channels is not a multiple of 4")
        if taps > DEPTHWISE_MAX_TAPS:
            return KernelChoice(portable, False, f"{taps} taps exceed {DEPTHWISE_MAX_TAPS}")
        rows = w.data.reshape(taps, c).T  # [C, T]: each channel's taps
        # "int8": the accumulator bounds alone (the Helium depthwise does not scale int4 sums; its int16 bound below)
        if kernels == "mve" and c % 8 == 0 and not _bounds_reason(rows, bias, input_offset, shift, "int8") \
                and (w.dtype == "int8" or 128 * np.abs(rows.astype(np.int64)).sum(axis=1).max() < 1 << 15):
            # frk_depthwise_conv_s8_mve / _s4_mve (7.2); int4 sums in int16 lanes, exact while 128*sum|w| < 2^15
            layout = mve_depthwise_filter_layout(w.data)
            return KernelChoice(portable + "_mve", True,
                                filter_values=layout.view(np.int8) if w.dtype == "int8" else layout,
                                kernel_bias=_kernel_bias(rows, bias, input_offset), scratch_bytes=c)
        why = _bounds_reason(rows, bias, input_offset, shift, w.dtype, int4_seeded=True)
        if why:
            return KernelChoice(portable, False, why)
        scale = INT4_LANE_SCALE if w.dtype == "int4" else 1  # int4: the accumulators start at 4096 * kernel_bias
        return KernelChoice(portable + "_dsp", True, filter_values=depthwise_filter_layout(w.data, w.dtype),
                            kernel_bias=_kernel_bias(rows, bias, input_offset, scale), scratch_bytes=c)

    rows = w.data.reshape(cout, -1)
    if kernels == "mve" and w.dtype != "int2":  # 2-bit conv / FC: the dsp core, as for layers Helium lacks
        return _mve_gemm_choice(portable, rows, bias, input_offset, shift, w.dtype)
    why = _bounds_reason(rows, bias, input_offset, shift, w.dtype)
    if why:
        return KernelChoice(portable, False, why)
    k_pad = _round_up(rows.shape[1], GEMM_GROUP[w.dtype])
    return KernelChoice(portable + "_dsp", True, filter_values=gemm_filter_layout(rows, w.dtype),
                        kernel_bias=_kernel_bias(rows, bias, input_offset),
                        scratch_bytes=2 * k_pad)  # two im2col columns, interleaved


def _mve_gemm_choice(portable: str, rows: np.ndarray, bias: np.ndarray, input_offset: int, shift: np.ndarray,
                     dtype: str) -> KernelChoice:
    """frk_convolve_*_mve / frk_fully_connected_*_mve (7.1): the accumulators start at kernel_bias (int4: 16 times
    it, the core's scale), three im2col columns of scratch."""
    why = _bounds_reason(rows, bias, input_offset, shift, dtype, int4_seeded=True, int4_scale=16)
    if why:
        return KernelChoice(portable, False, why)
    scale = 16 if dtype == "int4" else 1
    k_pad = _round_up(rows.shape[1], 16)
    return KernelChoice(portable + "_mve", True, filter_values=mve_gemm_filter_layout(rows, dtype),
                        kernel_bias=_kernel_bias(rows, bias, input_offset, scale), scratch_bytes=3 * k_pad)


def _add_choice(graph: QGraph, op) -> KernelChoice:
    """frk_elementwise_add_s8_dsp where TFLM's int8 ADD parameters hold (6.4): left_shift 20, one input at the
    real multiplier 0.5 (2^30, shift 0), a right shift at the output with |zp_out| * 2^e < 2^29."""
    p = op.params
    portable = PORTABLE[OpKind.ADD]
    half1 = p.input1_multiplier == 1 << 30 and p.input1_shift == 0
    half2 = p.input2_multiplier == 1 << 30 and p.input2_shift == 0
    e = -int(p.output_shift)
    zp_out = int(graph.tensors[op.outputs[0]].zero_point[0])
    if p.left_shift != 20 or not (half1 or half2):
        return KernelChoice(portable, False, "no input at the real multiplier 0.5 with left_shift 20")
    if e < 1 or abs(zp_out) * (1 << e) >= 1 << 29:
        return KernelChoice(portable, False, "the output shift is not a right shift the fast epilogue can fold")
    offsets = [-int(graph.tensors[t].zero_point[0]) for t in op.inputs[:2]]
    if half1:
        half_offset, other = offsets[0], (offsets[1], p.input2_multiplier, p.input2_shift)
    else:
        half_offset, other = offsets[1], (offsets[0], p.input1_multiplier, p.input1_shift)
    rescaled = input_rescale_table(other[0], 20, other[1], other[2]).astype(np.int64)  # indexed by q + 128
    by_byte = np.concatenate([rescaled[128:], rescaled[:128]])  # indexed by the byte of q read as unsigned
    table = 2 * by_byte + (half_offset << 20)
    # table[u] + x1 * 2^20 (|x1| <= 128) must not wrap: it is 2 * (a + b), exact in int32 as TFLM's sum a + b is
    if np.abs(table).max() + (128 << 20) >= 1 << 31:
        return KernelChoice(portable, False, "the doubled sum of the rescaled inputs can reach 2^31")
    return KernelChoice("frk_elementwise_add_s8_dsp", True, table=table.astype(np.int32), swap_inputs=not half1)


def plan_kernels(graph: QGraph, kernels: str) -> list[KernelChoice]:
    """choose_kernel for every op, in graph order."""
    return [choose_kernel(graph, op, kernels) for op in graph.ops]
