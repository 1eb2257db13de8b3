/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * sbx-gateway's internal interfaces. The daemon is one libuv loop (docs/architecture.md) shared by
 * gRPC (common/rpc), libwebsockets and the TLS relay, so nothing here needs a lock.
 *
 *   gw-relay.c     listening sockets, TLS, and a socketpair to libwebsockets per connection; keeps
 *                  the first request so it can be handed to libwebsockets again (see below)
 *   gw-http.c      libwebsockets: routing, the REST endpoints, the WebSocket upgrade and frames
 *   gw-control.c   the scheduler side: create and connect (during the upgrade), kill, extend,
 *                  list, and one GwSandbox per sandbox with sessions (data channel, Watch, Attach)
 *   gw-session.c   one WebSocket: JSON-RPC requests, replies, streams, aborts, the send queue
 *   gw-methods*.c  the method catalogue on sbx.v1.SandboxData
 *
 * Why the relay: a create is answered with "101 Switching Protocols" carrying the new sandbox's
 * id, or with an HTTP error carrying the scheduler's reason (quota, bad token), so the handshake
 * must wait for the scheduler. libwebsockets 4.1 decides an upgrade synchronously inside its
 * callback. So the gateway lets libwebsockets parse the request once, takes what it needs and
 * hangs that attempt up; when the scheduler has answered, it feeds the same request bytes to
 * libwebsockets on a fresh socketpair, and this time accepts (adding x-deno-sandbox-id) or refuses.
 * The client's TCP (and TLS) connection stays up throughout; it only ever sees one answer.
 */

#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/buffer.h"
#include "common/base/hashmap.h"
#include "common/metrics/metrics-http.h"
#include "common/metrics/metrics.h"
#include "common/rpc/rpc.h"
#include "gateway/gw-config.h"
#include "proto/sbx/v1/data.pb-c.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"

typedef struct Gateway Gateway;
typedef struct GwListener GwListener;
typedef struct GwConn GwConn;
typedef struct GwUpgrade GwUpgrade;
typedef struct GwSandbox GwSandbox;
typedef struct GwSession GwSession;
typedef struct GwRequest GwRequest;
typedef struct GwMethod GwMethod;

/* A tiny intrusive doubly linked list. */
typedef struct GwLink {
        struct GwLink *prev, *next;
} GwLink;

static inline void gw_list_init(GwLink *head)
{
        head->prev = head->next = head;
}
static inline bool gw_list_empty(const GwLink *head)
{
        return head->next == head;
}
static inline void gw_list_add(GwLink *head, GwLink *l)
{
        l->next = head;
        l->prev = head->prev;
        head->prev->next = l;
        head->prev = l;
}
static inline void gw_list_del(GwLink *l)
{
        if (!l->next)
                return;
        l->prev->next = l->next;
        l->next->prev = l->prev;
        l->prev = l->next = NULL;
}

typedef struct GwMetrics {
        SbxGauge *connections;
        SbxCounter *connections_total;
        SbxGauge *sessions;
        SbxCounter *sessions_total;
        SbxCounter *http_requests;
        SbxCounter *rpc_calls;
        SbxHistogram *rpc_duration;
        SbxCounter *bytes;
        SbxCounter *messages_refused;
        SbxCounter *sandboxes_created;
} GwMetrics;

struct Gateway {
        GwConfig cfg;
        uv_loop_t *loop;
        SbxRpc *rpc;
        SbxRpcChannel *scheduler;
        SbxRpcTls data_tls;
        bool data_use_tls;

        struct lws_context *lws;
        struct lws_vhost *vhost;
        struct lws_context *lws_alive;
        uv_prepare_t reaper;
        bool reaper_started;

        SSL_CTX *tls;
        GwListener **listeners;
        size_t n_listeners;
        /* Every relay connection (GwConn.link). */
        GwLink conns;
        unsigned n_conns;

        /* sandbox id → GwSandbox (only sandboxes with sessions or pending upgrades) */
        SbxHashmap *sandboxes;

        SbxMetrics *metrics;
        GwMetrics m;
        SbxMetricsServer *metrics_server;
        bool stopping;
};

/* ---- gw-metrics.c ---- */

int gw_metrics_register(Gateway *gw);

/* ---- gw-relay.c ---- */

/* Listens on `address` for the given region; connections are relayed to the lws vhost. */
int gw_listener_new(Gateway *gw, const char *address, const char *region, GwListener **ret, int *ret_port);
/* Stops accepting; open connections stay until gw_conns_close_all(). */
void gw_listener_close(GwListener *l);
/* Closes every connection (shutdown). */
void gw_conns_close_all(Gateway *gw);

/* The relay connection of a wsi (NULL if it has none). */
GwConn *gw_conn_from_wsi(struct lws *wsi);
const char *gw_conn_region(const GwConn *c);
/* The pending or finished upgrade attached to the connection, if any. */
GwUpgrade *gw_conn_upgrade(const GwConn *c);
/* Attaches an upgrade and marks the current libwebsockets attempt as one to be dropped without
 * closing the client: the connection waits for gw_conn_replay(). */
void gw_conn_defer(GwConn *c, GwUpgrade *u);
/* Hands the recorded request to a new libwebsockets connection. -EIO when the connection is gone. */
int gw_conn_replay(GwConn *c);
/* libwebsockets is done with a wsi (LWS_CALLBACK_WSI_DESTROY). */
void gw_conn_wsi_gone(struct lws *wsi);
/* Whether the whole request was recorded (so it can be replayed). */
bool gw_conn_replayable(const GwConn *c);
/* Detaches the upgrade (when the session takes over, or when it was refused). */
GwUpgrade *gw_conn_take_upgrade(GwConn *c);

/* ---- gw-control.c ---- */

typedef enum GwUpgradeKind {
        GW_UPGRADE_CREATE,
        GW_UPGRADE_CONNECT,
} GwUpgradeKind;

/* Called from the lws callback for a WebSocket upgrade on a sandbox path. Returns what the
 * callback must return: <0 hang up (deferred), 0 accept, >0 an HTTP error was written. */
int gw_upgrade_confirm(Gateway *gw, struct lws *wsi, GwUpgradeKind kind, const char *sandbox_id);
/* The sandbox id to put in x-deno-sandbox-id of the accepted upgrade on this wsi, or NULL. */
const char *gw_upgrade_accepted_id(struct lws *wsi);
/* The WebSocket is established: the session of the accepted upgrade, or NULL. */
GwSession *gw_upgrade_establish(Gateway *gw, struct lws *wsi);
/* The connection went away before the upgrade finished. */
void gw_upgrade_abandon(GwUpgrade *u);

typedef void (*GwRestDone)(void *userdata, unsigned status, char *body);
/* The REST endpoints. Each answers through done(userdata, HTTP status, malloc'ed JSON body) exactly
 * once, later, on the loop; *ret_call (optional) gets a handle to cancel with gw_rest_cancel(). */
typedef struct GwRestCall GwRestCall;
int gw_rest_list(Gateway *gw, const char *token, SbxHashmap *labels, GwRestDone done, void *userdata,
                 GwRestCall **ret_call);
int gw_rest_kill(Gateway *gw, const char *token, const char *id, GwRestDone done, void *userdata,
                 GwRestCall **ret_call);
int gw_rest_extend(Gateway *gw, const char *token, const char *id, const char *body, size_t len,
                   GwRestDone done, void *userdata, GwRestCall **ret_call);
/* Cancels: done() is not called any more. */
void gw_rest_cancel(GwRestCall *c);

/* {"code","message"} as the SDK reads control-plane and handshake errors; malloc'ed. */
char *gw_error_body(const char *code, const char *fmt, ...) _printf_(2, 3);
/* The HTTP status and error code for a gRPC status from the scheduler. */
unsigned gw_http_status_for(SbxStatus status, const char **ret_code);

GwSandbox *gw_sandbox_ref(GwSandbox *sb);
GwSandbox *gw_sandbox_unref(GwSandbox *sb);
const char *gw_sandbox_id(const GwSandbox *sb);
SbxRpcChannel *gw_sandbox_channel(const GwSandbox *sb);
void gw_sandbox_add_session(GwSandbox *sb, GwSession *s, GwLink *link);
void gw_sandbox_remove_session(GwSandbox *sb, GwLink *link);
/* The session whose sandbox link this is (gw-session.c). */
GwSession *gw__session_from_link(GwLink *l);
/* Closes every session of the sandbox with a WebSocket close code and reason. */
void gw_sandbox_close_sessions(GwSandbox *sb, int code, const char *reason);
/* Ends the Attach the creating session holds (its socket closed). */
void gw_sandbox_detach(GwSandbox *sb);
void gw_sandboxes_close_all(Gateway *gw);

/* ---- gw-http.c ---- */

int gw_http_new(Gateway *gw);
/* Starts the asynchronous teardown of the lws context; `done` runs once its handles are gone. */
void gw_http_close(Gateway *gw, void (*done)(Gateway *gw));
/* Writes an HTTP response from inside a callback (upgrade refusals): headers and body. 0 or -1. */
int gw_http_write_response(struct lws *wsi, unsigned status, const char *body);

/* ---- gw-session.c ---- */

/* Creates the session of an established WebSocket on `sandbox` (a reference is taken). */
int gw_session_new(Gateway *gw, struct lws *wsi, GwSandbox *sandbox, bool creator, GwSession **ret);
/* lws callbacks. */
int gw_session_receive(GwSession *s, const void *data, size_t len, bool first, bool final);
int gw_session_writable(GwSession *s);
void gw_session_closed(GwSession *s);
/* Sends a close frame with this code after what is queued; nothing is queued after it. */
void gw_session_close(GwSession *s, int code, const char *reason);

GwSession *gw_session_ref(GwSession *s);
GwSession *gw_session_unref(GwSession *s);
Gateway *gw_session_gateway(const GwSession *s);
GwSandbox *gw_session_sandbox(const GwSession *s);
const char *gw_session_sandbox_id(const GwSession *s);
SbxRpcChannel *gw_session_channel(const GwSession *s);
bool gw_session_open(const GwSession *s);

/* Queues one text frame (a malloc'ed JSON text, taken). -ECONNRESET once closing. */
int gw_session_send(GwSession *s, char *text);
/* Bytes queued toward the client; producers pause above GW_SEND_HIGH and resume on drain. */
#define GW_SEND_HIGH (4u * 1024 * 1024)
size_t gw_session_queued(const GwSession *s);
/* Calls cb once, the next time the send queue drops below GW_SEND_HIGH / 4 (registering the same
 * cb and userdata twice is harmless). gw_session_cancel_drain() forgets a registration. */
void gw_session_on_drain(GwSession *s, void (*cb)(GwSession *s, void *userdata), void *userdata);
void gw_session_cancel_drain(GwSession *s, void (*cb)(GwSession *s, void *userdata), void *userdata);
/* Stops (or resumes) reading the WebSocket: back-pressure toward a client that uploads faster than
 * the data plane takes it. Reference counted: every pause needs its resume. */
void gw_session_pause_input(GwSession *s, bool pause);

/* Work that outlives its request (a walk's stream, a fetch's body) registers so that closing the
 * session can stop it; `cancel` must end it soon and remove it with gw_session_remove_task(). */
typedef struct GwTask {
        GwLink link;
        void (*cancel)(struct GwTask *t);
} GwTask;
void gw_session_add_task(GwSession *s, GwTask *t);
void gw_session_remove_task(GwSession *s, GwTask *t);

/* ---- requests ---- */

struct GwRequest {
        GwSession *s;
        /* The JSON-RPC id (a reference). */
        json_t *id;
        const GwMethod *method;
        usec_t started;
        /* The gRPC call serving the request, while one runs. */
        SbxRpcClientCall *call;
        /* Set once answered; the request lives on until its call is gone. */
        bool replied;
        bool aborted;
        long long abort_id;
        bool has_abort;
        /* Called when the client aborts (abort{abortId}); by default the call is cancelled. */
        void (*on_abort)(GwRequest *r);
        /* The request's params (a reference: handlers may keep pointers into them). */
        json_t *params;
        /* A packed copy of the unary request, to send again when the agent is restarting. */
        uint8_t *retry_msg;
        size_t retry_len;
        const SbxRpcMethod *retry_method;
        unsigned retries;
        uv_timer_t *retry_timer;
        void (*retry_done)(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response);
        void *data;
        void (*free_data)(void *data);
        GwLink link;
};

typedef void (*GwHandler)(GwRequest *r, json_t *params);

struct GwMethod {
        const char *name;
        GwHandler handler;
};

/* The method catalogue (gw-methods.c). */
const GwMethod *gw_method_find(const char *name);
extern const GwMethod gw_methods[];
extern const size_t gw_n_methods;

/* Answers. Each finishes the request (once; later answers are ignored). `value` / `error` are
 * stolen. */
void gw_request_ok(GwRequest *r, json_t *value);
void gw_request_error(GwRequest *r, json_t *error);
/* An error object from a gRPC status (gw_error_from_status()). */
void gw_request_status(GwRequest *r, const SbxRpcStatus *st);
/* A JSON-RPC level error (invalid params). */
void gw_request_rpc_error(GwRequest *r, int code, const char *fmt, ...) _printf_(3, 4);
/* "Invalid params" naming the parameter. */
void gw_request_bad_param(GwRequest *r, const char *name, const char *what);

/* A required string parameter; answers Invalid params and returns false when it is not one. */
bool gw_need_string(GwRequest *r, json_t *params, const char *key, const char **ret);
/* An optional boolean (default `def`); false (answered) for a wrong type. */
bool gw_opt_bool(GwRequest *r, json_t *params, const char *key, bool def, bool *ret);

/* Registers the request under the client's abortId (params "abortId", when present). */
int gw_request_take_abort_id(GwRequest *r, json_t *params);

/* A unary data-plane call for the request; `done` runs with the status and (on OK) the response,
 * unless the session closed or the request was answered (aborted) meanwhile. */
typedef void (*GwUnaryDone)(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response);
void gw_request_unary(GwRequest *r, const SbxRpcMethod *m, const ProtobufCMessage *msg, GwUnaryDone done);
/* For the status callback of a call the request ran (after clearing r->call): true when the request
 * was answered already (aborted) or its session closed; it is then released and must not be
 * touched any more. */
bool gw_request_finished(GwRequest *r);
/* The unary helper's usual ending: ok null on success, the status as an error otherwise. */
void gw_request_done_null(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response);

/* Call options for data-plane calls (no deadline: processes and streams run as long as they do). */
const SbxRpcCallOptions *gw_data_call_options(void);

/* ---- streams (§2.7) ---- */

/* A new server stream id (unique across connections: a random base per connection). */
uint64_t gw_session_new_stream_id(GwSession *s);

typedef struct GwOutStream GwOutStream;
/* Starts a server→client stream: sends $sandbox.stream.start. `on_cancel` (optional) runs when the
 * client cancels it. */
GwOutStream *gw_out_stream_new(GwSession *s, uint64_t id, void (*on_cancel)(void *userdata), void *userdata);
uint64_t gw_out_stream_id(const GwOutStream *o);
/* Sends one chunk (never an empty one: empty chunks are dropped here). */
void gw_out_stream_write(GwOutStream *o, const void *data, size_t n);
/* end, or error when `error` is not NULL (stolen). Nothing is sent on a cancelled stream. Frees. */
void gw_out_stream_end(GwOutStream *o, json_t *error);
bool gw_out_stream_cancelled(const GwOutStream *o);

typedef struct GwInStreamOps {
        /* Bytes from the client. */
        void (*on_data)(void *userdata, const uint8_t *data, size_t n);
        /* $sandbox.stream.end (error NULL) or $sandbox.stream.error (error borrowed). */
        void (*on_end)(void *userdata, json_t *error);
} GwInStreamOps;

/* Binds the client stream `id` (already started, or to come) to a consumer; buffered data is
 * delivered at once. -EEXIST when it is bound already, -ENOBUFS when too many are open. */
int gw_in_stream_bind(GwSession *s, uint64_t id, const GwInStreamOps *ops, void *userdata);
/* Stops a client stream: sends $sandbox.stream.cancel and forgets it. */
void gw_in_stream_cancel(GwSession *s, uint64_t id);
/* Forgets the consumer (it is going away) without telling the client. */
void gw_in_stream_unbind(GwSession *s, uint64_t id);

/* ---- method handlers (gw-methods-*.c) ---- */

void gw_m_read_file(GwRequest *r, json_t *p);
void gw_m_read_text_file(GwRequest *r, json_t *p);
void gw_m_write_file(GwRequest *r, json_t *p);
void gw_m_write_text_file(GwRequest *r, json_t *p);
void gw_m_read_dir(GwRequest *r, json_t *p);
void gw_m_remove(GwRequest *r, json_t *p);
void gw_m_mkdir(GwRequest *r, json_t *p);
void gw_m_rename(GwRequest *r, json_t *p);
void gw_m_stat(GwRequest *r, json_t *p);
void gw_m_lstat(GwRequest *r, json_t *p);
void gw_m_chmod(GwRequest *r, json_t *p);
void gw_m_chown(GwRequest *r, json_t *p);
void gw_m_copy_file(GwRequest *r, json_t *p);
void gw_m_link(GwRequest *r, json_t *p);
void gw_m_symlink(GwRequest *r, json_t *p);
void gw_m_make_temp_dir(GwRequest *r, json_t *p);
void gw_m_make_temp_file(GwRequest *r, json_t *p);
void gw_m_read_link(GwRequest *r, json_t *p);
void gw_m_real_path(GwRequest *r, json_t *p);
void gw_m_truncate(GwRequest *r, json_t *p);
void gw_m_umask(GwRequest *r, json_t *p);
void gw_m_utime(GwRequest *r, json_t *p);

void gw_m_open(GwRequest *r, json_t *p);
void gw_m_create(GwRequest *r, json_t *p);
void gw_m_file_op(GwRequest *r, json_t *p);
void gw_m_file_close(GwRequest *r, json_t *p);
void gw_session_close_files(GwSession *s);

void gw_m_walk(GwRequest *r, json_t *p);
void gw_m_expand_glob(GwRequest *r, json_t *p);

void gw_m_spawn(GwRequest *r, json_t *p);
void gw_m_process_wait(GwRequest *r, json_t *p);
void gw_m_process_kill(GwRequest *r, json_t *p);
void gw_session_close_processes(GwSession *s);

void gw_m_fetch(GwRequest *r, json_t *p);

void gw_m_env_get(GwRequest *r, json_t *p);
void gw_m_env_set(GwRequest *r, json_t *p);
void gw_m_env_to_object(GwRequest *r, json_t *p);
void gw_m_env_delete(GwRequest *r, json_t *p);
void gw_m_abort(GwRequest *r, json_t *p);

/* Per-session state of the method files, created on first use and freed with the session. */
typedef struct GwProcTable GwProcTable;
typedef struct GwFileTable GwFileTable;
GwProcTable **gw_session_procs(GwSession *s);
GwFileTable **gw_session_files(GwSession *s);
