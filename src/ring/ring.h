/* A worker's io_uring (internal).
 *
 * Every submitted SQE carries a pointer to a weft__op as user_data; the op
 * record lives wherever its owner keeps it (a waiting task's stack, the
 * worker). Completions are dispatched by calling op->complete. SQEs are
 * batched: they go to the kernel at scheduling points and before parking.
 */
#ifndef WEFT_RING_RING_H
#define WEFT_RING_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct weft__op weft__op;
struct weft__op {
    void (*complete)(weft__op *op, int res, uint32_t cflags);
    /* The opcode + 1 when the op was counted in weft__ring.ops, so that
     * its completions are counted by opcode too; 0 for the ring's own
     * (wake-up reads). */
    uint8_t counted;
};

/* Opcodes weft knows by number (the kernel's IORING_OP_LAST may be larger). */
#define WEFT__MAX_OPCODES 128

/* user_data of the CQE another worker posts with MSG_RING to end this
 * ring's wait; it belongs to no op. */
#define WEFT__RING_WAKE_TAG 1ull

typedef struct weft__ring {
    struct io_uring uring;
    unsigned setup_flags;                       /* the IORING_SETUP_* flags the kernel accepted */
    uint64_t supported[WEFT__MAX_OPCODES / 64]; /* opcode bitmap from the probe */
    unsigned direct_slots;                      /* size of the registered (sparse) file table */
    unsigned direct_tag;   /* 1..1023: names this ring in its direct descriptors
                              (its worker sets it: weft__direct_tags_take) */
    unsigned buffer_slots; /* size of the registered (sparse) buffer table */
    /* By buffer slot: 0 free, BUFFER_USED registered by
     * weft_buffers_register, BUFFER_ORPHAN left by a registration that
     * failed (io/ops_misc.c). */
    unsigned char *buffer_used;
    uint64_t ops[WEFT__MAX_OPCODES]; /* ops issued, by opcode */
    /* By opcode: ops whose last CQE was reaped, and CQEs with -ECANCELED /
     * with another negative result. */
    uint64_t ops_done[WEFT__MAX_OPCODES], ops_cancelled[WEFT__MAX_OPCODES],
        ops_failed[WEFT__MAX_OPCODES];
    unsigned pending_sqes; /* prepared, not yet submitted */
    uint64_t inflight;     /* submitted, completion not yet reaped */
    uint64_t sq_full;      /* times a full SQ forced an early submit */
    uint64_t cq_overflow;  /* times the kernel reported CQ overflow */
    uint64_t cqes;         /* completions dispatched */
    int event_fd;          /* embedded rings: signalled on completions, else -1 */
    bool park_in_poll;     /* WEFT__RING_POLL_PARKED: weft__ring_wait sleeps in ppoll */
    /* A MSG_RING this ring sent to wake worker `index` failed. */
    void (*wake_failed)(struct weft__ring *r, unsigned index);
    /* In the process's list of weft's rings (weft__ring_is_weft). */
    struct weft__ring *listed_prev, *listed_next;
    bool listed;
} weft__ring;

/* How the thread that owns a ring sleeps while it waits for completions. */
typedef enum weft__ring_kind {
    /* In io_uring_enter (weft__ring_wait). */
    WEFT__RING_PARKED,
    /* In ppoll(2) on the ring's fd (weft__ring_wait), then a non-blocking
     * io_uring_enter: for tools that do not know io_uring_enter blocks.
     * Valgrind 3.19 keeps its global lock through it, so a worker parked
     * there would stop every other thread of the process. */
    WEFT__RING_POLL_PARKED,
    /* In a host event loop's poll: the ring's completions make an eventfd
     * registered with it (r->event_fd) readable. */
    WEFT__RING_EMBEDDED,
} weft__ring_kind;

/* Sets up the ring with the best flags the kernel accepts: SINGLE_ISSUER +
 * DEFER_TASKRUN (6.1), COOP_TASKRUN (5.19), SUBMIT_ALL (5.18), falling back
 * step by step. Must be called on the thread that will use it. Returns 0 or
 * -errno from io_uring_setup.
 * The rings that sleep outside io_uring_enter (POLL_PARKED, EMBEDDED) need
 * their completions posted while the thread sleeps there, which
 * DEFER_TASKRUN and COOP_TASKRUN prevent, so they use neither. */
int weft__ring_init(weft__ring *r, unsigned entries, weft__ring_kind kind);
void weft__ring_fini(weft__ring *r);
/* Whether fd is any descriptor (its number or a dup) of a ring weft set up
 * in this process, in any runtime or executor: a MSG_RING to it would post
 * a CQE whose user_data that ring takes for an op of its own. Where the
 * kernel cannot compare files (no kcmp), only the numbers are compared. */
bool weft__ring_is_weft(int fd);
/* Registers a sparse file table of direct_fds slots (kernel-allocated, see
 * IORING_FILE_INDEX_ALLOC) and a sparse buffer table of buffers slots.
 * Either may fail on an old kernel: the size stays 0 and the ops that need
 * it return -ENXIO. */
void weft__ring_register_tables(weft__ring *r, unsigned direct_fds, unsigned buffers);

static inline bool weft__ring_supports(const weft__ring *r, unsigned opcode)
{
    return opcode < WEFT__MAX_OPCODES && (r->supported[opcode / 64] >> (opcode % 64) & 1);
}

/* A fresh SQE with user_data = op. A full SQ is submitted and retried.
 * Returns NULL under fault injection (WEFT_FAULT_SQE), or when submitting
 * to make room keeps failing (see ring.c): callers treat both alike. */
struct io_uring_sqe *weft__ring_sqe(weft__ring *r, weft__op *op);

/* Hands prepared SQEs to the kernel without waiting. */
int weft__ring_submit(weft__ring *r);
/* The same, after running the ring's pending task work, which DEFER_TASKRUN
 * runs only inside a GETEVENTS enter. A multishot timeout that fired is off
 * the kernel's list until that task work re-arms it, and a TIMEOUT_REMOVE
 * meanwhile finds nothing (-ENOENT); submitted right after
 * the re-arm, it finds the timer unless the period is shorter than the gap
 * between the two system calls. Completions it posts are reaped later. */
int weft__ring_submit_rearmed(weft__ring *r);

/* Submits pending SQEs, waits up to timeout_ns for at least one completion
 * (0 = do not wait, UINT64_MAX = no timeout) and dispatches every completion
 * that is ready. Returns the number dispatched or -errno. */
int weft__ring_wait(weft__ring *r, uint64_t timeout_ns);

#endif
