/* Per-worker timers in user space: the worker turns the earliest deadline
 * into the timeout of its one io_uring_enter wait, so sleepers cost a slot
 * and no kernel object; a million of them are cheap. Timer records live on
 * the sleeping task's stack.
 *
 * Two structures hold them. Most programs arm timers of a few fixed lengths
 * (a 1 ms tick, a 30 s idle timeout), so the deadlines of each length arrive
 * in increasing order: such timers go to *lanes*, rings in arrival order,
 * where arming, firing and disarming are O(1) and nothing moves. A timer
 * goes to the lane whose last deadline is the latest one not after its own
 * (so that a 1 ms sleep does not end up behind a 30 s timeout, and the 30 s
 * timeouts keep to a lane of their own), else to an empty lane; with
 * WEFT__TIMER_LANES lanes all holding later deadlines (or when the lane's
 * ring cannot grow), to a 4-ary min-heap.
 * The next deadline is the earliest of the lanes' heads and the heap's top.
 * With one lane, a 30 s timeout armed first sent every shorter timer after
 * it to the heap (bench/README.md, `sleeplong`).
 *
 * Arming never fails: when the heap cannot grow (no memory), the timer goes
 * to the *spill*, an unsorted list linked through the timer records, which
 * the next-deadline scan walks whole. It holds timers only while memory is
 * short, and it lets a deadline or a sleep never fail to arm (a wait whose
 * deadline could not be armed would otherwise outlast it).
 *
 * A heap move writes the moved timer's new index into its record, on another
 * sleeper's stack: with 100k sleepers that is a cache and TLB miss per
 * level, eight levels per firing. A lane writes a timer's position once,
 * when it is armed, from its own stack. Disarming a lane timer leaves a
 * hole (timer NULL) where it was, skipped when the head reaches it; the
 * last one appended also moves the end back, so a lane's `last` stays a live
 * deadline. When holes outnumber live timers three to one the lane is
 * compacted, which rewrites the live timers' positions, and a ring eight
 * times bigger than its span is halved (both amortised O(1) a disarm). */
#ifndef WEFT_IO_TIMER_H
#define WEFT_IO_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "task/task.h"

/* Lanes per worker. Each distinct timer length a program arms concurrently
 * wants one; the heap takes the rest. */
#define WEFT__TIMER_LANES 4
/* weft__timer.lane of a timer in the heap, and of one in the spill. */
#define WEFT__TIMER_IN_HEAP UINT8_MAX
#define WEFT__TIMER_SPILLED (UINT8_MAX - 1)
_Static_assert(WEFT__TIMER_LANES < WEFT__TIMER_SPILLED, "lane numbers fit weft__timer.lane");

typedef struct weft__timer {
    uint64_t when;  /* CLOCK_MONOTONIC ns */
    uint32_t index; /* while armed: heap index, or position in its lane */
    bool armed;
    bool fired;
    uint8_t lane;    /* while armed: its lane, WEFT__TIMER_IN_HEAP or _SPILLED */
    weft_task *task; /* woken when it fires */
    struct weft__timer *spill_prev, *spill_next; /* while spilled */
} weft__timer;

/* Deadlines are copied into the heap array next to their timer pointers, so
 * sifting compares contiguous memory instead of chasing a pointer into each
 * sleeper's stack (a cache miss per comparison with many sleepers). */
typedef struct weft__timer_slot {
    uint64_t when;
    weft__timer *timer;
} weft__timer_slot;

/* A lane: slots for positions head..tail-1 (free-running counters) at
 * ring[pos & (cap - 1)]; cap is 0 or a power of two. The slot at head is
 * always live (live > 0) or the lane is empty. */
typedef struct weft__timer_lane {
    weft__timer_slot *ring;
    uint32_t head, tail, cap, live;
    uint64_t last; /* deadline at the lane's end (the latest live one) */
} weft__timer_lane;

typedef struct weft__timers {
    weft__timer_slot *v; /* the heap */
    uint32_t len, cap;
    uint32_t lane_live; /* live timers in all lanes */
    /* Lanes 0..nlanes-1 have been opened (picked for a timer, even when
     * their ring then could not be allocated); the others are untouched,
     * so that a program arming one length of timer looks at one lane. */
    uint32_t nlanes;
    uint32_t nspill;    /* timers in the spill */
    weft__timer *spill; /* armed when the heap could not grow; unsorted */
    weft__timer_lane lanes[WEFT__TIMER_LANES];
} weft__timers;

void weft__timers_fini(weft__timers *h);
/* Arms t (t->when and t->task set by the caller); never fails (see the
 * spill above). While armed, t is its task's armed_timer. A task may move to another
 * worker only while it is runnable, and the hand-over disarms its timer
 * first (a runnable task needs no wake-up): whoever armed it re-arms it on
 * the new worker if it still needs it (see weft_sleep_until), or removes it
 * there, which is then a no-op. */
void weft__timer_add(weft__timers *h, weft__timer *t);
/* Disarms t if it is still armed. */
void weft__timer_remove(weft__timers *h, weft__timer *t);
/* Timers armed now. */
static inline uint32_t weft__timer_count(const weft__timers *h)
{
    return h->len + h->lane_live + h->nspill;
}
/* The timer due first, the earliest of the heads and the spill (of timers
 * due at the same time, any one), or NULL when no timer is armed. */
static inline weft__timer *weft__timer_first(const weft__timers *h)
{
    weft__timer *first = NULL;
    uint64_t when = UINT64_MAX;
    if (h->lane_live) {
        for (uint32_t i = 0; i < h->nlanes; i++) {
            const weft__timer_lane *l = &h->lanes[i];
            if (!l->live)
                continue;
            const weft__timer_slot *head = &l->ring[l->head & (l->cap - 1)];
            if (!first || head->when < when) {
                first = head->timer;
                when = head->when;
            }
        }
    }
    if (h->len && (!first || h->v[0].when < when)) {
        first = h->v[0].timer;
        when = h->v[0].when;
    }
    for (weft__timer *t = h->spill; t; t = t->spill_next)
        if (!first || t->when < when) {
            first = t;
            when = t->when;
        }
    return first;
}
/* Earliest deadline, or UINT64_MAX when no timer is armed. */
static inline uint64_t weft__timer_next(const weft__timers *h)
{
    const weft__timer *first = weft__timer_first(h);
    return first ? first->when : UINT64_MAX;
}
/* Fires every timer due at `now`: marks it and wakes its task. Returns how
 * many fired. */
unsigned weft__timer_expire(weft__timers *h, uint64_t now);

#endif
