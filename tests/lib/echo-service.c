/* SPDX-License-Identifier: Apache-2.0 */
#include "tests/lib/echo-service.h"

#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"

const SbxRpcMethod sbx_test_echo_unary =
        SBX_RPC_METHOD("/sbx.test.Echo/Unary", UNARY, sbx__test__echo_request__descriptor,
                       sbx__test__echo_reply__descriptor);
const SbxRpcMethod sbx_test_echo_server_stream =
        SBX_RPC_METHOD("/sbx.test.Echo/ServerStream", SERVER_STREAM, sbx__test__echo_request__descriptor,
                       sbx__test__echo_reply__descriptor);
const SbxRpcMethod sbx_test_echo_client_stream =
        SBX_RPC_METHOD("/sbx.test.Echo/ClientStream", CLIENT_STREAM, sbx__test__echo_request__descriptor,
                       sbx__test__echo_reply__descriptor);
const SbxRpcMethod sbx_test_echo_bidi = SBX_RPC_METHOD(
        "/sbx.test.Echo/Bidi", BIDI, sbx__test__echo_request__descriptor, sbx__test__echo_reply__descriptor);

/* Per-call state; lives until on_done and the last timer callback. */
typedef struct EchoCall {
        SbxRpcServerCall *call;
        SbxTestEchoStats *stats;
        const Sbx__Test__EchoRequest *req;
        uv_timer_t timer;
        bool timer_active;
        uint32_t sent;
        uint32_t received;
        uint64_t bytes;
        uint8_t *payload;
} EchoCall;

static void echo_call_closed(uv_handle_t *h)
{
        EchoCall *e = h->data;
        free(e->payload);
        sbx_rpc_server_call_unref(e->call);
        free(e);
}

static void echo_call_release(EchoCall *e)
{
        if (e->timer_active) {
                uv_timer_stop(&e->timer);
                uv_close((uv_handle_t *)&e->timer, echo_call_closed);
                e->timer_active = false;
                return;
        }
        free(e->payload);
        sbx_rpc_server_call_unref(e->call);
        free(e);
}

static EchoCall *echo_call_new(SbxRpcServerCall *call, void *userdata, const ProtobufCMessage *request)
{
        EchoCall *e = new0(EchoCall, 1);
        if (!e)
                return NULL;
        e->call = sbx_rpc_server_call_ref(call);
        e->stats = userdata;
        e->req = (const Sbx__Test__EchoRequest *)request;
        if (e->stats)
                e->stats->started++;
        sbx_rpc_server_call_set_userdata(call, e);
        return e;
}

static void fill_reply(EchoCall *e, Sbx__Test__EchoReply *r, const Sbx__Test__EchoRequest *req,
                       uint32_t index)
{
        sbx__test__echo_reply__init(r);
        r->text = (char *)(req->text ? req->text : "");
        r->index = index;
        r->token = (char *)(sbx_rpc_server_call_bearer_token(e->call) ?: "");
        r->peer_identity = (char *)(sbx_rpc_server_call_peer_identity(e->call) ?: "");
        if (req->reply_size > 0) {
                if (!e->payload)
                        e->payload = calloc(1, req->reply_size);
                r->payload.data = e->payload;
                r->payload.len = e->payload ? req->reply_size : 0;
        } else {
                r->payload = req->payload;
        }
}

/* ---- unary ---- */

static void unary_answer(EchoCall *e)
{
        Sbx__Test__EchoReply r;

        if (e->req->fail_status) {
                sbx_rpc_server_call_fail(e->call, (SbxStatus)e->req->fail_status, "%s", e->req->text);
                return;
        }
        fill_reply(e, &r, e->req, 0);
        sbx_rpc_server_call_reply(e->call, &r.base);
}

static void unary_timer(uv_timer_t *t)
{
        unary_answer(t->data);
}

static void unary_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        EchoCall *e = echo_call_new(call, userdata, request);
        if (!e) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        if (e->req->delay_ms == 0) {
                unary_answer(e);
                return;
        }
        uv_timer_init(sbx_rpc_server_call_loop(call), &e->timer);
        e->timer.data = e;
        e->timer_active = true;
        uv_timer_start(&e->timer, unary_timer, e->req->delay_ms, 0);
}

static void echo_done(SbxRpcServerCall *call, bool cancelled, void *userdata)
{
        EchoCall *e = sbx_rpc_server_call_get_userdata(call);
        if (e && e->stats) {
                if (cancelled)
                        e->stats->cancelled++;
                else
                        e->stats->completed++;
        }
        if (e)
                echo_call_release(e);
}

/* ---- server stream ---- */

static void stream_pump(EchoCall *e)
{
        /* Stay under 1 MiB queued: the drain callback resumes the pump. */
        while (e->sent < e->req->count && sbx_rpc_server_call_pending_bytes(e->call) < 1024 * 1024) {
                Sbx__Test__EchoReply r;
                fill_reply(e, &r, e->req, e->sent);
                if (sbx_rpc_server_call_send(e->call, &r.base) < 0)
                        return;
                e->sent++;
        }
        if (e->sent >= e->req->count) {
                if (e->req->fail_status)
                        sbx_rpc_server_call_fail(e->call, (SbxStatus)e->req->fail_status, "%s",
                                                 e->req->text);
                else
                        sbx_rpc_server_call_finish(e->call, SBX_STATUS_OK, NULL);
        }
}

static void stream_drain(SbxRpcServerCall *call, void *userdata)
{
        stream_pump(userdata);
}

static void stream_timer(uv_timer_t *t)
{
        stream_pump(t->data);
}

static void server_stream_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        EchoCall *e = echo_call_new(call, userdata, request);
        if (!e) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        sbx_rpc_server_call_on_drain(call, stream_drain, e);
        if (e->req->delay_ms == 0) {
                stream_pump(e);
                return;
        }
        uv_timer_init(sbx_rpc_server_call_loop(call), &e->timer);
        e->timer.data = e;
        e->timer_active = true;
        uv_timer_start(&e->timer, stream_timer, e->req->delay_ms, 0);
}

/* ---- client stream and bidi ---- */

static void collect_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        if (!echo_call_new(call, userdata, NULL))
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
}

static void client_stream_message(SbxRpcServerCall *call, ProtobufCMessage *m, void *userdata)
{
        EchoCall *e = sbx_rpc_server_call_get_userdata(call);
        Sbx__Test__EchoRequest *req = (Sbx__Test__EchoRequest *)m;

        e->received++;
        e->bytes += req->payload.len;
        if (req->fail_status)
                sbx_rpc_server_call_fail(call, (SbxStatus)req->fail_status, "%s", req->text);
        protobuf_c_message_free_unpacked(m, NULL);
}

static void client_stream_half_close(SbxRpcServerCall *call, void *userdata)
{
        EchoCall *e = sbx_rpc_server_call_get_userdata(call);
        Sbx__Test__EchoReply r = SBX__TEST__ECHO_REPLY__INIT;

        r.text = (char *)"done";
        r.index = e->received;
        r.bytes = e->bytes;
        r.token = (char *)(sbx_rpc_server_call_bearer_token(call) ?: "");
        sbx_rpc_server_call_reply(call, &r.base);
}

static void bidi_message(SbxRpcServerCall *call, ProtobufCMessage *m, void *userdata)
{
        EchoCall *e = sbx_rpc_server_call_get_userdata(call);
        Sbx__Test__EchoRequest *req = (Sbx__Test__EchoRequest *)m;
        Sbx__Test__EchoReply r;

        if (req->fail_status) {
                sbx_rpc_server_call_fail(call, (SbxStatus)req->fail_status, "%s", req->text);
        } else {
                uint32_t n = req->count ? req->count : 1;
                for (uint32_t i = 0; i < n; i++) {
                        fill_reply(e, &r, req, e->received);
                        sbx_rpc_server_call_send(call, &r.base);
                }
        }
        e->received++;
        protobuf_c_message_free_unpacked(m, NULL);
}

static void bidi_half_close(SbxRpcServerCall *call, void *userdata)
{
        sbx_rpc_server_call_finish(call, SBX_STATUS_OK, NULL);
}

int sbx_test_echo_register(SbxRpcServer *s, SbxTestEchoStats *stats)
{
        const SbxRpcHandler handlers[] = {
                { .method = &sbx_test_echo_unary,
                  .on_start = unary_start,
                  .on_done = echo_done,
                  .userdata = stats },
                { .method = &sbx_test_echo_server_stream,
                  .on_start = server_stream_start,
                  .on_done = echo_done,
                  .userdata = stats },
                { .method = &sbx_test_echo_client_stream,
                  .on_start = collect_start,
                  .on_message = client_stream_message,
                  .on_half_close = client_stream_half_close,
                  .on_done = echo_done,
                  .userdata = stats },
                { .method = &sbx_test_echo_bidi,
                  .on_start = collect_start,
                  .on_message = bidi_message,
                  .on_half_close = bidi_half_close,
                  .on_done = echo_done,
                  .userdata = stats },
        };
        for (size_t i = 0; i < ELEMENTSOF(handlers); i++) {
                int r = sbx_rpc_server_add_handler(s, &handlers[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}
