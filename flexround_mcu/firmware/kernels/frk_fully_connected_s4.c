/*
 * frk_fully_connected_s4.c - FULLY_CONNECTED, int8 input, symmetric int4 filter packed two per byte
 * (frk_fully_connected_s4) or int2 filter packed four per byte (frk_fully_connected_s2), per-tensor or
 * per-channel requantization, one body.
 * Twins: flexround_mcu/sim/convolve.py fully_connected_s4 / _s2; spec: docs/arithmetic.md 4.3 and 4.9.
 */
#include "frk_nn.h"
#include "frk_nn_support.h"

/*
 * The arithmetic of frk_fully_connected_s8, with the weights read from a packed filter: bits 4 (nibbles) or 2 (crumbs),
 * a constant at both call sites below, which say where element i sits. input is [batch, depth],
 * filter [out_channels, depth] packed, output [batch, out_channels]. For every (n, c):
 *
 *   acc = bias[c] + sum over d < depth of  w[c, d] * (x[n, d] + input_offset)
 *   y   = clamp(requantize(acc, M, s) + output_offset, act_min, act_max)
 *
 * w[c, d] is element c*depth + d: for s4 the low nibble of filter[element >> 1] if it is even, else the high nibble;
 * with an odd depth, every other row starts mid-byte. (M, s) = (multiplier[c], shift[c]) if per_channel is
 * non-zero, else (multiplier[0], shift[0]). A NULL bias is 0. acc is int32 (exact while
 * |bias| + depth*255*8 < 2^31; *2 for s2).
 */
static FRK_ALWAYS_INLINE void frk__fully_connected_packed(const frk_fc_params *params, const int32_t *multiplier,
                                                          const int32_t *shift, int32_t per_channel, int32_t batch,
                                                          int32_t depth, const int8_t *input, const uint8_t *filter,
                                                          const int32_t *bias, int32_t out_channels, int8_t *output,
                                                          int32_t bits)
{
    const int32_t input_offset = params->input_offset;
    const int32_t output_offset = params->output_offset;
    const int32_t lo = params->act_min - output_offset;
    const int32_t hi = params->act_max - output_offset;
    int32_t b, oc;

    for (b = 0; b < batch; ++b) {
        const int8_t *x = input + b * depth;
        for (oc = 0; oc < out_channels; ++oc) {
            const int32_t q = per_channel ? oc : 0; /* which (multiplier, shift) pair */
            int32_t acc = frk__dot_packed(bits, filter, oc * depth, x, depth, input_offset);
            if (bias != NULL) {
                acc += bias[oc];
            }
            *output++ = frk__output_stage(acc, multiplier[q], shift[q], output_offset, lo, hi);
        }
    }
}

/* frk_fully_connected_s4: nibbles, exact while |bias| + depth*255*8 < 2^31. */
void frk_fully_connected_s4(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                            int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                            const uint8_t *filter, const int32_t *bias, int32_t out_channels, int8_t *output)
{
    frk__fully_connected_packed(params, multiplier, shift, per_channel, batch, depth, input, filter, bias,
                               out_channels, output, 4);
}

/* frk_fully_connected_s2: w[c, d] in [-2, 1], bits 2e+1..2e of filter[element >> 2], e = element & 3 (rows start
 * mid-byte when depth is not a multiple of 4); exact while |bias| + depth*255*2 < 2^31. */
void frk_fully_connected_s2(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                            int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                            const uint8_t *filter, const int32_t *bias, int32_t out_channels, int8_t *output)
{
    frk__fully_connected_packed(params, multiplier, shift, per_channel, batch, depth, input, filter, bias,
                               out_channels, output, 2);
}
