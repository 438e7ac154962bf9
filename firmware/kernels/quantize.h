/* QUANTIZE int8 -> int8 (a requantization), TFLite Micro's reference Requantize. */
#ifndef MT_QUANTIZE_H
#define MT_QUANTIZE_H

#include "mt_common.h"

typedef struct {
    uint32_t size;              /* elements, >= 1 */
    int32_t input_zp, output_zp; /* [-128, 127] */
    int32_t mult, shift;        /* QuantizeMultiplier(input_scale / output_scale) */
} mt_quantize_params_t;

/* out[i] = clamp(output_zp + MBQM(in[i] - input_zp, mult, shift), -128, 127). */
mt_status_t mt_quantize_s8(const mt_quantize_params_t *p, const int8_t *in, int8_t *out);

#endif
