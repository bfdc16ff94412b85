/* Saturating arithmetic on uint64_t (internal): deadlines are "now plus a
 * duration", and a duration of UINT64_MAX (or anything that would wrap)
 * means "never", which must stay the largest time rather than wrap into
 * the past. */
#ifndef WEFT_COMMON_SATURATE_H
#define WEFT_COMMON_SATURATE_H

#include <stdint.h>

/* a + b, or UINT64_MAX where that would wrap. */
static inline uint64_t weft__add_sat(uint64_t a, uint64_t b)
{
    uint64_t sum;
    return __builtin_add_overflow(a, b, &sum) ? UINT64_MAX : sum;
}

/* a * b, or UINT64_MAX where that would wrap. */
static inline uint64_t weft__mul_sat(uint64_t a, uint64_t b)
{
    uint64_t product;
    return __builtin_mul_overflow(a, b, &product) ? UINT64_MAX : product;
}

#endif
