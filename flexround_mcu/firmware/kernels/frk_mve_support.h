/*
 * frk_mve_support.h - internal helpers of the Helium (_mve) kernels: the requantization of four int32 lanes,
 * byte copies and fills, and the int8 / int4 dot-product cores of the convolution and fully connected kernels.
 * Not part of the API (frk_nn.h).
 *
 * With __ARM_FEATURE_MVE (Cortex-M55, -mfloat-abi=hard or softfp) and optimisation on, the helpers are MVE
 * intrinsics from <arm_mve.h> and the cores inline asm (low-overhead loops, VMLADAVA); elsewhere the same
 * function computes the same values in C99, so an mve project builds and runs on any target, and the host
 * tests check the layouts and the bookkeeping. The arithmetic is docs/arithmetic.md 3 and 7.
 */
#ifndef FRK_MVE_SUPPORT_H
#define FRK_MVE_SUPPORT_H

#include "frk_nn_support.h"

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && defined(__OPTIMIZE__)
#define FRK_MVE 1
#include <arm_mve.h>
#else
#define FRK_MVE 0
#endif

/* ---- requantization ---------------------------------------------------------------------------------------
 * clamp(requantize(acc, M, shift) + output_offset, act_min, act_max) on four int32 lanes: TFLM's double
 * rounding. VQRDMULH is SRDHM exactly (floor((a*M + 2^30) / 2^31), M >= 0); RDBPOT(x, e) for e >= 1 is
 * (x - [x < 0] + 2^(e-1)) >> e, i.e. VRSHL by -e (which rounds ties up) after adding the sign (VSHR #31), so
 * that ties go away from zero as in TFLM. The left part of a positive shift is a VSHL before the multiply
 * (acc * 2^left fits int32, as TFLM requires). */
typedef struct {
    int32_t output_offset, act_min, act_max;
    int32_t lo, hi; /* act_min / act_max less the offset (the portable output stage's form) */
} frk__mve_rq;

static inline void frk__mve_rq_prepare(frk__mve_rq *rq, int32_t output_offset, int32_t act_min, int32_t act_max)
{
    rq->output_offset = output_offset, rq->act_min = act_min, rq->act_max = act_max;
    rq->lo = act_min - output_offset, rq->hi = act_max - output_offset;
}

#if FRK_MVE
#if defined(FRK_TEST_BREAK_MVE_ROUNDING) /* test builds only: VRSHL's own rounding, which the tests must catch */
#define FRK_MVE_SIGN_FIX(v, mask) ((void)(mask), (v))
#define FRK_MVE_SIGN_FIX_RIGHT(v) (v)
#else
#define FRK_MVE_SIGN_FIX(v, mask) vaddq_s32((v), vandq_s32(vshrq_n_s32((v), 31), (mask)))
/* The same where the shift is known to be a right shift (the mask all ones): v - 1 where v < 0, no VAND. */
#define FRK_MVE_SIGN_FIX_RIGHT(v) vaddq_s32((v), vshrq_n_s32((v), 31))
#endif

/* requantize(v, M, shift) on four lanes, one (multiplier, shift) for all. */
static inline int32x4_t frk__mve_rescale(int32x4_t v, int32_t multiplier, int32_t shift)
{
    if (shift > 0) {
        v = vshlq_r_s32(v, shift);
    }
    v = vqrdmulhq_n_s32(v, multiplier);
    if (shift < 0) {
        v = vrshlq_n_s32(FRK_MVE_SIGN_FIX(v, vdupq_n_s32(-1)), shift);
    }
    return v;
}

/* The output stage: frk__mve_rescale, the output offset, the clamp. */
static inline int32x4_t frk__mve_requantize(int32x4_t v, int32_t multiplier, int32_t shift, const frk__mve_rq *rq)
{
    v = vaddq_n_s32(frk__mve_rescale(v, multiplier, shift), rq->output_offset);
    return vminq_s32(vmaxq_s32(v, vdupq_n_s32(rq->act_min)), vdupq_n_s32(rq->act_max));
}

/* A (multiplier, shift) per lane. */
static inline int32x4_t frk__mve_requantize_lanes(int32x4_t v, int32x4_t multiplier, int32x4_t shift,
                                                  const frk__mve_rq *rq)
{
    const int32x4_t zero = vdupq_n_s32(0);
    const int32x4_t right = vminq_s32(shift, zero); /* -max(-shift, 0) */
    v = vqrdmulhq_s32(vshlq_s32(v, vmaxq_s32(shift, zero)), multiplier);
    v = vrshlq_s32(FRK_MVE_SIGN_FIX(v, vshrq_n_s32(right, 31)), right);
    v = vaddq_n_s32(v, rq->output_offset);
    return vminq_s32(vmaxq_s32(v, vdupq_n_s32(rq->act_min)), vdupq_n_s32(rq->act_max));
}
#endif

/* out[j * stride] for j < n (n <= 4) of the four accumulators acc[0..3], one (multiplier, shift): on the M55 a
 * byte scatter store with offsets 0, stride, 2 * stride, 3 * stride, predicated to n lanes. */
static inline void frk__mve_store4(int8_t *out, int32_t stride, const frk__mve_rq *rq, int32_t n,
                                   const int32_t acc[4], int32_t multiplier, int32_t shift)
{
#if FRK_MVE
    const uint32x4_t offsets = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)stride);
    const int32x4_t v = frk__mve_requantize(vldrwq_s32(acc), multiplier, shift, rq);
    vstrbq_scatter_offset_p_s32(out, offsets, v, vctp32q((uint32_t)n));
#else
    int32_t j;
    for (j = 0; j < n; ++j) {
        out[j * stride] = frk__output_stage(acc[j], multiplier, shift, rq->output_offset, rq->lo, rq->hi);
    }
#endif
}

/* ---- byte moves for im2col --------------------------------------------------------------------------------- */
static inline void frk__mve_copy(int8_t *dst, const int8_t *src, int32_t n)
{
#if FRK_MVE
    for (; n > 0; n -= 16, dst += 16, src += 16) {
        const mve_pred16_t p = vctp8q((uint32_t)n);
        vstrbq_p_s8(dst, vldrbq_z_s8(src, p), p);
    }
#else
    for (; n > 0; --n) {
        *dst++ = *src++;
    }
#endif
}

static inline void frk__mve_fill(int8_t *dst, int8_t v, int32_t n)
{
#if FRK_MVE
    const int8x16_t splat = vdupq_n_s8(v);
    for (; n > 0; n -= 16, dst += 16) {
        vstrbq_p_s8(dst, splat, vctp8q((uint32_t)n));
    }
#else
    for (; n > 0; --n) {
        *dst++ = v;
    }
#endif
}

/* ---- dot-product cores --------------------------------------------------------------------------------------
 * Weights, in the layouts the exporter writes (docs/arithmetic.md 7.1):
 *   int8: a filter row of K values padded with zeros to k_pad (a multiple of 16); rows 2j, 2j+1 interleaved 16
 *         values at a time: [row0 k0..15][row1 k0..15][row0 k16..31]...; an odd last row stored alone.
 *   int4: rows padded to a multiple of 16; each 32 values k..k+31 of a row are 16 bytes whose byte i holds
 *         w[k+i] in its low nibble and w[k+16+i] in its high nibble, and a row whose padded K is an odd multiple
 *         of 16 ends in its last 16 values as int8 bytes 16 * w (the "tail": as many bytes as the packed values
 *         and their padding would take); pairs of rows interleaved 16 bytes at a time. VSHL.I8 #4 of the 16 bytes is 16 * w[k..k+15] and VAND with 0xF0 is 16 * w[k+16..k+31], each
 *         exact int8 lanes: 3 instructions unpack 32 weights, and the accumulator holds 16 * sum(w*x).
 * Activations: three columns (output pixels) of k_pad raw int8 values each (no offset: it is in the bias), at
 * any addresses. frk__mve_pairs runs pairs of rows (output channels) against the three columns, outputs
 * included; frk__mve_rows1 does one row (acc[0..2]). On the M55 the pair loop is inline asm: per 16 k, 2 weight
 * loads, 3 column loads, 6 VMLADAVA and the loop end, 12 instructions per 96 MACs (int8); per 32 k, 25 per 192
 * (int4). The accumulators of VMLADAVA must be even registers (constraint "Te"). */
#if FRK_MVE
#define FRK_MVE_ASM_LOOPS 1
#else
#define FRK_MVE_ASM_LOOPS 0
#endif

/* The C form: the dot product of one row's `groups` groups (int4: and its int8 tail of 16 values 16 * w when
 * `tail`) with one column, in the layout above; w_step the bytes from one group of the row to the next. */
static inline int32_t frk__mve_dot_c(const int8_t *w, int32_t w_step, const int8_t *x, int32_t groups,
                                     int32_t wbits, int32_t tail, int32_t acc)
{
    int32_t g, i;
    for (g = 0; g < groups + (wbits == 4 && tail); ++g, w += w_step) {
        if (wbits == 8 || g == groups) { /* an int8 group, or the int4 row's tail of 16 * w */
            for (i = 0; i < 16; ++i) {
                acc = frk__add_wrap(acc, w[i] * x[i]);
            }
            x += 16;
        } else {
            for (i = 0; i < 16; ++i) {
                const int32_t byte = (uint8_t)w[i];
                const int32_t lo = frk__s4_low(byte) * 16, hi = frk__s4_high((int8_t)byte) * 16;
                acc = frk__add_wrap(acc, lo * x[i]);
                acc = frk__add_wrap(acc, hi * x[16 + i]);
            }
            x += 32;
        }
    }
    return acc;
}

/* What the pair loop below reads and advances through one register (offsets fixed: the asm uses them). */
typedef struct {
    const int8_t *cols[3];      /*  0: the block's three columns */
    int32_t groups;             /* 12 */
    const int32_t *multiplier;  /* 16: the pair's two multipliers (advanced by mstep) */
    const int32_t *shift;       /* 20: and shifts */
    int32_t mstep;              /* 24: 8 (per channel) or 0 (per tensor: both point at a pair of equal values) */
    int8_t *out;                /* 28: the pair's first output (advanced by 2) */
    int32_t output_offset;      /* 32 */
    int32_t pixels;             /* 36: outputs stored per channel (1..3) */
    int32_t tail;               /* 40: int4: 1 when the rows end in 16 values stored as int8 (16 * w), else 0 */
    int32_t pad;
    int32_t act_min[4];         /* 48: act_min in four lanes */
    int32_t act_max[4];         /* 64 */
    uint32_t offsets[4];        /* 80: 0, C_out, 2 C_out, 3 C_out: the byte offsets of a channel's outputs */
} frk__mve_ctx;

#if FRK_MVE_ASM_LOOPS
#define FRK_MVE_MACS_S8                                                                                        \
    "vldrb.8 q0, [%[w]], #16\n\t"                                                                              \
    "vldrb.8 q1, [%[w]], #16\n\t"                                                                              \
    "vldrb.8 q2, [%[x0]], #16\n\t"                                                                             \
    "vmladava.s8 %[a00], q0, q2\n\t"                                                                           \
    "vmladava.s8 %[a10], q1, q2\n\t"                                                                           \
    "vldrb.8 q2, [%[x1]], #16\n\t"                                                                             \
    "vmladava.s8 %[a01], q0, q2\n\t"                                                                           \
    "vmladava.s8 %[a11], q1, q2\n\t"                                                                           \
    "vldrb.8 q2, [%[x2]], #16\n\t"                                                                             \
    "vmladava.s8 %[a02], q0, q2\n\t"                                                                           \
    "vmladava.s8 %[a12], q1, q2\n\t"
/* int4: q7 holds 0xF0 in every byte */
#define FRK_MVE_MACS_S4_COL(j)                                                                                 \
    "vldrb.8 q4, [%[x" #j "]], #16\n\t"                                                                        \
    "vmladava.s8 %[a0" #j "], q2, q4\n\t"                                                                      \
    "vmladava.s8 %[a1" #j "], q3, q4\n\t"                                                                      \
    "vldrb.8 q4, [%[x" #j "]], #16\n\t"                                                                        \
    "vmladava.s8 %[a0" #j "], q0, q4\n\t"                                                                      \
    "vmladava.s8 %[a1" #j "], q1, q4\n\t"
#define FRK_MVE_MACS_S4                                                                                        \
    "vldrb.8 q0, [%[w]], #16\n\t"                                                                              \
    "vldrb.8 q1, [%[w]], #16\n\t"                                                                              \
    "vshl.i8 q2, q0, #4\n\t"                                                                                   \
    "vand   q0, q0, q7\n\t"                                                                                    \
    "vshl.i8 q3, q1, #4\n\t"                                                                                   \
    "vand   q1, q1, q7\n\t" FRK_MVE_MACS_S4_COL(0) FRK_MVE_MACS_S4_COL(1) FRK_MVE_MACS_S4_COL(2)
/* int4 rows whose K ends in 16 values: those as int8 bytes 16 * w, one int8 step more */
#define FRK_MVE_TAIL_S4 FRK_MVE_MACS_S8
#define FRK_MVE_UNSCALE_S8 ""
#define FRK_MVE_UNSCALE_S4 "vshr.s32 q5, q5, #4\n\t" "vshr.s32 q6, q6, #4\n\t"
/* q5, q6: the two channels' lanes; a00/a01 their multipliers, a02/a10 their shifts. Every shift < 0 (the usual
 * case, checked per call): no left part, and the sign fix always applies. */
#define FRK_MVE_RQ_RIGHT                                                                                       \
    "vqrdmulh.s32 q5, q5, %[a00]\n\t"                                                                          \
    "vqrdmulh.s32 q6, q6, %[a01]\n\t"                                                                          \
    "vshr.s32 q0, q5, #31\n\t"                                                                                 \
    "vadd.i32 q5, q5, q0\n\t"                                                                                  \
    "vshr.s32 q0, q6, #31\n\t"                                                                                 \
    "vadd.i32 q6, q6, q0\n\t"                                                                                  \
    "vrshl.s32 q5, %[a02]\n\t"                                                                                 \
    "vrshl.s32 q6, %[a10]\n\t"
/* Any shift: the left part max(s, 0) first; the sign fix times [s < 0]; VRSHL by min(s, 0). */
#define FRK_MVE_RQ_ANY                                                                                         \
    "bic    %[a11], %[a02], %[a02], asr #31\n\t"                                                               \
    "vshl.s32 q5, %[a11]\n\t"                                                                                  \
    "bic    %[a11], %[a10], %[a10], asr #31\n\t"                                                               \
    "vshl.s32 q6, %[a11]\n\t"                                                                                  \
    "vqrdmulh.s32 q5, q5, %[a00]\n\t"                                                                          \
    "vqrdmulh.s32 q6, q6, %[a01]\n\t"                                                                          \
    "and    %[a02], %[a02], %[a02], asr #31\n\t"                                                               \
    "and    %[a10], %[a10], %[a10], asr #31\n\t"                                                               \
    "lsr    %[a11], %[a02], #31\n\t"                                                                           \
    "vshr.s32 q0, q5, #31\n\t"                                                                                 \
    "vmul.i32 q0, q0, %[a11]\n\t"                                                                              \
    "vadd.i32 q5, q5, q0\n\t"                                                                                  \
    "lsr    %[a11], %[a10], #31\n\t"                                                                           \
    "vshr.s32 q0, q6, #31\n\t"                                                                                 \
    "vmul.i32 q0, q0, %[a11]\n\t"                                                                              \
    "vadd.i32 q6, q6, q0\n\t"                                                                                  \
    "vrshl.s32 q5, %[a02]\n\t"                                                                                 \
    "vrshl.s32 q6, %[a10]\n\t"
#if defined(FRK_TEST_BREAK_MVE_ROUNDING) /* test builds only: no sign fix (VRSHL's ties toward +infinity) */
#undef FRK_MVE_RQ_RIGHT
#define FRK_MVE_RQ_RIGHT                                                                                       \
    "vqrdmulh.s32 q5, q5, %[a00]\n\t"                                                                          \
    "vqrdmulh.s32 q6, q6, %[a01]\n\t"                                                                          \
    "vrshl.s32 q5, %[a02]\n\t"                                                                                 \
    "vrshl.s32 q6, %[a10]\n\t"
#endif

/* For each pair of output channels: the accumulators from kernel_bias (ldrd, post-incremented), the MAC loop
 * over the groups, then both channels' three outputs: VMOV into lanes, (int4: >> 4), the requantization, the
 * output offset, the clamp, two predicated scatter stores of bytes. 14 registers. */
#define FRK_MVE_PAIRS(macs, tail, unscale, rq)                                                                 \
    "ldr    %[x0], [%[ctx], #36]\n\t"                                                                          \
    "vctp.32 %[x0]\n\t"                                                                                        \
    "2:\n\t"                                                                                                   \
    "ldrd   %[a00], %[a10], [%[kb]], #8\n\t"                                                                   \
    "mov    %[a01], %[a00]\n\t"                                                                                \
    "mov    %[a02], %[a00]\n\t"                                                                                \
    "mov    %[a11], %[a10]\n\t"                                                                                \
    "mov    %[a12], %[a10]\n\t"                                                                                \
    "ldrd   %[x0], %[x1], [%[ctx]]\n\t"                                                                        \
    "ldr    %[x2], [%[ctx], #8]\n\t"                                                                           \
    "ldr    lr, [%[ctx], #12]\n\t"                                                                             \
    "wls    lr, lr, 3f\n\t"                                                                                    \
    "1:\n\t" macs "le     lr, 1b\n\t"                                                                          \
    "3:\n\t" tail                                                                                              \
    "vmov   q5[2], q5[0], %[a00], %[a02]\n\t"                                                                  \
    "vmov   q5[3], q5[1], %[a01], %[a01]\n\t"                                                                  \
    "vmov   q6[2], q6[0], %[a10], %[a12]\n\t"                                                                  \
    "vmov   q6[3], q6[1], %[a11], %[a11]\n\t" unscale                                                         \
    "ldrd   %[x0], %[x1], [%[ctx], #16]\n\t"                                                                   \
    "ldr    %[x2], [%[ctx], #24]\n\t"                                                                          \
    "ldrd   %[a00], %[a01], [%[x0]]\n\t"                                                                       \
    "ldrd   %[a02], %[a10], [%[x1]]\n\t"                                                                       \
    "add    %[x0], %[x0], %[x2]\n\t"                                                                           \
    "add    %[x1], %[x1], %[x2]\n\t"                                                                           \
    "strd   %[x0], %[x1], [%[ctx], #16]\n\t" rq                                                               \
    "ldr    %[x0], [%[ctx], #32]\n\t"                                                                          \
    "vadd.i32 q5, q5, %[x0]\n\t"                                                                               \
    "vadd.i32 q6, q6, %[x0]\n\t"                                                                               \
    "vldrw.32 q1, [%[ctx], #48]\n\t"                                                                           \
    "vldrw.32 q2, [%[ctx], #64]\n\t"                                                                           \
    "vmax.s32 q5, q5, q1\n\t"                                                                                  \
    "vmin.s32 q5, q5, q2\n\t"                                                                                  \
    "vmax.s32 q6, q6, q1\n\t"                                                                                  \
    "vmin.s32 q6, q6, q2\n\t"                                                                                  \
    "vldrw.32 q3, [%[ctx], #80]\n\t"                                                                           \
    "ldr    %[x0], [%[ctx], #28]\n\t"                                                                          \
    "vpst\n\t"                                                                                                 \
    "vstrbt.32 q5, [%[x0], q3]\n\t"                                                                            \
    "adds   %[x0], %[x0], #1\n\t"                                                                              \
    "vpst\n\t"                                                                                                 \
    "vstrbt.32 q6, [%[x0], q3]\n\t"                                                                            \
    "adds   %[x0], %[x0], #1\n\t"                                                                              \
    "str    %[x0], [%[ctx], #28]\n\t"                                                                          \
    "subs   %[pairs], %[pairs], #1\n\t"                                                                        \
    "bne    2b\n\t"
#endif

/* `pairs` pairs of output channels of one block of pixels (ctx): w the first pair's interleaved rows,
 * kernel_bias their biases (int4: 16 times). any_shift: some shift >= 0 (else the cheaper right-shift-only
 * requantization). The C form runs the same steps through frk__mve_store4. */
static FRK_ALWAYS_INLINE void frk__mve_pairs(frk__mve_ctx *ctx, const int8_t *w, const int32_t *kernel_bias,
                                             int32_t pairs, int32_t wbits, int32_t any_shift)
{
#if FRK_MVE_ASM_LOOPS
    int32_t a00, a01, a02, a10, a11, a12;
    const int8_t *x0, *x1, *x2;
    const int32_t *kb = kernel_bias;
#define FRK_MVE_PAIR_OPERANDS                                                                                  \
    : [a00] "=&Te"(a00), [a01] "=&Te"(a01), [a02] "=&Te"(a02), [a10] "=&Te"(a10), [a11] "=&Te"(a11),         \
      [a12] "=&Te"(a12), [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), [w] "+r"(w), [kb] "+r"(kb),         \
      [pairs] "+r"(pairs)                                                                                      \
    : [ctx] "r"(ctx) /* "p0": GCC's name for VPR, which VCTP sets */                                                \
    : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "p0", "lr", "cc", "memory"
    if (wbits == 8 && !any_shift) {
        __asm__ volatile(FRK_MVE_PAIRS(FRK_MVE_MACS_S8, "", FRK_MVE_UNSCALE_S8, FRK_MVE_RQ_RIGHT)
                         FRK_MVE_PAIR_OPERANDS);
    } else if (wbits == 8) {
        __asm__ volatile(FRK_MVE_PAIRS(FRK_MVE_MACS_S8, "", FRK_MVE_UNSCALE_S8, FRK_MVE_RQ_ANY) FRK_MVE_PAIR_OPERANDS);
    } else if (!any_shift && !ctx->tail) {
        __asm__ volatile("vmov.i8 q7, #0xf0\n\t" FRK_MVE_PAIRS(FRK_MVE_MACS_S4, "", FRK_MVE_UNSCALE_S4,
                                                               FRK_MVE_RQ_RIGHT) FRK_MVE_PAIR_OPERANDS);
    } else if (!any_shift) {
        __asm__ volatile("vmov.i8 q7, #0xf0\n\t" FRK_MVE_PAIRS(FRK_MVE_MACS_S4, FRK_MVE_TAIL_S4, FRK_MVE_UNSCALE_S4,
                                                               FRK_MVE_RQ_RIGHT) FRK_MVE_PAIR_OPERANDS);
    } else if (!ctx->tail) {
        __asm__ volatile("vmov.i8 q7, #0xf0\n\t" FRK_MVE_PAIRS(FRK_MVE_MACS_S4, "", FRK_MVE_UNSCALE_S4,
                                                               FRK_MVE_RQ_ANY) FRK_MVE_PAIR_OPERANDS);
    } else {
        __asm__ volatile("vmov.i8 q7, #0xf0\n\t" FRK_MVE_PAIRS(FRK_MVE_MACS_S4, FRK_MVE_TAIL_S4, FRK_MVE_UNSCALE_S4,
                                                               FRK_MVE_RQ_ANY) FRK_MVE_PAIR_OPERANDS);
    }
#undef FRK_MVE_PAIR_OPERANDS
    (void)a00, (void)a01, (void)a02, (void)a10, (void)a11, (void)a12, (void)x0, (void)x1, (void)x2;
#else
    frk__mve_rq rq;
    const int32_t stride = (int32_t)ctx->offsets[1];
    int32_t j, acc[7];
    (void)any_shift;
    frk__mve_rq_prepare(&rq, ctx->output_offset, ctx->act_min[0], ctx->act_max[0]);
    for (; pairs > 0; --pairs, w += 32 * (ctx->groups + ctx->tail), kernel_bias += 2) {
        for (j = 0; j < 3; ++j) {
            acc[j] = frk__mve_dot_c(w, 32, ctx->cols[j], ctx->groups, wbits, ctx->tail, kernel_bias[0]);
            acc[3 + j] = frk__mve_dot_c(w + 16, 32, ctx->cols[j], ctx->groups, wbits, ctx->tail, kernel_bias[1]);
        }
        acc[6] = 0;
        if (wbits == 4) { /* 16 * (bias + sum(w*x)): exact in int32 (checked at export) */
            for (j = 0; j < 6; ++j) {
                acc[j] = frk__asr32(acc[j], 4);
            }
        }
        frk__mve_store4(ctx->out, stride, &rq, ctx->pixels, acc, ctx->multiplier[0], ctx->shift[0]);
        frk__mve_store4(ctx->out + 1, stride, &rq, ctx->pixels, acc + 3, ctx->multiplier[1], ctx->shift[1]);
        ctx->multiplier += ctx->mstep / 4, ctx->shift += ctx->mstep / 4, ctx->out += 2;
    }
#endif
}

/* One row (an odd last output channel, stored alone) against the three columns: acc[0..2]. */
static FRK_ALWAYS_INLINE void frk__mve_rows1(const int8_t *w, const int8_t *const cols[3], int32_t groups,
                                             int32_t wbits, int32_t tail, int32_t acc[3])
{
#if FRK_MVE
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], g;
    const int8_t *x0 = cols[0], *x1 = cols[1], *x2 = cols[2];
    for (g = 0; g < groups + (wbits == 4 && tail); ++g, w += 16) {
        const int8x16_t wv = vldrbq_s8(w);
        if (wbits == 8 || g == groups) { /* an int8 group, or the int4 row's tail of 16 * w */
            a0 = vmladavaq_s8(a0, wv, vldrbq_s8(x0));
            a1 = vmladavaq_s8(a1, wv, vldrbq_s8(x1));
            a2 = vmladavaq_s8(a2, wv, vldrbq_s8(x2));
            x0 += 16, x1 += 16, x2 += 16;
        } else {
            const int8x16_t lo = vshlq_n_s8(wv, 4), hi = vandq_s8(wv, vdupq_n_s8((int8_t)0xF0));
            a0 = vmladavaq_s8(vmladavaq_s8(a0, lo, vldrbq_s8(x0)), hi, vldrbq_s8(x0 + 16));
            a1 = vmladavaq_s8(vmladavaq_s8(a1, lo, vldrbq_s8(x1)), hi, vldrbq_s8(x1 + 16));
            a2 = vmladavaq_s8(vmladavaq_s8(a2, lo, vldrbq_s8(x2)), hi, vldrbq_s8(x2 + 16));
            x0 += 32, x1 += 32, x2 += 32;
        }
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2;
#else
    int32_t j;
    for (j = 0; j < 3; ++j) {
        acc[j] = frk__mve_dot_c(w, 16, cols[j], groups, wbits, tail, acc[j]);
    }
#endif
}

#endif /* FRK_MVE_SUPPORT_H */
