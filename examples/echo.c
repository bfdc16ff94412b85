/* echo.c - a TCP echo server with one task per connection.
 *
 * What it shows:
 *  - a server task that accepts connections and spawns one task per
 *    connection; the connection tasks are the server task's children, so
 *    cancelling the server task (structured concurrency) stops everything;
 *  - plain awaited I/O (weft_recv / weft_send), or with --multishot a
 *    multishot accept stream and a multishot recv stream reading into a
 *    provided buffer ring per connection (no buffer is tied up by an idle
 *    connection's pending recv);
 *  - with --direct, direct descriptors (slots in the ring's file table):
 *    accepted with WEFT_DIRECT, handed to the connection task with
 *    weft_direct_give, which is spawned WEFT_TASK_STICKY;
 *  - with --per-worker, one accepting task per worker, each placed on its
 *    worker for good (WEFT_TASK_ON_WORKER), all accepting on the one
 *    listening socket: the kernel hands each connection to one of them, so
 *    --direct connections, which cannot move, are spread over the workers;
 *  - surviving EMFILE/ENFILE on accept (log once a second, back off, retry);
 *  - a clean stop on SIGINT/SIGTERM: the runtime catches them from its
 *    start (weft_config.catch_signals), a task waits for one with
 *    weft_signal_wait_any and cancels the server task; the program prints
 *    the io_uring ops it issued, by opcode, and the runtime's stats, then
 *    exits 0. (examples/proxy.c and cp.c show the other way: the signals
 *    blocked in main and read from a signalfd, which also covers the time
 *    before weft_run; docs/blocking.md compares the two.)
 *
 * usage: weft_echo [PORT] [--direct] [--multishot] [--per-worker] [--workers N]
 *   Listens on 127.0.0.1:PORT (default 7777). With PORT 0 the kernel picks a
 *   port and the server prints "listening on <port>".
 *   --workers N runs N workers (1..1023; 0 = one per CPU the process may
 *   run on; $WEFT_WORKERS is then ignored). Without it, weft's default:
 *   $WEFT_WORKERS if set, else one per CPU. Connections are accepted by one
 *   task; with several workers, idle workers take queued connection tasks
 *   over (docs/workers.md), except --direct ones, which are STICKY: all of
 *   those stay on the accepting task's worker unless --per-worker is given.
 *
 * Try it:  weft_echo 7777 &  then  nc 127.0.0.1 7777
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft.h>

#include "server_common.h"

#define DEFAULT_PORT   7777
#define RECV_BYTES     16384 /* the plain loop's buffer, on the task's stack */
#define RING_BUFS      8     /* --multishot: buffers per connection (a power of two), */
#define RING_BUF_BYTES 4096  /* 32 KiB a connection: more buffers, faster big echoes */

/* Command-line options, set once in main before the runtime starts. */
static struct {
    int port;
    bool direct;      /* accept direct descriptors */
    bool multishot;   /* accept stream + recv stream over a buffer ring */
    bool per_worker;  /* an accepting task placed on each worker */
    unsigned workers; /* weft_config.workers: 0 = weft's default */
} opt = {.port = DEFAULT_PORT};

/* ---- one connection ------------------------------------------------------ */

/* Sends all n bytes (one weft_send may send fewer; weft_send_all goes on).
 * A peer that went away gives -EPIPE: io_uring's sends never raise SIGPIPE
 * (MSG_NOSIGNAL is there for a reader who knows send(2)). */
static int send_all(int fd, const void *data, size_t n)
{
    return weft_send_all(fd, data, n, MSG_NOSIGNAL, NULL);
}

/* recv -> send until the peer closes, an error, or cancellation. */
static void echo_plain(int fd)
{
    char buf[RECV_BYTES];
    for (;;) {
        ssize_t n = weft_recv(fd, buf, sizeof buf, 0);
        if (n <= 0 || send_all(fd, buf, (size_t)n) < 0)
            return;
    }
}

/* The same loop over a multishot recv: the kernel picks a buffer of the
 * connection's ring for each piece of data; the task owns ("leases") that
 * buffer until weft_buf_release gives it back to the kernel. */
static void echo_multishot(int fd)
{
    weft_buf_ring *ring;
    int r = weft_buf_ring_create(&ring, RING_BUFS, RING_BUF_BYTES);
    if (r < 0) {
        fprintf(stderr, "weft_echo: buffer ring: %s\n", weft_strerror(r));
        return;
    }
    weft_stream *stream;
    r = weft_recv_stream(&stream, fd, ring);
    if (r == 0) {
        for (;;) {
            weft_buf buf;
            int n = weft_stream_next(stream, &buf);
            if (n <= 0)
                break; /* 0: the peer closed; < 0: error or cancelled */
            r = send_all(fd, buf.data, buf.len);
            weft_buf_release(&buf);
            if (r < 0)
                break;
        }
        weft_stream_close(stream);
    } else {
        fprintf(stderr, "weft_echo: recv stream: %s\n", weft_strerror(r));
    }
    /* The stream is closed and no buffer is leased any more: the ring goes
     * as soon as the stream's kernel side has wound down. */
    weft_buf_ring_destroy(ring);
}

/* --direct (plain accepts): at most DIRECT_FDS connections at once. A
 * direct accept that finds the ring's file table full fails after the
 * kernel has taken the connection off the listen queue, so the client is
 * reset; waiting for a free slot before accepting leaves it in the backlog
 * instead, as a plain accept out of descriptors does. (A multishot accept
 * cannot wait so: the kernel accepts on its own, and resets what comes past
 * the table's size.) */
#define DIRECT_FDS 1024 /* weft_config.direct_fds: the ring's file table */
static weft_sem direct_slots = WEFT_SEM_INIT(DIRECT_FDS);

static bool direct_capped(void)
{
    return opt.direct && !opt.multishot;
}

/* weft_spawn_opts.discard of a --direct connection task that never started:
 * weft closes its descriptor, its slot's unit comes back here. */
static void release_direct_slot(void *unused)
{
    (void)unused;
    if (direct_capped())
        weft_sem_release(&direct_slots);
}

static void *connection(void *arg)
{
    int fd = (int)(intptr_t)arg; /* a normal fd, or a direct one given to us */
    if (opt.multishot)
        echo_multishot(fd);
    else
        echo_plain(fd);
    weft_close(fd); /* closes even in a cancelled task */
    release_direct_slot(NULL);
    return NULL;
}

/* Spawns the task for an accepted connection as a child of the calling
 * (server) task. A direct descriptor belongs to the task that accepted it:
 * hand it over before the new task first runs. */
static void start_connection(int fd)
{
    /* A direct descriptor belongs to the task given it, and weft closes it
     * when that task ends; a plain one is closed by discard should the task
     * never start. */
    weft_spawn_opts o = {.name = "conn",
                         .flags = opt.direct ? WEFT_TASK_STICKY : 0,
                         .discard = opt.direct ? release_direct_slot : close_unserved};
    weft_task *t;
    int r = weft_spawn_ex(&t, &o, connection, (void *)(intptr_t)fd);
    if (r < 0) {
        fprintf(stderr, "weft_echo: spawning a connection task: %s\n", weft_strerror(r));
        weft_close(fd);
        release_direct_slot(NULL);
        return;
    }
    if (opt.direct && (r = weft_direct_give(fd, t)) < 0) {
        fprintf(stderr, "weft_echo: handing over a descriptor: %s\n", weft_strerror(r));
        /* Cancelled before its first run, it never runs: its discard gives
         * the slot's unit back, and the descriptor is still ours. */
        weft_cancel(t);
        weft_close(fd);
    }
    weft_detach(t);
}

/* ---- accepting ----------------------------------------------------------- */

/* Accepts until cancelled. Returns NULL when cancelled (a normal stop),
 * non-NULL after a fatal accept error. */
static void *accept_loop(void *arg)
{
    int listen_fd = (int)(intptr_t)arg;
    /* SOCK_CLOEXEC is for normal fds only: with WEFT_DIRECT it is -EINVAL. */
    unsigned flags = opt.direct ? WEFT_DIRECT : SOCK_CLOEXEC;
    int r = 0;
    if (opt.multishot) {
        /* One multishot ACCEPT: the kernel keeps accepting and queues the
         * new descriptors for us. */
        weft_stream *accepts;
        r = weft_accept_stream(&accepts, listen_fd, flags);
        if (r < 0) {
            fprintf(stderr, "weft_echo: accept stream: %s\n", weft_strerror(r));
            return (void *)1;
        }
        while (r == 0) {
            int fd = weft_stream_next(accepts, NULL);
            if (fd >= 0)
                start_connection(fd);
            else
                r = accept_failed("weft_echo", fd);
        }
        weft_stream_close(accepts);
    } else {
        while (r == 0) {
            if (direct_capped() && (r = weft_sem_acquire(&direct_slots)) < 0)
                break; /* cancelled */
            int fd = weft_accept(listen_fd, NULL, NULL, flags);
            if (fd >= 0) {
                start_connection(fd);
            } else {
                release_direct_slot(NULL);
                r = accept_failed("weft_echo", fd);
            }
        }
    }
    /* Returning cancels and awaits the connection tasks (our children). */
    return r == -ECANCELED ? NULL : (void *)1;
}

/* The server task: one accept loop, or with --per-worker one on each
 * worker, as its children (so cancelling the server stops them all). */
static void *server(void *arg)
{
    if (!opt.per_worker)
        return accept_loop(arg);
    unsigned n = weft_worker_count();
    for (unsigned k = 0; k < n; k++) {
        weft_spawn_opts o = {.name = "acceptor", .flags = WEFT_TASK_ON_WORKER, .worker = k};
        int r = weft_spawn_ex(NULL, &o, accept_loop, arg);
        if (r < 0) {
            fprintf(stderr, "weft_echo: spawning the acceptor of worker %u: %s\n", k,
                    weft_strerror(r));
            return (void *)1; /* cancels and awaits the ones started */
        }
    }
    /* Until cancelled (then returning cancels and awaits the acceptors),
     * or until every acceptor has stopped on a fatal error. */
    return weft_wait_children() == -ECANCELED ? NULL : (void *)1;
}

/* ---- start and stop ------------------------------------------------------ */

/* What the runtime catches from its start (weft_config.catch_signals): a
 * signal that comes before the watcher waits is kept for its wait. */
static const int stop_signals[] = {SIGINT, SIGTERM};

typedef struct app {
    int listen_fd;
    weft_task *server; /* NULL once joined */
} app;

/* Waits for SIGINT or SIGTERM and cancels the server task. */
static void *watch_signals(void *arg)
{
    app *a = arg;
    int signo = weft_signal_wait_any(NULL, 0); /* any of catch_signals */
    if (signo > 0 && a->server) {
        fprintf(stderr, "weft_echo: %s, stopping\n", strsignal(signo));
        weft_cancel(a->server);
    }
    return NULL;
}

static void *app_main(void *arg)
{
    app *a = arg;
    /* Said from the runtime, whose handlers are in: a script that stops
     * the server once it reads this line cannot kill it unawares. */
    if (opt.port == 0) {
        printf("listening on %d\n", bound_port(a->listen_fd));
        fflush(stdout);
    }
    weft_spawn_opts server_opts = {.name = "server"}, watcher_opts = {.name = "signals"};
    int r = weft_spawn_ex(&a->server, &server_opts, server, (void *)(intptr_t)a->listen_fd);
    if (r < 0) {
        fprintf(stderr, "weft_echo: spawning the server: %s\n", weft_strerror(r));
        return (void *)1;
    }
    weft_task *watcher = NULL;
    r = weft_spawn_ex(&watcher, &watcher_opts, watch_signals, a);
    if (r < 0) {
        fprintf(stderr, "weft_echo: spawning the signal watcher: %s\n", weft_strerror(r));
        weft_cancel(a->server);
        watcher = NULL;
    }
    void *failed = NULL;
    int joined = weft_join(a->server, &failed); /* -ECANCELED: stopped by a signal */
    a->server = NULL;
    if (watcher) {
        weft_cancel(watcher);
        weft_join(watcher, NULL);
    }
    write_stats(stdout);
    fflush(stdout);
    return r < 0 || (joined == 0 && failed) ? (void *)1 : NULL;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: weft_echo [PORT] [--direct] [--multishot] [--per-worker] [--workers N]\n"
            "  --workers N  1..1023 workers, 0 = one per CPU (default: $WEFT_WORKERS,\n"
            "               else one per CPU)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--direct") == 0)
            opt.direct = true;
        else if (strcmp(argv[i], "--multishot") == 0)
            opt.multishot = true;
        else if (strcmp(argv[i], "--per-worker") == 0)
            opt.per_worker = true;
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            if (!parse_workers("weft_echo", argv[++i], &opt.workers))
                usage();
        } else if (argv[i][0] != '-' && (opt.port = (int)strtol(argv[i], &end, 10), !*end) &&
                   opt.port >= 0 && opt.port <= 65535)
            continue;
        else
            usage();
    }

    app a = {.listen_fd = listen_on(opt.port)};
    if (a.listen_fd < 0) {
        fprintf(stderr, "weft_echo: port %d: %s\n", opt.port, strerror(-a.listen_fd));
        return 1;
    }

    weft_config cfg = {.workers = opt.workers,
                       .direct_fds = DIRECT_FDS,
                       .catch_signals = stop_signals,
                       .ncatch_signals = 2};
    void *failed = NULL;
    int r = weft_run(&cfg, app_main, &a, &failed);
    close(a.listen_fd);
    if (r < 0) {
        fprintf(stderr, "weft_echo: weft_run: %s%s%s\n", weft_strerror(r), r == -EINVAL ? ": " : "",
                r == -EINVAL ? weft_last_config_error() : "");
        return 1;
    }
    return failed ? 1 : 0;
}
