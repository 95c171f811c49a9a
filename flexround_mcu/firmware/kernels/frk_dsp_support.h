/*
 * frk_dsp_support.h - internal helpers of the fast (_dsp) kernels: the Armv7E-M DSP instructions they use, the
 * requantization epilogue built on SMMULR, and the int8 / lane-nibbled int4 dot-product cores of the convolution
 * and fully connected kernels. Not part of the API (frk_nn.h).
 *
 * Each instruction is a static inline function. With __ARM_FEATURE_DSP (Cortex-M4/M7/M55) it is the instruction
 * itself (inline asm: GCC 12 neither fuses a rotate into SXTB16 nor schedules its __smlad intrinsic well); on any
 * other compiler target it is a C99 function computing the same 32 bits, so the fast kernels also build and run on
 * the host, where tests compare them with the numpy twins. Define FRK_NO_DSP_ASM to use the C versions on Arm too.
 *
 * Packed words: a uint32_t holds four int8 lanes (byte 0 lowest) or two int16 lanes (halfword 0 lowest).
 * The arithmetic of every fast kernel is that of its portable twin (docs/arithmetic.md 4); the export-time
 * transforms it relies on (weight layouts, the input offset folded into the bias) are docs/arithmetic.md 6.
 */
#ifndef FRK_DSP_SUPPORT_H
#define FRK_DSP_SUPPORT_H

#include <stdint.h>
#include <string.h> /* memcpy: an unaligned 4-byte load, one LDR on Armv7E-M */

#include "frk_nn_support.h"

#if defined(__ARM_FEATURE_DSP) && !defined(FRK_NO_DSP_ASM)
#define FRK_DSP_ASM 1
#else
#define FRK_DSP_ASM 0
#endif

/* Four bytes from any address (Cortex-M4/M7/M55 allow unaligned LDR from normal memory). */
static inline uint32_t frk__read_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void frk__write_u32(void *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

/* int16 lane of a C value, as the 16 low bits of a word (the lane's two's complement). */
static inline uint32_t frk__lane16(int32_t v)
{
    return (uint32_t)v & 0xFFFFu;
}

/* Signed value of a byte / halfword of x (C99-defined: no conversion of out-of-range unsigned values). */
static inline int32_t frk__sbyte(uint32_t x, int32_t n)
{
    return (int32_t)((x >> (8 * n)) & 0xFFu) - (int32_t)(((x >> (8 * n)) & 0x80u) << 1);
}

static inline int32_t frk__shalf(uint32_t x, int32_t n)
{
    return (int32_t)((x >> (16 * n)) & 0xFFFFu) - (int32_t)(((x >> (16 * n)) & 0x8000u) << 1);
}

/* SXTB16: bytes 0 and 2 of x sign-extended into halfwords 0 and 1. */
static inline uint32_t frk__sxtb16(uint32_t x)
{
#if FRK_DSP_ASM
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
#else
    return frk__lane16(frk__sbyte(x, 0)) | (frk__lane16(frk__sbyte(x, 2)) << 16);
#endif
}

/* SXTB16 with ROR #8: bytes 1 and 3 of x sign-extended into halfwords 0 and 1. */
static inline uint32_t frk__sxtb16_ror8(uint32_t x)
{
#if FRK_DSP_ASM
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
#else
    return frk__lane16(frk__sbyte(x, 1)) | (frk__lane16(frk__sbyte(x, 3)) << 16);
#endif
}

/* SMLAD: acc + lo(a)*lo(b) + hi(a)*hi(b), int16 lanes, wrapping modulo 2^32 (the Q flag is never read). */
static inline int32_t frk__smlad(uint32_t a, uint32_t b, int32_t acc)
{
#if FRK_DSP_ASM
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    const uint32_t lo = (uint32_t)(frk__shalf(a, 0) * frk__shalf(b, 0));
    const uint32_t hi = (uint32_t)(frk__shalf(a, 1) * frk__shalf(b, 1));
    return frk__from_u32((uint32_t)acc + lo + hi);
#endif
}

/* SMLABB / SMLATT: acc + lo(a)*lo(b) / acc + hi(a)*hi(b), wrapping. */
static inline int32_t frk__smlabb(uint32_t a, uint32_t b, int32_t acc)
{
#if FRK_DSP_ASM
    int32_t r;
    __asm__("smlabb %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    return frk__from_u32((uint32_t)acc + (uint32_t)(frk__shalf(a, 0) * frk__shalf(b, 0)));
#endif
}

static inline int32_t frk__smlatt(uint32_t a, uint32_t b, int32_t acc)
{
#if FRK_DSP_ASM
    int32_t r;
    __asm__("smlatt %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    return frk__from_u32((uint32_t)acc + (uint32_t)(frk__shalf(a, 1) * frk__shalf(b, 1)));
#endif
}

/* SMMULR: the high word of a*b + 2^31, i.e. floor((a*b + 2^31) / 2^32). */
static inline int32_t frk__smmulr(int32_t a, int32_t b)
{
#if FRK_DSP_ASM
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)frk__asr64((int64_t)a * b + ((int64_t)1 << 31), 32);
#endif
}

/* SMMLAR: acc + SMMULR(a, b), i.e. floor((acc * 2^32 + a*b + 2^31) / 2^32). */
static inline int32_t frk__smmlar(int32_t a, int32_t b, int32_t acc)
{
#if FRK_DSP_ASM
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    return (int32_t)frk__asr64((int64_t)a * b + (int64_t)acc * 4294967296LL + ((int64_t)1 << 31), 32);
#endif
}

/* SXTAB16 (with ROR #8): acc's two halfwords plus bytes 0 and 2 (1 and 3) of x sign-extended, each halfword
 * wrapping modulo 2^16. */
static inline uint32_t frk__sxtab16(uint32_t acc, uint32_t x)
{
#if FRK_DSP_ASM
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2" : "=r"(r) : "r"(acc), "r"(x));
    return r;
#else
    return ((acc + frk__sxtb16(x)) & 0xFFFFu) | (((acc >> 16) + (frk__sxtb16(x) >> 16)) << 16);
#endif
}

static inline uint32_t frk__sxtab16_ror8(uint32_t acc, uint32_t x)
{
#if FRK_DSP_ASM
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
#else
    return ((acc + frk__sxtb16_ror8(x)) & 0xFFFFu) | (((acc >> 16) + (frk__sxtb16_ror8(x) >> 16)) << 16);
#endif
}

/* The larger / smaller of each of the four int8 lanes of a and b (SSUB8 sets a GE flag per lane, SEL picks;
 * both in one asm statement, as the flags live between them). */
static inline uint32_t frk__max_s8x4(uint32_t a, uint32_t b)
{
#if FRK_DSP_ASM
    uint32_t r, t;
    __asm__("ssub8 %1, %2, %3\n\tsel %0, %2, %3" : "=r"(r), "=&r"(t) : "r"(a), "r"(b) : "cc");
    return r;
#else
    uint32_t r = 0;
    int32_t i;
    for (i = 0; i < 4; ++i) {
        const int32_t x = frk__sbyte(a, i), y = frk__sbyte(b, i);
        r |= ((uint32_t)(x > y ? x : y) & 0xFFu) << (8 * i);
    }
    return r;
#endif
}

static inline uint32_t frk__min_s8x4(uint32_t a, uint32_t b)
{
#if FRK_DSP_ASM
    uint32_t r, t;
    __asm__("ssub8 %1, %3, %2\n\tsel %0, %2, %3" : "=r"(r), "=&r"(t) : "r"(a), "r"(b) : "cc");
    return r;
#else
    uint32_t r = 0;
    int32_t i;
    for (i = 0; i < 4; ++i) {
        const int32_t x = frk__sbyte(a, i), y = frk__sbyte(b, i);
        r |= ((uint32_t)(x < y ? x : y) & 0xFFu) << (8 * i);
    }
    return r;
#endif
}

/* USAT #8: x clamped to [0, 255]. */
static inline int32_t frk__usat8(int32_t x)
{
#if FRK_DSP_ASM
    int32_t r;
    __asm__("usat %0, #8, %1" : "=r"(r) : "r"(x));
    return r;
#else
    return x < 0 ? 0 : (x > 255 ? 255 : x);
#endif
}

/* SSAT #8: x clamped to [-128, 127]. */
static inline int32_t frk__ssat8(int32_t x)
{
#if FRK_DSP_ASM
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(x));
    return r;
#else
    return x < -128 ? -128 : (x > 127 ? 127 : x);
#endif
}

/* ---- requantization epilogue ---------------------------------------------------------------------------
 * frk__output_stage(acc, M, shift, ...) of the portable kernels, in fewer instructions, for accumulators the
 * export has bounded: |acc * 2^left| < 2^30 (left = max(shift, 0)). Then
 *   SRDHM(a, M) = floor((a*M + 2^30) / 2^31) = floor((2a*M + 2^31) / 2^32) = SMMULR(2a, M)   (2a fits int32)
 *   RDBPOT(x, e) = (x - [x < 0] + 2^(e-1)) >> e   for e >= 1 (ties away from zero: a negative tie is pulled
 *                  down by one before the floor), and x itself for e = 0,
 * so the epilogue is LSL, ADD, SMMULR, ASR/AND/ADD/ADD/ASR, offset and clamp, with no 64-bit arithmetic. The
 * per-channel constants are computed once per channel (frk__rq_for), not per output. */
typedef struct {
    int32_t multiplier;
    int32_t left;   /* max(shift, 0) */
    int32_t right;  /* max(-shift, 0) */
    int32_t round;  /* 2^(right-1), or 0 when right == 0 */
    int32_t fix;    /* -1 when right > 0 (apply the negative-tie correction), else 0 */
} frk__rq;

static inline frk__rq frk__rq_for(int32_t multiplier, int32_t shift)
{
    frk__rq rq;
    rq.multiplier = multiplier;
    rq.left = shift > 0 ? shift : 0;
    rq.right = shift > 0 ? 0 : -shift;
    rq.round = rq.right > 0 ? (int32_t)((uint32_t)1 << (rq.right - 1)) : 0;
    rq.fix = rq.right > 0 ? -1 : 0;
    return rq;
}

/* clamp(requantize(acc) + output_offset, act_min, act_max) with lo/hi the bounds less the offset, as in
 * frk__output_stage; exact for |acc * 2^left| < 2^30. */
static inline int8_t frk__output_stage_dsp(int32_t acc, const frk__rq *rq, int32_t output_offset, int32_t lo,
                                           int32_t hi)
{
    const int32_t a = frk__from_u32((uint32_t)acc << rq->left);
    int32_t x = frk__smmulr(frk__from_u32((uint32_t)a << 1), rq->multiplier);
#if defined(FRK_TEST_BREAK_DSP_ROUNDING)
    /* Test builds only: VRSHR-style rounding (negative ties toward +inf), which the kernel tests must catch. */
    x = frk__asr32(x + rq->round, rq->right);
#else
    x = frk__asr32(x + (frk__asr32(x, 31) & rq->fix) + rq->round, rq->right);
#endif
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    return (int8_t)(x + output_offset);
}

/* The usual case, decided once per call: one (multiplier, shift) pair for every channel with shift < 0 and
 * |output_offset| * 2^e < 2^29 (e = -shift). Then the offset goes into the rounding constant,
 *   y = (x - [x < 0] + 2^(e-1) + output_offset * 2^e) >> e = RDBPOT(x, e) + output_offset   (x = SMMULR(2acc, M))
 * with no overflow (|x| < 2^30), and only the clamp remains; SMMLAR adds the constant as it multiplies (6.6). */
typedef struct {
    int32_t multiplier;
    int32_t right;
    int32_t add;      /* 2^(right-1) + output_offset * 2^right */
    int32_t act_min, act_max;
} frk__rq_tensor;

static inline int32_t frk__rq_tensor_for(int32_t per_channel, int32_t multiplier, int32_t shift,
                                         int32_t output_offset, int32_t act_min, int32_t act_max,
                                         frk__rq_tensor *rq)
{
    const int32_t e = -shift;
    const int32_t offset_mag = output_offset < 0 ? -output_offset : output_offset;
    const int32_t ok = !per_channel && e >= 1 && e <= 22 && (offset_mag << e) < ((int32_t)1 << 29);
    rq->multiplier = multiplier;
    rq->right = ok ? e : 0;
    rq->add = ok ? (int32_t)(((uint32_t)1 << (e - 1)) + ((uint32_t)output_offset << e)) : 0;
    rq->act_min = act_min;
    rq->act_max = act_max;
    return ok;
}

/* The [x < 0] of the rounding is taken from acc: it differs only where x = 0 and acc < 0, and there both give
 * 0 >> e = 0 for e >= 1 (docs/arithmetic.md 3, proof step 3), so SMMLAR can add the constant. */
static inline int8_t frk__output_stage_tensor(int32_t acc, const frk__rq_tensor *rq)
{
    int32_t x = frk__smmlar(frk__from_u32((uint32_t)acc << 1), rq->multiplier, rq->add);
#if defined(FRK_TEST_BREAK_DSP_ROUNDING)
    x = frk__asr32(x, rq->right);
#else
    x = frk__asr32(x + frk__asr32(acc, 31), rq->right);
#endif
    x = x < rq->act_min ? rq->act_min : x;
    return (int8_t)(x > rq->act_max ? rq->act_max : x);
}

/* ---- dot-product cores ----------------------------------------------------------------------------------
 * Weights, in the layouts the exporter writes (docs/arithmetic.md 6.2):
 *   int8: a filter row of K values is padded with zeros to k_pad (a multiple of 4); two rows (output channels
 *         2j, 2j+1) are interleaved 4 values at a time: [row0 k0..3][row1 k0..3][row0 k4..7]...; an odd last
 *         row is stored alone.
 *   int4: rows padded to a multiple of 8; each 8 values k..k+7 of a row are one word, "lane-nibbled": nibble n
 *         (bits 4n+3..4n) holds w[k + (5, 4, 1, 0, 7, 6, 3, 2)[n]]; pairs of rows interleaved a word at a time.
 *         Then (word << 4s) & 0xF000F000 has, for s = 0..3, w[k+0, k+2], w[k+1, k+3], w[k+4, k+6], w[k+5, k+7]
 *         as int16 lanes (the nibble in the top four bits: 4096 * w exactly), the very lanes SXTB16 and
 *         SXTB16-ROR8 make of the columns: one AND per two weights, no unpacking. The accumulator holds
 *         4096 * sum(w*x) (the export checks it fits int32), shifted back exactly at the end.
 * Columns (activations of two output pixels) are raw int8 (no offset added: the offset is in the bias),
 * interleaved a word at a time: [col0 k0..3][col1 k0..3][col0 k4..7]..., so one LDRD loads the same four k of
 * both. SXTB16 and SXTB16-ROR8 of a column word pair up with those of a weight word lane by lane: (k, k+2) and
 * (k+1, k+3), so the order inside each pair does not matter to SMLAD.
 * frk__block2_s8 / frk__block2_packed add to acc[0..3] the dot products (row0, col0), (row0, col1), (row1, col0),
 * (row1, col1) over `groups` groups of 4 (int8), 8 (int4) or 16 (int2) values; frk__block1_* do one row (acc[0..1]).
 * On Arm the two-row loops are inline asm: 21 instructions per 16 MACs (int8, 13 registers) and 40 per 32 MACs
 * (int4, 14 registers: the 0xF000F000 mask in one, so `AND t, mask, w, LSL #4s` takes two weights in one
 * instruction), where GCC 12's own allocation spills accumulators to the stack. They need the frame
 * pointer free (any -O level but -O0, no -fno-omit-frame-pointer); otherwise the C loop below is used. */
#if FRK_DSP_ASM && defined(__OPTIMIZE__)
#define FRK_DSP_ASM_LOOPS 1
#else
#define FRK_DSP_ASM_LOOPS 0
#endif

/* The C form of one group step: acc += row word w (four int8 lanes) . column words x0, x1 (the two pixels):
 * acc[0] += w.x0, acc[1] += w.x1 (one row), by SXTB16 / SXTB16-ROR8 and two SMLADs each. */
static inline void frk__mac_row(int32_t *a0, int32_t *a1, uint32_t w, uint32_t x0, uint32_t x1)
{
    const uint32_t wa = frk__sxtb16(w), wb = frk__sxtb16_ror8(w);
    *a0 = frk__smlad(wb, frk__sxtb16_ror8(x0), frk__smlad(wa, frk__sxtb16(x0), *a0));
    *a1 = frk__smlad(wb, frk__sxtb16_ror8(x1), frk__smlad(wa, frk__sxtb16(x1), *a1));
}

static FRK_ALWAYS_INLINE void frk__block2_s8(const int8_t *w, const int8_t *cols, int32_t groups, int32_t acc[4])
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
#if FRK_DSP_ASM_LOOPS
    uint32_t xa, xb, t0, t1, t2, wv;
    __asm__ volatile(
        "1:\n\t"
        "ldrd   %[xa], %[xb], [%[c]], #8\n\t"
        "ldr    %[wv], [%[w]], #8\n\t"
        "sxtb16 %[t0], %[xa]\n\t"
        "sxtb16 %[xa], %[xa], ror #8\n\t"
        "sxtb16 %[t1], %[xb]\n\t"
        "sxtb16 %[xb], %[xb], ror #8\n\t"
        "sxtb16 %[t2], %[wv]\n\t"
        "sxtb16 %[wv], %[wv], ror #8\n\t"
        "smlad  %[a00], %[t2], %[t0], %[a00]\n\t"
        "smlad  %[a00], %[wv], %[xa], %[a00]\n\t"
        "smlad  %[a01], %[t2], %[t1], %[a01]\n\t"
        "smlad  %[a01], %[wv], %[xb], %[a01]\n\t"
        "ldr    %[wv], [%[w], #-4]\n\t"
        "sxtb16 %[t2], %[wv]\n\t"
        "sxtb16 %[wv], %[wv], ror #8\n\t"
        "smlad  %[a10], %[t2], %[t0], %[a10]\n\t"
        "smlad  %[a10], %[wv], %[xa], %[a10]\n\t"
        "smlad  %[a11], %[t2], %[t1], %[a11]\n\t"
        "smlad  %[a11], %[wv], %[xb], %[a11]\n\t"
        "subs   %[n], %[n], #1\n\t"
        "bne    1b\n\t"
        : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [c] "+r"(cols), [w] "+r"(w),
          [n] "+r"(groups), [xa] "=&r"(xa), [xb] "=&r"(xb), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2),
          [wv] "=&r"(wv)
        :
        : "cc", "memory");
#else
    for (; groups > 0; --groups) {
        const uint32_t x0 = frk__read_u32(cols), x1 = frk__read_u32(cols + 4);
        frk__mac_row(&a00, &a01, frk__read_u32(w), x0, x1);
        frk__mac_row(&a10, &a11, frk__read_u32(w + 4), x0, x1);
        cols += 8;
        w += 8;
    }
#endif
    acc[0] = a00, acc[1] = a01, acc[2] = a10, acc[3] = a11;
}

/* One row (an odd last output channel) against the two interleaved columns: acc[0..1]. */
static FRK_ALWAYS_INLINE void frk__block1_s8(const int8_t *w, const int8_t *cols, int32_t groups, int32_t acc[2])
{
    int32_t a00 = acc[0], a01 = acc[1];
    for (; groups > 0; --groups) {
        frk__mac_row(&a00, &a01, frk__read_u32(w), frk__read_u32(cols), frk__read_u32(cols + 4));
        cols += 8;
        w += 4;
    }
    acc[0] = a00, acc[1] = a01;
}

/* Lanes s of a lane-nibbled word: 4096 * w[k+0, k+2], w[k+1, k+3], w[k+4, k+6], w[k+5, k+7] for s = 0..3. */
static inline uint32_t frk__s4_lanes(uint32_t word, int32_t s)
{
    return (word << (4 * s)) & 0xF000F000u;
}

/* The C form of one half group step for int4: acc += the lanes (l02, l13) . column words x0, x1. */
static inline void frk__mac_lanes(int32_t *a0, int32_t *a1, uint32_t l02, uint32_t l13, uint32_t x0, uint32_t x1)
{
    *a0 = frk__smlad(l13, frk__sxtb16_ror8(x0), frk__smlad(l02, frk__sxtb16(x0), *a0));
    *a1 = frk__smlad(l13, frk__sxtb16_ror8(x1), frk__smlad(l02, frk__sxtb16(x1), *a1));
}

/* Two rows' lane-nibbled words (loaded from ld0, ld1) against columns k..k+3 (lanes 0, 1: shifts 0, 4) or
 * k+4..k+7 (lanes 2, 3: shifts 8, 12): 19 instructions per 16 MACs. */
#define FRK_S4_HALF(l02, l13, ld0, ld1)                                                                        \
    "ldrd   %[xa], %[xb], [%[c]], #8\n\t"                                                                      \
    "ldr    %[t2], " ld0 "\n\t"                                                                               \
    "sxtb16 %[t0], %[xa]\n\t"                                                                                  \
    "sxtb16 %[xa], %[xa], ror #8\n\t"                                                                          \
    "sxtb16 %[t1], %[xb]\n\t"                                                                                  \
    "sxtb16 %[xb], %[xb], ror #8\n\t"                                                                          \
    "and    %[t3], %[m], %[t2], lsl #" #l02 "\n\t"                                                             \
    "smlad  %[a00], %[t3], %[t0], %[a00]\n\t"                                                                  \
    "smlad  %[a01], %[t3], %[t1], %[a01]\n\t"                                                                  \
    "and    %[t3], %[m], %[t2], lsl #" #l13 "\n\t"                                                             \
    "smlad  %[a00], %[t3], %[xa], %[a00]\n\t"                                                                  \
    "smlad  %[a01], %[t3], %[xb], %[a01]\n\t"                                                                  \
    "ldr    %[t2], " ld1 "\n\t"                                                                               \
    "and    %[t3], %[m], %[t2], lsl #" #l02 "\n\t"                                                             \
    "smlad  %[a10], %[t3], %[t0], %[a10]\n\t"                                                                  \
    "smlad  %[a11], %[t3], %[t1], %[a11]\n\t"                                                                  \
    "and    %[t3], %[m], %[t2], lsl #" #l13 "\n\t"                                                             \
    "smlad  %[a10], %[t3], %[xa], %[a10]\n\t"                                                                  \
    "smlad  %[a11], %[t3], %[xb], %[a11]\n\t"

/* int2 ("lane-crumbed", docs/arithmetic.md 6.2): crumb c (bits 2c+1..2c) of a 16-value word holds value
 * S2_LANE_ORDER[c] = 13, 12, 9, 8, 5, 4, 1, 0, 15, 14, 11, 10, 7, 6, 3, 2 of its group, so that
 * (word << 2s) & 0xC000C000 has, for s = 2j and 2j + 1, values (4j, 4j+2) and (4j+1, 4j+3) as int16 lanes times
 * 16384: the lanes SXTB16 / SXTB16-ROR8 make of activation word j. The cores accumulate 16384 * sum(w * x). */
static inline uint32_t frk__s2_lanes(uint32_t word, int32_t s)
{
    return (word << (2 * s)) & 0xC000C000u;
}

/* Lane pair s of a packed word of width bits (4: lane-nibbled, 2: lane-crumbed; a constant at every call). */
static FRK_ALWAYS_INLINE uint32_t frk__packed_lanes(int32_t bits, uint32_t word, int32_t s)
{
    return bits == 4 ? frk__s4_lanes(word, s) : frk__s2_lanes(word, s);
}

/* The two-row asm loop's operands, the same for both widths (the steps differ, not the registers). */
#define FRK__BLOCK2_OPERANDS                                                                                     \
    : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [c] "+r"(cols), [w] "+r"(w),            \
      [n] "+r"(groups), [xa] "=&r"(xa), [xb] "=&r"(xb), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2),             \
      [t3] "=&r"(t3)                                                                                           \
    : [m] "r"(mask)                                                                                            \
    : "cc", "memory"

/* frk__block2_packed / frk__block1_packed: two rows (one) of packed words against the two pixels' columns,
 * `groups` words per row (8 int4 or 16 int2 values each): 8 / bits steps per word, step j taking activation word
 * j against lane pairs 2j and 2j + 1. On Arm the two-row loop is inline asm, one FRK_S4_HALF per step with the
 * width's mask (0xF000F000 / 0xC000C000): 19 instructions per 16 MACs, 14 registers (each row word is loaded once
 * per step, which keeps the loop in 14 registers; `lsl #0` is plain AND). */
static FRK_ALWAYS_INLINE void frk__block2_packed(int32_t bits, const uint8_t *w, const int8_t *cols, int32_t groups,
                                                 int32_t acc[4])
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
#if FRK_DSP_ASM_LOOPS
    uint32_t xa, xb, t0, t1, t2, t3;
    const uint32_t mask = bits == 4 ? 0xF000F000u : 0xC000C000u;
    if (bits == 4) {
        __asm__ volatile(
            "1:\n\t"
            FRK_S4_HALF(0, 4, "[%[w]]", "[%[w], #4]")
            FRK_S4_HALF(8, 12, "[%[w]], #8", "[%[w], #-4]")
            "subs   %[n], %[n], #1\n\t"
            "bne    1b\n\t"
            FRK__BLOCK2_OPERANDS);
    } else {
        __asm__ volatile(
            "1:\n\t"
            FRK_S4_HALF(0, 2, "[%[w]]", "[%[w], #4]")
            FRK_S4_HALF(4, 6, "[%[w]]", "[%[w], #4]")
            FRK_S4_HALF(8, 10, "[%[w]]", "[%[w], #4]")
            FRK_S4_HALF(12, 14, "[%[w]], #8", "[%[w], #-4]")
            "subs   %[n], %[n], #1\n\t"
            "bne    1b\n\t"
            FRK__BLOCK2_OPERANDS);
    }
#else
    for (; groups > 0; --groups) {
        int32_t j;
        const uint32_t wr0 = frk__read_u32(w), wr1 = frk__read_u32(w + 4);
        for (j = 0; j < 8 / bits; ++j) {
            const uint32_t x0 = frk__read_u32(cols), x1 = frk__read_u32(cols + 4);
            frk__mac_lanes(&a00, &a01, frk__packed_lanes(bits, wr0, 2 * j), frk__packed_lanes(bits, wr0, 2 * j + 1),
                           x0, x1);
            frk__mac_lanes(&a10, &a11, frk__packed_lanes(bits, wr1, 2 * j), frk__packed_lanes(bits, wr1, 2 * j + 1),
                           x0, x1);
            cols += 8;
        }
        w += 8;
    }
#endif
    acc[0] = a00, acc[1] = a01, acc[2] = a10, acc[3] = a11;
}

static FRK_ALWAYS_INLINE void frk__block1_packed(int32_t bits, const uint8_t *w, const int8_t *cols, int32_t groups,
                                                 int32_t acc[2])
{
    int32_t a00 = acc[0], a01 = acc[1];
    for (; groups > 0; --groups) {
        int32_t j;
        const uint32_t wr0 = frk__read_u32(w);
        for (j = 0; j < 8 / bits; ++j) {
            frk__mac_lanes(&a00, &a01, frk__packed_lanes(bits, wr0, 2 * j), frk__packed_lanes(bits, wr0, 2 * j + 1),
                           frk__read_u32(cols), frk__read_u32(cols + 4));
            cols += 8;
        }
        w += 4;
    }
    acc[0] = a00, acc[1] = a01;
}

/* ---- im2col helpers ------------------------------------------------------------------------------------- */
/* n bytes from src to dst, a word at a time (the board's memcpy is a byte loop). */
static inline void frk__copy_s8(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 4; n -= 4, dst += 4, src += 4) {
        frk__write_u32(dst, frk__read_u32(src));
    }
    for (; n > 0; --n) {
        *dst++ = *src++;
    }
}

/* n copies of the byte v (as a word: v4 = v * 0x01010101) at dst. */
static inline void frk__fill_s8(int8_t *dst, uint32_t v4, int32_t n)
{
    for (; n >= 4; n -= 4, dst += 4) {
        frk__write_u32(dst, v4);
    }
    for (; n > 0; --n) {
        *dst++ = (int8_t)frk__sbyte(v4, 0);
    }
}

static inline uint32_t frk__splat_s8(int32_t v)
{
    return ((uint32_t)v & 0xFFu) * 0x01010101u;
}

#endif /* FRK_DSP_SUPPORT_H */
