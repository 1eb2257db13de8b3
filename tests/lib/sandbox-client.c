/* SPDX-License-Identifier: Apache-2.0 */
#include "tests/lib/sandbox-client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/api/api.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"

/* Below this much queued toward the agent, the next stdin or upload chunk is sent. */
#define SEND_WINDOW (256u * 1024)
#define CHUNK       (64u * 1024)

int sbx_test_sandbox_create(SbxTestCluster *c, const char *org_token, const char *region, uint32_t memory_mb,
                            uint64_t lifetime_ms, SbxTestSandbox *ret, SbxRpcStatus *ret_status)
{
        Sbx__V1__CreateSandboxRequest req = SBX__V1__CREATE_SANDBOX_REQUEST__INIT;
        req.region = (char *)(region ? region : "");
        req.memory_mb = memory_mb;
        req.lifetime_ms = lifetime_ms;
        return sbx_test_sandbox_create_req(c, org_token, &req, ret, ret_status);
}

int sbx_test_sandbox_create_req(SbxTestCluster *c, const char *org_token,
                                const Sbx__V1__CreateSandboxRequest *req, SbxTestSandbox *ret,
                                SbxRpcStatus *ret_status)
{
        Sbx__V1__Sandbox *sb = NULL;
        SbxRpcChannel *ch = sbx_test_channel(c, 0, org_token);
        int r;

        *ret = (SbxTestSandbox){ .cluster = c };
        if (!ch)
                return -ENOMEM;
        SbxRpcCallOptions o = { .timeout = 90 * USEC_PER_SEC };
        r = sbx_rpc_unary_sync(ch, &sbx_api_sandboxes_create, &req->base, &o, ret_status,
                               (ProtobufCMessage **)&sb);
        sbx_rpc_channel_free(ch);
        if (r < 0)
                return r;
        snprintf(ret->id, sizeof(ret->id), "%s", sb->id);
        snprintf(ret->data_address, sizeof(ret->data_address), "%s", sb->data_address);
        snprintf(ret->node, sizeof(ret->node), "%s", sb->node);
        ret->access_token = strdup(sb->access_token);
        ret->boot_duration_ms = sb->boot_duration_ms;
        protobuf_c_message_free_unpacked(&sb->base, NULL);
        if (!ret->access_token)
                return -ENOMEM;
        ret->data = sbx_test_data_channel(ret, ret->access_token);
        return ret->data ? 0 : -ENOMEM;
}

SbxRpcChannel *sbx_test_data_channel(SbxTestSandbox *sb, const char *token)
{
        SbxRpcChannel *ch = NULL;
        SbxRpcChannelOptions o = { .bearer_token = token, .max_message_size = 8u << 20 };
        if (sbx_rpc_channel_new(sb->cluster->rpc, sb->data_address, &o, &ch) < 0)
                return NULL;
        return ch;
}

void sbx_test_sandbox_done(SbxTestSandbox *sb)
{
        if (sb->data)
                sbx_rpc_channel_free(sb->data);
        free(sb->access_token);
        *sb = (SbxTestSandbox){ 0 };
}

/* ---- exec ---- */

typedef struct ExecCall {
        SbxTestSandbox *sb;
        const SbxTestExecOptions *o;
        SbxTestExecResult *res;
        SbxRpcClientCall *call;
        size_t stdin_sent;
        bool stdin_closed;
        bool signal_sent;
        bool done;
} ExecCall;

static void exec_pump_stdin(ExecCall *e)
{
        const SbxTestExecOptions *o = e->o;
        while (!e->stdin_closed && e->res->started &&
               sbx_rpc_client_call_pending_bytes(e->call) < SEND_WINDOW) {
                Sbx__V1__ExecRequest m = SBX__V1__EXEC_REQUEST__INIT;
                if (e->stdin_sent < o->stdin_size) {
                        size_t n = SBX_MIN(CHUNK, o->stdin_size - e->stdin_sent);
                        m.msg_case = SBX__V1__EXEC_REQUEST__MSG_STDIN;
                        m.stdin = (ProtobufCBinaryData){ .len = n,
                                                         .data = (uint8_t *)o->stdin_data + e->stdin_sent };
                        if (sbx_rpc_client_call_send(e->call, &m.base) < 0)
                                return;
                        e->stdin_sent += n;
                        continue;
                }
                if (o->keep_stdin_open)
                        return;
                m.msg_case = SBX__V1__EXEC_REQUEST__MSG_STDIN_CLOSE;
                m.stdin_close = true;
                (void)sbx_rpc_client_call_send(e->call, &m.base);
                e->stdin_closed = true;
        }
}

static void exec_drain(SbxRpcClientCall *c, void *userdata)
{
        exec_pump_stdin(userdata);
}

static void exec_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        ExecCall *e = userdata;
        Sbx__V1__ExecResponse *m = (Sbx__V1__ExecResponse *)message;
        SbxTestExecResult *res = e->res;

        switch (m->msg_case) {
        case SBX__V1__EXEC_RESPONSE__MSG_STARTED_PID:
                res->started = true;
                if (e->o->signal && !e->signal_sent) {
                        Sbx__V1__ExecRequest s = SBX__V1__EXEC_REQUEST__INIT;
                        s.msg_case = SBX__V1__EXEC_REQUEST__MSG_SIGNAL;
                        s.signal = (char *)e->o->signal;
                        (void)sbx_rpc_client_call_send(e->call, &s.base);
                        e->signal_sent = true;
                }
                exec_pump_stdin(e);
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_STDOUT:
                if (!res->first_output)
                        res->first_output = sbx_now_monotonic();
                res->out_bytes += m->stdout.len;
                if (e->o->count_only) {
                        for (size_t i = 0; i < m->stdout.len; i++)
                                if (m->stdout.data[i] != e->o->stdout_fill)
                                        res->out_mismatches++;
                } else {
                        sbx_buffer_append(&res->out, m->stdout.data, m->stdout.len);
                }
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_STDERR:
                sbx_buffer_append(&res->err, m->stderr.data, m->stderr.len);
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_EXIT:
                res->code = m->exit->code;
                snprintf(res->signal, sizeof(res->signal), "%s", strempty(m->exit->signal));
                res->oom = m->exit->oom;
                break;
        default:
                break;
        }
        protobuf_c_message_free_unpacked(message, NULL);
}

static void exec_status(SbxRpcClientCall *c, const SbxRpcStatus *status, void *userdata)
{
        ExecCall *e = userdata;
        e->res->status.code = status->code;
        e->res->status.message = status->message ? strdup(status->message) : NULL;
        e->done = true;
}

int sbx_test_exec(SbxTestSandbox *sb, const SbxTestExecOptions *o, SbxTestExecResult *ret)
{
        Sbx__V1__ExecRequest first = SBX__V1__EXEC_REQUEST__INIT;
        Sbx__V1__ExecStart start = SBX__V1__EXEC_START__INIT;
        Sbx__V1__ExecStart__EnvEntry env_entries[16], *env_ptrs[16];
        char env_copy[16][256];
        ExecCall e = { .sb = sb, .o = o, .res = ret };
        size_t argc = 0, n_env = 0;
        int r;

        *ret = (SbxTestExecResult){ .code = -1, .out = SBX_BUFFER_INIT, .err = SBX_BUFFER_INIT };
        while (o->argv[argc])
                argc++;
        for (size_t i = 0; o->env && o->env[i] && n_env < ELEMENTSOF(env_entries); i++) {
                snprintf(env_copy[n_env], sizeof(env_copy[n_env]), "%s", o->env[i]);
                char *eq = strchr(env_copy[n_env], '=');
                if (!eq)
                        continue;
                *eq = '\0';
                sbx__v1__exec_start__env_entry__init(&env_entries[n_env]);
                env_entries[n_env].key = env_copy[n_env];
                env_entries[n_env].value = eq + 1;
                env_ptrs[n_env] = &env_entries[n_env];
                n_env++;
        }
        start.sandbox_id = sb->id;
        start.command = (char *)o->argv[0];
        start.args = (char **)o->argv + 1;
        start.n_args = argc - 1;
        start.env = env_ptrs;
        start.n_env = n_env;
        start.cwd = (char *)strempty(o->cwd);
        start.user = (char *)strempty(o->user);
        start.tty = o->tty;
        start.stdin = o->stdin_size > 0 || o->keep_stdin_open;
        start.stdout = true;
        start.stderr = true;
        first.msg_case = SBX__V1__EXEC_REQUEST__MSG_START;
        first.start = &start;

        static const SbxRpcClientCallbacks cbs = { .on_message = exec_message, .on_status = exec_status };
        SbxRpcCallOptions co = { .timeout = o->timeout ? o->timeout : 120 * USEC_PER_SEC };
        r = sbx_rpc_call_start(sb->data, &sbx_api_data_exec, &first.base, &co, &cbs, &e, &e.call);
        if (r < 0)
                return r;
        sbx_rpc_client_call_on_drain(e.call, exec_drain, &e);
        while (!e.done) {
                (void)sbx_test_run_until(&sb->cluster->loop, &e.done, 100 * USEC_PER_MSEC);
                if (o->sample)
                        o->sample(o->userdata);
        }
        sbx_rpc_client_call_unref(e.call);
        return ret->status.code == SBX_STATUS_OK ? 0 : -EIO;
}

void sbx_test_exec_result_done(SbxTestExecResult *r)
{
        sbx_rpc_status_done(&r->status);
        sbx_buffer_done(&r->out);
        sbx_buffer_done(&r->err);
}

int sbx_test_sh(SbxTestSandbox *sb, const char *script, char **ret_stdout, int32_t *ret_code)
{
        const char *argv[] = { "sh", "-c", script, NULL };
        SbxTestExecOptions o = { .argv = argv };
        SbxTestExecResult res;
        int r = sbx_test_exec(sb, &o, &res);
        if (r == 0) {
                *ret_code = res.code;
                sbx_buffer_append(&res.out, "", 1);
                *ret_stdout = strdup((const char *)sbx_buffer_data(&res.out));
        } else {
                fprintf(stderr, "exec of %s failed: %d %s\n", script, res.status.code,
                        strempty(res.status.message));
        }
        sbx_test_exec_result_done(&res);
        return r;
}

/* ---- files ---- */

int sbx_test_data_call(SbxTestSandbox *sb, SbxRpcChannel *ch, const char *method,
                       const ProtobufCMessage *req, SbxRpcStatus *ret_status,
                       ProtobufCMessage **ret_response)
{
        const ProtobufCMethodDescriptor *d =
                protobuf_c_service_descriptor_get_method_by_name(&sbx__v1__sandbox_data__descriptor, method);
        char path[128];
        if (!d)
                return -EINVAL;
        snprintf(path, sizeof(path), "/sbx.v1.SandboxData/%s", method);
        SbxRpcMethod m = { .path = path, .kind = SBX_RPC_UNARY, .input = d->input, .output = d->output };
        SbxRpcCallOptions o = { .timeout = 60 * USEC_PER_SEC };
        return sbx_rpc_unary_sync(ch ? ch : sb->data, &m, req, &o, ret_status, ret_response);
}

typedef struct Transfer {
        SbxRpcClientCall *call;
        const uint8_t *p;
        size_t n, sent;
        bool closed;
        SbxBuffer *out;
        SbxRpcStatus *status;
        bool done;
} Transfer;

static void upload_pump(Transfer *t)
{
        while (!t->closed && sbx_rpc_client_call_pending_bytes(t->call) < SEND_WINDOW) {
                if (t->sent == t->n) {
                        sbx_rpc_client_call_close_send(t->call);
                        t->closed = true;
                        return;
                }
                Sbx__V1__WriteFileRequest m = SBX__V1__WRITE_FILE_REQUEST__INIT;
                size_t k = SBX_MIN(CHUNK, t->n - t->sent);
                m.msg_case = SBX__V1__WRITE_FILE_REQUEST__MSG_DATA;
                m.data = (ProtobufCBinaryData){ .len = k, .data = (uint8_t *)t->p + t->sent };
                if (sbx_rpc_client_call_send(t->call, &m.base) < 0)
                        return;
                t->sent += k;
        }
}

static void upload_drain(SbxRpcClientCall *c, void *userdata)
{
        upload_pump(userdata);
}

static void transfer_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        Transfer *t = userdata;
        if (t->out && message->descriptor == &sbx__v1__file_chunk__descriptor) {
                Sbx__V1__FileChunk *ch = (Sbx__V1__FileChunk *)message;
                sbx_buffer_append(t->out, ch->data.data, ch->data.len);
        }
        protobuf_c_message_free_unpacked(message, NULL);
}

static void transfer_status(SbxRpcClientCall *c, const SbxRpcStatus *status, void *userdata)
{
        Transfer *t = userdata;
        t->status->code = status->code;
        t->status->message = status->message ? strdup(status->message) : NULL;
        t->done = true;
}

static const SbxRpcClientCallbacks transfer_cbs = { .on_message = transfer_message,
                                                    .on_status = transfer_status };

static int transfer_wait(SbxTestSandbox *sb, Transfer *t)
{
        while (!t->done)
                (void)sbx_test_run_until(&sb->cluster->loop, &t->done, USEC_PER_SEC);
        sbx_rpc_client_call_unref(t->call);
        return t->status->code == SBX_STATUS_OK ? 0 : -EIO;
}

int sbx_test_write_file(SbxTestSandbox *sb, const char *path, const void *p, size_t n,
                        SbxRpcStatus *ret_status)
{
        Sbx__V1__WriteFileRequest first = SBX__V1__WRITE_FILE_REQUEST__INIT;
        Sbx__V1__WriteFileHeader h = SBX__V1__WRITE_FILE_HEADER__INIT;
        Transfer t = { .p = p, .n = n, .status = ret_status };
        SbxRpcCallOptions o = { .timeout = 120 * USEC_PER_SEC };
        int r;

        *ret_status = (SbxRpcStatus){ 0 };
        h.sandbox_id = sb->id;
        h.path = (char *)path;
        first.msg_case = SBX__V1__WRITE_FILE_REQUEST__MSG_HEADER;
        first.header = &h;
        if ((r = sbx_rpc_call_start(sb->data, &sbx_api_data_write_file, &first.base, &o, &transfer_cbs, &t,
                                    &t.call)) < 0)
                return r;
        sbx_rpc_client_call_on_drain(t.call, upload_drain, &t);
        upload_pump(&t);
        return transfer_wait(sb, &t);
}

int sbx_test_read_file(SbxTestSandbox *sb, const char *path, SbxBuffer *out, SbxRpcStatus *ret_status)
{
        Sbx__V1__ReadFileRequest req = SBX__V1__READ_FILE_REQUEST__INIT;
        Transfer t = { .out = out, .status = ret_status };
        SbxRpcCallOptions o = { .timeout = 120 * USEC_PER_SEC };
        int r;

        *ret_status = (SbxRpcStatus){ 0 };
        req.sandbox_id = sb->id;
        req.path = (char *)path;
        if ((r = sbx_rpc_call_start(sb->data, &sbx_api_data_read_file, &req.base, &o, &transfer_cbs, &t,
                                    &t.call)) < 0)
                return r;
        return transfer_wait(sb, &t);
}
