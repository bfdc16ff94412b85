/* Timers: accuracy (with tolerance), ordering, many sleepers; the run
 * clock that charges task runs. */
#include "test.h"

#include <pthread.h>
#include <sched.h>

#include "common/fault.h"
#include "common/runclock.h"
#include "io/timer.h"

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

/* Deadlines in arrival order go to the timer lane, others to the heap
 * (io/timer.h); firing must follow the deadlines across both. Offsets in
 * ms from base: the increasing run 20, 24, 28, 32, ... is the lane's, each
 * smaller one after it the heap's. */
static const int mixed_ms[] = {20, 24, 28, 22, 32, 36, 26, 40, 30, 44, 21, 48, 50, 23, 52, 54};
#define NMIXED ((int)(sizeof mixed_ms / sizeof mixed_ms[0]))
static int mixed_woken[NMIXED];

static void *sleep_mixed(void *arg)
{
    int i = (int)(intptr_t)arg;
    if (++nstarted == NMIXED)
        order_base = weft_now_ns();
    while (nstarted < NMIXED)
        ASSERT_OK(weft_yield());
    ASSERT_OK(weft_sleep_until(order_base + (uint64_t)mixed_ms[i] * 1000000));
    mixed_woken[nwoken++] = mixed_ms[i];
    return NULL;
}

static void *main_mixed(void *arg)
{
    nwoken = nstarted = 0;
    for (int i = 0; i < NMIXED; i++)
        ASSERT_OK(weft_spawn(NULL, sleep_mixed, (void *)(intptr_t)i));
    ASSERT_OK(weft_wait_children());
    ASSERT_EQ(nwoken, NMIXED);
    for (int i = 1; i < NMIXED; i++)
        ASSERT_LT(mixed_woken[i - 1], mixed_woken[i]);
    return NULL;
}
TEST(sleepers_wake_in_deadline_order_across_lane_and_heap)
{
    run_main_one_worker(NULL, main_mixed, NULL);
}

/* ---- the timer structure itself, against a model -------------------------
 * Timers with stand-in tasks (arming sets task->armed_timer; nothing here
 * fires, which would wake the task). Every deadline is distinct, (value <<
 * 20) | id, so the model can name the timer the structure must give next. */

#define MODEL_TIMERS 2048

static weft_task model_tasks[MODEL_TIMERS];
static weft__timer model_timers[MODEL_TIMERS];

static uint64_t model_rng = 0x5eed;
static uint64_t model_next(void)
{
    model_rng ^= model_rng << 13;
    model_rng ^= model_rng >> 7;
    model_rng ^= model_rng << 17;
    return model_rng;
}

/* Every armed timer is where its index says; the counts and the next
 * deadline agree with the model. Returns the armed timer due first. */
static weft__timer *model_check(weft__timers *h)
{
    uint32_t armed = 0, in_lane = 0;
    weft__timer *first = NULL;
    for (int i = 0; i < MODEL_TIMERS; i++) {
        weft__timer *t = &model_timers[i];
        if (!t->armed) {
            ASSERT(model_tasks[i].armed_timer == NULL);
            continue;
        }
        armed++;
        ASSERT(model_tasks[i].armed_timer == t);
        if (t->in_lane) {
            in_lane++;
            ASSERT(h->lane[t->index & (h->lane_cap - 1)].timer == t);
            ASSERT_EQ(h->lane[t->index & (h->lane_cap - 1)].when, t->when);
        } else {
            ASSERT_LT(t->index, h->len);
            ASSERT(h->v[t->index].timer == t);
        }
        if (!first || t->when < first->when)
            first = t;
    }
    ASSERT_EQ(weft__timer_count(h), armed);
    ASSERT_EQ(h->lane_live, in_lane);
    ASSERT_EQ(weft__timer_next(h), first ? first->when : UINT64_MAX);
    /* Holes never outnumber live lane timers by more than compaction
     * allows (3 to 1, past its minimum span). */
    uint32_t span = h->lane_tail - h->lane_head;
    ASSERT(span < 64 || span - h->lane_live <= 3 * h->lane_live);
    return first;
}

static weft__timer *model_pick_armed(bool armed)
{
    int i = (int)(model_next() % MODEL_TIMERS);
    for (int k = 0; k < MODEL_TIMERS; k++, i = (i + 1) % MODEL_TIMERS)
        if (model_timers[i].armed == armed)
            return &model_timers[i];
    return NULL;
}

TEST(timer_lane_and_heap_agree_with_a_model)
{
    weft__timers h = {0};
    for (int i = 0; i < MODEL_TIMERS; i++)
        model_timers[i] = (weft__timer){.task = &model_tasks[i]};
    uint64_t clock = 1000; /* the value part of the latest in-order deadline */
    unsigned lane_adds = 0, heap_adds = 0;
    for (int step = 0; step < 200000; step++) {
        uint64_t op = model_next() % 100;
        if (op < 45) { /* arm: mostly in order, like fixed-length sleeps */
            weft__timer *t = model_pick_armed(false);
            if (!t)
                continue;
            uint64_t id = (uint64_t)(t - model_timers);
            uint64_t value = op < 35 ? (clock += model_next() % 3) : clock - model_next() % 500;
            t->when = value << 20 | id;
            ASSERT_OK(weft__timer_add(&h, t));
            ASSERT(t->armed);
            if (t->in_lane)
                lane_adds++;
            else
                heap_adds++;
        } else if (op < 70) { /* disarm any one */
            weft__timer *t = model_pick_armed(true);
            if (t)
                weft__timer_remove(&h, t);
        } else { /* fire the first, as weft__timer_expire does */
            weft__timer *t = model_check(&h);
            if (t)
                weft__timer_remove(&h, t);
        }
        model_check(&h);
    }
    /* Both structures were exercised. */
    ASSERT_GT(lane_adds, 1000);
    ASSERT_GT(heap_adds, 1000);
    while (model_check(&h))
        weft__timer_remove(&h, model_check(&h));
    ASSERT_EQ(weft__timer_count(&h), 0);
    weft__timers_fini(&h);
}

#define BURST 5000
static weft_task burst_tasks[BURST];
static weft__timer burst[BURST];

static void burst_arm(weft__timers *h, int i, uint64_t when)
{
    burst[i] = (weft__timer){.when = when, .task = &burst_tasks[i]};
    ASSERT_OK(weft__timer_add(h, &burst[i]));
}

/* Fires (removes) every armed timer in burst, checking that each comes
 * out in deadline order and that a lane timer is where its index says. */
static void burst_drain_in_order(weft__timers *h)
{
    uint64_t last = 0;
    while (weft__timer_count(h)) {
        uint64_t next = weft__timer_next(h);
        ASSERT_GT(next, last);
        weft__timer *t = NULL;
        for (int i = 0; i < BURST && !t; i++)
            if (burst[i].armed && burst[i].when == next)
                t = &burst[i];
        ASSERT(t != NULL);
        if (t->in_lane)
            ASSERT(h->lane[t->index & (h->lane_cap - 1)].timer == t);
        weft__timer_remove(h, t);
        ASSERT(!t->armed);
        last = next;
    }
}

TEST(timer_lane_compacts_grows_and_gives_memory_back)
{
    weft__timers h = {0};
    /* In order: all in the lane. */
    for (int i = 0; i < BURST; i++)
        burst_arm(&h, i, 1000 + (uint64_t)i);
    for (int i = 0; i < BURST; i++)
        ASSERT(burst[i].in_lane);
    ASSERT_EQ(h.len, 0);
    /* Disarm 7 in 8, never the head: holes pile up until compaction packs
     * the lane (without it the span would stay 5000). */
    for (int i = 0; i < BURST; i++)
        if (i % 8 != 0)
            weft__timer_remove(&h, &burst[i]);
    uint32_t live = h.lane_live, span = h.lane_tail - h.lane_head;
    ASSERT_EQ(live, BURST / 8);
    ASSERT_LE(span, 4 * live);
    /* Fired in order; the lane, once empty, frees its 8192 slots. */
    burst_drain_in_order(&h);
    ASSERT(h.lane == NULL);
    ASSERT_EQ(h.lane_cap, 0);

    /* Growth while the live window wraps round the ring: positions keep
     * their numbers. */
    uint32_t start = h.lane_tail; /* positions run on from the last burst */
    for (int i = 0; i < 60; i++)
        burst_arm(&h, i, 5000 + (uint64_t)i);
    for (int i = 0; i < 50; i++)
        weft__timer_remove(&h, &burst[i]);
    ASSERT_EQ(h.lane_head - start, 50);
    ASSERT_EQ(h.lane_cap, 64);
    for (int i = 60; i < 140; i++)
        burst_arm(&h, i, 5000 + (uint64_t)i);
    ASSERT_EQ(h.lane_cap, 128);
    burst_drain_in_order(&h);
    weft__timers_fini(&h);

    /* A lane that cannot grow passes the timer to the heap; a heap that
     * cannot grow fails the arming and leaves the timer disarmed. */
    h = (weft__timers){0};
    for (int i = 0; i < 64; i++)
        burst_arm(&h, i, 10000 + (uint64_t)i);
    ASSERT_EQ(h.lane_cap, 64);
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    burst_arm(&h, 64, 20000);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT(!burst[64].in_lane);
    ASSERT_EQ(h.len, 1);
    for (int i = 65; i < 128; i++) /* earlier than the lane's last: heap */
        burst_arm(&h, i, 100 + (uint64_t)i);
    ASSERT_EQ(h.len, h.cap);
    burst[128] = (weft__timer){.when = 50, .task = &burst_tasks[128]};
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    ASSERT_EQ(weft__timer_add(&h, &burst[128]), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT(!burst[128].armed);
    ASSERT(burst_tasks[128].armed_timer == NULL);
    ASSERT_EQ(weft__timer_count(&h), 128);
    burst_drain_in_order(&h);
    weft__timers_fini(&h);
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
          CASE(sleepers_wake_in_deadline_order_across_lane_and_heap),
          CASE(timer_lane_and_heap_agree_with_a_model),
          CASE(timer_lane_compacts_grows_and_gives_memory_back), CASE(hundred_thousand_sleepers),
          CASE(cancelling_sleepers_removes_their_timers),
          CASE(run_clock_follows_the_monotonic_clock),
          CASE(run_clock_without_the_tsc_reads_the_real_clock))
