/* The built-in queue policies (DESIGN §4), driven directly through their
 * vtables with arrays of weft_sched_entity: no runtime, no clock. Scripted
 * cases check exact pop orders; the stress cases replay random operations
 * against a plain O(n) reference model of each policy; the fault cases fail
 * each allocation in turn and check that no task is lost and nothing leaks.
 * The "cost" case prints ns per operation for information only. */
#include "test.h"

#include <time.h>
#include <weft/sched.h>

#include "common/fault.h"
#include "sched/group_table.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/lsan_interface.h>
#endif

typedef struct pol {
    const weft_policy *p;
    void *state;
} pol;

static pol pol_open(const weft_policy *p, const void *config)
{
    pol q = {p, calloc(1, p->state_size)};
    ASSERT(q.state);
    ASSERT_OK(p->init(q.state, config));
    return q;
}

static void pol_close(pol *q)
{
    q->p->fini(q->state);
    free(q->state);
    q->state = NULL;
}

static void push(pol *q, weft_sched_entity *e)
{
    q->p->push(q->state, e);
}

static weft_sched_entity *pop(pol *q)
{
    return q->p->pop(q->state);
}

static void rm(pol *q, weft_sched_entity *e)
{
    q->p->remove(q->state, e);
}

static void charge(pol *q, weft_sched_entity *e, uint64_t ran_ns)
{
    q->p->charge(q->state, e, ran_ns);
}

static void task_exit(pol *q, weft_sched_entity *e)
{
    q->p->exit(q->state, e);
}

static void mk(weft_sched_entity *e, uint64_t id, uint64_t group, uint64_t spawned_ns)
{
    memset(e, 0, sizeof *e);
    e->task_id = id;
    e->group = group ? group : id;
    e->spawned_ns = e->runnable_ns = spawned_ns;
}

/* Pops the listed tasks in order; with `then_empty`, the policy must then be
 * empty. Failures name task ids. */
static void expect_pops(pol *q, weft_sched_entity *const *want, bool then_empty, int line)
{
    for (size_t i = 0; want[i]; i++) {
        weft_sched_entity *got = pop(q);
        if (got != want[i])
            FAILF("line %d: %s pop %zu: task %lld, want task %lld", line, q->p->name, i,
                  got ? (long long)got->task_id : -1LL, (long long)want[i]->task_id);
    }
    if (then_empty) {
        weft_sched_entity *got = pop(q);
        if (got)
            FAILF("line %d: %s: task %lld popped, want empty", line, q->p->name,
                  (long long)got->task_id);
    }
}
#define EXPECT_POPS(q, ...)                                                                        \
    expect_pops(q, (weft_sched_entity *[]){__VA_ARGS__, NULL}, true, __LINE__)
#define EXPECT_NEXT(q, ...)                                                                        \
    expect_pops(q, (weft_sched_entity *[]){__VA_ARGS__, NULL}, false, __LINE__)

/* LeakSanitizer normally checks at exit, which the harness's _exit skips; in
 * the asan build this is where leaks are found. */
static void check_no_leaks(void)
{
#ifdef TEST_ASAN
    ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0);
#endif
}

static const weft_policy *const all_policies[] = {
    &weft_policy_runnable_fifo,
    &weft_policy_arrival_fifo,
    &weft_policy_las,
    &weft_policy_qlas,
};

TEST(vtables_complete)
{
    const char *names[] = {"runnable_fifo", "arrival_fifo", "las", "qlas"};
    for (size_t i = 0; i < 4; i++) {
        const weft_policy *p = all_policies[i];
        ASSERT_STREQ(p->name, names[i]);
        ASSERT_GT(p->state_size, 0);
        ASSERT(p->init && p->fini && p->push && p->pop && p->remove && p->charge && p->exit);
        pol q = pol_open(p, NULL);
        ASSERT(pop(&q) == NULL);
        pol_close(&q);
    }
}

/* ---- runnable_fifo ---------------------------------------------------- */

TEST(runnable_fifo_order_and_repush)
{
    pol q = pol_open(&weft_policy_runnable_fifo, NULL);
    weft_sched_entity t[6];
    for (int i = 1; i <= 5; i++) {
        mk(&t[i], i, 0, i);
        push(&q, &t[i]);
    }
    EXPECT_NEXT(&q, &t[1], &t[2]);
    /* 2 ran and yields, 1 was woken later: both go to the back, in the
     * order they became runnable. */
    charge(&q, &t[2], 10);
    push(&q, &t[2]);
    push(&q, &t[1]);
    EXPECT_POPS(&q, &t[3], &t[4], &t[5], &t[2], &t[1]);
    task_exit(&q, &t[1]);
    pol_close(&q);
}

TEST(runnable_fifo_remove)
{
    pol q = pol_open(&weft_policy_runnable_fifo, NULL);
    weft_sched_entity t[7];
    for (int i = 1; i <= 6; i++) {
        mk(&t[i], i, 0, i);
        push(&q, &t[i]);
    }
    rm(&q, &t[1]); /* head */
    rm(&q, &t[6]); /* tail */
    rm(&q, &t[3]); /* middle */
    push(&q, &t[6]);
    EXPECT_POPS(&q, &t[2], &t[4], &t[5], &t[6]);
    push(&q, &t[1]);
    rm(&q, &t[1]); /* the only one */
    ASSERT(pop(&q) == NULL);
    push(&q, &t[3]);
    push(&q, &t[1]);
    EXPECT_POPS(&q, &t[3], &t[1]);
    pol_close(&q);
}

/* ---- arrival_fifo ----------------------------------------------------- */

enum { GA = 1000, GB = 2000, GC = 3000 };

TEST(arrival_groups_by_first_arrival)
{
    pol q = pol_open(&weft_policy_arrival_fifo, NULL);
    weft_sched_entity a1, b1, a2, c1;
    mk(&a1, 1, GA, 1);
    mk(&b1, 2, GB, 2);
    mk(&a2, 3, GA, 3);
    mk(&c1, 4, GC, 4);
    push(&q, &a1);
    push(&q, &b1);
    push(&q, &a2);
    push(&q, &c1);
    EXPECT_POPS(&q, &a1, &a2, &b1, &c1);
    pol_close(&q);
}

TEST(arrival_keeps_place_across_sleep)
{
    pol q = pol_open(&weft_policy_arrival_fifo, NULL);
    weft_sched_entity t[8];
    for (int i = 1; i <= 5; i++) {
        mk(&t[i], i, 0, i);
        push(&q, &t[i]);
    }
    EXPECT_NEXT(&q, &t[1], &t[2], &t[3]);
    /* 2 slept and wakes: it comes back before 4 and 5. */
    push(&q, &t[2]);
    EXPECT_NEXT(&q, &t[2], &t[4]);
    /* Woken out of order, 3 and 1 still run in arrival order, and before a
     * task spawned after them. */
    mk(&t[6], 6, 0, 6);
    push(&q, &t[6]);
    push(&q, &t[3]);
    push(&q, &t[1]);
    EXPECT_POPS(&q, &t[1], &t[3], &t[5], &t[6]);
    pol_close(&q);
}

TEST(arrival_group_member_joins_its_group)
{
    pol q = pol_open(&weft_policy_arrival_fifo, NULL);
    weft_sched_entity a1, b1, b2, a2, a3;
    mk(&a1, 1, GA, 1);
    mk(&b1, 2, GB, 2);
    mk(&b2, 3, GB, 3);
    push(&q, &a1);
    push(&q, &b1);
    push(&q, &b2);
    /* a1 runs and sleeps: group A is still live, so a task of A spawned
     * later still comes before group B. */
    EXPECT_NEXT(&q, &a1);
    mk(&a2, 4, GA, 10);
    push(&q, &a2);
    EXPECT_NEXT(&q, &a2, &b1);
    /* Every task of A exits: a new A task arrives as a new group. */
    task_exit(&q, &a1);
    task_exit(&q, &a2);
    mk(&a3, 5, GA, 11);
    push(&q, &a3);
    mk(&a1, 6, GC, 12);
    push(&q, &a1);
    EXPECT_POPS(&q, &b2, &a3, &a1);
    pol_close(&q);
}

TEST(arrival_ties_by_task_id)
{
    pol q = pol_open(&weft_policy_arrival_fifo, NULL);
    weft_sched_entity t[5];
    mk(&t[1], 9, 0, 5);
    mk(&t[2], 7, 0, 5);
    mk(&t[3], 8, 0, 5);
    mk(&t[4], 1, 0, 6);
    push(&q, &t[1]);
    push(&q, &t[4]);
    push(&q, &t[2]);
    push(&q, &t[3]);
    EXPECT_POPS(&q, &t[2], &t[3], &t[1], &t[4]);
    pol_close(&q);
}

TEST(arrival_children_named_after_parent)
{
    /* A parent that is its own group spawns children naming its id: they
     * arrive with the parent's group, before a task spawned in between. */
    pol q = pol_open(&weft_policy_arrival_fifo, NULL);
    weft_sched_entity parent, other, c1, c2, late;
    mk(&parent, 7, 0, 1);
    mk(&other, 8, 0, 2);
    push(&q, &parent);
    push(&q, &other);
    EXPECT_NEXT(&q, &parent);
    mk(&c1, 9, 7, 3);
    mk(&c2, 10, 7, 4);
    push(&q, &c1);
    push(&q, &c2);
    push(&q, &parent);
    EXPECT_NEXT(&q, &parent, &c1);
    /* The parent exits; its group lives on in c2 (popped, sleeping). */
    task_exit(&q, &parent);
    task_exit(&q, &c1);
    EXPECT_NEXT(&q, &c2);
    mk(&c1, 11, 7, 5);
    push(&q, &c1);
    push(&q, &c2);
    EXPECT_POPS(&q, &c2, &c1, &other);
    /* With every task of the group gone, a new one starts a new group. */
    task_exit(&q, &c1);
    task_exit(&q, &c2);
    mk(&late, 12, 7, 6);
    mk(&other, 13, 0, 5);
    push(&q, &late);
    push(&q, &other);
    EXPECT_POPS(&q, &other, &late);
    pol_close(&q);
}

TEST(arrival_remove_anywhere)
{
    pol q = pol_open(&weft_policy_arrival_fifo, NULL);
    enum { N = 40 };
    weft_sched_entity t[N];
    /* Even tasks arrive in order, odd ones out of order, so both the lane
     * and the heap hold tasks. */
    for (int i = 0; i < N; i++) {
        mk(&t[i], i + 1, 0, i % 2 ? 100 - i : 100 + i);
        push(&q, &t[i]);
    }
    bool gone[N] = {0};
    int order[] = {0, 39, 38, 1, 20, 21, 13, 2};
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        rm(&q, &t[order[k]]);
        gone[order[k]] = true;
    }
    /* Expected: odd tasks by descending index (ascending spawned_ns), then
     * even tasks ascending. */
    uint64_t last = 0;
    int popped = 0;
    for (weft_sched_entity *e; (e = pop(&q));) {
        ASSERT(!gone[e->task_id - 1]);
        ASSERT_GT(e->spawned_ns, last);
        last = e->spawned_ns;
        popped++;
    }
    ASSERT_EQ(popped, N - 8);
    pol_close(&q);
}

TEST(arrival_heap_grows_and_shrinks)
{
    pol q = pol_open(&weft_policy_arrival_fifo, NULL);
    enum { N = 20000 };
    weft_sched_entity *t = calloc(N, sizeof *t);
    ASSERT(t);
    for (int round = 0; round < 3; round++) {
        /* Descending spawn times: all but the first go to the heap. */
        for (int i = 0; i < N; i++) {
            mk(&t[i], i + 1, 0, (uint64_t)(N - i));
            push(&q, &t[i]);
        }
        for (int i = N - 1; i >= 0; i--)
            ASSERT(pop(&q) == &t[i]);
        ASSERT(pop(&q) == NULL);
        for (int i = 0; i < N; i++)
            task_exit(&q, &t[i]);
    }
    pol_close(&q);
    free(t);
    check_no_leaks();
}

/* ---- las -------------------------------------------------------------- */

TEST(las_least_service_first)
{
    pol q = pol_open(&weft_policy_las, NULL);
    weft_sched_entity a1, a2, b1, b2;
    mk(&a1, 1, GA, 1);
    mk(&b1, 2, GB, 2);
    push(&q, &a1);
    push(&q, &b1);
    EXPECT_POPS(&q, &a1, &b1);
    charge(&q, &a1, 500);
    charge(&q, &b1, 100);
    mk(&a2, 3, GA, 3);
    mk(&b2, 4, GB, 4);
    push(&q, &a1);
    push(&q, &a2);
    push(&q, &b1);
    push(&q, &b2);
    /* B has less service; FIFO inside each group. */
    EXPECT_POPS(&q, &b1, &b2, &a1, &a2);
    pol_close(&q);
}

TEST(las_ties_by_runnable_order)
{
    pol q = pol_open(&weft_policy_las, NULL);
    weft_sched_entity t[5];
    for (int i = 1; i <= 4; i++)
        mk(&t[i], i, 0, i);
    push(&q, &t[3]);
    push(&q, &t[1]);
    push(&q, &t[2]);
    EXPECT_POPS(&q, &t[3], &t[1], &t[2]);
    /* Equal service: the group that became runnable first runs first. */
    charge(&q, &t[1], 50);
    charge(&q, &t[2], 50);
    charge(&q, &t[3], 50);
    push(&q, &t[2]);
    push(&q, &t[3]);
    push(&q, &t[1]);
    push(&q, &t[4]);
    EXPECT_POPS(&q, &t[4], &t[2], &t[3], &t[1]);
    pol_close(&q);
}

TEST(las_group_shares_account)
{
    pol q = pol_open(&weft_policy_las, NULL);
    weft_sched_entity a1, a2, b1;
    mk(&a1, 1, GA, 1);
    mk(&a2, 2, GA, 2);
    mk(&b1, 3, GB, 3);
    push(&q, &a1);
    push(&q, &b1);
    EXPECT_POPS(&q, &a1, &b1);
    charge(&q, &a1, 300);
    charge(&q, &b1, 200);
    /* a2 never ran, but its group has 300. */
    push(&q, &a2);
    push(&q, &b1);
    EXPECT_POPS(&q, &b1, &a2);
    charge(&q, &b1, 200);
    charge(&q, &a2, 50); /* A: 350, B: 400 */
    push(&q, &b1);
    push(&q, &a1);
    push(&q, &a2);
    EXPECT_POPS(&q, &a1, &a2, &b1);
    pol_close(&q);
}

TEST(las_charge_moves_queued_group)
{
    pol q = pol_open(&weft_policy_las, NULL);
    weft_sched_entity a1, a2, b1, c1, c2, d1;
    mk(&a1, 1, GA, 1);
    mk(&a2, 2, GA, 2);
    push(&q, &a1);
    push(&q, &a2);
    EXPECT_NEXT(&q, &a1);
    /* a1 ran while a2 waits: group A now sorts after zero-service B. */
    charge(&q, &a1, 1000);
    mk(&b1, 3, GB, 3);
    push(&q, &b1);
    EXPECT_POPS(&q, &b1, &a2);
    /* Charged while in the heap: C (10 -> 110) falls behind D (20). */
    mk(&c1, 4, GC, 4);
    mk(&c2, 5, GC, 5);
    mk(&d1, 6, 0, 6);
    push(&q, &c1);
    push(&q, &d1);
    EXPECT_POPS(&q, &c1, &d1);
    charge(&q, &c1, 10);
    charge(&q, &d1, 20);
    push(&q, &c2);
    push(&q, &d1);
    push(&q, &c1);
    EXPECT_NEXT(&q, &c2);
    charge(&q, &c2, 100);
    EXPECT_POPS(&q, &d1, &c1);
    pol_close(&q);
}

TEST(las_exit_releases_group)
{
    pol q = pol_open(&weft_policy_las, NULL);
    weft_sched_entity a1, a2, a3, b1;
    mk(&a1, 1, GA, 1);
    mk(&a2, 2, GA, 2);
    mk(&b1, 3, GB, 3);
    push(&q, &a1);
    push(&q, &a2);
    push(&q, &b1);
    EXPECT_POPS(&q, &a1, &a2, &b1);
    charge(&q, &a1, 1000);
    charge(&q, &a2, 1000);
    charge(&q, &b1, 100);
    task_exit(&q, &a1);
    /* a2 is still live (sleeping): A keeps its 2000. */
    mk(&a3, 4, GA, 4);
    push(&q, &a3);
    push(&q, &b1);
    EXPECT_POPS(&q, &b1, &a3);
    task_exit(&q, &a2);
    task_exit(&q, &a3);
    /* All of A exited: a new A task starts from zero. */
    mk(&a1, 5, GA, 5);
    push(&q, &b1);
    push(&q, &a1);
    EXPECT_POPS(&q, &a1, &b1);
    pol_close(&q);
}

TEST(las_group_named_after_a_task)
{
    /* Children grouped under their parent's id: the parent exiting must not
     * release the account its children still use. */
    pol q = pol_open(&weft_policy_las, NULL);
    weft_sched_entity parent, c1, c2, other, late;
    mk(&parent, 7, 0, 1);
    mk(&c1, 8, 7, 2);
    mk(&c2, 9, 7, 3);
    mk(&other, 10, 0, 4);
    push(&q, &parent);
    push(&q, &c1);
    push(&q, &other);
    EXPECT_POPS(&q, &parent, &c1, &other);
    charge(&q, &parent, 500);
    charge(&q, &other, 100);
    task_exit(&q, &parent);
    push(&q, &c2);
    push(&q, &other);
    EXPECT_POPS(&q, &other, &c2);
    task_exit(&q, &c1);
    task_exit(&q, &c2);
    mk(&late, 11, 7, 5);
    push(&q, &other);
    push(&q, &late);
    EXPECT_POPS(&q, &late, &other);
    pol_close(&q);
}

TEST(las_charge_without_pop)
{
    /* The runtime's LIFO slot runs a task without pushing it: its charge
     * still counts at its next push. */
    const weft_policy *ps[] = {&weft_policy_las, &weft_policy_qlas};
    for (int k = 0; k < 2; k++) {
        weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 1000};
        pol q = pol_open(ps[k], ps[k] == &weft_policy_qlas ? &cfg : NULL);
        weft_sched_entity o, x, y;
        mk(&o, 1, 0, 1);
        push(&q, &o);
        ASSERT(pop(&q) == &o);
        charge(&q, &o, 100);
        mk(&x, 2, 0, 2);
        charge(&q, &x, 500);
        push(&q, &x);
        push(&q, &o);
        EXPECT_POPS(&q, &o, &x);
        /* Charged and exited without a push: nothing is kept. */
        mk(&y, 3, 0, 3);
        charge(&q, &y, 500);
        task_exit(&q, &y);
        mk(&y, 3, 0, 3);
        push(&q, &o);
        push(&q, &y);
        EXPECT_POPS(&q, &y, &o);
        pol_close(&q);
    }
}

TEST(las_solo_task_exit_keeps_nothing)
{
    /* The common spawn-run-exit of a task that is its own group, while
     * another group has a record: the exit keeps nothing, and a task that
     * names an exited task's id later starts from zero. */
    const weft_policy *ps[] = {&weft_policy_las, &weft_policy_qlas};
    for (int k = 0; k < 2; k++) {
        weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 1000};
        pol q = pol_open(ps[k], ps[k] == &weft_policy_qlas ? &cfg : NULL);
        weft_sched_entity o, t, n, late;
        mk(&o, 1, 0, 1);
        push(&q, &o);
        ASSERT(pop(&q) == &o);
        charge(&q, &o, 100);
        push(&q, &o); /* o now has a record with 100 */
        for (uint64_t id = 2; id < 6; id++) {
            mk(&t, id, 0, id);
            push(&q, &t);
            EXPECT_NEXT(&q, &t);
            charge(&q, &t, 1000);
            task_exit(&q, &t);
        }
        mk(&late, 6, 3, 6); /* names exited task 3's id */
        mk(&n, 7, 0, 7);
        push(&q, &late);
        push(&q, &n);
        EXPECT_POPS(&q, &late, &n, &o);
        pol_close(&q);
    }
}

TEST(las_exit_after_a_run_without_pop_releases_the_record)
{
    /* A task popped from the solo lane gets its record when its first
     * charge is applied; a later run from the LIFO slot (no pop) and its
     * exit must still release that record, or a task naming its id later
     * would inherit its service. */
    const weft_policy *ps[] = {&weft_policy_las, &weft_policy_qlas};
    for (int k = 0; k < 2; k++) {
        weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 1000};
        pol q = pol_open(ps[k], ps[k] == &weft_policy_qlas ? &cfg : NULL);
        weft_sched_entity o, x, late, n;
        mk(&o, 1, 0, 1);
        push(&q, &o);
        ASSERT(pop(&q) == &o);
        charge(&q, &o, 100);
        mk(&x, 2, 0, 2);
        push(&q, &x);        /* applies o's charge: o has a record */
        charge(&q, &o, 100); /* o ran again without a pop */
        task_exit(&q, &o);
        EXPECT_NEXT(&q, &x);
        task_exit(&q, &x);
        mk(&late, 6, 1, 6); /* names exited task 1's id */
        mk(&n, 7, 0, 7);
        push(&q, &late);
        push(&q, &n);
        EXPECT_POPS(&q, &late, &n);
        pol_close(&q);
    }
}

TEST(las_first_run_charges_named_group)
{
    /* A parent queued before any task named its id runs as a group of its
     * own; when it has run, its service goes to the group its children
     * share, even if it exits right away. */
    pol q = pol_open(&weft_policy_las, NULL);
    weft_sched_entity o, parent, child;
    mk(&o, 20, 0, 1);
    push(&q, &o);
    ASSERT(pop(&q) == &o);
    charge(&q, &o, 100);
    mk(&parent, 7, 0, 2);
    mk(&child, 8, 7, 3);
    push(&q, &parent);
    push(&q, &child);
    EXPECT_NEXT(&q, &parent);
    charge(&q, &parent, 500);
    task_exit(&q, &parent);
    push(&q, &o);
    EXPECT_POPS(&q, &o, &child);
    pol_close(&q);

    /* qlas takes the bucket at push: the child pushed again sees it. */
    weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 1000};
    q = pol_open(&weft_policy_qlas, &cfg);
    push(&q, &o);
    ASSERT(pop(&q) == &o);
    charge(&q, &o, 100);
    push(&q, &parent);
    push(&q, &child);
    EXPECT_NEXT(&q, &parent);
    charge(&q, &parent, 500);
    task_exit(&q, &parent);
    EXPECT_NEXT(&q, &child);
    push(&q, &child);
    push(&q, &o);
    EXPECT_POPS(&q, &o, &child);
    pol_close(&q);
}

TEST(las_remove)
{
    pol q = pol_open(&weft_policy_las, NULL);
    weft_sched_entity a[4], b1, c1;
    for (int i = 0; i < 4; i++)
        mk(&a[i], i + 1, GA, i + 1);
    mk(&b1, 5, GB, 5);
    mk(&c1, 6, GC, 6);
    push(&q, &b1);
    push(&q, &c1);
    EXPECT_POPS(&q, &b1, &c1);
    charge(&q, &b1, 10);
    charge(&q, &c1, 20);
    for (int i = 0; i < 4; i++)
        push(&q, &a[i]);
    push(&q, &c1);
    push(&q, &b1);
    rm(&q, &a[0]); /* head of its group */
    rm(&q, &a[2]); /* middle */
    rm(&q, &b1);   /* the only task of a group in the heap */
    EXPECT_POPS(&q, &a[1], &a[3], &c1);
    pol_close(&q);
}

/* ---- qlas ------------------------------------------------------------- */

/* A task whose own group has `service` ns. */
static void with_service(pol *q, weft_sched_entity *e, uint64_t id, uint64_t group,
                         uint64_t service)
{
    mk(e, id, group, id);
    push(q, e);
    ASSERT(pop(q) == e);
    charge(q, e, service);
}

TEST(qlas_buckets)
{
    weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 1000};
    pol q = pol_open(&weft_policy_qlas, &cfg);
    weft_sched_entity t[8];
    /* Buckets: 0 below 100, 1 for [100, 200), 2 for [200, 400), 3 from 400. */
    with_service(&q, &t[1], 1, 0, 450);
    with_service(&q, &t[2], 2, 0, 250);
    with_service(&q, &t[3], 3, 0, 99);
    with_service(&q, &t[4], 4, 0, 150);
    with_service(&q, &t[5], 5, 0, 399);
    with_service(&q, &t[6], 6, 0, 100);
    with_service(&q, &t[7], 7, 0, 0);
    for (int i = 1; i <= 7; i++)
        push(&q, &t[i]);
    /* FIFO inside a bucket. */
    EXPECT_POPS(&q, &t[3], &t[7], &t[4], &t[6], &t[2], &t[5], &t[1]);
    /* The bucket is taken at push: charging a queued task's group does not
     * move it. */
    push(&q, &t[1]);
    push(&q, &t[3]);
    charge(&q, &t[3], 10000);
    EXPECT_POPS(&q, &t[3], &t[1]);
    pol_close(&q);
}

/* A task handed over from another worker arrives with service (the
 * scheduler keeps e->service_ns) and no record here: it keeps that service
 * instead of starting again at zero, under both policies. */
static void check_moved_task_keeps_its_service(const weft_policy *p, const void *config)
{
    pol q = pol_open(p, config);
    weft_sched_entity here, fresh, moved;
    with_service(&q, &here, 1, 0, 150); /* ran here */
    here.service_ns = 150;
    mk(&fresh, 2, 0, 2);
    mk(&moved, 3, 0, 3);
    moved.service_ns = 450; /* ran on another worker */
    push(&q, &moved);
    push(&q, &here);
    push(&q, &fresh);
    EXPECT_POPS(&q, &fresh, &here, &moved);
    /* Its record is released with it, as any other. */
    task_exit(&q, &moved);
    task_exit(&q, &here);
    task_exit(&q, &fresh);
    pol_close(&q);
    check_no_leaks();
}

TEST(moved_task_keeps_its_service)
{
    weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 1000};
    check_moved_task_keeps_its_service(&weft_policy_las, NULL);
    check_moved_task_keeps_its_service(&weft_policy_qlas, &cfg);
}

TEST(qlas_round_robin_pass)
{
    weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 3};
    pol q = pol_open(&weft_policy_qlas, &cfg);
    weft_sched_entity low[8], high;
    with_service(&q, &high, 100, 0, 1000000); /* uses up one pop */
    for (int i = 0; i < 8; i++) {
        mk(&low[i], i + 1, 0, i + 1);
        push(&q, &low[i]);
    }
    push(&q, &high);
    /* Picks 2 and 3 of the policy's life: the 3rd is round-robin and takes
     * the first non-empty bucket after bucket 0. */
    EXPECT_NEXT(&q, &low[0], &high);
    /* Then bucket 0 is the only one: the round-robin picks wrap to it. */
    EXPECT_POPS(&q, &low[1], &low[2], &low[3], &low[4], &low[5], &low[6], &low[7]);
    pol_close(&q);
}

TEST(qlas_round_robin_cursor_advances)
{
    weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 2};
    pol q = pol_open(&weft_policy_qlas, &cfg);
    weft_sched_entity low[8], x, y;
    with_service(&q, &x, 100, 0, 500);  /* bucket 3; pop 1 */
    with_service(&q, &y, 101, 0, 3200); /* bucket 6; pop 2 (rr, cursor 0) */
    for (int i = 0; i < 8; i++) {
        mk(&low[i], i + 1, 0, i + 1);
        push(&q, &low[i]);
    }
    push(&q, &y);
    push(&q, &x);
    /* Round-robin picks (every 2nd) go 3, 6, then wrap to 0. */
    EXPECT_POPS(&q, &low[0], &x, &low[1], &y, &low[2], &low[3], &low[4], &low[5], &low[6], &low[7]);
    pol_close(&q);
}

TEST(qlas_config)
{
    weft_qlas_config ok[] = {{0, 0}, {1, 1}, {100, 3}, {60000000000ull, 1u << 20}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        pol q = pol_open(&weft_policy_qlas, &ok[i]);
        pol_close(&q);
    }
    weft_qlas_config bad[] = {{UINT64_MAX, 0}, {60000000001ull, 16}, {0, (1u << 20) + 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *state = calloc(1, weft_policy_qlas.state_size);
        ASSERT_EQ(weft_policy_qlas.init(state, &bad[i]), -EINVAL);
        free(state);
    }
    /* Defaults: 100 us quantum, a round-robin pick every 16th. */
    pol q = pol_open(&weft_policy_qlas, NULL);
    weft_sched_entity a, b, c;
    with_service(&q, &a, 1, 0, 100000);
    with_service(&q, &b, 2, 0, 99999);
    mk(&c, 3, 0, 3);
    push(&q, &a);
    push(&q, &b);
    push(&q, &c);
    EXPECT_POPS(&q, &b, &c, &a);
    pol_close(&q);
}

TEST(qlas_exit_releases_group)
{
    weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 1000};
    pol q = pol_open(&weft_policy_qlas, &cfg);
    weft_sched_entity a1, a2, b1;
    with_service(&q, &a1, 1, GA, 1000);
    with_service(&q, &b1, 2, GB, 100);
    push(&q, &a1);
    push(&q, &b1);
    EXPECT_POPS(&q, &b1, &a1);
    task_exit(&q, &a1);
    mk(&a2, 3, GA, 3);
    push(&q, &b1);
    push(&q, &a2);
    EXPECT_POPS(&q, &a2, &b1);
    pol_close(&q);
}

/* ---- the tables behind the group records -------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static unsigned rnd_below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

TEST(group_table_against_array)
{
    /* Keys in patterns that hash badly with weak hashes: sequential, strided
     * by powers of two, random; tables grow to 64k entries and shrink. */
    enum { KEYS = 50000 };
    static uint64_t keys[KEYS];
    static bool present[KEYS];
    for (int pattern = 0; pattern < 3; pattern++) {
        rng_state = 77 + (uint64_t)pattern;
        for (int i = 0; i < KEYS; i++)
            keys[i] = pattern == 0 ? (uint64_t)i : pattern == 1 ? (uint64_t)i << 12 : rnd();
        memset(present, 0, sizeof present);
        weft__group_table t = {0};
        for (int op = 0; op < 400000; op++) {
            /* Fill, then drain: the table grows, then shrinks. */
            unsigned i = rnd_below(KEYS);
            bool filling = op < 200000;
            void *value = (void *)(uintptr_t)(i * 8 + 8);
            if (!present[i] && (filling || rnd_below(64) == 0)) {
                ASSERT_OK(weft__group_table_insert(&t, keys[i], value));
                present[i] = true;
            } else if (present[i] && (!filling || rnd_below(3) == 0)) {
                ASSERT(weft__group_table_erase(&t, keys[i]) == value);
                present[i] = false;
            } else {
                ASSERT(weft__group_table_find(&t, keys[i]) == (present[i] ? value : NULL));
            }
        }
        size_t n = 0;
        for (int i = 0; i < KEYS; i++) {
            n += present[i];
            void *value = (void *)(uintptr_t)(i * 8 + 8);
            ASSERT(weft__group_table_find(&t, keys[i]) == (present[i] ? value : NULL));
        }
        ASSERT_EQ(t.count, n);
        ASSERT_LE(t.mask + 1, 8 * 1024); /* it shrank */
        weft__group_table_fini(&t);
    }
}

TEST(seen_pages)
{
    weft__seen m = {0};
    uint64_t ns;
    ASSERT(!weft__seen_remove(&m, 5, &ns));
    /* Runs of ids, a far-away id, and ids across page boundaries. */
    for (uint64_t id = 60; id < 200; id++)
        ASSERT_OK(weft__seen_add(&m, id, id * 10));
    ASSERT_OK(weft__seen_add(&m, UINT64_MAX, 1));
    ASSERT(!weft__seen_remove(&m, 59, NULL));
    ASSERT(!weft__seen_remove(&m, 200, NULL));
    for (uint64_t id = 199; id >= 60; id--) {
        ASSERT(weft__seen_remove(&m, id, &ns));
        ASSERT_EQ(ns, id * 10);
        ASSERT(!weft__seen_remove(&m, id, NULL));
    }
    ASSERT(weft__seen_remove(&m, UINT64_MAX, &ns));
    ASSERT_EQ(ns, 1);
    /* Only the page new ids go to may stay. */
    ASSERT_LE(m.pages.count, 1);
    /* Spawn, run, exit one at a time over many pages. */
    for (uint64_t id = 1000; id < 5000; id++) {
        ASSERT_OK(weft__seen_add(&m, id, id));
        ASSERT(weft__seen_remove(&m, id, NULL));
    }
    ASSERT_LE(m.pages.count, 1);
    /* The same with one old task that stays and is pushed again now and
     * then (the main task, a periodic sleeper): adds go back to its page
     * and then on to a new one, leaving the one they were on empty. */
    ASSERT_OK(weft__seen_add(&m, 7, 7));
    for (uint64_t id = 5000; id < 20000; id++) {
        ASSERT_OK(weft__seen_add(&m, id, id));
        ASSERT(weft__seen_remove(&m, id, NULL));
        if (id % WEFT__SEEN_PAGE_IDS == WEFT__SEEN_PAGE_IDS - 1)
            ASSERT_OK(weft__seen_add(&m, 7, 7)); /* pushed again as a page fills */
    }
    ASSERT_LE(m.pages.count, 2);
    ASSERT(weft__seen_remove(&m, 7, NULL));
    weft__groups g;
    weft__groups_init(&g);
    g.seen = m;
    weft__groups_fini(&g); /* frees the pages */
    check_no_leaks();
}

/* ---- reference models and random operations ---------------------------- */

typedef enum model_kind { M_RUNNABLE, M_ARRIVAL, M_LAS, M_QLAS } model_kind;

typedef struct mgroup {
    bool used;
    uint64_t id, service, first_ns, seq;
    unsigned tasks, runnable;
} mgroup;

typedef struct mtask {
    weft_sched_entity e;
    bool queued;
    bool accounted;    /* counted in g->tasks */
    bool solo;         /* las: queued with no record, as a group of its own */
    uint64_t order;    /* when pushed */
    uint64_t seq;      /* las: when it became runnable, if solo */
    uint64_t first_ns; /* arrival: the group's first arrival at push */
    unsigned bucket;   /* qlas: bucket at push */
    mgroup *g;         /* while accounted */
} mtask;

typedef struct model {
    model_kind kind;
    mtask *tasks;
    size_t n;
    mgroup *groups;
    size_t ngroups;
    uint64_t clock, next_order, next_seq, next_id;
    uint64_t quantum;
    unsigned rr_interval, until_rr, cursor;
} model;

static unsigned model_bucket(uint64_t service, uint64_t quantum)
{
    if (service < quantum)
        return 0;
    unsigned b = 1;
    for (uint64_t x = service / quantum; x > 1; x >>= 1)
        b++;
    return b > 63 ? 63 : b;
}

static mgroup *model_find(model *m, uint64_t id)
{
    for (size_t i = 0; i < m->ngroups; i++)
        if (m->groups[i].used && m->groups[i].id == id)
            return &m->groups[i];
    return NULL;
}

/* Accounts t to its group, creating the group if `create`; NULL if not. */
static mgroup *model_account(model *m, mtask *t, bool create)
{
    if (t->accounted)
        return t->g;
    mgroup *g = model_find(m, t->e.group);
    if (!g && !create)
        return NULL;
    if (!g) {
        for (size_t i = 0; i < m->ngroups && !g; i++)
            if (!m->groups[i].used)
                g = &m->groups[i];
        ASSERT(g);
        *g = (mgroup){.used = true, .id = t->e.group, .first_ns = t->e.spawned_ns};
    }
    g->tasks++;
    t->accounted = true;
    t->g = g;
    return g;
}

static void model_release(model *m, mtask *t)
{
    (void)m;
    if (!t->accounted)
        return;
    t->accounted = false;
    if (--t->g->tasks == 0) {
        ASSERT_EQ(t->g->runnable, 0);
        t->g->used = false;
    }
    t->g = NULL;
}

/* The documented rules: arrival_fifo accounts a task at push; las and qlas
 * at push if it is not its own group or its group has a record, else at its
 * first charge. */
static void model_push(model *m, mtask *t)
{
    t->queued = true;
    t->solo = false;
    t->order = m->next_order++;
    mgroup *g;
    switch (m->kind) {
    case M_ARRIVAL:
        t->first_ns = model_account(m, t, true)->first_ns;
        break;
    case M_LAS:
        g = model_account(m, t, t->e.group != t->e.task_id);
        if (!g) {
            t->solo = true;
            t->seq = m->next_seq++;
        } else if (g->runnable++ == 0) {
            g->seq = m->next_seq++;
        }
        break;
    case M_QLAS:
        g = model_account(m, t, t->e.group != t->e.task_id);
        t->bucket = g ? model_bucket(g->service, m->quantum) : 0;
        break;
    default:
        break;
    }
}

static void model_unqueue(model *m, mtask *t)
{
    t->queued = false;
    if (m->kind == M_LAS && !t->solo)
        t->g->runnable--;
}

/* True when a should be popped before b. */
static bool model_before(const model *m, const mtask *a, const mtask *b)
{
    switch (m->kind) {
    case M_ARRIVAL:
        if (a->first_ns != b->first_ns)
            return a->first_ns < b->first_ns;
        if (a->e.spawned_ns != b->e.spawned_ns)
            return a->e.spawned_ns < b->e.spawned_ns;
        return a->e.task_id < b->e.task_id;
    case M_LAS: {
        uint64_t as = a->solo ? 0 : a->g->service, bs = b->solo ? 0 : b->g->service;
        uint64_t aq = a->solo ? a->seq : a->g->seq, bq = b->solo ? b->seq : b->g->seq;
        if (as != bs)
            return as < bs;
        if (aq != bq)
            return aq < bq;
        return a->order < b->order;
    }
    default:
        return a->order < b->order;
    }
}

static mtask *model_pop(model *m)
{
    mtask *best = NULL;
    if (m->kind == M_QLAS) {
        uint64_t nonempty = 0;
        for (size_t i = 0; i < m->n; i++)
            if (m->tasks[i].queued)
                nonempty |= UINT64_C(1) << m->tasks[i].bucket;
        if (!nonempty)
            return NULL;
        unsigned b = 0;
        if (--m->until_rr == 0) {
            m->until_rr = m->rr_interval;
            for (unsigned k = 1; k <= 64; k++) {
                b = (m->cursor + k) % 64;
                if (nonempty & (UINT64_C(1) << b))
                    break;
            }
            m->cursor = b;
        } else {
            while (!(nonempty & (UINT64_C(1) << b)))
                b++;
        }
        for (size_t i = 0; i < m->n; i++) {
            mtask *t = &m->tasks[i];
            if (t->queued && t->bucket == b && (!best || t->order < best->order))
                best = t;
        }
    } else {
        for (size_t i = 0; i < m->n; i++) {
            mtask *t = &m->tasks[i];
            if (t->queued && (!best || model_before(m, t, best)))
                best = t;
        }
    }
    if (best)
        model_unqueue(m, best);
    return best;
}

static void model_charge(model *m, mtask *t, uint64_t ran)
{
    if ((m->kind != M_LAS && m->kind != M_QLAS) || ran == 0)
        return;
    mgroup *g = model_account(m, t, true);
    g->service = g->service + ran < g->service ? UINT64_MAX : g->service + ran;
}

static void model_respawn(model *m, mtask *t)
{
    uint64_t id = m->next_id++;
    uint64_t group;
    unsigned r = rnd_below(10);
    if (r < 4)
        group = id;
    else if (r < 8)
        group = UINT64_C(1) << 40 | rnd_below(6);
    else
        group = m->tasks[rnd_below((unsigned)m->n)].e.task_id;
    /* Mostly in time order, sometimes late or tied, as with tasks that were
     * stolen from another worker. */
    uint64_t spawned = rnd_below(8) ? m->clock++ : m->clock - rnd_below(50);
    mk(&t->e, id, group, spawned);
    t->queued = t->accounted = false;
    t->g = NULL;
}

static uint64_t random_ran_ns(void)
{
    unsigned r = rnd_below(10);
    if (r == 0)
        return 0;
    if (r < 6)
        return 1 + rnd_below(200);
    return UINT64_C(1) << rnd_below(40);
}

/* Pops from both; they must agree. Returns the model's task, or NULL. */
static mtask *check_pop(pol *q, model *m, uint64_t op)
{
    weft_sched_entity *got = pop(q);
    mtask *want = model_pop(m);
    if (got != (want ? &want->e : NULL))
        FAILF("%s op %" PRIu64 ": popped task %lld, model says %lld", q->p->name, op,
              got ? (long long)got->task_id : -1LL, want ? (long long)want->e.task_id : -1LL);
    return want;
}

static void stress(const weft_policy *p, const weft_qlas_config *cfg, size_t n, uint64_t ops,
                   uint64_t seed)
{
    rng_state = seed;
    model m = {.kind = p == &weft_policy_runnable_fifo  ? M_RUNNABLE
                       : p == &weft_policy_arrival_fifo ? M_ARRIVAL
                       : p == &weft_policy_las          ? M_LAS
                                                        : M_QLAS,
               .n = n,
               .ngroups = 2 * n + 8,
               .clock = 1000,
               .next_id = 1,
               .quantum = cfg && cfg->quantum_ns ? cfg->quantum_ns : 100000,
               .rr_interval = cfg && cfg->rr_interval ? cfg->rr_interval : 16};
    m.until_rr = m.rr_interval;
    m.tasks = calloc(n, sizeof *m.tasks);
    m.groups = calloc(m.ngroups, sizeof *m.groups);
    ASSERT(m.tasks && m.groups);
    for (size_t i = 0; i < n; i++)
        model_respawn(&m, &m.tasks[i]);
    pol q = pol_open(p, cfg);
    for (uint64_t op = 0; op < ops; op++) {
        /* Alternate phases that fill and drain the queue. */
        unsigned pop_percent = (op / 2000) % 2 ? 20 : 45;
        if (rnd_below(100) < pop_percent) {
            mtask *ran_task = check_pop(&q, &m, op);
            /* Usually the runtime charges right after the run, and then
             * often the task exits. */
            if (ran_task && rnd_below(2)) {
                uint64_t ran = random_ran_ns();
                charge(&q, &ran_task->e, ran);
                model_charge(&m, ran_task, ran);
                if (rnd_below(3) == 0) {
                    task_exit(&q, &ran_task->e);
                    model_release(&m, ran_task);
                    model_respawn(&m, ran_task);
                }
            }
            continue;
        }
        mtask *t = &m.tasks[rnd_below((unsigned)n)];
        unsigned r = rnd_below(100);
        if (t->queued) {
            if (r < 30) {
                rm(&q, &t->e);
                model_unqueue(&m, t);
                model_release(&m, t);
            } else {
                check_pop(&q, &m, op);
            }
        } else if (r < 60) {
            push(&q, &t->e);
            model_push(&m, t);
        } else if (r < 85) {
            uint64_t ran = random_ran_ns();
            charge(&q, &t->e, ran);
            model_charge(&m, t, ran);
        } else {
            task_exit(&q, &t->e);
            model_release(&m, t);
            model_respawn(&m, t);
        }
    }
    /* Drain, then shut down with tasks that never exited. */
    while (check_pop(&q, &m, ops))
        ;
    pol_close(&q);
    free(m.tasks);
    free(m.groups);
    check_no_leaks();
}

#define STRESS_OPS 100000

TEST(stress_runnable_fifo)
{
    stress(&weft_policy_runnable_fifo, NULL, 256, STRESS_OPS, 1);
}

TEST(stress_arrival_fifo)
{
    stress(&weft_policy_arrival_fifo, NULL, 256, STRESS_OPS, 2);
    stress(&weft_policy_arrival_fifo, NULL, 16, STRESS_OPS, 3);
}

TEST(stress_las)
{
    stress(&weft_policy_las, NULL, 256, STRESS_OPS, 4);
    stress(&weft_policy_las, NULL, 16, STRESS_OPS, 5);
}

TEST(stress_qlas)
{
    weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 5};
    stress(&weft_policy_qlas, &cfg, 256, STRESS_OPS, 6);
    weft_qlas_config every = {.quantum_ns = 1000, .rr_interval = 1};
    stress(&weft_policy_qlas, &every, 64, STRESS_OPS, 7);
    stress(&weft_policy_qlas, NULL, 64, STRESS_OPS, 8);
}

/* ---- allocation failures ---------------------------------------------- */

/* A scripted workload that needs records, both tables and the heaps to grow.
 * Checks only what must hold whatever fails: every push comes out exactly
 * once, by pop or remove. */
static void fault_workload(const weft_policy *p)
{
    enum { N = 600 };
    static weft_sched_entity t[N];
    static bool queued[N];
    pol q = pol_open(p, NULL);
    for (int i = 0; i < N; i++) {
        mk(&t[i], i + 1, i % 3 ? 5000 + i % 50 : 0, i % 2 ? 2000 - i : 2000 + i);
        push(&q, &t[i]);
        queued[i] = true;
    }
    int popped = 0;
    for (weft_sched_entity *e; popped < N / 2 && (e = pop(&q)); popped++) {
        ASSERT(queued[e->task_id - 1]);
        queued[e->task_id - 1] = false;
        charge(&q, e, (e->task_id * 37) % 500000 + 1);
        if (e->task_id % 2) {
            push(&q, e);
            queued[e->task_id - 1] = true;
        }
    }
    for (int i = 0; i < N; i += 7) {
        if (queued[i]) {
            rm(&q, &t[i]);
            queued[i] = false;
        }
    }
    for (weft_sched_entity *e; (e = pop(&q));) {
        ASSERT(queued[e->task_id - 1]);
        queued[e->task_id - 1] = false;
        charge(&q, e, 1000);
    }
    for (int i = 0; i < N; i++) {
        ASSERT(!queued[i]);
        if (i % 5)
            task_exit(&q, &t[i]);
    }
    pol_close(&q); /* with every 5th task never exited */
}

static void fault_sweep(const weft_policy *p)
{
    weft__fault_arm(WEFT_FAULT_ALLOC, UINT64_MAX);
    fault_workload(p);
    uint64_t calls = weft__fault_count(WEFT_FAULT_ALLOC);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_GT(calls, 3);
    for (uint64_t nth = 1; nth <= calls + 1; nth++) {
        weft__fault_arm(WEFT_FAULT_ALLOC, nth);
        fault_workload(p);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    }
    check_no_leaks();
    printf("    %s: %" PRIu64 " allocation points failed in turn\n", p->name, calls);
}

TEST(fault_sweep_arrival_fifo)
{
    fault_sweep(&weft_policy_arrival_fifo);
}

TEST(fault_sweep_las)
{
    fault_sweep(&weft_policy_las);
}

TEST(fault_sweep_qlas)
{
    fault_sweep(&weft_policy_qlas);
}

/* Makes the first allocation of each push fail until a push of a new task of
 * group A (ids from 10, spawned at their id) cannot be accounted to A, which
 * happens when A's task table must grow. The rival, of group B, tells the
 * two cases apart by which of the two pops first: `solo_first` says whether
 * an unaccounted task pops before the rival. The rival stays queued for
 * arrival_fifo, and is pushed with each try for the others. Returns the
 * unaccounted task, popped. */
static weft_sched_entity *find_unaccounted_push(pol *q, weft_sched_entity *t, size_t n,
                                                weft_sched_entity *rival, bool solo_first)
{
    for (size_t i = 0; i < n; i++) {
        mk(&t[i], 10 + i, GA, 10 + i);
        weft__fault_arm(WEFT_FAULT_ALLOC, 1);
        push(q, &t[i]);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
        if (solo_first)
            push(q, rival);
        weft_sched_entity *first = pop(q);
        bool accounted = (first == &t[i]) != solo_first;
        if (solo_first)
            ASSERT(pop(q) == (first == rival ? &t[i] : rival));
        else if (!accounted)
            ASSERT(pop(q) == &t[i]);
        if (!accounted)
            return &t[i];
    }
    FAILF("every push of %zu was accounted", n);
}

TEST(fault_record_falls_back_to_zero_service)
{
    /* A's account holds 1000 and B's 100. A new task of A that cannot be
     * remembered (the task table cannot grow) runs as if its group had no
     * service: before B. Its next push, with memory back, joins A. */
    const weft_policy *ps[] = {&weft_policy_las, &weft_policy_qlas};
    static weft_sched_entity extra[64];
    for (int k = 0; k < 2; k++) {
        weft_qlas_config cfg = {.quantum_ns = 100, .rr_interval = 1000};
        pol q = pol_open(ps[k], ps[k] == &weft_policy_qlas ? &cfg : NULL);
        weft_sched_entity a1, b1;
        with_service(&q, &a1, 1, GA, 1000);
        with_service(&q, &b1, 2, GB, 100);
        push(&q, &b1); /* las: the heap array exists from here on */
        ASSERT(pop(&q) == &b1);
        weft_sched_entity *a2 = find_unaccounted_push(&q, extra, 64, &b1, true);
        push(&q, &b1);
        push(&q, a2);
        EXPECT_POPS(&q, &b1, a2);
        for (int i = 0; i < 64; i++)
            task_exit(&q, &extra[i]);
        pol_close(&q);
    }
    /* arrival_fifo: a task whose group cannot be recorded arrives on its own
     * at its spawn time, after B, where its group would come before. */
    pol q = pol_open(&weft_policy_arrival_fifo, NULL);
    weft_sched_entity a1, b1, x;
    mk(&a1, 1, GA, 1);
    mk(&b1, 2, GB, 2);
    mk(&x, 3, 0, 0);
    push(&q, &a1);
    push(&q, &b1);
    push(&q, &x); /* out of order: the heap array exists from here on */
    EXPECT_NEXT(&q, &x, &a1);
    find_unaccounted_push(&q, extra, 64, &b1, false);
    ASSERT(pop(&q) == NULL);
    pol_close(&q);
    check_no_leaks();
}

TEST(fault_heap_overflow_keeps_tasks)
{
    /* arrival_fifo's heap array cannot grow: tasks wait on the overflow list
     * and still all run, once each, removable like any other. */
    pol q = pol_open(&weft_policy_arrival_fifo, NULL);
    enum { N = 300, FREE_PUSHES = 100 };
    static weft_sched_entity t[N];
    static bool seen[N];
    for (int i = 0; i < N; i++)
        mk(&t[i], i + 1, 0, (uint64_t)(N - i));
    /* First in ascending spawn times, all to the lane, so that everything
     * but the heap array is allocated before the faults. */
    for (int i = N - 1; i >= 0; i--)
        push(&q, &t[i]);
    for (int i = N - 1; i >= 0; i--)
        ASSERT(pop(&q) == &t[i]);
    /* Then descending: all but the first go to the heap, which has room
     * for 128 after the first 100 pushes and cannot grow after them. */
    for (int i = 0; i < N; i++) {
        weft__fault_arm(WEFT_FAULT_ALLOC, i < FREE_PUSHES ? 0 : 1);
        push(&q, &t[i]);
    }
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    rm(&q, &t[N - 2]); /* overflowed */
    rm(&q, &t[N / 4]); /* in the heap */
    /* With room, the last task pushed (smallest key) would come first. */
    weft_sched_entity *first = pop(&q);
    ASSERT(first != &t[N - 1]);
    seen[first->task_id - 1] = true;
    int n = 1;
    for (weft_sched_entity *e; (e = pop(&q)); n++) {
        ASSERT(!seen[e->task_id - 1]);
        seen[e->task_id - 1] = true;
    }
    ASSERT_EQ(n, N - 2);
    ASSERT(!seen[N - 2] && !seen[N / 4]);
    pol_close(&q);
    check_no_leaks();
}

TEST(fault_overflow_with_an_empty_heap_is_not_starved_by_the_lane)
{
    /* The first out-of-order push finds no heap array and cannot make
     * one: that task overflows. New spawns keep the lane from draining,
     * yet it must come out in key order, not after the lane. */
    pol q = pol_open(&weft_policy_arrival_fifo, NULL);
    weft_sched_entity a, b, c, x, y;
    mk(&a, 1, 0, 10);
    mk(&b, 2, 0, 20);
    mk(&c, 3, 0, 30);
    mk(&x, 4, 0, 5);
    mk(&y, 5, 0, 6);
    /* In lane order first, so that all but the heap array is allocated. */
    push(&q, &x);
    push(&q, &y);
    push(&q, &a);
    EXPECT_NEXT(&q, &x, &y, &a);
    push(&q, &a);
    push(&q, &b);
    weft__fault_arm_from(WEFT_FAULT_ALLOC, 1);
    push(&q, &x); /* below the lane's tail: to the heap, which cannot be made */
    push(&q, &c);
    ASSERT(pop(&q) == &x); /* still no heap: x against the lane's head */
    push(&q, &y);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT(pop(&q) == &y); /* the heap can be made now: y goes there */
    EXPECT_NEXT(&q, &a, &b, &c);
    ASSERT(pop(&q) == NULL);
    pol_close(&q);
    check_no_leaks();
}

/* ---- cost, printed for information ------------------------------------ */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ns per task: one at a time (push, pop, charge, exit) or in a batch (push
 * all, then pop, charge, exit each), or ns per run for `yield` (tasks
 * re-pushed after every run). */
static double cost(const weft_policy *p, weft_sched_entity *t, size_t n, int pattern)
{
    pol q = pol_open(p, NULL);
    for (size_t i = 0; i < n; i++)
        mk(&t[i], i + 1, 0, i + 1);
    double start = now_ns();
    size_t runs = n;
    if (pattern == 0) {
        for (size_t i = 0; i < n; i++) {
            push(&q, &t[i]);
            weft_sched_entity *e = pop(&q);
            charge(&q, e, 1000);
            task_exit(&q, e);
        }
    } else if (pattern == 1) {
        for (size_t i = 0; i < n; i++)
            push(&q, &t[i]);
        for (weft_sched_entity *e; (e = pop(&q));) {
            charge(&q, e, 1000);
            task_exit(&q, e);
        }
    } else {
        enum { TASKS = 1024 };
        for (size_t i = 0; i < TASKS; i++)
            push(&q, &t[i]);
        for (size_t i = 0; i < n; i++) {
            weft_sched_entity *e = pop(&q);
            charge(&q, e, 1000 + (e->task_id * 7919) % 1000);
            push(&q, e);
        }
    }
    double ns = (now_ns() - start) / (double)runs;
    pol_close(&q);
    return ns;
}

TEST(cost_printed)
{
#if defined(TEST_TSAN) || defined(TEST_LSAN)
    /* Sanitized, the figures mean little and 36M rounds take long. */
    enum { N = 100000, REPS = 1 };
#else
    enum { N = 1000000, REPS = 3 };
#endif
    weft_sched_entity *t = calloc(N, sizeof *t);
    ASSERT(t);
    const char *patterns[] = {"one at a time", "batch of all N", "1024 tasks yielding"};
    for (int pattern = 0; pattern < 3; pattern++) {
        double base = 0;
        printf("    %-20s", patterns[pattern]);
        for (size_t i = 0; i < 4; i++) {
            double best = 1e30;
            for (int rep = 0; rep < REPS; rep++) {
                double ns = cost(all_policies[i], t, N, pattern);
                best = ns < best ? ns : best;
            }
            if (i == 0)
                base = best;
            printf("  %s %.1f ns (%.2fx)", all_policies[i]->name, best, best / base);
        }
        printf("\n");
    }
    free(t);
}

TEST_MAIN(CASE(vtables_complete), CASE(runnable_fifo_order_and_repush), CASE(runnable_fifo_remove),
          CASE(arrival_groups_by_first_arrival), CASE(arrival_keeps_place_across_sleep),
          CASE(arrival_group_member_joins_its_group), CASE(arrival_ties_by_task_id),
          CASE(arrival_children_named_after_parent), CASE(arrival_remove_anywhere),
          CASE(arrival_heap_grows_and_shrinks), CASE(las_least_service_first),
          CASE(las_ties_by_runnable_order), CASE(las_group_shares_account),
          CASE(las_charge_moves_queued_group), CASE(las_exit_releases_group),
          CASE(las_group_named_after_a_task), CASE(las_charge_without_pop),
          CASE(las_solo_task_exit_keeps_nothing),
          CASE(las_exit_after_a_run_without_pop_releases_the_record),
          CASE(las_first_run_charges_named_group), CASE(las_remove), CASE(qlas_buckets),
          CASE(moved_task_keeps_its_service), CASE(qlas_round_robin_pass),
          CASE(qlas_round_robin_cursor_advances), CASE(qlas_config), CASE(qlas_exit_releases_group),
          CASE(group_table_against_array), CASE(seen_pages), CASE(stress_runnable_fifo),
          CASE(stress_arrival_fifo), CASE(stress_las), CASE(stress_qlas),
          CASE(fault_sweep_arrival_fifo), CASE(fault_sweep_las), CASE(fault_sweep_qlas),
          CASE(fault_record_falls_back_to_zero_service), CASE(fault_heap_overflow_keeps_tasks),
          CASE(fault_overflow_with_an_empty_heap_is_not_starved_by_the_lane), CASE(cost_printed))
