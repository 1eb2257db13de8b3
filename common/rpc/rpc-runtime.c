/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC runtime: one completion queue, one poller thread, and the bridge to the libuv loop.
 *
 * The poller thread does nothing but grpc_completion_queue_next() and hand each completed tag to
 * the loop through an SbxQueue (mutex + uv_async). This keeps every gRPC batch and every piece of
 * daemon state on the loop thread, as the stack notes recommend; the experimental callback
 * completion queue of gRPC 1.51 is not used because it moves no I/O by itself from C.
 */
#include <errno.h>
#include <grpc/support/log.h>
#include <stdlib.h>
#include <string.h>

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

static void dispatch(SbxQueue *q, SbxQueueItem *item, void *userdata)
{
        SbxRpc *rpc = userdata;
        SbxRpcTag *tag = container_of(item, SbxRpcTag, item);

        rpc->outstanding--;
        tag->fn(tag, tag->ok);
        if (rpc->shutting_down)
                sbx__rpc_maybe_finish_shutdown(rpc);
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

int sbx_rpc_new(uv_loop_t *loop, SbxRpc **ret)
{
        SbxRpc *rpc = new0(SbxRpc, 1);
        int r;

        if (!rpc)
                return -ENOMEM;

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
        r = -pthread_create(&rpc->poller, NULL, poller_main, rpc);
        if (r < 0)
                goto fail;
        rpc->poller_running = true;
        *ret = rpc;
        return 0;

fail:
        if (rpc->cq) {
                grpc_completion_queue_shutdown(rpc->cq);
                grpc_completion_queue_destroy(rpc->cq);
        }
        if (rpc->queue)
                sbx_queue_close(rpc->queue, NULL, NULL);
        grpc_shutdown();
        free(rpc);
        return r;
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
