"""Dense int4 packing, CMSIS-NN's s4 layout (also TFLite's INT4 buffers, read by TFLite Micro).

The tensor is flattened in its natural (row-major) order and packed over the whole tensor with no per-row
padding: element 2k goes in bits 3..0 of byte k, element 2k+1 in bits 7..4, both two's complement in [-8, 7].
An odd element count leaves the last high nibble 0; with an odd row length, rows start mid-byte.
Used by codegen (weight arrays), sim (the s4 kernels' twins) and the .tflite reader and writer; no torch here.
"""
from __future__ import annotations

import numpy as np

from .errors import UserError

INT4_MIN, INT4_MAX = -8, 7


def packed_size(count: int) -> int:
    """Bytes that hold `count` int4 values."""
    return (int(count) + 1) // 2


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Integers in [-8, 7] (any shape, flattened row-major) -> uint8 bytes, element 2k in the low nibble."""
    v = np.asarray(values).reshape(-1)
    if v.size and (v.min() < INT4_MIN or v.max() > INT4_MAX):
        raise UserError(f"int4 packing: values must lie in [{INT4_MIN}, {INT4_MAX}], got [{v.min()}, {v.max()}]")
    nibbles = (v.astype(np.int16) & 0x0F).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    """Dense int4 bytes -> `count` int8 values in [-8, 7] (the inverse of pack_int4)."""
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if packed.size != packed_size(count):
        raise UserError(f"packed int4 data of {packed.size} bytes cannot hold {count} values "
                        f"(expected {packed_size(count)} bytes)")
    vals = np.empty(packed.size * 2, np.int8)
    vals[0::2] = (packed & 0x0F).astype(np.int8)
    vals[1::2] = (packed >> 4).astype(np.int8)
    vals = np.where(vals > 7, vals - 16, vals).astype(np.int8)
    return vals[:count]
