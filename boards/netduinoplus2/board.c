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

/* --- watchdog and reset cause (board.h) ------------------------------------------------------
 * The independent watchdog (IWDG), clocked by the ~32 kHz LSI (17..47 kHz over parts and
 * temperature): prescaler /64 and reload 1000 give 2 s (1.4..3.8 s) without a kick, then a
 * chip reset; frozen while a debugger halts the core (DBGMCU). The reset cause comes from
 * RCC_CSR's flags, cleared after reading. QEMU emulates neither the IWDG nor RCC_CSR (writes
 * are ignored, reads give 0: cause "unknown"): real hardware only, not proven under QEMU
 * (docs/reliability.md). */
#define IWDG_KR MT_REG(0x40003000u)
#define IWDG_PR MT_REG(0x40003004u)
#define IWDG_RLR MT_REG(0x40003008u)
#define IWDG_SR MT_REG(0x4000300Cu) /* bit0 PVU, bit1 RVU: an update is in progress */
#define IWDG_KEY_START 0xCCCCu
#define IWDG_KEY_UNLOCK 0x5555u
#define IWDG_KEY_RELOAD 0xAAAAu
#define DBGMCU_APB1_FZ MT_REG(0xE0042008u)
#define DBG_IWDG_STOP (1u << 12)
#define RCC_CSR MT_REG(0x40023874u)
#define RCC_CSR_RMVF (1u << 24)
#define WDOG_KICK_EVERY 1024u /* UART polls per kick (well under a millisecond) */

static const char *reset_cause = "unknown";
static uint32_t polls;

static const char *read_reset_cause(void)
{
    const uint32_t csr = RCC_CSR;
    /* The pin flag comes with every internal reset too (they drive NRST): check it last. */
    return (csr & (1u << 29))   ? "watchdog"  /* IWDGRSTF */
           : (csr & (1u << 30)) ? "watchdog"  /* WWDGRSTF */
           : (csr & (1u << 28)) ? "software"  /* SFTRSTF: SYSRESETREQ (fault handler) */
           : (csr & (1u << 31)) ? "low-power" /* LPWRRSTF */
           : (csr & (1u << 27)) ? "power"     /* PORRSTF */
           : (csr & (1u << 25)) ? "brown-out" /* BORRSTF */
           : (csr & (1u << 26)) ? "pin"       /* PINRSTF */
                                : "unknown";
}

void board_watchdog_start(void)
{
    reset_cause = read_reset_cause();
    RCC_CSR |= RCC_CSR_RMVF;
    DBGMCU_APB1_FZ |= DBG_IWDG_STOP;
    IWDG_KR = IWDG_KEY_START; /* also starts the LSI */
    IWDG_KR = IWDG_KEY_UNLOCK;
    IWDG_PR = 4u;             /* /64 */
    IWDG_RLR = 1000u;
    for (uint32_t i = 0; i < 1000000u && (IWDG_SR & 3u); i++) {
        /* the new values cross into the LSI domain (a few LSI periods) */
    }
    IWDG_KR = IWDG_KEY_RELOAD;
}

void board_watchdog_kick(void)
{
    if (++polls % WDOG_KICK_EVERY == 0u) {
        IWDG_KR = IWDG_KEY_RELOAD;
    }
}

const char *board_reset_cause(void)
{
    return reset_cause;
}
