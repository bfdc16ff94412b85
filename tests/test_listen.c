/* weft_listen_on: a listening (or bound UDP) socket by name; the
 * wildcard dual-stack on IPv6 first; SO_REUSEADDR, SO_REUSEPORT,
 * IPV6_V6ONLY and TCP_NODELAY; a port held by another socket; before the
 * runtime and on a worker outside a task; bad input; failed
 * allocations leaving no descriptor behind. Real sockets on loopback. */
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdatomic.h>

#include "common/fault.h"
#include "test.h"

static int opt_of(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    ASSERT_OK(getsockopt(fd, level, name, &v, &len));
    return v;
}

static struct sockaddr_storage name_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ASSERT_OK(getsockname(fd, (struct sockaddr *)&ss, &len));
    return ss;
}

static uint16_t port_of(int fd)
{
    struct sockaddr_storage ss = name_of(fd);
    return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                         : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static char *port_str(uint16_t port, char buf[8])
{
    snprintf(buf, 8, "%u", (unsigned)port);
    return buf;
}

/* Connects a plain socket to ip:port of its family; the fd, or -errno. */
static int connect_to(int family, const char *ip, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        ASSERT_EQ(inet_pton(AF_INET, ip, &a->sin_addr), 1);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        ASSERT_EQ(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
        len = sizeof *a;
    }
    int c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(c >= 0);
    if (connect(c, (struct sockaddr *)&ss, len) < 0) {
        int e = -errno;
        close(c);
        return e;
    }
    return c;
}

/* A connection from a plain client is accepted on l and carries bytes. */
static void check_accepts(int l, int family, const char *ip)
{
    int c = connect_to(family, ip, port_of(l));
    ASSERT(c >= 0);
    int s = weft_accept(l, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(s >= 0);
    ASSERT_EQ(write(c, "hi", 2), 2);
    char b[2];
    ASSERT_EQ(weft_recv(s, b, 2, 0), 2);
    ASSERT(memcmp(b, "hi", 2) == 0);
    close(s);
    close(c);
}

/* Whether an IPv6 socket can be bound to addr (the wildcard can be where
 * IPv6 is turned off on every interface, ::1 cannot). */
static bool ipv6_binds(const struct in6_addr *addr)
{
    int s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = *addr};
    bool ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

/* By address: a listener there, SO_REUSEADDR set, the port the kernel
 * picked for "0"; a second listener on that port is refused; the
 * wildcard is one dual-stack IPv6 socket taking both families, or IPv4
 * alone with v6only, or where the host has no IPv6. */
static void *main_listen(void *arg)
{
    (void)arg;
    int fds = count_fds();
    int l = weft_listen_on("127.0.0.1", "0", NULL);
    ASSERT(l >= 0);
    ASSERT_EQ(name_of(l).ss_family, AF_INET);
    ASSERT_NE(port_of(l), 0);
    ASSERT_EQ(opt_of(l, SOL_SOCKET, SO_ACCEPTCONN), 1);
    ASSERT_EQ(opt_of(l, SOL_SOCKET, SO_REUSEADDR), 1);
    ASSERT_EQ(opt_of(l, SOL_SOCKET, SO_REUSEPORT), 0);
    ASSERT_EQ(opt_of(l, IPPROTO_TCP, TCP_NODELAY), 0);
    ASSERT(fcntl(l, F_GETFD) & FD_CLOEXEC);
    check_accepts(l, AF_INET, "127.0.0.1");
    char ps[8];
    ASSERT_EQ(weft_listen_on("127.0.0.1", port_str(port_of(l), ps), NULL), -EADDRINUSE);
    ASSERT_OK(weft_close(l));

    /* "localhost": the name is looked up. TCP_NODELAY goes from the
     * listener to what it accepts. */
    l = weft_listen_on("localhost", "0", &(weft_listen_opts){.family = AF_INET, .nodelay = true});
    ASSERT(l >= 0);
    ASSERT_EQ(opt_of(l, IPPROTO_TCP, TCP_NODELAY), 1);
    int c = connect_to(AF_INET, "127.0.0.1", port_of(l));
    ASSERT(c >= 0);
    int s = weft_accept(l, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(s >= 0);
    ASSERT_EQ(opt_of(s, IPPROTO_TCP, TCP_NODELAY), 1);
    close(s);
    close(c);
    ASSERT_OK(weft_close(l));

    /* An address this host does not have. */
    ASSERT_EQ(weft_listen_on("192.0.2.1", "0", NULL), -EADDRNOTAVAIL);

    /* The wildcard: one dual-stack IPv6 socket where IPv6 sockets can be
     * had, else IPv4's. */
    l = weft_listen_on(NULL, "0", NULL);
    ASSERT(l >= 0);
    bool loopback6 = ipv6_binds(&in6addr_loopback);
    if (ipv6_binds(&in6addr_any)) {
        ASSERT_EQ(name_of(l).ss_family, AF_INET6);
        ASSERT_EQ(opt_of(l, IPPROTO_IPV6, IPV6_V6ONLY), 0);
        if (loopback6)
            check_accepts(l, AF_INET6, "::1");
        check_accepts(l, AF_INET, "127.0.0.1"); /* dual-stack */
        uint16_t port = port_of(l);
        ASSERT_OK(weft_close(l));
        /* v6only: IPv4 gets no answer from it; "" is the wildcard too. */
        l = weft_listen_on("", port_str(port, ps), &(weft_listen_opts){.v6only = true});
        ASSERT(l >= 0);
        ASSERT_EQ(opt_of(l, IPPROTO_IPV6, IPV6_V6ONLY), 1);
        if (loopback6)
            check_accepts(l, AF_INET6, "::1");
        ASSERT_EQ(connect_to(AF_INET, "127.0.0.1", port), -ECONNREFUSED);
        /* The port held on IPv6: the wildcard says so, rather than
         * taking IPv4 alone on it. */
        ASSERT_EQ(weft_listen_on(NULL, port_str(port, ps), NULL), -EADDRINUSE);
        ASSERT_OK(weft_close(l));
        /* The family AF_INET6 is IPv6 alone, as Go's "tcp6". */
        l = weft_listen_on(NULL, "0", &(weft_listen_opts){.family = AF_INET6});
        ASSERT(l >= 0);
        ASSERT_EQ(opt_of(l, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    } else {
        printf("  note: no IPv6 sockets here: the wildcard is IPv4's\n");
        ASSERT_EQ(name_of(l).ss_family, AF_INET);
        check_accepts(l, AF_INET, "127.0.0.1");
    }
    ASSERT_OK(weft_close(l));
    /* The family asked for. */
    l = weft_listen_on(NULL, "0", &(weft_listen_opts){.family = AF_INET});
    ASSERT(l >= 0);
    ASSERT_EQ(name_of(l).ss_family, AF_INET);
    ASSERT_OK(weft_close(l));
    ASSERT_EQ(count_fds(), fds);
    return NULL;
}
TEST(listen_on_an_address_or_the_wildcard)
{
    run_main(NULL, main_listen, NULL);
}

/* SO_REUSEPORT: two listeners on one port, each getting connections. */
static void *main_reuseport(void *arg)
{
    (void)arg;
    weft_listen_opts o = {.reuseport = true, .backlog = 64};
    int a = weft_listen_on("127.0.0.1", "0", &o);
    ASSERT(a >= 0);
    ASSERT_EQ(opt_of(a, SOL_SOCKET, SO_REUSEPORT), 1);
    char ps[8];
    int b = weft_listen_on("127.0.0.1", port_str(port_of(a), ps), &o);
    ASSERT(b >= 0);
    ASSERT_EQ(port_of(a), port_of(b));
    /* The kernel spreads connections by a hash of the peer's address and
     * port: among 64, each listener gets some. */
    int clients[64];
    for (int i = 0; i < 64; i++) {
        clients[i] = connect_to(AF_INET, "127.0.0.1", port_of(a));
        ASSERT(clients[i] >= 0);
    }
    int got[2] = {0, 0};
    int ls[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        ASSERT_OK(fcntl(ls[k], F_SETFL, O_NONBLOCK)); /* accept until empty */
        int s;
        while ((s = accept4(ls[k], NULL, NULL, SOCK_CLOEXEC)) >= 0) {
            got[k]++;
            close(s);
        }
    }
    ASSERT_EQ(got[0] + got[1], 64);
    ASSERT_GT(got[0], 0);
    ASSERT_GT(got[1], 0);
    for (int i = 0; i < 64; i++)
        close(clients[i]);
    /* Without it, the port is refused. */
    ASSERT_EQ(weft_listen_on("127.0.0.1", ps, NULL), -EADDRINUSE);
    ASSERT_OK(weft_close(a));
    ASSERT_OK(weft_close(b));
    return NULL;
}
TEST(reuseport_listeners_share_a_port)
{
    run_main(NULL, main_reuseport, NULL);
}

/* SOCK_DGRAM: a bound UDP socket that receives. */
static void *main_udp(void *arg)
{
    (void)arg;
    int u = weft_listen_on("127.0.0.1", "0", &(weft_listen_opts){.type = SOCK_DGRAM});
    ASSERT(u >= 0);
    ASSERT_EQ(opt_of(u, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    struct sockaddr_in to = loopback(port_of(u));
    int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(sendto(c, "dg", 2, 0, (struct sockaddr *)&to, sizeof to), 2);
    char b[4];
    ASSERT_EQ(weft_recv(u, b, sizeof b, 0), 2);
    ASSERT(memcmp(b, "dg", 2) == 0);
    close(c);
    ASSERT_OK(weft_close(u));
    return NULL;
}
TEST(a_datagram_socket_is_bound)
{
    run_main(NULL, main_udp, NULL);
}

static void *main_bad_input(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_listen_on("127.0.0.1", NULL, NULL), -EINVAL);
    weft_listen_opts bad[] = {{.family = AF_UNIX}, {.type = SOCK_RAW}, {.backlog = -1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_EQ(weft_listen_on("127.0.0.1", "0", &bad[i]), -EINVAL);
    int r = weft_listen_on("127.0.0.1", "no-such-service-weft", NULL);
    ASSERT(WEFT_IS_EAI(r));
    ASSERT_OK(weft_deadline_push_in(0));
    ASSERT_EQ(weft_listen_on("127.0.0.1", "0", NULL), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    return NULL;
}
TEST(bad_input_gets_an_error)
{
    run_main(NULL, main_bad_input, NULL);
}

/* Before weft_run (no runtime on the thread) the lookup runs in the
 * calling thread, and the listener works in the runtime after; on a
 * worker thread outside a task (a spawn's discard callback) it is -EPERM,
 * which would block the worker. */
static _Atomic int discard_result = 1;

static void listen_in_discard(void *arg)
{
    (void)arg;
    atomic_store(&discard_result, weft_listen_on("127.0.0.1", "0", NULL));
}

static void *main_accepts_on(void *arg)
{
    int l = (int)(intptr_t)arg;
    check_accepts(l, AF_INET, "127.0.0.1");
    weft_spawn_opts o = {.discard = listen_in_discard};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, return_arg, NULL));
    ASSERT_OK(weft_cancel(t)); /* before it ran: its discard runs instead */
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&discard_result), -EPERM);
    return NULL;
}

TEST(before_the_runtime_starts)
{
    int fds = count_fds();
    int l = weft_listen_on("localhost", "0", &(weft_listen_opts){.family = AF_INET});
    ASSERT(l >= 0);
    ASSERT(WEFT_IS_EAI(weft_listen_on("127.0.0.1", "no-such-service-weft", NULL)));
    run_main(NULL, main_accepts_on, (void *)(intptr_t)l);
    close(l);
    ASSERT_EQ(count_fds(), fds);
}

/* Each allocation failing in turn (the lookup's): an error, or a
 * listener; never a descriptor left behind. */
static void *listen_under_fault(void *arg)
{
    (void)arg;
    int fds = count_fds();
    weft__fault_arm(WEFT_FAULT_ALLOC, UINT64_MAX);
    int l = weft_listen_on("127.0.0.1", "0", NULL);
    uint64_t points = weft__fault_count(WEFT_FAULT_ALLOC);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT(l >= 0);
    ASSERT_OK(weft_close(l));
    ASSERT_GT(points, 0u);
    int failed = 0;
    for (uint64_t n = 1; n <= points + 4; n++) {
        weft__fault_arm(WEFT_FAULT_ALLOC, n);
        l = weft_listen_on("127.0.0.1", "0", NULL);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
        if (l >= 0) {
            ASSERT_OK(weft_close(l));
        } else {
            ASSERT_EQ(l, -ENOMEM);
            failed++;
        }
        check_sweep_point(n, fds);
    }
    ASSERT_GT(failed, 0);
    return NULL;
}
TEST(failed_allocations_leave_nothing_open)
{
    run_main_one_worker(NULL, listen_under_fault, NULL);
}

TEST_MAIN(CASE(listen_on_an_address_or_the_wildcard), CASE(reuseport_listeners_share_a_port),
          CASE(a_datagram_socket_is_bound), CASE(bad_input_gets_an_error),
          CASE(before_the_runtime_starts), CASE(failed_allocations_leave_nothing_open))
