/*
 * frk_pooling_mve.c - AVERAGE_POOL_2D and MAX_POOL_2D for the Cortex-M55 (Helium): the fast twins of
 * frk_avgpool_s8 / frk_max_pool_s8, same parameters, same outputs. Twin: flexround_mcu/sim/pooling.py;
 * spec: docs/arithmetic.md 4.5, 4.6 and 7.4.
 */
#include "frk_mve_support.h"
#include "frk_nn.h"

/*
 * frk_avgpool_s8's outputs. Eight channels per vector (the last ones predicated): per tap one widening load
 * (VLDRB.S16) and a VADD into int16 sums, exact while a window has at most 255 taps (|sum| <= 255 * 128 < 2^15).
 * The rounded division (TFLM: (sum +- count / 2) / count, truncating) without a divide: for n = |sum| + count / 2
 * < 2^16 and count <= 255, floor(n / count) = (n * ceil(2^32 / count)) >> 32 exactly (the error n / 2^32 stays
 * below 1 / count), one VMULH.U32; the sign goes back on after. Larger windows run frk_avgpool_s8.
 */
void frk_avgpool_s8_mve(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                        int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output)
{
#if FRK_MVE
    const int32_t in_h = input_dims->h, in_w = input_dims->w, chans = input_dims->c;
    const int32x4_t lo = vdupq_n_s32(params->act_min), hi = vdupq_n_s32(params->act_max);
    int32_t b, oy, ox, c, ky, kx;

    if (filter_h * filter_w > 255) {
        frk_avgpool_s8(params, input_dims, input, filter_h, filter_w, output_dims, output);
        return;
    }
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + b * in_h * in_w * chans;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end;
            frk__valid_range(iy0, filter_h, in_h, &ky_start, &ky_end);
            for (ox = 0; ox < output_dims->w; ++ox, output += chans) {
                const int32_t ix0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end, count;
                uint32_t reciprocal;
                frk__valid_range(ix0, filter_w, in_w, &kx_start, &kx_end);
                count = frk__window_taps(ky_start, ky_end, kx_start, kx_end);
                /* ceil(2^32 / count); count 1 would need 2^32: its quotient is n itself, so take 2^32 - 1 and
                 * add the one lost n / 2^32 < 1 back through the rounding below (n < 2^16: exact) */
                reciprocal = count > 1 ? (uint32_t)((0xFFFFFFFFu / (uint32_t)count) + 1u) : 0xFFFFFFFFu;
                for (c = 0; c < chans; c += 8) {
                    const mve_pred16_t p = vctp16q((uint32_t)(chans - c));
                    int16x8_t sum = vdupq_n_s16(0);
                    int32x4_t halves[2];
                    int32_t j;
                    for (ky = ky_start; ky < ky_end; ++ky) {
                        const int8_t *q = image + ((iy0 + ky) * in_w + ix0 + kx_start) * chans + c;
                        for (kx = kx_start; kx < kx_end; ++kx, q += chans) {
                            sum = vaddq_s16(sum, vldrbq_z_s16(q, p));
                        }
                    }
                    halves[0] = vmovlbq_s16(sum), halves[1] = vmovltq_s16(sum); /* channels c+0,2,.. / c+1,3,.. */
                    for (j = 0; j < 2; ++j) {
                        const int32x4_t s = halves[j];
                        const uint32x4_t n = vreinterpretq_u32_s32(vaddq_n_s32(vabsq_s32(s), count / 2));
                        int32x4_t y = vreinterpretq_s32_u32(vmulhq_u32(n, vdupq_n_u32(reciprocal)));
                        if (count == 1) {
                            y = vreinterpretq_s32_u32(n); /* the quotient by 1 */
                        }
                        if (count == 0) {
                            y = vdupq_n_s32(0);
                        }
                        y = vpselq_s32(vnegq_s32(y), y, vcmpltq_n_s32(s, 0));
                        halves[j] = vminq_s32(vmaxq_s32(y, lo), hi);
                    }
                    vstrbq_p_s16(output + c, vmovntq_s32(vmovnbq_s32(vdupq_n_s16(0), halves[0]), halves[1]), p);
                }
            }
        }
    }
#else
    frk_avgpool_s8(params, input_dims, input, filter_h, filter_w, output_dims, output);
#endif
}

/*
 * frk_max_pool_s8's outputs. Sixteen channels per vector (the last ones predicated): per tap one load and a
 * VMAX.S8, starting from -128; the clamp to [act_min, act_max] with VMAX/VMIN, one store.
 */
void frk_max_pool_s8_mve(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                         int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output)
{
#if FRK_MVE
    const int32_t in_h = input_dims->h, in_w = input_dims->w, chans = input_dims->c;
    const int8x16_t lo = vdupq_n_s8((int8_t)params->act_min), hi = vdupq_n_s8((int8_t)params->act_max);
    int32_t b, oy, ox, c, ky, kx;

    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + b * in_h * in_w * chans;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end;
            frk__valid_range(iy0, filter_h, in_h, &ky_start, &ky_end);
            for (ox = 0; ox < output_dims->w; ++ox, output += chans) {
                const int32_t ix0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end;
                frk__valid_range(ix0, filter_w, in_w, &kx_start, &kx_end);
                for (c = 0; c < chans; c += 16) {
                    const mve_pred16_t p = vctp8q((uint32_t)(chans - c));
                    int8x16_t m = vdupq_n_s8(-128);
                    for (ky = ky_start; ky < ky_end; ++ky) {
                        const int8_t *q = image + ((iy0 + ky) * in_w + ix0 + kx_start) * chans + c;
                        for (kx = kx_start; kx < kx_end; ++kx, q += chans) {
                            m = vmaxq_s8(m, vldrbq_z_s8(q, p));
                        }
                    }
                    vstrbq_p_s8(output + c, vminq_s8(vmaxq_s8(m, lo), hi), p);
                }
            }
        }
    }
#else
    frk_max_pool_s8(params, input_dims, input, filter_h, filter_w, output_dims, output);
#endif
}
