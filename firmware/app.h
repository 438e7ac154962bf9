/* The application: the command loop over the UART (protocol: docs/protocol.md). */
#ifndef MT_APP_H
#define MT_APP_H

#include <stdint.h>

#ifndef MT_FIRMWARE_VERSION
#define MT_FIRMWARE_VERSION "0.0.0"
#endif
#ifndef MT_BOARD_NAME
#define MT_BOARD_NAME "unknown"
#endif

/* Paints the stack (for the high-water mark), prints the banner. */
void mt_app_init(void);

/* Handles one received byte; runs a command when a line is complete. */
void mt_app_feed(uint8_t byte);

/* Never returns: polls the UART and serves commands. */
void mt_app_run(void);

/* For the board's fault vectors: reports `error 6 ...`; the board then resets the chip. */
void mt_app_fault(void);

#endif
