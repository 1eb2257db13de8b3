/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connection to the scheduler: endpoint, TLS and token from the flags and the environment,
 * unary calls run to completion on a private loop, and the one way errors are printed. Also the
 * connection to a sandbox's data plane, which the scheduler names and authorizes (Get with an
 * access token) and which uses the scheduler connection's TLS settings.
 *
 * Every call is asynchronous underneath (sbx_rpc_unary) so that the loop stays free for a
 * progress timer and for SIGINT, which cancels the call rather than killing the process: the
 * scheduler then knows the caller gave up (a cancelled Create stops its sandbox) and the terminal
 * is left tidy.
 */
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/api/api.h"
#include "common/base/string-util.h"
#include "common/loop/loop.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"

#define DEFAULT_ENDPOINT "127.0.0.1:7070"
/* How often the progress line is redrawn. */
#define PROGRESS_INTERVAL_MS 200

int cli_error(const char *fmt, ...)
{
        int saved = errno;
        va_list ap;

        fputs("sbx: ", stderr);
        errno = saved;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return CLI_EXIT_FAILURE;
}

int cli_cmd_error(Cli *cli, const char *fmt, ...)
{
        int saved = errno;
        va_list ap;

        fprintf(stderr, "sbx: %s%s", cli->cmd ? cli->cmd->name : "", cli->cmd ? ": " : "");
        errno = saved;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return CLI_EXIT_FAILURE;
}

static const char *env(const char *name)
{
        const char *v = getenv(name);
        return isempty(v) ? NULL : v;
}

/* Tokens must not cross a network in the clear; loopback and unix sockets are fine. */
static bool is_local(const char *target)
{
        static const char *const local[] = { "127.",  "localhost:", "[::1]:",
                                             "unix:", "ipv4:127.",  "ipv6:[::1]" };
        for (size_t i = 0; i < ELEMENTSOF(local); i++)
                if (startswith(target, local[i]))
                        return true;
        return streq(target, "localhost");
}

static const char *pick_token(const Cli *cli)
{
        if (cli->token)
                return cli->token;
        if (cli->cmd && cli->cmd->admin && env("SBX_ADMIN_TOKEN"))
                return env("SBX_ADMIN_TOKEN");
        return env("SBX_TOKEN");
}

/* The TLS settings of both connections; *ret_use_tls is false for plaintext. Only the name the
 * server certificate must carry differs: the scheduler's and the nodes' are separate overrides. */
static void tls_from_env(const char *server_name_var, SbxRpcTls *ret, bool *ret_use_tls)
{
        *ret = (SbxRpcTls){
                .ca_file = env("SBX_CA"),
                .cert_file = env("SBX_CERT"),
                .key_file = env("SBX_KEY"),
                .server_name = env(server_name_var),
        };
        *ret_use_tls = ret->ca_file || ret->cert_file || ret->key_file;
}

static int connect_channel(Cli *cli)
{
        const char *token = pick_token(cli);
        SbxRpcTls tls;
        bool use_tls;
        int r;

        tls_from_env("SBX_SERVER_NAME", &tls, &use_tls);
        SbxRpcChannelOptions o = { .tls = use_tls ? &tls : NULL, .bearer_token = token };

        cli->target = cli->endpoint         ? cli->endpoint
                      : env("SBX_ENDPOINT") ? env("SBX_ENDPOINT")
                                            : DEFAULT_ENDPOINT;
        if (!token) {
                fprintf(stderr, "sbx: no token: set %s or pass --token\n",
                        cli->cmd && cli->cmd->admin ? "SBX_ADMIN_TOKEN (or SBX_TOKEN)" : "SBX_TOKEN");
                return CLI_EXIT_USAGE;
        }
        if (!!tls.cert_file != !!tls.key_file) {
                fprintf(stderr, "sbx: SBX_CERT and SBX_KEY must be set together\n");
                return CLI_EXIT_USAGE;
        }
        if (!use_tls && !is_local(cli->target))
                fprintf(stderr, "sbx: warning: sending the token to %s without TLS; set SBX_CA to use TLS\n",
                        cli->target);

        r = uv_loop_init(&cli->loop);
        if (r < 0)
                return cli_error("cannot create an event loop: %s", uv_strerror(r));
        cli->loop_ready = true;
        r = sbx_rpc_new(&cli->loop, &cli->rpc);
        if (r < 0)
                return cli_error("cannot start gRPC: %s", sbx_error_message(r));
        r = sbx_rpc_channel_new(cli->rpc, cli->target, &o, &cli->channel);
        if (r < 0 && use_tls)
                return cli_error("cannot set up TLS from SBX_CA=%s SBX_CERT=%s SBX_KEY=%s: %s",
                                 strempty(tls.ca_file), strempty(tls.cert_file), strempty(tls.key_file),
                                 sbx_error_message(r));
        if (r < 0)
                return cli_error("cannot connect to %s: %s", cli->target, sbx_error_message(r));
        return CLI_EXIT_OK;
}

static void on_rpc_down(void *userdata)
{
        *(bool *)userdata = true;
}

void cli_disconnect(Cli *cli)
{
        bool down = false;

        cli->data_channel = sbx_rpc_channel_free(cli->data_channel);
        free(cli->data_target);
        cli->data_target = NULL;
        cli->channel = sbx_rpc_channel_free(cli->channel);
        if (cli->rpc) {
                sbx_rpc_shutdown(cli->rpc, 0, on_rpc_down, &down);
                while (!down)
                        uv_run(&cli->loop, UV_RUN_ONCE);
                cli->rpc = NULL;
        }
        if (cli->loop_ready) {
                sbx_loop_close_all(&cli->loop);
                cli->loop_ready = false;
        }
}

/* ---- calls ---- */

typedef struct Call {
        const CliCallOptions *opts;
        bool done;
        bool interrupted;
        SbxRpcStatus status;
        ProtobufCMessage *response;
        SbxRpcClientCall *call;
        usec_t started;
        bool progress_shown;
        bool timer_active;
        bool sigint_active;
        unsigned open_handles;
        uv_timer_t timer;
        uv_signal_t sigint;
} Call;

static void on_reply(const SbxRpcStatus *status, ProtobufCMessage *response, void *userdata)
{
        Call *c = userdata;

        c->done = true;
        c->status.code = status->code;
        c->status.message = strdup(strempty(status->message));
        c->response = response;
}

static void draw_progress(Call *c)
{
        double s = (double)(sbx_now_monotonic() - c->started) / (double)USEC_PER_SEC;
        /* Carriage return and erase-line keep it one line however often it is redrawn. */
        fprintf(stderr, "\r\033[K%s\u2026 %.1fs", c->opts->progress, s);
        fflush(stderr);
        c->progress_shown = true;
}

static void on_progress(uv_timer_t *t)
{
        draw_progress(t->data);
}

static void on_sigint(uv_signal_t *s, int signo)
{
        Call *c = s->data;

        c->interrupted = true;
        if (c->call)
                sbx_rpc_client_call_cancel(c->call);
}

static void on_handle_closed(uv_handle_t *h)
{
        Call *c = h->data;
        c->open_handles--;
}

static void start_handles(Cli *cli, Call *c)
{
        if (uv_signal_init(&cli->loop, &c->sigint) == 0) {
                c->sigint.data = c;
                c->open_handles++;
                c->sigint_active = true;
                uv_signal_start(&c->sigint, on_sigint, SIGINT);
        }
        if (c->opts->progress && isatty(STDERR_FILENO) && uv_timer_init(&cli->loop, &c->timer) == 0) {
                c->timer.data = c;
                c->open_handles++;
                c->timer_active = true;
                uv_timer_start(&c->timer, on_progress, PROGRESS_INTERVAL_MS, PROGRESS_INTERVAL_MS);
        }
}

/* The handles live in the caller's frame: run the loop until libuv has let go of them. */
static void stop_handles(Cli *cli, Call *c)
{
        if (c->timer_active)
                uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        if (c->sigint_active)
                uv_close((uv_handle_t *)&c->sigint, on_handle_closed);
        while (c->open_handles > 0)
                uv_run(&cli->loop, UV_RUN_ONCE);
        if (c->progress_shown) {
                fputs("\r\033[K", stderr);
                fflush(stderr);
        }
}

/* Scheduler errors read "sbx: <STATUS>: <message>"; data-plane errors name the command, as they
 * come from a different server: "sbx: cp: NOT_FOUND: …". */
static int print_status(Cli *cli, const SbxRpcStatus *s, usec_t timeout, bool data, const char *what)
{
        const char *message =
                isempty(s->message) ? sbx_error_message(sbx_error_from_status(s->code)) : s->message;
        const char *target = data ? cli->data_target : cli->target;
        char d[SBX_DURATION_MAX];

        fputs("sbx: ", stderr);
        if (data && cli->cmd)
                fprintf(stderr, "%s: ", cli->cmd->name);
        if (!isempty(what))
                fprintf(stderr, "%s: ", what);
        fprintf(stderr, "%s: %s", sbx_status_name(s->code), message);
        /* Connection trouble names the endpoint (the usual cause is a wrong one); a passed deadline
         * names the flag that moves it. */
        if (s->code == SBX_STATUS_UNAVAILABLE)
                fprintf(stderr, " (%s %s)", data ? "node" : "endpoint", strempty(target));
        else if (s->code == SBX_STATUS_DEADLINE_EXCEEDED && timeout > 0)
                fprintf(stderr, " (%s %s within %s; see --timeout)",
                        data ? "no end of the call to node" : "no reply from", strempty(target),
                        sbx_format_duration(d, sizeof(d), timeout));
        fputc('\n', stderr);
        return CLI_EXIT_FAILURE;
}

int cli_data_status(Cli *cli, const SbxRpcStatus *s, const char *what)
{
        return print_status(cli, s, cli->timeout, true, what);
}

static int call_unary(Cli *cli, bool data, const SbxRpcMethod *m, const ProtobufCMessage *request,
                      const CliCallOptions *opts, ProtobufCMessage **ret_response)
{
        static const CliCallOptions defaults = { 0 };
        Call c = { .opts = opts ? opts : &defaults };
        SbxRpcCallOptions co = { 0 };
        int r;

        if (!data && !cli->channel) {
                r = connect_channel(cli);
                if (r != CLI_EXIT_OK)
                        return r;
        }
        co.timeout = cli->timeout ? cli->timeout : c.opts->timeout ? c.opts->timeout : CLI_TIMEOUT_DEFAULT;
        c.started = sbx_now_monotonic();
        r = sbx_rpc_unary(data ? cli->data_channel : cli->channel, m, request, &co, on_reply, &c, &c.call);
        if (r < 0)
                return cli_error("cannot start the call %s: %s", m->path, sbx_error_message(r));
        start_handles(cli, &c);
        while (!c.done)
                uv_run(&cli->loop, UV_RUN_ONCE);
        stop_handles(cli, &c);
        c.call = sbx_rpc_client_call_unref(c.call);

        if (c.status.code != SBX_STATUS_OK) {
                if (c.interrupted) {
                        fprintf(stderr, "sbx: interrupted\n");
                        r = CLI_EXIT_INTERRUPTED;
                } else if (c.opts->ret_status) {
                        *c.opts->ret_status = c.status;
                        c.status = (SbxRpcStatus){ 0 };
                        r = CLI_EXIT_FAILURE;
                } else {
                        r = print_status(cli, &c.status, co.timeout, data, NULL);
                }
                sbx_rpc_status_done(&c.status);
                if (c.response)
                        protobuf_c_message_free_unpacked(c.response, NULL);
                return r;
        }
        sbx_rpc_status_done(&c.status);
        if (!c.response)
                return cli_error("%s: the server sent no reply", m->path);
        *ret_response = c.response;
        return CLI_EXIT_OK;
}

int cli_call(Cli *cli, const SbxRpcMethod *m, const ProtobufCMessage *request, const CliCallOptions *opts,
             ProtobufCMessage **ret_response)
{
        return call_unary(cli, false, m, request, opts, ret_response);
}

int cli_data_call(Cli *cli, const SbxRpcMethod *m, const ProtobufCMessage *request,
                  const CliCallOptions *opts, ProtobufCMessage **ret_response)
{
        assert(cli->data_channel);
        return call_unary(cli, true, m, request, opts, ret_response);
}

/* ---- the data plane ---- */

static int check_running(Cli *cli, const Sbx__V1__Sandbox *sb)
{
        char st[32];

        cli_enum_name(&sbx__v1__sandbox_state__descriptor, (int)sb->state, "SANDBOX_STATE_", st, sizeof(st));
        switch (sb->state) {
        case SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING:
                return CLI_EXIT_OK;
        case SBX__V1__SANDBOX_STATE__SANDBOX_STATE_PENDING:
        case SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STARTING:
                return cli_cmd_error(cli, "sandbox %s is %s, not running yet; try again shortly", sb->id,
                                     st);
        default:
                if (!isempty(sb->reason))
                        return cli_cmd_error(cli, "sandbox %s is %s (%s), not running", sb->id, st,
                                             sb->reason);
                return cli_cmd_error(cli, "sandbox %s is %s, not running", sb->id, st);
        }
}

int cli_data_connect(Cli *cli, const char *sandbox_id)
{
        Sbx__V1__GetSandboxRequest req = SBX__V1__GET_SANDBOX_REQUEST__INIT;
        _cleanup_message_ ProtobufCMessage *resp = NULL;
        SbxRpcTls tls;
        bool use_tls;
        int r;

        assert(!cli->data_channel);
        req.id = (char *)sandbox_id;
        req.with_access_token = true;
        r = cli_call(cli, &sbx_api_sandboxes_get, &req.base, NULL, &resp);
        if (r != CLI_EXIT_OK)
                return r;
        const Sbx__V1__Sandbox *sb = (const Sbx__V1__Sandbox *)resp;
        r = check_running(cli, sb);
        if (r != CLI_EXIT_OK)
                return r;
        if (isempty(sb->data_address))
                return cli_cmd_error(cli, "the scheduler gave no data address for sandbox %s", sb->id);
        /* A scheduler from before with_access_token ignores it and answers without a token. */
        if (isempty(sb->access_token))
                return cli_cmd_error(cli,
                                     "the scheduler at %s returned no access token for sandbox %s "
                                     "(it may be older than this sbx)",
                                     cli->target, sb->id);

        cli->data_target = strdup(sb->data_address);
        if (!cli->data_target)
                return cli_error("out of memory");
        /* The same mode as the scheduler connection: plaintext only where that is plaintext. */
        tls_from_env("SBX_DATA_SERVER_NAME", &tls, &use_tls);
        SbxRpcChannelOptions o = { .tls = use_tls ? &tls : NULL, .bearer_token = sb->access_token };
        if (!use_tls && !is_local(cli->data_target))
                fprintf(stderr,
                        "sbx: warning: sending the sandbox's access token to %s without TLS; set SBX_CA "
                        "to use TLS\n",
                        cli->data_target);
        r = sbx_rpc_channel_new(cli->rpc, cli->data_target, &o, &cli->data_channel);
        if (r < 0)
                return cli_error("cannot connect to node %s: %s", cli->data_target, sbx_error_message(r));
        return CLI_EXIT_OK;
}
