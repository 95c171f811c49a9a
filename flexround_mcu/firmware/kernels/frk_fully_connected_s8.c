/*
 * frk_fully_connected_s8.c - FULLY_CONNECTED, int8, per-tensor or per-channel requantization.
 * Twin: flexround_mcu/sim/convolve.py fully_connected_s8; spec: docs/arithmetic.md 4.3.
 */
#include "frk_nn.h"
#include "frk_nn_support.h"

/*
 * input is [batch, depth] (an NHWC map flattened in its row-major (h, w, c) order), filter [out_channels,
 * depth], output [batch, out_channels]. For every (n, c):
 *
 *   acc = bias[c] + sum over d < depth of  w[c, d] * (x[n, d] + input_offset)
 *   y   = clamp(requantize(acc, M, s) + output_offset, act_min, act_max)
 *
 * with (M, s) = (multiplier[c], shift[c]) if per_channel is non-zero, else (multiplier[0], shift[0]) for
 * every channel (arm_fully_connected_s8 vs _per_channel_s8). The filter zero point is 0. A NULL bias is 0.
 * acc is int32 (exact while |bias| + depth*255*127 < 2^31).
 */
void frk_fully_connected_s8(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                            int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                            const int8_t *filter, const int32_t *bias, int32_t out_channels, int8_t *output)
{
    const int32_t input_offset = params->input_offset;
    const int32_t output_offset = params->output_offset;
    const int32_t lo = params->act_min - output_offset;
    const int32_t hi = params->act_max - output_offset;
    int32_t b, oc, d;

    for (b = 0; b < batch; ++b) {
        const int8_t *x = input + b * depth;
        for (oc = 0; oc < out_channels; ++oc) {
            const int8_t *w = filter + oc * depth;
            const int32_t q = per_channel ? oc : 0; /* which (multiplier, shift) pair */
            int32_t acc = 0;
            for (d = 0; d < depth; ++d) {
                acc += (int32_t)w[d] * ((int32_t)x[d] + input_offset);
            }
            if (bias != NULL) {
                acc += bias[oc];
            }
            *output++ = frk__output_stage(acc, multiplier[q], shift[q], output_offset, lo, hi);
        }
    }
}
