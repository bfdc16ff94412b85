/* weft/runtime.h - starting a runtime and its configuration.
 *
 * Config structs follow one rule: all-zero (or a NULL pointer) means the
 * defaults, and fields are only ever appended.
 */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <weft/task.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum weft_orphan_policy {
    WEFT_ORPHANS_CANCEL = 0, /* a finishing task cancels and awaits its live children */
    WEFT_ORPHANS_ADOPT = 1,  /* live children are re-parented to the orphan root */
} weft_orphan_policy;

typedef enum weft_cleanup_policy {
    WEFT_CLEANUP_RETRY = 0,
    WEFT_CLEANUP_IGNORE = 1,
    WEFT_CLEANUP_ABORT = 2,
} weft_cleanup_policy;

typedef enum weft_panic_policy {
    WEFT_PANIC_ABORT = 0, /* print the message, the task's name and id, abort() */
    WEFT_PANIC_CATCH = 1, /* the task completes with WEFT_EPANIC */
} weft_panic_policy;

struct weft_policy;
typedef struct weft_queue_spec {
    const char *name;                 /* unique */
    uint32_t weight;                  /* share, 1..10000 */
    const struct weft_policy *policy; /* NULL = runnable FIFO */
    const void *policy_config;
} weft_queue_spec;

typedef struct weft_config {
    unsigned workers;              /* 0 = CPUs; 1 = one worker on the calling thread */
    const weft_queue_spec *queues; /* NULL = one queue "default" */
    size_t nqueues;
    size_t stack_size;                    /* 0 = 256 KiB (virtual; pages touched lazily) */
    unsigned ring_entries;                /* 0 = 1024 */
    unsigned direct_fds;                  /* per ring; 0 = 1024 */
    weft_orphan_policy orphans;           /* default WEFT_ORPHANS_CANCEL */
    weft_cleanup_policy on_cleanup_error; /* default WEFT_CLEANUP_RETRY */
    unsigned cleanup_retries;             /* tries per cleanup op before giving up; 0 = 3 */
    weft_panic_policy on_panic;           /* default WEFT_PANIC_ABORT */
    uint64_t sched_latency_ns, min_slice_ns, io_poll_interval_ns; /* 0 = 2 ms, 100 us, 500 us */
    unsigned max_runs_per_slice;                                  /* 0 = 61 */
    bool lifo_slot;                                               /* default off */
    unsigned lifo_skip_interval;                                  /* 0 = 16 */
    bool stats;             /* collect stats (cheap counters are always on) */
    const char *trace_path; /* non-NULL: write a Perfetto/Chrome trace there */
    unsigned fixed_buffers; /* registered-buffer slots per ring; 0 = 64 */
} weft_config;

/* Runs main_fn(arg) as the main task of a new runtime on the calling thread
 * and returns when the main task and its whole subtree are done (background
 * tasks are cancelled and awaited). cfg may be NULL.
 * Returns 0 and stores the main task's result in *result (if non-NULL);
 * -ECANCELED if the main task was cancelled; WEFT_EPANIC if it panicked under
 * WEFT_PANIC_CATCH; -EINVAL for a bad config (see weft_last_config_error(),
 * nothing is started); -ENOTSUP for workers > 1 (not yet supported); -EBUSY
 * when called from inside a runtime; -ENOMEM, or the error of io_uring setup. */
WEFT_API int weft_run(const weft_config *cfg, weft_fn main_fn, void *arg, void **result);

/* A human-readable reason for the last -EINVAL from weft_run on this thread,
 * or "" when there is none. */
WEFT_API const char *weft_last_config_error(void);

/* Index (0..N-1) of the worker running the calling task, -EPERM outside a task. */
WEFT_API int weft_worker_index(void);
/* Number of workers of the current runtime; 0 outside a runtime. */
WEFT_API unsigned weft_worker_count(void);

/* int main(argc, argv) that runs fn(NULL) on a default runtime; the process
 * exits 0 when fn returns NULL, else with (int)(intptr_t) of its result. */
#define WEFT_MAIN(fn)                                                                              \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        (void)argc;                                                                                \
        (void)argv;                                                                                \
        void *weft_main_result_ = NULL;                                                            \
        int weft_main_rc_ = weft_run(NULL, (fn), NULL, &weft_main_result_);                        \
        if (weft_main_rc_ < 0) {                                                                   \
            fprintf(stderr, "weft_run: %s\n", weft_strerror(weft_main_rc_));                       \
            return 1;                                                                              \
        }                                                                                          \
        return (int)(intptr_t)weft_main_result_;                                                   \
    }

#ifdef __cplusplus
}
#endif
#endif
