/*
 * frk_layer_support.h - internal helpers of the fast kernels that work on frk_nn.h's layer types: the tap
 * pointers of a depthwise output pixel's window (frk_depthwise_conv_dsp.c, _mve.c) and a fully connected layer
 * as a 1x1 convolution (frk_fully_connected_dsp.c, _mve.c). Not part of the API (frk_nn.h).
 */
#ifndef FRK_LAYER_SUPPORT_H
#define FRK_LAYER_SUPPORT_H

#include "frk_nn.h"

/* The offset of each tap from the window's first, in bytes of the input. */
static inline void frk__dw_tap_offsets(const frk_conv_params *params, int32_t in_w, int32_t chans, int32_t k_h, int32_t k_w,
                                int32_t *tap_offset)
{
    int32_t ky, kx, t = 0;
    for (ky = 0; ky < k_h; ++ky) {
        for (kx = 0; kx < k_w; ++kx) {
            tap_offset[t++] = (ky * params->dilation_h * in_w + kx * params->dilation_w) * chans;
        }
    }
}

/* 1 when the whole window at (iy_origin, ix_origin) lies inside the input (no tap reads padding); reach: the
 * window's extent past its first tap, (KH - 1) * dilation_h rows and (KW - 1) * dilation_w columns, computed once
 * per call by the kernel, as the input's size (its int8 stores may alias params and dims, so the compiler would
 * reload them per pixel). */
static inline int32_t frk__dw_inside(int32_t in_h, int32_t in_w, int32_t row_reach, int32_t col_reach,
                                     int32_t iy_origin, int32_t ix_origin)
{
    return iy_origin >= 0 && iy_origin + row_reach < in_h && ix_origin >= 0 && ix_origin + col_reach < in_w;
}

/* The tap pointers of the window at (iy_origin, ix_origin): a tap inside the input points at its channels, one
 * outside at scratch. Every tap is first set as if inside (an address computed as an integer: outside the
 * input it is never read), then the rows and the columns that fall outside are pointed at scratch; this is
 * about a third of the instructions of testing each tap. inside: the whole window is known to be inside. */
static inline void frk__dw_window(const frk_conv_params *params, const frk_dims *input_dims, const int8_t *image,
                           const int8_t *scratch, int32_t k_h, int32_t k_w, int32_t iy_origin, int32_t ix_origin,
                           const int32_t *tap_offset, int32_t inside, const int8_t **slot)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, taps_n = k_h * k_w;
    const uintptr_t first = (uintptr_t)image + (uintptr_t)(intptr_t)((iy_origin * in_w + ix_origin) * input_dims->c);
    int32_t ky, kx, t;
    for (t = 0; t < taps_n; ++t) {
        slot[t] = (const int8_t *)(first + (uintptr_t)(intptr_t)tap_offset[t]);
    }
    if (inside) {
        return;
    }
    /* unsigned compares test 0 <= i < n at once */
    for (ky = 0; ky < k_h; ++ky) {
        if ((uint32_t)(iy_origin + ky * params->dilation_h) >= (uint32_t)in_h) {
            for (kx = 0; kx < k_w; ++kx) {
                slot[ky * k_w + kx] = scratch;
            }
        }
    }
    for (kx = 0; kx < k_w; ++kx) {
        if ((uint32_t)(ix_origin + kx * params->dilation_w) >= (uint32_t)in_w) {
            for (t = kx; t < taps_n; t += k_w) {
                slot[t] = scratch;
            }
        }
    }
}

/* A fully connected layer is a 1x1 convolution over `batch` pixels of `depth` channels: the fast FC kernels run
 * their conv twins with these parameters and dimensions (same filter layout, kernel_bias and core). */
static inline void frk__fc_as_conv(const frk_fc_params *params, int32_t batch, int32_t depth, int32_t out_channels,
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

#endif /* FRK_LAYER_SUPPORT_H */
