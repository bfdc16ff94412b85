/* Parking and waking sync waiters; see waitlist.h for the hand-over protocol. */
#include "common/saturate.h"
#include "sync/waitlist.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <weft/io.h>

#include "observe/trace.h"

/* The waiter side of the hand-over: after the claim, wait for the waker to
 * be done with the node (and with the task record it wakes). */
void weft__waiter_wait_done(_Atomic uint32_t *state)
{
    unsigned spins = 0;
    /* Pairs with the release store of WAITER_DONE in weft__waiter_wake. */
    while (atomic_load_explicit(state, memory_order_acquire) != WAITER_DONE)
        weft__backoff(&spins);
}

/* An interrupted wait: unlinks w under *lock if no waker has claimed it,
 * and says whether it did (else the claim stands and w must be waited
 * out). */
static bool unlink_if_waiting(weft__waiter *w, unsigned *lock, weft__waitlist *l)
{
    weft__spin_lock(lock);
    bool still_waiting = atomic_load_explicit(&w->state, memory_order_relaxed) == WAITER_WAITING;
    if (still_waiting)
        waitlist_remove(l, w);
    weft__spin_unlock(lock);
    return still_waiting;
}

int weft__waiter_park(weft__waiter *w, unsigned *lock, weft__waitlist *l, bool interruptible)
{
    for (;;) {
        int r = 0;
        if (interruptible)
            r = weft__task_park_interruptible();
        else
            weft__task_park();
        /* Wakes may be spurious (a stale notification from an earlier
         * wait, a cancel that comes to nothing): the state decides. */
        if (atomic_load_explicit(&w->state, memory_order_acquire) != WAITER_WAITING)
            break;
        if (r < 0) {
            if (unlink_if_waiting(w, lock, l))
                return r;
            break; /* a claim won the race: it stands */
        }
    }
    weft__waiter_wait_done(&w->state);
    return w->result;
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Sleeps while *addr == val, until the absolute CLOCK_MONOTONIC time
 * deadline_ns (FUTEX_WAIT_BITSET measures against that clock). */
static void futex_wait_until(_Atomic uint32_t *addr, uint32_t val, uint64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET_PRIVATE, val, &ts, NULL,
            FUTEX_BITSET_MATCH_ANY);
}

uint64_t weft__deadline_after(uint64_t timeout_ns)
{
    uint64_t now = weft_now_ns();
    return weft__add_sat(now, timeout_ns);
}

int weft__waiter_block(weft__waiter *w)
{
    _Atomic uint32_t *state = waiter_state(w);
    uint32_t s;
    /* EINTR and EAGAIN just go round again. */
    while ((s = atomic_load_explicit(state, memory_order_acquire)) != WAITER_DONE)
        futex_wait(state, s);
    return w->result;
}

int weft__waiter_sleep_until(_Atomic uint32_t *state, uint64_t deadline_ns)
{
    uint32_t s;
    while ((s = atomic_load_explicit(state, memory_order_acquire)) == WAITER_WAITING) {
        if (deadline_ns != UINT64_MAX && weft_now_ns() >= deadline_ns)
            return -ETIMEDOUT;
        if (deadline_ns == UINT64_MAX)
            futex_wait(state, s);
        else
            futex_wait_until(state, s, deadline_ns);
    }
    return 0;
}

int weft__waiter_block_until(weft__waiter *w, unsigned *lock, weft__waitlist *l,
                             uint64_t deadline_ns)
{
    if (weft__waiter_sleep_until(&w->state, deadline_ns) < 0 && unlink_if_waiting(w, lock, l))
        return -ETIMEDOUT;
    /* Claimed (a claim that raced with the time limit stands). */
    return weft__waiter_block(w);
}

void weft__waiter_wake(weft__waiter *w)
{
    if (!w)
        return;
    weft_task *t = w->task;
    _Atomic uint32_t *state = waiter_state(w);
    if (t) {
        weft__task_wake(t);
        /* Pairs with the acquire in weft__waiter_wait_done: from here on
         * the node and the task may vanish. */
        atomic_store_explicit(state, WAITER_DONE, memory_order_release);
    } else {
        atomic_store_explicit(state, WAITER_DONE, memory_order_release);
        /* The thread may already have seen DONE and left, so the node's
         * address may be stale. A private futex wake only hashes the
         * address, and a stray wake is harmless: every futex sleeper must
         * re-check its condition anyway (ours do). */
        futex_wake(state);
    }
}

weft__waiter *weft__waitlist_claim_live_after(weft__waitlist *l, weft__waiter *first, int result)
{
    for (weft__waiter *w = first; w; w = w->next)
        if (waitlist_try_claim(l, w, result))
            return w;
    return NULL;
}

void weft__waiter_wake_chain(weft__waiter *first)
{
    while (first) {
        weft__waiter *next = first->next; /* read before the node may vanish */
        weft__waiter_wake(first);
        first = next;
    }
}

void weft__sync_bug(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("weft: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    weft__trace_abort(weft__worker_self());
    abort();
}
