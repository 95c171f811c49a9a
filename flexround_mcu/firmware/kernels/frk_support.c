/*
 * frk_support.c - the fixed-point primitives of docs/arithmetic.md section 3, exported for tests and for
 * callers outside the kernels. The kernels themselves use the inline versions in frk_nn_support.h, which
 * these functions wrap, so both are one implementation.
 */
#include "frk_nn.h"
#include "frk_nn_support.h"

/*
 * frk_doubling_high_mult - gemmlowp SaturatingRoundingDoublingHighMul.
 *   result = floor((a * multiplier + 2^30) / 2^31), computed on the exact 64-bit product,
 * i.e. a * multiplier / 2^31 rounded to nearest with ties toward +infinity. Valid for every sign of both
 * operands; the single case whose result would not fit, a == multiplier == INT32_MIN, returns INT32_MAX.
 * For multiplier >= 0 this is the doubling high multiply of requantization (CMSIS-NN's _no_sat variant).
 */
int32_t frk_doubling_high_mult(int32_t a, int32_t multiplier)
{
    return frk__dhm(a, multiplier);
}

/*
 * frk_rounding_divide_by_pot - gemmlowp RoundingDivideByPOT, for 0 <= exponent <= 31.
 *   mask = 2^exponent - 1
 *   result = floor(x / 2^exponent) + [(x & mask) > (mask >> 1) + [x < 0]]
 * i.e. x / 2^exponent rounded to nearest with ties away from zero. Exponents outside [0, 31] are not
 * supported (the shift would be undefined).
 */
int32_t frk_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    return frk__rdbpot(x, exponent);
}

/*
 * frk_requantize - TFLM MultiplyByQuantizedMultiplier / CMSIS-NN arm_nn_requantize, double rounding:
 *   left = max(shift, 0), right = max(-shift, 0)
 *   result = frk_rounding_divide_by_pot(frk_doubling_high_mult(acc * 2^left, multiplier), right)
 * Two roundings in a row (ties to +infinity, then ties away from zero); this is deliberately NOT the
 * single-rounding variant. Preconditions: multiplier is 0 or in [2^30, 2^31), shift in [-31, 30], and
 * acc * 2^left fits int32 (TFLM needs the same; here an overflowing product wraps instead of being undefined).
 * Worked example (r = 0.375 -> M = 3 * 2^29, shift = -1): acc = 6 -> 3, acc = -10 -> -4.
 */
int32_t frk_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    return frk__requantize(acc, multiplier, shift);
}

/*
 * frk_conv_rows - the output rows [row, row + rows) of a conv as a layer of their own. Output row oy reads input
 * rows oy * stride_h - pad_top + i * dilation_h; for oy = row + j that is j * stride_h - pad_top' + i * dilation_h
 * counted from input row `start`, with start = max(row * stride_h - pad_top, 0) and pad_top' = start - (row *
 * stride_h - pad_top) (the band's top padding: nonzero only where the first band reaches above the input). The
 * band's input runs from `start` to the bottom of the input, so its bottom padding is the layer's. Batch 1.
 */
int32_t frk_conv_rows(const frk_conv_params *params, const frk_dims *input_dims, const frk_dims *output_dims,
                      int32_t row, int32_t rows, frk_conv_params *band_params, frk_dims *band_input,
                      frk_dims *band_output)
{
    const int32_t origin = row * params->stride_h - params->pad_top;
    const int32_t start = origin > 0 ? origin : 0;
    *band_params = *params;
    band_params->pad_top = start - origin;
    *band_input = *input_dims;
    band_input->h = input_dims->h - start;
    *band_output = *output_dims;
    band_output->h = row + rows < output_dims->h ? rows : output_dims->h - row;
    return start * input_dims->w * input_dims->c;
}
