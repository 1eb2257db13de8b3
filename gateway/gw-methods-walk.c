/* SPDX-License-Identifier: Apache-2.0 */
/*
 * walk and expandGlob (deno-sandbox-protocol.md §2.8 methods 37-38): the request is answered at once
 * with {streamId}; the entries follow on that server stream, one JSON document per chunk (the client
 * parses chunk by chunk), computed by gw-walk.c from the agent's Walk stream. A walk streams as the
 * agent lists; expandGlob sorts, so it sends when the listing is complete. Relative globs resolve
 * against the sandbox's working directory (the default user's home), asked from the agent first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/api/api.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "gateway/gw-errors.h"
#include "gateway/gw-walk.h"
#include "gateway/gw.h"

typedef struct WalkJob {
        GwTask task;
        GwSession *s;
        SbxRpcClientCall *call;
        GwOutStream *out;
        GwWalker *walker;
        GwGlobber *globber;
        /* The result is complete (or failed): what the agent still lists does not matter. */
        bool done;
        json_t *error;
        bool paused;
} WalkJob;

static void drained(GwSession *s, void *userdata);

static void job_free(WalkJob *j)
{
        gw_session_cancel_drain(j->s, drained, j);
        gw_walker_free(j->walker);
        gw_globber_free(j->globber);
        json_decref(j->error);
        gw_session_unref(j->s);
        free(j);
}

static void job_cancel_call(WalkJob *j)
{
        if (j->call)
                sbx_rpc_client_call_cancel(j->call);
}

static void on_task_cancel(GwTask *t)
{
        WalkJob *j = container_of(t, WalkJob, task);
        /* The session is closing: nothing may be sent. */
        j->out = NULL;
        j->done = true;
        job_cancel_call(j);
}

static void on_stream_cancel(void *userdata)
{
        WalkJob *j = userdata;
        j->done = true;
        job_cancel_call(j);
}

static void send_docs(WalkJob *j, json_t *docs)
{
        size_t i;
        json_t *d;

        json_array_foreach(docs, i, d)
        {
                char *text = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (text)
                        gw_out_stream_write(j->out, text, strlen(text));
                free(text);
        }
}

static void drained(GwSession *s, void *userdata)
{
        WalkJob *j = userdata;

        if (j->paused && j->call) {
                j->paused = false;
                sbx_rpc_client_call_pause_reading(j->call, false);
        }
}

static void fail(WalkJob *j, json_t *error)
{
        if (!j->done) {
                j->done = true;
                j->error = error;
                job_cancel_call(j);
        } else
                json_decref(error);
}

static void walk_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        WalkJob *j = userdata;
        const Sbx__V1__WalkEntry *e = (const Sbx__V1__WalkEntry *)message;
        int r;

        if (!j->done) {
                if (j->walker) {
                        json_t *docs = json_array();
                        r = docs ? gw_walker_feed(j->walker, e->path, e->type, e->depth, docs) : -ENOMEM;
                        if (docs)
                                send_docs(j, docs);
                        json_decref(docs);
                        if (r == 1) {
                                j->done = true;
                                job_cancel_call(j);
                        }
                } else
                        r = gw_globber_feed(j->globber, e->path, e->type, e->depth);
                if (r == -ENOTDIR)
                        fail(j, gw_error_new("NotADirectory", "ENOTDIR",
                                             "Not a directory (os error 20): readdir '%s'",
                                             gw_walker_root(j->walker)));
                else if (r == -E2BIG)
                        fail(j, gw_error_new("Error", "E2BIG",
                                             "Too many matches, or a pattern too complex to match in time"));
                else if (r < 0)
                        fail(j, gw_error_new("Error", NULL, "Out of memory"));
        }
        protobuf_c_message_free_unpacked(message, NULL);
        if (!j->paused && j->call && gw_session_queued(j->s) > GW_SEND_HIGH) {
                j->paused = true;
                sbx_rpc_client_call_pause_reading(j->call, true);
                gw_session_on_drain(j->s, drained, j);
        }
}

static void walk_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        WalkJob *j = userdata;

        j->call = sbx_rpc_client_call_unref(j->call);
        gw_session_cancel_drain(j->s, drained, j);
        gw_session_remove_task(j->s, &j->task);
        if (j->out) {
                if (j->error)
                        gw_out_stream_end(j->out, TAKE_PTR(j->error));
                else if (j->done && j->walker)
                        gw_out_stream_end(j->out, NULL);
                else if (st->code == SBX_STATUS_OK || (j->globber && st->code == SBX_STATUS_NOT_FOUND)) {
                        /* expandGlob yields nothing for a root that does not exist. */
                        if (j->globber && st->code == SBX_STATUS_OK) {
                                json_t *docs = json_array();
                                if (docs && gw_globber_finish(j->globber, docs) >= 0)
                                        send_docs(j, docs);
                                json_decref(docs);
                        }
                        gw_out_stream_end(j->out, NULL);
                } else
                        gw_out_stream_end(j->out, gw_error_from_status(st->code, st->message));
                j->out = NULL;
        }
        job_free(j);
}

/* Answers the request with {streamId} and starts the Walk. Takes the walker or globber. */
static void start_job(GwRequest *r, GwWalker *walker, GwGlobber *globber)
{
        Sbx__V1__WalkRequest req = SBX__V1__WALK_REQUEST__INIT;
        SbxRpcClientCallbacks cbs = { .on_message = walk_message, .on_status = walk_status };
        WalkJob *j = new0(WalkJob, 1);
        uint64_t id;
        int q;

        if (!j) {
                gw_walker_free(walker);
                gw_globber_free(globber);
                gw_request_error(r, NULL);
                return;
        }
        j->s = gw_session_ref(r->s);
        j->walker = walker;
        j->globber = globber;
        j->task.cancel = on_task_cancel;
        req.sandbox_id = (char *)gw_session_sandbox_id(r->s);
        req.root = (char *)(walker ? gw_walker_root(walker) : gw_globber_root(globber));
        req.max_depth = walker ? gw_walker_agent_depth(walker) : gw_globber_agent_depth(globber);
        req.follow_symlinks = walker ? gw_walker_follow(walker) : gw_globber_follow(globber);
        q = sbx_rpc_call_start(gw_session_channel(r->s), &sbx_api_data_walk, &req.base,
                               gw_data_call_options(), &cbs, j, &j->call);
        if (q < 0) {
                job_free(j);
                gw_request_error(r, gw_error_new("Error", NULL, "Cannot reach the sandbox: %s",
                                                 sbx_error_message(q)));
                return;
        }
        gw_session_add_task(r->s, &j->task);
        id = gw_session_new_stream_id(r->s);
        gw_request_ok(r, json_pack("{s:I}", "streamId", (json_int_t)id));
        j->out = gw_out_stream_new(j->s, id, on_stream_cancel, j);
}

void gw_m_walk(GwRequest *r, json_t *p)
{
        _cleanup_free_ char *problem = NULL;
        GwWalker *w = NULL;
        int q = gw_walker_new(p, &w, &problem);

        if (q == -ENOMEM) {
                gw_request_error(r, NULL);
                return;
        }
        if (q < 0) {
                gw_request_error(r, gw_error_new("TypeError", NULL, "%s",
                                                 problem ? problem : "invalid walk options"));
                return;
        }
        start_job(r, w, NULL);
}

static void glob_start(GwRequest *r, const char *cwd)
{
        _cleanup_free_ char *problem = NULL;
        GwGlobber *g = NULL;
        int q = gw_globber_new(r->params, cwd, &g, &problem);

        if (q == -ENOMEM) {
                gw_request_error(r, NULL);
                return;
        }
        if (q < 0) {
                gw_request_error(r, gw_error_new(q == -EOPNOTSUPP ? "NotSupported" : "TypeError", NULL, "%s",
                                                 problem ? problem : "invalid expandGlob options"));
                return;
        }
        start_job(r, NULL, g);
}

static void cwd_done(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response)
{
        if (st->code != SBX_STATUS_OK) {
                gw_request_status(r, st);
                return;
        }
        glob_start(r, ((const Sbx__V1__PathResponse *)response)->path);
}

void gw_m_expand_glob(GwRequest *r, json_t *p)
{
        Sbx__V1__PathRequest req = SBX__V1__PATH_REQUEST__INIT;
        const char *glob;

        if (!gw_need_string(r, p, "glob", &glob))
                return;
        if (!gw_glob_params_need_cwd(p)) {
                glob_start(r, "/");
                return;
        }
        /* The guest resolves relative paths against its working directory: ask for it. */
        req.sandbox_id = (char *)gw_session_sandbox_id(r->s);
        req.path = (char *)".";
        gw_request_unary(r, &sbx_api_data_real_path, &req.base, cwd_done);
}
