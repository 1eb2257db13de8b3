/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File handles (FsFile: open, create, fileRead … fileClose; deno-sandbox-protocol.md §2.8 methods
 * 24-36) on the data plane's OpenFile stream: one stream per handle, the open first, then one
 * operation per request; the agent answers in order, one result per operation, so the requests
 * waiting on a handle form a queue. Closing the handle half-closes the stream.
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
#include "gateway/gw-values.h"
#include "gateway/gw.h"

/* Largest read one fileRead asks the agent for (the SDK's readable stream asks for 64 KiB). */
#define READ_MAX (1u * 1024 * 1024)
/* Open handles per session. */
#define FILES_MAX 1024

typedef enum FileOpKind {
        OP_READ,
        OP_WRITE,
        OP_SEEK,
        OP_STAT,
        OP_NULL, /* truncate, sync, syncData, utime, lock, unlock: ok null */
} FileOpKind;

typedef struct Pending {
        GwRequest *r;
        FileOpKind kind;
} Pending;

typedef struct GwFile {
        GwSession *s;
        uint64_t id;
        char key[24];
        SbxRpcClientCall *call;
        bool opened;
        bool closing;
        GwRequest *open_req;
        GwRequest *close_req;
        Pending *queue;
        size_t head, n, alloc;
        GwLink link;
} GwFile;

struct GwFileTable {
        SbxHashmap *by_id;
        GwLink all;
        uint64_t next_id;
};

static GwFileTable *table(GwSession *s, bool create)
{
        GwFileTable **t = gw_session_files(s);

        if (!*t && create) {
                GwFileTable *n = new0(GwFileTable, 1);
                if (!n || sbx_hashmap_new(&n->by_id) < 0) {
                        free(n);
                        return NULL;
                }
                gw_list_init(&n->all);
                n->next_id = 1;
                *t = n;
        }
        return *t;
}

/* Takes the handle id out of use (later operations on it fail with BadResource). */
static void file_unmap(GwFile *f)
{
        GwFileTable *t = table(f->s, false);

        if (t && sbx_hashmap_get(t->by_id, f->key) == f)
                sbx_hashmap_remove(t->by_id, f->key);
}

/* Forgets the handle entirely; until then, closing the session finds it (and its requests). */
static void file_forget(GwFile *f)
{
        file_unmap(f);
        gw_list_del(&f->link);
}

static void file_free(GwFile *f)
{
        free(f->queue);
        gw_session_unref(f->s);
        free(f);
}

static int push(GwFile *f, GwRequest *r, FileOpKind kind)
{
        if (f->head + f->n == f->alloc) {
                if (f->head > 0) {
                        memmove(f->queue, f->queue + f->head, f->n * sizeof(Pending));
                        f->head = 0;
                } else {
                        size_t n = f->alloc ? f->alloc * 2 : 8;
                        Pending *q = reallocarray(f->queue, n, sizeof(Pending));
                        if (!q)
                                return -ENOMEM;
                        f->queue = q;
                        f->alloc = n;
                }
        }
        f->queue[f->head + f->n++] = (Pending){ .r = r, .kind = kind };
        return 0;
}

static bool pop(GwFile *f, Pending *ret)
{
        if (f->n == 0)
                return false;
        *ret = f->queue[f->head++];
        f->n--;
        return true;
}

static json_t *result_json(FileOpKind kind, const Sbx__V1__FileOpResult *res)
{
        switch (kind) {
        case OP_READ:
                if (res->result_case == SBX__V1__FILE_OP_RESULT__RESULT_DATA && res->data.len > 0)
                        return json_pack("{s:o}", "data", gw_json_base64(res->data.data, res->data.len));
                /* null is the end of the file; "" a read that returned nothing yet. */
                return json_pack("{s:o}", "data", res->eof ? json_null() : json_string(""));
        case OP_WRITE:
                return json_pack("{s:I}", "bytesWritten", (json_int_t)res->bytes_written);
        case OP_SEEK:
                return json_pack("{s:I}", "position", (json_int_t)res->position);
        case OP_STAT:
                if (res->result_case == SBX__V1__FILE_OP_RESULT__RESULT_INFO && res->info)
                        return gw_file_info_json(res->info);
                return NULL;
        case OP_NULL:
        default:
                return json_null();
        }
}

static void file_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        GwFile *f = userdata;
        const Sbx__V1__FileOpResult *res = (const Sbx__V1__FileOpResult *)message;
        Pending p;

        if (!f->opened) {
                f->opened = true;
                if (f->open_req) {
                        gw_request_ok(f->open_req, json_pack("{s:I}", "fileHandleId", (json_int_t)f->id));
                        f->open_req = NULL;
                }
        } else if (pop(f, &p)) {
                if (res->error_status != 0)
                        gw_request_error(
                                p.r, gw_error_from_status((SbxStatus)res->error_status, res->error_message));
                else {
                        json_t *v = result_json(p.kind, res);
                        if (v)
                                gw_request_ok(p.r, v);
                        else
                                gw_request_error(p.r, gw_error_new("Error", NULL,
                                                                   "Unexpected reply from the sandbox"));
                }
        }
        protobuf_c_message_free_unpacked(message, NULL);
}

static void file_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        GwFile *f = userdata;
        Pending p;

        f->call = sbx_rpc_client_call_unref(f->call);
        file_forget(f);
        if (f->open_req)
                gw_request_status(f->open_req,
                                  st->code == SBX_STATUS_OK
                                          ? &(SbxRpcStatus){ .code = SBX_STATUS_INTERNAL,
                                                             .message = (char *)"the open failed" }
                                          : st);
        while (pop(f, &p))
                gw_request_error(p.r,
                                 gw_error_new("BadResource", "EBADF", "The file handle was closed%s%s",
                                              st->code == SBX_STATUS_OK ? "" : ": ", strempty(st->message)));
        if (f->close_req) {
                if (st->code == SBX_STATUS_OK || st->code == SBX_STATUS_CANCELLED)
                        gw_request_ok(f->close_req, json_null());
                else
                        gw_request_status(f->close_req, st);
        }
        file_free(f);
}

static void open_common(GwRequest *r, const char *path, const Sbx__V1__FileOpen *flags)
{
        Sbx__V1__FileOp op = SBX__V1__FILE_OP__INIT;
        Sbx__V1__FileOpen open = *flags;
        SbxRpcClientCallbacks cbs = { .on_message = file_message, .on_status = file_status };
        GwFileTable *t = table(r->s, true);
        GwFile *f;
        int q;

        if (!t || !(f = new0(GwFile, 1))) {
                gw_request_error(r, NULL);
                return;
        }
        if (sbx_hashmap_size(t->by_id) >= FILES_MAX) {
                free(f);
                gw_request_error(r, gw_error_new("Error", "EMFILE",
                                                 "Too many open files on this connection (%d)", FILES_MAX));
                return;
        }
        f->s = gw_session_ref(r->s);
        f->id = t->next_id++;
        snprintf(f->key, sizeof(f->key), "%" PRIu64, f->id);
        f->open_req = r;
        open.sandbox_id = (char *)gw_session_sandbox_id(r->s);
        open.path = (char *)path;
        op.op_case = SBX__V1__FILE_OP__OP_OPEN;
        op.open = &open;
        if (sbx_hashmap_put(t->by_id, f->key, f, NULL) < 0) {
                file_free(f);
                gw_request_error(r, NULL);
                return;
        }
        gw_list_add(&t->all, &f->link);
        q = sbx_rpc_call_start(gw_session_channel(r->s), &sbx_api_data_open_file, &op.base,
                               gw_data_call_options(), &cbs, f, &f->call);
        if (q < 0) {
                file_forget(f);
                file_free(f);
                gw_request_error(r, gw_error_new("Error", NULL, "Cannot reach the sandbox: %s",
                                                 sbx_error_message(q)));
        }
}

void gw_m_open(GwRequest *r, json_t *p)
{
        Sbx__V1__FileOpen o = SBX__V1__FILE_OPEN__INIT;
        const char *path;
        json_t *opts = NULL;
        bool read, write, append, truncate, create, create_new;
        long long mode = 0;
        int q;

        if (!gw_need_string(r, p, "path", &path))
                return;
        q = gw_param_object(p, "options", &opts);
        if (q == -EINVAL) {
                gw_request_bad_param(r, "options", "must be an object");
                return;
        }
        /* Deno.open() without options reads; with options, what is not given is false. */
        if (!gw_opt_bool(r, opts, "read", !opts, &read) || !gw_opt_bool(r, opts, "write", false, &write) ||
            !gw_opt_bool(r, opts, "append", false, &append) ||
            !gw_opt_bool(r, opts, "truncate", false, &truncate) ||
            !gw_opt_bool(r, opts, "create", false, &create) ||
            !gw_opt_bool(r, opts, "createNew", false, &create_new))
                return;
        q = gw_param_int(opts, "mode", 0, 07777, &mode);
        if (q < 0 && q != -ENOENT) {
                gw_request_bad_param(r, "options.mode", "must be a file mode (0..0o7777)");
                return;
        }
        if (!read && !write && !append) {
                gw_request_error(r, gw_error_new("TypeError", NULL,
                                                 "OpenOptions requires at least one option to be true"));
                return;
        }
        if ((create || create_new) && !write && !append) {
                gw_request_error(
                        r,
                        gw_error_new("TypeError", NULL,
                                     "'create' or 'createNew' options require 'write' or 'append' option"));
                return;
        }
        o.read = read;
        o.write = write;
        o.append = append;
        o.truncate = truncate;
        o.create = create;
        o.create_new = create_new;
        o.mode = (uint32_t)mode;
        open_common(r, path, &o);
}

void gw_m_create(GwRequest *r, json_t *p)
{
        Sbx__V1__FileOpen o = SBX__V1__FILE_OPEN__INIT;
        const char *path;

        if (!gw_need_string(r, p, "path", &path))
                return;
        /* Deno.create(): read, write, create, truncate. */
        o.read = o.write = o.create = o.truncate = true;
        open_common(r, path, &o);
}

static GwFile *find(GwRequest *r, json_t *p)
{
        GwFileTable *t = table(r->s, false);
        long long id;
        char key[24];

        if (gw_param_int(p, "fileHandleId", 0, 1LL << 53, &id) < 0) {
                gw_request_bad_param(r, "fileHandleId", "must be an integer");
                return NULL;
        }
        snprintf(key, sizeof(key), "%lld", id);
        return t ? sbx_hashmap_get(t->by_id, key) : NULL;
}

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

void gw_m_file_op(GwRequest *r, json_t *p)
{
        Sbx__V1__FileOp op = SBX__V1__FILE_OP__INIT;
        Sbx__V1__FileOp__Read rd = SBX__V1__FILE_OP__READ__INIT;
        Sbx__V1__FileOp__Seek sk = SBX__V1__FILE_OP__SEEK__INIT;
        Sbx__V1__FileOp__Truncate tr = SBX__V1__FILE_OP__TRUNCATE__INIT;
        Sbx__V1__FileOp__Utime ut = SBX__V1__FILE_OP__UTIME__INIT;
        Sbx__V1__FileOp__Lock lk = SBX__V1__FILE_OP__LOCK__INIT;
        _cleanup_free_ uint8_t *bytes = NULL;
        const char *name = r->method->name;
        FileOpKind kind = OP_NULL;
        GwFile *f;
        long long v;
        int q;

        f = find(r, p);
        if (r->replied)
                return;
        if (!f || !f->opened || f->closing || !f->call) {
                gw_request_error(r, gw_error_new("BadResource", "EBADF", "Bad resource ID"));
                return;
        }
        if (streq(name, "fileRead")) {
                if (gw_param_int(p, "length", 0, INT64_MAX, &v) < 0) {
                        gw_request_bad_param(r, "length", "must be a non-negative integer");
                        return;
                }
                rd.length = (uint32_t)SBX_MIN((unsigned long long)v, (unsigned long long)READ_MAX);
                op.op_case = SBX__V1__FILE_OP__OP_READ;
                op.read = &rd;
                kind = OP_READ;
        } else if (streq(name, "fileWrite")) {
                const char *data;
                size_t n;
                if (gw_param_string(p, "data", &data) < 0 ||
                    gw_base64_decode(data, strlen(data), &bytes, &n) < 0) {
                        gw_request_bad_param(r, "data", "must be base64");
                        return;
                }
                op.op_case = SBX__V1__FILE_OP__OP_WRITE;
                op.write = (ProtobufCBinaryData){ .len = n, .data = bytes };
                kind = OP_WRITE;
        } else if (streq(name, "fileSeek")) {
                const char *s;
                long long whence;
                /* A bigint offset arrives as a decimal string. */
                if (gw_param_string(p, "offset", &s) == 0) {
                        char *end;
                        errno = 0;
                        v = strtoll(s, &end, 10);
                        if (errno || end == s || *end) {
                                gw_request_bad_param(r, "offset", "must be an integer");
                                return;
                        }
                } else if (gw_param_int(p, "offset", INT64_MIN, INT64_MAX, &v) < 0) {
                        gw_request_bad_param(r, "offset", "must be an integer");
                        return;
                }
                if (gw_param_int(p, "whence", 0, 2, &whence) < 0) {
                        gw_request_bad_param(r, "whence", "must be 0, 1 or 2");
                        return;
                }
                sk.offset = v;
                sk.whence = (uint32_t)whence;
                op.op_case = SBX__V1__FILE_OP__OP_SEEK;
                op.seek = &sk;
                kind = OP_SEEK;
        } else if (streq(name, "fileStat")) {
                op.op_case = SBX__V1__FILE_OP__OP_STAT;
                op.stat = true;
                kind = OP_STAT;
        } else if (streq(name, "fileTruncate")) {
                q = gw_param_int(p, "len", 0, INT64_MAX, &v);
                if (q < 0 && q != -ENOENT) {
                        gw_request_bad_param(r, "len", "must be a non-negative integer");
                        return;
                }
                tr.length = q == 0 ? (uint64_t)v : 0;
                op.op_case = SBX__V1__FILE_OP__OP_TRUNCATE;
                op.truncate = &tr;
        } else if (streq(name, "fileSync")) {
                op.op_case = SBX__V1__FILE_OP__OP_SYNC;
                op.sync = true;
        } else if (streq(name, "fileSyncData")) {
                op.op_case = SBX__V1__FILE_OP__OP_SYNC_DATA;
                op.sync_data = true;
        } else if (streq(name, "fileUtime")) {
                if (!param_time(r, p, "atime", &ut.atime_ns) || !param_time(r, p, "mtime", &ut.mtime_ns))
                        return;
                op.op_case = SBX__V1__FILE_OP__OP_UTIME;
                op.utime = &ut;
        } else if (streq(name, "fileLock")) {
                bool exclusive;
                if (!gw_opt_bool(r, p, "exclusive", false, &exclusive))
                        return;
                lk.exclusive = exclusive;
                op.op_case = SBX__V1__FILE_OP__OP_LOCK;
                op.lock = &lk;
        } else if (streq(name, "fileUnlock")) {
                op.op_case = SBX__V1__FILE_OP__OP_UNLOCK;
                op.unlock = true;
        } else {
                gw_request_rpc_error(r, GW_RPC_METHOD_NOT_FOUND, "Method not found: %s", name);
                return;
        }
        if (push(f, r, kind) < 0) {
                gw_request_error(r, NULL);
                return;
        }
        q = sbx_rpc_client_call_send(f->call, &op.base);
        if (q < 0) {
                Pending last;
                /* Take it back off the end of the queue. */
                f->n--;
                last = f->queue[f->head + f->n];
                gw_request_error(last.r, gw_error_new("BadResource", "EBADF", "The file handle was closed"));
        }
}

void gw_m_file_close(GwRequest *r, json_t *p)
{
        GwFile *f = find(r, p);

        if (r->replied)
                return;
        /* Closing is idempotent, as FsFile.close() is. */
        if (!f || f->closing || !f->call) {
                gw_request_ok(r, json_null());
                return;
        }
        f->closing = true;
        f->close_req = r;
        file_unmap(f);
        /* The agent closes the file when the stream ends; the answer comes with its status. */
        if (sbx_rpc_client_call_close_send(f->call) < 0) {
                f->close_req = NULL;
                gw_request_ok(r, json_null());
        }
}

void gw_session_close_files(GwSession *s)
{
        GwFileTable *t = table(s, false);

        if (!t)
                return;
        for (GwLink *l = t->all.next, *next; l != &t->all; l = next) {
                GwFile *f = container_of(l, GwFile, link);
                next = l->next;
                file_forget(f);
                /* Its requests are released by the session; the status callback frees the file. */
                f->open_req = f->close_req = NULL;
                f->head = f->n = 0;
                if (f->call)
                        sbx_rpc_client_call_cancel(f->call);
        }
        sbx_hashmap_free(t->by_id, NULL);
        free(t);
        *gw_session_files(s) = NULL;
}
