/* Task mutex and counting semaphore.
 *
 * Both hand over directly: unlock (release) gives the mutex (the unit) to
 * the first waiter while still holding the spinlock, so a task that arrives
 * later can never take it first, and a waiter cannot be starved by a stream
 * of newcomers. The price is a convoy when tasks lock and unlock in a tight
 * loop: each hand-over costs a wake-up. Fairness was chosen over that.
 */
#include <limits.h>

#include "sync/select.h"
#include "sync/waitlist.h"

_Static_assert(sizeof(weft_mutex) == 2 * sizeof(unsigned) + 3 * sizeof(void *),
               "weft_mutex is a fixed caller-allocated block");
_Static_assert(sizeof(weft_sem) == 2 * sizeof(unsigned) + 2 * sizeof(void *),
               "weft_sem is a fixed caller-allocated block");

/* ---- mutex ---------------------------------------------------------------- */

int weft_mutex_init(weft_mutex *m)
{
    if (!m)
        return -EINVAL;
    *m = (weft_mutex)WEFT_MUTEX_INIT;
    return 0;
}

/* Also used by weft_event_wait_locked to take the mutex back, without
 * interruption. */
int weft__mutex_acquire(weft_mutex *m, weft_task *self, bool interruptible)
{
    weft__spin_lock(&m->_lock);
    if (!m->_locked) {
        m->_locked = 1;
        m->_owner = self;
        weft__spin_unlock(&m->_lock);
        return 0;
    }
    if (m->_owner == self) {
        weft__spin_unlock(&m->_lock);
        return -EDEADLK;
    }
    weft__waiter w;
    waiter_init(&w, self, NULL);
    waitlist_push(&m->_waiters, &w);
    weft__spin_unlock(&m->_lock);
    /* On success the unlocker has made us the owner already. */
    return weft__waiter_park(&w, &m->_lock, &m->_waiters, interruptible);
}

bool weft__mutex_held_by(weft_mutex *m, const weft_task *t)
{
    weft__spin_lock(&m->_lock);
    bool held = m->_locked && m->_owner == t;
    weft__spin_unlock(&m->_lock);
    return held;
}

int weft_mutex_lock(weft_mutex *m)
{
    if (!m)
        return -EINVAL;
    weft_task *self = NULL;
    int r = weft__task_enter(&self);
    if (r) {
        /* Misuse before interruption: told -ECANCELED ("not held"), a
         * caller holding m would go on as if it did not. */
        return self && weft__mutex_held_by(m, self) ? -EDEADLK : r;
    }
    return weft__mutex_acquire(m, self, true);
}

int weft_mutex_trylock(weft_mutex *m)
{
    if (!m)
        return -EINVAL;
    weft_task *self = weft__task_current();
    if (!self)
        return -EPERM;
    weft__spin_lock(&m->_lock);
    int r = -EBUSY;
    if (!m->_locked) {
        m->_locked = 1;
        m->_owner = self;
        r = 0;
    }
    weft__spin_unlock(&m->_lock);
    return r;
}

void weft_mutex_unlock(weft_mutex *m)
{
    if (!m)
        return;
#ifndef NDEBUG
    weft_task *self = weft__task_current();
#endif
    weft__spin_lock(&m->_lock);
#ifndef NDEBUG
    if (!m->_locked)
        weft__sync_bug("weft_mutex_unlock: mutex %p is not locked", (void *)m);
    if (m->_owner != self)
        weft__sync_bug("weft_mutex_unlock: mutex %p is held by another task", (void *)m);
#endif
    weft__waiter *w = waitlist_claim_first(&m->_waiters, 0);
    if (w) {
        m->_owner = w->task; /* hand-over: it stays locked */
    } else {
        m->_locked = 0;
        m->_owner = NULL;
    }
    weft__spin_unlock(&m->_lock);
    weft__waiter_wake(w);
}

/* ---- semaphore ------------------------------------------------------------ */

int weft_sem_init(weft_sem *s, unsigned n)
{
    if (!s)
        return -EINVAL;
    *s = (weft_sem)WEFT_SEM_INIT(n);
    return 0;
}

int weft__sem_take_locked(weft_sem *s)
{
    if (!s->_count)
        return -EAGAIN;
    s->_count--;
    return 0;
}

int weft_sem_acquire(weft_sem *s)
{
    if (!s)
        return -EINVAL;
    weft_task *self;
    int r = weft__task_enter(&self);
    if (r)
        return r;
    weft__spin_lock(&s->_lock);
    if (weft__sem_take_locked(s) == 0) {
        weft__spin_unlock(&s->_lock);
        return 0;
    }
    weft__waiter w;
    waiter_init(&w, self, NULL);
    waitlist_push(&s->_waiters, &w);
    weft__spin_unlock(&s->_lock);
    return weft__waiter_park(&w, &s->_lock, &s->_waiters, true);
}

unsigned weft_sem_available(weft_sem *s)
{
    if (!s)
        return 0;
    weft__spin_lock(&s->_lock);
    unsigned n = s->_count;
    weft__spin_unlock(&s->_lock);
    return n;
}

int weft_sem_try_acquire(weft_sem *s)
{
    if (!s)
        return -EINVAL;
    weft__spin_lock(&s->_lock);
    int r = weft__sem_take_locked(s);
    weft__spin_unlock(&s->_lock);
    return r;
}

void weft_sem_release(weft_sem *s)
{
    if (!s)
        return;
    weft__spin_lock(&s->_lock);
    /* Past a select's stale nodes: with no live waiter the unit is kept. */
    weft__waiter *w = waitlist_claim_first_live(&s->_waiters, 0);
    if (!w) {
        if (s->_count == UINT_MAX) {
#ifndef NDEBUG
            weft__sync_bug("weft_sem_release: semaphore %p overflows", (void *)s);
#endif
        } else {
            s->_count++;
        }
    }
    weft__spin_unlock(&s->_lock);
    weft__waiter_wake(w);
}
