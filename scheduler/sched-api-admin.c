/* SPDX-License-Identifier: Apache-2.0 */
/* sbx.v1.Admin: organizations and quotas, tokens, nodes. Admin tokens only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/api/api.h"
#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"
#include "scheduler/sched-validate.h"
#include "scheduler/sched.h"

const SbxRpcMethod *const sched_admin_methods[] = { &sbx_api_admin_create_org,   &sbx_api_admin_list_orgs,
                                                    &sbx_api_admin_update_org,   &sbx_api_admin_create_token,
                                                    &sbx_api_admin_revoke_token, &sbx_api_admin_list_tokens,
                                                    &sbx_api_admin_list_nodes,   &sbx_api_admin_cordon_node,
                                                    &sbx_api_admin_drain_node };
const size_t sched_admin_n_methods = ELEMENTSOF(sched_admin_methods);

/* How long a successful admin write waits for this replica's mirror to show it before answering
 * anyway (the write is done; only read-your-writes is at stake, if the watch is stuck). */
#define MIRROR_WAIT_MAX_MS 5000

/* A pending admin write: the call to answer and what to answer with. */
typedef struct AdminOp AdminOp;
struct AdminOp {
        Scheduler *s;
        SbxRpcServerCall *call;
        char name[SBX_KEY_NAME_MAX + 1];
        /* A packed reply to send on success (the written value's view). */
        uint8_t *reply;
        size_t reply_len;
        const ProtobufCMessageDescriptor *reply_desc;
        const char *conflict_message;
        SbxStatus conflict_status;
        uint32_t count;
        /* A freshly minted token, shown once in the reply and wiped afterwards. */
        char *secret;
        /* The success answer, sent once the mirror caught up with the write (read-your-writes). */
        void (*answer)(AdminOp *op);
        SchedStateWait *wait;
        uv_timer_t timer;
        bool timer_init;
};

static AdminOp *admin_op_new(Scheduler *s, SbxRpcServerCall *call, const char *name)
{
        AdminOp *op = calloc(1, sizeof(AdminOp));
        if (!op)
                return NULL;
        op->s = s;
        op->call = sbx_rpc_server_call_ref(call);
        snprintf(op->name, sizeof(op->name), "%s", name ? name : "");
        return op;
}

static void admin_op_release(AdminOp *op)
{
        if (op->secret) {
                sbx_secure_zero(op->secret, strlen(op->secret));
                free(op->secret);
        }
        sbx_rpc_server_call_unref(op->call);
        free(op->reply);
        free(op);
}

static void admin_op_closed(uv_handle_t *h)
{
        admin_op_release(h->data);
}

static void admin_op_free(AdminOp *op)
{
        if (op->wait)
                sched_state_wait_cancel(op->s->state, op->wait);
        op->wait = NULL;
        if (op->timer_init)
                uv_close((uv_handle_t *)&op->timer, admin_op_closed);
        else
                admin_op_release(op);
}

static void answer_now(AdminOp *op)
{
        op->answer(op);
        admin_op_free(op);
}

static void mirror_reached(int error, void *userdata)
{
        AdminOp *op = userdata;
        /* -ECANCELED: the mirror is going away with the daemon; the write itself is done. */
        op->wait = NULL;
        uv_timer_stop(&op->timer);
        answer_now(op);
}

static void mirror_timeout(uv_timer_t *t)
{
        AdminOp *op = t->data;
        log_debug("The state mirror did not reach revision of an admin write within %d ms; answering",
                  MIRROR_WAIT_MAX_MS);
        answer_now(op);
}

/*
 * Answers a successful write with op->answer once this replica's mirror has applied everything up
 * to the write's revision, so that the caller's next request — CreateToken right after CreateOrg,
 * a Create right after UpdateOrg — finds what it just wrote (read-your-writes, on this replica).
 */
static void answer_after_mirror(AdminOp *op, const Etcdserverpb__ResponseHeader *h,
                                void (*answer)(AdminOp *op))
{
        int r;

        op->answer = answer;
        r = h ? sched_state_wait_revision(op->s->state, h->revision, mirror_reached, op, &op->wait)
              : -EALREADY;
        if (r < 0) {
                /* -EALREADY: there already; -ENOMEM: answer rather than fail a write that is done. */
                op->wait = NULL;
                answer_now(op);
                return;
        }
        uv_timer_init(op->s->loop, &op->timer);
        op->timer.data = op;
        op->timer_init = true;
        uv_timer_start(&op->timer, mirror_timeout, MIRROR_WAIT_MAX_MS, 0);
}

/* Replies with the written value (op->reply). */
static void answer_value(AdminOp *op)
{
        ProtobufCMessage *m = NULL;

        if (sbx_store_unpack(op->reply_desc, op->reply, op->reply_len, &m) < 0) {
                sbx_rpc_server_call_fail(op->call, SBX_STATUS_INTERNAL, "Could not encode the reply");
                return;
        }
        sbx_rpc_server_call_reply(op->call, m);
        protobuf_c_message_free_unpacked(m, NULL);
}

/* Answers a Txn that wrote op->reply's value: the value itself on success. */
static void admin_txn_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        AdminOp *op = userdata;

        if (error >= 0 && r->succeeded) {
                answer_after_mirror(op, r->header, answer_value);
                return;
        }
        if (error < 0)
                sbx_rpc_server_call_fail(op->call, sbx_error_to_status(error), "etcd: %s",
                                         sbx_error_message(error));
        else
                sbx_rpc_server_call_fail(op->call, op->conflict_status, "%s", op->conflict_message);
        admin_op_free(op);
}

static int commit(AdminOp *op, SbxEtcdTxn *t)
{
        int r = sbx_etcd_txn_commit(op->s->etcd, t, admin_txn_done, op);
        if (r < 0) {
                sbx_rpc_server_call_fail(op->call, sbx_error_to_status(r), "etcd: %s", sbx_error_message(r));
                admin_op_free(op);
        }
        return r;
}

static int regions_valid(SbxRpcServerCall *call, char **regions, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!sbx_region_valid(regions[i]))
                        return sbx_rpc_server_call_fail(
                                       call, SBX_STATUS_INVALID_ARGUMENT,
                                       "allowed_regions[%zu]: \"%.40s\" is not a region name (three "
                                       "lowercase letters)",
                                       i, regions[i]),
                               -EINVAL;
        return 0;
}

/* ---- organizations ---- */

static int org_limits_valid(SbxRpcServerCall *call, uint32_t max_memory, uint64_t max_lifetime)
{
        if (max_memory && (max_memory < SCHED_MEMORY_MIN_MB || max_memory > SCHED_MEMORY_MAX_MB))
                return sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                                "max_memory_mb: %u is out of range; allowed: %d..%d",
                                                max_memory, SCHED_MEMORY_MIN_MB, SCHED_MEMORY_MAX_MB),
                       -EINVAL;
        if (max_lifetime && (max_lifetime < SCHED_LIFETIME_MIN_MS || max_lifetime > 7ULL * 24 * 3600 * 1000))
                return sbx_rpc_server_call_fail(
                               call, SBX_STATUS_INVALID_ARGUMENT,
                               "max_lifetime_ms: %llu is out of range; allowed: 1000..604800000 (7d)",
                               (unsigned long long)max_lifetime),
                       -EINVAL;
        return 0;
}

static void create_org_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__CreateOrgRequest *req = (const Sbx__V1__CreateOrgRequest *)request;
        Sbx__V1__Org org = SBX__V1__ORG__INIT;
        _cleanup_free_ char *key = NULL;
        SchedCaller c;
        SbxEtcdTxn *t;
        AdminOp *op;

        if (sched_auth(s, call, true, &c) < 0)
                return;
        if (!req->name || !sched_org_name_valid(req->name)) {
                sbx_rpc_server_call_fail(
                        call, SBX_STATUS_INVALID_ARGUMENT,
                        "name: \"%.80s\" is not a valid organization name ([a-z0-9-], 1..63 bytes, "
                        "no leading or trailing '-')",
                        req->name ? req->name : "");
                return;
        }
        if (org_limits_valid(call, req->max_memory_mb, req->max_lifetime_ms) < 0 ||
            regions_valid(call, req->allowed_regions, req->n_allowed_regions) < 0)
                return;
        org.name = req->name;
        org.max_sandboxes = req->max_sandboxes ? req->max_sandboxes : s->cfg.default_max_sandboxes;
        org.max_memory_mb = req->max_memory_mb ? req->max_memory_mb : s->cfg.default_max_memory_mb;
        org.max_lifetime_ms =
                req->max_lifetime_ms ? req->max_lifetime_ms : s->cfg.default_max_lifetime / USEC_PER_MSEC;
        org.allowed_regions = req->allowed_regions;
        org.n_allowed_regions = req->n_allowed_regions;
        org.created_at_ms = sbx_now_ms();

        if (!(op = admin_op_new(s, call, req->name)) ||
            sbx_key_new(&key, SBX_KEY_ORGS "%s", req->name) < 0 ||
            sbx_store_pack(&org.base, &op->reply, &op->reply_len) < 0 || sbx_etcd_txn_new(&t) < 0) {
                if (op)
                        admin_op_free(op);
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        op->reply_desc = &sbx__v1__org__descriptor;
        op->conflict_status = SBX_STATUS_ALREADY_EXISTS;
        op->conflict_message = "An organization with this name already exists";
        sbx_etcd_txn_compare_create_revision(t, key, SBX_ETCD_EQUAL, 0);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, key, op->reply, op->reply_len, 0);
        if (commit(op, t) >= 0)
                log_info_fields(LOG_FIELDS({ "org", req->name }), "Creating organization (quota %u)",
                                org.max_sandboxes);
}

static void list_orgs_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        SbxHashmap *map = sched_state_orgs(s->state);
        size_t n = 0, state = 0, cap = sbx_hashmap_size(map) + 1;
        _cleanup_free_ Sbx__V1__OrgWithUsage *items = calloc(cap, sizeof(Sbx__V1__OrgWithUsage));
        _cleanup_free_ Sbx__V1__OrgWithUsage **ptrs = calloc(cap, sizeof(Sbx__V1__OrgWithUsage *));
        Sbx__V1__ListOrgsResponse resp = SBX__V1__LIST_ORGS_RESPONSE__INIT;
        Sbx__V1__OrgUsage zero = SBX__V1__ORG_USAGE__INIT;
        SchedCaller c;
        void *v;

        if (sched_auth(s, call, true, &c) < 0)
                return;
        if (!items || !ptrs) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        while (sbx_hashmap_next(map, &state, NULL, &v)) {
                SchedOrg *o = v;
                if (!o->org)
                        continue;
                sbx__v1__org_with_usage__init(&items[n]);
                items[n].org = o->org;
                items[n].usage = o->usage ? o->usage : &zero;
                ptrs[n] = &items[n];
                n++;
        }
        resp.orgs = ptrs;
        resp.n_orgs = n;
        sbx_rpc_server_call_reply(call, &resp.base);
}

static void update_org_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__UpdateOrgRequest *req = (const Sbx__V1__UpdateOrgRequest *)request;
        _cleanup_free_ char *key = NULL;
        SchedCaller c;
        SbxEtcdTxn *t;
        AdminOp *op;

        if (sched_auth(s, call, true, &c) < 0)
                return;
        SchedOrg *o = req->name ? sched_state_org(s->state, req->name) : NULL;
        if (!o || !o->org) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_NOT_FOUND, "Organization \"%.80s\" not found",
                                         req->name ? req->name : "");
                return;
        }
        if (org_limits_valid(call, req->max_memory_mb, req->max_lifetime_ms) < 0 ||
            regions_valid(call, req->allowed_regions, req->n_allowed_regions) < 0)
                return;
        Sbx__V1__Org org = *o->org;
        if (req->max_sandboxes)
                org.max_sandboxes = req->max_sandboxes;
        if (req->max_memory_mb)
                org.max_memory_mb = req->max_memory_mb;
        if (req->max_lifetime_ms)
                org.max_lifetime_ms = req->max_lifetime_ms;
        if (req->n_allowed_regions || req->clear_allowed_regions) {
                org.allowed_regions = req->allowed_regions;
                org.n_allowed_regions = req->n_allowed_regions;
        }
        if (!(op = admin_op_new(s, call, req->name)) ||
            sbx_key_new(&key, SBX_KEY_ORGS "%s", req->name) < 0 ||
            sbx_store_pack(&org.base, &op->reply, &op->reply_len) < 0 || sbx_etcd_txn_new(&t) < 0) {
                if (op)
                        admin_op_free(op);
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        op->reply_desc = &sbx__v1__org__descriptor;
        op->conflict_status = SBX_STATUS_ABORTED;
        op->conflict_message = "The organization changed concurrently; retry";
        sbx_etcd_txn_compare_mod_revision(t, key, SBX_ETCD_EQUAL, o->org_rev);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, key, op->reply, op->reply_len, 0);
        if (commit(op, t) >= 0)
                log_info_fields(LOG_FIELDS({ "org", req->name }), "Updating organization (quota %u)",
                                org.max_sandboxes);
}

/* ---- tokens ---- */

static void answer_token(AdminOp *op)
{
        Sbx__V1__CreateTokenResponse resp = SBX__V1__CREATE_TOKEN_RESPONSE__INIT;
        Sbx__V1__TokenRecord *rec = NULL;

        if (sbx_store_unpack(&sbx__v1__token_record__descriptor, op->reply, op->reply_len,
                             (ProtobufCMessage **)&rec) < 0) {
                sbx_rpc_server_call_fail(op->call, SBX_STATUS_INTERNAL, "Could not encode the reply");
                return;
        }
        resp.token = op->secret;
        resp.record = rec;
        sbx_rpc_server_call_reply(op->call, &resp.base);
        protobuf_c_message_free_unpacked(&rec->base, NULL);
}

static void create_token_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        AdminOp *op = userdata;

        if (error >= 0 && r->succeeded) {
                /* The token works on this replica once the reply is out. */
                answer_after_mirror(op, r->header, answer_token);
                return;
        }
        sbx_rpc_server_call_fail(op->call, error < 0 ? sbx_error_to_status(error) : SBX_STATUS_ABORTED,
                                 "Could not store the token: %s",
                                 error < 0 ? sbx_error_message(error) : "conflict");
        admin_op_free(op);
}

static void create_token_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__CreateTokenRequest *req = (const Sbx__V1__CreateTokenRequest *)request;
        Sbx__V1__TokenRecord rec = SBX__V1__TOKEN_RECORD__INIT;
        _cleanup_free_ char *token = NULL, *key = NULL;
        char hash[65], id[32];
        SchedCaller c;
        SbxEtcdTxn *t;
        AdminOp *op;

        if (sched_auth(s, call, true, &c) < 0)
                return;
        bool admin = req->role == SBX__V1__ROLE__ROLE_ADMIN;
        if (!admin && req->role != SBX__V1__ROLE__ROLE_USER &&
            req->role != SBX__V1__ROLE__ROLE_UNSPECIFIED) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT, "role: %d is not a role",
                                         (int)req->role);
                return;
        }
        if (admin && !isempty(req->org)) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                         "org: admin tokens belong to no organization");
                return;
        }
        if (!admin) {
                SchedOrg *o = req->org ? sched_state_org(s->state, req->org) : NULL;
                if (!o || !o->org) {
                        sbx_rpc_server_call_fail(call, SBX_STATUS_NOT_FOUND,
                                                 "org: organization \"%.80s\" not found",
                                                 req->org ? req->org : "");
                        return;
                }
        }
        if (req->description && strlen(req->description) > 200) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                         "description: at most 200 bytes");
                return;
        }
        /* "ddo_" lets the @deno/sandbox SDK use the token without an extra org variable. */
        if (sbx_random_token(admin ? "sbxadm_" : "ddo_", 30, &token) < 0) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INTERNAL, "Could not generate a token");
                return;
        }
        sched_token_hash(token, hash);
        snprintf(id, sizeof(id), "tok_%.12s", hash);
        rec.org = admin ? (char *)"" : req->org;
        rec.role = admin ? SBX__V1__ROLE__ROLE_ADMIN : SBX__V1__ROLE__ROLE_USER;
        rec.created_at_ms = sbx_now_ms();
        rec.description = req->description;
        rec.token_id = id;
        if (!(op = admin_op_new(s, call, NULL)) || sbx_key_new(&key, SBX_KEY_TOKENS "%s", hash) < 0 ||
            sbx_store_pack(&rec.base, &op->reply, &op->reply_len) < 0 || sbx_etcd_txn_new(&t) < 0) {
                if (op)
                        admin_op_free(op);
                sbx_secure_zero(token, strlen(token));
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        op->secret = TAKE_PTR(token);
        sbx_etcd_txn_compare_create_revision(t, key, SBX_ETCD_EQUAL, 0);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, key, op->reply, op->reply_len, 0);
        if (sbx_etcd_txn_commit(s->etcd, t, create_token_done, op) < 0) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_UNAVAILABLE, "etcd unavailable");
                admin_op_free(op);
                return;
        }
        log_info_fields(LOG_FIELDS({ "org", admin ? NULL : req->org }, { "token_id", id }),
                        "Created %s token", admin ? "an admin" : "a user");
}

static void answer_revoked(AdminOp *op)
{
        Sbx__V1__RevokeTokenResponse resp = SBX__V1__REVOKE_TOKEN_RESPONSE__INIT;
        sbx_rpc_server_call_reply(op->call, &resp.base);
}

static void revoke_done(int error, const Etcdserverpb__DeleteRangeResponse *r, void *userdata)
{
        AdminOp *op = userdata;

        if (error >= 0 && r->deleted > 0) {
                log_info_fields(LOG_FIELDS({ "token_hash", op->name }), "Revoked a token");
                /* The token stops working on this replica before the reply says it did. */
                answer_after_mirror(op, r->header, answer_revoked);
                return;
        }
        if (error < 0)
                sbx_rpc_server_call_fail(op->call, sbx_error_to_status(error), "etcd: %s",
                                         sbx_error_message(error));
        else
                sbx_rpc_server_call_fail(op->call, SBX_STATUS_NOT_FOUND, "No such token");
        admin_op_free(op);
}

static void revoke_token_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__RevokeTokenRequest *req = (const Sbx__V1__RevokeTokenRequest *)request;
        _cleanup_free_ char *key = NULL;
        char hash[65] = "";
        SchedCaller c;
        AdminOp *op;

        if (sched_auth(s, call, true, &c) < 0)
                return;
        if (!isempty(req->token)) {
                sched_token_hash(req->token, hash);
        } else if (!isempty(req->token_id)) {
                SbxHashmap *map = sched_state_tokens(s->state);
                size_t state = 0;
                const char *k;
                void *v;
                while (sbx_hashmap_next(map, &state, &k, &v))
                        if (streq(((Sbx__V1__TokenRecord *)v)->token_id, req->token_id))
                                snprintf(hash, sizeof(hash), "%s", k);
        } else {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT, "Give either token or token_id");
                return;
        }
        if (!*hash || !sched_state_token(s->state, hash)) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_NOT_FOUND, "No such token");
                return;
        }
        if (!(op = admin_op_new(s, call, hash)) || sbx_key_new(&key, SBX_KEY_TOKENS "%s", hash) < 0 ||
            sbx_etcd_delete(s->etcd, key, false, revoke_done, op) < 0) {
                if (op)
                        admin_op_free(op);
                sbx_rpc_server_call_fail(call, SBX_STATUS_UNAVAILABLE, "etcd unavailable");
        }
}

static void list_tokens_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__ListTokensRequest *req = (const Sbx__V1__ListTokensRequest *)request;
        SbxHashmap *map = sched_state_tokens(s->state);
        _cleanup_free_ Sbx__V1__TokenRecord **ptrs = calloc(sbx_hashmap_size(map) + 1, sizeof(void *));
        Sbx__V1__ListTokensResponse resp = SBX__V1__LIST_TOKENS_RESPONSE__INIT;
        size_t n = 0, state = 0;
        SchedCaller c;
        void *v;

        if (sched_auth(s, call, true, &c) < 0)
                return;
        if (!ptrs) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        while (sbx_hashmap_next(map, &state, NULL, &v)) {
                Sbx__V1__TokenRecord *t = v;
                if (isempty(req->org) || streq_ptr(t->org, req->org))
                        ptrs[n++] = t;
        }
        resp.tokens = ptrs;
        resp.n_tokens = n;
        sbx_rpc_server_call_reply(call, &resp.base);
}

/* ---- nodes ---- */

static void node_info(SchedNode *n, Sbx__V1__NodeInfo *out, Sbx__V1__NodeControl *zero_ctl,
                      Sbx__V1__NodeUsage *zero_usage)
{
        sbx__v1__node_info__init(out);
        out->node = n->node;
        out->control = n->control ? n->control : zero_ctl;
        out->usage = n->usage ? n->usage : zero_usage;
        out->sandboxes = n->active;
}

static void list_nodes_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__ListNodesRequest *req = (const Sbx__V1__ListNodesRequest *)request;
        SbxHashmap *map = sched_state_nodes(s->state);
        size_t cap = sbx_hashmap_size(map) + 1, n = 0, state = 0;
        _cleanup_free_ Sbx__V1__NodeInfo *items = calloc(cap, sizeof(Sbx__V1__NodeInfo));
        _cleanup_free_ Sbx__V1__NodeInfo **ptrs = calloc(cap, sizeof(void *));
        Sbx__V1__ListNodesResponse resp = SBX__V1__LIST_NODES_RESPONSE__INIT;
        Sbx__V1__NodeControl zero_ctl = SBX__V1__NODE_CONTROL__INIT;
        Sbx__V1__NodeUsage zero_usage = SBX__V1__NODE_USAGE__INIT;
        SchedCaller c;
        void *v;

        if (sched_auth(s, call, true, &c) < 0)
                return;
        if (!items || !ptrs) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        while (sbx_hashmap_next(map, &state, NULL, &v)) {
                SchedNode *node = v;
                if (!sched_node_alive(node))
                        continue;
                if (!isempty(req->region) && !streq_ptr(node->node->region, req->region))
                        continue;
                node_info(node, &items[n], &zero_ctl, &zero_usage);
                ptrs[n] = &items[n];
                n++;
        }
        resp.nodes = ptrs;
        resp.n_nodes = n;
        sbx_rpc_server_call_reply(call, &resp.base);
}

static void answer_node_control(AdminOp *op)
{
        SchedNode *n = sched_state_node(op->s->state, op->name);
        Sbx__V1__NodeControl *ctl = NULL;

        if (op->reply_desc == &sbx__v1__drain_node_response__descriptor) {
                Sbx__V1__DrainNodeResponse resp = SBX__V1__DRAIN_NODE_RESPONSE__INIT;
                resp.stopping = op->count;
                sbx_rpc_server_call_reply(op->call, &resp.base);
        } else if (sbx_store_unpack(&sbx__v1__node_control__descriptor, op->reply, op->reply_len,
                                    (ProtobufCMessage **)&ctl) >= 0) {
                Sbx__V1__NodeInfo info;
                Sbx__V1__NodeUsage zero_usage = SBX__V1__NODE_USAGE__INIT;
                Sbx__V1__NodeControl zero_ctl = SBX__V1__NODE_CONTROL__INIT;
                if (n)
                        node_info(n, &info, &zero_ctl, &zero_usage);
                else
                        sbx__v1__node_info__init(&info);
                info.control = ctl;
                sbx_rpc_server_call_reply(op->call, &info.base);
                protobuf_c_message_free_unpacked(&ctl->base, NULL);
        } else {
                sbx_rpc_server_call_fail(op->call, SBX_STATUS_INTERNAL, "Could not encode the reply");
        }
}

static void node_control_done(int error, const Etcdserverpb__PutResponse *r, void *userdata)
{
        AdminOp *op = userdata;

        if (error >= 0) {
                /* ListNodes on this replica shows the cordon once the reply is out. */
                answer_after_mirror(op, r->header, answer_node_control);
                return;
        }
        sbx_rpc_server_call_fail(op->call, sbx_error_to_status(error), "etcd: %s", sbx_error_message(error));
        admin_op_free(op);
}

static bool mark_drained(Sbx__V1__SandboxRecord *rec, void *userdata)
{
        if (rec->desired == SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED)
                return false;
        rec->desired = SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED;
        if (rec->stop_reason != protobuf_c_empty_string)
                free(rec->stop_reason);
        rec->stop_reason = strdup("node drained");
        return true;
}

static void node_control(SbxRpcServerCall *call, Scheduler *s, const char *name, bool cordon, bool drain)
{
        Sbx__V1__NodeControl ctl = SBX__V1__NODE_CONTROL__INIT;
        _cleanup_free_ char *key = NULL;
        SchedCaller c;
        AdminOp *op;

        if (sched_auth(s, call, true, &c) < 0)
                return;
        SchedNode *n = name ? sched_state_node(s->state, name) : NULL;
        if (!sched_node_alive(n)) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_NOT_FOUND, "Node \"%.80s\" is not registered",
                                         name ? name : "");
                return;
        }
        ctl.cordoned = cordon || drain;
        ctl.draining = drain;
        ctl.updated_at_ms = sbx_now_ms();
        if (!(op = admin_op_new(s, call, name)) || sbx_key_new(&key, SBX_KEY_NODECTL "%s", name) < 0 ||
            sbx_store_pack(&ctl.base, &op->reply, &op->reply_len) < 0) {
                if (op)
                        admin_op_free(op);
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        if (drain) {
                /* Ask every sandbox of the node to stop; the agent and the reconciler do the rest. */
                SbxHashmap *map = sched_state_sandboxes(s->state);
                char **ids = NULL;
                size_t state = 0;
                void *v;
                op->reply_desc = &sbx__v1__drain_node_response__descriptor;
                while (sbx_hashmap_next(map, &state, NULL, &v)) {
                        SchedSandbox *sb = v;
                        if (sb->record && streq_ptr(sb->record->node, name) && !sched_sandbox_ended(sb) &&
                            sb->record->desired != SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED)
                                strv_extend(&ids, sb->id);
                }
                STRV_FOREACH (id, ids)
                        if (sched_record_update(s, *id, 0, mark_drained, NULL, NULL, NULL) >= 0)
                                op->count++;
                strv_free(ids);
        }
        if (sbx_etcd_put(s->etcd, key, op->reply, op->reply_len, 0, node_control_done, op) < 0) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_UNAVAILABLE, "etcd unavailable");
                admin_op_free(op);
                return;
        }
        log_info_fields(LOG_FIELDS({ "node", name }), "%s node",
                        drain    ? "Draining"
                        : cordon ? "Cordoning"
                                 : "Uncordoning");
}

static void cordon_node_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        const Sbx__V1__CordonNodeRequest *req = (const Sbx__V1__CordonNodeRequest *)request;
        node_control(call, userdata, req->name, req->cordon, false);
}

static void drain_node_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        const Sbx__V1__DrainNodeRequest *req = (const Sbx__V1__DrainNodeRequest *)request;
        node_control(call, userdata, req->name, true, true);
}

int sched_api_admin_register(Scheduler *s, SbxRpcServer *server)
{
        const SbxRpcHandler handlers[] = {
                { .method = &sbx_api_admin_create_org, .on_start = create_org_start, .userdata = s },
                { .method = &sbx_api_admin_list_orgs, .on_start = list_orgs_start, .userdata = s },
                { .method = &sbx_api_admin_update_org, .on_start = update_org_start, .userdata = s },
                { .method = &sbx_api_admin_create_token, .on_start = create_token_start, .userdata = s },
                { .method = &sbx_api_admin_revoke_token, .on_start = revoke_token_start, .userdata = s },
                { .method = &sbx_api_admin_list_tokens, .on_start = list_tokens_start, .userdata = s },
                { .method = &sbx_api_admin_list_nodes, .on_start = list_nodes_start, .userdata = s },
                { .method = &sbx_api_admin_cordon_node, .on_start = cordon_node_start, .userdata = s },
                { .method = &sbx_api_admin_drain_node, .on_start = drain_node_start, .userdata = s },
        };
        for (size_t i = 0; i < ELEMENTSOF(handlers); i++) {
                int r = sbx_rpc_server_add_handler(server, &handlers[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}
