/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the config file parser, and the flag parser with the same bytes read as one argument per
 * line. The table has an option of every built-in parser kind, so every parser sees hostile values
 * and every replace-and-free path runs; ASan/LSan turn a crash or a leak into a finding.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/base/time-util.h"
#include "common/config/config.h"
#include "common/log/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct FuzzConfig {
        char *name;
        char **peers;
        bool debug;
        int64_t count;
        int64_t offset;
        uint32_t workers;
        uint64_t disk;
        uint64_t timeout;
        char *mode;
        char *listen;
        SbxLogLevel log_level;
        SbxLogFormat log_format;
} FuzzConfig;

static const char *const modes[] = { "fast", "safe", NULL };

static const SbxConfigOption options[] = {
        { .key = "name",
          .parse = sbx_config_parse_string,
          .offset = offsetof(FuzzConfig, name),
          .default_value = "node" },
        { .key = "peers",
          .parse = sbx_config_parse_strv,
          .offset = offsetof(FuzzConfig, peers),
          .required = true },
        { .key = "debug", .parse = sbx_config_parse_bool, .offset = offsetof(FuzzConfig, debug) },
        { .key = "count",
          .parse = sbx_config_parse_int,
          .offset = offsetof(FuzzConfig, count),
          .default_value = "1024",
          .min = 768,
          .max = 4096 },
        { .key = "offset",
          .parse = sbx_config_parse_int,
          .offset = offsetof(FuzzConfig, offset),
          .min = 1,
          .max = INT64_MAX },
        { .key = "workers",
          .parse = sbx_config_parse_uint32,
          .offset = offsetof(FuzzConfig, workers),
          .default_value = "4" },
        { .key = "disk",
          .parse = sbx_config_parse_size,
          .offset = offsetof(FuzzConfig, disk),
          .default_value = "10GiB",
          .min = 1 << 20,
          .max = 1LL << 40 },
        { .key = "timeout",
          .parse = sbx_config_parse_duration,
          .offset = offsetof(FuzzConfig, timeout),
          .default_value = "30s",
          .min = USEC_PER_SEC,
          .max = USEC_PER_HOUR },
        { .key = "mode",
          .parse = sbx_config_parse_choice,
          .offset = offsetof(FuzzConfig, mode),
          .default_value = "safe",
          .choices = modes },
        { .key = "listen",
          .parse = sbx_config_parse_address,
          .offset = offsetof(FuzzConfig, listen),
          .default_value = ":8080" },
        { .key = "log-level",
          .parse = sbx_config_parse_log_level,
          .offset = offsetof(FuzzConfig, log_level),
          .default_value = "info" },
        { .key = "log-format",
          .parse = sbx_config_parse_log_format,
          .offset = offsetof(FuzzConfig, log_format),
          .default_value = "text" },
};

/* No environment prefix: the fuzzer's environment must not change what an input does. */
static const SbxConfigTable table = {
        .program = "fuzz-config",
        .options = options,
        .n_options = ELEMENTSOF(options),
};

#define MAX_ARGS 64

/* True for arguments that would print to stdout or read a file named by the input. */
static bool skip_arg(const char *a)
{
        return streq(a, "-h") || streq(a, "--help") || streq(a, "--print-config") ||
               startswith(a, "--config");
}

static void fuzz_argv(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *copy = malloc(size + 1);
        char *argv[MAX_ARGS + 1] = { "fuzz-config" };
        FuzzConfig c = { 0 };
        char *err = NULL, *p;
        int argc = 1;

        if (!copy)
                return;
        memcpy(copy, data, size);
        copy[size] = '\0';
        for (p = copy; p && argc < MAX_ARGS;) {
                char *nl = strchr(p, '\n');

                if (nl)
                        *nl = '\0';
                if (!skip_arg(p))
                        argv[argc++] = p;
                p = nl ? nl + 1 : NULL;
        }
        argv[argc] = NULL;

        (void)sbx_config_load(&table, &c, argc, argv, &err);
        free(err);
        sbx_config_done(&table, &c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        FuzzConfig c = { 0 };
        char *err = NULL;

        (void)sbx_config_load_text(&table, &c, (const char *)data, size, "fuzz.conf", &err);
        free(err);
        err = NULL;
        /* Again on top of the first result: every value the input set is now replaced and freed. */
        (void)sbx_config_load_text(&table, &c, (const char *)data, size, "fuzz.conf", &err);
        free(err);
        sbx_config_done(&table, &c);

        fuzz_argv(data, size);
        return 0;
}
