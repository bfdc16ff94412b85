/* Broadcast channels (weft_broadcast_*): every subscriber gets every
 * message sent after it subscribed, in order; a slow one skips what was
 * overwritten and is told how much; close drains; waits are interruptible
 * and take nothing when interrupted; sends from plain threads wake tasks
 * on any worker. */
#include <pthread.h>
#include <stdatomic.h>

#include "common/fault.h"
#include "test.h"

#define MS 1000000ull

/* ---- delivery ------------------------------------------------------------- */

#define MESSAGES 1000

static void *read_all_in_order(void *arg)
{
    weft_broadcast_sub *s = arg;
    for (int i = 0; i < MESSAGES; i++) {
        int v = -1;
        uint64_t missed = 7;
        ASSERT_OK(weft_broadcast_recv(s, &v, &missed));
        ASSERT_EQ(v, i);
        ASSERT_EQ(missed, 0);
    }
    int v;
    ASSERT_EQ(weft_broadcast_recv(s, &v, NULL), -EPIPE);
    ASSERT_EQ(weft_broadcast_recv(s, &v, NULL), -EPIPE);
    weft_broadcast_unsubscribe(s);
    return NULL;
}

static void *main_every_subscriber(void *arg)
{
    (void)arg;
    weft_broadcast *b;
    ASSERT_OK(weft_broadcast_create(&b, sizeof(int), 2 * MESSAGES));
    weft_task *t[3];
    for (int i = 0; i < 3; i++) {
        weft_broadcast_sub *s;
        ASSERT_OK(weft_broadcast_subscribe(b, &s));
        ASSERT_OK(weft_spawn(&t[i], read_all_in_order, s));
    }
    ASSERT_EQ(weft_broadcast_subscribers(b), 3);
    for (int i = 0; i < MESSAGES; i++) {
        ASSERT_EQ(weft_broadcast_send(b, &i), 3);
        if (i % 100 == 0)
            ASSERT_OK(weft_yield()); /* let receivers wait and be woken */
    }
    weft_broadcast_close(b);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    ASSERT_EQ(weft_broadcast_subscribers(b), 0);
    ASSERT_OK(weft_broadcast_destroy(b));
    return NULL;
}
TEST(every_subscriber_gets_every_message_in_order)
{
    run_main(NULL, main_every_subscriber, NULL);
}

static void *main_late_and_slow(void *arg)
{
    (void)arg;
    weft_broadcast *b;
    ASSERT_OK(weft_broadcast_create(&b, sizeof(int), 4));
    int v;
    for (v = 0; v < 5; v++)
        ASSERT_EQ(weft_broadcast_send(b, &v), 0); /* nobody listens yet */
    weft_broadcast_sub *fast, *slow;
    ASSERT_OK(weft_broadcast_subscribe(b, &fast));
    ASSERT_OK(weft_broadcast_subscribe(b, &slow));
    uint64_t missed = 7;
    ASSERT_EQ(weft_broadcast_try_recv(fast, &v, &missed), -EAGAIN); /* only what comes later */
    ASSERT_EQ(missed, 0);
    /* Ten more: fast reads each as it comes, slow reads none. */
    for (int i = 100; i < 110; i++) {
        ASSERT_EQ(weft_broadcast_send(b, &i), 2);
        ASSERT_OK(weft_broadcast_try_recv(fast, &v, &missed));
        ASSERT_EQ(v, i);
        ASSERT_EQ(missed, 0);
    }
    /* Four are kept: slow lost 106 - 100 = 6 of them, and is told. */
    ASSERT_OK(weft_broadcast_recv(slow, &v, &missed));
    ASSERT_EQ(v, 106);
    ASSERT_EQ(missed, 6);
    for (int i = 107; i < 110; i++) {
        ASSERT_OK(weft_broadcast_recv(slow, &v, &missed));
        ASSERT_EQ(v, i);
        ASSERT_EQ(missed, 0);
    }
    ASSERT_EQ(weft_broadcast_try_recv(slow, &v, NULL), -EAGAIN);
    ASSERT_EQ(weft_broadcast_destroy(b), -EBUSY); /* subscriptions remain */
    weft_broadcast_unsubscribe(fast);
    weft_broadcast_unsubscribe(slow);
    ASSERT_OK(weft_broadcast_destroy(b));
    return NULL;
}
TEST(a_late_subscriber_sees_later_messages_and_a_slow_one_skips)
{
    run_main(NULL, main_late_and_slow, NULL);
}

/* ---- close ------------------------------------------------------------------ */

static _Atomic int waiter_result = 1;

static void *wait_one(void *arg)
{
    int v;
    atomic_store(&waiter_result, weft_broadcast_recv(arg, &v, NULL));
    return NULL;
}

static void *main_close(void *arg)
{
    (void)arg;
    weft_broadcast *b;
    ASSERT_OK(weft_broadcast_create(&b, sizeof(int), 8));
    weft_broadcast_sub *s, *waiting;
    ASSERT_OK(weft_broadcast_subscribe(b, &s));
    ASSERT_OK(weft_broadcast_subscribe(b, &waiting));
    int v;
    for (v = 0; v < 3; v++)
        ASSERT_EQ(weft_broadcast_send(b, &v), 2);
    ASSERT_OK(weft_broadcast_try_recv(waiting, &v, NULL)); /* it reads all three... */
    ASSERT_OK(weft_broadcast_try_recv(waiting, &v, NULL));
    ASSERT_OK(weft_broadcast_try_recv(waiting, &v, NULL));
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, wait_one, waiting)); /* ...and waits for more */
    for (int i = 0; i < 10000 && atomic_load(&waiter_result) == 1; i++)
        ASSERT_OK(weft_sleep_ns(MS / 10));
    ASSERT_EQ(atomic_load(&waiter_result), 1); /* still waiting */
    weft_broadcast_close(b);
    weft_broadcast_close(b); /* idempotent */
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_EQ(atomic_load(&waiter_result), -EPIPE);
    ASSERT_EQ(weft_broadcast_send(b, &v), -EPIPE);
    for (int i = 0; i < 3; i++) { /* what was sent before the close still comes */
        ASSERT_OK(weft_broadcast_recv(s, &v, NULL));
        ASSERT_EQ(v, i);
    }
    ASSERT_EQ(weft_broadcast_recv(s, &v, NULL), -EPIPE);
    weft_broadcast_sub *late;
    ASSERT_OK(weft_broadcast_subscribe(b, &late));
    ASSERT_EQ(weft_broadcast_try_recv(late, &v, NULL), -EPIPE);
    weft_broadcast_unsubscribe(late);
    weft_broadcast_unsubscribe(s);
    weft_broadcast_unsubscribe(waiting);
    ASSERT_OK(weft_broadcast_destroy(b));
    return NULL;
}
TEST(close_delivers_what_was_sent_then_ends)
{
    run_main(NULL, main_close, NULL);
}

/* ---- interruption ------------------------------------------------------------ */

static void *main_interrupted(void *arg)
{
    (void)arg;
    weft_broadcast *b;
    ASSERT_OK(weft_broadcast_create(&b, sizeof(int), 8));
    weft_broadcast_sub *s;
    ASSERT_OK(weft_broadcast_subscribe(b, &s));
    int v = 5;
    ASSERT_OK(weft_deadline_push_in(2 * MS));
    ASSERT_EQ(weft_broadcast_recv(s, &v, NULL), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(v, 5); /* untouched */
    /* A cancelled waiter takes nothing: the message stays for the next. */
    atomic_store(&waiter_result, 1);
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, wait_one, s));
    ASSERT_OK(weft_sleep_ns(MS));
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    int r = atomic_load(&waiter_result);
    ASSERT(r == -ECANCELED || r == 1); /* cancelled waiting, or before it ran */
    v = 42;
    ASSERT_EQ(weft_broadcast_send(b, &v), 1);
    v = 0;
    ASSERT_OK(weft_broadcast_try_recv(s, &v, NULL));
    ASSERT_EQ(v, 42);
    weft_broadcast_unsubscribe(s);
    ASSERT_OK(weft_broadcast_destroy(b));
    return NULL;
}
TEST(an_interrupted_recv_takes_nothing)
{
    run_main(NULL, main_interrupted, NULL);
}

/* ---- many threads ------------------------------------------------------------ */

/* Two plain threads send, four tasks receive from a small channel. Each
 * receiver sees each sender's values in increasing order, and what it
 * received plus what it was told it missed is everything sent. */
#ifdef TEST_TSAN
#define PER_SENDER 2000
#else
#define PER_SENDER 20000
#endif
#define RECEIVERS 4

static weft_broadcast *stress_b;

static void *sender_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < PER_SENDER; i++) {
        int v = id * PER_SENDER + i;
        ASSERT_GE(weft_broadcast_send(stress_b, &v), 0);
        if (i % 64 == 0)
            sched_yield();
    }
    return NULL;
}

static void *stress_receiver(void *arg)
{
    weft_broadcast_sub *s = arg;
    int last[2] = {-1, -1};
    uint64_t got = 0, lost = 0;
    for (;;) {
        int v;
        uint64_t missed;
        int r = weft_broadcast_recv(s, &v, &missed);
        if (r == -EPIPE)
            break;
        ASSERT_OK(r);
        int id = v / PER_SENDER, i = v % PER_SENDER;
        ASSERT(id == 0 || id == 1);
        ASSERT_GT(i, last[id]);
        last[id] = i;
        got++;
        lost += missed;
    }
    ASSERT_EQ(got + lost, 2 * PER_SENDER);
    weft_broadcast_unsubscribe(s);
    return NULL;
}

static void *main_stress(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_broadcast_create(&stress_b, sizeof(int), 64));
    weft_task *t[RECEIVERS];
    for (int i = 0; i < RECEIVERS; i++) {
        weft_broadcast_sub *s;
        ASSERT_OK(weft_broadcast_subscribe(stress_b, &s));
        ASSERT_OK(weft_spawn(&t[i], stress_receiver, s));
    }
    pthread_t th[2];
    for (intptr_t i = 0; i < 2; i++)
        ASSERT_OK(pthread_create(&th[i], NULL, sender_thread, (void *)i));
    /* A task must not hold its worker in pthread_join: it polls. */
    for (int i = 0; i < 2; i++)
        while (pthread_tryjoin_np(th[i], NULL) != 0)
            ASSERT_OK(weft_sleep_ns(MS));
    weft_broadcast_close(stress_b);
    for (int i = 0; i < RECEIVERS; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    ASSERT_OK(weft_broadcast_destroy(stress_b));
    return NULL;
}
TEST(senders_on_threads_and_receivers_on_workers_agree)
{
    run_main(NULL, main_stress, NULL);
}

/* ---- bad input and failed allocations ----------------------------------------- */

static void *main_misuse(void *arg)
{
    (void)arg;
    weft_broadcast *b = (weft_broadcast *)1;
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    ASSERT_EQ(weft_broadcast_create(&b, sizeof(int), 4), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT(b == NULL);
    ASSERT_OK(weft_broadcast_create(&b, sizeof(int), 4));
    weft_broadcast_sub *s = (weft_broadcast_sub *)1;
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    ASSERT_EQ(weft_broadcast_subscribe(b, &s), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT(s == NULL);
    ASSERT_EQ(weft_broadcast_subscribers(b), 0);
    ASSERT_EQ(weft_broadcast_subscribe(NULL, &s), -EINVAL);
    ASSERT_EQ(weft_broadcast_subscribe(b, NULL), -EINVAL);
    int v = 0;
    ASSERT_EQ(weft_broadcast_send(NULL, &v), -EINVAL);
    ASSERT_EQ(weft_broadcast_send(b, NULL), -EINVAL);
    ASSERT_EQ(weft_broadcast_recv(NULL, &v, NULL), -EINVAL);
    ASSERT_EQ(weft_broadcast_try_recv(NULL, &v, NULL), -EINVAL);
    ASSERT_OK(weft_broadcast_subscribe(b, &s));
    ASSERT_EQ(weft_broadcast_recv(s, NULL, NULL), -EINVAL);
    weft_broadcast_unsubscribe(NULL);
    weft_broadcast_close(NULL);
    ASSERT_OK(weft_broadcast_destroy(NULL));
    ASSERT_EQ(weft_broadcast_subscribers(NULL), 0);
    weft_broadcast_unsubscribe(s);
    ASSERT_OK(weft_broadcast_destroy(b));
    return NULL;
}

TEST(bad_input_gets_an_error)
{
    weft_broadcast *b;
    ASSERT_EQ(weft_broadcast_create(NULL, 4, 4), -EINVAL);
    ASSERT_EQ(weft_broadcast_create(&b, 0, 4), -EINVAL);
    ASSERT(b == NULL);
    ASSERT_EQ(weft_broadcast_create(&b, 4, 0), -EINVAL);
    ASSERT_EQ(weft_broadcast_create(&b, SIZE_MAX / 2, 4), -EINVAL);
    /* Outside a task: recv is refused, the rest works. */
    ASSERT_OK(weft_broadcast_create(&b, sizeof(int), 2));
    weft_broadcast_sub *s;
    ASSERT_OK(weft_broadcast_subscribe(b, &s));
    int v = 3;
    ASSERT_EQ(weft_broadcast_send(b, &v), 1);
    ASSERT_EQ(weft_broadcast_recv(s, &v, NULL), -EPERM);
    v = 0;
    ASSERT_OK(weft_broadcast_try_recv(s, &v, NULL));
    ASSERT_EQ(v, 3);
    weft_broadcast_unsubscribe(s);
    ASSERT_OK(weft_broadcast_destroy(b));
    run_main(NULL, main_misuse, NULL);
}

TEST_MAIN(CASE(every_subscriber_gets_every_message_in_order),
          CASE(a_late_subscriber_sees_later_messages_and_a_slow_one_skips),
          CASE(close_delivers_what_was_sent_then_ends), CASE(an_interrupted_recv_takes_nothing),
          CASE(senders_on_threads_and_receivers_on_workers_agree), CASE(bad_input_gets_an_error))
