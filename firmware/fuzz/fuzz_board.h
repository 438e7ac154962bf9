/* Shared by the fuzz targets: the host board's output sink (board_host.c). */
#ifndef MT_FUZZ_BOARD_H
#define MT_FUZZ_BOARD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MT_FUZZ_TAIL 4096u

typedef struct {
    uint64_t total;   /* bytes sent since the last reset */
    uint32_t bad;     /* bytes that are neither printable ASCII nor CR / LF */
    uint8_t tail[MT_FUZZ_TAIL]; /* the last bytes sent, a ring */
} mt_fuzz_out_t;

extern mt_fuzz_out_t mt_fuzz_out;

void mt_fuzz_out_reset(void);
/* Erases the board's storage (a NOR flash region in RAM, board_storage()). */
void mt_fuzz_storage_erase(void);
/* 1 if the output so far ends with s[0..n). */
int mt_fuzz_out_ends_with(const char *s, uint32_t n);

/* A broken invariant: abort, so that libFuzzer keeps the input as a crash. */
#define MT_FUZZ_CHECK(cond)                                                                 \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

#endif
