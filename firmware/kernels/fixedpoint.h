/* gemmlowp's fixed-point transcendental functions as TFLite Micro's reference int8 LOGISTIC
 * and TANH evaluate them (Q0.31 results). Written from gemmlowp's definitions: fixed-point
 * additions are plain int32 additions there (done modulo 2^32 here; no overflow occurs for
 * the ranges involved), multiplications are SaturatingRoundingDoublingHighMul, rescalings
 * to fewer integer bits are saturating left shifts. */
#ifndef MT_FIXEDPOINT_H
#define MT_FIXEDPOINT_H

#include "mt_common.h"

static inline int32_t mt_fp_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t mt_fp_sub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* SaturatingRoundingMultiplyByPOT for an exponent e in [1, 30]: a saturating left shift. */
static inline int32_t mt_fp_sat_shl(int32_t x, int32_t e)
{
    const int32_t limit = (int32_t)((1u << (31 - e)) - 1u);
    if (x > limit) {
        return INT32_MAX;
    }
    if (x < -limit) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << e);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: a Taylor polynomial around -1/8. */
static inline int32_t mt_fp_exp_quarter(int32_t a)
{
    const int32_t exp_minus_eighth = 1895147668; /* exp(-1/8) in Q0.31 */
    const int32_t third = 715827883;             /* 1/3 */
    const int32_t x = mt_fp_add(a, 1 << 28);     /* a + 1/8 */
    const int32_t x2 = mt_srdhm(x, x);
    const int32_t x3 = mt_srdhm(x2, x);
    const int32_t x4 = mt_srdhm(x2, x2);
    const int32_t t = mt_rdbpot(mt_fp_add(mt_srdhm(mt_fp_add(mt_rdbpot(x4, 2), x3), third), x2),
                                1);
    return mt_fp_add(exp_minus_eighth, mt_srdhm(exp_minus_eighth, mt_fp_add(x, t)));
}

/* exp(a) for a <= 0 in Q(int_bits).(31 - int_bits), int_bits in [1, 5]; result Q0.31
 * (gemmlowp exp_on_negative_values: the fraction below 1/4 by the polynomial, each set bit
 * of the rest by a constant factor exp(-2^k)). */
static inline int32_t mt_fp_exp_negative(int32_t a, int32_t int_bits)
{
    static const int32_t factors[7] = {1672461947, 1302514674, 790015084, 290630308,
                                       39332535,   720401,     242}; /* exp(-2^k), k=-2..4 */
    if (a == 0) {
        return INT32_MAX;
    }
    const int32_t frac_bits = 31 - int_bits;
    const int32_t quarter = 1 << (frac_bits - 2);
    const int32_t a_mod = mt_fp_sub(a & (quarter - 1), quarter); /* in [-1/4, 0) */
    int32_t r = mt_fp_exp_quarter(mt_fp_sat_shl(a_mod, int_bits));
    const int32_t rest = mt_fp_sub(a_mod, a);
    for (int32_t k = -2; k <= 4 && k < int_bits; ++k) {
        if (rest & (1 << (frac_bits + k))) {
            r = mt_srdhm(r, factors[k + 2]);
        }
    }
    return r;
}

/* Newton-Raphson iterations of 1 / (2 d) in Q2.29 for d = (1 + a) / 2 (a in [0, 1), Q0.31);
 * returns x ~ 1 / (1 + a) in Q2.29. */
static inline int32_t mt_fp_recip_one_plus(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX; /* RoundingHalfSum(a, 1) */
    const int32_t half_den = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = mt_fp_add(1515870810, mt_srdhm(half_den, -1010580540)); /* 48/17 - 32/17 d */
    for (int32_t i = 0; i < 3; ++i) {
        const int32_t one_minus = mt_fp_sub(1 << 29, mt_srdhm(half_den, x));
        x = mt_fp_add(x, mt_fp_sat_shl(mt_srdhm(x, one_minus), 2));
    }
    return x;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31. */
static inline int32_t mt_fp_one_over_one_plus(int32_t a)
{
    return mt_fp_sat_shl(mt_fp_recip_one_plus(a), 1);
}

/* (1 - a) / (1 + a) for a in [0, 1], Q0.31. */
static inline int32_t mt_fp_one_minus_over_one_plus(int32_t a)
{
    return mt_fp_sat_shl(mt_fp_sub(mt_fp_recip_one_plus(a), 1 << 29), 2);
}

#endif
