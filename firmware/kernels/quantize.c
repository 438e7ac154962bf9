#include "quantize.h"

mt_status_t mt_quantize_s8(const mt_quantize_params_t *p, const int8_t *in, int8_t *out)
{
    if (p == 0 || in == 0 || out == 0 || p->size == 0) {
        return MT_ERR_ARG;
    }
    for (uint32_t i = 0; i < p->size; ++i) {
        const int32_t v = mt_mbqm((int32_t)in[i] - p->input_zp, p->mult, p->shift) + p->output_zp;
        out[i] = (int8_t)mt_clamp32(v, MT_INT8_MIN, MT_INT8_MAX);
    }
    return MT_OK;
}
