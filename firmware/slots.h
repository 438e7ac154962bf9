/* Two-slot atomic storage of one blob (the learned head): docs/personalization.md.
 *
 * The region of an mt_storage_t is split in two slots. A save erases and writes the slot
 * that does not hold the newest valid blob, with a sequence number one above it, payload
 * first, then the slot header (magic, sequence, length, payload CRC, header CRC), then a
 * commit unit last. A slot is valid when its header CRC, its commit unit and its payload CRC
 * check; boot (mt_slots_mount) picks the valid slot with the highest sequence number.
 * A power cut at any point of a save therefore leaves the previous blob loadable.
 */
#ifndef MT_SLOTS_H
#define MT_SLOTS_H

#include <stdint.h>

#include "storage.h"

#ifndef MT_SLOTS_PROGRAM_MAX
#define MT_SLOTS_PROGRAM_MAX 32u /* largest program_size supported */
#endif

/* Bytes before the payload in a slot (header, commit unit), and the region (two slots, each
 * a whole number of erase units) that holds a payload of `len` bytes. Constant expressions,
 * for sizing a region at compile time. */
#define MT_SLOTS_ROUND_UP(n, unit) (((n) + (unit) - 1u) / (unit) * (unit))
#define MT_SLOTS_OVERHEAD(program) (MT_SLOTS_ROUND_UP(20u, program) + MT_SLOTS_ROUND_UP(4u, program))
#define MT_SLOTS_REGION_BYTES(len, erase, program)                                          \
    (2u * MT_SLOTS_ROUND_UP((len) + MT_SLOTS_OVERHEAD(program), erase))

typedef enum {
    MT_SLOTS_OK = 0,
    MT_SLOTS_EMPTY = -1,   /* no valid slot (never saved, or both damaged) */
    MT_SLOTS_EINVAL = -2,  /* region too small, bad geometry, bad argument or call order */
    MT_SLOTS_ETOOBIG = -3, /* payload larger than a slot */
    MT_SLOTS_EIO = -4      /* the storage reported a failure */
} mt_slots_status_t;

typedef struct {
    const mt_storage_t *st;
    uint32_t slot_size;    /* bytes per slot (a multiple of erase_size) */
    int32_t newest;        /* slot index of the newest valid blob, -1 if none */
    uint32_t seq, len;     /* its sequence number and payload length */
    /* an open save */
    int32_t target;        /* slot being written, -1 if none */
    uint32_t wlen, woff, wcrc, nbuf;
    int werr;
    uint8_t buf[MT_SLOTS_PROGRAM_MAX];
} mt_slots_t;

/* Scans both slots. Returns MT_SLOTS_OK (a valid blob: s->newest, s->len),
 * MT_SLOTS_EMPTY, or an error. */
int mt_slots_mount(mt_slots_t *s, const mt_storage_t *st);
uint32_t mt_slots_capacity(const mt_slots_t *s); /* largest payload, bytes */

/* Reads payload bytes of the newest valid blob (an mt_head_read_fn; ctx = the mt_slots_t). */
int mt_slots_read(void *ctx, uint32_t off, uint8_t *dst, uint32_t n);

/* A save: begin (erases the target slot), write the payload sequentially (an
 * mt_head_write_fn; ctx = the mt_slots_t), commit. Until commit returns MT_SLOTS_OK the
 * previous blob stays the one mount finds. */
int mt_slots_begin(mt_slots_t *s, uint32_t len);
int mt_slots_write(void *ctx, uint32_t off, const uint8_t *src, uint32_t n);
int mt_slots_commit(mt_slots_t *s);

#endif
