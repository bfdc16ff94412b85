/* Per-worker timers: a 4-ary min-heap of deadlines in user space. The worker
 * turns the earliest deadline into the timeout of its one io_uring_enter
 * wait, so sleepers cost a heap slot and no kernel object; a million of them
 * are cheap. Timer records live on the sleeping task's stack. */
#ifndef WEFT_IO_TIMER_H
#define WEFT_IO_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "task/task.h"

typedef struct weft__timer {
    uint64_t when;  /* CLOCK_MONOTONIC ns */
    uint32_t index; /* position in the heap while armed */
    bool armed;
    bool fired;
    weft_task *task; /* woken when it fires */
} weft__timer;

/* Deadlines are copied into the heap array next to their timer pointers, so
 * sifting compares contiguous memory instead of chasing a pointer into each
 * sleeper's stack (a cache miss per comparison with many sleepers). */
typedef struct weft__timer_slot {
    uint64_t when;
    weft__timer *timer;
} weft__timer_slot;

typedef struct weft__timer_heap {
    weft__timer_slot *v;
    uint32_t len, cap;
} weft__timer_heap;

void weft__timer_heap_fini(weft__timer_heap *h);
/* Arms t (t->when and t->task set by the caller). Returns 0 or -ENOMEM.
 * While armed, t is its task's armed_timer. A task may move to another
 * worker only while it is runnable, and the hand-over disarms its timer
 * first (a runnable task needs no wake-up): whoever armed it re-arms it on
 * the new worker if it still needs it (see weft_sleep_until), or removes it
 * there, which is then a no-op. */
int weft__timer_add(weft__timer_heap *h, weft__timer *t);
/* Disarms t if it is still armed. */
void weft__timer_remove(weft__timer_heap *h, weft__timer *t);
/* Earliest deadline, or UINT64_MAX when no timer is armed. */
static inline uint64_t weft__timer_next(const weft__timer_heap *h)
{
    return h->len ? h->v[0].when : UINT64_MAX;
}
/* Fires every timer due at `now`: marks it and wakes its task. Returns how
 * many fired. */
unsigned weft__timer_expire(weft__timer_heap *h, uint64_t now);

#endif
