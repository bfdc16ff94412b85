/* The weft showcase: structured concurrency at work.
 *
 * A "request" task fans out to three "replica" lookups that take different
 * times; the first answer wins and the request cancels the rest of its
 * children. Meanwhile a background heartbeat runs until the main task ends,
 * and a deliberately stuck task is bounded by a deadline. Everything spawned
 * is cancelled and awaited before weft_run returns: no task outlives its
 * parent, and only main and the heartbeat are still live when main counts
 * the tasks at its end. Halfway through it
 * prints the live task tree (weft_dump_tasks), and the whole run is traced
 * to a file that Perfetto opens (weft_config.trace_path). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

static uint64_t t0;

/* A spawn that fails (out of memory) ends the demo with a message. */
static void must(int r, const char *what)
{
    if (r < 0) {
        fprintf(stderr, "weft demo: %s: %s\n", what, weft_strerror(r));
        exit(1);
    }
}

static double ms(void)
{
    return (double)(weft_now_ns() - t0) / 1e6;
}

typedef struct lookup {
    const char *replica;
    uint64_t latency_ms;
    _Atomic int *answered; /* lives on the request's stack: children borrow it;
                              atomic, as they may run on several workers */
} lookup;

static void *replica_lookup(void *arg)
{
    lookup *l = arg;
    printf("%7.1f ms   replica %-8s: looking up (takes %llu ms)\n", ms(), l->replica,
           (unsigned long long)l->latency_ms);
    int r = weft_sleep_ns(l->latency_ms * 1000000);
    if (r == -ECANCELED) {
        printf("%7.1f ms   replica %-8s: cancelled, someone else answered\n", ms(), l->replica);
        return NULL;
    }
    atomic_fetch_add(l->answered, 1);
    printf("%7.1f ms   replica %-8s: answered first\n", ms(), l->replica);
    return (void *)l->replica;
}

static void *request(void *arg)
{
    _Atomic int answered = 0;
    lookup lookups[3] = {
        {"eu-west", 30, &answered},
        {"us-east", 12, &answered},
        {"ap-south", 45, &answered},
    };
    weft_task *h[3];
    static const char *const tags[] = {"replica", NULL};
    for (int i = 0; i < 3; i++) {
        weft_spawn_opts o = {.name = lookups[i].replica, .tags = tags};
        must(weft_spawn_ex(&h[i], &o, replica_lookup, &lookups[i]), "spawning a lookup");
    }
    weft_sleep_ns(1000000); /* let them start */
    printf("%7.1f ms   request: the live tasks now:\n\n", ms());
    weft_dump_tasks(stdout);
    printf("\n");
    /* Wait for whichever finishes first, and join it. */
    const char *answer = NULL;
    size_t first;
    void *res = NULL;
    if (weft_join_any(h, 3, &first, &res) == 0) {
        answer = res;
        h[first] = NULL;
    }
    weft_cancel_stats st;
    weft_cancel_tagged_any(tags, &st);
    printf("%7.1f ms   request: answer from %s; cancelled %llu of %llu other lookups\n", ms(),
           answer, (unsigned long long)st.cancelled, (unsigned long long)st.visited);
    /* And the others, which the cancel ended. */
    for (size_t i = 0; i < 3; i++)
        if (h[i])
            weft_join(h[i], NULL);
    return (void *)answer;
}

static atomic_int beats;

static void *heartbeat(void *arg)
{
    while (weft_sleep_ns(10000000) == 0)
        beats++;
    printf("%7.1f ms   heartbeat: cancelled at shutdown after %d beats\n", ms(), beats);
    return NULL;
}

static void *stuck(void *arg)
{
    int r = weft_deadline_push_in(25000000);
    if (r == 0) {
        r = weft_sleep_ns(3600ull * 1000000000); /* "forever" */
        weft_deadline_pop();
    }
    printf("%7.1f ms   stuck task: %s after its 25 ms deadline\n", ms(), weft_strerror(r));
    return NULL;
}

static void *demo_main(void *arg)
{
    t0 = weft_now_ns();
    printf("weft demo: structured concurrency\n\n");
    weft_spawn_opts bg = {.flags = WEFT_TASK_BACKGROUND, .name = "heartbeat"};
    must(weft_spawn_ex(NULL, &bg, heartbeat, NULL), "spawning the heartbeat");
    weft_spawn_opts so = {.name = "stuck"}, ro = {.name = "request"};
    must(weft_spawn_ex(NULL, &so, stuck, NULL), "spawning the stuck task");

    weft_task *req;
    must(weft_spawn_ex(&req, &ro, request, NULL), "spawning the request");
    void *answer;
    weft_join(req, &answer);
    weft_wait_children();

    weft_stats s;
    weft_stats_snapshot(&s);
    printf("\n%7.1f ms   main: done, %llu tasks spawned, %llu completed, %llu cancelled, %llu "
           "live (main and the heartbeat, which weft_run cancels and awaits)\n",
           ms(), (unsigned long long)s.tasks_spawned, (unsigned long long)s.tasks_completed,
           (unsigned long long)s.tasks_cancelled, (unsigned long long)s.tasks_live);
    return NULL;
}

int main(void)
{
    char trace[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(trace, sizeof trace, "%s/weft-demo-trace.json", tmp && *tmp ? tmp : "/tmp");
    weft_config cfg = {.trace_path = trace};
    int r = weft_run(&cfg, demo_main, NULL, NULL);
    if (r < 0) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    printf("weft_run returned: every task, background ones included, has ended.\n");
    printf("A slice for every task run is in %s: open it in https://ui.perfetto.dev\n\n", trace);
    return 0;
}
