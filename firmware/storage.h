/* Persistent storage: the board-level interface the slot layer (slots.h) writes through.
 *
 * A board with storage returns a descriptor of one region reserved for the core (a flash
 * sector range on real boards; on emulated boards a region that survives a restart) from
 * board_storage(); a board without returns NULL. See docs/personalization.md.
 *
 * Model the slot layer relies on (NOR flash): erase sets every byte of an erase unit to
 * 0xFF; program only writes bytes of an erased area, in units of program_size bytes at
 * program_size-aligned offsets; a power cut during an operation leaves a prefix of it done
 * (bytes of a torn unit may hold anything; the slot layer's CRCs catch that).
 */
#ifndef MT_STORAGE_H
#define MT_STORAGE_H

#include <stdint.h>

#define MT_STORAGE_ERASED 0xFFu

typedef struct mt_storage mt_storage_t;

struct mt_storage {
    uint32_t size;         /* bytes of the region (a multiple of erase_size) */
    uint32_t erase_size;   /* erase unit, bytes (power of two) */
    uint32_t program_size; /* program unit, bytes (power of two, <= MT_SLOTS_PROGRAM_MAX) */
    /* Each returns 0 on success, non-zero on failure. Offsets are region-relative. */
    int (*read)(const mt_storage_t *st, uint32_t off, void *dst, uint32_t n);
    int (*erase)(const mt_storage_t *st, uint32_t off, uint32_t n);   /* erase-aligned */
    int (*program)(const mt_storage_t *st, uint32_t off, const void *src,
                   uint32_t n);                                        /* program-aligned */
    void *ctx; /* the backend's own data */
    const char *name; /* what `head state` reports: "semihost", "flash", ... (NULL: "storage") */
};

/* Implemented by the board (boards/<name>/): its storage region, or NULL if it has none. */
const mt_storage_t *board_storage(void);

#endif
