/* A user-defined policy (examples/priority_policy.c) plugged into a real
 * runtime: exact run order, and that it mixes with built-in queues. */
#include "test.h"

#include "../examples/priority_policy.h"

static char order[16];
static int norder;

static void *note(void *arg)
{
    order[norder++] = (char)('0' + (intptr_t)arg);
    return NULL;
}

static void *spawn_prios(void *arg)
{
    static const int prios[] = {5, 1, 9, 0, 1, 3};
    norder = 0;
    for (int i = 0; i < 6; i++) {
        weft_spawn_opts o = {.queue = "prio", .group = EXAMPLE_PRIORITY(prios[i])};
        ASSERT_OK(weft_spawn_ex(NULL, &o, note, (void *)(intptr_t)prios[i]));
    }
    ASSERT_OK(weft_wait_children());
    order[norder] = 0;
    return NULL;
}

TEST(strict_priority_order)
{
    weft_queue_spec q[] = {{.name = "prio", .weight = 1, .policy = &example_priority_policy}};
    weft_config cfg = {.queues = q, .nqueues = 1};
    run_main_one_worker(&cfg, spawn_prios, NULL);
    ASSERT_STREQ(order, "011359");
}

TEST(beside_a_builtin_queue)
{
    weft_queue_spec q[] = {{.name = "main", .weight = 1},
                           {.name = "prio", .weight = 5, .policy = &example_priority_policy}};
    weft_config cfg = {.queues = q, .nqueues = 2};
    run_main_one_worker(&cfg, spawn_prios, NULL);
    ASSERT_STREQ(order, "011359");
}

TEST(its_init_refuses_a_config)
{
    int dummy = 0;
    weft_queue_spec q[] = {
        {.name = "prio", .weight = 1, .policy = &example_priority_policy, .policy_config = &dummy}};
    weft_config cfg = {.queues = q, .nqueues = 1};
    ASSERT_EQ(weft_run(&cfg, spawn_prios, NULL, NULL), -EINVAL);
}

TEST_MAIN(CASE(strict_priority_order), CASE(beside_a_builtin_queue),
          CASE(its_init_refuses_a_config))
