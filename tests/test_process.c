/* Child processes: weft_process_* with real programs (/bin/sh, cat,
 * sleep, head). */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "common/fault.h"
#include "test.h"

static char *const SH = "/bin/sh";

/* Spawns /bin/sh -c script with opts. */
static weft_process *sh(const char *script, const weft_process_opts *opts)
{
    char *argv[] = {"sh", "-c", (char *)script, NULL};
    weft_process *p = NULL;
    int r = weft_process_spawn(&p, SH, argv, opts);
    if (r)
        FAILF("spawn sh -c '%s': %d (%s)", script, r, weft_strerror(r));
    return p;
}

static const weft_process_opts PIPES_OUT = {
    .stdio = {WEFT_STDIO_NULL, WEFT_STDIO_PIPE, WEFT_STDIO_PIPE}};

/* No child of this process is left, reaped or not. */
static void assert_no_children(void)
{
    errno = 0;
    ASSERT_EQ(waitpid(-1, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
}

/* weft_process_output under a deadline ms from now. */
static int output_within(weft_process *p, uint64_t ms, weft_output *o, int *ws)
{
    ASSERT_OK(weft_deadline_push_in(ms * 1000000ull));
    int r = weft_process_output(p, o, ws);
    ASSERT_OK(weft_deadline_pop());
    return r;
}

/* A marker file the child touches once it has written what a test reads
 * under a deadline: the test waits for it first, so that the deadline
 * bounds the read only, not the child's start (which a loaded machine
 * may hold up for longer than any deadline a test would use). */
static char mark[64];

static const char *new_mark(void)
{
    static int n;
    snprintf(mark, sizeof mark, "/tmp/weft-test-mark-%d-%d", (int)getpid(), n++);
    unlink(mark);
    return mark;
}

static void await_mark(void)
{
    while (access(mark, F_OK) != 0)
        ASSERT_OK(weft_sleep_ns(1000000ull));
    ASSERT_OK(unlink(mark));
}

/* sh(script with one %s, which becomes a fresh mark's path), then waits
 * for the mark. */
static weft_process *sh_marked(const char *fmt, const weft_process_opts *opts)
{
    char script[256];
    snprintf(script, sizeof script, fmt, new_mark());
    weft_process *p = sh(script, opts);
    await_mark();
    return p;
}

/* An output cut by a deadline ms from now: it returns -ETIMEDOUT with
 * exactly out and err read so far. */
static void expect_cut_output(weft_process *p, uint64_t ms, const char *out, const char *err)
{
    weft_output o;
    ASSERT_EQ(output_within(p, ms, &o, NULL), -ETIMEDOUT);
    ASSERT_STREQ(o.out, out);
    ASSERT_STREQ(o.err, err);
    weft_output_free(&o);
}

/* Pushes far deadlines until no more can be: returns how many. */
static int fill_deadline_levels(void)
{
    int levels = 0;
    while (weft_deadline_push_in(10000 * 1000000ull) == 0)
        levels++;
    return levels;
}

static void pop_deadline_levels(int levels)
{
    while (levels--)
        ASSERT_OK(weft_deadline_pop());
}

/* ---- output, status ------------------------------------------------------ */

static void *main_output(void *arg)
{
    (void)arg;
    weft_process *p = sh("echo out; echo err >&2; exit 3", &PIPES_OUT);
    weft_output o;
    int ws = -1;
    ASSERT_OK(weft_process_output(p, &o, &ws));
    ASSERT_STREQ(o.out, "out\n");
    ASSERT_EQ(o.out_len, 4);
    ASSERT_STREQ(o.err, "err\n");
    ASSERT(WIFEXITED(ws));
    ASSERT_EQ(WEXITSTATUS(ws), 3);
    weft_output_free(&o);
    ASSERT(o.out == NULL && o.err == NULL);
    /* The pipes were consumed. */
    ASSERT_EQ(weft_process_fd(p, WEFT_STDOUT), -EBADF);
    weft_process_destroy(p);
    /* Only stdout a pipe: err stays NULL; nothing written: an empty string. */
    weft_process_opts one = {.stdio = {WEFT_STDIO_NULL, WEFT_STDIO_PIPE, WEFT_STDIO_NULL}};
    p = sh("true", &one);
    ASSERT_OK(weft_process_output(p, &o, &ws));
    ASSERT_STREQ(o.out, "");
    ASSERT_EQ(o.out_len, 0);
    ASSERT(o.err == NULL);
    ASSERT_EQ(ws, 0);
    weft_output_free(&o);
    weft_process_destroy(p);
    /* Only stderr a pipe. */
    one.stdio[1] = WEFT_STDIO_NULL;
    one.stdio[2] = WEFT_STDIO_PIPE;
    p = sh("echo x; echo y >&2", &one);
    ASSERT_OK(weft_process_output(p, &o, NULL));
    ASSERT(o.out == NULL);
    ASSERT_STREQ(o.err, "y\n");
    weft_output_free(&o);
    weft_process_destroy(p);
    assert_no_children();
    return NULL;
}

TEST(output_collects_both_streams_and_the_status)
{
    run_main(NULL, main_output, NULL);
}

/* The child fills its stderr pipe before it writes a byte to stdout, and
 * then stdout before it writes more to stderr: read one after the other,
 * in either order, the two would wait for each other for ever. */
static void *main_big_output(void *arg)
{
    (void)arg;
    weft_process *p = sh("head -c 1000000 /dev/zero >&2; head -c 3000000 /dev/zero;"
                         " head -c 1000000 /dev/zero >&2",
                         &PIPES_OUT);
    weft_output o;
    int ws = -1;
    ASSERT_OK(weft_process_output(p, &o, &ws));
    ASSERT_EQ(ws, 0);
    ASSERT_EQ(o.out_len, 3000000);
    ASSERT_EQ(o.err_len, 2000000);
    for (size_t i = 0; i < o.out_len; i++)
        if (o.out[i])
            FAILF("byte %zu of stdout is %d", i, o.out[i]);
    ASSERT_EQ(o.out[o.out_len], '\0');
    weft_output_free(&o);
    weft_process_destroy(p);
    return NULL;
}

TEST(output_reads_both_pipes_at_once)
{
    run_main(NULL, main_big_output, NULL);
}

/* output_limit keeps the first bytes of each stream and drops the rest,
 * reading it all: the child, which writes far more than a pipe holds,
 * ends. At the limit exactly nothing is dropped; one byte past, it is. */
static void *main_output_limit(void *arg)
{
    (void)arg;
    weft_process_opts opts = PIPES_OUT;
    opts.output_limit = 10;
    weft_process *p =
        sh("printf 0123456789abc; head -c 3000000 /dev/zero; printf short >&2", &opts);
    weft_output o;
    int ws = -1;
    ASSERT_OK(weft_process_output(p, &o, &ws));
    ASSERT_EQ(ws, 0);
    ASSERT_EQ(o.out_len, 10);
    ASSERT_STREQ(o.out, "0123456789");
    ASSERT(o.out_truncated);
    ASSERT_STREQ(o.err, "short");
    ASSERT(!o.err_truncated);
    weft_output_free(&o);
    weft_process_destroy(p);

    const char *scripts[] = {"printf 0123456789", "printf 0123456789x", "printf 012"};
    const bool truncated[] = {false, true, false};
    for (int i = 0; i < 3; i++) {
        p = sh(scripts[i], &opts);
        ASSERT_OK(weft_process_output(p, &o, &ws));
        ASSERT_EQ(o.out_len, i == 2 ? 3 : 10);
        ASSERT(strncmp(o.out, "0123456789", o.out_len) == 0);
        ASSERT_EQ(o.out[o.out_len], '\0');
        ASSERT_EQ(o.out_truncated, truncated[i]);
        weft_output_free(&o);
        weft_process_destroy(p);
    }
    /* A limit larger than the first buffer: the buffers still grow to it. */
    opts.output_limit = 100000;
    p = sh("head -c 250000 /dev/zero", &opts);
    ASSERT_OK(weft_process_output(p, &o, &ws));
    ASSERT_EQ(o.out_len, 100000);
    ASSERT(o.out_truncated);
    weft_output_free(&o);
    weft_process_destroy(p);
    return NULL;
}

TEST(output_limit_keeps_the_first_bytes_and_drops_the_rest)
{
    run_main(NULL, main_output_limit, NULL);
}

static void *main_stdin(void *arg)
{
    (void)arg;
    weft_process_opts o = {.stdio = {WEFT_STDIO_PIPE, WEFT_STDIO_PIPE, WEFT_STDIO_INHERIT}};
    char *argv[] = {"cat", NULL};
    weft_process *p;
    ASSERT_EQ(weft_process_spawn(&p, "cat", argv, &o), -ENOENT); /* no PATH search */
    o.search_path = true;
    ASSERT_OK(weft_process_spawn(&p, "cat", argv, &o));
    int in = weft_process_fd(p, WEFT_STDIN);
    ASSERT_GE(in, 0);
    ASSERT_EQ(weft_process_fd(p, WEFT_STDERR), -EBADF);
    ASSERT_EQ(weft_process_fd(p, 3), -EINVAL);
    ASSERT_OK(weft_write_all(in, "hello, cat", 10, WEFT_OFF_CURRENT, NULL));
    /* output closes stdin, so cat sees its end and exits. */
    weft_output out;
    int ws = -1;
    ASSERT_OK(weft_process_output(p, &out, &ws));
    ASSERT_STREQ(out.out, "hello, cat");
    ASSERT_EQ(ws, 0);
    ASSERT_EQ(weft_process_close_fd(p, WEFT_STDIN), -EBADF);
    weft_output_free(&out);
    weft_process_destroy(p);
    return NULL;
}

TEST(stdin_pipe_feeds_the_child)
{
    run_main(NULL, main_stdin, NULL);
}

static void *main_status(void *arg)
{
    (void)arg;
    weft_process *p = sh("exit 7", NULL);
    int ws = -1;
    ASSERT_OK(weft_process_wait(p, &ws));
    ASSERT_EQ(WEXITSTATUS(ws), 7);
    /* Reaped once; the same status again, at once. */
    ws = -1;
    ASSERT_OK(weft_process_wait(p, &ws));
    ASSERT_EQ(WEXITSTATUS(ws), 7);
    ws = -1;
    ASSERT_OK(weft_process_try_wait(p, &ws));
    ASSERT_EQ(WEXITSTATUS(ws), 7);
    ASSERT_OK(weft_process_wait(p, NULL));
    ASSERT_EQ(weft_process_kill(p, SIGTERM), -ESRCH);
    int pid = weft_process_pid(p);
    ASSERT_GT(pid, 0);
    errno = 0;
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1); /* no zombie */
    ASSERT_EQ(errno, ECHILD);
    weft_process_destroy(p);
    return NULL;
}

TEST(wait_returns_the_status_every_time)
{
    run_main(NULL, main_status, NULL);
}

static void *main_kill(void *arg)
{
    (void)arg;
    weft_process *p = sh("exec sleep 100", NULL);
    ASSERT_EQ(weft_process_try_wait(p, NULL), -EAGAIN);
    ASSERT_OK(weft_process_kill(p, 0));
    ASSERT_EQ(weft_process_kill(p, 12345), -EINVAL);
    ASSERT_OK(weft_process_kill(p, SIGTERM));
    int ws = -1;
    ASSERT_OK(weft_process_wait(p, &ws));
    ASSERT(WIFSIGNALED(ws));
    ASSERT_EQ(WTERMSIG(ws), SIGTERM);
    ASSERT_EQ(weft_process_kill_group(p, SIGTERM), -EINVAL); /* no group of its own */
    weft_process_destroy(p);
    return NULL;
}

TEST(kill_ends_a_running_child)
{
    run_main(NULL, main_kill, NULL);
}

/* ---- interruption, destroy --------------------------------------------- */

/* Waits until it is cancelled, then destroys the process, cancelled and
 * past a deadline: destroy must still kill and reap. */
static atomic_bool destroyer_started;

static void *destroy_when_cancelled(void *arg)
{
    atomic_store(&destroyer_started, true);
    ASSERT_EQ(weft_process_wait(arg, NULL), -ECANCELED);
    ASSERT_OK(weft_deadline_push(1));
    weft_process_destroy(arg);
    ASSERT_OK(weft_deadline_pop());
    return NULL;
}

static void *main_deadline(void *arg)
{
    (void)arg;
    weft_process *p = sh("exec sleep 100", NULL);
    int pid = weft_process_pid(p);
    ASSERT_OK(weft_deadline_push_in(20 * 1000000ull));
    ASSERT_EQ(weft_process_wait(p, NULL), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    /* Interrupted: nothing reaped, the child still runs. */
    ASSERT_EQ(weft_process_try_wait(p, NULL), -EAGAIN);
    ASSERT_OK(kill(pid, 0));
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, destroy_when_cancelled, p));
    /* (Cancelled before it starts, a task would never run.) */
    while (!atomic_load(&destroyer_started))
        ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    weft_join(t, NULL);
    errno = 0;
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
    return NULL;
}

TEST(an_interrupted_wait_reaps_nothing_and_destroy_reaps)
{
    run_main(NULL, main_deadline, NULL);
    assert_no_children();
}

/* Waiters on a child blocked on its stdin: they all get its status when
 * the pipe closes. */
enum { WAITERS = 4 };

static void *waiter(void *arg)
{
    int ws = -1;
    ASSERT_OK(weft_process_wait(arg, &ws));
    return (void *)(intptr_t)ws;
}

static void *main_waiters(void *arg)
{
    (void)arg;
    weft_process_opts o = {.stdio = {WEFT_STDIO_PIPE, WEFT_STDIO_NULL, WEFT_STDIO_INHERIT}};
    weft_process *p = sh("cat; exit 5", &o);
    weft_task *t[WAITERS];
    for (int i = 0; i < WAITERS; i++)
        ASSERT_OK(weft_spawn(&t[i], waiter, p));
    settle();
    ASSERT_EQ(weft_process_try_wait(p, NULL), -EAGAIN);
    ASSERT_OK(weft_process_close_fd(p, WEFT_STDIN));
    for (int i = 0; i < WAITERS; i++) {
        void *ws = NULL;
        ASSERT_OK(weft_join(t[i], &ws));
        ASSERT(WIFEXITED((int)(intptr_t)ws));
        ASSERT_EQ(WEXITSTATUS((int)(intptr_t)ws), 5);
    }
    weft_process_destroy(p);
    return NULL;
}

TEST(several_tasks_wait_together)
{
    run_main(NULL, main_waiters, NULL);
    assert_no_children();
}

/* Waiters on two workers and a plain thread race for each exit: one of
 * them reaps, and all of them get the status. (The race is between one
 * waiter's look and its reap; it takes threads, and many rounds.) */
enum { RACE_ROUNDS = 200 };

static void *plain_waiter(void *arg)
{
    int ws = -1;
    int r = weft_process_wait(arg, &ws);
    return (void *)(intptr_t)(r ? r : ws);
}

static void *main_race(void *arg)
{
    (void)arg;
    weft_process_opts o = {.stdio = {WEFT_STDIO_PIPE, WEFT_STDIO_NULL, WEFT_STDIO_INHERIT}};
    for (int round = 0; round < RACE_ROUNDS; round++) {
        weft_process *p = sh("cat; exit 6", &o);
        weft_task *t[2];
        for (unsigned k = 0; k < 2; k++) {
            weft_spawn_opts so = {.flags = WEFT_TASK_ON_WORKER, .worker = k};
            ASSERT_OK(weft_spawn_ex(&t[k], &so, waiter, p));
        }
        pthread_t th;
        ASSERT_OK(pthread_create(&th, NULL, plain_waiter, p));
        settle();
        ASSERT_OK(weft_process_close_fd(p, WEFT_STDIN));
        for (int k = 0; k < 2; k++) {
            void *ws = NULL;
            ASSERT_OK(weft_join(t[k], &ws));
            ASSERT_EQ(WEXITSTATUS((int)(intptr_t)ws), 6);
        }
        void *ws = NULL;
        ASSERT_OK(pthread_join(th, &ws));
        ASSERT_EQ((int)(intptr_t)ws, 6 << 8);
        weft_process_destroy(p);
    }
    return NULL;
}

TEST(waiters_on_several_threads_share_one_reap)
{
    weft_config c = {.workers = 2};
    run_main(&c, main_race, NULL);
    assert_no_children();
}

/* A grandchild that keeps the stdout pipe: a deadline bounds the read and
 * keeps what came; killing the group ends the grandchild too. */
static void *main_grandchild(void *arg)
{
    (void)arg;
    weft_process_opts o = PIPES_OUT;
    o.new_process_group = true;
    weft_process *p = sh_marked("sleep 100 & echo started; touch %s", &o);
    expect_cut_output(p, 100, "started\n", "");
    weft_output out;
    /* sh has exited (the touch was its last command); the pipes are still
     * open in sleep. */
    int ws = -1;
    ASSERT_OK(weft_process_wait(p, &ws));
    ASSERT_EQ(ws, 0);
    ASSERT_OK(weft_process_kill_group(p, SIGKILL));
    /* Now every writer is gone: the read ends. */
    ASSERT_OK(weft_process_output(p, &out, &ws));
    ASSERT_STREQ(out.out, "");
    weft_output_free(&out);
    weft_process_destroy(p);
    return NULL;
}

TEST(a_grandchild_holding_the_pipe_and_kill_group)
{
    run_main(NULL, main_grandchild, NULL);
}

/* An interrupted output returns what it read and reads nothing after:
 * the stack below the call is scribbled over and slept on, and the next
 * rounds fill the same frames (ASan would see a reader left behind). */
static void *main_interrupted_output(void *arg)
{
    (void)arg;
    weft_process *p =
        sh_marked("echo early; exec >&-; echo e1 >&2; touch %s; exec sleep 100", &PIPES_OUT);
    expect_cut_output(p, 50, "early\n", "e1\n");
    weft_output o;
    volatile char junk[4096];
    memset((char *)junk, 0x5a, sizeof junk);
    ASSERT_OK(weft_sleep_ns(20 * 1000000ull));
    ASSERT_EQ(weft_process_try_wait(p, NULL), -EAGAIN); /* left running */
    weft_process_destroy(p);
    /* A child that writes stderr without a pause, stopped by deadlines. */
    for (int i = 0; i < 5; i++) {
        p = sh_marked("echo stderr-line >&2; touch %s; exec yes stderr-line >&2", &PIPES_OUT);
        ASSERT_OK(weft_deadline_push_in(20 * 1000000ull));
        ASSERT_EQ(weft_process_output(p, &o, NULL), -ETIMEDOUT);
        ASSERT_OK(weft_deadline_pop());
        ASSERT_STREQ(o.out, "");
        ASSERT(strncmp(o.err, "stderr-line\n", 12) == 0);
        weft_output_free(&o);
        memset((char *)junk, 0x11, sizeof junk);
        weft_process_destroy(p);
    }
    return NULL;
}

TEST(an_interrupted_output_keeps_what_it_read_and_reads_no_more)
{
    run_main(NULL, main_interrupted_output, NULL);
    assert_no_children();
}

/* Cleanup code: a cancelled task, shielded, collects a child's output. A
 * helper task spawned there would be born cancelled. */
static atomic_bool cleaner_started;

static void *collect_in_cleanup(void *arg)
{
    atomic_store(&cleaner_started, true);
    while (weft_yield() == 0) {
    } /* until cancelled */
    ASSERT_OK(weft_shield_push());
    weft_output o;
    ASSERT_OK(weft_process_output(arg, &o, NULL));
    ASSERT_STREQ(o.out, "out\n");
    ASSERT_EQ(o.err_len, 200000);
    weft_output_free(&o);
    ASSERT_OK(weft_shield_pop());
    return NULL;
}

static void *main_cleanup_output(void *arg)
{
    (void)arg;
    weft_process *p = sh("head -c 200000 /dev/zero >&2; echo out", &PIPES_OUT);
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, collect_in_cleanup, p));
    while (!atomic_load(&cleaner_started))
        ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    weft_join(t, NULL);
    ASSERT_OK(weft_process_wait(p, NULL));
    weft_process_destroy(p);
    return NULL;
}

TEST(output_in_a_cancelled_shielded_task)
{
    run_main(NULL, main_cleanup_output, NULL);
}

/* A program that closed descriptors 0 and 1 (a daemon) gets them back from
 * pipe2: the child's end must not be one that another stream replaces. */
static void *main_no_std_fds(void *arg)
{
    (void)arg;
    int save0 = fcntl(0, F_DUPFD_CLOEXEC, 10), save1 = fcntl(1, F_DUPFD_CLOEXEC, 10);
    ASSERT(save0 >= 0 && save1 >= 0);
    close(0);
    close(1);
    weft_process_opts o = {.stdio = {WEFT_STDIO_NULL, WEFT_STDIO_NULL, WEFT_STDIO_PIPE}};
    weft_process *p = sh("echo to-stderr >&2", &o);
    weft_output out;
    int r = weft_process_output(p, &out, NULL);
    dup2(save0, 0);
    dup2(save1, 1);
    close(save0);
    close(save1);
    ASSERT_OK(r);
    ASSERT_STREQ(out.err, "to-stderr\n");
    weft_output_free(&out);
    weft_process_destroy(p);
    return NULL;
}

TEST(a_program_without_standard_descriptors)
{
    run_main(NULL, main_no_std_fds, NULL);
}

/* One task feeds stdin while another collects the output: the writer takes
 * the descriptor, so output does not close it under the writer. */
enum { FEED = 1 << 20 };

static void *feeder(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(FEED);
    ASSERT(buf);
    memset(buf, 'a', FEED);
    ASSERT_OK(weft_write_all(fd, buf, FEED, WEFT_OFF_CURRENT, NULL));
    free(buf);
    close(fd);
    return NULL;
}

static void *main_feed(void *arg)
{
    (void)arg;
    weft_process_opts o = {.stdio = {WEFT_STDIO_PIPE, WEFT_STDIO_PIPE, WEFT_STDIO_PIPE},
                           .search_path = true};
    char *argv[] = {"cat", NULL};
    weft_process *p;
    ASSERT_OK(weft_process_spawn(&p, "cat", argv, &o));
    int in = weft_process_take_fd(p, WEFT_STDIN);
    ASSERT_GE(in, 0);
    ASSERT_EQ(weft_process_fd(p, WEFT_STDIN), -EBADF);
    ASSERT_EQ(weft_process_take_fd(p, WEFT_STDIN), -EBADF);
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, feeder, (void *)(intptr_t)in));
    weft_output out;
    int ws = -1;
    ASSERT_OK(weft_process_output(p, &out, &ws));
    ASSERT_OK(weft_join(t, NULL));
    ASSERT_EQ(out.out_len, FEED);
    ASSERT_EQ(ws, 0);
    weft_output_free(&out);
    weft_process_destroy(p);
    return NULL;
}

TEST(a_feeder_takes_stdin_while_output_collects)
{
    run_main(NULL, main_feed, NULL);
}

/* No SQE to be had: a wait says so and reaps nothing; destroy blocks for
 * the reap instead of leaving a zombie. */
static void *main_no_sqe(void *arg)
{
    (void)arg;
    weft_process *p = sh("exec sleep 100", NULL);
    int pid = weft_process_pid(p);
    weft__fault_arm_from(WEFT_FAULT_SQE, 1);
    int r = weft_process_wait(p, NULL);
    weft_process_destroy(p);
    weft__fault_arm(WEFT_FAULT_SQE, 0);
    ASSERT_LT(r, 0);
    ASSERT_NE(r, -ECHILD);
    errno = 0;
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
    return NULL;
}

TEST(destroy_reaps_when_no_sqe_can_be_had)
{
    run_main(NULL, main_no_sqe, NULL);
}

/* Without a pidfd (as under valgrind 3.19), the pid serves: waits in
 * tasks nap and look again, threads block in waitid, kills go by pid
 * until the reap, destroy kills and reaps. */
static void *main_no_pidfd(void *arg)
{
    (void)arg;
    weft_process *p = sh("exit 4", NULL);
    int ws = -1;
    ASSERT_OK(weft_process_wait(p, &ws));
    ASSERT_EQ(WEXITSTATUS(ws), 4);
    ASSERT_EQ(weft_process_kill(p, SIGTERM), -ESRCH);
    weft_process_destroy(p);
    p = sh("exec sleep 100", NULL);
    ASSERT_EQ(weft_process_try_wait(p, NULL), -EAGAIN);
    ASSERT_OK(weft_process_kill(p, 0));
    ASSERT_OK(weft_deadline_push_in(5 * 1000000ull));
    ASSERT_EQ(weft_process_wait(p, NULL), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_process_kill(p, SIGKILL));
    ASSERT_OK(weft_process_wait(p, &ws));
    ASSERT_EQ(WTERMSIG(ws), SIGKILL);
    weft_process_destroy(p);
    /* Waiters in tasks and a plain thread. */
    weft_process_opts o = {.stdio = {WEFT_STDIO_PIPE, WEFT_STDIO_NULL, WEFT_STDIO_INHERIT}};
    p = sh("cat; exit 6", &o);
    weft_task *t[2];
    for (int k = 0; k < 2; k++)
        ASSERT_OK(weft_spawn(&t[k], waiter, p));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, plain_waiter, p));
    settle();
    ASSERT_OK(weft_process_close_fd(p, WEFT_STDIN));
    for (int k = 0; k < 2; k++) {
        void *res = NULL;
        ASSERT_OK(weft_join(t[k], &res));
        ASSERT_EQ(WEXITSTATUS((int)(intptr_t)res), 6);
    }
    void *res = NULL;
    ASSERT_OK(pthread_join(th, &res));
    ASSERT_EQ((int)(intptr_t)res, 6 << 8);
    weft_process_destroy(p);
    /* Output, and destroy of a child still running. */
    p = sh("echo out; echo err >&2", &PIPES_OUT);
    weft_output out;
    ASSERT_OK(weft_process_output(p, &out, &ws));
    ASSERT_STREQ(out.out, "out\n");
    ASSERT_STREQ(out.err, "err\n");
    weft_output_free(&out);
    weft_process_destroy(p);
    p = sh("exec sleep 100", NULL);
    int pid = weft_process_pid(p);
    weft_process_destroy(p);
    errno = 0;
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
    return NULL;
}

TEST(without_a_pidfd_the_pid_serves)
{
    int fds = count_fds();
    weft__fault_arm_from(WEFT_FAULT_PIDFD, 1);
    run_main(NULL, main_no_pidfd, NULL);
    weft__fault_arm(WEFT_FAULT_PIDFD, 0);
    ASSERT_EQ(count_fds(), fds);
    assert_no_children();
}

/* wait_delay_ns: once the child has exited, the pipes are read for that
 * long at most; a background process holding them is told apart by
 * held_open. */
static void *main_wait_delay(void *arg)
{
    (void)arg;
    weft_process_opts o = PIPES_OUT;
    o.new_process_group = true;
    o.wait_delay_ns = 50 * 1000000ull;
    weft_process *p = sh("echo hi; sleep 100 & exit 2", &o);
    weft_output out;
    int ws = -1;
    ASSERT_OK(weft_process_output(p, &out, &ws));
    ASSERT(out.held_open);
    ASSERT_STREQ(out.out, "hi\n");
    ASSERT_EQ(WEXITSTATUS(ws), 2);
    weft_output_free(&out);
    ASSERT_OK(weft_process_kill_group(p, SIGKILL)); /* the sleep */
    weft_process_destroy(p);
    /* Nothing left behind: the pipes end, and held_open stays false. */
    p = sh("echo hi; echo e >&2", &o);
    ASSERT_OK(weft_process_output(p, &out, &ws));
    ASSERT(!out.held_open);
    ASSERT_STREQ(out.out, "hi\n");
    weft_output_free(&out);
    weft_process_destroy(p);
    /* A delay shorter than the reading takes: what is in the pipe when
     * it ends is still read, and nothing holds the pipe. */
    o.wait_delay_ns = 1;
    p = sh("head -c 60000 /dev/zero", &o);
    ASSERT_OK(weft_sleep_ns(50 * 1000000ull)); /* all written, the child gone */
    ASSERT_OK(weft_process_output(p, &out, &ws));
    ASSERT_EQ(out.out_len, 60000);
    ASSERT(!out.held_open);
    weft_output_free(&out);
    weft_process_destroy(p);
    /* The delay's deadline cannot be pushed (16 levels in force): the
     * pipes are read to their end, as without a delay. */
    o.wait_delay_ns = 50 * 1000000ull;
    int levels = fill_deadline_levels();
    p = sh("echo hi", &o);
    ASSERT_OK(weft_process_output(p, &out, &ws));
    ASSERT_STREQ(out.out, "hi\n");
    weft_output_free(&out);
    weft_process_destroy(p);
    pop_deadline_levels(levels);
    /* The caller's own earlier deadline is still the caller's. */
    p = sh("exec sleep 100", &o);
    ASSERT_EQ(output_within(p, 10, &out, NULL), -ETIMEDOUT);
    ASSERT(!out.held_open);
    weft_output_free(&out);
    weft_process_destroy(p);
    return NULL;
}

TEST(wait_delay_stops_reading_pipes_held_after_the_exit)
{
    run_main(NULL, main_wait_delay, NULL);
}

/* An output interrupted in its wait, once both pipes had ended: a second
 * call gives "" for them, not NULL, and the status. */
static void *main_output_again(void *arg)
{
    (void)arg;
    weft_process *p =
        sh_marked("echo hi; echo e >&2; exec >&- 2>&-; touch %s; exec sleep 100", &PIPES_OUT);
    expect_cut_output(p, 50, "hi\n", "e\n");
    weft_output o;
    ASSERT_OK(weft_process_kill(p, SIGTERM));
    int ws = -1;
    ASSERT_OK(weft_process_output(p, &o, &ws));
    ASSERT_STREQ(o.out, "");
    ASSERT_STREQ(o.err, "");
    ASSERT_EQ(WTERMSIG(ws), SIGTERM);
    weft_output_free(&o);
    weft_process_destroy(p);
    return NULL;
}

TEST(output_again_after_an_interrupted_wait)
{
    run_main(NULL, main_output_again, NULL);
}

/* Reads the "ready\n" or "started\n" a child prints once it ignores
 * SIGTERM: a signal sent before would find it not yet ignoring. */
static void read_line_of(weft_process *p, size_t n)
{
    char line[16] = {0};
    ASSERT_EQ(weft_read(weft_process_fd(p, WEFT_STDOUT), line, n, WEFT_OFF_CURRENT), (ssize_t)n);
}

/* weft_process_stop: a signal, a grace period, then SIGKILL; with a group,
 * nothing of the group is left. */
static void *main_stop(void *arg)
{
    (void)arg;
    int ws = -1;
    weft_process *p = sh("exec sleep 100", NULL); /* obeys SIGTERM */
    ASSERT_OK(weft_process_stop(p, SIGTERM, 10000 * 1000000ull, &ws));
    ASSERT_EQ(WTERMSIG(ws), SIGTERM);
    ASSERT_OK(weft_process_stop(p, SIGTERM, 0, &ws)); /* reaped: at once */
    weft_process_destroy(p);
    p = sh("trap '' TERM; echo ready; exec sleep 100", &PIPES_OUT); /* ignores it */
    read_line_of(p, 6);
    ASSERT_OK(weft_process_stop(p, SIGTERM, 30 * 1000000ull, &ws));
    ASSERT_EQ(WTERMSIG(ws), SIGKILL);
    weft_process_destroy(p);
    /* The caller's deadline comes before the grace ends: the child is
     * left running. */
    p = sh("trap '' TERM; echo ready; exec sleep 100", &PIPES_OUT);
    read_line_of(p, 6);
    ASSERT_OK(weft_deadline_push_in(20 * 1000000ull));
    ASSERT_EQ(weft_process_stop(p, SIGTERM, 10000 * 1000000ull, &ws), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_OK(weft_sleep_ns(20 * 1000000ull)); /* time for a SIGKILL to end it */
    ASSERT_EQ(weft_process_try_wait(p, NULL), -EAGAIN);
    ASSERT_EQ(weft_process_stop(p, 12345, 0, NULL), -EINVAL);
    weft_process_destroy(p);
    /* A session of its own: the shell dies of SIGTERM, its background job
     * ignores it and still holds stdout; after the stop the pipe ends. */
    weft_process_opts o = PIPES_OUT;
    o.new_session = true;
    p = sh("(trap '' TERM; echo started; exec sleep 100) & wait", &o);
    read_line_of(p, 8);
    ASSERT_OK(weft_process_stop(p, SIGTERM, 10000 * 1000000ull, &ws));
    ASSERT_EQ(WTERMSIG(ws), SIGTERM);
    weft_output out;
    ASSERT_OK(weft_process_output(p, &out, NULL));
    ASSERT_STREQ(out.out, "");
    weft_output_free(&out);
    weft_process_destroy(p);
    /* new_session: the child leads a session of its own (field 6 of
     * /proc/self/stat, read by the shell itself, is its session id). */
    p = sh("read -r pid comm state ppid pgrp sid rest < /proc/self/stat; test $sid = $$", &o);
    ASSERT_OK(weft_process_wait(p, &ws));
    ASSERT_EQ(ws, 0);
    weft_process_destroy(p);
    o.new_session = false;
    p = sh("read -r pid comm state ppid pgrp sid rest < /proc/self/stat; test $sid = $$", &o);
    ASSERT_OK(weft_process_wait(p, &ws));
    ASSERT_NE(ws, 0);
    weft_process_destroy(p);
    /* Exited (not reaped), its group not empty: the rest goes too. */
    o.new_session = false;
    o.new_process_group = true;
    p = sh("(trap '' TERM; echo started; exec sleep 100) & exit 3", &o);
    read_line_of(p, 8);
    ASSERT_OK(weft_process_stop(p, SIGTERM, 10000 * 1000000ull, &ws));
    ASSERT((WIFEXITED(ws) && WEXITSTATUS(ws) == 3) || WTERMSIG(ws) == SIGTERM);
    ASSERT_OK(weft_process_output(p, &out, NULL)); /* the sleep is gone */
    weft_output_free(&out);
    weft_process_destroy(p);
    /* Reaped before the stop: the group's id may be another group's by
     * then, so the group is left alone (here the sleep is still in it). */
    p = sh("(trap '' TERM; echo started; exec sleep 100) & exit 3", &o);
    read_line_of(p, 8);
    ASSERT_OK(weft_process_wait(p, &ws));
    ASSERT_OK(weft_process_stop(p, SIGTERM, 0, &ws));
    ASSERT_EQ(WEXITSTATUS(ws), 3);
    ASSERT_OK(weft_process_kill_group(p, 0));
    ASSERT_OK(weft_process_kill_group(p, SIGKILL));
    ASSERT_OK(weft_process_output(p, &out, NULL));
    weft_output_free(&out);
    weft_process_destroy(p);
    /* A grace that cannot be pushed: nothing is sent. */
    p = sh("exec sleep 100", NULL);
    int levels = fill_deadline_levels();
    ASSERT_EQ(weft_process_stop(p, SIGTERM, 0, &ws), -EOVERFLOW);
    pop_deadline_levels(levels);
    ASSERT_OK(weft_sleep_ns(20 * 1000000ull)); /* time for a SIGTERM to end it */
    ASSERT_EQ(weft_process_try_wait(p, NULL), -EAGAIN);
    weft_process_destroy(p);
    return NULL;
}

TEST(stop_signals_waits_then_kills)
{
    run_main(NULL, main_stop, NULL);
    weft_process *p = sh("exit 0", NULL);
    ASSERT_EQ(weft_process_stop(p, SIGTERM, 0, NULL), -EPERM);
    ASSERT_OK(weft_process_wait(p, NULL));
    weft_process_destroy(p);
}

/* ---- options ------------------------------------------------------------ */

static void *main_options(void *arg)
{
    const char *dir = arg;
    char path[256];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    char *env[] = {"WEFT_TEST_VAR=from-envp", NULL};
    weft_process_opts o = {.stdio = {WEFT_STDIO_NULL, WEFT_STDIO_FD, WEFT_STDIO_PIPE},
                           .fd = {0, fd, 0},
                           .envp = env,
                           .cwd = dir};
    weft_process *p =
        sh("cat; echo \"$WEFT_TEST_VAR\"; pwd; echo to-err >&2; test -z \"$HOME\"", &o);
    close(fd);
    weft_output out;
    int ws = -1;
    ASSERT_OK(weft_process_output(p, &out, &ws));
    ASSERT_EQ(ws, 0); /* only envp's variable: no HOME */
    ASSERT(out.out == NULL);
    ASSERT_STREQ(out.err, "to-err\n");
    weft_output_free(&out);
    weft_process_destroy(p);
    char want[300], got[300] = {0};
    snprintf(want, sizeof want, "from-envp\n%s\n", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_GT(read(fd, got, sizeof got - 1), 0);
    close(fd);
    ASSERT_STREQ(got, want);
    unlink(path);
    return NULL;
}

TEST(stdio_fd_null_envp_and_cwd)
{
    char dir[] = "/tmp/weft-process-XXXXXX";
    ASSERT(mkdtemp(dir));
    run_main(NULL, main_options, dir);
    rmdir(dir);
}

/* The child starts with no signal blocked and SIGPIPE at its default,
 * whatever the spawning thread had. */
static void *main_signals(void *arg)
{
    (void)arg;
    /* Not through sh: dash clears its signal mask at start. */
    char *argv[] = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL};
    weft_process_opts o = PIPES_OUT;
    o.search_path = true;
    weft_process *p;
    ASSERT_OK(weft_process_spawn(&p, "grep", argv, &o));
    weft_output out;
    ASSERT_OK(weft_process_output(p, &out, NULL));
    unsigned long long blk = ~0ull, ign = ~0ull;
    const char *b = strstr(out.out, "SigBlk:"), *i = strstr(out.out, "SigIgn:");
    ASSERT(b && i);
    ASSERT_EQ(sscanf(b, "SigBlk: %llx", &blk), 1);
    ASSERT_EQ(sscanf(i, "SigIgn: %llx", &ign), 1);
    ASSERT_EQ(blk, 0);
    ASSERT_EQ(ign & (1ull << (SIGPIPE - 1)), 0);
    weft_output_free(&out);
    weft_process_destroy(p);
    return NULL;
}

TEST(the_child_gets_no_blocked_signal_and_default_sigpipe)
{
    signal(SIGPIPE, SIG_IGN);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    ASSERT_OK(pthread_sigmask(SIG_BLOCK, &s, NULL));
    run_main(NULL, main_signals, NULL);
}

/* ---- plain threads, misuse, failures ------------------------------------ */

TEST(a_plain_thread_waits_by_blocking)
{
    weft_process *p = sh("exit 9", NULL);
    int ws = -1;
    ASSERT_OK(weft_process_wait(p, &ws));
    ASSERT_EQ(WEXITSTATUS(ws), 9);
    weft_output o;
    ASSERT_EQ(weft_process_output(p, &o, NULL), -EPERM);
    weft_process_destroy(p);
    /* destroy outside a task kills and reaps. */
    p = sh("exec sleep 100", NULL);
    int pid = weft_process_pid(p);
    weft_process_destroy(p);
    errno = 0;
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
}

TEST(a_child_reaped_elsewhere_is_echild)
{
    weft_process *p = sh("exit 1", NULL);
    ASSERT_EQ(waitpid(weft_process_pid(p), NULL, 0), weft_process_pid(p));
    ASSERT_EQ(weft_process_wait(p, NULL), -ECHILD);
    ASSERT_EQ(weft_process_try_wait(p, NULL), -ECHILD);
    weft_process_destroy(p);
}

TEST(bad_input)
{
    int fds = count_fds();
    weft_process *p = (weft_process *)1;
    char *argv[] = {"x", NULL}, *none[] = {NULL};
    ASSERT_EQ(weft_process_spawn(NULL, SH, argv, NULL), -EINVAL);
    ASSERT_EQ(weft_process_spawn(&p, NULL, argv, NULL), -EINVAL);
    ASSERT(p == NULL);
    ASSERT_EQ(weft_process_spawn(&p, SH, NULL, NULL), -EINVAL);
    ASSERT_EQ(weft_process_spawn(&p, SH, none, NULL), -EINVAL);
    weft_process_opts o = {.stdio = {WEFT_STDIO_FD + 1}};
    ASSERT_EQ(weft_process_spawn(&p, SH, argv, &o), -EINVAL);
    o = (weft_process_opts){.stdio = {WEFT_STDIO_FD}, .fd = {-1}};
    ASSERT_EQ(weft_process_spawn(&p, SH, argv, &o), -EBADF);
    /* stderr to "descriptor 1" when stdout is a pipe: ambiguous. */
    o = (weft_process_opts){.stdio = {0, WEFT_STDIO_PIPE, WEFT_STDIO_FD}, .fd = {0, 0, 1}};
    ASSERT_EQ(weft_process_spawn(&p, SH, argv, &o), -EINVAL);
    /* stdout duplicated onto itself replaces nothing. */
    o.stdio[1] = WEFT_STDIO_FD;
    o.fd[1] = 1;
    char *q[] = {"sh", "-c", "true", NULL};
    ASSERT_OK(weft_process_spawn(&p, SH, q, &o));
    ASSERT_OK(weft_process_wait(p, NULL));
    weft_process_destroy(p);
    /* The program's own stdout is fine when stdout is inherited. */
    o.stdio[1] = WEFT_STDIO_INHERIT;
    char *t[] = {"sh", "-c", "true", NULL};
    ASSERT_OK(weft_process_spawn(&p, SH, t, &o));
    ASSERT_OK(weft_process_wait(p, NULL));
    weft_process_destroy(p);
    /* Programs that cannot run: the exec's error, nothing left behind. */
    ASSERT_EQ(weft_process_spawn(&p, "/nonexistent/weft", argv, &PIPES_OUT), -ENOENT);
    ASSERT_EQ(weft_process_spawn(&p, "/dev/null", argv, &PIPES_OUT), -EACCES);
    char *sh_argv[] = {"sh", "-c", "true", NULL};
    ASSERT_EQ(weft_process_spawn(&p, "sh", sh_argv, NULL), -ENOENT); /* no PATH search */
    o = (weft_process_opts){.search_path = true};
    ASSERT_OK(weft_process_spawn(&p, "sh", sh_argv, &o));
    ASSERT_OK(weft_process_wait(p, NULL));
    weft_process_destroy(p);
    o = (weft_process_opts){.cwd = "/nonexistent/weft"};
    ASSERT_EQ(weft_process_spawn(&p, SH, sh_argv, &o), -ENOENT);
    ASSERT_EQ(count_fds(), fds);
    assert_no_children();
    /* NULL handles. */
    ASSERT_EQ(weft_process_wait(NULL, NULL), -EINVAL);
    ASSERT_EQ(weft_process_try_wait(NULL, NULL), -EINVAL);
    ASSERT_EQ(weft_process_kill(NULL, 0), -EINVAL);
    ASSERT_EQ(weft_process_kill_group(NULL, 0), -EINVAL);
    ASSERT_EQ(weft_process_pid(NULL), -EINVAL);
    ASSERT_EQ(weft_process_fd(NULL, 0), -EINVAL);
    ASSERT_EQ(weft_process_close_fd(NULL, 0), -EINVAL);
    ASSERT_EQ(weft_process_output(NULL, NULL, NULL), -EINVAL);
    weft_process_destroy(NULL);
    weft_output_free(NULL);
}

/* Each allocation of a spawn and of an output fails in turn: the error
 * comes back and nothing (descriptor, memory, child) is left behind. */
static void *main_alloc_sweep(void *arg)
{
    (void)arg;
    int fds = count_fds();
    for (uint64_t n = 1;; n++) {
        weft_process *p = NULL;
        char *argv[] = {"sh", "-c", "head -c 20000 /dev/zero; echo e >&2", NULL};
        weft__fault_arm(WEFT_FAULT_ALLOC, n);
        int r = weft_process_spawn(&p, SH, argv, &PIPES_OUT);
        weft_output o;
        int ro = r ? r : weft_process_output(p, &o, NULL);
        bool hit = weft__fault_count(WEFT_FAULT_ALLOC) >= n;
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
        if (!r) {
            if (ro == 0) {
                ASSERT_EQ(o.out_len, 20000);
                ASSERT_STREQ(o.err, "e\n");
            } else {
                ASSERT_EQ(ro, -ENOMEM);
                ASSERT(hit);
            }
            weft_output_free(&o);
            weft_process_destroy(p);
        } else {
            ASSERT_EQ(r, -ENOMEM);
            ASSERT(p == NULL);
        }
        check_sweep_point(n, fds);
        assert_no_children();
        if (!hit)
            break;
    }
    return NULL;
}

TEST(allocation_failures_leave_nothing_behind)
{
    run_main(NULL, main_alloc_sweep, NULL);
}

/* Out of descriptors for the second pipe: the first is closed again; for
 * the pidfd: the child is held by its pid. */
TEST(pipe_failure_leaves_nothing_behind)
{
    int fds = count_fds();
    struct rlimit old, rl;
    ASSERT_OK(getrlimit(RLIMIT_NOFILE, &old));
    /* A pipe takes the two lowest free numbers: with the limit just past
     * the higher of them, one pipe fits and the next does not. */
    int probe[2];
    ASSERT_OK(pipe2(probe, O_CLOEXEC));
    close(probe[0]);
    close(probe[1]);
    rl = old;
    rl.rlim_cur = (rlim_t)(probe[0] > probe[1] ? probe[0] : probe[1]) + 1;
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
    weft_process *p = NULL;
    char *argv[] = {"sh", "-c", "true", NULL};
    int r = weft_process_spawn(&p, SH, argv, &PIPES_OUT);
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &old));
    ASSERT_EQ(r, -EMFILE);
    ASSERT(p == NULL);
    ASSERT_EQ(count_fds(), fds);
    assert_no_children();
    /* No descriptor free at all: the child starts (it needs none), the
     * pidfd cannot be had, and the child is held by its pid. */
    /* (Its stderr goes to /dev/null: the loader cannot open libc there.) */
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    ASSERT_GE(null, 0);
    ASSERT_OK(pipe2(probe, O_CLOEXEC));
    close(probe[0]);
    close(probe[1]);
    rl.rlim_cur = (rlim_t)(probe[0] < probe[1] ? probe[0] : probe[1]);
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
    char *slow[] = {"sh", "-c", "exec sleep 100", NULL};
    weft_process_opts quiet = {.stdio = {0, 0, WEFT_STDIO_FD}, .fd = {0, 0, null}};
    r = weft_process_spawn(&p, SH, slow, &quiet);
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &old));
    close(null);
    ASSERT_OK(r);
    ASSERT_EQ(count_fds(), fds);
    weft_process_destroy(p); /* kills and reaps it by its pid */
    assert_no_children();
}

TEST_MAIN(CASE(output_collects_both_streams_and_the_status), CASE(output_reads_both_pipes_at_once),
          CASE(output_limit_keeps_the_first_bytes_and_drops_the_rest),
          CASE(stdin_pipe_feeds_the_child), CASE(wait_returns_the_status_every_time),
          CASE(kill_ends_a_running_child),
          CASE(an_interrupted_wait_reaps_nothing_and_destroy_reaps),
          CASE(several_tasks_wait_together), CASE(waiters_on_several_threads_share_one_reap),
          CASE(a_grandchild_holding_the_pipe_and_kill_group),
          CASE(an_interrupted_output_keeps_what_it_read_and_reads_no_more),
          CASE(output_in_a_cancelled_shielded_task), CASE(a_program_without_standard_descriptors),
          CASE(a_feeder_takes_stdin_while_output_collects),
          CASE(destroy_reaps_when_no_sqe_can_be_had), CASE(without_a_pidfd_the_pid_serves),
          CASE(wait_delay_stops_reading_pipes_held_after_the_exit),
          CASE(output_again_after_an_interrupted_wait), CASE(stop_signals_waits_then_kills),
          CASE(stdio_fd_null_envp_and_cwd),
          CASE(the_child_gets_no_blocked_signal_and_default_sigpipe),
          CASE(a_plain_thread_waits_by_blocking), CASE(a_child_reaped_elsewhere_is_echild),
          CASE(bad_input), CASE(allocation_failures_leave_nothing_behind),
          CASE(pipe_failure_leaves_nothing_behind))
