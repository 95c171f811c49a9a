/*
 * frk_depthwise_conv_mve.c - DEPTHWISE_CONV_2D for the Cortex-M55 (Helium), int4 filters, depth multiplier 1,
 * C % 8 == 0: the fast twin of frk_depthwise_conv_s4 (the export keeps the dsp or portable kernel for other
 * layers). Twin: flexround_mcu/sim/convolve.py depthwise_conv_s4.
 */
#include "frk_depthwise_support.h"
#include "frk_mve_support.h"
#include "frk_nn.h"

/*
 * frk_depthwise_conv_s4_mve: frk_depthwise_conv_s4's outputs, with
 *   filter       the int4 weights one per byte (int8 values), for each group of 8 channels the KH*KW taps' 8
 *                weights: [C/8, KH*KW, 8] (docs/arithmetic.md 7.2);
 *   kernel_bias  bias[c] + input_offset * sum over taps of w[c] (6.1), never NULL;
 *   scratch      C bytes (the input zero point, read by padding taps).
 * Eight channels per vector: per tap one widening load of the input bytes (VLDRB.S16), one of the weights, a
 * VMUL.I16 and a VADD.I16 (MVE has no vector-by-vector integer VMLA), 4 instructions per 8 MACs. int16 lanes
 * are exact because the export checks 128 * sum|w| < 2^15 per channel (int4: 3x3 filters always pass); then the even and odd lanes widen to int32 (VMOVLB / VMOVLT), take
 * kernel_bias (VLD2 splits it the same way), the requantization (frk__mve_requantize) on both halves, narrow back
 * into one vector of eight (VMOVNB / VMOVNT) and go out in one store.
 */
void frk_depthwise_conv_s4_mve(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, chans = input_dims->c;
    const int32_t k_h = filter_dims->h, k_w = filter_dims->w, taps_n = k_h * k_w;
    const int32_t out_h = output_dims->h, out_w = output_dims->w;
    const int32_t row_reach = (k_h - 1) * params->dilation_h, col_reach = (k_w - 1) * params->dilation_w;
    const int8_t *weights = (const int8_t *)filter;
    const int8_t *taps[FRK_DEPTHWISE_DSP_MAX_TAPS];
    int32_t tap_offset[FRK_DEPTHWISE_DSP_MAX_TAPS];
    frk__mve_rq rq;
    int32_t b, oy, ox, g;

    frk__mve_rq_prepare(&rq, params->output_offset, params->act_min, params->act_max);
    frk__dw_tap_offsets(params, in_w, chans, k_h, k_w, tap_offset);
    frk__mve_fill(scratch, (int8_t)(-params->input_offset), chans);
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + b * in_h * in_w * chans;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy_origin = oy * params->stride_h - params->pad_top;
            for (ox = 0; ox < out_w; ++ox, output += chans) {
                const int32_t ix_origin = ox * params->stride_w - params->pad_left;
                const int32_t inside = iy_origin >= 0 && iy_origin + row_reach < in_h && ix_origin >= 0 &&
                                       ix_origin + col_reach < in_w;
                frk__dw_window(params, input_dims, image, scratch, k_h, k_w, iy_origin, ix_origin, tap_offset,
                               inside, taps);
                for (g = 0; g < chans; g += 8) {
                    const int8_t *w = weights + g * taps_n; /* group g / 8: taps_n * 8 bytes */
                    const int32_t *m = multiplier + (per_channel ? g : 0), *s = shift + (per_channel ? g : 0);
#if FRK_MVE
                    int16x8_t acc = vdupq_n_s16(0);
                    int32x4_t even, odd;
                    int32x4x2_t kb;
                    int32_t t;
                    if (taps_n == 9) { /* a constant trip count: unrolled, the weight offsets immediates */
                        for (t = 0; t < 9; ++t) {
                            acc = vaddq_s16(acc, vmulq_s16(vldrbq_s16(taps[t] + g), vldrbq_s16(w + 8 * t)));
                        }
                    } else {
                        for (t = 0; t < taps_n; ++t) {
                            acc = vaddq_s16(acc, vmulq_s16(vldrbq_s16(taps[t] + g), vldrbq_s16(w + 8 * t)));
                        }
                    }
                    kb = vld2q_s32(kernel_bias + g); /* channels g, g+2, .. and g+1, g+3, .. */
                    even = vaddq_s32(vmovlbq_s16(acc), kb.val[0]);
                    odd = vaddq_s32(vmovltq_s16(acc), kb.val[1]);
                    if (per_channel) {
                        const int32x4x2_t mm = vld2q_s32(m), ss = vld2q_s32(s);
                        even = frk__mve_requantize_lanes(even, mm.val[0], ss.val[0], &rq);
                        odd = frk__mve_requantize_lanes(odd, mm.val[1], ss.val[1], &rq);
                    } else {
                        even = frk__mve_requantize(even, m[0], s[0], &rq);
                        odd = frk__mve_requantize(odd, m[0], s[0], &rq);
                    }
                    vstrbq_s16(output + g, vmovntq_s32(vmovnbq_s32(vdupq_n_s16(0), even), odd));
#else
                    int32_t j, t;
                    for (j = 0; j < 8; ++j) {
                        int32_t acc = kernel_bias[g + j];
                        for (t = 0; t < taps_n; ++t) {
                            acc += taps[t][g + j] * w[8 * t + j];
                        }
                        output[g + j] = frk__output_stage(acc, m[per_channel ? j : 0], s[per_channel ? j : 0],
                                                          rq.output_offset, rq.lo, rq.hi);
                    }
#endif
                }
            }
        }
    }
}
