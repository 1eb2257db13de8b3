/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler's metrics, all in one place. Labels carry regions, states, results and operation
 * names — never sandbox ids, org names or other unbounded values. */
#include <errno.h>
#include <string.h>

#include "common/base/string-util.h"
#include "scheduler/sched.h"

static const char *state_name(Sbx__V1__SandboxState st)
{
        const ProtobufCEnumValue *v =
                protobuf_c_enum_descriptor_get_value(&sbx__v1__sandbox_state__descriptor, (int)st);
        /* "SANDBOX_STATE_RUNNING" → "running" would need a buffer; the enum names are bounded. */
        return v ? v->name + strlen("SANDBOX_STATE_") : "UNSPECIFIED";
}

/* Refreshes the gauges computed from the mirror, just before each scrape. */
static void collect(SbxMetrics *m, void *userdata)
{
        Scheduler *s = userdata;
        size_t state = 0;
        void *v;

        sbx_gauge_reset(s->m.sandboxes);
        sbx_gauge_reset(s->m.nodes);
        sbx_gauge_reset(s->m.capacity_memory);
        sbx_gauge_reset(s->m.allocated_memory);
        sbx_gauge_reset(s->m.capacity_slots);
        sbx_gauge_reset(s->m.allocated_slots);
        if (!sched_state_ready(s->state))
                return;

        SbxHashmap *sandboxes = sched_state_sandboxes(s->state);
        while (sbx_hashmap_next(sandboxes, &state, NULL, &v)) {
                SchedSandbox *sb = v;
                if (!sb->record || !sb->record->spec)
                        continue;
                sbx_gauge_add(s->m.sandboxes,
                              SBX_LABELS(state_name(sched_sandbox_state(sb)), sb->record->spec->region), 1);
        }
        state = 0;
        SbxHashmap *nodes = sched_state_nodes(s->state);
        while (sbx_hashmap_next(nodes, &state, NULL, &v)) {
                SchedNode *n = v;
                if (!sched_node_alive(n))
                        continue;
                const char *region = n->node->region ? n->node->region : "";
                const char *st = n->control && n->control->draining   ? "draining"
                                 : n->control && n->control->cordoned ? "cordoned"
                                                                      : "ready";
                sbx_gauge_add(s->m.nodes, SBX_LABELS(region, st), 1);
                if (n->node->capacity) {
                        sbx_gauge_add(s->m.capacity_memory, SBX_LABELS(region),
                                      (double)n->node->capacity->memory_mb * 1048576.0);
                        sbx_gauge_add(s->m.capacity_slots, SBX_LABELS(region), n->node->capacity->slots);
                }
                if (n->usage && n->usage->allocated) {
                        sbx_gauge_add(s->m.allocated_memory, SBX_LABELS(region),
                                      (double)n->usage->allocated->memory_mb * 1048576.0);
                        sbx_gauge_add(s->m.allocated_slots, SBX_LABELS(region), n->usage->allocated->slots);
                }
        }
}

int sched_metrics_register(Scheduler *s)
{
        SbxMetrics *m = s->metrics;
        SchedMetrics *x = &s->m;
        int r;

        if ((r = sbx_metrics_counter(
                     m, "sbx_scheduler_placements_total",
                     "Create requests by region and placement result (placed, no_capacity, invalid).",
                     SBX_LABEL_NAMES("region", "result"), &x->placements)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_scheduler_quota_rejections_total",
                                     "Creates refused because the organization was at its quota.", NULL,
                                     &x->quota_rejections)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_scheduler_create_release_waits_total",
                                     "Creates that waited for what stopping sandboxes give back, by "
                                     "reason (quota, capacity).",
                                     SBX_LABEL_NAMES("reason"), &x->release_waits)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_scheduler_txn_conflicts_total",
                     "etcd transactions whose compares failed and were retried, by operation.",
                     SBX_LABEL_NAMES("op"), &x->txn_conflicts)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_scheduler_txn_retries_exhausted_total",
                                     "Operations that gave up after repeated transaction conflicts.",
                                     SBX_LABEL_NAMES("op"), &x->txn_retries_exhausted)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_scheduler_reconcile_actions_total",
                                     "Reconciler actions: finalize, lost, expire, gc.",
                                     SBX_LABEL_NAMES("action"), &x->reconcile_actions)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_scheduler_reconcile_in_flight",
                                   "Reconciler actions (etcd transactions) in flight; bounded.", NULL,
                                   &x->reconcile_in_flight)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_scheduler_reconcile_queue",
                                   "Sandboxes queued for the reconciler to look at, including those "
                                   "waiting for an action slot.",
                                   NULL, &x->reconcile_queue)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_scheduler_leader_changes_total",
                                     "Times this replica became the leader.", NULL, &x->leader_changes)) <
                    0 ||
            (r = sbx_metrics_gauge(m, "sbx_scheduler_leader", "1 while this replica is the leader.", NULL,
                                   &x->leader)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_scheduler_sandboxes", "Sandboxes known, by state and region.",
                                   SBX_LABEL_NAMES("state", "region"), &x->sandboxes)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_scheduler_nodes", "Registered nodes by region and state.",
                                   SBX_LABEL_NAMES("region", "state"), &x->nodes)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_scheduler_capacity_memory_bytes",
                                   "Memory nodes offer, by region.", SBX_LABEL_NAMES("region"),
                                   &x->capacity_memory)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_scheduler_allocated_memory_bytes",
                                   "Memory allocated to sandboxes, by region.", SBX_LABEL_NAMES("region"),
                                   &x->allocated_memory)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_scheduler_capacity_slots",
                                   "Sandbox slots nodes offer, by region.", SBX_LABEL_NAMES("region"),
                                   &x->capacity_slots)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_scheduler_allocated_slots", "Sandbox slots in use, by region.",
                                   SBX_LABEL_NAMES("region"), &x->allocated_slots)) < 0 ||
            (r = sbx_metrics_histogram(
                     m, "sbx_scheduler_create_wait_seconds",
                     "Time from a create's commit to its answer, by result (running, failed, "
                     "deadline).",
                     SBX_LABEL_NAMES("result"), sbx_metrics_buckets_boot, sbx_metrics_buckets_boot_n,
                     &x->create_wait)) < 0)
                return r;
        return sbx_metrics_add_collector(m, collect, s);
}
