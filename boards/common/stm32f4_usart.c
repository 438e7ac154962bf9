/* The board layer of the STM32F4 boards (netduinoplus2, nucleo-f401re): USART1 or USART2 at
 * [uart] base, on its port-A pins (alternate function 7), 8N1 at [uart] baud from
 * [uart] clock_hz (the 16 MHz HSI after reset), and the ARMv7-M counter (counter_armv7m.h:
 * DWT cycles on silicon, SysTick + -icount instructions under QEMU). Which USART it is
 * follows from the base: its clock-enable bit (RM0090 / RM0368, "RCC") and its pins. */
#include "board.h"

#include "counter_armv7m.h"
#include "cortex_m.h"

#if !defined(MT_BOARD_UART_BASE) || !defined(MT_BOARD_UART_CLOCK_HZ) || !defined(MT_BOARD_UART_BAUD)
#error "board.toml [uart] needs base, clock_hz and baud for stm32f4_usart.c"
#endif

#if MT_BOARD_UART_BASE == 0x40011000u /* USART1 on APB2: PA9 TX, PA10 RX */
#define RCC_USART_ENR MT_REG(0x40023844u) /* RCC_APB2ENR */
#define RCC_USART_BIT (1u << 4)
#define TX_PIN 9u
#elif MT_BOARD_UART_BASE == 0x40004400u /* USART2 on APB1: PA2 TX, PA3 RX */
#define RCC_USART_ENR MT_REG(0x40023840u) /* RCC_APB1ENR */
#define RCC_USART_BIT (1u << 17)
#define TX_PIN 2u
#else
#error "stm32f4_usart.c drives USART1 (0x40011000) or USART2 (0x40004400)"
#endif

#define RCC_AHB1ENR MT_REG(0x40023830u)
#define GPIOA_MODER MT_REG(0x40020000u)
/* AFRL (pins 0-7) or AFRH (pins 8-15); RX, the next pin, is in the same register */
#define GPIOA_AFR MT_REG(0x40020020u + TX_PIN / 8u * 4u)

#define USART_SR MT_REG(MT_BOARD_UART_BASE + 0x00u)
#define USART_DR MT_REG(MT_BOARD_UART_BASE + 0x04u)
#define USART_BRR MT_REG(MT_BOARD_UART_BASE + 0x08u)
#define USART_CR1 MT_REG(MT_BOARD_UART_BASE + 0x0Cu)
#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)
#define CR1_UE (1u << 13)
#define CR1_TE (1u << 3)
#define CR1_RE (1u << 2)

void board_init(void)
{
    RCC_AHB1ENR |= 1u << 0; /* GPIOA */
    RCC_USART_ENR |= RCC_USART_BIT;
    /* TX_PIN and RX: alternate function mode (0b10 each), AF7 */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << (2u * TX_PIN))) | (0xAu << (2u * TX_PIN));
    GPIOA_AFR = (GPIOA_AFR & ~(0xFFu << (4u * (TX_PIN % 8u)))) | (0x77u << (4u * (TX_PIN % 8u)));
    /* oversampling by 16: BRR = clock / baud, rounded (16 MHz / 115200: 0x8B, 115108 baud) */
    USART_BRR = (MT_BOARD_UART_CLOCK_HZ + MT_BOARD_UART_BAUD / 2u) / MT_BOARD_UART_BAUD;
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE;
    mt_armv7m_counter_init();
}

void board_uart_putc(uint8_t c)
{
    while (!(USART_SR & SR_TXE)) {
    }
    USART_DR = c;
}

int board_uart_getc(void)
{
    if (USART_SR & SR_RXNE) {
        return (int)(USART_DR & 0xFFu);
    }
    return -1;
}

uint32_t board_counter_ticks(void) { return mt_armv7m_counter_ticks(); }
uint32_t board_counter_convert(uint32_t ticks) { return mt_armv7m_counter_convert(ticks); }
const char *board_counter_unit(void) { return mt_armv7m_counter_unit(); }

/* The watchdog and the reset cause: stm32f4_watchdog.c. */
