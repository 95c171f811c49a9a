"""Pooling kernels: avgpool_s8, max_pool_s8 (twins of flexround_mcu/firmware/kernels/frk_pooling_s8.c).

Input and output share scale and zero point, so there is no rescale: the zero point passes through.
avgpool: sum of the raw int8 values over the window's valid (non-padding) part, divided by the number of valid
taps with ties away from zero: acc > 0 ? (acc + n/2) / n : (acc - n/2) / n in C integer division.
max_pool: the maximum over the valid taps. Both then clamp to [act_min, act_max].
"""
from __future__ import annotations

import numpy as np

from .convolve import _out_size, _taps


def _valid_counts(size: int, pad_before: int, k: int, stride: int, out: int) -> np.ndarray:
    start = np.arange(out) * stride - pad_before
    return np.minimum(start + k, size) - np.maximum(start, 0)


def avgpool_s8(x, filter_hw, stride, padding, act_min, act_max):
    n, h, w, c = x.shape
    kh, kw = filter_hw
    oh = _out_size(h, padding[0] + padding[2], kh, stride[0], 1)
    ow = _out_size(w, padding[1] + padding[3], kw, stride[1], 1)
    xp = np.pad(x.astype(np.int32), ((0, 0), (padding[0], padding[2]), (padding[1], padding[3]), (0, 0)))
    acc = np.zeros((n, oh, ow, c), np.int32)
    for _, _, view in _taps(xp, kh, kw, stride, (1, 1), oh, ow):
        acc += view
    count = np.outer(_valid_counts(h, padding[0], kh, stride[0], oh),
                     _valid_counts(w, padding[1], kw, stride[1], ow))[None, :, :, None].astype(np.int32)
    rounded = np.sign(acc) * ((np.abs(acc) + count // 2) // count)  # C division truncates: ties away from 0
    return np.clip(rounded, act_min, act_max).astype(np.int8)


def max_pool_s8(x, filter_hw, stride, padding, act_min, act_max):
    n, h, w, c = x.shape
    kh, kw = filter_hw
    oh = _out_size(h, padding[0] + padding[2], kh, stride[0], 1)
    ow = _out_size(w, padding[1] + padding[3], kw, stride[1], 1)
    low = np.iinfo(np.int16).min  # below every int8, so padding never wins
    xp = np.pad(x.astype(np.int16), ((0, 0), (padding[0], padding[2]), (padding[1], padding[3]), (0, 0)),
                constant_values=low)
    out = np.full((n, oh, ow, c), low, np.int16)
    for _, _, view in _taps(xp, kh, kw, stride, (1, 1), oh, ow):
        np.maximum(out, view, out=out)
    return np.clip(out, act_min, act_max).astype(np.int8)
