/*
 * frk_pooling_dsp.c - AVERAGE_POOL_2D and MAX_POOL_2D for the Cortex-M4/M7 (SXTAB16, SSUB8/SEL): the fast twins of
 * frk_avgpool_s8 / frk_max_pool_s8, same parameters, same outputs. Twin: flexround_mcu/sim/pooling.py;
 * spec: docs/arithmetic.md 4.5, 4.6 and 6.5.
 */
#include "frk_dsp_support.h"
#include "frk_nn.h"

/*
 * frk_avgpool_s8's outputs. Channels go four at a time: per tap one word of input and two SXTAB16 into halfword
 * sums of channels (c, c+2) and (c+1, c+3), exact while a window has at most 255 taps (|sum| <= 255 * 128 <
 * 2^15); then the same rounded division as the portable kernel (SDIV: 2-12 cycles on the M4, 3-20 on the M7; one
 * per output). Other shapes (C % 4 != 0, larger windows) run frk_avgpool_s8.
 */
void frk_avgpool_s8_dsp(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                        int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, chans = input_dims->c;
    int32_t b, oy, ox, c, ky, kx, j;

    if (chans % 4 != 0 || filter_h * filter_w > 255) {
        frk_avgpool_s8(params, input_dims, input, filter_h, filter_w, output_dims, output);
        return;
    }
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + b * in_h * in_w * chans;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end;
            frk__valid_range(iy0, filter_h, in_h, &ky_start, &ky_end);
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int32_t ix0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end, count;
                frk__valid_range(ix0, filter_w, in_w, &kx_start, &kx_end);
                count = frk__window_taps(ky_start, ky_end, kx_start, kx_end);
                for (c = 0; c < chans; c += 4) {
                    uint32_t s02 = 0, s13 = 0;
                    int32_t sums[4];
                    for (ky = ky_start; ky < ky_end; ++ky) {
                        const int8_t *p = image + ((iy0 + ky) * in_w + ix0 + kx_start) * chans + c;
                        for (kx = kx_start; kx < kx_end; ++kx, p += chans) {
                            const uint32_t x = frk__read_u32(p);
                            s02 = frk__sxtab16(s02, x);
                            s13 = frk__sxtab16_ror8(s13, x);
                        }
                    }
                    sums[0] = frk__shalf(s02, 0), sums[1] = frk__shalf(s13, 0);
                    sums[2] = frk__shalf(s02, 1), sums[3] = frk__shalf(s13, 1);
                    for (j = 0; j < 4; ++j) {
                        const int32_t acc = sums[j];
                        int32_t y = count == 0 ? 0
                                    : acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                        y = y < params->act_min ? params->act_min : y;
                        output[c + j] = (int8_t)(y > params->act_max ? params->act_max : y);
                    }
                }
                output += chans;
            }
        }
    }
}

/*
 * frk_max_pool_s8's outputs. Channels go four at a time: per tap one word of input and SSUB8 + SEL (the larger
 * of each int8 lane), starting from -128 in every lane; the clamp to [act_min, act_max] the same way, then one
 * word store. C % 4 != 0 runs frk_max_pool_s8.
 */
void frk_max_pool_s8_dsp(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                         int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, chans = input_dims->c;
    const uint32_t lo4 = frk__splat_s8(params->act_min), hi4 = frk__splat_s8(params->act_max);
    int32_t b, oy, ox, c, ky, kx;

    if (chans % 4 != 0) {
        frk_max_pool_s8(params, input_dims, input, filter_h, filter_w, output_dims, output);
        return;
    }
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + b * in_h * in_w * chans;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end;
            frk__valid_range(iy0, filter_h, in_h, &ky_start, &ky_end);
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int32_t ix0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end;
                frk__valid_range(ix0, filter_w, in_w, &kx_start, &kx_end);
                for (c = 0; c < chans; c += 4) {
                    uint32_t m = 0x80808080u; /* -128 in every lane */
                    for (ky = ky_start; ky < ky_end; ++ky) {
                        const int8_t *p = image + ((iy0 + ky) * in_w + ix0 + kx_start) * chans + c;
                        for (kx = kx_start; kx < kx_end; ++kx, p += chans) {
                            m = frk__max_s8x4(frk__read_u32(p), m);
                        }
                    }
                    frk__write_u32(output + c, frk__min_s8x4(frk__max_s8x4(m, lo4), hi4));
                }
                output += chans;
            }
        }
    }
}
