/* Fuzz target: the tokenizer (firmware/tokenizer.c, spec docs/tokenizer.md) on any bytes and
 * any spec. The input is 12 bytes of spec (buckets, max_words, features_per_word, seed,
 * max_word_bytes) followed by the text. The division-free path of cores without a divide
 * instruction (tokenizer_soft.c) must give the same ids as the `%` path; ids lie in
 * [1, buckets) for the words kept and are 0 after them; the output array is allocated at
 * exactly max_words * features_per_word entries, so a write past it is an ASan report.
 * Byte 10's low bit selects the robust encoding (spec version 2) on mt_fuzz_table, the table
 * toolchain/mcutext/reliability/fuzz.py generates (seed 0, its codes as buckets, one code per word). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_board.h"
#include "tokenizer.h"

uint32_t mt_tokenize_soft(const mt_tokenizer_spec_t *spec, const uint8_t *text, uint32_t len,
                          int32_t *ids);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern const mt_robust_table_t mt_fuzz_table;

static uint32_t get(const uint8_t *p, uint32_t n)
{
    uint32_t v = 0;
    for (uint32_t i = 0; i < n; i++) {
        v |= (uint32_t)p[i] << (8u * i);
    }
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 12u) {
        return 0;
    }
    mt_tokenizer_spec_t spec;
    /* Buckets up to 2^24, as recipes use (the model's embedding rows); 0 and 1 included. */
    spec.buckets = get(data, 3);
    spec.max_words = 1u + data[3] % 64u;
    spec.features_per_word = 1u + data[4] % 4u; /* 1 or 4 in the recipes; 2, 3 legal */
    spec.seed = get(data + 5, 4);
    spec.max_word_bytes = data[9] % 70u; /* 0 and > 64 are clamped to 64 by the tokenizer */
    spec.robust = 0;
    if (data[10] & 1u) {
        spec.robust = &mt_fuzz_table;
        spec.buckets = mt_fuzz_table.codes;
        spec.features_per_word = 1u;
        spec.seed = 0u; /* the table's keys are hashed with seed 0 */
    }
    const uint8_t *text = data + 12;
    const uint32_t len = (uint32_t)(size - 12u);
    /* The text in its own block, so that a read past its end is a report too. */
    uint8_t *copy = malloc(len ? len : 1u);
    memcpy(copy, text, len);
    const uint32_t total = spec.max_words * spec.features_per_word;
    int32_t *ids = malloc(total * sizeof *ids);
    int32_t *soft = malloc(total * sizeof *soft);
    memset(soft, 0x5A, total * sizeof *soft);
    const uint32_t words = mt_tokenize(&spec, copy, len, ids);
    const uint32_t words_soft = mt_tokenize_soft(&spec, copy, len, soft);
    MT_FUZZ_CHECK(words == words_soft);
    MT_FUZZ_CHECK(words <= spec.max_words);
    MT_FUZZ_CHECK(memcmp(ids, soft, total * sizeof *ids) == 0);
    for (uint32_t i = 0; i < total; i++) {
        if (spec.buckets < 2u || i >= words * spec.features_per_word) {
            MT_FUZZ_CHECK(ids[i] == 0);
        } else {
            MT_FUZZ_CHECK(ids[i] >= 1 && (uint32_t)ids[i] < spec.buckets);
        }
    }
    /* The same text again gives the same ids (no state kept between calls). */
    MT_FUZZ_CHECK(mt_tokenize(&spec, copy, len, soft) == words);
    MT_FUZZ_CHECK(memcmp(ids, soft, total * sizeof *ids) == 0);
    free(ids);
    free(soft);
    free(copy);
    return 0;
}
