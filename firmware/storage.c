/* The default board_storage() (storage.h): no storage. A board with storage defines its own
 * (boards/<name>/storage.c), which replaces this weak one at link time. */
#include "storage.h"

__attribute__((weak)) const mt_storage_t *board_storage(void)
{
    return 0;
}
