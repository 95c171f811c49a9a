"""Dense sub-byte packing of weights: int4 (CMSIS-NN's s4 layout, also TFLite's INT4 buffers) and int2.

The tensor is flattened in its natural (row-major) order and packed over the whole tensor with no per-row
padding, low bits first:
- int4: element 2k in bits 3..0 of byte k, element 2k+1 in bits 7..4, two's complement in [-8, 7];
- int2: element 4k+j in bits 2j+1..2j of byte k (j = 0..3), two's complement in [-2, 1] (2-bit layers use
  all four levels).
A count that does not fill the last byte leaves its high bits 0; rows whose length is not a multiple of the
values per byte start mid-byte. Used by codegen (weight arrays), sim (the s4 / s2 kernels' twins) and the .tflite
reader and writer; no torch here.
"""
from __future__ import annotations

import numpy as np

from .errors import UserError

INT4_MIN, INT4_MAX = -8, 7
INT2_MIN, INT2_MAX = -2, 1
PACKED_BITS = {"int4": 4, "int2": 2}  # QGraph filter dtypes stored below a byte per value


def packed_size(count: int, bits: int = 4) -> int:
    """Bytes that hold `count` values of `bits` (4 or 2) bits."""
    per_byte = 8 // bits
    return (int(count) + per_byte - 1) // per_byte


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Integers in the two's-complement range of `bits` (4 or 2), any shape flattened row-major -> uint8 bytes,
    the first value of each byte in its lowest bits."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v = np.asarray(values).reshape(-1)
    if v.size and (v.min() < lo or v.max() > hi):
        raise UserError(f"int{bits} packing: values must lie in [{lo}, {hi}], got [{v.min()}, {v.max()}]")
    per_byte = 8 // bits
    fields = (v.astype(np.int16) & ((1 << bits) - 1)).astype(np.uint8)
    fields = np.concatenate([fields, np.zeros(-fields.size % per_byte, np.uint8)]).reshape(-1, per_byte)
    out = np.zeros(fields.shape[0], np.uint8)
    for j in range(per_byte):
        out |= fields[:, j] << (bits * j)
    return out


def unpack_bits(packed: np.ndarray, count: int, bits: int) -> np.ndarray:
    """Densely packed bytes -> `count` int8 values (the inverse of pack_bits)."""
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if packed.size != packed_size(count, bits):
        raise UserError(f"packed int{bits} data of {packed.size} bytes cannot hold {count} values "
                        f"(expected {packed_size(count, bits)} bytes)")
    per_byte, mask, sign = 8 // bits, (1 << bits) - 1, 1 << (bits - 1)
    fields = np.stack([(packed >> (bits * j)) & mask for j in range(per_byte)], axis=1).reshape(-1)
    vals = fields.astype(np.int8)
    vals = np.where(vals >= sign, vals - (1 << bits), vals).astype(np.int8)
    return vals[:count]


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Integers in [-8, 7] -> uint8 bytes, element 2k in the low nibble."""
    return pack_bits(values, 4)


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    """Dense int4 bytes -> `count` int8 values in [-8, 7] (the inverse of pack_int4)."""
    return unpack_bits(packed, count, 4)


def pack_int2(values: np.ndarray) -> np.ndarray:
    """Integers in [-2, 1] -> uint8 bytes, element 4k+j in bits 2j+1..2j of byte k."""
    return pack_bits(values, 2)


def unpack_int2(packed: np.ndarray, count: int) -> np.ndarray:
    """Dense int2 bytes -> `count` int8 values in [-2, 1] (the inverse of pack_int2)."""
    return unpack_bits(packed, count, 2)


def pack_filter(values: np.ndarray, dtype: str) -> np.ndarray:
    """A QGraph filter of dtype "int4" or "int2" (values unpacked) -> the bytes the C kernels read."""
    return pack_bits(values, PACKED_BITS[dtype])
