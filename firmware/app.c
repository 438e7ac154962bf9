/* The application: the command loop over the UART (protocol: docs/protocol.md).
 * Portable C (no assembly, no board registers): a host build of the core with a fake board
 * and model drives the same code in tests/test_protocol_c.py. */
#include "app.h"

#include "board.h"
#include "model_api.h"
#include "mt_common.h"
#include "personalize.h"
#include "profile.h"
#include "protocol.h"
#include "slots.h"
#include "storage.h"
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
/* Boards without a watchdog (board.h), and host builds of the core, link this no-op. */
__attribute__((weak)) void board_watchdog_kick(void) {}

/* Optional (weak: 0 when a board's linker script has none): a range inside the image kept
 * free of code, e.g. flash sectors reserved for storage; not counted as used flash. */
extern uint32_t __mt_flash_gap_start[] __attribute__((weak));
extern uint32_t __mt_flash_gap_end[] __attribute__((weak));
extern uint32_t __mt_ram_start[], __mt_ram_used_end[];
extern uint32_t __stack_limit[], __stack_top[];

static mt_line_reader_t reader;

/* MT_NO_PERSONALIZE (`mcutext build --no-personalize`) leaves the head commands out: the
 * classification-only firmware. */
#if defined(MT_PERSONALIZE) && MT_PERSONALIZE && !defined(MT_NO_PERSONALIZE)
/* The personalized head (docs/personalization.md): a float copy of the model's last layer
 * that `learn` updates. `classify` uses it once it has taken an update (updates > 0);
 * until then the int8 model's own head answers, byte-identical to TFLite Micro. */
extern const mt_head_factory_t mt_model_head; /* generated: gen/head.c */
static mt_head_t head;
static int head_ready; /* mt_head_init succeeded and the head fits the model */
#define HAVE_HEAD 1
static int head_unsaved; /* changed since the last save (or boot) */
static void storage_boot(void);
static void buffer_clear(void);
static void buffer_add(const int8_t *q, uint32_t y);
static void buffer_drop_row(uint32_t row);
#else
#define HAVE_HEAD 0
#endif
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

/* Counters saturate at 2^32 - 1 rather than wrap. */
static void count_one(uint32_t *counter)
{
    if (*counter != UINT32_MAX) {
        ++*counter;
    }
}

static void put_error(int code, const char *message)
{
    count_one(&stats.errors);
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
#if HAVE_HEAD
    head_ready = mt_model_head.feature_dim == mt_model_info.feature_dim &&
                 mt_model_head.num_classes == mt_model_info.num_classes &&
                 mt_head_init(&head, &mt_model_head) == MT_HEAD_OK;
    storage_boot();
#endif
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
    if (board_reset_cause) { /* optional board hook (board.h) */
        mt_put("reset ");
        mt_put(board_reset_cause());
        mt_put_eol();
    }
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

static uint32_t int8_best(void)
{
    const int8_t *logits = mt_model_logits();
    uint32_t best = 0;
    for (uint32_t i = 1; i < mt_model_info.num_classes; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    return best;
}

#if HAVE_HEAD
/* --- personalization (docs/personalization.md) ------------------------------------------ */

static int head_personalized(void)
{
    return head_ready && head.updates > 0u;
}

/* Scores the features of the last model run with the float head (into head.z). */
static uint32_t head_best(void)
{
    const mt_model_info_t *m = &mt_model_info;
    uint32_t best = 0;
    (void)mt_head_scores(&head, mt_model_features(), m->features_q.scale,
                         m->features_q.zero_point, 0, &best);
    return best;
}

static void put_hex32(uint32_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int k = 28; k >= 0; k -= 4) {
        mt_put_char(hex[(v >> k) & 15u]);
    }
}

static uint32_t float_bits(float x)
{
    union {
        float f;
        uint32_t u;
    } b = {x};
    return b.u;
}

/* Three decimals (half away from zero); "-" for -inf (a row not scored), NaN or a value
 * beyond +-2e6. */
static void put_float3(float x)
{
    if (!(x >= -2e6f && x <= 2e6f)) {
        mt_put_char('-');
        return;
    }
    const float t = x * 1000.0f;
    mt_put_milli((int32_t)(t >= 0.0f ? t + 0.5f : t - 0.5f));
}

/* `head` (three decimals) and `head-bits` (IEEE-754 float32, hex) of every row of the head
 * after head_best(). */
static void put_head_scores(void)
{
    const uint32_t rows = mt_head_num_rows(&head);
    mt_put("head");
    for (uint32_t c = 0; c < rows; c++) {
        mt_put_char(' ');
        put_float3(head.z[c]);
    }
    mt_put_eol();
    mt_put("head-bits");
    for (uint32_t c = 0; c < rows; c++) {
        mt_put_char(' ');
        put_hex32(float_bits(head.z[c]));
    }
    mt_put_eol();
}

static void put_head_error(int st)
{
    const char *msg;
    switch (st) {
    case MT_HEAD_ENOLABEL:
        msg = "no such label";
        break;
    case MT_HEAD_EEXIST:
        msg = "the label exists already";
        break;
    case MT_HEAD_EFULL:
        msg = "no free label row";
        break;
    case MT_HEAD_EFACTORY:
        msg = "factory labels cannot be removed or renamed";
        break;
    case MT_HEAD_ENAME:
        msg = "a label name is 1 to 23 printable ASCII characters without space";
        break;
    case MT_HEAD_ERANGE:
        msg = "the step would make the head overflow (lower lr or l2): not learned";
        break;
    default:
        msg = "bad argument";
        break;
    }
    put_error(MT_ERR_BAD_ARGUMENT, msg);
}

/* The next space-separated word of s[*pos..n): its start in *w, its length returned (0:
 * none). */
static uint32_t next_word(const uint8_t *s, uint32_t n, uint32_t *pos, const uint8_t **w)
{
    uint32_t i = *pos;
    while (i < n && s[i] == ' ') {
        i++;
    }
    const uint32_t start = i;
    while (i < n && s[i] != ' ') {
        i++;
    }
    *w = s + start;
    *pos = i;
    return i - start;
}

/* Copies the next space-separated token of s[*pos..n) into out (NUL-terminated, cut to
 * cap - 1 bytes). Returns 0 when there is none, 1 when it fits, -1 when it is longer. */
static int next_token(const uint8_t *s, uint32_t n, uint32_t *pos, char *out, uint32_t cap)
{
    const uint8_t *w;
    const uint32_t len = next_word(s, n, pos, &w);
    const uint32_t k = len < cap ? len : cap - 1u;
    for (uint32_t i = 0; i < k; i++) {
        out[i] = (char)w[i];
    }
    out[k] = 0;
    return len == 0u ? 0 : len < cap ? 1 : -1;
}

static int head_available(void)
{
    if (!head_ready) {
        put_error(MT_ERR_MODEL, "the head does not match the model");
    }
    return head_ready;
}

static void put_label_line(const char *key, uint32_t index)
{
    mt_put(key);
    mt_put_char(' ');
    mt_put_u32(index);
    mt_put_char(' ');
    put_str_escaped(mt_head_label(&head, index));
    mt_put_eol();
}

/* `config lr X momentum X l2 X`: three decimals, then the float32 bits of the three */
static void put_config(void)
{
    mt_put("config lr ");
    put_float3(head.lr);
    mt_put(" momentum ");
    put_float3(head.momentum);
    mt_put(" l2 ");
    put_float3(head.l2);
    mt_put_eol();
}

/* label add NAME | label remove NAME | label rename OLD NEW */
static void cmd_label(const uint8_t *arg, uint32_t n)
{
    if (!head_available()) {
        return;
    }
    char verb[8], a[MT_HEAD_NAME_BYTES + 1], b[MT_HEAD_NAME_BYTES + 1], extra[2];
    uint32_t pos = 0;
    const int tv = next_token(arg, n, &pos, verb, sizeof verb);
    const int ta = next_token(arg, n, &pos, a, sizeof a);
    const int is_rename = tv == 1 && verb[0] == 'r' && verb[1] == 'e' && verb[2] == 'n';
    const int tb = is_rename ? next_token(arg, n, &pos, b, sizeof b) : 1;
    if (tv != 1 || ta == 0 || tb == 0 || next_token(arg, n, &pos, extra, sizeof extra) != 0) {
        put_error(MT_ERR_BAD_ARGUMENT, "usage: label add NAME | label remove NAME | "
                                       "label rename OLD NEW");
        return;
    }
    const uint8_t *v = (const uint8_t *)verb;
    const uint32_t vn = str_len(verb);
    if (ta < 0 || tb < 0) {
        put_head_error(word_is(v, vn, "add") || tb < 0 ? MT_HEAD_ENAME : MT_HEAD_ENOLABEL);
        return;
    }
    uint32_t index = 0;
    int st;
    if (word_is(v, vn, "add")) {
        st = mt_head_add_label(&head, a, &index);
    } else if (word_is(v, vn, "remove")) {
        st = mt_head_find_label(&head, a, &index);
        if (st == MT_HEAD_OK) {
            st = mt_head_remove_label(&head, a);
        }
    } else if (word_is(v, vn, "rename")) {
        st = mt_head_rename_label(&head, a, b);
        if (st == MT_HEAD_OK) {
            st = mt_head_find_label(&head, b, &index);
        }
    } else {
        put_error(MT_ERR_BAD_ARGUMENT, "usage: label add NAME | label remove NAME | "
                                       "label rename OLD NEW");
        return;
    }
    if (st != MT_HEAD_OK) {
        put_head_error(st);
        return;
    }
    head_unsaved = 1;
    if (!word_is(v, vn, "remove")) {
        put_label_line("label", index);
    } else {
        buffer_drop_row(index);
    }
    mt_put_ok();
}

static int hex_digit(uint8_t c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int model_input_ok(void)
{
    const mt_model_info_t *m = &mt_model_info;
    if (m->seq_len > MT_MAX_SEQ_LEN ||
        m->tokenizer.max_words * m->tokenizer.features_per_word != m->seq_len) {
        put_error(MT_ERR_MODEL, "model input does not match the firmware build");
        return 0;
    }
    return 1;
}

/* `<crc32 hex> LABEL<TAB>text` (learn, eval): checks the CRC-32 (zlib's) of every byte after
 * the space that follows it, finds the label; on success returns 1 with the row and the
 * text, otherwise answers the error and returns 0. */
static int parse_labelled(const uint8_t *arg, uint32_t n, const char *verb, uint32_t *y,
                          const uint8_t **text, uint32_t *tn)
{
    uint32_t want = 0;
    int ok = n >= 9u && arg[8] == ' ';
    for (uint32_t i = 0; ok && i < 8u; i++) {
        const int d = hex_digit(arg[i]);
        ok = d >= 0;
        want = want << 4 | (uint32_t)(d & 15);
    }
    const int is_learn = verb[0] == 'l';
    const int is_keep = verb[0] == 'k';
    const char *usage = is_learn ? "usage: learn <crc32 hex> LABEL<TAB>text"
                        : is_keep ? "usage: keep <crc32 hex> LABEL<TAB>text"
                                  : "usage: eval <crc32 hex> LABEL<TAB>text | eval reset";
    if (!ok) {
        put_error(MT_ERR_BAD_ARGUMENT, usage);
        return 0;
    }
    const uint8_t *payload = arg + 9;
    const uint32_t pn = n - 9u;
    if (mt_crc32(0, payload, pn) != want) {
        put_error(MT_ERR_CRC, is_learn  ? "CRC mismatch: example not learned"
                              : is_keep ? "CRC mismatch: example not kept"
                                        : "CRC mismatch: example not evaluated");
        return 0;
    }
    uint32_t tab = 0;
    while (tab < pn && payload[tab] != '\t') {
        tab++;
    }
    char name[64];
    if (tab == pn || tab == 0u || tab >= sizeof name) {
        put_error(MT_ERR_BAD_ARGUMENT, tab == pn ? usage : "no such label");
        return 0;
    }
    for (uint32_t i = 0; i < tab; i++) {
        name[i] = (char)payload[i];
    }
    name[tab] = 0;
    const int st = mt_head_find_label(&head, name, y);
    if (st != MT_HEAD_OK) {
        put_head_error(st);
        return 0;
    }
    *text = payload + tab + 1u;
    *tn = pn - tab - 1u;
    return 1;
}

/* The common part of learn, keep and eval: the framed example checked, its label found and
 * the model run on its text. Returns 1 with the row in *y and the run in *r, otherwise
 * answers the error and returns 0. */
static int run_labelled(const uint8_t *arg, uint32_t n, const char *verb, uint32_t *y,
                        run_result_t *r)
{
    const uint8_t *text = 0;
    uint32_t tn = 0;
    if (!parse_labelled(arg, n, verb, y, &text, &tn) || !model_input_ok()) {
        return 0;
    }
    *r = run_model(text, tn);
    if (r->status != 0) {
        put_error(MT_ERR_MODEL, "model run failed");
        return 0;
    }
    return 1;
}

/* learn <crc32 hex> LABEL<TAB>text: one SGD step of the head on the example. */
static void cmd_learn(const uint8_t *arg, uint32_t n)
{
    if (!head_available()) {
        return;
    }
    uint32_t y = 0;
    run_result_t r;
    if (!run_labelled(arg, n, "learn", &y, &r)) {
        return;
    }
    /* what classify would have answered before this step */
    const uint32_t before = head_personalized() ? head_best() : int8_best();
    const char *before_name = head_personalized() ? mt_head_label(&head, before)
                                                  : mt_model_info.labels[before];
    const mt_model_info_t *m = &mt_model_info;
    float loss = 0.0f;
    const uint32_t t0 = board_counter_ticks();
    const int st2 = mt_head_step(&head, mt_model_features(), m->features_q.scale,
                                 m->features_q.zero_point, y, &loss);
    const uint32_t step_count = measure(t0);
    if (st2 != MT_HEAD_OK) {
        put_head_error(st2);
        return;
    }
    mt_put("loss ");
    put_float3(loss);
    mt_put_char(' ');
    put_hex32(float_bits(loss));
    mt_put_eol();
    mt_put("predicted ");
    mt_put_u32(before);
    mt_put_char(' ');
    put_str_escaped(before_name);
    mt_put_eol();
    buffer_add(mt_model_features(), y);
    head_unsaved = 1;
    put_label_line("learned", y);
    put_kv("updates", head.updates);
    mt_put("cost ");
    mt_put(board_counter_unit());
    mt_put(" tokenizer ");
    mt_put_u32(r.tokenizer_count);
    mt_put(" model ");
    mt_put_u32(r.model_count);
    mt_put(" step ");
    mt_put_u32(step_count);
    mt_put_eol();
    mt_put_ok();
}

/* A decimal of at most 7 significant digits and 9 decimals, without exponent ("0.05",
 * "2", ".9"; leading zeros do not count, so its length has no limit): *out =
 * digits / 10^decimals, one correctly rounded float division, so the value is the float
 * nearest to the decimal (numpy.float32("0.05") on the host). Returns 1 if s[0..n) is such
 * a number. */
static int parse_decimal(const uint8_t *s, uint32_t n, float *out)
{
    uint32_t m = 0, digits = 0, decimals = 0, seen = 0;
    int dot = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t ch = s[i];
        if (ch == '.' && !dot) {
            dot = 1;
        } else if (ch >= '0' && ch <= '9') {
            if (m || ch != '0') {
                digits++;
            }
            m = m * 10u + (uint32_t)(ch - '0');
            seen++;
            decimals += (uint32_t)dot;
            if (digits > 7u || decimals > 9u) {
                return 0;
            }
        } else {
            return 0;
        }
    }
    if (seen == 0u) {
        return 0;
    }
    float p = 1.0f;
    for (uint32_t k = 0; k < decimals; k++) {
        p *= 10.0f; /* exact up to 1e10 */
    }
    *out = (float)m / p;
    return 1;
}

/* head config [lr X] [momentum X] [l2 X]: the update rule's parameters */
static void cmd_head_config(const uint8_t *arg, uint32_t n)
{
    float v[3] = {head.lr, head.momentum, head.l2};
    static const char *const keys[3] = {"lr", "momentum", "l2"};
    uint32_t pos = 0;
    for (;;) {
        const uint8_t *key, *val;
        const uint32_t kn = next_word(arg, n, &pos, &key);
        if (kn == 0u) {
            break;
        }
        const uint32_t vn = next_word(arg, n, &pos, &val);
        int k = 0;
        while (k < 3 && !word_is(key, kn, keys[k])) {
            k++;
        }
        float x = 0.0f;
        if (vn == 0u || k == 3 || !parse_decimal(val, vn, &x)) {
            put_error(MT_ERR_BAD_ARGUMENT, "usage: head config [lr X] [momentum X] [l2 X] "
                                           "(decimals, e.g. 0.05)");
            return;
        }
        v[k] = x;
    }
#if !MT_HEAD_MOMENTUM
    if (v[1] != 0.0f) {
        put_error(MT_ERR_BAD_ARGUMENT, "built without momentum buffers (MT_HEAD_MOMENTUM 0)");
        return;
    }
#endif
    if (!(v[0] > 0.0f && v[0] <= 100.0f && v[1] < 1.0f && v[2] <= 100.0f)) {
        put_error(MT_ERR_BAD_ARGUMENT, "lr in (0, 100], momentum in [0, 1), l2 in [0, 100]");
        return;
    }
    mt_head_config(&head, v[0], v[1], v[2]);
    put_config();
    mt_put_ok();
}

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

static uint32_t parse_u32(const uint8_t *s, uint32_t n, uint32_t *pos, int *ok)
{
    uint32_t v = 0, i = *pos, start;
    while (i < n && s[i] == ' ') {
        i++;
    }
    start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 9u) {
        v = v * 10u + (uint32_t)(s[i] - '0');
        i++;
    }
    if (i == start || (i < n && s[i] != ' ')) {
        *ok = 0;
    }
    *pos = i;
    return v;
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

/* --- buffered examples: `head train` (docs/protocol.md) -------------------------------- */

/* Every learned example's int8 features and row, oldest first in a ring of MT_TRAIN_BUFFER
 * (a full buffer drops its oldest). The features of one model are exact int8 values, so
 * training on them repeats the steps `learn` took, without the text or the model. */
#ifndef MT_TRAIN_BUFFER
#define MT_TRAIN_BUFFER 64u
#endif
#define MT_TRAIN_MAX_EPOCHS 100u
#if MT_TRAIN_BUFFER
#if MT_TRAIN_BUFFER > 65535
#error "MT_TRAIN_BUFFER: at most 65535 examples"
#endif
static int8_t buf_q[MT_TRAIN_BUFFER][MT_HEAD_MAX_FEATURES];
static uint16_t buf_y[MT_TRAIN_BUFFER];
/* `head train` steps the live head; when a step part way is refused it brings the head back
 * from this copy, and its epoch lines wait for the end: a refused train changes nothing and
 * sends one error line (docs/protocol.md). */
static mt_head_snapshot_t train_before;
static float epoch_loss[MT_TRAIN_MAX_EPOCHS];
static uint16_t epoch_correct[MT_TRAIN_MAX_EPOCHS];
#endif
static uint32_t buf_start, buf_n;

static uint32_t buffer_count(void)
{
    return buf_n;
}

static void buffer_clear(void)
{
    buf_start = 0;
    buf_n = 0;
}

#if MT_TRAIN_BUFFER
static uint32_t buf_at(uint32_t i)
{
    return (buf_start + i) % MT_TRAIN_BUFFER;
}
#endif

static void buffer_add(const int8_t *q, uint32_t y)
{
#if MT_TRAIN_BUFFER
    uint32_t slot;
    if (buf_n == MT_TRAIN_BUFFER) {
        slot = buf_start;
        buf_start = buf_at(1);
    } else {
        slot = buf_at(buf_n++);
    }
    for (uint32_t k = 0; k < head.h; k++) {
        buf_q[slot][k] = q[k];
    }
    buf_y[slot] = (uint16_t)y;
#else
    (void)q;
    (void)y;
#endif
}

/* A removed label's examples leave the buffer (the order of the others stays). */
static void buffer_drop_row(uint32_t row)
{
#if MT_TRAIN_BUFFER
    uint32_t kept = 0;
    for (uint32_t i = 0; i < buf_n; i++) {
        const uint32_t from = buf_at(i);
        if (buf_y[from] == row) {
            continue;
        }
        const uint32_t to = buf_at(kept++);
        if (to != from) {
            for (uint32_t k = 0; k < head.h; k++) {
                buf_q[to][k] = buf_q[from][k];
            }
            buf_y[to] = buf_y[from];
        }
    }
    buf_n = kept;
#else
    (void)row;
#endif
}

/* keep <crc32 hex> LABEL<TAB>text (framed as learn): the example's features go to the
 * buffer, without a step; `head imprint` and `head train` use them. */
static void cmd_keep(const uint8_t *arg, uint32_t n)
{
    if (!head_available()) {
        return;
    }
#if MT_TRAIN_BUFFER
    uint32_t y = 0;
    run_result_t r;
    if (!run_labelled(arg, n, "keep", &y, &r)) {
        return;
    }
    buffer_add(mt_model_features(), y);
    put_label_line("kept", y);
    put_used_of("buffer", buffer_count(), MT_TRAIN_BUFFER);
    mt_put_ok();
#else
    (void)arg;
    (void)n;
    put_error(MT_ERR_BAD_ARGUMENT, "built without a training buffer (MT_TRAIN_BUFFER 0)");
#endif
}

#if MT_TRAIN_BUFFER
/* The sum of the unit directions of row c's buffered examples (mt_head_imprint_add) into
 * acc; returns how many examples the row has (0 for a row that is not an added label). */
static uint32_t imprint_sum(uint32_t c, float *acc)
{
    const mt_model_info_t *m = &mt_model_info;
    if (!(head.flags[c] & MT_HEAD_ROW_ACTIVE)) {
        return 0;
    }
    uint32_t count = 0;
    for (uint32_t k = 0; k < head.h; k++) {
        acc[k] = 0.0f;
    }
    for (uint32_t i = 0; i < buf_n; i++) {
        const uint32_t j = buf_at(i);
        if (buf_y[j] == c) {
            (void)mt_head_imprint_add(&head, acc, buf_q[j], m->features_q.scale,
                                      m->features_q.zero_point);
            count++;
        }
    }
    return count;
}
#endif

/* head imprint: every added label with buffered examples gets the imprint of their mean
 * direction (mt_head_imprint_mean); one `imprinted` line per label. All labels are checked
 * before the first is imprinted, so a refusal changes nothing. */
static void cmd_head_imprint(void)
{
#if MT_TRAIN_BUFFER
    static float acc[MT_HEAD_MAX_FEATURES];
    for (uint32_t c = head.c0; c < head.c_max; c++) {
        if (imprint_sum(c, acc) && mt_head_imprint_check(&head, c, acc) == MT_HEAD_ERANGE) {
            put_head_error(MT_HEAD_ERANGE);
            return;
        }
    }
    uint32_t done = 0;
    for (uint32_t c = head.c0; c < head.c_max; c++) {
        const uint32_t count = imprint_sum(c, acc);
        if (count == 0u || mt_head_imprint_mean(&head, c, acc) != MT_HEAD_OK) {
            continue; /* no examples, or every one at the feature mean: nothing to imprint */
        }
        head_unsaved = 1;
        done++;
        mt_put("imprinted ");
        mt_put_u32(c);
        mt_put_char(' ');
        put_str_escaped(mt_head_label(&head, c));
        mt_put(" examples ");
        mt_put_u32(count);
        mt_put_eol();
    }
    if (done == 0u) {
        put_error(MT_ERR_BAD_ARGUMENT, "no buffered examples of added labels (keep some first)");
        return;
    }
    put_kv("updates", head.updates);
    mt_put_ok();
#else
    put_error(MT_ERR_BAD_ARGUMENT, "built without a training buffer (MT_TRAIN_BUFFER 0)");
#endif
}

/* head train EPOCHS: epochs of SGD steps over the buffered examples, oldest first. */
static void cmd_head_train(const uint8_t *arg, uint32_t n)
{
    uint32_t pos = 0;
    int ok = 1;
    const uint32_t epochs = parse_u32(arg, n, &pos, &ok);
    if (!ok || pos != n || epochs == 0u || epochs > MT_TRAIN_MAX_EPOCHS) {
        put_error(MT_ERR_BAD_ARGUMENT, "usage: head train EPOCHS (1 to 100)");
        return;
    }
    if (buf_n == 0u) {
        put_error(MT_ERR_BAD_ARGUMENT, "no buffered examples (learn some first)");
        return;
    }
#if MT_TRAIN_BUFFER
    const mt_model_info_t *m = &mt_model_info;
    mt_head_snapshot(&head, &train_before);
    const uint32_t t0 = board_counter_ticks();
    for (uint32_t e = 0; e < epochs; e++) {
        float sum = 0.0f;
        uint32_t correct = 0;
        for (uint32_t i = 0; i < buf_n; i++) {
            board_watchdog_kick(); /* 100 epochs of 64 steps outlast a 2 s watchdog on an M0 */
            const uint32_t j = buf_at(i);
            uint32_t best = 0;
            float loss = 0.0f;
            (void)mt_head_scores(&head, buf_q[j], m->features_q.scale, m->features_q.zero_point,
                                 0, &best);
            correct += best == buf_y[j] ? 1u : 0u;
            const int st = mt_head_step(&head, buf_q[j], m->features_q.scale,
                                        m->features_q.zero_point, buf_y[j], &loss);
            if (st != MT_HEAD_OK) {
                mt_head_restore(&head, &train_before);
                if (st == MT_HEAD_ERANGE) {
                    put_head_error(st);
                } else {
                    put_error(MT_ERR_BAD_ARGUMENT, "a buffered example has no label row");
                }
                return;
            }
            sum += loss;
        }
        epoch_loss[e] = sum / (float)buf_n;
        epoch_correct[e] = (uint16_t)correct;
    }
    const uint32_t count = measure(t0);
    head_unsaved = 1;
    for (uint32_t e = 0; e < epochs; e++) {
        mt_put("epoch ");
        mt_put_u32(e + 1u);
        mt_put(" loss ");
        put_float3(epoch_loss[e]);
        mt_put_char(' ');
        put_hex32(float_bits(epoch_loss[e]));
        mt_put(" correct ");
        mt_put_u32(epoch_correct[e]);
        mt_put(" of ");
        mt_put_u32(buf_n);
        mt_put_eol();
    }
    put_kv("updates", head.updates);
    mt_put("cost ");
    mt_put(board_counter_unit());
    mt_put(" train ");
    mt_put_u32(count);
    mt_put_eol();
    mt_put_ok();
#endif
}

/* --- eval: classify a labelled example without learning --------------------------------- */

static uint32_t eval_correct, eval_total;

/* eval <crc32 hex> LABEL<TAB>text (framed as learn) | eval reset */
static void cmd_eval(const uint8_t *arg, uint32_t n)
{
    if (!head_available()) {
        return;
    }
    if (word_is(arg, n, "reset")) {
        eval_correct = eval_total = 0;
        mt_put_ok();
        return;
    }
    uint32_t y = 0;
    run_result_t r;
    if (!run_labelled(arg, n, "eval", &y, &r)) {
        return;
    }
    (void)r;
    const mt_model_info_t *m = &mt_model_info;
    float loss = 0.0f;
    uint32_t fbest = 0;
    (void)mt_head_loss(&head, mt_model_features(), m->features_q.scale, m->features_q.zero_point,
                       y, &loss, &fbest);
    /* the answer classify gives: the int8 model until the first update */
    const uint32_t best = head_personalized() ? fbest : int8_best();
    const char *name = head_personalized() ? mt_head_label(&head, best) : m->labels[best];
    count_one(&eval_total);
    if (best == y) {
        count_one(&eval_correct);
    }
    mt_put("predicted ");
    mt_put_u32(best);
    mt_put_char(' ');
    put_str_escaped(name);
    mt_put_eol();
    put_kv("correct", best == y ? 1u : 0u);
    mt_put("loss ");
    put_float3(loss);
    mt_put_char(' ');
    put_hex32(float_bits(loss));
    mt_put_eol();
    put_used_of("tally", eval_correct, eval_total);
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

static void storage_boot(void)
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
static void put_storage_state(void)
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

/* head state | head reset | head config ... */
static void cmd_head(const uint8_t *arg, uint32_t n)
{
    if (!head_available()) {
        return;
    }
    if (word_is(arg, n, "reset")) {
        mt_head_reset(&head);
        buffer_clear();
        head_unsaved = 1;
        mt_put_ok();
        return;
    }
    if (word_is(arg, n, "save")) {
        cmd_head_save();
        return;
    }
    if (word_is(arg, n, "imprint")) {
        cmd_head_imprint();
        return;
    }
    if (n >= 5u && word_is(arg, 5u, "train") && (n == 5u || arg[5] == ' ')) {
        cmd_head_train(arg + 5, n - 5u);
        return;
    }
    if (word_is(arg, n, "export")) {
        put_kv("blob", mt_head_blob_size(&head));
        (void)mt_head_save(&head, export_chunk, 0);
        mt_put_ok();
        return;
    }
    if (n >= 7u && word_is(arg, 7u, "import ")) {
        cmd_head_import(arg + 7, n - 7u);
        return;
    }
    if (n >= 6u && word_is(arg, 6u, "config") && (n == 6u || arg[6] == ' ')) {
        cmd_head_config(arg + 6, n - 6u);
        return;
    }
    if (!word_is(arg, n, "state")) {
        put_error(MT_ERR_BAD_ARGUMENT, "usage: head state | head reset | head config ... | "
                                       "head export | head import ... | head save | "
                                       "head train EPOCHS | head imprint");
        return;
    }
    const uint32_t rows = mt_head_num_rows(&head);
    uint32_t added = 0;
    for (uint32_t c = head.c0; c < rows; c++) {
        added += (head.flags[c] & MT_HEAD_ROW_ACTIVE) ? 1u : 0u;
    }
    put_kv("updates", head.updates);
    put_kv("personalized", (uint32_t)head_personalized());
    put_kv("rows", rows);
    put_kv("feature-dim", head.h);
    put_used_of("new-labels", added, rows - head.c0);
    put_config();
    for (uint32_t c = 0; c < rows; c++) {
        const char *name = mt_head_label(&head, c);
        if (name) {
            mt_put("label ");
            mt_put_u32(c);
            mt_put_char(' ');
            put_str_escaped(name);
            mt_put(c < head.c0 ? " factory"
                   : (head.flags[c] & MT_HEAD_ROW_FRESH) ? " fresh" : " added");
            mt_put_eol();
        }
    }
    put_used_of("buffer", buffer_count(), MT_TRAIN_BUFFER);
    put_storage_state();
    mt_put_ok();
}
#endif

static void put_result(const run_result_t *r)
{
    const mt_model_info_t *m = &mt_model_info;
    const int8_t *logits = mt_model_logits();
    uint32_t best = int8_best();
    uint32_t head_count = 0; /* the float head's scoring, when it decides */
    int head_decides = 0;
#if HAVE_HEAD
    if (head_personalized()) {
        /* the personalized float head decides; the `scores` and `logits` lines below stay
         * the int8 model's */
        const uint32_t t0 = board_counter_ticks();
        best = head_best();
        head_count = measure(t0);
        head_decides = 1;
        mt_put("label ");
        mt_put_u32(best);
        mt_put_char(' ');
        put_str_escaped(mt_head_label(&head, best));
        mt_put_eol();
        put_head_scores();
    } else
#endif
    {
        mt_put("label ");
        mt_put_u32(best);
        mt_put_char(' ');
        put_str_escaped(m->labels[best]);
        mt_put_eol();
    }
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
    if (head_decides) {
        mt_put(" head ");
        mt_put_u32(head_count);
    }
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
    count_one(&stats.classifications);
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
