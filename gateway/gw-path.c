/* SPDX-License-Identifier: Apache-2.0 */
#include "gateway/gw-path.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"

char *gw_path_normalize(const char *path)
{
        size_t n = strlen(path), o = 0;
        bool absolute = n > 0 && path[0] == '/', trailing = n > 0 && path[n - 1] == '/';
        /* The result is never longer than the input plus a leading "." or a trailing "/". */
        _cleanup_free_ char *out = malloc(n + 3);
        /* Start offsets of the kept components, for "..". */
        _cleanup_free_ size_t *starts = malloc((n / 2 + 2) * sizeof(size_t));
        size_t depth = 0;

        if (!out || !starts)
                return NULL;
        if (absolute)
                out[o++] = '/';
        for (size_t i = 0; i < n;) {
                size_t j = i;
                while (j < n && path[j] != '/')
                        j++;
                size_t len = j - i;
                if (len == 0 || (len == 1 && path[i] == '.')) {
                        /* Nothing to keep. */
                } else if (len == 2 && path[i] == '.' && path[i + 1] == '.') {
                        if (depth > 0) {
                                depth--;
                                o = starts[depth];
                                /* Drop the separator before the removed component too. */
                                if (o > (absolute ? 1u : 0u))
                                        o--;
                        } else if (!absolute) {
                                /* Relative paths keep the ".." they cannot resolve. */
                                if (o > 0)
                                        out[o++] = '/';
                                out[o++] = '.';
                                out[o++] = '.';
                        }
                } else {
                        if (o > (absolute ? 1u : 0u))
                                out[o++] = '/';
                        starts[depth++] = o;
                        memcpy(out + o, path + i, len);
                        o += len;
                }
                i = j + 1;
        }
        if (o == 0)
                out[o++] = '.';
        if (trailing && !(absolute && o == 1))
                out[o++] = '/';
        out[o] = '\0';
        return TAKE_PTR(out);
}

char *gw_path_join(const char *a, const char *b)
{
        _cleanup_free_ char *joined = NULL;

        if (!*a && !*b)
                return strdup(".");
        if (asprintf(&joined, "%s%s%s", a, *a && *b ? "/" : "", b) < 0)
                return NULL;
        return gw_path_normalize(joined);
}

char *gw_path_basename(const char *path)
{
        size_t end = strlen(path), start;

        while (end > 0 && path[end - 1] == '/')
                end--;
        start = end;
        while (start > 0 && path[start - 1] != '/')
                start--;
        return strndup(path + start, end - start);
}

char *gw_path_resolve(const char *base, const char *path)
{
        if (path[0] == '/')
                return gw_path_normalize(path);
        return gw_path_join(base, path);
}

int gw_path_split(const char *path, char ***ret)
{
        size_t n = 0, k = 0;
        char **l;

        for (const char *p = path; *p; p++)
                if (*p != '/' && (p == path || p[-1] == '/'))
                        n++;
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (const char *p = path; *p;) {
                if (*p == '/') {
                        p++;
                        continue;
                }
                const char *e = strchrnul(p, '/');
                l[k] = strndup(p, (size_t)(e - p));
                if (!l[k]) {
                        strv_free(l);
                        return -ENOMEM;
                }
                k++;
                p = e;
        }
        *ret = l;
        return 0;
}
