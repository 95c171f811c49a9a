"""Convolution kernels: convolve_s8, depthwise_conv_s8, fully_connected_s8 and their int4-weight siblings
convolve_s4, depthwise_conv_s4, fully_connected_s4 (twins of flexround_mcu/firmware/kernels/frk_*.c).

All six compute, per output channel c (docs/arithmetic.md §conv):
    acc = bias[c] + sum_k w[c,k] * (x_k + input_offset)          (padding taps are real zeros: they add nothing)
    y   = clamp(requantize(acc, M[c], shift[c]) + output_offset, act_min, act_max)

Speed without giving up exactness: acc is split as sum_k w*x + input_offset*sum_k w, padding is filled with
-input_offset (the input zero point, so its two terms cancel), and sum_k w*x is a BLAS matrix product in
floating point. That product is exact: every partial sum is an integer of magnitude <= K*128*max|w|, so float32
is exact while that bound is <= 2**24 and float64 while it is <= 2**53 (`accumulation_dtype` picks). The
prepare step (weights as a matrix, the offset term) runs once per op; invoke runs per batch.

The s4 twins take the filter as the C kernels do, packed two int4 values per byte (flexround_mcu/int4.py, CMSIS-NN's
layout). The arithmetic is the s8 one on the unpacked values, so the s4 prepare step unpacks the bytes and builds
the same prepared filter, and the s4 invoke is the s8 one: the packing is paid once per op, never per batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixedpoint import Requantizer
from ..packing import unpack_bits


def accumulation_dtype(depth: int, max_abs_weight: int):
    """The cheapest float type in which a dot product of `depth` int8 inputs and these weights is exact."""
    bound = depth * 128 * max(int(max_abs_weight), 1)
    if bound <= 1 << 24:
        return np.float32
    if bound <= 1 << 53:
        return np.float64
    raise ValueError(f"a dot product over {depth} terms cannot be accumulated exactly")


CACHE_ELEMENTS = 1 << 17  # patch-matrix elements per block: 512 KiB of float32


@dataclass
class PreparedFilter:
    """The weights as a (K, C_out) matrix in the exact accumulation type, and the per-channel int64 term
    bias[c] + input_offset * sum_k w[c,k]."""

    matrix: np.ndarray
    offset_term: np.ndarray


def prepare_filter(w2d: np.ndarray, bias: np.ndarray | None, input_offset: int) -> PreparedFilter:
    """w2d is (C_out, K) int8."""
    w64 = w2d.astype(np.int64)
    term = input_offset * w64.sum(axis=1)
    if bias is not None:
        term = term + bias.astype(np.int64)
    dtype = accumulation_dtype(w2d.shape[1], np.abs(w64).max() if w64.size else 0)
    return PreparedFilter(np.ascontiguousarray(w2d.T.astype(dtype)), term)


def _pad(x: np.ndarray, padding, value: int) -> np.ndarray:
    pt, pl, pb, pr = padding
    if not (pt or pl or pb or pr):
        return x
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)


def _out_size(size: int, pad_total: int, k: int, stride: int, dilation: int) -> int:
    return (size + pad_total - ((k - 1) * dilation + 1)) // stride + 1


def _taps(xp: np.ndarray, kh: int, kw: int, stride, dilation, oh: int, ow: int):
    """Yield (i, j, view) with view[n, y, x, c] = xp[n, y*sh + i*dh, x*sw + j*dw, c]."""
    sh, sw = stride
    dh, dw = dilation
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw, :]


def _padded(x: np.ndarray, padding, value: int, dtype) -> np.ndarray:
    """x converted to `dtype` with the padding filled with `value`, in one pass."""
    pt, pl, pb, pr = padding
    n, h, w, c = x.shape
    xp = np.empty((n, h + pt + pb, w + pl + pr, c), dtype)
    if pt or pl or pb or pr:
        xp.fill(value)
    xp[:, pt:pt + h, pl:pl + w, :] = x
    return xp


def im2col(xp: np.ndarray, kh: int, kw: int, stride, dilation, oh: int, ow: int) -> np.ndarray:
    """(N*OH*OW, KH*KW*C) patches in (kh, kw, c) order, the flattening order of a [C_out, KH, KW, C_in] filter.

    Without horizontal dilation a patch row (kw, c) is one contiguous run of the NHWC input, so the patches are
    a strided view copied once."""
    n, _, _, c = xp.shape
    if dilation[1] == 1:
        sn, sh, sw, sc = xp.strides
        view = np.lib.stride_tricks.as_strided(
            xp, shape=(n, oh, ow, kh, kw * c),
            strides=(sn, sh * stride[0], sw * stride[1], sh * dilation[0], sc), writeable=False)
        return view.reshape(n * oh * ow, kh * kw * c)
    cols = np.empty((n, oh, ow, kh, kw, c), xp.dtype)
    for i, j, view in _taps(xp, kh, kw, stride, dilation, oh, ow):
        cols[:, :, :, i, j, :] = view
    return cols.reshape(n * oh * ow, kh * kw * c)


def convolve_s8_prepared(x, prep: PreparedFilter, requant: Requantizer, kernel_hw, input_offset, stride, dilation,
                         padding):
    n, h, w, cin = x.shape
    kh, kw = kernel_hw
    oh = _out_size(h, padding[0] + padding[2], kh, stride[0], dilation[0])
    ow = _out_size(w, padding[1] + padding[3], kw, stride[1], dilation[1])
    xp = _padded(x, padding, -input_offset, prep.matrix.dtype)
    # A few images at a time, so that the patches, their product and the requantization stay in cache.
    step = max(1, CACHE_ELEMENTS // (oh * ow * prep.matrix.shape[0]))
    y = np.empty((n, oh, ow, prep.matrix.shape[1]), np.int8)
    for s in range(0, n, step):
        cols = im2col(xp[s:s + step], kh, kw, stride, dilation, oh, ow)
        y[s:s + step] = requant(cols @ prep.matrix, prep.offset_term).reshape(-1, oh, ow, y.shape[3])
    return y


def convolve_s8(x, w, bias, input_offset, output_offset, stride, dilation, padding, act_min, act_max,
                multiplier, shift):
    """CONV_2D. x (N,H,W,C_in) int8, w (C_out,KH,KW,C_in), bias (C_out,) int32 or None; padding (t,l,b,r)."""
    prep = prepare_filter(w.reshape(w.shape[0], -1), bias, input_offset)
    requant = Requantizer(multiplier, shift, output_offset, act_min, act_max)
    return convolve_s8_prepared(x, prep, requant, w.shape[1:3], input_offset, stride, dilation, padding)


@dataclass
class PreparedDepthwise:
    """A depthwise filter as (KH, KW, C_out) int32 taps, and the per-channel int64 term
    bias[c] + input_offset * sum_k w[k, c]."""

    taps: np.ndarray
    offset_term: np.ndarray


def prepare_depthwise_filter(w: np.ndarray, bias: np.ndarray | None, input_offset: int) -> PreparedDepthwise:
    """w is the (1, KH, KW, C_out) int8 filter."""
    taps = w[0].astype(np.int32)
    term = input_offset * taps.reshape(-1, taps.shape[-1]).astype(np.int64).sum(axis=0)
    if bias is not None:
        term = term + bias.astype(np.int64)
    return PreparedDepthwise(np.ascontiguousarray(taps), term)


def depthwise_conv_s8_prepared(x, prep: PreparedDepthwise, requant: Requantizer, input_offset, stride, dilation,
                               padding, depth_multiplier=1):
    n, h, wd, cin = x.shape
    kh, kw, cout = prep.taps.shape
    oh = _out_size(h, padding[0] + padding[2], kh, stride[0], dilation[0])
    ow = _out_size(wd, padding[1] + padding[3], kw, stride[1], dilation[1])
    xp = _pad(x, padding, -input_offset)
    if depth_multiplier > 1:
        xp = np.repeat(xp, depth_multiplier, axis=3)
    acc = np.zeros((n, oh, ow, cout), np.int32)
    for i, j, view in _taps(xp, kh, kw, stride, dilation, oh, ow):
        acc += view.astype(np.int32) * prep.taps[i, j]
    return requant(acc, prep.offset_term)


def depthwise_conv_s8(x, w, bias, input_offset, output_offset, stride, dilation, padding, act_min, act_max,
                      multiplier, shift, depth_multiplier=1):
    """DEPTHWISE_CONV_2D. w is (1,KH,KW,C_out) with C_out = C_in * depth_multiplier; output channel
    c_in * depth_multiplier + m reads input channel c_in. Accumulates in int32 like the C kernel (exact:
    |acc| <= KH*KW*255*127 is far inside int32)."""
    prep = prepare_depthwise_filter(w, bias, input_offset)
    requant = Requantizer(multiplier, shift, output_offset, act_min, act_max)
    return depthwise_conv_s8_prepared(x, prep, requant, input_offset, stride, dilation, padding, depth_multiplier)


def fully_connected_s8_prepared(x, prep: PreparedFilter, requant: Requantizer):
    return requant(x.reshape(x.shape[0], -1).astype(prep.matrix.dtype) @ prep.matrix, prep.offset_term)


def fully_connected_s8(x, w, bias, input_offset, output_offset, act_min, act_max, multiplier, shift):
    """FULLY_CONNECTED. x (N, ...) flattened to (N, K); w (C_out, K); one (M, shift) or one per channel."""
    prep = prepare_filter(w, bias, input_offset)
    return fully_connected_s8_prepared(x, prep, Requantizer(multiplier, shift, output_offset, act_min, act_max))


# ----------------------------------------------------------------------------------------- int4 / int2 weights
def unpack_filter(w_packed: np.ndarray, filter_shape, bits: int) -> np.ndarray:
    """Packed s4 (bits 4) or s2 (bits 2) filter bytes -> its int8 values, shaped `filter_shape` (element i of the
    flattened filter in byte i >> 1 / i >> 2, lowest bits first: flexround_mcu/packing.py)."""
    shape = tuple(int(d) for d in filter_shape)
    return unpack_bits(w_packed, int(np.prod(shape, dtype=np.int64)), bits).reshape(shape)


def prepare_packed_filter(w_packed: np.ndarray, filter_shape, bias: np.ndarray | None, input_offset: int,
                          bits: int = 4) -> PreparedFilter:
    """A packed CONV_2D [C_out, KH, KW, C_in] or FULLY_CONNECTED [C_out, depth] filter, prepared as for s8."""
    w = unpack_filter(w_packed, filter_shape, bits)
    return prepare_filter(w.reshape(w.shape[0], -1), bias, input_offset)


def prepare_packed_depthwise_filter(w_packed: np.ndarray, filter_shape, bias: np.ndarray | None,
                                    input_offset: int, bits: int = 4) -> PreparedDepthwise:
    """A packed DEPTHWISE_CONV_2D [1, KH, KW, C_out] filter, prepared as for s8."""
    return prepare_depthwise_filter(unpack_filter(w_packed, filter_shape, bits), bias, input_offset)


# The s4 and s2 invokes are the s8 ones on the unpacked values: the packing is paid once, in the prepare step.
def _convolve_packed(bits, x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation, padding,
                     act_min, act_max, multiplier, shift):
    prep = prepare_packed_filter(w_packed, filter_shape, bias, input_offset, bits)
    requant = Requantizer(multiplier, shift, output_offset, act_min, act_max)
    return convolve_s8_prepared(x, prep, requant, tuple(filter_shape[1:3]), input_offset, stride, dilation, padding)


def _depthwise_conv_packed(bits, x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation,
                           padding, act_min, act_max, multiplier, shift, depth_multiplier=1):
    prep = prepare_packed_depthwise_filter(w_packed, filter_shape, bias, input_offset, bits)
    requant = Requantizer(multiplier, shift, output_offset, act_min, act_max)
    return depthwise_conv_s8_prepared(x, prep, requant, input_offset, stride, dilation, padding, depth_multiplier)


def _fully_connected_packed(bits, x, w_packed, filter_shape, bias, input_offset, output_offset, act_min, act_max,
                            multiplier, shift):
    prep = prepare_packed_filter(w_packed, filter_shape, bias, input_offset, bits)
    return fully_connected_s8_prepared(x, prep, Requantizer(multiplier, shift, output_offset, act_min, act_max))


def convolve_s4(x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation, padding, act_min,
                act_max, multiplier, shift):
    """CONV_2D with an int4 filter: w_packed holds the [C_out, KH, KW, C_in] values `filter_shape` packed two per
    byte (uint8, packed_size(C_out*KH*KW*C_in) bytes); everything else as convolve_s8."""
    return _convolve_packed(4, x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation,
                            padding, act_min, act_max, multiplier, shift)


def depthwise_conv_s4(x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation, padding,
                      act_min, act_max, multiplier, shift, depth_multiplier=1):
    """DEPTHWISE_CONV_2D with an int4 filter: w_packed holds the [1, KH, KW, C_out] values packed two per byte;
    everything else as depthwise_conv_s8."""
    return _depthwise_conv_packed(4, x, w_packed, filter_shape, bias, input_offset, output_offset, stride,
                                  dilation, padding, act_min, act_max, multiplier, shift, depth_multiplier)


def fully_connected_s4(x, w_packed, filter_shape, bias, input_offset, output_offset, act_min, act_max, multiplier,
                       shift):
    """FULLY_CONNECTED with an int4 filter: w_packed holds the [C_out, depth] values packed two per byte (with an
    odd depth, every other row starts mid-byte); everything else as fully_connected_s8."""
    return _fully_connected_packed(4, x, w_packed, filter_shape, bias, input_offset, output_offset, act_min,
                                   act_max, multiplier, shift)


def convolve_s2(x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation, padding, act_min,
                act_max, multiplier, shift):
    """CONV_2D with an int2 filter: w_packed holds the [C_out, KH, KW, C_in] values packed four per byte
    (packed_size(count, 2) bytes); everything else as convolve_s8."""
    return _convolve_packed(2, x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation,
                            padding, act_min, act_max, multiplier, shift)


def depthwise_conv_s2(x, w_packed, filter_shape, bias, input_offset, output_offset, stride, dilation, padding,
                      act_min, act_max, multiplier, shift, depth_multiplier=1):
    """DEPTHWISE_CONV_2D with an int2 filter [1, KH, KW, C_out] packed four per byte; else as depthwise_conv_s8."""
    return _depthwise_conv_packed(2, x, w_packed, filter_shape, bias, input_offset, output_offset, stride,
                                  dilation, padding, act_min, act_max, multiplier, shift, depth_multiplier)


def fully_connected_s2(x, w_packed, filter_shape, bias, input_offset, output_offset, act_min, act_max, multiplier,
                       shift):
    """FULLY_CONNECTED with an int2 filter [C_out, depth] packed four per byte (rows start mid-byte when depth is
    not a multiple of 4); everything else as fully_connected_s8."""
    return _fully_connected_packed(2, x, w_packed, filter_shape, bias, input_offset, output_offset, act_min,
                                   act_max, multiplier, shift)
