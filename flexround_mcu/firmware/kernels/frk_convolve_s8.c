/*
 * frk_convolve_s8.c - CONV_2D, int8 NHWC activations, symmetric int8 filter, per-channel or per-tensor
 * requantization.
 * Twin: flexround_mcu/sim/convolve.py convolve_s8; spec: docs/arithmetic.md 4.1.
 */
#include "frk_nn.h"
#include "frk_nn_support.h"

/*
 * For every output element (n, oy, ox, c), with iy = oy*stride_h - pad_top + i*dilation_h and
 * ix = ox*stride_w - pad_left + j*dilation_w:
 *
 *   acc = bias[c] + sum over i < KH, j < KW, k < C_in of  w[c, i, j, k] * (x[n, iy, ix, k] + input_offset)
 *   y   = clamp(requantize(acc, M, s) + output_offset, act_min, act_max)
 *
 * with (M, s) = (multiplier[c], shift[c]) if per_channel is non-zero, else (multiplier[0], shift[0]) for every
 * channel (a per-tensor filter then needs a table of one pair, not C_out copies of it).
 * Taps whose (iy, ix) falls outside the input are skipped: in real terms padding is an exact zero. Only the
 * top/left padding is a parameter; the bottom/right padding is implied by output_dims. A NULL bias is 0.
 * A filter row with no tap in the padding (and no horizontal dilation) is summed as one run of KW*C_in values.
 *
 * acc is int32 like TFLM's; it is exact while |bias| + KH*KW*C_in*255*127 < 2^31 (K up to ~66,000), which
 * the caller guarantees. Filter layout [C_out, KH, KW, C_in] (filter_dims n, h, w, c); filter_dims->c must
 * equal input_dims->c (no grouped convolution). params->depth_multiplier is not used.
 */
void frk_convolve_s8(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
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
    const int32_t input_offset = params->input_offset;
    const int32_t output_offset = params->output_offset;
    /* The clamp bounds with the output offset taken out (see frk__output_stage). */
    const int32_t lo = params->act_min - output_offset;
    const int32_t hi = params->act_max - output_offset;
    const int32_t filter_size = k_h * k_w * in_c; /* elements of one output channel's filter */
    const int32_t whole_rows = params->dilation_w == 1; /* a filter row then covers contiguous input */
    int32_t b, oy, ox, oc, ky, kx, ic;

    for (b = 0; b < batches; ++b) {
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy_origin = oy * params->stride_h - params->pad_top;
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix_origin = ox * params->stride_w - params->pad_left;
                for (oc = 0; oc < out_c; ++oc) {
                    const int8_t *w_c = filter + oc * filter_size;
                    const int32_t q = per_channel ? oc : 0; /* which (multiplier, shift) pair */
                    int32_t acc = 0;
                    for (ky = 0; ky < k_h; ++ky) {
                        const int32_t iy = iy_origin + ky * params->dilation_h;
                        if (iy < 0 || iy >= in_h) {
                            continue; /* padding row: contributes nothing */
                        }
                        if (whole_rows && ix_origin >= 0 && ix_origin + k_w <= in_w) {
                            /* No padding column in this filter row: its KW taps are KW*C_in contiguous input
                             * values against KW*C_in contiguous weights, one loop (fewer loop starts). */
                            const int32_t row_len = k_w * in_c;
                            const int8_t *x_p = input + ((b * in_h + iy) * in_w + ix_origin) * in_c;
                            const int8_t *w_p = w_c + ky * row_len;
                            for (ic = 0; ic < row_len; ++ic) {
                                acc += (int32_t)w_p[ic] * ((int32_t)x_p[ic] + input_offset);
                            }
                            continue;
                        }
                        for (kx = 0; kx < k_w; ++kx) {
                            const int32_t ix = ix_origin + kx * params->dilation_w;
                            const int8_t *x_p;
                            const int8_t *w_p;
                            if (ix < 0 || ix >= in_w) {
                                continue; /* padding column */
                            }
                            /* One tap: C_in contiguous input channels against C_in contiguous weights. */
                            x_p = input + ((b * in_h + iy) * in_w + ix) * in_c;
                            w_p = w_c + (ky * k_w + kx) * in_c;
                            for (ic = 0; ic < in_c; ++ic) {
                                acc += (int32_t)w_p[ic] * ((int32_t)x_p[ic] + input_offset);
                            }
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
