/* SPDX-License-Identifier: Apache-2.0 */
/* common/loop: the cross-thread queue, signals to shutdown, closing a loop with handles left. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "common/loop/loop.h"
#include "tests/lib/fixture.h"

typedef struct Item {
        SbxQueueItem item;
        int producer;
        int seq;
} Item;

typedef struct Counts {
        int last_seq[4];
        int total;
        bool in_order;
} Counts;

static SbxQueue *queue;

static void handle(SbxQueue *q, SbxQueueItem *it, void *userdata)
{
        Counts *c = userdata;
        Item *i = (Item *)it;
        if (i->seq != c->last_seq[i->producer] + 1)
                c->in_order = false;
        c->last_seq[i->producer] = i->seq;
        c->total++;
        free(i);
}

static void *producer(void *arg)
{
        int id = (int)(intptr_t)arg;
        for (int s = 0; s < 5000; s++) {
                Item *i = calloc(1, sizeof(Item));
                i->producer = id;
                i->seq = s;
                sbx_queue_push(queue, &i->item);
        }
        return NULL;
}

Test(loop, queue_delivers_everything_in_order_per_producer)
{
        uv_loop_t loop;
        Counts c = { .in_order = true };
        pthread_t t[4];

        for (int i = 0; i < 4; i++)
                c.last_seq[i] = -1;
        uv_loop_init(&loop);
        cr_assert_eq(sbx_queue_new(&loop, handle, &c, &queue), 0);
        for (int i = 0; i < 4; i++)
                pthread_create(&t[i], NULL, producer, (void *)(intptr_t)i);
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        usec_t deadline = sbx_now_monotonic() + 5 * USEC_PER_SEC;
        while (c.total < 20000 && sbx_now_monotonic() < deadline)
                uv_run(&loop, UV_RUN_ONCE);
        cr_assert_eq(c.total, 20000);
        cr_assert(c.in_order);
        sbx_queue_close(queue, NULL, NULL);
        cr_assert_eq(sbx_loop_close_all(&loop), 0);
}

static void on_shutdown(int signo, void *userdata)
{
        *(int *)userdata = signo;
}

Test(loop, sigterm_starts_shutdown_once)
{
        uv_loop_t loop;
        SbxSignals *s;
        int got = 0;

        uv_loop_init(&loop);
        cr_assert_eq(sbx_signals_new(&loop, on_shutdown, &got, &s), 0);
        raise(SIGTERM);
        /* Signal watchers are unreferenced (they must not keep a daemon alive): give the loop
         * something to do while the signal arrives, as a daemon's servers would. */
        bool flag = false;
        sbx_test_run_until(&loop, &flag, 200 * USEC_PER_MSEC);
        cr_assert_eq(got, SIGTERM);
        sbx_signals_close(s);
        cr_assert_eq(sbx_loop_close_all(&loop), 0);
}

static void never(uv_timer_t *t)
{
}

Test(loop, close_all_closes_forgotten_handles)
{
        uv_loop_t loop;
        uv_timer_t *t = malloc(sizeof(*t));
        uv_loop_init(&loop);
        uv_timer_init(&loop, t);
        uv_timer_start(t, never, 100000, 0);
        cr_assert_eq(sbx_loop_close_all(&loop), 0);
        free(t);
}
