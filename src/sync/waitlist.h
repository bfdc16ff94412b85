/* Waiters, waiter lists and the spinlock every sync primitive uses (internal).
 *
 * Each primitive keeps its state behind a small spinlock, held only to look
 * at counters and link or unlink waiters, never across a park or a syscall.
 * A waiter is a node on the waiting task's (or foreign thread's) stack,
 * queued FIFO in the primitive.
 *
 * The hand-over protocol, the one subtle part. A waker, holding the lock,
 * unlinks a waiter, fills in its result and marks it CLAIMED. After dropping
 * the lock it wakes the waiter and only then marks it DONE. The waiter, once
 * it sees CLAIMED, waits for DONE before it returns, because returning frees
 * the node (its stack frame) and may end the task whose record the waker is
 * still touching in weft__task_wake. A waiter that gives up (cancellation,
 * deadline) takes the lock and unlinks itself only while it is still
 * WAITING; if a claim won the race, the claim stands and the call succeeds.
 * The window between CLAIMED and DONE is the waker's weft__task_wake: a CAS
 * and, for a task of another worker, at most one syscall to ring it (after
 * a broadcast, also the wakes of the waiters before it in the chain). So
 * the wait for DONE is a short spin that falls back to sched_yield.
 */
#ifndef WEFT_SYNC_WAITLIST_H
#define WEFT_SYNC_WAITLIST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <weft/sync.h>

#include "task/task.h"
#include "common/spinlock.h"

enum {
    WAITER_WAITING = 0, /* linked in a list */
    WAITER_CLAIMED = 1, /* unlinked by a waker, which has not finished waking it */
    WAITER_DONE = 2,    /* the waker is done with the node */
};

struct weft__waiter {
    struct weft__waiter *next, *prev;
    weft_task *task;        /* NULL: a foreign thread sleeping on `state` (futex) */
    _Atomic uint32_t state; /* WAITER_* */
    int result;             /* set by the claimer: what the wait returns */
    void *buf;              /* channel: the element to send or the place to receive into */
};
typedef struct weft__waiter weft__waiter;

/* ---- lists (under the primitive's lock) ---------------------------------- */

static inline void waitlist_push(weft__waitlist *l, weft__waiter *w)
{
    w->next = NULL;
    w->prev = l->_last;
    if (l->_last)
        l->_last->next = w;
    else
        l->_first = w;
    l->_last = w;
}

/* Links w right after pos, or first when pos is NULL. */
static inline void waitlist_insert_after(weft__waitlist *l, weft__waiter *pos, weft__waiter *w)
{
    w->prev = pos;
    w->next = pos ? pos->next : l->_first;
    if (w->next)
        w->next->prev = w;
    else
        l->_last = w;
    if (pos)
        pos->next = w;
    else
        l->_first = w;
}

static inline void waitlist_remove(weft__waitlist *l, weft__waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        l->_first = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        l->_last = w->prev;
}

static inline bool waitlist_empty(const weft__waitlist *l)
{
    return l->_first == NULL;
}

/* Unlinks waiter w from l and claims it with result. Hand it to
 * weft__waiter_wake after dropping the lock. */
static inline void waitlist_claim(weft__waitlist *l, weft__waiter *w, int result)
{
    waitlist_remove(l, w);
    w->result = result;
    /* Pairs with the acquire loads in weft__waiter_park. */
    atomic_store_explicit(&w->state, WAITER_CLAIMED, memory_order_release);
}

/* Unlinks the first waiter and claims it with result; NULL when empty. */
static inline weft__waiter *waitlist_claim_first(weft__waitlist *l, int result)
{
    weft__waiter *w = l->_first;
    if (w)
        waitlist_claim(l, w, result);
    return w;
}

/* Unlinks and claims every waiter with result; returns them as a chain
 * through `next` for weft__waiter_wake_chain. */
static inline weft__waiter *waitlist_claim_all(weft__waitlist *l, int result)
{
    weft__waiter *first = l->_first;
    for (weft__waiter *w = first; w; w = w->next) {
        w->result = result;
        atomic_store_explicit(&w->state, WAITER_CLAIMED, memory_order_release);
    }
    l->_first = l->_last = NULL;
    return first;
}

/* ---- waiting and waking -------------------------------------------------- */

static inline void waiter_init(weft__waiter *w, weft_task *task, void *buf)
{
    w->task = task;
    atomic_init(&w->state, WAITER_WAITING);
    w->result = 0;
    w->buf = buf;
}

/* Called by the current task after it pushed w (waiter_init'ed with the
 * task) on l under *lock and dropped the lock. Parks until a waker claims
 * w, and returns the result the waker set. With interruptible, a
 * cancellation or deadline that comes first unlinks w (under *lock) and
 * returns -ECANCELED or -ETIMEDOUT. */
int weft__waiter_park(weft__waiter *w, unsigned *lock, weft__waitlist *l, bool interruptible);
/* The same for a foreign thread (w->task NULL): sleeps on a futex until
 * claimed, never interrupted. */
int weft__waiter_block(weft__waiter *w);
/* Wakes a waiter claimed under the lock; call after dropping the lock.
 * NULL is ignored. Any thread. */
void weft__waiter_wake(weft__waiter *w);
/* Wakes a chain from waitlist_claim_all. */
void weft__waiter_wake_chain(weft__waiter *first);

/* Locks m for self (mutex.c); weft_event_wait_locked re-locks with
 * interruptible false. Returns 0, -EDEADLK, -ECANCELED or -ETIMEDOUT. */
int weft__mutex_acquire(weft_mutex *m, weft_task *self, bool interruptible);
/* Whether t holds m. Only t's own lock, or an unlock handing m to t while
 * t is parked in that lock, makes t the owner, so the answer stays true or
 * false for t (who is not parked while asking) until t itself locks or
 * unlocks m. */
bool weft__mutex_held_by(weft_mutex *m, const weft_task *t);

/* Prints "weft: <message>" and aborts: a caller bug found in a debug build. */
_Noreturn void weft__sync_bug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
