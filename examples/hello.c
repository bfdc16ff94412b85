#include <weft.h>

static void *child(void *arg)
{
    weft_sleep_ns(1000000);
    return arg;
}

static void *hello(void *arg)
{
    weft_task *t;
    int err = weft_spawn(&t, child, (void *)42);
    if (err < 0) {
        fprintf(stderr, "weft_spawn: %s\n", weft_strerror(err));
        return NULL;
    }
    void *r = NULL;
    err = weft_join(t, &r);
    printf("child returned %ld (%s)\n", (long)(intptr_t)r, weft_strerror(err));
    return NULL;
}

WEFT_MAIN(hello)
