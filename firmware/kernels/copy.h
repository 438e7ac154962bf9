/* Data movement without arithmetic: STRIDED_SLICE, TRANSPOSE (a strided copy),
 * CONCATENATION and PACK (block copies), and int32 MINIMUM. The quantization of the output
 * equals the inputs' (the code generator checks it), so bytes are copied as they are. */
#ifndef MT_COPY_H
#define MT_COPY_H

#include "mt_common.h"

typedef struct {
    uint32_t shape[4];     /* output shape, outermost first (padded with 1), dense output */
    uint32_t stride[4];    /* input element stride per output dimension */
    uint32_t offset;       /* input element of output element 0 */
    uint32_t elem_bytes;   /* 1 (int8) or 4 (int32) */
} mt_strided_copy_params_t;

/* out[i0][i1][i2][i3] = in[offset + sum_k i_k stride[k]]; in and out may not overlap. */
mt_status_t mt_strided_copy(const mt_strided_copy_params_t *p, const void *in, void *out);

typedef struct {
    uint32_t inputs;       /* number of inputs, >= 1 */
    uint32_t outer;        /* product of the dimensions before the axis, >= 1 */
    const uint32_t *bytes; /* [inputs]: bytes per outer index of each input (its block) */
} mt_concat_params_t;

/* For each outer index, the blocks of inputs[0], inputs[1], ... one after the other. */
mt_status_t mt_concat_s8(const mt_concat_params_t *p, const int8_t *const *inputs,
                         int8_t *out);

typedef struct {
    uint32_t size;          /* output elements, >= 1 */
    uint32_t step1, step2;  /* 1: elementwise, 0: the input is one broadcast value */
} mt_minimum_params_t;

/* out[i] = min(in1[i step1], in2[i step2]) on int32 (TFLite's MINIMUM of unquantized int32). */
mt_status_t mt_minimum_s32(const mt_minimum_params_t *p, const int32_t *in1, const int32_t *in2,
                           int32_t *out);

#endif
