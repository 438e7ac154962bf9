/* LOGISTIC and TANH int8 -> int8, bit-exact with TFLite Micro's reference kernels: the input
 * (minus its zero point) is rescaled to Q4.27 by MultiplyByQuantizedMultiplier, the function
 * is gemmlowp's fixed point (fixedpoint.h), the Q0.31 result is rounded to the fixed output
 * quantization (LOGISTIC: scale 1/256, zero point -128; TANH: scale 1/128, zero point 0).
 * Inputs at or beyond the range radius saturate. */
#ifndef MT_ACTIVATION_H
#define MT_ACTIVATION_H

#include "mt_common.h"

typedef struct {
    uint32_t size;              /* elements, >= 1 */
    int32_t input_zp;           /* [-128, 127] */
    int32_t input_multiplier;   /* round(q * 2^31), q = frexp(input_scale * 2^27) mantissa */
    int32_t input_left_shift;   /* frexp exponent of input_scale * 2^27, [0, 31] */
    int32_t input_range_radius; /* floor(15 * 2^27 / 2^input_left_shift), >= 1 */
} mt_activation_params_t;

/* in, out: [size] int8 (may be the same buffer). */
mt_status_t mt_logistic_s8(const mt_activation_params_t *p, const int8_t *in, int8_t *out);
mt_status_t mt_tanh_s8(const mt_activation_params_t *p, const int8_t *in, int8_t *out);

#endif
