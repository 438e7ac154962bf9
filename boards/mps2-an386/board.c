/* MPS2 with the AN386 FPGA image (Cortex-M4F): CMSDK APB UART0 at 0x40004000 (QEMU's first
 * -serial), 25 MHz system clock. Counter: see counter_armv7m.h (SysTick on the 25 MHz CPU
 * clock under QEMU: instructions = ticks x 40 / 2^shift). */
#include "board.h"

#include "counter_armv7m.h"
#include "cortex_m.h"

#define UART0_BASE 0x40004000u
#define UART_DATA MT_REG(UART0_BASE + 0x00u)
#define UART_STATE MT_REG(UART0_BASE + 0x04u) /* bit0 TX full, bit1 RX full */
#define UART_CTRL MT_REG(UART0_BASE + 0x08u)  /* bit0 TX enable, bit1 RX enable */
#define UART_BAUDDIV MT_REG(UART0_BASE + 0x10u)

void board_init(void)
{
    UART_BAUDDIV = 25000000u / 115200u;
    UART_CTRL = 3u;
    mt_armv7m_counter_init();
}

void board_uart_putc(uint8_t c)
{
    while (UART_STATE & 1u) {
    }
    UART_DATA = c;
}

int board_uart_getc(void)
{
    if (UART_STATE & 2u) {
        return (int)(UART_DATA & 0xFFu);
    }
    return -1;
}

uint32_t board_counter_ticks(void) { return mt_armv7m_counter_ticks(); }
uint32_t board_counter_convert(uint32_t ticks) { return mt_armv7m_counter_convert(ticks); }
const char *board_counter_unit(void) { return mt_armv7m_counter_unit(); }
