/*
 * frk_depthwise_conv_dsp.c - DEPTHWISE_CONV_2D for the Cortex-M4/M7 (SXTB16, SMLABB/SMLATT, SMMULR), int8 and
 * int4 filters, depth multiplier 1, C % 4 == 0: the fast twins of frk_depthwise_conv_s8 / _s4 (the export uses
 * the portable kernels for other layers). Twin: flexround_mcu/sim/convolve.py depthwise_conv_s8 / _s4.
 */
#include "frk_dsp_support.h"
#include "frk_nn.h"

/* One tap (int8: a weight word per tap) or two taps (int4: a nibble-split word per pair; a lone last tap uses the
 * low nibbles only, the exporter leaves the high ones 0) into the four accumulators of channels g..g+3: one word of
 * input per tap, SXTB16 / SXTB16-ROR8 into lanes (c, c+2) and (c+1, c+3), one SMLABB/SMLATT per MAC. tp walks
 * the tap pointers, w the weights. On Arm each step is inline asm (11 instructions per int8 tap, 24 per pair of
 * int4 taps, 11 registers), where GCC 12 spills the accumulators; the C forms compute the same. */
#if FRK_DSP_ASM_LOOPS
#define FRK_DW_MACS(xw, wa, wb, xt)                                                                            \
    "sxtb16 %[" #xt "], %[" #xw "]\n\t"                                                                        \
    "sxtb16 %[" #xw "], %[" #xw "], ror #8\n\t"                                                                \
    "smlabb %[a0], %[" #wa "], %[" #xt "], %[a0]\n\t"                                                          \
    "smlatt %[a2], %[" #wa "], %[" #xt "], %[a2]\n\t"                                                          \
    "smlabb %[a1], %[" #wb "], %[" #xw "], %[a1]\n\t"                                                          \
    "smlatt %[a3], %[" #wb "], %[" #xw "], %[a3]\n\t"
#define FRK_DW_OPERANDS                                                                                        \
    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [tp] "+r"(tp), [w] "+r"(w),               \
      [pt] "=&r"(pt), [wv] "=&r"(wv), [wt] "=&r"(wt), [x] "=&r"(x), [xt] "=&r"(xt)                           \
    : [g] "r"(g)                                                                                               \
    : "memory"
#define FRK_DW_TAP_S8                                                                                          \
    "ldr    %[pt], [%[tp]], #4\n\t"                                                                            \
    "ldr    %[wv], [%[w]], #4\n\t"                                                                             \
    "ldr    %[x], [%[pt], %[g]]\n\t"                                                                           \
    "sxtb16 %[wt], %[wv]\n\t"                                                                                  \
    "sxtb16 %[wv], %[wv], ror #8\n\t" FRK_DW_MACS(x, wt, wv, xt)
#define FRK_DW_PAIR_S4                                                                                         \
    "ldr    %[wv], [%[w]], #4\n\t"                                                                             \
    "ldr    %[pt], [%[tp]], #8\n\t"                                                                            \
    "lsl    %[wt], %[wv], #4\n\t"                                                                              \
    "and    %[wt], %[wt], #0xF0F0F0F0\n\t"                                                                     \
    "ldr    %[x], [%[pt], %[g]]\n\t"                                                                           \
    "sxtb16 %[pt], %[wt]\n\t"                                                                                  \
    "sxtb16 %[wt], %[wt], ror #8\n\t" FRK_DW_MACS(x, pt, wt, xt)                                              \
    "ldr    %[pt], [%[tp], #-4]\n\t"                                                                           \
    "and    %[wv], %[wv], #0xF0F0F0F0\n\t"                                                                     \
    "ldr    %[x], [%[pt], %[g]]\n\t"                                                                           \
    "sxtb16 %[wt], %[wv]\n\t"                                                                                  \
    "sxtb16 %[wv], %[wv], ror #8\n\t" FRK_DW_MACS(x, wt, wv, xt)
#define FRK_DW_LAST_S4                                                                                         \
    "ldr    %[wv], [%[w]], #4\n\t"                                                                             \
    "ldr    %[pt], [%[tp]], #4\n\t"                                                                            \
    "lsl    %[wv], %[wv], #4\n\t"                                                                              \
    "and    %[wv], %[wv], #0xF0F0F0F0\n\t"                                                                     \
    "ldr    %[x], [%[pt], %[g]]\n\t"                                                                           \
    "sxtb16 %[wt], %[wv]\n\t"                                                                                  \
    "sxtb16 %[wv], %[wv], ror #8\n\t" FRK_DW_MACS(x, wt, wv, xt)
/* One asm step on a[0..3], advancing *tpp and *wp. */
#define FRK_DW_STEP(text)                                                                                      \
    do {                                                                                                       \
        int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];                                                    \
        const int8_t *const *tp = *tpp;                                                                        \
        const uint8_t *w = *wp;                                                                                \
        const int8_t *pt;                                                                                      \
        uint32_t wv, wt, x, xt;                                                                                \
        __asm__ volatile(text FRK_DW_OPERANDS);                                                                \
        a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;                                                            \
        *tpp = tp;                                                                                             \
        *wp = w;                                                                                               \
    } while (0)
#endif

/* The C form of one tap: x the input word (channels c..c+3), w4 the four weights as int8 lanes. */
static inline void frk__dw_macs(int32_t a[4], uint32_t x, uint32_t w4)
{
    const uint32_t x02 = frk__sxtb16(x), x13 = frk__sxtb16_ror8(x);
    const uint32_t w02 = frk__sxtb16(w4), w13 = frk__sxtb16_ror8(w4);
    a[0] = frk__smlabb(w02, x02, a[0]);
    a[2] = frk__smlatt(w02, x02, a[2]);
    a[1] = frk__smlabb(w13, x13, a[1]);
    a[3] = frk__smlatt(w13, x13, a[3]);
}

static FRK_ALWAYS_INLINE void frk__dw_tap_s8(int32_t a[4], const int8_t *const **tpp, const uint8_t **wp, int32_t g)
{
#if FRK_DSP_ASM_LOOPS
    FRK_DW_STEP(FRK_DW_TAP_S8);
#else
    frk__dw_macs(a, frk__read_u32(*(*tpp)++ + g), frk__read_u32(*wp));
    *wp += 4;
#endif
}

static FRK_ALWAYS_INLINE void frk__dw_tap_s4(int32_t a[4], const int8_t *const **tpp, const uint8_t **wp, int32_t g)
{
#if FRK_DSP_ASM_LOOPS
    FRK_DW_STEP(FRK_DW_LAST_S4);
#else
    frk__dw_macs(a, frk__read_u32(*(*tpp)++ + g), frk__s4_lower16(frk__read_u32(*wp)));
    *wp += 4;
#endif
}

static FRK_ALWAYS_INLINE void frk__dw_pair_s4(int32_t a[4], const int8_t *const **tpp, const uint8_t **wp, int32_t g)
{
#if FRK_DSP_ASM_LOOPS
    FRK_DW_STEP(FRK_DW_PAIR_S4);
#else
    const uint32_t word = frk__read_u32(*wp);
    frk__dw_macs(a, frk__read_u32((*tpp)[0] + g), frk__s4_lower16(word));
    frk__dw_macs(a, frk__read_u32((*tpp)[1] + g), frk__s4_upper16(word));
    *wp += 4;
    *tpp += 2;
#endif
}

#if FRK_DSP_ASM_LOOPS
/* All nine taps of a 3x3 filter for channels g..g+3 in one asm block, so the accumulators never leave their
 * registers (int8: 99 instructions per 36 MACs; int4: 4 pairs and a lone tap, 109). */
static FRK_ALWAYS_INLINE void frk__dw_group9(const int8_t *const *tp, int32_t g, const uint8_t *w, int32_t wbits,
                                             int32_t acc[4])
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int8_t *pt;
    uint32_t wv, wt, x, xt;
    if (wbits == 8) {
        __asm__ volatile(FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8
                         FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_OPERANDS);
    } else {
        __asm__ volatile(FRK_DW_PAIR_S4 FRK_DW_PAIR_S4 FRK_DW_PAIR_S4 FRK_DW_PAIR_S4 FRK_DW_LAST_S4
                         FRK_DW_OPERANDS);
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}
#endif

/* acc[0..3] += the contributions of all taps_n taps to channels g..g+3 (int4: acc holds 16 * the sum).
 * taps_n is a constant (9) at the 3x3 call site, where the steps are straight-line code. */
static FRK_ALWAYS_INLINE void frk__dw_group(const int8_t *const *taps, int32_t g, const uint8_t *w, int32_t taps_n,
                                            int32_t wbits, int32_t acc[4])
{
    const int8_t *const *tp = taps;
    int32_t t;
    if (wbits == 8) {
        for (t = 0; t < taps_n; ++t) {
            frk__dw_tap_s8(acc, &tp, &w, g);
        }
    } else {
        for (t = 0; t + 1 < taps_n; t += 2) {
            frk__dw_pair_s4(acc, &tp, &w, g);
        }
        if (t < taps_n) {
            frk__dw_tap_s4(acc, &tp, &w, g);
        }
    }
}

/* The per-tensor epilogue of frk__output_stage_tensor for four adjacent outputs, given 2 * acc: SMMULR, the
 * rounding shift with the offset folded in, SSAT to int8, then the clamp on all four bytes at once (SSUB8 sets
 * a GE flag per byte, SEL keeps the larger / smaller): 28 instructions for 4 outputs on Arm. */
static FRK_ALWAYS_INLINE void frk__dw_store4(int8_t *out, int32_t d0, int32_t d1, int32_t d2, int32_t d3,
                                             const frk__rq_tensor *rq, uint32_t min4, uint32_t max4)
{
#if FRK_DSP_ASM_LOOPS
    uint32_t t;
    const int32_t m = rq->multiplier, e = rq->right, add = rq->add;
    __asm__ volatile(
        "smmulr %[d0], %[d0], %[m]\n\t"
        "smmulr %[d1], %[d1], %[m]\n\t"
        "smmulr %[d2], %[d2], %[m]\n\t"
        "smmulr %[d3], %[d3], %[m]\n\t"
#if defined(FRK_TEST_BREAK_DSP_ROUNDING)
        "add    %[d0], %[d0], %[add]\n\t"
        "add    %[d1], %[d1], %[add]\n\t"
        "add    %[d2], %[d2], %[add]\n\t"
        "add    %[d3], %[d3], %[add]\n\t"
#else
        "add    %[d0], %[d0], %[d0], asr #31\n\t"
        "add    %[d1], %[d1], %[d1], asr #31\n\t"
        "add    %[d2], %[d2], %[d2], asr #31\n\t"
        "add    %[d3], %[d3], %[d3], asr #31\n\t"
        "add    %[d0], %[d0], %[add]\n\t"
        "add    %[d1], %[d1], %[add]\n\t"
        "add    %[d2], %[d2], %[add]\n\t"
        "add    %[d3], %[d3], %[add]\n\t"
#endif
        "asr    %[d0], %[d0], %[e]\n\t"
        "asr    %[d1], %[d1], %[e]\n\t"
        "asr    %[d2], %[d2], %[e]\n\t"
        "asr    %[d3], %[d3], %[e]\n\t"
        "ssat   %[d0], #8, %[d0]\n\t"
        "ssat   %[d1], #8, %[d1]\n\t"
        "ssat   %[d2], #8, %[d2]\n\t"
        "ssat   %[d3], #8, %[d3]\n\t"
        "bfi    %[d0], %[d1], #8, #8\n\t"
        "bfi    %[d0], %[d2], #16, #8\n\t"
        "bfi    %[d0], %[d3], #24, #8\n\t"
        "ssub8  %[t], %[d0], %[lo]\n\t"
        "sel    %[d0], %[d0], %[lo]\n\t"
        "ssub8  %[t], %[hi], %[d0]\n\t"
        "sel    %[d0], %[d0], %[hi]\n\t"
        "str    %[d0], [%[out]]\n\t"
        : [d0] "+r"(d0), [d1] "+r"(d1), [d2] "+r"(d2), [d3] "+r"(d3), [t] "=&r"(t)
        : [m] "r"(m), [e] "r"(e), [add] "r"(add), [lo] "r"(min4), [hi] "r"(max4), [out] "r"(out)
        : "cc", "memory");
#else
    (void)min4, (void)max4;
    out[0] = frk__output_stage_tensor(frk__asr32(d0, 1), rq);
    out[1] = frk__output_stage_tensor(frk__asr32(d1, 1), rq);
    out[2] = frk__output_stage_tensor(frk__asr32(d2, 1), rq);
    out[3] = frk__output_stage_tensor(frk__asr32(d3, 1), rq);
#endif
}

#if FRK_DSP_ASM_LOOPS
/* Every group of 4 channels of one output pixel, 3x3 filter, per-tensor epilogue (frk__dw_group9 and
 * frk__dw_store4 on scalars). */
static FRK_ALWAYS_INLINE void frk__dw_channels9(const int8_t *const *taps, int32_t chans, const uint8_t *filter,
                                                const int32_t *kernel_bias, int32_t wbits, const frk__rq_tensor *rq,
                                                uint32_t min4, uint32_t max4, int8_t *output)
{
    const int32_t group_bytes = wbits == 8 ? 36 : 20;
    int32_t g;
    for (g = 0; g < chans; g += 4, filter += group_bytes, kernel_bias += 4) {
        const int8_t *const *tp = taps;
        const uint8_t *w = filter;
        const int8_t *pt;
        uint32_t wv, wt, x, xt;
        int32_t a0, a1, a2, a3;
        a0 = kernel_bias[0], a1 = kernel_bias[1], a2 = kernel_bias[2], a3 = kernel_bias[3];
        if (wbits == 8) {
            __asm__ volatile(FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8
                             FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_OPERANDS);
            frk__dw_store4(output + g, 2 * a0, 2 * a1, 2 * a2, 2 * a3, rq, min4, max4);
        } else { /* the accumulators hold 16 * (bias + sum): >> 3 gives twice the sum exactly */
            __asm__ volatile(FRK_DW_PAIR_S4 FRK_DW_PAIR_S4 FRK_DW_PAIR_S4 FRK_DW_PAIR_S4 FRK_DW_LAST_S4
                             FRK_DW_OPERANDS);
            frk__dw_store4(output + g, frk__asr32(a0, 3), frk__asr32(a1, 3), frk__asr32(a2, 3), frk__asr32(a3, 3), rq,
                           min4, max4);
        }
    }
}
#endif

/*
 * Per output pixel, the KH*KW tap pointers are set once: a tap inside the input points at its C channels, a
 * padding tap at scratch, C bytes of the input zero point (with the offset in the bias it adds exactly 0). Then
 * channels go four at a time through frk__dw_group and the requantization.
 */
static FRK_ALWAYS_INLINE void frk__depthwise_dsp(const frk_conv_params *params, const int32_t *multiplier,
                                                 const int32_t *shift, int32_t per_channel,
                                                 const frk_dims *input_dims, const int8_t *input,
                                                 const frk_dims *filter_dims, const void *filter,
                                                 const int32_t *kernel_bias, const frk_dims *output_dims,
                                                 int8_t *output, int8_t *scratch, int32_t wbits)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, chans = input_dims->c;
    const int32_t k_h = filter_dims->h, k_w = filter_dims->w;
    const int32_t taps_n = k_h * k_w;
    const int32_t out_h = output_dims->h, out_w = output_dims->w;
    const int32_t output_offset = params->output_offset;
    const int32_t lo = params->act_min - output_offset;
    const int32_t hi = params->act_max - output_offset;
    const frk__rq rq_tensor = frk__rq_for(multiplier[0], shift[0]);
    frk__rq_tensor fast;
    const int32_t fast_epilogue = frk__rq_tensor_for(per_channel, multiplier[0], shift[0], output_offset,
                                                     params->act_min, params->act_max, &fast);
    const uint32_t min4 = frk__splat_s8(params->act_min), max4 = frk__splat_s8(params->act_max);
    /* filter bytes per group of 4 channels: a word per tap (int8), a word per pair of taps (int4) */
    const int32_t group_bytes = wbits == 8 ? 4 * taps_n : 4 * ((taps_n + 1) / 2);
    const int8_t *taps[FRK_DEPTHWISE_DSP_MAX_TAPS];
    int32_t b, oy, ox, ky, kx, g, t, j;

    const int32_t row_reach = (k_h - 1) * params->dilation_h, col_reach = (k_w - 1) * params->dilation_w;
    int32_t tap_offset[FRK_DEPTHWISE_DSP_MAX_TAPS];

    for (ky = 0, t = 0; ky < k_h; ++ky) {
        for (kx = 0; kx < k_w; ++kx) {
            tap_offset[t++] = (ky * params->dilation_h * in_w + kx * params->dilation_w) * chans;
        }
    }
    frk__fill_s8(scratch, frk__splat_s8(-params->input_offset), chans);
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + b * in_h * in_w * chans;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy_origin = oy * params->stride_h - params->pad_top;
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix_origin = ox * params->stride_w - params->pad_left;
                if (iy_origin >= 0 && iy_origin + row_reach < in_h && ix_origin >= 0 && ix_origin + col_reach < in_w) {
                    /* the whole window inside: the taps are fixed offsets from its first one */
                    const int8_t *first = image + (iy_origin * in_w + ix_origin) * chans;
                    for (t = 0; t < taps_n; ++t) {
                        taps[t] = first + tap_offset[t];
                    }
                } else {
                    t = 0;
                    for (ky = 0; ky < k_h; ++ky) {
                        /* unsigned compares: one test for 0 <= i < n */
                        const int32_t iy = iy_origin + ky * params->dilation_h;
                        if ((uint32_t)iy >= (uint32_t)in_h) {
                            for (kx = 0; kx < k_w; ++kx) {
                                taps[t++] = scratch;
                            }
                            continue;
                        }
                        for (kx = 0; kx < k_w; ++kx) {
                            const int32_t ix = ix_origin + kx * params->dilation_w;
                            taps[t++] = (uint32_t)ix < (uint32_t)in_w ? image + (iy * in_w + ix) * chans : scratch;
                        }
                    }
                }
#if FRK_DSP_ASM_LOOPS
                if (taps_n == 9 && fast_epilogue) {
                    /* the 3x3 per-tensor case: taps and epilogue in registers, nothing through memory */
                    frk__dw_channels9(taps, chans, (const uint8_t *)filter, kernel_bias, wbits, &fast, min4, max4,
                                      output);
                    output += chans;
                    continue;
                }
#endif
                for (g = 0; g < chans; g += 4) {
                    const uint8_t *w = (const uint8_t *)filter + (g / 4) * group_bytes;
                    int32_t acc[4];
                    acc[0] = kernel_bias[g], acc[1] = kernel_bias[g + 1]; /* int4: 16 * the bias (6.2) */
                    acc[2] = kernel_bias[g + 2], acc[3] = kernel_bias[g + 3];
                    if (taps_n == 9) {
#if FRK_DSP_ASM_LOOPS
                        frk__dw_group9(taps, g, w, wbits, acc);
#else
                        frk__dw_group(taps, g, w, 9, wbits, acc);
#endif
                    } else {
                        frk__dw_group(taps, g, w, taps_n, wbits, acc);
                    }
                    if (fast_epilogue) {
                        /* 2 * acc (int4: 16 * sum >> 3 is 2 * sum exactly, plus 2 * bias); |acc| < 2^30 */
                        if (wbits == 4) {
                            frk__dw_store4(output + g, frk__asr32(acc[0], 3), frk__asr32(acc[1], 3),
                                           frk__asr32(acc[2], 3), frk__asr32(acc[3], 3), &fast, min4, max4);
                        } else {
                            frk__dw_store4(output + g, 2 * acc[0], 2 * acc[1], 2 * acc[2], 2 * acc[3], &fast, min4,
                                           max4);
                        }
                        continue;
                    }
                    if (wbits == 4) {
                        /* 16 * (bias + sum(w*x)): exact in int32 (checked at export), shifted back exactly */
                        acc[0] = frk__asr32(acc[0], 4), acc[1] = frk__asr32(acc[1], 4);
                        acc[2] = frk__asr32(acc[2], 4), acc[3] = frk__asr32(acc[3], 4);
                    }
                    if (per_channel) {
                        for (j = 0; j < 4; ++j) {
                            const frk__rq rq = frk__rq_for(multiplier[g + j], shift[g + j]);
                            output[g + j] = frk__output_stage_dsp(acc[j], &rq, output_offset, lo, hi);
                        }
                    } else {
                        output[g] = frk__output_stage_dsp(acc[0], &rq_tensor, output_offset, lo, hi);
                        output[g + 1] = frk__output_stage_dsp(acc[1], &rq_tensor, output_offset, lo, hi);
                        output[g + 2] = frk__output_stage_dsp(acc[2], &rq_tensor, output_offset, lo, hi);
                        output[g + 3] = frk__output_stage_dsp(acc[3], &rq_tensor, output_offset, lo, hi);
                    }
                }
                output += chans;
            }
        }
    }
}

/*
 * frk_depthwise_conv_s8_dsp: frk_depthwise_conv_s8's outputs for depth multiplier 1 and C % 4 == 0, with
 *   filter       int8, for each group of 4 channels the KH*KW taps' 4 weights: [C/4, KH*KW, 4] (6.2);
 *   kernel_bias  bias[c] + input_offset * sum over taps of w[c] (6.1), never NULL;
 *   scratch      C bytes; KH*KW at most FRK_DEPTHWISE_DSP_MAX_TAPS.
 */
void frk_depthwise_conv_s8_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const int8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__depthwise_dsp(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                       output_dims, output, scratch, 8);
}

/*
 * frk_depthwise_conv_s4_dsp: frk_depthwise_conv_s4's outputs under the same conditions, with the filter as
 * words, for each group of 4 channels one per pair of taps (t, t+1): byte i holds w[t][c+i] in its low nibble
 * and w[t+1][c+i] in its high nibble (0 past the last tap): [C/4, ceil(KH*KW/2), 4] bytes (6.2), and
 * kernel_bias 16 * (bias + input_offset * sum(w)): the accumulators start there and hold 16 times the sum.
 */
void frk_depthwise_conv_s4_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__depthwise_dsp(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                       output_dims, output, scratch, 4);
}
