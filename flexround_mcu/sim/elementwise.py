"""elementwise_add_s8 (twin of firmware/kernels/frk_elementwise.c): TFLM's int8 ADD.

For each element:
    a = requantize((q1 - zp1) << left_shift, M1, shift1)
    b = requantize((q2 - zp2) << left_shift, M2, shift2)
    y = clamp(requantize(a + b, M_out, shift_out) + zp_out, act_min, act_max)
Three double-rounding requantizations; left_shift is 20 for int8, so (q - zp) << 20 stays inside int32.
"""
from __future__ import annotations

import numpy as np

from ..fixedpoint import Requantizer


def elementwise_add_s8(x1, x2, input1_offset, input2_offset, output_offset, left_shift, input1_multiplier,
                       input1_shift, input2_multiplier, input2_shift, output_multiplier, output_shift,
                       act_min, act_max):
    rq1 = Requantizer(input1_multiplier, input1_shift, 0, -128, 127)
    rq2 = Requantizer(input2_multiplier, input2_shift, 0, -128, 127)
    rq_out = Requantizer(output_multiplier, output_shift, output_offset, act_min, act_max)
    return add_prepared(x1, x2, input1_offset, input2_offset, left_shift, rq1, rq2, rq_out)


def add_prepared(x1, x2, input1_offset, input2_offset, left_shift, rq1, rq2, rq_out):
    a_flat, b_flat = x1.reshape(-1), x2.reshape(-1)
    out = np.empty(a_flat.shape, np.int8)
    for s in range(0, a_flat.size, Requantizer.BLOCK):
        a = a_flat[s:s + Requantizer.BLOCK].astype(np.int64)
        a += input1_offset
        a <<= left_shift
        b = b_flat[s:s + Requantizer.BLOCK].astype(np.int64)
        b += input2_offset
        b <<= left_shift
        a = rq1.scale_(a)
        a += rq2.scale_(b)
        rq_out.finish_(rq_out.scale_(a), out[s:s + Requantizer.BLOCK])
    return out.reshape(x1.shape)
