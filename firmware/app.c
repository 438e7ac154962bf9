/* The application: the command loop over the UART (protocol: docs/protocol.md).
 * Portable C (no assembly, no board registers): a host build of the core with a fake board
 * and model drives the same code in tests/test_protocol_c.py. */
#include "app.h"

#include "board.h"
#include "model_api.h"
#include "mt_common.h"
#include "profile.h"
#include "protocol.h"
#include "tokenizer.h"
#include "words.h"

/* Sized by the build from the bundle (seq_len); checked against the model at run time. */
#ifndef MT_MAX_SEQ_LEN
#define MT_MAX_SEQ_LEN 512u
#endif
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
extern uint32_t __mt_ram_start[], __mt_ram_used_end[];
extern uint32_t __stack_limit[], __stack_top[];

static mt_line_reader_t reader;
static int32_t ids[MT_MAX_SEQ_LEN];
static uint32_t counter_overhead;

/* Since boot: for `stats`. */
static struct {
    uint32_t lines;           /* request lines answered (errors included) */
    uint32_t errors;          /* error lines sent */
    uint32_t classifications; /* classify and explain runs */
} stats;

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
#endif

typedef struct {
    uint32_t words;
    uint32_t tokenizer_count;
    uint32_t model_count;
    int status;
} run_result_t;

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

/* --- output helpers ---------------------------------------------------------------------- */

static uint32_t str_len(const char *s)
{
    uint32_t n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

static void put_str_escaped(const char *s)
{
    mt_put_escaped((const uint8_t *)s, str_len(s));
}

static void put_kv(const char *key, uint32_t v)
{
    mt_put(key);
    mt_put_char(' ');
    mt_put_u32(v);
    mt_put_eol();
}

static void put_used_of(const char *key, uint32_t used, uint32_t budget)
{
    mt_put(key);
    mt_put_char(' ');
    mt_put_u32(used);
    mt_put(" of ");
    mt_put_u32(budget);
    mt_put_eol();
}

static void put_error(int code, const char *message)
{
    stats.errors++;
    mt_put_error(code, message);
}

/* round((q - zero_point) * scale * 1000), half away from zero, from the bits of the IEEE-754
 * scale: no floating-point instructions (and none of the soft-float library on boards without
 * an FPU). */
static int32_t dequantize_milli(int32_t q, const mt_quant_t *quant)
{
    union {
        float f;
        uint32_t u;
    } bits = {quant->scale};
    const uint32_t exponent = (bits.u >> 23) & 0xFFu;
    if (exponent == 0u || exponent == 0xFFu) {
        return 0; /* zero, subnormal, inf, nan: not a quantization scale */
    }
    int64_t v = (int64_t)(q - quant->zero_point) * 1000;
    v *= (int64_t)((bits.u & 0x7FFFFFu) | 0x800000u); /* |v| < 2^43 */
    if (bits.u >> 31) {
        v = -v;
    }
    const int shift = 150 - (int)exponent; /* value = v * 2^-shift */
    if (shift > 62) {
        return 0;
    }
    if (shift > 0) {
        const int64_t half = (int64_t)1 << (shift - 1);
        v = v >= 0 ? (v + half) >> shift : -((-v + half) >> shift);
    } else if (v != 0) {
        return v < 0 ? INT32_MIN : INT32_MAX; /* a scale >= 2^23 */
    }
    return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
}

/* --- boot -------------------------------------------------------------------------------- */

static uint32_t measure(uint32_t start)
{
    const uint32_t n = board_counter_convert(board_counter_ticks() - start);
    return n > counter_overhead ? n - counter_overhead : 0u;
}

void mt_app_init(void)
{
    mt_line_reset(&reader);
    paint_stack();
    const uint32_t t = board_counter_ticks();
    counter_overhead = board_counter_convert(board_counter_ticks() - t);
    mt_put("# mcutext firmware " MT_FIRMWARE_VERSION " protocol ");
    mt_put_u32(MT_PROTOCOL_VERSION);
    mt_put(" board " MT_BOARD_NAME " model ");
    put_str_escaped(mt_model_info.name);
    mt_put(" ready");
    mt_put_eol();
}

/* --- commands ---------------------------------------------------------------------------- */

static int word_is(const uint8_t *s, uint32_t n, const char *w)
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
    mt_put("commands ping info stats classify explain help");
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

static void cmd_info(void)
{
    const mt_model_info_t *m = &mt_model_info;
    const mt_tokenizer_spec_t *t = &m->tokenizer;
    mt_put("firmware " MT_FIRMWARE_VERSION);
    mt_put_eol();
    put_kv("protocol", MT_PROTOCOL_VERSION);
    mt_put("board " MT_BOARD_NAME);
    mt_put_eol();
    mt_put("cpu " MT_BOARD_CPU);
    mt_put_eol();
    mt_put("kernels " MT_KERNELS);
    mt_put_eol();
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
    mt_put_u32(MT_TOKENIZER_SPEC_VERSION);
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
    mt_put_eol();
    put_kv("seq-len", m->seq_len);
    put_kv("feature-dim", m->feature_dim);
    put_kv("arena", m->arena_bytes);
    put_kv("weights", m->weights_bytes);
    put_kv("macs", m->macs);
    put_used_of("flash", (uint32_t)((uint8_t *)__mt_flash_used_end - (uint8_t *)__mt_flash_start),
                MT_BOARD_FLASH_BYTES);
    put_used_of("ram", (uint32_t)((uint8_t *)__mt_ram_used_end - (uint8_t *)__mt_ram_start),
                MT_BOARD_RAM_BYTES);
    put_used_of("stack", stack_used(), stack_reserve());
    put_kv("line-max", MT_LINE_MAX);
    mt_put("counter ");
    mt_put(board_counter_unit());
    mt_put_eol();
    mt_put_ok();
}

static void cmd_stats(void)
{
    put_used_of("stack", stack_used(), stack_reserve());
    put_kv("requests", stats.lines);
    put_kv("failed", stats.errors);
    put_kv("classified", stats.classifications);
    mt_put_ok();
}

static run_result_t run_model(const uint8_t *text, uint32_t n)
{
    run_result_t r = {0, 0, 0, 0};
    uint32_t t0 = board_counter_ticks();
    r.words = mt_tokenize(&mt_model_info.tokenizer, text, n, ids);
    r.tokenizer_count = measure(t0);
#if MT_PROFILE
    n_marks = 0;
#endif
    t0 = board_counter_ticks();
    r.status = mt_model_run(ids);
    r.model_count = measure(t0);
    return r;
}

static void put_result(const run_result_t *r)
{
    const mt_model_info_t *m = &mt_model_info;
    const int8_t *logits = mt_model_logits();
    uint32_t best = 0;
    for (uint32_t i = 1; i < m->num_classes; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    mt_put("label ");
    mt_put_u32(best);
    mt_put_char(' ');
    put_str_escaped(m->labels[best]);
    mt_put_eol();
    mt_put("scores");
    for (uint32_t i = 0; i < m->num_classes; i++) {
        mt_put_char(' ');
        mt_put_i32(logits[i]);
    }
    mt_put_eol();
    /* Dequantized: (q - zero_point) * scale, printed with three decimals. */
    mt_put("logits");
    for (uint32_t i = 0; i < m->num_classes; i++) {
        mt_put_char(' ');
        mt_put_milli(dequantize_milli(logits[i], &m->logits_q));
    }
    mt_put_eol();
    put_kv("words", r->words);
    mt_put("cost ");
    mt_put(board_counter_unit());
    mt_put(" tokenizer ");
    mt_put_u32(r->tokenizer_count);
    mt_put(" model ");
    mt_put_u32(r->model_count);
    mt_put_eol();
#if MT_PROFILE
    /* Per kernel call: the counter between consecutive marks, less one read's overhead. */
    mt_put("ops ");
    mt_put(board_counter_unit());
    for (uint32_t k = 0; k + 1u < n_marks; k++) {
        const uint32_t n = board_counter_convert(marks[k + 1u] - marks[k]);
        mt_put_char(' ');
        mt_put_u32(n > counter_overhead ? n - counter_overhead : 0u);
    }
    mt_put_eol();
#endif
}

/* One `word` line per word the model saw: the words come from the tokenizer's own scanner,
 * so they are exactly the model's words. */
static void put_attention(const uint8_t *text, uint32_t n, uint32_t words)
{
    const mt_model_info_t *m = &mt_model_info;
    const int8_t *att = mt_model_attention();
    uint32_t max_bytes = m->tokenizer.max_word_bytes;
    if (max_bytes == 0u || max_bytes > MT_TOKENIZER_MAX_WORD_BYTES) {
        max_bytes = MT_TOKENIZER_MAX_WORD_BYTES;
    }
    uint32_t pos = 0;
    mt_word_t w;
    for (uint32_t i = 0; i < words && mt_next_word(text, n, max_bytes, &pos, &w); i++) {
        mt_put("word ");
        mt_put_u32(i);
        mt_put_char(' ');
        mt_put_i32(att[i]);
        mt_put_char(' ');
        mt_put_milli(dequantize_milli(att[i], &m->attention_q));
        mt_put_char(' ');
        for (uint32_t k = 0; k < w.len; k++) {
            const uint8_t b = mt_lower(text[w.start + k]);
            mt_put_escaped(&b, 1);
        }
        mt_put_eol();
    }
}

static void cmd_classify(const uint8_t *text, uint32_t n, int explain)
{
    const mt_model_info_t *m = &mt_model_info;
    if (m->seq_len > MT_MAX_SEQ_LEN ||
        m->tokenizer.max_words * m->tokenizer.features_per_word != m->seq_len) {
        put_error(MT_ERR_MODEL, "model input does not match the firmware build");
        return;
    }
    const run_result_t r = run_model(text, n);
    if (r.status != 0) {
        put_error(MT_ERR_MODEL, "model run failed");
        return;
    }
    stats.classifications++;
    put_result(&r);
    if (explain) {
        put_attention(text, n, r.words);
    }
    mt_put_ok();
}

static void dispatch(const uint8_t *line, uint32_t n)
{
    const uint32_t bad = mt_utf8_check(line, n);
    if (bad != n) {
        stats.errors++;
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
#if defined(MT_FAULT_COMMAND) && MT_FAULT_COMMAND
    } else if (word_is(line, c, "fault")) {
        /* Test builds only (tests/test_firmware_qemu.py): an undefined instruction, to check
         * each board's fault path (error 6, reset, boot notice). */
        __asm volatile("udf #0");
#endif
    } else {
        stats.errors++;
        mt_put_error_detail(MT_ERR_UNKNOWN_COMMAND, "unknown command (try help):", line, c);
    }
}

void mt_app_feed(uint8_t byte)
{
    const mt_line_status_t st = mt_line_feed(&reader, byte);
    if (st != MT_LINE_NONE) {
        stats.lines++;
    }
    switch (st) {
    case MT_LINE_READY:
        dispatch(reader.buf, reader.len);
        mt_line_reset(&reader);
        break;
    case MT_LINE_TOO_LONG:
        stats.errors++;
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
