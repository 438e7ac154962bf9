/* memcpy and memset for the firmware. newlib's are tuned for large blocks (472 bytes of code
 * together on a Cortex-M4); the firmware copies and fills a few hundred bytes at a time (e.g.
 * a convolution's padded input rows), for which an unrolled word loop is as good. Linked instead of
 * newlib's because the linker takes a symbol from the objects before searching libraries.
 * The build compiles this file with -fno-tree-loop-distribute-patterns (its cold flags), so
 * gcc does not turn these loops back into calls of memcpy/memset. */
#include <stddef.h>
#include <stdint.h>

typedef uint32_t __attribute__((__may_alias__)) word_t;
/* Cores that load and store words at any address (ARMv7-M: LDR/STR; not ARMv6-M) copy by
 * words whatever the alignment, so the cost of a copy does not depend on where the linker
 * happened to put a buffer. */
#if defined(__ARM_FEATURE_UNALIGNED)
typedef uint32_t __attribute__((__may_alias__, __aligned__(1))) uword_t;
#define WORDS_OK(a, b) 1
#else
typedef word_t uword_t;
#define WORDS_OK(a, b) (((((uintptr_t)(a)) | ((uintptr_t)(b))) & 3u) == 0u)
#endif

void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (WORDS_OK(d, s)) {
        for (; n >= 16u; n -= 16u, d += 16, s += 16) {
            ((uword_t *)d)[0] = ((const uword_t *)s)[0];
            ((uword_t *)d)[1] = ((const uword_t *)s)[1];
            ((uword_t *)d)[2] = ((const uword_t *)s)[2];
            ((uword_t *)d)[3] = ((const uword_t *)s)[3];
        }
        for (; n >= 4u; n -= 4u, d += 4, s += 4) {
            *(uword_t *)d = *(const uword_t *)s;
        }
    }
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    const uint8_t b = (uint8_t)c;
    if (WORDS_OK(d, 0)) {
        const uint32_t w = b * 0x01010101u;
        for (; n >= 16u; n -= 16u, d += 16) { /* the tokenizer clears its ids with this */
            ((uword_t *)d)[0] = w;
            ((uword_t *)d)[1] = w;
            ((uword_t *)d)[2] = w;
            ((uword_t *)d)[3] = w;
        }
        for (; n >= 4u; n -= 4u, d += 4) {
            *(uword_t *)d = w;
        }
    }
    while (n--) {
        *d++ = b;
    }
    return dst;
}
