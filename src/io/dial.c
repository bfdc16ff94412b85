/* Connecting by name: weft_dial and weft_dial_addrs.
 *
 * The lookup runs on the blocking pool (weft_getaddrinfo); the connects
 * are io_uring ops of the calling task, tried one address at a time in
 * the list's order. Each attempt may have its own time limit, a deadline
 * pushed around its connect: when that one passes, the attempt failed
 * and the next address is tried; when the caller's own deadline or a
 * cancel comes, the dial stops. Every socket that did not connect is
 * closed before the next is made, so a dial holds one at a time.
 *
 * Not done: racing the addresses (RFC 8305's "happy eyeballs", which Go
 * does with a 300 ms head start): attempt_timeout_ns bounds what a dead
 * address costs instead.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <sys/socket.h>
#include <weft/io.h>
#include <weft/runtime.h>

#include "task/task.h"

static int check_opts(const weft_dial_opts *o)
{
    if (!o)
        return 0;
    if (o->family != AF_UNSPEC && o->family != AF_INET && o->family != AF_INET6)
        return -EINVAL;
    if (o->type != 0 && o->type != SOCK_STREAM && o->type != SOCK_DGRAM)
        return -EINVAL;
    return 0;
}

/* One address: a connected socket, or the attempt's error with nothing
 * left open. */
static int attempt(const struct addrinfo *ai, int type, const weft_dial_opts *o)
{
    int fd = weft_socket(ai->ai_family, type | SOCK_CLOEXEC, ai->ai_protocol, 0);
    if (fd < 0)
        return fd;
    int r = weft_connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r == 0 && o && o->nodelay && type == SOCK_STREAM &&
        (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)) {
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
            r = -errno;
    }
    if (r == 0)
        return fd;
    (void)weft_close(fd); /* closes also when interrupted */
    return r;
}

int weft_dial_addrs(const struct addrinfo *addrs, const weft_dial_opts *opts)
{
    if (!addrs || check_opts(opts))
        return -EINVAL;
    weft_task *self;
    int r = weft__task_enter(&self);
    if (r)
        return r;
    int type = opts && opts->type ? opts->type : SOCK_STREAM;
    bool limited = opts && opts->attempt_timeout_ns;
    int last = -ENOENT; /* no entry of that type */
    for (const struct addrinfo *ai = addrs; ai; ai = ai->ai_next) {
        /* A lookup without a type lists each address once per type
         * (stream, datagram, raw): only the entries of ours are tried. */
        if (ai->ai_socktype && ai->ai_socktype != type)
            continue;
        /* An attempt time that cannot be pushed (16 levels in force, or
         * no memory for the first) fails the dial: trying without it
         * could hold the caller on a silent address, and the next
         * address would fail the same way. */
        if (limited) {
            r = weft_deadline_push_in(opts->attempt_timeout_ns);
            if (r)
                return r;
        }
        int fd = attempt(ai, type, opts);
        if (limited)
            (void)weft_deadline_pop();
        if (fd >= 0)
            return fd;
        last = fd;
        /* The attempt's own limit is popped: an interruption now is the
         * caller's, and ends the dial. */
        r = weft__task_interrupted(self);
        if (r)
            return r;
    }
    return last;
}

int weft_dial(const char *host, const char *service, const weft_dial_opts *opts)
{
    if (!service || check_opts(opts))
        return -EINVAL;
    int r = weft__task_enter(NULL);
    if (r)
        return r;
    struct addrinfo hints = {
        .ai_family = opts ? opts->family : AF_UNSPEC,
        .ai_socktype = opts && opts->type ? opts->type : SOCK_STREAM,
    };
    struct addrinfo *list;
    r = weft_getaddrinfo(host, service, &hints, &list);
    if (r)
        return r;
    r = weft_dial_addrs(list, opts);
    freeaddrinfo(list);
    return r;
}
