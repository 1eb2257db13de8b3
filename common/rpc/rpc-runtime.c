/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC runtime: one completion queue, one poller thread, and the bridge to the libuv loop.
 *
 * The poller thread does nothing but grpc_completion_queue_next() and hand each completed tag to
 * the loop through an SbxQueue (mutex + uv_async). This keeps every gRPC batch and every piece of
 * daemon state on the loop thread, as the stack notes recommend; the experimental callback
 * completion queue of gRPC 1.51 is not used because it moves no I/O by itself from C.
 *
 * The loop-polling mode (sbx_rpc_new_polling_loop) turns this around for gRPC-bound daemons: the
 * loop thread sleeps in grpc_completion_queue_next() itself, until the next libuv timer at the
 * latest, and runs uv_run(UV_RUN_NOWAIT) between, the way libuv is embedded in other event loops
 * (uv_backend_fd/uv_backend_timeout). On a small machine a hand-off costs two thread switches per
 * completion, the bulk of such a daemon's CPU. libuv's fds are watched by a helper thread (the
 * waker) that, when libuv's epoll fd turns readable, starts one call on a lame channel: gRPC fails
 * it at once, and its completion wakes the queue. Only public gRPC API is used.
 */
#include <errno.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log/log.h"
#include "common/rpc/rpc-internal.h"

static void *poller_main(void *arg)
{
        SbxRpc *rpc = arg;

        for (;;) {
                grpc_event ev =
                        grpc_completion_queue_next(rpc->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                if (ev.type == GRPC_QUEUE_SHUTDOWN)
                        break;
                if (ev.type != GRPC_OP_COMPLETE)
                        continue;
                SbxRpcTag *tag = ev.tag;
                tag->ok = ev.success != 0;
                sbx_queue_push(rpc->queue, &tag->item);
        }
        return NULL;
}

static void run_tag(SbxRpc *rpc, SbxRpcTag *tag)
{
        rpc->outstanding--;
        tag->fn(tag, tag->ok);
        if (rpc->shutting_down)
                sbx__rpc_maybe_finish_shutdown(rpc);
}

static void dispatch(SbxQueue *q, SbxQueueItem *item, void *userdata)
{
        run_tag(userdata, container_of(item, SbxRpcTag, item));
}

/* ---- the loop-polling mode ---- */

/* Completions handled per turn at most before libuv runs. */
#define POLLING_BATCH 64

/* The loop-polling runtimes of this thread (one per loop). */
static __thread LIST_HEAD(PollingRpcs, SbxRpc) polling_rpcs;

/* Waker thread, lock held: one call on the lame channel; its failure completes on the queue.
 * False when gRPC would not start it (the caller tries again). */
static bool waker_wake(SbxRpcWaker *w, grpc_completion_queue *cq)
{
        grpc_op ops[2] = { { 0 } };

        w->call = grpc_channel_create_call(w->lame, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                           grpc_slice_from_static_string("/sbx.Waker/Wake"), NULL,
                                           gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (!w->call)
                return false;
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[1].data.recv_status_on_client.trailing_metadata = &w->trailing;
        ops[1].data.recv_status_on_client.status = &w->status;
        ops[1].data.recv_status_on_client.status_details = &w->details;
        if (grpc_call_start_batch(w->call, ops, ELEMENTSOF(ops), &w->tag, NULL) != GRPC_CALL_OK) {
                grpc_call_unref(w->call);
                w->call = NULL;
                return false;
        }
        w->in_flight = true;
        return true;
}

static void *waker_main(void *arg)
{
        SbxRpc *rpc = arg;
        SbxRpcWaker *w = &rpc->waker;
        struct pollfd fds[2] = {
                { .fd = uv_backend_fd(rpc->loop), .events = POLLIN },
                { .fd = w->stop_fd, .events = POLLIN },
        };

        pthread_mutex_lock(&w->lock);
        for (;;) {
                while (!w->stop && (!w->armed || w->in_flight))
                        pthread_cond_wait(&w->cond, &w->lock);
                if (w->stop)
                        break;
                pthread_mutex_unlock(&w->lock);
                int n = poll(fds, ELEMENTSOF(fds), -1);
                pthread_mutex_lock(&w->lock);
                if (w->stop)
                        break;
                /* Readable until the loop thread has run libuv: wait for it to re-arm. */
                if (n > 0 && fds[0].revents) {
                        w->armed = false;
                        if (!waker_wake(w, rpc->cq)) {
                                /* Not expected from a lame channel; never leave libuv unheard. */
                                w->armed = true;
                                pthread_mutex_unlock(&w->lock);
                                usleep(1000);
                                pthread_mutex_lock(&w->lock);
                        }
                }
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* Loop thread: the wake-up call came back. */
static void waker_done(SbxRpcWaker *w)
{
        pthread_mutex_lock(&w->lock);
        grpc_call_unref(w->call);
        w->call = NULL;
        grpc_metadata_array_destroy(&w->trailing);
        grpc_metadata_array_init(&w->trailing);
        grpc_slice_unref(w->details);
        w->details = grpc_empty_slice();
        w->in_flight = false;
        /* It may be armed already, waiting for this. */
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

static int waker_start(SbxRpc *rpc)
{
        SbxRpcWaker *w = &rpc->waker;

        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        grpc_metadata_array_init(&w->trailing);
        w->details = grpc_empty_slice();
        w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->stop_fd < 0)
                return -errno;
        w->lame = grpc_lame_client_channel_create("sbx-waker", GRPC_STATUS_UNAVAILABLE, "wake-up");
        if (!w->lame)
                return -ENOMEM;
        int r = -pthread_create(&w->thread, NULL, waker_main, rpc);
        if (r < 0)
                return r;
        w->running = true;
        return 0;
}

/* Stops the thread; a wake-up call in flight stays in the queue until drained. */
static void waker_stop(SbxRpc *rpc)
{
        SbxRpcWaker *w = &rpc->waker;
        uint64_t one = 1;

        if (!w->running)
                return;
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        if (write(w->stop_fd, &one, sizeof(one)) < 0) {
                /* An eventfd write fails only on overflow: the thread is being woken anyway. */
        }
        pthread_join(w->thread, NULL);
        w->running = false;
}

/* After the queue is gone: what the waker holds. */
static void waker_free(SbxRpcWaker *w)
{
        if (w->lame)
                grpc_channel_destroy(w->lame);
        w->lame = NULL;
        if (w->stop_fd >= 0)
                close(w->stop_fd);
        w->stop_fd = -1;
        grpc_metadata_array_destroy(&w->trailing);
        grpc_slice_unref(w->details);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
}

static void queue_closed(void *userdata);

/* The queue reported its shutdown: nothing more can complete. Free gRPC's side and leave the
 * loop to libuv alone. */
static void polling_finish(SbxRpc *rpc)
{
        LIST_REMOVE(rpc, polling_link);
        grpc_completion_queue_destroy(rpc->cq);
        rpc->cq = NULL;
        waker_free(&rpc->waker);
        sbx_queue_close(rpc->queue, queue_closed, rpc);
}

/* One turn, as UV_RUN_ONCE's: sleep until something happens (a gRPC completion, a libuv fd through
 * the waker, the next libuv timer), handle it, then run what libuv has ready without sleeping. */
static void polling_run_once(SbxRpc *rpc)
{
        uv_loop_t *loop = rpc->loop;
        SbxRpcWaker *w = &rpc->waker;

        /* Zero when libuv has work already (due timers, pending callbacks, closing handles), and
         * while watchers that callbacks started wait for libuv's next poll phase to reach epoll:
         * sleeping then would leave the waker deaf to them (libuv 1.44 counts those too). */
        uv_update_time(loop);
        int timeout = uv_backend_timeout(loop);
        gpr_timespec deadline = timeout < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                                            : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                           gpr_time_from_millis(timeout, GPR_TIMESPAN));

        if (timeout != 0 && w->running) {
                pthread_mutex_lock(&w->lock);
                if (!w->armed) {
                        w->armed = true;
                        pthread_cond_signal(&w->cond);
                }
                pthread_mutex_unlock(&w->lock);
        }
        /* Bounded, so that libuv gets its turn even when every completion starts a call that
         * completes at once (a client retrying calls that fail fast while a peer is down). */
        for (unsigned handled = 0; handled < POLLING_BATCH; handled++) {
                grpc_event ev = grpc_completion_queue_next(rpc->cq, deadline, NULL);
                if (ev.type == GRPC_QUEUE_TIMEOUT)
                        break;
                if (ev.type == GRPC_QUEUE_SHUTDOWN) {
                        polling_finish(rpc);
                        break;
                }
                SbxRpcTag *tag = ev.tag;
                if (tag == &w->tag) {
                        /* Not counted in `outstanding`: it is not the owners' to wait for. */
                        waker_done(w);
                } else {
                        tag->ok = ev.success != 0;
                        run_tag(rpc, tag);
                }
                if (!rpc->cq)
                        break;
                /* Whatever else completed meanwhile, without sleeping again. */
                deadline = gpr_inf_past(GPR_CLOCK_MONOTONIC);
        }
        /* Timers that are due and fds that are ready. */
        uv_run(loop, UV_RUN_NOWAIT);
}

void sbx_rpc_run_once(uv_loop_t *loop)
{
        SbxRpc *rpc;

        LIST_FOREACH (rpc, &polling_rpcs, polling_link)
                if (rpc->loop == loop)
                        break;
        if (rpc)
                polling_run_once(rpc);
        else
                uv_run(loop, UV_RUN_ONCE);
}

void sbx__rpc_tag_post(SbxRpc *rpc, SbxRpcTag *tag, SbxRpcTagFn fn, bool ok)
{
        sbx__rpc_tag_arm(rpc, tag, fn);
        tag->ok = ok;
        sbx_queue_push(rpc->queue, &tag->item);
}

/* gRPC's own log lines go through ours. They are library chatter: debug, except errors. */
static void gpr_log_to_sbx(gpr_log_func_args *args)
{
        if (args->severity == GPR_LOG_SEVERITY_ERROR)
                log_full_fields(SBX_LOG_DEBUG, 0, LOG_FIELDS({ "component", "grpc" }), "%s", args->message);
        else
                log_debug("grpc: %s", args->message);
}

static int rpc_new(uv_loop_t *loop, bool poll_on_loop, SbxRpc **ret)
{
        SbxRpc *rpc = new0(SbxRpc, 1);
        int r;

        if (!rpc)
                return -ENOMEM;
        rpc->waker.stop_fd = -1;

        gpr_set_log_function(gpr_log_to_sbx);
        gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
        grpc_init();

        rpc->loop = loop;
        LIST_INIT(&rpc->servers);
        LIST_INIT(&rpc->channels);
        r = sbx_queue_new(loop, dispatch, rpc, &rpc->queue);
        if (r < 0)
                goto fail;
        rpc->cq = grpc_completion_queue_create_for_next(NULL);
        if (poll_on_loop) {
                rpc->poll_on_loop = true;
                if ((r = waker_start(rpc)) < 0)
                        goto fail;
                LIST_INSERT_HEAD(&polling_rpcs, rpc, polling_link);
        } else {
                r = -pthread_create(&rpc->poller, NULL, poller_main, rpc);
                if (r < 0)
                        goto fail;
        }
        rpc->poller_running = true;
        *ret = rpc;
        return 0;

fail:
        if (rpc->cq) {
                /* Never armed, so it started no wake-up: nothing is in the queue. */
                waker_stop(rpc);
                grpc_completion_queue_shutdown(rpc->cq);
                grpc_completion_queue_destroy(rpc->cq);
                if (poll_on_loop)
                        waker_free(&rpc->waker);
        }
        if (rpc->queue)
                sbx_queue_close(rpc->queue, NULL, NULL);
        grpc_shutdown();
        free(rpc);
        return r;
}

int sbx_rpc_new(uv_loop_t *loop, SbxRpc **ret)
{
        return rpc_new(loop, false, ret);
}

int sbx_rpc_new_polling_loop(uv_loop_t *loop, SbxRpc **ret)
{
        return rpc_new(loop, true, ret);
}

uv_loop_t *sbx_rpc_loop(SbxRpc *rpc)
{
        return rpc->loop;
}

static void queue_closed(void *userdata)
{
        SbxRpc *rpc = userdata;
        void (*done)(void *) = rpc->shutdown_done;
        void *ud = rpc->shutdown_userdata;

        free(rpc);
        grpc_shutdown();
        if (done)
                done(ud);
}

void sbx__rpc_maybe_finish_shutdown(SbxRpc *rpc)
{
        if (!rpc->shutting_down || rpc->outstanding > 0 || !LIST_EMPTY(&rpc->servers) ||
            !LIST_EMPTY(&rpc->channels) || !rpc->poller_running)
                return;

        /* Nothing is in flight: the queue can shut down, and the poller sees GRPC_QUEUE_SHUTDOWN
         * at once. Join it before closing the async handle it signals. */
        rpc->poller_running = false;
        if (rpc->poll_on_loop) {
                /* The loop thread sees the shutdown in its next turn (after a wake-up still in
                 * flight, if any) and finishes there: polling_finish(). */
                waker_stop(rpc);
                grpc_completion_queue_shutdown(rpc->cq);
                return;
        }
        grpc_completion_queue_shutdown(rpc->cq);
        pthread_join(rpc->poller, NULL);
        grpc_completion_queue_destroy(rpc->cq);
        rpc->cq = NULL;
        sbx_queue_close(rpc->queue, queue_closed, rpc);
}

void sbx_rpc_shutdown(SbxRpc *rpc, usec_t grace, void (*done)(void *userdata), void *userdata)
{
        if (rpc->shutting_down)
                return;
        rpc->shutting_down = true;
        rpc->shutdown_done = done;
        rpc->shutdown_userdata = userdata;

        sbx__rpc_servers_shutdown_all(rpc, grace);
        /* Owners should have freed their channels already; whatever is left is freed here. */
        sbx__rpc_channels_free_all(rpc);
        sbx__rpc_maybe_finish_shutdown(rpc);
}
