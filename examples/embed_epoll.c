/* weft inside a plain epoll loop: the host watches weft_executor_fd() and
 * wakes for the deadline weft_executor_run() returns. Anything else the
 * program's loop does (here: nothing) goes on around it. */
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <weft.h>

#include "embed_work.h"

/* Milliseconds until deadline for epoll_wait, rounded up so the host never
 * wakes early and spins. */
static int timeout_ms(int64_t deadline)
{
    if (deadline == INT64_MAX)
        return -1;
    int64_t left = deadline - (int64_t)weft_now_ns();
    return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

int main(void)
{
    weft_executor *ex;
    int r = weft_executor_create(&ex, NULL);
    if (r < 0) {
        fprintf(stderr, "weft_executor_create: %s\n", weft_strerror(r));
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, weft_executor_fd(ex), &ev);

    weft_task *parents[4];
    for (int i = 0; i < 4; i++) {
        r = weft_executor_spawn(ex, &parents[i], NULL, embed_parent, NULL);
        if (r < 0) {
            fprintf(stderr, "weft_executor_spawn: %s\n", weft_strerror(r));
            while (i-- > 0)
                weft_detach(parents[i]);
            weft_executor_destroy(ex); /* cancels and awaits those started */
            close(ep);
            return 1;
        }
    }
    unsigned wakes = 0;
    int64_t deadline = weft_executor_run(ex, 0);
    while (deadline >= 0 && embed_done < 4) {
        struct epoll_event got;
        epoll_wait(ep, &got, 1, timeout_ms(deadline));
        wakes++;
        deadline = weft_executor_run(ex, 1000000);
    }
    if (deadline < 0) {
        fprintf(stderr, "weft_executor_run: %s\n", weft_strerror((int)deadline));
        return 1;
    }
    printf("epoll host: 4 parents and 32 sleepers done after %u loop wakes, %d failed\n", wakes,
           embed_failed);
    /* The host joins finished tasks without waiting (weft_join would
     * wait: it is for tasks). */
    for (int i = 0; i < 4; i++) {
        r = weft_executor_try_join(ex, parents[i], NULL);
        if (r != 0) {
            fprintf(stderr, "parent %d: %s\n", i, weft_strerror(r));
            embed_failed++;
            if (r == -EAGAIN)
                weft_detach(parents[i]); /* destroy reaps it */
        }
    }
    /* Destroy closes the fd: stop watching it first. */
    epoll_ctl(ep, EPOLL_CTL_DEL, weft_executor_fd(ex), NULL);
    weft_executor_destroy(ex);
    close(ep);
    return embed_failed ? 1 : 0;
}
