/* SPDX-License-Identifier: Apache-2.0 */
#include "common/crypto/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/fd-util.h"
#include "common/base/macro.h"

void sbx_sha256_hex(const void *p, size_t n, char out[SBX_SHA256_HEX_LEN + 1])
{
        static const char digits[] = "0123456789abcdef";
        uint8_t d[SBX_SHA256_LEN];

        SHA256(p, n, d);
        for (int i = 0; i < SBX_SHA256_LEN; i++) {
                out[2 * i] = digits[d[i] >> 4];
                out[2 * i + 1] = digits[d[i] & 15];
        }
        out[SBX_SHA256_HEX_LEN] = '\0';
}

int sbx_hmac_sha256(const void *key, size_t key_len, const void *p, size_t n, uint8_t out[SBX_SHA256_LEN])
{
        unsigned len = SBX_SHA256_LEN;
        if (!HMAC(EVP_sha256(), key, (int)key_len, p, n, out, &len) || len != SBX_SHA256_LEN)
                return -EIO;
        return 0;
}

int sbx_hkdf_sha256(const void *key, size_t key_len, const char *info, uint8_t *out, size_t out_len)
{
        EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
        int r = -EIO;

        if (ctx) {
                OSSL_PARAM params[] = {
                        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
                        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, key_len),
                        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info)),
                        OSSL_PARAM_construct_end(),
                };
                if (EVP_KDF_derive(ctx, out, out_len, params) == 1)
                        r = 0;
        }
        EVP_KDF_CTX_free(ctx);
        EVP_KDF_free(kdf);
        return r;
}

void sbx_secure_zero(void *p, size_t n)
{
        if (p && n)
                OPENSSL_cleanse(p, n);
}

bool sbx_memeq_const(const void *a, const void *b, size_t n)
{
        return CRYPTO_memcmp(a, b, n) == 0;
}

int sbx_aead_seal(const uint8_t key[SBX_AEAD_KEY_LEN], const void *aad, size_t aad_len, const void *p,
                  size_t n, uint8_t ret_nonce[SBX_AEAD_NONCE_LEN], uint8_t **ret, size_t *ret_len)
{
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        uint8_t nonce[SBX_AEAD_NONCE_LEN];
        uint8_t *out = malloc(n + SBX_AEAD_TAG_LEN + 1);
        int len = 0, fin = 0, r = -EIO;

        if (!ctx || !out) {
                r = -ENOMEM;
                goto done;
        }
        if (RAND_bytes(nonce, sizeof(nonce)) != 1)
                goto done;
        if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
            (aad_len > 0 && EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1) ||
            EVP_EncryptUpdate(ctx, out, &len, p, (int)n) != 1 ||
            EVP_EncryptFinal_ex(ctx, out + len, &fin) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SBX_AEAD_TAG_LEN, out + len + fin) != 1)
                goto done;
        memcpy(ret_nonce, nonce, sizeof(nonce));
        *ret = TAKE_PTR(out);
        *ret_len = (size_t)(len + fin) + SBX_AEAD_TAG_LEN;
        r = 0;
done:
        EVP_CIPHER_CTX_free(ctx);
        free(out);
        return r;
}

int sbx_aead_open(const uint8_t key[SBX_AEAD_KEY_LEN], const void *aad, size_t aad_len,
                  const uint8_t nonce[SBX_AEAD_NONCE_LEN], const void *c, size_t c_len, uint8_t **ret,
                  size_t *ret_len)
{
        EVP_CIPHER_CTX *ctx;
        uint8_t *out;
        size_t n;
        int len = 0, fin = 0, r = -EBADMSG;

        if (c_len < SBX_AEAD_TAG_LEN)
                return -EBADMSG;
        n = c_len - SBX_AEAD_TAG_LEN;
        ctx = EVP_CIPHER_CTX_new();
        out = malloc(n + 1);
        if (!ctx || !out) {
                r = -ENOMEM;
                goto done;
        }
        if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
            (aad_len > 0 && EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1) ||
            EVP_DecryptUpdate(ctx, out, &len, c, (int)n) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SBX_AEAD_TAG_LEN, (uint8_t *)c + n) != 1 ||
            EVP_DecryptFinal_ex(ctx, out + len, &fin) != 1)
                goto done;
        out[len + fin] = 0;
        *ret_len = (size_t)(len + fin);
        *ret = TAKE_PTR(out);
        r = 0;
done:
        EVP_CIPHER_CTX_free(ctx);
        if (out) {
                OPENSSL_cleanse(out, n);
                free(out);
        }
        return r;
}

int sbx_base64_encode(const void *p, size_t n, char **ret)
{
        size_t out_len = 4 * ((n + 2) / 3);
        char *s = malloc(out_len + 1);
        if (!s)
                return -ENOMEM;
        if (n > 0)
                EVP_EncodeBlock((unsigned char *)s, p, (int)n);
        s[out_len] = '\0';
        *ret = s;
        return 0;
}

static bool b64_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
               c == '/';
}

int sbx_base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len)
{
        size_t pad = 0;
        uint8_t *out;
        int n;

        if (len % 4 != 0)
                return -EINVAL;
        /* EVP_DecodeBlock skips whitespace and accepts odd input; validate the alphabet first. */
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '=' && i >= len - 2) {
                        if (i == len - 2 && s[len - 1] != '=')
                                return -EINVAL;
                        pad++;
                        continue;
                }
                if (!b64_char(s[i]))
                        return -EINVAL;
        }
        out = malloc(len / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        n = len ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)len) : 0;
        if (n < 0 || (size_t)n < pad) {
                free(out);
                return -EINVAL;
        }
        out[n - pad] = 0;
        *ret_len = (size_t)n - pad;
        *ret = out;
        return 0;
}

int sbx_base64url_encode(const void *p, size_t n, char **ret)
{
        char *s;
        int r = sbx_base64_encode(p, n, &s);
        if (r < 0)
                return r;
        size_t l = strlen(s);
        while (l > 0 && s[l - 1] == '=')
                s[--l] = '\0';
        for (size_t i = 0; i < l; i++)
                s[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
        *ret = s;
        return 0;
}

int sbx_base64url_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len)
{
        _cleanup_free_ char *t = NULL;
        size_t padded = (len + 3) / 4 * 4;

        if (len % 4 == 1)
                return -EINVAL;
        t = malloc(padded + 1);
        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (c == '+' || c == '/' || c == '=')
                        return -EINVAL;
                t[i] = c == '-' ? '+' : c == '_' ? '/' : c;
        }
        for (size_t i = len; i < padded; i++)
                t[i] = '=';
        t[padded] = '\0';
        return sbx_base64_decode(t, padded, ret, ret_len);
}

int sbx_random_token(const char *prefix, size_t nbytes, char **ret)
{
        _cleanup_free_ uint8_t *b = malloc(nbytes ? nbytes : 1);
        _cleanup_free_ char *enc = NULL;
        char *s;
        int r;

        if (!b)
                return -ENOMEM;
        if (RAND_bytes(b, (int)nbytes) != 1)
                return -EIO;
        r = sbx_base64url_encode(b, nbytes, &enc);
        OPENSSL_cleanse(b, nbytes);
        if (r < 0)
                return r;
        if (asprintf(&s, "%s%s", prefix ? prefix : "", enc) < 0)
                return -ENOMEM;
        OPENSSL_cleanse(enc, strlen(enc));
        *ret = s;
        return 0;
}

static int hex_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static void cluster_key_set_id(SbxClusterKey *k)
{
        uint8_t buf[10 + sizeof(k->key)];
        char hex[SBX_SHA256_HEX_LEN + 1];

        memcpy(buf, "sbx key id", 10);
        memcpy(buf + 10, k->key, sizeof(k->key));
        sbx_sha256_hex(buf, sizeof(buf), hex);
        OPENSSL_cleanse(buf, sizeof(buf));
        memcpy(k->id, hex, 16);
        k->id[16] = '\0';
}

int sbx_cluster_key_load(const char *path, SbxClusterKey *ret)
{
        _cleanup_free_ char *s = NULL;
        SbxClusterKey k = { 0 };
        struct stat st;
        size_t n;
        int r;

        if (stat(path, &st) < 0)
                return negative_errno();
        if (st.st_mode & 077)
                return -EPERM;
        r = sbx_read_file(path, 256, &s, &n);
        if (r < 0)
                return r;
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
                n--;
        if (n != 64)
                r = -EINVAL;
        for (size_t i = 0; r >= 0 && i < 32; i++) {
                int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        r = -EINVAL;
                else
                        k.key[i] = (uint8_t)(hi << 4 | lo);
        }
        OPENSSL_cleanse(s, strlen(s));
        if (r < 0) {
                sbx_cluster_key_wipe(&k);
                return r;
        }
        cluster_key_set_id(&k);
        *ret = k;
        OPENSSL_cleanse(&k, sizeof(k));
        return 0;
}

int sbx_cluster_key_generate(const char *path)
{
        static const char digits[] = "0123456789abcdef";
        uint8_t key[32];
        char hex[66];
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        int r;

        if (fd < 0)
                return negative_errno();
        if (RAND_bytes(key, sizeof(key)) != 1)
                return -EIO;
        for (int i = 0; i < 32; i++) {
                hex[2 * i] = digits[key[i] >> 4];
                hex[2 * i + 1] = digits[key[i] & 15];
        }
        hex[64] = '\n';
        r = sbx_write_full(fd, hex, 65);
        OPENSSL_cleanse(key, sizeof(key));
        OPENSSL_cleanse(hex, sizeof(hex));
        return r;
}

void sbx_cluster_key_wipe(SbxClusterKey *k)
{
        OPENSSL_cleanse(k, sizeof(*k));
}
