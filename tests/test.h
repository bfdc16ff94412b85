/* A small test harness: each case runs in a forked child with a time limit,
 * assertions print both sides, exit code 77 means "skipped". */
#ifndef WEFT_TEST_H
#define WEFT_TEST_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#if defined(__SANITIZE_ADDRESS__)
#define TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_LSAN 1
#endif
#endif
#ifdef TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif
/* Under TSan every task's first switch creates a thread context that costs
 * milliseconds: tests that make thousands of tasks make fewer there. */
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
/* Builds valgrind can run (no sanitizer), with its client requests
 * (RUNNING_ON_VALGRIND): rerun_under_valgrind below. */
#if __has_include(<valgrind/valgrind.h>) && !defined(TEST_LSAN) && !defined(TEST_TSAN)
#include <valgrind/valgrind.h>
#define CAN_VALGRIND 1
#endif

#define TEST_SKIP_CODE 77

#define FAILF(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        fflush(stderr);                                                                            \
        _exit(1);                                                                                  \
    } while (0)

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            FAILF("assertion failed: %s", #c);                                                     \
    } while (0)

#define ASSERT_CMP(a, op, b)                                                                       \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (!(a_ op b_))                                                                           \
            FAILF("%s %s %s: %lld vs %lld", #a, #op, #b, a_, b_);                                  \
    } while (0)
#define ASSERT_EQ(a, b) ASSERT_CMP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_CMP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_CMP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_CMP(a, <=, b)
#define ASSERT_GE(a, b) ASSERT_CMP(a, >=, b)
#define ASSERT_GT(a, b) ASSERT_CMP(a, >, b)
#define ASSERT_STREQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            FAILF("%s == %s: \"%s\" vs \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");   \
    } while (0)
#define ASSERT_OK(expr) ASSERT_EQ((expr), 0)

#define SKIP(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "skipped: ");                                                              \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        _exit(TEST_SKIP_CODE);                                                                     \
    } while (0)

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

#define TEST(name) static void name(void)
#define CASE(name)                                                                                 \
    {                                                                                              \
#name, name                                                                                \
    }

/* A task's function and argument, for spawn_and_join. */
typedef struct task_body {
    weft_fn fn;
    void *arg;
} task_body;

/* A main task (its argument a task_body) that spawns body->fn(body->arg) as
 * a child and joins it, whatever the outcome: for cases about how the child
 * ends (a panic, a fault), which a join of the main task would not see. */
/* The runtime's stats now (from a task; see weft_stats_snapshot). */
static inline weft_stats stats_now(void)
{
    weft_stats s;
    ASSERT_OK(weft_stats_snapshot(&s));
    return s;
}

/* A task (or blocking job) that only returns its argument. */
static inline void *return_arg(void *arg)
{
    return arg;
}

static inline void *spawn_and_join(void *body)
{
    const task_body *b = body;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, b->fn, b->arg));
    weft_join(t, NULL);
    return NULL;
}

/* ---- sockets on 127.0.0.1 ------------------------------------------------ */

static inline struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
}

/* A connected TCP pair on 127.0.0.1 made with plain system calls: fds[0]
 * connected, fds[1] accepted. Blocking libc calls on them give up after a
 * second, so that lost bytes fail a check instead of hanging it. */
static inline int tcp_pair(int fds[2])
{
    fds[0] = fds[1] = -1; /* also on failure */
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0)
        return -errno;
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    int c = -1, s = -1, err = 0;
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) < 0 ||
        (c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        connect(c, (struct sockaddr *)&a, sizeof a) < 0 ||
        (s = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
        err = -errno;
    close(l);
    if (err) {
        if (c >= 0)
            close(c);
        return err;
    }
    struct timeval tv = {.tv_sec = 1};
    for (int i = 0; i < 2; i++) {
        int fd = i ? s : c;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    fds[0] = c;
    fds[1] = s;
    return 0;
}

/* A UDP socket bound to 127.0.0.1 on a port the kernel picks, which
 * *addr gets. */
static inline int udp_on_loopback(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in a = loopback(0);
    ASSERT_OK(bind(fd, (struct sockaddr *)&a, sizeof a));
    socklen_t len = sizeof *addr;
    ASSERT_OK(getsockname(fd, (struct sockaddr *)addr, &len));
    return fd;
}

/* Runs fn(arg) as the main task of a runtime built from cfg (NULL = default)
 * and asserts that weft_run succeeds; returns the main task's result. */
static inline void *run_main(const weft_config *cfg, weft_fn fn, void *arg)
{
    void *res = NULL;
    int r = weft_run(cfg, fn, arg, &res);
    if (r != 0)
        FAILF("weft_run: %d (%s) %s", r, weft_strerror(r), weft_last_config_error());
    return res;
}

/* run_main on one worker whatever $WEFT_WORKERS says: for tests whose
 * expectations are one worker's scheduling order (exact run orders, CPU
 * shares of one worker, who runs before whom). */
static inline void *run_main_one_worker(const weft_config *cfg, weft_fn fn, void *arg)
{
    weft_config one = {0};
    if (cfg)
        one = *cfg;
    one.workers = 1;
    return run_main(&one, fn, arg);
}

/* Whether the running kernel is older than major.minor: for features
 * whose absence the kernel reports with a generic code (IORING_REGISTER_
 * PBUF_RING and sparse tables are -EINVAL before 5.19), so that a test
 * skips only when the kernel truly lacks them. */
static inline bool kernel_older_than(int major, int minor)
{
    struct utsname u;
    int ma = 0, mi = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
        return false;
    return ma < major || (ma == major && mi < minor);
}

/* Whether a default direct-descriptor table (1024 slots) is more than
 * RLIMIT_NOFILE allows, so that the kernel refuses it and WEFT_DIRECT
 * calls say -ENXIO: the one case where a test may skip on that. */
static inline bool direct_table_over_rlimit(void)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1024;
}

/* The descriptors this process has open, for leak checks. */
static inline int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        FAILF("opendir /proc/self/fd: %s", strerror(errno));
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* After a run failed at failure point n of a fault sweep: it must have
 * left no descriptor open (fds_before: count_fds() before the sweep) and,
 * where LeakSanitizer runs, no memory behind, so that the point that
 * leaks is the one named. */
static inline void check_sweep_point(uint64_t n, int fds_before)
{
    int fds = count_fds();
    if (fds != fds_before)
        FAILF("failure point %llu left %d descriptor(s) open", (unsigned long long)n,
              fds - fds_before);
#ifdef TEST_LSAN
    if (__lsan_do_recoverable_leak_check())
        FAILF("failure point %llu leaked memory (LeakSanitizer's report above)",
              (unsigned long long)n);
#endif
}

/* Lets every runnable task run until it parks (one worker, FIFO queue):
 * for cases that need the tasks they spawned parked before going on. */
static inline void settle(void)
{
    for (int i = 0; i < 4; i++)
        ASSERT_OK(weft_yield());
}

/* A TCP listener on 127.0.0.1 with a port the kernel picks, written to
 * *port when port is not NULL. */
static inline int tcp_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof sa));
    ASSERT_OK(listen(fd, 128));
    socklen_t len = sizeof sa;
    ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
    if (port)
        *port = ntohs(sa.sin_port);
    return fd;
}

/* Runs `fn` in a child with stderr captured into buf; returns the wait
 * status. For death tests. */
static inline int run_captured(void (*fn)(void), char *buf, size_t cap)
{
    int pipefd[2];
    if (pipe(pipefd) < 0)
        FAILF("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        fn();
        _exit(0);
    }
    close(pipefd[1]);
    size_t n = 0;
    ssize_t k;
    char sink[4096];
    while ((k = read(pipefd[0], n + 1 < cap ? buf + n : sink,
                     n + 1 < cap ? cap - 1 - n : sizeof sink)) > 0)
        if (n + 1 < cap)
            n += (size_t)k;
    buf[n] = 0;
    close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

/* Runs fn in a child, which must abort (SIGABRT) with message somewhere in
 * its stderr. For death tests of misuse that weft reports and aborts on. */
static inline void expect_abort_with(void (*fn)(void), const char *message)
{
    char out[4096];
    int status = run_captured(fn, out, sizeof out);
    ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    if (!strstr(out, message))
        FAILF("no \"%s\" in stderr: %s", message, out);
}

/* A child killed by SIGSEGV, or (under ASan, which handles SEGV itself) one
 * that exited after a SEGV report. */
static inline int died_of_segv(int status, const char *out)
{
    if (WIFSIGNALED(status))
        return WTERMSIG(status) == SIGSEGV;
    return WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(out, "SEGV") != NULL;
}

/* Runs this binary's case `name` again under valgrind's memcheck (the
 * case, seeing RUNNING_ON_VALGRIND there, does its work), bounded by
 * timeout(1) so that a hang cannot outlive it: fails on a hang or on any
 * error memcheck reports; skips (77) where valgrind is not installed. For
 * builds valgrind can run (no sanitizer). */
static inline void rerun_under_valgrind(const char *name, unsigned limit_s)
{
    if (access("/usr/bin/valgrind", X_OK) != 0) {
        printf("  valgrind is not installed (make test installs it)\n");
        exit(TEST_SKIP_CODE);
    }
    /* Our own path: "/proc/self/exe" would name valgrind once it runs. */
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    ASSERT(len > 0);
    self[len] = 0;
    char limit[16];
    snprintf(limit, sizeof limit, "%u", limit_s);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        /* KILL: a valgrind stuck under its own lock ignores SIGTERM. */
        execl("/usr/bin/timeout", "timeout", "-s", "KILL", limit, "/usr/bin/valgrind", "-q",
              "--error-exitcode=99", self, name, (char *)NULL);
        _exit(127);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 124 || WEXITSTATUS(status) == 137)
        FAILF("the run under valgrind hung: killed at the time limit");
    /* 99: memcheck's own exit; another: the case failed under valgrind
     * (a case runs in a child, and a memcheck error there fails it). */
    if (WEXITSTATUS(status) != 0)
        FAILF("the run under valgrind failed (exit %d): memcheck's reports or the case's failure "
              "above",
              WEXITSTATUS(status));
}

static inline int test_main(int argc, char **argv, const test_case *cases, size_t n)
{
    unsigned passed = 0, failed = 0, skipped = 0;
    const char *only = argc > 1 ? argv[1] : getenv("WEFT_TEST_ONLY");
    unsigned limit =
        getenv("WEFT_TEST_TIMEOUT") ? (unsigned)atoi(getenv("WEFT_TEST_TIMEOUT")) : 120;
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(only, cases[i].name) != 0)
            continue;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(limit);
            cases[i].fn();
            fflush(NULL);
#ifdef TEST_LSAN
            /* _exit skips LeakSanitizer's check at exit: run it here, so
             * that a case which leaks fails. */
            if (__lsan_do_recoverable_leak_check())
                _exit(1);
#endif
            _exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            passed++;
            printf("ok   %s\n", cases[i].name);
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP_CODE) {
            skipped++;
            printf("skip %s\n", cases[i].name);
        } else {
            failed++;
            if (WIFSIGNALED(status))
                printf("FAIL %s (signal %d%s)\n", cases[i].name, WTERMSIG(status),
                       WTERMSIG(status) == SIGALRM ? ": time limit" : "");
            else
                printf("FAIL %s (exit %d)\n", cases[i].name, WEXITSTATUS(status));
        }
    }
    printf("%u passed, %u failed, %u skipped\n", passed, failed, skipped);
    if (failed)
        return 1;
    return passed == 0 && skipped > 0 ? TEST_SKIP_CODE : 0;
}

#define TEST_MAIN(...)                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        static const test_case cases_[] = {__VA_ARGS__};                                           \
        return test_main(argc, argv, cases_, sizeof cases_ / sizeof cases_[0]);                    \
    }

#endif
