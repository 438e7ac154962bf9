/* STM32F4 flash sectors as storage: see stm32f4_flash.h.
 *
 * Erase and program run from flash: the CPU stalls on instruction fetches while the single
 * bank is busy (up to about 0.5 s for a 16 KB sector erase, RM0368's tERASE16KB), so no
 * code needs to be copied to RAM. The UART is polled and the protocol sends one request at
 * a time, so no byte arrives during the stall. A power cut during an operation leaves a
 * prefix of it done (a torn word may hold anything): the model storage.h states. */
#include "stm32f4_flash.h"

#include "cortex_m.h"

#define FLASH_BASE_REG 0x40023C00u
#define FLASH_ACR MT_REG(FLASH_BASE_REG + 0x00u)
#define FLASH_KEYR MT_REG(FLASH_BASE_REG + 0x04u)
#define FLASH_SR MT_REG(FLASH_BASE_REG + 0x0Cu)
#define FLASH_CR MT_REG(FLASH_BASE_REG + 0x10u)

#define KEY1 0x45670123u
#define KEY2 0xCDEF89ABu

#define SR_EOP (1u << 0)
#define SR_ERRORS (0xF2u) /* OPERR, WRPERR, PGAERR, PGPERR, PGSERR */
#define SR_BSY (1u << 16)
#define CR_PG (1u << 0)
#define CR_SER (1u << 1)
#define CR_SNB_SHIFT 3u
#define CR_PSIZE_X32 (2u << 8)
#define CR_STRT (1u << 16)
#define CR_LOCK (1u << 31)
#define ACR_DCEN (1u << 10)
#define ACR_DCRST (1u << 12)

typedef struct {
    uint32_t base, first, sector_bytes;
} f4_ctx_t;

static f4_ctx_t ctx;

static void wait_idle(void)
{
    while (FLASH_SR & SR_BSY) {
    }
}

static int unlock(void)
{
    wait_idle();
    if (FLASH_CR & CR_LOCK) {
        FLASH_KEYR = KEY1;
        FLASH_KEYR = KEY2;
    }
    FLASH_SR = SR_EOP | SR_ERRORS; /* clear stale flags (write 1 to clear) */
    return (FLASH_CR & CR_LOCK) != 0u;
}

static int finish(void)
{
    wait_idle();
    const uint32_t sr = FLASH_SR;
    FLASH_CR = CR_LOCK;
    return (sr & SR_ERRORS) != 0u;
}

/* The data cache may hold words of an erased sector (RM0090 3.5.2: reset it after an erase). */
static void flush_data_cache(void)
{
    const uint32_t acr = FLASH_ACR;
    if (acr & ACR_DCEN) {
        FLASH_ACR = acr & ~ACR_DCEN;
        FLASH_ACR = (acr & ~ACR_DCEN) | ACR_DCRST;
        FLASH_ACR = acr & ~ACR_DCEN;
        FLASH_ACR = acr;
    }
}

static int in_region(const mt_storage_t *st, uint32_t off, uint32_t n)
{
    return off <= st->size && n <= st->size - off;
}

static int f4_read(const mt_storage_t *st, uint32_t off, void *dst, uint32_t n)
{
    const f4_ctx_t *c = st->ctx;
    if (!in_region(st, off, n))
        return 1;
    const volatile uint8_t *src = (const volatile uint8_t *)(c->base + off);
    uint8_t *d = dst;
    for (uint32_t i = 0; i < n; ++i)
        d[i] = src[i];
    return 0;
}

static int f4_erase(const mt_storage_t *st, uint32_t off, uint32_t n)
{
    const f4_ctx_t *c = st->ctx;
    if (!in_region(st, off, n) || off % c->sector_bytes || n % c->sector_bytes)
        return 1;
    int err = 0;
    for (uint32_t s = off / c->sector_bytes; !err && s < (off + n) / c->sector_bytes; ++s) {
        if (unlock())
            return 1;
        FLASH_CR = CR_PSIZE_X32 | CR_SER | ((c->first + s) << CR_SNB_SHIFT);
        FLASH_CR |= CR_STRT;
        err = finish();
    }
    flush_data_cache();
    return err;
}

static int f4_program(const mt_storage_t *st, uint32_t off, const void *src, uint32_t n)
{
    const f4_ctx_t *c = st->ctx;
    if (!in_region(st, off, n) || (off | n) & 3u)
        return 1;
    const uint8_t *p = src;
    volatile uint32_t *dst = (volatile uint32_t *)(c->base + off);
    for (uint32_t i = 0; i < n / 4u; ++i) {
        /* NOR: a word can only be programmed from erased (programming over zeros sets
         * PGSERR/PGPERR on the F4; refuse it up front) */
        if (dst[i] != 0xFFFFFFFFu)
            return 1;
    }
    if (unlock())
        return 1;
    FLASH_CR = CR_PSIZE_X32 | CR_PG;
    int err = 0;
    for (uint32_t i = 0; !err && i < n / 4u; ++i) {
        const uint32_t w = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                           (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
        dst[i] = w;
        __asm volatile("dsb" ::: "memory");
        wait_idle();
        err = (FLASH_SR & SR_ERRORS) != 0u || dst[i] != w;
    }
    FLASH_CR = 0u;
    return finish() || err;
}

static mt_storage_t storage = {0, 0, 4u, f4_read, f4_erase, f4_program, &ctx, "flash"};

const mt_storage_t *mt_stm32f4_flash_storage(uint32_t base, uint32_t first, uint32_t count,
                                             uint32_t sector_bytes)
{
    ctx.base = base;
    ctx.first = first;
    ctx.sector_bytes = sector_bytes;
    storage.size = count * sector_bytes;
    storage.erase_size = sector_bytes;
    return &storage;
}
