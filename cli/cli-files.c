/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx cp and sbx ls: files in a sandbox through the data plane's file calls.
 *
 * cp streams in both directions with bounded memory: an upload reads the next chunk only while
 * the WriteFile call's send queue is short (the call's drain callback resumes it), a download
 * stops reading the ReadFile stream while its bytes wait to be written locally. A download goes
 * to a temporary file next to the destination, renamed into place only once everything arrived,
 * so a failed or interrupted copy leaves the destination as it was. An upload writes the remote
 * file in place (as cp and scp do): interrupted, it leaves a partial file.
 *
 * ls is one Stat (and a ReadDir for a directory), then one Stat per entry (and a ReadLink per
 * symbolic link), at most LS_IN_FLIGHT of them at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/api/api.h"
#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "proto/sbx/v1/data.pb-c.h"

/* Upload bytes queued toward the node before we stop reading the source. */
#define UPLOAD_WINDOW (4 * CLI_CHUNK)
/* Download bytes waiting to be written locally before we stop reading the stream. */
#define DOWNLOAD_WINDOW (16 * CLI_CHUNK)
/* Concurrent Stat/ReadLink calls of ls. */
#define LS_IN_FLIGHT 32

/* ---- ID:PATH ---- */

typedef struct Location {
        /* "-": stdin or stdout. */
        bool stdio;
        /* Set for ID:PATH; `path` is then the path in the sandbox, else the local path. */
        char *id;
        const char *path;
        const char *arg;
} Location;

static void location_done(Location *l)
{
        free(l->id);
}

/*
 * "-", "ID:PATH" (ID a sandbox id, PATH absolute), or a local path. A local path with a colon in
 * it is fine unless what precedes the colon looks like a sandbox id ("sbx_…"): that is a typo
 * worth catching, and "./sbx_x:y" still names such a file.
 */
static int location_parse(Cli *cli, const char *arg, Location *ret)
{
        const char *colon = strchr(arg, ':');
        _cleanup_free_ char *id = NULL;

        *ret = (Location){ .arg = arg, .path = arg };
        if (streq(arg, "-")) {
                ret->stdio = true;
                return 0;
        }
        if (!colon)
                return 0;
        id = strndup(arg, (size_t)(colon - arg));
        if (!id)
                return cli_error("out of memory");
        if (!sbx_sandbox_id_valid(id)) {
                if (startswith(id, "sbx_"))
                        return cli_usage_error(
                                cli, "'%s' is not a sandbox id (sbx_<region>_<20 characters>)", id);
                return 0;
        }
        if (colon[1] == '\0')
                return cli_usage_error(cli, "'%s' has no path after ':' (write %s:/PATH)", arg, id);
        if (colon[1] != '/')
                return cli_usage_error(cli, "'%s': the path in the sandbox must be absolute (%s:/%s)", arg,
                                       id, colon + 1);
        ret->path = colon + 1;
        ret->id = TAKE_PTR(id);
        return 0;
}

/* The last component of a path, ignoring trailing slashes; "" for "/". */
static int path_basename(const char *path, char **ret)
{
        _cleanup_free_ char *copy = strdup(path);

        if (!copy)
                return -ENOMEM;
        char *b = basename(copy);
        *ret = strdup(streq(b, "/") || streq(b, ".") || streq(b, "..") ? "" : b);
        return *ret ? 0 : -ENOMEM;
}

static int path_join(const char *dir, const char *name, char **ret)
{
        return asprintf(ret, "%s%s%s", dir, endswith(dir, "/") ? "" : "/", name) < 0 ? -ENOMEM : 0;
}

/* ---- one streaming transfer ---- */

typedef struct Transfer {
        Cli *cli;
        SbxRpcClientCall *call;
        /* Upload: the source. Download: where the bytes go. */
        CliInput *in;
        CliOutput *out;
        int out_fd;
        uint64_t bytes;

        bool done;
        SbxRpcStatus status;
        uint64_t bytes_written;
        bool replied;
        int input_error;
        bool reading_paused;

        bool interrupted;
        uv_signal_t sigint;
        unsigned open_handles;
} Transfer;

static void transfer_on_sigint(uv_signal_t *h, int signo)
{
        Transfer *t = h->data;

        t->interrupted = true;
        if (t->call)
                sbx_rpc_client_call_cancel(t->call);
}

static void transfer_on_closed(uv_handle_t *h)
{
        Transfer *t = h->data;
        t->open_handles--;
}

static void transfer_on_stdio_closed(void *userdata)
{
        Transfer *t = userdata;
        t->open_handles--;
}

static void transfer_on_status(SbxRpcClientCall *c, const SbxRpcStatus *status, void *userdata)
{
        Transfer *t = userdata;

        t->done = true;
        t->status.code = status->code;
        t->status.message = strdup(strempty(status->message));
        cli_input_close(t->in, NULL, NULL);
        t->in = NULL;
}

static int transfer_start(Transfer *t, const SbxRpcMethod *m, const ProtobufCMessage *first,
                          const SbxRpcClientCallbacks *cbs)
{
        /* Streams have no deadline unless --timeout asks for one: a large file takes what it
         * takes. */
        SbxRpcCallOptions co = { .timeout = t->cli->timeout };
        int r;

        /* A reader of our stdout that goes away shows up as EPIPE, not as a fatal SIGPIPE. */
        signal(SIGPIPE, SIG_IGN);
        if (uv_signal_init(&t->cli->loop, &t->sigint) == 0) {
                t->sigint.data = t;
                t->open_handles++;
                (void)uv_signal_start(&t->sigint, transfer_on_sigint, SIGINT);
        }
        r = sbx_rpc_call_start(t->cli->data_channel, m, first, &co, cbs, t, &t->call);
        if (r < 0)
                return cli_cmd_error(t->cli, "cannot start the call: %s", sbx_error_message(r));
        return CLI_EXIT_OK;
}

/* Runs the loop until the call is over and its bytes are written (or cannot be). */
static void transfer_wait(Transfer *t)
{
        while (t->call && (!t->done || (t->out && cli_output_pending(t->out) > 0 &&
                                        cli_output_error(t->out, NULL) == 0)))
                uv_run(&t->cli->loop, UV_RUN_ONCE);
}

static void transfer_done(Transfer *t)
{
        if (t->sigint.data)
                uv_close((uv_handle_t *)&t->sigint, transfer_on_closed);
        if (t->in) {
                t->open_handles++;
                cli_input_close(t->in, transfer_on_stdio_closed, t);
                t->in = NULL;
        }
        if (t->out) {
                t->open_handles++;
                cli_output_close(t->out, transfer_on_stdio_closed, t);
                t->out = NULL;
        }
        while (t->open_handles > 0)
                uv_run(&t->cli->loop, UV_RUN_ONCE);
        t->call = sbx_rpc_client_call_unref(t->call);
        sbx_rpc_status_done(&t->status);
}

/* The exit status of a transfer whose call ended badly; 0 when it went well. */
static int transfer_failure(Transfer *t, const char *remote)
{
        if (t->interrupted) {
                fprintf(stderr, "sbx: interrupted\n");
                return CLI_EXIT_INTERRUPTED;
        }
        if (t->status.code != SBX_STATUS_OK)
                return cli_data_status(t->cli, &t->status, remote);
        return 0;
}

/* ---- cp: local to sandbox ---- */

static void upload_on_input(CliInput *in, const void *data, size_t n, int error, void *userdata)
{
        Transfer *t = userdata;
        Sbx__V1__WriteFileRequest req = SBX__V1__WRITE_FILE_REQUEST__INIT;

        if (t->done)
                return;
        if (n > 0) {
                req.msg_case = SBX__V1__WRITE_FILE_REQUEST__MSG_DATA;
                req.data = (ProtobufCBinaryData){ .len = n, .data = (uint8_t *)data };
                if (sbx_rpc_client_call_send(t->call, &req.base) < 0)
                        return;
                t->bytes += n;
                if (sbx_rpc_client_call_pending_bytes(t->call) >= UPLOAD_WINDOW)
                        cli_input_pause(in, true);
                return;
        }
        if (error < 0) {
                /* A short file must not pass for the whole: cancel rather than half-close. */
                t->input_error = error;
                sbx_rpc_client_call_cancel(t->call);
        } else {
                (void)sbx_rpc_client_call_close_send(t->call);
        }
        cli_input_close(t->in, NULL, NULL);
        t->in = NULL;
}

static void upload_on_drain(SbxRpcClientCall *c, void *userdata)
{
        Transfer *t = userdata;

        if (t->in)
                cli_input_pause(t->in, false);
}

static void upload_on_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        Transfer *t = userdata;

        t->bytes_written = ((const Sbx__V1__WriteFileResponse *)message)->bytes_written;
        t->replied = true;
        protobuf_c_message_free_unpacked(message, NULL);
}

/* Where an upload goes: into DST when DST is a directory (or ends in '/'), else DST itself. */
static int upload_target(Cli *cli, const Location *src, const Location *dst, char **ret)
{
        Sbx__V1__StatRequest req = SBX__V1__STAT_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        _cleanup_free_ char *base = NULL;
        SbxRpcStatus st = { 0 };
        bool dir;
        int r;

        req.sandbox_id = dst->id;
        req.path = (char *)dst->path;
        req.follow_symlinks = true;
        r = cli_data_call(cli, &sbx_api_data_stat, &req.base, &(CliCallOptions){ .ret_status = &st }, &resp);
        if (r == CLI_EXIT_OK) {
                dir = ((const Sbx__V1__FileInfo *)resp)->type == SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY;
        } else if (st.code == SBX_STATUS_NOT_FOUND && !endswith(dst->path, "/")) {
                dir = false;
        } else if (st.code == SBX_STATUS_NOT_FOUND) {
                sbx_rpc_status_done(&st);
                return cli_cmd_error(cli, "%s: no such directory in the sandbox", dst->arg);
        } else {
                if (st.code != SBX_STATUS_OK)
                        r = cli_data_status(cli, &st, dst->arg);
                sbx_rpc_status_done(&st);
                return r;
        }
        sbx_rpc_status_done(&st);
        if (!dir) {
                *ret = strdup(dst->path);
                return *ret ? CLI_EXIT_OK : cli_error("out of memory");
        }
        if (src->stdio)
                return cli_cmd_error(cli, "%s is a directory; name the file to write from stdin", dst->arg);
        if (path_basename(src->path, &base) < 0 || path_join(dst->path, base, ret) < 0)
                return cli_error("out of memory");
        return CLI_EXIT_OK;
}

static int upload(Cli *cli, const Location *src, const Location *dst)
{
        Sbx__V1__WriteFileRequest first = SBX__V1__WRITE_FILE_REQUEST__INIT;
        Sbx__V1__WriteFileHeader header = SBX__V1__WRITE_FILE_HEADER__INIT;
        SbxRpcClientCallbacks cbs = { .on_message = upload_on_message, .on_status = transfer_on_status };
        _cleanup_close_ int owned_fd = -1;
        _cleanup_free_ char *target = NULL;
        Transfer t = { .cli = cli, .out_fd = -1 };
        struct stat st;
        int fd = STDIN_FILENO, r;

        /* The source is checked before anything goes over the network. */
        if (!src->stdio) {
                owned_fd = open(src->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (owned_fd < 0)
                        return cli_cmd_error(cli, "cannot open %s: %m", src->path);
                fd = owned_fd;
        }
        if (fstat(fd, &st) < 0)
                return cli_cmd_error(cli, "cannot stat %s: %m", src->arg);
        if (S_ISDIR(st.st_mode))
                return cli_cmd_error(cli, "%s is a directory; sbx cp copies single files", src->arg);

        r = cli_data_connect(cli, dst->id);
        if (r != CLI_EXIT_OK)
                return r;
        r = upload_target(cli, src, dst, &target);
        if (r != CLI_EXIT_OK)
                return r;

        header.sandbox_id = dst->id;
        header.path = target;
        /* A new file gets the source's permissions, as cp gives them; 0 lets the node choose. */
        header.mode = S_ISREG(st.st_mode) && !src->stdio ? (uint32_t)(st.st_mode & 0777) : 0;
        first.msg_case = SBX__V1__WRITE_FILE_REQUEST__MSG_HEADER;
        first.header = &header;
        r = transfer_start(&t, &sbx_api_data_write_file, &first.base, &cbs);
        if (r == CLI_EXIT_OK) {
                sbx_rpc_client_call_on_drain(t.call, upload_on_drain, &t);
                r = cli_input_new(&cli->loop, fd, upload_on_input, &t, &t.in);
                if (r < 0) {
                        sbx_rpc_client_call_cancel(t.call);
                        transfer_wait(&t);
                        transfer_done(&t);
                        return cli_cmd_error(cli, "cannot read %s: %s", src->arg, sbx_error_message(r));
                }
                transfer_wait(&t);
                r = CLI_EXIT_OK;
        }

        if (r == CLI_EXIT_OK && t.input_error < 0)
                r = cli_cmd_error(cli, "reading %s failed: %s (%s:%s may be incomplete)", src->arg,
                                  sbx_error_message(t.input_error), dst->id, target);
        if (r == CLI_EXIT_OK)
                r = transfer_failure(&t, NULL);
        if (r == CLI_EXIT_OK && (!t.replied || t.bytes_written != t.bytes))
                r = cli_cmd_error(cli, "the node wrote %" PRIu64 " of %" PRIu64 " bytes to %s:%s",
                                  t.bytes_written, t.bytes, dst->id, target);
        if (r == CLI_EXIT_OK && cli->json) {
                Sbx__V1__WriteFileResponse reply = SBX__V1__WRITE_FILE_RESPONSE__INIT;
                reply.bytes_written = t.bytes_written;
                if (cli_json_print_message(&reply.base) < 0)
                        r = cli_error("cannot print the reply");
        }
        transfer_done(&t);
        return r;
}

/* ---- cp: sandbox to local ---- */

static void download_on_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        Transfer *t = userdata;
        const Sbx__V1__FileChunk *chunk = (const Sbx__V1__FileChunk *)message;

        if (cli_output_write(t->out, t->out_fd, chunk->data.data, chunk->data.len) == 0)
                t->bytes += chunk->data.len;
        protobuf_c_message_free_unpacked(message, NULL);
        if (!t->reading_paused && cli_output_pending(t->out) >= DOWNLOAD_WINDOW) {
                t->reading_paused = true;
                sbx_rpc_client_call_pause_reading(c, true);
        }
}

static void download_on_drain(CliOutput *o, void *userdata)
{
        Transfer *t = userdata;

        if (cli_output_error(o, NULL) < 0) {
                if (t->call && !t->done)
                        sbx_rpc_client_call_cancel(t->call);
                return;
        }
        if (t->reading_paused && t->call) {
                t->reading_paused = false;
                sbx_rpc_client_call_pause_reading(t->call, false);
        }
}

/* Where a download goes. *ret_path is the file to create or replace, *ret_mode the permissions it
 * ends with, and *ret_direct is set for an existing file that is not a regular one (/dev/null, a
 * FIFO), which is written as it is rather than replaced. */
static int download_target(Cli *cli, const Location *src, const Location *dst, uint32_t remote_mode,
                           char **ret_path, mode_t *ret_mode, bool *ret_direct)
{
        _cleanup_free_ char *path = NULL, *base = NULL;
        struct stat st;

        if (stat(dst->path, &st) == 0 && S_ISDIR(st.st_mode)) {
                if (path_basename(src->path, &base) < 0 || path_join(dst->path, base, &path) < 0)
                        return cli_error("out of memory");
                if (isempty(base))
                        return cli_cmd_error(cli, "%s names no file", src->arg);
        } else if (endswith(dst->path, "/")) {
                return cli_cmd_error(cli, "%s: no such directory", dst->path);
        } else {
                path = strdup(dst->path);
                if (!path)
                        return cli_error("out of memory");
        }

        if (stat(path, &st) == 0) {
                if (S_ISDIR(st.st_mode))
                        return cli_cmd_error(cli, "%s is a directory", path);
                *ret_direct = !S_ISREG(st.st_mode);
                /* Replacing a file keeps its permissions, as cp does. */
                *ret_mode = st.st_mode & 07777;
        } else {
                mode_t mask = umask(0);
                umask(mask);
                *ret_direct = false;
                *ret_mode = (remote_mode & 0777) & ~mask;
        }
        *ret_path = TAKE_PTR(path);
        return CLI_EXIT_OK;
}

/* Creates "<dir>/.<name>.sbx-XXXXXX" next to `path`. */
static int temp_file_open(const char *path, char **ret_temp)
{
        _cleanup_free_ char *copy_dir = strdup(path), *copy_base = strdup(path), *temp = NULL;
        int fd;

        if (!copy_dir || !copy_base)
                return -ENOMEM;
        if (asprintf(&temp, "%s/.%s.sbx-XXXXXX", dirname(copy_dir), basename(copy_base)) < 0)
                return -ENOMEM;
        fd = mkostemp(temp, O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        *ret_temp = TAKE_PTR(temp);
        return fd;
}

static int download(Cli *cli, const Location *src, const Location *dst)
{
        Sbx__V1__StatRequest sreq = SBX__V1__STAT_REQUEST__INIT;
        Sbx__V1__ReadFileRequest req = SBX__V1__READ_FILE_REQUEST__INIT;
        SbxRpcClientCallbacks cbs = { .on_message = download_on_message, .on_status = transfer_on_status };
        _cleanup_message_ ProtobufCMessage *info = NULL;
        _cleanup_free_ char *path = NULL, *temp = NULL;
        _cleanup_close_ int fd = -1;
        Transfer t = { .cli = cli };
        bool direct = false;
        mode_t mode = 0644;
        int r, output_error, output_fd = -1;

        r = cli_data_connect(cli, src->id);
        if (r != CLI_EXIT_OK)
                return r;
        sreq.sandbox_id = src->id;
        sreq.path = (char *)src->path;
        sreq.follow_symlinks = true;
        r = cli_data_call(cli, &sbx_api_data_stat, &sreq.base, NULL, &info);
        if (r != CLI_EXIT_OK)
                return r;
        const Sbx__V1__FileInfo *fi = (const Sbx__V1__FileInfo *)info;
        if (fi->type == SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY)
                return cli_cmd_error(cli, "%s is a directory; sbx cp copies single files", src->arg);

        if (dst->stdio) {
                t.out_fd = STDOUT_FILENO;
        } else {
                r = download_target(cli, src, dst, fi->mode, &path, &mode, &direct);
                if (r != CLI_EXIT_OK)
                        return r;
                fd = direct ? open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY) : temp_file_open(path, &temp);
                if (fd < 0)
                        return cli_cmd_error(cli, "cannot create a file next to %s: %s", path,
                                             sbx_error_message(direct ? negative_errno() : fd));
                t.out_fd = fd;
        }
        if (cli_output_new(&cli->loop, &t.out) < 0) {
                r = cli_error("out of memory");
                goto fail;
        }
        cli_output_on_drain(t.out, download_on_drain, &t);

        req.sandbox_id = src->id;
        req.path = (char *)src->path;
        r = transfer_start(&t, &sbx_api_data_read_file, &req.base, &cbs);
        if (r == CLI_EXIT_OK)
                transfer_wait(&t);
        output_error = cli_output_error(t.out, &output_fd);
        if (r == CLI_EXIT_OK && output_error == -EPIPE && dst->stdio)
                r = 128 + SIGPIPE;
        else if (r == CLI_EXIT_OK && output_error < 0)
                r = cli_cmd_error(cli, "cannot write %s: %s", dst->stdio ? "to stdout" : path,
                                  sbx_error_message(output_error));
        if (r == CLI_EXIT_OK)
                r = transfer_failure(&t, NULL);
        transfer_done(&t);
        if (r != CLI_EXIT_OK)
                goto fail;
        if (!temp)
                return CLI_EXIT_OK;

        /* The data is on disk before the name points at it, so a crash cannot leave an empty
         * file where the old one was. */
        if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
                r = cli_cmd_error(cli, "cannot write %s: %m", temp);
                goto fail;
        }
        if (rename(temp, path) < 0) {
                r = cli_cmd_error(cli, "cannot rename %s to %s: %m", temp, path);
                goto fail;
        }
        return CLI_EXIT_OK;

fail:
        if (temp)
                (void)unlink(temp);
        if (t.out)
                transfer_done(&t);
        return r;
}

static int cp_run(Cli *cli, int argc, char **argv)
{
        _cleanup_(location_done) Location src = { 0 }, dst = { 0 };
        int r;

        if ((r = cli_no_flags(cli, argc, argv)) < 0)
                return cli_getopt_status(r);
        if ((r = cli_check_args(cli, argc, argv, 2, 2, "SRC and DST")) != 0)
                return r;
        if ((r = location_parse(cli, argv[optind], &src)) != 0)
                return r;
        if ((r = location_parse(cli, argv[optind + 1], &dst)) != 0)
                return r;
        if (src.id && dst.id)
                return cli_usage_error(cli, "both SRC and DST are in a sandbox; copy through a local file");
        if (!src.id && !dst.id) {
                const char *bare = sbx_sandbox_id_valid(src.arg)   ? src.arg
                                   : sbx_sandbox_id_valid(dst.arg) ? dst.arg
                                                                   : NULL;
                if (bare)
                        return cli_usage_error(cli, "'%s' is a sandbox id; name a path in it: %s:/PATH",
                                               bare, bare);
                return cli_usage_error(cli, "one of SRC and DST must be in a sandbox, written ID:/PATH");
        }
        return src.id ? download(cli, &src, &dst) : upload(cli, &src, &dst);
}

/* ---- ls ---- */

typedef struct LsEntry {
        char *name;
        char *path;
        Sbx__V1__FileType type;
        /* Replies of Stat and (for symbolic links) ReadLink; NULL until they arrive. */
        ProtobufCMessage *info;
        ProtobufCMessage *link;
        Sbx__V1__StatRequest stat_req;
        Sbx__V1__PathRequest link_req;
} LsEntry;

typedef struct LsJob {
        struct Ls *ls;
        LsEntry *entry;
        bool is_link;
} LsJob;

typedef struct Ls {
        Cli *cli;
        LsEntry *entries;
        size_t n_entries;
        LsJob *jobs;
        size_t n_jobs, next, running;
        int result;
        bool interrupted;
        uv_signal_t sigint;
        bool sigint_open;
} Ls;

static void ls_start_jobs(Ls *ls);

static void ls_on_reply(const SbxRpcStatus *status, ProtobufCMessage *response, void *userdata)
{
        LsJob *j = userdata;
        Ls *ls = j->ls;

        ls->running--;
        if (status->code == SBX_STATUS_OK) {
                if (j->is_link)
                        j->entry->link = response;
                else
                        j->entry->info = response;
        } else if (status->code != SBX_STATUS_NOT_FOUND && !ls->interrupted) {
                /* NOT_FOUND: the entry went away since ReadDir; ls leaves it out, as a listing
                 * a moment later would. */
                ls->result = cli_data_status(ls->cli, status, j->entry->path);
        }
        ls_start_jobs(ls);
}

static void ls_start_jobs(Ls *ls)
{
        while (!ls->interrupted && ls->running < LS_IN_FLIGHT && ls->next < ls->n_jobs) {
                LsJob *j = &ls->jobs[ls->next++];
                const ProtobufCMessage *req =
                        j->is_link ? &j->entry->link_req.base : &j->entry->stat_req.base;
                SbxRpcCallOptions co = { .timeout =
                                                 ls->cli->timeout ? ls->cli->timeout : CLI_TIMEOUT_DEFAULT };
                int r = sbx_rpc_unary(ls->cli->data_channel,
                                      j->is_link ? &sbx_api_data_read_link : &sbx_api_data_stat, req, &co,
                                      ls_on_reply, j, NULL);
                if (r < 0) {
                        ls->result =
                                cli_cmd_error(ls->cli, "cannot start the call: %s", sbx_error_message(r));
                        ls->next = ls->n_jobs;
                        break;
                }
                ls->running++;
        }
}

static void ls_on_sigint(uv_signal_t *h, int signo)
{
        Ls *ls = h->data;

        ls->interrupted = true;
        /* The calls in flight are short; they finish (or fail) on their own. */
}

static void ls_on_closed(uv_handle_t *h)
{
        Ls *ls = h->data;
        ls->sigint_open = false;
}

/* Stats every entry (and reads every link), LS_IN_FLIGHT at a time. */
static int ls_fetch(Ls *ls)
{
        size_t n_links = 0;

        for (size_t i = 0; i < ls->n_entries; i++)
                if (ls->entries[i].type == SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK)
                        n_links++;
        ls->jobs = new0(LsJob, ls->n_entries + n_links);
        if (!ls->jobs)
                return cli_error("out of memory");
        for (size_t i = 0; i < ls->n_entries; i++) {
                ls->jobs[ls->n_jobs++] = (LsJob){ .ls = ls, .entry = &ls->entries[i] };
                if (ls->entries[i].type == SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK)
                        ls->jobs[ls->n_jobs++] =
                                (LsJob){ .ls = ls, .entry = &ls->entries[i], .is_link = true };
        }
        if (uv_signal_init(&ls->cli->loop, &ls->sigint) == 0) {
                ls->sigint.data = ls;
                ls->sigint_open = true;
                (void)uv_signal_start(&ls->sigint, ls_on_sigint, SIGINT);
        }
        ls_start_jobs(ls);
        while (ls->running > 0)
                uv_run(&ls->cli->loop, UV_RUN_ONCE);
        if (ls->sigint_open) {
                uv_close((uv_handle_t *)&ls->sigint, ls_on_closed);
                while (ls->sigint_open)
                        uv_run(&ls->cli->loop, UV_RUN_ONCE);
        }
        if (ls->interrupted) {
                fprintf(stderr, "sbx: interrupted\n");
                return CLI_EXIT_INTERRUPTED;
        }
        return ls->result;
}

static void ls_done(Ls *ls)
{
        for (size_t i = 0; i < ls->n_entries; i++) {
                free(ls->entries[i].name);
                free(ls->entries[i].path);
                if (ls->entries[i].info)
                        protobuf_c_message_free_unpacked(ls->entries[i].info, NULL);
                if (ls->entries[i].link)
                        protobuf_c_message_free_unpacked(ls->entries[i].link, NULL);
        }
        free(ls->entries);
        free(ls->jobs);
}

/* "drwxr-xr-x" from st_mode, with the file type from `type` when the mode lacks it. */
static void format_mode(uint32_t mode, Sbx__V1__FileType type, char buf[11])
{
        static const char rwx[] = "rwxrwxrwx";
        char c;

        switch (mode & S_IFMT) {
        case S_IFDIR:
                c = 'd';
                break;
        case S_IFLNK:
                c = 'l';
                break;
        case S_IFBLK:
                c = 'b';
                break;
        case S_IFCHR:
                c = 'c';
                break;
        case S_IFIFO:
                c = 'p';
                break;
        case S_IFSOCK:
                c = 's';
                break;
        case S_IFREG:
                c = '-';
                break;
        default:
                c = type == SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY ? 'd'
                    : type == SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK ? 'l'
                    : type == SBX__V1__FILE_TYPE__FILE_TYPE_REGULAR ? '-'
                                                                    : '?';
        }
        buf[0] = c;
        for (int i = 0; i < 9; i++)
                buf[1 + i] = mode & (1u << (8 - i)) ? rwx[i] : '-';
        if (mode & S_ISUID)
                buf[3] = buf[3] == 'x' ? 's' : 'S';
        if (mode & S_ISGID)
                buf[6] = buf[6] == 'x' ? 's' : 'S';
        if (mode & S_ISVTX)
                buf[9] = buf[9] == 'x' ? 't' : 'T';
        buf[10] = '\0';
}

static int digits(uint64_t v)
{
        int n = 1;
        while (v >= 10) {
                v /= 10;
                n++;
        }
        return n;
}

static int ls_print_text(const Ls *ls)
{
        int w_links = 1, w_uid = 1, w_gid = 1, w_size = 1;

        for (size_t i = 0; i < ls->n_entries; i++) {
                const Sbx__V1__FileInfo *fi = (const Sbx__V1__FileInfo *)ls->entries[i].info;
                if (!fi)
                        continue;
                w_links = SBX_MAX(w_links, digits(fi->nlink));
                w_uid = SBX_MAX(w_uid, digits(fi->uid));
                w_gid = SBX_MAX(w_gid, digits(fi->gid));
                w_size = SBX_MAX(w_size, digits(fi->size));
        }
        for (size_t i = 0; i < ls->n_entries; i++) {
                const LsEntry *e = &ls->entries[i];
                const Sbx__V1__FileInfo *fi = (const Sbx__V1__FileInfo *)e->info;
                const Sbx__V1__PathResponse *link = (const Sbx__V1__PathResponse *)e->link;
                char mode[11], t[CLI_TIME_MAX];

                if (!fi)
                        continue;
                format_mode(fi->mode, fi->type, mode);
                printf("%s %*" PRIu64 " %*" PRIu32 " %*" PRIu32 " %*" PRIu64 " %s %s%s%s\n", mode, w_links,
                       fi->nlink, w_uid, fi->uid, w_gid, fi->gid, w_size, fi->size,
                       cli_format_time(t, sizeof(t), fi->mtime_ns / 1000000), e->name, link ? " -> " : "",
                       link ? link->path : "");
        }
        return 0;
}

static int ls_print_json(const Ls *ls)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < ls->n_entries; i++) {
                const LsEntry *e = &ls->entries[i];
                json_t *o, *info;

                if (!e->info)
                        continue;
                o = json_object();
                info = cli_json_from_message(e->info);
                if (!o || !info || json_object_set_new(o, "name", json_string(e->name)) < 0 ||
                    (e->link &&
                     json_object_set_new(o, "link_target",
                                         json_string(((const Sbx__V1__PathResponse *)e->link)->path)) < 0) ||
                    json_object_update(o, info) < 0 || json_array_append_new(a, o) < 0) {
                        json_decref(o);
                        json_decref(a);
                        a = NULL;
                }
                json_decref(info);
        }
        return cli_json_print(a);
}

static int entry_compare(const void *a, const void *b)
{
        return strcmp(((const LsEntry *)a)->name, ((const LsEntry *)b)->name);
}

static int ls_add(Ls *ls, const char *sandbox_id, const char *dir, const char *name, Sbx__V1__FileType type)
{
        LsEntry *e = &ls->entries[ls->n_entries];

        *e = (LsEntry){ .type = type };
        e->name = strdup(name);
        if (!e->name || (dir ? path_join(dir, name, &e->path) < 0 : !(e->path = strdup(name)))) {
                free(e->name);
                return -ENOMEM;
        }
        sbx__v1__stat_request__init(&e->stat_req);
        e->stat_req.sandbox_id = (char *)sandbox_id;
        e->stat_req.path = e->path;
        /* Entries are described as they are, links included; ls -l does the same. */
        e->stat_req.follow_symlinks = false;
        sbx__v1__path_request__init(&e->link_req);
        e->link_req.sandbox_id = (char *)sandbox_id;
        e->link_req.path = e->path;
        ls->n_entries++;
        return 0;
}

static int ls_run(Cli *cli, int argc, char **argv)
{
        _cleanup_(location_done) Location loc = { 0 };
        _cleanup_message_ ProtobufCMessage *top = NULL, *dir = NULL;
        Sbx__V1__StatRequest sreq = SBX__V1__STAT_REQUEST__INIT;
        Sbx__V1__PathRequest dreq = SBX__V1__PATH_REQUEST__INIT;
        Ls ls = { .cli = cli };
        int r;

        if ((r = cli_no_flags(cli, argc, argv)) < 0)
                return cli_getopt_status(r);
        if ((r = cli_check_args(cli, argc, argv, 1, 1, "ID:PATH")) != 0)
                return r;
        if ((r = location_parse(cli, argv[optind], &loc)) != 0)
                return r;
        if (!loc.id) {
                if (sbx_sandbox_id_valid(loc.arg))
                        return cli_usage_error(cli, "name a path in the sandbox: %s:/PATH", loc.arg);
                return cli_usage_error(cli, "'%s' is not ID:/PATH", loc.arg);
        }

        r = cli_data_connect(cli, loc.id);
        if (r != CLI_EXIT_OK)
                return r;
        sreq.sandbox_id = loc.id;
        sreq.path = (char *)loc.path;
        sreq.follow_symlinks = true;
        r = cli_data_call(cli, &sbx_api_data_stat, &sreq.base, NULL, &top);
        if (r != CLI_EXIT_OK)
                return r;
        const Sbx__V1__FileInfo *fi = (const Sbx__V1__FileInfo *)top;

        if (fi->type != SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY) {
                /* One file: its own Stat already says everything. */
                ls.entries = new0(LsEntry, 1);
                if (!ls.entries || ls_add(&ls, loc.id, NULL, loc.path, fi->type) < 0) {
                        free(ls.entries);
                        return cli_error("out of memory");
                }
                ls.entries[0].info = TAKE_PTR(top);
        } else {
                dreq.sandbox_id = loc.id;
                dreq.path = (char *)loc.path;
                r = cli_data_call(cli, &sbx_api_data_read_dir, &dreq.base, NULL, &dir);
                if (r != CLI_EXIT_OK)
                        return r;
                const Sbx__V1__ReadDirResponse *d = (const Sbx__V1__ReadDirResponse *)dir;
                ls.entries = new0(LsEntry, d->n_entries + 1);
                if (!ls.entries)
                        return cli_error("out of memory");
                for (size_t i = 0; i < d->n_entries; i++)
                        if (ls_add(&ls, loc.id, loc.path, d->entries[i]->name, d->entries[i]->type) < 0) {
                                ls_done(&ls);
                                return cli_error("out of memory");
                        }
                /* Before ls_fetch(), whose jobs point at the entries where they then are. */
                qsort_safe(ls.entries, ls.n_entries, sizeof(LsEntry), entry_compare);
                r = ls_fetch(&ls);
                if (r == CLI_EXIT_INTERRUPTED) {
                        ls_done(&ls);
                        return r;
                }
        }

        int pr = cli->json ? ls_print_json(&ls) : ls_print_text(&ls);
        ls_done(&ls);
        if (pr < 0)
                return cli_error("cannot print the listing: %s", sbx_error_message(pr));
        return r;
}

const CliCommand cli_file_commands[] = {
        {
                .name = "cp",
                .synopsis = "SRC DST",
                .summary = "Copy a file into or out of a sandbox",
                .help = "One of SRC and DST is a path in a sandbox, written ID:/PATH (absolute); the\n"
                        "other is a local path, or '-' for stdin or stdout. When DST is a directory,\n"
                        "the file keeps its name in it. Only single files are copied.\n"
                        "\n"
                        "A copy out of a sandbox goes to a temporary file next to DST, renamed over\n"
                        "DST at the end: a failed copy leaves DST as it was. A copy into a sandbox\n"
                        "writes the file in place; a new file gets the source's permissions.\n"
                        "--json prints the node's reply to an upload ({\"bytes_written\": N}).\n",
                .run = cp_run,
        },
        {
                .name = "ls",
                .synopsis = "ID:PATH",
                .summary = "List a directory (or show a file) in a sandbox",
                .help = "Prints one line per entry, sorted by name, like ls -ln: mode, links, uid, gid,\n"
                        "size, modification time (UTC), name (and a symbolic link's target). Hidden\n"
                        "entries are included. --json prints an array of objects: name, link_target\n"
                        "for links, and every field of the entry's FileInfo.\n",
                .run = ls_run,
        },
};
const size_t cli_file_n_commands = ELEMENTSOF(cli_file_commands);
