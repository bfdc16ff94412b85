/* Bounded MPMC channel with close, for tasks and foreign threads.
 *
 * A ring buffer of `capacity` elements plus two FIFO lists of waiters.
 * Invariants, under the lock, for the waiters that are not stale select
 * nodes (waitlist.h; a stale node is skipped by everything here):
 * - receivers wait only while the ring is empty, senders only while it is
 *   full (for capacity 0: always), so at most one of the lists has such
 *   waiters;
 * - a closed channel has no waiting sender.
 * Elements move directly between a waiter's own buffer and the other side:
 * a sender that finds a waiting receiver copies into the receiver's buffer;
 * a receiver that frees a slot pulls the first waiting sender's element
 * into the ring. Both happen under the lock while the waiter is still
 * queued, so its stack buffer is live, and the claim that follows tells the
 * waiter its element went through. That keeps the order of elements the
 * order of completed sends, and lets an interrupted waiter know for sure
 * whether its element moved.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/fault.h"
#include "runtime/worker.h"
#include "sync/select.h"
#include "sync/waitlist.h"

struct weft_chan {
    unsigned lock; /* spinlock over everything below but the sizes */
    bool closed;
    size_t elem_size;
    size_t capacity;
    size_t head;  /* ring index of the oldest buffered element */
    size_t count; /* elements buffered */
    weft__waitlist senders, receivers;
    unsigned char ring[]; /* capacity * elem_size bytes */
};

int weft_chan_create(weft_chan **out, size_t elem_size, size_t capacity)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!elem_size || (capacity && elem_size > (SIZE_MAX - sizeof(weft_chan)) / capacity))
        return -EINVAL;
    weft_chan *c = weft__malloc(sizeof *c + elem_size * capacity);
    if (!c)
        return -ENOMEM;
    c->lock = 0;
    c->closed = false;
    c->elem_size = elem_size;
    c->capacity = capacity;
    c->head = c->count = 0;
    c->senders = c->receivers = (weft__waitlist){NULL, NULL};
    *out = c;
    return 0;
}

static void ring_push(weft_chan *c, const void *elem)
{
    size_t slot = c->head + c->count;
    if (slot >= c->capacity)
        slot -= c->capacity;
    memcpy(c->ring + slot * c->elem_size, elem, c->elem_size);
    c->count++;
}

static void ring_pop(weft_chan *c, void *elem)
{
    memcpy(elem, c->ring + c->head * c->elem_size, c->elem_size);
    if (++c->head == c->capacity)
        c->head = 0;
    c->count--;
}

/* Sends without waiting, under the lock: 0, -EPIPE or -EAGAIN. *wake gets
 * a claimed waiter to wake once the lock is dropped, or NULL. Inlined by
 * force here and in recv_locked: with select's callers added, gcc stopped
 * inlining them into send_wait and recv_wait, which cost a channel
 * ping-pong 11% more instructions (callgrind). */
static inline __attribute__((always_inline)) int send_locked(weft_chan *c, const void *elem,
                                                             weft__waiter **wake)
{
    *wake = NULL;
    if (c->closed)
        return -EPIPE;
    /* The receiver waits for DONE before it looks at its buffer, so the
     * copy may follow the claim. */
    weft__waiter *w = waitlist_claim_first_live(&c->receivers, 0);
    if (w) {
        memcpy(w->buf, elem, c->elem_size);
        *wake = w;
        return 0;
    }
    if (c->count < c->capacity) {
        ring_push(c, elem);
        return 0;
    }
    return -EAGAIN;
}

/* Receives without waiting, under the lock: 0, -EPIPE or -EAGAIN. */
static inline __attribute__((always_inline)) int recv_locked(weft_chan *c, void *elem,
                                                             weft__waiter **wake)
{
    *wake = NULL;
    if (c->count) {
        ring_pop(c, elem);
        /* A slot is free: the first waiting sender's element takes it, so
         * that it keeps its place ahead of later sends. */
        weft__waiter *w = waitlist_claim_first_live(&c->senders, 0);
        if (w)
            ring_push(c, w->buf);
        *wake = w;
        return 0;
    }
    weft__waiter *w = waitlist_claim_first_live(&c->senders, 0);
    if (w) { /* rendezvous */
        memcpy(elem, w->buf, c->elem_size);
        *wake = w;
        return 0;
    }
    return c->closed ? -EPIPE : -EAGAIN;
}

/* Up to max elements into out without waiting, under the lock: how many
 * (0: none buffered and no sender waiting). *wake gets the senders whose
 * elements moved, chained through `next` for weft__waiter_wake_chain. */
static size_t recv_many_locked(weft_chan *c, unsigned char *out, size_t max, weft__waiter **wake)
{
    weft__waiter *chain = NULL, **tail = &chain;
    size_t n = 0;
    while (n < max) {
        weft__waiter *w;
        if (recv_locked(c, out + n * c->elem_size, &w) != 0)
            break;
        n++;
        if (w) { /* claimed, so unlinked: its `next` is free for the chain */
            w->next = NULL;
            *tail = w;
            tail = &w->next;
        }
    }
    *wake = chain;
    return n;
}

/* self NULL: a foreign thread, which sleeps instead of parking, until
 * deadline (CLOCK_MONOTONIC, UINT64_MAX: none). */
static inline __attribute__((always_inline)) int send_wait(weft_chan *c, const void *elem,
                                                           weft_task *self, uint64_t deadline)
{
    weft__waiter *wake;
    weft__spin_lock(&c->lock);
    int r = send_locked(c, elem, &wake);
    if (r != -EAGAIN) {
        weft__spin_unlock(&c->lock);
        weft__waiter_wake(wake);
        return r;
    }
    weft__waiter w;
    waiter_init(&w, self, (void *)elem);
    waitlist_push(&c->senders, &w);
    weft__spin_unlock(&c->lock);
    return self ? weft__waiter_park(&w, &c->lock, &c->senders, true)
                : weft__waiter_block_until(&w, &c->lock, &c->senders, deadline);
}

static inline __attribute__((always_inline)) int recv_wait(weft_chan *c, void *elem,
                                                           weft_task *self, uint64_t deadline)
{
    weft__waiter *wake;
    weft__spin_lock(&c->lock);
    int r = recv_locked(c, elem, &wake);
    if (r != -EAGAIN) {
        weft__spin_unlock(&c->lock);
        weft__waiter_wake(wake);
        return r;
    }
    weft__waiter w;
    waiter_init(&w, self, elem);
    waitlist_push(&c->receivers, &w);
    weft__spin_unlock(&c->lock);
    return self ? weft__waiter_park(&w, &c->lock, &c->receivers, true)
                : weft__waiter_block_until(&w, &c->lock, &c->receivers, deadline);
}

/* The first element as recv_wait takes one, waiting if need be; then, in
 * the same lock round when it was buffered or once woken with it, what
 * else is there up to max. A receiver waits only on an empty channel, so
 * whatever it finds after a wake came after the element handed to it. */
static ssize_t recv_many_wait(weft_chan *c, void *elems, size_t max, weft_task *self,
                              uint64_t deadline)
{
    unsigned char *out = elems;
    weft__waiter *wake;
    weft__spin_lock(&c->lock);
    size_t n = recv_many_locked(c, out, max, &wake);
    if (n || c->closed) {
        weft__spin_unlock(&c->lock);
        weft__waiter_wake_chain(wake);
        return n ? (ssize_t)n : -EPIPE;
    }
    weft__waiter w;
    waiter_init(&w, self, out);
    waitlist_push(&c->receivers, &w);
    weft__spin_unlock(&c->lock);
    int r = self ? weft__waiter_park(&w, &c->lock, &c->receivers, true)
                 : weft__waiter_block_until(&w, &c->lock, &c->receivers, deadline);
    if (r)
        return r;
    if (max == 1)
        return 1;
    weft__spin_lock(&c->lock);
    n = recv_many_locked(c, out + c->elem_size, max - 1, &wake);
    weft__spin_unlock(&c->lock);
    weft__waiter_wake_chain(wake);
    return 1 + (ssize_t)n;
}

static int check_many(const weft_chan *c, const void *elems, size_t max)
{
    if (!c || !elems || !max || max > SSIZE_MAX || max > SIZE_MAX / c->elem_size)
        return -EINVAL;
    return 0;
}

ssize_t weft_chan_recv_many(weft_chan *c, void *elems, size_t max)
{
    int r = check_many(c, elems, max);
    if (r)
        return r;
    weft_task *self;
    r = weft__task_enter(&self);
    if (r)
        return r;
    return recv_many_wait(c, elems, max, self, UINT64_MAX);
}

ssize_t weft_chan_try_recv_many(weft_chan *c, void *elems, size_t max)
{
    int r = check_many(c, elems, max);
    if (r)
        return r;
    weft__waiter *wake;
    weft__spin_lock(&c->lock);
    size_t n = recv_many_locked(c, elems, max, &wake);
    bool closed = c->closed;
    weft__spin_unlock(&c->lock);
    weft__waiter_wake_chain(wake);
    return n ? (ssize_t)n : closed ? -EPIPE : -EAGAIN;
}

ssize_t weft_chan_recv_many_blocking_for(weft_chan *c, void *elems, size_t max, uint64_t timeout_ns)
{
    int r = check_many(c, elems, max);
    if (r)
        return r;
    if (weft__task_current())
        WEFT__IN_TASK_FOR(timeout_ns, weft_chan_recv_many(c, elems, max));
    if (weft__worker_self() || weft__thread_hosts_executor())
        return -EDEADLK;
    return recv_many_wait(c, elems, max, NULL, weft__deadline_after(timeout_ns));
}

ssize_t weft_chan_recv_many_blocking(weft_chan *c, void *elems, size_t max)
{
    return weft_chan_recv_many_blocking_for(c, elems, max, UINT64_MAX);
}

int weft_chan_send_evict(weft_chan *c, const void *elem, void *evicted)
{
    if (!c || !elem || !c->capacity)
        return -EINVAL;
    const unsigned char *e = elem;
    unsigned char *v = evicted;
    if (v && e < v + c->elem_size && v < e + c->elem_size)
        return -EINVAL; /* the oldest would overwrite elem before it is sent */
    weft__waiter *wake;
    weft__spin_lock(&c->lock);
    int r = send_locked(c, elem, &wake);
    if (r == -EAGAIN) {
        /* Full, so the oldest element's slot is the one the new one
         * takes: the ring stays full and moves on by one. */
        unsigned char *slot = c->ring + c->head * c->elem_size;
        if (v)
            memcpy(v, slot, c->elem_size);
        memcpy(slot, e, c->elem_size);
        if (++c->head == c->capacity)
            c->head = 0;
        r = 1;
    }
    weft__spin_unlock(&c->lock);
    weft__waiter_wake(wake);
    return r;
}

int weft_chan_send(weft_chan *c, const void *elem)
{
    if (!c || !elem)
        return -EINVAL;
    weft_task *self;
    int r = weft__task_enter(&self);
    if (r)
        return r;
    return send_wait(c, elem, self, UINT64_MAX);
}

int weft_chan_recv(weft_chan *c, void *elem)
{
    if (!c || !elem)
        return -EINVAL;
    weft_task *self;
    int r = weft__task_enter(&self);
    if (r)
        return r;
    return recv_wait(c, elem, self, UINT64_MAX);
}

int weft_chan_try_send(weft_chan *c, const void *elem)
{
    if (!c || !elem)
        return -EINVAL;
    weft__waiter *wake;
    weft__spin_lock(&c->lock);
    int r = send_locked(c, elem, &wake);
    weft__spin_unlock(&c->lock);
    weft__waiter_wake(wake);
    return r;
}

int weft_chan_try_recv(weft_chan *c, void *elem)
{
    if (!c || !elem)
        return -EINVAL;
    weft__waiter *wake;
    weft__spin_lock(&c->lock);
    int r = recv_locked(c, elem, &wake);
    weft__spin_unlock(&c->lock);
    weft__waiter_wake(wake);
    return r;
}

int weft_chan_send_blocking_for(weft_chan *c, const void *elem, uint64_t timeout_ns)
{
    if (!c || !elem)
        return -EINVAL;
    if (weft__task_current())
        WEFT__IN_TASK_FOR(timeout_ns, weft_chan_send(c, elem));
    if (weft__worker_self() || weft__thread_hosts_executor())
        return -EDEADLK;
    return send_wait(c, elem, NULL, weft__deadline_after(timeout_ns));
}

int weft_chan_send_blocking(weft_chan *c, const void *elem)
{
    return weft_chan_send_blocking_for(c, elem, UINT64_MAX);
}

int weft_chan_recv_blocking_for(weft_chan *c, void *elem, uint64_t timeout_ns)
{
    if (!c || !elem)
        return -EINVAL;
    if (weft__task_current())
        WEFT__IN_TASK_FOR(timeout_ns, weft_chan_recv(c, elem));
    if (weft__worker_self() || weft__thread_hosts_executor())
        return -EDEADLK;
    return recv_wait(c, elem, NULL, weft__deadline_after(timeout_ns));
}

int weft_chan_recv_blocking(weft_chan *c, void *elem)
{
    return weft_chan_recv_blocking_for(c, elem, UINT64_MAX);
}

void weft_chan_close(weft_chan *c)
{
    if (!c)
        return;
    weft__spin_lock(&c->lock);
    weft__waiter *senders = NULL, *receivers = NULL;
    if (!c->closed) {
        c->closed = true;
        senders = waitlist_claim_all_live(&c->senders, -EPIPE);
        /* Receivers wait only on an empty ring: nothing is left for them. */
        receivers = waitlist_claim_all_live(&c->receivers, -EPIPE);
    }
    weft__spin_unlock(&c->lock);
    weft__waiter_wake_chain(senders);
    weft__waiter_wake_chain(receivers);
}

void weft_chan_destroy(weft_chan *c)
{
    if (!c)
        return;
#ifndef NDEBUG
    weft__spin_lock(&c->lock);
    if (!waitlist_empty(&c->senders) || !waitlist_empty(&c->receivers))
        weft__sync_bug("weft_chan_destroy: channel %p still has waiters", (void *)c);
    weft__spin_unlock(&c->lock);
#endif
    free(c);
}

size_t weft_chan_len(weft_chan *c)
{
    if (!c)
        return 0;
    weft__spin_lock(&c->lock);
    size_t n = c->count;
    weft__spin_unlock(&c->lock);
    return n;
}

size_t weft_chan_capacity(const weft_chan *c)
{
    return c ? c->capacity : 0;
}

/* ---- for weft_select (select.h) ------------------------------------------ */

unsigned *weft__chan_lock(weft_chan *c)
{
    return &c->lock;
}

weft__waitlist *weft__chan_waiters(weft_chan *c, bool senders)
{
    return senders ? &c->senders : &c->receivers;
}

int weft__chan_send_locked(weft_chan *c, const void *elem, weft__waiter **wake)
{
    return send_locked(c, elem, wake);
}

int weft__chan_recv_locked(weft_chan *c, void *elem, weft__waiter **wake)
{
    return recv_locked(c, elem, wake);
}
