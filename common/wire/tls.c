/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The server name of a TLS ClientHello, read by OpenSSL itself: the bytes go into a server-side SSL
 * object through a memory BIO, and its ClientHello callback looks at the server_name extension and
 * stops the handshake there. Record framing, fragmentation and every other extension are OpenSSL's
 * business; only the extension's own list (RFC 6066 §3) is read here.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <string.h>

#include "common/policy/policy.h"
#include "common/wire/wire.h"

typedef struct Peek {
        char *host;
        size_t size;
        int result; /* 1 found, 0 none, -EPROTO malformed; -EAGAIN until the callback ran */
} Peek;

static SSL_CTX *ctx;
static int peek_index = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int on_hello(SSL *ssl, int *alert, void *arg)
{
        Peek *peek = SSL_get_ex_data(ssl, peek_index);
        const unsigned char *ext;
        size_t len;

        if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len)) {
                peek->result = 0;
                return SSL_CLIENT_HELLO_ERROR;
        }
        /* ServerNameList: u16 length, then entries of u8 type, u16 length, name. */
        peek->result = -EPROTO;
        if (len < 5 || (size_t)(ext[0] << 8 | ext[1]) != len - 2 || ext[2] != TLSEXT_NAMETYPE_host_name)
                return SSL_CLIENT_HELLO_ERROR;
        size_t name_len = (size_t)(ext[3] << 8 | ext[4]);
        if (name_len == 0 || name_len > len - 5 || name_len >= peek->size || name_len > SBX_HOSTNAME_MAX)
                return SSL_CLIENT_HELLO_ERROR;
        for (size_t i = 0; i < name_len; i++) {
                char c = (char)ext[5 + i];
                peek->host[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        peek->host[name_len] = '\0';
        if (peek->host[name_len - 1] == '.')
                peek->host[name_len - 1] = '\0';
        if (sbx_hostname_valid(peek->host))
                peek->result = 1;
        /* Either way the handshake ends here: only the name was wanted. */
        return SSL_CLIENT_HELLO_ERROR;
}

static void init(void)
{
        ctx = SSL_CTX_new(TLS_server_method());
        if (ctx) {
                SSL_CTX_set_client_hello_cb(ctx, on_hello, NULL);
                SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
        }
        peek_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int sbx_tls_hello_sni(const uint8_t *p, size_t n, char *host, size_t host_size)
{
        Peek peek = { .host = host, .size = host_size, .result = -EAGAIN };

        if (n > SBX_TLS_HELLO_MAX || host_size == 0)
                return -EPROTO;
        /* Not a handshake record: not TLS at all (and not worth waking OpenSSL for). */
        if (n >= 1 && p[0] != 0x16)
                return -EPROTO;
        pthread_once(&once, init);
        if (!ctx || peek_index < 0)
                return -ENOMEM;
        SSL *ssl = SSL_new(ctx);
        BIO *in = BIO_new_mem_buf(p, (int)n), *out = BIO_new(BIO_s_mem());
        if (!ssl || !in || !out) {
                SSL_free(ssl);
                BIO_free(in);
                BIO_free(out);
                return -ENOMEM;
        }
        /* A read-only buffer that runs dry reports "retry", not end of file. */
        BIO_set_mem_eof_return(in, -1);
        SSL_set_bio(ssl, in, out);
        SSL_set_ex_data(ssl, peek_index, &peek);
        SSL_set_accept_state(ssl);
        int r = SSL_do_handshake(ssl);
        int err = SSL_get_error(ssl, r);
        SSL_free(ssl);
        ERR_clear_error();
        if (peek.result != -EAGAIN)
                return peek.result;
        if (err == SSL_ERROR_WANT_READ && n < SBX_TLS_HELLO_MAX)
                return -EAGAIN;
        return -EPROTO;
}
