/*
 * insncount.c - a QEMU TCG plugin that counts guest instructions, overall and inside a marked region.
 *
 * Debian's qemu-system-arm is built with plugin support but ships no <qemu-plugin.h>, so the few declarations
 * of plugin API version 1 (QEMU 7.2) used here are written out by hand. Build (flexround_mcu/toolchain/qemu.py
 * does it on demand):   gcc -O2 -shared -fPIC -fvisibility=hidden -o libinsncount.so insncount.c
 * Run:   qemu-system-arm ... -plugin ./libinsncount.so,outfile=counts.txt,begin=0xADDR,end=0xADDR[,layer=0xADDR]
 *
 * Every executed instruction adds 1 to `total` (an inline add, no callback). A region starts each time the
 * instruction at `begin` executes and ends at the next execution of the one at `end`; `region` sums the
 * instructions counted between the two, `regions` counts the regions. The firmware's harness calls
 * frk_board_invoke_begin() and frk_board_invoke_end() around each inference. At exit the plugin writes
 * "total=T region=R regions=N" to outfile (or to QEMU's plugin log when no outfile is given).
 *
 * With layer=, each execution of the instruction at `layer` inside a region closes a segment: segment i holds the
 * instructions from the region's start (i = 0) or the previous layer mark up to this one, and `tail` those from
 * the last mark (or the start) to the region's end, so the segments and the tail of a region partition it
 * exactly. frk_model_invoke calls frk_board_layer_end() after each op. Segment i is summed over the regions and a
 * second line is written: "layers=S0,S1,...,Sn-1 tail=T marks=M" (n = the most segments of any region, M = the
 * marks counted, regions * n when every region had n). More than MAX_LAYERS marks in one region write
 * "layers_error=..." instead. These are instruction counts of QEMU's functional model, not cycles.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the subset of qemu-plugin.h (API version 1) ---- */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* only passed through */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);
QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

/* ---- the counter (the guest is a single-core Cortex-M) ---- */
#define MAX_LAYERS 1024
static uint64_t total, region, regions, region_start, begin_pc = UINT64_MAX, end_pc = UINT64_MAX;
static uint64_t layer_pc = UINT64_MAX, segment_start, tail, marks, layer_sum[MAX_LAYERS];
static size_t layer_index, layers; /* marks in the current region; the most in any region */
static int in_region, layer_overflow;
static char outfile[4096];

static void on_begin(unsigned int vcpu, void *udata)
{
    (void)vcpu, (void)udata;
    region_start = segment_start = total;
    layer_index = 0;
    in_region = 1;
}

static void on_layer(unsigned int vcpu, void *udata)
{
    (void)vcpu, (void)udata;
    if (!in_region) {
        return;
    }
    if (layer_index < MAX_LAYERS) {
        layer_sum[layer_index] += total - segment_start;
    } else {
        layer_overflow = 1;
    }
    layer_index += 1;
    marks += 1;
    segment_start = total;
}

static void on_end(unsigned int vcpu, void *udata)
{
    (void)vcpu, (void)udata;
    if (in_region) {
        region += total - region_start;
        regions += 1;
        tail += total - segment_start;
        if (layer_index > layers) {
            layers = layer_index;
        }
        in_region = 0;
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    for (i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        if (pc == begin_pc) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
        } else if (pc == end_pc) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
        } else if (pc == layer_pc) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_layer, QEMU_PLUGIN_CB_NO_REGS, NULL);
        }
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &total, 1);
    }
}

static void write_counts(qemu_plugin_id_t id, void *udata)
{
    /* line 1, then at most MAX_LAYERS numbers of at most 20 digits and a comma each, and the tail */
    static char text[128 + MAX_LAYERS * 21 + 128];
    size_t n, i;
    FILE *f;
    (void)id, (void)udata;
    n = (size_t)snprintf(text, sizeof text, "total=%" PRIu64 " region=%" PRIu64 " regions=%" PRIu64 "\n", total,
                         region, regions);
    if (layer_pc != UINT64_MAX && layer_overflow) {
        n += (size_t)snprintf(text + n, sizeof text - n, "layers_error=more than %d layer marks in one region "
                              "(flexround_mcu/firmware/tools/insncount.c counts at most %d)\n", MAX_LAYERS, MAX_LAYERS);
    } else if (layer_pc != UINT64_MAX) {
        n += (size_t)snprintf(text + n, sizeof text - n, "layers=");
        for (i = 0; i < layers; i++) {
            n += (size_t)snprintf(text + n, sizeof text - n, "%s%" PRIu64, i ? "," : "", layer_sum[i]);
        }
        snprintf(text + n, sizeof text - n, " tail=%" PRIu64 " marks=%" PRIu64 "\n", tail, marks);
    }
    if (outfile[0] != '\0' && (f = fopen(outfile, "w")) != NULL) {
        fputs(text, f);
        fclose(f);
    } else {
        qemu_plugin_outs(text);
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    int i;
    (void)info;
    for (i = 0; i < argc; i++) {
        if (strncmp(argv[i], "outfile=", 8) == 0) {
            snprintf(outfile, sizeof outfile, "%s", argv[i] + 8);
        } else if (strncmp(argv[i], "begin=", 6) == 0) {
            begin_pc = strtoull(argv[i] + 6, NULL, 0) & ~(uint64_t)1; /* drop the Thumb bit */
        } else if (strncmp(argv[i], "end=", 4) == 0) {
            end_pc = strtoull(argv[i] + 4, NULL, 0) & ~(uint64_t)1;
        } else if (strncmp(argv[i], "layer=", 6) == 0) {
            layer_pc = strtoull(argv[i] + 6, NULL, 0) & ~(uint64_t)1;
        } else {
            fprintf(stderr, "insncount: unknown argument %s (use outfile=, begin=, end=, layer=)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
