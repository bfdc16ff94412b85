/* weft_panic: end the current task with a message. Under WEFT_PANIC_CATCH the
 * task finishes right here on its own (deep) stack: its children are awaited
 * and its defers run, nothing above the panic point runs again. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/fault.h"
#include "observe/trace.h"
#include "runtime/worker.h"
#include "task/task.h"

#define PANIC_MSG_MAX 512

_Noreturn static void die(const weft_task *t, const char *msg)
{
    weft__trace_abort(weft__worker_self());
    if (t)
        fprintf(stderr, "weft: task %llu '%s' panicked: %s\n",
                (unsigned long long)t->entity.task_id, t->name ? t->name : "", msg);
    else
        fprintf(stderr, "weft: panic outside a task: %s\n", msg);
    fflush(stderr);
    abort();
}

void weft_panic(const char *fmt, ...)
{
    char buf[PANIC_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);

    weft__worker *w = weft__worker_self();
    weft_task *t = w ? w->current : NULL;
    if (!t || w->rt->cfg.on_panic != WEFT_PANIC_CATCH)
        die(t, buf);
    if (t->run_flags & (TASK_R_PANICKED | TASK_R_FINISHING))
        die(t, buf); /* a panic while ending (in a defer): nothing sane is left */
    char *msg = weft__malloc(PANIC_MSG_MAX);
    if (msg)
        snprintf(msg, PANIC_MSG_MAX, "%s", buf);
    t->panic_msg = msg; /* NULL if memory is that short: the outcome still says it */
    t->run_flags |= TASK_R_PANICKED;
    weft__task_finish(t, NULL);
}
