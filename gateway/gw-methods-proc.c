/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Processes: spawn, processWait, processKill (deno-sandbox-protocol.md §2.8 methods 39-41, §4.8)
 * on the data plane's Exec stream, one per process, held as long as the process runs: the agent
 * kills a process whose stream goes away, which is what happens to a session's processes when its
 * socket closes.
 *
 * spawn answers once the agent reports the pid; stdout and stderr become server streams (start,
 * chunks, end at the exit); a client stream named by stdinStreamId feeds stdin, and its end closes
 * stdin. processWait may be pending for the whole life of the process while other requests come
 * and go. The exit status of an ended process is kept (a bounded number of them) for late waits,
 * and a kill of an ended process fails with code ENOENT, which the SDK ignores.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/api/api.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "gateway/gw-errors.h"
#include "gateway/gw-jsonrpc.h"
#include "gateway/gw.h"

/* Exit statuses kept for processWait after the process ended. */
#define EXITED_KEEP 256
/* stdin bytes per Exec message, and the backlog that holds the client's socket back. */
#define STDIN_CHUNK   (1u * 1024 * 1024)
#define STDIN_BACKLOG (8u * 1024 * 1024)
#define ARGS_MAX      4096
#define ENV_MAX       4096

typedef struct GwProcess {
        GwSession *s;
        uint32_t pid;
        char key[16];
        SbxRpcClientCall *call;
        GwRequest *spawn_req;
        uint64_t out_id, err_id;
        GwOutStream *out, *err;
        bool has_stdin;
        uint64_t stdin_id;
        bool stdin_bound;
        bool input_paused;
        bool reading_paused;
        bool exited;
        int code;
        char signal[32];
        bool oom;
        GwRequest **waiters;
        size_t n_waiters;
        GwLink link;
} GwProcess;

struct GwProcTable {
        SbxHashmap *by_pid;
        GwLink all;
        unsigned live;
        /* Ended processes in the order they ended (oldest first), for eviction. */
        GwProcess *exited[EXITED_KEEP];
        size_t n_exited, first_exited;
};

static GwProcTable *table(GwSession *s, bool create)
{
        GwProcTable **t = gw_session_procs(s);

        if (!*t && create) {
                GwProcTable *n = new0(GwProcTable, 1);
                if (!n || sbx_hashmap_new(&n->by_pid) < 0) {
                        free(n);
                        return NULL;
                }
                gw_list_init(&n->all);
                *t = n;
        }
        return *t;
}

static void proc_free(GwProcess *p)
{
        gw_list_del(&p->link);
        free(p->waiters);
        gw_session_unref(p->s);
        free(p);
}

static json_t *status_json(const GwProcess *p)
{
        return json_pack("{s:b, s:i, s:o, s:o}", "success", p->code == 0 && isempty(p->signal), "code",
                         p->code, "signal", isempty(p->signal) ? json_null() : json_string(p->signal), "oom",
                         p->oom ? json_string("high-confidence") : json_null());
}

static void stdin_release(GwProcess *p, bool cancel)
{
        if (p->stdin_bound) {
                p->stdin_bound = false;
                if (cancel)
                        gw_in_stream_cancel(p->s, p->stdin_id);
                else
                        gw_in_stream_unbind(p->s, p->stdin_id);
        }
        if (p->input_paused) {
                p->input_paused = false;
                gw_session_pause_input(p->s, false);
        }
}

static void output_drained(GwSession *s, void *userdata)
{
        GwProcess *p = userdata;

        if (p->reading_paused && p->call) {
                p->reading_paused = false;
                sbx_rpc_client_call_pause_reading(p->call, false);
        }
}

/* Keeps an ended process for late waits, evicting the oldest kept one beyond EXITED_KEEP. */
static void keep_exited(GwProcess *p)
{
        GwProcTable *t = table(p->s, false);

        if (!t) {
                proc_free(p);
                return;
        }
        t->live--;
        if (t->n_exited == EXITED_KEEP) {
                GwProcess *old = t->exited[t->first_exited];
                if (sbx_hashmap_get(t->by_pid, old->key) == old)
                        sbx_hashmap_remove(t->by_pid, old->key);
                proc_free(old);
                t->exited[t->first_exited] = p;
                t->first_exited = (t->first_exited + 1) % EXITED_KEEP;
        } else
                t->exited[(t->first_exited + t->n_exited++) % EXITED_KEEP] = p;
}

static void answer_waiters(GwProcess *p, const SbxRpcStatus *error)
{
        for (size_t i = 0; i < p->n_waiters; i++) {
                if (error)
                        gw_request_status(p->waiters[i], error);
                else
                        gw_request_ok(p->waiters[i], status_json(p));
        }
        p->n_waiters = 0;
}

static void process_exited(GwProcess *p, const Sbx__V1__ExitStatus *st)
{
        p->exited = true;
        p->code = st->code;
        snprintf(p->signal, sizeof(p->signal), "%s", strempty(st->signal));
        p->oom = st->oom;
        /* All output came before the exit: end the streams, then the waits (child.output() needs both). */
        gw_out_stream_end(p->out, NULL);
        gw_out_stream_end(p->err, NULL);
        p->out = p->err = NULL;
        stdin_release(p, true);
        answer_waiters(p, NULL);
}

static void exec_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        GwProcess *p = userdata;
        const Sbx__V1__ExecResponse *resp = (const Sbx__V1__ExecResponse *)message;
        GwProcTable *t = table(p->s, false);

        switch (resp->msg_case) {
        case SBX__V1__EXEC_RESPONSE__MSG_STARTED_PID:
                p->pid = resp->started_pid;
                snprintf(p->key, sizeof(p->key), "%" PRIu32, p->pid);
                if (t) {
                        GwProcess *old = sbx_hashmap_get(t->by_pid, p->key);
                        /* A recycled pid: the old, ended process is no longer reachable by it. */
                        if (old)
                                sbx_hashmap_remove(t->by_pid, p->key);
                        (void)sbx_hashmap_put(t->by_pid, p->key, p, NULL);
                }
                if (p->spawn_req) {
                        json_t *v = json_pack("{s:I, s:o, s:o}", "pid", (json_int_t)p->pid, "stdoutStreamId",
                                              p->out_id ? json_integer((json_int_t)p->out_id) : json_null(),
                                              "stderrStreamId",
                                              p->err_id ? json_integer((json_int_t)p->err_id) : json_null());
                        gw_request_ok(p->spawn_req, v);
                        p->spawn_req = NULL;
                }
                if (p->out_id)
                        p->out = gw_out_stream_new(p->s, p->out_id, NULL, NULL);
                if (p->err_id)
                        p->err = gw_out_stream_new(p->s, p->err_id, NULL, NULL);
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_STDOUT:
                gw_out_stream_write(p->out, resp->stdout.data, resp->stdout.len);
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_STDERR:
                gw_out_stream_write(p->err, resp->stderr.data, resp->stderr.len);
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_EXIT:
                if (resp->exit)
                        process_exited(p, resp->exit);
                break;
        default:
                break;
        }
        protobuf_c_message_free_unpacked(message, NULL);
        /* A client that reads slowly holds the process back (through the agent's credit). */
        if (!p->reading_paused && p->call && gw_session_queued(p->s) > GW_SEND_HIGH) {
                p->reading_paused = true;
                sbx_rpc_client_call_pause_reading(p->call, true);
                gw_session_on_drain(p->s, output_drained, p);
        }
}

static void exec_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        GwProcess *p = userdata;
        GwProcTable *t = table(p->s, false);

        p->call = sbx_rpc_client_call_unref(p->call);
        gw_session_cancel_drain(p->s, output_drained, p);
        if (!t) {
                /* The session closed; its requests are gone already. */
                proc_free(p);
                return;
        }
        stdin_release(p, true);
        if (p->spawn_req) {
                /* It never started: the command is missing, not executable, or the cwd is wrong. */
                const char *command = NULL;
                (void)gw_param_string(p->spawn_req->params, "command", &command);
                if (st->code == SBX_STATUS_NOT_FOUND || st->code == SBX_STATUS_PERMISSION_DENIED) {
                        json_t *e = gw_error_from_status(st->code, st->message);
                        json_object_set_new(e, "message",
                                            json_sprintf("Failed to spawn '%s': %s", strempty(command),
                                                         json_string_value(json_object_get(e, "message"))));
                        gw_request_error(p->spawn_req, e);
                } else
                        gw_request_status(p->spawn_req, st);
                p->spawn_req = NULL;
                gw_list_del(&p->link);
                t->live--;
                proc_free(p);
                return;
        }
        if (!p->exited) {
                /* The stream ended without an exit status (the sandbox stopped under it). */
                json_t *err =
                        gw_error_from_status(st->code == SBX_STATUS_OK ? SBX_STATUS_UNAVAILABLE : st->code,
                                             isempty(st->message) ? "The process was lost" : st->message);
                gw_out_stream_end(p->out, json_incref(err));
                gw_out_stream_end(p->err, json_incref(err));
                json_decref(err);
                p->out = p->err = NULL;
                answer_waiters(p, &(SbxRpcStatus){ .code = st->code == SBX_STATUS_OK ? SBX_STATUS_UNAVAILABLE
                                                                                     : st->code,
                                                   .message = isempty(st->message)
                                                                      ? (char *)"The process was lost"
                                                                      : st->message });
                p->exited = true;
                p->code = -1;
        }
        keep_exited(p);
}

static void stdin_data(void *userdata, const uint8_t *data, size_t n)
{
        GwProcess *p = userdata;
        Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;

        if (!p->call || p->exited)
                return;
        req.msg_case = SBX__V1__EXEC_REQUEST__MSG_STDIN;
        while (n > 0) {
                size_t k = SBX_MIN(n, (size_t)STDIN_CHUNK);
                req.stdin = (ProtobufCBinaryData){ .len = k, .data = (uint8_t *)data };
                if (sbx_rpc_client_call_send(p->call, &req.base) < 0)
                        return;
                data += k;
                n -= k;
        }
        if (!p->input_paused && sbx_rpc_client_call_pending_bytes(p->call) > STDIN_BACKLOG) {
                p->input_paused = true;
                gw_session_pause_input(p->s, true);
        }
}

static void stdin_end(void *userdata, json_t *error)
{
        GwProcess *p = userdata;
        Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;

        p->stdin_bound = false;
        if (!p->call || p->exited)
                return;
        /* An errored stream ends the input just the same: the process sees EOF. */
        req.msg_case = SBX__V1__EXEC_REQUEST__MSG_STDIN_CLOSE;
        req.stdin_close = true;
        (void)sbx_rpc_client_call_send(p->call, &req.base);
}

static const GwInStreamOps stdin_ops = { .on_data = stdin_data, .on_end = stdin_end };

static void exec_drained(SbxRpcClientCall *c, void *userdata)
{
        GwProcess *p = userdata;

        if (p->input_paused) {
                p->input_paused = false;
                gw_session_pause_input(p->s, false);
        }
}

/* "piped" or "null" (the SDK sends "inherit" as "piped"). */
static bool stdio_param(GwRequest *r, json_t *params, const char *key, bool *ret)
{
        const char *v;
        int q = gw_param_string(params, key, &v);

        if (q == -ENOENT) {
                *ret = true;
                return true;
        }
        if (q < 0 || (!streq(v, "piped") && !streq(v, "null") && !streq(v, "inherit"))) {
                gw_request_bad_param(r, key, "must be \"piped\" or \"null\"");
                return false;
        }
        *ret = !streq(v, "null");
        return true;
}

void gw_m_spawn(GwRequest *r, json_t *params)
{
        Sbx__V1__ExecRequest first = SBX__V1__EXEC_REQUEST__INIT;
        Sbx__V1__ExecStart st = SBX__V1__EXEC_START__INIT;
        SbxRpcClientCallbacks cbs = { .on_message = exec_message, .on_status = exec_status };
        _cleanup_free_ char **args = NULL;
        _cleanup_free_ Sbx__V1__ExecStart__EnvEntry *env = NULL;
        _cleanup_free_ Sbx__V1__ExecStart__EnvEntry **envp = NULL;
        GwProcTable *t = table(r->s, true);
        const char *command, *cwd = "", *key;
        json_t *a = NULL, *e = NULL, *v;
        bool clear_env, out, err;
        long long stdin_id = -1;
        GwProcess *p;
        size_t i;
        int q;

        q = gw_param_int(params, "stdinStreamId", 0, 1LL << 53, &stdin_id);
        if (q < 0 && q != -ENOENT) {
                gw_request_bad_param(r, "stdinStreamId", "must be an integer");
                return;
        }
        if (!gw_need_string(r, params, "command", &command) ||
            !gw_opt_bool(r, params, "clearEnv", false, &clear_env) ||
            !stdio_param(r, params, "stdout", &out) || !stdio_param(r, params, "stderr", &err))
                goto refuse_stdin;
        if (gw_param_string(params, "cwd", &cwd) == -EINVAL) {
                gw_request_bad_param(r, "cwd", "must be a string");
                goto refuse_stdin;
        }
        q = gw_param_array(params, "args", &a);
        if ((q < 0 && q != -ENOENT) || (a && json_array_size(a) > ARGS_MAX)) {
                gw_request_bad_param(r, "args", "must be an array of strings");
                goto refuse_stdin;
        }
        args = new0(char *, (a ? json_array_size(a) : 0) + 1);
        if (!args) {
                gw_request_error(r, NULL);
                goto refuse_stdin;
        }
        json_array_foreach(a, i, v)
        {
                if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
                        gw_request_bad_param(r, "args", "must be an array of strings");
                        goto refuse_stdin;
                }
                args[i] = (char *)json_string_value(v);
        }
        q = gw_param_object(params, "env", &e);
        if ((q < 0 && q != -ENOENT) || (e && json_object_size(e) > ENV_MAX)) {
                gw_request_bad_param(r, "env", "must be an object of strings");
                goto refuse_stdin;
        }
        env = new0(Sbx__V1__ExecStart__EnvEntry, (e ? json_object_size(e) : 0) + 1);
        envp = new0(Sbx__V1__ExecStart__EnvEntry *, (e ? json_object_size(e) : 0) + 1);
        if (!env || !envp) {
                gw_request_error(r, NULL);
                goto refuse_stdin;
        }
        i = 0;
        json_object_foreach(e, key, v)
        {
                if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) || !*key ||
                    strchr(key, '=')) {
                        gw_request_bad_param(r, "env", "must map names to strings");
                        goto refuse_stdin;
                }
                sbx__v1__exec_start__env_entry__init(&env[i]);
                env[i].key = (char *)key;
                env[i].value = (char *)json_string_value(v);
                envp[i] = &env[i];
                i++;
        }
        if (!t) {
                gw_request_error(r, NULL);
                goto refuse_stdin;
        }
        if (t->live >= gw_session_gateway(r->s)->cfg.max_processes) {
                gw_request_error(r, gw_error_new("Error", "EAGAIN",
                                                 "Too many processes running on this connection (%u)",
                                                 gw_session_gateway(r->s)->cfg.max_processes));
                goto refuse_stdin;
        }

        p = new0(GwProcess, 1);
        if (!p) {
                gw_request_error(r, NULL);
                goto refuse_stdin;
        }
        p->s = gw_session_ref(r->s);
        p->spawn_req = r;
        p->out_id = out ? gw_session_new_stream_id(r->s) : 0;
        p->err_id = err ? gw_session_new_stream_id(r->s) : 0;
        p->has_stdin = stdin_id >= 0;
        p->stdin_id = (uint64_t)stdin_id;
        gw_list_add(&t->all, &p->link);
        t->live++;

        st.sandbox_id = (char *)gw_session_sandbox_id(r->s);
        st.command = (char *)command;
        st.args = args;
        st.n_args = a ? json_array_size(a) : 0;
        st.env = envp;
        st.n_env = i;
        st.clear_env = clear_env;
        st.cwd = (char *)cwd;
        st.stdin = p->has_stdin;
        st.stdout = out;
        st.stderr = err;
        first.msg_case = SBX__V1__EXEC_REQUEST__MSG_START;
        first.start = &st;
        q = sbx_rpc_call_start(gw_session_channel(r->s), &sbx_api_data_exec, &first.base,
                               gw_data_call_options(), &cbs, p, &p->call);
        if (q < 0) {
                t->live--;
                proc_free(p);
                gw_request_error(r, gw_error_new("Error", NULL, "Cannot reach the sandbox: %s",
                                                 sbx_error_message(q)));
                goto refuse_stdin;
        }
        sbx_rpc_client_call_on_drain(p->call, exec_drained, p);
        if (p->has_stdin) {
                /* Data the client sent before this request was buffered; it flows now. */
                p->stdin_bound = true;
                if (gw_in_stream_bind(r->s, p->stdin_id, &stdin_ops, p) < 0) {
                        p->stdin_bound = false;
                        gw_in_stream_cancel(r->s, p->stdin_id);
                }
        }
        return;

refuse_stdin:
        /* A stream the client already started for this process would otherwise wait forever. */
        if (stdin_id >= 0)
                gw_in_stream_cancel(r->s, (uint64_t)stdin_id);
}

static GwProcess *find(GwRequest *r, json_t *params)
{
        GwProcTable *t = table(r->s, false);
        long long pid;
        char key[16];

        if (gw_param_int(params, "pid", 0, UINT32_MAX, &pid) < 0) {
                gw_request_bad_param(r, "pid", "must be a process id");
                return NULL;
        }
        snprintf(key, sizeof(key), "%lld", pid);
        return t ? sbx_hashmap_get(t->by_pid, key) : NULL;
}

void gw_m_process_wait(GwRequest *r, json_t *params)
{
        GwProcess *p = find(r, params);
        GwRequest **w;

        if (r->replied)
                return;
        if (!p) {
                gw_request_error(r, gw_error_new("NotFound", "ENOENT", "No such process"));
                return;
        }
        if (p->exited) {
                gw_request_ok(r, status_json(p));
                return;
        }
        w = reallocarray(p->waiters, p->n_waiters + 1, sizeof(GwRequest *));
        if (!w) {
                gw_request_error(r, NULL);
                return;
        }
        p->waiters = w;
        p->waiters[p->n_waiters++] = r;
}

static bool signal_valid(const char *s)
{
        const char *n = startswith(s, "SIG");

        if (!n || !*n || strlen(n) > 16)
                return false;
        for (; *n; n++)
                if (!((*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') || *n == '+' || *n == '-'))
                        return false;
        return true;
}

void gw_m_process_kill(GwRequest *r, json_t *params)
{
        Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
        GwProcess *p = find(r, params);
        const char *sig = "SIGTERM";

        if (r->replied)
                return;
        if (gw_param_string(params, "signal", &sig) == -EINVAL || !signal_valid(sig)) {
                gw_request_error(r, gw_error_new("TypeError", NULL, "Unknown signal: %s", sig));
                return;
        }
        if (!p || p->exited || !p->call) {
                /* The SDK ignores this error code: killing what already ended is no failure. */
                gw_request_error(r, gw_error_new("NotFound", "ENOENT", "No such process"));
                return;
        }
        req.msg_case = SBX__V1__EXEC_REQUEST__MSG_SIGNAL;
        req.signal = (char *)sig;
        if (sbx_rpc_client_call_send(p->call, &req.base) < 0) {
                gw_request_error(r, gw_error_new("NotFound", "ENOENT", "No such process"));
                return;
        }
        gw_request_ok(r, json_null());
}

void gw_session_close_processes(GwSession *s)
{
        GwProcTable *t = table(s, false);

        if (!t)
                return;
        *gw_session_procs(s) = NULL;
        for (GwLink *l = t->all.next, *next; l != &t->all; l = next) {
                GwProcess *p = container_of(l, GwProcess, link);
                next = l->next;
                /* Its requests belong to the session, which releases them. */
                p->spawn_req = NULL;
                p->n_waiters = 0;
                p->stdin_bound = false;
                p->input_paused = false;
                /* The session's stream table frees the streams themselves. */
                p->out = p->err = NULL;
                gw_session_cancel_drain(s, output_drained, p);
                if (p->call)
                        /* The agent kills the process; exec_status() frees it. */
                        sbx_rpc_client_call_cancel(p->call);
                else
                        proc_free(p);
        }
        sbx_hashmap_free(t->by_pid, NULL);
        free(t);
}
