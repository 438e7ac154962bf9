#include "mul.h"

static inline int32_t mul_one(const mt_mul_params_t *p, int32_t a, int32_t b)
{
    const int32_t prod = (a - p->input1_zp) * (b - p->input2_zp);
    const int32_t v = mt_mbqm(prod, p->mult, p->shift) + p->output_zp;
    return mt_clamp32(v, p->act_min, p->act_max);
}

mt_status_t mt_mul_s8(const mt_mul_params_t *p, const int8_t *in1, const int8_t *in2,
                      int8_t *out)
{
    if (p == 0 || in1 == 0 || in2 == 0 || out == 0 || p->act_min > p->act_max ||
        p->act_min < MT_INT8_MIN || p->act_max > MT_INT8_MAX) {
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
                    *out++ = (int8_t)mul_one(p, *a, *b);
                }
            }
        }
    }
    return MT_OK;
}

static void mul_sum_portable(const mt_mul_sum_params_t *p, const int8_t *x, const int8_t *s,
                             int8_t *out)
{
    const uint32_t cols = p->cols;
    for (uint32_t c = 0; c < cols; ++c) {
        int32_t acc = 0;
        const int8_t *xc = x + c;
        for (uint32_t r = 0; r < p->rows; ++r, xc += cols) {
            const int32_t prod = ((int32_t)*xc - p->x_zp) * ((int32_t)s[r] - p->s_zp);
            const int32_t q = mt_mbqm(prod, p->mul_mult, p->mul_shift) + p->mul_zp;
            acc += mt_clamp32(q, p->mul_act_min, p->mul_act_max);
        }
        out[c] = mt_mul_sum_out(p, acc);
    }
}

#if MT_USE_DSP
void mt_mul_sum_dsp_generic(const struct mt_mul_sum_params *p, const int8_t *x,
                            const int32_t *factors, int8_t *out)
{
    mt_mul_sum_dsp_body(p, x, factors, out, p->cols, 1, 0);
}
#endif

static int mul_sum_shape_ok(const mt_mul_sum_params_t *p, const int8_t *x, const int8_t *s,
                            const int8_t *out)
{
    return p != 0 && x != 0 && s != 0 && out != 0 && p->rows != 0 && p->cols != 0 &&
           p->mul_act_min <= p->mul_act_max && p->mul_act_min >= MT_INT8_MIN &&
           p->mul_act_max <= MT_INT8_MAX;
}

#if MT_USE_DSP
static int mul_sum_dsp_ok(const mt_mul_sum_params_t *p, const int8_t *x, const void *scratch)
{
    return scratch != 0 && p->dsp_fn != 0 && p->dsp_right >= 1 && p->dsp_right <= 31 &&
           p->dsp_sum_right >= 1 && p->dsp_sum_right <= 31 && p->dsp_scale >= 0 &&
           p->dsp_scale <= 7 && p->cols % 4u == 0 && ((uintptr_t)x & 3u) == 0 &&
           p->mul_act_min == MT_INT8_MIN && p->mul_act_max == MT_INT8_MAX;
}

static void mul_sum_dsp(const mt_mul_sum_params_t *p, const int8_t *x, const int8_t *s,
                        int8_t *out, void *scratch)
{
    int32_t *factors = (int32_t *)scratch;
    for (uint32_t r = 0; r < p->rows; ++r) {
        const int32_t b = ((int32_t)s[r] - p->s_zp) * (1 << p->dsp_scale);
        factors[2u * r] = b & 0xFFFF;
        factors[2u * r + 1u] = -p->x_zp * b;
    }
    MT_COMPILER_BARRIER();
    p->dsp_fn(p, x, factors, out);
}

mt_status_t mt_mul_sum_s8_dsp(const mt_mul_sum_params_t *p, const int8_t *x, const int8_t *s,
                              int8_t *out, void *scratch)
{
    if (!mul_sum_shape_ok(p, x, s, out) || !mul_sum_dsp_ok(p, x, scratch)) {
        return MT_ERR_ARG;
    }
    mul_sum_dsp(p, x, s, out, scratch);
    return MT_OK;
}
#endif

mt_status_t mt_mul_sum_s8(const mt_mul_sum_params_t *p, const int8_t *x, const int8_t *s,
                          int8_t *out, void *scratch)
{
    if (!mul_sum_shape_ok(p, x, s, out)) {
        return MT_ERR_ARG;
    }
#if MT_USE_DSP
    if (mul_sum_dsp_ok(p, x, scratch)) {
        mul_sum_dsp(p, x, s, out, scratch);
        return MT_OK;
    }
#else
    (void)scratch;
#endif
    mul_sum_portable(p, x, s, out);
    return MT_OK;
}
