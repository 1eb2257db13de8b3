/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The common/rpc client side of the rpc benchmarks (docs/benchmarks.md). It measures one thing
 * against a running sbx.test.Echo server (ours, tests/programs/echo-server, or grpc-js,
 * bench/node/rpc-js.mjs) and prints one machine-readable line for bench/run:
 *
 *   RESULT test=<test> value=<number> unit=<unit>
 *
 * plus context lines starting with "# ". bench/node/rpc-js.mjs implements the same measurements
 * with the same defaults, so the two clients can be compared line for line.
 *
 *   rpc-bench --target HOST:PORT --test unary|server-stream|client-stream
 *             [--calls N] [--warmup N] [--count K] [--size BYTES] [--seconds S]
 *
 *   unary          sequential Unary calls carrying a --size byte payload that the server echoes;
 *                  --warmup calls first, then --calls measured ones; value = median µs per call.
 *   server-stream  ServerStream calls asking for --count replies of --size payload bytes each,
 *                  repeated until --seconds have passed, after one warm-up call; value = payload
 *                  MB/s (10^6 bytes per second).
 *   client-stream  ClientStream calls sending --count messages of --size payload bytes each (at
 *                  most 1 MiB queued, like the echo server's own pump), repeated the same way.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/parse.h"
#include "common/log/log.h"
#include "common/loop/loop.h"
#include "common/rpc/rpc.h"
#include "tests/lib/echo-service.h"

/* Producers stop queueing above this many bytes, as the echo server's stream pump does. */
#define SEND_HIGH_WATER (1024 * 1024)
#define CALL_TIMEOUT    (60 * USEC_PER_SEC)

typedef enum Test {
        TEST_UNARY,
        TEST_SERVER_STREAM,
        TEST_CLIENT_STREAM,
} Test;

typedef struct Options {
        const char *target;
        Test test;
        uint32_t calls;
        uint32_t warmup;
        uint32_t count;
        uint32_t size;
        uint32_t seconds;
} Options;

/* State of the streaming measurements, driven by callbacks on the loop. */
typedef struct Stream {
        const Options *opt;
        SbxRpcChannel *ch;
        uv_check_t pump;
        SbxRpcClientCall *call;
        uint8_t *payload;
        /* The first call warms up and is not counted. */
        bool warming;
        uint32_t sent;
        uint64_t received_bytes;
        uint64_t measured_bytes;
        unsigned measured_calls;
        usec_t measure_start;
        usec_t measure_end;
        int error;
        bool finished;
} Stream;

static int cmp_usec(const void *a, const void *b)
{
        usec_t x = *(const usec_t *)a, y = *(const usec_t *)b;
        return x < y ? -1 : x > y;
}

/* ---- unary ---- */

static int run_unary(SbxRpcChannel *ch, const Options *opt)
{
        _cleanup_free_ usec_t *samples = new0(usec_t, opt->calls);
        _cleanup_free_ uint8_t *payload = calloc(1, opt->size ? opt->size : 1);
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        SbxRpcCallOptions co = { .timeout = CALL_TIMEOUT, .wait_for_ready = true };
        usec_t total = 0;

        if (!samples || !payload)
                return log_error_errno(-ENOMEM, "Failed to allocate: %m");
        req.text = (char *)"ping";
        req.payload.data = payload;
        req.payload.len = opt->size;

        for (uint32_t i = 0; i < opt->warmup + opt->calls; i++) {
                ProtobufCMessage *resp = NULL;
                SbxRpcStatus st = { 0 };
                usec_t t0 = sbx_now_monotonic();
                int r = sbx_rpc_unary_sync(ch, &sbx_test_echo_unary, &req.base, &co, &st, &resp);
                usec_t dt = sbx_now_monotonic() - t0;

                if (r < 0) {
                        log_error_errno(r, "Unary call %u failed: %s", i, st.message ? st.message : "");
                        sbx_rpc_status_done(&st);
                        return r;
                }
                sbx_rpc_status_done(&st);
                if (((Sbx__Test__EchoReply *)resp)->payload.len != opt->size) {
                        protobuf_c_message_free_unpacked(resp, NULL);
                        return log_error_errno(-EBADMSG, "Unary reply carried the wrong payload");
                }
                protobuf_c_message_free_unpacked(resp, NULL);
                if (i >= opt->warmup) {
                        samples[i - opt->warmup] = dt;
                        total += dt;
                }
        }

        qsort(samples, opt->calls, sizeof(usec_t), cmp_usec);
        usec_t median = samples[opt->calls / 2];
        usec_t p99 = samples[(size_t)opt->calls * 99 / 100];
        printf("# unary: %u calls after %u warm-up, %u-byte payload: median %" PRIu64 " us, mean %.1f us, "
               "p99 %" PRIu64 " us, min %" PRIu64 " us\n",
               opt->calls, opt->warmup, opt->size, median, (double)total / opt->calls, p99, samples[0]);
        printf("RESULT test=unary value=%" PRIu64 " unit=us\n", median);
        return 0;
}

/* ---- streaming ---- */

static void stream_next(Stream *s);

static void stream_finish(Stream *s, int error)
{
        s->error = error;
        s->finished = true;
        uv_check_stop(&s->pump);
}

static void on_stream_message(SbxRpcClientCall *c, ProtobufCMessage *m, void *userdata)
{
        Stream *s = userdata;
        Sbx__Test__EchoReply *reply = (Sbx__Test__EchoReply *)m;

        if (s->opt->test == TEST_SERVER_STREAM)
                s->received_bytes += reply->payload.len;
        else
                /* The one reply of a client stream: what the server counted. */
                s->received_bytes = reply->bytes;
        protobuf_c_message_free_unpacked(m, NULL);
}

static void on_stream_status(SbxRpcClientCall *c, const SbxRpcStatus *status, void *userdata)
{
        Stream *s = userdata;
        uint64_t expected = (uint64_t)s->opt->count * s->opt->size;

        s->call = sbx_rpc_client_call_unref(s->call);
        if (status->code != SBX_STATUS_OK) {
                log_error("Stream call failed: %s (%s)", status->message, sbx_status_name(status->code));
                stream_finish(s, -EIO);
                return;
        }
        if (s->received_bytes != expected) {
                log_error("Stream call moved %" PRIu64 " payload bytes, expected %" PRIu64,
                          s->received_bytes, expected);
                stream_finish(s, -EBADMSG);
                return;
        }

        usec_t now = sbx_now_monotonic();
        if (s->warming) {
                s->warming = false;
                s->measure_start = now;
        } else {
                s->measured_bytes += s->received_bytes;
                s->measured_calls++;
                if (now - s->measure_start >= s->opt->seconds * USEC_PER_SEC) {
                        s->measure_end = now;
                        stream_finish(s, 0);
                        return;
                }
        }
        stream_next(s);
}

/* Tops the client stream's send queue up; runs after every loop iteration, so every completed send
 * (which wakes the loop) refills it. The client API has no drain callback. */
static void on_pump(uv_check_t *h)
{
        Stream *s = h->data;
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;

        if (!s->call || s->sent >= s->opt->count)
                return;
        req.payload.data = s->payload;
        req.payload.len = s->opt->size;
        while (s->sent < s->opt->count && sbx_rpc_client_call_pending_bytes(s->call) < SEND_HIGH_WATER) {
                int r = sbx_rpc_client_call_send(s->call, &req.base);
                if (r < 0) {
                        /* The call ended; on_status reports why. */
                        log_debug_errno(r, "Send failed: %m");
                        return;
                }
                s->sent++;
        }
        if (s->sent >= s->opt->count)
                sbx_rpc_client_call_close_send(s->call);
}

static void stream_next(Stream *s)
{
        static const SbxRpcClientCallbacks cbs = { .on_message = on_stream_message,
                                                   .on_status = on_stream_status };
        SbxRpcCallOptions co = { .timeout = CALL_TIMEOUT, .wait_for_ready = true };
        Sbx__Test__EchoRequest req = SBX__TEST__ECHO_REQUEST__INIT;
        int r;

        s->received_bytes = 0;
        s->sent = 0;
        if (s->opt->test == TEST_SERVER_STREAM) {
                req.count = s->opt->count;
                req.reply_size = s->opt->size;
                r = sbx_rpc_call_start(s->ch, &sbx_test_echo_server_stream, &req.base, &co, &cbs, s,
                                       &s->call);
        } else {
                r = sbx_rpc_call_start(s->ch, &sbx_test_echo_client_stream, NULL, &co, &cbs, s, &s->call);
                if (r >= 0)
                        on_pump(&s->pump);
        }
        if (r < 0) {
                log_error_errno(r, "Failed to start a stream call: %m");
                stream_finish(s, r);
        }
}

static int run_stream(uv_loop_t *loop, SbxRpcChannel *ch, const Options *opt)
{
        const char *name = opt->test == TEST_SERVER_STREAM ? "server-stream" : "client-stream";
        Stream s = { .opt = opt, .ch = ch, .warming = true };

        s.payload = calloc(1, opt->size ? opt->size : 1);
        if (!s.payload)
                return log_error_errno(-ENOMEM, "Failed to allocate: %m");
        uv_check_init(loop, &s.pump);
        s.pump.data = &s;
        if (opt->test == TEST_CLIENT_STREAM)
                uv_check_start(&s.pump, on_pump);

        stream_next(&s);
        while (!s.finished)
                uv_run(loop, UV_RUN_ONCE);
        uv_close((uv_handle_t *)&s.pump, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        free(s.payload);
        if (s.error < 0)
                return s.error;

        double secs = (double)(s.measure_end - s.measure_start) / USEC_PER_SEC;
        double mbps = (double)s.measured_bytes / 1e6 / secs;
        printf("# %s: %u calls of %u x %u-byte messages after 1 warm-up call: %.1f MB in %.2f s = %.1f "
               "MB/s\n",
               name, s.measured_calls, opt->count, opt->size, (double)s.measured_bytes / 1e6, secs, mbps);
        printf("RESULT test=%s value=%.1f unit=MB/s\n", name, mbps);
        return 0;
}

/* ---- main ---- */

static int parse_u32_arg(const char *name, const char *value, uint32_t min, uint32_t *ret)
{
        uint32_t v;

        if (sbx_parse_uint32(value, &v) < 0 || v < min) {
                fprintf(stderr, "invalid %s: %s\n", name, value);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int parse_args(int argc, char **argv, Options *o)
{
        const char *test = NULL;
        bool size_set = false;

        *o = (Options){ .calls = 2000, .warmup = 200, .count = 256, .seconds = 2 };
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                int r = 0;

                if (!v)
                        goto usage;
                i++;
                if (strcmp(a, "--target") == 0)
                        o->target = v;
                else if (strcmp(a, "--test") == 0)
                        test = v;
                else if (strcmp(a, "--calls") == 0)
                        r = parse_u32_arg(a, v, 1, &o->calls);
                else if (strcmp(a, "--warmup") == 0)
                        r = parse_u32_arg(a, v, 0, &o->warmup);
                else if (strcmp(a, "--count") == 0)
                        r = parse_u32_arg(a, v, 1, &o->count);
                else if (strcmp(a, "--size") == 0) {
                        r = parse_u32_arg(a, v, 0, &o->size);
                        size_set = true;
                } else if (strcmp(a, "--seconds") == 0)
                        r = parse_u32_arg(a, v, 1, &o->seconds);
                else
                        goto usage;
                if (r < 0)
                        return r;
        }
        if (!o->target || !test)
                goto usage;
        if (strcmp(test, "unary") == 0)
                o->test = TEST_UNARY;
        else if (strcmp(test, "server-stream") == 0)
                o->test = TEST_SERVER_STREAM;
        else if (strcmp(test, "client-stream") == 0)
                o->test = TEST_CLIENT_STREAM;
        else
                goto usage;
        /* Small payloads for round trips, 64 KiB messages for throughput (as rpc-js.mjs). */
        if (!size_set)
                o->size = o->test == TEST_UNARY ? 64 : 64 * 1024;
        return 0;

usage:
        fprintf(stderr,
                "usage: %s --target HOST:PORT --test unary|server-stream|client-stream\n"
                "          [--calls N] [--warmup N] [--count K] [--size BYTES] [--seconds S]\n",
                argv[0]);
        return -EINVAL;
}

static void on_rpc_down(void *userdata)
{
        *(bool *)userdata = true;
}

int main(int argc, char **argv)
{
        uv_loop_t loop;
        SbxRpc *rpc = NULL;
        SbxRpcChannel *ch = NULL;
        Options opt;
        bool down = false;
        int r;

        sbx_log_setup("rpc-bench", SBX_LOG_TEXT, SBX_LOG_WARNING);
        if (parse_args(argc, argv, &opt) < 0)
                return 2;

        r = uv_loop_init(&loop);
        if (r < 0)
                return log_error_errno(r, "Failed to create the loop: %m"), 1;
        r = sbx_rpc_new(&loop, &rpc);
        if (r < 0)
                return log_error_errno(r, "Failed to start gRPC: %m"), 1;
        r = sbx_rpc_channel_new(rpc, opt.target, NULL, &ch);
        if (r < 0)
                log_error_errno(r, "Failed to create a channel to %s: %m", opt.target);
        else if (opt.test == TEST_UNARY)
                r = run_unary(ch, &opt);
        else
                r = run_stream(&loop, ch, &opt);
        fflush(stdout);

        sbx_rpc_channel_free(ch);
        sbx_rpc_shutdown(rpc, 0, on_rpc_down, &down);
        while (!down)
                uv_run(&loop, UV_RUN_ONCE);
        if (sbx_loop_close_all(&loop) < 0)
                return 1;
        return r < 0 ? 1 : 0;
}
