/* MUL int8 with broadcasting (up to 4-D), and the fused MUL + SUM of attention pooling. */
#ifndef MT_MUL_H
#define MT_MUL_H

#include "mt_common.h"

typedef struct {
    uint32_t shape[4];   /* output shape, outermost first (shorter shapes padded with 1) */
    uint32_t stride1[4]; /* element stride of input 1 per output dimension (0 = broadcast) */
    uint32_t stride2[4]; /* element stride of input 2 per output dimension (0 = broadcast) */
    int32_t input1_zp, input2_zp, output_zp; /* [-128, 127] */
    int32_t mult;        /* Q31 multiplier of input1_scale * input2_scale / output_scale */
    int32_t shift;       /* TFLite shift, [-31, 30] */
    int32_t act_min, act_max;
} mt_mul_params_t;

/* out[i] = clamp(output_zp + MultiplyByQuantizedMultiplier(
 *               (in1[i1] - input1_zp) * (in2[i2] - input2_zp), mult, shift)), as TFLite
 * Micro's reference Mul / BroadcastMul4DSlow. out is dense in the output shape. */
mt_status_t mt_mul_s8(const mt_mul_params_t *p, const int8_t *in1, const int8_t *in2,
                      int8_t *out);

/* MUL of x [rows][cols] by a per-row scalar s [rows] (broadcast along cols), immediately
 * reduced by SUM over rows: out[c] = SUM-requantize(sum_r MUL-requantize(x[r][c], s[r])).
 * The product tensor is never stored. Each step is the reference's, so the bytes equal
 * MUL followed by SUM in TFLite Micro. */
struct mt_mul_sum_params;
typedef void (*mt_mul_sum_fn)(const struct mt_mul_sum_params *p, const int8_t *x,
                              const int32_t *factors, int8_t *out);

typedef struct mt_mul_sum_params {
    uint32_t rows, cols;       /* >= 1 */
    int32_t x_zp, s_zp;        /* input zero points */
    int32_t mul_zp;            /* zero point of the (virtual) MUL output */
    int32_t mul_mult, mul_shift, mul_act_min, mul_act_max;
    int32_t sum_zp;            /* SUM output zero point */
    int32_t sum_mult, sum_shift; /* Q31 multiplier and shift of mul_scale / sum_scale */
    /* DSP path (dsp_right = 0: portable; needs cols % 4 == 0 and no MUL activation). Per row
     * the factor B = 2^dsp_scale (s[r] - s_zp) (an int16) and C = -x_zp B, so that
     * SMLABB(x, B, C) = 2^dsp_scale (x - x_zp)(s[r] - s_zp), requantized by dsp_q and
     * dsp_right as in mt_requant_t. */
    int32_t dsp_scale;
    int32_t dsp_right;
    mt_requant_t dsp_q;
    int32_t dsp_signed_fix;    /* 0 if no product can be negative */
    mt_mul_sum_fn dsp_fn;      /* specialized loop (MT_MUL_SUM_DSP) or mt_mul_sum_dsp_generic;
                                * NULL = portable path */
    /* The SUM requantization in the same form: (sum - rows * mul_zp) scaled by
     * 2^dsp_sum_scale, then dsp_sum_q and dsp_sum_right (mt_requant_t, sign term kept). */
    int32_t dsp_sum_scale;
    int32_t dsp_sum_right;
    mt_requant_t dsp_sum_q;
} mt_mul_sum_params_t;

/* Scratch bytes (the per-row factors of the DSP path). */
static inline uint32_t mt_mul_sum_scratch_bytes(const mt_mul_sum_params_t *p)
{
    return p->rows * 8u;
}

/* x: [rows][cols] int8 (word-aligned for the DSP path); s: [rows]; out: [cols]; scratch:
 * mt_mul_sum_scratch_bytes(p), word-aligned. */
mt_status_t mt_mul_sum_s8(const mt_mul_sum_params_t *p, const int8_t *x, const int8_t *s,
                          int8_t *out, void *scratch);

#if MT_USE_DSP
/* The DSP path only (MT_ERR_ARG without its data). */
mt_status_t mt_mul_sum_s8_dsp(const mt_mul_sum_params_t *p, const int8_t *x, const int8_t *s,
                              int8_t *out, void *scratch);
#endif

/* The SUM requantization of one column sum. */
static inline int8_t mt_mul_sum_out(const struct mt_mul_sum_params *p, int32_t acc)
{
    const int32_t shifted =
        (int32_t)((uint32_t)acc - (uint32_t)((int32_t)p->rows * p->mul_zp));
    const int32_t v = mt_mbqm(shifted, p->sum_mult, p->sum_shift) + p->sum_zp;
    return (int8_t)mt_clamp32(v, MT_INT8_MIN, MT_INT8_MAX);
}

#if MT_USE_DSP
/* The SUM requantization on the DSP path (see dsp_sum_q). */
static inline int8_t mt_mul_sum_out_dsp(const struct mt_mul_sum_params *p, int32_t acc)
{
    const int32_t x = (int32_t)((uint32_t)acc - (uint32_t)((int32_t)p->rows * p->mul_zp));
    const int32_t a = (int32_t)((uint32_t)x << p->dsp_sum_scale);
    return (int8_t)mt_ssat8(mt_requant_dsp(a, &p->dsp_sum_q, p->dsp_sum_right, 1));
}

/* One MUL output on the DSP path (before it is summed). */
static inline __attribute__((always_inline)) int32_t mt_mul_q(int32_t v,
                                                              const struct mt_mul_sum_params *p,
                                                              int32_t fix, int32_t right,
                                                              const int32_t const_right)
{
    const int32_t k = fix ? p->dsp_q.add - (p->dsp_q.neg & (v >> 31)) : p->dsp_q.add;
    const int32_t r = mt_smmla(v, p->dsp_q.mult, k);
    return const_right ? mt_ssat8_asr(r, const_right) : mt_ssat8(r >> right);
}

/* Four columns per pass, their sums in registers; per row one word of x, the row's factors
 * (one LDRD) and per column SMLAxB, SMMLA, SSAT, ADD. With cols, right and fix compile-time
 * constants (MT_MUL_SUM_DSP) the row stride is an immediate and no register is spilled. */
static inline __attribute__((always_inline)) void mt_mul_sum_dsp_body(
    const struct mt_mul_sum_params *p, const int8_t *x, const int32_t *factors, int8_t *out,
    const uint32_t cols, const int32_t fix, const int32_t const_right)
{
    const int32_t right = p->dsp_right;
    const int32_t *fend = factors + 2u * p->rows;
    for (uint32_t c = 0; c < cols; c += 4u) {
        const int8_t *xc = x + c;
        const int32_t *f = factors;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        do {
            const uint32_t v = mt_load_u32(xc);
            xc += cols;
            int32_t b, k;
            MT_LD2(f, b, k);
            const int32_t even = mt_sxtb16(v), odd = mt_sxtb16_ror8(v);
            a0 += mt_mul_q(mt_smlabb(even, b, k), p, fix, right, const_right);
            a1 += mt_mul_q(mt_smlabb(odd, b, k), p, fix, right, const_right);
            a2 += mt_mul_q(mt_smlatb(even, b, k), p, fix, right, const_right);
            a3 += mt_mul_q(mt_smlatb(odd, b, k), p, fix, right, const_right);
        } while (f != fend);
        out[c] = mt_mul_sum_out_dsp(p, a0);
        out[c + 1u] = mt_mul_sum_out_dsp(p, a1);
        out[c + 2u] = mt_mul_sum_out_dsp(p, a2);
        out[c + 3u] = mt_mul_sum_out_dsp(p, a3);
    }
}

/* Defines `static void NAME(...)`, an mt_mul_sum_fn for COLS columns, the given RIGHT
 * (dsp_right) and FIX (dsp_signed_fix); store MT_MUL_SUM_DSP_REF(NAME) in dsp_fn. */
#define MT_MUL_SUM_DSP(NAME, COLS, RIGHT, FIX)                                              \
    static void NAME(const struct mt_mul_sum_params *p, const int8_t *x,                    \
                     const int32_t *factors, int8_t *out)                                   \
    {                                                                                       \
        mt_mul_sum_dsp_body(p, x, factors, out, (COLS), (FIX), (RIGHT));                    \
    }
#define MT_MUL_SUM_DSP_REF(NAME) NAME

/* The DSP loop for any column count and sign (run-time values); linked only where the
 * generated code refers to it. */
void mt_mul_sum_dsp_generic(const struct mt_mul_sum_params *p, const int8_t *x,
                            const int32_t *factors, int8_t *out);
#else
#define MT_MUL_SUM_DSP(NAME, COLS, RIGHT, FIX)
#define MT_MUL_SUM_DSP_REF(NAME) 0
#endif

#endif
