/* The start-up every Cortex-M board shares: the vector table and Reset_Handler (enable the FPU
 * if the build has one, copy .data, zero .bss, call main) and the fault handler.
 *
 * What differs between boards is declared in their board.toml, `[vectors]`, which the build
 * passes as macros (mcutext.firmware.compile_flags):
 *   MT_VECTOR_IRQS       device interrupts after the 16 system exceptions (`irqs`)
 *   MT_VECTOR_NMI        the NMI handler (`nmi`), default Fault_Handler
 *   MT_VECTOR_HARDFAULT  the HardFault handler (`hardfault`), default Fault_Handler
 *   MT_VECTOR_DEBUGMON   the DebugMonitor handler (`debugmon`), default Fault_Handler
 *   MT_VECTOR_SYSTICK    the SysTick handler (`systick`), default Fault_Handler
 * e.g. an emulated board's HardFault and DebugMonitor go to mt_semihost_fault (semihost.h),
 * an ARMv7-M counter's SysTick to SysTick_Handler (counter_armv7m.h), a watchdog's NMI to the
 * board's NMI_Handler. A handler named here is defined by the board or the core. */
#include <stdint.h>

#include "app.h"
#include "cortex_m.h"

#ifndef MT_VECTOR_IRQS
#error "the board's board.toml has no [vectors] irqs (docs/boards.md)"
#endif
#ifndef MT_VECTOR_NMI
#define MT_VECTOR_NMI Fault_Handler
#endif
#ifndef MT_VECTOR_HARDFAULT
#define MT_VECTOR_HARDFAULT Fault_Handler
#endif
#ifndef MT_VECTOR_DEBUGMON
#define MT_VECTOR_DEBUGMON Fault_Handler
#endif
#ifndef MT_VECTOR_SYSTICK
#define MT_VECTOR_SYSTICK Fault_Handler
#endif

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern uint32_t __stack_top[];
int main(void);

void Reset_Handler(void);
void Fault_Handler(void);
void MT_VECTOR_NMI(void);
void MT_VECTOR_HARDFAULT(void);
void MT_VECTOR_DEBUGMON(void);
void MT_VECTOR_SYSTICK(void);

void Reset_Handler(void)
{
#if defined(__ARM_FP)
    /* Full access to CP10/CP11 before any floating-point instruction. */
    SCB_CPACR |= 0xFu << 20;
    __asm volatile("dsb\n isb" ::: "memory");
#endif
    const uint32_t *src = __data_load;
    for (uint32_t *dst = __data_start; dst < __data_end;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = __bss_start; dst < __bss_end;) {
        *dst++ = 0;
    }
    main();
    for (;;) {
    }
}

/* Faults and unexpected interrupts: report over the UART and reset (the device keeps serving). */
void Fault_Handler(void)
{
    mt_app_fault();
    mt_system_reset();
}

__attribute__((section(".isr_vector"), used)) void (*const vectors[16 + MT_VECTOR_IRQS])(void) = {
    [0] = (void (*)(void))__stack_top,
    [1] = Reset_Handler,
    [2] = MT_VECTOR_NMI,
    [3] = MT_VECTOR_HARDFAULT,
    [4 ... 7] = Fault_Handler,   /* MemManage, BusFault, UsageFault, SecureFault (ARMv8-M) */
    [11] = Fault_Handler,        /* SVCall: unused */
    [12] = MT_VECTOR_DEBUGMON,
    [14] = Fault_Handler,        /* PendSV: unused */
    [15] = MT_VECTOR_SYSTICK,
    [16 ... 16 + MT_VECTOR_IRQS - 1] = Fault_Handler,
};
