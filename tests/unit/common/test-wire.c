/* SPDX-License-Identifier: Apache-2.0 */
#include <ares.h>
#include <criterion/criterion.h>
#include <openssl/ssl.h>
#include <string.h>

#include "common/wire/wire.h"

/* ---- DNS ---- */

/* A query as a resolver would send it, made by c-ares itself. */
static size_t make_query(const char *name, int type, uint8_t *out, size_t n)
{
        unsigned char *buf = NULL;
        int len = 0;
        cr_assert_eq(ares_create_query(name, 1 /* IN */, type, 0x1234, 1, &buf, &len, 0), ARES_SUCCESS);
        cr_assert_leq((size_t)len, n);
        memcpy(out, buf, (size_t)len);
        ares_free_string(buf);
        return (size_t)len;
}

Test(wire, dns_query_parsed)
{
        uint8_t q[512];
        SbxDnsQuestion qq;
        size_t n = make_query("Allowed.SBX.test", 1, q, sizeof(q));
        cr_assert_eq(sbx_dns_query_parse(q, n, &qq), 0);
        cr_expect_str_eq(qq.name, "allowed.sbx.test");
        cr_expect_eq(qq.qtype, 1);
        cr_expect_eq(qq.qclass, 1);
        cr_expect_eq(qq.id, 0x1234);
}

Test(wire, dns_bad_queries_refused)
{
        uint8_t q[512];
        SbxDnsQuestion qq;
        size_t n = make_query("example.com", 28, q, sizeof(q));
        cr_expect_eq(sbx_dns_query_parse(q, 11, &qq), -EPROTO, "truncated header");
        cr_expect_eq(sbx_dns_query_parse(q, n - 3, &qq), -EPROTO, "truncated question");
        uint8_t r[512];
        memcpy(r, q, n);
        r[2] |= 0x80;
        cr_expect_eq(sbx_dns_query_parse(r, n, &qq), -EPROTO, "a response");
        memcpy(r, q, n);
        r[5] = 2;
        cr_expect_eq(sbx_dns_query_parse(r, n, &qq), -EPROTO, "two questions");
        memcpy(r, q, n);
        r[12] = 0xc0; /* a compression pointer to itself */
        r[13] = 12;
        cr_expect_eq(sbx_dns_query_parse(r, n, &qq), -EPROTO, "a pointer loop");
        n = make_query("bad_name.example", 1, q, sizeof(q));
        cr_expect_eq(sbx_dns_query_parse(q, n, &qq), -EPROTO, "not a host name");
}

Test(wire, dns_nxdomain_answer)
{
        uint8_t q[512];
        SbxBuffer out = SBX_BUFFER_INIT;
        size_t n = make_query("other.sbx.test", 1, q, sizeof(q));
        cr_assert_eq(sbx_dns_empty_answer(q, n, 3, &out), 0);
        const uint8_t *a = sbx_buffer_data(&out);
        cr_assert_eq(sbx_buffer_size(&out), n);
        cr_expect_eq(a[0] << 8 | a[1], 0x1234, "the id is kept");
        cr_expect(a[2] & 0x80, "QR set");
        cr_expect_eq(a[3] & 0x0f, 3, "NXDOMAIN");
        /* c-ares itself reads it as an answer without addresses. */
        struct hostent *h = NULL;
        cr_expect_eq(ares_parse_a_reply(a, (int)n, &h, NULL, NULL), ARES_ENODATA);
        if (h)
                ares_free_hostent(h);
        sbx_buffer_done(&out);
}

Test(wire, dns_tcp_framing)
{
        uint8_t q[512], framed[600];
        size_t n = make_query("allowed.sbx.test", 1, q, sizeof(q)), offset = 0, len = 0;
        framed[0] = (uint8_t)(n >> 8);
        framed[1] = (uint8_t)n;
        memcpy(framed + 2, q, n);
        for (size_t k = 0; k < n + 2; k++)
                cr_expect_eq(sbx_dns_tcp_message(framed, k, &offset, &len), -EAGAIN, "%zu bytes", k);
        cr_assert_eq(sbx_dns_tcp_message(framed, n + 2, &offset, &len), 1);
        cr_expect_eq(offset, 2);
        cr_expect_eq(len, n);
        cr_expect_eq(sbx_dns_tcp_message(framed, n + 10, &offset, &len), 1, "a second message may follow");
        framed[0] = 0xff;
        cr_expect_eq(sbx_dns_tcp_message(framed, n + 2, &offset, &len), -EPROTO, "longer than a query");
        framed[0] = 0;
        framed[1] = 11;
        cr_expect_eq(sbx_dns_tcp_message(framed, n + 2, &offset, &len), -EPROTO, "shorter than a header");
}

/* ---- TLS ---- */

/* The first flight of a real OpenSSL client, with or without a server name. */
static size_t client_hello(const char *sni, uint8_t *out, size_t n)
{
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        SSL *ssl = SSL_new(ctx);
        BIO *in = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
        SSL_set_bio(ssl, in, wbio);
        if (sni)
                SSL_set_tlsext_host_name(ssl, sni);
        SSL_set_connect_state(ssl);
        SSL_do_handshake(ssl);
        char *p;
        long len = BIO_get_mem_data(wbio, &p);
        cr_assert_gt(len, 0);
        cr_assert_leq((size_t)len, n);
        memcpy(out, p, (size_t)len);
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        return (size_t)len;
}

Test(wire, tls_sni_found)
{
        uint8_t hello[4096];
        char host[256];
        size_t n = client_hello("Allowed.sbx.TEST", hello, sizeof(hello));
        cr_assert_eq(sbx_tls_hello_sni(hello, n, host, sizeof(host)), 1);
        cr_expect_str_eq(host, "allowed.sbx.test");
}

Test(wire, tls_sni_needs_more_then_found)
{
        uint8_t hello[4096];
        char host[256];
        size_t n = client_hello("a.example", hello, sizeof(hello));
        for (size_t k = 1; k < n; k += 37)
                cr_expect_eq(sbx_tls_hello_sni(hello, k, host, sizeof(host)), -EAGAIN, "at %zu of %zu", k,
                             n);
        cr_expect_eq(sbx_tls_hello_sni(hello, n, host, sizeof(host)), 1);
}

Test(wire, tls_without_sni_and_garbage)
{
        uint8_t hello[4096];
        char host[256];
        size_t n = client_hello(NULL, hello, sizeof(hello));
        cr_expect_eq(sbx_tls_hello_sni(hello, n, host, sizeof(host)), 0);
        cr_expect_eq(sbx_tls_hello_sni((const uint8_t *)"GET / HTTP/1.1\r\n", 16, host, sizeof(host)),
                     -EPROTO);
        uint8_t junk[64];
        memset(junk, 0x16, sizeof(junk));
        cr_expect_eq(sbx_tls_hello_sni(junk, sizeof(junk), host, sizeof(host)), -EPROTO);
}

/* ---- HTTP ---- */

Test(wire, http_head)
{
        const char *req = "POST /v1/x HTTP/1.1\r\nHost: API.Example.com:8080\r\nAuthorization: Bearer t\r\n"
                          "Content-Length: 5\r\n\r\nhello";
        SbxHttpHead h;
        cr_assert_eq(sbx_http_head_parse((const uint8_t *)req, strlen(req), &h), 1);
        cr_expect_eq(h.length, strlen(req) - 5);
        cr_expect_str_eq(h.host, "api.example.com");
        cr_expect_eq(h.port, 8080);
        cr_expect_str_eq(h.method, "POST");
        cr_expect_eq(h.content_length, 5);
        cr_expect_not(h.chunked);
        cr_expect_eq(sbx_http_head_parse((const uint8_t *)req, 30, &h), -EAGAIN);
}

Test(wire, http_head_refusals)
{
        SbxHttpHead h;
        const char *two = "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n";
        cr_expect_eq(sbx_http_head_parse((const uint8_t *)two, strlen(two), &h), -EPROTO,
                     "two Host headers");
        const char *tls = "\x16\x03\x01\x02\x00";
        cr_expect_eq(sbx_http_head_parse((const uint8_t *)tls, 5, &h), -EPROTO);
        const char *chunked =
                "PUT /a HTTP/1.1\r\nhost: [2001:db8::1]:443\r\nTransfer-Encoding: chunked\r\n\r\n";
        cr_assert_eq(sbx_http_head_parse((const uint8_t *)chunked, strlen(chunked), &h), 1);
        cr_expect(h.chunked);
        cr_expect_str_eq(h.host, "[2001:db8::1]");
        cr_expect_eq(h.port, 443);
        char big[SBX_HTTP_HEAD_MAX + 100];
        memset(big, 'a', sizeof(big));
        memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
        cr_expect_eq(sbx_http_head_parse((const uint8_t *)big, sizeof(big), &h), -EPROTO, "an endless head");
}

Test(wire, replace_all)
{
        SbxBuffer out = SBX_BUFFER_INIT;
        const char *in = "a PH b PHPH c";
        cr_assert_eq(sbx_replace_all((const uint8_t *)in, strlen(in), "PH", "secret", &out), 3);
        sbx_buffer_append(&out, "", 1);
        cr_expect_str_eq((const char *)sbx_buffer_data(&out), "a secret b secretsecret c");
        sbx_buffer_done(&out);
}
