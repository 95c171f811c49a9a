"""Fixed-point arithmetic shared by the integer IR, the simulator and (mirrored in C) the kernels.

This is TFLite Micro's / CMSIS-NN's default arithmetic ("double rounding"); docs/arithmetic.md states it with
formulas. Every function here works on Python ints and on numpy integer arrays (computed in int64, where the
intermediates of the int32 C code fit without overflow), so the same code serves the scalar parameter
preparation and the vectorised simulator.
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
Q31_ONE = 1 << 31


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """Float scale -> (Q31 multiplier, shift) exactly as TFLite's QuantizeMultiplier (double rounding build).

    real = q * 2**shift with q in [0.5, 1); multiplier = round_half_away(q * 2**31), so multiplier is in
    [2**30, 2**31) (a carry to 2**31 halves it and bumps the shift). Zero, and scales below 2**-32 that
    TFLite flushes, give (0, 0). Negative or non-finite scales are an error: no valid model has them.
    """
    real_multiplier = float(real_multiplier)
    if not math.isfinite(real_multiplier) or real_multiplier < 0.0:
        raise ValueError(f"scale must be finite and >= 0, got {real_multiplier!r}")
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    # TfLiteRound is std::round: half away from zero. q * 2**31 is exact in float64 (a power-of-two scaling).
    scaled = q * Q31_ONE
    q_fixed = int(scaled)
    if scaled - q_fixed >= 0.5:  # exact subtraction; no float addition that could round first
        q_fixed += 1
    if q_fixed == Q31_ONE:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multiplier_greater_than_one(real_multiplier: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplierGreaterThanOne: as quantize_multiplier, for real > 1 (shift >= 0)."""
    if not real_multiplier > 1.0:
        raise ValueError(f"expected a multiplier > 1, got {real_multiplier!r}")
    multiplier, shift = quantize_multiplier(real_multiplier)
    assert shift >= 0
    return multiplier, shift


def doubling_high_mult(a, multiplier):
    """gemmlowp SaturatingRoundingDoublingHighMul for multiplier >= 0: floor((a*M + 2**30) / 2**31).

    The floor form equals gemmlowp's sign-dependent nudge with truncating division (ties go towards +inf);
    the only saturating case, a == M == INT32_MIN, cannot occur with M >= 0.
    """
    if isinstance(a, np.ndarray):
        return (a.astype(np.int64) * np.asarray(multiplier, dtype=np.int64) + (1 << 30)) >> 31
    return (int(a) * int(multiplier) + (1 << 30)) >> 31


def rounding_divide_by_pot(x, exponent):
    """gemmlowp RoundingDivideByPOT: x / 2**exponent rounded to nearest, ties away from zero (exponent >= 0)."""
    if isinstance(x, np.ndarray):
        exponent = np.asarray(exponent, dtype=np.int64)
        mask = (np.int64(1) << exponent) - 1
        remainder = x & mask
        threshold = (mask >> 1) + (x < 0)
        return (x >> exponent) + (remainder > threshold)
    x, exponent = int(x), int(exponent)
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def requantize(acc, multiplier, shift):
    """TFLM MultiplyByQuantizedMultiplier / CMSIS-NN arm_nn_requantize (double rounding).

    y = RoundingDivideByPOT(DoublingHighMult(acc * 2**max(shift, 0), M), max(-shift, 0)).
    `multiplier` and `shift` broadcast against `acc` (one pair per output channel along the last axis).
    """
    if isinstance(acc, np.ndarray):
        shift = np.asarray(shift, dtype=np.int64)
        left = np.maximum(shift, 0)
        right = np.maximum(-shift, 0)
        acc = acc.astype(np.int64)
        if np.any(left):
            acc = acc << left
        return rounding_divide_by_pot(doubling_high_mult(acc, multiplier), right)
    shift = int(shift)
    left = max(shift, 0)
    right = max(-shift, 0)
    return rounding_divide_by_pot(doubling_high_mult(int(acc) << left, multiplier), right)


class Requantizer:
    """`requantize` + output offset + clamp to int8, prepared once per op and applied in place, block by block.

    The two roundings fold into one shift of the 64-bit product (floor(floor(v / 2**31) / 2**n) is
    floor(v / 2**(31+n)), and adding c before the first floor is adding c * 2**31 before the combined one):
        t = (a*M + 2**30) >> 31;  y = (t + 2**(n-1) - [t < 0]) >> n        (n = right shift > 0)
          = (a*M + 2**30 + 2**(n-1) * 2**31 - [a*M < 0] * 2**31) >> (31 + n)
    The tie rule may test a*M < 0 instead of t < 0: they differ only where t == 0, and there both give 0.
    A left shift folds into the multiplier (TFLM computes a << left in int32, so a*(M << left) < 2**62), and the
    output offset rides along as offset * 2**(31+n), a multiple of the divisor, while n <= 23 keeps every
    intermediate below 2**63. tests/test_ir.py checks all of it against `requantize`.
    """

    BLOCK = 1 << 15  # elements per pass: the int64 temporaries stay in cache

    def __init__(self, multiplier, shift, output_offset: int, act_min: int, act_max: int):
        multiplier = np.atleast_1d(np.asarray(multiplier, dtype=np.int64))
        shift = np.atleast_1d(np.asarray(shift, dtype=np.int64))
        left = np.maximum(shift, 0)
        right = np.maximum(-shift, 0)
        self.multiplier = multiplier << left
        self.total_shift = 31 + right
        half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
        self.nudge = (np.int64(1) << 30) + (half << 31)
        self.negative_mask = np.where(right > 0, np.int64(1) << 31, 0)  # RDBPOT's tie rule for t < 0
        self.output_offset = int(output_offset)
        self.offset_folded = bool(np.all(right <= 23))
        self.nudge_with_offset = self.nudge + (self.output_offset << self.total_shift if self.offset_folded else 0)
        self.act_min, self.act_max = int(act_min), int(act_max)

    def _round_shift_(self, a: np.ndarray, nudge) -> np.ndarray:
        a *= self.multiplier
        neg = a >> 63  # -1 where a*M < 0
        neg &= self.negative_mask
        a -= neg
        a += nudge
        a >>= self.total_shift
        return a

    def scale_(self, a: np.ndarray) -> np.ndarray:
        """In place on an int64 array: a = requantize(a, multiplier, shift) (no offset, no clamp)."""
        return self._round_shift_(a, self.nudge)

    def finish_(self, a: np.ndarray, out: np.ndarray) -> None:
        """In place on int64 `a`: requantize, add the output offset, clamp, store into the int8 `out`."""
        self._round_shift_(a, self.nudge_with_offset)
        if not self.offset_folded:
            a += self.output_offset
        np.clip(a, self.act_min, self.act_max, out=out, casting="unsafe")

    def __call__(self, acc: np.ndarray, offset_term=None) -> np.ndarray:
        """acc (..., C) integers (any int or exactly-integral float dtype) -> int8; offset_term (C,) is added."""
        shape = acc.shape
        flat = acc.reshape(-1, shape[-1] if acc.ndim else 1)
        out = np.empty(flat.shape, np.int8)
        rows = max(1, self.BLOCK // flat.shape[1])
        for s in range(0, flat.shape[0], rows):
            if offset_term is None:
                a = flat[s:s + rows].astype(np.int64)
            else:  # conversion and addition in one pass
                a = np.add(flat[s:s + rows], offset_term, dtype=np.int64, casting="unsafe")
            self.finish_(a, out[s:s + rows])
        return out.reshape(shape)
