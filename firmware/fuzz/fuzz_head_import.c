/* Fuzz target: `head import` (docs/protocol.md, blob layout in docs/personalization.md): the
 * hex line parser and the blob validation of mt_head_load, with the real model's head.
 *
 * The input is two bytes of options, then the blob:
 *   byte 0, bit 0   the harness writes the blob's correct CRC-32 into its last 4 bytes
 *   byte 0, bit 1   ... and first the device's own header fields (dimensions, name size,
 *                   factory fingerprint, length), so that the field checks behind them run
 *   byte 0, bit 2   the import lines are sent as they are produced, else with a damaged
 *                   offset or hex digit chosen by byte 1 (the line parser's error paths)
 *   byte 1          bytes per `head import <offset> <hex>` line (1 + byte1 % 200)
 * Checks: no sanitizer report; a blob the device accepts is exported back byte for byte
 * (nothing half-loaded, nothing lost); the head stays finite; the device still answers. */
#include "app_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t blob[BLOB_MAX + 64u];
static uint8_t exported[BLOB_MAX + 64u];
static uint32_t exported_len;

static void put32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static int capture(void *ctx, uint32_t off, const uint8_t *src, uint32_t n)
{
    (void)ctx;
    MT_FUZZ_CHECK(off == exported_len && off + n <= sizeof exported);
    memcpy(exported + off, src, n);
    exported_len += n;
    return 0;
}

static void send_line(const char *s, size_t n)
{
    fuzz_feed((const uint8_t *)s, n);
    fuzz_feed_str("\n");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char line[MT_LINE_MAX + 1u];
    static const char hex[] = "0123456789abcdef";
    if (size < 2u) {
        return 0;
    }
    fuzz_app_boot();
    const uint8_t opt = data[0], step = (uint8_t)(1u + data[1] % 200u);
    uint32_t len = (uint32_t)(size - 2u);
    if (len > sizeof blob) {
        len = sizeof blob;
    }
    memcpy(blob, data + 2, len);
    if ((opt & 2u) && len >= MT_HEAD_BLOB_HEADER_BYTES) {
        blob[8] = (uint8_t)head.h;
        blob[9] = (uint8_t)(head.h >> 8);
        blob[10] = (uint8_t)head.c0;
        blob[11] = (uint8_t)(head.c0 >> 8);
        blob[12] = (uint8_t)head.c_max;
        blob[13] = (uint8_t)(head.c_max >> 8);
        blob[14] = (uint8_t)MT_HEAD_NAME_BYTES;
        blob[15] = 0;
        put32le(blob + 16, head.factory_crc);
        put32le(blob + 24, len);
    }
    if ((opt & 1u) && len >= 4u) {
        put32le(blob + len - 4u, mt_crc32(0, blob, len - 4u));
    }
    const uint32_t damaged = (opt & 4u) ? UINT32_MAX : data[1];
    uint32_t k = 0;
    for (uint32_t off = 0; off < len; off += step, k++) {
        const uint32_t n = len - off < step ? len - off : step;
        int p = snprintf(line, sizeof line, "head import %u ",
                         (unsigned)(k == damaged ? off + 1u : off));
        for (uint32_t i = 0; i < n; i++) {
            line[p++] = hex[blob[off + i] >> 4];
            line[p++] = hex[blob[off + i] & 15u];
        }
        if (k + 1u == damaged) {
            line[p - 1] = 'g';
        }
        send_line(line, (size_t)p);
    }
    const int p = snprintf(line, sizeof line, "head import end %u", (unsigned)len);
    static mt_head_t before;
    memcpy(&before, &head, sizeof head);
    send_line(line, (size_t)p);
    static const char ok[] = "\r\nok\r\n";
    if (mt_fuzz_out_ends_with(ok, sizeof ok - 1u)) {
        /* Accepted: the device's own export is the very same blob. */
        exported_len = 0;
        MT_FUZZ_CHECK(mt_head_save(&head, capture, 0) == MT_HEAD_OK);
        MT_FUZZ_CHECK(exported_len == len && memcmp(exported, blob, len) == 0);
    } else {
        /* Refused: the head is untouched. */
        MT_FUZZ_CHECK(memcmp(&before, &head, sizeof head) == 0);
    }
    fuzz_check_head_finite();
    fuzz_feed_str("classify a fuzzed head still classifies\n");
    fuzz_check_alive();
    return 0;
}
