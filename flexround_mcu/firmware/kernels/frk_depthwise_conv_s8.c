/*
 * frk_depthwise_conv_s8.c - DEPTHWISE_CONV_2D, int8 NHWC, per-channel or per-tensor requantization,
 * any depth multiplier.
 * Twin: flexround_mcu/sim/convolve.py depthwise_conv_s8; spec: docs/arithmetic.md 4.2.
 */
#include "frk_nn.h"
#include "frk_nn_support.h"

/*
 * Output channel c = ci * depth_multiplier + m (m < depth_multiplier) reads input channel ci only. For every
 * output element (n, oy, ox, c), with iy, ix as in frk_convolve_s8:
 *
 *   acc = bias[c] + sum over i < KH, j < KW of  w[0, i, j, c] * (x[n, iy, ix, ci] + input_offset)
 *   y   = clamp(requantize(acc, M, s) + output_offset, act_min, act_max)
 *
 * with (M, s) = (multiplier[c], shift[c]) if per_channel is non-zero, else (multiplier[0], shift[0]).
 * Taps outside the input are skipped (zero padding); bottom/right padding is implied by output_dims; a NULL
 * bias is 0. acc is int32 (|acc| <= |bias| + KH*KW*255*127). Filter layout [1, KH, KW, C_out] with
 * C_out = C_in * depth_multiplier = output_dims->c.
 */
void frk_depthwise_conv_s8(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                           int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                           const frk_dims *filter_dims, const int8_t *filter, const int32_t *bias,
                           const frk_dims *output_dims, int8_t *output)
{
    const int32_t batches = input_dims->n;
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t in_c = input_dims->c;
    const int32_t k_h = filter_dims->h;
    const int32_t k_w = filter_dims->w;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t out_c = output_dims->c;
    const int32_t mult = params->depth_multiplier;
    const int32_t input_offset = params->input_offset;
    const int32_t output_offset = params->output_offset;
    const int32_t lo = params->act_min - output_offset;
    const int32_t hi = params->act_max - output_offset;
    int32_t b, oy, ox, ci, m, ky, kx;

    for (b = 0; b < batches; ++b) {
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy_origin = oy * params->stride_h - params->pad_top;
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix_origin = ox * params->stride_w - params->pad_left;
                /* (ci, m) in this order visits c = ci * mult + m in increasing order: NHWC output order. */
                for (ci = 0; ci < in_c; ++ci) {
                    for (m = 0; m < mult; ++m) {
                        const int32_t oc = ci * mult + m;
                        const int32_t q = per_channel ? oc : 0; /* which (multiplier, shift) pair */
                        int32_t acc = 0;
                        for (ky = 0; ky < k_h; ++ky) {
                            const int32_t iy = iy_origin + ky * params->dilation_h;
                            if (iy < 0 || iy >= in_h) {
                                continue; /* padding row */
                            }
                            for (kx = 0; kx < k_w; ++kx) {
                                const int32_t ix = ix_origin + kx * params->dilation_w;
                                int32_t x_val;
                                int32_t w_val;
                                if (ix < 0 || ix >= in_w) {
                                    continue; /* padding column */
                                }
                                x_val = input[((b * in_h + iy) * in_w + ix) * in_c + ci];
                                w_val = filter[(ky * k_w + kx) * out_c + oc];
                                acc += w_val * (x_val + input_offset);
                            }
                        }
                        if (bias != NULL) {
                            acc += bias[oc];
                        }
                        *output++ = frk__output_stage(acc, multiplier[q], shift[q], output_offset, lo, hi);
                    }
                }
            }
        }
    }
}
