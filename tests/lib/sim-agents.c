/* SPDX-License-Identifier: Apache-2.0 */
/* SIMULATED agents (see sim-agents.h). */
#include "tests/lib/sim-agents.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/hashmap.h"
#include "common/base/random-util.h"
#include "common/base/string-util.h"
#include "common/store/store.h"
#include "proto/sbx/v1/state.pb-c.h"

typedef struct SimNode {
        SbxSimCluster *c;
        char name[64];
        char region[8];
        SbxEtcdLease *lease;
        bool registered;
        bool crashed;
} SimNode;

typedef struct SimSandbox {
        SbxSimCluster *c;
        char id[SBX_KEY_NAME_MAX + 1];
        SimNode *node;
        uv_timer_t boot;
        bool running;
        bool stopped;
        usec_t assigned_at;
} SimSandbox;

struct SbxSimCluster {
        SbxEtcd *etcd;
        SbxSimOptions o;
        char *data_address;
        SimNode *nodes;
        unsigned n_nodes;
        SbxEtcdLease *shared;
        SbxHashmap *by_name;
        SbxHashmap *sandboxes;
        SbxEtcdWatch *assign_watch, *record_watch;
        SbxSimStats stats;
};

static uv_loop_t *loop_of(SbxSimCluster *c);

static void put_done(int error, const Etcdserverpb__PutResponse *r, void *userdata)
{
}

static void write_status(SimSandbox *sb, Sbx__V1__SandboxState state, const char *reason)
{
        Sbx__V1__SandboxStatus st = SBX__V1__SANDBOX_STATUS__INIT;
        _cleanup_free_ char *key = NULL;
        _cleanup_free_ uint8_t *v = NULL;
        size_t n;

        st.state = state;
        st.reason = (char *)(reason ? reason : "");
        st.node = sb->node->name;
        st.updated_at_ms = sbx_now_ms();
        if (state == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING) {
                st.started_at_ms = st.updated_at_ms;
                st.boot_duration_us = sbx_now_monotonic() - sb->assigned_at;
        }
        if (state == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED ||
            state == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED)
                st.stopped_at_ms = st.updated_at_ms;
        if (sbx_key_new(&key, SBX_KEY_STATUS "%s", sb->id) < 0 || sbx_store_pack(&st.base, &v, &n) < 0)
                return;
        sbx_etcd_put(sb->c->etcd, key, v, n, 0, put_done, NULL);
}

static void sandbox_closed(uv_handle_t *h)
{
        free(h->data);
}

static void sandbox_drop(SbxSimCluster *c, const char *id)
{
        SimSandbox *sb = sbx_hashmap_remove(c->sandboxes, id);
        if (sb)
                uv_close((uv_handle_t *)&sb->boot, sandbox_closed);
}

static void on_boot(uv_timer_t *t)
{
        SimSandbox *sb = t->data;
        SbxSimCluster *c = sb->c;

        if (sb->stopped || sb->node->crashed)
                return;
        if (c->o.failure_rate > 0 && (double)sbx_random_below(1000000) / 1e6 < c->o.failure_rate) {
                c->stats.failed++;
                write_status(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED, "simulated boot failure");
                return;
        }
        sb->running = true;
        c->stats.running++;
        write_status(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING, NULL);
}

static void on_stopped(uv_timer_t *t)
{
        SimSandbox *sb = t->data;
        if (!sb->node->crashed)
                write_status(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED, "stopped");
}

static void on_assign(SbxEtcdWatch *w, const Etcdserverpb__WatchResponse *r, void *userdata)
{
        SbxSimCluster *c = userdata;
        char a[SBX_KEY_NAME_MAX + 1], b[SBX_KEY_NAME_MAX + 1];

        for (size_t i = 0; i < r->n_events; i++) {
                const Etcdserverpb__Event *ev = r->events[i];
                if (!ev->kv || sbx_key_parse(ev->kv->key.data, ev->kv->key.len, a, b) != SBX_KEY_KIND_ASSIGN)
                        continue;
                SimNode *node = sbx_hashmap_get(c->by_name, a);
                if (!node || node->crashed)
                        continue;
                if (ev->type == ETCDSERVERPB__EVENT__EVENT_TYPE__DELETE) {
                        sandbox_drop(c, b);
                        continue;
                }
                if (sbx_hashmap_get(c->sandboxes, b))
                        continue;
                SimSandbox *sb = calloc(1, sizeof(SimSandbox));
                if (!sb || sbx_hashmap_put(c->sandboxes, b, sb, NULL) < 0) {
                        free(sb);
                        continue;
                }
                sb->c = c;
                sb->node = node;
                sb->assigned_at = sbx_now_monotonic();
                snprintf(sb->id, sizeof(sb->id), "%s", b);
                uv_timer_init(loop_of(c), &sb->boot);
                sb->boot.data = sb;
                c->stats.assigned++;
                if (c->o.boot_delay > 0)
                        write_status(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STARTING, NULL);
                uv_timer_start(&sb->boot, on_boot, sbx_usec_to_msec_ceil(c->o.boot_delay), 0);
        }
}

static void on_record(SbxEtcdWatch *w, const Etcdserverpb__WatchResponse *r, void *userdata)
{
        SbxSimCluster *c = userdata;
        char a[SBX_KEY_NAME_MAX + 1], b[SBX_KEY_NAME_MAX + 1];

        for (size_t i = 0; i < r->n_events; i++) {
                const Etcdserverpb__Event *ev = r->events[i];
                if (!ev->kv || ev->type != ETCDSERVERPB__EVENT__EVENT_TYPE__PUT ||
                    sbx_key_parse(ev->kv->key.data, ev->kv->key.len, a, b) != SBX_KEY_KIND_SANDBOX)
                        continue;
                SimSandbox *sb = sbx_hashmap_get(c->sandboxes, a);
                if (!sb || sb->stopped || sb->node->crashed)
                        continue;
                Sbx__V1__SandboxRecord *rec = NULL;
                if (sbx_store_unpack(&sbx__v1__sandbox_record__descriptor, ev->kv->value.data,
                                     ev->kv->value.len, (ProtobufCMessage **)&rec) < 0)
                        continue;
                if (rec->desired == SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED) {
                        sb->stopped = true;
                        uv_timer_stop(&sb->boot);
                        c->stats.stopped++;
                        /* The boot timer is done with: it times the stop now. */
                        if (c->o.stop_delay > 0)
                                uv_timer_start(&sb->boot, on_stopped, sbx_usec_to_msec_ceil(c->o.stop_delay),
                                               0);
                        else
                                write_status(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED,
                                             rec->stop_reason);
                }
                protobuf_c_message_free_unpacked(&rec->base, NULL);
        }
}

static void register_node(SimNode *n, int64_t lease)
{
        SbxSimCluster *c = n->c;
        Sbx__V1__Node node = SBX__V1__NODE__INIT;
        Sbx__V1__Resources cap = SBX__V1__RESOURCES__INIT;
        _cleanup_free_ char *key = NULL;
        _cleanup_free_ uint8_t *v = NULL;
        size_t len;

        cap.memory_mb = c->o.memory_mb;
        cap.vcpus = c->o.vcpus;
        cap.slots = c->o.slots;
        node.name = n->name;
        node.region = n->region;
        node.data_address = c->data_address;
        node.capacity = &cap;
        node.version = (char *)"simulated";
        node.registered_at_ms = sbx_now_ms();
        node.accelerator = (char *)"simulated";
        node.vmm = (char *)"simulated";
        node.lease_id = lease;
        if (sbx_key_new(&key, SBX_KEY_NODES "%s", n->name) < 0 || sbx_store_pack(&node.base, &v, &len) < 0)
                return;
        if (sbx_etcd_put(c->etcd, key, v, len, lease, put_done, NULL) >= 0)
                n->registered = true;
}

static void node_lease_granted(SbxEtcdLease *l, int error, void *userdata)
{
        SimNode *n = userdata;
        if (error >= 0)
                register_node(n, sbx_etcd_lease_id(l));
}

static void shared_lease_granted(SbxEtcdLease *l, int error, void *userdata)
{
        SbxSimCluster *c = userdata;
        if (error < 0)
                return;
        for (unsigned i = 0; i < c->n_nodes; i++)
                register_node(&c->nodes[i], sbx_etcd_lease_id(l));
}

static uv_loop_t *loop_of(SbxSimCluster *c)
{
        return c->o.loop;
}

int sbx_sim_cluster_new(SbxEtcd *etcd, const SbxSimOptions *o, SbxSimCluster **ret)
{
        static const SbxEtcdWatchCallbacks assign_cbs = { .on_events = on_assign };
        static const SbxEtcdWatchCallbacks record_cbs = { .on_events = on_record };
        static const SbxEtcdLeaseCallbacks shared_cbs = { .on_granted = shared_lease_granted };
        static const SbxEtcdLeaseCallbacks node_cbs = { .on_granted = node_lease_granted };
        SbxSimCluster *c = calloc(1, sizeof(SbxSimCluster));
        size_t n_regions = strv_length((char *const *)o->regions);
        int r;

        if (!c)
                return -ENOMEM;
        if (!o->loop) {
                free(c);
                return -EINVAL;
        }
        c->etcd = etcd;
        c->o = *o;
        if (c->o.lease_ttl < 2)
                c->o.lease_ttl = 5;
        c->data_address = strdup(o->data_address ? o->data_address : "127.0.0.1:1");
        c->n_nodes = (unsigned)n_regions * o->nodes_per_region;
        c->nodes = calloc(c->n_nodes ? c->n_nodes : 1, sizeof(SimNode));
        if (!c->data_address || !c->nodes || sbx_hashmap_new(&c->by_name) < 0 ||
            sbx_hashmap_new(&c->sandboxes) < 0) {
                sbx_sim_cluster_free(c);
                return -ENOMEM;
        }
        for (size_t ri = 0, k = 0; ri < n_regions; ri++)
                for (unsigned i = 0; i < o->nodes_per_region; i++, k++) {
                        SimNode *n = &c->nodes[k];
                        n->c = c;
                        snprintf(n->region, sizeof(n->region), "%s", o->regions[ri]);
                        snprintf(n->name, sizeof(n->name), "%s-%s-%u",
                                 o->name_prefix ? o->name_prefix : "sim", o->regions[ri], i);
                        sbx_hashmap_put(c->by_name, n->name, n, NULL);
                }
        /* Watch from now: the scheduler assigns only after the nodes exist. */
        if ((r = sbx_etcd_watch(etcd, SBX_KEY_ASSIGN, true, 0, false, &assign_cbs, c, &c->assign_watch)) <
                    0 ||
            (r = sbx_etcd_watch(etcd, SBX_KEY_SANDBOXES, true, 0, false, &record_cbs, c, &c->record_watch)) <
                    0) {
                sbx_sim_cluster_free(c);
                return r;
        }
        if (o->shared_lease) {
                r = sbx_etcd_lease_grant(etcd, c->o.lease_ttl, &shared_cbs, c, &c->shared);
        } else {
                for (unsigned i = 0; i < c->n_nodes && r >= 0; i++)
                        r = sbx_etcd_lease_grant(etcd, c->o.lease_ttl, &node_cbs, &c->nodes[i],
                                                 &c->nodes[i].lease);
        }
        if (r < 0) {
                sbx_sim_cluster_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

bool sbx_sim_cluster_ready(const SbxSimCluster *c)
{
        for (unsigned i = 0; i < c->n_nodes; i++)
                if (!c->nodes[i].registered)
                        return false;
        return true;
}

static SimNode *find(SbxSimCluster *c, const char *name)
{
        return sbx_hashmap_get(c->by_name, name);
}

int sbx_sim_node_revoke(SbxSimCluster *c, const char *node)
{
        SimNode *n = find(c, node);
        if (!n)
                return -ENOENT;
        if (!n->lease)
                return -EINVAL;
        n->crashed = true;
        sbx_etcd_lease_revoke(n->lease, NULL, NULL);
        n->lease = NULL;
        return 0;
}

int sbx_sim_node_crash(SbxSimCluster *c, const char *node)
{
        SimNode *n = find(c, node);
        if (!n)
                return -ENOENT;
        if (!n->lease)
                return -EINVAL;
        n->crashed = true;
        n->lease = sbx_etcd_lease_free(n->lease);
        return 0;
}

const char *sbx_sim_node_name(const SbxSimCluster *c, unsigned i)
{
        return i < c->n_nodes ? c->nodes[i].name : NULL;
}

SbxSimStats sbx_sim_cluster_stats(const SbxSimCluster *c)
{
        return c->stats;
}

static void drop_sandbox(void *p)
{
        SimSandbox *sb = p;
        uv_close((uv_handle_t *)&sb->boot, sandbox_closed);
}

SbxSimCluster *sbx_sim_cluster_free(SbxSimCluster *c)
{
        if (!c)
                return NULL;
        sbx_etcd_watch_free(c->assign_watch);
        sbx_etcd_watch_free(c->record_watch);
        for (unsigned i = 0; c->nodes && i < c->n_nodes; i++)
                if (c->nodes[i].lease)
                        sbx_etcd_lease_revoke(c->nodes[i].lease, NULL, NULL);
        if (c->shared)
                sbx_etcd_lease_revoke(c->shared, NULL, NULL);
        sbx_hashmap_free(c->sandboxes, drop_sandbox);
        sbx_hashmap_free(c->by_name, NULL);
        free(c->nodes);
        free(c->data_address);
        free(c);
        return NULL;
}
