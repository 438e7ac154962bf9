#include "counter_armv7m.h"

#include "cortex_m.h"

#define SYSTICK_RELOAD 0x00FFFFFFu /* 24-bit: wraps every 2^24 ticks */

static volatile uint32_t systick_wraps;
static int use_cyccnt;

void SysTick_Handler(void)
{
    systick_wraps++;
}

void mt_armv7m_counter_init(void)
{
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;    /* CYCCNTENA */
    for (volatile int i = 0; i < 16; i++) {
    }
    use_cyccnt = DWT_CYCCNT != 0u;
    if (!use_cyccnt) {
        SYST_RVR = SYSTICK_RELOAD;
        SYST_CVR = 0;
        SYST_CSR = 7u; /* enable, wrap interrupt, CPU clock */
    }
}

uint32_t mt_armv7m_counter_ticks(void)
{
    if (use_cyccnt) {
        return DWT_CYCCNT;
    }
    uint32_t primask = mt_irq_save();
    uint32_t hi = systick_wraps;
    uint32_t val = SYST_CVR;
    if (SCB_ICSR & SCB_ICSR_PENDSTSET) {
        /* Wrapped, handler not run yet: re-read so the value is after the wrap. */
        val = SYST_CVR;
        hi++;
    }
    mt_irq_restore(primask);
    return (hi << 24) | (SYSTICK_RELOAD - val);
}

uint32_t mt_armv7m_counter_convert(uint32_t ticks)
{
#if MT_ICOUNT
    if (!use_cyccnt) {
        return mt_icount_instructions(ticks);
    }
#endif
    return ticks;
}

const char *mt_armv7m_counter_unit(void)
{
#if MT_ICOUNT
    if (!use_cyccnt) {
        return "instructions";
    }
#endif
    return "cycles";
}

int mt_armv7m_emulated(void)
{
    return !use_cyccnt;
}
