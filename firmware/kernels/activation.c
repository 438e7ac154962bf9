#include "activation.h"

#include "fixedpoint.h"

static int params_ok(const mt_activation_params_t *p, const int8_t *in, const int8_t *out)
{
    return p != 0 && in != 0 && out != 0 && p->size != 0 && p->input_left_shift >= 0 &&
           p->input_left_shift <= 31 && p->input_range_radius >= 1;
}

/* The input in Q4.27, or the saturated output when it is outside the radius (*sat = 1). */
static inline int32_t to_q4(const mt_activation_params_t *p, int8_t v, int32_t *sat)
{
    const int32_t x = (int32_t)v - p->input_zp;
    if (x <= -p->input_range_radius) {
        *sat = 1;
        return MT_INT8_MIN;
    }
    if (x >= p->input_range_radius) {
        *sat = 1;
        return MT_INT8_MAX;
    }
    *sat = 0;
    return mt_mbqm(x, p->input_multiplier, p->input_left_shift);
}

mt_status_t mt_logistic_s8(const mt_activation_params_t *p, const int8_t *in, int8_t *out)
{
    if (!params_ok(p, in, out)) {
        return MT_ERR_ARG;
    }
    for (uint32_t i = 0; i < p->size; ++i) {
        int32_t sat;
        const int32_t a = to_q4(p, in[i], &sat);
        if (sat) {
            out[i] = (int8_t)a;
            continue;
        }
        int32_t r;
        if (a == 0) {
            r = 1 << 30; /* 1/2 */
        } else {
            /* logistic(|a|) = 1 / (1 + exp(-|a|)); logistic(-|a|) = 1 - logistic(|a|) */
            const int32_t pos = mt_fp_one_over_one_plus(mt_fp_exp_negative(a > 0 ? -a : a, 4));
            r = a > 0 ? pos : mt_fp_sub(INT32_MAX, pos);
        }
        const int32_t q = mt_rdbpot(r, 23) - 128; /* Q0.31 -> 1/256 steps, zero point -128 */
        out[i] = (int8_t)mt_clamp32(q, MT_INT8_MIN, MT_INT8_MAX);
    }
    return MT_OK;
}

mt_status_t mt_tanh_s8(const mt_activation_params_t *p, const int8_t *in, int8_t *out)
{
    if (!params_ok(p, in, out)) {
        return MT_ERR_ARG;
    }
    for (uint32_t i = 0; i < p->size; ++i) {
        int32_t sat;
        const int32_t a = to_q4(p, in[i], &sat);
        if (sat) {
            out[i] = (int8_t)a;
            continue;
        }
        int32_t r = 0;
        if (a != 0) {
            /* -tanh(n) for n = -|a| <= 0: (1 - exp(2n)) / (1 + exp(2n)); 2n is the same raw
             * value read as Q5.26. */
            const int32_t n = a < 0 ? a : -a;
            const int32_t t = mt_fp_one_minus_over_one_plus(mt_fp_exp_negative(n, 5));
            r = a < 0 ? -t : t;
        }
        const int32_t q = mt_rdbpot(r, 24); /* Q0.31 -> 1/128 steps */
        out[i] = (int8_t)mt_clamp32(q, MT_INT8_MIN, MT_INT8_MAX);
    }
    return MT_OK;
}
