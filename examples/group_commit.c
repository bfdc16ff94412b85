/* weft_group_commit: a write-ahead log with group commit.
 *
 *     weft_group_commit [FILE [COMMITTERS [RECORDS_EACH]]]
 *
 * COMMITTERS tasks (default 64) each commit RECORDS_EACH records (default
 * 200): a commit appends a record to the log's pending batch and returns
 * once that record is durable. One writer task makes batches durable: it
 * takes the whole pending batch, writes it with weft_write_all and makes it
 * durable with one fdatasync (weft_fsync with WEFT_FSYNC_DATASYNC), then
 * raises a weft_watermark to the batch's last sequence number, which wakes
 * exactly the commits it covers. Many commits share each fsync: the program
 * prints how many. At the end it reads the file back and checks that every
 * record is there once, in sequence order.
 *
 * FILE defaults to a new file in $TMPDIR (or /tmp), removed at the end; a
 * FILE given is truncated first. (A real log made new would also fsync its
 * directory once, so that the file itself survives a crash.)
 * Shows: weft_watermark (advance, and fail when a write or fsync fails),
 * weft_write_all, weft_read_all, weft_mutex and weft_event between tasks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft.h>

typedef struct record {
    uint64_t seq;
    uint32_t committer;
    uint32_t index;
    char payload[48];
} record;

typedef struct wal {
    int fd;
    weft_mutex lock; /* over pending, npending, cap, next_seq, closing */
    record *pending; /* appended, not yet taken by the writer */
    size_t npending, cap;
    uint64_t next_seq;      /* the last sequence number handed out */
    bool closing;           /* no more commits: the writer drains and ends */
    weft_event work;        /* the writer has something to do */
    weft_watermark durable; /* the last sequence number on disk */
    uint64_t off;           /* where the next batch goes (the writer's) */
    uint64_t syncs;         /* fdatasyncs done (the writer's) */
} wal_t;

/* Appends one record and waits until it is durable: 0, or the error of the
 * write or fsync that was to carry it, or -ESHUTDOWN once the writer has
 * stopped. -ECANCELED / -ETIMEDOUT (this task interrupted while it waits)
 * say nothing about the record: it may still become durable. */
static int commit(wal_t *wal, uint32_t committer, uint32_t index)
{
    int r = weft_mutex_lock(&wal->lock);
    if (r < 0)
        return r;
    if (wal->closing) { /* no writer will take it */
        weft_mutex_unlock(&wal->lock);
        return -ESHUTDOWN;
    }
    if (wal->npending == wal->cap) {
        size_t cap = wal->cap ? 2 * wal->cap : 64;
        record *grown = realloc(wal->pending, cap * sizeof *grown);
        if (!grown) {
            weft_mutex_unlock(&wal->lock);
            return -ENOMEM;
        }
        wal->pending = grown;
        wal->cap = cap;
    }
    uint64_t seq = ++wal->next_seq;
    record *rec = &wal->pending[wal->npending++];
    *rec = (record){.seq = seq, .committer = committer, .index = index};
    snprintf(rec->payload, sizeof rec->payload, "committer %u record %u", committer, index);
    weft_mutex_unlock(&wal->lock);
    weft_event_notify_one(&wal->work);
    return weft_watermark_wait(&wal->durable, seq);
}

/* Takes the pending batch into *batch (of capacity *cap), leaving the
 * buffer that was there for the next appends; returns its record count,
 * 0 when nothing is pending. *closing: no more commits will come. */
static size_t take_batch(wal_t *wal, record **batch, size_t *cap, bool *closing)
{
    *closing = true; /* a writer that cannot lock (cancelled) ends */
    if (weft_mutex_lock(&wal->lock) < 0)
        return 0;
    size_t n = wal->npending;
    record *taken = wal->pending;
    size_t taken_cap = wal->cap;
    wal->pending = *batch;
    wal->cap = *cap;
    wal->npending = 0;
    *closing = wal->closing;
    weft_mutex_unlock(&wal->lock);
    *batch = taken;
    *cap = taken_cap;
    return n;
}

static void *writer(void *arg)
{
    wal_t *wal = arg;
    record *batch = NULL;
    size_t cap = 0;
    for (;;) {
        bool closing;
        size_t n = take_batch(wal, &batch, &cap, &closing);
        if (n == 0) {
            if (closing)
                break;
            if (weft_event_wait(&wal->work) < 0)
                break;
            continue;
        }
        size_t bytes = n * sizeof *batch;
        int r = weft_write_all(wal->fd, batch, bytes, wal->off, NULL);
        if (r == 0)
            r = weft_fsync(wal->fd, WEFT_FSYNC_DATASYNC);
        if (r < 0) {
            fprintf(stderr, "weft_group_commit: log write: %s\n", weft_strerror(r));
            weft_watermark_fail(&wal->durable, r); /* every waiting commit gets r */
            break;
        }
        wal->off += bytes;
        wal->syncs++;
        weft_watermark_advance(&wal->durable, batch[n - 1].seq);
    }
    /* However the writer ends (drained, failed, cancelled), no commit may
     * wait for it: those not yet durable get -ESHUTDOWN (a real write
     * error, published first, is the one they keep getting). */
    weft_watermark_fail(&wal->durable, -ESHUTDOWN);
    free(batch);
    return NULL;
}

typedef struct committer_arg {
    wal_t *wal;
    uint32_t id, records;
    int failed;
} committer_arg;

static void *committer(void *arg)
{
    committer_arg *c = arg;
    for (uint32_t i = 0; i < c->records; i++) {
        int r = commit(c->wal, c->id, i);
        if (r < 0) {
            c->failed = r;
            break;
        }
    }
    return NULL;
}

/* Reads the log back: every sequence number from 1 to total, once, in
 * order, and each committer's records in its own order. */
static int verify(wal_t *wal, uint64_t total, uint32_t committers)
{
    uint32_t *next_index = calloc(committers, sizeof *next_index);
    if (!next_index)
        return -ENOMEM;
    record rec;
    int r = 0;
    for (uint64_t seq = 1; seq <= total && r == 0; seq++) {
        r = weft_read_all(wal->fd, &rec, sizeof rec, (seq - 1) * sizeof rec, NULL);
        if (r == 0 && (rec.seq != seq || rec.committer >= committers ||
                       rec.index != next_index[rec.committer]++)) {
            fprintf(stderr, "weft_group_commit: record %llu is wrong\n", (unsigned long long)seq);
            r = -EBADMSG;
        }
    }
    /* Nothing after the last record. */
    if (r == 0 && weft_read_all(wal->fd, &rec, 1, total * sizeof rec, NULL) != -ENODATA)
        r = -EBADMSG;
    free(next_index);
    return r;
}

static void *run(void *arg)
{
    char **argv = arg;
    const char *path = argv[1];
    char tmp[4096];
    if (!path) {
        const char *dir = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/weft_group_commit.XXXXXX", dir && *dir ? dir : "/tmp");
        int fd = mkstemp(tmp);
        if (fd < 0) {
            perror("weft_group_commit: mkstemp");
            return (void *)1;
        }
        close(fd);
        path = tmp;
    }
    uint32_t ncommitters = argv[1] && argv[2] ? (uint32_t)strtoul(argv[2], NULL, 10) : 64;
    uint32_t each = argv[1] && argv[2] && argv[3] ? (uint32_t)strtoul(argv[3], NULL, 10) : 200;
    if (ncommitters == 0 || ncommitters > 100000 || each == 0 || each > 1000000) {
        fprintf(stderr, "weft_group_commit: COMMITTERS in 1..100000, RECORDS_EACH in 1..1000000\n");
        return (void *)2;
    }

    wal_t wal = {
        .lock = WEFT_MUTEX_INIT, .work = WEFT_EVENT_INIT, .durable = WEFT_WATERMARK_INIT(0)};
    wal.fd = weft_openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (wal.fd < 0) {
        fprintf(stderr, "weft_group_commit: %s: %s\n", path, weft_strerror(wal.fd));
        return (void *)1;
    }
    uint64_t start = weft_now_ns();
    weft_task *w = NULL;
    committer_arg *args = calloc(ncommitters, sizeof *args);
    weft_task **tasks = calloc(ncommitters, sizeof *tasks);
    int failed = args && tasks ? weft_spawn(&w, writer, &wal) : -ENOMEM;
    uint32_t started = 0;
    while (!failed && started < ncommitters) {
        args[started] = (committer_arg){.wal = &wal, .id = started, .records = each};
        failed = weft_spawn(&tasks[started], committer, &args[started]);
        if (!failed)
            started++;
    }
    for (uint32_t i = 0; i < started; i++) {
        weft_join(tasks[i], NULL);
        if (args[i].failed && !failed)
            failed = args[i].failed;
    }
    if (w) {
        /* No more commits: let the writer drain what is pending and end. */
        if (weft_mutex_lock(&wal.lock) == 0) {
            wal.closing = true;
            weft_mutex_unlock(&wal.lock);
        }
        weft_event_notify_one(&wal.work);
        weft_join(w, NULL);
    }
    double secs = (double)(weft_now_ns() - start) / 1e9;
    uint64_t total = (uint64_t)ncommitters * each;
    if (!failed) {
        printf("%llu commits by %u tasks in %.3f s: %.0f commits/s, %llu fdatasyncs "
               "(%.1f commits each)\n",
               (unsigned long long)total, ncommitters, secs, (double)total / secs,
               (unsigned long long)wal.syncs, (double)total / (double)wal.syncs);
        failed = verify(&wal, total, ncommitters);
        if (!failed)
            printf("read back: all %llu records, once each, in order\n", (unsigned long long)total);
    }
    if (failed)
        fprintf(stderr, "weft_group_commit: %s\n", weft_strerror(failed));
    weft_close(wal.fd);
    if (path == tmp)
        unlink(tmp);
    free(wal.pending);
    free(args);
    free(tasks);
    return failed ? (void *)1 : NULL;
}

WEFT_MAIN(run)
