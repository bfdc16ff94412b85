/* Cancellation of single tasks, shields and deadlines. */
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

#include "common/fault.h"
#include "runtime/worker.h"
#include "task/task.h"

static int ran;

static void *mark_ran(void *arg)
{
    ran = 1;
    return arg;
}

static void *main_cancel_before_run(void *arg)
{
    weft_task *t;
    ran = 0;
    ASSERT_OK(weft_spawn(&t, mark_ran, (void *)1));
    ASSERT_OK(weft_cancel(t));
    ASSERT_OK(weft_cancel(t)); /* idempotent */
    void *r = (void *)1;
    ASSERT_EQ(weft_join(t, &r), -ECANCELED);
    ASSERT(r == NULL);
    ASSERT_EQ(ran, 0);
    return NULL;
}
TEST(cancel_before_first_run_never_runs)
{
    run_main_one_worker(NULL, main_cancel_before_run, NULL);
}

static int sleep_result;
static _Atomic int sleeper_started;

static void *sleeper_reporting(void *arg)
{
    sleeper_started = 1;
    sleep_result = weft_sleep_ns(120ull * 1000000000);
    return (void *)42; /* ignored: the task was cancelled while running */
}

static void *main_cancel_sleeping(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, sleeper_reporting, NULL));
    while (!sleeper_started) /* let it start sleeping (maybe on another worker) */
        ASSERT_OK(weft_yield());
    uint64_t t0 = weft_now_ns();
    ASSERT_OK(weft_cancel(t));
    void *r;
    ASSERT_EQ(weft_join(t, &r), -ECANCELED);
    ASSERT(r == NULL);
    ASSERT_EQ(sleep_result, -ECANCELED);
    ASSERT_LT(weft_now_ns() - t0, 60ull * 1000000000); /* not the full 120 s */
    return NULL;
}
TEST(cancel_interrupts_sleep)
{
    run_main_one_worker(NULL, main_cancel_sleeping, NULL);
}

/* From a thread that runs no worker of t's runtime: with several workers
 * the walk takes the tree lock; with one (whose tree has no lock) an
 * errand makes the cancel on the worker. Either way the call says 0 and
 * the task ends cancelled. (Before 2026-12-07 one worker said -EPERM.) */
static _Atomic int far_sleep_result = 1;
static _Atomic bool far_started;

static void *sleeps_for_the_far_cancel(void *arg)
{
    (void)arg;
    atomic_store(&far_started, true);
    atomic_store(&far_sleep_result, weft_sleep_ns(600ull * 1000000000));
    return NULL;
}

static void *cancel_from_a_thread(void *arg)
{
    return (void *)(intptr_t)weft_cancel(arg);
}

/* The same with its one allocation failing (one worker: the errand's
 * request; the worker thread waits in pthread_join meanwhile, so the
 * failure is this call's). */
static void *cancel_from_a_thread_without_memory(void *arg)
{
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    int r = weft_cancel(arg);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    return (void *)(intptr_t)r;
}

static void *main_foreign_cancel(void *arg)
{
    bool several = arg != NULL;
    weft_task *t;
    atomic_store(&far_sleep_result, 1);
    atomic_store(&far_started, false);
    ASSERT_OK(weft_spawn(&t, sleeps_for_the_far_cancel, NULL));
    /* It starts (a task cancelled before its first run never runs). */
    for (int i = 0; !atomic_load(&far_started) && i < 100000; i++)
        ASSERT_OK(weft_sleep_ns(100000));
    ASSERT(atomic_load(&far_started));
    pthread_t th;
    void *r;
    if (!several) {
        ASSERT_OK(pthread_create(&th, NULL, cancel_from_a_thread_without_memory, t));
        ASSERT_OK(pthread_join(th, &r));
        ASSERT_EQ((intptr_t)r, -ENOMEM);
        ASSERT_OK(weft_sleep_ns(1000000)); /* nothing was queued: it sleeps on */
        ASSERT(!weft_task_finished(t));
    }
    ASSERT_OK(pthread_create(&th, NULL, cancel_from_a_thread, t));
    ASSERT_OK(pthread_join(th, &r));
    ASSERT_OK((int)(intptr_t)r);
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&far_sleep_result), -ECANCELED);
    return NULL;
}
TEST(cancel_from_another_thread_reaches_the_task)
{
    run_main_one_worker(NULL, main_foreign_cancel, NULL);
    weft_config two = {.workers = 2};
    run_main(&two, main_foreign_cancel, (void *)1);
}

/* After the main task has finished, an orphan the runtime adopted runs on,
 * and weft_run waits for it: a cancel from another thread must still reach
 * it (one worker: queued for the worker). Before the queue took cancels
 * after the main task, the call said 0 and the run never ended. */
static _Atomic(weft_cancel_handle *) orphan_handle;
static _Atomic bool orphan_after_main, orphan_handle_dropped;
static _Atomic int orphan_result = 1;

static void *adopted_orphan(void *arg)
{
    (void)arg;
    weft__runtime *rt = (weft__runtime *)weft_runtime_current();
    while (!atomic_load_explicit(&rt->main_done, memory_order_acquire))
        ASSERT_OK(weft_sleep_ns(1000000));
    atomic_store(&orphan_after_main, true);
    int r = weft_sleep_ns(600ull * 1000000000);
    atomic_store(&orphan_result, r);
    /* The canceller drops its handle before the runtime may end. */
    weft_shield_push();
    for (int i = 0; i < 10000 && !atomic_load(&orphan_handle_dropped); i++)
        (void)weft_sleep_ns(1000000);
    weft_shield_pop();
    return NULL;
}

static void *orphan_parent(void *arg)
{
    (void)arg;
    weft_task *o;
    ASSERT_OK(weft_spawn(&o, adopted_orphan, NULL));
    weft_cancel_handle *h;
    ASSERT_OK(weft_cancel_handle_of(o, &h));
    atomic_store(&orphan_handle, h);
    weft_detach(o);
    return NULL; /* o is adopted */
}

static void *cancel_the_orphan_after_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000 && !atomic_load(&orphan_after_main); i++)
        usleep(1000);
    weft_cancel_handle *h = atomic_load(&orphan_handle);
    intptr_t r = weft_cancel_via(h);
    weft_cancel_handle_drop(h);
    atomic_store(&orphan_handle_dropped, true);
    return (void *)r;
}

static void *main_leaves_an_orphan(void *arg)
{
    weft_task *p;
    ASSERT_OK(weft_spawn(&p, orphan_parent, NULL));
    ASSERT_OK(weft_join(p, NULL));
    ASSERT_OK(pthread_create(arg, NULL, cancel_the_orphan_after_main, NULL));
    return NULL;
}

TEST(a_cancel_from_another_thread_reaches_an_orphan_after_the_main_task)
{
    weft_config cfg = {.workers = 1, .orphans = WEFT_ORPHANS_ADOPT};
    pthread_t th;
    ASSERT_OK(weft_run(&cfg, main_leaves_an_orphan, &th, NULL));
    void *r;
    ASSERT_OK(pthread_join(th, &r));
    ASSERT(atomic_load(&orphan_after_main));
    ASSERT_OK((int)(intptr_t)r);
    ASSERT_EQ(atomic_load(&orphan_result), -ECANCELED);
}

static void *main_cancel_after_finish(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, mark_ran, (void *)5));
    ASSERT_OK(weft_yield());
    ASSERT(weft_task_finished(t));
    ASSERT_OK(weft_cancel(t));
    void *r;
    ASSERT_OK(weft_join(t, &r)); /* the real result stands */
    ASSERT_EQ((intptr_t)r, 5);
    return NULL;
}
TEST(cancel_after_finish_keeps_result)
{
    run_main_one_worker(NULL, main_cancel_after_finish, NULL);
}

static void *self_cancel(void *arg)
{
    weft_task **slot = arg;
    while (!*slot)
        weft_yield();
    ASSERT_OK(weft_cancel(*slot));
    ASSERT(weft_cancelled());
    ASSERT_EQ(weft_yield(), -ECANCELED);
    ASSERT_EQ(weft_sleep_ns(1000), -ECANCELED);
    return NULL;
}

static void *main_self_cancel(void *arg)
{
    static weft_task *slot;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, self_cancel, &slot));
    slot = t;
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    return NULL;
}
TEST(cancelled_task_sees_ecanceled_everywhere)
{
    run_main_one_worker(NULL, main_self_cancel, NULL);
}

static int shielded_sleep, after_shield;
static _Atomic int shield_up;

static void *shielded(void *arg)
{
    ASSERT_OK(weft_shield_push());
    shield_up = 1;
    shielded_sleep = weft_sleep_ns(20000000);
    ASSERT_OK(weft_shield_pop());
    after_shield = weft_sleep_ns(1000000000);
    return NULL;
}

static void *main_shield(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, shielded, NULL));
    while (!shield_up)
        ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(shielded_sleep, 0);
    ASSERT_EQ(after_shield, -ECANCELED);
    ASSERT_EQ(weft_shield_pop(), -EINVAL);
    return NULL;
}
TEST(shield_defers_cancellation)
{
    run_main_one_worker(NULL, main_shield, NULL);
}

static void *main_deadlines(void *arg)
{
    uint64_t now = weft_now_ns();
    ASSERT_OK(weft_deadline_push(now + 20000000));
    ASSERT_EQ(weft_sleep_ns(10ull * 1000000000), -ETIMEDOUT);
    ASSERT_GE(weft_now_ns(), now + 20000000);
    /* Nested: an inner later deadline does not extend the outer one. */
    ASSERT_OK(weft_deadline_push(now + 60ull * 1000000000));
    ASSERT_EQ(weft_sleep_ns(1000000), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_deadline_pop(), -EINVAL);
    /* A sleep that ends before the deadline is a plain sleep. */
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 30ull * 1000000000));
    ASSERT_OK(weft_sleep_ns(1000000));
    ASSERT_OK(weft_deadline_pop());
    /* Shields do not stop deadlines. */
    ASSERT_OK(weft_shield_push());
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 5000000));
    ASSERT_EQ(weft_sleep_ns(1000000000), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_shield_pop());
    for (int i = 0; i < 16; i++)
        ASSERT_OK(weft_deadline_push(UINT64_MAX));
    ASSERT_EQ(weft_deadline_push(UINT64_MAX), -EOVERFLOW);
    return NULL;
}
TEST(deadlines_nest_and_time_out)
{
    run_main_one_worker(NULL, main_deadlines, NULL);
}

/* Moving a deadline later (an idle timeout after each read, docs/tasks.md):
 * pop, then push, which must not fail even with every allocation failing.
 * The sleep outlasts the first deadline: only the moved one lets it end
 * normally. */
static void *main_deadline_moved(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 20000000));
    ASSERT_OK(weft_deadline_pop());
    weft__fault_arm_from(WEFT_FAULT_ALLOC, 1);
    int r = weft_deadline_push(weft_now_ns() + 60ull * 1000000000);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_OK(r);
    ASSERT_OK(weft_sleep_ns(40000000));
    /* And earlier again: it applies at once. */
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 1000000));
    ASSERT_EQ(weft_sleep_ns(60ull * 1000000000), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_deadline_pop(), -EINVAL);
    return NULL;
}
TEST(a_deadline_moves_with_pop_and_push)
{
    run_main_one_worker(NULL, main_deadline_moved, NULL); /* faults count process-wide */
}

/* weft_deadline_push_in counts from now, and a sum past the clock's range
 * is a deadline that never comes (not one that wrapped into the past). */
static void *main_deadline_in(void *arg)
{
    (void)arg;
    uint64_t start = weft_now_ns();
    ASSERT_OK(weft_deadline_push_in(20000000));
    uint64_t end = weft_now_ns();
    /* The deadline set is the clock reading in between, plus 20 ms. */
    uint64_t set = weft__task_current()->deadline;
    ASSERT_GE(set, start + 20000000);
    ASSERT_LE(set, end + 20000000);
    ASSERT_EQ(weft_sleep_ns(10ull * 1000000000), -ETIMEDOUT);
    ASSERT_GE(weft_now_ns(), start + 20000000);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_deadline_push_in(UINT64_MAX));
    ASSERT_OK(weft_sleep_ns(1000000));
    ASSERT_OK(weft_deadline_push_in(UINT64_MAX - weft_now_ns() / 2));
    ASSERT_OK(weft_sleep_ns(1000000));
    /* 0 is now: the next blocking call is already late. */
    ASSERT_OK(weft_deadline_push_in(0));
    ASSERT_EQ(weft_nop(), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_deadline_pop(), -EINVAL);
    return NULL;
}
TEST(relative_deadlines_count_from_now)
{
    ASSERT_EQ(weft_deadline_push_in(1000), -EPERM);
    run_main_one_worker(NULL, main_deadline_in, NULL);
}

/* weft_deadline_move: the innermost deadline moves later or earlier in
 * one call, still bounded by the outer ones. */
static void *main_deadline_move(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_deadline_move_in(1000), -EINVAL); /* nothing pushed */
    ASSERT_OK(weft_deadline_push_in(20000000));
    uint64_t before = weft_now_ns();
    ASSERT_OK(weft_deadline_move_in(60ull * 1000000000));
    uint64_t after = weft_now_ns();
    uint64_t set = weft__task_current()->deadline;
    ASSERT_GE(set, before + 60ull * 1000000000);
    ASSERT_LE(set, after + 60ull * 1000000000);
    ASSERT_OK(weft_sleep_ns(40000000));               /* outlives the first deadline */
    ASSERT_OK(weft_deadline_move(weft_now_ns() - 1)); /* earlier: at once */
    ASSERT_EQ(weft_nop(), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_move(0)); /* 0 is a deadline too, long past */
    ASSERT_EQ(weft_nop(), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_move_in(UINT64_MAX)); /* capped: never */
    ASSERT_EQ(weft__task_current()->deadline, UINT64_MAX);
    ASSERT_OK(weft_deadline_pop());

    /* An outer deadline still bounds a moved inner one. */
    uint64_t start = weft_now_ns();
    ASSERT_OK(weft_deadline_push_in(20000000));
    uint64_t outer = weft__task_current()->deadline;
    ASSERT_OK(weft_deadline_push_in(60ull * 1000000000));
    ASSERT_OK(weft_deadline_move_in(120ull * 1000000000));
    ASSERT_EQ(weft__task_current()->deadline, outer);
    ASSERT_EQ(weft_sleep_ns(10ull * 1000000000), -ETIMEDOUT);
    ASSERT_GE(weft_now_ns(), start + 20000000);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft__task_current()->deadline, outer); /* the outer one is back */
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft__task_current()->deadline, 0);
    return NULL;
}
TEST(a_deadline_moves_in_one_call)
{
    ASSERT_EQ(weft_deadline_move(1), -EPERM);
    ASSERT_EQ(weft_deadline_move_in(1), -EPERM);
    run_main_one_worker(NULL, main_deadline_move, NULL);
}

static void *sleeps_long(void *arg)
{
    weft_sleep_ns(10ull * 1000000000);
    return NULL;
}

static void *main_join_deadline(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, sleeps_long, NULL));
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 10000000));
    ASSERT_EQ(weft_join(t, NULL), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    /* The handle is still valid after a timed-out join. */
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    return NULL;
}
TEST(join_times_out_and_handle_survives)
{
    run_main_one_worker(NULL, main_join_deadline, NULL);
}

static _Atomic int joiner_rc = 1;

static void *joins_forever(void *arg)
{
    atomic_store(&joiner_rc, weft_join((weft_task *)arg, NULL));
    return NULL;
}

/* A cancelled joiner gets -EINTR, and its handle stays valid: -ECANCELED
 * would read as the target's outcome, whose handle the join frees. */
static void *main_join_cancelled(void *arg)
{
    weft_task *target, *j;
    ASSERT_OK(weft_spawn(&target, sleeps_long, NULL));
    ASSERT_OK(weft_spawn(&j, joins_forever, target));
    ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(j));
    ASSERT_EQ(weft_join(j, NULL), -ECANCELED); /* j's outcome */
    ASSERT_EQ(atomic_load(&joiner_rc), -EINTR);
    ASSERT(!weft_task_finished(target));
    ASSERT_OK(weft_cancel(target));
    ASSERT_EQ(weft_join(target, NULL), -ECANCELED);
    return NULL;
}
TEST(a_cancelled_joiner_gets_eintr_and_keeps_the_handle)
{
    run_main_one_worker(NULL, main_join_cancelled, NULL);
}

/* The case that made the codes differ: a cancelled task joins its child,
 * cancelled with it. A child that ended first gives its outcome,
 * -ECANCELED, and the handle is gone; one still running when the join's
 * wait is interrupted gives -EINTR, and the handle is the caller's still
 * (detached here). */
static void *child_sleeps(void *arg)
{
    (void)arg;
    weft_sleep_ns(3600ull * 1000000000);
    return NULL;
}

/* Shielded, it waits until the parent has joined it, whatever the time
 * that takes (a 20 ms sleep here once ended first on a loaded machine). */
static weft_event joined_b;

static void *child_ignores_cancel(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_shield_push());
    ASSERT_OK(weft_event_wait(&joined_b));
    ASSERT_OK(weft_shield_pop());
    return NULL;
}

static _Atomic int first_rc = 1, second_rc = 1;

static void *parent_joins_after_its_cancel(void *arg)
{
    (void)arg;
    weft_task *a, *b;
    ASSERT_OK(weft_spawn(&a, child_sleeps, NULL));
    ASSERT_OK(weft_spawn(&b, child_ignores_cancel, NULL));
    weft_sleep_ns(3600ull * 1000000000); /* until cancelled, with both */
    ASSERT(weft_cancelled());
    while (!weft_task_finished(a))
        weft_yield();
    atomic_store(&first_rc, weft_join(a, NULL));  /* ended: its outcome */
    atomic_store(&second_rc, weft_join(b, NULL)); /* shielded, running: -EINTR */
    if (atomic_load(&second_rc) == -EINTR)
        weft_detach(b);
    weft_event_notify_one(&joined_b);
    return NULL;
}

static void *main_cancelled_parent_joins(void *arg)
{
    (void)arg;
    weft_task *p;
    ASSERT_OK(weft_event_init(&joined_b));
    ASSERT_OK(weft_spawn(&p, parent_joins_after_its_cancel, NULL));
    ASSERT_OK(weft_sleep_ns(2000000));
    ASSERT_OK(weft_cancel(p));
    ASSERT_EQ(weft_join(p, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&first_rc), -ECANCELED);
    ASSERT_EQ(atomic_load(&second_rc), -EINTR);
    return NULL;
}
TEST(a_cancelled_parent_joining_its_children_can_tell_the_codes_apart)
{
    run_main_one_worker(NULL, main_cancelled_parent_joins, NULL);
}

static int grandchild_sleep;

static void *grandchild(void *arg)
{
    grandchild_sleep = weft_sleep_ns(10ull * 1000000000);
    return NULL;
}

static void *child_with_kid(void *arg)
{
    weft_task *g;
    ASSERT_OK(weft_spawn(&g, grandchild, NULL));
    return (void *)(intptr_t)weft_join(g, NULL);
}

static void *main_cancel_subtree(void *arg)
{
    weft_task *c;
    ASSERT_OK(weft_spawn(&c, child_with_kid, NULL));
    ASSERT_OK(weft_sleep_ns(1000000));
    ASSERT_OK(weft_cancel(c));
    ASSERT_EQ(weft_join(c, NULL), -ECANCELED);
    ASSERT_EQ(grandchild_sleep, -ECANCELED);
    return NULL;
}
TEST(cancel_reaches_the_subtree)
{
    run_main_one_worker(NULL, main_cancel_subtree, NULL);
}

static void *spawns_after_cancel(void *arg)
{
    weft_task *t;
    ran = 0;
    ASSERT_EQ(weft_sleep_ns(10ull * 1000000000), -ECANCELED);
    ASSERT_OK(weft_spawn(&t, mark_ran, NULL));
    /* This task is cancelled: its wait is interrupted, the handle kept. */
    ASSERT_EQ(weft_join(t, NULL), -EINTR);
    /* Shielded, the join waits: the child's own outcome. */
    ASSERT_OK(weft_shield_push());
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_OK(weft_shield_pop());
    ASSERT_EQ(ran, 0);
    return NULL;
}

static void *main_born_cancelled(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, spawns_after_cancel, NULL));
    ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    return NULL;
}
TEST(children_of_a_cancelled_task_are_born_cancelled)
{
    run_main_one_worker(NULL, main_born_cancelled, NULL);
}

/* weft_spawn_opts.discard: called with arg, once, when the task ends
 * without its function having started, before its join returns; never
 * once the function has started, however the task then ends. */
static int discarded;
static void *discarded_arg;

static void count_discard(void *arg)
{
    discarded++;
    discarded_arg = arg;
}

static void *marks_and_sleeps(void *arg)
{
    ran = 1;
    (void)weft_sleep_ns(10ull * 1000000000);
    return arg;
}

/* Runs, is cancelled while it sleeps, then spawns: that child is born
 * cancelled and never runs. */
static void *spawns_once_cancelled(void *arg)
{
    (void)arg;
    ran = 1;
    ASSERT_EQ(weft_sleep_ns(10ull * 1000000000), -ECANCELED);
    weft_spawn_opts o = {.discard = count_discard};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, mark_ran, (void *)11));
    weft_shield_push(); /* a cancelled task's join would not wait */
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    weft_shield_pop();
    return NULL;
}

static void *main_discard(void *arg)
{
    (void)arg;
    weft_spawn_opts o = {.discard = count_discard};
    weft_task *t;
    /* Cancelled before its first run. */
    ran = discarded = 0;
    ASSERT_OK(weft_spawn_ex(&t, &o, mark_ran, (void *)5));
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(discarded, 1);
    ASSERT(discarded_arg == (void *)5);
    ASSERT_EQ(ran, 0);
    /* Started: never discarded, whether it finishes... */
    discarded = 0;
    void *r;
    ASSERT_OK(weft_spawn_ex(&t, &o, mark_ran, (void *)6));
    ASSERT_OK(weft_join(t, &r));
    ASSERT(r == (void *)6);
    /* ...or is cancelled once started. */
    ran = 0;
    ASSERT_OK(weft_spawn_ex(&t, &o, marks_and_sleeps, (void *)7));
    while (!ran)
        ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(discarded, 0);
    /* A child born cancelled (its parent was cancelled first). */
    ran = 0;
    ASSERT_OK(weft_spawn(&t, spawns_once_cancelled, NULL));
    while (!ran)
        ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(discarded, 1);
    ASSERT(discarded_arg == (void *)11);
    /* A detached task cancelled at shutdown, before its first run: the
     * main task's end cancels it (the test's main checks the count). */
    weft_spawn_opts bg = {.flags = WEFT_TASK_BACKGROUND, .discard = count_discard};
    ASSERT_OK(weft_spawn_ex(NULL, &bg, mark_ran, (void *)12));
    return NULL;
}
TEST(discard_is_called_only_for_a_task_that_never_started)
{
    ran = 0;
    run_main_one_worker(NULL, main_discard, NULL);
    ASSERT_EQ(discarded, 2);
    ASSERT(discarded_arg == (void *)12);
}

/* A weft_yield that would switch straight to the next task finds it
 * cancelled before its first run: its discard must not run on the
 * yielding task's stack (a small one, perhaps, with no overflow report
 * there), but from the worker's loop. */
static const char *yielder_frame;
static intptr_t discard_distance;

static void discard_where(void *arg)
{
    (void)arg;
    char here;
    discard_distance = yielder_frame - &here;
}

static void *main_yield_into_unstarted(void *arg)
{
    (void)arg;
    weft_spawn_opts o = {.discard = discard_where};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, mark_ran, NULL));
    ASSERT_OK(weft_cancel(t));
    char mark;
    yielder_frame = &mark;
    discard_distance = 0;
    ASSERT_OK(weft_yield());
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT(discard_distance != 0); /* it ran */
    /* Not just below this frame, on this task's stack. */
    ASSERT(discard_distance < 0 || discard_distance > 1024 * 1024);
    return NULL;
}
TEST(discard_never_runs_on_a_yielding_tasks_stack)
{
    run_main_one_worker(NULL, main_yield_into_unstarted, NULL);
}

TEST_MAIN(CASE(cancel_before_first_run_never_runs), CASE(cancel_interrupts_sleep),
          CASE(cancel_from_another_thread_reaches_the_task),
          CASE(a_cancel_from_another_thread_reaches_an_orphan_after_the_main_task),
          CASE(cancel_after_finish_keeps_result), CASE(cancelled_task_sees_ecanceled_everywhere),
          CASE(shield_defers_cancellation), CASE(deadlines_nest_and_time_out),
          CASE(a_deadline_moves_with_pop_and_push), CASE(relative_deadlines_count_from_now),
          CASE(a_deadline_moves_in_one_call), CASE(join_times_out_and_handle_survives),
          CASE(a_cancelled_joiner_gets_eintr_and_keeps_the_handle),
          CASE(a_cancelled_parent_joining_its_children_can_tell_the_codes_apart),
          CASE(cancel_reaches_the_subtree), CASE(children_of_a_cancelled_task_are_born_cancelled),
          CASE(discard_is_called_only_for_a_task_that_never_started),
          CASE(discard_never_runs_on_a_yielding_tasks_stack))
