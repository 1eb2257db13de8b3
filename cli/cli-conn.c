/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connection to the scheduler: endpoint, TLS and token from the flags and the environment,
 * unary calls run to completion on a private loop, and the one way errors are printed.
 *
 * Every call is asynchronous underneath (sbx_rpc_unary) so that the loop stays free for a
 * progress timer and for SIGINT, which cancels the call rather than killing the process: the
 * scheduler then knows the caller gave up (a cancelled Create stops its sandbox) and the terminal
 * is left tidy.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/base/string-util.h"
#include "common/loop/loop.h"

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

static int connect_channel(Cli *cli)
{
        const char *token = pick_token(cli);
        SbxRpcTls tls = {
                .ca_file = env("SBX_CA"),
                .cert_file = env("SBX_CERT"),
                .key_file = env("SBX_KEY"),
                .server_name = env("SBX_SERVER_NAME"),
        };
        bool use_tls = tls.ca_file || tls.cert_file || tls.key_file;
        SbxRpcChannelOptions o = { .tls = use_tls ? &tls : NULL, .bearer_token = token };
        int r;

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

static int print_status(Cli *cli, const SbxRpcStatus *s, usec_t timeout)
{
        const char *message =
                isempty(s->message) ? sbx_error_message(sbx_error_from_status(s->code)) : s->message;
        char d[SBX_DURATION_MAX];

        fprintf(stderr, "sbx: %s: %s", sbx_status_name(s->code), message);
        /* Connection trouble names the endpoint (the usual cause is a wrong one); a passed deadline
         * names the flag that moves it. */
        if (s->code == SBX_STATUS_UNAVAILABLE)
                fprintf(stderr, " (endpoint %s)", cli->target);
        else if (s->code == SBX_STATUS_DEADLINE_EXCEEDED)
                fprintf(stderr, " (no reply from %s within %s; see --timeout)", cli->target,
                        sbx_format_duration(d, sizeof(d), timeout));
        fputc('\n', stderr);
        return CLI_EXIT_FAILURE;
}

int cli_call(Cli *cli, const SbxRpcMethod *m, const ProtobufCMessage *request, const CliCallOptions *opts,
             ProtobufCMessage **ret_response)
{
        static const CliCallOptions defaults = { 0 };
        Call c = { .opts = opts ? opts : &defaults };
        SbxRpcCallOptions co = { 0 };
        int r;

        if (!cli->channel) {
                r = connect_channel(cli);
                if (r != CLI_EXIT_OK)
                        return r;
        }
        co.timeout = cli->timeout ? cli->timeout : c.opts->timeout ? c.opts->timeout : CLI_TIMEOUT_DEFAULT;
        c.started = sbx_now_monotonic();
        r = sbx_rpc_unary(cli->channel, m, request, &co, on_reply, &c, &c.call);
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
                } else {
                        r = print_status(cli, &c.status, co.timeout);
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
