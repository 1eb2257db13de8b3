/* SPDX-License-Identifier: Apache-2.0 */
/* sbx.v1.Sandboxes: one function per RPC (Create is in sched-create.c, Attach in sched-attach.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/api/api.h"
#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"
#include "scheduler/sched-validate.h"
#include "scheduler/sched.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX     1000
/* A Watch stream that cannot keep up is ended rather than buffered without bound. */
#define WATCH_BACKLOG_MAX (4u * 1024 * 1024)

const SbxRpcMethod *const sched_sandboxes_methods[] = { &sbx_api_sandboxes_create, &sbx_api_sandboxes_get,
                                                        &sbx_api_sandboxes_list,   &sbx_api_sandboxes_delete,
                                                        &sbx_api_sandboxes_extend, &sbx_api_sandboxes_watch,
                                                        &sbx_api_sandboxes_attach };
const size_t sched_sandboxes_n_methods = ELEMENTSOF(sched_sandboxes_methods);

/* Finds the caller's sandbox, answering the call (INVALID_ARGUMENT, NOT_FOUND) when there is none.
 * Another organization's sandbox is NOT_FOUND too: existence never leaks across organizations. */
static SchedSandbox *own_sandbox(Scheduler *s, SbxRpcServerCall *call, const SchedCaller *c, const char *id)
{
        SchedSandbox *sb;

        if (!id || !sbx_sandbox_id_valid(id)) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                         "id: \"%.80s\" is not a sandbox id (sbx_<region>_<20 characters>)",
                                         id ? id : "");
                return NULL;
        }
        sb = sched_state_sandbox(s->state, id);
        if (!sb || !sb->record || !streq(sb->record->org, c->org)) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_NOT_FOUND, "Sandbox %s not found", id);
                return NULL;
        }
        return sb;
}

/* ---- Get ---- */

static void get_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__GetSandboxRequest *req = (const Sbx__V1__GetSandboxRequest *)request;
        SchedCaller c;
        Sbx__V1__Sandbox view;

        if (sched_auth(s, call, false, &c) < 0)
                return;
        SchedSandbox *sb = own_sandbox(s, call, &c, req->id);
        if (!sb)
                return;
        sched_view_sandbox(s, sb, &view);
        /* The org token already grants everything an access token does, so minting one for the
         * owner discloses nothing new; it only lets the owner reach the data plane. */
        _cleanup_free_ char *token = NULL;
        if (req->with_access_token && sched_access_token(s, sb, &token) >= 0)
                view.access_token = token;
        sbx_rpc_server_call_reply(call, &view.base);
}

/* ---- List ---- */

static bool has_labels(const Sbx__V1__SandboxRecord *r, const Sbx__V1__ListSandboxesRequest *req)
{
        for (size_t i = 0; i < req->n_labels; i++) {
                bool found = false;
                for (size_t j = 0; r->spec && j < r->spec->n_labels; j++)
                        if (streq(r->spec->labels[j]->key, req->labels[i]->key) &&
                            streq(r->spec->labels[j]->value, req->labels[i]->value))
                                found = true;
                if (!found)
                        return false;
        }
        return true;
}

static bool matches(const SchedSandbox *sb, const SchedCaller *c, const Sbx__V1__ListSandboxesRequest *req)
{
        if (!sb->record || !streq(sb->record->org, c->org))
                return false;
        if (!isempty(req->region) && (!sb->record->spec || !streq(sb->record->spec->region, req->region)))
                return false;
        if (req->n_states > 0) {
                Sbx__V1__SandboxState st = sched_sandbox_state(sb);
                bool ok = false;
                for (size_t i = 0; i < req->n_states; i++)
                        if (req->states[i] == st)
                                ok = true;
                if (!ok)
                        return false;
        }
        return has_labels(sb->record, req);
}

static int id_cmp(const void *a, const void *b)
{
        return strcmp((*(SchedSandbox *const *)a)->id, (*(SchedSandbox *const *)b)->id);
}

static void list_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__ListSandboxesRequest *req = (const Sbx__V1__ListSandboxesRequest *)request;
        _cleanup_free_ SchedSandbox **all = NULL;
        _cleanup_free_ Sbx__V1__Sandbox *views = NULL;
        _cleanup_free_ Sbx__V1__Sandbox **ptrs = NULL;
        _cleanup_free_ char *message = NULL;
        Sbx__V1__ListSandboxesResponse resp = SBX__V1__LIST_SANDBOXES_RESPONSE__INIT;
        SbxHashmap *map = sched_state_sandboxes(s->state);
        size_t n = 0, state = 0, page, start = 0, count;
        SchedCaller c;
        void *v;

        if (sched_auth(s, call, false, &c) < 0)
                return;
        if (sched_validate_labels((Sbx__V1__CreateSandboxRequest__LabelsEntry *const *)req->labels,
                                  req->n_labels, &message) < 0) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT, "%s", message);
                return;
        }
        if (req->page_size > PAGE_MAX) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                         "page_size: %u is out of range; allowed: 0..%d", req->page_size,
                                         PAGE_MAX);
                return;
        }
        page = req->page_size ? req->page_size : PAGE_DEFAULT;
        all = calloc(sbx_hashmap_size(map) + 1, sizeof(*all));
        if (!all) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        while (sbx_hashmap_next(map, &state, NULL, &v))
                if (matches(v, &c, req))
                        all[n++] = v;
        qsort_safe(all, n, sizeof(*all), id_cmp);
        /* The page token is the last id of the previous page: stable while sandboxes come and go. */
        if (!isempty(req->page_token))
                while (start < n && strcmp(all[start]->id, req->page_token) <= 0)
                        start++;
        count = SBX_MIN(page, n - start);
        views = calloc(count + 1, sizeof(*views));
        ptrs = calloc(count + 1, sizeof(*ptrs));
        if (!views || !ptrs) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        for (size_t i = 0; i < count; i++) {
                sched_view_sandbox(s, all[start + i], &views[i]);
                ptrs[i] = &views[i];
        }
        resp.sandboxes = ptrs;
        resp.n_sandboxes = count;
        if (start + count < n)
                resp.next_page_token = all[start + count - 1]->id;
        sbx_rpc_server_call_reply(call, &resp.base);
}

/* ---- Delete ---- */

typedef struct DeleteOp {
        Scheduler *s;
        SbxRpcServerCall *call;
        char id[SBX_SANDBOX_ID_LEN + 1];
        bool wait;
        bool answered;
        uv_timer_t timeout;
} DeleteOp;

static void delete_op_closed(uv_handle_t *h)
{
        DeleteOp *d = h->data;
        sbx_rpc_server_call_unref(d->call);
        free(d);
}

static void delete_op_end(DeleteOp *d)
{
        uv_close((uv_handle_t *)&d->timeout, delete_op_closed);
}

static void delete_reply(DeleteOp *d)
{
        Sbx__V1__DeleteSandboxResponse resp = SBX__V1__DELETE_SANDBOX_RESPONSE__INIT;
        Sbx__V1__Sandbox view;
        SchedSandbox *sb = sched_state_sandbox(d->s->state, d->id);

        if (d->answered)
                return;
        d->answered = true;
        if (sb) {
                sched_view_sandbox(d->s, sb, &view);
                resp.sandbox = &view;
        }
        sbx_rpc_server_call_reply(d->call, &resp.base);
}

static void delete_listener(SchedState *st, SchedChange what, const char *name, void *userdata)
{
        DeleteOp *d = userdata;
        if (d->answered || (what != SCHED_CHANGE_SANDBOX && what != SCHED_CHANGE_RESYNC))
                return;
        if (name && !streq(name, d->id))
                return;
        SchedSandbox *sb = sched_state_sandbox(st, d->id);
        if (!sb || sched_sandbox_ended(sb) ||
            sched_sandbox_state(sb) == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED) {
                delete_reply(d);
                sched_state_unlisten(st, delete_listener, d);
                uv_timer_stop(&d->timeout);
                delete_op_end(d);
        }
}

static void delete_timeout(uv_timer_t *t)
{
        DeleteOp *d = t->data;
        /* The stop is recorded; the agent is slow. Answer with what we know. */
        delete_reply(d);
        sched_state_unlisten(d->s->state, delete_listener, d);
        delete_op_end(d);
}

static bool mark_deleted(Sbx__V1__SandboxRecord *rec, void *userdata)
{
        if (rec->desired == SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED)
                return false;
        rec->desired = SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED;
        if (rec->stop_reason != protobuf_c_empty_string)
                free(rec->stop_reason);
        rec->stop_reason = strdup("deleted");
        return true;
}

static void delete_recorded(Scheduler *s, int error, void *userdata)
{
        DeleteOp *d = userdata;

        if (error < 0 && error != -ENOENT) {
                d->answered = true;
                sbx_rpc_server_call_fail(d->call, sbx_error_to_status(error),
                                         "Could not record the deletion of %s: %s", d->id,
                                         sbx_error_message(error));
                delete_op_end(d);
                return;
        }
        log_info_fields(LOG_FIELDS({ "sandbox", d->id }), "Sandbox deletion requested");
        if (!d->wait) {
                delete_reply(d);
                delete_op_end(d);
                return;
        }
        if (sched_state_listen(s->state, delete_listener, d) < 0) {
                delete_reply(d);
                delete_op_end(d);
                return;
        }
        usec_t left = sbx_rpc_server_call_time_left(d->call);
        uv_timer_start(&d->timeout, delete_timeout,
                       left == USEC_INFINITY ? 30000 : sbx_usec_to_msec_ceil(left) * 9 / 10, 0);
        delete_listener(s->state, SCHED_CHANGE_SANDBOX, d->id, d);
}

static void delete_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__DeleteSandboxRequest *req = (const Sbx__V1__DeleteSandboxRequest *)request;
        SchedCaller c;
        DeleteOp *d;

        if (sched_auth(s, call, false, &c) < 0)
                return;
        SchedSandbox *sb = own_sandbox(s, call, &c, req->id);
        if (!sb)
                return;
        d = calloc(1, sizeof(DeleteOp));
        if (!d) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        d->s = s;
        d->call = sbx_rpc_server_call_ref(call);
        d->wait = req->wait;
        snprintf(d->id, sizeof(d->id), "%s", req->id);
        uv_timer_init(s->loop, &d->timeout);
        d->timeout.data = d;
        if (sched_sandbox_ended(sb)) {
                /* Deleting what already ended succeeds: Delete is idempotent. */
                delete_reply(d);
                delete_op_end(d);
                return;
        }
        if (sched_record_update(s, req->id, 0, mark_deleted, NULL, delete_recorded, d) < 0) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                d->answered = true;
                delete_op_end(d);
        }
}

/* ---- Extend ---- */

typedef struct ExtendOp {
        SbxRpcServerCall *call;
        int64_t granted;
        char id[SBX_SANDBOX_ID_LEN + 1];
} ExtendOp;

static bool set_stop_at(Sbx__V1__SandboxRecord *rec, void *userdata)
{
        ExtendOp *e = userdata;
        if (rec->stop_at_ms == e->granted)
                return false;
        rec->stop_at_ms = e->granted;
        return true;
}

static void extend_recorded(Scheduler *s, int error, void *userdata)
{
        ExtendOp *e = userdata;
        Sbx__V1__ExtendSandboxResponse resp = SBX__V1__EXTEND_SANDBOX_RESPONSE__INIT;
        Sbx__V1__Sandbox view;
        SchedSandbox *sb = sched_state_sandbox(s->state, e->id);

        if (error < 0) {
                sbx_rpc_server_call_fail(e->call, sbx_error_to_status(error), "Could not extend %s: %s",
                                         e->id, sbx_error_message(error));
        } else {
                resp.stop_at_ms = e->granted;
                if (sb) {
                        sched_view_sandbox(s, sb, &view);
                        view.stop_at_ms = e->granted;
                        resp.sandbox = &view;
                }
                sbx_rpc_server_call_reply(e->call, &resp.base);
        }
        sbx_rpc_server_call_unref(e->call);
        free(e);
}

static void extend_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__ExtendSandboxRequest *req = (const Sbx__V1__ExtendSandboxRequest *)request;
        char d1[SBX_DURATION_MAX];
        SchedCaller c;

        if (sched_auth(s, call, false, &c) < 0)
                return;
        SchedSandbox *sb = own_sandbox(s, call, &c, req->id);
        if (!sb)
                return;
        if (sched_sandbox_ended(sb) ||
            sb->record->desired == SBX__V1__DESIRED_STATE__DESIRED_STATE_STOPPED) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_FAILED_PRECONDITION,
                                         "Sandbox %s is stopping or stopped", req->id);
                return;
        }
        if (sb->record->spec && sb->record->spec->session) {
                sbx_rpc_server_call_fail(
                        call, SBX_STATUS_FAILED_PRECONDITION,
                        "Sandbox %s is a session sandbox: it lives while attached and cannot be "
                        "extended",
                        req->id);
                return;
        }
        int64_t now = sbx_now_ms();
        if (req->stop_at_ms <= now) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                         "stop_at_ms: %lld is in the past (now is %lld)",
                                         (long long)req->stop_at_ms, (long long)now);
                return;
        }
        SchedOrg *org = sched_state_org(s->state, c.org);
        int64_t max_life = org && org->org ? (int64_t)org->org->max_lifetime_ms : 0;
        ExtendOp *e = calloc(1, sizeof(ExtendOp));
        if (!e) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        /* Capped: a sandbox never lives past created + the org's maximum lifetime. */
        e->granted = SBX_MIN(req->stop_at_ms, sb->record->created_at_ms + max_life);
        e->call = sbx_rpc_server_call_ref(call);
        snprintf(e->id, sizeof(e->id), "%s", req->id);
        if (e->granted < req->stop_at_ms)
                log_debug("Extend of %s capped at the org maximum lifetime of %s", req->id,
                          sbx_format_duration(d1, sizeof(d1), (usec_t)max_life * USEC_PER_MSEC));
        if (sched_record_update(s, req->id, 0, set_stop_at, e, extend_recorded, e) < 0) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                sbx_rpc_server_call_unref(e->call);
                free(e);
        }
}

/* ---- Watch ---- */

typedef struct WatchOp {
        Scheduler *s;
        SbxRpcServerCall *call;
        SchedCaller caller;
        char id[SBX_SANDBOX_ID_LEN + 1];
} WatchOp;

static void watch_send(WatchOp *w, SchedSandbox *sb)
{
        Sbx__V1__SandboxEvent ev = SBX__V1__SANDBOX_EVENT__INIT;
        Sbx__V1__Sandbox view;

        if (sbx_rpc_server_call_pending_bytes(w->call) > WATCH_BACKLOG_MAX) {
                sbx_rpc_server_call_fail(w->call, SBX_STATUS_RESOURCE_EXHAUSTED,
                                         "Watch fell behind by more than %u bytes; watch again",
                                         WATCH_BACKLOG_MAX);
                return;
        }
        sched_view_sandbox(w->s, sb, &view);
        ev.sandbox = &view;
        sbx_rpc_server_call_send(w->call, &ev.base);
}

static void watch_listener(SchedState *st, SchedChange what, const char *name, void *userdata)
{
        WatchOp *w = userdata;

        if (what != SCHED_CHANGE_SANDBOX || !name || sbx_rpc_server_call_is_done(w->call))
                return;
        if (*w->id && !streq(name, w->id))
                return;
        SchedSandbox *sb = sched_state_sandbox(st, name);
        if (sb && sb->record && streq(sb->record->org, w->caller.org))
                watch_send(w, sb);
}

static void watch_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        Scheduler *s = userdata;
        const Sbx__V1__WatchSandboxesRequest *req = (const Sbx__V1__WatchSandboxesRequest *)request;
        WatchOp *w;
        SchedCaller c;

        if (sched_auth(s, call, false, &c) < 0)
                return;
        SchedSandbox *one = NULL;
        if (!isempty(req->id) && !(one = own_sandbox(s, call, &c, req->id)))
                return;
        w = calloc(1, sizeof(WatchOp));
        if (!w || sched_state_listen(s->state, watch_listener, w) < 0) {
                free(w);
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        w->s = s;
        w->call = call;
        w->caller = c;
        snprintf(w->id, sizeof(w->id), "%s", req->id ? req->id : "");
        sbx_rpc_server_call_set_userdata(call, w);
        if (req->send_initial) {
                if (one) {
                        watch_send(w, one);
                } else {
                        SbxHashmap *map = sched_state_sandboxes(s->state);
                        size_t state = 0;
                        void *v;
                        while (sbx_hashmap_next(map, &state, NULL, &v)) {
                                SchedSandbox *sb = v;
                                if (sb->record && streq(sb->record->org, c.org))
                                        watch_send(w, sb);
                        }
                }
        }
}

static void watch_done(SbxRpcServerCall *call, bool cancelled, void *userdata)
{
        Scheduler *s = userdata;
        WatchOp *w = sbx_rpc_server_call_get_userdata(call);
        if (!w)
                return;
        sched_state_unlisten(s->state, watch_listener, w);
        free(w);
}

/* ---- Attach ---- */

static void attach_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        /* Nothing until the first message names the sandbox (sched-attach.c). */
}

static void attach_message(SbxRpcServerCall *call, ProtobufCMessage *m, void *userdata)
{
        Scheduler *s = userdata;
        Sbx__V1__AttachRequest *req = (Sbx__V1__AttachRequest *)m;
        SchedCaller c;

        if (!sbx_rpc_server_call_get_userdata(call)) {
                /* The first message: authenticate and bind. Later ones are keepalives. */
                if (sched_auth(s, call, false, &c) >= 0)
                        sched_attach_start(s, call, &c, req->id);
        }
        protobuf_c_message_free_unpacked(m, NULL);
}

int sched_api_sandboxes_register(Scheduler *s, SbxRpcServer *server)
{
        const SbxRpcHandler handlers[] = {
                { .method = &sbx_api_sandboxes_get, .on_start = get_start, .userdata = s },
                { .method = &sbx_api_sandboxes_list, .on_start = list_start, .userdata = s },
                { .method = &sbx_api_sandboxes_delete, .on_start = delete_start, .userdata = s },
                { .method = &sbx_api_sandboxes_extend, .on_start = extend_start, .userdata = s },
                { .method = &sbx_api_sandboxes_watch,
                  .on_start = watch_start,
                  .on_done = watch_done,
                  .userdata = s },
                { .method = &sbx_api_sandboxes_attach,
                  .on_start = attach_start,
                  .on_message = attach_message,
                  .on_done = sched_attach_done,
                  .userdata = s },
        };
        int r = sched_create_register(s, server, &sbx_api_sandboxes_create);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(handlers); i++)
                r = sbx_rpc_server_add_handler(server, &handlers[i]);
        return r;
}
