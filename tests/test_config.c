/* Config validation: every bad field is refused with a message naming it. */
#include "test.h"

#ifdef CAN_VALGRIND
#include <sched.h>
#define RUNNING_UNDER_VALGRIND (RUNNING_ON_VALGRIND != 0)
#else
#define RUNNING_UNDER_VALGRIND false
#endif

#include "runtime/worker.h"

static void expect_einval(const weft_config *cfg, const char *needle)
{
    ASSERT_EQ(weft_run(cfg, return_arg, NULL, NULL), -EINVAL);
    const char *msg = weft_last_config_error();
    if (!strstr(msg, needle))
        FAILF("message \"%s\" lacks \"%s\"", msg, needle);
}

/* Never called: the table it is in is refused. */
static void push_nowhere(void *state, weft_sched_entity *e)
{
    (void)state;
    (void)e;
    FAILF("a refused policy was used");
}

TEST(bad_configs_are_refused_with_a_reason)
{
    weft_queue_spec dup[] = {{.name = "fg", .weight = 2}, {.name = "fg", .weight = 1}};
    weft_config c1 = {.queues = dup, .nqueues = 2};
    expect_einval(&c1, "queue 'fg': the name is used twice");
    weft_queue_spec zero[] = {{.name = "bg", .weight = 0}};
    weft_config c2 = {.queues = zero, .nqueues = 1};
    expect_einval(&c2, "queue 'bg': weight 0 is outside 1..10000");
    weft_queue_spec heavy[] = {{.name = "bg", .weight = 10001}};
    weft_config c3 = {.queues = heavy, .nqueues = 1};
    expect_einval(&c3, "weight 10001");
    weft_queue_spec many[65];
    for (int i = 0; i < 65; i++)
        many[i] = (weft_queue_spec){.name = "q", .weight = 1};
    weft_config c4 = {.queues = many, .nqueues = 65};
    expect_einval(&c4, "at most 64");
    weft_queue_spec unnamed[] = {{.name = NULL, .weight = 1}};
    weft_config c5 = {.queues = unnamed, .nqueues = 1};
    expect_einval(&c5, "queues[0]: the name is empty");
    weft_config c6 = {.stack_size = 100};
    expect_einval(&c6, "stack_size");
    weft_config c7 = {.stack_size = (size_t)1 << 31};
    expect_einval(&c7, "stack_size");
    weft_config c8 = {.ring_entries = 1u << 20};
    expect_einval(&c8, "ring_entries");
    weft_config c9 = {.orphans = (weft_orphan_policy)7};
    expect_einval(&c9, "orphans");
    weft_config c10 = {.on_panic = (weft_panic_policy)7};
    expect_einval(&c10, "on_panic");
    weft_config c10b = {.wake_placement = (weft_wake_placement)2};
    expect_einval(&c10b, "wake_placement");
    weft_config c11 = {.nqueues = 2};
    expect_einval(&c11, "queues: NULL");
    weft_config c12 = {.on_cleanup_error = (weft_cleanup_policy)9};
    expect_einval(&c12, "on_cleanup_error");
    weft_config c12b = {.ncatch_signals = 1};
    expect_einval(&c12b, "catch_signals: NULL with ncatch_signals = 1");
    const int uncatchable[] = {SIGINT, SIGKILL};
    weft_config c12c = {.catch_signals = uncatchable, .ncatch_signals = 2};
    expect_einval(&c12c, "catch_signals[1]: 9 is no signal weft_signal_wait takes");
    const int reserved[] = {SIGRTMIN - 1}; /* the C library's own */
    weft_config c12d = {.catch_signals = reserved, .ncatch_signals = 1};
    expect_einval(&c12d, "catch_signals[0]");
    static const weft_policy no_pop = {.name = "half", .push = push_nowhere};
    weft_queue_spec popless[] = {{.name = "q", .weight = 1, .policy = &no_pop}};
    weft_config c13 = {.queues = popless, .nqueues = 1};
    expect_einval(&c13, "queue 'q': its policy 'half' has no pop");
    static const weft_policy nothing_set = {0};
    weft_queue_spec empty_policy[] = {{.name = "q", .weight = 1, .policy = &nothing_set}};
    weft_config c14 = {.queues = empty_policy, .nqueues = 1};
    expect_einval(&c14, "queue 'q': its policy has no push");
    /* Beyond a minute the virtual deadlines (slice x 10000) could wrap. */
    weft_config c15 = {.min_slice_ns = (uint64_t)1 << 54};
    expect_einval(&c15, "min_slice_ns: 18014398509481984 is more than a minute");
    weft_config c16 = {.io_poll_interval_ns = UINT64_MAX};
    expect_einval(&c16, "io_poll_interval_ns");
    weft_config c17 = {.sched_latency_ns = 61ull * 1000 * 1000 * 1000};
    expect_einval(&c17, "sched_latency_ns");
    /* A policy_config the policy's init refuses: said on this thread, with
     * one worker or several (it said nothing), and by an executor too. */
    static const weft_qlas_config slow = {.quantum_ns = UINT64_MAX};
    weft_queue_spec bad_qlas[] = {
        {.name = "q", .weight = 1, .policy = &weft_policy_qlas, .policy_config = &slow}};
    for (unsigned workers = 1; workers <= 2; workers++) {
        weft_config c18 = {.workers = workers, .queues = bad_qlas, .nqueues = 1};
        expect_einval(&c18, "queue 'q': policy 'qlas' refused its policy_config");
    }
    /* The policies that take no config refuse one: it was meant for
     * another policy (a QLAS config left behind when switching to LAS). */
    static const weft_qlas_config stray = {.quantum_ns = 1000000};
    const struct {
        const weft_policy *p;
        const char *msg;
    } none[] = {{&weft_policy_las, "queue 'q': policy 'las' refused its policy_config"},
                {&weft_policy_arrival_fifo, "policy 'arrival_fifo' refused"},
                {&weft_policy_runnable_fifo, "policy 'runnable_fifo' refused"},
                {NULL, "policy 'runnable_fifo' refused"}};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        weft_queue_spec q[] = {
            {.name = "q", .weight = 1, .policy = none[i].p, .policy_config = &stray}};
        weft_config c = {.queues = q, .nqueues = 1};
        expect_einval(&c, none[i].msg);
    }
    weft_executor *ex;
    weft_config c19 = {.queues = bad_qlas, .nqueues = 1};
    ASSERT_EQ(weft_executor_create(&ex, &c19), -EINVAL);
    ASSERT(strstr(weft_last_config_error(), "policy 'qlas' refused") != NULL);
    ASSERT_EQ(weft_run(NULL, NULL, NULL, NULL), -EINVAL);
    ASSERT_STREQ(weft_last_config_error(), "main_fn: NULL"); /* it said nothing */
}

/* A policy with only the two required hooks: a LIFO stack through link[0],
 * its state zeroed by the runtime in place of an init. */
static void stack_push(void *state, weft_sched_entity *e)
{
    weft_sched_entity **top = state;
    e->link[0] = *top;
    *top = e;
}

static weft_sched_entity *stack_pop(void *state)
{
    weft_sched_entity **top = state;
    weft_sched_entity *e = *top;
    if (e)
        *top = e->link[0];
    return e;
}

/* Spawns n tasks of fn, task i with argument i, and checks that each one
 * joins with i as its result. */
static void spawn_join_each_returns_its_index(weft_fn fn, int n)
{
    weft_task *ts[32];
    ASSERT_LE(n, 32);
    for (int i = 0; i < n; i++)
        ASSERT_OK(weft_spawn(&ts[i], fn, (void *)(intptr_t)i));
    for (int i = 0; i < n; i++) {
        void *r;
        ASSERT_OK(weft_join(ts[i], &r));
        ASSERT_EQ((intptr_t)r, i);
    }
}

/* The order the children of spawn_ten_in_order ran in. */
static int ran_order[10], nran;

static void *note_run(void *arg)
{
    ran_order[nran++] = (int)(intptr_t)arg;
    return arg;
}

static void *spawn_ten_in_order(void *arg)
{
    (void)arg;
    nran = 0;
    spawn_join_each_returns_its_index(note_run, 10);
    return (void *)7;
}

TEST(a_policy_with_only_push_and_pop_runs)
{
    static const weft_policy minimal = {.name = "stack",
                                        .state_size = sizeof(weft_sched_entity *),
                                        .push = stack_push,
                                        .pop = stack_pop};
    weft_queue_spec qs[] = {{.name = "q", .weight = 1, .policy = &minimal}};
    weft_config cfg = {.workers = 1, .queues = qs, .nqueues = 1};
    void *r;
    ASSERT_OK(weft_run(&cfg, spawn_ten_in_order, NULL, &r));
    ASSERT_EQ((intptr_t)r, 7);
    /* The policy's own order: the last pushed runs first (main parks in
     * its first join with all ten queued), which FIFO would not give. */
    ASSERT_EQ(nran, 10);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(ran_order[i], 9 - i);
}

static void *count_workers(void *arg);

static void *yield_sleep_return(void *arg)
{
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(weft_yield());
        ASSERT_OK(weft_sleep_ns(100000 + (uint64_t)(intptr_t)arg * 1000));
    }
    return arg;
}

static void *block_ms(void *arg)
{
    usleep((useconds_t)(uintptr_t)arg * 1000);
    return arg;
}

/* Work that makes idle workers park: tasks that yield, sleep on the timers
 * and end (a stack reused by the next ones), joins that wake a task of
 * another worker, and a blocking-pool job whose thread must run while every
 * worker waits for it. */
static void *park_often(void *arg)
{
    /* The ring sleeps where it was asked to: without DEFER_TASKRUN when
     * it parks in ppoll, which must see completions posted meanwhile. */
    const char *park = getenv("WEFT_PARK");
    bool want_poll = park && *park ? strcmp(park, "poll") == 0 : RUNNING_UNDER_VALGRIND;
    weft__ring *ring = &weft__worker_self()->ring;
    ASSERT_EQ(ring->park_in_poll, want_poll);
    if (want_poll)
        ASSERT(!(ring->setup_flags & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN)));
    (void)arg;
    for (int round = 0; round < 2; round++)
        spawn_join_each_returns_its_index(yield_sleep_return, 20);
    void *r;
    ASSERT_OK(weft_spawn_blocking(block_ms, (void *)20, &r));
    ASSERT_EQ((uintptr_t)r, 20);
    return NULL;
}

/* Runs body with $name set to value (NULL: unset), then puts it back. */
static void with_env(const char *name, const char *value, void (*body)(void))
{
    const char *old = getenv(name);
    char *saved = old ? strdup(old) : NULL;
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
    body();
    if (saved) {
        setenv(name, saved, 1);
        free(saved);
    } else {
        unsetenv(name);
    }
}

static void run_park_often_on_1_and_2_workers(void)
{
    for (unsigned w = 1; w <= 2; w++) {
        weft_config cfg = {.workers = w};
        ASSERT_OK(weft_run(&cfg, park_often, NULL, NULL));
    }
}

static void refuse_bad_park(void)
{
    weft_config cfg = {.workers = 1};
    ASSERT_EQ(weft_run(&cfg, return_arg, NULL, NULL), -EINVAL);
    ASSERT(strstr(weft_last_config_error(), "WEFT_PARK") != NULL);
}

/* $WEFT_PARK=poll: workers sleep in ppoll on their ring's fd (the default
 * under valgrind). Wakes from other workers and from the blocking pool's
 * thread end that sleep as they end an io_uring_enter. */
TEST(workers_parked_in_ppoll_wake_for_timers_other_workers_and_the_pool)
{
    with_env("WEFT_PARK", "poll", run_park_often_on_1_and_2_workers);
    with_env("WEFT_PARK", "enter", run_park_often_on_1_and_2_workers);
    with_env("WEFT_PARK", "sometimes", refuse_bad_park);
}

/* Under valgrind, whose lock io_uring_enter would keep, workers park in
 * ppoll (docs/stacks.md): a run of one or two workers whose workers park
 * while the others, or the blocking pool's thread, have work must finish.
 * This case runs itself under valgrind (memcheck), bounded by timeout(1) so
 * that a hang cannot outlive it, and fails on any error memcheck reports. */
TEST(under_valgrind_workers_park_without_hanging_and_no_memcheck_error)
{
#ifndef CAN_VALGRIND
    printf("  sanitizer build or no valgrind headers: valgrind cannot run this binary\n");
    exit(TEST_SKIP_CODE);
#else
    if (RUNNING_ON_VALGRIND) {
        /* The default worker count is the CPU count there too. */
        cpu_set_t set;
        ASSERT_OK(sched_getaffinity(0, sizeof set, &set));
        weft_config cfg = {0};
        void *n;
        ASSERT_OK(weft_run(&cfg, count_workers, NULL, &n));
        ASSERT_EQ((uintptr_t)n, (uintptr_t)CPU_COUNT(&set));
        run_park_often_on_1_and_2_workers();
        return;
    }
    unsetenv("WEFT_WORKERS");
    unsetenv("WEFT_PARK");
    rerun_under_valgrind("under_valgrind_workers_park_without_hanging_and_no_memcheck_error", 150);
#endif
}

TEST(good_configs_run)
{
    weft_queue_spec qs[] = {{.name = "fg", .weight = 9}, {.name = "bg", .weight = 1}};
    weft_config cfg = {.queues = qs, .nqueues = 2, .stack_size = 64 * 1024, .ring_entries = 64};
    void *r;
    ASSERT_OK(weft_run(&cfg, return_arg, (void *)3, &r));
    ASSERT_EQ((intptr_t)r, 3);
    ASSERT_STREQ(weft_last_config_error(), "");
    weft_config one = {.workers = 1};
    ASSERT_OK(weft_run(&one, return_arg, NULL, NULL));
    weft_config zero = {0};
    ASSERT_OK(weft_run(&zero, return_arg, NULL, NULL));
    /* The largest ring the config accepts: its completion queue (4x) is
     * clamped to the kernel's limit rather than refused. */
    weft_config big = {.ring_entries = 32768};
    ASSERT_OK(weft_run(&big, return_arg, NULL, NULL));
    big.ring_entries = 16385;
    ASSERT_OK(weft_run(&big, return_arg, NULL, NULL));
}

static void *count_workers(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)weft_worker_count();
}

static void four_workers_from_env(void)
{
    weft_config zero = {0};
    void *n;
    ASSERT_OK(weft_run(&zero, count_workers, NULL, &n));
    ASSERT_EQ((uintptr_t)n, 4);
}

static void bad_workers_env_refused(void)
{
    weft_config zero = {0};
    ASSERT_EQ(weft_run(&zero, return_arg, NULL, NULL), -EINVAL);
    ASSERT(strstr(weft_last_config_error(), "WEFT_WORKERS") != NULL);
}

TEST(worker_counts)
{
    weft_config cfg = {.workers = 3};
    void *n;
    ASSERT_OK(weft_run(&cfg, count_workers, NULL, &n));
    ASSERT_EQ((uintptr_t)n, 3);
    cfg.workers = 1024; /* each worker's ring needs its own tag, of 1,023 */
    ASSERT_EQ(weft_run(&cfg, return_arg, NULL, NULL), -EINVAL);
    ASSERT_STREQ(weft_last_config_error(), "workers: 1024 is more than 1023");
    /* 0: $WEFT_WORKERS, checked like the field. */
    with_env("WEFT_WORKERS", "4", four_workers_from_env);
    with_env("WEFT_WORKERS", "many", bad_workers_env_refused);
    /* strtoul would read each of these as a count. */
    with_env("WEFT_WORKERS", "-18446744073709551615", bad_workers_env_refused);
    with_env("WEFT_WORKERS", " 2", bad_workers_env_refused);
    with_env("WEFT_WORKERS", "+2", bad_workers_env_refused);
}

static void *spawn_on_queue(void *arg)
{
    weft_spawn_opts o = {.queue = "bg"};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, return_arg, NULL));
    ASSERT_OK(weft_join(t, NULL));
    o.queue = "nope";
    ASSERT_EQ(weft_spawn_ex(&t, &o, return_arg, NULL), -ENOENT);
    return NULL;
}
TEST(queue_names_are_validated_at_spawn)
{
    weft_queue_spec qs[] = {{.name = "fg", .weight = 9}, {.name = "bg", .weight = 1}};
    weft_config cfg = {.queues = qs, .nqueues = 2};
    run_main(&cfg, spawn_on_queue, NULL);
}

TEST_MAIN(CASE(bad_configs_are_refused_with_a_reason), CASE(a_policy_with_only_push_and_pop_runs),
          CASE(workers_parked_in_ppoll_wake_for_timers_other_workers_and_the_pool),
          CASE(under_valgrind_workers_park_without_hanging_and_no_memcheck_error),
          CASE(good_configs_run), CASE(worker_counts), CASE(queue_names_are_validated_at_spawn))
