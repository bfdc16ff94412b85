/* weft_panic: end the current task with a message. Under WEFT_PANIC_CATCH the
 * task finishes right here on its own (deep) stack: its children are awaited
 * and its defers run, nothing above the panic point runs again. Under
 * WEFT_PANIC_ABORT the message is printed, the task and its subtree are
 * cancelled and its children awaited, its defers run (DESIGN §3: it
 * unwinds, then the process aborts), and the process aborts. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/fault.h"
#include "observe/trace.h"
#include "runtime/worker.h"
#include "task/task.h"

#define PANIC_MSG_MAX 512

static void announce(const weft_task *t, const char *msg)
{
    if (t)
        fprintf(stderr, "weft: task %llu '%s' panicked: %s\n",
                (unsigned long long)t->entity.task_id, t->name ? t->name : "", msg);
    else
        fprintf(stderr, "weft: panic outside a task: %s\n", msg);
    fflush(stderr);
}

_Noreturn static void stop(void)
{
    weft__trace_abort(weft__worker_self());
    abort();
}

_Noreturn static void die(const weft_task *t, const char *msg)
{
    announce(t, msg);
    stop();
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
    if (!t)
        die(t, buf);
    if (t->run_flags & (TASK_R_PANICKED | TASK_R_FINISHING))
        die(t, buf); /* a panic while ending (in a defer): nothing sane is left */
    if (w->rt->cfg.on_panic != WEFT_PANIC_CATCH) {
        /* Said first, so that a defer that hangs or panics in turn cannot
         * hide it; a panic in a defer then dies at once (above). */
        announce(t, buf);
        t->run_flags |= TASK_R_PANICKED | TASK_R_FINISHING;
        /* Defers run after the children are gone (a defer may free what
         * they use), as at any end: cancel the task with its subtree and
         * wait for the children. The task's own cancellation makes a
         * blocking call in a defer return at once rather than hold the
         * abort up. */
        weft__tree_cancel(t, NULL);
        while (weft__tree_wait_kids_arm(w->rt, t))
            weft__task_park();
        weft__task_run_defers(t);
        stop();
    }
    char *msg = weft__malloc(PANIC_MSG_MAX);
    if (msg)
        snprintf(msg, PANIC_MSG_MAX, "%s", buf);
    t->panic_msg = msg; /* NULL if memory is that short: the outcome still says it */
    t->run_flags |= TASK_R_PANICKED;
    weft__task_finish(t, NULL);
}
