/*
 * frk_elementwise_add_dsp.c - ADD for the Cortex-M4/M7 (SMMULR, SSAT): the fast twin of frk_elementwise_add_s8.
 * Twin: flexround_mcu/sim/elementwise.py elementwise_add_s8; spec: docs/arithmetic.md 4.4 and 6.4.
 */
#include "frk_dsp_support.h"
#include "frk_nn.h"

/* Multiplier 2^30 with shift 0 (the real multiplier 0.5): TFLM gives it to the input of the larger scale. */
static int32_t frk__is_half(int32_t multiplier, int32_t shift)
{
    return multiplier == ((int32_t)1 << 30) && shift == 0;
}

/*
 * frk_elementwise_add_s8's outputs, for the parameters TFLM prepares for int8 (left_shift 20, one input at the
 * real multiplier 0.5, the other input's and the output's shifts negative, |output_offset| * 2^-output_shift
 * < 2^29); any other parameters run frk_elementwise_add_s8 itself. With v = x + offset, per element:
 *   the half-scale input:  requantize(v * 2^20, 2^30, 0) = floor((v * 2^50 + 2^30) / 2^31) = v * 2^19 exactly;
 *   the other input:       requantize(v * 2^20, M, s) = RDBPOT(SMMULR(v * 2^21, M), -s)  (|v * 2^20| < 2^30);
 *   the output:            RDBPOT(SMMULR(2 * sum, M_out), e) + zp = (x + [x < 0] + 2^(e-1) + zp * 2^e) >> e
 *                          with x = SMMULR(2 * sum, M_out), e = -output_shift (no overflow: |x| < 2^28);
 * then the clamp. The two inputs are added in either order (an exact int32 sum), so the half-scale one may be
 * either. The constants of the multiply-free terms (offset * 2^20, offset * 2^21) are folded once per call.
 */
void frk_elementwise_add_s8_dsp(const frk_add_params *params, const int8_t *input1, const int8_t *input2,
                                int32_t size, int8_t *output)
{
    const int32_t half1 = frk__is_half(params->input1_multiplier, params->input1_shift);
    const int8_t *half_in = half1 ? input1 : input2;
    const int8_t *other_in = half1 ? input2 : input1;
    const int32_t half_offset = half1 ? params->input1_offset : params->input2_offset;
    const int32_t other_offset = half1 ? params->input2_offset : params->input1_offset;
    const int32_t other_multiplier = half1 ? params->input2_multiplier : params->input1_multiplier;
    const int32_t other_shift = half1 ? params->input2_shift : params->input1_shift;
    const int32_t out_e = -params->output_shift;
    int32_t i;

    if (params->left_shift != 20 || !(half1 || frk__is_half(params->input2_multiplier, params->input2_shift)) ||
        other_shift >= 0 || out_e < 1 || out_e > 22) {
        frk_elementwise_add_s8(params, input1, input2, size, output);
        return;
    }
    {
        /* 2 * (half term) = v1 * 2^20; the other term before its multiply: v2 * 2^21. */
        const uint32_t half_bias = (uint32_t)half_offset << 20;
        const uint32_t other_bias = (uint32_t)other_offset << 21;
        const int32_t other_e = -other_shift;
        const int32_t other_round = (int32_t)((uint32_t)1 << (other_e - 1));
        const int32_t out_round = (int32_t)(((uint32_t)1 << (out_e - 1)) + ((uint32_t)params->output_offset << out_e));
        const int32_t out_multiplier = params->output_multiplier;
        const int32_t act_min = params->act_min, act_max = params->act_max;
        for (i = 0; i < size; ++i) {
            const int32_t half2 = frk__from_u32(half_bias + ((uint32_t)(int32_t)half_in[i] << 20));
            int32_t t = frk__smmulr(frk__from_u32(other_bias + ((uint32_t)(int32_t)other_in[i] << 21)),
                                    other_multiplier);
            int32_t y;
            t = frk__asr32(t + frk__asr32(t, 31) + other_round, other_e);
            y = frk__smmulr(frk__from_u32((uint32_t)half2 + ((uint32_t)t << 1)), out_multiplier);
            y = frk__asr32(y + frk__asr32(y, 31) + out_round, out_e);
            y = y < act_min ? act_min : y;
            y = y > act_max ? act_max : y;
            output[i] = (int8_t)y;
        }
    }
}
