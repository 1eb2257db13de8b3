/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The value parsers of the config module and what the loader knows about each of them. A parser
 * either writes its field and frees what the field held before, or fails without touching it and
 * says what it would have accepted; the loader turns that into a message.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "common/base/buffer.h"
#include "common/base/macro.h"
#include "common/base/parse.h"
#include "common/base/string-util.h"
#include "common/base/time-util.h"
#include "common/config/config-internal.h"
#include "common/log/log.h"

static void free_string(void *field)
{
        char **s = field;

        free(*s);
        *s = NULL;
}

static void free_strv(void *field)
{
        char ***l = field;

        *l = strv_free(*l);
}

static const struct {
        SbxConfigParser parse;
        SbxConfigKindInfo info;
} kinds[] = {
        { sbx_config_parse_string, { SBX_CONFIG_KIND_STRING, "STRING", free_string, true, NULL } },
        { sbx_config_parse_strv, { SBX_CONFIG_KIND_STRV, "LIST", free_strv, true, NULL } },
        { sbx_config_parse_bool, { SBX_CONFIG_KIND_BOOL, "BOOL", NULL, false, "false" } },
        { sbx_config_parse_int, { SBX_CONFIG_KIND_INT, "INTEGER", NULL, false, "0" } },
        { sbx_config_parse_uint32, { SBX_CONFIG_KIND_UINT32, "INTEGER", NULL, false, "0" } },
        { sbx_config_parse_size, { SBX_CONFIG_KIND_SIZE, "SIZE", NULL, false, "0" } },
        { sbx_config_parse_duration, { SBX_CONFIG_KIND_DURATION, "DURATION", NULL, false, "0s" } },
        { sbx_config_parse_choice, { SBX_CONFIG_KIND_CHOICE, "CHOICE", free_string, true, NULL } },
        { sbx_config_parse_address, { SBX_CONFIG_KIND_ADDRESS, "ADDRESS", free_string, true, NULL } },
        /* The zero values of the enums: SBX_LOG_DEBUG and SBX_LOG_TEXT. */
        { sbx_config_parse_log_level, { SBX_CONFIG_KIND_LOG_LEVEL, "LEVEL", NULL, false, "debug" } },
        { sbx_config_parse_log_format, { SBX_CONFIG_KIND_LOG_FORMAT, "FORMAT", NULL, false, "text" } },
};

static const SbxConfigKindInfo custom_kind = { SBX_CONFIG_KIND_CUSTOM, "VALUE", NULL, false, NULL };

const SbxConfigKindInfo *sbx__config_kind(const SbxConfigOption *o)
{
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++)
                if (kinds[i].parse == o->parse)
                        return &kinds[i].info;
        return &custom_kind;
}

/* Reports a failure the way SbxConfigParser promises; `dynamic` (may be NULL) is handed over. */
static int fail(int r, const char *fallback, char *dynamic, const char **ret_expected,
                bool *ret_expected_free)
{
        /* Without both out-parameters a malloc'ed description could not be handed back. */
        if (dynamic && ret_expected && ret_expected_free) {
                *ret_expected = dynamic;
                *ret_expected_free = true;
                return r;
        }
        free(dynamic);
        if (ret_expected)
                *ret_expected = fallback;
        if (ret_expected_free)
                *ret_expected_free = false;
        return r;
}

/* Replaces the string in `field` with a copy of `value`, or with NULL when the value is empty. */
static int replace_string(void *field, const char *value)
{
        char **s = field;
        char *copy = NULL;

        if (!isempty(value)) {
                copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
        }
        free(*s);
        *s = copy;
        return 0;
}

/* ---- ranges ---- */

/* The effective inclusive range of a numeric option; a side without a bound is unlimited. */
typedef struct Bounds {
        bool has_lo, has_hi;
        int64_t lo, hi;
} Bounds;

static Bounds get_bounds(const SbxConfigOption *o, SbxConfigKind kind)
{
        Bounds b = { 0 };

        if (sbx__config_bounded(o))
                b = (Bounds){ .has_lo = true, .has_hi = true, .lo = o->min, .hi = o->max };

        if (kind == SBX_CONFIG_KIND_INT) {
                /* The extremes of int64_t say nothing a reader needs to be told. */
                if (b.has_lo && b.lo == INT64_MIN)
                        b.has_lo = false;
                if (b.has_hi && b.hi == INT64_MAX)
                        b.has_hi = false;
                return b;
        }

        /* Unsigned fields: nothing below zero, and a uint32_t field nothing above UINT32_MAX. */
        if (!b.has_lo || b.lo < 0) {
                b.has_lo = true;
                b.lo = 0;
        }
        if (kind == SBX_CONFIG_KIND_UINT32 && (!b.has_hi || b.hi > (int64_t)UINT32_MAX)) {
                b.has_hi = true;
                b.hi = UINT32_MAX;
        }
        if (b.has_hi && b.hi == INT64_MAX)
                b.has_hi = false;
        return b;
}

static bool in_range_signed(const Bounds *b, int64_t v)
{
        return (!b->has_lo || v >= b->lo) && (!b->has_hi || v <= b->hi);
}

static bool in_range_unsigned(const Bounds *b, uint64_t v)
{
        if (b->has_lo && b->lo > 0 && v < (uint64_t)b->lo)
                return false;
        if (b->has_hi && (b->hi < 0 || v > (uint64_t)b->hi))
                return false;
        return true;
}

/* Sizes read best in the largest IEC unit that divides them exactly, otherwise in bytes. */
static void format_size(char *buf, size_t n, uint64_t bytes)
{
        static const struct {
                uint64_t mult;
                const char *unit;
        } units[] = {
                { 1ULL << 40, "TiB" }, { 1ULL << 30, "GiB" }, { 1ULL << 20, "MiB" }, { 1ULL << 10, "KiB" }
        };

        if (bytes == 0) {
                snprintf(buf, n, "0");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (bytes % units[i].mult == 0) {
                        snprintf(buf, n, "%" PRIu64 "%s", bytes / units[i].mult, units[i].unit);
                        return;
                }
        snprintf(buf, n, "%" PRIu64 "B", bytes);
}

static void format_bound(SbxConfigKind kind, int64_t v, char *buf, size_t n)
{
        if (kind == SBX_CONFIG_KIND_SIZE)
                format_size(buf, n, (uint64_t)v);
        else if (kind == SBX_CONFIG_KIND_DURATION)
                sbx_format_duration(buf, n, (usec_t)v);
        else
                snprintf(buf, n, "%" PRId64, v);
}

/* "lo..hi", ">= lo" or "<= hi"; NULL in *ret when the range is the whole type. */
static int describe_range(const SbxConfigOption *o, SbxConfigKind kind, char **ret)
{
        Bounds b = get_bounds(o, kind);
        char lo[SBX_DURATION_MAX], hi[SBX_DURATION_MAX];
        char *s = NULL;
        int n;

        /* An unsigned range starting at 0 with no top is no restriction at all. */
        if (kind != SBX_CONFIG_KIND_INT && b.has_lo && b.lo == 0 && !b.has_hi)
                b.has_lo = false;

        format_bound(kind, b.lo, lo, sizeof(lo));
        format_bound(kind, b.hi, hi, sizeof(hi));
        if (b.has_lo && b.has_hi)
                n = asprintf(&s, "%s..%s", lo, hi);
        else if (b.has_lo)
                n = asprintf(&s, ">= %s", lo);
        else if (b.has_hi)
                n = asprintf(&s, "<= %s", hi);
        else {
                *ret = NULL;
                return 0;
        }
        if (n < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* "<what> in 1..5" or "<what> >= 1": a range reads as a place, a one-sided bound as a comparison. */
static char *expected_with_range(const SbxConfigOption *o, SbxConfigKind kind, const char *what,
                                 const char *tail)
{
        _cleanup_free_ char *range = NULL;
        char *s = NULL;

        if (describe_range(o, kind, &range) < 0)
                return NULL;
        if (asprintf(&s, "%s%s%s%s", what, range ? (strstr(range, "..") ? " in " : " ") : "",
                     strempty(range), strempty(tail)) < 0)
                return NULL;
        return s;
}

/* "<prefix>a, b, c" */
static int join_choices(const char *prefix, const char *const *choices, char **ret)
{
        SbxBuffer b = SBX_BUFFER_INIT;
        int r;

        r = sbx_buffer_append_str(&b, prefix);
        for (size_t i = 0; r >= 0 && choices && choices[i]; i++)
                r = sbx_buffer_appendf(&b, "%s%s", i > 0 ? ", " : "", choices[i]);
        if (r >= 0)
                r = sbx_buffer_steal_string(&b, ret);
        sbx_buffer_done(&b);
        return r;
}

static const char *const log_level_choices[] = { "debug", "info", "warning", "error", NULL };
static const char *const log_format_choices[] = { "text", "json", NULL };

int sbx__config_describe_allowed(const SbxConfigOption *o, char **ret)
{
        SbxConfigKind kind = sbx__config_kind(o)->kind;

        switch (kind) {
        case SBX_CONFIG_KIND_UINT32:
                /* "0..4294967295" is the type, not a choice the program made: not worth a line. */
                if (!sbx__config_bounded(o)) {
                        *ret = NULL;
                        return 0;
                }
                return describe_range(o, kind, ret);
        case SBX_CONFIG_KIND_INT:
        case SBX_CONFIG_KIND_SIZE:
        case SBX_CONFIG_KIND_DURATION:
                return describe_range(o, kind, ret);
        case SBX_CONFIG_KIND_CHOICE:
                return join_choices("", o->choices, ret);
        case SBX_CONFIG_KIND_LOG_LEVEL:
                return join_choices("", log_level_choices, ret);
        case SBX_CONFIG_KIND_LOG_FORMAT:
                return join_choices("", log_format_choices, ret);
        default:
                *ret = NULL;
                return 0;
        }
}

/* ---- parsers ---- */

int sbx_config_parse_string(const SbxConfigOption *o, const char *value, void *field,
                            const char **ret_expected, bool *ret_expected_free)
{
        return replace_string(field, value);
}

int sbx_config_parse_strv(const SbxConfigOption *o, const char *value, void *field,
                          const char **ret_expected, bool *ret_expected_free)
{
        _cleanup_strv_free_ char **l = NULL;
        char ***dst = field;
        int r;

        r = strv_split(value, ',', &l);
        if (r < 0)
                return r;
        /* An empty list is stored as NULL so that "unset" looks the same however it came about. */
        if (!l[0])
                l = strv_free(l);
        strv_free(*dst);
        *dst = TAKE_PTR(l);
        return 0;
}

int sbx_config_parse_bool(const SbxConfigOption *o, const char *value, void *field,
                          const char **ret_expected, bool *ret_expected_free)
{
        bool b;

        if (sbx_parse_bool(value, &b) < 0)
                return fail(-EINVAL, "a boolean (true/false, yes/no, on/off, 1/0)", NULL, ret_expected,
                            ret_expected_free);
        *(bool *)field = b;
        return 0;
}

int sbx_config_parse_int(const SbxConfigOption *o, const char *value, void *field, const char **ret_expected,
                         bool *ret_expected_free)
{
        Bounds b = get_bounds(o, SBX_CONFIG_KIND_INT);
        int64_t v;
        int r;

        r = sbx_parse_int64(value, &v);
        if (r >= 0 && !in_range_signed(&b, v))
                r = -ERANGE;
        if (r < 0)
                return fail(r, "an integer", expected_with_range(o, SBX_CONFIG_KIND_INT, "an integer", NULL),
                            ret_expected, ret_expected_free);
        *(int64_t *)field = v;
        return 0;
}

int sbx_config_parse_uint32(const SbxConfigOption *o, const char *value, void *field,
                            const char **ret_expected, bool *ret_expected_free)
{
        Bounds b = get_bounds(o, SBX_CONFIG_KIND_UINT32);
        uint32_t v;
        int r;

        r = sbx_parse_uint32(value, &v);
        if (r >= 0 && !in_range_unsigned(&b, v))
                r = -ERANGE;
        if (r < 0)
                return fail(r, "a non-negative integer",
                            expected_with_range(o, SBX_CONFIG_KIND_UINT32, "an integer", NULL), ret_expected,
                            ret_expected_free);
        *(uint32_t *)field = v;
        return 0;
}

int sbx_config_parse_size(const SbxConfigOption *o, const char *value, void *field,
                          const char **ret_expected, bool *ret_expected_free)
{
        static const char syntax[] =
                " (a number of bytes with an optional unit: K, M, G, T, KiB, MiB, GiB, TiB, "
                "kB, MB, GB or TB)";
        Bounds b = get_bounds(o, SBX_CONFIG_KIND_SIZE);
        uint64_t v;
        int r;

        r = sbx_parse_size(value, &v);
        if (r == -EINVAL)
                return fail(r, "a size such as 4096, 512M or 10GiB",
                            expected_with_range(o, SBX_CONFIG_KIND_SIZE, "a size", syntax), ret_expected,
                            ret_expected_free);
        if (r >= 0 && !in_range_unsigned(&b, v))
                r = -ERANGE;
        /* The syntax was fine: only the range is worth repeating. */
        if (r < 0)
                return fail(r, "a smaller size",
                            expected_with_range(o, SBX_CONFIG_KIND_SIZE, "a size", NULL), ret_expected,
                            ret_expected_free);
        *(uint64_t *)field = v;
        return 0;
}

int sbx_config_parse_duration(const SbxConfigOption *o, const char *value, void *field,
                              const char **ret_expected, bool *ret_expected_free)
{
        static const char syntax[] =
                " (numbers with units us, ms, s, m, h or d, such as 250ms, 30s or 1h30m)";
        Bounds b = get_bounds(o, SBX_CONFIG_KIND_DURATION);
        usec_t v;
        int r;

        r = sbx_parse_duration(value, &v);
        if (r == -EINVAL)
                return fail(r, "a duration such as 250ms, 30s or 1h30m",
                            expected_with_range(o, SBX_CONFIG_KIND_DURATION, "a duration", syntax),
                            ret_expected, ret_expected_free);
        if (r >= 0 && !in_range_unsigned(&b, v))
                r = -ERANGE;
        if (r < 0)
                return fail(r, "a shorter duration",
                            expected_with_range(o, SBX_CONFIG_KIND_DURATION, "a duration", NULL),
                            ret_expected, ret_expected_free);
        *(uint64_t *)field = v;
        return 0;
}

static int fail_choices(const char *const *choices, const char **ret_expected, bool *ret_expected_free)
{
        char *list = NULL;

        (void)join_choices("one of: ", choices, &list);
        return fail(-EINVAL, "one of the documented values", list, ret_expected, ret_expected_free);
}

int sbx_config_parse_choice(const SbxConfigOption *o, const char *value, void *field,
                            const char **ret_expected, bool *ret_expected_free)
{
        if (isempty(value))
                return replace_string(field, NULL);
        for (size_t i = 0; o->choices && o->choices[i]; i++)
                if (streq(o->choices[i], value))
                        return replace_string(field, o->choices[i]);
        return fail_choices(o->choices, ret_expected, ret_expected_free);
}

/* Names and IPv4 literals; IPv6 needs brackets, so a ':' here means the address is malformed. */
static bool valid_host(const char *s, size_t n)
{
        char buf[INET_ADDRSTRLEN];
        struct in_addr a;
        bool numeric = true;

        if (n == 0 || n > 253)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_'))
                        return false;
                if (!((c >= '0' && c <= '9') || c == '.'))
                        numeric = false;
        }
        if (s[0] == '-' || s[0] == '.')
                return false;
        /* "999.1.2.3" would otherwise pass as a host name and fail much later, in a resolver. */
        if (numeric) {
                if (n >= sizeof(buf))
                        return false;
                memcpy(buf, s, n);
                buf[n] = '\0';
                return inet_pton(AF_INET, buf, &a) == 1;
        }
        return true;
}

static bool valid_address(const char *value)
{
        const char *port, *path;
        uint32_t p;

        path = startswith(value, "unix:");
        if (path)
                return path[0] == '/' && strlen(path) < sizeof(((struct sockaddr_un *)NULL)->sun_path);

        if (value[0] == '[') {
                const char *close = strchr(value, ']');
                char buf[INET6_ADDRSTRLEN];
                struct in6_addr a;
                size_t n;

                if (!close || close[1] != ':')
                        return false;
                n = (size_t)(close - value - 1);
                if (n == 0 || n >= sizeof(buf))
                        return false;
                memcpy(buf, value + 1, n);
                buf[n] = '\0';
                if (inet_pton(AF_INET6, buf, &a) != 1)
                        return false;
                port = close + 2;
        } else {
                const char *colon = strrchr(value, ':');

                if (!colon)
                        return false;
                /* An empty host (":8080") means every local address. */
                if (colon > value && !valid_host(value, (size_t)(colon - value)))
                        return false;
                port = colon + 1;
        }

        return sbx_parse_uint32(port, &p) >= 0 && p <= 65535;
}

int sbx_config_parse_address(const SbxConfigOption *o, const char *value, void *field,
                             const char **ret_expected, bool *ret_expected_free)
{
        if (isempty(value))
                return replace_string(field, NULL);
        if (!valid_address(value))
                return fail(-EINVAL,
                            "an address: host:port, [ipv6]:port, :port (all addresses) or unix:/path, "
                            "with a port in 0..65535",
                            NULL, ret_expected, ret_expected_free);
        return replace_string(field, value);
}

int sbx_config_parse_log_level(const SbxConfigOption *o, const char *value, void *field,
                               const char **ret_expected, bool *ret_expected_free)
{
        SbxLogLevel level;

        if (!value || sbx_log_level_from_string(value, &level) < 0)
                return fail_choices(log_level_choices, ret_expected, ret_expected_free);
        *(SbxLogLevel *)field = level;
        return 0;
}

int sbx_config_parse_log_format(const SbxConfigOption *o, const char *value, void *field,
                                const char **ret_expected, bool *ret_expected_free)
{
        SbxLogFormat format;

        if (!value || sbx_log_format_from_string(value, &format) < 0)
                return fail_choices(log_format_choices, ret_expected, ret_expected_free);
        *(SbxLogFormat *)field = format;
        return 0;
}
