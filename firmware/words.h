/* Word splitting of the tokenizer, shared by mt_tokenize and the `explain` command so that the
 * words a person sees are exactly the words the model saw (spec: docs/tokenizer.md). */
#ifndef MT_WORDS_H
#define MT_WORDS_H

#include <stdint.h>

typedef struct {
    uint32_t start; /* offset of the word's first byte in the text */
    uint32_t len;   /* bytes kept: the run length truncated to max_word_bytes */
} mt_word_t;

/* Finds the next word at or after text[*pos]. Returns 1 and fills `word`, advancing *pos past
 * the whole run (including the truncated tail), or 0 when no word is left. */
int mt_next_word(const uint8_t *text, uint32_t len, uint32_t max_word_bytes, uint32_t *pos,
                 mt_word_t *word);

/* ASCII A-Z lowered; every other byte unchanged. */
static inline uint8_t mt_lower(uint8_t b)
{
    return (b >= 0x41u && b <= 0x5Au) ? (uint8_t)(b + 32u) : b;
}

#endif
