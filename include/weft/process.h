/* weft/process.h - child processes: start a program with pipes to its
 * standard streams, wait for its exit, signal it, collect its output.
 *
 * A weft_process owns a pidfd for the child, so a signal or a wait can
 * never reach another process that was given the same pid later, and the
 * parent's ends of the pipes it made. Waiting parks the task on the pidfd
 * (no thread blocks, no SIGCHLD handler is installed); from a plain thread
 * the waits block. docs/blocking.md, "Child processes", has the long form.
 *
 * The pidfd needs Linux 5.4 (pidfd_open and waitid's P_PIDFD). Where it
 * cannot be had (pidfd_open unknown: valgrind 3.19 or an older kernel; no
 * descriptor left) the child is held by its pid instead: waits in a task
 * then look again after naps of 1 to 32 ms, and a signal reaches the pid
 * while the child is not reaped; reap children only through weft then
 * (docs/blocking.md: a pid reaped elsewhere may be reused).
 */
#ifndef WEFT_PROCESS_H
#define WEFT_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <weft/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_process weft_process;

/* What one of the child's standard streams is. */
typedef enum weft_stdio {
    WEFT_STDIO_INHERIT = 0, /* the program's own descriptor */
    WEFT_STDIO_PIPE,        /* a pipe; weft_process_fd gives the parent's end */
    WEFT_STDIO_NULL,        /* /dev/null */
    WEFT_STDIO_FD,          /* the program's descriptor opts.fd[stream], duplicated */
} weft_stdio;

/* Stream numbers for stdio[], fd[], weft_process_fd and _close_fd. */
#define WEFT_STDIN  0
#define WEFT_STDOUT 1
#define WEFT_STDERR 2

/* Zeroed, or NULL: inherit all three streams, environment and directory. */
typedef struct weft_process_opts {
    weft_stdio stdio[3]; /* stdin, stdout, stderr */
    /* For WEFT_STDIO_FD: a descriptor of this program. One of 0-2 that an
     * earlier stream of the same spawn replaces (fd[2] = 1 when stdout is
     * a pipe or /dev/null) is -EINVAL. */
    int fd[3];
    char *const *envp; /* NULL: the program's environ */
    const char *cwd;   /* NULL: the program's working directory */
    /* Look file up in PATH when it has no '/', as execvp does. */
    bool search_path;
    /* Start the child in a process group of its own (its id the child's
     * pid): a terminal's Ctrl-C then skips it, and weft_process_kill_group
     * reaches the processes it starts in turn. */
    bool new_process_group;
    /* Start the child in a session of its own (setsid: no controlling
     * terminal; its group is its own too, as with new_process_group). */
    bool new_session;
    /* weft_process_output: how long to go on reading the pipes once the
     * child has exited (Go's Cmd.WaitDelay). A process the child left
     * behind may hold them open for ever (a shell's `sleep 100 &`): past
     * this the output stops there, with held_open set, and the call
     * returns the child's status as usual. 0: read until the pipes end.
     * Needs the child's pidfd (not to be had under valgrind 3.19: there
     * it reads until the pipes end). */
    uint64_t wait_delay_ns;
    /* weft_process_output: the most bytes it keeps of each stream, per
     * call; what comes past that is read and dropped (the child is not
     * stalled on a full pipe), and the stream's _truncated flag set. For
     * a child whose output may be large or hostile. 0: no limit. */
    size_t output_limit;
} weft_process_opts;

/* Starts file with argv (argv[0] included, NULL-terminated). The child
 * starts with no signal blocked and SIGPIPE at its default action (a
 * server that ignores SIGPIPE does not pass that on). Every descriptor the
 * program has with O_CLOEXEC stays out of the child. 0 and *out; the
 * exec's error when the program cannot be run (-ENOENT, -EACCES, ...);
 * -EINVAL for a NULL out, file or argv, an empty argv or an unknown stdio
 * value; -EBADF for WEFT_STDIO_FD with a negative fd; -EMFILE/-ENFILE
 * for pipes; -ENOMEM. Nothing is left behind on failure. Callable from
 * any thread (a task's worker waits until the child has called exec). */
WEFT_API WEFT_MUST_CHECK int weft_process_spawn(weft_process **out, const char *file,
                                                char *const argv[], const weft_process_opts *opts);

/* The child's pid (still the same number after it has been reaped). */
WEFT_API int weft_process_pid(const weft_process *p);

/* The parent's end of a WEFT_STDIO_PIPE stream (write to WEFT_STDIN, read
 * from the others), or -EBADF when the stream has no pipe or it was
 * closed; -EINVAL for another stream number. The descriptor stays the
 * process's: close it with weft_process_close_fd (a child reading its
 * stdin sees the end of it then). */
WEFT_API int weft_process_fd(const weft_process *p, int stream);
WEFT_API int weft_process_close_fd(weft_process *p, int stream);
/* Gives the caller the parent's end of a pipe: the process forgets it, so
 * weft_process_output and destroy leave it alone and the caller closes
 * it. For a task that feeds the child's stdin while another collects its
 * output (output closes a stdin pipe it still holds, under a writer).
 * Returns as weft_process_fd. */
WEFT_API int weft_process_take_fd(weft_process *p, int stream);

/* Waits until the child has exited and reaps it; 0 and *wstatus (may be
 * NULL) as waitpid gives it (WIFEXITED, WEXITSTATUS, WIFSIGNALED,
 * WTERMSIG). Once reaped, every wait returns the same status at once.
 * Several tasks and threads may wait together (weft_process_output's
 * final wait among them). In a task: -ECANCELED / -ETIMEDOUT
 * when interrupted (the child is then neither signalled nor reaped), or
 * the error of the op it parks with (-ENOMEM, -EAGAIN: weft_poll's). From
 * a plain thread it blocks. -ECHILD when something else reaped the child
 * (a waitpid(-1) elsewhere in the program, or SIGCHLD set to SIG_IGN). */
WEFT_API int weft_process_wait(weft_process *p, int *wstatus);
/* weft_process_wait without waiting: -EAGAIN while the child runs. */
WEFT_API int weft_process_try_wait(weft_process *p, int *wstatus);

/* Sends sig (0 checks only) to the child through its pidfd: 0, or -ESRCH
 * once it has been reaped, -EINVAL for a bad signal. A child that has
 * exited but is not reaped yet takes the signal and ignores it. */
WEFT_API int weft_process_kill(weft_process *p, int sig);
/* Sends sig to the child's process group: -EINVAL unless it was spawned
 * with new_process_group or new_session; -ESRCH when no process is left in the group.
 * A group id is a plain number, unlike the pidfd: the kernel gives it to
 * no other process while a process of the group is alive, but once the
 * group is empty and the child reaped, a later process may get it. */
WEFT_API int weft_process_kill_group(weft_process *p, int sig);

/* Stops the child gracefully: sends sig (SIGTERM, say; to its process
 * group with new_process_group or new_session), waits up to grace_ns for
 * its exit, then sends SIGKILL and waits for that. 0 and *wstatus (may be
 * NULL) as weft_process_wait. With a group, what the child leaves in it
 * gets SIGKILL once the child has exited, before it is reaped, so that
 * nothing of the group outlives the stop; a child reaped before the call
 * only gives its status (its group's id may be another group's by then).
 * Needs a task (-EPERM). -EINVAL for a bad signal, -EOVERFLOW / -ENOMEM
 * when the grace's deadline cannot be pushed (nothing sent in either
 * case); interrupted by the caller's cancellation or deadline,
 * -ECANCELED / -ETIMEDOUT with the child perhaps still running (call it
 * again, or destroy). */
WEFT_API int weft_process_stop(weft_process *p, int sig, uint64_t grace_ns, int *wstatus);

/* What weft_process_output collected: each buffer is NUL-terminated
 * (the length leaves the NUL out), NULL for a stream that is not a pipe.
 * Release with weft_output_free. */
typedef struct weft_output {
    char *out;
    size_t out_len;
    char *err;
    size_t err_len;
    /* The child had exited wait_delay_ns before and a pipe was still open
     * (a process it left behind holds it): the reading stopped there. */
    bool held_open;
    /* More than output_limit bytes came on stdout / stderr: out / err
     * hold the first output_limit of them. */
    bool out_truncated, err_truncated;
} weft_output;

/* Closes the child's stdin pipe if the process still holds it (see
 * weft_process_take_fd), reads its stdout and stderr pipes to their ends
 * at the same time (so that neither fills and stalls the child), in the
 * calling task, closes them, then waits for the exit: 0 and *wstatus
 * (may be NULL) as weft_process_wait. Needs a task (-EPERM). Interrupted
 * (-ECANCELED, -ETIMEDOUT) or failed (-ENOMEM, -EMFILE, -EAGAIN when the
 * ring can take no op, a read's error), it returns with what was read so
 * far in *o, reads nothing more, and leaves the child running and the
 * pipes it had not read to their ends open (another call reads on where
 * it stopped, into new buffers, and gives "" for a pipe read to its end
 * before); free *o in every case. A child that leaves a process behind
 * that holds the pipes (a shell's background job) keeps the read going
 * after its own exit: set wait_delay_ns at the spawn, or bound the call
 * with a deadline (weft_deadline_push_in). The buffers grow with the
 * output, up to output_limit bytes each if set at the spawn (the rest is
 * dropped, and out_truncated / err_truncated say so). */
WEFT_API WEFT_MUST_CHECK int weft_process_output(weft_process *p, weft_output *o, int *wstatus);
WEFT_API void weft_output_free(weft_output *o);

/* Closes the pipes, and releases the process. A child not reaped yet is
 * killed (SIGKILL) and reaped first, so that no child outlives its
 * handle or stays a zombie (structured concurrency, as for tasks); the
 * wait for that is not interrupted by cancellation or a deadline. No
 * other task or thread may be using p (waiting on it, say). NULL is
 * ignored. */
WEFT_API void weft_process_destroy(weft_process *p);

#ifdef __cplusplus
}
#endif
#endif
