/*
 * frk_convolve_s4.c - CONV_2D, int8 NHWC activations, symmetric int4 filter packed two per byte (frk_convolve_s4)
 * or int2 filter packed four per byte (frk_convolve_s2), per-channel or per-tensor requantization, one body.
 * Twins: flexround_mcu/sim/convolve.py convolve_s4 / convolve_s2; spec: docs/arithmetic.md 4.1 and 4.9.
 */
#include "frk_nn.h"
#include "frk_nn_support.h"

/*
 * The arithmetic of frk_convolve_s8, with the weights read from a packed filter: bits 4 (nibbles) or 2 (crumbs),
 * a constant at both call sites below, which say where element i sits. For every output element
 * (n, oy, ox, c), with iy = oy*stride_h - pad_top + i*dilation_h and ix = ox*stride_w - pad_left + j*dilation_w:
 *
 *   acc = bias[c] + sum over i < KH, j < KW, k < C_in of  w[c, i, j, k] * (x[n, iy, ix, k] + input_offset)
 *   y   = clamp(requantize(acc, M, s) + output_offset, act_min, act_max)
 *
 * with (M, s) = (multiplier[c], shift[c]) if per_channel is non-zero, else (multiplier[0], shift[0]).
 * w[c, i, j, k] is element ((c*KH + i)*KW + j)*C_in + k of the filter flattened in [C_out, KH, KW, C_in] order,
 * for s4 a value in [-8, 7] stored as the low (even element) or high (odd element) nibble of filter[element >> 1]
 * (s2: see frk_convolve_s2). A tap's C_in weights can start mid-byte; frk__dot_s4 / _s2 handle every start. A filter
 * row with no tap in the padding (and no horizontal dilation) is summed as one run of KW*C_in values.
 * Taps outside the input are skipped (zero padding); bottom/right padding is implied by output_dims; a NULL
 * bias is 0. acc is int32 and exact while |bias| + KH*KW*C_in*255*8 < 2^31 (s4; *2 for s2).
 * params->depth_multiplier is not used.
 */
static FRK_ALWAYS_INLINE void frk__convolve_packed(const frk_conv_params *params, const int32_t *multiplier,
                                                   const int32_t *shift, int32_t per_channel,
                                                   const frk_dims *input_dims, const int8_t *input,
                                                   const frk_dims *filter_dims, const uint8_t *filter,
                                                   const int32_t *bias, const frk_dims *output_dims, int8_t *output,
                                                   int32_t bits)
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
    const int32_t lo = params->act_min - output_offset;
    const int32_t hi = params->act_max - output_offset;
    const int32_t filter_size = k_h * k_w * in_c; /* elements (not bytes) of one output channel's filter */
    const int32_t whole_rows = params->dilation_w == 1; /* a filter row then covers contiguous input */
    int32_t b, oy, ox, oc, ky, kx;

    for (b = 0; b < batches; ++b) {
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy_origin = oy * params->stride_h - params->pad_top;
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix_origin = ox * params->stride_w - params->pad_left;
                for (oc = 0; oc < out_c; ++oc) {
                    const int32_t w_c = oc * filter_size; /* element index of this channel's first weight */
                    const int32_t q = per_channel ? oc : 0; /* which (multiplier, shift) pair */
                    int32_t acc = 0;
                    for (ky = 0; ky < k_h; ++ky) {
                        const int32_t iy = iy_origin + ky * params->dilation_h;
                        if (iy < 0 || iy >= in_h) {
                            continue; /* padding row: contributes nothing */
                        }
                        if (whole_rows && ix_origin >= 0 && ix_origin + k_w <= in_w) {
                            /* No padding column in this filter row: its KW taps are KW*C_in contiguous input
                             * values against KW*C_in consecutive nibbles, one run (fewer run starts and ends). */
                            acc += frk__dot_packed(bits, filter, w_c + ky * k_w * in_c,
                                               input + ((b * in_h + iy) * in_w + ix_origin) * in_c, k_w * in_c,
                                               input_offset);
                            continue;
                        }
                        for (kx = 0; kx < k_w; ++kx) {
                            const int32_t ix = ix_origin + kx * params->dilation_w;
                            if (ix < 0 || ix >= in_w) {
                                continue; /* padding column */
                            }
                            /* One tap: C_in contiguous input channels against C_in consecutive nibbles. */
                            acc += frk__dot_packed(bits, filter, w_c + (ky * k_w + kx) * in_c,
                                               input + ((b * in_h + iy) * in_w + ix) * in_c, in_c, input_offset);
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

/* frk_convolve_s4: w[c, i, j, k] a value in [-8, 7], the low (even element) or high (odd element) nibble of
 * filter[element >> 1]; acc exact while |bias| + KH*KW*C_in*255*8 < 2^31 (s4; *2 for s2). */
void frk_convolve_s4(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                     int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                     const frk_dims *filter_dims, const uint8_t *filter, const int32_t *bias,
                     const frk_dims *output_dims, int8_t *output)
{
    frk__convolve_packed(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, bias,
                        output_dims, output, 4);
}

/* frk_convolve_s2: w[c, i, j, k] a value in [-2, 1], bits 2e+1..2e of filter[element >> 2], e = element & 3 (a
 * tap's C_in weights may start at any crumb; frk__dot_s2 handles every start); acc exact while
 * |bias| + KH*KW*C_in*255*2 < 2^31. */
void frk_convolve_s2(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                     int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                     const frk_dims *filter_dims, const uint8_t *filter, const int32_t *bias,
                     const frk_dims *output_dims, int8_t *output)
{
    frk__convolve_packed(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, bias,
                        output_dims, output, 2);
}
