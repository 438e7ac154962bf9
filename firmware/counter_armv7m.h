/* A counter for ARMv7-M boards (Cortex-M3/M4/M7), shared by their board.c:
 * - on silicon, DWT->CYCCNT counts cycles;
 * - under QEMU, CYCCNT reads 0, so SysTick (on the CPU clock, extended to 32 bits by its
 *   wrap interrupt) measures virtual time, which -icount turns into an exact instruction
 *   count (mt_icount_instructions in cortex_m.h). */
#ifndef MT_COUNTER_ARMV7M_H
#define MT_COUNTER_ARMV7M_H

#include <stdint.h>

void mt_armv7m_counter_init(void);
uint32_t mt_armv7m_counter_ticks(void);
uint32_t mt_armv7m_counter_convert(uint32_t ticks);
const char *mt_armv7m_counter_unit(void);
/* 1 under QEMU (CYCCNT does not count), 0 on silicon; valid after mt_armv7m_counter_init. */
int mt_armv7m_emulated(void);

/* The SysTick exception; the board's vector table points at it. */
void SysTick_Handler(void);

#endif
