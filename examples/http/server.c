/* server.c - a small HTTP/1.1 server (weft_http).
 *
 * What it shows:
 *  - one task per connection, all of them children of the server task:
 *    cancelling the server task on SIGINT/SIGTERM stops every connection;
 *  - keep-alive and pipelining: every complete request in the input buffer
 *    is answered, in order, and the responses go out together in one send;
 *  - timeouts with deadlines: weft_deadline_push / weft_deadline_pop around
 *    weft_recv bound the wait for the next request (idle timeout: the
 *    connection is closed) and for the rest of a started request (request
 *    timeout: 408, then close);
 *  - an incremental request parser with no weft dependency (parse.c);
 *  - several workers (--workers): connection tasks start on the worker that
 *    accepted them and idle workers take queued ones over;
 *  - weighted queues (--bg-cpu): the server and its connections run in
 *    queue "http" (weight 100), next to queue "bg" (weight 5) holding one
 *    CPU-bound task per worker that computes in slices of about 150 us and
 *    calls weft_yield_maybe between them. The background work takes the CPU
 *    the server leaves idle, and the weights decide the split when both
 *    want it.
 *
 * Routes: GET / answers "Hello, world!", GET /stats the runtime's counters
 * and io_uring ops; HEAD works on both; other methods get 405, other paths
 * 404. Bodies sent with Content-Length (up to 1 MiB) are read and ignored;
 * Transfer-Encoding (chunked) bodies are refused with 501 (see parse.h).
 *
 * usage: weft_http [PORT] [--idle-timeout SECONDS] [--request-timeout SECONDS]
 *                  [--load SECONDS [--conns N]] [--workers N] [--bg-cpu]
 *   Listens on 127.0.0.1:PORT (default 8080; 0 = the kernel picks a port and
 *   the server prints "listening on <port>"). A connection is closed after
 *   10 s without a request (--idle-timeout); a request whose header section
 *   is not complete 5 s after its first byte gets 408 (--request-timeout),
 *   and so does one whose body comes in slower than 16 KiB/s on average
 *   (counted from the same first byte, on top of the request timeout).
 *   --load runs the built-in load generator (load.c) against the server: a
 *   separate process (forked before either runtime starts, so that the two
 *   do not share a CPU's scheduler, one worker pinned to CPU 1 when there is
 *   one) with N connections (default 64), each a weft task sending
 *   keep-alive GET / requests one at a time for SECONDS. It prints
 *   requests/s and latency percentiles; the server then stops and prints its
 *   io_uring ops by opcode (summed over every worker) and its stats.
 *   SIGINT ends the run early.
 *   --workers N runs N workers (1..1023; 0 = one per CPU the process may
 *   run on; $WEFT_WORKERS is then ignored). Without it, weft's default:
 *   $WEFT_WORKERS if set, else one per CPU; but a --load run pins the
 *   server to CPU 0 first, which makes that default one worker (unless
 *   $WEFT_WORKERS says otherwise). With --workers other than 1 the server
 *   is not pinned and shares CPU 1 with the load generator.
 *   --bg-cpu adds the background queue described above (it keeps every
 *   worker busy until the server stops).
 *   On stopping, the server also prints a table with a row per worker:
 *   requests answered, background slices, context switches, tasks spawned,
 *   stolen and donated, spells of hunger, wake-ups sent, parks; with
 *   --bg-cpu, the background work done (slices/s, CPUs' worth) and the
 *   per-queue table.
 *
 * Try it:  weft_http 8080 &  curl -i localhost:8080/  curl localhost:8080/stats
 *          weft_http --load 5 --workers 0 --bg-cpu        (what `make demo` runs)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <weft.h>

#include "../server_common.h"

#include "load.h"
#include "parse.h"

#define DEFAULT_PORT    8080
#define NS_PER_SEC      1000000000ull
#define SEND_TIMEOUT_NS (10 * NS_PER_SEC) /* a client that stopped reading */
#define LINGER_NS       (2 * NS_PER_SEC)  /* draining input before closing after an error */
#define LINGER_BYTES    (1024 * 1024)
#define IN_FIRST_BYTES  16384
#define IN_MAX_BYTES    (HTTP_MAX_HEADER_BYTES + HTTP_MAX_BODY + 1) /* one whole request */
#define OUT_FLUSH_BYTES 65536 /* send pipelined responses once this many pile up */
#define HTTP_WEIGHT     100
#define BG_WEIGHT       5
#define BG_SLICE_NS     150000ull /* one background slice of computing */

/* Timeouts, set once in main before the runtime starts. */
static uint64_t idle_timeout_ns = 10 * NS_PER_SEC; /* waiting for the next request */
static uint64_t request_timeout_ns =
    5 * NS_PER_SEC; /* a request's first byte to its whole header */
/* A body must come in at this rate on average, counted from the request's
 * first byte, on top of the request timeout: a client sending one byte
 * just within each idle timeout would otherwise hold its connection for
 * as long as it likes (a megabyte at 10 s a byte). */
#define BODY_MIN_BYTES_PER_SEC 16384

/* ---- per-worker counters and the background work -------------------------- */

/* What each worker did, counted here: one cache line per worker, written
 * only by that worker's thread (atomics all the same: the report reads them
 * from another thread). */
typedef struct worker_counts {
    alignas(64) _Atomic uint64_t requests; /* requests answered */
    _Atomic uint64_t bg_slices;            /* background slices computed */
} worker_counts;

static worker_counts *counts; /* [ncounts]: one per worker, set by app_main */
static unsigned ncounts;

typedef enum counter { REQUESTS, BG_SLICES } counter;

static void count(counter which)
{
    int w = weft_worker_index();
    if (counts && w >= 0 && (unsigned)w < ncounts)
        atomic_fetch_add_explicit(which == REQUESTS ? &counts[w].requests : &counts[w].bg_slices, 1,
                                  memory_order_relaxed);
}

/* --bg-cpu: set once in main before the runtime starts. */
static struct {
    bool on;
    uint64_t rounds;   /* xorshift rounds in one slice, calibrated to BG_SLICE_NS */
    uint64_t slice_ns; /* what one slice took when calibrated */
} bg;
static _Atomic uint64_t bg_sink; /* keeps the computation from being optimized away */

static uint64_t burn(uint64_t rounds, uint64_t x)
{
    for (uint64_t i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* The fastest of five runs of burn(rounds): the least disturbed. */
static uint64_t burn_ns(uint64_t rounds)
{
    uint64_t best = UINT64_MAX, x = 88172645463325252ull;
    for (int i = 0; i < 5; i++) {
        uint64_t start = monotonic_ns();
        x = burn(rounds, x);
        uint64_t took = monotonic_ns() - start;
        if (took < best)
            best = took;
    }
    atomic_fetch_xor_explicit(&bg_sink, x, memory_order_relaxed);
    return best ? best : 1;
}

/* Sizes a slice: the rounds that take BG_SLICE_NS here. */
static void bg_calibrate(void)
{
    uint64_t rounds = 1024, took;
    while ((took = burn_ns(rounds)) < 2 * BG_SLICE_NS && rounds < (1ull << 40))
        rounds *= 2;
    bg.rounds = rounds * BG_SLICE_NS / took;
    if (bg.rounds == 0)
        bg.rounds = 1;
    bg.slice_ns = burn_ns(bg.rounds);
}

/* One background task: a slice of computing, then a scheduling point (a
 * yield once the worker's time slice is used up, or when another queue
 * should run), until cancelled. */
static void *bg_task(void *arg)
{
    uint64_t x = 0x9e3779b97f4a7c15ull + (uintptr_t)arg;
    do {
        x = burn(bg.rounds, x);
        count(BG_SLICES);
    } while (weft_yield_maybe() == 0);
    atomic_fetch_xor_explicit(&bg_sink, x, memory_order_relaxed);
    return NULL;
}

/* ---- responses ----------------------------------------------------------- */

/* A growable byte buffer. */
typedef struct buffer {
    char *data;
    size_t len, cap;
} buffer;

static bool buffer_reserve(buffer *b, size_t more)
{
    if (b->len + more <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data)
        return false;
    b->data = data;
    b->cap = cap;
    return true;
}

static void buffer_append(buffer *b, const void *data, size_t n)
{
    if (buffer_reserve(b, n)) {
        memcpy(b->data + b->len, data, n);
        b->len += n;
    }
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Internal Server Error";
    }
}

/* The Date header's value, formatted once a second by each worker thread
 * (thread-local: the pointer is used before the task's next blocking call,
 * so it is this thread's copy). */
static const char *http_date(void)
{
    static _Thread_local char text[64];
    static _Thread_local time_t formatted_at;
    time_t now = time(NULL);
    if (now != formatted_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        formatted_at = now;
    }
    return text;
}

typedef enum connection_header {
    CONN_NONE,       /* HTTP/1.1 keep-alive: the default needs no header */
    CONN_KEEP_ALIVE, /* HTTP/1.0 keep-alive */
    CONN_CLOSE,
} connection_header;

/* Appends a whole response; with head_only the body is left out (HEAD) but
 * its length is still announced. */
static void append_response(buffer *out, int status, const char *type, const char *body,
                            size_t body_len, connection_header conn, bool head_only,
                            const char *extra_headers)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nServer: weft\r\nDate: %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n",
                     status, reason(status), http_date(), type, body_len,
                     conn == CONN_CLOSE        ? "Connection: close\r\n"
                     : conn == CONN_KEEP_ALIVE ? "Connection: keep-alive\r\n"
                                               : "",
                     extra_headers);
    if (n < 0 || (size_t)n >= sizeof head)
        return; /* cannot happen: every header above is short */
    buffer_append(out, head, (size_t)n);
    if (!head_only)
        buffer_append(out, body, body_len);
}

static void append_error(buffer *out, int status)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason(status));
    append_response(out, status, "text/plain", body, (size_t)n, CONN_CLOSE, false, "");
}

/* Answers one parsed request. Returns whether the connection stays open. */
static bool respond(buffer *out, const http_request *req)
{
    bool head = http_slice_eq(req->method, "HEAD");
    bool get_or_head = head || http_slice_eq(req->method, "GET");
    connection_header conn = !req->keep_alive          ? CONN_CLOSE
                             : req->minor_version == 0 ? CONN_KEEP_ALIVE
                                                       : CONN_NONE;
    /* The path is the target without its query. */
    const char *q = memchr(req->target.ptr, '?', req->target.len);
    http_slice path = {req->target.ptr, q ? (size_t)(q - req->target.ptr) : req->target.len};

    if (http_slice_eq(path, "/") || http_slice_eq(path, "/stats")) {
        if (!get_or_head) {
            static const char body[] = "405 Method Not Allowed\n";
            append_response(out, 405, "text/plain", body, sizeof body - 1, conn, false,
                            "Allow: GET, HEAD\r\n");
        } else if (http_slice_eq(path, "/")) {
            append_response(out, 200, "text/plain", "Hello, world!", 13, conn, head, "");
        } else {
            char *text = NULL;
            size_t len = 0;
            FILE *f = open_memstream(&text, &len);
            if (f) {
                write_stats(f);
                fclose(f);
            }
            append_response(out, 200, "text/plain; charset=utf-8", text ? text : "", len, conn,
                            head, "");
            free(text);
        }
    } else {
        static const char body[] = "404 Not Found\n";
        append_response(out, 404, "text/plain", body, sizeof body - 1, conn, head, "");
    }
    return req->keep_alive;
}

/* ---- one connection ------------------------------------------------------ */

typedef struct connection {
    int fd;
    buffer in;  /* received bytes; the request being parsed starts at in.data */
    buffer out; /* responses not sent yet */
    http_parser parser;
    uint64_t request_started_ns; /* when the first byte of the pending request came */
    bool failed;                 /* answered with an error: linger before closing */
} connection;

/* Sends all of out, giving up after SEND_TIMEOUT_NS (a client that does not
 * read). A vanished peer is -EPIPE, not a SIGPIPE: io_uring's sends never
 * raise it (MSG_NOSIGNAL only says so to a reader who knows send(2)). */
static int flush(connection *c)
{
    int r = weft_deadline_push_in(SEND_TIMEOUT_NS);
    if (r < 0)
        return r;
    r = weft_send_all(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL, NULL);
    weft_deadline_pop();
    c->out.len = 0;
    return r;
}

/* Closing a socket that still has unread input makes the kernel send a
 * reset, which can destroy the error response before the client reads it.
 * So after an error: no more output (SHUT_WR), then read and drop what the
 * client still sends, for a little while. */
static void linger(connection *c)
{
    if (weft_shutdown(c->fd, SHUT_WR) < 0)
        return;
    if (weft_deadline_push_in(LINGER_NS) < 0)
        return;
    for (size_t drained = 0; drained < LINGER_BYTES;) {
        ssize_t n = weft_recv(c->fd, c->in.data, c->in.cap, 0);
        if (n <= 0)
            break;
        drained += (size_t)n;
    }
    weft_deadline_pop();
}

/* Answers every complete request at the start of c->in, drops their bytes
 * and returns whether the connection stays open. */
static bool answer_requests(connection *c)
{
    http_request req;
    size_t used = 0;
    bool open = true;
    while (open) {
        int r = http_parse(&c->parser, c->in.data + used, c->in.len - used, &req);
        if (r == 0)
            break;
        if (r < 0) {
            append_error(&c->out, -r);
            c->failed = true;
            open = false;
            break;
        }
        open = respond(&c->out, &req);
        count(REQUESTS);
        used += (size_t)r;
        if (c->out.len >= OUT_FLUSH_BYTES && flush(c) < 0)
            open = false;
    }
    /* What is left is the start of the next request: move it to the front
     * (the parser works with offsets, so its progress stays valid). */
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    if (used)
        c->request_started_ns = weft_now_ns();
    return open;
}

/* Receives more bytes within the deadline that applies now. Returns the
 * count, 0 at end of stream, or -errno (-ETIMEDOUT past the deadline). */
static ssize_t receive(connection *c)
{
    if (c->in.len == c->in.cap) {
        if (c->in.cap >= IN_MAX_BYTES || !buffer_reserve(&c->in, c->in.cap))
            return -ENOBUFS; /* cannot happen: the parser rejects larger requests */
    }
    size_t room = c->in.cap - c->in.len;
    if (room > IN_MAX_BYTES - c->in.len)
        room = IN_MAX_BYTES - c->in.len;
    /* Between requests: the idle timeout. Inside a request's header: its
     * deadline counts from its first byte. Reading a body: the idle
     * timeout for each piece, and the whole body within its own deadline
     * (BODY_MIN_BYTES_PER_SEC). */
    uint64_t deadline = weft_now_ns() + idle_timeout_ns;
    if (c->in.len > 0 && !c->parser.header_end) {
        deadline = c->request_started_ns + request_timeout_ns;
    } else if (c->parser.header_valid) {
        uint64_t body = c->request_started_ns + request_timeout_ns +
                        c->parser.body_length * NS_PER_SEC / BODY_MIN_BYTES_PER_SEC;
        if (body < deadline)
            deadline = body;
    }
    int pushed = weft_deadline_push(deadline);
    if (pushed < 0)
        return pushed;
    ssize_t n = weft_recv(c->fd, c->in.data + c->in.len, room, 0);
    weft_deadline_pop();
    if (n > 0 && c->in.len == 0)
        c->request_started_ns = weft_now_ns();
    if (n > 0)
        c->in.len += (size_t)n;
    return n;
}

static void serve(connection *c)
{
    for (;;) {
        bool open = answer_requests(c);
        if (c->out.len && flush(c) < 0)
            return;
        if (!open)
            break;
        ssize_t n = receive(c);
        if (n == -ETIMEDOUT && c->in.len > 0) {
            append_error(&c->out, 408); /* a request was under way: tell the client */
            c->failed = flush(c) == 0;
        }
        if (n <= 0)
            break; /* closed, error, timeout or cancelled */
    }
    if (c->failed)
        linger(c);
}

static void *connection_task(void *arg)
{
    connection c = {.fd = (int)(intptr_t)arg};
    http_parser_init(&c.parser);
    if (buffer_reserve(&c.in, IN_FIRST_BYTES))
        serve(&c);
    free(c.in.data);
    free(c.out.data);
    weft_close(c.fd); /* closes even in a cancelled task, unlike other calls */
    return NULL;
}

/* ---- the server task ----------------------------------------------------- */

/* Accepts until cancelled; returns NULL when cancelled (a normal stop). */
static void *server_task(void *arg)
{
    int listen_fd = (int)(intptr_t)arg;
    int r = 0;
    while (r == 0) {
        int fd = weft_accept(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            r = accept_failed("weft_http", fd);
            continue;
        }
        /* No queue named: a child runs in its spawner's queue ("http" with
         * --bg-cpu). */
        weft_spawn_opts o = {.name = "http-conn", .discard = close_unserved};
        if ((r = weft_spawn_ex(NULL, &o, connection_task, (void *)(intptr_t)fd)) < 0) {
            fprintf(stderr, "weft_http: spawning a connection task: %s\n", weft_strerror(r));
            close(fd);
            r = 0;
        }
    }
    /* Returning cancels and awaits the connection tasks (our children). */
    return r == -ECANCELED ? NULL : (void *)1;
}

/* ---- start and stop ------------------------------------------------------ */

typedef struct app {
    int listen_fd;
    int signal_fd;     /* SIGINT and SIGTERM, blocked and read from here */
    pid_t load_pid;    /* the load generator, 0 when none */
    int load_status;   /* its wait status, -1 until it has ended */
    weft_task *server; /* NULL once joined */
} app;

/* Waits for SIGINT or SIGTERM and cancels the server task. During a load
 * run, the first signal goes to the load generator instead, which stops
 * early and prints its results; the server stops when it has ended. */
static void *watch_signals(void *arg)
{
    app *a = arg;
    bool forwarded = false;
    struct signalfd_siginfo si;
    while (weft_read(a->signal_fd, &si, sizeof si, WEFT_OFF_CURRENT) == (ssize_t)sizeof si) {
        if (a->load_pid > 0 && a->load_status < 0 && !forwarded) {
            kill(a->load_pid, (int)si.ssi_signo);
            forwarded = true;
            continue;
        }
        fprintf(stderr, "weft_http: %s, stopping\n", strsignal((int)si.ssi_signo));
        if (a->server)
            weft_cancel(a->server);
        break;
    }
    return NULL;
}

/* Waits for the load generator to finish and stops the server. */
static void *watch_load(void *arg)
{
    app *a = arg;
    siginfo_t info;
    int r = weft_waitid(P_PID, a->load_pid, &info, WEXITED);
    if (r == -EOPNOTSUPP) {
        /* io_uring's WAITID needs Linux 6.7; before that, wait for the
         * process's pidfd to become readable, then reap it. */
        int pidfd = (int)syscall(SYS_pidfd_open, a->load_pid, 0);
        if (pidfd >= 0 && (r = weft_poll(pidfd, POLLIN)) >= 0)
            r = waitid(P_PID, (id_t)a->load_pid, &info, WEXITED) < 0 ? -errno : 0;
        if (pidfd >= 0)
            close(pidfd);
    }
    if (r == 0) {
        a->load_status = info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
        if (a->server)
            weft_cancel(a->server);
    }
    return NULL;
}

/* Cancels and joins the background tasks (NULL entries skipped). */
static void stop_bg(weft_task **tasks, unsigned n)
{
    for (unsigned i = 0; tasks && i < n; i++)
        if (tasks[i]) {
            weft_cancel(tasks[i]);
            weft_join(tasks[i], NULL);
        }
    free(tasks);
}

/* A row per worker: the counts kept here and weft_stats_workers' own (ws,
 * n of them). */
static void print_workers(FILE *f, const weft_stats *ws, unsigned n)
{
    fprintf(f, "per worker:\n  worker   requests  bg slices   switches  spawned  stolen  donated"
               "  hungry  fed   wakes  parks\n");
    for (unsigned i = 0; i < n; i++) {
        const weft_stats *w = &ws[i];
        fprintf(f, "  %6u %10llu %10llu %10llu %8llu %7llu %8llu %7llu %4llu %7llu %6llu\n", i,
                i < ncounts ? (unsigned long long)atomic_load(&counts[i].requests) : 0ull,
                i < ncounts ? (unsigned long long)atomic_load(&counts[i].bg_slices) : 0ull,
                (unsigned long long)w->context_switches, (unsigned long long)w->tasks_spawned,
                (unsigned long long)w->tasks_stolen, (unsigned long long)w->tasks_donated,
                (unsigned long long)w->steal_attempts, (unsigned long long)w->steal_successes,
                (unsigned long long)w->wakes_sent, (unsigned long long)w->parks);
    }
    fprintf(f, "  (stolen / donated: tasks taken over from / handed to other workers; hungry:\n"
               "   spells idle asking for work, fed: those that got some; wakes: wake-ups of\n"
               "   parked workers sent; parks: sleeps in io_uring_enter)\n");
}

static void *app_main(void *arg)
{
    app *a = arg;
    unsigned nworkers = weft_worker_count();
    counts = aligned_alloc(alignof(worker_counts), nworkers * sizeof *counts);
    if (counts) {
        for (unsigned i = 0; i < nworkers; i++) {
            atomic_init(&counts[i].requests, 0);
            atomic_init(&counts[i].bg_slices, 0);
        }
        ncounts = nworkers;
    }
    if (a->load_pid > 0 || bg.on) {
        printf("weft_http: %u worker%s", nworkers, nworkers == 1 ? "" : "s");
        if (bg.on)
            printf(", queues \"http\" (weight %d) and \"bg\" (weight %d) with %u CPU-bound "
                   "task%s in slices of %.0f us",
                   HTTP_WEIGHT, BG_WEIGHT, nworkers, nworkers == 1 ? "" : "s",
                   (double)bg.slice_ns / 1e3);
        printf("\n");
        fflush(stdout);
    }

    /* The background tasks: one per worker, all spawned here; idle workers
     * take them over (docs/workers.md). */
    weft_task **bg_tasks = NULL;
    uint64_t bg_start_ns = weft_now_ns();
    int r = 0;
    if (bg.on) {
        bg_tasks = calloc(nworkers, sizeof *bg_tasks);
        if (!bg_tasks)
            r = -ENOMEM;
        weft_spawn_opts bg_opts = {.queue = "bg", .name = "bg-cpu"};
        for (unsigned i = 0; r == 0 && i < nworkers; i++)
            r = weft_spawn_ex(&bg_tasks[i], &bg_opts, bg_task, (void *)(uintptr_t)i);
        if (r < 0) {
            fprintf(stderr, "weft_http: spawning the background tasks: %s\n", weft_strerror(r));
            stop_bg(bg_tasks, nworkers);
            return (void *)1;
        }
    }

    weft_spawn_opts server_opts = {.name = "server", .queue = bg.on ? "http" : NULL};
    r = weft_spawn_ex(&a->server, &server_opts, server_task, (void *)(intptr_t)a->listen_fd);
    if (r < 0) {
        fprintf(stderr, "weft_http: spawning the server: %s\n", weft_strerror(r));
        stop_bg(bg_tasks, nworkers);
        return (void *)1;
    }
    weft_task *watchers[2] = {NULL, NULL};
    if ((r = weft_spawn(&watchers[0], watch_signals, a)) == 0 && a->load_pid > 0)
        r = weft_spawn(&watchers[1], watch_load, a);
    if (r < 0) {
        fprintf(stderr, "weft_http: spawning a watcher: %s\n", weft_strerror(r));
        weft_cancel(a->server);
    }
    void *failed = NULL;
    int joined = weft_join(a->server, &failed); /* -ECANCELED: stopped */
    a->server = NULL;
    for (int i = 0; i < 2; i++)
        if (watchers[i]) {
            weft_cancel(watchers[i]);
            weft_join(watchers[i], NULL);
        }
    uint64_t bg_ns = weft_now_ns() - bg_start_ns;
    uint64_t bg_slices = 0;
    for (unsigned i = 0; i < ncounts; i++)
        bg_slices += atomic_load(&counts[i].bg_slices);

    /* Read while the background tasks still run, so that the queue table
     * shows them; the per-worker figures first, before write_stats reads
     * the workers too. */
    weft_stats *ws = calloc(nworkers, sizeof *ws);
    int nws = ws ? weft_stats_workers(ws, nworkers) : -ENOMEM;
    if (nws < 0)
        fprintf(stderr, "weft_http: weft_stats_workers: %s\n", weft_strerror(nws));
    weft_queue_stats qs[2];
    int nq = bg.on ? weft_stats_queues(qs, 2) : 0;

    printf("server: ");
    write_stats(stdout);
    if (nws > 0)
        print_workers(stdout, ws, (unsigned)nws < nworkers ? (unsigned)nws : nworkers);
    free(ws);
    if (bg.on) {
        double seconds = (double)bg_ns / 1e9;
        printf("background: %llu slices of %.0f us in %.1f s: %.0f slices/s, %.2f CPUs' worth\n",
               (unsigned long long)bg_slices, (double)bg.slice_ns / 1e3, seconds,
               (double)bg_slices / seconds,
               (double)bg_slices * (double)bg.slice_ns / (double)bg_ns);
        if (nq > 0) {
            printf("per queue:\n");
            weft_stats_print_queues(stdout, qs, (size_t)nq < 2 ? (size_t)nq : 2);
        }
    }
    stop_bg(bg_tasks, nworkers);
    fflush(stdout);
    return r < 0 || (joined == 0 && failed) ? (void *)1 : NULL;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: weft_http [PORT] [--idle-timeout SECONDS] [--request-timeout SECONDS]\n"
            "                 [--load SECONDS [--conns N]] [--workers N] [--bg-cpu]\n"
            "  --workers N  1..1023 workers, 0 = one per CPU (default: $WEFT_WORKERS, else\n"
            "               one per CPU; a --load run pins the server to one CPU, so there\n"
            "               the default is one worker)\n"
            "  --bg-cpu     run the server in queue \"http\" (weight %d) next to queue \"bg\"\n"
            "               (weight %d) with one CPU-bound task per worker\n",
            HTTP_WEIGHT, BG_WEIGHT);
    exit(2);
}

int main(int argc, char **argv)
{
    int port = DEFAULT_PORT;
    bool port_given = false;
    http_load_args load_opts = {.conns = 64};
    unsigned workers = 0; /* weft_config.workers: 0 = weft's default */
    bool workers_given = false;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            if (!parse_workers("weft_http", argv[++i], &workers))
                usage();
            workers_given = true;
        } else if (strcmp(argv[i], "--bg-cpu") == 0) {
            bg.on = true;
        } else if (strcmp(argv[i], "--load") == 0 && i + 1 < argc) {
            load_opts.seconds = strtod(argv[++i], &end);
            if (*end || !(load_opts.seconds > 0 && load_opts.seconds <= 3600))
                usage();
        } else if ((strcmp(argv[i], "--idle-timeout") == 0 ||
                    strcmp(argv[i], "--request-timeout") == 0) &&
                   i + 1 < argc) {
            double seconds = strtod(argv[i + 1], &end);
            if (*end || !(seconds > 0 && seconds <= 86400))
                usage();
            *(argv[i][2] == 'i' ? &idle_timeout_ns : &request_timeout_ns) =
                (uint64_t)(seconds * 1e9);
            i++;
        } else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc) {
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 10000)
                usage();
            load_opts.conns = (unsigned)n;
        } else if (argv[i][0] != '-' && !port_given) {
            long n = strtol(argv[i], &end, 10);
            if (*end || n < 0 || n > 65535)
                usage();
            port = (int)n;
            port_given = true;
        } else {
            usage();
        }
    }
    if (load_opts.seconds > 0 && !port_given)
        port = 0; /* a load run needs no fixed port */
    if (bg.on)
        bg_calibrate();

    /* Before any thread exists (see stop_signals_fd). */
    app a = {.signal_fd = stop_signals_fd(), .load_status = -1};
    if (a.signal_fd < 0) {
        perror("weft_http: signalfd");
        return 1;
    }
    a.listen_fd = listen_on(port);
    if (a.listen_fd < 0) {
        fprintf(stderr, "weft_http: port %d: %s\n", port, strerror(-a.listen_fd));
        return 1;
    }
    if (port == 0 && load_opts.seconds == 0)
        printf("listening on %d\n", bound_port(a.listen_fd));
    fflush(stdout); /* before a fork: nothing buffered is printed twice */

    if (load_opts.seconds > 0) {
        load_opts.port = bound_port(a.listen_fd);
        load_opts.signal_fd = a.signal_fd;
        /* One worker gets CPU 0 to itself (weft's default then makes it
         * one worker); several keep every CPU. */
        load_opts.pin_server = !workers_given || workers == 1;
        a.load_pid = http_load_start(&load_opts, a.listen_fd);
        if (a.load_pid < 0) {
            fprintf(stderr, "weft_http: fork: %s\n", strerror(-a.load_pid));
            return 1;
        }
    }

    weft_queue_spec queues[] = {
        {.name = "http", .weight = HTTP_WEIGHT}, /* first: the main task's queue */
        {.name = "bg", .weight = BG_WEIGHT},
    };
    weft_config cfg = {.workers = workers};
    if (bg.on) {
        cfg.queues = queues;
        cfg.nqueues = 2;
        cfg.stats = true; /* queue delays for the per-queue table */
    }
    void *failed = NULL;
    int r = weft_run(&cfg, app_main, &a, &failed);
    free(counts);
    if (a.load_pid > 0 && a.load_status < 0) {
        /* Stopped by a signal before the load generator ended. */
        kill(a.load_pid, SIGTERM);
        int status;
        waitpid(a.load_pid, &status, 0);
    }
    close(a.listen_fd);
    close(a.signal_fd);
    if (r < 0) {
        fprintf(stderr, "weft_http: weft_run: %s%s%s\n", weft_strerror(r), r == -EINVAL ? ": " : "",
                r == -EINVAL ? weft_last_config_error() : "");
        return 1;
    }
    if (a.load_pid > 0 && a.load_status != 0)
        return 1;
    return failed ? 1 : 0;
}
