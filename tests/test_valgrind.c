/* Under valgrind's memcheck, what io_uring wrote counts as written.
 *
 * The kernel fills a read's buffer outside any system call memcheck
 * follows, so data read into fresh heap memory would look never written
 * and every branch on it would be reported; weft marks the bytes each op
 * says the kernel wrote (src/common/memcheck.h). Each op below reads into
 * fresh heap memory, and the test branches on every byte it got, so a
 * missing mark is an error memcheck reports, which fails the case. (The
 * workers' parking under valgrind is tested in test_config.) */
#include <fcntl.h>
#include <linux/stat.h>
#include <sys/epoll.h>
#include <sys/xattr.h>

#include "test.h"

#ifdef CAN_VALGRIND
/* Fresh heap memory: undefined for memcheck until something writes it. */
static void *fresh(size_t n)
{
    void *p = malloc(n);
    ASSERT(p != NULL);
    return p;
}

/* Branches on each of n bytes (memcheck reports a branch on undefined
 * data), and checks them against want. */
static void expect_bytes(const void *got, const char *want, size_t n)
{
    const unsigned char *g = got;
    for (size_t i = 0; i < n; i++)
        if (g[i] != (unsigned char)want[i])
            FAILF("byte %zu: got 0x%02x, want 0x%02x", i, g[i], (unsigned char)want[i]);
}

static void files(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/data", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "filedata", 8), 8);

    char *buf = fresh(8);
    ASSERT_EQ(weft_read(fd, buf, 8, 0), 8);
    expect_bytes(buf, "filedata", 8);
    free(buf);

    char *a = fresh(4), *b = fresh(4);
    struct iovec iov[2] = {{a, 4}, {b, 4}};
    ASSERT_EQ(weft_readv(fd, iov, 2, 0), 8);
    expect_bytes(a, "file", 4);
    expect_bytes(b, "data", 4);
    free(a);
    free(b);

    struct statx *st = fresh(sizeof *st);
    ASSERT_OK(weft_statx(AT_FDCWD, path, 0, STATX_SIZE, st));
    ASSERT_EQ(st->stx_size, 8u);
    free(st);

    /* Extended attributes, where the file system takes user ones. */
    if (fsetxattr(fd, "user.weft", "xv", 2, 0) == 0) {
        char *v = fresh(8);
        ASSERT_EQ(weft_getxattr(path, "user.weft", v, 8), 2);
        expect_bytes(v, "xv", 2);
        ASSERT_EQ(weft_fgetxattr(fd, "user.weft", v + 2, 6), 2);
        expect_bytes(v + 2, "xv", 2);
        free(v);
    } else {
        printf("  note: no user xattrs on %s: getxattr not checked\n", dir);
    }
    close(fd);
    unlink(path);
}

static void sockets(void)
{
    int p[2];
    ASSERT_OK(tcp_pair(p));
    ASSERT_EQ(send(p[1], "tcp!", 4, 0), 4);
    char *buf = fresh(16);
    ASSERT_EQ(weft_recv(p[0], buf, 16, 0), 4);
    expect_bytes(buf, "tcp!", 4);
    free(buf);

    int *type = fresh(sizeof *type);
    int r = weft_getsockopt(p[0], SOL_SOCKET, SO_TYPE, type, sizeof *type);
    if (r == -EOPNOTSUPP || r == -EINVAL) /* SOCKET_URING_OP_GETSOCKOPT: Linux 6.7 */
        printf("  note: no getsockopt through io_uring here\n");
    else
        ASSERT_EQ(*type, SOCK_STREAM);
    free(type);

    /* Buffers from a buffer ring: one receive, then a stream. */
    weft_buf_ring *br;
    ASSERT_OK(weft_buf_ring_create(&br, 4, 64));
    ASSERT_EQ(send(p[1], "ring", 4, 0), 4);
    weft_buf lease;
    ASSERT_EQ(weft_recv_buf(p[0], br, &lease), 4);
    expect_bytes(lease.data, "ring", 4);
    ASSERT_OK(weft_buf_release(&lease));
    weft_stream *s;
    ASSERT_OK(weft_recv_stream(&s, p[0], br));
    ASSERT_EQ(send(p[1], "more", 4, 0), 4);
    ASSERT_EQ(weft_stream_next(s, &lease), 4);
    expect_bytes(lease.data, "more", 4);
    ASSERT_OK(weft_buf_release(&lease));
    ASSERT_OK(weft_stream_close(s));
    ASSERT_OK(weft_buf_ring_destroy(br));
    close(p[0]);
    close(p[1]);

    /* accept's peer address. */
    uint16_t port;
    int l = tcp_listener(&port);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in to = loopback(port);
    ASSERT_OK(connect(c, (struct sockaddr *)&to, sizeof to));
    struct sockaddr_in *peer = fresh(sizeof *peer);
    socklen_t *plen = fresh(sizeof *plen);
    *plen = sizeof *peer;
    int a = weft_accept(l, (struct sockaddr *)peer, plen, SOCK_CLOEXEC);
    ASSERT(a >= 0);
    ASSERT_EQ(*plen, sizeof *peer);
    ASSERT_EQ(peer->sin_family, AF_INET);
    ASSERT_EQ(peer->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    free(peer);
    free(plen);
    close(a);
    close(c);
    close(l);

    /* recvmsg with the sender's address and control data (IP_PKTINFO),
     * and recvfrom. */
    struct sockaddr_in at;
    int u = udp_on_loopback(&at);
    int one = 1;
    ASSERT_OK(setsockopt(u, IPPROTO_IP, IP_PKTINFO, &one, sizeof one));
    int sender = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(sendto(sender, "udp1", 4, 0, (struct sockaddr *)&at, sizeof at), 4);
    ASSERT_EQ(sendto(sender, "udp2", 4, 0, (struct sockaddr *)&at, sizeof at), 4);
    char *data = fresh(16);
    struct sockaddr_in *from = fresh(sizeof *from);
    size_t control_room = CMSG_SPACE(sizeof(struct in_pktinfo));
    void *control = fresh(control_room);
    struct iovec iov = {data, 16};
    /* The msghdr in fresh memory too, its msg_flags left for the kernel. */
    struct msghdr *msg = fresh(sizeof *msg);
    msg->msg_name = from;
    msg->msg_namelen = sizeof *from;
    msg->msg_iov = &iov;
    msg->msg_iovlen = 1;
    msg->msg_control = control;
    msg->msg_controllen = control_room;
    ASSERT_EQ(weft_recvmsg(u, msg, 0), 4);
    ASSERT_EQ(msg->msg_flags & (MSG_TRUNC | MSG_CTRUNC), 0);
    expect_bytes(data, "udp1", 4);
    ASSERT_EQ(from->sin_family, AF_INET);
    struct cmsghdr *cm = CMSG_FIRSTHDR(msg);
    ASSERT(cm != NULL);
    ASSERT_EQ(cm->cmsg_level, IPPROTO_IP);
    ASSERT_EQ(cm->cmsg_type, IP_PKTINFO);
    struct in_pktinfo pi;
    memcpy(&pi, CMSG_DATA(cm), sizeof pi);
    ASSERT_EQ(pi.ipi_addr.s_addr, htonl(INADDR_LOOPBACK));
    socklen_t flen = sizeof *from;
    ASSERT_EQ(weft_recvfrom(u, data, 16, 0, (struct sockaddr *)from, &flen), 4);
    expect_bytes(data, "udp2", 4);
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    ASSERT_OK(getsockname(sender, (struct sockaddr *)&me, &ml));
    ASSERT_EQ(from->sin_port, me.sin_port);
    free(data);
    free(from);
    free(control);
    free(msg);
    close(sender);
    close(u);
}

static void descriptors_and_events(void)
{
    /* weft_pipe: the pair the kernel wrote. */
    int *fds = fresh(2 * sizeof(int));
    ASSERT_OK(weft_pipe(fds, O_CLOEXEC));
    ASSERT(fds[0] >= 0 && fds[1] >= 0);
    ASSERT_EQ(write(fds[1], "p", 1), 1);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    ASSERT(ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42};
    ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev));
    struct epoll_event *got = fresh(4 * sizeof *got);
    ASSERT_EQ(weft_epoll_wait(ep, got, 4), 1);
    ASSERT_EQ(got[0].data.u64, 42u);
    ASSERT(got[0].events & EPOLLIN);
    free(got);
    close(ep);
    close(fds[0]);
    close(fds[1]);
    free(fds);

    /* waitid's siginfo. */
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0)
        _exit(3);
    siginfo_t *info = fresh(sizeof *info);
    ASSERT_OK(weft_waitid(P_PID, pid, info, WEXITED));
    ASSERT_EQ(info->si_pid, pid);
    ASSERT_EQ(info->si_code, CLD_EXITED);
    ASSERT_EQ(info->si_status, 3);
    free(info);
}

static void *read_into_heap(void *dir)
{
    files(dir);
    sockets();
    descriptors_and_events();
    return NULL;
}
#endif

/* Every op here that the kernel writes memory for, under memcheck. */
TEST(what_io_uring_wrote_is_defined_for_memcheck)
{
#ifndef CAN_VALGRIND
    printf("  sanitizer build or no valgrind headers: valgrind cannot run this binary\n");
    exit(TEST_SKIP_CODE);
#else
    if (RUNNING_ON_VALGRIND) {
        char dir[] = "/tmp/weft-valgrind-XXXXXX";
        ASSERT(mkdtemp(dir) != NULL);
        weft_config cfg = {.workers = 1};
        run_main(&cfg, read_into_heap, dir);
        rmdir(dir);
        return;
    }
    rerun_under_valgrind("what_io_uring_wrote_is_defined_for_memcheck", 150);
#endif
}

TEST_MAIN(CASE(what_io_uring_wrote_is_defined_for_memcheck))
