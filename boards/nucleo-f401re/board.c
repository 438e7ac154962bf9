/* NUCLEO-F401RE (STM32F401RE): USART2 (PA2 TX / PA3 RX, AF7), wired to the ST-LINK's USB
 * virtual COM port, at 115200 8N1 from the 16 MHz HSI. Counter: DWT cycles. */
#include "board.h"

#include "counter_armv7m.h"
#include "cortex_m.h"

#define RCC_AHB1ENR MT_REG(0x40023830u)
#define RCC_APB1ENR MT_REG(0x40023840u)
#define GPIOA_MODER MT_REG(0x40020000u)
#define GPIOA_AFRL MT_REG(0x40020020u)

#define USART2_BASE 0x40004400u
#define USART_SR MT_REG(USART2_BASE + 0x00u)
#define USART_DR MT_REG(USART2_BASE + 0x04u)
#define USART_BRR MT_REG(USART2_BASE + 0x08u)
#define USART_CR1 MT_REG(USART2_BASE + 0x0Cu)
#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)
#define CR1_UE (1u << 13)
#define CR1_TE (1u << 3)
#define CR1_RE (1u << 2)

void board_init(void)
{
    RCC_AHB1ENR |= 1u << 0;  /* GPIOA */
    RCC_APB1ENR |= 1u << 17; /* USART2 */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (0xAu << 4); /* PA2, PA3: alternate */
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (0x77u << 8);  /* AF7 */
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
