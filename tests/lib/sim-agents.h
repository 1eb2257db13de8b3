/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * SIMULATED agents, for testing and benchmarking the scheduler without microVMs. A simulated
 * cluster registers N nodes in etcd exactly as sbx-agent does (a Node record under a lease), and
 * answers their assignments by writing observed states: STARTING, then RUNNING after a boot delay
 * (or FAILED, at a configurable rate), and STOPPED when the scheduler asks for a stop. Nothing
 * boots: the nodes are simulations and are named "sim-…" so that nobody mistakes them for real
 * ones.
 */

#include <stdbool.h>
#include <stdint.h>

#include "common/base/time-util.h"
#include "common/etcd/etcd.h"
#include <uv.h>

typedef struct SbxSimCluster SbxSimCluster;

typedef struct SbxSimOptions {
        /* The loop the etcd client runs on. */
        uv_loop_t *loop;
        /* NULL-terminated regions; `nodes_per_region` nodes are registered in each. */
        const char *const *regions;
        unsigned nodes_per_region;
        /* Capacity each node announces. */
        uint64_t memory_mb;
        uint32_t vcpus;
        uint32_t slots;
        /* Time from assignment to RUNNING; 0 answers at once. */
        usec_t boot_delay;
        /* Time from a stop being asked for to STOPPED; 0 answers at once. */
        usec_t stop_delay;
        /* Fraction of boots that end FAILED (0..1). */
        double failure_rate;
        /* Lease TTL in seconds (>= 2). */
        int64_t lease_ttl;
        /* One lease for all nodes (large simulated clusters); otherwise one per node. */
        bool shared_lease;
        /* Prefix of node names ("sim" gives sim-ams-0, sim-ams-1, ...). */
        const char *name_prefix;
        /* What nodes announce as their data-plane address. */
        const char *data_address;
} SbxSimOptions;

typedef struct SbxSimStats {
        unsigned assigned;
        unsigned running;
        unsigned failed;
        unsigned stopped;
} SbxSimStats;

/* Registers the nodes (asynchronously) and starts answering. */
int sbx_sim_cluster_new(SbxEtcd *etcd, const SbxSimOptions *o, SbxSimCluster **ret);
/* True once every node's record is written. */
bool sbx_sim_cluster_ready(const SbxSimCluster *c);
/* Revokes one node's lease: etcd deletes its record at once, as when an agent dies and its lease
 * is revoked. -ENOENT for an unknown node, -EINVAL with a shared lease. */
int sbx_sim_node_revoke(SbxSimCluster *c, const char *node);
/* Simulates a crashed agent: stops answering and stops its keepalives (the lease then expires). */
int sbx_sim_node_crash(SbxSimCluster *c, const char *node);
/* The name of node i (0-based, in registration order). */
const char *sbx_sim_node_name(const SbxSimCluster *c, unsigned i);
SbxSimStats sbx_sim_cluster_stats(const SbxSimCluster *c);
/* Stops answering and revokes the leases. Accepts NULL. */
SbxSimCluster *sbx_sim_cluster_free(SbxSimCluster *c);
