/*
 * frk_softmax_s8.c - SOFTMAX, int8 -> int8 (output scale 1/256, zero point -128): TFLM's reference int8
 * softmax, i.e. gemmlowp fixed-point exp and reciprocal in int32. Twin: flexround_mcu/sim/softmax.py (its
 * module docstring is the line-by-line reference); spec: docs/arithmetic.md 4.8.
 *
 * Formats: Qm.n is an int32 holding value * 2^n with m integer bits (m + n = 31). Differences from the row
 * maximum are scaled to Q5.26, exponentials are Q0.31, their sum is Q12.19.
 */
#include "frk_nn.h"
#include "frk_nn_support.h"

/* gemmlowp SaturatingRoundingMultiplyByPOT<e> for 0 < e < 31: v * 2^e, saturated to INT32_MAX when
 * v > 2^(31-e) - 1 and to INT32_MIN when v < -(2^(31-e) - 1). */
static int32_t frk__sat_shl(int32_t v, int32_t e)
{
    const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - e)) - 1u);
    if (v > threshold) {
        return INT32_MAX;
    }
    if (v < -threshold) {
        return INT32_MIN;
    }
    return frk__from_u32((uint32_t)v << e); /* |v * 2^e| <= 2^31 - 2^e: exact */
}

/* Leading zeros of a 32-bit word; 32 for 0. Once per row, so a plain loop. */
static int32_t frk__clz32(uint32_t u)
{
    int32_t n = 0;
    if (u == 0u) {
        return 32;
    }
    while ((u & 0x80000000u) == 0u) {
        u <<= 1;
        ++n;
    }
    return n;
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8,
 *   v = a + 1/8;  exp(a) = exp(-1/8) * (1 + v + v^2/2 + v^3/6 + v^4/24)
 * evaluated as c + c * (v + RDBPOT(SRDHM(RDBPOT(v^4, 2) + v^3, 1/3) + v^2, 1)), c = exp(-1/8). */
static int32_t frk__exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t exp_minus_one_eighth = 1895147668; /* Q0.31 */
    const int32_t one_third = 715827883;            /* Q0.31 */
    const int32_t v = frk__add_wrap(a, (int32_t)1 << 28);
    const int32_t v2 = frk__dhm(v, v);
    const int32_t v3 = frk__dhm(v2, v);
    const int32_t v4 = frk__dhm(v2, v2);
    const int32_t v4_over_4 = frk__rdbpot(v4, 2);
    const int32_t poly =
        frk__rdbpot(frk__add_wrap(frk__dhm(frk__add_wrap(v4_over_4, v3), one_third), v2), 1);
    return frk__add_wrap(exp_minus_one_eighth, frk__dhm(exp_minus_one_eighth, frk__add_wrap(v, poly)));
}

/* exp(a) for a <= 0: a in Q5.26, result in Q0.31. a = r + q with r = (a mod 1/4) - 1/4 in [-1/4, 0) and
 * q = a - r a non-positive multiple of 1/4; exp(r) comes from the series, and each set bit 2^k of -q
 * (k = -2..4) multiplies in exp(-2^k). exp(0) is INT32_MAX. */
static int32_t frk__exp_on_negative_values(int32_t a)
{
    static const int32_t exp_of_minus_pow2[7] = {
        1672461947, /* exp(-1/4) */
        1302514674, /* exp(-1/2) */
        790015084,  /* exp(-1)   */
        290630308,  /* exp(-2)   */
        39332535,   /* exp(-4)   */
        720401,     /* exp(-8)   */
        242         /* exp(-16)  */
    };
    const int32_t one_quarter = (int32_t)1 << 24; /* Q5.26 */
    const int32_t r = frk__sub_wrap(a & (one_quarter - 1), one_quarter);
    const int32_t remainder = frk__sub_wrap(r, a); /* -q >= 0 */
    int32_t result = frk__exp_on_interval_between_negative_one_quarter_and_0_excl(frk__sat_shl(r, 5));
    int32_t k;
    for (k = 0; k < 7; ++k) {
        if (remainder & ((int32_t)1 << (24 + k))) { /* bit 26 + (k - 2): the multiple 2^(k-2) */
            result = frk__dhm(result, exp_of_minus_pow2[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out: Newton-Raphson on the half denominator d = (1 + a) / 2,
 * in Q2.29, from the start value 48/17 - 32/17 * d, three iterations z += z * (1 - d * z) (the product
 * rescaled from Q4.27 to Q2.29 by a saturating shift), then Q2.29 -> Q1.30 -> Q0.31 with saturation. */
static int32_t frk__one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int32_t constant_48_over_17 = 1515870810;      /* Q2.29 */
    const int32_t constant_neg_32_over_17 = -1010580540; /* Q2.29 */
    const int32_t one_q2_29 = (int32_t)1 << 29;
    /* gemmlowp RoundingHalfSum(a, INT32_MAX): (s + sign(s)) / 2 in int64, C truncating division. */
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t z = frk__add_wrap(constant_48_over_17, frk__dhm(half_denominator, constant_neg_32_over_17));
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_z = frk__dhm(half_denominator, z);
        const int32_t one_minus = frk__sub_wrap(one_q2_29, half_denominator_times_z);
        z = frk__add_wrap(z, frk__sat_shl(frk__dhm(z, one_minus), 2));
    }
    return frk__sat_shl(z, 1);
}

/* Q0.31 exp(x - row max) of one element with diff = x - max in [diff_min, 0]: the difference is scaled to
 * Q5.26 by SRDHM(diff * 2^input_left_shift, input_multiplier) (diff_min keeps the product inside int32). */
static int32_t frk__softmax_exp(const frk_softmax_params *params, int32_t diff)
{
    const int32_t shifted = frk__from_u32((uint32_t)diff << params->input_left_shift);
    return frk__exp_on_negative_values(frk__dhm(shifted, params->input_multiplier));
}

/*
 * frk_softmax_s8 - each of `rows` rows of `depth` int8 values (the last axis) on its own:
 *
 *   diff   = x - max(row)                      in [-255, 0]; entries with diff < diff_min output -128 and
 *                                              are left out of the sum
 *   e      = exp_on_negative_values(SRDHM(diff * 2^input_left_shift, input_multiplier))     Q0.31
 *   sum    = sum of RDBPOT(e, 12)                                                           Q12.19
 *   h      = CLZ(sum), nbou = 12 - h
 *   recip  = one_over_one_plus_x_for_x_in_0_1((sum << h) - 2^31)          Q0.31, ~ 2^nbou / sum
 *   y      = clamp(RDBPOT(SRDHM(recip, e), nbou + 23) - 128, -128, 127)
 *
 * gemmlowp requires 0 <= nbou + 23 <= 31; that fails when the row's sum of exps is >= 512 (about 512 entries
 * tied at the maximum). Then this returns -1 at once: rows before that one are written, that row and the
 * ones after it are not. Otherwise it returns 0. The exponentials are computed twice per element (for the
 * sum, then for the output), as TFLM does, instead of storing them: no scratch buffer.
 */
int32_t frk_softmax_s8(const frk_softmax_params *params, int32_t rows, int32_t depth, const int8_t *input,
                       int8_t *output)
{
    /* A row of up to FRK_SOFTMAX_CACHED values keeps its exponentials from the sum for the outputs (a classifier's
     * row is 10 or 12 wide): the same values, computed once. A longer row computes them again. */
    enum { FRK_SOFTMAX_CACHED = 16 };
    int32_t cache[FRK_SOFTMAX_CACHED];
    const int32_t diff_min = params->diff_min; /* a local: the int8 stores could alias *params */
    const int32_t cached = depth <= FRK_SOFTMAX_CACHED;
    int32_t row, i;

    for (row = 0; row < rows; ++row) {
        const int8_t *x = input + row * depth;
        int8_t *y = output + row * depth;
        int32_t max = -128;
        uint32_t sum = 0u; /* gemmlowp's int32 sum wraps; uint32 wraps the same way, without UB */
        int32_t headroom, out_shift, recip;
        uint32_t shifted_sum;

        for (i = 0; i < depth; ++i) {
            max = x[i] > max ? x[i] : max;
        }
        for (i = 0; i < depth; ++i) {
            const int32_t diff = (int32_t)x[i] - max;
            if (diff >= diff_min) {
                const int32_t e = frk__softmax_exp(params, diff);
                if (cached) {
                    cache[i] = e;
                }
                sum += (uint32_t)frk__rdbpot(e, 12);
            }
        }
        headroom = frk__clz32(sum);
        out_shift = (12 - headroom) + 31 - 8; /* num_bits_over_unit + 23 */
        if (out_shift < 0 || out_shift > 31) {
            return -1;
        }
        /* Normalise the sum to [1, 2) in Q1.31 (a shift by 32 for a zero sum leaves 0), minus one. */
        shifted_sum = headroom < 32 ? sum << headroom : 0u;
        recip = frk__one_over_one_plus_x_for_x_in_0_1(frk__from_u32(shifted_sum - 0x80000000u));

        for (i = 0; i < depth; ++i) {
            const int32_t diff = (int32_t)x[i] - max;
            int32_t v = -128;
            if (diff >= diff_min) {
                const int32_t e = cached ? cache[i] : frk__softmax_exp(params, diff);
                v = frk__rdbpot(frk__dhm(recip, e), out_shift) - 128;
                v = v < -128 ? -128 : v;
                v = v > 127 ? 127 : v;
            }
            y[i] = (int8_t)v;
        }
    }
    return 0;
}
