/* Polled UART drivers for the boards in boards.cmake: enough for QEMU's models of them (a real
 * chip also wants its clocks and pins set up, which a real firmware does anyway). */
#include "uart.h"

#include <stdint.h>

#define REG(off) (*(volatile uint32_t *)(UART_BASE + (off)))
#define BAUD 115200u

#if defined(UART_KIND_CMSDK) /* ARM CMSDK APB UART (MPS2) */
void uart_init(void)
{
    REG(0x10) = UART_CLOCK_HZ / BAUD; /* BAUDDIV */
    REG(0x08) = 3u;                   /* CTRL: TX, RX enable */
}
void uart_putc(char c)
{
    while (REG(0x04) & 1u) { /* STATE: TX full */
    }
    REG(0x00) = (uint8_t)c;
}
int uart_getc(void)
{
    while (!(REG(0x04) & 2u)) { /* STATE: RX full */
    }
    return (int)(REG(0x00) & 0xFFu);
}

#elif defined(UART_KIND_PL011) /* ARM PL011 (Stellaris LM3S) */
void uart_init(void)
{
    const uint32_t div64 = (UART_CLOCK_HZ * 8u / BAUD + 1u) / 2u;
    REG(0x30) = 0u;          /* CTL: off */
    REG(0x24) = div64 >> 6;  /* IBRD */
    REG(0x28) = div64 & 63u; /* FBRD */
    REG(0x2C) = 0x70u;       /* LCRH: 8 bits, FIFOs */
    REG(0x30) = 0x301u;      /* CTL: UART, TX, RX enable */
}
void uart_putc(char c)
{
    while (REG(0x18) & (1u << 5)) { /* FR: TX FIFO full */
    }
    REG(0x00) = (uint8_t)c;
}
int uart_getc(void)
{
    while (REG(0x18) & (1u << 4)) { /* FR: RX FIFO empty */
    }
    return (int)(REG(0x00) & 0xFFu);
}

#elif defined(UART_KIND_NRF51) /* Nordic nRF51 UART (micro:bit: TX P0.24, RX P0.25) */
void uart_init(void)
{
    REG(0x50C) = 24u;         /* PSELTXD */
    REG(0x514) = 25u;         /* PSELRXD */
    REG(0x524) = 0x01D7E000u; /* BAUDRATE 115200 */
    REG(0x500) = 4u;          /* ENABLE */
    REG(0x008) = 1u;          /* STARTTX */
    REG(0x000) = 1u;          /* STARTRX */
}
void uart_putc(char c)
{
    REG(0x11C) = 0u; /* TXDRDY */
    REG(0x51C) = (uint8_t)c;
    while (!REG(0x11C)) {
    }
}
int uart_getc(void)
{
    while (!REG(0x108)) { /* RXDRDY */
    }
    REG(0x108) = 0u;
    return (int)(REG(0x518) & 0xFFu);
}

#elif defined(UART_KIND_STM32_USART) /* STM32F4 USART */
void uart_init(void)
{
    REG(0x08) = UART_CLOCK_HZ / BAUD;             /* BRR */
    REG(0x0C) = (1u << 13) | (1u << 3) | (1u << 2); /* CR1: UE, TE, RE */
}
void uart_putc(char c)
{
    while (!(REG(0x00) & (1u << 7))) { /* SR: TXE */
    }
    REG(0x04) = (uint8_t)c;
}
int uart_getc(void)
{
    while (!(REG(0x00) & (1u << 5))) { /* SR: RXNE */
    }
    return (int)(REG(0x04) & 0xFFu);
}

#else
#error "no UART_KIND_* given (boards.cmake)"
#endif

void uart_puts(const char *s)
{
    while (*s) {
        uart_putc(*s++);
    }
}
