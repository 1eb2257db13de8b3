/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The scheduler's shared context and the functions its files offer each other. */

#include <uv.h>

#include "common/crypto/crypto.h"
#include "common/etcd/etcd.h"
#include "common/metrics/metrics-http.h"
#include "common/metrics/metrics.h"
#include "common/rpc/rpc.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"
#include "scheduler/sched-config.h"
#include "scheduler/sched-state.h"

typedef struct SchedMetrics {
        SbxCounter *placements; /* region, result */
        SbxCounter *quota_rejections;
        SbxCounter *release_waits;         /* reason */
        SbxCounter *txn_conflicts;         /* op */
        SbxCounter *txn_retries_exhausted; /* op */
        SbxCounter *reconcile_actions;     /* action */
        SbxGauge *reconcile_in_flight;
        SbxGauge *reconcile_queue;
        SbxCounter *leader_changes;
        SbxGauge *leader;
        SbxGauge *sandboxes;        /* state, region */
        SbxGauge *nodes;            /* region, state */
        SbxGauge *capacity_memory;  /* region */
        SbxGauge *allocated_memory; /* region */
        SbxGauge *capacity_slots;   /* region */
        SbxGauge *allocated_slots;  /* region */
        SbxHistogram *create_wait;  /* result */
} SchedMetrics;

typedef struct SchedReconciler SchedReconciler;
typedef struct CreateOp CreateOp;
typedef struct SchedWrite SchedWrite;

typedef struct Scheduler {
        SchedConfig cfg;
        uv_loop_t *loop;
        SbxRpc *rpc;
        SbxEtcd *etcd;
        SchedState *state;
        SbxMetrics *metrics;
        SchedMetrics m;
        SbxMetricsServer *metrics_server;
        SbxRpcServer *server;
        SbxClusterKey key;
        char *identity;
        SbxEtcdLease *lease;
        SbxEtcdElection *election;
        uv_timer_t leader_retry;
        bool leader_retry_init;
        SchedReconciler *reconciler;
        /* Create calls waiting for their sandbox to run: id → list (sched-create.c). */
        SbxHashmap *waiters;
        /* Create calls waiting for their org's Txn in flight: org → line (sched-create.c). */
        SbxHashmap *org_lines;
        /* Create calls waiting for quota or capacity that stopping sandboxes give back
         * (sched-create.c). */
        TAILQ_HEAD(, CreateOp) releases;
        uint64_t seed;
        /* Record writes not finished yet (sched-commit.c), and how many. */
        LIST_HEAD(, SchedWrite) writes;
        unsigned inflight;
        bool stopping;
} Scheduler;

/* ---- auth (sched-auth.c) ---- */

typedef struct SchedCaller {
        /* Organization of a user token; empty for admin tokens. */
        char org[64];
        bool admin;
} SchedCaller;

/* Authenticates the call's bearer token. On failure the call has been answered (UNAUTHENTICATED
 * or PERMISSION_DENIED) and a negative error is returned. */
int sched_auth(Scheduler *s, SbxRpcServerCall *call, bool need_admin, SchedCaller *ret);
/* The hash under which a token is stored: hex SHA-256. */
void sched_token_hash(const char *token, char out[65]);
/* Registers the bootstrap admin token from cfg.admin_token_file (creating the file if missing). */
int sched_auth_bootstrap(Scheduler *s, void (*done)(Scheduler *s, int error), void *unused);

/* ---- records and usage (sched-commit.c) ---- */

/* Writes the reconciler starts: shutdown does not wait for them, since whoever leads next repeats
 * whatever they did not finish (each is idempotent, guarded by the record's mod revision). */
#define SCHED_WRITE_DROPPABLE 1u

/* Changes a record with a Txn guarded by its mod revision. `mutate` edits a private copy and
 * returns false when no write is needed. Conflicts are retried a few times against the mirror.
 * `done` (optional) gets 0, -ENOENT, -ECANCELED (shutdown), or the last error; it may run before
 * this returns. Returns -ENOMEM (and `done` does not run). */
typedef bool (*SchedRecordMutate)(Sbx__V1__SandboxRecord *rec, void *userdata);
int sched_record_update(Scheduler *s, const char *id, unsigned flags, SchedRecordMutate mutate,
                        void *userdata, void (*done)(Scheduler *s, int error, void *userdata),
                        void *done_userdata);

/* Ends a sandbox: records its final state and end time, deletes its assignment, and — exactly once,
 * guarded by quota_held — gives back its org and node usage, all in one Txn. `done` as above. */
int sched_finalize(Scheduler *s, const char *id, unsigned flags, Sbx__V1__SandboxState final,
                   const char *reason, void (*done)(Scheduler *s, int error, void *userdata),
                   void *userdata);

/* Sandbox GC after the retention period: record, status and secrets (the assignment went at
 * finalization), if the record is unchanged. `done` as above; -ENOENT when the mirror has no such
 * sandbox. */
int sched_forget(Scheduler *s, const char *id, unsigned flags,
                 void (*done)(Scheduler *s, int error, void *userdata), void *userdata);

/* For shutdown: the writes not yet finished that it must wait for, and the etcd requests in flight
 * other than the droppable writes' own. */
void sched_writes_pending(Scheduler *s, unsigned *ret_writes, size_t *ret_requests);
/* Once the etcd client is freed (so no Txn result can come back): ends every write still pending
 * with -ECANCELED and frees it. */
void sched_writes_cancel_all(Scheduler *s);

/* ---- the API view (sched-view.c) ---- */

/* Fills `out` from the mirror; strings borrow from the mirror (valid until the loop runs again). */
void sched_view_sandbox(Scheduler *s, const SchedSandbox *sb, Sbx__V1__Sandbox *out);
/* Mints the data-plane access token of a sandbox (malloc'ed). */
int sched_access_token(Scheduler *s, const SchedSandbox *sb, char **ret);
/* Comma-separated regions with a live node ("ams, ord"); malloc'ed. */
char *sched_known_regions(Scheduler *s);
bool sched_region_known(const char *region, void *userdata);

/* ---- handlers ---- */

int sched_api_sandboxes_register(Scheduler *s, SbxRpcServer *server);
int sched_api_admin_register(Scheduler *s, SbxRpcServer *server);
/* Create (sched-create.c), and its waiting side: wakes waiters when the mirror changes. */
int sched_create_register(Scheduler *s, SbxRpcServer *server, const SbxRpcMethod *m);
void sched_create_on_change(Scheduler *s, const char *id);
/* Quota or capacity came back (a usage key changed): the Creates waiting for it try again. */
void sched_create_on_release(Scheduler *s, SchedChange what, const char *name);

/* ---- attachments (sched-attach.c) ---- */

int sched_attach_start(Scheduler *s, SbxRpcServerCall *call, const SchedCaller *caller, const char *id);
void sched_attach_done(SbxRpcServerCall *call, bool cancelled, void *userdata);

/* ---- reconciler and leadership (sched-reconcile.c) ---- */

int sched_reconciler_new(Scheduler *s, SchedReconciler **ret);
SchedReconciler *sched_reconciler_free(SchedReconciler *r);
void sched_reconciler_set_leader(SchedReconciler *r, bool leader);

/* Campaigns for leadership (sched-leader.c); stop resigns, free releases the lease. */
void sched_leader_start(Scheduler *s);
void sched_leader_stop(Scheduler *s);
void sched_leader_free(Scheduler *s);

/* ---- metrics (sched-metrics.c) ---- */

int sched_metrics_register(Scheduler *s);
