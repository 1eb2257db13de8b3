/* SPDX-License-Identifier: Apache-2.0 */
/* The etcd client object, its endpoints, and the unary KV requests (Range, Put, DeleteRange,
 * Compact). Transactions are in etcd-txn.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/random-util.h"
#include "common/base/string-util.h"
#include "common/etcd/etcd-internal.h"

#define DEFAULT_TIMEOUT (5 * USEC_PER_SEC)
/* etcd answers a large prefix range in one message; allow well past its 1.5 MiB request limit. */
#define ETCD_MAX_MESSAGE (64u * 1024 * 1024)
#define BACKOFF_MIN      (100 * USEC_PER_MSEC)
#define BACKOFF_MAX      (5 * USEC_PER_SEC)

const SbxRpcMethod sbx__etcd_kv_range =
        SBX_RPC_METHOD("/etcdserverpb.KV/Range", UNARY, etcdserverpb__range_request__descriptor,
                       etcdserverpb__range_response__descriptor);
const SbxRpcMethod sbx__etcd_kv_put =
        SBX_RPC_METHOD("/etcdserverpb.KV/Put", UNARY, etcdserverpb__put_request__descriptor,
                       etcdserverpb__put_response__descriptor);
const SbxRpcMethod sbx__etcd_kv_delete_range =
        SBX_RPC_METHOD("/etcdserverpb.KV/DeleteRange", UNARY, etcdserverpb__delete_range_request__descriptor,
                       etcdserverpb__delete_range_response__descriptor);
const SbxRpcMethod sbx__etcd_kv_txn =
        SBX_RPC_METHOD("/etcdserverpb.KV/Txn", UNARY, etcdserverpb__txn_request__descriptor,
                       etcdserverpb__txn_response__descriptor);
const SbxRpcMethod sbx__etcd_kv_compact =
        SBX_RPC_METHOD("/etcdserverpb.KV/Compact", UNARY, etcdserverpb__compaction_request__descriptor,
                       etcdserverpb__compaction_response__descriptor);

/* ---- the client ---- */

int sbx_etcd_new(SbxRpc *rpc, const SbxEtcdOptions *o, SbxEtcd **ret)
{
        size_t n = o && o->endpoints ? strv_length(o->endpoints) : 0;
        SbxEtcd *e;
        int r;

        if (n == 0)
                return -EINVAL;
        e = new0(SbxEtcd, 1);
        if (!e)
                return -ENOMEM;
        e->rpc = rpc;
        e->timeout = o->request_timeout ? o->request_timeout : DEFAULT_TIMEOUT;
        LIST_INIT(&e->requests);
        e->channels = new0(SbxRpcChannel *, n);
        r = e->channels ? strv_copy(o->endpoints, &e->endpoints) : -ENOMEM;
        if (r < 0)
                goto fail;
        for (size_t i = 0; i < n; i++) {
                SbxRpcChannelOptions co = {
                        .tls = o->tls,
                        .max_message_size = ETCD_MAX_MESSAGE,
                        /* Notice a dead member on idle watch and keepalive streams. */
                        .keepalive_time = 10 * USEC_PER_SEC,
                        .max_reconnect_backoff = BACKOFF_MAX,
                };
                r = sbx_rpc_channel_new(rpc, e->endpoints[i], &co, &e->channels[i]);
                if (r < 0)
                        goto fail;
                e->n_endpoints = i + 1;
        }
        /* Spread clients over the members. */
        e->current = (size_t)sbx_random_below(n);
        *ret = e;
        return 0;
fail:
        sbx_etcd_free(e);
        return r;
}

SbxEtcd *sbx_etcd_free(SbxEtcd *e)
{
        SbxEtcdRequest *r;

        if (!e)
                return NULL;
        /* Orphan what is in flight: its completions come back through rpc and are dropped. */
        while ((r = LIST_FIRST(&e->requests))) {
                LIST_REMOVE(r, link);
                e->n_requests--;
                r->e = NULL;
                sbx_rpc_client_call_cancel(r->call);
        }
        for (size_t i = 0; i < e->n_endpoints; i++)
                sbx_rpc_channel_free(e->channels[i]);
        free(e->channels);
        strv_free(e->endpoints);
        free(e);
        return NULL;
}

size_t sbx_etcd_pending(const SbxEtcd *e)
{
        return e->n_requests;
}

uv_loop_t *sbx_etcd_loop(const SbxEtcd *e)
{
        return sbx_rpc_loop(e->rpc);
}

const char *sbx_etcd_current_endpoint(const SbxEtcd *e)
{
        return e->endpoints[e->current];
}

SbxRpcChannel *sbx__etcd_channel(SbxEtcd *e)
{
        return e->channels[e->current];
}

void sbx__etcd_endpoint_failed(SbxEtcd *e, SbxRpcChannel *ch)
{
        /* Only move on if nobody moved already because of the same outage. */
        if (e->channels[e->current] == ch)
                e->current = (e->current + 1) % e->n_endpoints;
}

int sbx__etcd_status_error(const SbxRpcStatus *st)
{
        if (st->code == SBX_STATUS_OK)
                return 0;
        if (st->code == SBX_STATUS_OUT_OF_RANGE && st->message && strstr(st->message, "compacted"))
                return -SBX_E_COMPACTED;
        if (st->code == SBX_STATUS_UNAVAILABLE)
                return -SBX_E_UNAVAILABLE;
        return sbx_error_from_status(st->code);
}

usec_t sbx__etcd_backoff_next(usec_t *state)
{
        usec_t b = *state ? *state * 2 : BACKOFF_MIN;
        if (b > BACKOFF_MAX)
                b = BACKOFF_MAX;
        *state = b;
        /* Jitter: between 50% and 100% of the step, so clients that failed together spread out. */
        return b / 2 + sbx_random_below(b / 2 + 1);
}

int sbx__etcd_bytes(ProtobufCBinaryData *b, const void *p, size_t n)
{
        b->data = NULL;
        b->len = 0;
        if (n == 0)
                return 0;
        b->data = malloc(n);
        if (!b->data)
                return -ENOMEM;
        memcpy(b->data, p, n);
        b->len = n;
        return 0;
}

/* ---- requests ---- */

static void request_free(SbxEtcdRequest *r)
{
        if (r->e) {
                LIST_REMOVE(r, link);
                r->e->n_requests--;
        }
        sbx_rpc_client_call_unref(r->call);
        if (r->request)
                r->free_request(r->request);
        free(r);
}

static int request_send(SbxEtcdRequest *r);

static void request_done(const SbxRpcStatus *st, ProtobufCMessage *resp, void *userdata)
{
        SbxEtcdRequest *r = userdata;
        SbxRpcChannel *ch = r->e ? sbx__etcd_channel(r->e) : NULL;
        int error = sbx__etcd_status_error(st);

        r->call = sbx_rpc_client_call_unref(r->call);
        if (!r->e) {
                /* The client was freed meanwhile. */
                if (resp)
                        protobuf_c_message_free_unpacked(resp, NULL);
                request_free(r);
                return;
        }
        if (error == -SBX_E_UNAVAILABLE) {
                sbx__etcd_endpoint_failed(r->e, ch);
                if (r->retry_unavailable && r->attempts < r->e->n_endpoints && request_send(r) == 0)
                        return;
        }
        /* A request whose owner went away (a freed lease's grant) has no deliver. */
        if (r->deliver)
                r->deliver(r, error, resp);
        if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
        request_free(r);
}

static int request_send(SbxEtcdRequest *r)
{
        SbxRpcCallOptions o = { .timeout = r->e->timeout };
        r->attempts++;
        return sbx_rpc_unary(sbx__etcd_channel(r->e), r->method, r->request, &o, request_done, r, &r->call);
}

int sbx__etcd_request(SbxEtcd *e, const SbxRpcMethod *m, ProtobufCMessage *request,
                      void (*free_request)(ProtobufCMessage *m), bool retry_unavailable,
                      SbxEtcdDeliver deliver, void *userdata, SbxEtcdRequest **ret)
{
        SbxEtcdRequest *r = new0(SbxEtcdRequest, 1);
        int k;

        if (!r) {
                free_request(request);
                return -ENOMEM;
        }
        r->e = e;
        r->method = m;
        r->request = request;
        r->free_request = free_request;
        r->retry_unavailable = retry_unavailable;
        r->deliver = deliver;
        r->userdata = userdata;
        LIST_INSERT_HEAD(&e->requests, r, link);
        e->n_requests++;
        k = request_send(r);
        if (k < 0) {
                request_free(r);
                return k;
        }
        *ret = r;
        return 0;
}

/* ---- Range ---- */

int sbx_etcd_prefix_end(const char *prefix, char **ret)
{
        size_t n = strlen(prefix);
        char *end = strdup(prefix);

        if (!end)
                return -ENOMEM;
        /* Increment the last byte that is not 0xff, dropping the 0xff bytes after it. */
        while (n > 0) {
                unsigned char c = (unsigned char)end[n - 1];
                if (c < 0xff) {
                        end[n - 1] = (char)(c + 1);
                        end[n] = '\0';
                        *ret = end;
                        return 0;
                }
                n--;
        }
        /* An empty prefix, or only 0xff bytes: the whole keyspace, "\0" in etcd's convention. */
        end[0] = '\0';
        *ret = end;
        return 0;
}

static void free_range_request(ProtobufCMessage *m)
{
        Etcdserverpb__RangeRequest *q = (Etcdserverpb__RangeRequest *)m;
        free(q->key.data);
        free(q->range_end.data);
        free(q);
}

static void deliver_range(SbxEtcdRequest *r, int error, const ProtobufCMessage *resp)
{
        r->cb.range(error, (const Etcdserverpb__RangeResponse *)resp, r->userdata);
}

int sbx__etcd_key_range(ProtobufCBinaryData *key, ProtobufCBinaryData *end, const char *k, bool prefix)
{
        int r = sbx__etcd_bytes(key, k, strlen(k));
        if (r < 0)
                return r;
        if (!prefix)
                return 0;
        _cleanup_free_ char *e = NULL;
        r = sbx_etcd_prefix_end(k, &e);
        if (r < 0)
                return r;
        /* The whole keyspace is the single byte 0. */
        return *e ? sbx__etcd_bytes(end, e, strlen(e)) : sbx__etcd_bytes(end, "", 1);
}

int sbx_etcd_range(SbxEtcd *e, const char *key, const SbxEtcdRangeOptions *o, SbxEtcdRangeCallback cb,
                   void *userdata)
{
        Etcdserverpb__RangeRequest *q = new0(Etcdserverpb__RangeRequest, 1);
        SbxEtcdRequest *req;
        int r;

        if (!q)
                return -ENOMEM;
        etcdserverpb__range_request__init(q);
        r = sbx__etcd_key_range(&q->key, &q->range_end, key, o && o->prefix);
        if (r < 0) {
                free_range_request(&q->base);
                return r;
        }
        if (o) {
                q->limit = o->limit;
                q->revision = o->revision;
                q->count_only = o->count_only;
                q->keys_only = o->keys_only;
                q->serializable = o->serializable;
        }
        r = sbx__etcd_request(e, &sbx__etcd_kv_range, &q->base, free_range_request, true, deliver_range,
                              userdata, &req);
        if (r < 0)
                return r;
        req->cb.range = cb;
        return 0;
}

int sbx_etcd_get(SbxEtcd *e, const char *key, SbxEtcdRangeCallback cb, void *userdata)
{
        return sbx_etcd_range(e, key, NULL, cb, userdata);
}

/* ---- Put ---- */

static void free_put_request(ProtobufCMessage *m)
{
        Etcdserverpb__PutRequest *q = (Etcdserverpb__PutRequest *)m;
        free(q->key.data);
        free(q->value.data);
        free(q);
}

static void deliver_put(SbxEtcdRequest *r, int error, const ProtobufCMessage *resp)
{
        r->cb.put(error, (const Etcdserverpb__PutResponse *)resp, r->userdata);
}

int sbx_etcd_put(SbxEtcd *e, const char *key, const void *value, size_t size, int64_t lease,
                 SbxEtcdPutCallback cb, void *userdata)
{
        Etcdserverpb__PutRequest *q = new0(Etcdserverpb__PutRequest, 1);
        SbxEtcdRequest *req;
        int r;

        if (!q)
                return -ENOMEM;
        etcdserverpb__put_request__init(q);
        q->lease = lease;
        if ((r = sbx__etcd_bytes(&q->key, key, strlen(key))) < 0 ||
            (r = sbx__etcd_bytes(&q->value, value, size)) < 0) {
                free_put_request(&q->base);
                return r;
        }
        r = sbx__etcd_request(e, &sbx__etcd_kv_put, &q->base, free_put_request, false, deliver_put, userdata,
                              &req);
        if (r < 0)
                return r;
        req->cb.put = cb;
        return 0;
}

/* ---- DeleteRange ---- */

static void free_delete_request(ProtobufCMessage *m)
{
        Etcdserverpb__DeleteRangeRequest *q = (Etcdserverpb__DeleteRangeRequest *)m;
        free(q->key.data);
        free(q->range_end.data);
        free(q);
}

static void deliver_delete(SbxEtcdRequest *r, int error, const ProtobufCMessage *resp)
{
        r->cb.del(error, (const Etcdserverpb__DeleteRangeResponse *)resp, r->userdata);
}

int sbx_etcd_delete(SbxEtcd *e, const char *key, bool prefix, SbxEtcdDeleteCallback cb, void *userdata)
{
        Etcdserverpb__DeleteRangeRequest *q = new0(Etcdserverpb__DeleteRangeRequest, 1);
        SbxEtcdRequest *req;
        int r;

        if (!q)
                return -ENOMEM;
        etcdserverpb__delete_range_request__init(q);
        r = sbx__etcd_key_range(&q->key, &q->range_end, key, prefix);
        if (r < 0) {
                free_delete_request(&q->base);
                return r;
        }
        r = sbx__etcd_request(e, &sbx__etcd_kv_delete_range, &q->base, free_delete_request, false,
                              deliver_delete, userdata, &req);
        if (r < 0)
                return r;
        req->cb.del = cb;
        return 0;
}

/* ---- Compact ---- */

static void free_plain(ProtobufCMessage *m)
{
        free(m);
}

static void deliver_compact(SbxEtcdRequest *r, int error, const ProtobufCMessage *resp)
{
        /* A compaction has no useful payload for callers beyond its header. */
        r->cb.put(error, NULL, r->userdata);
}

int sbx_etcd_compact(SbxEtcd *e, int64_t revision, SbxEtcdPutCallback cb, void *userdata)
{
        Etcdserverpb__CompactionRequest *q = new0(Etcdserverpb__CompactionRequest, 1);
        SbxEtcdRequest *req;
        int r;

        if (!q)
                return -ENOMEM;
        etcdserverpb__compaction_request__init(q);
        q->revision = revision;
        q->physical = true;
        r = sbx__etcd_request(e, &sbx__etcd_kv_compact, &q->base, free_plain, false, deliver_compact,
                              userdata, &req);
        if (r < 0)
                return r;
        req->cb.put = cb;
        return 0;
}
