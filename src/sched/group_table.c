/* Group records, the id tables behind them and the seen pages; see
 * group_table.h for when a task is accounted to its group and why. */
#include "sched/group_table.h"

#include <assert.h>
#include <string.h>

#define TABLE_MIN_CAPACITY 16
/* Tables shrink by half below 1/8 load, so that a burst of a million groups
 * does not pin its table for the worker's lifetime; not below this. */
#define TABLE_SHRINK_FLOOR 1024
/* Records kept for reuse. Records come and go with tasks (a task that is its
 * own group gets one when it runs and then sleeps, and its exit frees it); a
 * small cache makes that two pointer moves instead of malloc and free, while
 * bounding what an idle worker holds on to. */
#define GROUP_CACHE_MAX 64

static int table_resize(weft__group_table *t, size_t capacity)
{
    weft__group_slot *slots = weft__calloc(capacity, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    weft__group_table old = *t;
    t->slots = slots;
    t->mask = capacity - 1;
    t->shift = 64u - (unsigned)__builtin_ctzll(capacity);
    for (size_t i = 0; old.slots && i <= old.mask; i++) {
        if (!old.slots[i].value)
            continue;
        size_t j = weft__group_table_home(t, old.slots[i].key);
        while (slots[j].value)
            j = (j + 1) & t->mask;
        slots[j] = old.slots[i];
    }
    free(old.slots);
    return 0;
}

int weft__group_table_insert(weft__group_table *t, uint64_t key, void *value)
{
    assert(value && !weft__group_table_find(t, key));
    size_t capacity = t->slots ? t->mask + 1 : 0;
    if ((t->count + 1) * 4 > capacity * 3) {
        int r = table_resize(t, capacity ? capacity * 2 : TABLE_MIN_CAPACITY);
        /* A fuller table is slower but still correct, as long as some slot
         * stays empty to end every probe. */
        if (r < 0 && (t->count + 1) * 8 > capacity * 7)
            return r;
    }
    size_t i = weft__group_table_home(t, key);
    while (t->slots[i].value)
        i = (i + 1) & t->mask;
    t->slots[i].key = key;
    t->slots[i].value = value;
    t->count++;
    return 0;
}

void *weft__group_table_erase(weft__group_table *t, uint64_t key)
{
    if (t->count == 0)
        return NULL;
    size_t i = weft__group_table_home(t, key);
    for (;; i = (i + 1) & t->mask) {
        if (!t->slots[i].value)
            return NULL;
        if (t->slots[i].key == key)
            break;
    }
    void *value = t->slots[i].value;
    /* Backward shift: pull later entries of the probe run into the hole when
     * the hole lies between their home slot and where they sit, so that
     * lookups never need tombstones. */
    for (size_t j = (i + 1) & t->mask; t->slots[j].value; j = (j + 1) & t->mask) {
        size_t home = weft__group_table_home(t, t->slots[j].key);
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i].value = NULL;
    t->count--;
    size_t capacity = t->mask + 1;
    if (capacity > TABLE_SHRINK_FLOOR && t->count < capacity / 8)
        (void)table_resize(t, capacity / 2); /* failing to shrink is harmless */
    return value;
}

void weft__group_table_fini(weft__group_table *t)
{
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* ---- seen pages ------------------------------------------------------- */

static weft__seen_page *seen_page(weft__seen *m, uint64_t key, uint64_t *cached_key,
                                  weft__seen_page **cached)
{
    if (*cached && *cached_key == key)
        return *cached;
    weft__seen_page *page = weft__group_table_find(&m->pages, key);
    if (page) {
        *cached_key = key;
        *cached = page;
    }
    return page;
}

/* Drops an empty page from the table, keeping one for reuse. */
static void seen_drop(weft__seen *m, uint64_t key, weft__seen_page *page)
{
    weft__group_table_erase(&m->pages, key);
    if (m->add_page == page)
        m->add_page = NULL;
    if (m->remove_page == page)
        m->remove_page = NULL;
    if (m->spare)
        free(page);
    else
        m->spare = page;
}

int weft__seen_add(weft__seen *m, uint64_t id, uint64_t spawned_ns)
{
    uint64_t key = id / WEFT__SEEN_PAGE_IDS;
    /* The page adds leave, if empty, is done: seen_remove keeps only the
     * one adds go to. Adds leave it for a new page, and also for an old
     * one (an old task pushed again), after which the new ids move on. */
    if (m->add_page && m->add_key != key && m->add_page->live == 0)
        seen_drop(m, m->add_key, m->add_page);
    weft__seen_page *page = seen_page(m, key, &m->add_key, &m->add_page);
    if (!page) {
        page = m->spare;
        m->spare = NULL;
        if (!page && !(page = weft__malloc(sizeof *page)))
            return -ENOMEM;
        page->live = 0;
        if (weft__group_table_insert(&m->pages, key, page) < 0) {
            m->spare = page;
            return -ENOMEM;
        }
        m->add_key = key;
        m->add_page = page;
    }
    unsigned bit = (unsigned)(id % WEFT__SEEN_PAGE_IDS);
    page->live |= UINT64_C(1) << bit;
    page->spawned_ns[bit] = spawned_ns;
    return 0;
}

bool weft__seen_remove(weft__seen *m, uint64_t id, uint64_t *spawned_ns)
{
    if (m->pages.count == 0)
        return false;
    uint64_t key = id / WEFT__SEEN_PAGE_IDS;
    weft__seen_page *page = seen_page(m, key, &m->remove_key, &m->remove_page);
    unsigned bit = (unsigned)(id % WEFT__SEEN_PAGE_IDS);
    if (!page || !(page->live & UINT64_C(1) << bit))
        return false;
    if (spawned_ns)
        *spawned_ns = page->spawned_ns[bit];
    page->live &= ~(UINT64_C(1) << bit);
    /* The page new ids go to stays even when empty: with spawn, run, exit
     * one at a time, it empties at every exit. */
    if (page->live == 0 && page != m->add_page)
        seen_drop(m, key, page);
    return true;
}

static void seen_fini(weft__seen *m)
{
    weft__group_table *t = &m->pages;
    for (size_t i = 0; t->slots && i <= t->mask; i++)
        free(t->slots[i].value);
    free(m->spare);
    weft__group_table_fini(t);
    memset(m, 0, sizeof *m);
}

/* ---- group records ---------------------------------------------------- */

void weft__groups_init(weft__groups *s)
{
    memset(s, 0, sizeof *s);
}

void weft__groups_fini(weft__groups *s)
{
    weft__group_table *t = &s->by_group;
    for (size_t i = 0; t->slots && i <= t->mask; i++)
        free(t->slots[i].value);
    while (s->cache) {
        weft__group *g = s->cache;
        s->cache = g->next;
        free(g);
    }
    weft__group_table_fini(&s->by_group);
    weft__group_table_fini(&s->by_task);
    seen_fini(&s->seen);
    weft__groups_init(s);
}

static void group_free(weft__groups *s, weft__group *g)
{
    if (s->cached < GROUP_CACHE_MAX) {
        g->next = s->cache;
        s->cache = g;
        s->cached++;
    } else {
        free(g);
    }
}

/* A new record for e's group, in by_group; NULL when memory runs out. */
static weft__group *group_create(weft__groups *s, const weft_sched_entity *e)
{
    weft__group *g = s->cache;
    if (g) {
        s->cache = g->next;
        s->cached--;
    } else if (!(g = weft__malloc(sizeof *g))) {
        return NULL;
    }
    memset(g, 0, sizeof *g);
    g->id = e->group;
    g->first_ns = e->spawned_ns;
    g->heap_index = WEFT__GROUP_IDLE;
    if (weft__group_table_insert(&s->by_group, g->id, g) < 0) {
        group_free(s, g);
        return NULL;
    }
    /* The task whose id names the group arrived first (arrival_fifo). */
    if (e->group != e->task_id && weft__seen_remove(&s->seen, e->group, &g->first_ns)) {
        g->self = true;
        g->tasks = 1;
    }
    return g;
}

static void group_destroy(weft__groups *s, weft__group *g)
{
    assert(g->tasks == 0 && !g->head && g->heap_index == WEFT__GROUP_IDLE);
    weft__group_table_erase(&s->by_group, g->id);
    group_free(s, g);
}

weft__group *weft__groups_account(weft__groups *s, const weft_sched_entity *e, bool create)
{
    weft__group *g;
    if (e->group == e->task_id) {
        g = weft__group_table_find(&s->by_group, e->group);
        if (g && g->self)
            return g;
        if (!g && (!create || !(g = group_create(s, e))))
            return NULL;
        g->self = true;
        g->tasks++;
        return g;
    }
    if ((g = weft__group_table_find(&s->by_task, e->task_id)))
        return g;
    g = weft__group_table_find(&s->by_group, e->group);
    if (!g && (!create || !(g = group_create(s, e))))
        return NULL;
    if (weft__group_table_insert(&s->by_task, e->task_id, g) < 0) {
        if (g->tasks == 0) /* created here, and no task came with it */
            group_destroy(s, g);
        return NULL;
    }
    g->tasks++;
    return g;
}

void weft__groups_unaccount(weft__groups *s, const weft_sched_entity *e)
{
    weft__group *g;
    if (e->group == e->task_id) {
        g = weft__group_table_find(&s->by_group, e->group);
        if (!g || !g->self)
            return;
        g->self = false;
    } else if (!(g = weft__group_table_erase(&s->by_task, e->task_id))) {
        return;
    }
    if (--g->tasks == 0)
        group_destroy(s, g);
}
