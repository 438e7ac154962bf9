#include "conv.h"

/* Portable path: pad the input with its zero point into scratch (int8), then every output is
 * one dot product of taps * in_ch contiguous values with the folded bias. */
static void conv_portable(const mt_conv_params_t *p, const int8_t *in, int8_t *out,
                          int8_t *padded)
{
    const uint32_t d = p->in_ch, n = p->taps * d, rows = p->out_len + p->taps - 1u;
    const uint32_t before = p->pad_before * d, body = p->in_len * d;
    memset(padded, (int)(int8_t)p->input_zp, before);
    memcpy(padded + before, in, body);
    memset(padded + before + body, (int)(int8_t)p->input_zp, rows * d - before - body);
    for (uint32_t t = 0; t < p->out_len; ++t) {
        const int8_t *x = padded + t * d;
        const int8_t *w = p->weights;
        for (uint32_t f = 0; f < p->out_ch; ++f, w += n) {
            int32_t acc = p->bias[f];
            for (uint32_t j = 0; j < n; ++j) {
                acc += (int32_t)w[j] * (int32_t)x[j];
            }
            acc = mt_mbqm(acc, p->mult[f], p->shift[f]) + p->output_zp;
            *out++ = (int8_t)mt_clamp32(acc, p->act_min, p->act_max);
        }
    }
}

#if MT_USE_DSP
/* Widen the padded input to int16 pairs in SXTB16 order: per group of 4 values x0..x3 the
 * words (x0,x2),(x1,x3). Padding rows hold input_zp. */
static void conv_widen(const mt_conv_params_t *p, const int8_t *in, uint32_t *xw)
{
    const uint32_t groups = p->in_ch / 4u, rows = p->out_len + p->taps - 1u;
    const uint32_t zp = (uint32_t)p->input_zp & 0xFFFFu;
    const uint32_t zp2 = zp | (zp << 16);
    for (uint32_t r = 0; r < rows; ++r) {
        const int32_t src = (int32_t)r - (int32_t)p->pad_before;
        if (src < 0 || src >= (int32_t)p->in_len) {
            for (uint32_t g = 0; g < groups; ++g) {
                *xw++ = zp2;
                *xw++ = zp2;
            }
            continue;
        }
        const uint32_t *x = (const uint32_t *)(const void *)(in + (uint32_t)src * p->in_ch);
        for (uint32_t g = 0; g < groups; ++g) {
            const uint32_t v = mt_load_u32(x + g);
            *xw++ = (uint32_t)mt_sxtb16(v);
            *xw++ = (uint32_t)mt_sxtb16_ror8(v);
        }
    }
}

/* Interleave the windows of rows t and t+1 word by word, for each pair of output rows. */
static void conv_pair_windows(const mt_conv_params_t *p, const uint32_t *xw, uint32_t *y)
{
    const uint32_t hw = p->in_ch / 2u, nw = p->taps * hw;
    for (uint32_t t = 0; t + 1u < p->out_len; t += 2u) {
        const uint32_t *a = xw + t * hw;
        const uint32_t *b = a + hw;
        for (uint32_t j = 0; j < nw; ++j) {
            *y++ = a[j];
            *y++ = b[j];
        }
    }
}

/* Channels that are not part of a quad (stream after the quads), for rows t and t+1 (pairs)
 * or the single last row (pairs == NULL, window in win). */
static void conv_tail(const mt_conv_params_t *p, const int32_t *w, const uint32_t *pairs,
                      const uint32_t *win, int8_t *o, int32_t fix, int32_t clamp)
{
    const uint32_t fo = p->out_ch, nw = p->taps * (p->in_ch / 2u);
    const int32_t lo = p->act_min, hi = p->act_max, r = p->dsp_right;
    for (uint32_t f = fo / 4u * 4u; f < fo; ++f) {
        int32_t a0 = *w++, a1 = a0;
        if (pairs != 0) {
            for (uint32_t j = 0; j < nw; ++j) {
                a0 = mt_smlad((int32_t)pairs[2u * j], w[j], a0);
                a1 = mt_smlad((int32_t)pairs[2u * j + 1u], w[j], a1);
            }
        } else {
            for (uint32_t j = 0; j < nw; ++j) {
                a0 = mt_smlad((int32_t)win[j], w[j], a0);
            }
        }
        w += nw;
        const int32_t m = w[0], add = w[1], neg = fix ? w[2] : 0;
        w += fix ? 3 : 2;
        o[f] = mt_conv_out(a0, m, add, neg, fix, clamp, lo, hi, r, 0);
        if (pairs != 0) {
            o[fo + f] = mt_conv_out(a1, m, add, neg, fix, clamp, lo, hi, r, 0);
        }
    }
}

/* The last row of an odd row count: each window word against the quads' weights. */
static void conv_last_row(const mt_conv_params_t *p, const uint32_t *win, int8_t *o,
                          int32_t fix, int32_t clamp)
{
    const uint32_t nw = p->taps * (p->in_ch / 2u);
    const int32_t lo = p->act_min, hi = p->act_max, r = p->dsp_right;
    const int32_t *w = p->dsp;
    for (uint32_t f = 0; f + 3u < p->out_ch; f += 4u) {
        int32_t acc[4] = {w[0], w[1], w[2], w[3]};
        w += 4;
        for (uint32_t j = 0; j < nw; ++j) {
            const int32_t x = (int32_t)win[j];
            acc[0] = mt_smlad(x, w[0], acc[0]);
            acc[1] = mt_smlad(x, w[1], acc[1]);
            acc[2] = mt_smlad(x, w[2], acc[2]);
            acc[3] = mt_smlad(x, w[3], acc[3]);
            w += 4;
        }
        for (uint32_t c = 0; c < 4u; ++c) {
            const int32_t m = w[0], add = w[1], neg = fix ? w[2] : 0;
            w += fix ? 3 : 2;
            o[f + c] = mt_conv_out(acc[c], m, add, neg, fix, clamp, lo, hi, r, 0);
        }
    }
    conv_tail(p, w, 0, win, o, fix, clamp);
}

void mt_conv_dsp_quads_generic(const struct mt_conv_params *p, const uint32_t *pairs,
                               int8_t *o)
{
    const uint32_t nw = p->taps * (p->in_ch / 2u);
    const int32_t clamp = p->act_min > MT_INT8_MIN || p->act_max < MT_INT8_MAX;
    if (p->dsp_signed_fix) { /* the stream holds the neg words only then */
        (void)mt_conv_quads_dsp(p, pairs, o, nw, 1, clamp, 0, 0);
    } else {
        (void)mt_conv_quads_dsp(p, pairs, o, nw, 0, clamp, 0, 0);
    }
}

static void conv_dsp(const mt_conv_params_t *p, const int8_t *in, int8_t *out, uint32_t *xw)
{
    const uint32_t hw = p->in_ch / 2u, len = p->out_len, fo = p->out_ch;
    const uint32_t rows = len + p->taps - 1u, nw = p->taps * hw;
    uint32_t *pairs = xw + rows * hw;
    const int32_t fix = p->dsp_signed_fix;
    const int32_t clamp = p->act_min > MT_INT8_MIN || p->act_max < MT_INT8_MAX;
    /* Where the remaining channels start in the stream. */
    const int32_t *tail = p->dsp + (fo / 4u) * (4u + 4u * nw + 4u * (fix ? 3u : 2u));
    conv_widen(p, in, xw);
    MT_COMPILER_BARRIER();
    conv_pair_windows(p, xw, pairs);
    MT_COMPILER_BARRIER();
    for (uint32_t t = 0; t + 1u < len; t += 2u, pairs += 2u * nw) {
        int8_t *o = out + t * fo;
        if (fo >= 4u) {
            p->dsp_quads(p, pairs, o);
        }
        conv_tail(p, tail, pairs, 0, o, fix, clamp);
    }
    if (len & 1u) {
        conv_last_row(p, xw + (len - 1u) * hw, out + (len - 1u) * fo, fix, clamp);
    }
}
#endif

static int conv_shape_ok(const mt_conv_params_t *p, const int8_t *in, const int8_t *out,
                         const void *scratch)
{
    return p != 0 && in != 0 && out != 0 && scratch != 0 && p->in_len != 0 &&
           p->out_len != 0 && p->in_ch != 0 && p->out_ch != 0 && p->taps != 0 &&
           p->pad_before + p->in_len <= p->out_len + p->taps - 1u && p->act_min <= p->act_max &&
           p->act_min >= MT_INT8_MIN && p->act_max <= MT_INT8_MAX;
}

#if MT_USE_DSP
static int conv_dsp_ok(const mt_conv_params_t *p, const int8_t *in)
{
    return p->dsp != 0 && (p->dsp_quads != 0 || p->out_ch < 4u) && p->in_ch % 4u == 0 &&
           ((uintptr_t)in & 3u) == 0 && p->dsp_right >= 1 && p->dsp_right <= 31;
}

mt_status_t mt_conv_s8_dsp(const mt_conv_params_t *p, const int8_t *in, int8_t *out,
                           void *scratch)
{
    if (!conv_shape_ok(p, in, out, scratch) || !conv_dsp_ok(p, in)) {
        return MT_ERR_ARG;
    }
    conv_dsp(p, in, out, (uint32_t *)scratch);
    return MT_OK;
}
#endif

mt_status_t mt_conv_s8(const mt_conv_params_t *p, const int8_t *in, int8_t *out, void *scratch)
{
    if (!conv_shape_ok(p, in, out, scratch)) {
        return MT_ERR_ARG;
    }
#if MT_USE_DSP
    if (conv_dsp_ok(p, in)) {
        conv_dsp(p, in, out, (uint32_t *)scratch);
        return MT_OK;
    }
#endif
    if (p->weights == 0 || p->bias == 0 || p->mult == 0 || p->shift == 0) {
        return MT_ERR_ARG;
    }
    conv_portable(p, in, out, (int8_t *)scratch);
    return MT_OK;
}
