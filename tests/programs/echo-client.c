/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A client of the sbx.test.Echo service on common/rpc, for the grpc-js interop suite: it runs one
 * check per call kind against any Echo server (ours or grpc-js) and reports each on one line.
 *
 *   echo-client --target HOST:PORT
 *
 * Prints "ok <check>" or "FAIL <check>: <why>" per check; exits 0 only when every check passed and
 * the runtime shut down cleanly, 1 otherwise, 2 on a usage error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/log/log.h"
#include "common/loop/loop.h"
#include "common/rpc/rpc.h"
#include "tests/lib/echo-service.h"
#include "tests/lib/fixture.h"

/* How long any one call may take before the check gives up on it. */
#define CALL_TIMEOUT (10 * USEC_PER_SEC)

typedef struct Client {
        uv_loop_t loop;
        SbxRpc *rpc;
        SbxRpcChannel *ch;
        /* The same target with a bearer token, which must reach the server as metadata. */
        SbxRpcChannel *auth_ch;
} Client;

/* What one call delivered. */
typedef struct Outcome {
        bool done;
        SbxStatus code;
        char *message;
        /* The last reply (unary: the reply); owned. */
        Sbx__Test__EchoReply *reply;
        unsigned messages;
        uint64_t payload_bytes;
        /* Set by every streamed reply and by the end of the call; cleared by whoever waits for the
         * next of those. */
        bool progress;
        /* The first reply whose index was not its position in the stream, as position and index. */
        bool misordered;
        unsigned misordered_at, misordered_index;
        /* Whether each streamed reply echoed the expected text. */
        const char *expect_text;
        bool text_mismatch;
} Outcome;

static void outcome_done(Outcome *o)
{
        free(o->message);
        o->message = NULL;
        if (o->reply)
                protobuf_c_message_free_unpacked(&o->reply->base, NULL);
        o->reply = NULL;
}

static void outcome_status(Outcome *o, const SbxRpcStatus *st)
{
        o->done = true;
        o->code = st->code;
        free(o->message);
        o->message = strdup(st->message ? st->message : "");
}

static void on_unary(const SbxRpcStatus *st, ProtobufCMessage *resp, void *userdata)
{
        Outcome *o = userdata;

        outcome_status(o, st);
        o->reply = (Sbx__Test__EchoReply *)resp;
}

static void on_stream_message(SbxRpcClientCall *c, ProtobufCMessage *m, void *userdata)
{
        Outcome *o = userdata;
        Sbx__Test__EchoReply *reply = (Sbx__Test__EchoReply *)m;

        if (reply->index != o->messages && !o->misordered) {
                o->misordered = true;
                o->misordered_at = o->messages;
                o->misordered_index = reply->index;
        }
        if (o->expect_text && strcmp(reply->text ? reply->text : "", o->expect_text) != 0)
                o->text_mismatch = true;
        o->messages++;
        o->payload_bytes += reply->payload.len;
        o->progress = true;
        if (o->reply)
                protobuf_c_message_free_unpacked(&o->reply->base, NULL);
        o->reply = reply;
}

static void on_stream_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        Outcome *o = userdata;

        outcome_status(o, st);
        o->progress = true;
}

static const SbxRpcClientCallbacks stream_cbs = { .on_message = on_stream_message,
                                                  .on_status = on_stream_status };

/* Sets *ret_why (replacing an earlier reason) to the formatted reason and returns -EPROTO. */
_printf_(2, 3) static int failf(char **ret_why, const char *fmt, ...)
{
        va_list ap;

        free(*ret_why);
        va_start(ap, fmt);
        if (vasprintf(ret_why, fmt, ap) < 0)
                *ret_why = NULL;
        va_end(ap);
        return -EPROTO;
}

/* Runs the loop until the call finished. On a timeout the call is cancelled and its callback
 * awaited, so nothing refers to `o` afterwards. */
static int wait_call(Client *cl, SbxRpcClientCall *call, Outcome *o, char **ret_why)
{
        if (sbx_test_run_until(&cl->loop, &o->done, CALL_TIMEOUT) == 0)
                return 0;
        sbx_rpc_client_call_cancel(call);
        (void)sbx_test_run_until(&cl->loop, &o->done, CALL_TIMEOUT);
        return failf(ret_why, "no status after %llu s", (unsigned long long)(CALL_TIMEOUT / USEC_PER_SEC));
}

/* Fails unless the call ended with `code`. */
static int expect_code(const Outcome *o, SbxStatus code, char **ret_why)
{
        if (o->code == code)
                return 0;
        if (o->code == SBX_STATUS_OK)
                return failf(ret_why, "succeeded, expected %s", sbx_status_name(code));
        return failf(ret_why, "status %s: %s, expected %s", sbx_status_name(o->code), o->message ?: "",
                     sbx_status_name(code));
}

static int expect_ok(const Outcome *o, char **ret_why)
{
        return expect_code(o, SBX_STATUS_OK, ret_why);
}

/* ---- checks ---- */

static int call_unary(Client *cl, SbxRpcChannel *ch, const Sbx__Test__EchoRequest *req, usec_t timeout,
                      Outcome *o, char **ret_why)
{
        SbxRpcCallOptions opts = { .timeout = timeout };
        SbxRpcClientCall *call = NULL;
        int r;

        r = sbx_rpc_unary(ch, &sbx_test_echo_unary, &req->base, &opts, on_unary, o, &call);
        if (r < 0)
                return failf(ret_why, "sbx_rpc_unary: %s", sbx_error_message(r));
        r = wait_call(cl, call, o, ret_why);
        sbx_rpc_client_call_unref(call);
        return r;
}

static int check_unary(Client *cl, char **ret_why)
{
        _cleanup_(outcome_done) Outcome o = { 0 };
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        uint8_t payload[64];
        int r;

        for (size_t i = 0; i < sizeof(payload); i++)
                payload[i] = (uint8_t)(i * 7 + 1);
        req.text = (char *)"hello from C";
        req.payload.data = payload;
        req.payload.len = sizeof(payload);
        r = call_unary(cl, cl->ch, &req, CALL_TIMEOUT, &o, ret_why);
        if (r < 0)
                return r;
        if ((r = expect_ok(&o, ret_why)) < 0)
                return r;
        if (!o.reply)
                return failf(ret_why, "OK without a reply");
        if (strcmp(o.reply->text, "hello from C") != 0)
                return failf(ret_why, "text \"%s\", expected \"hello from C\"", o.reply->text);
        if (o.reply->payload.len != sizeof(payload) ||
            memcmp(o.reply->payload.data, payload, sizeof(payload)) != 0)
                return failf(ret_why, "payload of %zu bytes differs from the %zu sent", o.reply->payload.len,
                             sizeof(payload));
        if (o.reply->index != 0 || strcmp(o.reply->token, "") != 0)
                return failf(ret_why, "index %u token \"%s\", expected 0 and \"\"", o.reply->index,
                             o.reply->token);
        return 0;
}

static int check_server_stream(Client *cl, char **ret_why)
{
        _cleanup_(outcome_done) Outcome o = { .expect_text = "stream" };
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        SbxRpcClientCall *call = NULL;
        int r;

        req.text = (char *)"stream";
        req.count = 50;
        r = sbx_rpc_call_start(cl->ch, &sbx_test_echo_server_stream, &req.base, NULL, &stream_cbs, &o,
                               &call);
        if (r < 0)
                return failf(ret_why, "sbx_rpc_call_start: %s", sbx_error_message(r));
        r = wait_call(cl, call, &o, ret_why);
        sbx_rpc_client_call_unref(call);
        if (r < 0 || (r = expect_ok(&o, ret_why)) < 0)
                return r;
        if (o.messages != 50)
                return failf(ret_why, "%u messages, expected 50", o.messages);
        if (o.misordered)
                return failf(ret_why, "message %u has index %u", o.misordered_at, o.misordered_index);
        if (o.text_mismatch)
                return failf(ret_why, "a reply did not echo the text");
        return 0;
}

static int check_client_stream(Client *cl, char **ret_why)
{
        _cleanup_(outcome_done) Outcome o = { 0 };
        SbxRpcClientCall *call = NULL;
        uint8_t payload[1000];
        int r;

        memset(payload, 'x', sizeof(payload));
        r = sbx_rpc_call_start(cl->ch, &sbx_test_echo_client_stream, NULL, NULL, &stream_cbs, &o, &call);
        if (r < 0)
                return failf(ret_why, "sbx_rpc_call_start: %s", sbx_error_message(r));
        for (int i = 0; i < 20 && r >= 0; i++) {
                Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
                req.payload.data = payload;
                req.payload.len = sizeof(payload);
                r = sbx_rpc_client_call_send(call, &req.base);
        }
        if (r >= 0)
                r = sbx_rpc_client_call_close_send(call);
        if (r < 0) {
                sbx_rpc_client_call_cancel(call);
                (void)sbx_test_run_until(&cl->loop, &o.done, CALL_TIMEOUT);
                sbx_rpc_client_call_unref(call);
                return failf(ret_why, "sending: %s", sbx_error_message(r));
        }
        r = wait_call(cl, call, &o, ret_why);
        sbx_rpc_client_call_unref(call);
        if (r < 0 || (r = expect_ok(&o, ret_why)) < 0)
                return r;
        if (o.messages != 1 || !o.reply)
                return failf(ret_why, "%u replies, expected 1", o.messages);
        if (strcmp(o.reply->text, "done") != 0 || o.reply->index != 20 || o.reply->bytes != 20 * 1000)
                return failf(ret_why, "reply text \"%s\" index %u bytes %llu, expected \"done\" 20 20000",
                             o.reply->text, o.reply->index, (unsigned long long)o.reply->bytes);
        return 0;
}

static int check_bidi(Client *cl, char **ret_why)
{
        _cleanup_(outcome_done) Outcome o = { .expect_text = "ping" };
        SbxRpcClientCall *call = NULL;
        int r;

        r = sbx_rpc_call_start(cl->ch, &sbx_test_echo_bidi, NULL, NULL, &stream_cbs, &o, &call);
        if (r < 0)
                return failf(ret_why, "sbx_rpc_call_start: %s", sbx_error_message(r));
        /* Interleaved: each echo must arrive before the next request is sent. */
        for (unsigned i = 0; i < 10; i++) {
                Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
                req.text = (char *)"ping";
                o.progress = false;
                r = sbx_rpc_client_call_send(call, &req.base);
                if (r < 0) {
                        r = failf(ret_why, "send %u: %s", i, sbx_error_message(r));
                        break;
                }
                (void)sbx_test_run_until(&cl->loop, &o.progress, CALL_TIMEOUT);
                if (o.done) {
                        r = failf(ret_why, "call ended after %u echoes: %s: %s", o.messages,
                                  sbx_status_name(o.code), o.message ?: "");
                        break;
                }
                if (o.messages != i + 1) {
                        r = failf(ret_why, "%u echoes after %u requests", o.messages, i + 1);
                        break;
                }
        }
        if (r < 0) {
                sbx_rpc_client_call_cancel(call);
                (void)sbx_test_run_until(&cl->loop, &o.done, CALL_TIMEOUT);
                sbx_rpc_client_call_unref(call);
                return r;
        }
        r = sbx_rpc_client_call_close_send(call);
        if (r < 0)
                sbx_rpc_client_call_cancel(call);
        int k = wait_call(cl, call, &o, ret_why);
        sbx_rpc_client_call_unref(call);
        if (r < 0)
                return failf(ret_why, "close_send: %s", sbx_error_message(r));
        if (k < 0 || (k = expect_ok(&o, ret_why)) < 0)
                return k;
        if (o.messages != 10)
                return failf(ret_why, "%u echoes in all, expected 10", o.messages);
        if (o.misordered)
                return failf(ret_why, "echo %u has index %u", o.misordered_at, o.misordered_index);
        if (o.text_mismatch)
                return failf(ret_why, "an echo did not carry the text \"ping\"");
        return 0;
}

static int check_error_status(Client *cl, char **ret_why)
{
        _cleanup_(outcome_done) Outcome o = { 0 };
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        int r;

        req.text = (char *)"no such thing";
        req.fail_status = SBX_STATUS_NOT_FOUND;
        r = call_unary(cl, cl->ch, &req, CALL_TIMEOUT, &o, ret_why);
        if (r < 0)
                return r;
        if ((r = expect_code(&o, SBX_STATUS_NOT_FOUND, ret_why)) < 0)
                return r;
        if (strcmp(o.message, "no such thing") != 0)
                return failf(ret_why, "message \"%s\", expected \"no such thing\"", o.message);
        if (o.reply)
                return failf(ret_why, "a reply came with the error");
        return 0;
}

static int check_deadline(Client *cl, char **ret_why)
{
        _cleanup_(outcome_done) Outcome o = { 0 };
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        usec_t t0, took;
        int r;

        req.delay_ms = 2000;
        t0 = sbx_now_monotonic();
        r = call_unary(cl, cl->ch, &req, 200 * USEC_PER_MSEC, &o, ret_why);
        if (r < 0)
                return r;
        took = sbx_now_monotonic() - t0;
        if ((r = expect_code(&o, SBX_STATUS_DEADLINE_EXCEEDED, ret_why)) < 0)
                return r;
        if (took < 150 * USEC_PER_MSEC || took > 1500 * USEC_PER_MSEC)
                return failf(ret_why, "reported after %llu ms for a 200 ms deadline",
                             (unsigned long long)(took / USEC_PER_MSEC));
        return 0;
}

static int check_bearer_token(Client *cl, char **ret_why)
{
        _cleanup_(outcome_done) Outcome o = { 0 };
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        int r;

        req.text = (char *)"who am i";
        r = call_unary(cl, cl->auth_ch, &req, CALL_TIMEOUT, &o, ret_why);
        if (r < 0 || (r = expect_ok(&o, ret_why)) < 0)
                return r;
        if (!o.reply || strcmp(o.reply->token, "interop-token") != 0)
                return failf(ret_why, "token \"%s\", expected \"interop-token\"",
                             o.reply ? o.reply->token : "");
        return 0;
}

static const struct {
        const char *name;
        int (*run)(Client *cl, char **ret_why);
} checks[] = {
        { "unary", check_unary },
        { "server_stream", check_server_stream },
        { "client_stream", check_client_stream },
        { "bidi", check_bidi },
        { "error_status", check_error_status },
        { "deadline", check_deadline },
        { "bearer_token", check_bearer_token },
};

/* ---- main ---- */

static void on_rpc_down(void *userdata)
{
        bool *down = userdata;
        *down = true;
}

int main(int argc, char **argv)
{
        Client cl = { 0 };
        const char *target = NULL;
        unsigned failed = 0;
        bool down = false;
        int r;

        sbx_log_setup(argv[0], SBX_LOG_TEXT, SBX_LOG_WARNING);
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
                        target = argv[++i];
                } else {
                        fprintf(stderr, "usage: %s --target HOST:PORT\n", argv[0]);
                        return 2;
                }
        }
        if (!target) {
                fprintf(stderr, "usage: %s --target HOST:PORT\n", argv[0]);
                return 2;
        }

        r = uv_loop_init(&cl.loop);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the loop: %m"), 1;
        SbxRpcChannelOptions auth = { .bearer_token = "interop-token" };
        if ((r = sbx_rpc_new(&cl.loop, &cl.rpc)) < 0 ||
            (r = sbx_rpc_channel_new(cl.rpc, target, NULL, &cl.ch)) < 0 ||
            (r = sbx_rpc_channel_new(cl.rpc, target, &auth, &cl.auth_ch)) < 0)
                return log_error_errno(r, "Failed to set up a channel to %s: %m", target), 1;

        for (size_t i = 0; i < ELEMENTSOF(checks); i++) {
                _cleanup_free_ char *why = NULL;
                if (checks[i].run(&cl, &why) < 0) {
                        printf("FAIL %s: %s\n", checks[i].name, why ?: "(no reason)");
                        failed++;
                } else {
                        printf("ok %s\n", checks[i].name);
                }
                fflush(stdout);
        }

        sbx_rpc_channel_free(cl.ch);
        sbx_rpc_channel_free(cl.auth_ch);
        sbx_rpc_shutdown(cl.rpc, 0, on_rpc_down, &down);
        if (sbx_test_run_until(&cl.loop, &down, CALL_TIMEOUT) < 0) {
                fprintf(stderr, "rpc shutdown did not complete\n");
                return 1;
        }
        if (sbx_loop_close_all(&cl.loop) < 0) {
                fprintf(stderr, "the loop still had work after shutdown\n");
                return 1;
        }
        return failed == 0 ? 0 : 1;
}
