/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC channels and client calls.
 *
 * A unary call is one batch of six ops. A streaming call keeps three tags: `send` (initial
 * metadata, messages, the half-close; one batch at a time), `recv` (initial metadata with the first
 * RECV_MESSAGE, then one RECV_MESSAGE at a time) and `status` (RECV_STATUS_ON_CLIENT, armed at
 * once). RECV_INITIAL_METADATA rides in the first receive batch and no send waits for it: etcd,
 * for one, sends its headers lazily, and without it RECV_MESSAGE on a bidi stream never completes.
 *
 * Receiving reads one message ahead: the next RECV_MESSAGE is posted before the current message is
 * handed to on_message, so gRPC fetches it while the loop runs the callback, instead of each
 * message waiting for a full poller → loop → poller round trip (a watch stream under load lives on
 * that difference). A message that arrives while the owner has paused reading is held, not
 * delivered, and goes out through the loop once reading resumes; holding at most one message keeps
 * HTTP/2 flow control the only buffer, so pausing still pushes back on the server.
 *
 * The final status is delivered after the last message: when the status has arrived and the
 * receive side has reached the end of the stream (or failed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/rpc/rpc-internal.h"

struct SbxRpcChannel {
        SbxRpc *rpc;
        grpc_channel *channel;
        char *target;
        /* "Bearer <token>" for plaintext channels; TLS channels carry it as call credentials. */
        char *authorization;
        size_t max_message_size;
        LIST_ENTRY(SbxRpcChannel) link;
        LIST_HEAD(, SbxRpcClientCall) calls;
        bool freeing;
};

struct SbxRpcClientCall {
        SbxRpcChannel *ch;
        const SbxRpcMethod *method;
        grpc_call *call;
        unsigned refs;
        LIST_ENTRY(SbxRpcClientCall) link;

        SbxRpcTag tag_unary, tag_send, tag_recv, tag_status;

        /* Request metadata: kept until the batch that sends it completes. */
        grpc_metadata *send_md;
        size_t n_send_md;
        bool wait_for_ready;

        struct SbxRpcSendQueue send_queue;
        size_t pending_bytes;
        SbxRpcSendItem *send_in_flight;
        bool send_batch_active;
        bool initial_md_sent;
        bool close_requested, close_sent;

        grpc_metadata_array recv_initial_md, trailing_md;
        bool initial_md_requested;
        SbxRpcMetadataCopy headers;
        grpc_byte_buffer *recv_buffer;
        /* A message read ahead while reading was paused; delivered first when it resumes. */
        grpc_byte_buffer *recv_held;
        bool recv_in_flight, recv_paused, recv_eof;

        grpc_status_code status;
        grpc_slice status_details;
        const char *error_string;
        bool status_received, status_delivered, cancelled_locally;

        void (*on_drain)(SbxRpcClientCall *c, void *userdata);
        void *drain_userdata;

        SbxRpcUnaryCallback unary_cb;
        SbxRpcClientCallbacks cbs;
        void *userdata;
};

static void client_try_send(SbxRpcClientCall *c);
static void client_arm_recv(SbxRpcClientCall *c);

static void channel_maybe_free(SbxRpcChannel *ch)
{
        SbxRpc *rpc = ch->rpc;

        if (!ch->freeing || !LIST_EMPTY(&ch->calls))
                return;
        grpc_channel_destroy(ch->channel);
        LIST_REMOVE(ch, link);
        free(ch->target);
        free(ch->authorization);
        free(ch);
        sbx__rpc_maybe_finish_shutdown(rpc);
}

static void client_call_free(SbxRpcClientCall *c)
{
        SbxRpcChannel *ch = c->ch;

        LIST_REMOVE(c, link);
        if (c->call)
                grpc_call_unref(c->call);
        for (size_t i = 0; i < c->n_send_md; i++) {
                grpc_slice_unref(c->send_md[i].key);
                grpc_slice_unref(c->send_md[i].value);
        }
        free(c->send_md);
        sbx__rpc_send_queue_clear(&c->send_queue, &c->pending_bytes);
        sbx__rpc_send_item_free(c->send_in_flight);
        grpc_metadata_array_destroy(&c->recv_initial_md);
        grpc_metadata_array_destroy(&c->trailing_md);
        sbx__rpc_metadata_done(&c->headers);
        if (c->recv_buffer)
                grpc_byte_buffer_destroy(c->recv_buffer);
        if (c->recv_held)
                grpc_byte_buffer_destroy(c->recv_held);
        grpc_slice_unref(c->status_details);
        if (c->error_string)
                gpr_free((void *)c->error_string);
        free(c);
        channel_maybe_free(ch);
}

SbxRpcClientCall *sbx_rpc_client_call_ref(SbxRpcClientCall *c)
{
        if (c)
                c->refs++;
        return c;
}

SbxRpcClientCall *sbx_rpc_client_call_unref(SbxRpcClientCall *c)
{
        if (c && --c->refs == 0)
                client_call_free(c);
        return NULL;
}

static int client_batch(SbxRpcClientCall *c, const grpc_op *ops, size_t n, SbxRpcTag *tag, SbxRpcTagFn fn)
{
        sbx_rpc_client_call_ref(c);
        grpc_call_error e =
                grpc_call_start_batch(c->call, ops, n, sbx__rpc_tag_arm(c->ch->rpc, tag, fn), NULL);
        if (e != GRPC_CALL_OK) {
                log_debug("grpc_call_start_batch failed on %s: %d", c->method->path, (int)e);
                c->ch->rpc->outstanding--;
                sbx_rpc_client_call_unref(c);
                return -EINVAL;
        }
        return 0;
}

/* Fills a status from what gRPC reported; never leaves the message empty. */
static void status_from_grpc(SbxRpcStatus *st, grpc_status_code code, grpc_slice details)
{
        st->code = (SbxStatus)code;
        st->message = sbx__rpc_slice_strdup(details);
        if (st->message && !*st->message && code != GRPC_STATUS_OK) {
                free(st->message);
                st->message = NULL;
        }
        if (!st->message) {
                if (code == GRPC_STATUS_UNAVAILABLE)
                        st->message = strdup("Service unavailable (connection failed or lost)");
                else if (code == GRPC_STATUS_DEADLINE_EXCEEDED)
                        st->message = strdup("Deadline exceeded");
                else if (code == GRPC_STATUS_CANCELLED)
                        st->message = strdup("Call cancelled");
                else
                        st->message = strdup(code == GRPC_STATUS_OK ? "" : sbx_status_name((SbxStatus)code));
        }
}

static void client_send_md_init(SbxRpcClientCall *c, const SbxRpcCallOptions *o)
{
        size_t n = (o ? o->n_metadata : 0) + (c->ch->authorization ? 1 : 0);

        c->wait_for_ready = o && o->wait_for_ready;
        if (n == 0)
                return;
        c->send_md = new0(grpc_metadata, n);
        if (!c->send_md)
                return;
        for (size_t i = 0; o && i < o->n_metadata; i++) {
                c->send_md[c->n_send_md].key = grpc_slice_from_copied_string(o->metadata[i].key);
                c->send_md[c->n_send_md].value = grpc_slice_from_copied_string(o->metadata[i].value);
                c->n_send_md++;
        }
        if (c->ch->authorization) {
                c->send_md[c->n_send_md].key = grpc_slice_from_static_string("authorization");
                c->send_md[c->n_send_md].value = grpc_slice_from_copied_string(c->ch->authorization);
                c->n_send_md++;
        }
}

static void fill_initial_md_op(SbxRpcClientCall *c, grpc_op *op)
{
        op->op = GRPC_OP_SEND_INITIAL_METADATA;
        op->data.send_initial_metadata.count = c->n_send_md;
        op->data.send_initial_metadata.metadata = c->send_md;
        op->flags = c->wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0;
}

static int client_call_new(SbxRpcChannel *ch, const SbxRpcMethod *m, const SbxRpcCallOptions *o,
                           SbxRpcClientCall **ret)
{
        SbxRpcClientCall *c;

        if (ch->freeing || ch->rpc->shutting_down)
                return -ESHUTDOWN;
        c = new0(SbxRpcClientCall, 1);
        if (!c)
                return -ENOMEM;
        c->ch = ch;
        c->method = m;
        c->refs = 1;
        c->status_details = grpc_empty_slice();
        STAILQ_INIT(&c->send_queue);
        grpc_metadata_array_init(&c->recv_initial_md);
        grpc_metadata_array_init(&c->trailing_md);
        LIST_INSERT_HEAD(&ch->calls, c, link);

        grpc_slice method = grpc_slice_from_static_string(m->path);
        c->call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, ch->rpc->cq, method,
                                           NULL, sbx__rpc_deadline(o ? o->timeout : 0), NULL);
        if (!c->call) {
                client_call_free(c);
                return -ENOMEM;
        }
        client_send_md_init(c, o);
        *ret = c;
        return 0;
}

/* ---- unary ---- */

static void on_unary(SbxRpcTag *tag, bool ok)
{
        SbxRpcClientCall *c = container_of(tag, SbxRpcClientCall, tag_unary);
        SbxRpcStatus st = { 0 };
        ProtobufCMessage *resp = NULL;

        sbx__rpc_metadata_copy(&c->recv_initial_md, &c->headers);
        if (!ok)
                status_from_grpc(&st, GRPC_STATUS_UNAVAILABLE, grpc_empty_slice());
        else
                status_from_grpc(&st, c->status, c->status_details);

        if (st.code == SBX_STATUS_OK) {
                if (!c->recv_buffer)
                        sbx_rpc_status_set(&st, SBX_STATUS_INTERNAL, "Server sent no %s message",
                                           c->method->output->name);
                else if (sbx__rpc_unpack(c->method->output, c->recv_buffer, &resp) < 0)
                        sbx_rpc_status_set(&st, SBX_STATUS_INTERNAL, "Malformed %s message from server",
                                           c->method->output->name);
        }
        c->status_delivered = true;
        c->unary_cb(&st, resp, c->userdata);
        sbx_rpc_status_done(&st);
        sbx_rpc_client_call_unref(c); /* the batch */
        sbx_rpc_client_call_unref(c); /* the call's own reference */
}

int sbx_rpc_unary(SbxRpcChannel *ch, const SbxRpcMethod *m, const ProtobufCMessage *request,
                  const SbxRpcCallOptions *opts, SbxRpcUnaryCallback cb, void *userdata,
                  SbxRpcClientCall **ret_call)
{
        SbxRpcClientCall *c;
        grpc_byte_buffer *bb;
        grpc_op ops[6];
        int r;

        r = sbx__rpc_pack(request, ch->max_message_size, &bb, NULL);
        if (r < 0)
                return r;
        r = client_call_new(ch, m, opts, &c);
        if (r < 0) {
                grpc_byte_buffer_destroy(bb);
                return r;
        }
        c->unary_cb = cb;
        c->userdata = userdata;
        c->send_in_flight = new0(SbxRpcSendItem, 1);
        if (!c->send_in_flight) {
                grpc_byte_buffer_destroy(bb);
                client_call_free(c);
                return -ENOMEM;
        }
        c->send_in_flight->buffer = bb;

        memset(ops, 0, sizeof(ops));
        fill_initial_md_op(c, &ops[0]);
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = bb;
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->recv_initial_md;
        ops[4].op = GRPC_OP_RECV_MESSAGE;
        ops[4].data.recv_message.recv_message = &c->recv_buffer;
        ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
        ops[5].data.recv_status_on_client.status = &c->status;
        ops[5].data.recv_status_on_client.status_details = &c->status_details;
        ops[5].data.recv_status_on_client.error_string = &c->error_string;
        r = client_batch(c, ops, ELEMENTSOF(ops), &c->tag_unary, on_unary);
        if (r < 0) {
                client_call_free(c);
                return r;
        }
        if (ret_call)
                *ret_call = sbx_rpc_client_call_ref(c);
        return 0;
}

/* ---- streaming ---- */

static void client_maybe_deliver_status(SbxRpcClientCall *c)
{
        SbxRpcStatus st = { 0 };

        if (c->status_delivered || !c->status_received)
                return;
        /* An OK stream is complete only once every message was read; a failed one ends now, unless a
         * receive is still in flight (it completes shortly with the failure). */
        if (c->recv_in_flight)
                return;
        if (c->status == GRPC_STATUS_OK && !c->recv_eof)
                return;

        c->status_delivered = true;
        sbx__rpc_send_queue_clear(&c->send_queue, &c->pending_bytes);
        if (c->recv_held) {
                /* A failed stream ends now; what was read ahead and not yet wanted goes with it. */
                grpc_byte_buffer_destroy(c->recv_held);
                c->recv_held = NULL;
        }
        status_from_grpc(&st, c->status, c->status_details);
        if (c->cbs.on_status)
                c->cbs.on_status(c, &st, c->userdata);
        sbx_rpc_status_done(&st);
        sbx_rpc_client_call_unref(c); /* the call's own reference */
}

static void on_status(SbxRpcTag *tag, bool ok)
{
        SbxRpcClientCall *c = container_of(tag, SbxRpcClientCall, tag_status);

        c->status_received = true;
        if (!ok) {
                c->status = GRPC_STATUS_UNAVAILABLE;
                grpc_slice_unref(c->status_details);
                c->status_details = grpc_empty_slice();
        }
        client_maybe_deliver_status(c);
        sbx_rpc_client_call_unref(c);
}

static void client_deliver_message(SbxRpcClientCall *c, grpc_byte_buffer *bb)
{
        ProtobufCMessage *m = NULL;

        if (sbx__rpc_unpack(c->method->output, bb, &m) < 0) {
                /* The stream cannot be trusted any more: end it. */
                grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, "Malformed message from server",
                                             NULL);
                c->recv_eof = true;
        } else if (c->cbs.on_message) {
                c->cbs.on_message(c, m, c->userdata);
        } else {
                protobuf_c_message_free_unpacked(m, NULL);
        }
}

static void on_stream_recv(SbxRpcTag *tag, bool ok)
{
        SbxRpcClientCall *c = container_of(tag, SbxRpcClientCall, tag_recv);
        grpc_byte_buffer *bb = c->recv_buffer;

        c->recv_buffer = NULL;
        c->recv_in_flight = false;
        if (c->headers.n == 0 && c->recv_initial_md.count > 0)
                sbx__rpc_metadata_copy(&c->recv_initial_md, &c->headers);

        if (!ok || !bb) {
                c->recv_eof = true;
        } else if (c->status_delivered) {
                /* Nobody listens any more. */
        } else if (c->recv_paused) {
                /* Read ahead before the owner paused: keep it for when reading resumes. */
                c->recv_held = TAKE_PTR(bb);
        } else {
                /* Ask for the next message first, so gRPC reads it while this one is handled. */
                client_arm_recv(c);
                client_deliver_message(c, bb);
        }
        if (bb)
                grpc_byte_buffer_destroy(bb);
        client_arm_recv(c);
        client_maybe_deliver_status(c);
        sbx_rpc_client_call_unref(c);
}

static void client_arm_recv(SbxRpcClientCall *c)
{
        grpc_op ops[2];
        size_t n = 0;

        if (c->recv_in_flight || c->recv_eof || c->recv_paused || c->status_delivered)
                return;
        memset(ops, 0, sizeof(ops));
        if (!c->initial_md_requested) {
                ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
                ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->recv_initial_md;
                n++;
                c->initial_md_requested = true;
        }
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n].data.recv_message.recv_message = &c->recv_buffer;
        n++;
        c->recv_in_flight = true;
        if (client_batch(c, ops, n, &c->tag_recv, on_stream_recv) < 0) {
                c->recv_in_flight = false;
                c->recv_eof = true;
        }
}

static void on_stream_send(SbxRpcTag *tag, bool ok)
{
        SbxRpcClientCall *c = container_of(tag, SbxRpcClientCall, tag_send);

        c->send_batch_active = false;
        sbx__rpc_send_item_free(c->send_in_flight);
        c->send_in_flight = NULL;
        if (!ok || c->status_delivered) {
                sbx__rpc_send_queue_clear(&c->send_queue, &c->pending_bytes);
        } else {
                client_try_send(c);
                if (!c->send_batch_active && c->on_drain && !c->close_requested)
                        c->on_drain(c, c->drain_userdata);
        }
        sbx_rpc_client_call_unref(c);
}

static void client_try_send(SbxRpcClientCall *c)
{
        grpc_op ops[3];
        size_t n = 0;

        if (c->send_batch_active || c->close_sent || c->status_delivered)
                return;
        SbxRpcSendItem *it = sbx__rpc_send_queue_pop(&c->send_queue, &c->pending_bytes);
        bool close = c->close_requested && STAILQ_EMPTY(&c->send_queue);
        if (!it && !close && c->initial_md_sent)
                return;

        memset(ops, 0, sizeof(ops));
        if (!c->initial_md_sent) {
                fill_initial_md_op(c, &ops[n++]);
                c->initial_md_sent = true;
        }
        if (it) {
                ops[n].op = GRPC_OP_SEND_MESSAGE;
                ops[n].data.send_message.send_message = it->buffer;
                n++;
        }
        if (close) {
                ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
                c->close_sent = true;
        }
        c->send_in_flight = it;
        c->send_batch_active = true;
        if (client_batch(c, ops, n, &c->tag_send, on_stream_send) < 0) {
                c->send_batch_active = false;
                c->send_in_flight = NULL;
                sbx__rpc_send_item_free(it);
        }
}

int sbx_rpc_call_start(SbxRpcChannel *ch, const SbxRpcMethod *m, const ProtobufCMessage *request,
                       const SbxRpcCallOptions *opts, const SbxRpcClientCallbacks *cbs, void *userdata,
                       SbxRpcClientCall **ret)
{
        SbxRpcClientCall *c;
        grpc_op op = { 0 };
        int r;

        if (m->kind == SBX_RPC_UNARY || (m->kind == SBX_RPC_SERVER_STREAM && !request))
                return -EINVAL;
        r = client_call_new(ch, m, opts, &c);
        if (r < 0)
                return r;
        c->cbs = *cbs;
        c->userdata = userdata;
        if (request) {
                r = sbx__rpc_send_queue_push(&c->send_queue, request, ch->max_message_size,
                                             &c->pending_bytes);
                if (r < 0) {
                        client_call_free(c);
                        return r;
                }
        }
        if (m->kind == SBX_RPC_SERVER_STREAM)
                c->close_requested = true;

        op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        op.data.recv_status_on_client.trailing_metadata = &c->trailing_md;
        op.data.recv_status_on_client.status = &c->status;
        op.data.recv_status_on_client.status_details = &c->status_details;
        op.data.recv_status_on_client.error_string = &c->error_string;
        r = client_batch(c, &op, 1, &c->tag_status, on_status);
        if (r < 0) {
                client_call_free(c);
                return r;
        }
        client_try_send(c);
        client_arm_recv(c);
        if (ret)
                *ret = sbx_rpc_client_call_ref(c);
        return 0;
}

int sbx_rpc_client_call_send(SbxRpcClientCall *c, const ProtobufCMessage *message)
{
        if (c->status_delivered || c->status_received)
                return -ECANCELED;
        if (c->close_requested)
                return -EPIPE;
        int r = sbx__rpc_send_queue_push(&c->send_queue, message, c->ch->max_message_size,
                                         &c->pending_bytes);
        if (r < 0)
                return r;
        client_try_send(c);
        return 0;
}

int sbx_rpc_client_call_close_send(SbxRpcClientCall *c)
{
        if (c->status_delivered)
                return -ECANCELED;
        if (c->close_requested)
                return 0;
        c->close_requested = true;
        client_try_send(c);
        return 0;
}

void sbx_rpc_client_call_cancel(SbxRpcClientCall *c)
{
        if (!c || c->status_delivered || c->cancelled_locally)
                return;
        c->cancelled_locally = true;
        grpc_call_cancel(c->call, NULL);
}

size_t sbx_rpc_client_call_pending_bytes(const SbxRpcClientCall *c)
{
        return c->pending_bytes + (c->send_in_flight ? c->send_in_flight->size : 0);
}

void sbx_rpc_client_call_on_drain(SbxRpcClientCall *c, void (*cb)(SbxRpcClientCall *c, void *userdata),
                                  void *userdata)
{
        c->on_drain = cb;
        c->drain_userdata = userdata;
}

void sbx_rpc_client_call_pause_reading(SbxRpcClientCall *c, bool pause)
{
        c->recv_paused = pause;
        if (pause)
                return;
        if (c->recv_held && !c->recv_in_flight && !c->status_delivered) {
                /* Hand the held message over as if it had just arrived, but later, from the loop:
                 * the owner may be resuming from inside one of its own callbacks. */
                c->recv_buffer = TAKE_PTR(c->recv_held);
                c->recv_in_flight = true;
                sbx_rpc_client_call_ref(c);
                sbx__rpc_tag_post(c->ch->rpc, &c->tag_recv, on_stream_recv, true);
                return;
        }
        client_arm_recv(c);
        client_maybe_deliver_status(c);
}

const char *sbx_rpc_client_call_header(const SbxRpcClientCall *c, const char *key)
{
        return sbx__rpc_metadata_find(&c->headers, key);
}

/* ---- channels ---- */

int sbx_rpc_channel_new(SbxRpc *rpc, const char *target, const SbxRpcChannelOptions *opts,
                        SbxRpcChannel **ret)
{
        SbxRpcChannelOptions o = opts ? *opts : (SbxRpcChannelOptions){ 0 };
        grpc_channel_credentials *creds;
        SbxRpcChannel *ch;
        grpc_arg args[8];
        size_t n = 0;
        int r;

        if (rpc->shutting_down)
                return -ESHUTDOWN;
        r = sbx__rpc_channel_credentials(o.tls, o.bearer_token, &creds);
        if (r < 0)
                return r;
        ch = new0(SbxRpcChannel, 1);
        if (!ch) {
                grpc_channel_credentials_release(creds);
                return -ENOMEM;
        }
        ch->rpc = rpc;
        ch->target = strdup(target);
        ch->max_message_size = o.max_message_size ? o.max_message_size : SBX_RPC_DEFAULT_MAX_MESSAGE;
        LIST_INIT(&ch->calls);
        if (!o.tls && o.bearer_token && asprintf(&ch->authorization, "Bearer %s", o.bearer_token) < 0)
                ch->authorization = NULL;

        _cleanup_free_ char *host = o.tls && o.tls->server_name ? strdup(o.tls->server_name) : NULL;
        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
                                .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                                .value.integer = (int)ch->max_message_size };
        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
                                .key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                                .value.integer = (int)ch->max_message_size };
        /* Channels must not share connections behind our back: each one is its own endpoint. */
        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
                                .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
                                .value.integer = 1 };
        if (host)
                args[n++] = (grpc_arg){ .type = GRPC_ARG_STRING,
                                        .key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
                                        .value.string = host };
        if (o.keepalive_time) {
                args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
                                        .key = (char *)GRPC_ARG_KEEPALIVE_TIME_MS,
                                        .value.integer = (int)(o.keepalive_time / USEC_PER_MSEC) };
                args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
                                        .key = (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                                        .value.integer =
                                                (int)SBX_MAX(o.keepalive_time / USEC_PER_MSEC / 2, 1000) };
                args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
                                        .key = (char *)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                                        .value.integer = 1 };
        }
        if (o.max_reconnect_backoff)
                args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
                                        .key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                                        .value.integer = (int)(o.max_reconnect_backoff / USEC_PER_MSEC) };
        grpc_channel_args ca = { .num_args = n, .args = args };
        ch->channel = grpc_channel_create(target, creds, &ca);
        grpc_channel_credentials_release(creds);
        if (!ch->channel || !ch->target) {
                if (ch->channel)
                        grpc_channel_destroy(ch->channel);
                free(ch->target);
                free(ch->authorization);
                free(ch);
                return -ENOMEM;
        }
        LIST_INSERT_HEAD(&rpc->channels, ch, link);
        *ret = ch;
        return 0;
}

static void channel_cancel_all(SbxRpcChannel *ch)
{
        SbxRpcClientCall *c;
        LIST_FOREACH (c, &ch->calls, link)
                if (!c->status_delivered)
                        grpc_call_cancel(c->call, NULL);
}

SbxRpcChannel *sbx_rpc_channel_free(SbxRpcChannel *ch)
{
        if (!ch || ch->freeing)
                return NULL;
        ch->freeing = true;
        channel_cancel_all(ch);
        channel_maybe_free(ch);
        return NULL;
}

void sbx__rpc_channels_free_all(SbxRpc *rpc)
{
        for (SbxRpcChannel *ch = LIST_FIRST(&rpc->channels); ch;) {
                SbxRpcChannel *next = LIST_NEXT(ch, link);
                sbx_rpc_channel_free(ch);
                ch = next;
        }
}

const char *sbx_rpc_channel_target(const SbxRpcChannel *ch)
{
        return ch->target;
}

/* ---- blocking helper ---- */

typedef struct SyncCall {
        bool done;
        SbxRpcStatus status;
        ProtobufCMessage *response;
} SyncCall;

static void sync_done(const SbxRpcStatus *status, ProtobufCMessage *response, void *userdata)
{
        SyncCall *s = userdata;
        s->done = true;
        s->status.code = status->code;
        s->status.message = strdup(status->message ? status->message : "");
        s->response = response;
}

int sbx_rpc_unary_sync(SbxRpcChannel *ch, const SbxRpcMethod *m, const ProtobufCMessage *request,
                       const SbxRpcCallOptions *opts, SbxRpcStatus *ret_status,
                       ProtobufCMessage **ret_response)
{
        SyncCall s = { 0 };
        int r;

        r = sbx_rpc_unary(ch, m, request, opts, sync_done, &s, NULL);
        if (r < 0)
                return r;
        while (!s.done)
                sbx_rpc_run_once(ch->rpc->loop);

        r = sbx_error_from_status(s.status.code);
        if (ret_status)
                *ret_status = s.status;
        else
                sbx_rpc_status_done(&s.status);
        if (s.response) {
                if (ret_response)
                        *ret_response = s.response;
                else
                        protobuf_c_message_free_unpacked(s.response, NULL);
        }
        return r;
}
