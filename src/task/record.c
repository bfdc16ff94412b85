/* Task record slabs; see record.h. */
#include "task/record.h"

#include <stdlib.h>

#include "common/fault.h"
#include "context/fiber.h"

#define CHUNK_BYTES (64 * 1024)
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

weft_task *weft__record_alloc(weft__record_pool *p)
{
    weft_task *t = p->free;
    if (t) {
        unpoison(t);
        p->free = t->rq_next;
        return t;
    }
    if (p->carve + RECORD_SIZE > p->carve_end) {
        char *chunk = weft__malloc(CHUNK_BYTES);
        if (!chunk)
            return NULL;
        *(void **)chunk = p->chunks;
        p->chunks = chunk;
        p->carve = chunk + 16;
        p->carve_end = chunk + CHUNK_BYTES;
    }
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
        __asan_unpoison_memory_region(chunk, CHUNK_BYTES);
#endif
        free(chunk);
        chunk = next;
    }
    *p = (weft__record_pool){0};
}
