"""Tests of flexround_mcu.fixedpoint against slow, obviously correct references.

The references below are written from the definitions (brief §1.3-§1.4: TFLite Micro QuantizeMultiplier,
gemmlowp SaturatingRoundingDoublingHighMul + RoundingDivideByPOT, CMSIS-NN arm_nn_requantize in its default
double-rounding build) with `fractions.Fraction` and exact Python integers. They deliberately avoid the
implementation's bit tricks (frexp, masks, thresholds, arithmetic shifts).

All hypothesis tests use derandomize=True and no example database, so CI runs are deterministic.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flexround_mcu.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    doubling_high_mult,
    quantize_multiplier,
    quantize_multiplier_greater_than_one,
    requantize,
    rounding_divide_by_pot,
)

TWO31 = 2**31
TWO30 = 2**30


def fixed(max_examples: int):
    """Deterministic, database-free hypothesis settings."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


# ----------------------------------------------------------------------------------------------------------
# Slow references
# ----------------------------------------------------------------------------------------------------------


def round_half_away(x: Fraction) -> int:
    """Nearest integer to x; exact halves go away from zero (C's std::round / TfLiteRound)."""
    x = Fraction(x)
    n, d = abs(x.numerator), x.denominator  # d > 0 always
    q, r = divmod(n, d)  # |x| = q + r/d with 0 <= r < d
    if 2 * r >= d:  # fractional part >= 1/2: round the magnitude up (ties included)
        q += 1
    return q if x >= 0 else -q


def round_half_up(x: Fraction) -> int:
    """Nearest integer to x; exact halves go towards +inf: floor(x + 1/2)."""
    return math.floor(Fraction(x) + Fraction(1, 2))


def ref_quantize_multiplier(d: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplier from its definition: d = q * 2**e, q in [1/2, 1), Q = round_half_away(q * 2**31)."""
    x = Fraction(d)  # exact for any finite float
    assert x >= 0
    if x == 0:
        return 0, 0
    e = x.numerator.bit_length() - x.denominator.bit_length()  # a guess; fixed up by the loops below
    while x >= Fraction(2) ** e:
        e += 1
    while x < Fraction(2) ** (e - 1):
        e -= 1
    q = x / Fraction(2) ** e
    assert Fraction(1, 2) <= q < 1
    big_q = round_half_away(q * TWO31)
    if big_q == TWO31:
        big_q, e = TWO30, e + 1
    if e < -31:
        return 0, 0
    return big_q, e


def ref_doubling_high_mult(a: int, m: int) -> int:
    """Round-to-nearest (ties towards +inf) of a*m / 2**31, from the definition."""
    return round_half_up(Fraction(a * m, TWO31))


def ref_rounding_divide_by_pot(x: int, exponent: int) -> int:
    """Round-to-nearest (ties away from zero) of x / 2**exponent."""
    return round_half_away(Fraction(x, 2**exponent))


def ref_requantize(acc: int, m: int, shift: int) -> int:
    """arm_nn_requantize / TFLM MultiplyByQuantizedMultiplier (double rounding), from the definition."""
    left, right = max(shift, 0), max(-shift, 0)
    v = acc * 2**left
    assert INT32_MIN <= v <= INT32_MAX, "TFLM computes acc << left in int32; callers must keep it in range"
    t = math.floor(Fraction(v * m + TWO30, TWO31))  # exact integers
    return round_half_away(Fraction(t, 2**right))


def c_trunc_div(n: int, d: int) -> int:
    """C99 integer division: the quotient truncated towards zero."""
    q = abs(n) // abs(d)
    return q if (n >= 0) == (d > 0) else -q


def gemmlowp_srdhm(a: int, b: int) -> int:
    """Literal transcription of gemmlowp fixedpoint.h SaturatingRoundingDoublingHighMul(int32, int32)."""
    overflow = a == b and a == INT32_MIN
    ab_64 = a * b
    nudge = (1 << 30) if ab_64 >= 0 else (1 - (1 << 30))
    ab_x2_high32 = c_trunc_div(ab_64 + nudge, 1 << 31)
    assert INT32_MIN <= ab_x2_high32 <= INT32_MAX  # static_cast<int32_t> never wraps here
    return INT32_MAX if overflow else ab_x2_high32


# ----------------------------------------------------------------------------------------------------------
# Sanity of the references themselves (hand-computed values)
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, away, up",
    [
        (Fraction(5, 2), 3, 3),
        (Fraction(-5, 2), -3, -2),
        (Fraction(7, 4), 2, 2),
        (Fraction(-7, 4), -2, -2),
        (Fraction(-5, 4), -1, -1),
        (Fraction(1, 2), 1, 1),
        (Fraction(-1, 2), -1, 0),
        (Fraction(-3, 2), -2, -1),
        (Fraction(0), 0, 0),
        (Fraction(-4), -4, -4),
    ],
)
def test_reference_rounding_helpers(x, away, up):
    assert round_half_away(x) == away
    assert round_half_up(x) == up


def test_c_trunc_div_truncates_towards_zero():
    assert c_trunc_div(7, 2) == 3
    assert c_trunc_div(-7, 2) == -3  # Python's // would give -4
    assert c_trunc_div(-8, 2) == -4
    assert c_trunc_div(1 - TWO31, TWO31) == 0


# ----------------------------------------------------------------------------------------------------------
# quantize_multiplier
# ----------------------------------------------------------------------------------------------------------


def _check_qm_invariants(d: float, got: tuple[int, int]) -> None:
    m, s = got
    assert isinstance(m, int) and isinstance(s, int)
    if (m, s) == (0, 0):
        assert Fraction(d) < Fraction(1, 2**32)  # only zero and flushed tiny scales give (0, 0)
        return
    assert TWO30 <= m < TWO31
    # Nearest Q31 representation: |M * 2**(s-31) - d| <= half a unit in the last place, 2**(s-32).
    assert abs(Fraction(m) * Fraction(2) ** (s - 31) - Fraction(d)) <= Fraction(2) ** (s - 32)


@pytest.mark.parametrize(
    "d, expected",
    [
        (1.0, (TWO30, 1)),
        (0.5, (TWO30, 0)),
        (0.75, (3 * 2**29, 0)),
        (0.1, (1717986918, -3)),  # 0.8 * 2**31 = 1717986918.4
        (1 / 3, (1431655765, -1)),  # 2**32 / 3 = 1431655765.33
        (2.0**-31, (TWO30, -30)),
        (2.0**-32, (TWO30, -31)),  # smallest scale that is not flushed
        (2.0**-33, (0, 0)),  # flushed: e = -32 < -31
        (1e-45, (0, 0)),
        (5e-324, (0, 0)),  # smallest subnormal
        (3.0, (3 * 2**29, 2)),
        (1e10, (1e10 / 2**34 * TWO31, 34)),  # 1e10 = 0.582... * 2**34, and 1e10 * 2**-3 is an exact integer
        (0.0, (0, 0)),
        (-0.0, (0, 0)),
    ],
)
def test_quantize_multiplier_known_values(d, expected):
    expected = (int(expected[0]), expected[1])
    assert quantize_multiplier(d) == expected
    assert ref_quantize_multiplier(d) == expected


@fixed(600)
@given(st.floats(min_value=0.0, max_value=1e10, allow_nan=False, allow_infinity=False))
@example(1.0 - 2.0**-40)
@example(2.0**-32)
@example(math.nextafter(2.0**-32, 0.0))
@example(2.0**-33)
def test_quantize_multiplier_matches_reference_full_range(d):
    got = quantize_multiplier(d)
    assert got == ref_quantize_multiplier(d)
    _check_qm_invariants(d, got)


@fixed(400)
@given(st.floats(min_value=1e-45, max_value=1e-6, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier_matches_reference_tiny(d):
    got = quantize_multiplier(d)
    assert got == ref_quantize_multiplier(d)
    _check_qm_invariants(d, got)


@fixed(400)
@given(st.floats(min_value=2.0**-34, max_value=2.0**-30, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier_matches_reference_near_flush_boundary(d):
    got = quantize_multiplier(d)
    assert got == ref_quantize_multiplier(d)
    _check_qm_invariants(d, got)
    if d >= 2.0**-32:
        assert got != (0, 0)


@fixed(500)
@given(
    s_in=st.floats(min_value=1e-5, max_value=1.0),
    s_w=st.floats(min_value=1e-7, max_value=1.0),
    s_out=st.floats(min_value=1e-5, max_value=10.0),
)
def test_quantize_multiplier_tflm_effective_scales(s_in, s_w, s_out):
    # The model stores float32 scales; TFLM forms (double)s_in * (double)s_w[c] / (double)s_out.
    d = float(np.float32(s_in)) * float(np.float32(s_w)) / float(np.float32(s_out))
    assert Fraction(d) != 0
    got = quantize_multiplier(d)
    assert got == ref_quantize_multiplier(d)
    _check_qm_invariants(d, got)
    # numpy scalars are accepted and mean the same float
    assert quantize_multiplier(np.float64(d)) == got


@pytest.mark.parametrize("k", [-40, -32, -31, -5, -1, 0, 1, 7, 30])
def test_quantize_multiplier_rounding_carry(k):
    # q * 2**31 = 2**31 - 0.5 is a tie; away from zero it reaches 2**31, which becomes (2**30, e + 1).
    d = (TWO31 - 0.5) / TWO31 * 2.0**k
    assert Fraction(d) == Fraction(2 * TWO31 - 1, 2 * TWO31) * Fraction(2) ** k  # exact construction
    expected = (TWO30, k + 1) if k + 1 >= -31 else (0, 0)
    assert quantize_multiplier(d) == expected
    assert ref_quantize_multiplier(d) == expected


@pytest.mark.parametrize("k", [-32, -3, 0, 4])
def test_quantize_multiplier_carry_just_below_power_of_two(k):
    # 1 - 2**-40: q * 2**31 = 2**31 - 2**-9 rounds up to 2**31.
    d = (1.0 - 2.0**-40) * 2.0**k
    assert quantize_multiplier(d) == (TWO30, k + 1)
    assert ref_quantize_multiplier(d) == (TWO30, k + 1)
    # The largest double below 2**k carries as well.
    d2 = math.nextafter(2.0**k, 0.0)
    assert quantize_multiplier(d2) == (TWO30, k + 1)


@fixed(300)
@given(k=st.integers(0, TWO30 - 2), s=st.integers(-31, 30))
@example(k=0, s=0)
@example(k=1, s=0)
@example(k=2, s=-31)
@example(k=TWO30 - 2, s=5)
def test_quantize_multiplier_exact_ties_round_away_from_zero(k, s):
    # q * 2**31 = 2**30 + k + 0.5 exactly (33 significant bits: exact in a double); away from zero -> +1.
    d = (TWO30 + k + 0.5) / TWO31 * 2.0**s
    assert Fraction(d) == Fraction(2 * (TWO30 + k) + 1, 2 * TWO31) * Fraction(2) ** s
    expected = (TWO30 + k + 1, s)
    assert quantize_multiplier(d) == expected
    assert ref_quantize_multiplier(d) == expected


@fixed(300)
@given(k=st.integers(0, TWO30 - 1), frac=st.sampled_from([0.25, 0.375, 0.625, 0.75]), s=st.integers(-31, 30))
def test_quantize_multiplier_near_ties(k, frac, s):
    # Not a tie: just round to nearest.
    d = (TWO30 + k + frac) / TWO31 * 2.0**s
    expected_m = TWO30 + k + (1 if frac > 0.5 else 0)
    expected = (TWO30, s + 1) if expected_m == TWO31 else (expected_m, s)
    assert quantize_multiplier(d) == expected
    assert ref_quantize_multiplier(d) == expected


@fixed(500)
@given(m=st.integers(TWO30, TWO31 - 1), s=st.integers(-31, 30))
@example(m=TWO30, s=-31)
@example(m=TWO31 - 1, s=-31)
@example(m=TWO31 - 1, s=30)
def test_quantize_multiplier_round_trips(m, s):
    d = m / TWO31 * 2.0**s  # exact: m has 31 significant bits
    assert Fraction(d) == Fraction(m, TWO31) * Fraction(2) ** s
    assert quantize_multiplier(d) == (m, s)


@pytest.mark.parametrize(
    "bad", [-1.0, -1e-30, -5e-324, -np.inf, np.inf, np.nan, float("nan"), float("-nan"), -2.0**-33]
)
def test_quantize_multiplier_rejects_invalid(bad):
    with pytest.raises(ValueError):
        quantize_multiplier(bad)


def test_quantize_multiplier_greater_than_one():
    assert quantize_multiplier_greater_than_one(3.0) == (3 * 2**29, 2)
    m, s = quantize_multiplier_greater_than_one(1.0 + 2.0**-30)
    assert s >= 1 and (m, s) == quantize_multiplier(1.0 + 2.0**-30)
    for bad in (1.0, 0.5, 0.0):
        with pytest.raises(ValueError):
            quantize_multiplier_greater_than_one(bad)


# ----------------------------------------------------------------------------------------------------------
# doubling_high_mult (gemmlowp SaturatingRoundingDoublingHighMul, multiplier >= 0)
# ----------------------------------------------------------------------------------------------------------

int32s = st.integers(INT32_MIN, INT32_MAX)
nonneg_int32s = st.integers(0, INT32_MAX)


@st.composite
def dhm_ties(draw):
    """(a, m) with a*m = k*2**31 + 2**30 exactly: a = a'*2**p, m = m'*2**(30-p), a' and m' odd, m in [2**30, 2**31)."""
    p = draw(st.integers(0, 30))
    m_odd = draw(st.integers(2**p, 2 ** (p + 1) - 1).filter(lambda v: v % 2 == 1))
    lim = 2 ** (31 - p) - 1
    a_odd = draw(st.integers(-lim, lim).filter(lambda v: v % 2 == 1))
    a, m = a_odd * 2**p, m_odd * 2 ** (30 - p)
    assert INT32_MIN <= a <= INT32_MAX and TWO30 <= m < TWO31
    return a, m


@fixed(800)
@given(a=int32s, m=nonneg_int32s)
@example(a=INT32_MIN, m=INT32_MAX)
@example(a=INT32_MAX, m=INT32_MAX)
@example(a=INT32_MIN, m=0)
@example(a=-1, m=TWO30)
@example(a=1, m=TWO30)
@example(a=-3, m=TWO30)
def test_doubling_high_mult_matches_reference_and_gemmlowp(a, m):
    got = doubling_high_mult(a, m)
    assert got == ref_doubling_high_mult(a, m)
    assert got == gemmlowp_srdhm(a, m)


@fixed(500)
@given(dhm_ties())
def test_doubling_high_mult_exact_ties_go_towards_plus_inf(am):
    a, m = am
    assert (a * m) % TWO31 == TWO30  # construction really is a tie
    got = doubling_high_mult(a, m)
    assert got * TWO31 - a * m == TWO30  # rounded up by exactly half, for either sign of a
    assert got == gemmlowp_srdhm(a, m)
    assert got == ref_doubling_high_mult(a, m)


@pytest.mark.parametrize(
    "a, m, expected",
    [
        (1, TWO30, 1),
        (-1, TWO30, 0),
        (3, TWO30, 2),
        (-3, TWO30, -1),
        (INT32_MIN, TWO30, -TWO30),
        (INT32_MAX, TWO30, TWO30),
        (INT32_MIN, INT32_MAX, INT32_MIN + 1),
        (INT32_MAX, INT32_MAX, INT32_MAX - 1),
        (12345, 0, 0),
        (INT32_MIN, 0, 0),
    ],
)
def test_doubling_high_mult_known_values(a, m, expected):
    assert doubling_high_mult(a, m) == expected
    assert gemmlowp_srdhm(a, m) == expected


@fixed(200)
@given(st.data())
def test_doubling_high_mult_numpy_matches_scalar(data):
    n = data.draw(st.integers(1, 20))
    a = np.array(data.draw(st.lists(int32s, min_size=n, max_size=n)), dtype=np.int32)
    m = np.array(data.draw(st.lists(nonneg_int32s, min_size=n, max_size=n)), dtype=np.int32)
    got = doubling_high_mult(a, m)
    assert got.shape == a.shape
    assert [int(v) for v in got] == [doubling_high_mult(int(x), int(y)) for x, y in zip(a, m)]
    assert [int(v) for v in got] == [gemmlowp_srdhm(int(x), int(y)) for x, y in zip(a, m)]


# ----------------------------------------------------------------------------------------------------------
# rounding_divide_by_pot (gemmlowp RoundingDivideByPOT: ties away from zero)
# ----------------------------------------------------------------------------------------------------------


@fixed(600)
@given(x=int32s, e=st.integers(0, 31))
@example(x=INT32_MIN, e=31)
@example(x=INT32_MAX, e=31)
@example(x=-TWO30, e=31)
@example(x=TWO30, e=31)
def test_rounding_divide_by_pot_matches_reference(x, e):
    assert rounding_divide_by_pot(x, e) == ref_rounding_divide_by_pot(x, e)


@pytest.mark.parametrize(
    "x, e, expected",
    [(-3, 1, -2), (3, 1, 2), (-1, 1, -1), (1, 1, 1), (-5, 2, -1), (5, 2, 1), (-6, 2, -2), (6, 2, 2),
     (-7, 2, -2), (7, 2, 2), (-2, 2, -1), (2, 2, 1), (-1, 2, 0), (1, 2, 0), (-9, 0, -9), (0, 31, 0),
     (INT32_MIN, 31, -1), (INT32_MAX, 31, 1), (-TWO30, 31, -1), (TWO30 - 1, 31, 0), (1 - TWO30, 31, 0)],
)
def test_rounding_divide_by_pot_known_values(x, e, expected):
    assert rounding_divide_by_pot(x, e) == expected
    assert ref_rounding_divide_by_pot(x, e) == expected
    assert int(rounding_divide_by_pot(np.array([x], dtype=np.int64), e)[0]) == expected


@fixed(400)
@given(e=st.integers(1, 31), j=st.integers(0, 2**20), neg=st.booleans())
def test_rounding_divide_by_pot_ties_away_from_zero(e, j, neg):
    x = (2 * j + 1) * 2 ** (e - 1)  # x / 2**e = j + 1/2 exactly
    if neg:
        x = -x
    got = rounding_divide_by_pot(x, e)
    assert got == (-(j + 1) if neg else j + 1)
    assert abs(got * 2**e) > abs(x)  # away from zero


@fixed(200)
@given(st.data())
def test_rounding_divide_by_pot_numpy_matches_scalar(data):
    n = data.draw(st.integers(1, 20))
    x = np.array(data.draw(st.lists(int32s, min_size=n, max_size=n)), dtype=np.int64)
    e = np.array(data.draw(st.lists(st.integers(0, 31), min_size=n, max_size=n)), dtype=np.int32)
    got = rounding_divide_by_pot(x, e)
    assert got.shape == x.shape
    assert [int(v) for v in got] == [ref_rounding_divide_by_pot(int(v), int(k)) for v, k in zip(x, e)]


# ----------------------------------------------------------------------------------------------------------
# requantize (arm_nn_requantize / MultiplyByQuantizedMultiplier, double rounding)
# ----------------------------------------------------------------------------------------------------------

multipliers = st.one_of(st.just(0), st.integers(TWO30, TWO31 - 1), st.sampled_from([TWO30, TWO31 - 1]))
shifts = st.integers(-31, 30)


def acc_for_shift(shift: int):
    """acc such that acc * 2**max(shift, 0) fits in int32 (TFLM computes the left shift in int32)."""
    left = max(shift, 0)
    return st.integers(INT32_MIN >> left, INT32_MAX >> left)


@st.composite
def requant_args(draw):
    shift = draw(shifts)
    return draw(acc_for_shift(shift)), draw(multipliers), shift


@fixed(1000)
@given(requant_args())
@example((INT32_MIN, TWO31 - 1, 0))
@example((INT32_MAX, TWO31 - 1, 0))
@example((INT32_MIN, TWO30, -31))
@example((INT32_MAX, TWO30, -31))
@example((INT32_MIN, TWO31 - 1, -31))
@example((-1, TWO31 - 1, 30))
@example((1, TWO31 - 1, 30))
@example((-2, TWO30, 30))
def test_requantize_matches_reference(args):
    acc, m, shift = args
    got = requantize(acc, m, shift)
    assert got == ref_requantize(acc, m, shift)
    # Independent bound: one rounding is within 1/2 of the exact acc * M * 2**(shift-31), two within
    # 1/2 + 2**-(right+1).
    right = max(-shift, 0)
    exact = Fraction(acc * m) * Fraction(2) ** (shift - 31)
    bound = Fraction(1, 2) if right == 0 else Fraction(1, 2) + Fraction(1, 2 ** (right + 1))
    assert abs(got - exact) <= bound


@fixed(300)
@given(shift=st.integers(0, 30), m=multipliers, data=st.data())
def test_requantize_left_shifts_small_acc(shift, m, data):
    acc = data.draw(st.integers(max(-64, INT32_MIN >> shift), min(64, INT32_MAX >> shift)))
    assert requantize(acc, m, shift) == ref_requantize(acc, m, shift)


@pytest.mark.parametrize("shift", [-31, -17, -1, 0, 1, 12, 30])
@pytest.mark.parametrize("acc", [0, 1, -1, 12345, -98765])
def test_requantize_zero_multiplier_is_zero(acc, shift):
    assert requantize(acc, 0, shift) == 0
    assert int(requantize(np.array([acc], dtype=np.int32), 0, shift)[0]) == 0


@pytest.mark.parametrize(
    "acc, expected",
    [(1, 1), (-1, 0), (3, 2), (-3, -1), (5, 3), (-5, -2), (INT32_MAX, TWO30), (INT32_MIN + 1, 1 - TWO30)],
)
def test_requantize_doubling_step_ties_towards_plus_inf(acc, expected):
    # M = 2**30, shift 0: acc * M / 2**31 = acc / 2, a tie for odd acc; the high-mult step rounds ties up.
    assert requantize(acc, TWO30, 0) == expected
    assert ref_requantize(acc, TWO30, 0) == expected


@pytest.mark.parametrize(
    "t, shift, expected",
    [(-3, -1, -2), (3, -1, 2), (-5, -2, -1), (5, -2, 1), (-6, -2, -2), (6, -2, 2), (-1, -1, -1), (1, -1, 1),
     (-7, -2, -2), (-3, -2, -1), (-2, -2, -1), (-TWO30 + 2**29, -30, -1)],
)
def test_requantize_divide_step(t, shift, expected):
    # With M = 2**30 the high-mult step maps acc = 2t to exactly t; then t is divided by 2**-shift.
    assert doubling_high_mult(2 * t, TWO30) == t
    assert requantize(2 * t, TWO30, shift) == expected
    assert ref_requantize(2 * t, TWO30, shift) == expected


@fixed(300)
@given(right=st.integers(1, 30), data=st.data())
def test_requantize_divide_step_ties_away_from_zero(right, data):
    # t = (2j+1) * 2**(right-1): t / 2**right is an exact half. acc = 2t keeps |acc| < 2**31.
    j = data.draw(st.integers(0, 2 ** (30 - right) - 1))  # keeps 2t <= 2**31 - 2**right
    neg = data.draw(st.booleans())
    t = (2 * j + 1) * 2 ** (right - 1)
    t = -t if neg else t
    assert INT32_MIN <= 2 * t <= INT32_MAX
    got = requantize(2 * t, TWO30, -right)
    assert got == (-(j + 1) if neg else j + 1)
    assert got == ref_requantize(2 * t, TWO30, -right)


@pytest.mark.parametrize("m", [0, TWO30, 1518500250, TWO31 - 1])
@pytest.mark.parametrize("shift", [-31, -20, -8, -1, 0])
@pytest.mark.parametrize("acc", [INT32_MIN, INT32_MAX, INT32_MIN + 1, -1])
def test_requantize_int32_extremes(acc, m, shift):
    got = requantize(acc, m, shift)
    assert got == ref_requantize(acc, m, shift)
    assert int(requantize(np.array([acc], dtype=np.int32), np.array([m], dtype=np.int32), shift)[0]) == got


@st.composite
def per_channel_batch(draw):
    c = draw(st.integers(1, 6))
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    shift_c = draw(st.lists(shifts, min_size=c, max_size=c))
    mult_c = draw(st.lists(multipliers, min_size=c, max_size=c))
    n_lead = int(np.prod(lead)) if lead else 1
    rows = [[draw(acc_for_shift(shift_c[k])) for k in range(c)] for _ in range(n_lead)]
    acc = np.array(rows, dtype=np.int32).reshape(lead + (c,))
    return acc, np.array(mult_c, dtype=np.int32), np.array(shift_c, dtype=np.int32)


@fixed(300)
@given(per_channel_batch())
def test_requantize_numpy_per_channel_matches_scalar(batch):
    acc, mult, shift = batch
    got = requantize(acc, mult, shift)
    assert got.shape == acc.shape
    assert np.issubdtype(got.dtype, np.integer)
    for idx in np.ndindex(acc.shape):
        c = idx[-1]
        want = requantize(int(acc[idx]), int(mult[c]), int(shift[c]))
        assert int(got[idx]) == want
        assert want == ref_requantize(int(acc[idx]), int(mult[c]), int(shift[c]))
    assert acc.dtype == np.int32  # the input array is not modified in place / re-typed


@fixed(200)
@given(shift=shifts, m=multipliers, data=st.data())
def test_requantize_numpy_per_tensor_matches_scalar(shift, m, data):
    vals = data.draw(st.lists(acc_for_shift(shift), min_size=1, max_size=12))
    acc = np.array(vals, dtype=np.int32)
    got = requantize(acc, m, shift)
    assert got.shape == acc.shape
    assert [int(v) for v in got] == [ref_requantize(v, m, shift) for v in vals]


def test_requantize_numpy_left_and_right_shift_channels_mixed():
    # Channel 0 shifts left, channel 1 right, channel 2 not at all: each uses its own pair.
    acc = np.array([[100, 100, 100], [-100, -100, -100], [3, 3, 3]], dtype=np.int32)
    mult = np.array([TWO30, TWO30, TWO30], dtype=np.int32)
    shift = np.array([2, -2, 0], dtype=np.int32)
    got = requantize(acc, mult, shift)
    # 100*4/2 = 200; 100/2/4 = 12.5 -> 13 (tie away); 100/2 = 50; negatives mirror.
    # Row 3 shows double rounding: 3/2 -> 2 (tie up), then 2/4 -> 1 (tie away), although 3/8 alone rounds to 0.
    assert got.tolist() == [[200, 13, 50], [-200, -13, -50], [6, 1, 2]]
