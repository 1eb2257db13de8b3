/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes to sandbox records, each guarded by the mod revision the decision was made on: record
 * updates (desired state, stop time), finalization (the one place quota is given back) and GC.
 *
 * Quota is released exactly once because the release happens in the same Txn that clears
 * quota_held, and that Txn only commits if the record is unchanged since it was read: of two
 * replicas racing to finalize, one commits and the other sees a record that no longer holds quota.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log/log.h"
#include "common/store/store.h"
#include "scheduler/sched.h"

#define UPDATE_ATTEMPTS 6
#define RETRY_MS        15

/* A private, mutable copy of a record (pack + unpack: simple and exact). */
static int record_copy(const Sbx__V1__SandboxRecord *r, Sbx__V1__SandboxRecord **ret)
{
        _cleanup_free_ uint8_t *p = NULL;
        size_t n;
        int k = sbx_store_pack(&r->base, &p, &n);
        if (k < 0)
                return k;
        return sbx_store_unpack(&sbx__v1__sandbox_record__descriptor, p, n, (ProtobufCMessage **)ret);
}

/* ---- record updates ---- */

typedef struct Update {
        Scheduler *s;
        char *id;
        SchedRecordMutate mutate;
        void *userdata;
        void (*done)(Scheduler *s, int error, void *userdata);
        void *done_userdata;
        unsigned attempts;
        uv_timer_t timer;
} Update;

static void update_attempt(Update *u);

static void update_closed(uv_handle_t *h)
{
        Update *u = h->data;
        u->s->inflight--;
        free(u->id);
        free(u);
}

static void update_finish(Update *u, int error)
{
        if (u->done)
                u->done(u->s, error, u->done_userdata);
        uv_close((uv_handle_t *)&u->timer, update_closed);
}

static void update_retry(uv_timer_t *t)
{
        update_attempt(t->data);
}

static void update_txn_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        Update *u = userdata;

        if (error >= 0 && r->succeeded) {
                update_finish(u, 0);
                return;
        }
        if (error >= 0) {
                /* Someone changed the record first: retry on the mirror once it caught up. */
                sbx_counter_inc(u->s->m.txn_conflicts, SBX_LABELS("record_update"));
                if (++u->attempts < UPDATE_ATTEMPTS) {
                        uv_timer_start(&u->timer, update_retry, RETRY_MS * u->attempts, 0);
                        return;
                }
                sbx_counter_inc(u->s->m.txn_retries_exhausted, SBX_LABELS("record_update"));
                error = -SBX_E_ABORTED;
        }
        update_finish(u, error);
}

static void update_attempt(Update *u)
{
        SchedSandbox *sb = sched_state_sandbox(u->s->state, u->id);
        Sbx__V1__SandboxRecord *copy = NULL;
        _cleanup_free_ char *key = NULL;
        _cleanup_free_ uint8_t *value = NULL;
        SbxEtcdTxn *t = NULL;
        size_t n;
        int r;

        if (!sb || !sb->record) {
                update_finish(u, -ENOENT);
                return;
        }
        r = record_copy(sb->record, &copy);
        if (r < 0) {
                update_finish(u, r);
                return;
        }
        if (!u->mutate(copy, u->userdata)) {
                protobuf_c_message_free_unpacked(&copy->base, NULL);
                update_finish(u, 0);
                return;
        }
        r = sbx_store_pack(&copy->base, &value, &n);
        protobuf_c_message_free_unpacked(&copy->base, NULL);
        if (r >= 0)
                r = sbx_key_new(&key, SBX_KEY_SANDBOXES "%s", u->id);
        if (r >= 0)
                r = sbx_etcd_txn_new(&t);
        if (r >= 0) {
                sbx_etcd_txn_compare_mod_revision(t, key, SBX_ETCD_EQUAL, sb->record_rev);
                sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, key, value, n, 0);
                r = sbx_etcd_txn_commit(u->s->etcd, t, update_txn_done, u);
        }
        if (r < 0)
                update_finish(u, r);
}

int sched_record_update(Scheduler *s, const char *id, SchedRecordMutate mutate, void *userdata,
                        void (*done)(Scheduler *s, int error, void *userdata), void *done_userdata)
{
        Update *u = calloc(1, sizeof(Update));
        if (!u)
                return -ENOMEM;
        u->id = strdup(id);
        if (!u->id) {
                free(u);
                return -ENOMEM;
        }
        u->s = s;
        u->mutate = mutate;
        u->userdata = userdata;
        u->done = done;
        u->done_userdata = done_userdata;
        s->inflight++;
        uv_timer_init(s->loop, &u->timer);
        u->timer.data = u;
        update_attempt(u);
        return 0;
}

/* ---- finalization ---- */

typedef struct Finalize {
        Scheduler *s;
        char *id;
        Sbx__V1__SandboxState final;
        char *reason;
        void (*done)(Scheduler *s, int error, void *userdata);
        void *userdata;
        unsigned attempts;
        uv_timer_t timer;
} Finalize;

static void finalize_attempt(Finalize *f);

static void finalize_closed(uv_handle_t *h)
{
        Finalize *f = h->data;
        f->s->inflight--;
        free(f->id);
        free(f->reason);
        free(f);
}

static void finalize_finish(Finalize *f, int error)
{
        if (f->done)
                f->done(f->s, error, f->userdata);
        uv_close((uv_handle_t *)&f->timer, finalize_closed);
}

static void finalize_retry(uv_timer_t *t)
{
        finalize_attempt(t->data);
}

static void finalize_txn_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        Finalize *f = userdata;

        if (error >= 0 && !r->succeeded) {
                sbx_counter_inc(f->s->m.txn_conflicts, SBX_LABELS("finalize"));
                if (++f->attempts < UPDATE_ATTEMPTS) {
                        uv_timer_start(&f->timer, finalize_retry, RETRY_MS * f->attempts, 0);
                        return;
                }
                sbx_counter_inc(f->s->m.txn_retries_exhausted, SBX_LABELS("finalize"));
                error = -SBX_E_ABORTED;
        }
        if (error >= 0) {
                sbx_counter_inc(f->s->m.reconcile_actions, SBX_LABELS("finalize"));
                const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
                        &sbx__v1__sandbox_state__descriptor, (int)f->final);
                log_info_fields(LOG_FIELDS({ "sandbox", f->id }), "Sandbox ended: %s (%s)",
                                v ? v->name + strlen("SANDBOX_STATE_") : "?",
                                f->reason ? f->reason : "no reason given");
        }
        finalize_finish(f, error);
}

static int add_usage_release(Scheduler *s, SbxEtcdTxn *t, const Sbx__V1__SandboxRecord *rec)
{
        _cleanup_free_ char *org_key = NULL, *node_key = NULL;
        _cleanup_free_ uint8_t *org_value = NULL, *node_value = NULL;
        SchedOrg *o = sched_state_org(s->state, rec->org);
        SchedNode *n = sched_state_node(s->state, rec->node);
        Sbx__V1__OrgUsage ou = SBX__V1__ORG_USAGE__INIT;
        Sbx__V1__NodeUsage nu = SBX__V1__NODE_USAGE__INIT;
        Sbx__V1__Resources res = SBX__V1__RESOURCES__INIT;
        uint64_t mem = rec->spec ? rec->spec->memory_mb : 0;
        uint32_t vcpus = rec->spec ? rec->spec->vcpus : 0;
        size_t on, nn;
        int r;

        if (o && o->usage) {
                ou.sandboxes = o->usage->sandboxes > 0 ? o->usage->sandboxes - 1 : 0;
                ou.memory_mb = o->usage->memory_mb > mem ? o->usage->memory_mb - mem : 0;
        }
        if (n && n->usage && n->usage->allocated) {
                const Sbx__V1__Resources *a = n->usage->allocated;
                res.memory_mb = a->memory_mb > mem ? a->memory_mb - mem : 0;
                res.vcpus = a->vcpus > vcpus ? a->vcpus - vcpus : 0;
                res.slots = a->slots > 0 ? a->slots - 1 : 0;
        }
        nu.allocated = &res;
        if ((r = sbx_key_new(&org_key, SBX_KEY_USAGE_ORGS "%s", rec->org)) < 0 ||
            (r = sbx_key_new(&node_key, SBX_KEY_USAGE_NODES "%s", rec->node)) < 0 ||
            (r = sbx_store_pack(&ou.base, &org_value, &on)) < 0 ||
            (r = sbx_store_pack(&nu.base, &node_value, &nn)) < 0)
                return r;
        sbx_etcd_txn_compare_mod_revision(t, org_key, SBX_ETCD_EQUAL, o ? o->usage_rev : 0);
        sbx_etcd_txn_compare_mod_revision(t, node_key, SBX_ETCD_EQUAL, n ? n->usage_rev : 0);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, org_key, org_value, on, 0);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, node_key, node_value, nn, 0);
        return 0;
}

static void finalize_attempt(Finalize *f)
{
        SchedSandbox *sb = sched_state_sandbox(f->s->state, f->id);
        Sbx__V1__SandboxRecord *copy = NULL;
        _cleanup_free_ char *key = NULL, *assign = NULL;
        _cleanup_free_ uint8_t *value = NULL;
        SbxEtcdTxn *t = NULL;
        bool held;
        size_t n;
        int r;

        if (!sb || !sb->record) {
                finalize_finish(f, -ENOENT);
                return;
        }
        if (sched_sandbox_ended(sb)) {
                finalize_finish(f, 0); /* someone else finished it */
                return;
        }
        r = record_copy(sb->record, &copy);
        if (r < 0) {
                finalize_finish(f, r);
                return;
        }
        held = copy->quota_held;
        copy->final_state = f->final;
        copy->ended_at_ms = sbx_now_ms();
        copy->desired = SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED;
        copy->quota_held = false;
        if (f->reason && (!copy->stop_reason || !*copy->stop_reason)) {
                if (copy->stop_reason != protobuf_c_empty_string)
                        free(copy->stop_reason);
                copy->stop_reason = strdup(f->reason);
        }
        r = sbx_store_pack(&copy->base, &value, &n);
        if (r >= 0)
                r = sbx_key_new(&key, SBX_KEY_SANDBOXES "%s", f->id);
        if (r >= 0)
                r = sbx_key_new(&assign, SBX_KEY_ASSIGN "%s/%s", copy->node, f->id);
        if (r >= 0)
                r = sbx_etcd_txn_new(&t);
        if (r >= 0) {
                sbx_etcd_txn_compare_mod_revision(t, key, SBX_ETCD_EQUAL, sb->record_rev);
                sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, key, value, n, 0);
                sbx_etcd_txn_delete(t, SBX_ETCD_SUCCESS, assign, false);
                if (held)
                        r = add_usage_release(f->s, t, sb->record);
                if (r >= 0)
                        r = sbx_etcd_txn_commit(f->s->etcd, t, finalize_txn_done, f);
                else
                        sbx_etcd_txn_free(t);
        }
        protobuf_c_message_free_unpacked(&copy->base, NULL);
        if (r < 0)
                finalize_finish(f, r);
}

int sched_finalize(Scheduler *s, const char *id, Sbx__V1__SandboxState final, const char *reason,
                   void (*done)(Scheduler *s, int error, void *userdata), void *userdata)
{
        Finalize *f = calloc(1, sizeof(Finalize));
        if (!f)
                return -ENOMEM;
        f->id = strdup(id);
        f->reason = reason ? strdup(reason) : NULL;
        if (!f->id || (reason && !f->reason)) {
                free(f->id);
                free(f->reason);
                free(f);
                return -ENOMEM;
        }
        f->s = s;
        f->final = final;
        f->done = done;
        f->userdata = userdata;
        s->inflight++;
        uv_timer_init(s->loop, &f->timer);
        f->timer.data = f;
        finalize_attempt(f);
        return 0;
}

/* ---- GC ---- */

static void forget_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        Scheduler *s = userdata;
        if (error >= 0 && r->succeeded)
                sbx_counter_inc(s->m.reconcile_actions, SBX_LABELS("gc"));
}

int sched_forget(Scheduler *s, const char *id)
{
        SchedSandbox *sb = sched_state_sandbox(s->state, id);
        _cleanup_free_ char *rec = NULL, *status = NULL, *secrets = NULL;
        SbxEtcdTxn *t;
        int r;

        if (!sb)
                return -ENOENT;
        if ((r = sbx_key_new(&rec, SBX_KEY_SANDBOXES "%s", id)) < 0 ||
            (r = sbx_key_new(&status, SBX_KEY_STATUS "%s", id)) < 0 ||
            (r = sbx_key_new(&secrets, SBX_KEY_SECRETS "%s", id)) < 0 || (r = sbx_etcd_txn_new(&t)) < 0)
                return r;
        /* Only a record still ended and unchanged is forgotten. */
        if (sb->record)
                sbx_etcd_txn_compare_mod_revision(t, rec, SBX_ETCD_EQUAL, sb->record_rev);
        sbx_etcd_txn_delete(t, SBX_ETCD_SUCCESS, rec, false);
        sbx_etcd_txn_delete(t, SBX_ETCD_SUCCESS, status, false);
        sbx_etcd_txn_delete(t, SBX_ETCD_SUCCESS, secrets, false);
        return sbx_etcd_txn_commit(s->etcd, t, forget_done, s);
}
