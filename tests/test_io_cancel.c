/* Cancellation safety of I/O (DESIGN §2): an interrupted op is cancelled in
 * the kernel and waited for, so buffers are never written after the call
 * returns; a result that beat the cancellation is returned, never lost.
 * Every blocking op kind, deadlines, a cancellation storm, SQE faults. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "common/fault.h"
#include "test.h"

#define PATTERN 0xAA
#define BUF     256

/* Each kind blocks forever on something that never becomes ready, with a
 * stack buffer filled with PATTERN that the op would write into; it returns
 * what the blocking call returned, after checking the buffer. */
typedef struct blocker {
    const char *name;
    int (*block)(int fd, unsigned char *buf);
    bool needs_listener; /* fd is a listening socket, else a socket/pipe read end */
} blocker;

static int block_recv(int fd, unsigned char *buf)
{
    return (int)weft_recv(fd, buf, BUF, 0);
}

static int block_read(int fd, unsigned char *buf)
{
    return (int)weft_read(fd, buf, BUF, WEFT_OFF_CURRENT);
}

static int block_readv(int fd, unsigned char *buf)
{
    struct iovec iov = {buf, BUF};
    return (int)weft_readv(fd, &iov, 1, WEFT_OFF_CURRENT);
}

static int block_recvmsg(int fd, unsigned char *buf)
{
    struct iovec iov = {buf, BUF};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    return (int)weft_recvmsg(fd, &m, 0);
}

static int block_accept(int fd, unsigned char *buf)
{
    socklen_t len = BUF;
    return weft_accept(fd, (struct sockaddr *)buf, &len, 0);
}

static int block_poll(int fd, unsigned char *buf)
{
    (void)buf;
    return weft_poll(fd, POLLIN);
}

static uint32_t futex_word;

static int block_futex(int fd, unsigned char *buf)
{
    (void)fd;
    (void)buf;
    return weft_futex_wait(&futex_word, 0, 0, 0);
}

static int block_epoll(int fd, unsigned char *buf)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    int r = weft_epoll_wait(ep, (struct epoll_event *)buf, BUF / sizeof(struct epoll_event));
    close(ep);
    return r;
}

/* SPLICE and TEE from an empty pipe. The kernel runs both on an io-wq
 * worker, and a cancel interrupts them with a restart code (-512), which
 * must not reach the caller. */
static int block_pipe_op(bool tee)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
        return -errno;
    ssize_t r =
        tee ? weft_tee(in[0], out[1], 4096, 0) : weft_splice(in[0], -1, out[1], -1, 4096, 0);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    return (int)r;
}

static int block_splice(int fd, unsigned char *buf)
{
    (void)fd;
    (void)buf;
    return block_pipe_op(false);
}

static int block_tee(int fd, unsigned char *buf)
{
    (void)fd;
    (void)buf;
    return block_pipe_op(true);
}

static int block_batch(int fd, unsigned char *buf)
{
    struct io_uring_sqe sqes[2];
    io_uring_prep_recv(&sqes[0], fd, buf, BUF / 2, 0);
    io_uring_prep_recv(&sqes[1], fd, buf + BUF / 2, BUF / 2, 0);
    int res[2];
    return weft_batch(sqes, res, 2, 0);
}

static int block_sleep(int fd, unsigned char *buf)
{
    (void)fd;
    (void)buf;
    return weft_sleep_ns(3600ull * 1000000000ull);
}

static const blocker blockers[] = {
    {"recv", block_recv, false},        {"read", block_read, false},
    {"readv", block_readv, false},      {"recvmsg", block_recvmsg, false},
    {"accept", block_accept, true},     {"poll", block_poll, false},
    {"futex_wait", block_futex, false}, {"epoll_wait", block_epoll, false},
    {"batch", block_batch, false},      {"sleep", block_sleep, false},
    {"splice", block_splice, false},    {"tee", block_tee, false},
};
#define NBLOCKERS (sizeof blockers / sizeof blockers[0])

typedef struct blocked_arg {
    const blocker *b;
    int fd;
    bool use_deadline;
    int result;
    bool untouched;
    _Atomic bool started;
} blocked_arg;

static void *blocked_task(void *arg)
{
    blocked_arg *a = arg;
    unsigned char buf[BUF];
    memset(buf, PATTERN, sizeof buf);
    if (a->use_deadline)
        ASSERT_OK(weft_deadline_push(weft_now_ns() + 5000000));
    atomic_store(&a->started, true);
    a->result = a->b->block(a->fd, buf);
    a->untouched = true;
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != PATTERN)
            a->untouched = false;
    if (a->use_deadline)
        ASSERT_OK(weft_deadline_pop());
    return NULL;
}

static void *main_every_kind(void *arg)
{
    bool deadline = arg != NULL;
    for (size_t i = 0; i < NBLOCKERS; i++) {
        const blocker *b = &blockers[i];
        int sv[2] = {-1, -1}, fd;
        if (b->needs_listener) {
            fd = tcp_listener(NULL);
        } else {
            ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
            fd = sv[0];
        }
        blocked_arg a = {.b = b, .fd = fd, .use_deadline = deadline};
        weft_stats st;
        ASSERT_OK(weft_stats_snapshot(&st));
        uint64_t in_flight_before = st.ops_in_flight;
        weft_task *t;
        ASSERT_OK(weft_spawn(&t, blocked_task, &a));
        /* Let it start (with two workers, the other may have taken it and
         * be slow to run it: a task cancelled before it starts never runs),
         * and its op go out, so that the cancel is the kernel's to do (a
         * sleep has no op); then a little longer to block there. Waited
         * for, not timed. */
        bool has_op = b->block != block_sleep && !deadline; /* a deadline's own timing */
        for (int w = 0; w < 100000; w++) {
            ASSERT_OK(weft_stats_snapshot(&st));
            if (atomic_load(&a.started) && (!has_op || st.ops_in_flight > in_flight_before))
                break;
            ASSERT_OK(weft_sleep_ns(100000));
        }
        ASSERT(atomic_load(&a.started));
        if (has_op)
            ASSERT_GT(st.ops_in_flight, in_flight_before);
        ASSERT_OK(weft_sleep_ns(2000000));
        if (!deadline)
            ASSERT_OK(weft_cancel(t));
        int jr = weft_join(t, NULL);
        int want = deadline ? -ETIMEDOUT : -ECANCELED;
        if (a.result != want)
            FAILF("%s: returned %d, expected %d", b->name, a.result, want);
        if (!deadline)
            ASSERT_EQ(jr, -ECANCELED);
        if (!a.untouched)
            FAILF("%s: the buffer was written", b->name);
        if (!b->needs_listener) {
            /* Nothing was consumed: data sent now is all still readable. */
            ASSERT_EQ(write(sv[1], "late", 4), 4);
            char got[8];
            ASSERT_EQ(recv(sv[0], got, sizeof got, MSG_DONTWAIT), 4);
            ASSERT(memcmp(got, "late", 4) == 0);
            close(sv[1]);
        }
        close(fd);
        weft_stats s;
        ASSERT_OK(weft_stats_snapshot(&s));
        ASSERT_EQ(s.ops_in_flight, s.workers); /* only each worker's own wake-up read */
    }
    return NULL;
}
TEST(cancelling_every_blocking_kind_leaves_buffers_untouched)
{
    run_main(NULL, main_every_kind, NULL);
}
TEST(deadlines_interrupt_every_blocking_kind)
{
    run_main(NULL, main_every_kind, (void *)1);
}

/* The op completes in the kernel while its task is being cancelled: either
 * its real result comes back (and the next call reports the cancel), or it
 * was cancelled and the data is still in the socket. Never lost. */
static int race_sv[2];
static ssize_t race_got;
static int race_next;
/* 0: weft_recv, 1: weft_uring_op, 2: weft_batch of one recv, 3: a chained
 * batch of the recv and a LINK_TIMEOUT of 10 s bounding it */
static int race_mode;

static void prep_race_recv(struct io_uring_sqe *sqe, void *ctx)
{
    io_uring_prep_recv(sqe, race_sv[0], ctx, 64, 0);
}

static void *racing_reader(void *arg)
{
    char *buf = arg;
    if (race_mode >= 2) {
        /* A batch that returns -ECANCELED must have had its op cut
         * short; one whose recv completed returns its count, 1 (the
         * LINK_TIMEOUT's -ECANCELED is its normal end then). */
        struct io_uring_sqe sqe[2];
        memset(sqe, 0, sizeof sqe);
        prep_race_recv(&sqe[0], buf);
        struct __kernel_timespec ten_s = {.tv_sec = 10};
        io_uring_prep_link_timeout(&sqe[1], &ten_s, 0);
        unsigned n = race_mode == 3 ? 2 : 1;
        int res[2] = {0, 0};
        int r = weft_batch(sqe, res, n, race_mode == 3 ? WEFT_BATCH_CHAIN : 0);
        if (r == 1)
            race_got = res[0];
        else if (r == -ECANCELED && res[0] == -ECANCELED)
            race_got = r;
        else
            FAILF("batch of %u: %d with res %d, %d", n, r, res[0], res[1]);
    } else {
        race_got =
            race_mode ? weft_uring_op(prep_race_recv, buf) : weft_recv(race_sv[0], buf, 64, 0);
    }
    race_next = weft_nop();
    return NULL;
}

/* weft_uring_op returned -ECANCELED for a recv that had its 10 bytes,
 * which were then gone from the socket; weft_batch did the same until
 * 2026-12-07 (its res[] had the 10). */
static void *main_race(void *arg)
{
    int delivered = 0, cancelled = 0;
    for (int round = 0; round < 200; round++) {
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, race_sv));
        char buf[64];
        weft_task *t;
        ASSERT_OK(weft_spawn(&t, racing_reader, buf));
        ASSERT_OK(weft_yield()); /* the reader prepares its recv and parks */
        /* Even rounds: the recv is in the kernel, waiting, when the data and
         * the cancel come. Odd rounds: the recv, the data and the cancel
         * reach the kernel together, and the recv completes at once. */
        if (round % 2 == 0)
            ASSERT_OK(weft_nop());
        /* Data and cancellation at once, without a scheduling point. */
        ASSERT_EQ(write(race_sv[1], "0123456789", 10), 10);
        ASSERT_OK(weft_cancel(t));
        ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
        if (race_got == 10) {
            ASSERT(memcmp(buf, "0123456789", 10) == 0);
            ASSERT_EQ(race_next, -ECANCELED); /* reported by the next call */
            delivered++;
        } else {
            ASSERT_EQ(race_got, -ECANCELED);
            char rest[16];
            ASSERT_EQ(recv(race_sv[0], rest, sizeof rest, MSG_DONTWAIT), 10);
            cancelled++;
        }
        close(race_sv[0]);
        close(race_sv[1]);
    }
    printf("race: %d delivered, %d cancelled\n", delivered, cancelled);
    /* Both outcomes happened, so both paths were checked. */
    ASSERT_GT(delivered, 0);
    ASSERT_GT(cancelled, 0);
    return NULL;
}
TEST(a_result_that_beats_the_cancel_is_returned)
{
    /* Both outcomes need the ring's completions held until its worker
     * reaps them (DEFER_TASKRUN): a ring parked in ppoll (WEFT_PARK=poll)
     * lacks it, and its recv completes as the write returns. */
    setenv("WEFT_PARK", "enter", 1);
    run_main_one_worker(NULL, main_race, NULL) /* the reader must start within one yield */;
    race_mode = 1;
    run_main_one_worker(NULL, main_race, NULL);
    race_mode = 2;
    run_main_one_worker(NULL, main_race, NULL);
    race_mode = 3;
    run_main_one_worker(NULL, main_race, NULL);
    race_mode = 0;
}

/* Batches whose task is cancelled while they are out, where a cancelled
 * result is or is not the cancel's doing. The batch says -ECANCELED only
 * when the cancel cut an op short; else its count, and the next call the
 * cancel. A break of a chain cancels the rest of it in the kernel: after
 * an op that failed, or that moved less than asked (a short read), the
 * whole rest of the chain, hard links in it or not; a TIMEOUT's -ETIME
 * under IORING_TIMEOUT_ETIME_SUCCESS breaks nothing. */
enum { CHAIN_MAX = 4, CHAIN_GID = 9 };
typedef struct chain_case {
    const char *name;
    unsigned n, flags;
    /* after the task's first yield: 0 = cancel at once (the SQEs may not
     * even be submitted yet), else sleep this long first, so that every
     * op that can end has ended and been seen */
    uint64_t sleep_ns;
    int ret, res[CHAIN_MAX]; /* expected */
} chain_case;

static int chain_short[2], chain_empty[2], chain_sock[2], chain_null;
static char chain_pbuf[16];
static const chain_case *chain_now;
static int chain_ret, chain_res[CHAIN_MAX], chain_next;

static void prep_chain(struct io_uring_sqe *s, const char *name)
{
    static char buf[16];
    static struct __kernel_timespec ms = {.tv_nsec = 1000000};
    memset(s, 0, CHAIN_MAX * sizeof *s);
    if (!strcmp(name, "failed")) {
        io_uring_prep_read(&s[0], 1000, buf, sizeof buf, 0); /* no such fd: -EBADF */
        io_uring_prep_nop(&s[1]);
    } else if (!strcmp(name, "short")) {
        io_uring_prep_read(&s[0], chain_short[0], buf, sizeof buf, 0); /* 3 of 16 */
        io_uring_prep_nop(&s[1]);
    } else if (!strcmp(name, "hard_link_after_failure")) {
        io_uring_prep_read(&s[0], 1000, buf, sizeof buf, 0);
        s[0].flags |= IOSQE_IO_LINK;
        io_uring_prep_nop(&s[1]);
        s[1].flags |= IOSQE_IO_HARDLINK;
        io_uring_prep_nop(&s[2]);
    } else if (!strcmp(name, "etime_success")) {
        io_uring_prep_timeout(&s[0], &ms, 0, IORING_TIMEOUT_ETIME_SUCCESS);
        io_uring_prep_read(&s[1], chain_empty[0], buf, sizeof buf, -1);
    } else if (!strcmp(name, "broken_unseen_then_cut")) {
        /* 3 bytes read into a picked 16-byte buffer: the kernel breaks
         * the chain, weft cannot tell (that length is the kernel's). Then
         * a receive of all 16 bytes, which has 3 when the cancel cuts it */
        io_uring_prep_read(&s[0], chain_short[0], NULL, sizeof buf, (uint64_t)-1);
        s[0].flags |= IOSQE_BUFFER_SELECT | IOSQE_IO_LINK;
        s[0].buf_group = CHAIN_GID;
        io_uring_prep_nop(&s[1]);
        io_uring_prep_recv(&s[2], chain_sock[0], buf, sizeof buf, MSG_WAITALL);
    } else if (!strcmp(name, "capped_write_then_cut")) {
        /* 2 GiB asked, 0x7ffff000 moved: the kernel's cap, in full, so
         * the chain goes on to the poll, which the cancel cuts */
        io_uring_prep_write(&s[0], chain_null, buf, 0x80000000u, 0);
        io_uring_prep_poll_add(&s[1], chain_empty[0], POLLIN);
    } else if (!strcmp(name, "waitall_cut_in_chain")) {
        /* the receive has 3 of 16 bytes when the cancel cuts it */
        io_uring_prep_recv(&s[0], chain_sock[0], buf, sizeof buf, MSG_WAITALL);
        io_uring_prep_nop(&s[1]);
    } else if (!strcmp(name, "broken_then_cut")) {
        io_uring_prep_read(&s[0], chain_short[0], buf, sizeof buf, 0);
        s[0].flags |= IOSQE_IO_LINK;
        io_uring_prep_nop(&s[1]);
        io_uring_prep_poll_add(&s[2], chain_empty[0], POLLIN);
    }
}

static void *batch_a_chain(void *arg)
{
    (void)arg;
    struct io_uring_sqe sqe[CHAIN_MAX];
    prep_chain(sqe, chain_now->name);
    chain_ret = weft_batch(sqe, chain_res, chain_now->n, chain_now->flags);
    chain_next = weft_nop();
    return NULL;
}

static void *main_chain(void *arg)
{
    (void)arg;
    ASSERT_OK(pipe2(chain_short, O_CLOEXEC));
    ASSERT_OK(pipe2(chain_empty, O_CLOEXEC));
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chain_sock));
    ASSERT((chain_null = open("/dev/null", O_WRONLY | O_CLOEXEC)) >= 0);
    ASSERT_EQ(write(chain_short[1], "abc", 3), 3);
    ASSERT_EQ(write(chain_sock[1], "abc", 3), 3);
    ASSERT_EQ(weft_buffers_provide(chain_pbuf, sizeof chain_pbuf, 1, CHAIN_GID, 0), 0);
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, batch_a_chain, NULL));
    ASSERT_OK(weft_yield()); /* it queues its SQEs and parks */
    if (chain_now->sleep_ns)
        ASSERT_OK(weft_sleep_ns(chain_now->sleep_ns));
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    for (unsigned i = 0; i < chain_now->n; i++)
        if (chain_res[i] != chain_now->res[i])
            FAILF("%s: res[%u] %d, expected %d", chain_now->name, i, chain_res[i],
                  chain_now->res[i]);
    if (chain_ret != chain_now->ret)
        FAILF("%s: the batch says %d, expected %d", chain_now->name, chain_ret, chain_now->ret);
    ASSERT_EQ(chain_next, -ECANCELED);
    for (int i = 0; i < 2; i++) {
        close(chain_short[i]);
        close(chain_empty[i]);
        close(chain_sock[i]);
    }
    close(chain_null);
    return NULL;
}

TEST(a_chain_broken_by_a_failure_is_not_reported_as_cancelled)
{
    static const chain_case cases[] = {
        /* the read fails, the nop is the kernel's -ECANCELED */
        {"failed", 2, WEFT_BATCH_CHAIN, 0, 0, {-EBADF, -ECANCELED}},
        /* a short read breaks the chain as a failure does */
        {"short", 2, WEFT_BATCH_CHAIN, 0, 1, {3, -ECANCELED}},
        /* the hard link on the second op does not keep the third going */
        {"hard_link_after_failure", 3, 0, 0, 0, {-EBADF, -ECANCELED, -ECANCELED}},
        /* the timeout ends (-ETIME) without breaking the chain: the read
         * after it waits, and the cancel cuts it short */
        {"etime_success", 2, WEFT_BATCH_CHAIN, 20000000, -ECANCELED, {-ETIME, -ECANCELED}},
        /* the chain broke, for a reason weft cannot see (a short read
         * into a picked buffer), before the cancel, which then cut a
         * receive of all 16 bytes half-way */
        {"broken_unseen_then_cut", 3, 0, 2000000, -ECANCELED, {3, -ECANCELED, 3}},
        {"capped_write_then_cut",
         2,
         WEFT_BATCH_CHAIN,
         2000000,
         -ECANCELED,
         {0x7ffff000, -ECANCELED}},
        /* a cut receive breaks the chain: the interruption's doing */
        {"waitall_cut_in_chain", 2, WEFT_BATCH_CHAIN, 2000000, -ECANCELED, {3, -ECANCELED}},
        /* the chain broke before the cancel, which then cut the poll */
        {"broken_then_cut", 3, 0, 2000000, -ECANCELED, {3, -ECANCELED, -ECANCELED}},
    };
    setenv("WEFT_PARK", "enter", 1);
    ASSERT(fcntl(1000, F_GETFD) < 0); /* free */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        chain_now = &cases[i];
        run_main_one_worker(NULL, main_chain, NULL);
    }
}

/* ---- the storm -------------------------------------------------------------- */

#define STORM_PAIRS  1000
#define STORM_ROUNDS 20
#define STORM_CHUNK  100

typedef struct pair {
    int rd, wr;
    uint64_t sent, delivered;
    bool bad_data;
    weft_task *reader;
} pair;

static pair *pairs;
static unsigned npairs;

static unsigned char byte_at(uint64_t i)
{
    return (unsigned char)(i * 7 % 251);
}

static void *storm_reader(void *arg)
{
    pair *p = arg;
    unsigned char buf[STORM_CHUNK * 2];
    for (;;) {
        ssize_t n = weft_recv(p->rd, buf, sizeof buf, 0);
        if (n <= 0)
            return NULL; /* cancelled (or the writer side closed) */
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != byte_at(p->delivered + (uint64_t)i))
                p->bad_data = true;
        p->delivered += (uint64_t)n;
    }
}

static void *storm_writer(void *arg)
{
    (void)arg;
    unsigned char chunk[STORM_CHUNK];
    for (int round = 0; round < STORM_ROUNDS; round++) {
        for (unsigned i = 0; i < npairs; i++) {
            pair *p = &pairs[i];
            for (int k = 0; k < STORM_CHUNK; k++)
                chunk[k] = byte_at(p->sent + (uint64_t)k);
            ssize_t n = weft_send(p->wr, chunk, sizeof chunk, 0);
            ASSERT_EQ(n, STORM_CHUNK);
            p->sent += (uint64_t)n;
        }
        ASSERT_OK(weft_yield());
    }
    return NULL;
}

static void *storm_canceller(void *arg)
{
    (void)arg;
    unsigned seed = 12345;
    for (unsigned k = 0; k < npairs; k++) {
        unsigned i = (unsigned)rand_r(&seed) % npairs;
        weft_cancel(pairs[i].reader);
        if (k % 16 == 0)
            ASSERT_OK(weft_yield());
    }
    return NULL;
}

static void *main_storm(void *arg)
{
    (void)arg;
    int fds_before = count_fds();
    for (unsigned i = 0; i < npairs; i++) {
        int sv[2];
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        pairs[i] = (pair){.rd = sv[0], .wr = sv[1]};
        ASSERT_OK(weft_spawn(&pairs[i].reader, storm_reader, &pairs[i]));
    }
    weft_task *w, *c;
    ASSERT_OK(weft_spawn(&w, storm_writer, NULL));
    ASSERT_OK(weft_spawn(&c, storm_canceller, NULL));
    ASSERT_OK(weft_join(w, NULL));
    ASSERT_OK(weft_join(c, NULL));
    /* Readers still running are cancelled now, so all have stopped. */
    unsigned cancelled = 0;
    for (unsigned i = 0; i < npairs; i++) {
        weft_cancel(pairs[i].reader);
        if (weft_join(pairs[i].reader, NULL) == -ECANCELED)
            cancelled++;
    }
    uint64_t sent = 0, seen = 0;
    for (unsigned i = 0; i < npairs; i++) {
        pair *p = &pairs[i];
        ASSERT(!p->bad_data);
        /* What was not delivered is still in the socket, in order. */
        unsigned char buf[4096];
        uint64_t at = p->delivered;
        ssize_t n;
        while ((n = recv(p->rd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
            for (ssize_t k = 0; k < n; k++)
                ASSERT_EQ(buf[k], byte_at(at + (uint64_t)k));
            at += (uint64_t)n;
        }
        ASSERT_EQ(at, p->sent);
        sent += p->sent;
        seen += p->delivered;
        close(p->rd);
        close(p->wr);
    }
    printf("storm: %u pairs, %u readers cancelled, %" PRIu64 " of %" PRIu64
           " bytes delivered before the cancel\n",
           npairs, cancelled, seen, sent);
    ASSERT_EQ(count_fds(), fds_before);
    weft_stats s;
    ASSERT_OK(weft_stats_snapshot(&s));
    ASSERT_EQ(s.ops_in_flight, s.workers); /* each worker's wake-up read */
    return NULL;
}
TEST(cancellation_storm_loses_no_byte_and_no_fd)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    npairs = STORM_PAIRS;
    if (rl.rlim_cur < 2 * STORM_PAIRS + 64)
        npairs = (unsigned)(rl.rlim_cur - 64) / 2;
    pairs = calloc(npairs, sizeof *pairs);
    run_main(NULL, main_storm, NULL);
    free(pairs);
}

/* ---- faults ------------------------------------------------------------------ */

static void *main_sqe_fault(void *arg)
{
    (void)arg;
    weft__fault_arm(WEFT_FAULT_SQE, 1);
    ASSERT_EQ(weft_nop(), -EAGAIN); /* no SQE: a clean error, nothing queued */
    weft__fault_arm(WEFT_FAULT_SQE, 0);
    ASSERT_OK(weft_nop());

    /* The SQE for the kernel-side cancel fails once: the task retries and
     * still waits for its op before returning. */
    int sv[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    blocked_arg a = {.b = &blockers[0], .fd = sv[0]};
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, blocked_task, &a));
    ASSERT_OK(weft_sleep_ns(1000000));
    weft__fault_arm(WEFT_FAULT_SQE, 1);
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(weft__fault_count(WEFT_FAULT_SQE), 2); /* failed once, then got one */
    weft__fault_arm(WEFT_FAULT_SQE, 0);
    ASSERT_EQ(a.result, -ECANCELED);
    ASSERT(a.untouched);

    /* A batch gets all its SQEs or none. */
    struct io_uring_sqe sqes[2];
    io_uring_prep_nop(&sqes[0]);
    io_uring_prep_nop(&sqes[1]);
    int res[2];
    weft__fault_arm(WEFT_FAULT_SQE, 1);
    ASSERT_EQ(weft_batch(sqes, res, 2, 0), -EAGAIN);
    weft__fault_arm(WEFT_FAULT_SQE, 0);
    ASSERT_EQ(weft_batch(sqes, res, 2, 0), 2);
    close(sv[0]);
    close(sv[1]);

    /* A close needs no SQE: it closes all the same (close(2), or a files
     * update for a direct slot). */
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    weft__fault_arm(WEFT_FAULT_SQE, 1);
    ASSERT_OK(weft_close(fd));
    ASSERT_EQ(weft__fault_count(WEFT_FAULT_SQE), 1);
    weft__fault_arm(WEFT_FAULT_SQE, 0);
    ASSERT_EQ(fcntl(fd, F_GETFD), -1);
    ASSERT_EQ(errno, EBADF);
    int d = weft_socket(AF_INET, SOCK_STREAM, 0, WEFT_DIRECT);
    if (d >= 0) { /* no direct table where RLIMIT_NOFILE is low: -ENXIO */
        ASSERT(weft_is_direct(d));
        weft__fault_arm(WEFT_FAULT_SQE, 1);
        ASSERT_OK(weft_close(d));
        ASSERT_EQ(weft__fault_count(WEFT_FAULT_SQE), 1);
        weft__fault_arm(WEFT_FAULT_SQE, 0);
        ASSERT_EQ(weft_close(d), -EBADF); /* the slot is empty now */
    }
    return NULL;
}
TEST(sqe_exhaustion_fails_cleanly_and_cancels_still_wait)
{
    /* One worker: a fault is counted process-wide, and another worker's
     * first SQE (its wake read, armed as it starts) could take it. */
    run_main_one_worker(NULL, main_sqe_fault, NULL);
}

/* A full SQ whose submits keep failing (the kernel's -EBUSY while an
 * overflowed CQ cannot be flushed): an op gives up with -EAGAIN after a
 * few tries instead of spinning for ever, queues nothing, and the ring
 * works again once submits do. The SQ holds 8; the filler's batch takes
 * all 8 and the worker runs the next tasks before it submits them. */
#define FULL_SQ_ENTRIES 8
static int full_sq_batch_ret, full_sq_res[FULL_SQ_ENTRIES];
static int full_sq_failed_ret = 1, full_sq_later_ret = 1;
static uint64_t full_sq_tries;

static void *full_sq_filler(void *arg)
{
    (void)arg;
    struct io_uring_sqe sqes[FULL_SQ_ENTRIES];
    for (int i = 0; i < FULL_SQ_ENTRIES; i++)
        io_uring_prep_nop(&sqes[i]);
    full_sq_batch_ret = weft_batch(sqes, full_sq_res, FULL_SQ_ENTRIES, 0);
    return NULL;
}
static void *full_sq_failing(void *arg)
{
    (void)arg;
    weft__fault_arm_from(WEFT_FAULT_SUBMIT, 1);
    full_sq_failed_ret = weft_nop();
    full_sq_tries = weft__fault_count(WEFT_FAULT_SUBMIT);
    weft__fault_arm(WEFT_FAULT_SUBMIT, 0);
    return NULL;
}
static void *full_sq_later(void *arg)
{
    (void)arg;
    full_sq_later_ret = weft_nop();
    return NULL;
}
static void *main_full_sq(void *arg)
{
    (void)arg;
    weft_stats before, after;
    ASSERT_OK(weft_stats_snapshot(&before));
    weft_task *t[3];
    ASSERT_OK(weft_spawn(&t[0], full_sq_filler, NULL));
    ASSERT_OK(weft_spawn(&t[1], full_sq_failing, NULL));
    ASSERT_OK(weft_spawn(&t[2], full_sq_later, NULL));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    ASSERT_EQ(full_sq_failed_ret, -EAGAIN);
    ASSERT_EQ(full_sq_tries, 4); /* SQE_SUBMIT_TRIES submits, then it gave up */
    ASSERT_EQ(full_sq_later_ret, 0);
    ASSERT_EQ(full_sq_batch_ret, FULL_SQ_ENTRIES);
    for (int i = 0; i < FULL_SQ_ENTRIES; i++)
        ASSERT_EQ(full_sq_res[i], 0);
    ASSERT_OK(weft_stats_snapshot(&after));
    ASSERT_GE(after.sq_full - before.sq_full, 5);  /* 4 failed tries, 1 that worked */
    ASSERT_EQ(after.ops_in_flight, after.workers); /* the wake-up read */
    return NULL;
}
TEST(full_sq_with_failing_submits_gives_up_with_eagain)
{
    weft_config cfg = {.ring_entries = FULL_SQ_ENTRIES};
    run_main_one_worker(&cfg, main_full_sq, NULL);
}

/* A shielded task is not interrupted by cancellation: its I/O runs to
 * completion (cleanup I/O), and the cancel shows once unshielded. */
static int shield_sv[2];
static int shield_result, after_shield;

static void *shielded_reader(void *arg)
{
    (void)arg;
    char buf[8];
    ASSERT_OK(weft_shield_push());
    shield_result = (int)weft_recv(shield_sv[0], buf, sizeof buf, 0);
    ASSERT_OK(weft_shield_pop());
    after_shield = weft_nop();
    return NULL;
}

static void *main_shield(void *arg)
{
    (void)arg;
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, shield_sv));
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, shielded_reader, NULL));
    ASSERT_OK(weft_sleep_ns(1000000));
    ASSERT_OK(weft_cancel(t));
    ASSERT_OK(weft_sleep_ns(1000000));
    ASSERT_EQ(write(shield_sv[1], "abc", 3), 3);
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(shield_result, 3);
    ASSERT_EQ(after_shield, -ECANCELED);
    return NULL;
}
TEST(shielded_io_completes_despite_cancel)
{
    run_main(NULL, main_shield, NULL);
}

/* A hard-linked pair of polls: when the task is cancelled, the first is
 * waiting and the second has not started, so the second's cancel finds
 * nothing (-ENOENT). The hard link then starts it as the first ends
 * cancelled: it used to wait for its pipe for ever, and the task with it. */
static int link_pipes[2][2];
static int link_res[2] = {1, 1};

static void *hard_linked_polls(void *arg)
{
    (void)arg;
    struct io_uring_sqe s[2];
    memset(s, 0, sizeof s);
    io_uring_prep_poll_add(&s[0], link_pipes[0][0], POLLIN);
    s[0].flags |= IOSQE_IO_HARDLINK;
    io_uring_prep_poll_add(&s[1], link_pipes[1][0], POLLIN);
    return (void *)(intptr_t)weft_batch(s, link_res, 2, 0);
}

static void *main_cancel_a_hard_link(void *arg)
{
    (void)arg;
    ASSERT_OK(pipe2(link_pipes[0], O_CLOEXEC));
    ASSERT_OK(pipe2(link_pipes[1], O_CLOEXEC));
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, hard_linked_polls, NULL));
    ASSERT_OK(weft_sleep_ns(2000000)); /* the first poll waits by now */
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(link_res[0], -ECANCELED);
    ASSERT_EQ(link_res[1], -ECANCELED);
    for (int i = 0; i < 2; i++) {
        close(link_pipes[i][0]);
        close(link_pipes[i][1]);
    }
    return NULL;
}
TEST(cancelling_a_batch_reaches_a_link_that_starts_later)
{
    run_main(NULL, main_cancel_a_hard_link, NULL);
}

/* Stopping an accept loop: closing the listening socket does not end an
 * accept waiting on it (the op holds its own reference to the file), so a
 * loop waiting there would wait for the next connection; shutting the
 * socket down first ends it with -EINVAL (docs/io.md, Stopping an accept
 * loop). */
static void *accept_once(void *arg)
{
    unsigned char buf[BUF];
    return (void *)(intptr_t)block_accept(*(int *)arg, buf);
}

static void *main_stop_an_accept(void *arg)
{
    (void)arg;
    int l = tcp_listener(NULL);
    ASSERT_GE(l, 0);
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, accept_once, &l));
    ASSERT_OK(weft_sleep_ns(5000000)); /* the accept is in the kernel */
    ASSERT_OK(shutdown(l, SHUT_RDWR));
    void *res;
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((int)(intptr_t)res, -EINVAL);
    ASSERT_OK(weft_close(l));

    /* Close alone: the accept still waits, until cancelled. Should the
     * accept reach the kernel only after the close (a very slow machine),
     * it fails with -EBADF and proves nothing: try again, waiting longer. */
    bool waited = false;
    for (int try = 1; try <= 5 && !waited; try++) {
        l = tcp_listener(NULL);
        ASSERT_GE(l, 0);
        ASSERT_OK(weft_spawn(&t, accept_once, &l));
        ASSERT_OK(weft_sleep_ns(5000000ull * try));
        ASSERT_OK(weft_close(l));
        ASSERT_OK(weft_sleep_ns(20000000));
        if (weft_task_finished(t)) {
            ASSERT_OK(weft_join(t, &res));
            ASSERT_EQ((int)(intptr_t)res, -EBADF);
            continue;
        }
        waited = true;
        ASSERT_OK(weft_cancel(t));
        ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    }
    ASSERT(waited);
    return NULL;
}
TEST(shutdown_ends_a_pending_accept_and_close_does_not)
{
    run_main(NULL, main_stop_an_accept, NULL);
}

TEST_MAIN(CASE(cancelling_every_blocking_kind_leaves_buffers_untouched),
          CASE(deadlines_interrupt_every_blocking_kind),
          CASE(a_result_that_beats_the_cancel_is_returned),
          CASE(a_chain_broken_by_a_failure_is_not_reported_as_cancelled),
          CASE(cancellation_storm_loses_no_byte_and_no_fd),
          CASE(sqe_exhaustion_fails_cleanly_and_cancels_still_wait),
          CASE(full_sq_with_failing_submits_gives_up_with_eagain),
          CASE(shielded_io_completes_despite_cancel),
          CASE(cancelling_a_batch_reaches_a_link_that_starts_later),
          CASE(shutdown_ends_a_pending_accept_and_close_does_not))
