/* Buffered reading: lines, delimited records and frames over weft_read.
 *
 * The buffer holds buf[start..end), what came in and was not taken. A read
 * goes into the room after end, the buffered bytes moved down to the front
 * first when that room is gone. Every call that may read checks the task
 * first (-EPERM outside one, then a cancel or a passed deadline), as every
 * blocking call does; an interrupted read moved nothing (or returned what
 * it moved, which is kept), so nothing is consumed or lost by an
 * interruption.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <weft/io.h>

#include "common/fault.h"
#include "task/task.h"

int weft_reader_init(weft_reader *r, int fd, void *buf, size_t cap)
{
    if (!r || cap == 0)
        return -EINVAL;
    bool owned = buf == NULL;
    if (owned && !(buf = weft__malloc(cap)))
        return -ENOMEM;
    *r = (weft_reader){.fd = fd, .buf = buf, .cap = cap, .owned = owned};
    return 0;
}

int weft_reader_follow(weft_reader *r, bool on)
{
    if (!r)
        return -EINVAL;
    r->follow = on;
    r->eof = false; /* an end seen before is no end now */
    return 0;
}

/* The end of the stream met by a call: for good, or in follow mode only
 * for that call. */
static void forget_end_if_following(weft_reader *r)
{
    if (r->follow)
        r->eof = false;
}

void weft_reader_free(weft_reader *r)
{
    if (!r)
        return;
    if (r->owned)
        free(r->buf);
    r->buf = NULL;
    r->owned = false;
    r->start = r->end = r->cap = 0;
}

static size_t buffered(const weft_reader *r)
{
    return r->end - r->start;
}

static void consume(weft_reader *r, size_t n)
{
    r->start += n;
    if (r->start == r->end)
        r->start = r->end = 0; /* the next read gets the whole buffer */
}

/* One read into the room after what is buffered: 0 (bytes came, or the
 * end of the stream, which sets eof), or the read's error. Only called
 * with room to be had (buffered < cap). */
static int read_more(weft_reader *r)
{
    if (r->end == r->cap) {
        memmove(r->buf, r->buf + r->start, buffered(r));
        r->end -= r->start;
        r->start = 0;
    }
    ssize_t n = weft_read(r->fd, r->buf + r->end, r->cap - r->end, WEFT_OFF_CURRENT);
    if (n < 0)
        return (int)n;
    if (n == 0)
        r->eof = true;
    r->end += (size_t)n;
    return 0;
}

ssize_t weft_reader_until(weft_reader *r, int delim, const char **out)
{
    if (!r || !out || !r->buf)
        return -EINVAL;
    int e = weft__task_enter(NULL);
    if (e)
        return e;
    size_t scanned = 0; /* of the buffered bytes, those known to hold no delim */
    for (;;) {
        char *from = r->buf + r->start;
        char *hit = memchr(from + scanned, delim, buffered(r) - scanned);
        size_t n = hit ? (size_t)(hit - from) + 1 : 0;
        if (!hit && r->eof && r->follow) {
            r->eof = false; /* the rest of the line may come yet: it stays */
            return 0;
        }
        if (!hit && r->eof)
            n = buffered(r); /* the last piece, without its delim; 0 at the end */
        if (hit || r->eof) {
            *out = from;
            consume(r, n);
            return (ssize_t)n;
        }
        scanned = buffered(r);
        if (scanned == r->cap)
            return -EMSGSIZE;
        e = read_more(r);
        if (e)
            return e;
    }
}

ssize_t weft_reader_fill(weft_reader *r, size_t min, const char **out)
{
    if (!r || !out || !r->buf)
        return -EINVAL;
    if (min > r->cap)
        return -EMSGSIZE;
    int e = weft__task_enter(NULL);
    if (e)
        return e;
    while (buffered(r) < min && !r->eof) {
        e = read_more(r);
        if (e)
            return e;
    }
    forget_end_if_following(r);
    *out = r->buf + r->start;
    return (ssize_t)buffered(r);
}

int weft_reader_consume(weft_reader *r, size_t n)
{
    if (!r || n > buffered(r))
        return -EINVAL;
    consume(r, n);
    return 0;
}

ssize_t weft_reader_read(weft_reader *r, void *dst, size_t n)
{
    if (!r || (!dst && n) || !r->buf)
        return -EINVAL;
    int e = weft__task_enter(NULL);
    if (e)
        return e;
    if (n == 0)
        return 0;
    if (!buffered(r) && !r->eof) {
        if (n >= r->cap) { /* no use copying twice */
            ssize_t got = weft_read(r->fd, dst, n, WEFT_OFF_CURRENT);
            if (got == 0 && !r->follow)
                r->eof = true;
            return got;
        }
        e = read_more(r);
        if (e)
            return e;
        forget_end_if_following(r);
    }
    size_t take = buffered(r) < n ? buffered(r) : n;
    memcpy(dst, r->buf + r->start, take);
    consume(r, take);
    return (ssize_t)take;
}

int weft_reader_read_all(weft_reader *r, void *dst, size_t n, size_t *done)
{
    if (done)
        *done = 0;
    if (!r || (!dst && n) || !r->buf)
        return -EINVAL;
    int e = weft__task_enter(NULL);
    if (e)
        return e;
    size_t take = buffered(r) < n ? buffered(r) : n;
    if (take) {
        memcpy(dst, r->buf + r->start, take);
        consume(r, take);
    }
    if (done)
        *done = take;
    if (take == n)
        return 0;
    if (r->eof)
        return -ENODATA;
    size_t more = 0;
    e = weft_read_all(r->fd, (char *)dst + take, n - take, WEFT_OFF_CURRENT, &more);
    if (e == -ENODATA && !r->follow)
        r->eof = true;
    if (done)
        *done = take + more;
    return e;
}

size_t weft_reader_buffered(const weft_reader *r, const char **out)
{
    if (!r || !r->buf) {
        if (out)
            *out = NULL;
        return 0;
    }
    if (out)
        *out = r->buf + r->start;
    return buffered(r);
}
