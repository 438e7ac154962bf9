#include "fully_connected.h"

static void fc_portable(const mt_fc_params_t *p, const int8_t *in, int8_t *out)
{
    const uint32_t n = p->in_len;
    for (uint32_t r = 0; r < p->rows; ++r, in += n, out += p->out_len) {
        const int8_t *w = p->weights;
        for (uint32_t o = 0; o < p->out_len; ++o, w += n) {
            int32_t acc = p->bias[o];
            for (uint32_t i = 0; i < n; ++i) {
                acc += (int32_t)w[i] * (int32_t)in[i];
            }
            acc = mt_mbqm(acc, p->mult[o], p->shift[o]) + p->output_zp;
            out[o] = (int8_t)mt_clamp32(acc, p->act_min, p->act_max);
        }
    }
}

#if MT_USE_DSP
static inline int8_t fc_out(int32_t acc, const mt_requant_t *q, int32_t right, int32_t fix,
                            int32_t clamp, int32_t lo, int32_t hi)
{
    int32_t v = mt_ssat8(mt_requant_dsp(acc, q, right, fix));
    if (clamp) {
        v = mt_clamp32(v, lo, hi);
    }
    return (int8_t)v;
}

/* One row: four outputs per pass (each input word is loaded and sign-extended once for four
 * outputs: 15 instructions per 16 MACs), then the remaining outputs one at a time. The last
 * in_len % 4 inputs (the tail) multiply one scaled weight each. */
static void fc_dsp_row(const mt_fc_params_t *p, const int8_t *in, int8_t *out, int32_t fix,
                       int32_t clamp)
{
    const uint32_t groups = p->in_len / 4u, tail = p->in_len & 3u;
    const int8_t *in_tail = in + 4u * groups;
    const int32_t lo = p->act_min, hi = p->act_max, r = p->dsp_right;
    const int32_t *w = p->weights_dsp;
    const int32_t *b = p->bias_dsp;
    const mt_requant_t *q = p->requant_dsp;
    uint32_t o = 0;
    for (; o + 3u < p->out_len; o += 4u, b += 4, q += 4) {
        int32_t a0 = b[0], a1 = b[1], a2 = b[2], a3 = b[3];
        const int8_t *x = in;
        for (uint32_t g = groups; g != 0; --g) {
            const uint32_t v = mt_load_u32(x);
            x += 4;
            const int32_t x0 = mt_sxtb16(v), x1 = mt_sxtb16_ror8(v);
            int32_t u, s;
            MT_LD2(w, u, s);
            a0 = mt_smlad(x0, u, a0);
            a0 = mt_smlad(x1, s, a0);
            MT_LD2(w, u, s);
            a1 = mt_smlad(x0, u, a1);
            a1 = mt_smlad(x1, s, a1);
            MT_LD2(w, u, s);
            a2 = mt_smlad(x0, u, a2);
            a2 = mt_smlad(x1, s, a2);
            MT_LD2(w, u, s);
            a3 = mt_smlad(x0, u, a3);
            a3 = mt_smlad(x1, s, a3);
        }
        for (uint32_t t = 0; t < tail; ++t, w += 4) {
            const int32_t xv = in_tail[t];
            a0 += xv * w[0];
            a1 += xv * w[1];
            a2 += xv * w[2];
            a3 += xv * w[3];
        }
        out[o] = fc_out(a0, q, r, fix, clamp, lo, hi);
        out[o + 1u] = fc_out(a1, q + 1, r, fix, clamp, lo, hi);
        out[o + 2u] = fc_out(a2, q + 2, r, fix, clamp, lo, hi);
        out[o + 3u] = fc_out(a3, q + 3, r, fix, clamp, lo, hi);
    }
    for (; o < p->out_len; ++o, ++b, ++q) {
        int32_t a0 = b[0];
        const int8_t *x = in;
        for (uint32_t g = groups; g != 0; --g) {
            const uint32_t v = mt_load_u32(x);
            x += 4;
            int32_t u, s;
            MT_LD2(w, u, s);
            a0 = mt_smlad(mt_sxtb16(v), u, a0);
            a0 = mt_smlad(mt_sxtb16_ror8(v), s, a0);
        }
        for (uint32_t t = 0; t < tail; ++t) {
            a0 += (int32_t)in_tail[t] * *w++;
        }
        out[o] = fc_out(a0, q, r, fix, clamp, lo, hi);
    }
}

/* Two rows per pass for layers with fewer than four outputs (a 1x1 convolution to one
 * channel): each weight word pair serves both rows. */
static void fc_dsp_rows2(const mt_fc_params_t *p, const int8_t *in, int8_t *out, int32_t fix,
                         int32_t clamp)
{
    const uint32_t groups = p->in_len / 4u, tail = p->in_len & 3u, n = p->in_len;
    const uint32_t m = p->out_len, stride = 2u * groups + tail; /* weight words per output */
    const int32_t lo = p->act_min, hi = p->act_max, rs = p->dsp_right;
    for (uint32_t o = 0; o < m; ++o) {
        const int32_t *wo = p->weights_dsp + o * stride;
        const mt_requant_t *q = p->requant_dsp + o;
        const int32_t b = p->bias_dsp[o];
        for (uint32_t r = 0; r + 1u < p->rows; r += 2u) {
            const int8_t *x = in + r * n, *y = in + (r + 1u) * n;
            const int32_t *w = wo;
            int32_t a0 = b, a1 = b;
            for (uint32_t g = groups; g != 0; --g) {
                const uint32_t v = mt_load_u32(x), z = mt_load_u32(y);
                x += 4;
                y += 4;
                int32_t u, s;
                MT_LD2(w, u, s);
                a0 = mt_smlad(mt_sxtb16(v), u, a0);
                a1 = mt_smlad(mt_sxtb16(z), u, a1);
                a0 = mt_smlad(mt_sxtb16_ror8(v), s, a0);
                a1 = mt_smlad(mt_sxtb16_ror8(z), s, a1);
            }
            for (uint32_t t = 0; t < tail; ++t, ++w) {
                a0 += (int32_t)x[t] * *w;
                a1 += (int32_t)y[t] * *w;
            }
            out[r * m + o] = fc_out(a0, q, rs, fix, clamp, lo, hi);
            out[(r + 1u) * m + o] = fc_out(a1, q, rs, fix, clamp, lo, hi);
        }
    }
    if (p->rows & 1u) {
        const uint32_t r = p->rows - 1u;
        for (uint32_t o = 0; o < m; ++o) {
            const int32_t *w = p->weights_dsp + o * stride;
            const int8_t *x = in + r * n;
            int32_t a0 = p->bias_dsp[o];
            for (uint32_t g = groups; g != 0; --g) {
                const uint32_t v = mt_load_u32(x);
                x += 4;
                int32_t u, s;
                MT_LD2(w, u, s);
                a0 = mt_smlad(mt_sxtb16(v), u, a0);
                a0 = mt_smlad(mt_sxtb16_ror8(v), s, a0);
            }
            for (uint32_t t = 0; t < tail; ++t) {
                a0 += (int32_t)x[t] * *w++;
            }
            out[r * m + o] = fc_out(a0, p->requant_dsp + o, rs, fix, clamp, lo, hi);
        }
    }
}
#endif

static int fc_shape_ok(const mt_fc_params_t *p, const int8_t *in, const int8_t *out)
{
    return p != 0 && in != 0 && out != 0 && p->rows != 0 && p->in_len != 0 && p->out_len != 0 &&
           p->act_min <= p->act_max && p->act_min >= MT_INT8_MIN && p->act_max <= MT_INT8_MAX;
}

#if MT_USE_DSP
static int fc_dsp_ok(const mt_fc_params_t *p, const int8_t *in)
{
    (void)in;
    return p->weights_dsp != 0 && p->bias_dsp != 0 && p->requant_dsp != 0 &&
           p->dsp_right >= 1 && p->dsp_right <= 31;
}

static void fc_dsp(const mt_fc_params_t *p, const int8_t *in, int8_t *out)
{
    const int32_t fix = p->dsp_signed_fix;
    const int32_t clamp = p->act_min > MT_INT8_MIN || p->act_max < MT_INT8_MAX;
    if (p->out_len < 4u && p->rows > 1u) {
        fc_dsp_rows2(p, in, out, fix, clamp);
    } else {
        for (uint32_t r = 0; r < p->rows; ++r) {
            fc_dsp_row(p, in + r * p->in_len, out + r * p->out_len, fix, clamp);
        }
    }
}

mt_status_t mt_fully_connected_s8_dsp(const mt_fc_params_t *p, const int8_t *in, int8_t *out)
{
    if (!fc_shape_ok(p, in, out) || !fc_dsp_ok(p, in)) {
        return MT_ERR_ARG;
    }
    fc_dsp(p, in, out);
    return MT_OK;
}
#endif

mt_status_t mt_fully_connected_s8(const mt_fc_params_t *p, const int8_t *in, int8_t *out)
{
    if (!fc_shape_ok(p, in, out)) {
        return MT_ERR_ARG;
    }
#if MT_USE_DSP
    if (fc_dsp_ok(p, in)) {
        fc_dsp(p, in, out);
        return MT_OK;
    }
#endif
    if (p->weights == 0 || p->bias == 0 || p->mult == 0 || p->shift == 0) {
        return MT_ERR_ARG;
    }
    fc_portable(p, in, out);
    return MT_OK;
}
