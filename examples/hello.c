#include <weft.h>

static void *child(void *arg)
{
    weft_sleep_ns(1000000);
    return arg;
}

static void *hello(void *arg)
{
    weft_task *t;
    weft_spawn(&t, child, (void *)42);
    void *r;
    weft_join(t, &r);
    printf("child returned %ld\n", (long)(intptr_t)r);
    return NULL;
}

WEFT_MAIN(hello)
