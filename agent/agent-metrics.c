/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's metrics, all in one place. No sandbox ids in labels. */
#include "agent/agent.h"

static void collect(SbxMetrics *m, void *userdata)
{
        Agent *a = userdata;
        size_t state = 0, running = 0;
        uint64_t memory = 0, bytes;
        const char *id, *why;
        void *v;

        while (a->sandboxes && sbx_hashmap_next(a->sandboxes, &state, &id, &v)) {
                if (agent_sandbox_phase(v) != PHASE_RUNNING)
                        continue;
                running++;
                /* One small cgroup file per running sandbox, read at scrape time. */
                if (agent_jail_memory_current(a, id, &bytes) == 0)
                        memory += bytes;
        }
        sbx_gauge_set(a->m.running, NULL, (double)running);
        sbx_gauge_set(a->m.vmm_memory, NULL, (double)memory);
        sbx_gauge_set(a->m.ready, NULL, agent_is_ready(a, &why) ? 1 : 0);
}

int agent_metrics_register(Agent *a)
{
        SbxMetrics *m = a->metrics;
        AgentMetrics *x = &a->m;
        int r;

        if ((r = sbx_metrics_histogram(m, "sbx_agent_boot_seconds",
                                       "Time from the VMM's start to sbx-init's hello, by accelerator.",
                                       SBX_LABEL_NAMES("accel"), sbx_metrics_buckets_boot,
                                       sbx_metrics_buckets_boot_n, &x->boot_seconds)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_agent_sandboxes_running", "Sandboxes running on this node.", NULL,
                                   &x->running)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_agent_sandbox_starts_total",
                                     "Sandbox starts, by result (running, failed).",
                                     SBX_LABEL_NAMES("result"), &x->starts)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_agent_sandbox_stops_total",
                                     "Sandboxes ended, by how (stopped, failed).", SBX_LABEL_NAMES("result"),
                                     &x->stops)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_agent_exec_total", "Exec calls, by result (started, refused).",
                                     SBX_LABEL_NAMES("result"), &x->exec_calls)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_agent_channel_errors_total",
                                     "Guest channels that failed, by kind (protocol, closed).",
                                     SBX_LABEL_NAMES("kind"), &x->channel_errors)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_agent_accelerator_info",
                                   "1 for the VMM driver and accelerator in use.",
                                   SBX_LABEL_NAMES("vmm", "accel"), &x->accelerator)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_agent_data_calls_refused_total",
                     "Data-plane calls refused, by reason (token, other_sandbox, not_here, not_running).",
                     SBX_LABEL_NAMES("reason"), &x->data_calls_refused)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_agent_ready",
                                   "1 when the agent is ready for work (what /readyz says), 0 otherwise.",
                                   NULL, &x->ready)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_agent_vmm_memory_bytes",
                                   "Memory charged to the running sandboxes' VMM cgroups: guest memory "
                                   "touched plus each VMM's own.",
                                   NULL, &x->vmm_memory)) < 0)
                return r;
        return sbx_metrics_add_collector(m, collect, a);
}
