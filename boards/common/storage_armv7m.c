/* Storage of the emulated ARMv7-M / ARMv8-M Mainline boards (storage.h): under QEMU a host
 * file through semihosting (firmware/storage_semihost.c), sized for two slots of the largest
 * head blob of the model; on silicon none (docs/personalization.md). Shared by the boards
 * whose counter is counter_armv7m.c (it tells QEMU from silicon). */
#include "counter_armv7m.h"
#include "personalize.h"
#include "slots.h"
#include "storage_semihost.h"

const mt_storage_t *board_storage(void)
{
    if (!mt_armv7m_emulated()) {
        return 0; /* a BKPT without a debugger would fault */
    }
    return mt_semihost_storage(MT_SLOTS_REGION_BYTES(MT_HEAD_BLOB_MAX, MT_SEMIHOST_ERASE_BYTES,
                                                     MT_SEMIHOST_PROGRAM_BYTES));
}
