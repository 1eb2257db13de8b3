/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.x request heads, read by http-parser: the head is parsed from its first byte on every call,
 * and the parser is paused at the end of the headers so that no body byte is looked at. */
#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/base/parse.h"
#include "common/policy/policy.h"
#include "common/wire/wire.h"

typedef struct Head {
        SbxHttpHead *h;
        bool in_host;
        bool bad_host;
        char host[300];
        size_t host_len;
        bool last_was_value;
        bool done;
} Head;

static int on_field(http_parser *p, const char *at, size_t len)
{
        Head *s = p->data;
        /* A field may come in pieces only at the end of the buffer; the whole head is in it here. */
        s->in_host = len == 4 && strncasecmp(at, "host", 4) == 0;
        s->last_was_value = false;
        return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
        Head *s = p->data;
        if (!s->in_host)
                return 0;
        if (s->host_len > 0 || len >= sizeof(s->host)) {
                /* Two Host headers, or an absurd one: refuse rather than guess which counts. */
                s->bad_host = true;
                return 0;
        }
        memcpy(s->host, at, len);
        s->host_len = len;
        s->host[len] = '\0';
        return 0;
}

static int on_headers_complete(http_parser *p)
{
        Head *s = p->data;
        s->done = true;
        http_parser_pause(p, 1);
        return 0;
}

static int split_host(Head *s)
{
        SbxHttpHead *h = s->h;
        char *host = s->host, *colon;
        uint16_t port = 0;

        if (s->host_len == 0)
                return 0;
        if (host[0] == '[') {
                /* An IPv6 literal: kept with its brackets, as allow-list entries write it. */
                char *end = strchr(host, ']');
                if (!end)
                        return -EPROTO;
                colon = end[1] == ':' ? end + 1 : NULL;
                if (!colon && end[1] != '\0')
                        return -EPROTO;
        } else {
                colon = strchr(host, ':');
        }
        if (colon) {
                uint32_t v;
                *colon = '\0';
                if (sbx_parse_uint32(colon + 1, &v) < 0 || v == 0 || v > 65535)
                        return -EPROTO;
                port = (uint16_t)v;
        }
        size_t len = strlen(host);
        if (len == 0 || len >= sizeof(h->host))
                return -EPROTO;
        for (size_t i = 0; i <= len; i++)
                h->host[i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] + 32 : host[i]);
        if (len > 1 && h->host[len - 1] == '.')
                h->host[len - 1] = '\0';
        h->port = port;
        return 0;
}

int sbx_http_head_parse(const uint8_t *p, size_t n, SbxHttpHead *ret)
{
        static const http_parser_settings settings = {
                .on_header_field = on_field,
                .on_header_value = on_value,
                .on_headers_complete = on_headers_complete,
        };
        http_parser parser;
        Head s = { .h = ret };

        *ret = (SbxHttpHead){ .content_length = -1 };
        size_t limit = n < SBX_HTTP_HEAD_MAX ? n : SBX_HTTP_HEAD_MAX;
        http_parser_init(&parser, HTTP_REQUEST);
        parser.data = &s;
        size_t used = http_parser_execute(&parser, &settings, (const char *)p, limit);
        enum http_errno err = HTTP_PARSER_ERRNO(&parser);
        if (!s.done) {
                if (err != HPE_OK || n >= SBX_HTTP_HEAD_MAX)
                        return -EPROTO;
                return -EAGAIN;
        }
        if (err != HPE_PAUSED || s.bad_host || parser.http_major != 1)
                return -EPROTO;
        /* Paused in on_headers_complete, http-parser reports the position of the head's last byte
         * (the final LF) as the count, not past it. */
        if (used >= limit || p[used] != '\n')
                return -EPROTO;
        ret->length = used + 1;
        snprintf(ret->method, sizeof(ret->method), "%s", http_method_str(parser.method));
        if (parser.flags & F_CHUNKED)
                ret->chunked = true;
        else if (parser.content_length != ULLONG_MAX && parser.content_length > 0)
                ret->content_length = (int64_t)parser.content_length;
        else if (parser.content_length == 0)
                ret->content_length = 0;
        ret->upgrade = parser.upgrade;
        return split_host(&s) < 0 ? -EPROTO : 1;
}

int sbx_replace_all(const uint8_t *p, size_t n, const char *from, const char *to, SbxBuffer *out)
{
        size_t flen = strlen(from), tlen = strlen(to), i = 0, start = 0;
        int count = 0, r;

        if (flen == 0)
                return sbx_buffer_append(out, p, n) < 0 ? -ENOMEM : 0;
        while (i + flen <= n) {
                if (memcmp(p + i, from, flen) == 0) {
                        if ((r = sbx_buffer_append(out, p + start, i - start)) < 0 ||
                            (r = sbx_buffer_append(out, to, tlen)) < 0)
                                return r;
                        i += flen;
                        start = i;
                        count++;
                } else {
                        i++;
                }
        }
        if ((r = sbx_buffer_append(out, p + start, n - start)) < 0)
                return r;
        return count;
}
