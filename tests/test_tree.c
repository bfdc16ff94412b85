/* Structured concurrency: orphan policies, background tasks, the subtree
 * cancellation calls with exact weft_cancel_stats counts. */
#include <stdatomic.h>

#include "test.h"

#include "runtime/worker.h"

static int finished_normally, finished_cancelled;

static void *sleep_and_count(void *arg)
{
    int r = weft_sleep_ns((uint64_t)(intptr_t)arg);
    if (r == 0)
        finished_normally++;
    else if (r == -ECANCELED)
        finished_cancelled++;
    return NULL;
}

/* Children read their parent's stack until they are cancelled. */
static void *borrow_parent_stack(void *arg)
{
    volatile int *parent_local = arg;
    while (weft_sleep_ns(1000000) == 0)
        ASSERT_EQ(*parent_local, 1234);
    ASSERT_EQ(*parent_local, 1234); /* still alive: the parent awaits us */
    finished_cancelled++;
    return NULL;
}

static void *parent_returns_early(void *arg)
{
    volatile int local = 1234;
    for (int i = 0; i < 5; i++)
        ASSERT_OK(weft_spawn(NULL, borrow_parent_stack, (void *)&local));
    ASSERT_OK(weft_sleep_ns(3000000));
    return (void *)7;
}

static void *main_orphans_cancel(void *arg)
{
    weft_task *p;
    finished_cancelled = 0;
    ASSERT_OK(weft_spawn(&p, parent_returns_early, NULL));
    void *r;
    ASSERT_OK(weft_join(p, &r)); /* returned normally: its result stands */
    ASSERT_EQ((intptr_t)r, 7);
    ASSERT_EQ(finished_cancelled, 5); /* all children ended before the join returned */
    return NULL;
}
TEST(orphans_cancel_awaits_children)
{
    run_main_one_worker(NULL, main_orphans_cancel, NULL);
}

/* The kids wait for main's word, so that none can end before main has
 * looked, however slow the machine. */
static weft_event kids_go = WEFT_EVENT_INIT;
static bool kids_may_go;

static void *wait_and_count(void *arg)
{
    (void)arg;
    while (!kids_may_go) {
        int r = weft_event_wait(&kids_go);
        if (r == -ECANCELED) {
            finished_cancelled++;
            return NULL;
        }
        ASSERT_OK(r);
    }
    finished_normally++;
    return NULL;
}

static void *parent_leaves_waiting_kids(void *arg)
{
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_spawn(NULL, wait_and_count, NULL));
    ASSERT_OK(weft_yield()); /* they start waiting */
    return NULL;
}

static void *parent_leaves_kids(void *arg)
{
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_spawn(NULL, sleep_and_count, (void *)(intptr_t)5000000));
    ASSERT_OK(weft_yield()); /* they start sleeping */
    return NULL;
}

static void *main_orphans_adopt(void *arg)
{
    weft_task *p;
    finished_normally = finished_cancelled = 0;
    kids_may_go = false;
    ASSERT_OK(weft_spawn(&p, parent_leaves_waiting_kids, NULL));
    ASSERT_OK(weft_join(p, NULL));
    ASSERT_EQ(finished_normally + finished_cancelled, 0); /* still running, adopted */
    kids_may_go = true;
    weft_event_notify_all(&kids_go);
    for (int i = 0; finished_normally + finished_cancelled < 3 && i < 100000; i++)
        ASSERT_OK(weft_sleep_ns(100000));
    ASSERT_EQ(finished_normally, 3); /* none was cancelled */
    return NULL;
}
TEST(orphans_adopt_keeps_children_running)
{
    weft_config cfg = {.orphans = WEFT_ORPHANS_ADOPT};
    run_main_one_worker(&cfg, main_orphans_adopt, NULL);
}

/* Under WEFT_ORPHANS_ADOPT, a background task's children outlive it as
 * background work: cancelled when the main task ends, as the background
 * task would have been. Adopted by the orphan root, they escaped that, and
 * weft_run waited for them (for ever, for a loop). Two cases: the main
 * task ends after the background task (its children then belong to the
 * root), or before it (the background task ends cancelled, and so do
 * they, at once). */
static _Atomic int bg_kids_cancelled;
static _Atomic bool bg_kids_started;

static void *bg_kid_loops(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) /* 10 s at most */
        if (weft_sleep_ns(10000000) == -ECANCELED) {
            atomic_fetch_add(&bg_kids_cancelled, 1);
            return NULL;
        }
    return NULL;
}

static void *bg_parent(void *arg)
{
    ASSERT_OK(weft_spawn(NULL, bg_kid_loops, NULL));
    ASSERT_OK(weft_spawn(NULL, bg_kid_loops, NULL));
    ASSERT_OK(weft_yield()); /* they start */
    atomic_store(&bg_kids_started, true);
    if (arg) { /* outlive main: its end cancels this one, and then ... */
        weft_shield_push();
        weft_sleep_ns(20000000);
        weft_shield_pop();
    }
    return NULL; /* ... the children are adopted */
}

static void *main_background_orphans(void *arg)
{
    weft_task *b;
    weft_spawn_opts bg = {.flags = WEFT_TASK_BACKGROUND};
    ASSERT_OK(weft_spawn_ex(&b, &bg, bg_parent, arg));
    while (!atomic_load(&bg_kids_started) || (!arg && !weft_task_finished(b)))
        ASSERT_OK(weft_sleep_ns(1000000));
    weft_detach(b);
    return NULL;
}

TEST(background_orphans_are_cancelled_at_shutdown)
{
    weft_config cfg = {.orphans = WEFT_ORPHANS_ADOPT};
    for (intptr_t late = 0; late <= 1; late++) {
        atomic_store(&bg_kids_cancelled, 0);
        atomic_store(&bg_kids_started, false);
        run_main_one_worker(&cfg, main_background_orphans, (void *)late);
        ASSERT_EQ(atomic_load(&bg_kids_cancelled), 2);
    }
}

static void *main_adopt_cancel_children_flag(void *arg)
{
    weft_task *p;
    finished_normally = finished_cancelled = 0;
    weft_spawn_opts o = {.flags = WEFT_TASK_CANCEL_CHILDREN};
    ASSERT_OK(weft_spawn_ex(&p, &o, parent_leaves_kids, NULL));
    ASSERT_OK(weft_join(p, NULL));
    ASSERT_EQ(finished_cancelled, 3);
    ASSERT_EQ(finished_normally, 0);
    return NULL;
}
TEST(cancel_children_flag_under_adopt)
{
    weft_config cfg = {.orphans = WEFT_ORPHANS_ADOPT};
    run_main_one_worker(&cfg, main_adopt_cancel_children_flag, NULL);
}

/* A grandchild under a flagged grandparent: its parent, inside the flagged
 * subtree, ends as under WEFT_ORPHANS_CANCEL, cancelling and awaiting it,
 * so the grandparent's join cannot return while it still runs. It went to
 * the orphan root, and the grandparent's join returned while it still ran
 * its cleanup. (Handing it to the grandparent instead, the first fix, made
 * the grandparent's weft_wait_children wait for it.) */
static _Atomic int grandchild_started, grandchild_done;

static void *shielded_grandchild(void *arg)
{
    weft_shield_push(); /* cleanup that outlives the cancel */
    grandchild_started = 1;
    ASSERT_OK(weft_sleep_ns(20000000));
    weft_shield_pop();
    grandchild_done = 1;
    return NULL;
}

/* Spawns b->fn(b->arg) and returns once it has started (one cancelled
 * before its first run would never run); its end cancels and awaits it. */
static void *spawns_a_started_child(void *arg)
{
    const task_body *b = arg;
    ASSERT_OK(weft_spawn(NULL, b->fn, b->arg));
    while (!grandchild_started)
        ASSERT_OK(weft_yield());
    return NULL;
}

static void *flagged_grandparent(void *arg)
{
    weft_task *c;
    /* Static: the child reads it after this statement (a compound
     * literal's storage may end with it under ASan). */
    static task_body grandchild = {shielded_grandchild, NULL};
    ASSERT_OK(weft_spawn(&c, spawns_a_started_child, &grandchild));
    ASSERT_OK(weft_join(c, NULL));
    ASSERT_EQ(grandchild_done, 1); /* its parent awaited it */
    return NULL;
}

/* In the flagged subtree weft_wait_children waits for children only: B
 * leaves a long sleeper C behind, which B's end cancels. */
static _Atomic int sleeper_cancelled;

static void *long_sleeper_c(void *arg)
{
    grandchild_started = 1;
    if (weft_sleep_ns(10ull * 1000000000) == -ECANCELED)
        sleeper_cancelled = 1;
    return NULL;
}

static void *flagged_a_waits(void *arg)
{
    static task_body sleeper = {long_sleeper_c, NULL}; /* B leaves it behind */
    ASSERT_OK(weft_spawn(NULL, spawns_a_started_child, &sleeper));
    uint64_t t0 = weft_now_ns();
    ASSERT_OK(weft_deadline_push(t0 + 5000000000ull)); /* hung before: fail, not hang */
    ASSERT_OK(weft_wait_children());
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(sleeper_cancelled, 1);
    return NULL;
}

static void *main_wait_children_in_a_flagged_subtree(void *arg)
{
    weft_task *a;
    weft_spawn_opts o = {.flags = WEFT_TASK_CANCEL_CHILDREN};
    ASSERT_OK(weft_spawn_ex(&a, &o, flagged_a_waits, NULL));
    ASSERT_OK(weft_join(a, NULL));
    return NULL;
}
TEST(wait_children_in_a_flagged_subtree_waits_for_children_only)
{
    weft_config cfg = {.orphans = WEFT_ORPHANS_ADOPT};
    run_main(&cfg, main_wait_children_in_a_flagged_subtree, NULL);
}

static void *main_adopt_keeps_the_subtree(void *arg)
{
    weft_task *g;
    weft_spawn_opts o = {.flags = WEFT_TASK_CANCEL_CHILDREN};
    ASSERT_OK(weft_spawn_ex(&g, &o, flagged_grandparent, NULL));
    ASSERT_OK(weft_join(g, NULL));
    ASSERT_EQ(grandchild_done, 1);
    return NULL;
}
TEST(cancel_children_under_adopt_awaits_grandchildren)
{
    weft_config cfg = {.orphans = WEFT_ORPHANS_ADOPT};
    run_main_one_worker(&cfg, main_adopt_keeps_the_subtree, NULL);
    cfg.workers = 2;
    grandchild_started = grandchild_done = 0;
    run_main(&cfg, main_adopt_keeps_the_subtree, NULL);
}

static void *main_adopted_until_shutdown(void *arg)
{
    weft_task *p;
    finished_normally = finished_cancelled = 0;
    ASSERT_OK(weft_spawn(&p, parent_leaves_kids, NULL));
    ASSERT_OK(weft_join(p, NULL));
    return NULL; /* weft_run waits for the adopted orphans to finish */
}
TEST(weft_run_waits_for_adopted_orphans)
{
    weft_config cfg = {.orphans = WEFT_ORPHANS_ADOPT};
    run_main_one_worker(&cfg, main_adopted_until_shutdown, NULL);
    ASSERT_EQ(finished_normally, 3);
}

static void *main_background(void *arg)
{
    weft_spawn_opts bg = {.flags = WEFT_TASK_BACKGROUND};
    finished_normally = finished_cancelled = 0;
    ASSERT_OK(weft_spawn_ex(NULL, &bg, sleep_and_count, (void *)(intptr_t)60000000000));
    ASSERT_OK(weft_spawn_ex(NULL, &bg, sleep_and_count, (void *)(intptr_t)60000000000));
    ASSERT_OK(weft_yield());
    return NULL;
}
TEST(background_tasks_cancelled_at_shutdown)
{
    run_main_one_worker(NULL, main_background, NULL);
    ASSERT_EQ(finished_cancelled, 2);
    ASSERT_EQ(finished_normally, 0);
}

static void *background_outlives_parent(void *arg)
{
    weft_spawn_opts bg = {.flags = WEFT_TASK_BACKGROUND};
    ASSERT_OK(weft_spawn_ex(NULL, &bg, sleep_and_count, (void *)(intptr_t)2000000));
    return NULL;
}

static void *main_background_child(void *arg)
{
    weft_task *p;
    finished_normally = finished_cancelled = 0;
    ASSERT_OK(weft_spawn(&p, background_outlives_parent, NULL));
    ASSERT_OK(weft_join(p, NULL));
    ASSERT_OK(weft_sleep_ns(30000000));
    ASSERT_EQ(finished_normally, 1); /* not cancelled with its spawner */
    return NULL;
}
TEST(background_task_is_not_its_spawners_child)
{
    run_main_one_worker(NULL, main_background_child, NULL);
}

/* A tree under the main task:
 *   main
 *    ├─ a [web]       ── a1 [web,db], a2
 *    ├─ b [db]        ── b1
 *    └─ c (leaf)
 * 6 descendants, leaves: a1 a2 b1 c. */
static const char *const tag_web[] = {"web", NULL};
static const char *const tag_db[] = {"db", NULL};
static const char *const tag_web_db[] = {"web", "db", NULL};

static void *forever(void *arg)
{
    while (weft_sleep_ns(1000000000) == 0) {
    }
    return NULL;
}

static void *with_kids(void *arg)
{
    const char *const *const *kid_tags = arg;
    for (int i = 0; kid_tags && kid_tags[i] != (void *)-1; i++) {
        weft_spawn_opts o = {.tags = kid_tags[i]};
        ASSERT_OK(weft_spawn_ex(NULL, &o, forever, NULL));
    }
    return forever(NULL);
}

static const char *const *const a_kids[] = {tag_web_db, NULL, (void *)-1};
static const char *const *const b_kids[] = {NULL, (void *)-1};

static void build_tree(void)
{
    weft_spawn_opts a = {.tags = tag_web, .name = "a"}, b = {.tags = tag_db, .name = "b"},
                    c = {.name = "c"};
    ASSERT_OK(weft_spawn_ex(NULL, &a, with_kids, (void *)a_kids));
    ASSERT_OK(weft_spawn_ex(NULL, &b, with_kids, (void *)b_kids));
    ASSERT_OK(weft_spawn_ex(NULL, &c, with_kids, NULL));
    ASSERT_OK(weft_sleep_ns(2000000)); /* everyone has spawned its kids */
}

#define EXPECT_STATS(call, v, c)                                                                   \
    do {                                                                                           \
        weft_cancel_stats st_ = {99, 99};                                                          \
        ASSERT_OK(call);                                                                           \
        ASSERT_EQ(st_.visited, v);                                                                 \
        ASSERT_EQ(st_.cancelled, c);                                                               \
    } while (0)

static void *main_cancel_children(void *arg)
{
    build_tree();
    EXPECT_STATS(weft_cancel_children(&st_), 6, 6);
    ASSERT(!weft_cancelled());
    return NULL;
}
TEST(cancel_children_counts)
{
    run_main_one_worker(NULL, main_cancel_children, NULL);
}

static void *main_cancel_leaves(void *arg)
{
    build_tree();
    EXPECT_STATS(weft_cancel_leaves(&st_), 6, 4);
    EXPECT_STATS(weft_cancel_leaves(&st_), 6, 0); /* idempotent */
    ASSERT_OK(weft_sleep_ns(2000000));
    /* The four leaves are gone; a and b became leaves. */
    EXPECT_STATS(weft_cancel_leaves(&st_), 2, 2);
    ASSERT_OK(weft_wait_children());
    EXPECT_STATS(weft_cancel_leaves(&st_), 0, 0);
    return NULL;
}
TEST(cancel_leaves_counts)
{
    run_main_one_worker(NULL, main_cancel_leaves, NULL);
}

static void *main_cancel_tagged(void *arg)
{
    build_tree();
    /* Any of {db}: b (+ b1) and a1 → 3 cancelled. */
    EXPECT_STATS(weft_cancel_tagged_any(tag_db, &st_), 6, 3);
    /* All of {web, db}: only a1, already cancelled. */
    EXPECT_STATS(weft_cancel_tagged_all(tag_web_db, &st_), 6, 0);
    /* Any of {web}: a (+ a2; a1 already cancelled) → 2. */
    EXPECT_STATS(weft_cancel_tagged_any(tag_web, &st_), 6, 2);
    ASSERT_OK(weft_sleep_ns(2000000));
    /* Only c is left. */
    EXPECT_STATS(weft_cancel_children(&st_), 1, 1);
    return NULL;
}
TEST(cancel_tagged_counts)
{
    run_main_one_worker(NULL, main_cancel_tagged, NULL);
}

static void *main_cancel_tagged_all(void *arg)
{
    build_tree();
    EXPECT_STATS(weft_cancel_tagged_all(tag_web_db, &st_), 6, 1);
    static const char *const none[] = {NULL};
    ASSERT_EQ(weft_cancel_tagged_all(none, NULL), -EINVAL);
    ASSERT_EQ(weft_cancel_tagged_any(NULL, NULL), -EINVAL);
    EXPECT_STATS(weft_cancel_tagged_any(none, &st_), 6, 0);
    return NULL;
}
TEST(cancel_tagged_all_counts)
{
    run_main_one_worker(NULL, main_cancel_tagged_all, NULL);
}

static void *orphan_maker(void *arg)
{
    ASSERT_OK(weft_spawn(NULL, forever, NULL));
    ASSERT_OK(weft_spawn(NULL, with_kids, (void *)b_kids));
    ASSERT_OK(weft_sleep_ns(1000000));
    return NULL;
}

static void *main_cancel_orphans(void *arg)
{
    weft_task *p;
    ASSERT_OK(weft_spawn(&p, orphan_maker, NULL));
    ASSERT_OK(weft_join(p, NULL));
    /* Adopted: forever, with_kids and its child. */
    EXPECT_STATS(weft_cancel_orphans(&st_), 3, 3);
    EXPECT_STATS(weft_cancel_orphans(&st_), 3, 0);
    return NULL;
}
TEST(cancel_orphans_counts)
{
    weft_config cfg = {.orphans = WEFT_ORPHANS_ADOPT};
    run_main_one_worker(&cfg, main_cancel_orphans, NULL);
}

/* An orphan that calls weft_cancel_orphans counts itself but is not
 * cancelled; its own child, an orphan's descendant too, is. */
static _Atomic int maker_done;

static void *orphan_cancels_the_orphans(void *arg)
{
    (void)arg;
    weft_task *k;
    ASSERT_OK(weft_spawn(&k, sleep_and_count, (void *)(intptr_t)5000000000));
    while (!atomic_load(&maker_done)) /* adopted once its parent has ended */
        ASSERT_OK(weft_sleep_ns(100000));
    EXPECT_STATS(weft_cancel_orphans(&st_), 2, 1);
    ASSERT(!weft_cancelled());
    ASSERT_EQ(weft_join(k, NULL), -ECANCELED);
    return NULL;
}

static void *leaves_an_orphan(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_spawn(NULL, orphan_cancels_the_orphans, NULL));
    return NULL;
}

static void *main_orphan_cancels_the_orphans(void *arg)
{
    (void)arg;
    weft_task *p;
    atomic_store(&maker_done, 0);
    ASSERT_OK(weft_spawn(&p, leaves_an_orphan, NULL));
    ASSERT_OK(weft_join(p, NULL));
    atomic_store(&maker_done, 1);
    return NULL; /* weft_run waits for the orphan */
}
TEST(an_orphan_that_cancels_the_orphans_counts_but_spares_itself)
{
    weft_config cfg = {.orphans = WEFT_ORPHANS_ADOPT};
    run_main_one_worker(&cfg, main_orphan_cancels_the_orphans, NULL);
}

TEST(cancel_apis_outside_a_task)
{
    weft_cancel_stats st;
    ASSERT_EQ(weft_cancel_children(&st), -EPERM);
    ASSERT_EQ(weft_cancel_leaves(&st), -EPERM);
    ASSERT_EQ(weft_cancel_tagged_any(tag_db, &st), -EPERM);
    ASSERT_EQ(weft_cancel_tagged_all(tag_db, &st), -EPERM);
    ASSERT_EQ(weft_cancel_orphans(&st), -EPERM);
}

static void *nursery(void *arg)
{
    finished_normally = 0;
    for (int i = 1; i <= 4; i++)
        ASSERT_OK(weft_spawn(NULL, sleep_and_count, (void *)(intptr_t)(i * 1000000)));
    ASSERT_OK(weft_wait_children());
    ASSERT_EQ(finished_normally, 4);
    ASSERT_OK(weft_wait_children()); /* no children: returns at once */
    return NULL;
}
TEST(wait_children_is_a_nursery_join)
{
    run_main_one_worker(NULL, nursery, NULL);
}

static void *main_wait_children_deadline(void *arg)
{
    ASSERT_OK(weft_spawn(NULL, forever, NULL));
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 5000000));
    ASSERT_EQ(weft_wait_children(), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    return NULL; /* the child is cancelled and awaited as main ends */
}
TEST(wait_children_honours_deadlines)
{
    run_main_one_worker(NULL, main_wait_children_deadline, NULL);
}

/* A task's return value is kept apart from the timer it may arm while it
 * finishes: a defer that sleeps used to overwrite it (the two shared a
 * field), and a hand-over to another worker then could take the value for
 * an armed timer. */
static void sleeping_defer(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_sleep_ns(200000));
}

static void *returns_with_sleeping_defer(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_defer(sleeping_defer, NULL));
    return (void *)0x1234;
}

static void *main_result_and_defer(void *arg)
{
    (void)arg;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, returns_with_sleeping_defer, NULL));
    void *res = NULL;
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((uintptr_t)res, 0x1234);
    return NULL;
}
TEST(a_defer_that_sleeps_keeps_the_result)
{
    run_main(NULL, main_result_and_defer, NULL);
}

/* Children that a defer spawns are children like any other: cancelled and
 * awaited before the task completes (they used to outlive its record). */
static weft_task *defer_child_handle;

static void *defer_child(void *arg)
{
    (void)arg;
    weft_sleep_ns(20000000); /* cancelled by its parent's end, if it runs */
    return NULL;
}

static void spawning_defer(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_spawn(&defer_child_handle, defer_child, NULL));
}

static void *with_spawning_defer(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_defer(spawning_defer, NULL));
    return NULL;
}

static void *main_defer_children(void *arg)
{
    (void)arg;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, with_spawning_defer, NULL));
    ASSERT_OK(weft_join(t, NULL));
    ASSERT(defer_child_handle != NULL);
    ASSERT(weft_task_finished(defer_child_handle));
    ASSERT_EQ(weft_join(defer_child_handle, NULL), -ECANCELED);
    return NULL;
}
TEST(children_spawned_by_a_defer_are_awaited)
{
    run_main(NULL, main_defer_children, NULL);
}

/* Background work spawned after the main task ended is born cancelled, as
 * the background tasks alive then were cancelled: a cancelled supervisor
 * that hands its flush to a fresh background task no longer keeps weft_run
 * from returning. */
static _Atomic int late_ran;

static void *late_flush(void *arg)
{
    (void)arg;
    atomic_fetch_add(&late_ran, 1);
    while (weft_sleep_ns(1000000) == 0)
        ;
    return NULL;
}

static void *supervisor(void *arg)
{
    (void)arg;
    while (weft_sleep_ns(1000000) == 0)
        ;
    weft_spawn_opts o = {.flags = WEFT_TASK_BACKGROUND};
    ASSERT_OK(weft_spawn_ex(NULL, &o, late_flush, NULL));
    return NULL;
}

static void *main_with_supervisor(void *arg)
{
    (void)arg;
    weft_spawn_opts o = {.flags = WEFT_TASK_BACKGROUND};
    ASSERT_OK(weft_spawn_ex(NULL, &o, supervisor, NULL));
    ASSERT_OK(weft_sleep_ns(2000000));
    return NULL;
}
TEST(background_spawned_after_the_main_task_is_born_cancelled)
{
    run_main(NULL, main_with_supervisor, NULL);
    ASSERT_EQ(atomic_load(&late_ran), 0);
}

/* A child spawned while another worker cancels its parent is born
 * cancelled: the parent's state is read under the lock the cancellation
 * walk holds. Under ADOPT nothing else would ever cancel it. Bounded
 * trials of a race; before the fix, a miss came within the first few. */
static _Atomic int race_cancelled, race_started, race_missed;

static void *race_child(void *arg)
{
    (void)arg;
    if (atomic_load(&race_cancelled) && !weft_cancelled())
        atomic_fetch_add(&race_missed, 1);
    return NULL;
}

static void *race_spawner(void *arg)
{
    (void)arg;
    atomic_store(&race_started, 1);
    for (unsigned n = 1; !atomic_load(&race_cancelled); n++) {
        weft_spawn(NULL, race_child, NULL);
        if (n % 256 == 0)
            weft_yield(); /* should the canceller share this worker */
    }
    return NULL;
}

static void *race_canceller(void *arg)
{
    while (!atomic_load(&race_started))
        weft_yield();
    for (volatile int i = 0; i < 20000; i++)
        ;
    weft_cancel(arg);
    atomic_store(&race_cancelled, 1);
    return NULL;
}

static void *main_spawn_vs_cancel(void *arg)
{
    (void)arg;
    for (int trial = 0; trial < 100 && !atomic_load(&race_missed); trial++) {
        atomic_store(&race_cancelled, 0);
        atomic_store(&race_started, 0);
        weft_task *p, *c;
        ASSERT_OK(weft_spawn(&p, race_spawner, NULL));
        ASSERT_OK(weft_spawn(&c, race_canceller, p));
        weft_join(c, NULL);
        weft_join(p, NULL);
        ASSERT_OK(weft_sleep_ns(200000));
    }
    return NULL;
}
TEST(a_child_spawned_as_its_parent_is_cancelled_is_born_cancelled)
{
    weft_config cfg = {.workers = 2, .orphans = WEFT_ORPHANS_ADOPT};
    run_main(&cfg, main_spawn_vs_cancel, NULL);
    ASSERT_EQ(atomic_load(&race_missed), 0);
}

/* A chain of tasks, each joining the next, cancelled from its top: each
 * task that ends cancels its children's subtrees, and a subtree cancelled
 * whole before is not walked again. The walks went through O(D^2) tasks
 * (a chain 20,000 deep took 2.7 s to end); now about 2 D. */
#define CHAIN_DEPTH 3000
static _Atomic int chain_parked;

static void *chain_link(void *arg)
{
    intptr_t left = (intptr_t)arg;
    if (left == 0) {
        atomic_fetch_add(&chain_parked, 1);
        return (void *)(intptr_t)weft_sleep_ns(3600ull * 1000000000);
    }
    weft_task *next;
    ASSERT_OK(weft_spawn(&next, chain_link, (void *)(left - 1)));
    atomic_fetch_add(&chain_parked, 1);
    void *res;
    int r = weft_join(next, &res);
    ASSERT(r == -EINTR || r == -ECANCELED || r == 0); /* -EINTR: cancelled as it waits */
    return (void *)(intptr_t)-ECANCELED;
}

static void *main_deep_chain(void *arg)
{
    (void)arg;
    atomic_store(&chain_parked, 0);
    weft_task *top;
    weft_spawn_opts o = {.stack_size = 16384};
    ASSERT_OK(weft_spawn_ex(&top, &o, chain_link, (void *)(intptr_t)(CHAIN_DEPTH - 1)));
    while (atomic_load(&chain_parked) < CHAIN_DEPTH)
        ASSERT_OK(weft_sleep_ns(1000000));
    weft__runtime *rt = weft__worker_self()->rt;
    uint64_t steps = rt->tree_cancel_steps;
    ASSERT_OK(weft_cancel(top));
    void *res;
    int r = weft_join(top, &res);
    ASSERT(r == -ECANCELED || r == 0);
    steps = rt->tree_cancel_steps - steps;
    printf("cancel walks: %llu steps for a chain of %d\n", (unsigned long long)steps, CHAIN_DEPTH);
    ASSERT_LE(steps, 3 * CHAIN_DEPTH);
    ASSERT_GE(steps, CHAIN_DEPTH);
    return NULL;
}
TEST(a_deep_chain_ends_in_linear_time_when_cancelled)
{
    run_main_one_worker(NULL, main_deep_chain, NULL);
}

/* An orphan's descendant S that cancels the orphans is spared, and so its
 * ancestor A, cancelled by that walk, is not cancelled with its whole
 * subtree: a later weft_cancel(A) must still reach S. Marking A as
 * cancelled whole (ae4f424) made the later walk stop at A (found by a
 * review). A joins S inside a shield, so its own end does not cancel S. */
static weft_cancel_handle *spared_a_handle;
static _Atomic int spared_a_ready, spared_s_done, spared_maker_done;
static _Atomic int spared_s_saw_cancel = -1;

static void *spared_s_fn(void *arg)
{
    (void)arg;
    while (!atomic_load(&spared_maker_done))
        weft_sleep_ns(100000);
    weft_cancel_stats st;
    ASSERT_OK(weft_cancel_orphans(&st)); /* cancels A, spares S */
    ASSERT(!weft_cancelled());
    atomic_store(&spared_s_done, 1);
    /* Wait up to 2 s for the cancel of A's subtree to reach S. */
    uint64_t end = weft_now_ns() + 2000000000ull;
    while (!weft_cancelled() && weft_now_ns() < end)
        (void)weft_sleep_ns(1000000);
    atomic_store(&spared_s_saw_cancel, weft_cancelled() ? 1 : 0);
    return NULL;
}

static void *spared_a_fn(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_cancel_handle_self(&spared_a_handle));
    ASSERT_OK(weft_shield_push());
    weft_task *s;
    ASSERT_OK(weft_spawn(&s, spared_s_fn, NULL));
    atomic_store(&spared_a_ready, 1);
    (void)weft_join(s, NULL); /* shielded: waits for S whatever happens to A */
    ASSERT_OK(weft_shield_pop());
    return NULL;
}

static void *spared_p_fn(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_spawn(NULL, spared_a_fn, NULL));
    while (!atomic_load(&spared_a_ready))
        weft_yield();
    return NULL; /* A becomes an orphan */
}

static void *main_spared_orphan(void *arg)
{
    (void)arg;
    weft_task *p;
    ASSERT_OK(weft_spawn(&p, spared_p_fn, NULL));
    ASSERT_OK(weft_join(p, NULL));
    atomic_store(&spared_maker_done, 1);
    while (!atomic_load(&spared_s_done))
        weft_sleep_ns(100000);
    /* Cancel A and everything below it. */
    ASSERT_OK(weft_cancel_via(spared_a_handle));
    while (atomic_load(&spared_s_saw_cancel) < 0)
        weft_sleep_ns(1000000);
    weft_cancel_handle_drop(spared_a_handle);
    ASSERT_EQ(atomic_load(&spared_s_saw_cancel), 1);
    return NULL;
}

TEST(cancel_of_an_ancestor_reaches_a_task_spared_by_cancel_orphans)
{
    weft_config cfg = {.orphans = WEFT_ORPHANS_ADOPT};
    run_main(&cfg, main_spared_orphan, NULL);
}

TEST_MAIN(CASE(background_orphans_are_cancelled_at_shutdown),
          CASE(a_defer_that_sleeps_keeps_the_result), CASE(children_spawned_by_a_defer_are_awaited),
          CASE(cancel_children_under_adopt_awaits_grandchildren),
          CASE(wait_children_in_a_flagged_subtree_waits_for_children_only),
          CASE(background_spawned_after_the_main_task_is_born_cancelled),
          CASE(a_child_spawned_as_its_parent_is_cancelled_is_born_cancelled),
          CASE(orphans_cancel_awaits_children), CASE(orphans_adopt_keeps_children_running),
          CASE(cancel_children_flag_under_adopt), CASE(weft_run_waits_for_adopted_orphans),
          CASE(background_tasks_cancelled_at_shutdown),
          CASE(background_task_is_not_its_spawners_child), CASE(cancel_children_counts),
          CASE(cancel_leaves_counts), CASE(cancel_tagged_counts), CASE(cancel_tagged_all_counts),
          CASE(cancel_orphans_counts),
          CASE(an_orphan_that_cancels_the_orphans_counts_but_spares_itself),
          CASE(cancel_apis_outside_a_task), CASE(wait_children_is_a_nursery_join),
          CASE(wait_children_honours_deadlines),
          CASE(a_deep_chain_ends_in_linear_time_when_cancelled),
          CASE(cancel_of_an_ancestor_reaches_a_task_spared_by_cancel_orphans))
