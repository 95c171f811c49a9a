/*
 * frk_nn.h - flexround-mcu integer kernels: CMSIS-NN-style int8 operators in portable C99, and int4-weight
 * (s4) and int2-weight (s2) variants of conv, depthwise conv and fully connected.
 *
 * Each function mirrors the numpy twin of the same name in flexround_mcu/sim/ (without the frk_ prefix), and
 * both follow docs/arithmetic.md: TFLite Micro's int8 arithmetic with double rounding. Activations are NHWC
 * int8; input_offset = -input zero point, output_offset = +output zero point; filters are symmetric (zero
 * point 0). Conv, depthwise and fully connected take a table of (multiplier, shift) pairs: one per output
 * channel when per_channel is non-zero, else one pair for every channel (per-tensor quantization: a table of
 * one entry is enough).
 * Padding is given as (top, left); the bottom/right padding follows from the output size.
 *
 * The _s4 kernels take the same parameters as their _s8 siblings, except that the filter is int4 values in
 * [-8, 7] packed two per byte (`const uint8_t *`: the bytes are not int8 numbers, and the type keeps an int8
 * filter from being passed by mistake): the filter flattened in its natural order, element i in byte i >> 1,
 * the low nibble for even i and the high nibble for odd i, with no padding per row (rows of odd length start
 * mid-byte) and an unused high nibble at the end of an odd count: CMSIS-NN's arm_*_s4 layout. The arithmetic
 * is the s8 one on the unpacked values (docs/arithmetic.md 4.9). The _s2 kernels take int2 values in [-2, 1]
 * (2-bit layers use all four levels) packed four per byte the same way: element i in bits 2j+1..2j of byte i >> 2,
 * j = i & 3, no padding per row.
 *
 * Implementation: one op family per file (frk_support.c, frk_convolve_s8.c, frk_convolve_s4.c,
 * frk_depthwise_conv_s8.c, frk_depthwise_conv_s4.c, frk_fully_connected_s8.c, frk_fully_connected_s4.c (the s4
 * files hold the s2 kernels too, one body per op family),
 * frk_elementwise_add_s8.c, frk_pooling_s8.c, frk_softmax_s8.c) plus the internal
 * inline helpers in frk_nn_support.h. C99, integer only, no allocation; tests/test_c_kernels.py checks every
 * function against its numpy twin bit for bit.
 */
#ifndef FRK_NN_H
#define FRK_NN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t n, h, w, c;
} frk_dims;

typedef struct {
    int32_t input_offset;  /* -zp_in, in [-127, 128] */
    int32_t output_offset; /* +zp_out, in [-128, 127] */
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left;
    int32_t act_min, act_max;
    int32_t depth_multiplier; /* depthwise only; 1 otherwise */
} frk_conv_params;

typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t act_min, act_max;
} frk_fc_params;

typedef struct {
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t act_min, act_max;
} frk_pool_params;

typedef struct {
    int32_t input1_offset, input1_multiplier, input1_shift;
    int32_t input2_offset, input2_multiplier, input2_shift;
    int32_t left_shift;
    int32_t output_offset, output_multiplier, output_shift;
    int32_t act_min, act_max;
} frk_add_params;

typedef struct {
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} frk_softmax_params;

/* Fixed point (frk_support.c), docs/arithmetic.md section 3.
 * frk_doubling_high_mult: floor((a * multiplier + 2^30) / 2^31) on the 64-bit product (ties toward +inf), any
 *   signs; a == multiplier == INT32_MIN saturates to INT32_MAX (gemmlowp SaturatingRoundingDoublingHighMul).
 * frk_rounding_divide_by_pot: x / 2^exponent rounded to nearest, ties away from zero; 0 <= exponent <= 31.
 * frk_requantize: double rounding, RDBPOT(DHM(acc * 2^max(shift, 0), M), max(-shift, 0)); M is 0 or in
 *   [2^30, 2^31), shift in [-31, 30], and acc * 2^max(shift, 0) must fit int32 (as in TFLM). */
int32_t frk_doubling_high_mult(int32_t a, int32_t multiplier);
int32_t frk_rounding_divide_by_pot(int32_t x, int32_t exponent);
int32_t frk_requantize(int32_t acc, int32_t multiplier, int32_t shift);

/* CONV_2D: filter [C_out, KH, KW, C_in] (filter_dims n=C_out, h=KH, w=KW, c=C_in); bias may be NULL. */
void frk_convolve_s8(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                     int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                     const frk_dims *filter_dims, const int8_t *filter, const int32_t *bias,
                     const frk_dims *output_dims, int8_t *output);

/* CONV_2D with a packed int4 filter [C_out, KH, KW, C_in] (filter_dims in elements, as for s8). */
void frk_convolve_s4(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                     int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                     const frk_dims *filter_dims, const uint8_t *filter, const int32_t *bias,
                     const frk_dims *output_dims, int8_t *output);

/* CONV_2D with a packed int2 filter [C_out, KH, KW, C_in]. */
void frk_convolve_s2(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                     int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                     const frk_dims *filter_dims, const uint8_t *filter, const int32_t *bias,
                     const frk_dims *output_dims, int8_t *output);

/* DEPTHWISE_CONV_2D: filter [1, KH, KW, C_out], C_out = C_in * depth_multiplier; output channel
 * c_in * depth_multiplier + m reads input channel c_in. */
void frk_depthwise_conv_s8(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                           int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                           const frk_dims *filter_dims, const int8_t *filter, const int32_t *bias,
                           const frk_dims *output_dims, int8_t *output);

/* DEPTHWISE_CONV_2D with a packed int4 filter [1, KH, KW, C_out]. */
void frk_depthwise_conv_s4(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                           int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                           const frk_dims *filter_dims, const uint8_t *filter, const int32_t *bias,
                           const frk_dims *output_dims, int8_t *output);

/* DEPTHWISE_CONV_2D with a packed int2 filter [1, KH, KW, C_out]. */
void frk_depthwise_conv_s2(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                           int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                           const frk_dims *filter_dims, const uint8_t *filter, const int32_t *bias,
                           const frk_dims *output_dims, int8_t *output);

/* FULLY_CONNECTED: input [batch, depth], filter [C_out, depth], output [batch, C_out]. */
void frk_fully_connected_s8(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                            int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                            const int8_t *filter, const int32_t *bias, int32_t out_channels, int8_t *output);

/* FULLY_CONNECTED with a packed int4 filter [C_out, depth]. */
void frk_fully_connected_s4(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                            int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                            const uint8_t *filter, const int32_t *bias, int32_t out_channels, int8_t *output);

/* FULLY_CONNECTED with a packed int2 filter [C_out, depth]. */
void frk_fully_connected_s2(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                            int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                            const uint8_t *filter, const int32_t *bias, int32_t out_channels, int8_t *output);

/* ADD of two tensors of `size` elements (no broadcasting). */
void frk_elementwise_add_s8(const frk_add_params *params, const int8_t *input1, const int8_t *input2,
                            int32_t size, int8_t *output);

/* AVERAGE_POOL_2D / MAX_POOL_2D: input and output share scale and zero point. Only taps inside the input count:
 * the average divides by the number of valid taps (ties away from zero), and the maximum starts at -128.
 * A window entirely in padding (TFLM rejects it for the average) gives clamp(0) / clamp(-128) = act_min. */
void frk_avgpool_s8(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                    int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output);
void frk_max_pool_s8(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                     int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output);

/* SOFTMAX over the last axis of `rows` rows of `depth` values; output scale 1/256, zero point -128.
 * Returns 0, or -1 if a row's sum of exponentials is out of the kernel's range (TFLM does not support it).
 * That happens when the sum reaches 512 (about 512 entries tied at the row maximum). On -1 the rows before
 * the failing one have been written; it and the later rows have not. */
int32_t frk_softmax_s8(const frk_softmax_params *params, int32_t rows, int32_t depth, const int8_t *input,
                       int8_t *output);

/* frk_conv_rows (frk_support.c): output rows [row, row + rows) of a CONV_2D / DEPTHWISE_CONV_2D layer as a layer
 * of their own, so that any conv kernel computes just those rows (model.c runs a conv fused with the ADD after
 * it this way, a band of rows at a time: docs/arithmetic.md 8). Writes band_params (params with the band's
 * pad_top), band_input (the input from the first row the band's windows can read, to the bottom) and
 * band_output (the band's rows); returns the byte offset of band_input's first row in the input. */
int32_t frk_conv_rows(const frk_conv_params *params, const frk_dims *input_dims, const frk_dims *output_dims,
                      int32_t row, int32_t rows, frk_conv_params *band_params, frk_dims *band_input,
                      frk_dims *band_output);

/* ---- fast kernels (frk_*_dsp.c): the same outputs as their portable twins above, bit for bit, from the
 * export-time data of docs/arithmetic.md 6. They use the Armv7E-M DSP instructions (Cortex-M4/M7/M55) through
 * frk_dsp_support.h, which has C versions of them for other targets, so they build everywhere. In each:
 *   filter       the layout of section 6.2 for that kernel (rows padded and interleaved; int4 lane-nibbled);
 *   kernel_bias  bias[c] + input_offset * sum(w[c]) (6.1), never NULL: padding is then the input zero point;
 *   scratch      int8 working memory whose size the export computes (6.3); NULL where the size is 0.
 * The export picks a fast kernel only for layers whose bounds it has checked (6.1). */
#define FRK_DEPTHWISE_DSP_MAX_TAPS 64

void frk_convolve_s8_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                         int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                         const frk_dims *filter_dims, const int8_t *filter, const int32_t *kernel_bias,
                         const frk_dims *output_dims, int8_t *output, int8_t *scratch);
void frk_convolve_s4_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                         int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                         const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                         const frk_dims *output_dims, int8_t *output, int8_t *scratch);
void frk_convolve_s2_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                         int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                         const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                         const frk_dims *output_dims, int8_t *output, int8_t *scratch);
/* Depth multiplier 1, C % 4 == 0, KH*KW <= FRK_DEPTHWISE_DSP_MAX_TAPS. */
void frk_depthwise_conv_s8_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const int8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch);
void frk_depthwise_conv_s4_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch);
void frk_fully_connected_s8_dsp(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                                int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                                const int8_t *filter, const int32_t *kernel_bias, int32_t out_channels,
                                int8_t *output, int8_t *scratch);
void frk_fully_connected_s4_dsp(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                                int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                                const uint8_t *filter, const int32_t *kernel_bias, int32_t out_channels,
                                int8_t *output, int8_t *scratch);
void frk_fully_connected_s2_dsp(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                                int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                                const uint8_t *filter, const int32_t *kernel_bias, int32_t out_channels,
                                int8_t *output, int8_t *scratch);
/* The parameters and outputs of frk_avgpool_s8 / frk_max_pool_s8 (four channels at a time where C % 4 == 0). */
void frk_avgpool_s8_dsp(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                        int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output);
void frk_max_pool_s8_dsp(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                         int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output);
/* input1 the input at the real multiplier 0.5, table the other input's rescaled values (docs/arithmetic.md 6.4). */
void frk_elementwise_add_s8_dsp(const frk_add_params *params, const int8_t *input1, const int8_t *input2,
                                int32_t size, int8_t *output, const int32_t *table);

/* ---- Helium kernels (frk_*_mve.c): the same outputs again, with MVE (Cortex-M55) through frk_mve_support.h, which
 * has C versions for other targets. Arguments as for the _dsp kernels, with the layouts of docs/arithmetic.md 7.1
 * (conv / fully connected rows padded to 16 values, int4 as 32 per 16 bytes and a last 16 as 16 * w, interleaved
 * in pairs 16 bytes at a time; int4 kernel_bias 16 times the folded bias; scratch 3 * k_pad bytes; depthwise as
 * below). */
void frk_convolve_s8_mve(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                         int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                         const frk_dims *filter_dims, const int8_t *filter, const int32_t *kernel_bias,
                         const frk_dims *output_dims, int8_t *output, int8_t *scratch);
void frk_convolve_s4_mve(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                         int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                         const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                         const frk_dims *output_dims, int8_t *output, int8_t *scratch);
/* Depth multiplier 1, C % 8 == 0, KH*KW <= FRK_DEPTHWISE_DSP_MAX_TAPS; the weights one per byte (7.2). */
void frk_depthwise_conv_s8_mve(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const int8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch);
void frk_depthwise_conv_s4_mve(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch);
/* Any parameters: frk_elementwise_add_s8's arguments. */
void frk_elementwise_add_s8_mve(const frk_add_params *params, const int8_t *input1, const int8_t *input2,
                                int32_t size, int8_t *output);
/* The parameters and outputs of frk_avgpool_s8 / frk_max_pool_s8, any C (the last channels predicated). */
void frk_avgpool_s8_mve(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                        int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output);
void frk_max_pool_s8_mve(const frk_pool_params *params, const frk_dims *input_dims, const int8_t *input,
                         int32_t filter_h, int32_t filter_w, const frk_dims *output_dims, int8_t *output);
void frk_fully_connected_s8_mve(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                                int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                                const int8_t *filter, const int32_t *kernel_bias, int32_t out_channels,
                                int8_t *output, int8_t *scratch);
void frk_fully_connected_s4_mve(const frk_fc_params *params, const int32_t *multiplier, const int32_t *shift,
                                int32_t per_channel, int32_t batch, int32_t depth, const int8_t *input,
                                const uint8_t *filter, const int32_t *kernel_bias, int32_t out_channels,
                                int8_t *output, int8_t *scratch);

#ifdef __cplusplus
}
#endif

#endif /* FRK_NN_H */
