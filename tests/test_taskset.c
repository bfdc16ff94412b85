/* Task sets (weft_taskset_*): members are joined in the order they finish,
 * with their outcomes and ids; cancel_all reaches the members still
 * running; an interrupted join_next joins nothing; destroy cancels and
 * waits for what is left; joiners on two workers share the members out;
 * bad input, another runtime's set and failed allocations get errors. */
#include <pthread.h>
#include <stdatomic.h>

#include "common/fault.h"
#include "test.h"

#define MS 1000000ull

/* Member i ends when told to, through its own event: the test picks the
 * order in which they finish. */
static weft_event finish[5];

static void *wait_then_return(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    ASSERT_OK(weft_event_wait(&finish[i]));
    return (void *)i;
}

/* ---- order, ids, outcomes -------------------------------------------------- */

static void *main_order(void *arg)
{
    (void)arg;
    weft_taskset *s;
    ASSERT_OK(weft_taskset_create(&s));
    ASSERT_EQ(weft_taskset_len(s), 0);
    uint64_t id[5];
    for (uintptr_t i = 0; i < 5; i++) {
        ASSERT_OK(weft_event_init(&finish[i]));
        ASSERT_OK(weft_taskset_spawn(s, NULL, wait_then_return, (void *)i, &id[i]));
        ASSERT_NE(id[i], 0);
    }
    ASSERT_EQ(weft_taskset_len(s), 5);
    uint64_t got_id;
    void *res;
    ASSERT_EQ(weft_taskset_try_join_next(s, &got_id, &res), -EAGAIN); /* none ended yet */
    ASSERT_OK(weft_yield()); /* each runs until it waits for its event */
    /* Told to end in the order 3, 0, 4, 1, 2: on one worker they run, and
     * so end, in the order they were woken, and are joined in that order. */
    static const uintptr_t order[] = {3, 0, 4, 1, 2};
    for (int k = 0; k < 5; k++)
        weft_event_notify_one(&finish[order[k]]);
    for (int k = 0; k < 5; k++) {
        res = NULL;
        got_id = 0;
        ASSERT_OK(weft_taskset_join_next(s, &got_id, &res));
        ASSERT_EQ((uintptr_t)res, order[k]);
        ASSERT_EQ(got_id, id[order[k]]);
        ASSERT_EQ(weft_taskset_len(s), (size_t)(4 - k));
    }
    ASSERT_EQ(weft_taskset_join_next(s, &got_id, &res), -ECHILD);
    ASSERT_EQ(weft_taskset_try_join_next(s, NULL, NULL), -ECHILD);
    ASSERT_OK(weft_taskset_destroy(s));
    return NULL;
}
TEST(members_are_joined_in_the_order_they_finish)
{
    run_main_one_worker(NULL, main_order, NULL);
}

static void *panics(void *arg)
{
    (void)arg;
    weft_panic("member gives up");
    return NULL;
}

static void *sleeps_long(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_sleep_ns(10000 * MS), -ECANCELED);
    return NULL;
}

static void *returns_arg(void *arg)
{
    return arg;
}

static void *main_outcomes(void *arg)
{
    (void)arg;
    weft_taskset *s;
    ASSERT_OK(weft_taskset_create(&s));
    uint64_t sleeper, panicker, plain;
    ASSERT_OK(weft_taskset_spawn(s, NULL, sleeps_long, NULL, &sleeper));
    ASSERT_OK(weft_taskset_spawn(s, NULL, panics, NULL, &panicker));
    weft_spawn_opts o = {.name = "plain", .flags = WEFT_TASK_SPAWN_LIFO};
    ASSERT_OK(weft_taskset_spawn(s, &o, returns_arg, (void *)(uintptr_t)7, &plain));
    bool seen_panicker = false, seen_plain = false;
    for (int k = 0; k < 2; k++) {
        uint64_t id;
        void *res = (void *)1;
        int r = weft_taskset_join_next(s, &id, &res);
        if (id == panicker) {
            ASSERT_EQ(r, WEFT_EPANIC);
            ASSERT(res == NULL);
            seen_panicker = true;
        } else {
            ASSERT_EQ(id, plain);
            ASSERT_EQ(r, 0);
            ASSERT_EQ((uintptr_t)res, 7);
            seen_plain = true;
        }
    }
    ASSERT(seen_panicker && seen_plain);
    /* The sleeper is all that is still running. */
    ASSERT_EQ(weft_taskset_cancel_all(s), 1);
    uint64_t id;
    ASSERT_EQ(weft_taskset_join_next(s, &id, NULL), -ECANCELED);
    ASSERT_EQ(id, sleeper);
    /* A member cancelled before it ever ran ends with -ECANCELED. */
    ASSERT_OK(weft_taskset_spawn(s, NULL, returns_arg, NULL, &id));
    ASSERT_EQ(weft_taskset_cancel_all(s), 1);
    ASSERT_EQ(weft_taskset_join_next(s, NULL, NULL), -ECANCELED);
    ASSERT_EQ(weft_taskset_cancel_all(s), 0);
    ASSERT_OK(weft_taskset_destroy(s));
    return NULL;
}
TEST(outcomes_and_cancel_all)
{
    weft_config cfg = {.on_panic = WEFT_PANIC_CATCH};
    run_main(&cfg, main_outcomes, NULL);
}

/* join_next_ex hands over a panicked member's message; weft_taskset_cancel
 * cancels one member by id. One worker: settle() lets members run. */
static void *main_ex_and_cancel_by_id(void *arg)
{
    (void)arg;
    weft_taskset *s;
    ASSERT_OK(weft_taskset_create(&s));
    uint64_t panicker, plain, a, b;
    ASSERT_OK(weft_taskset_spawn(s, NULL, panics, NULL, &panicker));
    ASSERT_OK(weft_taskset_spawn(s, NULL, returns_arg, (void *)(uintptr_t)7, &plain));
    ASSERT_OK(weft_taskset_spawn(s, NULL, sleeps_long, NULL, &a));
    ASSERT_OK(weft_taskset_spawn(s, NULL, sleeps_long, NULL, &b));
    settle(); /* the panicker and the plain one have finished; a, b sleep */
    ASSERT_EQ(weft_taskset_cancel(s, panicker), -EALREADY);
    ASSERT_OK(weft_taskset_cancel(s, a));
    ASSERT_OK(weft_taskset_cancel(s, a)); /* cancelled already: still 0 */
    ASSERT_EQ(weft_taskset_cancel(s, 0), -EINVAL);
    ASSERT_EQ(weft_taskset_cancel(NULL, a), -EINVAL);
    ASSERT_EQ(weft_taskset_cancel(s, weft_self_id()), -ESRCH); /* not a member */
    bool seen[3] = {false, false, false};
    for (int k = 0; k < 3; k++) {
        weft_taskset_joined j;
        int r = weft_taskset_join_next_ex(s, &j, 0);
        if (j.id == panicker) {
            ASSERT_EQ(r, WEFT_EPANIC);
            ASSERT(j.panic_message != NULL);
            ASSERT(strstr(j.panic_message, "member gives up") != NULL);
            free(j.panic_message);
            seen[0] = true;
        } else if (j.id == plain) {
            ASSERT_EQ(r, 0);
            ASSERT_EQ((uintptr_t)j.result, 7);
            ASSERT(j.panic_message == NULL);
            seen[1] = true;
        } else {
            ASSERT_EQ(j.id, a);
            ASSERT_EQ(r, -ECANCELED);
            ASSERT(j.panic_message == NULL);
            seen[2] = true;
        }
    }
    ASSERT(seen[0] && seen[1] && seen[2]);
    ASSERT_EQ(weft_taskset_cancel(s, a), -ESRCH); /* joined */
    /* b still sleeps: nothing to take without waiting. */
    weft_taskset_joined j = {.id = 99, .result = (void *)1, .panic_message = (char *)1};
    ASSERT_EQ(weft_taskset_join_next_ex(s, &j, WEFT_TASKSET_NO_WAIT), -EAGAIN);
    ASSERT(j.id == 0 && j.result == NULL && j.panic_message == NULL);
    ASSERT_EQ(weft_taskset_join_next_ex(s, &j, 2), -EINVAL);
    ASSERT_EQ(weft_taskset_join_next_ex(s, NULL, 0), -EINVAL);
    ASSERT_OK(weft_taskset_cancel(s, b));
    ASSERT_EQ(weft_taskset_join_next_ex(s, &j, 0), -ECANCELED);
    ASSERT_EQ(j.id, b);
    ASSERT_EQ(weft_taskset_join_next_ex(s, &j, 0), -ECHILD);
    ASSERT_OK(weft_taskset_destroy(s));
    return NULL;
}
TEST(join_next_ex_keeps_the_panic_message_and_cancel_by_id)
{
    weft_config cfg = {.on_panic = WEFT_PANIC_CATCH};
    run_main_one_worker(&cfg, main_ex_and_cancel_by_id, NULL);
}

/* A member that waits for its own set, in join_next or in a select's JOIN
 * case, is told -EDEADLK once the other members are joined elsewhere, and
 * at once when it is alone already. One worker, for the order: the main
 * task waits first, so the sleeper's end goes to it. */
static weft_taskset *own_set;

static void *sleeps_a_little(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_sleep_ns(2 * MS));
    return NULL;
}

static void *joins_own_set(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_taskset_join_next(own_set, NULL, NULL);
}

static void *selects_own_set(void *arg)
{
    (void)arg;
    weft_select_case c = {.op = WEFT_SELECT_JOIN, .set = own_set};
    ASSERT_EQ(weft_select(&c, 1), 0);
    return (void *)(intptr_t)c.result;
}

static void *main_own_set(void *arg)
{
    (void)arg;
    weft_fn waiters[2] = {joins_own_set, selects_own_set};
    for (int k = 0; k < 2; k++) {
        ASSERT_OK(weft_taskset_create(&own_set));
        uint64_t sleeper, waiter, id;
        ASSERT_OK(weft_taskset_spawn(own_set, NULL, sleeps_a_little, NULL, &sleeper));
        ASSERT_OK(weft_taskset_spawn(own_set, NULL, waiters[k], NULL, &waiter));
        void *res = (void *)1;
        ASSERT_OK(weft_taskset_join_next(own_set, &id, &res));
        ASSERT_EQ(id, sleeper);
        ASSERT_OK(weft_taskset_join_next(own_set, &id, &res));
        ASSERT_EQ(id, waiter);
        ASSERT_EQ((intptr_t)res, -EDEADLK);
        /* Alone from the start: at once. */
        ASSERT_OK(weft_taskset_spawn(own_set, NULL, waiters[k], NULL, &waiter));
        ASSERT_OK(weft_taskset_join_next(own_set, &id, &res));
        ASSERT_EQ((intptr_t)res, -EDEADLK);
        ASSERT_OK(weft_taskset_destroy(own_set));
    }
    return NULL;
}
TEST(a_member_waiting_for_its_own_set_alone_gets_edeadlk)
{
    run_main_one_worker(NULL, main_own_set, NULL);
}

/* weft_taskset_cancel from a plain thread on one worker queues the cancel:
 * when that fails, it says so, and nothing was cancelled. */
static weft_taskset *queued_set;
static uint64_t queued_member;
static _Atomic bool queued_member_asleep;

static void *sleeps_until_cancelled(void *arg)
{
    (void)arg;
    atomic_store(&queued_member_asleep, true);
    return (void *)(intptr_t)weft_sleep_ns(10000 * MS);
}

static void *cancel_from_a_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&queued_member_asleep))
        usleep(1000);
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    int r = weft_taskset_cancel(queued_set, queued_member);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_EQ(r, -ENOMEM);
    ASSERT_OK(weft_taskset_cancel(queued_set, queued_member));
    return NULL;
}

static void *main_cancel_queued(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_taskset_create(&queued_set));
    ASSERT_OK(weft_taskset_spawn(queued_set, NULL, sleeps_until_cancelled, NULL, &queued_member));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, cancel_from_a_thread, NULL));
    uint64_t id;
    ASSERT_EQ(weft_taskset_join_next(queued_set, &id, NULL), -ECANCELED);
    ASSERT_EQ(id, queued_member);
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_OK(weft_taskset_destroy(queued_set));
    return NULL;
}
TEST(a_cancel_by_id_that_cannot_be_queued_says_so)
{
    run_main_one_worker(NULL, main_cancel_queued, NULL);
}

/* ---- interruption and destroy ------------------------------------------------ */

static _Atomic int joiner_result = 1;

static void *join_next_until_cancelled(void *arg)
{
    atomic_store(&joiner_result, weft_taskset_join_next(arg, NULL, NULL));
    return NULL;
}

static _Atomic int ended_members, started_members;

static void *sleep_and_count(void *arg)
{
    (void)arg;
    atomic_fetch_add(&started_members, 1);
    int r = weft_sleep_ns(10000 * MS);
    ASSERT_EQ(r, -ECANCELED);
    atomic_fetch_add(&ended_members, 1);
    return NULL;
}

static void *main_interrupted(void *arg)
{
    (void)arg;
    weft_taskset *s;
    ASSERT_OK(weft_taskset_create(&s));
    ASSERT_OK(weft_taskset_spawn(s, NULL, sleep_and_count, NULL, NULL));
    ASSERT_OK(weft_deadline_push_in(2 * MS));
    ASSERT_EQ(weft_taskset_join_next(s, NULL, NULL), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_taskset_len(s), 1); /* nothing joined */
    /* A joiner cancelled while it waits: -EINTR, as weft_join. */
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, join_next_until_cancelled, s));
    ASSERT_OK(weft_sleep_ns(2 * MS));
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    int r = atomic_load(&joiner_result);
    ASSERT(r == -EINTR || r == 1); /* interrupted waiting, or cancelled before it ran */
    ASSERT_EQ(weft_taskset_len(s), 1);

    /* destroy cancels what is left and waits for it, even in a task whose
     * deadline has passed. */
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_taskset_spawn(s, NULL, sleep_and_count, NULL, NULL));
    /* All four have started (one cancelled before its first run would
     * never count its end), and so are asleep or about to be. */
    while (atomic_load(&started_members) < 4)
        ASSERT_OK(weft_sleep_ns(MS / 10));
    ASSERT_OK(weft_deadline_push_in(0));
    atomic_store(&ended_members, 0);
    ASSERT_OK(weft_taskset_destroy(s));
    ASSERT_EQ(atomic_load(&ended_members), 4);
    ASSERT_OK(weft_deadline_pop());
    return NULL;
}
TEST(an_interrupted_join_next_joins_nothing_and_destroy_waits)
{
    run_main(NULL, main_interrupted, NULL);
}

/* ---- many members, two joiners --------------------------------------------------- */

#ifdef TEST_TSAN
#define MANY 2000
#else
#define MANY 20000
#endif

static void *yield_then_return(void *arg)
{
    if ((uintptr_t)arg % 3 == 0)
        ASSERT_OK(weft_yield());
    return arg;
}

struct joiner {
    weft_taskset *s;
    uint64_t sum, count;
};

static void *join_all(void *arg)
{
    struct joiner *j = arg;
    for (;;) {
        void *res;
        int r = weft_taskset_join_next(j->s, NULL, &res);
        if (r == -ECHILD)
            return NULL;
        ASSERT_OK(r);
        j->sum += (uintptr_t)res;
        j->count++;
    }
}

static void *main_many(void *arg)
{
    (void)arg;
    weft_taskset *s;
    ASSERT_OK(weft_taskset_create(&s));
    /* Half the members first, then the joiners, then the rest: the
     * joiners wait for members spawned after they started. */
    for (uintptr_t i = 0; i < MANY / 2; i++)
        ASSERT_OK(weft_taskset_spawn(s, NULL, yield_then_return, (void *)i, NULL));
    struct joiner j[2] = {{s, 0, 0}, {s, 0, 0}};
    weft_task *t[2];
    ASSERT_OK(weft_spawn(&t[0], join_all, &j[0]));
    ASSERT_OK(weft_spawn(&t[1], join_all, &j[1]));
    for (uintptr_t i = MANY / 2; i < MANY; i++)
        ASSERT_OK(weft_taskset_spawn(s, NULL, yield_then_return, (void *)i, NULL));
    ASSERT_OK(weft_join(t[0], NULL));
    ASSERT_OK(weft_join(t[1], NULL));
    /* A joiner may have found the set empty between the two batches and
     * stopped; whatever is left is joined here. */
    struct joiner rest = {s, 0, 0};
    join_all(&rest);
    ASSERT_EQ(j[0].count + j[1].count + rest.count, MANY);
    ASSERT_EQ(j[0].sum + j[1].sum + rest.sum, (uint64_t)MANY * (MANY - 1) / 2);
    ASSERT_EQ(weft_taskset_len(s), 0);
    ASSERT_OK(weft_taskset_destroy(s));
    return NULL;
}
TEST(two_joiners_share_many_members_and_lose_none)
{
    run_main(NULL, main_many, NULL);
}

/* ---- several joiners, destroy, the runtime's end ------------------------------------ */

static weft_event go;

static void *wait_go(void *arg)
{
    ASSERT_OK(weft_event_wait(&go));
    return arg;
}

static void *join_one(void *arg)
{
    return (void *)(intptr_t)weft_taskset_join_next(arg, NULL, NULL);
}

/* Two joiners wait, one member ends: one joins it, and the other, which
 * its end did not wake, learns from the join that the set is empty. */
static void *main_two_joiners_one_member(void *arg)
{
    (void)arg;
    weft_taskset *s;
    ASSERT_OK(weft_taskset_create(&s));
    ASSERT_OK(weft_event_init(&go));
    ASSERT_OK(weft_taskset_spawn(s, NULL, wait_go, NULL, NULL));
    weft_task *a, *b;
    ASSERT_OK(weft_spawn(&a, join_one, s));
    ASSERT_OK(weft_spawn(&b, join_one, s));
    ASSERT_OK(weft_sleep_ns(2 * MS)); /* both wait */
    weft_event_notify_all(&go);
    void *ra, *rb;
    ASSERT_OK(weft_join(a, &ra));
    ASSERT_OK(weft_join(b, &rb));
    int x = (int)(intptr_t)ra, y = (int)(intptr_t)rb;
    ASSERT((x == 0 && y == -ECHILD) || (x == -ECHILD && y == 0));
    ASSERT_OK(weft_taskset_destroy(s));
    return NULL;
}
TEST(a_joiner_left_waiting_learns_the_set_is_empty)
{
    run_main(NULL, main_two_joiners_one_member, NULL);
}

/* destroy while another task waits in join_next: destroy returns, and
 * frees the set only after that joiner has left (ASan would see it
 * otherwise); the joiner got the member or -ECHILD. */
static void *main_destroy_beside_a_joiner(void *arg)
{
    (void)arg;
    for (int round = 0; round < 20; round++) {
        weft_taskset *s;
        ASSERT_OK(weft_taskset_create(&s));
        ASSERT_OK(weft_taskset_spawn(s, NULL, sleep_and_count, NULL, NULL));
        weft_task *j;
        ASSERT_OK(weft_spawn(&j, join_one, s));
        ASSERT_OK(weft_sleep_ns(round % 2 ? MS : 0)); /* waiting, or not yet */
        ASSERT_OK(weft_taskset_destroy(s));
        void *r;
        ASSERT_OK(weft_join(j, &r));
        int jr = (int)(intptr_t)r;
        ASSERT(jr == -ECANCELED || jr == -ECHILD || jr == 0);
    }
    return NULL;
}
TEST(destroy_beside_a_waiting_joiner_returns_once_it_left)
{
    run_main(NULL, main_destroy_beside_a_joiner, NULL);
}

/* On one worker, deterministic: a joiner is woken for the member that
 * ended, but before it runs, destroy (already running) joins that member
 * itself and finds the set empty. The joiner is still inside join_next:
 * destroy must wait for it to leave before it frees the set. */
static void *main_destroy_before_a_woken_joiner(void *arg)
{
    (void)arg;
    weft_taskset *s;
    ASSERT_OK(weft_taskset_create(&s));
    ASSERT_OK(weft_event_init(&go));
    ASSERT_OK(weft_taskset_spawn(s, NULL, wait_go, NULL, NULL));
    weft_task *j;
    ASSERT_OK(weft_spawn(&j, join_one, s));
    ASSERT_OK(weft_yield()); /* the member waits for go, the joiner for the member */
    weft_event_notify_one(&go);
    ASSERT_OK(weft_yield()); /* the member ends and wakes the joiner, queued behind us */
    ASSERT_OK(weft_taskset_destroy(s));
    void *r;
    ASSERT_OK(weft_join(j, &r));
    ASSERT_EQ((int)(intptr_t)r, -ECHILD);
    return NULL;
}
/* A plain thread cannot wait for a task in join_next: its destroy of a
 * set that a task waits on says -EBUSY and frees nothing. */
static _Atomic int thread_destroy = 1;

static void *destroy_from_thread(void *arg)
{
    atomic_store(&thread_destroy, weft_taskset_destroy(arg));
    return NULL;
}

static void *main_thread_destroy(void *arg)
{
    (void)arg;
    weft_taskset *s;
    ASSERT_OK(weft_taskset_create(&s));
    weft_task *j;
    ASSERT_OK(weft_spawn(&j, join_one, s)); /* empty: it returns -ECHILD */
    ASSERT_OK(weft_join(j, NULL));
    ASSERT_OK(weft_event_init(&go));
    ASSERT_OK(weft_taskset_spawn(s, NULL, wait_go, NULL, NULL));
    ASSERT_OK(weft_spawn(&j, join_one, s));
    ASSERT_OK(weft_sleep_ns(MS)); /* it waits in join_next */
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, destroy_from_thread, s));
    while (pthread_tryjoin_np(th, NULL) != 0)
        ASSERT_OK(weft_sleep_ns(MS));
    ASSERT_EQ(atomic_load(&thread_destroy), -EBUSY);
    weft_event_notify_one(&go);
    void *r;
    ASSERT_OK(weft_join(j, &r));
    ASSERT_EQ((int)(intptr_t)r, 0);
    ASSERT_OK(weft_taskset_destroy(s));
    return NULL;
}
TEST(a_threads_destroy_of_a_set_a_task_waits_on_is_refused)
{
    run_main(NULL, main_thread_destroy, NULL);
}

TEST(destroy_waits_for_a_joiner_woken_but_not_yet_run)
{
    run_main_one_worker(NULL, main_destroy_before_a_woken_joiner, NULL);
}

/* A member that, cancelled by destroy, spawns into the set: the set is
 * closed, so the spawn fails and destroy need not wait for a newcomer. */
static _Atomic int late_spawn = 1;

static void *spawn_when_cancelled(void *arg)
{
    (void)weft_sleep_ns(10000 * MS);
    weft_spawn_opts bg = {.flags = WEFT_TASK_BACKGROUND};
    atomic_store(&late_spawn, weft_taskset_spawn(arg, &bg, sleeps_long, NULL, NULL));
    return NULL;
}

static void *member_joins_own_set(void *arg)
{
    ASSERT_EQ(weft_taskset_join_next(arg, NULL, NULL), -EDEADLK);
    ASSERT_EQ(weft_taskset_destroy(arg), -EDEADLK);
    return NULL;
}

static void *main_closing(void *arg)
{
    (void)arg;
    weft_taskset *s;
    ASSERT_OK(weft_taskset_create(&s));
    /* A member alone in its set cannot wait for the set or destroy it. */
    ASSERT_OK(weft_taskset_spawn(s, NULL, member_joins_own_set, s, NULL));
    ASSERT_OK(weft_taskset_join_next(s, NULL, NULL));

    ASSERT_OK(weft_taskset_spawn(s, NULL, spawn_when_cancelled, s, NULL));
    ASSERT_OK(weft_sleep_ns(MS));
    ASSERT_OK(weft_taskset_spawn(s, NULL, sleeps_long, NULL, NULL));
    ASSERT_OK(weft_sleep_ns(MS));
    ASSERT_OK(weft_taskset_destroy(s));
    ASSERT_EQ(atomic_load(&late_spawn), -ESHUTDOWN);

    /* cancel_all counts the members it cancels, not those cancelled already. */
    ASSERT_OK(weft_taskset_create(&s));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_taskset_spawn(s, NULL, sleeps_long, NULL, NULL));
    ASSERT_EQ(weft_taskset_cancel_all(s), 3);
    ASSERT_EQ(weft_taskset_cancel_all(s), 0);
    ASSERT_OK(weft_taskset_destroy(s));
    return NULL;
}
TEST(a_set_being_destroyed_takes_no_new_member)
{
    run_main(NULL, main_closing, NULL);
}

/* A set whose runtime ended with a member not joined: the runtime frees
 * the member, and the set forgets it (it would point at freed memory). */
static weft_taskset *outlived;

static void *main_leave_a_member(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_taskset_spawn(outlived, NULL, returns_arg, (void *)1, NULL));
    ASSERT_OK(weft_sleep_ns(MS)); /* it ends, not joined */
    return NULL;
}

static void *main_after(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_taskset_join_next(outlived, NULL, NULL), -ECHILD);
    ASSERT_OK(weft_taskset_spawn(outlived, NULL, returns_arg, (void *)2, NULL));
    void *r;
    ASSERT_OK(weft_taskset_join_next(outlived, NULL, &r));
    ASSERT_EQ((uintptr_t)r, 2);
    return NULL;
}
TEST(a_set_outliving_its_runtime_forgets_its_members)
{
    ASSERT_OK(weft_taskset_create(&outlived));
    run_main(NULL, main_leave_a_member, NULL);
    ASSERT_EQ(weft_taskset_len(outlived), 0);
    run_main(NULL, main_after, NULL);          /* usable from another runtime now */
    ASSERT_OK(weft_taskset_destroy(outlived)); /* empty: from anywhere */
}

/* ---- errors ---------------------------------------------------------------------- */

/* A set whose members belong to another runtime: that runtime runs on a
 * thread of its own and keeps one member waiting until told to end. */
static weft_taskset *xset;
static _Atomic int x_ready, x_go;

static void *x_member(void *arg)
{
    (void)arg;
    (void)weft_sleep_ns(10000 * MS);
    return NULL;
}

static void *x_main(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_taskset_spawn(xset, NULL, x_member, NULL, NULL));
    atomic_store(&x_ready, 1);
    while (!atomic_load(&x_go))
        ASSERT_OK(weft_sleep_ns(MS));
    ASSERT_OK(weft_taskset_destroy(xset)); /* cancels the member */
    return NULL;
}

static void *x_thread(void *arg)
{
    (void)arg;
    run_main(NULL, x_main, NULL);
    return NULL;
}

static void *main_other_runtime(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_taskset_join_next(xset, NULL, NULL), -EXDEV);
    ASSERT_EQ(weft_taskset_try_join_next(xset, NULL, NULL), -EXDEV);
    ASSERT_EQ(weft_taskset_spawn(xset, NULL, returns_arg, NULL, NULL), -EXDEV);
    ASSERT_EQ(weft_taskset_destroy(xset), -EXDEV);
    ASSERT_EQ(weft_taskset_len(xset), 1);
    atomic_store(&x_go, 1);
    return NULL;
}

static void *main_misuse(void *arg)
{
    (void)arg;
    weft_taskset *s;
    ASSERT_OK(weft_taskset_create(&s));
    ASSERT_EQ(weft_taskset_spawn(NULL, NULL, returns_arg, NULL, NULL), -EINVAL);
    ASSERT_EQ(weft_taskset_spawn(s, NULL, NULL, NULL, NULL), -EINVAL);
    weft_spawn_opts bad = {.flags = WEFT_TASK_SPAWN_LIFO | WEFT_TASK_SPAWN_FIFO};
    ASSERT_EQ(weft_taskset_spawn(s, &bad, returns_arg, NULL, NULL), -EINVAL);
    weft_spawn_opts unknown = {.queue = "no such queue"};
    ASSERT_EQ(weft_taskset_spawn(s, &unknown, returns_arg, NULL, NULL), -ENOENT);
    ASSERT_EQ(weft_taskset_join_next(NULL, NULL, NULL), -EINVAL);
    ASSERT_EQ(weft_taskset_len(s), 0); /* the failed spawns left nothing */
    ASSERT_EQ(weft_taskset_join_next(s, NULL, NULL), -ECHILD);

    /* Failed allocations: nothing spawned, nothing counted, at each
     * allocation the spawn makes (the member's extension block, its name,
     * its record chunk if a new one is needed). */
    weft_spawn_opts named = {.name = "member"};
    for (uint64_t n = 1; n <= 2; n++) {
        weft__fault_arm(WEFT_FAULT_ALLOC, n);
        int r = weft_taskset_spawn(s, &named, returns_arg, NULL, NULL);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
        ASSERT_EQ(r, -ENOMEM);
        ASSERT_EQ(weft_taskset_len(s), 0);
    }
    ASSERT_OK(weft_taskset_spawn(s, &named, returns_arg, NULL, NULL));
    ASSERT_OK(weft_taskset_join_next(s, NULL, NULL));
    ASSERT_OK(weft_taskset_destroy(s));
    ASSERT_EQ(weft_taskset_cancel_all(NULL), 0);
    ASSERT_OK(weft_taskset_destroy(NULL));
    return NULL;
}

TEST(bad_input_and_other_runtimes_get_errors)
{
    ASSERT_EQ(weft_taskset_create(NULL), -EINVAL);
    weft_taskset *s;
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    ASSERT_EQ(weft_taskset_create(&s), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT(s == NULL);
    /* Outside a task. */
    ASSERT_OK(weft_taskset_create(&s));
    ASSERT_EQ(weft_taskset_spawn(s, NULL, returns_arg, NULL, NULL), -EPERM);
    ASSERT_EQ(weft_taskset_join_next(s, NULL, NULL), -EPERM);
    ASSERT_EQ(weft_taskset_len(s), 0);
    ASSERT_EQ(weft_taskset_len(NULL), 0);
    ASSERT_OK(weft_taskset_destroy(s)); /* empty: from anywhere */
    run_main(NULL, main_misuse, NULL);

    ASSERT_OK(weft_taskset_create(&xset));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, x_thread, NULL));
    while (!atomic_load(&x_ready))
        usleep(1000);
    ASSERT_EQ(weft_taskset_destroy(xset), -EPERM); /* members left, no task here */
    run_main(NULL, main_other_runtime, NULL);
    ASSERT_OK(pthread_join(th, NULL));
}

TEST_MAIN(CASE(members_are_joined_in_the_order_they_finish), CASE(outcomes_and_cancel_all),
          CASE(join_next_ex_keeps_the_panic_message_and_cancel_by_id),
          CASE(a_member_waiting_for_its_own_set_alone_gets_edeadlk),
          CASE(a_cancel_by_id_that_cannot_be_queued_says_so),
          CASE(an_interrupted_join_next_joins_nothing_and_destroy_waits),
          CASE(two_joiners_share_many_members_and_lose_none),
          CASE(a_joiner_left_waiting_learns_the_set_is_empty),
          CASE(destroy_beside_a_waiting_joiner_returns_once_it_left),
          CASE(destroy_waits_for_a_joiner_woken_but_not_yet_run),
          CASE(a_threads_destroy_of_a_set_a_task_waits_on_is_refused),
          CASE(a_set_being_destroyed_takes_no_new_member),
          CASE(a_set_outliving_its_runtime_forgets_its_members),
          CASE(bad_input_and_other_runtimes_get_errors))
