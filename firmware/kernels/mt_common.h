/* mcutext int8 kernels: status codes, the fixed-point primitives of the TFLite Micro
 * reference kernels, and the ARMv7E-M DSP instructions of the optimized paths.
 *
 * Build modes
 *   a core with the DSP extension (__ARM_FEATURE_DSP: Cortex-M4/M7/M33/M55):
 *       MT_USE_DSP = 1; the mt_ intrinsics below compile to SMLAD, SXTB16, SMMLA, SSAT ...
 *   -DMT_EMULATE_DSP (host builds): MT_USE_DSP = 1 with C equivalents of those instructions,
 *       so that the DSP paths' data layouts and arithmetic run, and are tested, on the host.
 *   -DMT_FORCE_PORTABLE: MT_USE_DSP = 0 even on a DSP core (to measure the portable path).
 *   otherwise (Cortex-M0/M0+/M3, host): MT_USE_DSP = 0, portable C only.
 * A kernel takes its DSP path only when MT_USE_DSP is 1 and the code generator supplied the
 * DSP data for the layer (pre-arranged weights, requantization constants); both paths give
 * the same bytes (docs/codegen.md has the argument; the tests compare them). */
#ifndef MT_COMMON_H
#define MT_COMMON_H

#include <stdint.h>
#include <string.h>

typedef enum {
    MT_OK = 0,
    MT_ERR_ARG = 1,  /* a parameter is outside its documented range */
    MT_ERR_RANGE = 2 /* an input value is outside its valid range (e.g. an id >= buckets) */
} mt_status_t;

#if !defined(MT_FORCE_PORTABLE) && (defined(MT_EMULATE_DSP) || defined(__ARM_FEATURE_DSP))
#define MT_USE_DSP 1
#else
#define MT_USE_DSP 0
#endif

#define MT_INT8_MIN (-128)
#define MT_INT8_MAX 127

static inline int32_t mt_min32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t mt_max32(int32_t a, int32_t b) { return a > b ? a : b; }
static inline int32_t mt_clamp32(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* --- fixed-point primitives (gemmlowp / TFLite Micro, double rounding) ---------------- */

/* SaturatingRoundingDoublingHighMul: (a * b + 2^30) / 2^31 rounded half up, saturating the
 * single overflow case a = b = INT32_MIN. The reference adds 2^30 (or 1 - 2^30 for a negative
 * product) and divides truncating toward zero; that is the same integer as the floor of
 * (a * b + 2^30) / 2^31, which is what the arithmetic shift computes. */
static inline int32_t mt_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    return (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
}

/* RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero;
 * exponent in [0, 31]. */
static inline int32_t mt_rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier (TFLite Micro, double rounding): x * mult * 2^shift with mult
 * a Q31 value in [2^30, 2^31) (or 0) and shift in [-31, 30] (> 0: left shift first). The left
 * shift wraps like the reference's int32 multiplication. */
static inline int32_t mt_mbqm(int32_t x, int32_t mult, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return mt_rdbpot(mt_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

/* Unaligned-safe 32-bit load (one LDR on ARMv7-M, byte loads on ARMv6-M). */
static inline uint32_t mt_load_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* --- requantization on the DSP paths -------------------------------------------------------
 * For a layer on a DSP path the code generator picks one right shift E for all its output
 * channels and stores each channel's int16 weights (and its bias) scaled by 2^s,
 * s = 1 + left + E - right, where left = max(shift, 0) and right = max(-shift, 0) are the
 * channel's TFLite shifts and E > right for every channel (1 <= E - right, s <= 8). The
 * accumulator is then A = 2^s * acc, and with
 *   add = 2^(d-1) + 2^d * (zp * 2^right + (right >= 1 ? 2^(right-1) : 0)),  d = E - right,
 *   neg = (right >= 1 ? 2^d : 0),
 *   SMMLA(A, mult, add - [acc < 0] * neg) >> E
 *     = zp + RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc * 2^left, mult), right)
 * exactly: both sides are floor((x * mult + 2^30 + c * 2^31) / 2^(31 + right)) for
 * x = acc * 2^left and the integer c = zp * 2^right plus the reference's rounding constant
 * (nested floors; a negative x gives a non-positive product, and where that is 0 both
 * roundings agree). The code generator checks |A| <= 2^30 and |add| <= 2^30, so nothing
 * wraps; otherwise the layer stays on the portable path. When every negative acc ends at
 * act_min anyway (act_min >= zp, e.g. a ReLU), the [acc < 0] term can be skipped. */
typedef struct {
    int32_t mult; /* Q31 multiplier, [2^30, 2^31) (or 0) */
    int32_t add;  /* rounding and zero-point constant (above) */
    int32_t neg;  /* subtracted for a negative accumulator (above) */
} mt_requant_t;

/* Orders the memory accesses of MT_LD2 after preceding stores (see MT_LD2). */
#define MT_COMPILER_BARRIER() __asm__ volatile("" ::: "memory")

/* --- ARMv7E-M DSP instructions -------------------------------------------------------------
 * mt_smlad(a, b, acc)     acc + a.lo * b.lo + a.hi * b.hi (signed halves)       SMLAD
 * mt_smlabb(a, b, acc)    acc + a.lo * b.lo                                      SMLABB
 * mt_smlatb(a, b, acc)    acc + a.hi * b.lo                                      SMLATB
 * mt_sadd16(a, b)         a + b in each 16-bit half (wrapping)                  SADD16
 * mt_ssub16(a, b)         a - b in each 16-bit half (wrapping)                  SSUB16
 * mt_shadd16(a, b)        (a + b) >> 1 in each signed 16-bit half               SHADD16
 * mt_sxtb16(x)            bytes 0 and 2 of x sign-extended to two halves         SXTB16
 * mt_sxtb16_ror8(x)       bytes 1 and 3 of x sign-extended to two halves         SXTB16 ROR #8
 * mt_smmla(a, b, k)       k + floor(a * b / 2^32)                                SMMLA
 * mt_ssat8(x)             x saturated to [-128, 127]                             SSAT #8
 * mt_ssat8_asr(x, n)      (x >> n) saturated to [-128, 127], n constant          SSAT #8, ASR #n
 * MT_LD2(p, a, b)         a = p[0], b = p[1], p += 2 for a word-aligned pointer   LDRD post-inc */
#if MT_USE_DSP
#if defined(MT_EMULATE_DSP)

static inline int32_t mt_smlad(int32_t a, int32_t b, int32_t acc)
{
    const int32_t lo = (int32_t)(int16_t)(uint16_t)((uint32_t)a & 0xFFFFu) *
                       (int32_t)(int16_t)(uint16_t)((uint32_t)b & 0xFFFFu);
    const int32_t hi = (int32_t)(int16_t)(uint16_t)((uint32_t)a >> 16) *
                       (int32_t)(int16_t)(uint16_t)((uint32_t)b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi);
}

static inline int32_t mt_smlabb(int32_t a, int32_t b, int32_t acc)
{
    const int32_t p = (int32_t)(int16_t)(uint16_t)((uint32_t)a & 0xFFFFu) *
                      (int32_t)(int16_t)(uint16_t)((uint32_t)b & 0xFFFFu);
    return (int32_t)((uint32_t)acc + (uint32_t)p);
}

static inline int32_t mt_smlatb(int32_t a, int32_t b, int32_t acc)
{
    const int32_t p = (int32_t)(int16_t)(uint16_t)((uint32_t)a >> 16) *
                      (int32_t)(int16_t)(uint16_t)((uint32_t)b & 0xFFFFu);
    return (int32_t)((uint32_t)acc + (uint32_t)p);
}

static inline int32_t mt_sxtb16(uint32_t x)
{
    const uint32_t lo = (uint32_t)(int32_t)(int8_t)(uint8_t)(x & 0xFFu) & 0xFFFFu;
    const uint32_t hi = (uint32_t)(int32_t)(int8_t)(uint8_t)((x >> 16) & 0xFFu) & 0xFFFFu;
    return (int32_t)(lo | (hi << 16));
}

static inline int32_t mt_sxtb16_ror8(uint32_t x)
{
    return mt_sxtb16((x >> 8) | (x << 24));
}

static inline int32_t mt_sadd16(int32_t a, int32_t b)
{
    const uint32_t lo = ((uint32_t)a + (uint32_t)b) & 0xFFFFu;
    const uint32_t hi = (((uint32_t)a >> 16) + ((uint32_t)b >> 16)) & 0xFFFFu;
    return (int32_t)(lo | (hi << 16));
}

static inline int32_t mt_ssub16(int32_t a, int32_t b)
{
    const uint32_t lo = ((uint32_t)a - (uint32_t)b) & 0xFFFFu;
    const uint32_t hi = (((uint32_t)a >> 16) - ((uint32_t)b >> 16)) & 0xFFFFu;
    return (int32_t)(lo | (hi << 16));
}

static inline int32_t mt_shadd16(int32_t a, int32_t b)
{
    const int32_t lo = ((int32_t)(int16_t)(uint16_t)((uint32_t)a & 0xFFFFu) +
                        (int32_t)(int16_t)(uint16_t)((uint32_t)b & 0xFFFFu)) >> 1;
    const int32_t hi = ((int32_t)(int16_t)(uint16_t)((uint32_t)a >> 16) +
                        (int32_t)(int16_t)(uint16_t)((uint32_t)b >> 16)) >> 1;
    return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}

static inline int32_t mt_smmla(int32_t a, int32_t b, int32_t k)
{
    const int64_t p = (int64_t)a * (int64_t)b;
    return (int32_t)((uint32_t)k + (uint32_t)(int32_t)(p >> 32));
}

static inline int32_t mt_ssat8(int32_t x)
{
    return mt_clamp32(x, MT_INT8_MIN, MT_INT8_MAX);
}

#define mt_ssat8_asr(x, n) mt_ssat8((x) >> (n))

#define MT_LD2(p, a, b)            \
    do {                           \
        (a) = (int32_t)(p)[0];     \
        (b) = (int32_t)(p)[1];     \
        (p) += 2;                  \
    } while (0)

#else /* native ARMv7E-M */
#include <arm_acle.h>

static inline int32_t mt_smlad(int32_t a, int32_t b, int32_t acc)
{
    return __smlad(a, b, acc);
}

static inline int32_t mt_smlabb(int32_t a, int32_t b, int32_t acc)
{
    return __smlabb(a, b, acc);
}

static inline int32_t mt_smlatb(int32_t a, int32_t b, int32_t acc)
{
    return __smlatb(a, b, acc);
}

static inline int32_t mt_sxtb16(uint32_t x)
{
    return __sxtb16((int32_t)x);
}

static inline int32_t mt_sxtb16_ror8(uint32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

static inline int32_t mt_sadd16(int32_t a, int32_t b)
{
    return __sadd16(a, b);
}

static inline int32_t mt_ssub16(int32_t a, int32_t b)
{
    return __ssub16(a, b);
}

static inline int32_t mt_shadd16(int32_t a, int32_t b)
{
    return __shadd16(a, b);
}

static inline int32_t mt_smmla(int32_t a, int32_t b, int32_t k)
{
    int32_t r;
    __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(k));
    return r;
}

static inline int32_t mt_ssat8(int32_t x)
{
    return __ssat(x, 8);
}

/* n must be a compile-time constant in [1, 31] (it is an immediate of the instruction). */
#define mt_ssat8_asr(x, n)                                                        \
    __extension__({                                                               \
        int32_t r_;                                                               \
        __asm__("ssat %0, #8, %1, asr %2" : "=r"(r_) : "r"((int32_t)(x)), "i"(n)); \
        r_;                                                                       \
    })

/* gcc splits 64-bit loads of word-aligned data into two LDR; one LDRD with post-increment
 * keeps the inner loops at one load per two words. The asm is volatile (never dropped,
 * merged or moved across other volatile asm) but has no memory clobber, so that gcc keeps
 * other values in registers: a kernel that reads back data it wrote itself puts
 * MT_COMPILER_BARRIER() in between. */
#define MT_LD2(p, a, b) \
    __asm__ volatile("ldrd %0, %1, [%2], #8" : "=r"(a), "=r"(b), "+r"(p))

#endif /* MT_EMULATE_DSP */

/* The requantized value (before saturation) of a DSP accumulator, see mt_requant_t. `fix` = 0
 * skips the [acc < 0] term where the caller proved it irrelevant. */
static inline int32_t mt_requant_dsp(int32_t acc, const mt_requant_t *q, int32_t right,
                                     int32_t fix)
{
    const int32_t k = fix ? q->add - (q->neg & (acc >> 31)) : q->add;
    return mt_smmla(acc, q->mult, k) >> right;
}

#endif /* MT_USE_DSP */

#endif
