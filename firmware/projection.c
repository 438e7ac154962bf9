/* PRADO projection, the C copy of toolchain/mcutext/model/projection.py (spec: docs/baselines.md). */
#include "projection.h"

#define ID_MULT 0x9E3779B9u
#define CHUNK_MULT 0x7FEB352Du
#define VALUES_PER_HASH 16u

static uint32_t fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static int spec_ok(const mt_projection_spec_t *spec)
{
    return spec != 0 && spec->feature_size >= 1u &&
           spec->feature_size <= MT_PROJECTION_MAX_FEATURE_SIZE &&
           spec->features_per_word >= 1u &&
           spec->features_per_word <= MT_PROJECTION_MAX_FEATURES_PER_WORD;
}

/* Adds (add = 1) or stores (add = 0) the ternary projection of a positive id. 2-bit codes:
 * 0 -> 0, 1 -> +1, 2 -> -1, 3 -> 0. */
static void project(const mt_projection_spec_t *spec, uint32_t id, int8_t *out, int add)
{
    const uint32_t base = fmix32((id * ID_MULT) ^ spec->seed);
    const uint32_t p = spec->feature_size;
    for (uint32_t c = 0, j = 0; j < p; c++) {
        uint32_t word = fmix32(base ^ (c * CHUNK_MULT));
        for (uint32_t k = 0; k < VALUES_PER_HASH && j < p; k++, j++, word >>= 2) {
            const uint32_t code = word & 3u;
            const int8_t v = (int8_t)((code == 1u) - (code == 2u));
            out[j] = add ? (int8_t)(out[j] + v) : v;
        }
    }
}

mt_status_t mt_projection_feature(const mt_projection_spec_t *spec, int32_t id, int8_t *out)
{
    if (!spec_ok(spec) || out == 0) {
        return MT_ERR_ARG;
    }
    if (id <= 0) {
        memset(out, 0, spec->feature_size);
        return id < 0 ? MT_ERR_RANGE : MT_OK;
    }
    project(spec, (uint32_t)id, out, 0);
    return MT_OK;
}

mt_status_t mt_projection_word(const mt_projection_spec_t *spec, const int32_t *ids,
                               int8_t *out)
{
    if (!spec_ok(spec) || ids == 0 || out == 0) {
        return MT_ERR_ARG;
    }
    memset(out, 0, spec->feature_size);
    mt_status_t st = MT_OK;
    for (uint32_t k = 0; k < spec->features_per_word; k++) {
        if (ids[k] > 0) {
            project(spec, (uint32_t)ids[k], out, 1);
        } else if (ids[k] < 0) {
            st = MT_ERR_RANGE;
        }
    }
    return st;
}

mt_status_t mt_projection_input(const mt_projection_spec_t *spec, const int32_t *ids,
                                uint32_t max_words, const int8_t *lut, int8_t *out)
{
    if (!spec_ok(spec) || ids == 0 || lut == 0 || out == 0) {
        return MT_ERR_ARG;
    }
    const uint32_t p = spec->feature_size;
    const uint32_t k = spec->features_per_word;
    mt_status_t st = MT_OK;
    for (uint32_t w = 0; w < max_words; w++) {
        int8_t *row = out + w * (p + 1u);
        /* The sums go through the output row itself (they fit in int8: |S| <= K <= 8). */
        mt_status_t s = mt_projection_word(spec, ids + w * k, row);
        if (s != MT_OK) {
            st = s;
        }
        for (uint32_t j = 0; j < p; j++) {
            row[j] = lut[(int32_t)row[j] + (int32_t)k];
        }
        row[p] = ids[w * k] > 0 ? lut[2u * k + 1u] : lut[k];
    }
    return st;
}
