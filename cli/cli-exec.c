/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx exec: runs a command in a sandbox through the data plane's Exec stream and behaves, as far
 * as the caller can tell, like the command itself: its stdout and stderr arrive on ours, our stdin
 * goes to it, signals sent to sbx reach it, and its exit status is ours.
 *
 * Flow control is the stream's (HTTP/2) in both directions; the protocol has no window of its own.
 * The agent forwards stdin only against the guest's credit and stops reading from us when that is
 * used up, so we read stdin only while our send queue is short. The other way, we stop reading the
 * stream while more than OUTPUT_WINDOW bytes wait to be written locally, which holds the agent,
 * and through its credit the process, back.
 *
 * Exit statuses: the command's (128 + N when signal N killed it); 125 when sbx itself failed, so
 * that its failures are not mistaken for the command's 1 and 2; 126/127 when the command could not
 * be started (not executable / not found, as shells say); 130 when interrupted before the
 * command started; 141 when our stdout was closed (as a process killed by SIGPIPE would report).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/api/api.h"
#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "proto/sbx/v1/data.pb-c.h"

/* stdin bytes queued toward the node before we stop reading stdin. */
#define STDIN_WINDOW (4 * CLI_CHUNK)
/* Output bytes waiting for our stdout/stderr before we stop reading the stream. */
#define OUTPUT_WINDOW (16 * CLI_CHUNK)
/* Signals forwarded without the command ending before sbx gives up and cancels the call (which
 * makes the node kill the command): an escape from a command that ignores them. */
#define SIGNALS_BEFORE_CANCEL 3

enum {
        OPT_CLEAR_ENV = CLI_OPT_FIRST,
};

/* Signals sent to sbx that are passed on to the command rather than ending sbx. */
static const int forwarded_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

typedef struct Exec {
        Cli *cli;
        SbxRpcClientCall *call;
        CliInput *in;
        CliOutput *out;

        uv_signal_t signals[ELEMENTSOF(forwarded_signals)];
        uv_signal_t winch;
        unsigned open_handles;

        /* What the stream said. */
        bool done;
        SbxRpcStatus status;
        bool exited;
        /* The node said the command started (its pid). */
        bool started;
        int exit_code;
        char exit_signal[32];
        bool oom;

        bool reading_paused;
        unsigned signals_sent;
        int cancel_signo;
        int stdin_error;
} Exec;

/* ---- flags ---- */

typedef struct Env {
        Sbx__V1__ExecStart__EnvEntry *entries;
        Sbx__V1__ExecStart__EnvEntry **ptrs;
        size_t n;
} Env;

static void env_done(Env *e)
{
        free(e->entries);
        free(e->ptrs);
}

/* "K=V", or "K" for this process's value of $K, as docker run -e does. The strings stay argv's or
 * the environment's, which outlive the call. */
static int env_add(Env *e, char *arg, const char **ret_problem)
{
        char *eq = strchr(arg, '='), *value;
        Sbx__V1__ExecStart__EnvEntry *entries;
        Sbx__V1__ExecStart__EnvEntry **ptrs;

        if (eq == arg || arg[0] == '\0') {
                *ret_problem = "the name is empty";
                return -EINVAL;
        }
        if (eq) {
                *eq = '\0';
                value = eq + 1;
        } else {
                value = getenv(arg);
                if (!value) {
                        *ret_problem = "no '=VALUE' given and no environment variable of that name is set";
                        return -EINVAL;
                }
        }
        /* A later value for the same name replaces the earlier one, as in the map it becomes. */
        for (size_t i = 0; i < e->n; i++)
                if (streq(e->entries[i].key, arg)) {
                        e->entries[i].value = value;
                        return 0;
                }
        entries = reallocarray(e->entries, e->n + 1, sizeof(*entries));
        if (!entries)
                return -ENOMEM;
        e->entries = entries;
        ptrs = reallocarray(e->ptrs, e->n + 1, sizeof(*ptrs));
        if (!ptrs)
                return -ENOMEM;
        e->ptrs = ptrs;
        sbx__v1__exec_start__env_entry__init(&e->entries[e->n]);
        e->entries[e->n].key = arg;
        e->entries[e->n].value = value;
        e->n++;
        /* The array may have moved: point at its current elements. */
        for (size_t i = 0; i < e->n; i++)
                e->ptrs[i] = &e->entries[i];
        return 0;
}

/* The terminal's size from whichever of our fds is one; false when none is. */
static bool window_size(Sbx__V1__WindowSize *ret)
{
        struct winsize ws;

        for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++)
                if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
                        ret->rows = ws.ws_row;
                        ret->cols = ws.ws_col;
                        return true;
                }
        return false;
}

/* ---- the stream ---- */

static void send_request(Exec *e, Sbx__V1__ExecRequest *req)
{
        /* Sends fail only once the call is over, when there is nobody left to tell. */
        if (e->call && !e->done)
                (void)sbx_rpc_client_call_send(e->call, &req->base);
}

static void stop_stdin(Exec *e)
{
        cli_input_close(e->in, NULL, NULL);
        e->in = NULL;
}

static void on_stdin(CliInput *in, const void *data, size_t n, int error, void *userdata)
{
        Exec *e = userdata;
        Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;

        if (n > 0) {
                req.msg_case = SBX__V1__EXEC_REQUEST__MSG_STDIN;
                req.stdin = (ProtobufCBinaryData){ .len = n, .data = (uint8_t *)data };
                send_request(e, &req);
                if (e->call && sbx_rpc_client_call_pending_bytes(e->call) >= STDIN_WINDOW)
                        cli_input_pause(in, true);
                return;
        }
        /* End of input, or a read error (reported at the end): either way the command sees EOF. */
        e->stdin_error = error;
        req.msg_case = SBX__V1__EXEC_REQUEST__MSG_STDIN_CLOSE;
        req.stdin_close = true;
        send_request(e, &req);
        stop_stdin(e);
}

static void on_send_drain(SbxRpcClientCall *c, void *userdata)
{
        Exec *e = userdata;

        if (e->in)
                cli_input_pause(e->in, false);
}

static void on_output_drain(CliOutput *o, void *userdata)
{
        Exec *e = userdata;
        int fd, r = cli_output_error(o, &fd);

        if (r < 0) {
                /* Nobody reads our output any more: stop the command rather than let it run
                 * unheard. The error is reported at the end. */
                if (e->call && !e->done)
                        sbx_rpc_client_call_cancel(e->call);
                return;
        }
        if (e->reading_paused && e->call) {
                e->reading_paused = false;
                sbx_rpc_client_call_pause_reading(e->call, false);
        }
}

static void on_message(SbxRpcClientCall *c, ProtobufCMessage *message, void *userdata)
{
        Exec *e = userdata;
        const Sbx__V1__ExecResponse *resp = (const Sbx__V1__ExecResponse *)message;

        switch (resp->msg_case) {
        case SBX__V1__EXEC_RESPONSE__MSG_STDOUT:
                (void)cli_output_write(e->out, STDOUT_FILENO, resp->stdout.data, resp->stdout.len);
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_STDERR:
                (void)cli_output_write(e->out, STDERR_FILENO, resp->stderr.data, resp->stderr.len);
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_EXIT:
                if (resp->exit) {
                        e->exited = true;
                        e->exit_code = resp->exit->code;
                        snprintf(e->exit_signal, sizeof(e->exit_signal), "%s", strempty(resp->exit->signal));
                        e->oom = resp->exit->oom;
                }
                break;
        case SBX__V1__EXEC_RESPONSE__MSG_STARTED_PID:
                e->started = true;
                break;
        default:
                /* Whatever a newer agent adds. */
                break;
        }
        protobuf_c_message_free_unpacked(message, NULL);
        if (!e->reading_paused && cli_output_pending(e->out) >= OUTPUT_WINDOW) {
                e->reading_paused = true;
                sbx_rpc_client_call_pause_reading(c, true);
        }
}

static void on_status(SbxRpcClientCall *c, const SbxRpcStatus *status, void *userdata)
{
        Exec *e = userdata;

        e->done = true;
        e->status.code = status->code;
        e->status.message = strdup(strempty(status->message));
        /* The command is gone: what else we would read from stdin has no reader. */
        stop_stdin(e);
}

/* ---- signals ---- */

static void on_signal(uv_signal_t *h, int signo)
{
        Exec *e = h->data;
        Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
        char name[32];

        if (e->done)
                return;
        if (++e->signals_sent >= SIGNALS_BEFORE_CANCEL) {
                e->cancel_signo = signo;
                sbx_rpc_client_call_cancel(e->call);
                return;
        }
        /* The guest names signals as sigabbrev_np() does, with the "SIG" prefix. */
        snprintf(name, sizeof(name), "SIG%s", strempty(sigabbrev_np(signo)));
        req.msg_case = SBX__V1__EXEC_REQUEST__MSG_SIGNAL;
        req.signal = name;
        send_request(e, &req);
}

static void on_winch(uv_signal_t *h, int signo)
{
        Exec *e = h->data;
        Sbx__V1__ExecRequest req = SBX__V1__EXEC_REQUEST__INIT;
        Sbx__V1__WindowSize ws = SBX__V1__WINDOW_SIZE__INIT;

        if (!window_size(&ws))
                return;
        req.msg_case = SBX__V1__EXEC_REQUEST__MSG_RESIZE;
        req.resize = &ws;
        send_request(e, &req);
}

static void on_handle_closed(uv_handle_t *h)
{
        Exec *e = h->data;
        e->open_handles--;
}

static void on_stdio_closed(void *userdata)
{
        Exec *e = userdata;
        e->open_handles--;
}

static int start_signal(Exec *e, uv_signal_t *h, uv_signal_cb cb, int signo)
{
        int r = uv_signal_init(&e->cli->loop, h);
        if (r < 0)
                return r;
        h->data = e;
        e->open_handles++;
        return uv_signal_start(h, cb, signo);
}

/* Everything the exec owns on the loop lives in the caller's frame: wait until libuv let go. */
static void teardown(Exec *e)
{
        for (size_t i = 0; i < ELEMENTSOF(e->signals); i++)
                if (e->signals[i].data)
                        uv_close((uv_handle_t *)&e->signals[i], on_handle_closed);
        if (e->winch.data)
                uv_close((uv_handle_t *)&e->winch, on_handle_closed);
        if (e->in) {
                e->open_handles++;
                cli_input_close(e->in, on_stdio_closed, e);
                e->in = NULL;
        }
        if (e->out) {
                e->open_handles++;
                cli_output_close(e->out, on_stdio_closed, e);
                e->out = NULL;
        }
        while (e->open_handles > 0)
                uv_run(&e->cli->loop, UV_RUN_ONCE);
        e->call = sbx_rpc_client_call_unref(e->call);
        /* Belt and braces: whatever happened, the terminal is left as we found it. */
        (void)uv_tty_reset_mode();
}

/* The exit status, printing what the caller needs to know. Runs after teardown, with the
 * terminal back in its normal mode. */
static int exec_result(Exec *e, int output_error, int output_fd)
{
        if (output_error == -EPIPE)
                return 128 + SIGPIPE;
        if (output_error < 0)
                cli_cmd_error(e->cli, "cannot write to %s: %s",
                              output_fd == STDERR_FILENO ? "stderr" : "stdout",
                              sbx_error_message(output_error));
        if (e->stdin_error < 0)
                cli_cmd_error(e->cli, "reading stdin failed (the command saw end of input): %s",
                              sbx_error_message(e->stdin_error));
        if (e->exited) {
                if (e->oom)
                        cli_cmd_error(e->cli, "the command ran out of memory (%s)",
                                      isempty(e->exit_signal) ? "out-of-memory kill" : e->exit_signal);
                if (output_error < 0)
                        return CLI_EXIT_EXEC_FAILED;
                /* The guest reports 128 + N for signal N already; anything outside a shell's range
                 * would wrap around in exit(3). */
                return e->exit_code >= 0 && e->exit_code <= 255 ? e->exit_code : 255;
        }
        if (e->cancel_signo > 0) {
                cli_cmd_error(e->cli, "SIG%s received %u times; gave up on the command (the node stops it)",
                              strempty(sigabbrev_np(e->cancel_signo)), e->signals_sent);
                return 128 + e->cancel_signo;
        }
        if (output_error < 0)
                return CLI_EXIT_EXEC_FAILED;
        if (e->status.code != SBX_STATUS_OK) {
                cli_data_status(e->cli, &e->status, NULL);
                /* The command could not be started: what a shell answers for the same. The sandbox
                 * itself was found (Get), so NOT_FOUND here is the command. */
                if (!e->started && e->status.code == SBX_STATUS_NOT_FOUND)
                        return 127;
                if (!e->started && e->status.code == SBX_STATUS_PERMISSION_DENIED)
                        return 126;
        } else
                cli_cmd_error(e->cli, "the node ended the call without the command's exit status");
        return CLI_EXIT_EXEC_FAILED;
}

static int exec_stream(Cli *cli, Sbx__V1__ExecStart *start, bool forward_stdin)
{
        Sbx__V1__ExecRequest first = SBX__V1__EXEC_REQUEST__INIT;
        SbxRpcClientCallbacks cbs = { .on_message = on_message, .on_status = on_status };
        SbxRpcCallOptions co = { .timeout = cli->timeout };
        Exec e = { .cli = cli };
        int r, output_error, output_fd = -1;

        /* A reader that goes away (sbx exec … | head) must not kill us with SIGPIPE while the
         * terminal may be raw: it shows up as EPIPE instead. */
        signal(SIGPIPE, SIG_IGN);

        r = cli_output_new(&cli->loop, &e.out);
        if (r < 0)
                return cli_error("out of memory");
        cli_output_on_drain(e.out, on_output_drain, &e);

        first.msg_case = SBX__V1__EXEC_REQUEST__MSG_START;
        first.start = start;
        r = sbx_rpc_call_start(cli->data_channel, &sbx_api_data_exec, &first.base, &co, &cbs, &e, &e.call);
        if (r < 0) {
                teardown(&e);
                return cli_cmd_error(cli, "cannot start the call: %s", sbx_error_message(r));
        }
        sbx_rpc_client_call_on_drain(e.call, on_send_drain, &e);

        for (size_t i = 0; i < ELEMENTSOF(forwarded_signals); i++)
                if (start_signal(&e, &e.signals[i], on_signal, forwarded_signals[i]) < 0)
                        break;
        if (start->tty)
                (void)start_signal(&e, &e.winch, on_winch, SIGWINCH);

        if (forward_stdin) {
                r = cli_input_new(&cli->loop, STDIN_FILENO, on_stdin, &e, &e.in);
                if (r < 0) {
                        sbx_rpc_client_call_cancel(e.call);
                        while (!e.done)
                                uv_run(&cli->loop, UV_RUN_ONCE);
                        teardown(&e);
                        sbx_rpc_status_done(&e.status);
                        return cli_cmd_error(cli, "cannot read stdin: %s", sbx_error_message(r));
                }
                /* Raw mode only when keys go to the remote terminal: then Ctrl-C, Ctrl-D and
                 * Ctrl-Z are bytes for it, not signals or EOF for us. */
                if (start->tty && isatty(STDIN_FILENO))
                        (void)cli_input_set_raw(e.in);
        }

        /* Done when the call is over and its output is written (or cannot be). */
        while (!e.done || (cli_output_pending(e.out) > 0 && cli_output_error(e.out, NULL) == 0))
                uv_run(&cli->loop, UV_RUN_ONCE);
        output_error = cli_output_error(e.out, &output_fd);
        teardown(&e);
        r = exec_result(&e, output_error, output_fd);
        sbx_rpc_status_done(&e.status);
        return r;
}

/* sbx's own failures map to 125; an interrupted start stays 130, help stays 0. */
static int failed(int r)
{
        return r == CLI_EXIT_OK || r == CLI_EXIT_INTERRUPTED ? r : CLI_EXIT_EXEC_FAILED;
}

static int exec_run(Cli *cli, int argc, char **argv)
{
        static const struct option opts[] = {
                { "env", required_argument, NULL, 'e' }, { "clear-env", no_argument, NULL, OPT_CLEAR_ENV },
                { "cwd", required_argument, NULL, 'w' }, { "user", required_argument, NULL, 'u' },
                { "tty", no_argument, NULL, 't' },       { "stdin", no_argument, NULL, 'i' },
                { "no-stdin", no_argument, NULL, 'n' },  { NULL, 0, NULL, 0 },
        };
        Sbx__V1__ExecStart start = SBX__V1__EXEC_START__INIT;
        Sbx__V1__WindowSize ws = SBX__V1__WINDOW_SIZE__INIT;
        _cleanup_(env_done) Env env = { 0 };
        bool want_stdin = false, no_stdin = false;
        const char *problem = NULL;
        int c, r, dashdash = argc;

        /* Everything after "--" is the command's, flags included: find it before getopt, which
         * would otherwise take the command's -t or -i for ours. */
        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "--")) {
                        dashdash = i;
                        break;
                }
        while ((c = cli_getopt(cli, dashdash, argv, "e:w:u:tin", opts)) > 0) {
                switch (c) {
                case 'e':
                        r = env_add(&env, optarg, &problem);
                        if (r == -EINVAL)
                                return failed(cli_usage_error(cli, "--env: %s", problem));
                        if (r < 0)
                                return failed(cli_error("out of memory"));
                        break;
                case OPT_CLEAR_ENV:
                        start.clear_env = true;
                        break;
                case 'w':
                        start.cwd = optarg;
                        break;
                case 'u':
                        start.user = optarg;
                        break;
                case 't':
                        start.tty = true;
                        break;
                case 'i':
                        want_stdin = true;
                        break;
                case 'n':
                        no_stdin = true;
                        break;
                }
        }
        if (c < 0)
                return failed(cli_getopt_status(c));
        if (optind >= dashdash)
                return failed(cli_usage_error(cli, "missing sandbox ID"));
        if (dashdash - optind > 1)
                return failed(cli_usage_error(cli, "unexpected argument '%s'; put '--' before the command",
                                              argv[optind + 1]));
        if (dashdash == argc)
                return failed(cli_usage_error(cli, "missing '--' and the command to run"));
        if (dashdash + 1 >= argc || isempty(argv[dashdash + 1]))
                return failed(cli_usage_error(cli, "missing the command after '--'"));
        if (!sbx_sandbox_id_valid(argv[optind]))
                return failed(cli_usage_error(cli, "'%s' is not a sandbox id (sbx_<region>_<20 characters>)",
                                              argv[optind]));
        if (want_stdin && no_stdin)
                return failed(cli_usage_error(cli, "--stdin and --no-stdin exclude each other"));
        if (cli->json)
                return failed(cli_usage_error(cli, "--json does not apply: the output is the command's"));

        start.sandbox_id = argv[optind];
        start.command = argv[dashdash + 1];
        start.args = argv + dashdash + 2;
        start.n_args = (size_t)(argc - dashdash - 2);
        start.env = env.ptrs;
        start.n_env = env.n;
        start.stdout = true;
        start.stderr = true;
        /* Like ssh: a pipe or a file on stdin is meant for the command, a terminal only when
         * asked for (it would swallow the keys of whoever runs sbx). */
        start.stdin = !no_stdin && (want_stdin || !isatty(STDIN_FILENO));
        if (start.tty && window_size(&ws))
                start.window = &ws;

        r = cli_data_connect(cli, start.sandbox_id);
        if (r != CLI_EXIT_OK)
                return failed(r);
        r = exec_stream(cli, &start, start.stdin);
        return r;
}

const CliCommand cli_exec_commands[] = {
        {
                .name = "exec",
                .synopsis = "ID [flags] -- COMMAND [ARG...]",
                .summary = "Run a command in a sandbox",
                .help = "Flags:\n"
                        "  -e, --env K=V     set an environment variable; repeatable. '-e K' takes the\n"
                        "                    value of $K here\n"
                        "  --clear-env       start from an empty environment, not the sandbox's\n"
                        "  -w, --cwd DIR     working directory (default: the user's home)\n"
                        "  -u, --user USER   user name or uid (default: the sandbox's user)\n"
                        "  -t, --tty         run on a pseudo-terminal (stderr then joins stdout); with\n"
                        "                    -i on a terminal, this one goes into raw mode\n"
                        "  -i, --stdin       forward stdin even when it is a terminal (it is forwarded\n"
                        "                    anyway when it is a pipe or a file)\n"
                        "  -n, --no-stdin    never forward stdin (the command reads /dev/null)\n"
                        "\n"
                        "Everything after '--' is the command and its arguments. SIGINT, SIGTERM,\n"
                        "SIGHUP and SIGQUIT sent to sbx are passed on to the command; after the third\n"
                        "without the command ending, sbx gives up and the node kills it.\n"
                        "\n"
                        "Exit status: the command's (128+N when killed by signal N); 125 when sbx\n"
                        "failed (usage, connection, the call; the status is printed); 130 when\n"
                        "interrupted before the command ran.\n",
                .run = exec_run,
        },
};
const size_t cli_exec_n_commands = ELEMENTSOF(cli_exec_commands);
