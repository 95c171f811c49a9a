/*
 * frk_elementwise_add_s8.c - ADD of two int8 tensors of one shape (no broadcasting).
 * Twin: flexround_mcu/sim/elementwise.py elementwise_add_s8; spec: docs/arithmetic.md 4.4.
 */
#include "frk_nn.h"
#include "frk_nn_support.h"

/*
 * Both inputs are brought to a common scale (twice the larger input scale, with left_shift extra fraction
 * bits), added, and rescaled to the output. Per element, with three double-rounding requantizations:
 *
 *   a = requantize((x1 + input1_offset) * 2^left_shift, input1_multiplier, input1_shift)
 *   b = requantize((x2 + input2_offset) * 2^left_shift, input2_multiplier, input2_shift)
 *   y = clamp(requantize(a + b, output_multiplier, output_shift) + output_offset, act_min, act_max)
 *
 * a and b are neither offset nor clamped. With left_shift <= 20 (20 for int8), |x + offset| * 2^left_shift
 * <= 255 * 2^20 < 2^28, and a + b stays far inside int32. The shifts are <= 0 as TFLM computes them, but
 * any shift frk_requantize accepts works.
 */
void frk_elementwise_add_s8(const frk_add_params *params, const int8_t *input1, const int8_t *input2,
                            int32_t size, int8_t *output)
{
    /* The parameters as locals: the int8 stores may alias *params, and the compiler would reload every field
     * after each one. */
    const int32_t off1 = params->input1_offset, m1 = params->input1_multiplier, s1 = params->input1_shift;
    const int32_t off2 = params->input2_offset, m2 = params->input2_multiplier, s2 = params->input2_shift;
    const int32_t scale = (int32_t)1 << params->left_shift;
    const int32_t out_m = params->output_multiplier, out_s = params->output_shift, out_off = params->output_offset;
    const int32_t lo = params->act_min - out_off;
    const int32_t hi = params->act_max - out_off;
    int32_t i;

    for (i = 0; i < size; ++i) {
        /* (x + offset) * 2^left_shift: a product, not a shift, as x + offset may be negative. */
        const int32_t a = frk__requantize(((int32_t)input1[i] + off1) * scale, m1, s1);
        const int32_t b = frk__requantize(((int32_t)input2[i] + off2) * scale, m2, s2);
        output[i] = frk__output_stage(a + b, out_m, out_s, out_off, lo, hi);
    }
}
