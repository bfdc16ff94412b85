/* weft/stats.h - runtime counters.
 *
 * Cheap counters are always on. A snapshot is a plain struct copied out of the
 * runtime; print it as a text table or as JSON.
 */
#ifndef WEFT_STATS_H
#define WEFT_STATS_H

#include <stdio.h>
#include <weft/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_stats {
    uint64_t tasks_spawned;
    uint64_t tasks_completed; /* finished normally */
    uint64_t tasks_cancelled; /* finished with -ECANCELED, or -ENOMEM (never ran: no stack) */
    uint64_t tasks_panicked;  /* finished with WEFT_EPANIC */
    uint64_t tasks_live;      /* spawned and not yet finished */
    uint64_t context_switches;
    /* Handed to tasks (per worker: by its pool; the task may run elsewhere
     * now). */
    uint64_t stacks_live;
    uint64_t stacks_pooled; /* mapped, free, ready for reuse */
    uint64_t stack_bytes_mapped;
    uint64_t timers_armed; /* sleepers and deadlines waiting now */
    uint64_t parks;        /* times the worker slept in io_uring_enter */
    /* The ring (docs/io.md). */
    uint64_t ops_issued;      /* SQEs prepared, all opcodes (weft_ops_by_opcode splits them) */
    uint64_t cqes;            /* completions reaped */
    uint64_t ops_in_flight;   /* submitted, last completion not yet reaped; counts
                                 each worker's own read of its wake eventfd, which
                                 weft_op_counts leaves out (cqes counts its
                                 completions too) */
    uint64_t sq_full;         /* times a full SQ forced an early submit */
    uint64_t cq_overflow;     /* times the kernel reported CQ overflow */
    uint64_t streams_live;    /* multishot ops whose kernel side is live */
    uint64_t direct_fds;      /* direct descriptors held by tasks */
    uint64_t cleanup_done;    /* maintenance ops that succeeded (-ENOENT included) */
    uint64_t cleanup_retried; /* ... that failed and were queued again */
    uint64_t cleanup_failed;  /* ... given up on (policy retry exhausted, or ignore) */
    /* Several workers (docs/workers.md). Every field is a uint64_t. */
    uint64_t workers;             /* workers counted in this snapshot */
    uint64_t steal_attempts;      /* spells of hunger: idle, asking for work (also
                                   * those that ended in work of its own) */
    uint64_t steal_successes;     /* ... in which tasks were handed over */
    uint64_t tasks_stolen;        /* tasks received from other workers */
    uint64_t tasks_donated;       /* tasks handed over to hungry workers */
    uint64_t wakes_sent;          /* wake-ups of parked workers sent by this one */
    uint64_t wakes_msg_ring;      /* ... of which by IORING_OP_MSG_RING */
    uint64_t tasks_injected;      /* outside spawns (weft_runtime_spawn) started here */
    uint64_t inject_failed;       /* outside spawns accepted, then not started: out of memory */
    uint64_t tasks_moved_on_wake; /* woken here from another worker (WEFT_WAKE_TO_WAKER) */
    /* Worker time: running tasks or its loop, and parked in io_uring_enter
     * waiting for work. Summed over workers. An embedded executor counts
     * its time inside weft_executor_run as busy and no idle time (the host
     * does the waiting). */
    uint64_t busy_ns;
    uint64_t idle_ns;
} weft_stats;

/* Per-queue scheduling figures, summed over the workers. */
#define WEFT_STATS_DELAY_BUCKETS 40
typedef struct weft_queue_stats {
    const char *name; /* the configured name (a copy, valid for the life of the process) */
    uint32_t weight;
    double weight_share;        /* weight / the sum of all queues' weights */
    double service_share;       /* service_ns / all queues' service_ns (0 when none) */
    uint64_t service_ns;        /* CPU time its tasks had (timed runs: see docs/scheduling.md) */
    uint64_t runs;              /* task runs */
    uint64_t slices;            /* slices it was given */
    uint64_t slice_exhaustions; /* slices that ended with work left (time or run limit) */
    uint64_t preemptions;       /* times it woke with a deadline beating the running queue */
    uint64_t queued;            /* tasks by state now: runnable, waiting for a worker */
    uint64_t running;           /*   running on a worker (the caller's own task included) */
    uint64_t blocked;           /*   parked: sleeping, joining, waiting for I/O */
    uint64_t live;              /*   all of the above: spawned, not finished */
    uint64_t delay_count, delay_sum_ns; /* queue delay (runnable -> running), with stats on */
    /* delay_hist[i]: delays in [2^i, 2^(i+1)) ns; the last bucket is open-ended. */
    uint64_t delay_hist[WEFT_STATS_DELAY_BUCKETS];
} weft_queue_stats;

/* Copies the current runtime's counters, summed over its workers, into
 * *out. From a task. Returns 0, -EPERM outside a task (before 2026-12-07,
 * a worker thread outside any task, as in a spawn's discard callback, got
 * this only with several workers), -EINVAL for NULL, -ENOMEM.
 * With several workers each worker's counters are read on its own thread:
 * the call waits for every worker to reach a scheduling point. The workers
 * are read one after another, not at one instant: a task that starts on one
 * and ends on another meanwhile can be counted as ended and not spawned, so
 * tasks_live may be short by such tasks (it never goes below zero). */
WEFT_API int weft_stats_snapshot(weft_stats *out);
/* Fills out[0..max) with each worker's own counters (out[i]: worker i; its
 * tasks_live is the tasks it owns now) and returns the number of workers;
 * entries from that number up to max are left as they were. -EPERM
 * outside a task, -EINVAL. The rows' tasks_live need not add up to the
 * snapshot's (spawned minus ended): a task being handed between workers
 * is owned by neither for that moment. */
WEFT_API int weft_stats_workers(weft_stats *out, size_t max);
/* Fills out[0..max) with the runtime's queues in configuration order and
 * returns how many queues there are, which may exceed max, like snprintf:
 * print the smaller of the two. -EPERM outside a task, -EINVAL for out
 * NULL with max > 0. Queue delays are recorded only with
 * weft_config.stats set, and so is service with a single queue (which
 * runs untimed otherwise). */
WEFT_API int weft_stats_queues(weft_queue_stats *out, size_t max);
/* weft_stats_queues for the queues of one worker (0 .. weft_worker_count()
 * - 1) alone: its service shares are of that worker's run time, which is
 * where weights act (the totals sum every worker's). Its live and blocked
 * count the tasks that worker owns. -ERANGE for a worker that does not
 * exist; otherwise as weft_stats_queues. */
WEFT_API int weft_stats_queues_of_worker(unsigned worker, weft_queue_stats *out, size_t max);
/* Writes s as an aligned two-column text table / a single JSON object.
 * These printers write nothing for a NULL f; here, nothing for a NULL s;
 * below, a NULL q is no queue (the header alone / "[]"). */
WEFT_API void weft_stats_print(FILE *f, const weft_stats *s);
WEFT_API void weft_stats_print_json(FILE *f, const weft_stats *s);
/* Writes the queues as a table (run-share: the share of the time tasks ran,
 * not of the CPU, against the share of weight; runs, slices, preemptions,
 * p50/p99 queue delay, "n/a" where none was recorded: weft_config.stats
 * off, or no run) / as a JSON array. */
WEFT_API void weft_stats_print_queues(FILE *f, const weft_queue_stats *q, size_t n);
WEFT_API void weft_stats_print_queues_json(FILE *f, const weft_queue_stats *q, size_t n);
/* Writes the runtime's live task tree to f: a line per task (id, name,
 * state, owning worker, queue, live children, cancelled/sticky/runtime
 * marks), children indented under their parent, background tasks at the
 * top level beside the main task, then the orphan root's adopted tasks.
 * From a task (or inside a weft_executor_run/_spawn call); with several
 * workers the others keep running, so states may be a moment old, and
 * their spawns and completions wait while the tree is read (not while f is
 * written). Returns 0, -EINVAL for NULL f, -EPERM outside a runtime,
 * -ENOMEM, or -EIO when writing to f fails. */
WEFT_API int weft_dump_tasks(FILE *f);
/* The delay below which fraction p (0..1) of the recorded queue delays fall
 * (the nearest rank: the ceil(p * n)-th smallest of n, at least the
 * first), as the upper edge of its log2 bucket; UINT64_MAX when that is
 * the last, open bucket; 0 when nothing was recorded (or q is NULL). p
 * below 0 or NaN counts as 0, above 1 as 1. */
WEFT_API uint64_t weft_queue_stats_delay_quantile(const weft_queue_stats *q, double p);

#ifdef __cplusplus
}
#endif
#endif
