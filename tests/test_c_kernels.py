"""The C kernels (flexround_mcu/firmware/kernels/frk_*.c, API frk_nn.h) against their numpy twins in flexround_mcu/sim, bit for bit.

The kernels are compiled once per session with the host gcc and the strict flags (-std=c99 -Wall -Wextra -Werror
-pedantic -O2) into a shared library loaded with ctypes (tests/c_kernels.py). Each op is compared with its twin on
hypothesis-drawn configurations (EXAMPLES per op, deterministic: derandomize=True, no database) and on a few
exhaustive sweeps. The twins are themselves checked against TFLM (tests/test_sim_kernels.py, tests/test_softmax.py).
Every C call runs twice on differently pre-filled, guarded output buffers (see tests/c_kernels.py), so a kernel
that writes out of bounds or skips an element fails too.

Separately, every kernel file must compile warning-free for Cortex-M7 (arm-none-eabi-gcc, hard float ABI) and
reference no external symbol beyond memcpy/memset/memmove, and the sources must use no float and no libc header
beyond <stdint.h>, <stddef.h>, <string.h>.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import re
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexround_mcu.fixedpoint import INT32_MAX, INT32_MIN, doubling_high_mult, requantize, rounding_divide_by_pot
from flexround_mcu.prepare import add_params, prepare_softmax
from flexround_mcu.packing import pack_bits
from flexround_mcu.sim.convolve import (convolve_s2, convolve_s4, convolve_s8, depthwise_conv_s2, depthwise_conv_s4,
                                        depthwise_conv_s8, fully_connected_s2, fully_connected_s4, fully_connected_s8)
from flexround_mcu.sim.elementwise import elementwise_add_s8
from flexround_mcu.sim.pooling import avgpool_s8, max_pool_s8
from flexround_mcu.sim import softmax as softmax_twin
from flexround_mcu.sim.softmax import softmax_s8

from tests import c_kernels as ck  # tests/ is a namespace package; conftest puts the repo on sys.path

EXAMPLES = 250  # hypothesis examples per op


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require_compiler(name: str) -> str:
    path = ck.find_compiler(name)
    if path is None:
        msg = f"{name} not found on PATH"
        if _on_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def frk(tmp_path_factory) -> ck.Kernels:
    """All kernels built once with the host gcc (strict flags, -shared -fPIC) and loaded with ctypes."""
    gcc = _require_compiler("gcc")
    return ck.Kernels(ck.build_shared_library(tmp_path_factory.mktemp("frk_kernels"), gcc))


@pytest.fixture(scope="session")
def frk_softmax_internals(tmp_path_factory) -> ck.SoftmaxInternals:
    """The static exp / reciprocal helpers of frk_softmax_s8.c, exported by a test-only wrapper file."""
    gcc = _require_compiler("gcc")
    return ck.build_softmax_internals(tmp_path_factory.mktemp("frk_softmax_internals"), gcc)


def fixed(max_examples: int = EXAMPLES):
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.int8 and want.dtype == np.int8
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------------------------------------
# Sources and builds
# ----------------------------------------------------------------------------------------------------------

ALLOWED_INCLUDES = {"<stdint.h>", "<stddef.h>", "<string.h>", '"frk_nn.h"', '"frk_nn_support.h"',
                    '"frk_dsp_support.h"', '"frk_mve_support.h"', '"frk_layer_support.h"',
                    "<arm_mve.h>"}  # arm_mve.h: the M55 build only


def _strip_comments(src: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", src, flags=re.S)


def test_every_kernel_file_exists():
    present = {p.name for p in ck.kernel_sources()}
    missing = set(ck.KERNEL_FILES) - present
    assert not missing, f"missing kernel files: {sorted(missing)}"
    assert (ck.KERNEL_DIR / "frk_nn.h").is_file()


def test_sources_are_integer_only_and_use_no_libc_beyond_string_h():
    for path in [*ck.kernel_sources(), *sorted(ck.KERNEL_DIR.glob("*.h"))]:
        code = _strip_comments(path.read_text())
        for inc in re.findall(r"#\s*include\s*([<\"][^>\"]+[>\"])", code):
            assert inc in ALLOWED_INCLUDES, f"{path.name} includes {inc}"
        for word in ("float", "double", "malloc", "calloc", "free", "printf"):
            assert not re.search(rf"\b{word}\b", code), f"{path.name} uses `{word}`"


def test_host_build_is_warning_free_per_file(tmp_path):
    """Each kernel file alone, as its own translation unit with only its own includes."""
    gcc = _require_compiler("gcc")
    for src in ck.kernel_sources():
        ck.run_compiler(ck.compile_command(gcc, ck.STRICT_FLAGS, src, tmp_path / (src.stem + ".o"), ["-c"]))


def test_kernels_compile_for_cortex_m7(tmp_path):
    """arm-none-eabi-gcc, Cortex-M7 hard float, strict flags: no warning, and no external symbol other than the
    mem* functions a compiler may emit (so no libgcc 64-bit division, no soft float, no libc)."""
    arm_gcc = _require_compiler("arm-none-eabi-gcc")
    objects = []
    for src in ck.kernel_sources():
        obj = tmp_path / (src.stem + ".o")
        ck.run_compiler(ck.compile_command(arm_gcc, ck.CORTEX_M7_FLAGS, src, obj, ["-c"]))
        objects.append(obj)
    nm = _require_compiler("arm-none-eabi-nm")  # binutils; comes with the compiler
    undefined = subprocess.run([nm, "-u", *map(str, objects)], capture_output=True, text=True, check=True).stdout
    symbols = {line.split()[-1] for line in undefined.splitlines() if line.strip() and not line.endswith(":")}
    # a kernel file may call another kernel of the API (fully connected runs the 1x1 conv kernels), nothing else
    symbols -= set(ck.SIGNATURES)
    assert symbols <= {"memcpy", "memset", "memmove"}, f"unexpected external symbols: {sorted(symbols)}"
    defined = subprocess.run([nm, "-g", "--defined-only", *map(str, objects)], capture_output=True, text=True,
                             check=True).stdout
    exported = {line.split()[-1] for line in defined.splitlines() if line.strip() and not line.endswith(":")}
    api = set(ck.SIGNATURES)
    assert api <= exported, f"missing functions: {sorted(api - exported)}"
    assert exported <= api, f"exported symbols beyond the API: {sorted(exported - api)}"


# ----------------------------------------------------------------------------------------------------------
# Fixed-point primitives (frk_support.c) against flexround_mcu.fixedpoint on Python ints
# ----------------------------------------------------------------------------------------------------------

EDGE_INT32 = sorted({INT32_MIN, INT32_MIN + 1, -2**30 - 1, -2**30, -65537, -12345, -255, -128, -7, -6, -5, -3, -2,
                     -1, 0, 1, 2, 3, 5, 6, 7, 127, 255, 12345, 65536, 2**30 - 1, 2**30, 2**30 + 1, INT32_MAX - 1,
                     INT32_MAX})
MULTIPLIERS = [0, 2**30, 2**30 + 1, 1518500250, 1610612736, 2**31 - 2, 2**31 - 1]


def ref_srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul for any signs (the exported C function is this)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    return (a * b + (1 << 30)) >> 31


def test_fixed_point_worked_examples(frk):
    """docs/arithmetic.md section 3: r = 0.375 -> (3 * 2^29, -1); 6 -> 3 and -10 -> -4 (a tie in each step)."""
    assert frk.requantize(6, 1610612736, -1) == 3
    assert frk.requantize(-10, 1610612736, -1) == -4
    assert frk.doubling_high_mult(6, 1610612736) == 5
    assert frk.doubling_high_mult(-10, 1610612736) == -7
    assert frk.rounding_divide_by_pot(5, 1) == 3
    assert frk.rounding_divide_by_pot(-7, 1) == -4
    assert frk.doubling_high_mult(INT32_MIN, INT32_MIN) == INT32_MAX


def test_fixed_point_edge_values(frk):
    for a in EDGE_INT32:
        for b in EDGE_INT32 + MULTIPLIERS:
            assert frk.doubling_high_mult(a, b) == ref_srdhm(a, b), (a, b)
        for m in MULTIPLIERS:
            assert frk.doubling_high_mult(a, m) == doubling_high_mult(a, m), (a, m)
        for n in range(32):
            assert frk.rounding_divide_by_pot(a, n) == rounding_divide_by_pot(a, n), (a, n)
    for m in MULTIPLIERS:
        for shift in range(-31, 31):
            left = max(shift, 0)
            for acc in EDGE_INT32:
                if not INT32_MIN <= acc * (1 << left) <= INT32_MAX:
                    continue  # outside requantize's contract (TFLM overflows there too)
                assert frk.requantize(acc, m, shift) == requantize(acc, m, shift), (acc, m, shift)


@fixed(400)
@given(acc=st.one_of(st.integers(INT32_MIN, INT32_MAX), st.integers(-2**20, 2**20)),
       multiplier=st.one_of(st.just(0), st.integers(2**30, 2**31 - 1)), shift=st.integers(-31, 30),
       b=st.integers(INT32_MIN, INT32_MAX), n=st.integers(0, 31))
def test_fixed_point_random(frk, acc, multiplier, shift, b, n):
    assert frk.doubling_high_mult(acc, b) == ref_srdhm(acc, b)
    assert frk.rounding_divide_by_pot(acc, n) == rounding_divide_by_pot(acc, n)
    scaled = acc >> max(shift, 0)  # keep acc * 2^left inside int32, as the contract requires
    assert frk.requantize(scaled, multiplier, shift) == requantize(scaled, multiplier, shift)


# ----------------------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------------------

zero_points = st.one_of(st.sampled_from([-128, 127, 0]), st.integers(-128, 127))
paddings = st.tuples(*(st.integers(0, 2) for _ in range(4)))
channel_counts = st.one_of(st.integers(1, 7), st.sampled_from([16, 17]))


@st.composite
def act_ranges(draw):
    kind = draw(st.sampled_from(["full", "full", "any", "narrow", "relu", "high"]))
    if kind == "full":
        return -128, 127
    if kind == "relu":
        return draw(st.integers(-127, 127)), 127
    if kind == "high":
        return -128, draw(st.integers(-128, 126))
    if kind == "narrow":  # a few values wide, both ends inside int8
        lo = draw(st.integers(-127, 120))
        return lo, lo + draw(st.integers(0, 6))
    lo = draw(st.integers(-128, 127))
    return lo, draw(st.integers(lo, 127))


@st.composite
def int_arrays(draw, shape, lo, hi):
    """Values in [lo, hi]: random, all lo, all hi, or only the two extremes (numpy from a drawn seed)."""
    mode = draw(st.sampled_from(["random", "random", "random", "min", "max", "extremes"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "min":
        return np.full(shape, lo, np.int64)
    if mode == "max":
        return np.full(shape, hi, np.int64)
    if mode == "extremes":
        return rng.choice(np.array([lo, hi], np.int64), size=shape)
    return rng.integers(lo, hi + 1, size=shape)


def int8_arrays(shape, lo=-128, hi=127):
    return int_arrays(shape, lo, hi).map(lambda a: a.astype(np.int8))


def weight_arrays(shape, bits: int = 8):
    """int8 weights in [-127, 127], int4 weights in [-8, 7] or int2 weights in [-2, 1] (the extremes modes then
    give the ends of the range)."""
    lo, hi = {8: (-127, 127), 4: (-8, 7), 2: (-2, 1)}[bits]
    return int8_arrays(shape, lo, hi)


@st.composite
def biases(draw, channels):
    kind = draw(st.sampled_from(["none", "big", "medium", "small"]))
    if kind == "none":
        return None
    bound = {"big": 2**20, "medium": 2**14, "small": 300}[kind]
    return draw(int_arrays((channels,), -bound, bound)).astype(np.int32)


multipliers = st.one_of(st.sampled_from([2**30, 2**31 - 1]), st.integers(2**30, 2**31 - 1))
# Half the draws favour shifts that keep typical accumulators inside int8; the rest mostly saturate.
shifts = st.one_of(st.integers(-12, 2), st.integers(-12, -7))


@st.composite
def quant_params(draw, channels, allow_per_tensor=True):
    """Per channel (int32 arrays), or per tensor as a Python int pair or as 1-element arrays."""
    kind = draw(st.sampled_from(["channel", "channel", "tensor_int", "tensor_array"] if allow_per_tensor
                                else ["channel"]))
    if kind == "channel":
        m = draw(st.lists(multipliers, min_size=channels, max_size=channels))
        s = draw(st.lists(shifts, min_size=channels, max_size=channels))
        return np.array(m, np.int32), np.array(s, np.int32)
    m, s = draw(multipliers), draw(shifts)
    if kind == "tensor_int":
        return m, s
    return np.array([m], np.int32), np.array([s], np.int32)


def accumulator_magnitude(x, w2d, input_offset, bias) -> float:
    """A rough typical |acc| for weights w2d (C_out, K) on inputs x: the coherent part |mean(x + offset)| *
    |sum_k w|, the random part sqrt(K) * std(x) * rms(w), and the bias."""
    xo = x.astype(np.float64) + input_offset
    w = w2d.astype(np.float64)
    coherent = abs(xo.mean()) * np.abs(w.sum(axis=1)).mean()
    spread = np.sqrt(w.shape[1]) * xo.std() * np.sqrt((w**2).mean())
    return coherent + spread + (0.0 if bias is None else float(np.abs(bias.astype(np.float64)).mean()))


@st.composite
def fitted_quant_params(draw, channels, magnitude: float):
    """Like quant_params, but the shifts are chosen so that a typical accumulator lands 2^4..2^7 after
    requantization (most outputs inside int8, so the rounding is exercised, not just the clamp). Per channel,
    each shift is jittered by -1..1. Shifts below -12 occur for large accumulators (down to -20)."""
    target = draw(st.integers(4, 7))
    base = int(np.clip(round(target - np.log2(max(magnitude, 1.0))), -20, 2))
    kind = draw(st.sampled_from(["channel", "channel", "tensor_int", "tensor_array"]))
    if kind == "channel":
        m = draw(st.lists(multipliers, min_size=channels, max_size=channels))
        s = [int(np.clip(base + j, -20, 2)) for j in draw(st.lists(st.integers(-1, 1), min_size=channels,
                                                                   max_size=channels))]
        return np.array(m, np.int32), np.array(s, np.int32)
    m = draw(multipliers)
    if kind == "tensor_int":
        return m, base
    return np.array([m], np.int32), np.array([base], np.int32)


@st.composite
def spatial(draw, k: int, dilation: int, before: int, after: int, max_size: int) -> int:
    """An input size (1..max_size) that leaves at least one output position."""
    effective = (k - 1) * dilation + 1
    return draw(st.integers(max(1, effective - before - after), max(max_size, effective - before - after)))


@st.composite
def conv_cases(draw, depthwise: bool, weight_bits: int = 8):
    big = draw(st.integers(0, 7)) == 0  # ~1/8: 16/17 channels and smaller maps
    cin = draw(st.sampled_from([16, 17])) if big else draw(st.integers(1, 7))
    if depthwise:
        dm = draw(st.integers(1, 2)) if big else draw(st.integers(1, 3))
        cout = cin * dm
    else:
        cout = draw(st.sampled_from([1, 3, 16, 17])) if big else draw(st.integers(1, 7))
    n = draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = draw(paddings)
    smax = 6 if big else 9
    h = draw(spatial(kh, dilation[0], pad[0], pad[2], smax))
    w = draw(spatial(kw, dilation[1], pad[1], pad[3], smax))
    wshape = (1, kh, kw, cout) if depthwise else (cout, kh, kw, cin)
    x = draw(int8_arrays((n, h, w, cin)))
    weights = draw(weight_arrays(wshape, weight_bits))
    bias = draw(biases(cout))
    input_offset = -draw(zero_points)
    if draw(st.booleans()):
        mult, shift = draw(quant_params(cout))
    else:
        w2d = weights.reshape(-1, cout).T if depthwise else weights.reshape(cout, -1)
        mult, shift = draw(fitted_quant_params(cout, accumulator_magnitude(x, w2d, input_offset, bias)))
    act_min, act_max = draw(act_ranges())
    case = dict(x=x, w=weights, bias=bias, input_offset=input_offset, output_offset=draw(zero_points),
                stride=stride, dilation=dilation, padding=pad, act_min=act_min, act_max=act_max, multiplier=mult,
                shift=shift)
    if depthwise:
        case["depth_multiplier"] = dm
    return case


# ----------------------------------------------------------------------------------------------------------
# CONV_2D
# ----------------------------------------------------------------------------------------------------------


@fixed()
@given(case=conv_cases(depthwise=False))
def test_convolve_s8_matches_twin(frk, case):
    assert_same(frk.convolve_s8(**case), convolve_s8(**case))


def test_convolve_s8_every_padding(frk):
    """All 81 (top, left, bottom, right) paddings in 0..2, with strides and dilations."""
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (2, 5, 7, 3)).astype(np.int8)
    w = rng.integers(-127, 128, (5, 3, 2, 3)).astype(np.int8)
    bias = np.array([-2**20, 0, 12345, 2**20, -7], np.int32)
    m = np.array([2**30, 1610612736, 2**31 - 1, 1234567890, 1518500250], np.int32)
    s = np.array([-7, -8, -9, -12, -6], np.int32)
    for pad in itertools.product(range(3), repeat=4):
        for stride, dilation in [((1, 1), (1, 1)), ((2, 1), (1, 2)), ((1, 2), (2, 2))]:
            case = dict(x=x, w=w, bias=bias, input_offset=-100, output_offset=20, stride=stride, dilation=dilation,
                        padding=pad, act_min=-120, act_max=100, multiplier=m, shift=s)
            assert_same(frk.convolve_s8(**case), convolve_s8(**case))


def test_convolve_s8_large_accumulator(frk):
    """3x3x130 with extreme values: |acc| ~ 2^24, exact in int32 (the twin switches to float64 here)."""
    rng = np.random.default_rng(2)
    x = rng.choice(np.array([-128, 127], np.int8), (1, 5, 5, 130))
    w = rng.choice(np.array([-127, 127], np.int8), (3, 3, 3, 130))
    w[0] = 127
    x[0, :3, :3, :] = 127
    for input_offset, pad in [(128, (1, 1, 1, 1)), (-127, (0, 2, 1, 0)), (0, (0, 0, 0, 0))]:
        case = dict(x=x, w=w, bias=np.array([12345, -2**20, 7], np.int32), input_offset=input_offset,
                    output_offset=3, stride=(1, 1), dilation=(1, 1), padding=pad, act_min=-128, act_max=127,
                    multiplier=np.array([2**30, 2**31 - 1, 1518500250], np.int32),
                    shift=np.array([-18, -19, -17], np.int32))
        assert_same(frk.convolve_s8(**case), convolve_s8(**case))


def test_conv_kernels_per_tensor_read_only_the_first_pair(frk):
    """per_channel = 0: conv and depthwise, s8 and s4, use (multiplier[0], shift[0]) for every channel; the
    harness puts different decoy pairs after it, which would change the output if they were read."""
    rng = np.random.default_rng(13)
    x = rng.integers(-128, 128, (1, 5, 5, 3)).astype(np.int8)
    common = dict(bias=rng.integers(-2**12, 2**12, 6).astype(np.int32), input_offset=-14, output_offset=-3,
                  stride=(1, 1), dilation=(1, 1), padding=(1, 1, 1, 1), act_min=-128, act_max=127,
                  multiplier=1395864371, shift=-7)
    conv = dict(common, x=x, w=rng.integers(-8, 8, (6, 3, 3, 3)).astype(np.int8))
    dw = dict(common, x=x, w=rng.integers(-8, 8, (1, 3, 3, 6)).astype(np.int8), depth_multiplier=2)
    want_conv, want_dw = convolve_s8(**conv), depthwise_conv_s8(**dw)
    assert len(np.unique(want_conv)) > 10 and len(np.unique(want_dw)) > 10  # not saturated: a decoy would show
    for seed in range(4):
        assert_same(frk.convolve_s8(**conv, decoy_seed=seed), want_conv)
        assert_same(frk.depthwise_conv_s8(**dw, decoy_seed=seed), want_dw)
        assert_same(frk.convolve_s4(**packed_case(conv), decoy_seed=seed), want_conv)
        assert_same(frk.depthwise_conv_s4(**packed_case(dw), decoy_seed=seed), want_dw)


# ----------------------------------------------------------------------------------------------------------
# DEPTHWISE_CONV_2D
# ----------------------------------------------------------------------------------------------------------


@fixed()
@given(case=conv_cases(depthwise=True))
def test_depthwise_conv_s8_matches_twin(frk, case):
    assert_same(frk.depthwise_conv_s8(**case), depthwise_conv_s8(**case))


def test_depthwise_conv_s8_every_padding(frk):
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (2, 5, 6, 3)).astype(np.int8)
    for dm in (1, 2, 3):
        w = rng.integers(-127, 128, (1, 3, 2, 3 * dm)).astype(np.int8)
        bias = rng.integers(-2**20, 2**20, 3 * dm).astype(np.int32)
        m = rng.integers(2**30, 2**31, 3 * dm).astype(np.int32)
        s = rng.integers(-12, -7, 3 * dm).astype(np.int32)
        for pad in itertools.product(range(3), repeat=4):
            for stride, dilation in [((1, 1), (1, 1)), ((1, 2), (2, 1)), ((2, 2), (2, 2))]:
                case = dict(x=x, w=w, bias=bias, input_offset=128, output_offset=-128, stride=stride,
                            dilation=dilation, padding=pad, act_min=-128, act_max=127, multiplier=m, shift=s,
                            depth_multiplier=dm)
                assert_same(frk.depthwise_conv_s8(**case), depthwise_conv_s8(**case))


# ----------------------------------------------------------------------------------------------------------
# FULLY_CONNECTED
# ----------------------------------------------------------------------------------------------------------


@st.composite
def fc_cases(draw, weight_bits: int = 8):
    n = draw(st.integers(1, 2))
    k = draw(st.one_of(st.integers(1, 40), st.sampled_from([16, 17, 130, 1033])))
    cout = draw(channel_counts)
    form = draw(st.sampled_from(["2d", "4d", "nhwc"]))
    if form == "2d":
        xshape = (n, k)
    elif form == "4d":
        xshape = (n, 1, 1, k)
    else:  # a flattened (N, H, W, C) feature map
        h = draw(st.sampled_from([d for d in (1, 2, 3) if k % d == 0]))
        xshape = (n, h, 1, k // h)
    x = draw(int8_arrays(xshape))
    w = draw(weight_arrays((cout, k), weight_bits))
    bias = draw(biases(cout))
    input_offset = -draw(zero_points)
    if draw(st.booleans()):
        mult, shift = draw(quant_params(cout))
    else:
        mult, shift = draw(fitted_quant_params(cout, accumulator_magnitude(x, w, input_offset, bias)))
    act_min, act_max = draw(act_ranges())
    return dict(x=x, w=w, bias=bias, input_offset=input_offset, output_offset=draw(zero_points), act_min=act_min,
                act_max=act_max, multiplier=mult, shift=shift)


@fixed()
@given(case=fc_cases(), decoy_seed=st.integers(0, 2**16))
def test_fully_connected_s8_matches_twin(frk, case, decoy_seed):
    """Per tensor (per_channel = 0; the C arrays then carry decoy pairs after the real one) or per channel."""
    assert_same(frk.fully_connected_s8(**case, decoy_seed=decoy_seed), fully_connected_s8(**case))


def test_fully_connected_s8_per_tensor_reads_only_the_first_pair(frk):
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (2, 37)).astype(np.int8)
    w = rng.integers(-127, 128, (10, 37)).astype(np.int8)
    bias = rng.integers(-2**20, 2**20, 10).astype(np.int32)
    case = dict(x=x, w=w, bias=bias, input_offset=-14, output_offset=-3, act_min=-128, act_max=127,
                multiplier=1395864371, shift=-9)
    want = fully_connected_s8(**case)
    for seed in range(5):
        assert_same(frk.fully_connected_s8(**case, decoy_seed=seed), want)


# ----------------------------------------------------------------------------------------------------------
# int4 weights: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED with packed s4 filters
# ----------------------------------------------------------------------------------------------------------


def packed_case(case: dict, bits: int = 4) -> dict:
    """The s4 / s2 form of an s8-style case: its int4 / int2 filter `w` packed two / four per byte (w_packed) plus
    filter_shape. Spare fields at the end of the last byte (0 by contract) are set to ones (0xA0 for int4, 0b10
    crumbs for int2): a kernel that read them would change its output, so the comparison also checks that nothing
    reads them."""
    w = case["w"]
    assert w.min() >= -(1 << (bits - 1)) and w.max() < 1 << (bits - 1)
    w_packed = pack_bits(w, bits)
    used = w.size % (8 // bits)
    if used:
        w_packed[-1] |= (0xAA << (bits * used)) & 0xFF
    out = {k: v for k, v in case.items() if k != "w"}
    return dict(out, w_packed=w_packed, filter_shape=w.shape)


def check_s4(c_s4, twin_s4, twin_s8, case: dict, bits: int = 4) -> np.ndarray:
    """C s4 (s2) == numpy s4 (s2) twin, and both equal the s8 arithmetic on the unpacked values."""
    s4 = packed_case(case, bits)
    got = c_s4(**s4)
    assert_same(got, twin_s4(**s4))
    assert_same(got, twin_s8(**case))
    return got


@fixed()
@given(case=conv_cases(depthwise=False, weight_bits=4))
def test_convolve_s4_matches_twin(frk, case):
    check_s4(frk.convolve_s4, convolve_s4, convolve_s8, case)


@fixed()
@given(case=conv_cases(depthwise=True, weight_bits=4))
def test_depthwise_conv_s4_matches_twin(frk, case):
    check_s4(frk.depthwise_conv_s4, depthwise_conv_s4, depthwise_conv_s8, case)


@fixed()
@given(case=fc_cases(weight_bits=4), decoy_seed=st.integers(0, 2**16))
def test_fully_connected_s4_matches_twin(frk, case, decoy_seed):
    s4 = packed_case(case)
    got = frk.fully_connected_s4(**s4, decoy_seed=decoy_seed)
    assert_same(got, fully_connected_s4(**s4))
    assert_same(got, fully_connected_s8(**case))


@fixed()
@given(case=conv_cases(depthwise=False, weight_bits=2))
def test_convolve_s2_matches_twin(frk, case):
    check_s4(frk.convolve_s2, convolve_s2, convolve_s8, case, bits=2)


@fixed()
@given(case=conv_cases(depthwise=True, weight_bits=2))
def test_depthwise_conv_s2_matches_twin(frk, case):
    check_s4(frk.depthwise_conv_s2, depthwise_conv_s2, depthwise_conv_s8, case, bits=2)


@fixed()
@given(case=fc_cases(weight_bits=2), decoy_seed=st.integers(0, 2**16))
def test_fully_connected_s2_matches_twin(frk, case, decoy_seed):
    s2 = packed_case(case, bits=2)
    got = frk.fully_connected_s2(**s2, decoy_seed=decoy_seed)
    assert_same(got, fully_connected_s2(**s2))
    assert_same(got, fully_connected_s8(**case))


def test_s2_runs_start_at_every_crumb(frk):
    """C_in / depth 1, 2, 3, 5, 6, 7 (runs that start in each of a byte's four crumbs and end after 1..3 more) in
    conv taps, depthwise taps and fc rows, with per-channel pairs, every padding and all -2 / all 1 / random."""
    rng = np.random.default_rng(21)
    for c in (1, 2, 3, 5, 6, 7):
        x = rng.integers(-128, 128, (2, 5, 5, c)).astype(np.int8)
        for fill in ("random", -2, 1):
            for cout in (1, 3, 6):
                shape = (cout, 3, 3, c)
                w = rng.integers(-2, 2, shape) if fill == "random" else np.full(shape, fill)
                quant = dict(multiplier=rng.integers(2**30, 2**31, cout).astype(np.int32),
                             shift=np.full(cout, -5, np.int32))
                case = dict(x=x, w=w.astype(np.int8), bias=rng.integers(-500, 500, cout).astype(np.int32),
                            input_offset=7, output_offset=-2, stride=(1, 1), dilation=(1, 1), padding=(1, 1, 1, 1),
                            act_min=-128, act_max=127, **quant)
                check_s4(frk.convolve_s2, convolve_s2, convolve_s8, case, bits=2)
                wd = rng.integers(-2, 2, (1, 3, 3, c)) if fill == "random" else np.full((1, 3, 3, c), fill)
                dw = dict(case, w=wd.astype(np.int8), bias=case["bias"][:1].repeat(c),
                          multiplier=int(quant["multiplier"][0]), shift=-5)
                check_s4(frk.depthwise_conv_s2, depthwise_conv_s2, depthwise_conv_s8, dw, bits=2)
                fc = dict(x=x.reshape(2, -1)[:, :c * 9], w=w.reshape(cout, -1).astype(np.int8),
                          bias=case["bias"], input_offset=7, output_offset=-2, act_min=-128, act_max=127, **quant)
                s2 = packed_case(fc, bits=2)
                assert_same(frk.fully_connected_s2(**s2), fully_connected_s2(**s2))
                assert_same(frk.fully_connected_s2(**s2), fully_connected_s8(**fc))


S4_QUANT = dict(multiplier=np.array([2**30, 1610612736, 2**31 - 1, 1234567890, 1518500250], np.int32),
                shift=np.array([-4, -5, -6, -7, -3], np.int32))


def test_convolve_s4_odd_channels_every_padding(frk):
    """3x3 over C_in = 3 (every tap's 3 weights start mid-byte on every other tap; channel rows of 27 weights
    alternate parity too), with -8 and 7 among the weights, all 81 paddings, strides 1 and 2, and dilation."""
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (2, 6, 7, 3)).astype(np.int8)
    w = rng.integers(-8, 8, (5, 3, 3, 3)).astype(np.int8)
    w[0], w[1] = -8, 7
    w[2, :, :, 1] = -8
    bias = np.array([-2**16, 0, 1234, 2**16, -7], np.int32)
    for pad in itertools.product(range(3), repeat=4):
        for stride, dilation in [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((2, 1), (1, 2))]:
            case = dict(x=x, w=w, bias=bias, input_offset=-100, output_offset=20, stride=stride,
                        dilation=dilation, padding=pad, act_min=-120, act_max=100, **S4_QUANT)
            check_s4(frk.convolve_s4, convolve_s4, convolve_s8, case)


def test_convolve_s4_1x1_and_3x3_stride_2(frk):
    """1x1 and 3x3 kernels, stride 1 and 2, odd and even C_in and C_out, a filter of all -8 and one of all 7
    (the largest accumulators: every nibble 0x8 or 0x7), with and without padding."""
    rng = np.random.default_rng(8)
    for cin, cout, k in [(1, 1, 1), (3, 5, 1), (7, 3, 1), (16, 17, 1), (5, 7, 3), (16, 16, 3), (17, 3, 3)]:
        x = rng.integers(-128, 128, (1, 9, 8, cin)).astype(np.int8)
        for fill in ("random", -8, 7):
            w = (rng.integers(-8, 8, (cout, k, k, cin)) if fill == "random" else np.full((cout, k, k, cin), fill))
            w = w.astype(np.int8)
            for stride in (1, 2):
                for pad in [(0, 0, 0, 0), (k // 2,) * 4]:
                    case = dict(x=x, w=w, bias=rng.integers(-5000, 5000, cout).astype(np.int32),
                                input_offset=int(rng.integers(-127, 129)), output_offset=int(rng.integers(-128, 128)),
                                stride=(stride, stride), dilation=(1, 1), padding=pad, act_min=-128, act_max=127,
                                multiplier=rng.integers(2**30, 2**31, cout).astype(np.int32),
                                shift=np.full(cout, -6 if k == 1 else -8, np.int32))
                    check_s4(frk.convolve_s4, convolve_s4, convolve_s8, case)


def test_convolve_s4_large_accumulator(frk):
    """3x3x131 of -8/7 against -128/127: |acc| ~ 2^20 (the s4 bound is 255*8 per term), odd K."""
    rng = np.random.default_rng(9)
    x = rng.choice(np.array([-128, 127], np.int8), (1, 5, 5, 131))
    w = rng.choice(np.array([-8, 7], np.int8), (3, 3, 3, 131))
    w[0] = 7
    w[1] = -8
    x[0, :3, :3, :] = 127
    for input_offset, pad in [(128, (1, 1, 1, 1)), (-127, (0, 2, 1, 0)), (0, (0, 0, 0, 0))]:
        case = dict(x=x, w=w, bias=np.array([12345, -2**20, 7], np.int32), input_offset=input_offset,
                    output_offset=3, stride=(1, 1), dilation=(1, 1), padding=pad, act_min=-128, act_max=127,
                    multiplier=np.array([2**30, 2**31 - 1, 1518500250], np.int32),
                    shift=np.array([-14, -15, -13], np.int32))
        check_s4(frk.convolve_s4, convolve_s4, convolve_s8, case)


def test_depthwise_conv_s4_every_padding_and_multiplier(frk):
    """C_in = 3 with depth multipliers 1..3 (C_out 3, 6, 9: odd C_out puts every other tap's channels mid-byte),
    3x3 with -8 and 7, strides 1 and 2, all 81 paddings."""
    rng = np.random.default_rng(10)
    x = rng.integers(-128, 128, (2, 5, 6, 3)).astype(np.int8)
    for dm in (1, 2, 3):
        w = rng.integers(-8, 8, (1, 3, 3, 3 * dm)).astype(np.int8)
        w[0, 0, :, 0], w[0, 2, :, -1] = -8, 7
        bias = rng.integers(-2**16, 2**16, 3 * dm).astype(np.int32)
        m = rng.integers(2**30, 2**31, 3 * dm).astype(np.int32)
        s = rng.integers(-9, -4, 3 * dm).astype(np.int32)
        for pad in itertools.product(range(3), repeat=4):
            for stride, dilation in [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((1, 2), (2, 1))]:
                case = dict(x=x, w=w, bias=bias, input_offset=128, output_offset=-128, stride=stride,
                            dilation=dilation, padding=pad, act_min=-128, act_max=127, multiplier=m, shift=s,
                            depth_multiplier=dm)
                check_s4(frk.depthwise_conv_s4, depthwise_conv_s4, depthwise_conv_s8, case)


def test_fully_connected_s4_odd_rows_start_mid_byte(frk):
    """depth 1, 3, 37, 1033 (odd: rows 1, 3, 5, ... start in a high nibble) and 16, 64, odd and even C_out,
    per tensor and per channel, weights of all -8, all 7 and random."""
    rng = np.random.default_rng(11)
    for depth in (1, 3, 16, 37, 64, 1033):
        for cout in (1, 2, 7, 10):
            x = rng.integers(-128, 128, (2, depth)).astype(np.int8)
            for fill in ("random", -8, 7):
                w = rng.integers(-8, 8, (cout, depth)) if fill == "random" else np.full((cout, depth), fill)
                shift = -4 - int(np.log2(depth + 1))
                for per_channel in (False, True):
                    quant = (dict(multiplier=rng.integers(2**30, 2**31, cout).astype(np.int32),
                                  shift=np.full(cout, shift, np.int32)) if per_channel
                             else dict(multiplier=1395864371, shift=shift))
                    case = dict(x=x, w=w.astype(np.int8), bias=rng.integers(-2**12, 2**12, cout).astype(np.int32),
                                input_offset=-14, output_offset=-3, act_min=-128, act_max=127, **quant)
                    s4 = packed_case(case)
                    got = frk.fully_connected_s4(**s4)
                    assert_same(got, fully_connected_s4(**s4))
                    assert_same(got, fully_connected_s8(**case))


def test_s4_kernels_read_the_documented_nibbles(frk):
    """A hand-packed filter: [1, 2, 3, 4] is 0x21 0x43 (CMSIS-NN's example); a 1x1 conv with input offset 0,
    C_in 4 and unit requantization returns the dot products directly, so a swapped nibble order shows."""
    x = np.array([1, 10, 20, 0, 0, 0, 0, 1], np.int8).reshape(2, 1, 1, 4)
    w_packed = np.array([0x21, 0x43, 0x8F, 0x07], np.uint8)  # rows [1, 2, 3, 4] and [-1, -8, 7, 0]
    quant = dict(multiplier=np.array([2**30, 2**30], np.int32), shift=np.array([1, 1], np.int32))  # x1 exactly
    case = dict(x=x, w_packed=w_packed, filter_shape=(2, 1, 1, 4), bias=None, input_offset=0, output_offset=0,
                stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0), act_min=-128, act_max=127, **quant)
    want = np.array([[1 + 20 + 60, -1 - 80 + 140], [4, 0]])  # a swapped nibble order gives [[92, ...], ...]
    for got in (frk.convolve_s4(**case), convolve_s4(**case)):
        np.testing.assert_array_equal(got.reshape(2, 2), want)
    fc = dict(x=x.reshape(2, 4), w_packed=w_packed, filter_shape=(2, 4), bias=None, input_offset=0,
              output_offset=0, act_min=-128, act_max=127, **quant)
    for got in (frk.fully_connected_s4(**fc), fully_connected_s4(**fc)):
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------------------------------------
# ADD
# ----------------------------------------------------------------------------------------------------------

float32_scales = st.builds(lambda m, e: float(np.float32(m * 2.0**e)), st.floats(0.5, 1.0, width=32),
                           st.integers(-12, 0))


@st.composite
def add_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=4)))
    s1 = draw(float32_scales)
    s2 = draw(st.one_of(st.just(s1), float32_scales))
    # An unrelated output scale saturates most sums; one near the inputs' keeps them in range.
    s_out = draw(st.one_of(float32_scales, st.builds(lambda f: float(np.float32((s1 + s2) * f)),
                                                        st.floats(0.25, 2.0))))
    left_shift = draw(st.sampled_from([20, 20, 20, "any"]))
    left_shift = draw(st.integers(0, 19)) if left_shift == "any" else left_shift
    act_min, act_max = draw(act_ranges())
    return dict(x1=draw(int8_arrays(shape)), x2=draw(int8_arrays(shape)), input1_offset=-draw(zero_points),
                input2_offset=-draw(zero_points), output_offset=draw(zero_points), act_min=act_min, act_max=act_max,
                **add_params(s1, s2, s_out, left_shift))


@fixed()
@given(case=add_cases())
def test_elementwise_add_s8_matches_twin(frk, case):
    assert_same(frk.elementwise_add_s8(**case), elementwise_add_s8(**case))


def test_elementwise_add_s8_all_input_pairs(frk):
    """Every (q1, q2) int8 pair, for a few scale / zero-point settings."""
    q1, q2 = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    q1, q2 = q1.astype(np.int8), q2.astype(np.int8)
    for (s1, s2, so), (z1, z2, zo), (lo, hi) in [
            ((0.05, 0.05, 0.1), (0, 0, 0), (-128, 127)),
            ((0.02, 0.07, 0.08), (-128, 127, 5), (-3, 90)),
            ((0.0123, 0.000977, 0.0119), (127, -128, -128), (-128, 127)),
            ((0.5, 0.25, 0.003), (3, -7, 0), (-128, 127))]:
        case = dict(x1=q1, x2=q2, input1_offset=-z1, input2_offset=-z2, output_offset=zo, act_min=lo, act_max=hi,
                    **add_params(s1, s2, so))
        assert_same(frk.elementwise_add_s8(**case), elementwise_add_s8(**case))


# ----------------------------------------------------------------------------------------------------------
# AVERAGE_POOL_2D / MAX_POOL_2D
# ----------------------------------------------------------------------------------------------------------


@st.composite
def pool_cases(draw, allow_empty_windows: bool):
    n = draw(st.integers(1, 2))
    c = draw(channel_counts)
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if allow_empty_windows:
        pad = draw(paddings)
    else:  # a pad <= k - 1 on every side keeps every window on at least one real pixel
        pad = (draw(st.integers(0, min(2, kh - 1))), draw(st.integers(0, min(2, kw - 1))),
               draw(st.integers(0, min(2, kh - 1))), draw(st.integers(0, min(2, kw - 1))))
    h = draw(spatial(kh, 1, pad[0], pad[2], 9))
    w = draw(spatial(kw, 1, pad[1], pad[3], 9))
    act_min, act_max = draw(act_ranges())
    return dict(x=draw(int8_arrays((n, h, w, c))), filter_hw=(kh, kw), stride=stride, padding=pad,
                act_min=act_min, act_max=act_max)


@fixed()
@given(case=pool_cases(allow_empty_windows=False))
def test_avgpool_s8_matches_twin(frk, case):
    assert_same(frk.avgpool_s8(**case), avgpool_s8(**case))


@fixed()
@given(case=pool_cases(allow_empty_windows=True))
def test_max_pool_s8_matches_twin(frk, case):
    """Includes windows made only of padding, which give act_min (TFLM's max starts at -128)."""
    assert_same(frk.max_pool_s8(**case), max_pool_s8(**case))


def test_pooling_every_padding(frk):
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (2, 5, 6, 3)).astype(np.int8)
    for pad in itertools.product(range(3), repeat=4):
        for filter_hw, stride in [((3, 3), (1, 1)), ((3, 3), (2, 1)), ((3, 4), (2, 2)), ((4, 3), (1, 2))]:
            case = dict(x=x, filter_hw=filter_hw, stride=stride, padding=pad, act_min=-100, act_max=120)
            assert_same(frk.avgpool_s8(**case), avgpool_s8(**case))
            assert_same(frk.max_pool_s8(**case), max_pool_s8(**case))


def test_avgpool_s8_rounding_ties(frk):
    """Exact halves round away from zero; sums of raw values, not of x - zp."""
    x = np.array([1, 2, -1, -2, 3, 0, -3, 0], np.int8).reshape(1, 1, 8, 1)  # pairs: 3, -3, 3, -3
    case = dict(x=x, filter_hw=(1, 2), stride=(1, 2), padding=(0, 0, 0, 0), act_min=-128, act_max=127)
    np.testing.assert_array_equal(frk.avgpool_s8(**case).reshape(-1), [2, -2, 2, -2])
    x = np.array([-128, -127, 127, 126, -5, 0, 0, 0, 1], np.int8).reshape(1, 1, 9, 1)
    case = dict(x=x, filter_hw=(1, 3), stride=(1, 1), padding=(0, 2, 0, 2), act_min=-128, act_max=127)
    assert_same(frk.avgpool_s8(**case), avgpool_s8(**case))


def test_pooling_windows_entirely_in_padding(frk):
    """Outside TFLM's contract for AVERAGE_POOL_2D (it rejects the model); the C kernels give what the twins give:
    clamp(0) for the average (no division by zero) and clamp(-128) = act_min for the maximum."""
    rng = np.random.default_rng(6)
    x = rng.integers(-128, 128, (1, 3, 3, 2)).astype(np.int8)
    for act_min, act_max in [(-128, 127), (-50, 60), (5, 9), (-9, -5)]:
        case = dict(x=x, filter_hw=(1, 1), stride=(1, 1), padding=(2, 2, 2, 1), act_min=act_min, act_max=act_max)
        with np.errstate(divide="ignore", invalid="ignore"):
            want = avgpool_s8(**case)
        got = frk.avgpool_s8(**case)
        assert_same(got, want)
        assert got[0, 0, 0, 0] == min(max(0, act_min), act_max)
        got = frk.max_pool_s8(**case)
        assert_same(got, max_pool_s8(**case))
        assert got[0, 0, 0, 0] == act_min


# ----------------------------------------------------------------------------------------------------------
# SOFTMAX
# ----------------------------------------------------------------------------------------------------------

softmax_scales = st.one_of(st.sampled_from([1 / 256, 0.00390625, 0.0625, 0.1, 0.125, 0.25, 1.0]),
                           st.builds(lambda m, e: float(np.float32(m * 2.0**e)), st.floats(0.5, 1.0, width=32),
                                     st.integers(-10, 1)))
# beta * scale * 2^26 >= 2^31 - 1 (e.g. beta 100, scale 1) hits the cap: input_left_shift 31, diff_min 0.
betas = st.one_of(st.sampled_from([1.0, 1.0, 0.5, 2.0, 0.1, 100.0]), st.floats(0.0625, 8.0, width=32))


@st.composite
def softmax_rows(draw, depth: int, rows: int):
    kind = draw(st.sampled_from(["random", "random", "ties", "extremes", "one_peak", "narrow"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "ties":  # several entries tied at the maximum
        x = rng.integers(-128, 128, (rows, depth))
        x[rng.random((rows, depth)) < 0.5] = draw(st.integers(-128, 127))
        x = np.minimum(x, x.max(axis=1, keepdims=True))
    elif kind == "extremes":
        x = rng.choice(np.array([-128, 127]), (rows, depth))
    elif kind == "one_peak":  # one large value, the rest far below (below diff_min for most scales)
        x = rng.integers(-128, -100, (rows, depth))
        x[:, rng.integers(0, depth)] = 127
    elif kind == "narrow":
        base = draw(st.integers(-128, 120))
        x = rng.integers(base, base + 8, (rows, depth))
    else:
        x = rng.integers(-128, 128, (rows, depth))
    return x.astype(np.int8)


@st.composite
def softmax_cases(draw):
    depth = draw(st.one_of(st.integers(1, 20), st.sampled_from([10, 12, 64, 200, 511])))
    rows = draw(st.integers(1, 4))
    x = draw(softmax_rows(depth, rows))
    lead = draw(st.sampled_from(["2d", "4d"]))
    if lead == "4d":
        x = x.reshape(rows, 1, 1, depth)
    return x, prepare_softmax(draw(betas), draw(softmax_scales))


@fixed()
@given(case=softmax_cases())
def test_softmax_s8_matches_twin(frk, case):
    x, params = case
    assert_same(frk.softmax_s8(x, params), softmax_s8(x, params))


def test_softmax_s8_every_input_value(frk):
    """Every int8 value against every maximum, for several (beta, scale) settings: rows [v, max]."""
    v, mx = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    keep = v <= mx
    x = np.stack([v[keep], mx[keep], mx[keep] - 1], axis=1).clip(-128, 127).astype(np.int8)
    for beta, scale in [(1.0, 1 / 256), (1.0, 0.1), (1.0, 0.0625), (0.5, 0.3), (2.0, 1.0), (100.0, 1.0)]:
        params = prepare_softmax(beta, scale)
        assert_same(frk.softmax_s8(x, params), softmax_s8(x, params))


def test_softmax_fixed_point_helpers_match_twin(frk_softmax_internals):
    """gemmlowp exp_on_negative_values (Q5.26 -> Q0.31) and one_over_one_plus_x_for_x_in_0_1 (Q0.31), all 32 bits
    of the result, against the twin's, on dense samples of their whole int32 domain: every Q5.26 value in
    [-32, 0] that is a multiple of 2^12 (524,289 values), every value near the 1/4 boundaries, random values
    down to INT32_MIN; for the reciprocal, 2^20 values across all of int32 and the edges."""
    rng = np.random.default_rng(12)
    quarters = np.arange(-128, 1, dtype=np.int64) << 24
    exp_in = np.unique(np.concatenate([
        np.arange(-(32 << 26), 1, 1 << 12, dtype=np.int64),
        (quarters[:, None] + np.arange(-3, 4)[None, :]).ravel(),
        rng.integers(-(32 << 26), 1, 200_000), rng.integers(INT32_MIN, 1, 20_000),
        [INT32_MIN, INT32_MIN + 1, -1, 0]]))
    exp_in = exp_in[(exp_in >= INT32_MIN) & (exp_in <= 0)]
    np.testing.assert_array_equal(frk_softmax_internals.exp_on_negative_values(exp_in),
                                  softmax_twin._exp_on_negative_values(exp_in))
    recip_in = np.unique(np.concatenate([
        rng.integers(0, 2**31, 1 << 20), rng.integers(INT32_MIN, 0, 1 << 12),
        [INT32_MIN, INT32_MIN + 1, -1, 0, 1, 2**30 - 1, 2**30, INT32_MAX - 1, INT32_MAX]]))
    np.testing.assert_array_equal(frk_softmax_internals.one_over_one_plus_x_for_x_in_0_1(recip_in),
                                  softmax_twin._one_over_one_plus_x_for_x_in_0_1(recip_in))


def test_softmax_s8_range_limit(frk):
    """A row whose sum of exps reaches 512 (512 entries tied at the maximum) makes the twin raise and the C
    kernel return -1; 511 ties are still in range. Rows before the bad one are written."""
    params = prepare_softmax(1.0, 0.1)
    ok = np.full((1, 511), 7, np.int8)
    assert_same(frk.softmax_s8(ok, params), softmax_s8(ok, params))
    bad = np.full((2, 512), 7, np.int8)
    bad[0, 1:] = -128  # row 0 is fine, row 1 is out of range
    with pytest.raises(ValueError):
        softmax_s8(bad, params)
    rc, out = frk.softmax_s8_status(bad, params)
    assert rc == -1
    assert_same(out[:1], softmax_s8(bad[:1], params))
    rc, _ = frk.softmax_s8_status(np.full((1, 4096), 0, np.int8), params)  # the int32 sum wraps to INT32_MIN
    assert rc == -1


def test_softmax_s8_wrapped_sum_matches_twin(frk):
    """8192 / 8193 ties wrap the int32 sum of exps to 0 / 2^19: both implementations wrap the same way (the
    C kernel without undefined behaviour, and without the undefined 32-bit shift of a zero sum)."""
    params = prepare_softmax(1.0, 0.1)
    for depth in (8192, 8193):
        x = np.full((1, depth), 3, np.int8)
        assert_same(frk.softmax_s8(x, params), softmax_s8(x, params))


@pytest.mark.parametrize("stride, pad, rows", [(1, 1, 1), (1, 1, 3), (2, 1, 2), (2, 0, 1), (1, 2, 2)])
def test_conv_rows_bands_compute_the_layer(frk, stride, pad, rows):
    """frk_conv_rows (the band view model.c's fused and ring ops use): the conv kernel run band by band on the views
    it returns writes exactly the layer's output rows, for strides, paddings and band heights, the last band short."""
    rng = np.random.default_rng(stride * 10 + pad + rows)
    h, w, c, k, out_c = 9, 6, 4, 3, 5
    x = rng.integers(-128, 128, (1, h, w, c)).astype(np.int8)
    wt = rng.integers(-127, 128, (out_c, k, k, c)).astype(np.int8)
    bias = rng.integers(-500, 500, out_c).astype(np.int32)
    mult, shift = np.full(out_c, 1 << 30, np.int32), np.full(out_c, -8, np.int32)
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    padding = (pad, pad, (oh - 1) * stride + k - h - pad, (ow - 1) * stride + k - w - pad)
    whole = frk.convolve_s8(x, wt, bias, 3, -2, (stride, stride), (1, 1), padding, -128, 127, mult, shift)
    params = ck.FrkConvParams(3, -2, stride, stride, 1, 1, pad, pad, -128, 127, 1)
    in_dims, out_dims = ck.FrkDims(1, h, w, c), ck.FrkDims(1, oh, ow, out_c)
    got = []
    for row in range(0, oh, rows):
        bp, bi, bo = ck.FrkConvParams(), ck.FrkDims(), ck.FrkDims()
        at = frk.lib.frk_conv_rows(ctypes.byref(params), ctypes.byref(in_dims), ctypes.byref(out_dims), row, rows,
                                   ctypes.byref(bp), ctypes.byref(bi), ctypes.byref(bo))
        assert at % (w * c) == 0 and bo.h == min(rows, oh - row) and (bi.w, bi.c, bo.w) == (w, c, ow)
        view = x.reshape(-1)[at:].reshape(1, bi.h, w, c)
        band_pad = (bp.pad_top, pad, (bo.h - 1) * stride + k - bi.h - bp.pad_top, padding[3])
        got.append(frk.convolve_s8(view, wt, bias, 3, -2, (stride, stride), (1, 1), band_pad, -128, 127, mult,
                                   shift)[:, :bo.h])
    np.testing.assert_array_equal(np.concatenate(got, axis=1), whole)
