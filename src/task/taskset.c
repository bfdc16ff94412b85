/* Task sets: members joined in the order they finish.
 *
 * The set holds its members' join handles. Each member's extension block
 * points at the set (set at the spawn, before the member can run), and
 * the member's end, once its outcome is published (complete() in task.c),
 * moves it from the set's running list to the tail of its finished list
 * and wakes the first task waiting in join_next. So a join_next takes the
 * head of that list and joins a task that has completed: no wait there,
 * and no walk over the other members, whatever their number.
 *
 * Everything is under one spinlock, never held across a park. Lock order:
 * the set's lock may be taken with nothing else held, or around
 * weft_cancel (cancel_all), which takes the tree lock; the spawn and a
 * member's end take the set's lock with the tree lock released.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "common/fault.h"
#include "runtime/worker.h"
#include "sync/select.h"
#include "sync/waitlist.h"
#include "task/task.h"

struct weft_taskset {
    unsigned lock; /* spinlock over everything below */
    /* Spawned (or being spawned) and not yet joined. */
    size_t members;
    /* The members' runtime while there are members (NULL when none). */
    struct weft__runtime *rt;
    weft_task *running;                 /* not finished: ext->set_prev/next */
    weft_task *finished, *finished_end; /* in the order they ended: ext->set_next */
    /* Tasks in join_next waiting for a member, and weft_select nodes of
     * JOIN cases (waitlist.h: claimed only through the *_live calls). */
    weft__waitlist waiters;
    /* Tasks inside join_next, waiting or not: a destroy frees the set
     * only once they have all left. */
    unsigned joiners;
    bool closing;         /* in destroy: spawns fail, late members are born cancelled */
    weft__waitlist drain; /* a destroy waiting for the joiners to leave */
};

int weft_taskset_create(weft_taskset **out)
{
    if (!out)
        return -EINVAL;
    weft_taskset *s = weft__calloc(1, sizeof *s);
    *out = s;
    return s ? 0 : -ENOMEM;
}

bool weft__taskset_added(weft_taskset *s, weft_task *t)
{
    weft__spin_lock(&s->lock);
    t->ext->set_prev = NULL;
    t->ext->set_next = s->running;
    if (s->running)
        s->running->ext->set_prev = t;
    s->running = t;
    bool closing = s->closing;
    weft__spin_unlock(&s->lock);
    return closing;
}

void weft__taskset_finished(weft_taskset *s, weft_task *t)
{
    weft__task_ext *e = t->ext;
    weft__spin_lock(&s->lock);
    if (e->set_prev)
        e->set_prev->ext->set_next = e->set_next;
    else
        s->running = e->set_next;
    if (e->set_next)
        e->set_next->ext->set_prev = e->set_prev;
    e->set_next = NULL;
    if (s->finished_end)
        s->finished_end->ext->set_next = t;
    else
        s->finished = t;
    s->finished_end = t;
    weft__waiter *w = waitlist_claim_first_live(&s->waiters, 0);
    weft__spin_unlock(&s->lock);
    weft__waiter_wake(w);
}

void weft__taskset_forget(weft_taskset *s)
{
    weft__spin_lock(&s->lock);
    s->running = s->finished = s->finished_end = NULL;
    s->members = 0;
    s->rt = NULL;
    weft__spin_unlock(&s->lock);
}

/* The calling thread's runtime, or NULL outside one. */
static struct weft__runtime *current_runtime(void)
{
    weft__worker *w = weft__worker_self();
    return w ? w->rt : NULL;
}

/* Under the lock: one member fewer. With none left the set belongs to no
 * runtime any more, and every waiting joiner is claimed, to be woken
 * after the unlock and told -ECHILD (a member's end wakes only one). */
static weft__waiter *member_gone(weft_taskset *s)
{
    if (--s->members) {
        /* The member left may be waiting in join_next (or a select) for
         * the set, now only for itself: every waiter looks again, and
         * that one gets -EDEADLK. */
        return s->members == 1 ? waitlist_claim_all_live(&s->waiters, 0) : NULL;
    }
    s->rt = NULL;
    return waitlist_claim_all_live(&s->waiters, 0);
}

int weft_taskset_spawn(weft_taskset *s, const weft_spawn_opts *o, weft_fn fn, void *arg,
                       uint64_t *id)
{
    static const weft_spawn_opts defaults;
    if (!s || !fn)
        return -EINVAL;
    struct weft__runtime *rt = current_runtime();
    if (!rt)
        return -EPERM;
    /* Counted before the spawn, so that the set stays this runtime's and
     * a join_next waits for the member rather than saying -ECHILD. */
    weft__spin_lock(&s->lock);
    if (s->closing) {
        weft__spin_unlock(&s->lock);
        return -ESHUTDOWN;
    }
    if (s->rt && s->rt != rt) {
        weft__spin_unlock(&s->lock);
        return -EXDEV;
    }
    s->rt = rt;
    s->members++;
    weft__spin_unlock(&s->lock);
    uint64_t member_id = 0;
    int r = weft__spawn_into_set(s, o ? o : &defaults, fn, arg, &member_id);
    if (r) {
        weft__spin_lock(&s->lock);
        weft__waiter *chain = member_gone(s);
        weft__spin_unlock(&s->lock);
        weft__waiter_wake_chain(chain);
        return r;
    }
    if (id)
        *id = member_id;
    return 0;
}

/* Under the lock: takes the first finished member out of the set, or
 * returns NULL. *wake: as member_gone's. */
static weft_task *take_finished(weft_taskset *s, weft__waiter **wake)
{
    weft_task *t = s->finished;
    if (!t)
        return NULL;
    s->finished = t->ext->set_next;
    if (!s->finished)
        s->finished_end = NULL;
    *wake = member_gone(s);
    return t;
}

enum join_mode { JOIN_WAIT, JOIN_WAIT_UNINTERRUPTED, JOIN_NO_WAIT };

/* Under the lock: whether self is the only member left, still running,
 * so that waiting would wait for itself. By the count: a spawn under way
 * counts as a member before it is on the running list. */
static bool only_self_left(const weft_taskset *s, const weft_task *self)
{
    return self && s->members == 1 && s->running == self;
}

static int join_next(weft_taskset *s, uint64_t *id, void **result, char **panic_message,
                     enum join_mode mode)
{
    if (!s)
        return -EINVAL;
    weft_task *self = weft__task_current();
    if (!self)
        return -EPERM;
    weft_task *t = NULL;
    weft__waiter *wake = NULL;
    int r;
    weft__spin_lock(&s->lock);
    weft__taskset_joiner_in(s);
    for (;;) {
        /* A member, -EXDEV, -ECHILD or -EDEADLK. */
        r = weft__taskset_take_locked(s, &t, &wake);
        if (r != -EAGAIN)
            break;
        if (mode == JOIN_NO_WAIT) {
            r = -EAGAIN;
            break;
        }
        weft__waiter w;
        waiter_init(&w, self, NULL);
        waitlist_push(&s->waiters, &w);
        weft__spin_unlock(&s->lock);
        r = weft__waiter_park(&w, &s->lock, &s->waiters, mode == JOIN_WAIT);
        weft__spin_lock(&s->lock);
        if (r < 0) { /* as weft_join: -ECANCELED would read as the member's outcome */
            r = r == -ECANCELED ? -EINTR : r;
            break;
        }
        /* Woken for a member that finished, the set emptied, or a spawn
         * that failed: look again (another joiner may have taken it). */
    }
    weft__waiter *drain = weft__taskset_joiner_out(s);
    weft__spin_unlock(&s->lock);
    /* From here the set may be freed by its destroy: not touched again. */
    weft__waiter_wake_chain(wake);
    weft__waiter_wake_chain(drain);
    if (!t)
        return r;
    if (id)
        *id = weft_task_id(t);
    if (panic_message) {
        /* The set held the only handle: the message is the caller's now,
         * instead of being freed with the record. */
        *panic_message = t->panic_msg;
        t->panic_msg = NULL;
    }
    /* Complete already: weft_join only takes the outcome. */
    return weft_join(t, result);
}

int weft_taskset_join_next(weft_taskset *s, uint64_t *id, void **result)
{
    return join_next(s, id, result, NULL, JOIN_WAIT);
}

int weft_taskset_try_join_next(weft_taskset *s, uint64_t *id, void **result)
{
    return join_next(s, id, result, NULL, JOIN_NO_WAIT);
}

int weft_taskset_join_next_ex(weft_taskset *s, weft_taskset_joined *j, unsigned flags)
{
    if (!j || (flags & ~WEFT_TASKSET_NO_WAIT))
        return -EINVAL;
    j->id = 0;
    j->result = NULL;
    j->panic_message = NULL;
    return join_next(s, &j->id, &j->result, &j->panic_message,
                     (flags & WEFT_TASKSET_NO_WAIT) ? JOIN_NO_WAIT : JOIN_WAIT);
}

int weft_taskset_cancel(weft_taskset *s, uint64_t id)
{
    if (!s || !id)
        return -EINVAL;
    int r = -ESRCH;
    /* Under the lock, as cancel_all: no member is joined and freed meanwhile. */
    weft__spin_lock(&s->lock);
    for (weft_task *t = s->running; t; t = t->ext->set_next) {
        if (weft_task_id(t) != id)
            continue;
        uint64_t st = atomic_load_explicit(&t->state, memory_order_acquire);
        /* Complete, but its end has not moved it to the finished list yet. */
        r = (st & TASK_COMPLETE) ? -EALREADY : weft_cancel(t);
        break;
    }
    for (weft_task *t = s->finished; t && r == -ESRCH; t = t->ext->set_next)
        if (weft_task_id(t) == id)
            r = -EALREADY;
    weft__spin_unlock(&s->lock);
    return r;
}

size_t weft_taskset_len(weft_taskset *s)
{
    if (!s)
        return 0;
    weft__spin_lock(&s->lock);
    size_t n = s->members;
    weft__spin_unlock(&s->lock);
    return n;
}

size_t weft_taskset_cancel_all(weft_taskset *s)
{
    if (!s)
        return 0;
    size_t n = 0;
    /* Under the lock, so that no member is joined (and freed) while it is
     * cancelled; one that ends meanwhile waits for the lock to move to the
     * finished list. Counted: those not cancelled or complete before. */
    weft__spin_lock(&s->lock);
    for (weft_task *t = s->running; t; t = t->ext->set_next) {
        uint64_t st = atomic_load_explicit(&t->state, memory_order_acquire);
        if (st & (TASK_CANCELLED | TASK_COMPLETE))
            continue;
        (void)weft_cancel(t);
        n++;
    }
    weft__spin_unlock(&s->lock);
    return n;
}

int weft_taskset_destroy(weft_taskset *s)
{
    if (!s)
        return 0;
    weft_task *self = weft__task_current();
    weft__spin_lock(&s->lock);
    size_t members = s->members;
    unsigned joiners = s->joiners;
    struct weft__runtime *rt = s->rt;
    bool member = self && self->ext && self->ext->set == s;
    weft__spin_unlock(&s->lock);
    if (!self && joiners)
        return -EBUSY; /* tasks are in join_next: only a task can wait for them */
    if (members) {
        if (!self)
            return -EPERM;
        if (rt != current_runtime())
            return -EXDEV;
        if (member)
            return -EDEADLK; /* it would wait for itself */
    }
    if (self) {
        /* Closed first: a member spawned from now on fails, one whose
         * spawn is under way is born cancelled. */
        weft__spin_lock(&s->lock);
        s->closing = true;
        weft__spin_unlock(&s->lock);
        weft_taskset_cancel_all(s);
        int r;
        while ((r = join_next(s, NULL, NULL, NULL, JOIN_WAIT_UNINTERRUPTED)) != -ECHILD)
            (void)r; /* each member's outcome: cancelled, most likely */
        /* Other tasks in join_next leave with -ECHILD: wait for them. */
        for (;;) {
            weft__spin_lock(&s->lock);
            if (!s->joiners) {
                weft__spin_unlock(&s->lock);
                break;
            }
            weft__waiter w;
            waiter_init(&w, self, NULL);
            waitlist_push(&s->drain, &w);
            weft__spin_unlock(&s->lock);
            (void)weft__waiter_park(&w, &s->lock, &s->drain, false);
        }
    }
    free(s);
    return 0;
}

/* ---- for weft_select (sync/select.h) ---------------------------------------- */

unsigned *weft__taskset_lock(weft_taskset *s)
{
    return &s->lock;
}

weft__waitlist *weft__taskset_waiters(weft_taskset *s)
{
    return &s->waiters;
}

int weft__taskset_take_locked(weft_taskset *s, weft_task **t, weft__waiter **wake)
{
    *t = NULL;
    *wake = NULL;
    if (s->rt && s->rt != current_runtime())
        return -EXDEV;
    *t = take_finished(s, wake);
    if (*t)
        return 0;
    if (!s->members)
        return -ECHILD;
    return only_self_left(s, weft__task_current()) ? -EDEADLK : -EAGAIN;
}

void weft__taskset_joiner_in(weft_taskset *s)
{
    s->joiners++;
}

weft__waiter *weft__taskset_joiner_out(weft_taskset *s)
{
    if (--s->joiners == 0 && s->closing)
        return waitlist_claim_all(&s->drain, 0);
    return NULL;
}
