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
 *
 * Waiters of weft_select (select.c). A select links one node per case, in
 * as many lists, and all its nodes share one state word in a weft__select:
 * the first waker to move it from WAITING to CLAIMED wins, records which
 * case it claimed, and unlinks that node only. The other nodes stay linked
 * until the select's task takes them out, under each list's lock. Until
 * then they are stale: a waker that finds one skips it (waitlist_try_claim
 * fails) and goes on to the next waiter. So lists that may hold select
 * nodes (the channel's, the broadcast channel's, the task set's, the
 * event's, the semaphore's and the wait group's) are claimed only through
 * waitlist_try_claim, waitlist_claim_first_live and
 * waitlist_claim_all_live.
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

/* What the nodes of one weft_select share. */
struct weft__select {
    _Atomic uint32_t state; /* WAITER_*, for all the select's nodes */
    unsigned index;         /* set by the claimer: the case it claimed */
};

struct weft__waiter {
    struct weft__waiter *next, *prev;
    weft_task *task;          /* NULL: a foreign thread sleeping on the state (futex) */
    _Atomic uint32_t state;   /* WAITER_*; unused in a select's node */
    int result;               /* set by the claimer: what the wait returns */
    void *buf;                /* channel: the element to send or the place to receive into */
    struct weft__select *sel; /* NULL, or the select this node is one case of */
    unsigned case_index;      /* in a select: its case */
};
typedef struct weft__waiter weft__waiter;

/* The word that says whether w is still waiting. */
static inline _Atomic uint32_t *waiter_state(weft__waiter *w)
{
    return w->sel ? &w->sel->state : &w->state;
}

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

/* Claims w (still linked in l) with result and unlinks it, unless w is a
 * stale select node (its select was claimed through another case): then
 * returns false and leaves it linked for its task to take out. */
static inline bool waitlist_try_claim(weft__waitlist *l, weft__waiter *w, int result)
{
    if (w->sel) {
        uint32_t waiting = WAITER_WAITING;
        /* Relaxed is enough: the lock orders this with the select's own
         * look at the state when it gives up, and the waiter reads what
         * the claim wrote only after the release store of DONE. */
        if (!atomic_compare_exchange_strong_explicit(&w->sel->state, &waiting, WAITER_CLAIMED,
                                                     memory_order_relaxed, memory_order_relaxed))
            return false;
        w->sel->index = w->case_index;
        waitlist_remove(l, w);
        w->result = result;
        return true;
    }
    waitlist_claim(l, w, result);
    return true;
}

/* Claims the first waiter that is not a stale select node; NULL if none.
 * The first waiter is checked inline (a plain one is the common case),
 * the rest of the list out of line. */
weft__waiter *weft__waitlist_claim_live_after(weft__waitlist *l, weft__waiter *first, int result);

static inline weft__waiter *waitlist_claim_first_live(weft__waitlist *l, int result)
{
    weft__waiter *w = l->_first;
    if (__builtin_expect(w != NULL && w->sel == NULL, 1)) {
        waitlist_claim(l, w, result);
        return w;
    }
    return w ? weft__waitlist_claim_live_after(l, w, result) : NULL;
}

/* Claims every waiter but the stale select nodes, which stay linked;
 * returns the claimed ones as a chain for weft__waiter_wake_chain. */
static inline weft__waiter *waitlist_claim_all_live(weft__waitlist *l, int result)
{
    weft__waiter *chain = NULL, **tail = &chain;
    for (weft__waiter *w = l->_first, *next; w; w = next) {
        next = w->next;
        if (waitlist_try_claim(l, w, result)) {
            w->next = NULL; /* unlinked: `next` is free for the chain */
            *tail = w;
            tail = &w->next;
        }
    }
    return chain;
}

/* Unlinks and claims every waiter with result; returns them as a chain
 * through `next` for weft__waiter_wake_chain. Only for lists no select
 * waits on. */
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
    w->sel = NULL; /* case_index means something only in a select's node */
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
/* weft__waiter_block with a time limit, an absolute CLOCK_MONOTONIC time
 * (UINT64_MAX: none): past it, a node still waiting is unlinked from l
 * under *lock and -ETIMEDOUT returned; a claim that came first stands.
 * Not for a select's nodes (see weft__waiter_sleep_until). */
int weft__waiter_block_until(weft__waiter *w, unsigned *lock, weft__waitlist *l,
                             uint64_t deadline_ns);
/* Sleeps while *state is WAITER_WAITING: 0 once it is not, -ETIMEDOUT
 * when deadline_ns (as above) passed first, with nothing changed: the
 * caller unlinks its nodes under their locks and looks again there. */
int weft__waiter_sleep_until(_Atomic uint32_t *state, uint64_t deadline_ns);
/* The CLOCK_MONOTONIC time timeout_ns from now, UINT64_MAX past its range
 * (and for UINT64_MAX): for the _blocking_for calls. */
uint64_t weft__deadline_after(uint64_t timeout_ns);
/* The body of a _blocking_for call made from a task: returns `call` (the
 * task form) made under a deadline timeout_ns from now (none for
 * UINT64_MAX), or the push's error. */
#define WEFT__IN_TASK_FOR(timeout_ns, call)                                                        \
    do {                                                                                           \
        if ((timeout_ns) == UINT64_MAX)                                                            \
            return (call);                                                                         \
        int pushed_ = weft_deadline_push_in(timeout_ns);                                           \
        if (pushed_)                                                                               \
            return pushed_;                                                                        \
        __typeof__(call) r_ = (call);                                                              \
        (void)weft_deadline_pop();                                                                 \
        return r_;                                                                                 \
    } while (0)
/* Wakes a waiter claimed under the lock; call after dropping the lock.
 * NULL is ignored. Any thread. */
void weft__waiter_wake(weft__waiter *w);
/* Wakes a chain from waitlist_claim_all. */
void weft__waiter_wake_chain(weft__waiter *first);
/* After a claim: waits for the waker to be done with the node (the state
 * word goes from CLAIMED to DONE). */
void weft__waiter_wait_done(_Atomic uint32_t *state);

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
