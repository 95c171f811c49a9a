/*
 * frk_board.h - the board layer of flexround-mcu firmware for QEMU's Arm MPS2/MPS3 boards: our own startup
 * (frk_startup.c), semihosting (frk_semihost.c) and the few C library functions the compiler may call
 * (frk_libc.c). No C library is linked (-nostdlib ... -lgcc).
 *
 * Exit codes of a firmware image (QEMU exits with the same code through SYS_EXIT_EXTENDED):
 *   0 / 1  main()'s return: the harness returns 0 when every output matched, 1 otherwise
 *   126    the stack overflowed its reservation (the paint at the stack limit was overwritten)
 *   127    a fault (HardFault, MemManage, BusFault, UsageFault, NMI, ...): see the "board: fault" line
 *
 * Test builds only: -DFRK_BOARD_TEST_HANG spins forever before main (a hung guest), -DFRK_BOARD_TEST_FAULT
 * executes an undefined instruction before main (a fault).
 */
#ifndef FRK_BOARD_H
#define FRK_BOARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FRK_BOARD_EXIT_STACK_OVERFLOW 126
#define FRK_BOARD_EXIT_FAULT 127

/* Write text, or one line (the text, then "\n"), to the host's console by semihosting (SYS_WRITE0). */
void frk_board_write(const char *text);
void frk_board_puts(const char *line);

/* Stop the emulator with `code` as its exit status (SYS_EXIT_EXTENDED, ADP_Stopped_ApplicationExit). */
void frk_board_exit(int code) __attribute__((noreturn));

/* Markers around each frk_model_invoke call: the instruction-count plugin (flexround_mcu/firmware/tools/insncount.c) counts
 * the instructions executed from the start of frk_board_invoke_begin to the start of frk_board_invoke_end. */
void frk_board_invoke_begin(void);
void frk_board_invoke_end(void);

/* The layer marker: the generated frk_model_invoke calls it after each op (FRK_LAYER_END in model.c). Inside an
 * invoke region the plugin closes a per-layer segment at the start of each call, so segment i holds op i's
 * instructions plus the marker's own: the call and the return of this empty function, 2 per op. */
void frk_board_layer_end(void);

#ifdef __cplusplus
}
#endif

#endif /* FRK_BOARD_H */
