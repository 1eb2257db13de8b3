/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base/buffer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbx_buffer_set_limit(SbxBuffer *b, size_t limit)
{
        b->limit = limit;
}

void sbx_buffer_done(SbxBuffer *b)
{
        free(b->data);
        b->data = NULL;
        b->start = b->end = b->alloc = 0;
}

void sbx_buffer_clear(SbxBuffer *b)
{
        b->start = b->end = 0;
}

int sbx_buffer_reserve(SbxBuffer *b, size_t n, uint8_t **ret)
{
        size_t used = sbx_buffer_size(b);

        if (n > SIZE_MAX - used)
                return -ENOBUFS;
        if (b->limit && used + n > b->limit)
                return -ENOBUFS;

        if (b->alloc - b->end < n) {
                /* Compact first: moving the unread bytes is cheaper than growing when half is consumed. */
                if (b->start > 0 && b->alloc - used >= n) {
                        memmove(b->data, b->data + b->start, used);
                        b->start = 0;
                        b->end = used;
                } else {
                        size_t want = used + n;
                        size_t alloc = b->alloc ? b->alloc : 256;
                        while (alloc < want) {
                                if (alloc > SIZE_MAX / 2)
                                        return -ENOMEM;
                                alloc *= 2;
                        }
                        uint8_t *d = malloc(alloc);
                        if (!d)
                                return -ENOMEM;
                        if (used)
                                memcpy(d, b->data + b->start, used);
                        free(b->data);
                        b->data = d;
                        b->alloc = alloc;
                        b->start = 0;
                        b->end = used;
                }
        }
        *ret = b->data + b->end;
        return 0;
}

void sbx_buffer_commit(SbxBuffer *b, size_t n)
{
        b->end += n;
}

int sbx_buffer_append(SbxBuffer *b, const void *p, size_t n)
{
        uint8_t *dst;
        int r;

        if (n == 0)
                return 0;
        r = sbx_buffer_reserve(b, n, &dst);
        if (r < 0)
                return r;
        memcpy(dst, p, n);
        b->end += n;
        return 0;
}

int sbx_buffer_append_str(SbxBuffer *b, const char *s)
{
        return sbx_buffer_append(b, s, strlen(s));
}

int sbx_buffer_appendv(SbxBuffer *b, const char *fmt, va_list ap)
{
        va_list aq;
        uint8_t *dst;
        int n, r;

        va_copy(aq, ap);
        n = vsnprintf(NULL, 0, fmt, aq);
        va_end(aq);
        if (n < 0)
                return -EINVAL;
        /* +1 for the NUL vsnprintf writes; it is not committed. */
        r = sbx_buffer_reserve(b, (size_t)n + 1, &dst);
        if (r < 0)
                return r;
        vsnprintf((char *)dst, (size_t)n + 1, fmt, ap);
        b->end += (size_t)n;
        return 0;
}

int sbx_buffer_appendf(SbxBuffer *b, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = sbx_buffer_appendv(b, fmt, ap);
        va_end(ap);
        return r;
}

void sbx_buffer_consume(SbxBuffer *b, size_t n)
{
        if (n >= sbx_buffer_size(b)) {
                b->start = b->end = 0;
                return;
        }
        b->start += n;
}

int sbx_buffer_steal_string(SbxBuffer *b, char **ret)
{
        size_t n = sbx_buffer_size(b);
        char *s = malloc(n + 1);
        if (!s)
                return -ENOMEM;
        if (n)
                memcpy(s, b->data + b->start, n);
        s[n] = '\0';
        sbx_buffer_done(b);
        *ret = s;
        return 0;
}

uint32_t sbx_read_be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void sbx_write_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}
