/* Task records come from per-worker slabs: chunks carved front to back, with
 * a free list for reuse. malloc/free was a third of a spawn+join's
 * instructions, and returning memory to the kernel between bursts only meant
 * paying the first-touch faults again. Chunks are released when the runtime
 * ends, which also reclaims records behind handles that were never joined. */
#ifndef WEFT_TASK_RECORD_H
#define WEFT_TASK_RECORD_H

#include "task/task.h"

#define WEFT_RECORD_QUARANTINE 1024

typedef struct weft__record_pool {
    void *chunks;    /* list through each chunk's first word */
    weft_task *free; /* reusable records, linked through rq_next */
    char *carve, *carve_end;
    size_t chunk_bytes; /* size of the newest chunk */
    /* Records taken from this pool less records freed into it. A record
     * may be freed into another worker's pool: only the sum over a
     * runtime's pools counts the records still held (by handles never
     * joined or detached). */
    int64_t outstanding;
#ifndef NDEBUG
    /* Debug builds hold freed records back, marked dead, so that a join or
     * detach through a stale handle is reported instead of aliasing a new
     * task. */
    weft_task *quarantine[WEFT_RECORD_QUARANTINE];
    unsigned quarantine_next;
#endif
} weft__record_pool;

/* Returns an uninitialised record, or NULL when memory runs out. */
weft_task *weft__record_alloc(weft__record_pool *p);
/* Frees what the record owns (name, panic message, deadline stack) and
 * makes it reusable. */
void weft__record_free(weft__record_pool *p, weft_task *t);
/* Frees only what the record owns, for a record dropped on a thread with no
 * worker of its runtime: the record itself goes back through its owner
 * (weft__task_free). */
void weft__record_release_owned(weft_task *t);
/* Releases the chunks, and first, when records_held (the runtime's pools
 * together have records outstanding), what their records still own: those
 * of finished tasks whose handles were never joined or detached. The walk
 * over every record costs about 25 ms a million records. */
void weft__record_pool_fini(weft__record_pool *p, bool records_held);

#endif
