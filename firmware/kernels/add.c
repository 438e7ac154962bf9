#include "add.h"

static inline int8_t add_one(const mt_add_params_t *p, int32_t a, int32_t b)
{
    const int32_t x1 = (int32_t)((uint32_t)(a - p->input1_zp) << p->left_shift);
    const int32_t x2 = (int32_t)((uint32_t)(b - p->input2_zp) << p->left_shift);
    const int32_t s1 = mt_mbqm(x1, p->input1_mult, p->input1_shift);
    const int32_t s2 = mt_mbqm(x2, p->input2_mult, p->input2_shift);
    const int32_t raw = p->subtract ? s1 - s2 : s1 + s2;
    const int32_t v = mt_mbqm(raw, p->output_mult, p->output_shift) + p->output_zp;
    return (int8_t)mt_clamp32(v, p->act_min, p->act_max);
}

mt_status_t mt_add_s8(const mt_add_params_t *p, const int8_t *in1, const int8_t *in2,
                      int8_t *out)
{
    if (p == 0 || in1 == 0 || in2 == 0 || out == 0 || p->act_min > p->act_max ||
        p->act_min < MT_INT8_MIN || p->act_max > MT_INT8_MAX || p->left_shift < 0 ||
        p->left_shift > 24 || p->input1_shift > 0 || p->input2_shift > 0 ||
        p->output_shift > 0) {
        return MT_ERR_ARG;
    }
    for (uint32_t i0 = 0; i0 < p->shape[0]; ++i0) {
        for (uint32_t i1 = 0; i1 < p->shape[1]; ++i1) {
            for (uint32_t i2 = 0; i2 < p->shape[2]; ++i2) {
                const int8_t *a = in1 + i0 * p->stride1[0] + i1 * p->stride1[1] +
                                  i2 * p->stride1[2];
                const int8_t *b = in2 + i0 * p->stride2[0] + i1 * p->stride2[1] +
                                  i2 * p->stride2[2];
                const uint32_t sa = p->stride1[3], sb = p->stride2[3];
                for (uint32_t i3 = 0; i3 < p->shape[3]; ++i3, a += sa, b += sb) {
                    *out++ = add_one(p, *a, *b);
                }
            }
        }
    }
    return MT_OK;
}
