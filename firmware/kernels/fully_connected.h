/* FULLY_CONNECTED int8 with per-channel requantization (a per-tensor layer repeats its
 * multiplier and shift), fused activation clamp, over one or more independent input rows.
 * Rows > 1 serve the 1x1 CONV_2D: the same weights applied to every position. */
#ifndef MT_FULLY_CONNECTED_H
#define MT_FULLY_CONNECTED_H

#include "mt_common.h"

typedef struct {
    uint32_t rows;     /* input rows, >= 1 */
    uint32_t in_len;   /* inputs per row, >= 1 */
    uint32_t out_len;  /* outputs per row, >= 1 */
    int32_t input_zp;  /* [-128, 127] */
    int32_t output_zp; /* [-128, 127] */
    int32_t act_min;   /* -128 <= act_min <= act_max <= 127 */
    int32_t act_max;
    /* Portable path (always required). */
    const int8_t *weights; /* [out_len][in_len] */
    const int32_t *bias;   /* [out_len] bias - input_zp * (sum of the row's weights) */
    const int32_t *mult;   /* [out_len] Q31 multipliers, [2^30, 2^31) or 0 */
    const int32_t *shift;  /* [out_len] TFLite shifts, [-31, 30], > 0 = left */
    /* DSP path (NULL = portable). A row's weights in groups of 4 (w0..w3) as the int16-pair
     * words (w0,w2),(w1,w3) (SXTB16 order), scaled by the output's 2^s (mt_requant_t), then
     * the last in_len % 4 weights (the tail) one scaled value per word: 2 (in_len / 4) +
     * in_len % 4 words per output. Outputs are stored in quads: for each group, the 2 words
     * of each of the 4 outputs, then for each tail input the 4 outputs' words; the last
     * out_len % 4 outputs follow one after the other. */
    const int32_t *weights_dsp;      /* [out_len * (2 (in_len / 4) + in_len % 4)] */
    const int32_t *bias_dsp;         /* [out_len] bias scaled by 2^s */
    const mt_requant_t *requant_dsp; /* [out_len] */
    int32_t dsp_right;               /* the layer's right shift E, [1, 31] */
    int32_t dsp_signed_fix;          /* 0 if act_min >= output_zp (see mt_requant_t) */
} mt_fc_params_t;

/* out[r][o] = clamp(output_zp + MultiplyByQuantizedMultiplier(
 *                   bias0[o] + sum_i w[o][i] * (in[r][i] - input_zp), mult[o], shift[o]))
 * in: [rows][in_len] int8 (rows at any alignment: ARMv7-M loads words unaligned); out:
 * [rows][out_len] int8, must not overlap in. */
mt_status_t mt_fully_connected_s8(const mt_fc_params_t *p, const int8_t *in, int8_t *out);

#if MT_USE_DSP
/* The DSP path only (MT_ERR_ARG without its data). */
mt_status_t mt_fully_connected_s8_dsp(const mt_fc_params_t *p, const int8_t *in, int8_t *out);
#endif

#endif
