/* mcutext tokenizer: vocabulary-free feature hashing (spec version 1) or the robust word
 * encoding (spec version 2, a table in flash); spec: docs/tokenizer.md. Must produce exactly
 * the ids of toolchain/mcutext/text/tokenizer.py for every byte string. */
#ifndef MT_TOKENIZER_H
#define MT_TOKENIZER_H

#include <stdint.h>

#define MT_TOKENIZER_SPEC_VERSION 1u        /* the hashed encoding */
#define MT_TOKENIZER_ROBUST_SPEC_VERSION 2u /* the robust encoding */
#define MT_TOKENIZER_MAX_WORD_BYTES 64u     /* upper bound of spec.max_word_bytes */

/* The robust encoding's codes and table fields with a meaning of their own. */
#define MT_CODE_FALLBACK 1u       /* a word the table cannot place */
#define MT_CODE_NONE 0xFFFFu      /* table field: nothing there */
#define MT_CODE_AMBIGUOUS 0xFFFEu /* near field: one deletion away from several codes */

/* The robust encoding's table (mcutext.text.tokenizer.RobustTable, bundle file encoding.bin), const
 * in flash: per key (a 32-bit hash of a word or of a word with one byte deleted, tag 'K'),
 * the code of the known word with that key (`exact`) and of the known words one deletion away
 * from it (`near`), each MT_CODE_NONE if none. */
typedef struct {
    uint32_t codes;        /* codes lie in [1, codes); the spec's buckets must equal it */
    uint32_t count;        /* keys */
    const uint32_t *keys;  /* [count], strictly ascending */
    const uint16_t *exact; /* [count] */
    const uint16_t *near;  /* [count] */
} mt_robust_table_t;

typedef struct {
    uint32_t buckets;           /* ids are in [0, buckets); 0 is padding */
    uint32_t max_words;         /* words kept; the rest of the text is ignored */
    uint32_t features_per_word; /* 1, or 4 in typo-tolerant mode */
    uint32_t seed;              /* xor-ed into the FNV-1a offset basis */
    uint32_t max_word_bytes;    /* longer words are truncated to this many bytes */
    /* NULL: the hashed encoding. Otherwise the robust encoding: one code per word from this
     * table (features_per_word must be 1 and buckets the table's codes; a spec that breaks
     * either gives no words, like the other invalid specs). */
    const mt_robust_table_t *robust;
} mt_tokenizer_spec_t;

/* The spec version a spec implements (1 hashed, 2 robust). */
static inline uint32_t mt_tokenizer_version(const mt_tokenizer_spec_t *spec)
{
    return spec->robust ? MT_TOKENIZER_ROBUST_SPEC_VERSION : MT_TOKENIZER_SPEC_VERSION;
}

/* Tokenize `len` bytes of `text` into ids[max_words * features_per_word] (zero padded).
 * Returns the number of words kept (<= max_words). Never reads past text[len-1]. */
uint32_t mt_tokenize(const mt_tokenizer_spec_t *spec, const uint8_t *text, uint32_t len,
                     int32_t *ids);

#endif
