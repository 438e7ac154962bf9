/* What the firmware reports about itself: `info` (build, model, memory) and `stats` (counts
 * since boot, stack high-water mark, reset cause); the stack reserve painted at boot for that
 * mark; the counter's own overhead, measured at boot and taken off every cost; the profiling
 * marks of a `--profile` build and their `ops` line (docs/protocol.md). */
#include "app.h"
#include "app_internal.h"
#include "board.h"
#include "model_api.h"
#include "mt_common.h"
#include "protocol.h"
#include "tokenizer.h"

#ifndef MT_BOARD_FLASH_BYTES
#define MT_BOARD_FLASH_BYTES 0u
#endif
#ifndef MT_BOARD_RAM_BYTES
#define MT_BOARD_RAM_BYTES 0u
#endif
#ifndef MT_BOARD_CPU
#define MT_BOARD_CPU "unknown"
#endif
/* The kernels' build mode (firmware/kernels/mt_common.h): DSP path or portable C. */
#if MT_USE_DSP
#define MT_KERNELS "dsp"
#else
#define MT_KERNELS "portable"
#endif

#define STACK_PAINT 0xA5A5A5A5u

/* Defined by every board's linker script (docs/boards.md). */
extern uint32_t __mt_flash_start[], __mt_flash_used_end[];
/* Optional (weak: 0 when a board's linker script has none): a range inside the image kept
 * free of code, e.g. flash sectors reserved for storage; not counted as used flash. */
extern uint32_t __mt_flash_gap_start[] __attribute__((weak));
extern uint32_t __mt_flash_gap_end[] __attribute__((weak));
extern uint32_t __mt_ram_start[], __mt_ram_used_end[];
extern uint32_t __stack_limit[], __stack_top[];

app_stats_t stats;
static uint32_t counter_overhead;

#if MT_PROFILE
/* Counter readings at the model's profiling marks; mark k precedes kernel call k. */
static uint32_t marks[MT_PROFILE_MAX_MARKS];
static uint32_t n_marks;

void mt_profile_mark(uint32_t k)
{
    if (k < MT_PROFILE_MAX_MARKS) {
        marks[k] = board_counter_ticks();
        if (k + 1u > n_marks) {
            n_marks = k + 1u;
        }
    }
}

void profile_restart(void)
{
    n_marks = 0;
}

/* Per kernel call: the counter between consecutive marks, less one read's overhead. */
void put_ops(void)
{
    mt_put("ops ");
    mt_put(board_counter_unit());
    for (uint32_t k = 0; k + 1u < n_marks; k++) {
        const uint32_t n = board_counter_convert(marks[k + 1u] - marks[k]);
        mt_put_char(' ');
        mt_put_u32(n > counter_overhead ? n - counter_overhead : 0u);
    }
    mt_put_eol();
}
#endif

/* --- stack high-water mark --------------------------------------------------------------- */

/* Bytes of the stack reserve ever used: the reserve is painted at boot, the lowest word that
 * lost its paint marks the deepest the stack has grown (interrupt frames included). */
static uint32_t stack_used(void)
{
    const uint32_t *p = __stack_limit;
    while (p < __stack_top && *p == STACK_PAINT) {
        p++;
    }
    return (uint32_t)((const uint8_t *)__stack_top - (const uint8_t *)p);
}

static uint32_t stack_reserve(void)
{
    return (uint32_t)((const uint8_t *)__stack_top - (const uint8_t *)__stack_limit);
}

/* `stack <used> of <reserve>` (info, stats) */
static void put_stack(void)
{
    put_used_of("stack", stack_used(), stack_reserve());
}

static void paint_stack(void)
{
    volatile uint32_t marker = 0;
    const uintptr_t sp = (uintptr_t)&marker;
    const uintptr_t limit = (uintptr_t)__stack_limit, top = (uintptr_t)__stack_top;
    if (sp <= limit + 64u || sp > top) {
        return; /* not running on the reserve (a host build of the core) */
    }
    /* Up to 64 bytes below the live frame of this function. */
    for (uint32_t *p = __stack_limit; (uintptr_t)p < sp - 64u; p++) {
        *p = STACK_PAINT;
    }
}

/* --- cost -------------------------------------------------------------------------------- */

uint32_t measure(uint32_t start)
{
    const uint32_t n = board_counter_convert(board_counter_ticks() - start);
    return n > counter_overhead ? n - counter_overhead : 0u;
}

void diagnostics_boot(void)
{
    paint_stack();
    const uint32_t t = board_counter_ticks();
    counter_overhead = board_counter_convert(board_counter_ticks() - t);
}

/* --- info, stats ------------------------------------------------------------------------- */

void cmd_info(void)
{
    const mt_model_info_t *m = &mt_model_info;
    const mt_tokenizer_spec_t *t = &m->tokenizer;
    /* the lines known at build time as one string each ("\r\n" is what mt_put_eol sends):
     * fewer calls, less flash */
    mt_put("firmware " MT_FIRMWARE_VERSION "\r\n");
    put_kv("protocol", MT_PROTOCOL_VERSION);
    mt_put("board " MT_BOARD_NAME "\r\ncpu " MT_BOARD_CPU "\r\nkernels " MT_KERNELS "\r\n");
    put_kv("profile", MT_PROFILE);
    mt_put("model ");
    put_str_escaped(m->name);
    mt_put_eol();
    put_kv("classes", m->num_classes);
    for (uint32_t i = 0; i < m->num_classes; i++) {
        mt_put("label ");
        mt_put_u32(i);
        mt_put_char(' ');
        put_str_escaped(m->labels[i]);
        mt_put_eol();
    }
    mt_put("tokenizer version ");
    mt_put_u32(mt_tokenizer_version(t));
    mt_put(" buckets ");
    mt_put_u32(t->buckets);
    mt_put(" max-words ");
    mt_put_u32(t->max_words);
    mt_put(" features-per-word ");
    mt_put_u32(t->features_per_word);
    mt_put(" seed ");
    mt_put_u32(t->seed);
    mt_put(" max-word-bytes ");
    mt_put_u32(t->max_word_bytes);
    if (t->robust != 0) {
        mt_put(" keys ");
        mt_put_u32(t->robust->count);
    }
    mt_put_eol();
    put_kv("seq-len", m->seq_len);
    put_kv("feature-dim", m->feature_dim);
    put_kv("arena", m->arena_bytes);
    put_kv("weights", m->weights_bytes);
    put_kv("macs", m->macs);
    put_used_of("flash", (uint32_t)((uint8_t *)__mt_flash_used_end - (uint8_t *)__mt_flash_start) -
                             (uint32_t)((uint8_t *)__mt_flash_gap_end -
                                        (uint8_t *)__mt_flash_gap_start),
                MT_BOARD_FLASH_BYTES);
    put_used_of("ram", (uint32_t)((uint8_t *)__mt_ram_used_end - (uint8_t *)__mt_ram_start),
                MT_BOARD_RAM_BYTES);
    put_stack();
    put_kv("line-max", MT_LINE_MAX);
    mt_put("counter ");
    mt_put(board_counter_unit());
    mt_put_eol();
    mt_put_ok();
}

void cmd_stats(void)
{
    put_stack();
    put_kv("requests", stats.lines);
    put_kv("failed", stats.errors);
    put_kv("classified", stats.classifications);
    if (board_reset_cause) { /* optional board hook (board.h) */
        mt_put("reset ");
        mt_put(board_reset_cause());
        mt_put_eol();
    }
    mt_put_ok();
}
