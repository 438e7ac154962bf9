/* GATHER (axis 0, no batch dims) of int8 rows by int32 ids: the embedding lookup. */
#ifndef MT_GATHER_H
#define MT_GATHER_H

#include "mt_common.h"

typedef struct {
    const int8_t *table; /* [rows][row_bytes], row-major (in flash) */
    uint32_t rows;       /* number of rows, >= 1; valid ids are 0 .. rows-1 */
    uint32_t row_bytes;  /* bytes per row (the embedding width), >= 1 */
} mt_gather_params_t;

/* out[i][0..row_bytes) = table[ids[i]][0..row_bytes) for i < n.
 * ids: [n] int32; out: [n][row_bytes] int8, must not overlap table or ids.
 * An id outside [0, rows) returns MT_ERR_RANGE (TFLite Micro fails the invocation too); the
 * rows before it have been copied, the rest of out is unspecified.
 * With row_bytes a multiple of 4 and table and out word-aligned, rows are copied by words. */
mt_status_t mt_gather_s8(const mt_gather_params_t *p, const int32_t *ids, uint32_t n,
                         int8_t *out);

#endif
