/* ARM semihosting call and its probe: see semihost.h. */
#include "semihost.h"

/* 1 while the probe's call runs; the fault vector sets it to 2 when the call faulted. */
volatile uint32_t mt_semihost_probing;

#if defined(__arm__)
int32_t mt_semihost_call(uint32_t op, void *params)
{
    register uint32_t r0 __asm("r0") = op;
    register void *r1 __asm("r1") = params;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

/* During the probe: the faulting instruction is the 2-byte BKPT in thread mode on the main
 * stack (the firmware never switches to the process stack). Skip it, make the call return
 * -1 (stacked r0), record the fault and return from the exception. Otherwise: the board's
 * Fault_Handler. Thumb-1 only, so that the Cortex-M0 runs it too. */
__attribute__((naked)) void mt_semihost_fault(void)
{
    __asm volatile(
        ".syntax unified\n"
        "ldr r1, =mt_semihost_probing\n"
        "ldr r2, [r1]\n"
        "cmp r2, #1\n"
        "beq 1f\n"
        "ldr r3, =Fault_Handler\n"
        "bx r3\n"
        "1:\n"
        "movs r2, #2\n"
        "str r2, [r1]\n"
        "mrs r0, msp\n"
        "ldr r2, [r0, #24]\n" /* stacked PC */
        "adds r2, #2\n"
        "str r2, [r0, #24]\n"
        "ldr r2, =0xFFFFFFFF\n"
        "str r2, [r0, #0]\n" /* stacked r0 = -1 */
        "bx lr\n"
        ".ltorg\n");
}
#else
/* Host builds of the core (tests): no semihosting host; every call fails. */
int32_t mt_semihost_call(uint32_t op, void *params)
{
    (void)op;
    (void)params;
    return -1;
}

void mt_semihost_fault(void)
{
}
#endif

int mt_semihost_present(char *buf, uint32_t cap, uint32_t *len)
{
    static int known = -1;
    if (cap == 0u) {
        return 0;
    }
    uint32_t p[2] = {(uint32_t)(uintptr_t)buf, cap - 1u};
    if (known == 0) {
        return 0;
    }
    mt_semihost_probing = 1u;
    const int32_t r = mt_semihost_call(MT_SH_SYS_GET_CMDLINE, p);
    const int faulted = mt_semihost_probing == 2u;
    mt_semihost_probing = 0u;
    known = !faulted;
    if (faulted || r != 0) {
        buf[0] = 0;
        *len = 0;
        return known;
    }
    *len = p[1] < cap ? p[1] : cap - 1u;
    buf[*len] = 0;
    return 1;
}
