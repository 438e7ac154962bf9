/* The serial protocol's framing and printing (spec: docs/protocol.md).
 * Input: bytes in, complete lines out, with a bounded buffer. Output: lines built from a few
 * integer formatters (no printf, no floats in the formatter). */
#ifndef MT_PROTOCOL_H
#define MT_PROTOCOL_H

#include <stdint.h>

#define MT_PROTOCOL_VERSION 1u

#ifndef MT_LINE_MAX
#define MT_LINE_MAX 1024u /* bytes of one command line, terminator excluded */
#endif

/* Error codes of `error <code> <message>` lines; stable across protocol versions. */
enum {
    MT_ERR_UNKNOWN_COMMAND = 1,
    MT_ERR_LINE_TOO_LONG = 2,
    MT_ERR_NUL_BYTE = 3,
    MT_ERR_BAD_ARGUMENT = 4,
    MT_ERR_MODEL = 5,
    MT_ERR_FAULT = 6,
    MT_ERR_INVALID_UTF8 = 7,
    MT_ERR_CRC = 8, /* a CRC-checked upload (learn, head import) failed its CRC: not applied */
    MT_ERR_STORAGE = 9, /* head save: no storage, or it failed (the previous save stays) */
};

typedef enum {
    MT_LINE_NONE = 0,   /* nothing complete yet */
    MT_LINE_READY,      /* buf[0..len) holds a line (no terminator, no NUL) */
    MT_LINE_TOO_LONG,   /* a line longer than MT_LINE_MAX was discarded */
    MT_LINE_HAS_NUL,    /* a line containing a NUL byte was discarded */
} mt_line_status_t;

typedef struct {
    uint8_t buf[MT_LINE_MAX];
    uint32_t len;
    uint32_t dropped; /* bytes discarded from an overlong line */
    uint8_t nul;      /* the current line contained a NUL byte */
} mt_line_reader_t;

void mt_line_reset(mt_line_reader_t *r);

/* Feeds one received byte. CR, LF and CR LF end a line; empty lines are ignored. After
 * MT_LINE_READY / _TOO_LONG / _HAS_NUL the caller handles the line; the next call starts a
 * new one. */
mt_line_status_t mt_line_feed(mt_line_reader_t *r, uint8_t byte);

/* Returns n if s[0..n) is well-formed UTF-8 (RFC 3629: shortest forms only, no surrogates,
 * at most U+10FFFF), else the offset of the first byte of the first ill-formed sequence. */
uint32_t mt_utf8_check(const uint8_t *s, uint32_t n);

/* Output. */
void mt_put(const char *s);
void mt_put_bytes(const uint8_t *s, uint32_t n);
void mt_put_char(char c);
void mt_put_u32(uint32_t v);
void mt_put_i32(int32_t v);
void mt_put_milli(int32_t milli); /* -1234 prints as -1.234 */
void mt_put_escaped(const uint8_t *s, uint32_t n); /* printable ASCII as is; \\ and \xHH */
void mt_put_eol(void);                             /* "\r\n" */
void mt_put_ok(void);
void mt_put_error(int code, const char *message);
/* `error <code> <message> '<escaped detail>'`: detail shows at most 32 bytes. */
void mt_put_error_detail(int code, const char *message, const uint8_t *detail, uint32_t n);

#endif
