/* weft_io_bench: weft's side of the I/O benchmarks (issue 4), one figure a
 * line in the style of weft_micro ("weft <key>=<value>"), timed with
 * CLOCK_MONOTONIC. bench/run-io.sh runs it beside the peers (raw liburing
 * NOPs, fio, and for the examples the echo peers, nginx).
 *
 *   nop   nop_1task_ns_per_op: one task calls weft_nop() NOP_OPS times;
 *         nop_64tasks_ns_per_op: 64 tasks each call weft_nop() NOP_OPS / 64
 *         times, timed from the first spawn to the last join; both are
 *         total wall time / total ops, best of NOP_RUNS runs (each run's
 *         figure is printed too, as context)
 *   read  read_4k_rand_iops: READ_TASKS tasks each weft_read() 4 KiB at
 *         random 4 KiB-aligned offsets of FILE (buffered: page-cache reads,
 *         no O_DIRECT) until SECONDS have passed; total reads / the time
 *         from the first spawn to the last join
 *
 * usage: weft_io_bench nop [1|64]                    (1 or 64 tasks only; default both)
 *        weft_io_bench read FILE [SECONDS] [TASKS]     (defaults 5 and 32)
 *        weft_io_bench                                 (nop only)
 * The runtime has one worker on the calling thread; the timing starts inside
 * the main task, so ring set-up is not counted.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

static void die(const char *what, int err)
{
    fprintf(stderr, "weft_io_bench: %s: %s\n", what, weft_strerror(err));
    exit(1);
}

static void run_in_weft(weft_fn fn, void *arg, const char *what)
{
    weft_config cfg = {0};
    cfg.workers = 1;
    void *res = NULL;
    int r = weft_run(&cfg, fn, arg, &res);
    if (r < 0)
        die(what, r);
    if (res)
        die(what, (int)(intptr_t)res);
}

/* ---- nop: per-op overhead ------------------------------------------------ */

#define NOP_OPS    2000000L
#define NOP_WARMUP 20000L
#define NOP_RUNS   3
#define NOP_TASKS  64

static void *nop_loop(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++) {
        int r = weft_nop();
        if (r < 0)
            return (void *)(intptr_t)r;
    }
    return NULL;
}

/* Spawns ntasks loops of ops / ntasks nops each and joins them; returns the
 * wall time in ns. */
static uint64_t nop_round(int ntasks, long ops)
{
    weft_task *hs[NOP_TASKS];
    long per = ops / ntasks;
    uint64_t t0 = weft_now_ns();
    for (int i = 0; i < ntasks; i++) {
        int r = weft_spawn(&hs[i], nop_loop, (void *)(intptr_t)per);
        if (r < 0)
            die("nop: weft_spawn", r);
    }
    for (int i = 0; i < ntasks; i++) {
        void *res;
        int r = weft_join(hs[i], &res);
        if (r < 0)
            die("nop: weft_join", r);
        if (res)
            die("nop: weft_nop", (int)(intptr_t)res);
    }
    return weft_now_ns() - t0;
}

static int nop_which; /* 0 = both, else 1 or NOP_TASKS: only that one */

/* 1 task: the main task itself loops, as uring_nop's main loop does. */
static void nop_one(void)
{
    void *res = nop_loop((void *)(intptr_t)NOP_WARMUP);
    if (res)
        die("nop: weft_nop", (int)(intptr_t)res);
    double best = 0;
    for (int k = 0; k < NOP_RUNS; k++) {
        uint64_t t0 = weft_now_ns();
        res = nop_loop((void *)(intptr_t)NOP_OPS);
        uint64_t dt = weft_now_ns() - t0;
        if (res)
            die("nop: weft_nop", (int)(intptr_t)res);
        double ns = (double)dt / NOP_OPS;
        printf("weft nop_1task_run%d_ns_per_op=%.1f\n", k + 1, ns);
        if (k == 0 || ns < best)
            best = ns;
    }
    printf("weft nop_1task_ns_per_op=%.1f\n", best);
    fflush(stdout);
}

/* 64 tasks: the ops of one scheduling round go to the kernel together. */
static void nop_many(void)
{
    (void)nop_round(NOP_TASKS, NOP_WARMUP * NOP_TASKS / 16);
    long total = NOP_OPS / NOP_TASKS * NOP_TASKS;
    double best = 0;
    for (int k = 0; k < NOP_RUNS; k++) {
        double ns = (double)nop_round(NOP_TASKS, total) / (double)total;
        printf("weft nop_%dtasks_run%d_ns_per_op=%.1f\n", NOP_TASKS, k + 1, ns);
        if (k == 0 || ns < best)
            best = ns;
    }
    printf("weft nop_%dtasks_ns_per_op=%.1f\n", NOP_TASKS, best);
    fflush(stdout);
}

static void *nop_main(void *unused)
{
    (void)unused;
    if (nop_which != NOP_TASKS)
        nop_one();
    if (nop_which != 1)
        nop_many();
    return NULL;
}

/* ---- read: 4 KiB random buffered reads ----------------------------------- */

#define READ_BLOCK     4096
#define READ_MAX_TASKS 1024

static struct {
    const char *path;
    double seconds;
    int tasks;
    int fd;
    uint64_t blocks;
    uint64_t deadline;
    uint64_t reads;
    uint64_t short_reads;
} rd;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void *reader(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x2545f4914f6cdd1dull + 1;
    void *buf;
    if (posix_memalign(&buf, READ_BLOCK, READ_BLOCK) != 0)
        return (void *)(intptr_t)-ENOMEM;
    uint64_t n = 0, shorts = 0;
    void *ret = NULL;
    /* The clock is read every 64 reads: ~10 µs apart at these rates. */
    for (;;) {
        if ((n & 63) == 0 && weft_now_ns() >= rd.deadline)
            break;
        uint64_t off = (splitmix64(&seed) % rd.blocks) * READ_BLOCK;
        ssize_t r = weft_read(rd.fd, buf, READ_BLOCK, off);
        if (r < 0) {
            ret = (void *)(intptr_t)r;
            break;
        }
        if (r != READ_BLOCK)
            shorts++;
        n++;
    }
    free(buf);
    rd.reads += n; /* one worker: no race */
    rd.short_reads += shorts;
    return ret;
}

static void *read_main(void *unused)
{
    (void)unused;
    weft_task *hs[READ_MAX_TASKS];
    uint64_t t0 = weft_now_ns();
    rd.deadline = t0 + (uint64_t)(rd.seconds * 1e9);
    for (int i = 0; i < rd.tasks; i++) {
        int r = weft_spawn(&hs[i], reader, (void *)(intptr_t)(i + 1));
        if (r < 0)
            die("read: weft_spawn", r);
    }
    for (int i = 0; i < rd.tasks; i++) {
        void *res;
        int r = weft_join(hs[i], &res);
        if (r < 0)
            die("read: weft_join", r);
        if (res)
            die("read: weft_read", (int)(intptr_t)res);
    }
    uint64_t dt = weft_now_ns() - t0;
    printf("weft read_4k_rand_tasks=%d\n", rd.tasks);
    printf("weft read_4k_rand_file_mib=%" PRIu64 "\n", rd.blocks * READ_BLOCK >> 20);
    printf("weft read_4k_rand_seconds=%.3f\n", (double)dt / 1e9);
    printf("weft read_4k_rand_reads=%" PRIu64 "\n", rd.reads);
    printf("weft read_4k_rand_short_reads=%" PRIu64 "\n", rd.short_reads);
    printf("weft read_4k_rand_ns_per_read=%.1f\n", (double)dt / (double)rd.reads);
    printf("weft read_4k_rand_iops=%.0f\n", (double)rd.reads * 1e9 / (double)dt);
    fflush(stdout);
    return NULL;
}

static void bench_read(void)
{
    rd.fd = open(rd.path, O_RDONLY | O_CLOEXEC);
    if (rd.fd < 0)
        die(rd.path, -errno);
    struct stat st;
    if (fstat(rd.fd, &st) < 0)
        die("fstat", -errno);
    rd.blocks = (uint64_t)st.st_size / READ_BLOCK;
    if (rd.blocks == 0) {
        fprintf(stderr, "weft_io_bench: %s is smaller than 4 KiB\n", rd.path);
        exit(1);
    }
    run_in_weft(read_main, NULL, "read");
    close(rd.fd);
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [nop [1|64]]\n"
            "       %s read FILE [SECONDS] [TASKS]   (defaults 5 and 32)\n",
            argv0, argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "nop") == 0) {
        if (argc > 3)
            usage(argv[0]);
        if (argc == 3) {
            nop_which = atoi(argv[2]);
            if (nop_which != 1 && nop_which != NOP_TASKS)
                usage(argv[0]);
        }
        run_in_weft(nop_main, NULL, "nop");
        return 0;
    }
    if (strcmp(argv[1], "read") != 0 || argc < 3 || argc > 5)
        usage(argv[0]);
    rd.path = argv[2];
    rd.seconds = argc > 3 ? atof(argv[3]) : 5.0;
    rd.tasks = argc > 4 ? atoi(argv[4]) : 32;
    if (rd.seconds <= 0 || rd.tasks < 1 || rd.tasks > READ_MAX_TASKS)
        usage(argv[0]);
    bench_read();
    return 0;
}
