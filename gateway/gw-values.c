/* SPDX-License-Identifier: Apache-2.0 */
#include "gateway/gw-values.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/crypto/crypto.h"

/* JavaScript dates span ±100,000,000 days around the epoch. */
#define JS_MAX_MS  8640000000000000LL
#define MS_PER_DAY 86400000LL

int64_t gw_ns_to_ms(int64_t ns)
{
        int64_t ms = ns / 1000000;
        if (ns % 1000000 < 0)
                ms--;
        return ms;
}

/* Days since 1970-01-01 to a proleptic Gregorian date, by 400-year eras of 146097 days. */
static void civil_from_days(int64_t days, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d)
{
        int64_t z = days + 719468; /* days since 0000-03-01 */
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        unsigned doe = (unsigned)(z - era * 146097);                          /* [0, 146096] */
        unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
        unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
        unsigned mp = (5 * doy + 2) / 153;                                    /* March = 0 */
        unsigned d = doy - (153 * mp + 2) / 5 + 1;
        unsigned m = mp < 10 ? mp + 3 : mp - 9;

        *ret_y = (int64_t)yoe + era * 400 + (m <= 2);
        *ret_m = m;
        *ret_d = d;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        unsigned yoe = (unsigned)(y - era * 400);
        unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t)doe - 719468;
}

static bool leap(int64_t y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
        static const unsigned n[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        return m == 2 && leap(y) ? 29 : n[m - 1];
}

int gw_iso_format(int64_t ms, char buf[GW_ISO_MAX])
{
        int64_t days, rem, y;
        unsigned m, d;

        if (ms > JS_MAX_MS || ms < -JS_MAX_MS)
                return -ERANGE;
        days = ms / MS_PER_DAY;
        rem = ms % MS_PER_DAY;
        if (rem < 0) {
                rem += MS_PER_DAY;
                days--;
        }
        civil_from_days(days, &y, &m, &d);
        unsigned h = (unsigned)(rem / 3600000), mi = (unsigned)(rem / 60000 % 60),
                 s = (unsigned)(rem / 1000 % 60), milli = (unsigned)(rem % 1000);
        if (y >= 0 && y <= 9999)
                snprintf(buf, GW_ISO_MAX, "%04d-%02u-%02uT%02u:%02u:%02u.%03uZ", (int)y, m, d, h, mi, s,
                         milli);
        else
                snprintf(buf, GW_ISO_MAX, "%c%06lld-%02u-%02uT%02u:%02u:%02u.%03uZ", y < 0 ? '-' : '+',
                         (long long)(y < 0 ? -y : y), m, d, h, mi, s, milli);
        return 0;
}

/* Reads exactly n decimal digits. */
static bool digits(const char **p, unsigned n, int64_t *ret)
{
        int64_t v = 0;
        for (unsigned i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return false;
                v = v * 10 + (c - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

static bool expect(const char **p, char c)
{
        if (**p != c)
                return false;
        (*p)++;
        return true;
}

int gw_iso_parse(const char *s, int64_t *ret_ms)
{
        const char *p = s;
        int64_t y, mo, d, h, mi, sec, milli = 0;
        bool neg = false;

        if (!s)
                return -EINVAL;
        if (*p == '+' || *p == '-') {
                neg = *p == '-';
                p++;
                if (!digits(&p, 6, &y) || (neg && y == 0))
                        return -EINVAL;
        } else if (!digits(&p, 4, &y))
                return -EINVAL;
        if (neg)
                y = -y;
        if (!expect(&p, '-') || !digits(&p, 2, &mo) || !expect(&p, '-') || !digits(&p, 2, &d) ||
            !expect(&p, 'T') || !digits(&p, 2, &h) || !expect(&p, ':') || !digits(&p, 2, &mi) ||
            !expect(&p, ':') || !digits(&p, 2, &sec))
                return -EINVAL;
        if (*p == '.' && (p++, !digits(&p, 3, &milli)))
                return -EINVAL;
        if (!expect(&p, 'Z') || *p != '\0')
                return -EINVAL;
        if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, (unsigned)mo) || h > 23 || mi > 59 ||
            sec > 59)
                return -EINVAL;

        int64_t ms = days_from_civil(y, (unsigned)mo, (unsigned)d) * MS_PER_DAY + h * 3600000 + mi * 60000 +
                     sec * 1000 + milli;
        if (ms > JS_MAX_MS || ms < -JS_MAX_MS)
                return -EINVAL;
        *ret_ms = ms;
        return 0;
}

/* The length of the valid UTF-8 sequence at p (at most n bytes), or 0 when it is not one; for an
 * invalid one, *ret_bad is the length of its maximal subpart (at least 1). */
static size_t utf8_sequence(const uint8_t *p, size_t n, size_t *ret_bad)
{
        uint8_t c = p[0], lo = 0x80, hi = 0xBF;
        size_t len;

        if (c < 0x80)
                return 1;
        if (c >= 0xC2 && c <= 0xDF)
                len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
                len = 3;
                if (c == 0xE0)
                        lo = 0xA0; /* no overlong forms */
                else if (c == 0xED)
                        hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
                len = 4;
                if (c == 0xF0)
                        lo = 0x90;
                else if (c == 0xF4)
                        hi = 0x8F; /* nothing above U+10FFFF */
        } else {
                *ret_bad = 1;
                return 0;
        }
        for (size_t i = 1; i < len; i++) {
                if (i >= n || p[i] < lo || p[i] > hi) {
                        *ret_bad = i;
                        return 0;
                }
                lo = 0x80;
                hi = 0xBF;
        }
        return len;
}

json_t *gw_json_text(const void *data, size_t n)
{
        static const char replacement[] = "\xEF\xBF\xBD";
        const uint8_t *p = data;
        _cleanup_free_ char *out = NULL;
        size_t i = 0, o = 0, bad;

        /* Fast path: already valid. */
        for (i = 0; i < n;) {
                size_t len = utf8_sequence(p + i, n - i, &bad);
                if (len == 0)
                        break;
                i += len;
        }
        if (i == n)
                return json_stringn(data ? data : "", n);

        /* Each invalid byte grows to at most three. */
        out = malloc(n * 3 + 1);
        if (!out)
                return NULL;
        memcpy(out, p, i);
        o = i;
        while (i < n) {
                size_t len = utf8_sequence(p + i, n - i, &bad);
                if (len > 0) {
                        memcpy(out + o, p + i, len);
                        o += len;
                        i += len;
                } else {
                        memcpy(out + o, replacement, 3);
                        o += 3;
                        i += bad;
                }
        }
        return json_stringn(out, o);
}

json_t *gw_json_base64(const void *p, size_t n)
{
        _cleanup_free_ char *s = NULL;

        if (sbx_base64_encode(p, n, &s) < 0)
                return NULL;
        return json_string(s);
}

static int b64_value(char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+' || c == '-')
                return 62;
        if (c == '/' || c == '_')
                return 63;
        return -1;
}

int gw_base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len)
{
        _cleanup_free_ uint8_t *out = NULL;
        uint32_t acc = 0;
        size_t o = 0, bits = 0, n = len;

        while (n > 0 && s[n - 1] == '=')
                n--;
        /* At most two padding characters, and none inside. */
        if (len - n > 2 || n % 4 == 1)
                return -EINVAL;
        out = malloc(n / 4 * 3 + 3 + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int v = b64_value(s[i]);
                if (v < 0)
                        return -EINVAL;
                acc = (acc << 6) | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (uint8_t)(acc >> bits);
                }
        }
        out[o] = 0;
        *ret = TAKE_PTR(out);
        *ret_len = o;
        return 0;
}

static json_t *iso_json(int64_t ns)
{
        char buf[GW_ISO_MAX];

        if (gw_iso_format(gw_ns_to_ms(ns), buf) < 0)
                return json_string("1970-01-01T00:00:00.000Z");
        return json_string(buf);
}

json_t *gw_file_info_json(const Sbx__V1__FileInfo *fi)
{
        Sbx__V1__FileType t = fi->type;

        return json_pack("{s:b, s:b, s:b, s:I, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
                         "s:I, s:b, s:b, s:b, s:b}",
                         "isFile", t == SBX__V1__FILE_TYPE__FILE_TYPE_REGULAR, "isDirectory",
                         t == SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY, "isSymlink",
                         t == SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK, "size", (json_int_t)fi->size, "mtime",
                         iso_json(fi->mtime_ns), "atime", iso_json(fi->atime_ns), "birthtime",
                         iso_json(fi->birthtime_ns), "ctime", iso_json(fi->ctime_ns), "mode",
                         (json_int_t)fi->mode, "dev", (json_int_t)fi->dev, "ino", (json_int_t)fi->ino,
                         "nlink", (json_int_t)fi->nlink, "uid", (json_int_t)fi->uid, "gid",
                         (json_int_t)fi->gid, "rdev", (json_int_t)fi->rdev, "blksize",
                         (json_int_t)fi->blksize, "blocks", (json_int_t)fi->blocks, "isBlockDevice",
                         t == SBX__V1__FILE_TYPE__FILE_TYPE_BLOCK_DEVICE, "isCharDevice",
                         t == SBX__V1__FILE_TYPE__FILE_TYPE_CHAR_DEVICE, "isFifo",
                         t == SBX__V1__FILE_TYPE__FILE_TYPE_FIFO, "isSocket",
                         t == SBX__V1__FILE_TYPE__FILE_TYPE_SOCKET);
}

json_t *gw_dir_entry_json(const char *name, Sbx__V1__FileType type)
{
        json_t *n = gw_json_text(name, strlen(name));

        if (!n)
                return NULL;
        return json_pack("{s:o, s:b, s:b, s:b}", "name", n, "isFile",
                         type == SBX__V1__FILE_TYPE__FILE_TYPE_REGULAR, "isDirectory",
                         type == SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY, "isSymlink",
                         type == SBX__V1__FILE_TYPE__FILE_TYPE_SYMLINK);
}
