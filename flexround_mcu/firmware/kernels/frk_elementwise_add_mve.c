/*
 * frk_elementwise_add_mve.c - ADD for the Cortex-M55 (Helium): the fast twin of frk_elementwise_add_s8, for any
 * parameters. Twin: flexround_mcu/sim/elementwise.py elementwise_add_s8; spec: docs/arithmetic.md 4.4 and 7.3.
 */
#include "frk_mve_support.h"
#include "frk_nn.h"

/*
 * frk_elementwise_add_s8_mve: frk_elementwise_add_s8's outputs (same arguments), four elements per step:
 *   a = requantize((x1 + off1) * 2^left_shift, M1, s1),  b = the same for x2,
 *   y = clamp(requantize(a + b, M_out, s_out) + zp_out, act_min, act_max)
 * with TFLM's double rounding on four lanes (frk__mve_rescale: VQRDMULH, the sign fix, VRSHL), the last step
 * predicated (VCTP) to the elements left. The input at the real multiplier 0.5 (TFLM gives it to the input of
 * the larger scale: M = 2^30, shift 0) is exactly (x + offset) * 2^(left_shift - 1). The parameters are copied
 * into locals first: the int8 stores could alias them, and the compiler would reload them at every step.
 */
#if FRK_MVE
/* One step of the usual case on four lanes: h the raw half-scale input, o the other. */
static FRK_ALWAYS_INLINE int32x4_t frk__add_half_step(int32x4_t h, int32x4_t o, int32_t off_h, int32_t off_o,
                                                      int32_t ls, int32_t m_o, int32_t s_o, int32_t out_m,
                                                      int32_t out_s, int32_t out_off, int32x4_t lo, int32x4_t hi)
{
    int32x4_t y;
    h = vshlq_r_s32(vaddq_n_s32(h, off_h), ls - 1);
    o = vqrdmulhq_n_s32(vshlq_r_s32(vaddq_n_s32(o, off_o), ls), m_o);
    o = vrshlq_n_s32(FRK_MVE_SIGN_FIX_RIGHT(o), s_o);
    y = vqrdmulhq_n_s32(vaddq_s32(h, o), out_m);
    y = vaddq_n_s32(vrshlq_n_s32(FRK_MVE_SIGN_FIX_RIGHT(y), out_s), out_off);
    return vminq_s32(vmaxq_s32(y, lo), hi);
}

/* The usual case: xh at the real multiplier 0.5 ((x + offset) * 2^(left_shift - 1), exactly), the other input's
 * and the output's shifts right shifts. Whole steps unpredicated, then one predicated step for the rest (the
 * predicate on every step costs VCTP, VPST and a VPR round trip each time). */
static void frk__add_half(const frk_add_params *params, const int8_t *xh, const int8_t *xo, int32_t half1,
                          int32_t size, int8_t *output, const frk__mve_rq *rq)
{
    const int32_t off_h = half1 ? params->input1_offset : params->input2_offset;
    const int32_t off_o = half1 ? params->input2_offset : params->input1_offset;
    const int32_t m_o = half1 ? params->input2_multiplier : params->input1_multiplier;
    const int32_t s_o = half1 ? params->input2_shift : params->input1_shift;
    const int32_t ls = params->left_shift, out_m = params->output_multiplier, out_s = params->output_shift;
    const int32_t out_off = rq->output_offset;
    const int32x4_t lo = vdupq_n_s32(rq->act_min), hi = vdupq_n_s32(rq->act_max);
    const int8_t *const end = output + (size & ~3);
    for (; output < end; xh += 4, xo += 4, output += 4) {
        vstrbq_s32(output, frk__add_half_step(vldrbq_s32(xh), vldrbq_s32(xo), off_h, off_o, ls, m_o, s_o, out_m,
                                              out_s, out_off, lo, hi));
    }
    if (size & 3) {
        const mve_pred16_t p = vctp32q((uint32_t)(size & 3));
        vstrbq_p_s32(output, frk__add_half_step(vldrbq_z_s32(xh, p), vldrbq_z_s32(xo, p), off_h, off_o, ls, m_o,
                                                s_o, out_m, out_s, out_off, lo, hi), p);
    }
}
#endif

void frk_elementwise_add_s8_mve(const frk_add_params *params, const int8_t *input1, const int8_t *input2,
                                int32_t size, int8_t *output)
{
#if FRK_MVE
    const int32_t half1 = params->input1_multiplier == (1 << 30) && params->input1_shift == 0;
    const int32_t half2 = params->input2_multiplier == (1 << 30) && params->input2_shift == 0;
    const int32_t ls = params->left_shift;
    const int32_t out_m = params->output_multiplier, out_s = params->output_shift;
    frk__mve_rq rq;
    int32_t i;
    frk__mve_rq_prepare(&rq, params->output_offset, params->act_min, params->act_max);
    if ((half1 || half2) && !(half1 && half2) && out_s < 0 &&
        (half1 ? params->input2_shift : params->input1_shift) < 0) {
        /* the usual case: one input at 0.5, the other's and the output's shifts right shifts */
        frk__add_half(params, half1 ? input1 : input2, half1 ? input2 : input1, half1, size, output, &rq);
        return;
    }
    {
        const int32_t off1 = params->input1_offset, m1 = params->input1_multiplier, s1 = params->input1_shift;
        const int32_t off2 = params->input2_offset, m2 = params->input2_multiplier, s2 = params->input2_shift;
        for (i = 0; i < size; i += 4) {
            const mve_pred16_t p = vctp32q((uint32_t)(size - i));
            int32x4_t a = vshlq_r_s32(vaddq_n_s32(vldrbq_z_s32(input1 + i, p), off1), ls);
            int32x4_t b = vshlq_r_s32(vaddq_n_s32(vldrbq_z_s32(input2 + i, p), off2), ls);
            a = half1 ? vshrq_n_s32(a, 1) : frk__mve_rescale(a, m1, s1);
            b = half2 ? vshrq_n_s32(b, 1) : frk__mve_rescale(b, m2, s2);
            vstrbq_p_s32(output + i, frk__mve_requantize(vaddq_s32(a, b), out_m, out_s, &rq), p);
        }
    }
#else
    frk_elementwise_add_s8(params, input1, input2, size, output); /* the same arithmetic, one element at a time */
#endif
}
