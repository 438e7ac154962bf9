/* The head in and out of the device (docs/personalization.md): the board's storage mounted
 * at boot and the newest valid save loaded, `head save` (to the slot that does not hold the
 * newest save, committed last), the `storage` line of `head state`, and the blob of
 * mt_head_save as hex lines: `head export`, `head import`. */
#include "app_internal.h"
#include "board.h"
#include "protocol.h"
#include "slots.h"
#include "storage.h"

#if HAVE_HEAD
/* --- head export / import: the blob of mt_head_save, as hex lines ---------------------- */

#define BLOB_MAX MT_HEAD_BLOB_MAX
static uint8_t import_buf[BLOB_MAX];
static uint32_t import_len;

static int export_chunk(void *ctx, uint32_t off, const uint8_t *src, uint32_t n)
{
    static const char hex[] = "0123456789abcdef";
    (void)ctx;
    mt_put("data ");
    mt_put_u32(off);
    mt_put_char(' ');
    for (uint32_t i = 0; i < n; i++) {
        mt_put_char(hex[src[i] >> 4]);
        mt_put_char(hex[src[i] & 15u]);
    }
    mt_put_eol();
    return 0;
}

static int import_read(void *ctx, uint32_t off, uint8_t *dst, uint32_t n)
{
    (void)ctx;
    if (off > import_len || n > import_len - off) {
        return 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        dst[i] = import_buf[off + i];
    }
    return 0;
}

static void cmd_head_export(void)
{
    put_kv("blob", mt_head_blob_size(&head));
    (void)mt_head_save(&head, export_chunk, 0);
    mt_put_ok();
}

/* head import <offset> <hex>   (offsets in order from 0)
 * head import end <length>     (validates and loads the whole blob, or changes nothing) */
static void cmd_head_import(const uint8_t *arg, uint32_t n)
{
    uint32_t pos = 0;
    int ok = 1;
    while (pos < n && arg[pos] == ' ') {
        pos++;
    }
    if (n - pos >= 3u && arg[pos] == 'e' && arg[pos + 1u] == 'n' && arg[pos + 2u] == 'd') {
        pos += 3u;
        const uint32_t len = parse_u32(arg, n, &pos, &ok);
        if (!ok || pos != n || len != import_len) {
            import_len = 0;
            put_error(MT_ERR_BAD_ARGUMENT, "import: length differs from the data received");
            return;
        }
        const int st = mt_head_load(&head, import_read, 0, len);
        import_len = 0;
        if (st == MT_HEAD_ECRC) {
            put_error(MT_ERR_CRC, "CRC mismatch: blob not loaded");
        } else if (st == MT_HEAD_EMODEL) {
            put_error(MT_ERR_BAD_ARGUMENT, "blob of another model or firmware build");
        } else if (st != MT_HEAD_OK) {
            put_error(MT_ERR_BAD_ARGUMENT, "invalid blob");
        } else {
            buffer_clear();
            head_unsaved = 1;
            put_kv("updates", head.updates);
            mt_put_ok();
        }
        return;
    }
    const uint32_t off = parse_u32(arg, n, &pos, &ok);
    while (pos < n && arg[pos] == ' ') {
        pos++;
    }
    const uint32_t digits = n - pos;
    if (!ok || digits == 0u || digits % 2u || off != (off == 0u ? 0u : import_len) ||
        digits / 2u > BLOB_MAX - off) {
        import_len = 0;
        put_error(MT_ERR_BAD_ARGUMENT, "usage: head import <offset> <hex> (offsets in order "
                                       "from 0, within the blob size) | head import end <length>");
        return;
    }
    for (uint32_t i = 0; i < digits / 2u; i++) {
        const int hi = hex_digit(arg[pos + 2u * i]), lo = hex_digit(arg[pos + 2u * i + 1u]);
        if (hi < 0 || lo < 0) {
            import_len = 0;
            put_error(MT_ERR_BAD_ARGUMENT, "import: not hex");
            return;
        }
        import_buf[off + i] = (uint8_t)(hi << 4 | lo);
    }
    import_len = off + digits / 2u;
    put_kv("received", import_len);
    mt_put_ok();
}

/* --- storage: head save, and the head loaded at boot (docs/personalization.md) -------- */

static const mt_storage_t *storage;
static mt_slots_t slots;
static enum {
    BOOT_NONE,     /* no storage */
    BOOT_FACTORY,  /* nothing saved: factory head */
    BOOT_LOADED,   /* the newest valid save was loaded */
    BOOT_OTHER,    /* the newest save is of another model or firmware build: factory */
    BOOT_INVALID,  /* the newest save did not load: factory */
    BOOT_ERROR     /* the storage is unusable (geometry, I/O) */
} boot_status;

void storage_boot(void)
{
    storage = head_ready ? board_storage() : 0;
    if (!storage) {
        boot_status = BOOT_NONE;
        return;
    }
    const int st = mt_slots_mount(&slots, storage);
    if (st == MT_SLOTS_EMPTY) {
        boot_status = BOOT_FACTORY;
    } else if (st != MT_SLOTS_OK) {
        boot_status = BOOT_ERROR;
    } else {
        const int ld = mt_head_load(&head, mt_slots_read, &slots, slots.len);
        boot_status = ld == MT_HEAD_OK ? BOOT_LOADED : ld == MT_HEAD_EMODEL ? BOOT_OTHER
                                                                           : BOOT_INVALID;
    }
}

/* storage <name> region <bytes> seq <n> bytes <n> boot <status> unsaved <0|1>, or none */
void put_storage_state(void)
{
    static const char *const boot_names[] = {"none", "factory", "loaded", "other-model",
                                             "invalid", "error"};
    mt_put("storage ");
    if (!storage) {
        mt_put("none");
        mt_put_eol();
        return;
    }
    mt_put(storage->name ? storage->name : "storage");
    mt_put(" region ");
    mt_put_u32(storage->size);
    mt_put(" seq ");
    mt_put_u32(slots.newest >= 0 ? slots.seq : 0u);
    mt_put(" bytes ");
    mt_put_u32(slots.newest >= 0 ? slots.len : 0u);
    mt_put(" boot ");
    mt_put(boot_names[boot_status]);
    mt_put(" unsaved ");
    mt_put_u32((uint32_t)head_unsaved);
    mt_put_eol();
}

/* head save: the head to the slot that does not hold the newest save, committed last */
static void cmd_head_save(void)
{
    if (!storage || boot_status == BOOT_ERROR) {
        put_error(MT_ERR_STORAGE, storage ? "storage unusable" : "no storage on this board");
        return;
    }
    const uint32_t len = mt_head_blob_size(&head);
    const uint32_t t0 = board_counter_ticks();
    int st = mt_slots_begin(&slots, len);
    if (st == MT_SLOTS_ETOOBIG) {
        put_error(MT_ERR_STORAGE, "the head is larger than a storage slot");
        return;
    }
    if (st == MT_SLOTS_OK) {
        st = mt_head_save(&head, mt_slots_write, &slots) == MT_HEAD_OK ? mt_slots_commit(&slots)
                                                                       : MT_SLOTS_EIO;
    }
    const uint32_t count = measure(t0);
    if (st != MT_SLOTS_OK) {
        put_error(MT_ERR_STORAGE, "storage write failed: the previous save stays");
        return;
    }
    head_unsaved = 0;
    mt_put("saved seq ");
    mt_put_u32(slots.seq);
    mt_put(" bytes ");
    mt_put_u32(slots.len);
    mt_put_eol();
    mt_put("cost ");
    mt_put(board_counter_unit());
    mt_put(" save ");
    mt_put_u32(count);
    mt_put_eol();
    mt_put_ok();
}
/* head save | head export | head import ...: 1 when arg is one of them (then answered) */
int head_storage_command(const uint8_t *arg, uint32_t n)
{
    if (word_is(arg, n, "save")) {
        cmd_head_save();
    } else if (word_is(arg, n, "export")) {
        cmd_head_export();
    } else if (n >= 7u && word_is(arg, 7u, "import ")) {
        cmd_head_import(arg + 7, n - 7u);
    } else {
        return 0;
    }
    return 1;
}
#endif
