/* Task record slabs; see record.h. */
#include "task/record.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "common/fault.h"
#include "context/fiber.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Chunks double from 64 KiB up to 1 MiB, so a small program commits little
 * and a spawn storm maps few chunks. */
#define CHUNK_MIN   (64 * 1024)
#define CHUNK_MAX   (1024 * 1024)
#define CHUNK_HEAD  16 /* next chunk, this chunk's size; records stay 16-byte aligned */
#define RECORD_SIZE ((sizeof(weft_task) + 15) & ~(size_t)15)

static void poison(weft_task *t)
{
#ifdef WEFT_ASAN
    __asan_poison_memory_region(t, sizeof *t);
#else
    (void)t;
#endif
}

static void unpoison(weft_task *t)
{
#ifdef WEFT_ASAN
    __asan_unpoison_memory_region(t, sizeof *t);
#else
    (void)t;
#endif
}

/* Faults the chunk's pages in with one call. Taking them one at a time as
 * records are carved costs about 1.7x as much per page on the virtual
 * machines measured (bench/README.md), and a spawn storm is mostly that.
 * Kernels before 5.14 refuse the advice; the pages then fault on first use. */
static void populate(char *chunk, size_t bytes)
{
    uintptr_t page = 4096;
    uintptr_t lo = ((uintptr_t)chunk + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)chunk + bytes) & ~(page - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
}

static bool new_chunk(weft__record_pool *p)
{
    size_t bytes = p->chunk_bytes ? p->chunk_bytes * 2 : CHUNK_MIN;
    if (bytes > CHUNK_MAX)
        bytes = CHUNK_MAX;
    char *chunk = weft__malloc(bytes);
    if (!chunk)
        return false;
    populate(chunk, bytes);
    ((void **)chunk)[0] = p->chunks;
    ((size_t *)chunk)[1] = bytes;
    p->chunks = chunk;
    p->chunk_bytes = bytes;
    p->carve = chunk + CHUNK_HEAD;
    p->carve_end = chunk + bytes;
    return true;
}

weft_task *weft__record_alloc(weft__record_pool *p)
{
    weft_task *t = p->free;
    if (t) {
        unpoison(t);
        p->free = t->rq_next;
        return t;
    }
    if (p->carve + RECORD_SIZE > p->carve_end && !new_chunk(p))
        return NULL;
    t = (weft_task *)p->carve;
    p->carve += RECORD_SIZE;
    return t;
}

static void make_reusable(weft__record_pool *p, weft_task *t)
{
    t->rq_next = p->free;
    p->free = t;
    poison(t);
}

void weft__record_release_owned(weft_task *t)
{
    free(t->name);
    free(t->panic_msg);
    free(t->ext);
    t->name = t->panic_msg = NULL;
    t->ext = NULL;
}

void weft__record_free(weft__record_pool *p, weft_task *t)
{
    weft__record_release_owned(t);
#ifndef NDEBUG
    t->magic = TASK_MAGIC_DEAD;
    weft_task **slot = &p->quarantine[p->quarantine_next++ % WEFT_RECORD_QUARANTINE];
    if (*slot)
        make_reusable(p, *slot);
    *slot = t;
#else
    make_reusable(p, t);
#endif
}

void weft__record_pool_fini(weft__record_pool *p)
{
    void *chunk = p->chunks;
    while (chunk) {
        void *next = *(void **)chunk;
#ifdef WEFT_ASAN
        __asan_unpoison_memory_region(chunk, ((size_t *)chunk)[1]);
#endif
        free(chunk);
        chunk = next;
    }
    *p = (weft__record_pool){0};
}
