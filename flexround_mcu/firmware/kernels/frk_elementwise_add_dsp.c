/*
 * frk_elementwise_add_dsp.c - ADD for the Cortex-M4/M7 (SMMULR, SSAT): the fast twin of frk_elementwise_add_s8.
 * Twin: flexround_mcu/sim/elementwise.py elementwise_add_s8; spec: docs/arithmetic.md 4.4 and 6.4.
 */
#include "frk_dsp_support.h"
#include "frk_nn.h"

/*
 * frk_elementwise_add_s8's outputs for the parameters TFLM prepares for int8, with two export-time facts
 * (docs/arithmetic.md 6.4):
 *   - input1 is the input at the real multiplier 0.5 (multiplier 2^30, shift 0, left_shift 20; TFLM gives it to
 *     the input of the larger scale, and the export swaps the inputs where needed: the int32 sum is the same).
 *     Its rescaled value is requantize((x1 + off1) * 2^20, 2^30, 0) = (x1 + off1) * 2^19 exactly.
 *   - table[u], u the byte of x2 read as unsigned, holds 2 * requantize((x2 + off2) * 2^20, M2, s2) + off1 * 2^20:
 *     the other input's rescaled value, doubled, plus the constant part of input1's.
 * So 2 * (a + b) = table[u2] + x1 * 2^20 (one load and one add with a shifted operand), and the output is
 *   x = SMMULR(2 * (a + b), M_out) = SRDHM(a + b, M_out)                  (|a + b| < 2^29)
 *   y = (x - [x < 0] + 2^(e-1) + output_offset * 2^e) >> e = RDBPOT(x, e) + output_offset, e = -output_shift >= 1
 * (the export checks |output_offset| * 2^e < 2^29), then SSAT to int8 and the clamp. params' input fields are
 * not read (they are in the table).
 */
void frk_elementwise_add_s8_dsp(const frk_add_params *params, const int8_t *input1, const int8_t *input2,
                                int32_t size, int8_t *output, const int32_t *table)
{
    const int32_t e = -params->output_shift;
    const int32_t out_round = (int32_t)(((uint32_t)1 << (e - 1)) + ((uint32_t)params->output_offset << e));
    const int32_t out_multiplier = params->output_multiplier;
    const int32_t act_min = params->act_min, act_max = params->act_max;
    int32_t i;

    if (act_max == 127) { /* the usual case (no clamp, or ReLU): SSAT gives the upper bound */
        for (i = 0; i < size; ++i) {
            const uint32_t sum2 = (uint32_t)table[(uint8_t)input2[i]] + ((uint32_t)(int32_t)input1[i] << 20);
            int32_t y = frk__smmulr(frk__from_u32(sum2), out_multiplier);
            y = frk__ssat8(frk__asr32(y + frk__asr32(y, 31) + out_round, e));
            output[i] = (int8_t)(frk__usat8(y - act_min) + act_min); /* y - act_min <= 255: max(y, act_min) */
        }
        return;
    }
    for (i = 0; i < size; ++i) {
        const uint32_t sum2 = (uint32_t)table[(uint8_t)input2[i]] + ((uint32_t)(int32_t)input1[i] << 20);
        int32_t y = frk__smmulr(frk__from_u32(sum2), out_multiplier);
        y = frk__asr32(y + frk__asr32(y, 31) + out_round, e);
        y = y < act_min ? act_min : y;
        output[i] = (int8_t)(y > act_max ? act_max : y);
    }
}
