/* Per-operator counts for profiling builds (`mcutext build --profile`, the device benchmark).
 * The build passes -DMT_PROFILE=1 -include profile.h: the generated model's hook
 * MT_GEN_PROFILE(k), run before its k-th kernel call and once more at the end, then reads the
 * board's counter, and `classify` adds an `ops` line (docs/protocol.md). Normal builds leave
 * the hook empty: the model runs without any counter reads. */
#ifndef MT_PROFILE_H
#define MT_PROFILE_H

#include <stdint.h>

#ifndef MT_PROFILE
#define MT_PROFILE 0
#endif

#define MT_PROFILE_MAX_MARKS 64u

#if MT_PROFILE
void mt_profile_mark(uint32_t k);
#define MT_GEN_PROFILE(k) mt_profile_mark(k)
#endif

#endif
