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
 * With race_delay_ns, the families race (RFC 8305's "happy eyeballs", as
 * Go dials by default): see dial_racing.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <sys/socket.h>
#include <weft/io.h>
#include <weft/runtime.h>
#include <weft/task.h>

#include "task/task.h"

static int check_opts(const weft_dial_opts *o)
{
    if (!o)
        return 0;
    if (o->family != AF_UNSPEC && o->family != AF_INET && o->family != AF_INET6)
        return -EINVAL;
    if (o->type != 0 && o->type != SOCK_STREAM && o->type != SOCK_DGRAM)
        return -EINVAL;
    if (!o->local_addr)
        return o->local_addrlen ? -EINVAL : 0;
    if (o->local_addrlen < sizeof(sa_family_t) ||
        o->local_addrlen > sizeof(struct sockaddr_storage))
        return -EINVAL;
    sa_family_t f = o->local_addr->sa_family;
    size_t need = f == AF_INET    ? sizeof(struct sockaddr_in)
                  : f == AF_INET6 ? sizeof(struct sockaddr_in6)
                                  : 0;
    if (!need || o->local_addrlen < need)
        return -EINVAL;
    if (o->family != AF_UNSPEC && o->family != f)
        return -EINVAL; /* no address could be dialled from it */
    return 0;
}

/* The family a local address ties the dial to, or AF_UNSPEC. */
static int local_family(const weft_dial_opts *o)
{
    return o && o->local_addr ? o->local_addr->sa_family : AF_UNSPEC;
}

static bool local_port_is_any(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)(const void *)sa)->sin_port == 0;
    return ((const struct sockaddr_in6 *)(const void *)sa)->sin6_port == 0;
}

/* Binds fd to the dial's local address. With port 0 on TCP, the port is
 * picked at the connect, for the 4-tuple (IP_BIND_ADDRESS_NO_PORT):
 * bind(2) alone would pick one that is free for every peer, and a proxy
 * dialling many peers from one address would run out of ports at about
 * 28,000 connections. */
static int bind_local(int fd, int type, const weft_dial_opts *o)
{
    if (type == SOCK_STREAM && local_port_is_any(o->local_addr)) {
        int one = 1;
        if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0)
            return -errno;
    }
    return bind(fd, o->local_addr, o->local_addrlen) < 0 ? -errno : 0;
}

/* One address: a connected socket, or the attempt's error with nothing
 * left open. */
static int attempt(const struct addrinfo *ai, int type, const weft_dial_opts *o)
{
    int fd = weft_socket(ai->ai_family, type | SOCK_CLOEXEC, ai->ai_protocol, 0);
    if (fd < 0)
        return fd;
    int r = o && o->local_addr ? bind_local(fd, type, o) : 0;
    if (r == 0)
        r = weft_connect(fd, ai->ai_addr, ai->ai_addrlen);
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

/* Which entries a run of attempts takes: those of the dial's socket type
 * (a lookup without a type lists each address once per type: stream,
 * datagram, raw) and, for a racing dial's lanes, of one family or of the
 * others. */
struct pick {
    int type;
    int local;  /* the local address's family (the only one dialled), or AF_UNSPEC */
    int family; /* AF_UNSPEC: any */
    bool other; /* the families but `family` */
};

static bool picked(const struct addrinfo *ai, const struct pick *p)
{
    if (ai->ai_socktype && ai->ai_socktype != p->type)
        return false;
    if (p->local != AF_UNSPEC && ai->ai_family != p->local)
        return false;
    if (p->family == AF_UNSPEC)
        return true;
    return p->other ? ai->ai_family != p->family : ai->ai_family == p->family;
}

/* The picked entries, one at a time: the first socket that connects, or
 * the last attempt's error (-ENOENT: none picked). */
static int dial_serial(const struct addrinfo *addrs, const struct pick *p,
                       const weft_dial_opts *opts, weft_task *self)
{
    bool limited = opts && opts->attempt_timeout_ns;
    int last = -ENOENT;
    for (const struct addrinfo *ai = addrs; ai; ai = ai->ai_next) {
        if (!picked(ai, p))
            continue;
        /* An attempt time that cannot be pushed (16 levels in force, or
         * no memory for the first) fails the dial: trying without it
         * could hold the caller on a silent address, and the next
         * address would fail the same way. */
        if (limited) {
            int r = weft_deadline_push_in(opts->attempt_timeout_ns);
            if (r)
                return r;
        }
        int fd = attempt(ai, p->type, opts);
        if (limited)
            (void)weft_deadline_pop();
        if (fd >= 0)
            return fd;
        last = fd;
        /* The attempt's own limit is popped: an interruption now is the
         * caller's, and ends the dial. */
        int r = weft__task_interrupted(self);
        if (r)
            return r;
    }
    return last;
}

/* ---- racing the families (RFC 8305) ---------------------------------------
 * Two lanes, each a task running dial_serial: the primary one over the
 * entries of the first entry's family, the fallback one over the others,
 * started race_delay_ns later, or at once when the primary fails first.
 * The first socket to connect wins; the set's destroy cancels the other
 * lane and waits for it, and a socket it connected meanwhile is closed.
 * The caller's deadline or cancel ends its wait, and the destroy then
 * ends the lanes.
 *
 * What the race needs of its own (a task set, two tasks, a timer for the
 * delay) can fail for want of memory; the dial then goes on without it,
 * as it would have gone without racing: no set or no primary lane, and
 * the caller dials one address at a time; no timer, and the fallback lane
 * starts at once; a lane that did not start, or ended without running,
 * and the caller tries its addresses itself once the other has failed. */
struct lane {
    const struct addrinfo *addrs;
    struct pick pick;
    const weft_dial_opts *opts;
    int result; /* a socket, or the lane's error; -ECANCELED until it ends */
    bool ran;   /* its task ran: false for one that could not start, or
                   that ended without a run (no stack where it went) */
    uint64_t id;
};

static void *lane_run(void *arg)
{
    struct lane *l = arg;
    l->ran = true;
    l->result = dial_serial(l->addrs, &l->pick, l->opts, weft__task_current());
    return NULL;
}

static bool any_picked(const struct addrinfo *addrs, const struct pick *p)
{
    for (const struct addrinfo *ai = addrs; ai; ai = ai->ai_next)
        if (picked(ai, p))
            return true;
    return false;
}

static int lane_start(weft_taskset *set, struct lane *l)
{
    weft_spawn_opts so = {.name = "weft-dial"};
    return weft_taskset_spawn(set, &so, lane_run, l, &l->id);
}

/* The race: a socket or the dial's error, with *raced true; or, with
 * *raced false, nothing tried (no set or no primary lane to be had). */
static int dial_racing(const struct addrinfo *addrs, const struct pick *all, int primary,
                       const weft_dial_opts *opts, weft_task *self, bool *raced)
{
    struct lane lanes[2] = {
        {addrs, {all->type, all->local, primary, false}, opts, -ECANCELED, false, 0},
        {addrs, {all->type, all->local, primary, true}, opts, -ECANCELED, false, 0},
    };
    *raced = false;
    weft_taskset *set;
    if (weft_taskset_create(&set) != 0)
        return 0;
    if (lane_start(set, &lanes[0]) != 0) {
        (void)weft_taskset_destroy(set);
        return 0;
    }
    *raced = true;
    struct lane *winner = NULL;
    int err = 0, last = -ENOENT;
    bool fallback_due = true; /* the fallback lane is yet to start */
    for (;;) {
        if (fallback_due && weft_deadline_push_in(opts->race_delay_ns) != 0) {
            fallback_due = false; /* no timer for the delay: no delay */
            (void)lane_start(set, &lanes[1]);
            continue;
        }
        /* Until the fallback lane starts, the wait for the primary is
         * bounded by the race delay. */
        bool timed = fallback_due;
        uint64_t id;
        int r = weft_taskset_join_next(set, &id, NULL);
        if (timed)
            (void)weft_deadline_pop();
        if (r == -ECHILD)
            break; /* the lanes started ended, none connected */
        if (r == -EINTR || r == -ETIMEDOUT) {
            int mine = weft__task_interrupted(self);
            if (mine || !timed) {
                err = mine ? mine : r;
                break;
            }
            /* The race delay: the fallback lane starts (if it cannot, its
             * addresses are tried here after). */
            fallback_due = false;
            (void)lane_start(set, &lanes[1]);
            continue;
        }
        struct lane *l = id == lanes[0].id ? &lanes[0] : &lanes[1];
        if (l->result >= 0) {
            winner = l;
            break;
        }
        if (l->ran)
            last = l->result;
        if (fallback_due) { /* the primary failed first: no reason to wait */
            fallback_due = false;
            (void)lane_start(set, &lanes[1]);
        }
    }
    (void)weft_taskset_destroy(set); /* cancels a lane still running, and waits */
    for (int i = 0; i < 2; i++)
        if (&lanes[i] != winner && lanes[i].result >= 0)
            (void)weft_close(lanes[i].result);
    if (winner)
        return winner->result;
    if (err)
        return err;
    /* A lane that never ran: its addresses, one at a time, here. */
    for (int i = 0; i < 2; i++) {
        if (lanes[i].ran)
            continue;
        int fd = dial_serial(addrs, &lanes[i].pick, opts, self);
        if (fd != -ENOENT)
            last = fd;
        if (fd >= 0 || weft__task_interrupted(self))
            break;
    }
    return last;
}

int weft_dial_addrs(const struct addrinfo *addrs, const weft_dial_opts *opts)
{
    if (!addrs || check_opts(opts))
        return -EINVAL;
    weft_task *self;
    int r = weft__task_enter(&self);
    if (r)
        return r;
    struct pick all = {
        .type = opts && opts->type ? opts->type : SOCK_STREAM,
        .local = local_family(opts),
    };
    /* Racing needs two families among the entries (a local address
     * allows one), and a caller that is not cancelled: a shielded one
     * (cleanup code) would go on, but its lanes, its children, would be
     * cancelled with it. */
    if (opts && opts->race_delay_ns && !weft_cancelled()) {
        const struct addrinfo *first = addrs;
        while (first && !picked(first, &all))
            first = first->ai_next;
        struct pick others = {.type = all.type,
                              .local = all.local,
                              .family = first ? first->ai_family : AF_UNSPEC,
                              .other = true};
        bool raced = false;
        if (first && any_picked(addrs, &others))
            r = dial_racing(addrs, &all, first->ai_family, opts, self, &raced);
        /* A cancel that came during the race, to a shielded caller,
         * ended the lanes: dial again, one address at a time. */
        if (raced && (r >= 0 || !weft_cancelled() || weft__task_interrupted(self)))
            return r;
    }
    return dial_serial(addrs, &all, opts, self);
}

int weft_dial(const char *host, const char *service, const weft_dial_opts *opts)
{
    if (!service || check_opts(opts))
        return -EINVAL;
    int r = weft__task_enter(NULL);
    if (r)
        return r;
    struct addrinfo hints = {
        .ai_family = opts && opts->family ? opts->family : local_family(opts),
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
