/* mcutext PRADO projection: feature ids -> ternary projection vectors, computed on the fly
 * (no table). Must give exactly the values of toolchain/mcutext/model/projection.py (the spec;
 * docs/baselines.md). No heap, no floating point: the quantization of the model input is a
 * lookup table the code generator computes on the host. */
#ifndef MT_PROJECTION_H
#define MT_PROJECTION_H

#include <stdint.h>

#include "mt_common.h"

#define MT_PROJECTION_VERSION 1u
#define MT_PROJECTION_MAX_FEATURE_SIZE 4096u /* upper bound of spec.feature_size */
#define MT_PROJECTION_MAX_FEATURES_PER_WORD 8u

typedef struct {
    uint32_t feature_size;      /* P: ternary values per feature id, [1, 4096] */
    uint32_t features_per_word; /* K: ids per word slot (the tokenizer's), [1, 8] */
    uint32_t seed;              /* any 32-bit value */
} mt_projection_spec_t;

/* Ternary projection of one feature id: out[P] in {-1, 0, +1}; id 0 (padding) gives zeros.
 * MT_ERR_ARG for a bad spec, MT_ERR_RANGE for a negative id (out is then all zeros). */
mt_status_t mt_projection_feature(const mt_projection_spec_t *spec, int32_t id, int8_t *out);

/* One word slot: the sum of the projections of its K ids (ids[0..K-1]); out[P] in [-K, K]. */
mt_status_t mt_projection_word(const mt_projection_spec_t *spec, const int32_t *ids,
                               int8_t *out);

/* The int8 model input for a whole tokenized text: ids[max_words * K] (mt_tokenize's output)
 * -> out[max_words * (P + 1)], word slot w at out[w * (P + 1)]: lut[S_j + K] for each
 * projection sum S_j, then the presence value, lut[2K + 1] when ids[w * K] > 0 (a word) and
 * lut[K] (quantized 0) for padding. lut has 2K + 2 entries (projection.input_lut()).
 * Scratch: none beyond the output. */
mt_status_t mt_projection_input(const mt_projection_spec_t *spec, const int32_t *ids,
                                uint32_t max_words, const int8_t *lut, int8_t *out);

#endif
