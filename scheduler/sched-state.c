/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/sched-state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"

typedef struct Listener {
        SchedStateListener fn;
        void *userdata;
} Listener;

/* The live nodes of one region. Entries stay when the region empties (there are few regions). */
struct SchedRegion {
        char *name;
        SchedNode **nodes;
        size_t n, cap;
};

struct SchedStateWait {
        LIST_ENTRY(SchedStateWait) link;
        int64_t revision;
        void (*fn)(int error, void *userdata);
        void *userdata;
};

/* Retries of the first read (and of a read after compaction) while etcd cannot be reached. */
#define READ_RETRY_MIN_MS 50
#define READ_RETRY_MAX_MS 1000

struct SchedState {
        SbxEtcd *etcd;
        SbxHashmap *nodes, *orgs, *sandboxes, *tokens, *regions;
        LIST_HEAD(, SchedStateWait) waits;
        int64_t revision;
        bool ready;
        bool reading;
        /* A failed read is tried again after retry_ms (doubling up to READ_RETRY_MAX_MS). */
        uv_timer_t *retry;
        unsigned retry_ms;
        SbxEtcdWatch *watch;
        Listener *listeners;
        size_t n_listeners;
        void (*ready_cb)(SchedState *s, void *userdata);
        void *ready_userdata;
        bool freed;
};

/* ---- entries ---- */

#define FREE_MSG(m)                                                         \
        do {                                                                \
                if (m)                                                      \
                        protobuf_c_message_free_unpacked(&(m)->base, NULL); \
                (m) = NULL;                                                 \
        } while (0)

static void node_free(void *p)
{
        SchedNode *n = p;
        FREE_MSG(n->node);
        FREE_MSG(n->control);
        FREE_MSG(n->usage);
        free(n->name);
        free(n);
}

static void org_free(void *p)
{
        SchedOrg *o = p;
        FREE_MSG(o->org);
        FREE_MSG(o->usage);
        free(o->name);
        free(o);
}

static void sandbox_free(void *p)
{
        SchedSandbox *sb = p;
        FREE_MSG(sb->record);
        FREE_MSG(sb->status);
        free(sb->id);
        free(sb);
}

static void token_free(void *p)
{
        Sbx__V1__TokenRecord *t = p;
        protobuf_c_message_free_unpacked(&t->base, NULL);
}

static void region_free(void *p)
{
        SchedRegion *r = p;
        free(r->nodes);
        free(r->name);
        free(r);
}

static void *entry_get(SbxHashmap *map, const char *name, size_t size, size_t name_off)
{
        void *e = sbx_hashmap_get(map, name);
        if (e)
                return e;
        e = calloc(1, size);
        if (!e)
                return NULL;
        char *copy = strdup(name);
        if (!copy || sbx_hashmap_put(map, name, e, NULL) < 0) {
                free(copy);
                free(e);
                return NULL;
        }
        *(char **)((char *)e + name_off) = copy;
        return e;
}

static SchedNode *node_get(SchedState *s, const char *name)
{
        SchedNode *n = sbx_hashmap_get(s->nodes, name);
        if (n)
                return n;
        n = entry_get(s->nodes, name, sizeof(SchedNode), offsetof(SchedNode, name));
        if (n)
                LIST_INIT(&n->sandboxes);
        return n;
}

static SchedOrg *org_get(SchedState *s, const char *name)
{
        return entry_get(s->orgs, name, sizeof(SchedOrg), offsetof(SchedOrg, name));
}

static SchedSandbox *sandbox_get(SchedState *s, const char *id)
{
        return entry_get(s->sandboxes, id, sizeof(SchedSandbox), offsetof(SchedSandbox, id));
}

static void node_maybe_drop(SchedState *s, SchedNode *n)
{
        /* A node with placements in flight keeps what this replica knows of it. */
        if (!n->node && !n->control && !n->usage && n->active == 0 && n->known.placing == 0)
                node_free(sbx_hashmap_remove(s->nodes, n->name));
}

/* ---- the region index ---- */

static void region_remove(SchedNode *n)
{
        SchedRegion *r = n->region;
        if (!r)
                return;
        /* Swap-remove: order does not matter, placement samples at random. */
        SchedNode *last = r->nodes[--r->n];
        r->nodes[n->region_pos] = last;
        last->region_pos = n->region_pos;
        n->region = NULL;
        n->region_pos = 0;
}

/* Puts the node where it belongs: in its region's list while it is alive, nowhere otherwise. */
static void region_update(SchedState *s, SchedNode *n)
{
        const char *want = sched_node_alive(n) && !isempty(n->node->region) ? n->node->region : NULL;
        SchedRegion *r;

        if (n->region && want && streq(n->region->name, want))
                return;
        region_remove(n);
        if (!want)
                return;
        r = sbx_hashmap_get(s->regions, want);
        if (!r) {
                r = calloc(1, sizeof(SchedRegion));
                if (!r || !(r->name = strdup(want)) || sbx_hashmap_put(s->regions, want, r, NULL) < 0) {
                        if (r)
                                region_free(r);
                        return;
                }
        }
        if (r->n == r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 16;
                SchedNode **v = realloc(r->nodes, cap * sizeof(*v));
                if (!v)
                        return;
                r->nodes = v;
                r->cap = cap;
        }
        n->region = r;
        n->region_pos = r->n;
        r->nodes[r->n++] = n;
}

static void org_maybe_drop(SchedState *s, SchedOrg *o)
{
        if (!o->org && !o->usage && o->known.placing == 0 && o->stopping == 0)
                org_free(sbx_hashmap_remove(s->orgs, o->name));
}

bool sched_node_alive(const SchedNode *n)
{
        return n && n->node != NULL;
}

bool sched_sandbox_ended(const SchedSandbox *sb)
{
        return sb->record && sb->record->final_state != SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED;
}

Sbx__V1__SandboxState sched_sandbox_state(const SchedSandbox *sb)
{
        if (sched_sandbox_ended(sb))
                return sb->record->final_state;
        if (sb->status) {
                Sbx__V1__SandboxState st = sb->status->state;
                if (sb->record && sb->record->desired == SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED &&
                    (st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING ||
                     st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STARTING ||
                     st == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_PENDING))
                        return SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPING;
                return st;
        }
        return SBX__V1__SANDBOX_STATE__SANDBOX_STATE_PENDING;
}

/* Keeps each node's list of sandboxes (and SchedNode.active) in step with records: a record is on
 * its node's list from its placement until it ends. */
static void sandbox_unlink(SchedState *s, SchedSandbox *sb)
{
        SchedNode *n = sb->on_node;
        if (!n)
                return;
        LIST_REMOVE(sb, node_link);
        sb->on_node = NULL;
        n->active--;
        if (sb->stopping) {
                n->stopping--;
                sb->stopping = false;
        }
        if (sb->stopping_org) {
                SchedOrg *o = sb->stopping_org;
                o->stopping--;
                sb->stopping_org = NULL;
                org_maybe_drop(s, o);
        }
        node_maybe_drop(s, n);
}

static void sandbox_link(SchedState *s, SchedSandbox *sb)
{
        const Sbx__V1__SandboxRecord *r = sb->record;
        if (!r || isempty(r->node) || r->final_state != SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED)
                return;
        SchedNode *n = node_get(s, r->node);
        if (!n)
                return;
        LIST_INSERT_HEAD(&n->sandboxes, sb, node_link);
        sb->on_node = n;
        n->active++;
        if (r->desired == SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED) {
                sb->stopping = true;
                n->stopping++;
                if (!isempty(r->org) && (sb->stopping_org = org_get(s, r->org)))
                        sb->stopping_org->stopping++;
        }
}

static bool still_listening(SchedState *s, const Listener *l)
{
        for (size_t i = 0; i < s->n_listeners; i++)
                if (s->listeners[i].fn == l->fn && s->listeners[i].userdata == l->userdata)
                        return true;
        return false;
}

static void notify(SchedState *s, SchedChange what, const char *name)
{
        /* Listeners may come and go while being told: walk a copy, and skip those that left. The
         * copy lives on the stack in the common case: this runs for every change. */
        Listener small[8];
        size_t n = s->n_listeners;
        Listener *copy = n <= ELEMENTSOF(small) ? small : malloc(n * sizeof(Listener));
        if (!copy)
                return;
        if (n)
                memcpy(copy, s->listeners, n * sizeof(Listener));
        for (size_t i = 0; i < n; i++)
                if (still_listening(s, &copy[i]))
                        copy[i].fn(s, what, name, copy[i].userdata);
        if (copy != small)
                free(copy);
}

/* ---- usage known to this replica ---- */

SchedUsage sched_node_usage(const SchedNode *n)
{
        SchedUsage u = n->known;
        if (n->known.rev > n->usage_rev)
                return u;
        const Sbx__V1__Resources *a = n->usage ? n->usage->allocated : NULL;
        u.memory_mb = a ? a->memory_mb : 0;
        u.vcpus = a ? a->vcpus : 0;
        u.count = a ? a->slots : 0;
        u.rev = n->usage_rev;
        return u;
}

SchedUsage sched_org_usage(const SchedOrg *o)
{
        SchedUsage u = o->known;
        if (o->known.rev > o->usage_rev)
                return u;
        u.memory_mb = o->usage ? o->usage->memory_mb : 0;
        u.vcpus = 0;
        u.count = o->usage ? o->usage->sandboxes : 0;
        u.rev = o->usage_rev;
        return u;
}

void sched_usage_learn(SchedUsage *known, uint64_t memory_mb, uint32_t vcpus, uint32_t count, int64_t rev)
{
        if (rev <= known->rev)
                return;
        known->memory_mb = memory_mb;
        known->vcpus = vcpus;
        known->count = count;
        known->rev = rev;
}

/* Decodes value into *slot (replacing what was there); a deletion clears it. */
static bool replace(ProtobufCMessage **slot, const ProtobufCMessageDescriptor *d, bool deleted,
                    const void *v, size_t n, const char *key)
{
        ProtobufCMessage *m = NULL;

        if (!deleted && sbx_store_unpack(d, n ? v : "", n, &m) < 0) {
                log_debug("Ignoring undecodable %s at %s", d->short_name, key);
                return false;
        }
        if (*slot)
                protobuf_c_message_free_unpacked(*slot, NULL);
        *slot = m;
        return true;
}

void sched_state_apply(SchedState *s, const void *key, size_t key_len, bool deleted, const void *value,
                       size_t value_len, int64_t mod_revision)
{
        char a[SBX_KEY_NAME_MAX + 1], b[SBX_KEY_NAME_MAX + 1];
        SbxKeyKind kind = sbx_key_parse(key, key_len, a, b);
        SchedNode *n;
        SchedOrg *o;
        SchedSandbox *sb = NULL;
        char keystr[256];

        snprintf(keystr, sizeof(keystr), "%.*s", (int)SBX_MIN(key_len, 200), (const char *)key);
        switch (kind) {
        case SBX_KEY_KIND_NODE:
                if (!(n = node_get(s, a)))
                        return;
                if (replace((ProtobufCMessage **)&n->node, &sbx__v1__node__descriptor, deleted, value,
                            value_len, keystr)) {
                        region_update(s, n);
                        notify(s, SCHED_CHANGE_NODE, a);
                        node_maybe_drop(s, n);
                }
                return;
        case SBX_KEY_KIND_NODECTL:
                if (!(n = node_get(s, a)))
                        return;
                if (replace((ProtobufCMessage **)&n->control, &sbx__v1__node_control__descriptor, deleted,
                            value, value_len, keystr)) {
                        notify(s, SCHED_CHANGE_NODE, a);
                        node_maybe_drop(s, n);
                }
                return;
        case SBX_KEY_KIND_USAGE_NODE:
                if (!(n = node_get(s, a)))
                        return;
                if (replace((ProtobufCMessage **)&n->usage, &sbx__v1__node_usage__descriptor, deleted, value,
                            value_len, keystr)) {
                        n->usage_rev = !deleted ? mod_revision : 0;
                        /* What this replica knew is superseded, by a write or by a deletion. */
                        if (n->known.rev <= mod_revision)
                                n->known.rev = 0;
                        notify(s, SCHED_CHANGE_NODE_USAGE, a);
                        node_maybe_drop(s, n);
                }
                return;
        case SBX_KEY_KIND_ORG:
                if (!(o = org_get(s, a)))
                        return;
                if (replace((ProtobufCMessage **)&o->org, &sbx__v1__org__descriptor, deleted, value,
                            value_len, keystr)) {
                        o->org_rev = !deleted ? mod_revision : 0;
                        notify(s, SCHED_CHANGE_ORG, a);
                        org_maybe_drop(s, o);
                }
                return;
        case SBX_KEY_KIND_USAGE_ORG:
                if (!(o = org_get(s, a)))
                        return;
                if (replace((ProtobufCMessage **)&o->usage, &sbx__v1__org_usage__descriptor, deleted, value,
                            value_len, keystr)) {
                        o->usage_rev = !deleted ? mod_revision : 0;
                        if (o->known.rev <= mod_revision)
                                o->known.rev = 0;
                        notify(s, SCHED_CHANGE_ORG_USAGE, a);
                        org_maybe_drop(s, o);
                }
                return;
        case SBX_KEY_KIND_TOKEN: {
                ProtobufCMessage *t = NULL;
                if (!deleted && sbx_store_unpack(&sbx__v1__token_record__descriptor, value_len ? value : "",
                                                 value_len, &t) < 0)
                        return;
                void *old = NULL;
                if (t)
                        sbx_hashmap_put(s->tokens, a, t, &old);
                else
                        old = sbx_hashmap_remove(s->tokens, a);
                if (old)
                        token_free(old);
                notify(s, SCHED_CHANGE_TOKEN, a);
                return;
        }
        case SBX_KEY_KIND_SANDBOX:
                if (!(sb = sandbox_get(s, a)))
                        return;
                sandbox_unlink(s, sb);
                if (replace((ProtobufCMessage **)&sb->record, &sbx__v1__sandbox_record__descriptor, deleted,
                            value, value_len, keystr))
                        sb->record_rev = !deleted ? mod_revision : 0;
                sandbox_link(s, sb);
                notify(s, SCHED_CHANGE_SANDBOX, a);
                break;
        case SBX_KEY_KIND_STATUS:
                if (!(sb = sandbox_get(s, a)))
                        return;
                if (replace((ProtobufCMessage **)&sb->status, &sbx__v1__sandbox_status__descriptor, deleted,
                            value, value_len, keystr))
                        sb->status_rev = !deleted ? mod_revision : 0;
                notify(s, SCHED_CHANGE_SANDBOX, a);
                break;
        default:
                /* Assignments mirror records; secrets and the leader key are not ours to read. */
                return;
        }
        /* A sandbox without record and status is gone. */
        if (sb && !sb->record && !sb->status)
                sandbox_free(sbx_hashmap_remove(s->sandboxes, a));
}

/* ---- sync ---- */

static void start_read(SchedState *s);
static void read_later(SchedState *s);

/* Runs the waits the mirror has reached (or all of them, with an error). */
static void waits_run(SchedState *s, int error)
{
        SchedStateWait *w, *next;

        for (w = LIST_FIRST(&s->waits); w; w = next) {
                next = LIST_NEXT(w, link);
                if (error >= 0 && w->revision > s->revision)
                        continue;
                LIST_REMOVE(w, link);
                void (*fn)(int, void *) = w->fn;
                void *ud = w->userdata;
                free(w);
                fn(error, ud);
                /* fn may have cancelled other waits: start over (they are few). */
                next = LIST_FIRST(&s->waits);
        }
}

int sched_state_wait_revision(SchedState *s, int64_t revision, void (*fn)(int error, void *userdata),
                              void *userdata, SchedStateWait **ret)
{
        SchedStateWait *w;

        if (s->ready && revision <= s->revision)
                return -EALREADY;
        w = calloc(1, sizeof(SchedStateWait));
        if (!w)
                return -ENOMEM;
        w->revision = revision;
        w->fn = fn;
        w->userdata = userdata;
        LIST_INSERT_HEAD(&s->waits, w, link);
        if (ret)
                *ret = w;
        return 0;
}

void sched_state_wait_cancel(SchedState *s, SchedStateWait *w)
{
        if (!w)
                return;
        LIST_REMOVE(w, link);
        free(w);
}

static void on_events(SbxEtcdWatch *w, const Etcdserverpb__WatchResponse *r, void *userdata)
{
        SchedState *s = userdata;

        for (size_t i = 0; i < r->n_events; i++) {
                const Etcdserverpb__Event *ev = r->events[i];
                if (!ev->kv)
                        continue;
                bool del = ev->type == ETCDSERVERPB__EVENT__EVENT_TYPE__DELETE;
                sched_state_apply(s, ev->kv->key.data, ev->kv->key.len, del, ev->kv->value.data,
                                  del ? 0 : ev->kv->value.len, ev->kv->mod_revision);
                if (ev->kv->mod_revision > s->revision)
                        s->revision = ev->kv->mod_revision;
        }
        if (!LIST_EMPTY(&s->waits))
                waits_run(s, 0);
}

static void on_resync(SbxEtcdWatch *w, int64_t compact_revision, void *userdata)
{
        SchedState *s = userdata;
        log_debug("State watch fell behind compaction at %lld; re-reading", (long long)compact_revision);
        start_read(s);
}

static void clear(SchedState *s)
{
        sbx_hashmap_free(s->nodes, node_free);
        sbx_hashmap_free(s->orgs, org_free);
        sbx_hashmap_free(s->sandboxes, sandbox_free);
        sbx_hashmap_free(s->tokens, token_free);
        sbx_hashmap_free(s->regions, region_free);
        s->nodes = s->orgs = s->sandboxes = s->tokens = s->regions = NULL;
}

static int alloc_maps(SchedState *s)
{
        int r;
        if ((r = sbx_hashmap_new(&s->nodes)) < 0 || (r = sbx_hashmap_new(&s->orgs)) < 0 ||
            (r = sbx_hashmap_new(&s->sandboxes)) < 0 || (r = sbx_hashmap_new(&s->tokens)) < 0 ||
            (r = sbx_hashmap_new(&s->regions)) < 0)
                return r;
        return 0;
}

static void read_done(int error, const Etcdserverpb__RangeResponse *r, void *userdata)
{
        SchedState *s = userdata;
        static const SbxEtcdWatchCallbacks cbs = { .on_events = on_events, .on_resync = on_resync };

        s->reading = false;
        if (s->freed) {
                free(s);
                return;
        }
        if (error < 0) {
                /* etcd is not reachable yet: try again, after a pause (gRPC fails such a call at
                 * once); the daemon is not ready meanwhile. */
                read_later(s);
                log_debug("Reading cluster state failed: %s; retrying in %u ms", sbx_error_message(error),
                          s->retry_ms);
                return;
        }
        s->retry_ms = 0;
        clear(s);
        if (alloc_maps(s) < 0) {
                start_read(s);
                return;
        }
        for (size_t i = 0; i < r->n_kvs; i++)
                sched_state_apply(s, r->kvs[i]->key.data, r->kvs[i]->key.len, false, r->kvs[i]->value.data,
                                  r->kvs[i]->value.len, r->kvs[i]->mod_revision);
        s->revision = r->header ? r->header->revision : 0;

        if (s->watch)
                sbx_etcd_watch_restart(s->watch, s->revision + 1);
        else if (sbx_etcd_watch(s->etcd, SBX_KEY_ROOT, true, s->revision + 1, false, &cbs, s, &s->watch) < 0)
                s->watch = NULL;
        notify(s, SCHED_CHANGE_RESYNC, NULL);
        if (!s->ready) {
                s->ready = true;
                if (s->ready_cb)
                        s->ready_cb(s, s->ready_userdata);
        }
        if (!LIST_EMPTY(&s->waits))
                waits_run(s, 0);
}

static void on_retry(uv_timer_t *t)
{
        start_read(t->data);
}

static void read_later(SchedState *s)
{
        s->retry_ms = s->retry_ms ? SBX_MIN(2 * s->retry_ms, READ_RETRY_MAX_MS) : READ_RETRY_MIN_MS;
        uv_timer_start(s->retry, on_retry, s->retry_ms, 0);
}

static void start_read(SchedState *s)
{
        SbxEtcdRangeOptions o = { .prefix = true };
        if (s->reading)
                return;
        if (sbx_etcd_range(s->etcd, SBX_KEY_ROOT, &o, read_done, s) >= 0)
                s->reading = true;
}

int sched_state_new(SbxEtcd *etcd, SchedState **ret)
{
        SchedState *s = calloc(1, sizeof(SchedState));
        int r;

        if (!s)
                return -ENOMEM;
        s->etcd = etcd;
        LIST_INIT(&s->waits);
        r = alloc_maps(s);
        if (r < 0) {
                clear(s);
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int sched_state_start(SchedState *s, void (*ready)(SchedState *s, void *userdata), void *userdata)
{
        s->ready_cb = ready;
        s->ready_userdata = userdata;
        /* Its own allocation: it closes after sched_state_free() has returned. */
        if (!s->retry) {
                if (!(s->retry = malloc(sizeof(*s->retry))))
                        return -ENOMEM;
                uv_timer_init(sbx_etcd_loop(s->etcd), s->retry);
                s->retry->data = s;
        }
        start_read(s);
        return s->reading ? 0 : -ENOMEM;
}

SchedState *sched_state_free(SchedState *s)
{
        if (!s)
                return NULL;
        sbx_etcd_watch_free(s->watch);
        s->watch = NULL;
        if (s->retry)
                uv_close((uv_handle_t *)s->retry, (uv_close_cb)free);
        s->retry = NULL;
        waits_run(s, -ECANCELED);
        clear(s);
        free(s->listeners);
        s->listeners = NULL;
        s->n_listeners = 0;
        if (s->reading) {
                /* The read's callback frees us. */
                s->freed = true;
                return NULL;
        }
        free(s);
        return NULL;
}

bool sched_state_ready(const SchedState *s)
{
        return s->ready;
}

int64_t sched_state_revision(const SchedState *s)
{
        return s->revision;
}

int sched_state_listen(SchedState *s, SchedStateListener fn, void *userdata)
{
        Listener *l = realloc(s->listeners, (s->n_listeners + 1) * sizeof(Listener));
        if (!l)
                return -ENOMEM;
        s->listeners = l;
        s->listeners[s->n_listeners++] = (Listener){ fn, userdata };
        return 0;
}

void sched_state_unlisten(SchedState *s, SchedStateListener fn, void *userdata)
{
        for (size_t i = 0; i < s->n_listeners; i++)
                if (s->listeners[i].fn == fn && s->listeners[i].userdata == userdata) {
                        memmove(&s->listeners[i], &s->listeners[i + 1],
                                (s->n_listeners - i - 1) * sizeof(Listener));
                        s->n_listeners--;
                        return;
                }
}

SchedNode *sched_state_node(SchedState *s, const char *name)
{
        return sbx_hashmap_get(s->nodes, name);
}

SchedOrg *sched_state_org(SchedState *s, const char *name)
{
        return sbx_hashmap_get(s->orgs, name);
}

SchedSandbox *sched_state_sandbox(SchedState *s, const char *id)
{
        return sbx_hashmap_get(s->sandboxes, id);
}

const Sbx__V1__TokenRecord *sched_state_token(SchedState *s, const char *hash)
{
        return sbx_hashmap_get(s->tokens, hash);
}

size_t sched_state_region_nodes(SchedState *s, const char *region, SchedNode *const **ret)
{
        SchedRegion *r = region ? sbx_hashmap_get(s->regions, region) : NULL;
        *ret = r ? r->nodes : NULL;
        return r ? r->n : 0;
}

static int str_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

char **sched_state_regions(SchedState *s)
{
        char **l = calloc(1, sizeof(char *));
        size_t state = 0;
        void *v;

        if (!l)
                return NULL;
        while (sbx_hashmap_next(s->regions, &state, NULL, &v)) {
                SchedRegion *r = v;
                if (r->n > 0 && strv_extend(&l, r->name) < 0) {
                        strv_free(l);
                        return NULL;
                }
        }
        qsort_safe(l, strv_length(l), sizeof(char *), str_cmp);
        return l;
}

SbxHashmap *sched_state_nodes(SchedState *s)
{
        return s->nodes;
}

SbxHashmap *sched_state_orgs(SchedState *s)
{
        return s->orgs;
}

SbxHashmap *sched_state_sandboxes(SchedState *s)
{
        return s->sandboxes;
}

SbxHashmap *sched_state_tokens(SchedState *s)
{
        return s->tokens;
}
