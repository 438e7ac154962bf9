/* Architectural registers of ARMv6-M / ARMv7-M that boards share: SysTick, DWT, SCB.
 * Addresses are fixed by the architecture, not by the chip. */
#ifndef MT_CORTEX_M_H
#define MT_CORTEX_M_H

#include <stdint.h>

#define MT_REG(addr) (*(volatile uint32_t *)(addr))

#define SYST_CSR MT_REG(0xE000E010u) /* bit0 ENABLE, bit1 TICKINT, bit2 CLKSOURCE=cpu */
#define SYST_RVR MT_REG(0xE000E014u)
#define SYST_CVR MT_REG(0xE000E018u)
#define SCB_ICSR MT_REG(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SCB_AIRCR MT_REG(0xE000ED0Cu)
#define SCB_CPACR MT_REG(0xE000ED88u)
#define DEMCR MT_REG(0xE000EDFCu) /* bit24 TRCENA */
#define DWT_CTRL MT_REG(0xE0001000u)
#define DWT_CYCCNT MT_REG(0xE0001004u)

static inline uint32_t mt_irq_save(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
    return primask;
}

static inline void mt_irq_restore(uint32_t primask)
{
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
}

static inline void mt_system_reset(void)
{
    __asm volatile("dsb" ::: "memory");
    SCB_AIRCR = (0x05FAu << 16) | (1u << 2); /* VECTKEY | SYSRESETREQ */
    __asm volatile("dsb" ::: "memory");
    for (;;) {
    }
}

/* Instructions executed under QEMU -icount shift=N in `ticks` of a timer running at hz: every
 * instruction advances virtual time by 2^N ns, so instructions = ticks * 10^9 / (hz * 2^N).
 * The build passes that ratio reduced, MT_ICOUNT_NUM / MT_ICOUNT_DEN, for emulated boards
 * only, and checks (DEN - 1) * NUM + DEN / 2 < 2^32: the rounding to nearest below then needs
 * no 64-bit arithmetic (no 64-bit division helper from libgcc). */
#if defined(MT_ICOUNT_NUM) && defined(MT_ICOUNT_DEN)
#define MT_ICOUNT 1
static inline uint32_t mt_icount_instructions(uint32_t ticks)
{
    const uint32_t q = ticks / MT_ICOUNT_DEN, r = ticks % MT_ICOUNT_DEN;
    return q * MT_ICOUNT_NUM + (r * MT_ICOUNT_NUM + MT_ICOUNT_DEN / 2u) / MT_ICOUNT_DEN;
}
#else
#define MT_ICOUNT 0
#endif

#endif
