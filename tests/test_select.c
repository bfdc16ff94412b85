/* weft_select: one of several channel and broadcast operations goes, and
 * only one; a case that can go at once goes at once, picked from a random
 * start; a closed channel's case goes with -EPIPE; an interrupted select
 * takes and sends nothing and leaves no waiter behind; a select's other
 * cases, stale once one was claimed, are skipped by senders, receivers and
 * closes; selects on tasks of both workers and on plain threads agree. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#include <liburing.h>

#include "common/fault.h"
#include "sync/select.h"
#include "test.h"

#define MS 1000000ull

static weft_select_case recv_case(weft_chan *c, void *elem)
{
    return (weft_select_case){.op = WEFT_SELECT_RECV, .chan = c, .elem = elem, .result = 99};
}

static weft_select_case send_case(weft_chan *c, void *elem)
{
    return (weft_select_case){.op = WEFT_SELECT_SEND, .chan = c, .elem = elem, .result = 99};
}

static weft_select_case bcast_case(weft_broadcast_sub *s, void *elem)
{
    return (weft_select_case){
        .op = WEFT_SELECT_BROADCAST, .sub = s, .elem = elem, .result = 99, .missed = 99};
}

/* ---- cases that can go at once ---------------------------------------------- */

static void *main_ready(void *arg)
{
    (void)arg;
    weft_chan *a, *b, *full;
    ASSERT_OK(weft_chan_create(&a, sizeof(int), 1));
    ASSERT_OK(weft_chan_create(&b, sizeof(int), 1));
    ASSERT_OK(weft_chan_create(&full, sizeof(int), 1));
    int v = 7;
    ASSERT_OK(weft_chan_try_send(b, &v));
    v = 8;
    ASSERT_OK(weft_chan_try_send(full, &v));

    /* Only the recv from b can go. */
    int ra = -1, rb = -1, s = 9;
    weft_select_case c[] = {recv_case(a, &ra), recv_case(b, &rb), send_case(full, &s)};
    ASSERT_EQ(weft_select(c, 3), 1);
    ASSERT_EQ(c[1].result, 0);
    ASSERT_EQ(rb, 7);
    ASSERT_EQ(ra, -1);
    ASSERT_EQ(c[0].result, 99); /* untouched */
    ASSERT_EQ(c[2].result, 99);
    ASSERT_EQ(weft_chan_len(b), 0);
    ASSERT_EQ(weft_chan_len(full), 1); /* s was not sent */

    /* Nothing can go: the try says so and changes nothing. */
    ASSERT_EQ(weft_try_select(c, 3), -EAGAIN);
    ASSERT_EQ(ra, -1);
    ASSERT_EQ(weft_chan_len(full), 1);

    /* A case that is off is skipped even when it could go. */
    v = 1;
    ASSERT_OK(weft_chan_try_send(a, &v));
    c[0].op = 0;
    ASSERT_EQ(weft_try_select(c, 3), -EAGAIN);
    c[0].op = WEFT_SELECT_RECV;
    ASSERT_EQ(weft_try_select(c, 3), 0);
    ASSERT_EQ(ra, 1);

    /* The send goes once there is room. */
    ASSERT_OK(weft_chan_try_recv(full, &v));
    ASSERT_EQ(v, 8);
    ASSERT_EQ(weft_select(c, 3), 2);
    ASSERT_EQ(c[2].result, 0);
    ASSERT_OK(weft_chan_try_recv(full, &v));
    ASSERT_EQ(v, 9);

    weft_chan_destroy(a);
    weft_chan_destroy(b);
    weft_chan_destroy(full);
    return NULL;
}
TEST(a_case_that_can_go_goes_at_once)
{
    run_main(NULL, main_ready, NULL);
}

/* Two channels always ready: the cases tried first take turns, so both go
 * often (the start is random; 1000 picks of 2 give each some 500). */
static void *main_fair(void *arg)
{
    (void)arg;
    weft_chan *a, *b;
    ASSERT_OK(weft_chan_create(&a, sizeof(int), 1));
    ASSERT_OK(weft_chan_create(&b, sizeof(int), 1));
    int v = 0, count[2] = {0, 0};
    ASSERT_OK(weft_chan_try_send(a, &v));
    ASSERT_OK(weft_chan_try_send(b, &v));
    for (int i = 0; i < 1000; i++) {
        int got;
        weft_select_case c[] = {recv_case(a, &got), recv_case(b, &got)};
        int k = weft_select(c, 2);
        ASSERT(k == 0 || k == 1);
        count[k]++;
        ASSERT_OK(weft_chan_try_send(k == 0 ? a : b, &v)); /* ready again */
    }
    ASSERT_GT(count[0], 300);
    ASSERT_GT(count[1], 300);

    /* Two ready among eight, with empty ones between and after them: the
     * order is shuffled whole, so each still goes about half the time (a
     * random start alone would favour the one after the empty run 7:1). */
    weft_chan *empty;
    ASSERT_OK(weft_chan_create(&empty, sizeof(int), 1));
    count[0] = count[1] = 0;
    for (int i = 0; i < 2000; i++) {
        int got;
        weft_select_case c[8];
        for (int j = 0; j < 8; j++)
            c[j] = recv_case(empty, &got);
        c[1] = recv_case(a, &got);
        c[3] = recv_case(b, &got);
        int k = weft_select(c, 8);
        ASSERT(k == 1 || k == 3);
        count[k == 3]++;
        ASSERT_OK(weft_chan_try_send(k == 1 ? a : b, &v));
    }
    ASSERT_GT(count[0], 700);
    ASSERT_GT(count[1], 700);
    weft_chan_destroy(empty);
    ASSERT_OK(weft_chan_try_recv(a, &v));
    ASSERT_OK(weft_chan_try_recv(b, &v));
    weft_chan_destroy(a);
    weft_chan_destroy(b);
    return NULL;
}
TEST(ready_cases_take_turns)
{
    run_main(NULL, main_fair, NULL);
}

/* ---- waiting ---------------------------------------------------------------- */

struct pair {
    weft_chan *ch;
    int value;
};

static void *send_later(void *arg)
{
    struct pair *p = arg;
    ASSERT_OK(weft_sleep_ns(2 * MS));
    ASSERT_OK(weft_chan_send(p->ch, &p->value));
    return NULL;
}

static void *recv_later(void *arg)
{
    struct pair *p = arg;
    ASSERT_OK(weft_sleep_ns(2 * MS));
    ASSERT_OK(weft_chan_recv(p->ch, &p->value));
    return NULL;
}

static void *main_wait(void *arg)
{
    (void)arg;
    weft_chan *a, *b, *r0, *full;
    ASSERT_OK(weft_chan_create(&a, sizeof(int), 1));
    ASSERT_OK(weft_chan_create(&b, sizeof(int), 0));
    ASSERT_OK(weft_chan_create(&r0, sizeof(int), 0));
    ASSERT_OK(weft_chan_create(&full, sizeof(int), 1));
    int v = 5;
    ASSERT_OK(weft_chan_try_send(full, &v));

    /* A sender on the rendezvous channel b comes later. */
    struct pair p = {b, 42};
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, send_later, &p));
    int ra = -1, rb = -1, s = 6;
    weft_select_case c[] = {recv_case(a, &ra), recv_case(b, &rb), send_case(full, &s)};
    ASSERT_EQ(weft_select(c, 3), 1);
    ASSERT_EQ(c[1].result, 0);
    ASSERT_EQ(rb, 42);
    ASSERT_OK(weft_join(t, NULL));
    /* The other cases took and sent nothing, and left nothing behind: a
     * send on a is buffered (no receiver is linked there), full still
     * holds only its first element. */
    ASSERT_EQ(ra, -1);
    v = 1;
    ASSERT_OK(weft_chan_try_send(a, &v));
    ASSERT_EQ(weft_chan_len(a), 1);
    ASSERT_OK(weft_chan_try_recv(a, &v));
    ASSERT_EQ(weft_chan_len(full), 1);

    /* A send case on a rendezvous channel goes when a receiver comes. */
    struct pair q = {r0, -1};
    ASSERT_OK(weft_spawn(&t, recv_later, &q));
    s = 77;
    weft_select_case d[] = {recv_case(a, &ra), send_case(r0, &s)};
    ASSERT_EQ(weft_select(d, 2), 1);
    ASSERT_EQ(d[1].result, 0);
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_EQ(q.value, 77);

    weft_chan_destroy(a); /* debug builds abort if a waiter is still linked */
    weft_chan_destroy(b);
    weft_chan_destroy(r0);
    weft_chan_destroy(full);
    return NULL;
}
TEST(the_first_case_that_can_go_wins_and_the_others_do_nothing)
{
    run_main(NULL, main_wait, NULL);
}

/* Two selects meet: one waits to receive on either of two channels, the
 * other then sends on one of them and finds the first waiting. */
static weft_chan *meet_x, *meet_y;
static _Atomic int meet_got = -1, meet_case = -1;

static void *select_receiver(void *arg)
{
    (void)arg;
    int v = -1;
    weft_select_case c[] = {recv_case(meet_x, &v), recv_case(meet_y, &v)};
    int k = weft_select(c, 2);
    ASSERT_GE(k, 0);
    ASSERT_EQ(c[k].result, 0);
    atomic_store(&meet_case, k);
    atomic_store(&meet_got, v);
    return NULL;
}

static void *main_meet(void *arg)
{
    (void)arg;
    weft_chan *full;
    ASSERT_OK(weft_chan_create(&meet_x, sizeof(int), 0));
    ASSERT_OK(weft_chan_create(&meet_y, sizeof(int), 0));
    ASSERT_OK(weft_chan_create(&full, sizeof(int), 1));
    int v = 0;
    ASSERT_OK(weft_chan_try_send(full, &v));
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, select_receiver, NULL));
    ASSERT_OK(weft_sleep_ns(2 * MS)); /* let it wait */
    int s = 31, f = 32;
    weft_select_case c[] = {send_case(full, &f), send_case(meet_y, &s)};
    ASSERT_EQ(weft_select(c, 2), 1);
    ASSERT_EQ(c[1].result, 0);
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_EQ(atomic_load(&meet_case), 1);
    ASSERT_EQ(atomic_load(&meet_got), 31);
    ASSERT_OK(weft_chan_try_recv(full, &v));
    ASSERT_EQ(v, 0); /* f was not sent */
    weft_chan_destroy(meet_x);
    weft_chan_destroy(meet_y);
    weft_chan_destroy(full);
    return NULL;
}
TEST(a_select_that_sends_meets_a_select_that_waits)
{
    run_main(NULL, main_meet, NULL);
}

/* A one-shot reply: the sender frees the channel as soon as its send
 * returns, which a plain receiver allows; so does a select, which leaves
 * the source of the case that went alone once woken (ASan would see a
 * use after free otherwise). */
static void *reply_and_free(void *arg)
{
    weft_chan *c = arg;
    ASSERT_OK(weft_sleep_ns(MS));
    int v = 11;
    ASSERT_OK(weft_chan_send(c, &v));
    weft_chan_destroy(c);
    return NULL;
}

static void *main_oneshot(void *arg)
{
    (void)arg;
    weft_chan *other;
    ASSERT_OK(weft_chan_create(&other, sizeof(int), 1));
    for (int i = 0; i < 20; i++) {
        weft_chan *reply;
        ASSERT_OK(weft_chan_create(&reply, sizeof(int), 0));
        weft_task *t;
        ASSERT_OK(weft_spawn(&t, reply_and_free, reply));
        int got = 0, o = 0;
        weft_select_case c[] = {recv_case(other, &o), recv_case(reply, &got)};
        ASSERT_EQ(weft_select(c, 2), 1);
        ASSERT_EQ(got, 11);
        ASSERT_OK(weft_join(t, NULL));
    }
    weft_chan_destroy(other);
    return NULL;
}
TEST(a_reply_channel_freed_by_its_sender_after_the_send)
{
    run_main(NULL, main_oneshot, NULL);
}

/* ---- closed channels and broadcasts ------------------------------------------- */

static void *close_later(void *arg)
{
    ASSERT_OK(weft_sleep_ns(2 * MS));
    weft_chan_close(arg);
    return NULL;
}

static void *main_closed(void *arg)
{
    (void)arg;
    weft_chan *a, *b;
    ASSERT_OK(weft_chan_create(&a, sizeof(int), 1));
    ASSERT_OK(weft_chan_create(&b, sizeof(int), 1));
    /* Closed while the select waits: its case goes with -EPIPE. */
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, close_later, b));
    int ra = -1, rb = -1;
    weft_select_case c[] = {recv_case(a, &ra), recv_case(b, &rb)};
    ASSERT_EQ(weft_select(c, 2), 1);
    ASSERT_EQ(c[1].result, -EPIPE);
    ASSERT_EQ(rb, -1);
    ASSERT_OK(weft_join(t, NULL));
    /* Closed before: it goes at once, again and again, until turned off. */
    ASSERT_EQ(weft_select(c, 2), 1);
    ASSERT_EQ(c[1].result, -EPIPE);
    int s = 3;
    weft_select_case d[] = {send_case(b, &s), recv_case(a, &ra)};
    ASSERT_EQ(weft_select(d, 2), 0);
    ASSERT_EQ(d[0].result, -EPIPE);
    /* A closed channel still hands out what it holds first. */
    ASSERT_OK(weft_chan_try_send(a, &s));
    weft_chan_close(a);
    c[1].op = 0;
    ASSERT_EQ(weft_select(c, 2), 0);
    ASSERT_EQ(c[0].result, 0);
    ASSERT_EQ(ra, 3);
    ASSERT_EQ(weft_select(c, 2), 0);
    ASSERT_EQ(c[0].result, -EPIPE);
    weft_chan_destroy(a);
    weft_chan_destroy(b);
    return NULL;
}
TEST(a_closed_channels_case_goes_with_epipe)
{
    run_main(NULL, main_closed, NULL);
}

static void *broadcast_later(void *arg)
{
    weft_broadcast *b = arg;
    ASSERT_OK(weft_sleep_ns(2 * MS));
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(weft_broadcast_send(b, &i), 1);
    return NULL;
}

static void *main_broadcast(void *arg)
{
    (void)arg;
    weft_chan *jobs;
    weft_broadcast *b;
    weft_broadcast_sub *sub;
    ASSERT_OK(weft_chan_create(&jobs, sizeof(int), 4));
    ASSERT_OK(weft_broadcast_create(&b, sizeof(int), 2));
    ASSERT_OK(weft_broadcast_subscribe(b, &sub));
    /* Five messages into a channel keeping two, sent while the select
     * waits. The first claims the select; the sender goes on without a
     * yield (one worker), so when the select reads, the first three are
     * overwritten and it reads the fourth, told it missed three. */
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, broadcast_later, b));
    int job = -1, msg = -1;
    weft_select_case c[] = {recv_case(jobs, &job), bcast_case(sub, &msg)};
    ASSERT_EQ(weft_select(c, 2), 1);
    ASSERT_EQ(c[1].result, 0);
    ASSERT_EQ(msg, 3);
    ASSERT_EQ(c[1].missed, 3);
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_EQ(weft_select(c, 2), 1);
    ASSERT_EQ(msg, 4);
    ASSERT_EQ(c[1].missed, 0);
    ASSERT_EQ(weft_try_select(c, 2), -EAGAIN);
    /* A close wakes a waiting select too, and its case says -EPIPE. */
    weft_broadcast_close(b);
    ASSERT_EQ(weft_select(c, 2), 1);
    ASSERT_EQ(c[1].result, -EPIPE);
    ASSERT_EQ(job, -1);
    weft_broadcast_unsubscribe(sub);
    ASSERT_OK(weft_broadcast_destroy(b));
    weft_chan_destroy(jobs);
    return NULL;
}
TEST(a_broadcast_case_reads_what_was_sent_and_counts_what_it_missed)
{
    run_main_one_worker(NULL, main_broadcast, NULL);
}

/* ---- task sets -------------------------------------------------------------------- */

static void *returns_arg(void *arg)
{
    return arg;
}

static void *return_after_sleep(void *arg)
{
    ASSERT_OK(weft_sleep_ns((uintptr_t)arg * MS));
    return arg;
}

static weft_select_case join_case(weft_taskset *s, void **res)
{
    return (weft_select_case){.op = WEFT_SELECT_JOIN, .set = s, .elem = res, .result = 99};
}

/* A coordinator waits for jobs and for its workers at once: a JOIN case
 * goes when a member ends, with its id, outcome and result, and with
 * -ECHILD once the set is empty. */
static void *main_join(void *arg)
{
    (void)arg;
    weft_chan *jobs;
    weft_taskset *set;
    ASSERT_OK(weft_chan_create(&jobs, sizeof(int), 1));
    ASSERT_OK(weft_taskset_create(&set));
    uint64_t id[3];
    for (uintptr_t i = 0; i < 3; i++)
        ASSERT_OK(weft_taskset_spawn(set, NULL, return_after_sleep, (void *)(i + 1), &id[i]));
    int job = -1, joined = 0;
    uintptr_t sum = 0;
    void *res = NULL;
    weft_select_case c[] = {recv_case(jobs, &job), join_case(set, &res)};
    for (;;) {
        int k = weft_select(c, 2);
        ASSERT_EQ(k, 1);
        if (c[1].result == -ECHILD)
            break;
        ASSERT_OK(c[1].result);
        ASSERT(c[1].id == id[0] || c[1].id == id[1] || c[1].id == id[2]);
        sum += (uintptr_t)res;
        joined++;
    }
    ASSERT_EQ(joined, 3);
    ASSERT_EQ(sum, 6);
    ASSERT_EQ(job, -1);
    ASSERT_EQ(weft_taskset_len(set), 0);
    /* A member that ended already is joined at once, without a wait; a
     * NULL elem drops its result. */
    ASSERT_OK(weft_taskset_spawn(set, NULL, returns_arg, (void *)5, &id[0]));
    ASSERT_OK(weft_sleep_ns(MS));
    c[1].elem = NULL;
    ASSERT_EQ(weft_try_select(c, 2), 1);
    ASSERT_OK(c[1].result);
    ASSERT_EQ(c[1].id, id[0]);
    ASSERT_EQ(weft_try_select(c, 2), 1); /* empty: -ECHILD at once */
    ASSERT_EQ(c[1].result, -ECHILD);
    ASSERT_OK(weft_taskset_destroy(set));
    weft_chan_destroy(jobs);
    return NULL;
}
TEST(a_join_case_joins_the_next_member_to_end)
{
    run_main(NULL, main_join, NULL);
}

static _Atomic int select_joiner_result = 1;

static void *select_join_one(void *arg)
{
    weft_chan *never;
    ASSERT_OK(weft_chan_create(&never, sizeof(int), 1));
    int v;
    weft_select_case c[] = {recv_case(never, &v), join_case(arg, NULL)};
    int k = weft_select(c, 2);
    atomic_store(&select_joiner_result, k == 1 ? c[1].result : k);
    weft_chan_destroy(never);
    return NULL;
}

static void *wait_forever(void *arg)
{
    (void)arg;
    (void)weft_sleep_ns(10000 * MS);
    return NULL;
}

/* A select waiting with a JOIN case counts as a joiner: a plain joiner
 * and the select share one member (the other learns -ECHILD), a destroy
 * waits for the select to leave (ASan would see it otherwise), and a
 * select that gave up on a deadline no longer counts. */
static void *main_join_joiners(void *arg)
{
    (void)arg;
    weft_taskset *set;
    ASSERT_OK(weft_taskset_create(&set));
    ASSERT_OK(weft_taskset_spawn(set, NULL, return_after_sleep, (void *)2, NULL));
    weft_task *t;
    atomic_store(&select_joiner_result, 1);
    ASSERT_OK(weft_spawn(&t, select_join_one, set));
    int r = weft_taskset_join_next(set, NULL, NULL);
    ASSERT_OK(weft_join(t, NULL));
    int rs = atomic_load(&select_joiner_result);
    ASSERT((r == 0 && rs == -ECHILD) || (r == -ECHILD && rs == 0));

    ASSERT_OK(weft_taskset_spawn(set, NULL, wait_forever, NULL, NULL));
    atomic_store(&select_joiner_result, 1);
    ASSERT_OK(weft_spawn(&t, select_join_one, set));
    ASSERT_OK(weft_sleep_ns(MS)); /* the select waits */
    ASSERT_OK(weft_taskset_destroy(set));
    ASSERT_OK(weft_join(t, NULL));
    rs = atomic_load(&select_joiner_result);
    ASSERT(rs == -ECANCELED || rs == -ECHILD); /* it joined the cancelled member, or found none */

    ASSERT_OK(weft_taskset_create(&set));
    ASSERT_OK(weft_taskset_spawn(set, NULL, wait_forever, NULL, NULL));
    weft_select_case c[] = {join_case(set, NULL)};
    ASSERT_OK(weft_deadline_push_in(MS));
    ASSERT_EQ(weft_select(c, 1), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_taskset_destroy(set)); /* would wait for the select for ever */

    /* A select that cannot get its nodes (-ENOMEM) counts as a joiner no
     * more: the destroy does not wait for it. */
    ASSERT_OK(weft_taskset_create(&set));
    ASSERT_OK(weft_taskset_spawn(set, NULL, wait_forever, NULL, NULL));
    weft_chan *empty;
    ASSERT_OK(weft_chan_create(&empty, sizeof(int), 1));
    int v;
    weft_select_case nine[9];
    for (int i = 0; i < 8; i++)
        nine[i] = recv_case(empty, &v);
    nine[8] = join_case(set, NULL);
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    ASSERT_EQ(weft_select(nine, 9), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_OK(weft_taskset_destroy(set));
    weft_chan_destroy(empty);

    /* Bad cases. */
    weft_select_case none = join_case(NULL, NULL);
    ASSERT_EQ(weft_select(&none, 1), -EINVAL);
    ASSERT_OK(weft_taskset_create(&set));
    weft_select_case twice[] = {join_case(set, NULL), join_case(set, NULL)};
    ASSERT_EQ(weft_select(twice, 2), -EINVAL);
    ASSERT_OK(weft_taskset_destroy(set));
    return NULL;
}
TEST(a_select_with_a_join_case_is_one_of_the_sets_joiners)
{
    run_main(NULL, main_join_joiners, NULL);
}

/* ---- interruption ------------------------------------------------------------- */

static _Atomic int cancelled_result = 1;

static void *select_until_cancelled(void *arg)
{
    weft_chan **ch = arg;
    int v = -1, s = 5;
    weft_select_case c[] = {recv_case(ch[0], &v), send_case(ch[1], &s)};
    atomic_store(&cancelled_result, weft_select(c, 2));
    ASSERT_EQ(v, -1);
    return NULL;
}

static void *main_interrupted(void *arg)
{
    (void)arg;
    weft_chan *a, *full;
    ASSERT_OK(weft_chan_create(&a, sizeof(int), 1));
    ASSERT_OK(weft_chan_create(&full, sizeof(int), 1));
    int v = 1;
    ASSERT_OK(weft_chan_try_send(full, &v));
    int ra = -1, s = 2;
    weft_select_case c[] = {recv_case(a, &ra), send_case(full, &s)};
    ASSERT_OK(weft_deadline_push_in(2 * MS));
    ASSERT_EQ(weft_select(c, 2), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(c[0].result, 99);
    ASSERT_EQ(c[1].result, 99);
    /* No node is left behind: a's next element is buffered, not handed to
     * a select that gave up, and full still holds only its first. */
    v = 3;
    ASSERT_OK(weft_chan_try_send(a, &v));
    ASSERT_EQ(weft_chan_len(a), 1);
    ASSERT_OK(weft_chan_try_recv(a, &v));
    ASSERT_OK(weft_chan_try_recv(full, &v));
    ASSERT_EQ(v, 1);
    ASSERT_EQ(weft_chan_try_recv(full, &v), -EAGAIN);
    ASSERT_OK(weft_chan_try_send(full, &v));

    /* Cancelled while waiting: the same. */
    weft_chan *ch[2] = {a, full};
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, select_until_cancelled, ch));
    ASSERT_OK(weft_sleep_ns(2 * MS));
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    int r = atomic_load(&cancelled_result);
    ASSERT(r == -ECANCELED || r == 1); /* cancelled waiting, or before it ran */
    v = 4;
    ASSERT_OK(weft_chan_try_send(a, &v));
    ASSERT_EQ(weft_chan_len(a), 1);
    ASSERT_EQ(weft_chan_len(full), 1);

    ASSERT_EQ(ra, -1);
    weft_chan_destroy(a);
    weft_chan_destroy(full);
    return NULL;
}
TEST(an_interrupted_select_does_nothing_and_leaves_nothing_linked)
{
    run_main(NULL, main_interrupted, NULL);
}

/* ---- stale cases --------------------------------------------------------------- */

/* On one worker, deterministic: the main task waits in a select over a, b
 * and a broadcast, and the task below claims it through a, then, before
 * the main task can run and take its other cases out, sends on b, sends a
 * broadcast message and closes b. Each must pass the stale cases by: b's
 * element is buffered and the close finds no receiver, so the main task
 * sees only a's element. */
static weft_chan *stale_a, *stale_b;
static weft_broadcast *stale_bc;

static void *claim_then_use_the_rest(void *arg)
{
    (void)arg;
    int v = 1;
    ASSERT_OK(weft_chan_send(stale_a, &v)); /* claims the select; no yield after */
    v = 2;
    ASSERT_OK(weft_chan_try_send(stale_b, &v));
    ASSERT_EQ(weft_broadcast_send(stale_bc, &v), 1);
    weft_chan_close(stale_b);
    return NULL;
}

static void *main_stale(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_chan_create(&stale_a, sizeof(int), 0));
    ASSERT_OK(weft_chan_create(&stale_b, sizeof(int), 1));
    ASSERT_OK(weft_broadcast_create(&stale_bc, sizeof(int), 4));
    weft_broadcast_sub *sub;
    ASSERT_OK(weft_broadcast_subscribe(stale_bc, &sub));
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, claim_then_use_the_rest, NULL));
    int ra = -1, rb = -1, rm = -1;
    weft_select_case c[] = {recv_case(stale_a, &ra), recv_case(stale_b, &rb), bcast_case(sub, &rm)};
    ASSERT_EQ(weft_select(c, 3), 0);
    ASSERT_EQ(c[0].result, 0);
    ASSERT_EQ(ra, 1);
    ASSERT_EQ(rb, -1);
    ASSERT_EQ(rm, -1);
    ASSERT_EQ(c[1].result, 99);
    ASSERT_OK(weft_join(t, NULL));
    /* b holds its element, then says closed; the message is there. */
    ASSERT_OK(weft_chan_try_recv(stale_b, &rb));
    ASSERT_EQ(rb, 2);
    ASSERT_EQ(weft_chan_try_recv(stale_b, &rb), -EPIPE);
    ASSERT_OK(weft_broadcast_try_recv(sub, &rm, NULL));
    ASSERT_EQ(rm, 2);
    weft_broadcast_unsubscribe(sub);
    ASSERT_OK(weft_broadcast_destroy(stale_bc));
    weft_chan_destroy(stale_a);
    weft_chan_destroy(stale_b);
    return NULL;
}
TEST(a_claimed_selects_other_cases_are_passed_by)
{
    run_main_one_worker(NULL, main_stale, NULL);
}

/* ---- many tasks and threads ------------------------------------------------------ */

/* Producers (tasks, and one plain thread using weft_select_blocking) send
 * numbered values into whichever of their two channels has room;
 * consumers (tasks) receive from whichever of the channels has one, until
 * all are closed. Every value arrives exactly once. */
#define CHANS 4
#ifdef TEST_TSAN
#define PER_PRODUCER 1000
#else
#define PER_PRODUCER 20000
#endif
#define PRODUCERS 4 /* the last one is the plain thread */
#define CONSUMERS 3

static weft_chan *stress_ch[CHANS];
static _Atomic uint64_t stress_sum, stress_count;

static int produce(int id, bool blocking)
{
    for (int i = 0; i < PER_PRODUCER; i++) {
        int v = id * PER_PRODUCER + i;
        weft_select_case c[] = {send_case(stress_ch[id % CHANS], &v),
                                send_case(stress_ch[(id + 1) % CHANS], &v)};
        int k = blocking ? weft_select_blocking(c, 2) : weft_select(c, 2);
        if (k < 0 || c[k].result != 0)
            return k < 0 ? k : c[k].result;
    }
    return 0;
}

static void *producer_task(void *arg)
{
    ASSERT_OK(produce((int)(intptr_t)arg, false));
    return NULL;
}

static void *producer_thread(void *arg)
{
    ASSERT_OK(produce((int)(intptr_t)arg, true));
    return NULL;
}

static void *consumer_task(void *arg)
{
    (void)arg;
    int v[CHANS];
    weft_select_case c[CHANS];
    for (int i = 0; i < CHANS; i++)
        c[i] = recv_case(stress_ch[i], &v[i]);
    int open = CHANS;
    while (open) {
        int k = weft_select(c, CHANS);
        ASSERT_GE(k, 0);
        if (c[k].result == -EPIPE) {
            c[k].op = 0;
            open--;
            continue;
        }
        ASSERT_OK(c[k].result);
        atomic_fetch_add(&stress_sum, (uint64_t)v[k]);
        atomic_fetch_add(&stress_count, 1);
    }
    return NULL;
}

static void *main_stress(void *arg)
{
    (void)arg;
    for (int i = 0; i < CHANS; i++)
        ASSERT_OK(weft_chan_create(&stress_ch[i], sizeof(int), i % 2 ? 0 : 8));
    weft_task *cons[CONSUMERS], *prod[PRODUCERS - 1];
    for (int i = 0; i < CONSUMERS; i++)
        ASSERT_OK(weft_spawn(&cons[i], consumer_task, NULL));
    for (int i = 0; i < PRODUCERS - 1; i++)
        ASSERT_OK(weft_spawn(&prod[i], producer_task, (void *)(intptr_t)i));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, producer_thread, (void *)(intptr_t)(PRODUCERS - 1)));
    for (int i = 0; i < PRODUCERS - 1; i++)
        ASSERT_OK(weft_join(prod[i], NULL));
    while (pthread_tryjoin_np(th, NULL) != 0) /* a task must not block its worker */
        ASSERT_OK(weft_sleep_ns(MS));
    for (int i = 0; i < CHANS; i++)
        weft_chan_close(stress_ch[i]);
    for (int i = 0; i < CONSUMERS; i++)
        ASSERT_OK(weft_join(cons[i], NULL));
    uint64_t n = (uint64_t)PRODUCERS * PER_PRODUCER;
    ASSERT_EQ(atomic_load(&stress_count), n);
    ASSERT_EQ(atomic_load(&stress_sum), n * (n - 1) / 2);
    for (int i = 0; i < CHANS; i++)
        weft_chan_destroy(stress_ch[i]);
    return NULL;
}
TEST(producers_and_consumers_selecting_on_tasks_and_threads_lose_nothing)
{
    run_main(NULL, main_stress, NULL);
}

/* ---- events, semaphores and wait groups ------------------------------------------ */

static weft_select_case event_case(weft_event *e)
{
    return (weft_select_case){.op = WEFT_SELECT_EVENT, .event = e, .result = 99};
}

static weft_select_case acquire_case(weft_sem *s)
{
    return (weft_select_case){.op = WEFT_SELECT_ACQUIRE, .sem = s, .result = 99};
}

static weft_select_case waitgroup_case(weft_waitgroup *w)
{
    return (weft_select_case){.op = WEFT_SELECT_WAITGROUP, .wg = w, .result = 99};
}

/* A pending notification, a unit and a wait group at zero go at once, as
 * their own waits would; the first two are taken, the third stays. */
static void *main_sync_ready(void *arg)
{
    (void)arg;
    weft_chan *empty;
    ASSERT_OK(weft_chan_create(&empty, sizeof(int), 1));
    weft_event e = WEFT_EVENT_INIT;
    weft_sem s = WEFT_SEM_INIT(0);
    weft_waitgroup wg = WEFT_WAITGROUP_INIT;
    weft_waitgroup_add(&wg, 1);
    int v;
    weft_select_case c[] = {recv_case(empty, &v), event_case(&e), acquire_case(&s),
                            waitgroup_case(&wg)};
    ASSERT_EQ(weft_try_select(c, 4), -EAGAIN); /* nothing can go */

    weft_event_notify_one(&e); /* no waiter: pending */
    ASSERT_EQ(weft_select(c, 4), 1);
    ASSERT_EQ(c[1].result, 0);
    ASSERT_EQ(weft_try_select(c, 4), -EAGAIN); /* the notification was taken */

    weft_sem_release(&s);
    weft_sem_release(&s);
    ASSERT_EQ(weft_select(c, 4), 2);
    ASSERT_EQ(c[2].result, 0);
    ASSERT_EQ(weft_sem_available(&s), 1u);
    ASSERT_EQ(weft_try_select(c, 4), 2);
    ASSERT_EQ(weft_sem_available(&s), 0u);

    weft_waitgroup_done(&wg);
    for (int i = 0; i < 3; i++) { /* zero stays zero: it takes nothing */
        c[3].result = 99;
        ASSERT_EQ(weft_select(c, 4), 3);
        ASSERT_EQ(c[3].result, 0);
    }
    ASSERT_EQ(c[0].result, 99); /* the channel's case never went */
    weft_chan_destroy(empty);
    return NULL;
}
TEST(event_semaphore_and_wait_group_cases_go_at_once_when_they_can)
{
    run_main(NULL, main_sync_ready, NULL);
}

/* Each kind wakes a select that waits on it beside an empty channel, from
 * a task that may run on the other worker; a notify_one or a release made
 * for the select is taken by it (nothing left pending or available). */
static weft_event wake_event;
static weft_sem wake_sem;
static weft_waitgroup wake_wg;

static void *nap_then_signal(void *arg)
{
    ASSERT_OK(weft_sleep_ns(2 * MS));
    switch ((int)(intptr_t)arg) {
    case WEFT_SELECT_EVENT:
        weft_event_notify_one(&wake_event);
        break;
    case WEFT_SELECT_ACQUIRE:
        weft_sem_release(&wake_sem);
        break;
    default:
        weft_waitgroup_done(&wake_wg);
        break;
    }
    return NULL;
}

static void *main_sync_wait(void *arg)
{
    (void)arg;
    weft_chan *empty;
    ASSERT_OK(weft_chan_create(&empty, sizeof(int), 0));
    ASSERT_OK(weft_event_init(&wake_event));
    ASSERT_OK(weft_sem_init(&wake_sem, 0));
    ASSERT_OK(weft_waitgroup_init(&wake_wg));
    weft_waitgroup_add(&wake_wg, 1);
    const int ops[] = {WEFT_SELECT_EVENT, WEFT_SELECT_ACQUIRE, WEFT_SELECT_WAITGROUP};
    for (int i = 0; i < 3; i++) {
        int v = -1;
        weft_select_case c[] = {recv_case(empty, &v), event_case(&wake_event),
                                acquire_case(&wake_sem), waitgroup_case(&wake_wg)};
        weft_task *t;
        ASSERT_OK(weft_spawn(&t, nap_then_signal, (void *)(intptr_t)ops[i]));
        ASSERT_EQ(weft_select(c, 4), i + 1);
        ASSERT_EQ(c[i + 1].result, 0);
        ASSERT_EQ(v, -1);
        ASSERT_OK(weft_join(t, NULL));
        c[3].op = 0; /* the wait group, once at zero, would go every time */
        ASSERT_EQ(weft_try_select(c, 4), -EAGAIN); /* handed over, not left */
    }
    ASSERT_EQ(weft_sem_available(&wake_sem), 0u);
    weft_chan_destroy(empty);
    return NULL;
}
TEST(event_semaphore_and_wait_group_cases_wait_for_their_source)
{
    run_main(NULL, main_sync_wait, NULL);
}

/* Interrupted while waiting on an event and a semaphore, a select leaves
 * no node behind: the notify and the release that come next find no
 * waiter, so the first is left pending and the second's unit stays. The
 * same for a plain thread's select_blocking_for that times out. */
static void *select_with_deadline(void *arg)
{
    (void)arg;
    weft_select_case c[] = {event_case(&wake_event), acquire_case(&wake_sem)};
    ASSERT_OK(weft_deadline_push_in(MS));
    ASSERT_EQ(weft_select(c, 2), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(c[0].result, 99);
    ASSERT_EQ(c[1].result, 99);
    return NULL;
}

static void *thread_select_times_out(void *arg)
{
    (void)arg;
    weft_select_case c[] = {event_case(&wake_event), acquire_case(&wake_sem)};
    ASSERT_EQ(weft_select_blocking_for(c, 2, MS), -ETIMEDOUT);
    return NULL;
}

static void *thread_select_waits(void *arg)
{
    (void)arg;
    weft_select_case c[] = {event_case(&wake_event), acquire_case(&wake_sem)};
    ASSERT_EQ(weft_select_blocking(c, 2), 1); /* the main task releases */
    ASSERT_EQ(c[1].result, 0);
    return NULL;
}

static void *main_sync_interrupted(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_event_init(&wake_event));
    ASSERT_OK(weft_sem_init(&wake_sem, 0));
    for (int round = 0; round < 2; round++) {
        if (round == 0) {
            weft_task *t;
            ASSERT_OK(weft_spawn(&t, select_with_deadline, NULL));
            ASSERT_OK(weft_join(t, NULL));
        } else {
            pthread_t th;
            ASSERT_OK(pthread_create(&th, NULL, thread_select_times_out, NULL));
            while (pthread_tryjoin_np(th, NULL) != 0)
                ASSERT_OK(weft_sleep_ns(MS));
        }
        weft_event_notify_one(&wake_event);
        weft_sem_release(&wake_sem);
        ASSERT_OK(weft_event_wait(&wake_event)); /* pending: at once */
        ASSERT_EQ(weft_sem_available(&wake_sem), 1u);
        ASSERT_OK(weft_sem_try_acquire(&wake_sem));
    }
    /* A plain thread waiting in select_blocking is handed the unit. */
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, thread_select_waits, NULL));
    ASSERT_OK(weft_sleep_ns(2 * MS));
    weft_sem_release(&wake_sem);
    while (pthread_tryjoin_np(th, NULL) != 0)
        ASSERT_OK(weft_sleep_ns(MS));
    ASSERT_EQ(weft_sem_available(&wake_sem), 0u);
    return NULL;
}
TEST(an_interrupted_select_leaves_no_event_or_semaphore_waiter)
{
    run_main(NULL, main_sync_interrupted, NULL);
}

/* On one worker, deterministic: the main task waits in a select over an
 * unbuffered channel, an event, a semaphore and a wait group, and the task
 * below claims it through the channel, then, before the main task can run
 * and take its other nodes out, notifies the event, releases a unit and
 * brings the wait group to zero. Each must pass the stale nodes by: the
 * notification is left pending and the unit kept. In the second round
 * plain waiters queue behind the stale nodes: notify_all and the wait
 * group wake them and leave the stale nodes to the select, so the lists
 * are empty once all have returned. */
static weft_chan *stale_ch;

static void *wait_on_event(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_event_wait(&wake_event));
    return NULL;
}

static void *wait_on_waitgroup(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_waitgroup_wait(&wake_wg));
    return NULL;
}

static void *claim_then_signal(void *arg)
{
    /* Let the plain waiters queue first (they park at their first run). */
    for (int i = 0; i < 4; i++)
        weft_yield();
    int v = 1;
    ASSERT_OK(weft_chan_send(stale_ch, &v)); /* claims the select; no yield after */
    if (arg)
        weft_event_notify_all(&wake_event);
    else
        weft_event_notify_one(&wake_event);
    weft_sem_release(&wake_sem);
    weft_waitgroup_done(&wake_wg);
    return NULL;
}

static void *main_sync_stale(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_chan_create(&stale_ch, sizeof(int), 0));
    for (int all = 0; all < 2; all++) {
        ASSERT_OK(weft_event_init(&wake_event));
        ASSERT_OK(weft_sem_init(&wake_sem, 0));
        ASSERT_OK(weft_waitgroup_init(&wake_wg));
        weft_waitgroup_add(&wake_wg, 1);
        weft_task *t, *plain[2] = {NULL, NULL};
        ASSERT_OK(weft_spawn(&t, claim_then_signal, all ? &all : NULL));
        if (all) {
            ASSERT_OK(weft_spawn(&plain[0], wait_on_event, NULL));
            ASSERT_OK(weft_spawn(&plain[1], wait_on_waitgroup, NULL));
        }
        int v = -1;
        weft_select_case c[] = {recv_case(stale_ch, &v), event_case(&wake_event),
                                acquire_case(&wake_sem), waitgroup_case(&wake_wg)};
        ASSERT_EQ(weft_select(c, 4), 0);
        ASSERT_EQ(c[0].result, 0);
        ASSERT_EQ(v, 1);
        ASSERT_EQ(c[1].result, 99);
        ASSERT_OK(weft_join(t, NULL));
        for (int i = 0; i < 2; i++)
            if (plain[i])
                ASSERT_OK(weft_join(plain[i], NULL));
        /* Nothing of the select, nor of the woken waiters, is left linked. */
        ASSERT(wake_event._waiters._first == NULL && wake_event._waiters._last == NULL);
        ASSERT(wake_wg._waiters._first == NULL && wake_wg._waiters._last == NULL);
        ASSERT(wake_sem._waiters._first == NULL && wake_sem._waiters._last == NULL);
        /* The notification is pending, the unit available, the group at 0. */
        ASSERT_EQ(weft_sem_available(&wake_sem), 1u);
        ASSERT_EQ(weft_try_select(&c[1], 1), 0);
        ASSERT_EQ(weft_try_select(&c[1], 1), -EAGAIN); /* taken */
        ASSERT_EQ(weft_try_select(&c[3], 1), 0);
        ASSERT_EQ(c[3].result, 0);
    }
    weft_chan_destroy(stale_ch);
    return NULL;
}
TEST(stale_select_nodes_are_passed_by_notify_release_and_done)
{
    run_main_one_worker(NULL, main_sync_stale, NULL);
}

/* Tasks on both workers and a plain thread take a semaphore's units in
 * selects that also wait on an event, which a ticker task notifies now
 * and then, and give each unit back: no more holders than units at any
 * time, and every unit back at the end. A claim racing the other case's
 * claim, or a deadline, must neither lose a unit nor hand out one twice. */
#ifdef TEST_TSAN
#define SEM_ROUNDS 500
#else
#define SEM_ROUNDS 5000
#endif
#define SEM_UNITS  2
#define SEM_TAKERS 5 /* the last one is the plain thread */
static _Atomic int sem_holders, sem_max_holders;
static _Atomic uint64_t sem_took, sem_notified;
static _Atomic bool sem_stop;

static void sem_round(bool task)
{
    weft_select_case c[] = {acquire_case(&wake_sem), event_case(&wake_event)};
    int k = task ? weft_select(c, 2) : weft_select_blocking(c, 2);
    ASSERT(k == 0 || k == 1);
    ASSERT_OK(c[k].result);
    if (k == 1) {
        atomic_fetch_add(&sem_notified, 1);
        return;
    }
    int h = atomic_fetch_add(&sem_holders, 1) + 1;
    int m = atomic_load(&sem_max_holders);
    while (h > m && !atomic_compare_exchange_weak(&sem_max_holders, &m, h))
        ;
    if (task)
        weft_yield();
    atomic_fetch_sub(&sem_holders, 1);
    atomic_fetch_add(&sem_took, 1);
    weft_sem_release(&wake_sem);
}

static void *sem_taker_task(void *arg)
{
    (void)arg;
    for (int i = 0; i < SEM_ROUNDS; i++)
        sem_round(true);
    return NULL;
}

static void *sem_taker_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < SEM_ROUNDS; i++)
        sem_round(false);
    return NULL;
}

static void *sem_notifier(void *arg)
{
    (void)arg;
    while (!atomic_load(&sem_stop)) {
        weft_event_notify_one(&wake_event);
        weft_yield();
    }
    return NULL;
}

static void *main_sem_stress(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_sem_init(&wake_sem, SEM_UNITS));
    ASSERT_OK(weft_event_init(&wake_event));
    weft_task *takers[SEM_TAKERS - 1], *notifier;
    ASSERT_OK(weft_spawn(&notifier, sem_notifier, NULL));
    for (int i = 0; i < SEM_TAKERS - 1; i++)
        ASSERT_OK(weft_spawn(&takers[i], sem_taker_task, NULL));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, sem_taker_thread, NULL));
    for (int i = 0; i < SEM_TAKERS - 1; i++)
        ASSERT_OK(weft_join(takers[i], NULL));
    while (pthread_tryjoin_np(th, NULL) != 0)
        ASSERT_OK(weft_sleep_ns(MS));
    atomic_store(&sem_stop, true);
    ASSERT_OK(weft_join(notifier, NULL));
    ASSERT_EQ(atomic_load(&sem_took) + atomic_load(&sem_notified),
              (uint64_t)SEM_TAKERS * SEM_ROUNDS);
    ASSERT_GT(atomic_load(&sem_took), 0u);
    ASSERT_LE(atomic_load(&sem_max_holders), SEM_UNITS);
    ASSERT_EQ(weft_sem_available(&wake_sem), (unsigned)SEM_UNITS);
    ASSERT(wake_sem._waiters._first == NULL && wake_event._waiters._first == NULL);
    return NULL;
}
TEST(semaphore_units_taken_in_selects_on_tasks_and_threads_all_come_back)
{
    run_main(NULL, main_sem_stress, NULL);
}

/* ---- POLL cases -------------------------------------------------------------------- */

static weft_select_case poll_case(int fd, unsigned events)
{
    return (weft_select_case){.op = WEFT_SELECT_POLL, .fd = fd, .events = events, .result = 99};
}

/* The POLL_ADDs a runtime issued that have not completed: a select must
 * leave none in flight when it returns. */
static uint64_t polls_in_flight(void)
{
    weft_op_counts c[IORING_OP_POLL_ADD + 1];
    ASSERT_GT(weft_op_counts_by_opcode(c, IORING_OP_POLL_ADD + 1), IORING_OP_POLL_ADD);
    return c[IORING_OP_POLL_ADD].issued - c[IORING_OP_POLL_ADD].completed;
}

struct poll_pair {
    int fds[2]; /* a connected pair: what goes into [1] comes out of [0] */
    weft_chan *ch;
};

static void poll_pair_open(struct poll_pair *p)
{
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->fds));
    ASSERT_OK(weft_chan_create(&p->ch, sizeof(int), 1));
}

static void poll_pair_close(struct poll_pair *p)
{
    close(p->fds[0]);
    close(p->fds[1]);
    weft_chan_destroy(p->ch);
}

static void *write_later(void *arg)
{
    struct poll_pair *p = arg;
    ASSERT_OK(weft_sleep_ns(2 * MS));
    ASSERT_EQ(write(p->fds[1], "x", 1), 1);
    return NULL;
}

static void *send_ch_later(void *arg)
{
    struct poll_pair *p = arg;
    ASSERT_OK(weft_sleep_ns(2 * MS));
    int v = 7;
    ASSERT_OK(weft_chan_send(p->ch, &v));
    return NULL;
}

/* A descriptor that is ready goes at once (in a select and in a try, from
 * a task or a plain thread), with its revents; one that is not ready
 * waits, on both workers: its data, or the channel beside it, wins, and
 * the other case does nothing; the poll is gone when the select returns. */
static void *main_poll(void *arg)
{
    (void)arg;
    struct poll_pair p;
    poll_pair_open(&p);
    int got = 0;
    weft_select_case c[] = {recv_case(p.ch, &got), poll_case(p.fds[0], POLLIN)};
    ASSERT_EQ(weft_try_select(c, 2), -EAGAIN);
    /* Writable at once. */
    weft_select_case w = poll_case(p.fds[1], POLLOUT);
    ASSERT_EQ(weft_select(&w, 1), 0);
    ASSERT_EQ(w.result, POLLOUT);

    /* Data comes while the select waits. */
    for (int round = 0; round < 20; round++) {
        weft_task *t;
        ASSERT_OK(weft_spawn(&t, write_later, &p));
        c[1].result = 99;
        ASSERT_EQ(weft_select(c, 2), 1);
        ASSERT(c[1].result & POLLIN);
        ASSERT_EQ(c[0].result, 99); /* the channel's case did nothing */
        ASSERT_OK(weft_join(t, NULL));
        ASSERT_EQ(polls_in_flight(), 0u);
        /* Ready now: a try says so too, and the data is still there. */
        ASSERT_EQ(weft_try_select(c, 2), 1);
        char b;
        ASSERT_EQ(read(p.fds[0], &b, 1), 1);
    }
    /* The channel wins while the socket stays quiet: its poll is
     * cancelled before the select returns. */
    for (int round = 0; round < 20; round++) {
        weft_task *t;
        ASSERT_OK(weft_spawn(&t, send_ch_later, &p));
        c[1].result = 99;
        ASSERT_EQ(weft_select(c, 2), 0);
        ASSERT_EQ(got, 7);
        ASSERT_EQ(c[1].result, 99);
        ASSERT_OK(weft_join(t, NULL));
        ASSERT_EQ(polls_in_flight(), 0u);
    }
    /* A peer that hangs up: POLLHUP comes though not asked for. */
    close(p.fds[1]);
    ASSERT_EQ(weft_select(c, 2), 1);
    ASSERT(c[1].result & POLLHUP);
    close(p.fds[0]);
    weft_chan_destroy(p.ch);
    return NULL;
}
TEST(a_poll_case_goes_when_its_descriptor_is_ready)
{
    run_main(NULL, main_poll, NULL);
}

/* One worker, in this order: the channel's send claims the select, then
 * the socket's data completes its poll, which finds the select claimed
 * and does nothing; the data is still there for the next select. */
static void *send_and_write(void *arg)
{
    struct poll_pair *p = arg;
    int v = 3;
    ASSERT_OK(weft_chan_send(p->ch, &v));
    ASSERT_EQ(write(p->fds[1], "y", 1), 1);
    return NULL;
}

static void *main_poll_stale(void *arg)
{
    (void)arg;
    struct poll_pair p;
    poll_pair_open(&p);
    int got = 0;
    weft_select_case c[] = {recv_case(p.ch, &got), poll_case(p.fds[0], POLLIN)};
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, send_and_write, &p));
    ASSERT_EQ(weft_select(c, 2), 0);
    ASSERT_EQ(got, 3);
    ASSERT_EQ(c[1].result, 99);
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_EQ(polls_in_flight(), 0u);
    ASSERT_EQ(weft_select(c, 2), 1);
    ASSERT(c[1].result & POLLIN);
    poll_pair_close(&p);
    return NULL;
}
TEST(a_poll_that_completes_after_another_case_won_does_nothing)
{
    run_main_one_worker(NULL, main_poll_stale, NULL);
}

/* A deadline or a cancel ends a select waiting on a quiet descriptor: no
 * case goes, and its poll is cancelled and reaped. No SQE for the poll
 * ends it as -EAGAIN, with nothing left linked. */
static int poll_forever_result;

static void *select_poll_forever(void *arg)
{
    weft_select_case c = poll_case((int)(intptr_t)arg, POLLIN);
    poll_forever_result = weft_select(&c, 1);
    ASSERT_EQ(c.result, 99);
    return NULL;
}

static void *main_poll_interrupted(void *arg)
{
    (void)arg;
    int fds[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
    weft_chan *ch;
    ASSERT_OK(weft_chan_create(&ch, sizeof(int), 1));
    int got = 0;
    weft_select_case c[] = {recv_case(ch, &got), poll_case(fds[0], POLLIN)};
    ASSERT_OK(weft_deadline_push_in(3 * MS));
    ASSERT_EQ(weft_select(c, 2), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(c[0].result, 99);
    ASSERT_EQ(c[1].result, 99);
    ASSERT_EQ(polls_in_flight(), 0u);
    ASSERT(weft__chan_waiters(ch, false)->_first == NULL);

    weft_task *t;
    ASSERT_OK(weft_spawn(&t, select_poll_forever, (void *)(intptr_t)fds[0]));
    ASSERT_OK(weft_sleep_ns(2 * MS));
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(poll_forever_result, -ECANCELED);
    ASSERT_EQ(polls_in_flight(), 0u);

    /* The SQEs: the select's poll is the first this task asks for. */
    weft__fault_arm(WEFT_FAULT_SQE, 1);
    ASSERT_EQ(weft_select(c, 2), -EAGAIN);
    weft__fault_arm(WEFT_FAULT_SQE, 0);
    ASSERT(weft__chan_waiters(ch, false)->_first == NULL);
    int v = 5;
    ASSERT_OK(weft_chan_try_send(ch, &v)); /* not taken by a node left behind */
    ASSERT_EQ(weft_chan_len(ch), 1);
    ASSERT_EQ(weft_select(c, 2), 0);
    ASSERT_EQ(got, 5);
    close(fds[0]);
    close(fds[1]);
    weft_chan_destroy(ch);
    return NULL;
}
TEST(an_interrupted_poll_case_leaves_no_poll_in_flight)
{
    run_main_one_worker(NULL, main_poll_interrupted, NULL);
}

/* A cancel racing the poll's completion (data written from a plain
 * thread at varying moments): either the poll's claim stands or the
 * cancel does, and no poll is left in flight either way. */
struct poll_race {
    int fds[2];
    weft_chan *ch;
    int result;
};

static void *select_once(void *arg)
{
    struct poll_race *p = arg;
    int got;
    weft_select_case c[] = {recv_case(p->ch, &got), poll_case(p->fds[0], POLLIN)};
    p->result = weft_select(c, 2);
    if (p->result == 1)
        ASSERT(c[1].result & POLLIN);
    else
        ASSERT_EQ(p->result, -ECANCELED);
    return NULL;
}

static void *write_one(void *arg)
{
    struct poll_race *p = arg;
    ASSERT_EQ(write(p->fds[1], "c", 1), 1);
    return NULL;
}

static void *main_poll_cancel_race(void *arg)
{
    (void)arg;
    struct poll_race p;
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, p.fds));
    ASSERT_OK(weft_chan_create(&p.ch, sizeof(int), 1));
    for (int i = 0; i < 200; i++) {
        weft_task *t;
        p.result = 42; /* stays so if the cancel comes before the task's first run */
        ASSERT_OK(weft_spawn(&t, select_once, &p));
        for (int y = 0; y < i % 5; y++)
            ASSERT_OK(weft_yield());
        pthread_t th;
        ASSERT_OK(pthread_create(&th, NULL, write_one, &p));
        if (i & 1)
            usleep((useconds_t)(i % 50));
        ASSERT_OK(weft_cancel(t));
        (void)weft_join(t, NULL);
        ASSERT_OK(pthread_join(th, NULL));
        ASSERT(p.result == 1 || p.result == -ECANCELED || p.result == 42);
        ASSERT_EQ(polls_in_flight(), 0u);
        char b[64];
        while (read(p.fds[0], b, sizeof b) > 0)
            ;
    }
    close(p.fds[0]);
    close(p.fds[1]);
    weft_chan_destroy(p.ch);
    return NULL;
}
TEST(a_cancel_racing_a_polls_completion_leaves_nothing_in_flight)
{
    run_main(NULL, main_poll_cancel_race, NULL);
}

/* The second of two polls gets no SQE: the first is cancelled and reaped,
 * nothing is linked. Then the most POLL cases, in a select of 12 cases
 * (their nodes allocated), wait, time out, and each goes in turn. */
static void *main_many_polls(void *arg)
{
    (void)arg;
    int a[2], b[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a));
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b));
    weft_chan *ch;
    ASSERT_OK(weft_chan_create(&ch, sizeof(int), 1));
    int got = 0;
    weft_select_case c[] = {recv_case(ch, &got), poll_case(a[0], POLLIN), poll_case(b[0], POLLIN)};
    weft__fault_arm(WEFT_FAULT_SQE, 2);
    ASSERT_EQ(weft_select(c, 3), -EAGAIN);
    weft__fault_arm(WEFT_FAULT_SQE, 0);
    ASSERT_EQ(polls_in_flight(), 0u);
    ASSERT(weft__chan_waiters(ch, false)->_first == NULL);

    int p[WEFT_SELECT_POLL_MAX][2];
    weft_select_case many[WEFT_SELECT_POLL_MAX + 4];
    weft_chan *chs[4];
    int g[4];
    for (int i = 0; i < WEFT_SELECT_POLL_MAX; i++) {
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p[i]));
        many[i] = poll_case(p[i][0], POLLIN);
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(weft_chan_create(&chs[i], sizeof(int), 1));
        many[WEFT_SELECT_POLL_MAX + i] = recv_case(chs[i], &g[i]);
    }
    for (int round = 0; round < WEFT_SELECT_POLL_MAX; round++) {
        ASSERT_OK(weft_deadline_push_in(MS));
        ASSERT_EQ(weft_select(many, WEFT_SELECT_POLL_MAX + 4), -ETIMEDOUT);
        ASSERT_OK(weft_deadline_pop());
        ASSERT_EQ(polls_in_flight(), 0u);
        ASSERT_EQ(write(p[round][1], "q", 1), 1);
        ASSERT_EQ(weft_select(many, WEFT_SELECT_POLL_MAX + 4), round);
        ASSERT(many[round].result & POLLIN);
        char x;
        ASSERT_EQ(read(p[round][0], &x, 1), 1);
        ASSERT_EQ(polls_in_flight(), 0u);
    }
    for (int i = 0; i < WEFT_SELECT_POLL_MAX; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
    for (int i = 0; i < 4; i++)
        weft_chan_destroy(chs[i]);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    weft_chan_destroy(ch);
    return NULL;
}
TEST(a_poll_without_an_sqe_and_the_most_poll_cases)
{
    run_main_one_worker(NULL, main_many_polls, NULL);
}

/* A task of an embedded executor waits on a POLL case, and the host's
 * loop, woken by the executor's descriptor, runs it to its end. */
static int executor_fds[2];

static void *executor_poll(void *arg)
{
    (void)arg;
    weft_select_case c = poll_case(executor_fds[0], POLLIN);
    ASSERT_EQ(weft_select(&c, 1), 0);
    ASSERT(c.result & POLLIN);
    return NULL;
}

TEST(a_poll_case_in_an_executors_task)
{
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, executor_fds));
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    weft_task *t;
    ASSERT_OK(weft_executor_spawn(ex, &t, NULL, executor_poll, NULL));
    ASSERT_GE(weft_executor_run(ex, 0), 0); /* it runs and waits */
    ASSERT_EQ(weft_executor_tasks(ex), 1u);
    ASSERT_EQ(write(executor_fds[1], "e", 1), 1);
    while (weft_executor_tasks(ex) > 0) {
        struct pollfd p = {.fd = weft_executor_fd(ex), .events = POLLIN};
        ASSERT_GE(poll(&p, 1, 1000), 0);
        ASSERT_GE(weft_executor_run(ex, 0), 0);
    }
    ASSERT_OK(weft_executor_try_join(ex, t, NULL));
    weft_executor_destroy(ex);
    close(executor_fds[0]);
    close(executor_fds[1]);
}

/* ---- bad input and failed allocations ---------------------------------------------- */

static void *main_misuse(void *arg)
{
    (void)arg;
    weft_chan *a;
    weft_broadcast *b;
    weft_broadcast_sub *sub;
    ASSERT_OK(weft_chan_create(&a, sizeof(int), 1));
    ASSERT_OK(weft_broadcast_create(&b, sizeof(int), 1));
    ASSERT_OK(weft_broadcast_subscribe(b, &sub));
    int v = 0;
    weft_select_case ok = recv_case(a, &v);
    ASSERT_EQ(weft_select(NULL, 1), -EINVAL);
    ASSERT_EQ(weft_select(&ok, 0), -EINVAL);
    weft_select_case off = ok;
    off.op = 0;
    ASSERT_EQ(weft_select(&off, 1), -EINVAL); /* no case on */
    weft_select_case bad = ok;
    bad.op = 42;
    ASSERT_EQ(weft_select(&bad, 1), -EINVAL);
    bad = ok;
    bad.chan = NULL;
    ASSERT_EQ(weft_select(&bad, 1), -EINVAL);
    bad = ok;
    bad.elem = NULL;
    ASSERT_EQ(weft_try_select(&bad, 1), -EINVAL);
    bad = bcast_case(NULL, &v);
    ASSERT_EQ(weft_select(&bad, 1), -EINVAL);
    bad = event_case(NULL);
    ASSERT_EQ(weft_try_select(&bad, 1), -EINVAL);
    bad = acquire_case(NULL);
    ASSERT_EQ(weft_try_select(&bad, 1), -EINVAL);
    bad = waitgroup_case(NULL);
    ASSERT_EQ(weft_try_select(&bad, 1), -EINVAL);
    weft_select_case twice[] = {bcast_case(sub, &v), bcast_case(sub, &v)};
    ASSERT_EQ(weft_select(twice, 2), -EINVAL);
    weft_select_case many[WEFT_SELECT_MAX + 1];
    for (int i = 0; i <= WEFT_SELECT_MAX; i++)
        many[i] = recv_case(a, &v);
    ASSERT_EQ(weft_select(many, WEFT_SELECT_MAX + 1), -EINVAL);
    /* POLL cases: a negative or direct descriptor, no events, too many. */
    weft_select_case polls[WEFT_SELECT_POLL_MAX + 1];
    for (int i = 0; i <= WEFT_SELECT_POLL_MAX; i++)
        polls[i] = poll_case(0, POLLIN);
    ASSERT_EQ(weft_try_select(polls, WEFT_SELECT_POLL_MAX + 1), -EINVAL);
    polls[0].fd = -1;
    ASSERT_EQ(weft_try_select(polls, 1), -EINVAL);
    polls[0] = poll_case((int)WEFT_DIRECT_BIT | 3, POLLIN);
    ASSERT_EQ(weft_try_select(polls, 1), -EINVAL);
    polls[0] = poll_case(0, 0);
    ASSERT_EQ(weft_try_select(polls, 1), -EINVAL);
    polls[0] = poll_case(0, POLLIN | (1u << 31)); /* EPOLLET: not poll(2)'s */
    ASSERT_EQ(weft_try_select(polls, 1), -EINVAL);
    /* A descriptor that is not open goes at once with -EBADF. */
    polls[0] = poll_case(1000000, POLLIN);
    ASSERT_EQ(weft_select(polls, 1), 0);
    ASSERT_EQ(polls[0].result, -EBADF);

    /* A select that must wait with more than 8 cases on allocates their
     * nodes: a failed allocation is -ENOMEM with nothing done. Nothing
     * else allocates: a case that goes at once, a try, 8 cases on, or 9
     * cases of which one is on. */
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    ASSERT_EQ(weft_select(many, 9), -ENOMEM);
    ASSERT_EQ(weft_try_select(many, 9), -EAGAIN);
    ASSERT_OK(weft_chan_try_send(a, &v));
    ASSERT_GE(weft_select(many, 9), 0);
    ASSERT_OK(weft_chan_try_send(a, &v));
    ASSERT_GE(weft_try_select(many, 9), 0);
    ASSERT_EQ(weft_chan_len(a), 0);
    for (int i = 1; i < 9; i++)
        many[i].op = 0;
    struct pair one = {a, 5};
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, send_later, &one)); /* the wait needs a node */
    ASSERT_EQ(weft_select(many, 9), 0);
    ASSERT_OK(weft_join(t, NULL));
    for (int i = 1; i < 9; i++)
        many[i].op = WEFT_SELECT_RECV;
    ASSERT_OK(weft_spawn(&t, send_later, &one));
    ASSERT_GE(weft_select(many, 8), 0);
    ASSERT_OK(weft_join(t, NULL));
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_EQ(weft_chan_len(a), 0);
    /* The most cases, all on one channel, wait and go. */
    ASSERT_EQ(weft_try_select(many, WEFT_SELECT_MAX), -EAGAIN);
    struct pair p = {a, 9};
    ASSERT_OK(weft_spawn(&t, send_later, &p));
    int k = weft_select(many, WEFT_SELECT_MAX);
    ASSERT_GE(k, 0);
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_EQ(weft_chan_len(a), 0);

    weft_broadcast_unsubscribe(sub);
    ASSERT_OK(weft_broadcast_destroy(b));
    weft_chan_destroy(a);
    return NULL;
}

TEST(bad_input_gets_an_error)
{
    /* Outside a task: select is refused, try and blocking work. */
    weft_chan *a;
    ASSERT_OK(weft_chan_create(&a, sizeof(int), 1));
    int v = 4, got = 0;
    weft_select_case c = recv_case(a, &got);
    ASSERT_EQ(weft_select(&c, 1), -EPERM);
    ASSERT_EQ(weft_try_select(&c, 1), -EAGAIN);
    ASSERT_OK(weft_chan_try_send(a, &v));
    ASSERT_EQ(weft_select_blocking(&c, 1), 0);
    ASSERT_EQ(got, 4);
    weft_taskset *set;
    ASSERT_OK(weft_taskset_create(&set));
    weft_select_case j = {.op = WEFT_SELECT_JOIN, .set = set};
    ASSERT_EQ(weft_try_select(&j, 1), -EPERM); /* a join needs a task */
    ASSERT_EQ(weft_select_blocking(&j, 1), -EPERM);
    /* A POLL case's look works anywhere; its wait needs a task's ring. */
    int fds[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
    weft_select_case pc = poll_case(fds[0], POLLIN);
    ASSERT_EQ(weft_try_select(&pc, 1), -EAGAIN);
    ASSERT_EQ(weft_select_blocking(&pc, 1), -EPERM);
    ASSERT_EQ(write(fds[1], "z", 1), 1);
    ASSERT_EQ(weft_try_select(&pc, 1), 0);
    ASSERT_EQ(pc.result, POLLIN);
    close(fds[0]);
    close(fds[1]);
    ASSERT_OK(weft_taskset_destroy(set));
    weft_chan_destroy(a);
    run_main(NULL, main_misuse, NULL);
}

TEST_MAIN(CASE(a_case_that_can_go_goes_at_once), CASE(ready_cases_take_turns),
          CASE(the_first_case_that_can_go_wins_and_the_others_do_nothing),
          CASE(a_select_that_sends_meets_a_select_that_waits),
          CASE(a_reply_channel_freed_by_its_sender_after_the_send),
          CASE(a_closed_channels_case_goes_with_epipe),
          CASE(a_join_case_joins_the_next_member_to_end),
          CASE(a_select_with_a_join_case_is_one_of_the_sets_joiners),
          CASE(a_broadcast_case_reads_what_was_sent_and_counts_what_it_missed),
          CASE(an_interrupted_select_does_nothing_and_leaves_nothing_linked),
          CASE(a_claimed_selects_other_cases_are_passed_by),
          CASE(a_poll_case_goes_when_its_descriptor_is_ready),
          CASE(a_poll_that_completes_after_another_case_won_does_nothing),
          CASE(an_interrupted_poll_case_leaves_no_poll_in_flight),
          CASE(a_cancel_racing_a_polls_completion_leaves_nothing_in_flight),
          CASE(a_poll_without_an_sqe_and_the_most_poll_cases),
          CASE(a_poll_case_in_an_executors_task),
          CASE(producers_and_consumers_selecting_on_tasks_and_threads_lose_nothing),
          CASE(event_semaphore_and_wait_group_cases_go_at_once_when_they_can),
          CASE(event_semaphore_and_wait_group_cases_wait_for_their_source),
          CASE(an_interrupted_select_leaves_no_event_or_semaphore_waiter),
          CASE(stale_select_nodes_are_passed_by_notify_release_and_done),
          CASE(semaphore_units_taken_in_selects_on_tasks_and_threads_all_come_back),
          CASE(bad_input_gets_an_error))
