/* Storage of this board (storage.h), kept apart from board.c: flash sectors 1 and 2 of the
 * STM32F401RE (16 KB each, 0x08004000-0x0800BFFF), which link.ld keeps free of code
 * (boards/common/stm32f4_flash.c). Built, not tested: no QEMU machine emulates this board. */
#include "stm32f4_flash.h"

extern uint32_t __mt_storage_start[], __mt_storage_end[]; /* link.ld */

#define FIRST_SECTOR 1u
#define SECTOR_BYTES 16384u

const mt_storage_t *board_storage(void)
{
    const uint32_t base = (uint32_t)(uintptr_t)__mt_storage_start;
    const uint32_t bytes = (uint32_t)((uintptr_t)__mt_storage_end - (uintptr_t)__mt_storage_start);
    return mt_stm32f4_flash_storage(base, FIRST_SECTOR, bytes / SECTOR_BYTES, SECTOR_BYTES);
}
