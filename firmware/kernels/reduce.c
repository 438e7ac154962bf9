#include "reduce.h"

mt_status_t mt_sum_s8(const mt_sum_params_t *p, const int8_t *in, int8_t *out)
{
    if (p == 0 || in == 0 || out == 0 || p->outer == 0 || p->reduce == 0 || p->inner == 0) {
        return MT_ERR_ARG;
    }
    const uint32_t inner = p->inner;
    const int32_t offset = (int32_t)p->reduce * p->input_zp;
    for (uint32_t o = 0; o < p->outer; ++o, in += p->reduce * inner, out += inner) {
        for (uint32_t i = 0; i < inner; ++i) {
            int32_t acc = 0;
            const int8_t *v = in + i;
            for (uint32_t r = 0; r < p->reduce; ++r, v += inner) {
                acc += *v;
            }
            const int32_t shifted = (int32_t)((uint32_t)acc - (uint32_t)offset);
            const int32_t q = mt_mbqm(shifted, p->mult, p->shift) + p->output_zp;
            out[i] = (int8_t)mt_clamp32(q, MT_INT8_MIN, MT_INT8_MAX);
        }
    }
    return MT_OK;
}
