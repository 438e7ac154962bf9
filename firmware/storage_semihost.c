/* Semihosted storage: see storage_semihost.h.
 *
 * Every erase and program is a sequence of SYS_WRITE calls of at most CHUNK bytes, each one
 * host write(2): QEMU killed at any moment leaves a prefix of them done, the power-cut model
 * of storage.h. A program first reads the bytes back and refuses to touch any that is not
 * erased, as NOR flash would (a slot-layer bug then shows up as a failed save, not as a
 * silently working file). */
#include "storage_semihost.h"

#include "semihost.h"

#define CHUNK 64u
#define PATH_MAX_BYTES 240u

typedef struct {
    int32_t handle;
} sh_ctx_t;

static sh_ctx_t ctx = {-1};

static int sh_seek(int32_t h, uint32_t pos)
{
    uint32_t p[2] = {(uint32_t)h, pos};
    return mt_semihost_call(MT_SH_SYS_SEEK, p) != 0;
}

/* SYS_WRITE / SYS_READ answer the number of bytes NOT transferred: 0 is success. */
static int sh_write(int32_t h, const void *src, uint32_t n)
{
    uint32_t p[3] = {(uint32_t)h, (uint32_t)(uintptr_t)src, n};
    return mt_semihost_call(MT_SH_SYS_WRITE, p) != 0;
}

static int sh_read(int32_t h, void *dst, uint32_t n)
{
    uint32_t p[3] = {(uint32_t)h, (uint32_t)(uintptr_t)dst, n};
    return mt_semihost_call(MT_SH_SYS_READ, p) != 0;
}

static int32_t sh_open(const char *path, uint32_t len, uint32_t mode)
{
    uint32_t p[3] = {(uint32_t)(uintptr_t)path, mode, len};
    return mt_semihost_call(MT_SH_SYS_OPEN, p);
}

static int in_region(const mt_storage_t *st, uint32_t off, uint32_t n)
{
    return off <= st->size && n <= st->size - off;
}

static int st_read(const mt_storage_t *st, uint32_t off, void *dst, uint32_t n)
{
    const sh_ctx_t *c = st->ctx;
    if (!in_region(st, off, n))
        return 1;
    return sh_seek(c->handle, off) || (n && sh_read(c->handle, dst, n));
}

static int fill_erased(int32_t h, uint32_t off, uint32_t n)
{
    uint8_t ff[CHUNK];
    for (uint32_t i = 0; i < CHUNK; ++i)
        ff[i] = MT_STORAGE_ERASED;
    if (sh_seek(h, off))
        return 1;
    while (n) {
        const uint32_t k = n < CHUNK ? n : CHUNK;
        if (sh_write(h, ff, k))
            return 1;
        n -= k;
    }
    return 0;
}

static int st_erase(const mt_storage_t *st, uint32_t off, uint32_t n)
{
    const sh_ctx_t *c = st->ctx;
    if (!in_region(st, off, n) || (off | n) & (st->erase_size - 1u))
        return 1;
    return fill_erased(c->handle, off, n);
}

static int st_program(const mt_storage_t *st, uint32_t off, const void *src, uint32_t n)
{
    const sh_ctx_t *c = st->ctx;
    if (!in_region(st, off, n) || (off | n) & (st->program_size - 1u))
        return 1;
    /* NOR: only erased bytes can be programmed */
    uint8_t cur[CHUNK];
    for (uint32_t done = 0; done < n;) {
        const uint32_t k = n - done < CHUNK ? n - done : CHUNK;
        if (st_read(st, off + done, cur, k))
            return 1;
        for (uint32_t i = 0; i < k; ++i)
            if (cur[i] != MT_STORAGE_ERASED)
                return 1;
        done += k;
    }
    const uint8_t *p = src;
    if (sh_seek(c->handle, off))
        return 1;
    for (uint32_t done = 0; done < n;) {
        const uint32_t k = n - done < CHUNK ? n - done : CHUNK;
        if (sh_write(c->handle, p + done, k))
            return 1;
        done += k;
    }
    return 0;
}

static mt_storage_t storage = {0, MT_SEMIHOST_ERASE_BYTES, MT_SEMIHOST_PROGRAM_BYTES,
                               st_read, st_erase, st_program, &ctx, "semihost"};

const mt_storage_t *mt_semihost_storage(uint32_t size)
{
    static const char prefix[] = MT_SEMIHOST_CMDLINE_PREFIX;
    const uint32_t np = (uint32_t)sizeof prefix - 1u;
    char line[PATH_MAX_BYTES + sizeof prefix];
    uint32_t n = 0;
    if (ctx.handle >= 0)
        return size == storage.size ? &storage : 0;
    if (size == 0u || size % MT_SEMIHOST_ERASE_BYTES || !mt_semihost_present(line, sizeof line, &n))
        return 0;
    for (uint32_t i = 0; i < np; ++i)
        if (i >= n || line[i] != prefix[i])
            return 0;
    const char *path = line + np;
    const uint32_t len = n - np;
    if (len == 0u)
        return 0;
    int32_t h = sh_open(path, len, MT_SH_MODE_RPLUSB);
    if (h < 0) {
        /* no file yet: create it (a blank chip), then open it for update */
        h = sh_open(path, len, MT_SH_MODE_WB);
        if (h < 0)
            return 0;
        (void)mt_semihost_call(MT_SH_SYS_CLOSE, &h);
        h = sh_open(path, len, MT_SH_MODE_RPLUSB);
        if (h < 0)
            return 0;
    }
    uint32_t hp = (uint32_t)h;
    const int32_t flen = mt_semihost_call(MT_SH_SYS_FLEN, &hp);
    /* a new (or shorter, e.g. cut while being created) file: its missing part is blank */
    if (flen < 0 || ((uint32_t)flen < size && fill_erased(h, (uint32_t)flen, size - (uint32_t)flen))) {
        (void)mt_semihost_call(MT_SH_SYS_CLOSE, &hp);
        return 0;
    }
    ctx.handle = h;
    storage.size = size;
    return &storage;
}
