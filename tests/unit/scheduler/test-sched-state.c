/* SPDX-License-Identifier: Apache-2.0 */
/* scheduler/sched-state.c without etcd: what applying keys does to the mirror's entries, its
 * indexes (nodes by region, sandboxes by node) and the usage this replica knows ahead of it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/store/store.h"
#include "scheduler/sched-state.h"

static SchedState *st;
static int64_t rev;

static void setup(void)
{
        cr_assert_eq(sched_state_new(NULL, &st), 0);
        rev = 100;
}

static void teardown(void)
{
        st = sched_state_free(st);
}

TestSuite(state, .init = setup, .fini = teardown);

static void put(const char *key, const ProtobufCMessage *m)
{
        _cleanup_free_ uint8_t *v = NULL;
        size_t n = 0;
        cr_assert_eq(sbx_store_pack(m, &v, &n), 0);
        sched_state_apply(st, key, strlen(key), false, v, n, ++rev);
}

static void del(const char *key)
{
        sched_state_apply(st, key, strlen(key), true, NULL, 0, ++rev);
}

static void put_node(const char *name, const char *region)
{
        Sbx__V1__Node n = SBX__V1__NODE__INIT;
        Sbx__V1__Resources cap = SBX__V1__RESOURCES__INIT;
        char key[128];
        cap.memory_mb = 16384;
        cap.vcpus = 16;
        cap.slots = 8;
        n.name = (char *)name;
        n.region = (char *)region;
        n.capacity = &cap;
        snprintf(key, sizeof(key), SBX_KEY_NODES "%s", name);
        put(key, &n.base);
}

static void put_record_desired(const char *id, const char *node, Sbx__V1__SandboxState final,
                               Sbx__V1__DesiredState desired)
{
        Sbx__V1__SandboxRecord r = SBX__V1__SANDBOX_RECORD__INIT;
        char key[128];
        r.id = (char *)id;
        r.org = (char *)"acme";
        r.node = (char *)node;
        r.final_state = final;
        r.desired = desired;
        snprintf(key, sizeof(key), SBX_KEY_SANDBOXES "%s", id);
        put(key, &r.base);
}

static void put_record(const char *id, const char *node, Sbx__V1__SandboxState final)
{
        put_record_desired(id, node, final, SBX__V1__DESIRED_STATE__DESIRED_STATE_RUNNING);
}

static size_t region_size(const char *region)
{
        SchedNode *const *nodes;
        size_t n = sched_state_region_nodes(st, region, &nodes);
        for (size_t i = 0; i < n; i++)
                cr_assert_str_eq(nodes[i]->node->region, region);
        return n;
}

static bool on_node(const char *node, const char *id)
{
        SchedNode *n = sched_state_node(st, node);
        for (SchedSandbox *sb = n ? LIST_FIRST(&n->sandboxes) : NULL; sb; sb = LIST_NEXT(sb, node_link))
                if (streq(sb->id, id))
                        return true;
        return false;
}

Test(state, live_nodes_are_indexed_by_region)
{
        put_node("a1", "ams");
        put_node("a2", "ams");
        put_node("o1", "ord");
        cr_assert_eq(region_size("ams"), 2);
        cr_assert_eq(region_size("ord"), 1);
        cr_assert_eq(region_size("xyz"), 0);

        /* A node that moves region moves in the index; one whose lease goes leaves it. */
        put_node("a2", "ord");
        cr_assert_eq(region_size("ams"), 1);
        cr_assert_eq(region_size("ord"), 2);
        del(SBX_KEY_NODES "o1");
        cr_assert_eq(region_size("ord"), 1);
        del(SBX_KEY_NODES "a1");
        cr_assert_eq(region_size("ams"), 0);

        char **regions = sched_state_regions(st);
        cr_assert_not_null(regions);
        cr_assert_eq(strv_length(regions), 1, "a region without live nodes is not listed");
        cr_assert_str_eq(regions[0], "ord");
        strv_free(regions);
}

Test(state, sandboxes_are_listed_on_their_node_until_they_end)
{
        put_node("a1", "ams");
        put_record("sb-1", "a1", SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED);
        put_record("sb-2", "a1", SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED);
        cr_assert_eq(sched_state_node(st, "a1")->active, 2);
        cr_assert(on_node("a1", "sb-1") && on_node("a1", "sb-2"));

        put_record("sb-1", "a1", SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED);
        cr_assert_eq(sched_state_node(st, "a1")->active, 1);
        cr_assert(!on_node("a1", "sb-1"), "an ended sandbox left its node's list");
        cr_assert_not_null(sched_state_sandbox(st, "sb-1"), "but stays in the mirror");

        /* A record on a node that is gone keeps a node entry (not alive) holding it: that is how
         * the reconciler finds the sandboxes of a lost node. */
        del(SBX_KEY_NODES "a1");
        SchedNode *n = sched_state_node(st, "a1");
        cr_assert_not_null(n);
        cr_assert(!sched_node_alive(n));
        cr_assert(on_node("a1", "sb-2"));
        del(SBX_KEY_SANDBOXES "sb-2");
        cr_assert_null(sched_state_sandbox(st, "sb-2"));
        cr_assert_null(sched_state_node(st, "a1"), "an empty, dead node entry is dropped");
}

Test(state, sandboxes_asked_to_stop_are_counted_on_their_node_and_org_until_they_end)
{
        const Sbx__V1__SandboxState live = SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED;
        const Sbx__V1__DesiredState run = SBX__V1__DESIRED_STATE__DESIRED_STATE_RUNNING,
                                    stop = SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED;
        put_node("a1", "ams");
        put_record("sb-1", "a1", live);
        put_record("sb-2", "a1", live);
        cr_assert_eq(sched_state_node(st, "a1")->stopping, 0);

        put_record_desired("sb-1", "a1", live, stop);
        put_record_desired("sb-2", "a1", live, stop);
        put_record_desired("sb-2", "a1", live, stop); /* the same news twice counts once */
        cr_assert_eq(sched_state_node(st, "a1")->stopping, 2);
        SchedOrg *o = sched_state_org(st, "acme");
        cr_assert_not_null(o, "an org with sandboxes stopping is kept, even before its record is read");
        cr_assert_eq(o->stopping, 2);

        put_record_desired("sb-1", "a1", SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED, stop);
        cr_assert_eq(sched_state_node(st, "a1")->stopping, 1, "an ended sandbox no longer counts");
        cr_assert_eq(sched_state_org(st, "acme")->stopping, 1);
        put_record_desired("sb-2", "a1", live, run);
        cr_assert_eq(sched_state_node(st, "a1")->stopping, 0);
        cr_assert_null(sched_state_org(st, "acme"), "nothing holds the org entry any more");
}

Test(state, usage_known_ahead_of_the_mirror_until_the_watch_catches_up)
{
        Sbx__V1__NodeUsage u = SBX__V1__NODE_USAGE__INIT;
        Sbx__V1__Resources a = SBX__V1__RESOURCES__INIT;
        a.memory_mb = 1280;
        a.vcpus = 2;
        a.slots = 1;
        u.allocated = &a;
        put_node("a1", "ams");
        put(SBX_KEY_USAGE_NODES "a1", &u.base);
        int64_t at = rev;
        SchedNode *n = sched_state_node(st, "a1");

        SchedUsage now = sched_node_usage(n);
        cr_assert_eq(now.count, 1);
        cr_assert_eq(now.rev, at);

        /* This replica's Txn wrote a newer value: it wins until the mirror sees that revision. */
        sched_usage_learn(&n->known, 2560, 4, 2, at + 5);
        now = sched_node_usage(n);
        cr_assert_eq(now.count, 2);
        cr_assert_eq(now.rev, at + 5);
        sched_usage_learn(&n->known, 0, 0, 0, at + 3);
        cr_assert_eq(sched_node_usage(n).rev, at + 5, "older knowledge never replaces newer");

        a.slots = 3;
        rev = at + 5;
        put(SBX_KEY_USAGE_NODES "a1", &u.base);
        now = sched_node_usage(n);
        cr_assert_eq(now.count, 3, "the mirror is as new or newer: it wins");
        cr_assert_eq(now.rev, at + 6);

        /* A deletion supersedes it too (its revision is the deletion's). */
        sched_usage_learn(&n->known, 2560, 4, 2, rev + 1);
        del(SBX_KEY_USAGE_NODES "a1");
        now = sched_node_usage(n);
        cr_assert_eq(now.count, 0);
        cr_assert_eq(now.rev, 0);
}

static void wait_cb(int error, void *userdata)
{
        *(int *)userdata = error;
}

Test(state, revision_waits_end_when_the_mirror_goes)
{
        int got = 1;
        SchedStateWait *w = NULL;

        /* Not ready (never read from etcd): nothing is "already there". */
        cr_assert_eq(sched_state_wait_revision(st, 5, wait_cb, &got, &w), 0);
        cr_assert_not_null(w);
        int other = 1;
        SchedStateWait *w2 = NULL;
        cr_assert_eq(sched_state_wait_revision(st, 6, wait_cb, &other, &w2), 0);
        sched_state_wait_cancel(st, w2);
        st = sched_state_free(st);
        cr_assert_eq(got, -ECANCELED);
        cr_assert_eq(other, 1, "a cancelled wait never runs");
}
