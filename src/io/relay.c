/* weft_relay: copy between two sockets both ways until both are done.
 *
 * What a proxy does for each connection, written once: two pumps (child
 * tasks), each reading one socket and sending what came to the other,
 * forwarding an end of stream as shutdown(SHUT_WR) so that half-closed
 * protocols keep working. The caller supervises: it waits for the pumps,
 * ends the relay at the first error of either, and enforces the idle
 * limit, which must see both directions at once (one pump waiting on a
 * quiet socket is no sign of idleness while the other moves data). Every
 * way out cancels what is still running and joins it before the buffers go,
 * so no pump outlives the call.
 */
#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <weft/io.h>

#include "common/saturate.h"
#include "common/fault.h"
#include "task/task.h"

#define RELAY_BUF_DEFAULT (64u * 1024)
#define RELAY_BUF_MAX     (64u * 1024 * 1024)
#define RELAY_SEND_STEP   (16u * 1024) /* with an idle limit: progress seen per this much */

typedef struct pump {
    int from, to;
    char *buf;
    size_t size;
    uint64_t moved; /* bytes sent to `to`; the supervisor reads it after the join */
    /* weft_now_ns() of the last progress either way; NULL: no idle limit */
    _Atomic uint64_t *last_moved;
} pump;

static void note_progress(pump *p)
{
    if (p->last_moved)
        atomic_store_explicit(p->last_moved, weft_now_ns(), memory_order_relaxed);
}

/* One direction. Returns 0 after forwarding the end of stream, or the
 * error (as an intptr_t) that stopped it. Progress is noted after every
 * receive and every send. The kernel completes a stream socket's send
 * only once all of it went out (it retries a short one itself), so with
 * an idle limit sends are cut to RELAY_SEND_STEP: a peer that drains a
 * chunk slowly but steadily is then seen moving, no idle connection. */
static void *pump_main(void *arg)
{
    pump *p = arg;
    for (;;) {
        ssize_t n = weft_recv(p->from, p->buf, p->size, 0);
        if (n < 0)
            return (void *)(intptr_t)n;
        if (n == 0) {
            /* The peer will send no more: say the same to the other side.
             * A plain syscall, which never waits and works in a cancelled
             * task; its error (the other side gone already) changes
             * nothing here, the other pump will meet it. */
            (void)shutdown(p->to, SHUT_WR);
            return NULL;
        }
        note_progress(p);
        for (size_t sent = 0; sent < (size_t)n;) {
            size_t step = (size_t)n - sent;
            if (p->last_moved && step > RELAY_SEND_STEP)
                step = RELAY_SEND_STEP;
            ssize_t k = weft_send(p->to, p->buf + sent, step, MSG_NOSIGNAL);
            if (k <= 0) /* a stream send that moves nothing is an error too */
                return (void *)(intptr_t)(k < 0 ? k : -EIO);
            sent += (size_t)k;
            p->moved += (uint64_t)k;
            note_progress(p);
        }
    }
}

/* A stream socket, or why not. A message socket (datagram, seqpacket)
 * would need other rules: a 0-byte receive is an empty message there, not
 * an end, and a send cut in steps would split a message in two. */
static int check_socket(int fd)
{
    /* getsockopt says it all: -EBADF, -ENOTSOCK for a file that is no
     * socket, else the type. */
    int type;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return -errno;
    return type == SOCK_STREAM ? 0 : -EOPNOTSUPP;
}

/* The idle deadline: idle_ns after the last progress, saturated (an
 * idle_ns near UINT64_MAX means never, not some time in the past). */
static uint64_t idle_deadline(_Atomic uint64_t *last_moved, uint64_t idle_ns)
{
    uint64_t last = atomic_load_explicit(last_moved, memory_order_relaxed);
    return weft__add_sat(last, idle_ns);
}

/* Why join_any's -ETIMEDOUT came: the caller's own deadline (outer, 0 for
 * none) or the idle limit, both as -ETIMEDOUT; 0 when neither has passed
 * (bytes moved after the idle deadline was set). The last progress is
 * read before the clock, so that a pump's newer reading cannot be
 * mistaken for an idle stretch that wrapped around. */
static int timed_out(uint64_t outer, uint64_t idle_ns, _Atomic uint64_t *last_moved)
{
    uint64_t last = atomic_load_explicit(last_moved, memory_order_relaxed);
    uint64_t now = weft_now_ns();
    if (outer && now >= outer)
        return -ETIMEDOUT;
    return now > last && now - last >= idle_ns ? -ETIMEDOUT : 0;
}

/* What weft_join_any returns when it joined a task (its outcome), as
 * against the caller's own errors, which leave every handle valid. */
static bool joined_one(int r)
{
    return r == 0 || r == -ECANCELED || r == -ENOMEM || r == WEFT_EPANIC;
}

/* Waits for both pumps (tasks[i] set to NULL as each is joined). Returns 0
 * when both ended cleanly, else why the relay must stop. */
static int supervise(weft_task *tasks[2], const weft_relay_opts *o, _Atomic uint64_t *last_moved)
{
    uint64_t outer = weft_deadline_innermost();
    bool bounded = o->idle_ns != 0;
    int r = bounded ? weft_deadline_push(idle_deadline(last_moved, o->idle_ns)) : 0;
    if (r < 0)
        return r; /* -EOVERFLOW: the caller's deadline stack is full */
    for (int left = 2; left > 0 && r == 0;) {
        size_t i;
        void *res = NULL;
        r = weft_join_any(tasks, 2, &i, &res);
        if (joined_one(r)) {
            tasks[i] = NULL;
            left--;
            /* -ECANCELED: cancelled with the caller's subtree; -ENOMEM: no
             * stack for it. Otherwise its own end: 0, or its error. */
            if (r == 0)
                r = (int)(intptr_t)res;
        } else if (r == -ETIMEDOUT) {
            r = timed_out(outer, o->idle_ns, last_moved);
            if (r == 0) /* moved since: the limit starts again from there */
                (void)weft_deadline_move(idle_deadline(last_moved, o->idle_ns));
        } else if (r == -EINTR) {
            r = -ECANCELED; /* the caller was cancelled */
        }
    }
    if (bounded)
        (void)weft_deadline_pop();
    return r;
}

int weft_relay(int a, int b, const weft_relay_opts *opts, weft_relay_counts *moved)
{
    if (moved)
        *moved = (weft_relay_counts){0};
    weft_relay_opts o = opts ? *opts : (weft_relay_opts){0};
    if (a == b || o.buf_size > RELAY_BUF_MAX)
        return -EINVAL;
    if (!o.buf_size)
        o.buf_size = RELAY_BUF_DEFAULT;
    int r = weft__task_enter(NULL);
    if (r)
        return r;
    /* Even shielded, a cancelled task's children start cancelled: its
     * pumps would end at once, the bytes unmoved. */
    if (weft_cancelled())
        return -ECANCELED;
    if ((r = check_socket(a)) < 0 || (r = check_socket(b)) < 0)
        return r;

    char *buf = weft__malloc(2 * o.buf_size);
    if (!buf)
        return -ENOMEM;
    _Atomic uint64_t last_moved;
    atomic_init(&last_moved, weft_now_ns());
    _Atomic uint64_t *last = o.idle_ns ? &last_moved : NULL;
    pump pumps[2] = {
        {.from = a, .to = b, .buf = buf, .size = o.buf_size, .last_moved = last},
        {.from = b, .to = a, .buf = buf + o.buf_size, .size = o.buf_size, .last_moved = last},
    };
    weft_task *tasks[2] = {NULL, NULL};
    weft_spawn_opts so = {.name = "weft-relay"};
    for (int i = 0; i < 2 && r == 0; i++)
        r = weft_spawn_ex(&tasks[i], &so, pump_main, &pumps[i]);
    if (r == 0)
        r = supervise(tasks, &o, &last_moved);

    /* Whatever ended it, the pumps still running stop, and are joined
     * before their buffers go, even by a cancelled caller past its
     * deadline (a cancelled pump's ops end at once). */
    for (int i = 0; i < 2; i++)
        if (tasks[i]) {
            /* Handles still ours: a joined one was cleared (debug builds
             * catch a stale one here). */
            int c = weft_cancel(tasks[i]);
            int j = weft__task_join_uninterruptible(tasks[i], NULL);
            assert(c != WEFT_EHANDLE && j != WEFT_EHANDLE);
            (void)c;
            (void)j;
        }
    free(buf);
    if (moved)
        *moved = (weft_relay_counts){.a_to_b = pumps[0].moved, .b_to_a = pumps[1].moved};
    return r;
}
