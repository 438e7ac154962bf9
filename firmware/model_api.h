/* The interface every generated model implements (build/<bundle>/<board>/gen/model.c,
 * written by `mcutext build` from model_int8.tflite). The firmware core uses only this. */
#ifndef MT_MODEL_API_H
#define MT_MODEL_API_H

#include <stdint.h>

#include "tokenizer.h"

typedef struct {
    float scale;
    int32_t zero_point;
} mt_quant_t;

typedef struct {
    const char *name;            /* bundle name, e.g. "sst2" */
    uint32_t num_classes;
    const char *const *labels;   /* num_classes strings */
    mt_tokenizer_spec_t tokenizer;
    uint32_t seq_len;            /* tokenizer.max_words * tokenizer.features_per_word */
    uint32_t feature_dim;        /* penultimate features (input of the head) */
    mt_quant_t logits_q, attention_q, features_q;
    uint32_t arena_bytes;        /* static activation arena, planned at codegen time */
    uint32_t weights_bytes;      /* const weight and bias bytes */
    uint32_t macs;               /* multiply-accumulates per inference */
} mt_model_info_t;

extern const mt_model_info_t mt_model_info;

/* Run the int8 model on ids[seq_len]. Returns 0 on success, non-zero on a bad id
 * (outside [0, buckets)). Outputs stay valid until the next call. */
int mt_model_run(const int32_t *ids);
const int8_t *mt_model_logits(void);    /* [num_classes] */
const int8_t *mt_model_attention(void); /* [tokenizer.max_words] */
const int8_t *mt_model_features(void);  /* [feature_dim] */

#endif
