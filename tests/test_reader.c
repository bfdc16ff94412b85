/* weft_reader: lines and frames over real sockets and pipes, split across
 * writes, at the buffer's limits, at the end of the stream, and under
 * cancellation and deadlines (nothing consumed, nothing lost). */
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "common/fault.h"
#include "test.h"

static void socket_pair(int sv[2])
{
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
}

static void put(int fd, const char *s)
{
    size_t n = strlen(s);
    ASSERT_EQ(write(fd, s, n), (ssize_t)n);
}

/* A line, as a string, for the checks. */
static const char *line_of(const char *p, ssize_t n)
{
    static char text[256];
    ASSERT(n >= 0 && (size_t)n < sizeof text);
    memcpy(text, p, (size_t)n);
    text[n] = 0;
    return text;
}

/* A writer task that sends its pieces one at a time, a yield apart, so
 * that lines come split across reads. */
typedef struct pieces {
    int fd;
    const char *const *parts;
    bool close_after;
} pieces;

static void *send_pieces(void *arg)
{
    pieces *p = arg;
    for (size_t i = 0; p->parts[i]; i++) {
        put(p->fd, p->parts[i]);
        ASSERT_OK(weft_sleep_ns(200000));
    }
    if (p->close_after)
        ASSERT_OK(shutdown(p->fd, SHUT_WR));
    return NULL;
}

static void *main_lines(void *arg)
{
    (void)arg;
    int sv[2];
    socket_pair(sv);
    static const char *const parts[] = {"HTTP/1.1 200 OK\r",    "\nContent-",
                                        "Length: 5\r\n\r\nhel", "lo",
                                        "tail without newline", NULL};
    pieces p = {.fd = sv[1], .parts = parts, .close_after = true};
    weft_task *w;
    ASSERT_OK(weft_spawn(&w, send_pieces, &p));
    weft_reader r;
    char buf[64];
    ASSERT_OK(weft_reader_init(&r, sv[0], buf, sizeof buf));
    const char *l;
    ssize_t n = weft_reader_until(&r, '\n', &l);
    ASSERT_STREQ(line_of(l, n), "HTTP/1.1 200 OK\r\n");
    n = weft_reader_until(&r, '\n', &l);
    ASSERT_STREQ(line_of(l, n), "Content-Length: 5\r\n");
    n = weft_reader_until(&r, '\n', &l);
    ASSERT_STREQ(line_of(l, n), "\r\n");
    char body[5];
    size_t done;
    ASSERT_OK(weft_reader_read_all(&r, body, sizeof body, &done));
    ASSERT_EQ(done, 5);
    ASSERT(memcmp(body, "hello", 5) == 0);
    /* The end of the stream: the last piece without its delim, then 0. */
    n = weft_reader_until(&r, '\n', &l);
    ASSERT_STREQ(line_of(l, n), "tail without newline");
    ASSERT_EQ(weft_reader_until(&r, '\n', &l), 0);
    ASSERT_EQ(weft_reader_until(&r, '\n', &l), 0);
    char c;
    ASSERT_EQ(weft_reader_read(&r, &c, 1), 0);
    ASSERT_EQ(weft_reader_read_all(&r, &c, 1, &done), -ENODATA);
    ASSERT_EQ(done, 0);
    ASSERT_OK(weft_join(w, NULL));
    close(sv[0]);
    close(sv[1]);
    return NULL;
}
TEST(lines_split_across_reads_and_the_end_of_the_stream)
{
    run_main(NULL, main_lines, NULL);
}

/* A record longer than the buffer: -EMSGSIZE, nothing consumed, and the
 * bytes can still be taken (fill, consume) so the stream goes on. Lines
 * that fill the buffer exactly, and ones that need the buffered bytes
 * moved to the front first, come whole. */
static void *main_limits(void *arg)
{
    (void)arg;
    int sv[2];
    socket_pair(sv);
    weft_reader r;
    ASSERT_OK(weft_reader_init(&r, sv[0], NULL, 8)); /* weft's own 8 bytes */
    put(sv[1], "1234567\nabcdefghij\nxy");
    const char *l;
    ssize_t n = weft_reader_until(&r, '\n', &l);
    ASSERT_STREQ(line_of(l, n), "1234567\n"); /* exactly the buffer */
    ASSERT_EQ(weft_reader_until(&r, '\n', &l), -EMSGSIZE);
    n = weft_reader_fill(&r, 8, &l);
    ASSERT_EQ(n, 8);
    ASSERT(memcmp(l, "abcdefgh", 8) == 0); /* nothing was consumed */
    ASSERT_OK(weft_reader_consume(&r, 8));
    n = weft_reader_until(&r, '\n', &l);
    ASSERT_STREQ(line_of(l, n), "ij\n");
    /* "xy" waits at the back of the buffer; the rest of its line takes
     * the room after it, then the front once they are moved there. */
    put(sv[1], "z1234\n");
    n = weft_reader_until(&r, '\n', &l);
    ASSERT_STREQ(line_of(l, n), "xyz1234\n");
    ASSERT_EQ(weft_reader_fill(&r, 9, &l), -EMSGSIZE);
    ASSERT_EQ(weft_reader_consume(&r, 1), -EINVAL); /* nothing buffered */
    weft_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
    return NULL;
}
TEST(records_at_the_buffers_limits)
{
    run_main(NULL, main_limits, NULL);
}

/* Frames: a 4-byte length header read with fill, then the body with
 * read_all, part from the buffer and the rest, which comes later in
 * pieces, straight into the caller's memory. A read of at least the
 * buffer's size goes straight in; a smaller one fills the buffer. The end
 * of the stream in the middle of a frame: -ENODATA with the exact count.
 * On a pipe. */
static char big[20000];

static void *send_rest_of_body(void *arg)
{
    int fd = (int)(intptr_t)arg;
    ASSERT_EQ(write(fd, big + 100, 9900), 9900);
    ASSERT_OK(weft_sleep_ns(1000000));
    ASSERT_EQ(write(fd, big + 10000, 10000), 10000);
    return NULL;
}

static void *main_frames(void *arg)
{
    (void)arg;
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    uint32_t len = sizeof big;
    ASSERT_EQ(write(p[1], &len, 4), 4);
    ASSERT_EQ(write(p[1], big, 100), 100);
    weft_reader r;
    char buf[64];
    ASSERT_OK(weft_reader_init(&r, p[0], buf, sizeof buf));
    const char *h;
    ASSERT_GE(weft_reader_fill(&r, 4, &h), 4);
    uint32_t got_len;
    memcpy(&got_len, h, 4);
    ASSERT_EQ(got_len, sizeof big);
    ASSERT_OK(weft_reader_consume(&r, 4));
    ASSERT_EQ(weft_reader_buffered(&r, NULL), 60); /* the rest of the 64 read */

    weft_task *w;
    ASSERT_OK(weft_spawn(&w, send_rest_of_body, (void *)(intptr_t)p[1]));
    static char body[sizeof big];
    size_t done;
    ASSERT_OK(weft_reader_read_all(&r, body, sizeof body, &done));
    ASSERT_EQ(done, sizeof big);
    ASSERT(memcmp(body, big, sizeof big) == 0);
    ASSERT_OK(weft_join(w, NULL));
    ASSERT_EQ(weft_reader_buffered(&r, NULL), 0);

    ASSERT_EQ(write(p[1], big, 200), 200);
    ASSERT_EQ(weft_reader_read(&r, body, 100), 100); /* straight in */
    ASSERT(memcmp(body, big, 100) == 0);
    ASSERT_EQ(weft_reader_buffered(&r, NULL), 0);
    char two[2];
    ASSERT_EQ(weft_reader_read(&r, two, 2), 2); /* through the buffer */
    const char *left;
    ASSERT_EQ(weft_reader_buffered(&r, &left), 62);
    ASSERT(memcmp(left, big + 102, 62) == 0);

    close(p[1]);
    static char more[1000];
    ASSERT_EQ(weft_reader_read_all(&r, more, sizeof more, &done), -ENODATA);
    ASSERT_EQ(done, 98); /* 62 buffered and 36 still in the pipe */
    ASSERT(memcmp(more, big + 102, 98) == 0);
    close(p[0]);
    return NULL;
}
TEST(frames_by_header_and_body)
{
    run_main(NULL, main_frames, NULL);
}

/* Interrupted with part of a line in: a deadline, then a cancel, end the
 * wait with nothing consumed, and the line comes whole once its end does.
 * A task already cancelled gets -ECANCELED before anything, even with a
 * line buffered; outside a task, -EPERM. */
static void *wait_for_a_line(void *arg)
{
    weft_reader *r = arg;
    const char *l;
    return (void *)(intptr_t)weft_reader_until(r, '\n', &l);
}

static void *main_interrupted(void *arg)
{
    (void)arg;
    int sv[2];
    socket_pair(sv);
    weft_reader r;
    char buf[64];
    ASSERT_OK(weft_reader_init(&r, sv[0], buf, sizeof buf));
    put(sv[1], "half a ");
    const char *l;
    ASSERT_OK(weft_deadline_push_in(5000000));
    ASSERT_EQ(weft_reader_until(&r, '\n', &l), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ(weft_reader_buffered(&r, NULL), 7); /* kept */

    weft_task *t;
    ASSERT_OK(weft_spawn(&t, wait_for_a_line, &r));
    ASSERT_OK(weft_sleep_ns(2000000));
    put(sv[1], "line");
    ASSERT_OK(weft_sleep_ns(2000000));
    ASSERT_OK(weft_cancel(t));
    void *res;
    ASSERT_EQ(weft_join(t, &res), -ECANCELED);
    put(sv[1], "\nnext\n");
    ssize_t n = weft_reader_until(&r, '\n', &l);
    ASSERT_STREQ(line_of(l, n), "half a line\n");

    ASSERT_OK(weft_spawn(&t, wait_for_a_line, &r));
    ASSERT_OK(weft_cancel(t)); /* before it runs: "next\n" is buffered */
    ASSERT_EQ(weft_join(t, &res), -ECANCELED);
    n = weft_reader_until(&r, '\n', &l);
    ASSERT_STREQ(line_of(l, n), "next\n");
    close(sv[0]);
    close(sv[1]);
    return NULL;
}
TEST(an_interrupted_read_consumes_nothing)
{
    run_main(NULL, main_interrupted, NULL);
    weft_reader r;
    char buf[8];
    const char *l;
    ASSERT_OK(weft_reader_init(&r, 0, buf, sizeof buf));
    ASSERT_EQ(weft_reader_until(&r, '\n', &l), -EPERM);
    ASSERT_EQ(weft_reader_fill(&r, 1, &l), -EPERM);
    ASSERT_EQ(weft_reader_read(&r, buf, 1), -EPERM);
    size_t done = 7;
    ASSERT_EQ(weft_reader_read_all(&r, buf, 1, &done), -EPERM);
    ASSERT_EQ(done, 0);
}

/* Bad arguments, and an allocation that fails. */
TEST(bad_calls_are_refused)
{
    weft_reader r;
    char buf[8];
    const char *l;
    ASSERT_EQ(weft_reader_init(NULL, 0, buf, 8), -EINVAL);
    ASSERT_EQ(weft_reader_init(&r, 0, buf, 0), -EINVAL);
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    ASSERT_EQ(weft_reader_init(&r, 0, NULL, 8), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_OK(weft_reader_init(&r, 0, buf, sizeof buf));
    ASSERT_EQ(weft_reader_until(NULL, '\n', &l), -EINVAL);
    ASSERT_EQ(weft_reader_until(&r, '\n', NULL), -EINVAL);
    ASSERT_EQ(weft_reader_fill(&r, 1, NULL), -EINVAL);
    ASSERT_EQ(weft_reader_read(&r, NULL, 1), -EINVAL);
    size_t done;
    ASSERT_EQ(weft_reader_read_all(&r, NULL, 1, &done), -EINVAL);
    ASSERT_EQ(weft_reader_consume(NULL, 0), -EINVAL);
    ASSERT_EQ(weft_reader_buffered(NULL, &l), 0);
    ASSERT(l == NULL);
    weft_reader_free(&r);                                /* not weft's buffer: left alone */
    ASSERT_EQ(weft_reader_until(&r, '\n', &l), -EINVAL); /* freed */
    weft_reader_free(NULL);
}

/* Follow mode, on a file that grows (tail -f): the end is where the file
 * ends now. A line without its delim waits for the rest; reads, fills and
 * read_all see the end, and the next call reads what came since. Without
 * follow the end is for good. */
static void *main_follow(void *arg)
{
    (void)arg;
    char path[] = "/tmp/weft-follow-XXXXXX";
    int w = mkstemp(path);
    ASSERT_GE(w, 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_OK(unlink(path));
    weft_reader r;
    ASSERT_OK(weft_reader_init(&r, fd, NULL, 64));
    ASSERT_OK(weft_reader_follow(&r, true));
    const char *line;
    put(w, "a\nb");
    ASSERT_EQ(weft_reader_until(&r, '\n', &line), 2);
    ASSERT_STREQ(line_of(line, 2), "a\n");
    ASSERT_EQ(weft_reader_until(&r, '\n', &line), 0); /* "b" waits for its end */
    ASSERT_EQ(weft_reader_buffered(&r, NULL), 1);
    ASSERT_EQ(weft_reader_until(&r, '\n', &line), 0); /* still nothing new */
    put(w, "c\nd\n");
    ASSERT_EQ(weft_reader_until(&r, '\n', &line), 3);
    ASSERT_STREQ(line_of(line, 3), "bc\n");
    ASSERT_EQ(weft_reader_until(&r, '\n', &line), 2);
    ASSERT_STREQ(line_of(line, 2), "d\n");
    ASSERT_EQ(weft_reader_until(&r, '\n', &line), 0);

    /* A fill short of min at the end, then more. */
    ASSERT_EQ(weft_reader_fill(&r, 4, &line), 0);
    put(w, "xy");
    ASSERT_EQ(weft_reader_fill(&r, 4, &line), 2);
    put(w, "zw");
    ASSERT_EQ(weft_reader_fill(&r, 4, &line), 4);
    ASSERT_OK(weft_reader_consume(&r, 4));

    /* Plain reads: 0 at the end, then what came. */
    char b[8];
    ASSERT_EQ(weft_reader_read(&r, b, sizeof b), 0);
    put(w, "12");
    ASSERT_EQ(weft_reader_read(&r, b, sizeof b), 2);
    ASSERT(memcmp(b, "12", 2) == 0);
    size_t done = 0;
    put(w, "345");
    ASSERT_EQ(weft_reader_read_all(&r, b, 5, &done), -ENODATA);
    ASSERT_EQ(done, 3);
    put(w, "67");
    ASSERT_OK(weft_reader_read_all(&r, b, 2, &done));
    ASSERT(memcmp(b, "67", 2) == 0);

    /* Without follow the end is for good: what comes after is not read. */
    ASSERT_OK(weft_reader_follow(&r, false));
    put(w, "e");
    ASSERT_EQ(weft_reader_until(&r, '\n', &line), 1); /* a last piece */
    put(w, "f\n");
    ASSERT_EQ(weft_reader_until(&r, '\n', &line), 0);
    ASSERT_EQ(weft_reader_read(&r, b, sizeof b), 0);
    /* Turned on again, it reads on from there. */
    ASSERT_OK(weft_reader_follow(&r, true));
    ASSERT_EQ(weft_reader_until(&r, '\n', &line), 2);
    ASSERT_STREQ(line_of(line, 2), "f\n");
    ASSERT_EQ(weft_reader_follow(NULL, true), -EINVAL);
    weft_reader_free(&r);
    close(fd);
    close(w);
    return NULL;
}
TEST(a_following_reader_reads_a_file_as_it_grows)
{
    run_main(NULL, main_follow, NULL);
}

TEST_MAIN(CASE(lines_split_across_reads_and_the_end_of_the_stream),
          CASE(records_at_the_buffers_limits), CASE(frames_by_header_and_body),
          CASE(an_interrupted_read_consumes_nothing), CASE(bad_calls_are_refused),
          CASE(a_following_reader_reads_a_file_as_it_grows))
