"""Randomized cases for the fast (_dsp) kernels, shared by the host tests (tests/test_dsp_kernels.py) and the
QEMU firmware image (tests/dsp_firmware.py, tests/test_dsp_firmware.py).

`make_cases(seed)` draws, from a seeded numpy RNG, cases for the nine fast kernels (conv / depthwise / fully
connected with int8 and int4 filters, ADD, average and max pooling). Every case is what an export hands the
fast kernel: a one-op QGraph (so QGraph.validate checks it) and `choose_kernel(graph, op, "dsp")`, which gives
the fast filter layout, kernel_bias and scratch size (ADD: the table and the input order; pooling: the kernel's
name only, as the pooling kernels take the portable parameters and fall back to the portable code themselves).
A draw for which the export would run the portable kernel instead (e.g. bounds that `_bounds_reason` rejects)
is redrawn, never run as a fast case;
`make_portable_add_cases` gives ADD parameters the export refuses (left_shift != 20, no input at the real
multiplier 0.5, an output shift the fast epilogue cannot fold), for the host tests of that decision.

Each case carries the numpy twin's output (flexround_mcu/sim). Each kernel's cases follow a fixed schedule of
categories (SCHEDULE, so coverage does not depend on luck; `coverage_problems` checks it) with everything else
random: all 4 stride pairs x all 16 patterns of zero / non-zero padding per side for conv and depthwise; 1x1
filters with C_in % 4 (int8) or % 8 (int4) == 0, no padding and strides 1 and 2, and 1x1 filters without
(C_in not a multiple, padding, the output overhanging the input); 3x3 (SAME and other paddings), 5x5, 10x4
(DS-CNN's first layer), dilation, 64 and 63 taps (depthwise), 16..33 channels; odd channel and pixel counts,
batch > 1; FC depths that are multiples of 8, of 4 only, and neither; input and output offsets at the int8
extremes, per-tensor (with decoy pairs after the real one) and per-channel requantization, a zero multiplier,
left shifts, activation clamps; TFLM-prepared ADD parameters with the half-scale input first or second, equal
scales and non-TFLM multipliers. "ties" cases (small accumulators and right shifts of 1 or 2; for ADD equal
input scales and an output scale twice theirs) hold many exact negative ties of the rounding divide, which a
wrong tie rule (-DFRK_TEST_BREAK_DSP_ROUNDING for the epilogue of conv / depthwise / FC) gets wrong.

Pooling ("avgpool", "maxpool"): random windows 1..4 x 1..4 over every pattern of zero / non-zero padding per side
(at most k - 1, so every window holds a real pixel) and all 4 stride pairs; global pools (8x8 over 8x8 and 25x5
over 25x5 at 64 channels, as in ResNet-8 and DS-CNN); 2x2 and 3x3 windows with strides 1 and 2, VALID and
TensorFlow SAME (partial windows at the borders, smaller counts); C % 4 == 0 (the four-channel fast path) and
not (the kernels' own portable fallback); windows of 255 taps (the SXTAB16 sums' limit, at all -128 / all 127)
and of more than 255 (the average's fallback, e.g. 16x17); int8 extremes; mixed small values of both signs (for
the average many exact halves, negative and positive, at counts 2 and 4 and others; for the maximum the signed
lane compare); activation clamps that cut real outputs; batch > 1; for the maximum windows wholly in the
padding (giving act_min).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from flexround_mcu.codegen.kernels import KernelChoice, choose_kernel
from flexround_mcu.packing import pack_bits
from flexround_mcu.ir import AddParams, ConvParams, FullyConnectedParams, Op, OpKind, PoolParams, QGraph, Tensor
from flexround_mcu.prepare import add_params
from flexround_mcu.sim.convolve import (convolve_s2, convolve_s4, convolve_s8, depthwise_conv_s4, depthwise_conv_s8,
                                        fully_connected_s2, fully_connected_s4, fully_connected_s8)
from flexround_mcu.sim.elementwise import elementwise_add_s8
from flexround_mcu.sim.pooling import avgpool_s8, max_pool_s8

KINDS = ("conv_s8", "conv_s4", "dw_s8", "dw_s4", "fc_s8", "fc_s4", "add", "avgpool", "maxpool", "conv_s2", "fc_s2")
S2_KINDS = ("conv_s2", "fc_s2")  # dsp cores only: the mve set runs 2-bit conv / FC on these too
BITS = {"s8": 8, "s4": 4, "s2": 2}
WEIGHT_LIMITS = {8: (-127, 127), 4: (-8, 7), 2: (-2, 1)}
GROUP = {8: 4, 4: 8, 2: 16}  # values per weight word of the dsp conv / FC cores
POOL_KINDS = ("avgpool", "maxpool")
STRIDES = ((1, 1), (1, 2), (2, 1), (2, 2))
PAD_PATTERNS = tuple(itertools.product((False, True), repeat=4))  # (top, left, bottom, right) non-zero?
EPILOGUE_KINDS = KINDS[:6] + S2_KINDS  # the kernels whose requantization is frk__output_stage_dsp

# The categories of each kernel and how many cases each gets (the "general" ones enumerate stride x padding).
SCHEDULE = {
    "conv": (("general", 64), ("1x1-aligned", 8), ("1x1-other", 8), ("3x3", 8), ("10x4", 6), ("dilated", 4),
             ("wide", 4), ("ties", 8)),
    "dw": (("general", 64), ("3x3", 6), ("3x3-s1", 16), ("5x5", 6), ("1x1", 2), ("64-taps", 2), ("63-taps", 2),
           ("wide", 2), ("ties", 8)),
    "fc": (("depth%8", 10), ("depth%4", 10), ("depth-odd", 14), ("wide", 2), ("ties", 8)),
    "add": (("tflm", 28), ("tflm-equal-scales", 4), ("non-tflm", 8), ("ties", 4)),
    "avgpool": (("general", 16), ("global", 6), ("2x2", 4), ("3x3", 8), ("c-other", 6), ("255-taps", 2),
                ("taps>255", 3), ("extremes", 4), ("ties", 8), ("clamped", 4), ("batch", 3)),
    "maxpool": (("general", 16), ("global", 6), ("2x2", 4), ("3x3", 8), ("c-other", 6), ("255-taps", 2),
                ("big-window", 2), ("extremes", 4), ("mixed-signs", 6), ("clamped", 4), ("batch", 3),
                ("padding-only", 2)),
    # parameters for which the export runs the portable ADD (checked on the host, not run as fast cases)
    "add-portable": (("left-shift", 4), ("out-shift", 4), ("no-half", 4)),
}


@dataclass
class DspCase:
    """One call of a fast kernel and of its portable twin.

    args: the numpy twin's keyword arguments in the s8 form (for s4 kinds `w` holds the unpacked int4 values;
    `portable_filter` gives the packed bytes the portable kernel takes). choice: choose_kernel's result (for pooling
    only the name: args are the twin's x, filter_hw, stride, padding, act_min, act_max). expected: the twin's
    output."""

    index: int
    kind: str
    label: str
    args: dict
    expected: np.ndarray
    choice: KernelChoice | None = None
    decoy_seed: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.kind.split("_")[0]

    @property
    def bits(self) -> int:
        return BITS.get(self.kind.split("_")[-1], 8)

    @property
    def name(self) -> str:
        return f"{self.index}:{self.kind}/{self.label}"

    @property
    def is_pool(self) -> bool:
        return self.kind in POOL_KINDS

    def portable_filter(self) -> np.ndarray:
        """The filter as the portable kernel takes it: int8 values, or int4 / int2 packed two / four per byte."""
        w = self.args["w"]
        return pack_bits(w, self.bits) if self.bits < 8 else w

    def twin_args(self) -> dict:
        """The numpy twin's (and tests/c_kernels.Kernels') keyword arguments: s4 kinds get w_packed."""
        if self.bits == 8 or self.kind == "add" or self.is_pool:
            return dict(self.args)
        out = {k: v for k, v in self.args.items() if k != "w"}
        return dict(out, w_packed=pack_bits(self.args["w"], self.bits), filter_shape=self.args["w"].shape)


def twin(kind: str):
    return {"conv_s8": convolve_s8, "conv_s4": convolve_s4, "dw_s8": depthwise_conv_s8, "dw_s4": depthwise_conv_s4,
            "fc_s8": fully_connected_s8, "fc_s4": fully_connected_s4, "add": elementwise_add_s8,
            "conv_s2": convolve_s2, "fc_s2": fully_connected_s2,
            "avgpool": avgpool_s8, "maxpool": max_pool_s8}[kind]


# ------------------------------------------------------------------------------------------------ drawing
class Draw:
    """Random building blocks on one numpy Generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        return int(self.rng.integers(lo, hi + 1))

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def zero_point(self) -> int:
        """Often an int8 extreme (so input_offset = -zp reaches -127 and 128), sometimes 0."""
        r = self.rng.random()
        if r < 0.4:
            return self.pick([-128, 127])
        if r < 0.5:
            return 0
        return self.int(-128, 127)

    def act_range(self) -> tuple[int, int]:
        kind = self.pick(["full", "full", "full", "relu", "relu6", "high", "narrow", "any"])
        if kind == "full":
            return -128, 127
        if kind == "relu":
            return self.int(-128, 20), 127
        if kind == "relu6":  # ReLU6-like: both ends inside
            lo = self.int(-128, 0)
            return lo, min(127, lo + self.int(20, 120))
        if kind == "high":
            return -128, self.int(-100, 126)
        if kind == "narrow":
            lo = self.int(-127, 120)
            return lo, lo + self.int(0, 6)
        lo = self.int(-128, 127)
        return lo, self.int(lo, 127)

    def values(self, shape, lo: int, hi: int, near: int | None = None) -> np.ndarray:
        """int8 values in [lo, hi]: mostly uniform, sometimes constant lo / hi, the two extremes, or (near given)
        within a few steps of `near` (inputs near the zero point give small accumulators)."""
        r = self.rng.random()
        if near is not None and r < 0.15:
            v = near + self.rng.integers(-3, 4, size=shape)
        elif r < 0.75:
            v = self.rng.integers(lo, hi + 1, size=shape)
        elif r < 0.83:
            v = np.full(shape, lo)
        elif r < 0.9:
            v = np.full(shape, hi)
        else:
            v = self.rng.choice(np.array([lo, hi]), size=shape)
        return np.clip(v, lo, hi).astype(np.int8)

    def weights(self, shape, bits: int) -> np.ndarray:
        lo, hi = WEIGHT_LIMITS[bits]
        if bits == 2:  # every draw is already a low width: all of [-2, 1] (the quantizer's grid), or [-1, 1]
            m = self.pick([1, 2])
            return self.rng.integers(-m, min(m, hi) + 1, size=shape).astype(np.int8)
        r = self.rng.random()
        if r < 0.1:  # a lower bit width's values in a wider container (3-bit layers use [-3, 3])
            m = self.pick([1, 3])
            return self.rng.integers(-m, m + 1, size=shape).astype(np.int8)
        return self.values(shape, lo, hi)

    def bias(self, cout: int) -> np.ndarray | None:
        kind = self.pick(["none", "big", "medium", "small"])
        if kind == "none":
            return None
        bound = {"big": 2**20, "medium": 2**14, "small": 300}[kind]
        return self.rng.integers(-bound, bound + 1, size=cout).astype(np.int32)

    def multiplier(self) -> int:
        r = self.rng.random()
        if r < 0.15:
            return 1 << 30
        if r < 0.25:
            return 2**31 - 1
        return self.int(1 << 30, 2**31 - 1)

    def quant(self, cout: int, magnitude: float, ties: bool = False):
        """(multiplier, shift) per channel (int32 arrays of cout) or per tensor (1-element arrays).

        Fitted: the shift puts a typical accumulator at 2^4..2^7 after requantization, jittered per channel;
        sometimes raw shifts (-12..2, mostly saturating) instead; ties: shifts -1 / -2."""
        per_channel = self.chance(0.6)
        n = cout if per_channel else 1
        m = np.array([self.multiplier() for _ in range(n)], np.int64)
        if ties:
            s = self.rng.choice(np.array([-1, -1, -2]), size=n)
        elif self.chance(0.2):
            s = self.rng.integers(-12, 3, size=n)
        else:
            base = int(np.clip(round(self.int(4, 7) - np.log2(max(magnitude, 1.0))), -20, 2))
            s = np.clip(base + self.rng.integers(-1, 2, size=n), -20, 2)
        if per_channel and cout > 1 and self.chance(0.05):
            m[0], s[0] = 0, 0  # TFLite's encoding of a zero scale
        return m.astype(np.int32), s.astype(np.int32)


def accumulator_magnitude(x, w2d, input_offset, bias) -> float:
    """A rough typical |acc| for rows w2d (C_out, K) on inputs x (as in tests/test_c_kernels.py)."""
    xo = x.astype(np.float64) + input_offset
    w = w2d.astype(np.float64)
    coherent = abs(xo.mean()) * np.abs(w.sum(axis=1)).mean()
    spread = np.sqrt(w.shape[1]) * xo.std() * np.sqrt((w ** 2).mean())
    return coherent + spread + (0.0 if bias is None else float(np.abs(bias.astype(np.float64)).mean()))


def out_size(size: int, before: int, after: int, k: int, stride: int, dilation: int) -> int:
    return (size + before + after - ((k - 1) * dilation + 1)) // stride + 1


def same_padding(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


# ------------------------------------------------------------------------------------------------ graphs
def _tensor(name, shape, dtype, zp=0, data=None, channels=1, axis=0):
    return Tensor(name, tuple(shape), dtype, np.ones(channels, np.float32), np.zeros(channels, np.int64) + zp,
                  quantized_dim=axis, data=data)


def one_op_graph(kind: str, args: dict, y_shape) -> tuple[QGraph, Op]:
    """The one-op QGraph an export of this case would hold (validated by QGraph's constructor)."""
    family, bits = kind.split("_")
    dtype = {"s4": "int4", "s2": "int2"}.get(bits, "int8")
    w = args["w"]
    depthwise = family == "dw"
    cout = w.shape[-1] if depthwise else w.shape[0]
    x = args["x"]
    tensors = [_tensor("x", x.shape, "int8", zp=-args["input_offset"]),
               _tensor("w", w.shape, dtype, data=w, channels=cout, axis=3 if depthwise else 0),
               _tensor("y", y_shape, "int8", zp=args["output_offset"])]
    bias_idx = -1
    if args["bias"] is not None:
        tensors.append(_tensor("b", (cout,), "int32", data=args["bias"], channels=cout))
        bias_idx = 3
    m = np.atleast_1d(args["multiplier"]).astype(np.int64)
    s = np.atleast_1d(args["shift"]).astype(np.int64)
    if family == "fc":
        params = FullyConnectedParams(args["act_min"], args["act_max"], m, s)
        op_kind = OpKind.FULLY_CONNECTED
    else:
        params = ConvParams(tuple(args["stride"]), tuple(args["dilation"]), tuple(args["padding"]), args["act_min"],
                            args["act_max"], m, s, args.get("depth_multiplier", 1))
        op_kind = OpKind.DEPTHWISE_CONV_2D if depthwise else OpKind.CONV_2D
    op = Op(op_kind, (0, 1, bias_idx), (2,), params, name=kind)
    return QGraph(tensors, [op], [0], [2], name=f"dsp_{kind}"), op


def conv_output_shape(kind: str, args: dict):
    x, w = args["x"], args["w"]
    if kind.startswith("fc"):
        return (x.shape[0], w.shape[0])
    n, h, wd, _ = x.shape
    kh, kw = w.shape[1:3]
    cout = w.shape[3] if kind.startswith("dw") else w.shape[0]
    pt, pl, pb, pr = args["padding"]
    return (n, out_size(h, pt, pb, kh, args["stride"][0], args["dilation"][0]),
            out_size(wd, pl, pr, kw, args["stride"][1], args["dilation"][1]), cout)


# ------------------------------------------------------------------------------------------------ conv / dw
def _window_sizes(d: Draw, k: int, dilation: int, before: int, after: int, max_size: int) -> int:
    eff = (k - 1) * dilation + 1
    lo = max(1, eff - before - after)
    return d.int(lo, max(lo, max_size))


def _conv_shape(d: Draw, family: str, bits: int, label: str, j: int) -> dict:
    """Shapes, stride, dilation and padding of one conv (family "conv") or depthwise ("dw") case."""
    group = GROUP[bits]
    n = 2 if d.chance(0.25) else 1
    dil = (1, 1)
    if family == "conv":
        cin, cout = d.int(1, 9), d.int(1, 9)
    else:
        cin = d.pick([4, 8, 12])
    max_size = 7
    if label == "general":
        stride = STRIDES[j % 4]
        pattern = PAD_PATTERNS[(j // 4) % 16]
        kh, kw = d.int(1, 4), d.int(1, 4)
        if d.chance(0.25):
            dil = (d.int(1, 2), d.int(1, 2))
        pad = tuple(d.int(1, 2) if p else 0 for p in pattern)
    elif label in ("1x1-aligned", "1x1-other", "1x1"):
        kh = kw = 1
        stride = STRIDES[j % 4]
        pad = (0, 0, 0, 0)
        if family == "conv":
            cin = group * d.int(1, 3)
            if label == "1x1-other":
                variant = j % 4
                if variant == 0:      # C_in not a multiple of the group
                    cin = group * d.int(0, 2) + d.int(1, group - 1)
                elif variant == 1:    # padding only at the bottom / right: the output overhangs the input
                    pad = (0, 0, d.int(0, 1), 1)
                elif variant == 2:
                    pad = (1, 0, 0, 0)
                else:
                    pad = (0, 1, 1, 0)
        max_size = 8
    elif label in ("3x3", "5x5"):
        kh = kw = 3 if label == "3x3" else 5
        stride = STRIDES[j % 4]
        max_size = 9
        h_w = (d.int(1, max_size), d.int(1, max_size))
        mode = j // 4 % 2
        if mode == 0:  # TensorFlow SAME
            ph, pw = same_padding(h_w[0], kh, stride[0]), same_padding(h_w[1], kw, stride[1])
            pad = (ph[0], pw[0], ph[1], pw[1])
        else:
            pad = tuple(d.int(0, 2) for _ in range(4))
            h_w = (_window_sizes(d, kh, 1, pad[0], pad[2], max_size), _window_sizes(d, kw, 1, pad[1], pad[3], max_size))
    elif label == "3x3-s1":  # DS-CNN's depthwise shape: every padding pattern once
        kh = kw = 3
        stride = (1, 1)
        pattern = PAD_PATTERNS[j % 16]
        pad = tuple(d.int(1, 2) if p else 0 for p in pattern)
        max_size = 9
        h_w = (_window_sizes(d, kh, 1, pad[0], pad[2], max_size), _window_sizes(d, kw, 1, pad[1], pad[3], max_size))
        cin = d.pick([4, 8, 16])
    elif label == "10x4":  # DS-CNN's first layer (input 49x10x1, stride 2x2, SAME)
        kh, kw = 10, 4
        stride = STRIDES[j % 4]
        cin = d.int(1, 3)
        cout = d.int(1, 9)
        h_w = (d.int(10, 14), d.int(4, 7))
        if j % 2 == 0:
            ph, pw = same_padding(h_w[0], kh, stride[0]), same_padding(h_w[1], kw, stride[1])
            pad = (ph[0], pw[0], ph[1], pw[1])
        else:
            pad = (0, 0, 0, 0)
    elif label == "dilated":
        kh, kw = d.int(2, 3), d.int(2, 3)
        stride = STRIDES[j % 4]
        dil = (2, d.int(1, 3))
        pad = tuple(d.int(0, 2) for _ in range(4))
        max_size = 8
    elif label in ("64-taps", "63-taps"):
        kh, kw = (8, 8) if label == "64-taps" else (7, 9)
        stride = STRIDES[j % 4]
        pad = tuple(d.int(0, 3) for _ in range(4))
        max_size = 10
    elif label == "wide":
        kh, kw = d.pick([(1, 1), (3, 3), (2, 3)])
        stride = STRIDES[j % 4]
        pad = tuple(d.int(0, 1) for _ in range(4))
        if family == "conv":
            cin, cout = d.pick([16, 17, 32, 33]), d.pick([16, 17])
        else:
            cin = d.pick([16, 32])
        max_size = 5
    elif label == "ties":
        kh, kw = d.pick([(1, 1), (3, 3), (2, 2), (1, 3)])
        stride = STRIDES[j % 4]
        pad = tuple(d.int(0, 1) for _ in range(4))
        if family == "conv":
            cin = d.int(1, 5)
    else:
        raise ValueError(label)
    if label in ("3x3", "3x3-s1", "5x5", "10x4"):
        h, w = h_w
    else:
        h = _window_sizes(d, kh, dil[0], pad[0], pad[2], max_size)
        w = _window_sizes(d, kw, dil[1], pad[1], pad[3], max_size)
    if family == "dw":
        cout = cin
    return dict(n=n, h=h, w=w, cin=cin, cout=cout, kh=kh, kw=kw, stride=stride, dilation=dil, padding=pad)


def _conv_case(d: Draw, kind: str, label: str, j: int) -> dict:
    family, bits = kind.split("_")[0], BITS[kind.split("_")[1]]
    sh = _conv_shape(d, family, bits, label, j)
    ties = label == "ties"
    zp_in = d.zero_point()
    input_offset = -zp_in
    x = d.values((sh["n"], sh["h"], sh["w"], sh["cin"]), -128, 127, near=zp_in)
    wshape = (1, sh["kh"], sh["kw"], sh["cout"]) if family == "dw" else (sh["cout"], sh["kh"], sh["kw"], sh["cin"])
    if ties:
        x = np.clip(zp_in + d.rng.integers(-3, 4, size=x.shape), -128, 127).astype(np.int8)
        w = np.clip(d.rng.integers(-2, 3, size=wshape), *WEIGHT_LIMITS[bits]).astype(np.int8)
        bias = d.rng.integers(-40, 41, size=sh["cout"]).astype(np.int32) if d.chance(0.7) else None
    else:
        w = d.weights(wshape, bits)
        bias = d.bias(sh["cout"])
    w2d = w.reshape(-1, sh["cout"]).T if family == "dw" else w.reshape(sh["cout"], -1)
    mult, shift = d.quant(sh["cout"], accumulator_magnitude(x, w2d, input_offset, bias), ties=ties)
    act_min, act_max = (-128, 127) if ties and d.chance(0.7) else d.act_range()
    args = dict(x=x, w=w, bias=bias, input_offset=input_offset,
                output_offset=d.int(-20, 20) if ties else d.zero_point(), stride=sh["stride"],
                dilation=sh["dilation"], padding=sh["padding"], act_min=act_min, act_max=act_max,
                multiplier=mult, shift=shift)
    if family == "dw":
        args["depth_multiplier"] = 1
    return args


def _fc_case(d: Draw, kind: str, label: str, j: int) -> dict:
    bits = BITS[kind.split("_")[1]]
    batch = d.pick([1, 1, 2, 3])
    cout = d.pick([1, 2, 3, 5, 7, 8, 10, 12, 13])
    if label == "depth%8":
        depth = 8 * d.pick([1, 2, 3, 4, 8, 16, 40])
    elif label == "depth%4":
        depth = 8 * d.pick([0, 1, 2, 5, 12]) + 4
    elif label == "depth-odd":
        depth = d.pick([1, 2, 3, 5, 6, 7, 9, 10, 15, 17, 22, 37, 63, 130, 257])
    elif label == "wide":
        depth, cout = d.pick([640, 1000, 1033]), d.pick([10, 12])
        batch = 1
    elif label == "ties":
        depth = d.int(1, 24)
    else:
        raise ValueError(label)
    ties = label == "ties"
    zp_in = d.zero_point()
    input_offset = -zp_in
    if ties:
        x = np.clip(zp_in + d.rng.integers(-3, 4, size=(batch, depth)), -128, 127).astype(np.int8)
        w = np.clip(d.rng.integers(-2, 3, size=(cout, depth)), *WEIGHT_LIMITS[bits]).astype(np.int8)
        bias = d.rng.integers(-40, 41, size=cout).astype(np.int32) if d.chance(0.7) else None
    else:
        x = d.values((batch, depth), -128, 127, near=zp_in)
        w = d.weights((cout, depth), bits)
        bias = d.bias(cout)
    mult, shift = d.quant(cout, accumulator_magnitude(x, w, input_offset, bias), ties=ties)
    act_min, act_max = (-128, 127) if ties and d.chance(0.7) else d.act_range()
    return dict(x=x, w=w, bias=bias, input_offset=input_offset,
                output_offset=d.int(-20, 20) if ties else d.zero_point(), act_min=act_min, act_max=act_max,
                multiplier=mult, shift=shift)


def _add_case(d: Draw, label: str, j: int) -> dict:
    """ADD parameters; the half-scale (larger-scale) input is input1 for even j and input2 for odd j."""
    size = d.pick([1, 2, 3, 7, 16, 33, 64, 101, 250])
    zp1, zp2, zpo = d.zero_point(), d.zero_point(), d.zero_point()
    x1 = d.values((size,), -128, 127, near=zp1)
    x2 = d.values((size,), -128, 127, near=zp2)
    act_min, act_max = d.act_range()
    big = float(10 ** d.rng.uniform(-3, -1))
    small = big * float(2 ** -d.rng.uniform(0, 6))
    s1, s2 = (big, small) if j % 2 == 0 else (small, big)
    if label == "tflm":
        p = add_params(s1, s2, big * float(2 ** d.rng.uniform(-2, 2.5)))
    elif label == "tflm-equal-scales":  # both inputs at the real multiplier 0.5
        p = add_params(big, big, big * float(2 ** d.rng.uniform(-1, 2)))
    elif label == "ties":  # equal input scales, output scale twice theirs: y = RDBPOT((v1 + v2) * 2^18, 19),
        s = float(2.0 ** -d.int(3, 8))  # a negative tie for every negative odd v1 + v2 (exact float32 scales)
        p = add_params(s, s, 2 * s)
        zp1, zp2, zpo = d.int(-30, 30), d.int(-30, 30), d.int(-20, 20)  # v1 + v2 of both signs
        size = d.pick([64, 101, 250])
        x1 = d.rng.integers(-128, 128, size).astype(np.int8)
        x2 = d.rng.integers(-128, 128, size).astype(np.int8)
        act_min, act_max = (-128, 127) if j % 2 == 0 else (d.int(-128, -60), d.int(60, 127))
    elif label == "non-tflm":  # one input at 0.5, the other any multiplier with a shift in [-4, 0]
        p = add_params(s1, s2, big * float(2 ** d.rng.uniform(-2, 2)))
        other = "input2" if j % 2 == 0 else "input1"
        p[f"{other}_multiplier"], p[f"{other}_shift"] = d.multiplier(), d.int(-4, 0)
    elif label == "left-shift":  # not 20: the export runs the portable kernel
        p = add_params(s1, s2, big * float(2 ** d.rng.uniform(-3, 0)), left_shift=d.int(8, 19))
    elif label == "out-shift":  # the export runs the portable kernel: an output shift >= 0 (a tiny output
        if j % 2 == 0:          # scale), or |zp_out| * 2^-shift >= 2^29 (a huge one with zp_out at an extreme)
            p = add_params(s1, s2, big * float(2 ** d.rng.uniform(-26, -21)))
        else:
            p = add_params(s1, s2, big * float(2 ** d.rng.uniform(5, 8)))
            zpo = d.pick([-128, 127])
    elif label == "no-half":  # neither input at 0.5: the export runs the portable kernel
        p = add_params(s1, s2, big * float(2 ** d.rng.uniform(-2, 2)))
        p["input1_multiplier"], p["input1_shift"] = d.multiplier(), d.int(-4, -1)
        p["input2_multiplier"], p["input2_shift"] = d.multiplier(), d.int(-4, -1)
    else:
        raise ValueError(label)
    return dict(x1=x1, x2=x2, input1_offset=-zp1, input2_offset=-zp2, output_offset=zpo,
                **{k: int(v) for k, v in p.items()}, act_min=act_min, act_max=act_max)


def add_graph(args: dict) -> tuple[QGraph, Op]:
    size = args["x1"].size
    tensors = [_tensor("x1", (1, size), "int8", zp=-args["input1_offset"]),
               _tensor("x2", (1, size), "int8", zp=-args["input2_offset"]),
               _tensor("y", (1, size), "int8", zp=args["output_offset"])]
    p = AddParams(**{k: args[k] for k in ("left_shift", "input1_multiplier", "input1_shift", "input2_multiplier",
                                          "input2_shift", "output_multiplier", "output_shift", "act_min",
                                          "act_max")})
    op = Op(OpKind.ADD, (0, 1), (2,), p, name="add")
    return QGraph(tensors, [op], [0, 1], [2], name="dsp_add"), op


# ------------------------------------------------------------------------------------------------ pooling
ODD_CHANNELS = (1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 15)  # C % 4 != 0: the pooling kernels' portable fallback


def _pool_pad(d: Draw, k: int, nonzero: bool) -> int:
    """A padding of 1..k-1 (nonzero, k > 1) or 0: at most k - 1, so every window holds a real pixel."""
    return d.int(1, k - 1) if nonzero and k > 1 else 0


# the "ties" cases: j < 5 with C % 4 == 0, the rest on the fallback; 0, 1 and 7 VALID (0) or padded at the end (1,
# 7), the others SAME (2x2 at stride 1: counts 4, 2 and 1; 3x3: 9, 6 and 4)
TIE_WINDOWS = ((1, 2), (2, 1), (2, 2), (2, 2), (3, 3), (2, 2), (2, 2), (2, 2))
TIE_STRIDES = ((1, 2), (2, 1), (1, 1), (2, 2), (1, 1), (1, 1), (2, 2), (1, 1))


def _pool_case(d: Draw, kind: str, label: str, j: int) -> dict:
    """The twin's arguments of one AVERAGE_POOL_2D ("avgpool") or MAX_POOL_2D ("maxpool") case."""
    n = 2 if d.chance(0.2) else 1
    c = d.pick([4, 8, 12, 16]) if d.chance(0.8) else d.pick(ODD_CHANNELS)
    act = (-128, 127) if d.chance(0.5) else d.act_range()
    fill = None  # the input's values: None = d.values over the int8 range, else a callable of the shape
    stride, pad = STRIDES[j % 4], None
    hw = None
    if label in ("general", "c-other", "extremes", "ties", "mixed-signs", "clamped", "batch"):
        if label == "general":  # every pattern of zero / non-zero padding per side, the strides in turn
            top, left, bottom, right = PAD_PATTERNS[j % 16]
            kh = d.int(2, 4) if (top or bottom) else d.int(1, 4)
            kw = d.int(2, 4) if (left or right) else d.int(1, 4)
            pad = (_pool_pad(d, kh, top), _pool_pad(d, kw, left), _pool_pad(d, kh, bottom), _pool_pad(d, kw, right))
        elif label == "ties":  # small values of both signs: many sums at .5 of counts 2 and 4 (and 6)
            kh, kw = TIE_WINDOWS[j % 8]
            stride = TIE_STRIDES[j % 8]
            c = d.pick([4, 8]) if j % 8 < 5 else d.pick(ODD_CHANNELS)
            act = (-128, 127)
            centre = d.int(-1, 1)  # more negative or more positive sums
            fill = lambda shape: (centre + d.rng.integers(-3, 4, size=shape)).astype(np.int8)  # noqa: E731
        elif label == "mixed-signs":  # the maximum's signed lane compare: -1 (0xFF) against 0 and 1
            kh, kw = d.int(1, 3), d.int(2, 3)
            c = d.pick([4, 8]) if j < 4 else d.pick(ODD_CHANNELS)
            act = (-128, 127)
            pool = np.array([[-2, -1, 0, 1], [-1, 0, 1, -1], [-128, -1, 0, 1, 127], [-3, -2, -1, 2]][j % 4])
            fill = lambda shape: d.rng.choice(pool, size=shape).astype(np.int8)  # noqa: E731
            pad = tuple(_pool_pad(d, k, d.chance(0.6)) for k in (kh, kw, kh, kw))
        else:
            kh, kw = d.int(1, 3), d.int(1, 3)
            if label == "c-other":
                c = d.pick(ODD_CHANNELS)
            elif label == "extremes":
                kh, kw = d.int(2, 3), d.int(2, 3)
                c = d.pick([4, 8])
                act = (-128, 127)
                ends = [np.array([-128]), np.array([127]), np.array([-128, 127]),
                        np.array([-128, -127, 126, 127])][j % 4]
                fill = lambda shape: d.rng.choice(ends, size=shape).astype(np.int8)  # noqa: E731
            elif label == "clamped":  # clamps that cut real outputs (the inputs cover the int8 range)
                lo = (d.int(-20, 20), d.int(-60, -10), d.int(-10, 10), -128)[j % 4]
                hi = (127, lo + d.int(40, 80), lo + d.int(0, 4), d.int(-30, 30))[j % 4]  # ReLU, ReLU6, narrow, high
                act = (lo, hi)
                c = d.pick([4, 8, 12]) if j < 3 else d.pick(ODD_CHANNELS)
                fill = lambda shape: d.rng.integers(-128, 128, size=shape).astype(np.int8)  # noqa: E731
            elif label == "batch":
                n = (2, 3, 2)[j % 3]
                c = d.pick([4, 8]) if j < 2 else d.pick(ODD_CHANNELS)
            pad = tuple(_pool_pad(d, k, d.chance(0.6)) for k in (kh, kw, kh, kw))
        if label == "ties" and j % 8 not in (0, 1, 7):  # TensorFlow SAME: partial windows at the borders
            hw = (d.int(3, 7), d.int(3, 7))
            ph, pw = same_padding(hw[0], kh, stride[0]), same_padding(hw[1], kw, stride[1])
            pad = (ph[0], pw[0], ph[1], pw[1])
        elif label == "ties":
            pad = (0, 0, 0, 0) if j % 8 == 0 else (0, 0, int(kh > 1), int(kw > 1))
    elif label == "global":  # one output per channel, as ResNet-8's (8x8x64) and DS-CNN's (25x5x64)
        (hw, c) = [((8, 8), 64), ((25, 5), 64), ((d.int(1, 9), d.int(1, 9)), d.pick(ODD_CHANNELS)),
                   ((1, 1), d.pick([4, 8])), ((8, 8), d.pick(ODD_CHANNELS)), ((d.int(2, 9), d.int(2, 9)), 12)][j % 6]
        n = 2 if j % 6 == 5 else 1
        kh, kw = hw
        stride, pad = (1, 1), (0, 0, 0, 0)
    elif label in ("2x2", "3x3"):
        kh = kw = int(label[0])
        c = d.pick(ODD_CHANNELS) if (label, j) in (("2x2", 3), ("3x3", 5), ("3x3", 7)) else d.pick([4, 8, 12, 16])
        if label == "2x2":
            s = 1 + j % 2
            stride, same = (s, s), j % 4 >= 2
        else:
            same = j % 8 >= 4
        if same:  # odd sizes: SAME pads at both borders (3x3) or at the bottom / right (2x2, stride 2)
            hw = (d.pick([3, 5, 7, 9, 4, 6]), d.pick([3, 5, 7, 9, 4, 6]))
            ph, pw = same_padding(hw[0], kh, stride[0]), same_padding(hw[1], kw, stride[1])
            pad = (ph[0], pw[0], ph[1], pw[1])
        else:
            hw = (d.int(kh, 9), d.int(kw, 9))
            pad = (0, 0, 0, 0)
    elif label == "255-taps":  # 15 x 17 = 255: the fast average's limit; |sum| reaches 255 * 128 = 32640
        kh, kw = 15, 17
        hw, stride, pad = (15, 17), (1, 1), (0, 0, 1, 0)  # one full window (255 taps), one of 14 x 17
        c = (4, 8)[j % 2]
        act = (-128, 127)
        v = (-128, 127)[j % 2]
        fill = lambda shape: np.full(shape, v, np.int8)  # noqa: E731
    elif label in ("taps>255", "big-window"):  # the average's fallback; the maximum stays on the fast path
        kh, kw, hw, stride, pad, c = [(16, 17, (16, 17), (1, 1), (0, 0, 0, 0), 4),
                                      (17, 16, (17, 18), (1, 2), (1, 0, 0, 1), 4),
                                      (16, 16, (18, 17), (2, 1), (0, 0, 1, 1), 8)][j % 3]
        if label == "taps>255" and j % 3 < 2:  # sums beyond int16: a halfword sum of these would wrap
            fill = [lambda shape: np.full(shape, -128, np.int8),
                    lambda shape: d.rng.choice(np.array([126, 127]), size=shape).astype(np.int8)][j % 3]
    elif label == "padding-only":  # the maximum of no tap: clamp(-128) = act_min (TFLM rejects it for the average)
        kh, kw, pad, stride = [(1, 1, (2, 2, 2, 1), (1, 1)), (2, 2, (2, 2, 3, 2), (2, 2))][j % 2]
        hw = (d.int(1, 4), d.int(1, 4))
        c = d.pick([4, 8])
        act = (-128, 127) if j % 2 == 0 else (d.int(-60, -1), d.int(20, 127))
    else:
        raise ValueError(label)
    if hw is None:
        hw = (_window_sizes(d, kh, 1, pad[0], pad[2], 7), _window_sizes(d, kw, 1, pad[1], pad[3], 7))
    shape = (n, hw[0], hw[1], c)
    x = d.values(shape, -128, 127) if fill is None else fill(shape)
    return dict(x=x, filter_hw=(kh, kw), stride=tuple(stride), padding=tuple(pad), act_min=int(act[0]),
                act_max=int(act[1]))


def pool_output_shape(args: dict) -> tuple[int, int, int, int]:
    n, h, w, c = args["x"].shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = args["filter_hw"], args["stride"], args["padding"]
    return (n, out_size(h, pt, pb, kh, sh, 1), out_size(w, pl, pr, kw, sw, 1), c)


def pool_graph(kind: str, args: dict) -> tuple[QGraph, Op]:
    """The one-op QGraph of an AVERAGE_POOL_2D / MAX_POOL_2D case (input and output share scale and zero point)."""
    x = args["x"]
    tensors = [_tensor("x", x.shape, "int8"), _tensor("y", pool_output_shape(args), "int8")]
    p = PoolParams(tuple(args["filter_hw"]), tuple(args["stride"]), tuple(args["padding"]), args["act_min"],
                   args["act_max"])
    op = Op(OpKind.AVERAGE_POOL_2D if kind == "avgpool" else OpKind.MAX_POOL_2D, (0,), (1,), p, name=kind)
    return QGraph(tensors, [op], [0], [1], name=f"dsp_{kind}"), op


def pool_windows(args: dict) -> tuple[np.ndarray, np.ndarray]:
    """(sums, counts): per output (n, oy, ox, c) the sum of the raw inputs over the window's taps inside the input,
    and per output position (oy, ox) the number of those taps (0 for a window wholly in the padding)."""
    x = args["x"].astype(np.int64)
    n, oh, ow, c = pool_output_shape(args)
    (kh, kw), (sh, sw), (pt, pl, _, _) = args["filter_hw"], args["stride"], args["padding"]
    sums = np.zeros((n, oh, ow, c), np.int64)
    counts = np.zeros((oh, ow), np.int64)
    for oy in range(oh):
        y0 = oy * sh - pt
        rows = x[:, max(y0, 0):max(min(y0 + kh, x.shape[1]), 0)]
        for ox in range(ow):
            x0 = ox * sw - pl
            win = rows[:, :, max(x0, 0):max(min(x0 + kw, x.shape[2]), 0)]
            counts[oy, ox] = win.shape[1] * win.shape[2]
            sums[:, oy, ox] = win.sum(axis=(1, 2))
    return sums, counts


def average_ties(args: dict) -> np.ndarray:
    """(count, sign of the sum) of every output of an average pool whose mean is an exact half (a tie of the
    rounding: sum / count = k + 1/2)."""
    sums, counts = pool_windows(args)
    cnt = np.broadcast_to(counts[None, :, :, None], sums.shape)
    tie = (cnt > 0) & ((2 * np.abs(sums)) % np.maximum(2 * cnt, 1) == cnt)
    return np.stack([cnt[tie], np.sign(sums[tie])], axis=1)


# ------------------------------------------------------------------------------------------------ cases
def _schedule(kind: str):
    family = kind if kind in SCHEDULE else kind.split("_")[0]
    for label, count in SCHEDULE[family]:
        for j in range(count):
            yield label, j


def make_cases(seed: int = 0, kinds=KINDS, repeat: int = 1, max_tries: int = 50,
               kernels: str = "dsp") -> list[DspCase]:
    """repeat times the schedule of each kind in `kinds`, drawn from default_rng(seed), each case with the
    choice of an export with kernel set `kernels` ("dsp" or "mve")."""
    d = Draw(np.random.default_rng(seed))
    cases: list[DspCase] = []
    for kind in kinds:
        for _ in range(repeat):
            for label, j in _schedule(kind):
                cases.append(_make_one(d, kind, label, j, len(cases), max_tries, kernels=kernels))
    return cases


def make_portable_add_cases(seed: int = 0) -> list[DspCase]:
    """ADD parameters for which the export runs the portable kernel (choice.fast is False)."""
    d = Draw(np.random.default_rng(seed))
    cases: list[DspCase] = []
    for label, j in _schedule("add-portable"):
        cases.append(_make_one(d, "add", label, j, len(cases), 50, want_fast=False))
    return cases


def _make_one(d: Draw, kind: str, label: str, j: int, index: int, max_tries: int,
              want_fast: bool = True, kernels: str = "dsp") -> DspCase:
    decoy_seed = d.int(0, 2**31)
    for _ in range(max_tries):
        if kind == "add":
            args = _add_case(d, label, j)
            graph, op = add_graph(args)
        elif kind in POOL_KINDS:
            args = _pool_case(d, kind, label, j)
            graph, op = pool_graph(kind, args)
            if kind == "avgpool" and pool_windows(args)[1].min() < 1:  # outside TFLM's contract: redraw
                continue
        else:
            args = _fc_case(d, kind, label, j) if kind.startswith("fc") else _conv_case(d, kind, label, j)
            if kernels == "mve" and kind == "dw_s4":  # the Helium depthwise sums in int16: 128 * sum|w| < 2^15
                taps = int(np.prod(args["w"].shape[1:3]))
                args["w"] = np.clip(args["w"], -max(1, 255 // taps), max(1, 255 // taps)).astype(args["w"].dtype)
            graph, op = one_op_graph(kind, args, conv_output_shape(kind, args))
        choice = choose_kernel(graph, op, kernels)
        if choice.fast != want_fast:  # e.g. bounds the export rejects: not a case for the fast kernel
            continue
        if kernels != "dsp" and want_fast and not choice.name.endswith(f"_{kernels}"):
            continue  # a case for the other set's kernel (e.g. C % 8 != 0 for the Helium depthwise)
        case = DspCase(index, kind, label, args, np.empty(0, np.int8), choice, decoy_seed)
        case.expected = twin(kind)(**case.twin_args())
        return case
    raise RuntimeError(f"{kind}/{label}: no case with choice.fast == {want_fast} in {max_tries} draws")


def summary(cases) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in cases:
        out[c.kind] = out.get(c.kind, 0) + 1
    return out


def fast_epilogue(case) -> bool:
    """The case takes the kernels' per-tensor epilogue (frk__rq_tensor_for in frk_dsp_support.h): one pair, a
    right shift of 1..22 with |output_offset| * 2^e < 2^29."""
    if np.size(case.args["multiplier"]) != 1:
        return False
    e = -int(np.ravel(case.args["shift"])[0])
    return 1 <= e <= 22 and abs(int(case.args["output_offset"])) << e < 1 << 29


def stride1_3x3(case) -> bool:
    """A depthwise case of DS-CNN's and MobileNet's shape: 3x3, stride 1, no dilation."""
    return case.family == "dw" and case.args["w"].shape[1:3] == (3, 3) and tuple(case.args["stride"]) == (1, 1) \
        and tuple(case.args["dilation"]) == (1, 1)


def coverage_problems(cases) -> list[str]:
    """What the issue asks the cases to cover and these cases miss ([] when they cover it all)."""
    problems: list[str] = []

    def need(ok, what):
        if not ok:
            problems.append(what)

    by_kind = {k: [c for c in cases if c.kind == k] for k in KINDS}
    for kind in ("conv_s8", "conv_s4", "dw_s8", "dw_s4", "conv_s2"):
        cs = by_kind[kind]
        if not cs:  # a case set without this kind (the mve images)
            continue
        combos = {(tuple(c.args["stride"]), tuple(p > 0 for p in c.args["padding"])) for c in cs}
        need(len(combos) == 64, f"{kind}: {len(combos)} of the 4 strides x 16 padding patterns")
        shapes = {c.args["w"].shape[1:3] for c in cs}
        need({(1, 1), (3, 3)} <= shapes, f"{kind}: 1x1 and 3x3 filters")
        if kind.startswith("conv"):
            need((10, 4) in shapes, f"{kind}: a 10x4 filter")
            group = GROUP[BITS[kind.split("_")[1]]]
            ones = [c for c in cs if c.args["w"].shape[1:3] == (1, 1)]
            need(any(c.args["x"].shape[3] % group == 0 and c.args["padding"] == (0, 0, 0, 0) and
                     max(c.args["stride"]) == 2 for c in ones), f"{kind}: 1x1, C_in % {group} == 0, stride 2")
            need(any(c.args["x"].shape[3] % group == 0 and c.args["padding"] == (0, 0, 0, 0) and
                     c.args["stride"] == (1, 1) for c in ones), f"{kind}: 1x1, C_in % {group} == 0, stride 1")
            need(any(c.args["x"].shape[3] % 4 for c in cs), f"{kind}: C_in not a multiple of 4")
            need(any(c.args["w"].shape[0] % 2 for c in cs), f"{kind}: odd C_out")
        else:
            need({(5, 5), (8, 8), (7, 9)} <= shapes, f"{kind}: 5x5, 8x8 (64 taps) and 7x9 filters")
        need(any(max(c.args["dilation"]) > 1 for c in cs), f"{kind}: dilation")
        need(any(c.expected.shape[1] * c.expected.shape[2] % 2 for c in cs), f"{kind}: an odd pixel count")
        need(any(c.args["x"].shape[0] > 1 for c in cs), f"{kind}: batch > 1")
    for kind in ("fc_s8", "fc_s4", "fc_s2"):
        if not by_kind[kind]:
            continue
        depths = {c.args["w"].shape[1] for c in by_kind[kind]}
        need(any(d % 8 == 0 for d in depths) and any(d % 8 == 4 for d in depths), f"{kind}: depth % 8 == 0, 4")
        need(any(d % 4 for d in depths), f"{kind}: depth not a multiple of 4")
        need(any(c.args["x"].shape[0] > 1 for c in by_kind[kind]), f"{kind}: batch > 1")
        need(any(c.args["w"].shape[0] % 2 for c in by_kind[kind]), f"{kind}: odd C_out")
    for kind in EPILOGUE_KINDS:
        cs = by_kind[kind]
        need({-127, 128} <= {c.args["input_offset"] for c in cs}, f"{kind}: input offsets -127 and 128")
        need({-128, 127} <= {c.args["output_offset"] for c in cs}, f"{kind}: output offsets -128 and 127")
        need(any(np.size(c.args["multiplier"]) == 1 for c in cs), f"{kind}: per-tensor requantization")
        need(any(np.size(c.args["multiplier"]) > 1 for c in cs), f"{kind}: per-channel requantization")
        need(any((c.args["act_min"], c.args["act_max"]) != (-128, 127) for c in cs), f"{kind}: activation clamps")
        need(any(np.max(c.args["shift"]) > 0 for c in cs), f"{kind}: a left shift")
        need(any(c.label == "ties" for c in cs), f"{kind}: tie-heavy cases")
        clamped = [c for c in cs if (c.args["act_min"], c.args["act_max"]) != (-128, 127)]
        need(any(fast_epilogue(c) for c in clamped), f"{kind}: the per-tensor fast epilogue with a clamp")
        need(any(not fast_epilogue(c) for c in clamped), f"{kind}: the general epilogue with a clamp")
        if kind.startswith("dw"):
            # 3x3 per tensor (one asm loop over a pixel's channels, frk__dw9_pixel, with and without the clamp):
            # strided, and stride 1 in every way
            plane = [c for c in cs if stride1_3x3(c)]
            need(any(fast_epilogue(c) and c.args["w"].shape[1:3] == (3, 3) and not stride1_3x3(c) for c in clamped),
                 f"{kind}: 3x3 strided, per tensor, clamped")
            need(any(fast_epilogue(c) and c.args["w"].shape[1:3] == (3, 3) and c not in clamped for c in cs),
                 f"{kind}: 3x3, per tensor, no clamp")
            need(any(fast_epilogue(c) for c in plane) and any(np.size(c.args["multiplier"]) > 1 for c in plane),
                 f"{kind}: 3x3 stride 1 with per-tensor and per-channel requantization")
            need(any(c.expected.shape[2] % 2 for c in plane) and any(c.expected.shape[2] % 2 == 0 for c in plane),
                 f"{kind}: 3x3 stride 1 with odd and even output widths")
            need(len({tuple(p > 0 for p in c.args["padding"]) for c in plane}) >= 4,
                 f"{kind}: 3x3 stride 1 with several padding patterns")
            need(any(c.args["x"].shape[0] > 1 for c in plane), f"{kind}: 3x3 stride 1, batch > 1")
    adds = by_kind["add"]

    def half(c, i):  # input i at the real multiplier 0.5 (TFLM's larger-scale input)
        return c.args[f"input{i}_multiplier"] == 1 << 30 and c.args[f"input{i}_shift"] == 0
    need(any(half(c, 1) and not half(c, 2) for c in adds) and any(half(c, 2) and not half(c, 1) for c in adds),
         "add: the half-scale input first and second")
    need({-127, 128} <= {c.args["input1_offset"] for c in adds} | {c.args["input2_offset"] for c in adds},
         "add: input offsets -127 and 128")
    need(any(c.label == "ties" for c in adds), "add: tie-heavy cases")
    for kind in POOL_KINDS:
        problems += pool_coverage_problems(kind, by_kind[kind])
    return problems


def pool_coverage_problems(kind: str, cs) -> list[str]:
    """What the pooling cases of `kind` must cover (see the module's docstring)."""
    problems: list[str] = []

    def need(ok, what):
        if not ok:
            problems.append(f"{kind}: {what}")

    def taps(c):
        return c.args["filter_hw"][0] * c.args["filter_hw"][1]

    windows = {c.index: pool_windows(c.args) for c in cs}
    fast = [c for c in cs if c.args["x"].shape[3] % 4 == 0 and (kind == "maxpool" or taps(c) <= 255)]
    other = [c for c in cs if c.args["x"].shape[3] % 4]
    need(fast, "C % 4 == 0 (the four-channel path)")
    need(other, "C % 4 != 0 (the kernel's portable fallback)")
    glob = {tuple(c.args["filter_hw"]) for c in fast
            if tuple(c.args["filter_hw"]) == c.args["x"].shape[1:3] and c.args["padding"] == (0, 0, 0, 0)}
    need({(8, 8), (25, 5)} <= glob, "global 8x8 and 25x5 pools with C % 4 == 0")
    need(any(c.args["x"].shape[1:3] == c.args["filter_hw"] for c in other), "a global pool with C % 4 != 0")
    for k in (2, 3):
        for st in (1, 2):
            need(any(c.args["filter_hw"] == (k, k) and c.args["stride"] == (st, st) for c in fast),
                 f"a {k}x{k} window at stride {st} (C % 4 == 0)")
    need(any(c.args["filter_hw"] == (3, 3) and c.args["padding"] == (1, 1, 1, 1) for c in fast),
         "a 3x3 window with SAME padding on all four sides (C % 4 == 0)")
    for path, group in (("C % 4 == 0", fast), ("C % 4 != 0", other)):
        need(any(any(c.args["padding"]) and 0 < windows[c.index][1].min() < taps(c) for c in group),
             f"padded borders with partial windows (counts below the window's size), {path}")
        need(any(c.args["x"].shape[0] > 1 for c in group), f"batch > 1, {path}")
        need(any(c.args["stride"] == (s, 3 - s) for c in group for s in (1, 2)) or path != "C % 4 == 0",
             f"unequal strides, {path}")
    for v in (-128, 127):
        need(any(np.all(c.args["x"] == v) for c in fast), f"an input of all {v} (C % 4 == 0)")
        need(any(np.all(c.args["x"] == v) and taps(c) == 255 for c in fast), f"a 255-tap window on all {v}")
    need(any(taps(c) > 255 and c.args["x"].shape[3] % 4 == 0 for c in cs),
         "a window of more than 255 taps with C % 4 == 0" + (" (the average's fallback)" if kind == "avgpool"
                                                            else ""))
    if kind == "avgpool":
        for sign in (-1, 1):
            need(any(c.args["x"].shape[3] % 4 == 0 and np.any(sign * windows[c.index][0] > 32767) for c in cs),
                 f"a {'negative' if sign < 0 else 'positive'} window sum beyond int16 with C % 4 == 0 (a halfword "
                 f"sum, i.e. the fast path without its 255-tap limit, would wrap)")
    def cuts(c):  # (the clamp raises some output, the clamp lowers some output)
        if (c.args["act_min"], c.args["act_max"]) == (-128, 127):
            return False, False
        free = twin(kind)(**dict(c.args, act_min=-128, act_max=127))
        return bool(np.any(free < c.args["act_min"])), bool(np.any(free > c.args["act_max"]))

    fast_cuts = [cuts(c) for c in fast]
    need(any(lo for lo, _ in fast_cuts) and any(hi for _, hi in fast_cuts),
         "activation clamps that cut outputs from below and from above (C % 4 == 0)")
    need(any(lo and hi for lo, hi in fast_cuts), "a two-sided clamp cutting at both ends (C % 4 == 0)")
    need(any(any(cuts(c)) for c in other), "a clamp that cuts outputs with C % 4 != 0")
    if kind == "avgpool":
        need(all(windows[c.index][1].min() >= 1 for c in cs), "no window wholly in the padding (TFLM rejects it)")
        need(any(np.any(windows[c.index][0] < 0) for c in fast), "negative window sums")
        for path, group in (("C % 4 == 0", fast), ("C % 4 != 0", other)):
            ties = [average_ties(c.args) for c in group]
            ties = np.concatenate(ties) if ties else np.zeros((0, 2), np.int64)
            for count in (2, 4):
                for sign, name in ((-1, "negative"), (1, "positive")):
                    n = int(np.sum((ties[:, 0] == count) & (ties[:, 1] == sign)))
                    need(n >= 4, f"{name} ties (sums at .5) at count {count}, {path}: {n} of 4")
    else:
        need(any(windows[c.index][1].min() == 0 and c.args["act_min"] > -128 for c in fast),
             "windows wholly in the padding with act_min > -128 (C % 4 == 0)")
        need(any(c.args["x"].min() == -1 and c.args["x"].max() >= 0 and np.abs(c.args["x"]).max() <= 3
                 for c in fast), "small values of both signs around -1 / 0 (the signed lane compare)")
        need(any(set(np.unique(c.args["x"]).tolist()) in ({-128, 127}, {-128, -127, 126, 127}) for c in fast),
             "inputs of only -128 and 127 (and -127, 126) mixed")
    return problems
