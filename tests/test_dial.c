/* weft_dial and weft_dial_addrs: connecting by name and by an address
 * list; the next address after one that refuses or stays silent past its
 * attempt time; the caller's deadline and cancellation ending the dial;
 * TCP_NODELAY and connected UDP; a local address; a race short of
 * memory; bad input; failed SQEs and allocations
 * leaving no descriptor behind. Real sockets on loopback throughout. */
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/un.h>
#include <stdatomic.h>

#include "common/fault.h"
#include "test.h"

#define MS 1000000ull

/* ---- addresses --------------------------------------------------------------- */

/* An addrinfo entry for 127.0.0.1:port, linked into a list by the caller. */
struct entry {
    struct addrinfo ai;
    struct sockaddr_in sa;
};

static void entry_set(struct entry *e, uint16_t port, struct entry *next)
{
    memset(e, 0, sizeof *e);
    e->sa = loopback(port);
    e->ai.ai_family = AF_INET;
    e->ai.ai_socktype = SOCK_STREAM;
    e->ai.ai_addr = (struct sockaddr *)&e->sa;
    e->ai.ai_addrlen = sizeof e->sa;
    e->ai.ai_next = next ? &next->ai : NULL;
}

/* A port on 127.0.0.1 where nothing listens (bound, then closed: the
 * kernel will not hand it out again at once). */
static uint16_t refusing_port(void)
{
    uint16_t port;
    close(tcp_listener(&port));
    return port;
}

/* A listener that answers no SYN: its accept queue (backlog 0: one
 * connection) is full, so the kernel drops new SYNs and a connect to it
 * waits for the client's retransmissions (over a minute). *held gets the
 * connection that fills the queue. */
static int silent_listener(uint16_t *port, int *held)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(l >= 0);
    struct sockaddr_in sa = loopback(0);
    ASSERT_OK(bind(l, (struct sockaddr *)&sa, sizeof sa));
    ASSERT_OK(listen(l, 0));
    socklen_t len = sizeof sa;
    ASSERT_OK(getsockname(l, (struct sockaddr *)&sa, &len));
    *port = ntohs(sa.sin_port);
    *held = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(*held >= 0);
    ASSERT_OK(connect(*held, (struct sockaddr *)&sa, sizeof sa));
    return l;
}

/* Whether a connection waits in l's accept queue (without taking it). */
static bool pending_connection(int l)
{
    struct pollfd p = {.fd = l, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

/* Closes the connections waiting in l's accept queue. */
static void drain(int l)
{
    while (pending_connection(l))
        close(accept4(l, NULL, NULL, SOCK_CLOEXEC));
}

static char *port_str(uint16_t port, char buf[8])
{
    snprintf(buf, 8, "%u", (unsigned)port);
    return buf;
}

/* The dialled socket talks to the accepted one. */
static void check_connected(int fd, int listener)
{
    int s = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(s >= 0);
    ASSERT_EQ(weft_send(fd, "ping", 4, 0), 4);
    char buf[8] = {0};
    ASSERT_EQ(recv(s, buf, sizeof buf, 0), 4);
    ASSERT_STREQ(buf, "ping");
    close(s);
}

/* ---- by name ----------------------------------------------------------------- */

static int nodelay_of(int fd)
{
    int v = -1;
    socklen_t len = sizeof v;
    ASSERT_OK(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len));
    return v;
}

/* Whether "localhost" resolves to 127.0.0.1 on this machine (it does
 * through /etc/hosts almost everywhere; the check says so when not). */
static bool localhost_has_ipv4(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *list, *ai;
    if (getaddrinfo("localhost", "80", &hints, &list) != 0)
        return false;
    bool found = false;
    for (ai = list; ai; ai = ai->ai_next)
        found |= ai->ai_family == AF_INET &&
                 ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
    freeaddrinfo(list);
    return found;
}

static void *main_by_name(void *arg)
{
    (void)arg;
    uint16_t port;
    int l = tcp_listener(&port);
    char ps[8];
    port_str(port, ps);

    int fd = weft_dial("127.0.0.1", ps, NULL);
    ASSERT_GE(fd, 0);
    ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    ASSERT_EQ(nodelay_of(fd), 0);
    check_connected(fd, l);
    ASSERT_OK(weft_close(fd));

    weft_dial_opts o = {.nodelay = true, .family = AF_INET};
    fd = weft_dial("127.0.0.1", ps, &o);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(nodelay_of(fd), 1);
    check_connected(fd, l);
    ASSERT_OK(weft_close(fd));

    /* By name: "localhost" may give ::1 first, where nothing listens on
     * this port; the dial goes on to 127.0.0.1. */
    if (localhost_has_ipv4()) {
        fd = weft_dial("localhost", ps, NULL);
        ASSERT_GE(fd, 0);
        check_connected(fd, l);
        ASSERT_OK(weft_close(fd));
    } else {
        fprintf(stderr, "note: \"localhost\" does not resolve to 127.0.0.1 here: not dialled\n");
    }
    /* IPv4 asked for, an IPv6 literal given: the lookup says no. */
    o.family = AF_INET;
    int r = weft_dial("::1", ps, &o);
    ASSERT(WEFT_IS_EAI(r));
    /* Nobody on the port. */
    close(l);
    ASSERT_EQ(weft_dial("127.0.0.1", ps, NULL), -ECONNREFUSED);
    return NULL;
}
TEST(dial_connects_by_name)
{
    run_main(NULL, main_by_name, NULL);
}

/* A connected UDP socket: its sends go to the dialled address. */
static void *main_udp(void *arg)
{
    (void)arg;
    struct sockaddr_in addr;
    int server = udp_on_loopback(&addr);
    char ps[8];
    weft_dial_opts o = {.type = SOCK_DGRAM};
    int fd = weft_dial("127.0.0.1", port_str(ntohs(addr.sin_port), ps), &o);
    ASSERT_GE(fd, 0);
    int type = 0;
    socklen_t len = sizeof type;
    ASSERT_OK(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len));
    ASSERT_EQ(type, SOCK_DGRAM);
    ASSERT_EQ(weft_send(fd, "dgram", 5, 0), 5);
    char buf[8] = {0};
    ASSERT_EQ(recv(server, buf, sizeof buf, 0), 5);
    ASSERT_STREQ(buf, "dgram");
    ASSERT_OK(weft_close(fd));
    close(server);
    return NULL;
}
TEST(dial_makes_a_connected_udp_socket)
{
    run_main(NULL, main_udp, NULL);
}

/* ---- address lists ------------------------------------------------------------ */

/* A silent listener and one that answers, on 127.0.0.1, with the count
 * of descriptors before them (fds) and with them (base). */
struct pair_of_listeners {
    int fds, base;
    int silent, held, good;
    uint16_t silent_port, good_port;
};

static void listeners_open(struct pair_of_listeners *l)
{
    l->fds = count_fds();
    l->silent = silent_listener(&l->silent_port, &l->held);
    l->good = tcp_listener(&l->good_port);
    l->base = count_fds();
}

/* Closes them; nothing else the test opened may be left. */
static void listeners_close(struct pair_of_listeners *l)
{
    ASSERT_EQ(count_fds(), l->base);
    close(l->held);
    close(l->silent);
    close(l->good);
    ASSERT_EQ(count_fds(), l->fds);
}

/* Refused, then silent past its attempt time, then one that answers:
 * the third is connected, and the two sockets tried before are closed. */
static void *main_fallback(void *arg)
{
    (void)arg;
    struct pair_of_listeners L;
    listeners_open(&L);
    int good = L.good, fds_with_listeners = L.base;
    uint16_t good_port = L.good_port;
    struct entry e[3];
    entry_set(&e[2], good_port, NULL);
    entry_set(&e[1], L.silent_port, &e[2]);
    entry_set(&e[0], refusing_port(), &e[1]);

    weft_dial_opts o = {.attempt_timeout_ns = 50 * MS};
    int fd = weft_dial_addrs(&e[0].ai, &o);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(count_fds(), fds_with_listeners + 1); /* only the connected one */
    check_connected(fd, good);
    ASSERT_OK(weft_close(fd));

    /* A list with each address once per type, as a lookup without a type
     * gives: only the stream entries are tried, and a datagram-only list
     * has nothing to try. */
    struct entry dgram, stream;
    entry_set(&stream, good_port, NULL);
    entry_set(&dgram, good_port, &stream);
    dgram.ai.ai_socktype = SOCK_DGRAM;
    fd = weft_dial_addrs(&dgram.ai, NULL);
    ASSERT_GE(fd, 0);
    int type = 0;
    socklen_t len = sizeof type;
    ASSERT_OK(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len));
    ASSERT_EQ(type, SOCK_STREAM);
    check_connected(fd, good);
    ASSERT_OK(weft_close(fd));
    dgram.ai.ai_next = NULL;
    ASSERT_EQ(weft_dial_addrs(&dgram.ai, NULL), -ENOENT);

    /* Every address fails: the last one's error. */
    e[1].ai.ai_next = NULL;
    ASSERT_EQ(weft_dial_addrs(&e[0].ai, &o), -ETIMEDOUT); /* refused, then silent */
    struct entry refused2;
    entry_set(&refused2, refusing_port(), NULL);
    e[0].ai.ai_next = &refused2.ai;
    ASSERT_EQ(weft_dial_addrs(&e[0].ai, &o), -ECONNREFUSED);
    listeners_close(&L);
    return NULL;
}
TEST(dial_addrs_goes_past_refusing_and_silent_addresses)
{
    run_main(NULL, main_fallback, NULL);
}

/* The caller's own deadline or a cancel, in a silent address's connect
 * with no attempt time, ends the dial: the address after it is not
 * tried, and the socket is closed. */
static struct entry stop_list[2];
static _Atomic bool dialling;
static int stopped_dial;

static void *dial_stop_list(void *arg)
{
    (void)arg;
    atomic_store(&dialling, true);
    stopped_dial = weft_dial_addrs(&stop_list[0].ai, NULL);
    return NULL;
}

static void *main_interrupted(void *arg)
{
    (void)arg;
    struct pair_of_listeners L;
    listeners_open(&L);
    int good = L.good, fds_with_listeners = L.base;
    entry_set(&stop_list[1], L.good_port, NULL);
    entry_set(&stop_list[0], L.silent_port, &stop_list[1]);

    ASSERT_OK(weft_deadline_push_in(30 * MS));
    ASSERT_EQ(weft_dial_addrs(&stop_list[0].ai, NULL), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT(!pending_connection(good));
    ASSERT_EQ(count_fds(), fds_with_listeners);

    /* A deadline shorter than the attempt time is still the caller's. */
    weft_dial_opts o = {.attempt_timeout_ns = 10000 * MS};
    ASSERT_OK(weft_deadline_push_in(30 * MS));
    ASSERT_EQ(weft_dial_addrs(&stop_list[0].ai, &o), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT(!pending_connection(good));

    atomic_store(&dialling, false);
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, dial_stop_list, NULL));
    while (!atomic_load(&dialling))
        ASSERT_OK(weft_sleep_ns(MS));
    ASSERT_OK(weft_sleep_ns(10 * MS)); /* into the connect, most likely */
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(stopped_dial, -ECANCELED);
    ASSERT(!pending_connection(good));
    listeners_close(&L);
    return NULL;
}
TEST(the_callers_deadline_or_cancel_ends_the_dial)
{
    run_main(NULL, main_interrupted, NULL);
}

/* An attempt time that cannot be pushed as a deadline fails the dial
 * before any address is tried (each would fail the same way): with 16
 * levels in force, and in a fresh task with no memory for its first. */
static struct entry push_list[2];

static void *dial_with_allocations_failing(void *arg)
{
    (void)arg;
    weft_dial_opts o = {.attempt_timeout_ns = 50 * MS};
    weft__fault_arm_from(WEFT_FAULT_ALLOC, 1);
    uint64_t before = weft__fault_count(WEFT_FAULT_SQE);
    int r = weft_dial_addrs(&push_list[0].ai, &o);
    uint64_t sqes = weft__fault_count(WEFT_FAULT_SQE) - before;
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_EQ(r, -ENOMEM);
    ASSERT_EQ(sqes, 0u); /* no socket made */
    return NULL;
}

static void *main_push_fails(void *arg)
{
    (void)arg;
    int fds = count_fds();
    uint16_t good_port;
    int good = tcp_listener(&good_port);
    entry_set(&push_list[1], good_port, NULL);
    entry_set(&push_list[0], refusing_port(), &push_list[1]);
    weft_dial_opts o = {.attempt_timeout_ns = 50 * MS};
    int levels = 0;
    while (weft_deadline_push_in(10000 * MS) == 0)
        levels++;
    ASSERT_EQ(levels, 16);
    ASSERT_EQ(weft_dial_addrs(&push_list[0].ai, &o), -EOVERFLOW);
    char ps[8];
    ASSERT_EQ(weft_dial("127.0.0.1", port_str(good_port, ps), &o), -EOVERFLOW);
    ASSERT(!pending_connection(good));
    /* Without an attempt time the same dial connects. */
    int fd = weft_dial_addrs(&push_list[0].ai, NULL);
    ASSERT_GE(fd, 0);
    check_connected(fd, good);
    ASSERT_OK(weft_close(fd));
    for (int i = 0; i < levels; i++)
        ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_deadline_pop(), -EINVAL); /* the dials left the stack as it was */

    weft__fault_arm(WEFT_FAULT_SQE, UINT64_MAX); /* counts SQEs, fails none */
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, dial_with_allocations_failing, NULL));
    ASSERT_OK(weft_join(t, NULL));
    weft__fault_arm(WEFT_FAULT_SQE, 0);
    ASSERT(!pending_connection(good));
    close(good);
    ASSERT_EQ(count_fds(), fds);
    return NULL;
}
TEST(an_attempt_time_that_cannot_be_pushed_fails_the_dial)
{
    run_main(NULL, main_push_fails, NULL);
}

/* ---- racing the families ----------------------------------------------------- */

/* IPv6 on loopback: entries for [::1]:port, listeners, silent ones. */
struct entry6 {
    struct addrinfo ai;
    struct sockaddr_in6 sa;
};

static void entry6_set(struct entry6 *e, uint16_t port, struct addrinfo *next)
{
    memset(e, 0, sizeof *e);
    e->sa.sin6_family = AF_INET6;
    e->sa.sin6_addr = in6addr_loopback;
    e->sa.sin6_port = htons(port);
    e->ai.ai_family = AF_INET6;
    e->ai.ai_socktype = SOCK_STREAM;
    e->ai.ai_addr = (struct sockaddr *)&e->sa;
    e->ai.ai_addrlen = sizeof e->sa;
    e->ai.ai_next = next;
}

/* A listener on [::1] with backlog `backlog`, its port in *port; -1 when
 * this machine has no IPv6 loopback. */
static int tcp6_listener(uint16_t *port, int backlog)
{
    int l = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0)
        return -1;
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
    if (bind(l, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(l);
        return -1;
    }
    ASSERT_OK(listen(l, backlog));
    socklen_t len = sizeof sa;
    ASSERT_OK(getsockname(l, (struct sockaddr *)&sa, &len));
    *port = ntohs(sa.sin6_port);
    return l;
}

/* Exits the test case as skipped (77) where this machine has no IPv6
 * loopback to listen on. */
static void require_ipv6_loopback(void)
{
    uint16_t port;
    int probe = tcp6_listener(&port, 1);
    if (probe < 0) {
        fprintf(stderr, "skip: no IPv6 loopback on this machine\n");
        exit(TEST_SKIP_CODE);
    }
    close(probe);
}

/* As silent_listener, on [::1]. */
static int silent6_listener(uint16_t *port, int *held)
{
    int l = tcp6_listener(port, 0);
    ASSERT(l >= 0);
    *held = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 sa = {
        .sin6_family = AF_INET6, .sin6_addr = in6addr_loopback, .sin6_port = htons(*port)};
    ASSERT_OK(connect(*held, (struct sockaddr *)&sa, sizeof sa));
    return l;
}

static int family_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ASSERT_OK(getsockname(fd, (struct sockaddr *)&ss, &len));
    return ss.ss_family;
}

/* A racing dial in a task where every allocation fails: the family of
 * the socket it got (kept in race_fd). */
static int race_fd;

static void *dial_race_without_memory(void *arg)
{
    weft_dial_opts o = {.race_delay_ns = UINT64_MAX};
    weft__fault_arm_from(WEFT_FAULT_ALLOC, 1);
    race_fd = weft_dial_addrs(arg, &o);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_GE(race_fd, 0);
    return (void *)(intptr_t)family_of(race_fd);
}

/* With race_delay_ns, the two families race: an IPv4 address that
 * answers wins over a silent IPv6 one once the delay has passed; the
 * first family wins when it connects (the second never starts within
 * the delay); a first family that fails starts the second at once (with
 * a delay that never comes, the dial would wait forever); both lanes may
 * connect, and the loser's socket is closed. */
static void *main_racing(void *arg)
{
    (void)arg;
    require_ipv6_loopback();
    int fds = count_fds();
    uint16_t good4_port, good6_port, silent6_port;
    int held6;
    int good4 = tcp_listener(&good4_port);
    int good6 = tcp6_listener(&good6_port, 128);
    int silent6 = silent6_listener(&silent6_port, &held6);
    int base = count_fds();
    struct entry v4;
    struct entry6 v6;

    /* Silent IPv6 first: IPv4 wins after the delay. */
    entry_set(&v4, good4_port, NULL);
    entry6_set(&v6, silent6_port, &v4.ai);
    weft_dial_opts o = {.race_delay_ns = 20 * MS};
    int fd = weft_dial_addrs(&v6.ai, &o);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(family_of(fd), AF_INET);
    ASSERT_EQ(count_fds(), base + 1); /* the IPv6 lane's socket is closed */
    check_connected(fd, good4);
    ASSERT_OK(weft_close(fd));

    /* The same with 16 deadline levels in force, so that the delay
     * cannot be pushed: the IPv4 lane starts at once (the dial neither
     * fails nor waits on the silent address). */
    int levels = 0;
    while (weft_deadline_push_in(100000 * MS) == 0)
        levels++;
    ASSERT_EQ(levels, 16);
    o.race_delay_ns = 100000 * MS;
    fd = weft_dial_addrs(&v6.ai, &o);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(family_of(fd), AF_INET);
    check_connected(fd, good4);
    ASSERT_OK(weft_close(fd));
    for (int i = 0; i < levels; i++)
        ASSERT_OK(weft_deadline_pop());

    /* IPv6 answers: it wins, and IPv4 is never tried. */
    o.race_delay_ns = UINT64_MAX;
    entry6_set(&v6, good6_port, &v4.ai);
    fd = weft_dial_addrs(&v6.ai, &o);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(family_of(fd), AF_INET6);
    check_connected(fd, good6);
    ASSERT_OK(weft_close(fd));
    ASSERT(!pending_connection(good4));

    /* IPv6 refused: IPv4 starts at once, long before the delay. */
    uint16_t refused6_port;
    close(tcp6_listener(&refused6_port, 1));
    entry6_set(&v6, refused6_port, &v4.ai);
    fd = weft_dial_addrs(&v6.ai, &o);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(family_of(fd), AF_INET);
    check_connected(fd, good4);
    ASSERT_OK(weft_close(fd));

    /* No memory at all (a fresh task, whose first deadline push needs
     * some): no race, the addresses one at a time, IPv4 after the
     * refused IPv6. */
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, dial_race_without_memory, &v6.ai));
    intptr_t raced;
    ASSERT_OK(weft_join(t, (void **)&raced));
    ASSERT_EQ(raced, AF_INET);
    check_connected(race_fd, good4);
    ASSERT_OK(weft_close(race_fd));

    /* Both refused: an error, nothing open. */
    entry_set(&v4, refusing_port(), NULL);
    entry6_set(&v6, refused6_port, &v4.ai);
    ASSERT_EQ(weft_dial_addrs(&v6.ai, &o), -ECONNREFUSED);
    ASSERT_EQ(count_fds(), base);

    /* Both answer, the second lane started at once: either may win, the
     * other's socket is closed. */
    o.race_delay_ns = 1;
    entry_set(&v4, good4_port, NULL);
    entry6_set(&v6, good6_port, &v4.ai);
    for (int i = 0; i < 50; i++) {
        fd = weft_dial_addrs(&v6.ai, &o);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(count_fds(), base + 1);
        ASSERT_OK(weft_close(fd));
        /* Take what the lanes connected, winner's and loser's. */
        drain(good4);
        drain(good6);
    }
    ASSERT_EQ(count_fds(), base);

    close(held6);
    close(silent6);
    close(good6);
    close(good4);
    ASSERT_EQ(count_fds(), fds);
    return NULL;
}
TEST(racing_the_families_takes_the_first_to_connect)
{
    run_main(NULL, main_racing, NULL);
}

/* A racing dial over two silent addresses, ended by the caller's deadline
 * or a cancel: both lanes stop and close their sockets. */
static struct entry race_v4;
static struct entry6 race_v6;
static int race_result;

static void *dial_race_silent(void *arg)
{
    (void)arg;
    weft_dial_opts o = {.race_delay_ns = MS};
    race_result = weft_dial_addrs(&race_v6.ai, &o);
    return NULL;
}

static void *main_racing_interrupted(void *arg)
{
    (void)arg;
    require_ipv6_loopback();
    uint16_t p4, p6;
    int fds = count_fds();
    int held4, held6;
    int s4 = silent_listener(&p4, &held4);
    int s6 = silent6_listener(&p6, &held6);
    int base = count_fds();
    entry_set(&race_v4, p4, NULL);
    entry6_set(&race_v6, p6, &race_v4.ai);

    ASSERT_OK(weft_deadline_push_in(30 * MS));
    dial_race_silent(NULL);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(race_result, -ETIMEDOUT);
    ASSERT_EQ(count_fds(), base);

    weft_task *t;
    ASSERT_OK(weft_spawn(&t, dial_race_silent, NULL));
    ASSERT_OK(weft_sleep_ns(20 * MS)); /* both lanes in their connects, most likely */
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(race_result, -ECANCELED);
    ASSERT_EQ(count_fds(), base);

    close(held4);
    close(held6);
    close(s4);
    close(s6);
    ASSERT_EQ(count_fds(), fds);
    return NULL;
}
TEST(a_racing_dial_ends_with_the_callers_deadline_or_cancel)
{
    run_main(NULL, main_racing_interrupted, NULL);
}

/* A shielded caller goes on through a cancel, and so does its dial: one
 * cancelled before the dial tries one address at a time (racing lanes
 * would be born cancelled), and one cancelled during a race starts
 * again that way. */
static uint16_t shield_good4;
static int shield_fd, shield_family;

static void *shielded_dial(void *arg)
{
    bool cancel_first = arg != NULL;
    ASSERT_OK(weft_shield_push());
    atomic_store(&dialling, true);
    if (cancel_first) {
        while (!weft_cancelled())
            ASSERT_OK(weft_yield());
    }
    /* The attempt time lets the one-at-a-time dial past the silent
     * address. */
    weft_dial_opts o = {.race_delay_ns = 20 * MS, .attempt_timeout_ns = 50 * MS};
    shield_fd = weft_dial_addrs(&race_v6.ai, &o);
    if (shield_fd >= 0) {
        shield_family = family_of(shield_fd);
        ASSERT_OK(weft_close(shield_fd));
    }
    ASSERT_OK(weft_shield_pop());
    return NULL;
}

static void *main_racing_shielded(void *arg)
{
    (void)arg;
    require_ipv6_loopback();
    uint16_t p6;
    int held6;
    int fds = count_fds();
    int good4 = tcp_listener(&shield_good4);
    int s6 = silent6_listener(&p6, &held6);
    entry_set(&race_v4, shield_good4, NULL);
    entry6_set(&race_v6, p6, &race_v4.ai);
    for (int cancel_first = 0; cancel_first < 2; cancel_first++) {
        weft_task *t;
        shield_fd = -1;
        atomic_store(&dialling, false);
        ASSERT_OK(weft_spawn(&t, shielded_dial, cancel_first ? &t : NULL));
        while (!atomic_load(&dialling)) /* shielded, so that the cancel finds it so */
            ASSERT_OK(weft_sleep_ns(MS));
        if (!cancel_first)
            ASSERT_OK(weft_sleep_ns(5 * MS)); /* in the race, most likely */
        ASSERT_OK(weft_cancel(t));
        ASSERT_EQ(weft_join(t, NULL), -ECANCELED); /* its outcome, not its dial's */
        ASSERT_GE(shield_fd, 0);
        ASSERT_EQ(shield_family, AF_INET);
        ASSERT(pending_connection(good4));
        close(accept4(good4, NULL, NULL, SOCK_CLOEXEC));
    }
    close(held6);
    close(s6);
    close(good4);
    ASSERT_EQ(count_fds(), fds);
    return NULL;
}
TEST(a_shielded_caller_dials_through_a_cancel)
{
    run_main(NULL, main_racing_shielded, NULL);
}

/* ---- bad input and failures --------------------------------------------------- */

/* ---- a local address ------------------------------------------------------ */

static struct sockaddr_in local4(const char *ip, uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    ASSERT_EQ(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    return sa;
}

static struct sockaddr_in name_of(int fd, bool peer)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    ASSERT_OK(peer ? getpeername(fd, (struct sockaddr *)&sa, &len)
                   : getsockname(fd, (struct sockaddr *)&sa, &len));
    ASSERT_EQ(sa.sin_family, AF_INET);
    return sa;
}

/* A port on 127.0.0.2 that no socket holds (bound, then closed). */
static uint16_t free_port_on_127_0_0_2(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = local4("127.0.0.2", 0);
    ASSERT_OK(bind(s, (struct sockaddr *)&sa, sizeof sa));
    uint16_t port = ntohs(name_of(s, false).sin_port);
    close(s);
    return port;
}

/* Each socket leaves from the local address (the peer sees it), its port
 * picked at the connect (IP_BIND_ADDRESS_NO_PORT) or the fixed one asked
 * for; only entries of its family are tried, racing or not; a bind that
 * fails is an attempt's error, with nothing left open. */
static void *main_local(void *arg)
{
    (void)arg;
    uint16_t port;
    int l = tcp_listener(&port);
    int fds = count_fds();
    struct sockaddr_in from = local4("127.0.0.2", 0);
    weft_dial_opts o = {.local_addr = (struct sockaddr *)&from, .local_addrlen = sizeof from};
    char ps[8];
    int fd = weft_dial("127.0.0.1", port_str(port, ps), &o);
    ASSERT_GE(fd, 0);
    struct sockaddr_in mine = name_of(fd, false);
    ASSERT_EQ(mine.sin_addr.s_addr, from.sin_addr.s_addr);
    ASSERT_NE(mine.sin_port, 0);
    int v = 0;
    socklen_t len = sizeof v;
    ASSERT_OK(getsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &v, &len));
    ASSERT_EQ(v, 1);
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(s >= 0);
    struct sockaddr_in seen = name_of(s, true);
    ASSERT_EQ(seen.sin_addr.s_addr, from.sin_addr.s_addr);
    ASSERT_EQ(seen.sin_port, mine.sin_port);
    close(s);
    ASSERT_OK(weft_close(fd));

    /* A fixed port: taken; a second dial from it to the same peer finds
     * it held (-EADDRINUSE), and closes its socket. */
    struct sockaddr_in fixed = local4("127.0.0.2", free_port_on_127_0_0_2());
    weft_dial_opts of = {.local_addr = (struct sockaddr *)&fixed, .local_addrlen = sizeof fixed};
    struct entry e;
    entry_set(&e, port, NULL);
    fd = weft_dial_addrs(&e.ai, &of);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(name_of(fd, false).sin_port, fixed.sin_port);
    ASSERT_EQ(weft_dial_addrs(&e.ai, &of), -EADDRINUSE);
    ASSERT_EQ(count_fds(), fds + 1);
    check_connected(fd, l);
    ASSERT_OK(weft_close(fd));

    /* A local address this host does not have: each attempt's bind fails,
     * and the last error comes back. */
    struct sockaddr_in absent = local4("192.0.2.1", 0); /* TEST-NET-1 */
    weft_dial_opts oa = {.local_addr = (struct sockaddr *)&absent, .local_addrlen = sizeof absent};
    struct entry two[2];
    entry_set(&two[1], port, NULL);
    entry_set(&two[0], port, &two[1]);
    ASSERT_EQ(weft_dial_addrs(&two[0].ai, &oa), -EADDRNOTAVAIL);
    ASSERT_EQ(count_fds(), fds);

    /* A connected UDP socket from it. */
    weft_dial_opts ou = o;
    ou.type = SOCK_DGRAM;
    fd = weft_dial("127.0.0.1", "9", &ou);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(name_of(fd, false).sin_addr.s_addr, from.sin_addr.s_addr);
    ASSERT_OK(weft_close(fd));

    /* Entries of the other family are passed by, racing or not: an IPv6
     * listener ahead in the list gets no connection. */
    uint16_t p6;
    int l6 = tcp6_listener(&p6, 16);
    struct entry v4;
    struct entry6 v6;
    entry_set(&v4, port, NULL);
    entry6_set(&v6, l6 >= 0 ? p6 : 9, &v4.ai);
    for (int racing = 0; racing < 2; racing++) {
        weft_dial_opts orc = o;
        orc.race_delay_ns = racing ? 1 : 0;
        fd = weft_dial_addrs(&v6.ai, &orc);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(family_of(fd), AF_INET);
        check_connected(fd, l);
        ASSERT_OK(weft_close(fd));
        if (l6 >= 0)
            ASSERT(!pending_connection(l6));
    }
    v6.ai.ai_next = NULL;
    ASSERT_EQ(weft_dial_addrs(&v6.ai, &o), -ENOENT);
    if (l6 >= 0)
        close(l6);
    ASSERT_EQ(count_fds(), fds);
    close(l);
    return NULL;
}
TEST(dial_from_a_local_address)
{
    run_main(NULL, main_local, NULL);
}

static void *main_bad_input(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_dial("127.0.0.1", NULL, NULL), -EINVAL);
    weft_dial_opts o = {.family = AF_UNIX};
    ASSERT_EQ(weft_dial("127.0.0.1", "80", &o), -EINVAL);
    o = (weft_dial_opts){.type = SOCK_RAW};
    ASSERT_EQ(weft_dial("127.0.0.1", "80", &o), -EINVAL);
    ASSERT_EQ(weft_dial_addrs(NULL, NULL), -EINVAL);
    struct entry e;
    entry_set(&e, 80, NULL);
    ASSERT_EQ(weft_dial_addrs(&e.ai, &o), -EINVAL);
    /* Local addresses that cannot be: NULL with a length, too short for
     * its family, not IP, of another family than asked for. */
    struct sockaddr_in from = loopback(0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    weft_dial_opts bad[] = {
        {.local_addrlen = sizeof from},
        {.local_addr = (struct sockaddr *)&from, .local_addrlen = 1},
        {.local_addr = (struct sockaddr *)&from, .local_addrlen = sizeof from - 1},
        {.local_addr = (struct sockaddr *)&un, .local_addrlen = sizeof un},
        {.family = AF_INET6, .local_addr = (struct sockaddr *)&from, .local_addrlen = sizeof from},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ(weft_dial("127.0.0.1", "80", &bad[i]), -EINVAL);
        ASSERT_EQ(weft_dial_addrs(&e.ai, &bad[i]), -EINVAL);
    }
    /* A service name /etc/services does not know: the lookup's error. */
    int r = weft_dial("127.0.0.1", "no-such-service-weft", NULL);
    ASSERT(WEFT_IS_EAI(r));
    /* Interrupted before it starts. */
    ASSERT_OK(weft_deadline_push_in(0));
    ASSERT_EQ(weft_dial("127.0.0.1", "80", NULL), -ETIMEDOUT);
    ASSERT_EQ(weft_dial_addrs(&e.ai, NULL), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    return NULL;
}
TEST(bad_input_gets_an_error)
{
    ASSERT_EQ(weft_dial("127.0.0.1", "80", NULL), -EPERM); /* outside a task */
    struct entry e;
    entry_set(&e, 80, NULL);
    ASSERT_EQ(weft_dial_addrs(&e.ai, NULL), -EPERM);
    run_main(NULL, main_bad_input, NULL);
}

/* Each SQE of a dial failing in turn, then each allocation: a dial that
 * fails returns an error and leaves no descriptor; one whose failure was
 * retried away (the runtime's own ops) connects. */
static int sweep_listener;
static char sweep_port[8];

/* A dial by name for the allocations (the lookup's copies), by address
 * for the SQEs: the SQEs the runtime makes of its own while the lookup
 * runs on the pool vary from run to run, and would shift the count. */
static int sweep_dial(weft__fault_kind kind)
{
    if (kind == WEFT_FAULT_ALLOC)
        return weft_dial("127.0.0.1", sweep_port, NULL);
    struct entry e;
    entry_set(&e, (uint16_t)atoi(sweep_port), NULL);
    return weft_dial_addrs(&e.ai, NULL);
}

static void *dial_under_fault(void *arg)
{
    weft__fault_kind kind = (weft__fault_kind)(intptr_t)arg;
    int fds = count_fds();
    /* How many calls of this kind a clean dial makes. */
    weft__fault_arm(kind, UINT64_MAX);
    int fd = sweep_dial(kind);
    uint64_t points = weft__fault_count(kind);
    weft__fault_arm(kind, 0);
    ASSERT_GE(fd, 0);
    check_connected(fd, sweep_listener);
    ASSERT_OK(weft_close(fd));
    ASSERT_GT(points, 0u);
    int failed = 0;
    /* A few points past the count, should a run make more of its own. */
    for (uint64_t n = 1; n <= points + 4; n++) {
        weft__fault_arm(kind, n);
        fd = sweep_dial(kind);
        weft__fault_arm(kind, 0);
        if (fd >= 0) {
            check_connected(fd, sweep_listener);
            ASSERT_OK(weft_close(fd));
            continue;
        }
        ASSERT(fd == -EAGAIN || fd == -ENOMEM);
        failed++;
        check_sweep_point(n, fds);
    }
    ASSERT_GT(failed, 0);
    return NULL;
}

/* The same sweep over a racing dial, whose lanes are tasks, each with its
 * own sockets; a failure that lasts, so that both lanes meet it, and the
 * dial without them. */
static int sweep_listener6;

static void *race_under_fault(void *arg)
{
    weft__fault_kind kind = (weft__fault_kind)(intptr_t)arg;
    int fds = count_fds();
    uint16_t p4 = (uint16_t)atoi(sweep_port), p6;
    struct sockaddr_in6 sa;
    socklen_t len = sizeof sa;
    ASSERT_OK(getsockname(sweep_listener6, (struct sockaddr *)&sa, &len));
    p6 = ntohs(sa.sin6_port);
    struct entry v4;
    struct entry6 v6;
    entry_set(&v4, p4, NULL);
    entry6_set(&v6, p6, &v4.ai);
    weft_dial_opts o = {.race_delay_ns = 1};
    weft__fault_arm(kind, UINT64_MAX);
    int fd = weft_dial_addrs(&v6.ai, &o);
    uint64_t points = weft__fault_count(kind);
    weft__fault_arm(kind, 0);
    ASSERT_GE(fd, 0);
    ASSERT_OK(weft_close(fd));
    int failed = 0;
    /* One failure leaves the other lane to connect: the failures last,
     * from the nth call on. */
    for (uint64_t n = 1; n <= points; n++) {
        weft__fault_arm_from(kind, n);
        fd = weft_dial_addrs(&v6.ai, &o);
        weft__fault_arm(kind, 0);
        drain(sweep_listener);
        drain(sweep_listener6);
        if (fd >= 0) {
            ASSERT_OK(weft_close(fd));
        } else {
            ASSERT_EQ(fd, -EAGAIN);
            failed++;
        }
        check_sweep_point(n, fds);
    }
    /* With no SQE, no attempt can be made. With no memory, the race is
     * given up and the addresses are tried one at a time, which needs
     * none: the dial connects. */
    if (kind == WEFT_FAULT_SQE)
        ASSERT_GT(failed, 0);
    else
        ASSERT_EQ(failed, 0);
    return NULL;
}

/* One failure at a time in a race with another way to connect: a refused
 * IPv6 address, then two IPv4 ones that answer. Whatever fails (the set,
 * a lane's spawn, the delay's timer, an attempt's socket or connect), the
 * dial connects: the race goes on without what it could not have, or an
 * attempt fails and the next address is tried. The delay is long, so that
 * the IPv4 lane starts when the IPv6 one has failed, every run alike. */
static void *race_under_one_fault(void *arg)
{
    weft__fault_kind kind = (weft__fault_kind)(intptr_t)arg;
    int fds = count_fds();
    uint16_t p4 = (uint16_t)atoi(sweep_port), p6;
    close(tcp6_listener(&p6, 1));
    struct entry v4[2];
    struct entry6 v6;
    entry_set(&v4[1], p4, NULL);
    entry_set(&v4[0], p4, &v4[1]);
    entry6_set(&v6, p6, &v4[0].ai);
    weft_dial_opts o = {.race_delay_ns = 10000 * MS};
    weft__fault_arm(kind, UINT64_MAX);
    int fd = weft_dial_addrs(&v6.ai, &o);
    uint64_t points = weft__fault_count(kind);
    weft__fault_arm(kind, 0);
    ASSERT_GE(fd, 0);
    check_connected(fd, sweep_listener);
    ASSERT_OK(weft_close(fd));
    for (uint64_t n = 1; n <= points + 4; n++) {
        weft__fault_arm(kind, n);
        fd = weft_dial_addrs(&v6.ai, &o);
        weft__fault_arm(kind, 0);
        if (fd < 0)
            FAILF("failure point %llu of %llu failed the dial: %d", (unsigned long long)n,
                  (unsigned long long)points, fd);
        check_connected(fd, sweep_listener);
        ASSERT_OK(weft_close(fd));
        drain(sweep_listener);
        check_sweep_point(n, fds);
    }
    return NULL;
}

TEST(failed_sqes_and_allocations_leave_nothing_open)
{
    uint16_t port;
    sweep_listener = tcp_listener(&port);
    port_str(port, sweep_port);
    /* One worker: another's own SQEs would shift the count. */
    run_main_one_worker(NULL, dial_under_fault, (void *)(intptr_t)WEFT_FAULT_SQE);
    run_main_one_worker(NULL, dial_under_fault, (void *)(intptr_t)WEFT_FAULT_ALLOC);
    uint16_t p6;
    sweep_listener6 = tcp6_listener(&p6, 128);
    if (sweep_listener6 >= 0) {
        run_main_one_worker(NULL, race_under_fault, (void *)(intptr_t)WEFT_FAULT_SQE);
        run_main_one_worker(NULL, race_under_fault, (void *)(intptr_t)WEFT_FAULT_ALLOC);
        run_main_one_worker(NULL, race_under_one_fault, (void *)(intptr_t)WEFT_FAULT_SQE);
        run_main_one_worker(NULL, race_under_one_fault, (void *)(intptr_t)WEFT_FAULT_ALLOC);
        close(sweep_listener6);
    } else {
        fprintf(stderr, "note: no IPv6 loopback: the racing sweep is not run\n");
    }
    close(sweep_listener);
}

TEST_MAIN(CASE(dial_connects_by_name), CASE(dial_makes_a_connected_udp_socket),
          CASE(dial_addrs_goes_past_refusing_and_silent_addresses),
          CASE(the_callers_deadline_or_cancel_ends_the_dial),
          CASE(an_attempt_time_that_cannot_be_pushed_fails_the_dial),
          CASE(racing_the_families_takes_the_first_to_connect),
          CASE(a_racing_dial_ends_with_the_callers_deadline_or_cancel),
          CASE(a_shielded_caller_dials_through_a_cancel), CASE(dial_from_a_local_address),
          CASE(bad_input_gets_an_error), CASE(failed_sqes_and_allocations_leave_nothing_open))
