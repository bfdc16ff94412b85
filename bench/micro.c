/* weft_micro: weft's side of the micro-benchmarks that the peers in
 * shared/peers (Boost.Context, Tokio, Go) print, one figure a line in the
 * same style ("weft <key>=<value>"), timed with CLOCK_MONOTONIC.
 *
 *   switch  ns_per_switch: raw weft__ctx_switch ping-pong between main and one
 *           fiber on a 64 KiB malloc'd stack, per switch (two per round trip)
 *   spawn   spawn_join_ns_per_task: spawn 1M tasks (returning their arg),
 *           keep every handle, then join them in order; per task. Then
 *           spawn_join_warm_ns_per_task: the same again in the same
 *           runtime, on the records the first storm left (context)
 *   yield   yield_ns_per_switch: two tasks each weft_yield() 2M times;
 *           total / (2 * rounds)
 *   sleep   sleep_1ms_x100000_{cold,warm}_total_ms: spawn 100k tasks that
 *           each sleep 1 ms, join all; two rounds in one runtime; then
 *           the same in a runtime without the stack helper thread
 *           (sleep_1ms_x100000_no_helper_{cold,warm}_total_ms, context)
 *   sleeplong sleep_1ms_x100000_behind_60s_{cold,warm}_total_ms: the same
 *           with one task sleeping 60 s armed first, as a server's idle
 *           timeouts are; no peer prints it (context)
 *   rss     sleep_1m_tasks_peak_rss_kib / _per_task_bytes: 1M tasks (default
 *           stack size) each sleeping 1 s, measured once all are parked;
 *           runs in a process of its own so that the peak belongs to it
 *   pages   fresh_page_first_touch_ns: no weft in it, the machine's price of
 *           a fresh page: one byte written near the top of each of 100k
 *           slots spaced like default stacks (256 KiB + guard) in a new
 *           MAP_NORESERVE mapping, per page; and that price times 100k, the
 *           floor under any cold round that gives each task a fresh page
 *
 * usage: weft_micro [switch|spawn|yield|sleep|sleeplong|rss|pages]...
 * (none = all)
 * The runtime has one worker on the calling thread (like Tokio's
 * current_thread); WEFT_MICRO_WORKERS=N overrides that, and
 * WEFT_MICRO_WAKE=owner sets weft_config.wake_placement to WEFT_WAKE_TO_OWNER.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

#include "context/switch.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "weft_micro: %s: %s\n", what, weft_strerror(err));
    exit(1);
}

static weft_config bench_config(void)
{
    weft_config cfg = {0};
    const char *w = getenv("WEFT_MICRO_WORKERS");
    cfg.workers = w && *w ? (unsigned)strtoul(w, NULL, 10) : 1;
    const char *m = getenv("WEFT_MICRO_WAKE");
    if (m && strcmp(m, "owner") == 0)
        cfg.wake_placement = WEFT_WAKE_TO_OWNER;
    return cfg;
}

static void run_in_weft_cfg(weft_config cfg, weft_fn fn, void *arg, const char *what)
{
    void *res = NULL;
    int r = weft_run(&cfg, fn, arg, &res);
    if (r < 0)
        die(what, r);
    if (res)
        die(what, (int)(intptr_t)res);
}

static void run_in_weft(weft_fn fn, void *arg, const char *what)
{
    run_in_weft_cfg(bench_config(), fn, arg, what);
}

/* ---- switch: raw context switch ----------------------------------------- */

#define SWITCH_ROUNDS 10000000L
#define SWITCH_STACK  (64 * 1024)

static void *main_sp, *fiber_sp;

static void pingpong_entry(void *transfer)
{
    (void)transfer;
    for (;;)
        weft__ctx_switch(&fiber_sp, main_sp, NULL);
}

static void bench_switch(void)
{
    char *stack = malloc(SWITCH_STACK);
    if (!stack)
        die("switch: malloc", -ENOMEM);
    fiber_sp = weft__ctx_make(stack + SWITCH_STACK, pingpong_entry);
    for (int i = 0; i < 1000; i++) /* warm-up: fault in the stack, train the predictor */
        weft__ctx_switch(&main_sp, fiber_sp, NULL);
    uint64_t t0 = now_ns();
    for (long i = 0; i < SWITCH_ROUNDS; i++)
        weft__ctx_switch(&main_sp, fiber_sp, NULL);
    uint64_t t1 = now_ns();
    printf("weft ns_per_switch=%.2f\n", (double)(t1 - t0) / (2.0 * SWITCH_ROUNDS));
    fflush(stdout);
    /* The fiber stays suspended in its loop; its stack is simply dropped. */
    free(stack);
}

/* ---- spawn: spawn + join -------------------------------------------------- */

#define SPAWN_TASKS 1000000L

static void *return_arg(void *arg)
{
    return arg;
}

/* One storm: spawn SPAWN_TASKS, keep every handle, join them in order.
 * Returns ns per task. */
static double spawn_storm(weft_task **hs)
{
    uint64_t t0 = now_ns();
    for (long i = 0; i < SPAWN_TASKS; i++) {
        int r = weft_spawn(&hs[i], return_arg, (void *)(intptr_t)i);
        if (r < 0)
            die("spawn: weft_spawn", r);
    }
    for (long i = 0; i < SPAWN_TASKS; i++) {
        void *res;
        int r = weft_join(hs[i], &res);
        if (r < 0)
            die("spawn: weft_join", r);
        if ((intptr_t)res != i) {
            fprintf(stderr, "weft_micro: spawn: task %ld returned %ld\n", i, (long)(intptr_t)res);
            exit(1);
        }
    }
    return (double)(now_ns() - t0) / SPAWN_TASKS;
}

/* The first storm is the figure the peers print (theirs run once, in a
 * fresh process): its million live records are fresh memory. The second,
 * in the same runtime, reuses them, and shows what a spawn and a join cost
 * apart from the machine's price of fresh memory (context, no target). */
static void *spawn_main(void *unused)
{
    (void)unused;
    weft_task **hs = malloc(SPAWN_TASKS * sizeof *hs);
    if (!hs)
        return (void *)(intptr_t)-ENOMEM;
    double cold = spawn_storm(hs);
    double warm = spawn_storm(hs);
    printf("weft spawn_join_ns_per_task=%.1f\n", cold);
    printf("weft spawn_join_warm_ns_per_task=%.1f\n", warm);
    fflush(stdout);
    free(hs);
    return NULL;
}

/* ---- yield: two tasks taking turns -------------------------------------- */

#define YIELD_ROUNDS 2000000L

static void *yielder(void *unused)
{
    (void)unused;
    for (long i = 0; i < YIELD_ROUNDS; i++) {
        int r = weft_yield();
        if (r < 0)
            die("yield: weft_yield", r);
    }
    return NULL;
}

static void *yield_main(void *unused)
{
    (void)unused;
    weft_task *a, *b;
    uint64_t t0 = now_ns();
    int r = weft_spawn(&a, yielder, NULL);
    if (r == 0)
        r = weft_spawn(&b, yielder, NULL);
    if (r < 0)
        die("yield: weft_spawn", r);
    if ((r = weft_join(a, NULL)) < 0 || (r = weft_join(b, NULL)) < 0)
        die("yield: weft_join", r);
    uint64_t t1 = now_ns();
    printf("weft yield_ns_per_switch=%.1f\n", (double)(t1 - t0) / (2.0 * YIELD_ROUNDS));
    fflush(stdout);
    return NULL;
}

/* ---- sleep: 100k concurrent 1 ms sleeps, cold then warm ------------------ */

#define SLEEP_TASKS 100000L

static void *sleep_1ms(void *unused)
{
    (void)unused;
    int r = weft_sleep_ns(1000000);
    return r < 0 ? (void *)(intptr_t)r : NULL;
}

/* sleeplong's stand-in for a connection's idle timeout: armed before the
 * short sleeps, it outlives them all and is cancelled at the end. */
#define LONG_SLEEP_NS 60000000000ull

static void *sleep_long(void *unused)
{
    (void)unused;
    int r = weft_sleep_ns(LONG_SLEEP_NS);
    return r < 0 && r != -ECANCELED ? (void *)(intptr_t)r : NULL;
}

typedef struct sleep_variant {
    bool behind_long; /* sleeplong: a 60 s sleeper is armed first */
    const char *prefix;
} sleep_variant;

static void *sleep_main(void *arg)
{
    const sleep_variant *v = arg;
    bool behind_long = v->behind_long;
    weft_task **hs = malloc(SLEEP_TASKS * sizeof *hs);
    if (!hs)
        return (void *)(intptr_t)-ENOMEM;
    weft_task *long_sleeper = NULL;
    if (behind_long) {
        int r = weft_spawn(&long_sleeper, sleep_long, NULL);
        if (r < 0)
            die("sleeplong: weft_spawn", r);
        weft_yield(); /* it runs and arms its timer before the others */
    }
    const char *prefix = v->prefix;
    static const char *const rounds[] = {"cold", "warm"};
    for (int k = 0; k < 2; k++) {
        uint64_t t0 = now_ns();
        for (long i = 0; i < SLEEP_TASKS; i++) {
            int r = weft_spawn(&hs[i], sleep_1ms, NULL);
            if (r < 0)
                die("sleep: weft_spawn", r);
        }
        for (long i = 0; i < SLEEP_TASKS; i++) {
            void *res;
            int r = weft_join(hs[i], &res);
            if (r < 0)
                die("sleep: weft_join", r);
            if (res)
                die("sleep: weft_sleep_ns", (int)(intptr_t)res);
        }
        uint64_t t1 = now_ns();
        printf("weft sleep_1ms_x%ld_%s%s_total_ms=%.1f\n", SLEEP_TASKS, prefix, rounds[k],
               (double)(t1 - t0) / 1e6);
        fflush(stdout);
    }
    free(hs);
    if (long_sleeper) {
        weft_cancel(long_sleeper);
        void *res;
        int r = weft_join(long_sleeper, &res);
        if (r < 0 && r != -ECANCELED)
            die("sleeplong: weft_join", r);
        if (r == 0 && res)
            die("sleeplong: weft_sleep_ns", (int)(intptr_t)res);
    }
    return NULL;
}

/* ---- rss: a million parked sleepers -------------------------------------- */

#define RSS_TASKS    1000000L
#define RSS_SLEEP_NS 1000000000ull

static long rss_started, rss_finished;

/* Reads "Key:   <n> kB" from /proc/self/status; -1 if absent. */
static long proc_status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static void *sleeper_1s(void *unused)
{
    (void)unused;
    rss_started++;
    int r = weft_sleep_ns(RSS_SLEEP_NS);
    rss_finished++;
    return r < 0 ? (void *)(intptr_t)r : NULL;
}

static void *rss_main(void *unused)
{
    (void)unused;
    /* The handle array is the benchmark's, not the runtime's: make it
     * resident before the baseline so it is not counted per task. */
    weft_task **hs = malloc(RSS_TASKS * sizeof *hs);
    if (!hs)
        return (void *)(intptr_t)-ENOMEM;
    memset(hs, 0, RSS_TASKS * sizeof *hs);
    long rss_before = proc_status_kib("VmRSS");

    uint64_t t0 = now_ns();
    for (long i = 0; i < RSS_TASKS; i++) {
        int r = weft_spawn(&hs[i], sleeper_1s, NULL);
        if (r < 0)
            die("rss: weft_spawn", r);
    }
    /* Tasks get their stacks at their first run: wait until every one of
     * them has run and parked in its sleep. */
    while (rss_started < RSS_TASKS) {
        int r = weft_yield();
        if (r < 0)
            die("rss: weft_yield", r);
    }
    uint64_t t1 = now_ns();
    long rss_parked = proc_status_kib("VmRSS");
    long hwm_parked = proc_status_kib("VmHWM");
    long pte_parked = proc_status_kib("VmPTE");
    long finished_early = rss_finished;

    for (long i = 0; i < RSS_TASKS; i++) {
        void *res;
        int r = weft_join(hs[i], &res);
        if (r < 0)
            die("rss: weft_join", r);
        if (res)
            die("rss: weft_sleep_ns", (int)(intptr_t)res);
    }
    long hwm = proc_status_kib("VmHWM");
    /* On stdout, with the figures: run-micro.sh voids the RSS row when
     * some sleepers had ended (and freed their stacks) before the last one
     * parked, since the peak then held fewer than 1M at once. */
    printf("weft sleep_1m_tasks_finished_early=%ld\n", finished_early);
    printf("weft sleep_1m_tasks_peak_rss_kib=%ld\n", hwm);
    printf("weft sleep_1m_tasks_per_task_bytes=%.0f\n",
           (double)(hwm - rss_before) * 1024.0 / RSS_TASKS);
    /* Context, not targets: RSS with all parked, page tables (not in RSS),
     * and how long spawning plus the first runs took. */
    printf("weft sleep_1m_tasks_parked_rss_kib=%ld\n", rss_parked);
    printf("weft sleep_1m_tasks_parked_hwm_kib=%ld\n", hwm_parked);
    printf("weft sleep_1m_tasks_baseline_rss_kib=%ld\n", rss_before);
    printf("weft sleep_1m_tasks_vmpte_kib=%ld\n", pte_parked);
    printf("weft sleep_1m_tasks_spawn_to_parked_ms=%.1f\n", (double)(t1 - t0) / 1e6);
    fflush(stdout);
    free(hs);
    return NULL;
}

/* ---- pages: what a fresh page costs here -------------------------------- */

#define PAGE_SLOTS      100000L
#define PAGE_SLOT_BYTES ((256 + 4) * 1024L)

static void bench_pages(void)
{
    size_t len = (size_t)PAGE_SLOTS * PAGE_SLOT_BYTES;
    char *p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        perror("weft_micro: pages: mmap");
        exit(1);
    }
    uint64_t t0 = now_ns();
    for (long i = 0; i < PAGE_SLOTS; i++)
        p[(i + 1) * PAGE_SLOT_BYTES - 64] = 1;
    uint64_t t1 = now_ns();
    munmap(p, len);
    double per_page = (double)(t1 - t0) / PAGE_SLOTS;
    printf("weft fresh_page_first_touch_ns=%.0f\n", per_page);
    printf("weft fresh_page_x100000_ms=%.1f\n", per_page * PAGE_SLOTS / 1e6);
    fflush(stdout);
}

/* The rss figure is a process-wide high-water mark, so in "all" mode it runs
 * in a fresh process: the other benchmarks' peaks must not leak into it. */
static void bench_rss_in_child(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("weft_micro: fork");
        exit(1);
    }
    if (pid == 0) {
        execl("/proc/self/exe", "weft_micro", "rss", (char *)NULL);
        perror("weft_micro: exec /proc/self/exe");
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "weft_micro: rss benchmark failed\n");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    static const char *const names[] = {"switch", "spawn", "yield",    "sleep",
                                        "rss",    "pages", "sleeplong"};
    enum { NBENCH = 7 };
    bool want[NBENCH] = {0};
    bool any = false;
    for (int i = 1; i < argc; i++) {
        int k = 0;
        while (k < NBENCH && strcmp(argv[i], names[k]) != 0)
            k++;
        if (k == NBENCH) {
            fprintf(stderr, "usage: %s [switch|spawn|yield|sleep|sleeplong|rss|pages]...\n",
                    argv[0]);
            return 2;
        }
        want[k] = any = true;
    }
    if (!any)
        for (int k = 0; k < NBENCH; k++)
            want[k] = true;

    if (want[0])
        bench_switch();
    if (want[1])
        run_in_weft(spawn_main, NULL, "spawn");
    if (want[2])
        run_in_weft(yield_main, NULL, "yield");
    if (want[3]) {
        /* The stack helper (on by default) faults stacks in on another
         * CPU; Tokio's current_thread has one. The same rounds without it,
         * as context. */
        static const sleep_variant plain = {false, ""}, one_cpu = {false, "no_helper_"};
        run_in_weft(sleep_main, (void *)&plain, "sleep");
        weft_config cfg = bench_config();
        cfg.no_stack_helper = true;
        run_in_weft_cfg(cfg, sleep_main, (void *)&one_cpu, "sleep (no stack helper)");
    }
    if (want[6]) {
        static const sleep_variant behind = {true, "behind_60s_"};
        run_in_weft(sleep_main, (void *)&behind, "sleeplong");
    }
    if (want[4]) {
        if (argc == 2) /* "weft_micro rss" alone: this process is fresh */
            run_in_weft(rss_main, NULL, "rss");
        else
            bench_rss_in_child();
    }
    if (want[5]) /* last: it leaves nothing behind for the others to reuse */
        bench_pages();
    return 0;
}
