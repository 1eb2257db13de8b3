/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/agent-channel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/hashmap.h"
#include "common/base/macro.h"
#include "common/base/random-util.h"
#include "common/base/time-util.h"
#include "common/channel/channel.h"
#include "common/log/log.h"

typedef enum ChanState {
        CHAN_CONNECTING,
        CHAN_HANDSHAKE, /* vsock: waiting for "OK <port>\n" */
        CHAN_OPEN,
        CHAN_CLOSED,
} ChanState;

struct AgentStream {
        AgentChannel *ch;
        uint32_t id;
        AgentStreamOps ops;
        void *userdata;
};

typedef struct Ping {
        uint64_t nonce;
        usec_t sent;
        void (*cb)(int error, usec_t rtt, void *userdata);
        void *userdata;
} Ping;

struct AgentChannel {
        uv_loop_t *loop;
        uv_pipe_t pipe;
        uv_connect_t connect;
        uv_timer_t retry;
        char *path;
        int vsock_port;
        usec_t deadline;
        ChanState state;
        AgentChannelCallbacks cbs;
        void *userdata;
        Sbx__V1__Guest__GuestFrame *config; /* packed into `pending_config` */
        uint8_t *pending_config;
        size_t pending_config_len;
        SbxFrameReader reader;
        char handshake[64];
        size_t handshake_len;
        SbxHashmap *streams; /* "<id>" → AgentStream* */
        uint32_t next_id;
        bool hello_seen;
        size_t pending_write;
        Ping ping;
        unsigned closing;
        bool pipe_open;
};

typedef struct WriteReq {
        uv_write_t req;
        AgentChannel *ch;
        size_t len;
        uint8_t data[];
} WriteReq;

static void fail(AgentChannel *ch, int error);
static void handle_closed(uv_handle_t *h);

static void write_done(uv_write_t *req, int status)
{
        WriteReq *w = container_of(req, WriteReq, req);
        w->ch->pending_write -= w->len;
        if (status < 0 && w->ch->state == CHAN_OPEN)
                fail(w->ch, status);
        free(w);
}

static int write_raw(AgentChannel *ch, const void *p, size_t n)
{
        WriteReq *w = malloc(sizeof(WriteReq) + n);
        if (!w)
                return -ENOMEM;
        w->ch = ch;
        w->len = n;
        memcpy(w->data, p, n);
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
        int r = uv_write(&w->req, (uv_stream_t *)&ch->pipe, &b, 1, write_done);
        if (r < 0) {
                free(w);
                return r;
        }
        ch->pending_write += n;
        return 0;
}

static int send_frame(AgentChannel *ch, const Sbx__V1__Guest__GuestFrame *f)
{
        SbxBuffer b = SBX_BUFFER_INIT;
        int r;

        if (ch->state != CHAN_OPEN)
                return -ENOTCONN;
        r = sbx_frame_append(&b, f);
        if (r >= 0)
                r = write_raw(ch, sbx_buffer_data(&b), sbx_buffer_size(&b));
        sbx_buffer_done(&b);
        return r;
}

size_t agent_channel_pending(const AgentChannel *ch)
{
        return ch->pending_write;
}

bool agent_channel_ready(const AgentChannel *ch)
{
        return ch->state == CHAN_OPEN && ch->hello_seen;
}

/* ---- streams ---- */

static void stream_key(uint32_t id, char out[16])
{
        snprintf(out, 16, "%u", id);
}

int agent_stream_open(AgentChannel *ch, const AgentStreamOps *ops, void *userdata, AgentStream **ret)
{
        char key[16];
        AgentStream *s;

        if (ch->state != CHAN_OPEN)
                return -ENOTCONN;
        s = calloc(1, sizeof(AgentStream));
        if (!s)
                return -ENOMEM;
        s->ch = ch;
        s->id = ch->next_id;
        ch->next_id += 2;
        if (ch->next_id < 3)
                ch->next_id = 1; /* wrapped: odd ids only, never 0 */
        s->ops = *ops;
        s->userdata = userdata;
        stream_key(s->id, key);
        if (sbx_hashmap_put(ch->streams, key, s, NULL) < 0) {
                free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

int agent_stream_send(AgentStream *s, Sbx__V1__Guest__GuestFrame *f)
{
        f->stream = s->id;
        return send_frame(s->ch, f);
}

void agent_stream_close(AgentStream *s, bool reset)
{
        char key[16];

        if (!s)
                return;
        if (reset && s->ch->state == CHAN_OPEN) {
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_RESET;
                f.reset = (char *)"client gone";
                agent_stream_send(s, &f);
        }
        stream_key(s->id, key);
        sbx_hashmap_remove(s->ch->streams, key);
        free(s);
}

uint32_t agent_stream_id(const AgentStream *s)
{
        return s->id;
}

/* ---- control ---- */

int agent_channel_send_control(AgentChannel *ch, Sbx__V1__Guest__GuestFrame *f)
{
        f->stream = 0;
        return send_frame(ch, f);
}

int agent_channel_ping(AgentChannel *ch, void (*cb)(int error, usec_t rtt, void *userdata), void *userdata)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;

        if (ch->ping.cb)
                return -EBUSY;
        ch->ping = (Ping){ .nonce = sbx_random_below(UINT64_MAX - 1) + 1,
                           .sent = sbx_now_monotonic(),
                           .cb = cb,
                           .userdata = userdata };
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_PING;
        f.ping = ch->ping.nonce;
        int r = agent_channel_send_control(ch, &f);
        if (r < 0)
                ch->ping.cb = NULL;
        return r;
}

/* ---- reading ---- */

static void dispatch(AgentChannel *ch, Sbx__V1__Guest__GuestFrame *f)
{
        char key[16];

        if (f->stream == 0) {
                if (f->body_case == SBX__V1__GUEST__GUEST_FRAME__BODY_HELLO && !ch->hello_seen) {
                        ch->hello_seen = true;
                        if (ch->cbs.on_hello)
                                ch->cbs.on_hello(ch, f->hello, ch->userdata);
                } else if (f->body_case == SBX__V1__GUEST__GUEST_FRAME__BODY_PONG && ch->ping.cb &&
                           f->pong == ch->ping.nonce) {
                        Ping p = ch->ping;
                        ch->ping.cb = NULL;
                        p.cb(0, sbx_now_monotonic() - p.sent, p.userdata);
                }
                return;
        }
        stream_key(f->stream, key);
        AgentStream *s = sbx_hashmap_get(ch->streams, key);
        if (s)
                s->ops.on_frame(s, f, s->userdata);
        /* Frames for streams we already closed are late and harmless. */
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        static char slab[65536];
        /* One loop thread, and the bytes are consumed before the next read: one buffer suffices. */
        *buf = uv_buf_init(slab, sizeof(slab));
}

static void retry_after_close(uv_handle_t *h);

/* The vsock CONNECT reaches the guest only once sbx-init listens; before that the VMM closes the
 * connection (or answers something other than OK). Until the boot deadline, that means "try again". */
static bool handshake_retry(AgentChannel *ch)
{
        if (sbx_now_monotonic() >= ch->deadline)
                return false;
        uv_read_stop((uv_stream_t *)&ch->pipe);
        ch->handshake_len = 0;
        ch->state = CHAN_CONNECTING;
        uv_close((uv_handle_t *)&ch->pipe, retry_after_close);
        return true;
}

static void handshake_bytes(AgentChannel *ch, const char *p, size_t n)
{
        /* Cloud Hypervisor answers "OK <port>\n" before the guest's bytes begin. */
        while (n > 0 && ch->state == CHAN_HANDSHAKE) {
                char c = *p++;
                n--;
                if (ch->handshake_len + 1 >= sizeof(ch->handshake)) {
                        fail(ch, -EPROTO);
                        return;
                }
                ch->handshake[ch->handshake_len++] = c;
                if (c == '\n') {
                        ch->handshake[ch->handshake_len] = '\0';
                        if (strncmp(ch->handshake, "OK ", 3) != 0) {
                                if (!handshake_retry(ch))
                                        fail(ch, -ECONNREFUSED);
                                return;
                        }
                        ch->state = CHAN_OPEN;
                        if (ch->pending_config)
                                write_raw(ch, ch->pending_config, ch->pending_config_len);
                }
        }
        if (n > 0 && ch->state == CHAN_OPEN && sbx_frame_reader_feed(&ch->reader, p, n) < 0)
                fail(ch, -EPROTO);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
        AgentChannel *ch = container_of((uv_pipe_t *)stream, AgentChannel, pipe);
        Sbx__V1__Guest__GuestFrame *f;
        int r;

        if (nread < 0) {
                if (ch->state == CHAN_HANDSHAKE && handshake_retry(ch))
                        return;
                fail(ch, nread == UV_EOF ? 0 : (int)nread);
                return;
        }
        if (ch->state == CHAN_HANDSHAKE) {
                handshake_bytes(ch, buf->base, (size_t)nread);
                return;
        }
        if (sbx_frame_reader_feed(&ch->reader, buf->base, (size_t)nread) < 0) {
                fail(ch, -EPROTO);
                return;
        }
        while (ch->state == CHAN_OPEN && (r = sbx_frame_reader_next(&ch->reader, &f)) == 1) {
                dispatch(ch, f);
                sbx__v1__guest__guest_frame__free_unpacked(f, NULL);
        }
        if (ch->state == CHAN_OPEN && r < 0) {
                log_debug("Malformed frame from the guest on %s: %s", ch->path, sbx_error_message(r));
                fail(ch, -EPROTO);
        }
}

/* ---- connecting ---- */

static void try_connect(AgentChannel *ch);

static void on_retry(uv_timer_t *t)
{
        try_connect(t->data);
}

static void retry_after_close(uv_handle_t *h)
{
        AgentChannel *ch = h->data;
        ch->pipe_open = false;
        if (ch->state == CHAN_CLOSED) {
                /* agent_channel_close() ran meanwhile and counted on this close. */
                handle_closed(h);
                return;
        }
        uv_timer_start(&ch->retry, on_retry, 10, 0);
}

static void connected(uv_connect_t *req, int status)
{
        AgentChannel *ch = req->data;

        if (ch->state == CHAN_CLOSED)
                return;
        if (status < 0) {
                /* The VMM may not have created its socket yet: the pipe must close before it is reused. */
                if (sbx_now_monotonic() < ch->deadline &&
                    (status == UV_ENOENT || status == UV_ECONNREFUSED)) {
                        uv_close((uv_handle_t *)&ch->pipe, retry_after_close);
                        return;
                }
                fail(ch, status);
                return;
        }
        uv_read_start((uv_stream_t *)&ch->pipe, alloc_cb, read_cb);
        if (ch->vsock_port > 0) {
                char line[32];
                int n = snprintf(line, sizeof(line), "CONNECT %d\n", ch->vsock_port);
                ch->state = CHAN_HANDSHAKE;
                write_raw(ch, line, (size_t)n);
                return;
        }
        ch->state = CHAN_OPEN;
        if (ch->pending_config)
                write_raw(ch, ch->pending_config, ch->pending_config_len);
}

static void try_connect(AgentChannel *ch)
{
        uv_pipe_init(ch->loop, &ch->pipe, 0);
        ch->pipe.data = ch;
        ch->pipe_open = true;
        ch->connect.data = ch;
        uv_pipe_connect(&ch->connect, &ch->pipe, ch->path, connected);
}

int agent_channel_connect(uv_loop_t *loop, const char *path, int vsock_port,
                          const Sbx__V1__Guest__Config *config, usec_t timeout,
                          const AgentChannelCallbacks *cbs, void *userdata, AgentChannel **ret)
{
        AgentChannel *ch = calloc(1, sizeof(AgentChannel));
        int r;

        if (!ch)
                return -ENOMEM;
        ch->loop = loop;
        ch->path = strdup(path);
        ch->vsock_port = vsock_port;
        ch->deadline = sbx_now_monotonic() + timeout;
        ch->cbs = *cbs;
        ch->userdata = userdata;
        /* Agent stream ids start at a random odd number: a re-attached guest may still hold streams of
         * the agent's previous life, and fresh ids must not collide with them. */
        ch->next_id = (uint32_t)(sbx_random_below(1u << 30) * 2 + 1);
        sbx_frame_reader_init(&ch->reader);
        if (!ch->path || sbx_hashmap_new(&ch->streams) < 0) {
                free(ch->path);
                free(ch);
                return -ENOMEM;
        }
        if (config) {
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                SbxBuffer b = SBX_BUFFER_INIT;
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_CONFIG;
                f.config = (Sbx__V1__Guest__Config *)config;
                r = sbx_frame_append(&b, &f);
                if (r < 0) {
                        sbx_buffer_done(&b);
                        agent_channel_close(ch);
                        return r;
                }
                ch->pending_config_len = sbx_buffer_size(&b);
                ch->pending_config = malloc(ch->pending_config_len);
                if (ch->pending_config)
                        memcpy(ch->pending_config, sbx_buffer_data(&b), ch->pending_config_len);
                sbx_buffer_done(&b);
        } else {
                /* Re-attaching: the guest said hello in our previous life. */
                ch->hello_seen = true;
        }
        uv_timer_init(loop, &ch->retry);
        ch->retry.data = ch;
        try_connect(ch);
        *ret = ch;
        return 0;
}

/* ---- closing ---- */

static void close_streams(AgentChannel *ch, int error)
{
        size_t state = 0;
        const char *k;
        void *v;
        char **keys = NULL;
        size_t n = 0;

        /* Collect first: on_close handlers close their streams, which edits the map. */
        keys = calloc(sbx_hashmap_size(ch->streams) + 1, sizeof(char *));
        while (keys && sbx_hashmap_next(ch->streams, &state, &k, &v))
                keys[n++] = strdup(k);
        for (size_t i = 0; i < n; i++) {
                AgentStream *s = sbx_hashmap_get(ch->streams, keys[i]);
                if (s) {
                        if (s->ops.on_close)
                                s->ops.on_close(s, error, s->userdata);
                        /* If the owner did not close it, do it now. */
                        if (sbx_hashmap_get(ch->streams, keys[i]) == s)
                                agent_stream_close(s, false);
                }
                free(keys[i]);
        }
        free(keys);
}

static void handle_closed(uv_handle_t *h)
{
        AgentChannel *ch = h->data;
        if (--ch->closing > 0)
                return;
        sbx_frame_reader_done(&ch->reader);
        sbx_hashmap_free(ch->streams, free);
        free(ch->pending_config);
        free(ch->path);
        free(ch);
}

static void fail(AgentChannel *ch, int error)
{
        if (ch->state == CHAN_CLOSED)
                return;
        ch->state = CHAN_CLOSED;
        if (ch->ping.cb) {
                Ping p = ch->ping;
                ch->ping.cb = NULL;
                p.cb(error < 0 ? error : -EPIPE, 0, p.userdata);
        }
        close_streams(ch, error < 0 ? error : -EPIPE);
        if (ch->cbs.on_closed)
                ch->cbs.on_closed(ch, error, ch->userdata);
}

void agent_channel_close(AgentChannel *ch)
{
        if (!ch)
                return;
        ch->cbs.on_closed = NULL;
        fail(ch, -ECANCELED);
        /* The timer, and the pipe if open (a pipe already closing for a retry calls back too). */
        ch->closing = 1 + (ch->pipe_open ? 1 : 0);
        uv_close((uv_handle_t *)&ch->retry, handle_closed);
        if (ch->pipe_open && !uv_is_closing((uv_handle_t *)&ch->pipe))
                uv_close((uv_handle_t *)&ch->pipe, handle_closed);
}
