/* SPDX-License-Identifier: Apache-2.0 */
#include "common/loop/loop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/base/macro.h"

struct SbxQueue {
        uv_async_t async;
        pthread_mutex_t lock;
        SbxQueueItem *head, *tail;
        SbxQueueHandler handler;
        void *userdata;
        void (*done)(void *userdata);
        void *done_userdata;
};

static void queue_drain(SbxQueue *q)
{
        SbxQueueItem *list;

        /* Take the whole list at once: handlers may push again, which lands in the next drain. */
        pthread_mutex_lock(&q->lock);
        list = q->head;
        q->head = q->tail = NULL;
        pthread_mutex_unlock(&q->lock);

        while (list) {
                SbxQueueItem *next = list->next;
                list->next = NULL;
                q->handler(q, list, q->userdata);
                list = next;
        }
}

static void queue_async_cb(uv_async_t *a)
{
        queue_drain(container_of(a, SbxQueue, async));
}

int sbx_queue_new(uv_loop_t *loop, SbxQueueHandler handler, void *userdata, SbxQueue **ret)
{
        SbxQueue *q = new0(SbxQueue, 1);
        int r;

        if (!q)
                return -ENOMEM;
        r = uv_async_init(loop, &q->async, queue_async_cb);
        if (r < 0) {
                free(q);
                return r;
        }
        pthread_mutex_init(&q->lock, NULL);
        q->handler = handler;
        q->userdata = userdata;
        *ret = q;
        return 0;
}

void sbx_queue_push(SbxQueue *q, SbxQueueItem *item)
{
        item->next = NULL;
        pthread_mutex_lock(&q->lock);
        if (q->tail)
                q->tail->next = item;
        else
                q->head = item;
        q->tail = item;
        pthread_mutex_unlock(&q->lock);
        uv_async_send(&q->async);
}

static void queue_closed(uv_handle_t *h)
{
        SbxQueue *q = container_of((uv_async_t *)h, SbxQueue, async);
        void (*done)(void *) = q->done;
        void *ud = q->done_userdata;

        pthread_mutex_destroy(&q->lock);
        free(q);
        if (done)
                done(ud);
}

void sbx_queue_close(SbxQueue *q, void (*done)(void *userdata), void *userdata)
{
        if (!q)
                return;
        queue_drain(q);
        q->done = done;
        q->done_userdata = userdata;
        uv_close((uv_handle_t *)&q->async, queue_closed);
}

struct SbxSignals {
        uv_signal_t sigint, sigterm;
        void (*on_shutdown)(int signo, void *userdata);
        void *userdata;
        bool fired;
        int closing;
};

static void signal_cb(uv_signal_t *h, int signo)
{
        SbxSignals *s = h->data;

        if (s->fired) {
                /* The operator asked twice: whatever is hanging the orderly path, stop now. */
                _exit(128 + signo);
        }
        s->fired = true;
        s->on_shutdown(signo, s->userdata);
}

int sbx_signals_new(uv_loop_t *loop, void (*on_shutdown)(int signo, void *userdata), void *userdata,
                    SbxSignals **ret)
{
        SbxSignals *s = new0(SbxSignals, 1);
        int r;

        if (!s)
                return -ENOMEM;
        signal(SIGPIPE, SIG_IGN);
        s->on_shutdown = on_shutdown;
        s->userdata = userdata;
        uv_signal_init(loop, &s->sigint);
        uv_signal_init(loop, &s->sigterm);
        s->sigint.data = s->sigterm.data = s;
        r = uv_signal_start(&s->sigint, signal_cb, SIGINT);
        if (r >= 0)
                r = uv_signal_start(&s->sigterm, signal_cb, SIGTERM);
        if (r < 0) {
                sbx_signals_close(s);
                return r;
        }
        /* Signal watchers must not keep the loop alive once everything else is done. */
        uv_unref((uv_handle_t *)&s->sigint);
        uv_unref((uv_handle_t *)&s->sigterm);
        *ret = s;
        return 0;
}

static void signals_closed(uv_handle_t *h)
{
        SbxSignals *s = h->data;
        if (--s->closing == 0)
                free(s);
}

void sbx_signals_close(SbxSignals *s)
{
        if (!s)
                return;
        s->closing = 2;
        uv_close((uv_handle_t *)&s->sigint, signals_closed);
        uv_close((uv_handle_t *)&s->sigterm, signals_closed);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
        /* A safety net: owners close their handles (and free their memory) in their own close
         * callbacks; whatever is still open here has no owner left to free it. */
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

int sbx_loop_close_all(uv_loop_t *loop)
{
        /* Bounded: a request that never completes must not hang a daemon's exit forever. */
        uint64_t deadline = uv_hrtime() + 10ULL * 1000 * 1000 * 1000;

        /* Let close callbacks already pending run first, so owners free what they own. */
        uv_run(loop, UV_RUN_NOWAIT);
        for (;;) {
                uv_walk(loop, close_walk_cb, NULL);
                uv_run(loop, UV_RUN_NOWAIT);
                int r = uv_loop_close(loop);
                if (r != UV_EBUSY || uv_hrtime() >= deadline)
                        return r;
                /* Requests (thread-pool work, DNS) are still in flight: wait for one to finish. */
                if (uv_loop_alive(loop))
                        uv_run(loop, UV_RUN_ONCE);
        }
}
