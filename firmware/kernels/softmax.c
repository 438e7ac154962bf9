#include "softmax.h"

/* gemmlowp's fixed-point pieces used by the reference softmax. Additions of fixed-point
 * values are plain int32 additions there; they are done modulo 2^32 here (no overflow
 * occurs for the ranges involved, and the result is the same integer either way). */

static inline int32_t add32(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

/* SaturatingRoundingMultiplyByPOT with a positive exponent: a saturating left shift. */
static inline int32_t sat_shl(int32_t x, int32_t e)
{
    const int32_t threshold = (int32_t)((1u << (31 - e)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << e);
}

/* exp(a) for a in [-1/4, 0) in Q0.31: Taylor series around -1/8. */
static int32_t exp_quarter(int32_t a)
{
    const int32_t exp_minus_eighth = 1895147668; /* exp(-1/8) */
    const int32_t one_third = 715827883;
    const int32_t x = add32(a, 1 << 28);
    const int32_t x2 = mt_srdhm(x, x);
    const int32_t x3 = mt_srdhm(x2, x);
    const int32_t x4 = mt_srdhm(x2, x2);
    const int32_t x4_over_4 = mt_rdbpot(x4, 2);
    const int32_t poly = mt_rdbpot(add32(mt_srdhm(add32(x4_over_4, x3), one_third), x2), 1);
    return add32(exp_minus_eighth, mt_srdhm(exp_minus_eighth, add32(x, poly)));
}

/* exp(a) for a <= 0 given in Q5.26, result in Q0.31 (gemmlowp exp_on_negative_values). */
static int32_t exp_negative_q5(int32_t a)
{
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                      39332535, 720401, 242}; /* exp(-2^k), k = -2 .. 4 */
    if (a == 0) {
        return INT32_MAX;
    }
    const int32_t quarter = 1 << 24;
    const int32_t a_mod = (int32_t)((uint32_t)(a & (quarter - 1)) - (uint32_t)quarter);
    int32_t result = exp_quarter(sat_shl(a_mod, 5));
    const int32_t remainder = (int32_t)((uint32_t)a_mod - (uint32_t)a);
    for (int32_t k = 0; k < 7; ++k) {
        if (remainder & (1 << (24 + k))) {
            result = mt_srdhm(result, barrel[k]);
        }
    }
    return result;
}

/* 1 / (1 + x) for x in [0, 1), Q0.31 in and out: Newton-Raphson in Q2.29. */
static int32_t one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t c48_17 = 1515870810, c_neg32_17 = -1010580540;
    int32_t x = add32(c48_17, mt_srdhm(half_denominator, c_neg32_17));
    for (int32_t i = 0; i < 3; ++i) {
        const int32_t hdx = mt_srdhm(half_denominator, x);
        const int32_t one_minus = (int32_t)((uint32_t)(1 << 29) - (uint32_t)hdx);
        x = add32(x, sat_shl(mt_srdhm(x, one_minus), 2));
    }
    return sat_shl(x, 1);
}

static inline int32_t clz32(uint32_t x)
{
    if (x == 0) {
        return 32;
    }
    int32_t n = 0;
#if defined(__GNUC__)
    n = __builtin_clz(x);
#else
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
#endif
    return n;
}

mt_status_t mt_softmax_s8(const mt_softmax_params_t *p, const int8_t *in, int8_t *out,
                          void *scratch)
{
    if (p == 0 || in == 0 || out == 0 || scratch == 0 || p->rows == 0 || p->depth == 0 ||
        p->input_left_shift < 0 || p->input_left_shift > 31 || p->diff_min > 0) {
        return MT_ERR_ARG;
    }
    int32_t *exps = (int32_t *)scratch;
    const uint32_t depth = p->depth;
    for (uint32_t r = 0; r < p->rows; ++r, in += depth, out += depth) {
        int32_t max = MT_INT8_MIN;
        for (uint32_t c = 0; c < depth; ++c) {
            max = mt_max32(max, in[c]);
        }
        int32_t sum = 0; /* Q12.19 */
        for (uint32_t c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)in[c] - max;
            int32_t e = 0;
            if (diff >= p->diff_min) {
                const int32_t scaled = mt_srdhm(
                    (int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
                e = exp_negative_q5(scaled);
                sum = add32(sum, mt_rdbpot(e, 12));
            }
            exps[c] = e;
        }
        /* GetReciprocal(sum, 12): sum is at least exp(0) = 2^19, so 1 <= headroom <= 12. */
        const int32_t headroom = clz32((uint32_t)sum);
        const int32_t bits_over_unit = 12 - headroom;
        const int32_t shifted = (int32_t)(((uint32_t)sum << headroom) - 0x80000000u);
        const int32_t scale = one_over_one_plus_x(shifted);
        const int32_t exponent = bits_over_unit + 31 - 8;
        if (exponent < 0 || exponent > 31) {
            return MT_ERR_ARG;
        }
        for (uint32_t c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)in[c] - max;
            int32_t v = MT_INT8_MIN;
            if (diff >= p->diff_min) {
                v = mt_rdbpot(mt_srdhm(scale, exps[c]), exponent) + MT_INT8_MIN;
                v = mt_clamp32(v, MT_INT8_MIN, MT_INT8_MAX);
            }
            out[c] = (int8_t)v;
        }
    }
    return MT_OK;
}
