/*
 * frk_convolve_mve.c - CONV_2D for the Cortex-M55 (Helium: VLDRB, VMLADAVA, VQRDMULH, VRSHL, scatter stores),
 * int8 and int4 filters. The fast twins of frk_convolve_s8 / frk_convolve_s4: the same outputs bit for bit,
 * from export-time data (docs/arithmetic.md 7). Twin: flexround_mcu/sim/convolve.py convolve_s8 / convolve_s4.
 */
#include "frk_mve_support.h"
#include "frk_nn.h"

/* The k_pad values of one output pixel's receptive field, in filter order [KH, KW, C_in], into col: padding
 * taps as the input zero point (= -input_offset: with the offset in the bias they contribute exactly 0), the
 * values past K as 0 (their weights are 0). A filter row inside the input is KW * C_in contiguous bytes. */
static void frk__im2col_mve(const frk_conv_params *params, const frk_dims *input_dims, const int8_t *image,
                            int32_t k_h, int32_t k_w, int32_t oy, int32_t ox, int32_t k_pad, int8_t *col)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, in_c = input_dims->c;
    const int8_t zp = (int8_t)(-params->input_offset);
    const int32_t iy_origin = oy * params->stride_h - params->pad_top;
    const int32_t ix_origin = ox * params->stride_w - params->pad_left;
    const int32_t row_len = k_w * in_c;
    int32_t ky, kx;
    int8_t *dst = col;

    for (ky = 0; ky < k_h; ++ky, dst += row_len) {
        const int32_t iy = iy_origin + ky * params->dilation_h;
        if (iy < 0 || iy >= in_h) {
            frk__mve_fill(dst, zp, row_len);
            continue;
        }
        if (params->dilation_w == 1 && ix_origin >= 0 && ix_origin + k_w <= in_w) {
            frk__mve_copy(dst, image + (iy * in_w + ix_origin) * in_c, row_len);
            continue;
        }
        for (kx = 0; kx < k_w; ++kx) {
            const int32_t ix = ix_origin + kx * params->dilation_w;
            if (ix >= 0 && ix < in_w) {
                frk__mve_copy(dst + kx * in_c, image + (iy * in_w + ix) * in_c, in_c);
            } else {
                frk__mve_fill(dst + kx * in_c, zp, in_c);
            }
        }
    }
    frk__mve_fill(dst, 0, k_pad - k_h * row_len);
}

/*
 * Shared body of frk_convolve_s8_mve (wbits 8) and frk_convolve_s4_mve (wbits 4). Output pixels go three at a
 * time (their columns: the input itself for a 1x1 filter without padding whose C_in is a multiple of 16, else
 * im2col into scratch), output channels two at a time through frk__mve_pairs (a 2x3 block of
 * accumulators per pass over the filter rows, requantized and stored in the same asm loop), an odd last
 * channel with frk__mve_rows1. The accumulators start at kernel_bias (int4: 16 * kernel_bias, the core's
 * scale). A last block of fewer pixels repeats its last column and stores only its own outputs.
 */
static FRK_ALWAYS_INLINE void frk__convolve_mve(const frk_conv_params *params, const int32_t *multiplier,
                                                const int32_t *shift, int32_t per_channel,
                                                const frk_dims *input_dims, const int8_t *input,
                                                const frk_dims *filter_dims, const void *filter,
                                                const int32_t *kernel_bias, const frk_dims *output_dims,
                                                int8_t *output, int8_t *scratch, int32_t wbits)
{
    const int32_t in_w = input_dims->w, in_c = input_dims->c;
    const int32_t k_h = filter_dims->h, k_w = filter_dims->w;
    const int32_t out_w = output_dims->w, out_c = output_dims->c;
    const int32_t pixels = output_dims->h * out_w;
    const int32_t k_pad = (k_h * k_w * in_c + 15) / 16 * 16;
    const int32_t groups = wbits == 8 ? k_pad / 16 : k_pad / 32; /* the core's groups of 16 / 32 weights */
    const int32_t tail = wbits == 4 && k_pad % 32 != 0;          /* int4: the last 16 as int8 (16 * w) */
    const int32_t row_bytes = 16 * (groups + tail);               /* filter bytes per output channel */
    const int32_t direct = k_h == 1 && k_w == 1 && params->pad_top == 0 && params->pad_left == 0 && in_c % 16 == 0;
    const int32_t image_size = input_dims->h * in_w * in_c;
    const int32_t pairs = out_c / 2;
    const int32_t tensor_pair[2][2] = {{multiplier[0], multiplier[0]}, {shift[0], shift[0]}};
    int32_t any_shift = 0; /* some shift >= 0: the requantization with a left part */
    frk__mve_ctx ctx;
    frk__mve_rq rq;
    int32_t b, p, j;

    for (j = 0; j < (per_channel ? out_c : 1); ++j) {
        any_shift |= shift[j] >= 0;
    }
    ctx.groups = groups, ctx.tail = tail, ctx.mstep = per_channel ? 8 : 0, ctx.output_offset = params->output_offset;
    ctx.pad = 0;
    for (j = 0; j < 4; ++j) {
        ctx.act_min[j] = params->act_min, ctx.act_max[j] = params->act_max;
        ctx.offsets[j] = (uint32_t)(j * out_c);
    }
    frk__mve_rq_prepare(&rq, params->output_offset, params->act_min, params->act_max);
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + b * image_size;
        for (p = 0; p < pixels; p += 3) {
            const int32_t n = pixels - p < 3 ? pixels - p : 3; /* pixels in this block */
            int8_t *out = output + p * out_c;
            for (j = 0; j < 3; ++j) {
                const int32_t q = p + (j < n ? j : n - 1), oy = q / out_w, ox = q % out_w;
                if (direct) {
                    ctx.cols[j] = image + (oy * params->stride_h * in_w + ox * params->stride_w) * in_c;
                } else if (j < n) {
                    frk__im2col_mve(params, input_dims, image, k_h, k_w, oy, ox, k_pad, scratch + j * k_pad);
                    ctx.cols[j] = scratch + j * k_pad;
                } else {
                    ctx.cols[j] = ctx.cols[n - 1];
                }
            }
            ctx.multiplier = per_channel ? multiplier : tensor_pair[0];
            ctx.shift = per_channel ? shift : tensor_pair[1];
            ctx.out = out, ctx.pixels = n;
            if (pairs > 0) {
                frk__mve_pairs(&ctx, (const int8_t *)filter, kernel_bias, pairs, wbits, any_shift);
            }
            if (out_c % 2) { /* the odd last channel, stored alone after the pairs */
                const int32_t c = out_c - 1;
                int32_t acc[4];
                acc[0] = acc[1] = acc[2] = kernel_bias[c], acc[3] = 0;
                frk__mve_rows1((const int8_t *)filter + c * row_bytes, ctx.cols, groups, wbits, tail, acc);
                if (wbits == 4) { /* 16 * (bias + sum(w*x)): exact in int32 (checked at export) */
                    acc[0] = frk__asr32(acc[0], 4), acc[1] = frk__asr32(acc[1], 4), acc[2] = frk__asr32(acc[2], 4);
                }
                frk__mve_store4(out + c, out_c, &rq, n, acc, multiplier[per_channel ? c : 0],
                                shift[per_channel ? c : 0]);
            }
        }
        output += pixels * out_c;
    }
}

/*
 * frk_convolve_s8_mve: frk_convolve_s8's outputs, with
 *   filter       int8 [C_out, KH, KW, C_in] rows padded with zeros to k_pad = roundup(KH*KW*C_in, 16) and
 *                interleaved in pairs 16 values at a time (docs/arithmetic.md 7.1);
 *   kernel_bias  bias[c] + input_offset * sum(w[c]) (6.1), never NULL;
 *   scratch      3 * k_pad bytes (three im2col columns).
 * Per output: acc = kernel_bias[c] + sum(w * x) with padding taps as x = zero point (exact modulo 2^32 as for
 * the dsp kernels), then TFLM's requantization on four lanes (frk__mve_store4).
 */
void frk_convolve_s8_mve(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                         int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                         const frk_dims *filter_dims, const int8_t *filter, const int32_t *kernel_bias,
                         const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__convolve_mve(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                      output_dims, output, scratch, 8);
}

/*
 * frk_convolve_s4_mve: frk_convolve_s4's outputs, with the filter rows padded to k_pad = roundup(KH*KW*C_in, 16),
 * each 32 values as 16 bytes (w[k+i] in the low, w[k+16+i] in the high nibble of byte i), a last 16 (k_pad an
 * odd multiple of 16) as int8 bytes 16 * w, interleaved in pairs 16 bytes at a time (7.1), kernel_bias 16 * (bias + input_offset * sum(w)) (the core's scale, checked to
 * fit at export), and scratch 3 * k_pad bytes.
 */
void frk_convolve_s4_mve(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                         int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                         const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                         const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__convolve_mve(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                      output_dims, output, scratch, 4);
}
