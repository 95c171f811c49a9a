/*
 * frk_fully_connected_mve.c - FULLY_CONNECTED for the Cortex-M55 (Helium), int8 and int4 filters: the fast
 * twins of frk_fully_connected_s8 / _s4. Twin: flexround_mcu/sim/convolve.py fully_connected_s8 / _s4.
 */
#include "frk_nn.h"

/* A fully connected layer is a 1x1 convolution over `batch` pixels of `depth` channels: the same filter layout
 * (docs/arithmetic.md 7.1), kernel_bias and core as frk_convolve_s8_mve / _s4_mve. */
static void frk__fc_as_conv_mve(const frk_fc_params *params, int32_t batch, int32_t depth, int32_t out_channels,
                                frk_conv_params *conv, frk_dims *input_dims, frk_dims *filter_dims,
                                frk_dims *output_dims)
{
    conv->input_offset = params->input_offset;
    conv->output_offset = params->output_offset;
    conv->stride_h = conv->stride_w = conv->dilation_h = conv->dilation_w = conv->depth_multiplier = 1;
    conv->pad_top = conv->pad_left = 0;
    conv->act_min = params->act_min;
    conv->act_max = params->act_max;
    input_dims->n = 1, input_dims->h = batch, input_dims->w = 1, input_dims->c = depth;
    filter_dims->n = out_channels, filter_dims->h = 1, filter_dims->w = 1, filter_dims->c = depth;
    output_dims->n = 1, output_dims->h = batch, output_dims->w = 1, output_dims->c = out_channels;
}

/* frk_fully_connected_s8's outputs; rows padded to a multiple of 16 and interleaved in pairs, kernel_bias =
 * bias + input_offset * sum(w), scratch 3 * roundup(depth, 16) bytes. */
void frk_fully_connected_s8_mve(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                                int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                                const int8_t *filter, const int32_t *kernel_bias, int32_t out_channels,
                                int8_t *output, int8_t *scratch)
{
    frk_conv_params conv;
    frk_dims in_dims, f_dims, out_dims;
    frk__fc_as_conv_mve(params, batch, depth, out_channels, &conv, &in_dims, &f_dims, &out_dims);
    frk_convolve_s8_mve(&conv, multiplier, shift, per_channel, &in_dims, input, &f_dims, filter, kernel_bias,
                        &out_dims, output, scratch);
}

/* frk_fully_connected_s4's outputs; rows padded to a multiple of 32, 32 values per 16 bytes, interleaved in
 * pairs; kernel_bias 16 * (bias + input_offset * sum(w)); scratch 3 * roundup(depth, 32) bytes. */
void frk_fully_connected_s4_mve(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                                int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                                const uint8_t *filter, const int32_t *kernel_bias, int32_t out_channels,
                                int8_t *output, int8_t *scratch)
{
    frk_conv_params conv;
    frk_dims in_dims, f_dims, out_dims;
    frk__fc_as_conv_mve(params, batch, depth, out_channels, &conv, &in_dims, &f_dims, &out_dims);
    frk_convolve_s4_mve(&conv, multiplier, shift, per_channel, &in_dims, input, &f_dims, filter, kernel_bias,
                        &out_dims, output, scratch);
}
