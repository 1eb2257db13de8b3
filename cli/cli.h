/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * sbx, the command-line client of the scheduler's public API (docs/cli.md).
 *
 *   sbx.c            main: global flags, the command table, dispatch, help
 *   cli-sandboxes.c  create, get, list, delete, extend
 *   cli-exec.c       exec (the data plane's Exec stream)
 *   cli-files.c      cp, ls (the data plane's file calls)
 *   cli-admin.c      admin org/token/node, nodes
 *   cli-conn.c       endpoint, TLS and token from flags and environment; calls; the data plane's
 *                    channel; error printing
 *   cli-stdio.c      reading and writing local fds without blocking the loop
 *   cli-output.c     tables, key/value blocks, JSON (jansson), times
 *
 * Commands return an exit status (CLI_EXIT_*), not a negative errno: they are the process
 * boundary, and by the time they return every failure has been reported on stderr. Helpers below
 * them follow the project's convention (negative errno, ret_* written only on success).
 */

#include <getopt.h>
#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/base/macro.h"
#include "common/base/time-util.h"
#include "common/rpc/rpc.h"

enum {
        CLI_EXIT_OK = 0,
        /* The server refused the call, the call failed, or something local failed. */
        CLI_EXIT_FAILURE = 1,
        /* Bad flags or arguments; nothing was sent. */
        CLI_EXIT_USAGE = 2,
        /* sbx exec only: sbx itself failed (usage, connection, a refused or failed call), so that
         * its failures are not mistaken for the remote command's own statuses 1 and 2. */
        CLI_EXIT_EXEC_FAILED = 125,
        /* Interrupted by SIGINT while a call was in flight (128 + SIGINT, as shells report it). */
        CLI_EXIT_INTERRUPTED = 130,
};

/* Deadlines of calls when --timeout is not given. Create waits for the VM to boot. */
#define CLI_TIMEOUT_DEFAULT (15 * USEC_PER_SEC)
#define CLI_TIMEOUT_CREATE  (90 * USEC_PER_SEC)

typedef struct Cli Cli;

typedef struct CliCommand {
        /* The words that select the command: "create", "admin org create". */
        const char *name;
        /* What follows the name in a usage line: "ID [--wait]". */
        const char *synopsis;
        /* One line for the command list. */
        const char *summary;
        /* The command's flags and notes for --help; may be NULL. */
        const char *help;
        /* Calls the Admin service: the token comes from SBX_ADMIN_TOKEN before SBX_TOKEN. */
        bool admin;
        int (*run)(Cli *cli, int argc, char **argv);
} CliCommand;

/* The command tables of cli-sandboxes.c, cli-exec.c, cli-files.c and cli-admin.c; sbx.c
 * dispatches over them. */
extern const CliCommand cli_sandbox_commands[];
extern const size_t cli_sandbox_n_commands;
extern const CliCommand cli_exec_commands[];
extern const size_t cli_exec_n_commands;
extern const CliCommand cli_file_commands[];
extern const size_t cli_file_n_commands;
extern const CliCommand cli_admin_commands[];
extern const size_t cli_admin_n_commands;

struct Cli {
        /* Global flags; NULL / false / 0 when not given. */
        const char *endpoint;
        const char *token;
        bool json;
        usec_t timeout;
        /* The command being run (for usage lines and the choice of token). */
        const CliCommand *cmd;
        /* The connection, made by the first call and torn down by cli_disconnect(). Only
         * cli-conn.c changes these; streaming commands run `loop` and call on `data_channel`. */
        bool loop_ready;
        uv_loop_t loop;
        SbxRpc *rpc;
        SbxRpcChannel *channel;
        const char *target;
        /* The data plane of the one sandbox a command works on (cli_data_connect()): a channel to
         * its node's data_address carrying the sandbox's access token. */
        SbxRpcChannel *data_channel;
        char *data_target;
};

/* ---- flags (sbx.c) ---- */

/* Ids of the global flags; command flags use characters or ids from CLI_OPT_FIRST on. */
enum {
        CLI_OPT_ENDPOINT = 0x100,
        CLI_OPT_TOKEN,
        CLI_OPT_JSON,
        CLI_OPT_TIMEOUT,
        CLI_OPT_FIRST = 0x200,
};

/* What cli_getopt() returns besides a command flag. */
enum {
        CLI_GETOPT_END = 0,
        CLI_GETOPT_HELP = -1,
        CLI_GETOPT_USAGE = -2,
};

/* Most flags one command may have (its option table ends with a zeroed entry). */
#define CLI_OPTIONS_MAX 32

/*
 * getopt_long() over a command's flags (`longopts`, may be NULL) plus the global ones, which it
 * handles itself; flags and arguments may come in any order. Returns the next command flag (optarg holds its
 * value), CLI_GETOPT_END when the flags are done (optind then indexes the first argument), or
 * CLI_GETOPT_HELP / CLI_GETOPT_USAGE after printing the command's help or a usage error.
 * Before the first call of a command, the caller's argv[0] must be the command's last word.
 */
int cli_getopt(Cli *cli, int argc, char **argv, const char *shortopts, const struct option *longopts);

/* The exit status for a negative cli_getopt() result. */
static inline int cli_getopt_status(int c)
{
        return c == CLI_GETOPT_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}

/* cli_getopt() for a command without flags of its own: CLI_GETOPT_END, or CLI_GETOPT_HELP /
 * CLI_GETOPT_USAGE after printing the help or a usage error. */
int cli_no_flags(Cli *cli, int argc, char **argv);

/* Prints "sbx <command>: <message>" and the command's usage line to stderr; returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(Cli *cli, const char *fmt, ...) _printf_(2, 3);

/* Checks that argc - optind arguments are left, between min and max; prints a usage error
 * naming what is missing or extra otherwise. Returns 0 or CLI_EXIT_USAGE. */
int cli_check_args(Cli *cli, int argc, char **argv, int min, int max, const char *what);

/* Memory in MiB: a bare number is MiB ("2048"), else a size with a unit ("2GiB", "512M") that is
 * a whole number of MiB. -EINVAL on bad syntax, -ERANGE for 0 or more than 32 bits. */
int cli_parse_memory_mb(const char *s, uint32_t *ret);

/* A positive duration ("10m", "1h30m") in milliseconds, rounded up. -EINVAL otherwise. */
int cli_parse_duration_ms(const char *s, uint64_t *ret);

/* ---- calls (cli-conn.c) ---- */

typedef struct CliCallOptions {
        /* Deadline when --timeout is not given; 0 means CLI_TIMEOUT_DEFAULT. */
        usec_t timeout;
        /* When set and stderr is a terminal, "<progress>… 2.1s" is shown while the call waits. */
        const char *progress;
        /* When set, a refused or failed call's status is stored here (free it with
         * sbx_rpc_status_done) instead of printed; CLI_EXIT_FAILURE is returned all the same. */
        SbxRpcStatus *ret_status;
} CliCallOptions;

/*
 * Makes one unary call (connecting first if needed) and runs the loop until it ends; SIGINT
 * cancels it. On success *ret_response gets the reply (free it with
 * protobuf_c_message_free_unpacked) and CLI_EXIT_OK is returned. On failure the status is printed
 * as "sbx: <STATUS>: <message>" and CLI_EXIT_FAILURE (CLI_EXIT_INTERRUPTED after SIGINT, or
 * CLI_EXIT_USAGE for missing credentials) is returned.
 */
int cli_call(Cli *cli, const SbxRpcMethod *m, const ProtobufCMessage *request, const CliCallOptions *opts,
             ProtobufCMessage **ret_response);

/* Frees a reply from cli_call() at the end of the scope. */
static inline void cli_message_freep(ProtobufCMessage **m)
{
        if (*m)
                protobuf_c_message_free_unpacked(*m, NULL);
}
#define _cleanup_message_ _cleanup_(cli_message_freep)

/*
 * Prepares calls to a sandbox's data plane: asks the scheduler for the sandbox with a fresh access
 * token (Get with with_access_token), checks that it is RUNNING, and opens cli->data_channel to its
 * data_address with the token as bearer, in the same TLS mode as the scheduler's connection.
 * Returns CLI_EXIT_OK, or an exit status after printing why (the scheduler's status, a sandbox
 * that is not running, missing credentials, Ctrl-C).
 */
int cli_data_connect(Cli *cli, const char *sandbox_id);

/* cli_call() on the data channel. Failures are printed with cli_data_status(). */
int cli_data_call(Cli *cli, const SbxRpcMethod *m, const ProtobufCMessage *request,
                  const CliCallOptions *opts, ProtobufCMessage **ret_response);

/* Prints a data-plane failure as "sbx: <command>: [<what>: ]<STATUS>: <message>", naming the node
 * when it could not be reached; `what` may be NULL. Returns CLI_EXIT_FAILURE. */
int cli_data_status(Cli *cli, const SbxRpcStatus *s, const char *what);

/* Releases the connection and the loop, if any. Safe to call more than once. */
void cli_disconnect(Cli *cli);

/* Prints "sbx: <message>" to stderr; returns CLI_EXIT_FAILURE. */
int cli_error(const char *fmt, ...) _printf_(1, 2);

/* Prints "sbx: <command>: <message>" to stderr; returns CLI_EXIT_FAILURE. */
int cli_cmd_error(Cli *cli, const char *fmt, ...) _printf_(2, 3);

/* ---- local input and output for streams (cli-stdio.c) ---- */

/*
 * Reads an fd without blocking the loop: a terminal or a pipe through libuv's stream handles, a
 * regular file (which cannot be polled) through the thread pool. The fd stays the caller's: it
 * is not closed, and flags libuv changed on it are put back by cli_input_close().
 */
typedef struct CliInput CliInput;

/* Called with each chunk read (n > 0, at most CLI_CHUNK bytes, valid during the call only), at end
 * of input (n == 0, error == 0), or once after a read error (n == 0, error < 0). Nothing follows
 * the last two. */
typedef void (*CliInputCallback)(CliInput *in, const void *data, size_t n, int error, void *userdata);

/* Largest chunk read at once and largest message payload the streaming commands send. */
#define CLI_CHUNK (64u * 1024u)

/* Starts reading `fd`. -ENOMEM, or a negative errno when libuv refuses the fd. */
int cli_input_new(uv_loop_t *loop, int fd, CliInputCallback cb, void *userdata, CliInput **ret);
/* Stops (or resumes) reading, so that a consumer with a full window holds the producer back. */
void cli_input_pause(CliInput *in, bool pause);
/* Puts the terminal into raw mode until cli_input_close(); -ENOTTY when the input is no terminal. */
int cli_input_set_raw(CliInput *in);
/* Stops reading, restores the terminal mode, and frees the input once libuv has let go of it;
 * `done` (may be NULL) runs then, possibly before this returns. No callback runs after this. */
void cli_input_close(CliInput *in, void (*done)(void *userdata), void *userdata);

/*
 * Writes to fds in the order the writes were queued, in the thread pool with plain blocking
 * write(2), so the loop keeps serving the call while a slow reader (a pager, a full pipe) holds the
 * output back, and no fd shared with other processes is switched to O_NONBLOCK.
 */
typedef struct CliOutput CliOutput;

int cli_output_new(uv_loop_t *loop, CliOutput **ret);
/* Queues a copy of n bytes for fd. After a write failed, every later write returns that error
 * (negative errno) and nothing more is written. */
int cli_output_write(CliOutput *o, int fd, const void *p, size_t n);
/* Bytes queued or being written. */
size_t cli_output_pending(const CliOutput *o);
/* `cb` runs (on the loop) whenever the queue has become empty, or a write failed. */
void cli_output_on_drain(CliOutput *o, void (*cb)(CliOutput *o, void *userdata), void *userdata);
/* The first write error (negative errno) and its fd, or 0. */
int cli_output_error(const CliOutput *o, int *ret_fd);
/* Drops what is still queued, waits for the write in progress, frees; `done` (may be NULL) runs
 * then, possibly before this returns. */
void cli_output_close(CliOutput *o, void (*done)(void *userdata), void *userdata);

/* ---- output (cli-output.c) ---- */

/* A table with left-aligned columns sized to their content and a header row in capitals. Cells
 * are added left to right; a row ends after as many cells as there are headers. Allocation
 * failures are remembered and reported by cli_table_print(). */
typedef struct CliTable CliTable;

/* The NULL-terminated headers are copied. */
int cli_table_new(CliTable **ret, ...) _sentinel_;
CliTable *cli_table_free(CliTable *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(CliTable *, cli_table_free);
void cli_table_cell(CliTable *t, const char *text);
void cli_table_cellf(CliTable *t, const char *fmt, ...) _printf_(2, 3);
/* Writes the table to stdout; -ENOMEM if a cell could not be stored. */
int cli_table_print(CliTable *t);

/* Joins n strings with `sep` into a new string. protobuf-c's repeated fields are counted arrays,
 * not NULL-terminated vectors, so strv_join() does not apply. */
int cli_join(char *const *items, size_t n, const char *sep, char **ret);

/* Prints a "key:  value" line with the values aligned (the key column is fixed-width); an empty
 * key continues a list begun by the line above. */
void cli_field(const char *key, const char *fmt, ...) _printf_(2, 3);

/*
 * Converts a message to JSON: field names as written in the .proto, enum values by name, maps as
 * objects, 64-bit integers as numbers, bytes as base64, absent sub-messages left out. Returns a
 * new reference, or NULL on allocation failure.
 */
json_t *cli_json_from_message(const ProtobufCMessage *m);
/* Writes a message, or an array of messages, to stdout as indented JSON. */
int cli_json_print_message(const ProtobufCMessage *m);
int cli_json_print_messages(ProtobufCMessage *const *items, size_t n);
/* Writes a JSON value (stealing the reference) to stdout. */
int cli_json_print(json_t *j);

/* The lower-case name of an enum value without its prefix ("running" for
 * SANDBOX_STATE_RUNNING with prefix "SANDBOX_STATE_"); "unknown" for values not in the enum. */
const char *cli_enum_name(const ProtobufCEnumDescriptor *d, int value, const char *prefix, char *buf,
                          size_t n);
/* The inverse: "running" → SANDBOX_STATE_RUNNING. -EINVAL for names not in the enum. */
int cli_enum_parse(const ProtobufCEnumDescriptor *d, const char *prefix, const char *s, int *ret);

#define CLI_TIME_MAX 64
/* "2026-11-27T17:06:09.123Z"; "-" for 0. */
char *cli_format_time(char *buf, size_t n, int64_t unix_ms);
/* "in 29m", "3m ago", "now"; "-" for 0. */
char *cli_format_relative(char *buf, size_t n, int64_t unix_ms);
/* Both: "2026-11-27T17:06:09.123Z (in 29m)"; "-" for 0. */
char *cli_format_when(char *buf, size_t n, int64_t unix_ms);

/* The current Unix time in milliseconds. */
static inline int64_t cli_now_ms(void)
{
        return (int64_t)(sbx_now_realtime() / USEC_PER_MSEC);
}
