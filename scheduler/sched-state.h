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
 */

#include <stdbool.h>
#include <stdint.h>

#include "common/base/hashmap.h"
#include "common/etcd/etcd.h"
#include "proto/sbx/v1/state.pb-c.h"

typedef struct SchedState SchedState;

typedef struct SchedNode {
        char *name;
        /* NULL when the node's lease is gone (or it never registered). */
        Sbx__V1__Node *node;
        Sbx__V1__NodeControl *control;
        Sbx__V1__NodeUsage *usage;
        /* Mod revision of the usage key; 0 when absent. */
        int64_t usage_rev;
        /* Sandboxes placed on the node and not yet ended (from records). */
        unsigned active;
} SchedNode;

typedef struct SchedOrg {
        char *name;
        Sbx__V1__Org *org;
        int64_t org_rev;
        Sbx__V1__OrgUsage *usage;
        int64_t usage_rev;
} SchedOrg;

typedef struct SchedSandbox {
        char *id;
        Sbx__V1__SandboxRecord *record;
        int64_t record_rev;
        Sbx__V1__SandboxStatus *status;
        int64_t status_rev;
} SchedSandbox;

typedef enum SchedChange {
        SCHED_CHANGE_NODE,
        SCHED_CHANGE_ORG,
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

/* Lookups return NULL when absent. Pointers stay valid until the loop runs again. */
SchedNode *sched_state_node(SchedState *s, const char *name);
SchedOrg *sched_state_org(SchedState *s, const char *name);
SchedSandbox *sched_state_sandbox(SchedState *s, const char *id);
const Sbx__V1__TokenRecord *sched_state_token(SchedState *s, const char *hash);

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

/* Applies one etcd key/value, or its deletion, to the mirror; exposed for tests. An empty value is
 * a value (a zeroed message encodes to no bytes), not a deletion. */
void sched_state_apply(SchedState *s, const void *key, size_t key_len, bool deleted, const void *value,
                       size_t value_len, int64_t mod_revision);
