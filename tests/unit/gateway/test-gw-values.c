/* SPDX-License-Identifier: Apache-2.0 */
/* gateway/gw-values: ISO dates, base64, text from possibly invalid UTF-8, FileInfo. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "gateway/gw-values.h"

Test(gw_values, iso_dates_as_javascript_writes_them)
{
        static const struct {
                int64_t ms;
                const char *iso;
        } cases[] = {
                { 0, "1970-01-01T00:00:00.000Z" },
                { 1700000000, "1970-01-20T16:13:20.000Z" },
                { 1582979696789, "2020-02-29T12:34:56.789Z" },
                { -1, "1969-12-31T23:59:59.999Z" },
                { 253402300800000, "+010000-01-01T00:00:00.000Z" },
                { -62198755200000, "-000001-01-01T00:00:00.000Z" },
        };
        char buf[GW_ISO_MAX];
        int64_t back;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                cr_assert_eq(gw_iso_format(cases[i].ms, buf), 0);
                cr_assert_str_eq(buf, cases[i].iso);
                cr_assert_eq(gw_iso_parse(cases[i].iso, &back), 0);
                cr_assert_eq(back, cases[i].ms, "%s", cases[i].iso);
        }
        cr_assert_eq(gw_iso_parse("2020-02-29T12:34:56Z", &back), 0, "milliseconds may be omitted");
        cr_assert_eq(gw_iso_format(8640000000000001LL, buf), -ERANGE);
}

Test(gw_values, iso_dates_refused)
{
        static const char *const bad[] = { "",
                                           "2020-02-30T00:00:00.000Z",
                                           "2021-02-29T00:00:00.000Z",
                                           "2020-13-01T00:00:00.000Z",
                                           "2020-01-01T24:00:00.000Z",
                                           "2020-01-01 00:00:00.000Z",
                                           "2020-01-01T00:00:00.000",
                                           "2020-01-01T00:00:00.000Zx",
                                           "1700000000" };
        int64_t ms;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                cr_assert_eq(gw_iso_parse(bad[i], &ms), -EINVAL, "\"%s\"", bad[i]);
}

Test(gw_values, ns_to_ms_rounds_down)
{
        cr_assert_eq(gw_ns_to_ms(1999999), 1);
        cr_assert_eq(gw_ns_to_ms(-1), -1);
        cr_assert_eq(gw_ns_to_ms(-1000000), -1);
}

Test(gw_values, text_replaces_invalid_utf8_like_textdecoder)
{
        static const struct {
                const char *in;
                size_t n;
                const char *out;
        } cases[] = {
                { "plain", 5, "plain" },
                { "caf\xC3\xA9", 5, "caf\xC3\xA9" },
                { "a\xFF"
                  "b",
                  3,
                  "a\xEF\xBF\xBD"
                  "b" },
                /* A truncated 3-byte sequence is one maximal subpart: one replacement. */
                { "\xE2\x82z", 3, "\xEF\xBF\xBDz" },
                /* Overlong and surrogate forms are invalid byte by byte. */
                { "\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD" },
                { "\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" },
                { "\xF0\x9F\x98\x80", 4, "\xF0\x9F\x98\x80" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_t *s = gw_json_text(cases[i].in, cases[i].n);
                cr_assert_not_null(s);
                cr_assert_str_eq(json_string_value(s), cases[i].out, "case %zu", i);
                json_decref(s);
        }
}

Test(gw_values, base64_is_lenient_in_what_it_reads)
{
        uint8_t *out;
        size_t n;

        cr_assert_eq(gw_base64_decode("aGk=", 4, &out, &n), 0);
        cr_assert_eq(n, 2);
        cr_assert_eq(memcmp(out, "hi", 2), 0);
        free(out);
        cr_assert_eq(gw_base64_decode("aGk", 3, &out, &n), 0, "padding may be missing");
        free(out);
        cr_assert_eq(gw_base64_decode("-_8", 3, &out, &n), 0, "url-safe alphabet");
        cr_assert_eq(out[0], 0xFB);
        free(out);
        cr_assert_eq(gw_base64_decode("", 0, &out, &n), 0);
        cr_assert_eq(n, 0);
        free(out);
        cr_assert_eq(gw_base64_decode("a", 1, &out, &n), -EINVAL);
        cr_assert_eq(gw_base64_decode("a$==", 4, &out, &n), -EINVAL);
        cr_assert_eq(gw_base64_decode("a===", 4, &out, &n), -EINVAL);
        json_t *j = gw_json_base64("hi", 2);
        cr_assert_str_eq(json_string_value(j), "aGk=");
        json_decref(j);
}

Test(gw_values, file_info_has_all_21_fields)
{
        Sbx__V1__FileInfo fi = SBX__V1__FILE_INFO__INIT;
        json_t *o;

        fi.type = SBX__V1__FILE_TYPE__FILE_TYPE_REGULAR;
        fi.size = 5;
        fi.mode = 0100644;
        fi.mtime_ns = 1582979696789000000LL;
        o = gw_file_info_json(&fi);
        cr_assert_eq(json_object_size(o), 21);
        cr_assert(json_is_true(json_object_get(o, "isFile")));
        cr_assert(json_is_false(json_object_get(o, "isSymlink")));
        cr_assert_str_eq(json_string_value(json_object_get(o, "mtime")), "2020-02-29T12:34:56.789Z");
        cr_assert_str_eq(json_string_value(json_object_get(o, "birthtime")), "1970-01-01T00:00:00.000Z");
        cr_assert_eq(json_integer_value(json_object_get(o, "mode")), 0100644);
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) cr_assert_not(json_is_null(v), "%s is null", k);
        json_decref(o);
}
