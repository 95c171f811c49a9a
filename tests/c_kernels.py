"""ctypes bindings for the C kernels in flexround_mcu/firmware/kernels (API: frk_nn.h), for tests/test_c_kernels.py.

`build_shared_library` compiles every kernel file with the host gcc and the strict flags into one shared
library; `Kernels` loads it and exposes each C kernel with the signature of its numpy twin in
flexround_mcu/sim (same argument names, numpy arrays in, an int8 array out), so a test can call both with
one dict of arguments.

Every output buffer is surrounded by guard bytes, and every kernel is run twice, on buffers pre-filled with
two different byte patterns: a write outside the output fails the guard check, and an output element the
kernel forgets to write differs between the two runs.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from flexround_mcu.resources import KERNELS_DIR as KERNEL_DIR

# One op family per file, as in CMSIS-NN's Source/ tree.
KERNEL_FILES = (
    "frk_support.c",
    "frk_convolve_s8.c",
    "frk_convolve_s4.c",
    "frk_depthwise_conv_s8.c",
    "frk_depthwise_conv_s4.c",
    "frk_fully_connected_s8.c",
    "frk_fully_connected_s4.c",
    "frk_elementwise_add_s8.c",
    "frk_pooling_s8.c",
    "frk_softmax_s8.c",
    "frk_convolve_dsp.c",
    "frk_depthwise_conv_dsp.c",
    "frk_fully_connected_dsp.c",
    "frk_elementwise_add_dsp.c",
    "frk_pooling_dsp.c",
    "frk_convolve_mve.c",
    "frk_fully_connected_mve.c",
    "frk_depthwise_conv_mve.c",
    "frk_elementwise_add_mve.c",
    "frk_pooling_mve.c",
)

STRICT_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
CORTEX_M7_FLAGS = ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16", *STRICT_FLAGS]

GUARD = 32  # bytes on each side of an output buffer
FILLS = (0x55, -0x56)  # two pre-fill patterns (0x55, 0xAA as int8)


def kernel_sources() -> list[Path]:
    """Every frk_*.c in the kernel folder (a kernel file added later is built and checked too)."""
    return sorted(KERNEL_DIR.glob("frk_*.c"))


def compile_command(compiler: str, flags, source: Path, output: Path, extra=()) -> list[str]:
    return [compiler, *flags, *extra, f"-I{KERNEL_DIR}", "-o", str(output), str(source)]


def run_compiler(cmd: list[str]) -> None:
    """Run a compiler command; a failure (including any warning, under -Werror) raises with its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"compilation failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    if proc.stderr.strip():  # -Werror turns warnings into errors; notes alone would still be noise worth seeing
        raise RuntimeError(f"compiler printed diagnostics: {' '.join(cmd)}\n{proc.stderr}")


def build_shared_library(out_dir: Path, compiler: str = "gcc") -> Path:
    """All kernel files, each its own translation unit, linked into one shared library."""
    lib = Path(out_dir) / "libfrk_kernels.so"
    cmd = [compiler, *STRICT_FLAGS, "-shared", "-fPIC", f"-I{KERNEL_DIR}", "-o", str(lib),
           *map(str, kernel_sources())]
    run_compiler(cmd)
    return lib


# A test-only translation unit that includes the softmax source and exports its static fixed-point helpers, so
# they can be compared with the numpy twin's on whole int32 ranges: their low bits mostly vanish in the int8
# output (a one-ulp error in a Q0.31 constant does not show there), and this catches such errors.
SOFTMAX_INTERNALS_C = """
#include "frk_softmax_s8.c"

void frk_test_exp_on_negative_values(const int32_t *in, int32_t *out, int32_t n);
void frk_test_one_over_one_plus_x_for_x_in_0_1(const int32_t *in, int32_t *out, int32_t n);

void frk_test_exp_on_negative_values(const int32_t *in, int32_t *out, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = frk__exp_on_negative_values(in[i]);
    }
}

void frk_test_one_over_one_plus_x_for_x_in_0_1(const int32_t *in, int32_t *out, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = frk__one_over_one_plus_x_for_x_in_0_1(in[i]);
    }
}
"""


def build_softmax_internals(out_dir: Path, compiler: str = "gcc") -> "SoftmaxInternals":
    src = Path(out_dir) / "frk_softmax_internals.c"
    src.write_text(SOFTMAX_INTERNALS_C)
    lib = Path(out_dir) / "libfrk_softmax_internals.so"
    run_compiler([compiler, *STRICT_FLAGS, "-shared", "-fPIC", f"-I{KERNEL_DIR}", "-o", str(lib), str(src)])
    return SoftmaxInternals(lib)


class SoftmaxInternals:
    """exp_on_negative_values and one_over_one_plus_x_for_x_in_0_1 of frk_softmax_s8.c on int32 arrays."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        for name in ("frk_test_exp_on_negative_values", "frk_test_one_over_one_plus_x_for_x_in_0_1"):
            fn = getattr(self.lib, name)
            fn.restype = None
            fn.argtypes = [P_I32, P_I32, I32]

    def _batch(self, fn, values) -> np.ndarray:
        x = _i32(values)
        out = np.zeros_like(x)
        fn(_ptr(x, I32), _ptr(out, I32), x.size)
        return out.astype(np.int64)

    def exp_on_negative_values(self, values) -> np.ndarray:
        return self._batch(self.lib.frk_test_exp_on_negative_values, values)

    def one_over_one_plus_x_for_x_in_0_1(self, values) -> np.ndarray:
        return self._batch(self.lib.frk_test_one_over_one_plus_x_for_x_in_0_1, values)


def find_compiler(name: str) -> str | None:
    return shutil.which(name)


# ----------------------------------------------------------------------------------------------------------
# The structs of frk_nn.h (all int32 fields, so ctypes lays them out exactly as the C compiler does)

I32 = ctypes.c_int32
P_I8 = ctypes.POINTER(ctypes.c_int8)
P_U8 = ctypes.POINTER(ctypes.c_uint8)  # packed int4 filters
P_I32 = ctypes.POINTER(ctypes.c_int32)


def _struct(name, fields):
    return type(name, (ctypes.Structure,), {"_fields_": [(f, I32) for f in fields]})


FrkDims = _struct("FrkDims", ["n", "h", "w", "c"])
FrkConvParams = _struct("FrkConvParams", ["input_offset", "output_offset", "stride_h", "stride_w", "dilation_h",
                                          "dilation_w", "pad_top", "pad_left", "act_min", "act_max",
                                          "depth_multiplier"])
FrkFcParams = _struct("FrkFcParams", ["input_offset", "output_offset", "act_min", "act_max"])
FrkPoolParams = _struct("FrkPoolParams", ["stride_h", "stride_w", "pad_top", "pad_left", "act_min", "act_max"])
FrkAddParams = _struct("FrkAddParams", ["input1_offset", "input1_multiplier", "input1_shift", "input2_offset",
                                        "input2_multiplier", "input2_shift", "left_shift", "output_offset",
                                        "output_multiplier", "output_shift", "act_min", "act_max"])
FrkSoftmaxParams = _struct("FrkSoftmaxParams", ["input_multiplier", "input_left_shift", "diff_min"])

P = ctypes.POINTER
SIGNATURES = {
    "frk_doubling_high_mult": (I32, [I32, I32]),
    "frk_rounding_divide_by_pot": (I32, [I32, I32]),
    "frk_requantize": (I32, [I32, I32, I32]),
    "frk_convolve_s8": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_I8, P_I32,
                               P(FrkDims), P_I8]),
    "frk_depthwise_conv_s8": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_I8, P_I32,
                                     P(FrkDims), P_I8]),
    "frk_fully_connected_s8": (None, [P(FrkFcParams), P_I32, P_I32, I32, I32, I32, P_I8, P_I8, P_I32, I32, P_I8]),
    "frk_convolve_s4": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_U8, P_I32,
                               P(FrkDims), P_I8]),
    "frk_depthwise_conv_s4": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_U8, P_I32,
                                     P(FrkDims), P_I8]),
    "frk_fully_connected_s4": (None, [P(FrkFcParams), P_I32, P_I32, I32, I32, I32, P_I8, P_U8, P_I32, I32, P_I8]),
    "frk_convolve_s2": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_U8, P_I32,
                               P(FrkDims), P_I8]),
    "frk_depthwise_conv_s2": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_U8, P_I32,
                                     P(FrkDims), P_I8]),
    "frk_fully_connected_s2": (None, [P(FrkFcParams), P_I32, P_I32, I32, I32, I32, P_I8, P_U8, P_I32, I32, P_I8]),
    "frk_elementwise_add_s8": (None, [P(FrkAddParams), P_I8, P_I8, I32, P_I8]),
    "frk_avgpool_s8": (None, [P(FrkPoolParams), P(FrkDims), P_I8, I32, I32, P(FrkDims), P_I8]),
    "frk_max_pool_s8": (None, [P(FrkPoolParams), P(FrkDims), P_I8, I32, I32, P(FrkDims), P_I8]),
    "frk_softmax_s8": (I32, [P(FrkSoftmaxParams), I32, I32, P_I8, P_I8]),
    "frk_conv_rows": (I32, [P(FrkConvParams), P(FrkDims), P(FrkDims), I32, I32, P(FrkConvParams), P(FrkDims),
                            P(FrkDims)]),
}


# ----------------------------------------------------------------------------------------------------------
# Array helpers


def _i8(a) -> np.ndarray:
    a = np.asarray(a)
    assert a.dtype == np.int8, a.dtype
    return np.ascontiguousarray(a)


def _packed(w_packed, filter_shape, bits: int = 4) -> np.ndarray:
    """Packed int4 / int2 filter bytes as uint8, of exactly packed_size(prod(filter_shape), bits) bytes (what the
    kernel reads: a shorter array would let the C kernel read past it)."""
    a = np.ascontiguousarray(np.asarray(w_packed))
    assert a.dtype == np.uint8, a.dtype
    per_byte = 8 // bits
    assert a.size == (int(np.prod(filter_shape)) + per_byte - 1) // per_byte, (a.size, filter_shape)
    return a


def _i32(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    assert a.size == 0 or (a.min() >= -2**31 and a.max() < 2**31)
    return np.ascontiguousarray(a.astype(np.int32))


def _ptr(a: np.ndarray | None, ctype):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctype))


def quant_tables(multiplier, shift, channels: int, decoy_seed: int | None):
    """The twin's multiplier/shift (one pair as ints or 1-element arrays, or one per channel) as the C API takes
    them: (multiplier array, shift array, per_channel). One pair -> per_channel = 0, and the arrays still have
    `channels` entries, the pair first and different decoy pairs after it (from decoy_seed), so a kernel that
    indexed them per channel would read values that change its output."""
    m = np.atleast_1d(np.asarray(multiplier, dtype=np.int64))
    s = np.atleast_1d(np.asarray(shift, dtype=np.int64))
    per_channel = int(m.size > 1)
    if m.size == 1 and channels > 1 and decoy_seed is not None:
        rng = np.random.default_rng(decoy_seed)
        m = np.concatenate([m, rng.integers(2**30, 2**31, channels - 1)])
        s = np.concatenate([s, np.where(s[0] > -6, s[0] - 5, s[0] + 4) + np.zeros(channels - 1, np.int64)])
    return _i32(m), _i32(s), per_channel


def out_size(size: int, before: int, after: int, k: int, stride: int, dilation: int = 1) -> int:
    return (size + before + after - ((k - 1) * dilation + 1)) // stride + 1


def _run_guarded(shape, call) -> np.ndarray:
    """call(out_ptr) for each pre-fill pattern; checks the guards and that both runs wrote the same values."""
    size = int(np.prod(shape))
    results = []
    for fill in FILLS:
        buf = np.full(size + 2 * GUARD, fill, np.int8)
        call(_ptr(buf[GUARD:GUARD + size], ctypes.c_int8))
        assert np.all(buf[:GUARD] == fill), "the kernel wrote before its output buffer"
        assert np.all(buf[GUARD + size:] == fill), "the kernel wrote past its output buffer"
        results.append(buf[GUARD:GUARD + size].copy())
    assert np.array_equal(results[0], results[1]), "the kernel left some output elements unwritten"
    return results[0].reshape(shape)


class Kernels:
    """The loaded library; methods take the numpy twins' arguments."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        for name, (restype, argtypes) in SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.restype = restype
            fn.argtypes = argtypes

    # --- fixed point
    def doubling_high_mult(self, a: int, multiplier: int) -> int:
        return self.lib.frk_doubling_high_mult(a, multiplier)

    def rounding_divide_by_pot(self, x: int, exponent: int) -> int:
        return self.lib.frk_rounding_divide_by_pot(x, exponent)

    def requantize(self, acc: int, multiplier: int, shift: int) -> int:
        return self.lib.frk_requantize(acc, multiplier, shift)

    # --- conv / depthwise
    def _conv(self, fn, x, w, bias, input_offset, output_offset, stride, dilation, padding, act_min, act_max,
              multiplier, shift, depth_multiplier, depthwise, filter_shape=None, decoy_seed=0, bits=4):
        """filter_shape given: w is the packed int4 / int2 (bits) filter of that shape (the s4 / s2 kernels), else
        int8 values.
        One (multiplier, shift) pair runs per_channel = 0 with decoy pairs after it (quant_tables)."""
        x = _i8(x)
        if filter_shape is None:
            w = _i8(w)
            filter_shape, w_ctype = w.shape, ctypes.c_int8
        else:
            w, w_ctype = _packed(w, filter_shape, bits), ctypes.c_uint8
        n, h, wd, cin = x.shape
        if depthwise:
            _, kh, kw, cout = filter_shape
        else:
            cout, kh, kw, _ = filter_shape
        oh = out_size(h, padding[0], padding[2], kh, stride[0], dilation[0])
        ow = out_size(wd, padding[1], padding[3], kw, stride[1], dilation[1])
        m, s, per_channel = quant_tables(multiplier, shift, cout, decoy_seed)
        b = None if bias is None else _i32(bias)
        params = FrkConvParams(input_offset, output_offset, stride[0], stride[1], dilation[0], dilation[1],
                               padding[0], padding[1], act_min, act_max, depth_multiplier)
        in_dims = FrkDims(n, h, wd, cin)
        f_dims = FrkDims(*filter_shape)
        out_dims = FrkDims(n, oh, ow, cout)
        return _run_guarded((n, oh, ow, cout), lambda out: fn(
            ctypes.byref(params), _ptr(m, I32), _ptr(s, I32), per_channel, ctypes.byref(in_dims),
            _ptr(x, ctypes.c_int8),
            ctypes.byref(f_dims), _ptr(w, w_ctype), _ptr(b, I32), ctypes.byref(out_dims), out))

    def convolve_s8(self, x, w, bias, input_offset, output_offset, stride, dilation, padding, act_min, act_max,
                    multiplier, shift, decoy_seed: int | None = 0):
        return self._conv(self.lib.frk_convolve_s8, x, w, bias, input_offset, output_offset, stride, dilation,
                          padding, act_min, act_max, multiplier, shift, 1, depthwise=False, decoy_seed=decoy_seed)

    def depthwise_conv_s8(self, x, w, bias, input_offset, output_offset, stride, dilation, padding, act_min,
                          act_max, multiplier, shift, depth_multiplier=1, decoy_seed: int | None = 0):
        return self._conv(self.lib.frk_depthwise_conv_s8, x, w, bias, input_offset, output_offset, stride,
                          dilation, padding, act_min, act_max, multiplier, shift, depth_multiplier, depthwise=True,
                          decoy_seed=decoy_seed)

    def convolve_s4(self, x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation, padding,
                    act_min, act_max, multiplier, shift, decoy_seed: int | None = 0):
        return self._conv(self.lib.frk_convolve_s4, x, w_packed, bias, input_offset, output_offset, stride,
                          dilation, padding, act_min, act_max, multiplier, shift, 1, depthwise=False,
                          filter_shape=tuple(filter_shape), decoy_seed=decoy_seed)

    def depthwise_conv_s4(self, x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation,
                          padding, act_min, act_max, multiplier, shift, depth_multiplier=1,
                          decoy_seed: int | None = 0):
        return self._conv(self.lib.frk_depthwise_conv_s4, x, w_packed, bias, input_offset, output_offset, stride,
                          dilation, padding, act_min, act_max, multiplier, shift, depth_multiplier, depthwise=True,
                          filter_shape=tuple(filter_shape), decoy_seed=decoy_seed)

    def convolve_s2(self, x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation, padding,
                    act_min, act_max, multiplier, shift, decoy_seed: int | None = 0):
        return self._conv(self.lib.frk_convolve_s2, x, w_packed, bias, input_offset, output_offset, stride,
                          dilation, padding, act_min, act_max, multiplier, shift, 1, depthwise=False,
                          filter_shape=tuple(filter_shape), decoy_seed=decoy_seed, bits=2)

    def depthwise_conv_s2(self, x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation,
                          padding, act_min, act_max, multiplier, shift, depth_multiplier=1,
                          decoy_seed: int | None = 0):
        return self._conv(self.lib.frk_depthwise_conv_s2, x, w_packed, bias, input_offset, output_offset, stride,
                          dilation, padding, act_min, act_max, multiplier, shift, depth_multiplier, depthwise=True,
                          filter_shape=tuple(filter_shape), decoy_seed=decoy_seed, bits=2)

    # --- fully connected
    def fully_connected_s8(self, x, w, bias, input_offset, output_offset, act_min, act_max, multiplier, shift,
                           decoy_seed: int | None = 0):
        """One (M, shift) pair -> per_channel = 0, else per_channel = 1. For a single pair the arrays passed to C
        still have C_out entries, with the pair first and different decoy pairs after it (from decoy_seed), so a
        kernel that indexed them per channel would read values that change its output."""
        return self._fc(self.lib.frk_fully_connected_s8, x, _i8(w), ctypes.c_int8, w.shape[0], bias, input_offset,
                        output_offset, act_min, act_max, multiplier, shift, decoy_seed)

    def fully_connected_s4(self, x, w_packed, filter_shape, bias, input_offset, output_offset, act_min, act_max,
                           multiplier, shift, decoy_seed: int | None = 0):
        """As fully_connected_s8, with the [C_out, depth] filter packed two int4 values per byte."""
        return self._fc(self.lib.frk_fully_connected_s4, x, _packed(w_packed, filter_shape), ctypes.c_uint8,
                        filter_shape[0], bias, input_offset, output_offset, act_min, act_max, multiplier, shift,
                        decoy_seed)

    def fully_connected_s2(self, x, w_packed, filter_shape, bias, input_offset, output_offset, act_min, act_max,
                           multiplier, shift, decoy_seed: int | None = 0):
        """As fully_connected_s8, with the [C_out, depth] filter packed four int2 values per byte."""
        return self._fc(self.lib.frk_fully_connected_s2, x, _packed(w_packed, filter_shape, 2), ctypes.c_uint8,
                        filter_shape[0], bias, input_offset, output_offset, act_min, act_max, multiplier, shift,
                        decoy_seed)

    def _fc(self, fn, x, w, w_ctype, cout, bias, input_offset, output_offset, act_min, act_max, multiplier, shift,
            decoy_seed):
        x = _i8(x)
        batch = x.shape[0]
        depth = x.size // batch
        m, s, per_channel = quant_tables(multiplier, shift, cout, decoy_seed)
        b = None if bias is None else _i32(bias)
        params = FrkFcParams(input_offset, output_offset, act_min, act_max)
        return _run_guarded((batch, cout), lambda out: fn(
            ctypes.byref(params), _ptr(m, I32), _ptr(s, I32), per_channel, batch, depth, _ptr(x, ctypes.c_int8),
            _ptr(w, w_ctype), _ptr(b, I32), cout, out))

    # --- add
    def elementwise_add_s8(self, x1, x2, input1_offset, input2_offset, output_offset, left_shift, input1_multiplier,
                           input1_shift, input2_multiplier, input2_shift, output_multiplier, output_shift, act_min,
                           act_max, name: str = "frk_elementwise_add_s8"):
        """name: the kernel with the portable arguments (frk_elementwise_add_s8, or its Helium twin _mve)."""
        x1, x2 = _i8(x1), _i8(x2)
        assert x1.shape == x2.shape
        params = FrkAddParams(input1_offset, input1_multiplier, input1_shift, input2_offset, input2_multiplier,
                              input2_shift, left_shift, output_offset, output_multiplier, output_shift, act_min,
                              act_max)
        return _run_guarded(x1.shape, lambda out: getattr(self.lib, name)(
            ctypes.byref(params), _ptr(x1, ctypes.c_int8), _ptr(x2, ctypes.c_int8), x1.size, out))

    # --- pooling
    def _pool(self, fn, x, filter_hw, stride, padding, act_min, act_max):
        x = _i8(x)
        n, h, w, c = x.shape
        oh = out_size(h, padding[0], padding[2], filter_hw[0], stride[0])
        ow = out_size(w, padding[1], padding[3], filter_hw[1], stride[1])
        params = FrkPoolParams(stride[0], stride[1], padding[0], padding[1], act_min, act_max)
        in_dims, out_dims = FrkDims(n, h, w, c), FrkDims(n, oh, ow, c)
        return _run_guarded((n, oh, ow, c), lambda out: fn(
            ctypes.byref(params), ctypes.byref(in_dims), _ptr(x, ctypes.c_int8), filter_hw[0], filter_hw[1],
            ctypes.byref(out_dims), out))

    def avgpool_s8(self, x, filter_hw, stride, padding, act_min, act_max):
        return self._pool(self.lib.frk_avgpool_s8, x, filter_hw, stride, padding, act_min, act_max)

    def max_pool_s8(self, x, filter_hw, stride, padding, act_min, act_max):
        return self._pool(self.lib.frk_max_pool_s8, x, filter_hw, stride, padding, act_min, act_max)

    # --- softmax
    def softmax_s8_status(self, x, params) -> tuple[int, np.ndarray]:
        """(return code, output) over the last axis of x; the output is only meaningful for code 0."""
        x = _i8(x)
        depth = x.shape[-1]
        rows = x.size // depth
        p = FrkSoftmaxParams(params.input_multiplier, params.input_left_shift, params.diff_min)
        out = np.zeros(x.shape, np.int8)
        rc = self.lib.frk_softmax_s8(ctypes.byref(p), rows, depth, _ptr(x, ctypes.c_int8),
                                     _ptr(out, ctypes.c_int8))
        return rc, out

    def softmax_s8(self, x, params) -> np.ndarray:
        x = _i8(x)
        depth = x.shape[-1]
        rows = x.size // depth
        p = FrkSoftmaxParams(params.input_multiplier, params.input_left_shift, params.diff_min)
        codes = []

        def call(out):
            codes.append(self.lib.frk_softmax_s8(ctypes.byref(p), rows, depth, _ptr(x, ctypes.c_int8), out))

        out = _run_guarded(x.shape, call)
        assert codes == [0, 0], f"frk_softmax_s8 returned {codes}"
        return out


# ----------------------------------------------------------------------------------------------------------
# The fast kernels (frk_*_dsp.c, declared at the end of frk_nn.h). On the host they run the C versions of the
# DSP instructions (frk_dsp_support.h). They take the export-time data of flexround_mcu/codegen/kernels.py:
# the filter in the fast layout (choice.filter_values), kernel_bias and a scratch buffer of
# choice.scratch_bytes (4-byte aligned, as the export declares it); ADD takes input1 = the half-scale input and
# choice.table; the pooling kernels take exactly the portable ones' arguments (no export-time data).

DSP_SIGNATURES = {
    "frk_convolve_s8_dsp": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_I8, P_I32,
                                   P(FrkDims), P_I8, P_I8]),
    "frk_convolve_s4_dsp": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_U8, P_I32,
                                   P(FrkDims), P_I8, P_I8]),
    "frk_depthwise_conv_s8_dsp": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_I8,
                                         P_I32, P(FrkDims), P_I8, P_I8]),
    "frk_depthwise_conv_s4_dsp": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_U8,
                                         P_I32, P(FrkDims), P_I8, P_I8]),
    "frk_fully_connected_s8_dsp": (None, [P(FrkFcParams), P_I32, P_I32, I32, I32, I32, P_I8, P_I8, P_I32, I32, P_I8,
                                          P_I8]),
    "frk_fully_connected_s4_dsp": (None, [P(FrkFcParams), P_I32, P_I32, I32, I32, I32, P_I8, P_U8, P_I32, I32, P_I8,
                                          P_I8]),
    "frk_convolve_s2_dsp": (None, [P(FrkConvParams), P_I32, P_I32, I32, P(FrkDims), P_I8, P(FrkDims), P_U8, P_I32,
                                   P(FrkDims), P_I8, P_I8]),
    "frk_fully_connected_s2_dsp": (None, [P(FrkFcParams), P_I32, P_I32, I32, I32, I32, P_I8, P_U8, P_I32, I32, P_I8,
                                          P_I8]),
    "frk_elementwise_add_s8_dsp": (None, [P(FrkAddParams), P_I8, P_I8, I32, P_I8, P_I32]),
    "frk_avgpool_s8_dsp": (None, [P(FrkPoolParams), P(FrkDims), P_I8, I32, I32, P(FrkDims), P_I8]),
    "frk_max_pool_s8_dsp": (None, [P(FrkPoolParams), P(FrkDims), P_I8, I32, I32, P(FrkDims), P_I8]),
}
SIGNATURES.update(DSP_SIGNATURES)
# The Helium kernels (frk_*_mve.c) take the same arguments as their _dsp twins; on the host, C versions.
MVE_SIGNATURES = {name.replace("_dsp", "_mve"): sig for name, sig in DSP_SIGNATURES.items()
                  if name.startswith(("frk_convolve_", "frk_fully_connected_", "frk_depthwise_conv_"))
                  and "_s2_" not in name}  # 2-bit layers run the dsp core on the M55 too
MVE_SIGNATURES["frk_elementwise_add_s8_mve"] = (None, [P(FrkAddParams), P_I8, P_I8, I32, P_I8])
for _pool in ("frk_avgpool_s8_mve", "frk_max_pool_s8_mve"):
    MVE_SIGNATURES[_pool] = DSP_SIGNATURES[_pool.replace("_mve", "_dsp")]
SIGNATURES.update(MVE_SIGNATURES)
SCRATCH_FILL = 0x3C  # scratch pre-fill: the kernels must not depend on it


def build_dsp_library(out_dir: Path, compiler: str = "gcc", defines=(), name: str = "libfrk_dsp.so") -> Path:
    """Every kernel file into one shared library, like build_shared_library, with extra -D defines (e.g.
    FRK_TEST_BREAK_DSP_ROUNDING for the deliberately wrong fast path)."""
    lib = Path(out_dir) / name
    cmd = [compiler, *STRICT_FLAGS, *(f"-D{d}" for d in defines), "-shared", "-fPIC", f"-I{KERNEL_DIR}", "-o",
           str(lib), *map(str, kernel_sources())]
    run_compiler(cmd)
    return lib


def _typed(a: np.ndarray) -> tuple[np.ndarray, object]:
    a = np.ascontiguousarray(a)
    if a.dtype == np.int8:
        return a, ctypes.c_int8
    assert a.dtype == np.uint8, a.dtype
    return a, ctypes.c_uint8


def _with_scratch(scratch_bytes: int, call):
    """call(out) -> call(out, scratch): a fresh 4-byte-aligned scratch of scratch_bytes between guard bytes for each
    run (NULL when the size is 0, as the export passes it); a write outside it fails."""
    def run(out):
        if scratch_bytes == 0:
            return call(out, None)
        buf = np.full(scratch_bytes + 2 * GUARD, SCRATCH_FILL, np.int8)
        inner = buf[GUARD:GUARD + scratch_bytes]
        assert inner.ctypes.data % 4 == 0
        call(out, _ptr(inner, ctypes.c_int8))
        assert np.all(buf[:GUARD] == SCRATCH_FILL), "the kernel wrote before its scratch buffer"
        assert np.all(buf[GUARD + scratch_bytes:] == SCRATCH_FILL), "the kernel wrote past its scratch buffer"
    return run


class DspKernels(Kernels):
    """Kernels plus the fast kernels, called with the export's data (codegen/kernels.py KernelChoice)."""

    def _conv_dsp(self, fn, x, filter_values, filter_shape, kernel_bias, input_offset, output_offset, stride,
                  dilation, padding, act_min, act_max, multiplier, shift, scratch_bytes, depthwise, decoy_seed):
        x = _i8(x)
        w, w_ctype = _typed(filter_values)
        n, h, wd, cin = x.shape
        if depthwise:
            _, kh, kw, cout = filter_shape
        else:
            cout, kh, kw, _ = filter_shape
        oh = out_size(h, padding[0], padding[2], kh, stride[0], dilation[0])
        ow = out_size(wd, padding[1], padding[3], kw, stride[1], dilation[1])
        m, s, per_channel = quant_tables(multiplier, shift, cout, decoy_seed)
        kb = _i32(kernel_bias)
        assert kb.size == cout
        params = FrkConvParams(input_offset, output_offset, stride[0], stride[1], dilation[0], dilation[1],
                               padding[0], padding[1], act_min, act_max, 1)
        in_dims, f_dims, out_dims = FrkDims(n, h, wd, cin), FrkDims(*filter_shape), FrkDims(n, oh, ow, cout)
        return _run_guarded((n, oh, ow, cout), _with_scratch(scratch_bytes, lambda out, scratch: fn(
            ctypes.byref(params), _ptr(m, I32), _ptr(s, I32), per_channel, ctypes.byref(in_dims),
            _ptr(x, ctypes.c_int8), ctypes.byref(f_dims), _ptr(w, w_ctype), _ptr(kb, I32), ctypes.byref(out_dims),
            out, scratch)))

    def convolve_dsp(self, bits: int, x, filter_values, filter_shape, kernel_bias, input_offset, output_offset,
                     stride, dilation, padding, act_min, act_max, multiplier, shift, scratch_bytes,
                     decoy_seed: int | None = 0, suffix: str = "_dsp"):
        fn = getattr(self.lib, f"frk_convolve_s{bits}{suffix}")
        return self._conv_dsp(fn, x, filter_values, filter_shape, kernel_bias, input_offset, output_offset, stride,
                              dilation, padding, act_min, act_max, multiplier, shift, scratch_bytes, False,
                              decoy_seed)

    def depthwise_conv_dsp(self, bits: int, x, filter_values, filter_shape, kernel_bias, input_offset,
                           output_offset, stride, dilation, padding, act_min, act_max, multiplier, shift,
                           scratch_bytes, decoy_seed: int | None = 0, suffix: str = "_dsp"):
        fn = getattr(self.lib, f"frk_depthwise_conv_s{bits}{suffix}")
        return self._conv_dsp(fn, x, filter_values, filter_shape, kernel_bias, input_offset, output_offset, stride,
                              dilation, padding, act_min, act_max, multiplier, shift, scratch_bytes, True,
                              decoy_seed)

    def fully_connected_dsp(self, bits: int, x, filter_values, out_channels: int, kernel_bias, input_offset,
                            output_offset, act_min, act_max, multiplier, shift, scratch_bytes,
                            decoy_seed: int | None = 0, suffix: str = "_dsp"):
        fn = getattr(self.lib, f"frk_fully_connected_s{bits}{suffix}")
        x = _i8(x)
        w, w_ctype = _typed(filter_values)
        batch = x.shape[0]
        depth = x.size // batch
        m, s, per_channel = quant_tables(multiplier, shift, out_channels, decoy_seed)
        kb = _i32(kernel_bias)
        assert kb.size == out_channels
        params = FrkFcParams(input_offset, output_offset, act_min, act_max)
        return _run_guarded((batch, out_channels), _with_scratch(scratch_bytes, lambda out, scratch: fn(
            ctypes.byref(params), _ptr(m, I32), _ptr(s, I32), per_channel, batch, depth, _ptr(x, ctypes.c_int8),
            _ptr(w, w_ctype), _ptr(kb, I32), out_channels, out, scratch)))

    def elementwise_add_dsp(self, half_input, other_input, table, input1_offset, input2_offset, output_offset,
                            left_shift, input1_multiplier, input1_shift, input2_multiplier, input2_shift,
                            output_multiplier, output_shift, act_min, act_max):
        """half_input: the input at the real multiplier 0.5 (the graph's input2 when choice.swap_inputs);
        table: choice.table (256 int32). The params carry the graph's fields unchanged, in the graph's order."""
        x1, x2 = _i8(half_input), _i8(other_input)
        assert x1.shape == x2.shape
        t = _i32(table)
        assert t.size == 256
        params = FrkAddParams(input1_offset, input1_multiplier, input1_shift, input2_offset, input2_multiplier,
                              input2_shift, left_shift, output_offset, output_multiplier, output_shift, act_min,
                              act_max)
        return _run_guarded(x1.shape, lambda out: self.lib.frk_elementwise_add_s8_dsp(
            ctypes.byref(params), _ptr(x1, ctypes.c_int8), _ptr(x2, ctypes.c_int8), x1.size, out, _ptr(t, I32)))

    # --- pooling: the twins' arguments, as avgpool_s8 / max_pool_s8
    def avgpool_s8_dsp(self, x, filter_hw, stride, padding, act_min, act_max):
        return self._pool(self.lib.frk_avgpool_s8_dsp, x, filter_hw, stride, padding, act_min, act_max)

    def max_pool_s8_dsp(self, x, filter_hw, stride, padding, act_min, act_max):
        return self._pool(self.lib.frk_max_pool_s8_dsp, x, filter_hw, stride, padding, act_min, act_max)


# A test-only translation unit exporting the fast kernels' requantization epilogue (frk__output_stage_dsp, static
# inline in frk_dsp_support.h), so it can be compared with frk_requantize on whole ranges of accumulators.
DSP_INTERNALS_C = """
#include "frk_dsp_support.h"

void frk_test_output_stage_dsp(const int32_t *acc, int32_t n, int32_t multiplier, int32_t shift,
                               int32_t output_offset, int32_t act_min, int32_t act_max, int8_t *out);

void frk_test_output_stage_dsp(const int32_t *acc, int32_t n, int32_t multiplier, int32_t shift,
                               int32_t output_offset, int32_t act_min, int32_t act_max, int8_t *out)
{
    const frk__rq rq = frk__rq_for(multiplier, shift);
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = frk__output_stage_dsp(acc[i], &rq, output_offset, act_min - output_offset,
                                       act_max - output_offset);
    }
}
"""


class DspInternals:
    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        self.lib.frk_test_output_stage_dsp.restype = None
        self.lib.frk_test_output_stage_dsp.argtypes = [P_I32, I32, I32, I32, I32, I32, I32, P_I8]

    def output_stage(self, acc, multiplier: int, shift: int, output_offset: int, act_min: int,
                     act_max: int) -> np.ndarray:
        a = _i32(acc)
        out = np.zeros(a.shape, np.int8)
        self.lib.frk_test_output_stage_dsp(_ptr(a, I32), a.size, multiplier, shift, output_offset, act_min, act_max,
                                           _ptr(out, ctypes.c_int8))
        return out


def build_dsp_internals(out_dir: Path, compiler: str = "gcc", defines=()) -> DspInternals:
    tag = "_".join(defines).lower() or "plain"
    src = Path(out_dir) / f"frk_dsp_internals_{tag}.c"
    src.write_text(DSP_INTERNALS_C)
    lib = Path(out_dir) / f"libfrk_dsp_internals_{tag}.so"
    run_compiler([compiler, *STRICT_FLAGS, *(f"-D{d}" for d in defines), "-shared", "-fPIC", f"-I{KERNEL_DIR}",
                  "-o", str(lib), str(src)])
    return DspInternals(lib)
