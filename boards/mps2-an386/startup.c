/* MPS2 AN386 (Cortex-M4F): vector table and reset handler. */
#include <stdint.h>

#include "app.h"
#include "semihost.h"
#include "cortex_m.h"
#include "counter_armv7m.h"

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern uint32_t __stack_top[];
int main(void);

void Reset_Handler(void);
void Fault_Handler(void);

void Reset_Handler(void)
{
#if defined(__ARM_FP)
    /* Full access to CP10/CP11 before any floating-point instruction. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
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

/* The NMI is the watchdog's first timeout on this board: board.c handles it. */
void NMI_Handler(void) __attribute__((weak, alias("Fault_Handler")));

#define IRQS 32 /* AN386 device interrupts */

__attribute__((section(".isr_vector"), used)) void (*const vectors[16 + IRQS])(void) = {
    [0] = (void (*)(void))__stack_top,
    [1] = Reset_Handler,
    [2] = NMI_Handler,           /* NMI: the watchdog (board.c) */
    [3] = mt_semihost_fault,     /* HardFault: Fault_Handler, except during the semihosting
                                    probe (firmware/semihost.c) */
    [4 ... 6] = Fault_Handler,   /* MemManage, BusFault, UsageFault */
    [11] = Fault_Handler,        /* SVCall: unused */
    [12] = mt_semihost_fault,    /* DebugMonitor: as HardFault */
    [14] = Fault_Handler,        /* PendSV: unused */
    [15] = SysTick_Handler,
    [16 ... 16 + IRQS - 1] = Fault_Handler,
};
