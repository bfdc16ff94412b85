/* Task lifecycle: spawn, the state word, park/wake, join, detach, finish.
 * See task.h for the state protocol. */
#include "common/saturate.h"
#include "task/task.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <weft/io.h>

#include "common/fault.h"
#include "common/utf8.h"
#include "runtime/config.h"
#include "runtime/worker.h"

#define PUBLIC_FLAGS                                                                               \
    (WEFT_TASK_BACKGROUND | WEFT_TASK_STICKY | WEFT_TASK_CANCEL_CHILDREN | WEFT_TASK_SPAWN_LIFO |  \
     WEFT_TASK_SPAWN_FIFO | WEFT_TASK_ON_WORKER | WEFT_TASK_INHERIT_DEADLINE)

#if !defined(WEFT_ASAN) && !defined(WEFT_TSAN) /* the sanitizers' fiber fields */
_Static_assert(sizeof(struct weft_task) == 256, "the task record is 256 bytes (record.h)");
#endif

struct weft__defer {
    struct weft__defer *next;
    void (*fn)(void *);
    void *arg;
};

weft_task *weft__task_current(void)
{
    weft__worker *w = weft__worker_self();
    return w ? w->current : NULL;
}

static inline uint64_t load_state(const weft_task *t)
{
    return atomic_load_explicit(&((weft_task *)t)->state, memory_order_acquire);
}

void weft__task_wake(weft_task *t)
{
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (s & TASK_COMPLETE)
            return;
        if (s & TASK_RUNNING) {
            if (s & TASK_NOTIFIED)
                return;
            if (atomic_compare_exchange_weak_explicit(&t->state, &s, s | TASK_NOTIFIED,
                                                      memory_order_acq_rel, memory_order_acquire))
                return;
        } else {
            /* Claim the parked task: it is ours to queue, and to keep on
             * this worker if its owner marked it movable. */
            bool keep = (s & TASK_WAKE_MOVABLE) && weft__worker_may_keep(t);
            uint64_t claimed = ((s | TASK_RUNNING) & ~TASK_WAKE_MOVABLE) | (keep ? TASK_MOVING : 0);
            if (atomic_compare_exchange_weak_explicit(&t->state, &s, claimed, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                weft__worker_schedule(t, keep);
                return;
            }
        }
    }
}

void weft__task_park(void)
{
    weft__worker *w = weft__worker_self();
    weft__worker_switch_out(w, w->current, SWITCH_PARK);
}

int weft__task_interrupted(weft_task *t)
{
    if ((load_state(t) & TASK_CANCELLED) && !t->shield)
        return -ECANCELED;
    if (t->deadline && weft_now_ns() >= t->deadline)
        return -ETIMEDOUT;
    return 0;
}

int weft__task_park_interruptible(void)
{
    weft__worker *w = weft__worker_self();
    weft_task *t = w->current;
    int r = weft__task_interrupted(t);
    if (r)
        return r;
    /* Arming cannot fail (io/timer.h: the spill), so the deadline always
     * ends the park. */
    weft__timer deadline = {.when = t->deadline, .task = t};
    if (t->deadline)
        weft__timer_add(&w->timers, &deadline);
    weft__task_park();
    if (t->deadline)
        weft__timer_remove(&weft__worker_self()->timers, &deadline);
    return weft__task_interrupted(t);
}

/* Subtracts `by` (one reference, and bits known to be set) from t's state;
 * the last reference frees the record. */
static void drop_ref(weft_task *t, uint64_t by)
{
    uint64_t prev = atomic_fetch_sub_explicit(&t->state, by, memory_order_acq_rel);
    if ((prev & TASK_REF_MASK) == TASK_REF_ONE)
        weft__task_free(weft__worker_self(), t);
}

void weft__task_ref_drop(weft_task *t)
{
    drop_ref(t, TASK_REF_ONE);
}

/* ---- spawn ---------------------------------------------------------------- */

int weft_spawn(weft_task **t, weft_fn fn, void *arg)
{
    return weft_spawn_ex(t, NULL, fn, arg);
}

static bool public_flags_ok(unsigned flags)
{
    return !(flags & ~PUBLIC_FLAGS) &&
           !((flags & WEFT_TASK_SPAWN_LIFO) && (flags & WEFT_TASK_SPAWN_FIFO));
}

int weft_spawn_ex(weft_task **out, const weft_spawn_opts *o, weft_fn fn, void *arg)
{
    static const weft_spawn_opts defaults;
    if (out)
        *out = NULL;
    if (!o)
        o = &defaults;
    if (!public_flags_ok(o->flags))
        return -EINVAL;
    weft_task *t;
    int r = weft__spawn_internal(&t, o, fn, arg, 0, out != NULL);
    if (r == 0 && out)
        *out = t;
    return r;
}

/* Ids are unique in the runtime and increase with each spawn from one
 * worker; with several workers they are not in spawn order across workers,
 * since each takes a block of them at a time. */
#define ID_BLOCK 1024
static uint64_t next_task_id(weft__worker *w)
{
    if (w->id_next == w->id_end) {
        w->id_next =
            atomic_fetch_add_explicit(&w->rt->next_task_id, ID_BLOCK, memory_order_relaxed);
        w->id_end = w->id_next + ID_BLOCK;
    }
    return w->id_next++;
}

/* A spawn into a task set: the set, and the new member's id, read before
 * the member can end and be joined. */
struct set_spawn {
    weft_taskset *set;
    uint64_t id;
};

/* Spawns on `owner`, from the calling thread's worker w (which provides
 * the record); into a task set when ss is not NULL. */
static int spawn(weft__worker *w, weft__worker *owner, weft_task **task, const weft_spawn_opts *o,
                 weft_fn fn, void *arg, unsigned internal_flags, bool handle, struct set_spawn *ss)
{
    weft_taskset *set = ss ? ss->set : NULL;
    weft__runtime *rt = w->rt;
    int size_class = rt->default_stack_class;
    if (o->stack_size) {
        size_class = weft__stack_class(o->stack_size);
        if (size_class < 0)
            return -EINVAL;
    }
    /* A child runs in its spawner's queue unless told otherwise. */
    int queue = w->current && !(o->flags & WEFT_TASK_BACKGROUND) ? w->current->queue : 0;
    if (o->queue) {
        queue = weft__config_queue_index(&rt->cfg, o->queue);
        if (queue < 0)
            return -ENOENT;
    }
    /* Make sure a stack can be had before promising to run the task; the
     * stack itself is taken (and touched) only at the first run. (Another
     * worker's pool is its own business: there the first run reports it.) */
    if (owner == w) {
        int r = weft__stack_reserve(&w->stacks, size_class);
        if (r < 0)
            return r;
    }
    char *name = NULL;
    if (o->name) {
        size_t len = weft__utf8_cut(o->name, TASK_NAME_MAX - 1);
        name = weft__malloc(len + 1);
        if (!name)
            return -ENOMEM;
        memcpy(name, o->name, len);
        name[len] = 0;
    }
    weft__task_ext *ext = NULL;
    if (o->discard || set) {
        ext = weft__calloc(1, sizeof *ext);
        if (!ext) {
            free(name);
            return -ENOMEM;
        }
        ext->discard = o->discard;
        ext->set = set;
    }
    weft_task *t = weft__task_alloc(w);
    if (!t) {
        free(name);
        free(ext);
        return -ENOMEM;
    }

    weft_task *self = w->current;
    weft_task *parent = (o->flags & WEFT_TASK_BACKGROUND) || !self ? &rt->root : self;
    uint64_t state = TASK_RUNNING | TASK_REF_ONE;
    if (handle)
        state += TASK_REF_ONE | TASK_JOIN_INTEREST;
    atomic_init(&t->state, state);
#ifndef NDEBUG
    t->magic = TASK_MAGIC_LIVE;
#endif
    t->owner = owner;
    t->stack = NULL;
    t->fn = fn;
    t->arg = arg;
    t->result = NULL;
    t->outcome = 0;
    t->flags = o->flags | internal_flags;
    t->stack_class = (uint8_t)size_class;
    t->ndeadlines = 0;
    t->shield = 0;
    t->entity.task_id = next_task_id(w);
    t->entity.group = o->group ? o->group : t->entity.task_id;
    t->entity.spawned_ns = t->entity.runnable_ns = w->sched.now;
    t->entity.service_ns = 0;
    t->queue = (uint8_t)queue;
    t->first_child = NULL;
    t->live_children = 0;
    t->joiner = NULL;
    t->defers = NULL;
    t->tags = o->tags;
    t->panic_msg = NULL;
    t->deadline = self && (o->flags & WEFT_TASK_INHERIT_DEADLINE) ? self->deadline : 0;
    t->ext = ext;
    t->ring_ops = 0;
    t->ring_bound = 0;
    t->name = name;
    t->run_flags = 0;
    t->tree_home = rt->threaded && parent == self ? w->index + 1 : 0;
    weft__tree_lock(rt);
    /* A child of a cancelled task is born cancelled: it never runs. Read
     * under the lock every cancellation walk holds, or a walk running now
     * could miss the child and leave it uncancelled. So is background work
     * spawned after the main task ended (complete() sets main_done under
     * this lock as it cancels the root's children), except the runtime's
     * own tasks, which shutdown needs. */
    if ((load_state(parent) & TASK_CANCELLED) ||
        (parent == &rt->root && !(t->flags & (TASK_F_MAINTENANCE | TASK_F_UNCOUNTED)) &&
         atomic_load_explicit(&rt->main_done, memory_order_relaxed)))
        atomic_fetch_or_explicit(&t->state, TASK_CANCELLED | TASK_SUBTREE_CANCELLED,
                                 memory_order_relaxed);
    weft__tree_link(parent, t);
    weft__tree_unlock(rt);
    if (!(internal_flags & TASK_F_UNCOUNTED))
        w->count.spawned++;
    if (rt->threaded) {
        if (internal_flags & TASK_F_MAINTENANCE)
            atomic_fetch_add_explicit(&rt->live_maint, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&rt->live_tasks, 1, memory_order_relaxed);
    }
    *task = t;
    /* A member before it can run, and so end (another worker may take it
     * as soon as it is queued). */
    if (set) {
        ss->id = t->entity.task_id;
        /* Into a set being destroyed: born cancelled, so that the destroy
         * need not wait for it to run its course. */
        if (weft__taskset_added(set, t))
            atomic_fetch_or_explicit(&t->state, TASK_CANCELLED | TASK_SUBTREE_CANCELLED,
                                     memory_order_relaxed);
    }
    if (owner != w) {
        /* Sent to another worker at birth: no steal when it arrives. */
        if (!(internal_flags & TASK_F_UNCOUNTED))
            t->run_flags = TASK_R_PLACED;
        weft__worker_hand_over(owner, t, t); /* counted there on arrival */
        return 0;
    }
    w->owned++;
    w->owned_uncounted += (internal_flags & TASK_F_UNCOUNTED) != 0;
    w->sched.queues[queue].live++;
    weft__sched_push(&w->sched, t, o->flags & WEFT_TASK_SPAWN_LIFO ? PUSH_FIRST : PUSH_QUEUE);
    return 0;
}

/* Spawns from the calling thread's worker, onto it or onto the worker
 * WEFT_TASK_ON_WORKER names. */
static int spawn_from_here(weft_task **task, const weft_spawn_opts *o, weft_fn fn, void *arg,
                           unsigned internal_flags, bool handle, struct set_spawn *ss)
{
    if (!fn)
        return -EINVAL;
    weft__worker *w = weft__worker_self();
    if (!w)
        return -EPERM;
    weft__worker *owner = w;
    if (o->flags & WEFT_TASK_ON_WORKER) {
        if (o->worker >= w->rt->nworkers)
            return -EINVAL;
        owner = &w->rt->workers[o->worker];
        internal_flags |= WEFT_TASK_STICKY; /* placed for good */
    }
    return spawn(w, owner, task, o, fn, arg, internal_flags, handle, ss);
}

int weft__spawn_internal(weft_task **task, const weft_spawn_opts *o, weft_fn fn, void *arg,
                         unsigned internal_flags, bool handle)
{
    return spawn_from_here(task, o, fn, arg, internal_flags, handle, NULL);
}

int weft__spawn_into_set(weft_taskset *set, const weft_spawn_opts *o, weft_fn fn, void *arg,
                         uint64_t *id)
{
    if (!public_flags_ok(o->flags))
        return -EINVAL;
    struct set_spawn ss = {set, 0};
    weft_task *t; /* the set's from here: it may be joined before this returns */
    int r = spawn_from_here(&t, o, fn, arg, 0, true, &ss);
    if (r == 0)
        *id = ss.id;
    return r;
}

int weft__spawn_on(weft__worker *owner, weft_task **task, const weft_spawn_opts *o, weft_fn fn,
                   void *arg)
{
    weft__worker *w = weft__worker_self();
    if (!w)
        return -EPERM;
    return spawn(w, owner, task, o, fn, arg, TASK_F_UNCOUNTED | TASK_F_MAINTENANCE, false, NULL);
}

/* ---- join / detach / queries ---------------------------------------------- */

static int check_handle(const weft_task *t)
{
    if (!t)
        return -EINVAL;
#ifndef NDEBUG
    if (t->magic != TASK_MAGIC_LIVE || !(load_state(t) & TASK_JOIN_INTEREST))
        return WEFT_EHANDLE;
#endif
    return 0;
}

/* Gives up the handle's reference and its JOIN_INTEREST in one step (the
 * bit is set while the handle lives, so subtracting it clears it). s is a
 * recent reading of the state: when it shows the task complete with the
 * handle's as its only reference, nothing else can reach the record any
 * more (a reference is taken only by a holder of one) and it is freed
 * without another atomic step; the acquire load that read s orders this
 * after every other holder's release. */
static void release_handle(weft_task *t, uint64_t s)
{
    if ((s & TASK_COMPLETE) && (s & TASK_REF_MASK) == TASK_REF_ONE) {
        weft__task_free(weft__worker_self(), t);
        return;
    }
    drop_ref(t, TASK_REF_ONE | TASK_JOIN_INTEREST);
}

/* The end of every join: t has completed (s, a reading that shows it);
 * hands out its result, frees the handle and returns its outcome. */
static int take_completed(weft_task *t, uint64_t s, void **result)
{
    int outcome = t->outcome;
    if (result)
        *result = t->result;
    release_handle(t, s);
    return outcome;
}

/* Whether self, a task on w, may join t: 0, or the error. */
static int check_join_target(const weft__worker *w, const weft_task *self, const weft_task *t)
{
    int r = check_handle(t);
    if (r)
        return r;
    if (t == self)
        return -EDEADLK;
    /* A task of another runtime (an executor's, another thread's weft_run)
     * would wake this one at its end, after which that runtime may be
     * gone; nothing keeps the two alive for each other. */
    if (weft__task_owner(t)->rt != w->rt)
        return -EXDEV;
    return 0;
}

/* Takes back a request that t's completion wake self (weft_join,
 * weft_join_any) and returns the state it found. A completion that saw the
 * request first wakes the caller anyway (a spurious wake by then) and
 * drops the reference itself; a request taken back already (the same
 * handle twice in one weft_join_any) holds none. */
static uint64_t join_wake_disarm(weft_task *self, weft_task *t)
{
    uint64_t s = atomic_fetch_and_explicit(&t->state, ~TASK_JOIN_WAKER, memory_order_acq_rel);
    if ((s & TASK_JOIN_WAKER) && !(s & TASK_COMPLETE)) {
        t->joiner = NULL;
        weft__task_ref_drop(self);
    }
    return s;
}

int weft_join(weft_task *t, void **result)
{
    weft__worker *w = weft__worker_self();
    weft_task *self = w ? w->current : NULL;
    if (!self)
        return t ? -EPERM : -EINVAL;
    int r = check_join_target(w, self, t);
    if (r)
        return r;
    /* w is stale after the wait below, which may move this task. */
    uint64_t s = load_state(t);
    if (!(s & TASK_COMPLETE)) {
        t->joiner = self;
        /* t's completion wakes this task after publishing COMPLETE, and by
         * then this task may have stopped waiting (a deadline, a cancel),
         * seen COMPLETE, finished and been freed. So the waker holds a
         * reference to this task for that wake, taken here and dropped by
         * complete() after the wake; dropped here instead whenever t's
         * completion will not see JOIN_WAKER. */
        atomic_fetch_add_explicit(&self->state, TASK_REF_ONE, memory_order_relaxed);
        s = atomic_fetch_or_explicit(&t->state, TASK_JOIN_WAKER, memory_order_acq_rel);
        if (s & TASK_COMPLETE)
            weft__task_ref_drop(self); /* completed before the waker bit */
        while (!(s & TASK_COMPLETE)) {
            r = weft__task_park_interruptible();
            s = load_state(t);
            if (r < 0 && !(s & TASK_COMPLETE)) {
                s = join_wake_disarm(self, t);
                if (!(s & TASK_COMPLETE)) {
                    /* Not -ECANCELED, which is t's outcome when t was
                     * cancelled, with the handle freed: a cancelled joiner
                     * (whose cancel also reached its children) could not
                     * tell whether to detach. */
                    return r == -ECANCELED ? -EINTR : r;
                }
                /* It completed as we gave up: report the real result (its
                 * completion saw the waker bit and drops the reference). */
            }
        }
    }
    return take_completed(t, s, result);
}

int weft__task_join_uninterruptible(weft_task *t, void **result)
{
    weft_task *self = weft__task_current();
    if (!self)
        return t ? -EPERM : -EINVAL;
    /* Shielded, and with no deadline in force for the wait: the task's
     * deadline field is its innermost effective one, put back after. */
    uint64_t deadline = self->deadline;
    bool add = self->shield < UINT16_MAX; /* at the top it is shielded already */
    self->deadline = 0;
    self->shield += add;
    int r = weft_join(t, result);
    self->shield -= add;
    self->deadline = deadline;
    return r;
}

int weft__task_try_join(weft_task *t, void **result)
{
    int r = check_handle(t);
    if (r)
        return r;
    uint64_t s = load_state(t);
    if (!(s & TASK_COMPLETE))
        return -EAGAIN;
    return take_completed(t, s, result);
}

/* weft_join_any: the caller asks t's completion to wake it, with a
 * reference to itself for that wake (as weft_join does). True when t had
 * completed already: no wake will come, and the reference is dropped. */
static bool join_wake_arm(weft_task *self, weft_task *t)
{
    t->joiner = self;
    atomic_fetch_add_explicit(&self->state, TASK_REF_ONE, memory_order_relaxed);
    uint64_t s = atomic_fetch_or_explicit(&t->state, TASK_JOIN_WAKER, memory_order_acq_rel);
    if (!(s & TASK_COMPLETE)) {
        /* Asked already, by this call: the same handle twice (misuse,
         * refused in debug builds). One request, one reference. */
        if (s & TASK_JOIN_WAKER)
            weft__task_ref_drop(self);
        return false;
    }
    weft__task_ref_drop(self);
    return true;
}

/* The first of tasks[0..n) that has completed, or n. */
static size_t first_complete(weft_task *const *tasks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tasks[i] && (load_state(tasks[i]) & TASK_COMPLETE))
            return i;
    return n;
}

int weft_join_any(weft_task *const *tasks, size_t n, size_t *index, void **result)
{
    weft__worker *w = weft__worker_self();
    weft_task *self = w ? w->current : NULL;
    if (!tasks || !index)
        return -EINVAL;
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        weft_task *t = tasks[i];
        if (!t)
            continue;
        if (!self)
            return -EPERM;
        int r = check_join_target(w, self, t);
        if (r)
            return r;
        live++;
    }
    if (!live)
        return -EINVAL;
#ifndef NDEBUG
    /* Each handle once: a second slot would point at a freed handle once
     * the first is joined. (Quadratic: debug builds only, as the other
     * handle checks.) */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; tasks[i] && j < n; j++)
            if (tasks[j] == tasks[i])
                return WEFT_EHANDLE;
#endif
    size_t k = first_complete(tasks, n);
    if (k == n) {
        /* Ask every one to wake this task, then wait for the first. */
        size_t armed = 0;
        for (; armed < n; armed++)
            if (tasks[armed] && join_wake_arm(self, tasks[armed]))
                break; /* completed meanwhile: no need to ask the rest */
        size_t end = armed < n ? armed + 1 : n;
        int r = 0;
        while ((k = first_complete(tasks, end)) == end && r == 0)
            r = weft__task_park_interruptible();
        for (size_t i = 0; i < end; i++)
            if (tasks[i] && !(armed < n && i == armed))
                join_wake_disarm(self, tasks[i]);
        if (k == end) /* interrupted, and none completed */
            return r == -ECANCELED ? -EINTR : r;
    }
    *index = k;
    return take_completed(tasks[k], load_state(tasks[k]), result);
}

void weft_detach(weft_task *t)
{
    if (check_handle(t))
        return;
    release_handle(t, 0);
}

int weft_cancel(weft_task *t)
{
    /* A stale handle (joined or detached) would cancel whatever task has
     * taken the record since: debug builds catch it, as join does. */
    int r = check_handle(t);
    return r ? r : weft__task_cancel(t);
}

int weft__task_cancel(weft_task *t)
{
    /* The walk needs the tree lock, which only a runtime of several
     * workers takes: with one, its tree is that worker's thread's alone
     * (or its executor host's, between runs), and a walk from any other
     * thread would race the spawns and ends there. */
    weft__runtime *rt = __atomic_load_n(&t->owner, __ATOMIC_RELAXED)->rt;
    /* Finished: nothing left to cancel, and the record is out of the tree
     * (a cancel handle may keep it long after). */
    if (load_state(t) & TASK_COMPLETE)
        return 0;
    if (!rt->threaded) {
        weft__worker *w = weft__worker_self();
        bool home = w ? w->rt == rt : rt->embedded && weft__executor_host_here(rt);
        if (!home) /* the worker makes it, soon */
            return weft__runtime_cancel_remote(rt, t);
    }
    weft__tree_cancel(t, NULL);
    return 0;
}

bool weft_task_finished(const weft_task *t)
{
    return t && (load_state(t) & TASK_COMPLETE);
}

uint64_t weft_task_id(const weft_task *t)
{
    return t ? t->entity.task_id : 0;
}

const char *weft_task_panic_message(const weft_task *t)
{
    return t && (load_state(t) & TASK_COMPLETE) ? t->panic_msg : NULL;
}

uint64_t weft_self_id(void)
{
    weft_task *t = weft__task_current();
    return t ? t->entity.task_id : 0;
}

const char *weft_self_queue(void)
{
    weft__worker *w = weft__worker_self();
    weft_task *t = w ? w->current : NULL;
    return t ? w->sched.queues[t->queue].name : NULL;
}

int weft_self_set_queue(const char *name)
{
    weft__worker *w = weft__worker_self();
    weft_task *t = w ? w->current : NULL;
    if (!t)
        return -EPERM;
    if (!name)
        return -EINVAL;
    int q = weft__config_queue_index(&w->rt->cfg, name);
    if (q < 0)
        return -EINVAL;
    if ((unsigned)q == t->queue)
        return 0;
    /* Not a direct yield: the move is made in the worker's loop, once the
     * run so far has been charged to the old queue. */
    w->queue_move = (unsigned)q + 1;
    weft__worker_switch_out(w, t, SWITCH_YIELD);
    return 0;
}

bool weft_cancelled(void)
{
    weft_task *t = weft__task_current();
    return t && (load_state(t) & TASK_CANCELLED);
}

/* What a yield reports when its task runs again: its cancellation. */
static int after_yield(weft_task *t)
{
    return (load_state(t) & TASK_CANCELLED) && !t->shield ? -ECANCELED : 0;
}

/* The same, then a deadline that has passed by now (a clock reading, or 0
 * to take one only if the task has a deadline), so that a CPU-bound loop
 * that yields is bounded by its deadline as a loop of sleeps is. */
static int after_yield_at(weft_task *t, uint64_t now)
{
    int r = after_yield(t);
    if (r == 0 && t->deadline && (now ? now : weft_now_ns()) >= t->deadline)
        r = -ETIMEDOUT;
    return r;
}

int weft_yield(void)
{
    weft__worker *w = weft__worker_self();
    weft_task *t = w ? w->current : NULL;
    if (!t)
        return -EPERM;
    if (!weft__worker_yield_direct(w, t))
        weft__worker_switch_out(w, t, SWITCH_YIELD);
    return after_yield_at(t, 0);
}

#define YIELD_SKIP_MAX 15

int weft_yield_maybe(void)
{
    weft__worker *w = weft__worker_self();
    weft_task *t = w ? w->current : NULL;
    if (!t)
        return -EPERM;
    weft__sched *s = &w->sched;
    if (!s->preempt) {
        /* A clock read costs more than everything else here, so when calls
         * come quickly the clock is read only every so often: often enough
         * to notice the end of the slice within about a quarter of what is
         * left of it at the rate of the last calls, and at least every
         * YIELD_SKIP_MAX + 1 calls, which bounds the overrun of calls that
         * suddenly take longer. */
        w->yield_calls++;
        if (w->yield_check_skip) {
            w->yield_check_skip--;
            return after_yield(t);
        }
        uint64_t now = weft_now_ns();
        if (!w->run_start_ns)
            w->run_start_ns = now; /* untimed run: its clock starts here */
        /* The run's start may come from the run clock, a little ahead. */
        uint64_t ran = now > w->run_start_ns ? now - w->run_start_ns : 0;
        uint64_t next_timer = weft__timer_next(&w->timers);
        if (next_timer <= now || (w->threaded && weft__worker_remote_pending(w))) {
            /* A sleeper is due, or other workers woke or handed over tasks:
             * let the worker take them in now, so that their queues can
             * compete with this one (and preempt it). */
            s->poll_due = true;
            weft__worker_switch_out(w, t, SWITCH_YIELD);
            return after_yield_at(t, 0);
        }
        if (!weft__sched_should_yield(s, ran)) {
            uint64_t per_call = w->yield_last_ns ? (now - w->yield_last_ns) / w->yield_calls : 0;
            uint64_t left = s->slice_ns - s->slice_used_ns - ran;
            if (next_timer - now < left)
                left = next_timer - now;
            uint64_t skip = per_call ? left / (4 * per_call) : 0;
            w->yield_check_skip = skip > YIELD_SKIP_MAX ? YIELD_SKIP_MAX : skip;
            w->yield_last_ns = now;
            w->yield_calls = 0;
            return after_yield_at(t, now);
        }
        /* The slice's time is up. A timed scheduler knows (it charges
         * each run) and polls at the slice's end; an untimed one counts
         * only runs, and a loop of 500 us runs would keep the ring and an
         * executor's budget waiting for max_runs_per_slice of them (30 ms
         * by default): poll before the next pick. */
        if (!s->timed)
            s->poll_due = true;
    }
    weft__worker_switch_out(w, t, SWITCH_YIELD);
    return after_yield_at(t, 0);
}

int weft_defer(void (*fn)(void *), void *arg)
{
    weft_task *t = weft__task_current();
    if (!t)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    struct weft__defer *d = weft__malloc(sizeof *d);
    if (!d)
        return -ENOMEM;
    d->fn = fn;
    d->arg = arg;
    d->next = t->defers;
    t->defers = d;
    return 0;
}

int weft_wait_children(void)
{
    weft_task *t = weft__task_current();
    if (!t)
        return -EPERM;
    weft__runtime *rt = weft__worker_self()->rt;
    while (weft__tree_wait_kids_arm(rt, t)) {
        int r = weft__task_park_interruptible();
        /* The last child may have gone as we gave up: then it is 0. */
        if (r < 0)
            return weft__tree_wait_kids_disarm(rt, t) ? r : 0;
    }
    return 0;
}

/* ---- deadlines and shields ------------------------------------------------ */

weft__task_ext *weft__task_ext_get(weft_task *t)
{
    if (!t->ext)
        t->ext = weft__calloc(1, sizeof *t->ext);
    return t->ext;
}

/* The innermost deadline when abs_ns is pushed, or moved to, over outer
 * (the one in force outside it, 0 for none): the earlier of the two. An
 * abs_ns of 0 is kept as 1, long past, since 0 in t->deadline means none. */
static uint64_t innermost_deadline(uint64_t outer, uint64_t abs_ns)
{
    if (outer && outer <= abs_ns)
        return outer;
    return abs_ns ? abs_ns : 1;
}

/* The deadline in force with the task's pushes: the earliest of them and
 * the base. The raw pushes are kept, not the outer deadline at each, so
 * that the defers can drop the inherited base from under the function's
 * leftover pushes (finish). */
static uint64_t deadline_in_force(const weft_task *t)
{
    uint64_t d = t->ext->deadline_base;
    for (unsigned i = 0; i < t->ndeadlines; i++)
        d = t->ext->deadline_suspended >> i & 1 ? 0
                                                : innermost_deadline(d, t->ext->deadline_stack[i]);
    return d;
}

/* weft_now_ns() + ns, capped: past the clock's range means never within
 * this program's life, not a time that wrapped into the past. */
static uint64_t deadline_from_now(uint64_t ns)
{
    uint64_t now = weft_now_ns();
    return weft__add_sat(now, ns);
}

_Static_assert(TASK_MAX_DEADLINES <= TASK_DEADLINE_LEVEL_BITS,
               "a bit of deadline_suspended for each level of the deadline stack");

/* Pushes a level of the deadline stack: the deadline abs_ns, or with
 * suspend, a level that lifts every deadline outside it. */
static int push_level(uint64_t abs_ns, bool suspend)
{
    weft_task *t = weft__task_current();
    if (!t)
        return -EPERM;
    if (t->ndeadlines == TASK_MAX_DEADLINES)
        return -EOVERFLOW;
    weft__task_ext *ext = weft__task_ext_get(t);
    if (!ext)
        return -ENOMEM;
    if (!t->ndeadlines)
        ext->deadline_base = t->deadline;
    uint16_t bit = (uint16_t)(1u << t->ndeadlines);
    ext->deadline_suspended =
        suspend ? ext->deadline_suspended | bit : ext->deadline_suspended & (uint16_t)~bit;
    ext->deadline_stack[t->ndeadlines++] = abs_ns;
    t->deadline = suspend ? 0 : innermost_deadline(t->deadline, abs_ns);
    return 0;
}

int weft_deadline_push(uint64_t abs_ns)
{
    return push_level(abs_ns, false);
}

int weft_deadline_suspend(void)
{
    return push_level(0, true);
}

int weft_deadline_push_in(uint64_t ns)
{
    return weft_deadline_push(deadline_from_now(ns));
}

int weft_deadline_move(uint64_t abs_ns)
{
    weft_task *t = weft__task_current();
    if (!t)
        return -EPERM;
    if (!t->ndeadlines || t->ext->deadline_suspended >> (t->ndeadlines - 1) & 1)
        return -EINVAL; /* nothing pushed, or a suspension: nothing to move */
    /* Pop and push in one: the outer deadlines still bound the new one. */
    t->ext->deadline_stack[t->ndeadlines - 1] = abs_ns;
    t->deadline = deadline_in_force(t);
    return 0;
}

int weft_deadline_move_in(uint64_t ns)
{
    return weft_deadline_move(deadline_from_now(ns));
}

int weft_deadline_pop(void)
{
    weft_task *t = weft__task_current();
    if (!t)
        return -EPERM;
    if (!t->ndeadlines)
        return -EINVAL;
    t->ndeadlines--;
    t->deadline = deadline_in_force(t);
    return 0;
}

uint64_t weft_deadline_innermost(void)
{
    weft_task *t = weft__task_current();
    return t ? t->deadline : 0;
}

int weft_shield_push(void)
{
    weft_task *t = weft__task_current();
    if (!t)
        return -EPERM;
    if (t->shield == UINT16_MAX)
        return -EOVERFLOW;
    t->shield++;
    return 0;
}

int weft_shield_pop(void)
{
    weft_task *t = weft__task_current();
    if (!t)
        return -EPERM;
    if (!t->shield)
        return -EINVAL;
    t->shield--;
    return 0;
}

/* ---- the end of a task ---------------------------------------------------- */

static WEFT_TSAN_CALL void task_started(weft_task *t)
{
    t->run_flags |= TASK_R_STARTED;
}

/* Not instrumented under TSan (WEFT_NO_TSAN): it is on the stack at the
 * task's last switch. Its own accesses are in task_started and in
 * weft__task_finish's callees. */
WEFT_NO_TSAN void weft__task_entry(void *transfer)
{
    weft__fiber_started();
    weft_task *t = transfer;
    task_started(t);
    uintptr_t sp = ((uintptr_t)__builtin_frame_address(0) - WEFT__FINISH_ZONE) & ~(uintptr_t)15;
    void *res = weft__ctx_call(t->fn, t->arg, (void *)sp);
    weft__task_finish(t, res);
}

void weft__task_run_defers(weft_task *t)
{
    while (t->defers) {
        struct weft__defer *d = t->defers;
        t->defers = d->next;
        d->fn(d->arg);
        free(d);
    }
}

/* Several workers: n tasks are complete and out of the tree, maint of them
 * maintenance tasks. The last task wakes every worker, which
 * may then stop. So does the last task but the maintenance tasks: a worker
 * whose tasks were all woken away to other workers (WEFT_WAKE_TO_WAKER) may
 * be parked with its maintenance task waiting for them, and only its own
 * idle pass lets that task see they are gone and end. */
void weft__tasks_ended(weft__runtime *rt, uint64_t n, uint64_t maint)
{
    if (maint)
        atomic_fetch_sub_explicit(&rt->live_maint, maint, memory_order_relaxed);
    /* seq_cst, as the parking worker's last look at it (runtime_done)
     * and the `parked` loads in wake_all: the same instruction as acq_rel
     * on x86 and arm64. */
    uint64_t left = atomic_fetch_sub_explicit(&rt->live_tasks, n, memory_order_seq_cst) - n;
    if (left == 0 || left == atomic_load_explicit(&rt->live_maint, memory_order_relaxed))
        weft__runtime_wake_all(rt);
}

/* Publishes the outcome and wakes the joiner. The runtime's reference is
 * dropped by the worker loop once it is off the task's stack. */
static void complete(weft__worker *w, weft_task *t, void *result)
{
    weft__runtime *rt = w->rt;
    if (t->run_flags & TASK_R_PANICKED) {
        t->outcome = WEFT_EPANIC;
        w->count.panicked += !(t->flags & TASK_F_UNCOUNTED);
    } else if (t->run_flags & TASK_R_CANCEL_SEEN) {
        t->outcome = -ECANCELED;
        w->count.cancelled += !(t->flags & TASK_F_UNCOUNTED);
    } else if (t->run_flags & TASK_R_NO_STACK) {
        /* Set here, before COMPLETE is published: a joiner on another
         * worker may read it as soon as that is. Counted with the
         * cancelled, as a task that ended without running. */
        t->outcome = -ENOMEM;
        w->count.cancelled += !(t->flags & TASK_F_UNCOUNTED);
    } else {
        t->outcome = 0;
        w->count.completed += !(t->flags & TASK_F_UNCOUNTED);
    }
    t->result = t->outcome == 0 ? result : NULL;
    w->owned--;
    w->owned_uncounted -= (t->flags & TASK_F_UNCOUNTED) != 0;
    /* Ended away from home: tree_home unlinks it once this worker is off
     * its stack (release_ended, runtime/worker.c), and counts it ended then.
     * Until then it stays in its parent's list, complete, and the walks
     * pass over it. (The main task is the root's child: never here.) */
    bool at_home = t->tree_home == 0 || t->tree_home == w->index + 1;
    if (!at_home) {
        t->run_flags |= TASK_R_UNLINK_AT_HOME;
    } else {
        weft__tree_lock(rt);
        weft__tree_unlink(t);
        if (t == rt->main_task) {
            /* The main task is done: background tasks are cancelled now and
             * the workers run until every task has finished. */
            atomic_store_explicit(&rt->main_done, true, memory_order_release);
            weft__tree_cancel_children_locked(&rt->root);
        }
        weft__tree_unlock(rt);
    }
    /* An add, not an or: COMPLETE is clear until here, and an add whose
     * old value is used is one xadd, where an or needs a CAS loop. */
    uint64_t prev = atomic_fetch_add_explicit(&t->state, TASK_COMPLETE, memory_order_acq_rel);
    if (prev & TASK_JOIN_WAKER) {
        weft_task *joiner = t->joiner;
        weft__task_wake(joiner);
        weft__task_ref_drop(joiner); /* the joiner's, for this wake (weft_join) */
    }
    /* Complete now, so the set's join of it will not wait; the runtime's
     * reference keeps the record while this function goes on. */
    if (t->ext && t->ext->set)
        weft__taskset_finished(t->ext->set, t);
    if (rt->threaded && at_home)
        weft__tasks_ended(rt, 1, (t->flags & TASK_F_MAINTENANCE) != 0);
}

/* t ends without its function having started, on its owner's loop: what
 * it was given goes back. Direct descriptors given to it (weft_direct_give)
 * are closed, as at any task's end; what its argument carries goes back
 * through the spawn's discard callback, before a join can return. */
static void give_back_unstarted(weft_task *t)
{
    if (t->ring_bound)
        weft__resources_release(weft__worker_self(), t);
    if (t->ext && t->ext->discard)
        t->ext->discard(t->arg);
}

void weft__task_complete_unstarted(weft_task *t)
{
    t->run_flags |= TASK_R_CANCEL_SEEN;
    give_back_unstarted(t);
    complete(t->owner, t, NULL);
}

void weft__task_complete_without_stack(weft_task *t)
{
    t->run_flags |= TASK_R_NO_STACK;
    give_back_unstarted(t);
    complete(t->owner, t, NULL);
}

/* Whether t's live children may go to the orphan root when t ends: under
 * WEFT_ORPHANS_ADOPT, unless t or an ancestor has WEFT_TASK_CANCEL_CHILDREN.
 * That ancestor's end must cancel and await its whole subtree; a task in it
 * therefore ends as under WEFT_ORPHANS_CANCEL, cancelling and awaiting its
 * own children (which may borrow from the ancestor's stack too). Handing
 * them to the ancestor instead made its weft_wait_children wait for
 * grandchildren. Tree lock held. */
static bool may_orphan_children(const weft__runtime *rt, const weft_task *t)
{
    if (rt->cfg.orphans != WEFT_ORPHANS_ADOPT)
        return false;
    for (const weft_task *a = t; a && !(a->flags & TASK_F_ROOT); a = a->parent)
        if (a->flags & WEFT_TASK_CANCEL_CHILDREN)
            return false;
    return true;
}

/* t's children outlive it (WEFT_ORPHANS_ADOPT). Those of the main task's
 * work go to the orphan root, which shutdown leaves alone. Those of
 * background work (a WEFT_TASK_BACKGROUND task's subtree) stay background
 * work: they go to the root, whose children shutdown cancels, and are
 * cancelled at once if that has begun; under the orphan root they escaped
 * it, and weft_run waited for them for ever. Tree lock held. */
static void adopt_orphans(weft__runtime *rt, weft_task *t)
{
    const weft_task *top = t;
    while (!(top->parent->flags & TASK_F_ROOT))
        top = top->parent;
    bool background = top->parent == &rt->root && top != rt->main_task;
    if (!background) {
        weft__tree_adopt_children(t, &rt->orphans);
        return;
    }
    bool late = atomic_load_explicit(&rt->main_done, memory_order_relaxed);
    if (late) /* cancelled as the root's children were when main ended */
        weft__tree_cancel_children_locked(t);
    weft__tree_adopt_children(t, &rt->root);
}

/* Everything of the end of a task but the last switch; returns the worker
 * it ends on (the one it started on, unless it parked and moved). */
static WEFT_TSAN_CALL weft__worker *finish(weft_task *t, void *result)
{
    weft__runtime *rt = weft__task_owner(t)->rt; /* t runs on its owner */
    t->run_flags |= TASK_R_FINISHING;
    /* A deadline inherited at the spawn bounds the function only: the
     * defers, which cannot pop it, must be able to wait for cleanup
     * (one the function pushed and left pushed still applies, and their
     * pops never bring the inherited one back). */
    if (t->ndeadlines) {
        t->ext->deadline_base = 0;
        t->deadline = deadline_in_force(t);
    } else {
        t->deadline = 0;
    }
    if (load_state(t) & TASK_CANCELLED)
        t->run_flags |= TASK_R_CANCEL_SEEN;
    /* Defers may spawn: their children are dealt with as the function's. */
    do {
        bool kids = weft__tree_may_have_children(t);
        if (kids) {
            weft__tree_lock(rt);
            kids = t->first_child != NULL;
            if (kids && may_orphan_children(rt, t)) {
                adopt_orphans(rt, t);
                kids = false;
            } else if (kids) {
                weft__tree_cancel_children_locked(t);
            }
            weft__tree_unlock(rt);
        }
        while (kids && weft__tree_wait_kids_arm(rt, t))
            weft__task_park();
        weft__task_run_defers(t);
    } while (weft__tree_may_have_children(t));
    weft__worker *w = weft__worker_self();
    if (t->ring_bound)
        weft__resources_release(w, t);
    complete(w, t, result);
    return w;
}

/* Not instrumented under TSan, as weft__task_entry. */
WEFT_NO_TSAN _Noreturn void weft__task_finish(weft_task *t, void *result)
{
    weft__worker_switch_out(finish(t, result), t, SWITCH_EXIT);
    __builtin_unreachable();
}
