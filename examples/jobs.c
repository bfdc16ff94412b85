/* jobs.c - run shell commands in parallel, N at a time, each under a time
 * limit, as `xargs -P` or a CI step runner does.
 *
 * What it shows:
 *  - child processes (weft/process.h): each job is `/bin/sh -c CMD` with
 *    its stdout and stderr on pipes, in a process group of its own.
 *    weft_process_output reads both pipes at once and waits for the exit;
 *    wait_delay_ns stops the read when a background process the job left
 *    behind holds the pipes (that process is then killed with the group);
 *    weft_process_stop ends a job that ran too long: SIGTERM to its group,
 *    a grace, then SIGKILL;
 *  - a task set (weft_taskset_*) that joins the jobs in the order they
 *    finish, so that at most N run at once;
 *  - a clean stop: SIGINT or SIGTERM cancels every job, and each stops its
 *    child in shielded cleanup code, so no process is left behind.
 *
 * usage: weft_jobs N TIMEOUT_MS CMD...
 *   As each job ends it prints "[k] exit S" ("killed by SIGNAME", "timed
 *   out", "stopped", "could not start: REASON"), then its stdout lines as
 *   "[k] LINE" and its stderr lines as "[k]! LINE"; at the end "ok A,
 *   failed B, timed out C". Exits 0 when every job exited 0, 1 otherwise,
 *   130 when interrupted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <weft.h>

#define MS 1000000ull

struct job {
    int k;           /* 1-based, in the order given */
    const char *cmd; /* run as /bin/sh -c cmd */
    uint64_t id;     /* its task's id in the set */
    uint64_t timeout_ns;
    int err; /* 0, or why it could not start (-errno) */
    bool started, timed_out, stopped;
    int status; /* waitpid's, once it ran */
    weft_output out;
};

/* A job: the command's output and status, or its stop when it runs too
 * long or the job is cancelled (Ctrl-C). */
static void *run_job(void *arg)
{
    struct job *j = arg;
    j->started = true;
    char *argv[] = {"sh", "-c", (char *)j->cmd, NULL};
    weft_process_opts o = {.stdio = {WEFT_STDIO_NULL, WEFT_STDIO_PIPE, WEFT_STDIO_PIPE},
                           .new_process_group = true,
                           .wait_delay_ns = 200 * MS};
    weft_process *p;
    j->err = weft_process_spawn(&p, "/bin/sh", argv, &o);
    if (j->err)
        return NULL;
    int r = weft_deadline_push_in(j->timeout_ns);
    if (r == 0) {
        r = weft_process_output(p, &j->out, &j->status);
        weft_deadline_pop();
    }
    if (r == 0 && j->out.held_open) /* a background job holds the pipes */
        (void)weft_process_kill_group(p, SIGKILL);
    if (r) {
        /* Too long, or cancelled: stop it, whatever interrupts us now. */
        j->timed_out = r == -ETIMEDOUT;
        j->stopped = !j->timed_out;
        weft_shield_push();
        if (weft_deadline_suspend() == 0) {
            (void)weft_process_stop(p, SIGTERM, 500 * MS, &j->status);
            weft_deadline_pop();
        }
        weft_shield_pop();
    }
    weft_process_destroy(p); /* kills and reaps what a failed stop left */
    return NULL;
}

/* Prints text, line by line, each with prefix. */
static void print_lines(const char *prefix, const char *text)
{
    while (text && *text) {
        const char *nl = strchr(text, '\n');
        int len = nl ? (int)(nl - text) : (int)strlen(text);
        printf("%s %.*s\n", prefix, len, text);
        text += len + (nl != NULL);
    }
}

/* Prints what a job did; returns 1 when it exited 0. */
static int report(const struct job *j)
{
    char tag[32];
    snprintf(tag, sizeof tag, "[%d]", j->k);
    if (!j->started)
        printf("%s not started\n", tag);
    else if (j->err)
        printf("%s could not start: %s\n", tag, strerror(-j->err));
    else if (j->timed_out)
        printf("%s timed out\n", tag);
    else if (j->stopped)
        printf("%s stopped\n", tag);
    else if (WIFSIGNALED(j->status))
        printf("%s killed by SIG%s\n", tag, sigabbrev_np(WTERMSIG(j->status)));
    else
        printf("%s exit %d\n", tag, WEXITSTATUS(j->status));
    print_lines(tag, j->out.out);
    snprintf(tag, sizeof tag, "[%d]!", j->k);
    print_lines(tag, j->out.err);
    fflush(stdout);
    return j->started && !j->err && !j->timed_out && !j->stopped && WIFEXITED(j->status) &&
           WEXITSTATUS(j->status) == 0;
}

static bool interrupted;

/* Waits for SIGINT or SIGTERM, then cancels every job. */
static void *watch_signals(void *arg)
{
    int sigs[] = {SIGINT, SIGTERM};
    if (weft_signal_wait_any(sigs, 2) > 0) {
        interrupted = true;
        weft_taskset_cancel_all(arg);
    }
    return NULL;
}

struct args {
    int n, ncmd;
    uint64_t timeout_ns;
    char **cmds;
};

static void *jobs_main(void *arg)
{
    struct args *a = arg;
    struct job *jobs = calloc((size_t)a->ncmd, sizeof *jobs);
    weft_taskset *set;
    if (!jobs || weft_taskset_create(&set) != 0) {
        fprintf(stderr, "weft_jobs: out of memory\n");
        return (void *)1;
    }
    weft_task *watcher;
    if (weft_spawn(&watcher, watch_signals, set) != 0) {
        fprintf(stderr, "weft_jobs: cannot watch signals\n");
        return (void *)1;
    }
    int next = 0, running = 0, ok = 0, timed_out = 0, ended = 0;
    for (;;) {
        while (running < a->n && next < a->ncmd && !interrupted) {
            struct job *j = &jobs[next];
            *j = (struct job){.k = next + 1, .cmd = a->cmds[next], .timeout_ns = a->timeout_ns};
            if (weft_taskset_spawn(set, NULL, run_job, j, &j->id) != 0)
                break;
            next++;
            running++;
        }
        weft_taskset_joined done;
        if (weft_taskset_join_next_ex(set, &done, 0) == -ECHILD)
            break;
        running--;
        for (int i = 0; i < next; i++) {
            if (jobs[i].id != done.id)
                continue;
            ok += report(&jobs[i]);
            timed_out += jobs[i].timed_out;
            ended++;
            weft_output_free(&jobs[i].out);
        }
        free(done.panic_message);
    }
    weft_cancel(watcher);
    weft_join(watcher, NULL);
    weft_taskset_destroy(set);
    printf("ok %d, failed %d, timed out %d%s\n", ok, ended - ok - timed_out, timed_out,
           interrupted ? " (interrupted)" : "");
    free(jobs);
    return (void *)(intptr_t)(interrupted ? 130 : ok == a->ncmd ? 0 : 1);
}

int main(int argc, char **argv)
{
    struct args a = {.n = argc > 1 ? atoi(argv[1]) : 0,
                     .timeout_ns = argc > 2 ? strtoull(argv[2], NULL, 10) * MS : 0,
                     .ncmd = argc - 3,
                     .cmds = argv + 3};
    if (argc < 4 || a.n < 1 || a.timeout_ns == 0) {
        fprintf(stderr, "usage: %s N TIMEOUT_MS CMD...\n", argv[0]);
        return 2;
    }
    /* Caught from the start: a Ctrl-C before the watcher waits is kept. */
    int sigs[] = {SIGINT, SIGTERM};
    weft_config cfg = {.catch_signals = sigs, .ncatch_signals = 2};
    void *res = NULL;
    int r = weft_run(&cfg, jobs_main, &a, &res);
    if (r) {
        fprintf(stderr, "weft_jobs: %s\n", weft_strerror(r));
        return 1;
    }
    return (int)(intptr_t)res;
}
