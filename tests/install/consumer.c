/* Built against an installed weft through pkg-config and through the CMake
 * package, to prove the installed headers, libraries and metadata work. */
#include <weft.h>

static void *child(void *arg)
{
    weft_sleep_ns(1000);
    return (void *)((intptr_t)arg * 2);
}

static void *run(void *arg)
{
    char **argv = arg; /* WEFT_MAIN passes main's argv */
    if (!argv || !argv[0] || argv[1]) {
        puts("consumer: WEFT_MAIN did not pass main's argv");
        return (void *)1;
    }
    weft_task *t;
    if (weft_spawn(&t, child, (void *)21) < 0)
        return (void *)1;
    void *r = NULL;
    if (weft_join(t, &r) < 0 || (intptr_t)r != 42)
        return (void *)1;
    puts("consumer ok");
    return NULL;
}

WEFT_MAIN(run)
