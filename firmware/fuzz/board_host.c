/* The board of the fuzz targets (docs/reliability.md): the porting surface of board.h on the
 * host. Output goes to a sink that keeps the last bytes (the harnesses check the replies)
 * and, with MT_FUZZ_ECHO=1 in the environment, to stdout (to record seeds and replay
 * findings). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "fuzz_board.h"
#include "personalize.h"
#include "slots.h"
#include "storage.h"

/* The linker-script symbols of docs/boards.md. The "stack" is a painted block that is not
 * the host's stack, so the core's paint_stack() leaves it alone. */
__asm__(".data\n.balign 8\n"
        ".globl __stack_limit\n__stack_limit:\n.fill 256, 4, 0xA5A5A5A5\n"
        ".globl __stack_top\n__stack_top:\n"
        ".globl __mt_flash_start\n__mt_flash_start:\n.space 64\n"
        ".globl __mt_flash_used_end\n__mt_flash_used_end:\n"
        ".globl __mt_ram_start\n__mt_ram_start:\n.space 64\n"
        ".globl __mt_ram_used_end\n__mt_ram_used_end:\n.text\n");

mt_fuzz_out_t mt_fuzz_out;
static int echo = -1;
static uint32_t ticks;

void mt_fuzz_out_reset(void)
{
    mt_fuzz_out.total = 0;
    mt_fuzz_out.bad = 0;
    if (echo < 0) {
        const char *e = getenv("MT_FUZZ_ECHO");
        echo = e && e[0] == '1';
    }
}

int mt_fuzz_out_ends_with(const char *s, uint32_t n)
{
    if (mt_fuzz_out.total < n || n > MT_FUZZ_TAIL) {
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        const uint64_t at = mt_fuzz_out.total - n + i;
        if (mt_fuzz_out.tail[at % MT_FUZZ_TAIL] != (uint8_t)s[i]) {
            return 0;
        }
    }
    return 1;
}

void board_init(void) {}

void board_uart_putc(uint8_t c)
{
    /* Replies are printable ASCII lines ending in CR LF (docs/protocol.md). */
    if (!((c >= 0x20u && c < 0x7Fu) || c == '\r' || c == '\n')) {
        mt_fuzz_out.bad++;
    }
    mt_fuzz_out.tail[mt_fuzz_out.total % MT_FUZZ_TAIL] = c;
    mt_fuzz_out.total++;
    if (echo > 0) {
        putchar(c);
    }
}

int board_uart_getc(void)
{
    return -1;
}

uint32_t board_counter_ticks(void)
{
    return ticks += 7u;
}

uint32_t board_counter_convert(uint32_t t)
{
    return t;
}

const char *board_counter_unit(void)
{
    return "instructions";
}

/* --- storage: NOR flash in RAM (the model of storage.h, checked) ------------------------ */

#define ERASE_BYTES 1024u
#define PROGRAM_BYTES 8u
#define REGION_BYTES MT_SLOTS_REGION_BYTES(MT_HEAD_BLOB_MAX, ERASE_BYTES, PROGRAM_BYTES)

static uint8_t flash[REGION_BYTES];

static int nor_read(const mt_storage_t *st, uint32_t off, void *dst, uint32_t n)
{
    MT_FUZZ_CHECK(off <= st->size && n <= st->size - off);
    memcpy(dst, flash + off, n);
    return 0;
}

static int nor_erase(const mt_storage_t *st, uint32_t off, uint32_t n)
{
    MT_FUZZ_CHECK(off % ERASE_BYTES == 0u && n % ERASE_BYTES == 0u);
    MT_FUZZ_CHECK(off <= st->size && n <= st->size - off);
    memset(flash + off, MT_STORAGE_ERASED, n);
    return 0;
}

static int nor_program(const mt_storage_t *st, uint32_t off, const void *src, uint32_t n)
{
    MT_FUZZ_CHECK(off % PROGRAM_BYTES == 0u && n % PROGRAM_BYTES == 0u);
    MT_FUZZ_CHECK(off <= st->size && n <= st->size - off);
    for (uint32_t i = 0; i < n; i++) {
        MT_FUZZ_CHECK(flash[off + i] == MT_STORAGE_ERASED); /* NOR: only erased bytes */
    }
    memcpy(flash + off, src, n);
    return 0;
}

static const mt_storage_t nor = {REGION_BYTES, ERASE_BYTES, PROGRAM_BYTES, nor_read,
                                 nor_erase, nor_program, 0, "fuzz-ram"};

void mt_fuzz_storage_erase(void)
{
    memset(flash, MT_STORAGE_ERASED, sizeof flash);
}

const mt_storage_t *board_storage(void)
{
    return &nor;
}
