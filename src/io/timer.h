/* Per-worker timers in user space: the worker turns the earliest deadline
 * into the timeout of its one io_uring_enter wait, so sleepers cost a slot
 * and no kernel object; a million of them are cheap. Timer records live on
 * the sleeping task's stack.
 *
 * Two structures hold them. Most programs arm timers of a few fixed lengths
 * (a 1 ms tick, a 30 s idle timeout), so deadlines mostly arrive in
 * increasing order: a timer whose deadline is no earlier than the last one
 * appended goes to the *lane*, a ring in arrival order, where arming,
 * firing and disarming are O(1) and nothing moves. Any other timer goes to
 * a 4-ary min-heap. The next deadline is the earlier of the two heads.
 *
 * A heap move writes the moved timer's new index into its record, on another
 * sleeper's stack: with 100k sleepers that is a cache and TLB miss per
 * level, eight levels per firing. The lane writes a timer's position once,
 * when it is armed, from its own stack. Disarming a lane timer leaves a
 * hole (timer NULL) where it was, skipped when the head reaches it; the
 * last one appended also moves the end back, so lane_last stays a live
 * deadline. When holes outnumber live timers three to one the lane is
 * compacted, which rewrites the live timers' positions, and a ring eight
 * times bigger than its span is halved (both amortised O(1) a disarm). */
#ifndef WEFT_IO_TIMER_H
#define WEFT_IO_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "task/task.h"

typedef struct weft__timer {
    uint64_t when;  /* CLOCK_MONOTONIC ns */
    uint32_t index; /* while armed: heap index, or lane position if in_lane */
    bool armed;
    bool fired;
    bool in_lane;
    weft_task *task; /* woken when it fires */
} weft__timer;

/* Deadlines are copied into the heap array next to their timer pointers, so
 * sifting compares contiguous memory instead of chasing a pointer into each
 * sleeper's stack (a cache miss per comparison with many sleepers). */
typedef struct weft__timer_slot {
    uint64_t when;
    weft__timer *timer;
} weft__timer_slot;

typedef struct weft__timers {
    weft__timer_slot *v; /* the heap */
    uint32_t len, cap;
    /* The lane: slots for positions head..tail-1 (free-running counters) at
     * lane[pos & (lane_cap - 1)]; lane_cap is 0 or a power of two. The slot
     * at head is always live (lane_live > 0) or the lane is empty. */
    weft__timer_slot *lane;
    uint32_t lane_head, lane_tail, lane_cap, lane_live;
    uint64_t lane_last; /* deadline at the lane's end (the latest live one) */
} weft__timers;

void weft__timers_fini(weft__timers *h);
/* Arms t (t->when and t->task set by the caller). Returns 0 or -ENOMEM.
 * While armed, t is its task's armed_timer. A task may move to another
 * worker only while it is runnable, and the hand-over disarms its timer
 * first (a runnable task needs no wake-up): whoever armed it re-arms it on
 * the new worker if it still needs it (see weft_sleep_until), or removes it
 * there, which is then a no-op. */
int weft__timer_add(weft__timers *h, weft__timer *t);
/* Disarms t if it is still armed. */
void weft__timer_remove(weft__timers *h, weft__timer *t);
/* Timers armed now. */
static inline uint32_t weft__timer_count(const weft__timers *h)
{
    return h->len + h->lane_live;
}
/* The slot of the timer due first, the earlier of the two heads (the
 * lane's on a tie), or NULL when no timer is armed. */
static inline const weft__timer_slot *weft__timer_first(const weft__timers *h)
{
    const weft__timer_slot *lane = h->lane_live ? &h->lane[h->lane_head & (h->lane_cap - 1)] : NULL;
    if (h->len && (!lane || h->v[0].when < lane->when))
        return &h->v[0];
    return lane;
}
/* Earliest deadline, or UINT64_MAX when no timer is armed. */
static inline uint64_t weft__timer_next(const weft__timers *h)
{
    const weft__timer_slot *first = weft__timer_first(h);
    return first ? first->when : UINT64_MAX;
}
/* Fires every timer due at `now`: marks it and wakes its task. Returns how
 * many fired. */
unsigned weft__timer_expire(weft__timers *h, uint64_t now);

#endif
