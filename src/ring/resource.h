/* Ring-bound resources and their asynchronous cleanup (internal).
 *
 * Streams, tickers, buffer leases and direct descriptors belong to one
 * worker's ring and to the task that holds them (t->ring_bound counts them;
 * such a task never migrates). Releasing one may need an op on that ring
 * (ASYNC_CANCEL, POLL_REMOVE, TIMEOUT_REMOVE, CLOSE of a direct slot), which
 * must not block the releasing code: the op is queued for the worker's
 * maintenance task (DESIGN §5), which submits the queue as one batch and
 * applies the on_cleanup_error policy. The maintenance task is spawned on
 * the first job and ends when the worker has nothing else left.
 */
#ifndef WEFT_RING_RESOURCE_H
#define WEFT_RING_RESOURCE_H

#include <stdbool.h>
#include <stdint.h>

struct weft__worker;
struct weft_task;

/* A resource a task holds in a list (streams and tickers): released for
 * the task if it ends still holding it. */
typedef struct weft__resource {
    struct weft__resource *next, *prev;
    void (*release)(struct weft__resource *r);
} weft__resource;

/* Links r to t (allocating t's extension block): 0 or -ENOMEM. Counts one
 * in t->ring_bound. */
int weft__resource_attach(struct weft_task *t, weft__resource *r);
void weft__resource_detach(struct weft_task *t, weft__resource *r);

/* A cleanup op, embedded in the object it cleans up after. That object
 * lives until both its op has ended (weft__cleanup_target_ended) and the
 * maintenance task is done with the job; then release frees it. */
typedef struct weft__cleanup {
    struct weft__cleanup *next;
    uint8_t opcode;    /* IORING_OP_ASYNC_CANCEL, _POLL_REMOVE or _TIMEOUT_REMOVE */
    bool queued;       /* in the maintenance task's hands */
    bool target_ended; /* the op's last CQE was reaped */
    bool abandoned;    /* given up on (policy): on w->abandoned until its op ends */
    uint64_t target;   /* user_data of the op to cancel or remove */
    unsigned tries;
    void (*release)(struct weft__cleanup *c);
    struct weft__cleanup *anext, *aprev; /* w->abandoned list */
} weft__cleanup;

/* Queues c on w's maintenance task (spawning it if needed). Never blocks,
 * never fails: the job is retried until it is done or the policy says
 * otherwise. */
void weft__cleanup_queue(struct weft__worker *w, weft__cleanup *c);
/* Queues a CLOSE of direct slot on w. */
void weft__cleanup_close_direct(struct weft__worker *w, unsigned slot);
/* The worker loop calls this when it has nothing to run: lets an idle
 * maintenance task end once the worker's user tasks are all done. */
void weft__maintenance_idle(struct weft__worker *w);

/* The op c cleans up after has posted its last CQE: releases c's object
 * now, or once the maintenance task is done with the job. */
void weft__cleanup_target_ended(struct weft__worker *w, weft__cleanup *c);
/* Releases the objects whose cleanup was given up on; after the ring is
 * gone, when no CQE can come any more. */
void weft__cleanup_fini(struct weft__worker *w);

/* Releases everything t still holds (streams, tickers, leases, direct
 * descriptors); called as t ends, on its own stack, or for a task that
 * never started, from its owner's loop. */
void weft__resources_release(struct weft__worker *w, struct weft_task *t);

/* Before an op that makes a direct descriptor: -ENXIO when the calling
 * worker's ring has no file table, else 0 (other misuse is the op's to
 * report). */
int weft__direct_table_check(void);

/* Direct descriptor ownership. adopt: a CQE's result that is a slot made
 * by the calling task becomes that task's, encoded with WEFT_DIRECT_BIT;
 * an error result passes through. */
int weft__direct_adopt(int res);
void weft__direct_forget(struct weft__worker *w, unsigned slot);
void weft__direct_release_all(struct weft__worker *w, struct weft_task *t);

/* Where n ring tags for direct descriptors (op.h) start, 0..1022, for a
 * runtime of n workers (at most WEFT_MAX_WORKERS, 1,023): worker i's ring
 * gets weft__direct_tag_of(first, i), so the rings of one runtime never
 * share one, and runtimes made one after another get the next ones. */
unsigned weft__direct_tags_take(unsigned n);
static inline unsigned weft__direct_tag_of(unsigned first, unsigned index)
{
    return (first + index) % 1023 + 1;
}

/* Buffer leases (bufring.c). */
void weft__leases_release_all(struct weft__worker *w, struct weft_task *t);

#endif
