/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Attach binds a "session" sandbox to a stream. While the stream is open, a heartbeat keeps moving
 * the sandbox's stop time a little ahead (attach-timeout); when the stream ends, the stop time is
 * set to now + session-grace. Expiry then does the rest: the leader's reconciler stops whatever is
 * past its stop time. So a session outlives neither its stream nor the replica holding it — if the
 * replica dies, the heartbeats stop and the sandbox expires on its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"
#include "scheduler/sched.h"

typedef struct Attachment {
        Scheduler *s;
        SbxRpcServerCall *call;
        char id[SBX_SANDBOX_ID_LEN + 1];
        int64_t stop_at;
        uv_timer_t heartbeat;
        bool listening;
} Attachment;

static void attachment_closed(uv_handle_t *h)
{
        Attachment *a = h->data;
        sbx_rpc_server_call_unref(a->call);
        free(a);
}

static int64_t cap_for(Scheduler *s, const SchedSandbox *sb)
{
        SchedOrg *org = sched_state_org(s->state, sb->record->org);
        int64_t max_life = org && org->org ? (int64_t)org->org->max_lifetime_ms : 0;
        return sb->record->created_at_ms + max_life;
}

static bool set_stop_at(Sbx__V1__SandboxRecord *rec, void *userdata)
{
        int64_t *stop_at = userdata;
        if (rec->final_state != SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED ||
            rec->stop_at_ms == *stop_at)
                return false;
        rec->stop_at_ms = *stop_at;
        return true;
}

static void stop_at_written(Scheduler *s, int error, void *userdata)
{
        if (error < 0 && error != -ENOENT)
                log_warning_errno(error, "Failed to move the stop time of a session sandbox: %m");
        free(userdata);
}

/* The value must outlive the attachment (an update may retry after the stream is gone). */
static void update_stop_at(Scheduler *s, const char *id, int64_t stop_at)
{
        int64_t *v = malloc(sizeof(int64_t));
        if (!v)
                return;
        *v = stop_at;
        if (sched_record_update(s, id, 0, set_stop_at, v, stop_at_written, v) < 0)
                free(v);
}

static void beat(Attachment *a)
{
        SchedSandbox *sb = sched_state_sandbox(a->s->state, a->id);
        if (!sb || !sb->record)
                return;
        a->stop_at = SBX_MIN(sbx_now_ms() + (int64_t)(a->s->cfg.attach_timeout / USEC_PER_MSEC),
                             cap_for(a->s, sb));
        update_stop_at(a->s, a->id, a->stop_at);
}

static void on_heartbeat(uv_timer_t *t)
{
        beat(t->data);
}

static void send_state(Attachment *a, SchedSandbox *sb, bool with_token)
{
        Sbx__V1__AttachResponse resp = SBX__V1__ATTACH_RESPONSE__INIT;
        Sbx__V1__Sandbox view;
        _cleanup_free_ char *token = NULL;

        sched_view_sandbox(a->s, sb, &view);
        if (with_token && sched_access_token(a->s, sb, &token) >= 0)
                view.access_token = token;
        resp.sandbox = &view;
        sbx_rpc_server_call_send(a->call, &resp.base);
}

static void attach_listener(SchedState *st, SchedChange what, const char *name, void *userdata)
{
        Attachment *a = userdata;
        if (what != SCHED_CHANGE_SANDBOX || !name || !streq(name, a->id) ||
            sbx_rpc_server_call_is_done(a->call))
                return;
        SchedSandbox *sb = sched_state_sandbox(st, a->id);
        if (!sb || sched_sandbox_ended(sb)) {
                /* The session's sandbox is gone: so is the session. */
                if (sb)
                        send_state(a, sb, false);
                sbx_rpc_server_call_finish(a->call, SBX_STATUS_OK, NULL);
                return;
        }
        send_state(a, sb, false);
}

int sched_attach_start(Scheduler *s, SbxRpcServerCall *call, const SchedCaller *caller, const char *id)
{
        SchedSandbox *sb;
        Attachment *a;

        if (!id || !sbx_sandbox_id_valid(id))
                return sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                                "id: \"%.80s\" is not a sandbox id", id ? id : "");
        sb = sched_state_sandbox(s->state, id);
        if (!sb || !sb->record || !streq(sb->record->org, caller->org))
                return sbx_rpc_server_call_fail(call, SBX_STATUS_NOT_FOUND, "Sandbox %s not found", id);
        if (!sb->record->spec || !sb->record->spec->session)
                return sbx_rpc_server_call_fail(
                        call, SBX_STATUS_FAILED_PRECONDITION,
                        "Sandbox %s has a fixed lifetime; only session sandboxes attach", id);
        if (sched_sandbox_ended(sb))
                return sbx_rpc_server_call_fail(call, SBX_STATUS_FAILED_PRECONDITION, "Sandbox %s has ended",
                                                id);

        a = calloc(1, sizeof(Attachment));
        if (!a)
                return sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        a->s = s;
        a->call = sbx_rpc_server_call_ref(call);
        snprintf(a->id, sizeof(a->id), "%s", id);
        uv_timer_init(s->loop, &a->heartbeat);
        a->heartbeat.data = a;
        if (sched_state_listen(s->state, attach_listener, a) >= 0)
                a->listening = true;
        sbx_rpc_server_call_set_userdata(call, a);

        send_state(a, sb, true);
        beat(a);
        uint64_t period = SBX_MAX(sbx_usec_to_msec_ceil(s->cfg.attach_timeout) / 3, 500);
        uv_timer_start(&a->heartbeat, on_heartbeat, period, period);
        log_info_fields(LOG_FIELDS({ "sandbox", id }, { "org", caller->org }), "Session attached");
        return 0;
}

void sched_attach_done(SbxRpcServerCall *call, bool cancelled, void *userdata)
{
        Scheduler *s = userdata;
        Attachment *a = sbx_rpc_server_call_get_userdata(call);

        if (!a)
                return;
        sbx_rpc_server_call_set_userdata(call, NULL);
        if (a->listening)
                sched_state_unlisten(s->state, attach_listener, a);
        uv_timer_stop(&a->heartbeat);

        /* The session ended: the sandbox gets the grace period, then expiry stops it. */
        SchedSandbox *sb = sched_state_sandbox(s->state, a->id);
        if (sb && sb->record && !sched_sandbox_ended(sb)) {
                update_stop_at(s, a->id, sbx_now_ms() + (int64_t)(s->cfg.session_grace / USEC_PER_MSEC));
                log_info_fields(LOG_FIELDS({ "sandbox", a->id }),
                                "Session detached; stopping after the grace period");
        }
        uv_close((uv_handle_t *)&a->heartbeat, attachment_closed);
}
