/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libwebsockets on the gateway's loop: one context, one vhost without a listening socket (the
 * relay adopts each connection into it), one protocol that serves both HTTP and WebSocket.
 *
 * Routes (deno-sandbox-protocol.md §2.1-2.3):
 *   GET    /api/v3/sandboxes/create           WebSocket: create a sandbox (config header)
 *   GET    /api/v3/sandbox/{id}/connect       WebSocket: connect to a running sandbox
 *   DELETE /api/v3/sandbox/{id}               kill, then close every socket of the sandbox
 *   PATCH  /api/v3/sandbox/{id}               extend: {"stop_at_ms"} in and out
 *   POST   /api/v3/sandbox/{id}/expose/{http,ssh,vscode}   501 NOT_SUPPORTED
 *   GET    /api/v2/sandboxes                  list, labels[k]=v filters
 *   /api/v2/{volumes,snapshots,apps,layers,revisions}…, POST /api/v2/sandboxes/{id}/deploy
 *                                             501 NOT_SUPPORTED (Deno Deploy features)
 *   anything else                             404
 * Errors are JSON {"code","message"}, which the SDK turns into its error classes.
 *
 * Teardown follows common/metrics/metrics-http.c: lws 4.1 on a foreign loop closes its handles over
 * the next iterations and must be destroyed a second time once they are gone.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "gateway/gw.h"

#define VHOST_NAME "sbx-gateway"
#define JSON_TYPE  "application/json"
#define BODY_MAX   4096
#define HEADER_MAX (64 * 1024)
#define RX_BUFFER  (64 * 1024)
#define ARG_MAX    1024

typedef enum RestKind {
        REST_NONE,
        REST_LIST,
        REST_KILL,
        REST_EXTEND,
        REST_NOT_SUPPORTED,
        REST_NOT_FOUND,
} RestKind;

/* One REST transaction; outlives the wsi when the scheduler's answer is still on its way. */
typedef struct RestReq {
        Gateway *gw;
        struct lws *wsi;
        RestKind kind;
        char *token;
        char id[SBX_SANDBOX_ID_LEN + 1];
        SbxHashmap *labels;
        SbxBuffer body;
        GwRestCall *call;
        bool answered;
        unsigned status;
        char *response;
        /* For the refusals: what the client asked for, in words. */
        const char *what;
} RestReq;

/* Per-wsi data (zeroed by lws; kept across keep-alive requests). */
typedef struct Pss {
        GwSession *session;
        RestReq *rest;
} Pss;

static void rest_free(RestReq *q)
{
        if (!q)
                return;
        free(q->token);
        sbx_hashmap_free(q->labels, free);
        sbx_buffer_done(&q->body);
        free(q->response);
        free(q);
}

static void lws_log_forward(int level, const char *line)
{
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                n--;
        log_debug("libwebsockets: %.*s", (int)n, line);
}

int gw_http_write_response(struct lws *wsi, unsigned status, const char *body)
{
        uint8_t hbuf[LWS_PRE + 1024];
        uint8_t *start = hbuf + LWS_PRE, *p = start, *end = hbuf + sizeof(hbuf) - 1;
        size_t n = body ? strlen(body) : 0;
        _cleanup_free_ uint8_t *b = NULL;

        if (lws_add_http_common_headers(wsi, status, JSON_TYPE, n, &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
                return -1;
        if (n == 0)
                return 0;
        b = malloc(LWS_PRE + n);
        if (!b)
                return -1;
        memcpy(b + LWS_PRE, body, n);
        /* lws keeps what the socket does not take yet and sends it before anything else. */
        return lws_write(wsi, b + LWS_PRE, n, LWS_WRITE_HTTP_FINAL) == (int)n ? 0 : -1;
}

/* "Bearer <token>" → the token (malloc'ed), or NULL. */
static char *bearer_token(struct lws *wsi)
{
        char buf[1024];
        int n = lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_HTTP_AUTHORIZATION);
        const char *t;

        if (n <= 0)
                return NULL;
        t = startswith(buf, "Bearer ");
        if (!t)
                t = startswith(buf, "bearer ");
        if (!t)
                return NULL;
        while (*t == ' ')
                t++;
        return isempty(t) ? NULL : strdup(t);
}

/* "/api/v3/sandbox/<id><rest>": copies the id and returns rest, or NULL. */
static const char *sandbox_path(const char *path, char id[SBX_SANDBOX_ID_LEN + 1])
{
        const char *p = startswith(path, "/api/v3/sandbox/");
        size_t n;

        if (!p)
                return NULL;
        n = strcspn(p, "/");
        if (n == 0 || n > SBX_SANDBOX_ID_LEN)
                return NULL;
        memcpy(id, p, n);
        id[n] = '\0';
        return p + n;
}

static bool deploy_path(const char *path)
{
        static const char *const prefixes[] = {
                "/api/v2/volumes", "/api/v2/snapshots", "/api/v2/apps",
                "/api/v2/layers",  "/api/v2/revisions", "/api/v2/timelines"
        };
        const char *p;

        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
                p = startswith(path, prefixes[i]);
                if (p && (*p == '\0' || *p == '/' || *p == '?'))
                        return true;
        }
        p = startswith(path, "/api/v2/sandboxes/");
        return p && endswith(p, "/deploy");
}

static void rest_done(void *userdata, unsigned status, char *body)
{
        RestReq *q = userdata;

        q->call = NULL;
        if (!q->wsi) {
                free(body);
                rest_free(q);
                return;
        }
        q->answered = true;
        q->status = status;
        q->response = body;
        lws_callback_on_writable(q->wsi);
}

static void rest_answer_now(RestReq *q, unsigned status, char *body)
{
        q->answered = true;
        q->status = status;
        q->response = body;
        lws_callback_on_writable(q->wsi);
}

static void rest_start(RestReq *q)
{
        int r = 0;

        switch (q->kind) {
        case REST_LIST:
                r = gw_rest_list(q->gw, q->token, q->labels, rest_done, q, &q->call);
                break;
        case REST_KILL:
                r = gw_rest_kill(q->gw, q->token, q->id, rest_done, q, &q->call);
                break;
        case REST_EXTEND:
                r = gw_rest_extend(q->gw, q->token, q->id, (const char *)sbx_buffer_data(&q->body),
                                   sbx_buffer_size(&q->body), rest_done, q, &q->call);
                break;
        case REST_NOT_SUPPORTED:
                rest_answer_now(q, 501,
                                gw_error_body("NOT_SUPPORTED",
                                              "%s is not supported by sbx yet (see docs/deno-sdk.md in sbx)",
                                              q->what));
                return;
        case REST_NOT_FOUND:
        case REST_NONE:
                rest_answer_now(q, 404, gw_error_body("NOT_FOUND", "No such endpoint"));
                return;
        }
        if (r < 0)
                rest_answer_now(
                        q, 500,
                        gw_error_body("INTERNAL", "Could not start the request: %s", sbx_error_message(r)));
}

/* labels[k]=v query arguments (lws hands them over URL-decoded, one per fragment). */
static int parse_labels(struct lws *wsi, SbxHashmap *labels)
{
        char arg[ARG_MAX];

        for (int i = 0; i < 64; i++) {
                int n = lws_hdr_copy_fragment(wsi, arg, sizeof(arg), WSI_TOKEN_HTTP_URI_ARGS, i);
                const char *k;
                char *close;

                if (n < 0)
                        break;
                k = startswith(arg, "labels[");
                if (!k)
                        continue;
                close = strstr(k, "]=");
                if (!close)
                        return -EINVAL;
                *close = '\0';
                char *v = strdup(close + 2);
                if (!v || sbx_hashmap_put(labels, k, v, NULL) < 0) {
                        free(v);
                        return -ENOMEM;
                }
        }
        return 0;
}

static int handle_http(Gateway *gw, struct lws *wsi, Pss *pss, const char *path)
{
        RestReq *q;
        char id[SBX_SANDBOX_ID_LEN + 1];
        const char *rest, *route;
        bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0,
             post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0,
             del = lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI) > 0,
             patch = lws_hdr_total_length(wsi, WSI_TOKEN_PATCH_URI) > 0;

        rest_free(pss->rest);
        pss->rest = q = new0(RestReq, 1);
        if (!q)
                return -1;
        q->gw = gw;
        q->wsi = wsi;
        sbx_buffer_set_limit(&q->body, BODY_MAX);

        if (get && streq(path, "/api/v2/sandboxes")) {
                q->kind = REST_LIST;
                route = "list";
                if (sbx_hashmap_new(&q->labels) < 0 || parse_labels(wsi, q->labels) == -ENOMEM)
                        return -1;
        } else if ((rest = sandbox_path(path, id)) && (del || patch) && *rest == '\0') {
                q->kind = del ? REST_KILL : REST_EXTEND;
                route = del ? "kill" : "extend";
                memcpy(q->id, id, sizeof(id));
        } else if ((rest = sandbox_path(path, id)) && post && startswith(rest, "/expose/")) {
                q->kind = REST_NOT_SUPPORTED;
                if (streq(rest, "/expose/http")) {
                        route = "expose_http";
                        q->what =
                                "Exposing a port of a sandbox over HTTPS (exposeHttp, the port option): sbx "
                                "has no ingress";
                } else if (streq(rest, "/expose/ssh")) {
                        route = "expose_ssh";
                        q->what = "SSH into a sandbox (exposeSsh, the ssh option): sbx has no ingress";
                } else {
                        route = "expose_other";
                        q->what = "VS Code in a sandbox (exposeVscode): sbx has no ingress";
                }
        } else if (deploy_path(path)) {
                q->kind = REST_NOT_SUPPORTED;
                route = "deploy_api";
                q->what = "This Deno Deploy API (volumes, snapshots, apps, layers, revisions, deploy)";
        } else {
                q->kind = REST_NOT_FOUND;
                route = "unknown";
        }
        sbx_counter_inc(gw->m.http_requests, SBX_LABELS(route));

        if (q->kind == REST_LIST || q->kind == REST_KILL || q->kind == REST_EXTEND) {
                q->token = bearer_token(wsi);
                if (!q->token) {
                        rest_answer_now(
                                q, 401,
                                gw_error_body("INVALID_TOKEN",
                                              "Missing token: send \"Authorization: Bearer <token>\""));
                        return 0;
                }
        }
        /* A body not read yet would be parsed as the next request: answer once lws consumed it. */
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
                char cl[32];
                if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 && !streq(cl, "0"))
                        return 0;
        }
        rest_start(q);
        return 0;
}

static int write_rest_response(struct lws *wsi, Pss *pss)
{
        RestReq *q = pss->rest;
        int r;

        if (!q || !q->answered)
                return 0;
        r = gw_http_write_response(wsi, q->status, q->response ? q->response : "{}");
        pss->rest = NULL;
        q->wsi = NULL;
        rest_free(q);
        if (r < 0)
                return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void rest_drop(Pss *pss)
{
        RestReq *q = pss->rest;

        if (!q)
                return;
        pss->rest = NULL;
        q->wsi = NULL;
        if (q->call) {
                /* Its answer comes later and frees it. */
                gw_rest_cancel(q->call);
                q->call = NULL;
        }
        rest_free(q);
}

static int confirm_upgrade(Gateway *gw, struct lws *wsi)
{
        char path[256], id[SBX_SANDBOX_ID_LEN + 1];
        const char *rest;

        if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0) {
                sbx_counter_inc(gw->m.http_requests, SBX_LABELS("unknown"));
                return gw_http_write_response(
                               wsi, 404, "{\"code\":\"NOT_FOUND\",\"message\":\"No such endpoint\"}") < 0
                               ? -1
                               : 1;
        }
        if (streq(path, "/api/v3/sandboxes/create"))
                return gw_upgrade_confirm(gw, wsi, GW_UPGRADE_CREATE, NULL);
        rest = sandbox_path(path, id);
        if (rest && streq(rest, "/connect"))
                return gw_upgrade_confirm(gw, wsi, GW_UPGRADE_CONNECT, id);
        sbx_counter_inc(gw->m.http_requests, SBX_LABELS("unknown"));
        _cleanup_free_ char *body = gw_error_body("NOT_FOUND", "No WebSocket endpoint here");
        return gw_http_write_response(wsi, 404, body) < 0 ? -1 : 1;
}

static int add_headers(struct lws *wsi, void *in)
{
        struct lws_process_html_args *a = in;
        const char *id = gw_upgrade_accepted_id(wsi);

        if (!id)
                return 0;
        if (lws_add_http_header_by_name(
                    wsi, (const unsigned char *)"x-deno-sandbox-id:", (const unsigned char *)id,
                    (int)strlen(id), (unsigned char **)&a->p, (unsigned char *)a->p + a->max_len))
                return -1;
        return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct lws_vhost *vh = lws_get_vhost(wsi);
        Gateway *gw = vh ? lws_get_vhost_user(vh) : NULL;
        Pss *pss = user;

        switch (reason) {
        case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
                if (!gw)
                        return -1;
                if (!in || strcasecmp(in, "websocket") != 0)
                        return -1;
                return confirm_upgrade(gw, wsi);
        case LWS_CALLBACK_ADD_HEADERS:
                return add_headers(wsi, in);
        case LWS_CALLBACK_ESTABLISHED:
                if (!gw || !pss)
                        return -1;
                pss->session = gw_upgrade_establish(gw, wsi);
                return pss->session ? 0 : -1;
        case LWS_CALLBACK_RECEIVE:
                if (!pss || !pss->session)
                        return -1;
                return gw_session_receive(pss->session, in, len, lws_is_first_fragment(wsi),
                                          lws_is_final_fragment(wsi) &&
                                                  lws_remaining_packet_payload(wsi) == 0);
        case LWS_CALLBACK_SERVER_WRITEABLE:
                if (!pss || !pss->session)
                        return 0;
                return gw_session_writable(pss->session);
        case LWS_CALLBACK_CLOSED:
                if (pss && pss->session) {
                        gw_session_closed(pss->session);
                        pss->session = NULL;
                }
                return 0;
        case LWS_CALLBACK_HTTP:
                if (!gw || !pss)
                        return -1;
                return handle_http(gw, wsi, pss, in ? in : "");
        case LWS_CALLBACK_HTTP_BODY:
                if (pss && pss->rest && sbx_buffer_append(&pss->rest->body, in, len) < 0) {
                        _cleanup_free_ char *body =
                                gw_error_body("TOO_LARGE", "The request body is too large");
                        (void)gw_http_write_response(wsi, 413, body);
                        return -1;
                }
                return 0;
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                if (pss && pss->rest && !pss->rest->answered && !pss->rest->call)
                        rest_start(pss->rest);
                return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
                if (!pss)
                        return 0;
                return write_rest_response(wsi, pss);
        case LWS_CALLBACK_CLOSED_HTTP:
                if (pss)
                        rest_drop(pss);
                break;
        case LWS_CALLBACK_WSI_DESTROY:
                if (pss) {
                        rest_drop(pss);
                        if (pss->session) {
                                gw_session_closed(pss->session);
                                pss->session = NULL;
                        }
                }
                gw_conn_wsi_gone(wsi);
                break;
        default:
                break;
        }
        return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
        { .name = "sbx",
          .callback = callback,
          .per_session_data_size = sizeof(Pss),
          .rx_buffer_size = RX_BUFFER },
        { 0 },
};

typedef struct HandleProbe {
        const void *context;
        bool found;
} HandleProbe;

static void probe_handle(uv_handle_t *h, void *arg)
{
        HandleProbe *p = arg;
        if (h->data == p->context)
                p->found = true;
}

static bool lws_handles_present(uv_loop_t *loop, const struct lws_context *context)
{
        HandleProbe p = { .context = context };
        uv_walk(loop, probe_handle, &p);
        return p.found;
}

int gw_http_new(Gateway *gw)
{
        struct lws_context_creation_info info = { 0 };
        void *foreign_loops[1] = { gw->loop };

        lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_forward);
        info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
        info.foreign_loops = foreign_loops;
        info.pcontext = &gw->lws_alive;
        info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
        info.protocols = protocols;
        info.vhost_name = VHOST_NAME;
        info.user = gw;
        info.gid = -1;
        info.uid = -1;
        /* The config header may be large (secrets); lws refuses requests beyond this. */
        info.max_http_header_data2 = HEADER_MAX;
        info.timeout_secs = 30;

        gw->lws = lws_create_context(&info);
        if (!gw->lws)
                return -EIO;
        gw->lws_alive = gw->lws;
        gw->vhost = lws_get_vhost_by_name(gw->lws, VHOST_NAME);
        if (!gw->vhost)
                return -EIO;
        return 0;
}

static void (*close_done)(Gateway *gw);

static void reaper_closed(uv_handle_t *h)
{
        Gateway *gw = h->data;
        if (close_done)
                close_done(gw);
}

static void on_reaper(uv_prepare_t *handle)
{
        Gateway *gw = handle->data;

        if (gw->lws_alive) {
                if (lws_handles_present(gw->loop, gw->lws))
                        return;
                lws_context_destroy(gw->lws);
                if (gw->lws_alive)
                        return;
        }
        gw->lws = NULL;
        uv_prepare_stop(handle);
        uv_close((uv_handle_t *)handle, reaper_closed);
}

void gw_http_close(Gateway *gw, void (*done)(Gateway *gw))
{
        close_done = done;
        if (gw->lws)
                lws_context_destroy(gw->lws);
        uv_prepare_init(gw->loop, &gw->reaper);
        gw->reaper.data = gw;
        uv_prepare_start(&gw->reaper, on_reaper);
}
