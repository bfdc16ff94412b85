/* Listening by name: weft_listen_on.
 *
 * The counterpart of weft_dial for the server side, as Go's net.Listen and
 * Tokio's TcpListener::bind: look the address up (weft_getaddrinfo, on the
 * blocking pool, AI_PASSIVE so that a NULL host is the wildcard), then
 * make, bind and listen on a socket for each entry in turn until one
 * works. bind(2) and listen(2) do not block, so they are plain calls
 * (io_uring's BIND and LISTEN need Linux 6.11).
 *
 * The wildcard takes IPv6 first, dual-stack (IPV6_V6ONLY off), so that
 * one socket takes both families' connections, as Go's ":8080" does;
 * glibc lists 0.0.0.0 first, whose socket would take IPv4 alone. A name
 * takes IPv4 first, as Go's net.Listen does: "localhost" listed with ::1
 * first would otherwise refuse clients that connect to 127.0.0.1.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft/io.h>
#include <weft/runtime.h>

#include "runtime/blocking.h"
#include "runtime/worker.h"
#include "task/task.h"

static int check_opts(const weft_listen_opts *o)
{
    if (!o)
        return 0;
    if (o->family != AF_UNSPEC && o->family != AF_INET && o->family != AF_INET6)
        return -EINVAL;
    if (o->type != 0 && o->type != SOCK_STREAM && o->type != SOCK_DGRAM)
        return -EINVAL;
    if (o->backlog < 0)
        return -EINVAL;
    return 0;
}

static int set_flag(int fd, int level, int name, bool on)
{
    int v = on;
    return setsockopt(fd, level, name, &v, sizeof v) < 0 ? -errno : 0;
}

/* One entry: a bound (and, for a stream, listening) socket, or the error
 * with nothing left open. */
static int try_entry(const struct addrinfo *ai, int type, const weft_listen_opts *o)
{
    int fd = socket(ai->ai_family, type | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    /* SO_REUSEADDR on a stream socket, as Go and Tokio set it: a server
     * restarted while its old connections sit in TIME_WAIT can bind. */
    int r = type == SOCK_STREAM ? set_flag(fd, SOL_SOCKET, SO_REUSEADDR, true) : 0;
    if (r == 0 && o && o->reuseport)
        r = set_flag(fd, SOL_SOCKET, SO_REUSEPORT, true);
    /* Accepted sockets inherit TCP_NODELAY from their listener. */
    if (r == 0 && o && o->nodelay && type == SOCK_STREAM)
        r = set_flag(fd, IPPROTO_TCP, TCP_NODELAY, true);
    /* IPv6 alone when asked for (v6only, or the family AF_INET6, as Go's
     * "tcp6"); else dual-stack, whatever the host's default. */
    if (r == 0 && ai->ai_family == AF_INET6)
        r = set_flag(fd, IPPROTO_IPV6, IPV6_V6ONLY, o && (o->v6only || o->family == AF_INET6));
    if (r == 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        r = -errno;
    if (r == 0 && type == SOCK_STREAM && listen(fd, o && o->backlog ? o->backlog : SOMAXCONN) < 0)
        r = -errno;
    if (r == 0)
        return fd;
    close(fd);
    return r;
}

/* From a task, on the blocking pool; from a thread with no runtime (a
 * server setting up before weft_run), in that thread, which may block. */
static int lookup(const char *host, const char *service, const struct addrinfo *hints,
                  struct addrinfo **list)
{
    if (weft__task_current() || weft__worker_self())
        return weft_getaddrinfo(host, service, hints, list); /* -EPERM on a worker outside a task */
    *list = NULL;
    int rc = getaddrinfo(host, service, hints, list);
    return rc ? weft__eai_error(rc, errno) : 0;
}

int weft_listen_on(const char *host, const char *service, const weft_listen_opts *opts)
{
    if (!service || check_opts(opts))
        return -EINVAL;
    int type = opts && opts->type ? opts->type : SOCK_STREAM;
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE,
        .ai_family = opts ? opts->family : AF_UNSPEC,
        .ai_socktype = type,
    };
    struct addrinfo *list;
    int r = lookup(host && *host ? host : NULL, service, &hints, &list);
    if (r)
        return r;
    /* Both families: the wildcard is taken on IPv6 first (dual-stack), a
     * name's addresses on IPv4 first (see the header); then the other
     * family. The wildcard goes on to IPv4 only where the host has no
     * IPv6: another error (the port in use) is the answer, as a listener
     * taking IPv4 alone would hide it. */
    bool wildcard = !(host && *host);
    int first = hints.ai_family != AF_UNSPEC ? hints.ai_family : wildcard ? AF_INET6 : AF_INET;
    r = -ENOENT;
    for (int pass = 0; pass < 2 && r < 0; pass++) {
        for (const struct addrinfo *ai = list; ai && r < 0; ai = ai->ai_next) {
            if ((ai->ai_family == first) != (pass == 0))
                continue;
            if (ai->ai_socktype && ai->ai_socktype != type)
                continue;
            r = try_entry(ai, type, opts);
        }
        if (pass == 0 && wildcard && r < 0 && r != -ENOENT && r != -EAFNOSUPPORT &&
            r != -EADDRNOTAVAIL)
            break;
    }
    freeaddrinfo(list);
    return r;
}
