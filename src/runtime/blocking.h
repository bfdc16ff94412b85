/* The blocking pool and signal waiting (internal): the knobs and queries
 * tests use, and the job entry that weft_getaddrinfo shares with
 * weft_spawn_blocking.
 */
#ifndef WEFT_RUNTIME_BLOCKING_H
#define WEFT_RUNTIME_BLOCKING_H

#include <stdbool.h>
#include <stdint.h>

/* Defaults copied into a pool when it starts (so a test sets them before
 * weft_run): the most threads a pool runs (64) and how long an idle thread
 * waits for work before it exits (10 s). */
extern unsigned weft__blocking_max_threads;
extern uint64_t weft__blocking_keepalive_ns;

/* Runs fn(arg) on the current runtime's pool and waits for it like
 * weft_spawn_blocking. On success the caller owns arg again. On failure
 * release(arg) (when not NULL) is called exactly once: at once when the job
 * never reached the pool, else by the pool thread after fn returns, or
 * instead of fn when skip_if_abandoned and the task gave up before fn
 * started. */
int weft__blocking_call(void *(*fn)(void *), void *arg, void **result, void (*release)(void *),
                        bool skip_if_abandoned);

/* Blocks every asynchronous signal in the calling thread, for the runtime's
 * own threads (pool, signal helper): a job's system calls are never
 * interrupted (EINTR) and a process-directed signal goes to a thread that
 * expects it. Faults stay deliverable, or a crash in a job would lose its
 * report (the kernel kills outright on a blocked SIGSEGV). */
void weft__block_async_signals(void);

/* Tasks parked in weft_signal_wait(signo), over all runtimes (signal.c);
 * for tests, which must know that a waiter is in place. */
unsigned weft__signal_waiters(int signo);

#endif
