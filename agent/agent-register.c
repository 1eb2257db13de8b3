/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registration: the node's record (/sbx/v1/nodes/<name>) bound to a lease this agent keeps alive.
 * If the lease is lost (etcd unreachable for longer than its TTL, or revoked), the scheduler treats
 * the node as gone and marks its sandboxes LOST; the agent registers again with a new lease, and
 * its reconciler ends whatever it still runs that etcd no longer assigns to it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent-vmm.h"
#include "agent/agent.h"
#include "common/log/log.h"
#include "common/store/store.h"

#define SBX_AGENT_VERSION "0.1.0"

static void lease_granted(SbxEtcdLease *l, int error, void *userdata);
static void lease_lost(SbxEtcdLease *l, void *userdata);
static uv_timer_t retry_timer;
static bool retry_init;

static void grant(Agent *a)
{
        static const SbxEtcdLeaseCallbacks cbs = { .on_granted = lease_granted, .on_lost = lease_lost };
        int64_t ttl = (int64_t)(a->cfg.lease_ttl / USEC_PER_SEC);
        if (a->stopping)
                return;
        if (sbx_etcd_lease_grant(a->etcd, ttl < 2 ? 2 : ttl, &cbs, a, &a->lease) < 0)
                a->lease = NULL;
}

static void on_retry(uv_timer_t *t)
{
        grant(t->data);
}

static void retry_later(Agent *a)
{
        if (!retry_init) {
                uv_timer_init(a->loop, &retry_timer);
                retry_timer.data = a;
                retry_init = true;
        }
        if (!a->stopping)
                uv_timer_start(&retry_timer, on_retry, 1000, 0);
}

static void put_done(int error, const Etcdserverpb__PutResponse *r, void *userdata)
{
        Agent *a = userdata;
        if (error < 0) {
                log_warning_errno(error, "Failed to register node %s: %m; retrying", a->cfg.name);
                a->lease = sbx_etcd_lease_free(a->lease);
                retry_later(a);
                return;
        }
        if (!a->registered)
                log_info_fields(LOG_FIELDS({ "node", a->cfg.name }), "Node registered in region %s (%s, %s)",
                                a->cfg.region, a->vmm->name, a->kvm ? "kvm" : "tcg");
        a->registered = true;
}

static void lease_granted(SbxEtcdLease *l, int error, void *userdata)
{
        Agent *a = userdata;
        Sbx__V1__Node node = SBX__V1__NODE__INIT;
        Sbx__V1__Resources cap = SBX__V1__RESOURCES__INIT;
        _cleanup_free_ char *key = NULL;
        _cleanup_free_ uint8_t *value = NULL;
        size_t n;

        if (error < 0) {
                log_debug("Could not get a lease: %s; retrying", sbx_error_message(error));
                a->lease = sbx_etcd_lease_free(a->lease);
                retry_later(a);
                return;
        }
        cap.memory_mb = a->cfg.memory / 1048576ULL;
        cap.vcpus = a->cfg.vcpus;
        cap.slots = a->cfg.slots;
        node.name = a->cfg.name;
        node.region = a->cfg.region;
        node.data_address = a->cfg.advertise ? a->cfg.advertise : a->cfg.listen;
        node.capacity = &cap;
        node.version = (char *)SBX_AGENT_VERSION;
        node.registered_at_ms = sbx_now_ms();
        node.accelerator = (char *)(a->kvm ? "kvm" : "tcg");
        node.vmm = (char *)a->vmm->name;
        node.lease_id = sbx_etcd_lease_id(l);
        if (sbx_key_new(&key, SBX_KEY_NODES "%s", a->cfg.name) < 0 ||
            sbx_store_pack(&node.base, &value, &n) < 0 ||
            sbx_etcd_put(a->etcd, key, value, n, sbx_etcd_lease_id(l), put_done, a) < 0) {
                a->lease = sbx_etcd_lease_free(a->lease);
                retry_later(a);
        }
}

static void lease_lost(SbxEtcdLease *l, void *userdata)
{
        Agent *a = userdata;
        log_warning_fields(
                LOG_FIELDS({ "node", a->cfg.name }),
                "Lost the node's lease; the scheduler will consider this node gone. Registering again");
        a->registered = false;
        a->lease = sbx_etcd_lease_free(a->lease);
        retry_later(a);
}

int agent_register_start(Agent *a)
{
        grant(a);
        return a->lease ? 0 : -ENOMEM;
}

static void (*stop_done)(Agent *a);

static void revoked(int error, void *userdata)
{
        Agent *a = userdata;
        if (stop_done)
                stop_done(a);
}

void agent_register_stop(Agent *a, void (*done)(Agent *a))
{
        if (retry_init) {
                uv_close((uv_handle_t *)&retry_timer, NULL);
                retry_init = false;
        }
        stop_done = done;
        if (a->lease) {
                /* An orderly stop deregisters at once instead of leaving the node for the TTL. */
                sbx_etcd_lease_revoke(a->lease, revoked, a);
                a->lease = NULL;
        } else if (done) {
                done(a);
        }
}
