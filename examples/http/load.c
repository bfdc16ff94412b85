/* load.c - the load generator behind `weft_http --load`; see load.h.
 *
 * A weft program of its own: one task per connection, each a closed loop
 * of send GET / -> read the response -> record the latency, all under one
 * deadline (weft_deadline_push) that ends every blocking call at the end of
 * the run. Latencies go into a fixed-size log-linear histogram. It runs
 * one worker (the clients share their counters without locks).
 */
#define _GNU_SOURCE
#include "load.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft.h>

/* Latencies in a log-linear histogram: 16 buckets per power of two (about
 * 6% resolution), so memory stays fixed however long the run. */
#define HIST_BUCKETS (61 * 16)

typedef struct load_state {
    int port;
    unsigned conns;
    int signal_fd;
    weft_task *clients; /* the task whose children the clients are; NULL once joined */
    uint64_t end_ns;
    uint64_t requests, errors;
    uint64_t hist[HIST_BUCKETS];
} load_state;

static unsigned hist_bucket(uint64_t ns)
{
    if (ns < 16)
        return (unsigned)ns;
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
    return (msb - 3) * 16 + (unsigned)((ns >> (msb - 4)) & 15);
}

/* The middle of a bucket's range. */
static uint64_t hist_value(unsigned bucket)
{
    if (bucket < 16)
        return bucket;
    unsigned msb = bucket / 16 + 3, sub = bucket % 16;
    uint64_t low = (uint64_t)(16 + sub) << (msb - 4);
    return low + ((1ull << (msb - 4)) >> 1);
}

static uint64_t hist_quantile(const load_state *l, double p)
{
    uint64_t total = 0, seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += l->hist[i];
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += l->hist[i];
        if (total && (double)seen >= p * (double)total)
            return hist_value(i);
    }
    return 0;
}

/* Reads one response into buf (leftovers kept in *have): returns 0 for a
 * 200, 1 for another status, < 0 for an error. */
static int read_response(int fd, char *buf, size_t cap, size_t *have)
{
    for (;;) {
        char *end = memmem(buf, *have, "\r\n\r\n", 4);
        if (end) {
            size_t head = (size_t)(end - buf) + 4, body = 0;
            for (const char *p = buf; p < end;) {
                if (end - p > 15 && strncasecmp(p, "content-length:", 15) == 0)
                    body = strtoull(p + 15, NULL, 10);
                p = (const char *)memchr(p, '\n', (size_t)(end + 2 - p)) + 1; /* end[1] is one */
            }
            if (head + body > cap)
                return -EMSGSIZE;
            if (*have >= head + body) {
                int ok = strncmp(buf, "HTTP/1.1 200 ", 13) == 0 ? 0 : 1;
                memmove(buf, buf + head + body, *have - head - body);
                *have -= head + body;
                return ok;
            }
        }
        if (*have == cap)
            return -EMSGSIZE;
        ssize_t n = weft_recv(fd, buf + *have, cap - *have, 0);
        if (n <= 0)
            return n == 0 ? -ECONNRESET : (int)n;
        *have += (size_t)n;
    }
}

static void *load_client(void *arg)
{
    load_state *l = arg;
    static const char request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    char buf[4096];
    size_t have = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) {
        l->errors++;
        return NULL;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)l->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = weft_deadline_push(l->end_ns); /* everything below stops at the end of the run */
    bool pushed = r == 0;
    if (pushed)
        r = weft_connect(fd, (struct sockaddr *)&sa, sizeof sa);
    while (r == 0) {
        uint64_t start = weft_now_ns();
        ssize_t sent = weft_send(fd, request, sizeof request - 1, MSG_NOSIGNAL);
        if (sent != (ssize_t)sizeof request - 1) {
            r = sent < 0 ? (int)sent : -EIO;
            break;
        }
        r = read_response(fd, buf, sizeof buf, &have);
        if (r < 0)
            break;
        l->requests++;
        l->errors += (uint64_t)r; /* a status other than 200 */
        l->hist[hist_bucket(weft_now_ns() - start)]++;
        r = 0;
    }
    if (pushed)
        weft_deadline_pop();
    if (r != -ETIMEDOUT && r != -ECANCELED) {
        fprintf(stderr, "weft_http load: connection: %s\n", weft_strerror(r));
        l->errors++;
    }
    close(fd);
    return NULL;
}

/* The client tasks, children of this one: cancelling it stops them all. */
static void *load_clients(void *arg)
{
    load_state *l = arg;
    for (unsigned i = 0; i < l->conns; i++)
        weft_spawn(NULL, load_client, l);
    weft_wait_children();
    return NULL;
}

/* SIGINT/SIGTERM end the run early (the results so far are printed). */
static void *load_watch_signals(void *arg)
{
    load_state *l = arg;
    struct signalfd_siginfo si;
    if (weft_read(l->signal_fd, &si, sizeof si, WEFT_OFF_CURRENT) == (ssize_t)sizeof si &&
        l->clients)
        weft_cancel(l->clients);
    return NULL;
}

static void *load_main(void *arg)
{
    const http_load_args *a = arg;
    load_state *l = calloc(1, sizeof *l);
    if (!l)
        return (void *)1;
    l->port = a->port;
    l->conns = a->conns;
    l->signal_fd = a->signal_fd;
    uint64_t start = weft_now_ns();
    l->end_ns = start + (uint64_t)(a->seconds * 1e9);
    weft_task *watcher = NULL;
    if (weft_spawn(&l->clients, load_clients, l) == 0) {
        weft_spawn(&watcher, load_watch_signals, l);
        weft_join(l->clients, NULL);
        l->clients = NULL;
    }
    if (watcher) {
        weft_cancel(watcher);
        weft_join(watcher, NULL);
    }
    double elapsed = (double)(weft_now_ns() - start) / 1e9;
    printf("load: %u connections, %.1f s: %llu requests, %.0f requests/s, %llu errors\n", a->conns,
           elapsed, (unsigned long long)l->requests, (double)l->requests / elapsed,
           (unsigned long long)l->errors);
    printf("load: latency p50 %.1f us, p90 %.1f us, p99 %.1f us\n",
           (double)hist_quantile(l, 0.50) / 1e3, (double)hist_quantile(l, 0.90) / 1e3,
           (double)hist_quantile(l, 0.99) / 1e3);
    fflush(stdout);
    void *failed = l->requests == 0 || l->errors ? (void *)1 : NULL;
    free(l);
    return failed;
}

static void pin_to_cpu(int cpu)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 2) {
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
}

pid_t http_load_start(const http_load_args *a, int listen_fd)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0) {
        if (a->pin_server)
            pin_to_cpu(0);
        return pid;
    }
    /* The child: its own runtime. The signals stay blocked, and the
     * inherited signalfd now reads the child's own (signalfd(2)). */
    close(listen_fd);
    pin_to_cpu(1);
    /* One worker whatever $WEFT_WORKERS says: the clients share load_state
     * without locks. */
    weft_config cfg = {.workers = 1};
    void *failed = NULL;
    int r = weft_run(&cfg, load_main, (void *)a, &failed);
    if (r < 0)
        fprintf(stderr, "weft_http load: weft_run: %s\n", weft_strerror(r));
    exit(r < 0 || failed ? 1 : 0);
}
