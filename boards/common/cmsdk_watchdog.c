/* The watchdog and the reset cause (board.h) of the MPS2 boards whose CMSDK APB watchdog
 * raises the NMI (mps2-an386, mps2-an500: at 0x40008000, on the 25 MHz APB clock; the board
 * gives MT_CMSDK_WDOG_BASE in its cflags and points [vectors] nmi at NMI_Handler).
 * Without a kick, a first timeout raises the NMI, whose handler notes the cause in RAM that
 * start-up leaves alone (.noinit, cortex_m.ld) and waits; the second timeout resets the chip
 * (RESEN). QEMU models both stages: the recovery is tested in tests/test_watchdog_qemu.py. */
#include "board.h"

#include "cortex_m.h"

#ifndef MT_CMSDK_WDOG_BASE
#error "the board's cflags give MT_CMSDK_WDOG_BASE for cmsdk_watchdog.c"
#endif

#define WDOG_LOAD MT_REG(MT_CMSDK_WDOG_BASE + 0x000u)
#define WDOG_CONTROL MT_REG(MT_CMSDK_WDOG_BASE + 0x008u) /* bit0 INTEN (runs the counter), bit1 RESEN */
#define WDOG_INTCLR MT_REG(MT_CMSDK_WDOG_BASE + 0x00Cu)  /* any write: clears the interrupt, reloads */
#define WDOG_LOCK MT_REG(MT_CMSDK_WDOG_BASE + 0xC00u)    /* the key unlocks, anything else locks */
#define WDOG_KEY 0x1ACCE551u
/* 2 s to the NMI, 2 s more to the reset, on the APB clock (the UART's, board.toml [uart]) */
#define WDOG_TIMEOUT_TICKS (2u * MT_BOARD_UART_CLOCK_HZ)
#define RESET_MARK_WATCHDOG 0x57444F47u                 /* "WDOG" */

void NMI_Handler(void);

__attribute__((section(".noinit"))) static volatile uint32_t reset_mark;
static const char *reset_cause = "unknown";

void board_watchdog_start(void)
{
    /* Read the mark of the previous run first, then clear it for this one. */
    reset_cause = reset_mark == RESET_MARK_WATCHDOG ? "watchdog" : "unknown";
    reset_mark = 0u;
    WDOG_LOCK = WDOG_KEY;
    WDOG_LOAD = WDOG_TIMEOUT_TICKS;
    WDOG_CONTROL = 3u;
    WDOG_LOCK = 0u;
}

void board_watchdog_kick(void)
{
    WDOG_LOCK = WDOG_KEY;
    WDOG_INTCLR = 1u;
    WDOG_LOCK = 0u;
}

const char *board_reset_cause(void)
{
    return reset_cause;
}

/* The watchdog's first timeout: the main loop has not run for WDOG_TIMEOUT_TICKS. */
void NMI_Handler(void)
{
    reset_mark = RESET_MARK_WATCHDOG;
    for (;;) {
        /* the second timeout resets the chip */
    }
}
