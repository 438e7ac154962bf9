/* MPS2 with the AN386 FPGA image (Cortex-M4F): CMSDK APB UART0 at 0x40004000 (QEMU's first
 * -serial), 25 MHz system clock. Counter: see counter_armv7m.h (SysTick on the 25 MHz CPU
 * clock under QEMU: instructions = ticks x 40 / 2^shift). */
#include "board.h"

#include "counter_armv7m.h"
#include "cortex_m.h"

#define UART0_BASE 0x40004000u
#define UART_DATA MT_REG(UART0_BASE + 0x00u)
#define UART_STATE MT_REG(UART0_BASE + 0x04u) /* bit0 TX full, bit1 RX full */
#define UART_CTRL MT_REG(UART0_BASE + 0x08u)  /* bit0 TX enable, bit1 RX enable */
#define UART_BAUDDIV MT_REG(UART0_BASE + 0x10u)

void board_init(void)
{
    UART_BAUDDIV = 25000000u / 115200u;
    UART_CTRL = 3u;
    mt_armv7m_counter_init();
}

void board_uart_putc(uint8_t c)
{
    while (UART_STATE & 1u) {
    }
    UART_DATA = c;
}

int board_uart_getc(void)
{
    if (UART_STATE & 2u) {
        return (int)(UART_DATA & 0xFFu);
    }
    return -1;
}

uint32_t board_counter_ticks(void) { return mt_armv7m_counter_ticks(); }
uint32_t board_counter_convert(uint32_t ticks) { return mt_armv7m_counter_convert(ticks); }
const char *board_counter_unit(void) { return mt_armv7m_counter_unit(); }

/* --- watchdog and reset cause (board.h) ------------------------------------------------------
 * The CMSDK APB watchdog at 0x40008000, clocked by the 25 MHz system clock, its interrupt
 * wired to the NMI. Without a kick, a first timeout raises the NMI, whose handler notes the
 * cause in RAM that start-up leaves alone (.noinit, link.ld) and waits; the second timeout
 * resets the chip (RESEN). QEMU's mps2-an386 models both stages: the recovery is tested in
 * tests/test_watchdog_qemu.py. */
#define WDOG_BASE 0x40008000u
#define WDOG_LOAD MT_REG(WDOG_BASE + 0x000u)
#define WDOG_CONTROL MT_REG(WDOG_BASE + 0x008u) /* bit0 INTEN (also runs the counter), bit1 RESEN */
#define WDOG_INTCLR MT_REG(WDOG_BASE + 0x00Cu)  /* any write: clears the interrupt, reloads */
#define WDOG_LOCK MT_REG(WDOG_BASE + 0xC00u)    /* the key unlocks, anything else locks */
#define WDOG_KEY 0x1ACCE551u
#define WDOG_TIMEOUT_TICKS (2u * 25000000u)     /* 2 s to the NMI, 2 s more to the reset */
#define RESET_MARK_WATCHDOG 0x57444F47u         /* "WDOG" */

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
