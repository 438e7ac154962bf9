/* Stellaris LM3S6965 EVB (Cortex-M3): UART0, a PL011 (PA0 RX / PA1 TX; QEMU's first -serial),
 * at 115200 8N1 from the clock board.toml gives (MT_BOARD_UART_CLOCK_HZ), and the ARMv7-M
 * counter (counter_armv7m.h: SysTick on the system clock under QEMU, DWT cycles on silicon).
 * No watchdog, no reset cause. */
#include "board.h"

#include "counter_armv7m.h"
#include "cortex_m.h"

#define SYSCTL_RCGC1 MT_REG(0x400FE104u) /* bit0 UART0 */
#define SYSCTL_RCGC2 MT_REG(0x400FE108u) /* bit0 GPIOA */
#define GPIOA_AFSEL MT_REG(0x40004420u)
#define GPIOA_DEN MT_REG(0x4000451Cu)

#define UART_DR MT_REG(MT_BOARD_UART_BASE + 0x000u)
#define UART_FR MT_REG(MT_BOARD_UART_BASE + 0x018u) /* bit4 RXFE, bit5 TXFF */
#define UART_IBRD MT_REG(MT_BOARD_UART_BASE + 0x024u)
#define UART_FBRD MT_REG(MT_BOARD_UART_BASE + 0x028u)
#define UART_LCRH MT_REG(MT_BOARD_UART_BASE + 0x02Cu)
#define UART_CTL MT_REG(MT_BOARD_UART_BASE + 0x030u)
#define FR_RXFE (1u << 4)
#define FR_TXFF (1u << 5)

/* The baud rate divisor in 1/64ths: clock / (16 x baud), rounded. */
#define UART_DIV64 ((MT_BOARD_UART_CLOCK_HZ * 8u / MT_BOARD_UART_BAUD + 1u) / 2u)

void board_init(void)
{
    SYSCTL_RCGC1 |= 1u;
    SYSCTL_RCGC2 |= 1u;
    GPIOA_AFSEL |= 3u;
    GPIOA_DEN |= 3u;
    UART_CTL = 0u;
    UART_IBRD = UART_DIV64 >> 6;
    UART_FBRD = UART_DIV64 & 63u;
    UART_LCRH = 0x70u;      /* 8 bits, FIFOs on */
    UART_CTL = 0x301u;      /* UARTEN, TXE, RXE */
    mt_armv7m_counter_init();
}

void board_uart_putc(uint8_t c)
{
    while (UART_FR & FR_TXFF) {
    }
    UART_DR = c;
}

int board_uart_getc(void)
{
    if (UART_FR & FR_RXFE) {
        return -1;
    }
    return (int)(UART_DR & 0xFFu);
}

uint32_t board_counter_ticks(void) { return mt_armv7m_counter_ticks(); }
uint32_t board_counter_convert(uint32_t ticks) { return mt_armv7m_counter_convert(ticks); }
const char *board_counter_unit(void) { return mt_armv7m_counter_unit(); }
