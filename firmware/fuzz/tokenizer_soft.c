/* The tokenizer's division-free path (what a Cortex-M0 runs) under other names, compiled next
 * to the ordinary one so that the tokenizer fuzz target can compare them on the host. */
#define MT_TOKENIZER_SOFT_DIVIDE 1
#define mt_tokenize mt_tokenize_soft
#define mt_next_word mt_next_word_soft
#include "../tokenizer.c"
