/* What personalize.c takes from head_blob.c besides the public API of personalize.h. */
#ifndef MT_HEAD_BLOB_H
#define MT_HEAD_BLOB_H

#include <stdint.h>

#include "personalize.h"

/* The CRC-32 of the factory head's dimensions, weights, biases and feature mean (hd->c0,
 * hd->h and hd->factory set): a blob carries it and loads only into a head that has the
 * same (mt_head_load: MT_HEAD_EMODEL otherwise). */
uint32_t mt_head_factory_crc(const mt_head_t *hd);

#endif
