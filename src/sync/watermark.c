/* Watermark: a level that only rises, waited on up to per-waiter targets.
 *
 * Every waiter keeps its target on its own stack (the node's buf points at
 * it). The list is kept sorted by target, equal targets in waiting order,
 * so an advance unlinks just the waiters it satisfies, from the front, and
 * holds the spinlock for those alone. A new waiter is placed by a walk from
 * the back: in group commit, targets come in rising order, and the walk
 * stops at once.
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
        while (m->_waiters._first && target_of(m->_waiters._first) <= level) {
            weft__waiter *w = waitlist_claim_first(&m->_waiters, 0);
            *tail = w; /* a chain in list order, through next */
            tail = &w->next;
        }
        *tail = NULL;
    }
    weft__spin_unlock(&m->_lock);
    weft__waiter_wake_chain(first);
}

/* The error waits will return for error: one a wait returns for reasons
 * of its own (interruption, misuse) would be taken for those, and one that
 * is not negative is no error; both become -EIO. */
static int published_error(int error)
{
    switch (error) {
    case -ECANCELED:
    case -ETIMEDOUT:
    case -EPERM:
    case -EINVAL:
        return -EIO;
    }
    return error < 0 ? error : -EIO;
}

void weft_watermark_fail(weft_watermark *m, int error)
{
    if (!m)
        return;
    weft__spin_lock(&m->_lock);
    weft__waiter *chain = NULL;
    if (m->_error == 0) {
        m->_error = published_error(error);
        /* Every waiter's target is above the level (advance took the
         * others): all of them fail. */
        chain = waitlist_claim_all(&m->_waiters, m->_error);
    }
    weft__spin_unlock(&m->_lock);
    weft__waiter_wake_chain(chain);
}

void weft_watermark_recover(weft_watermark *m)
{
    if (!m)
        return;
    weft__spin_lock(&m->_lock);
    m->_error = 0; /* nobody waits on it: the failure took every waiter */
    weft__spin_unlock(&m->_lock);
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
    int r = weft__task_enter(&self);
    if (r)
        return r;
    weft__waiter w;
    waiter_init(&w, self, &target);
    weft__spin_lock(&m->_lock);
    bool reached = target <= m->_level;
    int error = m->_error;
    bool queued = !reached && !error;
    if (queued) {
        weft__waiter *pos = m->_waiters._last;
        while (pos && target_of(pos) > target)
            pos = pos->prev;
        waitlist_insert_after(&m->_waiters, pos, &w);
    }
    weft__spin_unlock(&m->_lock);
    if (!queued)
        return reached ? 0 : error;
    return weft__waiter_park(&w, &m->_lock, &m->_waiters, true);
}
