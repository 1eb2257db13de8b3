/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One SDK WebSocket (deno-sandbox-protocol.md §2.4-2.8, §4): JSON-RPC requests are dispatched as
 * they arrive and answered whenever they finish, in any order (a processWait may stay pending for
 * as long as its process runs); the byte streams of both directions are multiplexed as
 * notifications; abort always gets {"ok":null}; the bare text frame "ping" gets "pong".
 *
 * Lifetimes: the session is reference counted. libwebsockets holds one reference until the socket
 * closes; every request, process and file handle with a call in flight holds one. When the socket
 * closes every call is cancelled (the agent then ends the session's processes), and what answers
 * arrive later only release their references.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/random-util.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "gateway/gw-errors.h"
#include "gateway/gw-jsonrpc.h"
#include "gateway/gw-values.h"
#include "gateway/gw.h"

/* WebSocket frames are written in fragments of this size, one per writable callback. */
#define FRAGMENT (64u * 1024)
/* Client stream bytes held before their consumer exists, per session. */
#define IN_BUFFER_MAX (64u * 1024 * 1024)
/* Client streams started and not yet consumed, per session. */
#define IN_STREAMS_MAX 1024
/* Deadline of unary data-plane calls (file operations, environment). */
#define UNARY_TIMEOUT (300 * USEC_PER_SEC)
/* The agent answers UNAVAILABLE "…is starting" right after a restart: retry this often. */
#define RESTART_RETRIES  40
#define RESTART_RETRY_MS 250

typedef struct OutMsg {
        struct OutMsg *next;
        size_t len, sent;
        unsigned char buf[];
} OutMsg;

typedef struct DrainWaiter {
        GwLink link;
        void (*cb)(GwSession *s, void *userdata);
        void *userdata;
} DrainWaiter;

typedef struct InStream {
        uint64_t id;
        SbxBuffer pending;
        bool ended;
        bool cancelled;
        json_t *error;
        const GwInStreamOps *ops;
        void *userdata;
} InStream;

struct GwOutStream {
        GwSession *s;
        uint64_t id;
        bool cancelled;
        void (*on_cancel)(void *userdata);
        void *userdata;
};

struct GwSession {
        unsigned n_ref;
        Gateway *gw;
        struct lws *wsi;
        GwSandbox *sandbox;
        GwLink sandbox_link;
        bool creator;
        bool closing;
        bool close_sent;
        bool closed;
        int close_code;
        char close_reason[124];

        OutMsg *out_head, *out_tail;
        size_t queued;
        GwLink drain_waiters;

        SbxBuffer rx;
        bool rx_overflow;
        unsigned input_paused;

        uint64_t stream_next;
        SbxHashmap *in_streams;
        SbxHashmap *out_streams;
        size_t in_buffered;
        SbxHashmap *aborts;
        GwLink requests;
        unsigned n_requests;
        GwLink tasks;

        GwProcTable *procs;
        GwFileTable *files;
};

static int send_close(GwSession *s);

static void key_of(char buf[24], uint64_t id)
{
        snprintf(buf, 24, "%" PRIu64, id);
}

GwSession *gw__session_from_link(GwLink *l)
{
        return container_of(l, GwSession, sandbox_link);
}

GwSession *gw_session_ref(GwSession *s)
{
        if (s)
                s->n_ref++;
        return s;
}

static void in_stream_free(void *p)
{
        InStream *in = p;
        sbx_buffer_done(&in->pending);
        json_decref(in->error);
        free(in);
}

GwSession *gw_session_unref(GwSession *s)
{
        if (!s || --s->n_ref > 0)
                return NULL;
        sbx_buffer_done(&s->rx);
        sbx_hashmap_free(s->in_streams, in_stream_free);
        sbx_hashmap_free(s->out_streams, free);
        sbx_hashmap_free(s->aborts, NULL);
        for (GwLink *l = s->drain_waiters.next, *next; l != &s->drain_waiters; l = next) {
                next = l->next;
                free(container_of(l, DrainWaiter, link));
        }
        gw_sandbox_unref(s->sandbox);
        free(s);
        return NULL;
}

Gateway *gw_session_gateway(const GwSession *s)
{
        return s->gw;
}

GwSandbox *gw_session_sandbox(const GwSession *s)
{
        return s->sandbox;
}

const char *gw_session_sandbox_id(const GwSession *s)
{
        return gw_sandbox_id(s->sandbox);
}

SbxRpcChannel *gw_session_channel(const GwSession *s)
{
        return gw_sandbox_channel(s->sandbox);
}

bool gw_session_open(const GwSession *s)
{
        return !s->closed && !s->closing;
}

GwProcTable **gw_session_procs(GwSession *s)
{
        return &s->procs;
}

GwFileTable **gw_session_files(GwSession *s)
{
        return &s->files;
}

int gw_session_new(Gateway *gw, struct lws *wsi, GwSandbox *sandbox, bool creator, GwSession **ret)
{
        GwSession *s = new0(GwSession, 1);

        if (!s)
                return -ENOMEM;
        s->n_ref = 1;
        s->gw = gw;
        s->wsi = wsi;
        s->creator = creator;
        gw_list_init(&s->drain_waiters);
        gw_list_init(&s->requests);
        gw_list_init(&s->tasks);
        sbx_buffer_set_limit(&s->rx, gw->cfg.max_message_size);
        /* Server stream ids: a random base, so ids differ across connections (the client keeps its
         * inbound streams in one map for all of them), below 2^53 to stay exact in JavaScript. */
        s->stream_next = (sbx_random_below(1ULL << 36) + 1) << 16;
        if (sbx_hashmap_new(&s->in_streams) < 0 || sbx_hashmap_new(&s->out_streams) < 0 ||
            sbx_hashmap_new(&s->aborts) < 0) {
                gw_session_unref(s);
                return -ENOMEM;
        }
        s->sandbox = gw_sandbox_ref(sandbox);
        gw_sandbox_add_session(sandbox, s, &s->sandbox_link);
        sbx_gauge_add(gw->m.sessions, NULL, 1);
        sbx_counter_inc(gw->m.sessions_total, SBX_LABELS(creator ? "creator" : "other"));
        log_debug_fields(LOG_FIELDS({ "sandbox", gw_sandbox_id(sandbox) }), "WebSocket session opened%s",
                         creator ? " (holds the session sandbox)" : "");
        *ret = s;
        return 0;
}

/* ---- sending ---- */

static void run_drain_waiters(GwSession *s)
{
        GwLink list;

        if (gw_list_empty(&s->drain_waiters))
                return;
        /* Take the list first: a callback may register again. */
        list = s->drain_waiters;
        list.next->prev = &list;
        list.prev->next = &list;
        gw_list_init(&s->drain_waiters);
        gw_session_ref(s);
        while (!gw_list_empty(&list)) {
                DrainWaiter *w = container_of(list.next, DrainWaiter, link);
                gw_list_del(&w->link);
                void (*cb)(GwSession *, void *) = w->cb;
                void *ud = w->userdata;
                free(w);
                if (!s->closed)
                        cb(s, ud);
        }
        gw_session_unref(s);
}

void gw_session_on_drain(GwSession *s, void (*cb)(GwSession *s, void *userdata), void *userdata)
{
        DrainWaiter *w;

        for (GwLink *l = s->drain_waiters.next; l != &s->drain_waiters; l = l->next) {
                w = container_of(l, DrainWaiter, link);
                if (w->cb == cb && w->userdata == userdata)
                        return;
        }
        w = new0(DrainWaiter, 1);
        if (!w)
                return;
        w->cb = cb;
        w->userdata = userdata;
        gw_list_add(&s->drain_waiters, &w->link);
}

void gw_session_cancel_drain(GwSession *s, void (*cb)(GwSession *s, void *userdata), void *userdata)
{
        for (GwLink *l = s->drain_waiters.next, *next; l != &s->drain_waiters; l = next) {
                DrainWaiter *w = container_of(l, DrainWaiter, link);
                next = l->next;
                if (w->cb == cb && w->userdata == userdata) {
                        gw_list_del(l);
                        free(w);
                }
        }
}

size_t gw_session_queued(const GwSession *s)
{
        return s->queued;
}

static int queue_text(GwSession *s, const char *text, size_t len)
{
        OutMsg *m;

        if (s->closing || s->closed)
                return -ECONNRESET;
        m = malloc(sizeof(OutMsg) + LWS_PRE + len);
        if (!m)
                return -ENOMEM;
        m->next = NULL;
        m->len = len;
        m->sent = 0;
        memcpy(m->buf + LWS_PRE, text, len);
        if (s->out_tail)
                s->out_tail->next = m;
        else
                s->out_head = m;
        s->out_tail = m;
        s->queued += len;
        lws_callback_on_writable(s->wsi);
        return 0;
}

int gw_session_send(GwSession *s, char *text)
{
        int r;

        if (!text)
                return -ENOMEM;
        r = queue_text(s, text, strlen(text));
        free(text);
        return r;
}

static void send_notification(GwSession *s, const char *method, json_t *params)
{
        (void)gw_session_send(s, gw_rpc_encode_notification(method, params));
}

int gw_session_writable(GwSession *s)
{
        OutMsg *m = s->out_head;

        if (s->closed)
                return -1;
        if (!m) {
                if (!s->closing)
                        return 0;
                if (s->close_sent)
                        return -1;
                return send_close(s);
        }
        size_t n = SBX_MIN(m->len - m->sent, (size_t)FRAGMENT);
        bool first = m->sent == 0, last = m->sent + n == m->len;
        int flags = lws_write_ws_flags(LWS_WRITE_TEXT, first, last);
        /* Fragments after the first overwrite LWS_PRE bytes of what was already sent: lws wants that
         * room in front of every buffer it frames. */
        if (lws_write(s->wsi, m->buf + LWS_PRE + m->sent, n, (enum lws_write_protocol)flags) < (int)n)
                return -1;
        m->sent += n;
        if (last) {
                s->out_head = m->next;
                if (!s->out_head)
                        s->out_tail = NULL;
                s->queued -= m->len;
                free(m);
        }
        if (s->out_head || s->closing)
                lws_callback_on_writable(s->wsi);
        if (s->queued < GW_SEND_HIGH / 4)
                run_drain_waiters(s);
        return 0;
}

/*
 * libwebsockets 4.1 drops the connection without a Close frame when a writable callback returns -1
 * (lws_close_reason() is honoured only on other paths), and the SDK must see the code: 1000 after a
 * kill, 1001 when the sandbox ended. So the frame is written here, with lws_write()'s close opcode,
 * which lws keeps out of its public enum (LWS_WRITE_CLOSE, 4); the next writable callback hangs up.
 */
#define WRITE_CLOSE ((enum lws_write_protocol)4)

static int send_close(GwSession *s)
{
        unsigned char buf[LWS_PRE + 2 + sizeof(s->close_reason)];
        size_t n = strlen(s->close_reason);

        buf[LWS_PRE] = (unsigned char)(s->close_code >> 8);
        buf[LWS_PRE + 1] = (unsigned char)(s->close_code & 0xff);
        memcpy(buf + LWS_PRE + 2, s->close_reason, n);
        s->close_sent = true;
        if (lws_write(s->wsi, buf + LWS_PRE, n + 2, WRITE_CLOSE) < 0)
                return -1;
        lws_callback_on_writable(s->wsi);
        return 0;
}

void gw_session_close(GwSession *s, int code, const char *reason)
{
        if (s->closing || s->closed)
                return;
        s->closing = true;
        s->close_code = code;
        snprintf(s->close_reason, sizeof(s->close_reason), "%s", strempty(reason));
        lws_callback_on_writable(s->wsi);
}

void gw_session_pause_input(GwSession *s, bool pause)
{
        if (pause) {
                if (s->input_paused++ == 0 && s->wsi)
                        lws_rx_flow_control(s->wsi, 0);
        } else if (s->input_paused > 0 && --s->input_paused == 0 && s->wsi)
                lws_rx_flow_control(s->wsi, 1);
}

void gw_session_add_task(GwSession *s, GwTask *t)
{
        gw_list_add(&s->tasks, &t->link);
}

void gw_session_remove_task(GwSession *s, GwTask *t)
{
        gw_list_del(&t->link);
}

/* ---- requests ---- */

static void request_release(GwRequest *r)
{
        GwSession *s = r->s;

        if (!r->replied || r->call || r->retry_timer)
                return;
        gw_list_del(&r->link);
        s->n_requests--;
        if (r->free_data)
                r->free_data(r->data);
        json_decref(r->id);
        json_decref(r->params);
        free(r->retry_msg);
        free(r);
        gw_session_unref(s);
}

static void unregister_abort(GwRequest *r)
{
        char key[24];

        if (!r->has_abort)
                return;
        key_of(key, (uint64_t)r->abort_id);
        if (sbx_hashmap_get(r->s->aborts, key) == r)
                sbx_hashmap_remove(r->s->aborts, key);
        r->has_abort = false;
}

static void request_answer(GwRequest *r, char *text, const char *result)
{
        GwSession *s = r->s;

        if (r->replied) {
                free(text);
                return;
        }
        r->replied = true;
        unregister_abort(r);
        sbx_counter_inc(s->gw->m.rpc_calls, SBX_LABELS(r->method ? r->method->name : "unknown", result));
        if (r->method)
                sbx_histogram_observe(s->gw->m.rpc_duration, SBX_LABELS(r->method->name),
                                      (double)(sbx_now_monotonic() - r->started) / (double)USEC_PER_SEC);
        if (!s->closed && !s->closing)
                (void)gw_session_send(s, text);
        else
                free(text);
        request_release(r);
}

void gw_request_ok(GwRequest *r, json_t *value)
{
        if (r->replied) {
                json_decref(value);
                return;
        }
        char *text = gw_rpc_encode_ok(r->id, value);
        if (!text)
                text = gw_rpc_encode_rpc_error(r->id, GW_RPC_INTERNAL_ERROR, "out of memory");
        request_answer(r, text, "ok");
}

void gw_request_error(GwRequest *r, json_t *error)
{
        if (r->replied) {
                json_decref(error);
                return;
        }
        if (!error)
                error = gw_error_new("Error", NULL, "out of memory");
        request_answer(r, gw_rpc_encode_error(r->id, error), r->aborted ? "aborted" : "error");
}

void gw_request_status(GwRequest *r, const SbxRpcStatus *st)
{
        gw_request_error(r, gw_error_from_status(st->code, st->message));
}

void gw_request_rpc_error(GwRequest *r, int code, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        request_answer(r, gw_rpc_encode_rpc_error(r->id, code, msg ? msg : "error"), "rpc_error");
}

void gw_request_bad_param(GwRequest *r, const char *name, const char *what)
{
        gw_request_rpc_error(r, GW_RPC_INVALID_PARAMS, "Invalid params for %s: %s %s", r->method->name, name,
                             what);
}

bool gw_need_string(GwRequest *r, json_t *params, const char *key, const char **ret)
{
        if (gw_param_string(params, key, ret) < 0) {
                gw_request_bad_param(r, key, "must be a string");
                return false;
        }
        return true;
}

bool gw_opt_bool(GwRequest *r, json_t *params, const char *key, bool def, bool *ret)
{
        int q = gw_param_bool(params, key, ret);

        if (q == -ENOENT)
                *ret = def;
        else if (q < 0) {
                gw_request_bad_param(r, key, "must be a boolean");
                return false;
        }
        return true;
}

int gw_request_take_abort_id(GwRequest *r, json_t *params)
{
        long long id;
        char key[24];
        int q = gw_param_int(params, "abortId", 0, 1LL << 53, &id);

        if (q == -ENOENT)
                return 0;
        if (q < 0)
                return q;
        key_of(key, (uint64_t)id);
        if (sbx_hashmap_put(r->s->aborts, key, r, NULL) < 0)
                return -ENOMEM;
        r->abort_id = id;
        r->has_abort = true;
        return 0;
}

const SbxRpcCallOptions *gw_data_call_options(void)
{
        static const SbxRpcCallOptions o = { 0 };
        return &o;
}

static void unary_start(GwRequest *r);

static void retry_timer_closed(uv_handle_t *h)
{
        free(h);
}

static void retry_fire(uv_timer_t *t)
{
        GwRequest *r = t->data;

        uv_close((uv_handle_t *)t, retry_timer_closed);
        r->retry_timer = NULL;
        /* The session may have closed, or the client aborted, meanwhile. */
        if (r->replied || r->s->closed) {
                r->replied = true;
                request_release(r);
                return;
        }
        unary_start(r);
}

static void unary_reply(const SbxRpcStatus *st, ProtobufCMessage *response, void *userdata)
{
        GwRequest *r = userdata;

        r->call = sbx_rpc_client_call_unref(r->call);
        if (r->replied || r->s->closed) {
                if (response)
                        protobuf_c_message_free_unpacked(response, NULL);
                r->replied = true;
                request_release(r);
                return;
        }
        if (st->code == SBX_STATUS_UNAVAILABLE && r->retry_msg && r->retries < RESTART_RETRIES &&
            st->message && strstr(st->message, "is starting")) {
                /* A node agent that just restarted has not re-adopted the sandbox yet. */
                uv_timer_t *t = new0(uv_timer_t, 1);
                if (t) {
                        r->retries++;
                        uv_timer_init(r->s->gw->loop, t);
                        t->data = r;
                        r->retry_timer = t;
                        uv_timer_start(t, retry_fire, RESTART_RETRY_MS, 0);
                        return;
                }
        }
        r->retry_done(r, st, response);
        if (response)
                protobuf_c_message_free_unpacked(response, NULL);
}

static void unary_start(GwRequest *r)
{
        ProtobufCMessage *msg =
                protobuf_c_message_unpack(r->retry_method->input, NULL, r->retry_len, r->retry_msg);
        SbxRpcCallOptions o = { .timeout = UNARY_TIMEOUT };
        SbxRpcStatus st = { .code = SBX_STATUS_INTERNAL, .message = (char *)"out of memory" };
        int q;

        if (!msg) {
                r->retry_done(r, &st, NULL);
                return;
        }
        q = sbx_rpc_unary(gw_session_channel(r->s), r->retry_method, msg, &o, unary_reply, r, &r->call);
        protobuf_c_message_free_unpacked(msg, NULL);
        if (q < 0) {
                st = (SbxRpcStatus){ .code = sbx_error_to_status(q),
                                     .message = (char *)sbx_error_message(q) };
                r->retry_done(r, &st, NULL);
        }
}

void gw_request_unary(GwRequest *r, const SbxRpcMethod *m, const ProtobufCMessage *msg, GwUnaryDone done)
{
        size_t n = protobuf_c_message_get_packed_size(msg);

        free(r->retry_msg);
        r->retry_msg = malloc(n ? n : 1);
        r->retry_len = n;
        r->retry_method = m;
        r->retry_done = done;
        r->retries = 0;
        if (!r->retry_msg) {
                gw_request_error(r, NULL);
                return;
        }
        protobuf_c_message_pack(msg, r->retry_msg);
        unary_start(r);
}

bool gw_request_finished(GwRequest *r)
{
        if (!r->replied && !r->s->closed)
                return false;
        r->replied = true;
        request_release(r);
        return true;
}

void gw_request_done_null(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response)
{
        if (st->code != SBX_STATUS_OK)
                gw_request_status(r, st);
        else
                gw_request_ok(r, json_null());
}

void gw_m_abort(GwRequest *r, json_t *params)
{
        long long id;
        char key[24];
        GwRequest *target;

        /* Always {"ok":null}: an error here would be an unhandled rejection in the client. */
        if (gw_param_int(params, "abortId", 0, 1LL << 53, &id) == 0) {
                key_of(key, (uint64_t)id);
                target = sbx_hashmap_get(r->s->aborts, key);
                if (target && !target->replied) {
                        target->aborted = true;
                        unregister_abort(target);
                        if (target->on_abort)
                                target->on_abort(target);
                        else if (target->call)
                                sbx_rpc_client_call_cancel(target->call);
                        gw_request_error(target, gw_error_abort());
                }
        }
        gw_request_ok(r, json_null());
}

/* ---- streams ---- */

uint64_t gw_session_new_stream_id(GwSession *s)
{
        return s->stream_next++;
}

static json_t *stream_params(uint64_t id)
{
        return json_pack("{s:I}", "streamId", (json_int_t)id);
}

GwOutStream *gw_out_stream_new(GwSession *s, uint64_t id, void (*on_cancel)(void *userdata), void *userdata)
{
        GwOutStream *o = new0(GwOutStream, 1);
        char key[24];

        if (!o)
                return NULL;
        o->s = s;
        o->id = id;
        o->on_cancel = on_cancel;
        o->userdata = userdata;
        key_of(key, id);
        if (sbx_hashmap_put(s->out_streams, key, o, NULL) < 0) {
                free(o);
                return NULL;
        }
        send_notification(s, "$sandbox.stream.start", stream_params(id));
        return o;
}

uint64_t gw_out_stream_id(const GwOutStream *o)
{
        return o->id;
}

bool gw_out_stream_cancelled(const GwOutStream *o)
{
        return o->cancelled;
}

void gw_out_stream_write(GwOutStream *o, const void *data, size_t n)
{
        json_t *p;

        /* An empty chunk errors the client's byte stream, and the end after it kills the client. */
        if (!o || o->cancelled || n == 0)
                return;
        p = stream_params(o->id);
        if (p && json_object_set_new(p, "data", gw_json_base64(data, n)) == 0)
                send_notification(o->s, "$sandbox.stream.enqueue", p);
        else
                json_decref(p);
}

void gw_out_stream_end(GwOutStream *o, json_t *error)
{
        char key[24];

        if (!o) {
                json_decref(error);
                return;
        }
        if (!o->cancelled) {
                json_t *p = stream_params(o->id);
                if (error) {
                        if (p && json_object_set(p, "error", error) == 0)
                                send_notification(o->s, "$sandbox.stream.error", p);
                        else
                                json_decref(p);
                } else
                        send_notification(o->s, "$sandbox.stream.end", p);
        }
        json_decref(error);
        key_of(key, o->id);
        sbx_hashmap_remove(o->s->out_streams, key);
        free(o);
}

static InStream *in_stream_get(GwSession *s, uint64_t id, bool create)
{
        char key[24];
        InStream *in;

        key_of(key, id);
        in = sbx_hashmap_get(s->in_streams, key);
        if (in || !create)
                return in;
        if (sbx_hashmap_size(s->in_streams) >= IN_STREAMS_MAX)
                return NULL;
        in = new0(InStream, 1);
        if (!in)
                return NULL;
        in->id = id;
        if (sbx_hashmap_put(s->in_streams, key, in, NULL) < 0) {
                free(in);
                return NULL;
        }
        return in;
}

static void in_stream_remove(GwSession *s, InStream *in)
{
        char key[24];

        key_of(key, in->id);
        sbx_hashmap_remove(s->in_streams, key);
        s->in_buffered -= sbx_buffer_size(&in->pending);
        in_stream_free(in);
}

void gw_in_stream_cancel(GwSession *s, uint64_t id)
{
        InStream *in = in_stream_get(s, id, true);
        json_t *p;

        if (in) {
                if (in->cancelled)
                        return;
                in->cancelled = true;
                in->ops = NULL;
                s->in_buffered -= sbx_buffer_size(&in->pending);
                sbx_buffer_done(&in->pending);
                if (in->ended) {
                        in_stream_remove(s, in);
                        return;
                }
        }
        p = stream_params(id);
        if (p && json_object_set_new(p, "reason", json_null()) == 0)
                send_notification(s, "$sandbox.stream.cancel", p);
        else
                json_decref(p);
}

void gw_in_stream_unbind(GwSession *s, uint64_t id)
{
        InStream *in = in_stream_get(s, id, false);

        if (in) {
                /* Later data is dropped until the client ends the stream. */
                in->ops = NULL;
                in->cancelled = true;
                if (in->ended)
                        in_stream_remove(s, in);
        }
}

int gw_in_stream_bind(GwSession *s, uint64_t id, const GwInStreamOps *ops, void *userdata)
{
        InStream *in = in_stream_get(s, id, true);

        if (!in)
                return -ENOBUFS;
        if (in->ops || in->cancelled)
                return -EEXIST;
        in->ops = ops;
        in->userdata = userdata;
        if (sbx_buffer_size(&in->pending) > 0) {
                size_t n = sbx_buffer_size(&in->pending);
                uint8_t *data = malloc(n);
                if (!data)
                        return -ENOMEM;
                memcpy(data, sbx_buffer_data(&in->pending), n);
                s->in_buffered -= n;
                sbx_buffer_done(&in->pending);
                ops->on_data(userdata, data, n);
                free(data);
                /* The consumer may have cancelled meanwhile. */
                in = in_stream_get(s, id, false);
                if (!in || in->ops != ops)
                        return 0;
        }
        if (in->ended) {
                json_t *err = json_incref(in->error);
                in_stream_remove(s, in);
                ops->on_end(userdata, err);
                json_decref(err);
        }
        return 0;
}

static void on_stream_notification(GwSession *s, const char *what, json_t *params)
{
        long long id;
        InStream *in;

        if (gw_param_int(params, "streamId", 0, 1LL << 53, &id) < 0)
                return;
        if (streq(what, "cancel")) {
                char key[24];
                GwOutStream *o;
                key_of(key, (uint64_t)id);
                o = sbx_hashmap_get(s->out_streams, key);
                if (o && !o->cancelled) {
                        /* Nothing more may be sent on it, not even its end. */
                        o->cancelled = true;
                        if (o->on_cancel)
                                o->on_cancel(o->userdata);
                }
                return;
        }
        in = in_stream_get(s, (uint64_t)id, streq(what, "start") || streq(what, "enqueue"));
        if (!in) {
                if (streq(what, "start") || streq(what, "enqueue"))
                        /* Too many open client streams: refuse this one. */
                        gw_in_stream_cancel(s, (uint64_t)id);
                return;
        }
        if (streq(what, "start"))
                return;
        if (streq(what, "enqueue")) {
                const char *data;
                _cleanup_free_ uint8_t *bytes = NULL;
                size_t n;

                if (in->cancelled || in->ended || gw_param_string(params, "data", &data) < 0 ||
                    gw_base64_decode(data, strlen(data), &bytes, &n) < 0)
                        return;
                if (in->ops) {
                        in->ops->on_data(in->userdata, bytes, n);
                        return;
                }
                if (s->in_buffered + n > IN_BUFFER_MAX || sbx_buffer_append(&in->pending, bytes, n) < 0) {
                        gw_in_stream_cancel(s, (uint64_t)id);
                        return;
                }
                s->in_buffered += n;
                return;
        }
        if (streq(what, "end") || streq(what, "error")) {
                json_t *err = NULL;
                if (streq(what, "error")) {
                        err = json_object_get(params, "error");
                        if (!json_is_object(err))
                                err = json_null();
                }
                if (in->ops) {
                        const GwInStreamOps *ops = in->ops;
                        void *ud = in->userdata;
                        json_incref(err);
                        in_stream_remove(s, in);
                        ops->on_end(ud, err);
                        json_decref(err);
                } else if (in->cancelled)
                        in_stream_remove(s, in);
                else {
                        in->ended = true;
                        in->error = json_incref(err);
                }
        }
}

/* ---- receiving ---- */

static void dispatch(GwSession *s, GwRpcMessage *m)
{
        const GwMethod *method;
        GwRequest *r;

        if (!m->id) {
                const char *what = startswith(m->method, "$sandbox.stream.");
                if (what)
                        on_stream_notification(s, what, m->params);
                return;
        }
        method = gw_method_find(m->method);
        r = new0(GwRequest, 1);
        if (!r)
                return;
        r->s = gw_session_ref(s);
        r->id = json_incref(m->id);
        r->params = json_incref(m->params);
        r->method = method;
        r->started = sbx_now_monotonic();
        gw_list_add(&s->requests, &r->link);
        s->n_requests++;
        if (!method) {
                gw_request_rpc_error(r, GW_RPC_METHOD_NOT_FOUND, "Method not found: %.64s", m->method);
                return;
        }
        if (s->n_requests > s->gw->cfg.max_pending_requests) {
                gw_request_rpc_error(r, GW_RPC_INTERNAL_ERROR,
                                     "Too many requests outstanding on this connection (%u)",
                                     s->gw->cfg.max_pending_requests);
                return;
        }
        method->handler(r, r->params);
}

static void handle_message(GwSession *s, const char *data, size_t len)
{
        GwRpcMessage m;
        json_t *id = NULL;
        const char *problem;
        int r;

        if (len == 4 && memcmp(data, "ping", 4) == 0) {
                (void)queue_text(s, "pong", 4);
                return;
        }
        r = gw_rpc_decode(data, len, &m, &id, &problem);
        if (r < 0) {
                sbx_counter_inc(s->gw->m.messages_refused,
                                SBX_LABELS(r == -EBADMSG ? "not_json" : "not_jsonrpc"));
                /* Only a message with a usable id can be answered (an id of null is not allowed). */
                if (id)
                        (void)gw_session_send(s,
                                              gw_rpc_encode_rpc_error(id, GW_RPC_INVALID_REQUEST, problem));
                json_decref(id);
                return;
        }
        gw_session_ref(s);
        dispatch(s, &m);
        gw_rpc_message_done(&m);
        gw_session_unref(s);
}

int gw_session_receive(GwSession *s, const void *data, size_t len, bool first, bool final)
{
        if (s->closed)
                return -1;
        sbx_counter_add(s->gw->m.bytes, SBX_LABELS("ws_in"), (double)len);
        if (first) {
                sbx_buffer_clear(&s->rx);
                s->rx_overflow = false;
        }
        if (first && final) {
                handle_message(s, data, len);
                return 0;
        }
        if (!s->rx_overflow && sbx_buffer_append(&s->rx, data, len) < 0) {
                s->rx_overflow = true;
                sbx_buffer_done(&s->rx);
                gw_session_close(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "Message too large");
        }
        if (final && !s->rx_overflow) {
                /* The handler may queue more reads of its own; work on a copy of nothing: take it. */
                SbxBuffer b = s->rx;
                s->rx = (SbxBuffer)SBX_BUFFER_INIT;
                sbx_buffer_set_limit(&s->rx, s->gw->cfg.max_message_size);
                handle_message(s, (const char *)sbx_buffer_data(&b), sbx_buffer_size(&b));
                sbx_buffer_done(&b);
        }
        return 0;
}

void gw_session_closed(GwSession *s)
{
        if (s->closed)
                return;
        s->closed = true;
        s->wsi = NULL;
        log_debug_fields(LOG_FIELDS({ "sandbox", gw_sandbox_id(s->sandbox) }), "WebSocket session closed");
        for (OutMsg *m = s->out_head, *next; m; m = next) {
                next = m->next;
                free(m);
        }
        s->out_head = s->out_tail = NULL;
        s->queued = 0;
        /* Processes and file handles first: they hold requests (processWait) they must let go of. */
        for (GwLink *l = s->tasks.next, *next; l != &s->tasks; l = next) {
                GwTask *t = container_of(l, GwTask, link);
                next = l->next;
                gw_list_del(l);
                t->cancel(t);
        }
        gw_session_close_processes(s);
        gw_session_close_files(s);
        for (GwLink *l = s->requests.next, *next; l != &s->requests; l = next) {
                GwRequest *r = container_of(l, GwRequest, link);
                next = l->next;
                if (r->call)
                        sbx_rpc_client_call_cancel(r->call);
                if (!r->replied && !r->call) {
                        r->replied = true;
                        request_release(r);
                }
        }
        if (s->creator)
                gw_sandbox_detach(s->sandbox);
        gw_sandbox_remove_session(s->sandbox, &s->sandbox_link);
        sbx_gauge_add(s->gw->m.sessions, NULL, -1);
        gw_session_unref(s);
}
