/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx: the command-line client. Parses the global flags, picks the command whose words lead the
 * arguments (the longest match: "admin org create" before "admin"), and runs it. Help comes from
 * the same command tables, so a command cannot exist without its usage line.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/base/parse.h"
#include "common/base/string-util.h"
#include "common/log/log.h"

#define GLOBAL_FLAGS_HELP                                                                               \
        "Global flags (before or after the command):\n"                                                 \
        "  --endpoint HOST:PORT   scheduler to talk to (default: $SBX_ENDPOINT, else 127.0.0.1:7070)\n" \
        "  --token TOKEN          bearer token (default: $SBX_TOKEN; $SBX_ADMIN_TOKEN for admin and\n"  \
        "                         nodes commands when set)\n"                                           \
        "  --json                 print the server's reply as JSON, for scripts\n"                      \
        "  --timeout DURATION     deadline of each call, e.g. 30s (default 90s for create, none for\n"  \
        "                         the streams of exec and cp, else 15s)\n"                              \
        "  -h, --help             help for sbx or for a command\n"

#define ENVIRONMENT_HELP                                                                        \
        "Environment: SBX_ENDPOINT, SBX_TOKEN, SBX_ADMIN_TOKEN; SBX_CA (PEM roots: use TLS),\n" \
        "SBX_CERT and SBX_KEY (client certificate), SBX_SERVER_NAME (TLS name override);\n"     \
        "SBX_DATA_SERVER_NAME (the same for the nodes exec, cp and ls talk to).\n"              \
        "Exit status: 0 success, 1 the call failed (the status is printed), 2 usage error,\n"   \
        "130 interrupted. sbx exec exits with the command's status, or 125 when sbx failed.\n"

#define MIB (1024ULL * 1024ULL)
/* Usage lines printed with an error stay on one line of a terminal. */
#define USAGE_LINE_MAX 60

typedef struct CommandTable {
        const CliCommand *commands;
        const size_t *n;
} CommandTable;

static const CommandTable tables[] = {
        { cli_sandbox_commands, &cli_sandbox_n_commands },
        { cli_exec_commands, &cli_exec_n_commands },
        { cli_file_commands, &cli_file_n_commands },
        { cli_admin_commands, &cli_admin_n_commands },
};

#define FOREACH_COMMAND(c)                                 \
        for (size_t _t = 0; _t < ELEMENTSOF(tables); _t++) \
                for (const CliCommand *c = tables[_t].commands; c < tables[_t].commands + *tables[_t].n; c++)

/* Number of leading words of `name` equal to argv[0..argc), or 0 if one differs. */
static size_t words_match(const char *name, int argc, char **argv)
{
        const char *p = name;
        size_t n = 0;

        for (int i = 0; i < argc; i++) {
                size_t len = strcspn(p, " ");
                if (strlen(argv[i]) != len || strncmp(p, argv[i], len) != 0)
                        return 0;
                n++;
                p += len;
                if (*p == '\0')
                        return n;
                p++;
        }
        return 0;
}

static size_t word_count(const char *name)
{
        size_t n = 1;
        for (; *name; name++)
                if (*name == ' ')
                        n++;
        return n;
}

/* True for every command when prefix is NULL, else for those whose name continues `prefix`. */
static bool in_group(const CliCommand *c, const char *prefix)
{
        return !prefix || (startswith(c->name, prefix) && c->name[strlen(prefix)] == ' ');
}

/* True when `prefix` (space-separated words) starts the name of some command. */
static bool is_group(const char *prefix)
{
        FOREACH_COMMAND(c)
        {
                if (in_group(c, prefix))
                        return true;
        }
        return false;
}

/* Length of the synopsis' leading arguments ("ID" of "ID [--wait]"): the flags are for --help. */
static int positional_len(const char *synopsis)
{
        const char *p = synopsis;

        while (*p && *p != '[' && *p != '-') {
                p += strcspn(p, " ");
                p += strspn(p, " ");
        }
        while (p > synopsis && p[-1] == ' ')
                p--;
        return (int)(p - synopsis);
}

static void print_commands(FILE *f, const char *prefix)
{
        int width = 0;

        FOREACH_COMMAND(c)
        {
                if (in_group(c, prefix))
                        width = SBX_MAX(width, (int)strlen(c->name) + 1 + positional_len(c->synopsis));
        }
        FOREACH_COMMAND(c)
        {
                if (!in_group(c, prefix))
                        continue;
                int n = positional_len(c->synopsis);
                int w = fprintf(f, "  %s%s%.*s", c->name, n > 0 ? " " : "", n, c->synopsis);
                fprintf(f, "%*s%s\n", SBX_MAX(width + 5 - w, 2), "", c->summary);
        }
}

static void print_main_help(FILE *f)
{
        fprintf(f, "usage: sbx [global flags] COMMAND [flags] [arguments]\n\n"
                   "sbx creates and manages sandboxes through an sbx-scheduler, and runs commands\n"
                   "and copies files in them through their nodes.\n\n"
                   "Commands:\n");
        print_commands(f, NULL);
        fprintf(f, "\nRun 'sbx COMMAND --help' for a command's flags.\n\n" GLOBAL_FLAGS_HELP
                   "\n" ENVIRONMENT_HELP);
}

static void print_group_help(FILE *f, const char *group)
{
        fprintf(f, "usage: sbx %s COMMAND [flags] [arguments]\n\nCommands:\n", group);
        print_commands(f, group);
        fprintf(f, "\nRun 'sbx %s COMMAND --help' for a command's flags.\n", group);
}

static void print_command_help(const CliCommand *c)
{
        printf("usage: sbx %s %s\n\n%s.\n", c->name, c->synopsis, c->summary);
        if (c->help)
                printf("\n%s", c->help);
        printf("\n" GLOBAL_FLAGS_HELP);
}

int cli_usage_error(Cli *cli, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "sbx%s%s: ", cli->cmd ? " " : "", cli->cmd ? cli->cmd->name : "");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        if (cli->cmd) {
                /* Short: a long synopsis is cut to its arguments; --help has the rest. */
                const char *syn = cli->cmd->synopsis;
                int n = strlen(cli->cmd->name) + strlen(syn) > USAGE_LINE_MAX ? positional_len(syn)
                                                                              : (int)strlen(syn);
                fprintf(stderr, "usage: sbx %s%s%.*s%s (see 'sbx %s --help')\n", cli->cmd->name,
                        n > 0 ? " " : "", n, syn, n < (int)strlen(syn) ? " [flags]" : "", cli->cmd->name);
        } else {
                fprintf(stderr, "usage: sbx [global flags] COMMAND [flags] [arguments]; see 'sbx --help'\n");
        }
        return CLI_EXIT_USAGE;
}

int cli_check_args(Cli *cli, int argc, char **argv, int min, int max, const char *what)
{
        int n = argc - optind;

        if (n < min)
                return cli_usage_error(cli, "missing %s", what);
        if (n > max)
                return cli_usage_error(cli, "unexpected argument '%s'", argv[optind + max]);
        return 0;
}

int cli_parse_memory_mb(const char *s, uint32_t *ret)
{
        uint64_t v, bytes;

        if (sbx_parse_uint64(s, &v) < 0) {
                if (sbx_parse_size(s, &bytes) < 0 || bytes % MIB != 0)
                        return -EINVAL;
                v = bytes / MIB;
        }
        if (v == 0 || v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t)v;
        return 0;
}

int cli_parse_duration_ms(const char *s, uint64_t *ret)
{
        usec_t u;

        if (sbx_parse_duration(s, &u) < 0 || u == 0)
                return -EINVAL;
        *ret = sbx_usec_to_msec_ceil(u);
        return 0;
}

/* The flag getopt refused, as the user typed it ("--regoin", "-x"). glibc leaves optopt 0 for an
 * unknown long flag; for a long flag missing its value optopt is the flag's id, so the argument
 * itself (the last one, as a missing value only happens at the end) tells which kind it was. */
static void bad_flag(char **argv, bool missing_value, char *buf, size_t n)
{
        const char *arg = optind > 0 ? argv[optind - 1] : "";
        bool is_long = missing_value ? startswith(arg, "--") != NULL : optopt == 0;

        if (is_long)
                snprintf(buf, n, "%.*s", (int)strcspn(arg, "="), arg);
        else
                snprintf(buf, n, "-%c", optopt);
}

static const struct option global_options[] = {
        { "endpoint", required_argument, NULL, CLI_OPT_ENDPOINT },
        { "token", required_argument, NULL, CLI_OPT_TOKEN },
        { "json", no_argument, NULL, CLI_OPT_JSON },
        { "timeout", required_argument, NULL, CLI_OPT_TIMEOUT },
        { "help", no_argument, NULL, 'h' },
};

int cli_getopt(Cli *cli, int argc, char **argv, const char *shortopts, const struct option *longopts)
{
        struct option all[CLI_OPTIONS_MAX + ELEMENTSOF(global_options) + 1];
        char opts[64], flag[64];
        size_t n = 0;
        usec_t t;

        /* The command's flags first, then the global ones; the same table on every call. */
        for (; longopts && longopts[n].name; n++) {
                assert(n < CLI_OPTIONS_MAX);
                all[n] = longopts[n];
        }
        memcpy(all + n, global_options, sizeof(global_options));
        all[n + ELEMENTSOF(global_options)] = (struct option){ 0 };

        /* Before the command, stop at its first word; after it, flags and arguments may mix. */
        snprintf(opts, sizeof(opts), "%s:%sh", cli->cmd ? "" : "+", shortopts);
        opterr = 0;
        for (;;) {
                int c = getopt_long(argc, argv, opts, all, NULL);
                switch (c) {
                case -1:
                        return CLI_GETOPT_END;
                case 'h':
                        if (cli->cmd)
                                print_command_help(cli->cmd);
                        else
                                print_main_help(stdout);
                        return CLI_GETOPT_HELP;
                case CLI_OPT_ENDPOINT:
                        cli->endpoint = optarg;
                        break;
                case CLI_OPT_TOKEN:
                        cli->token = optarg;
                        break;
                case CLI_OPT_JSON:
                        cli->json = true;
                        break;
                case CLI_OPT_TIMEOUT:
                        if (sbx_parse_duration(optarg, &t) < 0 || t == 0)
                                return cli_usage_error(
                                               cli,
                                               "--timeout: '%s' is not a positive duration (e.g. 30s, 2m)",
                                               optarg),
                                       CLI_GETOPT_USAGE;
                        cli->timeout = t;
                        break;
                case ':':
                        bad_flag(argv, true, flag, sizeof(flag));
                        return cli_usage_error(cli, "flag %s needs a value", flag), CLI_GETOPT_USAGE;
                case '?':
                        bad_flag(argv, false, flag, sizeof(flag));
                        return cli_usage_error(cli, "unknown flag %s", flag), CLI_GETOPT_USAGE;
                default:
                        return c;
                }
        }
}

int cli_no_flags(Cli *cli, int argc, char **argv)
{
        int c = cli_getopt(cli, argc, argv, "", NULL);
        /* Without command flags, getopt has nothing else to return. */
        return c < 0 ? c : CLI_GETOPT_END;
}

/* Finds the command named by the leading words of argv; *ret_words gets how many it took. */
static const CliCommand *find_command(int argc, char **argv, size_t *ret_words)
{
        const CliCommand *best = NULL;
        size_t best_n = 0;

        FOREACH_COMMAND(c)
        {
                size_t n = words_match(c->name, argc, argv);
                if (n > best_n && n == word_count(c->name)) {
                        best = c;
                        best_n = n;
                }
        }
        *ret_words = best_n;
        return best;
}

/* The longest run of leading words that names a group ("admin", "admin org"), as a string. */
static int find_group(int argc, char **argv, char **ret)
{
        _cleanup_free_ char *group = NULL;

        for (int i = 0; i < argc && argv[i][0] != '-'; i++) {
                _cleanup_free_ char *g = NULL;
                if (asprintf(&g, "%s%s%s", group ? group : "", group ? " " : "", argv[i]) < 0)
                        return -ENOMEM;
                if (!is_group(g))
                        break;
                free(group);
                group = TAKE_PTR(g);
        }
        if (!group)
                return -ENOENT;
        *ret = TAKE_PTR(group);
        return 0;
}

static int dispatch(Cli *cli, int argc, char **argv)
{
        _cleanup_free_ char *group = NULL;
        const CliCommand *cmd;
        size_t words;
        int c;

        c = cli_getopt(cli, argc, argv, "", NULL);
        if (c != CLI_GETOPT_END)
                return c < 0 ? cli_getopt_status(c) : cli_usage_error(cli, "unexpected flag");
        argc -= optind;
        argv += optind;
        if (argc == 0) {
                print_main_help(stderr);
                return CLI_EXIT_USAGE;
        }
        if (streq(argv[0], "help")) {
                /* "sbx help admin org create" is "sbx admin org create --help". */
                argc--;
                argv++;
                if (argc == 0) {
                        print_main_help(stdout);
                        return CLI_EXIT_OK;
                }
                cmd = find_command(argc, argv, &words);
                if (cmd && (int)words == argc) {
                        print_command_help(cmd);
                        return CLI_EXIT_OK;
                }
                if (find_group(argc, argv, &group) >= 0) {
                        print_group_help(stdout, group);
                        return CLI_EXIT_OK;
                }
                return cli_usage_error(cli, "no command '%s'", argv[0]);
        }

        cmd = find_command(argc, argv, &words);
        if (!cmd) {
                if (find_group(argc, argv, &group) < 0)
                        return cli_usage_error(cli, "unknown command '%s'", argv[0]);
                size_t n = word_count(group);
                if ((int)n < argc && (streq(argv[n], "-h") || streq(argv[n], "--help"))) {
                        print_group_help(stdout, group);
                        return CLI_EXIT_OK;
                }
                if ((int)n < argc)
                        fprintf(stderr, "sbx %s: unknown command '%s'\n", group, argv[n]);
                print_group_help(stderr, group);
                return CLI_EXIT_USAGE;
        }
        cli->cmd = cmd;
        /* The command parses from its last word on, as getopt expects a program name first. */
        optind = 0;
        return cmd->run(cli, argc - (int)words + 1, argv + words - 1);
}

/*
 * A closed stdin, stdout or stderr would be the next fd gRPC or libuv opens, and our output would
 * go into their descriptors. /dev/null holds the place, read-only so that writing to a closed
 * stdout still fails (EBADF) instead of vanishing. An fd below 3 that is close-on-exec was not
 * inherited but opened before main(): gRPC's start-up probe leaves its eventfd behind when it got
 * fd 0 (it takes 0 for "no fd"), and nobody uses it, so it gives way too.
 */
static void reserve_stdio(void)
{
        for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
                int flags = fcntl(fd, F_GETFD);
                if (flags >= 0 && !(flags & FD_CLOEXEC))
                        continue;
                int n = open("/dev/null", O_RDONLY | O_NOCTTY);
                if (n >= 0 && n != fd) {
                        (void)dup2(n, fd);
                        close(n);
                }
        }
}

int main(int argc, char **argv)
{
        Cli cli = { 0 };
        int r;

        reserve_stdio();
        /* Library chatter (gRPC's own messages) only when asked for. */
        sbx_log_setup("sbx", SBX_LOG_TEXT, getenv("SBX_DEBUG") ? SBX_LOG_DEBUG : SBX_LOG_ERROR);
        r = dispatch(&cli, argc, argv);
        cli_disconnect(&cli);
        if (fflush(stdout) != 0 && r == CLI_EXIT_OK)
                r = cli_error("cannot write the output: %m");
        return r;
}
