/* The STM32F4's independent watchdog and reset cause (board.h), shared by the STM32F4
 * boards (netduinoplus2, nucleo-f401re).
 *
 * The independent watchdog (IWDG), clocked by the ~32 kHz LSI (17..47 kHz over parts and
 * temperature): prescaler /64 and reload 1000 give 2 s (1.4..3.8 s) without a kick, then a
 * chip reset; frozen while a debugger halts the core (DBGMCU). The reset cause comes from
 * RCC_CSR's flags, cleared after reading. QEMU emulates neither the IWDG nor RCC_CSR (writes
 * are ignored, reads give 0: cause "unknown"): real hardware only, not proven under QEMU
 * (docs/reliability.md). */
#include <stdint.h>

#include "board.h"
#include "cortex_m.h"

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

static const char *reset_cause = "unknown";

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
    IWDG_KR = IWDG_KEY_RELOAD;
}

const char *board_reset_cause(void)
{
    return reset_cause;
}
