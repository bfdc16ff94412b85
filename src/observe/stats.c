/* Counter snapshots and their text and JSON forms. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <stdlib.h>
#include <weft/io.h>
#include <weft/stats.h>

#include "common/fault.h"
#include "common/utf8.h"
#include "runtime/worker.h"

/* One worker's counters, read on its own thread (with several workers,
 * weft__on_every_worker runs this there: the counters are plain fields). */
static void fill_worker(const weft__worker *w, weft_stats *out)
{
    *out = (weft_stats){0};
    out->workers = 1;
    out->tasks_spawned = w->count.spawned;
    out->tasks_completed = w->count.completed;
    out->tasks_cancelled = w->count.cancelled;
    out->tasks_panicked = w->count.panicked;
    /* Tasks woken away to other workers since this one last looked. */
    out->tasks_live =
        weft__worker_program_tasks(w) - atomic_load_explicit(&w->woken_away, memory_order_relaxed);
    out->context_switches = w->count.switches;
    out->parks = w->count.parks;
    out->stacks_live = weft__stack_pool_live(&w->stacks);
    out->stacks_pooled = w->stacks.pooled;
    out->stack_bytes_mapped = w->stacks.bytes_mapped;
    out->timers_armed = weft__timer_count(&w->timers);
    for (unsigned op = 0; op < WEFT__MAX_OPCODES; op++)
        out->ops_issued += w->ring.ops[op];
    out->cqes = w->ring.cqes;
    out->ops_in_flight = w->ring.inflight;
    out->sq_full = w->ring.sq_full;
    out->cq_overflow = w->ring.cq_overflow;
    out->streams_live = w->streams_live;
    for (unsigned slot = 0; slot < w->ring.direct_slots; slot++)
        out->direct_fds += w->direct_owner[slot] != NULL;
    out->cleanup_done = w->cleanup_done;
    out->cleanup_retried = w->cleanup_retried;
    out->cleanup_failed = w->cleanup_failed;
    out->steal_attempts = w->count.steal_attempts;
    out->steal_successes = w->count.steal_successes;
    out->tasks_stolen = w->count.tasks_stolen;
    out->tasks_donated = w->count.tasks_donated;
    out->wakes_sent = w->count.wakes_sent;
    out->wakes_msg_ring = w->count.wakes_msg_ring;
    out->tasks_injected = w->count.injected;
    out->inject_failed = w->count.inject_failed;
    out->tasks_moved_on_wake = w->count.moved_on_wake;
    /* Read on the worker's own thread, by a task: the worker is busy now
     * (an embedded one is inside weft_executor_run). */
    out->busy_ns = w->count.busy_ns;
    uint64_t now = weft_now_ns();
    if (now > w->count.busy_since_ns)
        out->busy_ns += now - w->count.busy_since_ns;
    out->idle_ns = w->count.idle_ns;
}

typedef struct per_worker {
    weft_stats *out;
    size_t max;
} per_worker;

static int fill_one(weft__worker *w, void *arg)
{
    per_worker *p = arg;
    if (w->index < p->max)
        fill_worker(w, &p->out[w->index]);
    return 0;
}

int weft_stats_workers(weft_stats *out, size_t max)
{
    if (!out && max)
        return -EINVAL;
    weft__worker *self = weft__worker_self();
    if (!self)
        return -EPERM;
    per_worker p = {out, max};
    int r = weft__on_every_worker(fill_one, &p);
    return r < 0 ? r : (int)self->rt->nworkers;
}

int weft_stats_snapshot(weft_stats *out)
{
    if (!out)
        return -EINVAL;
    weft__worker *self = weft__worker_self();
    if (!self)
        return -EPERM;
    unsigned n = self->rt->nworkers;
    weft_stats one, *each = n == 1 ? &one : weft__calloc(n, sizeof *each);
    if (!each)
        return -ENOMEM;
    int r = weft_stats_workers(each, n);
    if (r >= 0) {
        *out = (weft_stats){0};
        uint64_t *sum = (uint64_t *)out;
        for (unsigned i = 0; i < n; i++) {
            const uint64_t *v = (const uint64_t *)&each[i];
            for (size_t k = 0; k < sizeof *out / sizeof(uint64_t); k++)
                sum[k] += v[k];
        }
        /* A task's spawn and its end may be counted on different workers,
         * each read at its own moment: one spawned after its worker was
         * read and ended on a worker read later counts as ended, never
         * spawned. Such a snapshot is off by the tasks in that window, and
         * never below zero. */
        uint64_t ended = out->tasks_completed + out->tasks_cancelled + out->tasks_panicked;
        out->tasks_live = out->tasks_spawned > ended ? out->tasks_spawned - ended : 0;
        r = 0;
    }
    if (each != &one)
        free(each);
    return r;
}

#define STATS_FIELDS(X)                                                                            \
    X(tasks_spawned)                                                                               \
    X(tasks_completed)                                                                             \
    X(tasks_cancelled)                                                                             \
    X(tasks_panicked)                                                                              \
    X(tasks_live)                                                                                  \
    X(context_switches)                                                                            \
    X(stacks_live)                                                                                 \
    X(stacks_pooled)                                                                               \
    X(stack_bytes_mapped)                                                                          \
    X(timers_armed)                                                                                \
    X(parks)                                                                                       \
    X(ops_issued)                                                                                  \
    X(cqes)                                                                                        \
    X(ops_in_flight)                                                                               \
    X(sq_full)                                                                                     \
    X(cq_overflow)                                                                                 \
    X(streams_live)                                                                                \
    X(direct_fds)                                                                                  \
    X(cleanup_done)                                                                                \
    X(cleanup_retried)                                                                             \
    X(cleanup_failed)                                                                              \
    X(workers)                                                                                     \
    X(steal_attempts)                                                                              \
    X(steal_successes)                                                                             \
    X(tasks_stolen)                                                                                \
    X(tasks_donated)                                                                               \
    X(wakes_sent)                                                                                  \
    X(wakes_msg_ring)                                                                              \
    X(tasks_injected)                                                                              \
    X(inject_failed)                                                                               \
    X(tasks_moved_on_wake)                                                                         \
    X(busy_ns)                                                                                     \
    X(idle_ns)

void weft_stats_print(FILE *f, const weft_stats *s)
{
    if (!f || !s)
        return;
#define ROW(name) fprintf(f, "%-20s %20" PRIu64 "\n", #name, s->name);
    STATS_FIELDS(ROW)
#undef ROW
}

void weft_stats_print_json(FILE *f, const weft_stats *s)
{
    if (!f || !s)
        return;
    const char *sep = "{";
#define FIELD(name)                                                                                \
    fprintf(f, "%s\"%s\": %" PRIu64, sep, #name, s->name);                                         \
    sep = ", ";
    STATS_FIELDS(FIELD)
#undef FIELD
    fprintf(f, "}\n");
}

typedef struct queue_sum {
    pthread_mutex_t lock;
    weft_queue_stats *out;
    size_t max;
    uint64_t service; /* all queues */
    int only;         /* the one worker to add, or -1 for all */
} queue_sum;

/* Adds one worker's queues, on its own thread. */
static int add_queues(weft__worker *w, void *arg)
{
    queue_sum *sum = arg;
    if (sum->only >= 0 && w->index != (unsigned)sum->only)
        return 0;
    pthread_mutex_lock(&sum->lock);
    for (unsigned i = 0; i < w->sched.nqueues; i++) {
        const weft__queue *q = &w->sched.queues[i];
        sum->service += q->service_ns;
        if (i >= sum->max)
            continue;
        weft_queue_stats *o = &sum->out[i];
        o->service_ns += q->service_ns;
        o->runs += q->runs;
        o->slices += q->slices;
        o->slice_exhaustions += q->slice_exhaustions;
        o->preemptions += q->preemptions;
        o->queued += q->nqueued;
        /* A task in the LIFO slot is runnable, though outside its
         * queue's policy: queued, not blocked. */
        const weft_task *slot = w->sched.lifo;
        o->queued += slot && slot->queue == i;
        /* Tasks woken away to other workers since this one last looked. */
        o->live += q->live - atomic_load_explicit(&q->woken_away, memory_order_relaxed);
        /* The runtime's own tasks (queue 0's): not the program's. */
        if (i == 0)
            o->live -= w->owned_uncounted;
        /* The task asking is running on its worker; on the others, the
         * runtime's errand reading these (not counted). */
        const weft_task *cur = w->current;
        o->running += cur && cur->queue == i && !(cur->flags & TASK_F_UNCOUNTED);
        o->delay_count += q->delay_count;
        o->delay_sum_ns += q->delay_sum_ns;
        for (int b = 0; b < WEFT_STATS_DELAY_BUCKETS; b++)
            o->delay_hist[b] += q->delay_hist[b];
    }
    pthread_mutex_unlock(&sum->lock);
    return 0;
}

/* The queues of one worker (only >= 0) or of all of them (-1). */
static int queues(int only, weft_queue_stats *out, size_t max)
{
    if (!out && max)
        return -EINVAL;
    weft__worker *self = weft__worker_self();
    if (!self)
        return -EPERM;
    weft__runtime *rt = self->rt;
    if (only >= 0 && (unsigned)only >= rt->nworkers)
        return -ERANGE;
    const weft_config *cfg = &rt->cfg;
    unsigned n = (unsigned)cfg->nqueues;
    uint64_t weights = 0;
    for (unsigned i = 0; i < n; i++)
        weights += cfg->queues[i].weight;
    for (unsigned i = 0; i < n && i < max; i++) {
        weft_queue_stats *o = &out[i];
        memset(o, 0, sizeof *o);
        o->name = cfg->queues[i].name;
        o->weight = cfg->queues[i].weight;
        o->weight_share = (double)o->weight / (double)weights;
    }
    queue_sum sum = {.out = out, .max = max, .only = only};
    pthread_mutex_init(&sum.lock, NULL);
    int r = weft__on_every_worker(add_queues, &sum);
    pthread_mutex_destroy(&sum.lock);
    if (r < 0)
        return r;
    for (unsigned i = 0; i < n && i < max; i++) {
        weft_queue_stats *o = &out[i];
        o->service_share = sum.service ? (double)o->service_ns / (double)sum.service : 0;
        uint64_t accounted = o->queued + o->running;
        o->blocked = o->live > accounted ? o->live - accounted : 0;
    }
    return (int)n;
}

int weft_stats_queues(weft_queue_stats *out, size_t max)
{
    return queues(-1, out, max);
}

int weft_stats_queues_of_worker(unsigned worker, weft_queue_stats *out, size_t max)
{
    return queues(worker > INT_MAX ? INT_MAX : (int)worker, out, max);
}

uint64_t weft_queue_stats_delay_quantile(const weft_queue_stats *q, double p)
{
    if (!q || !q->delay_count)
        return 0;
    /* Outside 0..1 (or NaN) the conversion below would be undefined. */
    if (!(p > 0))
        p = 0;
    if (p > 1)
        p = 1;
    /* The nearest rank: the smallest delay with at least p of them at or
     * below it, the ceil(p * n)-th (at least the first). Shaved by a
     * relative 1e-12 first, so that a product that should be whole but
     * came out a hair above it (0.07 * 100 is 7.000000000000001) is not
     * taken one rank too far. */
    double x = p * (double)q->delay_count;
    x -= x * 1e-12;
    uint64_t rank = (uint64_t)x;
    if ((double)rank < x)
        rank++;
    uint64_t want = rank ? rank - 1 : 0; /* index of that delay, from 0 */
    if (want >= q->delay_count)
        want = q->delay_count - 1;
    uint64_t seen = 0;
    for (int b = 0; b < WEFT_STATS_DELAY_BUCKETS; b++) {
        seen += q->delay_hist[b];
        if (seen > want)
            return b >= WEFT_STATS_DELAY_BUCKETS - 1 ? UINT64_MAX : (uint64_t)2 << b;
    }
    return UINT64_MAX;
}

/* A delay quantile in a column of 11: whole µs, or the open last bucket
 * (2^39 ns and up) as ">550s" rather than UINT64_MAX's digits. */
static void print_delay(FILE *f, uint64_t ns)
{
    if (ns == UINT64_MAX)
        fprintf(f, " %10s", ">550s");
    else
        fprintf(f, " %8" PRIu64 "us", ns / 1000);
}

void weft_stats_print_queues(FILE *f, const weft_queue_stats *q, size_t n)
{
    if (!f)
        return;
    if (!q)
        n = 0;
    /* run-share: the queue's share of the time tasks ran (service), set
     * against its share of the weights; not a share of the CPU. */
    fprintf(f, "%-12s %7s %8s %9s %10s %8s %8s %8s %10s %10s\n", "queue", "weight", "w-share",
            "run-share", "runs", "slices", "exhaust", "preempt", "delay-p50", "delay-p99");
    for (size_t i = 0; i < n; i++) {
        /* The name as the config spelled it, padded to 12, one line. */
        for (size_t w = weft__write_one_line(f, q[i].name, false); w < 12; w++)
            fputc(' ', f);
        fprintf(f, " %7u %7.1f%% %8.1f%% %10" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64,
                q[i].weight, 100 * q[i].weight_share, 100 * q[i].service_share, q[i].runs,
                q[i].slices, q[i].slice_exhaustions, q[i].preemptions);
        if (q[i].delay_count) {
            print_delay(f, weft_queue_stats_delay_quantile(&q[i], 0.5));
            print_delay(f, weft_queue_stats_delay_quantile(&q[i], 0.99));
        } else { /* none recorded (stats off, or nothing ran): not 0 us */
            fprintf(f, " %10s %10s", "n/a", "n/a");
        }
        fputc('\n', f);
    }
}

/* A share (0..1) as JSON, four decimals: written from integers, since
 * printf's %f follows LC_NUMERIC, and a program in a decimal-comma locale
 * would print 0,2500, which no JSON reader takes. */
static void json_share(FILE *f, const char *key, double share)
{
    if (!(share > 0))
        share = 0;
    if (share > 1)
        share = 1;
    unsigned v = (unsigned)(share * 10000 + 0.5);
    fprintf(f, ", \"%s\": %u.%04u", key, v / 10000, v % 10000);
}

void weft_stats_print_queues_json(FILE *f, const weft_queue_stats *q, size_t n)
{
    if (!f)
        return;
    if (!q)
        n = 0;
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ", {\"name\": " : "{\"name\": ", f);
        weft__json_write_string(f, q[i].name); /* the user's string */
        fprintf(f, ", \"weight\": %u", q[i].weight);
        json_share(f, "weight_share", q[i].weight_share);
        json_share(f, "service_share", q[i].service_share);
        fprintf(f,
                ", \"service_ns\": %" PRIu64 ", \"runs\": %" PRIu64 ", \"slices\": %" PRIu64
                ", \"slice_exhaustions\": %" PRIu64 ", \"preemptions\": %" PRIu64
                ", \"queued\": %" PRIu64 ", \"running\": %" PRIu64 ", \"blocked\": %" PRIu64
                ", \"live\": %" PRIu64 ", \"delay_count\": %" PRIu64 ", \"delay_sum_ns\": %" PRIu64
                ", \"delay_hist\": [",
                q[i].service_ns, q[i].runs, q[i].slices, q[i].slice_exhaustions, q[i].preemptions,
                q[i].queued, q[i].running, q[i].blocked, q[i].live, q[i].delay_count,
                q[i].delay_sum_ns);
        for (int b = 0; b < WEFT_STATS_DELAY_BUCKETS; b++)
            fprintf(f, "%s%" PRIu64, b ? ", " : "", q[i].delay_hist[b]);
        fputs("]}", f);
    }
    fputs("]\n", f);
}
