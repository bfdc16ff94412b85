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
#include <stdlib.h>

#include "common/fault.h"
#include "runtime/worker.h"
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
    weft__waitlist waiters;             /* tasks in join_next */
};

int weft_taskset_create(weft_taskset **out)
{
    if (!out)
        return -EINVAL;
    weft_taskset *s = weft__calloc(1, sizeof *s);
    *out = s;
    return s ? 0 : -ENOMEM;
}

void weft__taskset_added(weft_taskset *s, weft_task *t)
{
    weft__spin_lock(&s->lock);
    t->ext->set_prev = NULL;
    t->ext->set_next = s->running;
    if (s->running)
        s->running->ext->set_prev = t;
    s->running = t;
    weft__spin_unlock(&s->lock);
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
    weft__waiter *w = waitlist_claim_first(&s->waiters, 0);
    weft__spin_unlock(&s->lock);
    weft__waiter_wake(w);
}

/* The calling thread's runtime, or NULL outside one. */
static struct weft__runtime *current_runtime(void)
{
    weft__worker *w = weft__worker_self();
    return w ? w->rt : NULL;
}

/* Under the lock: one member fewer; with none left, the set belongs to no
 * runtime any more. */
static void member_gone(weft_taskset *s)
{
    if (--s->members == 0)
        s->rt = NULL;
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
        /* Waiters counted on this member: they look again (-ECHILD now,
         * perhaps). */
        weft__spin_lock(&s->lock);
        member_gone(s);
        weft__waiter *chain = waitlist_claim_all(&s->waiters, 0);
        weft__spin_unlock(&s->lock);
        weft__waiter_wake_chain(chain);
        return r;
    }
    if (id)
        *id = member_id;
    return 0;
}

enum join_mode { JOIN_WAIT, JOIN_WAIT_UNINTERRUPTED, JOIN_NO_WAIT };

static int join_next(weft_taskset *s, uint64_t *id, void **result, enum join_mode mode)
{
    if (!s)
        return -EINVAL;
    weft_task *self = weft__task_current();
    if (!self)
        return -EPERM;
    struct weft__runtime *rt = current_runtime();
    for (;;) {
        weft__spin_lock(&s->lock);
        if (s->rt && s->rt != rt) {
            weft__spin_unlock(&s->lock);
            return -EXDEV;
        }
        weft_task *t = s->finished;
        if (t) {
            s->finished = t->ext->set_next;
            if (!s->finished)
                s->finished_end = NULL;
            member_gone(s);
            weft__spin_unlock(&s->lock);
            if (id)
                *id = weft_task_id(t);
            /* Complete already: weft_join only takes the outcome. */
            return weft_join(t, result);
        }
        if (!s->members) {
            weft__spin_unlock(&s->lock);
            return -ECHILD;
        }
        if (mode == JOIN_NO_WAIT) {
            weft__spin_unlock(&s->lock);
            return -EAGAIN;
        }
        weft__waiter w;
        waiter_init(&w, self, NULL);
        waitlist_push(&s->waiters, &w);
        weft__spin_unlock(&s->lock);
        int r = weft__waiter_park(&w, &s->lock, &s->waiters, mode == JOIN_WAIT);
        if (r < 0) /* as weft_join: -ECANCELED would read as the member's outcome */
            return r == -ECANCELED ? -EINTR : r;
        /* Woken for a member that finished, or a spawn that failed: look
         * again (another task in join_next may have taken it). */
    }
}

int weft_taskset_join_next(weft_taskset *s, uint64_t *id, void **result)
{
    return join_next(s, id, result, JOIN_WAIT);
}

int weft_taskset_try_join_next(weft_taskset *s, uint64_t *id, void **result)
{
    return join_next(s, id, result, JOIN_NO_WAIT);
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
     * finished list. */
    weft__spin_lock(&s->lock);
    for (weft_task *t = s->running; t; t = t->ext->set_next) {
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
    weft__spin_lock(&s->lock);
    size_t members = s->members;
    struct weft__runtime *rt = s->rt;
    weft__spin_unlock(&s->lock);
    if (members) {
        if (!weft__task_current())
            return -EPERM;
        if (rt != current_runtime())
            return -EXDEV;
        weft_taskset_cancel_all(s);
        int r;
        while ((r = join_next(s, NULL, NULL, JOIN_WAIT_UNINTERRUPTED)) != -ECHILD)
            (void)r; /* each member's outcome: cancelled, most likely */
    }
    free(s);
    return 0;
}
