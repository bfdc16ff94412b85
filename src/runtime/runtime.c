/* weft_run: build a runtime, run the main task to the end of its subtree,
 * tear everything down. Until the multi-worker runtime lands there is one
 * worker and it runs on the calling thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <weft/runtime.h>

#include "common/fault.h"
#include "runtime/config.h"
#include "runtime/worker.h"

static void init_pseudo_root(weft_task *t)
{
    memset(t, 0, sizeof *t);
    atomic_init(&t->state, TASK_RUNNING | TASK_REF_ONE);
#ifndef NDEBUG
    t->magic = TASK_MAGIC_LIVE;
#endif
    t->flags = TASK_F_ROOT;
}

int weft__runtime_setup(weft__runtime *rt, const weft_config *cfg)
{
    int r = weft__config_resolve(cfg, &rt->cfg);
    if (r < 0)
        return r;
    rt->default_stack_class = weft__stack_class(rt->cfg.stack_size);
    atomic_init(&rt->next_task_id, 1);
    init_pseudo_root(&rt->root);
    init_pseudo_root(&rt->orphans);
    return 0;
}

int weft_run(const weft_config *cfg, weft_fn main_fn, void *arg, void **result)
{
    if (result)
        *result = NULL;
    if (weft__worker_self())
        return -EBUSY;
    weft__runtime *rt = weft__calloc(1, sizeof *rt);
    if (!rt)
        return -ENOMEM;
    int r = weft__runtime_setup(rt, cfg);
    if (r == 0 && !main_fn)
        r = -EINVAL;
    if (r == 0 && rt->cfg.workers > 1)
        r = -ENOTSUP; /* the multi-worker runtime is not built yet */
    if (r < 0) {
        free(rt);
        return r;
    }
    rt->nworkers = 1;
    rt->workers = weft__calloc(rt->nworkers, sizeof(weft__worker));
    if (!rt->workers) {
        free(rt);
        return -ENOMEM;
    }
    weft__worker *w = &rt->workers[0];
    r = weft__worker_init(w, rt, 0, false);
    if (r < 0) {
        free(rt->workers);
        free(rt);
        return r;
    }
    weft__worker_set_self(w);

    weft_task *main_task = NULL;
    weft_spawn_opts opts = {.name = "main"};
    r = weft_spawn_ex(&main_task, &opts, main_fn, arg);
    if (r == 0) {
        rt->main_task = main_task;
        r = weft__worker_run(w);
    }
    if (r == 0) {
        r = main_task->outcome;
        if (result)
            *result = main_task->result;
        /* Drop the handle the runtime held; the record is freed here. */
        atomic_fetch_and_explicit(&main_task->state, ~TASK_JOIN_INTEREST, memory_order_relaxed);
        weft__task_ref_drop(main_task);
    }
    weft__worker_set_self(NULL);
    weft__worker_fini(w);
    free(rt->workers);
    free(rt);
    return r;
}

int weft_worker_index(void)
{
    weft__worker *w = weft__worker_self();
    return w && w->current ? (int)w->index : -EPERM;
}

unsigned weft_worker_count(void)
{
    weft__worker *w = weft__worker_self();
    return w ? w->rt->nworkers : 0;
}
