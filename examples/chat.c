/* chat.c - a line-based chat room over TCP: what each client writes, the
 * others read.
 *
 * What it shows:
 *  - weft_listen_on: a listening socket by name, made before weft_run;
 *  - one task per client, whose loop waits on two things at once with
 *    weft_select: its socket being readable (a POLL case) and the room's
 *    next line (a BROADCAST case on a weft_broadcast subscription);
 *  - an idle limit: a deadline around each wait, moved on by every line;
 *  - a slow reader cannot hold the room up: the broadcast never waits (a
 *    client too far behind is told how many lines it missed), and each
 *    write to a client is bounded by a deadline;
 *  - a clean stop on SIGINT/SIGTERM: cancelling the server task cancels
 *    every client task (its children), each of which says goodbye inside
 *    a shield, with a short deadline, before it closes its socket.
 *
 * usage: weft_chat [PORT] [--idle-ms N]
 *   Listens on 127.0.0.1:PORT (default 7778); with PORT 0 the kernel picks
 *   one and the server prints "listening on <port>". A client silent for
 *   --idle-ms (default 300000, 5 minutes) is dropped.
 *
 * Try it:  weft_chat 7778 &  then  nc 127.0.0.1 7778  in two terminals.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#include "server_common.h"

#define DEFAULT_PORT 7778
#define LINE_MAX     512 /* longer lines are cut into pieces of this size */
#define ROOM_LINES   256 /* the room keeps this many; a client further behind misses some */
#define WRITE_NS     (2 * 1000000000ull) /* a client must take a line within this */
#define MS           1000000ull

static struct {
    int port;
    uint64_t idle_ns;
} opt = {DEFAULT_PORT, 300000 * MS};

/* A line said in the room, by client `from`. */
struct chat_line {
    uint64_t from;
    uint32_t len;
    char text[LINE_MAX];
};

static weft_broadcast *room;
static _Atomic uint64_t next_client = 1;

/* Writes all of text to the client within WRITE_NS: 0, or why not. */
static int say(int fd, const char *text, size_t len)
{
    int r = weft_deadline_push_in(WRITE_NS);
    if (r)
        return r;
    r = weft_send_all(fd, text, len, 0, NULL);
    (void)weft_deadline_pop();
    return r;
}

static int sayf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sayf(int fd, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return say(fd, buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Posts text[0..n) to the room as a line of client me. */
static void post(uint64_t me, const char *text, size_t n)
{
    struct chat_line l = {.from = me, .len = (uint32_t)n};
    memcpy(l.text, text, n);
    (void)weft_broadcast_send(room, &l); /* never waits; -EPIPE once the room closed */
}

/* Posts the complete lines in buf[0..*have) (LINE_MAX bytes at most),
 * keeping the rest, a line not ended yet, at the start of buf; a full
 * buffer without an end of line is posted as it is. */
static void post_lines(uint64_t me, char *buf, size_t *have)
{
    size_t start = 0;
    for (size_t i = 0; i < *have; i++) {
        if (buf[i] == '\n') {
            post(me, buf + start, i + 1 - start);
            start = i + 1;
        }
    }
    if (start == 0 && *have == LINE_MAX) {
        post(me, buf, LINE_MAX);
        start = LINE_MAX;
    }
    memmove(buf, buf + start, *have - start);
    *have -= start;
}

/* One client: its lines go to the room, the room's lines (but its own)
 * come to it, until it leaves, goes silent too long, or the server stops. */
static void *client(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint64_t me = atomic_fetch_add(&next_client, 1);
    weft_broadcast_sub *sub;
    if (weft_broadcast_subscribe(room, &sub) < 0) {
        weft_close(fd);
        return NULL;
    }
    char buf[LINE_MAX];
    size_t have = 0;
    struct chat_line line;
    weft_select_case cases[] = {
        {.op = WEFT_SELECT_POLL, .fd = fd, .events = POLLIN},
        {.op = WEFT_SELECT_BROADCAST, .sub = sub, .elem = &line},
    };
    const char *why = "bye";
    int r = sayf(fd, "welcome, you are #%llu\n", (unsigned long long)me);
    while (r == 0) {
        if ((r = weft_deadline_push_in(opt.idle_ns)) != 0)
            break;
        int k = weft_select(cases, 2);
        (void)weft_deadline_pop();
        if (k == -ETIMEDOUT) {
            why = "idle too long, bye";
            break;
        }
        if (k < 0) { /* -ECANCELED: the server is stopping */
            why = "the server is stopping, bye";
            break;
        }
        if (k == 0) { /* the socket is readable: read what came */
            ssize_t n = weft_recv(fd, buf + have, sizeof buf - have, 0);
            if (n <= 0)
                break; /* gone (0), or an error */
            have += (size_t)n;
            post_lines(me, buf, &have);
        } else if (cases[1].result == -EPIPE) {
            break; /* the room closed */
        } else if (line.from != me) {
            if (cases[1].missed)
                r = sayf(fd, "(%llu lines missed)\n", (unsigned long long)cases[1].missed);
            if (r == 0)
                r = sayf(fd, "#%llu: ", (unsigned long long)line.from);
            if (r == 0)
                r = say(fd, line.text, line.len);
        }
    }
    /* A goodbye even when cancelled: inside a shield, with its own short
     * deadline, so that a client that reads nothing cannot hold the stop. */
    weft_shield_push();
    (void)sayf(fd, "%s\n", why);
    weft_shield_pop();
    weft_broadcast_unsubscribe(sub);
    weft_close(fd);
    return NULL;
}

/* Accepts clients until cancelled; each is a child task, cancelled and
 * awaited with it. */
static void *server(void *arg)
{
    int listen_fd = (int)(intptr_t)arg;
    for (;;) {
        int fd = weft_accept(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (accept_failed("weft_chat", fd) < 0)
                return NULL;
            continue;
        }
        weft_spawn_opts o = {.name = "client", .discard = close_unserved};
        if (weft_spawn_ex(NULL, &o, client, (void *)(intptr_t)fd) < 0)
            close(fd);
    }
}

static const int stop_signals[] = {SIGINT, SIGTERM};

static void *app_main(void *arg)
{
    int listen_fd = (int)(intptr_t)arg;
    int r = weft_broadcast_create(&room, sizeof(struct chat_line), ROOM_LINES);
    if (r < 0) {
        fprintf(stderr, "weft_chat: the room: %s\n", weft_strerror(r));
        return (void *)1;
    }
    printf("listening on %d\n", bound_port(listen_fd));
    fflush(stdout);
    weft_task *srv;
    weft_spawn_opts so = {.name = "server"};
    r = weft_spawn_ex(&srv, &so, server, arg);
    if (r == 0) {
        int signo = weft_signal_wait_any(NULL, 0); /* any of catch_signals */
        if (signo > 0)
            fprintf(stderr, "weft_chat: %s, stopping\n", strsignal(signo));
        weft_cancel(srv);
        (void)weft_join(srv, NULL); /* every client has said goodbye */
    }
    weft_broadcast_close(room);
    (void)weft_broadcast_destroy(room);
    write_stats(stdout);
    fflush(stdout);
    return r < 0 ? (void *)1 : NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: weft_chat [PORT] [--idle-ms N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--idle-ms") == 0 && i + 1 < argc) {
            unsigned long ms = strtoul(argv[++i], &end, 10);
            if (*end || ms == 0 || ms > 86400000ul)
                usage();
            opt.idle_ns = ms * MS;
        } else if (argv[i][0] != '-' && (opt.port = (int)strtol(argv[i], &end, 10), !*end) &&
                   opt.port >= 0 && opt.port <= 65535) {
            continue;
        } else {
            usage();
        }
    }
    int listen_fd = listen_on(opt.port);
    if (listen_fd < 0) {
        fprintf(stderr, "weft_chat: port %d: %s\n", opt.port, weft_strerror(listen_fd));
        return 1;
    }
    weft_config cfg = {.catch_signals = stop_signals, .ncatch_signals = 2};
    void *failed = NULL;
    int r = weft_run(&cfg, app_main, (void *)(intptr_t)listen_fd, &failed);
    close(listen_fd);
    if (r < 0) {
        fprintf(stderr, "weft_chat: weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    return failed ? 1 : 0;
}
