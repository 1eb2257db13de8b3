/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gateway/gw-glob: globToRegExp() and isGlob() as @std/path (posix) has them (the expected
 * sources were printed by @std/path 1.1.4 itself, with JavaScript's escaping of '/' removed), and
 * JavaScript regular expressions on PCRE2.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "gateway/gw-glob.h"

Test(gw_glob, glob_to_regexp_like_std_path)
{
        static const struct {
                const char *glob;
                const char *extended, *plain;
        } cases[] = {
                { "*.ts", "^[^/]*\\.ts/*$", "^[^/]*\\.ts/*$" },
                { "**/*.ts", "^(?:[^/]*(?:/|$)+)*[^/]*\\.ts/*$", "^[^/]*/+[^/]*\\.ts/*$" },
                { "/a/**", "^/+a/+(?:[^/]*(?:/|$)+)*$", "^/+a/+[^/]*/*$" },
                { "a?c", "^a.c/*$", "^a.c/*$" },
                { "[!a-c]", "^[^a-c]/*$", "^[^a-c]/*$" },
                { "{a,b}.js", "^(?:a|b)\\.js/*$", "^(?:a|b)\\.js/*$" },
                { "+(x|y)", "^(?:x|y)+/*$", "^\\+\\(x\\|y\\)/*$" },
                { "!(a)", "^(?!a)[^/]*/*$", "^\\!\\(a\\)/*$" },
                { "@(a|b)", "^(?:a|b)/*$", "^@\\(a\\|b\\)/*$" },
                { "?(a)", "^(?:a)?/*$", "^.\\(a\\)/*$" },
                { "*(ab)", "^(?:ab)*/*$", "^[^/]*\\(ab\\)/*$" },
                { "[[:alpha:]]", "^[A-Za-z]/*$", "^[A-Za-z]/*$" },
                { "a\\*b", "^a\\*b/*$", "^a\\*b/*$" },
                { "src/", "^src/*$", "^src/*$" },
                { "a**b", "^a[^/]*b/*$", "^a[^/]*b/*$" },
                { "a/{b/c,d}", "^a/+(?:b/c|d)/*$", "^a/+(?:b/c|d)/*$" },
                { "[unterminated", "^\\[unterminated/*$", "^\\[unterminated/*$" },
                { "x(y)", "^x\\(y\\)/*$", "^x\\(y\\)/*$" },
                { "", "(?!)", "(?!)" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                GwGlobOptions ext = { .extended = true, .globstar = true }, plain = { 0 };
                char *s = NULL;
                cr_assert_eq(gw_glob_to_regex_source(cases[i].glob, &ext, &s), 0);
                cr_assert_str_eq(s, cases[i].extended, "\"%s\"", cases[i].glob);
                free(s);
                cr_assert_eq(gw_glob_to_regex_source(cases[i].glob, &plain, &s), 0);
                cr_assert_str_eq(s, cases[i].plain, "\"%s\" without extended/globstar", cases[i].glob);
                free(s);
        }
}

Test(gw_glob, compiled_globs_match_names)
{
        GwGlobOptions o = { .extended = true, .globstar = true };
        GwRegex *re;

        cr_assert_eq(gw_glob_compile("*.{ts,js}", &o, &re), 0);
        cr_assert_eq(gw_regex_test(re, "main.ts", 7), 1);
        cr_assert_eq(gw_regex_test(re, "util.js", 7), 1);
        cr_assert_eq(gw_regex_test(re, "a.md", 4), 0);
        cr_assert_eq(gw_regex_test(re, "dir/main.ts", 11), 0);
        gw_regex_free(re);
        o.case_insensitive = true;
        cr_assert_eq(gw_glob_compile("README.*", &o, &re), 0);
        cr_assert_eq(gw_regex_test(re, "readme.md", 9), 1);
        gw_regex_free(re);
}

Test(gw_glob, is_glob_like_std_path)
{
        static const struct {
                const char *s;
                bool glob;
        } cases[] = {
                { "a", false },    { "*", true },         { "a\\*", false }, { "[abc]", true },
                { "{a,b}", true }, { "!x", true },        { "a!x", false },  { "(?:x)", true },
                { "(a|b)", true }, { "@(x)", true },      { "a.?", true },   { "\\{a,b}", false },
                { "x[", false },   { "foo(bar)", false }, { "", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                cr_assert_eq(gw_is_glob(cases[i].s), cases[i].glob, "\"%s\"", cases[i].s);
}

Test(gw_glob, unescape)
{
        char *s = gw_glob_unescape("a\\*b\\[c\\x");

        cr_assert_str_eq(s, "a*b[c\\x");
        free(s);
}

Test(gw_glob, javascript_regexps)
{
        GwRegex *re;
        char *why = NULL;

        cr_assert_eq(gw_regex_new("node_modules", "", &re, NULL), 0);
        cr_assert_eq(gw_regex_test(re, "/w/node_modules/x", 17), 1, "match() finds it anywhere");
        gw_regex_free(re);
        cr_assert_eq(gw_regex_new("\\.MD$", "i", &re, NULL), 0);
        cr_assert_eq(gw_regex_test(re, "/a/README.md", 12), 1);
        cr_assert_eq(gw_regex_test(re, "/a/README.md\n", 13), 0, "$ is the very end without the m flag");
        gw_regex_free(re);
        cr_assert_eq(gw_regex_new("\\u0041", "u", &re, NULL), 0);
        cr_assert_eq(gw_regex_test(re, "xAy", 3), 1);
        gw_regex_free(re);
        cr_assert_eq(gw_regex_new("^b", "y", &re, NULL), 0);
        cr_assert_eq(gw_regex_test(re, "ab", 2), 0);
        gw_regex_free(re);
        cr_assert_eq(gw_regex_new("(", "", &re, &why), -EINVAL);
        cr_assert_not_null(why);
        free(why);
        cr_assert_eq(gw_regex_new("a", "q", &re, &why), -EINVAL);
        free(why);
        /* Catastrophic backtracking stops at the match limit instead of spinning. */
        cr_assert_eq(gw_regex_new("^(a+)+$", "", &re, NULL), 0);
        cr_assert_eq(gw_regex_test(re, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", 36), -E2BIG);
        gw_regex_free(re);
}
