/* Runtime configuration: validation and defaults (internal). */
#ifndef WEFT_RUNTIME_CONFIG_H
#define WEFT_RUNTIME_CONFIG_H

#include <weft/runtime.h>

#define WEFT_MAX_QUEUES       64
#define WEFT_MAX_WEIGHT       10000
#define WEFT_MAX_RING_ENTRIES 32768
/* Each worker's ring has its own tag for direct descriptors, 1..1023
 * (ring/resource.h), so that one passed to another worker is refused. */
#define WEFT_MAX_WORKERS 1023

/* Copies *in (NULL = defaults) into *out with every zero field replaced by
 * its default. Returns 0, or -EINVAL with the reason recorded for
 * weft_last_config_error(). */
int weft__config_resolve(const weft_config *in, weft_config *out);
/* Records a reason for weft_last_config_error() and returns -EINVAL. */
__attribute__((format(printf, 1, 2))) int weft__config_reject(const char *fmt, ...);
/* Index of the queue with this name, or -ENOENT. */
int weft__config_queue_index(const weft_config *cfg, const char *name);

#endif
