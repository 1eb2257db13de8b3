/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gateway's listening sockets and the relay behind each connection (gw.h says why there is
 * one): the client's TCP connection, TLS terminated here with OpenSSL memory BIOs, and a
 * socketpair whose other end libwebsockets serves as a plaintext HTTP/WebSocket connection.
 *
 * The bytes of the first request are kept (up to RECORD_MAX) until libwebsockets answers
 * anything; an upgrade that has to wait for the scheduler hangs that libwebsockets connection up
 * (gw_conn_defer()), and gw_conn_replay() later plays the same bytes into a new one.
 *
 * Back-pressure: each direction stops reading its source while more than QUEUE_HIGH bytes wait to
 * be written to its destination, and resumes below QUEUE_LOW.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/base/macro.h"
#include "common/base/parse.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "gateway/gw.h"

#define QUEUE_HIGH (1u * 1024 * 1024)
#define QUEUE_LOW  (256u * 1024)
/* The request line and headers of one request; lws refuses larger ones anyway. */
#define RECORD_MAX (96u * 1024)
#define READ_CHUNK (64u * 1024)

struct GwListener {
        Gateway *gw;
        uv_tcp_t tcp;
        char region[8];
};

struct GwConn {
        Gateway *gw;
        char region[8];
        uv_tcp_t tcp;
        bool tcp_open;
        SSL *ssl;
        BIO *rbio, *wbio;
        /* Our end of the socketpair to libwebsockets; a new one for each attempt. */
        uv_pipe_t *pipe;
        struct lws *wsi;

        SbxBuffer record;
        bool recording;
        bool replayable;
        /* The libwebsockets side of the current attempt is to be dropped, not the client. */
        bool deferred;
        GwUpgrade *upgrade;

        bool tcp_paused, pipe_paused;
        bool closing;
        bool shutting_down;
        unsigned handles;
        GwLink link;
};

typedef struct WriteReq {
        uv_write_t req;
        GwConn *conn;
        size_t len;
        char data[];
} WriteReq;

/* Reads are consumed (copied or written on) inside their callback, so one buffer serves all. */
static char read_buffer[READ_CHUNK];
static char plain_buffer[READ_CHUNK];

static void *mfree(void *p)
{
        free(p);
        return NULL;
}

static void conn_close(GwConn *c);

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        *buf = uv_buf_init(read_buffer, sizeof(read_buffer));
}

static void conn_maybe_free(GwConn *c)
{
        if (c->handles > 0)
                return;
        gw_list_del(&c->link);
        c->gw->n_conns--;
        sbx_gauge_set(c->gw->m.connections, NULL, c->gw->n_conns);
        if (c->wsi)
                lws_set_opaque_user_data(c->wsi, NULL);
        if (c->upgrade)
                gw_upgrade_abandon(c->upgrade);
        SSL_free(c->ssl); /* frees the BIOs too */
        sbx_buffer_done(&c->record);
        free(c);
}

static void handle_closed(uv_handle_t *h)
{
        GwConn *c = h->data;
        c->handles--;
        conn_maybe_free(c);
}

static size_t queued(uv_pipe_t *p)
{
        return uv_stream_get_write_queue_size((uv_stream_t *)p);
}

static void pipe_handle_closed(uv_handle_t *h)
{
        GwConn *c = h->data;
        free(h);
        c->handles--;
        conn_maybe_free(c);
}

static void close_pipe(GwConn *c)
{
        if (!c->pipe)
                return;
        uv_read_stop((uv_stream_t *)c->pipe);
        uv_close((uv_handle_t *)c->pipe, pipe_handle_closed);
        c->pipe = NULL;
}

static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void pipe_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void write_done(uv_write_t *req, int status)
{
        WriteReq *w = container_of(req, WriteReq, req);
        GwConn *c = w->conn;
        bool to_pipe = req->handle != (uv_stream_t *)&c->tcp;

        free(w);
        if (status < 0 || c->closing)
                return;
        if (to_pipe) {
                if (c->tcp_paused && c->pipe && queued(c->pipe) < QUEUE_LOW) {
                        c->tcp_paused = false;
                        (void)uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, tcp_read_cb);
                }
        } else if (c->pipe_paused && c->pipe &&
                   uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < QUEUE_LOW) {
                c->pipe_paused = false;
                (void)uv_read_start((uv_stream_t *)c->pipe, alloc_cb, pipe_read_cb);
        }
}

static int write_to(GwConn *c, uv_stream_t *dst, const void *data, size_t n)
{
        WriteReq *w = malloc(sizeof(WriteReq) + n);
        uv_buf_t b;
        int r;

        if (!w)
                return -ENOMEM;
        w->conn = c;
        w->len = n;
        memcpy(w->data, data, n);
        b = uv_buf_init(w->data, (unsigned)n);
        r = uv_write(&w->req, dst, &b, 1, write_done);
        if (r < 0)
                free(w);
        return r;
}

/* Moves whatever TLS produced (handshake records, ciphertext, alerts) to the client. */
static int flush_tls(GwConn *c)
{
        char buf[16384];
        int n, r;

        while (c->tcp_open && (n = BIO_read(c->wbio, buf, sizeof(buf))) > 0) {
                r = write_to(c, (uv_stream_t *)&c->tcp, buf, (size_t)n);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int to_client(GwConn *c, const char *data, size_t n)
{
        int r;

        if (!c->tcp_open)
                return -EPIPE;
        if (!c->ssl)
                r = write_to(c, (uv_stream_t *)&c->tcp, data, n);
        else {
                while (n > 0) {
                        int w = SSL_write(c->ssl, data, (int)SBX_MIN(n, (size_t)INT32_MAX));
                        if (w <= 0)
                                return -EIO;
                        data += w;
                        n -= (size_t)w;
                }
                r = flush_tls(c);
        }
        if (r >= 0 && !c->pipe_paused && c->pipe &&
            uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > QUEUE_HIGH) {
                c->pipe_paused = true;
                uv_read_stop((uv_stream_t *)c->pipe);
        }
        return r;
}

static void stop_recording(GwConn *c)
{
        c->recording = false;
        sbx_buffer_done(&c->record);
}

static int to_lws(GwConn *c, const char *data, size_t n)
{
        if (c->recording) {
                if (sbx_buffer_size(&c->record) + n > RECORD_MAX) {
                        c->replayable = false;
                        stop_recording(c);
                } else if (sbx_buffer_append(&c->record, data, n) < 0)
                        return -ENOMEM;
        }
        if (!c->pipe)
                /* Between a deferred attempt and its replay: the record holds it. */
                return 0;
        int r = write_to(c, (uv_stream_t *)c->pipe, data, n);
        if (r >= 0 && !c->tcp_paused && queued(c->pipe) > QUEUE_HIGH) {
                c->tcp_paused = true;
                uv_read_stop((uv_stream_t *)&c->tcp);
        }
        return r;
}

static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
        GwConn *c = s->data;

        if (nread == 0)
                return;
        if (nread < 0) {
                /* The client went away (or reset): nothing more can reach it. */
                conn_close(c);
                return;
        }
        sbx_counter_add(c->gw->m.bytes, SBX_LABELS("in"), (double)nread);
        if (!c->ssl) {
                if (to_lws(c, buf->base, (size_t)nread) < 0)
                        conn_close(c);
                return;
        }
        if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
                conn_close(c);
                return;
        }
        for (;;) {
                int n = SSL_read(c->ssl, plain_buffer, sizeof(plain_buffer));
                if (n > 0) {
                        if (to_lws(c, plain_buffer, (size_t)n) < 0) {
                                conn_close(c);
                                return;
                        }
                        continue;
                }
                int e = SSL_get_error(c->ssl, n);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                        break;
                /* A failed handshake or a close_notify: send what TLS has to say, then stop. */
                if (e == SSL_ERROR_SSL) {
                        unsigned long err = ERR_get_error();
                        char text[256];
                        ERR_error_string_n(err, text, sizeof(text));
                        log_debug("TLS connection failed: %s", text);
                }
                ERR_clear_error();
                (void)flush_tls(c);
                conn_close(c);
                return;
        }
        if (flush_tls(c) < 0)
                conn_close(c);
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
        GwConn *c = req->data;
        free(req);
        conn_close(c);
}

/* libwebsockets closed its side for good: deliver what is queued, say goodbye, close. */
static void finish_client(GwConn *c)
{
        uv_shutdown_t *req;

        if (c->shutting_down || !c->tcp_open) {
                conn_close(c);
                return;
        }
        c->shutting_down = true;
        if (c->ssl) {
                (void)SSL_shutdown(c->ssl);
                (void)flush_tls(c);
        }
        req = malloc(sizeof(uv_shutdown_t));
        if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_done) < 0) {
                free(req);
                conn_close(c);
                return;
        }
        req->data = c;
}

static void pipe_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
        GwConn *c = s->data;

        if (nread == 0)
                return;
        if (nread < 0) {
                /* libwebsockets closed its end (of this attempt, or for good). */
                if ((uv_pipe_t *)s != c->pipe)
                        return;
                close_pipe(c);
                if (!c->deferred)
                        finish_client(c);
                return;
        }
        /* libwebsockets answered: the first request will not be played again. */
        if (c->recording)
                stop_recording(c);
        sbx_counter_add(c->gw->m.bytes, SBX_LABELS("out"), (double)nread);
        if (to_client(c, buf->base, (size_t)nread) < 0)
                conn_close(c);
}

/* A new libwebsockets connection on a fresh socketpair. */
static int start_attempt(GwConn *c)
{
        int sv[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
                return negative_errno();
        c->pipe = new0(uv_pipe_t, 1);
        if (!c->pipe || (r = uv_pipe_init(c->gw->loop, c->pipe, 0)) < 0) {
                c->pipe = mfree(c->pipe);
                close(sv[0]);
                close(sv[1]);
                return -ENOMEM;
        }
        c->pipe->data = c;
        c->handles++;
        r = uv_pipe_open(c->pipe, sv[0]);
        if (r < 0) {
                close(sv[0]);
                close(sv[1]);
                close_pipe(c);
                return r;
        }
        c->pipe_paused = false;
        /* On failure lws has closed sv[1]; our end then reads EOF and the attempt ends. */
        c->wsi = lws_adopt_socket_vhost(c->gw->vhost, sv[1]);
        if (c->wsi)
                lws_set_opaque_user_data(c->wsi, c);
        r = uv_read_start((uv_stream_t *)c->pipe, alloc_cb, pipe_read_cb);
        return r < 0 ? r : c->wsi ? 0 : -EIO;
}

static void conn_close(GwConn *c)
{
        if (c->closing)
                return;
        c->closing = true;
        if (c->wsi) {
                lws_set_opaque_user_data(c->wsi, NULL);
                c->wsi = NULL;
        }
        if (c->upgrade) {
                gw_upgrade_abandon(c->upgrade);
                c->upgrade = NULL;
        }
        if (c->tcp_open) {
                c->tcp_open = false;
                uv_close((uv_handle_t *)&c->tcp, handle_closed);
        }
        /* libwebsockets sees the end of its socket and closes its side. */
        close_pipe(c);
}

static void on_connection(uv_stream_t *server, int status)
{
        GwListener *l = server->data;
        Gateway *gw = l->gw;
        GwConn *c;

        if (status < 0)
                return;
        c = new0(GwConn, 1);
        if (!c) {
                /* The connection waits in the backlog for the next wake-up. */
                return;
        }
        c->gw = gw;
        snprintf(c->region, sizeof(c->region), "%s", l->region);
        c->recording = true;
        c->replayable = true;
        sbx_buffer_set_limit(&c->record, RECORD_MAX);
        gw_list_add(&gw->conns, &c->link);
        gw->n_conns++;
        uv_tcp_init(gw->loop, &c->tcp);
        c->tcp.data = c;
        c->handles++;
        c->tcp_open = true;
        if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
                conn_close(c);
                return;
        }
        sbx_gauge_set(gw->m.connections, NULL, gw->n_conns);
        if (gw->n_conns > gw->cfg.max_connections || gw->stopping) {
                sbx_counter_inc(gw->m.connections_total, SBX_LABELS("refused"));
                conn_close(c);
                return;
        }
        sbx_counter_inc(gw->m.connections_total, SBX_LABELS("accepted"));
        (void)uv_tcp_nodelay(&c->tcp, 1);
        if (gw->tls) {
                c->ssl = SSL_new(gw->tls);
                c->rbio = BIO_new(BIO_s_mem());
                c->wbio = BIO_new(BIO_s_mem());
                if (!c->ssl || !c->rbio || !c->wbio) {
                        BIO_free(c->rbio);
                        BIO_free(c->wbio);
                        conn_close(c);
                        return;
                }
                SSL_set_bio(c->ssl, c->rbio, c->wbio);
                SSL_set_accept_state(c->ssl);
        }
        if (start_attempt(c) < 0 || uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, tcp_read_cb) < 0)
                conn_close(c);
}

/* "host:port", "[v6]:port" or ":port" (every address). */
static int parse_address(const char *address, struct sockaddr_storage *ret)
{
        _cleanup_free_ char *host = NULL;
        const char *port_str;
        uint32_t port;

        if (isempty(address))
                return -EINVAL;
        if (address[0] == '[') {
                const char *close = strchr(address, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                host = strndup(address + 1, (size_t)(close - address - 1));
                port_str = close + 2;
        } else {
                const char *colon = strrchr(address, ':');
                if (!colon || memchr(address, ':', (size_t)(colon - address)))
                        return -EINVAL;
                host = strndup(address, (size_t)(colon - address));
                port_str = colon + 1;
        }
        if (!host)
                return -ENOMEM;
        if (sbx_parse_uint32(port_str, &port) < 0 || port > UINT16_MAX)
                return -EINVAL;
        memset(ret, 0, sizeof(*ret));
        if (isempty(host))
                return uv_ip6_addr("::", (int)port, (struct sockaddr_in6 *)ret) < 0 ? -EINVAL : 0;
        if (strchr(host, ':'))
                return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ret) < 0 ? -EINVAL : 0;
        return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ret) < 0 ? -EINVAL : 0;
}

int gw_listener_new(Gateway *gw, const char *address, const char *region, GwListener **ret, int *ret_port)
{
        struct sockaddr_storage sa, bound;
        int len = sizeof(bound), r;
        GwListener *l;

        r = parse_address(address, &sa);
        if (r < 0)
                return r;
        l = new0(GwListener, 1);
        if (!l)
                return -ENOMEM;
        l->gw = gw;
        snprintf(l->region, sizeof(l->region), "%s", region);
        uv_tcp_init(gw->loop, &l->tcp);
        l->tcp.data = l;
        r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&sa, 0);
        if (r >= 0)
                r = uv_listen((uv_stream_t *)&l->tcp, 128, on_connection);
        if (r >= 0)
                r = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &len);
        if (r < 0) {
                uv_close((uv_handle_t *)&l->tcp, (uv_close_cb)free);
                return r;
        }
        if (ret_port)
                *ret_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                              : ((struct sockaddr_in *)&bound)->sin_port);
        *ret = l;
        return 0;
}

static void listener_closed(uv_handle_t *h)
{
        free(h->data);
}

void gw_listener_close(GwListener *l)
{
        if (l)
                uv_close((uv_handle_t *)&l->tcp, listener_closed);
}

void gw_conns_close_all(Gateway *gw)
{
        for (GwLink *l = gw->conns.next, *next; l != &gw->conns; l = next) {
                next = l->next;
                conn_close(container_of(l, GwConn, link));
        }
}

GwConn *gw_conn_from_wsi(struct lws *wsi)
{
        return wsi ? lws_get_opaque_user_data(wsi) : NULL;
}

void gw_conn_wsi_gone(struct lws *wsi)
{
        GwConn *c = gw_conn_from_wsi(wsi);

        if (c && c->wsi == wsi)
                c->wsi = NULL;
        lws_set_opaque_user_data(wsi, NULL);
}

const char *gw_conn_region(const GwConn *c)
{
        return c->region;
}

GwUpgrade *gw_conn_upgrade(const GwConn *c)
{
        return c->upgrade;
}

GwUpgrade *gw_conn_take_upgrade(GwConn *c)
{
        return TAKE_PTR(c->upgrade);
}

bool gw_conn_replayable(const GwConn *c)
{
        return c->replayable && c->recording;
}

void gw_conn_defer(GwConn *c, GwUpgrade *u)
{
        c->upgrade = u;
        c->deferred = true;
}

int gw_conn_replay(GwConn *c)
{
        int r;

        if (c->closing || !c->tcp_open)
                return -EIO;
        /* The deferred attempt may not have ended yet (lws closes it on a later turn of the loop). */
        if (c->wsi) {
                lws_set_opaque_user_data(c->wsi, NULL);
                c->wsi = NULL;
        }
        close_pipe(c);
        c->deferred = false;
        r = start_attempt(c);
        if (r < 0)
                return r;
        return write_to(c, (uv_stream_t *)c->pipe, sbx_buffer_data(&c->record), sbx_buffer_size(&c->record));
}
