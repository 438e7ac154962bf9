/* The example's UART: 115200 8N1, polled. One driver per family of UART, chosen by the build
 * (UART_KIND_*, UART_BASE, UART_CLOCK_HZ from boards.cmake). */
#ifndef EXAMPLE_UART_H
#define EXAMPLE_UART_H

void uart_init(void);
void uart_putc(char c);
void uart_puts(const char *s);
int uart_getc(void); /* blocks until a byte comes */

#endif
