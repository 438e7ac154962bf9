/* SUM int8 over a block of contiguous axes: the input viewed as [outer][reduce][inner]. */
#ifndef MT_REDUCE_H
#define MT_REDUCE_H

#include "mt_common.h"

typedef struct {
    uint32_t outer, reduce, inner; /* >= 1 */
    int32_t input_zp, output_zp;   /* [-128, 127] */
    int32_t mult, shift;           /* Q31 multiplier and shift of input_scale / output_scale */
} mt_sum_params_t;

/* out[o][i] = clamp(output_zp + MultiplyByQuantizedMultiplier(
 *                   sum_r in[o][r][i] - reduce * input_zp, mult, shift), -128, 127),
 * as TFLite Micro's reference QuantizedMeanOrSum with compute_sum. in and out may not
 * overlap. */
mt_status_t mt_sum_s8(const mt_sum_params_t *p, const int8_t *in, int8_t *out);

#endif
