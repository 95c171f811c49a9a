"""Bit-exact numpy model of TFLite Micro's int8 -> int8 SOFTMAX (reference kernel, double-rounding build).

Arithmetic (per row of the last axis; every value below is an int32 in the C code, held here in int64):

Preparation (``prepare_softmax``, TFLM ``CalculateSoftmaxParams`` / ``PreprocessSoftmaxScaling``):
    beta and the input scale are float32 in the model; both are widened to double and
    real = min(double(beta) * double(input_scale) * 2**26, 2**31 - 1.0)       (26 = 31 - kScaledDiffIntegerBits)
    (input_multiplier, input_left_shift) = QuantizeMultiplierGreaterThanOne(real)   (TFLM aborts if real <= 1)
    diff_min = -floor(31 * 2**26 / 2**input_left_shift)                     (-CalculateInputRadius(5, shift))

Evaluation (``softmax_s8``, ``reference_ops::Softmax<int8_t, int8_t>``):
    diff      = x - max(row)                                   in [-255, 0]
    rows with diff < diff_min contribute nothing and output -128.
    scaled    = SRDHM(diff * 2**input_left_shift, input_multiplier)       Q5.26, in [-31, 0]
    e         = exp_on_negative_values(scaled)                            Q0.31 (gemmlowp, see below)
    sum       = sum over the row of RoundingDivideByPOT(e, 12)            Q12.19, wrapping int32 add
    headroom  = CLZ(uint32(sum));  num_bits_over_unit = 12 - headroom
    recip     = one_over_one_plus_x_for_x_in_0_1(uint32(sum) << headroom - 2**31)     Q0.31, = 2**nbou / sum
    out       = RoundingDivideByPOT(SRDHM(recip, e), num_bits_over_unit + 31 - 8) - 128, clamped to [-128, 127]
    (gemmlowp asserts 0 <= num_bits_over_unit + 23 <= 31, i.e. the row sum of exps < 512; we raise instead.)

gemmlowp pieces (fixedpoint.h), all int32 two's complement:
    SRDHM(a, b)  = floor((a*b + 2**30) / 2**31), saturating a == b == INT32_MIN to INT32_MAX
                   (equal to gemmlowp's sign-dependent nudge + truncating division for every sign).
    exp_on_negative_values(a), a in Q5.26:
        r = (a & (2**24 - 1)) - 2**24   (a mod 1/4 minus 1/4, in [-1/4, 0)),
        result = exp_on_interval_between_negative_one_quarter_and_0_excl(SatShiftLeft(r, 5)),
        then for each bit k of (r - a) at 2**(26+e), e = -2..4: result = SRDHM(result, round(2**31 * exp(-2**e))),
        and a == 0 gives INT32_MAX.
    exp on [-1/4, 0): x = a + 2**28 (=1/8); x2, x3, x4 by SRDHM;
        p = RDBP(SRDHM(RDBP(x4, 2) + x3, 715827883) + x2, 1); result = c + SRDHM(c, x + p), c = 1895147668 (exp(-1/8)).
    one_over_one_plus_x_for_x_in_0_1(a): hd = RoundingHalfSum(a, INT32_MAX)  (Q0.31),
        x = 1515870810 + SRDHM(hd, -1010580540)  (Q2.29: 48/17 - 32/17 * hd), three Newton steps
        x += SatShiftLeft(SRDHM(x, 2**29 - SRDHM(hd, x)), 2), result = SatShiftLeft(x, 1).
    SatShiftLeft(v, e) (SaturatingRoundingMultiplyByPOT<e>, e > 0): v << e, INT32_MAX where v > 2**(31-e) - 1,
        INT32_MIN where v < -(2**(31-e) - 1).
    RDBP = RoundingDivideByPOT (round half away from zero).
Plain gemmlowp Add/Sub are non-saturating; they are wrapped to int32 here (they never overflow for softmax
inputs, but the wrap keeps the emulation faithful).
"""
from __future__ import annotations

import numpy as np

from flexround_mcu.fixedpoint import INT32_MAX, INT32_MIN, doubling_high_mult, rounding_divide_by_pot
from flexround_mcu.ir import SoftmaxParams
from flexround_mcu.prepare import SOFTMAX_SCALED_DIFF_INTEGER_BITS as SCALED_DIFF_INTEGER_BITS
from flexround_mcu.prepare import prepare_softmax

__all__ = ["SoftmaxParams", "prepare_softmax", "softmax_s8"]

ACCUMULATION_INTEGER_BITS = 12  # Q12.19 sum of exps
OUTPUT_ZERO_POINT = -128  # int8 output: scale 1/256, zero point -128
_OUTPUT_BITS = 8

_U32_MASK = (1 << 32) - 1


# ----------------------------------------------------------------------------------------------------------
# int32 fixed-point primitives on int64 arrays (gemmlowp semantics)


def _wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 range (what a non-saturating int32 add does)."""
    return ((x + (1 << 31)) & _U32_MASK) - (1 << 31)


def _srdhm(a, b) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul for general signed int32 operands."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    res = (a * b + (1 << 30)) >> 31
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), res)


def _sat_shift_left(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for exponent > 0 (int32)."""
    assert 0 < exponent < 31
    threshold = (1 << (31 - exponent)) - 1
    res = _wrap32(x << exponent)
    res = np.where(x > threshold, np.int64(INT32_MAX), res)
    return np.where(x < -threshold, np.int64(INT32_MIN), res)


def _rescale(x: np.ndarray, src_integer_bits: int, dst_integer_bits: int) -> np.ndarray:
    """gemmlowp Rescale<dst>(FixedPoint<int32, src>)."""
    exponent = src_integer_bits - dst_integer_bits
    if exponent > 0:
        return _sat_shift_left(x, exponent)
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    return x


def _rounding_half_sum(a: np.ndarray, b) -> np.ndarray:
    """gemmlowp RoundingHalfSum<int32>: (a + b + sign(a + b)) / 2 with C truncating division."""
    s = a + np.int64(b)
    t = s + np.where(s >= 0, np.int64(1), np.int64(-1))
    return np.where(t >= 0, t >> 1, -((-t) >> 1))


def _clz32(u: np.ndarray) -> np.ndarray:
    """CountLeadingZeros of uint32 values held in int64 (32 for 0); exact through float64 frexp."""
    _, e = np.frexp(u.astype(np.float64))
    return 32 - e.astype(np.int64)


# ----------------------------------------------------------------------------------------------------------
# gemmlowp transcendental helpers

_EXP_MINUS_ONE_EIGHTH = 1895147668  # Q0.31 exp(-1/8)
_ONE_THIRD = 715827883  # Q0.31 1/3
# (exponent e, Q0.31 exp(-2**e)) for the barrel shifter in exp_on_negative_values
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
               (4, 242))


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """Q0.31 exp(a) for Q0.31 a in [-1/4, 0): Taylor expansion around -1/8."""
    x = _wrap32(a + (1 << 28))
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(_wrap32(_srdhm(_wrap32(x4_over_4 + x3), _ONE_THIRD) + x2), 1)
    return _wrap32(_EXP_MINUS_ONE_EIGHTH + _srdhm(_EXP_MINUS_ONE_EIGHTH, _wrap32(x + poly)))


def _exp_on_negative_values(a: np.ndarray, integer_bits: int = SCALED_DIFF_INTEGER_BITS) -> np.ndarray:
    """gemmlowp exp_on_negative_values: Q{integer_bits}.{31-integer_bits} a <= 0 -> Q0.31 exp(a)."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = _wrap32((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = _wrap32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder & (1 << (fractional_bits + exponent))) != 0
            result = np.where(bit, _srdhm(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))  # -32.0
        result = np.where(a < clamp, np.int64(0), result)
    return np.where(a == 0, np.int64(INT32_MAX), result)


_F2_48_OVER_17 = 1515870810  # Q2.29
_F2_NEG_32_OVER_17 = -1010580540  # Q2.29
_F2_ONE = 1 << 29


def _one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp one_over_one_plus_x_for_x_in_0_1: Q0.31 a in [0, 1) -> Q0.31 1/(1+a) (Newton-Raphson)."""
    half_denominator = _rounding_half_sum(a, INT32_MAX)
    x = _wrap32(_F2_48_OVER_17 + _srdhm(half_denominator, _F2_NEG_32_OVER_17))
    for _ in range(3):
        half_denominator_times_x = _srdhm(half_denominator, x)
        one_minus = _wrap32(_F2_ONE - half_denominator_times_x)
        x = _wrap32(x + _rescale(_srdhm(x, one_minus), 4, 2))
    return _rescale(x, 1, 0)  # ExactMulByPot<-1> makes it Q1.30, then Rescale<0>


def _get_reciprocal(x: np.ndarray, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: (Q0.31 shifted scale, num_bits_over_unit) with 2**nbou / x ~= scale."""
    xu = x & _U32_MASK
    headroom_plus_one = _clz32(xu)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = _wrap32(((xu << headroom_plus_one) & _U32_MASK) - (1 << 31))
    return _one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


# ----------------------------------------------------------------------------------------------------------


def softmax_s8(x: np.ndarray, params: SoftmaxParams) -> np.ndarray:
    """TFLM reference int8 softmax over the last axis (output scale 1/256, zero point -128), bit-exact."""
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TypeError(f"softmax_s8 expects int8 input, got {x.dtype}")
    if x.ndim == 0:
        raise ValueError("softmax_s8 needs at least one dimension")
    if x.size == 0:
        return x.copy()
    depth = x.shape[-1]
    rows = x.reshape(-1, depth).astype(np.int64)

    diff = rows - rows.max(axis=1, keepdims=True)
    valid = diff >= params.diff_min
    diff = np.where(valid, diff, 0)  # skipped entries: keep the arithmetic in range, masked out below

    # MultiplyByQuantizedMultiplierGreaterThanOne (double rounding): SRDHM(diff * 2**shift, M), M >= 0.
    scaled = doubling_high_mult(diff << params.input_left_shift, params.input_multiplier)
    exp_q0_31 = _exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS)

    terms = np.where(valid, _rescale(exp_q0_31, 0, ACCUMULATION_INTEGER_BITS), 0)
    sum_of_exps = _wrap32(terms.sum(axis=1))  # int32 adds wrap; the int64 sum mod 2**32 is the same

    shifted_scale, num_bits_over_unit = _get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
    exponent = num_bits_over_unit + 31 - _OUTPUT_BITS
    if np.any((exponent < 0) | (exponent > 31)):
        raise ValueError("the sum of exps of a row is >= 512, which TFLM does not support "
                         "(gemmlowp asserts on the exponent)")

    unsat = rounding_divide_by_pot(_srdhm(shifted_scale[:, None], exp_q0_31), exponent[:, None])
    out = np.clip(unsat + OUTPUT_ZERO_POINT, -128, 127)
    out = np.where(valid, out, -128)
    return out.astype(np.int8).reshape(x.shape)
