/* Reply formatting shared by the commands (protocol: docs/protocol.md): `key value` and
 * `key used of budget` lines, escaped strings, error lines counted for `stats`, and the
 * floats of the personalized head (three decimals, and their IEEE-754 bits in hex). The
 * integer formatters and the framing underneath are protocol.c's. */
#include "app_internal.h"
#include "protocol.h"

HEAD_SHARED uint32_t str_len(const char *s)
{
    uint32_t n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

void put_str_escaped(const char *s)
{
    mt_put_escaped((const uint8_t *)s, str_len(s));
}

void put_kv(const char *key, uint32_t v)
{
    mt_put(key);
    mt_put_char(' ');
    mt_put_u32(v);
    mt_put_eol();
}

void put_used_of(const char *key, uint32_t used, uint32_t budget)
{
    mt_put(key);
    mt_put_char(' ');
    mt_put_u32(used);
    mt_put(" of ");
    mt_put_u32(budget);
    mt_put_eol();
}

void put_error(int code, const char *message)
{
    count_one(&stats.errors);
    mt_put_error(code, message);
}

#if HAVE_HEAD
void put_hex32(uint32_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int k = 28; k >= 0; k -= 4) {
        mt_put_char(hex[(v >> k) & 15u]);
    }
}

/* Three decimals (half away from zero); "-" for -inf (a row not scored), NaN or a value
 * beyond +-2e6. */
void put_float3(float x)
{
    if (!(x >= -2e6f && x <= 2e6f)) {
        mt_put_char('-');
        return;
    }
    const float t = x * 1000.0f;
    mt_put_milli((int32_t)(t >= 0.0f ? t + 0.5f : t - 0.5f));
}
#endif
