/* Config validation. Every rejection names the field and the reason, so a
 * caller can print weft_last_config_error() and fix the one thing wrong. */
#include "runtime/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/sched.h>

#include "common/fault.h"
#include "runtime/blocking.h"
#include "context/stack.h"

static __thread char last_error[256];

const char *weft_last_config_error(void)
{
    return last_error;
}

int weft__config_reject(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const weft_queue_spec default_queue = {.name = "default", .weight = 1};

/* Runs q's policy init (and fini) once on a scratch state, here on the
 * caller's thread: a policy_config it refuses is then reported with the
 * queue's name, where each worker's own init (on its own thread) could
 * only fail the start without a word. */
static int check_policy_config(const weft_queue_spec *q)
{
    const weft_policy *p = q->policy ? q->policy : &weft_policy_runnable_fifo;
    if (!p->init)
        return 0;
    void *state = weft__calloc(1, p->state_size ? p->state_size : 1);
    if (!state)
        return -ENOMEM;
    int r = p->init(state, q->policy_config);
    if (r == 0 && p->fini)
        p->fini(state);
    free(state);
    if (r < 0)
        weft__config_reject("queue '%s': policy '%s' refused its policy_config (%s)", q->name,
                            p->name ? p->name : "(unnamed)", strerror(-r));
    return r < 0 ? r : 0;
}

int weft__config_resolve(const weft_config *in, weft_config *out)
{
    static const weft_config zero;
    last_error[0] = 0;
    *out = in ? *in : zero;
    if (out->workers > WEFT_MAX_WORKERS)
        return weft__config_reject("workers: %u is more than %u", out->workers, WEFT_MAX_WORKERS);
    if (!out->queues && out->nqueues)
        return weft__config_reject("queues: NULL with nqueues = %zu", out->nqueues);
    if (!out->catch_signals && out->ncatch_signals)
        return weft__config_reject("catch_signals: NULL with ncatch_signals = %zu",
                                   out->ncatch_signals);
    for (size_t i = 0; i < out->ncatch_signals; i++)
        if (!weft__signal_waitable(out->catch_signals[i]))
            return weft__config_reject("catch_signals[%zu]: %d is no signal weft_signal_wait takes",
                                       i, out->catch_signals[i]);
    if (out->queues && !out->nqueues)
        return weft__config_reject("queues: given with nqueues = 0");
    if (out->nqueues > WEFT_MAX_QUEUES)
        return weft__config_reject("queues: %zu queues, at most %d are supported", out->nqueues,
                                   WEFT_MAX_QUEUES);
    for (size_t i = 0; i < out->nqueues; i++) {
        const weft_queue_spec *q = &out->queues[i];
        if (!q->name || !q->name[0])
            return weft__config_reject("queues[%zu]: the name is empty", i);
        if (q->weight == 0 || q->weight > WEFT_MAX_WEIGHT)
            return weft__config_reject("queue '%s': weight %u is outside 1..%d", q->name, q->weight,
                                       WEFT_MAX_WEIGHT);
        /* A user policy's table: without push and pop the worker would call
         * through NULL at the first spawn into the queue. */
        if (q->policy && (!q->policy->push || !q->policy->pop))
            return weft__config_reject(
                "queue '%s': its policy%s%s%s has no %s", q->name, q->policy->name ? " '" : "",
                q->policy->name ? q->policy->name : "", q->policy->name ? "'" : "",
                !q->policy->push ? "push" : "pop");
        for (size_t j = 0; j < i; j++)
            if (strcmp(out->queues[j].name, q->name) == 0)
                return weft__config_reject(
                    "queue '%s': the name is used twice (queues[%zu] and [%zu])", q->name, j, i);
        int r = check_policy_config(q);
        if (r < 0)
            return r;
    }
    if (out->trace_path && !out->trace_path[0])
        return weft__config_reject("trace_path: empty (NULL turns tracing off)");
    if (!out->queues) {
        out->queues = &default_queue;
        out->nqueues = 1;
    }
    if (!out->stack_size)
        out->stack_size = WEFT_STACK_DEFAULT;
    if (weft__stack_class(out->stack_size) < 0)
        return weft__config_reject("stack_size: %zu is outside %u .. %zu bytes", out->stack_size,
                                   WEFT_STACK_MIN, (size_t)WEFT_STACK_MAX);
    if (!out->ring_entries)
        out->ring_entries = 1024;
    if (out->ring_entries > WEFT_MAX_RING_ENTRIES)
        return weft__config_reject("ring_entries: %u is more than %d", out->ring_entries,
                                   WEFT_MAX_RING_ENTRIES);
    if (!out->direct_fds)
        out->direct_fds = 1024;
    /* The kernel's limits: IORING_MAX_FIXED_FILES and IORING_MAX_REG_BUFFERS. */
    if (out->direct_fds > (1u << 20))
        return weft__config_reject("direct_fds: %u is more than %u", out->direct_fds, 1u << 20);
    if (!out->fixed_buffers)
        out->fixed_buffers = 64;
    if (out->fixed_buffers > (1u << 14))
        return weft__config_reject("fixed_buffers: %u is more than %u", out->fixed_buffers,
                                   1u << 14);
    if ((unsigned)out->orphans > WEFT_ORPHANS_ADOPT)
        return weft__config_reject("orphans: unknown policy %d", (int)out->orphans);
    if ((unsigned)out->on_cleanup_error > WEFT_CLEANUP_ABORT)
        return weft__config_reject("on_cleanup_error: unknown policy %d",
                                   (int)out->on_cleanup_error);
    if ((unsigned)out->on_panic > WEFT_PANIC_CATCH)
        return weft__config_reject("on_panic: unknown policy %d", (int)out->on_panic);
    if ((unsigned)out->wake_placement > WEFT_WAKE_TO_OWNER)
        return weft__config_reject("wake_placement: unknown placement %d",
                                   (int)out->wake_placement);
    if (!out->cleanup_retries)
        out->cleanup_retries = 3;
    if (!out->sched_latency_ns)
        out->sched_latency_ns = 2000000;
    if (!out->min_slice_ns)
        out->min_slice_ns = 100000;
    if (!out->io_poll_interval_ns)
        out->io_poll_interval_ns = 500000;
    /* Virtual deadlines multiply a slice by 10000: a minute keeps that far
     * from overflowing, and no slice of a scheduler is longer. */
    static const uint64_t max_sched_ns = 60ull * 1000 * 1000 * 1000;
    if (out->sched_latency_ns > max_sched_ns)
        return weft__config_reject("sched_latency_ns: %llu is more than a minute",
                                   (unsigned long long)out->sched_latency_ns);
    if (out->min_slice_ns > max_sched_ns)
        return weft__config_reject("min_slice_ns: %llu is more than a minute",
                                   (unsigned long long)out->min_slice_ns);
    if (out->io_poll_interval_ns > max_sched_ns)
        return weft__config_reject("io_poll_interval_ns: %llu is more than a minute",
                                   (unsigned long long)out->io_poll_interval_ns);
    if (!out->max_runs_per_slice)
        out->max_runs_per_slice = 61;
    if (!out->lifo_skip_interval)
        out->lifo_skip_interval = 16;
    if (!out->inject_interval)
        out->inject_interval = 31;
    return 0;
}

int weft__config_queue_index(const weft_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nqueues; i++)
        if (strcmp(cfg->queues[i].name, name) == 0)
            return (int)i;
    return -ENOENT;
}
