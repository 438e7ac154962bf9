/* Storage of this board (storage.h), kept apart from board.c: under QEMU a host file through
 * semihosting (firmware/storage_semihost.c), sized for two slots of the largest head blob of
 * the model; on silicon none yet (the nRF51 NVMC driver is not written;
 * docs/personalization.md). */
#include "cortex_m.h"
#include "personalize.h"
#include "slots.h"
#include "storage_semihost.h"

/* CLOCK->EVENTS_HFCLKSTARTED: QEMU's stub reads 1, silicon 0 (the crystal is never started);
 * the same test as board.c's. */
#define CLOCK_EVENTS_HFCLKSTARTED MT_REG(0x40000100u)

const mt_storage_t *board_storage(void)
{
    if (CLOCK_EVENTS_HFCLKSTARTED != 1u) {
        return 0; /* a BKPT without a debugger would fault */
    }
    return mt_semihost_storage(MT_SLOTS_REGION_BYTES(MT_HEAD_BLOB_MAX, MT_SEMIHOST_ERASE_BYTES,
                                                     MT_SEMIHOST_PROGRAM_BYTES));
}
