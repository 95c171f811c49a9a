"""One Cortex-M firmware image that runs many fast-kernel cases (tests/dsp_cases.py) under QEMU.

    write_image(cases, folder)                -> folder/frk_dsp_cases.c (data, case table and main)
    build_image(folder, target, extra_cflags) -> ELF (arm-none-eabi-gcc; the kernels and flexround_mcu/firmware/boards/ files)
    run_image(elf, target)                    -> ImageRun (exit code, lines, per-kind counts)

The generated main() runs, for every case, the portable kernel and the fast kernel on the same data (the fast
one with the export's filter layout, kernel_bias, scratch and, for ADD, table and input order; the pooling
kernels with the portable one's arguments, as the export calls them), compares every
output byte of both with each other and with the numpy twin's output embedded in the image, checks guard bytes
around the outputs and the scratch and that a second run of the fast kernel over a differently pre-filled output
writes the same bytes, prints one line per failing case ("FAIL <index> <kind>/<label>: ..."), one line per kernel
("kind <kind>: N cases, M failed"), "dsp kernels: N cases, P passed, M failed", the harness summary line
"SUMMARY inputs=N mismatches=M", and returns 1 when any case failed (0 otherwise); the board's startup exits
QEMU with that code through semihosting SYS_EXIT_EXTENDED.

Inputs and outputs sit at addresses 0..3 bytes past a word boundary (case index % 4), as activations in an arena
may; the scratch is 4-byte aligned, as the export declares it. Build flags are the exported Makefile's
(flexround_mcu/templates/Makefile.j2) with the target's CPU flags from flexround_mcu/toolchain/targets.py.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flexround_mcu.toolchain.targets import BOARD_SOURCES, BOARDS_DIR, TARGETS

from tests import c_kernels as ck
from tests import dsp_cases as dc

SOURCE_NAME = "frk_dsp_cases.c"
WARN_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
GUARD = 16

KIND_ENUM = {k: f"FRK_T_{k.upper()}" for k in dc.KINDS}

RUNNER_C = r"""
/* ---- the runner ------------------------------------------------------------------------------------------ */
#define FRK_T_GUARD GUARDBYTES
static int8_t frk_t_out_p[FRK_T_GUARD + FRK_T_MAX_OUT + 3 + FRK_T_GUARD] __attribute__((aligned(4)));
static int8_t frk_t_out_f[FRK_T_GUARD + FRK_T_MAX_OUT + 3 + FRK_T_GUARD] __attribute__((aligned(4)));
static int8_t frk_t_out_f2[FRK_T_GUARD + FRK_T_MAX_OUT + 3 + FRK_T_GUARD] __attribute__((aligned(4)));
static int8_t frk_t_scratch[FRK_T_GUARD + FRK_T_MAX_SCRATCH + FRK_T_GUARD] __attribute__((aligned(4)));

static void frk_t_fill(int8_t *p, int32_t n, int8_t v)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        p[i] = v;
    }
}

static int32_t frk_t_all(const int8_t *p, int32_t n, int8_t v)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        if (p[i] != v) {
            return 0;
        }
    }
    return 1;
}

/* index of the first difference, or -1; *count gets the number of differing bytes */
static int32_t frk_t_diff(const int8_t *a, const int8_t *b, int32_t n, int32_t *count)
{
    int32_t i, first = -1;
    *count = 0;
    for (i = 0; i < n; ++i) {
        if (a[i] != b[i]) {
            if (first < 0) {
                first = i;
            }
            ++*count;
        }
    }
    return first;
}

static char *frk_t_text(char *p, const char *s)
{
    while (*s != '\0') {
        *p++ = *s++;
    }
    return p;
}

static char *frk_t_int(char *p, int32_t v)
{
    char digits[12];
    int32_t n = 0;
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    if (v < 0) {
        *p++ = '-';
    }
    do {
        digits[n++] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u != 0u);
    while (n > 0) {
        *p++ = digits[--n];
    }
    return p;
}

static void frk_t_run_portable(const frk_case *c, int8_t *out)
{
    switch (c->kind) {
    case FRK_T_CONV_S8:
        frk_convolve_s8(&c->conv, c->mult, c->shift, c->per_channel, &c->in, c->x, &c->filt,
                        (const int8_t *)c->w_portable, c->bias, &c->out, out);
        break;
    case FRK_T_CONV_S4:
        frk_convolve_s4(&c->conv, c->mult, c->shift, c->per_channel, &c->in, c->x, &c->filt,
                        (const uint8_t *)c->w_portable, c->bias, &c->out, out);
        break;
    case FRK_T_DW_S8:
        frk_depthwise_conv_s8(&c->conv, c->mult, c->shift, c->per_channel, &c->in, c->x, &c->filt,
                              (const int8_t *)c->w_portable, c->bias, &c->out, out);
        break;
    case FRK_T_DW_S4:
        frk_depthwise_conv_s4(&c->conv, c->mult, c->shift, c->per_channel, &c->in, c->x, &c->filt,
                              (const uint8_t *)c->w_portable, c->bias, &c->out, out);
        break;
    case FRK_T_FC_S8:
        frk_fully_connected_s8(&c->fc, c->mult, c->shift, c->per_channel, c->batch, c->depth, c->x,
                               (const int8_t *)c->w_portable, c->bias, c->cout, out);
        break;
    case FRK_T_FC_S4:
        frk_fully_connected_s4(&c->fc, c->mult, c->shift, c->per_channel, c->batch, c->depth, c->x,
                               (const uint8_t *)c->w_portable, c->bias, c->cout, out);
        break;
    case FRK_T_CONV_S2:
        frk_convolve_s2(&c->conv, c->mult, c->shift, c->per_channel, &c->in, c->x, &c->filt,
                        (const uint8_t *)c->w_portable, c->bias, &c->out, out);
        break;
    case FRK_T_FC_S2:
        frk_fully_connected_s2(&c->fc, c->mult, c->shift, c->per_channel, c->batch, c->depth, c->x,
                               (const uint8_t *)c->w_portable, c->bias, c->cout, out);
        break;
    case FRK_T_AVGPOOL:
        frk_avgpool_s8(&c->pool, &c->in, c->x, c->filter_h, c->filter_w, &c->out, out);
        break;
    case FRK_T_MAXPOOL:
        frk_max_pool_s8(&c->pool, &c->in, c->x, c->filter_h, c->filter_w, &c->out, out);
        break;
    default:
        frk_elementwise_add_s8(&c->add, c->x, c->x2, c->size, out);
        break;
    }
}

static void frk_t_run_fast(const frk_case *c, int8_t *out, int8_t *scratch)
{
    switch (c->kind) {
    case FRK_T_CONV_S8:
        FRK_T_CONV_S8_FAST(&c->conv, c->mult, c->shift, c->per_channel, &c->in, c->x, &c->filt,
                            (const int8_t *)c->w_fast, c->kernel_bias, &c->out, out, scratch);
        break;
    case FRK_T_CONV_S4:
        FRK_T_CONV_S4_FAST(&c->conv, c->mult, c->shift, c->per_channel, &c->in, c->x, &c->filt,
                            (const uint8_t *)c->w_fast, c->kernel_bias, &c->out, out, scratch);
        break;
    case FRK_T_DW_S8:
        FRK_T_DW_S8_FAST(&c->conv, c->mult, c->shift, c->per_channel, &c->in, c->x, &c->filt,
                                  (const int8_t *)c->w_fast, c->kernel_bias, &c->out, out, scratch);
        break;
    case FRK_T_DW_S4:
        FRK_T_DW_S4_FAST(&c->conv, c->mult, c->shift, c->per_channel, &c->in, c->x, &c->filt,
                                  (const uint8_t *)c->w_fast, c->kernel_bias, &c->out, out, scratch);
        break;
    case FRK_T_FC_S8:
        FRK_T_FC_S8_FAST(&c->fc, c->mult, c->shift, c->per_channel, c->batch, c->depth, c->x,
                                   (const int8_t *)c->w_fast, c->kernel_bias, c->cout, out, scratch);
        break;
    case FRK_T_FC_S4:
        FRK_T_FC_S4_FAST(&c->fc, c->mult, c->shift, c->per_channel, c->batch, c->depth, c->x,
                                   (const uint8_t *)c->w_fast, c->kernel_bias, c->cout, out, scratch);
        break;
    case FRK_T_CONV_S2:
        FRK_T_CONV_S2_FAST(&c->conv, c->mult, c->shift, c->per_channel, &c->in, c->x, &c->filt,
                            (const uint8_t *)c->w_fast, c->kernel_bias, &c->out, out, scratch);
        break;
    case FRK_T_FC_S2:
        FRK_T_FC_S2_FAST(&c->fc, c->mult, c->shift, c->per_channel, c->batch, c->depth, c->x,
                                   (const uint8_t *)c->w_fast, c->kernel_bias, c->cout, out, scratch);
        break;
    case FRK_T_AVGPOOL:
        FRK_T_AVGPOOL_FAST(&c->pool, &c->in, c->x, c->filter_h, c->filter_w, &c->out, out);
        break;
    case FRK_T_MAXPOOL:
        FRK_T_MAXPOOL_FAST(&c->pool, &c->in, c->x, c->filter_h, c->filter_w, &c->out, out);
        break;
    default:
#if defined(FRK_T_ADD_MVE) /* the Helium ADD: the portable kernel's arguments */
        frk_elementwise_add_s8_mve(&c->add, c->x, c->x2, c->size, out);
#else
        if (c->swap) { /* the export passes the half-scale input first */
            frk_elementwise_add_s8_dsp(&c->add, c->x2, c->x, c->size, out, c->table);
        } else {
            frk_elementwise_add_s8_dsp(&c->add, c->x, c->x2, c->size, out, c->table);
        }
#endif
        break;
    }
}

static void frk_t_report(int32_t index, const frk_case *c, const char *what, const int8_t *got,
                         const int8_t *want, int32_t at, int32_t count)
{
    char line[200];
    char *p = frk_t_text(line, "FAIL ");
    p = frk_t_int(p, index);
    p = frk_t_text(p, " ");
    p = frk_t_text(p, frk_t_kind_names[c->kind]);
    p = frk_t_text(p, "/");
    p = frk_t_text(p, c->label);
    p = frk_t_text(p, ": ");
    p = frk_t_text(p, what);
    if (got != 0) {
        p = frk_t_text(p, " at byte ");
        p = frk_t_int(p, at);
        p = frk_t_text(p, ": ");
        p = frk_t_int(p, got[at]);
        p = frk_t_text(p, " != ");
        p = frk_t_int(p, want[at]);
        p = frk_t_text(p, " (");
        p = frk_t_int(p, count);
        p = frk_t_text(p, " of ");
        p = frk_t_int(p, c->out_bytes);
        p = frk_t_text(p, " bytes differ)");
    }
    *p = '\0';
    frk_board_puts(line);
}

/* 0 when the case passes, else 1 (after printing why). */
static int32_t frk_t_check(int32_t index, const frk_case *c)
{
    const int32_t n = c->out_bytes;
    const int32_t span = FRK_T_GUARD + c->misalign + n + FRK_T_GUARD;
    int8_t *const yp = frk_t_out_p + FRK_T_GUARD + c->misalign;
    int8_t *const yf = frk_t_out_f + FRK_T_GUARD + c->misalign;
    int8_t *const yf2 = frk_t_out_f2 + FRK_T_GUARD + c->misalign;
    int8_t *const scratch = c->scratch_bytes > 0 ? frk_t_scratch + FRK_T_GUARD : (int8_t *)0;
    int32_t at, count;

    frk_t_fill(frk_t_out_p, span, 0x55);
    frk_t_run_portable(c, yp);
    frk_t_fill(frk_t_out_f, span, 0x55);
    frk_t_fill(frk_t_out_f2, span, (int8_t)-0x56);
    frk_t_fill(frk_t_scratch, FRK_T_GUARD + c->scratch_bytes + FRK_T_GUARD, 0x3C);
    frk_t_run_fast(c, yf, scratch);
    frk_t_run_fast(c, yf2, scratch);

    if (!frk_t_all(frk_t_out_f, FRK_T_GUARD + c->misalign, 0x55) || !frk_t_all(yf + n, FRK_T_GUARD, 0x55) ||
        !frk_t_all(frk_t_out_f2, FRK_T_GUARD + c->misalign, (int8_t)-0x56) ||
        !frk_t_all(yf2 + n, FRK_T_GUARD, (int8_t)-0x56)) {
        frk_t_report(index, c, "the fast kernel wrote outside its output", 0, 0, 0, 0);
        return 1;
    }
    if (!frk_t_all(frk_t_scratch, FRK_T_GUARD, 0x3C) ||
        !frk_t_all(frk_t_scratch + FRK_T_GUARD + c->scratch_bytes, FRK_T_GUARD, 0x3C)) {
        frk_t_report(index, c, "the fast kernel wrote outside its scratch", 0, 0, 0, 0);
        return 1;
    }
    if (!frk_t_all(frk_t_out_p, FRK_T_GUARD + c->misalign, 0x55) || !frk_t_all(yp + n, FRK_T_GUARD, 0x55)) {
        frk_t_report(index, c, "the portable kernel wrote outside its output", 0, 0, 0, 0);
        return 1;
    }
    at = frk_t_diff(yf, yf2, n, &count);
    if (at >= 0) {
        frk_t_report(index, c, "the fast kernel left output bytes unwritten", yf, yf2, at, count);
        return 1;
    }
    at = frk_t_diff(yf, yp, n, &count);
    if (at >= 0) {
        frk_t_report(index, c, "fast != portable", yf, yp, at, count);
        return 1;
    }
    at = frk_t_diff(yp, c->expected, n, &count);
    if (at >= 0) {
        frk_t_report(index, c, "portable (and fast) != numpy twin", yp, c->expected, at, count);
        return 1;
    }
    return 0;
}

int main(void)
{
    int32_t i, k, failed = 0;
    int32_t kind_cases[FRK_T_KINDS], kind_failed[FRK_T_KINDS];
    char line[160];
    char *p;

    for (k = 0; k < FRK_T_KINDS; ++k) {
        kind_cases[k] = 0;
        kind_failed[k] = 0;
    }
#if defined(__ARM_FEATURE_DSP) && !defined(FRK_NO_DSP_ASM)
    frk_board_puts("dsp instructions: yes");
#else
    frk_board_puts("dsp instructions: no");
#endif
#if defined(FRK_TEST_BREAK_DSP_ROUNDING)
    frk_board_puts("build: FRK_TEST_BREAK_DSP_ROUNDING (a deliberately wrong epilogue)");
#endif
    for (i = 0; i < FRK_T_CASES; ++i) {
        const int32_t bad = frk_t_check(i, &frk_t_cases[i]);
        kind_cases[frk_t_cases[i].kind] += 1;
        kind_failed[frk_t_cases[i].kind] += bad;
        failed += bad;
    }
    for (k = 0; k < FRK_T_KINDS; ++k) {
        p = frk_t_text(line, "kind ");
        p = frk_t_text(p, frk_t_kind_names[k]);
        p = frk_t_text(p, ": ");
        p = frk_t_int(p, kind_cases[k]);
        p = frk_t_text(p, " cases, ");
        p = frk_t_int(p, kind_failed[k]);
        p = frk_t_text(p, " failed");
        *p = '\0';
        frk_board_puts(line);
    }
    p = frk_t_text(line, "dsp kernels: ");
    p = frk_t_int(p, FRK_T_CASES);
    p = frk_t_text(p, " cases, ");
    p = frk_t_int(p, FRK_T_CASES - failed);
    p = frk_t_text(p, " passed, ");
    p = frk_t_int(p, failed);
    p = frk_t_text(p, " failed");
    *p = '\0';
    frk_board_puts(line);
    p = frk_t_text(line, "SUMMARY inputs=");
    p = frk_t_int(p, FRK_T_CASES);
    p = frk_t_text(p, " mismatches=");
    p = frk_t_int(p, failed);
    *p = '\0';
    frk_board_puts(line);
    return failed == 0 ? 0 : 1;
}
""".replace("GUARDBYTES", str(GUARD))

HEADER_C = r"""/* Generated by tests/dsp_firmware.py from tests/dsp_cases.py (seed @SEED@): @CASES@ cases of the fast
 * kernels, each run against its portable twin and the numpy twin's output. Do not edit. */
#include <stdint.h>

#include "frk_board.h"
#include "frk_nn.h"

#define FRK_T_CASES @CASES@
#define FRK_T_KINDS @KINDS@
#define FRK_T_MAX_OUT @MAXOUT@
#define FRK_T_MAX_SCRATCH @MAXSCRATCH@
#define FRK_T_DATA __attribute__((aligned(4)))

enum { @ENUMS@ };
static const char *const frk_t_kind_names[FRK_T_KINDS] = { @NAMES@ };

typedef struct {
    int32_t kind;
    const char *label;
    int32_t per_channel;
    frk_conv_params conv;
    frk_fc_params fc;
    frk_add_params add;
    frk_pool_params pool;
    int32_t filter_h, filter_w;
    frk_dims in, filt, out;
    int32_t batch, depth, cout, size;
    int32_t out_bytes, scratch_bytes, misalign;
    const int8_t *x, *x2;
    const void *w_portable, *w_fast;
    const int32_t *bias, *kernel_bias, *mult, *shift, *table;
    int32_t swap;
    const int8_t *expected;
} frk_case;
"""


def _values(a) -> str:
    flat = np.asarray(a).reshape(-1).astype(np.int64)
    parts = [",".join(str(int(v)) for v in flat[i:i + 40]) for i in range(0, flat.size, 40)]
    return ",\n    ".join(parts) if parts else "0"


def _array(name: str, ctype: str, values, lead: int = 0) -> str:
    v = np.concatenate([np.zeros(lead, np.int64), np.asarray(values).reshape(-1).astype(np.int64)])
    return f"static const {ctype} {name}[{max(v.size, 1)}] FRK_T_DATA = {{\n    {_values(v)}}};\n"


def _dims(shape) -> str:
    return "{" + ", ".join(str(int(d)) for d in shape) + "}"


@dataclass
class ImageInfo:
    source: Path
    cases: int
    per_kind: dict[str, int]
    data_bytes: int  # bytes of the embedded arrays


def write_image(cases: list[dc.DspCase], folder, seed: int | str = "?") -> ImageInfo:
    """folder/frk_dsp_cases.c holding `cases` (fast ones only: choice.fast) and the runner's main()."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data: list[str] = []
    entries: list[str] = []
    data_bytes = 0
    max_out, max_scratch = 1, 4
    for i, case in enumerate(cases):
        assert case.choice is not None and case.choice.fast, case.name
        tag = f"c{i}"
        a, ch = case.args, case.choice
        mis = i % 4
        fields = [f".kind = {KIND_ENUM[case.kind]}", f'.label = "{case.label}"', f".misalign = {mis}",
                  f".out_bytes = {case.expected.size}"]

        def put(name, ctype, values, lead=0):
            nonlocal data_bytes
            data.append(_array(name, ctype, values, lead))
            data_bytes += (np.asarray(values).size + lead) * (4 if ctype.endswith("32_t") else 1)
            return f"{name} + {lead}" if lead else name

        fields.append(f".expected = {put(tag + '_y', 'int8_t', case.expected)}")
        max_out = max(max_out, case.expected.size)
        if case.kind == "add":
            fields += [f".x = {put(tag + '_x1', 'int8_t', a['x1'], mis)}",
                       f".x2 = {put(tag + '_x2', 'int8_t', a['x2'], mis)}", f".swap = {int(ch.swap_inputs)}",
                       f".size = {a['x1'].size}"]
            if ch.table is not None:
                fields.append(f".table = {put(tag + '_t', 'int32_t', ch.table)}")
            add = [a[k] for k in ("input1_offset", "input1_multiplier", "input1_shift", "input2_offset",
                                  "input2_multiplier", "input2_shift", "left_shift", "output_offset",
                                  "output_multiplier", "output_shift", "act_min", "act_max")]
            fields.append(".add = {" + ", ".join(str(int(v)) for v in add) + "}")
        elif case.is_pool:  # the portable kernel's arguments: nothing from the export but the name
            pool = [*a["stride"], a["padding"][0], a["padding"][1], a["act_min"], a["act_max"]]
            fields += [f".x = {put(tag + '_x', 'int8_t', a['x'], mis)}",
                       ".pool = {" + ", ".join(str(int(v)) for v in pool) + "}",
                       f".filter_h = {int(a['filter_hw'][0])}", f".filter_w = {int(a['filter_hw'][1])}",
                       f".in = {_dims(a['x'].shape)}", f".out = {_dims(case.expected.shape)}"]
        else:
            w = a["w"]
            cout = w.shape[-1] if case.family == "dw" else w.shape[0]
            m, s, per_channel = ck.quant_tables(a["multiplier"], a["shift"], cout, case.decoy_seed)
            wtype = "uint8_t" if case.bits < 8 else "int8_t"
            fields += [f".x = {put(tag + '_x', 'int8_t', a['x'], mis)}",
                       f".w_portable = {put(tag + '_wp', wtype, case.portable_filter())}",
                       f".w_fast = {put(tag + '_wf', wtype, ch.filter_values)}",
                       f".kernel_bias = {put(tag + '_kb', 'int32_t', ch.kernel_bias)}",
                       f".mult = {put(tag + '_m', 'int32_t', m)}", f".shift = {put(tag + '_s', 'int32_t', s)}",
                       f".per_channel = {per_channel}", f".scratch_bytes = {ch.scratch_bytes}"]
            max_scratch = max(max_scratch, ch.scratch_bytes)
            if a["bias"] is not None:
                fields.append(f".bias = {put(tag + '_b', 'int32_t', a['bias'])}")
            if case.family == "fc":
                batch = a["x"].shape[0]
                fields += [f".batch = {batch}", f".depth = {a['x'].size // batch}", f".cout = {cout}",
                           f".fc = {{{a['input_offset']}, {a['output_offset']}, {a['act_min']}, {a['act_max']}}}"]
            else:
                conv = [a["input_offset"], a["output_offset"], *a["stride"], *a["dilation"], a["padding"][0],
                        a["padding"][1], a["act_min"], a["act_max"], a.get("depth_multiplier", 1)]
                fields += [".conv = {" + ", ".join(str(int(v)) for v in conv) + "}",
                           f".in = {_dims(a['x'].shape)}", f".filt = {_dims(w.shape)}",
                           f".out = {_dims(case.expected.shape)}"]
        entries.append("    {" + ", ".join(fields) + "},")
    per_kind = dc.summary(cases)
    subst = {"@SEED@": str(seed), "@CASES@": str(len(cases)), "@KINDS@": str(len(dc.KINDS)),
             "@MAXOUT@": str(max_out), "@MAXSCRATCH@": str(max_scratch),
             "@ENUMS@": ", ".join(KIND_ENUM[k] for k in dc.KINDS), "@NAMES@": ", ".join(f'"{k}"' for k in dc.KINDS)}
    header = HEADER_C
    for key, value in subst.items():
        header = header.replace(key, value)
    header += "".join(f"#define FRK_T_{kind.upper()}_FAST {name}\n" for kind, name in fast_names(cases).items())
    add_names = {c.choice.name for c in cases if c.kind == "add"}
    assert len(add_names) <= 1, add_names
    if add_names == {"frk_elementwise_add_s8_mve"}:
        header += "#define FRK_T_ADD_MVE 1\n"
    table = "static const frk_case frk_t_cases[FRK_T_CASES] = {\n" + "\n".join(entries) + "\n};\n"
    source = folder / SOURCE_NAME
    source.write_text(header + "\n" + "".join(data) + "\n" + table + RUNNER_C)
    return ImageInfo(source, len(cases), per_kind, data_bytes)


def fast_names(cases) -> dict[str, str]:
    """The fast kernel the image calls for conv / dw / fc at each width and the pools: the cases' choice (_dsp or
    the _mve kernel, one per kind), the _dsp one for a kind without cases."""
    names = {}
    for kind, base in (("conv_s8", "frk_convolve_s8"), ("conv_s4", "frk_convolve_s4"),
                       ("dw_s8", "frk_depthwise_conv_s8"), ("dw_s4", "frk_depthwise_conv_s4"),
                       ("fc_s8", "frk_fully_connected_s8"), ("fc_s4", "frk_fully_connected_s4"),
                       ("conv_s2", "frk_convolve_s2"), ("fc_s2", "frk_fully_connected_s2"),
                       ("avgpool", "frk_avgpool_s8"), ("maxpool", "frk_max_pool_s8")):
        chosen = {c.choice.name for c in cases if c.kind == kind}
        assert len(chosen) <= 1, (kind, chosen)
        names[kind] = chosen.pop() if chosen else base + "_dsp"
    return names


# ---------------------------------------------------------------------------------------------- build / run
def _run(cmd: list[str], timeout: float = 300) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or proc.stderr.strip():
        raise RuntimeError(f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")


def build_image(folder, target: str, extra_cflags=(), build_dir=None) -> Path:
    """The image for `target` (cortex-m4 / cortex-m7 / ...), flags as in the exported Makefile; extra_cflags
    (e.g. -DFRK_TEST_BREAK_DSP_ROUNDING) go to every file. Returns the ELF."""
    t = TARGETS[target]
    folder = Path(folder)
    tag = "".join("-" + re.sub(r"\W+", "", f).lower() for f in extra_cflags)
    out = Path(build_dir) if build_dir else folder / f"build-{target}{tag}"
    out.mkdir(parents=True, exist_ok=True)
    cflags = [*WARN_FLAGS, "-O2", *t.cpu_flags, "-ffunction-sections", "-fdata-sections", *extra_cflags]
    cpp = [f"-I{ck.KERNEL_DIR}", f"-I{BOARDS_DIR}", "-DFRK_BOARD"]
    objects = []
    sources = [(folder / SOURCE_NAME, ())] + [(p, ()) for p in ck.kernel_sources()] + \
              [(BOARDS_DIR / b, ("-fno-tree-loop-distribute-patterns",)) for b in BOARD_SOURCES]
    procs = []
    for src, more in sources:
        obj = out / (src.stem + ".o")
        objects.append(obj)
        cmd = [t.cc, *cpp, *cflags, *more, "-c", str(src), "-o", str(obj)]
        procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        if len(procs) >= 2:  # two compilers at a time (the machine is shared)
            _wait(procs.pop(0))
    for p in procs:
        _wait(p)
    elf = out / "dsp_cases.elf"
    _run([t.cc, *cflags, "-nostdlib", f"-L{BOARDS_DIR}", "-T", str(BOARDS_DIR / t.linker_script),
          "-Wl,--gc-sections", f"-Wl,-Map={out / 'dsp_cases.map'}", *map(str, objects), "-lgcc", "-o", str(elf)])
    return elf


def _wait(item) -> None:
    cmd, proc = item
    stdout, stderr = proc.communicate(timeout=300)
    if proc.returncode != 0 or stderr.strip():
        raise RuntimeError(f"{' '.join(cmd)}\n{stdout}{stderr}")


@dataclass
class ImageRun:
    returncode: int
    lines: list[str]
    cases: int | None
    passed: int | None
    failed: int | None
    per_kind: dict[str, tuple[int, int]]   # kind -> (cases, failed)
    failures: list[str]
    dsp_instructions: bool | None

    def describe(self) -> str:
        return "\n".join(self.lines[-60:])


_KIND = re.compile(r"^kind (\w+): (\d+) cases, (\d+) failed$")
_TOTAL = re.compile(r"^dsp kernels: (\d+) cases, (\d+) passed, (\d+) failed$")


def run_image(elf, target: str, timeout: float = 120) -> ImageRun:
    """qemu-system-arm -M <board> with semihosting, stopped by `timeout` after `timeout` seconds (exit 124)."""
    t = TARGETS[target]
    cmd = ["timeout", str(int(timeout)), "qemu-system-arm", "-M", t.qemu_machine, "-nographic",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                          timeout=timeout + 30)
    lines = (proc.stderr + proc.stdout).splitlines()  # semihosting writes to QEMU's stderr
    per_kind = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in map(_KIND.match, lines) if m}
    total = next((m for m in map(_TOTAL.match, lines) if m), None)
    dsp = "dsp instructions: yes" in lines if any(ln.startswith("dsp instructions:") for ln in lines) else None
    return ImageRun(proc.returncode, lines, *(int(v) for v in total.groups()) if total else (None, None, None),
                    per_kind=per_kind, failures=[ln for ln in lines if ln.startswith("FAIL ")],
                    dsp_instructions=dsp)


def main(argv=None) -> int:
    """python -m tests.dsp_firmware FOLDER [TARGET] [SEED]: write, build and run the image (for debugging)."""
    import sys
    args = list(sys.argv[1:] if argv is None else argv)
    folder = Path(args[0])
    target = args[1] if len(args) > 1 else "cortex-m7"
    seed = int(args[2]) if len(args) > 2 else 1
    info = write_image(dc.make_cases(seed), folder, seed)
    run = run_image(build_image(folder, target), target)
    print(run.describe())
    print(f"{info.cases} cases, {info.data_bytes} data bytes, exit code {run.returncode}")
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
