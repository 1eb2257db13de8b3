/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The scheduler side of the gateway (sbx.v1.Sandboxes): the WebSocket handshakes that create or
 * connect (deferred until the scheduler answers, see gw.h), the REST calls kill, extend and list,
 * and one GwSandbox per sandbox that has sessions here: its data-plane channel, a Watch that closes
 * its sessions when it ends, and for a "session" sandbox the Attach stream its creating socket
 * holds (deno-sandbox-protocol.md §4.9).
 *
 * The SDK's token is an sbx organization token; it goes to the scheduler unchanged as the bearer
 * token of every call made for that client.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/api/api.h"
#include "common/base/macro.h"
#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "gateway/gw-sandbox-config.h"
#include "gateway/gw-values.h"
#include "gateway/gw.h"

static void *mfree(void *p)
{
        free(p);
        return NULL;
}

/* Pages of List fetched for one GET /api/v2/sandboxes (1000 sandboxes each). */
#define LIST_PAGES_MAX 20
/* Delay before a Watch or an Attach that failed is started again. */
#define RETRY_MS 1000
/* Attach retries before the creating session is told its sandbox is lost. */
#define ATTACH_RETRIES 20

char *gw_error_body(const char *code, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        json_t *o;
        va_list ap;
        char *s;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        o = json_pack("{s:s, s:o}", "code", code, "message",
                      msg ? gw_json_text(msg, strlen(msg)) : json_string(""));
        if (!o)
                return NULL;
        s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        return s;
}

unsigned gw_http_status_for(SbxStatus status, const char **ret_code)
{
        static const struct {
                SbxStatus status;
                unsigned http;
                const char *code;
        } map[] = {
                { SBX_STATUS_UNAUTHENTICATED, 401, "INVALID_TOKEN" },
                { SBX_STATUS_PERMISSION_DENIED, 403, "FORBIDDEN" },
                { SBX_STATUS_NOT_FOUND, 404, "NOT_FOUND" },
                { SBX_STATUS_INVALID_ARGUMENT, 400, "INVALID_ARGUMENT" },
                { SBX_STATUS_OUT_OF_RANGE, 400, "INVALID_ARGUMENT" },
                { SBX_STATUS_RESOURCE_EXHAUSTED, 429, "RESOURCE_EXHAUSTED" },
                { SBX_STATUS_FAILED_PRECONDITION, 409, "FAILED_PRECONDITION" },
                { SBX_STATUS_ALREADY_EXISTS, 409, "ALREADY_EXISTS" },
                { SBX_STATUS_ABORTED, 409, "ABORTED" },
                { SBX_STATUS_DEADLINE_EXCEEDED, 504, "TIMEOUT" },
                { SBX_STATUS_UNAVAILABLE, 503, "UNAVAILABLE" },
                { SBX_STATUS_UNIMPLEMENTED, 501, "NOT_SUPPORTED" },
                { SBX_STATUS_CANCELLED, 499, "CANCELLED" },
        };
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (map[i].status == status) {
                        *ret_code = map[i].code;
                        return map[i].http;
                }
        *ret_code = "INTERNAL";
        return 500;
}

static char *status_body(const SbxRpcStatus *st, unsigned *ret_http)
{
        const char *code;

        *ret_http = gw_http_status_for(st->code, &code);
        return gw_error_body(code, "%s", isempty(st->message) ? sbx_status_name(st->code) : st->message);
}

/* Per-call options with the client's token. */
typedef struct Auth {
        char header[2048];
        SbxRpcMetadata md;
        SbxRpcCallOptions opts;
} Auth;

static void auth_init(Auth *a, const char *token, usec_t timeout)
{
        snprintf(a->header, sizeof(a->header), "Bearer %s", token);
        a->md = (SbxRpcMetadata){ .key = "authorization", .value = a->header };
        a->opts = (SbxRpcCallOptions){ .timeout = timeout, .metadata = &a->md, .n_metadata = 1 };
}

static bool state_terminal(Sbx__V1__SandboxState s)
{
        return s == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED ||
               s == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED ||
               s == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_LOST;
}

/* ---- sandboxes ---- */

struct GwSandbox {
        unsigned n_ref;
        Gateway *gw;
        char id[SBX_SANDBOX_ID_LEN + 1];
        SbxRpcChannel *channel;
        GwLink sessions;
        unsigned n_sessions;
        bool ended;
        bool registered;

        /* The Watch that learns when the sandbox ends. */
        char *watch_token;
        SbxRpcClientCall *watch;
        uv_timer_t *watch_timer;

        /* The creator's Attach (session sandboxes). */
        char *attach_token;
        SbxRpcClientCall *attach;
        uv_timer_t *attach_timer;
        bool attached;
        unsigned attach_failures;
};

static void sandbox_ended(GwSandbox *sb, const char *reason, int code);
static void watch_start(GwSandbox *sb);
static void attach_start(GwSandbox *sb);

GwSandbox *gw_sandbox_ref(GwSandbox *sb)
{
        if (sb)
                sb->n_ref++;
        return sb;
}

static void timer_closed(uv_handle_t *h)
{
        free(h);
}

static void stop_timer(uv_timer_t **t)
{
        if (*t) {
                uv_timer_stop(*t);
                uv_close((uv_handle_t *)*t, timer_closed);
                *t = NULL;
        }
}

GwSandbox *gw_sandbox_unref(GwSandbox *sb)
{
        if (!sb || --sb->n_ref > 0)
                return NULL;
        if (sb->registered)
                sbx_hashmap_remove(sb->gw->sandboxes, sb->id);
        stop_timer(&sb->watch_timer);
        stop_timer(&sb->attach_timer);
        /* The calls' callbacks hold references, so none is running here. */
        sbx_rpc_channel_free(sb->channel);
        free(sb->watch_token);
        free(sb->attach_token);
        free(sb);
        return NULL;
}

const char *gw_sandbox_id(const GwSandbox *sb)
{
        return sb->id;
}

SbxRpcChannel *gw_sandbox_channel(const GwSandbox *sb)
{
        return sb->channel;
}

/* The sandbox's object, made (with its data channel) on first use. */
static int sandbox_get(Gateway *gw, const Sbx__V1__Sandbox *s, GwSandbox **ret)
{
        GwSandbox *sb = sbx_hashmap_get(gw->sandboxes, s->id);
        SbxRpcChannelOptions o = { .tls = gw->data_use_tls ? &gw->data_tls : NULL,
                                   .bearer_token = s->access_token,
                                   .keepalive_time = 30 * USEC_PER_SEC };
        int r;

        if (sb && !sb->ended) {
                *ret = gw_sandbox_ref(sb);
                return 0;
        }
        if (isempty(s->data_address) || isempty(s->access_token))
                return -EPROTO;
        sb = new0(GwSandbox, 1);
        if (!sb)
                return -ENOMEM;
        sb->n_ref = 1;
        sb->gw = gw;
        snprintf(sb->id, sizeof(sb->id), "%s", s->id);
        gw_list_init(&sb->sessions);
        r = sbx_rpc_channel_new(gw->rpc, s->data_address, &o, &sb->channel);
        if (r < 0) {
                free(sb);
                return r;
        }
        /* A previous object for an ended sandbox of the same id stays until its last reference. */
        if (sbx_hashmap_put(gw->sandboxes, sb->id, sb, NULL) >= 0)
                sb->registered = true;
        *ret = sb;
        return 0;
}

void gw_sandbox_add_session(GwSandbox *sb, GwSession *s, GwLink *link)
{
        gw_list_add(&sb->sessions, link);
        sb->n_sessions++;
        gw_sandbox_ref(sb);
        if (!sb->watch && !sb->watch_timer && !sb->ended)
                watch_start(sb);
}

void gw_sandbox_remove_session(GwSandbox *sb, GwLink *link)
{
        gw_list_del(link);
        sb->n_sessions--;
        if (sb->n_sessions == 0) {
                stop_timer(&sb->watch_timer);
                if (sb->watch)
                        /* Its status callback releases the reference the call holds. */
                        sbx_rpc_client_call_cancel(sb->watch);
        }
        gw_sandbox_unref(sb);
}

void gw_sandbox_close_sessions(GwSandbox *sb, int code, const char *reason)
{
        for (GwLink *l = sb->sessions.next; l != &sb->sessions; l = l->next)
                gw_session_close(gw__session_from_link(l), code, reason);
}

static void sandbox_ended(GwSandbox *sb, const char *reason, int code)
{
        if (sb->ended)
                return;
        sb->ended = true;
        log_debug_fields(LOG_FIELDS({ "sandbox", sb->id }), "Sandbox ended (%s); closing its sessions",
                         strempty(reason));
        gw_sandbox_close_sessions(sb, code, reason);
        if (sb->registered) {
                sbx_hashmap_remove(sb->gw->sandboxes, sb->id);
                sb->registered = false;
        }
}

/* ---- Watch ---- */

static void watch_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        GwSandbox *sb = userdata;
        const Sbx__V1__SandboxEvent *ev = (const Sbx__V1__SandboxEvent *)message;
        char reason[128];

        if (ev->sandbox && state_terminal(ev->sandbox->state)) {
                snprintf(reason, sizeof(reason), "Sandbox %s",
                         isempty(ev->sandbox->reason) ? "stopped" : ev->sandbox->reason);
                sandbox_ended(sb, reason, 1001);
        }
        protobuf_c_message_free_unpacked(message, NULL);
}

/* Retry timers belong to their sandbox (which stops them when it goes) and hold no reference. */
static void watch_retry(uv_timer_t *t)
{
        GwSandbox *sb = t->data;
        stop_timer(&sb->watch_timer);
        watch_start(sb);
}

static void watch_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        GwSandbox *sb = userdata;

        sb->watch = sbx_rpc_client_call_unref(sb->watch);
        if (st->code == SBX_STATUS_NOT_FOUND)
                sandbox_ended(sb, "Sandbox stopped", 1001);
        else if (!sb->ended && sb->n_sessions > 0 && !sb->gw->stopping && !sb->watch_timer) {
                /* A scheduler restart or a lost connection: watch again shortly. */
                sb->watch_timer = new0(uv_timer_t, 1);
                if (sb->watch_timer) {
                        uv_timer_init(sb->gw->loop, sb->watch_timer);
                        sb->watch_timer->data = sb;
                        uv_timer_start(sb->watch_timer, watch_retry, RETRY_MS, 0);
                }
        }
        gw_sandbox_unref(sb);
}

static void watch_start(GwSandbox *sb)
{
        Sbx__V1__WatchSandboxesRequest req = SBX__V1__WATCH_SANDBOXES_REQUEST__INIT;
        SbxRpcClientCallbacks cbs = { .on_message = watch_message, .on_status = watch_status };
        Auth a;

        if (sb->watch || !sb->watch_token || sb->gw->stopping)
                return;
        auth_init(&a, sb->watch_token, 0);
        req.id = sb->id;
        req.send_initial = true;
        gw_sandbox_ref(sb);
        if (sbx_rpc_call_start(sb->gw->scheduler, &sbx_api_sandboxes_watch, &req.base, &a.opts, &cbs, sb,
                               &sb->watch) < 0)
                gw_sandbox_unref(sb);
}

/* ---- Attach (session sandboxes) ---- */

static void attach_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        GwSandbox *sb = userdata;
        const Sbx__V1__AttachResponse *resp = (const Sbx__V1__AttachResponse *)message;

        sb->attached = true;
        sb->attach_failures = 0;
        if (resp->sandbox && state_terminal(resp->sandbox->state)) {
                char reason[128];
                snprintf(reason, sizeof(reason), "Sandbox %s",
                         isempty(resp->sandbox->reason) ? "stopped" : resp->sandbox->reason);
                sandbox_ended(sb, reason, 1001);
        }
        protobuf_c_message_free_unpacked(message, NULL);
}

static void attach_retry(uv_timer_t *t)
{
        GwSandbox *sb = t->data;
        stop_timer(&sb->attach_timer);
        attach_start(sb);
}

static void attach_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        GwSandbox *sb = userdata;

        sb->attach = sbx_rpc_client_call_unref(sb->attach);
        if (!sb->attach_token || sb->ended || sb->gw->stopping) {
                /* Detached on purpose, or the sandbox is over. */
        } else if (st->code == SBX_STATUS_OK || st->code == SBX_STATUS_NOT_FOUND ||
                   st->code == SBX_STATUS_FAILED_PRECONDITION || ++sb->attach_failures > ATTACH_RETRIES) {
                /* The scheduler ended the stream because the sandbox ended (or cannot be held). */
                sandbox_ended(sb, isempty(st->message) ? "Sandbox stopped" : st->message, 1001);
        } else if (!sb->attach_timer) {
                sb->attach_timer = new0(uv_timer_t, 1);
                if (sb->attach_timer) {
                        uv_timer_init(sb->gw->loop, sb->attach_timer);
                        sb->attach_timer->data = sb;
                        uv_timer_start(sb->attach_timer, attach_retry, RETRY_MS, 0);
                }
        }
        gw_sandbox_unref(sb);
}

static void attach_start(GwSandbox *sb)
{
        Sbx__V1__AttachRequest req = SBX__V1__ATTACH_REQUEST__INIT;
        SbxRpcClientCallbacks cbs = { .on_message = attach_message, .on_status = attach_status };
        Auth a;

        if (sb->attach || !sb->attach_token || sb->gw->stopping)
                return;
        auth_init(&a, sb->attach_token, 0);
        req.id = sb->id;
        gw_sandbox_ref(sb);
        if (sbx_rpc_call_start(sb->gw->scheduler, &sbx_api_sandboxes_attach, &req.base, &a.opts, &cbs, sb,
                               &sb->attach) < 0)
                gw_sandbox_unref(sb);
}

void gw_sandbox_detach(GwSandbox *sb)
{
        sb->attach_token = mfree(sb->attach_token);
        stop_timer(&sb->attach_timer);
        if (sb->attach)
                /* The scheduler sees the stream end and stops the sandbox after its grace period. */
                sbx_rpc_client_call_cancel(sb->attach);
}

void gw_sandboxes_close_all(Gateway *gw)
{
        size_t state = 0;
        void *v;

        while (sbx_hashmap_next(gw->sandboxes, &state, NULL, &v)) {
                GwSandbox *sb = v;
                stop_timer(&sb->watch_timer);
                stop_timer(&sb->attach_timer);
                if (sb->watch)
                        sbx_rpc_client_call_cancel(sb->watch);
                gw_sandbox_close_sessions(sb, 1001, "sbx-gateway is shutting down");
        }
}

/* ---- upgrades ---- */

typedef enum UpgradeState {
        UPGRADE_PENDING,
        UPGRADE_ACCEPTED,
        UPGRADE_REFUSED,
} UpgradeState;

struct GwUpgrade {
        Gateway *gw;
        GwConn *conn;
        GwUpgradeKind kind;
        char *token;
        char region[4];
        char id[SBX_SANDBOX_ID_LEN + 1];
        bool session;
        SbxRpcClientCall *call;
        UpgradeState state;
        unsigned http_status;
        char *error_body;
        GwSandbox *sandbox;
};

static void upgrade_free(GwUpgrade *u)
{
        if (!u)
                return;
        free(u->token);
        free(u->error_body);
        gw_sandbox_unref(u->sandbox);
        free(u);
}

static int refuse_now(struct lws *wsi, unsigned status, const char *code, const char *fmt, ...)
        _printf_(4, 5);

static int refuse_now(struct lws *wsi, unsigned status, const char *code, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL, *body = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        body = gw_error_body(code, "%s", strempty(msg));
        return gw_http_write_response(wsi, status, body ? body : "{}") < 0 ? -1 : 1;
}

/* The client gave up before the handshake finished: a sandbox made for it is not wanted. */
static void delete_orphan(Gateway *gw, const char *token, const char *id)
{
        Sbx__V1__DeleteSandboxRequest req = SBX__V1__DELETE_SANDBOX_REQUEST__INIT;
        Auth a;

        auth_init(&a, token, gw->cfg.call_timeout);
        req.id = (char *)id;
        (void)sbx_rpc_unary(gw->scheduler, &sbx_api_sandboxes_delete, &req.base, &a.opts, NULL, NULL, NULL);
}

static void upgrade_finish(GwUpgrade *u)
{
        if (!u->conn) {
                upgrade_free(u);
                return;
        }
        if (gw_conn_replay(u->conn) < 0) {
                /* The connection is gone; gw_upgrade_abandon() runs when it is freed. */
                log_debug("Could not hand the handshake back to libwebsockets");
        }
}

static void upgrade_refuse(GwUpgrade *u, unsigned http, char *body)
{
        u->state = UPGRADE_REFUSED;
        u->http_status = http;
        u->error_body = body;
}

static void upgrade_reply(const SbxRpcStatus *st, ProtobufCMessage *response, void *userdata)
{
        GwUpgrade *u = userdata;
        const Sbx__V1__Sandbox *s = (const Sbx__V1__Sandbox *)response;
        Gateway *gw = u->gw;
        const char *what = u->kind == GW_UPGRADE_CREATE ? "create" : "connect";
        int r;

        u->call = sbx_rpc_client_call_unref(u->call);
        if (!u->conn) {
                if (st->code == SBX_STATUS_OK && u->kind == GW_UPGRADE_CREATE)
                        delete_orphan(gw, u->token, s->id);
                if (response)
                        protobuf_c_message_free_unpacked(response, NULL);
                upgrade_free(u);
                return;
        }
        if (st->code != SBX_STATUS_OK) {
                unsigned http;
                char *body = status_body(st, &http);
                upgrade_refuse(u, http, body);
                sbx_counter_inc(gw->m.sandboxes_created, SBX_LABELS(what, sbx_status_name(st->code)));
                log_debug("Handshake (%s) refused: %s: %s", what, sbx_status_name(st->code),
                          strempty(st->message));
        } else if (s->state != SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING) {
                char state[64];
                const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
                        &sbx__v1__sandbox_state__descriptor, (int)s->state);
                snprintf(state, sizeof(state), "%s", v ? v->name + strlen("SANDBOX_STATE_") : "UNKNOWN");
                upgrade_refuse(u, 409,
                               gw_error_body("SANDBOX_NOT_RUNNING", "Sandbox %s is %s%s%s%s", s->id, state,
                                             isempty(s->reason) ? "" : " (", strempty(s->reason),
                                             isempty(s->reason) ? "" : ")"));
                sbx_counter_inc(gw->m.sandboxes_created, SBX_LABELS(what, "NOT_RUNNING"));
        } else if ((r = sandbox_get(gw, s, &u->sandbox)) < 0) {
                upgrade_refuse(u, 502,
                               gw_error_body("INTERNAL", "Cannot reach the data plane of sandbox %s: %s",
                                             s->id, sbx_error_message(r)));
                sbx_counter_inc(gw->m.sandboxes_created, SBX_LABELS(what, "INTERNAL"));
        } else {
                u->state = UPGRADE_ACCEPTED;
                snprintf(u->id, sizeof(u->id), "%s", s->id);
                if (!u->sandbox->watch_token)
                        u->sandbox->watch_token = strdup(u->token);
                if (u->kind == GW_UPGRADE_CREATE && u->session && !u->sandbox->attach_token) {
                        u->sandbox->attach_token = strdup(u->token);
                        attach_start(u->sandbox);
                }
                sbx_counter_inc(gw->m.sandboxes_created, SBX_LABELS(what, "OK"));
                log_debug_fields(LOG_FIELDS({ "sandbox", s->id }), "Handshake (%s) accepted", what);
        }
        if (response)
                protobuf_c_message_free_unpacked(response, NULL);
        upgrade_finish(u);
}

static int start_create(GwUpgrade *u, const GwSandboxConfig *c)
{
        Gateway *gw = u->gw;
        Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
        _cleanup_free_ Sbx__V1__CreateSandboxRequest__LabelsEntry *labels = NULL;
        _cleanup_free_ Sbx__V1__CreateSandboxRequest__LabelsEntry **label_ptrs = NULL;
        _cleanup_free_ Sbx__V1__SecretInput *secrets = NULL;
        _cleanup_free_ Sbx__V1__SecretInput **secret_ptrs = NULL;
        Sbx__V1__AllowNet allow = SBX__V1__ALLOW_NET__INIT;
        Auth a;

        req.region = u->region;
        req.memory_mb = c->memory_mb;
        req.session = !c->has_stop_at;
        if (c->has_stop_at) {
                int64_t left = c->stop_at_ms - (int64_t)(sbx_now_realtime() / USEC_PER_MSEC);
                /* The client computed the deadline on its own clock; a second is the shortest life. */
                req.lifetime_ms = (uint64_t)SBX_MAX(left, (int64_t)1000);
        }
        labels = new0(Sbx__V1__CreateSandboxRequest__LabelsEntry, c->n_labels + 1);
        label_ptrs = new0(Sbx__V1__CreateSandboxRequest__LabelsEntry *, c->n_labels + 1);
        secrets = new0(Sbx__V1__SecretInput, c->n_secrets + 1);
        secret_ptrs = new0(Sbx__V1__SecretInput *, c->n_secrets + 1);
        if (!labels || !label_ptrs || !secrets || !secret_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_labels; i++) {
                sbx__v1__create_sandbox_request__labels_entry__init(&labels[i]);
                labels[i].key = c->labels[i].key;
                labels[i].value = c->labels[i].value;
                label_ptrs[i] = &labels[i];
        }
        req.labels = label_ptrs;
        req.n_labels = c->n_labels;
        if (c->has_allow_net) {
                allow.entries = c->allow_net;
                allow.n_entries = strv_length(c->allow_net);
                req.allow_net = &allow;
        }
        for (size_t i = 0; i < c->n_secrets; i++) {
                sbx__v1__secret_input__init(&secrets[i]);
                secrets[i].name = c->secrets[i].name;
                secrets[i].hosts = c->secrets[i].hosts;
                secrets[i].n_hosts = strv_length(c->secrets[i].hosts);
                secrets[i].value = c->secrets[i].value;
                secret_ptrs[i] = &secrets[i];
        }
        req.secrets = secret_ptrs;
        req.n_secrets = c->n_secrets;
        u->session = req.session;
        auth_init(&a, u->token, gw->cfg.create_timeout);
        return sbx_rpc_unary(gw->scheduler, &sbx_api_sandboxes_create, &req.base, &a.opts, upgrade_reply, u,
                             &u->call);
}

static int start_connect(GwUpgrade *u)
{
        Sbx__V1__GetSandboxRequest req = SBX__V1__GET_SANDBOX_REQUEST__INIT;
        Auth a;

        req.id = u->id;
        req.with_access_token = true;
        auth_init(&a, u->token, u->gw->cfg.call_timeout);
        return sbx_rpc_unary(u->gw->scheduler, &sbx_api_sandboxes_get, &req.base, &a.opts, upgrade_reply, u,
                             &u->call);
}

static char *token_of(struct lws *wsi)
{
        char buf[1024];
        const char *t;

        if (lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_HTTP_AUTHORIZATION) <= 0)
                return NULL;
        t = startswith(buf, "Bearer ");
        if (!t)
                t = startswith(buf, "bearer ");
        while (t && *t == ' ')
                t++;
        return isempty(t) ? NULL : strdup(t);
}

int gw_upgrade_confirm(Gateway *gw, struct lws *wsi, GwUpgradeKind kind, const char *sandbox_id)
{
        GwConn *conn = gw_conn_from_wsi(wsi);
        GwUpgrade *u;
        GwSandboxConfigLimits limits = { .min_memory_mb = gw->cfg.min_memory_mb,
                                         .max_memory_mb = gw->cfg.max_memory_mb,
                                         .default_memory_mb = 1280 };
        _cleanup_(gw_sandbox_config_done) GwSandboxConfig config = { 0 };
        _cleanup_free_ char *problem = NULL, *header = NULL;
        const char *route = kind == GW_UPGRADE_CREATE ? "create" : "connect";
        int r;

        if (!conn)
                return -1;
        u = gw_conn_upgrade(conn);
        if (u) {
                /* The replay: the scheduler has answered. */
                if (u->state == UPGRADE_ACCEPTED)
                        return 0;
                if (u->state == UPGRADE_REFUSED) {
                        r = gw_http_write_response(wsi, u->http_status,
                                                   u->error_body ? u->error_body : "{}");
                        upgrade_free(gw_conn_take_upgrade(conn));
                        return r < 0 ? -1 : 1;
                }
                return -1;
        }

        sbx_counter_inc(gw->m.http_requests, SBX_LABELS(route));
        if (gw->stopping)
                return refuse_now(wsi, 503, "UNAVAILABLE", "sbx-gateway is shutting down");
        u = new0(GwUpgrade, 1);
        if (!u)
                return -1;
        u->gw = gw;
        u->kind = kind;
        u->token = token_of(wsi);
        if (!u->token) {
                upgrade_free(u);
                return refuse_now(
                        wsi, 401, "INVALID_TOKEN",
                        "Missing token: send \"Authorization: Bearer <token>\" (DENO_DEPLOY_TOKEN)");
        }
        if (!gw_conn_replayable(conn)) {
                upgrade_free(u);
                return refuse_now(wsi, 431, "TOO_LARGE", "The request headers are too large");
        }

        if (kind == GW_UPGRADE_CONNECT) {
                if (!sbx_sandbox_id_valid(sandbox_id)) {
                        upgrade_free(u);
                        return refuse_now(wsi, 400, "INVALID_ARGUMENT",
                                          "\"%s\" is not a sandbox id (sbx_<region>_<20 characters>)",
                                          sandbox_id);
                }
                snprintf(u->id, sizeof(u->id), "%s", sandbox_id);
                r = start_connect(u);
        } else {
                int n = lws_hdr_custom_length(wsi, "x-deno-sandbox-config:", 22);
                snprintf(u->region, sizeof(u->region), "%s", gw_conn_region(conn));
                if (n < 0) {
                        upgrade_free(u);
                        return refuse_now(wsi, 400, "INVALID_CONFIG",
                                          "Missing the x-deno-sandbox-config header");
                }
                header = malloc((size_t)n + 1);
                if (!header || lws_hdr_custom_copy(wsi, header, n + 1, "x-deno-sandbox-config:", 22) < 0) {
                        upgrade_free(u);
                        return -1;
                }
                r = gw_sandbox_config_parse(header, (size_t)n, &limits, &config, &problem);
                if (r < 0) {
                        upgrade_free(u);
                        sbx_counter_inc(gw->m.sandboxes_created, SBX_LABELS("create", "INVALID_CONFIG"));
                        if (r == -EOPNOTSUPP)
                                return refuse_now(wsi, 501, "NOT_SUPPORTED", "%s", strempty(problem));
                        if (r == -ENOMEM)
                                return -1;
                        return refuse_now(wsi, 400, "INVALID_CONFIG", "Invalid sandbox configuration: %s",
                                          problem ? problem : "malformed");
                }
                r = start_create(u, &config);
        }
        if (r < 0) {
                upgrade_free(u);
                return refuse_now(wsi, 500, "INTERNAL", "Could not call the scheduler: %s",
                                  sbx_error_message(r));
        }
        /* Hang this attempt up; the same request comes back once the scheduler has answered. */
        gw_conn_defer(conn, u);
        u->conn = conn;
        return -1;
}

const char *gw_upgrade_accepted_id(struct lws *wsi)
{
        GwConn *conn = gw_conn_from_wsi(wsi);
        GwUpgrade *u = conn ? gw_conn_upgrade(conn) : NULL;

        return u && u->state == UPGRADE_ACCEPTED ? u->id : NULL;
}

GwSession *gw_upgrade_establish(Gateway *gw, struct lws *wsi)
{
        GwConn *conn = gw_conn_from_wsi(wsi);
        GwUpgrade *u = conn ? gw_conn_upgrade(conn) : NULL;
        GwSession *s = NULL;

        if (!u || u->state != UPGRADE_ACCEPTED)
                return NULL;
        u = gw_conn_take_upgrade(conn);
        if (gw_session_new(gw, wsi, u->sandbox, u->kind == GW_UPGRADE_CREATE && u->session, &s) < 0)
                s = NULL;
        upgrade_free(u);
        return s;
}

void gw_upgrade_abandon(GwUpgrade *u)
{
        if (!u)
                return;
        u->conn = NULL;
        if (u->call) {
                /* upgrade_reply() frees it (and deletes a sandbox made in vain). */
                sbx_rpc_client_call_cancel(u->call);
                return;
        }
        if (u->state == UPGRADE_ACCEPTED && u->kind == GW_UPGRADE_CREATE && u->sandbox && u->session)
                /* Made for a client that left before the handshake ended: let it go. */
                gw_sandbox_detach(u->sandbox);
        upgrade_free(u);
}

/* ---- REST ---- */

struct GwRestCall {
        Gateway *gw;
        GwRestDone done;
        void *userdata;
        SbxRpcClientCall *call;
        bool cancelled;
        char *token;
        char id[SBX_SANDBOX_ID_LEN + 1];
        /* list */
        Sbx__V1__ListSandboxesRequest list;
        Sbx__V1__ListSandboxesRequest__LabelsEntry *entries;
        Sbx__V1__ListSandboxesRequest__LabelsEntry **entry_ptrs;
        char *page_token;
        unsigned pages;
        json_t *result;
};

static void rest_free(GwRestCall *c)
{
        free(c->token);
        if (c->entries)
                for (size_t i = 0; i < c->list.n_labels; i++) {
                        free(c->entries[i].key);
                        free(c->entries[i].value);
                }
        free(c->entries);
        free(c->entry_ptrs);
        free(c->page_token);
        json_decref(c->result);
        sbx_rpc_client_call_unref(c->call);
        free(c);
}

static void rest_end(GwRestCall *c, unsigned status, char *body)
{
        if (!c->cancelled)
                c->done(c->userdata, status, body);
        else
                free(body);
        rest_free(c);
}

static void rest_fail(GwRestCall *c, const SbxRpcStatus *st)
{
        unsigned http;
        char *body = status_body(st, &http);
        rest_end(c, http, body);
}

void gw_rest_cancel(GwRestCall *c)
{
        c->cancelled = true;
        if (c->call)
                sbx_rpc_client_call_cancel(c->call);
}

static GwRestCall *rest_new(Gateway *gw, const char *token, GwRestDone done, void *userdata)
{
        GwRestCall *c = new0(GwRestCall, 1);

        if (!c)
                return NULL;
        c->gw = gw;
        c->done = done;
        c->userdata = userdata;
        c->token = strdup(token);
        if (!c->token) {
                free(c);
                return NULL;
        }
        return c;
}

static json_t *iso_or_null(int64_t ms)
{
        char buf[GW_ISO_MAX];

        if (ms <= 0 || gw_iso_format(ms, buf) < 0)
                return json_null();
        return json_string(buf);
}

static json_t *sandbox_metadata(const Sbx__V1__Sandbox *s)
{
        json_t *labels = json_object();

        if (!labels)
                return NULL;
        for (size_t i = 0; s->spec && i < s->spec->n_labels; i++)
                json_object_set_new(
                        labels, s->spec->labels[i]->key,
                        gw_json_text(s->spec->labels[i]->value, strlen(s->spec->labels[i]->value)));
        return json_pack("{s:s, s:o, s:o, s:s, s:s, s:o}", "id", s->id, "createdAt",
                         iso_or_null(s->created_at_ms), "stoppedAt",
                         state_terminal(s->state) ? iso_or_null(s->ended_at_ms ? s->ended_at_ms : 1)
                                                  : json_null(),
                         "region", s->region, "status", state_terminal(s->state) ? "stopped" : "running",
                         "labels", labels);
}

static int list_next(GwRestCall *c);

static void list_reply(const SbxRpcStatus *st, ProtobufCMessage *response, void *userdata)
{
        GwRestCall *c = userdata;
        const Sbx__V1__ListSandboxesResponse *resp = (const Sbx__V1__ListSandboxesResponse *)response;

        c->call = sbx_rpc_client_call_unref(c->call);
        if (c->cancelled) {
                if (response)
                        protobuf_c_message_free_unpacked(response, NULL);
                rest_end(c, 499, NULL);
                return;
        }
        if (st->code != SBX_STATUS_OK) {
                rest_fail(c, st);
                return;
        }
        for (size_t i = 0; i < resp->n_sandboxes; i++) {
                json_t *m = sandbox_metadata(resp->sandboxes[i]);
                if (m)
                        json_array_append_new(c->result, m);
        }
        free(c->page_token);
        c->page_token = isempty(resp->next_page_token) ? NULL : strdup(resp->next_page_token);
        protobuf_c_message_free_unpacked(response, NULL);
        if (c->page_token && ++c->pages < LIST_PAGES_MAX && list_next(c) >= 0)
                return;
        rest_end(c, 200, json_dumps(c->result, JSON_COMPACT | JSON_PRESERVE_ORDER));
}

static int list_next(GwRestCall *c)
{
        Auth a;

        auth_init(&a, c->token, c->gw->cfg.call_timeout);
        c->list.page_token = c->page_token;
        c->list.page_size = 1000;
        return sbx_rpc_unary(c->gw->scheduler, &sbx_api_sandboxes_list, &c->list.base, &a.opts, list_reply,
                             c, &c->call);
}

int gw_rest_list(Gateway *gw, const char *token, SbxHashmap *labels, GwRestDone done, void *userdata,
                 GwRestCall **ret_call)
{
        GwRestCall *c = rest_new(gw, token, done, userdata);
        size_t state = 0, n = labels ? sbx_hashmap_size(labels) : 0, i = 0;
        const char *k;
        void *v;
        int r;

        if (!c)
                return -ENOMEM;
        sbx__v1__list_sandboxes_request__init(&c->list);
        c->result = json_array();
        c->entries = new0(Sbx__V1__ListSandboxesRequest__LabelsEntry, n + 1);
        c->entry_ptrs = new0(Sbx__V1__ListSandboxesRequest__LabelsEntry *, n + 1);
        if (!c->result || !c->entries || !c->entry_ptrs) {
                rest_free(c);
                return -ENOMEM;
        }
        while (labels && sbx_hashmap_next(labels, &state, &k, &v)) {
                sbx__v1__list_sandboxes_request__labels_entry__init(&c->entries[i]);
                c->entries[i].key = strdup(k);
                c->entries[i].value = strdup(v);
                c->entry_ptrs[i] = &c->entries[i];
                i++;
                c->list.n_labels = i;
                if (!c->entries[i - 1].key || !c->entries[i - 1].value) {
                        rest_free(c);
                        return -ENOMEM;
                }
        }
        c->list.labels = c->entry_ptrs;
        r = list_next(c);
        if (r < 0) {
                rest_free(c);
                return r;
        }
        if (ret_call)
                *ret_call = c;
        return 0;
}

static void kill_reply(const SbxRpcStatus *st, ProtobufCMessage *response, void *userdata)
{
        GwRestCall *c = userdata;
        GwSandbox *sb;

        c->call = sbx_rpc_client_call_unref(c->call);
        if (response)
                protobuf_c_message_free_unpacked(response, NULL);
        if (st->code != SBX_STATUS_OK) {
                rest_fail(c, st);
                return;
        }
        /* kill() waits for its socket to close: close every socket of the sandbox now. */
        sb = sbx_hashmap_get(c->gw->sandboxes, c->id);
        if (sb) {
                gw_sandbox_ref(sb);
                sandbox_ended(sb, "Sandbox killed", 1000);
                gw_sandbox_unref(sb);
        }
        log_info_fields(LOG_FIELDS({ "sandbox", c->id }), "Sandbox killed through the SDK");
        rest_end(c, 200, strdup("{}"));
}

int gw_rest_kill(Gateway *gw, const char *token, const char *id, GwRestDone done, void *userdata,
                 GwRestCall **ret_call)
{
        Sbx__V1__DeleteSandboxRequest req = SBX__V1__DELETE_SANDBOX_REQUEST__INIT;
        GwRestCall *c = rest_new(gw, token, done, userdata);
        Auth a;
        int r;

        if (!c)
                return -ENOMEM;
        snprintf(c->id, sizeof(c->id), "%s", id);
        req.id = c->id;
        /* The SDK gives up after 10 s: answer as soon as the stop is recorded. */
        auth_init(&a, token, SBX_MIN(gw->cfg.call_timeout, 8 * USEC_PER_SEC));
        r = sbx_rpc_unary(gw->scheduler, &sbx_api_sandboxes_delete, &req.base, &a.opts, kill_reply, c,
                          &c->call);
        if (r < 0) {
                rest_free(c);
                return r;
        }
        if (ret_call)
                *ret_call = c;
        return 0;
}

static void extend_reply(const SbxRpcStatus *st, ProtobufCMessage *response, void *userdata)
{
        GwRestCall *c = userdata;
        const Sbx__V1__ExtendSandboxResponse *resp = (const Sbx__V1__ExtendSandboxResponse *)response;
        char *body = NULL;

        c->call = sbx_rpc_client_call_unref(c->call);
        if (st->code != SBX_STATUS_OK) {
                rest_fail(c, st);
                return;
        }
        json_t *o = json_pack("{s:I}", "stop_at_ms", (json_int_t)resp->stop_at_ms);
        if (o)
                body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        protobuf_c_message_free_unpacked(response, NULL);
        rest_end(c, body ? 200 : 500, body);
}

int gw_rest_extend(Gateway *gw, const char *token, const char *id, const char *body, size_t len,
                   GwRestDone done, void *userdata, GwRestCall **ret_call)
{
        Sbx__V1__ExtendSandboxRequest req = SBX__V1__EXTEND_SANDBOX_REQUEST__INIT;
        GwRestCall *c;
        json_error_t err;
        json_t *o, *v;
        Auth a;
        int r;

        o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
        v = json_is_object(o) ? json_object_get(o, "stop_at_ms") : NULL;
        if (!json_is_integer(v) || json_integer_value(v) <= 0) {
                json_decref(o);
                done(userdata, 400,
                     gw_error_body("INVALID_ARGUMENT",
                                   "The body must be {\"stop_at_ms\": <Unix time in ms>}"));
                if (ret_call)
                        *ret_call = NULL;
                return 0;
        }
        req.stop_at_ms = json_integer_value(v);
        json_decref(o);
        c = rest_new(gw, token, done, userdata);
        if (!c)
                return -ENOMEM;
        snprintf(c->id, sizeof(c->id), "%s", id);
        req.id = c->id;
        auth_init(&a, token, gw->cfg.call_timeout);
        r = sbx_rpc_unary(gw->scheduler, &sbx_api_sandboxes_extend, &req.base, &a.opts, extend_reply, c,
                          &c->call);
        if (r < 0) {
                rest_free(c);
                return r;
        }
        if (ret_call)
                *ret_call = c;
        return 0;
}
