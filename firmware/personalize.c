/* On-device personalization of the head: see personalize.h and docs/personalization.md.
 * This file owns the head's arithmetic: its state (init, reset, config), the labels, the
 * scores, the SGD step, imprinting and snapshots. The blob it is saved as and loaded from,
 * and the CRC-32, are head_blob.c's.
 * Every formula mirrors toolchain/mcutext/device/personalize.py (HeadSimulator) operation by
 * operation, in float32, so that the two agree within float rounding. */
#include "personalize.h"

#include <math.h>
#include <string.h>

#include "head_blob.h"

/* --- state --------------------------------------------------------------------------------- */
size_t mt_head_sizeof(void)
{
    return sizeof(mt_head_t);
}

static uint32_t n_new(const mt_head_t *hd)
{
    return (uint32_t)hd->c_max - hd->c0;
}

/* The update count saturates at 2^32 - 1: a wrap to 0 would silently bring the factory
 * model back (classify uses the float head while updates > 0). */
static void count_update(mt_head_t *hd)
{
    if (hd->updates != UINT32_MAX)
        hd->updates++;
}

/* The pull target of row c (its factory weights, or its imprint for an added row). */
static const float *w0_row(const mt_head_t *hd, uint32_t c)
{
    return c < hd->c0 ? hd->factory->weights + (size_t)c * hd->h
                      : hd->w0_new + (size_t)(c - hd->c0) * hd->h;
}

static void clear_row(mt_head_t *hd, uint32_t c)
{
    memset(hd->w + (size_t)c * hd->h, 0, sizeof(float) * hd->h);
    hd->b[c] = 0.0f;
#if MT_HEAD_MOMENTUM
    memset(hd->v + (size_t)c * hd->h, 0, sizeof(float) * hd->h);
    hd->vb[c] = 0.0f;
#endif
}

void mt_head_reset(mt_head_t *hd)
{
    const mt_head_factory_t *f = hd->factory;
    for (uint32_t c = 0; c < hd->c_max; ++c) {
        clear_row(hd, c);
        hd->flags[c] = c < hd->c0 ? MT_HEAD_ROW_ACTIVE : 0u;
    }
    memcpy(hd->w, f->weights, sizeof(float) * hd->c0 * hd->h);
    memcpy(hd->b, f->bias, sizeof(float) * hd->c0);
    memset(hd->w0_new, 0, sizeof hd->w0_new);
    memset(hd->names, 0, sizeof hd->names);
    hd->updates = 0;
}

int mt_head_init(mt_head_t *hd, const mt_head_factory_t *f)
{
    if (!hd || !f || !f->weights || !f->bias || !f->labels || f->num_classes == 0 ||
        f->feature_dim == 0 || f->feature_dim > MT_HEAD_MAX_FEATURES ||
        f->max_new_labels > MT_HEAD_MAX_NEW_LABELS ||
        (uint32_t)f->num_classes + f->max_new_labels > MT_HEAD_MAX_CLASSES)
        return MT_HEAD_EINVAL;
    memset(hd, 0, sizeof *hd);
    hd->factory = f;
    hd->c0 = f->num_classes;
    hd->c_max = (uint16_t)(f->num_classes + f->max_new_labels);
    hd->h = f->feature_dim;
    hd->lr = 0.05f;
    hd->factory_crc = mt_head_factory_crc(hd);
    mt_head_reset(hd);
    return MT_HEAD_OK;
}

void mt_head_config(mt_head_t *hd, float lr, float momentum, float l2)
{
    hd->lr = lr;
#if MT_HEAD_MOMENTUM
    hd->momentum = momentum;
#else
    (void)momentum; /* built without momentum buffers: plain SGD */
    hd->momentum = 0.0f;
#endif
    hd->l2 = l2;
}

/* --- labels -------------------------------------------------------------------------------- */
int mt_head_label_valid(const char *name)
{
    if (!name)
        return 0;
    size_t n = 0;
    for (; name[n]; ++n)
        if (n >= MT_HEAD_NAME_BYTES - 1 || name[n] < 0x21 || name[n] > 0x7e)
            return 0;
    return n > 0;
}

uint32_t mt_head_num_rows(const mt_head_t *hd)
{
    return hd->c_max;
}

const char *mt_head_label(const mt_head_t *hd, uint32_t c)
{
    if (c >= hd->c_max || !(hd->flags[c] & MT_HEAD_ROW_ACTIVE))
        return NULL;
    return c < hd->c0 ? hd->factory->labels[c] : hd->names[c - hd->c0];
}

int mt_head_row_scored(const mt_head_t *hd, uint32_t c)
{
    return c < hd->c_max && hd->flags[c] == MT_HEAD_ROW_ACTIVE;
}

int mt_head_find_label(const mt_head_t *hd, const char *name, uint32_t *index)
{
    if (!name)
        return MT_HEAD_EINVAL;
    for (uint32_t c = 0; c < hd->c_max; ++c) {
        const char *s = mt_head_label(hd, c);
        if (s && strcmp(s, name) == 0) {
            if (index)
                *index = c;
            return MT_HEAD_OK;
        }
    }
    return MT_HEAD_ENOLABEL;
}

int mt_head_add_label(mt_head_t *hd, const char *name, uint32_t *index)
{
    if (!mt_head_label_valid(name))
        return MT_HEAD_ENAME;
    if (mt_head_find_label(hd, name, NULL) == MT_HEAD_OK)
        return MT_HEAD_EEXIST;
    for (uint32_t c = hd->c0; c < hd->c_max; ++c) {
        if (hd->flags[c] & MT_HEAD_ROW_ACTIVE)
            continue;
        uint32_t j = c - hd->c0;
        clear_row(hd, c);
        memset(hd->w0_new + (size_t)j * hd->h, 0, sizeof(float) * hd->h);
        memset(hd->names[j], 0, MT_HEAD_NAME_BYTES);
        strcpy(hd->names[j], name); /* length checked by mt_head_label_valid */
        hd->flags[c] = MT_HEAD_ROW_ACTIVE | MT_HEAD_ROW_FRESH;
        if (index)
            *index = c;
        return MT_HEAD_OK;
    }
    return MT_HEAD_EFULL;
}

static int find_added(mt_head_t *hd, const char *name, uint32_t *c)
{
    int st = mt_head_find_label(hd, name, c);
    if (st != MT_HEAD_OK)
        return st;
    return *c < hd->c0 ? MT_HEAD_EFACTORY : MT_HEAD_OK;
}

int mt_head_remove_label(mt_head_t *hd, const char *name)
{
    uint32_t c;
    int st = find_added(hd, name, &c);
    if (st != MT_HEAD_OK)
        return st;
    hd->flags[c] = 0;
    clear_row(hd, c); /* removed rows are all zero, so equal states serialize equally */
    memset(hd->w0_new + (size_t)(c - hd->c0) * hd->h, 0, sizeof(float) * hd->h);
    memset(hd->names[c - hd->c0], 0, MT_HEAD_NAME_BYTES);
    return MT_HEAD_OK;
}

int mt_head_rename_label(mt_head_t *hd, const char *name, const char *new_name)
{
    uint32_t c;
    int st = find_added(hd, name, &c);
    if (st != MT_HEAD_OK)
        return st;
    if (!mt_head_label_valid(new_name))
        return MT_HEAD_ENAME;
    if (mt_head_find_label(hd, new_name, NULL) == MT_HEAD_OK)
        return strcmp(name, new_name) == 0 ? MT_HEAD_OK : MT_HEAD_EEXIST;
    memset(hd->names[c - hd->c0], 0, MT_HEAD_NAME_BYTES);
    strcpy(hd->names[c - hd->c0], new_name);
    return MT_HEAD_OK;
}

/* --- inference ----------------------------------------------------------------------------- */
static void dequantize(mt_head_t *hd, const int8_t *q, float scale, int32_t zp)
{
    for (uint32_t k = 0; k < hd->h; ++k)
        hd->f[k] = (float)((int32_t)q[k] - zp) * scale;
}

/* z_c = (sum_h W[c,h] f_h) + b_c for scored rows, -inf otherwise; returns the argmax. */
static uint32_t score_rows(mt_head_t *hd, const float *f)
{
    uint32_t best = 0;
    float top = -INFINITY;
    for (uint32_t c = 0; c < hd->c_max; ++c) {
        if (!mt_head_row_scored(hd, c)) {
            hd->z[c] = -INFINITY;
            continue;
        }
        const float *w = hd->w + (size_t)c * hd->h;
        float acc = 0.0f;
        for (uint32_t k = 0; k < hd->h; ++k)
            acc += w[k] * f[k];
        hd->z[c] = acc + hd->b[c];
        if (hd->z[c] > top) {
            top = hd->z[c];
            best = c;
        }
    }
    return best;
}

int mt_head_scores_f32(mt_head_t *hd, const float *f, float *scores, uint32_t *best)
{
    if (!hd || !f)
        return MT_HEAD_EINVAL;
    uint32_t b = score_rows(hd, f);
    if (scores)
        memcpy(scores, hd->z, sizeof(float) * hd->c_max);
    if (best)
        *best = b;
    return MT_HEAD_OK;
}

int mt_head_scores(mt_head_t *hd, const int8_t *q, float scale, int32_t zero_point,
                   float *scores, uint32_t *best)
{
    if (!hd || !q)
        return MT_HEAD_EINVAL;
    dequantize(hd, q, scale, zero_point);
    return mt_head_scores_f32(hd, hd->f, scores, best);
}

/* --- learning ------------------------------------------------------------------------------ */
/* |v - feature mean| (sub_mean) or |v|, summed over h sequentially. */
static float centered_norm(const mt_head_t *hd, const float *v, int sub_mean)
{
    const float *mu = hd->factory->feature_mean;
    float nn = 0.0f;
    for (uint32_t k = 0; k < hd->h; ++k) {
        float d = v[k] - (sub_mean && mu ? mu[k] : 0.0f);
        nn += d * d;
    }
    return sqrtf(nn);
}

/* Weight imprinting: row c = s d / |d| for a direction d around the feature mean (one
 * example: d = f - mean; `head imprint`: d = the sum of its examples' unit vectors
 * (f_i - mean) / |f_i - mean|), s = mean norm of the factory rows,
 * b_c = mean over the factory rows of (b_r + W_r . mean) - W[c] . mean (with no feature mean:
 * the mean factory bias; for a prototype head, whose b_r = -W_r . mean: -W[c] . mean, the
 * factory rows' own form). The row's L2 pull target is set to W[c] (biases have no L2 term,
 * so no bias target is kept). `sub_mean`: d = v - mean, else d = v. Returns MT_HEAD_ERANGE,
 * and changes nothing, when a value would not be finite (an imported head of extreme
 * values). With `write` 0 it only checks; otherwise it writes W[c] and b_c, and the caller
 * commits the imprint (imprint_commit) once nothing else can refuse it. */
static int imprint_row(mt_head_t *hd, uint32_t c, const float *v, int sub_mean, int write)
{
    const float *mu = hd->factory->feature_mean;
    float s = 0.0f, bm = 0.0f;
    for (uint32_t r = 0; r < hd->c0; ++r) {
        const float *w = hd->w + (size_t)r * hd->h;
        float ss = 0.0f, wm = 0.0f;
        for (uint32_t k = 0; k < hd->h; ++k) {
            ss += w[k] * w[k];
            wm += w[k] * (mu ? mu[k] : 0.0f);
        }
        s += sqrtf(ss);
        bm += hd->b[r] + wm;
    }
    s /= (float)hd->c0;
    bm /= (float)hd->c0;
    const float n = centered_norm(hd, v, sub_mean);
    float *w = hd->w + (size_t)c * hd->h;
    float dot = 0.0f;
    for (uint32_t k = 0; k < hd->h; ++k) { /* dry run: the same values, checked */
        float d = v[k] - (sub_mean && mu ? mu[k] : 0.0f);
        float x = n > 0.0f ? s * d / n : 0.0f;
        if (!isfinite(x))
            return MT_HEAD_ERANGE;
        dot += x * (mu ? mu[k] : 0.0f);
    }
    if (!isfinite(bm - dot))
        return MT_HEAD_ERANGE;
    if (!write)
        return MT_HEAD_OK;
    dot = 0.0f;
    for (uint32_t k = 0; k < hd->h; ++k) {
        float d = v[k] - (sub_mean && mu ? mu[k] : 0.0f);
        w[k] = n > 0.0f ? s * d / n : 0.0f;
        dot += w[k] * (mu ? mu[k] : 0.0f);
    }
    hd->b[c] = bm - dot;
    return MT_HEAD_OK;
}

/* The imprinted row becomes its own pull target and is scored from now on. */
static void imprint_commit(mt_head_t *hd, uint32_t c)
{
    memcpy(hd->w0_new + (size_t)(c - hd->c0) * hd->h, hd->w + (size_t)c * hd->h,
           sizeof(float) * hd->h);
    hd->flags[c] = MT_HEAD_ROW_ACTIVE;
}

int mt_head_imprint_add(mt_head_t *hd, float *acc, const int8_t *q, float scale,
                        int32_t zero_point)
{
    if (!hd || !acc || !q)
        return MT_HEAD_EINVAL;
    dequantize(hd, q, scale, zero_point);
    const float *mu = hd->factory->feature_mean;
    const float n = centered_norm(hd, hd->f, 1);
    if (!(n > 0.0f) || !isfinite(n))
        return MT_HEAD_OK; /* at the mean: no direction to add */
    for (uint32_t k = 0; k < hd->h; ++k)
        acc[k] += (hd->f[k] - (mu ? mu[k] : 0.0f)) / n;
    return MT_HEAD_OK;
}

static int imprint_mean(mt_head_t *hd, uint32_t c, const float *acc, int write)
{
    if (!hd || !acc)
        return MT_HEAD_EINVAL;
    if (c < hd->c0 || c >= hd->c_max || !(hd->flags[c] & MT_HEAD_ROW_ACTIVE))
        return MT_HEAD_ENOLABEL;
    float nn = 0.0f;
    for (uint32_t k = 0; k < hd->h; ++k)
        nn += acc[k] * acc[k];
    if (!(nn > 0.0f))
        return MT_HEAD_EINVAL;
    return imprint_row(hd, c, acc, 0, write);
}

int mt_head_imprint_check(mt_head_t *hd, uint32_t c, const float *acc)
{
    return imprint_mean(hd, c, acc, 0);
}

int mt_head_imprint_mean(mt_head_t *hd, uint32_t c, const float *acc)
{
    const int st = imprint_mean(hd, c, acc, 1);
    if (st != MT_HEAD_OK)
        return st;
    imprint_commit(hd, c);
#if MT_HEAD_MOMENTUM
    memset(hd->v + (size_t)c * hd->h, 0, sizeof(float) * hd->h);
    hd->vb[c] = 0.0f;
#endif
    count_update(hd);
    return MT_HEAD_OK;
}

/* Softmax over the scored rows of hd->z, in place (z becomes p), and the cross-entropy of
 * row y (a row not scored has p = 0: the loss is -log(1e-12)). */
static void softmax_loss(mt_head_t *hd, uint32_t y, float *loss)
{
    float m = -INFINITY, sum = 0.0f;
    for (uint32_t c = 0; c < hd->c_max; ++c)
        if (mt_head_row_scored(hd, c) && hd->z[c] > m)
            m = hd->z[c];
    for (uint32_t c = 0; c < hd->c_max; ++c) {
        hd->z[c] = mt_head_row_scored(hd, c) ? expf(hd->z[c] - m) : 0.0f;
        sum += hd->z[c];
    }
    for (uint32_t c = 0; c < hd->c_max; ++c)
        hd->z[c] = hd->z[c] / sum;
    if (loss)
        *loss = -logf(hd->z[y] > 1e-12f ? hd->z[y] : 1e-12f);
}

int mt_head_loss(mt_head_t *hd, const int8_t *q, float scale, int32_t zero_point,
                 uint32_t y, float *loss, uint32_t *best)
{
    if (!hd || !q)
        return MT_HEAD_EINVAL;
    if (y >= hd->c_max || !(hd->flags[y] & MT_HEAD_ROW_ACTIVE))
        return MT_HEAD_ENOLABEL;
    dequantize(hd, q, scale, zero_point);
    const uint32_t b = score_rows(hd, hd->f);
    if (best)
        *best = b;
    softmax_loss(hd, y, loss);
    return MT_HEAD_OK;
}

int mt_head_step_f32(mt_head_t *hd, const float *f, uint32_t y, float *loss)
{
    if (!hd || !f)
        return MT_HEAD_EINVAL;
    if (y >= hd->c_max || !(hd->flags[y] & MT_HEAD_ROW_ACTIVE))
        return MT_HEAD_ENOLABEL;
    const int fresh = (hd->flags[y] & MT_HEAD_ROW_FRESH) != 0;
    float *wy = hd->w + (size_t)y * hd->h;
    const float by = hd->b[y];
    if (fresh) {
        /* the first example imprints the row; its weights before are kept in hd->row until
         * the step is known to be taken */
        memcpy(hd->row, wy, sizeof(float) * hd->h);
        if (imprint_row(hd, y, f, 1, 1) != MT_HEAD_OK)
            return MT_HEAD_ERANGE;
        hd->flags[y] = MT_HEAD_ROW_ACTIVE;
    }
    score_rows(hd, f);
    softmax_loss(hd, y, loss);
    const float lr = hd->lr, l2 = hd->l2;
#if MT_HEAD_MOMENTUM
    const float mo = hd->momentum;
#endif
    /* Dry run: a step that would leave a weight, bias or momentum not finite (a learning
     * rate and decay that diverge, or an imported head of extreme values) is refused and
     * the head stays as it was (the row keeps waiting for its first example): a head that
     * is saved must load again. A freshly imprinted row is its own pull target. */
    for (uint32_t c = 0; c < hd->c_max; ++c) {
        if (!mt_head_row_scored(hd, c))
            continue;
        float g = c == y ? hd->z[c] - 1.0f : hd->z[c];
        const float *w = hd->w + (size_t)c * hd->h;
        const float *w0 = fresh && c == y ? w : w0_row(hd, c);
        int bad = !isfinite(g);
        for (uint32_t k = 0; k < hd->h && !bad; ++k) {
            float gr = g * f[k] + l2 * (w[k] - w0[k]);
#if MT_HEAD_MOMENTUM
            gr = mo * hd->v[(size_t)c * hd->h + k] + gr;
#endif
            bad = !isfinite(gr) || !isfinite(w[k] - lr * gr);
        }
#if MT_HEAD_MOMENTUM
        const float vb = mo * hd->vb[c] + g;
        bad = bad || !isfinite(vb) || !isfinite(hd->b[c] - lr * vb);
#else
        bad = bad || !isfinite(hd->b[c] - lr * g);
#endif
        if (bad) {
            if (fresh) {
                memcpy(wy, hd->row, sizeof(float) * hd->h);
                hd->b[y] = by;
                hd->flags[y] |= MT_HEAD_ROW_FRESH;
            }
            return MT_HEAD_ERANGE;
        }
    }
    if (fresh)
        imprint_commit(hd, y);
    for (uint32_t c = 0; c < hd->c_max; ++c) {
        if (!mt_head_row_scored(hd, c))
            continue;
        float g = c == y ? hd->z[c] - 1.0f : hd->z[c];
        float *w = hd->w + (size_t)c * hd->h;
        const float *w0 = w0_row(hd, c);
#if MT_HEAD_MOMENTUM
        float *v = hd->v + (size_t)c * hd->h;
        for (uint32_t k = 0; k < hd->h; ++k) {
            float gr = g * f[k] + l2 * (w[k] - w0[k]);
            v[k] = mo * v[k] + gr;
            w[k] = w[k] - lr * v[k];
        }
        hd->vb[c] = mo * hd->vb[c] + g;
        hd->b[c] = hd->b[c] - lr * hd->vb[c];
#else
        for (uint32_t k = 0; k < hd->h; ++k) {
            float gr = g * f[k] + l2 * (w[k] - w0[k]);
            w[k] = w[k] - lr * gr;
        }
        hd->b[c] = hd->b[c] - lr * g;
#endif
    }
    count_update(hd);
    return MT_HEAD_OK;
}

int mt_head_step(mt_head_t *hd, const int8_t *q, float scale, int32_t zero_point,
                 uint32_t label, float *loss)
{
    if (!hd || !q)
        return MT_HEAD_EINVAL;
    dequantize(hd, q, scale, zero_point);
    return mt_head_step_f32(hd, hd->f, label, loss);
}

/* --- snapshot ------------------------------------------------------------------------------ */
void mt_head_snapshot(const mt_head_t *hd, mt_head_snapshot_t *s)
{
    const size_t wn = sizeof(float) * hd->c_max * hd->h, bn = sizeof(float) * hd->c_max;
    s->updates = hd->updates;
    memcpy(s->flags, hd->flags, hd->c_max);
    memcpy(s->w, hd->w, wn);
    memcpy(s->b, hd->b, bn);
    memcpy(s->w0_new, hd->w0_new, sizeof(float) * n_new(hd) * hd->h);
#if MT_HEAD_MOMENTUM
    memcpy(s->v, hd->v, wn);
    memcpy(s->vb, hd->vb, bn);
#endif
}

void mt_head_restore(mt_head_t *hd, const mt_head_snapshot_t *s)
{
    const size_t wn = sizeof(float) * hd->c_max * hd->h, bn = sizeof(float) * hd->c_max;
    hd->updates = s->updates;
    memcpy(hd->flags, s->flags, hd->c_max);
    memcpy(hd->w, s->w, wn);
    memcpy(hd->b, s->b, bn);
    memcpy(hd->w0_new, s->w0_new, sizeof(float) * n_new(hd) * hd->h);
#if MT_HEAD_MOMENTUM
    memcpy(hd->v, s->v, wn);
    memcpy(hd->vb, s->vb, bn);
#endif
}
