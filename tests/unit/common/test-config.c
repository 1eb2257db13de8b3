/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/base/time-util.h"
#include "common/config/config.h"
#include "common/log/log.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
/* Criterion ignores what LeakSanitizer prints at a worker's exit, so the ownership tests ask it. */
#define ASSERT_NO_LEAKS() cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks, see above")
#else
#define ASSERT_NO_LEAKS() ((void)0)
#endif

typedef struct TestConfig {
        char *name;
        char **peers;
        bool debug;
        int64_t memory_mb;
        int64_t offset;
        int64_t retries;
        uint32_t workers;
        uint64_t disk;
        uint64_t timeout;
        char *mode;
        char *listen;
        SbxLogLevel log_level;
        SbxLogFormat log_format;
        char *token;
} TestConfig;

static const char *const modes[] = { "fast", "safe", NULL };

static const SbxConfigOption options[] = {
        { .key = "name",
          .parse = sbx_config_parse_string,
          .offset = offsetof(TestConfig, name),
          .default_value = "sbx",
          .description = "Name of this node." },
        { .key = "peers",
          .parse = sbx_config_parse_strv,
          .offset = offsetof(TestConfig, peers),
          .default_value = "a:1,b:2",
          .description = "Comma-separated peers." },
        { .key = "debug",
          .parse = sbx_config_parse_bool,
          .offset = offsetof(TestConfig, debug),
          .description = "Log at debug level." },
        { .key = "memory-mb",
          .parse = sbx_config_parse_int,
          .offset = offsetof(TestConfig, memory_mb),
          .default_value = "1024",
          .description = "Memory per sandbox, in MiB.",
          .min = 768,
          .max = 4096 },
        { .key = "offset",
          .parse = sbx_config_parse_int,
          .offset = offsetof(TestConfig, offset),
          .default_value = "-5",
          .description = "An unbounded signed number." },
        { .key = "retries",
          .parse = sbx_config_parse_int,
          .offset = offsetof(TestConfig, retries),
          .default_value = "3",
          .description = "Retries.",
          .min = 1,
          .max = INT64_MAX },
        { .key = "workers",
          .parse = sbx_config_parse_uint32,
          .offset = offsetof(TestConfig, workers),
          .default_value = "4",
          .description = "Worker threads.",
          .min = 1,
          .max = 64 },
        { .key = "disk",
          .parse = sbx_config_parse_size,
          .offset = offsetof(TestConfig, disk),
          .default_value = "10GiB",
          .description = "Disk per sandbox.",
          .min = 1 << 20,
          .max = 1LL << 40 },
        { .key = "timeout",
          .parse = sbx_config_parse_duration,
          .offset = offsetof(TestConfig, timeout),
          .default_value = "30s",
          .description = "Request timeout.",
          .min = USEC_PER_SEC,
          .max = USEC_PER_HOUR },
        { .key = "mode",
          .parse = sbx_config_parse_choice,
          .offset = offsetof(TestConfig, mode),
          .default_value = "safe",
          .description = "Placement mode.",
          .choices = modes },
        { .key = "listen",
          .parse = sbx_config_parse_address,
          .offset = offsetof(TestConfig, listen),
          .default_value = ":8080",
          .description = "Address of the API.",
          .metavar = "HOST:PORT" },
        { .key = "log-level",
          .parse = sbx_config_parse_log_level,
          .offset = offsetof(TestConfig, log_level),
          .default_value = "info",
          .description = "Log threshold." },
        { .key = "log-format",
          .parse = sbx_config_parse_log_format,
          .offset = offsetof(TestConfig, log_format),
          .default_value = "text",
          .description = "Log format." },
        { .key = "token",
          .parse = sbx_config_parse_string,
          .offset = offsetof(TestConfig, token),
          .description = "A secret with no default.\nSecond line of the description." },
};

static const SbxConfigTable table = {
        .program = "test-prog",
        .summary = "Exercises the config loader.",
        .env_prefix = "SBXTEST_",
        .options = options,
        .n_options = ELEMENTSOF(options),
};

/* A table with a required option, kept apart so that the other tests need not set it. */
typedef struct RequiredConfig {
        char **endpoints;
        char *name;
        int64_t count;
} RequiredConfig;

static const SbxConfigOption required_options[] = {
        { .key = "endpoints",
          .parse = sbx_config_parse_strv,
          .offset = offsetof(RequiredConfig, endpoints),
          .description = "Endpoints.",
          .required = true },
        { .key = "name",
          .parse = sbx_config_parse_string,
          .offset = offsetof(RequiredConfig, name),
          .default_value = "x",
          .description = "Name.",
          .required = true },
        { .key = "count",
          .parse = sbx_config_parse_int,
          .offset = offsetof(RequiredConfig, count),
          .description = "Count.",
          .required = true },
};

static const SbxConfigTable required_table = {
        .program = "req-prog",
        .env_prefix = "SBXREQ_",
        .options = required_options,
        .n_options = ELEMENTSOF(required_options),
};

/* Runs sbx_config_load() on a NULL-terminated argument list (argv[0] included). */
static int load_argv(const SbxConfigTable *t, void *c, char **ret_error, char **argv)
{
        int argc = 0;

        while (argv[argc])
                argc++;
        return sbx_config_load(t, c, argc, argv, ret_error);
}

#define LOAD(c, err, ...) load_argv(&table, (c), (err), (char *[]){ "test-prog", ##__VA_ARGS__, NULL })
#define LOAD_REQ(c, err, ...) \
        load_argv(&required_table, (c), (err), (char *[]){ "req-prog", ##__VA_ARGS__, NULL })

static int load_text(TestConfig *c, const char *text, char **ret_error)
{
        return sbx_config_load_text(&table, c, text, strlen(text), "t.conf", ret_error);
}

/* A file in a fresh directory under /tmp; temp_file_remove() deletes both. */
typedef struct TempFile {
        char dir[64];
        char path[128];
} TempFile;

static void temp_file_write(TempFile *f, const char *content, size_t n)
{
        FILE *fp;

        snprintf(f->dir, sizeof(f->dir), "/tmp/sbx-test-config-XXXXXX");
        cr_assert_not_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/test.conf", f->dir);
        fp = fopen(f->path, "w");
        cr_assert_not_null(fp);
        cr_assert_eq(fwrite(content, 1, n, fp), n);
        cr_assert_eq(fclose(fp), 0);
}

static void temp_file_remove(TempFile *f)
{
        unlink(f->path);
        rmdir(f->dir);
}

/* Runs a load with stdout sent to a temporary file and returns what was printed. */
static char *load_capturing_stdout(int *ret, char **argv)
{
        char path[] = "/tmp/sbx-test-config-out-XXXXXX";
        TestConfig c = { 0 };
        char *err = NULL, *out = NULL;
        int fd, saved;
        FILE *fp;
        long n;

        fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        fflush(stdout);
        saved = dup(STDOUT_FILENO);
        cr_assert_geq(saved, 0);
        cr_assert_geq(dup2(fd, STDOUT_FILENO), 0);
        *ret = load_argv(&table, &c, &err, argv);
        fflush(stdout);
        dup2(saved, STDOUT_FILENO);
        close(saved);
        close(fd);
        sbx_config_done(&table, &c);
        free(err);

        fp = fopen(path, "r");
        cr_assert_not_null(fp);
        fseek(fp, 0, SEEK_END);
        n = ftell(fp);
        rewind(fp);
        out = calloc(1, (size_t)n + 1);
        cr_assert_not_null(out);
        cr_assert_eq(fread(out, 1, (size_t)n, fp), (size_t)n);
        fclose(fp);
        unlink(path);
        return out;
}

static char *print_to_string(void (*print)(const SbxConfigTable *, FILE *), const SbxConfigTable *t)
{
        char *s = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&s, &n);

        cr_assert_not_null(f);
        print(t, f);
        cr_assert_eq(fclose(f), 0);
        return s;
}

static void assert_defaults(const TestConfig *c)
{
        cr_assert_str_eq(c->name, "sbx");
        cr_assert_eq(strv_length(c->peers), 2);
        cr_assert_str_eq(c->peers[0], "a:1");
        cr_assert_str_eq(c->peers[1], "b:2");
        cr_assert_eq(c->debug, false);
        cr_assert_eq(c->memory_mb, 1024);
        cr_assert_eq(c->offset, -5);
        cr_assert_eq(c->retries, 3);
        cr_assert_eq(c->workers, 4);
        cr_assert_eq(c->disk, 10ULL << 30);
        cr_assert_eq(c->timeout, 30 * USEC_PER_SEC);
        cr_assert_str_eq(c->mode, "safe");
        cr_assert_str_eq(c->listen, ":8080");
        cr_assert_eq(c->log_level, SBX_LOG_INFO);
        cr_assert_eq(c->log_format, SBX_LOG_TEXT);
        cr_assert_null(c->token);
}

/* ---- precedence ---- */

Test(config, defaults_applied)
{
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(LOAD(&c, &err), 0);
        cr_assert_null(err);
        assert_defaults(&c);
        sbx_config_done(&table, &c);
}

Test(config, file_overrides_default)
{
        static const char text[] = "memory-mb = 2048\nname = from-file\npeers = x:1\n";
        TestConfig c = { 0 };
        char *err = NULL;
        TempFile f;

        temp_file_write(&f, text, strlen(text));
        cr_assert_eq(LOAD(&c, &err, "--config", f.path), 0, "%s", strempty(err));
        cr_assert_eq(c.memory_mb, 2048);
        cr_assert_str_eq(c.name, "from-file");
        cr_assert_eq(strv_length(c.peers), 1);
        cr_assert_str_eq(c.peers[0], "x:1");
        cr_assert_eq(c.workers, 4); /* untouched options keep their default */
        sbx_config_done(&table, &c);
        temp_file_remove(&f);
}

Test(config, config_file_from_equals_flag_and_env)
{
        static const char text[] = "workers = 8\n";
        TestConfig c = { 0 }, d = { 0 };
        char *err = NULL, *arg = NULL;
        TempFile f;

        temp_file_write(&f, text, strlen(text));
        cr_assert_geq(asprintf(&arg, "--config=%s", f.path), 0);
        cr_assert_eq(LOAD(&c, &err, arg), 0, "%s", strempty(err));
        cr_assert_eq(c.workers, 8);

        setenv("SBXTEST_CONFIG", f.path, 1);
        cr_assert_eq(LOAD(&d, &err), 0, "%s", strempty(err));
        cr_assert_eq(d.workers, 8);
        unsetenv("SBXTEST_CONFIG");

        free(arg);
        sbx_config_done(&table, &c);
        sbx_config_done(&table, &d);
        temp_file_remove(&f);
}

Test(config, config_flag_wins_over_config_env)
{
        static const char text[] = "workers = 8\n";
        TestConfig c = { 0 };
        char *err = NULL;
        TempFile f;

        temp_file_write(&f, text, strlen(text));
        setenv("SBXTEST_CONFIG", "/nonexistent/sbx-test.conf", 1);
        cr_assert_eq(LOAD(&c, &err, "--config", f.path), 0, "%s", strempty(err));
        cr_assert_eq(c.workers, 8);
        unsetenv("SBXTEST_CONFIG");
        sbx_config_done(&table, &c);
        temp_file_remove(&f);
}

Test(config, missing_config_file)
{
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(LOAD(&c, &err, "--config", "/nonexistent/sbx-test.conf"), -ENOENT);
        cr_assert_str_eq(
                err,
                "test-prog: cannot read config file /nonexistent/sbx-test.conf: No such file or directory");
        free(err);
        sbx_config_done(&table, &c);
}

Test(config, env_overrides_file)
{
        static const char text[] = "memory-mb = 2048\nlog-level = debug\n";
        TestConfig c = { 0 };
        char *err = NULL;
        TempFile f;

        temp_file_write(&f, text, strlen(text));
        setenv("SBXTEST_MEMORY_MB", "3000", 1);
        setenv("SBXTEST_LOG_LEVEL", "error", 1);
        /* Unknown variables with the prefix belong to someone else sharing the environment. */
        setenv("SBXTEST_NOT_AN_OPTION", "whatever", 1);
        cr_assert_eq(LOAD(&c, &err, "--config", f.path), 0, "%s", strempty(err));
        cr_assert_eq(c.memory_mb, 3000);
        cr_assert_eq(c.log_level, SBX_LOG_ERROR);
        unsetenv("SBXTEST_MEMORY_MB");
        unsetenv("SBXTEST_LOG_LEVEL");
        unsetenv("SBXTEST_NOT_AN_OPTION");
        sbx_config_done(&table, &c);
        temp_file_remove(&f);
}

Test(config, flag_overrides_env)
{
        static const char text[] = "memory-mb = 2048\n";
        TestConfig c = { 0 };
        char *err = NULL;
        TempFile f;

        temp_file_write(&f, text, strlen(text));
        setenv("SBXTEST_MEMORY_MB", "3000", 1);
        cr_assert_eq(LOAD(&c, &err, "--config", f.path, "--memory-mb=4000"), 0, "%s", strempty(err));
        cr_assert_eq(c.memory_mb, 4000);
        unsetenv("SBXTEST_MEMORY_MB");
        sbx_config_done(&table, &c);
        temp_file_remove(&f);
}

Test(config, env_error_names_variable)
{
        TestConfig c = { 0 };
        char *err = NULL;

        setenv("SBXTEST_MEMORY_MB", "9000", 1);
        cr_assert_eq(LOAD(&c, &err), -ERANGE);
        cr_assert_str_eq(
                err, "test-prog: invalid value \"9000\" for memory-mb (from SBXTEST_MEMORY_MB): expected "
                     "an integer in 768..4096");
        unsetenv("SBXTEST_MEMORY_MB");
        free(err);
        sbx_config_done(&table, &c);
}

Test(config, bad_default_says_default)
{
        static const SbxConfigOption bad[] = {
                { .key = "memory-mb",
                  .parse = sbx_config_parse_int,
                  .offset = offsetof(TestConfig, memory_mb),
                  .default_value = "lots",
                  .min = 1,
                  .max = 2 },
        };
        static const SbxConfigTable t = { .program = "p", .options = bad, .n_options = 1 };
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(load_argv(&t, &c, &err, (char *[]){ "p", NULL }), -EINVAL);
        cr_assert_str_eq(err,
                         "p: invalid value \"lots\" for memory-mb (default): expected an integer in 1..2");
        free(err);
}

/* ---- flags ---- */

Test(config, flag_forms)
{
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(
                LOAD(&c, &err, "--memory-mb", "2000", "--name=n1", "--timeout", "1m", "--listen=[::1]:9"), 0,
                "%s", strempty(err));
        cr_assert_eq(c.memory_mb, 2000);
        cr_assert_str_eq(c.name, "n1");
        cr_assert_eq(c.timeout, USEC_PER_MINUTE);
        cr_assert_str_eq(c.listen, "[::1]:9");
        sbx_config_done(&table, &c);
}

Test(config, flag_given_twice_last_wins)
{
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(LOAD(&c, &err, "--name=a", "--name", "b", "--peers=p:1", "--peers=q:2,r:3"), 0);
        cr_assert_str_eq(c.name, "b");
        cr_assert_eq(strv_length(c.peers), 2);
        cr_assert_str_eq(c.peers[0], "q:2");
        sbx_config_done(&table, &c);
}

Test(config, bool_flag)
{
        TestConfig c = { 0 }, d = { 0 }, e = { 0 };
        char *err = NULL;

        cr_assert_eq(LOAD(&c, &err, "--debug"), 0);
        cr_assert_eq(c.debug, true);
        setenv("SBXTEST_DEBUG", "yes", 1);
        cr_assert_eq(LOAD(&d, &err, "--debug=false"), 0);
        cr_assert_eq(d.debug, false);
        unsetenv("SBXTEST_DEBUG");

        /* A bool flag never swallows the next argument. */
        cr_assert_eq(LOAD(&e, &err, "--debug", "false"), -EINVAL);
        cr_assert_str_eq(err, "test-prog: unexpected argument \"false\"");
        free(err);
        err = NULL;

        cr_assert_eq(LOAD(&e, &err, "--debug=maybe"), -EINVAL);
        cr_assert_str_eq(err,
                         "test-prog: invalid value \"maybe\" for debug (from --debug): expected a boolean "
                         "(true/false, yes/no, on/off, 1/0)");
        free(err);
        sbx_config_done(&table, &c);
        sbx_config_done(&table, &d);
        sbx_config_done(&table, &e);
}

Test(config, argv_errors)
{
        static const struct {
                const char *args[3];
                const char *error;
        } cases[] = {
                { { "--foo" }, "test-prog: unknown option --foo" },
                { { "--foo=secret" }, "test-prog: unknown option --foo" },
                { { "--memory_mb=800" }, "test-prog: unknown option --memory_mb" },
                { { "-x" }, "test-prog: unknown option -x" },
                { { "positional" }, "test-prog: unexpected argument \"positional\"" },
                { { "-" }, "test-prog: unexpected argument \"-\"" },
                { { "--", "x" }, "test-prog: unexpected argument \"x\"" },
                { { "--memory-mb" }, "test-prog: option --memory-mb requires a value" },
                { { "--config" }, "test-prog: option --config requires a value" },
                { { "--config=" }, "test-prog: option --config requires a value" },
                { { "--help=yes" }, "test-prog: option --help takes no value" },
                { { "--print-config=1" }, "test-prog: option --print-config takes no value" },
                { { "--memory-mb", "9000" },
                  "test-prog: invalid value \"9000\" for memory-mb (from --memory-mb): expected an integer "
                  "in "
                  "768..4096" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *argv[] = { "test-prog", (char *)cases[i].args[0], (char *)cases[i].args[1], NULL };
                TestConfig c = { 0 };
                char *err = NULL;
                int r;

                r = load_argv(&table, &c, &err, argv);
                cr_assert_lt(r, 0, "case %zu", i);
                cr_assert_str_eq(err, cases[i].error, "case %zu", i);
                free(err);
                sbx_config_done(&table, &c);
        }
}

Test(config, double_dash_alone_is_fine)
{
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(LOAD(&c, &err, "--name=z", "--"), 0);
        cr_assert_str_eq(c.name, "z");
        sbx_config_done(&table, &c);
}

/* ---- parsers ---- */

Test(config, good_values)
{
        static const struct {
                const char *line;
                size_t offset;
                char type; /* 's' string, 'i' int64, 'u' uint32, 'U' uint64, 'b' bool, 'e' enum */
                const char *s;
                int64_t i;
        } cases[] = {
                { "name = hello world", offsetof(TestConfig, name), 's', "hello world" },
                { "debug = yes", offsetof(TestConfig, debug), 'b', NULL, 1 },
                { "debug = OFF", offsetof(TestConfig, debug), 'b', NULL, 0 },
                { "memory-mb = 768", offsetof(TestConfig, memory_mb), 'i', NULL, 768 },
                { "memory-mb = 4096", offsetof(TestConfig, memory_mb), 'i', NULL, 4096 },
                { "offset = -9223372036854775808", offsetof(TestConfig, offset), 'i', NULL, INT64_MIN },
                { "offset = 9223372036854775807", offsetof(TestConfig, offset), 'i', NULL, INT64_MAX },
                { "retries = 1", offsetof(TestConfig, retries), 'i', NULL, 1 },
                { "workers = 1", offsetof(TestConfig, workers), 'u', NULL, 1 },
                { "workers = 64", offsetof(TestConfig, workers), 'u', NULL, 64 },
                { "disk = 1MiB", offsetof(TestConfig, disk), 'U', NULL, 1 << 20 },
                { "disk = 1048576", offsetof(TestConfig, disk), 'U', NULL, 1 << 20 },
                { "disk = 1TiB", offsetof(TestConfig, disk), 'U', NULL, 1LL << 40 },
                { "disk = 512M", offsetof(TestConfig, disk), 'U', NULL, 512 << 20 },
                { "disk = 5GB", offsetof(TestConfig, disk), 'U', NULL, 5000000000LL },
                { "timeout = 1s", offsetof(TestConfig, timeout), 'U', NULL, USEC_PER_SEC },
                { "timeout = 1000ms", offsetof(TestConfig, timeout), 'U', NULL, USEC_PER_SEC },
                { "timeout = 1h", offsetof(TestConfig, timeout), 'U', NULL, USEC_PER_HOUR },
                { "timeout = 59m60s", offsetof(TestConfig, timeout), 'U', NULL, USEC_PER_HOUR },
                { "mode = fast", offsetof(TestConfig, mode), 's', "fast" },
                { "listen = localhost:80", offsetof(TestConfig, listen), 's', "localhost:80" },
                { "listen = 10.0.0.1:0", offsetof(TestConfig, listen), 's', "10.0.0.1:0" },
                { "listen = my_host.example-1.com:65535", offsetof(TestConfig, listen), 's',
                  "my_host.example-1.com:65535" },
                { "listen = [::1]:443", offsetof(TestConfig, listen), 's', "[::1]:443" },
                { "listen = [2001:db8::1]:8443", offsetof(TestConfig, listen), 's', "[2001:db8::1]:8443" },
                { "listen = :9090", offsetof(TestConfig, listen), 's', ":9090" },
                { "listen = unix:/run/sbx/api.sock", offsetof(TestConfig, listen), 's',
                  "unix:/run/sbx/api.sock" },
                { "log-level = warning", offsetof(TestConfig, log_level), 'e', NULL, SBX_LOG_WARNING },
                { "log-level = debug", offsetof(TestConfig, log_level), 'e', NULL, SBX_LOG_DEBUG },
                { "log-format = json", offsetof(TestConfig, log_format), 'e', NULL, SBX_LOG_JSON },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                TestConfig c = { 0 };
                const void *field = (const char *)&c + cases[i].offset;
                char *err = NULL;

                cr_assert_eq(load_text(&c, cases[i].line, &err), 0, "%s: %s", cases[i].line, strempty(err));
                switch (cases[i].type) {
                case 's':
                        cr_assert_str_eq(*(char *const *)field, cases[i].s, "%s", cases[i].line);
                        break;
                case 'b':
                        cr_assert_eq(*(const bool *)field, cases[i].i != 0, "%s", cases[i].line);
                        break;
                case 'i':
                        cr_assert_eq(*(const int64_t *)field, cases[i].i, "%s", cases[i].line);
                        break;
                case 'u':
                        cr_assert_eq(*(const uint32_t *)field, (uint32_t)cases[i].i, "%s", cases[i].line);
                        break;
                case 'U':
                        cr_assert_eq(*(const uint64_t *)field, (uint64_t)cases[i].i, "%s", cases[i].line);
                        break;
                case 'e':
                        cr_assert_eq(*(const int *)field, (int)cases[i].i, "%s", cases[i].line);
                        break;
                }
                sbx_config_done(&table, &c);
        }
}

#define SIZE_SYNTAX \
        " (a number of bytes with an optional unit: K, M, G, T, KiB, MiB, GiB, TiB, kB, MB, GB or TB)"
#define DURATION_SYNTAX " (numbers with units us, ms, s, m, h or d, such as 250ms, 30s or 1h30m)"
#define ADDRESS_EXPECTED \
        "an address: host:port, [ipv6]:port, :port (all addresses) or unix:/path, with a port in 0..65535"

Test(config, bad_values)
{
        static const struct {
                const char *key, *value, *expected;
        } cases[] = {
                { "debug", "maybe", "a boolean (true/false, yes/no, on/off, 1/0)" },
                { "debug", "", "a boolean (true/false, yes/no, on/off, 1/0)" },
                { "memory-mb", "9000", "an integer in 768..4096" },
                { "memory-mb", "767", "an integer in 768..4096" },
                { "memory-mb", "4097", "an integer in 768..4096" },
                { "memory-mb", "abc", "an integer in 768..4096" },
                { "memory-mb", "+800", "an integer in 768..4096" },
                { "memory-mb", "0x300", "an integer in 768..4096" },
                { "offset", "1.5", "an integer" },
                { "offset", "9223372036854775808", "an integer" },
                { "retries", "0", "an integer >= 1" },
                { "workers", "0", "an integer in 1..64" },
                { "workers", "65", "an integer in 1..64" },
                { "workers", "-1", "an integer in 1..64" },
                { "disk", "1023KiB", "a size in 1MiB..1TiB" },
                { "disk", "1048575", "a size in 1MiB..1TiB" },
                { "disk", "1099511627777", "a size in 1MiB..1TiB" },
                { "disk", "2TiB", "a size in 1MiB..1TiB" },
                { "disk", "10 GiB", "a size in 1MiB..1TiB" SIZE_SYNTAX },
                { "disk", "-1", "a size in 1MiB..1TiB" SIZE_SYNTAX },
                { "disk", "99999999999999999999", "a size in 1MiB..1TiB" },
                { "timeout", "999ms", "a duration in 1s..1h" },
                { "timeout", "1h1us", "a duration in 1s..1h" },
                { "timeout", "30", "a duration in 1s..1h" DURATION_SYNTAX },
                { "timeout", "1 h", "a duration in 1s..1h" DURATION_SYNTAX },
                { "mode", "slow", "one of: fast, safe" },
                { "mode", "FAST", "one of: fast, safe" },
                { "listen", "localhost", ADDRESS_EXPECTED },
                { "listen", "host:", ADDRESS_EXPECTED },
                { "listen", "host:65536", ADDRESS_EXPECTED },
                { "listen", "host:-1", ADDRESS_EXPECTED },
                { "listen", "host:http", ADDRESS_EXPECTED },
                { "listen", "::1:80", ADDRESS_EXPECTED },
                { "listen", "[::1]80", ADDRESS_EXPECTED },
                { "listen", "[::1", ADDRESS_EXPECTED },
                { "listen", "[]:80", ADDRESS_EXPECTED },
                { "listen", "[zz::1]:80", ADDRESS_EXPECTED },
                { "listen", "[1.2.3.4]:80", ADDRESS_EXPECTED },
                { "listen", "999.1.1.1:80", ADDRESS_EXPECTED },
                { "listen", "a b:80", ADDRESS_EXPECTED },
                { "listen", "-host:80", ADDRESS_EXPECTED },
                { "listen", "unix:relative.sock", ADDRESS_EXPECTED },
                { "listen", "unix:", ADDRESS_EXPECTED },
                { "log-level", "verbose", "one of: debug, info, warning, error" },
                { "log-level", "INFO", "one of: debug, info, warning, error" },
                { "log-format", "xml", "one of: text, json" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *text = NULL, *want = NULL;
                TestConfig c = { 0 };
                char *err = NULL;

                cr_assert_geq(asprintf(&text, "\n%s = %s\n", cases[i].key, cases[i].value), 0);
                cr_assert_geq(asprintf(&want,
                                       "test-prog: invalid value \"%s\" for %s (from t.conf:2): expected %s",
                                       cases[i].value, cases[i].key, cases[i].expected),
                              0);
                cr_assert_lt(load_text(&c, text, &err), 0, "%s", text);
                cr_assert_str_eq(err, want);
                /* A failed parse leaves the field as it was. */
                cr_assert_null(c.mode);
                cr_assert_null(c.listen);
                cr_assert_eq(c.memory_mb, 0);
                free(err);
                sbx_config_done(&table, &c);
        }
}

Test(config, unix_path_length_limit)
{
        char value[200], line[256];
        TestConfig c = { 0 };
        char *err = NULL;

        /* sun_path holds 108 bytes including the NUL: 107 characters fit, 108 do not. */
        memset(value, 'a', sizeof(value));
        value[0] = '/';
        value[107] = '\0';
        snprintf(line, sizeof(line), "listen = unix:%s", value);
        cr_assert_eq(load_text(&c, line, &err), 0, "%s", strempty(err));
        sbx_config_done(&table, &c);

        value[107] = 'a';
        value[108] = '\0';
        snprintf(line, sizeof(line), "listen = unix:%s", value);
        cr_assert_eq(load_text(&c, line, &err), -EINVAL);
        free(err);
        sbx_config_done(&table, &c);
}

Test(config, value_quoted_in_message)
{
        TestConfig c = { 0 };
        char *err = NULL;

        /* Control bytes and quotes are escaped so that a message cannot drive a terminal. */
        cr_assert_eq(load_text(&c, "mode = \"\x1b[31m\\\"x\"", &err), -EINVAL);
        cr_assert_str_eq(
                err, "test-prog: invalid value \"\\x1b[31m\\\"x\" for mode (from t.conf:1): expected one "
                     "of: fast, safe");
        free(err);
}

Test(config, strv_values)
{
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(load_text(&c, "peers = a:1, b:2 ,,c:3 ", &err), 0);
        cr_assert_eq(strv_length(c.peers), 3);
        cr_assert_str_eq(c.peers[0], "a:1");
        cr_assert_str_eq(c.peers[1], "b:2");
        cr_assert_str_eq(c.peers[2], "c:3");
        sbx_config_done(&table, &c);
        cr_assert_null(c.peers);

        cr_assert_eq(load_text(&c, "peers = ,", &err), 0);
        cr_assert_null(c.peers);
}

Test(config, empty_value_unsets_strings)
{
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(LOAD(&c, &err, "--name=", "--peers=", "--listen", "", "--mode="), 0, "%s",
                     strempty(err));
        cr_assert_null(c.name);
        cr_assert_null(c.peers);
        cr_assert_null(c.listen);
        cr_assert_null(c.mode);
        sbx_config_done(&table, &c);
}

/* ---- file syntax ---- */

Test(config, file_syntax)
{
        static const char text[] = "# a comment\n"
                                   "\n"
                                   "   \t\n"
                                   "  # an indented comment\n"
                                   "\tname\t=   spaced value  \t\r\n"
                                   "memory-mb=800\n"
                                   "token = a=b # not a comment\n"
                                   "listen = \"  [::1]:1\"";
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(load_text(&c, text, &err), -EINVAL);
        /* The quoted value keeps its leading blanks, which no address has. */
        cr_assert_str_eq(err, "test-prog: invalid value \"  [::1]:1\" for listen (from t.conf:8): "
                              "expected " ADDRESS_EXPECTED);
        free(err);
        cr_assert_str_eq(c.name, "spaced value");
        cr_assert_eq(c.memory_mb, 800);
        cr_assert_str_eq(c.token, "a=b # not a comment");
        sbx_config_done(&table, &c);
}

Test(config, quoted_values)
{
        static const struct {
                const char *line, *value;
        } cases[] = {
                { "name = \"plain\"", "plain" },
                { "name = \"  padded  \"  ", "  padded  " },
                { "name = \"a \\\"quoted\\\" word\"", "a \"quoted\" word" },
                { "name = \"back\\\\slash\"", "back\\slash" },
                { "name = \"\"", NULL },
                { "name = \"#hash\"", "#hash" },
                { "name = not\"quoted\"", "not\"quoted\"" },
                { "name = un\\quoted", "un\\quoted" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                TestConfig c = { 0 };
                char *err = NULL;

                cr_assert_eq(load_text(&c, cases[i].line, &err), 0, "%s: %s", cases[i].line, strempty(err));
                if (cases[i].value)
                        cr_assert_str_eq(c.name, cases[i].value, "%s", cases[i].line);
                else
                        cr_assert_null(c.name, "%s", cases[i].line);
                sbx_config_done(&table, &c);
        }
}

Test(config, syntax_errors)
{
        static const struct {
                const char *text, *error;
        } cases[] = {
                { "name = \"abc", "test-prog: unterminated quoted value for name in t.conf:1" },
                { "name = \"abc\\\"", "test-prog: unterminated quoted value for name in t.conf:1" },
                { "name = \"abc\" def",
                  "test-prog: unexpected text after the closing quote for name in t.conf:1" },
                { "name = \"a\"\"b\"",
                  "test-prog: unexpected text after the closing quote for name in t.conf:1" },
                { "name = \"a\\nb\"",
                  "test-prog: invalid escape (only \\\" and \\\\ are allowed) for name in t.conf:1" },
                { "\n\njust words\n", "test-prog: expected \"key = value\" in t.conf:3" },
                { " = value", "test-prog: expected \"key = value\" in t.conf:1" },
                { "# ok\nfoo = 1\n", "test-prog: unknown key \"foo\" in t.conf:2" },
                { "Name = x", "test-prog: unknown key \"Name\" in t.conf:1" },
                { "help = x", "test-prog: unknown key \"help\" in t.conf:1" },
                { "na\x01me = x", "test-prog: unknown key \"na\\x01me\" in t.conf:1" },
                { "name = a\n# c\nname = b\n",
                  "test-prog: duplicate key \"name\" in t.conf:3 (first set on line 1)" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                TestConfig c = { 0 };
                char *err = NULL;

                cr_assert_eq(load_text(&c, cases[i].text, &err), -EINVAL, "%s", cases[i].text);
                cr_assert_str_eq(err, cases[i].error);
                free(err);
                sbx_config_done(&table, &c);
        }
}

Test(config, nul_byte_rejected)
{
        static const char text[] = "name = a\0b\n";
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(sbx_config_load_text(&table, &c, text, sizeof(text) - 1, "t.conf", &err), -EINVAL);
        cr_assert_str_eq(err, "test-prog: NUL byte in t.conf:1");
        free(err);
        cr_assert_null(c.name);
}

Test(config, line_length_limit)
{
        /* "name = " is 7 bytes; 4089 more make a line of exactly 4096. */
        char *line = malloc(4096 + 2);
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_not_null(line);
        memcpy(line, "name = ", 7);
        memset(line + 7, 'v', 4089);
        line[4096] = '\n';
        line[4097] = '\0';
        cr_assert_eq(load_text(&c, line, &err), 0, "%s", strempty(err));
        cr_assert_eq(strlen(c.name), 4089);
        sbx_config_done(&table, &c);

        line[4096] = 'v';
        cr_assert_eq(sbx_config_load_text(&table, &c, line, 4097, "t.conf", &err), -EINVAL);
        cr_assert_str_eq(err, "test-prog: line longer than 4096 bytes in t.conf:1");
        free(err);
        free(line);
        cr_assert_null(c.name);
}

Test(config, file_size_limit)
{
        /* 256 comment lines of 4096 bytes each (newline included) make exactly 1 MiB. */
        size_t size = 1 << 20;
        char *text = malloc(size + 1);
        TestConfig c = { 0 };
        char *err = NULL;
        TempFile f;

        cr_assert_not_null(text);
        memset(text, '#', size + 1);
        for (size_t i = 4095; i < size; i += 4096)
                text[i] = '\n';
        cr_assert_eq(sbx_config_load_text(&table, &c, text, size, "t.conf", &err), 0);
        cr_assert_eq(sbx_config_load_text(&table, &c, text, size + 1, "t.conf", &err), -EFBIG);
        cr_assert_str_eq(err, "test-prog: t.conf is larger than 1 MiB");
        free(err);
        err = NULL;

        temp_file_write(&f, text, size + 1);
        cr_assert_eq(LOAD(&c, &err, "--config", f.path), -EFBIG);
        cr_assert(endswith(err, "/test.conf is larger than 1 MiB"), "%s", err);
        free(err);
        sbx_config_done(&table, &c);
        temp_file_remove(&f);
        free(text);
}

Test(config, file_error_names_path_and_line)
{
        static const char text[] = "# agent\nname = a\nmemory-mb = 9000\n";
        _cleanup_free_ char *want = NULL;
        TestConfig c = { 0 };
        char *err = NULL;
        TempFile f;

        temp_file_write(&f, text, strlen(text));
        cr_assert_eq(LOAD(&c, &err, "--config", f.path), -ERANGE);
        cr_assert_geq(asprintf(&want,
                               "test-prog: invalid value \"9000\" for memory-mb (from %s:3): expected an "
                               "integer in "
                               "768..4096",
                               f.path),
                      0);
        cr_assert_str_eq(err, want);
        free(err);
        sbx_config_done(&table, &c);
        temp_file_remove(&f);
}

/* ---- required options ---- */

Test(config, required_missing)
{
        RequiredConfig c = { 0 }, d = { 0 }, e = { 0 };
        char *err = NULL;

        cr_assert_eq(LOAD_REQ(&c, &err), -EINVAL);
        cr_assert_str_eq(err,
                         "req-prog: missing required option endpoints (set --endpoints, SBXREQ_ENDPOINTS or "
                         "endpoints in the config file)");
        free(err);
        err = NULL;

        /* An empty list is as good as none. */
        cr_assert_eq(LOAD_REQ(&d, &err, "--endpoints=,", "--count=1"), -EINVAL);
        cr_assert(startswith(err, "req-prog: missing required option endpoints "), "%s", err);
        free(err);
        err = NULL;

        /* A value option counts as set once any source assigned it; an empty string unsets a default. */
        cr_assert_eq(LOAD_REQ(&e, &err, "--endpoints=a:1"), -EINVAL);
        cr_assert(startswith(err, "req-prog: missing required option count "), "%s", err);
        free(err);
        err = NULL;
        sbx_config_done(&required_table, &e);

        cr_assert_eq(LOAD_REQ(&e, &err, "--endpoints=a:1", "--count=0", "--name="), -EINVAL);
        cr_assert(startswith(err, "req-prog: missing required option name "), "%s", err);
        free(err);
        err = NULL;
        sbx_config_done(&required_table, &e);

        setenv("SBXREQ_COUNT", "7", 1);
        cr_assert_eq(LOAD_REQ(&e, &err, "--endpoints=a:1"), 0, "%s", strempty(err));
        cr_assert_eq(e.count, 7);
        unsetenv("SBXREQ_COUNT");

        sbx_config_done(&required_table, &c);
        sbx_config_done(&required_table, &d);
        sbx_config_done(&required_table, &e);
}

/* ---- help and example ---- */

Test(config, help_returns_1_and_lists_every_key)
{
        char *argv_long[] = { "test-prog", "--memory-mb=1", "--help", "--bogus", NULL };
        char *argv_short[] = { "test-prog", "-h", NULL };
        char *out;
        int r;

        /* Help wins over everything after it and over values not checked yet. */
        out = load_capturing_stdout(&r, argv_long);
        cr_assert_eq(r, 1);
        cr_assert(startswith(out, "Usage: test-prog [OPTIONS]\nExercises the config loader.\n"), "%s", out);
        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                _cleanup_free_ char *entry = NULL;

                cr_assert_geq(asprintf(&entry, "\n  --%s", options[i].key), 0);
                cr_assert_not_null(strstr(out, entry), "%s missing from:\n%s", options[i].key, out);
        }
        cr_assert_not_null(strstr(out, "\n  --memory-mb=INTEGER\n        Memory per sandbox, in MiB.\n"
                                       "        (default: 1024; allowed: 768..4096)\n"),
                           "%s", out);
        cr_assert_not_null(
                strstr(out, "\n  --debug[=BOOL]\n        Log at debug level.\n        (default: false)\n"));
        cr_assert_not_null(strstr(out, "(default: 10GiB; allowed: 1MiB..1TiB)"));
        cr_assert_not_null(strstr(out, "(default: 30s; allowed: 1s..1h)"));
        cr_assert_not_null(strstr(out, "(default: 3; allowed: >= 1)"));
        cr_assert_not_null(strstr(out, "(default: safe; allowed: fast, safe)"));
        cr_assert_not_null(strstr(out, "  --listen=HOST:PORT\n"));
        cr_assert_not_null(
                strstr(out, "        A secret with no default.\n        Second line of the description.\n"
                            "  --config=FILE\n"));
        cr_assert_not_null(strstr(out, "SBXTEST_CONFIG"));
        cr_assert_not_null(strstr(out, "e.g. SBXTEST_NAME"));
        free(out);

        out = load_capturing_stdout(&r, argv_short);
        cr_assert_eq(r, 1);
        cr_assert(startswith(out, "Usage: test-prog [OPTIONS]\n"));
        free(out);
}

Test(config, help_required_option)
{
        char *out = print_to_string(sbx_config_print_help, &required_table);

        cr_assert_not_null(strstr(out, "  --endpoints=LIST\n        Endpoints.\n        (required)\n"), "%s",
                           out);
        cr_assert_not_null(strstr(out, "  --name=STRING\n        Name.\n        (required; default: x)\n"),
                           "%s", out);
        free(out);
}

Test(config, print_config_returns_1)
{
        char *argv[] = { "test-prog", "--print-config", NULL };
        char *out, *example;
        int r;

        out = load_capturing_stdout(&r, argv);
        cr_assert_eq(r, 1);
        example = print_to_string(sbx_config_print_example, &table);
        cr_assert_str_eq(out, example);
        cr_assert(
                startswith(out, "# Example configuration for test-prog.\n# Exercises the config loader.\n"));
        cr_assert_not_null(strstr(out, "\n\n# Memory per sandbox, in MiB.\n# Allowed: 768..4096.\n"
                                       "# memory-mb = 1024\n\n"),
                           "%s", out);
        cr_assert_not_null(strstr(out, "\n\n# A secret with no default.\n# Second line of the description.\n"
                                       "# token =\n"),
                           "%s", out);
        free(out);
        free(example);
}

/* Removes "# " in front of every "<key> =" line, turning the example into a real config file. */
static char *uncomment_example(const SbxConfigTable *t, const char *example)
{
        char *s = strdup(example), *line, *save = NULL, *out = calloc(1, strlen(example) + 1);

        cr_assert_not_null(s);
        cr_assert_not_null(out);
        for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                const char *text = line;

                for (size_t i = 0; i < t->n_options; i++) {
                        const char *after = startswith(line, "# ");

                        after = after ? startswith(after, t->options[i].key) : NULL;
                        if (after && startswith(after, " =")) {
                                text = line + 2;
                                break;
                        }
                }
                strcat(out, text);
                strcat(out, "\n");
        }
        free(s);
        return out;
}

static void assert_same(const TestConfig *a, const TestConfig *b)
{
        cr_assert(streq_ptr(a->name, b->name));
        cr_assert_eq(strv_length(a->peers), strv_length(b->peers));
        for (size_t i = 0; i < strv_length(a->peers); i++)
                cr_assert_str_eq(a->peers[i], b->peers[i]);
        cr_assert_eq(a->debug, b->debug);
        cr_assert_eq(a->memory_mb, b->memory_mb);
        cr_assert_eq(a->offset, b->offset);
        cr_assert_eq(a->retries, b->retries);
        cr_assert_eq(a->workers, b->workers);
        cr_assert_eq(a->disk, b->disk);
        cr_assert_eq(a->timeout, b->timeout);
        cr_assert(streq_ptr(a->mode, b->mode));
        cr_assert(streq_ptr(a->listen, b->listen));
        cr_assert_eq(a->log_level, b->log_level);
        cr_assert_eq(a->log_format, b->log_format);
        cr_assert(streq_ptr(a->token, b->token));
}

Test(config, print_config_round_trip)
{
        char *example = print_to_string(sbx_config_print_example, &table);
        char *text = uncomment_example(&table, example);
        TestConfig defaults = { 0 }, loaded = { 0 };
        char *err = NULL;

        cr_assert_not_null(strstr(text, "\nmemory-mb = 1024\n"), "%s", text);
        cr_assert_not_null(strstr(text, "\ndebug = false\n"), "%s", text);
        cr_assert_eq(LOAD(&defaults, &err), 0);
        cr_assert_eq(sbx_config_load_text(&table, &loaded, text, strlen(text), "example", &err), 0, "%s\n%s",
                     strempty(err), text);
        assert_defaults(&loaded);
        assert_same(&defaults, &loaded);
        sbx_config_done(&table, &defaults);
        sbx_config_done(&table, &loaded);
        free(example);
        free(text);
}

Test(config, print_quotes_defaults_that_need_it)
{
        static const SbxConfigOption opts[] = {
                { .key = "padded",
                  .parse = sbx_config_parse_string,
                  .offset = offsetof(TestConfig, name),
                  .default_value = " a \"b\" " },
                { .key = "quoted",
                  .parse = sbx_config_parse_string,
                  .offset = offsetof(TestConfig, token),
                  .default_value = "\"x" },
        };
        static const SbxConfigTable t = { .program = "p", .options = opts, .n_options = ELEMENTSOF(opts) };
        char *example = print_to_string(sbx_config_print_example, &t);
        char *text = uncomment_example(&t, example);
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_not_null(strstr(example, "# padded = \" a \\\"b\\\" \"\n"), "%s", example);
        cr_assert_eq(sbx_config_load_text(&t, &c, text, strlen(text), "example", &err), 0, "%s",
                     strempty(err));
        cr_assert_str_eq(c.name, " a \"b\" ");
        cr_assert_str_eq(c.token, "\"x");
        sbx_config_done(&t, &c);
        free(example);
        free(text);
}

/* ---- ownership ---- */

Test(config, replaced_values_are_freed)
{
        static const char text[] = "name = file\npeers = f:1,f:2\nmode = fast\nlisten = :1\ntoken = t1\n";
        TestConfig c = { 0 };
        char *err = NULL;
        TempFile f;

        /* Every pointer option is set by all four sources; ASan's leak check is the assertion. */
        temp_file_write(&f, text, strlen(text));
        setenv("SBXTEST_NAME", "env", 1);
        setenv("SBXTEST_PEERS", "e:1", 1);
        setenv("SBXTEST_MODE", "safe", 1);
        setenv("SBXTEST_LISTEN", ":2", 1);
        setenv("SBXTEST_TOKEN", "t2", 1);
        cr_assert_eq(LOAD(&c, &err, "--config", f.path, "--name=flag", "--peers=g:1,g:2,g:3", "--mode=fast",
                          "--listen=:3", "--token=t3", "--name=flag2"),
                     0, "%s", strempty(err));
        cr_assert_str_eq(c.name, "flag2");
        cr_assert_eq(strv_length(c.peers), 3);
        cr_assert_str_eq(c.mode, "fast");
        cr_assert_str_eq(c.listen, ":3");
        cr_assert_str_eq(c.token, "t3");

        /* Loading on top of a loaded struct (as a reload would not, but a caller might) also frees. */
        cr_assert_eq(load_text(&c, "name = again\npeers = z:9\n", &err), 0);
        cr_assert_str_eq(c.name, "again");

        sbx_config_done(&table, &c);
        cr_assert_null(c.name);
        cr_assert_null(c.peers);
        cr_assert_null(c.mode);
        cr_assert_null(c.listen);
        cr_assert_null(c.token);
        sbx_config_done(&table, &c); /* twice is harmless */
        ASSERT_NO_LEAKS();

        unsetenv("SBXTEST_NAME");
        unsetenv("SBXTEST_PEERS");
        unsetenv("SBXTEST_MODE");
        unsetenv("SBXTEST_LISTEN");
        unsetenv("SBXTEST_TOKEN");
        temp_file_remove(&f);
}

Test(config, error_leaves_loaded_fields_to_done)
{
        TestConfig c = { 0 };
        char *err = NULL;

        cr_assert_eq(LOAD(&c, &err, "--name=x", "--memory-mb=1"), -ERANGE);
        cr_assert_str_eq(c.name, "x");
        free(err);
        sbx_config_done(&table, &c);
        ASSERT_NO_LEAKS();
}

/* ---- the table itself ---- */

Test(config, invalid_tables)
{
        static const SbxConfigOption reserved[] = {
                { .key = "config", .parse = sbx_config_parse_string },
        };
        static const SbxConfigOption twice[] = {
                { .key = "a", .parse = sbx_config_parse_string },
                { .key = "a", .parse = sbx_config_parse_string },
        };
        static const SbxConfigOption upper[] = {
                { .key = "Abc", .parse = sbx_config_parse_string },
        };
        static const SbxConfigOption no_choices[] = {
                { .key = "c", .parse = sbx_config_parse_choice },
        };
        static const SbxConfigOption empty_range[] = {
                { .key = "n", .parse = sbx_config_parse_int, .min = 5, .max = 1 },
        };
        static const struct {
                const SbxConfigOption *options;
                size_t n;
                const char *error;
        } cases[] = {
                { reserved, 1, "p: invalid option table: config is reserved for the loader" },
                { twice, 2, "p: invalid option table: a appears twice" },
                { upper, 1, "p: invalid option table: bad key \"Abc\"" },
                { no_choices, 1, "p: invalid option table: c has no choices" },
                { empty_range, 1, "p: invalid option table: n has an empty range" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                SbxConfigTable t = { .program = "p", .options = cases[i].options, .n_options = cases[i].n };
                char buf[64] = { 0 };
                char *err = NULL;

                cr_assert_eq(load_argv(&t, buf, &err, (char *[]){ "p", NULL }), -EINVAL);
                cr_assert_str_eq(err, cases[i].error);
                free(err);
                err = NULL;
                cr_assert_eq(sbx_config_load_text(&t, buf, "", 0, "x", &err), -EINVAL);
                free(err);
        }
}

Test(config, parser_contract_without_out_parameters)
{
        SbxConfigOption o = { .key = "n", .parse = sbx_config_parse_int, .min = 1, .max = 2 };
        const char *expected = NULL;
        int64_t v = 42;

        /* Called directly with only ret_expected, a parser falls back to a static description. */
        cr_assert_eq(sbx_config_parse_int(&o, "3", &v, &expected, NULL), -ERANGE);
        cr_assert_str_eq(expected, "an integer");
        cr_assert_eq(v, 42);
        cr_assert_eq(sbx_config_parse_int(&o, "x", &v, NULL, NULL), -EINVAL);
        cr_assert_eq(sbx_config_parse_int(&o, "2", &v, NULL, NULL), 0);
        cr_assert_eq(v, 2);
}
