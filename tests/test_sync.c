/* Sync primitives: channel, mutex, semaphore, event, wait group,
 * watermark. Semantics on one worker, cancellation and deadlines with
 * "nothing lost" checks, foreign threads, and torture runs on one worker
 * and (when the runtime supports it) two. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "common/fault.h"
#include "test.h"

/* Runs fn on one worker, then on two. */
static void run_one_and_two(weft_fn fn, void *arg)
{
    weft_config one = {.workers = 1};
    run_main(&one, fn, arg);
    weft_config two = {.workers = 2};
    run_main(&two, fn, arg);
}

/* ---- misuse ---------------------------------------------------------------- */

TEST(outside_a_task_and_bad_input)
{
    weft_chan *c = (weft_chan *)1;
    ASSERT_EQ(weft_chan_create(NULL, 4, 1), -EINVAL);
    ASSERT_EQ(weft_chan_create(&c, 0, 1), -EINVAL);
    ASSERT(c == NULL);
    ASSERT_EQ(weft_chan_create(&c, SIZE_MAX / 2, 4), -EINVAL);
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 2));
    int v = 1;
    ASSERT_EQ(weft_chan_send(c, &v), -EPERM);
    ASSERT_EQ(weft_chan_recv(c, &v), -EPERM);
    ASSERT_EQ(weft_chan_send(NULL, &v), -EINVAL);
    ASSERT_EQ(weft_chan_send(c, NULL), -EINVAL);
    ASSERT_EQ(weft_chan_recv(NULL, &v), -EINVAL);
    ASSERT_EQ(weft_chan_recv(c, NULL), -EINVAL);
    ASSERT_EQ(weft_chan_try_send(NULL, &v), -EINVAL);
    ASSERT_EQ(weft_chan_try_recv(c, NULL), -EINVAL);
    ASSERT_EQ(weft_chan_send_blocking(NULL, &v), -EINVAL);
    ASSERT_EQ(weft_chan_recv_blocking(c, NULL), -EINVAL);
    /* The calls that never wait work on any thread. */
    ASSERT_OK(weft_chan_try_send(c, &v));
    ASSERT_EQ(weft_chan_len(c), 1);
    v = 0;
    ASSERT_OK(weft_chan_try_recv(c, &v));
    ASSERT_EQ(v, 1);
    ASSERT_EQ(weft_chan_try_recv(c, &v), -EAGAIN);
    ASSERT_EQ(weft_chan_len(NULL), 0);
    ASSERT_EQ(weft_chan_capacity(NULL), 0);
    ASSERT_EQ(weft_chan_capacity(c), 2);
    weft_chan_close(NULL);
    weft_chan_destroy(NULL);
    weft_chan_destroy(c);

    weft_mutex m = WEFT_MUTEX_INIT;
    ASSERT_EQ(weft_mutex_lock(&m), -EPERM);
    ASSERT_EQ(weft_mutex_trylock(&m), -EPERM);
    ASSERT_EQ(weft_mutex_lock(NULL), -EINVAL);
    ASSERT_EQ(weft_mutex_trylock(NULL), -EINVAL);
    ASSERT_EQ(weft_mutex_init(NULL), -EINVAL);
    ASSERT_OK(weft_mutex_init(&m));
    weft_mutex_unlock(NULL);

    weft_sem s = WEFT_SEM_INIT(1);
    ASSERT_EQ(weft_sem_acquire(&s), -EPERM);
    ASSERT_EQ(weft_sem_acquire(NULL), -EINVAL);
    ASSERT_EQ(weft_sem_try_acquire(NULL), -EINVAL);
    ASSERT_EQ(weft_sem_init(NULL, 1), -EINVAL);
    ASSERT_OK(weft_sem_try_acquire(&s));
    ASSERT_EQ(weft_sem_try_acquire(&s), -EAGAIN);
    weft_sem_release(&s);
    ASSERT_OK(weft_sem_try_acquire(&s));
    ASSERT_OK(weft_sem_init(&s, 2));
    ASSERT_EQ(weft_sem_available(&s), 2);
    ASSERT_OK(weft_sem_try_acquire(&s));
    ASSERT_EQ(weft_sem_available(&s), 1);
    ASSERT_OK(weft_sem_try_acquire(&s));
    ASSERT_EQ(weft_sem_try_acquire(&s), -EAGAIN);
    ASSERT_EQ(weft_sem_available(&s), 0);
    weft_sem_release(&s);
    ASSERT_EQ(weft_sem_available(&s), 1);
    ASSERT_EQ(weft_sem_available(NULL), 0);
    weft_sem_release(NULL);

    weft_event e = WEFT_EVENT_INIT;
    ASSERT_EQ(weft_event_wait(&e), -EPERM);
    ASSERT_EQ(weft_event_wait_locked(&e, &m), -EPERM);
    ASSERT_EQ(weft_event_wait(NULL), -EINVAL);
    ASSERT_EQ(weft_event_wait_locked(NULL, &m), -EINVAL);
    ASSERT_EQ(weft_event_wait_locked(&e, NULL), -EINVAL);
    ASSERT_EQ(weft_event_init(NULL), -EINVAL);
    ASSERT_OK(weft_event_init(&e));
    weft_event_notify_one(&e);
    weft_event_notify_all(&e);
    weft_event_notify_one(NULL);
    weft_event_notify_all(NULL);

    weft_waitgroup wg = WEFT_WAITGROUP_INIT;
    ASSERT_EQ(weft_waitgroup_wait(&wg), -EPERM);
    ASSERT_EQ(weft_waitgroup_wait(NULL), -EINVAL);
    ASSERT_EQ(weft_waitgroup_init(NULL), -EINVAL);
    ASSERT_OK(weft_waitgroup_init(&wg));
    weft_waitgroup_add(&wg, 2);
    weft_waitgroup_done(&wg);
    weft_waitgroup_done(&wg);
    weft_waitgroup_add(NULL, 1);
    weft_waitgroup_done(NULL);

    weft_watermark wm = WEFT_WATERMARK_INIT(3);
    ASSERT_EQ(weft_watermark_wait(&wm, 1), -EPERM);
    ASSERT_EQ(weft_watermark_wait(NULL, 1), -EINVAL);
    ASSERT_EQ(weft_watermark_init(NULL, 0), -EINVAL);
    ASSERT_EQ(weft_watermark_level(NULL), 0);
    ASSERT_EQ(weft_watermark_level(&wm), 3);
    weft_watermark_advance(&wm, 7);
    ASSERT_EQ(weft_watermark_level(&wm), 7);
    weft_watermark_fail(&wm, -EIO);
    ASSERT_EQ(wm._error, -EIO);
    ASSERT_OK(weft_watermark_init(&wm, 1));
    ASSERT_EQ(weft_watermark_level(&wm), 1);
    ASSERT_EQ(wm._error, 0); /* init clears the failure */
    weft_watermark_advance(NULL, 1);
    weft_watermark_fail(NULL, -EIO);
}

TEST(chan_create_out_of_memory)
{
    weft_chan *c = (weft_chan *)1;
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    ASSERT_EQ(weft_chan_create(&c, 8, 8), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT(c == NULL);
}

/* ---- channel semantics ----------------------------------------------------- */

typedef struct chan_party {
    weft_chan *c;
    int id;
    int value; /* to send, or received */
    int rc;
    bool done;
} chan_party;

static int order_log[64];
static int norder;

static void *chan_receiver(void *arg)
{
    chan_party *p = arg;
    p->rc = weft_chan_recv(p->c, &p->value);
    order_log[norder++] = p->id;
    p->done = true;
    return NULL;
}

static void *chan_sender(void *arg)
{
    chan_party *p = arg;
    p->rc = weft_chan_send(p->c, &p->value);
    order_log[norder++] = p->id;
    p->done = true;
    return NULL;
}

static void *main_chan_buffered(void *arg)
{
    weft_chan *c;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 3));
    ASSERT_EQ(weft_chan_capacity(c), 3);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_chan_try_send(c, &i));
    int v = 99;
    ASSERT_EQ(weft_chan_try_send(c, &v), -EAGAIN);
    ASSERT_EQ(weft_chan_len(c), 3);
    ASSERT_OK(weft_chan_recv(c, &v));
    ASSERT_EQ(v, 0);
    v = 10;
    ASSERT_OK(weft_chan_send(c, &v));
    int want[] = {1, 2, 10};
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(weft_chan_recv(c, &v));
        ASSERT_EQ(v, want[i]);
    }
    ASSERT_EQ(weft_chan_try_recv(c, &v), -EAGAIN);
    /* Many laps around the ring keep the order. */
    int next_in = 0, next_out = 0;
    for (int lap = 0; lap < 100; lap++) {
        for (int k = 0; k < 1 + lap % 3; k++)
            ASSERT_OK(weft_chan_send(c, &(int){next_in++}));
        while (weft_chan_len(c)) {
            ASSERT_OK(weft_chan_recv(c, &v));
            ASSERT_EQ(v, next_out++);
        }
    }
    ASSERT_EQ(next_in, next_out);
    weft_chan_destroy(c);

    /* Elements are copied by value, whatever their size. */
    struct big {
        char bytes[100];
    } in, out;
    ASSERT_OK(weft_chan_create(&c, sizeof in, 2));
    for (int i = 0; i < 100; i++)
        in.bytes[i] = (char)i;
    ASSERT_OK(weft_chan_send(c, &in));
    memset(&in, 0, sizeof in);
    ASSERT_OK(weft_chan_recv(c, &out));
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(out.bytes[i], i);
    weft_chan_destroy(c);
    return NULL;
}
TEST(chan_buffered_fifo)
{
    run_main_one_worker(NULL, main_chan_buffered, NULL);
}

static void *main_chan_waiters_fifo(void *arg)
{
    size_t cap = (size_t)(uintptr_t)arg;
    weft_chan *c;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), cap));
    /* Receivers are served in the order they started waiting. */
    chan_party rx[4];
    weft_task *t[4];
    norder = 0;
    for (int i = 0; i < 4; i++) {
        rx[i] = (chan_party){.c = c, .id = i};
        ASSERT_OK(weft_spawn(&t[i], chan_receiver, &rx[i]));
    }
    settle();
    for (int i = 0; i < 4; i++) {
        ASSERT(!rx[i].done);
        ASSERT_OK(weft_chan_send(c, &(int){100 + i}));
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(weft_join(t[i], NULL));
        ASSERT_OK(rx[i].rc);
        ASSERT_EQ(rx[i].value, 100 + i);
        ASSERT_EQ(order_log[i], i);
    }
    ASSERT_EQ(weft_chan_len(c), 0);

    /* Senders too: fill the buffer, queue senders, drain. */
    for (size_t i = 0; i < cap; i++)
        ASSERT_OK(weft_chan_send(c, &(int){(int)i}));
    chan_party tx[4];
    norder = 0;
    for (int i = 0; i < 4; i++) {
        tx[i] = (chan_party){.c = c, .id = i, .value = (int)cap + i};
        ASSERT_OK(weft_spawn(&t[i], chan_sender, &tx[i]));
    }
    settle();
    for (int i = 0; i < 4; i++)
        ASSERT(!tx[i].done);
    for (int i = 0; i < (int)cap + 4; i++) {
        int v;
        ASSERT_OK(weft_chan_recv(c, &v));
        ASSERT_EQ(v, i);
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(weft_join(t[i], NULL));
        ASSERT_OK(tx[i].rc);
    }
    settle();
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(order_log[i], i);
    weft_chan_destroy(c);
    return NULL;
}
TEST(chan_waiters_are_served_fifo)
{
    run_main_one_worker(NULL, main_chan_waiters_fifo, (void *)(uintptr_t)2);
    run_main_one_worker(NULL, main_chan_waiters_fifo, (void *)(uintptr_t)0);
}

static void *main_chan_rendezvous(void *arg)
{
    weft_chan *c;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 0));
    int v = 1;
    ASSERT_EQ(weft_chan_try_send(c, &v), -EAGAIN);
    ASSERT_EQ(weft_chan_try_recv(c, &v), -EAGAIN);

    /* A send completes only when a receiver takes the element. */
    chan_party tx = {.c = c, .value = 7};
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, chan_sender, &tx));
    settle();
    ASSERT(!tx.done);
    ASSERT_EQ(weft_chan_len(c), 0);
    v = 0;
    ASSERT_OK(weft_chan_try_recv(c, &v));
    ASSERT_EQ(v, 7);
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_OK(tx.rc);

    /* try_send succeeds into a waiting receiver. */
    chan_party rx = {.c = c};
    ASSERT_OK(weft_spawn(&t, chan_receiver, &rx));
    settle();
    ASSERT_OK(weft_chan_try_send(c, &(int){8}));
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_EQ(rx.value, 8);

    /* A blocking send waits for a receiver that has not run yet. */
    rx = (chan_party){.c = c};
    ASSERT_OK(weft_spawn(&t, chan_receiver, &rx));
    ASSERT_OK(weft_chan_send(c, &(int){9}));
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_OK(rx.rc);
    ASSERT_EQ(rx.value, 9);
    /* And a blocking receive for a sender. */
    tx = (chan_party){.c = c, .value = 10};
    ASSERT_OK(weft_spawn(&t, chan_sender, &tx));
    ASSERT_OK(weft_chan_recv(c, &v));
    ASSERT_EQ(v, 10);
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_OK(tx.rc);
    weft_chan_destroy(c);
    return NULL;
}
TEST(chan_rendezvous)
{
    run_main_one_worker(NULL, main_chan_rendezvous, NULL);
}

static void *main_chan_close(void *arg)
{
    weft_chan *c;
    int v;
    /* Buffered elements drain after the close, then -EPIPE. */
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 2));
    ASSERT_OK(weft_chan_send(c, &(int){1}));
    ASSERT_OK(weft_chan_send(c, &(int){2}));
    weft_chan_close(c);
    weft_chan_close(c); /* idempotent */
    ASSERT_EQ(weft_chan_send(c, &(int){3}), -EPIPE);
    ASSERT_EQ(weft_chan_try_send(c, &(int){3}), -EPIPE);
    ASSERT_OK(weft_chan_recv(c, &v));
    ASSERT_EQ(v, 1);
    ASSERT_OK(weft_chan_try_recv(c, &v));
    ASSERT_EQ(v, 2);
    ASSERT_EQ(weft_chan_recv(c, &v), -EPIPE);
    ASSERT_EQ(weft_chan_try_recv(c, &v), -EPIPE);
    weft_chan_destroy(c);

    /* Waiting receivers are woken with -EPIPE. */
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 2));
    chan_party rx[3];
    weft_task *t[3];
    for (int i = 0; i < 3; i++) {
        rx[i] = (chan_party){.c = c, .value = -1};
        ASSERT_OK(weft_spawn(&t[i], chan_receiver, &rx[i]));
    }
    settle();
    weft_chan_close(c);
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(weft_join(t[i], NULL));
        ASSERT_EQ(rx[i].rc, -EPIPE);
        ASSERT_EQ(rx[i].value, -1);
    }
    weft_chan_destroy(c);

    /* Waiting senders get -EPIPE and their elements are not delivered;
     * what was buffered before the close still is. */
    for (size_t cap = 0; cap < 2; cap++) {
        ASSERT_OK(weft_chan_create(&c, sizeof(int), cap));
        if (cap)
            ASSERT_OK(weft_chan_send(c, &(int){50}));
        chan_party tx[3];
        for (int i = 0; i < 3; i++) {
            tx[i] = (chan_party){.c = c, .value = 60 + i};
            ASSERT_OK(weft_spawn(&t[i], chan_sender, &tx[i]));
        }
        settle();
        weft_chan_close(c);
        for (int i = 0; i < 3; i++) {
            ASSERT_OK(weft_join(t[i], NULL));
            ASSERT_EQ(tx[i].rc, -EPIPE);
        }
        if (cap) {
            ASSERT_OK(weft_chan_recv(c, &v));
            ASSERT_EQ(v, 50);
        }
        ASSERT_EQ(weft_chan_recv(c, &v), -EPIPE);
        weft_chan_destroy(c);
    }
    return NULL;
}
TEST(chan_close_wakes_everyone_and_drains)
{
    run_main_one_worker(NULL, main_chan_close, NULL);
}

/* ---- mutex and semaphore ---------------------------------------------------- */

static weft_mutex shared_mutex = WEFT_MUTEX_INIT;
static int inside;

static void *mutex_locker(void *arg)
{
    int id = (int)(intptr_t)arg;
    ASSERT_OK(weft_mutex_lock(&shared_mutex));
    ASSERT_EQ(inside, 0);
    inside = 1;
    order_log[norder++] = id;
    ASSERT_OK(weft_yield());
    inside = 0;
    weft_mutex_unlock(&shared_mutex);
    return NULL;
}

static void *main_mutex_basics(void *arg)
{
    weft_mutex *m = &shared_mutex;
    ASSERT_OK(weft_mutex_init(m));
    ASSERT_OK(weft_mutex_lock(m));
    ASSERT_EQ(weft_mutex_trylock(m), -EBUSY);
    ASSERT_EQ(weft_mutex_lock(m), -EDEADLK);
    /* Misuse is reported before a passed deadline: -ETIMEDOUT would say
     * "not held". */
    ASSERT_OK(weft_deadline_push(weft_now_ns() - 1));
    ASSERT_EQ(weft_mutex_lock(m), -EDEADLK);
    ASSERT_OK(weft_deadline_pop());
    weft_mutex_unlock(m);
    ASSERT_OK(weft_deadline_push(weft_now_ns() - 1));
    ASSERT_EQ(weft_mutex_lock(m), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_mutex_trylock(m));

    /* Waiters get the mutex in arrival order, handed over directly. */
    weft_task *t[5];
    norder = 0;
    for (int i = 0; i < 5; i++)
        ASSERT_OK(weft_spawn(&t[i], mutex_locker, (void *)(intptr_t)i));
    settle();
    ASSERT_EQ(norder, 0);
    weft_mutex_unlock(m);
    /* No barging: it went to the first waiter, not to a newcomer. */
    ASSERT_EQ(weft_mutex_trylock(m), -EBUSY);
    for (int i = 0; i < 5; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    ASSERT_EQ(norder, 5);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(order_log[i], i);
    ASSERT_OK(weft_mutex_trylock(m));
    weft_mutex_unlock(m);
    return NULL;
}
TEST(mutex_basics_and_fifo_handoff)
{
    run_main_one_worker(NULL, main_mutex_basics, NULL);
}

static weft_sem shared_sem = WEFT_SEM_INIT(0);

static void *sem_taker(void *arg)
{
    ASSERT_OK(weft_sem_acquire(&shared_sem));
    order_log[norder++] = (int)(intptr_t)arg;
    return NULL;
}

static void *main_sem_basics(void *arg)
{
    weft_sem *s = &shared_sem;
    ASSERT_OK(weft_sem_init(s, 2));
    ASSERT_OK(weft_sem_acquire(s));
    ASSERT_OK(weft_sem_acquire(s));
    ASSERT_EQ(weft_sem_try_acquire(s), -EAGAIN);
    weft_task *t[4];
    norder = 0;
    for (int i = 0; i < 4; i++)
        ASSERT_OK(weft_spawn(&t[i], sem_taker, (void *)(intptr_t)i));
    settle();
    ASSERT_EQ(norder, 0);
    weft_sem_release(s);
    ASSERT_EQ(weft_sem_available(s), 0);         /* handed to the first waiter, */
    ASSERT_EQ(weft_sem_try_acquire(s), -EAGAIN); /* not left for the taking */
    settle();
    ASSERT_EQ(norder, 1);
    for (int i = 0; i < 3; i++)
        weft_sem_release(s);
    for (int i = 0; i < 4; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(order_log[i], i);
    weft_sem_release(s);
    weft_sem_release(s);
    ASSERT_OK(weft_sem_try_acquire(s));
    ASSERT_OK(weft_sem_acquire(s));
    ASSERT_EQ(weft_sem_try_acquire(s), -EAGAIN);
    return NULL;
}
TEST(semaphore_basics_and_fifo_handoff)
{
    run_main_one_worker(NULL, main_sem_basics, NULL);
}

/* ---- event and wait group --------------------------------------------------- */

static weft_event shared_event = WEFT_EVENT_INIT;

static void *event_waiter(void *arg)
{
    ASSERT_OK(weft_event_wait(&shared_event));
    order_log[norder++] = (int)(intptr_t)arg;
    return NULL;
}

/* Waits with a deadline of ms milliseconds: returns weft_event_wait's code. */
static int event_wait_for(weft_event *e, unsigned ms)
{
    ASSERT_OK(weft_deadline_push(weft_now_ns() + ms * 1000000ull));
    int r = weft_event_wait(e);
    ASSERT_OK(weft_deadline_pop());
    return r;
}

static void *main_event_basics(void *arg)
{
    weft_event *e = &shared_event;
    ASSERT_OK(weft_event_init(e));
    /* A notify with no waiter stays pending; several collapse into one. */
    weft_event_notify_one(e);
    weft_event_notify_one(e);
    ASSERT_OK(weft_event_wait(e));
    ASSERT_EQ(event_wait_for(e, 2), -ETIMEDOUT);

    /* notify_one wakes waiters one at a time, in arrival order. */
    weft_task *t[3];
    norder = 0;
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_spawn(&t[i], event_waiter, (void *)(intptr_t)i));
    settle();
    ASSERT_EQ(norder, 0);
    for (int i = 0; i < 3; i++) {
        weft_event_notify_one(e);
        settle();
        ASSERT_EQ(norder, i + 1);
        ASSERT_EQ(order_log[i], i);
    }
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    /* Each notify went to a waiter: nothing is pending. */
    ASSERT_EQ(event_wait_for(e, 2), -ETIMEDOUT);

    /* notify_all wakes every waiter and leaves the event pending. */
    norder = 0;
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_spawn(&t[i], event_waiter, (void *)(intptr_t)i));
    settle();
    weft_event_notify_all(e);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    ASSERT_EQ(norder, 3);
    ASSERT_OK(weft_event_wait(e));
    ASSERT_EQ(event_wait_for(e, 2), -ETIMEDOUT);
    return NULL;
}
TEST(event_pending_slot_and_order)
{
    run_main_one_worker(NULL, main_event_basics, NULL);
}

/* The condition-variable pattern: a queue guarded by a weft_mutex, several
 * consumers, notify_all after each change. */
#define CV_SLOTS 8

typedef struct cv_queue {
    weft_mutex m;
    weft_event e;        /* not empty, or closed */
    weft_event not_full; /* room in items[] */
    int items[CV_SLOTS];
    int head, tail;
    bool closed;
    int taken[256];
    int ntaken;
} cv_queue;

static void *cv_consumer(void *arg)
{
    cv_queue *q = arg;
    ASSERT_OK(weft_mutex_lock(&q->m));
    for (;;) {
        while (q->head == q->tail && !q->closed)
            ASSERT_OK(weft_event_wait_locked(&q->e, &q->m));
        if (q->head == q->tail)
            break;
        q->taken[q->ntaken++] = q->items[q->head++ % CV_SLOTS];
        weft_event_notify_one(&q->not_full); /* only the producer waits there */
        /* Let others run while holding the mutex now and then. */
        if (q->ntaken % 3 == 0) {
            weft_mutex_unlock(&q->m);
            ASSERT_OK(weft_yield());
            ASSERT_OK(weft_mutex_lock(&q->m));
        }
    }
    weft_mutex_unlock(&q->m);
    return NULL;
}

static void *main_event_condvar(void *arg)
{
    cv_queue *q = calloc(1, sizeof *q);
    ASSERT_OK(weft_mutex_init(&q->m));
    ASSERT_OK(weft_event_init(&q->e));
    ASSERT_OK(weft_event_init(&q->not_full));
    /* Not holding the mutex: refused, nothing changes. */
    ASSERT_EQ(weft_event_wait_locked(&q->e, &q->m), -EPERM);
    /* Misuse is reported before a passed deadline: any other answer says
     * that the caller holds m. Held, m stays held. */
    ASSERT_OK(weft_deadline_push(weft_now_ns() - 1));
    ASSERT_EQ(weft_event_wait_locked(&q->e, &q->m), -EPERM);
    ASSERT_EQ(weft_mutex_lock(&q->m), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_mutex_lock(&q->m));
    ASSERT_OK(weft_deadline_push(weft_now_ns() - 1));
    ASSERT_EQ(weft_event_wait_locked(&q->e, &q->m), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_mutex_trylock(&q->m), -EBUSY);
    weft_mutex_unlock(&q->m);
    weft_task *t[4];
    for (int i = 0; i < 4; i++)
        ASSERT_OK(weft_spawn(&t[i], cv_consumer, q));
    for (int i = 0; i < 200; i++) {
        ASSERT_OK(weft_mutex_lock(&q->m));
        while (q->tail - q->head == CV_SLOTS)
            ASSERT_OK(weft_event_wait_locked(&q->not_full, &q->m));
        q->items[q->tail++ % CV_SLOTS] = i;
        weft_mutex_unlock(&q->m);
        weft_event_notify_all(&q->e);
        if (i % 7 == 0)
            ASSERT_OK(weft_yield());
    }
    ASSERT_OK(weft_mutex_lock(&q->m));
    q->closed = true;
    weft_mutex_unlock(&q->m);
    weft_event_notify_all(&q->e);
    for (int i = 0; i < 4; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    ASSERT_EQ(q->ntaken, 200);
    for (int i = 0; i < 200; i++)
        ASSERT_EQ(q->taken[i], i);
    free(q);
    return NULL;
}
TEST(event_wait_locked_is_a_condition_variable)
{
    run_one_and_two(main_event_condvar, NULL);
}

static weft_waitgroup shared_wg = WEFT_WAITGROUP_INIT;
static int wg_finished;

static void *wg_worker(void *arg)
{
    for (int i = 0; i < (int)(intptr_t)arg; i++)
        ASSERT_OK(weft_yield());
    wg_finished++;
    weft_waitgroup_done(&shared_wg);
    return NULL;
}

static void *wg_waiter(void *arg)
{
    ASSERT_OK(weft_waitgroup_wait(&shared_wg));
    order_log[norder++] = (int)(intptr_t)arg;
    return NULL;
}

static void *main_waitgroup(void *arg)
{
    weft_waitgroup *wg = &shared_wg;
    ASSERT_OK(weft_waitgroup_init(wg));
    ASSERT_OK(weft_waitgroup_wait(wg)); /* zero: at once */
    wg_finished = 0;
    weft_waitgroup_add(wg, 5);
    for (int i = 0; i < 5; i++)
        ASSERT_OK(weft_spawn(NULL, wg_worker, (void *)(intptr_t)(i * 2)));
    ASSERT_OK(weft_waitgroup_wait(wg));
    ASSERT_EQ(wg_finished, 5);

    /* Several waiters all wake when the count reaches zero; a positive add
     * does not wake them. */
    weft_waitgroup_add(wg, 2);
    weft_task *t[3];
    norder = 0;
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_spawn(&t[i], wg_waiter, (void *)(intptr_t)i));
    settle();
    weft_waitgroup_done(wg);
    weft_waitgroup_add(wg, 3);
    settle();
    ASSERT_EQ(norder, 0);
    weft_waitgroup_add(wg, -4);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    ASSERT_EQ(norder, 3);
    ASSERT_OK(weft_waitgroup_wait(wg));
    return NULL;
}
TEST(waitgroup_basics)
{
    run_main_one_worker(NULL, main_waitgroup, NULL);
}

/* ---- watermark ------------------------------------------------------------- */

typedef struct mark_waiter {
    weft_watermark *m;
    uint64_t target;
    int rc;
    int order; /* 1 + how many waiters returned before this one; 0 while waiting */
    uint64_t level_seen;
} mark_waiter;

static int marks_returned;

static void *wait_for_mark(void *arg)
{
    mark_waiter *w = arg;
    w->rc = weft_watermark_wait(w->m, w->target);
    w->level_seen = weft_watermark_level(w->m);
    w->order = ++marks_returned;
    return NULL;
}

static void *main_watermark(void *arg)
{
    weft_watermark m = WEFT_WATERMARK_INIT(0);
    /* Waiting order: targets 7, 3, 10, 3, 5. */
    mark_waiter w[5] = {
        {&m, 7, 1, 0, 0}, {&m, 3, 1, 0, 0}, {&m, 10, 1, 0, 0}, {&m, 3, 1, 0, 0}, {&m, 5, 1, 0, 0}};
    weft_task *t[5];
    marks_returned = 0;
    for (int i = 0; i < 5; i++)
        ASSERT_OK(weft_spawn(&t[i], wait_for_mark, &w[i]));
    settle();
    ASSERT_EQ(marks_returned, 0);

    weft_watermark_advance(&m, 2); /* reaches no target */
    settle();
    ASSERT_EQ(marks_returned, 0);

    weft_watermark_advance(&m, 4); /* both 3s, in waiting order */
    settle();
    ASSERT_EQ(marks_returned, 2);
    ASSERT_EQ(w[1].order, 1);
    ASSERT_EQ(w[3].order, 2);
    ASSERT_EQ(w[1].rc, 0);
    ASSERT_EQ(w[1].level_seen, 4);

    weft_watermark_advance(&m, 1); /* lower: nothing changes */
    ASSERT_EQ(weft_watermark_level(&m), 4);

    weft_watermark_advance(&m, 9); /* 5 and 7: lower target first */
    settle();
    ASSERT_EQ(marks_returned, 4);
    ASSERT_EQ(w[4].order, 3);
    ASSERT_EQ(w[0].order, 4);
    ASSERT_EQ(w[0].rc, 0);
    ASSERT_EQ(w[2].order, 0); /* 10 still waits */

    /* Reached targets return at once, without parking. */
    weft_stats before, after;
    ASSERT_OK(weft_stats_snapshot(&before));
    ASSERT_OK(weft_watermark_wait(&m, 9));
    ASSERT_OK(weft_watermark_wait(&m, 0));
    ASSERT_OK(weft_stats_snapshot(&after));
    ASSERT_EQ(after.context_switches, before.context_switches);

    /* A failure wakes the rest with it; what was covered stays covered. */
    weft_watermark_fail(&m, -ENOSPC);
    settle();
    ASSERT_EQ(w[2].order, 5);
    ASSERT_EQ(w[2].rc, -ENOSPC);
    ASSERT_EQ(weft_watermark_wait(&m, 10), -ENOSPC);
    ASSERT_OK(weft_watermark_wait(&m, 9));
    weft_watermark_fail(&m, -EIO); /* the first failure is kept */
    ASSERT_EQ(weft_watermark_wait(&m, 10), -ENOSPC);
    weft_watermark_advance(&m, 12); /* the level may still rise */
    ASSERT_OK(weft_watermark_wait(&m, 12));
    ASSERT_EQ(weft_watermark_wait(&m, 13), -ENOSPC);
    for (int i = 0; i < 5; i++)
        ASSERT_OK(weft_join(t[i], NULL));

    /* Recovered: waits above the level wait again, and the next failure
     * is kept anew. */
    weft_watermark_recover(&m);
    ASSERT_EQ(weft_watermark_level(&m), 12);
    mark_waiter again = {&m, 14, 1, 0, 0};
    weft_task *ta;
    ASSERT_OK(weft_spawn(&ta, wait_for_mark, &again));
    settle();
    ASSERT_EQ(again.order, 0); /* waiting, not failed */
    weft_watermark_advance(&m, 14);
    ASSERT_OK(weft_join(ta, NULL));
    ASSERT_EQ(again.rc, 0);
    weft_watermark_fail(&m, -EIO);
    ASSERT_EQ(weft_watermark_wait(&m, 15), -EIO);
    weft_watermark_recover(NULL);

    /* A failure that is not a negative errno, or that a wait returns for
     * itself, is published as -EIO. */
    const int odd[] = {5, 0, -ECANCELED, -ETIMEDOUT, -EPERM, -EINVAL};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        ASSERT_OK(weft_watermark_init(&m, 0));
        weft_watermark_fail(&m, odd[i]);
        ASSERT_EQ(weft_watermark_wait(&m, 1), -EIO);
    }

    /* A failure that reaches a waiter before its cancellation is acted on
     * is what the wait returns. */
    ASSERT_OK(weft_watermark_init(&m, 0));
    mark_waiter doomed = {&m, 50, 1, 0, 0};
    weft_task *td;
    ASSERT_OK(weft_spawn(&td, wait_for_mark, &doomed));
    settle();
    weft_watermark_fail(&m, -ENOSPC);
    ASSERT_OK(weft_cancel(td));
    ASSERT_EQ(weft_join(td, NULL), -ECANCELED);
    ASSERT_EQ(doomed.rc, -ENOSPC);

    /* The level is 64 bits wide. */
    ASSERT_OK(weft_watermark_init(&m, UINT64_MAX - 1));
    mark_waiter top = {&m, UINT64_MAX, 1, 0, 0};
    weft_task *tt;
    ASSERT_OK(weft_spawn(&tt, wait_for_mark, &top));
    settle();
    ASSERT_EQ(top.order, 0);
    weft_watermark_advance(&m, UINT64_MAX);
    ASSERT_OK(weft_join(tt, NULL));
    ASSERT_EQ(top.rc, 0);
    ASSERT_EQ(top.level_seen, UINT64_MAX);
    return NULL;
}
TEST(watermark_wakes_each_waiter_at_its_target)
{
    run_main_one_worker(NULL, main_watermark, NULL);
}

/* Group commit across threads: committer tasks (on one or two workers)
 * each wait for their own sequence number, which a plain thread makes
 * "durable" in batches. Every commit returns 0 with the level past its
 * number, and none returns before it. */
#define COMMITTERS  64
#define COMMITS_PER 200

typedef struct commit_log {
    weft_watermark durable;
    _Atomic uint64_t next_seq;
    _Atomic bool stop;
    _Atomic unsigned early; /* commits that saw the level below their number */
} commit_log;

static void *committer(void *arg)
{
    commit_log *log = arg;
    for (int i = 0; i < COMMITS_PER; i++) {
        uint64_t seq = atomic_fetch_add(&log->next_seq, 1) + 1;
        int r = weft_watermark_wait(&log->durable, seq);
        if (r != 0)
            FAILF("commit %llu: %d", (unsigned long long)seq, r);
        if (weft_watermark_level(&log->durable) < seq)
            atomic_fetch_add(&log->early, 1);
        if (i % 8 == 0)
            ASSERT_OK(weft_yield());
    }
    return NULL;
}

static void *log_writer_thread(void *arg)
{
    commit_log *log = arg;
    while (!atomic_load(&log->stop)) {
        /* "fsync", then publish what was handed out before it, at most 5
         * records at a time, so that waiters just past the level are
         * common. */
        uint64_t upto = atomic_load(&log->next_seq);
        uint64_t level = weft_watermark_level(&log->durable);
        if (upto > level + 5)
            upto = level + 5;
        weft_watermark_advance(&log->durable, upto);
        /* A pause after each advance lets woken committers look at the
         * level before it moves on: one woken too early sees it below its
         * number. */
        nanosleep(&(struct timespec){0, 20000}, NULL);
    }
    return NULL;
}

static _Atomic int marks_waiting;

/* wait_for_mark that counts itself in before it may park. */
static void *wait_for_mark_counted(void *arg)
{
    mark_waiter *w = arg;
    atomic_fetch_add(&marks_waiting, 1);
    w->rc = weft_watermark_wait(w->m, w->target);
    return NULL;
}

static void *fail_from_thread(void *arg)
{
    /* Let the counted waiters park (a wait that starts after the failure
     * returns it as well, so this only makes the wake path likelier). */
    usleep(2000);
    weft_watermark_fail(arg, -ENOSPC);
    return NULL;
}

static void *main_group_commit(void *arg)
{
    commit_log *log = calloc(1, sizeof *log);
    ASSERT_OK(weft_watermark_init(&log->durable, 0));
    atomic_store(&marks_waiting, 0);
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, log_writer_thread, log));
    weft_task *t[COMMITTERS];
    for (int i = 0; i < COMMITTERS; i++)
        ASSERT_OK(weft_spawn(&t[i], committer, log));
    for (int i = 0; i < COMMITTERS; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    atomic_store(&log->stop, true);
    ASSERT_OK(pthread_join(th, NULL));
    /* A failure published by a plain thread reaches waiters on every
     * worker. */
    weft_task *doomed[8];
    mark_waiter dw[8];
    for (int i = 0; i < 8; i++) {
        dw[i] = (mark_waiter){&log->durable, UINT64_MAX, 1, 0, 0};
        ASSERT_OK(weft_spawn(&doomed[i], wait_for_mark_counted, &dw[i]));
    }
    while (atomic_load(&marks_waiting) < 8)
        ASSERT_OK(weft_sleep_ns(100000));
    ASSERT_OK(pthread_create(&th, NULL, fail_from_thread, &log->durable));
    for (int i = 0; i < 8; i++) {
        ASSERT_OK(weft_join(doomed[i], NULL));
        ASSERT_EQ(dw[i].rc, -ENOSPC);
    }
    ASSERT_OK(pthread_join(th, NULL));
    unsigned early = atomic_load(&log->early);
    uint64_t handed_out = atomic_load(&log->next_seq);
    ASSERT_EQ(early, 0);
    ASSERT_EQ(handed_out, (uint64_t)COMMITTERS * COMMITS_PER);
    ASSERT(log->durable._waiters._first == NULL);
    free(log);
    return NULL;
}
TEST(watermark_group_commit_across_threads)
{
    run_one_and_two(main_group_commit, NULL);
}

static void waitgroup_below_zero(void)
{
    weft_waitgroup wg = WEFT_WAITGROUP_INIT;
    weft_waitgroup_add(&wg, 1);
    weft_waitgroup_add(&wg, -2);
#ifdef NDEBUG
    /* Release builds clamp at zero. */
    weft_waitgroup_add(&wg, 1);
    weft_waitgroup_done(&wg);
    fprintf(stderr, "clamped %d\n", wg._count);
#endif
}

#ifndef NDEBUG /* only debug builds detect the double unlock */
static void *lock_then_unlock_twice(void *arg)
{
    weft_mutex *m = arg;
    ASSERT_OK(weft_mutex_lock(m));
    weft_mutex_unlock(m);
    weft_mutex_unlock(m);
    return NULL;
}

static void mutex_unlocked_twice(void)
{
    weft_mutex m = WEFT_MUTEX_INIT;
    run_main_one_worker(NULL, lock_then_unlock_twice, &m);
}
#endif

TEST(caller_bugs_are_reported_in_debug)
{
    char out[1024];
    int status = run_captured(waitgroup_below_zero, out, sizeof out);
#ifdef NDEBUG
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT(strstr(out, "clamped 0") != NULL);
#else
    ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    if (!strstr(out, "below zero"))
        FAILF("unexpected report: %s", out);
    status = run_captured(mutex_unlocked_twice, out, sizeof out);
    ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    if (!strstr(out, "is not locked"))
        FAILF("unexpected report: %s", out);
#endif
}

/* ---- cancellation and deadlines --------------------------------------------- */

enum blocking_kind {
    K_SEND,
    K_RECV,
    K_LOCK,
    K_ACQUIRE,
    K_EVENT,
    K_EVENT_LOCKED,
    K_WAITGROUP,
    K_WATERMARK,
};
static const char *const kind_names[] = {"send",  "recv",         "lock",      "acquire",
                                         "event", "event_locked", "waitgroup", "watermark"};

typedef struct blocked {
    enum blocking_kind kind;
    weft_chan *c;
    weft_mutex m, m2;
    weft_sem s;
    weft_event e;
    weft_waitgroup wg;
    weft_watermark wm;
    uint64_t deadline_ns; /* relative; 0 = none */
    int rc;
    int got;
    bool done;
} blocked;

static void *block_on(void *arg)
{
    blocked *b = arg;
    if (b->deadline_ns)
        ASSERT_OK(weft_deadline_push(weft_now_ns() + b->deadline_ns));
    switch (b->kind) {
    case K_SEND:
        b->rc = weft_chan_send(b->c, &(int){42});
        break;
    case K_RECV:
        b->rc = weft_chan_recv(b->c, &b->got);
        break;
    case K_LOCK:
        b->rc = weft_mutex_lock(&b->m);
        if (b->rc == 0)
            weft_mutex_unlock(&b->m);
        break;
    case K_ACQUIRE:
        b->rc = weft_sem_acquire(&b->s);
        break;
    case K_EVENT:
        b->rc = weft_event_wait(&b->e);
        break;
    case K_EVENT_LOCKED:
        ASSERT_OK(weft_mutex_lock(&b->m2));
        b->rc = weft_event_wait_locked(&b->e, &b->m2);
        /* Whatever it returned, the mutex is ours again. */
        ASSERT_EQ(weft_mutex_trylock(&b->m2), -EBUSY);
        weft_mutex_unlock(&b->m2);
        break;
    case K_WAITGROUP:
        b->rc = weft_waitgroup_wait(&b->wg);
        break;
    case K_WATERMARK:
        b->rc = weft_watermark_wait(&b->wm, 10);
        break;
    }
    b->done = true;
    return NULL;
}

/* Puts b's object in a state where the call blocks. */
static void make_blocking(blocked *b)
{
    weft_mutex_init(&b->m);
    weft_mutex_init(&b->m2);
    weft_sem_init(&b->s, 0);
    weft_event_init(&b->e);
    weft_waitgroup_init(&b->wg);
    weft_watermark_init(&b->wm, 5);
    b->c = NULL;
    if (b->kind == K_SEND) {
        ASSERT_OK(weft_chan_create(&b->c, sizeof(int), 1));
        ASSERT_OK(weft_chan_try_send(b->c, &(int){1}));
    } else {
        ASSERT_OK(weft_chan_create(&b->c, sizeof(int), 0));
    }
    if (b->kind == K_LOCK)
        ASSERT_OK(weft_mutex_lock(&b->m));
    if (b->kind == K_WAITGROUP)
        weft_waitgroup_add(&b->wg, 1);
}

/* After an interrupted call: nothing was taken, nothing was delivered, and
 * the object still works. */
static void check_nothing_lost(blocked *b)
{
    int v = 0;
    switch (b->kind) {
    case K_SEND:
        ASSERT_EQ(weft_chan_len(b->c), 1);
        ASSERT_OK(weft_chan_try_recv(b->c, &v));
        ASSERT_EQ(v, 1);
        ASSERT_EQ(weft_chan_try_recv(b->c, &v), -EAGAIN);
        break;
    case K_RECV:
        /* No receiver is left waiting: a rendezvous send does not go. */
        ASSERT_EQ(weft_chan_try_send(b->c, &(int){5}), -EAGAIN);
        break;
    case K_LOCK:
        ASSERT_EQ(weft_mutex_trylock(&b->m), -EBUSY); /* still ours */
        weft_mutex_unlock(&b->m);
        ASSERT_OK(weft_mutex_trylock(&b->m)); /* not handed to the quitter */
        weft_mutex_unlock(&b->m);
        break;
    case K_ACQUIRE:
        weft_sem_release(&b->s);
        ASSERT_OK(weft_sem_try_acquire(&b->s));
        break;
    case K_EVENT:
    case K_EVENT_LOCKED:
        /* The notify finds no waiter: it stays pending for the next one. */
        weft_event_notify_one(&b->e);
        ASSERT_OK(weft_event_wait(&b->e));
        ASSERT_OK(weft_mutex_trylock(&b->m2));
        weft_mutex_unlock(&b->m2);
        break;
    case K_WAITGROUP:
        weft_waitgroup_done(&b->wg);
        ASSERT_OK(weft_waitgroup_wait(&b->wg));
        break;
    case K_WATERMARK:
        /* The quitter left the list: the level moves, nobody is woken. */
        ASSERT(b->wm._waiters._first == NULL);
        weft_watermark_advance(&b->wm, 10);
        ASSERT_OK(weft_watermark_wait(&b->wm, 10));
        break;
    }
    weft_chan_destroy(b->c);
}

static void *main_cancel_each(void *arg)
{
    for (int kind = K_SEND; kind <= K_WATERMARK; kind++) {
        for (int how = 0; how < 2; how++) {
            blocked *b = calloc(1, sizeof *b);
            b->kind = kind;
            b->rc = 12345;
            b->deadline_ns = how == 1 ? 2000000 : 0;
            make_blocking(b);
            weft_task *t;
            ASSERT_OK(weft_spawn(&t, block_on, b));
            settle();
            if (how == 0) {
                if (b->done)
                    FAILF("%s returned %d without blocking", kind_names[kind], b->rc);
                /* wait_locked takes its mutex back even when cancelled:
                 * hold it across the cancel and see the task wait for it. */
                bool hold = kind == K_EVENT_LOCKED;
                if (hold)
                    ASSERT_OK(weft_mutex_lock(&b->m2));
                ASSERT_OK(weft_cancel(t));
                if (hold) {
                    settle();
                    ASSERT(!b->done);
                    weft_mutex_unlock(&b->m2);
                }
                ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
                if (b->rc != -ECANCELED)
                    FAILF("%s: cancelled wait returned %d", kind_names[kind], b->rc);
            } else {
                ASSERT_OK(weft_join(t, NULL));
                if (b->rc != -ETIMEDOUT)
                    FAILF("%s: wait past its deadline returned %d", kind_names[kind], b->rc);
            }
            check_nothing_lost(b);
            free(b);
        }
    }
    return NULL;
}
TEST(cancel_and_deadline_interrupt_every_wait)
{
    run_main_one_worker(NULL, main_cancel_each, NULL);
}

/* A grant that reaches a waiter before its cancellation is acted on is
 * kept: the call returns 0 and the element or the lock is the waiter's. */
static void *main_grant_beats_cancel(void *arg)
{
    for (int kind = K_SEND; kind <= K_WATERMARK; kind++) {
        blocked *b = calloc(1, sizeof *b);
        b->kind = kind;
        b->rc = 12345;
        make_blocking(b);
        weft_task *t;
        ASSERT_OK(weft_spawn(&t, block_on, b));
        settle();
        ASSERT(!b->done);
        int v = 0;
        switch (b->kind) {
        case K_SEND:
            ASSERT_OK(weft_chan_try_recv(b->c, &v)); /* frees a slot: the sender's goes in */
            ASSERT_EQ(v, 1);
            break;
        case K_RECV:
            ASSERT_OK(weft_chan_try_send(b->c, &(int){77}));
            break;
        case K_LOCK:
            weft_mutex_unlock(&b->m);
            break;
        case K_ACQUIRE:
            weft_sem_release(&b->s);
            break;
        case K_EVENT:
        case K_EVENT_LOCKED:
            weft_event_notify_one(&b->e);
            break;
        case K_WAITGROUP:
            weft_waitgroup_done(&b->wg);
            break;
        case K_WATERMARK:
            weft_watermark_advance(&b->wm, 10);
            break;
        }
        ASSERT_OK(weft_cancel(t));
        ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
        if (b->rc != 0)
            FAILF("%s: granted wait returned %d", kind_names[kind], b->rc);
        switch (b->kind) {
        case K_SEND:
            ASSERT_OK(weft_chan_try_recv(b->c, &v));
            ASSERT_EQ(v, 42);
            break;
        case K_RECV:
            ASSERT_EQ(b->got, 77);
            break;
        case K_LOCK: /* the task locked and unlocked it */
            ASSERT_OK(weft_mutex_trylock(&b->m));
            weft_mutex_unlock(&b->m);
            break;
        case K_ACQUIRE: /* the task holds the unit */
            ASSERT_EQ(weft_sem_try_acquire(&b->s), -EAGAIN);
            break;
        case K_EVENT:
        case K_EVENT_LOCKED: /* consumed by the task */
            ASSERT_EQ(event_wait_for(&b->e, 2), -ETIMEDOUT);
            break;
        case K_WAITGROUP:
        case K_WATERMARK:
            break;
        }
        weft_chan_destroy(b->c);
        free(b);
    }
    return NULL;
}
TEST(grant_that_beats_the_cancel_is_kept)
{
    run_main_one_worker(NULL, main_grant_beats_cancel, NULL);
}

static int entry_rc, shielded_rc;

static void *cancelled_then_lock(void *arg)
{
    weft_mutex *m = arg;
    while (weft_yield() == 0) {
    }
    entry_rc = weft_mutex_lock(m);
    ASSERT_OK(weft_shield_push());
    shielded_rc = weft_mutex_lock(m);
    if (shielded_rc == 0)
        weft_mutex_unlock(m);
    ASSERT_OK(weft_shield_pop());
    return NULL;
}

static void *main_cancel_on_entry(void *arg)
{
    weft_mutex m = WEFT_MUTEX_INIT;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, cancelled_then_lock, &m));
    ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(entry_rc, -ECANCELED);
    ASSERT_EQ(shielded_rc, 0);
    ASSERT_OK(weft_mutex_trylock(&m));
    weft_mutex_unlock(&m);
    return NULL;
}
TEST(cancelled_task_is_refused_on_entry_unless_shielded)
{
    run_main_one_worker(NULL, main_cancel_on_entry, NULL);
}

/* Receivers that are cancelled at random while elements stream through:
 * every element is received exactly once. */
#define RACE_ITEMS 3000
#define RACE_SLOTS 8

typedef struct race {
    weft_chan *c;
    _Atomic int seen[RACE_ITEMS];
    _Atomic unsigned received;
} race;

static void *race_receiver(void *arg)
{
    race *r = arg;
    int v;
    while (weft_chan_recv(r->c, &v) == 0) {
        ASSERT(v >= 0 && v < RACE_ITEMS);
        atomic_fetch_add(&r->seen[v], 1);
        atomic_fetch_add(&r->received, 1);
    }
    return NULL;
}

static void *main_cancel_receivers_race(void *arg)
{
    size_t cap = (size_t)(uintptr_t)arg;
    race *r = calloc(1, sizeof *r);
    ASSERT_OK(weft_chan_create(&r->c, sizeof(int), cap));
    weft_task *steady, *slot[RACE_SLOTS];
    ASSERT_OK(weft_spawn(&steady, race_receiver, r));
    for (int i = 0; i < RACE_SLOTS; i++)
        ASSERT_OK(weft_spawn(&slot[i], race_receiver, r));
    unsigned seed = 12345;
    for (int i = 0; i < RACE_ITEMS; i++) {
        ASSERT_OK(weft_chan_send(r->c, &i));
        seed = seed * 1103515245 + 12345;
        if ((seed >> 16) % 4 == 0) {
            int k = (int)((seed >> 8) % RACE_SLOTS);
            ASSERT_OK(weft_cancel(slot[k]));
            int jr = weft_join(slot[k], NULL);
            ASSERT(jr == 0 || jr == -ECANCELED);
            ASSERT_OK(weft_spawn(&slot[k], race_receiver, r));
        }
        if ((seed >> 20) % 3 == 0)
            ASSERT_OK(weft_yield());
    }
    weft_chan_close(r->c);
    ASSERT_OK(weft_join(steady, NULL));
    for (int i = 0; i < RACE_SLOTS; i++) {
        int jr = weft_join(slot[i], NULL);
        ASSERT(jr == 0 || jr == -ECANCELED);
    }
    ASSERT_EQ(atomic_load(&r->received), RACE_ITEMS);
    for (int i = 0; i < RACE_ITEMS; i++)
        if (atomic_load(&r->seen[i]) != 1)
            FAILF("element %d received %d times", i, atomic_load(&r->seen[i]));
    weft_chan_destroy(r->c);
    free(r);
    return NULL;
}
TEST(cancelled_receivers_lose_no_element)
{
    run_one_and_two(main_cancel_receivers_race, (void *)(uintptr_t)0);
    run_one_and_two(main_cancel_receivers_race, (void *)(uintptr_t)4);
}

/* Lockers cancelled at random while the mutex is handed around: mutual
 * exclusion holds and the mutex is never lost. */
typedef struct lock_race {
    weft_mutex m;
    int inside; /* guarded by m */
    long entries;
} lock_race;

static void *race_locker(void *arg)
{
    lock_race *lr = arg;
    while (weft_mutex_lock(&lr->m) == 0) {
        ASSERT_EQ(lr->inside, 0);
        lr->inside = 1;
        lr->entries++;
        (void)weft_yield();
        lr->inside = 0;
        weft_mutex_unlock(&lr->m);
    }
    return NULL;
}

static void *main_cancel_lockers_race(void *arg)
{
    lock_race *lr = calloc(1, sizeof *lr);
    ASSERT_OK(weft_mutex_init(&lr->m));
    weft_task *t[12];
    for (int i = 0; i < 12; i++)
        ASSERT_OK(weft_spawn(&t[i], race_locker, lr));
    unsigned seed = 99;
    for (int round = 0; round < 1500; round++) {
        seed = seed * 1103515245 + 12345;
        if ((seed >> 16) % 2)
            ASSERT_OK(weft_yield());
        int k = (int)((seed >> 8) % 12);
        ASSERT_OK(weft_cancel(t[k]));
        ASSERT_EQ(weft_join(t[k], NULL), -ECANCELED);
        ASSERT_OK(weft_spawn(&t[k], race_locker, lr));
    }
    for (int i = 0; i < 12; i++) {
        ASSERT_OK(weft_cancel(t[i]));
        ASSERT_EQ(weft_join(t[i], NULL), -ECANCELED);
    }
    ASSERT_OK(weft_mutex_lock(&lr->m)); /* not lost */
    ASSERT_EQ(lr->inside, 0);
    ASSERT_GT(lr->entries, 0);
    weft_mutex_unlock(&lr->m);
    free(lr);
    return NULL;
}
TEST(cancelled_lockers_never_lose_the_mutex)
{
    run_one_and_two(main_cancel_lockers_race, NULL);
}

/* ---- foreign threads -------------------------------------------------------- */

typedef struct foreign {
    weft_chan *c;
    int n;
    long sum;
    int rc;
    weft_event *e;
    weft_sem *s;
    weft_waitgroup *wg;
    _Atomic int flag;
    _Atomic int acked;
    int rounds; /* 1: notify once; more: until every waiter acked */
} foreign;

static void *thread_sender(void *arg)
{
    foreign *f = arg;
    for (int i = 1; i <= f->n; i++) {
        int r = weft_chan_send_blocking(f->c, &i);
        if (r != 0)
            FAILF("send_blocking: %d", r);
    }
    weft_chan_close(f->c);
    return NULL;
}

static void *thread_receiver(void *arg)
{
    foreign *f = arg;
    int v;
    while ((f->rc = weft_chan_recv_blocking(f->c, &v)) == 0)
        f->sum += v;
    return NULL;
}

static void *main_foreign_chan(void *arg)
{
    for (size_t cap = 0; cap <= 4; cap += 4) {
        /* A pthread sends to a task. */
        foreign f = {.n = 2000};
        ASSERT_OK(weft_chan_create(&f.c, sizeof(int), cap));
        pthread_t th;
        ASSERT_OK(pthread_create(&th, NULL, thread_sender, &f));
        long sum = 0;
        int v, r;
        while ((r = weft_chan_recv(f.c, &v)) == 0)
            sum += v;
        ASSERT_EQ(r, -EPIPE);
        ASSERT_OK(pthread_join(th, NULL));
        ASSERT_EQ(sum, (long)f.n * (f.n + 1) / 2);
        weft_chan_destroy(f.c);

        /* A task sends to a pthread. */
        foreign g = {.n = 2000};
        ASSERT_OK(weft_chan_create(&g.c, sizeof(int), cap));
        ASSERT_OK(pthread_create(&th, NULL, thread_receiver, &g));
        for (int i = 1; i <= g.n; i++) {
            ASSERT_OK(weft_chan_send(g.c, &i));
            if (i % 64 == 0)
                ASSERT_OK(weft_yield());
        }
        weft_chan_close(g.c);
        ASSERT_OK(pthread_join(th, NULL));
        ASSERT_EQ(g.rc, -EPIPE);
        ASSERT_EQ(g.sum, (long)g.n * (g.n + 1) / 2);
        weft_chan_destroy(g.c);
    }
    /* In a task, the blocking forms are the task forms. */
    weft_chan *c;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 1));
    ASSERT_OK(weft_chan_send_blocking(c, &(int){3}));
    int v = 0;
    ASSERT_OK(weft_chan_recv_blocking(c, &v));
    ASSERT_EQ(v, 3);
    weft_chan_destroy(c);
    return NULL;
}
TEST(foreign_thread_channel_blocking)
{
    run_one_and_two(main_foreign_chan, NULL);
}

/* The _blocking_for forms: a time limit that passes leaves nothing behind
 * (no waiter node in the channel, nothing sent or taken), and an element
 * handed over as the limit passes is never lost or counted twice. */
#define BF_MS 1000000ull

struct late_send {
    weft_chan *c;
    int v;
};

static void *send_later(void *arg)
{
    struct late_send *l = arg;
    usleep(10000);
    ASSERT_OK(weft_chan_send_blocking(l->c, &l->v));
    return NULL;
}

struct race_side {
    weft_chan *c;
    int rounds;
    int ok[5000];
};

static void *race_sender(void *arg)
{
    struct race_side *r = arg;
    for (int i = 0; i < r->rounds; i++) {
        int rc = weft_chan_send_blocking_for(r->c, &i, 50000);
        ASSERT(rc == 0 || rc == -ETIMEDOUT);
        r->ok[i] = rc == 0;
        usleep(i % 7 * 10);
    }
    return NULL;
}

static void *main_blocking_for_in_a_task(void *arg)
{
    weft_chan *c = arg;
    int v;
    ASSERT_EQ(weft_chan_recv_blocking_for(c, &v, 5 * BF_MS), -ETIMEDOUT);
    weft_select_case sc = {.op = WEFT_SELECT_RECV, .chan = c, .elem = &v};
    ASSERT_EQ(weft_select_blocking_for(&sc, 1, 5 * BF_MS), -ETIMEDOUT);
    ASSERT_EQ(weft_deadline_innermost(), 0); /* the pushed deadlines are gone */
    return NULL;
}

TEST(blocking_for_times_out_and_keeps_a_handoff)
{
    weft_chan *c, *full, *other;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 0));
    ASSERT_OK(weft_chan_create(&full, sizeof(int), 1));
    ASSERT_OK(weft_chan_create(&other, sizeof(int), 0));
    int v = 0, x = 7;
    /* Nothing comes: -ETIMEDOUT, and the receiver's node is gone (a send
     * would otherwise find a receiver). */
    ASSERT_EQ(weft_chan_recv_blocking_for(c, &v, 20 * BF_MS), -ETIMEDOUT);
    ASSERT_EQ(weft_chan_try_send(c, &x), -EAGAIN);
    int many[4];
    ASSERT_EQ(weft_chan_recv_many_blocking_for(c, many, 4, 0), -ETIMEDOUT);
    ASSERT_EQ(weft_chan_try_send(c, &x), -EAGAIN);
    /* A full channel: the send times out and delivered nothing. */
    ASSERT_OK(weft_chan_send_blocking_for(full, &(int){1}, 0));
    ASSERT_EQ(weft_chan_send_blocking_for(full, &(int){2}, 20 * BF_MS), -ETIMEDOUT);
    ASSERT_OK(weft_chan_try_recv(full, &v));
    ASSERT_EQ(v, 1);
    ASSERT_EQ(weft_chan_try_recv(full, &v), -EAGAIN);
    /* A select times out with no case gone and its nodes unlinked. */
    weft_select_case sc[2] = {{.op = WEFT_SELECT_RECV, .chan = c, .elem = &v},
                              {.op = WEFT_SELECT_RECV, .chan = other, .elem = &v}};
    ASSERT_EQ(weft_select_blocking_for(sc, 2, 20 * BF_MS), -ETIMEDOUT);
    ASSERT_EQ(weft_chan_try_send(c, &x), -EAGAIN);
    ASSERT_EQ(weft_chan_try_send(other, &x), -EAGAIN);
    /* What comes within the limit is taken, by a recv and by a select. */
    struct late_send l = {c, 41};
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, send_later, &l));
    ASSERT_OK(weft_chan_recv_blocking_for(c, &v, 5000 * BF_MS));
    ASSERT_EQ(v, 41);
    ASSERT_OK(pthread_join(th, NULL));
    l = (struct late_send){other, 42};
    ASSERT_OK(pthread_create(&th, NULL, send_later, &l));
    ASSERT_EQ(weft_select_blocking_for(sc, 2, 5000 * BF_MS), 1);
    ASSERT_EQ(v, 42);
    ASSERT_OK(pthread_join(th, NULL));
    /* Both sides time-limited on a rendezvous, the limits about when the
     * other side comes: each element is taken exactly when its send says
     * it was delivered. */
    struct race_side r = {.c = c, .rounds = 5000};
    ASSERT_OK(pthread_create(&th, NULL, race_sender, &r));
    int got[5000] = {0};
    for (int i = 0; i < r.rounds; i++) {
        int rc = weft_chan_recv_blocking_for(c, &v, 40000);
        ASSERT(rc == 0 || rc == -ETIMEDOUT);
        if (rc == 0) {
            ASSERT(v >= 0 && v < r.rounds);
            got[v]++;
        }
    }
    ASSERT_OK(pthread_join(th, NULL));
    while (weft_chan_recv_blocking_for(c, &v, 0) == 0)
        got[v]++;
    for (int i = 0; i < r.rounds; i++)
        if (got[i] != r.ok[i])
            FAILF("element %d: sent %d, received %d times", i, r.ok[i], got[i]);
    /* Bad input as the untimed forms; in a task, the task calls under a
     * deadline. */
    ASSERT_EQ(weft_chan_recv_blocking_for(NULL, &v, 0), -EINVAL);
    ASSERT_EQ(weft_select_blocking_for(NULL, 1, 0), -EINVAL);
    run_main(NULL, main_blocking_for_in_a_task, c);
    weft_chan_destroy(c);
    weft_chan_destroy(full);
    weft_chan_destroy(other);
}

/* Sets the flag and notifies. With one worker the waiters are all parked
 * (settle) and cannot run before this thread is joined, so one notify_all
 * must reach all of them. With two, a waiter may be between its check and
 * its wait, where only one such waiter is covered by the pending slot, so
 * the thread notifies until every waiter has seen the flag. */
static void *thread_notify_all(void *arg)
{
    foreign *f = arg;
    atomic_store(&f->flag, 1);
    weft_event_notify_all(f->e);
    while (f->rounds > 1 && atomic_load(&f->acked) < f->n) {
        sched_yield();
        weft_event_notify_all(f->e);
    }
    return NULL;
}

static void *thread_release(void *arg)
{
    foreign *f = arg;
    for (int i = 0; i < f->n; i++)
        weft_sem_release(f->s);
    for (int i = 0; i < f->n; i++)
        weft_waitgroup_done(f->wg);
    return NULL;
}

static void *flag_waiter(void *arg)
{
    foreign *f = arg;
    while (!atomic_load(&f->flag))
        ASSERT_OK(weft_event_wait(f->e));
    atomic_fetch_add(&f->acked, 1);
    return NULL;
}

static void *main_foreign_signals(void *arg)
{
    /* Tasks parked on an event are all woken by a pthread's notify_all. */
    weft_event e = WEFT_EVENT_INIT;
    foreign f = {.e = &e, .n = 4};
    weft_task *t[4];
    for (int i = 0; i < 4; i++)
        ASSERT_OK(weft_spawn(&t[i], flag_waiter, &f));
    settle();
    f.rounds = weft_worker_count() == 1 ? 1 : 2;
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, thread_notify_all, &f));
    if (f.rounds == 1)
        ASSERT_OK(pthread_join(th, NULL)); /* blocks the only worker meanwhile */
    for (int i = 0; i < 4; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    if (f.rounds > 1)
        ASSERT_OK(pthread_join(th, NULL));

    /* A pthread releases a semaphore and counts a wait group down. */
    weft_sem s = WEFT_SEM_INIT(0);
    weft_waitgroup wg = WEFT_WAITGROUP_INIT;
    foreign g = {.n = 100, .s = &s, .wg = &wg};
    weft_waitgroup_add(&wg, g.n);
    ASSERT_OK(pthread_create(&th, NULL, thread_release, &g));
    for (int i = 0; i < g.n; i++)
        ASSERT_OK(weft_sem_acquire(&s));
    ASSERT_OK(weft_waitgroup_wait(&wg));
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_EQ(weft_sem_try_acquire(&s), -EAGAIN);
    return NULL;
}
TEST(foreign_thread_signals_tasks)
{
    run_one_and_two(main_foreign_signals, NULL);
}

/* Producers and consumers on both sides, foreign threads and tasks, on one
 * channel: real contention between threads even with one worker. */
#define MIXED_PRODUCERS    6 /* the first half are threads */
#define MIXED_CONSUMERS    6 /* the first half are threads */
#define MIXED_PER_PRODUCER 2000

typedef struct mixed {
    weft_chan *c;
    weft_waitgroup producers_done;
    _Atomic uint8_t seen[MIXED_PRODUCERS * MIXED_PER_PRODUCER];
    _Atomic unsigned received;
} mixed;

typedef struct mixed_arg {
    mixed *m;
    int index;
} mixed_arg;

static void *mixed_produce(void *arg)
{
    mixed_arg *a = arg;
    bool task = weft_self_id() != 0;
    for (int i = 0; i < MIXED_PER_PRODUCER; i++) {
        uint32_t v = (uint32_t)(a->index * MIXED_PER_PRODUCER + i);
        int r = task ? weft_chan_send(a->m->c, &v) : weft_chan_send_blocking(a->m->c, &v);
        if (r != 0)
            FAILF("producer %d: %d", a->index, r);
    }
    weft_waitgroup_done(&a->m->producers_done);
    return NULL;
}

static void *mixed_consume(void *arg)
{
    mixed *m = arg;
    bool task = weft_self_id() != 0;
    uint32_t v;
    int r;
    while ((r = task ? weft_chan_recv(m->c, &v) : weft_chan_recv_blocking(m->c, &v)) == 0) {
        if (v >= MIXED_PRODUCERS * MIXED_PER_PRODUCER)
            FAILF("bad element %u", v);
        atomic_fetch_add(&m->seen[v], 1);
        atomic_fetch_add(&m->received, 1);
    }
    if (r != -EPIPE)
        FAILF("consumer: %d", r);
    return NULL;
}

static void *main_mixed_mpmc(void *arg)
{
    size_t cap = (size_t)(uintptr_t)arg;
    mixed *m = calloc(1, sizeof *m);
    ASSERT_OK(weft_chan_create(&m->c, sizeof(uint32_t), cap));
    weft_waitgroup_add(&m->producers_done, MIXED_PRODUCERS);
    pthread_t th[MIXED_PRODUCERS + MIXED_CONSUMERS];
    weft_task *t[MIXED_PRODUCERS + MIXED_CONSUMERS];
    int nth = 0, nt = 0;
    mixed_arg args[MIXED_PRODUCERS];
    for (int i = 0; i < MIXED_CONSUMERS; i++) {
        if (i < MIXED_CONSUMERS / 2)
            ASSERT_OK(pthread_create(&th[nth++], NULL, mixed_consume, m));
        else
            ASSERT_OK(weft_spawn(&t[nt++], mixed_consume, m));
    }
    for (int i = 0; i < MIXED_PRODUCERS; i++) {
        args[i] = (mixed_arg){m, i};
        if (i < MIXED_PRODUCERS / 2)
            ASSERT_OK(pthread_create(&th[nth++], NULL, mixed_produce, &args[i]));
        else
            ASSERT_OK(weft_spawn(&t[nt++], mixed_produce, &args[i]));
    }
    /* Only join threads once none can wait for a task: joining blocks
     * this worker. */
    ASSERT_OK(weft_waitgroup_wait(&m->producers_done));
    weft_chan_close(m->c);
    for (int i = 0; i < nt; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    for (int i = 0; i < nth; i++)
        ASSERT_OK(pthread_join(th[i], NULL));
    ASSERT_EQ(atomic_load(&m->received), MIXED_PRODUCERS * MIXED_PER_PRODUCER);
    for (int i = 0; i < MIXED_PRODUCERS * MIXED_PER_PRODUCER; i++)
        if (atomic_load(&m->seen[i]) != 1)
            FAILF("element %d received %d times", i, atomic_load(&m->seen[i]));
    weft_chan_destroy(m->c);
    free(m);
    return NULL;
}
TEST(torture_threads_and_tasks_share_a_channel)
{
    run_one_and_two(main_mixed_mpmc, (void *)(uintptr_t)0);
    run_one_and_two(main_mixed_mpmc, (void *)(uintptr_t)3);
}

/* ---- torture ---------------------------------------------------------------- */

#define COUNTER_TASKS 48
#define COUNTER_ITERS 1000

typedef struct counter_state {
    weft_mutex m;
    long counter; /* guarded by m */
    int inside;   /* guarded by m */
    weft_sem s;
    _Atomic int in_sem;
    _Atomic int max_in_sem;
} counter_state;

static void *counter_task(void *arg)
{
    counter_state *cs = arg;
    for (int i = 0; i < COUNTER_ITERS; i++) {
        ASSERT_OK(weft_mutex_lock(&cs->m));
        ASSERT_EQ(cs->inside, 0);
        cs->inside = 1;
        long v = cs->counter;
        if (i % 16 == 0)
            ASSERT_OK(weft_yield());
        cs->counter = v + 1;
        cs->inside = 0;
        weft_mutex_unlock(&cs->m);
        if (i % 4 == 0) {
            ASSERT_OK(weft_sem_acquire(&cs->s));
            int now = atomic_fetch_add(&cs->in_sem, 1) + 1;
            int max = atomic_load(&cs->max_in_sem);
            while (now > max && !atomic_compare_exchange_weak(&cs->max_in_sem, &max, now)) {
            }
            ASSERT_LE(now, 3);
            ASSERT_OK(weft_yield());
            atomic_fetch_sub(&cs->in_sem, 1);
            weft_sem_release(&cs->s);
        }
    }
    return NULL;
}

static void *main_counter_torture(void *arg)
{
    counter_state *cs = calloc(1, sizeof *cs);
    ASSERT_OK(weft_mutex_init(&cs->m));
    ASSERT_OK(weft_sem_init(&cs->s, 3));
    weft_task *t[COUNTER_TASKS];
    for (int i = 0; i < COUNTER_TASKS; i++)
        ASSERT_OK(weft_spawn(&t[i], counter_task, cs));
    for (int i = 0; i < COUNTER_TASKS; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    ASSERT_EQ(cs->counter, (long)COUNTER_TASKS * COUNTER_ITERS);
    ASSERT_LE(atomic_load(&cs->max_in_sem), 3);
    ASSERT_EQ(atomic_load(&cs->in_sem), 0);
    ASSERT_EQ(weft_sem_try_acquire(&cs->s), 0);
    ASSERT_EQ(weft_sem_try_acquire(&cs->s), 0);
    ASSERT_EQ(weft_sem_try_acquire(&cs->s), 0);
    ASSERT_EQ(weft_sem_try_acquire(&cs->s), -EAGAIN);
    free(cs);
    return NULL;
}
TEST(torture_mutex_counter_and_semaphore)
{
    run_one_and_two(main_counter_torture, NULL);
}

#define MPMC_PRODUCERS    8
#define MPMC_CONSUMERS    8
#define MPMC_PER_PRODUCER 3000

typedef struct mpmc {
    weft_chan *c;
    _Atomic uint8_t seen[MPMC_PRODUCERS * MPMC_PER_PRODUCER];
    _Atomic uint64_t sum;
    weft_waitgroup producers_done;
} mpmc;

typedef struct mpmc_producer_arg {
    mpmc *q;
    int index;
} mpmc_producer_arg;

static void *mpmc_producer(void *arg)
{
    mpmc *q = ((mpmc_producer_arg *)arg)->q;
    int p = ((mpmc_producer_arg *)arg)->index;
    for (int i = 0; i < MPMC_PER_PRODUCER; i++) {
        uint32_t v = (uint32_t)(p * MPMC_PER_PRODUCER + i);
        if (i % 2)
            ASSERT_OK(weft_chan_send(q->c, &v));
        else {
            int r;
            while ((r = weft_chan_try_send(q->c, &v)) == -EAGAIN)
                ASSERT_OK(weft_yield());
            ASSERT_OK(r);
        }
    }
    weft_waitgroup_done(&q->producers_done);
    return NULL;
}

static void *mpmc_consumer(void *arg)
{
    mpmc *q = arg;
    uint32_t v;
    int r;
    while ((r = weft_chan_recv(q->c, &v)) == 0) {
        ASSERT_LT(v, MPMC_PRODUCERS * MPMC_PER_PRODUCER);
        atomic_fetch_add(&q->seen[v], 1);
        atomic_fetch_add(&q->sum, v);
    }
    ASSERT_EQ(r, -EPIPE);
    return NULL;
}

static void *mpmc_closer(void *arg)
{
    mpmc *q = arg;
    ASSERT_OK(weft_waitgroup_wait(&q->producers_done));
    weft_chan_close(q->c);
    return NULL;
}

static void *main_mpmc(void *arg)
{
    size_t cap = (size_t)(uintptr_t)arg;
    mpmc *q = calloc(1, sizeof *q);
    ASSERT_OK(weft_chan_create(&q->c, sizeof(uint32_t), cap));
    ASSERT_OK(weft_waitgroup_init(&q->producers_done));
    weft_waitgroup_add(&q->producers_done, MPMC_PRODUCERS);
    weft_task *t[MPMC_PRODUCERS + MPMC_CONSUMERS + 1];
    int n = 0;
    ASSERT_OK(weft_spawn(&t[n++], mpmc_closer, q));
    for (int i = 0; i < MPMC_CONSUMERS; i++)
        ASSERT_OK(weft_spawn(&t[n++], mpmc_consumer, q));
    mpmc_producer_arg args[MPMC_PRODUCERS];
    for (int i = 0; i < MPMC_PRODUCERS; i++) {
        args[i] = (mpmc_producer_arg){q, i};
        ASSERT_OK(weft_spawn(&t[n++], mpmc_producer, &args[i]));
    }
    for (int i = 0; i < n; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    uint64_t total = MPMC_PRODUCERS * MPMC_PER_PRODUCER;
    ASSERT_EQ(atomic_load(&q->sum), total * (total - 1) / 2);
    for (uint64_t i = 0; i < total; i++)
        if (atomic_load(&q->seen[i]) != 1)
            FAILF("element %llu received %d times", (unsigned long long)i,
                  atomic_load(&q->seen[i]));
    weft_chan_destroy(q->c);
    free(q);
    return NULL;
}
TEST(torture_mpmc_channel)
{
    run_one_and_two(main_mpmc, (void *)(uintptr_t)16);
    run_one_and_two(main_mpmc, (void *)(uintptr_t)1);
    run_one_and_two(main_mpmc, (void *)(uintptr_t)0);
}

/* The calls that never wait work in a cancelled task (its cleanup may
 * need them), while every waiting call refuses it on entry. */
static weft_mutex cleanup_mutex = WEFT_MUTEX_INIT;
static weft_sem cleanup_sem = WEFT_SEM_INIT(1);
static weft_chan *cleanup_chan;

static void *cancelled_cleanup(void *arg)
{
    (void)arg;
    while (!weft_cancelled())
        (void)weft_yield();
    int v = 7, got = 0;
    ASSERT_EQ(weft_mutex_lock(&cleanup_mutex), -ECANCELED);
    ASSERT_OK(weft_mutex_trylock(&cleanup_mutex));
    weft_mutex_unlock(&cleanup_mutex);
    ASSERT_EQ(weft_sem_acquire(&cleanup_sem), -ECANCELED);
    ASSERT_OK(weft_sem_try_acquire(&cleanup_sem));
    weft_sem_release(&cleanup_sem);
    ASSERT_EQ(weft_chan_send(cleanup_chan, &v), -ECANCELED);
    ASSERT_OK(weft_chan_try_send(cleanup_chan, &v));
    ASSERT_OK(weft_chan_try_recv(cleanup_chan, &got));
    ASSERT_EQ(got, 7);
    return NULL;
}

static void *main_cancelled_cleanup(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_chan_create(&cleanup_chan, 1, sizeof(int)));
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, cancelled_cleanup, NULL));
    ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    weft_chan_destroy(cleanup_chan);
    return NULL;
}
TEST(calls_that_never_wait_work_in_a_cancelled_task)
{
    run_main(NULL, main_cancelled_cleanup, NULL);
}

TEST_MAIN(CASE(outside_a_task_and_bad_input), CASE(blocking_for_times_out_and_keeps_a_handoff),
          CASE(calls_that_never_wait_work_in_a_cancelled_task), CASE(chan_create_out_of_memory),
          CASE(chan_buffered_fifo), CASE(chan_waiters_are_served_fifo), CASE(chan_rendezvous),
          CASE(chan_close_wakes_everyone_and_drains), CASE(mutex_basics_and_fifo_handoff),
          CASE(semaphore_basics_and_fifo_handoff), CASE(event_pending_slot_and_order),
          CASE(event_wait_locked_is_a_condition_variable), CASE(waitgroup_basics),
          CASE(watermark_wakes_each_waiter_at_its_target),
          CASE(watermark_group_commit_across_threads), CASE(caller_bugs_are_reported_in_debug),
          CASE(cancel_and_deadline_interrupt_every_wait), CASE(grant_that_beats_the_cancel_is_kept),
          CASE(cancelled_task_is_refused_on_entry_unless_shielded),
          CASE(cancelled_receivers_lose_no_element), CASE(cancelled_lockers_never_lose_the_mutex),
          CASE(foreign_thread_channel_blocking), CASE(foreign_thread_signals_tasks),
          CASE(torture_threads_and_tasks_share_a_channel),
          CASE(torture_mutex_counter_and_semaphore), CASE(torture_mpmc_channel))
