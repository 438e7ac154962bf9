#include "copy.h"

mt_status_t mt_strided_copy(const mt_strided_copy_params_t *p, const void *in, void *out)
{
    if (p == 0 || in == 0 || out == 0 || (p->elem_bytes != 1u && p->elem_bytes != 4u)) {
        return MT_ERR_ARG;
    }
    const uint32_t sl = p->stride[3], n3 = p->shape[3];
    if (p->elem_bytes == 1u) {
        const int8_t *src = (const int8_t *)in + p->offset;
        int8_t *dst = (int8_t *)out;
        for (uint32_t i0 = 0; i0 < p->shape[0]; ++i0) {
            for (uint32_t i1 = 0; i1 < p->shape[1]; ++i1) {
                for (uint32_t i2 = 0; i2 < p->shape[2]; ++i2) {
                    const int8_t *s = src + i0 * p->stride[0] + i1 * p->stride[1] +
                                      i2 * p->stride[2];
                    if (sl == 1u) {
                        memcpy(dst, s, n3);
                        dst += n3;
                    } else {
                        for (uint32_t i3 = 0; i3 < n3; ++i3, s += sl) {
                            *dst++ = *s;
                        }
                    }
                }
            }
        }
        return MT_OK;
    }
    const int32_t *src = (const int32_t *)in + p->offset;
    int32_t *dst = (int32_t *)out;
    for (uint32_t i0 = 0; i0 < p->shape[0]; ++i0) {
        for (uint32_t i1 = 0; i1 < p->shape[1]; ++i1) {
            for (uint32_t i2 = 0; i2 < p->shape[2]; ++i2) {
                const int32_t *s = src + i0 * p->stride[0] + i1 * p->stride[1] +
                                   i2 * p->stride[2];
                for (uint32_t i3 = 0; i3 < n3; ++i3, s += sl) {
                    *dst++ = *s;
                }
            }
        }
    }
    return MT_OK;
}

mt_status_t mt_concat_s8(const mt_concat_params_t *p, const int8_t *const *inputs, int8_t *out)
{
    if (p == 0 || inputs == 0 || out == 0 || p->inputs == 0 || p->bytes == 0) {
        return MT_ERR_ARG;
    }
    for (uint32_t k = 0; k < p->inputs; ++k) {
        if (inputs[k] == 0) {
            return MT_ERR_ARG;
        }
    }
    for (uint32_t o = 0; o < p->outer; ++o) {
        for (uint32_t k = 0; k < p->inputs; ++k) {
            const uint32_t n = p->bytes[k];
            memcpy(out, inputs[k] + o * n, n);
            out += n;
        }
    }
    return MT_OK;
}

mt_status_t mt_minimum_s32(const mt_minimum_params_t *p, const int32_t *in1, const int32_t *in2,
                           int32_t *out)
{
    if (p == 0 || in1 == 0 || in2 == 0 || out == 0 || p->step1 > 1u || p->step2 > 1u) {
        return MT_ERR_ARG;
    }
    for (uint32_t i = 0; i < p->size; ++i) {
        out[i] = mt_min32(in1[i * p->step1], in2[i * p->step2]);
    }
    return MT_OK;
}
