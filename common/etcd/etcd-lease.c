/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leases: grant, keep alive every TTL/3 on a LeaseKeepAlive stream, notice loss, revoke.
 *
 * A lease is lost when etcd answers a keepalive with TTL 0 (it expired or was revoked), or when no
 * keepalive succeeded for a whole TTL (we cannot tell any more whether etcd still has it, and the
 * keys bound to it must be assumed gone). The keepalive stream reconnects on the next tick after a
 * failure, rotating through the endpoints.
 */
#include <errno.h>
#include <stdlib.h>

#include "common/etcd/etcd-internal.h"

const SbxRpcMethod sbx__etcd_lease_grant = SBX_RPC_METHOD("/etcdserverpb.Lease/LeaseGrant", UNARY,
                                                          etcdserverpb__lease_grant_request__descriptor,
                                                          etcdserverpb__lease_grant_response__descriptor);
const SbxRpcMethod sbx__etcd_lease_revoke = SBX_RPC_METHOD("/etcdserverpb.Lease/LeaseRevoke", UNARY,
                                                           etcdserverpb__lease_revoke_request__descriptor,
                                                           etcdserverpb__lease_revoke_response__descriptor);
const SbxRpcMethod sbx__etcd_lease_keepalive = SBX_RPC_METHOD(
        "/etcdserverpb.Lease/LeaseKeepAlive", BIDI, etcdserverpb__lease_keep_alive_request__descriptor,
        etcdserverpb__lease_keep_alive_response__descriptor);

typedef enum LeaseState {
        LEASE_GRANTING,
        LEASE_ALIVE,
        LEASE_DEAD,
} LeaseState;

struct SbxEtcdLease {
        SbxEtcd *e;
        SbxEtcdLeaseCallbacks cbs;
        void *userdata;
        LeaseState state;
        int64_t id;
        int64_t ttl;
        /* Monotonic time after which etcd may have expired the lease. */
        usec_t expires_at;
        SbxEtcdRequest *grant;
        SbxRpcClientCall *stream;
        SbxRpcChannel *stream_channel;
        /* tick: send a keepalive every TTL/3; expiry: fires when no keepalive kept it alive. */
        uv_timer_t tick, expiry;
        bool timers_started;
        unsigned closing;
        bool freed;
        bool lost_reported;
};

static void lease_dispose(SbxEtcdLease *l);

static void lease_lost(SbxEtcdLease *l)
{
        if (l->state == LEASE_DEAD)
                return;
        l->state = LEASE_DEAD;
        uv_timer_stop(&l->tick);
        uv_timer_stop(&l->expiry);
        sbx_rpc_client_call_cancel(l->stream);
        if (!l->lost_reported && !l->freed && l->cbs.on_lost) {
                l->lost_reported = true;
                l->cbs.on_lost(l, l->userdata);
        }
}

static void on_expiry(uv_timer_t *t)
{
        lease_lost(t->data);
}

static void keepalive_message(SbxRpcClientCall *c, ProtobufCMessage *m, void *userdata)
{
        SbxEtcdLease *l = userdata;
        Etcdserverpb__LeaseKeepAliveResponse *r = (Etcdserverpb__LeaseKeepAliveResponse *)m;

        if (l->state == LEASE_ALIVE && r->id == l->id) {
                if (r->ttl <= 0) {
                        protobuf_c_message_free_unpacked(m, NULL);
                        lease_lost(l);
                        return;
                }
                l->expires_at = sbx_now_monotonic() + (usec_t)r->ttl * USEC_PER_SEC;
                uv_timer_start(&l->expiry, on_expiry, (uint64_t)r->ttl * 1000, 0);
        }
        protobuf_c_message_free_unpacked(m, NULL);
}

static void keepalive_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        SbxEtcdLease *l = userdata;

        if (l->stream == c) {
                if (l->e && sbx__etcd_status_error(st) == -SBX_E_UNAVAILABLE)
                        sbx__etcd_endpoint_failed(l->e, l->stream_channel);
                l->stream = sbx_rpc_client_call_unref(l->stream);
        }
        /* The next tick reconnects (while the lease is alive). */
        if (l->freed && !l->stream)
                lease_dispose(l);
}

static void keepalive_send(SbxEtcdLease *l)
{
        Etcdserverpb__LeaseKeepAliveRequest req = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
        static const SbxRpcClientCallbacks cbs = { .on_message = keepalive_message,
                                                   .on_status = keepalive_status };

        req.id = l->id;
        if (!l->stream) {
                l->stream_channel = sbx__etcd_channel(l->e);
                if (sbx_rpc_call_start(l->stream_channel, &sbx__etcd_lease_keepalive, &req.base, NULL, &cbs,
                                       l, &l->stream) < 0)
                        l->stream = NULL;
                return;
        }
        if (sbx_rpc_client_call_send(l->stream, &req.base) < 0)
                sbx_rpc_client_call_cancel(l->stream);
}

static void on_tick(uv_timer_t *t)
{
        SbxEtcdLease *l = t->data;
        if (l->state == LEASE_ALIVE)
                keepalive_send(l);
}

static void grant_done(SbxEtcdRequest *r, int error, const ProtobufCMessage *resp)
{
        SbxEtcdLease *l = r->userdata;
        const Etcdserverpb__LeaseGrantResponse *g = (const Etcdserverpb__LeaseGrantResponse *)resp;

        l->grant = NULL;
        if (error >= 0 && (!g || (g->error && *g->error) || g->id == 0))
                error = -SBX_E_INTERNAL;
        if (error < 0) {
                l->state = LEASE_DEAD;
                l->lost_reported = true; /* a lease that never lived is not "lost" */
                if (l->cbs.on_granted)
                        l->cbs.on_granted(l, error, l->userdata);
                return;
        }
        l->id = g->id;
        l->ttl = g->ttl;
        l->state = LEASE_ALIVE;
        l->expires_at = sbx_now_monotonic() + (usec_t)g->ttl * USEC_PER_SEC;
        uint64_t period = (uint64_t)g->ttl * 1000 / 3;
        uv_timer_start(&l->tick, on_tick, period, period);
        uv_timer_start(&l->expiry, on_expiry, (uint64_t)g->ttl * 1000, 0);
        if (l->cbs.on_granted)
                l->cbs.on_granted(l, 0, l->userdata);
}

static void free_plain(ProtobufCMessage *m)
{
        free(m);
}

int sbx_etcd_lease_grant(SbxEtcd *e, int64_t ttl_sec, const SbxEtcdLeaseCallbacks *cbs, void *userdata,
                         SbxEtcdLease **ret)
{
        Etcdserverpb__LeaseGrantRequest *q;
        SbxEtcdLease *l;
        int r;

        if (ttl_sec < 2)
                return -EINVAL;
        l = new0(SbxEtcdLease, 1);
        q = new0(Etcdserverpb__LeaseGrantRequest, 1);
        if (!l || !q) {
                free(l);
                free(q);
                return -ENOMEM;
        }
        etcdserverpb__lease_grant_request__init(q);
        q->ttl = ttl_sec;
        l->e = e;
        l->cbs = cbs ? *cbs : (SbxEtcdLeaseCallbacks){ 0 };
        l->userdata = userdata;
        uv_timer_init(sbx_rpc_loop(e->rpc), &l->tick);
        uv_timer_init(sbx_rpc_loop(e->rpc), &l->expiry);
        l->tick.data = l->expiry.data = l;
        l->timers_started = true;
        r = sbx__etcd_request(e, &sbx__etcd_lease_grant, &q->base, free_plain, true, grant_done, l,
                              &l->grant);
        if (r < 0) {
                l->freed = true;
                lease_dispose(l);
                return r;
        }
        *ret = l;
        return 0;
}

int64_t sbx_etcd_lease_id(const SbxEtcdLease *l)
{
        return l->state == LEASE_ALIVE ? l->id : 0;
}

int64_t sbx_etcd_lease_ttl(const SbxEtcdLease *l)
{
        return l->ttl;
}

bool sbx_etcd_lease_alive(const SbxEtcdLease *l)
{
        return l->state == LEASE_ALIVE;
}

static void timer_closed(uv_handle_t *h)
{
        SbxEtcdLease *l = h->data;
        if (--l->closing == 0)
                free(l);
}

/* Frees the lease once its stream is gone; the timers close through the loop. */
static void lease_dispose(SbxEtcdLease *l)
{
        if (l->stream) {
                sbx_rpc_client_call_cancel(l->stream);
                return; /* keepalive_status comes back here */
        }
        if (l->closing > 0)
                return;
        l->closing = 2;
        uv_close((uv_handle_t *)&l->tick, timer_closed);
        uv_close((uv_handle_t *)&l->expiry, timer_closed);
}

SbxEtcdLease *sbx_etcd_lease_free(SbxEtcdLease *l)
{
        if (!l || l->freed)
                return NULL;
        l->freed = true;
        if (l->grant) {
                /* Let the grant complete on its own; its result is dropped. */
                l->grant->deliver = NULL;
                l->grant->userdata = NULL;
                l->grant = NULL;
        }
        l->state = LEASE_DEAD;
        uv_timer_stop(&l->tick);
        uv_timer_stop(&l->expiry);
        lease_dispose(l);
        return NULL;
}

typedef struct RevokeCtx {
        void (*done)(int error, void *userdata);
        void *userdata;
} RevokeCtx;

static void revoke_done(SbxEtcdRequest *r, int error, const ProtobufCMessage *resp)
{
        RevokeCtx *ctx = r->userdata;
        if (ctx->done)
                ctx->done(error, ctx->userdata);
        free(ctx);
}

void sbx_etcd_lease_revoke(SbxEtcdLease *l, void (*done)(int error, void *userdata), void *userdata)
{
        SbxEtcdRequest *req;
        Etcdserverpb__LeaseRevokeRequest *q = NULL;
        RevokeCtx *ctx = NULL;
        int r = -ENOMEM;

        if (l->state == LEASE_ALIVE) {
                q = new0(Etcdserverpb__LeaseRevokeRequest, 1);
                ctx = new0(RevokeCtx, 1);
                if (q && ctx) {
                        etcdserverpb__lease_revoke_request__init(q);
                        q->id = l->id;
                        ctx->done = done;
                        ctx->userdata = userdata;
                        r = sbx__etcd_request(l->e, &sbx__etcd_lease_revoke, &q->base, free_plain, true,
                                              revoke_done, ctx, &req);
                        q = NULL;
                        if (r >= 0)
                                ctx = NULL;
                }
        } else {
                r = -SBX_E_LEASE_LOST;
        }
        free(q);
        free(ctx);
        sbx_etcd_lease_free(l);
        if (r < 0 && done)
                done(r, userdata);
}
