/* SPDX-License-Identifier: Apache-2.0 */
/* common/rpc against itself on loopback: every call kind, deadlines, cancellation, metadata, TLS,
 * limits, concurrency and shutdown. test-rpc-polling.c runs the same tests on a runtime whose loop
 * thread polls gRPC itself (SBX_TEST_RPC_POLLING_LOOP). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/loop/loop.h"
#include "common/rpc/rpc.h"
#include "tests/lib/echo-service.h"
#include "tests/lib/fixture.h"

typedef struct Env {
        uv_loop_t loop;
        SbxRpc *rpc;
        SbxRpcServer *server;
        SbxRpcChannel *ch;
        SbxTestEchoStats stats;
        int port;
        char target[64];
        char *certs;
} Env;

static Env env;

static void env_start_server(const SbxRpcServerOptions *o, const SbxRpcTls *tls)
{
        cr_assert_eq(sbx_rpc_server_new(env.rpc, o, &env.server), 0);
        cr_assert_eq(sbx_test_echo_register(env.server, &env.stats), 0);
        cr_assert_eq(sbx_rpc_server_listen(env.server, "127.0.0.1:0", tls, &env.port), 0);
        cr_assert_gt(env.port, 0);
        cr_assert_eq(sbx_rpc_server_start(env.server), 0);
        snprintf(env.target, sizeof(env.target), "127.0.0.1:%d", env.port);
}

static void setup(void)
{
        memset(&env, 0, sizeof(env));
        cr_assert_eq(uv_loop_init(&env.loop), 0);
#ifdef SBX_TEST_RPC_POLLING_LOOP
        cr_assert_eq(sbx_rpc_new_polling_loop(&env.loop, &env.rpc), 0);
#else
        cr_assert_eq(sbx_rpc_new(&env.loop, &env.rpc), 0);
#endif
}

static void setup_plain(void)
{
        setup();
        env_start_server(NULL, NULL);
        cr_assert_eq(sbx_rpc_channel_new(env.rpc, env.target, NULL, &env.ch), 0);
}

static bool shutdown_done;
static void on_shutdown(void *userdata)
{
        shutdown_done = true;
}

static void teardown(void)
{
        if (!env.rpc)
                return; /* the test shut everything down itself */
        shutdown_done = false;
        sbx_rpc_channel_free(env.ch);
        env.ch = NULL;
        sbx_rpc_shutdown(env.rpc, 0, on_shutdown, NULL);
        cr_assert_eq(sbx_test_run_until(&env.loop, &shutdown_done, 10 * USEC_PER_SEC), 0,
                     "rpc shutdown hung");
        cr_assert_eq(sbx_loop_close_all(&env.loop), 0);
        if (env.certs) {
                sbx_test_rmrf(env.certs);
                free(env.certs);
        }
}

/* ---- helpers ---- */

typedef struct Result {
        bool done;
        SbxStatus code;
        char message[256];
        Sbx__Test__EchoReply *reply;
        unsigned messages;
        uint64_t bytes;
        unsigned last_index;
} Result;

static void unary_cb(const SbxRpcStatus *st, ProtobufCMessage *resp, void *userdata)
{
        Result *r = userdata;
        r->done = true;
        r->code = st->code;
        snprintf(r->message, sizeof(r->message), "%s", st->message);
        r->reply = (Sbx__Test__EchoReply *)resp;
}

static Result call_unary(SbxRpcChannel *ch, const Sbx__Test__EchoRequest *req, usec_t timeout)
{
        Result r = { 0 };
        SbxRpcCallOptions o = { .timeout = timeout };
        cr_assert_eq(sbx_rpc_unary(ch, &sbx_test_echo_unary, &req->base, &o, unary_cb, &r, NULL), 0);
        cr_assert_eq(sbx_test_run_until(&env.loop, &r.done, 20 * USEC_PER_SEC), 0,
                     "unary call never completed");
        return r;
}

static void result_free(Result *r)
{
        if (r->reply)
                protobuf_c_message_free_unpacked(&r->reply->base, NULL);
        r->reply = NULL;
}

static void stream_message(SbxRpcClientCall *c, ProtobufCMessage *m, void *userdata)
{
        Result *r = userdata;
        Sbx__Test__EchoReply *reply = (Sbx__Test__EchoReply *)m;
        r->messages++;
        r->bytes += reply->payload.len;
        r->last_index = reply->index;
        protobuf_c_message_free_unpacked(m, NULL);
}

static void stream_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        Result *r = userdata;
        r->done = true;
        r->code = st->code;
        snprintf(r->message, sizeof(r->message), "%s", st->message);
}

static const SbxRpcClientCallbacks stream_cbs = { .on_message = stream_message, .on_status = stream_status };

/* ---- tests ---- */

TestSuite(rpc, .init = setup_plain, .fini = teardown, .timeout = 60);

Test(rpc, methods_match_service_descriptor)
{
        const SbxRpcMethod *m[] = { &sbx_test_echo_unary, &sbx_test_echo_server_stream,
                                    &sbx_test_echo_client_stream, &sbx_test_echo_bidi };
        const char *bad = NULL;
        cr_assert_eq(sbx_rpc_methods_check(&sbx__test__echo__descriptor, m, 4, &bad), 0);
        cr_assert_eq(sbx_rpc_methods_check(&sbx__test__echo__descriptor, m, 3, &bad), -EINVAL);
}

Test(rpc, unary_round_trip)
{
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        req.text = (char *)"hello";
        Result r = call_unary(env.ch, &req, 5 * USEC_PER_SEC);
        cr_assert_eq(r.code, SBX_STATUS_OK, "%s", r.message);
        cr_assert_str_eq(r.reply->text, "hello");
        result_free(&r);
}

Test(rpc, error_status_carries_message)
{
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        req.text = (char *)"sandbox is not running";
        req.fail_status = SBX_STATUS_FAILED_PRECONDITION;
        Result r = call_unary(env.ch, &req, 5 * USEC_PER_SEC);
        cr_assert_eq(r.code, SBX_STATUS_FAILED_PRECONDITION);
        cr_assert_str_eq(r.message, "sandbox is not running");
        cr_assert_null(r.reply);
}

Test(rpc, server_stream)
{
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        Result r = { 0 };
        req.count = 500;
        req.reply_size = 1000;
        cr_assert_eq(sbx_rpc_call_start(env.ch, &sbx_test_echo_server_stream, &req.base, NULL, &stream_cbs,
                                        &r, NULL),
                     0);
        cr_assert_eq(sbx_test_run_until(&env.loop, &r.done, 10 * USEC_PER_SEC), 0);
        cr_assert_eq(r.code, SBX_STATUS_OK, "%s", r.message);
        cr_assert_eq(r.messages, 500);
        cr_assert_eq(r.last_index, 499);
        cr_assert_eq(r.bytes, 500 * 1000);
}

Test(rpc, server_stream_error_after_messages)
{
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        Result r = { 0 };
        req.count = 3;
        req.fail_status = SBX_STATUS_ABORTED;
        req.text = (char *)"stopped";
        cr_assert_eq(sbx_rpc_call_start(env.ch, &sbx_test_echo_server_stream, &req.base, NULL, &stream_cbs,
                                        &r, NULL),
                     0);
        cr_assert_eq(sbx_test_run_until(&env.loop, &r.done, 10 * USEC_PER_SEC), 0);
        cr_assert_eq(r.messages, 3, "the messages before the error are delivered first");
        cr_assert_eq(r.code, SBX_STATUS_ABORTED);
        cr_assert_str_eq(r.message, "stopped");
}

Test(rpc, client_stream)
{
        SbxRpcClientCall *c = NULL;
        Result r = { 0 };
        uint8_t buf[4096] = { 0 };

        cr_assert_eq(
                sbx_rpc_call_start(env.ch, &sbx_test_echo_client_stream, NULL, NULL, &stream_cbs, &r, &c),
                0);
        for (int i = 0; i < 50; i++) {
                Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
                req.payload.data = buf;
                req.payload.len = sizeof(buf);
                cr_assert_eq(sbx_rpc_client_call_send(c, &req.base), 0);
        }
        cr_assert_eq(sbx_rpc_client_call_close_send(c), 0);
        cr_assert_eq(
                sbx_rpc_client_call_send(c, &(Sbx__Test__EchoRequest)SBX__TEST__ECHO_REQUEST__INIT.base),
                -EPIPE);
        cr_assert_eq(sbx_test_run_until(&env.loop, &r.done, 10 * USEC_PER_SEC), 0);
        cr_assert_eq(r.code, SBX_STATUS_OK, "%s", r.message);
        cr_assert_eq(r.messages, 1);
        cr_assert_eq(r.last_index, 50);
        sbx_rpc_client_call_unref(c);
}

Test(rpc, bidi)
{
        SbxRpcClientCall *c = NULL;
        Result r = { 0 };

        cr_assert_eq(sbx_rpc_call_start(env.ch, &sbx_test_echo_bidi, NULL, NULL, &stream_cbs, &r, &c), 0);
        for (int i = 0; i < 10; i++) {
                Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
                req.text = (char *)"ping";
                cr_assert_eq(sbx_rpc_client_call_send(c, &req.base), 0);
                /* Interleave: wait for each echo before sending the next. */
                usec_t deadline = sbx_now_monotonic() + 5 * USEC_PER_SEC;
                while (r.messages < (unsigned)i + 1 && sbx_now_monotonic() < deadline)
                        sbx_rpc_run_once(&env.loop);
                cr_assert_eq(r.messages, (unsigned)i + 1);
        }
        cr_assert_eq(sbx_rpc_client_call_close_send(c), 0);
        cr_assert_eq(sbx_test_run_until(&env.loop, &r.done, 10 * USEC_PER_SEC), 0);
        cr_assert_eq(r.code, SBX_STATUS_OK, "%s", r.message);
        cr_assert_eq(r.last_index, 9);
        sbx_rpc_client_call_unref(c);
}

Test(rpc, slow_handler_hits_deadline)
{
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        req.delay_ms = 3000;
        usec_t t0 = sbx_now_monotonic();
        Result r = call_unary(env.ch, &req, 200 * USEC_PER_MSEC);
        usec_t took = sbx_now_monotonic() - t0;
        cr_assert_eq(r.code, SBX_STATUS_DEADLINE_EXCEEDED, "%s: %s", sbx_status_name(r.code), r.message);
        cr_assert_lt(took, 2 * USEC_PER_SEC, "deadline reported only after %llu us",
                     (unsigned long long)took);
        /* The handler learns it too. */
        usec_t deadline = sbx_now_monotonic() + 3 * USEC_PER_SEC;
        while (env.stats.cancelled < 1 && sbx_now_monotonic() < deadline)
                sbx_test_run_for(&env.loop, 20 * USEC_PER_MSEC);
        cr_assert_eq(env.stats.cancelled, 1);
}

Test(rpc, client_cancel_reaches_handler)
{
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        SbxRpcClientCall *c = NULL;
        Result r = { 0 };

        req.delay_ms = 10000;
        req.count = 1;
        cr_assert_eq(sbx_rpc_call_start(env.ch, &sbx_test_echo_server_stream, &req.base, NULL, &stream_cbs,
                                        &r, &c),
                     0);
        usec_t deadline = sbx_now_monotonic() + 5 * USEC_PER_SEC;
        while (env.stats.started < 1 && sbx_now_monotonic() < deadline)
                sbx_test_run_for(&env.loop, 10 * USEC_PER_MSEC);
        cr_assert_eq(env.stats.started, 1, "handler never started");
        sbx_rpc_client_call_cancel(c);
        cr_assert_eq(sbx_test_run_until(&env.loop, &r.done, 5 * USEC_PER_SEC), 0);
        cr_assert_eq(r.code, SBX_STATUS_CANCELLED);
        deadline = sbx_now_monotonic() + 5 * USEC_PER_SEC;
        while (env.stats.cancelled < 1 && sbx_now_monotonic() < deadline)
                sbx_test_run_for(&env.loop, 10 * USEC_PER_MSEC);
        cr_assert_eq(env.stats.cancelled, 1, "the handler did not see the cancellation");
        sbx_rpc_client_call_unref(c);
}

Test(rpc, unknown_method_is_unimplemented)
{
        static const SbxRpcMethod nope =
                SBX_RPC_METHOD("/sbx.test.Echo/Nope", UNARY, sbx__test__echo_request__descriptor,
                               sbx__test__echo_reply__descriptor);
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        Result r = { 0 };
        SbxRpcCallOptions o = { .timeout = 30 * USEC_PER_SEC };
        usec_t t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_rpc_unary(env.ch, &nope, &req.base, &o, unary_cb, &r, NULL), 0);
        cr_assert_eq(sbx_test_run_until(&env.loop, &r.done, 10 * USEC_PER_SEC), 0);
        cr_assert_eq(r.code, SBX_STATUS_UNIMPLEMENTED);
        cr_assert(strstr(r.message, "/sbx.test.Echo/Nope"), "message: %s", r.message);
        cr_assert_lt(sbx_now_monotonic() - t0, 2 * USEC_PER_SEC, "answered at once, not at the deadline");
}

Test(rpc, connection_refused_is_unavailable)
{
        SbxRpcChannel *ch = NULL;
        char target[64];
        snprintf(target, sizeof(target), "127.0.0.1:%d", sbx_test_free_port());
        cr_assert_eq(sbx_rpc_channel_new(env.rpc, target, NULL, &ch), 0);
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        Result r = call_unary(ch, &req, 5 * USEC_PER_SEC);
        cr_assert_eq(r.code, SBX_STATUS_UNAVAILABLE, "%s", sbx_status_name(r.code));
        sbx_rpc_channel_free(ch);
}

Test(rpc, connection_loss_mid_stream_is_unavailable)
{
        char bin[4200], port_s[16];
        int port = sbx_test_free_port();
        SbxRpcChannel *ch = NULL;
        SbxRpcClientCall *c = NULL;
        Result r = { 0 };

        snprintf(bin, sizeof(bin), "%s/build/tests/programs/echo-server", sbx_test_srcdir());
        if (getenv("SBX_BUILD_DIR"))
                snprintf(bin, sizeof(bin), "%s/tests/programs/echo-server", getenv("SBX_BUILD_DIR"));
        snprintf(port_s, sizeof(port_s), "%d", port);
        pid_t pid = sbx_test_spawn((char *const[]){ bin, (char *)"--port", port_s, NULL }, NULL);
        cr_assert_gt(pid, 0);
        cr_assert_eq(sbx_test_wait_port(port, 10 * USEC_PER_SEC), 0, "echo-server (%s) did not start", bin);

        char target[64];
        snprintf(target, sizeof(target), "127.0.0.1:%d", port);
        cr_assert_eq(sbx_rpc_channel_new(env.rpc, target, NULL, &ch), 0);
        cr_assert_eq(sbx_rpc_call_start(ch, &sbx_test_echo_bidi, NULL, NULL, &stream_cbs, &r, &c), 0);
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        cr_assert_eq(sbx_rpc_client_call_send(c, &req.base), 0);
        usec_t deadline = sbx_now_monotonic() + 5 * USEC_PER_SEC;
        while (r.messages < 1 && sbx_now_monotonic() < deadline)
                sbx_rpc_run_once(&env.loop);
        cr_assert_eq(r.messages, 1);

        sbx_test_stop(pid, SIGKILL, USEC_PER_SEC);
        cr_assert_eq(sbx_test_run_until(&env.loop, &r.done, 10 * USEC_PER_SEC), 0);
        cr_assert_eq(r.code, SBX_STATUS_UNAVAILABLE, "%s: %s", sbx_status_name(r.code), r.message);
        sbx_rpc_client_call_unref(c);
        sbx_rpc_channel_free(ch);
}

Test(rpc, bearer_token_in_plain_metadata)
{
        SbxRpcChannel *ch = NULL;
        SbxRpcChannelOptions o = { .bearer_token = "sbx_tok_123" };
        cr_assert_eq(sbx_rpc_channel_new(env.rpc, env.target, &o, &ch), 0);
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        Result r = call_unary(ch, &req, 5 * USEC_PER_SEC);
        cr_assert_eq(r.code, SBX_STATUS_OK, "%s", r.message);
        cr_assert_str_eq(r.reply->token, "sbx_tok_123");
        cr_assert_str_eq(r.reply->peer_identity, "", "no identity on plaintext");
        result_free(&r);
        sbx_rpc_channel_free(ch);
}

Test(rpc, concurrent_1000_calls)
{
        enum { N = 1000 };
        static Result results[N];
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        SbxRpcCallOptions o = { .timeout = 60 * USEC_PER_SEC };

        req.text = (char *)"many";
        memset(results, 0, sizeof(results));
        for (int i = 0; i < N; i++)
                cr_assert_eq(sbx_rpc_unary(env.ch, &sbx_test_echo_unary, &req.base, &o, unary_cb,
                                           &results[i], NULL),
                             0);
        usec_t deadline = sbx_now_monotonic() + 60 * USEC_PER_SEC;
        unsigned done = 0;
        while (sbx_now_monotonic() < deadline) {
                done = 0;
                for (int i = 0; i < N; i++)
                        done += results[i].done;
                if (done == N)
                        break;
                sbx_rpc_run_once(&env.loop);
        }
        cr_assert_eq(done, N);
        for (int i = 0; i < N; i++) {
                cr_assert_eq(results[i].code, SBX_STATUS_OK, "call %d: %s", i, results[i].message);
                cr_assert_str_eq(results[i].reply->text, "many");
                result_free(&results[i]);
        }
        cr_assert_eq(env.stats.completed, N);
}

Test(rpc, shutdown_with_calls_in_flight)
{
        enum { N = 20 };
        Result results[N];
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;

        memset(results, 0, sizeof(results));
        req.delay_ms = 10000;
        for (int i = 0; i < N; i++)
                cr_assert_eq(sbx_rpc_unary(env.ch, &sbx_test_echo_unary, &req.base, NULL, unary_cb,
                                           &results[i], NULL),
                             0);
        usec_t deadline = sbx_now_monotonic() + 5 * USEC_PER_SEC;
        while (env.stats.started < N && sbx_now_monotonic() < deadline)
                sbx_test_run_for(&env.loop, 10 * USEC_PER_MSEC);
        cr_assert_eq(env.stats.started, N);

        /* teardown() shuts the runtime down with the calls still running: every callback must run,
         * every handler must see on_done, and ASan must find nothing. */
        shutdown_done = false;
        sbx_rpc_shutdown(env.rpc, 100 * USEC_PER_MSEC, on_shutdown, NULL);
        cr_assert_eq(sbx_test_run_until(&env.loop, &shutdown_done, 10 * USEC_PER_SEC), 0);
        for (int i = 0; i < N; i++) {
                cr_assert(results[i].done, "call %d never completed", i);
                cr_assert_neq(results[i].code, SBX_STATUS_OK);
        }
        cr_assert_eq(env.stats.cancelled, N);
        env.ch = NULL; /* freed by the shutdown */
        env.rpc = NULL;
        cr_assert_eq(sbx_loop_close_all(&env.loop), 0);
}

/* ---- back-pressure: pausing reading ---- */

/* A reader that pauses every `every` messages from inside its callback and resumes from a timer,
 * counting any message that arrives while it is paused or out of order. */
typedef struct Pauser {
        Result r;
        unsigned every;
        bool paused;
        unsigned while_paused;
        unsigned out_of_order;
        unsigned pauses;
        uv_timer_t resume;
        SbxRpcClientCall *client;
        SbxRpcServerCall *server;
} Pauser;

static void pauser_resume(uv_timer_t *t)
{
        Pauser *p = t->data;
        p->paused = false;
        if (p->client)
                sbx_rpc_client_call_pause_reading(p->client, false);
        if (p->server)
                sbx_rpc_server_call_pause_reading(p->server, false);
}

/* Counts one message; pauses after every `every`-th. */
static void pauser_count(Pauser *p, unsigned index)
{
        if (p->paused)
                p->while_paused++;
        if (index != p->r.messages)
                p->out_of_order++;
        p->r.messages++;
        if (p->r.messages % p->every != 0)
                return;
        p->paused = true;
        p->pauses++;
        if (p->client)
                sbx_rpc_client_call_pause_reading(p->client, true);
        if (p->server)
                sbx_rpc_server_call_pause_reading(p->server, true);
        /* Long enough for the peer to have sent (and our side to have read ahead) more. */
        uv_timer_start(&p->resume, pauser_resume, 20, 0);
}

static void pauser_message(SbxRpcClientCall *c, ProtobufCMessage *m, void *userdata)
{
        Pauser *p = userdata;
        p->client = c;
        pauser_count(p, ((Sbx__Test__EchoReply *)m)->index);
        protobuf_c_message_free_unpacked(m, NULL);
}

static void pauser_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        stream_status(c, st, &((Pauser *)userdata)->r);
}

Test(rpc, client_pause_reading_holds_messages_until_resumed)
{
        static const SbxRpcClientCallbacks cbs = { .on_message = pauser_message,
                                                   .on_status = pauser_status };
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        Pauser p = { .every = 7 };

        uv_timer_init(&env.loop, &p.resume);
        p.resume.data = &p;
        req.count = 100;
        req.reply_size = 512;
        cr_assert_eq(
                sbx_rpc_call_start(env.ch, &sbx_test_echo_server_stream, &req.base, NULL, &cbs, &p, NULL),
                0);
        cr_assert_eq(sbx_test_run_until(&env.loop, &p.r.done, 20 * USEC_PER_SEC), 0);
        cr_assert_eq(p.r.code, SBX_STATUS_OK, "%s", p.r.message);
        cr_assert_eq(p.r.messages, 100, "every message arrives, and the status only after the last");
        cr_assert_eq(p.out_of_order, 0);
        cr_assert_eq(p.while_paused, 0, "%u messages were delivered while reading was paused",
                     p.while_paused);
        cr_assert_geq(p.pauses, 14);
        uv_close((uv_handle_t *)&p.resume, NULL);
        uv_run(&env.loop, UV_RUN_NOWAIT); /* the timer lives on this stack frame */
}

/* A client-stream handler that pauses reading every few messages (the Echo service never does). */
static void pausing_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        ((Pauser *)userdata)->server = call;
}

static void pausing_message(SbxRpcServerCall *call, ProtobufCMessage *m, void *userdata)
{
        Pauser *p = userdata;
        pauser_count(p, (unsigned)((Sbx__Test__EchoRequest *)m)->count);
        protobuf_c_message_free_unpacked(m, NULL);
}

static void pausing_half_close(SbxRpcServerCall *call, void *userdata)
{
        Pauser *p = userdata;
        Sbx__Test__EchoReply reply = SBX__TEST__ECHO_REPLY__INIT;
        reply.index = p->r.messages;
        sbx_rpc_server_call_reply(call, &reply.base);
}

Test(rpc, server_pause_reading_holds_messages_until_resumed)
{
        SbxRpcServer *server = NULL;
        SbxRpcChannel *ch = NULL;
        SbxRpcClientCall *c = NULL;
        Pauser p = { .every = 5 };
        Result r = { 0 };
        char target[64];
        int port;

        uv_timer_init(&env.loop, &p.resume);
        p.resume.data = &p;
        SbxRpcHandler h = { .method = &sbx_test_echo_client_stream,
                            .on_start = pausing_start,
                            .on_message = pausing_message,
                            .on_half_close = pausing_half_close,
                            .userdata = &p };
        cr_assert_eq(sbx_rpc_server_new(env.rpc, NULL, &server), 0);
        cr_assert_eq(sbx_rpc_server_add_handler(server, &h), 0);
        cr_assert_eq(sbx_rpc_server_listen(server, "127.0.0.1:0", NULL, &port), 0);
        cr_assert_eq(sbx_rpc_server_start(server), 0);
        snprintf(target, sizeof(target), "127.0.0.1:%d", port);
        cr_assert_eq(sbx_rpc_channel_new(env.rpc, target, NULL, &ch), 0);

        cr_assert_eq(sbx_rpc_call_start(ch, &sbx_test_echo_client_stream, NULL, NULL, &stream_cbs, &r, &c),
                     0);
        for (unsigned i = 0; i < 60; i++) {
                Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
                req.count = i; /* the position, for the order check */
                cr_assert_eq(sbx_rpc_client_call_send(c, &req.base), 0);
        }
        cr_assert_eq(sbx_rpc_client_call_close_send(c), 0);
        cr_assert_eq(sbx_test_run_until(&env.loop, &r.done, 20 * USEC_PER_SEC), 0);
        cr_assert_eq(r.code, SBX_STATUS_OK, "%s", r.message);
        cr_assert_eq(r.last_index, 60, "the handler saw every message before the half-close");
        cr_assert_eq(p.out_of_order, 0);
        cr_assert_eq(p.while_paused, 0, "%u messages were delivered while reading was paused",
                     p.while_paused);
        cr_assert_geq(p.pauses, 12);
        sbx_rpc_client_call_unref(c);
        sbx_rpc_channel_free(ch);
        uv_close((uv_handle_t *)&p.resume, NULL);
        uv_run(&env.loop, UV_RUN_NOWAIT); /* the timer lives on this stack frame */
        /* teardown's shutdown stops the extra server too. */
}

/* ---- limits ---- */

static void setup_small_limit(void)
{
        setup();
        SbxRpcServerOptions so = { .max_message_size = 64 * 1024 };
        env_start_server(&so, NULL);
        SbxRpcChannelOptions co = { .max_message_size = 8 * 1024 * 1024 };
        cr_assert_eq(sbx_rpc_channel_new(env.rpc, env.target, &co, &env.ch), 0);
}

Test(rpc_limits, oversized_message_is_resource_exhausted, .init = setup_small_limit, .fini = teardown,
     .timeout = 30)
{
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        static uint8_t big[256 * 1024];
        req.payload.data = big;
        req.payload.len = sizeof(big);
        Result r = call_unary(env.ch, &req, 5 * USEC_PER_SEC);
        cr_assert_eq(r.code, SBX_STATUS_RESOURCE_EXHAUSTED, "%s: %s", sbx_status_name(r.code), r.message);
        cr_assert_eq(env.stats.started, 0, "the handler must not see an oversized request");

        /* A message within the limit still works on the same channel. */
        req.payload.len = 1024;
        r = call_unary(env.ch, &req, 5 * USEC_PER_SEC);
        cr_assert_eq(r.code, SBX_STATUS_OK, "%s", r.message);
        result_free(&r);
}

Test(rpc_limits, client_refuses_to_send_oversized, .init = setup_plain, .fini = teardown, .timeout = 30)
{
        SbxRpcChannel *ch = NULL;
        SbxRpcChannelOptions co = { .max_message_size = 1024 };
        static uint8_t big[4096];
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        Result r = { 0 };

        cr_assert_eq(sbx_rpc_channel_new(env.rpc, env.target, &co, &ch), 0);
        req.payload.data = big;
        req.payload.len = sizeof(big);
        cr_assert_eq(sbx_rpc_unary(ch, &sbx_test_echo_unary, &req.base, NULL, unary_cb, &r, NULL),
                     -EMSGSIZE);
        sbx_rpc_channel_free(ch);
}

/* ---- TLS ---- */

static char *cert(const char *name)
{
        char *p = NULL;
        cr_assert_geq(asprintf(&p, "%s/%s", env.certs, name), 0);
        return p;
}

static SbxRpcTls server_tls;

static void setup_mtls(void)
{
        setup();
        env.certs = sbx_test_make_certs();
        cr_assert_not_null(env.certs);
        server_tls = (SbxRpcTls){ .cert_file = cert("server.pem"),
                                  .key_file = cert("server.key"),
                                  .ca_file = cert("ca.pem") };
        env_start_server(NULL, &server_tls);
}

static void teardown_mtls(void)
{
        free((char *)server_tls.cert_file);
        free((char *)server_tls.key_file);
        free((char *)server_tls.ca_file);
        teardown();
}

static Result tls_call(const char *ca, const char *client, const char *server_name, const char *token)
{
        _cleanup_free_ char *ca_p = cert(ca), *cert_p = NULL, *key_p = NULL;
        char target[64];
        SbxRpcChannel *ch = NULL;

        if (client) {
                char n[64];
                snprintf(n, sizeof(n), "%s.pem", client);
                cert_p = cert(n);
                snprintf(n, sizeof(n), "%s.key", client);
                key_p = cert(n);
        }
        SbxRpcTls tls = {
                .ca_file = ca_p, .cert_file = cert_p, .key_file = key_p, .server_name = server_name
        };
        SbxRpcChannelOptions o = { .tls = &tls, .bearer_token = token };
        snprintf(target, sizeof(target), "localhost:%d", env.port);
        cr_assert_eq(sbx_rpc_channel_new(env.rpc, target, &o, &ch), 0);
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        req.text = (char *)"tls";
        Result r = call_unary(ch, &req, 5 * USEC_PER_SEC);
        sbx_rpc_channel_free(ch);
        return r;
}

TestSuite(rpc_tls, .init = setup_mtls, .fini = teardown_mtls, .timeout = 60);

Test(rpc_tls, trusted_client_accepted_with_identity_and_token)
{
        Result r = tls_call("ca.pem", "client", NULL, "tok-over-tls");
        cr_assert_eq(r.code, SBX_STATUS_OK, "%s: %s", sbx_status_name(r.code), r.message);
        cr_assert_str_eq(r.reply->peer_identity, "sbx-test-client");
        cr_assert_str_eq(r.reply->token, "tok-over-tls", "call credentials carry the token over TLS");
        result_free(&r);
}

Test(rpc_tls, server_name_override_accepted)
{
        Result r = tls_call("ca.pem", "client", "sbx-test-server", NULL);
        cr_assert_eq(r.code, SBX_STATUS_OK, "%s: %s", sbx_status_name(r.code), r.message);
        result_free(&r);
}

Test(rpc_tls, untrusted_client_certificate_refused)
{
        Result r = tls_call("ca.pem", "rogue-client", NULL, NULL);
        cr_assert_eq(r.code, SBX_STATUS_UNAVAILABLE, "%s: %s", sbx_status_name(r.code), r.message);
        cr_assert_eq(env.stats.started, 0);
}

Test(rpc_tls, missing_client_certificate_refused)
{
        Result r = tls_call("ca.pem", NULL, NULL, NULL);
        cr_assert_eq(r.code, SBX_STATUS_UNAVAILABLE, "%s: %s", sbx_status_name(r.code), r.message);
        cr_assert_eq(env.stats.started, 0);
}

Test(rpc_tls, wrong_server_name_refused)
{
        Result r = tls_call("ca.pem", "client", "not-the-server.example", NULL);
        cr_assert_eq(r.code, SBX_STATUS_UNAVAILABLE, "%s: %s", sbx_status_name(r.code), r.message);
        cr_assert_eq(env.stats.started, 0);
}

Test(rpc_tls, untrusted_server_refused)
{
        Result r = tls_call("rogue-ca.pem", "client", NULL, NULL);
        cr_assert_eq(r.code, SBX_STATUS_UNAVAILABLE, "%s: %s", sbx_status_name(r.code), r.message);
        cr_assert_eq(env.stats.started, 0);
}

Test(rpc_tls, plaintext_client_refused)
{
        SbxRpcChannel *ch = NULL;
        char target[64];
        snprintf(target, sizeof(target), "127.0.0.1:%d", env.port);
        cr_assert_eq(sbx_rpc_channel_new(env.rpc, target, NULL, &ch), 0);
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        Result r = call_unary(ch, &req, 5 * USEC_PER_SEC);
        cr_assert_eq(r.code, SBX_STATUS_UNAVAILABLE, "%s: %s", sbx_status_name(r.code), r.message);
        sbx_rpc_channel_free(ch);
}
