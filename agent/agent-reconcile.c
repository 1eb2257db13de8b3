/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Desired state (etcd) against actual state (this host), level-triggered: every change, and a
 * periodic tick, runs one pass that starts what is assigned and wanted, stops what is not, and
 * moves stop times. After a restart the first pass also looks at what the previous life left on
 * disk: a VMM that still runs a sandbox etcd still assigns here is adopted; anything else is ended
 * and removed. Nothing is leaked across restarts.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"

#define TICK_MS 1000

static void pass(Agent *a);
static bool syncing;

static void free_record(void *p)
{
        if (p)
                protobuf_c_message_free_unpacked(p, NULL);
}

static bool record_wanted(const Sbx__V1__SandboxRecord *r)
{
        return r && r->desired == SBX__V1__DESIRED_STATE__DESIRED_STATE_RUNNING &&
               r->final_state == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED;
}

static void set_record(Agent *a, const char *id, const void *value, size_t len, bool deleted)
{
        void *old = NULL;
        ProtobufCMessage *m = NULL;

        if (!deleted &&
            sbx_store_unpack(&sbx__v1__sandbox_record__descriptor, len ? value : "", len, &m) < 0) {
                log_warning("Ignoring an undecodable record for %s", id);
                return;
        }
        if (m && !streq(((Sbx__V1__SandboxRecord *)m)->node, a->cfg.name)) {
                /* Not placed here (any more): forget what we knew. */
                protobuf_c_message_free_unpacked(m, NULL);
                m = NULL;
        }
        if (m)
                sbx_hashmap_put(a->records, id, m, &old);
        else
                old = sbx_hashmap_remove(a->records, id);
        free_record(old);
}

/* ---- watches ---- */

static void on_assign(SbxEtcdWatch *w, const Etcdserverpb__WatchResponse *r, void *userdata);
static void on_record(SbxEtcdWatch *w, const Etcdserverpb__WatchResponse *r, void *userdata);
static void start_sync(Agent *a);

/* Record reads in flight: leftovers from a previous run are judged only once none is, so that a
 * sandbox whose record has not arrived yet is not mistaken for one nobody wants. */
static unsigned records_pending;

static void record_fetched(int error, const Etcdserverpb__RangeResponse *r, void *userdata)
{
        Agent *a = userdata;
        char id[SBX_KEY_NAME_MAX + 1], b[SBX_KEY_NAME_MAX + 1];

        records_pending--;
        if (a->stopping)
                return;
        if (error < 0) {
                /* Read everything again rather than act on a partial picture. */
                log_debug("Reading a sandbox record failed: %s; reading the assignments again",
                          sbx_error_message(error));
                start_sync(a);
                return;
        }
        for (size_t i = 0; i < r->n_kvs; i++)
                if (sbx_key_parse(r->kvs[i]->key.data, r->kvs[i]->key.len, id, b) == SBX_KEY_KIND_SANDBOX)
                        set_record(a, id, r->kvs[i]->value.data, r->kvs[i]->value.len, false);
        agent_reconcile_kick(a);
}

static void fetch_record(Agent *a, const char *id)
{
        char key[256];
        snprintf(key, sizeof(key), SBX_KEY_SANDBOXES "%s", id);
        if (sbx_etcd_get(a->etcd, key, record_fetched, a) >= 0)
                records_pending++;
}

static void on_assign(SbxEtcdWatch *w, const Etcdserverpb__WatchResponse *r, void *userdata)
{
        Agent *a = userdata;
        char node[SBX_KEY_NAME_MAX + 1], id[SBX_KEY_NAME_MAX + 1];

        for (size_t i = 0; i < r->n_events; i++) {
                const Etcdserverpb__Event *ev = r->events[i];
                if (!ev->kv ||
                    sbx_key_parse(ev->kv->key.data, ev->kv->key.len, node, id) != SBX_KEY_KIND_ASSIGN ||
                    !streq(node, a->cfg.name))
                        continue;
                if (ev->type == ETCDSERVERPB__EVENT__EVENT_TYPE__DELETE) {
                        sbx_hashmap_remove(a->assigned, id);
                } else {
                        sbx_hashmap_put(a->assigned, id, (void *)1, NULL);
                        if (!sbx_hashmap_get(a->records, id))
                                fetch_record(a, id);
                }
        }
        agent_reconcile_kick(a);
}

static void on_record(SbxEtcdWatch *w, const Etcdserverpb__WatchResponse *r, void *userdata)
{
        Agent *a = userdata;
        char id[SBX_KEY_NAME_MAX + 1], b[SBX_KEY_NAME_MAX + 1];

        for (size_t i = 0; i < r->n_events; i++) {
                const Etcdserverpb__Event *ev = r->events[i];
                if (!ev->kv ||
                    sbx_key_parse(ev->kv->key.data, ev->kv->key.len, id, b) != SBX_KEY_KIND_SANDBOX)
                        continue;
                /* Records of other nodes are none of our business (set_record drops them). */
                if (!sbx_hashmap_get(a->assigned, id) && !sbx_hashmap_get(a->sandboxes, id) &&
                    !sbx_hashmap_get(a->records, id))
                        continue;
                bool del = ev->type == ETCDSERVERPB__EVENT__EVENT_TYPE__DELETE;
                set_record(a, id, ev->kv->value.data, del ? 0 : ev->kv->value.len, del);
        }
        agent_reconcile_kick(a);
}

static void on_resync(SbxEtcdWatch *w, int64_t compact_revision, void *userdata)
{
        /* We fell behind a compaction: read everything again. */
        start_sync(userdata);
}

static void assignments_read(int error, const Etcdserverpb__RangeResponse *r, void *userdata)
{
        static const SbxEtcdWatchCallbacks assign_cbs = { .on_events = on_assign, .on_resync = on_resync };
        static const SbxEtcdWatchCallbacks record_cbs = { .on_events = on_record, .on_resync = on_resync };
        Agent *a = userdata;
        char node[SBX_KEY_NAME_MAX + 1], id[SBX_KEY_NAME_MAX + 1], prefix[256];

        if (a->stopping)
                return;
        syncing = false;
        if (error < 0) {
                /* etcd is unreachable: the tick tries again. */
                log_debug("Reading assignments failed: %s; retrying", sbx_error_message(error));
                return;
        }
        sbx_hashmap_free(a->assigned, NULL);
        sbx_hashmap_new(&a->assigned);
        for (size_t i = 0; i < r->n_kvs; i++)
                if (sbx_key_parse(r->kvs[i]->key.data, r->kvs[i]->key.len, node, id) ==
                            SBX_KEY_KIND_ASSIGN &&
                    streq(node, a->cfg.name)) {
                        sbx_hashmap_put(a->assigned, id, (void *)1, NULL);
                        fetch_record(a, id);
                }
        int64_t rev = r->header ? r->header->revision : 0;
        snprintf(prefix, sizeof(prefix), SBX_KEY_ASSIGN "%s/", a->cfg.name);
        a->assign_watch = sbx_etcd_watch_free(a->assign_watch);
        a->record_watch = sbx_etcd_watch_free(a->record_watch);
        sbx_etcd_watch(a->etcd, prefix, true, rev + 1, false, &assign_cbs, a, &a->assign_watch);
        sbx_etcd_watch(a->etcd, SBX_KEY_SANDBOXES, true, rev + 1, false, &record_cbs, a, &a->record_watch);
        if (!a->synced)
                log_info("Read %zu assignments of node %s", sbx_hashmap_size(a->assigned), a->cfg.name);
        a->synced = true;
        agent_reconcile_kick(a);
}

static void start_sync(Agent *a)
{
        char prefix[256];
        if (syncing)
                return;
        syncing = true;
        SbxEtcdRangeOptions o = { .prefix = true };
        snprintf(prefix, sizeof(prefix), SBX_KEY_ASSIGN "%s/", a->cfg.name);
        if (sbx_etcd_range(a->etcd, prefix, &o, assignments_read, a) < 0)
                syncing = false;
}

/* ---- the pass ---- */

static void adopt_or_clean_leftovers(Agent *a)
{
        char dir[512];
        DIR *d;
        struct dirent *de;

        snprintf(dir, sizeof(dir), "%s/sandboxes", a->cfg.state_dir);
        d = opendir(dir);
        if (!d)
                return;
        while ((de = readdir(d))) {
                const char *id = de->d_name;
                AgentSandbox *sb = NULL;
                if (id[0] == '.' || sbx_hashmap_get(a->sandboxes, id))
                        continue;
                const Sbx__V1__SandboxRecord *rec = sbx_hashmap_get(a->records, id);
                if (sbx_hashmap_get(a->assigned, id) && record_wanted(rec) &&
                    agent_sandbox_adopt(a, id, rec, &sb) >= 0) {
                        sbx_hashmap_put(a->sandboxes, id, sb, NULL);
                        continue;
                }
                log_info_fields(LOG_FIELDS({ "sandbox", id }),
                                "Removing what a previous run left of this sandbox");
                if (sbx_hashmap_get(a->assigned, id) && record_wanted(rec))
                        agent_status_write(a, id, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED,
                                           "the VMM exited while the agent was down", 0, NULL);
                agent_sandbox_cleanup_dir(a, id);
        }
        closedir(d);
}

static void pass(Agent *a)
{
        size_t state = 0;
        const char *id;
        void *v;
        char **ids = NULL;

        if (!a->synced || a->stopping)
                return;
        static bool first = true;
        if (first) {
                if (records_pending > 0)
                        return; /* record_fetched kicks again */
                first = false;
                adopt_or_clean_leftovers(a);
                a->settled = true;
        }

        /* Start what is assigned and wanted. */
        while (sbx_hashmap_next(a->assigned, &state, &id, NULL))
                strv_extend(&ids, id);
        STRV_FOREACH (i, ids) {
                const Sbx__V1__SandboxRecord *rec = sbx_hashmap_get(a->records, *i);
                AgentSandbox *sb = sbx_hashmap_get(a->sandboxes, *i);
                if (!sb && record_wanted(rec)) {
                        if (rec->stop_at_ms > 0 && rec->stop_at_ms <= sbx_now_ms())
                                continue; /* expired before we got to it; the leader ends it */
                        if (agent_sandbox_start(a, rec, &sb) >= 0 && agent_sandbox_phase(sb) != PHASE_ENDED)
                                sbx_hashmap_put(a->sandboxes, *i, sb, NULL);
                } else if (sb && rec) {
                        agent_sandbox_set_stop_at(sb, rec->stop_at_ms);
                }
        }
        strv_free(ids);
        ids = NULL;

        /* Stop what is not (unassigned, deleted, or asked to stop). */
        state = 0;
        while (sbx_hashmap_next(a->sandboxes, &state, &id, NULL))
                strv_extend(&ids, id);
        STRV_FOREACH (i, ids) {
                AgentSandbox *sb = sbx_hashmap_get(a->sandboxes, *i);
                const Sbx__V1__SandboxRecord *rec = sbx_hashmap_get(a->records, *i);
                if (!sb)
                        continue;
                if (!sbx_hashmap_get(a->assigned, *i) || !record_wanted(rec)) {
                        const char *reason = rec && !isempty(rec->stop_reason) ? rec->stop_reason
                                             : !sbx_hashmap_get(a->assigned, *i)
                                                     ? "no longer assigned to this node"
                                                     : "stop requested";
                        agent_sandbox_stop(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED, reason);
                }
        }
        strv_free(ids);
        (void)v;
}

static void on_tick(uv_timer_t *t)
{
        Agent *a = t->data;
        if (!a->synced)
                start_sync(a);
        pass(a);
}

static uv_timer_t kick_timer;
static bool kick_pending;

static void on_kick(uv_timer_t *t)
{
        kick_pending = false;
        pass(t->data);
}

void agent_reconcile_kick(Agent *a)
{
        if (kick_pending || a->stopping)
                return;
        kick_pending = true;
        uv_timer_start(&kick_timer, on_kick, 2, 0);
}

void agent_sandbox_forget(Agent *a, const char *id)
{
        sbx_hashmap_remove(a->sandboxes, id);
}

int agent_reconcile_start(Agent *a)
{
        int r;
        if ((r = sbx_hashmap_new(&a->assigned)) < 0 || (r = sbx_hashmap_new(&a->records)) < 0 ||
            (r = sbx_hashmap_new(&a->sandboxes)) < 0)
                return r;
        uv_timer_init(a->loop, &a->reconcile_timer);
        a->reconcile_timer.data = a;
        uv_timer_init(a->loop, &kick_timer);
        kick_timer.data = a;
        uv_timer_start(&a->reconcile_timer, on_tick, TICK_MS, TICK_MS);
        start_sync(a);
        return 0;
}

void agent_reconcile_stop(Agent *a)
{
        uv_timer_stop(&a->reconcile_timer);
        uv_timer_stop(&kick_timer);
        uv_close((uv_handle_t *)&a->reconcile_timer, NULL);
        uv_close((uv_handle_t *)&kick_timer, NULL);
        a->assign_watch = sbx_etcd_watch_free(a->assign_watch);
        a->record_watch = sbx_etcd_watch_free(a->record_watch);
        sbx_hashmap_free(a->assigned, NULL);
        sbx_hashmap_free(a->records, free_record);
        a->assigned = a->records = NULL;
}
