#include "protocol.h"

#include "board.h"

void mt_line_reset(mt_line_reader_t *r)
{
    r->len = 0;
    r->dropped = 0;
    r->nul = 0;
}

mt_line_status_t mt_line_feed(mt_line_reader_t *r, uint8_t byte)
{
    if (byte == '\r' || byte == '\n') {
        mt_line_status_t st = MT_LINE_NONE;
        if (r->dropped) {
            st = MT_LINE_TOO_LONG;
        } else if (r->nul) {
            st = MT_LINE_HAS_NUL;
        } else if (r->len) {
            st = MT_LINE_READY;
        }
        if (st != MT_LINE_READY) {
            mt_line_reset(r);
        }
        return st;
    }
    if (byte == 0) {
        r->nul = 1;
    }
    if (r->len < MT_LINE_MAX) {
        r->buf[r->len++] = byte;
    } else if (r->dropped < UINT32_MAX) {
        r->dropped++;
    }
    return MT_LINE_NONE;
}

uint32_t mt_utf8_check(const uint8_t *s, uint32_t n)
{
    uint32_t i = 0;
    while (i < n) {
        const uint8_t b = s[i];
        if (b < 0x80u) {
            i++;
            continue;
        }
        /* need: continuation bytes; [lo, hi]: the range of the first of them, narrowed for
         * the leads that could start an overlong form, a surrogate or a value > U+10FFFF. */
        uint32_t need;
        uint8_t lo = 0x80u, hi = 0xBFu;
        if (b >= 0xC2u && b <= 0xDFu) {
            need = 1u;
        } else if (b >= 0xE0u && b <= 0xEFu) {
            need = 2u;
            lo = b == 0xE0u ? 0xA0u : lo;
            hi = b == 0xEDu ? 0x9Fu : hi;
        } else if (b >= 0xF0u && b <= 0xF4u) {
            need = 3u;
            lo = b == 0xF0u ? 0x90u : lo;
            hi = b == 0xF4u ? 0x8Fu : hi;
        } else {
            return i; /* a continuation byte, C0, C1 or F5..FF as a lead */
        }
        if (n - i <= need || s[i + 1u] < lo || s[i + 1u] > hi) {
            return i;
        }
        for (uint32_t k = 2u; k <= need; k++) {
            if ((s[i + k] & 0xC0u) != 0x80u) {
                return i;
            }
        }
        i += need + 1u;
    }
    return n;
}

void mt_put_char(char c)
{
    board_uart_putc((uint8_t)c);
}

void mt_put_bytes(const uint8_t *s, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        board_uart_putc(s[i]);
    }
}

void mt_put(const char *s)
{
    while (*s) {
        board_uart_putc((uint8_t)*s++);
    }
}

void mt_put_u32(uint32_t v)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n) {
        mt_put_char(digits[--n]);
    }
}

void mt_put_i32(int32_t v)
{
    if (v < 0) {
        mt_put_char('-');
        mt_put_u32(0u - (uint32_t)v);
    } else {
        mt_put_u32((uint32_t)v);
    }
}

void mt_put_milli(int32_t milli)
{
    uint32_t m = milli < 0 ? 0u - (uint32_t)milli : (uint32_t)milli;
    if (milli < 0) {
        mt_put_char('-');
    }
    mt_put_u32(m / 1000u);
    mt_put_char('.');
    uint32_t frac = m % 1000u;
    mt_put_char((char)('0' + frac / 100u));
    mt_put_char((char)('0' + frac / 10u % 10u));
    mt_put_char((char)('0' + frac % 10u));
}

void mt_put_escaped(const uint8_t *s, uint32_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (uint32_t i = 0; i < n; i++) {
        uint8_t b = s[i];
        if (b == '\\') {
            mt_put("\\\\");
        } else if (b >= 0x20u && b < 0x7Fu) {
            board_uart_putc(b);
        } else {
            mt_put("\\x");
            mt_put_char(hex[b >> 4]);
            mt_put_char(hex[b & 15u]);
        }
    }
}

void mt_put_eol(void)
{
    mt_put("\r\n");
}

void mt_put_ok(void)
{
    mt_put("ok\r\n");
}

void mt_put_error(int code, const char *message)
{
    mt_put("error ");
    mt_put_u32((uint32_t)code);
    mt_put_char(' ');
    mt_put(message);
    mt_put_eol();
}

void mt_put_error_detail(int code, const char *message, const uint8_t *detail, uint32_t n)
{
    mt_put("error ");
    mt_put_u32((uint32_t)code);
    mt_put_char(' ');
    mt_put(message);
    mt_put(" '");
    mt_put_escaped(detail, n < 32u ? n : 32u);
    mt_put(n > 32u ? "...'" : "'");
    mt_put_eol();
}
