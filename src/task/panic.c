/* weft_panic: end the current task with a message. Under WEFT_PANIC_CATCH the
 * task finishes right here on its own (deep) stack: its children are awaited
 * and its defers run, nothing above the panic point runs again. Under
 * WEFT_PANIC_ABORT the message is printed, the task's defers run (DESIGN
 * §3: it unwinds, then the process aborts) unless it has live children,
 * and the process aborts. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/fault.h"
#include "common/utf8.h"
#include "observe/trace.h"
#include "runtime/worker.h"
#include "task/task.h"

#define PANIC_MSG_MAX 512

static void announce(const weft_task *t, const char *msg)
{
    if (t) {
        /* The name on one line, as in the task dump (the message is the
         * program's own words, printed as they are). */
        fprintf(stderr, "weft: task %llu '", (unsigned long long)t->entity.task_id);
        weft__write_one_line(stderr, t->name ? t->name : "", true);
        fprintf(stderr, "' panicked: %s\n", msg);
    } else
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
        /* Defers run only after the children are gone (a defer may free
         * what they use). Waiting for them here could hang the abort (a
         * shielded child waiting for a lock this task holds), and a child
         * that panics as it is cancelled would abort first: so a task with
         * live children skips its defers, and says so. The task alone is
         * cancelled, so that a blocking call in a defer returns at once. */
        atomic_fetch_or_explicit(&t->state, TASK_CANCELLED, memory_order_acq_rel);
        if (t->defers && weft__tree_has_live_children(t)) {
            fputs("weft: its defers are not run: it has live children, which may use what "
                  "they free\n",
                  stderr);
            fflush(stderr);
        } else {
            weft__task_run_defers(t);
        }
        stop();
    }
    char *msg = weft__malloc(PANIC_MSG_MAX);
    if (msg)
        snprintf(msg, PANIC_MSG_MAX, "%s", buf);
    t->panic_msg = msg; /* NULL if memory is that short: the outcome still says it */
    t->run_flags |= TASK_R_PANICKED;
    weft__task_finish(t, NULL);
}
