/* Two-slot atomic storage: see slots.h and docs/personalization.md. */
#include "slots.h"
#include "le32.h"

#include <string.h>

#include "personalize.h" /* mt_crc32 */

#define SLOT_MAGIC 0x4C53544Du /* bytes 'M' 'T' 'S' 'L' */
#define HEADER_FIELDS 20u      /* magic, seq, len, payload CRC, header CRC */
static const uint8_t COMMIT[4] = {'M', 'T', 'O', 'K'};

static uint32_t round_up(uint32_t n, uint32_t unit)
{
    return (n + unit - 1u) & ~(unit - 1u);
}

static int pow2(uint32_t x)
{
    return x && !(x & (x - 1u));
}

/* Slot layout: header fields | pad | commit unit | payload, each part program-aligned. */
static uint32_t header_bytes(const mt_slots_t *s)
{
    return round_up(HEADER_FIELDS, s->st->program_size);
}

static uint32_t commit_bytes(const mt_slots_t *s)
{
    return round_up(sizeof COMMIT, s->st->program_size);
}

static uint32_t payload_at(const mt_slots_t *s)
{
    return header_bytes(s) + commit_bytes(s);
}

uint32_t mt_slots_capacity(const mt_slots_t *s)
{
    return s->slot_size - payload_at(s);
}

/* Checks slot i; on success returns 1 with its sequence number and payload length. */
static int slot_valid(mt_slots_t *s, uint32_t i, uint32_t *seq, uint32_t *len)
{
    const mt_storage_t *st = s->st;
    const uint32_t base = i * s->slot_size;
    uint8_t h[HEADER_FIELDS];
    if (st->read(st, base, h, HEADER_FIELDS))
        return 0;
    if (get32(h) != SLOT_MAGIC || mt_crc32(0, h, 16) != get32(h + 16))
        return 0;
    *seq = get32(h + 4);
    *len = get32(h + 8);
    if (*len > mt_slots_capacity(s))
        return 0;
    /* the commit unit, written last: the marker, then zero padding */
    uint32_t cb = commit_bytes(s);
    if (st->read(st, base + header_bytes(s), s->buf, cb))
        return 0;
    for (uint32_t k = 0; k < cb; ++k)
        if (s->buf[k] != (k < sizeof COMMIT ? COMMIT[k] : 0u))
            return 0;
    uint32_t crc = 0;
    for (uint32_t off = 0; off < *len;) {
        uint32_t n = *len - off < sizeof s->buf ? *len - off : (uint32_t)sizeof s->buf;
        if (st->read(st, base + payload_at(s) + off, s->buf, n))
            return 0;
        crc = mt_crc32(crc, s->buf, n);
        off += n;
    }
    return crc == get32(h + 12);
}

int mt_slots_mount(mt_slots_t *s, const mt_storage_t *st)
{
    if (!s || !st)
        return MT_SLOTS_EINVAL;
    memset(s, 0, sizeof *s);
    s->st = st;
    s->newest = -1;
    s->target = -1;
    if (!pow2(st->erase_size) || !pow2(st->program_size) ||
        st->program_size > MT_SLOTS_PROGRAM_MAX)
        return MT_SLOTS_EINVAL;
    s->slot_size = (st->size / 2u) & ~(st->erase_size - 1u);
    if (s->slot_size <= payload_at(s))
        return MT_SLOTS_EINVAL;
    uint32_t seq[2], len[2];
    int ok0 = slot_valid(s, 0, &seq[0], &len[0]);
    int ok1 = slot_valid(s, 1, &seq[1], &len[1]);
    if (!ok0 && !ok1)
        return MT_SLOTS_EMPTY;
    /* serial-number comparison: survives the sequence number wrapping */
    int i = ok0 && (!ok1 || (int32_t)(seq[0] - seq[1]) >= 0) ? 0 : 1;
    s->newest = i;
    s->seq = seq[i];
    s->len = len[i];
    return MT_SLOTS_OK;
}

int mt_slots_read(void *ctx, uint32_t off, uint8_t *dst, uint32_t n)
{
    mt_slots_t *s = ctx;
    if (!s || s->newest < 0 || off > s->len || n > s->len - off)
        return MT_SLOTS_EINVAL;
    const mt_storage_t *st = s->st;
    return st->read(st, (uint32_t)s->newest * s->slot_size + payload_at(s) + off, dst, n)
               ? MT_SLOTS_EIO
               : MT_SLOTS_OK;
}

int mt_slots_begin(mt_slots_t *s, uint32_t len)
{
    if (!s || !s->st || s->slot_size == 0)
        return MT_SLOTS_EINVAL;
    if (len > mt_slots_capacity(s))
        return MT_SLOTS_ETOOBIG;
    /* never the slot holding the newest valid blob */
    s->target = s->newest == 0 ? 1 : 0;
    s->wlen = len;
    s->woff = 0;
    s->wcrc = 0;
    s->nbuf = 0;
    s->werr = 0;
    const mt_storage_t *st = s->st;
    if (st->erase(st, (uint32_t)s->target * s->slot_size, s->slot_size)) {
        s->target = -1;
        return MT_SLOTS_EIO;
    }
    return MT_SLOTS_OK;
}

static void flush(mt_slots_t *s)
{
    if (s->nbuf == 0 || s->werr)
        return;
    const mt_storage_t *st = s->st;
    uint32_t n = round_up(s->nbuf, st->program_size);
    memset(s->buf + s->nbuf, MT_STORAGE_ERASED, n - s->nbuf);
    uint32_t at = (uint32_t)s->target * s->slot_size + payload_at(s) + s->woff - s->nbuf;
    if (st->program(st, at, s->buf, n))
        s->werr = 1;
    s->nbuf = 0;
}

int mt_slots_write(void *ctx, uint32_t off, const uint8_t *src, uint32_t n)
{
    mt_slots_t *s = ctx;
    if (!s || s->target < 0 || off != s->woff || n > s->wlen - s->woff)
        return MT_SLOTS_EINVAL;
    s->wcrc = mt_crc32(s->wcrc, src, n);
    while (n) {
        uint32_t k = (uint32_t)sizeof s->buf - s->nbuf;
        if (k > n)
            k = n;
        memcpy(s->buf + s->nbuf, src, k);
        s->nbuf += k;
        s->woff += k;
        src += k;
        n -= k;
        if (s->nbuf == sizeof s->buf)
            flush(s);
    }
    return s->werr ? MT_SLOTS_EIO : MT_SLOTS_OK;
}

int mt_slots_commit(mt_slots_t *s)
{
    if (!s || s->target < 0 || s->woff != s->wlen) {
        if (s)
            s->target = -1;
        return MT_SLOTS_EINVAL;
    }
    flush(s);
    const mt_storage_t *st = s->st;
    const uint32_t base = (uint32_t)s->target * s->slot_size;
    const uint32_t seq = s->newest < 0 ? 1u : s->seq + 1u;
    int err = s->werr;
    /* header, then the commit unit: the slot becomes valid with the last program */
    memset(s->buf, MT_STORAGE_ERASED, sizeof s->buf);
    put32(s->buf, SLOT_MAGIC);
    put32(s->buf + 4, seq);
    put32(s->buf + 8, s->wlen);
    put32(s->buf + 12, s->wcrc);
    put32(s->buf + 16, mt_crc32(0, s->buf, 16));
    uint32_t hb = header_bytes(s);
    for (uint32_t off = 0; !err && off < hb; off += (uint32_t)sizeof s->buf) {
        uint32_t n = hb - off < sizeof s->buf ? hb - off : (uint32_t)sizeof s->buf;
        uint8_t chunk[MT_SLOTS_PROGRAM_MAX];
        memset(chunk, MT_STORAGE_ERASED, sizeof chunk);
        if (off < HEADER_FIELDS)
            memcpy(chunk, s->buf + off, HEADER_FIELDS - off < n ? HEADER_FIELDS - off : n);
        err = st->program(st, base + off, chunk, n) != 0;
    }
    if (!err) {
        memset(s->buf, 0, sizeof s->buf);
        memcpy(s->buf, COMMIT, sizeof COMMIT);
        err = st->program(st, base + hb, s->buf, commit_bytes(s)) != 0;
    }
    int32_t target = s->target;
    s->target = -1;
    if (err)
        return MT_SLOTS_EIO;
    s->newest = target;
    s->seq = seq;
    s->len = s->wlen;
    return MT_SLOTS_OK;
}
