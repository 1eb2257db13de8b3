/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sandbox.fetch() (deno-sandbox-protocol.md §2.8 method 48): an HTTP request made from inside the
 * sandbox, so that it leaves through the sandbox's network and its egress rules. sbx has no HTTP
 * client in the guest agent, so the gateway runs curl in the sandbox (the image carries it) through
 * Exec: the request body goes to curl's stdin, the response body comes back on stdout and is
 * streamed to the client as it arrives, and curl's --write-out reports the status and the headers
 * (as JSON, on stderr) when the transfer is over. The result therefore arrives after the body
 * chunks, which the SDK accepts (a stream's start and chunks may precede the reply naming it).
 *
 * Differences from a runtime's fetch: the status text comes from a table (curl does not report
 * it), response bodies are decompressed by curl (--compressed), and fetch to a Deno process (the
 * `pid` parameter) is not supported.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/api/api.h"
#include "common/base/buffer.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "gateway/gw-errors.h"
#include "gateway/gw-jsonrpc.h"
#include "gateway/gw.h"

/* curl's report: two JSON documents on stderr, the transfer's and the headers'. */
#define WRITE_OUT   "%{stderr}%{json}\n%{header_json}\n"
#define STDERR_MAX  (1u * 1024 * 1024)
#define HEADERS_MAX 256
#define ARGS_MAX    (2 * HEADERS_MAX + 32)
#define BODY_CHUNK  (1u * 1024 * 1024)

typedef struct FetchJob {
        GwTask task;
        GwSession *s;
        GwRequest *r;
        SbxRpcClientCall *call;
        uint64_t body_id;
        GwOutStream *body;
        bool body_cancelled;
        SbxBuffer report;
        bool has_request_body;
        uint64_t request_body_id;
        bool request_body_bound;
        bool exited;
        int exit_code;
        bool aborted;
        bool paused;
} FetchJob;

static void drained(GwSession *s, void *userdata);

static void job_free(FetchJob *j)
{
        gw_session_cancel_drain(j->s, drained, j);
        if (j->request_body_bound)
                gw_in_stream_cancel(j->s, j->request_body_id);
        sbx_buffer_done(&j->report);
        gw_session_unref(j->s);
        free(j);
}

static const char *status_text(long code)
{
        static const struct {
                long code;
                const char *text;
        } texts[] = {
                { 200, "OK" },
                { 201, "Created" },
                { 202, "Accepted" },
                { 203, "Non-Authoritative Information" },
                { 204, "No Content" },
                { 205, "Reset Content" },
                { 206, "Partial Content" },
                { 300, "Multiple Choices" },
                { 301, "Moved Permanently" },
                { 302, "Found" },
                { 303, "See Other" },
                { 304, "Not Modified" },
                { 307, "Temporary Redirect" },
                { 308, "Permanent Redirect" },
                { 400, "Bad Request" },
                { 401, "Unauthorized" },
                { 402, "Payment Required" },
                { 403, "Forbidden" },
                { 404, "Not Found" },
                { 405, "Method Not Allowed" },
                { 406, "Not Acceptable" },
                { 408, "Request Timeout" },
                { 409, "Conflict" },
                { 410, "Gone" },
                { 411, "Length Required" },
                { 412, "Precondition Failed" },
                { 413, "Payload Too Large" },
                { 414, "URI Too Long" },
                { 415, "Unsupported Media Type" },
                { 416, "Range Not Satisfiable" },
                { 418, "I'm a Teapot" },
                { 422, "Unprocessable Entity" },
                { 425, "Too Early" },
                { 426, "Upgrade Required" },
                { 429, "Too Many Requests" },
                { 431, "Request Header Fields Too Large" },
                { 451, "Unavailable For Legal Reasons" },
                { 500, "Internal Server Error" },
                { 501, "Not Implemented" },
                { 502, "Bad Gateway" },
                { 503, "Service Unavailable" },
                { 504, "Gateway Timeout" },
                { 505, "HTTP Version Not Supported" },
        };
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                if (texts[i].code == code)
                        return texts[i].text;
        return "";
}

/* Status and headers from curl's report; -EBADMSG when it is not there. */
static int parse_report(FetchJob *j, long *ret_code, json_t **ret_headers, char **ret_error)
{
        const char *p = (const char *)sbx_buffer_data(&j->report);
        size_t n = sbx_buffer_size(&j->report);
        json_error_t err;
        json_t *info, *hdrs, *pairs;
        const char *name;
        json_t *values;

        *ret_error = NULL;
        info = json_loadb(p, n, JSON_DISABLE_EOF_CHECK, &err);
        if (!json_is_object(info)) {
                json_decref(info);
                return -EBADMSG;
        }
        *ret_code = (long)json_integer_value(json_object_get(info, "http_code"));
        if (!*ret_code)
                *ret_code = (long)json_integer_value(json_object_get(info, "response_code"));
        const char *msg = json_string_value(json_object_get(info, "errormsg"));
        if (!isempty(msg))
                *ret_error = strdup(msg);
        json_decref(info);

        pairs = json_array();
        if (!pairs)
                return -ENOMEM;
        if ((size_t)err.position < n) {
                hdrs = json_loadb(p + err.position, n - (size_t)err.position, JSON_DISABLE_EOF_CHECK, &err);
                json_object_foreach(hdrs, name, values)
                {
                        size_t i;
                        json_t *v;
                        json_array_foreach(values, i,
                                           v) if (json_is_string(v) && json_array_size(pairs) < HEADERS_MAX)
                                json_array_append_new(pairs, json_pack("[s, O]", name, v));
                }
                json_decref(hdrs);
        }
        *ret_headers = pairs;
        return 0;
}

static void finish(FetchJob *j)
{
        _cleanup_free_ char *error = NULL;
        json_t *headers = NULL;
        long code = 0;
        int q;

        q = parse_report(j, &code, &headers, &error);
        if (j->r) {
                if (q < 0 || code < 200 || code > 599) {
                        /* No response at all: what a runtime's fetch rejects with. */
                        gw_request_error(j->r, gw_error_new("TypeError", NULL, "fetch failed: %s",
                                                            error ? error
                                                            : j->exit_code == 127
                                                                    ? "curl is missing in the sandbox image"
                                                                    : "no response"));
                        json_decref(headers);
                        j->r = NULL;
                        if (j->body) {
                                gw_out_stream_end(j->body, gw_error_new("TypeError", NULL, "fetch failed"));
                                j->body = NULL;
                        }
                        return;
                }
                /* A null body is required for these statuses, and any other needs a stream. */
                bool null_body = code == 204 || code == 205 || code == 304;
                if (!null_body && !j->body)
                        j->body = gw_out_stream_new(j->s, j->body_id, NULL, NULL);
                gw_request_ok(j->r,
                              json_pack("{s:i, s:s, s:o, s:o}", "status", (int)code, "statusText",
                                        status_text(code), "headers", headers, "bodyStreamId",
                                        null_body ? json_null() : json_integer((json_int_t)j->body_id)));
                j->r = NULL;
        } else
                json_decref(headers);
        if (j->body) {
                if (j->exit_code != 0)
                        gw_out_stream_end(j->body, gw_error_new("TypeError", NULL,
                                                                "error reading the response body: %s",
                                                                error ? error : "curl failed"));
                else
                        gw_out_stream_end(j->body, NULL);
                j->body = NULL;
        }
}

static void drained(GwSession *s, void *userdata)
{
        FetchJob *j = userdata;

        if (j->paused && j->call) {
                j->paused = false;
                sbx_rpc_client_call_pause_reading(j->call, false);
        }
}

static void on_body_cancel(void *userdata)
{
        FetchJob *j = userdata;
        j->body_cancelled = true;
        if (j->call)
                sbx_rpc_client_call_cancel(j->call);
}

static void exec_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        FetchJob *j = userdata;
        const Sbx__V1__ExecResponse *resp = (const Sbx__V1__ExecResponse *)message;

        switch (resp->msg_case) {
        case SBX__V1__EXEC_RESPONSE__MSG_STDOUT:
                if (resp->stdout.len == 0 || j->body_cancelled)
                        break;
                if (!j->body)
                        j->body = gw_out_stream_new(j->s, j->body_id, on_body_cancel, j);
                gw_out_stream_write(j->body, resp->stdout.data, resp->stdout.len);
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_STDERR:
                (void)sbx_buffer_append(&j->report, resp->stderr.data, resp->stderr.len);
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_EXIT:
                j->exited = true;
                j->exit_code = resp->exit ? resp->exit->code : -1;
                break;
        default:
                break;
        }
        protobuf_c_message_free_unpacked(message, NULL);
        if (!j->paused && j->call && gw_session_queued(j->s) > GW_SEND_HIGH) {
                j->paused = true;
                sbx_rpc_client_call_pause_reading(j->call, true);
                gw_session_on_drain(j->s, drained, j);
        }
}

static void exec_status(SbxRpcClientCall *c, const SbxRpcStatus *st, void *userdata)
{
        FetchJob *j = userdata;

        j->call = sbx_rpc_client_call_unref(j->call);
        gw_session_remove_task(j->s, &j->task);
        if (!gw_session_open(j->s) || j->aborted) {
                if (j->body)
                        gw_out_stream_end(j->body, gw_error_abort());
                j->body = NULL;
        } else if (j->exited)
                finish(j);
        else {
                if (j->r)
                        gw_request_status(j->r, st);
                j->r = NULL;
                if (j->body)
                        gw_out_stream_end(j->body, gw_error_from_status(st->code, st->message));
                j->body = NULL;
        }
        if (j->r) {
                /* Not answered (finish() answers): only possible when memory ran out. */
                gw_request_error(j->r, NULL);
        }
        job_free(j);
}

static void on_task_cancel(GwTask *t)
{
        FetchJob *j = container_of(t, FetchJob, task);
        /* The session releases the request and the streams itself. */
        j->body = NULL;
        j->r = NULL;
        if (j->call)
                sbx_rpc_client_call_cancel(j->call);
}

static void on_abort(GwRequest *r)
{
        FetchJob *j = r->data;

        /* The request is answered with AbortError by the caller; the body stream too, at the end. */
        j->aborted = true;
        j->r = NULL;
        r->data = NULL;
        if (j->call)
                sbx_rpc_client_call_cancel(j->call);
}

static void request_body_data(void *userdata, const uint8_t *data, size_t n)
{
        FetchJob *j = userdata;
        Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;

        if (!j->call)
                return;
        req.msg_case = SBX__V1__EXEC_REQUEST__MSG_STDIN;
        while (n > 0) {
                size_t k = SBX_MIN(n, (size_t)BODY_CHUNK);
                req.stdin = (ProtobufCBinaryData){ .len = k, .data = (uint8_t *)data };
                if (sbx_rpc_client_call_send(j->call, &req.base) < 0)
                        return;
                data += k;
                n -= k;
        }
}

static void request_body_end(void *userdata, json_t *error)
{
        FetchJob *j = userdata;
        Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;

        j->request_body_bound = false;
        if (!j->call)
                return;
        if (error) {
                /* The body failed: so does the request. */
                sbx_rpc_client_call_cancel(j->call);
                return;
        }
        req.msg_case = SBX__V1__EXEC_REQUEST__MSG_STDIN_CLOSE;
        req.stdin_close = true;
        (void)sbx_rpc_client_call_send(j->call, &req.base);
}

static const GwInStreamOps request_body_ops = { .on_data = request_body_data, .on_end = request_body_end };

static bool header_ok(const char *s)
{
        for (; *s; s++)
                if (*s == '\r' || *s == '\n')
                        return false;
        return true;
}

void gw_m_fetch(GwRequest *r, json_t *p)
{
        Sbx__V1__ExecRequest first = SBX__V1__EXEC_REQUEST__INIT;
        Sbx__V1__ExecStart st = SBX__V1__EXEC_START__INIT;
        SbxRpcClientCallbacks cbs = { .on_message = exec_message, .on_status = exec_status };
        _cleanup_strv_free_ char **args = NULL;
        const char *url, *method = "GET", *redirect = "follow";
        long long body_id = -1, pid;
        json_t *headers = NULL, *h;
        FetchJob *j;
        size_t i;
        int q;

        q = gw_param_int(p, "bodyStreamId", 0, 1LL << 53, &body_id);
        if (gw_param_int(p, "pid", 0, UINT32_MAX, &pid) == 0) {
                if (q == 0)
                        gw_in_stream_cancel(r->s, (uint64_t)body_id);
                gw_request_error(
                        r, gw_error_not_supported("fetch to a Deno process",
                                                  "the sandbox image does not carry the Deno runtime"));
                return;
        }
        if (!gw_need_string(r, p, "url", &url) || gw_param_string(p, "method", &method) == -EINVAL ||
            gw_param_string(p, "redirect", &redirect) == -EINVAL ||
            (gw_param_array(p, "headers", &headers) == -EINVAL)) {
                if (!r->replied)
                        gw_request_bad_param(r, "url/method/redirect/headers", "have the wrong type");
                goto refuse_body;
        }
        if (!startswith(url, "http://") && !startswith(url, "https://")) {
                gw_request_error(r, gw_error_new("TypeError", NULL,
                                                 "fetch failed: only http and https URLs are supported"));
                goto refuse_body;
        }
        if (!header_ok(method) || strlen(method) > 32 || strchr(method, ' ')) {
                gw_request_error(r,
                                 gw_error_new("TypeError", NULL, "'%s' is not a valid HTTP method", method));
                goto refuse_body;
        }
        if (gw_request_take_abort_id(r, p) < 0) {
                gw_request_bad_param(r, "abortId", "must be an integer");
                goto refuse_body;
        }

        /* curl, quietly; only http(s), also after redirects; no URL globbing ([] and {} are literal). */
        if (strv_extend(&args, "--silent") < 0 || strv_extend(&args, "--globoff") < 0 ||
            strv_extend(&args, "--proto") < 0 || strv_extend(&args, "=http,https") < 0 ||
            strv_extend(&args, "--proto-redir") < 0 || strv_extend(&args, "=http,https") < 0 ||
            strv_extend(&args, "--compressed") < 0 || strv_extend(&args, "--no-buffer") < 0 ||
            strv_extend(&args, "--request") < 0 || strv_extend(&args, method) < 0 ||
            strv_extend(&args, "--write-out") < 0 || strv_extend(&args, WRITE_OUT) < 0 ||
            strv_extend(&args, "--header") < 0 || strv_extend(&args, "Expect:") < 0)
                goto oom;
        if (streq(redirect, "follow") &&
            (strv_extend(&args, "--location") < 0 || strv_extend(&args, "--max-redirs") < 0 ||
             strv_extend(&args, "20") < 0))
                goto oom;
        json_array_foreach(headers, i, h)
        {
                const char *name = json_string_value(json_array_get(h, 0)),
                           *value = json_string_value(json_array_get(h, 1));
                _cleanup_free_ char *line = NULL;
                if (!name || !value || !header_ok(name) || !header_ok(value) || !*name ||
                    strchr(name, ':') || i >= HEADERS_MAX) {
                        gw_request_bad_param(r, "headers", "must be [name, value] pairs of header text");
                        goto refuse_body;
                }
                /* curl frames the body and negotiates compression itself. */
                if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0 ||
                    strcasecmp(name, "accept-encoding") == 0 || strcasecmp(name, "host") == 0 ||
                    strcasecmp(name, "connection") == 0)
                        continue;
                if (asprintf(&line, "%s: %s", name, value) < 0 || strv_extend(&args, "--header") < 0 ||
                    strv_extend(&args, line) < 0)
                        goto oom;
        }
        if (q == 0 && (strv_extend(&args, "--data-binary") < 0 || strv_extend(&args, "@-") < 0))
                goto oom;
        if (strv_extend(&args, "--url") < 0 || strv_extend(&args, url) < 0)
                goto oom;

        j = new0(FetchJob, 1);
        if (!j)
                goto oom;
        j->s = gw_session_ref(r->s);
        j->r = r;
        j->task.cancel = on_task_cancel;
        j->body_id = gw_session_new_stream_id(r->s);
        sbx_buffer_set_limit(&j->report, STDERR_MAX);
        r->data = j;
        r->on_abort = on_abort;

        st.sandbox_id = (char *)gw_session_sandbox_id(r->s);
        st.command = (char *)"curl";
        st.args = args;
        st.n_args = strv_length(args);
        st.stdin = q == 0;
        st.stdout = true;
        st.stderr = true;
        first.msg_case = SBX__V1__EXEC_REQUEST__MSG_START;
        first.start = &st;
        q = sbx_rpc_call_start(gw_session_channel(r->s), &sbx_api_data_exec, &first.base,
                               gw_data_call_options(), &cbs, j, &j->call);
        if (q < 0) {
                r->data = NULL;
                r->on_abort = NULL;
                job_free(j);
                gw_request_error(r, gw_error_new("TypeError", NULL,
                                                 "fetch failed: cannot reach the sandbox: %s",
                                                 sbx_error_message(q)));
                goto refuse_body;
        }
        gw_session_add_task(r->s, &j->task);
        if (body_id >= 0) {
                j->has_request_body = true;
                j->request_body_id = (uint64_t)body_id;
                j->request_body_bound = true;
                if (gw_in_stream_bind(r->s, j->request_body_id, &request_body_ops, j) < 0) {
                        j->request_body_bound = false;
                        sbx_rpc_client_call_cancel(j->call);
                }
        }
        return;

oom:
        gw_request_error(r, NULL);
refuse_body:
        if (body_id >= 0)
                gw_in_stream_cancel(r->s, (uint64_t)body_id);
}
