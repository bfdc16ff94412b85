/* weft_relay: two-way copying between sockets, as a proxy does, on real
 * socket pairs and TCP connections on 127.0.0.1. Each case has a "user"
 * socket on either side of the relay: the client's and the server's. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "common/fault.h"
#include "context/stack.h"
#include "runtime/worker.h"
#include "test.h"

#define MS 1000000ull

static unsigned char byte_of(uint64_t i, unsigned salt)
{
    return (unsigned char)((i * 31 + salt) % 251);
}

/* Two socket pairs: client[0] is the client's end, client[1] the relay's;
 * server[0] the relay's, server[1] the server's. */
typedef struct sides {
    int client[2], server[2];
} sides;

static void sides_open(sides *s)
{
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->client));
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->server));
}

static void sides_close(sides *s)
{
    for (int i = 0; i < 2; i++) {
        close(s->client[i]);
        close(s->server[i]);
    }
}

/* Sends n patterned bytes to fd in pieces, then shuts its sending side. */
static void send_pattern(int fd, uint64_t n, unsigned salt)
{
    unsigned char chunk[3000];
    for (uint64_t at = 0; at < n;) {
        size_t k = n - at < sizeof chunk ? (size_t)(n - at) : sizeof chunk;
        for (size_t i = 0; i < k; i++)
            chunk[i] = byte_of(at + i, salt);
        size_t done;
        ASSERT_OK(weft_send_all(fd, chunk, k, MSG_NOSIGNAL, &done));
        at += k;
    }
    ASSERT_OK(shutdown(fd, SHUT_WR));
}

/* Reads fd to its end, checking the pattern; returns the byte count. */
static uint64_t recv_pattern(int fd, unsigned salt)
{
    unsigned char chunk[5000];
    uint64_t at = 0;
    for (;;) {
        ssize_t n = weft_recv(fd, chunk, sizeof chunk, 0);
        ASSERT_GE(n, 0);
        if (n == 0)
            return at;
        for (ssize_t i = 0; i < n; i++)
            ASSERT_EQ(chunk[i], byte_of(at + (uint64_t)i, salt));
        at += (uint64_t)n;
    }
}

/* ---- both ways, each end passed on ---------------------------------------- */

#define UP   300000u /* client to server */
#define DOWN 200000u /* server to client */

static void *client_side(void *arg)
{
    int fd = *(int *)arg;
    send_pattern(fd, UP, 1);
    ASSERT_EQ(recv_pattern(fd, 2), DOWN);
    return NULL;
}

/* Answers only once the client's end of stream came through the relay:
 * which the relay must pass on while its other direction is still busy. */
static void *server_side(void *arg)
{
    int fd = *(int *)arg;
    ASSERT_EQ(recv_pattern(fd, 1), UP);
    send_pattern(fd, DOWN, 2);
    return NULL;
}

static void *main_both_ways(void *arg)
{
    (void)arg;
    sides s;
    sides_open(&s);
    weft_task *c, *v;
    ASSERT_OK(weft_spawn(&c, client_side, &s.client[0]));
    ASSERT_OK(weft_spawn(&v, server_side, &s.server[1]));
    /* A small buffer: many reads and sends each way. The deadline only
     * turns a lost end of stream into a failure rather than a hang. */
    weft_relay_opts o = {.buf_size = 4096};
    weft_relay_counts moved;
    ASSERT_OK(weft_deadline_push_in(20000 * MS));
    ASSERT_OK(weft_relay(s.client[1], s.server[0], &o, &moved));
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(moved.a_to_b, UP);
    ASSERT_EQ(moved.b_to_a, DOWN);
    ASSERT_OK(weft_join(c, NULL));
    ASSERT_OK(weft_join(v, NULL));
    /* Both pumps are gone: the main task is the only one left. */
    ASSERT_EQ(stats_now().tasks_live, 1);
    sides_close(&s);
    return NULL;
}
TEST(relays_both_ways_and_passes_each_end_on)
{
    run_main(NULL, main_both_ways, NULL);
}

/* ---- the idle limit --------------------------------------------------------- */

#define TICKS 25

/* One byte every 20 ms from the server, 500 ms in all: the client never
 * sends, yet the relay (idle limit 200 ms) must not end meanwhile. */
static void *server_ticks(void *arg)
{
    int fd = *(int *)arg;
    for (int i = 0; i < TICKS; i++) {
        char b = (char)i;
        ASSERT_EQ(weft_send(fd, &b, 1, MSG_NOSIGNAL), 1);
        ASSERT_OK(weft_sleep_ns(20 * MS));
    }
    return NULL;
}

static _Atomic int relay_result = 1;
static weft_relay_counts relay_moved;

static void *relay_task(void *arg)
{
    const int *fds = arg;
    weft_relay_opts o = {.idle_ns = 200 * MS};
    atomic_store(&relay_result, weft_relay(fds[0], fds[1], &o, &relay_moved));
    return NULL;
}

static void *main_idle(void *arg)
{
    (void)arg;
    sides s;
    sides_open(&s);
    int fds[2] = {s.client[1], s.server[0]};
    weft_task *r, *v;
    ASSERT_OK(weft_spawn(&r, relay_task, fds));
    ASSERT_OK(weft_spawn(&v, server_ticks, &s.server[1]));
    /* Bounded so that a relay that ended early fails here, not hangs. */
    ASSERT_OK(weft_deadline_push_in(20000 * MS));
    for (int i = 0; i < TICKS; i++) {
        char b;
        ASSERT_EQ(weft_recv(s.client[0], &b, 1, 0), 1);
        ASSERT_EQ(b, (char)i);
    }
    ASSERT_OK(weft_deadline_pop());
    /* Traffic one way kept it alive past its limit... */
    ASSERT(!weft_task_finished(r));
    ASSERT_EQ(atomic_load(&relay_result), 1);
    ASSERT_OK(weft_join(v, NULL));
    /* ...and silence ends it. */
    ASSERT_OK(weft_join(r, NULL));
    ASSERT_EQ(atomic_load(&relay_result), -ETIMEDOUT);
    ASSERT_EQ(relay_moved.a_to_b, 0);
    ASSERT_EQ(relay_moved.b_to_a, TICKS);
    ASSERT_EQ(stats_now().tasks_live, 1);
    sides_close(&s);
    return NULL;
}
TEST(the_idle_limit_counts_both_directions)
{
    run_main(NULL, main_idle, NULL);
}

/* An idle limit of "never" (UINT64_MAX) must not wrap into the past: the
 * supervisor then spun on an expired deadline and its pumps never ran.
 * The outer deadline turns such a spin into a failure. */
static void *main_idle_forever(void *arg)
{
    (void)arg;
    sides s;
    sides_open(&s);
    ASSERT_OK(shutdown(s.client[0], SHUT_WR));
    ASSERT_OK(shutdown(s.server[1], SHUT_WR));
    weft_relay_opts o = {.idle_ns = UINT64_MAX};
    ASSERT_OK(weft_deadline_push_in(20000 * MS));
    ASSERT_OK(weft_relay(s.client[1], s.server[0], &o, NULL));
    ASSERT_OK(weft_deadline_pop());
    sides_close(&s);
    return NULL;
}
TEST(an_idle_limit_of_forever_never_fires)
{
    run_main(NULL, main_idle_forever, NULL);
}

/* A server that reads slowly but steadily, 4 KiB every 25 ms through
 * small socket buffers, behind a client that sent everything at once: the
 * relay's one receive takes most of it, and sending that takes 800 ms,
 * beyond the idle limit, yet bytes move all the time. Progress counted per
 * whole send (the kernel finishes a stream send only once all of it went
 * out) ended such a connection as idle. */
#define SLOW_BYTES (128u * 1024)

static void *fast_client(void *arg)
{
    int fd = *(int *)arg;
    send_pattern(fd, SLOW_BYTES, 3);
    return NULL;
}

static void *slow_server(void *arg)
{
    int fd = *(int *)arg;
    unsigned char b[4096];
    uint64_t at = 0;
    for (;;) {
        ssize_t n = weft_recv(fd, b, sizeof b, 0);
        ASSERT_GE(n, 0);
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            ASSERT_EQ(b[i], byte_of(at + (uint64_t)i, 3));
        at += (uint64_t)n;
        ASSERT_OK(weft_sleep_ns(25 * MS));
    }
    ASSERT_EQ(at, SLOW_BYTES);
    return NULL;
}

static void *main_slow_reader(void *arg)
{
    (void)arg;
    sides s;
    sides_open(&s);
    int small = 4096;
    ASSERT_OK(setsockopt(s.server[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
    ASSERT_OK(setsockopt(s.server[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small));
    ASSERT_OK(shutdown(s.server[1], SHUT_WR)); /* the server only reads */
    weft_task *c, *v;
    ASSERT_OK(weft_spawn(&c, fast_client, &s.client[0]));
    ASSERT_OK(weft_spawn(&v, slow_server, &s.server[1]));
    weft_relay_opts o = {.buf_size = 256 * 1024, .idle_ns = 500 * MS};
    weft_relay_counts moved;
    ASSERT_OK(weft_relay(s.client[1], s.server[0], &o, &moved));
    ASSERT_EQ(moved.a_to_b, SLOW_BYTES);
    ASSERT_OK(weft_join(c, NULL));
    ASSERT_OK(weft_join(v, NULL));
    sides_close(&s);
    return NULL;
}
TEST(a_slow_but_steady_reader_is_not_idle)
{
    run_main(NULL, main_slow_reader, NULL);
}

/* ---- errors ------------------------------------------------------------------ */

/* The client resets its connection: the relay reports it, and stops the
 * other direction, which was waiting on a quiet server. */
static void *main_reset(void *arg)
{
    (void)arg;
    int client[2], server[2];
    ASSERT_OK(tcp_pair(client));
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, server));
    int fds[2] = {client[1], server[0]};
    weft_task *r;
    atomic_store(&relay_result, 1);
    ASSERT_OK(weft_spawn(&r, relay_task, fds));
    ASSERT_OK(weft_yield()); /* the relay starts and waits */
    struct linger hard = {.l_onoff = 1, .l_linger = 0};
    ASSERT_OK(setsockopt(client[0], SOL_SOCKET, SO_LINGER, &hard, sizeof hard));
    close(client[0]); /* a reset, not an end of stream */
    ASSERT_OK(weft_join(r, NULL));
    ASSERT_EQ(atomic_load(&relay_result), -ECONNRESET);
    ASSERT_EQ(relay_moved.a_to_b + relay_moved.b_to_a, 0);
    close(client[1]);
    close(server[0]);
    close(server[1]);
    return NULL;
}
TEST(a_reset_stops_both_directions)
{
    run_main(NULL, main_reset, NULL);
}

/* The server has gone: its end of stream passes to the client, then the
 * client's next bytes meet a closed socket: -EPIPE, and no SIGPIPE (which
 * would end this process). */
static void *main_gone(void *arg)
{
    (void)arg;
    sides s;
    sides_open(&s);
    close(s.server[1]);
    int fds[2] = {s.client[1], s.server[0]};
    weft_task *r;
    atomic_store(&relay_result, 1);
    ASSERT_OK(weft_spawn(&r, relay_task, fds));
    char b;
    ASSERT_EQ(weft_recv(s.client[0], &b, 1, 0), 0); /* the server's end, passed on */
    ASSERT_EQ(weft_send(s.client[0], "x", 1, MSG_NOSIGNAL), 1);
    ASSERT_OK(weft_join(r, NULL));
    ASSERT_EQ(atomic_load(&relay_result), -EPIPE);
    ASSERT_EQ(relay_moved.a_to_b, 0); /* the byte never arrived */
    close(s.client[0]);
    close(s.client[1]);
    close(s.server[0]);
    return NULL;
}
TEST(a_gone_peer_gives_epipe_without_sigpipe)
{
    run_main(NULL, main_gone, NULL);
}

/* ---- the caller's cancellation and deadline --------------------------------- */

static void *main_cancel_and_deadline(void *arg)
{
    (void)arg;
    sides s;
    sides_open(&s);
    int fds[2] = {s.client[1], s.server[0]};
    weft_task *r;
    atomic_store(&relay_result, 1);
    ASSERT_OK(weft_spawn(&r, relay_task, fds));
    ASSERT_OK(weft_sleep_ns(MS)); /* parked in the relay */
    ASSERT_OK(weft_cancel(r));
    ASSERT_EQ(weft_join(r, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&relay_result), -ECANCELED);
    ASSERT_EQ(stats_now().tasks_live, 1); /* the pumps went with it */

    /* The caller's deadline, with bytes moving until it passes. */
    ASSERT_OK(weft_deadline_push_in(30 * MS));
    ASSERT_EQ(weft_send(s.client[0], "ab", 2, MSG_NOSIGNAL), 2);
    weft_relay_counts moved;
    ASSERT_EQ(weft_relay(s.client[1], s.server[0], NULL, &moved), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(moved.a_to_b, 2);
    ASSERT_EQ(moved.b_to_a, 0);
    char got[2];
    ASSERT_EQ(weft_recv(s.server[1], got, 2, 0), 2);
    ASSERT_EQ(stats_now().tasks_live, 1);
    sides_close(&s);
    return NULL;
}
TEST(the_callers_cancel_and_deadline_stop_it)
{
    run_main(NULL, main_cancel_and_deadline, NULL);
}

/* ---- bad input and failed allocations --------------------------------------- */

static void *main_bad_input(void *arg)
{
    (void)arg;
    sides s;
    sides_open(&s);
    weft_relay_counts moved = {7, 7};
    ASSERT_EQ(weft_relay(s.client[1], s.client[1], NULL, &moved), -EINVAL);
    ASSERT_EQ(moved.a_to_b + moved.b_to_a, 0);
    weft_relay_opts big = {.buf_size = 64 * 1024 * 1024 + 1};
    ASSERT_EQ(weft_relay(s.client[1], s.server[0], &big, NULL), -EINVAL);
    ASSERT_EQ(weft_relay(-1, s.server[0], NULL, NULL), -EBADF);
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(weft_relay(s.client[1], p[0], NULL, NULL), -ENOTSOCK);
    /* Message sockets: a 0-byte datagram is no end of stream, and a send
     * in 16 KiB steps would split a message. */
    int dg[2], sp[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dg));
    ASSERT_OK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp));
    ASSERT_EQ(weft_relay(s.client[1], dg[0], NULL, NULL), -EOPNOTSUPP);
    ASSERT_EQ(weft_relay(sp[0], s.server[0], NULL, NULL), -EOPNOTSUPP);
    for (int i = 0; i < 2; i++) {
        close(dg[i]);
        close(sp[i]);
    }
    close(p[0]);
    close(p[1]);
    /* The idle limit takes a deadline: none left after 16. */
    int pushed = 0;
    while (weft_deadline_push_in(60000 * MS) == 0)
        pushed++;
    ASSERT_EQ(pushed, 16);
    weft_relay_opts idle = {.idle_ns = 1000 * MS};
    ASSERT_EQ(weft_relay(s.client[1], s.server[0], &idle, NULL), -EOVERFLOW);
    while (pushed--)
        ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(stats_now().tasks_live, 1);
    sides_close(&s);
    return NULL;
}

/* A task already cancelled when it calls starts nothing: it waits out its
 * cancellation shielded, then calls. */
static _Atomic bool shielded;

static void *relay_when_cancelled(void *arg)
{
    const int *fds = arg;
    ASSERT_OK(weft_shield_push());
    atomic_store(&shielded, true);
    while (!weft_cancelled())
        (void)weft_yield();
    /* Inside the shield too: its pumps would start cancelled. */
    ASSERT_EQ(weft_relay(fds[0], fds[1], NULL, NULL), -ECANCELED);
    ASSERT_OK(weft_shield_pop());
    weft_relay_counts moved = {7, 7};
    atomic_store(&relay_result, weft_relay(fds[0], fds[1], NULL, &moved));
    ASSERT_EQ(moved.a_to_b + moved.b_to_a, 0);
    return NULL;
}

static void *main_cancelled_first(void *arg)
{
    (void)arg;
    sides s;
    sides_open(&s);
    int fds[2] = {s.client[1], s.server[0]};
    weft_task *t;
    atomic_store(&relay_result, 1);
    ASSERT_OK(weft_spawn(&t, relay_when_cancelled, fds));
    while (!atomic_load(&shielded)) /* it runs and shields itself */
        ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&relay_result), -ECANCELED);
    ASSERT_EQ(stats_now().tasks_live, 1);
    sides_close(&s);
    return NULL;
}

TEST(bad_input_gets_an_error)
{
    int fds[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
    ASSERT_EQ(weft_relay(fds[0], fds[1], NULL, NULL), -EPERM); /* no task */
    close(fds[0]);
    close(fds[1]);
    run_main(NULL, main_bad_input, NULL);
    run_main(NULL, main_cancelled_first, NULL);
}

/* A pump that gets no stack ends with -ENOMEM, which weft_join_any
 * reports as its outcome, the handle freed: the relay must not cancel and
 * join it again (debug builds assert that, release builds touched a freed
 * record). Every pooled stack but one is taken and new mappings fail, so
 * the first pump runs and the second gets none. */
static void *main_pump_without_stack(void *arg)
{
    (void)arg;
    weft__worker *w = weft__worker_self();
    int cls = w->rt->default_stack_class;
    sides s;
    sides_open(&s);
    enum { MAX_HELD = 4096 };
    static weft__stack *held[MAX_HELD];
    int n = 0;
    weft__fault_arm_from(WEFT_FAULT_MMAP, 1);
    while (n < MAX_HELD && weft__stack_acquire(&w->stacks, cls, &held[n]) == 0)
        n++;
    ASSERT_LT(n, MAX_HELD);
    ASSERT_GE(n, 1);
    weft__stack_release(&w->stacks, held[--n]);
    weft_relay_counts moved;
    int r = weft_relay(s.client[1], s.server[0], NULL, &moved);
    weft__fault_arm(WEFT_FAULT_MMAP, 0);
    ASSERT_EQ(r, -ENOMEM);
    ASSERT_EQ(moved.a_to_b + moved.b_to_a, 0);
    for (int i = 0; i < n; i++)
        weft__stack_release(&w->stacks, held[i]);
    ASSERT_EQ(stats_now().tasks_live, 1);
    sides_close(&s);
    return NULL;
}
TEST(a_pump_without_a_stack_ends_it_with_enomem)
{
    /* One worker, no stack helper: the pool is this worker's alone. */
    weft_config cfg = {.no_stack_helper = true};
    run_main_one_worker(&cfg, main_pump_without_stack, NULL);
}

/* Each allocation of a relay failing in turn (its buffers, its tasks'
 * records and names): -ENOMEM, nothing left behind (ASan's leak check),
 * until a run meets no failure and relays both ends of stream. */
static void *main_allocations(void *arg)
{
    (void)arg;
    int r = -ENOMEM;
    for (uint64_t nth = 1; r == -ENOMEM; nth++) {
        ASSERT_LT(nth, 100);
        sides s;
        sides_open(&s);
        ASSERT_OK(shutdown(s.client[0], SHUT_WR));
        ASSERT_OK(shutdown(s.server[1], SHUT_WR));
        weft_relay_counts moved;
        weft__fault_arm(WEFT_FAULT_ALLOC, nth);
        r = weft_relay(s.client[1], s.server[0], NULL, &moved);
        uint64_t seen = weft__fault_count(WEFT_FAULT_ALLOC);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
        if (r == -ENOMEM) {
            ASSERT_GE(seen, nth); /* the failure was this run's */
        } else {
            ASSERT_OK(r);
            ASSERT_LT(seen, nth);
            ASSERT_GE(nth, 2); /* the buffers at least were allocated */
            char b;
            ASSERT_EQ(weft_recv(s.client[0], &b, 1, 0), 0); /* ends passed on */
            ASSERT_EQ(weft_recv(s.server[1], &b, 1, 0), 0);
        }
        ASSERT_EQ(stats_now().tasks_live, 1);
        sides_close(&s);
    }
    return NULL;
}
TEST(allocation_failures_release_everything)
{
    run_main(NULL, main_allocations, NULL);
}

TEST_MAIN(CASE(relays_both_ways_and_passes_each_end_on),
          CASE(the_idle_limit_counts_both_directions), CASE(an_idle_limit_of_forever_never_fires),
          CASE(a_slow_but_steady_reader_is_not_idle), CASE(a_reset_stops_both_directions),
          CASE(a_gone_peer_gives_epipe_without_sigpipe),
          CASE(the_callers_cancel_and_deadline_stop_it), CASE(bad_input_gets_an_error),
          CASE(a_pump_without_a_stack_ends_it_with_enomem),
          CASE(allocation_failures_release_everything))
