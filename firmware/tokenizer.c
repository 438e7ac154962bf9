/* The bytes-to-ids function of toolchain/mcutext/text/tokenizer.py: vocabulary-free feature hashing
 * (spec version 1) and the robust word encoding (version 2). Spec: docs/tokenizer.md. Works on
 * bytes: invalid UTF-8, NUL and any length are just input. */
#include "tokenizer.h"

#include "words.h"

#define FNV_OFFSET 0x811C9DC5u
#define FNV_PRIME 0x01000193u
#define TAG_WORD 0x57u   /* 'W' */
#define TAG_SORTED 0x53u /* 'S' */
#define TAG_PREFIX 0x50u /* 'P' */
#define TAG_SUFFIX 0x58u /* 'X' */
#define TAG_KEY 0x4Bu    /* 'K': the robust table's keys */
#define AFFIX_BYTES 3u

enum { CLASS_SEPARATOR = 0, CLASS_WORD = 1, CLASS_PUNCT = 2 };

/* Separators: <= 0x20 and 0x7F. Word bytes: a-z A-Z 0-9, the apostrophe, >= 0x80. The rest
 * (ASCII punctuation) are one-byte words. WORD_ASCII is the set of word bytes below 0x80 as
 * a 128-bit map (a few instructions per byte, no branch chain, 16 bytes of flash). */
static const uint32_t WORD_ASCII[4] = {
    0x00000000u, /* 0x00-0x1F */
    0x03FF0080u, /* 0x20-0x3F: ' (0x27), 0-9 (0x30-0x39) */
    0x07FFFFFEu, /* 0x40-0x5F: A-Z (0x41-0x5A) */
    0x07FFFFFEu, /* 0x60-0x7F: a-z (0x61-0x7A) */
};

static int byte_class(uint8_t b)
{
    if (b >= 0x80u) {
        return CLASS_WORD;
    }
    if (b <= 0x20u || b == 0x7Fu) {
        return CLASS_SEPARATOR;
    }
    return (WORD_ASCII[b >> 5] >> (b & 31u)) & 1u ? CLASS_WORD : CLASS_PUNCT;
}

int mt_next_word(const uint8_t *text, uint32_t len, uint32_t max_word_bytes, uint32_t *pos,
                 mt_word_t *word)
{
    uint32_t i = *pos;
    while (i < len) {
        int c = byte_class(text[i]);
        if (c == CLASS_SEPARATOR) {
            i++;
            continue;
        }
        word->start = i;
        if (c == CLASS_PUNCT) {
            word->len = 1u;
            *pos = i + 1u;
            return 1;
        }
        uint32_t j = i;
        while (j < len && byte_class(text[j]) == CLASS_WORD) {
            j++;
        }
        word->len = (j - i < max_word_bytes) ? j - i : max_word_bytes;
        *pos = j;
        return 1;
    }
    *pos = len;
    return 0;
}

static uint32_t fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

/* id = 1 + hash % (buckets - 1). Cores without a divide instruction (Cortex-M0/M0+: ARMv6-M)
 * would call libgcc's shift-and-subtract division for every feature; there the remainder
 * comes from a reciprocal computed once per text (one division), a 32x32 -> high-32
 * multiply from four 16-bit products, and at most a few corrections. Host tests build both
 * paths (MT_TOKENIZER_SOFT_DIVIDE=1 forces this one). */
#ifndef MT_TOKENIZER_SOFT_DIVIDE
#if defined(__arm__) && !defined(__ARM_FEATURE_IDIV)
#define MT_TOKENIZER_SOFT_DIVIDE 1
#else
#define MT_TOKENIZER_SOFT_DIVIDE 0
#endif
#endif

typedef struct {
    uint32_t seed;
    uint32_t m;   /* buckets - 1, >= 1 */
    uint32_t inv; /* floor((2^32 - 1) / m) */
} hasher_t;

#if MT_TOKENIZER_SOFT_DIVIDE
static uint32_t mul_hi32(uint32_t x, uint32_t y)
{
    const uint32_t xl = x & 0xFFFFu, xh = x >> 16, yl = y & 0xFFFFu, yh = y >> 16;
    const uint32_t ll = xl * yl, lh = xl * yh, hl = xh * yl, hh = xh * yh;
    const uint32_t mid = (ll >> 16) + (lh & 0xFFFFu) + (hl & 0xFFFFu); /* < 3 * 2^16 */
    return hh + (lh >> 16) + (hl >> 16) + (mid >> 16);
}

/* q = mul_hi32(h, inv) is at most 2 below h / m, so r = h - q m < 3 m. */
static uint32_t mod(const hasher_t *k, uint32_t h)
{
    uint32_t r = h - mul_hi32(h, k->inv) * k->m;
    while (r >= k->m) {
        r -= k->m;
    }
    return r;
}
#else
static uint32_t mod(const hasher_t *k, uint32_t h)
{
    return h % k->m;
}
#endif

/* FNV-1a-32 over [tag] + data[0, n), from the seeded offset basis, before fmix32. */
static uint32_t fnv_start(uint32_t seed, uint32_t tag)
{
    return ((FNV_OFFSET ^ seed) ^ tag) * FNV_PRIME;
}

static uint32_t fnv_bytes(uint32_t h, const uint8_t *data, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        h = (h ^ data[i]) * FNV_PRIME;
    }
    return h;
}

static int32_t feature_id(const hasher_t *k, uint32_t tag, const uint8_t *data, uint32_t n)
{
    return (int32_t)(1u + mod(k, fmix32(fnv_bytes(fnv_start(k->seed, tag), data, n))));
}

/* --- the robust encoding (spec version 2) ------------------------------------------------- */

/* The index of `key` in the table (binary search: shifts and compares only, so the same on
 * every core), or t->count if it is not there. */
static uint32_t find_key(const mt_robust_table_t *t, uint32_t key)
{
    uint32_t lo = 0, hi = t->count;
    while (lo < hi) {
        const uint32_t mid = lo + ((hi - lo) >> 1);
        if (t->keys[mid] < key) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return (lo < t->count && t->keys[lo] == key) ? lo : t->count;
}

/* One more code seen for a word that is not a known word: 0 once the answer is the fallback
 * (an ambiguous key, or a second code). */
static int see(uint32_t *found, uint32_t c)
{
    if (c == MT_CODE_NONE) {
        return 1;
    }
    if (c == MT_CODE_AMBIGUOUS || (*found != MT_CODE_NONE && c != *found)) {
        return 0;
    }
    *found = c;
    return 1;
}

/* RobustTokenizer.code: a known word's own code; else the one code found at the word's key
 * (near) and at the keys of its one-byte deletions (exact and near); none or several: the
 * fallback. A deletion's key continues the FNV state of the bytes before the deleted one, so
 * no copy of the deletion is made. */
static int32_t robust_code(const mt_robust_table_t *t, uint32_t seed, const uint8_t *w,
                           uint32_t n)
{
    const uint32_t start = fnv_start(seed, TAG_KEY);
    const uint32_t i = find_key(t, fmix32(fnv_bytes(start, w, n)));
    if (i < t->count && t->exact[i] != MT_CODE_NONE) {
        return (int32_t)t->exact[i];
    }
    uint32_t found = MT_CODE_NONE;
    if (i < t->count && !see(&found, t->near[i])) {
        return (int32_t)MT_CODE_FALLBACK;
    }
    if (n >= 2u) {
        uint32_t before = start; /* the state after w[0, d) */
        for (uint32_t d = 0; d < n; d++) {
            const uint32_t j = find_key(t, fmix32(fnv_bytes(before, w + d + 1u, n - d - 1u)));
            if (j < t->count && !(see(&found, t->exact[j]) && see(&found, t->near[j]))) {
                return (int32_t)MT_CODE_FALLBACK;
            }
            before = (before ^ w[d]) * FNV_PRIME;
        }
    }
    return (int32_t)(found == MT_CODE_NONE ? MT_CODE_FALLBACK : found);
}

/* Insertion sort: words are at most MT_TOKENIZER_MAX_WORD_BYTES long, no scratch needed. */
static void sort_bytes(uint8_t *b, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint8_t v = b[i];
        uint32_t j = i;
        while (j > 0 && b[j - 1u] > v) {
            b[j] = b[j - 1u];
            j--;
        }
        b[j] = v;
    }
}

/* The next word at or after *pos, lower-cased into buf: its length (>= 1), or 0 when no word
 * is left. */
static inline __attribute__((always_inline)) uint32_t next_word_lowered(
    const uint8_t *text, uint32_t len, uint32_t max_bytes, uint32_t *pos, uint8_t *buf)
{
    mt_word_t w;
    if (!mt_next_word(text, len, max_bytes, pos, &w)) {
        return 0;
    }
    for (uint32_t i = 0; i < w.len; i++) {
        buf[i] = mt_lower(text[w.start + i]);
    }
    return w.len;
}

/* Bytes kept of a word: a max_word_bytes of 0 or above the buffer is the buffer's size. */
static uint32_t word_limit(const mt_tokenizer_spec_t *spec)
{
    const uint32_t m = spec->max_word_bytes;
    return (m == 0u || m > MT_TOKENIZER_MAX_WORD_BYTES) ? MT_TOKENIZER_MAX_WORD_BYTES : m;
}

/* The two encodings' word loops are separate functions, never inlined into mt_tokenize: each
 * has its own word buffer, and only one of them is ever on the stack. */
static __attribute__((noinline)) uint32_t hashed_words(const mt_tokenizer_spec_t *spec,
                                                       const uint8_t *text, uint32_t len,
                                                       int32_t *ids)
{
    const uint32_t f = spec->features_per_word;
    hasher_t k;
    k.seed = spec->seed;
    k.m = spec->buckets - 1u;
    k.inv = MT_TOKENIZER_SOFT_DIVIDE ? 0xFFFFFFFFu / k.m : 0u;
    uint8_t buf[MT_TOKENIZER_MAX_WORD_BYTES];
    const uint32_t max_bytes = word_limit(spec);
    uint32_t pos = 0, nwords = 0, n;
    while (nwords < spec->max_words &&
           (n = next_word_lowered(text, len, max_bytes, &pos, buf)) != 0u) {
        int32_t *out = ids + nwords * f;
        out[0] = feature_id(&k, TAG_WORD, buf, n);
        if (f > 1u) {
            uint32_t a = n < AFFIX_BYTES ? n : AFFIX_BYTES;
            if (f > 2u) {
                out[2] = feature_id(&k, TAG_PREFIX, buf, a);
            }
            if (f > 3u) {
                out[3] = feature_id(&k, TAG_SUFFIX, buf + n - a, a);
            }
            /* Sorted-inner key last: it reorders buf in place. */
            if (n >= 3u) {
                sort_bytes(buf + 1, n - 2u);
            }
            out[1] = feature_id(&k, TAG_SORTED, buf, n);
        }
        nwords++;
    }
    return nwords;
}

static __attribute__((noinline)) uint32_t robust_words(const mt_tokenizer_spec_t *spec,
                                                       const uint8_t *text, uint32_t len,
                                                       int32_t *ids)
{
    uint8_t buf[MT_TOKENIZER_MAX_WORD_BYTES];
    const uint32_t max_bytes = word_limit(spec);
    uint32_t pos = 0, nwords = 0, n;
    while (nwords < spec->max_words &&
           (n = next_word_lowered(text, len, max_bytes, &pos, buf)) != 0u) {
        ids[nwords++] = robust_code(spec->robust, spec->seed, buf, n);
    }
    return nwords;
}

uint32_t mt_tokenize(const mt_tokenizer_spec_t *spec, const uint8_t *text, uint32_t len,
                     int32_t *ids)
{
    const uint32_t f = spec->features_per_word;
    const uint32_t total = spec->max_words * f;
    for (uint32_t i = 0; i < total; i++) {
        ids[i] = 0;
    }
    if (spec->buckets < 2u || f == 0u || text == 0 ||
        (spec->robust != 0 && (f != 1u || spec->robust->codes != spec->buckets))) {
        return 0;
    }
    return spec->robust != 0 ? robust_words(spec, text, len, ids)
                             : hashed_words(spec, text, len, ids);
}
