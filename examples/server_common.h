/* What the example servers (echo.c, http/server.c) share: a listening
 * socket, the stop signals as a readable fd, the report they print, and
 * their --workers option. Header-only, so each example still builds from
 * its own sources. */
#ifndef WEFT_EXAMPLES_SERVER_COMMON_H
#define WEFT_EXAMPLES_SERVER_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft.h>

/* A listening TCP socket on 127.0.0.1:port, made before weft_run (so a
 * port in use is reported before anything starts), or -errno. Accepted
 * sockets inherit TCP_NODELAY: small replies go out at once. */
static inline int listen_on(int port)
{
    char service[12];
    snprintf(service, sizeof service, "%d", port);
    weft_listen_opts o = {.nodelay = true};
    return weft_listen_on("127.0.0.1", service, &o);
}

static inline int bound_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    return getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ? -1 : ntohs(sa.sin_port);
}

/* Blocks SIGINT and SIGTERM (call it before any thread exists, so that they
 * queue instead of killing the process) and returns a signalfd for them, or
 * -1 with errno set. A task reads it with weft_read to stop cleanly. */
static inline int stop_signals_fd(void)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    return signalfd(-1, &stop, SFD_CLOEXEC);
}

/* The CPUs this process may run on (at least 1). */
static inline unsigned cpus_available(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    return n > 0 ? (unsigned)n : 1;
}

/* --workers N: 1..1023 workers, or 0 for one per CPU this process may run on
 * (resolved here, so that the option wins over $WEFT_WORKERS). Returns
 * false, after saying why on stderr, for anything else. */
static inline bool parse_workers(const char *prog, const char *text, unsigned *workers)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end || errno || n > 1023) {
        fprintf(stderr, "%s: --workers: \"%s\" is not a number in 0..1023 (0 = one per CPU)\n",
                prog, text);
        return false;
    }
    *workers = n ? (unsigned)n : cpus_available();
    return true;
}

/* ---- accepting ------------------------------------------------------------ */

/* accept(2) lists these as the new connection's problem, not the server's. */
static inline bool accept_connection_error(int err)
{
    return err == -ECONNABORTED || err == -EPROTO || err == -EPERM || err == -EINTR ||
           err == -EAGAIN || err == -ENETDOWN || err == -ENOPROTOOPT || err == -EHOSTDOWN ||
           err == -ENONET || err == -EHOSTUNREACH || err == -ENETUNREACH;
}

/* Out of descriptors or memory: a plain accept leaves the connection in the
 * listen backlog until something is closed. */
static inline bool accept_out_of_resources(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

/* What an accept loop does after an error: 0 = go on, < 0 = stop with that
 * error (-ECANCELED: the server was stopped). Out of resources, it logs at
 * most once a second and backs off 10 ms before the next accept. */
static inline int accept_failed(const char *prog, int err)
{
    /* Shared by the acceptors of every worker (echo --per-worker). */
    static _Atomic uint64_t last_log_ns, failures;
    if (err == -ECANCELED || err == -ETIMEDOUT)
        return err;
    if (accept_connection_error(err))
        return 0;
    if (!accept_out_of_resources(err)) {
        fprintf(stderr, "%s: accept: %s\n", prog, weft_strerror(err));
        return err;
    }
    atomic_fetch_add(&failures, 1);
    uint64_t now = weft_now_ns(), last = atomic_load(&last_log_ns);
    if (now - last >= 1000000000ull && atomic_compare_exchange_strong(&last_log_ns, &last, now)) {
        unsigned long long n = atomic_exchange(&failures, 0);
        fprintf(stderr, "%s: accept: %s (%llu times since the last report), backing off\n", prog,
                weft_strerror(err), n);
    }
    return weft_sleep_ns(10 * 1000000ull) == -ECANCELED ? -ECANCELED : 0;
}

/* weft_spawn_opts.discard for a connection task given a plain socket: the
 * task never started (the server was stopped first, or no stack could be
 * had), so nothing else will close it. */
static inline void close_unserved(void *fd)
{
    close((int)(intptr_t)fd);
}

/* io_uring ops by opcode and the runtime's counters; both sum every
 * worker. */
static inline void write_stats(FILE *f)
{
    uint64_t ops[256];
    int n = weft_ops_by_opcode(ops, 256);
    fprintf(f, "io_uring ops by opcode (all %u workers):\n", weft_worker_count());
    for (int i = 0; i < n; i++) {
        const char *name = weft_opcode_name((unsigned)i);
        if (ops[i])
            fprintf(f, "  %-16s %llu\n", name ? name : "?", (unsigned long long)ops[i]);
    }
    weft_stats stats;
    if (weft_stats_snapshot(&stats) == 0) {
        fprintf(f, "weft stats:\n");
        weft_stats_print(f, &stats);
    }
}

#endif
