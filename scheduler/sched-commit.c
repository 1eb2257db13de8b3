/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes to sandbox records, each guarded by the mod revision the decision was made on: record
 * updates (desired state, stop time), finalization (the one place quota is given back) and GC.
 *
 * Quota is released exactly once because the release happens in the same Txn that clears
 * quota_held, and that Txn only commits if the record is unchanged since it was read: of two
 * replicas racing to finalize, one commits and the other sees a record that no longer holds quota.
 *
 * Every write in flight is on the scheduler's list, so shutdown can tell the writes it must wait
 * for (a caller's Delete, a cancelled Create's stop) from those it may drop (the reconciler's,
 * which the next leader repeats), and can end the rest once the etcd client is gone.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log/log.h"
#include "common/store/store.h"
#include "scheduler/sched.h"

#define UPDATE_ATTEMPTS 6
#define RETRY_MS        15
/* How long a committed update waits for the mirror to show it, at most. */
#define MIRROR_WAIT_MS 2000

typedef enum WriteKind {
        WRITE_UPDATE,
        WRITE_FINALIZE,
        WRITE_FORGET,
} WriteKind;

/* What every write has; the kinds below embed it first. */
struct SchedWrite {
        Scheduler *s;
        LIST_ENTRY(SchedWrite) link;
        WriteKind kind;
        char *id;
        unsigned flags;
        void (*done)(Scheduler *s, int error, void *userdata);
        void *userdata;
        unsigned attempts;
        /* An etcd request of this write is in flight (each write has at most one). */
        bool txn_in_flight;
        /* A committed update waits for the mirror to show it (see update_txn_done). */
        SchedStateWait *mirror_wait;
        bool finished;
        uv_timer_t timer;
};

typedef struct Update {
        SchedWrite w;
        SchedRecordMutate mutate;
        void *mutate_userdata;
} Update;

typedef struct Finalize {
        SchedWrite w;
        Sbx__V1__SandboxState final;
        char *reason;
        /* The usage values a committing Txn writes, to teach the mirror's overlay (SchedUsage). */
        bool releases;
        char node[SBX_KEY_NAME_MAX + 1];
        SchedUsage put_org, put_node;
} Finalize;

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

/* ---- the list of writes ---- */

static void write_closed(uv_handle_t *h)
{
        SchedWrite *w = h->data;
        if (w->kind == WRITE_FINALIZE)
                free(((Finalize *)w)->reason);
        free(w->id);
        free(w);
}

/* Reports the result (once) and releases the write. */
static void write_finish(SchedWrite *w, int error)
{
        if (w->finished)
                return;
        w->finished = true;
        if (w->mirror_wait)
                sched_state_wait_cancel(w->s->state, w->mirror_wait);
        w->mirror_wait = NULL;
        LIST_REMOVE(w, link);
        w->s->inflight--;
        if (w->done)
                w->done(w->s, error, w->userdata);
        uv_close((uv_handle_t *)&w->timer, write_closed);
}

static int write_new(Scheduler *s, size_t size, WriteKind kind, const char *id, unsigned flags,
                     void (*done)(Scheduler *s, int error, void *userdata), void *userdata, SchedWrite **ret)
{
        SchedWrite *w = calloc(1, size);
        if (!w)
                return -ENOMEM;
        w->id = strdup(id);
        if (!w->id) {
                free(w);
                return -ENOMEM;
        }
        w->s = s;
        w->kind = kind;
        w->flags = flags;
        w->done = done;
        w->userdata = userdata;
        uv_timer_init(s->loop, &w->timer);
        w->timer.data = w;
        LIST_INSERT_HEAD(&s->writes, w, link);
        s->inflight++;
        *ret = w;
        return 0;
}

static int write_commit(SchedWrite *w, SbxEtcdTxn *t, SbxEtcdTxnCallback cb)
{
        int r = sbx_etcd_txn_commit(w->s->etcd, t, cb, w);
        if (r >= 0)
                w->txn_in_flight = true;
        return r;
}

void sched_writes_pending(Scheduler *s, unsigned *ret_writes, size_t *ret_requests)
{
        unsigned writes = 0;
        size_t dropped = 0, pending = sbx_etcd_pending(s->etcd);
        SchedWrite *w;

        LIST_FOREACH (w, &s->writes, link) {
                if (!(w->flags & SCHED_WRITE_DROPPABLE))
                        writes++;
                else if (w->txn_in_flight)
                        dropped++;
        }
        *ret_writes = writes;
        *ret_requests = pending > dropped ? pending - dropped : 0;
}

void sched_writes_cancel_all(Scheduler *s)
{
        SchedWrite *w;
        while ((w = LIST_FIRST(&s->writes))) {
                uv_timer_stop(&w->timer);
                write_finish(w, -ECANCELED);
        }
}

/* ---- record updates ---- */

static void update_attempt(Update *u);

static void update_retry(uv_timer_t *t)
{
        update_attempt(t->data);
}

static void update_mirrored(int error, void *userdata)
{
        Update *u = userdata;
        u->w.mirror_wait = NULL;
        write_finish(&u->w, error == -ECANCELED ? error : 0);
}

static void update_mirror_late(uv_timer_t *t)
{
        /* The write is committed; a watch that lags this much is not the caller's problem. */
        write_finish(t->data, 0);
}

static void update_txn_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        Update *u = userdata;

        u->w.txn_in_flight = false;
        if (error >= 0 && r->succeeded) {
                /* Done once this replica's mirror shows the change, so that the caller's next call
                 * sees it (a Delete's caller sees the sandbox stopping, and its next Create waits
                 * for the quota that stop gives back). */
                int64_t rev = r->header ? r->header->revision : 0;
                if (sched_state_wait_revision(u->w.s->state, rev, update_mirrored, u, &u->w.mirror_wait) < 0)
                        write_finish(&u->w, 0);
                else
                        uv_timer_start(&u->w.timer, update_mirror_late, MIRROR_WAIT_MS, 0);
                return;
        }
        if (error >= 0) {
                /* Someone changed the record first: retry on the mirror once it caught up. */
                sbx_counter_inc(u->w.s->m.txn_conflicts, SBX_LABELS("record_update"));
                if (++u->w.attempts < UPDATE_ATTEMPTS) {
                        uv_timer_start(&u->w.timer, update_retry, RETRY_MS * u->w.attempts, 0);
                        return;
                }
                sbx_counter_inc(u->w.s->m.txn_retries_exhausted, SBX_LABELS("record_update"));
                error = -SBX_E_ABORTED;
        }
        write_finish(&u->w, error);
}

static void update_attempt(Update *u)
{
        Scheduler *s = u->w.s;
        SchedSandbox *sb = sched_state_sandbox(s->state, u->w.id);
        Sbx__V1__SandboxRecord *copy = NULL;
        _cleanup_free_ char *key = NULL;
        _cleanup_free_ uint8_t *value = NULL;
        SbxEtcdTxn *t = NULL;
        size_t n;
        int r;

        if (!sb || !sb->record) {
                write_finish(&u->w, -ENOENT);
                return;
        }
        r = record_copy(sb->record, &copy);
        if (r < 0) {
                write_finish(&u->w, r);
                return;
        }
        if (!u->mutate(copy, u->mutate_userdata)) {
                protobuf_c_message_free_unpacked(&copy->base, NULL);
                write_finish(&u->w, 0);
                return;
        }
        r = sbx_store_pack(&copy->base, &value, &n);
        protobuf_c_message_free_unpacked(&copy->base, NULL);
        if (r >= 0)
                r = sbx_key_new(&key, SBX_KEY_SANDBOXES "%s", u->w.id);
        if (r >= 0)
                r = sbx_etcd_txn_new(&t);
        if (r >= 0) {
                sbx_etcd_txn_compare_mod_revision(t, key, SBX_ETCD_EQUAL, sb->record_rev);
                sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, key, value, n, 0);
                r = write_commit(&u->w, t, update_txn_done);
        }
        if (r < 0)
                write_finish(&u->w, r);
}

int sched_record_update(Scheduler *s, const char *id, unsigned flags, SchedRecordMutate mutate,
                        void *userdata, void (*done)(Scheduler *s, int error, void *userdata),
                        void *done_userdata)
{
        SchedWrite *w;
        int r = write_new(s, sizeof(Update), WRITE_UPDATE, id, flags, done, done_userdata, &w);
        if (r < 0)
                return r;
        Update *u = (Update *)w;
        u->mutate = mutate;
        u->mutate_userdata = userdata;
        update_attempt(u);
        return 0;
}

/* ---- finalization ---- */

static void finalize_attempt(Finalize *f);

static void finalize_retry(uv_timer_t *t)
{
        finalize_attempt(t->data);
}

static void finalize_txn_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        Finalize *f = userdata;
        Scheduler *s = f->w.s;

        f->w.txn_in_flight = false;
        if (error >= 0 && !r->succeeded) {
                sbx_counter_inc(s->m.txn_conflicts, SBX_LABELS("finalize"));
                if (++f->w.attempts < UPDATE_ATTEMPTS) {
                        uv_timer_start(&f->w.timer, finalize_retry, RETRY_MS * f->w.attempts, 0);
                        return;
                }
                sbx_counter_inc(s->m.txn_retries_exhausted, SBX_LABELS("finalize"));
                error = -SBX_E_ABORTED;
        }
        if (error >= 0) {
                int64_t rev = r->header ? r->header->revision : 0;
                if (f->releases) {
                        /* The usage keys hold what the Txn wrote: the next Create or finalization on
                         * them need not wait for the watch to learn it. */
                        SchedOrg *o = NULL;
                        SchedSandbox *sb = sched_state_sandbox(s->state, f->w.id);
                        if (sb && sb->record)
                                o = sched_state_org(s->state, sb->record->org);
                        SchedNode *n = sched_state_node(s->state, f->node);
                        if (o)
                                sched_usage_learn(&o->known, f->put_org.memory_mb, 0, f->put_org.count, rev);
                        if (n)
                                sched_usage_learn(&n->known, f->put_node.memory_mb, f->put_node.vcpus,
                                                  f->put_node.count, rev);
                }
                sbx_counter_inc(s->m.reconcile_actions, SBX_LABELS("finalize"));
                const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
                        &sbx__v1__sandbox_state__descriptor, (int)f->final);
                log_info_fields(LOG_FIELDS({ "sandbox", f->w.id }), "Sandbox ended: %s (%s)",
                                v ? v->name + strlen("SANDBOX_STATE_") : "?",
                                f->reason ? f->reason : "no reason given");
        }
        write_finish(&f->w, error);
}

static int add_usage_release(Finalize *f, SbxEtcdTxn *t, const Sbx__V1__SandboxRecord *rec)
{
        Scheduler *s = f->w.s;
        _cleanup_free_ char *org_key = NULL, *node_key = NULL;
        _cleanup_free_ uint8_t *org_value = NULL, *node_value = NULL;
        SchedOrg *o = sched_state_org(s->state, rec->org);
        SchedNode *n = sched_state_node(s->state, rec->node);
        /* The freshest values known: a Create of this replica may have just changed them. */
        SchedUsage ou_now = o ? sched_org_usage(o) : (SchedUsage){ 0 };
        SchedUsage nu_now = n ? sched_node_usage(n) : (SchedUsage){ 0 };
        Sbx__V1__OrgUsage ou = SBX__V1__ORG_USAGE__INIT;
        Sbx__V1__NodeUsage nu = SBX__V1__NODE_USAGE__INIT;
        Sbx__V1__Resources res = SBX__V1__RESOURCES__INIT;
        uint64_t mem = rec->spec ? rec->spec->memory_mb : 0;
        uint32_t vcpus = rec->spec ? rec->spec->vcpus : 0;
        size_t on, nn;
        int r;

        ou.sandboxes = ou_now.count > 0 ? ou_now.count - 1 : 0;
        ou.memory_mb = ou_now.memory_mb > mem ? ou_now.memory_mb - mem : 0;
        res.memory_mb = nu_now.memory_mb > mem ? nu_now.memory_mb - mem : 0;
        res.vcpus = nu_now.vcpus > vcpus ? nu_now.vcpus - vcpus : 0;
        res.slots = nu_now.count > 0 ? nu_now.count - 1 : 0;
        nu.allocated = &res;
        if ((r = sbx_key_new(&org_key, SBX_KEY_USAGE_ORGS "%s", rec->org)) < 0 ||
            (r = sbx_key_new(&node_key, SBX_KEY_USAGE_NODES "%s", rec->node)) < 0 ||
            (r = sbx_store_pack(&ou.base, &org_value, &on)) < 0 ||
            (r = sbx_store_pack(&nu.base, &node_value, &nn)) < 0)
                return r;
        sbx_etcd_txn_compare_mod_revision(t, org_key, SBX_ETCD_EQUAL, ou_now.rev);
        sbx_etcd_txn_compare_mod_revision(t, node_key, SBX_ETCD_EQUAL, nu_now.rev);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, org_key, org_value, on, 0);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, node_key, node_value, nn, 0);
        f->releases = true;
        snprintf(f->node, sizeof(f->node), "%s", rec->node);
        f->put_org = (SchedUsage){ .memory_mb = ou.memory_mb, .count = ou.sandboxes };
        f->put_node = (SchedUsage){ .memory_mb = res.memory_mb, .vcpus = res.vcpus, .count = res.slots };
        return 0;
}

static void finalize_attempt(Finalize *f)
{
        Scheduler *s = f->w.s;
        SchedSandbox *sb = sched_state_sandbox(s->state, f->w.id);
        Sbx__V1__SandboxRecord *copy = NULL;
        _cleanup_free_ char *key = NULL, *assign = NULL;
        _cleanup_free_ uint8_t *value = NULL;
        SbxEtcdTxn *t = NULL;
        bool held;
        size_t n;
        int r;

        f->releases = false;
        if (!sb || !sb->record) {
                write_finish(&f->w, -ENOENT);
                return;
        }
        if (sched_sandbox_ended(sb)) {
                write_finish(&f->w, 0); /* someone else finished it */
                return;
        }
        r = record_copy(sb->record, &copy);
        if (r < 0) {
                write_finish(&f->w, r);
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
                r = sbx_key_new(&key, SBX_KEY_SANDBOXES "%s", f->w.id);
        if (r >= 0)
                r = sbx_key_new(&assign, SBX_KEY_ASSIGN "%s/%s", copy->node, f->w.id);
        if (r >= 0)
                r = sbx_etcd_txn_new(&t);
        if (r >= 0) {
                sbx_etcd_txn_compare_mod_revision(t, key, SBX_ETCD_EQUAL, sb->record_rev);
                sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, key, value, n, 0);
                sbx_etcd_txn_delete(t, SBX_ETCD_SUCCESS, assign, false);
                if (held)
                        r = add_usage_release(f, t, sb->record);
                if (r >= 0)
                        r = write_commit(&f->w, t, finalize_txn_done);
                else
                        sbx_etcd_txn_free(t);
        }
        protobuf_c_message_free_unpacked(&copy->base, NULL);
        if (r < 0)
                write_finish(&f->w, r);
}

int sched_finalize(Scheduler *s, const char *id, unsigned flags, Sbx__V1__SandboxState final,
                   const char *reason, void (*done)(Scheduler *s, int error, void *userdata), void *userdata)
{
        SchedWrite *w;
        char *copy = NULL;
        int r;

        if (reason && !(copy = strdup(reason)))
                return -ENOMEM;
        r = write_new(s, sizeof(Finalize), WRITE_FINALIZE, id, flags, done, userdata, &w);
        if (r < 0) {
                free(copy);
                return r;
        }
        Finalize *f = (Finalize *)w;
        f->final = final;
        f->reason = copy;
        finalize_attempt(f);
        return 0;
}

/* ---- GC ---- */

static void forget_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        SchedWrite *w = userdata;

        w->txn_in_flight = false;
        if (error >= 0 && r->succeeded)
                sbx_counter_inc(w->s->m.reconcile_actions, SBX_LABELS("gc"));
        /* A lost compare means the record changed: whoever looks at it next decides again. */
        write_finish(w, error);
}

int sched_forget(Scheduler *s, const char *id, unsigned flags,
                 void (*done)(Scheduler *s, int error, void *userdata), void *userdata)
{
        SchedSandbox *sb = sched_state_sandbox(s->state, id);
        _cleanup_free_ char *rec = NULL, *status = NULL, *secrets = NULL;
        SchedWrite *w;
        SbxEtcdTxn *t;
        int r;

        if (!sb)
                return -ENOENT;
        if ((r = sbx_key_new(&rec, SBX_KEY_SANDBOXES "%s", id)) < 0 ||
            (r = sbx_key_new(&status, SBX_KEY_STATUS "%s", id)) < 0 ||
            (r = sbx_key_new(&secrets, SBX_KEY_SECRETS "%s", id)) < 0 || (r = sbx_etcd_txn_new(&t)) < 0)
                return r;
        r = write_new(s, sizeof(SchedWrite), WRITE_FORGET, id, flags, done, userdata, &w);
        if (r < 0) {
                sbx_etcd_txn_free(t);
                return r;
        }
        /* Only a record still ended and unchanged is forgotten. */
        if (sb->record)
                sbx_etcd_txn_compare_mod_revision(t, rec, SBX_ETCD_EQUAL, sb->record_rev);
        sbx_etcd_txn_delete(t, SBX_ETCD_SUCCESS, rec, false);
        sbx_etcd_txn_delete(t, SBX_ETCD_SUCCESS, status, false);
        sbx_etcd_txn_delete(t, SBX_ETCD_SUCCESS, secrets, false);
        r = write_commit(w, t, forget_done);
        if (r < 0)
                write_finish(w, r);
        return 0;
}
