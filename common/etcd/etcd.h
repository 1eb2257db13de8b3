/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * An etcd v3 client on common/rpc: KV (get, prefix ranges, put, delete), transactions, leases with
 * keepalive, prefix watches that survive reconnects, and leader election.
 *
 * Everything is asynchronous and runs on the rpc runtime's loop; callbacks run on the loop, never
 * from inside the call that started the operation. Results are etcd's own protobuf messages
 * (proto/etcd/etcdserverpb.proto), valid only during the callback.
 *
 * Errors: 0 or a negative error — -SBX_E_UNAVAILABLE when no endpoint answered, -ETIMEDOUT past
 * the request timeout, -ECANCELED when the client was freed, -SBX_E_COMPACTED for a read at a
 * compacted revision, -EINVAL for bad arguments.
 *
 * Several endpoints: requests go to the current endpoint; when it fails with UNAVAILABLE the
 * client moves to the next one. Reads (Range) are retried once on every endpoint; writes are not
 * retried (an UNAVAILABLE write may or may not have been applied: callers guard writes with Txn
 * compares). Watches and lease keepalives reconnect by themselves with exponential backoff
 * (100 ms doubling to 5 s, with jitter), rotating through the endpoints.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/rpc/rpc.h"
#include "proto/etcd/etcdserverpb.pb-c.h"

typedef struct SbxEtcd SbxEtcd;
typedef struct SbxEtcdTxn SbxEtcdTxn;
typedef struct SbxEtcdLease SbxEtcdLease;
typedef struct SbxEtcdWatch SbxEtcdWatch;
typedef struct SbxEtcdElection SbxEtcdElection;

typedef struct SbxEtcdOptions {
        /* "host:port" of each member; at least one. */
        char *const *endpoints;
        /* NULL for plaintext (loopback only); mTLS when a client certificate is given. */
        const SbxRpcTls *tls;
        /* Deadline of one KV or lease request; 0 means 5 s. */
        usec_t request_timeout;
} SbxEtcdOptions;

int sbx_etcd_new(SbxRpc *rpc, const SbxEtcdOptions *opts, SbxEtcd **ret);

/* Cancels everything in flight; no callback of this client runs afterwards. Leases, watches and
 * elections must be freed first (they belong to their creators). Accepts NULL; returns NULL. */
SbxEtcd *sbx_etcd_free(SbxEtcd *e);

/* Requests in flight (KV, Txn, lease grants and revokes; not watches or keepalive streams). Owners
 * wait for zero before sbx_etcd_free() so no completion is dropped. */
size_t sbx_etcd_pending(const SbxEtcd *e);

/* The loop this client's callbacks run on. */
uv_loop_t *sbx_etcd_loop(const SbxEtcd *e);

/* The endpoint requests currently go to. */
const char *sbx_etcd_current_endpoint(const SbxEtcd *e);

/* ---- KV ---- */

/* The range end that makes [key, end) cover every key starting with `prefix`. Caller frees. */
int sbx_etcd_prefix_end(const char *prefix, char **ret);

typedef struct SbxEtcdRangeOptions {
        /* Every key starting with `key`. */
        bool prefix;
        /* At most this many keys; 0 means all. */
        int64_t limit;
        /* Read as of this revision; 0 means the latest. */
        int64_t revision;
        bool count_only;
        bool keys_only;
        /* Serve from the local member without a quorum round (may be stale). */
        bool serializable;
} SbxEtcdRangeOptions;

typedef void (*SbxEtcdRangeCallback)(int error, const Etcdserverpb__RangeResponse *r, void *userdata);
typedef void (*SbxEtcdPutCallback)(int error, const Etcdserverpb__PutResponse *r, void *userdata);
typedef void (*SbxEtcdDeleteCallback)(int error, const Etcdserverpb__DeleteRangeResponse *r, void *userdata);
typedef void (*SbxEtcdTxnCallback)(int error, const Etcdserverpb__TxnResponse *r, void *userdata);

int sbx_etcd_range(SbxEtcd *e, const char *key, const SbxEtcdRangeOptions *o, SbxEtcdRangeCallback cb,
                   void *userdata);
/* Shorthand for one key. */
int sbx_etcd_get(SbxEtcd *e, const char *key, SbxEtcdRangeCallback cb, void *userdata);
/* `lease` 0 for none. */
int sbx_etcd_put(SbxEtcd *e, const char *key, const void *value, size_t size, int64_t lease,
                 SbxEtcdPutCallback cb, void *userdata);
int sbx_etcd_delete(SbxEtcd *e, const char *key, bool prefix, SbxEtcdDeleteCallback cb, void *userdata);
/* Compacts history up to `revision` (tests use it to provoke a watch resync). */
int sbx_etcd_compact(SbxEtcd *e, int64_t revision, SbxEtcdPutCallback cb, void *userdata);

/* ---- transactions ---- */

typedef enum SbxEtcdCompareOp {
        SBX_ETCD_EQUAL = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL,
        SBX_ETCD_GREATER = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER,
        SBX_ETCD_LESS = ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS,
        SBX_ETCD_NOT_EQUAL = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL,
} SbxEtcdCompareOp;

typedef enum SbxEtcdBranch {
        SBX_ETCD_SUCCESS,
        SBX_ETCD_FAILURE,
} SbxEtcdBranch;

/*
 * A transaction is built, then committed (which consumes it). Builders copy their arguments and
 * record the first allocation failure, which commit then reports; they never fail on their own.
 * A compare on a key that does not exist sees version, create and mod revision 0.
 */
int sbx_etcd_txn_new(SbxEtcdTxn **ret);
SbxEtcdTxn *sbx_etcd_txn_free(SbxEtcdTxn *t);
void sbx_etcd_txn_compare_value(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op, const void *value,
                                size_t size);
void sbx_etcd_txn_compare_version(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op, int64_t version);
void sbx_etcd_txn_compare_create_revision(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op, int64_t rev);
void sbx_etcd_txn_compare_mod_revision(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op, int64_t rev);
void sbx_etcd_txn_compare_lease(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op, int64_t lease);
void sbx_etcd_txn_put(SbxEtcdTxn *t, SbxEtcdBranch b, const char *key, const void *value, size_t size,
                      int64_t lease);
void sbx_etcd_txn_delete(SbxEtcdTxn *t, SbxEtcdBranch b, const char *key, bool prefix);
void sbx_etcd_txn_get(SbxEtcdTxn *t, SbxEtcdBranch b, const char *key, bool prefix);
/* Sends the transaction; the callback gets r->succeeded and one response per op of the taken branch. */
int sbx_etcd_txn_commit(SbxEtcd *e, SbxEtcdTxn *t, SbxEtcdTxnCallback cb, void *userdata);

/* ---- leases ---- */

typedef struct SbxEtcdLeaseCallbacks {
        /* The grant completed: error 0 and the lease is alive, or the grant failed (then the lease
         * is dead and must be freed). */
        void (*on_granted)(SbxEtcdLease *l, int error, void *userdata);
        /* The lease expired or was revoked elsewhere, or keepalives failed for longer than its TTL.
         * Keys bound to it are gone. Called at most once; free the lease afterwards. */
        void (*on_lost)(SbxEtcdLease *l, void *userdata);
} SbxEtcdLeaseCallbacks;

/* Grants a lease of `ttl_sec` seconds (>= 2) and keeps it alive with a keepalive every TTL/3. */
int sbx_etcd_lease_grant(SbxEtcd *e, int64_t ttl_sec, const SbxEtcdLeaseCallbacks *cbs, void *userdata,
                         SbxEtcdLease **ret);
/* 0 until granted. */
int64_t sbx_etcd_lease_id(const SbxEtcdLease *l);
int64_t sbx_etcd_lease_ttl(const SbxEtcdLease *l);
bool sbx_etcd_lease_alive(const SbxEtcdLease *l);
/* Revokes the lease (deleting its keys) and frees it; `done` (optional) gets the revoke's result. */
void sbx_etcd_lease_revoke(SbxEtcdLease *l, void (*done)(int error, void *userdata), void *userdata);
/* Stops keepalives and frees the lease without revoking: it expires after its TTL. Accepts NULL. */
SbxEtcdLease *sbx_etcd_lease_free(SbxEtcdLease *l);

/* ---- watches ---- */

typedef struct SbxEtcdWatchCallbacks {
        /* Events in revision order. resp->header->revision is the store revision; every event's
         * kv->mod_revision is what was applied. */
        void (*on_events)(SbxEtcdWatch *w, const Etcdserverpb__WatchResponse *resp, void *userdata);
        /* The revision the watch needed was compacted: events were lost. Re-read the state and call
         * sbx_etcd_watch_restart() from the read's revision + 1. The watch is paused until then. */
        void (*on_resync)(SbxEtcdWatch *w, int64_t compact_revision, void *userdata);
        /* Optional: the watch is (re)established at revision `rev` (the next event will be > rev). */
        void (*on_ready)(SbxEtcdWatch *w, int64_t revision, void *userdata);
} SbxEtcdWatchCallbacks;

/*
 * Watches `key` (or every key under it with `prefix`) from `start_revision` (0 = from now), with
 * prev_kv in events when asked. Resumes after a lost connection from the last seen revision + 1,
 * so no event is lost or repeated.
 */
int sbx_etcd_watch(SbxEtcd *e, const char *key, bool prefix, int64_t start_revision, bool prev_kv,
                   const SbxEtcdWatchCallbacks *cbs, void *userdata, SbxEtcdWatch **ret);
/* Restarts from `start_revision` (after a resync). */
int sbx_etcd_watch_restart(SbxEtcdWatch *w, int64_t start_revision);
/* The next revision the watch will report (last seen + 1). */
int64_t sbx_etcd_watch_next_revision(const SbxEtcdWatch *w);
/* Reconnections so far (tests and metrics). */
unsigned sbx_etcd_watch_reconnects(const SbxEtcdWatch *w);
SbxEtcdWatch *sbx_etcd_watch_free(SbxEtcdWatch *w);

/* ---- leader election ---- */

typedef struct SbxEtcdElectionCallbacks {
        /* This candidate now holds the key. */
        void (*on_elected)(SbxEtcdElection *el, void *userdata);
        /* This candidate lost the key (its lease ended, or the key was deleted or replaced). */
        void (*on_demoted)(SbxEtcdElection *el, void *userdata);
        /* Whoever leads changed: the leader's value, or NULL while nobody leads. Optional. */
        void (*on_leader)(SbxEtcdElection *el, const char *value, void *userdata);
} SbxEtcdElectionCallbacks;

/*
 * Observes the election on `key` at once (on_leader). With a lease, sbx_etcd_election_campaign()
 * makes this process a candidate: it takes the key when it is vacant (Txn on create_revision == 0,
 * the key bound to the lease, holding `value`) and waits for it to become vacant otherwise.
 * Without a lease the election only observes.
 */
int sbx_etcd_election_new(SbxEtcd *e, const char *key, const char *value, SbxEtcdLease *lease,
                          const SbxEtcdElectionCallbacks *cbs, void *userdata, SbxEtcdElection **ret);
int sbx_etcd_election_campaign(SbxEtcdElection *el);
/* Gives up the key if held (deletes it only if it is still ours) and stops campaigning. */
void sbx_etcd_election_resign(SbxEtcdElection *el);
bool sbx_etcd_election_is_leader(const SbxEtcdElection *el);
/* The current leader's value as last observed, or NULL. */
const char *sbx_etcd_election_leader(const SbxEtcdElection *el);
SbxEtcdElection *sbx_etcd_election_free(SbxEtcdElection *el);
