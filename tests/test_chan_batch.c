/* Channel batch receive (weft_chan_recv_many and its forms) and the
 * evicting send (weft_chan_send_evict). */
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

static void fill(weft_chan *c, int from, int n)
{
    for (int i = from; i < from + n; i++)
        ASSERT_OK(weft_chan_try_send(c, &i));
}

static void expect(const int *got, ssize_t n, const int *want, ssize_t nwant)
{
    ASSERT_EQ(n, nwant);
    for (ssize_t i = 0; i < n; i++)
        ASSERT_EQ(got[i], want[i]);
}

/* ---- batch receive --------------------------------------------------------- */

static void *main_takes_what_is_there(void *arg)
{
    weft_chan *c;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 8));
    int got[16];
    fill(c, 0, 5);
    expect(got, weft_chan_recv_many(c, got, 3), (int[]){0, 1, 2}, 3);
    expect(got, weft_chan_recv_many(c, got, 16), (int[]){3, 4}, 2);
    ASSERT_EQ(weft_chan_try_recv_many(c, got, 16), -EAGAIN);
    /* The ring wraps: elements come out oldest first across the end. */
    fill(c, 10, 8);
    expect(got, weft_chan_try_recv_many(c, got, 6), (int[]){10, 11, 12, 13, 14, 15}, 6);
    fill(c, 18, 4);
    expect(got, weft_chan_try_recv_many(c, got, 16), (int[]){16, 17, 18, 19, 20, 21}, 6);
    /* Buffered elements still come out after a close; then -EPIPE. */
    fill(c, 30, 2);
    weft_chan_close(c);
    expect(got, weft_chan_recv_many(c, got, 16), (int[]){30, 31}, 2);
    ASSERT_EQ(weft_chan_recv_many(c, got, 16), -EPIPE);
    ASSERT_EQ(weft_chan_try_recv_many(c, got, 16), -EPIPE);
    weft_chan_destroy(c);
    return NULL;
}
TEST(recv_many_takes_what_is_there_oldest_first)
{
    run_main(NULL, main_takes_what_is_there, NULL);
}

/* A receiver parked on an empty channel gets the first element handed to
 * it, and when it runs, what was sent after. */
typedef struct batch_receiver {
    weft_chan *c;
    int got[16];
    ssize_t n;
    _Atomic bool started;
} batch_receiver;

static void *receives_a_batch(void *arg)
{
    batch_receiver *b = arg;
    atomic_store(&b->started, true);
    b->n = weft_chan_recv_many(b->c, b->got, 16);
    return NULL;
}

static void *main_wakes_with_a_batch(void *arg)
{
    batch_receiver b = {0};
    ASSERT_OK(weft_chan_create(&b.c, sizeof(int), 8));
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, receives_a_batch, &b));
    settle(); /* parked in recv_many */
    ASSERT(!weft_task_finished(t));
    fill(b.c, 0, 5); /* the first is copied into the receiver's buffer */
    ASSERT_EQ(weft_chan_len(b.c), 4);
    ASSERT_OK(weft_join(t, NULL));
    expect(b.got, b.n, (int[]){0, 1, 2, 3, 4}, 5);
    ASSERT_EQ(weft_chan_len(b.c), 0);
    weft_chan_destroy(b.c);
    return NULL;
}
TEST(a_parked_batch_receiver_takes_what_came_after_its_wake)
{
    run_main_one_worker(NULL, main_wakes_with_a_batch, NULL);
}

/* Senders waiting on a full channel move up as the batch frees slots, in
 * the order they waited; on a rendezvous channel the batch takes them
 * straight. */
typedef struct waiting_sender {
    weft_chan *c;
    int value;
    int rc;
} waiting_sender;

static void *sends_one(void *arg)
{
    waiting_sender *s = arg;
    s->rc = weft_chan_send(s->c, &s->value);
    return NULL;
}

static void *main_pulls_waiting_senders(void *arg)
{
    for (int capacity = 0; capacity <= 2; capacity += 2) {
        weft_chan *c;
        ASSERT_OK(weft_chan_create(&c, sizeof(int), (size_t)capacity));
        fill(c, 0, capacity);
        waiting_sender s[3];
        weft_task *t[3];
        for (int i = 0; i < 3; i++) {
            s[i] = (waiting_sender){c, 100 + i, 1};
            ASSERT_OK(weft_spawn(&t[i], sends_one, &s[i]));
        }
        settle(); /* all three wait: the ring is full (or has none) */
        for (int i = 0; i < 3; i++)
            ASSERT(!weft_task_finished(t[i]));
        int got[16];
        if (capacity == 0) {
            expect(got, weft_chan_recv_many(c, got, 2), (int[]){100, 101}, 2);
            expect(got, weft_chan_try_recv_many(c, got, 16), (int[]){102}, 1);
        } else {
            expect(got, weft_chan_recv_many(c, got, 16), (int[]){0, 1, 100, 101, 102}, 5);
        }
        for (int i = 0; i < 3; i++) {
            ASSERT_OK(weft_join(t[i], NULL));
            ASSERT_OK(s[i].rc);
        }
        weft_chan_destroy(c);
    }
    return NULL;
}
TEST(recv_many_pulls_waiting_senders_in_order)
{
    run_main_one_worker(NULL, main_pulls_waiting_senders, NULL);
}

/* An interrupted batch receive took nothing. */
static void *main_interrupted(void *arg)
{
    weft_chan *c;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 4));
    int got[4] = {-1, -1, -1, -1};
    ASSERT_OK(weft_deadline_push_in(2000000));
    ASSERT_EQ(weft_chan_recv_many(c, got, 4), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(got[0], -1);
    batch_receiver b = {.c = c};
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, receives_a_batch, &b));
    /* Started (maybe on another worker): a task cancelled before its
     * first run never runs. */
    for (int i = 0; !atomic_load(&b.started) && i < 100000; i++)
        ASSERT_OK(weft_sleep_ns(100000));
    ASSERT(atomic_load(&b.started));
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(b.n, -ECANCELED);
    /* Nothing was taken, and nothing left behind: the channel still works. */
    fill(c, 7, 1);
    expect(got, weft_chan_recv_many(c, got, 4), (int[]){7}, 1);
    weft_chan_destroy(c);
    return NULL;
}
TEST(an_interrupted_batch_receive_takes_nothing)
{
    run_main(NULL, main_interrupted, NULL);
}

/* Many senders on several workers, batch receivers: every element comes
 * out exactly once, and each sender's elements in the order it sent. */
enum { SENDERS = 4, PER_SENDER = 2000, RECEIVERS = 2 };

typedef struct torture {
    weft_chan *c;
    _Atomic int seen[SENDERS][PER_SENDER];
    _Atomic long batches, elements;
} torture;

static void *torture_sender(void *arg)
{
    torture *x = *(torture **)arg;
    int id = (int)((int *)arg)[2];
    for (int i = 0; i < PER_SENDER; i++) {
        int v = id * PER_SENDER + i;
        ASSERT_OK(weft_chan_send(x->c, &v));
    }
    return NULL;
}

static void *torture_receiver(void *arg)
{
    torture *x = arg;
    int last[SENDERS];
    for (int i = 0; i < SENDERS; i++)
        last[i] = -1;
    int got[7];
    for (;;) {
        ssize_t n = weft_chan_recv_many(x->c, got, 7);
        if (n == -EPIPE)
            break;
        ASSERT_GE(n, 1);
        ASSERT_LE(n, 7);
        atomic_fetch_add(&x->batches, 1);
        atomic_fetch_add(&x->elements, n);
        for (ssize_t k = 0; k < n; k++) {
            int sender = got[k] / PER_SENDER, i = got[k] % PER_SENDER;
            ASSERT_GT(i, last[sender]); /* a sender's elements in order */
            last[sender] = i;
            ASSERT_EQ(atomic_fetch_add(&x->seen[sender][i], 1), 0);
        }
    }
    return NULL;
}

static void *main_torture(void *arg)
{
    static torture x;
    memset(&x, 0, sizeof x);
    ASSERT_OK(weft_chan_create(&x.c, sizeof(int), 5));
    struct {
        torture *x;
        int id;
    } args[SENDERS];
    weft_task *s[SENDERS], *r[RECEIVERS];
    for (int i = 0; i < RECEIVERS; i++)
        ASSERT_OK(weft_spawn(&r[i], torture_receiver, &x));
    for (int i = 0; i < SENDERS; i++) {
        args[i].x = &x;
        args[i].id = i;
        ASSERT_OK(weft_spawn(&s[i], torture_sender, &args[i]));
    }
    for (int i = 0; i < SENDERS; i++)
        ASSERT_OK(weft_join(s[i], NULL));
    weft_chan_close(x.c);
    for (int i = 0; i < RECEIVERS; i++)
        ASSERT_OK(weft_join(r[i], NULL));
    ASSERT_EQ(atomic_load(&x.elements), SENDERS * PER_SENDER);
    for (int k = 0; k < SENDERS; k++)
        for (int i = 0; i < PER_SENDER; i++)
            ASSERT_EQ(atomic_load(&x.seen[k][i]), 1);
    weft_chan_destroy(x.c);
    return NULL;
}
TEST(batch_receivers_see_every_element_once_in_each_senders_order)
{
    weft_config one = {.workers = 1};
    run_main(&one, main_torture, NULL);
    weft_config two = {.workers = 2};
    run_main(&two, main_torture, NULL);
}

/* A plain thread receives in batches, blocking. */
typedef struct thread_batches {
    weft_chan *c;
    long total;
    _Atomic long last; /* the call that ended the loop; 0 until then */
} thread_batches;

static void *thread_receives(void *arg)
{
    thread_batches *b = arg;
    int got[8];
    ssize_t n;
    while ((n = weft_chan_recv_many_blocking(b->c, got, 8)) > 0)
        for (ssize_t k = 0; k < n; k++)
            b->total += got[k];
    atomic_store(&b->last, (long)n);
    return NULL;
}

static void *main_thread_batches(void *arg)
{
    thread_batches b = {0};
    ASSERT_OK(weft_chan_create(&b.c, sizeof(int), 4));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, thread_receives, &b));
    long want = 0;
    for (int i = 1; i <= 1000; i++) {
        ASSERT_OK(weft_chan_send(b.c, &i));
        want += i;
    }
    weft_chan_close(b.c);
    /* The thread is done once it saw -EPIPE: wait for it without blocking
     * the worker. */
    while (atomic_load(&b.last) == 0)
        ASSERT_OK(weft_sleep_ns(100000));
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_EQ(atomic_load(&b.last), -EPIPE);
    ASSERT_EQ(b.total, want);
    int got[2];
    /* From a task the blocking form is recv_many. */
    ASSERT_EQ(weft_chan_recv_many_blocking(b.c, got, 2), -EPIPE);
    weft_chan_destroy(b.c);
    return NULL;
}
TEST(a_plain_thread_receives_in_batches)
{
    run_main(NULL, main_thread_batches, NULL);
}

/* ---- the evicting send ----------------------------------------------------- */

static void *main_evicts_the_oldest(void *arg)
{
    weft_chan *c;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 3));
    int evicted = -1;
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(weft_chan_send_evict(c, &i, &evicted), 0);
    ASSERT_EQ(evicted, -1); /* nothing evicted yet */
    for (int i = 3; i < 8; i++) {
        ASSERT_EQ(weft_chan_send_evict(c, &i, &evicted), 1);
        ASSERT_EQ(evicted, i - 3);
    }
    int nine = 9;
    ASSERT_EQ(weft_chan_send_evict(c, &nine, NULL), 1); /* 5 dropped unseen */
    ASSERT_EQ(weft_chan_len(c), 3);
    int got[8];
    expect(got, weft_chan_try_recv_many(c, got, 8), (int[]){6, 7, 9}, 3);
    weft_chan_close(c);
    ASSERT_EQ(weft_chan_send_evict(c, &nine, &evicted), -EPIPE);
    weft_chan_destroy(c);
    return NULL;
}
TEST(send_evict_drops_the_oldest_when_full)
{
    run_main(NULL, main_evicts_the_oldest, NULL);
}

/* A waiting receiver gets the element straight; an evicting send goes
 * ahead of senders waiting for room. */
static void *main_evict_and_waiters(void *arg)
{
    weft_chan *c;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 3));
    batch_receiver b = {.c = c};
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, receives_a_batch, &b));
    settle();
    int v = 42, evicted = -1;
    ASSERT_EQ(weft_chan_send_evict(c, &v, &evicted), 0);
    ASSERT_EQ(evicted, -1);
    ASSERT_OK(weft_join(t, NULL));
    expect(b.got, b.n, (int[]){42}, 1);

    fill(c, 0, 3);
    waiting_sender s = {c, 99, 1};
    ASSERT_OK(weft_spawn(&t, sends_one, &s));
    settle(); /* waits for room */
    v = 7;
    ASSERT_EQ(weft_chan_send_evict(c, &v, &evicted), 1);
    ASSERT_EQ(evicted, 0);
    int got[8];
    expect(got, weft_chan_recv_many(c, got, 1), (int[]){1}, 1); /* frees a slot for 99 */
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_OK(s.rc);
    expect(got, weft_chan_try_recv_many(c, got, 8), (int[]){2, 7, 99}, 3);
    weft_chan_destroy(c);
    return NULL;
}
TEST(send_evict_feeds_a_waiting_receiver_and_goes_ahead_of_waiting_senders)
{
    run_main_one_worker(NULL, main_evict_and_waiters, NULL);
}

/* ---- bad input ------------------------------------------------------------- */

TEST(bad_input_and_outside_a_task)
{
    weft_chan *c, *rendezvous;
    ASSERT_OK(weft_chan_create(&c, sizeof(int), 2));
    ASSERT_OK(weft_chan_create(&rendezvous, sizeof(int), 0));
    int buf[4], v = 1;
    ASSERT_EQ(weft_chan_recv_many(NULL, buf, 4), -EINVAL);
    ASSERT_EQ(weft_chan_recv_many(c, NULL, 4), -EINVAL);
    ASSERT_EQ(weft_chan_recv_many(c, buf, 0), -EINVAL);
    ASSERT_EQ(weft_chan_try_recv_many(c, buf, SIZE_MAX / 2), -EINVAL); /* overflows */
    ASSERT_EQ(weft_chan_recv_many_blocking(NULL, buf, 4), -EINVAL);
    ASSERT_EQ(weft_chan_recv_many(c, buf, 4), -EPERM); /* outside a task */
    ASSERT_EQ(weft_chan_send_evict(NULL, &v, NULL), -EINVAL);
    ASSERT_EQ(weft_chan_send_evict(c, NULL, NULL), -EINVAL);
    ASSERT_EQ(weft_chan_send_evict(rendezvous, &v, NULL), -EINVAL);
    ASSERT_EQ(weft_chan_send_evict(c, &v, &v), -EINVAL);               /* overlaps */
    ASSERT_EQ(weft_chan_send_evict(c, buf, (char *)buf + 1), -EINVAL); /* overlaps */
    ASSERT_EQ(weft_chan_len(c), 0);
    /* Outside a task the calls that never wait work. */
    ASSERT_EQ(weft_chan_send_evict(c, &v, buf), 0);
    ASSERT_EQ(weft_chan_try_recv_many(c, buf, 4), 1);
    ASSERT_EQ(buf[0], 1);
    weft_chan_destroy(c);
    weft_chan_destroy(rendezvous);
}

TEST_MAIN(CASE(recv_many_takes_what_is_there_oldest_first),
          CASE(a_parked_batch_receiver_takes_what_came_after_its_wake),
          CASE(recv_many_pulls_waiting_senders_in_order),
          CASE(an_interrupted_batch_receive_takes_nothing),
          CASE(batch_receivers_see_every_element_once_in_each_senders_order),
          CASE(a_plain_thread_receives_in_batches), CASE(send_evict_drops_the_oldest_when_full),
          CASE(send_evict_feeds_a_waiting_receiver_and_goes_ahead_of_waiting_senders),
          CASE(bad_input_and_outside_a_task))
