/* The example's start-up: the smallest vector table (initial stack pointer, reset handler,
 * a trap for everything else) and a reset handler that enables the FPU if the build uses
 * one, copies .data, zeroes .bss and calls main. */
#include <stdint.h>

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];
int main(void);
void Reset_Handler(void);
static void trap(void);

static void trap(void)
{
    for (;;) {
    }
}

void Reset_Handler(void)
{
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10, CP11 full access */
    __asm volatile("dsb\n isb" ::: "memory");
#endif
    const uint32_t *src = _sidata;
    for (uint32_t *dst = _sdata; dst < _edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = _sbss; dst < _ebss;) {
        *dst++ = 0u;
    }
    main();
    trap();
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))_estack, Reset_Handler, trap, trap, trap, trap, trap, 0,
    0, 0, 0, trap, trap, 0, trap, trap,
};
