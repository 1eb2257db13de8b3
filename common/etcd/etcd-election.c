/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leader election on one key. The leader is whoever created the key; the key is bound to the
 * leader's lease, so it disappears when the leader stops renewing it. Candidates take a vacant key
 * with a Txn (create_revision == 0 → put with lease) and otherwise wait for it to be deleted. Every
 * participant watches the key, which is how it learns who leads and when a vacancy opens.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/etcd/etcd-internal.h"

struct SbxEtcdElection {
        SbxEtcd *e;
        char *key;
        char *value;
        SbxEtcdLease *lease;
        SbxEtcdElectionCallbacks cbs;
        void *userdata;
        SbxEtcdWatch *watch;
        char *leader_value;
        /* The create revision of our key while we lead. */
        int64_t our_create_rev;
        bool leader;
        bool campaigning;
        /* The key was read once. Attempts wait for that first read, so that its answer cannot
         * arrive after a win and be taken for news (see predates_our_win). */
        bool observed;
        /* A Txn is in flight; `retry` asks for another attempt when it failed. */
        bool attempt_in_flight;
        bool retry;
        bool freed;
        /* Retries a campaign after etcd could not be reached. */
        uv_timer_t retry_timer;
        /* Outstanding requests (and the timer's close) holding a pointer to us. */
        unsigned pending;
};

/* Pause before another try after etcd could not be reached. */
#define RETRY_MS 500

static void election_try_acquire(SbxEtcdElection *el);
static void win(SbxEtcdElection *el, int64_t create_revision);
static void on_retry_timer(uv_timer_t *t);

static void election_maybe_dispose(SbxEtcdElection *el)
{
        if (!el->freed || el->pending > 0)
                return;
        free(el->key);
        free(el->value);
        free(el->leader_value);
        free(el);
}

static void set_leader_value(SbxEtcdElection *el, const ProtobufCBinaryData *v)
{
        char *n = v ? strndup((const char *)v->data, v->len) : NULL;
        bool changed = !((n == NULL && el->leader_value == NULL) ||
                         (n && el->leader_value && strcmp(n, el->leader_value) == 0));
        free(el->leader_value);
        el->leader_value = n;
        if (changed && el->cbs.on_leader)
                el->cbs.on_leader(el, n, el->userdata);
}

static void demote(SbxEtcdElection *el)
{
        if (!el->leader)
                return;
        el->leader = false;
        el->our_create_rev = 0;
        if (el->cbs.on_demoted)
                el->cbs.on_demoted(el, el->userdata);
}

/* Whether an observation made at `revision` predates our win. The read that starts the watch and
 * the Txn that wins are separate calls whose answers may arrive in either order, and the watch may
 * still deliver events from before the win: such news says nothing about the present and must not
 * demote us (we would then wait for the deletion of a key that is our own). */
static bool predates_our_win(const SbxEtcdElection *el, int64_t revision)
{
        return el->leader && revision < el->our_create_rev;
}

static void on_watch_events(SbxEtcdWatch *w, const Etcdserverpb__WatchResponse *r, void *userdata)
{
        SbxEtcdElection *el = userdata;

        for (size_t i = 0; i < r->n_events; i++) {
                const Etcdserverpb__Event *ev = r->events[i];
                if (ev->kv && predates_our_win(el, ev->kv->mod_revision))
                        continue;
                if (ev->type == ETCDSERVERPB__EVENT__EVENT_TYPE__DELETE) {
                        set_leader_value(el, NULL);
                        demote(el);
                        if (el->campaigning)
                                election_try_acquire(el);
                } else if (ev->kv) {
                        if (el->leader && ev->kv->create_revision != el->our_create_rev)
                                demote(el);
                        set_leader_value(el, &ev->kv->value);
                }
        }
}

static void observe_start(SbxEtcdElection *el);

static void on_watch_resync(SbxEtcdWatch *w, int64_t compact_revision, void *userdata)
{
        SbxEtcdElection *el = userdata;
        /* Start over: read the key again and watch from there. */
        el->watch = sbx_etcd_watch_free(el->watch);
        observe_start(el);
}

static void observe_done(int error, const Etcdserverpb__RangeResponse *r, void *userdata)
{
        SbxEtcdElection *el = userdata;
        static const SbxEtcdWatchCallbacks cbs = { .on_events = on_watch_events,
                                                   .on_resync = on_watch_resync };

        el->pending--;
        if (el->freed) {
                election_maybe_dispose(el);
                return;
        }
        if (error < 0) {
                /* etcd is unreachable: read again shortly. */
                uv_timer_start(&el->retry_timer, on_retry_timer, RETRY_MS, 0);
                return;
        }
        el->observed = true;
        int64_t revision = r->header ? r->header->revision : 0;
        /* A read from before our win has nothing to tell; the watch from there brings our key. */
        if (!predates_our_win(el, revision) && r->n_kvs > 0) {
                set_leader_value(el, &r->kvs[0]->value);
                if (el->leader && r->kvs[0]->create_revision != el->our_create_rev)
                        demote(el);
        } else if (!predates_our_win(el, revision)) {
                set_leader_value(el, NULL);
                demote(el);
        }
        if (sbx_etcd_watch(el->e, el->key, false, revision ? revision + 1 : 0, false, &cbs, el, &el->watch) <
            0)
                el->watch = NULL;
        if (!el->campaigning || el->leader)
                return;
        if (r->n_kvs == 0)
                election_try_acquire(el);
        else if (el->lease && r->kvs[0]->lease == sbx_etcd_lease_id(el->lease))
                win(el, r->kvs[0]->create_revision); /* see acquire_done */
}

static void observe_start(SbxEtcdElection *el)
{
        if (sbx_etcd_get(el->e, el->key, observe_done, el) >= 0)
                el->pending++;
        else
                uv_timer_start(&el->retry_timer, on_retry_timer, RETRY_MS, 0);
}

int sbx_etcd_election_new(SbxEtcd *e, const char *key, const char *value, SbxEtcdLease *lease,
                          const SbxEtcdElectionCallbacks *cbs, void *userdata, SbxEtcdElection **ret)
{
        SbxEtcdElection *el = new0(SbxEtcdElection, 1);

        if (!el)
                return -ENOMEM;
        el->e = e;
        el->key = strdup(key);
        el->value = strdup(value ? value : "");
        el->lease = lease;
        el->cbs = cbs ? *cbs : (SbxEtcdElectionCallbacks){ 0 };
        el->userdata = userdata;
        uv_timer_init(sbx_rpc_loop(e->rpc), &el->retry_timer);
        el->retry_timer.data = el;
        if (!el->key || !el->value) {
                sbx_etcd_election_free(el);
                return -ENOMEM;
        }
        observe_start(el);
        *ret = el;
        return 0;
}

static void on_retry_timer(uv_timer_t *t)
{
        SbxEtcdElection *el = t->data;
        /* Without a watch, the key's state is unknown: read it (which tries to acquire a vacancy). */
        if (!el->watch)
                observe_start(el);
        else
                election_try_acquire(el);
}

static void win(SbxEtcdElection *el, int64_t create_revision)
{
        el->leader = true;
        el->retry = false;
        el->our_create_rev = create_revision;
        set_leader_value(el,
                         &(ProtobufCBinaryData){ .data = (uint8_t *)el->value, .len = strlen(el->value) });
        if (el->cbs.on_elected)
                el->cbs.on_elected(el, el->userdata);
}

static void acquire_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        SbxEtcdElection *el = userdata;

        el->pending--;
        el->attempt_in_flight = false;
        if (el->freed) {
                election_maybe_dispose(el);
                return;
        }
        /* The key as a failed attempt found it. */
        const Etcdserverpb__KeyValue *found = NULL;
        if (error >= 0 && !r->succeeded && r->n_responses > 0 && r->responses[0]->response_range &&
            r->responses[0]->response_range->n_kvs > 0)
                found = r->responses[0]->response_range->kvs[0];
        /* A key bound to our own lease is ours: an earlier attempt committed although its answer
         * was lost (a timeout after the commit). Waiting for its deletion would wait for ever. */
        if (error >= 0 && el->campaigning &&
            (r->succeeded || (found && found->lease == sbx_etcd_lease_id(el->lease)))) {
                win(el, r->succeeded ? (r->header ? r->header->revision : 0) : found->create_revision);
                return;
        }
        if (found)
                set_leader_value(el, &found->value);
        /* A vacancy seen while this attempt was in flight deserves another try at once; a failure
         * to reach etcd gets one after a pause. */
        if (el->campaigning && el->retry && error >= 0) {
                el->retry = false;
                election_try_acquire(el);
        } else if (el->campaigning && error < 0) {
                uv_timer_start(&el->retry_timer, on_retry_timer, RETRY_MS, 0);
        }
}

static void election_try_acquire(SbxEtcdElection *el)
{
        SbxEtcdTxn *t;

        if (!el->campaigning || el->leader || !el->observed || !el->lease ||
            !sbx_etcd_lease_alive(el->lease))
                return;
        if (el->attempt_in_flight) {
                el->retry = true;
                return;
        }
        if (sbx_etcd_txn_new(&t) < 0)
                return;
        sbx_etcd_txn_compare_create_revision(t, el->key, SBX_ETCD_EQUAL, 0);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, el->key, el->value, strlen(el->value),
                         sbx_etcd_lease_id(el->lease));
        sbx_etcd_txn_get(t, SBX_ETCD_FAILURE, el->key, false);
        if (sbx_etcd_txn_commit(el->e, t, acquire_done, el) >= 0) {
                el->pending++;
                el->attempt_in_flight = true;
        }
}

int sbx_etcd_election_campaign(SbxEtcdElection *el)
{
        if (!el->lease)
                return -EINVAL;
        if (!sbx_etcd_lease_alive(el->lease))
                return -SBX_E_LEASE_LOST;
        el->campaigning = true;
        election_try_acquire(el);
        return 0;
}

static void resign_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        SbxEtcdElection *el = userdata;
        el->pending--;
        election_maybe_dispose(el);
}

void sbx_etcd_election_resign(SbxEtcdElection *el)
{
        SbxEtcdTxn *t;

        el->campaigning = false;
        if (!el->leader)
                return;
        /* Delete the key only if it is still the one we created. */
        if (sbx_etcd_txn_new(&t) >= 0) {
                sbx_etcd_txn_compare_create_revision(t, el->key, SBX_ETCD_EQUAL, el->our_create_rev);
                sbx_etcd_txn_delete(t, SBX_ETCD_SUCCESS, el->key, false);
                if (sbx_etcd_txn_commit(el->e, t, resign_done, el) >= 0)
                        el->pending++;
        }
        el->leader = false;
        el->our_create_rev = 0;
}

bool sbx_etcd_election_is_leader(const SbxEtcdElection *el)
{
        return el->leader;
}

const char *sbx_etcd_election_leader(const SbxEtcdElection *el)
{
        return el->leader_value;
}

static void retry_timer_closed(uv_handle_t *h)
{
        SbxEtcdElection *el = h->data;
        el->pending--;
        election_maybe_dispose(el);
}

SbxEtcdElection *sbx_etcd_election_free(SbxEtcdElection *el)
{
        if (!el || el->freed)
                return NULL;
        el->freed = true;
        el->campaigning = false;
        el->watch = sbx_etcd_watch_free(el->watch);
        el->pending++;
        uv_close((uv_handle_t *)&el->retry_timer, retry_timer_closed);
        return NULL;
}
