#include "gather.h"

mt_status_t mt_gather_s8(const mt_gather_params_t *p, const int32_t *ids, uint32_t n,
                         int8_t *out)
{
    if (p == 0 || p->table == 0 || p->rows == 0 || p->row_bytes == 0 || ids == 0 || out == 0) {
        return MT_ERR_ARG;
    }
    const uint32_t d = p->row_bytes, rows = p->rows;
    if ((d & 3u) == 0 && (((uintptr_t)p->table | (uintptr_t)out) & 3u) == 0) {
        const uint32_t words = d >> 2;
        const uint32_t *table = (const uint32_t *)(const void *)p->table;
        uint32_t *o = (uint32_t *)(void *)out;
        /* One unsigned compare rejects negative ids as well. */
        if (words == 2u) { /* the common embedding widths get straight-line copies */
            for (uint32_t i = 0; i < n; ++i, o += 2) {
                const uint32_t id = (uint32_t)ids[i];
                if (id >= rows) {
                    return MT_ERR_RANGE;
                }
                const uint32_t *row = table + 2u * id;
                o[0] = row[0];
                o[1] = row[1];
            }
        } else if (words == 4u) {
            for (uint32_t i = 0; i < n; ++i, o += 4) {
                const uint32_t id = (uint32_t)ids[i];
                if (id >= rows) {
                    return MT_ERR_RANGE;
                }
                const uint32_t *row = table + 4u * id;
                o[0] = row[0];
                o[1] = row[1];
                o[2] = row[2];
                o[3] = row[3];
            }
        } else {
            for (uint32_t i = 0; i < n; ++i) {
                const uint32_t id = (uint32_t)ids[i];
                if (id >= rows) {
                    return MT_ERR_RANGE;
                }
                const uint32_t *row = table + id * words;
                for (uint32_t w = 0; w < words; ++w) {
                    *o++ = row[w];
                }
            }
        }
        return MT_OK;
    }
    for (uint32_t i = 0; i < n; ++i) {
        const uint32_t id = (uint32_t)ids[i];
        if (id >= rows) {
            return MT_ERR_RANGE;
        }
        const int8_t *row = p->table + id * d;
        for (uint32_t b = 0; b < d; ++b) {
            out[i * d + b] = row[b];
        }
    }
    return MT_OK;
}
