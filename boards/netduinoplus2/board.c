/* Netduino Plus 2 (STM32F405RG): USART1 (PA9 TX / PA10 RX, AF7) at 115200 8N1 from the
 * 16 MHz HSI; QEMU's netduinoplus2 connects its first -serial to USART1. Counter: see
 * counter_armv7m.h (DWT cycles on silicon, SysTick + -icount instructions under QEMU). */
#include "board.h"

#include "counter_armv7m.h"
#include "cortex_m.h"

#define RCC_AHB1ENR MT_REG(0x40023830u)
#define RCC_APB2ENR MT_REG(0x40023844u)
#define GPIOA_MODER MT_REG(0x40020000u)
#define GPIOA_AFRH MT_REG(0x40020024u)

#define USART1_BASE 0x40011000u
#define USART_SR MT_REG(USART1_BASE + 0x00u)
#define USART_DR MT_REG(USART1_BASE + 0x04u)
#define USART_BRR MT_REG(USART1_BASE + 0x08u)
#define USART_CR1 MT_REG(USART1_BASE + 0x0Cu)
#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)
#define CR1_UE (1u << 13)
#define CR1_TE (1u << 3)
#define CR1_RE (1u << 2)

void board_init(void)
{
    RCC_AHB1ENR |= 1u << 0; /* GPIOA */
    RCC_APB2ENR |= 1u << 4; /* USART1 */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18);  /* PA9, PA10: alternate */
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFFu << 4)) | (0x77u << 4);     /* AF7 */
    USART_BRR = 0x8Bu; /* 16 MHz / (16 * 8.6875) = 115108 baud */
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

/* The watchdog and the reset cause: boards/common/stm32f4_watchdog.c. */
