/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The agent's shared context and the functions its files offer each other. */

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent/agent-config.h"
#include "common/base/hashmap.h"
#include "common/crypto/crypto.h"
#include "common/etcd/etcd.h"
#include "common/metrics/metrics-http.h"
#include "common/metrics/metrics.h"
#include "common/rpc/rpc.h"
#include "proto/sbx/v1/guest.pb-c.h"
#include "proto/sbx/v1/state.pb-c.h"

typedef struct Agent Agent;
typedef struct AgentSandbox AgentSandbox;
typedef struct AgentChannel AgentChannel;
typedef struct AgentStream AgentStream;
typedef struct AgentVmmDriver AgentVmmDriver;

typedef struct AgentMetrics {
        SbxHistogram *boot_seconds; /* accel */
        SbxGauge *running;
        SbxCounter *starts;             /* result: running, failed */
        SbxCounter *stops;              /* reason */
        SbxCounter *exec_calls;         /* result */
        SbxCounter *channel_errors;     /* kind */
        SbxGauge *accelerator;          /* accel, vmm: 1 for the one in use */
        SbxCounter *data_calls_refused; /* reason */
        SbxGauge *ready;
        SbxGauge *vmm_memory;
} AgentMetrics;

/* The files of the image the VMs boot (make image). */
typedef struct AgentImage {
        char kernel[512];
        char initramfs[512];
        char rootfs[512];
        char data_template[512];
        bool pvh; /* an uncompressed ELF kernel (PVH entry) rather than a bzImage */
} AgentImage;

struct Agent {
        AgentConfig cfg;
        uv_loop_t *loop;
        SbxRpc *rpc;
        SbxEtcd *etcd;
        SbxMetrics *metrics;
        AgentMetrics m;
        SbxMetricsServer *metrics_server;
        SbxRpcServer *data_server;
        SbxClusterKey key;
        AgentImage image;
        const AgentVmmDriver *vmm;
        bool kvm;
        uint64_t tsc_khz;
        /* Each sandbox's VMM runs as its own uid and gid, vmm_uid_base + its network slot: no VMM can
         * touch another's files, sockets, tap or process. */
        uid_t vmm_uid_base;
        gid_t kvm_gid;
        char jailer[512];
        char cgroup_root[256];
        /* Registration. */
        SbxEtcdLease *lease;
        bool registered;
        /* Desired state from etcd, actual state here. */
        SbxEtcdWatch *assign_watch;
        SbxEtcdWatch *record_watch;
        SbxHashmap *assigned;  /* id → true (non-NULL) */
        SbxHashmap *records;   /* id → Sbx__V1__SandboxRecord* (ours only) */
        SbxHashmap *sandboxes; /* id → AgentSandbox* */
        uv_timer_t reconcile_timer;
        bool synced;
        /* The first reconciliation pass ran: sandboxes of a previous run are adopted or ended. */
        bool settled;
        /* Network slots (one /30 each) in use. */
        uint8_t *slots_used;
        uint32_t n_slots;
        uint32_t subnet_base; /* host byte order */
        unsigned subnet_prefix;
        /* Egress enforcement (agent/egress.h). */
        struct Egress *egress;
        bool stopping;
};

/* ---- sandboxes (agent-sandbox.c) ---- */

typedef enum AgentPhase {
        PHASE_PREPARING,
        PHASE_BOOTING,
        PHASE_RUNNING,
        PHASE_STOPPING,
        PHASE_ENDED,
} AgentPhase;

/* Starts a sandbox for a record (asynchronously); it reports its states to etcd itself. */
int agent_sandbox_start(Agent *a, const Sbx__V1__SandboxRecord *rec, AgentSandbox **ret);
/* Adopts a sandbox whose VMM survived an agent restart; -ESRCH when it did not. */
int agent_sandbox_adopt(Agent *a, const char *id, const Sbx__V1__SandboxRecord *rec, AgentSandbox **ret);
/* Stops it (graceful power-off, then kill), tears everything down, reports `final` with `reason`. */
void agent_sandbox_stop(AgentSandbox *sb, Sbx__V1__SandboxState final, const char *reason);
/* Updates the stop time it enforces locally. */
void agent_sandbox_set_stop_at(AgentSandbox *sb, int64_t stop_at_ms);
AgentPhase agent_sandbox_phase(const AgentSandbox *sb);
/* What /readyz reports: registered, and the sandboxes of a previous run adopted or ended; when not,
 * *ret_why says why. */
bool agent_is_ready(const Agent *a, const char **ret_why);
AgentChannel *agent_sandbox_channel(AgentSandbox *sb);
const char *agent_sandbox_id(const AgentSandbox *sb);
const char *agent_sandbox_org(const AgentSandbox *sb);
/* Called by the sandbox when it is gone for good; the agent drops it from its map. */
void agent_sandbox_forget(Agent *a, const char *id);
/* Removes what a sandbox directory left (tap, cgroup, files) when nothing runs there any more. */
void agent_sandbox_cleanup_dir(Agent *a, const char *id);

/* ---- status in etcd (agent-status.c) ---- */

void agent_status_write(Agent *a, const char *id, Sbx__V1__SandboxState state, const char *reason,
                        uint64_t boot_duration_us, const char *guest_address);

/* ---- registration and reconciliation (agent-register.c, agent-reconcile.c) ---- */

int agent_register_start(Agent *a);
void agent_register_stop(Agent *a, void (*done)(Agent *a));
int agent_reconcile_start(Agent *a);
void agent_reconcile_stop(Agent *a);
void agent_reconcile_kick(Agent *a);

/* ---- network (agent-net.c) ---- */

typedef struct AgentNet {
        int slot;
        char tap[16];
        char host_ip[16];
        char guest_ip[16];
        char mac[18];
        uint32_t prefix;
} AgentNet;

int agent_net_setup(Agent *a, const char *id, AgentNet *ret);
/* Re-derives the network of an adopted sandbox from its id (same slot search) and marks it used. */
int agent_net_adopt(Agent *a, const char *id, AgentNet *ret);
/* An fd on the sandbox's tap (close-on-exec), handed to the VMM as AGENT_VMM_TAP_FD. */
int agent_net_open_tap(const AgentNet *n);
void agent_net_remove(Agent *a, AgentNet *n);
/* The tap name a sandbox id gets (stable, so restarts find leftovers). */
void agent_net_tap_name(const char *id, char out[16]);

/* ---- jail (agent-jail.c) ---- */

/* The cgroup of one sandbox's VMM. */
void agent_jail_cgroup_path(Agent *a, const char *id, char *out, size_t n);
/* Prefixes a VMM command line with the jailer: its own cgroup with memory and pids limits, its own
 * directory, the unprivileged VMM user. `argv` is NULL-terminated; the result is malloc'ed. */
/* The uid (and gid) of the VMM of the sandbox on network slot `slot`. */
static inline uid_t agent_vmm_uid(const Agent *a, int slot)
{
        return a->vmm_uid_base + (uid_t)slot;
}

/* Removes the node's cgroup directories at shutdown. */
void agent_jail_fini(Agent *a);
int agent_jail_argv(Agent *a, const char *id, const char *dir, uid_t uid, uint64_t memory_bytes,
                    char *const *argv, char ***ret);
void agent_jail_remove(Agent *a, const char *id);
/* Reads the VMM's resident memory (kB) from its cgroup, for metrics and benchmarks. */
int agent_jail_memory_current(Agent *a, const char *id, uint64_t *ret_bytes);

/* ---- the data plane (agent-data.c) ---- */

int agent_data_register(Agent *a, SbxRpcServer *server);

/* ---- metrics (agent-metrics.c) ---- */

int agent_metrics_register(Agent *a);
