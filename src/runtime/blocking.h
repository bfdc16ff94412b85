/* The blocking pool and signal waiting (internal): the knobs and queries
 * tests use, and the job entry that weft_getaddrinfo shares with
 * weft_spawn_blocking.
 */
#ifndef WEFT_RUNTIME_BLOCKING_H
#define WEFT_RUNTIME_BLOCKING_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Defaults copied into a pool when it starts (so a test sets them before
 * weft_run): the most threads a pool runs (64) and how long an idle thread
 * waits for work before it exits (10 s). */
extern unsigned weft__blocking_max_threads;
extern uint64_t weft__blocking_keepalive_ns;

/* Runs fn(arg) on the current runtime's pool and waits for it like
 * weft_spawn_blocking. On success the caller owns arg again. On failure
 * release(arg, result) (when not NULL) is called exactly once: at once with
 * result NULL when the job never reached the pool, else by the pool thread
 * with fn's result after fn returns, or with NULL instead of fn when
 * skip_if_abandoned and the task gave up before fn started.
 * (weft_spawn_blocking_ex is this with skip_if_abandoned false.) */
int weft__blocking_call(void *(*fn)(void *), void *arg, void **result,
                        void (*release)(void *arg, void *result), bool skip_if_abandoned);

/* pthread_create for the runtime's own threads (pool, signal and stack
 * helpers): the thread starts with every asynchronous signal blocked, from
 * its first instruction on (blocked by the thread itself, a
 * process-directed signal could land on it before it got there), so that
 * such a signal goes to a thread that expects it. The helpers stay so;
 * a pool thread then takes the mask its jobs run with. Faults stay
 * deliverable, or a crash would lose its report (the kernel kills
 * outright on a blocked SIGSEGV). The caller's mask is unchanged on
 * return. Returns pthread_create's result. */
int weft__thread_start_quiet(pthread_t *id, void *(*fn)(void *), void *arg);

/* weft_getaddrinfo's return for getaddrinfo's nonzero rc, with the errno
 * it left (err) for EAI_SYSTEM. */
int weft__eai_error(int rc, int err);

/* Tasks parked waiting for signo (weft_signal_wait, _any), over all runtimes (signal.c);
 * for tests, which must know that a waiter is in place. */
unsigned weft__signal_waiters(int signo);
/* Whether weft_signal_wait takes signo (config validation). */
bool weft__signal_waitable(int signo);

#endif
