/* SPDX-License-Identifier: Apache-2.0 */
/* common/base: the error table, strict parsers, durations, buffers and string vectors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/buffer.h"
#include "common/base/error.h"
#include "common/base/parse.h"
#include "common/base/random-util.h"
#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "common/base/time-util.h"

Test(error, errno_and_project_codes_map_to_status)
{
        cr_assert_eq(sbx_error_to_status(0), SBX_STATUS_OK);
        cr_assert_eq(sbx_error_to_status(-ENOENT), SBX_STATUS_NOT_FOUND);
        cr_assert_eq(sbx_error_to_status(-EEXIST), SBX_STATUS_ALREADY_EXISTS);
        cr_assert_eq(sbx_error_to_status(-ENOTEMPTY), SBX_STATUS_FAILED_PRECONDITION);
        cr_assert_eq(sbx_error_to_status(-ETIMEDOUT), SBX_STATUS_DEADLINE_EXCEEDED);
        cr_assert_eq(sbx_error_to_status(-SBX_E_QUOTA_EXCEEDED), SBX_STATUS_RESOURCE_EXHAUSTED);
        cr_assert_eq(sbx_error_to_status(-SBX_E_UNAUTHENTICATED), SBX_STATUS_UNAUTHENTICATED);
        cr_assert_eq(sbx_error_to_status(-SBX_E_NOT_RUNNING), SBX_STATUS_FAILED_PRECONDITION);
        cr_assert_str_eq(sbx_error_name(-ENOENT), "ENOENT");
        cr_assert_str_eq(sbx_error_name(-SBX_E_QUOTA_EXCEEDED), "SBX_E_QUOTA_EXCEEDED");
        cr_assert_str_eq(sbx_error_message(-SBX_E_NO_CAPACITY), "No node has capacity");
        cr_assert_str_eq(sbx_error_message(-ENOENT), "No such file or directory");
}

Test(error, status_round_trip)
{
        for (int s = 0; s < _SBX_STATUS_MAX; s++) {
                SbxStatus back;
                cr_assert_eq(sbx_status_from_name(sbx_status_name((SbxStatus)s), &back), 0);
                cr_assert_eq(back, (SbxStatus)s);
                /* Every status has an error that maps back to it. */
                if (s != SBX_STATUS_OK)
                        cr_assert_eq(sbx_error_to_status(sbx_error_from_status((SbxStatus)s)), (SbxStatus)s,
                                     "status %s", sbx_status_name((SbxStatus)s));
        }
        cr_assert_str_eq(sbx_status_name((SbxStatus)99), "UNKNOWN");
        SbxStatus x;
        cr_assert_eq(sbx_status_from_name("NOPE", &x), -EINVAL);
}

Test(parse, integers_are_strict)
{
        int64_t i;
        uint64_t u;
        uint32_t u32;

        cr_assert_eq(sbx_parse_int64("-42", &i), 0);
        cr_assert_eq(i, -42);
        cr_assert_eq(sbx_parse_int64("9223372036854775807", &i), 0);
        cr_assert_eq(sbx_parse_int64("-9223372036854775808", &i), 0);
        cr_assert_eq(i, INT64_MIN);
        cr_assert_eq(sbx_parse_int64("9223372036854775808", &i), -ERANGE);
        cr_assert_eq(sbx_parse_uint64("18446744073709551615", &u), 0);
        cr_assert_eq(sbx_parse_uint64("18446744073709551616", &u), -ERANGE);
        cr_assert_eq(sbx_parse_uint32("4294967296", &u32), -ERANGE);
        const char *bad[] = { "", " 1", "1 ", "+1", "0x10", "1e3", "12a", "-", "--1" };
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
                cr_assert_eq(sbx_parse_int64(bad[k], &i), -EINVAL, "\"%s\" accepted", bad[k]);
        i = 7;
        cr_assert_eq(sbx_parse_int64_range("5", 6, 10, &i), -ERANGE);
        cr_assert_eq(i, 7, "out-parameter written on failure");
}

Test(parse, bool_and_size)
{
        bool b;
        uint64_t s;
        cr_assert_eq(sbx_parse_bool("YES", &b), 0);
        cr_assert(b);
        cr_assert_eq(sbx_parse_bool("off", &b), 0);
        cr_assert_not(b);
        cr_assert_eq(sbx_parse_bool("maybe", &b), -EINVAL);
        cr_assert_eq(sbx_parse_size("10GiB", &s), 0);
        cr_assert_eq(s, 10ULL << 30);
        cr_assert_eq(sbx_parse_size("512M", &s), 0);
        cr_assert_eq(s, 512ULL << 20);
        cr_assert_eq(sbx_parse_size("2GB", &s), 0);
        cr_assert_eq(s, 2000000000ULL);
        cr_assert_eq(sbx_parse_size("4096", &s), 0);
        cr_assert_eq(s, 4096);
        cr_assert_eq(sbx_parse_size("1.5G", &s), -EINVAL);
        cr_assert_eq(sbx_parse_size("99999999999T", &s), -ERANGE);
}

Test(time, durations)
{
        usec_t u;
        char buf[SBX_DURATION_MAX];

        cr_assert_eq(sbx_parse_duration("1h30m", &u), 0);
        cr_assert_eq(u, 90 * USEC_PER_MINUTE);
        cr_assert_eq(sbx_parse_duration("250ms", &u), 0);
        cr_assert_eq(u, 250 * USEC_PER_MSEC);
        cr_assert_eq(sbx_parse_duration("2s500ms", &u), 0);
        cr_assert_eq(u, 2500 * USEC_PER_MSEC);
        const char *bad[] = { "", "10", "s", "1x", "-1s", "1 s", "1sm", "1.5s" };
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
                cr_assert_eq(sbx_parse_duration(bad[k], &u), -EINVAL, "\"%s\" accepted", bad[k]);
        cr_assert_eq(sbx_parse_duration("99999999999999999999s", &u), -ERANGE);
        cr_assert_str_eq(sbx_format_duration(buf, sizeof(buf), 90 * USEC_PER_MINUTE), "1h30m");
        cr_assert_str_eq(sbx_format_duration(buf, sizeof(buf), 250 * USEC_PER_MSEC), "250ms");
        cr_assert_str_eq(sbx_format_duration(buf, sizeof(buf), 0), "0s");
        cr_assert_str_eq(sbx_format_duration(buf, sizeof(buf), 30 * USEC_PER_MINUTE), "30m");
        cr_assert_str_eq(sbx_format_timestamp(buf, sizeof(buf), 1795793829987ULL * 1000),
                         "2026-11-27T15:37:09.987Z");
}

Test(buffer, append_consume_limit)
{
        SbxBuffer b = SBX_BUFFER_INIT;
        cr_assert_eq(sbx_buffer_append_str(&b, "hello "), 0);
        cr_assert_eq(sbx_buffer_appendf(&b, "%s %d", "world", 42), 0);
        cr_assert_eq(sbx_buffer_size(&b), strlen("hello world 42"));
        cr_assert_eq(memcmp(sbx_buffer_data(&b), "hello world 42", 14), 0);
        sbx_buffer_consume(&b, 6);
        cr_assert_eq(memcmp(sbx_buffer_data(&b), "world 42", 8), 0);

        /* Growth across many appends keeps the bytes in order. */
        for (int i = 0; i < 10000; i++)
                cr_assert_eq(sbx_buffer_appendf(&b, "%04d", i % 10000), 0);
        cr_assert_eq(sbx_buffer_size(&b), 8 + 40000);
        cr_assert_eq(memcmp(sbx_buffer_data(&b) + 8 + 4 * 9999, "9999", 4), 0);

        sbx_buffer_clear(&b);
        sbx_buffer_set_limit(&b, 8);
        cr_assert_eq(sbx_buffer_append(&b, "12345678", 8), 0);
        cr_assert_eq(sbx_buffer_append(&b, "9", 1), -ENOBUFS);
        cr_assert_eq(sbx_buffer_size(&b), 8, "a refused append changes nothing");
        char *s = NULL;
        cr_assert_eq(sbx_buffer_steal_string(&b, &s), 0);
        cr_assert_str_eq(s, "12345678");
        free(s);
        sbx_buffer_done(&b);

        uint8_t be[4];
        sbx_write_be32(be, 0x01020304);
        cr_assert_eq(be[0], 1);
        cr_assert_eq(sbx_read_be32(be), 0x01020304);
}

Test(strv, split_join_extend)
{
        char **l = NULL, *j = NULL;
        cr_assert_eq(strv_split(" a, b ,,c ", ',', &l), 0);
        cr_assert_eq(strv_length(l), 3);
        cr_assert_str_eq(l[1], "b");
        cr_assert_eq(strv_join(l, "|", &j), 0);
        cr_assert_str_eq(j, "a|b|c");
        cr_assert(strv_contains(l, "c"));
        cr_assert_not(strv_contains(l, "d"));
        cr_assert_eq(strv_extend(&l, "d"), 0);
        cr_assert_eq(strv_length(l), 4);
        free(j);
        strv_free(l);
        cr_assert_not_null(startswith("Bearer x", "Bearer "));
        cr_assert_null(startswith("bear", "Bearer "));
        cr_assert(endswith("a.pem", ".pem"));
        char *h = NULL;
        cr_assert_eq(sbx_hex_encode("\x01\xab", 2, &h), 0);
        cr_assert_str_eq(h, "01ab");
        free(h);
}

Test(random, below_is_in_range_and_varies)
{
        uint64_t seen = 0;
        for (int i = 0; i < 1000; i++) {
                uint64_t v = sbx_random_below(7);
                cr_assert_lt(v, 7);
                seen |= 1ULL << v;
        }
        cr_assert_eq(seen, 0x7f, "every value of [0,7) appears in 1000 draws");
}

Test(sandbox_id, new_ids_are_valid_and_use_the_whole_alphabet)
{
        static const char alphabet[] = "0123456789abcdefghjkmnpqrstuvwxyz";
        unsigned counts[sizeof(alphabet) - 1] = { 0 };
        char id[SBX_SANDBOX_ID_LEN + 1], first[SBX_SANDBOX_ID_LEN + 1];
        char region[4];

        cr_assert_eq(sbx_sandbox_id_new("ams", first, sizeof(first)), 0);
        for (int i = 0; i < 2000; i++) {
                cr_assert_eq(sbx_sandbox_id_new("ams", id, sizeof(id)), 0);
                cr_assert(sbx_sandbox_id_valid(id), "%s", id);
                cr_assert_str_neq(id, first);
                for (int k = 8; k < SBX_SANDBOX_ID_LEN; k++)
                        counts[strchr(alphabet, id[k]) - alphabet]++;
        }
        cr_assert_eq(sbx_sandbox_id_region(id, region), 0);
        cr_expect_str_eq(region, "ams");
        /* 40,000 characters over 33: about 1,212 each; a biased or stuck generator falls far off. */
        for (size_t c = 0; c < sizeof(counts) / sizeof(*counts); c++)
                cr_expect(counts[c] > 1000 && counts[c] < 1430, "'%c' appeared %u times", alphabet[c],
                          counts[c]);
        cr_expect_eq(sbx_sandbox_id_new("AMS", id, sizeof(id)), -EINVAL,
                     "a region is three lower-case letters");
        cr_expect_eq(sbx_sandbox_id_new("ams", id, 10), -EINVAL, "too small a buffer");
}

static int int_cmp(const void *a, const void *b)
{
        return *(const int *)a - *(const int *)b;
}

/* An empty protobuf-c array is a NULL pointer: sorting it must not hand qsort(3) a NULL base (UBSan
 * reports that, and `sbx nodes` on a cluster without nodes did it). */
Test(macro, qsort_safe_sorts_and_takes_an_empty_null_array)
{
        int v[] = { 3, 1, 2 };
        int *none = NULL;
        qsort_safe(v, ELEMENTSOF(v), sizeof(int), int_cmp);
        cr_assert(v[0] == 1 && v[1] == 2 && v[2] == 3);
        qsort_safe(none, 0, sizeof(int), int_cmp);
        cr_assert_null(none);
}
