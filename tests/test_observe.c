/* Observability beyond the counters: the task-run trace (trace_path) and
 * weft_dump_tasks. The trace is read back with a small JSON reader, so a
 * malformed file fails here, and checked against the runs the test knows
 * its tasks made. */
#include <locale.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/fault.h"
#include "test.h"

/* The live task tree as text (weft_dump_tasks into memory). */
static char *dump(void);
static char *queues_printed(void (*print)(FILE *, const weft_queue_stats *, size_t),
                            const weft_queue_stats *q, size_t n);

/* ---- reading a trace back ------------------------------------------------ */

#define MAX_EVENTS 20000
#define STR_MAX    256

typedef struct event {
    char name[STR_MAX], cat[STR_MAX], ph[8], end[16], arg_name[STR_MAX];
    long long tid, task;
    long long ts_ns, dur_ns; /* -1 when absent */
} event;

typedef struct reader {
    const char *p;
    event *ev;
    int nev;
} reader;

static void ws(reader *r)
{
    while (*r->p == ' ' || *r->p == '\n' || *r->p == '\t' || *r->p == '\r')
        r->p++;
}

static void expect(reader *r, char c)
{
    ws(r);
    if (*r->p != c)
        FAILF("trace: expected '%c' at \"%.40s\"", c, r->p);
    r->p++;
}

/* JSON text must be UTF-8: the length of the well-formed sequence at s,
 * 0 if there is none (simplified: no overlong or surrogate checks). */
static size_t utf8_seq(const unsigned char *s)
{
    size_t n = 0;
    if (s[0] < 0x80)
        n = 1;
    else if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* A JSON string into out, decoded (\u escapes of the basic plane, as UTF-8). */
static void string(reader *r, char *out, size_t cap)
{
    expect(r, '"');
    size_t n = 0;
    while (*r->p != '"') {
        char buf[4];
        size_t k = 1;
        unsigned char c = (unsigned char)*r->p;
        if (!c || c < 0x20)
            FAILF("trace: bad character in a string");
        if (c == '\\') {
            char e = r->p[1];
            r->p += 2;
            if (e == 'u') {
                unsigned v;
                if (sscanf(r->p, "%4x", &v) != 1 || (v >= 0xd800 && v <= 0xdfff))
                    FAILF("trace: bad \\u escape");
                r->p += 4;
                if (v < 0x80) {
                    buf[0] = (char)v;
                } else if (v < 0x800) {
                    buf[0] = (char)(0xc0 | v >> 6);
                    buf[1] = (char)(0x80 | (v & 0x3f));
                    k = 2;
                } else {
                    buf[0] = (char)(0xe0 | v >> 12);
                    buf[1] = (char)(0x80 | ((v >> 6) & 0x3f));
                    buf[2] = (char)(0x80 | (v & 0x3f));
                    k = 3;
                }
            } else if (e == '"' || e == '\\' || e == '/') {
                buf[0] = e;
            } else if (e == 'n') {
                buf[0] = '\n';
            } else {
                FAILF("trace: unexpected escape \\%c", e);
            }
        } else {
            k = utf8_seq((const unsigned char *)r->p);
            if (!k)
                FAILF("trace: a string is not UTF-8 at \"%.20s\"", r->p);
            memcpy(buf, r->p, k);
            r->p += k;
        }
        if (n + k < cap) {
            memcpy(out + n, buf, k);
            n += k;
        }
    }
    out[n] = 0;
    r->p++;
}

/* A number, as nanoseconds when it is microseconds with up to 3 decimals. */
static long long number_ns(reader *r)
{
    ws(r);
    long long whole = 0, frac = 0;
    int digits = 0, fdigits = 0;
    bool neg = *r->p == '-';
    if (neg)
        r->p++;
    while (*r->p >= '0' && *r->p <= '9') {
        whole = whole * 10 + (*r->p++ - '0');
        digits++;
    }
    if (*r->p == '.') {
        r->p++;
        while (*r->p >= '0' && *r->p <= '9') {
            if (fdigits < 3)
                frac = frac * 10 + (*r->p - '0');
            fdigits++;
            r->p++;
        }
        if (fdigits == 0)
            FAILF("trace: a number ends in '.'");
    }
    if (!digits)
        FAILF("trace: expected a number at \"%.40s\"", r->p);
    for (int i = fdigits < 3 ? fdigits : 3; i < 3; i++)
        frac *= 10;
    long long v = whole * 1000 + frac;
    return neg ? -v : v;
}

static void skip_value(reader *r);

static void skip_object_or_array(reader *r, char open, char close)
{
    expect(r, open);
    ws(r);
    if (*r->p == close) {
        r->p++;
        return;
    }
    for (;;) {
        if (open == '{') {
            char key[STR_MAX];
            string(r, key, sizeof key);
            expect(r, ':');
        }
        skip_value(r);
        ws(r);
        if (*r->p == ',') {
            r->p++;
            continue;
        }
        expect(r, close);
        return;
    }
}

static void skip_value(reader *r)
{
    ws(r);
    char tmp[STR_MAX];
    if (*r->p == '{')
        skip_object_or_array(r, '{', '}');
    else if (*r->p == '[')
        skip_object_or_array(r, '[', ']');
    else if (*r->p == '"')
        string(r, tmp, sizeof tmp);
    else if (!strncmp(r->p, "true", 4) || !strncmp(r->p, "null", 4))
        r->p += 4;
    else if (!strncmp(r->p, "false", 5))
        r->p += 5;
    else
        (void)number_ns(r);
}

static void args_object(reader *r, event *e)
{
    expect(r, '{');
    ws(r);
    if (*r->p == '}') {
        r->p++;
        return;
    }
    for (;;) {
        char key[STR_MAX];
        string(r, key, sizeof key);
        expect(r, ':');
        if (!strcmp(key, "end"))
            string(r, e->end, sizeof e->end);
        else if (!strcmp(key, "name"))
            string(r, e->arg_name, sizeof e->arg_name);
        else if (!strcmp(key, "task"))
            e->task = number_ns(r) / 1000;
        else
            skip_value(r);
        ws(r);
        if (*r->p == ',') {
            r->p++;
            continue;
        }
        expect(r, '}');
        return;
    }
}

static void event_object(reader *r, event *e)
{
    memset(e, 0, sizeof *e);
    e->ts_ns = e->dur_ns = e->tid = e->task = -1;
    expect(r, '{');
    for (;;) {
        char key[STR_MAX];
        string(r, key, sizeof key);
        expect(r, ':');
        if (!strcmp(key, "name"))
            string(r, e->name, sizeof e->name);
        else if (!strcmp(key, "cat"))
            string(r, e->cat, sizeof e->cat);
        else if (!strcmp(key, "ph"))
            string(r, e->ph, sizeof e->ph);
        else if (!strcmp(key, "tid"))
            e->tid = number_ns(r) / 1000;
        else if (!strcmp(key, "ts"))
            e->ts_ns = number_ns(r);
        else if (!strcmp(key, "dur"))
            e->dur_ns = number_ns(r);
        else if (!strcmp(key, "args"))
            args_object(r, e);
        else
            skip_value(r);
        ws(r);
        if (*r->p == ',') {
            r->p++;
            continue;
        }
        expect(r, '}');
        return;
    }
}

/* Reads the whole file at path and removes it; fails the test unless it is
 * one JSON object whose traceEvents array holds only event objects. */
static void take_trace(const char *path, reader *r)
{
    FILE *f = fopen(path, "r");
    if (!f)
        FAILF("open %s: %s", path, strerror(errno));
    static char text[8 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    ASSERT_LT(n, sizeof text - 1);
    text[n] = 0;
    fclose(f);
    unlink(path);
    r->p = text;
    r->ev = calloc(MAX_EVENTS, sizeof *r->ev);
    ASSERT(r->ev);
    r->nev = 0;
    expect(r, '{');
    bool seen = false;
    for (;;) {
        char key[STR_MAX];
        string(r, key, sizeof key);
        expect(r, ':');
        if (!strcmp(key, "traceEvents")) {
            seen = true;
            expect(r, '[');
            for (;;) {
                ASSERT_LT(r->nev, MAX_EVENTS);
                event_object(r, &r->ev[r->nev++]);
                ws(r);
                if (*r->p == ',') {
                    r->p++;
                    continue;
                }
                expect(r, ']');
                break;
            }
        } else {
            skip_value(r);
        }
        ws(r);
        if (*r->p == ',') {
            r->p++;
            continue;
        }
        expect(r, '}');
        break;
    }
    ws(r);
    ASSERT(*r->p == 0);
    ASSERT(seen);
}

/* Slices named `name` (NULL: any) ending with `end` (NULL: any). */
static int count_slices(const reader *r, const char *name, const char *end)
{
    int n = 0;
    for (int i = 0; i < r->nev; i++) {
        const event *e = &r->ev[i];
        if (strcmp(e->ph, "X") != 0)
            continue;
        if ((!name || !strcmp(e->name, name)) && (!end || !strcmp(e->end, end)))
            n++;
    }
    return n;
}

/* Every slice is well formed, and one track's slices never overlap: a
 * worker runs one task at a time. Slices of a track are written in order. */
static void check_tracks(const reader *r, int workers)
{
    long long last_end[64];
    for (int i = 0; i < 64; i++)
        last_end[i] = -1;
    for (int i = 0; i < r->nev; i++) {
        const event *e = &r->ev[i];
        if (!strcmp(e->ph, "M"))
            continue;
        ASSERT_STREQ(e->ph, "X");
        ASSERT(e->tid >= 0 && e->tid < workers);
        ASSERT_GE(e->ts_ns, 0);
        ASSERT_GE(e->dur_ns, 0);
        ASSERT_GT(e->task, 0);
        ASSERT(!strcmp(e->end, "yield") || !strcmp(e->end, "park") || !strcmp(e->end, "exit") ||
               !strcmp(e->end, "abort"));
        ASSERT_GE(e->ts_ns, last_end[e->tid]);
        last_end[e->tid] = e->ts_ns + e->dur_ns;
    }
    for (int w = 0; w < workers; w++) {
        char want[32];
        snprintf(want, sizeof want, "weft-%d", w);
        bool named = false;
        for (int i = 0; i < r->nev; i++)
            if (!strcmp(r->ev[i].name, "thread_name") && r->ev[i].tid == w &&
                !strcmp(r->ev[i].arg_name, want))
                named = true;
        if (!named)
            FAILF("no thread_name event for worker %d", w);
    }
}

static const char *trace_file(void)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/weft-trace-%d.json", (int)getpid());
    return path;
}

/* Runs fn(arg) as the main task of a runtime built from cfg, traced, and
 * reads the trace back into r. */
static void traced_run(weft_config cfg, weft_fn fn, void *arg, reader *r)
{
    cfg.trace_path = trace_file();
    run_main(&cfg, fn, arg);
    take_trace(cfg.trace_path, r);
}

/* Spawns fn as a task with that name and returns its join's result. */
static int run_named(const char *name, weft_fn fn)
{
    weft_task *t;
    weft_spawn_opts o = {.name = name};
    ASSERT_OK(weft_spawn_ex(&t, &o, fn, NULL));
    return weft_join(t, NULL);
}

/* ---- the trace ------------------------------------------------------------ */

static void *yield_three_times(void *arg)
{
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_yield());
    return arg;
}

/* A task named `name` (the argument) yields three times and ends. */
static void *run_yielder_named(void *name)
{
    ASSERT_OK(run_named(name, yield_three_times));
    return NULL;
}

TEST(trace_has_one_slice_per_run)
{
    reader r;
    traced_run((weft_config){.workers = 1}, run_yielder_named, "yielder", &r);
    check_tracks(&r, 1);
    /* Three yields and the end; main parks in its join and ends. */
    ASSERT_EQ(count_slices(&r, "yielder", NULL), 4);
    ASSERT_EQ(count_slices(&r, "yielder", "yield"), 3);
    ASSERT_EQ(count_slices(&r, "yielder", "exit"), 1);
    ASSERT_EQ(count_slices(&r, "main", NULL), 2);
    ASSERT_EQ(count_slices(&r, "main", "park"), 1);
    ASSERT_EQ(count_slices(&r, "main", "exit"), 1);
    free(r.ev);
}

static void *three_yielders(void *arg)
{
    (void)arg;
    weft_task *t[3];
    weft_spawn_opts o = {.name = "peer"};
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_spawn_ex(&t[i], &o, yield_three_times, NULL));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    return NULL;
}

TEST(trace_follows_yields_that_switch_straight_to_the_next_task)
{
    /* With several runnable tasks a yield switches task to task without
     * the loop (weft__worker_yield_direct): each run is still one slice. */
    reader r;
    traced_run((weft_config){.workers = 1}, three_yielders, NULL, &r);
    check_tracks(&r, 1);
    ASSERT_EQ(count_slices(&r, "peer", "yield"), 9);
    ASSERT_EQ(count_slices(&r, "peer", "exit"), 3);
    ASSERT_EQ(count_slices(&r, "peer", NULL), 12);
    free(r.ev);
}

#define MANY_TASKS  200
#define MANY_YIELDS 5

static void *yield_a_few(void *arg)
{
    for (int i = 0; i < MANY_YIELDS; i++)
        ASSERT_OK(weft_yield());
    return arg;
}

static void *spawn_many(void *arg)
{
    (void)arg;
    weft_task *ts[MANY_TASKS];
    weft_spawn_opts o = {.name = "many"};
    for (int i = 0; i < MANY_TASKS; i++)
        ASSERT_OK(weft_spawn_ex(&ts[i], &o, yield_a_few, NULL));
    for (int i = 0; i < MANY_TASKS; i++)
        ASSERT_OK(weft_join(ts[i], NULL));
    return NULL;
}

TEST(trace_with_two_workers_has_a_track_each)
{
    reader r;
    traced_run((weft_config){.workers = 2}, spawn_many, NULL, &r);
    check_tracks(&r, 2);
    /* Wherever each run happened, every run is one slice. */
    ASSERT_EQ(count_slices(&r, "many", NULL), MANY_TASKS * (MANY_YIELDS + 1));
    ASSERT_EQ(count_slices(&r, "many", "exit"), MANY_TASKS);
    free(r.ev);
}

static void *sleep_then_yield(void *arg)
{
    ASSERT_OK(weft_sleep_ns(1000000));
    ASSERT_OK(weft_yield());
    return arg;
}

static void *spin_then_read_busy(void *arg)
{
    (void)arg;
    uint64_t until = weft_now_ns() + 30 * 1000000ull;
    while (weft_now_ns() < until)
        ;
    weft_stats s;
    ASSERT_OK(weft_stats_snapshot(&s));
    /* Inside the first weft_executor_run call: its time so far is busy. */
    ASSERT_GE(s.busy_ns, 30 * 1000000ull);
    ASSERT_EQ(s.idle_ns, 0);
    return NULL;
}

TEST(an_embedded_executor_counts_its_run_calls_as_busy)
{
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, NULL));
    ASSERT_OK(weft_executor_spawn(ex, NULL, NULL, spin_then_read_busy, NULL));
    while (weft_executor_tasks(ex))
        ASSERT_GE(weft_executor_run(ex, 0), 0);
    weft_executor_destroy(ex);
}

TEST(trace_of_an_embedded_executor)
{
    const char *path = trace_file();
    weft_config cfg = {.trace_path = path};
    weft_executor *ex;
    ASSERT_OK(weft_executor_create(&ex, &cfg));
    weft_spawn_opts o = {.name = "embedded"};
    ASSERT_OK(weft_executor_spawn(ex, NULL, &o, sleep_then_yield, NULL));
    while (weft_executor_tasks(ex)) {
        int64_t next = weft_executor_run(ex, 0);
        ASSERT_GE(next, 0);
        struct pollfd p = {.fd = weft_executor_fd(ex), .events = POLLIN};
        int64_t wait_ms = next == 0 ? 0 : (next - (int64_t)weft_now_ns()) / 1000000 + 1;
        poll(&p, 1, next == INT64_MAX ? 100 : (int)(wait_ms < 0 ? 0 : wait_ms));
    }
    weft_executor_destroy(ex);
    reader r;
    take_trace(path, &r);
    check_tracks(&r, 1);
    ASSERT_EQ(count_slices(&r, "embedded", "park"), 1);
    ASSERT_EQ(count_slices(&r, "embedded", "yield"), 1);
    ASSERT_EQ(count_slices(&r, "embedded", "exit"), 1);
    free(r.ev);
}

static bool main_ran;

static void *note_run(void *arg)
{
    main_ran = true;
    return arg;
}

TEST(trace_path_errors_stop_the_run_before_it_starts)
{
    weft_config cfg = {.trace_path = "/nonexistent-weft-dir/trace.json"};
    ASSERT_EQ(weft_run(&cfg, note_run, NULL, NULL), -ENOENT);
    cfg.trace_path = "";
    ASSERT_EQ(weft_run(&cfg, note_run, NULL, NULL), -EINVAL);
    ASSERT(strstr(weft_last_config_error(), "trace_path") != NULL);
    weft_executor *ex = (weft_executor *)1;
    cfg.trace_path = "/nonexistent-weft-dir/trace.json";
    ASSERT_EQ(weft_executor_create(&ex, &cfg), -ENOENT);
    ASSERT(ex == NULL);
    ASSERT(!main_ran);

    /* A run refused for its arguments leaves an existing file alone. */
    const char *path = trace_file();
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fputs("keep", f);
    fclose(f);
    cfg.trace_path = path;
    ASSERT_EQ(weft_run(&cfg, NULL, NULL, NULL), -EINVAL);
    weft_config two = {.workers = 2, .trace_path = path};
    ASSERT_EQ(weft_executor_create(&ex, &two), -EINVAL);
    char text[16] = {0};
    f = fopen(path, "r");
    ASSERT(f);
    ASSERT(fgets(text, sizeof text, f));
    fclose(f);
    unlink(path);
    ASSERT_STREQ(text, "keep");
}

static void run_into_dev_full(void)
{
    weft_config cfg = {.trace_path = "/dev/full"};
    /* The program's own result does not depend on its trace. */
    if (weft_run(&cfg, spawn_many, NULL, NULL) != 0)
        _exit(3);
}

TEST(a_trace_that_cannot_be_written_is_reported)
{
    if (access("/dev/full", W_OK) != 0)
        SKIP("no writable /dev/full");
    char out[4096];
    int status = run_captured(run_into_dev_full, out, sizeof out);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    if (!strstr(out, "weft: trace: writing /dev/full failed"))
        FAILF("stderr was: %s", out);
}

TEST(trace_escapes_task_and_queue_names)
{
    weft_queue_spec q[] = {{.name = "q\"1", .weight = 1}};
    reader r;
    traced_run((weft_config){.queues = q, .nqueues = 1}, run_yielder_named, "say \"hi\"\\\t!", &r);
    ASSERT_EQ(count_slices(&r, "say \"hi\"\\\t!", NULL), 4);
    for (int i = 0; i < r.nev; i++)
        if (!strcmp(r.ev[i].ph, "X"))
            ASSERT_STREQ(r.ev[i].cat, "q\"1");
    free(r.ev);
}

static void *non_ascii_names(void *arg)
{
    (void)arg;
    /* Well formed; a byte that is not UTF-8; a two-byte character that
     * straddles the 31-byte limit (the name keeps the 30 bytes before it). */
    static const char *const names[] = {"na\xc3\xafve \xe2\x9c\x93 \xf0\x9d\x84\x9e", "bad\xff",
                                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9"};
    for (int i = 0; i < 3; i++)
        ASSERT_OK(run_named(names[i], yield_three_times));
    return NULL;
}

TEST(trace_is_utf8_whatever_the_names)
{
    reader r;
    traced_run((weft_config){0}, non_ascii_names, NULL, &r); /* fails on a string not UTF-8 */
    ASSERT_EQ(count_slices(&r, "na\xc3\xafve \xe2\x9c\x93 \xf0\x9d\x84\x9e", NULL), 4);
    ASSERT_EQ(count_slices(&r, "bad\xef\xbf\xbd", NULL), 4); /* U+FFFD */
    ASSERT_EQ(count_slices(&r, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL), 4);
    free(r.ev);
}

static _Atomic bool outside_checked;

static void *check_own_name_in_dump(void *arg)
{
    (void)arg;
    char *text = dump();
    /* 30 bytes: the two-byte character at 30-31 did not fit whole. */
    char line[96];
    snprintf(line, sizeof line, "task %llu 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa': running (the caller)",
             (unsigned long long)weft_self_id());
    if (!strstr(text, line))
        FAILF("no \"%s\" in:\n%s", line, text);
    free(text);
    outside_checked = true;
    return NULL;
}

static void *spawn_from_outside_with_long_name(void *arg)
{
    (void)arg;
    weft_spawn_opts o = {.name = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9"};
    ASSERT_OK(weft_runtime_spawn(weft_runtime_current(), &o, check_own_name_in_dump, NULL));
    while (!outside_checked)
        ASSERT_OK(weft_sleep_ns(1000000));
    return NULL;
}

TEST(names_are_cut_at_a_character_boundary_on_every_spawn_path)
{
    run_main(NULL, spawn_from_outside_with_long_name, NULL);
    ASSERT(outside_checked);
}

/* A name that does not end within the 31 bytes kept: only those are read
 * (ASan saw a read of the byte past them), and a character they cut short
 * is dropped. */
static void *check_dump_names_me(void *expected)
{
    char *text = dump();
    char line[96];
    snprintf(line, sizeof line, "task %llu '%s': running (the caller)",
             (unsigned long long)weft_self_id(), (const char *)expected);
    if (!strstr(text, line))
        FAILF("no \"%s\" in:\n%s", line, text);
    free(text);
    return NULL;
}

static void *spawn_with_unterminated_names(void *arg)
{
    (void)arg;
    char *name = malloc(31); /* no room for a NUL */
    ASSERT(name != NULL);
    memset(name, 'n', 31);
    weft_spawn_opts o = {.name = name};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, check_dump_names_me, "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"));
    ASSERT_OK(weft_join(t, NULL));
    memset(name, 'a', 30);
    name[30] = (char)0xc3; /* the first byte of a two-byte character */
    ASSERT_OK(weft_spawn_ex(&t, &o, check_dump_names_me, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    ASSERT_OK(weft_join(t, NULL));
    free(name);
    return NULL;
}

TEST(names_are_read_no_further_than_the_bytes_kept)
{
    run_main(NULL, spawn_with_unterminated_names, NULL);
}

static void *queue_json(void *arg)
{
    (void)arg;
    weft_queue_stats q[2];
    ASSERT_EQ(weft_stats_queues(q, 2), 2);
    char *text = queues_printed(weft_stats_print_queues_json, q, 1);
    if (!strstr(text, "{\"name\": \"bad\\ufffd\\\"q\\u0001\","))
        FAILF("queue name not escaped as JSON wants: %s", text);
    free(text);
    /* The text table keeps each queue on its row, the name padded to 12
     * columns (a stray byte is one, and so is a character of two bytes). */
    text = queues_printed(weft_stats_print_queues, q, 2);
    const char *row = strchr(text, '\n');
    /* 12 columns, a space, then the weight right-aligned in 7. */
    static const char row1[] = "bad\xff\"q?     "
                               " "
                               "      1";
    static const char row2[] = "\xc3\xa9?          "
                               " "
                               "      1";
    if (!row || strncmp(row + 1, row1, strlen(row1)))
        FAILF("queue row not one line: %s", text);
    row = strchr(row + 1, '\n');
    if (!row || strncmp(row + 1, row2, strlen(row2)) || strchr(row + 1, '\n')[1] != '\0')
        FAILF("queue row not one line, or padded by bytes: %s", text);
    free(text);
    return NULL;
}

TEST(queue_stats_stay_well_formed_whatever_the_names)
{
    weft_queue_spec q[] = {{.name = "bad\xff\"q\x01", .weight = 1},
                           {.name = "\xc3\xa9\xc2\x85", .weight = 1}};
    weft_config cfg = {.queues = q, .nqueues = 2};
    run_main(&cfg, queue_json, NULL);
}

/* The queue JSON in a decimal-comma locale: printf's %f would write the
 * shares as 0,2500, and no JSON reader takes that. The locale is compiled
 * from the C library's sources into a temporary directory (LOCPATH), as a
 * fresh machine has none but C and POSIX. */
static void *queue_json_in_locale(void *arg)
{
    (void)arg;
    weft_queue_stats q[2];
    ASSERT_EQ(weft_stats_queues(q, 2), 2);
    char *text = queues_printed(weft_stats_print_queues_json, q, 2);
    if (!strstr(text, "\"weight\": 1, \"weight_share\": 0.2500, \"service_share\": 0.") ||
        !strstr(text, "\"weight\": 3, \"weight_share\": 0.7500, \"service_share\": 0."))
        FAILF("shares not written as JSON numbers: %s", text);
    free(text);
    return NULL;
}

TEST(queue_json_ignores_the_locale)
{
    if (access("/usr/bin/localedef", X_OK) != 0 ||
        access("/usr/share/i18n/locales/de_DE", R_OK) != 0)
        SKIP("no locale sources to build de_DE from (Debian's locales package)");
    char dir[] = "/tmp/weft-locale-XXXXXX";
    ASSERT(mkdtemp(dir));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 2>/dev/null",
             dir);
    int rc = system(cmd);
    ASSERT_OK(setenv("LOCPATH", dir, 1));
    const char *set = setlocale(LC_NUMERIC, "de_DE.UTF-8");
    char probe[16];
    snprintf(probe, sizeof probe, "%.1f", 0.5);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ASSERT_OK(system(cmd));
    if (!set)
        FAILF("localedef (status %d) made no usable de_DE locale", rc);
    ASSERT_STREQ(probe, "0,5"); /* the premise: %f writes a comma now */
    weft_queue_spec queues[] = {{.name = "one", .weight = 1}, {.name = "three", .weight = 3}};
    weft_config cfg = {.queues = queues, .nqueues = 2};
    run_main(&cfg, queue_json_in_locale, NULL);
}

static void *yield_then_panic(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++)
        weft_yield();
    weft_panic("on purpose");
}

static void *spawn_panicker(void *arg)
{
    (void)arg;
    run_named("doomed", yield_then_panic);
    return NULL;
}

/* The runtime a child of traced_child runs, with one worker, traced to
 * child_trace (named by the parent: the child has another pid). */
static weft_config child_cfg;
static weft_fn child_main;
static char child_trace[64];

static void run_child(void)
{
    weft_config cfg = child_cfg;
    cfg.workers = 1;
    cfg.trace_path = child_trace;
    weft_run(&cfg, child_main, NULL, NULL);
}

/* Runs main_fn traced in a child whose stderr goes to out, reads the trace
 * it left into r and returns the child's wait status. */
static int traced_child(weft_config cfg, weft_fn main_fn, char *out, size_t cap, reader *r)
{
    child_cfg = cfg;
    child_main = main_fn;
    snprintf(child_trace, sizeof child_trace, "%s", trace_file());
    int status = run_captured(run_child, out, cap);
    take_trace(child_trace, r);
    return status;
}

TEST(a_panic_that_aborts_keeps_the_trace_so_far)
{
    char out[4096];
    reader r;
    int status = traced_child((weft_config){0}, spawn_panicker, out, sizeof out, &r);
    ASSERT(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
    ASSERT(strstr(out, "panicked: on purpose"));
    /* The aborting worker's runs up to the panic, the panicking run
     * included, in a complete file. */
    check_tracks(&r, 1);
    ASSERT_EQ(count_slices(&r, "doomed", "yield"), 5);
    ASSERT_EQ(count_slices(&r, "doomed", "abort"), 1);
    ASSERT_EQ(count_slices(&r, "main", "park"), 1);
    free(r.ev);
}

static void *misuse_a_waitgroup(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2; i++)
        weft_yield();
    weft_waitgroup wg;
    ASSERT_OK(weft_waitgroup_init(&wg));
    weft_waitgroup_add(&wg, -1); /* below zero: weft aborts */
    return NULL;
}

static void *spawn_misuser(void *arg)
{
    (void)arg;
    run_named("misuser", misuse_a_waitgroup);
    return NULL;
}

TEST(an_abort_for_a_misused_sync_object_keeps_the_trace_so_far)
{
    char out[4096];
    reader r;
    int status = traced_child((weft_config){0}, spawn_misuser, out, sizeof out, &r);
#ifndef NDEBUG
    ASSERT(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
    ASSERT(strstr(out, "goes below zero"));
    ASSERT_EQ(count_slices(&r, "misuser", "abort"), 1);
#else
    /* Release builds do not check this misuse (sync.h): the count stays
     * at zero and the run ends normally, its trace complete. */
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT_EQ(count_slices(&r, "misuser", "exit"), 1);
#endif
    check_tracks(&r, 1);
    ASSERT_EQ(count_slices(&r, "misuser", "yield"), 2);
    free(r.ev);
}

static void *close_a_ticker_whose_cleanup_fails(void *arg)
{
    (void)arg;
    weft_stream *t;
    ASSERT_OK(weft_ticker(&t, 1000000));
    weft__fault_arm(WEFT_FAULT_CLEANUP, 1); /* the removal's result becomes -EIO */
    weft_stream_close(t);
    for (;;) /* the maintenance task aborts the process */
        ASSERT_OK(weft_sleep_ns(1000000));
    return NULL;
}

TEST(an_abort_for_a_failed_cleanup_keeps_the_trace_so_far)
{
    char out[4096];
    reader r;
    int status = traced_child((weft_config){.on_cleanup_error = WEFT_CLEANUP_ABORT},
                              close_a_ticker_whose_cleanup_fails, out, sizeof out, &r);
    ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    ASSERT(strstr(out, "weft: cleanup TIMEOUT_REMOVE failed"));
    check_tracks(&r, 1);
    /* The worker's maintenance task ran the cleanup and aborted in it. */
    ASSERT_EQ(count_slices(&r, "weft-maintenance", "abort"), 1);
    ASSERT_GE(count_slices(&r, "main", "park"), 1);
    free(r.ev);
}

/* spawn_yielder, reporting a failed spawn as its result. */
static void *spawn_yielder_or_fail(void *arg)
{
    (void)arg;
    weft_task *t;
    weft_spawn_opts o = {.name = "yielder"};
    int r = weft_spawn_ex(&t, &o, yield_three_times, NULL);
    if (r == 0)
        r = weft_join(t, NULL);
    return (void *)(intptr_t)r;
}

static void sweep_traced_runs(void)
{
    const char *path = trace_file();
    weft_config cfg = {.trace_path = path};
    int failures = 0;
    int fds = count_fds();
    for (uint64_t n = 1; n < 10000; n++) {
        weft__fault_arm(WEFT_FAULT_ALLOC, n);
        void *res = NULL;
        int r = weft_run(&cfg, spawn_yielder_or_fail, NULL, &res);
        uint64_t seen = weft__fault_count(WEFT_FAULT_ALLOC);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
        if (r < 0 || res) {
            ASSERT(r == -ENOMEM || (intptr_t)res == -ENOMEM);
            failures++;
        }
        check_sweep_point(n, fds);
        if (seen < n)
            break;
    }
    unlink(path);
    /* At least the trace, its file and each worker's buffer. */
    ASSERT_GE(failures, 3);
}

TEST(every_allocation_of_a_traced_run_can_fail)
{
    sweep_traced_runs();
}

/* ---- weft_dump_tasks ------------------------------------------------------ */

/* The dump as text, and checks that it was written in full. */
/* The queue table or JSON (print: weft_stats_print_queues or _json) of
 * q[0..n), as a string to free. */
static char *queues_printed(void (*print)(FILE *, const weft_queue_stats *, size_t),
                            const weft_queue_stats *q, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    ASSERT(m);
    print(m, q, n);
    ASSERT_OK(fclose(m));
    return text;
}

static char *dump(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    ASSERT(m);
    ASSERT_OK(weft_dump_tasks(m));
    ASSERT_OK(fclose(m));
    return text;
}

static void expect_line(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (!strstr(text, want))
        FAILF("no line \"%s\" in the dump:\n%s", line, text);
}

static _Atomic bool release_stubborn;

static void *stubborn(void *arg)
{
    while (!release_stubborn)
        weft_yield();
    return arg;
}

static void *sleep_long(void *arg)
{
    weft_sleep_ns(60ull * 1000000000);
    return arg;
}

static void *waits_for_kid(void *arg)
{
    weft_spawn_opts o = {.name = "kid"};
    ASSERT_OK(weft_spawn_ex(NULL, &o, sleep_long, NULL));
    weft_wait_children();
    return arg;
}

static uint64_t id_of(weft_task *t)
{
    return weft_task_id(t);
}

static void *dump_main(void *arg)
{
    (void)arg;
    weft_task *parent, *stub, *bg;
    static const char *const tags[] = {"replica", "eu", NULL};
    weft_spawn_opts po = {.name = "parent"}, so = {.name = "stubborn", .tags = tags},
                    bo = {.name = "bg", .flags = WEFT_TASK_BACKGROUND | WEFT_TASK_STICKY};
    ASSERT_OK(weft_spawn_ex(&parent, &po, waits_for_kid, NULL));
    ASSERT_OK(weft_spawn_ex(&stub, &so, stubborn, NULL));
    ASSERT_OK(weft_spawn_ex(&bg, &bo, sleep_long, NULL));
    for (int i = 0; i < 10; i++)
        weft_yield();
    ASSERT_OK(weft_cancel(stub));
    weft_yield();
    char *text = dump();
    char line[256];
    /* Every task runs on worker 0 with one worker. */
    ASSERT(!strncmp(text, "weft: 5 live tasks on 1 worker\n", 31));
    snprintf(line, sizeof line,
             "task %llu 'main': running (the caller), worker 0, queue default, 2 children",
             (unsigned long long)weft_self_id());
    expect_line(text, line);
    snprintf(line, sizeof line,
             "  task %llu 'parent': waiting for its children, worker 0, queue default, 1 child",
             (unsigned long long)id_of(parent));
    expect_line(text, line);
    ASSERT(strstr(text, "    task ") && strstr(text, " 'kid': blocked, worker 0, queue default\n"));
    snprintf(line, sizeof line,
             "  task %llu 'stubborn': ready or running, worker 0, queue default, cancelled, "
             "tags 'replica','eu'",
             (unsigned long long)id_of(stub));
    expect_line(text, line);
    snprintf(line, sizeof line, "task %llu 'bg': blocked, worker 0, queue default, sticky",
             (unsigned long long)id_of(bg));
    expect_line(text, line);
    free(text);

    release_stubborn = true;
    ASSERT_EQ(weft_join(stub, NULL), -ECANCELED);
    ASSERT_OK(weft_cancel(parent));
    ASSERT_EQ(weft_join(parent, NULL), -ECANCELED);
    ASSERT_OK(weft_cancel(bg));
    weft_detach(bg);
    return NULL;
}

TEST(dump_shows_the_tree_with_states)
{
    run_main_one_worker(NULL, dump_main, NULL);
}

static void *leave_orphan(void *arg)
{
    weft_spawn_opts o = {.name = "orphan"};
    ASSERT_OK(weft_spawn_ex(NULL, &o, sleep_long, NULL));
    return arg;
}

static void *orphan_main(void *arg)
{
    (void)arg;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, leave_orphan, NULL));
    ASSERT_OK(weft_join(t, NULL));
    weft_yield();
    char *text = dump();
    /* With two workers the orphan may not have run yet. */
    const char *orphans = strstr(text, "\norphans (adopted by the runtime):\n  task ");
    if (!orphans || !strstr(orphans, " 'orphan': "))
        FAILF("no adopted orphan in the dump:\n%s", text);
    free(text);
    weft_cancel_stats st;
    ASSERT_OK(weft_cancel_orphans(&st));
    return NULL;
}

/* Whatever bytes a program puts in names and tags, each task stays one
 * line: control characters, and quotes inside quotes, show as '?'. */
static void *odd_names_main(void *arg)
{
    (void)arg;
    static const char *const tags[] = {"t\tab", "it's", NULL};
    weft_spawn_opts o = {.name = "two\nlines'", .queue = "q\nx", .tags = tags};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, sleep_long, NULL));
    weft_yield();
    char *text = dump();
    /* Its state (queued or parked) depends on when its queue's turn came. */
    char head[64];
    snprintf(head, sizeof head, "\n  task %llu 'two?lines?': ", (unsigned long long)id_of(t));
    const char *line = strstr(text, head);
    if (!line)
        FAILF("no one-line task %llu in the dump:\n%s", (unsigned long long)id_of(t), text);
    const char *end = strchr(line + 1, '\n');
    const char *tail = ", worker 0, queue q?x, tags 't?ab','it?s'\n";
    if (!end || strncmp(end + 1 - strlen(tail), tail, strlen(tail)))
        FAILF("task line not as expected:\n%s", text);
    free(text);
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    /* Unquoted, a queue name keeps its quotes; DEL is a control character. */
    weft_spawn_opts o2 = {.name = "quoted", .queue = "a'b\x7f"};
    ASSERT_OK(weft_spawn_ex(&t, &o2, sleep_long, NULL));
    text = dump();
    snprintf(head, sizeof head, "\n  task %llu 'quoted': ", (unsigned long long)id_of(t));
    line = strstr(text, head);
    end = line ? strchr(line + 1, '\n') : NULL;
    tail = ", worker 0, queue a'b?\n";
    if (!end || strncmp(end + 1 - strlen(tail), tail, strlen(tail)))
        FAILF("task line not as expected:\n%s", text);
    free(text);
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    /* Unicode's C1 controls (NEL, CSI) and line and paragraph separators
     * split lines for some readers, or drive the terminal: '?' too. Other
     * characters stay as they are. */
    weft_spawn_opts o3 = {.name = "a\xc2\x85"
                                  "b\xc2\x9b"
                                  "c\xe2\x80\xa8"
                                  "d\xe2\x80\xa9"
                                  "e\xc3\xa9"};
    ASSERT_OK(weft_spawn_ex(&t, &o3, sleep_long, NULL));
    text = dump();
    snprintf(head, sizeof head,
             "\n  task %llu 'a?b?c?d?e\xc3\xa9': ", (unsigned long long)id_of(t));
    if (!strstr(text, head))
        FAILF("task line not as expected:\n%s", text);
    free(text);
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    return NULL;
}

TEST(dump_keeps_odd_names_on_one_line)
{
    weft_queue_spec qs[] = {{.name = "default", .weight = 1},
                            {.name = "q\nx", .weight = 1},
                            {.name = "a'b\x7f", .weight = 1}};
    weft_config cfg = {.queues = qs, .nqueues = 3};
    run_main_one_worker(&cfg, odd_names_main, NULL);
}

TEST(dump_lists_adopted_orphans)
{
    weft_config cfg = {.orphans = WEFT_ORPHANS_ADOPT};
    run_main(&cfg, orphan_main, NULL);
}

static void *dump_errors_main(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_dump_tasks(NULL), -EINVAL);
    weft__fault_arm(WEFT_FAULT_ALLOC, 1);
    FILE *null = fopen("/dev/null", "w");
    ASSERT(null);
    ASSERT_EQ(weft_dump_tasks(null), -ENOMEM);
    weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    ASSERT_OK(weft_dump_tasks(null));
    fclose(null);
    if (access("/dev/full", W_OK) == 0) {
        FILE *full = fopen("/dev/full", "w");
        ASSERT(full);
        ASSERT_EQ(weft_dump_tasks(full), -EIO);
        fclose(full);
    }
    return NULL;
}

TEST(dump_errors)
{
    ASSERT_EQ(weft_dump_tasks(stdout), -EPERM);
    run_main_one_worker(NULL, dump_errors_main, NULL); /* faults count process-wide */
}

#define CHURN_SPAWNERS 4
#define CHURN_ROUNDS   300

static _Atomic int churning;

static void *tiny(void *arg)
{
    weft_yield();
    return arg;
}

static void *churn(void *arg)
{
    (void)arg;
    for (int i = 0; i < CHURN_ROUNDS; i++) {
        weft_task *ts[8];
        for (int k = 0; k < 8; k++)
            ASSERT_OK(weft_spawn(&ts[k], tiny, NULL));
        for (int k = 0; k < 8; k++)
            ASSERT_OK(weft_join(ts[k], NULL));
    }
    atomic_fetch_sub(&churning, 1);
    return NULL;
}

static void *churn_main(void *arg)
{
    (void)arg;
    atomic_store(&churning, CHURN_SPAWNERS);
    weft_task *ts[CHURN_SPAWNERS];
    for (int i = 0; i < CHURN_SPAWNERS; i++)
        ASSERT_OK(weft_spawn(&ts[i], churn, NULL));
    FILE *null = fopen("/dev/null", "w");
    ASSERT(null);
    int dumps = 0;
    while (atomic_load(&churning) > 0) {
        /* Every dump is whole: a header, then lines of tasks. */
        char *text = dump();
        /* A spawner not yet counted out after the dump was live during it. */
        int still = atomic_load(&churning);
        unsigned n = 0;
        ASSERT_EQ(sscanf(text, "weft: %u live task", &n), 1);
        ASSERT_GE(n, 1 + still);
        unsigned lines = 0;
        for (const char *p = strchr(text, '\n'); p && p[1]; p = strchr(p + 1, '\n')) {
            const char *q = p + 1;
            while (*q == ' ')
                q++;
            ASSERT(!strncmp(q, "task ", 5));
            lines++;
        }
        ASSERT_EQ(lines, n);
        free(text);
        ASSERT_OK(weft_dump_tasks(null));
        dumps++;
        weft_yield();
    }
    fclose(null);
    ASSERT_GT(dumps, 0);
    for (int i = 0; i < CHURN_SPAWNERS; i++)
        ASSERT_OK(weft_join(ts[i], NULL));
    return NULL;
}

TEST(dump_while_other_workers_spawn_and_finish)
{
    weft_config cfg = {.workers = 2};
    run_main(&cfg, churn_main, NULL);
}

/* ---- busy and idle time ------------------------------------------------- */

static uint64_t run_started_ns;

static void *sleep_then_spin(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_sleep_ns(50 * 1000000ull));
    uint64_t until = weft_now_ns() + 20 * 1000000ull;
    while (weft_now_ns() < until)
        ;
    weft_stats s;
    ASSERT_OK(weft_stats_snapshot(&s));
    uint64_t elapsed = weft_now_ns() - run_started_ns;
    /* Parked through most of the sleep (every worker was: nothing else ran),
     * busy through the spin, and never more than the time there was. */
    ASSERT_GE(s.idle_ns, 25 * 1000000ull);
    ASSERT_GE(s.busy_ns, 20 * 1000000ull);
    ASSERT_LE(s.busy_ns + s.idle_ns, elapsed * s.workers);
    return NULL;
}

TEST(busy_and_idle_time_account_for_the_run)
{
    run_started_ns = weft_now_ns();
    run_main(NULL, sleep_then_spin, NULL);
}

/* Bucket b holds delays in [2^b, 2^(b+1)) ns and the last one is open: its
 * quantile has no upper edge. */
/* weft_stats_queues_of_worker: each worker's own figures, which add up to
 * the totals, and whose shares are of that worker's run time. */
static void *spin_a_little(void *arg)
{
    (void)arg;
    uint64_t end = weft_now_ns() + 200000;
    while (weft_now_ns() < end)
        ASSERT_OK(weft_yield_maybe());
    return NULL;
}

static void *spin_until(void *arg)
{
    _Atomic bool *stop = arg;
    while (!atomic_load(stop)) {
        uint64_t end = weft_now_ns() + 20000;
        while (weft_now_ns() < end)
            ;
        ASSERT_OK(weft_yield_maybe());
    }
    return NULL;
}

static void *main_per_worker_queues(void *arg)
{
    (void)arg;
    weft_spawn_opts bg = {.queue = "bg"};
    weft_task *t[100];
    for (int i = 0; i < 100; i++)
        ASSERT_OK(weft_spawn_ex(&t[i], &bg, spin_a_little, NULL));
    for (int i = 0; i < 100; i++)
        ASSERT_OK(weft_join(t[i], NULL));
    /* Nothing of "bg" runs any more: its figures hold still. */
    weft_queue_stats total[2], each[2];
    ASSERT_EQ(weft_stats_queues(total, 2), 2);
    uint64_t service = 0, runs = 0, slices = 0;
    unsigned n = weft_worker_count();
    for (unsigned w = 0; w < n; w++) {
        ASSERT_EQ(weft_stats_queues_of_worker(w, each, 2), 2);
        ASSERT(strcmp(each[1].name, "bg") == 0);
        service += each[1].service_ns;
        runs += each[1].runs;
        slices += each[1].slices;
        double shares = each[0].service_share + each[1].service_share;
        if (each[0].service_ns + each[1].service_ns)
            ASSERT(shares > 0.999 && shares < 1.001); /* of this worker's time */
    }
    ASSERT_GT(total[1].service_ns, 0);
    ASSERT_EQ(service, total[1].service_ns);
    ASSERT_EQ(runs, total[1].runs);
    ASSERT_EQ(slices, total[1].slices);
    /* The caller is counted on one worker only, the one it runs on: the
     * reads do not move it (each one waits for errands on the other
     * workers, whose wakes used to take it along, 22 of 22 calls in a
     * trial, so that it was counted on both workers or on neither). */
    /* Busy workers, so that the errands wait their turn and the caller
     * parks for them. */
    static _Atomic bool stop_spinning;
    atomic_store(&stop_spinning, false);
    weft_task *spinners[4];
    for (int i = 0; i < 4; i++)
        ASSERT_OK(weft_spawn_ex(&spinners[i], &bg, spin_until, (void *)&stop_spinning));
    for (int round = 0; round < 20; round++) {
        ASSERT_OK(weft_sleep_ns(1000000));
        int here = weft_worker_index();
        uint64_t live = 0, running = 0;
        for (unsigned w = 0; w < n; w++) {
            ASSERT_EQ(weft_stats_queues_of_worker(w, each, 2), 2);
            ASSERT_EQ(weft_worker_index(), here);
            live += each[0].live;
            running += each[0].running;
        }
        ASSERT_EQ(live, 1); /* "main" holds this task alone */
        ASSERT_EQ(running, 1);
        ASSERT_EQ(weft_stats_queues(total, 2), 2);
        ASSERT_EQ(weft_worker_index(), here);
    }
    atomic_store(&stop_spinning, true);
    for (int i = 0; i < 4; i++)
        ASSERT_OK(weft_join(spinners[i], NULL));
    ASSERT_EQ(weft_stats_queues_of_worker(n, each, 2), -ERANGE);
    ASSERT_EQ(weft_stats_queues_of_worker(UINT32_MAX, each, 2), -ERANGE);
    ASSERT_EQ(weft_stats_queues_of_worker(0, NULL, 2), -EINVAL);
    ASSERT_EQ(weft_stats_queues_of_worker(0, NULL, 0), 2);
    return NULL;
}

/* weft_queue_stats.name stays valid after the run: a program may take the
 * figures in its main task and print them once weft_run has returned
 * (under ASan a freed name is caught here). */
static weft_queue_stats kept_stats[2];

static void *main_takes_queue_stats(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_stats_queues(kept_stats, 2), 2);
    return NULL;
}

TEST(queue_names_in_stats_outlive_the_run)
{
    char *names = malloc(8);
    ASSERT(names);
    strcpy(names, "main");
    strcpy(names + 5, "bg");
    weft_queue_spec queues[] = {{.name = names, .weight = 100}, {.name = names + 5, .weight = 1}};
    weft_config cfg = {.queues = queues, .nqueues = 2};
    run_main(&cfg, main_takes_queue_stats, NULL);
    free(names); /* the caller's names go too */
    ASSERT_STREQ(kept_stats[0].name, "main");
    ASSERT_STREQ(kept_stats[1].name, "bg");
    /* Another runtime with the same names shares the kept copies. */
    weft_queue_spec again[] = {{.name = "main", .weight = 1}, {.name = "bg", .weight = 1}};
    weft_config cfg2 = {.queues = again, .nqueues = 2};
    const char *first = kept_stats[0].name;
    run_main(&cfg2, main_takes_queue_stats, NULL);
    ASSERT(kept_stats[0].name == first);
}

/* The stats that ask every worker need a task, whatever the number of
 * workers: a spawn's discard callback runs on a worker thread outside any
 * task, and there they worked with one worker and failed with two. */
static _Atomic int discard_results[4];
static _Atomic bool discard_ran;

static void stats_in_discard(void *arg)
{
    (void)arg;
    weft_stats s, w[2];
    weft_queue_stats q[1];
    weft_op_counts c[1];
    atomic_store(&discard_results[0], weft_stats_snapshot(&s));
    atomic_store(&discard_results[1], weft_stats_workers(w, 2));
    atomic_store(&discard_results[2], weft_stats_queues(q, 1));
    atomic_store(&discard_results[3], weft_op_counts_by_opcode(c, 1));
    atomic_store(&discard_ran, true);
}

static void *main_stats_in_discard(void *arg)
{
    (void)arg;
    weft_spawn_opts o = {.discard = stats_in_discard};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, return_arg, NULL));
    ASSERT_OK(weft_cancel(t)); /* before it ran: its discard runs instead */
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    /* And from this task they work. */
    weft_stats s;
    ASSERT_OK(weft_stats_snapshot(&s));
    return NULL;
}

TEST(stats_need_a_task_whatever_the_workers)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        atomic_store(&discard_ran, false);
        weft_config cfg = {.workers = workers};
        run_main(&cfg, main_stats_in_discard, NULL);
        ASSERT(atomic_load(&discard_ran));
        for (int i = 0; i < 4; i++)
            ASSERT_EQ(atomic_load(&discard_results[i]), -EPERM);
    }
}

TEST(queue_stats_of_each_worker_add_up_to_the_totals)
{
    weft_queue_stats q[2];
    ASSERT_EQ(weft_stats_queues_of_worker(0, q, 2), -EPERM);
    weft_queue_spec queues[] = {{.name = "main", .weight = 100}, {.name = "bg", .weight = 1}};
    for (unsigned workers = 1; workers <= 2; workers++) {
        weft_config cfg = {.workers = workers, .queues = queues, .nqueues = 2};
        run_main(&cfg, main_per_worker_queues, NULL);
    }
}

/* The printers write nothing for a NULL stream or stats, and take a NULL
 * array for no entries. */
TEST(printers_take_null)
{
    weft_stats_print(NULL, NULL);
    weft_stats_print_json(NULL, NULL);
    weft_stats_print_queues(NULL, NULL, 3);
    weft_stats_print_queues_json(NULL, NULL, 3);
    weft_op_counts_print(NULL, NULL, 3);
    weft_op_counts_print_json(NULL, NULL, 3);
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    ASSERT(m);
    weft_stats_print(m, NULL);
    weft_stats_print_json(m, NULL);
    ASSERT_OK(fflush(m));
    ASSERT_EQ(len, 0u);
    ASSERT_OK(fclose(m));
    free(text);
    text = queues_printed(weft_stats_print_queues_json, NULL, 3);
    ASSERT_STREQ(text, "[]\n");
    free(text);
    text = queues_printed(weft_stats_print_queues, NULL, 3);
    ASSERT(strchr(text, '\n') == text + strlen(text) - 1); /* the header alone */
    free(text);
}

TEST(delay_quantiles_name_the_bucket_edge)
{
    weft_queue_stats q;
    memset(&q, 0, sizeof q);
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 0.5), 0);
    /* None recorded (stats off): the table says so, not "0us". */
    q.name = "none";
    char *none = queues_printed(weft_stats_print_queues, &q, 1);
    const char *none_row = strchr(none, '\n');
    ASSERT(none_row && strstr(none_row, "        n/a        n/a\n"));
    free(none);
    q.delay_hist[10] = 1;
    q.delay_count = 1;
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 0.99), 2048);
    q.delay_hist[10] = 0;
    q.delay_hist[WEFT_STATS_DELAY_BUCKETS - 2] = 1;
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 0.99),
              (uint64_t)1 << (WEFT_STATS_DELAY_BUCKETS - 1));
    q.delay_hist[WEFT_STATS_DELAY_BUCKETS - 2] = 0;
    q.delay_hist[WEFT_STATS_DELAY_BUCKETS - 1] = 1; /* over 2^39 ns, about 550 s */
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 0.99), UINT64_MAX);
    /* The table names the open bucket, not UINT64_MAX's digits. */
    q.name = "open";
    char *text = queues_printed(weft_stats_print_queues, &q, 1);
    const char *row = strchr(text, '\n');
    ASSERT(row && strstr(row, "      >550s      >550s\n"));
    free(text);
    /* p outside 0..1 is clamped (UBSan flagged the conversion of p < 0). */
    q.delay_hist[WEFT_STATS_DELAY_BUCKETS - 1] = 0;
    q.delay_hist[3] = q.delay_hist[5] = 1;
    q.delay_count = 2;
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, -1), 16);
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 0.0 / 0.0), 16);
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 7), 64);
    ASSERT_EQ(weft_queue_stats_delay_quantile(NULL, 0.5), 0);
    /* The nearest rank: the median of two is the lower one, and the p99
     * of 100 is the 99th, not the largest (both were one too far). */
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 0.5), 16);
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 0.51), 64);
    q.delay_hist[3] = 99;
    q.delay_hist[5] = 0;
    q.delay_hist[20] = 1;
    q.delay_count = 100;
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 0.99), 16);
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 0.995), (uint64_t)2 << 20);
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 1), (uint64_t)2 << 20);
    /* 0.07 * 100 is a hair above 7 in doubles: still the 7th. */
    q.delay_hist[3] = 7;
    q.delay_hist[20] = 93;
    ASSERT_EQ(weft_queue_stats_delay_quantile(&q, 0.07), 16);
}

TEST_MAIN(
    CASE(printers_take_null), CASE(delay_quantiles_name_the_bucket_edge),
    CASE(queue_json_ignores_the_locale), CASE(queue_stats_of_each_worker_add_up_to_the_totals),
    CASE(stats_need_a_task_whatever_the_workers), CASE(queue_names_in_stats_outlive_the_run),
    CASE(busy_and_idle_time_account_for_the_run),
    CASE(an_embedded_executor_counts_its_run_calls_as_busy), CASE(trace_has_one_slice_per_run),
    CASE(trace_follows_yields_that_switch_straight_to_the_next_task),
    CASE(trace_is_utf8_whatever_the_names), CASE(names_are_read_no_further_than_the_bytes_kept),
    CASE(names_are_cut_at_a_character_boundary_on_every_spawn_path),
    CASE(queue_stats_stay_well_formed_whatever_the_names),
    CASE(a_panic_that_aborts_keeps_the_trace_so_far),
    CASE(an_abort_for_a_misused_sync_object_keeps_the_trace_so_far),
    CASE(an_abort_for_a_failed_cleanup_keeps_the_trace_so_far),
    CASE(trace_with_two_workers_has_a_track_each), CASE(trace_of_an_embedded_executor),
    CASE(trace_path_errors_stop_the_run_before_it_starts),
    CASE(a_trace_that_cannot_be_written_is_reported), CASE(trace_escapes_task_and_queue_names),
    CASE(every_allocation_of_a_traced_run_can_fail), CASE(dump_shows_the_tree_with_states),
    CASE(dump_keeps_odd_names_on_one_line), CASE(dump_lists_adopted_orphans), CASE(dump_errors),
    CASE(dump_while_other_workers_spawn_and_finish))
