/*
 * frk_nn_support.h - internal fixed-point helpers shared by the frk_*.c kernels. Not part of the API
 * (frk_nn.h); the exported frk_doubling_high_mult / frk_rounding_divide_by_pot / frk_requantize in
 * frk_support.c are thin wrappers around these.
 *
 * They are `static inline` so that each kernel's per-output requantization is inlined without link-time
 * optimisation. Everything here is defined behaviour in C99 for every input: negative numbers are shifted
 * right through frk__asr*, and int32 sums that gemmlowp writes as plain (wrapping) adds go through uint32.
 * The arithmetic is docs/arithmetic.md section 3 (double rounding, TFLM's default build).
 */
#ifndef FRK_NN_SUPPORT_H
#define FRK_NN_SUPPORT_H

#include <stddef.h> /* NULL */
#include <stdint.h>

/* For the fast kernels' cores, which must inline into their callers to keep their accumulators in registers. */
#if defined(__GNUC__)
#define FRK_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define FRK_ALWAYS_INLINE inline
#endif

/* floor(x / 2^n) for 0 <= n <= 63. C99 leaves `x >> n` implementation-defined when x < 0; ~x is then
 * non-negative, and ~(~x >> n) is the floor. GCC and Clang emit a single arithmetic shift for this. */
static inline int64_t frk__asr64(int64_t x, int32_t n)
{
    return x < 0 ? ~(~x >> n) : x >> n;
}

static inline int32_t frk__asr32(int32_t x, int32_t n)
{
    return x < 0 ? ~(~x >> n) : x >> n;
}

/* The int32 with the same 32 bits as u (two's complement), without the implementation-defined conversion
 * of an out-of-range unsigned value to a signed type. Compiles to nothing. */
static inline int32_t frk__from_u32(uint32_t u)
{
    return u <= (uint32_t)INT32_MAX ? (int32_t)u : (int32_t)(u - 0x80000000u) + INT32_MIN;
}

/* a + b and a - b wrapping modulo 2^32, i.e. gemmlowp's non-saturating int32 add/sub without the undefined
 * behaviour of signed overflow. Softmax only; they never actually wrap for valid parameters. */
static inline int32_t frk__add_wrap(int32_t a, int32_t b)
{
    return frk__from_u32((uint32_t)a + (uint32_t)b);
}

static inline int32_t frk__sub_wrap(int32_t a, int32_t b)
{
    return frk__from_u32((uint32_t)a - (uint32_t)b);
}

/* Doubling high multiply, multiplier >= 0 (the requantization case): floor((a*M + 2^30) / 2^31), the
 * product a*M / 2^31 rounded to nearest with ties toward +infinity. |a*M| < 2^62, so the int64 sum cannot
 * overflow, and the result fits int32 because M < 2^31. */
static inline int32_t frk__dhm_nonneg(int32_t a, int32_t multiplier)
{
    return (int32_t)frk__asr64((int64_t)a * multiplier + ((int64_t)1 << 30), 31);
}

/* gemmlowp SaturatingRoundingDoublingHighMul for any signs: the same floor form, which equals gemmlowp's
 * sign-dependent nudge with truncating division; the one product that does not fit, INT32_MIN^2, saturates. */
static inline int32_t frk__dhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)frk__asr64((int64_t)a * b + ((int64_t)1 << 30), 31);
}

/* gemmlowp RoundingDivideByPOT, 0 <= n <= 31: x / 2^n rounded to nearest, ties away from zero.
 * mask = 2^n - 1; result = floor(x / 2^n) + [(x & mask) > (mask >> 1) + [x < 0]]. */
static inline int32_t frk__rdbpot(int32_t x, int32_t n)
{
    const int32_t mask = (int32_t)(((uint32_t)1 << n) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return frk__asr32(x, n) + (remainder > threshold ? 1 : 0);
}

/* TFLM MultiplyByQuantizedMultiplier (double rounding), M in {0} U [2^30, 2^31), shift in [-31, 30]:
 *   RDBPOT(DHM(acc * 2^max(shift, 0), M), max(-shift, 0)).
 * Precondition (as in TFLM): acc * 2^max(shift, 0) fits int32. If it does not, the product wraps modulo
 * 2^32 here (defined behaviour, where TFLM's int32 multiply is undefined) instead of being exact. */
static inline int32_t frk__requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t scaled = frk__from_u32((uint32_t)acc << left);
    return frk__rdbpot(frk__dhm_nonneg(scaled, multiplier), right);
}

/* The output stage of conv / depthwise / fully connected / add:
 *   clamp(requantize(acc, M, shift) + output_offset, act_min, act_max)
 * written as clamp(requantize(...), act_min - output_offset, act_max - output_offset) + output_offset, which is
 * the same integer but cannot overflow int32 when requantize returns a value near INT32_MAX.
 * lo/hi are the shifted bounds, computed once per kernel call. */
static inline int8_t frk__output_stage(int32_t acc, int32_t multiplier, int32_t shift, int32_t output_offset,
                                       int32_t lo, int32_t hi)
{
    int32_t y = frk__requantize(acc, multiplier, shift);
    y = y < lo ? lo : y;
    y = y > hi ? hi : y;
    return (int8_t)(y + output_offset);
}

/* The part [*start, *end) of filter offsets 0..k-1 that lands inside [0, size) for a window whose first tap
 * is at `origin` (possibly negative, in the padding). The range is empty (*end <= *start) for a window that
 * lies entirely in the padding. The pooling kernels' window bounds. */
static inline void frk__valid_range(int32_t origin, int32_t k, int32_t size, int32_t *start, int32_t *end)
{
    *start = origin < 0 ? -origin : 0;
    *end = size - origin < k ? size - origin : k;
}

/* The taps of a pooling window whose row and column ranges frk__valid_range gave: 0 for a window that lies
 * entirely in the padding. */
static inline int32_t frk__window_taps(int32_t ky_start, int32_t ky_end, int32_t kx_start, int32_t kx_end)
{
    return (ky_end > ky_start && kx_end > kx_start) ? (ky_end - ky_start) * (kx_end - kx_start) : 0;
}

/* int4 (s4) filters: two's-complement nibbles packed densely over the whole tensor (docs/arithmetic.md 1):
 * element i of the flattened filter is the low nibble of byte i >> 1 when i is even, the high nibble when i is
 * odd. The kernels take the bytes as `const uint8_t *` and read them through `const int8_t *` (the signed and
 * unsigned variants of a type may alias; int8_t is two's complement by definition), so that one signed load
 * gives both nibbles: the high one is the byte shifted right by 4 (floor), the low one is bits 3..0
 * sign-extended with (n ^ 8) - 8. GCC turns these into one ASR and one SBFX. */
static inline int32_t frk__s4_low(int32_t byte)
{
    return (int32_t)(((uint32_t)byte & 0x0Fu) ^ 0x08u) - 8;
}

static inline int32_t frk__s4_high(int32_t byte)
{
    return frk__asr32(byte, 4);
}

/* Element i of a packed s4 filter, as an int32 in [-8, 7]. */
static inline int32_t frk__s4_at(const uint8_t *packed, int32_t i)
{
    const int32_t byte = ((const int8_t *)packed)[i >> 1];
    return (i & 1) ? frk__s4_high(byte) : frk__s4_low(byte);
}

/* sum over k < n of  w[first + k] * (x[k] + input_offset), w a packed s4 filter and x int8: one tap's (or one
 * filter row's, or one fully connected row's) contribution to the accumulator. A run that starts on an odd
 * element index begins in the high nibble of a byte (a row starting mid-byte); after it, each byte holds the
 * next two weights, and an odd remainder ends in the low nibble of one more byte (never reading the high
 * nibble past the run). The sum is int32: the callers bound it as for s8. */
static inline int32_t frk__dot_s4(const uint8_t *packed, int32_t first, const int8_t *x, int32_t n,
                                  int32_t input_offset)
{
    const int8_t *w = (const int8_t *)packed + (first >> 1);
    int32_t acc = 0;
    int32_t pairs;

    if ((first & 1) && n > 0) {
        acc += frk__s4_high(*w++) * ((int32_t)*x++ + input_offset);
        --n;
    }
    for (pairs = n >> 1; pairs > 0; --pairs) {
        const int32_t byte = *w++;
        acc += frk__s4_low(byte) * ((int32_t)x[0] + input_offset);
        acc += frk__s4_high(byte) * ((int32_t)x[1] + input_offset);
        x += 2;
    }
    if (n & 1) {
        acc += frk__s4_low(*w) * ((int32_t)x[0] + input_offset);
    }
    return acc;
}

/* int2 (s2) filters: two's-complement 2-bit fields ("crumbs") packed densely over the whole tensor, four per
 * byte (docs/arithmetic.md 1): element i of the flattened filter is bits 2j+1..2j of byte i >> 2, j = i & 3.
 * All four values, -2 to 1, occur. Crumb j, moved to the top of a word and shifted back arithmetically, is the
 * sign-extended value: one LSL and one ASR (or one SBFX). */
static inline int32_t frk__s2_crumb(uint32_t byte, int32_t j)
{
    return frk__asr32(frk__from_u32(byte << (30 - 2 * j)), 30);
}

/* Element i of a packed s2 filter, as an int32 in [-2, 1]. */
static inline int32_t frk__s2_at(const uint8_t *packed, int32_t i)
{
    return frk__s2_crumb(packed[i >> 2], i & 3);
}

/* sum over k < n of  w[first + k] * (x[k] + input_offset), w a packed s2 filter and x int8 (as frk__dot_s4).
 * A run that starts mid-byte takes the rest of that byte's crumbs one by one; then each byte holds the next
 * four weights; a remainder of 1 to 3 ends in the low crumbs of one more byte (never reading past the run's
 * last crumb). */
static inline int32_t frk__dot_s2(const uint8_t *packed, int32_t first, const int8_t *x, int32_t n,
                                  int32_t input_offset)
{
    const uint8_t *w = packed + (first >> 2);
    int32_t j = first & 3;
    int32_t acc = 0;
    int32_t quads;

    if (j != 0) {
        for (; j < 4 && n > 0; ++j, --n) {
            acc += frk__s2_crumb(*w, j) * ((int32_t)*x++ + input_offset);
        }
        ++w;
    }
    for (quads = n >> 2; quads > 0; --quads) {
        const uint32_t byte = *w++;
        acc += frk__s2_crumb(byte, 0) * ((int32_t)x[0] + input_offset);
        acc += frk__s2_crumb(byte, 1) * ((int32_t)x[1] + input_offset);
        acc += frk__s2_crumb(byte, 2) * ((int32_t)x[2] + input_offset);
        acc += frk__s2_crumb(byte, 3) * ((int32_t)x[3] + input_offset);
        x += 4;
    }
    for (j = 0; j < (n & 3); ++j) {
        acc += frk__s2_crumb(*w, j) * ((int32_t)x[j] + input_offset);
    }
    return acc;
}

/* The packed-filter accessors by width (bits 4 or 2, a constant at every call): the s4 and s2 kernels share one
 * body each, as the s8 / s4 / s2 dsp kernels do. */
static FRK_ALWAYS_INLINE int32_t frk__dot_packed(int32_t bits, const uint8_t *packed, int32_t first, const int8_t *x,
                                                 int32_t n, int32_t input_offset)
{
    return bits == 4 ? frk__dot_s4(packed, first, x, n, input_offset) : frk__dot_s2(packed, first, x, n, input_offset);
}

static FRK_ALWAYS_INLINE int32_t frk__packed_at(int32_t bits, const uint8_t *packed, int32_t i)
{
    return bits == 4 ? frk__s4_at(packed, i) : frk__s2_at(packed, i);
}

#endif /* FRK_NN_SUPPORT_H */
