/* Fault injection: fail the Nth allocation or mapping and check that the
 * failing call reports -ENOMEM and that nothing is leaked (the counters and
 * the open descriptors say so here; LeakSanitizer says so in the asan
 * build). */
#include "test.h"

#include <weft/executor.h>

#include "common/fault.h"
#include "context/stack.h"
#include "runtime/worker.h"

/* Spawns h[from..max) (each returns its index) until a spawn fails; returns
 * how many handles h holds then, with the failure in *r (0 if none). */
static int spawn_until_failure(weft_task **h, int from, int max, int *r)
{
    int n = from;
    *r = 0;
    while (n < max && (*r = weft_spawn(&h[n], return_arg, (void *)(intptr_t)n)) == 0)
        n++;
    return n;
}

/* Joins h[0..n) in order; each must return its index. */
static void join_in_order(weft_task **h, int n)
{
    for (int i = 0; i < n; i++) {
        void *res;
        ASSERT_OK(weft_join(h[i], &res));
        ASSERT_EQ((intptr_t)res, i);
    }
}

static int discards;
static void *discarded_arg;

static void count_discard(void *arg)
{
    discards++;
    discarded_arg = arg;
}

static void *main_spawn_alloc_fails(void *arg)
{
    weft_stats before, after;
    ASSERT_OK(weft_stats_snapshot(&before));
    /* A named task needs an allocation for its name. */
    weft_spawn_opts named = {.name = "n"};
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    weft_task *t = (weft_task *)1;
    ASSERT_EQ(weft_spawn_ex(&t, &named, return_arg, NULL), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT(t == NULL);
    ASSERT_OK(weft_stats_snapshot(&after));
    ASSERT_EQ(after.tasks_spawned, before.tasks_spawned);
    ASSERT_EQ(after.tasks_live, before.tasks_live);
    /* So does a discard callback (the record's extension): the name and
     * the extension each fail in turn, and the callback is not called, as
     * the spawn's error says the task does not exist. */
    named.discard = count_discard;
    for (uint64_t nth = 1; nth <= 2; nth++) {
        weft__fault_arm(WEFT_FAULT_ALLOC, nth);
        ASSERT_EQ(weft_spawn_ex(&t, &named, return_arg, NULL), -ENOMEM);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    }
    ASSERT_EQ(discards, 0);
    ASSERT_OK(weft_stats_snapshot(&after));
    ASSERT_EQ(after.tasks_spawned, before.tasks_spawned);

    /* Unnamed tasks come from the record slab: the spawn that needs a new
     * slab chunk is the one that fails. */
    enum { MAX = 4096 };
    static weft_task *h[MAX];
    int r;
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    int n = spawn_until_failure(h, 0, MAX, &r);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_EQ(r, -ENOMEM);
    ASSERT(h[n] == NULL);
    ASSERT_OK(weft_stats_snapshot(&after));
    ASSERT_EQ(after.tasks_live, before.tasks_live + n);
    /* And the runtime carries on: the failed spawn left nothing behind. */
    join_in_order(h, n);
    ASSERT_OK(weft_spawn(&t, return_arg, (void *)4));
    void *res;
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((intptr_t)res, 4);
    return NULL;
}
TEST(spawn_when_allocation_fails)
{
    run_main_one_worker(NULL, main_spawn_alloc_fails, NULL); /* faults count process-wide */
}

static void *main_spawn_mmap_fails(void *arg)
{
    weft_stats before, after;
    ASSERT_OK(weft_stats_snapshot(&before));
    /* A stack class never used yet needs a fresh mapping. */
    weft_spawn_opts big = {.stack_size = 8u << 20};
    weft__fault_arm(WEFT_FAULT_MMAP, 1);
    weft_task *t;
    ASSERT_EQ(weft_spawn_ex(&t, &big, return_arg, NULL), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_MMAP, 0);
    ASSERT_OK(weft_stats_snapshot(&after));
    ASSERT_EQ(after.tasks_live, before.tasks_live);
    ASSERT_EQ(after.stack_bytes_mapped, before.stack_bytes_mapped);
    ASSERT_OK(weft_spawn_ex(&t, &big, return_arg, NULL));
    ASSERT_OK(weft_join(t, NULL));
    return NULL;
}
TEST(spawn_when_stacks_cannot_be_mapped)
{
    run_main_one_worker(NULL, main_spawn_mmap_fails, NULL); /* faults count process-wide */
}

/* Past the first 2 MiB of records a worker maps 2 MiB chunks for huge
 * pages; when that mapping fails it falls back to a malloc'd chunk, and when
 * both fail the spawn reports -ENOMEM. */
static void *main_record_storm_mmap_fails(void *arg)
{
    enum { FIRST = 12000, MAX = 40000 };
    static weft_task *h[MAX];
    weft_stats before, after;
    ASSERT_OK(weft_stats_snapshot(&before));
    weft__fault_arm(WEFT_FAULT_MMAP, 1);
    int r;
    ASSERT_EQ(spawn_until_failure(h, 0, FIRST, &r), FIRST);
    ASSERT_OK(r);
    /* The huge-chunk mapping was tried, failed, and spawning went on. */
    ASSERT_GE(weft__fault_count(WEFT_FAULT_MMAP), 1);
    weft__fault_arm(WEFT_FAULT_MMAP, 1);
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    int n = spawn_until_failure(h, FIRST, MAX, &r);
    uint64_t mapped = weft__fault_count(WEFT_FAULT_MMAP);
    weft__fault_arm(WEFT_FAULT_MMAP, 0);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_EQ(r, -ENOMEM);
    ASSERT_EQ(mapped, 1); /* the fallback was tried only after the mapping failed */
    ASSERT(h[n] == NULL);
    ASSERT_OK(weft_stats_snapshot(&after));
    ASSERT_EQ(after.tasks_live, before.tasks_live + n);
    join_in_order(h, n);
    return NULL;
}
TEST(record_storm_when_huge_chunk_cannot_be_mapped)
{
    run_main_one_worker(NULL, main_record_storm_mmap_fails, NULL); /* faults count process-wide */
}

static void *main_defer_fails(void *arg)
{
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    ASSERT_EQ(weft_defer(free, NULL), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    ASSERT_EQ(weft_deadline_push(1), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    return NULL;
}
TEST(defer_and_deadline_when_allocation_fails)
{
    run_main_one_worker(NULL, main_defer_fails, NULL); /* faults count process-wide */
}

static void *sleepy_child(void *arg)
{
    return (void *)(intptr_t)weft_sleep_ns(1000000);
}

static void *busy_main(void *arg)
{
    for (int i = 0; i < 100; i++) {
        int r = weft_spawn(NULL, sleepy_child, NULL);
        if (r < 0)
            return (void *)(intptr_t)r;
    }
    return NULL;
}

/* Fails each allocation or mapping of a whole weft_run in turn, from the
 * first until a run needs no more: every one must fail cleanly or succeed. */
static int sweep(weft__fault_kind kind)
{
    int failures = 0;
    int fds = count_fds();
    for (uint64_t n = 1; n < 10000; n++) {
        weft__fault_arm(kind, n);
        void *res = NULL;
        int r = weft_run(NULL, busy_main, NULL, &res);
        uint64_t seen = weft__fault_count(kind);
        weft__fault_arm(kind, 0);
        if (r < 0 || res != NULL) {
            ASSERT(r == -ENOMEM || (intptr_t)res == -ENOMEM);
            failures++;
        }
        check_sweep_point(n, fds);
        if (seen < n)
            break; /* the run needed fewer than n: every point was covered */
    }
    printf("  %d failure points, each failed cleanly\n", failures);
    return failures;
}

TEST(every_allocation_of_a_run_can_fail)
{
    /* At least: the runtime, its worker, a record chunk, a timer heap. */
    ASSERT_GE(sweep(WEFT_FAULT_ALLOC), 4);
}

TEST(every_mapping_of_a_run_can_fail)
{
    /* At least: the signal stack and a stack slab. */
    ASSERT_GE(sweep(WEFT_FAULT_MMAP), 2);
}

/* A spawn reserves a stack on its own worker, but a task that another
 * worker takes before its first run gets its stack there, from a pool that
 * may have none to give. Played here on one worker: every stack its pool
 * can give without a new mapping is taken, and that mapping fails. The
 * task ends without running, its join reports -ENOMEM, and it is counted
 * with the cancelled. */
static void *main_first_run_without_stack(void *arg)
{
    weft__worker *w = weft__worker_self();
    int cls = w->rt->default_stack_class;
    weft_stats before, after;
    ASSERT_OK(weft_stats_snapshot(&before));
    weft_task *t;
    weft_spawn_opts o = {.discard = count_discard};
    discards = 0;
    ASSERT_OK(weft_spawn_ex(&t, &o, return_arg, (void *)7));
    enum { MAX_HELD = 4096 };
    static weft__stack *held[MAX_HELD];
    int n = 0;
    weft__fault_arm(WEFT_FAULT_MMAP, 1);
    for (;;) {
        ASSERT_LT(n, MAX_HELD);
        int r = weft__stack_acquire(&w->stacks, cls, &held[n]);
        if (r < 0) {
            ASSERT_EQ(r, -ENOMEM);
            break;
        }
        n++;
    }
    weft__fault_arm(WEFT_FAULT_MMAP, 1); /* the task's first run maps next */
    void *res = (void *)1;
    ASSERT_EQ(weft_join(t, &res), -ENOMEM);
    ASSERT_EQ(weft__fault_count(WEFT_FAULT_MMAP), 1);
    weft__fault_arm(WEFT_FAULT_MMAP, 0);
    ASSERT(res == NULL);
    /* Its argument went back through the spawn's discard callback. */
    ASSERT_EQ(discards, 1);
    ASSERT(discarded_arg == (void *)7);
    for (int i = 0; i < n; i++)
        weft__stack_release(&w->stacks, held[i]);
    ASSERT_OK(weft_stats_snapshot(&after));
    ASSERT_EQ(after.tasks_live, before.tasks_live);
    ASSERT_EQ(after.tasks_cancelled, before.tasks_cancelled + 1);
    ASSERT_EQ(after.stacks_live, before.stacks_live);
    /* The runtime carries on. */
    ASSERT_OK(weft_spawn(&t, return_arg, (void *)4));
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((intptr_t)res, 4);
    return NULL;
}
TEST(first_run_without_a_stack_reports_enomem)
{
    /* One worker: with two, the other could take the task and give it a
     * stack of its own. */
    /* And no stack helper: a slab it made ahead would be a stack after
     * all, and the fault points count only the worker's mappings. */
    weft_config cfg = {.no_stack_helper = true};
    run_main_one_worker(&cfg, main_first_run_without_stack, NULL);
}

/* A wait under a deadline whose timer finds no memory must still end at
 * the deadline. Four long sleepers fill the four timer lanes with later
 * deadlines, so the wait's timer needs the heap, whose first allocation
 * fails: it goes to the spill (io/timer.h) and fires from there. */
static void *sleep_for_arg_s(void *arg)
{
    return (void *)(intptr_t)weft_sleep_ns((uint64_t)(intptr_t)arg * 1000000000);
}

static void *main_deadline_without_timer(void *arg)
{
    (void)arg;
    weft_task *sleepers[4];
    for (int i = 0; i < 4; i++) /* 40 s, 30 s, 20 s, 10 s: one lane each */
        ASSERT_OK(weft_spawn(&sleepers[i], sleep_for_arg_s, (void *)(intptr_t)(40 - 10 * i)));
    weft_stats st;
    do {
        ASSERT_OK(weft_yield());
        ASSERT_OK(weft_stats_snapshot(&st));
    } while (st.timers_armed < 4);
    weft_event never = WEFT_EVENT_INIT;
    /* On a loaded machine the OS may hold this thread past the deadline
     * before the wait begins; the wait then fails at entry, arming no
     * timer, which is not the case under test: that attempt is made again. */
    for (int attempt = 0;; attempt++) {
        uint64_t deadline = weft_now_ns() + 5000000;
        ASSERT_OK(weft_deadline_push(deadline));
        weft__fault_arm(WEFT_FAULT_ALLOC, 1);
        int r = weft_event_wait(&never);
        uint64_t allocs = weft__fault_count(WEFT_FAULT_ALLOC);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
        ASSERT_OK(weft_deadline_pop());
        ASSERT_EQ(r, -ETIMEDOUT);
        if (allocs == 0 && attempt < 10) {
            printf("note: the deadline passed before the wait began; trying again\n");
            continue;
        }
        ASSERT_GE(allocs, 1); /* the failure was reached */
        break;
    }
    for (int i = 0; i < 4; i++) {
        weft_cancel(sleepers[i]);
        weft_join(sleepers[i], NULL);
    }
    return NULL;
}
TEST(deadline_whose_timer_cannot_be_armed_still_ends_the_wait)
{
    run_main_one_worker(NULL, main_deadline_without_timer, NULL);
}

/* ---- a ring that fails ----------------------------------------------------- */

static void *sleep_a_while(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_sleep_ns(1000000));
    return NULL;
}

static unsigned failing_workers;

static void run_with_failing_ring(void)
{
    weft_config cfg = {.workers = failing_workers};
    weft__fault_arm(WEFT_FAULT_RING, 1);
    int r = weft_run(&cfg, sleep_a_while, NULL, NULL);
    fprintf(stderr, "weft_run returned %d\n", r); /* must not get here */
}

/* The task is parked on a timer when the worker's wait fails: it can never
 * be finished, so the run stops the process with the reason, rather than
 * freeing memory the kernel may write or waiting for ever. */
TEST(a_ring_that_fails_stops_the_process_with_its_error)
{
    failing_workers = 1;
    expect_abort_with(run_with_failing_ring,
                      "worker 0: waiting on its io_uring failed (Input/output error)");
    failing_workers = 2;
    expect_abort_with(run_with_failing_ring, "waiting on its io_uring failed (Input/output error)");
}

/* Fails each allocation and mapping of an executor's creation in turn,
 * with signals to catch (caught last): a failed create leaves nothing
 * behind, its worker's ring included (left on the list of weft's rings
 * and freed, it was read after the free by the next ring's set-up). */
TEST(a_failed_executor_create_undoes_everything)
{
    static const int caught[] = {SIGUSR1};
    weft_config cfg = {.catch_signals = caught, .ncatch_signals = 1};
    weft__fault_kind kinds[] = {WEFT_FAULT_ALLOC, WEFT_FAULT_MMAP};
    stack_t alt_before; /* a sanitizer may have one of its own */
    ASSERT_OK(sigaltstack(NULL, &alt_before));
    for (unsigned k = 0; k < 2; k++) {
        int fds = count_fds();
        int failures = 0;
        for (uint64_t n = 1; n < 1000; n++) {
            weft_executor *ex = NULL;
            weft__fault_arm(kinds[k], n);
            int r = weft_executor_create(&ex, &cfg);
            uint64_t seen = weft__fault_count(kinds[k]);
            weft__fault_arm(kinds[k], 0);
            if (r == 0) {
                weft_executor_destroy(ex);
                if (seen < n)
                    break; /* it needed fewer than n: every point is done */
                continue;
            }
            ASSERT(ex == NULL);
            failures++;
            check_sweep_point(n, fds);
            struct sigaction now;
            ASSERT_OK(sigaction(SIGUSR1, NULL, &now));
            ASSERT(now.sa_handler == SIG_DFL);
            stack_t ss;
            ASSERT_OK(sigaltstack(NULL, &ss));
            ASSERT_EQ(ss.ss_flags, alt_before.ss_flags);
            ASSERT(ss.ss_sp == alt_before.ss_sp);
        }
        ASSERT_GT(failures, 0);
    }
    /* And the next one works. */
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, &cfg));
    weft_executor_destroy(ex);
}

/* An embedded executor hands the failure to its host instead; once the ring
 * works again (here: the fault is disarmed), the tasks finish. */
static void *read_one_byte(void *arg)
{
    char c;
    ASSERT_EQ(weft_read((int)(intptr_t)arg, &c, 1, 0), 1);
    return NULL;
}

TEST(an_executor_reports_a_failed_ring_to_its_host)
{
    int p[2];
    ASSERT_OK(pipe(p));
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    weft_task *t;
    ASSERT_OK(weft_executor_spawn(ex, &t, NULL, read_one_byte, (void *)(intptr_t)p[0]));
    ASSERT_GE(weft_executor_run(ex, 0), 0); /* the read is in flight */
    weft__fault_arm(WEFT_FAULT_RING, 1);
    int64_t r = weft_executor_run(ex, 0);
    weft__fault_arm(WEFT_FAULT_RING, 0);
    ASSERT_EQ(r, -EIO);
    ASSERT_EQ(weft_executor_tasks(ex), 1);
    ASSERT_EQ(write(p[1], "x", 1), 1);
    while (weft_executor_tasks(ex))
        ASSERT_GE(weft_executor_run(ex, 0), 0);
    ASSERT(weft_task_finished(t));
    weft_detach(t);
    weft_executor_destroy(ex);
    close(p[0]);
    close(p[1]);
}

/* No SQE can be had for the whole run, so the worker's eventfd read is
 * never armed: a wake from another thread (here the blocking pool's, for
 * a finished job) only writes the eventfd. The worker, parked with no
 * timer, used to sleep through it for ever; it now looks again every
 * millisecond while the read is not armed. */
static void *main_blocking_without_sqes(void *arg)
{
    (void)arg;
    void *res = NULL;
    ASSERT_OK(weft_spawn_blocking(return_arg, (void *)9, &res));
    ASSERT(res == (void *)9);
    ASSERT_GT(weft__fault_count(WEFT_FAULT_SQE), 0);
    return NULL;
}
TEST(a_wake_reaches_a_worker_that_never_had_an_sqe)
{
    weft__fault_arm_from(WEFT_FAULT_SQE, 1);
    run_main_one_worker(NULL, main_blocking_without_sqes, NULL);
    weft__fault_arm(WEFT_FAULT_SQE, 0);
}

TEST_MAIN(CASE(spawn_when_allocation_fails), CASE(a_failed_executor_create_undoes_everything),
          CASE(spawn_when_stacks_cannot_be_mapped), CASE(first_run_without_a_stack_reports_enomem),
          CASE(record_storm_when_huge_chunk_cannot_be_mapped),
          CASE(defer_and_deadline_when_allocation_fails), CASE(every_allocation_of_a_run_can_fail),
          CASE(every_mapping_of_a_run_can_fail),
          CASE(deadline_whose_timer_cannot_be_armed_still_ends_the_wait),
          CASE(a_ring_that_fails_stops_the_process_with_its_error),
          CASE(an_executor_reports_a_failed_ring_to_its_host),
          CASE(a_wake_reaches_a_worker_that_never_had_an_sqe))
