/* Two queues sharing one worker by weight.
 *
 * "interactive" (weight 3) and "batch" (weight 1) each run four CPU-bound
 * tasks that call weft_yield_maybe() between small pieces of work. The
 * scheduler gives the queues CPU in proportion to their weights whatever
 * the number of tasks in each; a live line shows the split as it happens,
 * and the per-queue table closes the run. One worker: weights divide the
 * CPU of each worker between its queues, and on several workers the split
 * would also depend on which tasks each one got. */
#include <stdatomic.h>
#include <stdio.h>
#include <weft.h>

static uint64_t stop_at;
static _Atomic uint64_t work_done[2]; /* read by the reporter */

static void burn_us(uint64_t us)
{
    uint64_t end = weft_now_ns() + us * 1000;
    while (weft_now_ns() < end) {
    }
}

static void *cruncher(void *arg)
{
    int which = (int)(intptr_t)arg;
    while (weft_now_ns() < stop_at) {
        burn_us(25);
        atomic_fetch_add_explicit(&work_done[which], 1, memory_order_relaxed);
        if (weft_yield_maybe() < 0)
            break;
    }
    return NULL;
}

static void *reporter(void *arg)
{
    uint64_t last[2] = {0, 0};
    while (weft_now_ns() < stop_at) {
        if (weft_sleep_ns(250000000) < 0)
            break;
        uint64_t now[2] = {atomic_load(&work_done[0]), atomic_load(&work_done[1])};
        uint64_t d0 = now[0] - last[0], d1 = now[1] - last[1];
        last[0] = now[0];
        last[1] = now[1];
        double total = (double)(d0 + d1);
        printf("\r  interactive %6.1f%%  %8llu units   |   batch %6.1f%%  %8llu units   ",
               total ? 100.0 * (double)d0 / total : 0, (unsigned long long)now[0],
               total ? 100.0 * (double)d1 / total : 0, (unsigned long long)now[1]);
        fflush(stdout);
    }
    printf("\n");
    return NULL;
}

static void *queues_main(void *arg)
{
    stop_at = weft_now_ns() + 3000000000ull;
    printf("weft demo: two queues, weights 3:1, four busy tasks each, for 3 s\n");
    weft_spawn_opts ui = {.queue = "interactive", .name = "ui"};
    weft_spawn_opts batch = {.queue = "batch", .name = "batch"};
    weft_spawn_opts rep = {.queue = "control", .name = "reporter"};
    for (int i = 0; i < 4; i++) {
        weft_spawn_ex(NULL, &ui, cruncher, (void *)0);
        weft_spawn_ex(NULL, &batch, cruncher, (void *)1);
    }
    weft_spawn_ex(NULL, &rep, reporter, NULL);
    weft_wait_children();
    weft_queue_stats qs[3];
    int n = weft_stats_queues(qs, 3);
    printf("\n");
    weft_stats_print_queues(stdout, qs, (size_t)n);
    printf("\n(\"control\" holds the reporter, which mostly sleeps; weight 10 keeps its wake-ups "
           "prompt.)\n\n");
    return NULL;
}

int main(void)
{
    weft_queue_spec queues[] = {
        {.name = "control", .weight = 10},
        {.name = "interactive", .weight = 3},
        {.name = "batch", .weight = 1},
    };
    weft_config cfg = {.workers = 1, .queues = queues, .nqueues = 3, .stats = true};
    int r = weft_run(&cfg, queues_main, NULL, NULL);
    if (r < 0) {
        fprintf(stderr, "weft_run: %s (%s)\n", weft_strerror(r), weft_last_config_error());
        return 1;
    }
    return 0;
}
