/* SPDX-License-Identifier: Apache-2.0 */
/* common/etcd against a real etcd that each test starts on ephemeral ports and stops at the end. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/etcd/etcd.h"
#include "common/loop/loop.h"
#include "tests/lib/fixture.h"

static uv_loop_t loop;
static SbxRpc *rpc;
static SbxTestEtcd *etcd;
static SbxEtcd *client;

static SbxEtcd *client_for(const char *const *endpoints)
{
        SbxEtcd *c = NULL;
        SbxEtcdOptions o = { .endpoints = (char *const *)endpoints, .request_timeout = 3 * USEC_PER_SEC };
        cr_assert_eq(sbx_etcd_new(rpc, &o, &c), 0);
        return c;
}

static void setup(void)
{
        cr_assert_eq(uv_loop_init(&loop), 0);
        cr_assert_eq(sbx_rpc_new(&loop, &rpc), 0);
        etcd = sbx_test_etcd_start();
        cr_assert_not_null(etcd, "etcd did not start");
        client = client_for((const char *const[]){ etcd->endpoint, NULL });
}

static bool down;
static void on_down(void *u)
{
        down = true;
}

static void teardown(void)
{
        sbx_etcd_free(client);
        down = false;
        sbx_rpc_shutdown(rpc, 0, on_down, NULL);
        cr_assert_eq(sbx_test_run_until(&loop, &down, 10 * USEC_PER_SEC), 0);
        cr_assert_eq(sbx_loop_close_all(&loop), 0);
        sbx_test_etcd_stop(etcd);
}

TestSuite(etcd, .init = setup, .fini = teardown, .timeout = 90);

/* ---- synchronous wrappers for readable tests ---- */

typedef struct Wait {
        bool done;
        int error;
        int64_t revision;
        bool succeeded;
        size_t n;
        int64_t count;
        bool more;
        char values[16][64];
        int64_t deleted;
} Wait;

static void range_cb(int error, const Etcdserverpb__RangeResponse *r, void *userdata)
{
        Wait *w = userdata;
        w->done = true;
        w->error = error;
        if (r) {
                w->revision = r->header ? r->header->revision : 0;
                w->n = r->n_kvs;
                w->count = r->count;
                w->more = r->more;
                for (size_t i = 0; i < r->n_kvs && i < 16; i++)
                        snprintf(w->values[i], sizeof(w->values[i]), "%.*s=%.*s", (int)r->kvs[i]->key.len,
                                 (const char *)r->kvs[i]->key.data, (int)r->kvs[i]->value.len,
                                 (const char *)r->kvs[i]->value.data);
        }
}

static void put_cb(int error, const Etcdserverpb__PutResponse *r, void *userdata)
{
        Wait *w = userdata;
        w->done = true;
        w->error = error;
        w->revision = r && r->header ? r->header->revision : 0;
}

static void delete_cb(int error, const Etcdserverpb__DeleteRangeResponse *r, void *userdata)
{
        Wait *w = userdata;
        w->done = true;
        w->error = error;
        w->deleted = r ? r->deleted : 0;
}

static void txn_cb(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        Wait *w = userdata;
        w->done = true;
        w->error = error;
        w->succeeded = r && r->succeeded;
        w->revision = r && r->header ? r->header->revision : 0;
        if (r && r->n_responses > 0 &&
            r->responses[0]->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE)
                range_cb(error, r->responses[0]->response_range, userdata);
}

static void wait_for(Wait *w)
{
        cr_assert_eq(sbx_test_run_until(&loop, &w->done, 10 * USEC_PER_SEC), 0,
                     "etcd request never completed");
}

static Wait put(SbxEtcd *c, const char *k, const char *v, int64_t lease)
{
        Wait w = { 0 };
        cr_assert_eq(sbx_etcd_put(c, k, v, strlen(v), lease, put_cb, &w), 0);
        wait_for(&w);
        return w;
}

static Wait range(SbxEtcd *c, const char *k, const SbxEtcdRangeOptions *o)
{
        Wait w = { 0 };
        cr_assert_eq(sbx_etcd_range(c, k, o, range_cb, &w), 0);
        wait_for(&w);
        return w;
}

static Wait commit(SbxEtcdTxn *t)
{
        Wait w = { 0 };
        cr_assert_eq(sbx_etcd_txn_commit(client, t, txn_cb, &w), 0);
        wait_for(&w);
        return w;
}

/* ---- KV ---- */

Test(etcd, put_get_prefix_count_limit)
{
        cr_assert_eq(put(client, "/t/a", "1", 0).error, 0);
        cr_assert_eq(put(client, "/t/b", "2", 0).error, 0);
        cr_assert_eq(put(client, "/t/c", "3", 0).error, 0);
        cr_assert_eq(put(client, "/u/x", "4", 0).error, 0);

        Wait g = range(client, "/t/b", NULL);
        cr_assert_eq(g.error, 0);
        cr_assert_eq(g.n, 1);
        cr_assert_str_eq(g.values[0], "/t/b=2");

        Wait p = range(client, "/t/", &(SbxEtcdRangeOptions){ .prefix = true });
        cr_assert_eq(p.n, 3);
        cr_assert_str_eq(p.values[0], "/t/a=1");
        cr_assert_str_eq(p.values[2], "/t/c=3");

        Wait l = range(client, "/t/", &(SbxEtcdRangeOptions){ .prefix = true, .limit = 2 });
        cr_assert_eq(l.n, 2);
        cr_assert(l.more);
        cr_assert_eq(l.count, 3);

        Wait c = range(client, "/t/", &(SbxEtcdRangeOptions){ .prefix = true, .count_only = true });
        cr_assert_eq(c.n, 0);
        cr_assert_eq(c.count, 3);

        Wait missing = range(client, "/nope", NULL);
        cr_assert_eq(missing.error, 0);
        cr_assert_eq(missing.n, 0);
}

Test(etcd, delete_key_and_prefix)
{
        put(client, "/d/1", "a", 0);
        put(client, "/d/2", "b", 0);
        put(client, "/d/3", "c", 0);
        Wait w = { 0 };
        cr_assert_eq(sbx_etcd_delete(client, "/d/1", false, delete_cb, &w), 0);
        wait_for(&w);
        cr_assert_eq(w.deleted, 1);
        w = (Wait){ 0 };
        cr_assert_eq(sbx_etcd_delete(client, "/d/", true, delete_cb, &w), 0);
        wait_for(&w);
        cr_assert_eq(w.deleted, 2);
        cr_assert_eq(range(client, "/d/", &(SbxEtcdRangeOptions){ .prefix = true }).n, 0);
}

Test(etcd, prefix_end)
{
        char *e = NULL;
        cr_assert_eq(sbx_etcd_prefix_end("/a/", &e), 0);
        cr_assert_str_eq(e, "/a0");
        free(e);
        cr_assert_eq(sbx_etcd_prefix_end("a\xff", &e), 0);
        cr_assert_str_eq(e, "b");
        free(e);
}

/* ---- transactions ---- */

Test(etcd, txn_success_and_failure_branches)
{
        SbxEtcdTxn *t;
        Wait first = put(client, "/x/counter", "1", 0);

        /* Value compare that holds: success branch runs. */
        cr_assert_eq(sbx_etcd_txn_new(&t), 0);
        sbx_etcd_txn_compare_value(t, "/x/counter", SBX_ETCD_EQUAL, "1", 1);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, "/x/counter", "2", 1, 0);
        sbx_etcd_txn_put(t, SBX_ETCD_FAILURE, "/x/failed", "yes", 3, 0);
        Wait w = commit(t);
        cr_assert_eq(w.error, 0);
        cr_assert(w.succeeded);
        cr_assert_str_eq(range(client, "/x/counter", NULL).values[0], "/x/counter=2");
        cr_assert_eq(range(client, "/x/failed", NULL).n, 0);

        /* The same compare now fails: failure branch runs and reads the key. */
        cr_assert_eq(sbx_etcd_txn_new(&t), 0);
        sbx_etcd_txn_compare_value(t, "/x/counter", SBX_ETCD_EQUAL, "1", 1);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, "/x/counter", "3", 1, 0);
        sbx_etcd_txn_get(t, SBX_ETCD_FAILURE, "/x/counter", false);
        w = commit(t);
        cr_assert_eq(w.error, 0);
        cr_assert_not(w.succeeded);
        cr_assert_str_eq(w.values[0], "/x/counter=2");

        /* mod_revision guards against a concurrent writer (the scheduler's quota pattern). */
        Wait now = range(client, "/x/counter", NULL);
        cr_assert_eq(sbx_etcd_txn_new(&t), 0);
        sbx_etcd_txn_compare_mod_revision(t, "/x/counter", SBX_ETCD_EQUAL, first.revision);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, "/x/counter", "stale", 5, 0);
        cr_assert_not(commit(t).succeeded, "the key changed since revision %lld", (long long)first.revision);
        cr_assert_eq(sbx_etcd_txn_new(&t), 0);
        sbx_etcd_txn_compare_mod_revision(t, "/x/counter", SBX_ETCD_EQUAL, now.revision);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, "/x/counter", "4", 1, 0);
        cr_assert(commit(t).succeeded);

        /* create_revision == 0 means "absent"; version counts modifications. */
        cr_assert_eq(sbx_etcd_txn_new(&t), 0);
        sbx_etcd_txn_compare_create_revision(t, "/x/new", SBX_ETCD_EQUAL, 0);
        sbx_etcd_txn_compare_version(t, "/x/counter", SBX_ETCD_EQUAL, 3);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, "/x/new", "created", 7, 0);
        cr_assert(commit(t).succeeded);
        cr_assert_eq(sbx_etcd_txn_new(&t), 0);
        sbx_etcd_txn_compare_create_revision(t, "/x/new", SBX_ETCD_EQUAL, 0);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, "/x/new", "again", 5, 0);
        cr_assert_not(commit(t).succeeded);

        /* An empty value compares equal to an empty value (the oneof case is sent explicitly). */
        put(client, "/x/empty", "", 0);
        cr_assert_eq(sbx_etcd_txn_new(&t), 0);
        sbx_etcd_txn_compare_value(t, "/x/empty", SBX_ETCD_EQUAL, "", 0);
        sbx_etcd_txn_delete(t, SBX_ETCD_SUCCESS, "/x/", true);
        cr_assert(commit(t).succeeded);
        cr_assert_eq(range(client, "/x/", &(SbxEtcdRangeOptions){ .prefix = true }).n, 0);
}

/* ---- leases ---- */

typedef struct LeaseWait {
        bool granted;
        int grant_error;
        bool lost;
} LeaseWait;

static void lease_granted(SbxEtcdLease *l, int error, void *userdata)
{
        LeaseWait *w = userdata;
        w->granted = true;
        w->grant_error = error;
}

static void lease_lost(SbxEtcdLease *l, void *userdata)
{
        LeaseWait *w = userdata;
        w->lost = true;
}

static const SbxEtcdLeaseCallbacks lease_cbs = { .on_granted = lease_granted, .on_lost = lease_lost };

static SbxEtcdLease *grant(SbxEtcd *c, int64_t ttl, LeaseWait *w)
{
        SbxEtcdLease *l = NULL;
        cr_assert_eq(sbx_etcd_lease_grant(c, ttl, &lease_cbs, w, &l), 0);
        cr_assert_eq(sbx_test_run_until(&loop, &w->granted, 10 * USEC_PER_SEC), 0);
        cr_assert_eq(w->grant_error, 0);
        cr_assert_gt(sbx_etcd_lease_id(l), 0);
        return l;
}

Test(etcd, lease_keepalive_keeps_key)
{
        LeaseWait w = { 0 };
        SbxEtcdLease *l = grant(client, 2, &w);
        put(client, "/l/alive", "yes", sbx_etcd_lease_id(l));
        /* Well past the TTL: keepalives must hold it. */
        sbx_test_run_for(&loop, 4 * USEC_PER_SEC);
        cr_assert_not(w.lost);
        cr_assert_eq(range(client, "/l/alive", NULL).n, 1);
        sbx_etcd_lease_free(l);
}

Test(etcd, lease_revoked_elsewhere_deletes_key_and_fires_lost)
{
        LeaseWait w = { 0 };
        char id[32];
        SbxEtcdLease *l = grant(client, 3, &w);
        put(client, "/l/k", "v", sbx_etcd_lease_id(l));

        snprintf(id, sizeof(id), "%llx", (unsigned long long)sbx_etcd_lease_id(l));
        cr_assert_eq(sbx_test_etcdctl(etcd, (const char *const[]){ "lease", "revoke", id, NULL }), 0);
        cr_assert_eq(sbx_test_run_until(&loop, &w.lost, 5 * USEC_PER_SEC), 0,
                     "lost-lease callback did not fire");
        cr_assert_eq(range(client, "/l/k", NULL).n, 0, "the key bound to the lease must be gone");
        sbx_etcd_lease_free(l);
}

Test(etcd, lease_expiry_while_unreachable)
{
        LeaseWait w = { 0 };
        SbxEtcdLease *l = grant(client, 2, &w);
        put(client, "/l/exp", "v", sbx_etcd_lease_id(l));

        /* Freeze etcd: keepalives go unanswered, and past the TTL the lease must count as lost. */
        kill(etcd->pid, SIGSTOP);
        usec_t t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_test_run_until(&loop, &w.lost, 6 * USEC_PER_SEC), 0,
                     "lost-lease callback did not fire");
        cr_assert_lt(sbx_now_monotonic() - t0, 3 * USEC_PER_SEC, "reported later than TTL + 1 s");
        kill(etcd->pid, SIGCONT);
        /* etcd expires it too once it runs again. */
        usec_t deadline = sbx_now_monotonic() + 8 * USEC_PER_SEC;
        size_t n = 1;
        while (n > 0 && sbx_now_monotonic() < deadline) {
                n = range(client, "/l/exp", NULL).n;
                if (n > 0)
                        sbx_test_run_for(&loop, 200 * USEC_PER_MSEC);
        }
        cr_assert_eq(n, 0, "etcd kept a key whose lease expired");
        sbx_etcd_lease_free(l);
}

Test(etcd, lease_not_renewed_expires)
{
        LeaseWait w = { 0 };
        SbxEtcdLease *l = grant(client, 2, &w);
        put(client, "/l/gone", "v", sbx_etcd_lease_id(l));
        sbx_etcd_lease_free(l); /* no revoke: the TTL runs out */
        usec_t deadline = sbx_now_monotonic() + 6 * USEC_PER_SEC;
        size_t n = 1;
        while (n > 0 && sbx_now_monotonic() < deadline) {
                sbx_test_run_for(&loop, 250 * USEC_PER_MSEC);
                n = range(client, "/l/gone", NULL).n;
        }
        cr_assert_eq(n, 0);
}

Test(etcd, lease_revoke)
{
        LeaseWait w = { 0 };
        SbxEtcdLease *l = grant(client, 10, &w);
        put(client, "/l/r", "v", sbx_etcd_lease_id(l));
        sbx_etcd_lease_revoke(l, NULL, NULL);
        usec_t deadline = sbx_now_monotonic() + 5 * USEC_PER_SEC;
        size_t n = 1;
        while (n > 0 && sbx_now_monotonic() < deadline) {
                sbx_test_run_for(&loop, 50 * USEC_PER_MSEC);
                n = range(client, "/l/r", NULL).n;
        }
        cr_assert_eq(n, 0);
        cr_assert_not(w.lost, "a revoke by the owner is not a loss");
}

/* ---- watches ---- */

typedef struct Seen {
        char events[64][80];
        unsigned n;
        int64_t resync_at;
        bool resync;
        bool ready;
} Seen;

static void seen_events(SbxEtcdWatch *w, const Etcdserverpb__WatchResponse *r, void *userdata)
{
        Seen *s = userdata;
        for (size_t i = 0; i < r->n_events && s->n < 64; i++) {
                const Etcdserverpb__Event *ev = r->events[i];
                bool del = ev->type == ETCDSERVERPB__EVENT__EVENT_TYPE__DELETE;
                snprintf(s->events[s->n++], 80, "%s %.*s=%.*s prev=%.*s", del ? "DEL" : "PUT",
                         (int)ev->kv->key.len, (const char *)ev->kv->key.data, (int)ev->kv->value.len,
                         (const char *)ev->kv->value.data, ev->prev_kv ? (int)ev->prev_kv->value.len : 0,
                         ev->prev_kv ? (const char *)ev->prev_kv->value.data : "");
        }
}

static void seen_resync(SbxEtcdWatch *w, int64_t rev, void *userdata)
{
        Seen *s = userdata;
        s->resync = true;
        s->resync_at = rev;
}

static void seen_ready(SbxEtcdWatch *w, int64_t rev, void *userdata)
{
        Seen *s = userdata;
        s->ready = true;
}

static const SbxEtcdWatchCallbacks seen_cbs = { .on_events = seen_events,
                                                .on_resync = seen_resync,
                                                .on_ready = seen_ready };

static void wait_events(Seen *s, unsigned n)
{
        usec_t deadline = sbx_now_monotonic() + 15 * USEC_PER_SEC;
        while (s->n < n && sbx_now_monotonic() < deadline)
                sbx_test_run_for(&loop, 20 * USEC_PER_MSEC);
}

Test(etcd, watch_sees_puts_and_deletes_in_order)
{
        Seen s = { 0 };
        SbxEtcdWatch *w = NULL;
        cr_assert_eq(sbx_etcd_watch(client, "/w/", true, 0, true, &seen_cbs, &s, &w), 0);
        cr_assert_eq(sbx_test_run_until(&loop, &s.ready, 5 * USEC_PER_SEC), 0);

        put(client, "/w/a", "1", 0);
        put(client, "/w/a", "2", 0);
        put(client, "/other", "x", 0);
        Wait d = { 0 };
        sbx_etcd_delete(client, "/w/a", false, delete_cb, &d);
        wait_for(&d);
        wait_events(&s, 3);
        cr_assert_eq(s.n, 3);
        cr_assert_str_eq(s.events[0], "PUT /w/a=1 prev=");
        cr_assert_str_eq(s.events[1], "PUT /w/a=2 prev=1");
        cr_assert_str_eq(s.events[2], "DEL /w/a= prev=2");
        sbx_etcd_watch_free(w);
}

Test(etcd, watch_resumes_across_etcd_restart)
{
        Seen s = { 0 };
        SbxEtcdWatch *w = NULL;
        cr_assert_eq(sbx_etcd_watch(client, "/r/", true, 0, false, &seen_cbs, &s, &w), 0);
        cr_assert_eq(sbx_test_run_until(&loop, &s.ready, 5 * USEC_PER_SEC), 0);
        put(client, "/r/1", "a", 0);
        put(client, "/r/2", "b", 0);
        wait_events(&s, 2);
        cr_assert_eq(s.n, 2);

        sbx_test_etcd_halt(etcd, SIGKILL);
        /* Let the watch notice and start backing off. */
        sbx_test_run_for(&loop, 300 * USEC_PER_MSEC);
        cr_assert_eq(sbx_test_etcd_restart(etcd), 0);

        /* Writes right after the restart, from another client, before the watch is back: they are
         * only seen if the watch resumes from its last revision rather than from "now". */
        SbxEtcd *other = client_for((const char *const[]){ etcd->endpoint, NULL });
        Wait p3 = put(other, "/r/3", "c", 0);
        cr_assert_eq(p3.error, 0, "put after restart: %d", p3.error);
        put(other, "/r/4", "d", 0);
        wait_events(&s, 4);
        sbx_test_run_for(&loop, 300 * USEC_PER_MSEC);
        cr_assert_eq(s.n, 4, "saw %u events", s.n);
        cr_assert_str_eq(s.events[2], "PUT /r/3=c prev=");
        cr_assert_str_eq(s.events[3], "PUT /r/4=d prev=");
        cr_assert_geq(sbx_etcd_watch_reconnects(w), 1);
        sbx_etcd_free(other);
        sbx_etcd_watch_free(w);
}

static void compact_cb(int error, const Etcdserverpb__PutResponse *r, void *userdata)
{
        Wait *w = userdata;
        w->done = true;
        w->error = error;
}

Test(etcd, watch_from_compacted_revision_signals_resync)
{
        Seen s = { 0 };
        SbxEtcdWatch *w = NULL;
        Wait last = { 0 };

        for (int i = 0; i < 5; i++)
                last = put(client, "/c/k", "v", 0);
        Wait c = { 0 };
        cr_assert_eq(sbx_etcd_compact(client, last.revision, compact_cb, &c), 0);
        wait_for(&c);
        cr_assert_eq(c.error, 0);

        cr_assert_eq(sbx_etcd_watch(client, "/c/", true, 2, false, &seen_cbs, &s, &w), 0);
        cr_assert_eq(sbx_test_run_until(&loop, &s.resync, 5 * USEC_PER_SEC), 0, "no resync signalled");
        cr_assert_eq(s.resync_at, last.revision);

        /* The owner re-reads and restarts from the read's revision + 1. */
        Wait now = range(client, "/c/", &(SbxEtcdRangeOptions){ .prefix = true });
        cr_assert_eq(sbx_etcd_watch_restart(w, now.revision + 1), 0);
        cr_assert_eq(sbx_test_run_until(&loop, &s.ready, 5 * USEC_PER_SEC), 0);
        put(client, "/c/k", "after", 0);
        wait_events(&s, 1);
        cr_assert_eq(s.n, 1);
        cr_assert_str_eq(s.events[0], "PUT /c/k=after prev=");
        sbx_etcd_watch_free(w);
}

/* ---- endpoints ---- */

Test(etcd, dead_endpoint_is_skipped)
{
        char dead[64];
        snprintf(dead, sizeof(dead), "127.0.0.1:%d", sbx_test_free_port());
        SbxEtcd *c = client_for((const char *const[]){ dead, etcd->endpoint, NULL });
        put(client, "/e/k", "v", 0);
        for (int i = 0; i < 4; i++) {
                Wait g = range(c, "/e/k", NULL);
                cr_assert_eq(g.error, 0, "read %d failed: %d", i, g.error);
                cr_assert_eq(g.n, 1);
        }
        cr_assert_str_eq(sbx_etcd_current_endpoint(c), etcd->endpoint);
        sbx_etcd_free(c);
}

Test(etcd, unreachable_is_unavailable)
{
        char dead[64];
        snprintf(dead, sizeof(dead), "127.0.0.1:%d", sbx_test_free_port());
        SbxEtcd *c = client_for((const char *const[]){ dead, NULL });
        Wait g = range(c, "/k", NULL);
        cr_assert_eq(g.error, -SBX_E_UNAVAILABLE, "got %d", g.error);
        Wait p = put(c, "/k", "v", 0);
        cr_assert_eq(p.error, -SBX_E_UNAVAILABLE);
        sbx_etcd_free(c);
}

/* ---- election ---- */

typedef struct Candidate {
        SbxEtcd *c;
        SbxEtcdLease *lease;
        LeaseWait lw;
        SbxEtcdElection *el;
        bool elected;
        bool demoted;
        char leader[64];
} Candidate;

static void cand_elected(SbxEtcdElection *el, void *u)
{
        ((Candidate *)u)->elected = true;
}

static void cand_demoted(SbxEtcdElection *el, void *u)
{
        ((Candidate *)u)->demoted = true;
}

static void cand_leader(SbxEtcdElection *el, const char *v, void *u)
{
        snprintf(((Candidate *)u)->leader, 64, "%s", v ? v : "");
}

static const SbxEtcdElectionCallbacks cand_cbs = { .on_elected = cand_elected,
                                                   .on_demoted = cand_demoted,
                                                   .on_leader = cand_leader };

static void candidate_start(Candidate *k, const char *name)
{
        k->c = client_for((const char *const[]){ etcd->endpoint, NULL });
        k->lease = grant(k->c, 5, &k->lw);
        cr_assert_eq(sbx_etcd_election_new(k->c, "/sbx/test/leader", name, k->lease, &cand_cbs, k, &k->el),
                     0);
        cr_assert_eq(sbx_etcd_election_campaign(k->el), 0);
}

static void candidate_stop(Candidate *k)
{
        sbx_etcd_election_free(k->el);
        sbx_etcd_lease_free(k->lease);
        /* Let the frees complete before the client goes. */
        sbx_test_run_for(&loop, 50 * USEC_PER_MSEC);
        sbx_etcd_free(k->c);
}

Test(etcd, election_one_leader_and_failover)
{
        Candidate a = { 0 }, b = { 0 };
        candidate_start(&a, "replica-a");
        cr_assert_eq(sbx_test_run_until(&loop, &a.elected, 5 * USEC_PER_SEC), 0);
        candidate_start(&b, "replica-b");
        sbx_test_run_for(&loop, 500 * USEC_PER_MSEC);

        cr_assert(sbx_etcd_election_is_leader(a.el));
        cr_assert_not(sbx_etcd_election_is_leader(b.el), "two leaders");
        cr_assert_str_eq(b.leader, "replica-a", "b observes a as leader");

        /* The leader's lease is revoked: b takes over, a learns it is no longer leader. */
        char id[32];
        snprintf(id, sizeof(id), "%llx", (unsigned long long)sbx_etcd_lease_id(a.lease));
        cr_assert_eq(sbx_test_etcdctl(etcd, (const char *const[]){ "lease", "revoke", id, NULL }), 0);
        cr_assert_eq(sbx_test_run_until(&loop, &b.elected, 5 * USEC_PER_SEC), 0, "no failover");
        cr_assert_eq(sbx_test_run_until(&loop, &a.demoted, 5 * USEC_PER_SEC), 0);
        cr_assert_not(sbx_etcd_election_is_leader(a.el));
        cr_assert(sbx_etcd_election_is_leader(b.el));
        sbx_test_run_for(&loop, 200 * USEC_PER_MSEC);
        cr_assert_str_eq(a.leader, "replica-b");

        candidate_stop(&a);
        candidate_stop(&b);
}

/* The key already bound to the candidate's own lease (an earlier attempt committed but its answer
 * was lost): the candidate leads, instead of waiting for its own key to go. */
Test(etcd, election_adopts_a_key_on_its_own_lease)
{
        Candidate a = { 0 };
        a.c = client_for((const char *const[]){ etcd->endpoint, NULL });
        a.lease = grant(a.c, 5, &a.lw);
        cr_assert_eq(put(a.c, "/sbx/test/leader", "replica-a", sbx_etcd_lease_id(a.lease)).error, 0);
        cr_assert_eq(
                sbx_etcd_election_new(a.c, "/sbx/test/leader", "replica-a", a.lease, &cand_cbs, &a, &a.el),
                0);
        cr_assert_eq(sbx_etcd_election_campaign(a.el), 0);
        cr_assert_eq(sbx_test_run_until(&loop, &a.elected, 5 * USEC_PER_SEC), 0,
                     "its own key kept it waiting");
        sbx_test_run_for(&loop, 200 * USEC_PER_MSEC);
        cr_assert(sbx_etcd_election_is_leader(a.el));
        cr_assert_not(a.demoted);
        candidate_stop(&a);
}

Test(etcd, election_resign_hands_over)
{
        Candidate a = { 0 }, b = { 0 };
        candidate_start(&a, "replica-a");
        cr_assert_eq(sbx_test_run_until(&loop, &a.elected, 5 * USEC_PER_SEC), 0);
        candidate_start(&b, "replica-b");
        sbx_test_run_for(&loop, 300 * USEC_PER_MSEC);
        cr_assert_not(b.elected);
        sbx_etcd_election_resign(a.el);
        cr_assert_eq(sbx_test_run_until(&loop, &b.elected, 5 * USEC_PER_SEC), 0);
        cr_assert_not(sbx_etcd_election_is_leader(a.el));
        candidate_stop(&a);
        candidate_stop(&b);
}
