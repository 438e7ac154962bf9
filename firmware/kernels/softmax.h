/* SOFTMAX int8 -> int8 (output scale 1/256, zero point -128) over the last axis, bit-exact
 * with TFLite Micro's reference: gemmlowp fixed point, exp of the scaled difference to the
 * row maximum in Q5.26, sum in Q12.19, reciprocal by Newton-Raphson. */
#ifndef MT_SOFTMAX_H
#define MT_SOFTMAX_H

#include "mt_common.h"

typedef struct {
    uint32_t rows;              /* independent rows, >= 1 */
    uint32_t depth;             /* values per row (the last axis), >= 1 */
    int32_t input_multiplier;   /* PreprocessSoftmaxScaling(beta, input_scale, 5) */
    int32_t input_left_shift;   /* [0, 31] */
    int32_t diff_min;           /* -CalculateInputRadius(5, input_left_shift) */
} mt_softmax_params_t;

/* Scratch bytes: the row's exponentials are kept so each is computed once. */
static inline uint32_t mt_softmax_scratch_bytes(const mt_softmax_params_t *p)
{
    return p->depth * 4u;
}

/* in, out: [rows][depth] int8 (may not overlap); scratch: mt_softmax_scratch_bytes(p) bytes,
 * word-aligned. */
mt_status_t mt_softmax_s8(const mt_softmax_params_t *p, const int8_t *in, int8_t *out,
                          void *scratch);

#endif
