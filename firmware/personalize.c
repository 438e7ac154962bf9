/* On-device personalization of the head: see personalize.h and docs/personalization.md.
 * Every formula mirrors toolchain/mcutext/personalize.py (HeadSimulator) operation by
 * operation, in float32, so that the two agree within float rounding. */
#include "personalize.h"

#include <math.h>
#include <string.h>

#define BLOB_MAGIC 0x4448544Du /* bytes 'M' 'T' 'H' 'D' */
#define IO_CHUNK 64u

/* --- CRC-32 (reflected 0xEDB88320), nibble table: 64 bytes of flash ---------------------- */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint32_t mt_crc32(uint32_t crc, const uint8_t *p, uint32_t n)
{
    crc = ~crc;
    for (uint32_t i = 0; i < n; ++i) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

static uint32_t f2u(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float u2f(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t crc_f32(uint32_t crc, float x)
{
    uint8_t b[4];
    put32(b, f2u(x));
    return mt_crc32(crc, b, 4);
}

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

static float mean_of(const mt_head_factory_t *f, uint32_t k)
{
    return f->feature_mean ? f->feature_mean[k] : 0.0f;
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
    uint8_t dims[4] = {(uint8_t)hd->c0, (uint8_t)(hd->c0 >> 8), (uint8_t)hd->h,
                       (uint8_t)(hd->h >> 8)};
    uint32_t crc = mt_crc32(0, dims, 4);
    for (uint32_t i = 0; i < (uint32_t)hd->c0 * hd->h; ++i)
        crc = crc_f32(crc, f->weights[i]);
    for (uint32_t c = 0; c < hd->c0; ++c)
        crc = crc_f32(crc, f->bias[c]);
    for (uint32_t k = 0; k < hd->h; ++k)
        crc = crc_f32(crc, mean_of(f, k));
    hd->factory_crc = crc;
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

/* --- blob ---------------------------------------------------------------------------------- */
static uint32_t flags_bytes(uint32_t rows)
{
    return (rows + 3u) & ~3u;
}

/* 64-bit: the dimensions of a blob being loaded are not trusted yet */
static uint64_t blob_size_for(uint32_t c0, uint32_t rows, uint32_t h)
{
    uint64_t nn = rows - c0;
    return MT_HEAD_BLOB_HEADER_BYTES + flags_bytes(rows) + 4u * ((uint64_t)rows * h + rows) +
           4u * (nn * h) + nn * MT_HEAD_NAME_BYTES + 4u;
}

uint32_t mt_head_blob_size(const mt_head_t *hd)
{
    return (uint32_t)blob_size_for(hd->c0, hd->c_max, hd->h);
}

typedef struct {
    mt_head_write_fn fn;
    void *ctx;
    uint32_t off, n, crc;
    int err;
    uint8_t buf[IO_CHUNK];
} writer_t;

static void w_flush(writer_t *w)
{
    if (w->n && !w->err) {
        w->crc = mt_crc32(w->crc, w->buf, w->n);
        if (w->fn(w->ctx, w->off, w->buf, w->n))
            w->err = 1;
    }
    w->off += w->n;
    w->n = 0;
}

static void w_bytes(writer_t *w, const void *src, uint32_t n)
{
    const uint8_t *p = src;
    while (n--) {
        w->buf[w->n++] = *p++;
        if (w->n == IO_CHUNK)
            w_flush(w);
    }
}

static void w_u32(writer_t *w, uint32_t v)
{
    uint8_t b[4];
    put32(b, v);
    w_bytes(w, b, 4);
}

static void w_u16(writer_t *w, uint32_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    w_bytes(w, b, 2);
}

static void w_f32s(writer_t *w, const float *x, uint32_t n)
{
    for (uint32_t i = 0; i < n; ++i)
        w_u32(w, f2u(x[i]));
}

int mt_head_save(const mt_head_t *hd, mt_head_write_fn write, void *ctx)
{
    if (!hd || !write)
        return MT_HEAD_EINVAL;
    writer_t w = {write, ctx, 0, 0, 0, 0, {0}};
    const uint32_t rows = hd->c_max, nn = n_new(hd), h = hd->h;
    w_u32(&w, BLOB_MAGIC);
    w_u16(&w, MT_HEAD_BLOB_VERSION);
    w_u16(&w, MT_HEAD_BLOB_HEADER_BYTES);
    w_u16(&w, h);
    w_u16(&w, hd->c0);
    w_u16(&w, rows);
    w_u16(&w, MT_HEAD_NAME_BYTES);
    w_u32(&w, hd->factory_crc);
    w_u32(&w, hd->updates);
    w_u32(&w, mt_head_blob_size(hd));
    w_u32(&w, 0);
    w_bytes(&w, hd->flags, rows);
    for (uint32_t i = rows; i < flags_bytes(rows); ++i)
        w_bytes(&w, "", 1);
    w_f32s(&w, hd->w, rows * h);
    w_f32s(&w, hd->b, rows);
    w_f32s(&w, hd->w0_new, nn * h);
    for (uint32_t j = 0; j < nn; ++j)
        w_bytes(&w, hd->names[j], MT_HEAD_NAME_BYTES);
    w_flush(&w);
    uint8_t crc[4];
    put32(crc, w.crc);
    if (!w.err && write(ctx, w.off, crc, 4))
        w.err = 1;
    return w.err ? MT_HEAD_EIO : MT_HEAD_OK;
}

typedef struct {
    mt_head_read_fn fn;
    void *ctx;
    uint32_t off, len; /* next byte to fetch from the source; blob length */
    uint32_t pos, n;   /* consumed / filled bytes of buf */
    uint32_t crc;
    int err;
    uint8_t buf[IO_CHUNK];
} reader_t;

static void r_open(reader_t *r, mt_head_read_fn fn, void *ctx, uint32_t start, uint32_t len)
{
    memset(r, 0, sizeof *r);
    r->fn = fn;
    r->ctx = ctx;
    r->off = start;
    r->len = len;
}

static uint8_t r_byte(reader_t *r)
{
    if (r->pos == r->n) {
        uint32_t n = r->len - r->off < IO_CHUNK ? r->len - r->off : IO_CHUNK;
        if (n == 0 || r->err || r->fn(r->ctx, r->off, r->buf, n)) {
            r->err = 1;
            return 0;
        }
        r->off += n;
        r->n = n;
        r->pos = 0;
    }
    uint8_t b = r->buf[r->pos++];
    r->crc = mt_crc32(r->crc, &b, 1);
    return b;
}

static uint32_t r_u32(reader_t *r)
{
    uint8_t b[4];
    for (int i = 0; i < 4; ++i)
        b[i] = r_byte(r);
    return get32(b);
}

static uint32_t r_u16(reader_t *r)
{
    uint32_t lo = r_byte(r);
    return lo | (uint32_t)r_byte(r) << 8;
}

static float r_f32(reader_t *r, int *bad)
{
    float x = u2f(r_u32(r));
    if (!isfinite(x))
        *bad = 1;
    return x;
}

/* Compares the NUL-padded name at blob offset `off` with s (NULL-safe). */
static int name_at_equals(mt_head_read_fn fn, void *ctx, uint32_t off, const char *s,
                          int *err)
{
    uint8_t nm[MT_HEAD_NAME_BYTES];
    if (fn(ctx, off, nm, MT_HEAD_NAME_BYTES)) {
        *err = 1;
        return 0;
    }
    return strncmp((const char *)nm, s, MT_HEAD_NAME_BYTES) == 0;
}

int mt_head_load(mt_head_t *hd, mt_head_read_fn read, void *ctx, uint32_t len)
{
    if (!hd || !read)
        return MT_HEAD_EINVAL;
    const uint32_t rows = hd->c_max, nn = n_new(hd), h = hd->h, c0 = hd->c0;
    if (len < MT_HEAD_BLOB_HEADER_BYTES + 4u)
        return MT_HEAD_EFORMAT;
    reader_t r;
    /* pass 1: header, CRC and every field's value; the head is not touched */
    r_open(&r, read, ctx, 0, len);
    uint32_t magic = r_u32(&r), version = r_u16(&r), hbytes = r_u16(&r);
    uint32_t bh = r_u16(&r), bc0 = r_u16(&r), brows = r_u16(&r), bname = r_u16(&r);
    uint32_t fcrc = r_u32(&r);
    (void)r_u32(&r); /* updates */
    uint32_t total = r_u32(&r), reserved = r_u32(&r);
    if (r.err)
        return MT_HEAD_EIO;
    if (magic != BLOB_MAGIC || version != MT_HEAD_BLOB_VERSION ||
        hbytes != MT_HEAD_BLOB_HEADER_BYTES || total != len || reserved != 0 ||
        bname != MT_HEAD_NAME_BYTES || bc0 == 0 || brows < bc0 ||
        len != blob_size_for(bc0, brows, bh))
        return MT_HEAD_EFORMAT;
    int bad = 0, model = bh != h || bc0 != c0 || brows != rows || fcrc != hd->factory_crc;
    uint32_t nf = brows < MT_HEAD_MAX_CLASSES ? brows : MT_HEAD_MAX_CLASSES;
    uint8_t flags[MT_HEAD_MAX_CLASSES];
    for (uint32_t c = 0; c < flags_bytes(brows); ++c) {
        uint8_t fl = r_byte(&r);
        if (c < nf)
            flags[c] = fl;
        if (c >= brows ? fl != 0
            : c < bc0  ? fl != MT_HEAD_ROW_ACTIVE
                       : fl != 0 && fl != MT_HEAD_ROW_ACTIVE &&
                             fl != (MT_HEAD_ROW_ACTIVE | MT_HEAD_ROW_FRESH))
            bad = 1;
    }
    for (uint32_t i = 0; i < brows * (bh + 1u) + (brows - bc0) * bh; ++i)
        (void)r_f32(&r, &bad);
    uint32_t names_off = len - 4u - (brows - bc0) * MT_HEAD_NAME_BYTES;
    for (uint32_t j = 0; j < brows - bc0; ++j) {
        int active = !model && (flags[bc0 + j] & MT_HEAD_ROW_ACTIVE);
        uint32_t k = 0;
        int ended = 0;
        for (uint32_t i = 0; i < MT_HEAD_NAME_BYTES; ++i) {
            uint8_t ch = r_byte(&r);
            if (ch == 0)
                ended = 1;
            else if (ended || !active || ch < 0x21 || ch > 0x7e)
                bad = 1; /* inactive rows have empty names; active ones printable, padded */
            else
                ++k;
        }
        if (active && (k == 0 || !ended))
            bad = 1;
    }
    uint32_t body_crc = r.crc;
    uint32_t stored = r_u32(&r);
    if (r.err)
        return MT_HEAD_EIO;
    if (stored != body_crc)
        return MT_HEAD_ECRC;
    if (model)
        return MT_HEAD_EMODEL;
    if (bad)
        return MT_HEAD_EFORMAT;
    /* names unique among the active labels, factory ones included */
    int err = 0;
    for (uint32_t j = 0; j < nn && !bad; ++j) {
        if (!(flags[c0 + j] & MT_HEAD_ROW_ACTIVE))
            continue;
        uint8_t nm[MT_HEAD_NAME_BYTES];
        if (read(ctx, names_off + j * MT_HEAD_NAME_BYTES, nm, MT_HEAD_NAME_BYTES))
            return MT_HEAD_EIO;
        for (uint32_t c = 0; c < c0; ++c)
            if (strncmp((const char *)nm, hd->factory->labels[c], MT_HEAD_NAME_BYTES) == 0)
                bad = 1;
        for (uint32_t i = 0; i < j; ++i)
            if ((flags[c0 + i] & MT_HEAD_ROW_ACTIVE) &&
                name_at_equals(read, ctx, names_off + i * MT_HEAD_NAME_BYTES,
                               (const char *)nm, &err))
                bad = 1;
    }
    if (err)
        return MT_HEAD_EIO;
    if (bad)
        return MT_HEAD_EFORMAT;
    /* pass 2: apply (a source that changes between the passes is caught by the CRC) */
    r_open(&r, read, ctx, 0, len);
    for (uint32_t i = 0; i < 20u; ++i)
        (void)r_byte(&r);
    uint32_t updates = r_u32(&r);
    for (uint32_t i = 0; i < 8u; ++i)
        (void)r_byte(&r);
    for (uint32_t c = 0; c < flags_bytes(rows); ++c)
        (void)r_byte(&r);
    for (uint32_t i = 0; i < rows * h; ++i)
        hd->w[i] = r_f32(&r, &bad);
    for (uint32_t c = 0; c < rows; ++c)
        hd->b[c] = r_f32(&r, &bad);
    for (uint32_t i = 0; i < nn * h; ++i)
        hd->w0_new[i] = r_f32(&r, &bad);
    for (uint32_t j = 0; j < nn; ++j)
        for (uint32_t i = 0; i < MT_HEAD_NAME_BYTES; ++i)
            hd->names[j][i] = (char)r_byte(&r);
    uint32_t crc2 = r.crc;
    if (r.err || bad || r_u32(&r) != crc2 || crc2 != body_crc) {
        mt_head_reset(hd); /* the source changed under us: never keep a mix */
        return r.err ? MT_HEAD_EIO : MT_HEAD_ECRC;
    }
    memcpy(hd->flags, flags, rows);
    hd->updates = updates;
#if MT_HEAD_MOMENTUM
    memset(hd->v, 0, sizeof hd->v);
    memset(hd->vb, 0, sizeof hd->vb);
#endif
    return MT_HEAD_OK;
}
