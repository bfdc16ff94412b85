/* The embedded executor's contract: errors, deadlines, budgets, teardown.
 * The two real hosts (epoll, libuv) are examples/embed_*.c, run by CTest. */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "test.h"

TEST(bad_calls_are_refused)
{
    weft_executor *ex = (weft_executor *)1;
    weft_queue_spec dup[] = {{.name = "a", .weight = 1}, {.name = "a", .weight = 1}};
    weft_config bad = {.queues = dup, .nqueues = 2};
    ASSERT_EQ(weft_executor_create(&ex, &bad), -EINVAL);
    ASSERT(ex == NULL);
    weft_config two = {.workers = 2};
    ASSERT_EQ(weft_executor_create(&ex, &two), -EINVAL);
    ASSERT(strstr(weft_last_config_error(), "workers") != NULL);
    ASSERT_EQ(weft_executor_create(NULL, NULL), -EINVAL);
    ASSERT_EQ(weft_executor_run(NULL, 0), -EINVAL);
    ASSERT_EQ(weft_executor_fd(NULL), -EINVAL);
    ASSERT_EQ(weft_executor_spawn(NULL, NULL, NULL, return_arg, NULL), -EINVAL);
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_EQ(weft_executor_spawn(ex, NULL, NULL, NULL, NULL), -EINVAL);
    weft_spawn_opts q = {.queue = "nope"};
    ASSERT_EQ(weft_executor_spawn(ex, NULL, &q, return_arg, NULL), -ENOENT);
    ASSERT_GE(weft_executor_fd(ex), 0);
    ASSERT_EQ(weft_executor_run(ex, 0), INT64_MAX); /* nothing at all to do */
    ASSERT_EQ(weft_executor_tasks(ex), 0);
    weft_executor_destroy(ex);
    weft_executor_destroy(NULL);
}

static weft_executor *other;

static void *calls_executor(void *arg)
{
    ASSERT_EQ(weft_executor_run(other, 0), -EPERM);
    ASSERT_EQ(weft_executor_spawn(other, NULL, NULL, return_arg, NULL), -EPERM);
    weft_executor *ex;
    ASSERT_EQ(weft_executor_create(&ex, NULL), -EBUSY);
    return NULL;
}
TEST(not_from_inside_a_task)
{
    ASSERT_OK(weft_executor_create(&other, NULL));
    run_main(NULL, calls_executor, NULL);
    weft_executor_destroy(other);
}

static void *sleep_ms(void *arg)
{
    return (void *)(intptr_t)weft_sleep_ns((uint64_t)(intptr_t)arg * 1000000);
}

/* A host told INT64_MAX waits on the fd alone; a spawn it makes then must
 * make the fd readable, or the task would never run. */
static int ran_after_spawn;

static void *notes_its_run(void *arg)
{
    (void)arg;
    ran_after_spawn = 1;
    return NULL;
}

TEST(a_host_spawn_makes_the_fd_readable)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_EQ(weft_executor_run(ex, 0), INT64_MAX); /* idle: only the fd */
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, notes_its_run, NULL));
    struct pollfd p = {.fd = weft_executor_fd(ex), .events = POLLIN};
    ASSERT_EQ(poll(&p, 1, 0), 1); /* already readable: no waiting */
    ASSERT_EQ(weft_executor_run(ex, 0), INT64_MAX);
    ASSERT_EQ(ran_after_spawn, 1);
    weft_executor_destroy(ex);
}

/* weft_self_set_queue inside an executor: the move is made by the loop
 * weft_executor_run drives, as by a worker's; the task runs on in its
 * new queue, and a child spawned after the move inherits it. */
static void *child_queue(void *arg)
{
    (void)arg;
    return (void *)weft_self_queue();
}

static void *moves_queue(void *arg)
{
    (void)arg;
    if (strcmp(weft_self_queue(), "ui") != 0)
        return (void *)1;
    if (weft_self_set_queue("bulk") != 0 || strcmp(weft_self_queue(), "bulk") != 0)
        return (void *)2;
    weft_task *c;
    void *q = NULL;
    if (weft_spawn(&c, child_queue, NULL) != 0 || weft_join(c, &q) != 0)
        return (void *)3;
    return strcmp((const char *)q, "bulk") == 0 ? NULL : (void *)4;
}

TEST(a_task_of_an_executor_moves_to_another_queue)
{
    weft_queue_spec qs[] = {{.name = "ui", .weight = 10}, {.name = "bulk", .weight = 1}};
    weft_config cfg = {.queues = qs, .nqueues = 2};
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, &cfg));
    weft_task *t;
    weft_spawn_opts o = {.queue = "ui"};
    ASSERT_OK(weft_executor_spawn(ex, &t, &o, moves_queue, NULL));
    for (int i = 0; i < 1000 && !weft_task_finished(t); i++)
        ASSERT_GE(weft_executor_run(ex, 0), 0);
    void *res = (void *)-1;
    ASSERT_OK(weft_executor_try_join(ex, t, &res));
    ASSERT_EQ((intptr_t)res, 0);
    weft_executor_destroy(ex);
}

TEST(run_returns_the_next_deadline)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    weft_task *t;
    uint64_t before = weft_now_ns();
    ASSERT_OK(weft_executor_spawn(ex, &t, NULL, sleep_ms, (void *)20));
    int64_t d = weft_executor_run(ex, 0);
    ASSERT_GE(d, (int64_t)(before + 20000000));
    ASSERT_LE(d, (int64_t)(weft_now_ns() + 20000000)); /* the sleep's, from before now */
    ASSERT_EQ(weft_executor_tasks(ex), 1);
    /* Called at the deadline, the sleeper finishes. */
    while ((int64_t)weft_now_ns() < d)
        usleep(1000);
    ASSERT_EQ(weft_executor_run(ex, 0), INT64_MAX);
    ASSERT(weft_task_finished(t));
    ASSERT_EQ(weft_executor_tasks(ex), 0);
    weft_detach(t);
    weft_executor_destroy(ex);
}

static void *sleep_long_ns(void *arg)
{
    return (void *)(intptr_t)weft_sleep_ns(*(const uint64_t *)arg);
}

/* A timer past INT64_MAX is reported as "only the fd", never as a negative
 * number (which reads as -errno). */
TEST(run_reports_a_far_timer_as_no_deadline)
{
    static const uint64_t far[] = {INT64_MAX, (uint64_t)INT64_MAX + 1, UINT64_MAX - 1};
    for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) {
        weft_executor *ex;
        ASSERT_OK(weft_executor_create(&ex, NULL));
        ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, sleep_long_ns, (void *)&far[i]));
        ASSERT_EQ(weft_executor_run(ex, 0), INT64_MAX);
        ASSERT_EQ(weft_executor_tasks(ex), 1);
        weft_executor_destroy(ex);
    }
}

static volatile int spins;

static void *spinner(void *arg)
{
    for (;;) {
        spins++;
        if (weft_yield() < 0)
            return NULL;
    }
}

TEST(budget_bounds_a_run)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, spinner, NULL));
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, spinner, NULL));
    uint64_t t0 = weft_now_ns();
    ASSERT_EQ(weft_executor_run(ex, 2000000), 0);  /* still ready: call again */
    ASSERT_LT(weft_now_ns() - t0, 30000000000ull); /* ended by the budget, not never */
    int after_first = spins;
    ASSERT_GT(after_first, 0);
    ASSERT_EQ(weft_executor_run(ex, 1000000), 0);
    ASSERT_GT(spins, after_first);
    /* Destroy cancels the spinners and waits for them. */
    weft_executor_destroy(ex);
}

/* A lone task whose CPU loop yields through weft_yield_maybe (a run of
 * io_poll_interval, 500 us, each) must not hold a run past its budget
 * for max_runs_per_slice of those runs (30 ms): the run ends within a
 * slice of the budget. Counted in spins of 50 us, so a slow machine only
 * lowers the count. */
static _Atomic unsigned maybe_spins;

static void *spin_with_yield_maybe(void *arg)
{
    (void)arg;
    for (;;) {
        uint64_t until = weft_now_ns() + 50000;
        while (weft_now_ns() < until)
            ;
        atomic_fetch_add(&maybe_spins, 1);
        if (weft_yield_maybe() < 0)
            return NULL;
    }
}

TEST(budget_bounds_a_run_of_yield_maybe_loops)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, spin_with_yield_maybe, NULL));
    for (int run = 0; run < 3; run++) {
        unsigned before = atomic_load(&maybe_spins);
        ASSERT_EQ(weft_executor_run(ex, 1000000), 0);
        unsigned spun = atomic_load(&maybe_spins) - before;
        ASSERT_GT(spun, 0);
        /* 1 ms of budget and a slice past it: about 30; 600 when it
         * waited for the slice's 61st run. */
        ASSERT_LE(spun, 100);
    }
    weft_executor_destroy(ex);
}

/* Outside spawns that keep coming: a run takes them when its queue runs
 * dry, and must still stop at its budget (it went on for as long as the
 * feeder did: the jump back after taking them skipped the check). The
 * feeder stops when told, or after 20 s, a bound on the hang alone. */
static _Atomic bool feeder_stop, feeder_capped;
static _Atomic unsigned fed_spawned;

static void *spin_30us(void *arg)
{
    (void)arg;
    uint64_t until = weft_now_ns() + 30000;
    while (weft_now_ns() < until)
        ;
    return NULL;
}

static void *feed_outside_spawns(void *arg)
{
    weft_runtime *rt = arg;
    uint64_t cap = weft_now_ns() + 20 * 1000000000ull;
    while (!atomic_load(&feeder_stop)) {
        if (weft_now_ns() > cap) {
            atomic_store(&feeder_capped, true);
            break;
        }
        if (weft_runtime_spawn(rt, NULL, spin_30us, NULL) == 0)
            atomic_fetch_add(&fed_spawned, 1);
        uint64_t until = weft_now_ns() + 20000;
        while (weft_now_ns() < until)
            ;
    }
    return NULL;
}

TEST(budget_bounds_a_run_fed_by_outside_spawns)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    pthread_t feeder;
    ASSERT_OK(pthread_create(&feeder, NULL, feed_outside_spawns, weft_executor_runtime(ex)));
    while (atomic_load(&fed_spawned) < 2)
        usleep(100);
    int64_t r = weft_executor_run(ex, 1000000);
    bool capped = atomic_load(&feeder_capped);
    atomic_store(&feeder_stop, true);
    ASSERT_OK(pthread_join(feeder, NULL));
    ASSERT(!capped); /* the run ended while spawns still came */
    /* More to run (0), or, when the feeder was held up for a moment and
     * the run found nothing, idle with no timer. */
    ASSERT(r == 0 || r == INT64_MAX);
    weft_executor_destroy(ex);
}

static void *yields_for_20ms(void *arg)
{
    uint64_t end = weft_now_ns() + 20000000;
    while (weft_now_ns() < end)
        ASSERT_OK(weft_yield());
    return NULL;
}

/* A budget too large to add to the clock means no limit: it wrapped round
 * to one that ended the run after its first slice. */
TEST(a_huge_budget_is_no_limit)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, yields_for_20ms, NULL));
    ASSERT_EQ(weft_executor_run(ex, UINT64_MAX), INT64_MAX);
    ASSERT_EQ(weft_executor_tasks(ex), 0);
    weft_executor_destroy(ex);
}

static int cancelled_seen;

static void *long_sleeper(void *arg)
{
    if (weft_sleep_ns(60ull * 1000000000) == -ECANCELED)
        cancelled_seen++;
    return NULL;
}

TEST(destroy_cancels_and_awaits_everything)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    cancelled_seen = 0;
    weft_spawn_opts bg = {.flags = WEFT_TASK_BACKGROUND};
    for (int i = 0; i < 10; i++)
        ASSERT_OK(weft_executor_spawn(ex, NULL, i % 2 ? &bg : NULL, long_sleeper, NULL));
    ASSERT_GT(weft_executor_run(ex, 0), 0);
    ASSERT_EQ(weft_executor_tasks(ex), 10);
    weft_executor_destroy(ex);
    ASSERT_EQ(cancelled_seen, 10);
}

/* weft_config.catch_signals under a host loop: installed when the
 * executor is made, so a signal raised before any task waits is
 * remembered; the disposition comes back when it is destroyed. */
static int caught_result = 1;

static void *wait_usr1(void *arg)
{
    (void)arg;
    caught_result = weft_signal_wait(SIGUSR1);
    return NULL;
}

TEST(an_executor_catches_signals_from_its_start)
{
    struct sigaction sa;
    ASSERT_OK(sigaction(SIGUSR1, NULL, &sa));
    ASSERT(sa.sa_handler == SIG_DFL);
    static const int caught[] = {SIGUSR1};
    weft_config cfg = {.catch_signals = caught, .ncatch_signals = 1};
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, &cfg));
    ASSERT_OK(raise(SIGUSR1)); /* its default would end this process */
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, wait_usr1, NULL));
    while (weft_executor_tasks(ex) > 0)
        ASSERT_GE(weft_executor_run(ex, 0), 0);
    ASSERT_EQ(caught_result, SIGUSR1);
    weft_executor_destroy(ex);
    ASSERT_OK(sigaction(SIGUSR1, NULL, &sa));
    ASSERT(sa.sa_handler == SIG_DFL);
}

/* With a deadline pushed (and never popped), whose stack the record's
 * release must free. */
static void *returns_at_once(void *arg)
{
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 60ull * 1000000000));
    return arg;
}

static weft_event go_on;

/* Runs until the host lets it go on: no timing decides when it ends. */
static void *wait_then_return(void *arg)
{
    if (weft_event_wait(&go_on) < 0)
        return NULL;
    return arg;
}

static void *try_join_from_a_task(void *arg)
{
    weft_executor *ex = arg;
    weft_task *t = (weft_task *)ex; /* never looked at: refused first */
    return (void *)(intptr_t)weft_executor_try_join(ex, t, NULL);
}

/* The host takes results without a channel: weft_executor_try_join says a
 * running task still runs and leaves its handle valid, then gives a
 * finished task's outcome and result and frees the handle, here records
 * and all (ASan's leak check), for a normal end, a cancel and every
 * refusal. */
TEST(the_host_joins_finished_tasks_without_waiting)
{
    weft_executor *ex, *ex2;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_OK(weft_executor_create(&ex2, NULL));
    weft_task *done, *sleeper, *cancelled, *inside;
    ASSERT_OK(weft_executor_spawn(ex, &done, NULL, returns_at_once, (void *)0x5a));
    go_on = (weft_event)WEFT_EVENT_INIT;
    ASSERT_OK(weft_executor_spawn(ex, &sleeper, NULL, wait_then_return, (void *)0x77));
    ASSERT_OK(weft_executor_spawn(ex, &cancelled, NULL, wait_then_return, NULL));
    ASSERT_OK(weft_executor_spawn(ex, &inside, NULL, try_join_from_a_task, ex));
    void *res = (void *)1;
    ASSERT_EQ(weft_executor_try_join(ex, done, &res), -EAGAIN); /* not run yet */
    ASSERT(res == (void *)1);
    ASSERT_GE(weft_executor_run(ex, 0), 0);
    ASSERT_OK(weft_executor_try_join(ex, done, &res));
    ASSERT(res == (void *)0x5a);
#ifndef NDEBUG
    /* The handle is gone: debug builds refuse it (its record, freed on
     * the host, once stayed "live" until the executor's next run took it
     * in, and a second try_join pushed it back twice). */
    ASSERT_EQ(weft_executor_try_join(ex, done, &res), WEFT_EHANDLE);
    ASSERT_EQ(weft_cancel(done), WEFT_EHANDLE);
    ASSERT_GE(weft_executor_run(ex, 0), 0);
#endif
    ASSERT_EQ(weft_executor_try_join(ex, inside, &res), 0);
    ASSERT_EQ((int)(intptr_t)res, -EPERM);                         /* from a task */
    ASSERT_EQ(weft_executor_try_join(ex, sleeper, &res), -EAGAIN); /* waiting */
    ASSERT_EQ(weft_executor_try_join(ex2, sleeper, &res), -EXDEV);
    ASSERT_EQ(weft_executor_try_join(NULL, sleeper, &res), -EINVAL);
    ASSERT_EQ(weft_executor_try_join(ex, NULL, &res), -EINVAL);
    ASSERT_OK(weft_cancel(cancelled));
    weft_event_notify_all(&go_on);
    while (weft_executor_tasks(ex) > 0)
        ASSERT_GE(weft_executor_run(ex, 0), 0);
    ASSERT_OK(weft_executor_try_join(ex, sleeper, &res));
    ASSERT(res == (void *)0x77);
    ASSERT_EQ(weft_executor_try_join(ex, cancelled, NULL), -ECANCELED);
    weft_executor_destroy(ex2);
    weft_executor_destroy(ex);
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* The host can only detach (join is for tasks): a finished task's record,
 * released on the host thread, stayed in its slab until the destroy, so a
 * host loop that spawned with a handle and detached grew by a record a
 * round. Now the record is reused: across 5000 rounds the handles take
 * few addresses (debug builds hold 1024 freed records back before reuse).
 * The tasks have names and deadlines too, whose memory the destroy of
 * handles never released freed: ASan's leak check covers that. */
#define DETACH_ROUNDS 5000
TEST(records_detached_by_the_host_are_reused)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    static void *seen[DETACH_ROUNDS];
    weft_spawn_opts named = {.name = "round"};
    for (int i = 0; i < DETACH_ROUNDS; i++) {
        weft_task *t;
        ASSERT_OK(weft_executor_spawn(ex, &t, &named, returns_at_once, NULL));
        while (!weft_task_finished(t))
            ASSERT_GE(weft_executor_run(ex, 0), 0);
        seen[i] = t;
        weft_detach(t);
    }
    qsort(seen, DETACH_ROUNDS, sizeof seen[0], by_address);
    int distinct = 1;
    for (int i = 1; i < DETACH_ROUNDS; i++)
        distinct += seen[i] != seen[i - 1];
    ASSERT_LT(distinct, 1100);
    /* Handles never released: the destroy frees what their tasks own. */
    for (int i = 0; i < 3; i++) {
        weft_task *t;
        ASSERT_OK(weft_executor_spawn(ex, &t, &named, returns_at_once, NULL));
    }
    ASSERT_GE(weft_executor_run(ex, 0), 0);
    weft_executor_destroy(ex);
}

TEST(two_executors_on_one_thread)
{
    weft_executor *a, *b;
    ASSERT_OK(weft_executor_create(&a, NULL));
    ASSERT_OK(weft_executor_create(&b, NULL));
    weft_task *ta, *tb;
    ASSERT_OK(weft_executor_spawn(a, &ta, NULL, return_arg, (void *)1));
    ASSERT_OK(weft_executor_spawn(b, &tb, NULL, return_arg, (void *)2));
    ASSERT_EQ(weft_executor_run(b, 0), INT64_MAX);
    ASSERT(weft_task_finished(tb));
    ASSERT(!weft_task_finished(ta));
    ASSERT_EQ(weft_executor_run(a, 0), INT64_MAX);
    ASSERT(weft_task_finished(ta));
    weft_detach(ta);
    weft_detach(tb);
    weft_executor_destroy(a);
    weft_executor_destroy(b);
}

static int io_sv[2];
static char io_got[8];

static void *embedded_reader(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_nop());
    ASSERT_EQ(weft_recv(io_sv[0], io_got, 5, 0), 5);
    weft_stream *tick;
    ASSERT_OK(weft_ticker(&tick, 1000000));
    ASSERT_OK(weft_stream_next(tick, NULL));
    weft_stream *never; /* left open: closed for the task when it ends */
    ASSERT_OK(weft_poll_stream(&never, io_sv[0], POLLIN));
    weft_stream_close(tick);
    return NULL;
}

static void *embedded_stuck(void *arg)
{
    (void)arg;
    weft_stream *p;
    ASSERT_OK(weft_poll_stream(&p, io_sv[0], POLLIN));
    weft_stream_next(p, NULL); /* until destroy cancels it */
    return NULL;
}

/* Tasks in an executor do io_uring I/O, streams included, with the host
 * waiting on weft_executor_fd as a real loop would. */
TEST(embedded_tasks_do_io)
{
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, io_sv));
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    weft_task *t;
    ASSERT_OK(weft_executor_spawn(ex, &t, NULL, embedded_reader, NULL));
    struct pollfd pfd = {.fd = weft_executor_fd(ex), .events = POLLIN};
    int64_t next = weft_executor_run(ex, 0);
    ASSERT_EQ(write(io_sv[1], "hello", 5), 5);
    while (weft_executor_tasks(ex)) {
        int64_t now = (int64_t)weft_now_ns();
        int ms = next == INT64_MAX ? 1000 : next <= now ? 0 : (int)((next - now) / 1000000) + 1;
        poll(&pfd, 1, ms);
        next = weft_executor_run(ex, 0);
        ASSERT_GE(next, 0);
    }
    ASSERT(weft_task_finished(t));
    weft_detach(t); /* joining is for tasks; its asserts ran inside it */
    ASSERT(memcmp(io_got, "hello", 5) == 0);
    /* A task blocked on a stream when the executor goes away. */
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, embedded_stuck, NULL));
    ASSERT_GE(weft_executor_run(ex, 0), 0);
    weft_executor_destroy(ex);
    close(io_sv[0]);
    close(io_sv[1]);
}

/* weft_runtime_spawn from another thread into an executor's runtime: the
 * host, asleep on weft_executor_fd with no deadline, is woken and the
 * task runs at its next weft_executor_run. */
static weft_runtime *emb_rt;
static _Atomic int emb_ran;

static void *note_runtime(void *arg)
{
    (void)arg;
    emb_rt = weft_runtime_current();
    return NULL;
}

static void *emb_injected(void *arg)
{
    (void)arg;
    atomic_fetch_add(&emb_ran, 1);
    return NULL;
}

static void *emb_spawner(void *arg)
{
    (void)arg;
    usleep(20000); /* let the host go to sleep first */
    ASSERT_OK(weft_runtime_spawn(emb_rt, NULL, emb_injected, NULL));
    return NULL;
}

/* A new executor whose runtime is in emb_rt, with no task live. */
static weft_executor *executor_with_runtime_noted(void)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, note_runtime, NULL));
    ASSERT_EQ(weft_executor_run(ex, 0), INT64_MAX);
    ASSERT(emb_rt != NULL);
    /* The host can have it without a task. */
    ASSERT(weft_executor_runtime(ex) == emb_rt);
    ASSERT(weft_executor_runtime(NULL) == NULL);
    ASSERT_EQ(weft_executor_tasks(ex), 0);
    return ex;
}

TEST(runtime_spawn_from_another_thread_wakes_the_host)
{
    weft_executor *ex = executor_with_runtime_noted();
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, emb_spawner, NULL));
    struct pollfd pfd = {.fd = weft_executor_fd(ex), .events = POLLIN};
    while (atomic_load(&emb_ran) == 0) {
        /* No deadline: only the request can wake this poll (the bound is
         * for a hang, not a speed). */
        int n = poll(&pfd, 1, 20000);
        ASSERT(n >= 0);
        if (n == 0)
            FAILF("the host loop was never woken for the outside spawn");
        ASSERT_GE(weft_executor_run(ex, 0), 0);
    }
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_EQ(atomic_load(&emb_ran), 1);
    weft_executor_destroy(ex);
}

/* Runs ex as a host loop would until *flag is set: asleep on the fd with
 * no deadline between runs (the bound is for a hang, not a speed). */
static void host_until(weft_executor *ex, _Atomic int *flag, const char *what)
{
    struct pollfd pfd = {.fd = weft_executor_fd(ex), .events = POLLIN};
    while (atomic_load(flag) == 0) {
        int n = poll(&pfd, 1, 20000);
        ASSERT(n >= 0);
        if (n == 0)
            FAILF("the host loop was never woken for %s", what);
        ASSERT_GE(weft_executor_run(ex, 0), 0);
    }
}

/* Wakes of an executor's tasks from other threads make the fd readable:
 * a foreign thread's weft_event_notify_one, a blocking-pool job's end, and
 * the host thread itself between two runs. */
static weft_event emb_event = WEFT_EVENT_INIT;
static _Atomic int emb_woken;

static void *emb_event_waiter(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_event_wait(&emb_event));
    atomic_fetch_add(&emb_woken, 1);
    return NULL;
}

static void *emb_notifier(void *arg)
{
    (void)arg;
    usleep(20000); /* let the host go to sleep first */
    weft_event_notify_one(&emb_event);
    return NULL;
}

static void *blocking_job(void *arg)
{
    usleep(20000);
    return arg;
}

static void *emb_blocking_caller(void *arg)
{
    (void)arg;
    void *res = NULL;
    ASSERT_OK(weft_spawn_blocking(blocking_job, (void *)(intptr_t)42, &res));
    ASSERT_EQ((intptr_t)res, 42);
    atomic_fetch_add(&emb_woken, 1);
    return NULL;
}

TEST(wakes_from_other_threads_wake_the_host)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));

    atomic_store(&emb_woken, 0);
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, emb_event_waiter, NULL));
    ASSERT_EQ(weft_executor_run(ex, 0), INT64_MAX); /* parked on the event */
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, emb_notifier, NULL));
    host_until(ex, &emb_woken, "a foreign thread's weft_event_notify_one");
    ASSERT_OK(pthread_join(th, NULL));

    atomic_store(&emb_woken, 0);
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, emb_blocking_caller, NULL));
    ASSERT_EQ(weft_executor_run(ex, 0), INT64_MAX); /* waiting for the pool */
    host_until(ex, &emb_woken, "the end of a weft_spawn_blocking job");

    /* The host thread is a foreign thread too, between runs. */
    atomic_store(&emb_woken, 0);
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, emb_event_waiter, NULL));
    ASSERT_EQ(weft_executor_run(ex, 0), INT64_MAX);
    weft_event_notify_one(&emb_event);
    host_until(ex, &emb_woken, "the host's own weft_event_notify_one");
    ASSERT_EQ(weft_executor_tasks(ex), 0);
    weft_executor_destroy(ex);
}

/* From the start of destroy, outside spawns are refused: a task that
 * spawns one as it is cancelled gets -ESHUTDOWN, so no new work can hold
 * the destroy up. */
static _Atomic int late_spawn_result = 1;

static void *spawns_when_cancelled(void *arg)
{
    (void)arg;
    weft_runtime *rt = weft_runtime_current();
    ASSERT_EQ(weft_sleep_ns(3600ull * 1000000000), -ECANCELED);
    atomic_store(&late_spawn_result, weft_runtime_spawn(rt, NULL, long_sleeper, NULL));
    return NULL;
}

TEST(destroy_refuses_late_outside_spawns)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, spawns_when_cancelled, NULL));
    ASSERT_GE(weft_executor_run(ex, 0), 0);
    weft_executor_destroy(ex);
    ASSERT_EQ(atomic_load(&late_spawn_result), -ESHUTDOWN);
}

/* An outside spawn still queued when the executor is destroyed, with no
 * task of its own live: it is spawned cancelled, ends without running,
 * and its discard callback gets its argument back. (Destroy used to skip
 * the loop when no task was live, and the request was freed unseen.) */
static _Atomic int queued_discarded;

static void count_queued_discard(void *arg)
{
    ASSERT(arg == &queued_discarded);
    atomic_fetch_add(&queued_discarded, 1);
}

static void *queue_from_outside(void *arg)
{
    (void)arg;
    weft_spawn_opts o = {.discard = count_queued_discard};
    ASSERT_OK(weft_runtime_spawn(emb_rt, &o, emb_injected, &queued_discarded));
    return NULL;
}

TEST(destroy_discards_queued_outside_spawns)
{
    weft_executor *ex = executor_with_runtime_noted();
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, queue_from_outside, NULL));
    ASSERT_OK(pthread_join(th, NULL));
    weft_executor_destroy(ex); /* without a run in between */
    ASSERT_EQ(atomic_load(&queued_discarded), 1);
    ASSERT_EQ(atomic_load(&emb_ran), 0);
}

/* The host thread must not sleep on a channel: only the executor's tasks,
 * which it runs, could complete the call. Once it has destroyed the
 * executor it is a plain thread again. */
TEST(host_thread_blocking_channel_calls_are_refused)
{
    weft_chan *c;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 1));
    weft_executor *ex, *ex2;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_OK(weft_executor_create(&ex2, NULL));
    int v = 7;
    ASSERT_EQ(weft_chan_send_blocking(c, &v), -EDEADLK);
    ASSERT_EQ(weft_chan_recv_blocking(c, &v), -EDEADLK);
    weft_select_case sc = {.op = WEFT_SELECT_RECV, .chan = c, .elem = &v};
    ASSERT_EQ(weft_select_blocking(&sc, 1), -EDEADLK);
    weft_executor_destroy(ex);
    ASSERT_EQ(weft_chan_send_blocking(c, &v), -EDEADLK); /* ex2 is still hosted */
    weft_executor_destroy(ex2);
    ASSERT_OK(weft_chan_send_blocking(c, &v)); /* capacity 1: no wait */
    int got = 0;
    ASSERT_OK(weft_chan_recv_blocking(c, &got));
    ASSERT_EQ(got, 7);
    weft_chan_destroy(c);
}

static weft_executor *doomed;

static void *destroys_from_a_task(void *arg)
{
    (void)arg;
    weft_executor_destroy(doomed);
    return NULL;
}

static void run_destroy_from_a_task(void)
{
    if (weft_executor_create(&doomed, NULL) != 0)
        _exit(3);
    weft_run(NULL, destroys_from_a_task, NULL, NULL);
    _exit(4); /* not reached */
}

TEST(destroy_from_a_task_aborts_with_a_message)
{
    expect_abort_with(run_destroy_from_a_task, "weft_executor_destroy called from inside a task");
}

/* Every call comes from the creating thread: run and spawn refuse others,
 * destroy aborts (the per-thread state it undoes is the creator's). */
static weft_executor *foreign_ex;

static void *calls_from_another_thread(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_executor_run(foreign_ex, 0), -EPERM);
    ASSERT_EQ(weft_executor_spawn(foreign_ex, NULL, NULL, return_arg, NULL), -EPERM);
    return NULL;
}

static void *destroys_from_another_thread(void *arg)
{
    (void)arg;
    weft_executor_destroy(foreign_ex);
    return NULL;
}

static void run_destroy_from_another_thread(void)
{
    if (weft_executor_create(&foreign_ex, NULL) != 0)
        _exit(3);
    pthread_t th;
    pthread_create(&th, NULL, destroys_from_another_thread, NULL);
    pthread_join(th, NULL);
    _exit(4); /* not reached */
}

TEST(calls_from_another_thread_are_refused)
{
    ASSERT_OK(weft_executor_create(&foreign_ex, NULL));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, calls_from_another_thread, NULL));
    ASSERT_OK(pthread_join(th, NULL));
    weft_executor_destroy(foreign_ex);
    expect_abort_with(run_destroy_from_another_thread,
                      "from a thread other than the one that created");
}

/* A task cannot join a task of another runtime: the other's end would wake
 * it after that runtime may be gone. It may detach it, and the record then
 * stays with its own runtime: taken into this runtime's pool, the next
 * spawn here would live in the executor's memory. */
static weft_task *other_runtime_task;

static void *joins_across(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_join(other_runtime_task, NULL), -EXDEV);
    ASSERT(weft_task_finished(other_runtime_task));
    weft_detach(other_runtime_task); /* the last reference */
    /* Release builds (the LTO run) reuse a freed record at once; debug
     * builds quarantine it first, so this bites in the former. */
    weft_task *mine;
    ASSERT_OK(weft_spawn(&mine, return_arg, NULL));
    ASSERT(mine != other_runtime_task);
    ASSERT_OK(weft_join(mine, NULL));
    return NULL;
}

TEST(joining_a_task_of_another_runtime_is_refused)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_OK(weft_executor_spawn(ex, &other_runtime_task, NULL, return_arg, NULL));
    ASSERT_EQ(weft_executor_run(ex, 0), INT64_MAX); /* it ran and finished */
    run_main_one_worker(NULL, joins_across, NULL);
    weft_executor_destroy(ex);
}

static weft_queue_stats probed[2];

static void *probe_queues(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_stats_queues(probed, 2), 2);
    return NULL;
}

/* The host is away 2 s between two runs; the task that runs first in the
 * second returns at once. That time was charged to it (to its queue's
 * virtual runtime and service) before each run started with a fresh clock
 * reading. The bound, 1 s, leaves room for what a loaded machine (TSan,
 * every core busy) can charge two empty tasks by holding their thread. */
TEST(the_hosts_time_away_is_charged_to_no_task)
{
    weft_queue_spec qs[] = {{.name = "a", .weight = 1}, {.name = "b", .weight = 1}};
    weft_config cfg = {.queues = qs, .nqueues = 2};
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, &cfg));
    weft_spawn_opts ob = {.queue = "b"}, oa = {.queue = "a"};
    ASSERT_OK(weft_executor_spawn(ex, NULL, &ob, return_arg, NULL));
    ASSERT_GE(weft_executor_run(ex, 0), 0);
    usleep(2000000);
    ASSERT_OK(weft_executor_spawn(ex, NULL, &ob, return_arg, NULL));
    ASSERT_GE(weft_executor_run(ex, 0), 0);
    ASSERT_OK(weft_executor_spawn(ex, NULL, &oa, probe_queues, NULL));
    ASSERT_GE(weft_executor_run(ex, 0), 0);
    weft_executor_destroy(ex);
    ASSERT_EQ(probed[1].runs, 2);
    if (probed[1].service_ns > 1000000000) /* two empty tasks; 2 s if charged */
        FAILF("two empty tasks were charged %llu ns", (unsigned long long)probed[1].service_ns);
}

/* weft_cancel from the host between runs cancels at once; from another
 * thread it is passed to the host's next run: an executor's task tree has
 * no lock, and a walk from there raced the host's spawns (a reviewer's
 * program crashed in it, 3 of 3; from then to 2026-12-07 the call said
 * -EPERM). The request makes the executor's fd readable, as an outside
 * spawn does. A request still queued at the destroy is made there. */
static void *cancel_from_thread(void *arg)
{
    return (void *)(intptr_t)weft_cancel(arg);
}

TEST(weft_cancel_from_another_thread_is_made_by_the_host)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    int fd = weft_executor_fd(ex);
    for (int round = 0; round < 2; round++) {
        weft_task *t;
        ASSERT_OK(weft_executor_spawn(ex, &t, NULL, sleep_ms, (void *)60000));
        ASSERT_GE(weft_executor_run(ex, 0), 0); /* asleep */
        pthread_t th;
        void *r;
        ASSERT_OK(pthread_create(&th, NULL, cancel_from_thread, t));
        ASSERT_OK(pthread_join(th, &r));
        ASSERT_OK((int)(intptr_t)r);
        if (round == 1) { /* left for the destroy */
            weft_detach(t);
            break;
        }
        ASSERT(!weft_task_finished(t)); /* the host has not run since */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ASSERT_EQ(poll(&p, 1, 10000), 1); /* a bound on a hang */
        while (!weft_task_finished(t))
            ASSERT_GE(weft_executor_run(ex, 0), 0);
        void *res;
        ASSERT_EQ(weft_executor_try_join(ex, t, &res), -ECANCELED);
    }
    weft_executor_destroy(ex);
}

/* A cancel queued from another thread does not count against
 * inject_max: an outside spawn right after it is taken, and the cap still
 * holds for spawns. */
static weft_executor *capped_ex;
static weft_task *capped_sleeper;

static void *cancel_then_spawn_twice(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_cancel(capped_sleeper));
    weft_runtime *rt = weft_executor_runtime(capped_ex);
    ASSERT_OK(weft_runtime_spawn(rt, NULL, return_arg, NULL));
    ASSERT_EQ(weft_runtime_spawn(rt, NULL, return_arg, NULL), -EAGAIN);
    return NULL;
}

TEST(a_queued_cancel_does_not_count_against_inject_max)
{
    weft_config cfg = {.inject_max = 1};
    ASSERT_OK(weft_executor_create(&capped_ex, &cfg));
    ASSERT_OK(weft_executor_spawn(capped_ex, &capped_sleeper, NULL, sleep_ms, (void *)60000));
    ASSERT_GE(weft_executor_run(capped_ex, 0), 0); /* asleep */
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, cancel_then_spawn_twice, NULL));
    ASSERT_OK(pthread_join(th, NULL));
    while (!weft_task_finished(capped_sleeper))
        ASSERT_GE(weft_executor_run(capped_ex, 0), 0);
    void *res;
    ASSERT_EQ(weft_executor_try_join(capped_ex, capped_sleeper, &res), -ECANCELED);
    weft_executor_destroy(capped_ex);
}

/* The same while another thread floods the queue with cancels and the
 * host takes them in: a spawn made when no spawn is queued (the one before
 * has run) is never refused. The cap once counted a cancel being made as
 * a queued spawn, and refused some 40% of these. */
static _Atomic bool flood_stop;
static _Atomic int flood_ran;
static _Atomic long flood_refused;
static weft_cancel_handle *flood_handle;

static void *shielded_sleeper(void *arg)
{
    (void)arg;
    weft_shield_push();
    while (!atomic_load(&flood_stop))
        (void)weft_sleep_ns(200000);
    weft_shield_pop();
    return NULL;
}

static void *count_run(void *arg)
{
    (void)arg;
    atomic_fetch_add(&flood_ran, 1);
    return NULL;
}

static void *cancel_flood(void *arg)
{
    (void)arg;
    while (!atomic_load(&flood_stop))
        ASSERT_OK(weft_cancel_via(flood_handle));
    return NULL;
}

static void *spawn_one_at_a_time(void *arg)
{
    for (int i = 0; i < 3000; i++) {
        int want = atomic_load(&flood_ran) + 1;
        int r = weft_runtime_spawn(arg, NULL, count_run, NULL);
        if (r == -EAGAIN) {
            atomic_fetch_add(&flood_refused, 1);
            continue;
        }
        ASSERT_OK(r);
        while (atomic_load(&flood_ran) < want)
            sched_yield();
    }
    atomic_store(&flood_stop, true);
    return NULL;
}

TEST(queued_cancels_leave_inject_max_to_the_spawns)
{
    weft_config cfg = {.inject_max = 1};
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, &cfg));
    weft_task *t;
    ASSERT_OK(weft_executor_spawn(ex, &t, NULL, shielded_sleeper, NULL));
    ASSERT_GE(weft_executor_run(ex, 0), 0);
    ASSERT_OK(weft_cancel_handle_of(t, &flood_handle));
    pthread_t canceller, spawner;
    ASSERT_OK(pthread_create(&canceller, NULL, cancel_flood, NULL));
    ASSERT_OK(pthread_create(&spawner, NULL, spawn_one_at_a_time, weft_executor_runtime(ex)));
    int fd = weft_executor_fd(ex);
    while (!atomic_load(&flood_stop)) {
        ASSERT_GE(weft_executor_run(ex, 0), 0);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        (void)poll(&p, 1, 1);
    }
    ASSERT_OK(pthread_join(spawner, NULL));
    ASSERT_OK(pthread_join(canceller, NULL));
    weft_cancel_handle_drop(flood_handle);
    while (!weft_task_finished(t))
        ASSERT_GE(weft_executor_run(ex, 0), 0);
    void *res;
    ASSERT_EQ(weft_executor_try_join(ex, t, &res), -ECANCELED);
    weft_executor_destroy(ex);
    ASSERT_EQ(atomic_load(&flood_refused), 0);
}

/* The config's queue specs and names are copied: a host that builds its
 * config in a function of its own, or frees it after the create, leaves
 * the executor whole. Before 2026-12-07 the executor kept the caller's
 * pointers, and a spawn by queue name read the freed names. */
static void *reports_queue(void *arg)
{
    *(const char **)arg = weft_self_queue();
    return NULL;
}

TEST(an_executor_keeps_its_own_copy_of_the_queues)
{
    char *names = malloc(16);
    ASSERT(names);
    strcpy(names, "fg");
    strcpy(names + 3, "bg");
    weft_queue_spec *qs = calloc(2, sizeof *qs);
    ASSERT(qs);
    qs[0] = (weft_queue_spec){.name = names, .weight = 3};
    qs[1] = (weft_queue_spec){.name = names + 3, .weight = 1};
    weft_config *cfg = calloc(1, sizeof *cfg);
    ASSERT(cfg);
    cfg->queues = qs;
    cfg->nqueues = 2;
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, cfg));
    /* The caller's copies change and go. */
    memset(names, 'x', 15);
    names[15] = 0;
    qs[1].weight = 0;
    free(names);
    free(qs);
    free(cfg);
    const char *seen = NULL;
    weft_spawn_opts o = {.queue = "bg"};
    weft_task *t;
    ASSERT_OK(weft_executor_spawn(ex, &t, &o, reports_queue, &seen));
    while (!weft_task_finished(t))
        ASSERT_GE(weft_executor_run(ex, 0), 0);
    weft_detach(t); /* the host joins nothing: it would block its own loop */
    ASSERT(seen != NULL);
    ASSERT_STREQ(seen, "bg");
    ASSERT_EQ(weft_self_queue(), NULL); /* the host is in no task */
    weft_executor_destroy(ex);
}

TEST_MAIN(CASE(bad_calls_are_refused), CASE(not_from_inside_a_task),
          CASE(budget_bounds_a_run_of_yield_maybe_loops),
          CASE(the_host_joins_finished_tasks_without_waiting),
          CASE(a_host_spawn_makes_the_fd_readable), CASE(run_reports_a_far_timer_as_no_deadline),
          CASE(a_task_of_an_executor_moves_to_another_queue), CASE(a_huge_budget_is_no_limit),
          CASE(run_returns_the_next_deadline), CASE(budget_bounds_a_run),
          CASE(destroy_cancels_and_awaits_everything),
          CASE(budget_bounds_a_run_fed_by_outside_spawns), CASE(two_executors_on_one_thread),
          CASE(records_detached_by_the_host_are_reused), CASE(embedded_tasks_do_io),
          CASE(runtime_spawn_from_another_thread_wakes_the_host),
          CASE(wakes_from_other_threads_wake_the_host), CASE(destroy_refuses_late_outside_spawns),
          CASE(destroy_discards_queued_outside_spawns),
          CASE(host_thread_blocking_channel_calls_are_refused),
          CASE(destroy_from_a_task_aborts_with_a_message),
          CASE(calls_from_another_thread_are_refused),
          CASE(joining_a_task_of_another_runtime_is_refused),
          CASE(the_hosts_time_away_is_charged_to_no_task),
          CASE(an_executor_catches_signals_from_its_start),
          CASE(an_executor_keeps_its_own_copy_of_the_queues),
          CASE(weft_cancel_from_another_thread_is_made_by_the_host),
          CASE(a_queued_cancel_does_not_count_against_inject_max),
          CASE(queued_cancels_leave_inject_max_to_the_spawns))
