/* Multishot streams: accept, recv, recvmsg, read, poll and tickers; see
 * weft/io.h.
 *
 * The kernel side is one multishot op whose user_data is the stream. Its
 * CQEs queue up in the stream until the owning task pulls them, so an item
 * that arrives while nobody is waiting (or while the waiter is being
 * cancelled) is never lost. When the kernel ends the op (a CQE without
 * IORING_CQE_F_MORE) the stream re-arms it on the next pull where that makes
 * sense. Closing queues the cancel for the maintenance task; the stream
 * object lives until the op's last CQE has been reaped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fault.h"
#include "io/uapi.h"
#include "ring/bufring.h"
#include "ring/op.h"
#include "ring/resource.h"
#include "ring/tick_schedule.h"
#include "runtime/worker.h"

/* The public header spells the header's size out (weft/io.h). */
_Static_assert(sizeof(struct io_uring_recvmsg_out) + sizeof(struct sockaddr_storage) ==
                   WEFT_DATAGRAM_HEADER,
               "WEFT_DATAGRAM_HEADER is the kernel's recvmsg header and an address");

/* Room for control data a recvmsg stream may ask for (weft_recvmsg_stream_ex). */
#define WEFT__DATAGRAM_CONTROL_MAX 65536

typedef enum stream_kind {
    STREAM_ACCEPT,
    STREAM_RECV,
    STREAM_RECVMSG, /* datagrams, each with its sender */
    STREAM_READ,
    STREAM_POLL,
    STREAM_TICKER,
} stream_kind;

typedef struct stream_item {
    int res;
    uint32_t cflags;
    uint64_t due; /* a tick's grid point: it is not handed out before */
} stream_item;

struct weft_stream {
    weft__op op; /* the multishot op's user_data */
    weft__resource res;
    weft__cleanup cleanup;
    weft__worker *w;
    weft_task *owner;
    weft_task *waiter; /* parked in weft_stream_next */
    stream_kind kind;
    int fd;
    unsigned flags; /* accept flags or poll events */
    weft_buf_ring *br;
    struct msghdr msg;               /* recvmsg: the layout the kernel fills each buffer in */
    struct __kernel_timespec period; /* ticker: its arming's, for the SQE */
    weft__tick_schedule ticks;       /* ticker: on its grid */
    uint64_t last_due;               /* ticker: the last tick handed out's point (0: none) */
    bool armed;                      /* the kernel side is live: CQEs may still come */
    bool closing;                    /* closed by its task: drop what comes */
    bool resetting;                  /* ticker: its arming was removed for a new period */
    bool stopped;                    /* weft_stream_stop: no new arming; drained, it ends */
    bool eof;                        /* recv/read saw end of stream; recvmsg: shut down */
    bool failed;                     /* recv/read/poll: an error ended the kernel side */
    stream_item *q;
    unsigned qcap, qhead, qlen;
    /* Items released unqueued for want of memory (an accepted connection
     * closed, an error lost), not yet reported by weft_stream_next. */
    unsigned dropped;
};

/* A datagram never handed out: descriptors it carried (SCM_RIGHTS) are
 * already installed in the process, and nobody else will close them, as
 * an accept stream closes the connections it never handed out. */
static void close_passed_fds(weft_stream *s, const stream_item *it)
{
    if (!s->msg.msg_controllen || it->res <= 0 || !(it->cflags & IORING_CQE_F_BUFFER))
        return;
    unsigned bid = it->cflags >> IORING_CQE_BUFFER_SHIFT;
    struct io_uring_recvmsg_out *o =
        io_uring_recvmsg_validate(weft__buf_start(s->br, bid), it->res, &s->msg);
    if (!o)
        return;
    for (struct cmsghdr *c = io_uring_recvmsg_cmsg_firsthdr(o, &s->msg); c;
         c = io_uring_recvmsg_cmsg_nexthdr(o, &s->msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfds; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
            close(fd);
        }
    }
}

static void release_item(weft_stream *s, const stream_item *it)
{
    if (s->kind == STREAM_RECVMSG)
        close_passed_fds(s, it);
    if (s->kind == STREAM_ACCEPT && it->res >= 0) {
        if (s->flags & WEFT_DIRECT)
            weft__cleanup_close_direct(s->w, (unsigned)it->res);
        else
            close(it->res);
    } else if (s->br) {
        weft__buf_recycle(s->br, it->cflags);
    }
}

static void stream_free(weft_stream *s)
{
    if (s->br)
        weft__buf_ring_unuse(s->br);
    free(s->q);
    free(s);
}

static bool queue_push(weft_stream *s, stream_item it)
{
    if (s->qlen == s->qcap) {
        /* Ticks and readiness coalesce; data and connections cannot. */
        stream_item *last = &s->q[(s->qhead + s->qlen - 1) % s->qcap];
        if ((s->kind == STREAM_POLL || s->kind == STREAM_TICKER) && last->res >= 0 && it.res >= 0) {
            last->res |= it.res;
            last->cflags &= it.cflags;
            last->due = it.due;
            return true;
        }
        /* An error is kept as it is, never or-ed into readiness: the queue
         * grows for it. */
        unsigned cap = s->qcap * 2;
        stream_item *q = weft__malloc(cap * sizeof *q);
        if (!q)
            return false;
        for (unsigned i = 0; i < s->qlen; i++)
            q[i] = s->q[(s->qhead + i) % s->qcap];
        free(s->q);
        s->q = q;
        s->qcap = cap;
        s->qhead = 0;
    }
    s->q[(s->qhead + s->qlen++) % s->qcap] = it;
    if (s->br && (it.cflags & IORING_CQE_F_BUFFER))
        s->br->queued++; /* in neither the kernel's hands nor a lease */
    return true;
}

/* Takes the oldest item (qlen > 0). */
static stream_item queue_pop(weft_stream *s)
{
    stream_item it = s->q[s->qhead];
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    if (s->br && (it.cflags & IORING_CQE_F_BUFFER))
        s->br->queued--;
    return it;
}

static int arm(weft_stream *s);

static void on_cqe(weft__op *op, int res, uint32_t cflags)
{
    weft_stream *s = (weft_stream *)op;
    bool last = !(cflags & IORING_CQE_F_MORE);
    stream_item it = {.res = res, .cflags = cflags};
    uint64_t now = 0;
    if (s->kind == STREAM_TICKER && res == -ETIME) {
        it.res = 0; /* a tick */
        now = weft_now_ns();
        it.due = weft__tick_schedule_tick(&s->ticks, now);
    }
    /* The end of an arming that weft_ticker_reset removed: no item. */
    bool reset = s->resetting && last && res == -ECANCELED;
    if (reset)
        s->resetting = false;
    /* The end that weft_stream_stop asked for: no item either; a pull
     * that finds the queue empty then says -ESHUTDOWN. */
    bool stop_end = s->stopped && last && res == -ECANCELED;
    if (s->closing || reset || stop_end) {
        release_item(s, &it);
    } else if (!queue_push(s, it)) {
        s->dropped++;
        release_item(s, &it);
    }
    if (s->kind == STREAM_TICKER && res == -ETIME && last)
        weft__tick_schedule_ended(&s->ticks, now);
    if (last) {
        s->armed = false;
        s->w->streams_live--;
        if (s->closing) {
            weft__cleanup_target_ended(s->w, &s->cleanup); /* may free s */
            return;
        }
        /* A ticker's arming ran out of ticks, or was removed for a new
         * period: the next one follows at once, so the ticks keep their
         * pace whether or not the owner pulls. (Should no SQE be had, the
         * next pull arms it.) A removed arming never ran all its ticks, so
         * the next lays its grid anew (tick_schedule.c), even when the one
         * removed was planned on the new grid already: a reset whose first
         * remove found the ticker between two shots, and whose task work
         * then re-armed it. */
        if (s->kind == STREAM_TICKER && (res == -ETIME || reset))
            (void)arm(s);
    }
    /* Nothing queued: a waiter waits for the next tick, if the new
     * arming went in; if not, it is woken to arm it (or say why not). */
    if (reset && s->armed)
        return;
    if (s->waiter) {
        weft_task *t = s->waiter;
        s->waiter = NULL;
        weft__task_wake(t);
    }
}

/* A ticker is armed for a bounded number of ticks, at most
 * WEFT_TICK_ARMING and at most about WEFT_TICK_ARMING_NS worth, and armed
 * again from its last one. A multishot timeout cannot always be removed:
 * while a fired tick waits for the task work that re-arms it (DEFER_TASKRUN
 * runs that only in the worker's next enter), TIMEOUT_REMOVE finds nothing,
 * and a ticker faster than the worker's loop is always in that state.
 * Bounded, a closed ticker's kernel side ends by itself after its arming's
 * last tick, whatever the removes find. The count bounds a fast ticker
 * (which fires at most once per enter, since the re-arm is task work), the
 * time a slow one. Each arming's period keeps the ticks on their grid
 * (tick_schedule.c). */
static unsigned arm_ticker(weft_stream *s)
{
    unsigned n;
    uint64_t k = weft__tick_schedule_arm(&s->ticks, weft_now_ns(), &n);
    s->period.tv_sec = (long long)(k / 1000000000u);
    s->period.tv_nsec = (long long)(k % 1000000000u);
    return n;
}

/* Submits the multishot op. 0 or -EAGAIN (no SQE: fault injection). */
static int arm(weft_stream *s)
{
    weft__ring *r = &s->w->ring;
    struct io_uring_sqe *sqe = weft__ring_sqe(r, &s->op);
    if (!sqe)
        return -EAGAIN;
    unsigned opcode = 0;
    switch (s->kind) {
    case STREAM_ACCEPT:
        if (s->flags & WEFT_DIRECT) /* SOCK_CLOEXEC dropped: see weft_accept */
            io_uring_prep_multishot_accept_direct(sqe, 0, NULL, NULL,
                                                  (int)(s->flags & ~(WEFT_DIRECT | SOCK_CLOEXEC)));
        else
            io_uring_prep_multishot_accept(sqe, 0, NULL, NULL, (int)s->flags);
        weft__sqe_fd(sqe, s->fd);
        opcode = IORING_OP_ACCEPT;
        break;
    case STREAM_RECV:
        io_uring_prep_recv_multishot(sqe, 0, NULL, 0, 0);
        weft__sqe_fd(sqe, s->fd);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = (uint16_t)s->br->gid;
        opcode = IORING_OP_RECV;
        break;
    case STREAM_RECVMSG:
        /* MSG_TRUNC: the header's payloadlen is then a cut datagram's real
         * length, not what was kept (the CQE's size is clamped still). */
        io_uring_prep_recvmsg_multishot(sqe, 0, &s->msg, MSG_TRUNC);
        weft__sqe_fd(sqe, s->fd);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = (uint16_t)s->br->gid;
        opcode = IORING_OP_RECVMSG;
        break;
    case STREAM_READ:
        weft__prep_read_multishot(sqe, 0, (uint64_t)-1, (uint16_t)s->br->gid);
        weft__sqe_fd(sqe, s->fd);
        opcode = WEFT__OP_READ_MULTISHOT;
        break;
    case STREAM_POLL:
        io_uring_prep_poll_multishot(sqe, 0, s->flags);
        weft__sqe_fd(sqe, s->fd);
        opcode = IORING_OP_POLL_ADD;
        break;
    case STREAM_TICKER:
        io_uring_prep_timeout(sqe, &s->period, arm_ticker(s), IORING_TIMEOUT_MULTISHOT);
        opcode = IORING_OP_TIMEOUT;
        break;
    }
    r->ops[opcode]++;
    s->op.counted = (uint8_t)(opcode + 1);
    s->armed = true;
    s->w->streams_live++;
    /* A ticker's arming is planned from now, and the kernel counts its
     * period from the submission: it goes in at once, not at the worker's
     * next enter, which a task that keeps the worker may hold off for
     * longer than a period. (A trial's 100 ms ticker, re-armed as its tick
     * came in and the worker then held for 350 ms, ticked a whole period
     * after the worker was free, with a stale grid point.) At most one
     * system call an arming: 100 ms of ticks, or 64. */
    if (s->kind == STREAM_TICKER)
        (void)weft__ring_submit(r);
    return 0;
}

const weft__tick_schedule *weft__ticker_schedule(const weft_stream *s)
{
    return s && s->kind == STREAM_TICKER ? &s->ticks : NULL;
}

static void release_closed(weft__cleanup *c)
{
    stream_free((weft_stream *)((char *)c - offsetof(weft_stream, cleanup)));
}

static void close_stream(weft_stream *s);

/* The owner's end: on its worker, whatever the caller's thread looks like. */
static void release_for_task(weft__resource *res)
{
    close_stream((weft_stream *)((char *)res - offsetof(weft_stream, res)));
}

static int open_stream(weft_stream **out, stream_kind kind, unsigned opcode, int fd, unsigned flags,
                       weft_buf_ring *br, size_t control_room)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    int err;
    weft__ring *r = weft__io_ring(opcode, &err);
    if (!r)
        return err;
    weft__worker *w = weft__worker_self();
    if ((kind == STREAM_RECV || kind == STREAM_RECVMSG || kind == STREAM_READ) && !br)
        return -EINVAL;
    /* A datagram's buffer starts with the kernel's header, the sender's
     * address and the room for control data: room for a payload must be
     * left after them. */
    if (kind == STREAM_RECVMSG && br->size <= WEFT_DATAGRAM_HEADER + control_room)
        return -EINVAL;
    if (br && br->w != w)
        return -EXDEV;
    weft_stream *s = weft__calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->qcap = br ? br->nbufs + 2 : 16;
    s->q = weft__malloc(s->qcap * sizeof *s->q);
    if (!s->q) {
        free(s);
        return -ENOMEM;
    }
    s->op.complete = on_cqe;
    s->res.release = release_for_task;
    s->cleanup.release = release_closed;
    s->w = w;
    s->owner = w->current;
    s->kind = kind;
    s->fd = fd;
    s->flags = flags;
    s->br = br;
    if (br) {
        br->users++;
        br->open_users++;
    }
    /* recvmsg: room for any address and the control data asked for; the
     * kernel lays out each buffer by this (io_uring_recvmsg_out, name,
     * control, payload). */
    s->msg.msg_namelen = sizeof(struct sockaddr_storage);
    s->msg.msg_controllen = control_room;
    *out = s;
    return 0;
}

/* Attaches a freshly opened stream to its task and arms it. */
static int start(weft_stream **out)
{
    weft_stream *s = *out;
    int r = weft__resource_attach(s->owner, &s->res);
    if (r == 0) {
        r = arm(s);
        if (r < 0)
            weft__resource_detach(s->owner, &s->res);
    }
    if (r < 0) {
        if (s->br)
            s->br->open_users--;
        stream_free(s);
        *out = NULL;
    }
    return r;
}

int weft_accept_stream(weft_stream **out, int fd, unsigned flags)
{
    if (flags & ~(WEFT_DIRECT | SOCK_CLOEXEC | SOCK_NONBLOCK))
        return -EINVAL;
    if ((flags & WEFT_DIRECT) && weft__direct_table_check() < 0)
        return -ENXIO;
    int r = open_stream(out, STREAM_ACCEPT, IORING_OP_ACCEPT, fd, flags, NULL, 0);
    return r < 0 ? r : start(out);
}

int weft_recv_stream(weft_stream **out, int fd, weft_buf_ring *br)
{
    int r = open_stream(out, STREAM_RECV, IORING_OP_RECV, fd, 0, br, 0);
    return r < 0 ? r : start(out);
}

int weft_recvmsg_stream(weft_stream **out, int fd, weft_buf_ring *br)
{
    return weft_recvmsg_stream_ex(out, fd, br, 0);
}

int weft_recvmsg_stream_ex(weft_stream **out, int fd, weft_buf_ring *br, size_t control_len)
{
    if (!br || control_len > WEFT__DATAGRAM_CONTROL_MAX) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    /* Rounded so that the payload after it stays 8-aligned. */
    size_t room = (control_len + 7) & ~(size_t)7;
    /* Message sockets only: on a stream socket MSG_TRUNC discards the
     * bytes, and the lease would hold an old buffer's. (A direct slot
     * cannot be asked: its caller answers for it.) */
    if (!weft_is_direct(fd)) {
        int type;
        socklen_t len = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
            if (out)
                *out = NULL;
            return -errno;
        }
        if (type == SOCK_STREAM) {
            if (out)
                *out = NULL;
            return -EOPNOTSUPP;
        }
    }
    int r = open_stream(out, STREAM_RECVMSG, IORING_OP_RECVMSG, fd, 0, br, room);
    return r < 0 ? r : start(out);
}

int weft_read_stream(weft_stream **out, int fd, weft_buf_ring *br)
{
    int r = open_stream(out, STREAM_READ, WEFT__OP_READ_MULTISHOT, fd, 0, br, 0);
    return r < 0 ? r : start(out);
}

int weft_poll_stream(weft_stream **out, int fd, unsigned events)
{
    int r = open_stream(out, STREAM_POLL, IORING_OP_POLL_ADD, fd, events, NULL, 0);
    return r < 0 ? r : start(out);
}

int weft_ticker(weft_stream **out, uint64_t period_ns)
{
    if (period_ns == 0)
        return out ? (*out = NULL, -EINVAL) : -EINVAL;
    int r = open_stream(out, STREAM_TICKER, IORING_OP_TIMEOUT, -1, 0, NULL, 0);
    if (r < 0)
        return r;
    weft__tick_schedule_set(&(*out)->ticks, period_ns);
    return start(out);
}

/* The calls only the owner may make, on its worker: 0, -EPERM outside a
 * task or from another task, -EXDEV from another worker (its ring, its
 * maintenance task and its owner's accounts belong to s->w's thread). */
static int check_owner(const weft_stream *s)
{
    weft__worker *w = weft__worker_self();
    if (!w || !w->current)
        return -EPERM;
    if (s->w != w)
        return -EXDEV;
    return s->owner == w->current ? 0 : -EPERM;
}

int weft_ticker_reset(weft_stream *s, uint64_t period_ns)
{
    if (!s || s->kind != STREAM_TICKER || period_ns == 0)
        return -EINVAL;
    if (s->closing)
        return -EBADF;
    /* The update goes to the caller's ring, which must be the ticker's; the
     * owner is pinned here while it waits below, and the ticker cannot be
     * closed under it. */
    int own = check_owner(s);
    if (own < 0)
        return own;
    weft__worker *w = s->w;
    weft__tick_schedule_set(&s->ticks, period_ns);
    /* The old grid is gone: ticks queued from it are handed out at once,
     * none held back to a point of it. */
    for (unsigned i = 0; i < s->qlen; i++)
        s->q[(s->qhead + i) % s->qcap].due = 0;
    s->last_due = 0; /* no points are missed between two grids */
    if (!s->armed)
        return 0; /* the next pull arms it with the new period */
    /* The arming is removed, and its last CQE (-ECANCELED) arms the next
     * one with the new period (on_cqe). Not TIMEOUT_UPDATE: the kernel's
     * update makes a multishot timeout repeat for ever, and a closed
     * ticker's kernel side would then no longer end by itself. -ENOENT
     * while still armed: the ticker fired and sits between two shots until
     * task work re-arms it (DEFER_TASKRUN); the remove goes in right after
     * that task work has run (weft__ring_submit_rearmed). A ticker faster
     * than that round trip may never be found: after a few tries its period
     * changes at its next arming instead (after at most WEFT_TICK_ARMING
     * ticks), which reads the schedule. */
    /* -ENOENT: not armed in the kernel yet; -EALREADY: its tick is
     * firing right now. Either way the next try may find it. */
    int r = -ENOENT;
    for (int tries = 0; (r == -ENOENT || r == -EALREADY) && s->armed && tries < 8; tries++) {
        weft__io io;
        int err;
        struct io_uring_sqe *sqe = weft__io_begin(&io, IORING_OP_TIMEOUT_REMOVE, &err);
        if (!sqe)
            return err;
        io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)&s->op, 0);
        s->resetting = true;
        weft__ring_submit_rearmed(&w->ring);
        r = weft__io_wait(&io);
        if (r != 0)
            s->resetting = false; /* nothing removed: no such CQE comes */
    }
    return r == -ENOENT || r == -EALREADY ? 0 : r;
}

unsigned weft_stream_pending(const weft_stream *s)
{
    return s ? s->qlen : 0;
}

/* Turns a queued item into what weft_stream_next returns. */
/* Errors that would come back at every arming: the stream ends on them.
 * A datagram socket's own errors are reported once and cleared. */
static bool datagram_error_lasts(int err)
{
    return err == -EBADF || err == -ENOTSOCK || err == -EINVAL || err == -EFAULT ||
           err == -EOPNOTSUPP;
}

/* A recvmsg stream's item: the lease points at the payload, past the
 * kernel's header and the sender's address (weft_buf_datagram reads
 * those). Returns the payload's length kept, 0 for an empty datagram.
 * A 0 from the kernel would be no datagram (that has a header at least):
 * an end, reported as -ESHUTDOWN from then on. (Not seen on 6.18: a
 * shutdown(SHUT_RD) leaves the multishot receive waiting.) */
static int deliver_datagram(weft_stream *s, stream_item it, weft_buf *buf)
{
    bool more = it.cflags & IORING_CQE_F_MORE;
    if (it.res == -ENOBUFS && !more)
        return INT32_MIN; /* ran dry: re-arm once buffers come back */
    if (it.res <= 0) {
        if (it.res == 0 && !more)
            s->eof = true;
        else if (it.res < 0 && !more && datagram_error_lasts(it.res))
            s->failed = true;
        /* Other errors (an ICMP error the socket reports once: refused,
         * unreachable) are returned once; the next pull re-arms. */
        weft__buf_recycle(s->br, it.cflags);
        return it.res == 0 ? -ESHUTDOWN : it.res;
    }
    if (!weft__buf_from_cqe(s->br, it.res, it.cflags, buf))
        return -EIO; /* a datagram without its buffer: the kernel broke the rules */
    struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf->data, it.res, &s->msg);
    if (!o) {
        weft_buf_release(buf);
        return -EIO;
    }
    buf->data = io_uring_recvmsg_payload(o, &s->msg);
    buf->len = io_uring_recvmsg_payload_length(o, it.res, &s->msg);
    unsigned bid = weft__buf_bid(buf);
    s->br->leases[bid].datagram_at = (unsigned)((char *)buf->data - weft__buf_start(s->br, bid));
    return (int)buf->len;
}

static int deliver(weft_stream *s, stream_item it, weft_buf *buf)
{
    switch (s->kind) {
    case STREAM_ACCEPT:
        if (it.res >= 0 && (s->flags & WEFT_DIRECT))
            return weft__direct_adopt(it.res);
        return it.res;
    case STREAM_RECV:
    case STREAM_READ:
        if (it.res == 0 && !(it.cflags & IORING_CQE_F_MORE))
            s->eof = true;
        if (it.res == -ENOBUFS && !(it.cflags & IORING_CQE_F_MORE))
            return INT32_MIN; /* ran dry: re-arm once buffers come back */
        if (it.res < 0 && !(it.cflags & IORING_CQE_F_MORE))
            s->failed = true;
        weft__buf_from_cqe(s->br, it.res, it.cflags, buf);
        return it.res;
    case STREAM_RECVMSG:
        return deliver_datagram(s, it, buf);
    case STREAM_POLL:
        if (it.res < 0 && !(it.cflags & IORING_CQE_F_MORE))
            s->failed = true;
        return it.res;
    case STREAM_TICKER:
        return it.res;
    }
    return -EINVAL;
}

/* A ticker's tick, handed out: its point, and the points since the last
 * one. Points are period apart on one grid; a grid laid anew (after an
 * arming that failed) may shift them, hence the rounding. */
static void hand_out_tick(weft_stream *s, uint64_t due, weft_tick *tick)
{
    uint64_t p = s->ticks.period, prev = s->last_due;
    s->last_due = due;
    if (!tick)
        return;
    tick->due_ns = due ? due : weft_now_ns();
    uint64_t steps = prev && due > prev ? (due - prev + p / 2) / p : 0;
    tick->missed = steps > 1 ? steps - 1 : 0;
}

static int next_item(weft_stream *s, weft_buf *buf, weft_tick *tick);

int weft_stream_next(weft_stream *s, weft_buf *buf)
{
    if (buf)
        buf->ring = NULL;
    if (!s || s->closing)
        return -EBADF;
    return next_item(s, buf, NULL);
}

int weft_ticker_next(weft_stream *s, weft_tick *out)
{
    if (!s || s->closing)
        return -EBADF;
    if (!out || s->kind != STREAM_TICKER)
        return -EINVAL;
    return next_item(s, NULL, out);
}

static int next_item(weft_stream *s, weft_buf *buf, weft_tick *tick)
{
    /* Only the owner pulls: the stream pins it to s->w while it waits;
     * another task could be handed to another worker while parked here,
     * and go on to arm and deliver from the wrong thread. */
    int own = check_owner(s);
    if (own < 0)
        return own;
    weft_task *t = s->owner;
    if ((s->kind == STREAM_RECV || s->kind == STREAM_RECVMSG || s->kind == STREAM_READ) && !buf)
        return -EINVAL;
    for (;;) {
        if (s->qlen) {
            /* A tick that came before its grid point (tick_schedule.c)
             * waits for it here: none is handed out early. Interrupted,
             * it stays queued. */
            uint64_t due = s->q[s->qhead].due;
            if (s->kind == STREAM_TICKER && due > weft_now_ns()) {
                int r = weft_sleep_until(due);
                if (r < 0)
                    return r;
                continue;
            }
            if (s->kind == STREAM_TICKER && s->q[s->qhead].res >= 0)
                hand_out_tick(s, due, tick);
            int r = deliver(s, queue_pop(s), buf);
            if (r != INT32_MIN)
                return r;
            continue;
        }
        /* Reported once, when what was queued has been handed out. */
        if (s->dropped) {
            s->dropped = 0;
            return -ENOMEM;
        }
        if (s->eof)
            return s->kind == STREAM_RECVMSG ? -ESHUTDOWN : 0;
        /* An error ended it and was returned once: arming again would
         * most likely bring the same error back at every pull (a socket
         * never connected, a descriptor closed), and a loop that skips
         * errors until the end of the stream would spin for ever. */
        if (s->failed)
            return -EPIPE;
        /* Stopped, and its kernel side has ended: everything it took from
         * the fd has been handed out. */
        if (s->stopped && !s->armed)
            return -ESHUTDOWN;
        int intr = weft__task_interrupted(t);
        if (intr)
            return intr;
        if (!s->armed) {
            /* The kernel has none left (this queue is empty): arming would
             * only bring -ENOBUFS back at once, again and again. */
            if (s->br && s->br->leased + s->br->queued == s->br->nbufs)
                return -ENOBUFS;
            int r = arm(s);
            if (r < 0)
                return r;
        }
        /* Items stay queued across an interruption: nothing is lost. */
        s->waiter = t;
        intr = weft__task_park_interruptible();
        s->waiter = NULL;
        if (intr && !s->qlen)
            return intr;
    }
}

int weft_stream_stop(weft_stream *s)
{
    if (!s || s->closing)
        return -EBADF;
    if (s->kind == STREAM_TICKER)
        return -EINVAL; /* nothing to drain: close it */
    int own = check_owner(s);
    if (own < 0)
        return own;
    if (s->stopped)
        return 0;
    s->stopped = true;
    if (!s->armed)
        return 0;
    /* Shielded: a cancel interrupted here might not have reached the
     * kernel side, and the drain would then wait for an end that never
     * comes. The cancel itself is quick. */
    /* ASYNC_CANCEL for a poll stream too: POLL_REMOVE answers -EALREADY
     * and removes nothing while the poll's wake-up waits for the worker's
     * task work (DEFER_TASKRUN), and the drain then waited for an end that
     * never came. ASYNC_CANCEL marks the poll cancelled even then. */
    weft__io io;
    int err;
    weft_shield_push();
    struct io_uring_sqe *sqe = weft__io_begin(&io, IORING_OP_ASYNC_CANCEL, &err);
    int r = err;
    if (sqe) {
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&s->op, 0);
        r = weft__io_wait(&io);
    }
    weft_shield_pop();
    /* Found and cancelled, ended already (its last CQE on its way), or
     * ending now: the last CQE will come. */
    if (r == 0 || r == -ENOENT || r == -EALREADY)
        return 0;
    s->stopped = false; /* not stopped after all: it goes on as before */
    return r;
}

int weft_stream_close(weft_stream *s)
{
    if (!s || s->closing)
        return -EBADF;
    /* Its ring, its maintenance task and its owner's accounts belong to
     * s->w's thread; and only the owner may close it: it may be parked in
     * weft_stream_next, which a close by another task would leave waiting
     * on a stream about to be freed. */
    int own = check_owner(s);
    if (own < 0)
        return own;
    close_stream(s);
    return 0;
}

static void close_stream(weft_stream *s)
{
    if (s->closing)
        return;
    weft__resource_detach(s->owner, &s->res);
    s->closing = true;
    if (s->br)
        s->br->open_users--;
    while (s->qlen) {
        stream_item it = queue_pop(s);
        release_item(s, &it);
    }
    if (!s->armed) {
        stream_free(s);
        return;
    }
    s->cleanup.target = (uint64_t)(uintptr_t)&s->op;
    s->cleanup.opcode = s->kind == STREAM_POLL     ? IORING_OP_POLL_REMOVE
                        : s->kind == STREAM_TICKER ? IORING_OP_TIMEOUT_REMOVE
                                                   : IORING_OP_ASYNC_CANCEL;
    weft__cleanup_queue(s->w, &s->cleanup);
}

int weft_buf_datagram(const weft_buf *b, weft_datagram *out)
{
    if (!b || !out || !b->ring)
        return -EINVAL;
    weft_buf_ring *br = b->ring;
    if (br->w != weft__worker_self())
        return -EXDEV; /* its leases and buffers are that worker's */
    unsigned bid = weft__buf_bid(b);
    if (bid >= br->nbufs || !br->leases[bid].task ||
        br->leases[bid].gen != b->id >> WEFT__BUF_GEN_SHIFT)
        return -EINVAL; /* released already: the buffer may hold another's */
    /* The payload follows the header, the address and the stream's room
     * for control data: where, the stream noted in the lease. */
    char *start = weft__buf_start(br, bid);
    unsigned at = br->leases[bid].datagram_at;
    if (!at || (char *)b->data != start + at)
        return -EINVAL; /* not from a recvmsg stream, or b->data moved */
    size_t room = at - WEFT_DATAGRAM_HEADER;
    const struct io_uring_recvmsg_out *o = (const struct io_uring_recvmsg_out *)start;
    if (o->controllen > room)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->fromlen = o->namelen;
    memcpy(&out->from, start + sizeof *o,
           o->namelen < sizeof out->from ? o->namelen : sizeof out->from);
    out->len = o->payloadlen;
    out->truncated = (o->flags & MSG_TRUNC) != 0;
    if (o->controllen) {
        out->control.msg_control = start + WEFT_DATAGRAM_HEADER;
        out->control.msg_controllen = o->controllen;
    }
    out->control_truncated = (o->flags & MSG_CTRUNC) != 0;
    return 0;
}
