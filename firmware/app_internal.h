/* What the files of the application share; the application's outside is app.h.
 *
 *   app.c            the command loop: boot, line framing, dispatch, help, ping, the fault line
 *   reply.c          reply formatting: key/value lines, counted error lines, floats and hex
 *   diagnostics.c    info, stats, the stack's paint and high-water mark, cost measuring,
 *                    the profiling marks
 *   classify.c       classify and explain: tokenizer + model, the label, scores, words, cost
 * and, in a build with personalization (HAVE_HEAD):
 *   head_commands.c  the personalized head and its commands: label, learn, eval, head ...
 *   train_buffer.c   the buffered examples: keep, head imprint, head train
 *   head_storage.c   the head in and out of the device: storage at boot, head save,
 *                    head export, head import
 *
 * Everything here lives in static memory; no buffer grows at run time. */
#ifndef MT_APP_INTERNAL_H
#define MT_APP_INTERNAL_H

#include <stdint.h>

#include "personalize.h" /* model_head.h: MT_PERSONALIZE and the head's sizes */
#include "profile.h"     /* MT_PROFILE */

/* Sized by the build from the bundle (seq_len); checked against the model at run time. */
#ifndef MT_MAX_SEQ_LEN
#define MT_MAX_SEQ_LEN 512u
#endif

/* MT_NO_PERSONALIZE (`mcutext build --no-personalize`) leaves the head commands out: the
 * classification-only firmware. */
#if defined(MT_PERSONALIZE) && MT_PERSONALIZE && !defined(MT_NO_PERSONALIZE)
#define HAVE_HEAD 1
#else
#define HAVE_HEAD 0
#endif

/* A function marked HEAD_SHARED serves its own file and the head commands: in a build
 * without them it is file-local, so that the compiler can inline it where it is used, as it
 * did when the application was one file (the classification-only firmware's flash is
 * tight). Such functions are declared below under HAVE_HEAD only. */
#if HAVE_HEAD
#define HEAD_SHARED
#else
#define HEAD_SHARED static
#endif

/* Since boot: for `stats` (diagnostics.c). */
typedef struct {
    uint32_t lines;           /* request lines answered (errors included) */
    uint32_t errors;          /* error lines sent */
    uint32_t classifications; /* classify and explain runs */
} app_stats_t;
extern app_stats_t stats;

/* One run of the tokenizer and the model (classify.c). */
typedef struct {
    uint32_t words;
    uint32_t tokenizer_count;
    uint32_t model_count;
    int status;
} run_result_t;

/* Counters saturate at 2^32 - 1 rather than wrap. */
static inline void count_one(uint32_t *counter)
{
    if (*counter != UINT32_MAX) {
        ++*counter;
    }
}

/* --- reply.c ---------------------------------------------------------------------------- */
void put_str_escaped(const char *s);
void put_kv(const char *key, uint32_t v);                        /* `key v` */
void put_used_of(const char *key, uint32_t used, uint32_t budget); /* `key used of budget` */
void put_error(int code, const char *message);                   /* counted in stats */
#if HAVE_HEAD
void put_float3(float x); /* three decimals; "-" for -inf, NaN or beyond +-2e6 */
void put_hex32(uint32_t v);
#endif

static inline uint32_t float_bits(float x)
{
    union {
        float f;
        uint32_t u;
    } b = {x};
    return b.u;
}

/* --- diagnostics.c ---------------------------------------------------------------------- */
void diagnostics_boot(void); /* paints the stack, calibrates the counter's overhead */
/* The counter since `start` (board_counter_ticks), in its unit, less one reading's cost. */
uint32_t measure(uint32_t start);
void cmd_info(void);
void cmd_stats(void);
#if MT_PROFILE
void profile_restart(void); /* before a model run: no marks yet */
void put_ops(void);         /* the `ops` line of the last run's marks */
#endif

/* --- classify.c ------------------------------------------------------------------------- */
void cmd_classify(const uint8_t *text, uint32_t n, int explain);

#if HAVE_HEAD
/* --- HEAD_SHARED: app.c, reply.c, classify.c ---------------------------------------------- */
int word_is(const uint8_t *s, uint32_t n, const char *w); /* 1 if s[0..n) is the word w */
uint32_t str_len(const char *s);
run_result_t run_model(const uint8_t *text, uint32_t n);
uint32_t int8_best(void); /* the int8 model's answer to the last run */

/* --- head_commands.c -------------------------------------------------------------------- */
/* The personalized head (docs/personalization.md): a float copy of the model's last layer
 * that `learn` updates. */
extern mt_head_t head;
extern int head_ready;   /* mt_head_init succeeded and the head fits the model */
extern int head_unsaved; /* changed since the last save (or boot) */
void head_boot(void);    /* the factory head, then the saved one if the storage has it */
int head_personalized(void);
int head_available(void);     /* 1, or 0 after an error line: the head does not fit */
uint32_t head_best(void);     /* scores the last run's features with the float head */
void put_head_scores(void);   /* `head` and `head-bits` lines after head_best() */
void put_head_error(int st);  /* an mt_head_status_t as an error line */
uint32_t parse_u32(const uint8_t *s, uint32_t n, uint32_t *pos, int *ok);
int hex_digit(uint8_t c);
void cmd_label(const uint8_t *arg, uint32_t n);
void cmd_learn(const uint8_t *arg, uint32_t n);
void cmd_eval(const uint8_t *arg, uint32_t n);
void cmd_head(const uint8_t *arg, uint32_t n);
/* The framed example of learn, keep and eval checked, its label found (*y) and the model run
 * on its text (*r); otherwise the error answered and 0 returned. */
int run_labelled(const uint8_t *arg, uint32_t n, const char *verb, uint32_t *y,
                 run_result_t *r);
void put_label_line(const char *key, uint32_t index);

/* --- train_buffer.c --------------------------------------------------------------------- */
#ifndef MT_TRAIN_BUFFER
#define MT_TRAIN_BUFFER 64u
#endif
uint32_t buffer_count(void);
void buffer_clear(void);
void buffer_add(const int8_t *q, uint32_t y);
void buffer_drop_row(uint32_t row);
void cmd_keep(const uint8_t *arg, uint32_t n);
int train_buffer_command(const uint8_t *arg, uint32_t n); /* head imprint, head train */

/* --- head_storage.c --------------------------------------------------------------------- */
void storage_boot(void);
void put_storage_state(void);
int head_storage_command(const uint8_t *arg, uint32_t n); /* head save, export, import */
#endif

#endif
