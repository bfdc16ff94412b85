/* The per-worker two-level scheduler (DESIGN §4), internal.
 *
 * Top level: EEVDF over the worker's runnable queues. Each queue has a
 * virtual runtime advanced by ran_ns * WEFT_WEIGHT_UNIT / weight after every
 * task run; the next queue is the eligible one (vruntime <= the weighted
 * average of the runnable queues, i.e. lag >= 0) with the earliest virtual
 * deadline vruntime + slice * WEFT_WEIGHT_UNIT / weight. A queue that becomes
 * runnable is placed at the average, plus what is left of the debt it had
 * when it went idle. A queue keeps the CPU for one slice:
 * max(sched_latency / n_runnable, min_slice), capped by io_poll_interval, and
 * at most max_runs_per_slice task runs.
 *
 * Second level: the queue's policy (weft/sched.h) picks the task.
 *
 * Time is read once per task run, and only when something needs it: several
 * queues, a policy that charges service, or stats. One FIFO queue without
 * stats runs untimed, slices counted in runs.
 */
#ifndef WEFT_SCHED_SCHED_H
#define WEFT_SCHED_SCHED_H

#include <stdbool.h>
#include <stdint.h>
#include <weft/runtime.h>
#include <weft/sched.h>

#include "sched/policy_runnable_fifo.h"
#include "task/task.h"

#define WEFT_WEIGHT_UNIT   10000u
#define WEFT_DELAY_BUCKETS 40 /* log2 ns buckets: [2^i, 2^(i+1)) ns, last one open */

typedef struct weft__queue {
    const char *name;
    uint32_t weight;
    const weft_policy *policy;
    void *state;      /* policy state, policy->state_size bytes */
    bool charges;     /* the policy wants service charged (needs time) */
    bool rfifo;       /* runnable FIFO: called directly, not through the table */
    bool active;      /* counted among the runnable queues */
    uint64_t nqueued; /* tasks inside the policy */
    uint64_t live;    /* spawned into this queue, not finished */
    /* Pushes of stealable tasks into this queue (counted as
     * weft__sched.stealable_pushes is), and their count when the worker's
     * balancing last found nothing stealable queued here (UINT64_MAX:
     * never): runtime/worker.c. */
    uint64_t stealable_pushes, balance_found_none_at;
    _Atomic uint64_t woken_away; /* of live: moved to a waker's worker, not yet subtracted */
    uint64_t vruntime;
    /* While idle: how far it was ahead of the average when it went idle,
     * and that average; see activate() in sched.c. */
    uint64_t debt, idle_avg;
    /* weft__sched.run_no when it last became runnable: the run during
     * which it woke, if that run is not charged yet (cap_wakes_in_run() in
     * sched.c). */
    uint64_t woke_in_run;
    /* Counters, read by weft_stats_snapshot. */
    uint64_t service_ns, runs, slices, slice_exhaustions, preemptions;
    uint64_t delay_hist[WEFT_DELAY_BUCKETS];
    uint64_t delay_sum_ns, delay_count;
} weft__queue;

typedef struct weft__sched {
    weft__queue *queues;
    unsigned nqueues;
    bool timed;       /* read the clock around every run */
    bool single_fifo; /* one untimed runnable-FIFO queue: the fast path */
    bool track_delay; /* stats: queue-delay histogram */
    unsigned nactive;
    uint64_t idle_vclock; /* the average when the last queue went idle */
    weft__queue *cur;     /* queue holding the current slice, or NULL */
    uint64_t slice_ns;    /* length of the current slice */
    uint64_t slice_used_ns;
    unsigned slice_runs;
    bool preempt;      /* a waking queue's deadline beats cur's */
    bool poll_due;     /* a timer is due: poll before the next pick */
    bool slice_polled; /* polled since the current slice ran out */
    uint64_t now;      /* last clock reading (0 when untimed) */
    /* The queue charged for the run that just ended, and by how much
     * virtual time, until the next run starts or the worker idles: a queue
     * that wakes in between is placed as of the run's start (activate()). */
    weft__queue *last_run_q;
    uint64_t last_run_vt;
    uint64_t run_no; /* runs picked so far */
    /* Pushes of tasks that another worker could take (weft__task_stealable):
     * the worker's hand-over looks again only when this has moved since it
     * last found nothing to give. Counted only with several workers
     * (count_stealable): a lone worker never hands tasks over. */
    uint64_t stealable_pushes;
    bool count_stealable;
    /* LIFO slot: a task woken by the running task runs next. */
    bool lifo_enabled;
    unsigned lifo_skip_interval, lifo_picks;
    weft_task *lifo;
    uint64_t latency_ns, min_slice_ns, poll_ns;
    unsigned max_runs;
} weft__sched;

/* The queue's policy keeps something per task that its exit hook releases
 * (the built-in runnable FIFO keeps nothing). */
static inline bool weft__queue_has_exit(const weft__queue *q)
{
    return !q->rfifo && q->policy->exit;
}

/* Builds the queues of cfg (validated) with a policy state each. Returns 0,
 * or -ENOMEM / the error of a policy's init (everything released). */
int weft__sched_init(weft__sched *s, const weft_config *cfg);
void weft__sched_fini(weft__sched *s);

typedef enum weft__push_hint {
    PUSH_QUEUE, /* into the queue's policy */
    PUSH_WOKEN, /* woken by the running task: the LIFO slot when enabled */
    PUSH_FIRST, /* WEFT_TASK_SPAWN_LIFO: the slot whatever the config */
} weft__push_hint;

/* t became runnable (spawn, wake, yield). The slot is used only for a task
 * of the queue holding the current slice. */
void weft__sched_push(weft__sched *s, weft_task *t, weft__push_hint hint);
/* The next task to run, or NULL. With NULL, *need_poll says the worker
 * should poll timers and the ring and ask again (the slice ran out, or a
 * timer is due); otherwise nothing is runnable. */
weft_task *weft__sched_pick(weft__sched *s, bool *need_poll);
/* t ran for ran_ns (timed runs only) and is off the CPU. */
void weft__sched_charge(weft__sched *s, weft_task *t, uint64_t ran_ns);
/* t finished. */
void weft__sched_exit(weft__sched *s, weft_task *t);
/* Moves t, which ran and is not queued, to another queue of s
 * (weft_self_set_queue); the caller pushes it. */
void weft__sched_move(weft__sched *s, weft_task *t, unsigned queue);
/* Nothing is runnable: what wakes from now on became runnable after the
 * last run, not during it. */
static inline void weft__sched_idle(weft__sched *s)
{
    s->last_run_q = NULL;
}
/* True when the running task should yield now: a preemption is pending or
 * the slice is used up (ran_ns: how long the current run has lasted). */
bool weft__sched_should_yield(const weft__sched *s, uint64_t ran_ns);
/* Ends the current slice (the worker polled I/O or went idle). */
void weft__sched_end_slice(weft__sched *s);
bool weft__sched_empty(const weft__sched *s);
/* Tasks queued in the policies (the LIFO slot not counted). */
uint64_t weft__sched_queued(const weft__sched *s);
/* Takes up to max queued tasks that movable() accepts out of the scheduler,
 * in each queue's policy order, from queue `only` (an index) or from every
 * queue (only < 0); the policies see them exit. Returns how many, linked
 * through rq_next from *first to *last. The tasks left keep their order in
 * a runnable-FIFO queue; other policies get them pushed back, which keeps
 * an order by key (service, arrival) but not the order among equals. */
unsigned weft__sched_take(weft__sched *s, int only, unsigned max,
                          bool (*movable)(const weft_task *), weft_task **first, weft_task **last);

/* Counts a push of t into q among the stealable ones (threaded runtimes:
 * the hand-overs' memos, runtime/worker.c). */
static inline void weft__sched_count_push(weft__sched *s, weft__queue *q, const weft_task *t)
{
    if (s->count_stealable && weft__task_stealable(t)) {
        s->stealable_pushes++;
        q->stealable_pushes++;
    }
}

/* ---- the default configuration's hot path, inline ------------------------
 * One untimed runnable-FIFO queue mid-slice has nothing to decide: push
 * appends and pick pops. These return false / NULL when the general path
 * must run instead. */
static inline bool weft__sched_push_fast(weft__sched *s, weft_task *t)
{
    weft__queue *q = s->queues;
    if (!s->single_fifo || !q->active)
        return false;
    weft__rfifo_push(q->state, &t->entity);
    q->nqueued++;
    weft__sched_count_push(s, q, t);
    return true;
}

/* Hints for prefetching, nothing more: the task the current slice's queue
 * would give next when that queue is a runnable FIFO (else NULL), and the
 * one queued after a task that hint returned (or after that one). The
 * answers may be stale by the time of the next pick. */
static inline weft_task *weft__sched_peek_hint(const weft__sched *s)
{
    const weft__queue *q = s->cur;
    if (!q || !q->rfifo)
        return NULL;
    weft_sched_entity *e = ((const weft__rfifo *)q->state)->head;
    return e ? weft__task_of_entity(e) : NULL;
}

static inline weft_task *weft__sched_peek_hint_after(const weft_task *t)
{
    weft_sched_entity *e = WEFT__RFIFO_NEXT(&t->entity);
    return e ? weft__task_of_entity(e) : NULL;
}

static inline weft_task *weft__sched_pick_fast(weft__sched *s)
{
    if (!s->single_fifo || !s->cur || s->lifo || s->poll_due || s->slice_runs >= s->max_runs)
        return NULL;
    weft_sched_entity *e = weft__rfifo_pop(s->cur->state);
    if (!e)
        return NULL;
    s->cur->nqueued--;
    s->cur->runs++;
    s->slice_runs++;
    return weft__task_of_entity(e);
}

#endif
