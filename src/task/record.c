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

/* Chunks double from 64 KiB up to 1 MiB, so a small program commits little;
 * past that a spawn storm gets 2 MiB chunks on transparent huge pages. */
#define CHUNK_MIN    (64 * 1024)
#define CHUNK_MAX    (1024 * 1024)
#define CHUNK_HUGE   (2 * 1024 * 1024)
#define CHUNK_HEAD   16 /* next chunk, this chunk's size; records stay 16-byte aligned */
#define CHUNK_MAPPED 1  /* low bit of the size: munmap, not free */
#define RECORD_SIZE  ((sizeof(weft_task) + 15) & ~(size_t)15)

/* Where a chunk's records start: on a cache line, so that each spans 4
 * lines, not 5. */
static char *records_start(void *chunk)
{
    return (char *)(((uintptr_t)chunk + CHUNK_HEAD + 63) & ~(uintptr_t)63);
}

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

/* A 2 MiB-aligned chunk advised onto a huge page, or NULL. On the machines
 * measured, fresh memory costs about 1.4 ns a byte on 4 KiB pages even when
 * populated (each page's first access still traps to the hypervisor) and
 * 0.06 ns on a huge page, as long as the host still backs the guest memory
 * behind it. Memory the guest has reported free to the host (8 MiB blocks,
 * some seconds after it was freed) must be backed anew, and then a huge
 * page costs about 2.2 ns a byte too: nothing here can avoid that. Where
 * huge pages are off the advice is ignored and the chunk is an ordinary
 * populated one. */
static char *map_huge_chunk(void)
{
    if (weft__fault_hit(WEFT_FAULT_MMAP))
        return NULL;
    size_t span = 2 * (size_t)CHUNK_HUGE;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *chunk = (char *)(((uintptr_t)raw + CHUNK_HUGE - 1) & ~(uintptr_t)(CHUNK_HUGE - 1));
    if (chunk > raw)
        munmap(raw, (size_t)(chunk - raw));
    size_t tail = (size_t)(raw + span - (chunk + CHUNK_HUGE));
    if (tail)
        munmap(chunk + CHUNK_HUGE, tail);
    (void)madvise(chunk, CHUNK_HUGE, MADV_HUGEPAGE);
    return chunk;
}

static bool new_chunk(weft__record_pool *p)
{
    size_t bytes = p->chunk_bytes ? p->chunk_bytes * 2 : CHUNK_MIN;
    char *chunk = NULL;
    size_t tag = 0;
    if (bytes > CHUNK_MAX) {
        chunk = map_huge_chunk();
        if (chunk)
            tag = CHUNK_MAPPED;
        bytes = chunk ? CHUNK_HUGE : CHUNK_MAX; /* no mapping: a malloc'd chunk */
    }
    if (!chunk)
        chunk = weft__malloc(bytes);
    if (!chunk)
        return false;
    populate(chunk, bytes);
    ((void **)chunk)[0] = p->chunks;
    ((size_t *)chunk)[1] = bytes | tag;
    p->chunks = chunk;
    p->chunk_bytes = bytes;
    p->carve = records_start(chunk);
    p->carve_end = chunk + bytes;
    return true;
}

weft_task *weft__record_alloc(weft__record_pool *p)
{
    weft_task *t = p->free;
    p->outstanding++;
    if (t) {
        unpoison(t);
        p->free = t->rq_next;
        /* The next spawn writes all of the next free record: start
         * loading it (reused records are cold after a storm). */
        if (p->free)
            for (size_t off = 0; off < sizeof *t; off += 64)
                __builtin_prefetch((char *)p->free + off, 1, 3);
        return t;
    }
    if (p->carve + RECORD_SIZE > p->carve_end && !new_chunk(p)) {
        p->outstanding--;
        return NULL;
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
    /* Most tasks own none of them: three calls to free(NULL), 13 of the
     * some 900 instructions a spawn+join costs (callgrind). */
    if (!t->name && !t->panic_msg && !t->ext)
        return;
    free(t->name);
    free(t->panic_msg);
    free(t->ext);
    t->name = t->panic_msg = NULL;
    t->ext = NULL;
}

void weft__record_free(weft__record_pool *p, weft_task *t)
{
    p->outstanding--;
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

void weft__record_pool_fini(weft__record_pool *p, bool records_held)
{
    void *chunk = p->chunks;
    while (chunk) {
        void *next = *(void **)chunk;
        size_t word = ((size_t *)chunk)[1];
        size_t bytes = word & ~(size_t)CHUNK_MAPPED;
#ifdef WEFT_ASAN
        /* Mapped chunks especially: the address may be mapped again later. */
        __asan_unpoison_memory_region(chunk, bytes);
#endif
        /* A finished task whose handle was never joined or detached still
         * owns its name, panic message and deadline stack (a freed record
         * owns nothing: weft__record_release_owned cleared them). Every
         * record that fits was carved, but in the newest chunk only those
         * before the carving point. */
        if (records_held) {
            char *end = chunk == p->chunks ? p->carve : (char *)chunk + bytes;
            for (char *r = records_start(chunk); r + RECORD_SIZE <= end; r += RECORD_SIZE) {
                weft_task *t = (weft_task *)r;
                /* A task set never destroyed would keep pointing here. */
                if (t->ext && t->ext->set)
                    weft__taskset_forget(t->ext->set);
                weft__record_release_owned(t);
            }
        }
        if (word & CHUNK_MAPPED)
            munmap(chunk, bytes);
        else
            free(chunk);
        chunk = next;
    }
    *p = (weft__record_pool){0};
}
