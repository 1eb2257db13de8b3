/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC servers. Calls are accepted with generic requests (grpc_server_request_call) and routed by
 * method path, so a call to an unknown method is answered UNIMPLEMENTED at once instead of waiting
 * for its deadline. Each call is a small state machine driven by four tags:
 *
 *   accept  the request_call completion that brings the call
 *   close   RECV_CLOSE_ON_SERVER: completes when the call is over (finished or cancelled)
 *   recv    the one outstanding RECV_MESSAGE; on streaming calls it is posted again before the
 *           message just received goes to the handler (reading one ahead), and a message that
 *           arrives while the handler paused reading is held until it resumes
 *   send    the one outstanding send batch (initial metadata, a message, the status)
 *
 * A call is freed when no batch is outstanding and nobody holds a reference.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/rpc/rpc-internal.h"

#define DEFAULT_ACCEPT_DEPTH 64

struct SbxRpcServer {
        SbxRpc *rpc;
        grpc_server *server;
        SbxRpcHandler *handlers;
        size_t n_handlers;
        size_t max_message_size;
        unsigned accept_depth;
        LIST_ENTRY(SbxRpcServer) link;
        /* Live call objects, including armed acceptors. */
        unsigned n_calls;
        bool started;
        bool shutting_down;
        bool shutdown_notified;
        SbxRpcTag shutdown_tag;
        uv_timer_t grace_timer;
        bool grace_timer_active;
        void (*done)(void *userdata);
        void *done_userdata;
        SbxCounter *m_requests;
        SbxHistogram *m_latency;
        SbxGauge *m_inflight;
};

struct SbxRpcServerCall {
        SbxRpcServer *server;
        grpc_call *call;
        grpc_call_details details;
        grpc_metadata_array request_md;
        unsigned refs;
        const SbxRpcHandler *handler;
        const SbxRpcMethod *method;
        char *path;
        SbxRpcMetadataCopy md;
        /* The request of a single-request call, kept for the handler until the call is freed. */
        ProtobufCMessage *request;
        char *peer;
        char *identity;
        bool identity_checked;
        usec_t started_at;

        SbxRpcTag tag_accept, tag_close, tag_recv, tag_send;
        int cancelled_flag;
        grpc_byte_buffer *recv_buffer;
        /* A client message read ahead while reading was paused; delivered first on resume. */
        grpc_byte_buffer *recv_held;
        bool recv_in_flight, recv_paused, recv_ended;

        struct SbxRpcSendQueue send_queue;
        size_t pending_bytes;
        SbxRpcSendItem *send_in_flight;
        bool send_batch_active;
        bool initial_md_sent;
        bool finish_requested, finish_sent;
        SbxStatus finish_code;
        grpc_slice finish_details;

        bool started; /* on_start was called */
        bool over;    /* RECV_CLOSE_ON_SERVER completed */
        void (*on_drain)(SbxRpcServerCall *c, void *userdata);
        void *drain_userdata;
        void *userdata;
};

static void server_maybe_free(SbxRpcServer *s);
static void call_arm_accept(SbxRpcServer *s);
static void call_try_send(SbxRpcServerCall *c);
static void call_arm_recv(SbxRpcServerCall *c);

static int start_batch(SbxRpcServerCall *c, const grpc_op *ops, size_t n, SbxRpcTag *tag, SbxRpcTagFn fn)
{
        grpc_call_error e;

        sbx_rpc_server_call_ref(c);
        e = grpc_call_start_batch(c->call, ops, n, sbx__rpc_tag_arm(c->server->rpc, tag, fn), NULL);
        if (e != GRPC_CALL_OK) {
                /* Only programming errors land here (two batches of one kind); undo the accounting. */
                log_debug("grpc_call_start_batch failed on %s: %d", strempty(c->path), (int)e);
                c->server->rpc->outstanding--;
                sbx_rpc_server_call_unref(c);
                return -EINVAL;
        }
        return 0;
}

static void call_free(SbxRpcServerCall *c)
{
        SbxRpcServer *s = c->server;

        if (c->call)
                grpc_call_unref(c->call);
        grpc_call_details_destroy(&c->details);
        grpc_metadata_array_destroy(&c->request_md);
        sbx__rpc_metadata_done(&c->md);
        sbx__rpc_send_queue_clear(&c->send_queue, &c->pending_bytes);
        sbx__rpc_send_item_free(c->send_in_flight);
        if (c->recv_buffer)
                grpc_byte_buffer_destroy(c->recv_buffer);
        if (c->recv_held)
                grpc_byte_buffer_destroy(c->recv_held);
        if (c->finish_requested)
                grpc_slice_unref(c->finish_details);
        if (c->request)
                protobuf_c_message_free_unpacked(c->request, NULL);
        free(c->path);
        free(c->peer);
        free(c->identity);
        free(c);

        s->n_calls--;
        server_maybe_free(s);
}

SbxRpcServerCall *sbx_rpc_server_call_ref(SbxRpcServerCall *c)
{
        if (c)
                c->refs++;
        return c;
}

SbxRpcServerCall *sbx_rpc_server_call_unref(SbxRpcServerCall *c)
{
        if (c && --c->refs == 0)
                call_free(c);
        return NULL;
}

static const char *method_label(const SbxRpcServerCall *c)
{
        /* Unknown paths come from clients: never let them become label values. */
        return c->method ? c->method->path : "unknown";
}

static void call_record_metrics(SbxRpcServerCall *c, bool cancelled)
{
        SbxRpcServer *s = c->server;
        SbxStatus code = c->finish_sent && !cancelled ? c->finish_code : SBX_STATUS_CANCELLED;

        if (!s->m_requests)
                return;
        sbx_counter_inc(s->m_requests, SBX_LABELS(method_label(c), sbx_status_name(code)));
        sbx_histogram_observe(s->m_latency, SBX_LABELS(method_label(c)),
                              (double)(sbx_now_monotonic() - c->started_at) / (double)USEC_PER_SEC);
        sbx_gauge_add(s->m_inflight, NULL, -1);
}

static void on_close(SbxRpcTag *tag, bool ok)
{
        SbxRpcServerCall *c = container_of(tag, SbxRpcServerCall, tag_close);
        bool cancelled = c->cancelled_flag != 0 || !ok;

        c->over = true;
        sbx__rpc_send_queue_clear(&c->send_queue, &c->pending_bytes);
        call_record_metrics(c, cancelled);
        if (c->started && c->handler->on_done)
                c->handler->on_done(c, cancelled, c->handler->userdata);
        /* The server's own reference, taken at accept. */
        sbx_rpc_server_call_unref(c);
        sbx_rpc_server_call_unref(c);
}

static void on_send(SbxRpcTag *tag, bool ok)
{
        SbxRpcServerCall *c = container_of(tag, SbxRpcServerCall, tag_send);

        c->send_batch_active = false;
        sbx__rpc_send_item_free(c->send_in_flight);
        c->send_in_flight = NULL;
        if (!ok || c->over) {
                /* The stream is broken; the close tag reports the end of the call. */
                sbx__rpc_send_queue_clear(&c->send_queue, &c->pending_bytes);
        } else {
                call_try_send(c);
                if (!c->send_batch_active && c->on_drain && !c->finish_requested)
                        c->on_drain(c, c->drain_userdata);
        }
        sbx_rpc_server_call_unref(c);
}

static void call_try_send(SbxRpcServerCall *c)
{
        grpc_op ops[3];
        size_t n = 0;

        if (c->send_batch_active || c->over || c->finish_sent)
                return;

        SbxRpcSendItem *it = sbx__rpc_send_queue_pop(&c->send_queue, &c->pending_bytes);
        if (!it && !c->finish_requested)
                return;

        memset(ops, 0, sizeof(ops));
        if (!c->initial_md_sent) {
                ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
                ops[n].data.send_initial_metadata.count = 0;
                n++;
                c->initial_md_sent = true;
        }
        if (it) {
                ops[n].op = GRPC_OP_SEND_MESSAGE;
                ops[n].data.send_message.send_message = it->buffer;
                n++;
        }
        if (c->finish_requested && STAILQ_EMPTY(&c->send_queue)) {
                ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
                ops[n].data.send_status_from_server.status = (grpc_status_code)c->finish_code;
                ops[n].data.send_status_from_server.status_details = &c->finish_details;
                ops[n].data.send_status_from_server.trailing_metadata_count = 0;
                n++;
                c->finish_sent = true;
        }
        c->send_in_flight = it;
        c->send_batch_active = true;
        if (start_batch(c, ops, n, &c->tag_send, on_send) < 0) {
                c->send_batch_active = false;
                c->send_in_flight = NULL;
                sbx__rpc_send_item_free(it);
        }
}

static int call_queue(SbxRpcServerCall *c, const ProtobufCMessage *message)
{
        if (c->over || c->finish_requested)
                return -ECANCELED;
        return sbx__rpc_send_queue_push(&c->send_queue, message, c->server->max_message_size,
                                        &c->pending_bytes);
}

int sbx_rpc_server_call_send(SbxRpcServerCall *c, const ProtobufCMessage *message)
{
        int r = call_queue(c, message);
        if (r < 0)
                return r;
        call_try_send(c);
        return 0;
}

int sbx_rpc_server_call_finish(SbxRpcServerCall *c, SbxStatus code, const char *message)
{
        if (c->finish_requested)
                return -EALREADY;
        if (c->over)
                return -ECANCELED;
        c->finish_requested = true;
        c->finish_code = code;
        /* The slice must stay valid until the status batch completes; call_free releases it. */
        c->finish_details = grpc_slice_from_copied_string(message ? message : "");
        call_try_send(c);
        return 0;
}

int sbx_rpc_server_call_reply(SbxRpcServerCall *c, const ProtobufCMessage *reply)
{
        /* Queued without sending, so that the finish below sends the reply and the status in one
         * batch: one write and one completion per unary answer instead of two. */
        int r = call_queue(c, reply);
        if (r == -EMSGSIZE)
                return sbx_rpc_server_call_fail(c, SBX_STATUS_RESOURCE_EXHAUSTED,
                                                "Reply is larger than the %zu-byte message limit",
                                                c->server->max_message_size);
        if (r < 0)
                return r;
        return sbx_rpc_server_call_finish(c, SBX_STATUS_OK, NULL);
}

static int call_failv(SbxRpcServerCall *c, SbxStatus code, const char *fmt, va_list ap)
{
        _cleanup_free_ char *m = NULL;
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        return sbx_rpc_server_call_finish(c, code, m ? m : "out of memory");
}

int sbx_rpc_server_call_fail(SbxRpcServerCall *c, SbxStatus code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = call_failv(c, code, fmt, ap);
        va_end(ap);
        return r;
}

int sbx_rpc_server_call_fail_errno(SbxRpcServerCall *c, int error, const char *fmt, ...)
{
        _cleanup_free_ char *f = NULL;
        const char *m = sbx_error_message(error);
        size_t lf = strlen(fmt), lm = strlen(m);
        va_list ap;
        int r;

        /* Substitute %m by hand: glibc's %m reads errno, which project errors are not. */
        f = malloc(lf * (lm * 2 + 2) + 1);
        if (!f)
                return sbx_rpc_server_call_finish(c, sbx_error_to_status(error), m);
        char *o = f;
        for (const char *p = fmt; *p; p++) {
                if (p[0] == '%' && p[1] == 'm') {
                        for (const char *q = m; *q; q++) {
                                if (*q == '%')
                                        *o++ = '%';
                                *o++ = *q;
                        }
                        p++;
                } else if (p[0] == '%' && p[1] == '%') {
                        *o++ = *p++;
                        *o++ = *p;
                } else
                        *o++ = *p;
        }
        *o = '\0';
        va_start(ap, fmt);
        r = call_failv(c, sbx_error_to_status(error), f, ap);
        va_end(ap);
        return r;
}

size_t sbx_rpc_server_call_pending_bytes(const SbxRpcServerCall *c)
{
        return c->pending_bytes + (c->send_in_flight ? c->send_in_flight->size : 0);
}

void sbx_rpc_server_call_on_drain(SbxRpcServerCall *c, void (*cb)(SbxRpcServerCall *c, void *userdata),
                                  void *userdata)
{
        c->on_drain = cb;
        c->drain_userdata = userdata;
}

void sbx_rpc_server_call_set_userdata(SbxRpcServerCall *c, void *userdata)
{
        c->userdata = userdata;
}

void *sbx_rpc_server_call_get_userdata(const SbxRpcServerCall *c)
{
        return c->userdata;
}

const SbxRpcMethod *sbx_rpc_server_call_method(const SbxRpcServerCall *c)
{
        return c->method;
}

uv_loop_t *sbx_rpc_server_call_loop(const SbxRpcServerCall *c)
{
        return c->server->rpc->loop;
}

bool sbx_rpc_server_call_is_done(const SbxRpcServerCall *c)
{
        return c->over || c->finish_requested;
}

const char *sbx_rpc_server_call_metadata(const SbxRpcServerCall *c, const char *key)
{
        return sbx__rpc_metadata_find(&c->md, key);
}

const char *sbx_rpc_server_call_bearer_token(const SbxRpcServerCall *c)
{
        const char *v = sbx_rpc_server_call_metadata(c, "authorization");
        const char *t;

        if (!v)
                return NULL;
        t = startswith(v, "Bearer ");
        if (!t)
                t = startswith(v, "bearer ");
        return t && *t ? t : NULL;
}

const char *sbx_rpc_server_call_peer_identity(SbxRpcServerCall *c)
{
        static const char *const properties[] = { GRPC_X509_CN_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME };

        if (c->identity_checked)
                return c->identity;
        c->identity_checked = true;

        grpc_auth_context *ctx = grpc_call_auth_context(c->call);
        if (!ctx)
                return NULL;
        if (grpc_auth_context_peer_is_authenticated(ctx))
                for (size_t i = 0; i < ELEMENTSOF(properties) && !c->identity; i++) {
                        grpc_auth_property_iterator it =
                                grpc_auth_context_find_properties_by_name(ctx, properties[i]);
                        const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
                        if (p && p->value_length > 0)
                                c->identity = strndup(p->value, p->value_length);
                }
        grpc_auth_context_release(ctx);
        return c->identity;
}

const char *sbx_rpc_server_call_peer(SbxRpcServerCall *c)
{
        if (!c->peer) {
                char *p = grpc_call_get_peer(c->call);
                if (p) {
                        c->peer = strdup(p);
                        gpr_free(p);
                }
        }
        return c->peer;
}

usec_t sbx_rpc_server_call_time_left(const SbxRpcServerCall *c)
{
        gpr_timespec d = c->details.deadline;

        if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
                return USEC_INFINITY;
        gpr_timespec now = gpr_now(d.clock_type);
        if (gpr_time_cmp(d, now) <= 0)
                return 0;
        gpr_timespec left = gpr_time_sub(d, now);
        return (usec_t)left.tv_sec * USEC_PER_SEC + (usec_t)left.tv_nsec / NSEC_PER_USEC;
}

static void on_recv(SbxRpcTag *tag, bool ok);

void sbx_rpc_server_call_pause_reading(SbxRpcServerCall *c, bool pause)
{
        bool was = c->recv_paused;
        c->recv_paused = pause;
        if (!was || pause || !c->started)
                return;
        if (c->recv_held && !c->recv_in_flight) {
                /* Deliver the held message as if it had just arrived, but from the loop: the handler
                 * may be resuming from inside one of its own callbacks. */
                c->recv_buffer = TAKE_PTR(c->recv_held);
                c->recv_in_flight = true;
                sbx_rpc_server_call_ref(c);
                sbx__rpc_tag_post(c->server->rpc, &c->tag_recv, on_recv, true);
                return;
        }
        call_arm_recv(c);
}

static void deliver_message(SbxRpcServerCall *c, grpc_byte_buffer *bb)
{
        ProtobufCMessage *m = NULL;

        if (sbx__rpc_unpack(c->method->input, bb, &m) < 0) {
                sbx_rpc_server_call_fail(c, SBX_STATUS_INVALID_ARGUMENT, "Malformed %s message",
                                         c->method->input->name);
                return;
        }

        switch (c->method->kind) {
        case SBX_RPC_UNARY:
        case SBX_RPC_SERVER_STREAM:
                if (c->started) {
                        /* A second request on a single-request call: ignore it. */
                        protobuf_c_message_free_unpacked(m, NULL);
                        return;
                }
                c->started = true;
                c->request = m;
                c->handler->on_start(c, m, c->handler->userdata);
                return;
        case SBX_RPC_CLIENT_STREAM:
        case SBX_RPC_BIDI:
                if (c->handler->on_message)
                        c->handler->on_message(c, m, c->handler->userdata);
                else
                        protobuf_c_message_free_unpacked(m, NULL);
                return;
        }
}

static void on_recv(SbxRpcTag *tag, bool ok)
{
        SbxRpcServerCall *c = container_of(tag, SbxRpcServerCall, tag_recv);
        grpc_byte_buffer *bb = c->recv_buffer;

        c->recv_buffer = NULL;
        c->recv_in_flight = false;

        if (!ok || c->over) {
                if (bb)
                        grpc_byte_buffer_destroy(bb);
        } else if (!bb) {
                /* The client half-closed. */
                c->recv_ended = true;
                bool single = c->method->kind == SBX_RPC_UNARY || c->method->kind == SBX_RPC_SERVER_STREAM;
                if (single && !c->started)
                        sbx_rpc_server_call_fail(c, SBX_STATUS_INVALID_ARGUMENT, "Missing request message");
                else if (!single && c->handler->on_half_close)
                        c->handler->on_half_close(c, c->handler->userdata);
        } else if (c->recv_paused && c->started) {
                /* Read ahead before the handler paused: keep it until reading resumes. */
                c->recv_held = TAKE_PTR(bb);
        } else {
                /* On streams, ask for the next message first so gRPC reads it while the handler runs;
                 * a single-request call gets no further receive before its request is handled. */
                if (c->started)
                        call_arm_recv(c);
                deliver_message(c, bb);
                grpc_byte_buffer_destroy(bb);
                call_arm_recv(c);
        }
        sbx_rpc_server_call_unref(c);
}

static void call_arm_recv(SbxRpcServerCall *c)
{
        grpc_op op = { 0 };

        if (c->recv_in_flight || c->recv_ended || c->over || c->recv_paused)
                return;
        /* Single-request calls need exactly one message, then the half-close. */
        if ((c->method->kind == SBX_RPC_UNARY || c->method->kind == SBX_RPC_SERVER_STREAM) && c->started)
                return;
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &c->recv_buffer;
        c->recv_in_flight = true;
        if (start_batch(c, &op, 1, &c->tag_recv, on_recv) < 0)
                c->recv_in_flight = false;
}

static const SbxRpcHandler *find_handler(SbxRpcServer *s, const char *path)
{
        for (size_t i = 0; i < s->n_handlers; i++)
                if (streq(s->handlers[i].method->path, path))
                        return &s->handlers[i];
        return NULL;
}

static void call_begin(SbxRpcServerCall *c)
{
        SbxRpcServer *s = c->server;
        grpc_op op = { 0 };

        c->started_at = sbx_now_monotonic();
        c->path = sbx__rpc_slice_strdup(c->details.method);
        (void)sbx__rpc_metadata_copy(&c->request_md, &c->md);
        c->handler = c->path ? find_handler(s, c->path) : NULL;
        c->method = c->handler ? c->handler->method : NULL;
        if (s->m_inflight)
                sbx_gauge_add(s->m_inflight, NULL, 1);

        /* Learn about cancellation and the end of the call whatever else happens. */
        op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        op.data.recv_close_on_server.cancelled = &c->cancelled_flag;
        if (start_batch(c, &op, 1, &c->tag_close, on_close) < 0) {
                sbx_rpc_server_call_unref(c);
                return;
        }

        if (!c->handler) {
                sbx_rpc_server_call_fail(c, SBX_STATUS_UNIMPLEMENTED,
                                         "Method %s is not implemented by this server",
                                         c->path ? c->path : "(unknown)");
                return;
        }

        switch (c->method->kind) {
        case SBX_RPC_UNARY:
        case SBX_RPC_SERVER_STREAM:
                call_arm_recv(c);
                break;
        case SBX_RPC_CLIENT_STREAM:
        case SBX_RPC_BIDI:
                c->started = true;
                c->handler->on_start(c, NULL, c->handler->userdata);
                call_arm_recv(c);
                break;
        }
}

static void on_accept(SbxRpcTag *tag, bool ok)
{
        SbxRpcServerCall *c = container_of(tag, SbxRpcServerCall, tag_accept);
        SbxRpcServer *s = c->server;

        if (!ok) {
                /* The server is shutting down: this acceptor will never get a call. */
                sbx_rpc_server_call_unref(c);
                return;
        }
        if (!s->shutting_down)
                call_arm_accept(s);
        call_begin(c);
}

static void call_arm_accept(SbxRpcServer *s)
{
        SbxRpcServerCall *c = new0(SbxRpcServerCall, 1);
        grpc_call_error e;

        if (!c)
                return;
        c->server = s;
        c->refs = 1;
        STAILQ_INIT(&c->send_queue);
        grpc_call_details_init(&c->details);
        grpc_metadata_array_init(&c->request_md);
        s->n_calls++;
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->request_md, s->rpc->cq,
                                     s->rpc->cq, sbx__rpc_tag_arm(s->rpc, &c->tag_accept, on_accept));
        if (e != GRPC_CALL_OK) {
                s->rpc->outstanding--;
                sbx_rpc_server_call_unref(c);
        }
}

static void register_metrics(SbxRpcServer *s, SbxMetrics *m)
{
        if (!m)
                return;
        /* Several servers in one process share the families: reuse them when already registered. */
        if (sbx_metrics_counter(m, "sbx_rpc_server_requests_total",
                                "gRPC calls handled, by method and status.",
                                SBX_LABEL_NAMES("method", "code"), &s->m_requests) < 0 ||
            sbx_metrics_histogram(m, "sbx_rpc_server_duration_seconds",
                                  "Time from accepting a call to its end.", SBX_LABEL_NAMES("method"),
                                  sbx_metrics_buckets_latency, sbx_metrics_buckets_latency_n,
                                  &s->m_latency) < 0 ||
            sbx_metrics_gauge(m, "sbx_rpc_server_calls_in_flight", "gRPC calls being handled now.", NULL,
                              &s->m_inflight) < 0) {
                s->m_requests = NULL;
                s->m_latency = NULL;
                s->m_inflight = NULL;
        }
}

int sbx_rpc_server_new(SbxRpc *rpc, const SbxRpcServerOptions *opts, SbxRpcServer **ret)
{
        SbxRpcServer *s = new0(SbxRpcServer, 1);
        SbxRpcServerOptions o = opts ? *opts : (SbxRpcServerOptions){ 0 };

        if (!s)
                return -ENOMEM;
        if (rpc->shutting_down) {
                free(s);
                return -ESHUTDOWN;
        }
        s->rpc = rpc;
        s->max_message_size = o.max_message_size ? o.max_message_size : SBX_RPC_DEFAULT_MAX_MESSAGE;
        s->accept_depth = o.accept_depth ? o.accept_depth : DEFAULT_ACCEPT_DEPTH;

        grpc_arg args[] = {
                { .type = GRPC_ARG_INTEGER,
                  .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                  .value.integer = (int)s->max_message_size },
                { .type = GRPC_ARG_INTEGER,
                  .key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                  .value.integer = (int)s->max_message_size },
                /* Our clients send keepalive pings on idle streams (watches); do not punish them. */
                { .type = GRPC_ARG_INTEGER,
                  .key = (char *)GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                  .value.integer = 5000 },
                { .type = GRPC_ARG_INTEGER,
                  .key = (char *)GRPC_ARG_HTTP2_MAX_PING_STRIKES,
                  .value.integer = 0 },
                { .type = GRPC_ARG_INTEGER,
                  .key = (char *)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                  .value.integer = 1 },
        };
        grpc_channel_args ca = { .num_args = ELEMENTSOF(args), .args = args };
        s->server = grpc_server_create(&ca, NULL);
        grpc_server_register_completion_queue(s->server, rpc->cq, NULL);
        register_metrics(s, o.metrics);
        LIST_INSERT_HEAD(&rpc->servers, s, link);
        *ret = s;
        return 0;
}

int sbx_rpc_server_add_handler(SbxRpcServer *s, const SbxRpcHandler *h)
{
        if (s->started || !h || !h->method || !h->on_start)
                return -EINVAL;
        if (find_handler(s, h->method->path))
                return -EEXIST;
        SbxRpcHandler *n = realloc(s->handlers, (s->n_handlers + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        s->handlers = n;
        s->handlers[s->n_handlers++] = *h;
        return 0;
}

int sbx_rpc_server_listen(SbxRpcServer *s, const char *address, const SbxRpcTls *tls, int *ret_port)
{
        grpc_server_credentials *creds;
        int r, port;

        if (s->started)
                return -EBUSY;
        r = sbx__rpc_server_credentials(tls, &creds);
        if (r < 0)
                return r;
        port = grpc_server_add_http2_port(s->server, address, creds);
        grpc_server_credentials_release(creds);
        if (port <= 0 && !startswith(address, "unix:"))
                return -EADDRINUSE;
        if (ret_port)
                *ret_port = port;
        return 0;
}

int sbx_rpc_server_start(SbxRpcServer *s)
{
        if (s->started)
                return -EALREADY;
        s->started = true;
        grpc_server_start(s->server);
        for (unsigned i = 0; i < s->accept_depth; i++)
                call_arm_accept(s);
        return 0;
}

static void grace_timer_closed(uv_handle_t *h)
{
        SbxRpcServer *s = h->data;
        s->grace_timer_active = false;
        server_maybe_free(s);
}

static void server_maybe_free(SbxRpcServer *s)
{
        SbxRpc *rpc = s->rpc;

        if (!s->shutting_down || !s->shutdown_notified || s->n_calls > 0)
                return;
        if (s->grace_timer_active) {
                if (!uv_is_closing((uv_handle_t *)&s->grace_timer))
                        uv_close((uv_handle_t *)&s->grace_timer, grace_timer_closed);
                return;
        }

        void (*done)(void *) = s->done;
        void *ud = s->done_userdata;
        grpc_server_destroy(s->server);
        LIST_REMOVE(s, link);
        free(s->handlers);
        free(s);
        if (done)
                done(ud);
        sbx__rpc_maybe_finish_shutdown(rpc);
}

static void on_shutdown_notify(SbxRpcTag *tag, bool ok)
{
        SbxRpcServer *s = container_of(tag, SbxRpcServer, shutdown_tag);
        s->shutdown_notified = true;
        server_maybe_free(s);
}

static void on_grace_expired(uv_timer_t *t)
{
        SbxRpcServer *s = t->data;
        /* Whatever still runs is cancelled: handlers see on_done(cancelled) and clients CANCELLED. */
        grpc_server_cancel_all_calls(s->server);
}

void sbx_rpc_server_shutdown(SbxRpcServer *s, usec_t grace, void (*done)(void *userdata), void *userdata)
{
        if (s->shutting_down)
                return;
        s->shutting_down = true;
        s->done = done;
        s->done_userdata = userdata;

        if (!s->started) {
                /* gRPC needs a started server for shutdown_and_notify to complete. */
                grpc_server_start(s->server);
                s->started = true;
        }
        grpc_server_shutdown_and_notify(s->server, s->rpc->cq,
                                        sbx__rpc_tag_arm(s->rpc, &s->shutdown_tag, on_shutdown_notify));
        if (grace == 0 || grace == USEC_INFINITY) {
                if (grace == 0)
                        grpc_server_cancel_all_calls(s->server);
                return;
        }
        uv_timer_init(s->rpc->loop, &s->grace_timer);
        s->grace_timer.data = s;
        s->grace_timer_active = true;
        uv_timer_start(&s->grace_timer, on_grace_expired, sbx_usec_to_msec_ceil(grace), 0);
}

void sbx__rpc_servers_shutdown_all(SbxRpc *rpc, usec_t grace)
{
        /* A server may unlink itself synchronously: take the next one first. */
        for (SbxRpcServer *s = LIST_FIRST(&rpc->servers); s;) {
                SbxRpcServer *next = LIST_NEXT(s, link);
                sbx_rpc_server_shutdown(s, grace, s->done, s->done_userdata);
                s = next;
        }
}
