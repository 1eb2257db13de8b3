/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The leader's reconciler. On every change of the mirror (coalesced) and every
 * reconcile-interval it walks the sandboxes and moves each toward where it belongs:
 *
 *   agent reports STOPPED or FAILED   → finalize with that state (releases quota once)
 *   node gone (lease expired)         → finalize LOST
 *   past stop_at, still wanted        → desired = STOPPED ("expired" / "session ended")
 *   never got a status                → finalize FAILED after twice the create deadline (its
 *                                       creating replica died before the deadline fired)
 *   ended longer than retention ago   → forget (GC)
 *
 * Every action is a Txn guarded by the record's mod revision, so a new leader that repeats an
 * action a dead leader had already committed merely loses the compare.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"
#include "scheduler/sched.h"

struct SchedReconciler {
        Scheduler *s;
        bool leader;
        bool kicked;
        uv_timer_t tick;
        uv_timer_t kick;
        /* Sandbox ids with an action in flight, so one pass does not repeat the previous one's. */
        SbxHashmap *busy;
        unsigned closing;
};

typedef struct Action {
        SchedReconciler *r;
        char id[64];
        const char *what;
} Action;

static void action_done(Scheduler *s, int error, void *userdata)
{
        Action *a = userdata;
        if (a->r)
                sbx_hashmap_remove(a->r->busy, a->id);
        if (error < 0 && error != -ENOENT)
                log_warning_errno(error, "Reconciler could not %s %s: %m", a->what, a->id);
        free(a);
}

static Action *action_new(SchedReconciler *r, const char *id, const char *what)
{
        Action *a = calloc(1, sizeof(Action));
        if (!a || sbx_hashmap_put(r->busy, id, a, NULL) < 0) {
                free(a);
                return NULL;
        }
        a->r = r;
        a->what = what;
        snprintf(a->id, sizeof(a->id), "%s", id);
        return a;
}

static void finalize(SchedReconciler *r, SchedSandbox *sb, Sbx__V1__SandboxState st, const char *reason)
{
        Action *a = action_new(r, sb->id, "finalize");
        if (!a)
                return;
        if (st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_LOST)
                sbx_counter_inc(r->s->m.reconcile_actions, SBX_LABELS("lost"));
        if (sched_finalize(r->s, sb->id, st, reason, action_done, a) < 0)
                action_done(r->s, -ENOMEM, a);
}

static bool stop_expired(Sbx__V1__SandboxRecord *rec, void *userdata)
{
        if (rec->desired == SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED)
                return false;
        rec->desired = SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED;
        if (rec->stop_reason != protobuf_c_empty_string)
                free(rec->stop_reason);
        rec->stop_reason = strdup(rec->spec && rec->spec->session ? "session ended" : "expired");
        return true;
}

static void expire(SchedReconciler *r, SchedSandbox *sb)
{
        Action *a = action_new(r, sb->id, "stop");
        if (!a)
                return;
        sbx_counter_inc(r->s->m.reconcile_actions, SBX_LABELS("expire"));
        log_info_fields(LOG_FIELDS({ "sandbox", sb->id }), "Sandbox passed its stop time; stopping");
        if (sched_record_update(r->s, sb->id, stop_expired, NULL, action_done, a) < 0)
                action_done(r->s, -ENOMEM, a);
}

static void reconcile_one(SchedReconciler *r, SchedSandbox *sb, int64_t now)
{
        Scheduler *s = r->s;
        const Sbx__V1__SandboxRecord *rec = sb->record;

        if (!rec || sbx_hashmap_get(r->busy, sb->id))
                return;
        if (sched_sandbox_ended(sb)) {
                if (rec->ended_at_ms + (int64_t)(s->cfg.retention / USEC_PER_MSEC) <= now)
                        sched_forget(s, sb->id);
                return;
        }
        SchedNode *n = sched_state_node(s->state, rec->node);
        if (!sched_node_alive(n)) {
                char reason[160];
                snprintf(reason, sizeof(reason), "node %s was lost", rec->node);
                finalize(r, sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_LOST, reason);
                return;
        }
        Sbx__V1__SandboxState st =
                sb->status ? sb->status->state : SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED;
        if (st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED ||
            st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED) {
                finalize(r, sb, st, sb->status->reason);
                return;
        }
        if (rec->desired == SBX__V1__DESIRED_STATE__DESIRED_STATE_RUNNING && rec->stop_at_ms > 0 &&
            now >= rec->stop_at_ms) {
                expire(r, sb);
                return;
        }
        if (!sb->status && now > rec->created_at_ms + 2 * (int64_t)(s->cfg.create_deadline / USEC_PER_MSEC))
                finalize(r, sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED, "never started");
}

static void reconcile_pass(SchedReconciler *r)
{
        SbxHashmap *map = sched_state_sandboxes(r->s->state);
        int64_t now = sbx_now_ms();
        size_t n = 0, state = 0;
        void *v;

        if (!r->leader || !sched_state_ready(r->s->state))
                return;
        /* Collect first: actions may change the mirror synchronously in no case, but stay safe. */
        SchedSandbox **list = calloc(sbx_hashmap_size(map) + 1, sizeof(*list));
        if (!list)
                return;
        while (sbx_hashmap_next(map, &state, NULL, &v))
                list[n++] = v;
        for (size_t i = 0; i < n; i++)
                reconcile_one(r, list[i], now);
        free(list);
}

static void on_tick(uv_timer_t *t)
{
        reconcile_pass(t->data);
}

static void on_kick(uv_timer_t *t)
{
        SchedReconciler *r = t->data;
        r->kicked = false;
        reconcile_pass(r);
}

void sched_reconciler_kick(SchedReconciler *r)
{
        /* Coalesce bursts of changes into one pass a moment later. */
        if (!r->leader || r->kicked)
                return;
        r->kicked = true;
        uv_timer_start(&r->kick, on_kick, 5, 0);
}

static void on_change(SchedState *st, SchedChange what, const char *name, void *userdata)
{
        sched_reconciler_kick(userdata);
}

void sched_reconciler_set_leader(SchedReconciler *r, bool leader)
{
        if (r->leader == leader)
                return;
        r->leader = leader;
        if (leader) {
                uint64_t ms = sbx_usec_to_msec_ceil(r->s->cfg.reconcile_interval);
                uv_timer_start(&r->tick, on_tick, ms, ms);
                sched_reconciler_kick(r);
        } else {
                uv_timer_stop(&r->tick);
                uv_timer_stop(&r->kick);
                r->kicked = false;
        }
}

int sched_reconciler_new(Scheduler *s, SchedReconciler **ret)
{
        SchedReconciler *r = calloc(1, sizeof(SchedReconciler));
        if (!r)
                return -ENOMEM;
        r->s = s;
        if (sbx_hashmap_new(&r->busy) < 0 || sched_state_listen(s->state, on_change, r) < 0) {
                sbx_hashmap_free(r->busy, NULL);
                free(r);
                return -ENOMEM;
        }
        uv_timer_init(s->loop, &r->tick);
        uv_timer_init(s->loop, &r->kick);
        r->tick.data = r->kick.data = r;
        *ret = r;
        return 0;
}

static void orphan_action(void *v)
{
        /* The action completes later: it must not touch the freed reconciler. */
        ((Action *)v)->r = NULL;
}

static void reconciler_closed(uv_handle_t *h)
{
        SchedReconciler *r = h->data;
        if (--r->closing == 0)
                free(r);
}

SchedReconciler *sched_reconciler_free(SchedReconciler *r)
{
        if (!r)
                return NULL;
        sched_state_unlisten(r->s->state, on_change, r);
        sbx_hashmap_free(r->busy, orphan_action);
        r->closing = 2;
        uv_close((uv_handle_t *)&r->tick, reconciler_closed);
        uv_close((uv_handle_t *)&r->kick, reconciler_closed);
        return NULL;
}
