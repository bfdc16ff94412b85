/* The worker: its scheduler loop, the run-queue hand-off, parking on the
 * ring, wakes from other threads, and the task-record cache. */
#include "runtime/worker.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <weft/io.h>

#include "common/fault.h"
#include "common/utf8.h"
#include "observe/trace.h"
#include "ring/bufring.h"
#include "runtime/config.h"

/* Idle workers spin this many pause instructions looking for work before
 * they park. Measured on the 2-core KVM guest (bench/README.md): 100 made
 * workers park between the messages of a cross-worker ping-pong (11 us a
 * round trip), 400 did not (2.1 us, as 2000). A longer spin used to slow
 * the wake of a parked worker (40-44 us at the median after 2000 pauses, 15
 * us after 400): the kernel had put the woken worker on the waker's CPU,
 * behind the spin; hunt() now yields the CPU first (see there). */
#define WEFT_IDLE_SPINS 400
/* Of those, the first ones are spent before asking for work. Asking writes
 * lines every worker reads (`nhungry`, after each task run), and giving up
 * the request writes them again: a worker that goes idle between the
 * messages of a cross-worker exchange, whose next message comes within a
 * microsecond or two, would move them to and fro on every message. */
#define WEFT_QUIET_SPINS 100

static inline void weft__cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#endif
}

/* ---- per-thread state, reached only through these two functions --------- */

static __thread weft__worker *tls_worker;

/* Not inlined and not analysed across calls (GCC's noipa): a task may resume
 * on another thread after any blocking call, and a cached TLS address would
 * then point at the old thread's worker. */
#if defined(__clang__)
__attribute__((noinline))
#else
__attribute__((noipa))
#endif
weft__worker *
weft__worker_self(void)
{
    weft__worker *w = tls_worker;
    __asm__ volatile("" : "+r"(w)::"memory");
    return w;
}

void weft__worker_set_self(weft__worker *w)
{
    tls_worker = w;
}

uint64_t weft_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- task records --------------------------------------------------------- */

weft_task *weft__task_alloc(weft__worker *w)
{
    return weft__record_alloc(&w->records);
}

static void push_remote(_Atomic(weft_task *) *stack, weft_task *first, weft_task *last)
{
    weft_task *head = atomic_load_explicit(stack, memory_order_relaxed);
    do {
        last->rq_next = head;
    } while (!atomic_compare_exchange_weak_explicit(stack, &head, first, memory_order_seq_cst,
                                                    memory_order_relaxed));
}

void weft__task_free(weft__worker *w, weft_task *t)
{
    weft__worker *owner = weft__task_owner(t);
    if (w && w->rt == owner->rt) {
        weft__record_free(&w->records, t);
        return;
    }
    /* Dropped on a thread with no worker of t's runtime: an embedded
     * executor's host, a thread of the program's own, a task of another
     * runtime (whose pool must not take it). What the record owns goes
     * now; the record goes back through its owner, which takes it in at
     * its next poll. Left in its slab until the runtime ended, a host loop
     * that detached its finished tasks grew by a record each. */
    weft__record_release_owned(t);
#ifndef NDEBUG
    /* Dead from now on, as weft__record_free makes it: a handle used
     * again is refused (WEFT_EHANDLE) rather than freeing it twice. */
    t->magic = TASK_MAGIC_DEAD;
#endif
    push_remote(&owner->freed_elsewhere, t, t);
}

/* ---- wakes and hand-overs from other threads ----------------------------- */

static void arm_wake_read(weft__worker *w);

/* Takes a remote stack whole, oldest first. */
static weft_task *take_remote(_Atomic(weft_task *) *stack)
{
    if (!atomic_load_explicit(stack, memory_order_relaxed))
        return NULL;
    weft_task *t = atomic_exchange_explicit(stack, NULL, memory_order_acquire);
    weft_task *fifo = NULL;
    while (t) {
        weft_task *next = t->rq_next;
        t->rq_next = fifo;
        fifo = t;
        t = next;
    }
    return fifo;
}

/* Takes the tasks that wakers on other workers kept (WEFT_WAKE_TO_WAKER) out
 * of this worker's counts. If that leaves its maintenance task alone here,
 * the task may end (it waits for the worker's own tasks to be gone); it
 * cannot see that by itself, and the end of the run waits for it. */
static void settle_woken_away(weft__worker *w)
{
    /* seq_cst: paired with keep_woken's adds, after this worker set
     * `parked` (worker_poll), as the tasks' ends look at `parked`. */
    if (!atomic_load_explicit(&w->woken_away, memory_order_seq_cst))
        return;
    w->owned -= atomic_exchange_explicit(&w->woken_away, 0, memory_order_relaxed);
    for (unsigned i = 0; i < w->sched.nqueues; i++) {
        weft__queue *q = &w->sched.queues[i];
        if (atomic_load_explicit(&q->woken_away, memory_order_seq_cst))
            q->live -= atomic_exchange_explicit(&q->woken_away, 0, memory_order_relaxed);
    }
    if (w->maint)
        weft__maintenance_idle(w);
}

/* Unlinks the tasks spawned on `home` that ended on other workers, under
 * one hold of the tree lock, and lets their records go. Usually w is home,
 * at its poll; every worker does it for the others too, at its polls and
 * idle spells (help_unlink). */
static void unlink_ended_elsewhere(weft__worker *w, weft__worker *home)
{
    weft_task *ended = take_remote(&home->ended_elsewhere);
    if (!ended)
        return;
    uint64_t n = 0, maint = 0;
    weft__tree_lock(w->rt);
    for (weft_task *t = ended; t; t = t->rq_next) {
        weft__tree_unlink(t);
        n++;
        maint += (t->flags & TASK_F_MAINTENANCE) != 0;
    }
    weft__tree_unlock(w->rt);
    while (ended) {
        weft_task *next = ended->rq_next;
        weft__task_ref_drop(ended);
        ended = next;
    }
    weft__tasks_ended(w->rt, n, maint);
}

/* Every idle spell, and every HELP_EVERY-th poll, unlinks what waits on
 * all workers: a home busy in a task that does not yield would otherwise
 * hold up a parent waiting for those children on another worker, and the
 * end of the run. Not at every poll: a busy worker would then take the
 * lists of a home that is draining them itself, and move its parents'
 * lines between the cores again (2-worker spawn+join 10% slower). A look
 * at a list that is empty is a relaxed load. */
#define HELP_EVERY 16

static void help_unlink(weft__worker *w)
{
    w->since_help = 0;
    for (unsigned i = 0; i < w->rt->nworkers; i++)
        unlink_ended_elsewhere(w, &w->rt->workers[i]);
}

static void drain_remote(weft__worker *w)
{
    settle_woken_away(w);
    if (++w->since_help >= HELP_EVERY)
        help_unlink(w);
    else
        unlink_ended_elsewhere(w, w);
    for (weft_task *t = take_remote(&w->freed_elsewhere); t;) {
        weft_task *next = t->rq_next;
        weft__record_free(&w->records, t);
        t = next;
    }
    for (weft_task *t = take_remote(&w->remote_wakes); t;) {
        weft_task *next = t->rq_next;
        weft__sched_push(&w->sched, t, PUSH_QUEUE);
        t = next;
    }
    /* Hand-overs from busy workers, and the runtime's errands and the
     * tasks spawned for this worker (weft__spawn_on, WEFT_TASK_ON_WORKER),
     * which are no steal. */
    uint64_t stolen = 0;
    for (weft_task *t = take_remote(&w->remote_adopt); t;) {
        weft_task *next = t->rq_next;
        w->owned++;
        w->owned_uncounted += (t->flags & TASK_F_UNCOUNTED) != 0;
        stolen += !(t->flags & TASK_F_UNCOUNTED) && !(t->run_flags & TASK_R_PLACED);
        t->run_flags &= (uint8_t)~TASK_R_PLACED;
        w->sched.queues[t->queue].live++;
        weft__sched_push(&w->sched, t, PUSH_QUEUE);
        t = next;
    }
    w->count.tasks_stolen += stolen;
    w->count.steal_successes += stolen != 0;
}

bool weft__worker_remote_pending(weft__worker *w)
{
    return atomic_load_explicit(&w->remote_wakes, memory_order_seq_cst) ||
           atomic_load_explicit(&w->remote_adopt, memory_order_seq_cst);
}

#define WAKE_UNARMED_PARK_NS 1000000ull /* see worker_poll */

static void on_wake_fd(weft__op *op, int res, uint32_t cflags)
{
    weft__worker *w = (weft__worker *)((char *)op - offsetof(weft__worker, wake_op));
    w->wake_armed = false;
    (void)res;
    (void)cflags;
    arm_wake_read(w);
}

static void arm_wake_read(weft__worker *w)
{
    if (w->wake_armed || w->wake_fd < 0)
        return;
    struct io_uring_sqe *sqe = weft__ring_sqe(&w->ring, &w->wake_op);
    if (!sqe)
        return; /* fault injection: retried at the next park */
    io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof w->wake_buf, 0);
    w->wake_armed = true;
}

void weft__eventfd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof one);
    (void)n;
}

static void eventfd_wake(weft__worker *to)
{
    weft__eventfd_signal(to->wake_fd);
}

/* Ends `to`'s wait in io_uring_enter if it is parked there (or about to
 * be: it sets `parked` before it looks at its remote stacks one last
 * time); false when it was not, or another thread rang it first. A worker posts a CQE on to's ring
 * with MSG_RING; any other thread writes to's eventfd.
 *
 * An embedded worker's host loop sleeps on weft_executor_fd instead, and
 * never sets `parked`: make that fd readable, so that the host calls
 * weft_executor_run, whose poll takes the wake. (Only destroy's loop parks
 * in io_uring_enter, which a write to that fd does not end: the parked
 * path below still serves it.) */
static bool notify(weft__worker *to)
{
    if (to->rt->embedded && to->ring.event_fd >= 0)
        weft__eventfd_signal(to->ring.event_fd);
    if (!atomic_load_explicit(&to->parked, memory_order_seq_cst) ||
        !atomic_exchange_explicit(&to->parked, 0, memory_order_seq_cst))
        return false;
    weft__worker *self = weft__worker_self();
    if (self && self->rt == to->rt && !to->rt->embedded) {
        self->woke_parked = true; /* see hunt() */
        self->count.wakes_sent++;
        struct io_uring_sqe *sqe = weft__ring_sqe(&self->ring, NULL);
        if (sqe) {
            io_uring_prep_msg_ring(sqe, to->ring.uring.ring_fd, 0, WEFT__RING_WAKE_TAG, 0);
            /* No completion here when it works, and a failure's CQE is
             * tagged too: it is not an op in flight of this ring. */
            io_uring_sqe_set_data64(sqe, WEFT__RING_WAKE_TAG | (uint64_t)(to->index + 1) << 32);
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
            self->ring.pending_sqes--;
            /* At once: the sender may run a long task before its next
             * scheduling point. */
            int n = io_uring_submit(&self->ring.uring);
            if (n >= 0) {
                self->count.wakes_msg_ring++;
                return true;
            }
        }
    }
    eventfd_wake(to);
    return true;
}

/* A MSG_RING to a parked worker failed in the kernel: wake it the other
 * way, or it might sleep on. */
static void on_wake_failed(weft__ring *r, unsigned index)
{
    weft__worker *w = (weft__worker *)((char *)r - offsetof(weft__worker, ring));
    if (index < w->rt->nworkers)
        eventfd_wake(&w->rt->workers[index]);
}

/* WEFT_WAKE_TO_WAKER: a task running on `self` woke t, a parked task of
 * worker `from` that nothing pins there (its owner marked it
 * TASK_WAKE_MOVABLE as it parked), and claimed it with TASK_MOVING. t
 * becomes self's, and runs here with its waker's data warm in this core's
 * cache, instead of crossing to `from` and back. */
static void keep_woken(weft__worker *self, weft__worker *from, weft_task *t)
{
    __atomic_store_n(&t->owner, self, __ATOMIC_RELAXED);
    /* Whoever sees MOVING gone sees the new owner (weft_direct_give). */
    atomic_fetch_and_explicit(&t->state, ~TASK_MOVING, memory_order_release);
    self->owned++;
    self->sched.queues[t->queue].live++;
    self->count.moved_on_wake++;
    /* seq_cst: `from` reads these after it sets `parked` (settle_woken_away),
     * and this task's end looks at `parked` after them. */
    atomic_fetch_add_explicit(&from->sched.queues[t->queue].woken_away, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&from->woken_away, 1, memory_order_seq_cst);
    weft__sched_push(&self->sched, t, PUSH_WOKEN);
}

bool weft__worker_may_keep(const weft_task *t)
{
    weft__worker *self = weft__worker_self();
    const weft__worker *w = weft__task_owner(t);
    return self && self != w && self->wake_to_waker && self->current && self->rt == w->rt;
}

void weft__worker_schedule(weft_task *t, bool keep)
{
    weft__worker *w = weft__task_owner(t);
    weft__worker *self = weft__worker_self();
    if (keep) {
        keep_woken(self, w, t);
        return;
    }
    if (self == w) {
        /* Woken by the running task: a candidate for the LIFO slot. */
        weft__sched_push(&w->sched, t, w->current ? PUSH_WOKEN : PUSH_QUEUE);
        return;
    }
    push_remote(&w->remote_wakes, t, t);
    notify(w);
}

void weft__worker_hand_over(weft__worker *to, weft_task *first, weft_task *last)
{
    push_remote(&to->remote_adopt, first, last);
    notify(to);
}

/* t has ended and this worker is done with it: drops the runtime's
 * reference, or passes it to the task's tree_home with the unlink that
 * complete() left to it. */
static void release_ended(weft__worker *w, weft_task *t)
{
    if (!(t->run_flags & TASK_R_UNLINK_AT_HOME)) {
        weft__task_ref_drop(t);
        return;
    }
    weft__worker *home = &w->rt->workers[t->tree_home - 1];
    push_remote(&home->ended_elsewhere, t, t);
    notify(home);
}

void weft__runtime_wake_all(weft__runtime *rt)
{
    /* Rare (the end of a run): the eventfd, which cannot fail. */
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *w = &rt->workers[i];
        if (atomic_load_explicit(&w->parked, memory_order_seq_cst) &&
            atomic_exchange_explicit(&w->parked, 0, memory_order_seq_cst))
            eventfd_wake(w);
    }
}

/* ---- moving work between workers ------------------------------------------ */

static void become_hungry(weft__worker *w)
{
    w->sched_best_weight = 0;
    atomic_store_explicit(&w->best_weight, 0, memory_order_relaxed);
    w->sched_queues_with_work = 0;
    atomic_store_explicit(&w->queues_with_work, 0, memory_order_relaxed);
    /* From OFF, or from CLAIMED when a hand-over is late or never comes.
     * A CAS, not a store: a donor's unclaim_hungry may turn CLAIMED back to
     * ON (and count it) at the same time, and counting twice would leave
     * nhungry above zero for the rest of the run. */
    int h = atomic_load_explicit(&w->hunger, memory_order_relaxed);
    while (h != WEFT__HUNGER_ON)
        if (atomic_compare_exchange_weak_explicit(&w->hunger, &h, WEFT__HUNGER_ON,
                                                  memory_order_seq_cst, memory_order_relaxed)) {
            atomic_fetch_add_explicit(&w->rt->nhungry, 1, memory_order_seq_cst);
            w->count.steal_attempts++;
            return;
        }
}

/* True if this call took w's request for work (ON -> CLAIMED). */
static bool claim_hungry(weft__worker *w)
{
    int expect = WEFT__HUNGER_ON;
    if (atomic_load_explicit(&w->hunger, memory_order_relaxed) != WEFT__HUNGER_ON ||
        !atomic_compare_exchange_strong_explicit(&w->hunger, &expect, WEFT__HUNGER_CLAIMED,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return false;
    atomic_fetch_sub_explicit(&w->rt->nhungry, 1, memory_order_relaxed);
    return true;
}

/* Gives a claimed request back (CLAIMED -> ON) unless w has since moved on
 * by itself (found work, or asked again). */
static void unclaim_hungry(weft__worker *w)
{
    int expect = WEFT__HUNGER_CLAIMED;
    if (atomic_compare_exchange_strong_explicit(&w->hunger, &expect, WEFT__HUNGER_ON,
                                                memory_order_seq_cst, memory_order_relaxed))
        atomic_fetch_add_explicit(&w->rt->nhungry, 1, memory_order_seq_cst);
}

/* Moves the tasks first..last (n of them, taken out of w's scheduler) to
 * worker `to`. */
static void give(weft__worker *w, weft__worker *to, weft_task *first, weft_task *last, unsigned n)
{
    for (weft_task *t = first; t; t = t->rq_next) {
        /* A runnable task's timer (a deadline, or a sleep it was woken from
         * early) has nothing left to wake; it sits in this worker's timers,
         * which only this thread may touch. The task re-arms it on the new
         * worker if it still needs it. */
        if (t->armed_timer)
            weft__timer_remove(&w->timers, t->armed_timer);
        __atomic_store_n(&t->owner, to, __ATOMIC_RELAXED);
    }
    w->owned -= n;
    w->count.tasks_donated += n;
    weft__worker_hand_over(to, first, last);
}

/* A worker is hungry and this one has queued work: hand it about half of
 * the stealable tasks, each keeping its queue. */
static void donate(weft__worker *w)
{
    uint64_t queued = weft__sched_queued(&w->sched);
    if (queued < 2)
        return;
    /* Everything queued was pinned when last looked at, and no task that
     * could go has been queued since: looking again would pop and push the
     * whole queue after every task run (20,000 STICKY tasks took 53x as
     * long on 2 workers as on 1). */
    if (w->sched.stealable_pushes == w->donate_found_none_at)
        return;
    weft__runtime *rt = w->rt;
    weft__worker *to = NULL;
    for (unsigned k = 1; k < rt->nworkers && !to; k++) {
        weft__worker *c = &rt->workers[(w->index + k) % rt->nworkers];
        if (claim_hungry(c))
            to = c;
    }
    if (!to)
        return;
    weft_task *first, *last;
    unsigned n = weft__sched_take(&w->sched, -1, (unsigned)(queued / 2), weft__task_stealable,
                                  &first, &last);
    if (n == 0) {
        /* Everything queued is pinned here: let another worker feed it. */
        w->donate_found_none_at = w->sched.stealable_pushes;
        unclaim_hungry(to);
        return;
    }
    give(w, to, first, last, n);
}

/* Balancing between queue classes, at the start of each slice, with several
 * queues. Weights hold per worker: each worker shares its CPU among the
 * queues with work there. Two rules hand over half of the stealable tasks
 * of a slice's queue with two or more queued:
 *   - to a worker whose heaviest work is lighter than that queue: workers
 *     never idle when each has background work of its own, so hunger alone
 *     would leave all of a heavy queue's tasks on the worker that spawned
 *     them;
 *   - to a worker with no work in that queue: with A and B on one worker
 *     and A and C on the other, B's share would be set against A's there
 *     and never against C's, and the sums over the workers would miss the
 *     weights (A:B:C = 6:3:1 gave 76:17:7). With every queue on every
 *     worker each worker's shares are the weights', and so are the sums. */
static void balance_classes(weft__worker *w)
{
    weft__sched *s = &w->sched;
    weft__queue *cur = s->cur;
    uint32_t best = 0;
    uint64_t with_work = 0;
    for (unsigned i = 0; i < s->nqueues; i++) {
        weft__queue *q = &s->queues[i];
        if (q->nqueued || q == cur) {
            with_work |= 1ull << i;
            if (q->weight > best)
                best = q->weight;
        }
    }
    if (best != w->sched_best_weight) {
        w->sched_best_weight = best;
        atomic_store_explicit(&w->best_weight, best, memory_order_relaxed);
    }
    if (with_work != w->sched_queues_with_work) {
        w->sched_queues_with_work = with_work;
        atomic_store_explicit(&w->queues_with_work, with_work, memory_order_relaxed);
    }
    /* Nothing stealable pushed since a look at this queue found none: it
     * would pop and push back the whole queue again for nothing. */
    if (!cur || cur->nqueued < 2 || cur->balance_found_none_at == cur->stealable_pushes)
        return;
    unsigned qi = (unsigned)(cur - s->queues);
    weft__runtime *rt = w->rt;
    for (unsigned k = 1; k < rt->nworkers; k++) {
        weft__worker *c = &rt->workers[(w->index + k) % rt->nworkers];
        bool lighter = atomic_load_explicit(&c->best_weight, memory_order_relaxed) < cur->weight;
        bool lacks =
            !(atomic_load_explicit(&c->queues_with_work, memory_order_relaxed) & (1ull << qi));
        if (!lighter && !lacks)
            continue;
        weft_task *first, *last;
        unsigned n = weft__sched_take(s, (int)qi, (unsigned)(cur->nqueued / 2),
                                      weft__task_stealable, &first, &last);
        if (n == 0) {
            cur->balance_found_none_at = cur->stealable_pushes;
            return;
        }
        /* Until it publishes its own figures, c counts as fed (so that other
         * workers do not pile on). */
        if (lighter)
            atomic_store_explicit(&c->best_weight, cur->weight, memory_order_relaxed);
        atomic_fetch_or_explicit(&c->queues_with_work, 1ull << qi, memory_order_relaxed);
        give(w, c, first, last, n);
        return;
    }
}

/* ---- spawns from outside the runtime -------------------------------------- */

typedef struct weft__inject {
    struct weft__inject *next;
    weft_fn fn;
    void *arg;
    weft_spawn_opts opts;
    /* Non-NULL: no spawn but a cancel of this task, which the request
     * holds a reference on (weft__runtime_cancel_remote). */
    weft_task *cancel;
    char name[TASK_NAME_MAX];
} weft__inject;

static void leave_hunger(weft__worker *w);

void weft__inject_drop_all(weft__runtime *rt)
{
    while (rt->inject_head) {
        weft__inject *req = rt->inject_head;
        rt->inject_head = req->next;
        if (req->cancel)
            weft__task_ref_drop(req->cancel);
        else if (req->opts.discard)
            req->opts.discard(req->arg);
        free(req);
    }
    rt->inject_tail = NULL;
}

/* Spawns up to a few queued outside requests on w. */
static bool take_inject(weft__worker *w)
{
    weft__runtime *rt = w->rt;
    w->since_inject = 0;
    if (!atomic_load_explicit(&rt->inject_pending, memory_order_acquire))
        return false;
    pthread_mutex_lock(&rt->inject_lock);
    weft__inject *list = rt->inject_head;
    unsigned n = 0;
    weft__inject **end = &rt->inject_head;
    while (*end && n < 16) {
        end = &(*end)->next;
        n++;
    }
    rt->inject_head = *end;
    if (!rt->inject_head)
        rt->inject_tail = NULL;
    *end = NULL;
    pthread_mutex_unlock(&rt->inject_lock);
    while (list) {
        weft__inject *next = list->next;
        weft_task *t;
        if (list->cancel) {
            /* This is the thread that may walk the tree. */
            (void)weft__task_cancel(list->cancel);
            weft__task_ref_drop(list->cancel);
            free(list);
            atomic_fetch_sub_explicit(&rt->inject_pending, 1, memory_order_release);
            list = next;
            continue;
        }
        atomic_fetch_sub_explicit(&rt->inject_spawns, 1, memory_order_relaxed);
        /* After the main task has finished, the spawn gives birth cancelled
         * (background work spawned that late never runs). t is borrowed,
         * and no longer this worker's to touch: a placed one
         * (WEFT_TASK_ON_WORKER) may have run and ended elsewhere already. */
        int r = weft__spawn_internal(&t, &list->opts, list->fn, list->arg, 0, false);
        if (r == 0) {
            w->count.injected++;
        } else {
            /* The caller was told 0 long ago and nobody waits for an
             * answer: say so where it can be seen. */
            w->count.inject_failed++;
            fputs("weft: an outside spawn (weft_runtime_spawn", stderr);
            if (list->opts.name) {
                fputs(", ", stderr);
                weft__write_one_line(stderr, list->opts.name, false);
            }
            fprintf(stderr, ") could not start: %s\n", weft_strerror(r));
            if (list->opts.discard)
                list->opts.discard(list->arg);
        }
        free(list);
        atomic_fetch_sub_explicit(&rt->inject_pending, 1, memory_order_release);
        list = next;
    }
    /* Work of its own now: a worker woken from its hunger's park by the
     * request must not stay counted hungry, or a busy one hands it tasks
     * that then wait behind these (the loop leaves hunger only for work
     * its poll found). */
    if (n && w->threaded && !weft__sched_empty(&w->sched))
        leave_hunger(w);
    return n != 0;
}

static int inject(weft__runtime *rt, weft__inject *req);

int weft_runtime_spawn(weft_runtime *handle, const weft_spawn_opts *o, weft_fn fn, void *arg)
{
    weft__runtime *rt = (weft__runtime *)handle;
    static const weft_spawn_opts defaults;
    if (!rt || !fn)
        return -EINVAL;
    if (!o)
        o = &defaults;
    if (o->flags & ~(WEFT_TASK_STICKY | WEFT_TASK_CANCEL_CHILDREN | WEFT_TASK_ON_WORKER) ||
        ((o->flags & WEFT_TASK_ON_WORKER) && o->worker >= rt->nworkers))
        return -EINVAL;
    int queue = o->queue ? weft__config_queue_index(&rt->cfg, o->queue) : 0;
    if (queue < 0)
        return -ENOENT;
    if (o->stack_size && weft__stack_class(o->stack_size) < 0)
        return -EINVAL;
    weft__inject *req = weft__calloc(1, sizeof *req);
    if (!req)
        return -ENOMEM;
    req->fn = fn;
    req->arg = arg;
    req->opts = *o;
    req->opts.flags |= WEFT_TASK_BACKGROUND;
    if (o->queue) /* the runtime's copy: the caller's string may go */
        req->opts.queue = rt->cfg.queues[queue].name;
    if (o->name) {
        size_t len = weft__utf8_cut(o->name, sizeof req->name - 1);
        memcpy(req->name, o->name, len);
        req->name[len] = 0;
        req->opts.name = req->name;
    }
    return inject(rt, req);
}

/* Queues req for rt's workers and wakes one. 0, or (req freed) -ESHUTDOWN
 * once the main task has finished or -EAGAIN at inject_max, both for a
 * spawn only: a cancel is refused neither (an orphan adopted by the
 * runtime runs on after the main task, and the runtime's end waits for
 * it), nor counted against inject_max. */
static int inject(weft__runtime *rt, weft__inject *req)
{
    pthread_mutex_lock(&rt->inject_lock);
    if (!req->cancel && atomic_load_explicit(&rt->main_done, memory_order_acquire)) {
        pthread_mutex_unlock(&rt->inject_lock);
        free(req);
        return -ESHUTDOWN;
    }
    /* Backpressure: a thread that spawns faster than the workers take
     * requests would otherwise grow the queue without bound. */
    if (!req->cancel && rt->cfg.inject_max &&
        atomic_load_explicit(&rt->inject_spawns, memory_order_relaxed) >= rt->cfg.inject_max) {
        pthread_mutex_unlock(&rt->inject_lock);
        free(req);
        return -EAGAIN;
    }
    if (rt->inject_tail)
        rt->inject_tail->next = req;
    else
        rt->inject_head = req;
    rt->inject_tail = req;
    if (!req->cancel)
        atomic_fetch_add_explicit(&rt->inject_spawns, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->inject_pending, 1, memory_order_seq_cst);
    /* Any parked worker will do; when none is parked, a busy one looks at
     * the queue within inject_interval picks. This happens under the lock:
     * the runtime cannot end before a worker has taken the request, which
     * needs the lock, so rt stays valid until the unlock, the last touch. */
    if (rt->embedded)
        /* The host loop sleeps on the executor's fd: make it readable, so
         * that it calls weft_executor_run, which takes the request. */
        weft__eventfd_signal(rt->workers[0].ring.event_fd);
    for (unsigned i = 0; !rt->embedded && i < rt->nworkers; i++) {
        weft__worker *w = &rt->workers[i];
        /* One that another thread rang first takes that thread's work:
         * try the next. */
        if (notify(w))
            break;
    }
    pthread_mutex_unlock(&rt->inject_lock);
    return 0;
}

/* A cancel from a thread that may not walk rt's task tree (docs/tasks.md):
 * queued with the outside spawns, holding a reference to t's record, and
 * made by the worker as it takes them in. */
int weft__runtime_cancel_remote(weft__runtime *rt, weft_task *t)
{
    weft__inject *req = weft__calloc(1, sizeof *req);
    if (!req)
        return -ENOMEM;
    atomic_fetch_add_explicit(&t->state, TASK_REF_ONE, memory_order_relaxed);
    req->cancel = t;
    return inject(rt, req); /* 0: a cancel is never refused */
}

weft_runtime *weft_runtime_current(void)
{
    weft__worker *w = weft__worker_self();
    return w ? (weft_runtime *)w->rt : NULL;
}

/* ---- running a function on every worker ------------------------------------ */

typedef struct every_call {
    int (*fn)(weft__worker *, void *);
    void *arg;
    _Atomic unsigned pending;
    _Atomic int error;
    weft_task *waiter;
} every_call;

static void every_record(every_call *c, int r)
{
    int zero = 0;
    if (r < 0)
        atomic_compare_exchange_strong(&c->error, &zero, r);
}

/* One errand has answered: the waiter goes on once all have. */
static void every_done(every_call *c)
{
    weft_task *waiter = c->waiter;
    if (atomic_fetch_sub_explicit(&c->pending, 1, memory_order_acq_rel) == 1) {
        /* The waiter's extra reference keeps its record valid until this
         * wake is done, even if it sees pending at 0 and moves on. */
        weft__task_wake(waiter);
        weft__task_ref_drop(waiter);
    }
}

static void *every_task(void *arg)
{
    every_call *c = arg;
    every_record(c, c->fn(weft__worker_self(), c->arg));
    every_done(c);
    return NULL;
}

/* t ends without running (no stack could be had for it here). An errand
 * must still answer, or its caller waits for ever: it answers err. A
 * maintenance task must be forgotten, or w would take it for running and
 * never spawn another: its jobs would wait for ever (the next job or idle
 * pass spawns one again). */
static void errand_never_ran(weft__worker *w, weft_task *t, int err)
{
    if (t->fn == every_task) {
        every_record(t->arg, err);
        every_done(t->arg);
    }
    if (t == w->maint)
        w->maint = NULL;
}

int weft__on_every_worker(int (*fn)(weft__worker *w, void *arg), void *arg)
{
    weft__worker *w = weft__worker_self();
    if (!w)
        return -EPERM;
    /* A task, whatever the number of workers, so that a call that works
     * on one worker does not start failing on two: there the caller parks
     * while the others run the errands. */
    if (!w->current)
        return -EPERM;
    weft__runtime *rt = w->rt;
    if (rt->nworkers == 1)
        return fn(w, arg); /* nothing to wait for */
    every_call c = {.fn = fn, .arg = arg, .waiter = w->current};
    /* Pinned for the call: the last errand's wake would otherwise move the
     * caller to that errand's worker (WEFT_WAKE_TO_WAKER), and a caller
     * reading per-worker figures (weft_stats_queues_of_worker) would find
     * itself counted on whichever worker it was reading. */
    c.waiter->ring_bound++;
    atomic_fetch_add_explicit(&c.waiter->state, TASK_REF_ONE, memory_order_relaxed);
    atomic_init(&c.pending, 1);
    atomic_init(&c.error, 0);
    unsigned self = w->index;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        if (i == self)
            continue;
        weft_task *t;
        weft_spawn_opts o = {.flags = WEFT_TASK_STICKY | WEFT_TASK_BACKGROUND,
                             .name = "weft-every"};
        atomic_fetch_add_explicit(&c.pending, 1, memory_order_relaxed);
        int r = weft__spawn_on(&rt->workers[i], &t, &o, every_task, &c);
        if (r < 0) {
            atomic_fetch_sub_explicit(&c.pending, 1, memory_order_relaxed);
            every_record(&c, r);
        }
    }
    /* The calling task may not move while the others still use c. */
    every_record(&c, fn(weft__worker_self(), arg));
    if (atomic_fetch_sub_explicit(&c.pending, 1, memory_order_acq_rel) == 1)
        weft__task_ref_drop(c.waiter);
    else
        while (atomic_load_explicit(&c.pending, memory_order_acquire))
            weft__task_park();
    c.waiter->ring_bound--;
    return atomic_load(&c.error);
}

/* ---- running tasks -------------------------------------------------------- */

/* A parked task that a waker on another worker may keep: stealable, no
 * timer armed on this worker, and a queue policy that keeps nothing about
 * it (no exit hook to call on this thread). Nothing here can become true
 * of the task again until it runs. */
static bool wake_movable(const weft__worker *w, const weft_task *t)
{
    if (!w->wake_to_waker || !weft__task_stealable(t) || t->armed_timer)
        return false;
    return !weft__queue_has_exit(&w->sched.queues[t->queue]);
}

static void after_park(weft__worker *w, weft_task *t)
{
    /* Marked in the same CAS that parks it: the waker that claims t
     * decides from the word it replaces. */
    uint64_t movable = wake_movable(w, t) ? TASK_WAKE_MOVABLE : 0;
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (s & TASK_NOTIFIED) {
            /* A wake raced the park: consume it and stay runnable. */
            if (atomic_compare_exchange_weak_explicit(&t->state, &s, s & ~TASK_NOTIFIED,
                                                      memory_order_acq_rel, memory_order_acquire)) {
                weft__sched_push(&w->sched, t, PUSH_QUEUE);
                return;
            }
        } else if (atomic_compare_exchange_weak_explicit(
                       &t->state, &s, (s & ~TASK_RUNNING) | movable, memory_order_acq_rel,
                       memory_order_acquire)) {
            return;
        }
    }
}

/* Makes t ready to run: answers a pending wake, and gives a task its stack
 * at its first run. False when t ended instead (cancelled before it ever
 * ran, or no stack could be had: its join reports -ENOMEM). Such an end
 * runs the spawn's discard callback, user code, which must not run on the
 * stack of a task: from a task's stack (in_loop false) t goes back to the
 * front of its queue instead, for the loop to end it, and false too. */
static inline __attribute__((always_inline)) bool prepare_run(weft__worker *w, weft_task *t,
                                                              bool in_loop)
{
    weft__sched *sched = &w->sched;
    uint64_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
    if (s & TASK_NOTIFIED) /* woken again while queued: this run answers it */
        atomic_fetch_and_explicit(&t->state, ~TASK_NOTIFIED, memory_order_relaxed);
    if (t->stack)
        return true;
    if ((s & TASK_CANCELLED) && !in_loop) {
        weft__sched_push(sched, t, PUSH_FIRST);
        return false;
    }
    if (s & TASK_CANCELLED) {
        errand_never_ran(w, t, -ECANCELED);
        weft__task_complete_unstarted(t);
        weft__sched_exit(sched, t);
        release_ended(w, t);
        return false;
    }
    weft__stack *stack;
    int r = weft__stack_acquire(&w->stacks, t->stack_class, &stack);
    if (r == 0) {
        r = weft__fiber_init(&t->fiber, stack->lo, stack->size, weft__task_entry);
        if (r < 0)
            weft__stack_release(&w->stacks, stack);
    }
    if (r < 0 && !in_loop) {
        weft__sched_push(sched, t, PUSH_FIRST); /* the loop tries again */
        return false;
    }
    if (r < 0) {
        /* No stack after all (see weft__stack_reserve): the task ends
         * without running and its join reports -ENOMEM. */
        errand_never_ran(w, t, r);
        weft__task_complete_without_stack(t);
        weft__sched_exit(sched, t);
        release_ended(w, t);
        return false;
    }
    t->stack = stack;
    return true;
}

/* Starts loading the top of t's stack, where its entry frame is. A task
 * that parked a while ago comes back to a stack that is cold in the caches
 * and the TLB, and its return into the entry frame (and the end-of-task
 * protocol there) would then wait for that memory. With 100k parked tasks
 * (weft_micro sleep, warm rounds) this halves the time: 112-128 ms a round
 * without, 60-76 ms with, whichever of 2 to 4 lines, read or write. Cheap
 * when the stack is hot. */
static inline __attribute__((always_inline)) void prefetch_entry_frame(const char *top)
{
    __builtin_prefetch(top - 64, 1, 3);
    __builtin_prefetch(top - 128, 1, 3);
}

static inline __attribute__((always_inline)) void prefetch_stack_top(const weft_task *t)
{
    prefetch_entry_frame(t->stack->lo + t->stack->size);
}

/* Starts loading, ahead of time, the stack lines a queued task n will touch
 * first. A task that parked a while ago resumes at its saved stack pointer,
 * returns up to its entry frame and runs the end-of-task protocol just below
 * it: PREFETCH_SP_LINES from sp up, PREFETCH_RESUME_TOP_LINES down from the
 * top. A task that has not run yet gets the stack at the head of the pool
 * (*pool, advanced here for the task after it): its entry frame at the top
 * and its function's first frames WEFT__FINISH_ZONE below. */
#define PREFETCH_SP_LINES         4
#define PREFETCH_RESUME_TOP_LINES 6
#define PREFETCH_FN_LINES         4
static inline __attribute__((always_inline)) void prefetch_task_stack(const weft_task *n,
                                                                      const weft__stack **pool)
{
    if (n->stack) {
        const char *top = n->stack->lo + n->stack->size;
        const char *sp = n->fiber.sp;
        for (int i = 0; i < PREFETCH_SP_LINES; i++)
            __builtin_prefetch(sp + 64 * i, 1, 3);
        for (int i = 1; i <= PREFETCH_RESUME_TOP_LINES; i++)
            __builtin_prefetch(top - 64 * i, 1, 3);
        return;
    }
    const weft__stack *s = *pool;
    if (!s)
        return;
    *pool = s->next;
    const char *top = s->lo + s->size;
    prefetch_entry_frame(top);
    for (int i = 0; i < PREFETCH_FN_LINES; i++)
        __builtin_prefetch(top - WEFT__FINISH_ZONE - 64 * (i + 2), 1, 3);
}

/* While one task runs, the memory of the next two in a runnable-FIFO queue
 * is loaded: their stacks, and the record of the third (whose stack is
 * loaded on the next run). Each of 100k sleepers (weft_micro sleep, warm
 * rounds) touches its own stack, far from the others', and its record:
 * without this, a round spent most of its time waiting for those lines
 * (35-43 ms a round with it, 51-58 ms without, alternating runs on the
 * 2-vCPU VM). */
static inline __attribute__((always_inline)) void prefetch_next(weft__worker *w)
{
    weft_task *n = weft__sched_peek_hint(&w->sched);
    if (!n)
        return;
    const weft__stack *pool = w->stacks.free[n->stack_class];
    prefetch_task_stack(n, &pool);
    weft_task *nn = weft__sched_peek_hint_after(n);
    if (!nn)
        return;
    prefetch_task_stack(nn, &pool);
    weft_task *nnn = weft__sched_peek_hint_after(nn);
    if (!nnn)
        return;
    for (size_t off = 0; off < sizeof *nnn; off += 64)
        __builtin_prefetch((const char *)nnn + off, 1, 3);
}

/* t is about to get the CPU. */
static inline __attribute__((always_inline)) void begin_run(weft__worker *w, weft_task *t)
{
    w->current = t;
    w->count.switches++;
    /* Timed runs: the clock is read once per switch, after the run; the
     * reading also starts the next run. Untimed: yield_maybe starts its
     * own clock lazily. */
    w->run_start_ns = w->sched.timed ? w->sched.now : 0;
    w->yield_check_skip = 0;
    w->yield_calls = 0;
    weft__trace_run_start(w);
}

bool weft__worker_yield_direct(weft__worker *w, weft_task *t)
{
    weft__sched *sched = &w->sched;
    if (w->threaded && atomic_load_explicit(&w->rt->nhungry, memory_order_relaxed))
        return false; /* the loop has a hand-over to make */
    if (__builtin_expect(w->stacks.helper_start_wanted, 0))
        return false; /* the loop starts the stack helper, on its own stack */
    if (w->since_inject + 1 >= w->rt->cfg.inject_interval) {
        /* Time to look at the inject queue: the loop does that, but only
         * when there is something to take. */
        if (atomic_load_explicit(&w->rt->inject_pending, memory_order_relaxed))
            return false;
        w->since_inject = 0;
    }
    weft_task *next = weft__sched_pick_fast(sched);
    if (!next)
        return false;
    /* With no current task, as in the loop, while next gets its stack. */
    w->current = NULL;
    bool ready = prepare_run(w, next, false);
    w->current = t;
    if (!ready)
        return false; /* next must end without running: the loop ends it */
    if (!weft__sched_push_fast(sched, t))
        weft__sched_push(sched, t, PUSH_QUEUE);
    w->since_inject++;
    if (__builtin_expect(w->trace != NULL, 0))
        weft__trace_run_end(w, t, SWITCH_YIELD);
    begin_run(w, next);
    /* The switch still pushes onto t's stack: an overflow there is t's. */
    w->leaving = t;
    weft__fiber_switch_peer(&t->fiber, &next->fiber, next);
    return true;
}

static inline __attribute__((always_inline)) void run_task(weft__worker *w, weft_task *t)
{
    weft__sched *sched = &w->sched;
    /* Here, on the worker's own stack (context/stack.h). */
    if (__builtin_expect(w->stacks.helper_start_wanted, 0))
        weft__stack_helper_start(&w->stacks);
    if (!prepare_run(w, t, true))
        return;
    begin_run(w, t);
    prefetch_stack_top(t);
    prefetch_next(w);
    weft__fiber_switch(&w->fiber, &t->fiber, t, false);
    /* The task that switched back: t, or a task that t's yield switched to
     * directly (weft__worker_yield_direct). */
    t = w->current;
    w->current = NULL;
    /* A direct yield may have left its task here; it is queued, and from
     * now on this loop may hand it to another worker, which may end it. */
    w->leaving = NULL;
    if (__builtin_expect(w->trace != NULL, 0))
        weft__trace_run_end(w, t, w->reason);
    if (sched->timed) {
        uint64_t now = weft__runclock_now(&w->clock);
        if (now < sched->now) /* as in read_clock */
            now = sched->now;
        weft__sched_charge(sched, t, now - sched->now);
        sched->now = now;
    }
    switch (w->reason) {
    case SWITCH_YIELD:
        if (__builtin_expect(w->queue_move != 0, 0)) {
            weft__sched_move(sched, t, w->queue_move - 1);
            w->queue_move = 0;
            weft__sched_push(sched, t, PUSH_QUEUE);
            break;
        }
        if (!weft__sched_push_fast(sched, t))
            weft__sched_push(sched, t, PUSH_QUEUE);
        break;
    case SWITCH_PARK:
        after_park(w, t);
        break;
    case SWITCH_EXIT:
        weft__sched_exit(sched, t);
        /* A panic ends the task from inside its function's frames. */
        weft__fiber_fini(&t->fiber, !(t->run_flags & TASK_R_PANICKED));
        weft__stack_release(&w->stacks, t->stack);
        t->stack = NULL;
        release_ended(w, t);
        break;
    }
}

/* The runtime has nothing left to run: no live task (on any worker) and
 * no outside spawn waiting. */
static bool runtime_done(const weft__worker *w)
{
    const weft__runtime *rt = w->rt;
    if (atomic_load_explicit(&rt->inject_pending, memory_order_seq_cst))
        return false;
    if (!w->threaded)
        return w->owned == 0;
    return atomic_load_explicit(&((weft__runtime *)rt)->live_tasks, memory_order_seq_cst) == 0;
}

/* sched.now takes a reading unless it is behind: an extrapolated reading
 * may be a little ahead of a later real one, and sched.now must not go back
 * (queue delays are measured from it). */
static void advance_sched_now(weft__worker *w, uint64_t now)
{
    if (now > w->sched.now)
        w->sched.now = now;
}

/* A real clock reading, which also advances sched.now. Timers are fired by
 * the real reading returned here, so that none fires early. */
static uint64_t read_clock(weft__worker *w)
{
    uint64_t now = weft__runclock_sync(&w->clock);
    advance_sched_now(w, now);
    return now;
}

void weft__worker_sync_clock(weft__worker *w)
{
    read_clock(w);
}

/* The reading a poll starts with. A real one costs a clock_gettime (25-35
 * ns on the KVM guests measured, twice that with its bracketing) at every
 * poll, which a task doing one op at a time pays per op. It is needed only
 * to fire timers without firing any early: so the run clock's cheap
 * reading (extrapolated from the TSC, within a millisecond of a real one)
 * decides first whether one may be due. If that reading is a little
 * behind, a timer due in between fires at the next poll, a little late;
 * it never fires early, since only a real reading fires timers. */
static uint64_t read_clock_for_poll(weft__worker *w)
{
    uint64_t now = weft__runclock_now(&w->clock);
    if (weft__timer_next(&w->timers) <= now)
        return read_clock(w);
    advance_sched_now(w, now);
    return now;
}

/* Takes what other threads queued, fires due timers and reaps completions,
 * waiting up to timeout_ns for one (0 = do not wait). */
static int worker_poll(weft__worker *w, uint64_t timeout_ns)
{
    uint64_t now = read_clock_for_poll(w);
    /* Stacks released from now on are stamped with this reading: the age
     * that trimming waits for is counted from it (weft__stack_trim), and
     * a worker busy for seconds would otherwise stamp them with the time
     * it was last idle, and trim them, still hot, at its next idle. */
    w->stacks.clock_ns = now;
    drain_remote(w);
    if (weft__timer_count(&w->timers))
        weft__timer_expire(&w->timers, now);
    bool other_io = w->ring.inflight > (w->wake_armed ? 1u : 0u) || w->ring.pending_sqes;
    if (timeout_ns == 0 && !other_io)
        return 0;
    /* `parked` is read by every waker of this worker's tasks (notify), on
     * the line they push to: stored only around a real park, or a worker
     * busy in a cross-worker exchange would take that line from its wakers
     * at every poll. */
    bool parking = timeout_ns != 0;
    if (parking) {
        arm_wake_read(w);
        /* Without the eventfd's read in the ring, a wake from another
         * thread would not end the wait (MSG_RING falls back to the
         * eventfd when it finds no SQE): look again every millisecond
         * until the read can be armed. */
        if (!w->wake_armed && w->wake_fd >= 0 && timeout_ns > WAKE_UNARMED_PARK_NS)
            timeout_ns = WAKE_UNARMED_PARK_NS;
        /* Tell wakers to ring, then look once more: a wake or hand-over
         * pushed before this store is seen here, one pushed after it sees
         * `parked` and posts a CQE that ends the wait. */
        atomic_store_explicit(&w->parked, 1, memory_order_seq_cst);
        /* The looks below start with relaxed loads, which C11 lets move
         * before a seq_cst store (x86's xchg would not, arm64's stlr
         * could); the fence keeps them after it, at the price of one
         * barrier per park, next to the system call. */
        atomic_thread_fence(memory_order_seq_cst);
        drain_remote(w);
        /* inject_pending too: weft_runtime_spawn rings only a worker it
         * sees parked, so a request queued after this worker's last look
         * and before the store above would wait for an unrelated wake (or
         * for ever, with no timer or op to end the park). */
        if (!weft__sched_empty(&w->sched) || runtime_done(w) ||
            atomic_load_explicit(&w->rt->inject_pending, memory_order_seq_cst)) {
            timeout_ns = 0;
            /* At once: weft_runtime_spawn rings one worker it sees parked,
             * and one that goes back to its own queue would leave the
             * request to its next inject look while another sleeps. */
            atomic_store_explicit(&w->parked, 0, memory_order_relaxed);
        } else
            w->count.parks++;
    }
    int r = weft__ring_wait(&w->ring, timeout_ns);
    if (parking)
        atomic_store_explicit(&w->parked, 0, memory_order_relaxed);
    /* A wait that did not block took one system call (and the completion
     * work the kernel did in it): no real reading for it (10-20% of a
     * NOP's round trip on the KVM machine). A timed scheduler starts its
     * next run at sched.now, though, and that time is not the next task's:
     * a cheap reading moves it on. */
    uint64_t after = now;
    if (timeout_ns)
        after = read_clock(w);
    else if (w->sched.timed)
        advance_sched_now(w, weft__runclock_now(&w->clock));
    if (timeout_ns && after > now) {
        if (now > w->count.busy_since_ns)
            w->count.busy_ns += now - w->count.busy_since_ns;
        w->count.idle_ns += after - now;
        w->count.busy_since_ns = after;
        /* A park that a timer ended: wake its sleepers now, so that the
         * caller sees work and stops counting this worker as hungry. */
        if (weft__timer_count(&w->timers))
            weft__timer_expire(&w->timers, after);
    }
    drain_remote(w);
    return r < 0 ? r : 0;
}

static int run_until_idle(weft__worker *w, uint64_t until_ns)
{
    weft__sched *sched = &w->sched;
    weft__runtime *rt = w->rt;
    for (;;) {
        bool need_poll = false;
        weft_task *t = weft__sched_pick_fast(sched);
        if (!t)
            t = weft__sched_pick(sched, &need_poll);
        if (t) {
            run_task(w, t);
            /* Timed runs leave a fresh clock reading: when a sleeper fell
             * due during the run, fire it now rather than at the end of the
             * slice, so its queue competes (and may preempt) at once. */
            if (sched->timed && weft__timer_next(&w->timers) <= sched->now) {
                int r = worker_poll(w, 0);
                if (r < 0)
                    return r;
            }
            if (w->threaded) {
                if (atomic_load_explicit(&rt->nhungry, memory_order_relaxed))
                    donate(w);
                if (sched->nqueues > 1 && sched->slice_runs == 1)
                    balance_classes(w);
            }
            /* Outside spawns: a worker that never runs out of work (one
             * alone, too) must still take them. */
            if (++w->since_inject >= rt->cfg.inject_interval)
                take_inject(w);
            continue;
        }
        if (!need_poll)
            weft__sched_end_slice(sched);
        /* At slice ends, when a timer is due, and before deciding there is
         * nothing to run: timers, other threads' wakes and the ring. */
        int r = worker_poll(w, 0);
        if (r < 0)
            return r;
        if (!need_poll && weft__sched_empty(sched)) {
            if (take_inject(w)) {
                /* Outside spawns keep an embedded run going, within its
                 * budget still: a feeder thread must not hold the host. */
                if (until_ns != UINT64_MAX && sched->now >= until_ns)
                    return 1;
                continue;
            }
            weft__maintenance_idle(w);
            if (weft__sched_empty(sched))
                return 0;
        }
        if (until_ns != UINT64_MAX && sched->now >= until_ns)
            return 1;
    }
}

int weft__worker_run_ready(weft__worker *w, uint64_t until_ns)
{
    int r = run_until_idle(w, until_ns);
    /* Idle, or back to an embedding host, which may keep the thread a
     * while: what wakes from now on did not wake during the last run. */
    weft__sched_idle(&w->sched);
    return r;
}

uint64_t weft__worker_next_deadline(const weft__worker *w)
{
    return weft__timer_next(&w->timers);
}

/* Idle with several workers: ask for work, and spin a little for it before
 * parking (a hand-over usually follows within a task run). Returns true
 * when something arrived. */
static bool hunt(weft__worker *w)
{
    /* A worker that this one woke from its park may have been placed on
     * this CPU: the kernel does that when the woken one's own CPU is idle,
     * and on a VM a halted vCPU counts as busy (the host descheduled it).
     * Spinning would then hold it off until this worker parks (12-16 us of
     * a 20 us wake on the 2-core VM, where waking the other vCPU instead
     * takes 50 us). Give the CPU away once first; with nothing else to run
     * here, sched_yield returns at once. Workers that outnumber their CPUs
     * always do, and then look once, hungry at once, and park: a spin
     * would take the CPU of a worker with work (an echo server's two
     * workers under `taskset -c 0`: p99 4.2 ms spinning, 1.5 ms parking
     * at once, 1.0 ms yielding first; Tokio's 0.9, bench/README.md). */
    if (w->woke_parked || !w->rt->spin_idle) {
        w->woke_parked = false;
        sched_yield();
    }
    help_unlink(w);
    unsigned spins = w->rt->spin_idle ? WEFT_IDLE_SPINS : 1;
    unsigned quiet = w->rt->spin_idle ? WEFT_QUIET_SPINS : 0;
    for (unsigned i = 0; i < spins; i++) {
        if (i == quiet)
            become_hungry(w);
        /* Ended tasks to unlink are no work to run: take them and go on
         * spinning (returning would start the quiet spins again, and a
         * stream of them kept an idle worker from ever asking). */
        unlink_ended_elsewhere(w, w);
        /* (An unlink may wake a parent here, waiting for its children.) */
        if (!weft__sched_empty(&w->sched) || weft__worker_remote_pending(w) || runtime_done(w) ||
            atomic_load_explicit(&w->rt->inject_pending, memory_order_relaxed))
            return true;
        weft__cpu_relax();
    }
    return false;
}

static void leave_hunger(weft__worker *w)
{
    if (atomic_load_explicit(&w->hunger, memory_order_relaxed) == WEFT__HUNGER_OFF)
        return;
    int h = atomic_exchange_explicit(&w->hunger, WEFT__HUNGER_OFF, memory_order_seq_cst);
    /* A spell that ends in work of its own stays counted: the counter
     * only goes up, so that two readings never go backwards. */
    if (h == WEFT__HUNGER_ON)
        atomic_fetch_sub_explicit(&w->rt->nhungry, 1, memory_order_relaxed);
    /* CLAIMED: a busy worker took the request; its hand-over, if one
     * comes, finds this worker busy, and if it finds nothing to give, its
     * unclaim_hungry sees OFF and leaves it. */
}

/* io_uring_enter failed with an error that no retry cures: the ring's fd
 * was closed behind weft's back, say, or the process forked and the child
 * runs the parent's ring. The worker can complete none of its tasks' I/O,
 * so they can never end, and the kernel may still write into their stacks:
 * freeing them and returning would risk corruption, keeping them would
 * hang weft_run. Say why and stop. (An embedded executor's host gets the
 * error from weft_executor_run instead, and decides.) */
static _Noreturn void ring_failed(const weft__worker *w, int err)
{
    fprintf(stderr,
            "weft: worker %u: waiting on its io_uring failed (%s); its tasks cannot go on\n",
            w->index, strerror(-err));
    abort();
}

/* The scheduler loop of weft_run: run what is ready, then park in
 * io_uring_enter until the next timer, a completion or a wake from another
 * thread; until no task is left anywhere. */
void weft__worker_run(weft__worker *w)
{
    weft__worker_start(w);
    for (;;) {
        int r = weft__worker_run_ready(w, UINT64_MAX);
        if (r < 0)
            ring_failed(w, r);
        if (runtime_done(w))
            break;
        if (w->threaded && hunt(w)) {
            r = worker_poll(w, 0);
            if (r < 0)
                ring_failed(w, r);
            if (!weft__sched_empty(&w->sched))
                leave_hunger(w);
            continue;
        }
        /* Idle: give back deep pages of long-unused stacks, then park. */
        uint64_t now = read_clock(w);
        weft__stack_trim(&w->stacks, 64, now);
        uint64_t next = weft__timer_next(&w->timers);
        /* A timer that fell due during the hunt: a poll without waiting,
         * and the hunger ends below as after a park. (Going straight back
         * to the loop once ran the woken task still counted hungry, and
         * other workers handed it work that waited behind it.) */
        uint64_t timeout = UINT64_MAX;
        if (next != UINT64_MAX)
            timeout = next > now ? next - now : 0;
        r = worker_poll(w, timeout);
        if (r < 0)
            ring_failed(w, r);
        if (!weft__sched_empty(&w->sched))
            leave_hunger(w);
    }
    leave_hunger(w);
    /* Tell the others: they may be parked waiting for work that will not
     * come. */
    weft__runtime_wake_all(w->rt);
}

void weft__worker_start(weft__worker *w)
{
    arm_wake_read(w);
    w->count.busy_since_ns = read_clock(w);
}

uint64_t weft__worker_live_tasks(const weft__worker *w)
{
    return w->owned;
}

uint64_t weft__worker_program_tasks(const weft__worker *w)
{
    return w->owned - w->owned_uncounted;
}

int weft__worker_init(weft__worker *w, weft__runtime *rt, unsigned index, bool embedded)
{
    /* A worker thread sets itself up after pthread_create stored its id
     * here: keep it, weft_run joins by it. */
    pthread_t thread = w->thread;
    memset(w, 0, sizeof *w);
    w->thread = thread;
    w->rt = rt;
    w->index = index;
    w->threaded = rt->threaded;
    w->wake_to_waker = rt->threaded && !embedded && rt->cfg.wake_placement == WEFT_WAKE_TO_WAKER;
    w->wake_fd = -1;
    w->wake_op.complete = on_wake_fd;
    w->donate_found_none_at = UINT64_MAX;
    weft__runclock_init(&w->clock, !embedded);
    weft__fiber_init_thread(&w->fiber);
    weft__stack_pool_init(&w->stacks);
    w->stacks.helper = &rt->stack_helper;
    int r = weft__sched_init(&w->sched, &rt->cfg);
    if (r < 0)
        goto fail_sched;
    w->sched.count_stealable = w->threaded;
    r = weft__ring_init(&w->ring, rt->cfg.ring_entries,
                        embedded           ? WEFT__RING_EMBEDDED
                        : rt->park_in_poll ? WEFT__RING_POLL_PARKED
                                           : WEFT__RING_PARKED);
    if (r < 0)
        goto fail_ring;
    w->ring.wake_failed = on_wake_failed;
    w->ring.direct_tag = weft__direct_tag_of(rt->direct_tag_base, index);
    weft__ring_register_tables(&w->ring, rt->cfg.direct_fds, rt->cfg.fixed_buffers);
    if (w->ring.direct_slots) {
        w->direct_owner = weft__calloc(w->ring.direct_slots, sizeof *w->direct_owner);
        w->close_slots = weft__calloc(w->ring.direct_slots, sizeof *w->close_slots);
        if (!w->direct_owner || !w->close_slots) {
            r = -ENOMEM;
            goto fail_fd;
        }
    }
    w->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (w->wake_fd < 0) {
        r = -errno;
        goto fail_fd;
    }
    r = weft__overflow_install(w);
    if (r < 0)
        goto fail_alt;
    r = weft__trace_worker_init(w);
    if (r < 0)
        goto fail_trace;
    return 0;
fail_trace:
    weft__overflow_remove(w);
fail_alt:
    close(w->wake_fd);
fail_fd:
    free(w->direct_owner);
    free(w->close_slots);
    weft__ring_fini(&w->ring);
fail_ring:
    weft__sched_fini(&w->sched);
fail_sched:
    return r;
}

void weft__worker_fini(weft__worker *w)
{
    weft__trace_worker_fini(w);
    weft__overflow_remove(w);
    /* Closing the ring cancels the pending eventfd read; its op record lives
     * in this struct, which outlives the ring. */
    weft__ring_fini(&w->ring);
    weft__cleanup_fini(w);
    weft__bufrings_fini(w);
    close(w->wake_fd);
    free(w->direct_owner);
    free(w->close_slots);
    weft__timers_fini(&w->timers);
    weft__sched_fini(&w->sched);
}

void weft__worker_release_pools(weft__worker *w, bool records_held)
{
    weft__stack_pool_fini(&w->stacks);
    weft__record_pool_fini(&w->records, records_held);
}
