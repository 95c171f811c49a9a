"""elementwise_add_s8 (twin of flexround_mcu/firmware/kernels/frk_elementwise_add_s8.c): TFLM's int8 ADD.

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
    rq_out = Requantizer(output_multiplier, output_shift, output_offset, act_min, act_max)
    table1 = input_rescale_table(input1_offset, left_shift, input1_multiplier, input1_shift)
    table2 = input_rescale_table(input2_offset, left_shift, input2_multiplier, input2_shift)
    return add_prepared(x1, x2, table1, table2, rq_out)


def input_rescale_table(input_offset, left_shift, multiplier, shift) -> np.ndarray:
    """requantize((q + input_offset) << left_shift, M, shift) for all 256 int8 q, indexed by q + 128.

    Each input's rescaled value depends on its int8 value alone, so the first two requantizations of every
    element are a table lookup (the C kernel computes them; the values are the same)."""
    q = np.arange(-128, 128, dtype=np.int64)
    return Requantizer(multiplier, shift, 0, -128, 127).scale_((q + input_offset) << left_shift)


def add_prepared(x1, x2, table1, table2, rq_out: Requantizer):
    a_flat, b_flat = x1.reshape(-1), x2.reshape(-1)
    out = np.empty(a_flat.shape, np.int8)
    for s in range(0, a_flat.size, Requantizer.BLOCK):
        a = table1[a_flat[s:s + Requantizer.BLOCK].astype(np.intp) + 128]
        a += table2[b_flat[s:s + Requantizer.BLOCK].astype(np.intp) + 128]
        rq_out.finish_(a, out[s:s + Requantizer.BLOCK])
    return out.reshape(x1.shape)
