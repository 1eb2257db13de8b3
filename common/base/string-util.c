/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base/string-util.h"

#include <errno.h>
#include <stdlib.h>

#include "common/base/macro.h"

const char *startswith(const char *s, const char *prefix)
{
        size_t l = strlen(prefix);
        if (strncmp(s, prefix, l) != 0)
                return NULL;
        return s + l;
}

bool endswith(const char *s, const char *suffix)
{
        size_t ls = strlen(s), lx = strlen(suffix);
        return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

size_t strv_length(char *const *l)
{
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

int strv_extend(char ***l, const char *s)
{
        size_t n = strv_length(*l);
        _cleanup_free_ char *copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        char **nl = realloc(*l, (n + 2) * sizeof(char *));
        if (!nl)
                return -ENOMEM;
        nl[n] = TAKE_PTR(copy);
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

int strv_split(const char *s, char sep, char ***ret)
{
        _cleanup_strv_free_ char **l = new0(char *, 1);
        if (!l)
                return -ENOMEM;

        while (s && *s) {
                const char *e = strchr(s, sep);
                size_t n = e ? (size_t)(e - s) : strlen(s);
                const char *b = s;
                size_t m = n;

                while (m > 0 && (*b == ' ' || *b == '\t')) {
                        b++;
                        m--;
                }
                while (m > 0 && (b[m - 1] == ' ' || b[m - 1] == '\t'))
                        m--;
                if (m > 0) {
                        _cleanup_free_ char *item = strndup(b, m);
                        if (!item)
                                return -ENOMEM;
                        int r = strv_extend(&l, item);
                        if (r < 0)
                                return r;
                }
                s = e ? e + 1 : NULL;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

int strv_join(char *const *l, const char *sep, char **ret)
{
        size_t n = 0, ls = strlen(sep);
        for (size_t i = 0; l && l[i]; i++)
                n += strlen(l[i]) + (i ? ls : 0);
        char *s = malloc(n + 1), *p = s;
        if (!s)
                return -ENOMEM;
        for (size_t i = 0; l && l[i]; i++) {
                if (i) {
                        memcpy(p, sep, ls);
                        p += ls;
                }
                size_t li = strlen(l[i]);
                memcpy(p, l[i], li);
                p += li;
        }
        *p = '\0';
        *ret = s;
        return 0;
}

int strv_copy(char *const *l, char ***ret)
{
        _cleanup_strv_free_ char **c = new0(char *, strv_length(l) + 1);
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; l && l[i]; i++) {
                c[i] = strdup(l[i]);
                if (!c[i])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

bool strv_contains(char *const *l, const char *s)
{
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

int sbx_hex_encode(const void *p, size_t n, char **ret)
{
        static const char digits[] = "0123456789abcdef";
        const uint8_t *b = p;
        char *s = malloc(n * 2 + 1);
        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                s[2 * i] = digits[b[i] >> 4];
                s[2 * i + 1] = digits[b[i] & 15];
        }
        s[2 * n] = '\0';
        *ret = s;
        return 0;
}

int free_and_strdup(char **dst, const char *src)
{
        char *c = NULL;
        if (src) {
                c = strdup(src);
                if (!c)
                        return -ENOMEM;
        }
        free(*dst);
        *dst = c;
        return 0;
}
