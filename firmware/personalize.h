/* On-device personalization of the head (features -> classes): docs/personalization.md.
 *
 * The float32 arithmetic of toolchain/mcutext/device/personalize.py (HeadSimulator), which is the
 * reference; tests/test_personalize.py checks that both agree after the same updates.
 * No heap: all state lives in one caller-provided mt_head_t (put it in .bss), sized by the
 * compile-time maxima below; the factory weights stay in flash (const pointers).
 *
 * Compile-time maxima (define with -D or in the generated model header before this one):
 *   MT_HEAD_MAX_FEATURES   feature_dim of the model (penultimate features), upper bound
 *   MT_HEAD_MAX_NEW_LABELS rows reserved for labels the owner adds on the device
 *   MT_HEAD_MAX_CLASSES    factory classes + MT_HEAD_MAX_NEW_LABELS, upper bound
 *   MT_HEAD_MOMENTUM       1: keep momentum buffers (2x the RAM of W), 0: plain SGD only
 *   MT_HEAD_NAME_BYTES     bytes per added label name, NUL included (names are 1..23 chars
 *                          of printable ASCII without space, 0x21..0x7E, by default)
 *
 * RAM (bytes) ~= 4 * (C*H * (1 + MOMENTUM) + N*H + (2 + MOMENTUM) * C + 2*H)
 *               + N * NAME_BYTES + C, with C = MAX_CLASSES, H = MAX_FEATURES,
 *               N = MAX_NEW_LABELS; mt_head_sizeof() gives the exact figure.
 *
 * Refusals change nothing: every function that returns an error leaves the head as it was
 * (the scratch arrays aside), and the update count saturates at 2^32 - 1.
 */
#ifndef MT_PERSONALIZE_H
#define MT_PERSONALIZE_H

#include <stddef.h>
#include <stdint.h>

/* A firmware build generates model_head.h next to the model (mcutext codegen): the maxima
 * sized to the model, and MT_PERSONALIZE 1. Every file that includes this header then sees
 * the same sizes. */
#if defined(__has_include)
#if __has_include("model_head.h")
#include "model_head.h"
#endif
#endif

#ifndef MT_HEAD_MAX_FEATURES
#define MT_HEAD_MAX_FEATURES 64
#endif
#ifndef MT_HEAD_MAX_NEW_LABELS
#define MT_HEAD_MAX_NEW_LABELS 8
#endif
#ifndef MT_HEAD_MAX_CLASSES
#define MT_HEAD_MAX_CLASSES (2 + MT_HEAD_MAX_NEW_LABELS)
#endif
#ifndef MT_HEAD_MOMENTUM
#define MT_HEAD_MOMENTUM 1
#endif
#ifndef MT_HEAD_NAME_BYTES
#define MT_HEAD_NAME_BYTES 24
#endif

#if MT_HEAD_MAX_CLASSES > 65535 || MT_HEAD_MAX_FEATURES > 65535
#error "the blob format stores dimensions as uint16"
#endif

/* Version of the serialized blob (mt_head_save / mt_head_load). */
#define MT_HEAD_BLOB_VERSION 1u
#define MT_HEAD_BLOB_HEADER_BYTES 32u
/* The largest blob of a head with the compile-time maxima (mt_head_blob_size() is the actual
 * one): the import buffer and the storage region are sized by it. */
#define MT_HEAD_BLOB_MAX                                                                    \
    (MT_HEAD_BLOB_HEADER_BYTES + ((MT_HEAD_MAX_CLASSES + 3u) & ~3u) +                       \
     4u * (MT_HEAD_MAX_CLASSES * MT_HEAD_MAX_FEATURES + MT_HEAD_MAX_CLASSES) +              \
     4u * MT_HEAD_MAX_NEW_LABELS * MT_HEAD_MAX_FEATURES +                                   \
     MT_HEAD_MAX_NEW_LABELS * MT_HEAD_NAME_BYTES + 4u)

typedef enum {
    MT_HEAD_OK = 0,
    MT_HEAD_EINVAL = -1,   /* bad argument (index out of range, dims above the maxima) */
    MT_HEAD_ENOLABEL = -2, /* no active label of that name / index */
    MT_HEAD_EEXIST = -3,   /* a label of that name exists already */
    MT_HEAD_EFULL = -4,    /* every reserved row is in use */
    MT_HEAD_EFACTORY = -5, /* factory labels cannot be removed or renamed */
    MT_HEAD_ENAME = -6,    /* name empty, too long, or not printable ASCII without space */
    MT_HEAD_EFORMAT = -7,  /* blob: bad magic, version, size, field value */
    MT_HEAD_ECRC = -8,     /* blob: CRC mismatch */
    MT_HEAD_EMODEL = -9,   /* blob: made for another model (dimensions, factory weights) */
    MT_HEAD_EIO = -10,     /* the read / write callback failed */
    MT_HEAD_ERANGE = -11   /* step: a value would not be finite (diverging lr / l2): not taken */
} mt_head_status_t;

/* The factory head, in flash. */
typedef struct {
    uint16_t num_classes;        /* factory classes C0 (>= 1) */
    uint16_t feature_dim;        /* H (<= MT_HEAD_MAX_FEATURES) */
    uint16_t max_new_labels;     /* reserved rows (<= MT_HEAD_MAX_NEW_LABELS, and
                                    C0 + max_new_labels <= MT_HEAD_MAX_CLASSES) */
    const float *weights;        /* [C0][H], class-major (the manifest's [H, C] transposed) */
    const float *bias;           /* [C0] */
    const float *feature_mean;   /* [H] mean of the training features, or NULL (zeros) */
    const char *const *labels;   /* [C0] factory label names */
} mt_head_factory_t;

#define MT_HEAD_ROW_ACTIVE 1u /* the row is a label */
#define MT_HEAD_ROW_FRESH 2u  /* added, waiting for its first example (not scored yet) */

typedef struct {
    const mt_head_factory_t *factory;
    uint32_t factory_crc;        /* CRC-32 of the factory dims and weights: binds blobs */
    uint16_t c0, c_max, h;
    uint32_t updates;            /* SGD steps since factory */
    float lr, momentum, l2;      /* update rule; defaults 0.05, 0, 0 */
    uint8_t flags[MT_HEAD_MAX_CLASSES];
    float w[MT_HEAD_MAX_CLASSES * MT_HEAD_MAX_FEATURES];       /* [c_max][h], stride h */
    float b[MT_HEAD_MAX_CLASSES];
    float w0_new[MT_HEAD_MAX_NEW_LABELS * MT_HEAD_MAX_FEATURES]; /* imprints of added rows */
    char names[MT_HEAD_MAX_NEW_LABELS][MT_HEAD_NAME_BYTES];
#if MT_HEAD_MOMENTUM
    float v[MT_HEAD_MAX_CLASSES * MT_HEAD_MAX_FEATURES];
    float vb[MT_HEAD_MAX_CLASSES];
#endif
    float f[MT_HEAD_MAX_FEATURES]; /* scratch: dequantized features */
    float z[MT_HEAD_MAX_CLASSES];  /* scratch: scores, then probabilities */
    float row[MT_HEAD_MAX_FEATURES]; /* scratch: a fresh row's weights while its first step
                                        is checked */
} mt_head_t;

/* What the learning functions change (mt_head_step, mt_head_imprint_mean): not the names,
 * nor the config. A command that takes many steps (`head train`) keeps one to bring the head
 * back when a step part way is refused. RAM ~= 4 * (C*H * (1 + MOMENTUM) + N*H +
 * (1 + MOMENTUM) * C) + C + 4. */
typedef struct {
    uint32_t updates;
    uint8_t flags[MT_HEAD_MAX_CLASSES];
    float w[MT_HEAD_MAX_CLASSES * MT_HEAD_MAX_FEATURES];
    float b[MT_HEAD_MAX_CLASSES];
    float w0_new[MT_HEAD_MAX_NEW_LABELS * MT_HEAD_MAX_FEATURES];
#if MT_HEAD_MOMENTUM
    float v[MT_HEAD_MAX_CLASSES * MT_HEAD_MAX_FEATURES];
    float vb[MT_HEAD_MAX_CLASSES];
#endif
} mt_head_snapshot_t;

/* Sequential byte sink / random-access byte source of a serialized blob.
 * Return 0 on success, non-zero on failure (reported as MT_HEAD_EIO). */
typedef int (*mt_head_write_fn)(void *ctx, uint32_t off, const uint8_t *src, uint32_t n);
typedef int (*mt_head_read_fn)(void *ctx, uint32_t off, uint8_t *dst, uint32_t n);

size_t mt_head_sizeof(void);

/* Sets the head to the factory state. */
int mt_head_init(mt_head_t *hd, const mt_head_factory_t *factory);
void mt_head_reset(mt_head_t *hd);
void mt_head_config(mt_head_t *hd, float lr, float momentum, float l2);

/* Labels. Added labels take the first free reserved row; *index may be NULL. */
int mt_head_add_label(mt_head_t *hd, const char *name, uint32_t *index);
int mt_head_remove_label(mt_head_t *hd, const char *name);
int mt_head_rename_label(mt_head_t *hd, const char *name, const char *new_name);
int mt_head_find_label(const mt_head_t *hd, const char *name, uint32_t *index);
/* The name of row `index`, or NULL when the row is not an active label. */
const char *mt_head_label(const mt_head_t *hd, uint32_t index);
int mt_head_label_valid(const char *name); /* 1 if usable as an added label's name */
uint32_t mt_head_num_rows(const mt_head_t *hd); /* c_max */
int mt_head_row_scored(const mt_head_t *hd, uint32_t index); /* active and imprinted */

/* Scores of all c_max rows (-INFINITY for rows not scored) into scores[] (may be NULL);
 * *best = argmax (first of ties). Features are int8 with f = (q - zero_point) * scale. */
int mt_head_scores(mt_head_t *hd, const int8_t *q, float scale, int32_t zero_point,
                   float *scores, uint32_t *best);
int mt_head_scores_f32(mt_head_t *hd, const float *f, float *scores, uint32_t *best);

/* One SGD step on one example of row `label`; *loss (may be NULL) = its cross-entropy
 * before the step. An added row is imprinted from its first example. */
int mt_head_step(mt_head_t *hd, const int8_t *q, float scale, int32_t zero_point,
                 uint32_t label, float *loss);
int mt_head_step_f32(mt_head_t *hd, const float *f, uint32_t label, float *loss);

/* Imprinting an added label from several examples (`head imprint`): zero an accumulator of
 * H floats, mt_head_imprint_add each example's int8 features (adds the unit vector of
 * f - feature mean; an example at the mean adds nothing), then mt_head_imprint_mean sets
 * row `label` (an added, active row) as one example's imprint would with that direction,
 * clears its momentum and counts one update. MT_HEAD_EINVAL for a zero accumulator,
 * MT_HEAD_ENOLABEL for a factory or inactive row, MT_HEAD_ERANGE (nothing changed) for a
 * value that would not be finite. */
int mt_head_imprint_add(mt_head_t *hd, float *acc, const int8_t *q, float scale,
                        int32_t zero_point);
int mt_head_imprint_mean(mt_head_t *hd, uint32_t label, const float *acc);
/* What mt_head_imprint_mean would return, changing nothing: a command that imprints several
 * labels checks them all before it imprints the first. */
int mt_head_imprint_check(mt_head_t *hd, uint32_t label, const float *acc);

/* Copies the learned state (mt_head_snapshot_t) out of the head, and back. */
void mt_head_snapshot(const mt_head_t *hd, mt_head_snapshot_t *s);
void mt_head_restore(mt_head_t *hd, const mt_head_snapshot_t *s);

/* The cross-entropy of an example of row `label` under the current head, without a step
 * (*loss = -log(1e-12) for a row not scored yet); *best (may be NULL) = the argmax.
 * Leaves the probabilities in hd->z. */
int mt_head_loss(mt_head_t *hd, const int8_t *q, float scale, int32_t zero_point,
                 uint32_t label, float *loss, uint32_t *best);

/* The learned state as a blob (layout in docs/personalization.md): weights, biases, added
 * rows' imprints and names, row flags, update count, a factory fingerprint, CRC-32.
 * Momentum buffers are not part of it (they restart at zero after a load). */
uint32_t mt_head_blob_size(const mt_head_t *hd);
int mt_head_save(const mt_head_t *hd, mt_head_write_fn write, void *ctx);
/* Validates the whole blob first (size, version, model, CRC, field values); the head is
 * changed only when it is valid. */
int mt_head_load(mt_head_t *hd, mt_head_read_fn read, void *ctx, uint32_t len);

/* CRC-32 (IEEE 802.3, as zlib.crc32); start with crc = 0. */
uint32_t mt_crc32(uint32_t crc, const uint8_t *p, uint32_t n);

#endif
