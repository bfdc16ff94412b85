/* proxy.c - a TCP reverse proxy: each connection accepted on PORT is
 * relayed to an upstream server on 127.0.0.1:UPSTREAM.
 *
 * What it shows:
 *  - weft_relay, which copies both ways until both sides are done, passes
 *    an end of stream on as a half-close, and ends a connection that has
 *    been silent both ways for --idle seconds;
 *  - a connect with a time limit (a deadline around weft_connect);
 *  - a cap on live connections (a semaphore the acceptor takes before each
 *    accept: over the cap, new connections wait in the listen backlog);
 *  - a graceful stop: on SIGINT/SIGTERM the acceptor stops (shutdown(2) on
 *    the listening socket ends its accept), live connections get --grace
 *    milliseconds to finish (weft_wait_children under a deadline), and
 *    whatever is left is cancelled; then it prints the ops it issued and
 *    exits 0.
 *
 * usage: weft_proxy PORT UPSTREAM [--idle S] [--max N] [--grace MS] [--workers N]
 *   Listens on 127.0.0.1:PORT (0: the kernel picks one, and the proxy
 *   prints "listening on <port>"); UPSTREAM is a port on 127.0.0.1.
 *   --idle S      close a connection silent both ways for S seconds (60)
 *   --max N       at most N live connections (1024)
 *   --grace MS    on a stop, live connections get MS ms to finish (1000)
 *   --workers N   as weft_echo's
 *
 * Try it:  weft_echo 7777 &  weft_proxy 8888 7777 &  nc 127.0.0.1 8888
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <weft.h>

#include "server_common.h"

#define CONNECT_NS (2 * 1000000000ull) /* the upstream has this long to answer */

static struct {
    int port, upstream;
    uint64_t idle_ns;
    unsigned max;
    uint64_t grace_ns;
    unsigned workers;
} opt = {.idle_ns = 60 * 1000000000ull, .max = 1024, .grace_ns = 1000 * 1000000ull};

static weft_sem live;                /* free places for connections */
static _Atomic unsigned connections; /* being served now */

/* One client: connect upstream, relay, close both. */
static void *serve(void *arg)
{
    int client = (int)(intptr_t)arg;
    atomic_fetch_add(&connections, 1);
    int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r = upstream < 0 ? -errno : weft_deadline_push_in(CONNECT_NS);
    if (upstream >= 0) /* small messages go on at once, as from the client */
        setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    if (r == 0) {
        struct sockaddr_in to = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)opt.upstream),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        r = weft_connect(upstream, (struct sockaddr *)&to, sizeof to);
        (void)weft_deadline_pop();
        if (r < 0 && r != -ECANCELED)
            fprintf(stderr, "weft_proxy: upstream: %s\n", weft_strerror(r));
    }
    if (r == 0) {
        weft_relay_opts o = {.idle_ns = opt.idle_ns};
        weft_relay_counts moved;
        r = weft_relay(client, upstream, &o, &moved);
        if (r < 0 && r != -ECANCELED && r != -ETIMEDOUT) /* stopped, or idle: no news */
            fprintf(stderr, "weft_proxy: connection ended: %s (%llu bytes up, %llu down)\n",
                    weft_strerror(r), (unsigned long long)moved.a_to_b,
                    (unsigned long long)moved.b_to_a);
    }
    if (upstream >= 0)
        weft_close(upstream);
    weft_close(client);
    atomic_fetch_sub(&connections, 1);
    weft_sem_release(&live);
    return NULL;
}

/* The discard of a connection task that never ran: its socket and its
 * place go back. */
static void unserved(void *arg)
{
    close_unserved(arg);
    weft_sem_release(&live);
}

typedef struct app {
    int listen_fd, signal_fd;
} app;

/* Waits for SIGINT or SIGTERM and stops the accepting: shutdown(2) on the
 * listening socket ends a waiting accept (-EINVAL) and refuses new
 * clients, and one more place in the semaphore wakes an acceptor waiting
 * there for a connection to end. */
static void *watch_signals(void *arg)
{
    app *a = arg;
    struct signalfd_siginfo si;
    if (weft_read(a->signal_fd, &si, sizeof si, WEFT_OFF_CURRENT) == (ssize_t)sizeof si)
        fprintf(stderr, "weft_proxy: %s, stopping\n", strsignal((int)si.ssi_signo));
    shutdown(a->listen_fd, SHUT_RDWR);
    weft_sem_release(&live);
    return NULL;
}

/* Accepts until the stop, each connection a child task; then gives the
 * live ones --grace to finish, and cancels what is left. */
static void *server(void *arg)
{
    app *a = arg;
    weft_task *watcher;
    weft_spawn_opts wo = {.name = "signals"};
    int r = weft_spawn_ex(&watcher, &wo, watch_signals, a);
    if (r < 0) {
        fprintf(stderr, "weft_proxy: spawning the signal watcher: %s\n", weft_strerror(r));
        return (void *)1;
    }
    for (;;) {
        if (weft_sem_acquire(&live) < 0)
            break;
        int fd = weft_accept(a->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            weft_sem_release(&live);
            if (fd == -EINVAL || accept_failed("weft_proxy", fd) < 0)
                break; /* -EINVAL: shut down, the stop */
            continue;
        }
        weft_task *t;
        weft_spawn_opts o = {.name = "conn", .discard = unserved};
        r = weft_spawn_ex(&t, &o, serve, (void *)(intptr_t)fd);
        if (r < 0) {
            fprintf(stderr, "weft_proxy: spawning a connection task: %s\n", weft_strerror(r));
            unserved((void *)(intptr_t)fd);
            continue;
        }
        weft_detach(t); /* still a child: waited for below */
    }
    weft_cancel(watcher); /* when the accepting failed: no signal came */
    weft_join(watcher, NULL);
    if (weft_deadline_push_in(opt.grace_ns) == 0) {
        int left = weft_wait_children();
        (void)weft_deadline_pop();
        if (left == -ETIMEDOUT) {
            unsigned n = atomic_load(&connections);
            weft_cancel_children(NULL);
            fprintf(stderr, "weft_proxy: %u connections cut at the end of the grace period\n", n);
        }
    }
    (void)weft_wait_children(); /* the cancelled ones close their sockets */
    write_stats(stdout);
    fflush(stdout);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: weft_proxy PORT UPSTREAM [--idle S] [--max N] [--grace MS] "
                    "[--workers N]\n");
    exit(2);
}

/* A whole number in lo..hi, or usage(). */
static unsigned long long number(const char *text, unsigned long long lo, unsigned long long hi)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end || errno || n < lo || n > hi)
        usage();
    return n;
}

int main(int argc, char **argv)
{
    int ports = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--idle") == 0 && i + 1 < argc)
            opt.idle_ns = number(argv[++i], 1, 86400) * 1000000000ull;
        else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
            opt.max = (unsigned)number(argv[++i], 1, 1u << 20);
        else if (strcmp(argv[i], "--grace") == 0 && i + 1 < argc)
            opt.grace_ns = number(argv[++i], 0, 3600000) * 1000000ull;
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            if (!parse_workers("weft_proxy", argv[++i], &opt.workers))
                usage();
        } else if (ports == 0)
            opt.port = (int)number(argv[i], 0, 65535), ports++;
        else if (ports == 1)
            opt.upstream = (int)number(argv[i], 1, 65535), ports++;
        else
            usage();
    }
    if (ports != 2)
        usage();
    weft_sem_init(&live, opt.max);

    app a = {.signal_fd = stop_signals_fd()}; /* before any thread exists */
    if (a.signal_fd < 0) {
        perror("weft_proxy: signalfd");
        return 1;
    }
    a.listen_fd = listen_on(opt.port);
    if (a.listen_fd < 0) {
        fprintf(stderr, "weft_proxy: port %d: %s\n", opt.port, strerror(-a.listen_fd));
        return 1;
    }
    if (opt.port == 0) {
        printf("listening on %d\n", bound_port(a.listen_fd));
        fflush(stdout);
    }
    weft_config cfg = {.workers = opt.workers};
    void *failed = NULL;
    int r = weft_run(&cfg, server, &a, &failed);
    close(a.listen_fd);
    close(a.signal_fd);
    if (r < 0) {
        fprintf(stderr, "weft_proxy: weft_run: %s%s%s\n", weft_strerror(r),
                r == -EINVAL ? ": " : "", r == -EINVAL ? weft_last_config_error() : "");
        return 1;
    }
    return failed ? 1 : 0;
}
