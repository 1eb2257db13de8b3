/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Watches: one Watch stream per watch. The watch remembers the next revision it must report; after
 * a lost connection it opens a new stream from that revision, so no event is lost or repeated. When
 * etcd says that revision was compacted, the caller must re-read and restart (on_resync).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/etcd/etcd-internal.h"

const SbxRpcMethod sbx__etcd_watch_watch =
        SBX_RPC_METHOD("/etcdserverpb.Watch/Watch", BIDI, etcdserverpb__watch_request__descriptor,
                       etcdserverpb__watch_response__descriptor);

struct SbxEtcdWatch {
        SbxEtcd *e;
        char *key;
        bool prefix;
        bool prev_kv;
        SbxEtcdWatchCallbacks cbs;
        void *userdata;
        /* The next revision to report; 0 until the first stream told us "now". */
        int64_t next_rev;
        SbxRpcClientCall *stream;
        SbxRpcChannel *stream_channel;
        /* Streams whose status has not come back yet (an abandoned one may still be ending). */
        unsigned live_streams;
        bool created;
        /* Waiting for sbx_etcd_watch_restart() after a compaction. */
        bool paused;
        bool freed;
        uv_timer_t retry;
        bool retry_closed;
        usec_t backoff;
        unsigned reconnects;
};

static void watch_connect(SbxEtcdWatch *w);

static void watch_maybe_dispose(SbxEtcdWatch *w)
{
        if (!w->freed || w->live_streams > 0 || !w->retry_closed)
                return;
        free(w->key);
        free(w);
}

static void on_retry(uv_timer_t *t)
{
        SbxEtcdWatch *w = t->data;
        if (!w->freed && !w->paused && !w->stream)
                watch_connect(w);
}

static void watch_message(SbxRpcClientCall *c, ProtobufCMessage *m, void *userdata)
{
        SbxEtcdWatch *w = userdata;
        Etcdserverpb__WatchResponse *r = (Etcdserverpb__WatchResponse *)m;
        int64_t rev = r->header ? r->header->revision : 0;

        if (w->freed || w->paused || c != w->stream)
                goto out;

        if (r->compact_revision > 0) {
                /* Our start revision is gone: stop and let the owner resynchronize. */
                w->paused = true;
                sbx_rpc_client_call_cancel(w->stream);
                if (w->cbs.on_resync)
                        w->cbs.on_resync(w, r->compact_revision, w->userdata);
                goto out;
        }
        if (r->canceled) {
                /* Cancelled for another reason (e.g. a member leaving): reconnect. */
                sbx_rpc_client_call_cancel(w->stream);
                goto out;
        }
        if (r->created) {
                w->created = true;
                w->backoff = 0;
                if (w->next_rev == 0)
                        w->next_rev = rev + 1;
                if (w->cbs.on_ready)
                        w->cbs.on_ready(w, w->next_rev - 1, w->userdata);
        }
        if (r->n_events > 0) {
                Etcdserverpb__Event *last = r->events[r->n_events - 1];
                if (last->kv && last->kv->mod_revision >= w->next_rev)
                        w->next_rev = last->kv->mod_revision + 1;
                if (w->cbs.on_events)
                        w->cbs.on_events(w, r, w->userdata);
        } else if (!r->created && rev + 1 > w->next_rev) {
                /* A progress notification: everything up to `rev` has been delivered. */
                w->next_rev = rev + 1;
        }
out:
        protobuf_c_message_free_unpacked(m, NULL);
}

static void watch_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        SbxEtcdWatch *w = userdata;

        w->live_streams--;
        if (c != w->stream) {
                /* A stream abandoned by a restart. */
                sbx_rpc_client_call_unref(c);
                watch_maybe_dispose(w);
                return;
        }
        w->stream = sbx_rpc_client_call_unref(w->stream);
        if (w->freed) {
                watch_maybe_dispose(w);
                return;
        }
        if (w->paused)
                return;
        if (sbx__etcd_status_error(st) == -SBX_E_UNAVAILABLE)
                sbx__etcd_endpoint_failed(w->e, w->stream_channel);
        w->reconnects++;
        w->created = false;
        uv_timer_start(&w->retry, on_retry, sbx_usec_to_msec_ceil(sbx__etcd_backoff_next(&w->backoff)), 0);
}

static void watch_connect(SbxEtcdWatch *w)
{
        static const SbxRpcClientCallbacks cbs = { .on_message = watch_message, .on_status = watch_status };
        Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
        Etcdserverpb__WatchCreateRequest create = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
        int r;

        r = sbx__etcd_key_range(&create.key, &create.range_end, w->key, w->prefix);
        if (r >= 0) {
                create.start_revision = w->next_rev;
                create.prev_kv = w->prev_kv;
                create.progress_notify = true;
                req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
                req.create_request = &create;
                w->stream_channel = sbx__etcd_channel(w->e);
                r = sbx_rpc_call_start(w->stream_channel, &sbx__etcd_watch_watch, &req.base, NULL, &cbs, w,
                                       &w->stream);
                if (r >= 0)
                        w->live_streams++;
        }
        free(create.key.data);
        free(create.range_end.data);
        if (r < 0) {
                w->stream = NULL;
                uv_timer_start(&w->retry, on_retry,
                               sbx_usec_to_msec_ceil(sbx__etcd_backoff_next(&w->backoff)), 0);
        }
}

int sbx_etcd_watch(SbxEtcd *e, const char *key, bool prefix, int64_t start_revision, bool prev_kv,
                   const SbxEtcdWatchCallbacks *cbs, void *userdata, SbxEtcdWatch **ret)
{
        SbxEtcdWatch *w = new0(SbxEtcdWatch, 1);

        if (!w)
                return -ENOMEM;
        w->key = strdup(key);
        if (!w->key) {
                free(w);
                return -ENOMEM;
        }
        w->e = e;
        w->prefix = prefix;
        w->prev_kv = prev_kv;
        w->cbs = *cbs;
        w->userdata = userdata;
        w->next_rev = start_revision;
        uv_timer_init(sbx_rpc_loop(e->rpc), &w->retry);
        w->retry.data = w;
        watch_connect(w);
        *ret = w;
        return 0;
}

int sbx_etcd_watch_restart(SbxEtcdWatch *w, int64_t start_revision)
{
        if (w->freed)
                return -EINVAL;
        w->paused = false;
        w->next_rev = start_revision;
        w->backoff = 0;
        if (w->stream) {
                /* The old stream's end must not trigger a reconnect from the old revision. */
                SbxRpcClientCall *old = w->stream;
                w->stream = NULL;
                sbx_rpc_client_call_cancel(old);
                /* watch_status sees c != w->stream and only drops its reference. */
        }
        uv_timer_stop(&w->retry);
        watch_connect(w);
        return 0;
}

int64_t sbx_etcd_watch_next_revision(const SbxEtcdWatch *w)
{
        return w->next_rev;
}

unsigned sbx_etcd_watch_reconnects(const SbxEtcdWatch *w)
{
        return w->reconnects;
}

static void retry_closed(uv_handle_t *h)
{
        SbxEtcdWatch *w = h->data;
        w->retry_closed = true;
        watch_maybe_dispose(w);
}

SbxEtcdWatch *sbx_etcd_watch_free(SbxEtcdWatch *w)
{
        if (!w || w->freed)
                return NULL;
        w->freed = true;
        if (w->stream)
                sbx_rpc_client_call_cancel(w->stream);
        uv_close((uv_handle_t *)&w->retry, retry_closed);
        return NULL;
}
