/* SPDX-License-Identifier: Apache-2.0 */
#include "common/metrics/metrics-http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/base/buffer.h"
#include "common/base/macro.h"
#include "common/base/parse.h"
#include "common/base/string-util.h"
#include "common/log/log.h"

/*
 * The listening socket is ours, not lws's: binding it ourselves gives the caller the real errno
 * (-EADDRINUSE, -EACCES, -EADDRNOTAVAIL) where lws would only fail context creation, and keeps the
 * address syntax in one place. Each accepted connection is handed to lws, which speaks HTTP on it.
 *
 * Closing is asynchronous, as everything on a libuv loop. lws 4.1 on a foreign libuv loop closes
 * its handles over the next loop iterations but never frees the context by itself: the context has
 * to be destroyed a second time, and only once lws's own handles have closed (earlier, lws frees
 * memory that libuv still holds in its closing queue). A prepare handle ("reaper") waits for that
 * moment, makes the second call and then closes itself; `done` runs when the reaper and the
 * listener handles have closed, which is the last time the server touches the loop. lws never
 * stops or closes the loop itself when the loop is foreign.
 */

#define LISTEN_BACKLOG       128
#define WRITE_CHUNK          16384
#define VHOST_NAME           "sbx-metrics"
#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CONTENT_TYPE_TEXT    "text/plain; charset=utf-8"

struct SbxMetricsServer {
        uv_loop_t *loop;
        SbxMetrics *metrics;
        SbxReadyFn ready;
        void *ready_userdata;
        struct lws_context *context;
        struct lws_vhost *vhost;
        /* lws writes NULL here (creation info .pcontext) once it has freed the context. */
        struct lws_context *context_alive;
        /* Whether lws's own loop handles could be recognised after start-up; see on_reaper(). */
        bool lws_handles_visible;

        int listen_fd;
        uv_poll_t listen_poll;
        uv_prepare_t reaper;
        unsigned handles_open;

        bool closing;
        void (*done)(void *userdata);
        void *done_userdata;
};

/*
 * Per-connection state, allocated zeroed by lws (per_session_data_size) and kept across keep-alive
 * requests, so each request starts by resetting it.
 */
typedef struct Session {
        SbxBuffer body;
        size_t sent;
        unsigned status;
        const char *content_type;
        bool head;
        /* The response waits until lws has read the request body. */
        bool pending;
} Session;

static void lws_log_forward(int level, const char *line)
{
        size_t n = strlen(line);

        /* lws ends its lines with a newline; the log sink adds its own. */
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                n--;
        log_debug("libwebsockets: %.*s", (int)n, line);
}

/* Turns "host:port", "[v6]:port" or ":port" into a socket address for bind(). */
static int parse_address(const char *address, struct sockaddr_storage *ret_sa, socklen_t *ret_len)
{
        struct sockaddr_storage sa = { 0 };
        _cleanup_free_ char *host = NULL;
        const char *port_str;
        bool bracketed = false;
        socklen_t len;
        uint32_t port;

        if (isempty(address))
                return -EINVAL;

        if (address[0] == '[') {
                const char *close = strchr(address, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                host = strndup(address + 1, (size_t)(close - address - 1));
                port_str = close + 2;
                bracketed = true;
        } else {
                const char *colon = strrchr(address, ':');
                /* An IPv6 address without brackets leaves no way to tell where the port starts. */
                if (!colon || memchr(address, ':', (size_t)(colon - address)))
                        return -EINVAL;
                host = strndup(address, (size_t)(colon - address));
                port_str = colon + 1;
        }
        if (!host)
                return -ENOMEM;
        if (sbx_parse_uint32(port_str, &port) < 0 || port > UINT16_MAX)
                return -EINVAL;

        if (isempty(host) && !bracketed) {
                /* Every address: a dual-stack IPv6 socket, see bind_listener(). */
                struct sockaddr_in6 sin6 = {
                        .sin6_family = AF_INET6,
                        .sin6_port = htons((uint16_t)port),
                        .sin6_addr = in6addr_any,
                };
                memcpy(&sa, &sin6, sizeof(sin6));
                len = sizeof(sin6);
        } else if (bracketed) {
                struct sockaddr_in6 sin6 = {
                        .sin6_family = AF_INET6,
                        .sin6_port = htons((uint16_t)port),
                };
                if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
                        return -EINVAL;
                memcpy(&sa, &sin6, sizeof(sin6));
                len = sizeof(sin6);
        } else {
                struct sockaddr_in sin = {
                        .sin_family = AF_INET,
                        .sin_port = htons((uint16_t)port),
                };
                /* Addresses only: resolving names would block the loop. */
                if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
                        return -EINVAL;
                memcpy(&sa, &sin, sizeof(sin));
                len = sizeof(sin);
        }
        *ret_sa = sa;
        *ret_len = len;
        return 0;
}

static int sockaddr_port(const struct sockaddr_storage *sa)
{
        if (sa->ss_family == AF_INET6)
                return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

static int bind_listener(const struct sockaddr_storage *sa, socklen_t len, int *ret_fd, int *ret_port)
{
        _cleanup_close_ int fd = -1;
        struct sockaddr_storage bound;
        socklen_t bound_len = sizeof(bound);
        bool any6 = sa->ss_family == AF_INET6 &&
                    IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
        int one = 1, zero = 0;

        fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 && any6 && errno == EAFNOSUPPORT) {
                /* A kernel without IPv6: "all addresses" falls back to every IPv4 address. */
                struct sockaddr_in sin = {
                        .sin_family = AF_INET,
                        .sin_port = htons((uint16_t)sockaddr_port(sa)),
                        .sin_addr.s_addr = htonl(INADDR_ANY),
                };
                struct sockaddr_storage sa4 = { 0 };

                memcpy(&sa4, &sin, sizeof(sin));
                return bind_listener(&sa4, sizeof(sin), ret_fd, ret_port);
        }
        if (fd < 0)
                return negative_errno();

        /* A restarted daemon must not wait for the TIME_WAIT connections of its predecessor. */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return negative_errno();
        /* Explicit, because net.ipv6.bindv6only may say otherwise. */
        if (any6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
                return negative_errno();
        if (bind(fd, (const struct sockaddr *)sa, len) < 0)
                return negative_errno();
        if (listen(fd, LISTEN_BACKLOG) < 0)
                return negative_errno();
        if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) < 0)
                return negative_errno();

        *ret_port = sockaddr_port(&bound);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static void on_listen_readable(uv_poll_t *handle, int status, int events)
{
        SbxMetricsServer *s = handle->data;

        if (status < 0) {
                log_debug("Metrics listener poll failed: %s", uv_strerror(status));
                return;
        }
        /* Take the whole backlog per wake-up. */
        for (;;) {
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        int e = errno;

                        if (e == EINTR || e == ECONNABORTED)
                                continue;
                        /* EMFILE and friends: the connection waits in the backlog for the next wake-up. */
                        if (e != EAGAIN)
                                log_debug_errno(-e, "Metrics listener accept failed: %m");
                        return;
                }
                /* On failure lws has already closed the fd. */
                if (!lws_adopt_socket_vhost(s->vhost, fd))
                        log_debug("libwebsockets could not adopt a metrics connection");
        }
}

static int start_response(struct lws *wsi, Session *sess)
{
        uint8_t buf[LWS_PRE + 512];
        uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
        size_t n = sbx_buffer_size(&sess->body);

        if (lws_add_http_common_headers(wsi, sess->status, sess->content_type, n, &p, end))
                return -1;
        if (sess->status == HTTP_STATUS_METHOD_NOT_ALLOWED &&
            lws_add_http_header_by_name(
                    wsi, (const unsigned char *)"allow:", (const unsigned char *)"GET, HEAD", 9, &p, end))
                return -1;
        if (lws_finalize_write_http_header(wsi, start, &p, end))
                return -1;

        if (sess->head || n == 0) {
                sbx_buffer_done(&sess->body);
                /* Non-zero means the connection is not kept alive: returning -1 has lws close it. */
                return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        lws_callback_on_writable(wsi);
        return 0;
}

static int write_body(struct lws *wsi, Session *sess)
{
        /* lws_write() wants LWS_PRE bytes of headroom it may scribble on, so chunks are copied out. */
        uint8_t buf[LWS_PRE + WRITE_CHUNK];
        size_t left = sbx_buffer_size(&sess->body) - sess->sent;
        size_t n = SBX_MIN(left, (size_t)WRITE_CHUNK);
        bool last = n == left;

        memcpy(buf + LWS_PRE, sbx_buffer_data(&sess->body) + sess->sent, n);
        /* lws buffers whatever the socket does not take, so a short count is an error. */
        if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
                return -1;
        sess->sent += n;
        if (!last) {
                lws_callback_on_writable(wsi);
                return 0;
        }
        sbx_buffer_done(&sess->body);
        return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int handle_request(struct lws *wsi, SbxMetricsServer *s, Session *sess, const char *path)
{
        bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
        bool head = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
        int r;

        sbx_buffer_done(&sess->body);
        *sess = (Session){ .head = head, .content_type = CONTENT_TYPE_TEXT };

        if (!get && !head) {
                sess->status = HTTP_STATUS_METHOD_NOT_ALLOWED;
                r = sbx_buffer_append_str(&sess->body, "method not allowed\n");
        } else if (streq(path, "/metrics")) {
                sess->status = HTTP_STATUS_OK;
                sess->content_type = CONTENT_TYPE_METRICS;
                r = sbx_metrics_render(s->metrics, &sess->body);
        } else if (streq(path, "/healthz")) {
                sess->status = HTTP_STATUS_OK;
                r = sbx_buffer_append_str(&sess->body, "ok\n");
        } else if (streq(path, "/readyz")) {
                const char *why = NULL;
                bool ready = !s->ready || s->ready(s->ready_userdata, &why);
                sess->status = ready ? HTTP_STATUS_OK : HTTP_STATUS_SERVICE_UNAVAILABLE;
                r = sbx_buffer_appendf(&sess->body, "%s\n", ready ? "ready" : why ? why : "not ready");
        } else {
                sess->status = HTTP_STATUS_NOT_FOUND;
                r = sbx_buffer_append_str(&sess->body, "not found\n");
        }
        if (r < 0) {
                log_debug_errno(r, "Failed to build the response for %s: %m", path);
                return -1;
        }

        /* A request body not yet read (POST, PUT) would otherwise be parsed as the next request on a
         * kept-alive connection: answer once lws has consumed it. */
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
                char cl[32];

                if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
                    !streq(cl, "0")) {
                        sess->pending = true;
                        return 0;
                }
        }
        return start_response(wsi, sess);
}

static int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        struct lws_vhost *vh = lws_get_vhost(wsi);
        SbxMetricsServer *s = vh ? lws_get_vhost_user(vh) : NULL;
        Session *sess = user;

        switch (reason) {
        case LWS_CALLBACK_HTTP:
                if (!s || !sess)
                        return -1;
                return handle_request(wsi, s, sess, in ? in : "");
        case LWS_CALLBACK_HTTP_BODY:
                /* Nothing here takes a body; it is read only to be discarded. */
                return 0;
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                if (sess && sess->pending) {
                        sess->pending = false;
                        return start_response(wsi, sess);
                }
                return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
                if (!sess || sess->sent >= sbx_buffer_size(&sess->body))
                        return 0;
                return write_body(wsi, sess);
        case LWS_CALLBACK_CLOSED_HTTP:
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        case LWS_CALLBACK_WSI_DESTROY:
                /* Whichever comes first on this connection; sbx_buffer_done() may run twice. */
                if (sess)
                        sbx_buffer_done(&sess->body);
                break;
        default:
                break;
        }
        return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
        { .name = "http", .callback = http_callback, .per_session_data_size = sizeof(Session) },
        { 0 },
};

static void on_handle_closed(uv_handle_t *handle)
{
        SbxMetricsServer *s = handle->data;
        void (*done)(void *userdata);
        void *userdata;

        if (--s->handles_open > 0)
                return;

        if (s->listen_fd >= 0)
                close(s->listen_fd);
        done = s->done;
        userdata = s->done_userdata;
        free(s);
        if (done)
                done(userdata);
}

typedef struct HandleProbe {
        const void *context;
        bool found;
} HandleProbe;

static void probe_handle(uv_handle_t *h, void *arg)
{
        HandleProbe *p = arg;

        /* lws 4.1 marks the handles it keeps for the whole context (an idle and a timer) with the
         * context in handle->data; it closes them last, after every connection's handle. */
        if (h->data == p->context)
                p->found = true;
}

static bool lws_handles_present(uv_loop_t *loop, const struct lws_context *context)
{
        HandleProbe p = { .context = context };

        uv_walk(loop, probe_handle, &p);
        return p.found;
}

static void on_reaper(uv_prepare_t *handle)
{
        SbxMetricsServer *s = handle->data;

        if (s->context_alive) {
                /* Without recognisable handles (an lws whose internals differ from 4.1's) there is no
                 * moment known to be safe for the second call: wait for lws to report the context freed
                 * through info.pcontext. */
                if (!s->lws_handles_visible || lws_handles_present(s->loop, s->context))
                        return;
                lws_context_destroy(s->context);
                if (s->context_alive)
                        return;
        }
        s->context = NULL;
        uv_prepare_stop(handle);
        uv_close((uv_handle_t *)handle, on_handle_closed);
}

/* Starts the asynchronous teardown; the server is freed once its handles have closed. */
static void server_shutdown(SbxMetricsServer *s)
{
        s->closing = true;
        uv_close((uv_handle_t *)&s->listen_poll, on_handle_closed);
        if (s->context)
                lws_context_destroy(s->context);
        /* The reaper runs even without a context, so that `done` always comes from the loop. */
        uv_prepare_start(&s->reaper, on_reaper);
}

int sbx_metrics_server_new(uv_loop_t *loop, SbxMetrics *metrics, const char *address, SbxMetricsServer **ret,
                           int *ret_port)
{
        _cleanup_close_ int fd = -1;
        struct lws_context_creation_info info = { 0 };
        void *foreign_loops[1] = { loop };
        SbxMetricsServer *s;
        struct sockaddr_storage sa;
        socklen_t sa_len;
        int port, r;

        if (!loop || !metrics || !ret)
                return -EINVAL;
        r = parse_address(address, &sa, &sa_len);
        if (r < 0)
                return r;
        r = bind_listener(&sa, sa_len, &fd, &port);
        if (r < 0)
                return r;

        s = new0(SbxMetricsServer, 1);
        if (!s)
                return -ENOMEM;
        s->loop = loop;
        s->metrics = metrics;
        s->listen_fd = -1;

        r = uv_poll_init(loop, &s->listen_poll, fd);
        if (r < 0) {
                free(s);
                return r;
        }
        s->listen_fd = TAKE_FD(fd);
        s->listen_poll.data = s;
        s->handles_open++;
        /* Cannot fail on Linux; initialised here so that closing never has to allocate or fail. */
        uv_prepare_init(loop, &s->reaper);
        s->reaper.data = s;
        s->handles_open++;

        /* From here on the server has handles on the loop, so failures go through the asynchronous
         * teardown: the memory is released once the caller runs the loop again. */

        /* lws writes its own log lines to stderr; library code speaks at debug level only. */
        lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_forward);

        info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
        info.foreign_loops = foreign_loops;
        info.pcontext = &s->context_alive;
        info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
        info.protocols = protocols;
        info.vhost_name = VHOST_NAME;
        info.user = s;
        info.gid = -1;
        info.uid = -1;

        s->context = lws_create_context(&info);
        if (!s->context) {
                log_debug("lws_create_context() failed; is libwebsockets-evlib-uv installed?");
                server_shutdown(s);
                return -EIO;
        }
        s->context_alive = s->context;
        s->lws_handles_visible = lws_handles_present(loop, s->context);

        s->vhost = lws_get_vhost_by_name(s->context, VHOST_NAME);
        if (!s->vhost) {
                server_shutdown(s);
                return -EIO;
        }
        r = uv_poll_start(&s->listen_poll, UV_READABLE, on_listen_readable);
        if (r < 0) {
                server_shutdown(s);
                return r;
        }

        *ret = s;
        if (ret_port)
                *ret_port = port;
        return 0;
}

void sbx_metrics_server_close(SbxMetricsServer *s, void (*done)(void *userdata), void *userdata)
{
        if (!s || s->closing)
                return;
        s->done = done;
        s->done_userdata = userdata;
        server_shutdown(s);
}

void sbx_metrics_server_set_ready(SbxMetricsServer *s, SbxReadyFn ready, void *userdata)
{
        s->ready = ready;
        s->ready_userdata = userdata;
}
