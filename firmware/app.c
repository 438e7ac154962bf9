/* The application: the command loop over the UART (protocol: docs/protocol.md). This file
 * owns the loop itself: boot (banner), line framing and its errors, the dispatch of a line
 * to its command, `help`, `ping` and the fault line; the commands live by concern in the
 * files app_internal.h lists.
 * Portable C (no assembly, no board registers): a host build of the core with a fake board
 * and model drives the same code in tests/test_protocol_c.py. */
#include "app.h"

#include "app_internal.h"
#include "board.h"
#include "model_api.h"
#include "protocol.h"

/* Boards without a watchdog (board.h), and host builds of the core, link this no-op. */
__attribute__((weak)) void board_watchdog_kick(void) {}

static mt_line_reader_t reader;

void mt_app_init(void)
{
    mt_line_reset(&reader);
#if HAVE_HEAD
    head_boot();
#endif
    diagnostics_boot();
    mt_put("# mcutext firmware " MT_FIRMWARE_VERSION " protocol ");
    mt_put_u32(MT_PROTOCOL_VERSION);
    mt_put(" board " MT_BOARD_NAME " model ");
    put_str_escaped(mt_model_info.name);
    mt_put(" ready");
    mt_put_eol();
}

/* --- commands ---------------------------------------------------------------------------- */

HEAD_SHARED int word_is(const uint8_t *s, uint32_t n, const char *w)
{
    uint32_t i = 0;
    for (; i < n && w[i]; i++) {
        if (s[i] != (uint8_t)w[i]) {
            return 0;
        }
    }
    return i == n && w[i] == 0;
}

static void cmd_help(void)
{
#if HAVE_HEAD
    mt_put("commands ping info stats classify explain label learn keep eval head help");
#else
    mt_put("commands ping info stats classify explain help");
#endif
    mt_put_eol();
    mt_put_ok();
}

static void cmd_ping(const uint8_t *arg, uint32_t n)
{
    mt_put("pong");
    if (n) {
        mt_put_char(' ');
        mt_put_escaped(arg, n);
    }
    mt_put_eol();
    mt_put_ok();
}

static void dispatch(const uint8_t *line, uint32_t n)
{
    const uint32_t bad = mt_utf8_check(line, n);
    if (bad != n) {
        count_one(&stats.errors);
        mt_put("error ");
        mt_put_u32(MT_ERR_INVALID_UTF8);
        mt_put(" invalid UTF-8 at byte ");
        mt_put_u32(bad);
        mt_put_eol();
        return;
    }
    uint32_t c = 0;
    while (c < n && line[c] != ' ' && line[c] != '\t') {
        c++;
    }
    const uint8_t *arg = c < n ? line + c + 1 : line + n;
    const uint32_t arg_n = c < n ? n - c - 1 : 0;

    if (word_is(line, c, "ping")) {
        cmd_ping(arg, arg_n);
    } else if (word_is(line, c, "info")) {
        cmd_info();
    } else if (word_is(line, c, "stats")) {
        cmd_stats();
    } else if (word_is(line, c, "classify")) {
        cmd_classify(arg, arg_n, 0);
    } else if (word_is(line, c, "explain")) {
        cmd_classify(arg, arg_n, 1);
    } else if (word_is(line, c, "help")) {
        cmd_help();
#if HAVE_HEAD
    } else if (word_is(line, c, "label")) {
        cmd_label(arg, arg_n);
    } else if (word_is(line, c, "learn")) {
        cmd_learn(arg, arg_n);
    } else if (word_is(line, c, "keep")) {
        cmd_keep(arg, arg_n);
    } else if (word_is(line, c, "eval")) {
        cmd_eval(arg, arg_n);
    } else if (word_is(line, c, "head")) {
        cmd_head(arg, arg_n);
#endif
#if defined(MT_FAULT_COMMAND) && MT_FAULT_COMMAND
    } else if (word_is(line, c, "fault")) {
        /* Test builds only (tests/test_firmware_qemu.py): an undefined instruction, to check
         * each board's fault path (error 6, reset, boot notice). */
        __asm volatile("udf #0");
#endif
#if defined(MT_TEST_HANG) && MT_TEST_HANG
    } else if (word_is(line, c, "hang")) {
        /* Test builds only (tests/test_watchdog_qemu.py): a stuck state, which only the
         * board's watchdog ends. */
        for (;;) {
            __asm volatile("" ::: "memory");
        }
#endif
    } else {
        count_one(&stats.errors);
        mt_put_error_detail(MT_ERR_UNKNOWN_COMMAND, "unknown command (try help):", line, c);
    }
}

void mt_app_feed(uint8_t byte)
{
    const mt_line_status_t st = mt_line_feed(&reader, byte);
    if (st != MT_LINE_NONE) {
        count_one(&stats.lines);
    }
    switch (st) {
    case MT_LINE_READY:
        dispatch(reader.buf, reader.len);
        mt_line_reset(&reader);
        break;
    case MT_LINE_TOO_LONG:
        count_one(&stats.errors);
        mt_put("error ");
        mt_put_u32(MT_ERR_LINE_TOO_LONG);
        mt_put(" line too long (max ");
        mt_put_u32(MT_LINE_MAX);
        mt_put(" bytes)");
        mt_put_eol();
        break;
    case MT_LINE_HAS_NUL:
        put_error(MT_ERR_NUL_BYTE, "line contains a NUL byte");
        break;
    case MT_LINE_NONE:
        break;
    }
}

void mt_app_run(void)
{
    for (;;) {
        const int c = board_uart_getc();
        if (c >= 0) {
            mt_app_feed((uint8_t)c);
        }
    }
}

void mt_app_fault(void)
{
    mt_put_eol();
    mt_put_error(MT_ERR_FAULT, "CPU fault, resetting");
}
