/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transparent egress proxy. nftables redirects every sandbox's TCP 80 and 443 here; the
 * sandbox is known by the connection's source address, where it was going by SO_ORIGINAL_DST.
 *
 *   1. peek   the first bytes: the TLS ClientHello's server name, or the HTTP request head's Host
 *   2. decide a name is checked against the policy, resolved by the proxy itself (the guest's own
 *             destination address is not trusted for a name), and every address it would use must
 *             be outside the blocked ranges; without a name, the original destination is judged
 *             as an address (literals, or the open internet)
 *   3. relay  TLS toward a host without secrets is spliced, bytes untouched. TLS toward a host
 *             with secrets is intercepted: the guest gets a certificate minted by the node CA for
 *             the name it asked for, the proxy speaks TLS to the real host and verifies it, and in
 *             between every request head has the secrets' placeholders replaced by their values.
 *             Plain HTTP goes through the same request-by-request path, so that each request's Host
 *             is checked and secrets toward their hosts are substituted there too.
 *
 * Requests are framed by http-parser (bodies, chunked or not, pass through untouched); a request
 * whose Host differs from the connection's is refused. Upgraded connections are spliced after their
 * head. Back-pressure: a side stops reading while the other side's write queue exceeds 1 MiB.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <linux/netfilter_ipv4.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/egress.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/wire/wire.h"

#define QUEUE_HIGH         (1u << 20)
#define PEEK_TIMEOUT_MS    10000
#define CONNECT_TIMEOUT_MS 10000
#define MAX_SECRETS        16
#define READ_SIZE          (256u * 1024)

typedef enum Mode {
        MODE_PEEK,
        MODE_RESOLVING,
        MODE_CONNECTING,
        MODE_SPLICE, /* bytes both ways, untouched */
        MODE_HTTP,   /* request by request (plain, or inside intercepted TLS) */
        MODE_CLOSED,
} Mode;

typedef struct Tls {
        SSL *ssl;
        BIO *rbio; /* network bytes in */
        BIO *wbio; /* network bytes out */
} Tls;

typedef struct Conn {
        Egress *e;
        EgressSandbox *s;
        bool https;
        Mode mode;
        uv_tcp_t client;
        uv_tcp_t upstream;
        uv_connect_t connect_req;
        uv_timer_t timer;
        unsigned open_handles;
        bool upstream_open;
        struct sockaddr_in orig_dst;
        char host[256]; /* the name the guest asked for; empty without one */
        uint16_t port;
        /* Bytes from the client not yet handled (peeking, or parsed plaintext awaiting upstream). */
        SbxBuffer in;
        bool intercept;
        Tls down; /* TLS toward the guest (we are the server) */
        Tls up;   /* TLS toward the real host (we are the client) */
        bool up_handshaken;
        /* The HTTP request stream toward upstream. */
        http_parser parser;
        SbxBuffer head; /* the current request's head, collected */
        bool in_body;
        bool upgraded;
        const EgressSecret *secrets[MAX_SECRETS];
        size_t n_secrets;
        bool client_eof, upstream_eof;
        bool substituted;
} Conn;

static void conn_close(Conn *c, const char *why);

/* ---- writing ---- */

typedef struct Write {
        uv_write_t req;
        Conn *c;
        char *data;
} Write;

static void update_reading(Conn *c);

static void write_done(uv_write_t *req, int status)
{
        Write *w = req->data;
        /* A queue that drained may let the other side read again. (Writes complete, or are
         * cancelled, before the handles' close callbacks: the connection is still there.) */
        if (status == 0)
                update_reading(w->c);
        free(w->data);
        free(w);
}

/* Queues `data` (malloc'ed, n bytes) on `to`, taking ownership: spliced bytes are not copied. */
static int write_owned(Conn *c, uv_tcp_t *to, char *data, size_t n)
{
        Write *w = calloc(1, sizeof(*w));
        if (!w) {
                free(data);
                return -ENOMEM;
        }
        w->data = data;
        w->c = c;
        w->req.data = w;
        uv_buf_t b = uv_buf_init(data, (unsigned)n);
        int r = uv_write(&w->req, (uv_stream_t *)to, &b, 1, write_done);
        if (r < 0) {
                free(w->data);
                free(w);
        }
        return r;
}

static int write_raw(Conn *c, uv_tcp_t *to, const void *p, size_t n)
{
        if (n == 0)
                return 0;
        Write *w = calloc(1, sizeof(*w));
        if (!w || !(w->data = malloc(n))) {
                free(w);
                return -ENOMEM;
        }
        memcpy(w->data, p, n);
        w->c = c;
        w->req.data = w;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
        int r = uv_write(&w->req, (uv_stream_t *)to, &b, 1, write_done);
        if (r < 0) {
                free(w->data);
                free(w);
        }
        return r;
}

/* Moves whatever a TLS object wants to send onto its socket. */
static int flush_tls(Conn *c, Tls *t, uv_tcp_t *to)
{
        char buf[16384];
        int n;
        while ((n = BIO_read(t->wbio, buf, sizeof(buf))) > 0)
                if (write_raw(c, to, buf, (size_t)n) < 0)
                        return -EIO;
        return 0;
}

/* Sends plaintext toward the guest (through TLS when intercepting). */
static int to_client(Conn *c, const void *p, size_t n)
{
        sbx_counter_add(c->e->m.bytes, SBX_LABELS("down"), (double)n);
        if (!c->intercept)
                return write_raw(c, &c->client, p, n);
        if (n > 0 && SSL_write(c->down.ssl, p, (int)n) <= 0)
                return -EIO;
        return flush_tls(c, &c->down, &c->client);
}

/* Sends plaintext toward the real host (through TLS when intercepting). */
static int to_upstream(Conn *c, const void *p, size_t n)
{
        sbx_counter_add(c->e->m.bytes, SBX_LABELS("up"), (double)n);
        if (!c->intercept)
                return write_raw(c, &c->upstream, p, n);
        if (n > 0 && SSL_write(c->up.ssl, p, (int)n) <= 0)
                return -EIO;
        return flush_tls(c, &c->up, &c->upstream);
}

/* Back-pressure: each side reads only while the other's queue is short. */
static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_upstream_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void update_reading(Conn *c)
{
        if (c->mode == MODE_CLOSED)
                return;
        bool client_ok =
                !c->client_eof && (!c->upstream_open ||
                                   uv_stream_get_write_queue_size((uv_stream_t *)&c->upstream) < QUEUE_HIGH);
        bool upstream_ok = c->upstream_open && !c->upstream_eof &&
                           uv_stream_get_write_queue_size((uv_stream_t *)&c->client) < QUEUE_HIGH;
        if (client_ok)
                uv_read_start((uv_stream_t *)&c->client, alloc_buf, on_client_read);
        else
                uv_read_stop((uv_stream_t *)&c->client);
        if (c->upstream_open) {
                if (upstream_ok)
                        uv_read_start((uv_stream_t *)&c->upstream, alloc_buf, on_upstream_read);
                else
                        uv_read_stop((uv_stream_t *)&c->upstream);
        }
}

/* ---- HTTP request stream (toward upstream) ---- */

static int on_message_begin(http_parser *p)
{
        Conn *c = p->data;
        c->in_body = false;
        sbx_buffer_clear(&c->head);
        return 0;
}

static int on_headers_complete(http_parser *p)
{
        http_parser_pause(p, 1);
        return 0;
}

static int on_message_complete(http_parser *p)
{
        http_parser_pause(p, 1);
        return 0;
}

static const http_parser_settings http_settings = {
        .on_message_begin = on_message_begin,
        .on_headers_complete = on_headers_complete,
        .on_message_complete = on_message_complete,
};

/* A short refusal for plain HTTP clients; `what` names the host or address, `why` completes it. */
static void deny_http(Conn *c, int status, const char *reason, const char *what, const char *why)
{
        char body[512], resp[800];
        snprintf(body, sizeof(body), "sbx egress: %s %s\n", what, why);
        int n = snprintf(
                resp, sizeof(resp),
                "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                "Connection: close\r\nX-Sbx-Egress: denied\r\n\r\n%s",
                status, reason, strlen(body), body);
        to_client(c, resp, (size_t)n);
}

/* A complete request head: checked, secrets substituted, sent. */
static int send_head(Conn *c)
{
        SbxHttpHead h;
        const uint8_t *p = sbx_buffer_data(&c->head);
        size_t n = sbx_buffer_size(&c->head);

        if (sbx_http_head_parse(p, n, &h) != 1) {
                sbx_counter_inc(c->e->m.denied, SBX_LABELS("malformed"));
                return -EPROTO;
        }
        /* One connection, one host: a later request naming another must not ride on it. */
        if (*c->host && h.host[0] && strcmp(h.host, c->host) != 0) {
                sbx_counter_inc(c->e->m.denied, SBX_LABELS("policy"));
                deny_http(c, 421, "Misdirected Request", c->host,
                          "is where this connection goes; open a new one for another host");
                return -EPERM;
        }
        if (c->n_secrets == 0)
                return to_upstream(c, p, n);

        SbxBuffer a = SBX_BUFFER_INIT, b = SBX_BUFFER_INIT;
        int total = 0, r = sbx_buffer_append(&a, p, n);
        for (size_t i = 0; r >= 0 && i < c->n_secrets; i++) {
                const EgressSecret *s = c->secrets[i];
                if (!s->value)
                        continue;
                sbx_buffer_clear(&b);
                r = sbx_replace_all(sbx_buffer_data(&a), sbx_buffer_size(&a), s->placeholder, s->value, &b);
                if (r > 0)
                        total += r;
                SbxBuffer t = a;
                a = b;
                b = t;
        }
        if (r >= 0)
                r = to_upstream(c, sbx_buffer_data(&a), sbx_buffer_size(&a));
        /* The values were in these buffers: wipe before freeing. */
        if (a.data)
                sbx_secure_zero(a.data, a.alloc);
        if (b.data)
                sbx_secure_zero(b.data, b.alloc);
        sbx_buffer_done(&a);
        sbx_buffer_done(&b);
        if (total > 0 && !c->substituted) {
                c->substituted = true;
                sbx_counter_inc(c->e->m.interceptions, SBX_LABELS("substituted"));
        }
        return r < 0 ? r : 0;
}

/* Feeds client plaintext through the request framer toward upstream. */
static int http_feed(Conn *c, const uint8_t *p, size_t n)
{
        while (n > 0) {
                if (c->upgraded)
                        return to_upstream(c, p, n);
                size_t used = http_parser_execute(&c->parser, &http_settings, (const char *)p, n);
                enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
                if (err != HPE_OK && err != HPE_PAUSED) {
                        sbx_counter_inc(c->e->m.denied, SBX_LABELS("malformed"));
                        return -EPROTO;
                }
                /* Paused at a head's end or a message's end: the count stops just before the byte
                 * that completed it. */
                size_t k = err == HPE_PAUSED ? used + 1 : used;
                if (k > n)
                        k = n;
                if (!c->in_body) {
                        if (sbx_buffer_size(&c->head) + k > SBX_HTTP_HEAD_MAX) {
                                sbx_counter_inc(c->e->m.denied, SBX_LABELS("malformed"));
                                return -EPROTO;
                        }
                        if (sbx_buffer_append(&c->head, p, k) < 0)
                                return -ENOMEM;
                        if (err == HPE_PAUSED) {
                                /* The head is complete. */
                                int r = send_head(c);
                                if (r < 0)
                                        return r;
                                c->in_body = true;
                                if (c->parser.upgrade)
                                        c->upgraded = true;
                                /* A message without a body completes at once; let the parser say so. */
                        }
                } else if (k > 0) {
                        int r = to_upstream(c, p, k);
                        if (r < 0)
                                return r;
                }
                if (err == HPE_PAUSED)
                        http_parser_pause(&c->parser, 0);
                p += k;
                n -= k;
        }
        return 0;
}

/* ---- upstream side ---- */

static void on_upstream_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
        Conn *c = st->data;

        if (n < 0) {
                free(buf->base);
                c->upstream_eof = true;
                /* The host closed: so does the guest's side, once its queue is written. */
                conn_close(c, n == UV_EOF ? NULL : "upstream read failed");
                return;
        }
        if (c->intercept) {
                BIO_write(c->up.rbio, buf->base, (int)n);
                free(buf->base);
                if (!c->up_handshaken) {
                        int r = SSL_do_handshake(c->up.ssl);
                        flush_tls(c, &c->up, &c->upstream);
                        if (r != 1) {
                                if (SSL_get_error(c->up.ssl, r) == SSL_ERROR_WANT_READ)
                                        return;
                                long v = SSL_get_verify_result(c->up.ssl);
                                sbx_counter_inc(c->e->m.denied, SBX_LABELS("upstream"));
                                log_info("Egress of %s to %s: upstream TLS failed (%s)", c->s->id, c->host,
                                         v != X509_V_OK ? X509_verify_cert_error_string(v) : "handshake");
                                deny_http(c, 502, "Bad Gateway", c->host,
                                          "did not present a valid certificate");
                                conn_close(c, NULL);
                                return;
                        }
                        c->up_handshaken = true;
                        /* Requests that waited for the upstream handshake go now. */
                        if (sbx_buffer_size(&c->in) > 0) {
                                SbxBuffer pending = c->in;
                                c->in = (SbxBuffer)SBX_BUFFER_INIT;
                                int r2 = http_feed(c, sbx_buffer_data(&pending), sbx_buffer_size(&pending));
                                sbx_buffer_done(&pending);
                                if (r2 < 0) {
                                        conn_close(c, "request refused");
                                        return;
                                }
                        }
                }
                char plain[16384];
                int k;
                while ((k = SSL_read(c->up.ssl, plain, sizeof(plain))) > 0)
                        to_client(c, plain, (size_t)k);
                flush_tls(c, &c->up, &c->upstream);
        } else if (n > 0) {
                sbx_counter_add(c->e->m.bytes, SBX_LABELS("down"), (double)n);
                write_owned(c, &c->client, buf->base, (size_t)n);
        } else {
                free(buf->base);
        }
        update_reading(c);
}

static void on_connected(uv_connect_t *req, int status)
{
        Conn *c = req->data;
        if (c->mode == MODE_CLOSED)
                return;
        if (status < 0) {
                sbx_counter_inc(c->e->m.denied, SBX_LABELS("upstream"));
                if (!c->https)
                        deny_http(c, 502, "Bad Gateway", c->host, "cannot be connected to");
                conn_close(c, "upstream connect failed");
                return;
        }
        uv_timer_stop(&c->timer);
        c->upstream_open = true;
        uv_tcp_nodelay(&c->upstream, 1);

        if (c->intercept) {
                c->up.ssl = SSL_new(c->e->upstream_ctx);
                c->up.rbio = BIO_new(BIO_s_mem());
                c->up.wbio = BIO_new(BIO_s_mem());
                if (!c->up.ssl || !c->up.rbio || !c->up.wbio) {
                        conn_close(c, "out of memory");
                        return;
                }
                SSL_set_bio(c->up.ssl, c->up.rbio, c->up.wbio);
                SSL_set_tlsext_host_name(c->up.ssl, c->host);
                SSL_set1_host(c->up.ssl, c->host);
                SSL_set_connect_state(c->up.ssl);
                SSL_do_handshake(c->up.ssl);
                flush_tls(c, &c->up, &c->upstream);
                c->mode = MODE_HTTP;
        } else if (c->https) {
                /* Spliced: the ClientHello we peeked at goes first, then everything else. */
                to_upstream(c, sbx_buffer_data(&c->in), sbx_buffer_size(&c->in));
                sbx_buffer_clear(&c->in);
                c->mode = MODE_SPLICE;
        } else {
                c->mode = MODE_HTTP;
                SbxBuffer pending = c->in;
                c->in = (SbxBuffer)SBX_BUFFER_INIT;
                int r = http_feed(c, sbx_buffer_data(&pending), sbx_buffer_size(&pending));
                sbx_buffer_done(&pending);
                if (r < 0) {
                        conn_close(c, "request refused");
                        return;
                }
        }
        update_reading(c);
}

static void on_timeout(uv_timer_t *t)
{
        Conn *c = t->data;
        sbx_counter_inc(c->e->m.denied, SBX_LABELS(c->mode == MODE_PEEK ? "malformed" : "upstream"));
        conn_close(c, c->mode == MODE_PEEK ? "the client sent no request in time"
                                           : "upstream connect timed out");
}

static void connect_to(Conn *c, const struct in_addr *addr)
{
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(c->port), .sin_addr = *addr };
        uv_tcp_init(c->e->a->loop, &c->upstream);
        c->upstream.data = c;
        c->open_handles++;
        c->connect_req.data = c;
        c->mode = MODE_CONNECTING;
        uv_timer_start(&c->timer, on_timeout, CONNECT_TIMEOUT_MS, 0);
        if (uv_tcp_connect(&c->connect_req, &c->upstream, (const struct sockaddr *)&to, on_connected) < 0)
                conn_close(c, "upstream connect failed");
}

static void on_resolved(int error, const struct in_addr *addrs, size_t n, void *userdata)
{
        Conn *c = userdata;
        if (error == -ECANCELED || c->mode == MODE_CLOSED) {
                /* The agent is stopping (or the guest hung up): the connection goes with it. */
                if (c->mode != MODE_CLOSED)
                        conn_close(c, NULL);
                egress_sandbox_unref(c->s);
                return;
        }
        egress_sandbox_unref(c->s);
        if (error < 0 || n == 0) {
                sbx_counter_inc(c->e->m.denied, SBX_LABELS("upstream"));
                if (!c->https)
                        deny_http(c, 502, "Bad Gateway", c->host, "does not resolve");
                conn_close(c, "no address");
                return;
        }
        /* Every address a name leads to must be fair game: no private ranges through a name. */
        for (size_t i = 0; i < n; i++) {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = addrs[i] };
                if (!egress_addr_blocked((const struct sockaddr *)&sa)) {
                        connect_to(c, &addrs[i]);
                        return;
                }
        }
        sbx_counter_inc(c->e->m.denied, SBX_LABELS("blocked_address"));
        if (!c->https)
                deny_http(c, 403, "Forbidden", c->host, "resolves to a blocked address range");
        conn_close(c, "blocked address");
}

/* ---- deciding ---- */

static bool start_intercept(Conn *c)
{
        SSL_CTX *ctx = egress_ca_server_ctx(c->e, c->host);
        if (!ctx)
                return false;
        c->down.ssl = SSL_new(ctx);
        c->down.rbio = BIO_new(BIO_s_mem());
        c->down.wbio = BIO_new(BIO_s_mem());
        if (!c->down.ssl || !c->down.rbio || !c->down.wbio)
                return false;
        SSL_set_bio(c->down.ssl, c->down.rbio, c->down.wbio);
        SSL_set_accept_state(c->down.ssl);
        /* The ClientHello we peeked at starts the handshake with the guest. */
        BIO_write(c->down.rbio, sbx_buffer_data(&c->in), (int)sbx_buffer_size(&c->in));
        sbx_buffer_clear(&c->in);
        SSL_do_handshake(c->down.ssl);
        flush_tls(c, &c->down, &c->client);
        return true;
}

static void decide(Conn *c)
{
        const EgressPolicy *p = c->s->policy;
        bool name = *c->host && sbx_hostname_valid(c->host);
        const char *kind = c->https ? "https" : "http";

        uv_timer_stop(&c->timer);
        if (!name) {
                /* No name (or a literal address as Host): the destination is judged as an address. */
                if (!egress_policy_addr_allowed(p, (const struct sockaddr *)&c->orig_dst, c->port)) {
                        sbx_counter_inc(c->e->m.connections, SBX_LABELS(kind, "denied"));
                        sbx_counter_inc(c->e->m.denied,
                                        SBX_LABELS(*c->host || !c->https ? "policy" : "no_server_name"));
                        char addr[INET_ADDRSTRLEN];
                        inet_ntop(AF_INET, &c->orig_dst.sin_addr, addr, sizeof(addr));
                        if (!c->https)
                                deny_http(c, 403, "Forbidden", addr, "is not allowed for this sandbox");
                        conn_close(c, "address not allowed");
                        return;
                }
                sbx_counter_inc(c->e->m.connections, SBX_LABELS(kind, "allowed"));
                *c->host = '\0';
                connect_to(c, &c->orig_dst.sin_addr);
                return;
        }
        if (!egress_policy_host_allowed(p, c->host, c->port)) {
                sbx_counter_inc(c->e->m.connections, SBX_LABELS(kind, "denied"));
                sbx_counter_inc(c->e->m.denied, SBX_LABELS("policy"));
                log_debug("Egress of %s: %s:%u is not allowed", c->s->id, c->host, c->port);
                if (!c->https)
                        deny_http(c, 403, "Forbidden", c->host, "is not allowed for this sandbox");
                conn_close(c, NULL);
                return;
        }
        sbx_counter_inc(c->e->m.connections, SBX_LABELS(kind, "allowed"));
        c->n_secrets = egress_policy_secrets_for(p, c->host, c->secrets, MAX_SECRETS);
        if (c->https && c->n_secrets > 0) {
                c->intercept = true;
                if (!start_intercept(c)) {
                        conn_close(c, "could not mint a certificate");
                        return;
                }
        } else if (c->https && c->n_secrets == 0) {
                sbx_counter_inc(c->e->m.interceptions, SBX_LABELS("passed"));
        }
        c->mode = MODE_RESOLVING;
        c->s->refs++;
        if (egress_dns_resolve(c->e, c->host, on_resolved, c) < 0) {
                egress_sandbox_unref(c->s);
                conn_close(c, "out of memory");
        }
}

/* ---- client side ---- */

static void peek(Conn *c)
{
        const uint8_t *p = sbx_buffer_data(&c->in);
        size_t n = sbx_buffer_size(&c->in);
        int r;

        if (c->https) {
                r = sbx_tls_hello_sni(p, n, c->host, sizeof(c->host));
                if (r == 0)
                        *c->host = '\0';
        } else {
                SbxHttpHead h;
                r = sbx_http_head_parse(p, n, &h);
                if (r == 1) {
                        snprintf(c->host, sizeof(c->host), "%s", h.host);
                        /* The port of Host is the client's business; the connection's port counts. */
                }
        }
        if (r == -EAGAIN)
                return;
        if (r < 0) {
                sbx_counter_inc(c->e->m.connections, SBX_LABELS(c->https ? "https" : "http", "denied"));
                sbx_counter_inc(c->e->m.denied, SBX_LABELS("malformed"));
                if (!c->https)
                        deny_http(c, 400, "Bad Request", "this", "is not an HTTP/1.x request");
                conn_close(c, NULL);
                return;
        }
        decide(c);
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
        free(req);
}

static void on_client_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
        Conn *c = st->data;

        if (n < 0) {
                free(buf->base);
                c->client_eof = true;
                if (c->upstream_open && c->mode == MODE_SPLICE) {
                        /* Half-close toward the host; it answers and closes in turn. */
                        uv_shutdown_t *req = calloc(1, sizeof(*req));
                        if (req && uv_shutdown(req, (uv_stream_t *)&c->upstream, shutdown_done) < 0)
                                free(req);
                        uv_read_stop(st);
                        return;
                }
                conn_close(c, NULL);
                return;
        }
        if (n == 0) {
                free(buf->base);
                return;
        }
        int r = 0;
        switch (c->mode) {
        case MODE_PEEK:
                r = sbx_buffer_append(&c->in, buf->base, (size_t)n);
                free(buf->base);
                if (r >= 0)
                        peek(c);
                return;
        case MODE_RESOLVING:
        case MODE_CONNECTING:
                /* Not decided or not connected yet: keep it (bounded by the read pause below). */
                if (c->intercept) {
                        BIO_write(c->down.rbio, buf->base, (int)n);
                        SSL_do_handshake(c->down.ssl);
                        flush_tls(c, &c->down, &c->client);
                        char plain[16384];
                        int k;
                        while ((k = SSL_read(c->down.ssl, plain, sizeof(plain))) > 0)
                                sbx_buffer_append(&c->in, plain, (size_t)k);
                } else {
                        sbx_buffer_append(&c->in, buf->base, (size_t)n);
                }
                free(buf->base);
                if (sbx_buffer_size(&c->in) > QUEUE_HIGH)
                        uv_read_stop(st);
                return;
        case MODE_SPLICE:
                sbx_counter_add(c->e->m.bytes, SBX_LABELS("up"), (double)n);
                r = write_owned(c, &c->upstream, buf->base, (size_t)n);
                update_reading(c);
                if (r < 0)
                        conn_close(c, NULL);
                return;
        case MODE_HTTP:
                if (c->intercept) {
                        BIO_write(c->down.rbio, buf->base, (int)n);
                        if (!SSL_is_init_finished(c->down.ssl)) {
                                SSL_do_handshake(c->down.ssl);
                                flush_tls(c, &c->down, &c->client);
                        }
                        char plain[16384];
                        int k;
                        while (r >= 0 && (k = SSL_read(c->down.ssl, plain, sizeof(plain))) > 0) {
                                if (!c->up_handshaken)
                                        r = sbx_buffer_append(&c->in, plain, (size_t)k);
                                else
                                        r = http_feed(c, (const uint8_t *)plain, (size_t)k);
                        }
                        flush_tls(c, &c->down, &c->client);
                } else {
                        r = http_feed(c, (const uint8_t *)buf->base, (size_t)n);
                }
                break;
        case MODE_CLOSED:
                break;
        }
        free(buf->base);
        if (r < 0) {
                conn_close(c, NULL);
                return;
        }
        update_reading(c);
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        /* Large reads: fewer system calls per byte relayed (the kernel fills what it has). */
        buf->base = malloc(READ_SIZE);
        buf->len = buf->base ? READ_SIZE : 0;
}

/* ---- lifetime ---- */

static void conn_free(Conn *c)
{
        SSL_free(c->down.ssl);
        SSL_free(c->up.ssl);
        sbx_buffer_done(&c->in);
        if (c->head.data)
                sbx_secure_zero(c->head.data, c->head.alloc);
        sbx_buffer_done(&c->head);
        if (c->s)
                egress_sandbox_unref(c->s);
        free(c);
}

static void conn_handle_closed(uv_handle_t *h)
{
        Conn *c = h->data;
        if (--c->open_handles == 0)
                conn_free(c);
}

static void conn_close(Conn *c, const char *why)
{
        if (c->mode == MODE_CLOSED)
                return;
        if (why && c->s)
                log_debug("Egress connection of %s to %s closed: %s", c->s->id, *c->host ? c->host : "?",
                          why);
        c->mode = MODE_CLOSED;
        if (c->intercept && c->down.ssl && SSL_is_init_finished(c->down.ssl)) {
                SSL_shutdown(c->down.ssl);
                flush_tls(c, &c->down, &c->client);
        }
        /* uv_close lets queued writes finish? No: it cancels them. A short response (403, 502) is
         * written before this, and libuv sends what the kernel accepted; nothing else matters. */
        uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
        uv_close((uv_handle_t *)&c->client, conn_handle_closed);
        if (c->upstream.loop)
                uv_close((uv_handle_t *)&c->upstream, conn_handle_closed);
}

static void on_accept(uv_stream_t *listener, int status)
{
        Egress *e = listener->data;
        Conn *c;
        struct sockaddr_in peer;
        int len = sizeof(peer);
        socklen_t dlen = sizeof(struct sockaddr_in);
        uv_os_fd_t fd;

        if (status < 0 || !(c = calloc(1, sizeof(*c))))
                return;
        c->e = e;
        c->https = listener == (uv_stream_t *)&e->https_listener;
        c->in = (SbxBuffer)SBX_BUFFER_INIT;
        c->head = (SbxBuffer)SBX_BUFFER_INIT;
        uv_tcp_init(e->a->loop, &c->client);
        uv_timer_init(e->a->loop, &c->timer);
        c->client.data = c->timer.data = c;
        c->open_handles = 2;
        if (uv_accept(listener, (uv_stream_t *)&c->client) < 0 ||
            uv_tcp_getpeername(&c->client, (struct sockaddr *)&peer, &len) < 0 ||
            peer.sin_family != AF_INET || uv_fileno((uv_handle_t *)&c->client, &fd) < 0 ||
            getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &c->orig_dst, &dlen) < 0) {
                conn_close(c, NULL);
                return;
        }
        c->s = egress_sandbox_by_address(e, &peer.sin_addr);
        if (!c->s) {
                conn_close(c, NULL);
                return;
        }
        c->s->refs++;
        c->port = ntohs(c->orig_dst.sin_port);
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        uv_tcp_nodelay(&c->client, 1);
        uv_timer_start(&c->timer, on_timeout, PEEK_TIMEOUT_MS, 0);
        uv_read_start((uv_stream_t *)&c->client, alloc_buf, on_client_read);
}

static int listen_on(Egress *e, uv_tcp_t *l, unsigned port)
{
        struct sockaddr_in addr;
        int r;
        uv_tcp_init(e->a->loop, l);
        l->data = e;
        uv_ip4_addr("0.0.0.0", (int)port, &addr);
        if ((r = uv_tcp_bind(l, (const struct sockaddr *)&addr, 0)) < 0 ||
            (r = uv_listen((uv_stream_t *)l, 256, on_accept)) < 0)
                return log_error_errno(r, "Failed to listen on port %u for the egress proxy: %m", port);
        return 0;
}

int egress_proxy_start(Egress *e)
{
        int r = listen_on(e, &e->http_listener, e->a->cfg.proxy_http_port);
        if (r < 0)
                return r;
        return listen_on(e, &e->https_listener, e->a->cfg.proxy_https_port);
}

void egress_proxy_stop(Egress *e)
{
        if (e->http_listener.loop) {
                e->closing++;
                uv_close((uv_handle_t *)&e->http_listener, egress_handle_closed);
        }
        if (e->https_listener.loop) {
                e->closing++;
                uv_close((uv_handle_t *)&e->https_listener, egress_handle_closed);
        }
}
