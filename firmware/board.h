/* The porting surface: the few functions a board implements (boards/<name>/board.c).
 * The core calls nothing else of the board; see docs/boards.md. */
#ifndef MT_BOARD_H
#define MT_BOARD_H

#include <stdint.h>

/* Clocks, the UART (8N1, no flow control) and the counter. Called once, first thing in main. */
void board_init(void);

/* Sends one byte; blocks until the UART has taken it. */
void board_uart_putc(uint8_t c);

/* Returns the next received byte (0..255), or -1 at once when none is waiting. */
int board_uart_getc(void);

/* A free-running tick counter, wrapping at 2^32. Differences of two reads, passed to
 * board_counter_convert, measure the code in between. */
uint32_t board_counter_ticks(void);

/* Converts a tick difference into the unit named by board_counter_unit(). */
uint32_t board_counter_convert(uint32_t ticks);

/* "instructions" (emulated with -icount: a deterministic count of executed instructions)
 * or "cycles" (real hardware). */
const char *board_counter_unit(void);

/* --- optional: the hardware watchdog and the reset cause ----------------------------------
 * A board without them leaves them out: weak no-op defaults in main.c (watchdog), a NULL
 * weak reference for the reset cause (the core then reports nothing). docs/reliability.md.
 *
 * board_watchdog_start arms the watchdog once, right after board_init; from then on the main
 * loop calls board_watchdog_kick between received bytes, so a command that has not returned
 * within the board's timeout (a stuck state) resets the chip. A watchdog cannot be stopped
 * once started. The one command that may run longer than the timeout by design (`head
 * train`, up to 100 epochs) also kicks it between examples (app.c holds the weak no-op
 * default, so host builds of the core link without a board). */
void board_watchdog_start(void);
void board_watchdog_kick(void);

/* Why the chip last reset, read once at boot (in board_watchdog_start): "watchdog",
 * "software", "pin", "power", "lockup", ... or "unknown" (e.g. a register QEMU does not
 * emulate). `stats` reports it as `reset <cause>`. */
const char *board_reset_cause(void) __attribute__((weak));

#endif
