/* The head's blob (layout in docs/personalization.md): its size, mt_head_save and
 * mt_head_load, the factory fingerprint that binds a blob to its model, and the CRC-32 they
 * use. The head's arithmetic is personalize.c's. */
#include "head_blob.h"
#include "le32.h"

#include <math.h>
#include <string.h>

#define BLOB_MAGIC 0x4448544Du /* bytes 'M' 'T' 'H' 'D' */
#define IO_CHUNK 64u

/* --- CRC-32 (reflected 0xEDB88320), nibble table: 64 bytes of flash ---------------------- */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint32_t mt_crc32(uint32_t crc, const uint8_t *p, uint32_t n)
{
    crc = ~crc;
    for (uint32_t i = 0; i < n; ++i) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

static uint32_t f2u(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float u2f(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static uint32_t crc_f32(uint32_t crc, float x)
{
    uint8_t b[4];
    put32(b, f2u(x));
    return mt_crc32(crc, b, 4);
}

/* --- the factory fingerprint --------------------------------------------------------------- */
uint32_t mt_head_factory_crc(const mt_head_t *hd)
{
    const mt_head_factory_t *f = hd->factory;
    uint8_t dims[4] = {(uint8_t)hd->c0, (uint8_t)(hd->c0 >> 8), (uint8_t)hd->h,
                       (uint8_t)(hd->h >> 8)};
    uint32_t crc = mt_crc32(0, dims, 4);
    for (uint32_t i = 0; i < (uint32_t)hd->c0 * hd->h; ++i)
        crc = crc_f32(crc, f->weights[i]);
    for (uint32_t c = 0; c < hd->c0; ++c)
        crc = crc_f32(crc, f->bias[c]);
    for (uint32_t k = 0; k < hd->h; ++k)
        crc = crc_f32(crc, f->feature_mean ? f->feature_mean[k] : 0.0f);
    return crc;
}

/* --- blob ---------------------------------------------------------------------------------- */
static uint32_t n_new(const mt_head_t *hd)
{
    return (uint32_t)hd->c_max - hd->c0;
}

static uint32_t flags_bytes(uint32_t rows)
{
    return (rows + 3u) & ~3u;
}

/* 64-bit: the dimensions of a blob being loaded are not trusted yet */
static uint64_t blob_size_for(uint32_t c0, uint32_t rows, uint32_t h)
{
    uint64_t nn = rows - c0;
    return MT_HEAD_BLOB_HEADER_BYTES + flags_bytes(rows) + 4u * ((uint64_t)rows * h + rows) +
           4u * (nn * h) + nn * MT_HEAD_NAME_BYTES + 4u;
}

uint32_t mt_head_blob_size(const mt_head_t *hd)
{
    return (uint32_t)blob_size_for(hd->c0, hd->c_max, hd->h);
}

typedef struct {
    mt_head_write_fn fn;
    void *ctx;
    uint32_t off, n, crc;
    int err;
    uint8_t buf[IO_CHUNK];
} writer_t;

static void w_flush(writer_t *w)
{
    if (w->n && !w->err) {
        w->crc = mt_crc32(w->crc, w->buf, w->n);
        if (w->fn(w->ctx, w->off, w->buf, w->n))
            w->err = 1;
    }
    w->off += w->n;
    w->n = 0;
}

static void w_bytes(writer_t *w, const void *src, uint32_t n)
{
    const uint8_t *p = src;
    while (n--) {
        w->buf[w->n++] = *p++;
        if (w->n == IO_CHUNK)
            w_flush(w);
    }
}

static void w_u32(writer_t *w, uint32_t v)
{
    uint8_t b[4];
    put32(b, v);
    w_bytes(w, b, 4);
}

static void w_u16(writer_t *w, uint32_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    w_bytes(w, b, 2);
}

static void w_f32s(writer_t *w, const float *x, uint32_t n)
{
    for (uint32_t i = 0; i < n; ++i)
        w_u32(w, f2u(x[i]));
}

int mt_head_save(const mt_head_t *hd, mt_head_write_fn write, void *ctx)
{
    if (!hd || !write)
        return MT_HEAD_EINVAL;
    writer_t w = {write, ctx, 0, 0, 0, 0, {0}};
    const uint32_t rows = hd->c_max, nn = n_new(hd), h = hd->h;
    w_u32(&w, BLOB_MAGIC);
    w_u16(&w, MT_HEAD_BLOB_VERSION);
    w_u16(&w, MT_HEAD_BLOB_HEADER_BYTES);
    w_u16(&w, h);
    w_u16(&w, hd->c0);
    w_u16(&w, rows);
    w_u16(&w, MT_HEAD_NAME_BYTES);
    w_u32(&w, hd->factory_crc);
    w_u32(&w, hd->updates);
    w_u32(&w, mt_head_blob_size(hd));
    w_u32(&w, 0);
    w_bytes(&w, hd->flags, rows);
    for (uint32_t i = rows; i < flags_bytes(rows); ++i)
        w_bytes(&w, "", 1);
    w_f32s(&w, hd->w, rows * h);
    w_f32s(&w, hd->b, rows);
    w_f32s(&w, hd->w0_new, nn * h);
    for (uint32_t j = 0; j < nn; ++j)
        w_bytes(&w, hd->names[j], MT_HEAD_NAME_BYTES);
    w_flush(&w);
    uint8_t crc[4];
    put32(crc, w.crc);
    if (!w.err && write(ctx, w.off, crc, 4))
        w.err = 1;
    return w.err ? MT_HEAD_EIO : MT_HEAD_OK;
}

typedef struct {
    mt_head_read_fn fn;
    void *ctx;
    uint32_t off, len; /* next byte to fetch from the source; blob length */
    uint32_t pos, n;   /* consumed / filled bytes of buf */
    uint32_t crc;
    int err;
    uint8_t buf[IO_CHUNK];
} reader_t;

static void r_open(reader_t *r, mt_head_read_fn fn, void *ctx, uint32_t start, uint32_t len)
{
    memset(r, 0, sizeof *r);
    r->fn = fn;
    r->ctx = ctx;
    r->off = start;
    r->len = len;
}

static uint8_t r_byte(reader_t *r)
{
    if (r->pos == r->n) {
        uint32_t n = r->len - r->off < IO_CHUNK ? r->len - r->off : IO_CHUNK;
        if (n == 0 || r->err || r->fn(r->ctx, r->off, r->buf, n)) {
            r->err = 1;
            return 0;
        }
        r->off += n;
        r->n = n;
        r->pos = 0;
    }
    uint8_t b = r->buf[r->pos++];
    r->crc = mt_crc32(r->crc, &b, 1);
    return b;
}

static uint32_t r_u32(reader_t *r)
{
    uint8_t b[4];
    for (int i = 0; i < 4; ++i)
        b[i] = r_byte(r);
    return get32(b);
}

static uint32_t r_u16(reader_t *r)
{
    uint32_t lo = r_byte(r);
    return lo | (uint32_t)r_byte(r) << 8;
}

static float r_f32(reader_t *r, int *bad)
{
    float x = u2f(r_u32(r));
    if (!isfinite(x))
        *bad = 1;
    return x;
}

/* Compares the NUL-padded name at blob offset `off` with s (NULL-safe). */
static int name_at_equals(mt_head_read_fn fn, void *ctx, uint32_t off, const char *s,
                          int *err)
{
    uint8_t nm[MT_HEAD_NAME_BYTES];
    if (fn(ctx, off, nm, MT_HEAD_NAME_BYTES)) {
        *err = 1;
        return 0;
    }
    return strncmp((const char *)nm, s, MT_HEAD_NAME_BYTES) == 0;
}

int mt_head_load(mt_head_t *hd, mt_head_read_fn read, void *ctx, uint32_t len)
{
    if (!hd || !read)
        return MT_HEAD_EINVAL;
    const uint32_t rows = hd->c_max, nn = n_new(hd), h = hd->h, c0 = hd->c0;
    if (len < MT_HEAD_BLOB_HEADER_BYTES + 4u)
        return MT_HEAD_EFORMAT;
    reader_t r;
    /* pass 1: header, CRC and every field's value; the head is not touched */
    r_open(&r, read, ctx, 0, len);
    uint32_t magic = r_u32(&r), version = r_u16(&r), hbytes = r_u16(&r);
    uint32_t bh = r_u16(&r), bc0 = r_u16(&r), brows = r_u16(&r), bname = r_u16(&r);
    uint32_t fcrc = r_u32(&r);
    (void)r_u32(&r); /* updates */
    uint32_t total = r_u32(&r), reserved = r_u32(&r);
    if (r.err)
        return MT_HEAD_EIO;
    if (magic != BLOB_MAGIC || version != MT_HEAD_BLOB_VERSION ||
        hbytes != MT_HEAD_BLOB_HEADER_BYTES || total != len || reserved != 0 ||
        bname != MT_HEAD_NAME_BYTES || bc0 == 0 || brows < bc0 ||
        len != blob_size_for(bc0, brows, bh))
        return MT_HEAD_EFORMAT;
    int bad = 0, model = bh != h || bc0 != c0 || brows != rows || fcrc != hd->factory_crc;
    uint32_t nf = brows < MT_HEAD_MAX_CLASSES ? brows : MT_HEAD_MAX_CLASSES;
    uint8_t flags[MT_HEAD_MAX_CLASSES];
    for (uint32_t c = 0; c < flags_bytes(brows); ++c) {
        uint8_t fl = r_byte(&r);
        if (c < nf)
            flags[c] = fl;
        if (c >= brows ? fl != 0
            : c < bc0  ? fl != MT_HEAD_ROW_ACTIVE
                       : fl != 0 && fl != MT_HEAD_ROW_ACTIVE &&
                             fl != (MT_HEAD_ROW_ACTIVE | MT_HEAD_ROW_FRESH))
            bad = 1;
    }
    for (uint32_t i = 0; i < brows * (bh + 1u) + (brows - bc0) * bh; ++i)
        (void)r_f32(&r, &bad);
    uint32_t names_off = len - 4u - (brows - bc0) * MT_HEAD_NAME_BYTES;
    for (uint32_t j = 0; j < brows - bc0; ++j) {
        int active = !model && (flags[bc0 + j] & MT_HEAD_ROW_ACTIVE);
        uint32_t k = 0;
        int ended = 0;
        for (uint32_t i = 0; i < MT_HEAD_NAME_BYTES; ++i) {
            uint8_t ch = r_byte(&r);
            if (ch == 0)
                ended = 1;
            else if (ended || !active || ch < 0x21 || ch > 0x7e)
                bad = 1; /* inactive rows have empty names; active ones printable, padded */
            else
                ++k;
        }
        if (active && (k == 0 || !ended))
            bad = 1;
    }
    uint32_t body_crc = r.crc;
    uint32_t stored = r_u32(&r);
    if (r.err)
        return MT_HEAD_EIO;
    if (stored != body_crc)
        return MT_HEAD_ECRC;
    if (model)
        return MT_HEAD_EMODEL;
    if (bad)
        return MT_HEAD_EFORMAT;
    /* names unique among the active labels, factory ones included */
    int err = 0;
    for (uint32_t j = 0; j < nn && !bad; ++j) {
        if (!(flags[c0 + j] & MT_HEAD_ROW_ACTIVE))
            continue;
        uint8_t nm[MT_HEAD_NAME_BYTES];
        if (read(ctx, names_off + j * MT_HEAD_NAME_BYTES, nm, MT_HEAD_NAME_BYTES))
            return MT_HEAD_EIO;
        for (uint32_t c = 0; c < c0; ++c)
            if (strncmp((const char *)nm, hd->factory->labels[c], MT_HEAD_NAME_BYTES) == 0)
                bad = 1;
        for (uint32_t i = 0; i < j; ++i)
            if ((flags[c0 + i] & MT_HEAD_ROW_ACTIVE) &&
                name_at_equals(read, ctx, names_off + i * MT_HEAD_NAME_BYTES,
                               (const char *)nm, &err))
                bad = 1;
    }
    if (err)
        return MT_HEAD_EIO;
    if (bad)
        return MT_HEAD_EFORMAT;
    /* pass 2: apply (a source that changes between the passes is caught by the CRC) */
    r_open(&r, read, ctx, 0, len);
    for (uint32_t i = 0; i < 20u; ++i)
        (void)r_byte(&r);
    uint32_t updates = r_u32(&r);
    for (uint32_t i = 0; i < 8u; ++i)
        (void)r_byte(&r);
    for (uint32_t c = 0; c < flags_bytes(rows); ++c)
        (void)r_byte(&r);
    for (uint32_t i = 0; i < rows * h; ++i)
        hd->w[i] = r_f32(&r, &bad);
    for (uint32_t c = 0; c < rows; ++c)
        hd->b[c] = r_f32(&r, &bad);
    for (uint32_t i = 0; i < nn * h; ++i)
        hd->w0_new[i] = r_f32(&r, &bad);
    for (uint32_t j = 0; j < nn; ++j)
        for (uint32_t i = 0; i < MT_HEAD_NAME_BYTES; ++i)
            hd->names[j][i] = (char)r_byte(&r);
    uint32_t crc2 = r.crc;
    if (r.err || bad || r_u32(&r) != crc2 || crc2 != body_crc) {
        mt_head_reset(hd); /* the source changed under us: never keep a mix */
        return r.err ? MT_HEAD_EIO : MT_HEAD_ECRC;
    }
    memcpy(hd->flags, flags, rows);
    hd->updates = updates;
#if MT_HEAD_MOMENTUM
    memset(hd->v, 0, sizeof hd->v);
    memset(hd->vb, 0, sizeof hd->vb);
#endif
    return MT_HEAD_OK;
}
