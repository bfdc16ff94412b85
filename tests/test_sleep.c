/* Timers: accuracy (with tolerance), ordering, many sleepers; the run
 * clock that charges task runs. */
#include "test.h"

#include <pthread.h>
#include <sched.h>

#include "common/runclock.h"

/* Generous: CI machines are shared and noisy. We check that a sleep is never
 * early and not absurdly late. */
#define LATE_TOLERANCE_NS (250ull * 1000000)

static void *main_accuracy(void *arg)
{
    static const uint64_t durations[] = {1000, 100000, 1000000, 10000000, 50000000};
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        uint64_t t0 = weft_now_ns();
        ASSERT_OK(weft_sleep_ns(durations[i]));
        uint64_t took = weft_now_ns() - t0;
        ASSERT_GE(took, durations[i]);
        ASSERT_LT(took, durations[i] + LATE_TOLERANCE_NS);
    }
    uint64_t until = weft_now_ns() + 3000000;
    ASSERT_OK(weft_sleep_until(until));
    ASSERT_GE(weft_now_ns(), until);
    ASSERT_OK(weft_sleep_until(0)); /* in the past: returns at once */
    ASSERT_OK(weft_sleep_ns(0));
    return NULL;
}
TEST(sleep_is_never_early)
{
    run_main(NULL, main_accuracy, NULL);
}

static int wake_order[16];
static int nwoken, nstarted;
static uint64_t order_base;

/* Sleeps until base + 20 ms + (16 - i) * 2 ms, where base is read once all
 * 16 tasks run: a task's first run can be slow (under TSan it creates a
 * fiber, milliseconds here), and deadlines counted from each task's own
 * start would then order them by start as much as by length. */
static void *sleep_then_note(void *arg)
{
    int i = (int)(intptr_t)arg;
    if (++nstarted == 16)
        order_base = weft_now_ns();
    while (nstarted < 16)
        ASSERT_OK(weft_yield());
    ASSERT_OK(weft_sleep_until(order_base + 20000000 + (uint64_t)(16 - i) * 2000000));
    wake_order[nwoken++] = i;
    return NULL;
}

static void *main_order(void *arg)
{
    nwoken = nstarted = 0;
    for (int i = 0; i < 16; i++)
        ASSERT_OK(weft_spawn(NULL, sleep_then_note, (void *)(intptr_t)i));
    ASSERT_OK(weft_wait_children());
    ASSERT_EQ(nwoken, 16);
    for (int i = 0; i < 16; i++)
        ASSERT_EQ(wake_order[i], 15 - i);
    return NULL;
}
TEST(sleepers_wake_in_deadline_order)
{
    run_main_one_worker(NULL, main_order, NULL);
}

static _Atomic int done_count;

static void *short_sleep(void *arg)
{
    ASSERT_OK(weft_sleep_ns(1000000 + (uint64_t)(intptr_t)arg % 7 * 100000));
    done_count++;
    return NULL;
}

static void *main_many(void *arg)
{
    int n = (int)(intptr_t)arg;
    done_count = 0;
    for (int i = 0; i < n; i++)
        ASSERT_OK(weft_spawn(NULL, short_sleep, (void *)(intptr_t)i));
    ASSERT_OK(weft_wait_children());
    ASSERT_EQ(done_count, n);
    weft_stats st;
    ASSERT_OK(weft_stats_snapshot(&st));
    ASSERT_EQ(st.timers_armed, 0);
    return NULL;
}
TEST(hundred_thousand_sleepers)
{
#ifdef __SANITIZE_THREAD__
    /* TSan counts each task's fiber as a thread and stops at 8128. */
    run_main(NULL, main_many, (void *)(intptr_t)4000);
#else
    run_main(NULL, main_many, (void *)(intptr_t)100000);
#endif
}

static void *canceller(void *arg)
{
    weft_task **ts = arg;
    for (int i = 0; i < 1000; i += 2)
        ASSERT_OK(weft_cancel(ts[i]));
    return NULL;
}

static void *long_sleep(void *arg)
{
    /* Those to be cancelled sleep an hour, so that a slow machine (ASan on
     * a loaded CI box) cannot let them finish first; the others 20 ms. */
    intptr_t i = (intptr_t)arg;
    uint64_t ns = i % 2 == 0 ? 3600ull * 1000000000 : 20000000 + (uint64_t)i * 1000;
    int r = weft_sleep_ns(ns);
    return (void *)(intptr_t)r;
}

static void *main_cancel_half(void *arg)
{
    static weft_task *ts[1000];
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(weft_spawn(&ts[i], long_sleep, (void *)(intptr_t)i));
    ASSERT_OK(weft_yield());
    weft_task *c;
    ASSERT_OK(weft_spawn(&c, canceller, ts));
    ASSERT_OK(weft_join(c, NULL));
    for (int i = 0; i < 1000; i++) {
        void *r;
        int rc = weft_join(ts[i], &r);
        if (i % 2 == 0) {
            ASSERT_EQ(rc, -ECANCELED);
        } else {
            ASSERT_EQ(rc, 0);
            ASSERT_EQ((intptr_t)r, 0);
        }
    }
    return NULL;
}
TEST(cancelling_sleepers_removes_their_timers)
{
    run_main(NULL, main_cancel_half, NULL);
}

/* The run clock against CLOCK_MONOTONIC: each real reading b, taken
 * between two run-clock readings a and c, must lie between them, give or
 * take the extrapolation error (well under a microsecond in theory; the
 * tolerance is generous for loaded machines). */
#define RUNCLOCK_TOLERANCE_NS 50000ull

static void check_against_real(weft__runclock *c, uint64_t for_ns)
{
    uint64_t start = weft_now_ns(), last = 0;
    for (;;) {
        uint64_t a = weft__runclock_now(c);
        uint64_t b = weft_now_ns();
        uint64_t d = weft__runclock_now(c);
        ASSERT_LE(a, b + RUNCLOCK_TOLERANCE_NS);
        ASSERT_LE(b, d + RUNCLOCK_TOLERANCE_NS);
        ASSERT_GE(a + RUNCLOCK_TOLERANCE_NS, last); /* no big step back */
        last = d;
        if (b - start >= for_ns)
            break;
    }
}

TEST(run_clock_follows_the_monotonic_clock)
{
    /* On one CPU: the run clock measures its rate afresh whenever the
     * thread moves, and on a loaded 2-CPU machine a free thread can move
     * often enough that few readings get extrapolated, which is not what
     * this checks: that the extrapolation is taken and agrees. */
    cpu_set_t old, one;
    ASSERT_OK(pthread_getaffinity_np(pthread_self(), sizeof old, &old));
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    ASSERT_OK(pthread_setaffinity_np(pthread_self(), sizeof one, &one));
    weft__runclock c;
    weft__runclock_init(&c, true);
    /* Long enough for several rate measurements and many spans. */
    check_against_real(&c, 5 * WEFT_RUNCLOCK_CAL_NS);
    ASSERT_OK(pthread_setaffinity_np(pthread_self(), sizeof old, &old));
    if (!weft__runclock_tsc_usable()) {
        printf("  no invariant TSC kept by the kernel here: every reading was real\n");
        ASSERT_EQ(c.syncs, c.reads);
        return;
    }
    /* The TSC path was really taken: a rate is known, and most readings
     * were extrapolated (a real one comes about once a span). */
    ASSERT(c.mult != 0);
    ASSERT_LT(c.syncs * 4, c.reads);
    printf("  %llu readings, %llu real\n", (unsigned long long)c.reads,
           (unsigned long long)c.syncs);
}

TEST(run_clock_without_the_tsc_reads_the_real_clock)
{
    weft__runclock c;
    weft__runclock_init(&c, false);
    check_against_real(&c, WEFT_RUNCLOCK_CAL_NS);
    ASSERT_EQ(c.mult, 0);
    ASSERT_EQ(c.syncs, c.reads);
}

TEST_MAIN(CASE(sleep_is_never_early), CASE(sleepers_wake_in_deadline_order),
          CASE(hundred_thousand_sleepers), CASE(cancelling_sleepers_removes_their_timers),
          CASE(run_clock_follows_the_monotonic_clock),
          CASE(run_clock_without_the_tsc_reads_the_real_clock))
