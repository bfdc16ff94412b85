/* Watermark: a level that only rises, waited on up to per-waiter targets.
 *
 * Every waiter keeps its target on its own stack (the node's buf points at
 * it), so one list serves any mix of targets. advance walks the whole list
 * and claims those it satisfies: waiters are few next to the work each
 * advance stands for (an fsync, in group commit), and a sorted structure
 * would cost every wait more than the walk costs.
 */
#include "sync/waitlist.h"

_Static_assert(sizeof(weft_watermark) ==
                   2 * sizeof(unsigned) + sizeof(uint64_t) + 2 * sizeof(void *),
               "weft_watermark is a fixed caller-allocated block");

int weft_watermark_init(weft_watermark *m, uint64_t level)
{
    if (!m)
        return -EINVAL;
    *m = (weft_watermark)WEFT_WATERMARK_INIT(level);
    return 0;
}

static uint64_t target_of(const weft__waiter *w)
{
    return *(const uint64_t *)w->buf;
}

void weft_watermark_advance(weft_watermark *m, uint64_t level)
{
    if (!m)
        return;
    weft__waiter *first = NULL, **tail = &first;
    weft__spin_lock(&m->_lock);
    if (level > m->_level) {
        m->_level = level;
        weft__waiter *next;
        for (weft__waiter *w = m->_waiters._first; w; w = next) {
            next = w->next;
            if (target_of(w) <= level) {
                waitlist_claim(&m->_waiters, w, 0);
                *tail = w; /* a chain in waiting order, through next */
                tail = &w->next;
            }
        }
        *tail = NULL;
    }
    weft__spin_unlock(&m->_lock);
    weft__waiter_wake_chain(first);
}

void weft_watermark_fail(weft_watermark *m, int error)
{
    if (!m)
        return;
    weft__spin_lock(&m->_lock);
    weft__waiter *chain = NULL;
    if (m->_error == 0) {
        m->_error = error < 0 ? error : -EIO;
        /* Every waiter's target is above the level (advance took the
         * others): all of them fail. */
        chain = waitlist_claim_all(&m->_waiters, m->_error);
    }
    weft__spin_unlock(&m->_lock);
    weft__waiter_wake_chain(chain);
}

uint64_t weft_watermark_level(weft_watermark *m)
{
    if (!m)
        return 0;
    weft__spin_lock(&m->_lock);
    uint64_t level = m->_level;
    weft__spin_unlock(&m->_lock);
    return level;
}

int weft_watermark_wait(weft_watermark *m, uint64_t target)
{
    if (!m)
        return -EINVAL;
    weft_task *self;
    int r = weft__sync_enter(&self);
    if (r)
        return r;
    weft__waiter w;
    waiter_init(&w, self, &target);
    weft__spin_lock(&m->_lock);
    bool reached = target <= m->_level;
    int error = m->_error;
    bool queued = !reached && !error;
    if (queued)
        waitlist_push(&m->_waiters, &w);
    weft__spin_unlock(&m->_lock);
    if (!queued)
        return reached ? 0 : error;
    return weft__waiter_park(&w, &m->_lock, &m->_waiters, true);
}
