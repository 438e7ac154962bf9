#include "app.h"
#include "board.h"

/* Boards without a watchdog (board.h) link this; the weak board_watchdog_kick is in app.c. */
__attribute__((weak)) void board_watchdog_start(void) {}

/* UART polls per kick of the watchdog: well under a millisecond on every board, and few
 * enough register writes not to slow the emulated boards down. */
#define MT_WATCHDOG_KICK_EVERY 1024u

int main(void)
{
    board_init();
    board_watchdog_start();
    mt_app_init();
    /* mt_app_run's loop, with the watchdog kicked between bytes: a command that does not
     * return within the board's watchdog timeout resets the chip. */
    uint32_t polls = 0;
    for (;;) {
        if (++polls % MT_WATCHDOG_KICK_EVERY == 0u) {
            board_watchdog_kick();
        }
        const int c = board_uart_getc();
        if (c >= 0) {
            mt_app_feed((uint8_t)c);
        }
    }
    return 0;
}
