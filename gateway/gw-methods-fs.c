/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file-system methods of the SDK's sandbox.fs (deno-sandbox-protocol.md §1.4, §2.8 methods
 * 2-23) on sbx.v1.SandboxData. One method, one data-plane call: the unary ones map field by field;
 * readFile collects a ReadFile stream into its one reply (bounded by max-read-size); writeFile
 * feeds a WriteFile stream from inline content or from a client stream (contentStreamId), and
 * answers once the data is written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/api/api.h"
#include "common/base/macro.h"
#include "common/base/random-util.h"
#include "common/base/string-util.h"
#include "gateway/gw-errors.h"
#include "gateway/gw-jsonrpc.h"
#include "gateway/gw-values.h"
#include "gateway/gw.h"

/* WriteFile messages carry at most this much (the gRPC limit is 4 MiB). */
#define WRITE_CHUNK (1u * 1024 * 1024)
/* Bytes waiting for the agent before the client's stream is read no further. */
#define WRITE_BACKLOG (8u * 1024 * 1024)

static char *sandbox_id(GwRequest *r)
{
        return (char *)gw_session_sandbox_id(r->s);
}

/* Options objects ({recursive, mode, ...}) may be absent or null. */
static json_t *options_of(GwRequest *r, json_t *p, bool *ok)
{
        json_t *o = NULL;
        int q = gw_param_object(p, "options", &o);

        *ok = q == 0 || q == -ENOENT;
        if (!*ok)
                gw_request_bad_param(r, "options", "must be an object");
        return q == 0 ? o : NULL;
}

static bool opt_mode(GwRequest *r, json_t *o, const char *key, uint32_t *ret)
{
        long long v;
        int q = gw_param_int(o, key, 0, 07777, &v);

        if (q == -ENOENT) {
                *ret = 0;
                return true;
        }
        if (q < 0) {
                gw_request_bad_param(r, key, "must be a file mode (0..0o7777)");
                return false;
        }
        *ret = (uint32_t)v;
        return true;
}

/* ---- unary ---- */

static void info_done(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response)
{
        if (st->code != SBX_STATUS_OK)
                gw_request_status(r, st);
        else
                gw_request_ok(r, gw_file_info_json((const Sbx__V1__FileInfo *)response));
}

static void stat_common(GwRequest *r, json_t *p, bool follow)
{
        Sbx__V1__StatRequest req = SBX__V1__STAT_REQUEST__INIT;
        const char *path;

        if (!gw_need_string(r, p, "path", &path))
                return;
        req.sandbox_id = sandbox_id(r);
        req.path = (char *)path;
        req.follow_symlinks = follow;
        gw_request_unary(r, &sbx_api_data_stat, &req.base, info_done);
}

void gw_m_stat(GwRequest *r, json_t *p)
{
        stat_common(r, p, true);
}

void gw_m_lstat(GwRequest *r, json_t *p)
{
        stat_common(r, p, false);
}

static void read_dir_done(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response)
{
        const Sbx__V1__ReadDirResponse *resp = (const Sbx__V1__ReadDirResponse *)response;
        json_t *a;

        if (st->code != SBX_STATUS_OK) {
                gw_request_status(r, st);
                return;
        }
        a = json_array();
        for (size_t i = 0; a && i < resp->n_entries; i++)
                json_array_append_new(a, gw_dir_entry_json(resp->entries[i]->name, resp->entries[i]->type));
        gw_request_ok(r, a);
}

void gw_m_read_dir(GwRequest *r, json_t *p)
{
        Sbx__V1__PathRequest req = SBX__V1__PATH_REQUEST__INIT;
        const char *path;

        if (!gw_need_string(r, p, "path", &path))
                return;
        req.sandbox_id = sandbox_id(r);
        req.path = (char *)path;
        gw_request_unary(r, &sbx_api_data_read_dir, &req.base, read_dir_done);
}

void gw_m_remove(GwRequest *r, json_t *p)
{
        Sbx__V1__RemoveRequest req = SBX__V1__REMOVE_REQUEST__INIT;
        const char *path;
        json_t *o;
        bool ok, recursive;

        if (!gw_need_string(r, p, "path", &path))
                return;
        o = options_of(r, p, &ok);
        if (!ok || !gw_opt_bool(r, o, "recursive", false, &recursive))
                return;
        req.sandbox_id = sandbox_id(r);
        req.path = (char *)path;
        req.recursive = recursive;
        gw_request_unary(r, &sbx_api_data_remove, &req.base, gw_request_done_null);
}

void gw_m_mkdir(GwRequest *r, json_t *p)
{
        Sbx__V1__MakeDirRequest req = SBX__V1__MAKE_DIR_REQUEST__INIT;
        const char *path;
        json_t *o;
        bool ok, recursive;

        if (!gw_need_string(r, p, "path", &path))
                return;
        o = options_of(r, p, &ok);
        if (!ok || !gw_opt_bool(r, o, "recursive", false, &recursive) || !opt_mode(r, o, "mode", &req.mode))
                return;
        req.sandbox_id = sandbox_id(r);
        req.path = (char *)path;
        req.recursive = recursive;
        gw_request_unary(r, &sbx_api_data_make_dir, &req.base, gw_request_done_null);
}

void gw_m_rename(GwRequest *r, json_t *p)
{
        Sbx__V1__RenameRequest req = SBX__V1__RENAME_REQUEST__INIT;
        const char *from, *to;

        if (!gw_need_string(r, p, "oldPath", &from) || !gw_need_string(r, p, "newPath", &to))
                return;
        req.sandbox_id = sandbox_id(r);
        req.old_path = (char *)from;
        req.new_path = (char *)to;
        gw_request_unary(r, &sbx_api_data_rename, &req.base, gw_request_done_null);
}

void gw_m_chmod(GwRequest *r, json_t *p)
{
        Sbx__V1__ChmodRequest req = SBX__V1__CHMOD_REQUEST__INIT;
        const char *path;
        long long mode;

        if (!gw_need_string(r, p, "path", &path))
                return;
        if (gw_param_int(p, "mode", 0, 07777, &mode) < 0) {
                gw_request_bad_param(r, "mode", "must be a file mode (0..0o7777)");
                return;
        }
        req.sandbox_id = sandbox_id(r);
        req.path = (char *)path;
        req.mode = (uint32_t)mode;
        gw_request_unary(r, &sbx_api_data_chmod, &req.base, gw_request_done_null);
}

void gw_m_chown(GwRequest *r, json_t *p)
{
        Sbx__V1__ChownRequest req = SBX__V1__CHOWN_REQUEST__INIT;
        const char *path;
        long long uid = -1, gid = -1;
        int qu, qg;

        if (!gw_need_string(r, p, "path", &path))
                return;
        /* null means "leave it as it is" (the SDK always sends both keys). */
        qu = gw_param_int(p, "uid", 0, UINT32_MAX, &uid);
        qg = gw_param_int(p, "gid", 0, UINT32_MAX, &gid);
        if ((qu < 0 && qu != -ENOENT) || (qg < 0 && qg != -ENOENT)) {
                gw_request_bad_param(r, "uid/gid", "must be ids or null");
                return;
        }
        req.sandbox_id = sandbox_id(r);
        req.path = (char *)path;
        req.uid = qu == 0 ? uid : -1;
        req.gid = qg == 0 ? gid : -1;
        gw_request_unary(r, &sbx_api_data_chown, &req.base, gw_request_done_null);
}

void gw_m_copy_file(GwRequest *r, json_t *p)
{
        Sbx__V1__CopyFileRequest req = SBX__V1__COPY_FILE_REQUEST__INIT;
        const char *from, *to;

        if (!gw_need_string(r, p, "fromPath", &from) || !gw_need_string(r, p, "toPath", &to))
                return;
        req.sandbox_id = sandbox_id(r);
        req.from_path = (char *)from;
        req.to_path = (char *)to;
        gw_request_unary(r, &sbx_api_data_copy_file, &req.base, gw_request_done_null);
}

static void link_common(GwRequest *r, json_t *p, bool symbolic)
{
        Sbx__V1__LinkRequest req = SBX__V1__LINK_REQUEST__INIT;
        const char *target, *path;

        if (!gw_need_string(r, p, "target", &target) || !gw_need_string(r, p, "path", &path))
                return;
        req.sandbox_id = sandbox_id(r);
        req.target = (char *)target;
        req.path = (char *)path;
        req.symbolic = symbolic;
        gw_request_unary(r, &sbx_api_data_link, &req.base, gw_request_done_null);
}

void gw_m_link(GwRequest *r, json_t *p)
{
        link_common(r, p, false);
}

void gw_m_symlink(GwRequest *r, json_t *p)
{
        /* options.type (file, dir, junction) only matters on Windows. */
        link_common(r, p, true);
}

static void path_done(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response)
{
        const Sbx__V1__PathResponse *resp = (const Sbx__V1__PathResponse *)response;

        if (st->code != SBX_STATUS_OK)
                gw_request_status(r, st);
        else
                gw_request_ok(r, gw_json_text(resp->path, strlen(resp->path)));
}

static void path_call(GwRequest *r, json_t *p, const SbxRpcMethod *m)
{
        Sbx__V1__PathRequest req = SBX__V1__PATH_REQUEST__INIT;
        const char *path;

        if (!gw_need_string(r, p, "path", &path))
                return;
        req.sandbox_id = sandbox_id(r);
        req.path = (char *)path;
        gw_request_unary(r, m, &req.base, path_done);
}

void gw_m_read_link(GwRequest *r, json_t *p)
{
        path_call(r, p, &sbx_api_data_read_link);
}

void gw_m_real_path(GwRequest *r, json_t *p)
{
        path_call(r, p, &sbx_api_data_real_path);
}

/* makeTempDir with a suffix: the guest makes temporary directories with mkdtemp(), which takes no
 * suffix, so the gateway picks the random name and creates it exclusively (retrying a taken one). */
typedef struct TempDir {
        char *dir, *prefix, *suffix, *path;
        unsigned attempts;
} TempDir;

static void temp_dir_free(void *p)
{
        TempDir *t = p;
        free(t->dir);
        free(t->prefix);
        free(t->suffix);
        free(t->path);
        free(t);
}

static void temp_dir_try(GwRequest *r);

static void temp_dir_done(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response)
{
        TempDir *t = r->data;

        if (st->code == SBX_STATUS_ALREADY_EXISTS && t->attempts < 8) {
                temp_dir_try(r);
                return;
        }
        if (st->code != SBX_STATUS_OK)
                gw_request_status(r, st);
        else
                gw_request_ok(r, gw_json_text(t->path, strlen(t->path)));
}

static void temp_dir_try(GwRequest *r)
{
        static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        Sbx__V1__MakeDirRequest req = SBX__V1__MAKE_DIR_REQUEST__INIT;
        TempDir *t = r->data;
        uint8_t rnd[8];
        char name[9];

        if (sbx_random_bytes(rnd, sizeof(rnd)) < 0) {
                gw_request_error(r, NULL);
                return;
        }
        for (size_t i = 0; i < sizeof(rnd); i++)
                name[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
        name[8] = '\0';
        free(t->path);
        if (asprintf(&t->path, "%s%s%s%s%s", t->dir, endswith(t->dir, "/") ? "" : "/", t->prefix, name,
                     t->suffix) < 0) {
                t->path = NULL;
                gw_request_error(r, NULL);
                return;
        }
        t->attempts++;
        req.sandbox_id = sandbox_id(r);
        req.path = t->path;
        req.mode = 0700;
        gw_request_unary(r, &sbx_api_data_make_dir, &req.base, temp_dir_done);
}

static void make_temp(GwRequest *r, json_t *p, bool directory)
{
        Sbx__V1__MakeTempRequest req = SBX__V1__MAKE_TEMP_REQUEST__INIT;
        const char *dir = "", *prefix = "", *suffix = "";
        json_t *o;
        bool ok;

        o = options_of(r, p, &ok);
        if (!ok)
                return;
        if ((gw_param_string(o, "dir", &dir) == -EINVAL) ||
            (gw_param_string(o, "prefix", &prefix) == -EINVAL) ||
            (gw_param_string(o, "suffix", &suffix) == -EINVAL)) {
                gw_request_bad_param(r, "options", "dir, prefix and suffix must be strings");
                return;
        }
        /* Names of the temporary entry stay in their directory. */
        if (strchr(prefix, '/') || strchr(suffix, '/')) {
                gw_request_error(r,
                                 gw_error_new("TypeError", NULL, "prefix and suffix must not contain '/'"));
                return;
        }
        if (directory && *suffix) {
                TempDir *t = new0(TempDir, 1);
                if (!t || !(t->dir = strdup(*dir ? dir : "/tmp")) || !(t->prefix = strdup(prefix)) ||
                    !(t->suffix = strdup(suffix))) {
                        if (t)
                                temp_dir_free(t);
                        gw_request_error(r, NULL);
                        return;
                }
                r->data = t;
                r->free_data = temp_dir_free;
                temp_dir_try(r);
                return;
        }
        req.sandbox_id = sandbox_id(r);
        req.dir = (char *)dir;
        req.prefix = (char *)prefix;
        req.suffix = (char *)suffix;
        req.directory = directory;
        gw_request_unary(r, &sbx_api_data_make_temp, &req.base, path_done);
}

void gw_m_make_temp_dir(GwRequest *r, json_t *p)
{
        make_temp(r, p, true);
}

void gw_m_make_temp_file(GwRequest *r, json_t *p)
{
        make_temp(r, p, false);
}

void gw_m_truncate(GwRequest *r, json_t *p)
{
        Sbx__V1__TruncateRequest req = SBX__V1__TRUNCATE_REQUEST__INIT;
        const char *name;
        long long len = 0;
        int q;

        /* The SDK names the path "name" here. */
        if (!gw_need_string(r, p, "name", &name))
                return;
        q = gw_param_int(p, "length", 0, INT64_MAX, &len);
        if (q < 0 && q != -ENOENT) {
                gw_request_bad_param(r, "length", "must be a non-negative integer");
                return;
        }
        req.sandbox_id = sandbox_id(r);
        req.path = (char *)name;
        req.length = (uint64_t)len;
        gw_request_unary(r, &sbx_api_data_truncate, &req.base, gw_request_done_null);
}

static void umask_done(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response)
{
        if (st->code != SBX_STATUS_OK)
                gw_request_status(r, st);
        else
                gw_request_ok(r, json_integer(((const Sbx__V1__UmaskResponse *)response)->previous));
}

void gw_m_umask(GwRequest *r, json_t *p)
{
        Sbx__V1__UmaskRequest req = SBX__V1__UMASK_REQUEST__INIT;
        long long mask;
        int q = gw_param_int(p, "mask", 0, 0777, &mask);

        if (q < 0 && q != -ENOENT) {
                gw_request_bad_param(r, "mask", "must be a mask (0..0o777)");
                return;
        }
        req.sandbox_id = sandbox_id(r);
        req.set = q == 0;
        req.mask = q == 0 ? (uint32_t)mask : 0;
        gw_request_unary(r, &sbx_api_data_umask, &req.base, umask_done);
}

/* An ISO date parameter as nanoseconds. */
static bool param_time(GwRequest *r, json_t *p, const char *key, int64_t *ret_ns)
{
        const char *s;
        int64_t ms;

        if (gw_param_string(p, key, &s) < 0 || gw_iso_parse(s, &ms) < 0) {
                gw_request_bad_param(r, key, "must be an ISO-8601 date");
                return false;
        }
        *ret_ns = ms * 1000000;
        return true;
}

void gw_m_utime(GwRequest *r, json_t *p)
{
        Sbx__V1__UtimeRequest req = SBX__V1__UTIME_REQUEST__INIT;
        const char *path;

        if (!gw_need_string(r, p, "path", &path) || !param_time(r, p, "atime", &req.atime_ns) ||
            !param_time(r, p, "mtime", &req.mtime_ns))
                return;
        req.sandbox_id = sandbox_id(r);
        req.path = (char *)path;
        gw_request_unary(r, &sbx_api_data_utime, &req.base, gw_request_done_null);
}

/* ---- readFile ---- */

typedef struct ReadState {
        SbxBuffer data;
        bool text;
        bool too_large;
} ReadState;

static void read_state_free(void *p)
{
        ReadState *st = p;
        sbx_buffer_done(&st->data);
        free(st);
}

static void read_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        GwRequest *r = userdata;
        ReadState *st = r->data;
        const Sbx__V1__FileChunk *chunk = (const Sbx__V1__FileChunk *)message;

        if (!r->replied && !st->too_large &&
            sbx_buffer_append(&st->data, chunk->data.data, chunk->data.len) < 0) {
                st->too_large = true;
                sbx_rpc_client_call_cancel(c);
        }
        protobuf_c_message_free_unpacked(message, NULL);
}

static void read_status(SbxRpcClientCall *c, const SbxRpcStatus *status, void *userdata)
{
        GwRequest *r = userdata;
        ReadState *st = r->data;
        Gateway *gw = gw_session_gateway(r->s);

        r->call = sbx_rpc_client_call_unref(r->call);
        if (gw_request_finished(r))
                return;
        if (st->too_large)
                gw_request_error(
                        r, gw_error_new("Error", "EFBIG",
                                        "The file is larger than readFile returns in one reply (%llu "
                                        "bytes; sbx-gateway max-read-size); read it with open() instead",
                                        (unsigned long long)gw->cfg.max_read_size));
        else if (status->code != SBX_STATUS_OK)
                gw_request_status(r, status);
        else if (st->text)
                gw_request_ok(r, gw_json_text(sbx_buffer_data(&st->data), sbx_buffer_size(&st->data)));
        else
                gw_request_ok(r, gw_json_base64(sbx_buffer_data(&st->data), sbx_buffer_size(&st->data)));
}

static void read_common(GwRequest *r, json_t *p, bool text)
{
        Sbx__V1__ReadFileRequest req = SBX__V1__READ_FILE_REQUEST__INIT;
        SbxRpcClientCallbacks cbs = { .on_message = read_message, .on_status = read_status };
        ReadState *st;
        const char *path;
        int q;

        if (!gw_need_string(r, p, "path", &path))
                return;
        if (gw_request_take_abort_id(r, p) < 0) {
                gw_request_bad_param(r, "abortId", "must be an integer");
                return;
        }
        st = new0(ReadState, 1);
        if (!st) {
                gw_request_error(r, NULL);
                return;
        }
        st->text = text;
        sbx_buffer_set_limit(&st->data, gw_session_gateway(r->s)->cfg.max_read_size);
        r->data = st;
        r->free_data = read_state_free;
        req.sandbox_id = sandbox_id(r);
        req.path = (char *)path;
        q = sbx_rpc_call_start(gw_session_channel(r->s), &sbx_api_data_read_file, &req.base,
                               gw_data_call_options(), &cbs, r, &r->call);
        if (q < 0)
                gw_request_error(r, gw_error_new("Error", NULL, "Cannot reach the sandbox: %s",
                                                 sbx_error_message(q)));
}

void gw_m_read_file(GwRequest *r, json_t *p)
{
        read_common(r, p, false);
}

void gw_m_read_text_file(GwRequest *r, json_t *p)
{
        read_common(r, p, true);
}

/* ---- writeFile ---- */

typedef struct WriteState {
        GwRequest *r;
        bool streaming;
        uint64_t stream_id;
        bool stream_bound;
        bool input_paused;
        bool stream_failed;
} WriteState;

static void write_release_stream(WriteState *w)
{
        if (w->stream_bound) {
                w->stream_bound = false;
                gw_in_stream_cancel(w->r->s, w->stream_id);
        }
        if (w->input_paused) {
                w->input_paused = false;
                gw_session_pause_input(w->r->s, false);
        }
}

static void write_state_free(void *p)
{
        WriteState *w = p;
        write_release_stream(w);
        free(w);
}

static int write_data(GwRequest *r, const uint8_t *data, size_t n)
{
        Sbx__V1__WriteFileRequest msg = SBX__V1__WRITE_FILE_REQUEST__INIT;

        msg.msg_case = SBX__V1__WRITE_FILE_REQUEST__MSG_DATA;
        while (n > 0) {
                size_t k = SBX_MIN(n, (size_t)WRITE_CHUNK);
                msg.data = (ProtobufCBinaryData){ .len = k, .data = (uint8_t *)data };
                int q = sbx_rpc_client_call_send(r->call, &msg.base);
                if (q < 0)
                        return q;
                data += k;
                n -= k;
        }
        return 0;
}

static void write_drained(SbxRpcClientCall *c, void *userdata)
{
        WriteState *w = userdata;

        if (w->input_paused) {
                w->input_paused = false;
                gw_session_pause_input(w->r->s, false);
        }
}

static void write_stream_data(void *userdata, const uint8_t *data, size_t n)
{
        WriteState *w = userdata;
        GwRequest *r = w->r;

        if (!r->call || r->replied)
                return;
        if (write_data(r, data, n) < 0)
                return;
        /* The protocol has no flow control of its own: hold the whole socket back instead. */
        if (!w->input_paused && sbx_rpc_client_call_pending_bytes(r->call) > WRITE_BACKLOG) {
                w->input_paused = true;
                gw_session_pause_input(r->s, true);
        }
}

static void write_stream_end(void *userdata, json_t *error)
{
        WriteState *w = userdata;
        GwRequest *r = w->r;

        w->stream_bound = false;
        if (!r->call || r->replied)
                return;
        if (error) {
                /* The client's stream failed: nothing of it may stand as the file's content. */
                w->stream_failed = true;
                sbx_rpc_client_call_cancel(r->call);
                return;
        }
        (void)sbx_rpc_client_call_close_send(r->call);
}

static const GwInStreamOps write_stream_ops = {
        .on_data = write_stream_data,
        .on_end = write_stream_end,
};

static void write_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        protobuf_c_message_free_unpacked(message, NULL);
}

static void write_status(SbxRpcClientCall *c, const SbxRpcStatus *status, void *userdata)
{
        GwRequest *r = userdata;
        WriteState *w = r->data;

        r->call = sbx_rpc_client_call_unref(r->call);
        write_release_stream(w);
        if (gw_request_finished(r))
                return;
        if (w->stream_failed)
                gw_request_error(r, gw_error_new("Error", NULL,
                                                 "The content stream failed; the file was not written"));
        else if (status->code != SBX_STATUS_OK)
                gw_request_status(r, status);
        else
                gw_request_ok(r, json_null());
}

static void write_abort(GwRequest *r)
{
        WriteState *w = r->data;

        write_release_stream(w);
        if (r->call)
                sbx_rpc_client_call_cancel(r->call);
}

static void write_common(GwRequest *r, json_t *p, bool text)
{
        Sbx__V1__WriteFileRequest first = SBX__V1__WRITE_FILE_REQUEST__INIT;
        Sbx__V1__WriteFileHeader h = SBX__V1__WRITE_FILE_HEADER__INIT;
        SbxRpcClientCallbacks cbs = { .on_message = write_message, .on_status = write_status };
        _cleanup_free_ uint8_t *content = NULL;
        size_t content_len = 0;
        const char *path, *s;
        long long stream_id;
        bool ok, append, create, create_new;
        json_t *o;
        WriteState *w;
        int q;

        if (!gw_need_string(r, p, "path", &path))
                return;
        o = options_of(r, p, &ok);
        if (!ok || !gw_opt_bool(r, o, "append", false, &append) ||
            !gw_opt_bool(r, o, "create", true, &create) ||
            !gw_opt_bool(r, o, "createNew", false, &create_new) || !opt_mode(r, o, "mode", &h.mode))
                return;
        if (gw_request_take_abort_id(r, p) < 0) {
                gw_request_bad_param(r, "abortId", "must be an integer");
                return;
        }
        w = new0(WriteState, 1);
        if (!w) {
                gw_request_error(r, NULL);
                return;
        }
        w->r = r;
        r->data = w;
        r->free_data = write_state_free;
        r->on_abort = write_abort;

        q = gw_param_int(p, "contentStreamId", 0, 1LL << 53, &stream_id);
        if (q == 0) {
                w->streaming = true;
                w->stream_id = (uint64_t)stream_id;
        } else if (gw_param_string(p, "content", &s) == 0) {
                if (text) {
                        content_len = json_string_length(json_object_get(p, "content"));
                        content = malloc(content_len + 1);
                        if (!content) {
                                gw_request_error(r, NULL);
                                return;
                        }
                        memcpy(content, s, content_len);
                } else if (gw_base64_decode(s, strlen(s), &content, &content_len) < 0) {
                        gw_request_bad_param(r, "content", "must be base64");
                        return;
                }
        } else {
                gw_request_bad_param(r, "content", "or contentStreamId is required");
                return;
        }

        h.sandbox_id = sandbox_id(r);
        h.path = (char *)path;
        h.append = append;
        h.no_create = !create && !create_new;
        h.create_new = create_new;
        first.msg_case = SBX__V1__WRITE_FILE_REQUEST__MSG_HEADER;
        first.header = &h;
        q = sbx_rpc_call_start(gw_session_channel(r->s), &sbx_api_data_write_file, &first.base,
                               gw_data_call_options(), &cbs, r, &r->call);
        if (q < 0) {
                if (w->streaming)
                        gw_in_stream_cancel(r->s, w->stream_id);
                gw_request_error(r, gw_error_new("Error", NULL, "Cannot reach the sandbox: %s",
                                                 sbx_error_message(q)));
                return;
        }
        sbx_rpc_client_call_on_drain(r->call, write_drained, w);
        if (!w->streaming) {
                (void)write_data(r, content, content_len);
                (void)sbx_rpc_client_call_close_send(r->call);
                return;
        }
        w->stream_bound = true;
        q = gw_in_stream_bind(r->s, w->stream_id, &write_stream_ops, w);
        if (q < 0) {
                w->stream_bound = false;
                sbx_rpc_client_call_cancel(r->call);
                gw_request_bad_param(r, "contentStreamId",
                                     q == -EEXIST ? "is already in use" : "cannot be read");
        }
}

void gw_m_write_file(GwRequest *r, json_t *p)
{
        write_common(r, p, false);
}

void gw_m_write_text_file(GwRequest *r, json_t *p)
{
        write_common(r, p, true);
}
