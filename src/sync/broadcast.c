/* Broadcast channel: every subscriber receives every message sent after it
 * subscribed, in order; a sender never waits.
 *
 * A ring of the last `capacity` messages, each numbered by its place in
 * the stream (its sequence number, `sent` before it). A subscriber keeps
 * the number of the next message it will read. One that has fallen more
 * than `capacity` behind has lost the messages overwritten meanwhile: its
 * next receive skips to the oldest one still there and says how many it
 * missed. So a slow subscriber costs the others nothing, which is what a
 * fan-out (chat rooms, cache invalidations, config updates) needs.
 *
 * Receivers with nothing to read wait on one list; a send (or the close)
 * claims them all, and each goes back to read under the lock. Everything
 * is under one spinlock: a send copies one element and unlinks the
 * waiters, never more.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/fault.h"
#include "sync/select.h"
#include "sync/waitlist.h"

struct weft_broadcast {
    unsigned lock; /* spinlock over everything below but the sizes */
    bool closed;
    size_t elem_size;
    size_t capacity;
    uint64_t sent;          /* messages sent so far: the next one's number */
    unsigned subscribers;   /* live subscriptions */
    weft__waitlist waiters; /* receivers with nothing to read */
    unsigned char ring[];   /* message n at (n % capacity) * elem_size */
};

struct weft_broadcast_sub {
    weft_broadcast *b;
    uint64_t next; /* the number of the next message to read */
};

int weft_broadcast_create(weft_broadcast **out, size_t elem_size, size_t capacity)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!elem_size || !capacity || elem_size > (SIZE_MAX - sizeof(weft_broadcast)) / capacity)
        return -EINVAL;
    weft_broadcast *b = weft__malloc(sizeof *b + elem_size * capacity);
    if (!b)
        return -ENOMEM;
    b->lock = 0;
    b->closed = false;
    b->elem_size = elem_size;
    b->capacity = capacity;
    b->sent = 0;
    b->subscribers = 0;
    b->waiters = (weft__waitlist){NULL, NULL};
    *out = b;
    return 0;
}

int weft_broadcast_subscribe(weft_broadcast *b, weft_broadcast_sub **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!b)
        return -EINVAL;
    weft_broadcast_sub *s = weft__malloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    s->b = b;
    weft__spin_lock(&b->lock);
    if (b->subscribers == UINT_MAX) {
        weft__spin_unlock(&b->lock);
        free(s);
        return -EOVERFLOW;
    }
    s->next = b->sent; /* what is sent from now on */
    b->subscribers++;
    weft__spin_unlock(&b->lock);
    *out = s;
    return 0;
}

void weft_broadcast_unsubscribe(weft_broadcast_sub *s)
{
    if (!s)
        return;
    weft_broadcast *b = s->b;
    weft__spin_lock(&b->lock);
    b->subscribers--;
    weft__spin_unlock(&b->lock);
    free(s);
}

int weft_broadcast_send(weft_broadcast *b, const void *elem)
{
    if (!b || !elem)
        return -EINVAL;
    weft__spin_lock(&b->lock);
    if (b->closed) {
        weft__spin_unlock(&b->lock);
        return -EPIPE;
    }
    memcpy(b->ring + (size_t)(b->sent % b->capacity) * b->elem_size, elem, b->elem_size);
    b->sent++;
    int subscribers = b->subscribers > INT_MAX ? INT_MAX : (int)b->subscribers;
    weft__waiter *wake = waitlist_claim_all_live(&b->waiters, 0);
    weft__spin_unlock(&b->lock);
    weft__waiter_wake_chain(wake);
    return subscribers;
}

/* Reads s's next message into elem under the lock: 0, -EAGAIN (nothing
 * new) or -EPIPE (closed and read to the end). *missed gets the messages
 * skipped because they were overwritten before s read them. */
static int read_locked(weft_broadcast_sub *s, void *elem, uint64_t *missed)
{
    weft_broadcast *b = s->b;
    *missed = 0;
    uint64_t oldest = b->sent > b->capacity ? b->sent - b->capacity : 0;
    if (s->next < oldest) {
        *missed = oldest - s->next;
        s->next = oldest;
    }
    if (s->next < b->sent) {
        memcpy(elem, b->ring + (size_t)(s->next % b->capacity) * b->elem_size, b->elem_size);
        s->next++;
        return 0;
    }
    return b->closed ? -EPIPE : -EAGAIN;
}

int weft_broadcast_recv(weft_broadcast_sub *s, void *elem, uint64_t *missed)
{
    uint64_t skipped = 0;
    if (missed)
        *missed = 0;
    if (!s || !elem)
        return -EINVAL;
    weft_task *self;
    int r = weft__task_enter(&self);
    if (r)
        return r;
    weft_broadcast *b = s->b;
    for (;;) {
        weft__spin_lock(&b->lock);
        r = read_locked(s, elem, &skipped);
        if (r != -EAGAIN) {
            weft__spin_unlock(&b->lock);
            break;
        }
        weft__waiter w;
        waiter_init(&w, self, NULL);
        waitlist_push(&b->waiters, &w);
        weft__spin_unlock(&b->lock);
        /* Claimed by a send or the close: read again. Interrupted first:
         * nothing was read. */
        r = weft__waiter_park(&w, &b->lock, &b->waiters, true);
        if (r < 0)
            return r;
    }
    if (missed)
        *missed = skipped;
    return r;
}

int weft_broadcast_try_recv(weft_broadcast_sub *s, void *elem, uint64_t *missed)
{
    uint64_t skipped = 0;
    if (missed)
        *missed = 0;
    if (!s || !elem)
        return -EINVAL;
    weft__spin_lock(&s->b->lock);
    int r = read_locked(s, elem, &skipped);
    weft__spin_unlock(&s->b->lock);
    if (missed)
        *missed = skipped;
    return r;
}

void weft_broadcast_close(weft_broadcast *b)
{
    if (!b)
        return;
    weft__spin_lock(&b->lock);
    b->closed = true;
    weft__waiter *wake = waitlist_claim_all_live(&b->waiters, 0);
    weft__spin_unlock(&b->lock);
    weft__waiter_wake_chain(wake);
}

int weft_broadcast_destroy(weft_broadcast *b)
{
    if (!b)
        return 0;
    weft__spin_lock(&b->lock);
    bool busy = b->subscribers != 0;
    weft__spin_unlock(&b->lock);
    if (busy)
        return -EBUSY;
    free(b);
    return 0;
}

unsigned weft_broadcast_subscribers(weft_broadcast *b)
{
    if (!b)
        return 0;
    weft__spin_lock(&b->lock);
    unsigned n = b->subscribers;
    weft__spin_unlock(&b->lock);
    return n;
}

/* ---- for weft_select (select.h) ------------------------------------------ */

unsigned *weft__broadcast_lock(weft_broadcast_sub *s)
{
    return &s->b->lock;
}

weft__waitlist *weft__broadcast_waiters(weft_broadcast_sub *s)
{
    return &s->b->waiters;
}

int weft__broadcast_read_locked(weft_broadcast_sub *s, void *elem, uint64_t *missed)
{
    return read_locked(s, elem, missed);
}
