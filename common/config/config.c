/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The loader and the printers. One pass over argv finds the config file and the help requests
 * before anything is applied, so that --help works even when the file is broken; then defaults,
 * file, environment and flags are applied in that order, each parser replacing what the previous
 * source left in the field.
 */
#include "common/config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/buffer.h"
#include "common/base/error.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/config/config-internal.h"

/* Values are cut in messages after this many bytes: enough to recognise, not enough to flood. */
#define QUOTE_MAX 200

typedef enum SourceKind {
        SOURCE_DEFAULT,
        SOURCE_FILE,
        SOURCE_ENV,
        SOURCE_FLAG,
} SourceKind;

/* Where a value came from; formatted only when a message needs it. */
typedef struct Source {
        SourceKind kind;
        const char *name; /* file path, variable name or option key */
        unsigned line;
} Source;

/* One load in progress. `set` is NULL for sbx_config_load_text(), which checks no required options. */
typedef struct Loader {
        const SbxConfigTable *t;
        void *config;
        bool *set;
        char **ret_error;
} Loader;

/* A flag found in argv, applied after the file and the environment. */
typedef struct Flag {
        size_t index;
        const char *value;
} Flag;

static const char *program_name(const SbxConfigTable *t)
{
        return t && t->program ? t->program : "sbx";
}

/*
 * Sets *ret_error to "<program>: <message>" and returns r. Under memory pressure the message may be
 * NULL; the error code is still right.
 */
_printf_(4, 5) static int errorf(const SbxConfigTable *t, char **ret_error, int r, const char *fmt, ...)
{
        SbxBuffer b = SBX_BUFFER_INIT;
        char *msg = NULL;
        va_list ap;
        int k;

        if (!ret_error)
                return r;
        k = sbx_buffer_appendf(&b, "%s: ", program_name(t));
        if (k >= 0) {
                va_start(ap, fmt);
                k = sbx_buffer_appendv(&b, fmt, ap);
                va_end(ap);
        }
        if (k >= 0)
                (void)sbx_buffer_steal_string(&b, &msg);
        sbx_buffer_done(&b);
        *ret_error = msg;
        return r;
}

/*
 * A value or key as a double-quoted string for messages. Control bytes are escaped so that a
 * hostile file cannot write terminal escapes into the log of whoever reads the error.
 */
static char *quote(const char *s)
{
        SbxBuffer b = SBX_BUFFER_INIT;
        char *ret = NULL;
        int r;

        r = sbx_buffer_append_str(&b, "\"");
        for (size_t i = 0; r >= 0 && s[i]; i++) {
                unsigned char c = (unsigned char)s[i];

                if (i == QUOTE_MAX) {
                        r = sbx_buffer_append_str(&b, "...");
                        break;
                }
                if (c == '"' || c == '\\')
                        r = sbx_buffer_appendf(&b, "\\%c", c);
                else if (c < 0x20 || c == 0x7f)
                        r = sbx_buffer_appendf(&b, "\\x%02x", c);
                else
                        r = sbx_buffer_append(&b, &c, 1);
        }
        if (r >= 0)
                r = sbx_buffer_append_str(&b, "\"");
        if (r >= 0)
                (void)sbx_buffer_steal_string(&b, &ret);
        sbx_buffer_done(&b);
        return ret;
}

#define QUOTED(q) ((q) ? (q) : "\"\"")

static bool find_option(const SbxConfigTable *t, const char *name, size_t n, size_t *ret_index)
{
        for (size_t i = 0; i < t->n_options; i++)
                if (strlen(t->options[i].key) == n && memcmp(t->options[i].key, name, n) == 0) {
                        *ret_index = i;
                        return true;
                }
        return false;
}

static void *field_of(const Loader *l, const SbxConfigOption *o)
{
        return (char *)l->config + o->offset;
}

/* Keys become flags and, upper-cased, environment variable names: keep them to [a-z0-9-]. */
static bool valid_key(const char *key)
{
        if (!key || !((key[0] >= 'a' && key[0] <= 'z') || (key[0] >= '0' && key[0] <= '9')))
                return false;
        for (const char *p = key; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
                        return false;
        return true;
}

/* A table mistake is a bug in the program; saying so beats a confusing message about a value. */
static int validate_table(const SbxConfigTable *t, char **ret_error)
{
        static const char *const reserved[] = { "config", "help", "print-config" };

        if (!t || (t->n_options > 0 && !t->options))
                return errorf(t, ret_error, -EINVAL, "invalid option table: no options");

        for (size_t i = 0; i < t->n_options; i++) {
                const SbxConfigOption *o = &t->options[i];
                SbxConfigKind kind;

                if (!valid_key(o->key))
                        return errorf(t, ret_error, -EINVAL, "invalid option table: bad key \"%s\"",
                                      strempty(o->key));
                if (!o->parse)
                        return errorf(t, ret_error, -EINVAL, "invalid option table: %s has no parser",
                                      o->key);
                for (size_t j = 0; j < ELEMENTSOF(reserved); j++)
                        if (streq(o->key, reserved[j]))
                                return errorf(t, ret_error, -EINVAL,
                                              "invalid option table: %s is reserved for the loader", o->key);
                for (size_t j = 0; j < i; j++)
                        if (streq(o->key, t->options[j].key))
                                return errorf(t, ret_error, -EINVAL,
                                              "invalid option table: %s appears twice", o->key);

                kind = sbx__config_kind(o)->kind;
                if (kind == SBX_CONFIG_KIND_CHOICE && (!o->choices || !o->choices[0]))
                        return errorf(t, ret_error, -EINVAL, "invalid option table: %s has no choices",
                                      o->key);
                if (sbx__config_bounded(o) &&
                    (o->min > o->max ||
                     (kind != SBX_CONFIG_KIND_INT && kind != SBX_CONFIG_KIND_CUSTOM && o->max < 0)))
                        return errorf(t, ret_error, -EINVAL, "invalid option table: %s has an empty range",
                                      o->key);
        }
        return 0;
}

static int format_source(const Source *src, char **ret)
{
        int n;

        switch (src->kind) {
        case SOURCE_DEFAULT:
                *ret = strdup("default");
                return *ret ? 0 : -ENOMEM;
        case SOURCE_FILE:
                n = asprintf(ret, "from %s:%u", src->name, src->line);
                break;
        case SOURCE_ENV:
                n = asprintf(ret, "from %s", src->name);
                break;
        case SOURCE_FLAG:
        default:
                n = asprintf(ret, "from --%s", src->name);
                break;
        }
        return n < 0 ? -ENOMEM : 0;
}

/* Runs the option's parser on `value` and turns a failure into a message naming everything. */
static int apply(const Loader *l, size_t index, const char *value, const Source *src)
{
        const SbxConfigOption *o = &l->t->options[index];
        const char *expected = NULL;
        bool expected_free = false;
        int r;

        r = o->parse(o, value, field_of(l, o), &expected, &expected_free);
        if (r < 0) {
                _cleanup_free_ char *q = NULL, *from = NULL;

                if (r == -ENOMEM)
                        errorf(l->t, l->ret_error, r, "out of memory while setting %s", o->key);
                else {
                        q = quote(value);
                        if (format_source(src, &from) < 0)
                                from = NULL;
                        errorf(l->t, l->ret_error, r, "invalid value %s for %s (%s): expected %s", QUOTED(q),
                               o->key, strempty(from), expected ? expected : "a valid value");
                }
                if (expected_free)
                        free((char *)expected);
                return r;
        }
        if (l->set)
                l->set[index] = true;
        return 0;
}

static bool is_blank(char c)
{
        return c == ' ' || c == '\t' || c == '\r';
}

/* Trims blanks at both ends, in place. */
static char *strip(char *s)
{
        size_t n;

        while (is_blank(*s))
                s++;
        n = strlen(s);
        while (n > 0 && is_blank(s[n - 1]))
                s[--n] = '\0';
        return s;
}

/* Unquotes, in place, a value that starts with '"'. Returns NULL, or what is wrong with the value. */
static const char *unquote(char *s)
{
        char *w = s;

        for (const char *r = s + 1;; r++) {
                if (*r == '\0')
                        return "unterminated quoted value";
                if (*r == '"') {
                        /* Trailing blanks were stripped before, so anything left is garbage. */
                        if (r[1] != '\0')
                                return "unexpected text after the closing quote";
                        *w = '\0';
                        return NULL;
                }
                if (*r == '\\') {
                        r++;
                        if (*r != '"' && *r != '\\')
                                return "invalid escape (only \\\" and \\\\ are allowed)";
                }
                *w++ = *r;
        }
}

/* One line of a file, NUL-terminated. `seen` holds the line on which each option was set, or 0. */
static int load_line(const Loader *l, char *s, const char *source, unsigned line, unsigned *seen)
{
        _cleanup_free_ char *q = NULL;
        char *eq, *key, *value;
        const char *problem;
        size_t i;

        s = strip(s);
        if (*s == '\0' || *s == '#')
                return 0;

        eq = strchr(s, '=');
        if (!eq)
                return errorf(l->t, l->ret_error, -EINVAL, "expected \"key = value\" in %s:%u", source,
                              line);
        *eq = '\0';
        key = strip(s);
        value = strip(eq + 1);
        if (*key == '\0')
                return errorf(l->t, l->ret_error, -EINVAL, "expected \"key = value\" in %s:%u", source,
                              line);

        if (!find_option(l->t, key, strlen(key), &i)) {
                q = quote(key);
                return errorf(l->t, l->ret_error, -EINVAL, "unknown key %s in %s:%u", QUOTED(q), source,
                              line);
        }
        if (seen[i] > 0)
                return errorf(l->t, l->ret_error, -EINVAL,
                              "duplicate key \"%s\" in %s:%u (first set on line %u)", l->t->options[i].key,
                              source, line, seen[i]);
        seen[i] = line;

        if (*value == '"') {
                problem = unquote(value);
                if (problem)
                        return errorf(l->t, l->ret_error, -EINVAL, "%s for %s in %s:%u", problem,
                                      l->t->options[i].key, source, line);
        }
        return apply(l, i, value, &(Source){ .kind = SOURCE_FILE, .name = source, .line = line });
}

static int load_text(const Loader *l, const char *text, size_t size, const char *source)
{
        _cleanup_free_ unsigned *seen = NULL;
        const char *p = text, *end = text + size;
        char buf[SBX_CONFIG_LINE_MAX + 1];
        unsigned line = 0;
        int r;

        if (!text && size > 0)
                return errorf(l->t, l->ret_error, -EINVAL, "no text in %s", source);
        if (size > SBX_CONFIG_FILE_MAX)
                return errorf(l->t, l->ret_error, -EFBIG, "%s is larger than 1 MiB", source);
        seen = new0(unsigned, l->t->n_options > 0 ? l->t->n_options : 1);
        if (!seen)
                return errorf(l->t, l->ret_error, -ENOMEM, "out of memory");

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = (size_t)((nl ? nl : end) - p);

                line++;
                if (n > SBX_CONFIG_LINE_MAX)
                        return errorf(l->t, l->ret_error, -EINVAL, "line longer than %d bytes in %s:%u",
                                      SBX_CONFIG_LINE_MAX, source, line);
                /* A NUL would silently cut the value short; nobody writes one on purpose. */
                if (memchr(p, '\0', n))
                        return errorf(l->t, l->ret_error, -EINVAL, "NUL byte in %s:%u", source, line);
                memcpy(buf, p, n);
                buf[n] = '\0';
                r = load_line(l, buf, source, line, seen);
                if (r < 0)
                        return r;
                p = nl ? nl + 1 : end;
        }
        return 0;
}

int sbx_config_load_text(const SbxConfigTable *t, void *config, const char *text, size_t size,
                         const char *source, char **ret_error)
{
        Loader l = { .t = t, .config = config, .ret_error = ret_error };
        int r;

        r = validate_table(t, ret_error);
        if (r < 0)
                return r;
        return load_text(&l, text, size, source ? source : "config text");
}

/* Reads at most one byte more than the limit, so that load_text() can reject what is too large. */
static int read_file(const char *path, char **ret, size_t *ret_size)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        buf = malloc(SBX_CONFIG_FILE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        while (n < SBX_CONFIG_FILE_MAX + 1) {
                ssize_t k = read(fd, buf + n, SBX_CONFIG_FILE_MAX + 1 - n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                n += (size_t)k;
        }
        *ret = TAKE_PTR(buf);
        *ret_size = n;
        return 0;
}

/* <PREFIX><KEY> with the key upper-cased and '-' written as '_'. */
static int env_name(const SbxConfigTable *t, const char *key, char **ret)
{
        size_t lp = strlen(t->env_prefix), lk = strlen(key);
        char *s = malloc(lp + lk + 1);

        if (!s)
                return -ENOMEM;
        memcpy(s, t->env_prefix, lp);
        for (size_t i = 0; i < lk; i++) {
                char c = key[i];

                /* Keys are [a-z0-9-] (validate_table()), so this is all the upper-casing needed. */
                if (c == '-')
                        c = '_';
                else if (c >= 'a' && c <= 'z')
                        c = (char)(c - 'a' + 'A');
                s[lp + i] = c;
        }
        s[lp + lk] = '\0';
        *ret = s;
        return 0;
}

/*
 * Sorts argv into flags, the config file path and help requests. Returns 1 when help or the example
 * was printed, 0 to go on loading.
 */
static int parse_argv(const SbxConfigTable *t, int argc, char *const *argv, Flag *flags, size_t *ret_n_flags,
                      const char **ret_config_path, char **ret_error)
{
        const char *config_path = NULL;
        size_t n_flags = 0;

        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i], *name, *eq, *value;
                _cleanup_free_ char *q = NULL;
                size_t n, index;

                if (streq(arg, "-h") || streq(arg, "--help")) {
                        sbx_config_print_help(t, stdout);
                        return 1;
                }
                if (streq(arg, "--print-config")) {
                        sbx_config_print_example(t, stdout);
                        return 1;
                }
                if (streq(arg, "--")) {
                        if (i + 1 < argc) {
                                q = quote(argv[i + 1]);
                                return errorf(t, ret_error, -EINVAL, "unexpected argument %s", QUOTED(q));
                        }
                        break;
                }

                name = startswith(arg, "--");
                if (!name) {
                        /* Short options other than -h do not exist; "-" alone is an argument. */
                        if (arg[0] == '-' && arg[1] != '\0')
                                return errorf(t, ret_error, -EINVAL, "unknown option %s", arg);
                        q = quote(arg);
                        return errorf(t, ret_error, -EINVAL, "unexpected argument %s", QUOTED(q));
                }
                eq = strchr(name, '=');
                n = eq ? (size_t)(eq - name) : strlen(name);
                value = eq ? eq + 1 : NULL;

                if ((n == 4 && memcmp(name, "help", 4) == 0) ||
                    (n == 12 && memcmp(name, "print-config", 12) == 0))
                        return errorf(t, ret_error, -EINVAL, "option --%.*s takes no value", (int)n, name);

                if (n == 6 && memcmp(name, "config", 6) == 0) {
                        if (!value && i + 1 < argc)
                                value = argv[++i];
                        if (isempty(value))
                                return errorf(t, ret_error, -EINVAL, "option --config requires a value");
                        config_path = value;
                        continue;
                }

                if (!find_option(t, name, n, &index)) {
                        /* Only the name: the value might be a secret. */
                        q = strndup(name, n);
                        return errorf(t, ret_error, -EINVAL, "unknown option --%s", q ? q : "?");
                }
                if (!value) {
                        /* "--debug" alone means true; a bool never takes the next argument as its value. */
                        if (sbx__config_kind(&t->options[index])->kind == SBX_CONFIG_KIND_BOOL)
                                value = "true";
                        else if (i + 1 < argc)
                                value = argv[++i];
                        else
                                return errorf(t, ret_error, -EINVAL, "option --%s requires a value",
                                              t->options[index].key);
                }
                flags[n_flags++] = (Flag){ .index = index, .value = value };
        }

        *ret_n_flags = n_flags;
        *ret_config_path = config_path;
        return 0;
}

static bool option_is_unset(const Loader *l, size_t index)
{
        const SbxConfigOption *o = &l->t->options[index];
        const SbxConfigKindInfo *info = sbx__config_kind(o);

        /* Strings and lists are NULL while unset; an empty value given later unsets them again. */
        if (info->pointer)
                return *(void **)field_of(l, o) == NULL;
        return !l->set[index];
}

int sbx_config_load(const SbxConfigTable *t, void *config, int argc, char *const *argv, char **ret_error)
{
        _cleanup_free_ Flag *flags = NULL;
        _cleanup_free_ bool *set = NULL;
        _cleanup_free_ char *text = NULL;
        const char *config_path = NULL;
        size_t n_flags = 0, text_size = 0;
        Loader l;
        int r;

        r = validate_table(t, ret_error);
        if (r < 0)
                return r;
        flags = new0(Flag, argc > 0 ? (size_t)argc : 1);
        set = new0(bool, t->n_options > 0 ? t->n_options : 1);
        if (!flags || !set)
                return errorf(t, ret_error, -ENOMEM, "out of memory");
        l = (Loader){ .t = t, .config = config, .set = set, .ret_error = ret_error };

        r = parse_argv(t, argc, argv, flags, &n_flags, &config_path, ret_error);
        if (r != 0)
                return r;

        for (size_t i = 0; i < t->n_options; i++)
                if (t->options[i].default_value) {
                        r = apply(&l, i, t->options[i].default_value, &(Source){ .kind = SOURCE_DEFAULT });
                        if (r < 0)
                                return r;
                }

        if (!config_path && t->env_prefix) {
                _cleanup_free_ char *name = NULL;

                if (env_name(t, "config", &name) < 0)
                        return errorf(t, ret_error, -ENOMEM, "out of memory");
                /* Empty counts as unset: an exported but blank variable should not point at "". */
                config_path = getenv(name);
                if (isempty(config_path))
                        config_path = NULL;
        }
        if (config_path) {
                r = read_file(config_path, &text, &text_size);
                if (r < 0)
                        return errorf(t, ret_error, r, "cannot read config file %s: %s", config_path,
                                      sbx_error_message(r));
                r = load_text(&l, text, text_size, config_path);
                if (r < 0)
                        return r;
        }

        /* Only the table's names are looked up: other variables with the prefix belong to someone else. */
        for (size_t i = 0; t->env_prefix && i < t->n_options; i++) {
                _cleanup_free_ char *name = NULL;
                const char *value;

                if (env_name(t, t->options[i].key, &name) < 0)
                        return errorf(t, ret_error, -ENOMEM, "out of memory");
                value = getenv(name);
                if (!value)
                        continue;
                r = apply(&l, i, value, &(Source){ .kind = SOURCE_ENV, .name = name });
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < n_flags; i++) {
                r = apply(&l, flags[i].index, flags[i].value,
                          &(Source){ .kind = SOURCE_FLAG, .name = t->options[flags[i].index].key });
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < t->n_options; i++) {
                _cleanup_free_ char *name = NULL;

                if (!t->options[i].required || !option_is_unset(&l, i))
                        continue;
                if (t->env_prefix && env_name(t, t->options[i].key, &name) < 0)
                        return errorf(t, ret_error, -ENOMEM, "out of memory");
                return errorf(t, ret_error, -EINVAL,
                              "missing required option %s (set --%s%s%s or %s in the config file)",
                              t->options[i].key, t->options[i].key, name ? ", " : "", strempty(name),
                              t->options[i].key);
        }
        return 0;
}

void sbx_config_done(const SbxConfigTable *t, void *config)
{
        if (!t || !config)
                return;
        for (size_t i = 0; i < t->n_options; i++) {
                const SbxConfigKindInfo *info = sbx__config_kind(&t->options[i]);

                if (info->free)
                        info->free((char *)config + t->options[i].offset);
        }
}

/* ---- --help and --print-config ---- */

/* Writes each line of `text` after `prefix`, so that multi-line descriptions stay indented. */
static void print_lines(FILE *f, const char *prefix, const char *text)
{
        while (text) {
                const char *nl = strchr(text, '\n');
                int n = nl ? (int)(nl - text) : (int)strlen(text);

                fprintf(f, "%s%.*s\n", prefix, n, text);
                text = nl ? nl + 1 : NULL;
        }
}

/* The default as text, or NULL when the option starts unset. */
static const char *default_text(const SbxConfigOption *o)
{
        const SbxConfigKindInfo *info = sbx__config_kind(o);

        if (o->default_value)
                return info->pointer && o->default_value[0] == '\0' ? NULL : o->default_value;
        return info->pointer ? NULL : info->zero_text;
}

/* Values with blanks at either end or a leading quote only survive the file syntax quoted. */
static void print_value(FILE *f, const char *v)
{
        size_t n = strlen(v);

        if (n > 0 && !is_blank(v[0]) && v[0] != '"' && !is_blank(v[n - 1])) {
                fputs(v, f);
                return;
        }
        fputc('"', f);
        for (const char *p = v; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fputc('\\', f);
                fputc(*p, f);
        }
        fputc('"', f);
}

void sbx_config_print_help(const SbxConfigTable *t, FILE *f)
{
        const char *prefix = t->env_prefix;

        fprintf(f, "Usage: %s [OPTIONS]\n", program_name(t));
        if (t->summary)
                fprintf(f, "%s\n", t->summary);
        fputs("\nOptions:\n", f);

        for (size_t i = 0; i < t->n_options; i++) {
                const SbxConfigOption *o = &t->options[i];
                const SbxConfigKindInfo *info = sbx__config_kind(o);
                const char *metavar = o->metavar ? o->metavar : info->metavar;
                const char *def = default_text(o);
                _cleanup_free_ char *allowed = NULL;
                const char *sep = "";

                if (info->kind == SBX_CONFIG_KIND_BOOL)
                        fprintf(f, "  --%s[=%s]\n", o->key, metavar);
                else
                        fprintf(f, "  --%s=%s\n", o->key, metavar);
                if (o->description)
                        print_lines(f, "        ", o->description);

                (void)sbx__config_describe_allowed(o, &allowed);
                if (!o->required && !def && !allowed)
                        continue;
                fputs("        (", f);
                if (o->required) {
                        fputs("required", f);
                        sep = "; ";
                }
                if (def) {
                        fprintf(f, "%sdefault: ", sep);
                        print_value(f, def);
                        sep = "; ";
                }
                if (allowed)
                        fprintf(f, "%sallowed: %s", sep, allowed);
                fputs(")\n", f);
        }

        fputs("  --config=FILE\n"
              "        Read settings from FILE, one \"key = value\" per line.\n"
              "  --print-config\n"
              "        Print a documented example config file and exit.\n"
              "  -h, --help\n"
              "        Print this help and exit.\n\n",
              f);

        if (prefix) {
                _cleanup_free_ char *example = NULL;

                if (t->n_options > 0)
                        (void)env_name(t, t->options[0].key, &example);
                fprintf(f,
                        "Settings come from, in increasing precedence: the defaults, a config file "
                        "(--config FILE\n"
                        "or $%sCONFIG; --print-config shows one), environment variables %s<KEY> (the key\n"
                        "upper-cased with '-' written as '_'%s%s), and the flags above.\n",
                        prefix, prefix, example ? ", e.g. " : "", strempty(example));
        } else
                fputs("Settings come from, in increasing precedence: the defaults, a config file (--config "
                      "FILE;\n"
                      "--print-config shows one), and the flags above.\n",
                      f);
}

void sbx_config_print_example(const SbxConfigTable *t, FILE *f)
{
        fprintf(f, "# Example configuration for %s.\n", program_name(t));
        if (t->summary)
                print_lines(f, "# ", t->summary);
        fputs("#\n"
              "# One \"key = value\" per line; lines starting with '#' are comments. A value may be\n"
              "# double-quoted, with \\\" and \\\\ as the only escapes. The commented-out settings below\n"
              "# show the defaults; an empty value leaves a string or list unset.\n",
              f);
        if (t->env_prefix)
                fprintf(f, "# Environment variables %s<KEY> and flags --<key> override this file.\n",
                        t->env_prefix);

        for (size_t i = 0; i < t->n_options; i++) {
                const SbxConfigOption *o = &t->options[i];
                const char *def = default_text(o);
                _cleanup_free_ char *allowed = NULL;

                fputc('\n', f);
                if (o->description)
                        print_lines(f, "# ", o->description);
                if (o->required)
                        fputs("# Required.\n", f);
                (void)sbx__config_describe_allowed(o, &allowed);
                if (allowed)
                        fprintf(f, "# Allowed: %s.\n", allowed);
                fprintf(f, "# %s =", o->key);
                if (def) {
                        fputc(' ', f);
                        print_value(f, def);
                }
                fputc('\n', f);
        }
}
