/* SPDX-License-Identifier: Apache-2.0 */
/* DNS queries from sandboxes: the header is read by offset, the name by c-ares (ares_expand_name). */
#include <ares.h>
#include <errno.h>
#include <string.h>

#include "common/policy/policy.h"
#include "common/wire/wire.h"

#define HEADER  12
#define FLAG_QR 0x80 /* in byte 2 */

static uint16_t be16(const uint8_t *p)
{
        return (uint16_t)(p[0] << 8 | p[1]);
}

int sbx_dns_query_parse(const uint8_t *p, size_t n, SbxDnsQuestion *ret)
{
        char *name = NULL;
        long enclen = 0;

        if (n < HEADER + 5 || n > SBX_DNS_QUERY_MAX)
                return -EPROTO;
        /* A query (QR clear), standard opcode, one question, no answers or authority records (an
         * OPT record in the additional section is normal). */
        if ((p[2] & FLAG_QR) || ((p[2] >> 3) & 0x0f) != 0 || be16(p + 4) != 1 || be16(p + 6) != 0 ||
            be16(p + 8) != 0)
                return -EPROTO;
        if (ares_expand_name(p + HEADER, p, (int)n, &name, &enclen) != ARES_SUCCESS)
                return -EPROTO;
        size_t len = strlen(name);
        bool ok = enclen > 0 && (size_t)enclen + HEADER + 4 <= n && len < sizeof(ret->name);
        if (ok) {
                for (size_t i = 0; i < len; i++)
                        ret->name[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
                ret->name[len] = '\0';
                /* The root or names with characters hosts cannot have are not looked up anywhere. */
                ok = len > 0 && sbx_hostname_valid(ret->name);
        }
        ares_free_string(name);
        if (!ok)
                return -EPROTO;
        const uint8_t *q = p + HEADER + enclen;
        ret->id = be16(p);
        ret->qtype = be16(q);
        ret->qclass = be16(q + 2);
        return 0;
}

int sbx_dns_empty_answer(const uint8_t *query, size_t n, unsigned rcode, SbxBuffer *out)
{
        SbxDnsQuestion q;
        char *name = NULL;
        long enclen = 0;
        uint8_t *w;
        int r;

        if (rcode > 15 || sbx_dns_query_parse(query, n, &q) < 0)
                return -EPROTO;
        if (ares_expand_name(query + HEADER, query, (int)n, &name, &enclen) != ARES_SUCCESS)
                return -EPROTO;
        ares_free_string(name);
        size_t len = HEADER + (size_t)enclen + 4;
        if ((r = sbx_buffer_reserve(out, len, &w)) < 0)
                return r;
        memcpy(w, query, len);
        /* QR, the opcode and RD as asked, RA; the response code; one question, nothing else. */
        w[2] = (uint8_t)(FLAG_QR | (query[2] & 0x79));
        w[3] = (uint8_t)(0x80 | rcode);
        memset(w + 6, 0, 6);
        sbx_buffer_commit(out, len);
        return 0;
}

int sbx_dns_tcp_message(const uint8_t *p, size_t n, size_t *ret_offset, size_t *ret_len)
{
        if (n < 2)
                return -EAGAIN;
        size_t len = (size_t)p[0] << 8 | p[1];
        if (len < HEADER || len > SBX_DNS_QUERY_MAX)
                return -EPROTO;
        if (n - 2 < len)
                return -EAGAIN;
        *ret_offset = 2;
        *ret_len = len;
        return 1;
}
