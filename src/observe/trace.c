/* Task-run tracing; see trace.h. The file is the trace-event format's JSON
 * object form: {"traceEvents":[ ... ]}, with metadata events naming the
 * process and each worker's track, then one complete ("X") event per run.
 * Times are microseconds since the trace was opened, to the nanosecond. */
#include "observe/trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/utf8.h"

#define TRACE_BUF_BYTES (64 * 1024)
/* Room one event needs at most: escaped names are bounded below. */
#define TRACE_EVENT_MAX      1024
#define TRACE_QUEUE_NAME_MAX 200

typedef char trace_queue_name[TRACE_QUEUE_NAME_MAX];

struct weft__trace {
    pthread_mutex_t lock; /* over file and error */
    FILE *file;
    int error;         /* the first failed write's errno; later writes are skipped */
    bool tail_written; /* the JSON is ended: nothing more is appended */
    uint64_t t0_ns;
    int pid;
    /* Each queue's name as the inside of a JSON string, escaped once here
     * rather than at every slice; in the same block, after path. */
    trace_queue_name *queues;
    char path[];
};

/* Writes s into out (cap bytes) as the inside of a JSON string (see
 * common/utf8.h), cut short before a whole character rather than
 * overflowing. */
static void escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    while (*s) {
        char tmp[6];
        size_t used, k = weft__json_escape_step(s, tmp, &used);
        if (n + k + 1 > cap)
            break;
        memcpy(out + n, tmp, k);
        n += k;
        s += used;
    }
    out[n] = 0;
}

int weft__trace_open(weft__runtime *rt, const char *path)
{
    size_t len = strlen(path);
    /* The escaped queue names go after the path, 16-byte aligned. */
    size_t names_at = (sizeof(struct weft__trace) + len + 1 + 15) & ~(size_t)15;
    struct weft__trace *tr = weft__malloc(names_at + rt->cfg.nqueues * sizeof(trace_queue_name));
    if (!tr)
        return -ENOMEM;
    memcpy(tr->path, path, len + 1);
    tr->queues = (trace_queue_name *)((char *)tr + names_at);
    for (size_t i = 0; i < rt->cfg.nqueues; i++)
        escape(tr->queues[i], sizeof tr->queues[i], rt->cfg.queues[i].name);
    tr->file = weft__fault_hit(WEFT_FAULT_ALLOC) ? (errno = ENOMEM, NULL) : fopen(path, "we");
    if (!tr->file) {
        int e = errno;
        free(tr);
        return -e;
    }
    pthread_mutex_init(&tr->lock, NULL);
    tr->error = 0;
    tr->tail_written = false;
    tr->t0_ns = weft_now_ns();
    tr->pid = (int)getpid();
    fprintf(tr->file,
            "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n"
            "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
            "\"args\":{\"name\":\"weft\"}}",
            tr->pid);
    rt->trace = tr;
    return 0;
}

/* Ends the JSON, once (after the first failed write, never): under the
 * lock, or once no worker writes any more. */
static void end_file(struct weft__trace *tr)
{
    if (tr->error || tr->tail_written)
        return;
    errno = 0;
    if (fputs("\n]}\n", tr->file) == EOF)
        tr->error = errno ? errno : EIO;
    tr->tail_written = true;
}

void weft__trace_close(weft__runtime *rt)
{
    struct weft__trace *tr = rt->trace;
    if (!tr)
        return;
    rt->trace = NULL;
    end_file(tr);
    int e = tr->error;
    errno = 0;
    if (fclose(tr->file) != 0 && !e)
        e = errno ? errno : EIO;
    if (e)
        fprintf(stderr, "weft: trace: writing %s failed (%s); the trace is incomplete\n", tr->path,
                strerror(e));
    pthread_mutex_destroy(&tr->lock);
    free(tr);
}

static void flush(weft__worker *w)
{
    struct weft__trace *tr = w->rt->trace;
    weft__trace_buf *b = w->trace;
    if (!b->len)
        return;
    pthread_mutex_lock(&tr->lock);
    if (!tr->error && !tr->tail_written) {
        errno = 0;
        if (fwrite(b->text, 1, b->len, tr->file) != b->len)
            tr->error = errno ? errno : EIO;
    }
    pthread_mutex_unlock(&tr->lock);
    b->len = 0;
}

/* One slice: t's run on w from the run's start until now. */
static void emit(weft__worker *w, const weft_task *t, const char *how)
{
    struct weft__trace *tr = w->rt->trace;
    weft__trace_buf *b = w->trace;
    uint64_t end = weft_now_ns();
    uint64_t start = b->run_start_ns < tr->t0_ns ? tr->t0_ns : b->run_start_ns;
    if (end < start)
        end = start;
    uint64_t ts = start - tr->t0_ns, dur = end - start;

    char name[TASK_NAME_MAX * 6 + 1];
    if (t->name)
        escape(name, sizeof name, t->name);
    else
        snprintf(name, sizeof name, "task %llu", (unsigned long long)t->entity.task_id);
    const char *queue = tr->queues[t->queue];

    if (b->len + TRACE_EVENT_MAX > TRACE_BUF_BYTES)
        flush(w);
    int n = snprintf(b->text + b->len, TRACE_BUF_BYTES - b->len,
                     ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%u,"
                     "\"ts\":%llu.%03llu,\"dur\":%llu.%03llu,"
                     "\"args\":{\"task\":%llu,\"end\":\"%s\"}}",
                     name, queue, tr->pid, w->index, (unsigned long long)(ts / 1000),
                     (unsigned long long)(ts % 1000), (unsigned long long)(dur / 1000),
                     (unsigned long long)(dur % 1000), (unsigned long long)t->entity.task_id, how);
    if (n > 0 && (size_t)n < TRACE_BUF_BYTES - b->len)
        b->len += (size_t)n;
}

void weft__trace_abort(weft__worker *w)
{
    struct weft__trace *tr = w && w->trace ? w->rt->trace : NULL;
    if (!tr)
        return;
    if (w->current) /* the run that is ending with the process */
        emit(w, w->current, "abort");
    flush(w);
    pthread_mutex_lock(&tr->lock);
    end_file(tr);
    fflush(tr->file);
    pthread_mutex_unlock(&tr->lock);
}

int weft__trace_worker_init(weft__worker *w)
{
    struct weft__trace *tr = w->rt->trace;
    if (!tr)
        return 0;
    weft__trace_buf *b = weft__malloc(sizeof *b + TRACE_BUF_BYTES);
    if (!b)
        return -ENOMEM;
    b->run_start_ns = 0;
    b->len = (size_t)snprintf(b->text, TRACE_BUF_BYTES,
                              ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,"
                              "\"args\":{\"name\":\"weft-%u\"}}"
                              ",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%d,"
                              "\"tid\":%u,\"args\":{\"sort_index\":%u}}",
                              tr->pid, w->index, w->index, tr->pid, w->index, w->index);
    w->trace = b;
    return 0;
}

void weft__trace_worker_fini(weft__worker *w)
{
    if (!w->trace)
        return;
    flush(w);
    free(w->trace);
    w->trace = NULL;
}

void weft__trace_run_end(weft__worker *w, const weft_task *t, weft__switch_reason why)
{
    static const char *const ends[] = {
        [SWITCH_YIELD] = "yield",
        [SWITCH_PARK] = "park",
        [SWITCH_EXIT] = "exit",
    };
    emit(w, t, ends[why]);
}
