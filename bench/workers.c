/* weft_workers: benchmarks of the multi-worker runtime (issue 5), one figure
 * a line ("weft workers=<N> <key>=<value>"), timed with CLOCK_MONOTONIC.
 * Public API only.
 *
 *   skew      10,000 CPU-bound tasks of about 100 us each (a fixed amount of
 *             arithmetic, calibrated before the runtime starts), all spawned
 *             from the main task, then joined: skew_total_ms, skew_tasks_per_s
 *             and how many tasks each worker ran
 *   pingpong  two tasks exchange a u64 over two channels of capacity 1 (the
 *             shape of the Tokio peer): channel_pingpong_ns_per_roundtrip,
 *             with the tasks placed wherever the runtime puts them (as the
 *             peers do; the default WEFT_WAKE_TO_WAKER moves a woken task
 *             to its waker's worker, as the peers place it), and
 *             ..._cross_... with one task pinned on worker 0 and the other
 *             on worker 1; then ..._owner_... placed by the runtime with
 *             wake_placement WEFT_WAKE_TO_OWNER, where every wake goes to
 *             the task's own worker. Then the floor the machine sets for
 *             the pinned case, without weft: two plain threads passing one
 *             cache line back and forth (each spins until the line says it
 *             is its turn): "os threads=2 cache_line_roundtrip_ns". A
 *             message each way between two cores moves at least that.
 *   wake      cross-worker wake latency: a task on worker 1 waits on a
 *             weft_event, a task on worker 0 notifies it; latency = the
 *             waiter's clock after it resumes minus the notifier's clock just
 *             before the notify. "parked": the notifier sleeps 300 us between
 *             samples, so worker 1 has gone through its idle spin and is
 *             parked in io_uring_enter (the notifier waits parked for an
 *             ack, so both workers idle between samples); "spinning": no
 *             gap, worker 1 is still in its idle spin. p50/p90/p99/max in us.
 *             Then the floor the machine sets, without weft: two plain
 *             threads doing the "parked" exchange through eventfds (the
 *             waiter blocked in read(2), the notifier in nanosleep and
 *             read between samples): "os threads=2 wake_parked_eventfd_*".
 *
 * usage: weft_workers [skew|pingpong|wake]... [-w N]...
 *   -w N may be repeated: the worker counts to run skew with (default 1
 *   and 2; pingpong and wake always use 2 workers). Spawn+join with N
 *   workers is weft_micro's: WEFT_MICRO_WORKERS=N weft_micro spawn
 *   (run-workers.sh runs it).
 *
 * How a task is put on a given worker with the public API only: "scouts"
 * (plain tasks) yield in a loop on a busy worker until the hand-over moves
 * one of them to the target worker; that one spawns the real task there
 * with WEFT_TASK_STICKY, which never moves, and joins it.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

#define MAX_WORKERS 64

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "weft_workers: %s: %s\n", what, weft_strerror(err));
    exit(1);
}

static weft_wake_placement wake_placement; /* the config of the next run_with_workers */

static void run_with_workers(unsigned workers, weft_fn fn, void *arg, const char *what)
{
    weft_config cfg = {.workers = workers, .wake_placement = wake_placement};
    int r = weft_run(&cfg, fn, arg, NULL);
    if (r < 0)
        die(what, r);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The value below which fraction p of the sorted samples fall. */
static double quantile_us(const uint64_t *sorted, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1e3;
}

/* ---- placing a task on a given worker ------------------------------------ */

#define SCOUTS 4

typedef struct placement {
    int target;
    weft_fn fn;
    void *arg;
    atomic_int claimed;
    void *result;
} placement;

static void *scout(void *p)
{
    placement *pl = p;
    while (!atomic_load(&pl->claimed)) {
        if (weft_worker_index() == pl->target && !atomic_exchange(&pl->claimed, 1)) {
            weft_spawn_opts o = {.flags = WEFT_TASK_STICKY, .name = "placed"};
            weft_task *h;
            int r = weft_spawn_ex(&h, &o, pl->fn, pl->arg);
            if (r < 0)
                die("place: weft_spawn_ex", r);
            if ((r = weft_join(h, &pl->result)) < 0)
                die("place: weft_join", r);
            return NULL;
        }
        weft_yield();
    }
    return NULL;
}

/* Spawns the scouts for pl; join them with place_join. */
static void place_start(placement *pl, weft_task *scouts[SCOUTS])
{
    atomic_init(&pl->claimed, 0);
    for (int i = 0; i < SCOUTS; i++) {
        int r = weft_spawn(&scouts[i], scout, pl);
        if (r < 0)
            die("place: weft_spawn", r);
    }
}

static void place_join(weft_task *scouts[SCOUTS])
{
    for (int i = 0; i < SCOUTS; i++) {
        int r = weft_join(scouts[i], NULL);
        if (r < 0)
            die("place: join scout", r);
    }
}

/* ---- skew: 10k CPU tasks spawned from one task --------------------------- */

#define SKEW_TASKS   10000L
#define SKEW_TASK_US 100

static uint64_t skew_iters; /* arithmetic steps that take about 100 us */
static atomic_ulong skew_sink;
static atomic_long skew_ran_on[MAX_WORKERS];

static uint64_t cpu_work(uint64_t iters)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (uint64_t i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

/* Best of 5 timings of a fixed loop, scaled to SKEW_TASK_US. */
static void calibrate(void)
{
    const uint64_t probe = 2000000;
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 5; i++) {
        uint64_t t0 = now_ns();
        atomic_fetch_add(&skew_sink, cpu_work(probe));
        uint64_t dt = now_ns() - t0;
        if (dt < best)
            best = dt;
    }
    skew_iters = probe * SKEW_TASK_US * 1000 / (best ? best : 1);
}

static void *cpu_task(void *unused)
{
    (void)unused;
    atomic_fetch_add_explicit(&skew_sink, cpu_work(skew_iters), memory_order_relaxed);
    int w = weft_worker_index();
    if (w >= 0 && w < MAX_WORKERS)
        atomic_fetch_add_explicit(&skew_ran_on[w], 1, memory_order_relaxed);
    return NULL;
}

static void *skew_main(void *unused)
{
    (void)unused;
    static weft_task *hs[SKEW_TASKS];
    unsigned n = weft_worker_count();
    for (unsigned i = 0; i < MAX_WORKERS; i++)
        atomic_store(&skew_ran_on[i], 0);
    uint64_t t0 = now_ns();
    for (long i = 0; i < SKEW_TASKS; i++) {
        int r = weft_spawn(&hs[i], cpu_task, NULL);
        if (r < 0)
            die("skew: weft_spawn", r);
    }
    for (long i = 0; i < SKEW_TASKS; i++) {
        int r = weft_join(hs[i], NULL);
        if (r < 0)
            die("skew: weft_join", r);
    }
    uint64_t dt = now_ns() - t0;
    printf("weft workers=%u skew_total_ms=%.1f\n", n, (double)dt / 1e6);
    printf("weft workers=%u skew_tasks_per_s=%.0f\n", n, (double)SKEW_TASKS * 1e9 / (double)dt);
    for (unsigned i = 0; i < n && i < MAX_WORKERS; i++)
        printf("weft workers=%u skew_tasks_on_worker%u=%ld\n", n, i, atomic_load(&skew_ran_on[i]));
    weft_stats st;
    if (weft_stats_snapshot(&st) == 0)
        printf("weft workers=%u skew_tasks_stolen=%" PRIu64 "\n", n, st.tasks_stolen);
    fflush(stdout);
    return NULL;
}

/* ---- pingpong: two channels of capacity 1 ------------------------------- */

#define PINGPONG_ROUNDS       2000000L
#define PINGPONG_CROSS_ROUNDS 200000L

typedef struct pingpong {
    weft_chan *there, *back;
    long rounds;
    int worker_first, worker_last; /* of the pinger, to report placement */
    int ponger_first, ponger_last;
} pingpong;

static void *pinger(void *arg)
{
    pingpong *pp = arg;
    pp->worker_first = weft_worker_index();
    for (long i = 0; i < pp->rounds; i++) {
        uint64_t v = (uint64_t)i, w;
        int r = weft_chan_send(pp->there, &v);
        if (r == 0)
            r = weft_chan_recv(pp->back, &w);
        if (r < 0)
            die("pingpong: pinger", r);
        if (w != v) {
            fprintf(stderr, "weft_workers: pingpong: sent %" PRIu64 ", got %" PRIu64 "\n", v, w);
            exit(1);
        }
    }
    pp->worker_last = weft_worker_index();
    return NULL;
}

static void *ponger(void *arg)
{
    pingpong *pp = arg;
    pp->ponger_first = weft_worker_index();
    for (long i = 0; i < pp->rounds; i++) {
        uint64_t v;
        int r = weft_chan_recv(pp->there, &v);
        if (r == 0)
            r = weft_chan_send(pp->back, &v);
        if (r < 0)
            die("pingpong: ponger", r);
    }
    pp->ponger_last = weft_worker_index();
    return NULL;
}

static void pingpong_report(const char *key, const pingpong *pp, uint64_t dt)
{
    printf("weft workers=%u %s=%.1f\n", weft_worker_count(), key, (double)dt / (double)pp->rounds);
    printf("# %s: pinger on worker %d..%d, ponger on worker %d..%d\n", key, pp->worker_first,
           pp->worker_last, pp->ponger_first, pp->ponger_last);
}

static void *pingpong_main(void *unused)
{
    (void)unused;
    pingpong pp = {.rounds = PINGPONG_ROUNDS};
    int r = weft_chan_create(&pp.there, sizeof(uint64_t), 1);
    if (r == 0)
        r = weft_chan_create(&pp.back, sizeof(uint64_t), 1);
    if (r < 0)
        die("pingpong: weft_chan_create", r);

    /* As the peers do it: spawn both, the runtime places them. */
    weft_task *a, *b;
    uint64_t t0 = now_ns();
    if ((r = weft_spawn(&a, pinger, &pp)) < 0 || (r = weft_spawn(&b, ponger, &pp)) < 0)
        die("pingpong: weft_spawn", r);
    if ((r = weft_join(a, NULL)) < 0 || (r = weft_join(b, NULL)) < 0)
        die("pingpong: weft_join", r);
    uint64_t dt = now_ns() - t0;
    if (wake_placement == WEFT_WAKE_TO_OWNER) {
        pingpong_report("channel_pingpong_owner_ns_per_roundtrip", &pp, dt);
        weft_chan_destroy(pp.there);
        weft_chan_destroy(pp.back);
        return NULL;
    }
    pingpong_report("channel_pingpong_ns_per_roundtrip", &pp, dt);
    weft_stats st;
    weft_stats_snapshot(&st);
    printf("# channel_pingpong: tasks_moved_on_wake=%" PRIu64 "\n", st.tasks_moved_on_wake);

    /* Across workers: pinger pinned on worker 0, ponger on worker 1. The
     * clock starts when both are in place (the ponger waits for its first
     * element, which the pinger sends only once it runs). */
    pp.rounds = PINGPONG_CROSS_ROUNDS;
    placement pa = {.target = 0, .fn = pinger, .arg = &pp};
    placement pb = {.target = 1, .fn = ponger, .arg = &pp};
    weft_task *sa[SCOUTS], *sb[SCOUTS];
    place_start(&pb, sb);
    while (!atomic_load(&pb.claimed))
        weft_yield();
    t0 = now_ns();
    place_start(&pa, sa);
    place_join(sa);
    dt = now_ns() - t0;
    place_join(sb);
    pingpong_report("channel_pingpong_cross_ns_per_roundtrip", &pp, dt);
    if (pp.worker_first != 0 || pp.ponger_first != 1) {
        fprintf(stderr, "weft_workers: pingpong: placement failed\n");
        exit(1);
    }
    weft_chan_destroy(pp.there);
    weft_chan_destroy(pp.back);
    fflush(stdout);
    return NULL;
}

/* ---- wake: cross-worker wake latency ------------------------------------ */

#define WAKE_SAMPLES 2000
#define WAKE_GAP_NS  300000ull

/* Sorts WAKE_SAMPLES latencies (ns) and prints "<lead> <key>_p50_us=..."
 * and the same for p90, p99 and max. */
static void print_latency(const char *lead, const char *key, uint64_t *lat)
{
    static const double qs[] = {.5, .9, .99, 1};
    static const char *const names[] = {"p50", "p90", "p99", "max"};
    qsort(lat, WAKE_SAMPLES, sizeof lat[0], cmp_u64);
    for (int i = 0; i < 4; i++)
        printf("%s %s_%s_us=%.1f\n", lead, key, names[i], quantile_us(lat, WAKE_SAMPLES, qs[i]));
}

typedef struct wake_bench {
    weft_event ev, ack;
    atomic_ullong sent_ns; /* notifier's clock just before the notify */
    atomic_int done;       /* samples the waiter has taken */
    bool parked;           /* the notifier leaves a gap so that worker 1 parks */
    uint64_t lat[WAKE_SAMPLES];
    int waiter_worker;
} wake_bench;

static void *waiter(void *arg)
{
    wake_bench *wb = arg;
    wb->waiter_worker = weft_worker_index();
    for (int i = 0; i < WAKE_SAMPLES; i++) {
        int r = weft_event_wait(&wb->ev);
        uint64_t t = now_ns();
        if (r < 0)
            die("wake: weft_event_wait", r);
        wb->lat[i] = t - atomic_load(&wb->sent_ns);
        atomic_store(&wb->done, i + 1);
        weft_event_notify_one(&wb->ack);
    }
    return NULL;
}

static void *notifier(void *arg)
{
    wake_bench *wb = arg;
    for (int i = 0; i < WAKE_SAMPLES; i++) {
        if (wb->parked)
            weft_sleep_ns(WAKE_GAP_NS);
        atomic_store(&wb->sent_ns, now_ns());
        weft_event_notify_one(&wb->ev);
        /* Wait parked, not spinning: a busy worker 0 would keep its CPU
         * from a woken worker 1 that the kernel placed there. */
        while (atomic_load(&wb->done) != i + 1)
            weft_event_wait(&wb->ack);
    }
    return NULL;
}

static void wake_round(wake_bench *wb, bool parked, const char *mode)
{
    weft_event_init(&wb->ev);
    weft_event_init(&wb->ack);
    atomic_store(&wb->done, 0);
    wb->parked = parked;
    weft_stats before, after;
    weft_stats_snapshot(&before);

    placement pw = {.target = 1, .fn = waiter, .arg = wb};
    weft_task *sw[SCOUTS];
    place_start(&pw, sw);
    while (!atomic_load(&pw.claimed))
        weft_yield();
    /* The waiter is placed; let it reach its first wait. */
    weft_sleep_ns(1000000);
    placement pn = {.target = 0, .fn = notifier, .arg = wb};
    weft_task *sn[SCOUTS];
    place_start(&pn, sn);
    place_join(sn);
    place_join(sw);
    weft_stats_snapshot(&after);
    if (wb->waiter_worker != 1) {
        fprintf(stderr, "weft_workers: wake: waiter on worker %d\n", wb->waiter_worker);
        exit(1);
    }

    unsigned w = weft_worker_count();
    char lead[64], key[64];
    snprintf(lead, sizeof lead, "weft workers=%u", w);
    snprintf(key, sizeof key, "wake_%s", mode);
    print_latency(lead, key, wb->lat);
    printf("weft workers=%u wake_%s_msg_ring_wakes=%" PRIu64 "\n", w, mode,
           after.wakes_msg_ring - before.wakes_msg_ring);
    printf("weft workers=%u wake_%s_parks=%" PRIu64 "\n", w, mode, after.parks - before.parks);
    fflush(stdout);
}

static void *wake_main(void *unused)
{
    (void)unused;
    static wake_bench wb;
    wake_round(&wb, true, "parked");
    wake_round(&wb, false, "spinning");
    return NULL;
}

/* ---- wake floor: the same exchange between two plain threads ------------- */

typedef struct os_wake {
    int ev, ack; /* eventfds */
    atomic_ullong sent_ns;
    uint64_t lat[WAKE_SAMPLES];
} os_wake;

static void efd_wait(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) != sizeof v)
        if (errno != EINTR)
            die("wake floor: read", -errno);
}

static void efd_signal(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) != sizeof one)
        die("wake floor: write", -errno);
}

static void *os_waiter(void *arg)
{
    os_wake *ow = arg;
    for (int i = 0; i < WAKE_SAMPLES; i++) {
        efd_wait(ow->ev);
        ow->lat[i] = now_ns() - atomic_load(&ow->sent_ns);
        efd_signal(ow->ack);
    }
    return NULL;
}

/* What waking a blocked thread costs here, the floor under any runtime's
 * parked wake: the notifier naps WAKE_GAP_NS, stamps the clock and writes
 * the waiter's eventfd, then blocks on the ack, so both threads are idle
 * between samples, as the workers are in wake_round(parked). */
static void wake_floor(void)
{
    static os_wake ow;
    ow.ev = eventfd(0, EFD_CLOEXEC);
    ow.ack = eventfd(0, EFD_CLOEXEC);
    if (ow.ev < 0 || ow.ack < 0)
        die("wake floor: eventfd", -errno);
    pthread_t t;
    if (pthread_create(&t, NULL, os_waiter, &ow) != 0)
        die("wake floor: pthread_create", -EAGAIN);
    for (int i = 0; i < WAKE_SAMPLES; i++) {
        struct timespec gap = {0, (long)WAKE_GAP_NS};
        nanosleep(&gap, NULL);
        atomic_store(&ow.sent_ns, now_ns());
        efd_signal(ow.ev);
        efd_wait(ow.ack);
    }
    pthread_join(t, NULL);
    close(ow.ev);
    close(ow.ack);
    print_latency("os threads=2", "wake_parked_eventfd", ow.lat);
    fflush(stdout);
}

/* ---- cache line floor: what one line there and back costs --------------- */

#define LINE_ROUNDS 1000000

static _Alignas(64) atomic_int line_turn;

static void *line_other(void *unused)
{
    (void)unused;
    for (int i = 0; i < LINE_ROUNDS; i++) {
        while (atomic_load_explicit(&line_turn, memory_order_acquire) != 1) {
        }
        atomic_store_explicit(&line_turn, 0, memory_order_release);
    }
    return NULL;
}

/* The pinned ping-pong's floor: its two tasks run on two cores, and each
 * message moves at least the lines it is written in between them. */
static void line_floor(void)
{
    atomic_store(&line_turn, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, line_other, NULL) != 0)
        die("line floor: pthread_create", -EAGAIN);
    uint64_t t0 = now_ns();
    for (int i = 0; i < LINE_ROUNDS; i++) {
        atomic_store_explicit(&line_turn, 1, memory_order_release);
        while (atomic_load_explicit(&line_turn, memory_order_acquire) != 0) {
        }
    }
    uint64_t t1 = now_ns();
    pthread_join(t, NULL);
    printf("os threads=2 cache_line_roundtrip_ns=%.1f\n", (double)(t1 - t0) / LINE_ROUNDS);
    fflush(stdout);
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const char *const names[] = {"skew", "pingpong", "wake"};
    enum { NBENCH = 3 };
    bool want[NBENCH] = {0}, any = false;
    unsigned counts[16], ncounts = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-w") == 0 && i + 1 < argc) {
            char *end;
            unsigned long w = strtoul(argv[++i], &end, 10);
            if (*end || w < 1 || w > MAX_WORKERS || ncounts == 16) {
                fprintf(stderr, "weft_workers: -w takes 1..%d (at most 16 times)\n", MAX_WORKERS);
                return 2;
            }
            counts[ncounts++] = (unsigned)w;
            continue;
        }
        int k = 0;
        while (k < NBENCH && strcmp(argv[i], names[k]) != 0)
            k++;
        if (k == NBENCH) {
            fprintf(stderr, "usage: %s [skew|pingpong|wake]... [-w WORKERS]...\n", argv[0]);
            return 2;
        }
        want[k] = any = true;
    }
    if (!any)
        for (int k = 0; k < NBENCH; k++)
            want[k] = true;
    if (!ncounts) {
        counts[0] = 1;
        counts[1] = 2;
        ncounts = 2;
    }

    if (want[0]) {
        calibrate();
        printf("# skew: %" PRIu64 " xorshift steps per task (about %d us)\n", skew_iters,
               SKEW_TASK_US);
        for (unsigned i = 0; i < ncounts; i++)
            run_with_workers(counts[i], skew_main, NULL, "skew");
    }
    if (want[1]) {
        run_with_workers(2, pingpong_main, NULL, "pingpong");
        wake_placement = WEFT_WAKE_TO_OWNER;
        run_with_workers(2, pingpong_main, NULL, "pingpong");
        wake_placement = WEFT_WAKE_TO_WAKER;
        line_floor();
    }
    if (want[2]) {
        run_with_workers(2, wake_main, NULL, "wake");
        wake_floor();
    }
    return 0;
}
