/* The application core (firmware/app.c and the files app_internal.h lists) compiled into a
 * fuzz target, so that the target can put its static state back to boot values before every
 * input: libFuzzer runs millions of inputs in one process, and an input must not depend on
 * the ones before it. */
#ifndef MT_FUZZ_APP_HOST_H
#define MT_FUZZ_APP_HOST_H

#include <math.h>
#include <string.h>

#include "../app.c"
#include "../classify.c"
#include "../diagnostics.c"
#include "../head_commands.c"
#include "../head_storage.c"
#include "../reply.c"
#include "../train_buffer.c"
#include "fuzz_board.h"

/* A reset: the application's state back to its boot values (the .bss of a real reset), the
 * storage kept. The list follows the file-scope variables of the files included above. */
static void fuzz_app_reset(void)
{
    memset(&reader, 0, sizeof reader);
    memset(&stats, 0, sizeof stats);
    memset(ids, 0, sizeof ids);
    counter_overhead = 0;
#if HAVE_HEAD
    memset(&head, 0, sizeof head);
    head_ready = 0;
    head_unsaved = 0;
    import_len = 0;
    memset(import_buf, 0, sizeof import_buf);
#if MT_TRAIN_BUFFER
    memset(buf_q, 0, sizeof buf_q);
    memset(buf_y, 0, sizeof buf_y);
#endif
    buf_start = buf_n = 0;
    eval_correct = eval_total = 0;
    storage = 0;
    memset(&slots, 0, sizeof slots);
    boot_status = 0;
#endif
    mt_fuzz_out_reset();
    mt_app_init(); /* the line reader, the head (factory, or loaded from storage), banner */
}

/* A power-on: the storage erased too. */
static void fuzz_app_boot(void)
{
    mt_fuzz_storage_erase();
    fuzz_app_reset();
}

/* Feeds bytes as if they came from the UART. */
static void fuzz_feed(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mt_app_feed(s[i]);
    }
}

static void fuzz_feed_str(const char *s)
{
    fuzz_feed((const uint8_t *)s, strlen(s));
}

/* After any input the device answers a fresh line; every byte it sent is printable ASCII
 * or CR / LF. */
static void fuzz_check_alive(void)
{
    static const char want[] = "pong fuzz\r\nok\r\n";
    fuzz_feed_str("\nping fuzz\n");
    MT_FUZZ_CHECK(mt_fuzz_out_ends_with(want, sizeof want - 1u));
    MT_FUZZ_CHECK(mt_fuzz_out.bad == 0u);
}

#if HAVE_HEAD
/* Every value of the head is finite after any sequence of commands. */
static void fuzz_check_head_finite(void)
{
    for (uint32_t i = 0; i < (uint32_t)head.c_max * head.h; i++) {
        MT_FUZZ_CHECK(isfinite(head.w[i]));
    }
    for (uint32_t c = 0; c < head.c_max; c++) {
        MT_FUZZ_CHECK(isfinite(head.b[c]));
    }
}
#endif

#endif
