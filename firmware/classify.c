/* `classify` and `explain`: the tokenizer and the model run on the text, timed; the answer
 * (the int8 model's label, or the personalized head's once it has learned), the int8 scores
 * and dequantized logits, the words, the cost, and for `explain` one attention line per word
 * (docs/protocol.md). */
#include "app_internal.h"
#include "board.h"
#include "model_api.h"
#include "protocol.h"
#include "tokenizer.h"
#include "words.h"

static int32_t ids[MT_MAX_SEQ_LEN];

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

HEAD_SHARED run_result_t run_model(const uint8_t *text, uint32_t n)
{
    run_result_t r = {0, 0, 0, 0};
    uint32_t t0 = board_counter_ticks();
    r.words = mt_tokenize(&mt_model_info.tokenizer, text, n, ids);
    r.tokenizer_count = measure(t0);
#if MT_PROFILE
    profile_restart();
#endif
    t0 = board_counter_ticks();
    r.status = mt_model_run(ids);
    r.model_count = measure(t0);
    return r;
}

HEAD_SHARED uint32_t int8_best(void)
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
    put_ops();
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

void cmd_classify(const uint8_t *text, uint32_t n, int explain)
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
