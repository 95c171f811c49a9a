/*
 * frk_depthwise_conv_dsp.c - DEPTHWISE_CONV_2D for the Cortex-M4/M7 (SXTB16, SMLABB/SMLATT, SMMULR), int8 and
 * int4 filters, depth multiplier 1, C % 4 == 0: the fast twins of frk_depthwise_conv_s8 / _s4 (the export uses
 * the portable kernels for other layers). Twin: flexround_mcu/sim/convolve.py depthwise_conv_s8 / _s4.
 */
#include "frk_dsp_support.h"
#include "frk_nn.h"

/* acc[0..3] += the taps' contributions to channels g..g+3: one word of input per tap and one word of weights
 * (int8) or half a word (int4: two taps per word, 16 * w, so acc holds 16 * the sum), SXTB16 / SXTB16-ROR8 into
 * lanes (c, c+2) and (c+1, c+3), one SMLABB/SMLATT per MAC. taps_n is a constant (9) at the 3x3 call site, where
 * the loop unrolls. */
static FRK_ALWAYS_INLINE void frk__dw_group(const int8_t *const *taps, int32_t g, const uint8_t *w, int32_t taps_n,
                                            int32_t wbits, int32_t acc[4])
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t t;
    if (wbits == 8) {
        for (t = 0; t < taps_n; ++t) {
            const uint32_t x = frk__read_u32(taps[t] + g);
            const uint32_t wt = frk__read_u32(w + 4 * t);
            const uint32_t x02 = frk__sxtb16(x), x13 = frk__sxtb16_ror8(x);
            const uint32_t w02 = frk__sxtb16(wt), w13 = frk__sxtb16_ror8(wt);
            a0 = frk__smlabb(w02, x02, a0);
            a2 = frk__smlatt(w02, x02, a2);
            a1 = frk__smlabb(w13, x13, a1);
            a3 = frk__smlatt(w13, x13, a3);
        }
    } else {
        for (t = 0; t < taps_n; t += 2) {
            const uint32_t word = frk__read_u32(w + 2 * t); /* taps t (low nibbles), t+1 (high nibbles) */
            const uint32_t wl = frk__s4_lower16(word);
            const uint32_t x = frk__read_u32(taps[t] + g);
            const uint32_t x02 = frk__sxtb16(x), x13 = frk__sxtb16_ror8(x);
            const uint32_t w02 = frk__sxtb16(wl), w13 = frk__sxtb16_ror8(wl);
            a0 = frk__smlabb(w02, x02, a0);
            a2 = frk__smlatt(w02, x02, a2);
            a1 = frk__smlabb(w13, x13, a1);
            a3 = frk__smlatt(w13, x13, a3);
            if (t + 1 < taps_n) {
                const uint32_t wu = frk__s4_upper16(word);
                const uint32_t y = frk__read_u32(taps[t + 1] + g);
                const uint32_t y02 = frk__sxtb16(y), y13 = frk__sxtb16_ror8(y);
                const uint32_t v02 = frk__sxtb16(wu), v13 = frk__sxtb16_ror8(wu);
                a0 = frk__smlabb(v02, y02, a0);
                a2 = frk__smlatt(v02, y02, a2);
                a1 = frk__smlabb(v13, y13, a1);
                a3 = frk__smlatt(v13, y13, a3);
            }
        }
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

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
    /* filter bytes per group of 4 channels: a word per tap (int8), a word per pair of taps (int4) */
    const int32_t group_bytes = wbits == 8 ? 4 * taps_n : 4 * ((taps_n + 1) / 2);
    const int8_t *taps[FRK_DEPTHWISE_DSP_MAX_TAPS];
    int32_t b, oy, ox, ky, kx, g, t, j;

    frk__fill_s8(scratch, frk__splat_s8(-params->input_offset), chans);
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + b * in_h * in_w * chans;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy_origin = oy * params->stride_h - params->pad_top;
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix_origin = ox * params->stride_w - params->pad_left;
                t = 0;
                for (ky = 0; ky < k_h; ++ky) {
                    const int32_t iy = iy_origin + ky * params->dilation_h;
                    for (kx = 0; kx < k_w; ++kx) {
                        const int32_t ix = ix_origin + kx * params->dilation_w;
                        const int32_t inside = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w;
                        taps[t++] = inside ? image + (iy * in_w + ix) * chans : scratch;
                    }
                }
                for (g = 0; g < chans; g += 4) {
                    const uint8_t *w = (const uint8_t *)filter + (g / 4) * group_bytes;
                    int32_t acc[4] = {0, 0, 0, 0};
                    if (wbits == 8) {
                        acc[0] = kernel_bias[g], acc[1] = kernel_bias[g + 1];
                        acc[2] = kernel_bias[g + 2], acc[3] = kernel_bias[g + 3];
                    }
                    if (taps_n == 9) {
                        frk__dw_group(taps, g, w, 9, wbits, acc);
                    } else {
                        frk__dw_group(taps, g, w, taps_n, wbits, acc);
                    }
                    if (wbits == 4) {
                        /* 16 * sum(w*x): exact in int32 (checked at export), shifted back before the bias. */
                        for (j = 0; j < 4; ++j) {
                            acc[j] = frk__asr32(acc[j], 4) + kernel_bias[g + j];
                        }
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
 * and w[t+1][c+i] in its high nibble (0 past the last tap): [C/4, ceil(KH*KW/2), 4] bytes (6.2).
 */
void frk_depthwise_conv_s4_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__depthwise_dsp(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                       output_dims, output, scratch, 4);
}
