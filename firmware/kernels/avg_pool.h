/* AVERAGE_POOL_2D, int8 in and out with the same quantization (TFLite's int8 spec). */
#ifndef MT_AVG_POOL_H
#define MT_AVG_POOL_H

#include "mt_common.h"

struct mt_avg_pool_params;
/* 1-D pooling loop specialized by the code generator (MT_AVG_POOL_DSP_1D). */
typedef void (*mt_avg_pool_fn)(const struct mt_avg_pool_params *p, const int8_t *in,
                               int8_t *out);

typedef struct mt_avg_pool_params {
    uint32_t in_h, in_w;         /* input height and width, >= 1 */
    uint32_t channels;           /* depth, >= 1 */
    uint32_t out_h, out_w;       /* output height and width, >= 1 */
    uint32_t filter_h, filter_w; /* window, >= 1 */
    uint32_t stride_h, stride_w; /* >= 1 */
    uint32_t pad_h, pad_w;       /* padding before row 0 / column 0 (0 for VALID) */
    int32_t act_min, act_max;    /* fused activation clamp, -128 <= act_min <= act_max <= 127 */
    /* DSP path for 1-D pooling along H (in_w = out_w = filter_w = 1, every window full, no
     * clamp, channels % 4 == 0, a power-of-two window <= 128): NULL or the specialized
     * loop. */
    mt_avg_pool_fn dsp_1d;
} mt_avg_pool_params_t;

/* in: [in_h][in_w][channels] int8 (NHWC, batch 1); out: [out_h][out_w][channels] int8.
 * Each output is the sum of the window's in-bounds inputs divided by their count, rounded
 * half away from zero as TFLite Micro's reference does with C integer division:
 * (sum > 0 ? sum + count/2 : sum - count/2) / count, then clamped to [act_min, act_max].
 * Returns MT_ERR_ARG if a window has no in-bounds input. */
mt_status_t mt_avg_pool_s8(const mt_avg_pool_params_t *p, const int8_t *in, int8_t *out);

#if MT_USE_DSP
/* The specialized 1-D loop only (MT_ERR_ARG without it). */
mt_status_t mt_avg_pool_s8_dsp(const mt_avg_pool_params_t *p, const int8_t *in, int8_t *out);

/* Windows of ROWS full rows of CH channels (compile-time constants), four channels per word
 * in int16 halves: the sums (SXTB16, SADD16) cannot overflow a half (ROWS <= 128), and the
 * reference's rounding division by ROWS = 2^LOG2, (sum + ROWS/2 - [sum <= 0]) >> LOG2 for
 * ROWS >= 2, is done per half: the [sum <= 0] term from the sign bits of sum - 1, the shift
 * as LOG2 SHADD16 with zero (each an exact floor halving). */
static inline __attribute__((always_inline)) void mt_avg_pool_1d_dsp(
    const struct mt_avg_pool_params *p, const int8_t *in, int8_t *out, const uint32_t rows,
    const uint32_t ch, const int32_t log2_rows)
{
    const int32_t halves = (int32_t)(rows / 2u) * 0x10001;
    const uint32_t step = p->stride_h * ch;
    for (uint32_t oy = p->out_h; oy != 0; --oy, in += step) {
#pragma GCC unroll 64
        for (uint32_t c = 0; c < ch; c += 4u) {
            int32_t even = 0, odd = 0;
#pragma GCC unroll 128
            for (uint32_t r = 0; r < rows; ++r) {
                const uint32_t w = mt_load_u32(in + r * ch + c);
                even = mt_sadd16(even, mt_sxtb16(w));
                odd = mt_sadd16(odd, mt_sxtb16_ror8(w));
            }
            const int32_t e1 = mt_ssub16(even, 0x10001), o1 = mt_ssub16(odd, 0x10001);
            even = mt_ssub16(mt_sadd16(even, halves),
                             (int32_t)(((uint32_t)e1 >> 15) & 0x10001u));
            odd = mt_ssub16(mt_sadd16(odd, halves), (int32_t)(((uint32_t)o1 >> 15) & 0x10001u));
#pragma GCC unroll 8
            for (int32_t k = 0; k < log2_rows; ++k) {
                even = mt_shadd16(even, 0);
                odd = mt_shadd16(odd, 0);
            }
            const uint32_t bytes =
                ((uint32_t)even & 0x00FF00FFu) | (((uint32_t)odd & 0x00FF00FFu) << 8);
            memcpy(out, &bytes, 4);
            out += 4;
        }
    }
}

/* Defines `static void NAME(...)`, an mt_avg_pool_fn for windows of ROWS = 2^LOG2 rows of CH
 * channels; store MT_AVG_POOL_DSP_REF(NAME) in dsp_1d. */
#define MT_AVG_POOL_DSP_1D(NAME, ROWS, CH, LOG2)                                           \
    static void NAME(const struct mt_avg_pool_params *p, const int8_t *in, int8_t *out)    \
    {                                                                                      \
        mt_avg_pool_1d_dsp(p, in, out, (ROWS), (CH), (LOG2));                              \
    }
#define MT_AVG_POOL_DSP_REF(NAME) NAME
#else
#define MT_AVG_POOL_DSP_1D(NAME, ROWS, CH, LOG2)
#define MT_AVG_POOL_DSP_REF(NAME) 0
#endif

#endif
