/* The library's API (mcutext.h) over the generated model (model_api.h), the tokenizer and,
 * with MCUTEXT_PERSONALIZE, the personalization head: what mcutext's own firmware does for
 * `classify` and `learn`, without its protocol or board layer. */
#include "mcutext.h"

#include "model_api.h"
#include "tokenizer.h"

#if MCUTEXT_PERSONALIZE
#include "personalize.h"
extern const mt_head_factory_t mt_model_head; /* head.c, generated */
static mt_head_t head;
#endif

static int32_t ids[MCUTEXT_SEQ_LEN];
static int ready;
static int words_seen = -1; /* words of the last classified text, -1 before any */

int mcutext_init(void)
{
    const mt_model_info_t *m = &mt_model_info;
    ready = 0;
    words_seen = -1;
    if (m->seq_len != MCUTEXT_SEQ_LEN || m->num_classes != MCUTEXT_NUM_CLASSES ||
        m->tokenizer.max_words != MCUTEXT_MAX_WORDS) {
        return MCUTEXT_EINIT; /* mcutext.h from another export than model.c */
    }
#if MCUTEXT_PERSONALIZE
    if (mt_head_init(&head, &mt_model_head) != MT_HEAD_OK) {
        return MCUTEXT_EINIT;
    }
#endif
    ready = 1;
    return 0;
}

/* Tokenize and run the int8 model; the outputs stay in the model's arena. */
static int run(const char *text, size_t len, uint32_t *words)
{
    if (!ready) {
        return MCUTEXT_EINIT;
    }
    if (text == 0 && len != 0) {
        return MCUTEXT_EINVAL;
    }
    if (len > 0xFFFFFFFFu) {
        len = 0xFFFFFFFFu; /* the tokenizer stops after MCUTEXT_MAX_WORDS words anyway */
    }
    *words = mt_tokenize(&mt_model_info.tokenizer, (const uint8_t *)text, (uint32_t)len, ids);
    if (mt_model_run(ids) != 0) {
        words_seen = -1;
        return MCUTEXT_EMODEL;
    }
    words_seen = (int)*words;
    return 0;
}

static int int8_best(const int8_t *logits)
{
    int best = 0;
    for (int i = 1; i < MCUTEXT_NUM_CLASSES; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    return best;
}

int mcutext_classify(const char *text, size_t len, mcutext_result_t *result)
{
    uint32_t words;
    if (result == 0) {
        return MCUTEXT_EINVAL;
    }
    const int st = run(text, len, &words);
    if (st < 0) {
        return st;
    }
    const int8_t *logits = mt_model_logits();
    for (int i = 0; i < MCUTEXT_NUM_CLASSES; i++) {
        result->scores[i] = logits[i];
    }
    result->words = (uint16_t)words;
    result->label = int8_best(logits);
#if MCUTEXT_PERSONALIZE
    if (head.updates > 0u) {
        const mt_model_info_t *m = &mt_model_info;
        uint32_t best = 0;
        if (mt_head_scores(&head, mt_model_features(), m->features_q.scale,
                           m->features_q.zero_point, 0, &best) == MT_HEAD_OK) {
            result->label = (int)best;
        }
    }
#endif
    return result->label;
}

const char *mcutext_label(int index)
{
#if MCUTEXT_PERSONALIZE
    if (ready) {
        return index < 0 ? 0 : mt_head_label(&head, (uint32_t)index);
    }
#endif
    return (index >= 0 && index < MCUTEXT_NUM_CLASSES) ? mt_model_info.labels[index] : 0;
}

int mcutext_num_labels(void)
{
#if MCUTEXT_PERSONALIZE
    if (ready) {
        return (int)mt_head_num_rows(&head);
    }
#endif
    return MCUTEXT_NUM_CLASSES;
}

float mcutext_score(const mcutext_result_t *result, int index)
{
    if (result == 0 || index < 0 || index >= MCUTEXT_NUM_CLASSES) {
        return 0.0f;
    }
    const mt_quant_t q = mt_model_info.logits_q;
    return (float)((int32_t)result->scores[index] - q.zero_point) * q.scale;
}

int mcutext_attention(float *weights, int max)
{
    if (words_seen < 0) {
        return MCUTEXT_EINIT;
    }
    if (weights == 0 && max > 0) {
        return MCUTEXT_EINVAL;
    }
    const int8_t *a = mt_model_attention();
    const mt_quant_t q = mt_model_info.attention_q;
    int n = words_seen < max ? words_seen : max;
    for (int i = 0; i < n; i++) {
        weights[i] = (float)((int32_t)a[i] - q.zero_point) * q.scale;
    }
    return n < 0 ? 0 : n;
}

#if MCUTEXT_PERSONALIZE
static int head_status(int st)
{
    switch (st) {
    case MT_HEAD_OK:
        return 0;
    case MT_HEAD_EFULL:
        return MCUTEXT_EFULL;
    case MT_HEAD_EEXIST:
        return MCUTEXT_EEXIST;
    case MT_HEAD_ERANGE:
        return MCUTEXT_ERANGE;
    default:
        return MCUTEXT_EINVAL;
    }
}

int mcutext_learn(const char *text, size_t len, int label, float *loss)
{
    uint32_t words;
    if (label < 0) {
        return MCUTEXT_EINVAL;
    }
    const int st = run(text, len, &words);
    if (st < 0) {
        return st;
    }
    const mt_model_info_t *m = &mt_model_info;
    return head_status(mt_head_step(&head, mt_model_features(), m->features_q.scale,
                                    m->features_q.zero_point, (uint32_t)label, loss));
}

int mcutext_add_label(const char *name)
{
    uint32_t index = 0;
    if (!ready) {
        return MCUTEXT_EINIT;
    }
    const int st = head_status(mt_head_add_label(&head, name, &index));
    return st < 0 ? st : (int)index;
}

void mcutext_forget(void)
{
    if (ready) {
        mt_head_reset(&head);
    }
}

uint32_t mcutext_updates(void)
{
    return ready ? head.updates : 0u;
}

uint32_t mcutext_state_size(void)
{
    return ready ? mt_head_blob_size(&head) : 0u;
}

int mcutext_save(mcutext_write_fn write, void *ctx)
{
    if (!ready) {
        return MCUTEXT_EINIT;
    }
    return mt_head_save(&head, write, ctx) == MT_HEAD_OK ? 0 : MCUTEXT_EINVAL;
}

int mcutext_load(mcutext_read_fn read, void *ctx, uint32_t len)
{
    if (!ready) {
        return MCUTEXT_EINIT;
    }
    return mt_head_load(&head, read, ctx, len) == MT_HEAD_OK ? 0 : MCUTEXT_EINVAL;
}
#endif
