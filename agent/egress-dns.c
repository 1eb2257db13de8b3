/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DNS forwarder every sandbox talks to (its resolver is its gateway; nftables redirects port 53
 * here). A query is parsed (common/wire), its sandbox found by source address, and its name checked
 * against the sandbox's policy:
 *
 *   not allowed    NXDOMAIN, answered here (the name does not exist for this sandbox)
 *   allowed        forwarded upstream as it came (c-ares); the IPv4 addresses of the answer join
 *                  the sandbox's set (on the entries' ports) before the answer goes back, so the
 *                  guest's first connection already passes; they lapse after the answer's TTL
 *                  (at least a minute) plus a grace, unless a later answer renews them
 *   open internet  forwarded, nothing to learn (the open internet needs no sets)
 *
 * Queries come over UDP and over TCP (RFC 7766: resolvers retry over TCP when a UDP answer is
 * truncated, and some ask over TCP to begin with); upstream, c-ares itself falls back to TCP when an
 * answer is truncated. A TCP connection carries any number of queries, answered as they come back;
 * it is closed after TCP_IDLE_MS without one, and at most TCP_CONNS_MAX are served at once, each
 * with at most TCP_PENDING_MAX queries upstream (then it is not read until answers return).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/egress.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"
#include "common/wire/wire.h"

#define TTL_MIN_S   60
#define TTL_MAX_S   86400
#define TTL_GRACE_S 30
#define MAX_ADDRS   32

#define TCP_CONNS_MAX   256
#define TCP_PENDING_MAX 16
#define TCP_IDLE_MS     10000

/* A guest's DNS-over-TCP connection. Freed when its two handles are closed and no query of it is
 * still upstream (`refs` counts both). */
struct DnsConn {
        Egress *e;
        EgressSandbox *s;
        uv_tcp_t tcp;
        uv_timer_t idle;
        SbxBuffer in;
        unsigned pending;
        unsigned refs;
        bool eof, finishing, closing;
        LIST_ENTRY(DnsConn) link; /* e->dns_conns */
};

/* Where an answer goes: a UDP peer, or a TCP connection. */
typedef struct Peer {
        struct sockaddr_in udp;
        DnsConn *tcp;
} Peer;

static void tcp_answer(DnsConn *c, const uint8_t *p, size_t n);
static void tcp_query_done(DnsConn *c);

/* ---- c-ares on the loop ---- */

typedef struct Poll {
        uv_poll_t h;
        Egress *e;
        int fd;
} Poll;

static void arm_timer(Egress *e);

static void on_poll(uv_poll_t *h, int status, int events)
{
        Poll *p = h->data;
        ares_socket_t r = (events & UV_READABLE) || status < 0 ? p->fd : ARES_SOCKET_BAD;
        ares_socket_t w = (events & UV_WRITABLE) || status < 0 ? p->fd : ARES_SOCKET_BAD;
        Egress *e = p->e;
        ares_process_fd(e->ares, r, w);
        arm_timer(e);
}

static void poll_closed(uv_handle_t *h)
{
        free(h->data);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
        Egress *e = data;
        char key[16];
        snprintf(key, sizeof(key), "%d", fd);
        Poll *p = sbx_hashmap_get(e->ares_polls, key);

        if (!readable && !writable) {
                if (p) {
                        sbx_hashmap_remove(e->ares_polls, key);
                        uv_close((uv_handle_t *)&p->h, poll_closed);
                }
                return;
        }
        if (!p) {
                p = calloc(1, sizeof(*p));
                if (!p)
                        return;
                p->e = e;
                p->fd = fd;
                p->h.data = p;
                if (uv_poll_init_socket(e->a->loop, &p->h, fd) < 0 ||
                    sbx_hashmap_put(e->ares_polls, key, p, NULL) < 0) {
                        free(p);
                        return;
                }
        }
        uv_poll_start(&p->h, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), on_poll);
}

static void on_ares_timer(uv_timer_t *t)
{
        Egress *e = t->data;
        ares_process_fd(e->ares, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        arm_timer(e);
}

static void arm_timer(Egress *e)
{
        struct timeval tv, *left = ares_timeout(e->ares, NULL, &tv);
        if (!left) {
                uv_timer_stop(&e->ares_timer);
                return;
        }
        uint64_t ms = (uint64_t)left->tv_sec * 1000 + (uint64_t)left->tv_usec / 1000;
        uv_timer_start(&e->ares_timer, on_ares_timer, ms ? ms : 1, 0);
}

static void cache_put(Egress *e, const char *name, const struct in_addr *addrs, size_t n, int ttl);

/* ---- answering ---- */

typedef struct Query {
        Egress *e;
        EgressSandbox *s;
        Peer client;
        uint16_t id;
        SbxDnsQuestion q;
} Query;

typedef struct Reply {
        uv_udp_send_t req;
        uint8_t *data;
} Reply;

static void reply_sent(uv_udp_send_t *req, int status)
{
        Reply *r = req->data;
        free(r->data);
        free(r);
}

static void send_reply(Egress *e, const Peer *to, const uint8_t *p, size_t n)
{
        if (to->tcp) {
                tcp_answer(to->tcp, p, n);
                return;
        }
        Reply *r = calloc(1, sizeof(*r));
        if (!r || !(r->data = malloc(n))) {
                free(r);
                return;
        }
        memcpy(r->data, p, n);
        r->req.data = r;
        uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)n);
        if (uv_udp_send(&r->req, &e->dns_udp, &b, 1, (const struct sockaddr *)&to->udp, reply_sent) < 0) {
                free(r->data);
                free(r);
        }
}

static void answer_empty(Egress *e, const Peer *to, const uint8_t *query, size_t n, unsigned rcode)
{
        _cleanup_(sbx_buffer_done) SbxBuffer b = SBX_BUFFER_INIT;
        if (sbx_dns_empty_answer(query, n, rcode, &b) == 0)
                send_reply(e, to, sbx_buffer_data(&b), sbx_buffer_size(&b));
}

/* Adds the answer's addresses to the sandbox's sets, on the ports the matching entries name. */
static void learn(Egress *e, EgressSandbox *s, const char *name, const struct ares_addrttl *a, int n)
{
        struct in_addr ok[MAX_ADDRS];
        int ttl = TTL_MAX_S;
        size_t k = 0;

        for (int i = 0; i < n && k < MAX_ADDRS; i++) {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = a[i].ipaddr };
                /* A name must not open a private range: only a literal entry can. */
                if (egress_addr_blocked((const struct sockaddr *)&sa))
                        continue;
                ok[k++] = a[i].ipaddr;
                if (a[i].ttl < ttl)
                        ttl = a[i].ttl;
        }
        if (k == 0)
                return;
        ttl = ttl < TTL_MIN_S ? TTL_MIN_S : ttl;
        int64_t until = sbx_now_ms() + (int64_t)(ttl + TTL_GRACE_S) * 1000;

        for (size_t i = 0; i < s->policy->n_entries; i++) {
                const SbxNetEntry *x = &s->policy->entries[i];
                if (!sbx_net_entry_matches_host(x, name, x->port))
                        continue;
                struct in_addr fresh[MAX_ADDRS];
                size_t f = 0;
                for (size_t j = 0; j < k; j++) {
                        char key[64], addr[INET_ADDRSTRLEN];
                        inet_ntop(AF_INET, &ok[j], addr, sizeof(addr));
                        if (x->port)
                                snprintf(key, sizeof(key), "%s . %u", addr, x->port);
                        else
                                snprintf(key, sizeof(key), "%s", addr);
                        int64_t *t = sbx_hashmap_get(s->learned, key);
                        if (t) {
                                /* Known: only the lapse moves. */
                                if (*t < until)
                                        *t = until;
                                continue;
                        }
                        t = malloc(sizeof(*t));
                        if (!t)
                                continue;
                        *t = until;
                        if (sbx_hashmap_put(s->learned, key, t, NULL) < 0) {
                                free(t);
                                continue;
                        }
                        fresh[f++] = ok[j];
                }
                if (f > 0 && egress_nft_allow(e, s, fresh, f, x->port) < 0)
                        log_warning("Could not add the addresses of %s to sandbox %s's set", name, s->id);
        }
}

static void on_upstream(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
        Query *q = arg;
        Egress *e = q->e;

        if (status == ARES_SUCCESS && alen >= 12 && !q->s->removed) {
                struct ares_addrttl addrs[MAX_ADDRS];
                int n = MAX_ADDRS;
                if (q->q.qtype == 1 /* A */ &&
                    ares_parse_a_reply(abuf, alen, NULL, addrs, &n) == ARES_SUCCESS) {
                        if (!q->s->policy->open)
                                learn(e, q->s, q->q.name, addrs, n);
                        struct in_addr plain[MAX_ADDRS];
                        int ttl = INT32_MAX;
                        for (int i = 0; i < n; i++) {
                                plain[i] = addrs[i].ipaddr;
                                ttl = addrs[i].ttl < ttl ? addrs[i].ttl : ttl;
                        }
                        cache_put(e, q->q.name, plain, (size_t)n, ttl);
                }
                /* c-ares chose its own query id upstream; the guest gets its own back. */
                abuf[0] = (uint8_t)(q->id >> 8);
                abuf[1] = (uint8_t)q->id;
                send_reply(e, &q->client, abuf, (size_t)alen);
                sbx_counter_inc(e->m.dns, SBX_LABELS("answered"));
        } else if (status != ARES_EDESTRUCTION && status != ARES_ECANCELLED) {
                uint8_t head[12] = { (uint8_t)(q->id >> 8), (uint8_t)q->id, 0x81, 0x82 };
                /* No upstream answer: SERVFAIL with the header alone is enough for a resolver. */
                if (!q->s->removed)
                        send_reply(e, &q->client, head, sizeof(head));
                sbx_counter_inc(e->m.dns, SBX_LABELS("failed"));
        }
        if (q->client.tcp)
                tcp_query_done(q->client.tcp);
        egress_sandbox_unref(q->s);
        free(q);
}

/* One query from a sandbox, by either transport: refused here, or sent upstream. */
static void handle_query(Egress *e, EgressSandbox *s, const Peer *from, const uint8_t *p, size_t n)
{
        SbxDnsQuestion q;

        if (sbx_dns_query_parse(p, n, &q) < 0) {
                sbx_counter_inc(e->m.dns, SBX_LABELS("malformed"));
                if (n >= 12)
                        answer_empty(e, from, p, n, 1 /* FORMERR */);
                return;
        }
        if (!egress_policy_name_allowed(s->policy, q.name)) {
                sbx_counter_inc(e->m.dns, SBX_LABELS("refused"));
                answer_empty(e, from, p, n, 3 /* NXDOMAIN */);
                return;
        }
        Query *x = calloc(1, sizeof(*x));
        if (!x)
                return;
        x->e = e;
        x->s = s;
        s->refs++;
        x->client = *from;
        if (from->tcp) {
                from->tcp->pending++;
                from->tcp->refs++;
        }
        x->id = q.id;
        x->q = q;
        ares_send(e->ares, p, (int)n, on_upstream, x);
        arm_timer(e);
}

static void on_query(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                     unsigned flags)
{
        Egress *e = h->data;

        if (nread <= 0 || !from || from->sa_family != AF_INET || (flags & UV_UDP_PARTIAL))
                goto done;
        const struct sockaddr_in *client = (const struct sockaddr_in *)from;
        EgressSandbox *s = egress_sandbox_by_address(e, &client->sin_addr);
        if (!s) {
                /* Not a sandbox (nftables lets only taps reach this port, but a stopped one's last
                 * packets can still arrive). */
                goto done;
        }
        handle_query(e, s, &(Peer){ .udp = *client }, (const uint8_t *)buf->base, (size_t)nread);
done:
        free(buf->base);
}

static void alloc_query(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        buf->base = malloc(SBX_DNS_QUERY_MAX);
        buf->len = buf->base ? SBX_DNS_QUERY_MAX : 0;
}

/* ---- DNS over TCP ---- */

static void tcp_unref(DnsConn *c)
{
        if (--c->refs > 0)
                return;
        if (c->s)
                egress_sandbox_unref(c->s);
        sbx_buffer_done(&c->in);
        free(c);
}

static void tcp_handle_closed(uv_handle_t *h)
{
        DnsConn *c = h->data;
        Egress *e = c->e;
        tcp_unref(c);
        if (--e->closing == 0 && e->closed)
                e->closed(e);
}

static void tcp_close(DnsConn *c)
{
        Egress *e = c->e;
        if (c->closing)
                return;
        c->closing = true;
        LIST_REMOVE(c, link);
        e->n_dns_conns--;
        /* Queued answers are dropped with the connection: it is closed when idle, broken, or the
         * agent stops. */
        e->closing += 2;
        uv_close((uv_handle_t *)&c->idle, tcp_handle_closed);
        uv_close((uv_handle_t *)&c->tcp, tcp_handle_closed);
}

static void tcp_on_idle(uv_timer_t *t)
{
        tcp_close(t->data);
}

static void tcp_shutdown_done(uv_shutdown_t *req, int status)
{
        DnsConn *c = req->data;
        free(req);
        tcp_close(c);
        tcp_unref(c);
}

/* The guest hung up its side and every answer it asked for is queued: close once they are sent. */
static void tcp_finish(DnsConn *c)
{
        if (c->finishing)
                return;
        c->finishing = true;
        uv_shutdown_t *req = calloc(1, sizeof(*req));
        if (!req || (req->data = c, uv_shutdown(req, (uv_stream_t *)&c->tcp, tcp_shutdown_done)) < 0) {
                free(req);
                tcp_close(c);
                return;
        }
        c->refs++;
}

typedef struct TcpReply {
        uv_write_t req;
        uint8_t data[];
} TcpReply;

static void tcp_reply_sent(uv_write_t *req, int status)
{
        free(req->data);
}

static void tcp_answer(DnsConn *c, const uint8_t *p, size_t n)
{
        if (c->closing || n > UINT16_MAX)
                return;
        TcpReply *r = malloc(sizeof(*r) + 2 + n);
        if (!r)
                return;
        r->data[0] = (uint8_t)(n >> 8);
        r->data[1] = (uint8_t)n;
        memcpy(r->data + 2, p, n);
        r->req.data = r;
        uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)(n + 2));
        if (uv_write(&r->req, (uv_stream_t *)&c->tcp, &b, 1, tcp_reply_sent) < 0)
                free(r);
}

static void tcp_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        DnsConn *c = h->data;
        uint8_t *p;
        /* At most one whole query and the length of the next are ever buffered. */
        size_t room = 2 + SBX_DNS_QUERY_MAX + 2 - sbx_buffer_size(&c->in);
        if (sbx_buffer_reserve(&c->in, room, &p) < 0) {
                *buf = uv_buf_init(NULL, 0);
                return;
        }
        *buf = uv_buf_init((char *)p, (unsigned)room);
}

/* Reads while the connection may have more queries upstream. */
static void tcp_update(DnsConn *c)
{
        if (c->closing)
                return;
        if (c->eof) {
                if (c->pending == 0)
                        tcp_finish(c);
                return;
        }
        if (c->pending < TCP_PENDING_MAX)
                uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc, tcp_read);
        else
                uv_read_stop((uv_stream_t *)&c->tcp);
        if (c->pending == 0)
                uv_timer_start(&c->idle, tcp_on_idle, TCP_IDLE_MS, 0);
        else
                uv_timer_stop(&c->idle);
}

/* Handles the whole queries buffered, as many as may go upstream, then decides what to wait for. */
static void tcp_process(DnsConn *c)
{
        Egress *e = c->e;

        while (!c->closing && c->pending < TCP_PENDING_MAX) {
                size_t offset, len;
                int r = sbx_dns_tcp_message(sbx_buffer_data(&c->in), sbx_buffer_size(&c->in), &offset, &len);
                if (r == -EAGAIN)
                        break;
                if (r < 0 || c->s->removed) {
                        if (r < 0)
                                sbx_counter_inc(e->m.dns, SBX_LABELS("malformed"));
                        tcp_close(c);
                        return;
                }
                handle_query(e, c->s, &(Peer){ .tcp = c }, sbx_buffer_data(&c->in) + offset, len);
                sbx_buffer_consume(&c->in, offset + len);
        }
        tcp_update(c);
}

static void tcp_query_done(DnsConn *c)
{
        c->pending--;
        tcp_process(c);
        tcp_unref(c);
}

static void tcp_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
        DnsConn *c = st->data;

        if (nread < 0) {
                if (nread == UV_EOF && !c->closing) {
                        c->eof = true;
                        uv_read_stop(st);
                        tcp_update(c);
                } else {
                        tcp_close(c);
                }
                return;
        }
        sbx_buffer_commit(&c->in, (size_t)nread);
        tcp_process(c);
}

static void tcp_on_connection(uv_stream_t *listener, int status)
{
        Egress *e = listener->data;
        struct sockaddr_storage peer;
        int len = sizeof(peer);

        if (status < 0)
                return;
        DnsConn *c = calloc(1, sizeof(*c));
        if (!c)
                return;
        c->e = e;
        c->in = (SbxBuffer)SBX_BUFFER_INIT;
        c->refs = 2;
        uv_tcp_init(e->a->loop, &c->tcp);
        uv_timer_init(e->a->loop, &c->idle);
        c->tcp.data = c->idle.data = c;
        LIST_INSERT_HEAD(&e->dns_conns, c, link);
        e->n_dns_conns++;
        if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0 ||
            uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) < 0 || peer.ss_family != AF_INET ||
            e->n_dns_conns > TCP_CONNS_MAX) {
                tcp_close(c);
                return;
        }
        c->s = egress_sandbox_by_address(e, &((struct sockaddr_in *)&peer)->sin_addr);
        if (!c->s) {
                tcp_close(c);
                return;
        }
        c->s->refs++;
        uv_tcp_nodelay(&c->tcp, 1);
        tcp_update(c);
}

/* ---- a small cache of answers, for the proxy ----
 *
 * A guest resolves a name through the forwarder just before it connects; the proxy then needs the
 * same name's addresses. The forwarder's answers (with their TTLs) are kept here so the proxy does
 * not ask upstream again. Bounded: when full, it starts over. */

#define CACHE_MAX 4096

typedef struct Cached {
        int64_t until_ms;
        size_t n;
        struct in_addr addrs[MAX_ADDRS];
} Cached;

static void cache_put(Egress *e, const char *name, const struct in_addr *addrs, size_t n, int ttl)
{
        if (n == 0 || ttl <= 0)
                return;
        if (!e->dns_cache && sbx_hashmap_new(&e->dns_cache) < 0)
                return;
        if (sbx_hashmap_size(e->dns_cache) >= CACHE_MAX) {
                sbx_hashmap_free(e->dns_cache, free);
                e->dns_cache = NULL;
                if (sbx_hashmap_new(&e->dns_cache) < 0)
                        return;
        }
        Cached *c = sbx_hashmap_get(e->dns_cache, name);
        if (!c) {
                c = calloc(1, sizeof(*c));
                if (!c || sbx_hashmap_put(e->dns_cache, name, c, NULL) < 0) {
                        free(c);
                        return;
                }
        }
        c->n = n < MAX_ADDRS ? n : MAX_ADDRS;
        memcpy(c->addrs, addrs, c->n * sizeof(*addrs));
        c->until_ms = sbx_now_ms() + (int64_t)ttl * 1000;
}

static const Cached *cache_get(Egress *e, const char *name)
{
        Cached *c = e->dns_cache ? sbx_hashmap_get(e->dns_cache, name) : NULL;
        return c && c->until_ms > sbx_now_ms() ? c : NULL;
}

void egress_dns_cache_free(Egress *e)
{
        sbx_hashmap_free(e->dns_cache, free);
        e->dns_cache = NULL;
}

/* ---- resolving for the proxy ---- */

typedef struct Resolve {
        Egress *e;
        char name[256];
        void (*cb)(int error, const struct in_addr *addrs, size_t n, void *userdata);
        void *userdata;
} Resolve;

static void on_host(void *arg, int status, int timeouts, struct hostent *h)
{
        Resolve *r = arg;
        struct in_addr addrs[MAX_ADDRS];
        size_t n = 0;

        if (status == ARES_SUCCESS && h && h->h_addrtype == AF_INET)
                for (char **a = h->h_addr_list; *a && n < MAX_ADDRS; a++)
                        memcpy(&addrs[n++], *a, sizeof(struct in_addr));
        /* No TTL comes with a hostent: a short, fixed one. */
        if (n > 0)
                cache_put(r->e, r->name, addrs, n, 30);
        if (status == ARES_EDESTRUCTION)
                r->cb(-ECANCELED, NULL, 0, r->userdata);
        else
                r->cb(n                                                    ? 0
                      : status == ARES_ENOTFOUND || status == ARES_ENODATA ? -ENOENT
                                                                           : -EHOSTUNREACH,
                      addrs, n, r->userdata);
        free(r);
}

int egress_dns_resolve(Egress *e, const char *host,
                       void (*cb)(int error, const struct in_addr *addrs, size_t n, void *userdata),
                       void *userdata)
{
        const Cached *hit = cache_get(e, host);
        if (hit) {
                cb(0, hit->addrs, hit->n, userdata);
                return 0;
        }
        Resolve *r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->e = e;
        snprintf(r->name, sizeof(r->name), "%s", host);
        r->cb = cb;
        r->userdata = userdata;
        ares_gethostbyname(e->ares, host, AF_INET, on_host, r);
        arm_timer(e);
        return 0;
}

/* ---- start and stop ---- */

int egress_dns_start(Egress *e)
{
        struct ares_options o = {
                .sock_state_cb = on_sock_state, .sock_state_cb_data = e, .timeout = 2000, .tries = 2
        };
        struct sockaddr_in addr;
        int r;

        if ((r = sbx_hashmap_new(&e->ares_polls)) < 0)
                return r;
        if (ares_init_options(&e->ares, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) !=
            ARES_SUCCESS)
                return log_error_errno(-EIO, "Failed to initialize c-ares");
        if (e->a->cfg.dns_upstream) {
                _cleanup_free_ char *csv = NULL;
                if (strv_join(e->a->cfg.dns_upstream, ",", &csv) < 0 ||
                    ares_set_servers_ports_csv(e->ares, csv) != ARES_SUCCESS)
                        return log_error_errno(-EINVAL, "dns-upstream: cannot use \"%s\"", csv ? csv : "");
        }
        uv_timer_init(e->a->loop, &e->ares_timer);
        e->ares_timer.data = e;

        uv_udp_init(e->a->loop, &e->dns_udp);
        e->dns_udp.data = e;
        uv_ip4_addr("0.0.0.0", (int)e->a->cfg.dns_port, &addr);
        if ((r = uv_udp_bind(&e->dns_udp, (const struct sockaddr *)&addr, 0)) < 0)
                return log_error_errno(r, "Failed to serve DNS on port %u: %m", e->a->cfg.dns_port);
        if ((r = uv_udp_recv_start(&e->dns_udp, alloc_query, on_query)) < 0)
                return r;
        uv_tcp_init(e->a->loop, &e->dns_tcp);
        e->dns_tcp.data = e;
        if ((r = uv_tcp_bind(&e->dns_tcp, (const struct sockaddr *)&addr, 0)) < 0 ||
            (r = uv_listen((uv_stream_t *)&e->dns_tcp, 64, tcp_on_connection)) < 0)
                return log_error_errno(r, "Failed to serve DNS over TCP on port %u: %m", e->a->cfg.dns_port);
        return 0;
}

void egress_dns_stop(Egress *e)
{
        egress_dns_cache_free(e);
        if (e->ares) {
                /* Every pending query's callback runs now, with ARES_EDESTRUCTION. */
                ares_destroy(e->ares);
                e->ares = NULL;
        }
        size_t state = 0;
        void *v;
        while (e->ares_polls && sbx_hashmap_next(e->ares_polls, &state, NULL, &v))
                uv_close((uv_handle_t *)&((Poll *)v)->h, poll_closed);
        sbx_hashmap_free(e->ares_polls, NULL);
        e->ares_polls = NULL;
        if (e->ares_timer.loop) {
                e->closing++;
                uv_close((uv_handle_t *)&e->ares_timer, egress_handle_closed);
        }
        if (e->dns_udp.loop) {
                e->closing++;
                uv_close((uv_handle_t *)&e->dns_udp, egress_handle_closed);
        }
        if (e->dns_tcp.loop) {
                e->closing++;
                uv_close((uv_handle_t *)&e->dns_tcp, egress_handle_closed);
        }
        while (!LIST_EMPTY(&e->dns_conns))
                tcp_close(LIST_FIRST(&e->dns_conns));
}
