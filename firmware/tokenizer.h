/* mcutext tokenizer: vocabulary-free feature hashing (spec: docs/tokenizer.md).
 * Must produce exactly the ids of toolchain/mcutext/tokenizer.py for every byte string. */
#ifndef MT_TOKENIZER_H
#define MT_TOKENIZER_H

#include <stdint.h>

#define MT_TOKENIZER_SPEC_VERSION 1u
#define MT_TOKENIZER_MAX_WORD_BYTES 64u /* upper bound of spec.max_word_bytes */

typedef struct {
    uint32_t buckets;           /* ids are in [0, buckets); 0 is padding */
    uint32_t max_words;         /* words kept; the rest of the text is ignored */
    uint32_t features_per_word; /* 1, or 4 in typo-tolerant mode */
    uint32_t seed;              /* xor-ed into the FNV-1a offset basis */
    uint32_t max_word_bytes;    /* longer words are truncated to this many bytes */
} mt_tokenizer_spec_t;

/* Tokenize `len` bytes of `text` into ids[max_words * features_per_word] (zero padded).
 * Returns the number of words kept (<= max_words). Never reads past text[len-1]. */
uint32_t mt_tokenize(const mt_tokenizer_spec_t *spec, const uint8_t *text, uint32_t len,
                     int32_t *ids);

#endif
