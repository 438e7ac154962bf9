#include "avg_pool.h"

/* The reference's rounding division of a window sum by its count. A power-of-two count uses
 * shifts (Cortex-M0 has no divider): for sum > 0, (sum + count/2) / count is the floor, a
 * shift; for sum <= 0, (sum - count/2) / count truncates toward zero, which is
 * -((count/2 - sum) >> log2). The general case divides. */
static inline int32_t pool_divide(int32_t acc, int32_t count, int32_t log2_count)
{
    const int32_t half = count >> 1;
    if (log2_count >= 0) {
        return acc > 0 ? (acc + half) >> log2_count : -((half - acc) >> log2_count);
    }
    return acc > 0 ? (acc + half) / count : (acc - half) / count;
}

static int32_t log2_exact(int32_t v)
{
    if (v <= 0 || (v & (v - 1)) != 0) {
        return -1;
    }
    int32_t k = 0;
    while ((1 << k) != v) {
        ++k;
    }
    return k;
}

/* Division by a power-of-two count, as pool_divide: floor((sum + half - [sum <= 0]) / count)
 * equals the reference's truncating (sum -/+ half) / count for count >= 2. */
static inline int32_t pool_shift(int32_t acc, int32_t half, int32_t log2_count)
{
    return (acc + half + ((acc - 1) >> 31)) >> log2_count;
}

/* Four channels of one output: sums over the window (rows of `row_stride` bytes, `cols`
 * positions of `ch` bytes each), divided and clamped. */
static void pool4(const int8_t *first, uint32_t rows, uint32_t cols, uint32_t row_stride,
                  uint32_t ch, int32_t count, int32_t log2_count, int32_t lo, int32_t hi,
                  int8_t *o)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#if MT_USE_DSP
    /* Sums in int16 halves: at most 255 values of magnitude <= 128 per window (checked by
     * the caller), so no half overflows. (a0, a2) and (a1, a3) pairs, SXTB16 order. */
    int32_t even = 0, odd = 0;
    for (uint32_t r = 0; r < rows; ++r, first += row_stride) {
        const int8_t *v = first;
        for (uint32_t c = 0; c < cols; ++c, v += ch) {
            const uint32_t w = mt_load_u32(v);
            even = mt_sadd16(even, mt_sxtb16(w));
            odd = mt_sadd16(odd, mt_sxtb16_ror8(w));
        }
    }
    a0 = (int32_t)(int16_t)(uint16_t)((uint32_t)even & 0xFFFFu);
    a2 = even >> 16;
    a1 = (int32_t)(int16_t)(uint16_t)((uint32_t)odd & 0xFFFFu);
    a3 = odd >> 16;
#else
    for (uint32_t r = 0; r < rows; ++r, first += row_stride) {
        const int8_t *v = first;
        for (uint32_t c = 0; c < cols; ++c, v += ch) {
            a0 += v[0];
            a1 += v[1];
            a2 += v[2];
            a3 += v[3];
        }
    }
#endif
    if (log2_count >= 1) {
        const int32_t half = count >> 1;
        a0 = pool_shift(a0, half, log2_count);
        a1 = pool_shift(a1, half, log2_count);
        a2 = pool_shift(a2, half, log2_count);
        a3 = pool_shift(a3, half, log2_count);
    } else {
        a0 = pool_divide(a0, count, log2_count);
        a1 = pool_divide(a1, count, log2_count);
        a2 = pool_divide(a2, count, log2_count);
        a3 = pool_divide(a3, count, log2_count);
    }
    o[0] = (int8_t)mt_clamp32(a0, lo, hi);
    o[1] = (int8_t)mt_clamp32(a1, lo, hi);
    o[2] = (int8_t)mt_clamp32(a2, lo, hi);
    o[3] = (int8_t)mt_clamp32(a3, lo, hi);
}

mt_status_t mt_avg_pool_s8(const mt_avg_pool_params_t *p, const int8_t *in, int8_t *out)
{
    if (p == 0 || in == 0 || out == 0 || p->channels == 0 || p->filter_h == 0 ||
        p->filter_w == 0 || p->stride_h == 0 || p->stride_w == 0 || p->act_min > p->act_max ||
        p->act_min < MT_INT8_MIN || p->act_max > MT_INT8_MAX) {
        return MT_ERR_ARG;
    }
    const int32_t in_h = (int32_t)p->in_h, in_w = (int32_t)p->in_w;
    const uint32_t ch = p->channels;
    const int32_t lo = p->act_min, hi = p->act_max;
    const uint32_t row_stride = p->in_w * ch;
#if MT_USE_DSP
    if (p->dsp_1d != 0) {
        p->dsp_1d(p, in, out);
        return MT_OK;
    }
#endif
    for (uint32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = (int32_t)(oy * p->stride_h) - (int32_t)p->pad_h;
        const int32_t fy0 = mt_max32(0, -y0);
        const int32_t fy1 = mt_min32((int32_t)p->filter_h, in_h - y0);
        for (uint32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = (int32_t)(ox * p->stride_w) - (int32_t)p->pad_w;
            const int32_t fx0 = mt_max32(0, -x0);
            const int32_t fx1 = mt_min32((int32_t)p->filter_w, in_w - x0);
            if (fy1 <= fy0 || fx1 <= fx0) {
                return MT_ERR_ARG;
            }
            const uint32_t rows = (uint32_t)(fy1 - fy0), cols = (uint32_t)(fx1 - fx0);
            const int32_t count = (int32_t)(rows * cols);
            const int32_t log2_count = log2_exact(count);
            const int8_t *first =
                in + ((uint32_t)(y0 + fy0) * p->in_w + (uint32_t)(x0 + fx0)) * ch;
            int8_t *o = out + (oy * p->out_w + ox) * ch;
            uint32_t c = 0;
            if (count <= 255) {
                for (; c + 3u < ch; c += 4u) {
                    pool4(first + c, rows, cols, row_stride, ch, count, log2_count, lo, hi,
                          o + c);
                }
            }
            for (; c < ch; ++c) {
                int32_t acc = 0;
                const int8_t *row = first + c;
                for (uint32_t r = 0; r < rows; ++r, row += row_stride) {
                    const int8_t *v = row;
                    for (uint32_t k = 0; k < cols; ++k, v += ch) {
                        acc += *v;
                    }
                }
                acc = pool_divide(acc, count, log2_count);
                o[c] = (int8_t)mt_clamp32(acc, lo, hi);
            }
        }
    }
    return MT_OK;
}

#if MT_USE_DSP
mt_status_t mt_avg_pool_s8_dsp(const mt_avg_pool_params_t *p, const int8_t *in, int8_t *out)
{
    if (p == 0 || in == 0 || out == 0 || p->dsp_1d == 0) {
        return MT_ERR_ARG;
    }
    p->dsp_1d(p, in, out);
    return MT_OK;
}
#endif
