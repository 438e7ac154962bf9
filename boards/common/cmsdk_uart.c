/* The board layer of the ARM MPS2 FPGA boards (mps2-an386 Cortex-M4, mps2-an500 Cortex-M7,
 * mps2-an505 Cortex-M33): the CMSDK APB UART (QEMU's first -serial) at 115200 8N1 and the
 * ARMv7-M counter (counter_armv7m.h: SysTick on the system clock under QEMU, DWT cycles on
 * silicon). Where the UART is and its clock come from the board's board.toml, [uart]:
 * MT_BOARD_UART_BASE, MT_BOARD_UART_CLOCK_HZ, MT_BOARD_UART_BAUD. */
#include "board.h"

#include "counter_armv7m.h"
#include "cortex_m.h"

#if !defined(MT_BOARD_UART_BASE) || !defined(MT_BOARD_UART_CLOCK_HZ) || !defined(MT_BOARD_UART_BAUD)
#error "board.toml [uart] needs base, clock_hz and baud for cmsdk_uart.c"
#endif

#define UART_DATA MT_REG(MT_BOARD_UART_BASE + 0x00u)
#define UART_STATE MT_REG(MT_BOARD_UART_BASE + 0x04u) /* bit0 TX full, bit1 RX full */
#define UART_CTRL MT_REG(MT_BOARD_UART_BASE + 0x08u)  /* bit0 TX enable, bit1 RX enable */
#define UART_BAUDDIV MT_REG(MT_BOARD_UART_BASE + 0x10u)

void board_init(void)
{
    UART_BAUDDIV = MT_BOARD_UART_CLOCK_HZ / MT_BOARD_UART_BAUD;
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
