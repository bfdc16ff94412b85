/* The worker: its scheduler loop, the run-queue hand-off, parking on the
 * ring, wakes from other threads, and the task-record cache. */
#include "runtime/worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <weft/io.h>

#include "common/fault.h"
#include "ring/bufring.h"

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

void weft__task_free(weft__worker *w, weft_task *t)
{
    /* Without a worker (a handle dropped outside the runtime) the record
     * stays in its slab until the runtime's pools are released. */
    if (w)
        weft__record_free(&w->records, t);
    else
        weft__record_release_owned(t);
}

/* ---- wakes from other threads --------------------------------------------- */

static void arm_wake_read(weft__worker *w);

static void drain_inbox(weft__worker *w)
{
    if (!atomic_load_explicit(&w->inbox_nonempty, memory_order_acquire))
        return;
    pthread_mutex_lock(&w->inbox_lock);
    weft_task *t = w->inbox_head;
    w->inbox_head = w->inbox_tail = NULL;
    atomic_store_explicit(&w->inbox_nonempty, false, memory_order_relaxed);
    pthread_mutex_unlock(&w->inbox_lock);
    while (t) {
        weft_task *next = t->rq_next;
        weft__sched_push(&w->sched, t, PUSH_QUEUE);
        t = next;
    }
}

static void on_wake_fd(weft__op *op, int res, uint32_t cflags)
{
    weft__worker *w = (weft__worker *)((char *)op - offsetof(weft__worker, wake_op));
    w->wake_armed = false;
    (void)res;
    (void)cflags;
    drain_inbox(w);
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

void weft__worker_schedule(weft_task *t)
{
    weft__worker *w = t->owner;
    if (weft__worker_self() == w) {
        /* Woken by the running task: a candidate for the LIFO slot. */
        weft__sched_push(&w->sched, t, w->current ? PUSH_WOKEN : PUSH_QUEUE);
        return;
    }
    pthread_mutex_lock(&w->inbox_lock);
    t->rq_next = NULL;
    if (w->inbox_tail)
        w->inbox_tail->rq_next = t;
    else
        w->inbox_head = t;
    w->inbox_tail = t;
    atomic_store_explicit(&w->inbox_nonempty, true, memory_order_release);
    pthread_mutex_unlock(&w->inbox_lock);
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof one);
    (void)n;
}

/* ---- running tasks -------------------------------------------------------- */

static void after_park(weft__worker *w, weft_task *t)
{
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (s & TASK_NOTIFIED) {
            /* A wake raced the park: consume it and stay runnable. */
            if (atomic_compare_exchange_weak_explicit(&t->state, &s, s & ~TASK_NOTIFIED,
                                                      memory_order_acq_rel, memory_order_acquire)) {
                weft__sched_push(&w->sched, t, PUSH_QUEUE);
                return;
            }
        } else if (atomic_compare_exchange_weak_explicit(&t->state, &s, s & ~TASK_RUNNING,
                                                         memory_order_acq_rel,
                                                         memory_order_acquire)) {
            return;
        }
    }
}

static inline __attribute__((always_inline)) void run_task(weft__worker *w, weft_task *t)
{
    weft__sched *sched = &w->sched;
    uint64_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
    if (s & TASK_NOTIFIED) /* woken again while queued: this run answers it */
        atomic_fetch_and_explicit(&t->state, ~TASK_NOTIFIED, memory_order_relaxed);
    if (!t->stack) {
        if (s & TASK_CANCELLED) {
            weft__task_complete_unstarted(t);
            weft__sched_exit(sched, t);
            weft__task_ref_drop(t);
            return;
        }
        weft__stack *stack;
        int r = weft__stack_acquire(&w->stacks, t->stack_class, &stack);
        if (r == 0) {
            r = weft__fiber_init(&t->fiber, stack->lo, stack->size, weft__task_entry);
            if (r < 0)
                weft__stack_release(&w->stacks, stack);
        }
        if (r < 0) {
            /* No stack after all (see weft__stack_reserve): the task ends
             * without running and its join reports -ENOMEM. */
            weft__task_complete_unstarted(t);
            t->outcome = -ENOMEM;
            weft__sched_exit(sched, t);
            weft__task_ref_drop(t);
            return;
        }
        t->stack = stack;
    }
    w->current = t;
    w->count.switches++;
    /* Timed runs: the clock is read once per switch, after the run; the
     * reading also starts the next run. Untimed: yield_maybe starts its
     * own clock lazily. */
    w->run_start_ns = sched->timed ? sched->now : 0;
    w->yield_check_skip = 0;
    w->yield_calls = 0;
    weft__fiber_switch(&w->fiber, &t->fiber, t, false);
    w->current = NULL;
    if (sched->timed) {
        uint64_t now = weft_now_ns();
        weft__sched_charge(sched, t, now - sched->now);
        sched->now = now;
    }
    switch (w->reason) {
    case SWITCH_YIELD:
        if (!weft__sched_push_fast(sched, t))
            weft__sched_push(sched, t, PUSH_QUEUE);
        break;
    case SWITCH_PARK:
        after_park(w, t);
        break;
    case SWITCH_EXIT:
        weft__sched_exit(sched, t);
        weft__fiber_fini(&t->fiber);
        weft__stack_release(&w->stacks, t->stack);
        t->stack = NULL;
        weft__task_ref_drop(t);
        break;
    }
}

static uint64_t live_tasks(const weft__worker *w)
{
    const weft__worker_counters *c = &w->count;
    return c->spawned - c->completed - c->cancelled - c->panicked;
}

/* Drains the inbox, fires due timers and reaps completions, waiting up to
 * timeout_ns for one (0 = do not wait). */
static int worker_poll(weft__worker *w, uint64_t timeout_ns)
{
    uint64_t now = weft_now_ns();
    w->sched.now = now;
    drain_inbox(w);
    if (w->timers.len)
        weft__timer_expire(&w->timers, now);
    bool other_io = w->ring.inflight > (w->wake_armed ? 1u : 0u) || w->ring.pending_sqes;
    if (timeout_ns == 0 && !other_io)
        return 0;
    if (timeout_ns) {
        arm_wake_read(w);
        w->count.parks++;
    }
    int r = weft__ring_wait(&w->ring, timeout_ns);
    w->sched.now = weft_now_ns();
    return r < 0 ? r : 0;
}

int weft__worker_run_ready(weft__worker *w, uint64_t until_ns)
{
    weft__sched *sched = &w->sched;
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
            continue;
        }
        if (!need_poll)
            weft__sched_end_slice(sched);
        /* At slice ends, when a timer is due, and before deciding there is
         * nothing to run: timers, the inbox and the ring. */
        int r = worker_poll(w, 0);
        if (r < 0)
            return r;
        if (!need_poll && weft__sched_empty(sched)) {
            weft__maintenance_idle(w);
            if (weft__sched_empty(sched))
                return 0;
        }
        if (until_ns != UINT64_MAX && sched->now >= until_ns)
            return 1;
    }
}

uint64_t weft__worker_next_deadline(const weft__worker *w)
{
    return weft__timer_next(&w->timers);
}

/* The scheduler loop of weft_run: run what is ready, then park in
 * io_uring_enter until the next timer, a completion or a wake from another
 * thread; until no task is left. */
int weft__worker_run(weft__worker *w)
{
    weft__worker_start(w);
    for (;;) {
        int r = weft__worker_run_ready(w, UINT64_MAX);
        if (r < 0)
            return r;
        if (live_tasks(w) == 0)
            return 0;
        /* Idle: give back deep pages of long-unused stacks, then park. */
        uint64_t now = w->sched.now;
        weft__stack_trim(&w->stacks, 64, now);
        uint64_t next = weft__timer_next(&w->timers);
        uint64_t timeout = UINT64_MAX;
        if (next != UINT64_MAX) {
            if (next <= now)
                continue;
            timeout = next - now;
        }
        r = worker_poll(w, timeout);
        if (r < 0)
            return r;
    }
}

void weft__worker_start(weft__worker *w)
{
    arm_wake_read(w);
    w->sched.now = weft_now_ns();
}

uint64_t weft__worker_live_tasks(const weft__worker *w)
{
    return live_tasks(w);
}

int weft__worker_init(weft__worker *w, weft__runtime *rt, unsigned index, bool embedded)
{
    memset(w, 0, sizeof *w);
    w->rt = rt;
    w->index = index;
    w->wake_fd = -1;
    w->wake_op.complete = on_wake_fd;
    weft__fiber_init_thread(&w->fiber);
    weft__stack_pool_init(&w->stacks);
    pthread_mutex_init(&w->inbox_lock, NULL);
    int r = weft__sched_init(&w->sched, &rt->cfg);
    if (r < 0)
        goto fail_sched;
    r = weft__ring_init(&w->ring, rt->cfg.ring_entries, embedded);
    if (r < 0)
        goto fail_ring;
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
    return 0;
fail_alt:
    close(w->wake_fd);
fail_fd:
    free(w->direct_owner);
    free(w->close_slots);
    weft__ring_fini(&w->ring);
fail_ring:
    weft__sched_fini(&w->sched);
fail_sched:
    pthread_mutex_destroy(&w->inbox_lock);
    return r;
}

void weft__worker_fini(weft__worker *w)
{
    weft__overflow_remove(w);
    /* Closing the ring cancels the pending eventfd read; its op record lives
     * in this struct, which outlives the ring. */
    weft__ring_fini(&w->ring);
    weft__cleanup_fini(w);
    weft__bufrings_fini(w);
    close(w->wake_fd);
    free(w->direct_owner);
    free(w->close_slots);
    weft__timer_heap_fini(&w->timers);
    weft__sched_fini(&w->sched);
    weft__stack_pool_fini(&w->stacks);
    weft__record_pool_fini(&w->records);
    pthread_mutex_destroy(&w->inbox_lock);
}
