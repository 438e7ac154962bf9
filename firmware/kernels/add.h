/* ADD and SUB int8 with broadcasting (up to 4-D), TFLite Micro's reference arithmetic: both
 * inputs (minus their zero points) shifted left by 20 and rescaled to a common scale by
 * their own multipliers, added (or subtracted), rescaled to the output. */
#ifndef MT_ADD_H
#define MT_ADD_H

#include "mt_common.h"

typedef struct {
    uint32_t shape[4];   /* output shape, outermost first (shorter shapes padded with 1) */
    uint32_t stride1[4]; /* element stride of input 1 per output dimension (0 = broadcast) */
    uint32_t stride2[4]; /* element stride of input 2 per output dimension (0 = broadcast) */
    int32_t input1_zp, input2_zp, output_zp; /* [-128, 127] */
    int32_t left_shift;                      /* 20 for int8 */
    int32_t input1_mult, input1_shift;       /* QuantizeMultiplierSmallerThanOneExp of
                                              * s1 / (2 max(s1, s2)); shift in [-31, 0] */
    int32_t input2_mult, input2_shift;       /* the same for s2 */
    int32_t output_mult, output_shift;       /* of 2 max(s1, s2) / (2^left_shift s_out) */
    int32_t act_min, act_max;                /* fused activation clamp */
    int32_t subtract;                        /* 1: SUB (input1 - input2), 0: ADD */
} mt_add_params_t;

/* out = clamp(output_zp + MBQM(MBQM((in1 - zp1) 2^ls, m1, s1) +- MBQM((in2 - zp2) 2^ls, m2,
 * s2), mo, so)), elementwise over the output shape; out is dense, and may be the same buffer
 * as an input of the output's shape. */
mt_status_t mt_add_s8(const mt_add_params_t *p, const int8_t *in1, const int8_t *in2,
                      int8_t *out);

#endif
