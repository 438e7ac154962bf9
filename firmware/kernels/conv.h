/* CONV_2D int8 with per-channel requantization, for an NHWC [1][in_len][1][in_ch] input and a
 * (taps x 1) kernel, stride 1, dilation 1: the 1-D convolution along H (time) the models use,
 * SAME or VALID padding, fused activation clamp. (1x1 convolutions are lowered to
 * FULLY_CONNECTED by the code generator.) */
#ifndef MT_CONV_H
#define MT_CONV_H

#include "mt_common.h"

struct mt_conv_params;

/* DSP block loop of one pair of output rows over all channel quads, specialized by the code
 * generator to the layer's window size with MT_CONV_DSP_QUADS (see below). */
typedef void (*mt_conv_quads_fn)(const struct mt_conv_params *p, const uint32_t *pairs,
                                 int8_t *out_row);

typedef struct mt_conv_params {
    uint32_t in_len;     /* input rows, >= 1 */
    uint32_t out_len;    /* output rows, = pad_before + in_len + pad_after - taps + 1, >= 1 */
    uint32_t in_ch;      /* input channels, >= 1 */
    uint32_t out_ch;     /* output channels (filters), >= 1 */
    uint32_t taps;       /* kernel height, >= 1 */
    uint32_t pad_before; /* padding rows before input row 0 (SAME: (taps-1)/2, VALID: 0) */
    int32_t input_zp;    /* [-128, 127] */
    int32_t output_zp;   /* [-128, 127] */
    int32_t act_min;     /* fused activation clamp: -128 <= act_min <= act_max <= 127 */
    int32_t act_max;
    /* Portable path (always required). */
    const int8_t *weights; /* [out_ch][taps][in_ch] (TFLite OHWI with W = 1) */
    const int32_t *bias;   /* [out_ch] bias - input_zp * (sum of the channel's weights) */
    const int32_t *mult;   /* [out_ch] Q31 multipliers, [2^30, 2^31) or 0 */
    const int32_t *shift;  /* [out_ch] TFLite shifts, [-31, 30], > 0 = left */
    /* DSP path (dsp = NULL: the portable path on DSP cores too; needs in_ch % 4 == 0).
     * The window of output row t (padded input rows t .. t+taps-1, taps * in_ch values) is
     * taken in groups of 4 (x0..x3) as the int16-pair words (x0,x2),(x1,x3): nw = taps *
     * in_ch / 2 words. A channel's weights follow the same order, as int16 scaled by the
     * channel's 2^s (mt_requant_t). dsp is one stream of int32 words read front to back:
     *   per quad of channels (out_ch / 4 of them): the 4 scaled biases; per window word j
     *     the weight words of the 4 channels; per channel mult, add (and neg if
     *     dsp_signed_fix);
     *   per remaining channel (out_ch % 4): its bias, nw weight words, mult, add (neg). */
    const int32_t *dsp;
    int32_t dsp_right;               /* the layer's right shift E, [1, 31] */
    int32_t dsp_signed_fix;          /* 0 if act_min >= output_zp (see mt_requant_t) */
    mt_conv_quads_fn dsp_quads;      /* quad loop: specialized (MT_CONV_DSP_QUADS) or
                                      * mt_conv_dsp_quads_generic; NULL = portable path */
} mt_conv_params_t;

/* Scratch bytes mt_conv_s8 needs: the zero-point-padded input (int8 on the portable path;
 * widened to int16 words, plus the row-pair interleaved windows, on the DSP path). */
static inline uint32_t mt_conv_scratch_bytes(const mt_conv_params_t *p, int dsp)
{
    const uint32_t rows = p->out_len + p->taps - 1u;
    if (!dsp) {
        return (rows * p->in_ch + 3u) & ~3u;
    }
    /* rows x in_ch int16 values, then per pair of output rows two windows of
     * taps x in_ch int16 values */
    return rows * p->in_ch * 2u + (p->out_len / 2u) * p->taps * p->in_ch * 4u;
}

/* in: [in_len][in_ch] int8; out: [out_len][out_ch] int8, must not overlap in or scratch;
 * scratch: mt_conv_scratch_bytes(p, path) bytes, word-aligned (path: 1 when the DSP data is
 * present and MT_USE_DSP, else 0).
 * out[t][f] = clamp(output_zp + MultiplyByQuantizedMultiplier(
 *                   bias0[f] + sum_k,c w[f][k][c] * (x[t - pad_before + k][c] - input_zp),
 *                   mult[f], shift[f]), act_min, act_max)
 * over the in-range rows, exactly as TFLite Micro's reference ConvPerChannel: the kernel
 * pads with input_zp, whose terms cancel against the folded bias. */
mt_status_t mt_conv_s8(const mt_conv_params_t *p, const int8_t *in, int8_t *out,
                       void *scratch);

#if MT_USE_DSP
/* The DSP path only (MT_ERR_ARG without its data): a build that calls only this links no
 * portable code or weights for the layer. */
mt_status_t mt_conv_s8_dsp(const mt_conv_params_t *p, const int8_t *in, int8_t *out,
                           void *scratch);
#endif

#if MT_USE_DSP
/* One output of the DSP path: requantization (mt_requant_t), saturation, activation clamp.
 * With const_right (a compile-time constant) the shift is part of the SSAT. */
static inline __attribute__((always_inline)) int8_t mt_conv_out(
    int32_t acc, int32_t mult, int32_t add, int32_t neg, int32_t fix, int32_t clamp,
    int32_t lo, int32_t hi, int32_t right, const int32_t const_right)
{
    const int32_t k = fix ? add - (neg & (acc >> 31)) : add;
    int32_t v;
    if (const_right) {
        v = mt_ssat8_asr(mt_smmla(acc, mult, k), const_right);
    } else {
        v = mt_ssat8(mt_smmla(acc, mult, k) >> right);
    }
    if (clamp) {
        v = mt_clamp32(v, lo, hi);
    }
    return (int8_t)v;
}

/* One step of the quad block: window word j of rows t and t+1 against the 4 channels. */
#define MT_CONV_QUAD_STEP()                \
    do {                                   \
        int32_t xa, xb, u, v;              \
        MT_LD2(y, xa, xb);                 \
        MT_LD2(w, u, v);                   \
        a00 = mt_smlad(xa, u, a00);        \
        a10 = mt_smlad(xb, u, a10);        \
        a01 = mt_smlad(xa, v, a01);        \
        a11 = mt_smlad(xb, v, a11);        \
        MT_LD2(w, u, v);                   \
        a02 = mt_smlad(xa, u, a02);        \
        a12 = mt_smlad(xb, u, a12);        \
        a03 = mt_smlad(xa, v, a03);        \
        a13 = mt_smlad(xb, v, a13);        \
    } while (0)

/* Requantize and store channel c of the block (rows t and t+1). */
#define MT_CONV_QUAD_OUT(c, r0, r1)                                                       \
    do {                                                                                  \
        int32_t m_, a_, n_ = 0;                                                           \
        MT_LD2(w, m_, a_);                                                                \
        if (fix) {                                                                        \
            n_ = *w++;                                                                    \
        }                                                                                 \
        o[c] = mt_conv_out(r0, m_, a_, n_, fix, clamp, lo, hi, right, const_right);       \
        o[fo + (c)] = mt_conv_out(r1, m_, a_, n_, fix, clamp, lo, hi, right, const_right); \
    } while (0)

/* Rows t and t+1 x four channels: `pairs` holds the two windows word by word (row t word j,
 * row t+1 word j, ...), so each step is one LDRD of input, two LDRD of the quad's weights
 * and eight SMLAD: 11 instructions per 16 MACs. With nw a compile-time constant the word
 * loop unrolls completely and the block fits the 14 allocatable registers. Returns the
 * stream position after the quads. */
static inline __attribute__((always_inline)) const int32_t *mt_conv_quads_dsp(
    const struct mt_conv_params *p, const uint32_t *pairs, int8_t *o, const uint32_t nw,
    const int32_t fix, const int32_t clamp, const int32_t const_right, const int32_t unrolled)
{
    const uint32_t fo = p->out_ch;
    const int32_t lo = p->act_min, hi = p->act_max, right = p->dsp_right;
    const int32_t *w = p->dsp;
    for (uint32_t k = fo / 4u; k != 0; --k) {
        const uint32_t *y = pairs;
        int32_t a00, a01, a02, a03;
        MT_LD2(w, a00, a01);
        MT_LD2(w, a02, a03);
        int32_t a10 = a00, a11 = a01, a12 = a02, a13 = a03;
        if (unrolled) {
#pragma GCC unroll 128
            for (uint32_t j = 0; j < nw; ++j) {
                MT_CONV_QUAD_STEP();
            }
        } else {
            for (uint32_t j = nw; j != 0; --j) {
                MT_CONV_QUAD_STEP();
            }
        }
        MT_CONV_QUAD_OUT(0, a00, a10);
        MT_CONV_QUAD_OUT(1, a01, a11);
        MT_CONV_QUAD_OUT(2, a02, a12);
        MT_CONV_QUAD_OUT(3, a03, a13);
        o += 4;
    }
    return w;
}

/* Defines `static void NAME(...)`, an mt_conv_quads_fn for windows of NW words, no
 * activation clamp, the given FIX (dsp_signed_fix) and RIGHT (dsp_right); the code generator
 * emits one per convolution layer and stores MT_CONV_DSP_REF(NAME) in dsp_quads (NULL
 * without DSP). */
#define MT_CONV_DSP_QUADS(NAME, NW, FIX, RIGHT)                                            \
    static void NAME(const struct mt_conv_params *p, const uint32_t *pairs, int8_t *o)     \
    {                                                                                      \
        (void)mt_conv_quads_dsp(p, pairs, o, (NW), (FIX), 0, (RIGHT), 1);                  \
    }
#define MT_CONV_DSP_REF(NAME) NAME

/* The quad loop for any window size, signed fix and activation clamp (run-time values);
 * linked only where the generated code refers to it. */
void mt_conv_dsp_quads_generic(const struct mt_conv_params *p, const uint32_t *pairs,
                               int8_t *o);
#else
#define MT_CONV_DSP_QUADS(NAME, NW, FIX, RIGHT)
#define MT_CONV_DSP_REF(NAME) 0
#endif

#endif
