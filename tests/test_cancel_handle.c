/* Cancel handles: cancelling a task that the caller does not join. */
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

#define LONG_SLEEP_NS (600ull * 1000000000)

static _Atomic int sleep_result = 1;
static _Atomic bool sleeper_started;

static void *sleeps_long(void *arg)
{
    atomic_store(&sleeper_started, true);
    atomic_store(&sleep_result, weft_sleep_ns(LONG_SLEEP_NS));
    return arg;
}

/* Until the sleeper has started: one cancelled before its first run never
 * runs, and these cases are about running tasks. */
static void await_sleeper(void)
{
    for (int i = 0; !atomic_load(&sleeper_started) && i < 100000; i++)
        ASSERT_OK(weft_sleep_ns(100000));
    ASSERT(atomic_load(&sleeper_started));
}

static void reset_sleeper(void)
{
    atomic_store(&sleep_result, 1);
    atomic_store(&sleeper_started, false);
}

/* The broker's case: the spawner detaches its subscriber and keeps only a
 * way to stop it; another task stops it. */
static void *stops_it(void *arg)
{
    weft_cancel_handle *h = arg;
    ASSERT(!weft_cancel_handle_finished(h));
    ASSERT_OK(weft_cancel_via(h));
    ASSERT_OK(weft_cancel_via(h)); /* idempotent */
    for (int i = 0; !weft_cancel_handle_finished(h) && i < 100000; i++)
        ASSERT_OK(weft_sleep_ns(100000));
    ASSERT(weft_cancel_handle_finished(h));
    weft_cancel_handle_drop(h);
    return NULL;
}

static void *main_detached_then_stopped(void *arg)
{
    reset_sleeper();
    weft_task *sub;
    ASSERT_OK(weft_spawn(&sub, sleeps_long, NULL));
    weft_cancel_handle *h;
    ASSERT_OK(weft_cancel_handle_of(sub, &h));
    ASSERT_EQ(weft_cancel_handle_task_id(h), weft_task_id(sub));
    weft_detach(sub); /* the cancel handle stays valid */
    await_sleeper();
    weft_task *stopper;
    ASSERT_OK(weft_spawn(&stopper, stops_it, h));
    ASSERT_OK(weft_join(stopper, NULL));
    ASSERT_EQ(atomic_load(&sleep_result), -ECANCELED);
    return NULL;
}
TEST(a_cancel_handle_stops_a_detached_task)
{
    run_main(NULL, main_detached_then_stopped, NULL);
}

/* A task hands out its own handle; the holder cancels it, and the join,
 * the handle's view and a cancel after the end agree. */
static weft_cancel_handle *_Atomic handed_out;

static void *hands_out_itself(void *arg)
{
    weft_cancel_handle *h;
    ASSERT_OK(weft_cancel_handle_self(&h));
    ASSERT_EQ(weft_cancel_handle_task_id(h), weft_self_id());
    atomic_store(&handed_out, h);
    return sleeps_long(arg);
}

static void *main_self_handle(void *arg)
{
    reset_sleeper();
    atomic_store(&handed_out, NULL);
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, hands_out_itself, NULL));
    await_sleeper();
    weft_cancel_handle *h = atomic_load(&handed_out);
    ASSERT(h != NULL);
    weft_cancel_handle *copy;
    ASSERT_OK(weft_cancel_handle_dup(h, &copy));
    ASSERT_EQ(weft_cancel_handle_task_id(copy), weft_task_id(t));
    uint64_t id = weft_task_id(t);
    ASSERT_OK(weft_cancel_via(copy));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&sleep_result), -ECANCELED);
    /* Joined: the handles still say what became of it. */
    ASSERT(weft_cancel_handle_finished(h));
    ASSERT_EQ(weft_cancel_handle_task_id(h), id);
    ASSERT_OK(weft_cancel_via(h)); /* nothing left to cancel */
    weft_cancel_handle_drop(copy);
    ASSERT(weft_cancel_handle_finished(h)); /* the other one keeps the record */
    weft_cancel_handle_drop(h);
    return NULL;
}
TEST(a_task_hands_out_its_own_cancel_handle)
{
    run_main(NULL, main_self_handle, NULL);
}

/* A handle kept past the join names its task, never a later one that
 * reuses memory: cancels through it touch nothing else. */
static void *main_outlives_the_join(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, return_arg, (void *)7));
    weft_cancel_handle *h;
    ASSERT_OK(weft_cancel_handle_of(t, &h));
    void *r;
    ASSERT_OK(weft_join(t, &r));
    ASSERT_EQ((intptr_t)r, 7);
    uint64_t id = weft_cancel_handle_task_id(h);
    enum { N = 64 };
    weft_task *later[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(weft_spawn(&later[i], return_arg, (void *)(intptr_t)(100 + i)));
    for (int i = 0; i < N; i++)
        ASSERT((void *)later[i] != (void *)h); /* the record is still the old task's */
    ASSERT_OK(weft_cancel_via(h));
    ASSERT(weft_cancel_handle_finished(h));
    ASSERT_EQ(weft_cancel_handle_task_id(h), id);
    for (int i = 0; i < N; i++) {
        ASSERT_OK(weft_join(later[i], &r));
        ASSERT_EQ((intptr_t)r, 100 + i);
    }
    weft_cancel_handle_drop(h);
    return NULL;
}
TEST(a_cancel_handle_outlives_the_join_and_names_no_other_task)
{
    run_main(NULL, main_outlives_the_join, NULL);
}

/* A cancel through a handle reaches the subtree, as weft_cancel does. */
static _Atomic int grandchild_result = 1;

static void *grandchild(void *arg)
{
    atomic_store(&grandchild_result, weft_sleep_ns(LONG_SLEEP_NS));
    return arg;
}

static void *spawns_grandchild_and_sleeps(void *arg)
{
    ASSERT_OK(weft_spawn(NULL, grandchild, NULL));
    return sleeps_long(arg);
}

static void *main_subtree(void *arg)
{
    reset_sleeper();
    atomic_store(&grandchild_result, 1);
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, spawns_grandchild_and_sleeps, NULL));
    weft_cancel_handle *h;
    ASSERT_OK(weft_cancel_handle_of(t, &h));
    await_sleeper();
    ASSERT_OK(weft_cancel_via(h));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    /* The default orphan policy awaits the child before its parent ends. */
    ASSERT_EQ(atomic_load(&grandchild_result), -ECANCELED);
    weft_cancel_handle_drop(h);
    return NULL;
}
TEST(a_cancel_through_a_handle_reaches_the_subtree)
{
    run_main(NULL, main_subtree, NULL);
}

/* From a thread that runs no worker: done, as weft_cancel is (with one
 * worker, by an errand on it). Dropping there is fine too. */
static void *cancel_and_drop_from_a_thread(void *arg)
{
    weft_cancel_handle *h = arg;
    int r = weft_cancel_via(h);
    weft_cancel_handle_drop(h);
    return (void *)(intptr_t)r;
}

static void *main_foreign_thread(void *arg)
{
    bool several = arg != NULL;
    reset_sleeper();
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, sleeps_long, NULL));
    await_sleeper();
    weft_cancel_handle *h, *kept;
    ASSERT_OK(weft_cancel_handle_of(t, &h));
    ASSERT_OK(weft_cancel_handle_dup(h, &kept));
    pthread_t th;
    void *r;
    ASSERT_OK(pthread_create(&th, NULL, cancel_and_drop_from_a_thread, h));
    ASSERT_OK(pthread_join(th, &r));
    ASSERT_OK((int)(intptr_t)r);
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&sleep_result), -ECANCELED);
    /* The last reference, dropped on a thread of no worker: the record
     * goes back through its worker (LSan sees a leak otherwise). */
    ASSERT_OK(pthread_create(&th, NULL, cancel_and_drop_from_a_thread, kept));
    ASSERT_OK(pthread_join(th, &r));
    ASSERT_OK((int)(intptr_t)r); /* finished: nothing to cancel */
    (void)several;
    return NULL;
}
TEST(a_cancel_handle_follows_the_thread_rules_of_weft_cancel)
{
    run_main_one_worker(NULL, main_foreign_thread, NULL);
    weft_config two = {.workers = 2};
    run_main(&two, main_foreign_thread, (void *)1);
}

/* Bad input gets an error, never a crash. */
static void *main_bad_input(void *arg)
{
    weft_cancel_handle *h = NULL;
    ASSERT_EQ(weft_cancel_handle_of(NULL, &h), -EINVAL);
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, return_arg, NULL));
    ASSERT_EQ(weft_cancel_handle_of(t, NULL), -EINVAL);
    ASSERT_EQ(weft_cancel_handle_self(NULL), -EINVAL);
    ASSERT_EQ(weft_cancel_handle_dup(NULL, &h), -EINVAL);
    ASSERT_OK(weft_cancel_handle_of(t, &h));
    ASSERT_EQ(weft_cancel_handle_dup(h, NULL), -EINVAL);
    ASSERT_EQ(weft_cancel_via(NULL), -EINVAL);
    ASSERT(!weft_cancel_handle_finished(NULL));
    ASSERT_EQ(weft_cancel_handle_task_id(NULL), 0);
    weft_cancel_handle_drop(NULL);
    ASSERT_OK(weft_join(t, NULL));
#ifndef NDEBUG
    /* t is joined: its join handle makes no cancel handle. */
    weft_cancel_handle *stale;
    ASSERT_EQ(weft_cancel_handle_of(t, &stale), WEFT_EHANDLE);
#endif
    weft_cancel_handle_drop(h);
#ifndef NDEBUG
    /* Dropped, and the record freed with it (no task has taken it since:
     * none was spawned). */
    ASSERT_EQ(weft_cancel_via(h), WEFT_EHANDLE);
#endif
    return NULL;
}
TEST(cancel_handles_refuse_bad_input)
{
    weft_cancel_handle *h;
    ASSERT_EQ(weft_cancel_handle_self(&h), -EPERM); /* outside a task */
    run_main(NULL, main_bad_input, NULL);
}

TEST_MAIN(CASE(a_cancel_handle_stops_a_detached_task), CASE(a_task_hands_out_its_own_cancel_handle),
          CASE(a_cancel_handle_outlives_the_join_and_names_no_other_task),
          CASE(a_cancel_through_a_handle_reaches_the_subtree),
          CASE(a_cancel_handle_follows_the_thread_rules_of_weft_cancel),
          CASE(cancel_handles_refuse_bad_input))
