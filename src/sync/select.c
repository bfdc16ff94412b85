/* weft_select: wait on several operations, perform one.
 *
 * The shape is Go's select. With the locks of every source in the call
 * held (taken in address order, each once, so that two selects over the
 * same channels cannot deadlock), the cases are tried in a random order;
 * the first that can go goes, still under all the locks. If
 * none can, one waiter node per case joins its source's list, all the
 * nodes sharing one state word (struct weft__select), and the task parks
 * after dropping the locks. Holding every lock while checking and linking
 * is what keeps a wake from falling between two sources: no operation on
 * any of them can see the select half linked.
 *
 * The first waker to claim a node claims the whole select (waitlist.h):
 * it moves the element as for a plain waiter and records the case. The
 * select's other nodes are stale from then on, skipped by every waker,
 * and the task takes them out under their locks once it is woken (not
 * the winner's: its claimer may free a channel after its send). A
 * broadcast case is claimed by a send or the close, which only says that
 * there is something to read: the task reads it in that same lock round,
 * so no other case can go in between. An event's notify, a semaphore's
 * release and a wait group's last done claim as a send does: the claim
 * itself hands over the notification or the unit (a wait group's hands
 * over nothing), so the case has gone once claimed.
 *
 * An interruption takes all the locks: if the select is still WAITING no
 * waker can claim it any more, and the task unlinks every node and
 * reports the interruption; otherwise a claim won the race, and it stands.
 *
 * A POLL case has no source to lock and no list: each time round, one
 * poll(2) with no wait says which descriptors are ready, before the locks
 * are taken (readiness is the kernel's, which no lock of ours orders).
 * When the select waits, each POLL case gets a one-shot POLL_ADD on the
 * task's ring, whose completion claims the select as a waker would; it
 * runs in the worker's dispatcher, on the thread the task is parked on
 * (an op in flight pins its task to its ring), so it never runs beside
 * the task's own look at the state. Before the select returns, the polls
 * still armed are cancelled and waited out: their records are on its
 * stack.
 */
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/fault.h"
#include "ring/op.h"
#include "runtime/worker.h"
#include "sync/select.h"
#include "sync/waitlist.h"

/* Waiter nodes for up to this many cases that are on sit on the caller's
 * stack; more take one allocation, made only when the select must wait. */
#define SELECT_ON_STACK 8

/* A per-thread xorshift that picks where the cases are tried from. Never
 * inlined: the task may move to another thread (DESIGN §6); it is called
 * once, before any wait. */
__attribute__((noinline)) static uint32_t next_random(void)
{
    static _Thread_local uint32_t x;
    if (!x)
        x = (uint32_t)(uintptr_t)&x | 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

/* The lock of case c's source; NULL for a POLL case, which has none. */
static unsigned *case_lock(const weft_select_case *c)
{
    switch (c->op) {
    case WEFT_SELECT_POLL:
        return NULL;
    case WEFT_SELECT_BROADCAST:
        return weft__broadcast_lock(c->sub);
    case WEFT_SELECT_JOIN:
        return weft__taskset_lock(c->set);
    case WEFT_SELECT_EVENT:
        return &c->event->_lock;
    case WEFT_SELECT_ACQUIRE:
        return &c->sem->_lock;
    case WEFT_SELECT_WAITGROUP:
        return &c->wg->_lock;
    default:
        return weft__chan_lock(c->chan);
    }
}

/* The channel, subscription, set, event, semaphore or wait group a case
 * is on (NULL when the caller left it out; the case itself for POLL). */
static const void *case_source(const weft_select_case *c)
{
    switch (c->op) {
    case WEFT_SELECT_POLL:
        return c;
    case WEFT_SELECT_BROADCAST:
        return c->sub;
    case WEFT_SELECT_JOIN:
        return c->set;
    case WEFT_SELECT_EVENT:
        return c->event;
    case WEFT_SELECT_ACQUIRE:
        return c->sem;
    case WEFT_SELECT_WAITGROUP:
        return c->wg;
    default:
        return c->chan;
    }
}

/* A case whose claim only says "look again": the select takes what is
 * there itself, under the source's lock, once woken. */
static bool claim_is_a_hint(const weft_select_case *c)
{
    return c->op == WEFT_SELECT_BROADCAST || c->op == WEFT_SELECT_JOIN;
}

/* The list case c's node waits in; NULL for a POLL case (its poll op
 * claims the select itself). */
static weft__waitlist *case_list(const weft_select_case *c)
{
    switch (c->op) {
    case WEFT_SELECT_POLL:
        return NULL;
    case WEFT_SELECT_RECV:
        return weft__chan_waiters(c->chan, false);
    case WEFT_SELECT_SEND:
        return weft__chan_waiters(c->chan, true);
    case WEFT_SELECT_JOIN:
        return weft__taskset_waiters(c->set);
    case WEFT_SELECT_EVENT:
        return &c->event->_waiters;
    case WEFT_SELECT_ACQUIRE:
        return &c->sem->_waiters;
    case WEFT_SELECT_WAITGROUP:
        return &c->wg->_waiters;
    default:
        return weft__broadcast_waiters(c->sub);
    }
}

/* 0 when the cases are well formed and at least one is on, else -EINVAL. */
static int check_cases(const weft_select_case *cases, size_t n)
{
    if (!cases || !n || n > WEFT_SELECT_MAX)
        return -EINVAL;
    bool any = false;
    unsigned polls = 0;
    for (size_t i = 0; i < n; i++) {
        const weft_select_case *c = &cases[i];
        if (!c->op)
            continue;
        /* The ops run from RECV (1) to POLL, the last. */
        if (c->op < WEFT_SELECT_RECV || c->op > WEFT_SELECT_POLL || !case_source(c))
            return -EINVAL;
        /* poll(2) cannot look at a direct descriptor. */
        if (c->op == WEFT_SELECT_POLL && (c->fd < 0 || weft_is_direct(c->fd) || !c->events ||
                                          c->events > 0xffffu || ++polls > WEFT_SELECT_POLL_MAX))
            return -EINVAL;
        /* Only a channel's and a broadcast's cases move an element (a
         * JOIN may drop the member's result). */
        if (!c->elem && c->op <= WEFT_SELECT_BROADCAST)
            return -EINVAL;
        /* A source whose claim is a hint (one message to read, one member
         * to join) could be claimed for two cases when there is one
         * thing to take: it may be in one case only. */
        if (claim_is_a_hint(c))
            for (size_t j = 0; j < i; j++)
                if (cases[j].op == c->op && case_source(&cases[j]) == case_source(c))
                    return -EINVAL;
        any = true;
    }
    return any ? 0 : -EINVAL;
}

/* The distinct locks of the cases that are on, but case `skip` (n: none),
 * in address order, into locks; returns how many. */
static size_t collect_locks(const weft_select_case *cases, size_t n, size_t skip, unsigned **locks)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!cases[i].op || i == skip)
            continue;
        unsigned *l = case_lock(&cases[i]);
        if (!l)
            continue;
        size_t at = count;
        while (at > 0 && (uintptr_t)locks[at - 1] > (uintptr_t)l)
            at--;
        if (at > 0 && locks[at - 1] == l)
            continue;
        for (size_t j = count; j > at; j--)
            locks[j] = locks[j - 1];
        locks[at] = l;
        count++;
    }
    return count;
}

static void lock_all(unsigned **locks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        weft__spin_lock(locks[i]);
}

static void unlock_all(unsigned **locks, size_t n)
{
    for (size_t i = n; i-- > 0;)
        weft__spin_unlock(locks[i]);
}

/* What a step made under the locks leaves to do after them: a waiter to
 * wake, chains of waiters to wake, a set's member to join. */
struct after {
    weft__waiter *wake;
    weft__waiter *chain;
    weft_task *member;
};

static void chain_append(weft__waiter **chain, weft__waiter *more)
{
    while (*chain)
        chain = &(*chain)->next;
    *chain = more;
}

/* Does what struct after holds, the locks dropped; a member is joined
 * into case c. */
static void after_unlock(struct after *a, weft_select_case *c)
{
    weft__waiter_wake(a->wake);
    weft__waiter_wake_chain(a->chain);
    if (a->member) {
        c->id = weft_task_id(a->member);
        /* Complete already: the join only takes the outcome. */
        c->result = weft_join(a->member, (void **)c->elem);
    }
    *a = (struct after){0};
}

/* ---- POLL cases -------------------------------------------------------------- */

/* A POLL case's one-shot POLL_ADD while the select waits. */
struct select_poll {
    weft__io io;              /* first: its op is the SQE's user_data */
    struct weft__select *sel; /* the select to claim; NULL once it no longer waits */
    weft__waiter *node;       /* the case's node, which gets the result */
};

/* The POLL cases of one select. */
struct select_polls {
    unsigned n;                          /* POLL cases that are on */
    unsigned armed;                      /* polls [0, armed) went to the ring */
    uint8_t which[WEFT_SELECT_POLL_MAX]; /* their cases */
    short ready[WEFT_SELECT_POLL_MAX];   /* revents at the last look, 0: not ready */
    struct select_poll op[WEFT_SELECT_POLL_MAX];
};

static void polls_find(struct select_polls *ps, const weft_select_case *cases, size_t n)
{
    ps->n = ps->armed = 0;
    for (size_t i = 0; i < n; i++)
        if (cases[i].op == WEFT_SELECT_POLL)
            ps->which[ps->n++] = (uint8_t)i;
}

/* Which descriptors are ready now: one poll(2) that does not wait. */
static void polls_look(struct select_polls *ps, const weft_select_case *cases)
{
    struct pollfd fds[WEFT_SELECT_POLL_MAX];
    for (unsigned k = 0; k < ps->n; k++) {
        const weft_select_case *c = &cases[ps->which[k]];
        fds[k] = (struct pollfd){.fd = c->fd, .events = (short)c->events};
    }
    bool looked = poll(fds, ps->n, 0) >= 0; /* else (no memory): none ready this time */
    for (unsigned k = 0; k < ps->n; k++)
        ps->ready[k] = looked ? fds[k].revents : 0;
}

/* Case i's revents at the last look (0: not ready, or no POLL case). */
static short polls_ready(const struct select_polls *ps, size_t i)
{
    for (unsigned k = 0; k < ps->n; k++)
        if (ps->which[k] == i)
            return ps->ready[k];
    return 0;
}

/* A poll's completion, in the worker's dispatcher: it claims the select
 * unless another case did, or the select stopped waiting on it. */
static void poll_complete(weft__op *op, int res, uint32_t cflags)
{
    struct select_poll *p = (struct select_poll *)op;
    struct weft__select *sel = p->sel;
    bool claimed = false;
    if (sel) {
        uint32_t waiting = WAITER_WAITING;
        /* Relaxed: the task reads what the claim wrote only after the
         * release store of DONE below. */
        claimed = atomic_compare_exchange_strong_explicit(
            &sel->state, &waiting, WAITER_CLAIMED, memory_order_relaxed, memory_order_relaxed);
        if (claimed) {
            sel->index = p->node->case_index;
            p->node->result = res;
        }
    }
    weft__io_complete(op, res, cflags); /* unpins and wakes the task */
    if (claimed)
        atomic_store_explicit(&sel->state, WAITER_DONE, memory_order_release);
}

/* Puts each POLL case's poll on the task's ring, to claim sel through its
 * node. 0, or why one could not go (-EAGAIN: no SQE; the task's
 * interruption), the ones before it armed. */
static int polls_arm(struct select_polls *ps, const weft_select_case *cases,
                     struct weft__select *sel, weft__waiter *const *nodes)
{
    for (unsigned k = 0; k < ps->n; k++) {
        const weft_select_case *c = &cases[ps->which[k]];
        struct select_poll *p = &ps->op[k];
        int err;
        struct io_uring_sqe *sqe = weft__io_begin(&p->io, IORING_OP_POLL_ADD, &err);
        if (!sqe)
            return err;
        io_uring_prep_poll_add(sqe, c->fd, c->events);
        p->io.op.complete = poll_complete;
        p->sel = sel;
        p->node = nodes[ps->which[k]];
        /* In flight, the poll pins the task to this ring: its completion
         * must run on the thread the task parks on. */
        p->io.pinning = true;
        p->io.task->ring_ops++;
        ps->armed = k + 1;
    }
    return 0;
}

/* Cancels the polls still armed and waits them out; their completions,
 * detached from the select first, leave its state alone. */
static void polls_disarm(struct select_polls *ps)
{
    if (!ps->armed)
        return; /* none (a plain thread never arms one) */
    weft__ring *ring = &weft__worker_self()->ring;
    bool sent[WEFT_SELECT_POLL_MAX];
    for (unsigned k = 0; k < ps->armed; k++) {
        ps->op[k].sel = NULL;
        /* All the cancels go at once; the waits below find most polls
         * done. One that got no SQE is not marked sent, and goes there. */
        sent[k] = !ps->op[k].io.done && weft__io_cancel_op(ring, &ps->op[k].io.op);
    }
    for (unsigned k = 0; k < ps->armed; k++)
        weft__io_abandon(&ps->op[k].io, 1, sent[k]);
    ps->armed = 0;
}

/* Case c's step that does not wait, under its lock: 0 (or the case's own
 * result: -EPIPE, -ECHILD, -EXDEV) or -EAGAIN, with c->result and
 * c->missed set unless -EAGAIN (a JOIN's result is set by after_unlock).
 * ready: a POLL case's revents at the last look. */
static int try_case(weft_select_case *c, struct after *a, short ready)
{
    int r;
    uint64_t missed = 0;
    weft__waiter *chain = NULL;
    switch (c->op) {
    case WEFT_SELECT_POLL:
        r = !ready ? -EAGAIN : (ready & POLLNVAL) ? -EBADF : (unsigned short)ready;
        break;
    case WEFT_SELECT_RECV:
        r = weft__chan_recv_locked(c->chan, c->elem, &a->wake);
        break;
    case WEFT_SELECT_SEND:
        r = weft__chan_send_locked(c->chan, c->elem, &a->wake);
        break;
    case WEFT_SELECT_JOIN:
        r = weft__taskset_take_locked(c->set, &a->member, &chain);
        chain_append(&a->chain, chain);
        break;
    case WEFT_SELECT_EVENT:
        r = weft__event_take_locked(c->event);
        break;
    case WEFT_SELECT_ACQUIRE:
        r = weft__sem_take_locked(c->sem);
        break;
    case WEFT_SELECT_WAITGROUP:
        r = weft__waitgroup_zero_locked(c->wg);
        break;
    default:
        r = weft__broadcast_read_locked(c->sub, c->elem, &missed);
        break;
    }
    if (r != -EAGAIN) {
        c->result = r;
        if (c->op == WEFT_SELECT_BROADCAST)
            c->missed = missed;
    }
    return r;
}

/* Under all the locks: tries the cases that are on, in a random order
 * (a Fisher-Yates shuffle, as Go's select makes), so that each of the
 * cases that can go is as likely to. Returns the index of the case that
 * went, or -EAGAIN. */
static int try_cases(weft_select_case *cases, size_t n, struct after *a,
                     const struct select_polls *ps)
{
    uint8_t order[WEFT_SELECT_MAX];
    size_t on = 0;
    uint32_t x = next_random();
    for (size_t i = 0; i < n; i++) {
        if (!cases[i].op)
            continue;
        /* Put i at a random place among the first on + 1: xorshift steps
         * inline, since next_random is kept out of line. */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        size_t j = x % (on + 1);
        order[on] = order[j];
        order[j] = (uint8_t)i;
        on++;
    }
    for (size_t i = 0; i < on; i++)
        if (try_case(&cases[order[i]], a, polls_ready(ps, order[i])) != -EAGAIN)
            return order[i];
    return -EAGAIN;
}

/* The waiter nodes: one per case that is on, on the stack for a few. */
struct select_nodes {
    weft__waiter *node[WEFT_SELECT_MAX]; /* by case; NULL for a case that is off */
    weft__waiter *allocated;
    weft__waiter on_stack[SELECT_ON_STACK];
};

static size_t cases_on(const weft_select_case *cases, size_t n)
{
    size_t on = 0;
    for (size_t i = 0; i < n; i++)
        on += cases[i].op != 0;
    return on;
}

/* Points each of the `on` cases that are on at a node: on the stack, or
 * in one allocation when more than SELECT_ON_STACK are on (only then can
 * it fail: -ENOMEM; else 0). */
static int nodes_get(struct select_nodes *sn, const weft_select_case *cases, size_t n, size_t on)
{
    weft__waiter *pool = sn->on_stack;
    sn->allocated = NULL;
    if (on > SELECT_ON_STACK) {
        pool = sn->allocated = weft__malloc(on * sizeof(weft__waiter));
        if (!pool)
            return -ENOMEM;
    }
    for (size_t i = 0, k = 0; i < n; i++)
        sn->node[i] = cases[i].op ? &pool[k++] : NULL;
    return 0;
}

/* Takes out every node of the select but case `keep`'s (n: all), under
 * the locks. */
static void unlink_nodes(const weft_select_case *cases, size_t n, struct select_nodes *sn,
                         size_t keep)
{
    for (size_t i = 0; i < n; i++)
        if (cases[i].op && cases[i].op != WEFT_SELECT_POLL && i != keep)
            waitlist_remove(case_list(&cases[i]), sn->node[i]);
}

/* Under the locks: the select starts (in) or stops (out) counting as a
 * joiner of its JOIN cases' sets, which a destroy waits for. It counts
 * from its first wait until it returns, retries included: a destroy
 * must not free a set the select is about to lock again. The chains to
 * wake (a destroy waiting for the last joiner) go into a->chain. */
static void count_as_joiner(const weft_select_case *cases, size_t n, bool in, struct after *a)
{
    for (size_t i = 0; i < n; i++) {
        if (cases[i].op != WEFT_SELECT_JOIN)
            continue;
        if (in)
            weft__taskset_joiner_in(cases[i].set);
        else
            chain_append(&a->chain, weft__taskset_joiner_out(cases[i].set));
    }
}

/* Whether a case other than `won` has won's lock. */
static bool lock_shared(const weft_select_case *cases, size_t n, size_t won)
{
    unsigned *l = case_lock(&cases[won]);
    if (!l)
        return false;
    for (size_t i = 0; i < n; i++)
        if (cases[i].op && i != won && case_lock(&cases[i]) == l)
            return true;
    return false;
}

/* self NULL: a foreign thread, which sleeps instead of parking, until
 * deadline (CLOCK_MONOTONIC, UINT64_MAX: none). wait false:
 * weft_try_select. */
static int select_run(weft_select_case *cases, size_t n, weft_task *self, bool wait,
                      uint64_t deadline)
{
    unsigned *locks[WEFT_SELECT_MAX];
    struct select_nodes sn;
    bool have_nodes = false;
    int r;

    struct after a = {0};
    bool counted = false; /* as a joiner of the JOIN cases' sets */
    struct select_polls ps;
    polls_find(&ps, cases, n);

    for (;;) {
        if (ps.n)
            polls_look(&ps, cases);
        size_t nlocks = collect_locks(cases, n, n, locks);
        lock_all(locks, nlocks);
        int k = try_cases(cases, n, &a, &ps);
        if (k != -EAGAIN || !wait) {
            if (counted)
                count_as_joiner(cases, n, false, &a);
            unlock_all(locks, nlocks);
            after_unlock(&a, k >= 0 ? &cases[k] : NULL);
            if (have_nodes)
                free(sn.allocated);
            return k;
        }
        /* Counted as a joiner from this first look at the sets until
         * the return: a destroy must not free a set the select will lock
         * again. */
        if (!counted)
            count_as_joiner(cases, n, true, &a);
        counted = true;
        if (!have_nodes) {
            /* Nodes are needed only now. On the stack they are had under
             * the locks; an allocation is made without them, and then
             * the cases are tried again. */
            size_t on = cases_on(cases, n);
            bool allocate = on > SELECT_ON_STACK;
            if (allocate)
                unlock_all(locks, nlocks);
            r = nodes_get(&sn, cases, n, on);
            if (r) {
                lock_all(locks, nlocks);
                count_as_joiner(cases, n, false, &a);
                unlock_all(locks, nlocks);
                after_unlock(&a, NULL);
                return r;
            }
            have_nodes = true;
            if (allocate)
                continue;
        }

        struct weft__select sel;
        atomic_init(&sel.state, WAITER_WAITING);
        sel.index = 0;
        for (size_t i = 0; i < n; i++) {
            weft__waiter *node = sn.node[i];
            if (!node)
                continue;
            waiter_init(node, self, cases[i].elem);
            node->sel = &sel;
            node->case_index = (unsigned)i;
            if (cases[i].op != WEFT_SELECT_POLL)
                waitlist_push(case_list(&cases[i]), node);
        }

        unlock_all(locks, nlocks);
        /* The polls go out once the nodes are linked (a thread has none:
         * POLL cases wait only in a task). A poll that cannot go ends the
         * wait as an interruption would. */
        r = polls_arm(&ps, cases, &sel, sn.node);

        for (;;) {
            /* A thread sleeps until claimed or past its deadline. */
            if (r == 0)
                r = self ? weft__task_park_interruptible()
                         : weft__waiter_sleep_until(&sel.state, deadline);
            /* Wakes may be spurious: the state decides. */
            if (atomic_load_explicit(&sel.state, memory_order_acquire) != WAITER_WAITING)
                break;
            if (r < 0) {
                lock_all(locks, nlocks);
                bool still_waiting =
                    atomic_load_explicit(&sel.state, memory_order_relaxed) == WAITER_WAITING;
                if (still_waiting) {
                    unlink_nodes(cases, n, &sn, n);
                    count_as_joiner(cases, n, false, &a);
                }
                unlock_all(locks, nlocks);
                if (still_waiting) {
                    polls_disarm(&ps);
                    after_unlock(&a, NULL);
                    free(sn.allocated);
                    return r;
                }
                break; /* a claim won the race: it stands */
            }
        }
        weft__waiter_wait_done(&sel.state);
        polls_disarm(&ps);

        size_t won = sel.index;
        weft_select_case *c = &cases[won];
        /* The other nodes come out under their own locks. The winning
         * case's lock is left alone unless it is needed (a broadcast's
         * read, a set's join, or another case on the same source): its
         * claimer may have freed a channel right after its send, as a
         * plain receiver allows. */
        bool hint = claim_is_a_hint(c);
        nlocks = collect_locks(cases, n, hint || lock_shared(cases, n, won) ? n : won, locks);
        lock_all(locks, nlocks);
        unlink_nodes(cases, n, &sn, won);
        if (!hint) {
            /* The claimer moved the element (or found the channel closed). */
            c->result = sn.node[won]->result;
            count_as_joiner(cases, n, false, &a);
            unlock_all(locks, nlocks);
            after_unlock(&a, NULL);
            free(sn.allocated);
            return (int)won;
        }
        /* A send, a member's end or the set emptying claimed it: there
         * is something to take, unless another reader of the
         * subscription (a caller bug) or another joiner of the set took
         * it meanwhile, and then the select starts again. */
        r = try_case(c, &a, 0);
        if (r != -EAGAIN)
            count_as_joiner(cases, n, false, &a);
        unlock_all(locks, nlocks);
        after_unlock(&a, c);
        if (r != -EAGAIN) {
            free(sn.allocated);
            return (int)won;
        }
    }
}

int weft_select(weft_select_case *cases, size_t n)
{
    int r = check_cases(cases, n);
    if (r)
        return r;
    weft_task *self;
    r = weft__task_enter(&self);
    if (r)
        return r;
    return select_run(cases, n, self, true, UINT64_MAX);
}

/* A JOIN case joins a member, which takes a task; so does a POLL case's
 * wait (its poll goes on the task's ring) but not its look. */
static bool needs_task(const weft_select_case *cases, size_t n, bool wait)
{
    for (size_t i = 0; i < n; i++)
        if (cases[i].op == WEFT_SELECT_JOIN || (wait && cases[i].op == WEFT_SELECT_POLL))
            return true;
    return false;
}

int weft_try_select(weft_select_case *cases, size_t n)
{
    int r = check_cases(cases, n);
    if (r)
        return r;
    weft_task *self = weft__task_current();
    if (!self && needs_task(cases, n, false))
        return -EPERM;
    return select_run(cases, n, self, false, UINT64_MAX);
}

int weft_select_blocking_for(weft_select_case *cases, size_t n, uint64_t timeout_ns)
{
    int r = check_cases(cases, n);
    if (r)
        return r;
    if (weft__task_current())
        WEFT__IN_TASK_FOR(timeout_ns, weft_select(cases, n));
    if (weft__worker_self() || weft__thread_hosts_executor())
        return -EDEADLK;
    if (needs_task(cases, n, true))
        return -EPERM;
    return select_run(cases, n, NULL, true, weft__deadline_after(timeout_ns));
}

int weft_select_blocking(weft_select_case *cases, size_t n)
{
    return weft_select_blocking_for(cases, n, UINT64_MAX);
}
