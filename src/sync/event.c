/* Event (notify one / all, with one pending slot) and wait group.
 *
 * Why the pending slot: a task typically checks a condition, finds it
 * false and then waits. A notify that lands between the check and the wait
 * would be lost with pure condition-variable semantics; here it leaves the
 * event pending and the wait returns at once. notify_all sets it too, for a
 * task in that same window. weft_event_wait_locked closes the window for any
 * number of waiters by queueing the waiter before it unlocks the mutex that
 * guards the condition (docs/sync.md).
 */
#include <limits.h>

#include "sync/select.h"
#include "sync/waitlist.h"

_Static_assert(sizeof(weft_event) == 2 * sizeof(unsigned) + 2 * sizeof(void *),
               "weft_event is a fixed caller-allocated block");
_Static_assert(sizeof(weft_waitgroup) == sizeof(unsigned) + sizeof(int) + 2 * sizeof(void *),
               "weft_waitgroup is a fixed caller-allocated block");

/* ---- event ---------------------------------------------------------------- */

int weft_event_init(weft_event *e)
{
    if (!e)
        return -EINVAL;
    *e = (weft_event)WEFT_EVENT_INIT;
    return 0;
}

int weft__event_take_locked(weft_event *e)
{
    if (!e->_pending)
        return -EAGAIN;
    e->_pending = 0;
    return 0;
}

/* Takes the pending notification, or queues w; the caller holds e's lock.
 * True when the pending one was taken. */
static bool take_or_queue(weft_event *e, weft__waiter *w)
{
    if (weft__event_take_locked(e) == 0)
        return true;
    waitlist_push(&e->_waiters, w);
    return false;
}

int weft_event_wait(weft_event *e)
{
    if (!e)
        return -EINVAL;
    weft_task *self;
    int r = weft__task_enter(&self);
    if (r)
        return r;
    weft__waiter w;
    waiter_init(&w, self, NULL);
    weft__spin_lock(&e->_lock);
    bool taken = take_or_queue(e, &w);
    weft__spin_unlock(&e->_lock);
    if (taken)
        return 0;
    return weft__waiter_park(&w, &e->_lock, &e->_waiters, true);
}

int weft_event_wait_locked(weft_event *e, weft_mutex *m)
{
    if (!e || !m)
        return -EINVAL;
    weft_task *self = weft__task_current();
    if (!self)
        return -EPERM;
    /* Misuse before interruption: any other answer tells the caller that
     * it holds m, and it would then unlock another task's mutex. */
    if (!weft__mutex_held_by(m, self))
        return -EPERM;
    int r = weft__task_interrupted(self);
    if (r)
        return r; /* m was never released */
    weft__waiter w;
    waiter_init(&w, self, NULL);
    weft__spin_lock(&e->_lock);
    bool taken = take_or_queue(e, &w);
    weft__spin_unlock(&e->_lock);
    if (taken)
        return 0; /* m was never released */
    /* Queued before m is released: a notify made by whoever takes m next
     * finds us in the list. */
    weft_mutex_unlock(m);
    r = weft__waiter_park(&w, &e->_lock, &e->_waiters, true);
    weft__mutex_acquire(m, self, false);
    return r;
}

void weft_event_notify_one(weft_event *e)
{
    if (!e)
        return;
    weft__spin_lock(&e->_lock);
    /* A select's stale node (it went through another case) is passed
     * by: with no live waiter the notification stays pending. */
    weft__waiter *w = waitlist_claim_first_live(&e->_waiters, 0);
    if (!w)
        e->_pending = 1;
    weft__spin_unlock(&e->_lock);
    weft__waiter_wake(w);
}

void weft_event_notify_all(weft_event *e)
{
    if (!e)
        return;
    weft__spin_lock(&e->_lock);
    weft__waiter *chain = waitlist_claim_all_live(&e->_waiters, 0);
    e->_pending = 1;
    weft__spin_unlock(&e->_lock);
    weft__waiter_wake_chain(chain);
}

/* ---- wait group ----------------------------------------------------------- */

int weft_waitgroup_init(weft_waitgroup *w)
{
    if (!w)
        return -EINVAL;
    *w = (weft_waitgroup)WEFT_WAITGROUP_INIT;
    return 0;
}

void weft_waitgroup_add(weft_waitgroup *w, int n)
{
    if (!w)
        return;
    weft__spin_lock(&w->_lock);
    long long count = (long long)w->_count + n;
    if (count < 0) {
#ifndef NDEBUG
        weft__sync_bug("weft_waitgroup_add: wait group %p goes below zero (%d%+d)", (void *)w,
                       w->_count, n);
#endif
        count = 0;
    } else if (count > INT_MAX) {
#ifndef NDEBUG
        weft__sync_bug("weft_waitgroup_add: wait group %p overflows (%d%+d)", (void *)w, w->_count,
                       n);
#endif
        count = INT_MAX;
    }
    w->_count = (int)count;
    weft__waiter *chain = count == 0 ? waitlist_claim_all_live(&w->_waiters, 0) : NULL;
    weft__spin_unlock(&w->_lock);
    weft__waiter_wake_chain(chain);
}

void weft_waitgroup_done(weft_waitgroup *w)
{
    weft_waitgroup_add(w, -1);
}

int weft__waitgroup_zero_locked(const weft_waitgroup *w)
{
    return w->_count == 0 ? 0 : -EAGAIN;
}

int weft_waitgroup_wait(weft_waitgroup *w)
{
    if (!w)
        return -EINVAL;
    weft_task *self;
    int r = weft__task_enter(&self);
    if (r)
        return r;
    weft__waiter node;
    waiter_init(&node, self, NULL);
    weft__spin_lock(&w->_lock);
    bool zero = weft__waitgroup_zero_locked(w) == 0;
    if (!zero)
        waitlist_push(&w->_waiters, &node);
    weft__spin_unlock(&w->_lock);
    if (zero)
        return 0;
    return weft__waiter_park(&node, &w->_lock, &w->_waiters, true);
}
