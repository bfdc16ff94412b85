/* weft inside libuv: a uv_poll_t watches weft_executor_fd() and a uv_timer_t
 * fires at the deadline weft_executor_run() returns. */
#include <stdio.h>
#include <uv.h>
#include <weft.h>

#include "embed_work.h"

typedef struct host {
    weft_executor *ex;
    uv_poll_t poll;
    uv_timer_t timer;
    unsigned wakes;
    int error;
} host;

static void drive(host *h);

static void on_ready(uv_poll_t *p, int status, int events)
{
    drive(p->data);
}

static void on_timer(uv_timer_t *t)
{
    drive(t->data);
}

/* Runs the executor for up to 1 ms, then arranges the next call. */
static void drive(host *h)
{
    h->wakes++;
    int64_t deadline = weft_executor_run(h->ex, 1000000);
    if (deadline < 0) {
        h->error = (int)deadline;
        deadline = INT64_MAX;
    }
    if (embed_done == 4 || h->error) {
        uv_poll_stop(&h->poll);
        uv_timer_stop(&h->timer);
        return;
    }
    if (deadline == INT64_MAX) {
        uv_timer_stop(&h->timer);
        return;
    }
    int64_t left = deadline - (int64_t)weft_now_ns();
    uint64_t ms = left <= 0 ? 0 : (uint64_t)((left + 999999) / 1000000);
    uv_timer_start(&h->timer, on_timer, ms, 0);
}

int main(void)
{
    host h = {0};
    int r = weft_executor_create(&h.ex, NULL);
    if (r < 0) {
        fprintf(stderr, "weft_executor_create: %s\n", weft_strerror(r));
        return 1;
    }
    uv_loop_t *loop = uv_default_loop();
    uv_poll_init(loop, &h.poll, weft_executor_fd(h.ex));
    uv_timer_init(loop, &h.timer);
    h.poll.data = h.timer.data = &h;
    uv_poll_start(&h.poll, UV_READABLE, on_ready);

    weft_task *parents[4];
    for (int i = 0; i < 4; i++) {
        r = weft_executor_spawn(h.ex, &parents[i], NULL, embed_parent, NULL);
        if (r < 0) {
            fprintf(stderr, "weft_executor_spawn: %s\n", weft_strerror(r));
            while (i-- > 0)
                weft_detach(parents[i]);
            weft_executor_destroy(h.ex); /* cancels and awaits those started */
            return 1;
        }
    }
    drive(&h);
    uv_run(loop, UV_RUN_DEFAULT);
    if (h.error) {
        fprintf(stderr, "weft_executor_run: %s\n", weft_strerror(h.error));
        return 1;
    }
    printf("libuv host: 4 parents and 32 sleepers done after %u loop wakes, %d failed\n", h.wakes,
           embed_failed);
    /* The host joins finished tasks without waiting (weft_join would
     * wait: it is for tasks). */
    for (int i = 0; i < 4; i++) {
        r = weft_executor_try_join(h.ex, parents[i], NULL);
        if (r != 0) {
            fprintf(stderr, "parent %d: %s\n", i, weft_strerror(r));
            embed_failed++;
            if (r == -EAGAIN)
                weft_detach(parents[i]); /* destroy reaps it */
        }
    }
    /* Destroy closes the fd: stop watching it first. */
    uv_close((uv_handle_t *)&h.poll, NULL);
    uv_close((uv_handle_t *)&h.timer, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    weft_executor_destroy(h.ex);
    uv_loop_close(loop);
    return embed_done == 4 && !embed_failed ? 0 : 1;
}
