/* A fiber is a saved execution context plus what the sanitizers and valgrind
 * must know about its stack. Every switch in weft goes through
 * weft__fiber_switch so that ASan (fake stacks), TSan (fiber identity) and the
 * stack bounds stay right.
 */
#ifndef WEFT_CONTEXT_FIBER_H
#define WEFT_CONTEXT_FIBER_H

#include <stdbool.h>
#include <stddef.h>

#include "context/switch.h"

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define WEFT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif

#ifdef WEFT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef WEFT_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* Without sanitizers a fiber is just its saved stack pointer: it is part of
 * every task record, and record bytes are first-touch page faults. */
typedef struct weft__fiber {
    void *sp; /* saved stack pointer while switched out */
#ifdef WEFT_ASAN
    const void *stack_lo;  /* lowest usable byte of the stack */
    size_t stack_size;     /* usable bytes */
    void *asan_fake_stack; /* ASan's fake-stack handle while switched out */
#endif
#ifdef WEFT_TSAN
    void *tsan_fiber;     /* TSan's fiber object */
    bool owns_tsan_fiber; /* created by us (task fibers), not the thread's own */
#endif
} weft__fiber;

/* Describes the calling thread's own stack as a fiber to switch back to. */
void weft__fiber_init_thread(weft__fiber *f);
/* Prepares a fiber that starts in entry(transfer) on [lo, lo + size). Returns
 * 0 or -ENOMEM (TSan could not create its fiber). */
int weft__fiber_init(weft__fiber *f, void *lo, size_t size, void (*entry)(void *));
/* Releases what weft__fiber_init took; never call it on the running fiber.
 * reusable: the fiber's function ended through a path with no
 * sanitizer-instrumented frame left on its stack (see WEFT_NO_TSAN), so
 * TSan's fiber object may serve the next fiber. */
void weft__fiber_fini(weft__fiber *f, bool reusable);

/* Under TSan, for the functions still on a task's stack at its last switch:
 * not instrumented, so a reused TSan fiber starts with an empty shadow call
 * stack. Such a function should only call instrumented ones and switch. */
#ifdef WEFT_TSAN
#define WEFT_NO_TSAN   __attribute__((no_sanitize("thread")))
#define WEFT_TSAN_CALL __attribute__((noinline))
#else
#define WEFT_NO_TSAN
#define WEFT_TSAN_CALL
#endif

/* The first thing a fiber's entry function calls, before anything else. */
static inline void weft__fiber_started(void)
{
#ifdef WEFT_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}

/* Switches from self (the running fiber) to `to`, handing over `transfer`;
 * returns the transfer value of whoever switches back. When self_ends is true
 * the caller never runs again and ASan drops its fake stack. */
static inline __attribute__((always_inline)) void *
weft__fiber_switch_via(void *(*ctx_switch)(void **, void *, void *), weft__fiber *self,
                       weft__fiber *to, void *transfer, bool self_ends)
{
#ifdef WEFT_ASAN
    __sanitizer_start_switch_fiber(self_ends ? NULL : &self->asan_fake_stack, to->stack_lo,
                                   to->stack_size);
#endif
#ifdef WEFT_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    (void)self_ends;
    void *r = ctx_switch(&self->sp, to->sp, transfer);
#ifdef WEFT_ASAN
    __sanitizer_finish_switch_fiber(self->asan_fake_stack, NULL, NULL);
#endif
    return r;
}

static inline __attribute__((always_inline)) void *
weft__fiber_switch(weft__fiber *self, weft__fiber *to, void *transfer, bool self_ends)
{
    return weft__fiber_switch_via(weft__ctx_switch, self, to, transfer, self_ends);
}

/* From one task's fiber straight to another's, which usually waits at the
 * same call site (weft_yield's direct switch): weft__ctx_switch_ret. */
static inline __attribute__((always_inline)) void *
weft__fiber_switch_peer(weft__fiber *self, weft__fiber *to, void *transfer)
{
    return weft__fiber_switch_via(weft__ctx_switch_ret, self, to, transfer, false);
}

#endif
