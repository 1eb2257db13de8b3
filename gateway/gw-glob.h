/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The pattern languages of the SDK's walk() and expandGlob() (deno-sandbox-protocol.md §1.4):
 * JavaScript regular expressions (walk's match and skip arrive as {source, flags}) and the globs
 * of Deno's @std/path, which globToRegExp() turns into JavaScript regular expressions. Both run on
 * PCRE2, whose syntax is close to JavaScript's, with compile-size and match-step limits: patterns
 * come from clients.
 */

#include <stdbool.h>
#include <stddef.h>

#include "common/base/macro.h"

/* Longest pattern source accepted. */
#define GW_REGEX_SOURCE_MAX 4096

typedef struct GwRegex GwRegex;

/*
 * Compiles a JavaScript regular expression. Flags: i (ignore case), m (multiline), s (dotAll), y
 * (sticky: anchored at the start, as lastIndex is 0), u/v (Unicode; subjects are always matched as
 * UTF-8), g and d (no effect on a test). -EINVAL for an unknown flag or a pattern PCRE2 cannot
 * compile (*ret_problem, when not NULL, gets a malloc'ed reason), -E2BIG for a too long source.
 */
int gw_regex_new(const char *source, const char *flags, GwRegex **ret, char **ret_problem);

/* Whether the pattern matches somewhere in subject (as String.prototype.match() in a condition).
 * 1 or 0; -E2BIG when the match-step limit was hit, which a hostile pattern can provoke. */
int gw_regex_test(const GwRegex *re, const char *subject, size_t len);

GwRegex *gw_regex_free(GwRegex *re);
DEFINE_TRIVIAL_CLEANUP_FUNC(GwRegex *, gw_regex_free);

typedef struct GwGlobOptions {
        /* ?(a|b) *(..) +(..) @(..) !(..) */
        bool extended;
        /* ** spans directories */
        bool globstar;
        bool case_insensitive;
} GwGlobOptions;

/* globToRegExp() of @std/path (posix): the source of an anchored regular expression for `glob`.
 * malloc'ed into *ret; -ENOMEM. */
int gw_glob_to_regex_source(const char *glob, const GwGlobOptions *o, char **ret);

/* globToRegExp() compiled. */
int gw_glob_compile(const char *glob, const GwGlobOptions *o, GwRegex **ret);

/* isGlob() of @std/path: whether a path segment holds glob syntax (so that expandGlob() has to
 * match it) rather than a plain name. */
bool gw_is_glob(const char *s);

/* A plain segment with its escapes removed ("a\*b" names the file "a*b"). malloc'ed. */
char *gw_glob_unescape(const char *segment);
