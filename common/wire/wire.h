/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Reading what a sandbox sends toward the outside world, before the egress policy decides on it:
 * the question of a DNS query, the server name of a TLS ClientHello, the head of an HTTP request.
 * All input here comes from hostile guests: every function bounds what it reads, never reads past
 * `n`, and answers -EPROTO for anything malformed. The formats are parsed by the libraries that
 * own them (c-ares, OpenSSL, http-parser); this module only asks them the right questions.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/buffer.h"

/* ---- DNS (c-ares) ---- */

#define SBX_DNS_QUERY_MAX 4096

typedef struct SbxDnsQuestion {
        uint16_t id;
        /* Lower-case, without the trailing dot; at most 253 bytes. */
        char name[254];
        uint16_t qtype;
        uint16_t qclass;
} SbxDnsQuestion;

/* Parses a query with exactly one question. -EPROTO for anything else (responses, several
 * questions, truncated or oversized messages, names that are not host names). */
int sbx_dns_query_parse(const uint8_t *p, size_t n, SbxDnsQuestion *ret);

/* Builds the answer to `query` (as parsed above) that carries no records and response code
 * `rcode` (3 NXDOMAIN, 5 REFUSED, 2 SERVFAIL): the query's header and question, flags set. */
int sbx_dns_empty_answer(const uint8_t *query, size_t n, unsigned rcode, SbxBuffer *out);

/* DNS over TCP (RFC 1035 §4.2.2, RFC 7766): each message follows its length in two bytes. Looks at
 * the start of what a client sent: 1 with the message's offset and length when it is all there,
 * -EAGAIN when more bytes are needed, -EPROTO for a length no query can have (shorter than a
 * header, longer than SBX_DNS_QUERY_MAX). */
int sbx_dns_tcp_message(const uint8_t *p, size_t n, size_t *ret_offset, size_t *ret_len);

/* ---- TLS ClientHello (OpenSSL) ---- */

/* The most of a ClientHello that is buffered while looking for its server name. */
#define SBX_TLS_HELLO_MAX (16 * 1024)

/* Looks for the server name in the first bytes a TLS client sent. Returns 1 with the lower-case
 * name in `host` (NUL-terminated), 0 for a complete ClientHello without a server name, -EAGAIN
 * when more bytes are needed, -EPROTO when this is not a TLS ClientHello or exceeds the limit. */
int sbx_tls_hello_sni(const uint8_t *p, size_t n, char *host, size_t host_size);

/* ---- HTTP/1.x request heads (http-parser) ---- */

#define SBX_HTTP_HEAD_MAX (64 * 1024)

typedef struct SbxHttpHead {
        /* Length of the head including the blank line that ends it. */
        size_t length;
        /* The Host header's host part, lower case, without a port; empty when absent. */
        char host[256];
        /* Its port, or 0 when the header had none. */
        uint16_t port;
        char method[16];
        /* Content-Length when given; -1 when absent; chunked bodies say so below. */
        int64_t content_length;
        bool chunked;
        bool upgrade;
} SbxHttpHead;

/* Parses the head of one HTTP/1.x request at the start of `p`. Returns 1 when the head is
 * complete (ret->length bytes), -EAGAIN when more bytes are needed, -EPROTO when it is not an
 * HTTP/1.x request or its head exceeds SBX_HTTP_HEAD_MAX. */
int sbx_http_head_parse(const uint8_t *p, size_t n, SbxHttpHead *ret);

/* Replaces every occurrence of `from` in p[0..n) by `to`, appending the result to `out`; returns the
 * number of replacements. */
int sbx_replace_all(const uint8_t *p, size_t n, const char *from, const char *to, SbxBuffer *out);
