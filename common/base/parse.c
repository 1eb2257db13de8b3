/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base/parse.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "common/base/macro.h"

/* Reads decimal digits from *p; fails on no digits or overflow. Leaves *p after the last digit. */
static int parse_digits(const char **p, uint64_t *ret)
{
        const char *s = *p;
        uint64_t v = 0;

        if (!(*s >= '0' && *s <= '9'))
                return -EINVAL;
        while (*s >= '0' && *s <= '9') {
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
                s++;
        }
        *p = s;
        *ret = v;
        return 0;
}

int sbx_parse_uint64(const char *s, uint64_t *ret)
{
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        r = parse_digits(&s, &v);
        if (r < 0)
                return r;
        if (*s)
                return -EINVAL;
        *ret = v;
        return 0;
}

int sbx_parse_uint32(const char *s, uint32_t *ret)
{
        uint64_t v;
        int r = sbx_parse_uint64(s, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t)v;
        return 0;
}

int sbx_parse_int64(const char *s, int64_t *ret)
{
        bool neg = false;
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        if (*s == '-') {
                neg = true;
                s++;
        }
        r = parse_digits(&s, &v);
        if (r < 0)
                return r;
        if (*s)
                return -EINVAL;
        if (neg) {
                if (v > (uint64_t)INT64_MAX + 1)
                        return -ERANGE;
                *ret = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
        } else {
                if (v > (uint64_t)INT64_MAX)
                        return -ERANGE;
                *ret = (int64_t)v;
        }
        return 0;
}

int sbx_parse_int64_range(const char *s, int64_t min, int64_t max, int64_t *ret)
{
        int64_t v;
        int r = sbx_parse_int64(s, &v);
        if (r < 0)
                return r;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

int sbx_parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = { "1", "true", "yes", "on" };
        static const char *const no[] = { "0", "false", "no", "off" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

int sbx_parse_size(const char *s, uint64_t *ret_bytes)
{
        static const struct {
                const char *suffix;
                uint64_t mult;
        } units[] = {
                { "", 1 },
                { "B", 1 },
                { "K", 1ULL << 10 },
                { "KiB", 1ULL << 10 },
                { "M", 1ULL << 20 },
                { "MiB", 1ULL << 20 },
                { "G", 1ULL << 30 },
                { "GiB", 1ULL << 30 },
                { "T", 1ULL << 40 },
                { "TiB", 1ULL << 40 },
                { "kB", 1000ULL },
                { "MB", 1000ULL * 1000 },
                { "GB", 1000ULL * 1000 * 1000 },
                { "TB", 1000ULL * 1000 * 1000 * 1000 },
        };
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        r = parse_digits(&s, &v);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcmp(s, units[i].suffix) == 0) {
                        if (v > UINT64_MAX / units[i].mult)
                                return -ERANGE;
                        *ret_bytes = v * units[i].mult;
                        return 0;
                }
        return -EINVAL;
}
