/* Fault injection counters; see fault.h. Counters are atomics so that tests
 * under TSan may arm faults while workers run. */
#include "common/fault.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool weft__fault_armed;
static _Atomic uint64_t fault_nth[WEFT_FAULT_KINDS];
static _Atomic uint64_t fault_seen[WEFT_FAULT_KINDS];
static _Atomic bool fault_from[WEFT_FAULT_KINDS]; /* the nth and every later call */

static void arm(weft__fault_kind kind, uint64_t nth, bool from)
{
    atomic_store(&fault_seen[kind], 0);
    atomic_store(&fault_from[kind], from);
    atomic_store(&fault_nth[kind], nth);
    bool any = false;
    for (int k = 0; k < WEFT_FAULT_KINDS; k++)
        any |= atomic_load(&fault_nth[k]) != 0;
    __atomic_store_n(&weft__fault_armed, any, __ATOMIC_RELAXED);
}

void weft__fault_arm(weft__fault_kind kind, uint64_t nth)
{
    arm(kind, nth, false);
}

void weft__fault_arm_from(weft__fault_kind kind, uint64_t nth)
{
    arm(kind, nth, true);
}

uint64_t weft__fault_count(weft__fault_kind kind)
{
    return atomic_load(&fault_seen[kind]);
}

bool weft__fault_slow(weft__fault_kind kind)
{
    uint64_t seen = atomic_fetch_add(&fault_seen[kind], 1) + 1;
    uint64_t nth = atomic_load(&fault_nth[kind]);
    return nth != 0 && (seen == nth || (seen > nth && atomic_load(&fault_from[kind])));
}

void *weft__malloc(size_t n)
{
    if (weft__fault_hit(WEFT_FAULT_ALLOC))
        return NULL;
    return malloc(n);
}

void *weft__calloc(size_t n, size_t size)
{
    if (weft__fault_hit(WEFT_FAULT_ALLOC))
        return NULL;
    return calloc(n, size);
}

void *weft__calloc_aligned(size_t n, size_t size, size_t align)
{
    if (weft__fault_hit(WEFT_FAULT_ALLOC))
        return NULL;
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p;
    if (posix_memalign(&p, align, n * size) != 0)
        return NULL;
    return memset(p, 0, n * size);
}
