/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Create: validate, place, commit in one Txn, wait for the agent.
 *
 * The commit compares the org's and the node's usage keys at the mod revisions the decision was
 * made on, the org record (its limits), the node key (still registered) and the sandbox key
 * (absent). If anything moved, the Txn's failure branch returns the current usage values and the
 * next attempt decides on those: no replica and no number of replicas can push an org over its
 * quota or a node over its capacity.
 *
 * On one replica, the Creates of one organization commit one at a time: every such Txn compares
 * the org's usage key, so of two in flight one would lose for nothing, and a busy org would turn
 * its own concurrency into conflicts and ABORTED errors. The others wait in the org's line and go,
 * in order, as soon as the Txn before them is answered, deciding on the usage it wrote (SchedUsage)
 * rather than waiting for the watch. Concurrent Creates also avoid nodes with a placement of this
 * replica in flight (sched-placement.h), for the same reason.
 *
 * An org at its quota, or a region without room, fails the Create at once — unless some of the
 * org's (or region's) sandboxes are being stopped: what they hold comes back within moments, and
 * "kill one, create one" should just work. The Create then waits (up to release-wait) and tries
 * again whenever a usage key changes.
 *
 * Then the call waits — through the state mirror, not a watch of its own — until the agent reports
 * RUNNING. Past the create deadline the sandbox is marked FAILED and its quota released.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"
#include "scheduler/sched-placement.h"
#include "scheduler/sched-validate.h"
#include "scheduler/sched.h"

#define COMMIT_ATTEMPTS 10
#define DISK_MB_DEFAULT 10240

typedef enum CreatePhase {
        CREATE_COMMITTING,
        CREATE_WAITING,
        CREATE_DONE,
} CreatePhase;

/* The Creates of one org waiting for its Txn in flight, first come first served. */
typedef struct OrgLine {
        TAILQ_HEAD(, CreateOp) ops;
} OrgLine;

struct CreateOp {
        Scheduler *s;
        SbxRpcServerCall *call;
        const Sbx__V1__CreateSandboxRequest *req;
        char org[64];
        SchedCreateSpec spec;
        char id[SBX_SANDBOX_ID_LEN + 1];
        CreatePhase phase;
        unsigned attempts;
        bool txn_in_flight;
        bool cancelled;
        int64_t created_ms;
        usec_t started;
        char node[SBX_KEY_NAME_MAX + 1];
        /* The usage values the Txn in flight writes: what the org and the node hold if it commits. */
        SchedUsage put_org, put_node;
        /* Secrets: placeholders for the record, and the sealed values. */
        char **placeholders;
        uint8_t *sealed;
        size_t sealed_len;
        uv_timer_t timer;
        /* In its org's line (Scheduler.org_lines). */
        TAILQ_ENTRY(CreateOp) line_link;
        bool in_line;
        /* Called from the front of the line: the ops behind do not hold it back. */
        bool line_turn;
        /* Waiting for a release (Scheduler.releases), until release_until (monotonic; 0 before
         * the first wait). */
        TAILQ_ENTRY(CreateOp) release_link;
        bool awaiting_release;
        usec_t release_until;
};

static bool create_attempt(CreateOp *op);
static void line_leave(CreateOp *op);
static void release_leave(CreateOp *op);

static void op_closed(uv_handle_t *h)
{
        CreateOp *op = h->data;
        strv_free(op->placeholders);
        free(op->sealed);
        sbx_rpc_server_call_unref(op->call);
        free(op);
}

/* Releases the op once nothing refers to it any more: replied or cancelled, no Txn in flight. */
static void op_maybe_free(CreateOp *op)
{
        if (op->phase != CREATE_DONE || op->txn_in_flight || uv_is_closing((uv_handle_t *)&op->timer))
                return;
        line_leave(op);
        release_leave(op);
        if (sbx_hashmap_get(op->s->waiters, op->id) == op)
                sbx_hashmap_remove(op->s->waiters, op->id);
        sbx_rpc_server_call_set_userdata(op->call, NULL);
        uv_close((uv_handle_t *)&op->timer, op_closed);
}

static void op_fail(CreateOp *op, SbxStatus code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void op_fail(CreateOp *op, SbxStatus code, const char *fmt, ...)
{
        _cleanup_free_ char *m = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        if (op->phase != CREATE_DONE)
                sbx_rpc_server_call_finish(op->call, code, m ? m : "out of memory");
        op->phase = CREATE_DONE;
        uv_timer_stop(&op->timer);
        op_maybe_free(op);
}

static double since(usec_t t)
{
        return (double)(sbx_now_monotonic() - t) / (double)USEC_PER_SEC;
}

/* ---- secrets ---- */

static int seal_secrets(CreateOp *op)
{
        const Sbx__V1__CreateSandboxRequest *req = op->req;
        Sbx__V1__SecretValues values = SBX__V1__SECRET_VALUES__INIT;
        Sbx__V1__SecretValues__Value *items = NULL, **ptrs = NULL;
        Sbx__V1__SealedSecrets sealed = SBX__V1__SEALED_SECRETS__INIT;
        _cleanup_free_ uint8_t *plain = NULL, *cipher = NULL;
        uint8_t key[32], nonce[SBX_AEAD_NONCE_LEN];
        size_t plain_len = 0, cipher_len = 0;
        int r = -ENOMEM;

        if (req->n_secrets == 0)
                return 0;
        items = calloc(req->n_secrets, sizeof(*items));
        ptrs = calloc(req->n_secrets, sizeof(*ptrs));
        if (!items || !ptrs)
                goto done;
        for (size_t i = 0; i < req->n_secrets; i++) {
                char *p = NULL;
                sbx__v1__secret_values__value__init(&items[i]);
                items[i].name = req->secrets[i]->name;
                items[i].value = req->secrets[i]->value;
                ptrs[i] = &items[i];
                if ((r = sbx_random_token("sbx_secret_", 18, &p)) < 0 ||
                    (r = strv_extend(&op->placeholders, p)) < 0) {
                        free(p);
                        goto done;
                }
                free(p);
        }
        values.values = ptrs;
        values.n_values = req->n_secrets;
        if ((r = sbx_store_pack(&values.base, &plain, &plain_len)) < 0)
                goto done;
        /* The sealing key is derived, so the cluster key itself encrypts nothing directly. */
        if ((r = sbx_hkdf_sha256(op->s->key.key, sizeof(op->s->key.key), "sbx secrets v1", key,
                                 sizeof(key))) < 0)
                goto done;
        r = sbx_aead_seal(key, op->id, strlen(op->id), plain, plain_len, nonce, &cipher, &cipher_len);
        sbx_secure_zero(key, sizeof(key));
        if (r < 0)
                goto done;
        sealed.key_id = op->s->key.id;
        sealed.nonce = (ProtobufCBinaryData){ .data = nonce, .len = sizeof(nonce) };
        sealed.ciphertext = (ProtobufCBinaryData){ .data = cipher, .len = cipher_len };
        r = sbx_store_pack(&sealed.base, &op->sealed, &op->sealed_len);
done:
        if (plain)
                sbx_secure_zero(plain, plain_len);
        free(items);
        free(ptrs);
        return r;
}

/* ---- the record ---- */

typedef struct RecordParts {
        Sbx__V1__SandboxRecord rec;
        Sbx__V1__SandboxSpec spec;
        Sbx__V1__SandboxSpec__LabelsEntry *labels;
        Sbx__V1__SandboxSpec__LabelsEntry **label_ptrs;
        Sbx__V1__SecretRef *secrets;
        Sbx__V1__SecretRef **secret_ptrs;
} RecordParts;

static void record_parts_done(RecordParts *p)
{
        free(p->labels);
        free(p->label_ptrs);
        free(p->secrets);
        free(p->secret_ptrs);
}

static int build_record(CreateOp *op, const char *node, int64_t max_lifetime_ms, RecordParts *p)
{
        const Sbx__V1__CreateSandboxRequest *req = op->req;
        size_t nl = req->n_labels, ns = req->n_secrets;

        sbx__v1__sandbox_record__init(&p->rec);
        sbx__v1__sandbox_spec__init(&p->spec);
        p->labels = calloc(nl ? nl : 1, sizeof(*p->labels));
        p->label_ptrs = calloc(nl ? nl : 1, sizeof(*p->label_ptrs));
        p->secrets = calloc(ns ? ns : 1, sizeof(*p->secrets));
        p->secret_ptrs = calloc(ns ? ns : 1, sizeof(*p->secret_ptrs));
        if (!p->labels || !p->label_ptrs || !p->secrets || !p->secret_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < nl; i++) {
                sbx__v1__sandbox_spec__labels_entry__init(&p->labels[i]);
                p->labels[i].key = req->labels[i]->key;
                p->labels[i].value = req->labels[i]->value;
                p->label_ptrs[i] = &p->labels[i];
        }
        for (size_t i = 0; i < ns; i++) {
                sbx__v1__secret_ref__init(&p->secrets[i]);
                p->secrets[i].name = req->secrets[i]->name;
                p->secrets[i].hosts = req->secrets[i]->hosts;
                p->secrets[i].n_hosts = req->secrets[i]->n_hosts;
                p->secrets[i].placeholder = op->placeholders[i];
                p->secret_ptrs[i] = &p->secrets[i];
        }
        p->spec.region = (char *)op->spec.region;
        p->spec.memory_mb = op->spec.memory_mb;
        p->spec.vcpus = op->spec.vcpus;
        p->spec.lifetime_ms = op->spec.lifetime_ms;
        p->spec.session = op->spec.session;
        p->spec.labels = p->label_ptrs;
        p->spec.n_labels = nl;
        p->spec.allow_net = req->allow_net;
        p->spec.secrets = p->secret_ptrs;
        p->spec.n_secrets = ns;
        p->spec.disk_mb = DISK_MB_DEFAULT;

        p->rec.id = op->id;
        p->rec.org = op->org;
        p->rec.node = (char *)node;
        p->rec.spec = &p->spec;
        p->rec.desired = SBX__V1__DESIRED_STATE__DESIRED_STATE_RUNNING;
        p->rec.created_at_ms = op->created_ms;
        if (op->spec.session) {
                /* Until its first Attach: then each heartbeat extends it (sched-attach.c). */
                int64_t first = op->created_ms + (int64_t)(op->s->cfg.attach_timeout / USEC_PER_MSEC);
                p->rec.stop_at_ms = SBX_MIN(first, op->created_ms + max_lifetime_ms);
        } else {
                p->rec.stop_at_ms = op->created_ms + (int64_t)op->spec.lifetime_ms;
        }
        p->rec.quota_held = true;
        return 0;
}

/* ---- commit ---- */

/* A failed Txn's failure branch read the current usage values ([0] org, [1] node): they are
 * newer than the mirror may be, and the next attempt (of this Create or another) decides on them. */
static void take_fresh_usage(CreateOp *op, const Etcdserverpb__TxnResponse *r)
{
        SchedOrg *org = sched_state_org(op->s->state, op->org);
        SchedNode *node = sched_state_node(op->s->state, op->node);

        for (size_t i = 0; i < r->n_responses && i < 2; i++) {
                const Etcdserverpb__ResponseOp *ro = r->responses[i];
                if (ro->response_case != ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE)
                        continue;
                const Etcdserverpb__RangeResponse *rr = ro->response_range;
                const Etcdserverpb__KeyValue *kv = rr->n_kvs > 0 ? rr->kvs[0] : NULL;
                ProtobufCMessage *m = NULL;
                if (!kv)
                        continue;
                if (i == 0 && org &&
                    sbx_store_unpack(&sbx__v1__org_usage__descriptor, kv->value.data, kv->value.len, &m) >=
                            0) {
                        const Sbx__V1__OrgUsage *u = (const Sbx__V1__OrgUsage *)m;
                        sched_usage_learn(&org->known, u->memory_mb, 0, u->sandboxes, kv->mod_revision);
                } else if (i == 1 && node &&
                           sbx_store_unpack(&sbx__v1__node_usage__descriptor, kv->value.data, kv->value.len,
                                            &m) >= 0) {
                        const Sbx__V1__Resources *a = ((const Sbx__V1__NodeUsage *)m)->allocated;
                        sched_usage_learn(&node->known, a ? a->memory_mb : 0, a ? a->vcpus : 0,
                                          a ? a->slots : 0, kv->mod_revision);
                }
                if (m)
                        protobuf_c_message_free_unpacked(m, NULL);
        }
}

/* The Txn committed at `rev`: the usage keys hold what it wrote, whatever the mirror says yet. */
static void take_written_usage(CreateOp *op, int64_t rev)
{
        SchedOrg *org = sched_state_org(op->s->state, op->org);
        SchedNode *node = sched_state_node(op->s->state, op->node);

        if (org)
                sched_usage_learn(&org->known, op->put_org.memory_mb, 0, op->put_org.count, rev);
        if (node)
                sched_usage_learn(&node->known, op->put_node.memory_mb, op->put_node.vcpus,
                                  op->put_node.count, rev);
}

/* ---- the org's line ---- */

static void line_leave(CreateOp *op)
{
        OrgLine *l;

        if (!op->in_line)
                return;
        l = sbx_hashmap_get(op->s->org_lines, op->org);
        TAILQ_REMOVE(&l->ops, op, line_link);
        op->in_line = false;
        if (TAILQ_EMPTY(&l->ops))
                free(sbx_hashmap_remove(op->s->org_lines, op->org));
}

/* Queues the op behind its org's Txn in flight (at the back, or at the front when it was already
 * next). Returns false when out of memory: the op then commits at once and may conflict. */
static bool line_join(CreateOp *op, bool front)
{
        OrgLine *l = sbx_hashmap_get(op->s->org_lines, op->org);

        if (!l) {
                l = calloc(1, sizeof(OrgLine));
                if (!l)
                        return false;
                TAILQ_INIT(&l->ops);
                if (sbx_hashmap_put(op->s->org_lines, op->org, l, NULL) < 0) {
                        free(l);
                        return false;
                }
        }
        if (front)
                TAILQ_INSERT_HEAD(&l->ops, op, line_link);
        else
                TAILQ_INSERT_TAIL(&l->ops, op, line_link);
        op->in_line = true;
        return true;
}

/* The org's Txn was answered: the next in line goes (and the one after, if that one ends without a
 * Txn of its own — over quota, no capacity). */
static void line_next(Scheduler *s, const char *org)
{
        OrgLine *l;

        while ((l = sbx_hashmap_get(s->org_lines, org))) {
                CreateOp *next = TAILQ_FIRST(&l->ops);
                line_leave(next);
                next->line_turn = true;
                bool holds = create_attempt(next);
                next->line_turn = false;
                if (holds)
                        return;
        }
}

/* ---- waiting for a release ---- */

static void release_leave(CreateOp *op)
{
        if (!op->awaiting_release)
                return;
        TAILQ_REMOVE(&op->s->releases, op, release_link);
        op->awaiting_release = false;
        uv_timer_stop(&op->timer);
}

/* A usage key changed, or the wait is over: try again (an attempt past the wait fails with what is
 * missing, unless it came back). */
static void on_release_timeout(uv_timer_t *t)
{
        CreateOp *op = t->data;
        release_leave(op);
        create_attempt(op);
}

/* Sets the op aside until a usage key changes, when sandboxes being stopped are about to give back
 * what it lacks (`coming`) and its wait is not over. The wait ends well before the caller's
 * deadline, so that the caller learns what was missing rather than just the time running out. */
static bool await_release(CreateOp *op, bool coming, const char *reason)
{
        Scheduler *s = op->s;
        usec_t now = sbx_now_monotonic();

        if (!coming || s->cfg.release_wait == 0 || s->stopping)
                return false;
        if (op->release_until == 0) {
                usec_t left = sbx_rpc_server_call_time_left(op->call);
                usec_t wait = s->cfg.release_wait;
                if (left != USEC_INFINITY && left / 2 < wait)
                        wait = left / 2;
                op->release_until = now + wait;
                sbx_counter_inc(s->m.release_waits, SBX_LABELS(reason));
        }
        if (now >= op->release_until)
                return false;
        TAILQ_INSERT_TAIL(&s->releases, op, release_link);
        op->awaiting_release = true;
        uv_timer_start(&op->timer, on_release_timeout, sbx_usec_to_msec_ceil(op->release_until - now), 0);
        return true;
}

/* Whether a node of the region has sandboxes being stopped (capacity about to come back). */
static bool region_stopping(SchedNode *const *nodes, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (nodes[i]->stopping > 0)
                        return true;
        return false;
}

static bool release_concerns(Scheduler *s, const CreateOp *op, SchedChange what, const char *name)
{
        if (what == SCHED_CHANGE_ORG_USAGE)
                return name && streq(name, op->org);
        if (what == SCHED_CHANGE_NODE_USAGE) {
                SchedNode *n = name ? sched_state_node(s->state, name) : NULL;
                return n && sched_node_alive(n) && streq(strempty(n->node->region), op->spec.region);
        }
        return true;
}

void sched_create_on_release(Scheduler *s, SchedChange what, const char *name)
{
        CreateOp *op;

        /* Try again on the next turn of the loop, not now: one watch message carries the whole
         * finalization (record, org usage, node usage), and this runs before all of it is applied. */
        TAILQ_FOREACH (op, &s->releases, release_link)
                if (release_concerns(s, op, what, name))
                        uv_timer_start(&op->timer, on_release_timeout, 0, 0);
}

/* Placements in flight, per org and node, steer concurrent Creates of this replica apart. */
static void placing_add(CreateOp *op, int delta)
{
        SchedOrg *org = sched_state_org(op->s->state, op->org);
        SchedNode *node = sched_state_node(op->s->state, op->node);

        /* A rebuilt mirror starts again from zero: never go below it. */
        if (org && (delta > 0 || org->known.placing > 0))
                org->known.placing += delta;
        if (node && (delta > 0 || node->known.placing > 0))
                node->known.placing += delta;
}

static void reply_running(CreateOp *op, SchedSandbox *sb)
{
        Sbx__V1__Sandbox view;
        _cleanup_free_ char *token = NULL;

        sched_view_sandbox(op->s, sb, &view);
        if (sched_access_token(op->s, sb, &token) >= 0)
                view.access_token = token;
        sbx_histogram_observe(op->s->m.create_wait, SBX_LABELS("running"), since(op->started));
        sbx_rpc_server_call_reply(op->call, &view.base);
        op->phase = CREATE_DONE;
        uv_timer_stop(&op->timer);
        op_maybe_free(op);
}

/* Looks at the sandbox in the mirror and answers the call if it is decided. */
static void create_check(CreateOp *op)
{
        SchedSandbox *sb = sched_state_sandbox(op->s->state, op->id);
        if (op->phase != CREATE_WAITING || !sb || !sb->record)
                return;
        Sbx__V1__SandboxState st = sched_sandbox_state(sb);
        if (st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING) {
                reply_running(op, sb);
        } else if (st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED ||
                   st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED ||
                   st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_LOST) {
                const char *reason = sb->status && !isempty(sb->status->reason) ? sb->status->reason
                                     : !isempty(sb->record->stop_reason)        ? sb->record->stop_reason
                                                                                : "no reason given";
                sbx_histogram_observe(op->s->m.create_wait, SBX_LABELS("failed"), since(op->started));
                op_fail(op, SBX_STATUS_UNAVAILABLE, "Sandbox %s on node %s failed to start: %s", op->id,
                        sb->record->node, reason);
        }
}

void sched_create_on_change(Scheduler *s, const char *id)
{
        CreateOp *op = sbx_hashmap_get(s->waiters, id);
        if (op)
                create_check(op);
}

static void deadline_finalized(Scheduler *s, int error, void *userdata)
{
        /* Nothing to do: the call was answered when the deadline passed. */
}

static void on_deadline(uv_timer_t *t)
{
        CreateOp *op = t->data;
        char d[SBX_DURATION_MAX];

        if (op->phase != CREATE_WAITING)
                return;
        sched_finalize(op->s, op->id, 0, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED,
                       "did not start before the create deadline", deadline_finalized, NULL);
        sbx_histogram_observe(op->s->m.create_wait, SBX_LABELS("deadline"), since(op->started));
        op_fail(op, SBX_STATUS_DEADLINE_EXCEEDED,
                "Sandbox %s did not start within %s on node %s; it was marked FAILED and its quota released",
                op->id, sbx_format_duration(d, sizeof(d), op->s->cfg.create_deadline), op->node);
}

static void on_retry(uv_timer_t *t)
{
        create_attempt(t->data);
}

static void commit_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        CreateOp *op = userdata;

        op->txn_in_flight = false;
        placing_add(op, -1);
        if (error >= 0 && r->succeeded)
                take_written_usage(op, r->header ? r->header->revision : 0);
        else if (error >= 0)
                take_fresh_usage(op, r);
        /* The org's next Create goes now, deciding on what this Txn taught us. */
        line_next(op->s, op->org);
        if (op->phase == CREATE_DONE) {
                /* Cancelled while committing: if it did commit, nobody will ever learn the id, so stop it.
                 */
                if (error >= 0 && r->succeeded)
                        sched_finalize(op->s, op->id, 0, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED,
                                       "create cancelled", deadline_finalized, NULL);
                op_maybe_free(op);
                return;
        }
        if (error < 0) {
                op_fail(op, sbx_error_to_status(error), "Could not record sandbox %s in etcd: %s", op->id,
                        sbx_error_message(error));
                return;
        }
        if (!r->succeeded) {
                sbx_counter_inc(op->s->m.txn_conflicts, SBX_LABELS("create"));
                if (++op->attempts >= COMMIT_ATTEMPTS) {
                        sbx_counter_inc(op->s->m.txn_retries_exhausted, SBX_LABELS("create"));
                        op_fail(op, SBX_STATUS_ABORTED,
                                "Gave up placing sandbox after %u conflicting concurrent creates; retry",
                                op->attempts);
                        return;
                }
                /* Retry at once on the fresh values; back off a little when contention persists. */
                if (op->attempts < 3)
                        create_attempt(op);
                else
                        uv_timer_start(&op->timer, on_retry, (uint64_t)(op->attempts * 2), 0);
                return;
        }

        sbx_counter_inc(op->s->m.placements, SBX_LABELS(op->spec.region, "placed"));
        log_info_fields(LOG_FIELDS({ "sandbox", op->id }, { "org", op->org }, { "node", op->node }),
                        "Sandbox placed (attempt %u)", op->attempts + 1);
        op->phase = CREATE_WAITING;
        if (sbx_hashmap_put(op->s->waiters, op->id, op, NULL) < 0) {
                op_fail(op, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        uv_timer_start(&op->timer, on_deadline, sbx_usec_to_msec_ceil(op->s->cfg.create_deadline), 0);
        create_check(op);
}

static int add_put(SbxEtcdTxn *t, const char *key, const ProtobufCMessage *m)
{
        _cleanup_free_ uint8_t *v = NULL;
        size_t n;
        int r = sbx_store_pack(m, &v, &n);
        if (r < 0)
                return r;
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, key, v, n, 0);
        return 0;
}

/* Placement reads the region's nodes through this, so a Create looks at the few nodes it samples
 * instead of copying every node of the region. */
static void node_view(size_t i, SchedNodeView *v, void *userdata)
{
        SchedNode *const *nodes = userdata;
        const SchedNode *node = nodes[i];
        const Sbx__V1__Resources *cap = node->node ? node->node->capacity : NULL;
        SchedUsage u = sched_node_usage(node);

        *v = (SchedNodeView){
                .name = node->name,
                .alive = sched_node_alive(node),
                .region = node->node ? node->node->region : NULL,
                .cordoned = node->control && (node->control->cordoned || node->control->draining),
                .busy = u.placing > 0,
                .memory_mb = cap ? cap->memory_mb : 0,
                .vcpus = cap ? cap->vcpus : 0,
                .slots = cap ? cap->slots : 0,
                .used_memory_mb = u.memory_mb,
                .used_vcpus = u.vcpus,
                .used_slots = u.count,
        };
}

/* Tries to place and commit. Returns true when the op now holds its org's line — a Txn in flight,
 * or waiting in the line — so that whoever woke it need not wake the next one. */
static bool create_attempt(CreateOp *op)
{
        Scheduler *s = op->s;
        SchedOrg *org = sched_state_org(s->state, op->org);
        SchedNode *const *nodes = NULL;
        _cleanup_free_ char *rec_key = NULL, *assign_key = NULL, *org_usage_key = NULL,
                            *node_usage_key = NULL, *node_key = NULL, *org_key = NULL, *secrets_key = NULL;
        RecordParts parts = { 0 };
        SchedPlacementResult res;
        int r;

        if (op->phase != CREATE_COMMITTING)
                return false;
        if (!org || !org->org) {
                op_fail(op, SBX_STATUS_FAILED_PRECONDITION, "Organization \"%s\" no longer exists", op->org);
                return false;
        }
        /* One Txn per org at a time on this replica: wait for the one in flight, behind those who
         * came first. */
        if ((org->known.placing > 0 || (!op->line_turn && sbx_hashmap_get(s->org_lines, op->org))) &&
            line_join(op, op->line_turn))
                return true;

        /* Quota, on the freshest usage known. */
        SchedUsage usage = sched_org_usage(org);
        uint32_t running = usage.count;
        if (running >= org->org->max_sandboxes) {
                if (await_release(op, org->stopping > 0, "quota"))
                        return false;
                sbx_counter_inc(s->m.quota_rejections, NULL);
                op_fail(op, SBX_STATUS_RESOURCE_EXHAUSTED,
                        "Organization \"%s\" is at its quota of %u concurrent sandboxes (%u running, %u of "
                        "them stopping); delete one or raise the quota",
                        op->org, org->org->max_sandboxes, running, org->stopping);
                return false;
        }

        /* Placement, among the region's live nodes. */
        size_t n = sched_state_region_nodes(s->state, op->spec.region, &nodes);
        SchedPlacementRequest preq = { .region = op->spec.region,
                                       .memory_mb = op->spec.memory_mb,
                                       .vcpus = op->spec.vcpus,
                                       .seed = s->seed++ ^ ((uint64_t)op->created_ms << 16) ^ op->attempts,
                                       .sample = s->cfg.placement_sample };
        r = sched_place_among(n, node_view, (void *)nodes, &preq, &res);
        if (r < 0 && await_release(op, region_stopping(nodes, n), "capacity"))
                return false;
        if (r < 0) {
                sbx_counter_inc(s->m.placements, SBX_LABELS(op->spec.region, "no_capacity"));
                op_fail(op, SBX_STATUS_RESOURCE_EXHAUSTED,
                        "No capacity in region %s for %u MiB and %u vCPUs: %u nodes, %u full, %u cordoned "
                        "or draining",
                        op->spec.region, op->spec.memory_mb, op->spec.vcpus, res.in_region, res.full,
                        res.cordoned);
                return false;
        }
        SchedNode *node = nodes[res.index];
        SchedUsage nu_now = sched_node_usage(node);
        snprintf(op->node, sizeof(op->node), "%s", node->name);

        /* The Txn. */
        Sbx__V1__Assignment assign = SBX__V1__ASSIGNMENT__INIT;
        Sbx__V1__OrgUsage ou = SBX__V1__ORG_USAGE__INIT;
        Sbx__V1__NodeUsage nu = SBX__V1__NODE_USAGE__INIT;
        Sbx__V1__Resources alloc = SBX__V1__RESOURCES__INIT;
        SbxEtcdTxn *t = NULL;

        assign.sandbox_id = op->id;
        assign.assigned_at_ms = sbx_now_ms();
        ou.sandboxes = running + 1;
        ou.memory_mb = usage.memory_mb + op->spec.memory_mb;
        alloc.memory_mb = nu_now.memory_mb + op->spec.memory_mb;
        alloc.vcpus = nu_now.vcpus + op->spec.vcpus;
        alloc.slots = nu_now.count + 1;
        nu.allocated = &alloc;
        op->put_org = (SchedUsage){ .memory_mb = ou.memory_mb, .count = ou.sandboxes };
        op->put_node =
                (SchedUsage){ .memory_mb = alloc.memory_mb, .vcpus = alloc.vcpus, .count = alloc.slots };

        if ((r = build_record(op, node->name, (int64_t)org->org->max_lifetime_ms, &parts)) < 0 ||
            (r = sbx_key_new(&rec_key, SBX_KEY_SANDBOXES "%s", op->id)) < 0 ||
            (r = sbx_key_new(&assign_key, SBX_KEY_ASSIGN "%s/%s", node->name, op->id)) < 0 ||
            (r = sbx_key_new(&org_usage_key, SBX_KEY_USAGE_ORGS "%s", op->org)) < 0 ||
            (r = sbx_key_new(&node_usage_key, SBX_KEY_USAGE_NODES "%s", node->name)) < 0 ||
            (r = sbx_key_new(&node_key, SBX_KEY_NODES "%s", node->name)) < 0 ||
            (r = sbx_key_new(&org_key, SBX_KEY_ORGS "%s", op->org)) < 0 ||
            (r = sbx_key_new(&secrets_key, SBX_KEY_SECRETS "%s", op->id)) < 0 ||
            (r = sbx_etcd_txn_new(&t)) < 0)
                goto fail;

        sbx_etcd_txn_compare_create_revision(t, rec_key, SBX_ETCD_EQUAL, 0);
        sbx_etcd_txn_compare_mod_revision(t, org_usage_key, SBX_ETCD_EQUAL, usage.rev);
        sbx_etcd_txn_compare_mod_revision(t, node_usage_key, SBX_ETCD_EQUAL, nu_now.rev);
        sbx_etcd_txn_compare_mod_revision(t, org_key, SBX_ETCD_EQUAL, org->org_rev);
        sbx_etcd_txn_compare_version(t, node_key, SBX_ETCD_GREATER, 0);
        if ((r = add_put(t, rec_key, &parts.rec.base)) < 0 ||
            (r = add_put(t, assign_key, &assign.base)) < 0 ||
            (r = add_put(t, org_usage_key, &ou.base)) < 0 || (r = add_put(t, node_usage_key, &nu.base)) < 0)
                goto fail;
        if (op->sealed)
                sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, secrets_key, op->sealed, op->sealed_len, 0);
        sbx_etcd_txn_get(t, SBX_ETCD_FAILURE, org_usage_key, false);
        sbx_etcd_txn_get(t, SBX_ETCD_FAILURE, node_usage_key, false);
        r = sbx_etcd_txn_commit(s->etcd, t, commit_done, op);
        t = NULL;
        if (r < 0)
                goto fail;
        op->txn_in_flight = true;
        placing_add(op, +1);
        record_parts_done(&parts);
        return true;
fail:
        sbx_etcd_txn_free(t);
        record_parts_done(&parts);
        op_fail(op, sbx_error_to_status(r), "Could not commit sandbox: %s", sbx_error_message(r));
        return false;
}

/* ---- the handler ---- */

static void create_done(SbxRpcServerCall *call, bool cancelled, void *userdata)
{
        CreateOp *op = sbx_rpc_server_call_get_userdata(call);
        if (!op)
                return;
        if (op->phase == CREATE_WAITING && cancelled) {
                /* The caller gave up after the commit but before learning the id: nobody can use or
                 * delete this sandbox, so stop it now rather than let it hold quota for its lifetime. */
                sched_finalize(op->s, op->id, 0, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED,
                               "create cancelled", deadline_finalized, NULL);
        }
        op->cancelled = cancelled;
        op->phase = CREATE_DONE;
        uv_timer_stop(&op->timer);
        op_maybe_free(op);
}

static void create_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__CreateSandboxRequest *req = (const Sbx__V1__CreateSandboxRequest *)request;
        _cleanup_free_ char *message = NULL, *known = NULL;
        SchedCaller caller;
        CreateOp *op;
        int r;

        if (sched_auth(s, call, false, &caller) < 0)
                return;
        SchedOrg *org = sched_state_org(s->state, caller.org);
        if (!org || !org->org) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_FAILED_PRECONDITION,
                                         "Organization \"%s\" of this token does not exist", caller.org);
                return;
        }

        known = sched_known_regions(s);
        SchedLimits lim = {
                .default_memory_mb = s->cfg.default_memory_mb,
                .default_vcpus = s->cfg.default_vcpus,
                .default_region = s->cfg.default_region,
                .org_max_memory_mb = org->org->max_memory_mb,
                .org_max_lifetime_ms = org->org->max_lifetime_ms,
                .org_allowed_regions = org->org->allowed_regions,
                .n_org_allowed_regions = org->org->n_allowed_regions,
                .region_known = sched_region_known,
                .known_regions = known,
                .userdata = s,
        };
        op = calloc(1, sizeof(CreateOp));
        if (!op) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        r = sched_validate_create(req, &lim, &op->spec, &message);
        if (r < 0) {
                sbx_counter_inc(s->m.placements, SBX_LABELS("invalid", "invalid"));
                sbx_rpc_server_call_fail(call, sbx_error_to_status(r), "%s",
                                         message ? message : "invalid request");
                free(op);
                return;
        }
        op->s = s;
        op->call = sbx_rpc_server_call_ref(call);
        op->req = req;
        op->created_ms = sbx_now_ms();
        op->started = sbx_now_monotonic();
        snprintf(op->org, sizeof(op->org), "%s", caller.org);
        uv_timer_init(s->loop, &op->timer);
        op->timer.data = op;
        sbx_rpc_server_call_set_userdata(call, op);
        if ((r = sbx_sandbox_id_new(op->spec.region, op->id, sizeof(op->id))) < 0 ||
            (r = seal_secrets(op)) < 0) {
                op_fail(op, SBX_STATUS_INTERNAL, "Could not prepare the sandbox: %s", sbx_error_message(r));
                return;
        }
        create_attempt(op);
}

int sched_create_register(Scheduler *s, SbxRpcServer *server, const SbxRpcMethod *m)
{
        SbxRpcHandler h = { .method = m, .on_start = create_start, .on_done = create_done, .userdata = s };
        return sbx_rpc_server_add_handler(server, &h);
}
