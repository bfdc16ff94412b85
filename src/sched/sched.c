/* The two-level scheduler; see sched.h for the rules. */
#include "sched/sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <weft/io.h>

#include "common/fault.h"
#include "sched/policy_runnable_fifo.h"

int weft__sched_init(weft__sched *s, const weft_config *cfg)
{
    memset(s, 0, sizeof *s);
    s->queues = weft__calloc(cfg->nqueues, sizeof *s->queues);
    if (!s->queues)
        return -ENOMEM;
    bool charges = false;
    for (size_t i = 0; i < cfg->nqueues; i++) {
        const weft_queue_spec *spec = &cfg->queues[i];
        weft__queue *q = &s->queues[i];
        q->name = spec->name;
        q->weight = spec->weight;
        q->balance_found_none_at = UINT64_MAX;
        q->policy = spec->policy ? spec->policy : &weft_policy_runnable_fifo;
        q->state = weft__calloc(1, q->policy->state_size ? q->policy->state_size : 1);
        int r = !q->state         ? -ENOMEM
                : q->policy->init ? q->policy->init(q->state, spec->policy_config)
                                  : 0; /* no init: the state starts zeroed */
        if (r < 0) {
            free(q->state);
            q->state = NULL;
            s->nqueues = (unsigned)i;
            weft__sched_fini(s);
            return r;
        }
        /* The FIFO policies ignore service: no need to time their runs. */
        q->rfifo = q->policy == &weft_policy_runnable_fifo;
        q->charges = q->policy != &weft_policy_runnable_fifo &&
                     q->policy != &weft_policy_arrival_fifo && q->policy->charge;
        charges |= q->charges;
    }
    s->nqueues = (unsigned)cfg->nqueues;
    s->timed = s->nqueues > 1 || charges || cfg->stats;
    s->track_delay = cfg->stats;
    s->single_fifo = s->nqueues == 1 && s->queues[0].rfifo && !s->timed;
    s->lifo_enabled = cfg->lifo_slot;
    s->lifo_skip_interval = cfg->lifo_skip_interval;
    s->latency_ns = cfg->sched_latency_ns;
    s->min_slice_ns = cfg->min_slice_ns;
    s->poll_ns = cfg->io_poll_interval_ns;
    s->max_runs = cfg->max_runs_per_slice;
    /* Tasks spawned before the worker's loop starts (weft_run's main task)
     * are stamped with this. */
    s->now = weft_now_ns();
    return 0;
}

void weft__sched_fini(weft__sched *s)
{
    for (unsigned i = 0; i < s->nqueues; i++) {
        weft__queue *q = &s->queues[i];
        if (q->state) {
            if (q->policy->fini)
                q->policy->fini(q->state);
            free(q->state);
        }
    }
    free(s->queues);
    memset(s, 0, sizeof *s);
}

/* Virtual runtimes only grow, and wrap after 2^64 ns (about 21 days of CPU
 * for a weight-1 queue alone): they are compared by their signed
 * difference, which is right while the runnable queues lie within 2^63 of
 * each other. They do: a queue runs only while it is eligible, so it gets
 * ahead of the others by at most a few task runs' worth. */
static inline bool vt_before(uint64_t a, uint64_t b)
{
    return (int64_t)(a - b) < 0;
}

/* Weighted average virtual runtime of the runnable queues, computed
 * relative to the smallest so that the products cannot overflow. */
static uint64_t avg_vruntime(const weft__sched *s)
{
    const weft__queue *min = NULL;
    for (unsigned i = 0; i < s->nqueues; i++)
        if (s->queues[i].active && (!min || vt_before(s->queues[i].vruntime, min->vruntime)))
            min = &s->queues[i];
    if (!min)
        return s->idle_vclock;
    uint64_t vmin = min->vruntime;
    unsigned __int128 num = 0;
    uint64_t wsum = 0;
    for (unsigned i = 0; i < s->nqueues; i++) {
        const weft__queue *q = &s->queues[i];
        if (!q->active)
            continue;
        num += (unsigned __int128)(q->vruntime - vmin) * q->weight;
        wsum += q->weight;
    }
    return vmin + (uint64_t)(num / wsum);
}

static uint64_t slice_length(const weft__sched *s)
{
    unsigned n = s->nactive ? s->nactive : 1;
    uint64_t slice = s->latency_ns / n;
    if (slice < s->min_slice_ns)
        slice = s->min_slice_ns;
    if (slice > s->poll_ns)
        slice = s->poll_ns;
    return slice;
}

static uint64_t virtual_deadline(const weft__sched *s, const weft__queue *q)
{
    return q->vruntime + slice_length(s) * WEFT_WEIGHT_UNIT / q->weight;
}

/* A queue's debt kept across an idle spell, and the part of another
 * queue's run that a queue waking during it counts, are capped at this
 * many slices of service (see deactivate() and avg_at_wake()). */
#define DEBT_SLICES 2

/* How much of one run of q counts against q for a queue that woke during
 * it, in q's virtual time. */
static uint64_t run_cap(const weft__sched *s, const weft__queue *q)
{
    return DEBT_SLICES * slice_length(s) * WEFT_WEIGHT_UNIT / q->weight;
}

/* Queues that the running task woke during its run (a spawn, a wake) were
 * placed then, at the average of the run's start, before the run's charge:
 * all of the run counted against its queue. As for a wake after the run
 * (avg_at_wake), only run_cap() of it may: each such queue moves up by what
 * the excess of the run moves the average of the queues that were there
 * before (the woken ones joined that average, at it, and do not move it). */
static void cap_wakes_in_run(weft__sched *s, const weft__queue *ran, uint64_t excess)
{
    uint64_t w_before = 0;
    bool woken = false;
    for (unsigned i = 0; i < s->nqueues; i++) {
        const weft__queue *q = &s->queues[i];
        if (!q->active)
            continue;
        if (q != ran && q->woke_in_run == s->run_no)
            woken = true;
        else
            w_before += q->weight;
    }
    if (!woken)
        return;
    /* At most excess: ran is among the queues before, w_before >= its weight. */
    uint64_t up = (uint64_t)((unsigned __int128)excess * ran->weight / w_before);
    for (unsigned i = 0; i < s->nqueues; i++) {
        weft__queue *q = &s->queues[i];
        if (q != ran && q->active && q->woke_in_run == s->run_no)
            q->vruntime += up;
    }
}

/* The average as it was when the run that has just ended started. A queue
 * that wakes between two runs became runnable during the one before, as
 * far as anyone can tell (its timer fell due, or its wake came, while that
 * run held the CPU), and a wake during a run sees the average of its start,
 * since runs are charged at their end. Placed after that run's charge
 * instead, it starts level with a queue whose run it waited out: a weight-1
 * queue's 300 us run puts it 3 s of virtual time ahead, which should buy a
 * weight-99 queue 30 ms, and the weight-99 queue that woke during it gave
 * the CPU back after one slice (bench/README.md, priority). */
static uint64_t avg_at_wake(weft__sched *s)
{
    weft__queue *last = s->last_run_q;
    if (!last || !last->active)
        return avg_vruntime(s);
    /* At most DEBT_SLICES slices of that run count, as for a queue's debt
     * (deactivate()): a run far past its slice is not its queue's doing,
     * and a weight-1 queue's 20 ms run would otherwise keep it waiting for
     * 20 s behind a weight-1000 queue that woke during it. */
    uint64_t back = s->last_run_vt;
    uint64_t cap = run_cap(s, last);
    if (back > cap)
        back = cap;
    last->vruntime -= back;
    uint64_t avg = avg_vruntime(s);
    last->vruntime += back;
    return avg;
}

/* A queue that becomes runnable is placed at the average: it banks no
 * credit while idle. A debt it had when it went idle (it was ahead of the
 * average) is kept, less what the others have run since (the average's
 * progress): otherwise a low-weight queue whose task runs, waits a moment
 * and runs again would start every run level with the heavy queues, and
 * take a share far beyond its weight (`tests/test_sched.c:
 * a_queue_that_waits_briefly_keeps_its_debt`). The debt kept is at most
 * DEBT_SLICES slices' worth, as Linux's EEVDF limits lag: a task run far
 * past its slice is not the queue's doing (runs cannot be cut short), and
 * a weight-1 queue would otherwise wait 10000x that run's length. */
static void activate(weft__sched *s, weft__queue *q)
{
    if (s->nqueues == 1) {
        /* Alone: nothing to be fair to, and no placement to make. A
         * task-at-a-time I/O loop empties and refills the queue at every
         * op, and computing the average here and in deactivate() cost it
         * some 100 instructions an op (callgrind, weft_io_bench nop 1). */
        q->active = true;
        s->nactive = 1;
        return;
    }
    uint64_t avg = avg_at_wake(s);
    uint64_t paid = vt_before(q->idle_avg, avg) ? avg - q->idle_avg : 0;
    q->vruntime = avg + (q->debt > paid ? q->debt - paid : 0);
    q->debt = 0;
    /* Matched at the charge of that run only: a wake between runs records
     * the run already charged. */
    q->woke_in_run = s->run_no;
    q->active = true;
    s->nactive++;
    if (s->cur && s->cur != q && vt_before(virtual_deadline(s, q), virtual_deadline(s, s->cur))) {
        s->preempt = true;
        q->preemptions++;
    }
}

static void deactivate(weft__sched *s, weft__queue *q)
{
    if (s->nqueues == 1) {
        q->active = false;
        s->nactive = 0;
        return;
    }
    uint64_t avg = avg_vruntime(s);
    uint64_t cap = DEBT_SLICES * slice_length(s) * WEFT_WEIGHT_UNIT / q->weight;
    q->debt = vt_before(avg, q->vruntime) ? q->vruntime - avg : 0;
    if (q->debt > cap)
        q->debt = cap;
    q->idle_avg = avg;
    q->active = false;
    if (--s->nactive == 0)
        s->idle_vclock = q->vruntime;
}

static void policy_push(weft__sched *s, weft_task *t)
{
    weft__queue *q = &s->queues[t->queue];
    if (!q->active)
        activate(s, q);
    if (q->rfifo)
        weft__rfifo_push(q->state, &t->entity);
    else
        q->policy->push(q->state, &t->entity);
    q->nqueued++;
}

void weft__sched_push(weft__sched *s, weft_task *t, weft__push_hint hint)
{
    t->entity.runnable_ns = s->now;
    weft__sched_count_push(s, &s->queues[t->queue], t);
    bool slot = hint == PUSH_FIRST || (hint == PUSH_WOKEN && s->lifo_enabled);
    if (slot && s->cur && s->cur == &s->queues[t->queue]) {
        /* The slot holds one task; the one it displaces queues normally. */
        weft_task *old = s->lifo;
        s->lifo = t;
        if (old)
            policy_push(s, old);
        return;
    }
    policy_push(s, t);
}

void weft__sched_end_slice(weft__sched *s)
{
    weft__queue *q = s->cur;
    if (!q)
        return;
    if (s->lifo) {
        /* The slot belongs to a slice; drained when the slice ends. */
        weft_task *t = s->lifo;
        s->lifo = NULL;
        policy_push(s, t);
    }
    s->cur = NULL;
    if (q->active && q->nqueued == 0)
        deactivate(s, q);
}

/* EEVDF: among queues with tasks, the eligible one (vruntime <= average)
 * with the earliest virtual deadline. Rounding can leave none eligible;
 * the smallest vruntime is then the fair choice. */
static weft__queue *choose_queue(weft__sched *s)
{
    if (s->nqueues == 1)
        return s->queues[0].nqueued ? &s->queues[0] : NULL;
    uint64_t avg = avg_vruntime(s);
    weft__queue *best = NULL, *lowest = NULL;
    uint64_t best_deadline = 0;
    for (unsigned i = 0; i < s->nqueues; i++) {
        weft__queue *q = &s->queues[i];
        if (!q->nqueued)
            continue;
        if (!lowest || vt_before(q->vruntime, lowest->vruntime))
            lowest = q;
        if (vt_before(avg, q->vruntime))
            continue;
        uint64_t d = virtual_deadline(s, q);
        if (!best || vt_before(d, best_deadline)) {
            best_deadline = d;
            best = q;
        }
    }
    return best ? best : lowest;
}

static void record_delay(weft__queue *q, uint64_t delay)
{
    unsigned b = delay ? 63u - (unsigned)__builtin_clzll(delay) : 0;
    if (b >= WEFT_DELAY_BUCKETS)
        b = WEFT_DELAY_BUCKETS - 1;
    q->delay_hist[b]++;
    q->delay_sum_ns += delay;
    q->delay_count++;
}

static weft_task *pick(weft__sched *s, bool *need_poll);

weft_task *weft__sched_pick(weft__sched *s, bool *need_poll)
{
    weft_task *t = pick(s, need_poll);
    if (t) {
        s->last_run_q = NULL;
        s->run_no++;
    }
    return t;
}

static weft_task *pick(weft__sched *s, bool *need_poll)
{
    *need_poll = false;
    weft_task *fast = weft__sched_pick_fast(s);
    if (fast)
        return fast;
    if (s->poll_due) {
        s->poll_due = false;
        *need_poll = true;
        return NULL;
    }
    weft__queue *q = s->cur;
    bool used_up =
        q && (s->slice_runs >= s->max_runs || (s->timed && s->slice_used_ns >= s->slice_ns));
    if (s->lifo) {
        weft_task *t = s->lifo;
        s->lifo = NULL;
        /* The slot belongs to the slice: not past its end, nor past a
         * preemption. Every lifo_skip_interval-th pick it yields to the
         * queue, so two tasks waking each other cannot starve the rest of
         * it. */
        if (!used_up && !s->preempt &&
            (!s->lifo_enabled || ++s->lifo_picks % s->lifo_skip_interval != 0)) {
            s->slice_runs++;
            q->runs++;
            if (s->track_delay)
                record_delay(q,
                             s->now > t->entity.runnable_ns ? s->now - t->entity.runnable_ns : 0);
            return t;
        }
        policy_push(s, t);
    }
    if (q) {
        if (used_up && !s->slice_polled && !s->preempt) {
            /* Look at timers and the ring while this slice still counts as
             * running, so that queues they wake compete with it. */
            s->slice_polled = true;
            *need_poll = true;
            return NULL;
        }
        if (used_up || s->preempt || !q->nqueued) {
            if (used_up && q->nqueued)
                q->slice_exhaustions++;
            weft__sched_end_slice(s);
            q = NULL;
        }
    }
    if (!q) {
        q = choose_queue(s);
        if (!q)
            return NULL;
        s->cur = q;
        s->preempt = false;
        s->slice_polled = false;
        s->slice_used_ns = 0;
        s->slice_runs = 0;
        s->slice_ns = slice_length(s);
        q->slices++;
    }
    weft_sched_entity *e = q->rfifo ? weft__rfifo_pop(q->state) : q->policy->pop(q->state);
    q->nqueued--;
    s->slice_runs++;
    q->runs++;
    if (s->track_delay)
        /* A task spawned on another worker carries that worker's clock,
         * which may be ahead of this one's last reading. */
        record_delay(q, s->now > e->runnable_ns ? s->now - e->runnable_ns : 0);
    return weft__task_of_entity(e);
}

void weft__sched_charge(weft__sched *s, weft_task *t, uint64_t ran_ns)
{
    weft__queue *q = &s->queues[t->queue];
    s->last_run_q = q;
    s->last_run_vt = ran_ns * WEFT_WEIGHT_UNIT / q->weight;
    q->vruntime += s->last_run_vt;
    uint64_t cap = run_cap(s, q);
    if (s->last_run_vt > cap)
        cap_wakes_in_run(s, q, s->last_run_vt - cap);
    q->service_ns += ran_ns;
    t->entity.service_ns += ran_ns;
    s->slice_used_ns += ran_ns;
    if (q->charges)
        q->policy->charge(q->state, &t->entity, ran_ns);
}

void weft__sched_exit(weft__sched *s, weft_task *t)
{
    weft__queue *q = &s->queues[t->queue];
    q->live--;
    if (weft__queue_has_exit(q))
        q->policy->exit(q->state, &t->entity);
}

void weft__sched_move(weft__sched *s, weft_task *t, unsigned queue)
{
    /* It leaves the old queue's policy as a finished task does (a LAS
     * group loses a member), and comes to the other one's as a task handed
     * over from another worker does, with the service it has had. */
    weft__sched_exit(s, t);
    t->queue = (uint8_t)queue;
    s->queues[queue].live++;
}

bool weft__sched_should_yield(const weft__sched *s, uint64_t ran_ns)
{
    return s->preempt || s->slice_used_ns + ran_ns >= s->slice_ns;
}

bool weft__sched_empty(const weft__sched *s)
{
    if (s->lifo)
        return false;
    for (unsigned i = 0; i < s->nqueues; i++)
        if (s->queues[i].nqueued)
            return false;
    return true;
}

/* t leaves this worker for good: the policy forgets it as it would a
 * finished task, and it joins the list *first..*last. */
static void take_out(weft__queue *q, weft_task *t, weft_task **first, weft_task **last)
{
    q->nqueued--;
    q->live--;
    if (weft__queue_has_exit(q))
        q->policy->exit(q->state, &t->entity);
    t->rq_next = NULL;
    if (*last)
        (*last)->rq_next = t;
    else
        *first = t;
    *last = t;
}

unsigned weft__sched_take(weft__sched *s, int only, unsigned max,
                          bool (*movable)(const weft_task *), weft_task **first, weft_task **last)
{
    unsigned taken = 0;
    *first = *last = NULL;
    for (unsigned i = 0; i < s->nqueues && taken < max; i++) {
        if (only >= 0 && i != (unsigned)only)
            continue;
        weft__queue *q = &s->queues[i];
        if (q->rfifo) {
            /* Unlinked in place: the pinned ones keep their places. */
            weft__rfifo *f = q->state;
            for (weft_sched_entity *e = f->head; e && taken < max;) {
                weft_sched_entity *next = WEFT__RFIFO_NEXT(e);
                weft_task *t = weft__task_of_entity(e);
                if (movable(t)) {
                    weft__rfifo_remove(f, e);
                    take_out(q, t, first, last);
                    taken++;
                }
                e = next;
            }
        } else {
            /* Each queued task once, in the policy's order: the tasks it
             * would run first go, and all the others are pushed back in the
             * order they came out. The policy has no way to look without
             * popping, and pushing back only the pinned ones seen before
             * `max` was reached would put them behind the tasks never
             * popped, losing their turn at every hand-over. */
            uint64_t look = q->nqueued;
            weft_task *keep = NULL, *keep_tail = NULL;
            while (look--) {
                weft_sched_entity *e = q->policy->pop(q->state);
                if (!e)
                    break;
                weft_task *t = weft__task_of_entity(e);
                if (taken < max && movable(t)) {
                    take_out(q, t, first, last);
                    taken++;
                    continue;
                }
                q->nqueued--;
                t->rq_next = NULL;
                if (keep_tail)
                    keep_tail->rq_next = t;
                else
                    keep = t;
                keep_tail = t;
            }
            while (keep) {
                weft_task *next = keep->rq_next;
                policy_push(s, keep);
                keep = next;
            }
        }
        if (q->active && q->nqueued == 0 && q != s->cur)
            deactivate(s, q);
    }
    return taken;
}

uint64_t weft__sched_queued(const weft__sched *s)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < s->nqueues; i++)
        n += s->queues[i].nqueued;
    return n;
}
