/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base/time-util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/base/macro.h"

usec_t sbx_now(clockid_t clock)
{
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (usec_t)ts.tv_sec * USEC_PER_SEC + (usec_t)ts.tv_nsec / NSEC_PER_USEC;
}

static const struct {
        const char *suffix;
        usec_t mult;
} duration_units[] = {
        /* Longer suffixes first so that "ms" is not read as "m" followed by garbage. */
        { "us", 1 },
        { "ms", USEC_PER_MSEC },
        { "s", USEC_PER_SEC },
        { "m", USEC_PER_MINUTE },
        { "h", USEC_PER_HOUR },
        { "d", USEC_PER_DAY },
};

int sbx_parse_duration(const char *s, usec_t *ret_usec)
{
        usec_t total = 0;
        const char *p = s;

        if (!s || !*s)
                return -EINVAL;

        while (*p) {
                uint64_t v = 0;
                const char *digits = p;

                while (*p >= '0' && *p <= '9') {
                        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
                                return -ERANGE;
                        v = v * 10 + (uint64_t)(*p - '0');
                        p++;
                }
                if (p == digits)
                        return -EINVAL;

                usec_t mult = 0;
                for (size_t i = 0; i < ELEMENTSOF(duration_units); i++) {
                        size_t l = strlen(duration_units[i].suffix);
                        if (strncmp(p, duration_units[i].suffix, l) == 0 && !(p[l] >= 'a' && p[l] <= 'z')) {
                                mult = duration_units[i].mult;
                                p += l;
                                break;
                        }
                }
                if (mult == 0)
                        return -EINVAL;
                if (v > UINT64_MAX / mult || total > UINT64_MAX - v * mult)
                        return -ERANGE;
                total += v * mult;
        }

        *ret_usec = total;
        return 0;
}

char *sbx_format_duration(char *buf, size_t n, usec_t usec)
{
        size_t off = 0;

        if (usec == 0) {
                snprintf(buf, n, "0s");
                return buf;
        }
        if (usec == USEC_INFINITY) {
                snprintf(buf, n, "infinity");
                return buf;
        }
        if (usec % USEC_PER_SEC != 0 && usec < USEC_PER_MINUTE) {
                if (usec % USEC_PER_MSEC == 0)
                        snprintf(buf, n, "%llums", (unsigned long long)(usec / USEC_PER_MSEC));
                else
                        snprintf(buf, n, "%lluus", (unsigned long long)usec);
                return buf;
        }

        static const struct {
                usec_t mult;
                char unit;
        } parts[] = { { USEC_PER_DAY, 'd' },
                      { USEC_PER_HOUR, 'h' },
                      { USEC_PER_MINUTE, 'm' },
                      { USEC_PER_SEC, 's' } };
        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(parts) && off < n; i++) {
                usec_t q = usec / parts[i].mult;
                if (q == 0)
                        continue;
                int w = snprintf(buf + off, n - off, "%llu%c", (unsigned long long)q, parts[i].unit);
                if (w < 0)
                        break;
                off += (size_t)w;
                usec -= q * parts[i].mult;
        }
        if (usec > 0 && off < n)
                snprintf(buf + off, n - off, "%llums", (unsigned long long)sbx_usec_to_msec_ceil(usec));
        return buf;
}

char *sbx_format_timestamp(char *buf, size_t n, usec_t realtime_usec)
{
        time_t secs = (time_t)(realtime_usec / USEC_PER_SEC);
        unsigned ms = (unsigned)((realtime_usec % USEC_PER_SEC) / USEC_PER_MSEC);
        struct tm tm;

        gmtime_r(&secs, &tm);
        snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
        return buf;
}
