/*
 * frk_depthwise_conv_mve.c - DEPTHWISE_CONV_2D for the Cortex-M55 (Helium), int8 and int4 filters, depth
 * multiplier 1, C % 8 == 0: the fast twins of frk_depthwise_conv_s8 / _s4 (the export keeps the dsp or portable
 * kernel for other layers). Twin: flexround_mcu/sim/convolve.py depthwise_conv_s8 / _s4.
 */
#include "frk_layer_support.h"
#include "frk_mve_support.h"
#include "frk_nn.h"

/*
 * Both kernels, weights one int8 value per byte, for each group of 8 channels the KH*KW taps' 8 weights
 * ([C/8, KH*KW, 8], docs/arithmetic.md 7.2); kernel_bias bias + input_offset * sum(w) (6.1); scratch C bytes (the
 * input zero point, read by padding taps). Eight channels per vector, per tap one widening load of the input
 * bytes (VLDRB.S16) and one of the weights, then
 *   int4: VMUL.I16 and VADD.I16 into int16 lanes (MVE has no vector-by-vector integer VMLA), 4 instructions per
 *         8 MACs, exact because the export checks 128 * sum|w| < 2^15 per channel (3x3 filters always pass);
 *   int8: VMULLB / VMULLT (the even and odd lanes' exact int32 products) and two VADD.I32, 6 per 8 MACs.
 * The even and odd lanes (int4: widened by VMOVLB / VMOVLT) take kernel_bias (VLD2 splits it the same way), the
 * requantization (frk__mve_requantize, per channel through VLD2 too), narrow back into one vector of eight in
 * natural order (VMOVNB / VMOVNT) and go out in one store.
 */
static FRK_ALWAYS_INLINE void frk__depthwise_mve(const frk_conv_params *params, const int32_t *multiplier,
                                                 const int32_t *shift, int32_t per_channel,
                                                 const frk_dims *input_dims, const int8_t *input,
                                                 const frk_dims *filter_dims, const int8_t *weights,
                                                 const int32_t *kernel_bias, const frk_dims *output_dims,
                                                 int8_t *output, int8_t *scratch, int32_t wbits)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, chans = input_dims->c;
    const int32_t row_reach = (filter_dims->h - 1) * params->dilation_h;
    const int32_t col_reach = (filter_dims->w - 1) * params->dilation_w;
    const int32_t k_h = filter_dims->h, k_w = filter_dims->w, taps_n = k_h * k_w;
    const int32_t out_h = output_dims->h, out_w = output_dims->w;
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
                const int32_t inside = frk__dw_inside(in_h, in_w, row_reach, col_reach, iy_origin, ix_origin);
                frk__dw_window(params, input_dims, image, scratch, k_h, k_w, iy_origin, ix_origin, tap_offset,
                               inside, taps);
                for (g = 0; g < chans; g += 8) {
                    const int8_t *w = weights + g * taps_n; /* group g / 8: taps_n * 8 bytes */
                    const int32_t *m = multiplier + (per_channel ? g : 0), *s = shift + (per_channel ? g : 0);
#if FRK_MVE
                    int32x4_t even, odd;
                    int32x4x2_t kb;
                    int32_t t;
                    if (wbits == 4) {
                        int16x8_t acc = vdupq_n_s16(0);
                        for (t = 0; t < taps_n; ++t) {
                            acc = vaddq_s16(acc, vmulq_s16(vldrbq_s16(taps[t] + g), vldrbq_s16(w + 8 * t)));
                        }
                        even = vmovlbq_s16(acc), odd = vmovltq_s16(acc);
                    } else {
                        even = vdupq_n_s32(0), odd = vdupq_n_s32(0);
                        for (t = 0; t < taps_n; ++t) {
                            const int16x8_t x = vldrbq_s16(taps[t] + g), wt = vldrbq_s16(w + 8 * t);
                            even = vaddq_s32(even, vmullbq_int_s16(x, wt));
                            odd = vaddq_s32(odd, vmulltq_int_s16(x, wt));
                        }
                    }
                    kb = vld2q_s32(kernel_bias + g); /* channels g, g+2, .. and g+1, g+3, .. */
                    even = vaddq_s32(even, kb.val[0]);
                    odd = vaddq_s32(odd, kb.val[1]);
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
                    (void)wbits; /* int4 weights are int8 values here too */
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

/* frk_depthwise_conv_s8's outputs (depth multiplier 1, C % 8 == 0), filter as above. */
void frk_depthwise_conv_s8_mve(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const int8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__depthwise_mve(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                       output_dims, output, scratch, 8);
}

/* frk_depthwise_conv_s4's outputs (depth multiplier 1, C % 8 == 0, 128 * sum|w| < 2^15), the int4 weights one per
 * byte as above. */
void frk_depthwise_conv_s4_mve(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__depthwise_mve(params, multiplier, shift, per_channel, input_dims, input, filter_dims,
                       (const int8_t *)filter, kernel_bias, output_dims, output, scratch, 4);
}
