/* Storage in the STM32F4's own flash (storage.h): a range of sectors erased and programmed
 * through the FLASH interface registers (RM0368 / RM0090, "Embedded Flash memory
 * interface"). Shared by the STM32F4 boards; each board chooses the sectors and reserves
 * them in its linker script. Built, not tested here: QEMU does not model the FLASH
 * interface (docs/personalization.md). */
#ifndef MT_STM32F4_FLASH_H
#define MT_STM32F4_FLASH_H

#include <stdint.h>

#include "storage.h"

/* `count` sectors of `sector_bytes` each (all equal), the first one numbered `first` and
 * mapped at `base`. Programs 32 bits at a time (PSIZE x32: supply 2.7 to 3.6 V). */
const mt_storage_t *mt_stm32f4_flash_storage(uint32_t base, uint32_t first, uint32_t count,
                                             uint32_t sector_bytes);

#endif
