/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A watch-fed mirror of everything under /sbx/v1/: nodes, their control and usage, organizations
 * and their usage, tokens, sandbox records and observed statuses. It reads the whole prefix once,
 * then follows one prefix watch from that revision, so it is consistent at `revision` (every
 * change up to it is applied, none after). After a compaction it re-reads and rebuilds.
 *
 * Each entry keeps the mod revision its value was read at: writers use it in Txn compares, so a
 * decision made on the mirror commits only if nothing changed meanwhile.
 *
 * Listeners are told about every change after it is applied.
 *
 * Besides what etcd holds, the mirror keeps two indexes (the live nodes of each region, and the
 * not-yet-ended sandboxes of each node) and, per node and per organization, what this replica's
 * own Txns taught it about their usage keys before the watch delivers it (see SchedUsage).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "common/base/hashmap.h"
#include "common/etcd/etcd.h"
#include "proto/sbx/v1/state.pb-c.h"

typedef struct SchedState SchedState;
typedef struct SchedRegion SchedRegion;
typedef struct SchedSandbox SchedSandbox;

/*
 * A usage key's value as this replica last wrote or read it in a Txn, with its mod revision. It is
 * newer than the mirror until the watch catches up, and Txns that compare the key's mod revision
 * must use the newer of the two or they lose the compare for nothing: sched_node_usage() and
 * sched_org_usage() pick it. Placements in flight are counted so that concurrent Creates of this
 * replica avoid the node (and see the org) that another one is about to change.
 */
typedef struct SchedUsage {
        uint64_t memory_mb;
        uint32_t vcpus;
        /* Node: slots in use; org: sandboxes. */
        uint32_t count;
        int64_t rev;
        unsigned placing;
} SchedUsage;

typedef struct SchedNode {
        char *name;
        /* NULL when the node's lease is gone (or it never registered). */
        Sbx__V1__Node *node;
        Sbx__V1__NodeControl *control;
        Sbx__V1__NodeUsage *usage;
        /* Mod revision of the usage key; 0 when absent. */
        int64_t usage_rev;
        /* Sandboxes placed on the node and not yet ended (from records), and how many. */
        LIST_HEAD(, SchedSandbox) sandboxes;
        unsigned active;
        /* How many of them are asked to stop: capacity about to come back. */
        unsigned stopping;
        SchedUsage known;
        /* Where the node sits in its region's index while it is alive. */
        SchedRegion *region;
        size_t region_pos;
} SchedNode;

typedef struct SchedOrg {
        char *name;
        Sbx__V1__Org *org;
        int64_t org_rev;
        Sbx__V1__OrgUsage *usage;
        int64_t usage_rev;
        SchedUsage known;
        /* Its sandboxes asked to stop and not ended yet: quota about to come back. */
        unsigned stopping;
} SchedOrg;

struct SchedSandbox {
        char *id;
        Sbx__V1__SandboxRecord *record;
        int64_t record_rev;
        Sbx__V1__SandboxStatus *status;
        int64_t status_rev;
        /* On its node's list while placed and not ended. */
        LIST_ENTRY(SchedSandbox) node_link;
        SchedNode *on_node;
        /* Counted in the `stopping` of its node and of this org (while on its node's list). */
        SchedOrg *stopping_org;
        bool stopping;
        /* The reconciler's bookkeeping (sched-reconcile.c): the earliest deadline it has queued for
         * this sandbox, in ms since the epoch; 0 when none. */
        int64_t wake_ms;
};

typedef enum SchedChange {
        /* A node's record or control key. */
        SCHED_CHANGE_NODE,
        SCHED_CHANGE_NODE_USAGE,
        /* An organization's record. */
        SCHED_CHANGE_ORG,
        SCHED_CHANGE_ORG_USAGE,
        SCHED_CHANGE_TOKEN,
        SCHED_CHANGE_SANDBOX,
        /* The whole mirror was rebuilt (first sync, or after compaction). */
        SCHED_CHANGE_RESYNC,
} SchedChange;

typedef void (*SchedStateListener)(SchedState *s, SchedChange what, const char *name, void *userdata);

int sched_state_new(SbxEtcd *etcd, SchedState **ret);
SchedState *sched_state_free(SchedState *s);

/* Starts the initial read and the watch; `ready` runs once the first read is applied. */
int sched_state_start(SchedState *s, void (*ready)(SchedState *s, void *userdata), void *userdata);
bool sched_state_ready(const SchedState *s);
int64_t sched_state_revision(const SchedState *s);

/* Listeners run on every change, in registration order. -ENOMEM. */
int sched_state_listen(SchedState *s, SchedStateListener fn, void *userdata);
void sched_state_unlisten(SchedState *s, SchedStateListener fn, void *userdata);

/* Read-your-writes: runs `fn` once every change up to `revision` is applied (0), or with
 * -ECANCELED when the mirror is freed first. Returns -EALREADY (and never calls `fn`) when the
 * mirror is there already, so `fn` never runs from inside this call; -ENOMEM. *ret (optional) can
 * be passed to sched_state_wait_cancel() until `fn` ran. */
typedef struct SchedStateWait SchedStateWait;
int sched_state_wait_revision(SchedState *s, int64_t revision, void (*fn)(int error, void *userdata),
                              void *userdata, SchedStateWait **ret);
/* Forgets a wait whose `fn` has not run; `fn` never runs then. */
void sched_state_wait_cancel(SchedState *s, SchedStateWait *w);

/* Lookups return NULL when absent. Pointers stay valid until the loop runs again. */
SchedNode *sched_state_node(SchedState *s, const char *name);
SchedOrg *sched_state_org(SchedState *s, const char *name);
SchedSandbox *sched_state_sandbox(SchedState *s, const char *id);
const Sbx__V1__TokenRecord *sched_state_token(SchedState *s, const char *hash);

/* The live nodes of a region, in no particular order (an index, so a Create need not walk every
 * node). Returns how many; *ret is valid until the loop runs again. */
size_t sched_state_region_nodes(SchedState *s, const char *region, SchedNode *const **ret);
/* Regions with at least one live node, sorted: a NULL-terminated strv to free with strv_free(), or
 * NULL when out of memory. */
char **sched_state_regions(SchedState *s);

/* The maps themselves, for iteration (values are SchedNode*, SchedOrg*, SchedSandbox*,
 * Sbx__V1__TokenRecord*). Do not modify. */
SbxHashmap *sched_state_nodes(SchedState *s);
SbxHashmap *sched_state_orgs(SchedState *s);
SbxHashmap *sched_state_sandboxes(SchedState *s);
SbxHashmap *sched_state_tokens(SchedState *s);

/* True when the node is registered (its lease alive). */
bool sched_node_alive(const SchedNode *n);
/* The state shown to users: the leader's final state, else the agent's observed state (STOPPING
 * while a stop is pending), else PENDING. */
Sbx__V1__SandboxState sched_sandbox_state(const SchedSandbox *sb);
bool sched_sandbox_ended(const SchedSandbox *sb);

/* The freshest usage known of a node (allocated resources) or an org (sandboxes and memory): the
 * mirror's, or this replica's own when newer. `placing` is the replica's count either way. */
SchedUsage sched_node_usage(const SchedNode *n);
SchedUsage sched_org_usage(const SchedOrg *o);
/* Records a usage value this replica wrote (at the Txn's revision) or read (at its mod revision);
 * kept only when newer than what is known. */
void sched_usage_learn(SchedUsage *known, uint64_t memory_mb, uint32_t vcpus, uint32_t count, int64_t rev);

/* Applies one etcd key/value, or its deletion, to the mirror; exposed for tests. An empty value is
 * a value (a zeroed message encodes to no bytes), not a deletion. */
void sched_state_apply(SchedState *s, const void *key, size_t key_len, bool deleted, const void *value,
                       size_t value_len, int64_t mod_revision);
