/* Task lifecycle: spawn, join, detach, ids, yields, ordering, misuse. */
#include "test.h"

#include <netdb.h>

#include "task/task.h"

static int counter;

static void *bump(void *arg)
{
    counter++;
    return arg;
}

static void *main_join_result(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, return_arg, (void *)1234));
    ASSERT(weft_task_id(t) > weft_self_id());
    void *r = NULL;
    ASSERT_OK(weft_join(t, &r));
    ASSERT_EQ((intptr_t)r, 1234);
    return (void *)77;
}
TEST(join_returns_result)
{
    ASSERT_EQ((intptr_t)run_main_one_worker(NULL, main_join_result, NULL), 77);
}

static void *main_detached(void *arg)
{
    for (int i = 0; i < 100; i++)
        ASSERT_OK(weft_spawn(NULL, bump, NULL));
    if (arg)
        ASSERT_OK(weft_wait_children());
    return NULL;
}
TEST(detached_children_are_part_of_the_tree)
{
    /* Awaited: all ran. */
    counter = 0;
    run_main_one_worker(NULL, main_detached, (void *)1);
    ASSERT_EQ(counter, 100);
    /* Not awaited: main's end cancels them before their first run, so
     * none runs (WEFT_ORPHANS_CANCEL). */
    counter = 0;
    run_main_one_worker(NULL, main_detached, NULL);
    ASSERT_EQ(counter, 0);
}

static void *main_detach_handle(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, bump, NULL));
    weft_detach(t);
    ASSERT_OK(weft_yield());
    return NULL;
}
TEST(detach_handle)
{
    counter = 0;
    run_main_one_worker(NULL, main_detach_handle, NULL);
    ASSERT_EQ(counter, 1);
}

static void *main_join_finished(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, return_arg, (void *)5));
    ASSERT(!weft_task_finished(t));
    ASSERT_OK(weft_yield());
    ASSERT(weft_task_finished(t));
    void *r;
    ASSERT_OK(weft_join(t, &r));
    ASSERT_EQ((intptr_t)r, 5);
    return NULL;
}
TEST(join_already_finished)
{
    run_main_one_worker(NULL, main_join_finished, NULL);
}

static char order[64];
static int norder;

static void *yielder(void *arg)
{
    char c = (char)(intptr_t)arg;
    for (int i = 0; i < 3; i++) {
        order[norder++] = c;
        ASSERT_OK(weft_yield());
    }
    return NULL;
}

/* Runs fn as the main task on one worker and returns what its tasks
 * appended to `order`, as a string. */
static const char *run_for_order(weft_fn fn)
{
    norder = 0;
    run_main_one_worker(NULL, fn, NULL);
    order[norder] = 0;
    return order;
}

static void *main_yield_order(void *arg)
{
    weft_task *a, *b;
    ASSERT_OK(weft_spawn(&a, yielder, (void *)'a'));
    ASSERT_OK(weft_spawn(&b, yielder, (void *)'b'));
    ASSERT_OK(weft_join(a, NULL));
    ASSERT_OK(weft_join(b, NULL));
    return NULL;
}
TEST(yield_round_robin_order)
{
    ASSERT_STREQ(run_for_order(main_yield_order), "ababab");
}

static void *append(void *arg)
{
    order[norder++] = (char)(intptr_t)arg;
    return NULL;
}

/* With one worker and one FIFO queue, weft_yield switches straight to the
 * next queued task (weft__worker_yield_direct) in the order the scheduler
 * loop would pick. A task cancelled before its first run is at the front
 * when main first yields: it ends there without running, and the loop
 * takes over. A fresh task then starts, and two tasks yielding to each
 * other hand the CPU back and forth. */
static void *main_yield_direct_order(void *arg)
{
    (void)arg;
    weft_task *a, *b, *c;
    ASSERT_OK(weft_spawn(&b, append, (void *)'b'));
    ASSERT_OK(weft_spawn(&a, append, (void *)'a'));
    ASSERT_OK(weft_spawn(&c, yielder, (void *)'c'));
    ASSERT_OK(weft_cancel(b));
    for (int i = 0; i < 2; i++) {
        order[norder++] = 'm';
        ASSERT_OK(weft_yield());
    }
    ASSERT_OK(weft_join(a, NULL));
    ASSERT_EQ(weft_join(b, NULL), -ECANCELED);
    ASSERT_OK(weft_join(c, NULL));
    return NULL;
}
TEST(yield_switches_straight_to_the_next_task_in_order)
{
    ASSERT_STREQ(run_for_order(main_yield_direct_order), "macmcc");
}

static void *main_lifo_hint(void *arg)
{
    weft_spawn_opts lifo = {.flags = WEFT_TASK_SPAWN_LIFO};
    weft_spawn_opts fifo = {.flags = WEFT_TASK_SPAWN_FIFO};
    ASSERT_OK(weft_spawn_ex(NULL, &fifo, append, (void *)'1'));
    ASSERT_OK(weft_spawn_ex(NULL, &fifo, append, (void *)'2'));
    ASSERT_OK(weft_spawn_ex(NULL, &lifo, append, (void *)'L'));
    ASSERT_OK(weft_yield());
    return NULL;
}
TEST(spawn_lifo_hint_runs_first)
{
    ASSERT_STREQ(run_for_order(main_lifo_hint), "L12");
}

static void *main_ids(void *arg)
{
    uint64_t self = weft_self_id();
    ASSERT_GE(self, 1);
    weft_task *t[3];
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_spawn(&t[i], return_arg, NULL));
    ASSERT(weft_task_id(t[0]) < weft_task_id(t[1]));
    ASSERT(weft_task_id(t[1]) < weft_task_id(t[2]));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    ASSERT_EQ(weft_worker_index(), 0);
    ASSERT_EQ(weft_worker_count(), 1);
    ASSERT(!weft_cancelled());
    return NULL;
}
TEST(ids_and_identity)
{
    ASSERT_EQ(weft_self_id(), 0);
    ASSERT_EQ(weft_worker_index(), -EPERM);
    ASSERT_EQ(weft_worker_count(), 0);
    run_main_one_worker(NULL, main_ids, NULL);
}

static void *joiner_of(void *arg)
{
    void *r;
    int rc = weft_join((weft_task *)arg, &r);
    ASSERT_OK(rc);
    return r;
}

static void *sleepy(void *arg)
{
    ASSERT_OK(weft_sleep_ns(2000000));
    return arg;
}

static void *main_join_from_other_task(void *arg)
{
    weft_task *target, *j;
    ASSERT_OK(weft_spawn(&target, sleepy, (void *)9));
    ASSERT_OK(weft_spawn(&j, joiner_of, target));
    void *r;
    ASSERT_OK(weft_join(j, &r));
    ASSERT_EQ((intptr_t)r, 9);
    return NULL;
}
TEST(join_from_a_sibling)
{
    run_main_one_worker(NULL, main_join_from_other_task, NULL);
}

static void *main_misuse(void *arg)
{
    weft_task *t = (weft_task *)1;
    ASSERT_EQ(weft_spawn(&t, NULL, NULL), -EINVAL);
    ASSERT(t == NULL);
    weft_spawn_opts tiny = {.stack_size = 1024};
    ASSERT_EQ(weft_spawn_ex(&t, &tiny, return_arg, NULL), -EINVAL);
    weft_spawn_opts huge = {.stack_size = (size_t)1 << 40};
    ASSERT_EQ(weft_spawn_ex(&t, &huge, return_arg, NULL), -EINVAL);
    weft_spawn_opts q = {.queue = "no-such-queue"};
    ASSERT_EQ(weft_spawn_ex(&t, &q, return_arg, NULL), -ENOENT);
    weft_spawn_opts dq = {.queue = "default"};
    ASSERT_OK(weft_spawn_ex(&t, &dq, return_arg, NULL));
    ASSERT_OK(weft_join(t, NULL));
    weft_spawn_opts flags = {.flags = 1u << 30};
    ASSERT_EQ(weft_spawn_ex(&t, &flags, return_arg, NULL), -EINVAL);
    weft_spawn_opts both = {.flags = WEFT_TASK_SPAWN_LIFO | WEFT_TASK_SPAWN_FIFO};
    ASSERT_EQ(weft_spawn_ex(&t, &both, return_arg, NULL), -EINVAL);
    ASSERT_EQ(weft_join(NULL, NULL), -EINVAL);
    ASSERT_EQ(weft_cancel(NULL), -EINVAL);
    ASSERT_EQ(weft_defer(NULL, NULL), -EINVAL);
    /* A stack size between classes is rounded up, not refused. */
    weft_spawn_opts odd = {.stack_size = 100000,
                           .name = "a-rather-long-task-name-that-is-cut-short"};
    ASSERT_OK(weft_spawn_ex(&t, &odd, return_arg, (void *)3));
    void *r;
    ASSERT_OK(weft_join(t, &r));
    ASSERT_EQ((intptr_t)r, 3);
    return NULL;
}
TEST(bad_input_is_refused)
{
    run_main_one_worker(NULL, main_misuse, NULL);
}

static void *spawn_self_handle(void *arg)
{
    weft_task **slot = arg;
    while (!*slot)
        weft_yield();
    return (void *)(intptr_t)weft_join(*slot, NULL);
}

static void *main_self_join2(void *arg)
{
    static weft_task *slot;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, spawn_self_handle, &slot));
    slot = t;
    /* The child joins its own handle: -EDEADLK, and the handle stays ours. */
    while (!weft_task_finished(t))
        weft_yield();
    void *r;
    ASSERT_OK(weft_join(t, &r));
    ASSERT_EQ((intptr_t)r, -EDEADLK);
    return NULL;
}
TEST(join_own_handle_is_edeadlk)
{
    run_main_one_worker(NULL, main_self_join2, NULL);
}

#ifndef NDEBUG
static void *main_double_join(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, sleepy, NULL));
    weft_task *copy = t;
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_EQ(weft_join(copy, NULL), WEFT_EHANDLE);
    weft_task *u;
    ASSERT_OK(weft_spawn(&u, sleepy, NULL));
    weft_detach(u);
    ASSERT_EQ(weft_join(u, NULL), WEFT_EHANDLE); /* u is still running */
    /* A cancel through a stale handle would hit whatever task reuses the
     * record: caught as well. */
    ASSERT_EQ(weft_cancel(copy), WEFT_EHANDLE);
    ASSERT_EQ(weft_cancel(u), WEFT_EHANDLE);
    return NULL;
}
#endif
TEST(double_join_detected_in_debug_builds)
{
#ifdef NDEBUG
    SKIP("release build: handle checks are compiled out");
#else
    run_main_one_worker(NULL, main_double_join, NULL);
#endif
}

TEST(blocking_calls_outside_a_task)
{
    ASSERT_EQ(weft_spawn(NULL, return_arg, NULL), -EPERM);
    ASSERT_EQ(weft_yield(), -EPERM);
    ASSERT_EQ(weft_yield_maybe(), -EPERM);
    ASSERT_EQ(weft_sleep_ns(1), -EPERM);
    ASSERT_EQ(weft_sleep_until(0), -EPERM);
    ASSERT_EQ(weft_wait_children(), -EPERM);
    ASSERT_EQ(weft_defer(free, NULL), -EPERM);
    ASSERT_EQ(weft_join((weft_task *)&counter, NULL), -EPERM);
    ASSERT_EQ(weft_deadline_push(1), -EPERM);
    ASSERT_EQ(weft_shield_push(), -EPERM);
    weft_stats st;
    ASSERT_EQ(weft_stats_snapshot(&st), -EPERM);
}

static void *nested_run(void *arg)
{
    return (void *)(intptr_t)weft_run(NULL, return_arg, NULL, NULL);
}
TEST(nested_weft_run_is_ebusy)
{
    ASSERT_EQ((intptr_t)run_main_one_worker(NULL, nested_run, NULL), -EBUSY);
}

static void *deep_spawner(void *arg)
{
    intptr_t depth = (intptr_t)arg;
    if (depth == 0)
        return (void *)1;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, deep_spawner, (void *)(depth - 1)));
    void *r;
    ASSERT_OK(weft_join(t, &r));
    return (void *)((intptr_t)r + 1);
}
TEST(deep_chain_of_tasks)
{
    ASSERT_EQ((intptr_t)run_main_one_worker(NULL, deep_spawner, (void *)2000), 2001);
}

static void *main_many(void *arg)
{
    enum { N = 20000 };
    static weft_task *h[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(weft_spawn(&h[i], return_arg, (void *)(intptr_t)i));
    for (int i = 0; i < N; i++) {
        void *r;
        ASSERT_OK(weft_join(h[i], &r));
        ASSERT_EQ((intptr_t)r, i);
    }
    weft_stats st;
    ASSERT_OK(weft_stats_snapshot(&st));
    ASSERT_EQ(st.tasks_spawned, N + 1);
    ASSERT_EQ(st.tasks_completed, N);
    ASSERT_EQ(st.tasks_live, 1);
    /* Stacks are taken at the first run: a spawn storm reuses a few. */
    ASSERT_LE(st.stacks_live + st.stacks_pooled, 4);
    return NULL;
}
TEST(spawn_storm_reuses_stacks)
{
    run_main_one_worker(NULL, main_many, NULL);
}

static void *main_stats_print(void *arg)
{
    weft_stats st;
    ASSERT_OK(weft_stats_snapshot(&st));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    weft_stats_print_json(f, &st);
    fclose(f);
    ASSERT(strstr(buf, "\"tasks_spawned\": 1") != NULL);
    free(buf);
    f = open_memstream(&buf, &len);
    weft_stats_print(f, &st);
    fclose(f);
    ASSERT(strstr(buf, "tasks_live") != NULL);
    free(buf);
    return NULL;
}
TEST(stats_print)
{
    run_main_one_worker(NULL, main_stats_print, NULL);
}

TEST(strerror_knows_every_code)
{
    ASSERT_STREQ(weft_strerror(WEFT_EPANIC), "task panicked");
    ASSERT_STREQ(weft_strerror(WEFT_EHANDLE), "task handle already joined or detached");
    ASSERT_STREQ(weft_strerror(-ECANCELED), "operation cancelled");
    ASSERT_STREQ(weft_strerror(-ETIMEDOUT),
                 "timed out (a deadline passed, or the kernel's own timeout)");
    ASSERT_STREQ(weft_strerror(-ESHUTDOWN),
                 "shut down (a stopped stream has ended, or a send after shutdown)");
    ASSERT_STREQ(weft_strerror(WEFT_EAI(EAI_NONAME)), gai_strerror(EAI_NONAME));
    ASSERT_STREQ(weft_strerror(-ENOMEM), "Cannot allocate memory");
    ASSERT_STREQ(weft_strerror(0), "success");
    ASSERT_STREQ(weft_strerror(-99999), "unknown error");
}

/* ---- weft_join_any --------------------------------------------------- */

static void *sleep_ms_then_return(void *arg)
{
    uintptr_t ms = (uintptr_t)arg;
    if (weft_sleep_ns(ms * 1000000) < 0)
        return NULL;
    return (void *)(ms + 1000);
}

static weft_event go[3];

static void *waits_for_go(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    ASSERT_OK(weft_event_wait(&go[i]));
    return (void *)(i + 1000);
}

static void *main_join_any_order(void *arg)
{
    (void)arg;
    /* Only the task let go can finish: join_any waits for it, whichever
     * slot it is in; joined slots are cleared. */
    weft_task *t[3];
    for (uintptr_t i = 0; i < 3; i++) {
        ASSERT_OK(weft_event_init(&go[i]));
        ASSERT_OK(weft_spawn(&t[i], waits_for_go, (void *)i));
    }
    static const size_t release_order[3] = {1, 2, 0};
    for (int round = 0; round < 3; round++) {
        size_t k = 99;
        void *res = NULL;
        weft_event_notify_one(&go[release_order[round]]);
        ASSERT_OK(weft_join_any(t, 3, &k, &res));
        ASSERT_EQ(k, release_order[round]);
        ASSERT_EQ((uintptr_t)res, k + 1000);
        t[k] = NULL;
    }
    size_t k;
    ASSERT_EQ(weft_join_any(t, 3, &k, NULL), -EINVAL); /* none left */
    /* Several finished already: the lowest index, without waiting. */
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_spawn(&t[i], return_arg, (void *)(uintptr_t)(i + 1)));
    while (!weft_task_finished(t[1]) || !weft_task_finished(t[2]))
        ASSERT_OK(weft_yield());
    weft_task *first = t[0];
    t[0] = NULL; /* skipped */
    ASSERT_OK(weft_join_any(t, 3, &k, NULL));
    ASSERT_EQ(k, 1);
    weft_task *last = t[2];
    ASSERT_OK(weft_join_any(&last, 1, &k, NULL));
    ASSERT_EQ(k, 0);
    ASSERT_OK(weft_join(first, NULL));
    return NULL;
}
TEST(join_any_joins_the_first_to_finish)
{
    run_main(NULL, main_join_any_order, NULL);
}

/* Interrupted: -EINTR (cancelled) or -ETIMEDOUT (deadline), and every
 * handle is still the caller's; a target's outcome comes through too. */
static void *join_any_until_cancelled(void *arg)
{
    weft_task **t = arg;
    size_t k = 99;
    int r = weft_join_any(t, 2, &k, NULL);
    ASSERT_EQ(r, -EINTR);
    ASSERT_EQ(k, 99);
    /* Still valid: cancel and join them, shielded (this task is cancelled). */
    weft_shield_push();
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(weft_cancel(t[i]));
        ASSERT_EQ(weft_join_any(&t[i], 1, &k, NULL), -ECANCELED);
    }
    weft_shield_pop();
    return NULL;
}

static void *main_join_any_interrupted(void *arg)
{
    (void)arg;
    weft_task *t[2], *w;
    for (int i = 0; i < 2; i++)
        ASSERT_OK(weft_spawn(&t[i], sleep_ms_then_return, (void *)(uintptr_t)3600000));
    /* Past a deadline. */
    size_t k;
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 2000000));
    ASSERT_EQ(weft_join_any(t, 2, &k, NULL), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    /* Cancelled, in a task of its own that holds the handles. */
    static weft_task *held[2];
    held[0] = t[0];
    held[1] = t[1];
    ASSERT_OK(weft_spawn(&w, join_any_until_cancelled, held));
    ASSERT_OK(weft_sleep_ns(2000000));
    ASSERT_OK(weft_cancel(w));
    ASSERT_EQ(weft_join(w, NULL), -ECANCELED);
    /* Misuse. */
    ASSERT_EQ(weft_join_any(NULL, 1, &k, NULL), -EINVAL);
    weft_task *one[1] = {NULL};
    ASSERT_EQ(weft_join_any(one, 1, NULL, NULL), -EINVAL);
    ASSERT_EQ(weft_join_any(one, 0, &k, NULL), -EINVAL);
    return NULL;
}
TEST(join_any_interrupted_keeps_every_handle)
{
    run_main(NULL, main_join_any_interrupted, NULL);
    weft_task *fake = NULL;
    size_t k;
    ASSERT_EQ(weft_join_any(&fake, 1, &k, NULL), -EINVAL); /* all NULL */
}

/* WEFT_TASK_INHERIT_DEADLINE: the child starts bound by the spawner's
 * innermost deadline and can neither pop nor move it; without the flag,
 * or from a spawner with none, the child has no deadline. */
typedef struct inherit_probe {
    uint64_t seen;     /* weft_deadline_innermost() on entry */
    int sleep_rc;      /* a sleep far longer than any deadline here */
    uint64_t woke_ns;  /* when that sleep returned */
    bool spawn_nested; /* spawn one more level with the flag */
    bool no_sleep;
    uint64_t nested_seen;
    int defer_rc;            /* a sleep in a defer, past the deadline */
    uint64_t defer_deadline; /* weft_deadline_innermost() there */
} inherit_probe;

/* The inherited deadline bounds the function, not its defers. */
static void sleep_in_a_defer(void *arg)
{
    inherit_probe *p = arg;
    p->defer_deadline = weft_deadline_innermost();
    p->defer_rc = weft_sleep_ns(1000000);
}

static void *probe_deadline(void *arg)
{
    inherit_probe *p = arg;
    p->seen = weft_deadline_innermost();
    if (p->seen) {
        /* The inherited bound is not the child's to remove. */
        ASSERT_EQ(weft_deadline_pop(), -EINVAL);
        ASSERT_EQ(weft_deadline_move_in(3600000000000ull), -EINVAL);
        /* A later push is still bounded by it, an earlier one wins. */
        ASSERT_OK(weft_deadline_push(p->seen + 1000000000));
        ASSERT_EQ(weft_deadline_innermost(), p->seen);
        ASSERT_OK(weft_deadline_pop());
        ASSERT_OK(weft_deadline_push(p->seen - 1));
        ASSERT_EQ(weft_deadline_innermost(), p->seen - 1);
        ASSERT_OK(weft_deadline_pop());
        ASSERT_EQ(weft_deadline_innermost(), p->seen);
    }
    if (p->spawn_nested) {
        inherit_probe q = {.no_sleep = true};
        weft_spawn_opts o = {.flags = WEFT_TASK_INHERIT_DEADLINE};
        weft_task *t;
        ASSERT_OK(weft_spawn_ex(&t, &o, probe_deadline, &q));
        ASSERT_OK(weft_join(t, NULL));
        p->nested_seen = q.seen;
    }
    if (p->no_sleep)
        return NULL;
    p->defer_rc = 1;
    if (p->seen)
        ASSERT_OK(weft_defer(sleep_in_a_defer, p));
    p->sleep_rc = weft_sleep_ns(p->seen ? 3600000000000ull : 20000000);
    p->woke_ns = weft_now_ns();
    return NULL;
}

static void *main_inherit_deadline(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_deadline_innermost(), 0);
    /* Room for the child to spawn and join its own child before it passes. */
    uint64_t deadline = weft_now_ns() + 200000000;
    ASSERT_OK(weft_deadline_push(deadline));
    ASSERT_EQ(weft_deadline_innermost(), deadline);

    inherit_probe with = {.spawn_nested = true}, without = {0}, after = {0};
    weft_spawn_opts inherit = {.flags = WEFT_TASK_INHERIT_DEADLINE};
    weft_task *a, *b, *c;
    ASSERT_OK(weft_spawn_ex(&a, &inherit, probe_deadline, &with));
    ASSERT_OK(weft_spawn(&b, probe_deadline, &without));
    /* Only the copy made at the spawn counts: moving ours later (before
     * the child has even run) does not reach it. */
    ASSERT_OK(weft_deadline_move(deadline + 3600000000000ull));
    ASSERT_OK(weft_join(a, NULL));
    ASSERT_OK(weft_join(b, NULL));
    ASSERT_EQ(with.seen, deadline);
    ASSERT_EQ(with.nested_seen, deadline); /* passed down a second level */
    ASSERT_EQ(with.sleep_rc, -ETIMEDOUT);
    ASSERT_GE(with.woke_ns, deadline);
    ASSERT_EQ(with.defer_deadline, 0); /* its defers run without it */
    ASSERT_OK(with.defer_rc);
    ASSERT_EQ(without.seen, 0);
    ASSERT_OK(without.sleep_rc);

    /* Nothing to inherit: the flag gives no deadline. */
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_deadline_innermost(), 0);
    ASSERT_OK(weft_spawn_ex(&c, &inherit, probe_deadline, &after));
    ASSERT_OK(weft_join(c, NULL));
    ASSERT_EQ(after.seen, 0);
    ASSERT_OK(after.sleep_rc);

    /* A deadline pushed as 0 (long past) reads as 1, never as "none". */
    ASSERT_OK(weft_deadline_push(0));
    ASSERT_EQ(weft_deadline_innermost(), 1);
    ASSERT_EQ(weft_sleep_ns(1000), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    return NULL;
}
TEST(spawned_tasks_inherit_the_deadline_only_when_asked)
{
    run_main(NULL, main_inherit_deadline, NULL);
    ASSERT_EQ(weft_deadline_innermost(), 0); /* outside a task */
}

/* The function leaves pushes behind: the defers get those, without the
 * inherited deadline under them, and popping them never brings it back
 * (before, the inherited one stayed in force whenever a push was left, and
 * a pop in a defer restored it). */
typedef struct leftover_probe {
    uint64_t inherited, hour, two_hours;
    uint64_t in_defer[3]; /* innermost: on entry, after a move, after a pop */
    int defer_sleep_rc, last_pop_rc, extra_pop_rc;
} leftover_probe;

static void defer_under_leftover_pushes(void *arg)
{
    leftover_probe *p = arg;
    p->in_defer[0] = weft_deadline_innermost();
    p->defer_sleep_rc = weft_sleep_ns(30000000); /* past the inherited deadline */
    ASSERT_OK(weft_deadline_move(p->two_hours + 1));
    p->in_defer[1] = weft_deadline_innermost();
    ASSERT_OK(weft_deadline_pop());
    p->in_defer[2] = weft_deadline_innermost();
    p->last_pop_rc = weft_deadline_pop();
    p->extra_pop_rc = weft_deadline_pop();
}

static void *leave_pushes(void *arg)
{
    leftover_probe *p = arg;
    p->inherited = weft_deadline_innermost();
    p->hour = p->inherited + 3600000000000ull;
    p->two_hours = p->hour + 3600000000000ull;
    ASSERT_OK(weft_defer(defer_under_leftover_pushes, p));
    ASSERT_OK(weft_deadline_push(p->two_hours));
    ASSERT_OK(weft_deadline_push(p->inherited - 1));
    ASSERT_EQ(weft_deadline_innermost(), p->inherited - 1);
    /* Moved later: the inherited one is in force again, not the move. */
    ASSERT_OK(weft_deadline_move(p->hour));
    ASSERT_EQ(weft_deadline_innermost(), p->inherited);
    ASSERT_EQ(weft_sleep_ns(UINT64_MAX), -ETIMEDOUT); /* the inherited one ends it */
    return NULL;
}

static void *main_leftover_pushes(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_deadline_push_in(10000000));
    leftover_probe p = {0};
    weft_spawn_opts o = {.flags = WEFT_TASK_INHERIT_DEADLINE};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, leave_pushes, &p));
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_EQ(p.in_defer[0], p.hour); /* the earlier of the two left */
    ASSERT_OK(p.defer_sleep_rc);
    ASSERT_EQ(p.in_defer[1], p.two_hours); /* moved later: the outer one */
    ASSERT_EQ(p.in_defer[2], p.two_hours);
    ASSERT_OK(p.last_pop_rc);
    ASSERT_EQ(p.extra_pop_rc, -EINVAL);
    return NULL;
}
TEST(defers_get_the_leftover_pushes_without_the_inherited_deadline)
{
    run_main(NULL, main_leftover_pushes, NULL);
}

/* weft_deadline_suspend lifts every deadline, pushed or inherited, until
 * its pop: cleanup past a deadline can sleep and take a lock held by
 * another task; pushes inside it bound calls again; it cannot be moved;
 * its pop puts the deadlines back in force; it counts as a level. */
static weft_mutex suspend_mutex;

static void *hold_mutex_2ms(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_mutex_lock(&suspend_mutex));
    ASSERT_OK(weft_sleep_ns(2000000));
    weft_mutex_unlock(&suspend_mutex);
    return NULL;
}

static void *cleanup_past_the_deadline(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_deadline_push(1)); /* long past */
    ASSERT_EQ(weft_sleep_ns(1000), -ETIMEDOUT);
    ASSERT_EQ(weft_mutex_lock(&suspend_mutex), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_suspend());
    ASSERT_EQ(weft_deadline_innermost(), 0);
    ASSERT_EQ(weft_deadline_move_in(1000), -EINVAL);
    ASSERT_OK(weft_sleep_ns(1000000));
    ASSERT_OK(weft_mutex_lock(&suspend_mutex)); /* held by the other: waits */
    weft_mutex_unlock(&suspend_mutex);
    uint64_t soon = weft_now_ns() + 1000000;
    ASSERT_OK(weft_deadline_push(soon)); /* pushes count again inside */
    ASSERT_EQ(weft_deadline_innermost(), soon);
    ASSERT_EQ(weft_sleep_ns(3600000000000ull), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_deadline_innermost(), 0); /* still suspended */
    ASSERT_OK(weft_sleep_ns(1000));
    ASSERT_OK(weft_deadline_pop()); /* the suspension */
    ASSERT_EQ(weft_deadline_innermost(), 1);
    ASSERT_EQ(weft_sleep_ns(1000), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_deadline_innermost(), 0);
    return NULL;
}

static void *suspend_an_inherited_deadline(void *arg)
{
    (void)arg;
    ASSERT(weft_deadline_innermost() != 0);
    ASSERT_OK(weft_deadline_suspend());
    ASSERT_EQ(weft_deadline_innermost(), 0);
    ASSERT_OK(weft_sleep_ns(2000000)); /* past the inherited 1 ms */
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_sleep_ns(1000), -ETIMEDOUT); /* back in force */
    /* Sixteen levels in all, suspensions included. */
    int pushed = 0;
    while (pushed < 16) {
        ASSERT_OK(pushed % 2 ? weft_deadline_suspend() : weft_deadline_push(UINT64_MAX));
        pushed++;
    }
    ASSERT_EQ(weft_deadline_suspend(), -EOVERFLOW);
    ASSERT_EQ(weft_deadline_innermost(), 0); /* the last level is a suspension */
    while (pushed-- > 0)
        ASSERT_OK(weft_deadline_pop());
    return NULL;
}

static void *main_suspend(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_mutex_init(&suspend_mutex));
    weft_task *holder, *cleaner;
    ASSERT_OK(weft_spawn(&holder, hold_mutex_2ms, NULL));
    ASSERT_OK(weft_yield()); /* the holder takes the mutex */
    ASSERT_OK(weft_spawn(&cleaner, cleanup_past_the_deadline, NULL));
    ASSERT_OK(weft_join(cleaner, NULL));
    ASSERT_OK(weft_join(holder, NULL));
    ASSERT_OK(weft_deadline_push_in(1000000));
    weft_spawn_opts o = {.flags = WEFT_TASK_INHERIT_DEADLINE};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, suspend_an_inherited_deadline, NULL));
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_join(t, NULL));
    return NULL;
}
TEST(suspended_deadlines_let_cleanup_finish)
{
    run_main_one_worker(NULL, main_suspend, NULL);
    ASSERT_EQ(weft_deadline_suspend(), -EPERM);
}

/* A CPU-bound loop that yields is bounded by its deadline: weft_yield
 * reports -ETIMEDOUT once it has passed, weft_yield_maybe within the 16
 * calls between its clock reads, and neither reports it early. */
static void *cancelled_past_its_deadline_yields(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_deadline_push(weft_now_ns() - 1));
    weft_cancel_handle *self;
    ASSERT_OK(weft_cancel_handle_self(&self));
    ASSERT_OK(weft_cancel_via(self));
    weft_cancel_handle_drop(self);
    ASSERT_EQ(weft_yield(), -ECANCELED); /* cancellation is reported first */
    ASSERT_OK(weft_shield_push());
    ASSERT_EQ(weft_yield(), -ETIMEDOUT); /* a shield stops cancellation only */
    ASSERT_OK(weft_shield_pop());
    ASSERT_OK(weft_deadline_pop());
    return NULL;
}

static void *main_yields_see_deadlines(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_yield()); /* no deadline: nothing to report */
    ASSERT_OK(weft_deadline_push(weft_now_ns() - 1));
    ASSERT_EQ(weft_yield(), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());

    uint64_t deadline = weft_now_ns() + 3000000;
    ASSERT_OK(weft_deadline_push(deadline));
    int r;
    while ((r = weft_yield()) == 0)
        ;
    ASSERT_EQ(r, -ETIMEDOUT);
    ASSERT_GE(weft_now_ns(), deadline);
    ASSERT_OK(weft_deadline_pop());

    deadline = weft_now_ns() + 3000000;
    ASSERT_OK(weft_deadline_push(deadline));
    unsigned late = 0;
    for (;;) {
        bool passed = weft_now_ns() >= deadline;
        r = weft_yield_maybe();
        if (r != 0)
            break;
        late += passed;
        ASSERT_LE(late, 15);
    }
    ASSERT_EQ(r, -ETIMEDOUT);
    ASSERT_GE(weft_now_ns(), deadline);
    ASSERT_OK(weft_deadline_pop());
    /* Popped: the loop goes on unbounded. */
    for (int i = 0; i < 100; i++)
        ASSERT_OK(weft_yield_maybe());

    weft_task *t;
    ASSERT_OK(weft_spawn(&t, cancelled_past_its_deadline_yields, NULL));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    return NULL;
}
TEST(yields_report_a_passed_deadline)
{
    run_main(NULL, main_yields_see_deadlines, NULL);
}

/* Many rounds of tasks that end at once on whatever worker took them,
 * while the joiner arms and disarms its wakes: each is joined once, with
 * its own result, and nothing is left behind (the stats and sanitizers
 * see leaks and races). */
static void *spin_a_little(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    for (uintptr_t i = 0; i < (v % 7) * 50; i++)
        __asm__ volatile("" ::: "memory");
    if (v % 3 == 0)
        weft_yield();
    return arg;
}

static void *main_join_any_storm(void *arg)
{
    (void)arg;
    enum { N = 8, ROUNDS = 300 };
    for (int round = 0; round < ROUNDS; round++) {
        weft_task *t[N];
        for (int i = 0; i < N; i++)
            ASSERT_OK(weft_spawn(&t[i], spin_a_little, (void *)(uintptr_t)(round * N + i)));
        bool seen[N] = {false};
        for (int left = N; left > 0; left--) {
            size_t k;
            void *res;
            ASSERT_OK(weft_join_any(t, N, &k, &res));
            ASSERT_LT(k, (size_t)N);
            ASSERT(!seen[k]);
            seen[k] = true;
            ASSERT_EQ((uintptr_t)res, (uintptr_t)(round * N) + k);
            t[k] = NULL;
        }
    }
    weft_stats st;
    ASSERT_OK(weft_stats_snapshot(&st));
    ASSERT_EQ(st.tasks_live, 1); /* this one */
    return NULL;
}
TEST(join_any_storm_joins_each_task_once)
{
    run_main(NULL, main_join_any_storm, NULL);
}

/* The same handle twice is misuse: debug builds refuse it. Elsewhere the
 * call must still not leak a reference to the caller's record (one wake
 * request per handle, however many slots name it). */
static void *main_join_any_duplicate(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_event_init(&go[0]));
    weft_task *a;
    ASSERT_OK(weft_spawn(&a, waits_for_go, (void *)0));
    weft_task *twice[2] = {a, a};
    size_t k = 99;
#ifndef NDEBUG
    ASSERT_EQ(weft_join_any(twice, 2, &k, NULL), WEFT_EHANDLE);
    ASSERT_EQ(k, 99);
    weft_event_notify_one(&go[0]);
    ASSERT_OK(weft_join(a, NULL));
#else
    weft_task *self = weft__task_current();
    uint64_t refs = atomic_load(&self->state) & TASK_REF_MASK;
    weft_event_notify_one(&go[0]);
    ASSERT_OK(weft_join_any(twice, 2, &k, NULL));
    ASSERT_EQ(k, 0);
    ASSERT_EQ(atomic_load(&self->state) & TASK_REF_MASK, refs);
#endif
    return NULL;
}
TEST(join_any_refuses_or_survives_a_handle_given_twice)
{
    run_main(NULL, main_join_any_duplicate, NULL);
}

TEST_MAIN(CASE(join_returns_result), CASE(spawned_tasks_inherit_the_deadline_only_when_asked),
          CASE(defers_get_the_leftover_pushes_without_the_inherited_deadline),
          CASE(suspended_deadlines_let_cleanup_finish), CASE(yields_report_a_passed_deadline),
          CASE(detached_children_are_part_of_the_tree), CASE(detach_handle),
          CASE(join_already_finished), CASE(yield_round_robin_order),
          CASE(yield_switches_straight_to_the_next_task_in_order), CASE(spawn_lifo_hint_runs_first),
          CASE(ids_and_identity), CASE(join_from_a_sibling), CASE(bad_input_is_refused),
          CASE(join_own_handle_is_edeadlk), CASE(double_join_detected_in_debug_builds),
          CASE(blocking_calls_outside_a_task), CASE(nested_weft_run_is_ebusy),
          CASE(deep_chain_of_tasks), CASE(spawn_storm_reuses_stacks), CASE(stats_print),
          CASE(strerror_knows_every_code), CASE(join_any_joins_the_first_to_finish),
          CASE(join_any_interrupted_keeps_every_handle), CASE(join_any_storm_joins_each_task_once),
          CASE(join_any_refuses_or_survives_a_handle_given_twice))
