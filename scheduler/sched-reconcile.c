/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The leader's reconciler. It moves each sandbox toward where it belongs:
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
 *
 * The work is incremental, so that its cost follows the changes rather than the size of the
 * cluster: a change of a sandbox puts that sandbox on the queue, a lost node puts its sandboxes
 * there (the mirror indexes them by node), and the time-driven cases (stop times, the never-started
 * deadline, retention) sit in a min-heap of deadlines that puts each sandbox on the queue when its
 * time comes. A full pass over every sandbox still runs every reconcile-interval, as a safety net
 * for anything the incremental path could miss (a clock jump, a failed action).
 *
 * At most MAX_ACTIONS actions are in flight: when a node with thousands of sandboxes is lost, the
 * rest wait on the queue, instead of thousands of Txns hitting etcd at once and holding up
 * shutdown. The actions are droppable at shutdown (SCHED_WRITE_DROPPABLE).
 *
 * A finalization that gives quota back rewrites its org's and its node's usage keys, guarded by
 * their mod revisions; two in flight on one key would make one of them lose and retry. So at most
 * one is in flight per usage key, and the sandboxes behind it wait in that key's line, woken one at
 * a time. The sandboxes of a lost node are thus finalized one after the other, each on the usage
 * the previous one wrote, instead of all at once and mostly in vain.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"
#include "scheduler/sched.h"

/* Reconciler actions (Txns) in flight at most. */
#define MAX_ACTIONS 64
/* Sandboxes looked at per turn of the loop, so a long queue does not stall Creates behind it. */
#define TURN_MAX 512

typedef struct Queued {
        STAILQ_ENTRY(Queued) link;
        /* The usage key whose line this sandbox was woken from, if any (see key_wake). */
        char woke[SBX_KEY_NAME_MAX + 3];
        char id[];
} Queued;

/* The line of a usage key ("o:<org>" or "n:<node>"): whether a release holds the key, and the
 * sandboxes waiting to release on it, woken one at a time. */
typedef struct KeyLine {
        bool held;
        STAILQ_HEAD(, Queued) waiting;
} KeyLine;

/* Compact, as there is about one per sandbox: ids this scheduler makes fit; any other is left to
 * the full pass. */
typedef struct Deadline {
        int64_t at_ms;
        char id[SBX_SANDBOX_ID_LEN + 1];
} Deadline;

struct SchedReconciler {
        Scheduler *s;
        bool leader;
        uv_timer_t tick;
        /* Runs the queue soon after something was queued (or an action finished). */
        uv_timer_t work;
        bool work_scheduled;
        /* The earliest deadline of the heap. */
        uv_timer_t wake;
        /* Sandboxes to look at, first in first out, each at most once (`queued` holds the ids). */
        STAILQ_HEAD(, Queued) queue;
        SbxHashmap *queued;
        size_t n_queued;
        Deadline *heap;
        size_t n_heap, cap_heap;
        /* Sandbox ids with an action in flight, so nothing starts a second one. */
        SbxHashmap *busy;
        /* Usage keys with a release in flight or sandboxes waiting (KeyLine), and the ids waiting
         * in one of the lines. */
        SbxHashmap *releasing;
        SbxHashmap *lined;
        /* Actions waited for a slot since the queue was last empty (logged once per episode). */
        bool saturated;
        unsigned closing;
};

typedef struct Action {
        SchedReconciler *r;
        char id[SBX_KEY_NAME_MAX + 1];
        const char *what;
        /* The usage keys this action holds (empty when it releases none). */
        char org_key[SBX_KEY_NAME_MAX + 3];
        char node_key[SBX_KEY_NAME_MAX + 3];
} Action;

static void schedule_work(SchedReconciler *r);

static void update_gauges(SchedReconciler *r)
{
        sbx_gauge_set(r->s->m.reconcile_in_flight, NULL, (double)sbx_hashmap_size(r->busy));
        sbx_gauge_set(r->s->m.reconcile_queue, NULL, (double)r->n_queued);
}

/* ---- the queue ---- */

static Queued *enqueue_at(SchedReconciler *r, const char *id, bool front)
{
        size_t len = strlen(id);
        Queued *q = sbx_hashmap_get(r->queued, id);

        if (q)
                return q;
        q = malloc(sizeof(Queued) + len + 1);
        if (!q)
                return NULL; /* the next full pass looks at it */
        memcpy(q->id, id, len + 1);
        q->woke[0] = '\0';
        if (sbx_hashmap_put(r->queued, id, q, NULL) < 0) {
                free(q);
                return NULL;
        }
        if (front)
                STAILQ_INSERT_HEAD(&r->queue, q, link);
        else
                STAILQ_INSERT_TAIL(&r->queue, q, link);
        r->n_queued++;
        return q;
}

static void enqueue(SchedReconciler *r, const char *id)
{
        enqueue_at(r, id, false);
}

/* A sandbox woken from a usage key's line goes first, remembering the key. */
static void enqueue_woken(SchedReconciler *r, const char *id, const char *key)
{
        Queued *q = enqueue_at(r, id, true);
        if (q)
                snprintf(q->woke, sizeof(q->woke), "%s", key);
}

static void queue_pop(SchedReconciler *r)
{
        Queued *q = STAILQ_FIRST(&r->queue);
        STAILQ_REMOVE_HEAD(&r->queue, link);
        sbx_hashmap_remove(r->queued, q->id);
        r->n_queued--;
        free(q);
}

static void queue_clear(SchedReconciler *r)
{
        while (!STAILQ_EMPTY(&r->queue))
                queue_pop(r);
}

/* ---- usage keys: one release in flight each ---- */

static void line_free(void *p)
{
        KeyLine *l = p;
        Queued *q;
        while ((q = STAILQ_FIRST(&l->waiting))) {
                STAILQ_REMOVE_HEAD(&l->waiting, link);
                free(q);
        }
        free(l);
}

static KeyLine *line_get(SchedReconciler *r, const char *key, bool create)
{
        KeyLine *l = sbx_hashmap_get(r->releasing, key);
        if (l || !create)
                return l;
        l = calloc(1, sizeof(KeyLine));
        if (!l)
                return NULL;
        STAILQ_INIT(&l->waiting);
        if (sbx_hashmap_put(r->releasing, key, l, NULL) < 0) {
                free(l);
                return NULL;
        }
        return l;
}

static bool key_held(SchedReconciler *r, const char *key)
{
        KeyLine *l = line_get(r, key, false);
        return l && l->held;
}

static void key_hold(SchedReconciler *r, const char *key)
{
        KeyLine *l = line_get(r, key, true);
        /* Without memory for the line the release goes ahead unserialized: its compare keeps it
         * correct, it may just lose. */
        if (l)
                l->held = true;
}

/* Puts the sandbox in the key's line, unless it waits in one already (it stays there). */
static void key_wait(SchedReconciler *r, const char *key, const char *id, bool front)
{
        KeyLine *l = line_get(r, key, true);
        size_t len = strlen(id);
        Queued *q;

        if (!l || sbx_hashmap_get(r->lined, id) || !(q = malloc(sizeof(Queued) + len + 1)))
                return; /* the next full pass looks at it */
        memcpy(q->id, id, len + 1);
        q->woke[0] = '\0';
        if (sbx_hashmap_put(r->lined, id, q, NULL) < 0) {
                free(q);
                return;
        }
        if (front)
                STAILQ_INSERT_HEAD(&l->waiting, q, link);
        else
                STAILQ_INSERT_TAIL(&l->waiting, q, link);
}

/* The key is free: the first sandbox of its line gets looked at next. If that one does not take
 * the key (it no longer needs it), run_queue wakes the one after it. */
static void key_wake(SchedReconciler *r, const char *key)
{
        KeyLine *l = line_get(r, key, false);
        Queued *q;

        if (!l || l->held)
                return;
        if (!(q = STAILQ_FIRST(&l->waiting))) {
                line_free(sbx_hashmap_remove(r->releasing, key));
                return;
        }
        STAILQ_REMOVE_HEAD(&l->waiting, link);
        sbx_hashmap_remove(r->lined, q->id);
        enqueue_woken(r, q->id, key);
        free(q);
        schedule_work(r);
}

static void key_release(SchedReconciler *r, const char *key)
{
        KeyLine *l = line_get(r, key, false);
        if (!l)
                return;
        l->held = false;
        key_wake(r, key);
}

/* ---- the deadline heap ---- */

static void heap_swap(Deadline *a, Deadline *b)
{
        Deadline t = *a;
        *a = *b;
        *b = t;
}

/* Returns false when the deadline could not be kept (the full pass covers the sandbox then). */
static bool heap_push(SchedReconciler *r, int64_t at_ms, const char *id)
{
        if (strlen(id) > SBX_SANDBOX_ID_LEN)
                return false;
        if (r->n_heap == r->cap_heap) {
                size_t cap = r->cap_heap ? r->cap_heap * 2 : 256;
                Deadline *h = realloc(r->heap, cap * sizeof(Deadline));
                if (!h)
                        return false;
                r->heap = h;
                r->cap_heap = cap;
        }
        size_t i = r->n_heap++;
        r->heap[i].at_ms = at_ms;
        strcpy(r->heap[i].id, id);
        while (i > 0 && r->heap[(i - 1) / 2].at_ms > r->heap[i].at_ms) {
                heap_swap(&r->heap[(i - 1) / 2], &r->heap[i]);
                i = (i - 1) / 2;
        }
        return true;
}

static void heap_pop(SchedReconciler *r)
{
        size_t i = 0;

        r->heap[0] = r->heap[--r->n_heap];
        for (;;) {
                size_t l = 2 * i + 1, m = i;
                if (l < r->n_heap && r->heap[l].at_ms < r->heap[m].at_ms)
                        m = l;
                if (l + 1 < r->n_heap && r->heap[l + 1].at_ms < r->heap[m].at_ms)
                        m = l + 1;
                if (m == i)
                        break;
                heap_swap(&r->heap[i], &r->heap[m]);
                i = m;
        }
}

static void on_wake(uv_timer_t *t);

static void arm_wake(SchedReconciler *r)
{
        if (r->n_heap == 0) {
                uv_timer_stop(&r->wake);
                return;
        }
        int64_t left = r->heap[0].at_ms - sbx_now_ms();
        uv_timer_start(&r->wake, on_wake, left > 0 ? (uint64_t)left : 0, 0);
}

/* Queues the sandboxes whose deadline came. */
static void on_wake(uv_timer_t *t)
{
        SchedReconciler *r = t->data;
        int64_t now = sbx_now_ms();

        while (r->n_heap > 0 && r->heap[0].at_ms <= now) {
                SchedSandbox *sb = sched_state_sandbox(r->s->state, r->heap[0].id);
                if (sb) {
                        if (sb->wake_ms == r->heap[0].at_ms)
                                sb->wake_ms = 0;
                        enqueue(r, sb->id);
                }
                heap_pop(r);
        }
        arm_wake(r);
        schedule_work(r);
}

/* Remembers when the sandbox needs looking at next, unless an earlier time is already queued (that
 * one looks again and queues the next). Stale entries only cause a look that changes nothing. */
static void remind(SchedReconciler *r, SchedSandbox *sb, int64_t at_ms)
{
        if (sb->wake_ms != 0 && sb->wake_ms <= at_ms)
                return;
        bool earliest = r->n_heap == 0 || at_ms < r->heap[0].at_ms;
        if (!heap_push(r, at_ms, sb->id))
                return;
        sb->wake_ms = at_ms;
        if (earliest)
                arm_wake(r);
}

/* ---- actions ---- */

static void action_done(Scheduler *s, int error, void *userdata)
{
        Action *a = userdata;
        SchedReconciler *r = a->r;

        if (error < 0 && error != -ENOENT && error != -ECANCELED)
                log_warning_errno(error, "Reconciler could not %s %s: %m", a->what, a->id);
        if (r) {
                sbx_hashmap_remove(r->busy, a->id);
                if (*a->org_key)
                        key_release(r, a->org_key);
                if (*a->node_key)
                        key_release(r, a->node_key);
                update_gauges(r);
                /* A slot is free: whatever waits for one can go. */
                if (r->n_queued > 0)
                        schedule_work(r);
        }
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
        update_gauges(r);
        return a;
}

/* The usage keys a finalization of the record rewrites: none when it holds no quota. */
static bool release_keys(const Sbx__V1__SandboxRecord *rec, char org_key[SBX_KEY_NAME_MAX + 3],
                         char node_key[SBX_KEY_NAME_MAX + 3])
{
        if (!rec->quota_held)
                return false;
        snprintf(org_key, SBX_KEY_NAME_MAX + 3, "o:%s", strempty(rec->org));
        snprintf(node_key, SBX_KEY_NAME_MAX + 3, "n:%s", strempty(rec->node));
        return true;
}

static void finalize(SchedReconciler *r, SchedSandbox *sb, Sbx__V1__SandboxState st, const char *reason)
{
        Action *a = action_new(r, sb->id, "finalize");
        if (!a)
                return;
        if (release_keys(sb->record, a->org_key, a->node_key)) {
                key_hold(r, a->org_key);
                key_hold(r, a->node_key);
        }
        if (st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_LOST)
                sbx_counter_inc(r->s->m.reconcile_actions, SBX_LABELS("lost"));
        if (sched_finalize(r->s, sb->id, SCHED_WRITE_DROPPABLE, st, reason, action_done, a) < 0)
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
        if (sched_record_update(r->s, sb->id, SCHED_WRITE_DROPPABLE, stop_expired, NULL, action_done, a) < 0)
                action_done(r->s, -ENOMEM, a);
}

static void forget(SchedReconciler *r, SchedSandbox *sb)
{
        Action *a = action_new(r, sb->id, "forget");
        if (!a)
                return;
        if (sched_forget(r->s, sb->id, SCHED_WRITE_DROPPABLE, action_done, a) < 0)
                action_done(r->s, -ENOMEM, a);
}

/* ---- deciding ---- */

typedef enum Verdict {
        VERDICT_NONE,
        VERDICT_ACTED,
        /* An action is due but every slot is taken. */
        VERDICT_WAIT,
        /* A finalization is due but another release holds one of its usage keys (named in
         * `blocked`). */
        VERDICT_BLOCKED,
} Verdict;

/* Looks at one sandbox: acts when something is due and a slot (and its usage keys) are free, else
 * remembers when to look again. */
static Verdict reconcile_one(SchedReconciler *r, SchedSandbox *sb, int64_t now,
                             char blocked[SBX_KEY_NAME_MAX + 3])
{
        Scheduler *s = r->s;
        const Sbx__V1__SandboxRecord *rec = sb->record;
        bool full = sbx_hashmap_size(r->busy) >= MAX_ACTIONS;

        /* A sandbox with an action in flight is looked at again when the action's write (or the lack
         * of one) shows in the mirror, or by the next full pass. */
        if (!rec || sbx_hashmap_get(r->busy, sb->id))
                return VERDICT_NONE;
        if (sched_sandbox_ended(sb)) {
                int64_t gc_at = rec->ended_at_ms + (int64_t)(s->cfg.retention / USEC_PER_MSEC);
                if (gc_at > now) {
                        remind(r, sb, gc_at);
                        return VERDICT_NONE;
                }
                if (full)
                        return VERDICT_WAIT;
                forget(r, sb);
                return VERDICT_ACTED;
        }

        Sbx__V1__SandboxState st =
                sb->status ? sb->status->state : SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED;
        bool lost = !sched_node_alive(sched_state_node(s->state, rec->node));
        bool stopped = st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED ||
                       st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED;
        bool wanted = rec->desired == SBX__V1__DESIRED_STATE__DESIRED_STATE_RUNNING && rec->stop_at_ms > 0;
        int64_t never_started_at =
                rec->created_at_ms + 2 * (int64_t)(s->cfg.create_deadline / USEC_PER_MSEC);
        bool expired = wanted && now >= rec->stop_at_ms;
        bool never_started = !sb->status && now > never_started_at;

        if (lost || stopped || expired || never_started) {
                char org_key[SBX_KEY_NAME_MAX + 3], node_key[SBX_KEY_NAME_MAX + 3];
                bool finalizing = lost || stopped || !expired;
                if (finalizing && release_keys(rec, org_key, node_key)) {
                        const char *k = key_held(r, node_key)  ? node_key
                                        : key_held(r, org_key) ? org_key
                                                               : NULL;
                        if (k) {
                                snprintf(blocked, SBX_KEY_NAME_MAX + 3, "%s", k);
                                return VERDICT_BLOCKED;
                        }
                }
                if (full)
                        return VERDICT_WAIT;
                if (lost) {
                        char reason[160];
                        snprintf(reason, sizeof(reason), "node %s was lost", rec->node);
                        finalize(r, sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_LOST, reason);
                } else if (stopped) {
                        finalize(r, sb, st, sb->status->reason);
                } else if (expired) {
                        expire(r, sb);
                } else {
                        finalize(r, sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED, "never started");
                }
                return VERDICT_ACTED;
        }

        int64_t next = 0;
        if (wanted)
                next = rec->stop_at_ms;
        if (!sb->status && (next == 0 || never_started_at + 1 < next))
                next = never_started_at + 1;
        if (next > 0)
                remind(r, sb, next);
        return VERDICT_NONE;
}

static void note_waiting(SchedReconciler *r)
{
        if (r->saturated)
                return;
        r->saturated = true;
        log_info("Reconciler at its limit of %d actions in flight; %zu sandboxes wait for a slot",
                 MAX_ACTIONS, r->n_queued);
}

/* Works through the queue until it is empty, every action slot is taken, or the turn is over. */
static void run_queue(SchedReconciler *r)
{
        int64_t now = sbx_now_ms();
        unsigned looked = 0;

        while (r->leader && !STAILQ_EMPTY(&r->queue)) {
                char id[SBX_KEY_NAME_MAX + 1], woke[SBX_KEY_NAME_MAX + 3], blocked[SBX_KEY_NAME_MAX + 3];
                Queued *q = STAILQ_FIRST(&r->queue);

                if (looked++ >= TURN_MAX) {
                        schedule_work(r);
                        break;
                }
                SchedSandbox *sb = sched_state_sandbox(r->s->state, q->id);
                Verdict v = sb ? reconcile_one(r, sb, now, blocked) : VERDICT_NONE;
                /* Waiting for a slot keeps the sandbox first in line; action_done calls us back. */
                if (v == VERDICT_WAIT) {
                        note_waiting(r);
                        break;
                }
                snprintf(id, sizeof(id), "%s", q->id);
                snprintf(woke, sizeof(woke), "%s", q->woke);
                queue_pop(r);
                /* A sandbox woken from a line and blocked again keeps its place at the front. */
                if (v == VERDICT_BLOCKED)
                        key_wait(r, blocked, id, *woke != '\0');
                /* Woken for a key it did not take: the turn passes to the next in that line. */
                if (*woke && !key_held(r, woke))
                        key_wake(r, woke);
        }
        if (r->saturated && STAILQ_EMPTY(&r->queue)) {
                r->saturated = false;
                log_info("Reconciler caught up");
        }
        update_gauges(r);
}

static void on_work(uv_timer_t *t)
{
        SchedReconciler *r = t->data;
        r->work_scheduled = false;
        run_queue(r);
}

static void schedule_work(SchedReconciler *r)
{
        /* Coalesce a burst of changes (one watch message carries many) into one run. */
        if (!r->leader || r->work_scheduled)
                return;
        r->work_scheduled = true;
        uv_timer_start(&r->work, on_work, 0, 0);
}

/* The safety net: every sandbox, every reconcile-interval (and on becoming leader, and after the
 * mirror was rebuilt). What needs an action but finds no free slot is queued. */
static void full_pass(SchedReconciler *r)
{
        SbxHashmap *map = sched_state_sandboxes(r->s->state);
        int64_t now = sbx_now_ms();
        size_t state = 0;
        bool waited = false;
        void *v;

        if (!r->leader || !sched_state_ready(r->s->state))
                return;
        /* Actions start Txns and never change the mirror synchronously, so iterating is safe. */
        while (sbx_hashmap_next(map, &state, NULL, &v)) {
                SchedSandbox *sb = v;
                char blocked[SBX_KEY_NAME_MAX + 3];
                Verdict verdict = reconcile_one(r, sb, now, blocked);
                if (verdict == VERDICT_WAIT) {
                        enqueue(r, sb->id);
                        waited = true;
                } else if (verdict == VERDICT_BLOCKED) {
                        key_wait(r, blocked, sb->id, false);
                }
        }
        if (waited)
                note_waiting(r);
        update_gauges(r);
}

static void on_tick(uv_timer_t *t)
{
        full_pass(t->data);
}

static void on_change(SchedState *st, SchedChange what, const char *name, void *userdata)
{
        SchedReconciler *r = userdata;

        if (!r->leader)
                return;
        switch (what) {
        case SCHED_CHANGE_SANDBOX:
                enqueue(r, name);
                schedule_work(r);
                return;
        case SCHED_CHANGE_NODE: {
                /* A node that lost its lease takes its sandboxes with it. */
                SchedNode *n = sched_state_node(st, name);
                SchedSandbox *sb;
                if (!n || sched_node_alive(n))
                        return;
                for (sb = LIST_FIRST(&n->sandboxes); sb; sb = LIST_NEXT(sb, node_link))
                        enqueue(r, sb->id);
                schedule_work(r);
                return;
        }
        case SCHED_CHANGE_RESYNC:
                /* Every entry is new: so are the sandboxes' wake-up times. */
                full_pass(r);
                return;
        case SCHED_CHANGE_NODE_USAGE:
        case SCHED_CHANGE_ORG:
        case SCHED_CHANGE_ORG_USAGE:
        case SCHED_CHANGE_TOKEN:
                return;
        }
}

static void lines_clear(SchedReconciler *r)
{
        /* The lines own their entries; `lined` only points at them. */
        sbx_hashmap_free(r->lined, NULL);
        sbx_hashmap_free(r->releasing, line_free);
        r->lined = r->releasing = NULL;
        if (sbx_hashmap_new(&r->lined) < 0 || sbx_hashmap_new(&r->releasing) < 0)
                log_oom();
}

static void heap_clear(SchedReconciler *r)
{
        free(r->heap);
        r->heap = NULL;
        r->n_heap = r->cap_heap = 0;
}

void sched_reconciler_set_leader(SchedReconciler *r, bool leader)
{
        if (r->leader == leader)
                return;
        r->leader = leader;
        if (leader) {
                uint64_t ms = sbx_usec_to_msec_ceil(r->s->cfg.reconcile_interval);
                uv_timer_start(&r->tick, on_tick, ms, ms);
                /* The wake-up times were only kept while leading: start afresh. */
                SbxHashmap *map = sched_state_sandboxes(r->s->state);
                size_t state = 0;
                void *v;
                while (sbx_hashmap_next(map, &state, NULL, &v))
                        ((SchedSandbox *)v)->wake_ms = 0;
                full_pass(r);
        } else {
                /* Actions in flight finish on their own; nothing new starts. */
                uv_timer_stop(&r->tick);
                uv_timer_stop(&r->work);
                uv_timer_stop(&r->wake);
                r->work_scheduled = false;
                queue_clear(r);
                heap_clear(r);
                lines_clear(r);
                r->saturated = false;
                update_gauges(r);
        }
}

int sched_reconciler_new(Scheduler *s, SchedReconciler **ret)
{
        SchedReconciler *r = calloc(1, sizeof(SchedReconciler));
        if (!r)
                return -ENOMEM;
        r->s = s;
        STAILQ_INIT(&r->queue);
        if (sbx_hashmap_new(&r->busy) < 0 || sbx_hashmap_new(&r->queued) < 0 ||
            sbx_hashmap_new(&r->releasing) < 0 || sbx_hashmap_new(&r->lined) < 0 ||
            sched_state_listen(s->state, on_change, r) < 0) {
                sbx_hashmap_free(r->busy, NULL);
                sbx_hashmap_free(r->queued, NULL);
                sbx_hashmap_free(r->releasing, NULL);
                sbx_hashmap_free(r->lined, NULL);
                free(r);
                return -ENOMEM;
        }
        uv_timer_init(s->loop, &r->tick);
        uv_timer_init(s->loop, &r->work);
        uv_timer_init(s->loop, &r->wake);
        r->tick.data = r->work.data = r->wake.data = r;
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
        queue_clear(r);
        heap_clear(r);
        sbx_hashmap_free(r->queued, NULL);
        sbx_hashmap_free(r->lined, NULL);
        sbx_hashmap_free(r->releasing, line_free);
        sbx_hashmap_free(r->busy, orphan_action);
        r->closing = 3;
        uv_close((uv_handle_t *)&r->tick, reconciler_closed);
        uv_close((uv_handle_t *)&r->work, reconciler_closed);
        uv_close((uv_handle_t *)&r->wake, reconciler_closed);
        return NULL;
}
