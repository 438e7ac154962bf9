/* BBC micro:bit v1 (nRF51822, Cortex-M0, 16 MHz): the UART on P0.24 TX / P0.25 RX (the
 * interface chip's USB serial; QEMU's first -serial) at 115200 8N1, and TIMER0 as a 32-bit
 * 16 MHz counter. The nRF51 has no SysTick and the M0 no DWT cycle counter.
 * Under QEMU -icount shift=N, instructions = ticks x 62.5 / 2^N (mt_icount_instructions); on
 * silicon the 16 MHz timer counts CPU cycles. */
#include "board.h"

#include "cortex_m.h"

#define UART_BASE 0x40002000u
#define UART_STARTRX MT_REG(UART_BASE + 0x000u)
#define UART_STARTTX MT_REG(UART_BASE + 0x008u)
#define UART_RXDRDY MT_REG(UART_BASE + 0x108u)
#define UART_TXDRDY MT_REG(UART_BASE + 0x11Cu)
#define UART_ENABLE MT_REG(UART_BASE + 0x500u)
#define UART_PSELTXD MT_REG(UART_BASE + 0x50Cu)
#define UART_PSELRXD MT_REG(UART_BASE + 0x514u)
#define UART_RXD MT_REG(UART_BASE + 0x518u)
#define UART_TXD MT_REG(UART_BASE + 0x51Cu)
#define UART_BAUDRATE MT_REG(UART_BASE + 0x524u)

#define TIMER0_BASE 0x40008000u
#define TIMER_START MT_REG(TIMER0_BASE + 0x000u)
#define TIMER_CAPTURE0 MT_REG(TIMER0_BASE + 0x040u)
#define TIMER_MODE MT_REG(TIMER0_BASE + 0x504u)
#define TIMER_BITMODE MT_REG(TIMER0_BASE + 0x508u)
#define TIMER_PRESCALER MT_REG(TIMER0_BASE + 0x510u)
#define TIMER_CC0 MT_REG(TIMER0_BASE + 0x540u)

/* CLOCK->EVENTS_HFCLKSTARTED: 0 after reset on silicon (this firmware never starts the
 * crystal); QEMU models the CLOCK block as a stub whose registers all read 1. */
#define CLOCK_EVENTS_HFCLKSTARTED MT_REG(0x40000100u)

static int emulated;

void board_init(void)
{
    emulated = CLOCK_EVENTS_HFCLKSTARTED == 1u;
    UART_PSELTXD = 24u;
    UART_PSELRXD = 25u;
    UART_BAUDRATE = 0x01D7E000u; /* 115200 */
    UART_ENABLE = 4u;
    UART_STARTTX = 1u;
    UART_STARTRX = 1u;

    TIMER_MODE = 0u;    /* timer */
    TIMER_BITMODE = 3u; /* 32 bit */
    TIMER_PRESCALER = 0u;
    TIMER_START = 1u;
}

void board_uart_putc(uint8_t c)
{
    UART_TXDRDY = 0u;
    UART_TXD = c;
    while (!UART_TXDRDY) {
    }
}

int board_uart_getc(void)
{
    if (!UART_RXDRDY) {
        return -1;
    }
    /* Clear the event before reading RXD: reading pops the FIFO and raises the event again
     * if more bytes are waiting. */
    UART_RXDRDY = 0u;
    return (int)(UART_RXD & 0xFFu);
}

uint32_t board_counter_ticks(void)
{
    TIMER_CAPTURE0 = 1u;
    return TIMER_CC0;
}

uint32_t board_counter_convert(uint32_t ticks)
{
#if MT_ICOUNT
    if (emulated) {
        return mt_icount_instructions(ticks);
    }
#endif
    return ticks;
}

const char *board_counter_unit(void)
{
#if MT_ICOUNT
    if (emulated) {
        return "instructions";
    }
#endif
    return "cycles";
}

/* --- watchdog and reset cause (board.h) ------------------------------------------------------
 * The nRF51 WDT, clocked by the 32.768 kHz LFCLK (started by the WDT itself if off): 2 s
 * without a reload request, then a chip reset; paused while a debugger halts the CPU. The
 * reset cause comes from POWER->RESETREAS, cleared after reading. QEMU's microbit emulates
 * neither (writes ignored; the POWER/CLOCK stub reads 1 everywhere, so the cause says
 * "unknown" when emulated): real hardware only, not proven under QEMU
 * (docs/reliability.md). */
#define WDT_BASE 0x40010000u
#define WDT_TASKS_START MT_REG(WDT_BASE + 0x000u)
#define WDT_CRV MT_REG(WDT_BASE + 0x504u)
#define WDT_RREN MT_REG(WDT_BASE + 0x508u)
#define WDT_CONFIG MT_REG(WDT_BASE + 0x50Cu) /* bit0 SLEEP: run, bit3 HALT: 0 = pause */
#define WDT_RR0 MT_REG(WDT_BASE + 0x600u)
#define WDT_RELOAD 0x6E524635u
#define POWER_RESETREAS MT_REG(0x40000400u)
static const char *reset_cause = "unknown";

void board_watchdog_start(void)
{
    if (!emulated) {
        const uint32_t r = POWER_RESETREAS;
        POWER_RESETREAS = r; /* write 1 to clear */
        reset_cause = (r & (1u << 1))   ? "watchdog" /* DOG */
                      : (r & (1u << 2)) ? "lockup"
                      : (r & (1u << 3)) ? "software" /* SREQ: SYSRESETREQ (fault handler) */
                      : (r & (1u << 0)) ? "pin"
                      : (r & 0x70000u)  ? "wake-up"  /* from System OFF */
                                        : "power";
    }
    WDT_CONFIG = 1u;
    WDT_CRV = 2u * 32768u - 1u; /* timeout = (CRV + 1) / 32768 s */
    WDT_RREN = 1u;              /* RR[0] only */
    WDT_TASKS_START = 1u;
}

void board_watchdog_kick(void)
{
    WDT_RR0 = WDT_RELOAD;
}

const char *board_reset_cause(void)
{
    return reset_cause;
}
