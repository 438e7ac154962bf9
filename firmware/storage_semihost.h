/* Storage of the emulated boards: a host file reached through ARM semihosting, with the NOR
 * flash rules of storage.h enforced (docs/personalization.md, "Storage on the boards").
 *
 * QEMU passes the file's path in the semihosting command line, which mcutext.device.qemu sets to
 * "mcutext-storage <path>" (-semihosting-config enable=on,target=native,arg=...). Without
 * it there is no storage. */
#ifndef MT_STORAGE_SEMIHOST_H
#define MT_STORAGE_SEMIHOST_H

#include <stdint.h>

#include "storage.h"

#define MT_SEMIHOST_CMDLINE_PREFIX "mcutext-storage "
#define MT_SEMIHOST_ERASE_BYTES 4096u /* a small-sector NOR page */
#define MT_SEMIHOST_PROGRAM_BYTES 4u  /* word programming */

/* Opens (creating it blank, 0xFF, if shorter than `size`) the file named on the semihosting
 * command line as a region of `size` bytes; NULL when there is none or it fails. Call only
 * under a semihosting host. */
const mt_storage_t *mt_semihost_storage(uint32_t size);

#endif
