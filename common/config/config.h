/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Declarative configuration. Each program describes its settings in one table of SbxConfigOption
 * and keeps the values in one struct; a single loader fills the struct from, in increasing
 * precedence:
 *
 *   1. each option's default (a string, parsed by the option's own parser),
 *   2. a config file: --config FILE, or the environment variable <ENV_PREFIX>CONFIG,
 *   3. environment variables <ENV_PREFIX><KEY> (key upper-cased, '-' → '_'),
 *   4. command-line flags --<key>=<value> or --<key> <value> (a bool flag alone means true and
 *      never takes the next argument as its value; use --<key>=false).
 *
 * A later source replaces an earlier value (lists too: they are not merged). An empty value unsets a
 * string, list, choice or address option (the field becomes NULL); for other kinds it is invalid.
 * Environment variables with the prefix that name no option are ignored, since environments are
 * shared; unknown keys in the file and unknown flags are errors, as are positional arguments.
 *
 * The same table prints --help and a documented example file (--print-config), so the docs and the
 * code cannot drift. Unknown keys and bad values are rejected with a message that names the key,
 * the value, where it came from, and what is allowed:
 *
 *   sbx-agent: invalid value "9000" for memory-mb (from /etc/sbx/agent.conf:12): expected an
 *   integer in 768..4096
 *
 * File syntax: one `key = value` per line; '#' starts a comment line; blank lines are ignored;
 * a value may be double-quoted, with \" and \\ escapes inside. A key given twice in one file is an
 * error. Whitespace around the key and the value is trimmed; nothing follows a closing quote; '#'
 * inside a value is part of it. Files are limited to 1 MiB and lines to 4096 bytes; NUL bytes are
 * rejected.
 *
 * A reload builds a new struct with sbx_config_load() and swaps it in only when loading succeeded.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct SbxConfigOption SbxConfigOption;

/*
 * Parses `value` into the field at `field` (the struct base + option offset), freeing what the field
 * held before. On failure returns a negative error (-EINVAL bad syntax, -ERANGE out of range,
 * -ENOMEM) and sets *ret_expected to a static description of what is allowed, or to a malloc'ed one
 * (then *ret_expected_free is set true); the text completes "expected ..." ("an integer in 1..64").
 * The field is not modified on failure.
 */
typedef int (*SbxConfigParser)(const SbxConfigOption *o, const char *value, void *field,
                               const char **ret_expected, bool *ret_expected_free);

/* Frees whatever the parser allocated in the field (strings, lists); NULL for plain values. */
typedef void (*SbxConfigFreer)(void *field);

struct SbxConfigOption {
        /* Key in files and flag name: lower-case words joined by '-' ("etcd-endpoints"). */
        const char *key;
        SbxConfigParser parse;
        /* offsetof(the program's config struct, field). */
        size_t offset;
        /* Text parsed at start; NULL leaves the field zeroed (and "unset" for strings). */
        const char *default_value;
        /* One sentence for --help and the example file. */
        const char *description;
        /* Inclusive range for integer, size (bytes) and duration (microseconds) parsers; both 0 means
         * unbounded. INT64_MAX as max means "no upper bound". */
        int64_t min, max;
        /* NULL-terminated allowed values for sbx_config_parse_choice. */
        const char *const *choices;
        /* Loading fails when a required option is still unset (NULL string / empty list) at the end;
         * an option of another kind is unset when no source (default included) gave it a value. */
        bool required;
        /* Placeholder for --help ("ADDRESS", "DURATION"); derived from the parser when NULL. */
        const char *metavar;
};

typedef struct SbxConfigTable {
        /* Program name used in messages and --help ("sbx-agent"). */
        const char *program;
        /* One line saying what the program is, printed at the top of --help. */
        const char *summary;
        /* Prefix of environment variables, including the trailing '_' ("SBX_AGENT_"). */
        const char *env_prefix;
        const SbxConfigOption *options;
        size_t n_options;
} SbxConfigTable;

/* Parsers. Field types: string → char*, strv → char** (NULL-terminated), bool → bool, int → int64_t,
 * uint32 → uint32_t, size → uint64_t (bytes; "10GiB"), duration → uint64_t (usec; "30s"),
 * choice → char* (one of o->choices), address → char* ("host:port", "[v6]:port", ":port" for every
 * local address, or "unix:/absolute/path"; port 0..65535), log_level → SbxLogLevel, log_format →
 * SbxLogFormat. Ranges come from o->min / o->max. The loader recognises these parsers by address to
 * know how to free and print their fields; a program's own parser is treated as a plain value. */
int sbx_config_parse_string(const SbxConfigOption *o, const char *value, void *field,
                            const char **ret_expected, bool *ret_expected_free);
int sbx_config_parse_strv(const SbxConfigOption *o, const char *value, void *field,
                          const char **ret_expected, bool *ret_expected_free);
int sbx_config_parse_bool(const SbxConfigOption *o, const char *value, void *field,
                          const char **ret_expected, bool *ret_expected_free);
int sbx_config_parse_int(const SbxConfigOption *o, const char *value, void *field, const char **ret_expected,
                         bool *ret_expected_free);
int sbx_config_parse_uint32(const SbxConfigOption *o, const char *value, void *field,
                            const char **ret_expected, bool *ret_expected_free);
int sbx_config_parse_size(const SbxConfigOption *o, const char *value, void *field,
                          const char **ret_expected, bool *ret_expected_free);
int sbx_config_parse_duration(const SbxConfigOption *o, const char *value, void *field,
                              const char **ret_expected, bool *ret_expected_free);
int sbx_config_parse_choice(const SbxConfigOption *o, const char *value, void *field,
                            const char **ret_expected, bool *ret_expected_free);
int sbx_config_parse_address(const SbxConfigOption *o, const char *value, void *field,
                             const char **ret_expected, bool *ret_expected_free);
int sbx_config_parse_log_level(const SbxConfigOption *o, const char *value, void *field,
                               const char **ret_expected, bool *ret_expected_free);
int sbx_config_parse_log_format(const SbxConfigOption *o, const char *value, void *field,
                                const char **ret_expected, bool *ret_expected_free);

/*
 * Fills `config` (zeroed by the caller) from defaults, file, environment and argv as described at
 * the top. argv[0] is skipped. Returns:
 *   0   loaded; run the program
 *   1   --help or --print-config was handled (printed to stdout); exit 0
 *  <0   error; *ret_error holds the message (caller frees), already prefixed with the program name
 *       (NULL only if memory ran out while writing it). *ret_error is not written on success.
 * On error the fields hold whatever was loaded so far; call sbx_config_done() in every case.
 * The table is checked first: a bad key, a duplicate, a reserved key (config, help, print-config),
 * a choice without choices or an empty range is reported as "invalid option table".
 */
int sbx_config_load(const SbxConfigTable *t, void *config, int argc, char *const *argv, char **ret_error);

/*
 * Applies `key = value` text (a config file's content, `size` bytes, not necessarily NUL-terminated)
 * to `config`; `source` names it in messages ("/etc/sbx/agent.conf" → "from /etc/sbx/agent.conf:12").
 * Applies no defaults and checks no required options. Errors as for sbx_config_load().
 */
int sbx_config_load_text(const SbxConfigTable *t, void *config, const char *text, size_t size,
                         const char *source, char **ret_error);

/* Frees every string and list field the table owns and sets it to NULL; the struct itself stays.
 * Calling it twice is harmless. */
void sbx_config_done(const SbxConfigTable *t, void *config);

/* Writes --help: usage, summary, then each option with metavar, description, default and range,
 * and a note on the config file and the environment prefix. */
void sbx_config_print_help(const SbxConfigTable *t, FILE *f);

/* Writes a documented example file: each option as comment lines plus "# key = default". With
 * the "# " taken off those lines it loads back to the defaults. */
void sbx_config_print_example(const SbxConfigTable *t, FILE *f);
