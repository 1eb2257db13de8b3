/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx.v1.SandboxData: processes, files and environment of the sandboxes this node runs. Every call
 * carries the sandbox's access token (minted by the scheduler, verified here with the cluster key,
 * bound to one sandbox) and names the sandbox; it is then relayed onto a stream of that sandbox's
 * guest channel.
 *
 * Flow control runs end to end: output from the guest is acknowledged (credit returned) only once
 * the gRPC send queue toward the client has drained below a threshold, so a slow client stops the
 * guest from reading its process's output, which stops the process. Input to the guest is sent
 * only against the guest's credit; without credit the agent stops reading from the client.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent-channel.h"
#include "agent/agent.h"
#include "common/api/api.h"
#include "common/base/string-util.h"
#include "common/channel/channel.h"
#include "common/log/log.h"
#include "common/store/store.h"
#include "common/token/token.h"
#include "proto/sbx/v1/data.pb-c.h"

/* Credit goes back to the guest while less than this waits for the client. */
#define CLIENT_BACKLOG (1u * 1024 * 1024)

/* ---- authorization ---- */

/* Checks the token and finds the running sandbox; answers the call and returns NULL otherwise. */
static AgentChannel *authorize(Agent *a, SbxRpcServerCall *call, const char *sandbox_id)
{
        const char *token = sbx_rpc_server_call_bearer_token(call);
        int r;

        if (isempty(sandbox_id)) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT, "sandbox_id: required");
                return NULL;
        }
        r = sbx_token_verify(&a->key, token, sandbox_id, sbx_now_ms(), NULL);
        if (r == -SBX_E_PERMISSION_DENIED) {
                sbx_counter_inc(a->m.data_calls_refused, SBX_LABELS("other_sandbox"));
                sbx_rpc_server_call_fail(call, SBX_STATUS_PERMISSION_DENIED,
                                         "This access token belongs to another sandbox");
                return NULL;
        }
        if (r < 0) {
                sbx_counter_inc(a->m.data_calls_refused, SBX_LABELS("token"));
                sbx_rpc_server_call_fail(
                        call, SBX_STATUS_UNAUTHENTICATED,
                        token ? "Invalid or expired access token"
                              : "Missing access token: send \"authorization: Bearer <access token>\"");
                return NULL;
        }
        AgentSandbox *sb = sbx_hashmap_get(a->sandboxes, sandbox_id);
        if (!sb && !a->settled) {
                /* Just restarted: the sandbox may be about to be adopted. Worth a retry. */
                sbx_rpc_server_call_fail(call, SBX_STATUS_UNAVAILABLE,
                                         "sbx-agent on node %s is starting; retry in a moment", a->cfg.name);
                return NULL;
        }
        if (!sb) {
                sbx_counter_inc(a->m.data_calls_refused, SBX_LABELS("not_here"));
                sbx_rpc_server_call_fail(call, SBX_STATUS_NOT_FOUND, "Sandbox %s does not run on node %s",
                                         sandbox_id, a->cfg.name);
                return NULL;
        }
        AgentChannel *ch = agent_sandbox_channel(sb);
        if (!ch) {
                sbx_counter_inc(a->m.data_calls_refused, SBX_LABELS("not_running"));
                sbx_rpc_server_call_fail(
                        call, SBX_STATUS_FAILED_PRECONDITION, "Sandbox %s is %s", sandbox_id,
                        agent_sandbox_phase(sb) == PHASE_STOPPING ? "stopping" : "not running yet");
                return NULL;
        }
        return ch;
}

/* Answers a call with a guest Result's error. */
static void fail_result(SbxRpcServerCall *call, const Sbx__V1__Guest__Result *res)
{
        sbx_rpc_server_call_fail(call, res->status ? (SbxStatus)res->status : SBX_STATUS_INTERNAL, "%s",
                                 res->message && *res->message ? res->message : "failed in the guest");
}

static void send_credit(AgentStream *s, uint32_t n)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        if (n == 0)
                return;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_CREDIT;
        f.credit = n;
        agent_stream_send(s, &f);
}

/* ---- unary requests: one Result ---- */

typedef struct Unary {
        SbxRpcServerCall *call;
        AgentStream *stream;
        const ProtobufCMessageDescriptor *reply;
} Unary;

static void unary_frame(AgentStream *s, const Sbx__V1__Guest__GuestFrame *f, void *userdata)
{
        Unary *u = userdata;
        const Sbx__V1__Guest__Result *res = f->result;

        if (f->body_case != SBX__V1__GUEST__GUEST_FRAME__BODY_RESULT)
                return;
        if (res->status != 0) {
                fail_result(u->call, res);
        } else if (u->reply == &sbx__v1__file_info__descriptor &&
                   res->payload_case == SBX__V1__GUEST__RESULT__PAYLOAD_INFO) {
                sbx_rpc_server_call_reply(u->call, &res->info->base);
        } else if (u->reply == &sbx__v1__read_dir_response__descriptor &&
                   res->payload_case == SBX__V1__GUEST__RESULT__PAYLOAD_DIR) {
                sbx_rpc_server_call_reply(u->call, &res->dir->base);
        } else if (u->reply == &sbx__v1__path_response__descriptor) {
                Sbx__V1__PathResponse p = SBX__V1__PATH_RESPONSE__INIT;
                p.path = res->payload_case == SBX__V1__GUEST__RESULT__PAYLOAD_PATH ? res->path : (char *)"";
                sbx_rpc_server_call_reply(u->call, &p.base);
        } else if (u->reply == &sbx__v1__umask_response__descriptor) {
                Sbx__V1__UmaskResponse m = SBX__V1__UMASK_RESPONSE__INIT;
                m.previous = res->previous_umask;
                sbx_rpc_server_call_reply(u->call, &m.base);
        } else if (u->reply == &sbx__v1__env_get_response__descriptor &&
                   res->payload_case == SBX__V1__GUEST__RESULT__PAYLOAD_ENV_VALUE) {
                sbx_rpc_server_call_reply(u->call, &res->env_value->base);
        } else if (u->reply == &sbx__v1__env_list_response__descriptor &&
                   res->payload_case == SBX__V1__GUEST__RESULT__PAYLOAD_ENV) {
                sbx_rpc_server_call_reply(u->call, &res->env->base);
        } else if (u->reply == &sbx__v1__empty__descriptor) {
                Sbx__V1__Empty e = SBX__V1__EMPTY__INIT;
                sbx_rpc_server_call_reply(u->call, &e.base);
        } else {
                sbx_rpc_server_call_fail(u->call, SBX_STATUS_INTERNAL, "Unexpected reply from the guest");
        }
        agent_stream_close(s, false);
        u->stream = NULL;
        sbx_rpc_server_call_unref(u->call);
        free(u);
}

static void unary_close(AgentStream *s, int error, void *userdata)
{
        Unary *u = userdata;
        sbx_rpc_server_call_fail(u->call, SBX_STATUS_UNAVAILABLE, "The sandbox went away during the call");
        u->stream = NULL;
        sbx_rpc_server_call_unref(u->call);
        free(u);
}

static const AgentStreamOps unary_ops = { .on_frame = unary_frame, .on_close = unary_close };

/* Sends one request frame (body already set in f) on a new stream; the Result answers the call. */
static void unary_relay(Agent *a, SbxRpcServerCall *call, const char *sandbox_id,
                        Sbx__V1__Guest__GuestFrame *f, const ProtobufCMessageDescriptor *reply)
{
        AgentChannel *ch = authorize(a, call, sandbox_id);
        Unary *u;

        if (!ch)
                return;
        u = calloc(1, sizeof(Unary));
        if (!u) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        u->call = sbx_rpc_server_call_ref(call);
        u->reply = reply;
        if (agent_stream_open(ch, &unary_ops, u, &u->stream) < 0 || agent_stream_send(u->stream, f) < 0) {
                agent_stream_close(u->stream, false);
                sbx_rpc_server_call_fail(call, SBX_STATUS_UNAVAILABLE,
                                         "The sandbox's guest channel is not available");
                sbx_rpc_server_call_unref(u->call);
                free(u);
        }
}

static void fs_relay(Agent *a, SbxRpcServerCall *call, const char *sandbox_id, Sbx__V1__Guest__FsRequest *fs,
                     const ProtobufCMessageDescriptor *reply)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_FS;
        f.fs = fs;
        unary_relay(a, call, sandbox_id, &f, reply);
}

#define FS_HANDLER(name, Type, field, CASE, reply)                                                \
        static void name(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata) \
        {                                                                                         \
                const Type *q = (const Type *)request;                                            \
                Sbx__V1__Guest__FsRequest fs = SBX__V1__GUEST__FS_REQUEST__INIT;                  \
                fs.op_case = SBX__V1__GUEST__FS_REQUEST__OP_##CASE;                               \
                fs.field = (Type *)q;                                                             \
                fs_relay(userdata, call, q->sandbox_id, &fs, &reply);                             \
        }

FS_HANDLER(stat_start, Sbx__V1__StatRequest, stat, STAT, sbx__v1__file_info__descriptor)
FS_HANDLER(read_dir_start, Sbx__V1__PathRequest, read_dir, READ_DIR, sbx__v1__read_dir_response__descriptor)
FS_HANDLER(make_dir_start, Sbx__V1__MakeDirRequest, make_dir, MAKE_DIR, sbx__v1__empty__descriptor)
FS_HANDLER(remove_start, Sbx__V1__RemoveRequest, remove, REMOVE, sbx__v1__empty__descriptor)
FS_HANDLER(rename_start, Sbx__V1__RenameRequest, rename, RENAME, sbx__v1__empty__descriptor)
FS_HANDLER(copy_start, Sbx__V1__CopyFileRequest, copy_file, COPY_FILE, sbx__v1__empty__descriptor)
FS_HANDLER(chmod_start, Sbx__V1__ChmodRequest, chmod, CHMOD, sbx__v1__empty__descriptor)
FS_HANDLER(chown_start, Sbx__V1__ChownRequest, chown, CHOWN, sbx__v1__empty__descriptor)
FS_HANDLER(link_start, Sbx__V1__LinkRequest, link, LINK, sbx__v1__empty__descriptor)
FS_HANDLER(read_link_start, Sbx__V1__PathRequest, read_link, READ_LINK, sbx__v1__path_response__descriptor)
FS_HANDLER(real_path_start, Sbx__V1__PathRequest, real_path, REAL_PATH, sbx__v1__path_response__descriptor)
FS_HANDLER(truncate_start, Sbx__V1__TruncateRequest, truncate, TRUNCATE, sbx__v1__empty__descriptor)
FS_HANDLER(utime_start, Sbx__V1__UtimeRequest, utime, UTIME, sbx__v1__empty__descriptor)
FS_HANDLER(make_temp_start, Sbx__V1__MakeTempRequest, make_temp, MAKE_TEMP,
           sbx__v1__path_response__descriptor)
FS_HANDLER(umask_start, Sbx__V1__UmaskRequest, umask, UMASK, sbx__v1__umask_response__descriptor)
#undef FS_HANDLER

static void env_relay(Agent *a, SbxRpcServerCall *call, const char *sandbox_id, Sbx__V1__Guest__EnvOp *op,
                      const ProtobufCMessageDescriptor *reply)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_ENV;
        f.env = op;
        unary_relay(a, call, sandbox_id, &f, reply);
}

static void env_get_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        const Sbx__V1__EnvRequest *q = (const Sbx__V1__EnvRequest *)request;
        Sbx__V1__Guest__EnvOp op = SBX__V1__GUEST__ENV_OP__INIT;
        op.op_case = SBX__V1__GUEST__ENV_OP__OP_GET;
        op.get = q->key;
        env_relay(userdata, call, q->sandbox_id, &op, &sbx__v1__env_get_response__descriptor);
}

static void env_set_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        const Sbx__V1__EnvSetRequest *q = (const Sbx__V1__EnvSetRequest *)request;
        Sbx__V1__Guest__EnvOp op = SBX__V1__GUEST__ENV_OP__INIT;
        op.op_case = SBX__V1__GUEST__ENV_OP__OP_SET;
        op.set = (Sbx__V1__EnvSetRequest *)q;
        env_relay(userdata, call, q->sandbox_id, &op, &sbx__v1__empty__descriptor);
}

static void env_delete_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        const Sbx__V1__EnvRequest *q = (const Sbx__V1__EnvRequest *)request;
        Sbx__V1__Guest__EnvOp op = SBX__V1__GUEST__ENV_OP__INIT;
        op.op_case = SBX__V1__GUEST__ENV_OP__OP_DELETE;
        op.delete_ = q->key;
        env_relay(userdata, call, q->sandbox_id, &op, &sbx__v1__empty__descriptor);
}

static void env_list_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        const Sbx__V1__EnvListRequest *q = (const Sbx__V1__EnvListRequest *)request;
        Sbx__V1__Guest__EnvOp op = SBX__V1__GUEST__ENV_OP__INIT;
        op.op_case = SBX__V1__GUEST__ENV_OP__OP_LIST;
        op.list = true;
        env_relay(userdata, call, q->sandbox_id, &op, &sbx__v1__env_list_response__descriptor);
}

/* ---- streams out of the guest: read file, walk ---- */

typedef struct Download {
        Agent *a;
        SbxRpcServerCall *call;
        AgentStream *stream;
        uint32_t owed; /* credit not yet returned to the guest */
} Download;

static void download_end(Download *d)
{
        agent_stream_close(d->stream, !sbx_rpc_server_call_is_done(d->call) ? false : true);
        d->stream = NULL;
}

static void download_drain(SbxRpcServerCall *call, void *userdata)
{
        Download *d = userdata;
        if (d->stream && d->owed) {
                send_credit(d->stream, d->owed);
                d->owed = 0;
        }
}

static void download_account(Download *d, uint32_t n)
{
        d->owed += n;
        if (sbx_rpc_server_call_pending_bytes(d->call) < CLIENT_BACKLOG) {
                send_credit(d->stream, d->owed);
                d->owed = 0;
        }
}

static void download_frame(AgentStream *s, const Sbx__V1__Guest__GuestFrame *f, void *userdata)
{
        Download *d = userdata;

        switch (f->body_case) {
        case SBX__V1__GUEST__GUEST_FRAME__BODY_DATA: {
                Sbx__V1__FileChunk c = SBX__V1__FILE_CHUNK__INIT;
                c.data = f->data;
                sbx_rpc_server_call_send(d->call, &c.base);
                download_account(d, (uint32_t)f->data.len);
                return;
        }
        case SBX__V1__GUEST__GUEST_FRAME__BODY_WALK_ENTRY:
                sbx_rpc_server_call_send(d->call, &f->walk_entry->base);
                download_account(d, (uint32_t)(64 + strlen(f->walk_entry->path)));
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_RESULT:
                if (f->result->status != 0)
                        fail_result(d->call, f->result);
                else
                        sbx_rpc_server_call_finish(d->call, SBX_STATUS_OK, NULL);
                agent_stream_close(s, false);
                d->stream = NULL;
                return;
        default:
                return;
        }
}

static void download_close(AgentStream *s, int error, void *userdata)
{
        Download *d = userdata;
        d->stream = NULL;
        sbx_rpc_server_call_fail(d->call, SBX_STATUS_UNAVAILABLE,
                                 "The sandbox went away during the transfer");
}

static const AgentStreamOps download_ops = { .on_frame = download_frame, .on_close = download_close };

static void download_done(SbxRpcServerCall *call, bool cancelled, void *userdata)
{
        Download *d = sbx_rpc_server_call_get_userdata(call);
        if (!d)
                return;
        if (d->stream)
                agent_stream_close(d->stream, true);
        free(d);
}

static void download_start(SbxRpcServerCall *call, const char *sandbox_id, Sbx__V1__Guest__FsRequest *fs,
                           Agent *a)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        AgentChannel *ch = authorize(a, call, sandbox_id);
        Download *d;

        if (!ch)
                return;
        d = calloc(1, sizeof(Download));
        if (!d) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        d->a = a;
        d->call = call;
        sbx_rpc_server_call_set_userdata(call, d);
        sbx_rpc_server_call_on_drain(call, download_drain, d);
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_FS;
        f.fs = fs;
        if (agent_stream_open(ch, &download_ops, d, &d->stream) < 0 || agent_stream_send(d->stream, &f) < 0)
                sbx_rpc_server_call_fail(call, SBX_STATUS_UNAVAILABLE,
                                         "The sandbox's guest channel is not available");
        (void)download_end;
}

static void read_file_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        const Sbx__V1__ReadFileRequest *q = (const Sbx__V1__ReadFileRequest *)request;
        Sbx__V1__Guest__FsRequest fs = SBX__V1__GUEST__FS_REQUEST__INIT;
        fs.op_case = SBX__V1__GUEST__FS_REQUEST__OP_READ_FILE;
        fs.read_file = (Sbx__V1__ReadFileRequest *)q;
        download_start(call, q->sandbox_id, &fs, userdata);
}

static void walk_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        const Sbx__V1__WalkRequest *q = (const Sbx__V1__WalkRequest *)request;
        Sbx__V1__Guest__FsRequest fs = SBX__V1__GUEST__FS_REQUEST__INIT;
        fs.op_case = SBX__V1__GUEST__FS_REQUEST__OP_WALK;
        fs.walk = (Sbx__V1__WalkRequest *)q;
        download_start(call, q->sandbox_id, &fs, userdata);
}

/* ---- streams into the guest: write file ---- */

typedef struct Upload {
        Agent *a;
        SbxRpcServerCall *call;
        AgentStream *stream;
        uint32_t credit;
        SbxBuffer pending; /* data received from the client, waiting for guest credit */
        bool half_closed;
        bool end_sent;
} Upload;

static void upload_pump(Upload *u)
{
        while (u->stream && u->credit > 0 && sbx_buffer_size(&u->pending) > 0) {
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                size_t n = SBX_MIN(SBX_MIN((size_t)u->credit, sbx_buffer_size(&u->pending)),
                                   (size_t)SBX_FRAME_CHUNK);
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_DATA;
                f.data.data = (uint8_t *)sbx_buffer_data(&u->pending);
                f.data.len = n;
                agent_stream_send(u->stream, &f);
                sbx_buffer_consume(&u->pending, n);
                u->credit -= (uint32_t)n;
        }
        /* Read more from the client only while there is room to forward it. */
        sbx_rpc_server_call_pause_reading(u->call, sbx_buffer_size(&u->pending) > 0);
        if (u->stream && u->half_closed && !u->end_sent && sbx_buffer_size(&u->pending) == 0) {
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_END;
                f.end = true;
                agent_stream_send(u->stream, &f);
                u->end_sent = true;
        }
}

static void upload_frame(AgentStream *s, const Sbx__V1__Guest__GuestFrame *f, void *userdata)
{
        Upload *u = userdata;

        if (f->body_case == SBX__V1__GUEST__GUEST_FRAME__BODY_CREDIT) {
                u->credit += f->credit;
                upload_pump(u);
        } else if (f->body_case == SBX__V1__GUEST__GUEST_FRAME__BODY_RESULT) {
                if (f->result->status != 0) {
                        fail_result(u->call, f->result);
                } else {
                        Sbx__V1__WriteFileResponse r = SBX__V1__WRITE_FILE_RESPONSE__INIT;
                        r.bytes_written = f->result->bytes_written;
                        sbx_rpc_server_call_reply(u->call, &r.base);
                }
                agent_stream_close(s, false);
                u->stream = NULL;
        }
}

static void upload_close(AgentStream *s, int error, void *userdata)
{
        Upload *u = userdata;
        u->stream = NULL;
        sbx_rpc_server_call_fail(u->call, SBX_STATUS_UNAVAILABLE,
                                 "The sandbox went away during the transfer");
}

static const AgentStreamOps upload_ops = { .on_frame = upload_frame, .on_close = upload_close };

static void write_file_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        /* The header is the first message. */
}

static void write_file_message(SbxRpcServerCall *call, ProtobufCMessage *m, void *userdata)
{
        Agent *a = userdata;
        Sbx__V1__WriteFileRequest *q = (Sbx__V1__WriteFileRequest *)m;
        Upload *u = sbx_rpc_server_call_get_userdata(call);

        if (!u) {
                if (q->msg_case != SBX__V1__WRITE_FILE_REQUEST__MSG_HEADER) {
                        sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                                 "The first message must be the header");
                        goto out;
                }
                AgentChannel *ch = authorize(a, call, q->header->sandbox_id);
                if (!ch)
                        goto out;
                u = calloc(1, sizeof(Upload));
                if (!u) {
                        sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                        goto out;
                }
                u->a = a;
                u->call = call;
                u->credit = SBX_CHANNEL_CREDIT;
                u->pending = (SbxBuffer)SBX_BUFFER_INIT;
                sbx_rpc_server_call_set_userdata(call, u);
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                Sbx__V1__Guest__FsRequest fs = SBX__V1__GUEST__FS_REQUEST__INIT;
                fs.op_case = SBX__V1__GUEST__FS_REQUEST__OP_WRITE_FILE;
                fs.write_file = q->header;
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_FS;
                f.fs = &fs;
                if (agent_stream_open(ch, &upload_ops, u, &u->stream) < 0 ||
                    agent_stream_send(u->stream, &f) < 0)
                        sbx_rpc_server_call_fail(call, SBX_STATUS_UNAVAILABLE,
                                                 "The sandbox's guest channel is not available");
                goto out;
        }
        if (q->msg_case == SBX__V1__WRITE_FILE_REQUEST__MSG_DATA && u->stream) {
                sbx_buffer_append(&u->pending, q->data.data, q->data.len);
                upload_pump(u);
        }
out:
        protobuf_c_message_free_unpacked(m, NULL);
}

static void write_file_half_close(SbxRpcServerCall *call, void *userdata)
{
        Upload *u = sbx_rpc_server_call_get_userdata(call);
        if (!u) {
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT, "No header was sent");
                return;
        }
        u->half_closed = true;
        upload_pump(u);
}

static void write_file_done(SbxRpcServerCall *call, bool cancelled, void *userdata)
{
        Upload *u = sbx_rpc_server_call_get_userdata(call);
        if (!u)
                return;
        if (u->stream)
                agent_stream_close(u->stream, true);
        sbx_buffer_done(&u->pending);
        free(u);
}

/* ---- processes ---- */

typedef struct Exec {
        Agent *a;
        SbxRpcServerCall *call;
        AgentStream *stream;
        uint32_t stdin_credit;
        SbxBuffer stdin_pending;
        bool stdin_close;
        uint32_t owed;
        bool exited;
} Exec;

static int signal_number(const char *name)
{
        const char *n = startswith(name, "SIG") ? name + 3 : name;
        for (int s = 1; s < NSIG; s++) {
                const char *abbrev = sigabbrev_np(s);
                if (abbrev && streq(abbrev, n))
                        return s;
        }
        return -1;
}

static void exec_pump_stdin(Exec *e)
{
        while (e->stream && e->stdin_credit > 0 && sbx_buffer_size(&e->stdin_pending) > 0) {
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                size_t n = SBX_MIN(SBX_MIN((size_t)e->stdin_credit, sbx_buffer_size(&e->stdin_pending)),
                                   (size_t)SBX_FRAME_CHUNK);
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_STDIN;
                f.stdin.data = (uint8_t *)sbx_buffer_data(&e->stdin_pending);
                f.stdin.len = n;
                agent_stream_send(e->stream, &f);
                sbx_buffer_consume(&e->stdin_pending, n);
                e->stdin_credit -= (uint32_t)n;
        }
        sbx_rpc_server_call_pause_reading(e->call, sbx_buffer_size(&e->stdin_pending) > 0);
        if (e->stream && e->stdin_close && sbx_buffer_size(&e->stdin_pending) == 0) {
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_STDIN_CLOSE;
                f.stdin_close = true;
                agent_stream_send(e->stream, &f);
                e->stdin_close = false;
        }
}

static void exec_drain(SbxRpcServerCall *call, void *userdata)
{
        Exec *e = userdata;
        if (e->stream && e->owed) {
                send_credit(e->stream, e->owed);
                e->owed = 0;
        }
}

static void exec_frame(AgentStream *s, const Sbx__V1__Guest__GuestFrame *f, void *userdata)
{
        Exec *e = userdata;
        Sbx__V1__ExecResponse r = SBX__V1__EXEC_RESPONSE__INIT;

        switch (f->body_case) {
        case SBX__V1__GUEST__GUEST_FRAME__BODY_SPAWNED:
                r.msg_case = SBX__V1__EXEC_RESPONSE__MSG_STARTED_PID;
                r.started_pid = f->spawned->pid;
                sbx_rpc_server_call_send(e->call, &r.base);
                sbx_counter_inc(e->a->m.exec_calls, SBX_LABELS("started"));
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_OUTPUT:
                if (f->output->fd == 2) {
                        r.msg_case = SBX__V1__EXEC_RESPONSE__MSG_STDERR;
                        r.stderr = f->output->data;
                } else {
                        r.msg_case = SBX__V1__EXEC_RESPONSE__MSG_STDOUT;
                        r.stdout = f->output->data;
                }
                sbx_rpc_server_call_send(e->call, &r.base);
                e->owed += (uint32_t)f->output->data.len;
                if (sbx_rpc_server_call_pending_bytes(e->call) < CLIENT_BACKLOG) {
                        send_credit(s, e->owed);
                        e->owed = 0;
                }
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_CREDIT:
                e->stdin_credit += f->credit;
                exec_pump_stdin(e);
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_EXIT: {
                Sbx__V1__ExitStatus st = SBX__V1__EXIT_STATUS__INIT;
                st.code = f->exit->code;
                st.signal = f->exit->signal;
                st.oom = f->exit->oom;
                r.msg_case = SBX__V1__EXEC_RESPONSE__MSG_EXIT;
                r.exit = &st;
                sbx_rpc_server_call_send(e->call, &r.base);
                sbx_rpc_server_call_finish(e->call, SBX_STATUS_OK, NULL);
                e->exited = true;
                agent_stream_close(s, false);
                e->stream = NULL;
                return;
        }
        case SBX__V1__GUEST__GUEST_FRAME__BODY_RESULT:
                /* An error before the process ran (command not found, bad user ...). */
                sbx_counter_inc(e->a->m.exec_calls, SBX_LABELS("refused"));
                fail_result(e->call, f->result);
                agent_stream_close(s, false);
                e->stream = NULL;
                return;
        default:
                return;
        }
}

static void exec_close(AgentStream *s, int error, void *userdata)
{
        Exec *e = userdata;
        e->stream = NULL;
        sbx_rpc_server_call_fail(e->call, SBX_STATUS_UNAVAILABLE,
                                 "The sandbox stopped while the process ran");
}

static const AgentStreamOps exec_ops = { .on_frame = exec_frame, .on_close = exec_close };

static int exec_spawn(Exec *e, AgentChannel *ch, const Sbx__V1__ExecStart *st)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        Sbx__V1__Guest__Spawn sp = SBX__V1__GUEST__SPAWN__INIT;
        _cleanup_free_ char **argv = calloc(st->n_args + 2, sizeof(char *));
        _cleanup_free_ Sbx__V1__Guest__Spawn__EnvEntry *env = calloc(st->n_env + 1, sizeof(*env));
        _cleanup_free_ Sbx__V1__Guest__Spawn__EnvEntry **envp = calloc(st->n_env + 1, sizeof(*envp));
        int r;

        if (!argv || !env || !envp)
                return -ENOMEM;
        argv[0] = st->command;
        for (size_t i = 0; i < st->n_args; i++)
                argv[i + 1] = st->args[i];
        for (size_t i = 0; i < st->n_env; i++) {
                sbx__v1__guest__spawn__env_entry__init(&env[i]);
                env[i].key = st->env[i]->key;
                env[i].value = st->env[i]->value;
                envp[i] = &env[i];
        }
        sp.argv = argv;
        sp.n_argv = st->n_args + 1;
        sp.env = envp;
        sp.n_env = st->n_env;
        sp.clear_env = st->clear_env;
        sp.cwd = st->cwd;
        sp.user = st->user;
        sp.tty = st->tty;
        sp.rows = st->window ? st->window->rows : 0;
        sp.cols = st->window ? st->window->cols : 0;
        sp.stdin = st->stdin;
        sp.stdout = st->stdout;
        sp.stderr = st->stderr;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_SPAWN;
        f.spawn = &sp;
        if ((r = agent_stream_open(ch, &exec_ops, e, &e->stream)) < 0)
                return r;
        return agent_stream_send(e->stream, &f);
}

static void exec_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
        /* The ExecStart message comes first on the stream. */
}

static void exec_message(SbxRpcServerCall *call, ProtobufCMessage *m, void *userdata)
{
        Agent *a = userdata;
        Sbx__V1__ExecRequest *q = (Sbx__V1__ExecRequest *)m;
        Exec *e = sbx_rpc_server_call_get_userdata(call);

        if (!e) {
                if (q->msg_case != SBX__V1__EXEC_REQUEST__MSG_START) {
                        sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                                 "The first message must be start");
                        goto out;
                }
                if (isempty(q->start->command)) {
                        sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT, "command: required");
                        goto out;
                }
                AgentChannel *ch = authorize(a, call, q->start->sandbox_id);
                if (!ch)
                        goto out;
                e = calloc(1, sizeof(Exec));
                if (!e) {
                        sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                        goto out;
                }
                e->a = a;
                e->call = call;
                e->stdin_credit = SBX_CHANNEL_CREDIT;
                e->stdin_pending = (SbxBuffer)SBX_BUFFER_INIT;
                sbx_rpc_server_call_set_userdata(call, e);
                sbx_rpc_server_call_on_drain(call, exec_drain, e);
                if (exec_spawn(e, ch, q->start) < 0)
                        sbx_rpc_server_call_fail(call, SBX_STATUS_UNAVAILABLE,
                                                 "The sandbox's guest channel is not available");
                goto out;
        }
        if (!e->stream)
                goto out;
        switch (q->msg_case) {
        case SBX__V1__EXEC_REQUEST__MSG_STDIN:
                sbx_buffer_append(&e->stdin_pending, q->stdin.data, q->stdin.len);
                exec_pump_stdin(e);
                break;
        case SBX__V1__EXEC_REQUEST__MSG_STDIN_CLOSE:
                e->stdin_close = true;
                exec_pump_stdin(e);
                break;
        case SBX__V1__EXEC_REQUEST__MSG_SIGNAL: {
                int sig = signal_number(q->signal);
                if (sig < 0) {
                        sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                                 "signal: unknown signal \"%.32s\"", q->signal);
                        break;
                }
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_SIGNAL;
                f.signal = (uint32_t)sig;
                agent_stream_send(e->stream, &f);
                break;
        }
        case SBX__V1__EXEC_REQUEST__MSG_RESIZE: {
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                Sbx__V1__Guest__Resize rs = SBX__V1__GUEST__RESIZE__INIT;
                rs.rows = q->resize->rows;
                rs.cols = q->resize->cols;
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_RESIZE;
                f.resize = &rs;
                agent_stream_send(e->stream, &f);
                break;
        }
        default:
                break;
        }
out:
        protobuf_c_message_free_unpacked(m, NULL);
}

static void exec_half_close(SbxRpcServerCall *call, void *userdata)
{
        Exec *e = sbx_rpc_server_call_get_userdata(call);
        if (!e)
                sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT, "No start message was sent");
        /* Otherwise the process runs on; closing stdin is explicit (stdin_close). */
}

static void exec_done(SbxRpcServerCall *call, bool cancelled, void *userdata)
{
        Exec *e = sbx_rpc_server_call_get_userdata(call);
        if (!e)
                return;
        /* The client went away while the process ran: the guest kills it (reset). */
        if (e->stream)
                agent_stream_close(e->stream, true);
        sbx_buffer_done(&e->stdin_pending);
        free(e);
}

/* ---- file handles ---- */

typedef struct Handle {
        Agent *a;
        SbxRpcServerCall *call;
        AgentStream *stream;
} Handle;

static void handle_frame(AgentStream *s, const Sbx__V1__Guest__GuestFrame *f, void *userdata)
{
        Handle *h = userdata;

        if (f->body_case != SBX__V1__GUEST__GUEST_FRAME__BODY_RESULT)
                return;
        if (f->result->status != 0) {
                /* The open itself failed: the handle never existed. */
                fail_result(h->call, f->result);
                agent_stream_close(s, false);
                h->stream = NULL;
                return;
        }
        if (f->result->payload_case == SBX__V1__GUEST__RESULT__PAYLOAD_FILE_OP)
                sbx_rpc_server_call_send(h->call, &f->result->file_op->base);
}

static void handle_close(AgentStream *s, int error, void *userdata)
{
        Handle *h = userdata;
        h->stream = NULL;
        sbx_rpc_server_call_fail(h->call, SBX_STATUS_UNAVAILABLE, "The sandbox went away");
}

static const AgentStreamOps handle_ops = { .on_frame = handle_frame, .on_close = handle_close };

static void open_file_start(SbxRpcServerCall *call, const ProtobufCMessage *request, void *userdata)
{
}

static void open_file_message(SbxRpcServerCall *call, ProtobufCMessage *m, void *userdata)
{
        Agent *a = userdata;
        Sbx__V1__FileOp *op = (Sbx__V1__FileOp *)m;
        Handle *h = sbx_rpc_server_call_get_userdata(call);
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;

        if (!h) {
                if (op->op_case != SBX__V1__FILE_OP__OP_OPEN) {
                        sbx_rpc_server_call_fail(call, SBX_STATUS_INVALID_ARGUMENT,
                                                 "The first operation must be open");
                        goto out;
                }
                AgentChannel *ch = authorize(a, call, op->open->sandbox_id);
                if (!ch)
                        goto out;
                h = calloc(1, sizeof(Handle));
                if (!h) {
                        sbx_rpc_server_call_fail(call, SBX_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                        goto out;
                }
                h->a = a;
                h->call = call;
                sbx_rpc_server_call_set_userdata(call, h);
                Sbx__V1__Guest__FsRequest fs = SBX__V1__GUEST__FS_REQUEST__INIT;
                fs.op_case = SBX__V1__GUEST__FS_REQUEST__OP_OPEN;
                fs.open = op->open;
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_FS;
                f.fs = &fs;
                if (agent_stream_open(ch, &handle_ops, h, &h->stream) < 0 ||
                    agent_stream_send(h->stream, &f) < 0)
                        sbx_rpc_server_call_fail(call, SBX_STATUS_UNAVAILABLE,
                                                 "The sandbox's guest channel is not available");
                goto out;
        }
        if (h->stream) {
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_FILE_OP;
                f.file_op = op;
                agent_stream_send(h->stream, &f);
        }
out:
        protobuf_c_message_free_unpacked(m, NULL);
}

static void open_file_half_close(SbxRpcServerCall *call, void *userdata)
{
        Handle *h = sbx_rpc_server_call_get_userdata(call);
        if (h && h->stream) {
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_END;
                f.end = true;
                agent_stream_send(h->stream, &f);
                agent_stream_close(h->stream, false);
                h->stream = NULL;
        }
        sbx_rpc_server_call_finish(call, SBX_STATUS_OK, NULL);
}

static void open_file_done(SbxRpcServerCall *call, bool cancelled, void *userdata)
{
        Handle *h = sbx_rpc_server_call_get_userdata(call);
        if (!h)
                return;
        if (h->stream)
                agent_stream_close(h->stream, true);
        free(h);
}

/* ---- registration ---- */

int agent_data_register(Agent *a, SbxRpcServer *server)
{
        const SbxRpcHandler handlers[] = {
                { .method = &sbx_api_data_exec,
                  .on_start = exec_start,
                  .on_message = exec_message,
                  .on_half_close = exec_half_close,
                  .on_done = exec_done },
                { .method = &sbx_api_data_read_file, .on_start = read_file_start, .on_done = download_done },
                { .method = &sbx_api_data_walk, .on_start = walk_start, .on_done = download_done },
                { .method = &sbx_api_data_write_file,
                  .on_start = write_file_start,
                  .on_message = write_file_message,
                  .on_half_close = write_file_half_close,
                  .on_done = write_file_done },
                { .method = &sbx_api_data_open_file,
                  .on_start = open_file_start,
                  .on_message = open_file_message,
                  .on_half_close = open_file_half_close,
                  .on_done = open_file_done },
                { .method = &sbx_api_data_stat, .on_start = stat_start },
                { .method = &sbx_api_data_read_dir, .on_start = read_dir_start },
                { .method = &sbx_api_data_make_dir, .on_start = make_dir_start },
                { .method = &sbx_api_data_remove, .on_start = remove_start },
                { .method = &sbx_api_data_rename, .on_start = rename_start },
                { .method = &sbx_api_data_copy_file, .on_start = copy_start },
                { .method = &sbx_api_data_chmod, .on_start = chmod_start },
                { .method = &sbx_api_data_chown, .on_start = chown_start },
                { .method = &sbx_api_data_link, .on_start = link_start },
                { .method = &sbx_api_data_read_link, .on_start = read_link_start },
                { .method = &sbx_api_data_real_path, .on_start = real_path_start },
                { .method = &sbx_api_data_truncate, .on_start = truncate_start },
                { .method = &sbx_api_data_utime, .on_start = utime_start },
                { .method = &sbx_api_data_make_temp, .on_start = make_temp_start },
                { .method = &sbx_api_data_umask, .on_start = umask_start },
                { .method = &sbx_api_data_env_get, .on_start = env_get_start },
                { .method = &sbx_api_data_env_set, .on_start = env_set_start },
                { .method = &sbx_api_data_env_delete, .on_start = env_delete_start },
                { .method = &sbx_api_data_env_list, .on_start = env_list_start },
        };
        for (size_t i = 0; i < ELEMENTSOF(handlers); i++) {
                SbxRpcHandler h = handlers[i];
                h.userdata = a;
                int r = sbx_rpc_server_add_handler(server, &h);
                if (r < 0)
                        return r;
        }
        return 0;
}
