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
 * out[j * stride] = clamp(requantize(acc[j], M, shift) + output_offset, act_min, act_max) for j < n (n <= 4):
 * TFLM's double rounding on four lanes. VQRDMULH is SRDHM exactly (floor((a*M + 2^30) / 2^31), M >= 0);
 * RDBPOT(x, e) for e >= 1 is (x - [x < 0] + 2^(e-1)) >> e, i.e. VRSHL by -e (which rounds ties up) after adding
 * the sign (VSHR #31), ties then away from zero as TFLM's. The left part of a positive shift is a VSHL before
 * the multiply (acc * 2^left fits int32, as TFLM requires). The store narrows to bytes through a scatter with
 * byte offsets 0, stride, 2 * stride, 3 * stride, predicated to n lanes. */
typedef struct {
    int32_t output_offset, act_min, act_max;
    int32_t stride; /* bytes between the outputs of consecutive lanes */
} frk__mve_out;

static inline void frk__mve_store4(int8_t *out, const frk__mve_out *o, int32_t n, const int32_t acc[4],
                                   int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
#if FRK_MVE
    const uint32x4_t offsets = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)o->stride);
    int32x4_t v = vldrwq_s32(acc);
    v = vqrdmulhq_n_s32(vshlq_r_s32(v, left), multiplier);
    if (right > 0) {
#if defined(FRK_TEST_BREAK_MVE_ROUNDING)
        /* test builds only: VRSHL's own rounding (negative ties toward +infinity), which the tests must catch */
        v = vrshlq_n_s32(v, -right);
#else
        v = vrshlq_n_s32(vaddq_s32(v, vshrq_n_s32(v, 31)), -right);
#endif
    }
    v = vaddq_n_s32(v, o->output_offset);
    v = vminq_s32(vmaxq_s32(v, vdupq_n_s32(o->act_min)), vdupq_n_s32(o->act_max));
    vstrbq_scatter_offset_p_s32(out, offsets, v, vctp32q((uint32_t)n));
#else
    const int32_t lo = o->act_min - o->output_offset, hi = o->act_max - o->output_offset;
    int32_t j;
    (void)left, (void)right;
    for (j = 0; j < n; ++j) {
        out[j * o->stride] = frk__output_stage(acc[j], multiplier, shift, o->output_offset, lo, hi);
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
 *   int4: rows padded to a multiple of 32; each 32 values k..k+31 of a row are 16 bytes whose byte i holds
 *         w[k+i] in its low nibble and w[k+16+i] in its high nibble; pairs of rows interleaved 16 bytes at a
 *         time. VSHL.I8 #4 of the 16 bytes is 16 * w[k..k+15] and VAND with 0xF0 is 16 * w[k+16..k+31], each
 *         exact int8 lanes: 3 instructions unpack 32 weights, and the accumulator holds 16 * sum(w*x).
 * Activations: three columns (output pixels) of k_pad raw int8 values each (no offset: it is in the bias), at
 * any addresses. frk__mve_rows2 adds to acc[0..5] the dot products of rows 0, 1 with columns 0, 1, 2 as
 * (r0 c0, r0 c1, r0 c2, r1 c0, r1 c1, r1 c2), over `groups` groups of 16 (int8) or 32 (int4) values;
 * frk__mve_rows1 does one row (acc[0..2]). On the M55 the two-row loops are inline asm: per 16 k, 2 weight
 * loads, 3 column loads, 6 VMLADAVA and the loop end, 12 instructions per 96 MACs (int8); per 32 k, 25 per 192
 * (int4). The accumulators of VMLADAVA must be even registers (constraint "Te"). */
#if FRK_MVE
#define FRK_MVE_ASM_LOOPS 1
#else
#define FRK_MVE_ASM_LOOPS 0
#endif

/* The C form: the dot product of one row's `groups` groups with one column, in the layout above. */
static inline int32_t frk__mve_dot_c(const int8_t *w, int32_t w_step, const int8_t *x, int32_t groups,
                                     int32_t wbits, int32_t acc)
{
    int32_t g, i;
    for (g = 0; g < groups; ++g, w += w_step) {
        if (wbits == 8) {
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

static FRK_ALWAYS_INLINE void frk__mve_rows2(const int8_t *w, const int8_t *const cols[3], int32_t groups,
                                             int32_t wbits, int32_t acc[6])
{
#if FRK_MVE_ASM_LOOPS
    int32_t a00 = acc[0], a01 = acc[1], a02 = acc[2], a10 = acc[3], a11 = acc[4], a12 = acc[5];
    const int8_t *x0 = cols[0], *x1 = cols[1], *x2 = cols[2];
    if (wbits == 8) {
        __asm__ volatile(
            "dls    lr, %[n]\n\t"
            "1:\n\t"
            "vldrb.8 q0, [%[w]], #16\n\t"
            "vldrb.8 q1, [%[w]], #16\n\t"
            "vldrb.8 q2, [%[x0]], #16\n\t"
            "vmladava.s8 %[a00], q0, q2\n\t"
            "vmladava.s8 %[a10], q1, q2\n\t"
            "vldrb.8 q2, [%[x1]], #16\n\t"
            "vmladava.s8 %[a01], q0, q2\n\t"
            "vmladava.s8 %[a11], q1, q2\n\t"
            "vldrb.8 q2, [%[x2]], #16\n\t"
            "vmladava.s8 %[a02], q0, q2\n\t"
            "vmladava.s8 %[a12], q1, q2\n\t"
            "le     lr, 1b\n\t"
            : [a00] "+Te"(a00), [a01] "+Te"(a01), [a02] "+Te"(a02), [a10] "+Te"(a10), [a11] "+Te"(a11),
              [a12] "+Te"(a12), [w] "+r"(w), [x0] "+r"(x0), [x1] "+r"(x1), [x2] "+r"(x2)
            : [n] "r"(groups)
            : "q0", "q1", "q2", "lr", "memory");
    } else {
        __asm__ volatile(
            "vmov.i8 q7, #0xf0\n\t"
            "dls    lr, %[n]\n\t"
            "1:\n\t"
            "vldrb.8 q0, [%[w]], #16\n\t"
            "vldrb.8 q1, [%[w]], #16\n\t"
            "vshl.i8 q2, q0, #4\n\t"
            "vand   q0, q0, q7\n\t"
            "vshl.i8 q3, q1, #4\n\t"
            "vand   q1, q1, q7\n\t"
            "vldrb.8 q4, [%[x0]], #16\n\t"
            "vmladava.s8 %[a00], q2, q4\n\t"
            "vmladava.s8 %[a10], q3, q4\n\t"
            "vldrb.8 q4, [%[x0]], #16\n\t"
            "vmladava.s8 %[a00], q0, q4\n\t"
            "vmladava.s8 %[a10], q1, q4\n\t"
            "vldrb.8 q4, [%[x1]], #16\n\t"
            "vmladava.s8 %[a01], q2, q4\n\t"
            "vmladava.s8 %[a11], q3, q4\n\t"
            "vldrb.8 q4, [%[x1]], #16\n\t"
            "vmladava.s8 %[a01], q0, q4\n\t"
            "vmladava.s8 %[a11], q1, q4\n\t"
            "vldrb.8 q4, [%[x2]], #16\n\t"
            "vmladava.s8 %[a02], q2, q4\n\t"
            "vmladava.s8 %[a12], q3, q4\n\t"
            "vldrb.8 q4, [%[x2]], #16\n\t"
            "vmladava.s8 %[a02], q0, q4\n\t"
            "vmladava.s8 %[a12], q1, q4\n\t"
            "le     lr, 1b\n\t"
            : [a00] "+Te"(a00), [a01] "+Te"(a01), [a02] "+Te"(a02), [a10] "+Te"(a10), [a11] "+Te"(a11),
              [a12] "+Te"(a12), [w] "+r"(w), [x0] "+r"(x0), [x1] "+r"(x1), [x2] "+r"(x2)
            : [n] "r"(groups)
            : "q0", "q1", "q2", "q3", "q4", "q7", "lr", "memory");
    }
    acc[0] = a00, acc[1] = a01, acc[2] = a02, acc[3] = a10, acc[4] = a11, acc[5] = a12;
#else
    int32_t j;
    for (j = 0; j < 3; ++j) {
        acc[j] = frk__mve_dot_c(w, 32, cols[j], groups, wbits, acc[j]);
        acc[3 + j] = frk__mve_dot_c(w + 16, 32, cols[j], groups, wbits, acc[3 + j]);
    }
#endif
}

/* One row (an odd last output channel, stored alone) against the three columns: acc[0..2]. */
static FRK_ALWAYS_INLINE void frk__mve_rows1(const int8_t *w, const int8_t *const cols[3], int32_t groups,
                                             int32_t wbits, int32_t acc[3])
{
#if FRK_MVE
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], g;
    const int8_t *x0 = cols[0], *x1 = cols[1], *x2 = cols[2];
    for (g = 0; g < groups; ++g, w += 16) {
        const int8x16_t wv = vldrbq_s8(w);
        if (wbits == 8) {
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
        acc[j] = frk__mve_dot_c(w, 16, cols[j], groups, wbits, acc[j]);
    }
#endif
}

#endif /* FRK_MVE_SUPPORT_H */
