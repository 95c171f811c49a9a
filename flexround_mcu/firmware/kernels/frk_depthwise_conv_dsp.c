/*
 * frk_depthwise_conv_dsp.c - DEPTHWISE_CONV_2D for the Cortex-M4/M7 (SXTB16, SMLABB/SMLATT, SMMULR), int8 and
 * int4 filters, depth multiplier 1, C % 4 == 0: the fast twins of frk_depthwise_conv_s8 / _s4 (the export uses
 * the portable kernels for other layers). Twin: flexround_mcu/sim/convolve.py depthwise_conv_s8 / _s4.
 */
#include "frk_layer_support.h"
#include "frk_dsp_support.h"
#include "frk_nn.h"

/* One tap (int8: a weight word per tap) or two taps (int4: a lane-nibbled word per pair, 6.2; a lone last tap
 * uses lanes 0 and 1 only, the exporter leaves the others 0) into the four accumulators of channels g..g+3: one
 * word of input per tap, SXTB16 / SXTB16-ROR8 into lanes (c, c+2) and (c+1, c+3), the weights as the same lanes
 * (int8: SXTB16 of the weight word; int4: AND of the word, shifted, with 0xF000F000, 4096 * w), one SMLABB/SMLATT
 * per MAC. tp walks the tap pointers, w the weights. On Arm each step is inline asm (11 instructions per int8
 * tap, 21 per pair of int4 taps, 13 registers), where GCC 12 spills the accumulators; the C forms compute the
 * same. */
#if FRK_DSP_ASM_LOOPS
#define FRK_DW_MACS(xw, wa, wb, xt)                                                                            \
    "sxtb16 %[" #xt "], %[" #xw "]\n\t"                                                                        \
    "sxtb16 %[" #xw "], %[" #xw "], ror #8\n\t"                                                                \
    "smlabb %[a0], %[" #wa "], %[" #xt "], %[a0]\n\t"                                                          \
    "smlatt %[a2], %[" #wa "], %[" #xt "], %[a2]\n\t"                                                          \
    "smlabb %[a1], %[" #wb "], %[" #xw "], %[a1]\n\t"                                                          \
    "smlatt %[a3], %[" #wb "], %[" #xw "], %[a3]\n\t"
#define FRK_DW_OPERANDS                                                                                        \
    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [tp] "+r"(tp), [w] "+r"(w),               \
      [pt] "=&r"(pt), [wv] "=&r"(wv), [wt] "=&r"(wt), [x] "=&r"(x), [xt] "=&r"(xt)                           \
    : [g] "r"(g), [m] "r"(0xF000F000u)                                                                         \
    : "memory"
#define FRK_DW_TAP_S8                                                                                          \
    "ldr    %[pt], [%[tp]], #4\n\t"                                                                            \
    "ldr    %[wv], [%[w]], #4\n\t"                                                                             \
    "ldr    %[x], [%[pt], %[g]]\n\t"                                                                           \
    "sxtb16 %[wt], %[wv]\n\t"                                                                                  \
    "sxtb16 %[wv], %[wv], ror #8\n\t" FRK_DW_MACS(x, wt, wv, xt)
/* One int4 tap from lanes (l02, l13) of the word in wv, the input from the tap pointer at ptr. */
#define FRK_DW_TAP_S4(ptr, l02, l13)                                                                           \
    "ldr    %[pt], " ptr "\n\t"                                                                                \
    "ldr    %[x], [%[pt], %[g]]\n\t"                                                                           \
    "and    %[wt], %[m], %[wv], lsl #" #l02 "\n\t"                                                             \
    "sxtb16 %[xt], %[x]\n\t"                                                                                   \
    "sxtb16 %[x], %[x], ror #8\n\t"                                                                            \
    "smlabb %[a0], %[wt], %[xt], %[a0]\n\t"                                                                    \
    "smlatt %[a2], %[wt], %[xt], %[a2]\n\t"                                                                    \
    "and    %[wt], %[m], %[wv], lsl #" #l13 "\n\t"                                                             \
    "smlabb %[a1], %[wt], %[x], %[a1]\n\t"                                                                     \
    "smlatt %[a3], %[wt], %[x], %[a3]\n\t"
#define FRK_DW_PAIR_S4                                                                                         \
    "ldr    %[wv], [%[w]], #4\n\t" FRK_DW_TAP_S4("[%[tp]], #8", 0, 4) FRK_DW_TAP_S4("[%[tp], #-4]", 8, 12)
#define FRK_DW_LAST_S4 "ldr    %[wv], [%[w]], #4\n\t" FRK_DW_TAP_S4("[%[tp]], #4", 0, 4)
/* One asm step on a[0..3], advancing *tpp and *wp. */
#define FRK_DW_STEP(text)                                                                                      \
    do {                                                                                                       \
        int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];                                                    \
        const int8_t *const *tp = *tpp;                                                                        \
        const uint8_t *w = *wp;                                                                                \
        const int8_t *pt;                                                                                      \
        uint32_t wv, wt, x, xt;                                                                                \
        __asm__ volatile(text FRK_DW_OPERANDS);                                                                \
        a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;                                                            \
        *tpp = tp;                                                                                             \
        *wp = w;                                                                                               \
    } while (0)
#endif

/* The C form of one tap: x the input word (channels c..c+3), l02 / l13 the weights of channels (c, c+2) and
 * (c+1, c+3) as int16 lanes. */
static inline void frk__dw_macs(int32_t a[4], uint32_t x, uint32_t l02, uint32_t l13)
{
    const uint32_t x02 = frk__sxtb16(x), x13 = frk__sxtb16_ror8(x);
    a[0] = frk__smlabb(l02, x02, a[0]);
    a[2] = frk__smlatt(l02, x02, a[2]);
    a[1] = frk__smlabb(l13, x13, a[1]);
    a[3] = frk__smlatt(l13, x13, a[3]);
}

static FRK_ALWAYS_INLINE void frk__dw_tap_s8(int32_t a[4], const int8_t *const **tpp, const uint8_t **wp, int32_t g)
{
#if FRK_DSP_ASM_LOOPS
    FRK_DW_STEP(FRK_DW_TAP_S8);
#else
    const uint32_t w4 = frk__read_u32(*wp);
    frk__dw_macs(a, frk__read_u32(*(*tpp)++ + g), frk__sxtb16(w4), frk__sxtb16_ror8(w4));
    *wp += 4;
#endif
}

static FRK_ALWAYS_INLINE void frk__dw_tap_s4(int32_t a[4], const int8_t *const **tpp, const uint8_t **wp, int32_t g)
{
#if FRK_DSP_ASM_LOOPS
    FRK_DW_STEP(FRK_DW_LAST_S4);
#else
    const uint32_t word = frk__read_u32(*wp);
    frk__dw_macs(a, frk__read_u32(*(*tpp)++ + g), frk__s4_lanes(word, 0), frk__s4_lanes(word, 1));
    *wp += 4;
#endif
}

static FRK_ALWAYS_INLINE void frk__dw_pair_s4(int32_t a[4], const int8_t *const **tpp, const uint8_t **wp, int32_t g)
{
#if FRK_DSP_ASM_LOOPS
    FRK_DW_STEP(FRK_DW_PAIR_S4);
#else
    const uint32_t word = frk__read_u32(*wp);
    frk__dw_macs(a, frk__read_u32((*tpp)[0] + g), frk__s4_lanes(word, 0), frk__s4_lanes(word, 1));
    frk__dw_macs(a, frk__read_u32((*tpp)[1] + g), frk__s4_lanes(word, 2), frk__s4_lanes(word, 3));
    *wp += 4;
    *tpp += 2;
#endif
}

#if FRK_DSP_ASM_LOOPS
/* All nine taps of a 3x3 filter for channels g..g+3 in one asm block, so the accumulators never leave their
 * registers (int8: 99 instructions per 36 MACs; int4: 4 pairs and a lone tap, 95). */
static FRK_ALWAYS_INLINE void frk__dw_group9(const int8_t *const *tp, int32_t g, const uint8_t *w, int32_t wbits,
                                             int32_t acc[4])
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int8_t *pt;
    uint32_t wv, wt, x, xt;
    if (wbits == 8) {
        __asm__ volatile(FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8
                         FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_TAP_S8 FRK_DW_OPERANDS);
    } else {
        __asm__ volatile(FRK_DW_PAIR_S4 FRK_DW_PAIR_S4 FRK_DW_PAIR_S4 FRK_DW_PAIR_S4 FRK_DW_LAST_S4
                         FRK_DW_OPERANDS);
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}
#endif

/* acc[0..3] += the contributions of all taps_n taps to channels g..g+3 (int4: acc holds 4096 * the sum).
 * taps_n is a constant (9) at the 3x3 call site, where the steps are straight-line code. */
static FRK_ALWAYS_INLINE void frk__dw_group(const int8_t *const *taps, int32_t g, const uint8_t *w, int32_t taps_n,
                                            int32_t wbits, int32_t acc[4])
{
    const int8_t *const *tp = taps;
    int32_t t;
    if (wbits == 8) {
        for (t = 0; t < taps_n; ++t) {
            frk__dw_tap_s8(acc, &tp, &w, g);
        }
    } else {
        for (t = 0; t + 1 < taps_n; t += 2) {
            frk__dw_pair_s4(acc, &tp, &w, g);
        }
        if (t < taps_n) {
            frk__dw_tap_s4(acc, &tp, &w, g);
        }
    }
}

#if FRK_DSP_ASM_LOOPS
/* d = SMMULR(d, m) + add with the sign fix of frk__output_stage_tensor taken from d (= 2 * acc), t a temporary. */
#if defined(FRK_TEST_BREAK_DSP_ROUNDING)
#define FRK_DW_ROUND(d, t, m, add) "smmlar %[" #t "], %[" #d "], %[" #m "], %[" #add "]\n\t" "mov %[" #d "], %[" #t "]\n\t"
#else
#define FRK_DW_ROUND(d, t, m, add)                                                                            \
    "smmlar %[" #t "], %[" #d "], %[" #m "], %[" #add "]\n\t"                                                 \
    "add    %[" #d "], %[" #t "], %[" #d "], asr #31\n\t"
#endif
#endif

/* The per-tensor epilogue of frk__output_stage_tensor for four adjacent outputs, given 2 * acc: SMMLAR adding
 * the rounding constant with the offset folded in, the sign fix, the shift, SSAT to int8, then the clamp on all
 * four bytes at once (SSUB8 sets a GE flag per byte, SEL keeps the larger / smaller): 24 instructions for 4
 * outputs on Arm. */
static FRK_ALWAYS_INLINE void frk__dw_store4(int8_t *out, int32_t d0, int32_t d1, int32_t d2, int32_t d3,
                                             const frk__rq_tensor *rq, uint32_t min4, uint32_t max4)
{
#if FRK_DSP_ASM_LOOPS
    uint32_t t;
    const int32_t m = rq->multiplier, e = rq->right, add = rq->add;
    __asm__ volatile(
        FRK_DW_ROUND(d0, t, m, add) FRK_DW_ROUND(d1, t, m, add) FRK_DW_ROUND(d2, t, m, add)
        FRK_DW_ROUND(d3, t, m, add)
        "asr    %[d0], %[d0], %[e]\n\t"
        "asr    %[d1], %[d1], %[e]\n\t"
        "asr    %[d2], %[d2], %[e]\n\t"
        "asr    %[d3], %[d3], %[e]\n\t"
        "ssat   %[d0], #8, %[d0]\n\t"
        "ssat   %[d1], #8, %[d1]\n\t"
        "ssat   %[d2], #8, %[d2]\n\t"
        "ssat   %[d3], #8, %[d3]\n\t"
        "bfi    %[d0], %[d1], #8, #8\n\t"
        "bfi    %[d0], %[d2], #16, #8\n\t"
        "bfi    %[d0], %[d3], #24, #8\n\t"
        "ssub8  %[t], %[d0], %[lo]\n\t"
        "sel    %[d0], %[d0], %[lo]\n\t"
        "ssub8  %[t], %[hi], %[d0]\n\t"
        "sel    %[d0], %[d0], %[hi]\n\t"
        "str    %[d0], [%[out]]\n\t"
        : [d0] "+r"(d0), [d1] "+r"(d1), [d2] "+r"(d2), [d3] "+r"(d3), [t] "=&r"(t)
        : [m] "r"(m), [e] "r"(e), [add] "r"(add), [lo] "r"(min4), [hi] "r"(max4), [out] "r"(out)
        : "cc", "memory");
#else
    (void)min4, (void)max4;
    out[0] = frk__output_stage_tensor(frk__asr32(d0, 1), rq);
    out[1] = frk__output_stage_tensor(frk__asr32(d1, 1), rq);
    out[2] = frk__output_stage_tensor(frk__asr32(d2, 1), rq);
    out[3] = frk__output_stage_tensor(frk__asr32(d3, 1), rq);
#endif
}

#if FRK_DSP_ASM_LOOPS
/* What the 3x3 per-tensor pixel loop reads through one register: the tap pointers, the layer's constants and
 * the pixel's output. The asm below addresses the fields by these offsets. The loop's channel offset g runs from
 * g0 to end in steps of 4 and is added to every tap pointer, the output and (times 4) the kernel_bias address:
 * a pixel inside the input keeps the taps of the image's first window and starts at g0 = its offset from it. */
typedef struct {
    const int8_t *taps[9];     /*  0 */
    int32_t multiplier;        /* 36 */
    int32_t right;             /* 40 */
    int32_t add;               /* 44 */
    uint32_t min4, max4;       /* 48, 52: act_min, act_max in every byte */
    uintptr_t out;             /* 56: the address of the pixel's output less the first channel offset */
    int32_t end;               /* 60: the channel offset past the last group */
} frk__dw9_ctx;

#define FRK_DW9_TAP_S8(t)                                                                                      \
    "ldr    %[pt], [%[ctx], #" #t "*4]\n\t"                                                                    \
    "ldr    %[wv], [%[w]], #4\n\t"                                                                             \
    "ldr    %[x], [%[pt], %[g]]\n\t"                                                                           \
    "sxtb16 %[wt], %[wv]\n\t"                                                                                  \
    "sxtb16 %[wv], %[wv], ror #8\n\t" FRK_DW_MACS(x, wt, wv, xt)
#define FRK_DW9_PAIR_S4(t, u)                                                                                  \
    "ldr    %[wv], [%[w]], #4\n\t" FRK_DW_TAP_S4("[%[ctx], #" #t "*4]", 0, 4)                                  \
        FRK_DW_TAP_S4("[%[ctx], #" #u "*4]", 8, 12)
#define FRK_DW9_TAPS_S8                                                                                        \
    FRK_DW9_TAP_S8(0) FRK_DW9_TAP_S8(1) FRK_DW9_TAP_S8(2) FRK_DW9_TAP_S8(3) FRK_DW9_TAP_S8(4)                 \
        FRK_DW9_TAP_S8(5) FRK_DW9_TAP_S8(6) FRK_DW9_TAP_S8(7) FRK_DW9_TAP_S8(8)
#define FRK_DW9_TAPS_S4                                                                                        \
    FRK_DW9_PAIR_S4(0, 1) FRK_DW9_PAIR_S4(2, 3) FRK_DW9_PAIR_S4(4, 5) FRK_DW9_PAIR_S4(6, 7)                   \
    "ldr    %[wv], [%[w]], #4\n\t" FRK_DW_TAP_S4("[%[ctx], #32]", 0, 4)

/* All channels of one output pixel, four per pass: the accumulators start at kernel_bias, take the nine taps
 * (taps: 99 instructions per 36 MACs int8, 95 int4), become 2 * acc (to_double: int8 doubles, int4 shifts
 * 4096 * (bias + sum) right by 11, exact), then the epilogue of frk__dw_store4 with the constants loaded from
 * ctx, stored as one word; 14 registers, nothing spilled. */
#define FRK_DW9_PIXEL(taps, to_double, clamp)                                                                  \
    "1:\n\t"                                                                                                   \
    "add    %[wt], %[kb], %[g], lsl #2\n\t"                                                                    \
    "ldrd   %[a0], %[a1], [%[wt]]\n\t"                                                                         \
    "ldrd   %[a2], %[a3], [%[wt], #8]\n\t" taps to_double(a0) to_double(a1) to_double(a2) to_double(a3)        \
    "ldrd   %[pt], %[wv], [%[ctx], #36]\n\t"                                                                   \
    "ldr    %[wt], [%[ctx], #44]\n\t" FRK_DW_ROUND(a0, x, pt, wt) FRK_DW_ROUND(a1, x, pt, wt)                 \
        FRK_DW_ROUND(a2, x, pt, wt) FRK_DW_ROUND(a3, x, pt, wt)                                                \
    "asr    %[a0], %[a0], %[wv]\n\t"                                                                           \
    "asr    %[a1], %[a1], %[wv]\n\t"                                                                           \
    "asr    %[a2], %[a2], %[wv]\n\t"                                                                           \
    "asr    %[a3], %[a3], %[wv]\n\t"                                                                           \
    "ssat   %[a0], #8, %[a0]\n\t"                                                                              \
    "ssat   %[a1], #8, %[a1]\n\t"                                                                              \
    "ssat   %[a2], #8, %[a2]\n\t"                                                                              \
    "ssat   %[a3], #8, %[a3]\n\t"                                                                              \
    "bfi    %[a0], %[a1], #8, #8\n\t"                                                                          \
    "bfi    %[a0], %[a2], #16, #8\n\t"                                                                         \
    "bfi    %[a0], %[a3], #24, #8\n\t"                                                                         \
    clamp "ldr    %[pt], [%[ctx], #56]\n\t"                                                                  \
    "str    %[a0], [%[pt], %[g]]\n\t"                                                                          \
    "add    %[g], %[g], #4\n\t"                                                                                \
    "ldr    %[pt], [%[ctx], #60]\n\t"                                                                          \
    "cmp    %[g], %[pt]\n\t"                                                                                   \
    "blt    1b\n\t"
#define FRK_DW9_CLAMP                                                                                          \
    "ldrd   %[pt], %[wv], [%[ctx], #48]\n\t"                                                                   \
    "ssub8  %[x], %[a0], %[pt]\n\t"                                                                            \
    "sel    %[a0], %[a0], %[pt]\n\t"                                                                           \
    "ssub8  %[x], %[wv], %[a0]\n\t"                                                                            \
    "sel    %[a0], %[a0], %[wv]\n\t"
#define FRK_DW9_DOUBLE_S8(a) "lsl    %[" #a "], %[" #a "], #1\n\t"
#define FRK_DW9_DOUBLE_S4(a) "asr    %[" #a "], %[" #a "], #11\n\t"

/* Every group of 4 channels of the pixel whose taps are in ctx (frk__dw9_ctx), 3x3 filter, per-tensor
 * epilogue; filter as for frk__dw_group, its groups one after the other. */
static FRK_ALWAYS_INLINE void frk__dw9_pixel(const frk__dw9_ctx *ctx, const uint8_t *filter, int32_t g0,
                                             uintptr_t kernel_bias, int32_t wbits, int32_t clamp)
{
    const uint8_t *w = filter;
    int32_t g = g0;
    int32_t a0, a1, a2, a3;
    const int8_t *pt;
    uint32_t wv, wt, x, xt;
#define FRK_DW9_OPERANDS                                                                                       \
    : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [w] "+r"(w), [g] "+r"(g),             \
      [pt] "=&r"(pt), [wv] "=&r"(wv), [wt] "=&r"(wt), [x] "=&r"(x), [xt] "=&r"(xt)                           \
    : [ctx] "r"(ctx), [kb] "r"(kernel_bias), [m] "r"(0xF000F000u)                                            \
    : "cc", "memory"
    /* without an activation clamp (act_min -128, act_max 127) SSAT's is the only one needed */
    if (wbits == 8 && clamp) {
        __asm__ volatile(FRK_DW9_PIXEL(FRK_DW9_TAPS_S8, FRK_DW9_DOUBLE_S8, FRK_DW9_CLAMP) FRK_DW9_OPERANDS);
    } else if (wbits == 8) {
        __asm__ volatile(FRK_DW9_PIXEL(FRK_DW9_TAPS_S8, FRK_DW9_DOUBLE_S8, "") FRK_DW9_OPERANDS);
    } else if (clamp) {
        __asm__ volatile(FRK_DW9_PIXEL(FRK_DW9_TAPS_S4, FRK_DW9_DOUBLE_S4, FRK_DW9_CLAMP) FRK_DW9_OPERANDS);
    } else {
        __asm__ volatile(FRK_DW9_PIXEL(FRK_DW9_TAPS_S4, FRK_DW9_DOUBLE_S4, "") FRK_DW9_OPERANDS);
    }
#undef FRK_DW9_OPERANDS
}
#endif

/*
 * Per output pixel, the KH*KW tap pointers are set once (frk__dw_window): a tap inside the input points at its C
 * channels, a padding tap at scratch, C bytes of the input zero point (with the offset in the bias it adds
 * exactly 0). Then channels go four at a time through frk__dw_group and the requantization; the 3x3 per-tensor
 * case runs all of a pixel's channels in frk__dw9_pixel, where a window inside the input needs no tap pointers
 * of its own (frk__dw9_ctx).
 */
static FRK_ALWAYS_INLINE void frk__depthwise_dsp(const frk_conv_params *params, const int32_t *multiplier,
                                                 const int32_t *shift, int32_t per_channel,
                                                 const frk_dims *input_dims, const int8_t *input,
                                                 const frk_dims *filter_dims, const void *filter,
                                                 const int32_t *kernel_bias, const frk_dims *output_dims,
                                                 int8_t *output, int8_t *scratch, int32_t wbits)
{
    const int32_t in_h = input_dims->h, in_w = input_dims->w, chans = input_dims->c;
    const int32_t row_reach = (filter_dims->h - 1) * params->dilation_h;
    const int32_t col_reach = (filter_dims->w - 1) * params->dilation_w;
    const int32_t k_h = filter_dims->h, k_w = filter_dims->w;
    const int32_t taps_n = k_h * k_w;
    const int32_t out_h = output_dims->h, out_w = output_dims->w;
    const int32_t output_offset = params->output_offset;
    const int32_t lo = params->act_min - output_offset;
    const int32_t hi = params->act_max - output_offset;
    const frk__rq rq_tensor = frk__rq_for(multiplier[0], shift[0]);
    frk__rq_tensor fast;
    const int32_t fast_epilogue = frk__rq_tensor_for(per_channel, multiplier[0], shift[0], output_offset,
                                                     params->act_min, params->act_max, &fast);
    const uint32_t min4 = frk__splat_s8(params->act_min), max4 = frk__splat_s8(params->act_max);
    /* filter bytes per group of 4 channels: a word per tap (int8), a word per pair of taps (int4) */
    const int32_t group_bytes = wbits == 8 ? 4 * taps_n : 4 * ((taps_n + 1) / 2);
    const int8_t *taps[FRK_DEPTHWISE_DSP_MAX_TAPS];
    int32_t b, oy, ox, g, j;
    int32_t tap_offset[FRK_DEPTHWISE_DSP_MAX_TAPS];
#if FRK_DSP_ASM_LOOPS
    int32_t t;
    frk__dw9_ctx inner, edge; /* for pixels whose window is inside the input, and the others */
    const int32_t pixel9 = taps_n == 9 && fast_epilogue; /* the 3x3 per-tensor case: all in one asm loop */
    const int32_t clamp = params->act_min > -128 || params->act_max < 127;
    inner.multiplier = fast.multiplier, inner.right = fast.right, inner.add = fast.add;
    inner.min4 = min4, inner.max4 = max4;
    edge = inner;
    edge.end = chans;
#endif

    frk__dw_tap_offsets(params, in_w, chans, k_h, k_w, tap_offset);
    frk__fill_s8(scratch, frk__splat_s8(-params->input_offset), chans);
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + b * in_h * in_w * chans;
#if FRK_DSP_ASM_LOOPS
        for (t = 0; pixel9 && t < 9; ++t) {
            inner.taps[t] = image + tap_offset[t];
        }
#endif
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy_origin = oy * params->stride_h - params->pad_top;
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix_origin = ox * params->stride_w - params->pad_left;
                const int32_t inside = frk__dw_inside(in_h, in_w, row_reach, col_reach, iy_origin, ix_origin);
#if FRK_DSP_ASM_LOOPS
                if (pixel9) {
                    if (inside) {
                        const int32_t g0 = (iy_origin * in_w + ix_origin) * chans;
                        inner.out = (uintptr_t)output - (uint32_t)g0;
                        inner.end = g0 + chans;
                        frk__dw9_pixel(&inner, (const uint8_t *)filter, g0,
                                       (uintptr_t)kernel_bias - 4u * (uint32_t)g0, wbits, clamp);
                    } else {
                        frk__dw_window(params, input_dims, image, scratch, k_h, k_w, iy_origin, ix_origin,
                                       tap_offset, 0, edge.taps);
                        edge.out = (uintptr_t)output;
                        frk__dw9_pixel(&edge, (const uint8_t *)filter, 0, (uintptr_t)kernel_bias, wbits, clamp);
                    }
                    output += chans;
                    continue;
                }
#endif
                frk__dw_window(params, input_dims, image, scratch, k_h, k_w, iy_origin, ix_origin, tap_offset,
                               inside, taps);
                for (g = 0; g < chans; g += 4) {
                    const uint8_t *w = (const uint8_t *)filter + (g / 4) * group_bytes;
                    int32_t acc[4];
                    acc[0] = kernel_bias[g], acc[1] = kernel_bias[g + 1]; /* int4: 4096 * the bias (6.2) */
                    acc[2] = kernel_bias[g + 2], acc[3] = kernel_bias[g + 3];
                    if (taps_n == 9) {
#if FRK_DSP_ASM_LOOPS
                        frk__dw_group9(taps, g, w, wbits, acc);
#else
                        frk__dw_group(taps, g, w, 9, wbits, acc);
#endif
                    } else {
                        frk__dw_group(taps, g, w, taps_n, wbits, acc);
                    }
                    if (fast_epilogue) {
                        /* 2 * acc (int4: 4096 * (bias + sum) >> 11 is exactly twice it); |acc| < 2^30 */
                        if (wbits == 4) {
                            frk__dw_store4(output + g, frk__asr32(acc[0], 11), frk__asr32(acc[1], 11),
                                           frk__asr32(acc[2], 11), frk__asr32(acc[3], 11), &fast, min4, max4);
                        } else {
                            frk__dw_store4(output + g, 2 * acc[0], 2 * acc[1], 2 * acc[2], 2 * acc[3], &fast, min4,
                                           max4);
                        }
                        continue;
                    }
                    if (wbits == 4) {
                        /* 4096 * (bias + sum(w*x)): exact in int32 (checked at export), shifted back exactly */
                        acc[0] = frk__asr32(acc[0], 12), acc[1] = frk__asr32(acc[1], 12);
                        acc[2] = frk__asr32(acc[2], 12), acc[3] = frk__asr32(acc[3], 12);
                    }
                    if (per_channel) {
                        for (j = 0; j < 4; ++j) {
                            const frk__rq rq = frk__rq_for(multiplier[g + j], shift[g + j]);
                            output[g + j] = frk__output_stage_dsp(acc[j], &rq, output_offset, lo, hi);
                        }
                    } else {
                        output[g] = frk__output_stage_dsp(acc[0], &rq_tensor, output_offset, lo, hi);
                        output[g + 1] = frk__output_stage_dsp(acc[1], &rq_tensor, output_offset, lo, hi);
                        output[g + 2] = frk__output_stage_dsp(acc[2], &rq_tensor, output_offset, lo, hi);
                        output[g + 3] = frk__output_stage_dsp(acc[3], &rq_tensor, output_offset, lo, hi);
                    }
                }
                output += chans;
            }
        }
    }
}

/*
 * frk_depthwise_conv_s8_dsp: frk_depthwise_conv_s8's outputs for depth multiplier 1 and C % 4 == 0, with
 *   filter       int8, for each group of 4 channels the KH*KW taps' 4 weights: [C/4, KH*KW, 4] (6.2);
 *   kernel_bias  bias[c] + input_offset * sum over taps of w[c] (6.1), never NULL;
 *   scratch      C bytes; KH*KW at most FRK_DEPTHWISE_DSP_MAX_TAPS.
 */
void frk_depthwise_conv_s8_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const int8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__depthwise_dsp(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                       output_dims, output, scratch, 8);
}

/*
 * frk_depthwise_conv_s4_dsp: frk_depthwise_conv_s4's outputs under the same conditions, with the filter as
 * words, for each group of 4 channels one per pair of taps (t, t+1): the lane-nibbled word of w[t][c..c+3],
 * w[t+1][c..c+3] (0 past the last tap): [C/4, ceil(KH*KW/2), 4] bytes (6.2), and kernel_bias
 * 4096 * (bias + input_offset * sum(w)): the accumulators start there and hold 4096 times the sum.
 */
void frk_depthwise_conv_s4_dsp(const frk_conv_params *params, const int32_t *multiplier, const int32_t *shift,
                               int32_t per_channel, const frk_dims *input_dims, const int8_t *input,
                               const frk_dims *filter_dims, const uint8_t *filter, const int32_t *kernel_bias,
                               const frk_dims *output_dims, int8_t *output, int8_t *scratch)
{
    frk__depthwise_dsp(params, multiplier, shift, per_channel, input_dims, input, filter_dims, filter, kernel_bias,
                       output_dims, output, scratch, 4);
}
