/* Panics under both policies, WEFT_ASSERT, and defers on every way out. */
#include "test.h"

static char log_buf[64];
static int nlog;

static void note(void *arg)
{
    log_buf[nlog++] = (char)(intptr_t)arg;
    log_buf[nlog] = 0;
}

static void *panicker(void *arg)
{
    ASSERT_OK(weft_defer(note, (void *)'1'));
    ASSERT_OK(weft_defer(note, (void *)'2'));
    weft_panic("boom %d", 42);
}

static void *main_catch(void *arg)
{
    weft_task *t;
    nlog = 0;
    ASSERT_OK(weft_spawn(&t, panicker, NULL));
    ASSERT_OK(weft_wait_children());
    ASSERT(weft_task_finished(t));
    ASSERT_STREQ(weft_task_panic_message(t), "boom 42");
    void *r = (void *)1;
    ASSERT_EQ(weft_join(t, &r), WEFT_EPANIC);
    ASSERT(r == NULL);
    ASSERT_STREQ(log_buf, "21"); /* LIFO */
    weft_stats st;
    ASSERT_OK(weft_stats_snapshot(&st));
    ASSERT_EQ(st.tasks_panicked, 1);
    return NULL;
}
TEST(panic_caught_runs_defers_lifo)
{
    weft_config cfg = {.on_panic = WEFT_PANIC_CATCH};
    run_main_one_worker(&cfg, main_catch, NULL);
}

static void *asserter(void *arg)
{
    int x = 1;
    WEFT_ASSERT(x == 2);
    return NULL;
}

static void *main_assert(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, asserter, NULL));
    ASSERT_OK(weft_wait_children());
    const char *m = weft_task_panic_message(t);
    ASSERT(m && strstr(m, "assertion failed: x == 2") && strstr(m, "test_panic.c"));
    ASSERT_EQ(weft_join(t, NULL), WEFT_EPANIC);
    return NULL;
}
TEST(weft_assert_panics)
{
    weft_config cfg = {.on_panic = WEFT_PANIC_CATCH};
    run_main_one_worker(&cfg, main_assert, NULL);
}

static void *main_panics(void *arg)
{
    weft_panic("main gave up");
}
TEST(panic_in_main_is_weft_run_result)
{
    weft_config cfg = {.on_panic = WEFT_PANIC_CATCH};
    ASSERT_EQ(weft_run(&cfg, main_panics, NULL, NULL), WEFT_EPANIC);
}

static int child_ended;

static void *long_child(void *arg)
{
    int r = weft_sleep_ns(10ull * 1000000000);
    child_ended = r == -ECANCELED ? 1 : 2;
    return NULL;
}

static void *panics_with_children(void *arg)
{
    ASSERT_OK(weft_spawn(NULL, long_child, NULL));
    ASSERT_OK(weft_yield());
    weft_panic("parent down");
}

static void *main_panic_children(void *arg)
{
    weft_task *t;
    child_ended = 0;
    ASSERT_OK(weft_spawn(&t, panics_with_children, NULL));
    ASSERT_EQ(weft_join(t, NULL), WEFT_EPANIC);
    ASSERT_EQ(child_ended, 1); /* cancelled and awaited before the join returned */
    return NULL;
}
TEST(panic_cancels_and_awaits_children)
{
    weft_config cfg = {.on_panic = WEFT_PANIC_CATCH};
    run_main_one_worker(&cfg, main_panic_children, NULL);
}

static void *defers_on_return(void *arg)
{
    ASSERT_OK(weft_defer(note, (void *)'a'));
    ASSERT_OK(weft_defer(note, (void *)'b'));
    ASSERT_OK(weft_defer(note, (void *)'c'));
    if (arg)
        weft_sleep_ns(10ull * 1000000000);
    return NULL;
}

static void *main_defers(void *arg)
{
    weft_task *t;
    nlog = 0;
    ASSERT_OK(weft_spawn(&t, defers_on_return, NULL));
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_STREQ(log_buf, "cba");
    nlog = 0;
    ASSERT_OK(weft_spawn(&t, defers_on_return, (void *)1));
    ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_STREQ(log_buf, "cba");
    return NULL;
}
TEST(defers_run_on_return_and_cancel)
{
    run_main_one_worker(NULL, main_defers, NULL);
}

static void say_on_stderr(void *arg)
{
    fprintf(stderr, "%s\n", (const char *)arg);
}

static void *abort_panicker(void *arg)
{
    ASSERT_OK(weft_defer(say_on_stderr, "defer 1 ran"));
    ASSERT_OK(weft_defer(say_on_stderr, "defer 2 ran"));
    weft_panic("fatal thing %s", "happened");
}

/* Spawns abort_panicker as a task named by arg. */
static void *main_abort(void *arg)
{
    weft_spawn_opts o = {.name = arg};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, abort_panicker, NULL));
    weft_join(t, NULL);
    return NULL;
}

static void run_abort(void)
{
    weft_run(NULL, main_abort, "doomed", NULL);
}

/* The name keeps the report on one line: control characters and the
 * quote show as '?', as in the task dump. */
static void run_abort_odd_name(void)
{
    weft_run(NULL, main_abort, "it's\ndoomed", NULL);
}

TEST(panic_aborts_by_default)
{
    /* The defers run before the abort, last first (DESIGN §3); they were
     * skipped. */
    expect_abort_with(run_abort, "weft: task 2 'doomed' panicked: fatal thing happened\n"
                                 "defer 2 ran\ndefer 1 ran\n");
    expect_abort_with(run_abort_odd_name, "weft: task 2 'it?s?doomed' panicked: fatal thing");
}

/* A task panicking under the abort policy with a live child skips its
 * defers, and says so: they ran while the child still read the memory the
 * first defer freed (ASan: heap-use-after-free), and waiting for the child
 * first could hang the abort. A task with no child runs them, and a
 * blocking call in one returns at once. */
static _Atomic int child_gone;

static void *child_of_panicker(void *arg)
{
    while (weft_sleep_ns(1000000) == 0)
        ;
    child_gone = 1;
    return NULL;
}

static void check_children_gone(void *arg)
{
    fprintf(stderr, "first defer ran: children %s\n", child_gone ? "gone" : "still running");
}

static void sleep_in_defer(void *arg)
{
    fprintf(stderr, "sleep in a defer: %d\n", weft_sleep_ns(10ull * 1000000000));
}

static void *panics_with_a_child(void *arg)
{
    ASSERT_OK(weft_defer(sleep_in_defer, NULL));
    ASSERT_OK(weft_defer(check_children_gone, NULL));
    ASSERT_OK(weft_spawn(NULL, child_of_panicker, NULL));
    ASSERT_OK(weft_sleep_ns(3000000)); /* the child is running */
    weft_panic("with a child");
}

static void run_panic_with_child(void)
{
    weft_run(NULL, spawn_and_join, &(task_body){panics_with_a_child, NULL}, NULL);
}

static void *panics_alone(void *arg)
{
    ASSERT_OK(weft_defer(sleep_in_defer, NULL));
    weft_panic("alone");
}

static void run_panic_alone(void)
{
    weft_run(NULL, spawn_and_join, &(task_body){panics_alone, NULL}, NULL);
}

TEST(panic_abort_skips_the_defers_of_a_task_with_live_children)
{
    char out[4096];
    int status = run_captured(run_panic_with_child, out, sizeof out);
    ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    if (!strstr(out, "panicked: with a child\nweft: its defers are not run: it has live children"))
        FAILF("stderr: %s", out);
    if (strstr(out, "defer ran") || strstr(out, "sleep in a defer"))
        FAILF("a defer ran: %s", out);
    expect_abort_with(run_panic_alone, "panicked: alone\nsleep in a defer: -125\n");
}

static void panic_outside(void)
{
    weft_panic("no task here");
}
TEST(panic_outside_a_task_aborts)
{
    expect_abort_with(panic_outside, "weft: panic outside a task: no task here");
}

static void panic_in_defer_fn(void *arg)
{
    weft_panic("again");
}

static void *double_panic(void *arg)
{
    ASSERT_OK(weft_defer(panic_in_defer_fn, NULL));
    weft_panic("first");
}

static void *main_double(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, double_panic, NULL));
    weft_join(t, NULL);
    return NULL;
}

static void run_double(void)
{
    weft_config cfg = {.on_panic = WEFT_PANIC_CATCH};
    weft_run(&cfg, main_double, NULL, NULL);
}
TEST(panic_in_a_defer_aborts)
{
    expect_abort_with(run_double, "panicked: again");
}

TEST_MAIN(CASE(panic_caught_runs_defers_lifo), CASE(weft_assert_panics),
          CASE(panic_in_main_is_weft_run_result), CASE(panic_cancels_and_awaits_children),
          CASE(defers_run_on_return_and_cancel), CASE(panic_aborts_by_default),
          CASE(panic_abort_skips_the_defers_of_a_task_with_live_children),
          CASE(panic_outside_a_task_aborts), CASE(panic_in_a_defer_aborts))
