/*
 * frk_startup.c - vector table, reset and fault handlers for Cortex-M4/M7/M55 on QEMU's MPS2/MPS3 boards.
 *
 * Reset_Handler: enables CP10/CP11 (the FPU, and MVE on the M55) before any floating-point or vector instruction
 * can run, copies .data from its load address in the code region, zeroes .bss, paints the stack reservation
 * (to measure its high-water mark), calls main() and exits through semihosting with main's return value.
 * Linker symbols come from frk_sections.ld.
 */
#include "frk_board.h"

#define FRK_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define FRK_STACK_PAINT 0x5AA5C33Cu

extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_limit[], __stack_top[];

int main(void);
void Reset_Handler(void) __attribute__((noreturn));
void frk_fault_handler(void) __attribute__((noreturn));

typedef void (*frk_handler)(void);
typedef union {
    frk_handler handler;
    const void *stack_top;
} frk_vector;

/* The 16 system exceptions; no external interrupt is enabled, so none is listed. */
__attribute__((section(".vectors"), used)) const frk_vector frk_vectors[16] = {
    {.stack_top = __stack_top},      /* 0: initial main stack pointer */
    {.handler = Reset_Handler},      /* 1: reset */
    {.handler = frk_fault_handler},  /* 2: NMI */
    {.handler = frk_fault_handler},  /* 3: HardFault */
    {.handler = frk_fault_handler},  /* 4: MemManage */
    {.handler = frk_fault_handler},  /* 5: BusFault */
    {.handler = frk_fault_handler},  /* 6: UsageFault */
    {.handler = frk_fault_handler},  /* 7: SecureFault (Armv8-M) */
    {.handler = 0},                  /* 8-10: reserved */
    {.handler = 0},
    {.handler = 0},
    {.handler = frk_fault_handler},  /* 11: SVCall (never used) */
    {.handler = frk_fault_handler},  /* 12: DebugMonitor */
    {.handler = 0},                  /* 13: reserved */
    {.handler = frk_fault_handler},  /* 14: PendSV (never used) */
    {.handler = frk_fault_handler},  /* 15: SysTick (never enabled) */
};

static char *frk_put_text(char *p, const char *s)
{
    while (*s != '\0') {
        *p++ = *s++;
    }
    return p;
}

static char *frk_put_uint(char *p, uint32_t v)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        *p++ = digits[--n];
    }
    return p;
}

/* Bytes of the stack reservation that were ever written (the paint below them is intact). */
static uint32_t frk_stack_used(void)
{
    const uint32_t *p = __stack_limit;
    while (p < __stack_top && *p == FRK_STACK_PAINT) {
        ++p;
    }
    return (uint32_t)((const char *)__stack_top - (const char *)p);
}

void Reset_Handler(void)
{
    uint32_t *dst;
    const uint32_t *src;
    uint32_t *sp;
    char line[80];
    char *p;
    uint32_t used, size;
    int code;

    FRK_CPACR |= 0xFu << 20; /* CP10 and CP11: full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");

    for (src = __data_load, dst = __data_start; dst < __data_end;) {
        *dst++ = *src++;
    }
    for (dst = __bss_start; dst < __bss_end;) {
        *dst++ = 0u;
    }
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (dst = __stack_limit; dst < sp - 16;) { /* leave this function's own frame alone */
        *dst++ = FRK_STACK_PAINT;
    }

#ifdef FRK_BOARD_TEST_HANG
    for (;;) { /* test builds only: a guest that never ends, for the runner's timeout */
        __asm__ volatile("" ::: "memory");
    }
#endif
#ifdef FRK_BOARD_TEST_FAULT
    __asm__ volatile("udf #0"); /* test builds only: a permanently undefined instruction, for the fault handler */
#endif

    code = main();

    used = frk_stack_used();
    size = (uint32_t)((const char *)__stack_top - (const char *)__stack_limit);
    p = frk_put_text(line, "board: stack used ");
    p = frk_put_uint(p, used);
    p = frk_put_text(p, " of ");
    p = frk_put_uint(p, size);
    p = frk_put_text(p, " bytes");
    *p = '\0';
    frk_board_puts(line);
    if (used >= size) {
        frk_board_puts("board: stack overflow: raise __stack_size in boards/frk_sections.ld");
        frk_board_exit(FRK_BOARD_EXIT_STACK_OVERFLOW);
    }
    frk_board_exit(code);
}

/* Straight-line code only (no loops, no library calls): a fault handler must still run when the image was built
 * for another core, e.g. an Armv8.1-M loop instruction (DLS/LE) executed on a Cortex-M7. */
void frk_fault_handler(void)
{
    uint32_t ipsr;
    char number[4];

    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    ipsr &= 0x1FFu;
    number[0] = (char)('0' + ipsr / 100u);
    number[1] = (char)('0' + ipsr / 10u % 10u);
    number[2] = (char)('0' + ipsr % 10u);
    number[3] = '\0';
    frk_board_write("board: fault: exception ");
    frk_board_puts(number);
    frk_board_exit(FRK_BOARD_EXIT_FAULT);
}
