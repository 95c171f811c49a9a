/*
 * frk_pooling_s8.c - AVERAGE_POOL_2D and MAX_POOL_2D, int8 NHWC. Input and output share scale and zero
 * point, so neither kernel rescales. Twin: flexround_mcu/sim/pooling.py; spec: docs/arithmetic.md 4.5, 4.6.
 */
#include "frk_nn.h"
#include "frk_nn_support.h"

/*
 * frk_avgpool_s8 - for every output (n, oy, ox, c), over the set V of window taps inside the input
 * (padding excluded) with cnt = |V| counted per output position:
 *
 *   acc = sum over V of x                      (raw int8 values: the zero point is not subtracted)
 *   y   = acc > 0 ? (acc + cnt/2) / cnt : (acc - cnt/2) / cnt      (C division, truncating)
 *   y   = clamp(y, act_min, act_max)
 *
 * i.e. the mean rounded to nearest with ties away from zero. The sum is over raw values because rounding
 * ties away from zero does not commute with shifting by the zero point. A window entirely in padding
 * (cnt = 0; TFLM rejects such a model, the caller must not pass one) gives clamp(0, act_min, act_max),
 * as the numpy twin does, instead of dividing by zero. No dilation.
 */
void frk_avgpool_s8(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                    int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output)
{
    const int32_t batches = input_dims->n;
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t channels = input_dims->c;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    int32_t b, oy, ox, c, ky, kx;

    for (b = 0; b < batches; ++b) {
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end;
            frk__valid_range(iy0, filter_h, in_h, &ky_start, &ky_end);
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end, count;
                frk__valid_range(ix0, filter_w, in_w, &kx_start, &kx_end);
                count = frk__window_taps(ky_start, ky_end, kx_start, kx_end);
                for (c = 0; c < channels; ++c) {
                    int32_t acc = 0;
                    int32_t y;
                    for (ky = ky_start; ky < ky_end; ++ky) {
                        /* Channel c of input row iy0 + ky; indexed from column 0, as ix0 may be negative. */
                        const int8_t *row = input + (b * in_h + iy0 + ky) * in_w * channels + c;
                        for (kx = kx_start; kx < kx_end; ++kx) {
                            acc += row[(ix0 + kx) * channels];
                        }
                    }
                    if (count == 0) {
                        y = 0; /* no valid tap (outside the contract): the twin's value, no division by 0 */
                    } else {
                        y = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    y = y < params->act_min ? params->act_min : y;
                    y = y > params->act_max ? params->act_max : y;
                    *output++ = (int8_t)y;
                }
            }
        }
    }
}

/*
 * frk_max_pool_s8 - for every output (n, oy, ox, c):
 *
 *   y = clamp(max(-128, max over V of x), act_min, act_max)
 *
 * over the window taps V inside the input; padding never takes part. The running maximum starts at -128
 * (int8 lowest, as TFLM), so a window entirely in the padding gives clamp(-128) = act_min. No dilation.
 */
void frk_max_pool_s8(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                     int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output)
{
    const int32_t batches = input_dims->n;
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t channels = input_dims->c;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    int32_t b, oy, ox, c, ky, kx;

    for (b = 0; b < batches; ++b) {
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end;
            frk__valid_range(iy0, filter_h, in_h, &ky_start, &ky_end);
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end;
                frk__valid_range(ix0, filter_w, in_w, &kx_start, &kx_end);
                for (c = 0; c < channels; ++c) {
                    int32_t max = -128;
                    for (ky = ky_start; ky < ky_end; ++ky) {
                        /* Channel c of input row iy0 + ky; indexed from column 0, as ix0 may be negative. */
                        const int8_t *row = input + (b * in_h + iy0 + ky) * in_w * channels + c;
                        for (kx = kx_start; kx < kx_end; ++kx) {
                            const int32_t v = row[(ix0 + kx) * channels];
                            max = v > max ? v : max;
                        }
                    }
                    max = max < params->act_min ? params->act_min : max;
                    max = max > params->act_max ? params->act_max : max;
                    *output++ = (int8_t)max;
                }
            }
        }
    }
}
