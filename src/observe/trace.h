/* Task-run tracing (weft_config.trace_path): one Chrome/Perfetto
 * trace-event JSON file per runtime, one track per worker, a slice per task
 * run (docs/observe.md).
 *
 * Each worker formats its slices into a buffer of its own, without a lock,
 * and appends the buffer to the file under the runtime's trace lock when it
 * fills and when the worker stops. Off (no trace_path), tracing costs a
 * predictable branch at the start and at the end of each run.
 */
#ifndef WEFT_OBSERVE_TRACE_H
#define WEFT_OBSERVE_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <weft/io.h>

#include "runtime/worker.h"

/* A worker's slices not yet in the file. */
typedef struct weft__trace_buf {
    uint64_t run_start_ns; /* weft_now_ns() when the current run began */
    size_t len;
    char text[]; /* TRACE_BUF_BYTES */
} weft__trace_buf;

/* Opens path for rt (rt->trace) and writes the file's head. Returns 0, or
 * -errno when the file cannot be created, -ENOMEM. */
int weft__trace_open(weft__runtime *rt, const char *path);
/* Writes the file's tail and closes it; a no-op without a trace. Reports a
 * failed write or close on stderr (the trace is then incomplete). */
void weft__trace_close(weft__runtime *rt);

/* The process is about to abort on w's thread (a panic under
 * WEFT_PANIC_ABORT, a failed cleanup under WEFT_CLEANUP_ABORT, a misused
 * sync object): ends the current run's slice ("abort"), appends w's buffer,
 * ends the file and flushes it, so the trace holds this worker's runs up
 * to the abort. Other workers' buffers are lost. w may be NULL. Not for
 * signal handlers (it locks and uses stdio). */
void weft__trace_abort(weft__worker *w);

/* The worker's buffer and its track's name. Returns 0 or -ENOMEM; a no-op
 * without a trace. */
int weft__trace_worker_init(weft__worker *w);
/* Appends what is left in the buffer to the file and frees it. */
void weft__trace_worker_fini(weft__worker *w);

/* A run of t ends on w, for the given reason (a slice from the run's
 * start, as stamped by weft__trace_run_start). */
void weft__trace_run_end(weft__worker *w, const weft_task *t, weft__switch_reason why);

static inline void weft__trace_run_start(weft__worker *w)
{
    if (__builtin_expect(w->trace != NULL, 0))
        w->trace->run_start_ns = weft_now_ns();
}

#endif
