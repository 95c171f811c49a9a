/*
 * frk_fully_connected_mve.c - FULLY_CONNECTED for the Cortex-M55 (Helium), int8 and int4 filters: the fast
 * twins of frk_fully_connected_s8 / _s4. Twin: flexround_mcu/sim/convolve.py fully_connected_s8 / _s4.
 */
#include "frk_layer_support.h"
#include "frk_nn.h"

/* frk_fully_connected_s8's outputs; rows padded to a multiple of 16 and interleaved in pairs, kernel_bias =
 * bias + input_offset * sum(w), scratch 3 * roundup(depth, 16) bytes. */
void frk_fully_connected_s8_mve(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                                int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                                const int8_t *filter, const int32_t *kernel_bias, int32_t out_channels,
                                int8_t *output, int8_t *scratch)
{
    frk_conv_params conv;
    frk_dims in_dims, f_dims, out_dims;
    frk__fc_as_conv(params, batch, depth, out_channels, &conv, &in_dims, &f_dims, &out_dims);
    frk_convolve_s8_mve(&conv, multiplier, shift, per_channel, &in_dims, input, &f_dims, filter, kernel_bias,
                        &out_dims, output, scratch);
}

/* frk_fully_connected_s4's outputs; rows padded to a multiple of 16, 32 values per 16 bytes and a last 16 as
 * 16 * w, interleaved in pairs; kernel_bias 16 * (bias + input_offset * sum(w)); scratch 3 * roundup(depth, 16)
 * bytes. */
void frk_fully_connected_s4_mve(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                                int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                                const uint8_t *filter, const int32_t *kernel_bias, int32_t out_channels,
                                int8_t *output, int8_t *scratch)
{
    frk_conv_params conv;
    frk_dims in_dims, f_dims, out_dims;
    frk__fc_as_conv(params, batch, depth, out_channels, &conv, &in_dims, &f_dims, &out_dims);
    frk_convolve_s4_mve(&conv, multiplier, shift, per_channel, &in_dims, input, &f_dims, filter, kernel_bias,
                        &out_dims, output, scratch);
}
