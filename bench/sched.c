/* weft_sched_bench: scheduling benchmarks (weighted queues, in-queue
 * policies), one figure a line ("weft <key>=<value>"), timed with
 * CLOCK_MONOTONIC (weft_now_ns). bench/run-sched.sh turns the figures into a
 * table with the targets; bench/README.md ("Scheduling benchmarks") says what
 * each one measures.
 *
 *   priority     Clockworker's priority benchmark: 5,000 foreground tasks
 *                arriving open-loop at 1,000/s from a generator thread
 *                pinned to the other CPU (1-3 segments of busy CPU
 *                U[100,500] us separated by sleeps U[100,500] us) beside 8
 *                background loops (CPU U[100,500] us + sleep U[100,500] us).
 *                Variants fg-only, fg+bg (weights 99:1) and one shared FIFO
 *                queue; fg queue delay and total latency p50/p90/p99, bg
 *                iterations/s; median of 3 runs each.
 *   tail         99:1 thin:fat tasks (0-4 / 5-9 segments of CPU U[100,500] us +
 *                sleep U[100,1000] us), open-loop at ~70% load, each its own
 *                group, in one queue under runnable FIFO, LAS and QLAS (and,
 *                for context, arrival FIFO and QLAS with a 2 ms quantum):
 *                thin p50/p99 total latency and each p99 / FIFO p99; the
 *                policies take turns over 3 runs, each reporting its median.
 *                Then, as context, Clockworker's own mix (90:10, 0-3 / 5-10
 *                segments) twice: each task drawing its own work, and with
 *                its sampling, one draw per class for every task of it.
 *   overhead     spawn + run + join of 1M empty tasks in one queue under each
 *                policy (FIFO, arrival FIFO, LAS, QLAS), twice per runtime:
 *                ns/task of the second (warm) storm and of the first (cold),
 *                best of 3.
 *   yield_maybe  ns per weft_yield_maybe() with no yield due: one task, 50M
 *                calls; default config, stats on, two queues; best of 3.
 *
 * usage: weft_sched_bench [priority|tail|overhead|yield_maybe|all]...
 *        (none = all). All randomness comes from fixed seeds (splitmix64), so
 *        every run offers the same workload. The runtime has one worker on
 *        the calling thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <weft.h>

#define US 1000ull
#define MS 1000000ull

static void die(const char *what, int err)
{
    fprintf(stderr, "weft_sched_bench: %s: %s\n", what, weft_strerror(err));
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        die("calloc", -ENOMEM);
    return p;
}

static void run_in_weft(weft_config *cfg, weft_fn fn, void *arg, const char *what)
{
    cfg->workers = 1;
    void *res = NULL;
    int r = weft_run(cfg, fn, arg, &res);
    if (r == -EINVAL)
        fprintf(stderr, "weft_sched_bench: %s: config: %s\n", what, weft_last_config_error());
    if (r < 0)
        die(what, r);
    if (res)
        die(what, (int)(intptr_t)res);
}

/* CPU time of the calling thread (the worker), ns. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The machine's total and stolen CPU time so far (/proc/stat, in ticks), for
 * the share of time the hypervisor took away: busy-waits measure wall time,
 * so a stolen CPU makes every task late at no cost to its own figures. */
static void proc_stat_ticks(uint64_t *total, uint64_t *steal)
{
    *total = *steal = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return;
    unsigned long long v[8] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            *total += v[i];
        *steal = v[7];
    }
    fclose(f);
}

/* Pins the calling thread to CPU `cpu` of those it may run on now (the
 * first saved mask), when there are at least two; returns whether it did. */
static cpu_set_t allowed_cpus;
static bool allowed_saved;

static bool pin_to_cpu(int cpu)
{
    if (!allowed_saved) {
        if (sched_getaffinity(0, sizeof allowed_cpus, &allowed_cpus) != 0)
            return false;
        allowed_saved = true;
    }
    if (CPU_COUNT(&allowed_cpus) < 2)
        return false;
    int seen = -1;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &allowed_cpus) && ++seen == cpu) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            return pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
        }
    }
    return false;
}

static void unpin(void)
{
    if (allowed_saved)
        (void)pthread_setaffinity_np(pthread_self(), sizeof allowed_cpus, &allowed_cpus);
}

/* ---- randomness and statistics ------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *g) /* splitmix64 */
{
    uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform integer in [lo, hi]. */
static uint64_t rng_range(rng *g, uint64_t lo, uint64_t hi)
{
    return lo + rng_next(g) % (hi - lo + 1);
}

/* Uniform double in [0, 1). */
static double rng_unit(rng *g)
{
    return (double)(rng_next(g) >> 11) * 0x1.0p-53;
}

/* Exponential with the given mean (ns). */
static uint64_t rng_exp(rng *g, double mean_ns)
{
    return (uint64_t)(-log(1.0 - rng_unit(g)) * mean_ns);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of v[0..n) (sorted in place), in microseconds. */
static double pct_us(uint64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_u64);
    size_t k = (size_t)ceil(p * (double)n);
    k = k ? k - 1 : 0;
    if (k >= n)
        k = n - 1;
    return (double)v[k] / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median3(double a, double b, double c)
{
    double v[3] = {a, b, c};
    qsort(v, 3, sizeof *v, cmp_double);
    return v[1];
}

/* Busy CPU for ns, without yielding; from start (a clock reading). Returns
 * the clock at the end. */
static uint64_t spin_from(uint64_t start, uint64_t ns)
{
    uint64_t now;
    do
        now = weft_now_ns();
    while (now - start < ns);
    return now;
}

/* ---- priority ------------------------------------------------------------ */

#define PRIO_FG_TASKS 5000
#define PRIO_RATE     1000.0 /* arrivals per second */
#define PRIO_BG_TASKS 8
#define PRIO_RUNS     3
#define PRIO_SEED     0x5eedf00dull

typedef struct fg_job {
    uint64_t arrival;  /* offset from the run's start */
    unsigned nseg;     /* 1..3 */
    uint64_t cpu[3];   /* per segment */
    uint64_t sleep[2]; /* between segments */
} fg_job;

typedef struct prio_variant {
    const char *key, *label;
    const weft_queue_spec *queues;
    size_t nqueues;
    const char *fg_queue, *bg_queue; /* bg_queue NULL: no background tasks */
} prio_variant;

/* "main" holds the main task, which only waits for the fg tasks to end. */
static const weft_queue_spec q_fg_only[] = {
    {.name = "main", .weight = 10000},
    {.name = "fg", .weight = 99},
};
static const weft_queue_spec q_fg_bg[] = {
    {.name = "main", .weight = 10000},
    {.name = "fg", .weight = 99},
    {.name = "bg", .weight = 1},
};
static const weft_queue_spec q_shared[] = {
    {.name = "main", .weight = 10000},
    {.name = "shared", .weight = 100},
};

static const prio_variant prio_variants[] = {
    {"fgonly", "fg-only", q_fg_only, 2, "fg", NULL},
    {"fgbg", "fg+bg 99:1", q_fg_bg, 3, "fg", "bg"},
    {"fifo", "single FIFO", q_shared, 2, "shared", "shared"},
};

typedef struct prio_result {
    double qd[3], lat[3]; /* p50, p90, p99 (us) */
    double bg_iters_per_s;
    double gen_late_p50, gen_late_p99; /* spawn time - scheduled arrival (us) */
    /* The parts of the queue delay: arrival -> first run, per task, and
     * sleep deadline -> running again, per wake (us). */
    double first_p50, first_p99, wake_p50, wake_p99;
    double busy; /* the worker thread's CPU time / wall time, t0 -> end */
} prio_result;

static struct {
    const fg_job *jobs;
    const prio_variant *v;
    bool print_queues;
    uint64_t t0;              /* absolute start */
    uint64_t *qdelay, *total; /* per fg task */
    uint64_t *gen_late;
    uint64_t *first, *wake; /* per task; per wake (2 slots a task) */
    uint64_t bg_iters;
    char *queue_table; /* the per-queue stats of the last run, when asked */
    volatile bool stop;
    weft_runtime *rt;        /* for the generator thread's weft_runtime_spawn */
    _Atomic size_t fg_done;  /* fg tasks finished */
    weft_event all_done;     /* notified by the last fg task */
    _Atomic int gen_error;   /* the generator's failed spawn, or 0 */
    _Atomic bool gen_pinned; /* the generator thread runs on a CPU of its own */
    prio_result res;
} prio;

static void *prio_fg(void *arg)
{
    const fg_job *j = arg;
    size_t i = (size_t)(j - prio.jobs);
    uint64_t arrival = prio.t0 + j->arrival;
    uint64_t now = weft_now_ns();
    uint64_t qd = now - arrival;
    prio.first[i] = qd;
    for (unsigned s = 0; s < j->nseg; s++) {
        now = spin_from(now, j->cpu[s]);
        if (s + 1 < j->nseg) {
            uint64_t wake = now + j->sleep[s];
            int r = weft_sleep_until(wake);
            if (r < 0)
                return (void *)(intptr_t)r;
            now = weft_now_ns();
            prio.wake[2 * i + s] = now - wake;
            qd += now - wake;
        }
    }
    prio.qdelay[i] = qd;
    prio.total[i] = now - arrival;
    if (atomic_fetch_add(&prio.fg_done, 1) + 1 == PRIO_FG_TASKS)
        weft_event_notify_all(&prio.all_done);
    return NULL;
}

/* The generator, a thread of its own pinned to the other CPU (as in
 * Clockworker's benchmark): it busy-waits until each scheduled arrival and
 * spawns that fg task into the runtime from outside (weft_runtime_spawn). */
static void *prio_gen(void *unused)
{
    (void)unused;
    bool pinned = pin_to_cpu(1);
    atomic_store(&prio.gen_pinned, pinned);
    weft_spawn_opts o = {.queue = prio.v->fg_queue, .name = "fg"};
    for (size_t i = 0; i < PRIO_FG_TASKS; i++) {
        uint64_t at = prio.t0 + prio.jobs[i].arrival;
        /* On a CPU of its own it spins, as Clockworker's does; sharing the
         * worker's, it sleeps until just before (a spin would take the
         * worker's CPU). */
        if (!pinned && at > weft_now_ns() + 100 * US) {
            uint64_t wake = at - 100 * US;
            struct timespec ts = {(time_t)(wake / 1000000000u), (long)(wake % 1000000000u)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
        while (weft_now_ns() < at)
            ;
        int r = weft_runtime_spawn(prio.rt, &o, prio_fg, (void *)&prio.jobs[i]);
        prio.gen_late[i] = weft_now_ns() - at;
        if (r < 0) {
            atomic_store(&prio.gen_error, r);
            /* The main task waits for every fg task: count the rest done. */
            size_t left = PRIO_FG_TASKS - i;
            if (atomic_fetch_add(&prio.fg_done, left) + left == PRIO_FG_TASKS)
                weft_event_notify_all(&prio.all_done);
            break;
        }
    }
    return NULL;
}

static void *prio_bg(void *arg)
{
    rng g = {PRIO_SEED ^ (uint64_t)(uintptr_t)arg * 0x100000001b3ull};
    int r = weft_sleep_until(prio.t0);
    while (r == 0 && !prio.stop) {
        uint64_t now = spin_from(weft_now_ns(), rng_range(&g, 100, 500) * US);
        if (prio.stop)
            break;
        prio.bg_iters++;
        r = weft_sleep_until(now + rng_range(&g, 100, 500) * US);
    }
    return r < 0 ? (void *)(intptr_t)r : NULL;
}

static void *prio_main(void *unused)
{
    (void)unused;
    const prio_variant *v = prio.v;
    weft_task *bg[PRIO_BG_TASKS];
    int nbg = v->bg_queue ? PRIO_BG_TASKS : 0;
    prio.stop = false;
    prio.bg_iters = 0;
    prio.rt = weft_runtime_current();
    atomic_store(&prio.fg_done, 0);
    atomic_store(&prio.gen_error, 0);
    weft_event_init(&prio.all_done);
    /* Everything starts together, a little after setup. */
    prio.t0 = weft_now_ns() + 5 * MS;
    for (int k = 0; k < nbg; k++) {
        weft_spawn_opts o = {.queue = v->bg_queue, .name = "bg"};
        int r = weft_spawn_ex(&bg[k], &o, prio_bg, (void *)(uintptr_t)(k + 1));
        if (r < 0)
            die("priority: spawn bg", r);
    }
    pthread_t gen;
    if (pthread_create(&gen, NULL, prio_gen, NULL) != 0)
        die("priority: generator thread", -EAGAIN);
    int r;
    if ((r = weft_sleep_until(prio.t0)) < 0)
        die("priority: sleep", r);
    uint64_t cpu0 = thread_cpu_ns();
    while (atomic_load(&prio.fg_done) < PRIO_FG_TASKS)
        if ((r = weft_event_wait(&prio.all_done)) < 0)
            die("priority: wait for the fg tasks", r);
    uint64_t t_end = weft_now_ns();
    pthread_join(gen, NULL);
    if ((r = atomic_load(&prio.gen_error)) < 0)
        die("priority: weft_runtime_spawn", r);
    uint64_t cpu1 = thread_cpu_ns();
    prio.stop = true;
    for (int k = 0; k < nbg; k++)
        if ((r = weft_join(bg[k], NULL)) < 0)
            die("priority: bg", r);

    prio_result *res = &prio.res;
    static const double ps[3] = {0.50, 0.90, 0.99};
    for (int k = 0; k < 3; k++) {
        res->qd[k] = pct_us(prio.qdelay, PRIO_FG_TASKS, ps[k]);
        res->lat[k] = pct_us(prio.total, PRIO_FG_TASKS, ps[k]);
    }
    res->bg_iters_per_s = (double)prio.bg_iters / ((double)(t_end - prio.t0) / 1e9);
    res->busy = (double)(cpu1 - cpu0) / (double)(t_end - prio.t0);
    res->gen_late_p50 = pct_us(prio.gen_late, PRIO_FG_TASKS, 0.50);
    res->gen_late_p99 = pct_us(prio.gen_late, PRIO_FG_TASKS, 0.99);
    res->first_p50 = pct_us(prio.first, PRIO_FG_TASKS, 0.50);
    res->first_p99 = pct_us(prio.first, PRIO_FG_TASKS, 0.99);
    size_t nwake = 0;
    for (size_t i = 0; i < PRIO_FG_TASKS; i++)
        for (unsigned s = 0; s + 1 < prio.jobs[i].nseg; s++)
            prio.wake[nwake++] = prio.wake[2 * i + s]; /* compact; nwake <= 2 * i + s */
    res->wake_p50 = pct_us(prio.wake, nwake, 0.50);
    res->wake_p99 = pct_us(prio.wake, nwake, 0.99);

    if (prio.print_queues) {
        /* Printed after the run's own figures: keep it until then. */
        weft_queue_stats qs[4];
        int n = weft_stats_queues(qs, 4);
        if (n < 0)
            die("priority: weft_stats_queues", n);
        size_t len;
        FILE *f = open_memstream(&prio.queue_table, &len);
        if (!f)
            die("priority: open_memstream", -ENOMEM);
        weft_stats_print_queues(f, qs, (size_t)n);
        fclose(f);
    }
    return NULL;
}

static void bench_priority(void)
{
    fg_job *jobs = xcalloc(PRIO_FG_TASKS, sizeof *jobs);
    rng g = {PRIO_SEED};
    uint64_t t = 0;
    for (size_t i = 0; i < PRIO_FG_TASKS; i++) {
        t += rng_exp(&g, 1e9 / PRIO_RATE);
        jobs[i].arrival = t;
        jobs[i].nseg = (unsigned)rng_range(&g, 1, 3);
        for (unsigned s = 0; s < 3; s++)
            jobs[i].cpu[s] = rng_range(&g, 100, 500) * US;
        for (unsigned s = 0; s < 2; s++)
            jobs[i].sleep[s] = rng_range(&g, 100, 500) * US;
    }
    prio.jobs = jobs;
    prio.qdelay = xcalloc(PRIO_FG_TASKS, sizeof *prio.qdelay);
    prio.total = xcalloc(PRIO_FG_TASKS, sizeof *prio.total);
    prio.gen_late = xcalloc(PRIO_FG_TASKS, sizeof *prio.gen_late);
    prio.first = xcalloc(PRIO_FG_TASKS, sizeof *prio.first);
    prio.wake = xcalloc(2 * PRIO_FG_TASKS, sizeof *prio.wake);
    printf("weft priority_fg_tasks=%d\n", PRIO_FG_TASKS);
    printf("weft priority_arrival_span_ms=%.1f\n", (double)t / 1e6);

    /* The worker (this thread) on one CPU, the generator on the other. */
    bool worker_pinned = pin_to_cpu(0);
    uint64_t tick0, steal0, tick1, steal1;
    proc_stat_ticks(&tick0, &steal0);
    size_t nv = sizeof prio_variants / sizeof *prio_variants;
    for (size_t vi = 0; vi < nv; vi++) {
        const prio_variant *v = &prio_variants[vi];
        prio_result runs[PRIO_RUNS];
        for (int k = 0; k < PRIO_RUNS; k++) {
            weft_config cfg = {.queues = v->queues, .nqueues = v->nqueues, .stats = true};
            /* The worker looks at the generator's spawns after every task
             * run (the default, every 31 runs, made fg+bg's p99 3.5x
             * fg-only's: a request waited out up to 31 bg segments). */
            cfg.inject_interval = 1;
            prio.v = v;
            prio.print_queues = vi == 1 && k == PRIO_RUNS - 1;
            memset(&prio.res, 0, sizeof prio.res);
            run_in_weft(&cfg, prio_main, NULL, "priority");
            runs[k] = prio.res;
            printf("weft priority_%s_run%d_qdelay_p99_us=%.1f\n", v->key, k + 1, runs[k].qd[2]);
            if (v->bg_queue)
                printf("weft priority_%s_run%d_bg_iters_per_s=%.1f\n", v->key, k + 1,
                       runs[k].bg_iters_per_s);
            fflush(stdout);
        }
#define MED(field) median3(runs[0].field, runs[1].field, runs[2].field)
        static const char *const pn[3] = {"p50", "p90", "p99"};
        for (int q = 0; q < 3; q++)
            printf("weft priority_%s_qdelay_%s_us=%.1f\n", v->key, pn[q], MED(qd[q]));
        for (int q = 0; q < 3; q++)
            printf("weft priority_%s_latency_%s_us=%.1f\n", v->key, pn[q], MED(lat[q]));
        if (v->bg_queue)
            printf("weft priority_%s_bg_iters_per_s=%.1f\n", v->key, MED(bg_iters_per_s));
        printf("weft priority_%s_gen_late_p50_us=%.1f\n", v->key, MED(gen_late_p50));
        printf("weft priority_%s_gen_late_p99_us=%.1f\n", v->key, MED(gen_late_p99));
        printf("weft priority_%s_first_run_delay_p50_us=%.1f\n", v->key, MED(first_p50));
        printf("weft priority_%s_first_run_delay_p99_us=%.1f\n", v->key, MED(first_p99));
        printf("weft priority_%s_wake_delay_p50_us=%.1f\n", v->key, MED(wake_p50));
        printf("weft priority_%s_wake_delay_p99_us=%.1f\n", v->key, MED(wake_p99));
        printf("weft priority_%s_worker_busy_pct=%.1f\n", v->key, 100 * MED(busy));
#undef MED
        if (prio.queue_table) {
            printf("# per-queue stats at the end of the last %s run (weft_stats_print_queues):\n",
                   v->label);
            fputs(prio.queue_table, stdout);
            free(prio.queue_table);
            prio.queue_table = NULL;
        }
        fflush(stdout);
    }
    proc_stat_ticks(&tick1, &steal1);
    unpin();
    printf("weft priority_generator_pinned=%d\n",
           worker_pinned && atomic_load(&prio.gen_pinned) ? 1 : 0);
    if (tick1 > tick0)
        printf("weft priority_machine_steal_pct=%.2f\n",
               100.0 * (double)(steal1 - steal0) / (double)(tick1 - tick0));
    free(prio.wake);
    free(prio.first);
    free(prio.gen_late);
    free(prio.total);
    free(prio.qdelay);
    free(jobs);
}

/* ---- tail ------------------------------------------------------------------ */

#define TAIL_SEED     0x7a11ull
#define TAIL_MAXSEG   10
#define TAIL_THIN_MAX 4 /* the most segments of a thin task in any mix */
#define TAIL_RUNS     3 /* per policy; each reports its median run */

/* A workload of thin and fat tasks. Every segment is a CPU busy-wait of
 * U[100, 500] us followed by a sleep of U[100, 1000] us; each task draws its
 * own segment count and lengths. */
typedef struct tail_mix {
    const char *key; /* the prefix of its figures: "tail_" or "tail_cw_" */
    size_t tasks;
    unsigned fat_per_100;
    unsigned thin_min, thin_max, fat_min, fat_max; /* segments */
    double load;    /* the arrival rate gives this CPU load on one worker, */
    double rate;    /* unless this rate (tasks/s) is set */
    int npolicies;  /* the first npolicies of tail_policies[] */
    bool same_work; /* every thin task does the same work, and every fat one */
} tail_mix;

/* The issue's mix (the targets): 99:1, thin 0-4, fat 5-9, 70% load. */
static const tail_mix tail_issue_mix = {"tail_", 4000, 1, 0, 4, 5, 9, 0.70, 0, 5, false};
/* Clockworker's own tail benchmark (benches/tail_latency.rs), as context:
 * 90:10, thin 0-3 segments, fat 5-10, 5,000 tasks at 1,200/s (76% load).
 * There every thin task does the same work, and every fat one (its sample()
 * seeds its generator afresh at each call); here each task draws its own. */
static const tail_mix tail_cw_mix = {"tail_cw_", 5000, 10, 0, 3, 5, 10, 0, 1200, 3, false};
/* Clockworker's mix with its sampling: one draw for all thin tasks and one
 * for all fat ones, so that service tells the classes apart exactly; the
 * arrival rate gives its mix's mean load, 75.6%, for the work drawn. */
static const tail_mix tail_cw_same_mix = {.key = "tail_cw_same_",
                                          .tasks = 5000,
                                          .fat_per_100 = 10,
                                          .thin_min = 0,
                                          .thin_max = 3,
                                          .fat_min = 5,
                                          .fat_max = 10,
                                          .load = 0.756,
                                          .npolicies = 3,
                                          .same_work = true};

typedef struct tail_job {
    uint64_t arrival;
    bool fat;
    unsigned nseg;
    uint64_t cpu[TAIL_MAXSEG], sleep[TAIL_MAXSEG];
} tail_job;

static struct {
    const tail_job *jobs;
    size_t ntasks;
    uint64_t t0;
    uint64_t *total;
    uint64_t *gen_late;
} tail;

static void *tail_task(void *arg)
{
    const tail_job *j = arg;
    uint64_t now = weft_now_ns();
    for (unsigned s = 0; s < j->nseg; s++) {
        now = spin_from(now, j->cpu[s]);
        int r = weft_sleep_until(now + j->sleep[s]);
        if (r < 0)
            return (void *)(intptr_t)r;
        now = weft_now_ns();
    }
    tail.total[j - tail.jobs] = now - (tail.t0 + j->arrival);
    return NULL;
}

static void *tail_gen(void *unused)
{
    (void)unused;
    weft_spawn_opts o = {.queue = "work", .group = 0, .name = "job"};
    for (size_t i = 0; i < tail.ntasks; i++) {
        uint64_t at = tail.t0 + tail.jobs[i].arrival;
        int r = weft_sleep_until(at);
        if (r < 0)
            return (void *)(intptr_t)r;
        tail.gen_late[i] = weft_now_ns() - at;
        r = weft_spawn_ex(NULL, &o, tail_task, (void *)&tail.jobs[i]);
        if (r < 0)
            return (void *)(intptr_t)r;
    }
    int r = weft_wait_children();
    return r < 0 ? (void *)(intptr_t)r : NULL;
}

static void *tail_main(void *unused)
{
    (void)unused;
    tail.t0 = weft_now_ns() + 5 * MS;
    weft_task *gen;
    weft_spawn_opts o = {.queue = "gen", .name = "gen"};
    int r = weft_spawn_ex(&gen, &o, tail_gen, NULL);
    if (r < 0)
        die("tail: spawn gen", r);
    void *res;
    if ((r = weft_join(gen, &res)) < 0)
        die("tail: generator", r);
    if (res)
        die("tail: generator", (int)(intptr_t)res);
    return NULL;
}

/* The first three are the targets' subjects. The other two are context, to
 * show whether any policy of weft's reaches the target on the issue's mix:
 * arrival FIFO (oldest task first, the classic answer for the tail when
 * sizes are light-tailed) and QLAS with a quantum of 2 ms, so that every
 * thin task stays in bucket 0 (FIFO) and only fat tasks sink. */
static const weft_qlas_config qlas_2ms = {.quantum_ns = 2 * MS};
static const struct {
    const char *key;
    const weft_policy *policy;
    const void *config;
} tail_policies[] = {
    {"fifo", &weft_policy_runnable_fifo, NULL},  {"las", &weft_policy_las, NULL},
    {"qlas", &weft_policy_qlas, NULL},           {"arrival_fifo", &weft_policy_arrival_fifo, NULL},
    {"qlas_q2ms", &weft_policy_qlas, &qlas_2ms},
};
#define TAIL_NPOLICIES ((int)(sizeof tail_policies / sizeof tail_policies[0]))

static void run_tail_mix(const tail_mix *m)
{
    if (m->fat_max > TAIL_MAXSEG || m->thin_max > TAIL_THIN_MAX || m->thin_min > m->thin_max ||
        m->fat_min > m->fat_max || m->thin_max >= m->fat_min) {
        fprintf(stderr, "weft_sched_bench: tail mix %s: bad segment counts\n", m->key);
        exit(1);
    }
    /* Mean CPU per task: the mean segment count times 300 us. */
    const double fat = m->fat_per_100 / 100.0;
    double mean_work_ns =
        ((1 - fat) * (m->thin_min + m->thin_max) / 2.0 + fat * (m->fat_min + m->fat_max) / 2.0) *
        300.0 * US;
    double rate = m->rate > 0 ? m->rate : m->load * 1e9 / mean_work_ns;
    tail_job *jobs = xcalloc(m->tasks, sizeof *jobs);
    rng g = {TAIL_SEED};
    uint64_t t = 0;
    size_t nthin = 0;
    for (size_t i = 0; i < m->tasks; i++) {
        t += rng_exp(&g, 1e9 / rate);
        jobs[i].arrival = t;
        jobs[i].fat = rng_next(&g) % 100 < m->fat_per_100;
        jobs[i].nseg = (unsigned)(jobs[i].fat ? rng_range(&g, m->fat_min, m->fat_max)
                                              : rng_range(&g, m->thin_min, m->thin_max));
        nthin += !jobs[i].fat;
        /* fat_max draws for every job, used or not: the issue's mix then
         * draws the same stream as before Clockworker's mix came. */
        for (unsigned s = 0; s < m->fat_max; s++) {
            jobs[i].cpu[s] = rng_range(&g, 100, 500) * US;
            jobs[i].sleep[s] = rng_range(&g, 100, 1000) * US;
        }
    }
    if (m->same_work) {
        /* Each class's first job with work is its template (a thin one of
         * no segments would make every thin task empty); every job of the
         * class then does the template's work. */
        const tail_job *tmpl[2] = {NULL, NULL};
        for (size_t i = 0; i < m->tasks; i++)
            if (!tmpl[jobs[i].fat] && jobs[i].nseg > 0)
                tmpl[jobs[i].fat] = &jobs[i];
        if (!tmpl[0] || !tmpl[1]) {
            fprintf(stderr, "weft_sched_bench: tail mix %s: a class has no task\n", m->key);
            exit(1);
        }
        for (size_t i = 0; i < m->tasks; i++) {
            const tail_job *tj = tmpl[jobs[i].fat];
            if (tj == &jobs[i])
                continue;
            jobs[i].nseg = tj->nseg;
            memcpy(jobs[i].cpu, tj->cpu, sizeof tj->cpu);
            memcpy(jobs[i].sleep, tj->sleep, sizeof tj->sleep);
        }
        /* The templates' work is not the mean the rate came from: stretch
         * the arrivals (exponential still) to the load asked for. */
        double work = 0;
        for (size_t i = 0; i < m->tasks; i++)
            for (unsigned k = 0; k < jobs[i].nseg; k++)
                work += (double)jobs[i].cpu[k];
        mean_work_ns = work / (double)m->tasks;
        double want = m->load * 1e9 / mean_work_ns;
        for (size_t i = 0; i < m->tasks; i++)
            jobs[i].arrival = (uint64_t)((double)jobs[i].arrival * rate / want);
        rate = want;
        printf("weft %sthin_segments=%u\n", m->key, tmpl[0]->nseg);
        printf("weft %sfat_segments=%u\n", m->key, tmpl[1]->nseg);
    }
    printf("weft %stasks=%zu\n", m->key, m->tasks);
    printf("weft %sthin_tasks=%zu\n", m->key, nthin);
    printf("weft %smean_work_us=%.1f\n", m->key, mean_work_ns / 1e3);
    printf("weft %srate_per_s=%.1f\n", m->key, rate);
    printf("weft %sload_pct=%.1f\n", m->key, 100.0 * rate * mean_work_ns / 1e9);
    fflush(stdout);

    uint64_t *thin = xcalloc(m->tasks, sizeof *thin);
    uint64_t *fats = xcalloc(m->tasks, sizeof *fats);
    tail.jobs = jobs;
    tail.ntasks = m->tasks;
    tail.total = xcalloc(m->tasks, sizeof *tail.total);
    tail.gen_late = xcalloc(m->tasks, sizeof *tail.gen_late);
    /* Runs interleave the policies (FIFO, LAS, QLAS, ..., FIFO, ...), so
     * drift in the machine touches all of them alike; each policy reports
     * its median run by thin p99. */
    typedef struct tail_result {
        double thin_p50, thin_p99, fat_p50, fat_p99, run_ms, gen_late_p99;
        double seg_p50[TAIL_THIN_MAX + 1], seg_p99[TAIL_THIN_MAX + 1];
    } tail_result;
    tail_result res[TAIL_NPOLICIES][TAIL_RUNS];
    for (int run = 0; run < TAIL_RUNS; run++) {
        for (int p = 0; p < m->npolicies; p++) {
            weft_queue_spec qs[] = {
                {.name = "gen", .weight = 10000},
                {.name = "work",
                 .weight = 100,
                 .policy = tail_policies[p].policy,
                 .policy_config = tail_policies[p].config},
            };
            weft_config cfg = {.queues = qs, .nqueues = 2};
            /* Every run fills both arrays anew: a task that ended early
             * (its sleep failed) would leave the last run's figure. */
            for (size_t i = 0; i < m->tasks; i++)
                tail.total[i] = tail.gen_late[i] = UINT64_MAX;
            uint64_t w0 = weft_now_ns();
            run_in_weft(&cfg, tail_main, NULL, "tail");
            uint64_t w1 = weft_now_ns();
            for (size_t i = 0; i < m->tasks; i++)
                if (tail.total[i] == UINT64_MAX || tail.gen_late[i] == UINT64_MAX) {
                    fprintf(stderr, "weft_sched_bench: tail: task %zu did not finish its run\n", i);
                    exit(1);
                }
            tail_result *r = &res[p][run];
            size_t nt = 0, nf = 0;
            for (size_t i = 0; i < m->tasks; i++) {
                if (jobs[i].fat)
                    fats[nf++] = tail.total[i];
                else
                    thin[nt++] = tail.total[i];
            }
            r->thin_p50 = pct_us(thin, nt, 0.50);
            r->thin_p99 = pct_us(thin, nt, 0.99);
            r->fat_p50 = pct_us(fats, nf, 0.50);
            r->fat_p99 = pct_us(fats, nf, 0.99);
            r->run_ms = (double)(w1 - w0) / 1e6;
            r->gen_late_p99 = pct_us(tail.gen_late, m->tasks, 0.99);
            /* Context: thin tasks by their number of segments. */
            for (unsigned ns = m->thin_min; ns <= m->thin_max; ns++) {
                size_t n = 0;
                for (size_t i = 0; i < m->tasks; i++)
                    if (!jobs[i].fat && jobs[i].nseg == ns)
                        thin[n++] = tail.total[i];
                r->seg_p50[ns] = pct_us(thin, n, 0.50);
                r->seg_p99[ns] = pct_us(thin, n, 0.99);
            }
            printf("weft %s%s_run%d_thin_p99_us=%.1f\n", m->key, tail_policies[p].key, run + 1,
                   r->thin_p99);
            fflush(stdout);
        }
    }
    double thin_p99[TAIL_NPOLICIES] = {0};
    for (int p = 0; p < m->npolicies; p++) {
        /* The median run by thin p99 (TAIL_RUNS is odd). */
        int order[TAIL_RUNS];
        for (int k = 0; k < TAIL_RUNS; k++)
            order[k] = k;
        for (int i = 1; i < TAIL_RUNS; i++)
            for (int k = i; k > 0 && res[p][order[k]].thin_p99 < res[p][order[k - 1]].thin_p99;
                 k--) {
                int tmp = order[k];
                order[k] = order[k - 1];
                order[k - 1] = tmp;
            }
        const tail_result *r = &res[p][order[TAIL_RUNS / 2]];
        const char *pk = tail_policies[p].key;
        thin_p99[p] = r->thin_p99;
        printf("weft %s%s_thin_p50_us=%.1f\n", m->key, pk, r->thin_p50);
        printf("weft %s%s_thin_p99_us=%.1f\n", m->key, pk, r->thin_p99);
        printf("weft %s%s_fat_p50_us=%.1f\n", m->key, pk, r->fat_p50);
        printf("weft %s%s_fat_p99_us=%.1f\n", m->key, pk, r->fat_p99);
        printf("weft %s%s_run_ms=%.0f\n", m->key, pk, r->run_ms);
        printf("weft %s%s_gen_late_p99_us=%.1f\n", m->key, pk, r->gen_late_p99);
        for (unsigned ns = m->thin_min; ns <= m->thin_max; ns++) {
            printf("weft %s%s_thin_%useg_p50_us=%.1f\n", m->key, pk, ns, r->seg_p50[ns]);
            printf("weft %s%s_thin_%useg_p99_us=%.1f\n", m->key, pk, ns, r->seg_p99[ns]);
        }
    }
    for (int p = 1; p < m->npolicies; p++)
        printf("weft %s%s_thin_p99_ratio=%.3f\n", m->key, tail_policies[p].key,
               thin_p99[p] / thin_p99[0]);
    fflush(stdout);
    free(tail.gen_late);
    free(tail.total);
    free(fats);
    free(thin);
    free(jobs);
}

static void bench_tail(void)
{
    run_tail_mix(&tail_issue_mix);
    run_tail_mix(&tail_cw_mix);
    run_tail_mix(&tail_cw_same_mix);
}

/* ---- overhead -------------------------------------------------------------- */

#define OVH_TASKS  1000000L
#define OVH_ROUNDS 3

/* Per storm of the last run: [0] cold (fresh records), [1] warm. */
static double ovh_ns_per_task[2];

static void *return_arg(void *arg)
{
    return arg;
}

static void *ovh_main(void *unused)
{
    (void)unused;
    weft_task **hs = malloc(OVH_TASKS * sizeof *hs);
    if (!hs)
        return (void *)(intptr_t)-ENOMEM;
    /* Two storms: the first pays for fresh task records, the second reuses
     * them. Fresh memory costs the same under every policy but varies by
     * a third between runs on virtual machines, so the warm storm is the
     * one that shows what the policy costs. */
    for (int storm = 0; storm < 2; storm++) {
        uint64_t t0 = weft_now_ns();
        for (long i = 0; i < OVH_TASKS; i++) {
            int r = weft_spawn(&hs[i], return_arg, (void *)(intptr_t)i);
            if (r < 0)
                die("overhead: weft_spawn", r);
        }
        for (long i = 0; i < OVH_TASKS; i++) {
            void *res;
            int r = weft_join(hs[i], &res);
            if (r < 0)
                die("overhead: weft_join", r);
            if ((intptr_t)res != i) {
                fprintf(stderr, "weft_sched_bench: overhead: task %ld returned %ld\n", i,
                        (long)(intptr_t)res);
                exit(1);
            }
        }
        ovh_ns_per_task[storm] = (double)(weft_now_ns() - t0) / OVH_TASKS;
    }
    free(hs);
    return NULL;
}

static void bench_overhead(void)
{
    static const struct {
        const char *key;
        const weft_policy *policy;
    } pols[] = {
        {"fifo", &weft_policy_runnable_fifo},
        {"arrival_fifo", &weft_policy_arrival_fifo},
        {"las", &weft_policy_las},
        {"qlas", &weft_policy_qlas},
    };
    enum { NPOL = 4 };
    double best[NPOL], best_cold[NPOL];
    for (int p = 0; p < NPOL; p++)
        best[p] = best_cold[p] = INFINITY;
    /* Rounds interleave the policies so that slow spells of the machine
     * spread over all of them. */
    for (int round = 0; round < OVH_ROUNDS; round++) {
        for (int p = 0; p < NPOL; p++) {
            weft_queue_spec q = {.name = "q", .weight = 1, .policy = pols[p].policy};
            weft_config cfg = {.queues = &q, .nqueues = 1};
            run_in_weft(&cfg, ovh_main, NULL, "overhead");
            if (ovh_ns_per_task[0] < best_cold[p])
                best_cold[p] = ovh_ns_per_task[0];
            if (ovh_ns_per_task[1] < best[p])
                best[p] = ovh_ns_per_task[1];
        }
    }
    for (int p = 0; p < NPOL; p++)
        printf("weft overhead_%s_ns_per_task=%.1f\n", pols[p].key, best[p]);
    for (int p = 0; p < NPOL; p++)
        printf("weft overhead_%s_cold_ns_per_task=%.1f\n", pols[p].key, best_cold[p]);
    for (int p = 1; p < NPOL; p++)
        printf("weft overhead_%s_ratio=%.3f\n", pols[p].key, best[p] / best[0]);
    fflush(stdout);
}

/* ---- yield_maybe ----------------------------------------------------------- */

#define YM_CALLS  50000000L
#define YM_ROUNDS 3

static double ym_ns_per_call;
static uint64_t ym_switches;

static void *ym_main(void *unused)
{
    (void)unused;
    weft_stats s0, s1;
    weft_stats_snapshot(&s0);
    uint64_t t0 = weft_now_ns();
    for (long i = 0; i < YM_CALLS; i++) {
        int r = weft_yield_maybe();
        if (r < 0)
            die("yield_maybe", r);
    }
    uint64_t t1 = weft_now_ns();
    weft_stats_snapshot(&s1);
    ym_ns_per_call = (double)(t1 - t0) / YM_CALLS;
    ym_switches = s1.context_switches - s0.context_switches;
    return NULL;
}

static void bench_yield_maybe(void)
{
    static const weft_queue_spec two[] = {
        {.name = "a", .weight = 1},
        {.name = "idle", .weight = 1},
    };
    static const struct {
        const char *key;
        weft_config cfg;
    } cases[] = {
        {"default", {0}},
        {"stats", {.stats = true}},
        {"two_queues", {.queues = two, .nqueues = 2}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        double best = INFINITY;
        uint64_t switches = 0;
        for (int k = 0; k < YM_ROUNDS; k++) {
            weft_config cfg = cases[c].cfg;
            run_in_weft(&cfg, ym_main, NULL, "yield_maybe");
            if (ym_ns_per_call < best) {
                best = ym_ns_per_call;
                switches = ym_switches;
            }
        }
        printf("weft yield_maybe_%s_ns_per_call=%.2f\n", cases[c].key, best);
        /* Context: the yields that were due (slice ends) during the calls. */
        printf("weft yield_maybe_%s_switches=%" PRIu64 "\n", cases[c].key, switches);
        fflush(stdout);
    }
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    static const char *const names[] = {"priority", "tail", "overhead", "yield_maybe"};
    static void (*const fns[])(void) = {bench_priority, bench_tail, bench_overhead,
                                        bench_yield_maybe};
    enum { NBENCH = 4 };
    bool want[NBENCH] = {0};
    bool any = false;
    for (int i = 1; i < argc; i++) {
        int k = 0;
        if (strcmp(argv[i], "all") == 0) {
            for (k = 0; k < NBENCH; k++)
                want[k] = true;
            any = true;
            continue;
        }
        while (k < NBENCH && strcmp(argv[i], names[k]) != 0)
            k++;
        if (k == NBENCH) {
            fprintf(stderr, "usage: %s [priority|tail|overhead|yield_maybe|all]...\n", argv[0]);
            return 2;
        }
        want[k] = any = true;
    }
    for (int k = 0; k < NBENCH; k++)
        if (want[k] || !any)
            fns[k]();
    return 0;
}
