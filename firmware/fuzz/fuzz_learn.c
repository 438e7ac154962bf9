/* Fuzz target: the personalization frame decoder, `learn <crc32 hex> LABEL<TAB>text`
 * (docs/protocol.md), through the dispatcher, with the real model and head.
 *
 * The input is frames separated by LF; the first byte of a frame picks how it is sent:
 *   bit 0   the harness writes the frame's correct CRC-32 in front of the rest (so that the
 *           decoder gets past the CRC check and the label lookup, the model run and the SGD
 *           step run on fuzzed text); otherwise the rest is sent as it is after "learn "
 *   bit 1   `label add` the rest of the frame first (a new label to learn)
 *   bit 2   `head config` the rest of the frame first (learning rate, momentum, decay)
 * Checks: no sanitizer report; the head stays finite; the device still answers. */
#include "app_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void send_line(const uint8_t *s, size_t n)
{
    fuzz_feed(s, n);
    fuzz_feed_str("\n");
}

static void frame(const uint8_t *f, size_t n)
{
    static uint8_t line[MT_LINE_MAX + 64u];
    static const char hex[] = "0123456789abcdef";
    if (n == 0u) {
        return;
    }
    const uint8_t mode = f[0];
    const uint8_t *rest = f + 1;
    size_t rn = n - 1u;
    if (rn > MT_LINE_MAX) {
        rn = MT_LINE_MAX;
    }
    if (mode & 2u) {
        size_t tab = 0;
        while (tab < rn && rest[tab] != '\t') {
            tab++;
        }
        memcpy(line, "label add ", 10);
        memcpy(line + 10, rest, tab);
        send_line(line, 10u + tab);
    }
    if (mode & 4u) {
        size_t tab = 0;
        while (tab < rn && rest[tab] != '\t') {
            tab++;
        }
        memcpy(line, "head config ", 12);
        memcpy(line + 12, rest, tab);
        send_line(line, 12u + tab);
    }
    size_t k = 0;
    memcpy(line, "learn ", 6);
    k = 6;
    if (mode & 1u) {
        const uint32_t crc = mt_crc32(0, rest, (uint32_t)rn);
        for (int s = 28; s >= 0; s -= 4) {
            line[k++] = (uint8_t)hex[(crc >> s) & 15u];
        }
        line[k++] = ' ';
    }
    memcpy(line + k, rest, rn);
    send_line(line, k + rn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_app_boot();
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            frame(data + start, i - start);
            start = i + 1u;
        }
    }
#if HAVE_HEAD
    fuzz_check_head_finite();
#endif
    fuzz_check_alive();
    return 0;
}
