/* ARM semihosting (the "Semihosting for AArch32 and AArch64" calls through BKPT 0xAB) as used
 * by the emulated boards' storage: a host file that outlives QEMU (storage_semihost.c).
 *
 * A BKPT 0xAB is only answered when a semihosting host is there (QEMU with
 * -semihosting-config enable=on, as mcutext.device.qemu runs it, or a debugger); otherwise it
 * raises a HardFault (or DebugMonitor). mt_semihost_present() probes with one call while
 * mt_semihost_fault, the board's HardFault and DebugMonitor vector, turns such a fault into
 * a failed call; outside the probe that vector is the board's Fault_Handler. So a QEMU
 * started by hand without semihosting boots without storage instead of faulting. The boards
 * probe only under QEMU: on silicon a debugger would stop at the BKPT. */
#ifndef MT_SEMIHOST_H
#define MT_SEMIHOST_H

#include <stdint.h>

#define MT_SH_SYS_OPEN 0x01u
#define MT_SH_SYS_CLOSE 0x02u
#define MT_SH_SYS_WRITE 0x05u
#define MT_SH_SYS_READ 0x06u
#define MT_SH_SYS_SEEK 0x0Au
#define MT_SH_SYS_FLEN 0x0Cu
#define MT_SH_SYS_GET_CMDLINE 0x15u

/* SYS_OPEN modes (ISO C fopen modes, in the order the specification numbers them) */
#define MT_SH_MODE_RB 1u      /* "rb" */
#define MT_SH_MODE_RPLUSB 3u  /* "r+b": read and write, the file must exist */
#define MT_SH_MODE_WB 5u      /* "wb": create (or truncate) */

/* One call: op in r0, the parameter block's address in r1; returns r0. Only after
 * mt_semihost_present() returned 1. */
int32_t mt_semihost_call(uint32_t op, void *params);

/* 1 if a semihosting host answers (probed once: SYS_GET_CMDLINE into buf, cap bytes with
 * the NUL; *len = the command line's length), 0 otherwise. */
int mt_semihost_present(char *buf, uint32_t cap, uint32_t *len);

/* The HardFault / DebugMonitor vector of a board that probes (startup.c). */
void mt_semihost_fault(void);
void Fault_Handler(void); /* the board's own fault handler */

#endif
