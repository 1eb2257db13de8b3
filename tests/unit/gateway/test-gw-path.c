/* SPDX-License-Identifier: Apache-2.0 */
/* gateway/gw-path: @std/path's posix normalize, join, basename and resolve. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "common/base/macro.h"
#include "gateway/gw-path.h"

Test(gw_path, normalize)
{
        static const char *const cases[][2] = {
                { "/tmp/x/", "/tmp/x/" },
                { "/tmp//x/./y", "/tmp/x/y" },
                { "/a/b/../c", "/a/c" },
                { "/..", "/" },
                { "a/../..", ".." },
                { "../../a", "../../a" },
                { "", "." },
                { "./", "./" },
                { "/", "/" },
                { "a/b/..", "a" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *s = gw_path_normalize(cases[i][0]);
                cr_assert_str_eq(s, cases[i][1], "\"%s\"", cases[i][0]);
                free(s);
        }
}

Test(gw_path, join_basename_resolve_split)
{
        char *s;
        char **l;

        s = gw_path_join("/tmp/x/", "a");
        cr_assert_str_eq(s, "/tmp/x/a");
        free(s);
        s = gw_path_join("", "");
        cr_assert_str_eq(s, ".");
        free(s);
        s = gw_path_basename("/tmp/x/");
        cr_assert_str_eq(s, "x");
        free(s);
        s = gw_path_basename("/");
        cr_assert_str_eq(s, "");
        free(s);
        s = gw_path_resolve("/home/app", "src/../lib");
        cr_assert_str_eq(s, "/home/app/lib");
        free(s);
        s = gw_path_resolve("/home/app", "/etc");
        cr_assert_str_eq(s, "/etc");
        free(s);
        cr_assert_eq(gw_path_split("//a/b c//d/", &l), 0);
        cr_assert_str_eq(l[0], "a");
        cr_assert_str_eq(l[1], "b c");
        cr_assert_str_eq(l[2], "d");
        cr_assert_null(l[3]);
        strv_free(l);
}
