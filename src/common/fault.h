/* Fault injection: make the Nth allocation, mapping, SQE, worker thread
 * start, ring wait or full-SQ submit fail (or a cleanup's or a transfer's
 * result go wrong), so tests can prove that every error path releases what
 * it took. Disarmed it costs one well-predicted branch on a global flag.
 */
#ifndef WEFT_COMMON_FAULT_H
#define WEFT_COMMON_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum weft__fault_kind {
    WEFT_FAULT_ALLOC,      /* malloc/calloc through weft__malloc/weft__calloc */
    WEFT_FAULT_MMAP,       /* stack slab and signal stack mappings */
    WEFT_FAULT_SQE,        /* io_uring_get_sqe */
    WEFT_FAULT_CLEANUP,    /* a maintenance op's result becomes -EIO */
    WEFT_FAULT_THREAD,     /* pthread_create of a worker thread fails with EAGAIN */
    WEFT_FAULT_RING,       /* a worker's wait on its ring fails with -EIO */
    WEFT_FAULT_SUBMIT,     /* the submit that makes room in a full SQ fails with -EBUSY */
    WEFT_FAULT_ZERO_MOVED, /* a *_all transfer op is not issued and seems to move 0 bytes */
    WEFT_FAULT_PIDFD,      /* weft_process_spawn gets no pidfd (as under valgrind 3.19) */
    WEFT_FAULT_KINDS
} weft__fault_kind;

extern bool weft__fault_armed;

/* Arms kind so that the nth call from now (1-based) fails; 0 disarms it.
 * Exported for the test suite (tests link the static library). */
void weft__fault_arm(weft__fault_kind kind, uint64_t nth);
/* Arms kind so that the nth call from now and every one after it fail (a
 * failure that lasts: memory that stays short, a cleanup that never works);
 * weft__fault_arm(kind, 0) disarms it. */
void weft__fault_arm_from(weft__fault_kind kind, uint64_t nth);
/* How many calls of this kind were counted since the last arm. */
uint64_t weft__fault_count(weft__fault_kind kind);
bool weft__fault_slow(weft__fault_kind kind);

/* True when this call of `kind` must fail. */
static inline bool weft__fault_hit(weft__fault_kind kind)
{
    return __builtin_expect(__atomic_load_n(&weft__fault_armed, __ATOMIC_RELAXED), 0) &&
           weft__fault_slow(kind);
}

void *weft__malloc(size_t n);
void *weft__calloc(size_t n, size_t size);
/* calloc for types of extended alignment (align: a power of two, a
 * multiple of sizeof(void *)); free() releases it. */
void *weft__calloc_aligned(size_t n, size_t size, size_t align);

#endif
