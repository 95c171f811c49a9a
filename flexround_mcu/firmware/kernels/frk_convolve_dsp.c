/*
 * frk_convolve_dsp.c - CONV_2D for the Cortex-M4/M7 (Armv7E-M DSP extension: SXTB16, SMLAD, SMMULR), int8, int4
 * and int2 filters. The fast twins of frk_convolve_s8 / _s4 / _s2: the same outputs bit for bit, from export-time
 * data (docs/arithmetic.md 6). Twin: flexround_mcu/sim/convolve.py convolve_s8 / convolve_s4 / convolve_s2.
 */
#include "frk_dsp_support.h"
#include "frk_nn.h"

/* n bytes of src (n % 4 == 0) to k positions starting at a multiple of 4 of one interleaved column: word by word,
 * every other word of dst. */
static void frk__put_words(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n > 0; n -= 4, dst += 8, src += 4) {
        frk__write_u32(dst, frk__read_u32(src));
    }
}

static void frk__put_word_fill(int8_t *dst, uint32_t v4, int32_t n)
{
    for (; n > 0; n -= 4, dst += 8) {
        frk__write_u32(dst, v4);
    }
}

/* Byte k of an interleaved column (docs/arithmetic.md 6.2): word k/4 of the column is at byte 8*(k/4). */
static void frk__put_bytes(int8_t *col, int32_t k, const int8_t *src, int32_t n)
{
    for (; n > 0; --n, ++k) {
        col[8 * (k >> 2) + (k & 3)] = *src++;
    }
}

static void frk__put_byte_fill(int8_t *col, int32_t k, int8_t v, int32_t n)
{
    for (; n > 0; --n, ++k) {
        col[8 * (k >> 2) + (k & 3)] = v;
    }
}

/* The k_pad values of one output pixel's receptive field, in filter order [KH, KW, C_in], into column `col` (the
 * first byte of this pixel's words: cols or cols + 4), padding taps as the input zero point (= -input_offset:
 * with the offset in the bias they contribute exactly 0), k >= K as 0. C_in % 4 == 0 moves whole words. */
static void frk__im2col_s8(const frk_conv_params *params, const frk_dims *input_dims, const int8_t *image,
                           int32_t k_h, int32_t k_w, int32_t oy, int32_t ox, int32_t k_pad, int8_t *col)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, in_c = input_dims->c;
    const int8_t zp = (int8_t)(-params->input_offset);
    const uint32_t zp4 = frk__splat_s8(zp);
    const int32_t iy_origin = oy * params->stride_h - params->pad_top;
    const int32_t ix_origin = ox * params->stride_w - params->pad_left;
    const int32_t row_len = k_w * in_c;
    const int32_t words = in_c % 4 == 0;
    int32_t k = 0, ky, kx;

    for (ky = 0; ky < k_h; ++ky, k += row_len) {
        const int32_t iy = iy_origin + ky * params->dilation_h;
        if (iy < 0 || iy >= in_h) {
            if (words) {
                frk__put_word_fill(col + 2 * k, zp4, row_len);
            } else {
                frk__put_byte_fill(col, k, zp, row_len);
            }
            continue;
        }
        if (words && params->dilation_w == 1 && ix_origin >= 0 && ix_origin + k_w <= in_w) {
            /* the whole filter row inside: KW * C_in contiguous input bytes */
            frk__put_words(col + 2 * k, image + (iy * in_w + ix_origin) * in_c, row_len);
            continue;
        }
        for (kx = 0; kx < k_w; ++kx) {
            const int32_t ix = ix_origin + kx * params->dilation_w;
            const int32_t kt = k + kx * in_c;
            const int8_t *src = image + (iy * in_w + ix) * in_c;
            const int32_t inside = ix >= 0 && ix < in_w;
            if (words) {
                if (inside) {
                    frk__put_words(col + 2 * kt, src, in_c);
                } else {
                    frk__put_word_fill(col + 2 * kt, zp4, in_c);
                }
            } else if (inside) {
                frk__put_bytes(col, kt, src, in_c);
            } else {
                frk__put_byte_fill(col, kt, zp, in_c);
            }
        }
    }
    frk__put_byte_fill(col, k, 0, k_pad - k);
}

/* The two pixels' outputs of one channel when the layer is not all per-tensor-fast: a channel whose own
 * (multiplier, shift) allows it still takes the folded epilogue (frk__rq_tensor_for), others the general one. */
static FRK_ALWAYS_INLINE void frk__store_channel(int8_t *out0, int8_t *out1, int32_t two, int32_t acc0, int32_t acc1,
                                                 int32_t per_channel, const int32_t *multiplier, const int32_t *shift,
                                                 const frk__rq *rq_tensor, int32_t output_offset, int32_t act_min,
                                                 int32_t act_max, int32_t lo, int32_t hi)
{
    frk__rq_tensor fast;
    if (per_channel && frk__rq_tensor_for(0, *multiplier, *shift, output_offset, act_min, act_max, &fast)) {
        *out0 = frk__output_stage_tensor(acc0, &fast);
        if (two) {
            *out1 = frk__output_stage_tensor(acc1, &fast);
        }
        return;
    }
    {
        const frk__rq rq = per_channel ? frk__rq_for(*multiplier, *shift) : *rq_tensor;
        *out0 = frk__output_stage_dsp(acc0, &rq, output_offset, lo, hi);
        if (two) {
            *out1 = frk__output_stage_dsp(acc1, &rq, output_offset, lo, hi);
        }
    }
}

/*
 * Shared body of frk_convolve_s8_dsp (wbits 8), frk_convolve_s4_dsp (wbits 4) and frk_convolve_s2_dsp (wbits 2);
 * wbits is a constant at each call site. Output pixels are taken two at a time and output channels two at a
 * time: a 2x2 block of accumulators per pass over the filter rows (frk__block2_s8 / frk__block2_packed), an odd last
 * channel with the one-row form. The two pixels' columns are gathered into scratch by frk__im2col_s8,
 * interleaved a word at a time (2 * k_pad bytes).
 */
static FRK_ALWAYS_INLINE void frk__convolve_dsp(const frk_conv_params *params, const int32_t *multiplier,
                                                const int32_t *shift, int32_t per_channel,
                                                const frk_dims *input_dims, const int8_t *input,
                                                const frk_dims *filter_dims, const void *filter,
                                                const int32_t *kernel_bias, const frk_dims *output_dims,
                                                int8_t *output, int8_t *scratch, int32_t wbits)
{
    const int32_t in_c = input_dims->c;
    const int32_t k_h = filter_dims->h, k_w = filter_dims->w;
    const int32_t out_w = output_dims->w, out_c = output_dims->c;
    const int32_t pixels = output_dims->h * out_w;
    const int32_t group = wbits == 8 ? 4 : wbits == 4 ? 8 : 16; /* weights per word group of the core */
    const int32_t k_pad = (k_h * k_w * in_c + group - 1) / group * group;
    const int32_t groups = k_pad / group;
    const int32_t row_bytes = k_pad * wbits / 8;                /* filter bytes per output channel */
    const int32_t output_offset = params->output_offset;
    const int32_t lo = params->act_min - output_offset;
    const int32_t hi = params->act_max - output_offset;
    const frk__rq rq_tensor = frk__rq_for(multiplier[0], shift[0]);
    frk__rq_tensor fast;
    const int32_t fast_epilogue = frk__rq_tensor_for(per_channel, multiplier[0], shift[0], output_offset,
                                                     params->act_min, params->act_max, &fast);
    const int32_t image_size = input_dims->h * input_dims->w * in_c;
    int32_t b, p, c;

    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + b * image_size;
        for (p = 0; p < pixels; p += 2) {
            /* An odd last pixel fills both columns and keeps the first column's results. */
            const int32_t two = p + 1 < pixels;
            const int32_t p1 = two ? p + 1 : p;
            int8_t *out0 = output + p * out_c;
            int8_t *out1 = out0 + out_c;
            frk__im2col_s8(params, input_dims, image, k_h, k_w, p / out_w, p % out_w, k_pad, scratch);
            frk__im2col_s8(params, input_dims, image, k_h, k_w, p1 / out_w, p1 % out_w, k_pad, scratch + 4);
            for (c = 0; c < out_c; c += 2) {
                const int32_t pair = c + 1 < out_c;
                const int32_t bias0 = kernel_bias[c];
                const int32_t bias1 = pair ? kernel_bias[c + 1] : 0;
                int32_t acc[4];
                if (wbits == 8) {
                    const int8_t *w = (const int8_t *)filter + c * row_bytes;
                    acc[0] = bias0, acc[1] = bias0, acc[2] = bias1, acc[3] = bias1;
                    if (pair) {
                        frk__block2_s8(w, scratch, groups, acc);
                    } else {
                        frk__block1_s8(w, scratch, groups, acc);
                    }
                } else {
                    /* int4: 4096 * sum(w*x), int2: 16384 * sum(w*x); it fits int32 (checked at export), so the
                     * shift back is exact. */
                    const uint8_t *w = (const uint8_t *)filter + c * row_bytes;
                    const int32_t back = wbits == 4 ? 12 : 14;
                    acc[0] = 0, acc[1] = 0, acc[2] = 0, acc[3] = 0;
                    if (pair) {
                        frk__block2_packed(wbits, w, scratch, groups, acc);
                    } else {
                        frk__block1_packed(wbits, w, scratch, groups, acc);
                    }
                    acc[0] = frk__asr32(acc[0], back) + bias0, acc[1] = frk__asr32(acc[1], back) + bias0;
                    acc[2] = frk__asr32(acc[2], back) + bias1, acc[3] = frk__asr32(acc[3], back) + bias1;
                }
                if (fast_epilogue) {
                    out0[c] = frk__output_stage_tensor(acc[0], &fast);
                    if (two) {
                        out1[c] = frk__output_stage_tensor(acc[1], &fast);
                    }
                    if (pair) {
                        out0[c + 1] = frk__output_stage_tensor(acc[2], &fast);
                        if (two) {
                            out1[c + 1] = frk__output_stage_tensor(acc[3], &fast);
                        }
                    }
                    continue;
                }
                frk__store_channel(out0 + c, out1 + c, two, acc[0], acc[1], per_channel, multiplier + c, shift + c,
                                   &rq_tensor, output_offset, params->act_min, params->act_max, lo, hi);
                if (pair) {
                    frk__store_channel(out0 + c + 1, out1 + c + 1, two, acc[2], acc[3], per_channel, multiplier + c + 1,
                                       shift + c + 1, &rq_tensor, output_offset, params->act_min, params->act_max, lo,
                                       hi);
                }
            }
        }
        output += pixels * out_c;
    }
}

/*
 * frk_convolve_s8_dsp: frk_convolve_s8's outputs, with
 *   filter       int8 [C_out, KH, KW, C_in] rows padded with zeros to k_pad = roundup(KH*KW*C_in, 4) and
 *                interleaved in pairs 4 values at a time (docs/arithmetic.md 6.2);
 *   kernel_bias  bias[c] + input_offset * sum(w[c]) (6.1), never NULL;
 *   scratch      2 * k_pad bytes, 4-byte aligned (two interleaved im2col columns).
 * Per output: acc = kernel_bias[c] + sum(w * x) with padding taps as x = zero point, which equals frk_convolve_s8's
 * bias[c] + sum over valid taps of w * (x + input_offset) modulo 2^32, so exactly; then the requantization of
 * frk__output_stage_dsp, exact because the export checked |bias| + 255 * sum|w| < 2^30 >> max(shift, 0).
 */
void frk_convolve_s8_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                         int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                         const frk_dims *filter_dims, const int8_t *filter, const int32_t *kernel_bias,
                         const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__convolve_dsp(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                      output_dims, output, scratch, 8);
}

/*
 * frk_convolve_s4_dsp: frk_convolve_s4's outputs, with the filter rows padded to k_pad = roundup(KH*KW*C_in, 8),
 * lane-nibbled 8 values per word and interleaved in pairs a word at a time (6.2), kernel_bias as for s8, and
 * scratch 2 * k_pad bytes. The core accumulates
 * 4096 * sum(w * x) (|.| <= 4096 * 128 * sum|w| < 2^31, checked at export) and shifts it back before the bias.
 */
void frk_convolve_s4_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                         int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                         const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                         const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__convolve_dsp(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                      output_dims, output, scratch, 4);
}

/*
 * frk_convolve_s2_dsp: frk_convolve_s2's outputs, with the filter rows padded to k_pad = roundup(KH*KW*C_in, 16),
 * lane-crumbed 16 values per word and interleaved in pairs a word at a time (6.2), kernel_bias as for s8, and
 * scratch 2 * k_pad bytes. The core accumulates 16384 * sum(w * x) (|.| <= 16384 * 128 * sum|w| < 2^31, checked
 * at export) and shifts it back before the bias.
 */
void frk_convolve_s2_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                         int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                         const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                         const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__convolve_dsp(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                      output_dims, output, scratch, 2);
}
