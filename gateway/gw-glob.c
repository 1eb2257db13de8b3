/* SPDX-License-Identifier: Apache-2.0 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "gateway/gw-glob.h"

#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/buffer.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"

/* Bounds on a single match: backtracking steps and nesting depth. A pattern that needs more is
 * treated as failing, not left to spin the gateway's only thread. */
#define MATCH_LIMIT 200000
#define DEPTH_LIMIT 10000

struct GwRegex {
        pcre2_code *code;
        pcre2_match_context *mctx;
};

GwRegex *gw_regex_free(GwRegex *re)
{
        if (!re)
                return NULL;
        pcre2_code_free(re->code);
        pcre2_match_context_free(re->mctx);
        free(re);
        return NULL;
}

static int compile(const char *source, size_t len, uint32_t options, GwRegex **ret, char **ret_problem)
{
        _cleanup_(gw_regex_freep) GwRegex *re = NULL;
        pcre2_compile_context *cctx;
        PCRE2_SIZE offset;
        int error;

        if (len > GW_REGEX_SOURCE_MAX)
                return -E2BIG;
        re = new0(GwRegex, 1);
        cctx = pcre2_compile_context_create(NULL);
        if (!re || !cctx) {
                pcre2_compile_context_free(cctx);
                return -ENOMEM;
        }
        /* JavaScript's escapes (\u0041, \u{41}) and its treatment of [] and [^]. */
        pcre2_set_compile_extra_options(cctx, PCRE2_EXTRA_ALT_BSUX);
        pcre2_set_max_pattern_length(cctx, GW_REGEX_SOURCE_MAX);
        re->code = pcre2_compile((PCRE2_SPTR)source, len,
                                 options | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_ALT_BSUX |
                                         PCRE2_ALLOW_EMPTY_CLASS | PCRE2_MATCH_UNSET_BACKREF,
                                 &error, &offset, cctx);
        pcre2_compile_context_free(cctx);
        if (!re->code) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(error, msg, sizeof(msg));
                if (ret_problem &&
                    asprintf(ret_problem, "%s at offset %zu", (const char *)msg, (size_t)offset) < 0)
                        *ret_problem = NULL;
                return -EINVAL;
        }
        re->mctx = pcre2_match_context_create(NULL);
        if (!re->mctx)
                return -ENOMEM;
        pcre2_set_match_limit(re->mctx, MATCH_LIMIT);
        pcre2_set_depth_limit(re->mctx, DEPTH_LIMIT);
        *ret = TAKE_PTR(re);
        return 0;
}

int gw_regex_new(const char *source, const char *flags, GwRegex **ret, char **ret_problem)
{
        /* JavaScript's $ matches only at the very end unless the m flag is given. */
        uint32_t options = 0;
        bool multiline = false;

        if (ret_problem)
                *ret_problem = NULL;
        for (const char *f = flags ? flags : ""; *f; f++) {
                switch (*f) {
                case 'i':
                        options |= PCRE2_CASELESS;
                        break;
                case 'm':
                        multiline = true;
                        options |= PCRE2_MULTILINE;
                        break;
                case 's':
                        options |= PCRE2_DOTALL;
                        break;
                case 'y':
                        options |= PCRE2_ANCHORED;
                        break;
                case 'u':
                case 'v':
                case 'g':
                case 'd':
                        break;
                default:
                        if (ret_problem && asprintf(ret_problem, "unknown flag '%c'", *f) < 0)
                                *ret_problem = NULL;
                        return -EINVAL;
                }
        }
        if (!multiline)
                options |= PCRE2_DOLLAR_ENDONLY;
        return compile(source, strlen(source), options, ret, ret_problem);
}

int gw_regex_test(const GwRegex *re, const char *subject, size_t len)
{
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
        int r;

        if (!md)
                return -ENOMEM;
        r = pcre2_match(re->code, (PCRE2_SPTR)subject, len, 0, 0, md, re->mctx);
        pcre2_match_data_free(md);
        if (r >= 0)
                return 1;
        if (r == PCRE2_ERROR_NOMATCH)
                return 0;
        return -E2BIG;
}

/* ---- globs ---- */

#define SEP         "/+"
#define SEP_MAYBE   "/*"
#define GLOBSTAR    "(?:[^/]*(?:/|$)+)*"
#define WILDCARD    "[^/]*"
#define ESCAPED_OUT "!$()*+.=?[\\^{|"
#define ESCAPED_IN  "-\\]"

typedef enum Group {
        GROUP_BRACE = 1,
        GROUP_ONE,      /* @(…) */
        GROUP_OPTIONAL, /* ?(…) */
        GROUP_STAR,     /* *(…) */
        GROUP_PLUS,     /* +(…) */
        GROUP_NOT,      /* !(…) */
} Group;

static int append_escaped(SbxBuffer *b, char c, const char *escaped)
{
        if (c && strchr(escaped, c)) {
                char e[2] = { '\\', c };
                return sbx_buffer_append(b, e, 2);
        }
        return sbx_buffer_append(b, &c, 1);
}

/* The POSIX class named in "[[:name:]]" as the inside of a JavaScript character class. */
static const char *posix_class(const char *name, size_t len)
{
        static const struct {
                const char *name;
                const char *re;
        } classes[] = {
                { "alnum", "\\dA-Za-z" },
                { "alpha", "A-Za-z" },
                { "ascii", "\\x00-\\x7F" },
                { "blank", "\\t " },
                { "cntrl", "\\x00-\\x1F\\x7F" },
                { "digit", "\\d" },
                { "graph", "\\x21-\\x7E" },
                { "lower", "a-z" },
                { "print", "\\x20-\\x7E" },
                { "punct", "!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~" },
                { "space", "\\s\\x0B" },
                { "upper", "A-Z" },
                { "word", "\\w" },
                { "xdigit", "\\dA-Fa-f" },
        };
        for (size_t i = 0; i < ELEMENTSOF(classes); i++)
                if (strlen(classes[i].name) == len && memcmp(classes[i].name, name, len) == 0)
                        return classes[i].re;
        return NULL;
}

/* At glob[*i] == '[' inside a range: "[:name:]" is a POSIX class. When it is one (known or not),
 * appends the class, moves *i to its ']' and returns true. */
static bool class_at(const char *glob, size_t n, size_t *i, SbxBuffer *seg, int *r)
{
        size_t k = *i + 2;
        const char *cls;

        while (k < n && glob[k] != ':')
                k++;
        if (k + 1 >= n || glob[k + 1] != ']')
                return false;
        cls = posix_class(glob + *i + 2, k - *i - 2);
        if (cls)
                *r = sbx_buffer_append_str(seg, cls);
        *i = k + 1;
        return true;
}

/* One path segment (up to the next separator outside a group) into `out`; *ret_ends_with_sep says
 * whether it ended in a globstar, which brings its own separator. Returns the index after it. */
static int glob_segment(const char *glob, size_t n, size_t j, const GwGlobOptions *o, SbxBuffer *out,
                        bool *ret_ends_with_sep, size_t *ret_next)
{
        SbxBuffer seg = SBX_BUFFER_INIT;
        Group stack[64];
        size_t depth = 0, i = j;
        bool in_range = false, in_escape = false, ends_with_sep = false, overflow = false;
        int r = 0;

        for (; i < n && !(glob[i] == '/' && depth == 0); i++) {
                char c = glob[i], next = i + 1 < n ? glob[i + 1] : '\0';

                if (in_escape) {
                        in_escape = false;
                        r = append_escaped(&seg, c, in_range ? ESCAPED_IN : ESCAPED_OUT);
                } else if (c == '\\') {
                        in_escape = true;
                } else if (c == '[' && !in_range) {
                        in_range = true;
                        r = sbx_buffer_append_str(&seg, "[");
                        if (r >= 0 && next == '!') {
                                i++;
                                r = sbx_buffer_append_str(&seg, "^");
                        } else if (r >= 0 && next == '^') {
                                i++;
                                r = sbx_buffer_append_str(&seg, "\\^");
                        }
                } else if (c == '[' && in_range && next == ':' && class_at(glob, n, &i, &seg, &r)) {
                        /* "[:name:]" inside a range, consumed by class_at(). */
                } else if (c == ']' && in_range) {
                        in_range = false;
                        r = sbx_buffer_append_str(&seg, "]");
                } else if (in_range) {
                        r = sbx_buffer_append(&seg, &c, 1);
                } else if (c == ')' && depth > 0 && stack[depth - 1] != GROUP_BRACE) {
                        Group g = stack[--depth];
                        r = sbx_buffer_append_str(&seg, ")");
                        if (r >= 0)
                                r = sbx_buffer_append_str(&seg, g == GROUP_NOT        ? WILDCARD
                                                                : g == GROUP_OPTIONAL ? "?"
                                                                : g == GROUP_STAR     ? "*"
                                                                : g == GROUP_PLUS     ? "+"
                                                                                      : "");
                } else if (c == '|' && depth > 0 && stack[depth - 1] != GROUP_BRACE) {
                        r = sbx_buffer_append_str(&seg, "|");
                } else if (o->extended && next == '(' && strchr("+@?!*", c)) {
                        if (depth == ELEMENTSOF(stack)) {
                                overflow = true;
                                break;
                        }
                        i++;
                        stack[depth++] = c == '+'   ? GROUP_PLUS
                                         : c == '@' ? GROUP_ONE
                                         : c == '?' ? GROUP_OPTIONAL
                                         : c == '!' ? GROUP_NOT
                                                    : GROUP_STAR;
                        r = sbx_buffer_append_str(&seg, c == '!' ? "(?!" : "(?:");
                } else if (c == '?') {
                        r = sbx_buffer_append_str(&seg, ".");
                } else if (c == '{') {
                        if (depth == ELEMENTSOF(stack)) {
                                overflow = true;
                                break;
                        }
                        stack[depth++] = GROUP_BRACE;
                        r = sbx_buffer_append_str(&seg, "(?:");
                } else if (c == '}' && depth > 0 && stack[depth - 1] == GROUP_BRACE) {
                        depth--;
                        r = sbx_buffer_append_str(&seg, ")");
                } else if (c == ',' && depth > 0 && stack[depth - 1] == GROUP_BRACE) {
                        r = sbx_buffer_append_str(&seg, "|");
                } else if (c == '*') {
                        char prev = i > 0 ? glob[i - 1] : '\0';
                        size_t stars = 1;
                        while (i + 1 < n && glob[i + 1] == '*') {
                                i++;
                                stars++;
                        }
                        char after = i + 1 < n ? glob[i + 1] : '\0';
                        if (o->globstar && stars == 2 && (prev == '/' || prev == '\0') &&
                            (after == '/' || after == '\0')) {
                                r = sbx_buffer_append_str(&seg, GLOBSTAR);
                                ends_with_sep = true;
                        } else
                                r = sbx_buffer_append_str(&seg, WILDCARD);
                } else {
                        r = append_escaped(&seg, c, ESCAPED_OUT);
                }
                if (r < 0)
                        goto out;
        }
        if (overflow) {
                /* Deeper nesting than anyone writes: the rest of the segment is taken literally. */
                while (i < n && glob[i] != '/')
                        i++;
        }
        if (depth > 0 || in_range || in_escape || overflow) {
                /* An unfinished construct: the segment is taken literally. */
                sbx_buffer_clear(&seg);
                for (size_t k = j; k < i && r >= 0; k++)
                        r = append_escaped(&seg, glob[k], ESCAPED_OUT);
                ends_with_sep = false;
                if (r < 0)
                        goto out;
        }
        r = sbx_buffer_append(out, sbx_buffer_data(&seg), sbx_buffer_size(&seg));
        *ret_ends_with_sep = ends_with_sep;
        *ret_next = i;
out:
        sbx_buffer_done(&seg);
        return r;
}

int gw_glob_to_regex_source(const char *glob, const GwGlobOptions *o, char **ret)
{
        SbxBuffer out = SBX_BUFFER_INIT;
        size_t n = strlen(glob);
        int r;

        if (n == 0)
                return (*ret = strdup("(?!)")) ? 0 : -ENOMEM;
        /* Trailing separators do not count (but a lone "/" stays). */
        while (n > 1 && glob[n - 1] == '/')
                n--;
        r = sbx_buffer_append_str(&out, "^");
        for (size_t j = 0; r >= 0 && j < n;) {
                bool ends_with_sep = false;
                size_t i;

                r = glob_segment(glob, n, j, o, &out, &ends_with_sep, &i);
                if (r < 0)
                        break;
                if (!ends_with_sep)
                        r = sbx_buffer_append_str(&out, i < n ? SEP : SEP_MAYBE);
                while (i < n && glob[i] == '/')
                        i++;
                j = i;
        }
        if (r >= 0)
                r = sbx_buffer_append_str(&out, "$");
        if (r >= 0)
                r = sbx_buffer_steal_string(&out, ret);
        sbx_buffer_done(&out);
        return r;
}

int gw_glob_compile(const char *glob, const GwGlobOptions *o, GwRegex **ret)
{
        _cleanup_free_ char *source = NULL;
        int r = gw_glob_to_regex_source(glob, o, &source);

        if (r < 0)
                return r;
        return compile(source, strlen(source),
                       PCRE2_DOLLAR_ENDONLY | (o->case_insensitive ? PCRE2_CASELESS : 0), ret, NULL);
}

/* At s[i], "open" + at least one character not in `not` + "close". */
static bool bracketed(const char *s, size_t i, char open, const char * not, char close)
{
        size_t k = i + 1;

        if (s[i] != open)
                return false;
        while (s[k] && !strchr(not, s[k]) && s[k] != close)
                k++;
        return k > i + 1 && s[k] == close;
}

bool gw_is_glob(const char *s)
{
        size_t pos = 0;

        if (isempty(s))
                return false;
        for (size_t i = 0; s[i];) {
                char c = s[i];

                if (c == '\\' && s[i + 1] && s[i + 1] != '\n') {
                        /* An escaped character; an escaped opener hides everything to its closer. */
                        char e = s[i + 1], close = e == '{' ? '}' : e == '(' ? ')' : e == '[' ? ']' : '\0';
                        i += 2;
                        if (close) {
                                const char *end = strchr(s + i, close);
                                if (end)
                                        i = (size_t)(end - s) + 1;
                        }
                        pos = i;
                        continue;
                }
                if ((c == '!' && i == pos) || c == '*' || c == '?')
                        return true;
                if (strchr("].+)", c) && s[i + 1] == '?')
                        return true;
                if (bracketed(s, i, '[', "[\\]", ']') || bracketed(s, i, '{', "{\\}", '}'))
                        return true;
                if (c == '(' && s[i + 1] == '?' && s[i + 2] && strchr(":!=", s[i + 2]) &&
                    bracketed(s, i + 2, s[i + 2], "\\)", ')'))
                        return true;
                if (c == '(') {
                        /* "(a|b)" */
                        size_t k = i + 1;
                        while (s[k] && s[k] != '(' && s[k] != '|')
                                k++;
                        if (k > i + 1 && s[k] == '|' && bracketed(s, k, '|', "\\)", ')'))
                                return true;
                }
                if (c == '@' && s[i + 1] == '(' && bracketed(s, i + 1, '(', ")", ')'))
                        return true;
                i++;
        }
        return false;
}

char *gw_glob_unescape(const char *segment)
{
        static const char metachars[] = "*?[]{}()!@+|\\";
        size_t n = strlen(segment), o = 0;
        char *out = malloc(n + 1);

        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (segment[i] == '\\' && segment[i + 1] && strchr(metachars, segment[i + 1]))
                        i++;
                out[o++] = segment[i];
        }
        out[o] = '\0';
        return out;
}
