/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * gRPC servers and clients on gRPC core 1.51 and protobuf-c, driven from a libuv loop.
 *
 * Threading: one SbxRpc per process owns a gRPC completion queue and a poller thread that only
 * moves completed tags onto the loop (SbxQueue), or, made by sbx_rpc_new_polling_loop(), lets the
 * loop thread poll the queue itself. Either way every handler, every callback and every
 * grpc_call_start_batch runs on the loop thread, so daemon state needs no locks. None of the
 * functions below may be called from another thread.
 *
 * Messages are protobuf-c messages. Methods are described by SbxRpcMethod (path, kind, message
 * descriptors); sbx_rpc_methods_check() verifies a table against protoc-c's service descriptor.
 *
 * Errors are SbxRpcStatus values: a gRPC status code plus a message meant for a person. A lost
 * connection surfaces as UNAVAILABLE, a passed deadline as DEADLINE_EXCEEDED, a message over the
 * size limit as RESOURCE_EXHAUSTED, an unknown method as UNIMPLEMENTED.
 *
 * Shutdown: sbx_rpc_shutdown() stops every server (cancelling calls still running after a grace),
 * cancels every client call, waits for gRPC to hand back every tag, then stops the poller thread
 * (or the waker thread of a loop-polling runtime) and releases gRPC. Run the loop until its
 * callback fires.
 */

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/base/error.h"
#include "common/base/macro.h"
#include "common/base/time-util.h"

typedef struct SbxRpc SbxRpc;
typedef struct SbxRpcServer SbxRpcServer;
typedef struct SbxRpcServerCall SbxRpcServerCall;
typedef struct SbxRpcChannel SbxRpcChannel;
typedef struct SbxRpcClientCall SbxRpcClientCall;
typedef struct SbxMetrics SbxMetrics;

typedef enum SbxRpcKind {
        SBX_RPC_UNARY,
        SBX_RPC_SERVER_STREAM,
        SBX_RPC_CLIENT_STREAM,
        SBX_RPC_BIDI,
} SbxRpcKind;

typedef struct SbxRpcMethod {
        /* "/package.Service/Method" */
        const char *path;
        SbxRpcKind kind;
        const ProtobufCMessageDescriptor *input;
        const ProtobufCMessageDescriptor *output;
} SbxRpcMethod;

#define SBX_RPC_METHOD(p, k, in, out)                                              \
        {                                                                          \
                .path = (p), .kind = SBX_RPC_##k, .input = &(in), .output = &(out) \
        }

/* Checks that `methods` lists every method of `service` with matching paths and message types.
 * Returns -EINVAL (and the name of the first mismatch in *ret_bad when not NULL) otherwise. */
int sbx_rpc_methods_check(const ProtobufCServiceDescriptor *service, const SbxRpcMethod *const *methods,
                          size_t n, const char **ret_bad);

typedef struct SbxRpcStatus {
        SbxStatus code;
        /* Never NULL once filled in; owned by the status. */
        char *message;
} SbxRpcStatus;

void sbx_rpc_status_done(SbxRpcStatus *s);
/* Builds a status from a negative error: the code from the error table, the message formatted. */
int sbx_rpc_status_set(SbxRpcStatus *s, SbxStatus code, const char *fmt, ...) _printf_(3, 4);

/* TLS settings from PEM files. On a server, ca_file turns on mTLS: clients must present a
 * certificate that chains to it. On a client, ca_file are the roots that verify the server (the
 * system roots when NULL); cert_file/key_file give the client certificate for mTLS; server_name
 * overrides the name the server certificate must carry (default: the host part of the target). */
typedef struct SbxRpcTls {
        const char *cert_file;
        const char *key_file;
        const char *ca_file;
        const char *server_name;
} SbxRpcTls;

/* ---- runtime ---- */

/* Initializes gRPC and starts the poller thread; handlers run on `loop`. */
int sbx_rpc_new(uv_loop_t *loop, SbxRpc **ret);

/*
 * The same, except that no poller thread moves completions onto the loop: the loop thread sleeps in
 * gRPC's completion queue itself and runs each completion where it wakes, sparing the two thread
 * switches of every hand-off. libuv's own events (timers aside, which bound the sleep) reach it
 * through a helper thread that watches libuv's backend fd and wakes the queue, so they pay a
 * hand-off instead. For processes whose work is gRPC (the scheduler); those with busy libuv I/O keep
 * the poller thread. The loop must then be run with sbx_rpc_run_once(), never uv_run() directly.
 */
int sbx_rpc_new_polling_loop(uv_loop_t *loop, SbxRpc **ret);

/* One turn of `loop`, as uv_run(loop, UV_RUN_ONCE): in gRPC's queue while a runtime made by
 * sbx_rpc_new_polling_loop() for this loop exists, with uv_run() otherwise (also once that runtime
 * has shut down). Loop thread only. */
void sbx_rpc_run_once(uv_loop_t *loop);

/* Orderly shutdown of everything created from this runtime (see the top of this file). Servers
 * get `grace` to finish their calls before those are cancelled. `done` runs on the loop when all is
 * released; the SbxRpc is freed by then. */
void sbx_rpc_shutdown(SbxRpc *rpc, usec_t grace, void (*done)(void *userdata), void *userdata);

uv_loop_t *sbx_rpc_loop(SbxRpc *rpc);

/* ---- servers ---- */

typedef struct SbxRpcHandler {
        const SbxRpcMethod *method;
        /*
         * A call arrived. For UNARY and SERVER_STREAM `request` is the decoded request (owned by the
         * call, valid until the call is freed). For CLIENT_STREAM and BIDI it is NULL and messages
         * arrive through on_message. The handler answers with sbx_rpc_server_call_send/_finish,
         * now or later; it may take a reference to keep the call beyond on_done.
         */
        void (*on_start)(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata);
        /* A client-stream message; the callee owns it (protobuf_c_message_free_unpacked). */
        void (*on_message)(SbxRpcServerCall *call, ProtobufCMessage *message, void *userdata);
        /* The client closed its sending side. */
        void (*on_half_close)(SbxRpcServerCall *call, void *userdata);
        /* The call is over: finished, cancelled by the client, past its deadline, or cut by
         * shutdown (`cancelled` true in the last three). Called once, and only after on_start. */
        void (*on_done)(SbxRpcServerCall *call, bool cancelled, void *userdata);
        void *userdata;
} SbxRpcHandler;

typedef struct SbxRpcServerOptions {
        /* Largest message accepted or sent; 0 means 4 MiB. */
        size_t max_message_size;
        /* Calls accepted concurrently before gRPC queues new ones; 0 means 64. */
        unsigned accept_depth;
        /* When set, RPC counts and latencies are recorded under sbx_rpc_server_* (labels: method,
         * code). The registry must outlive the server. */
        SbxMetrics *metrics;
} SbxRpcServerOptions;

int sbx_rpc_server_new(SbxRpc *rpc, const SbxRpcServerOptions *opts, SbxRpcServer **ret);

/* Registers a handler; before sbx_rpc_server_start(). The handler struct is copied. */
int sbx_rpc_server_add_handler(SbxRpcServer *s, const SbxRpcHandler *h);

/* Adds a listening address ("127.0.0.1:0", "[::]:7000", "unix:/run/x.sock"); TLS when `tls` is not
 * NULL (cert_file and key_file required). *ret_port gets the bound port. -EADDRINUSE, -EINVAL. */
int sbx_rpc_server_listen(SbxRpcServer *s, const char *address, const SbxRpcTls *tls, int *ret_port);

int sbx_rpc_server_start(SbxRpcServer *s);

/* Stops accepting calls; running calls get `grace`, then are cancelled (their clients see
 * UNAVAILABLE, as gRPC core reports a server-side cancel-all). `done` (optional) runs when the last
 * call is gone and the server is freed. sbx_rpc_shutdown() does this for every server. */
void sbx_rpc_server_shutdown(SbxRpcServer *s, usec_t grace, void (*done)(void *userdata), void *userdata);

/* Server calls. A call is reference counted; the server holds one reference until on_done. */
SbxRpcServerCall *sbx_rpc_server_call_ref(SbxRpcServerCall *c);
SbxRpcServerCall *sbx_rpc_server_call_unref(SbxRpcServerCall *c);

/* Queues a message (SERVER_STREAM, BIDI; or the one reply of a UNARY/CLIENT_STREAM call before
 * finishing). -ECANCELED once the call is over or finished, -EMSGSIZE above the size limit. */
int sbx_rpc_server_call_send(SbxRpcServerCall *c, const ProtobufCMessage *message);

/* Ends the call with a status after the queued messages. Only the first finish counts; later ones
 * return -EALREADY. */
int sbx_rpc_server_call_finish(SbxRpcServerCall *c, SbxStatus code, const char *message);

/* Sends `reply` and finishes with OK. */
int sbx_rpc_server_call_reply(SbxRpcServerCall *c, const ProtobufCMessage *reply);

/* Finishes with a status and a formatted message. The _errno form takes the code from a negative
 * error (error.h) and substitutes %m with its message. */
int sbx_rpc_server_call_fail(SbxRpcServerCall *c, SbxStatus code, const char *fmt, ...) _printf_(3, 4);
int sbx_rpc_server_call_fail_errno(SbxRpcServerCall *c, int error, const char *fmt, ...) _printf_(3, 4);

/* Bytes queued for sending and not yet accepted by gRPC; producers use it to pause themselves. */
size_t sbx_rpc_server_call_pending_bytes(const SbxRpcServerCall *c);
/* Called (on the loop) whenever the send queue becomes empty. */
void sbx_rpc_server_call_on_drain(SbxRpcServerCall *c, void (*cb)(SbxRpcServerCall *c, void *userdata),
                                  void *userdata);

/* Stops (or resumes) reading client messages, pushing back on the client through HTTP/2 flow
 * control. No on_message runs while paused, not even for a message already read ahead (the call
 * holds at most one); on resume it is delivered first, later, from the loop. */
void sbx_rpc_server_call_pause_reading(SbxRpcServerCall *c, bool pause);

/* Per-call pointer for the handler. */
void sbx_rpc_server_call_set_userdata(SbxRpcServerCall *c, void *userdata);
void *sbx_rpc_server_call_get_userdata(const SbxRpcServerCall *c);

const SbxRpcMethod *sbx_rpc_server_call_method(const SbxRpcServerCall *c);
/* The loop the call runs on (for the handler's timers). */
uv_loop_t *sbx_rpc_server_call_loop(const SbxRpcServerCall *c);
/* True once the call is over (on_done ran or is about to). */
bool sbx_rpc_server_call_is_done(const SbxRpcServerCall *c);

/* The value of a request metadata key (lower case), or NULL. Owned by the call. */
const char *sbx_rpc_server_call_metadata(const SbxRpcServerCall *c, const char *key);
/* The token of "authorization: Bearer <token>", or NULL. */
const char *sbx_rpc_server_call_bearer_token(const SbxRpcServerCall *c);
/* The verified client certificate's identity on an mTLS connection (subject CN, else the first
 * SAN), or NULL on plaintext and server-only TLS. Owned by the call. */
const char *sbx_rpc_server_call_peer_identity(SbxRpcServerCall *c);
/* The peer address ("ipv4:127.0.0.1:5555"). Owned by the call. */
const char *sbx_rpc_server_call_peer(SbxRpcServerCall *c);
/* Time left before the client's deadline, USEC_INFINITY when it set none. */
usec_t sbx_rpc_server_call_time_left(const SbxRpcServerCall *c);

/* ---- clients ---- */

typedef struct SbxRpcChannelOptions {
        /* NULL: plaintext (meant for loopback). */
        const SbxRpcTls *tls;
        /* Sent as call credentials over TLS, as plain "authorization" metadata on plaintext. */
        const char *bearer_token;
        /* 0 means 4 MiB. */
        size_t max_message_size;
        /* HTTP/2 keepalive pings so a dead peer is noticed on idle streams; 0 means off. */
        usec_t keepalive_time;
        /* Upper bound of gRPC's reconnect backoff; 0 means gRPC's default (120 s). */
        usec_t max_reconnect_backoff;
} SbxRpcChannelOptions;

int sbx_rpc_channel_new(SbxRpc *rpc, const char *target, const SbxRpcChannelOptions *opts,
                        SbxRpcChannel **ret);

/* Cancels the channel's calls (their callbacks still run) and releases it once they are gone. */
SbxRpcChannel *sbx_rpc_channel_free(SbxRpcChannel *ch);

const char *sbx_rpc_channel_target(const SbxRpcChannel *ch);

typedef struct SbxRpcMetadata {
        const char *key;
        const char *value;
} SbxRpcMetadata;

typedef struct SbxRpcCallOptions {
        /* Relative deadline; 0 means none. */
        usec_t timeout;
        /* Extra request metadata (keys lower case). */
        const SbxRpcMetadata *metadata;
        size_t n_metadata;
        /* Queue the call until the channel connects instead of failing fast with UNAVAILABLE. */
        bool wait_for_ready;
} SbxRpcCallOptions;

/* The response is owned by the callee (free with protobuf_c_message_free_unpacked); it is NULL
 * unless the status is OK. */
typedef void (*SbxRpcUnaryCallback)(const SbxRpcStatus *status, ProtobufCMessage *response, void *userdata);

/* Starts a unary call. The callback runs exactly once, later, on the loop (never from inside this
 * function). *ret_call (optional) gets a reference for cancelling; release it with unref. */
int sbx_rpc_unary(SbxRpcChannel *ch, const SbxRpcMethod *m, const ProtobufCMessage *request,
                  const SbxRpcCallOptions *opts, SbxRpcUnaryCallback cb, void *userdata,
                  SbxRpcClientCall **ret_call);

typedef struct SbxRpcClientCallbacks {
        /* A response message; the callee owns it. */
        void (*on_message)(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata);
        /* The final status, after the last message. Called exactly once. */
        void (*on_status)(SbxRpcClientCall *c, const SbxRpcStatus *status, void *userdata);
} SbxRpcClientCallbacks;

/*
 * Starts a streaming call. For SERVER_STREAM `request` is required and sent at once with the
 * client's half-close. For CLIENT_STREAM and BIDI `request` is optional (a first message sent
 * with the headers); further messages go through sbx_rpc_client_call_send(). *ret (optional)
 * gets a reference.
 */
int sbx_rpc_call_start(SbxRpcChannel *ch, const SbxRpcMethod *m, const ProtobufCMessage *request,
                       const SbxRpcCallOptions *opts, const SbxRpcClientCallbacks *cbs, void *userdata,
                       SbxRpcClientCall **ret);

/* Queues a message. -ECANCELED after the call ended, -EPIPE after close_send. */
int sbx_rpc_client_call_send(SbxRpcClientCall *c, const ProtobufCMessage *message);
/* Half-closes after the queued messages. */
int sbx_rpc_client_call_close_send(SbxRpcClientCall *c);
/* Cancels; on_status follows with CANCELLED (unless the status already arrived). */
void sbx_rpc_client_call_cancel(SbxRpcClientCall *c);
size_t sbx_rpc_client_call_pending_bytes(const SbxRpcClientCall *c);
/* Called (on the loop) whenever the send queue becomes empty, so producers can send more. */
void sbx_rpc_client_call_on_drain(SbxRpcClientCall *c, void (*cb)(SbxRpcClientCall *c, void *userdata),
                                  void *userdata);
/* Stops (or resumes) reading response messages, pushing back on the server through HTTP/2 flow
 * control. As on the server side, no on_message runs while paused; the at most one message read
 * ahead is delivered first after resuming, later, from the loop. */
void sbx_rpc_client_call_pause_reading(SbxRpcClientCall *c, bool pause);
SbxRpcClientCall *sbx_rpc_client_call_ref(SbxRpcClientCall *c);
SbxRpcClientCall *sbx_rpc_client_call_unref(SbxRpcClientCall *c);
/* Response metadata received with the headers, or NULL. */
const char *sbx_rpc_client_call_header(const SbxRpcClientCall *c, const char *key);

/*
 * Blocking unary call for programs whose loop is otherwise idle (the CLI, tests, benchmarks): runs
 * the loop until the reply arrives. Must not be called from a loop callback. *ret_response is set
 * only when the status is OK. Returns 0 or the negative error matching the status.
 */
int sbx_rpc_unary_sync(SbxRpcChannel *ch, const SbxRpcMethod *m, const ProtobufCMessage *request,
                       const SbxRpcCallOptions *opts, SbxRpcStatus *ret_status,
                       ProtobufCMessage **ret_response);
