/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx-scheduler end to end: real etcd, two real scheduler processes, and SIMULATED agents
 * (tests/lib/sim-agents.h) in regions ams and ord that register nodes under real leases and answer
 * assignments — no microVMs here; the agent issue's tests boot real ones.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/string-util.h"
#include "common/store/store.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"
#include "tests/lib/cluster.h"
#include "tests/lib/sim-agents.h"

static SbxTestCluster C;
static SbxSimCluster *sim;
static char *token;       /* org "acme", quota 5 */
static SbxRpcChannel *ch; /* acme's channel to scheduler 0 */

/* Starts etcd, `schedulers` schedulers and the simulated nodes `o` describes (loop and lease TTL
 * filled in here), and creates org "acme" with the given quota. */
static void start_with(unsigned schedulers, SbxSimOptions o, unsigned quota)
{
        memset(&C, 0, sizeof(C));
        cr_assert_eq(sbx_test_cluster_start(&C, schedulers), 0, "control plane did not start");
        o.loop = &C.loop;
        o.lease_ttl = 3;
        cr_assert_eq(sbx_sim_cluster_new(C.etcd_client, &o, &sim), 0);
        usec_t deadline = sbx_now_monotonic() + 10 * USEC_PER_SEC;
        while (!sbx_sim_cluster_ready(sim) && sbx_now_monotonic() < deadline)
                sbx_test_cluster_run(&C, 20 * USEC_PER_MSEC);
        cr_assert(sbx_sim_cluster_ready(sim), "simulated nodes did not register");
        token = sbx_test_org(&C, "acme", quota);
        cr_assert_not_null(token);
        ch = sbx_test_channel(&C, 0, token);
        /* The schedulers see the nodes through their watches: give them a moment. */
        sbx_test_cluster_run(&C, 300 * USEC_PER_MSEC);
}

static void start(unsigned schedulers, uint32_t slots)
{
        SbxSimOptions o = { .regions = (const char *const[]){ "ams", "ord", NULL },
                            .nodes_per_region = 2,
                            .memory_mb = 16384,
                            .vcpus = 16,
                            .slots = slots,
                            .boot_delay = 50 * USEC_PER_MSEC };
        start_with(schedulers, o, 5);
}

static void setup(void)
{
        start(2, 8);
}

static void teardown(void)
{
        sbx_rpc_channel_free(ch);
        ch = NULL;
        sim = sbx_sim_cluster_free(sim);
        sbx_test_cluster_run(&C, 100 * USEC_PER_MSEC);
        int r = sbx_test_cluster_stop(&C);
        free(token);
        token = NULL;
        cr_assert_eq(r, 0, "a scheduler did not shut down cleanly (see its log above)");
}

/* ---- helpers ---- */

typedef struct Outcome {
        int r;
        SbxStatus code;
        char message[512];
        Sbx__V1__Sandbox *sb;
} Outcome;

static Outcome call(SbxRpcChannel *c, const SbxRpcMethod *m, const ProtobufCMessage *req)
{
        Outcome o = { 0 };
        SbxRpcStatus st = { 0 };
        ProtobufCMessage *resp = NULL;
        o.r = sbx_test_call(&C, c, m, req, &st, &resp);
        o.code = st.code;
        snprintf(o.message, sizeof(o.message), "%s", st.message ? st.message : "");
        sbx_rpc_status_done(&st);
        o.sb = (Sbx__V1__Sandbox *)resp; /* whatever the method returns; callers know the type */
        return o;
}

static void outcome_done(Outcome *o)
{
        if (o->sb)
                protobuf_c_message_free_unpacked(&o->sb->base, NULL);
        o->sb = NULL;
}

static Outcome create(SbxRpcChannel *c, const char *region, uint64_t lifetime_ms, bool session)
{
        Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
        req.region = (char *)region;
        req.lifetime_ms = lifetime_ms;
        req.session = session;
        return call(c, &sbx_api_sandboxes_create, &req.base);
}

static Sbx__V1__SandboxState state_of(const char *id)
{
        Sbx__V1__GetSandboxRequest req = SBX__V1__GET_SANDBOX_REQUEST__INIT;
        req.id = (char *)id;
        Outcome o = call(ch, &sbx_api_sandboxes_get, &req.base);
        Sbx__V1__SandboxState st =
                o.r == 0 ? o.sb->state : SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED;
        outcome_done(&o);
        return st;
}

/* Polls until the sandbox reaches `want`; returns how long it took, or USEC_INFINITY. */
static usec_t wait_state(const char *id, Sbx__V1__SandboxState want, usec_t timeout)
{
        usec_t t0 = sbx_now_monotonic();
        while (sbx_now_monotonic() - t0 < timeout) {
                if (state_of(id) == want)
                        return sbx_now_monotonic() - t0;
                sbx_test_cluster_run(&C, 50 * USEC_PER_MSEC);
        }
        return USEC_INFINITY;
}

typedef struct Usage {
        bool done;
        uint32_t sandboxes;
        uint64_t memory;
} Usage;

static void usage_cb(int error, const Etcdserverpb__RangeResponse *r, void *userdata)
{
        Usage *u = userdata;
        u->done = true;
        if (error >= 0 && r->n_kvs > 0) {
                Sbx__V1__OrgUsage *ou =
                        sbx__v1__org_usage__unpack(NULL, r->kvs[0]->value.len, r->kvs[0]->value.data);
                if (ou) {
                        u->sandboxes = ou->sandboxes;
                        u->memory = ou->memory_mb;
                        sbx__v1__org_usage__free_unpacked(ou, NULL);
                }
        }
}

/* The org usage key as stored in etcd (not as any scheduler believes). */
static Usage org_usage(const char *org)
{
        Usage u = { 0 };
        char key[128];
        snprintf(key, sizeof(key), SBX_KEY_USAGE_ORGS "%s", org);
        cr_assert_eq(sbx_etcd_get(C.etcd_client, key, usage_cb, &u), 0);
        cr_assert_eq(sbx_test_run_until(&C.loop, &u.done, 5 * USEC_PER_SEC), 0);
        return u;
}

static bool wait_usage(const char *org, uint32_t want, usec_t timeout)
{
        usec_t t0 = sbx_now_monotonic();
        while (sbx_now_monotonic() - t0 < timeout) {
                if (org_usage(org).sandboxes == want)
                        return true;
                sbx_test_cluster_run(&C, 50 * USEC_PER_MSEC);
        }
        return false;
}

/* ---- lifecycle ---- */

TestSuite(scheduler, .init = setup, .fini = teardown, .timeout = 120);

Test(scheduler, create_in_each_region_runs_there_and_delete_releases_quota)
{
        const char *regions[] = { "ams", "ord" };
        for (int i = 0; i < 2; i++) {
                Outcome o = create(ch, regions[i], 0, false);
                cr_assert_eq(o.r, 0, "create in %s: %s: %s", regions[i], sbx_status_name(o.code), o.message);
                Sbx__V1__Sandbox *sb = o.sb;
                cr_assert_eq(sb->state, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING);
                cr_assert_str_eq(sb->region, regions[i]);
                char want[16];
                snprintf(want, sizeof(want), "sim-%s-", regions[i]);
                cr_assert(startswith(sb->node, want), "placed on %s", sb->node);
                cr_assert_eq(strncmp(sb->id, "sbx_", 4), 0);
                cr_assert_eq(strncmp(sb->id + 4, regions[i], 3), 0, "the id carries the region: %s", sb->id);
                cr_assert(startswith(sb->access_token, "sbxat1."), "create returns an access token");
                cr_assert_gt(sb->stop_at_ms, sb->created_at_ms);

                /* Get and List show it (List from the other replica). */
                cr_assert_eq(state_of(sb->id), SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING);
                SbxRpcChannel *other = sbx_test_channel(&C, 1, token);
                Sbx__V1__ListSandboxesRequest lreq = SBX__V1__LIST_SANDBOXES_REQUEST__INIT;
                Outcome l = call(other, &sbx_api_sandboxes_list, &lreq.base);
                cr_assert_eq(l.r, 0, "%s", l.message);
                Sbx__V1__ListSandboxesResponse *list = (Sbx__V1__ListSandboxesResponse *)l.sb;
                bool found = false;
                for (size_t k = 0; k < list->n_sandboxes; k++)
                        found |= streq(list->sandboxes[k]->id, sb->id);
                cr_assert(found, "List on the other replica shows %s", sb->id);
                outcome_done(&l);
                sbx_rpc_channel_free(other);

                Sbx__V1__DeleteSandboxRequest dreq = SBX__V1__DELETE_SANDBOX_REQUEST__INIT;
                dreq.id = sb->id;
                dreq.wait = true;
                Outcome d = call(ch, &sbx_api_sandboxes_delete, &dreq.base);
                cr_assert_eq(d.r, 0, "delete: %s", d.message);
                outcome_done(&d);
                cr_assert_neq(
                        wait_state(sb->id, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED, 5 * USEC_PER_SEC),
                        USEC_INFINITY, "deleted sandbox never STOPPED");
                /* Delete is idempotent. */
                d = call(ch, &sbx_api_sandboxes_delete, &dreq.base);
                cr_assert_eq(d.r, 0, "second delete: %s", d.message);
                outcome_done(&d);
                outcome_done(&o);
        }
        cr_assert(wait_usage("acme", 0, 5 * USEC_PER_SEC), "quota not released");
}

Test(scheduler, quota_sixth_create_refused_until_one_is_deleted)
{
        char *ids[5];
        for (int i = 0; i < 5; i++) {
                Outcome o = create(ch, i % 2 ? "ord" : "ams", 0, false);
                cr_assert_eq(o.r, 0, "create %d: %s", i, o.message);
                ids[i] = strdup(o.sb->id);
                outcome_done(&o);
        }
        Outcome sixth = create(ch, "ams", 0, false);
        cr_assert_eq(sixth.code, SBX_STATUS_RESOURCE_EXHAUSTED, "%s: %s", sbx_status_name(sixth.code),
                     sixth.message);
        cr_assert(strstr(sixth.message, "\"acme\"") && strstr(sixth.message, "quota of 5"), "message: %s",
                  sixth.message);

        Sbx__V1__DeleteSandboxRequest dreq = SBX__V1__DELETE_SANDBOX_REQUEST__INIT;
        dreq.id = ids[0];
        dreq.wait = true;
        Outcome d = call(ch, &sbx_api_sandboxes_delete, &dreq.base);
        cr_assert_eq(d.r, 0);
        outcome_done(&d);
        cr_assert(wait_usage("acme", 4, 5 * USEC_PER_SEC));
        Outcome again = create(ch, "ams", 0, false);
        cr_assert_eq(again.r, 0, "after a delete: %s", again.message);
        outcome_done(&again);
        for (int i = 0; i < 5; i++)
                free(ids[i]);
}

/* ---- kill one, create one ---- */

static void setup_slow_stops(void)
{
        /* One slot per node (ams and ord hold two each), quota 3, and agents that take a second to
         * stop a sandbox, as a real one takes a moment to stop its VM. */
        SbxSimOptions o = { .regions = (const char *const[]){ "ams", "ord", NULL },
                            .nodes_per_region = 2,
                            .memory_mb = 16384,
                            .vcpus = 16,
                            .slots = 1,
                            .stop_delay = 1 * USEC_PER_SEC };
        start_with(2, o, 3);
}

static void delete_nowait(const char *id)
{
        Sbx__V1__DeleteSandboxRequest req = SBX__V1__DELETE_SANDBOX_REQUEST__INIT;
        req.id = (char *)id;
        Outcome d = call(ch, &sbx_api_sandboxes_delete, &req.base);
        cr_assert_eq(d.r, 0, "delete %s: %s", id, d.message);
        outcome_done(&d);
}

/* Creates one and says how long it took. */
static Outcome create_timed(const char *region, double *ret_seconds)
{
        usec_t t0 = sbx_now_monotonic();
        Outcome o = create(ch, region, 0, false);
        *ret_seconds = (double)(sbx_now_monotonic() - t0) / USEC_PER_SEC;
        return o;
}

/* With nothing being stopped, a Create that does not fit is refused at once, saying why. */
static Outcome create_refused_at_once(const char *region, const char *why, const char *why_too)
{
        double took;
        Outcome o = create_timed(region, &took);
        cr_assert_eq(o.code, SBX_STATUS_RESOURCE_EXHAUSTED, "%s", o.message);
        cr_assert(strstr(o.message, why) && strstr(o.message, why_too), "%s", o.message);
        cr_assert_lt(took, 1.0, "a refusal with nothing stopping waited %.2f s", took);
        return o;
}

/* Kill one, create one: the Create waits out the stop (a second with these agents) and succeeds. */
static Outcome kill_one_create_one(const char *id, const char *region, const char *what)
{
        double took;
        delete_nowait(id);
        Outcome o = create_timed(region, &took);
        cr_assert_eq(o.r, 0, "create after a kill (%s): %s", what, o.message);
        cr_log_info("create behind a stopping sandbox (%s): %.2f s", what, took);
        cr_assert_geq(took, 0.5, "placed in %.2f s, before the stopping sandbox was stopped", took);
        return o;
}

/* A Create that finds the region full, or the org at its quota, waits for what a sandbox being
 * stopped gives back, instead of failing while the stop is under way; with nothing being stopped
 * it fails at once. */
Test(scheduler_release, create_waits_for_capacity_and_quota_that_stopping_sandboxes_give_back,
     .init = setup_slow_stops, .fini = teardown)
{
        Outcome a = create(ch, "ams", 0, false), b = create(ch, "ams", 0, false);
        cr_assert(a.r == 0 && b.r == 0, "%s %s", a.message, b.message);

        Outcome full = create_refused_at_once("ams", "No capacity in region ams", "2 full");
        Outcome d = kill_one_create_one(a.sb->id, "ams", "capacity");

        /* b, d and e make the quota of 3. */
        Outcome e = create(ch, "ord", 0, false);
        cr_assert_eq(e.r, 0, "%s", e.message);
        Outcome over = create_refused_at_once("ord", "quota of 3", "0 of them stopping");
        Outcome f = kill_one_create_one(e.sb->id, "ord", "quota");
        cr_assert(wait_usage("acme", 3, 5 * USEC_PER_SEC), "the usage key does not read the quota");

        Outcome *all[] = { &a, &b, &full, &d, &e, &over, &f };
        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                outcome_done(all[i]);
}

typedef struct RaceCall {
        bool done;
        SbxStatus code;
} RaceCall;

static void race_cb(const SbxRpcStatus *st, ProtobufCMessage *resp, void *userdata)
{
        RaceCall *r = userdata;
        r->done = true;
        r->code = st->code;
        if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
}

static void node_usage_cb(int error, const Etcdserverpb__RangeResponse *r, void *userdata)
{
        bool *done = userdata;
        *done = true;
        cr_assert_eq(error, 0);
        for (size_t i = 0; i < r->n_kvs; i++) {
                Sbx__V1__NodeUsage *u =
                        sbx__v1__node_usage__unpack(NULL, r->kvs[i]->value.len, r->kvs[i]->value.data);
                cr_assert_not_null(u);
                cr_assert_leq(u->allocated->slots, 2, "a node is over its 2 slots: %u", u->allocated->slots);
                cr_assert_leq(u->allocated->memory_mb, 16384);
                sbx__v1__node_usage__free_unpacked(u, NULL);
        }
}

static void setup_two_slots(void)
{
        /* Two slots per node: 4 nodes hold 8, more than the quota, so the quota is what binds. */
        start(2, 2);
}

Test(scheduler_race, creates_200_from_20_clients_on_two_replicas_exactly_quota, .init = setup_two_slots,
     .fini = teardown, .timeout = 180)
{
        enum { CLIENTS = 20, PER_CLIENT = 10 };
        static RaceCall calls[CLIENTS * PER_CLIENT];
        SbxRpcChannel *chans[CLIENTS];
        unsigned next[CLIENTS] = { 0 };

        memset(calls, 0, sizeof(calls));
        for (int c = 0; c < CLIENTS; c++)
                chans[c] = sbx_test_channel(&C, (unsigned)c % 2, token);

        /* Each client keeps one create in flight, ten in a row; twenty clients race. */
        Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
        SbxRpcCallOptions opts = { .timeout = 60 * USEC_PER_SEC };
        usec_t deadline = sbx_now_monotonic() + 90 * USEC_PER_SEC;
        for (;;) {
                bool all = true;
                for (int c = 0; c < CLIENTS; c++) {
                        unsigned k = next[c];
                        RaceCall *cur = k > 0 ? &calls[c * PER_CLIENT + k - 1] : NULL;
                        if (k < PER_CLIENT && (!cur || cur->done)) {
                                req.region = (char *)(((c + k) % 2) ? "ord" : "ams");
                                cr_assert_eq(sbx_rpc_unary(chans[c], &sbx_api_sandboxes_create, &req.base,
                                                           &opts, race_cb, &calls[c * PER_CLIENT + k], NULL),
                                             0);
                                next[c]++;
                        }
                        if (next[c] < PER_CLIENT || !calls[c * PER_CLIENT + PER_CLIENT - 1].done)
                                all = false;
                }
                if (all || sbx_now_monotonic() > deadline)
                        break;
                uv_run(&C.loop, UV_RUN_ONCE);
        }
        unsigned ok = 0, exhausted = 0, other = 0;
        for (int i = 0; i < CLIENTS * PER_CLIENT; i++) {
                cr_assert(calls[i].done, "call %d did not finish", i);
                if (calls[i].code == SBX_STATUS_OK)
                        ok++;
                else if (calls[i].code == SBX_STATUS_RESOURCE_EXHAUSTED)
                        exhausted++;
                else
                        other++;
        }
        cr_log_info("race: %u created, %u refused for quota, %u other", ok, exhausted, other);
        cr_assert_eq(ok, 5, "exactly the quota succeeds (got %u; %u refused, %u other)", ok, exhausted,
                     other);
        cr_assert_eq(org_usage("acme").sandboxes, 5, "the usage key reads the quota");

        bool done = false;
        cr_assert_eq(sbx_etcd_range(C.etcd_client, SBX_KEY_USAGE_NODES,
                                    &(SbxEtcdRangeOptions){ .prefix = true }, node_usage_cb, &done),
                     0);
        cr_assert_eq(sbx_test_run_until(&C.loop, &done, 5 * USEC_PER_SEC), 0);
        for (int c = 0; c < CLIENTS; c++)
                sbx_rpc_channel_free(chans[c]);
}

Test(scheduler, lost_node_marks_sandboxes_lost_and_releases_quota)
{
        Outcome a = create(ch, "ams", 0, false);
        cr_assert_eq(a.r, 0, "%s", a.message);
        char node[64], id[64];
        snprintf(node, sizeof(node), "%s", a.sb->node);
        snprintf(id, sizeof(id), "%s", a.sb->id);
        outcome_done(&a);
        cr_assert_eq(org_usage("acme").sandboxes, 1);

        usec_t t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_sim_node_revoke(sim, node), 0);
        usec_t took = wait_state(id, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_LOST, 10 * USEC_PER_SEC);
        cr_assert_neq(took, USEC_INFINITY, "sandbox never became LOST");
        cr_assert(wait_usage("acme", 0, 5 * USEC_PER_SEC), "quota of a lost sandbox not released");
        cr_assert_lt(sbx_now_monotonic() - t0, (3 + 2) * USEC_PER_SEC, "not within lease TTL + 2 s");
}

Test(scheduler, crashed_node_lease_expiry_marks_lost_within_ttl_plus_2s)
{
        Outcome a = create(ch, "ord", 0, false);
        cr_assert_eq(a.r, 0, "%s", a.message);
        char node[64], id[64];
        snprintf(node, sizeof(node), "%s", a.sb->node);
        snprintf(id, sizeof(id), "%s", a.sb->id);
        outcome_done(&a);
        usec_t t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_sim_node_crash(sim, node), 0);
        cr_assert_neq(wait_state(id, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_LOST, 10 * USEC_PER_SEC),
                      USEC_INFINITY);
        cr_assert(wait_usage("acme", 0, 5 * USEC_PER_SEC));
        cr_assert_lt(sbx_now_monotonic() - t0, (3 + 2) * USEC_PER_SEC, "not within lease TTL + 2 s");
}

typedef struct LeaderRead {
        bool done;
        char value[64];
} LeaderRead;

static void leader_cb(int error, const Etcdserverpb__RangeResponse *r, void *userdata)
{
        LeaderRead *l = userdata;
        l->done = true;
        l->value[0] = '\0';
        if (error >= 0 && r->n_kvs > 0)
                snprintf(l->value, sizeof(l->value), "%.*s", (int)r->kvs[0]->value.len,
                         (const char *)r->kvs[0]->value.data);
}

static void leader(char out[64])
{
        LeaderRead l = { 0 };
        cr_assert_eq(sbx_etcd_get(C.etcd_client, SBX_KEY_LEADER, leader_cb, &l), 0);
        cr_assert_eq(sbx_test_run_until(&C.loop, &l.done, 5 * USEC_PER_SEC), 0);
        memcpy(out, l.value, 64);
}

Test(scheduler, leader_killed_other_replica_takes_over_and_reconciles)
{
        char who[64];
        usec_t deadline = sbx_now_monotonic() + 10 * USEC_PER_SEC;
        do {
                leader(who);
                if (!*who)
                        sbx_test_cluster_run(&C, 100 * USEC_PER_MSEC);
        } while (!*who && sbx_now_monotonic() < deadline);
        cr_assert(*who, "nobody leads");
        unsigned dead = streq(who, "sched-0") ? 0 : 1, alive = 1 - dead;

        /* A sandbox that expires after the leader is gone: only the new leader can stop it. */
        SbxRpcChannel *survivor = sbx_test_channel(&C, alive, token);
        Outcome o = create(survivor, "ams", 2000, false);
        cr_assert_eq(o.r, 0, "%s", o.message);
        char id[64];
        snprintf(id, sizeof(id), "%s", o.sb->id);
        outcome_done(&o);

        usec_t t0 = sbx_now_monotonic();
        sbx_test_scheduler_stop(&C, dead, SIGKILL);
        char now[64];
        do {
                leader(now);
                if (!streq(now, C.schedulers[alive].name))
                        sbx_test_cluster_run(&C, 100 * USEC_PER_MSEC);
        } while (!streq(now, C.schedulers[alive].name) && sbx_now_monotonic() - t0 < 10 * USEC_PER_SEC);
        usec_t took = sbx_now_monotonic() - t0;
        cr_assert_str_eq(now, C.schedulers[alive].name, "no failover");
        cr_log_info("failover after %.2f s (lease TTL 3 s)", (double)took / 1e6);
        cr_assert_lt(took, (3 + 1) * USEC_PER_SEC, "failover slower than the lease TTL");

        SbxRpcChannel *saved = ch;
        ch = survivor;
        cr_assert_neq(wait_state(id, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED, 8 * USEC_PER_SEC),
                      USEC_INFINITY, "the new leader did not stop the expired sandbox");
        ch = saved;
        sbx_rpc_channel_free(survivor);
}

Test(scheduler, lifetime_expiry_and_extend_capped)
{
        /* 2 s lifetime → STOPPED within 3 s. */
        Outcome o = create(ch, "ams", 2000, false);
        cr_assert_eq(o.r, 0, "%s", o.message);
        char id[64];
        snprintf(id, sizeof(id), "%s", o.sb->id);
        outcome_done(&o);
        usec_t t0 = sbx_now_monotonic();
        cr_assert_neq(wait_state(id, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED, 5 * USEC_PER_SEC),
                      USEC_INFINITY);
        cr_assert_lt(sbx_now_monotonic() - t0, 3 * USEC_PER_SEC, "not STOPPED within 3 s of a 2 s lifetime");

        /* Extend moves the stop time, and is capped at created + the org maximum (30 min). */
        o = create(ch, "ams", 60000, false);
        cr_assert_eq(o.r, 0);
        Sbx__V1__ExtendSandboxRequest ereq = SBX__V1__EXTEND_SANDBOX_REQUEST__INIT;
        ereq.id = o.sb->id;
        int64_t created = o.sb->created_at_ms;
        ereq.stop_at_ms = sbx_now_ms() + 10 * 60 * 1000;
        Outcome e = call(ch, &sbx_api_sandboxes_extend, &ereq.base);
        cr_assert_eq(e.r, 0, "%s", e.message);
        Sbx__V1__ExtendSandboxResponse *er = (Sbx__V1__ExtendSandboxResponse *)e.sb;
        cr_assert_eq(er->stop_at_ms, ereq.stop_at_ms, "a 10-minute extension is granted as asked");
        outcome_done(&e);
        ereq.stop_at_ms = sbx_now_ms() + 2 * 3600 * 1000;
        e = call(ch, &sbx_api_sandboxes_extend, &ereq.base);
        cr_assert_eq(e.r, 0);
        er = (Sbx__V1__ExtendSandboxResponse *)e.sb;
        cr_assert_eq(er->stop_at_ms, created + 30 * 60 * 1000, "capped at created + 30 min");
        outcome_done(&e);
        outcome_done(&o);
}

typedef struct Attached {
        bool got_state;
        bool ended;
        Sbx__V1__SandboxState last;
} Attached;

static void attach_msg(SbxRpcClientCall *c, ProtobufCMessage *m, void *userdata)
{
        Attached *a = userdata;
        Sbx__V1__AttachResponse *r = (Sbx__V1__AttachResponse *)m;
        a->got_state = true;
        if (r->sandbox)
                a->last = r->sandbox->state;
        protobuf_c_message_free_unpacked(m, NULL);
}

static void attach_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        ((Attached *)userdata)->ended = true;
}

Test(scheduler, session_sandbox_stops_after_its_attach_stream_closes)
{
        static const SbxRpcClientCallbacks cbs = { .on_message = attach_msg, .on_status = attach_status };
        Outcome o = create(ch, "ord", 0, true);
        cr_assert_eq(o.r, 0, "%s", o.message);
        char id[64];
        snprintf(id, sizeof(id), "%s", o.sb->id);
        outcome_done(&o);

        Attached a = { 0 };
        SbxRpcClientCall *call_ = NULL;
        Sbx__V1__AttachRequest areq = SBX__V1__ATTACH_REQUEST__INIT;
        areq.id = id;
        cr_assert_eq(sbx_rpc_call_start(ch, &sbx_api_sandboxes_attach, &areq.base, NULL, &cbs, &a, &call_),
                     0);
        cr_assert_eq(sbx_test_run_until(&C.loop, &a.got_state, 5 * USEC_PER_SEC), 0);
        /* Attached well past the grace period: it keeps running. */
        sbx_test_cluster_run(&C, 3 * USEC_PER_SEC);
        cr_assert_eq(state_of(id), SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING);

        usec_t t0 = sbx_now_monotonic();
        sbx_rpc_client_call_cancel(call_);
        cr_assert_neq(wait_state(id, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED, 15 * USEC_PER_SEC),
                      USEC_INFINITY, "session sandbox kept running after its stream closed");
        cr_log_info("session stopped %.2f s after detaching (grace 5 s)",
                    (double)(sbx_now_monotonic() - t0) / 1e6);
        sbx_rpc_client_call_unref(call_);
}

/* ---- authorization and validation ---- */

Test(scheduler, other_orgs_sandbox_is_not_found_and_tokens_are_checked)
{
        Outcome o = create(ch, "ams", 0, false);
        cr_assert_eq(o.r, 0, "%s", o.message);
        char id[64];
        snprintf(id, sizeof(id), "%s", o.sb->id);
        outcome_done(&o);

        char *other_token = sbx_test_org(&C, "globex", 5);
        SbxRpcChannel *other = sbx_test_channel(&C, 1, other_token);
        Sbx__V1__GetSandboxRequest g = SBX__V1__GET_SANDBOX_REQUEST__INIT;
        g.id = id;
        Outcome r = call(other, &sbx_api_sandboxes_get, &g.base);
        cr_assert_eq(r.code, SBX_STATUS_NOT_FOUND, "%s", sbx_status_name(r.code));
        Sbx__V1__DeleteSandboxRequest d = SBX__V1__DELETE_SANDBOX_REQUEST__INIT;
        d.id = id;
        r = call(other, &sbx_api_sandboxes_delete, &d.base);
        cr_assert_eq(r.code, SBX_STATUS_NOT_FOUND, "another org cannot delete it either");
        cr_assert_eq(state_of(id), SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING);

        SbxRpcChannel *anon = sbx_test_channel(&C, 0, NULL);
        r = call(anon, &sbx_api_sandboxes_get, &g.base);
        cr_assert_eq(r.code, SBX_STATUS_UNAUTHENTICATED);
        SbxRpcChannel *wrong = sbx_test_channel(&C, 0, "ddo_not-a-real-token");
        r = call(wrong, &sbx_api_sandboxes_get, &g.base);
        cr_assert_eq(r.code, SBX_STATUS_UNAUTHENTICATED);
        SbxRpcChannel *admin = sbx_test_channel(&C, 0, C.admin_token);
        r = call(admin, &sbx_api_sandboxes_get, &g.base);
        cr_assert_eq(r.code, SBX_STATUS_PERMISSION_DENIED, "admin tokens do not manage sandboxes");
        Sbx__V1__ListOrgsRequest lo = SBX__V1__LIST_ORGS_REQUEST__INIT;
        r = call(ch, &sbx_api_admin_list_orgs, &lo.base);
        cr_assert_eq(r.code, SBX_STATUS_PERMISSION_DENIED, "user tokens do not administer");
        sbx_rpc_channel_free(anon);
        sbx_rpc_channel_free(wrong);
        sbx_rpc_channel_free(admin);
        sbx_rpc_channel_free(other);
        free(other_token);
}

Test(scheduler, bad_inputs_table)
{
        static Sbx__V1__CreateSandboxRequest__LabelsEntry l[6];
        static Sbx__V1__CreateSandboxRequest__LabelsEntry *lp[6];
        char long_key[80];
        memset(long_key, 'k', sizeof(long_key) - 1);
        long_key[sizeof(long_key) - 1] = '\0';
        for (int i = 0; i < 6; i++) {
                sbx__v1__create_sandbox_request__labels_entry__init(&l[i]);
                static char keys[6][8];
                snprintf(keys[i], sizeof(keys[i]), "k%d", i);
                l[i].key = keys[i];
                l[i].value = (char *)"v";
                lp[i] = &l[i];
        }
        Sbx__V1__AllowNet bad_net = SBX__V1__ALLOW_NET__INIT;
        char *entries[] = { (char *)"example.com", (char *)"example.com:99999" };
        bad_net.entries = entries;
        bad_net.n_entries = 2;
        Sbx__V1__SecretInput s1 = SBX__V1__SECRET_INPUT__INIT, *sp[1] = { &s1 };
        s1.name = (char *)"1BAD";
        s1.value = (char *)"x";
        Sbx__V1__SecretInput s2 = SBX__V1__SECRET_INPUT__INIT, *sp2[1] = { &s2 };
        s2.name = (char *)"TOKEN";
        s2.value = (char *)"x";

        struct {
                const char *name;
                Sbx__V1__CreateSandboxRequest req;
                SbxStatus code;
                const char *message;
        } cases[] = {
                { "memory too small",
                  { .memory_mb = 500 },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "memory_mb: 500 is out of range; allowed: 768..4096 MiB" },
                { "memory too large",
                  { .memory_mb = 5000 },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "memory_mb: 5000 is out of range; allowed: 768..4096 MiB" },
                { "lifetime over the org maximum",
                  { .lifetime_ms = 3600000 },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "lifetime_ms: 3600000 (1h) is out of range; allowed: 1s..30m" },
                { "lifetime too short",
                  { .lifetime_ms = 10 },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "lifetime_ms: 10 (10ms) is out of range; allowed: 1s..30m" },
                { "session with lifetime",
                  { .lifetime_ms = 1000, .session = true },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "lifetime_ms: a session sandbox lives while attached and takes no lifetime (got 1000)" },
                { "six labels",
                  { .labels = lp, .n_labels = 6 },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "labels: 6 labels given; at most 5 are allowed" },
                { "unknown region",
                  { .region = (char *)"xyz" },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "region: no live node serves region \"xyz\"; known regions: ams, ord" },
                { "malformed region",
                  { .region = (char *)"Amsterdam" },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "region: \"Amsterdam\" is not a region name (three lowercase letters)" },
                { "bad allow_net port",
                  { .allow_net = &bad_net },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "allow_net[1]: \"example.com:99999\": port must be a number in 1..65535 (allowed: host, "
                  "*.domain, IPv4 or [IPv6], each with an optional :port)" },
                { "bad secret name",
                  { .secrets = sp, .n_secrets = 1 },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "secrets[0]: name \"1BAD\" is not a valid environment variable name "
                  "([A-Za-z_][A-Za-z0-9_]*, at most 128 bytes)" },
                { "secret without hosts",
                  { .secrets = sp2, .n_secrets = 1 },
                  SBX_STATUS_INVALID_ARGUMENT,
                  "secrets[0] (TOKEN): at least one host is required: the value is only ever sent to the "
                  "hosts named" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Sbx__V1__CreateSandboxRequest req = cases[i].req;
                req.base = (ProtobufCMessage)PROTOBUF_C_MESSAGE_INIT(
                        &sbx__v1__create_sandbox_request__descriptor);
                if (!req.region)
                        req.region = (char *)"";
                Outcome o = call(ch, &sbx_api_sandboxes_create, &req.base);
                cr_expect_eq(o.code, cases[i].code, "%s: got %s: %s", cases[i].name, sbx_status_name(o.code),
                             o.message);
                cr_expect_str_eq(o.message, cases[i].message, "%s", cases[i].name);
                outcome_done(&o);
        }
        /* A long label key, and an invalid id on Get. */
        l[0].key = long_key;
        Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
        req.labels = lp;
        req.n_labels = 1;
        Outcome o = call(ch, &sbx_api_sandboxes_create, &req.base);
        cr_expect_eq(o.code, SBX_STATUS_INVALID_ARGUMENT);
        cr_expect(strstr(o.message, "is 79 bytes; at most 64 are allowed"), "%s", o.message);
        Sbx__V1__GetSandboxRequest g = SBX__V1__GET_SANDBOX_REQUEST__INIT;
        g.id = (char *)"not-an-id";
        o = call(ch, &sbx_api_sandboxes_get, &g.base);
        cr_expect_eq(o.code, SBX_STATUS_INVALID_ARGUMENT);
        g.id = (char *)"sbx_ams_00000000000000000000";
        o = call(ch, &sbx_api_sandboxes_get, &g.base);
        cr_expect_eq(o.code, SBX_STATUS_NOT_FOUND);
        /* Nothing was created by any of it. */
        cr_assert_eq(org_usage("acme").sandboxes, 0);
}

Test(scheduler, metrics_pass_promtool)
{
        Outcome o = create(ch, "ams", 0, false);
        cr_assert_eq(o.r, 0);
        outcome_done(&o);
        char cmd[256];
        snprintf(cmd, sizeof(cmd),
                 "curl -fsS http://127.0.0.1:%d/metrics > %s/metrics.txt && promtool check metrics < "
                 "%s/metrics.txt",
                 C.schedulers[0].metrics_port, C.dir, C.dir);
        cr_assert_eq(system(cmd), 0, "promtool refused the scheduler's /metrics");
        snprintf(cmd, sizeof(cmd),
                 "grep -q '^sbx_scheduler_placements_total{region=\"ams\",result=\"placed\"} 1' "
                 "%s/metrics.txt && "
                 "grep -q '^sbx_rpc_server_requests_total{method=\"/sbx.v1.Sandboxes/Create\",code=\"OK\"} "
                 "1' %s/metrics.txt",
                 C.dir, C.dir);
        cr_assert_eq(system(cmd), 0, "the create is not counted in /metrics");
}

/* ---- the reconciler under a node loss, and shutdown in the middle of it ---- */

/* The value of an unlabelled metric on scheduler i's /metrics, or -1. */
static double metric(unsigned i, const char *name)
{
        char cmd[256], line[512];
        double v = -1;
        snprintf(cmd, sizeof(cmd), "curl -fsS http://127.0.0.1:%d/metrics", C.schedulers[i].metrics_port);
        FILE *f = popen(cmd, "r");
        if (!f)
                return -1;
        size_t n = strlen(name);
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, name, n) == 0 && line[n] == ' ')
                        v = strtod(line + n + 1, NULL);
        pclose(f);
        return v;
}

static bool log_has(unsigned i, const char *needle)
{
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "grep -qF '%s' %s", needle, C.schedulers[i].log);
        return system(cmd) == 0;
}

typedef struct Placed {
        bool done;
        SbxStatus code;
        char node[64];
        char id[64];
} Placed;

static void placed_cb(const SbxRpcStatus *st, ProtobufCMessage *resp, void *userdata)
{
        Placed *p = userdata;
        p->done = true;
        p->code = st->code;
        if (resp) {
                Sbx__V1__Sandbox *sb = (Sbx__V1__Sandbox *)resp;
                snprintf(p->node, sizeof(p->node), "%s", sb->node);
                snprintf(p->id, sizeof(p->id), "%s", sb->id);
                protobuf_c_message_free_unpacked(resp, NULL);
        }
}

static void setup_big_nodes(void)
{
        /* One scheduler (so it leads), four roomy nodes in one region. */
        SbxSimOptions o = { .regions = (const char *const[]){ "ams", NULL },
                            .nodes_per_region = 4,
                            .memory_mb = 1u << 30,
                            .vcpus = 1u << 20,
                            .slots = 100000,
                            .boot_delay = 0 };
        start_with(1, o, 100000);
}

/* Creates n sandboxes in ams, `conc` at a time, each with the given lifetime (0: the default). */
static void create_many(Placed *p, unsigned n, unsigned conc, uint64_t lifetime_ms)
{
        Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
        SbxRpcCallOptions opts = { .timeout = 60 * USEC_PER_SEC };
        unsigned issued = 0, done = 0;

        memset(p, 0, n * sizeof(*p));
        req.region = (char *)"ams";
        req.lifetime_ms = lifetime_ms;
        usec_t deadline = sbx_now_monotonic() + 120 * USEC_PER_SEC;
        while (done < n && sbx_now_monotonic() < deadline) {
                unsigned running = 0;
                done = 0;
                for (unsigned i = 0; i < issued; i++) {
                        done += p[i].done;
                        running += !p[i].done;
                }
                for (; running < conc && issued < n; running++, issued++)
                        cr_assert_eq(sbx_rpc_unary(ch, &sbx_api_sandboxes_create, &req.base, &opts,
                                                   placed_cb, &p[issued], NULL),
                                     0);
                uv_run(&C.loop, UV_RUN_ONCE);
        }
        cr_assert_eq(done, n, "only %u of %u creates finished", done, n);
        for (unsigned i = 0; i < n; i++)
                cr_assert_eq(p[i].code, SBX_STATUS_OK, "create %u failed: %s", i,
                             sbx_status_name(p[i].code));
}

Test(scheduler_big, sandboxes_expiring_together_are_stopped_at_most_64_at_a_time, .init = setup_big_nodes,
     .fini = teardown, .timeout = 180)
{
        enum { N = 300 };
        static Placed p[N];

        /* One stop time for all of them (Extend moves it): the deadline heap hands every one of
         * them to the reconciler at the same moment. */
        create_many(p, N, 8, 0);
        int64_t stop_at = sbx_now_ms() + 3000;
        for (unsigned i = 0; i < N; i++) {
                Sbx__V1__ExtendSandboxRequest ext = SBX__V1__EXTEND_SANDBOX_REQUEST__INIT;
                ext.id = p[i].id;
                ext.stop_at_ms = stop_at;
                Outcome o = call(ch, &sbx_api_sandboxes_extend, &ext.base);
                cr_assert_eq(o.r, 0, "Extend %s: %s", p[i].id, o.message);
                outcome_done(&o);
        }
        cr_assert_lt(sbx_now_ms(), stop_at, "extending took too long for the test to mean anything");

        double max_in_flight = 0;
        usec_t deadline = sbx_now_monotonic() + 30 * USEC_PER_SEC;
        while (org_usage("acme").sandboxes > 0 && sbx_now_monotonic() < deadline) {
                double v = metric(0, "sbx_scheduler_reconcile_in_flight");
                if (v > max_in_flight)
                        max_in_flight = v;
                sbx_test_cluster_run(&C, 10 * USEC_PER_MSEC);
        }
        cr_assert_eq(org_usage("acme").sandboxes, 0, "the expired sandboxes did not all end");
        cr_log_info("at most %.0f reconciler actions in flight seen", max_in_flight);
        cr_assert_leq(max_in_flight, 64);
        cr_assert(log_has(0, "Reconciler at its limit of 64"), "the reconciler never reached its bound");
        cr_assert(log_has(0, "Reconciler caught up"));
        for (unsigned i = 0; i < N; i += 29)
                cr_assert_eq(state_of(p[i].id), SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED);
}

Test(scheduler_big, lost_node_with_hundreds_of_sandboxes_and_a_shutdown_in_the_middle,
     .init = setup_big_nodes, .fini = teardown, .timeout = 180)
{
        enum { N = 400 };
        static Placed p[N];

        create_many(p, N, 8, 0);

        /* The node with the most sandboxes goes. */
        char lost[64] = "";
        unsigned on_lost = 0;
        for (unsigned k = 0; k < 4; k++) {
                const char *name = sbx_sim_node_name(sim, k);
                unsigned count = 0;
                for (unsigned i = 0; i < N; i++)
                        count += streq(p[i].node, name);
                if (count > on_lost) {
                        on_lost = count;
                        snprintf(lost, sizeof(lost), "%s", name);
                }
        }
        cr_log_info("%u sandboxes on %s, the node that is lost", on_lost, lost);
        cr_assert_gt(on_lost, 64);
        cr_assert_eq(org_usage("acme").sandboxes, N);

        /* Their finalizations all rewrite the same usage keys, so the reconciler runs them one
         * after the other. A shutdown in the middle does not wait for them: the next leader redoes
         * whatever was not finished. */
        cr_assert_eq(sbx_sim_node_revoke(sim, lost), 0);
        usec_t deadline = sbx_now_monotonic() + 10 * USEC_PER_SEC;
        while (org_usage("acme").sandboxes == N && sbx_now_monotonic() < deadline)
                sbx_test_cluster_run(&C, 5 * USEC_PER_MSEC);
        unsigned at_stop = org_usage("acme").sandboxes;
        cr_assert_lt(at_stop, N, "the reconciler did not start on the lost node");
        usec_t t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_test_scheduler_stop(&C, 0, SIGTERM), 0, "the scheduler did not exit cleanly");
        usec_t took = sbx_now_monotonic() - t0;
        cr_log_info("SIGTERM with %u of %u lost sandboxes still holding quota; exit after %.2f s",
                    at_stop - (N - on_lost), on_lost, (double)took / 1e6);
        cr_assert_lt(took, 4 * USEC_PER_SEC, "shutdown took %.2f s", (double)took / 1e6);

        t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_test_scheduler_start(&C, 0), 0);
        cr_assert(wait_usage("acme", N - on_lost, 60 * USEC_PER_SEC),
                  "the quota of the lost sandboxes was not released after the restart (usage %u, want %u)",
                  org_usage("acme").sandboxes, N - on_lost);
        /* The counter appears with the first conflict. */
        double conflicts = SBX_MAX(metric(0, "sbx_scheduler_txn_conflicts_total{op=\"finalize\"}"), 0.0);
        cr_log_info("restart to quota released: %.2f s, %.0f finalize conflicts",
                    (double)(sbx_now_monotonic() - t0) / 1e6, conflicts);
        /* One release per usage key at a time: they do not fight over the keys. */
        cr_assert_leq(conflicts, 5);
        for (unsigned i = 0; i < N; i += 37)
                if (streq(p[i].node, lost))
                        cr_assert_neq(wait_state(p[i].id, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_LOST,
                                                 5 * USEC_PER_SEC),
                                      USEC_INFINITY, "%s is not LOST", p[i].id);
}

/* ---- read-your-writes on admin calls ---- */

static void ignore_put(int error, const Etcdserverpb__PutResponse *r, void *userdata)
{
        unsigned *left = userdata;
        (*left)--;
}

Test(scheduler, admin_writes_are_visible_to_the_next_call_on_the_same_replica)
{
        SbxRpcChannel *admin = sbx_test_channel(&C, 0, C.admin_token);
        unsigned left = 0;

        /* CreateToken looks the org up in the replica's mirror: it must find the org CreateOrg just
         * wrote, every time — also while the mirror's watch is busy with other writes (here, keys the
         * mirror receives and ignores, written at the same time as the org). */
        for (int i = 0; i < 40; i++) {
                char name[32];
                for (int k = 0; k < 200; k++) {
                        char key[96];
                        snprintf(key, sizeof(key), SBX_KEY_ASSIGN "ryw-load/%02d-%03d", i, k);
                        if (sbx_etcd_put(C.etcd_client, key, "x", 1, 0, ignore_put, &left) >= 0)
                                left++;
                }
                snprintf(name, sizeof(name), "ryw-%02d", i);
                Sbx__V1__CreateOrgRequest org = SBX__V1__CREATE_ORG_REQUEST__INIT;
                org.name = name;
                org.max_sandboxes = 3;
                Outcome o = call(admin, &sbx_api_admin_create_org, &org.base);
                cr_assert_eq(o.r, 0, "CreateOrg %s: %s", name, o.message);
                outcome_done(&o);
                Sbx__V1__CreateTokenRequest tok = SBX__V1__CREATE_TOKEN_REQUEST__INIT;
                tok.org = name;
                tok.role = SBX__V1__ROLE__ROLE_USER;
                o = call(admin, &sbx_api_admin_create_token, &tok.base);
                cr_assert_eq(o.r, 0, "CreateToken right after CreateOrg %s: %s: %s", name,
                             sbx_status_name(o.code), o.message);
                outcome_done(&o);
        }
        usec_t deadline = sbx_now_monotonic() + 10 * USEC_PER_SEC;
        while (left > 0 && sbx_now_monotonic() < deadline)
                uv_run(&C.loop, UV_RUN_ONCE);

        /* A raised quota holds for the very next Create. */
        Sbx__V1__UpdateOrgRequest up = SBX__V1__UPDATE_ORG_REQUEST__INIT;
        up.name = (char *)"acme";
        up.max_sandboxes = 1;
        Outcome o = call(admin, &sbx_api_admin_update_org, &up.base);
        cr_assert_eq(o.r, 0, "%s", o.message);
        outcome_done(&o);
        o = create(ch, "ams", 0, false);
        cr_assert_eq(o.r, 0, "%s", o.message);
        outcome_done(&o);
        o = create(ch, "ams", 0, false);
        cr_assert_eq(o.code, SBX_STATUS_RESOURCE_EXHAUSTED, "quota 1 was not applied: %s", o.message);
        outcome_done(&o);
        up.max_sandboxes = 2;
        o = call(admin, &sbx_api_admin_update_org, &up.base);
        cr_assert_eq(o.r, 0, "%s", o.message);
        outcome_done(&o);
        o = create(ch, "ams", 0, false);
        cr_assert_eq(o.r, 0, "quota 2 was not applied at once: %s", o.message);
        outcome_done(&o);
        sbx_rpc_channel_free(admin);
}
