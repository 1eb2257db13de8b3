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
 * whose Host differs from the connection's is refused. An upgrade is taken only as a connection's
 * first request and only once the host answers 101 (from_upstream()); after that, bytes pass raw.
 * Back-pressure: a side stops reading while the other side has 1 MiB waiting to be written.
 *
 * Bytes the proxy does not look at (spliced TLS both ways, plain HTTP responses) move socket → pipe → socket
 * with splice(2) and never enter user space: at several hundred MB/s, copying them in and out cost more of
 * the node's CPU than the guest's own networking. For that the sockets are plain non-blocking fds watched by
 * uv_poll_t rather than uv_tcp_t (libuv keeps one watcher per fd, and a uv_tcp_t does not lend its fd), with
 * a small write queue of their own for the bytes the proxy does produce or inspect.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/egress.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/wire/wire.h"

#define QUEUE_HIGH         (1u << 20)
#define PIPE_SIZE          (1u << 20)
#define PEEK_TIMEOUT_MS    10000
#define CONNECT_TIMEOUT_MS 10000
#define MAX_SECRETS        16
#define READ_SIZE          (256u * 1024)
/* Splices per wake-up of one socket, so that one busy connection does not starve the others. */
#define PUMP_ROUNDS 4

typedef enum Mode {
        MODE_PEEK,
        MODE_RESOLVING,
        MODE_CONNECTING,
        MODE_SPLICE, /* bytes both ways, untouched */
        MODE_HTTP,   /* request by request (plain, or inside intercepted TLS) */
        MODE_CLOSED,
} Mode;

/* The connection to the original destination opened at accept (see preconnect()). */
typedef enum PreConnect {
        PRE_NONE,
        PRE_PENDING,
        PRE_DONE,
        PRE_FAILED,
} PreConnect;

typedef struct Tls {
        SSL *ssl;
        BIO *rbio; /* network bytes in */
        BIO *wbio; /* network bytes out */
} Tls;

/* One of a connection's two sockets. Bytes toward it are queued in `out` or wait in `pipe`; the
 * queue is always written first, and a queued write while the pipe holds bytes first moves those
 * into the queue, so bytes leave in the order they were relayed. */
typedef struct Side {
        int fd;
        uv_poll_t poll;
        bool polled; /* `poll` is initialised (and must be closed) */
        int events;  /* what `poll` watches; 0 when stopped */
        SbxBuffer out;
        /* Spliced bytes toward this side (-1 until the connection splices in this direction). */
        int pipe[2];
        size_t piped, pipe_size;
        /* The last splice into the pipe would have blocked with bytes still in it: the source
         * waits until some leave, rather than waking up for a pipe that is full. */
        bool pipe_full;
} Side;

typedef struct Conn {
        Egress *e;
        EgressSandbox *s;
        bool https;
        Mode mode;
        uv_tcp_t accepted; /* only until its fd is taken over by `client` */
        Side client;
        Side upstream;
        uv_timer_t timer;
        unsigned open_handles;
        bool upstream_open;
        PreConnect pre;
        int pre_error;
        /* Where to connect once a pre-connection that went elsewhere is closed. */
        struct in_addr reconnect_to;
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
        unsigned requests; /* request heads sent */
        /* An Upgrade (or CONNECT) request went out: what the guest sends next is held in `held`
         * until the host's status line says whether it switched protocols (`status` collects it). */
        bool upgrade_pending;
        SbxBuffer held, status;
        bool upgraded; /* the host answered 101: raw bytes both ways from now on */
        const EgressSecret *secrets[MAX_SECRETS];
        size_t n_secrets;
        bool client_eof, upstream_eof;
        bool shutdown_upstream; /* half-close toward the host once its bytes are written */
        bool substituted;
} Conn;

static void conn_close(Conn *c, const char *why);
static void conn_free(Conn *c);
static void update_polls(Conn *c);

/* ---- writing ---- */

static size_t side_pending(const Side *s)
{
        return sbx_buffer_size(&s->out) + s->piped;
}

/* Writes toward a side what it takes without blocking: the queue, then the pipe. */
static int side_flush(Side *s)
{
        while (sbx_buffer_size(&s->out) > 0) {
                ssize_t n = send(s->fd, sbx_buffer_data(&s->out), sbx_buffer_size(&s->out), MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                sbx_buffer_consume(&s->out, (size_t)n);
        }
        while (s->piped > 0) {
                ssize_t n =
                        splice(s->pipe[0], NULL, s->fd, NULL, s->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                if (n == 0)
                        return -EIO;
                s->piped -= (size_t)n;
                s->pipe_full = false;
        }
        return 0;
}

/* Moves the bytes waiting in a side's pipe into its queue, so that what is queued next follows them. */
static int side_unpipe(Side *s)
{
        while (s->piped > 0) {
                uint8_t *p;
                int r = sbx_buffer_reserve(&s->out, s->piped, &p);
                if (r < 0)
                        return r;
                ssize_t n = read(s->pipe[0], p, s->piped);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                sbx_buffer_commit(&s->out, (size_t)n);
                s->piped -= (size_t)n;
                s->pipe_full = false;
        }
        return 0;
}

/* Writes (or queues) bytes toward a side; a copy is kept of what the socket does not take now. */
static int side_write(Conn *c, Side *s, const void *p, size_t n)
{
        if (n == 0)
                return 0;
        if (s->fd < 0)
                return -ENOTCONN;
        int r = side_unpipe(s);
        if (r < 0)
                return r;
        if (sbx_buffer_size(&s->out) == 0) {
                ssize_t k = send(s->fd, p, n, MSG_NOSIGNAL);
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (k > 0) {
                        p = (const uint8_t *)p + k;
                        n -= (size_t)k;
                }
                if (n == 0)
                        return 0;
        }
        r = sbx_buffer_append(&s->out, p, n);
        update_polls(c);
        return r;
}

/* Gives the bytes toward a side a pipe to be spliced through. Without one (the agent is out of
 * fds, say) they are copied as before: slower, but the connection works. */
static void side_open_pipe(Conn *c, Side *s)
{
        if (s->pipe[0] >= 0)
                return;
        if (pipe2(s->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
                log_debug_errno(-errno, "Egress connection of %s: no pipe, copying instead: %m", c->s->id);
                s->pipe[0] = s->pipe[1] = -1;
                return;
        }
        /* Each socket buffer fragment spliced in takes a slot of the pipe, and a default pipe has
         * 16: as much room as a write queue has (QUEUE_HIGH) needs a larger one. If the kernel
         * refuses (pipe-user-pages limits), the default still works, with more wake-ups. */
        (void)fcntl(s->pipe[1], F_SETPIPE_SZ, (int)PIPE_SIZE);
        int size = fcntl(s->pipe[1], F_GETPIPE_SZ);
        s->pipe_size = size > 0 ? (size_t)size : 65536;
}

/* Moves what `from` has to read toward `to`, through `to`'s pipe, while neither would block.
 * Returns 1 at end of stream, 0, or a negative errno of either socket. */
static int pump(Conn *c, Side *from, Side *to, const char *direction)
{
        for (unsigned i = 0; i < PUMP_ROUNDS; i++) {
                if (to->piped >= to->pipe_size) {
                        to->pipe_full = true;
                        return 0;
                }
                ssize_t n = splice(from->fd, NULL, to->pipe[1], NULL, to->pipe_size - to->piped,
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n == 0)
                        return 1;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        /* Nothing to read, or no room in the pipe: only the second is worth
                         * waiting out, and only a pipe holding bytes can be full. */
                        if (to->piped > 0)
                                to->pipe_full = true;
                        return 0;
                }
                to->piped += (size_t)n;
                sbx_counter_add(c->e->m.bytes, SBX_LABELS(direction), (double)n);
                int r = side_flush(to);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Moves whatever a TLS object wants to send onto its socket. */
static int flush_tls(Conn *c, Tls *t, Side *to)
{
        char buf[16384];
        int n;
        while ((n = BIO_read(t->wbio, buf, sizeof(buf))) > 0)
                if (side_write(c, to, buf, (size_t)n) < 0)
                        return -EIO;
        return 0;
}

/* Sends plaintext toward the guest (through TLS when intercepting). */
static int to_client(Conn *c, const void *p, size_t n)
{
        sbx_counter_add(c->e->m.bytes, SBX_LABELS("down"), (double)n);
        if (!c->intercept)
                return side_write(c, &c->client, p, n);
        if (n > 0 && SSL_write(c->down.ssl, p, (int)n) <= 0)
                return -EIO;
        return flush_tls(c, &c->down, &c->client);
}

/* Sends plaintext toward the real host (through TLS when intercepting). */
static int to_upstream(Conn *c, const void *p, size_t n)
{
        sbx_counter_add(c->e->m.bytes, SBX_LABELS("up"), (double)n);
        if (!c->intercept)
                return side_write(c, &c->upstream, p, n);
        if (n > 0 && SSL_write(c->up.ssl, p, (int)n) <= 0)
                return -EIO;
        return flush_tls(c, &c->up, &c->upstream);
}

/* ---- polling ---- */

static void on_poll(uv_poll_t *h, int status, int events);

static void side_watch(Side *s, int events)
{
        if (!s->polled || events == s->events)
                return;
        s->events = events;
        if (events)
                uv_poll_start(&s->poll, events, on_poll);
        else
                uv_poll_stop(&s->poll);
}

/* Back-pressure: each side reads only while the other has room for more. */
static void update_polls(Conn *c)
{
        if (c->mode == MODE_CLOSED)
                return;
        /* Once the host closed, the guest's side only has to be written. */
        bool client_ok =
                !c->client_eof && !c->upstream_eof && sbx_buffer_size(&c->in) <= QUEUE_HIGH &&
                sbx_buffer_size(&c->held) <= QUEUE_HIGH &&
                (!c->upstream_open || (side_pending(&c->upstream) < QUEUE_HIGH && !c->upstream.pipe_full));
        bool upstream_ok = c->upstream_open && !c->upstream_eof && side_pending(&c->client) < QUEUE_HIGH &&
                           !c->client.pipe_full;
        side_watch(&c->client,
                   (client_ok ? UV_READABLE : 0) | (side_pending(&c->client) > 0 ? UV_WRITABLE : 0));
        if (c->mode == MODE_CONNECTING || c->pre == PRE_PENDING)
                side_watch(&c->upstream, UV_WRITABLE);
        else if (c->upstream_open)
                side_watch(&c->upstream, (upstream_ok ? UV_READABLE : 0) |
                                                 (side_pending(&c->upstream) > 0 ? UV_WRITABLE : 0));
        else
                side_watch(&c->upstream, 0); /* a pre-connection waiting to be taken */
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
                if (c->upgrade_pending)
                        return sbx_buffer_append(&c->held, p, n);
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
                                /* The head is complete. An upgrade is only taken as the first
                                 * request of a connection: then the first bytes the host sends
                                 * are its answer, and the status line is all there is to read
                                 * (responses are not parsed). */
                                if (c->parser.upgrade && c->requests > 0) {
                                        sbx_counter_inc(c->e->m.denied, SBX_LABELS("malformed"));
                                        deny_http(c, 400, "Bad Request", "Upgrade or CONNECT",
                                                  "is only relayed as the first request of a connection");
                                        return -EPROTO;
                                }
                                int r = send_head(c);
                                if (r < 0)
                                        return r;
                                c->requests++;
                                c->in_body = true;
                                if (c->parser.upgrade) {
                                        /* Whatever follows waits for the host's answer: raw bytes
                                         * after a 101, requests checked one by one otherwise. */
                                        c->upgrade_pending = true;
                                        return sbx_buffer_append(&c->held, p + k, n - k);
                                }
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

/* Bytes read on the copying path (single-threaded: the agent's loop). Reused, so that relaying
 * does not touch fresh memory for every read. */
static uint8_t read_buf[READ_SIZE];

static void upstream_closed(Conn *c, int error)
{
        c->upstream_eof = true;
        if (error < 0) {
                conn_close(c, "upstream read failed");
                return;
        }
        /* The host closed: so does the guest's side, once what it is owed is written (settle()). */
}

/* Plaintext from the host toward the guest. While an upgrade is pending, its status line decides
 * what the held bytes of the guest are: a host that answers anything but 101 did not switch, so
 * the guest's next bytes are requests again, checked and substituted like the first. (Without
 * this, "Upgrade: x" answered by 200 would let every later request through unchecked: Host
 * headers naming other sites on the same address, placeholders never replaced.) */
static int from_upstream(Conn *c, const uint8_t *p, size_t n)
{
        enum { STATUS_LEN = 13 }; /* "HTTP/1.1 101 " */
        if (!c->upgrade_pending)
                return to_client(c, p, n);
        size_t have = sbx_buffer_size(&c->status);
        size_t take = SBX_MIN(n, (size_t)STATUS_LEN - have);
        int r = sbx_buffer_append(&c->status, p, take);
        if (r < 0)
                return r;
        if ((have += take) < STATUS_LEN)
                return to_client(c, p, n);
        const char *line = (const char *)sbx_buffer_data(&c->status);
        bool switched = (memcmp(line, "HTTP/1.1 101", 12) == 0 || memcmp(line, "HTTP/1.0 101", 12) == 0) &&
                        (line[12] == ' ' || line[12] == '\r');
        c->upgrade_pending = false;
        sbx_buffer_clear(&c->status);
        r = to_client(c, p, n);
        if (r < 0)
                return r;
        SbxBuffer held = c->held;
        c->held = (SbxBuffer)SBX_BUFFER_INIT;
        if (switched) {
                c->upgraded = true;
        } else {
                http_parser_init(&c->parser, HTTP_REQUEST);
                c->parser.data = c;
                c->in_body = false;
        }
        r = http_feed(c, sbx_buffer_data(&held), sbx_buffer_size(&held));
        sbx_buffer_done(&held);
        return r;
}

/* Bytes from the real host, on the copying path. */
static void upstream_read(Conn *c, const uint8_t *p, size_t n)
{
        if (c->intercept) {
                BIO_write(c->up.rbio, p, (int)n);
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
                        if (from_upstream(c, (const uint8_t *)plain, (size_t)k) < 0) {
                                conn_close(c, "request refused");
                                return;
                        }
                flush_tls(c, &c->up, &c->upstream);
        } else if (from_upstream(c, p, n) < 0) {
                conn_close(c, NULL);
        }
}

static void upstream_readable(Conn *c)
{
        /* The answer to an upgrade is read, not spliced: its status line is looked at. */
        if (c->client.pipe[0] >= 0 && !c->upgrade_pending) {
                int r = pump(c, &c->upstream, &c->client, "down");
                if (r != 0)
                        upstream_closed(c, r < 0 ? r : 0);
                return;
        }
        ssize_t n = read(c->upstream.fd, read_buf, sizeof(read_buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                upstream_closed(c, n < 0 ? -errno : 0);
                return;
        }
        upstream_read(c, read_buf, (size_t)n);
}

static void on_connected(Conn *c, int status)
{
        if (status < 0) {
                sbx_counter_inc(c->e->m.denied, SBX_LABELS("upstream"));
                if (!c->https)
                        deny_http(c, 502, "Bad Gateway", c->host, "cannot be connected to");
                conn_close(c, "upstream connect failed");
                return;
        }
        uv_timer_stop(&c->timer);
        c->upstream_open = true;
        int one = 1;
        (void)setsockopt(c->upstream.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

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
                side_open_pipe(c, &c->upstream);
                side_open_pipe(c, &c->client);
        } else {
                /* Responses are not looked at: they are spliced. */
                c->mode = MODE_HTTP;
                side_open_pipe(c, &c->client);
                SbxBuffer pending = c->in;
                c->in = (SbxBuffer)SBX_BUFFER_INIT;
                int r = http_feed(c, sbx_buffer_data(&pending), sbx_buffer_size(&pending));
                sbx_buffer_done(&pending);
                if (r < 0) {
                        conn_close(c, "request refused");
                        return;
                }
        }
        update_polls(c);
}

static void on_timeout(uv_timer_t *t)
{
        Conn *c = t->data;
        sbx_counter_inc(c->e->m.denied, SBX_LABELS(c->mode == MODE_PEEK ? "malformed" : "upstream"));
        conn_close(c, c->mode == MODE_PEEK ? "the client sent no request in time"
                                           : "upstream connect timed out");
}

/* Opens the upstream socket and starts connecting it. Returns 0 (connecting, or connected), or a
 * negative errno: -ECONNREFUSED is the host's answer, anything else ours. */
static int open_upstream(Conn *c, const struct in_addr *addr)
{
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(c->port), .sin_addr = *addr };
        c->upstream.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->upstream.fd < 0)
                return -errno;
        if (uv_poll_init_socket(c->e->a->loop, &c->upstream.poll, c->upstream.fd) < 0)
                return -EIO;
        c->upstream.poll.data = c;
        c->upstream.polled = true;
        c->upstream.events = 0;
        c->open_handles++;
        if (connect(c->upstream.fd, (const struct sockaddr *)&to, sizeof(to)) < 0 && errno != EINPROGRESS)
                return -errno;
        return 0;
}

static void connect_to(Conn *c, const struct in_addr *addr);

static void pre_closed(uv_handle_t *h)
{
        Conn *c = h->data;
        close(c->upstream.fd);
        c->upstream.fd = -1;
        if (--c->open_handles == 0) {
                conn_free(c);
                return;
        }
        if (c->mode != MODE_CLOSED)
                connect_to(c, &c->reconnect_to);
}

/* Whether the host has closed (or reset) a pre-connection that waited for the guest's request: a
 * guest slow to send it can outlast a host's patience for idle connections. */
static bool pre_closed_by_host(Conn *c)
{
        char b;
        ssize_t k = recv(c->upstream.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Connects upstream: takes the pre-connection when it went to the same address (and is still
 * open), else (after closing it) a new one. */
static void connect_to(Conn *c, const struct in_addr *addr)
{
        c->mode = MODE_CONNECTING;
        uv_timer_start(&c->timer, on_timeout, CONNECT_TIMEOUT_MS, 0);
        if (c->pre != PRE_NONE) {
                PreConnect pre = c->pre;
                c->pre = PRE_NONE;
                if (addr->s_addr == c->orig_dst.sin_addr.s_addr &&
                    !(pre == PRE_DONE && pre_closed_by_host(c))) {
                        sbx_counter_inc(c->e->m.preconnects, SBX_LABELS("used"));
                        if (pre == PRE_DONE)
                                on_connected(c, 0);
                        else if (pre == PRE_FAILED)
                                on_connected(c, -c->pre_error);
                        else
                                update_polls(c); /* still connecting: on_poll takes it from here */
                        return;
                }
                /* The name leads elsewhere (or the host gave up on it): this one goes, the right one
                 * follows once it is closed. */
                sbx_counter_inc(c->e->m.preconnects, SBX_LABELS("unused"));
                c->reconnect_to = *addr;
                c->upstream.polled = false;
                uv_close((uv_handle_t *)&c->upstream.poll, pre_closed);
                return;
        }
        int r = open_upstream(c, addr);
        if (r == -ECONNREFUSED)
                on_connected(c, r);
        else if (r < 0)
                conn_close(c, "upstream connect failed");
        else
                update_polls(c); /* writable once connected (or failed) */
}

/* For a guest that connects to an address it may reach anyway (the open internet, or a literal of
 * its list), the proxy connects there at once, while the guest is still sending its request: the
 * host's handshake then overlaps with the guest's and no longer adds to the time to first byte. The
 * request's name still decides (decide()); a name that leads elsewhere, or a refusal, closes this
 * connection without a byte sent. Lists of names get no such head start: a guest may point any
 * address at port 80, and only the name says whether it may go there. */
static void preconnect(Conn *c)
{
        if (!egress_policy_addr_allowed(c->s->policy, (const struct sockaddr *)&c->orig_dst, c->port))
                return;
        int r = open_upstream(c, &c->orig_dst.sin_addr);
        if (r < 0 && !c->upstream.polled) {
                /* No socket to watch: nothing was started, the request connects as usual. */
                if (c->upstream.fd >= 0)
                        close(c->upstream.fd);
                c->upstream.fd = -1;
                return;
        }
        c->pre = r < 0 ? PRE_FAILED : PRE_PENDING;
        c->pre_error = -r;
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
        /* Every address a name leads to must be fair game: no private ranges through a name. Of
         * those, the one the guest chose (its own lookup of the same name) is taken when it is
         * there. */
        const struct in_addr *chosen = NULL;
        for (size_t i = 0; i < n; i++) {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = addrs[i] };
                if (egress_addr_blocked((const struct sockaddr *)&sa))
                        continue;
                if (!chosen || addrs[i].s_addr == c->orig_dst.sin_addr.s_addr)
                        chosen = &addrs[i];
        }
        if (chosen) {
                connect_to(c, chosen);
                return;
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

static void client_closed(Conn *c)
{
        c->client_eof = true;
        if (c->upstream_open && c->mode == MODE_SPLICE) {
                /* Half-close toward the host once what it is owed is written (settle()); it
                 * answers and closes in turn. */
                c->shutdown_upstream = true;
                return;
        }
        conn_close(c, NULL);
}

/* Bytes from the guest, on the copying path. */
static void client_read(Conn *c, const uint8_t *p, size_t n)
{
        int r = 0;
        switch (c->mode) {
        case MODE_PEEK:
                if (sbx_buffer_append(&c->in, p, n) >= 0)
                        peek(c);
                return;
        case MODE_RESOLVING:
        case MODE_CONNECTING:
                /* Not decided or not connected yet: keep it (bounded by the read pause in
                 * update_polls()). */
                if (c->intercept) {
                        BIO_write(c->down.rbio, p, (int)n);
                        SSL_do_handshake(c->down.ssl);
                        flush_tls(c, &c->down, &c->client);
                        char plain[16384];
                        int k;
                        while ((k = SSL_read(c->down.ssl, plain, sizeof(plain))) > 0)
                                sbx_buffer_append(&c->in, plain, (size_t)k);
                } else {
                        sbx_buffer_append(&c->in, p, n);
                }
                return;
        case MODE_SPLICE:
                /* Without a pipe (see side_open_pipe()). */
                r = to_upstream(c, p, n);
                break;
        case MODE_HTTP:
                if (c->intercept) {
                        BIO_write(c->down.rbio, p, (int)n);
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
                        r = http_feed(c, p, n);
                }
                break;
        case MODE_CLOSED:
                break;
        }
        if (r < 0)
                conn_close(c, NULL);
}

static void client_readable(Conn *c)
{
        /* The pipe toward upstream exists once nothing more from the guest is looked at. */
        if (c->upstream.pipe[0] >= 0 && c->upstream_open) {
                int r = pump(c, &c->client, &c->upstream, "up");
                /* An error may be either socket's: nothing more can be relayed. */
                if (r < 0)
                        conn_close(c, NULL);
                else if (r > 0)
                        client_closed(c);
                return;
        }
        ssize_t n = read(c->client.fd, read_buf, sizeof(read_buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                client_closed(c);
                return;
        }
        client_read(c, read_buf, (size_t)n);
}

/* After every event: what waited for a side to be written out, then what to watch. */
static void settle(Conn *c)
{
        if (c->mode == MODE_CLOSED)
                return;
        if (c->shutdown_upstream && side_pending(&c->upstream) == 0) {
                c->shutdown_upstream = false;
                (void)shutdown(c->upstream.fd, SHUT_WR);
        }
        if (c->upstream_eof && side_pending(&c->client) == 0) {
                conn_close(c, NULL);
                return;
        }
        update_polls(c);
}

/* The outcome of a non-blocking connect, once its socket polled writable (or failed): 0 or a
 * positive errno. */
static int socket_error(int fd)
{
        int err = 0;
        socklen_t len = sizeof(err);
        return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ? errno : err;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
        Conn *c = h->data;
        bool client = h == &c->client.poll;
        Side *s = client ? &c->client : &c->upstream;

        if (c->mode == MODE_CLOSED)
                return;
        if (!client && c->pre == PRE_PENDING) {
                /* The pre-connection is through (or failed): it waits to be taken. */
                int err = socket_error(s->fd);
                if (status < 0) {
                        s->events = 0; /* libuv has stopped watching */
                        err = err ?: ECONNREFUSED;
                }
                c->pre = err ? PRE_FAILED : PRE_DONE;
                c->pre_error = err;
                settle(c);
                return;
        }
        if (status < 0) {
                /* A socket error (libuv has stopped watching): the connection is over. */
                s->events = 0;
                if (!client && c->mode == MODE_CONNECTING)
                        on_connected(c, -(socket_error(s->fd) ?: ECONNREFUSED));
                else
                        conn_close(c, client ? NULL : "upstream read failed");
                return;
        }
        if (!client && c->mode == MODE_CONNECTING) {
                on_connected(c, -socket_error(s->fd));
                settle(c);
                return;
        }
        if (events & UV_WRITABLE) {
                int r = side_flush(s);
                if (r < 0) {
                        conn_close(c, NULL);
                        return;
                }
        }
        if ((events & (UV_READABLE | UV_DISCONNECT)) && c->mode != MODE_CLOSED) {
                if (client)
                        client_readable(c);
                else
                        upstream_readable(c);
        }
        settle(c);
}

/* ---- lifetime ---- */

static void side_done(Side *s)
{
        /* The poll handle is closed by now (uv_close stops it at once), so the fd can go. */
        if (s->fd >= 0)
                close(s->fd);
        for (unsigned i = 0; i < 2; i++)
                if (s->pipe[i] >= 0)
                        close(s->pipe[i]);
        sbx_buffer_done(&s->out);
}

static void conn_free(Conn *c)
{
        SSL_free(c->down.ssl);
        SSL_free(c->up.ssl);
        side_done(&c->client);
        side_done(&c->upstream);
        sbx_buffer_done(&c->in);
        sbx_buffer_done(&c->held);
        sbx_buffer_done(&c->status);
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
        /* What the sockets have not taken by now is dropped: a short response (403, 502) was
         * written before this, and the kernel sends what it accepted. */
        uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
        if (c->client.polled)
                uv_close((uv_handle_t *)&c->client.poll, conn_handle_closed);
        if (c->upstream.polled)
                uv_close((uv_handle_t *)&c->upstream.poll, conn_handle_closed);
}

static Side side_init(void)
{
        return (Side){ .fd = -1, .pipe = { -1, -1 } };
}

static void on_accept(uv_stream_t *listener, int status)
{
        Egress *e = listener->data;
        Conn *c;
        struct sockaddr_in peer;
        socklen_t len = sizeof(peer), dlen = sizeof(struct sockaddr_in);
        uv_os_fd_t fd;

        if (status < 0 || !(c = calloc(1, sizeof(*c))))
                return;
        c->e = e;
        c->https = listener == (uv_stream_t *)&e->https_listener;
        c->in = (SbxBuffer)SBX_BUFFER_INIT;
        c->head = (SbxBuffer)SBX_BUFFER_INIT;
        c->held = (SbxBuffer)SBX_BUFFER_INIT;
        c->status = (SbxBuffer)SBX_BUFFER_INIT;
        c->client = side_init();
        c->upstream = side_init();
        uv_tcp_init(e->a->loop, &c->accepted);
        uv_timer_init(e->a->loop, &c->timer);
        c->accepted.data = c->timer.data = c;
        c->open_handles = 2;
        /* libuv's listener accepts (it copes with running out of fds); the socket then leaves the
         * uv_tcp_t for a plain fd of ours, which splice() and a uv_poll_t can use. */
        if (uv_accept(listener, (uv_stream_t *)&c->accepted) == 0 &&
            uv_fileno((uv_handle_t *)&c->accepted, &fd) == 0)
                c->client.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        uv_close((uv_handle_t *)&c->accepted, conn_handle_closed);
        if (c->client.fd < 0 || getpeername(c->client.fd, (struct sockaddr *)&peer, &len) < 0 ||
            peer.sin_family != AF_INET ||
            getsockopt(c->client.fd, SOL_IP, SO_ORIGINAL_DST, &c->orig_dst, &dlen) < 0 ||
            uv_poll_init_socket(e->a->loop, &c->client.poll, c->client.fd) < 0) {
                conn_close(c, NULL);
                return;
        }
        c->client.poll.data = c;
        c->client.polled = true;
        c->open_handles++;
        c->s = egress_sandbox_by_address(e, &peer.sin_addr);
        if (!c->s) {
                conn_close(c, NULL);
                return;
        }
        c->s->refs++;
        c->port = ntohs(c->orig_dst.sin_port);
        preconnect(c);
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        int one = 1;
        (void)setsockopt(c->client.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        uv_timer_start(&c->timer, on_timeout, PEEK_TIMEOUT_MS, 0);
        update_polls(c);
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
