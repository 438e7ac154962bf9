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

#endif
