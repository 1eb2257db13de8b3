/* SPDX-License-Identifier: Apache-2.0 */
#include "common/token/token.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/macro.h"
#include "proto/sbx/v1/state.pb-c.h"

#define PREFIX     "sbxat1."
#define PREFIX_LEN (sizeof(PREFIX) - 1)

/* The HMAC key of a cluster key, derived once per thread and key: the scheduler mints a token with
 * every Create and agents verify one with every call, and the HKDF derivation was 4% of the
 * scheduler's CPU at c64. The cluster key itself stays in memory anyway. */
static int token_key(const SbxClusterKey *key, uint8_t out[32])
{
        static __thread uint8_t cached_for[32], cached[32];
        static __thread bool valid;

        if (!valid || CRYPTO_memcmp(cached_for, key->key, sizeof(cached_for)) != 0) {
                int r = sbx_hkdf_sha256(key->key, sizeof(key->key), "sbx access token v1", cached, 32);
                if (r < 0) {
                        valid = false;
                        return r;
                }
                memcpy(cached_for, key->key, sizeof(cached_for));
                valid = true;
        }
        memcpy(out, cached, 32);
        return 0;
}

static int sign(const SbxClusterKey *key, const char *signed_part, size_t n, uint8_t mac[SBX_SHA256_LEN])
{
        uint8_t k[32];
        int r = token_key(key, k);
        if (r >= 0)
                r = sbx_hmac_sha256(k, sizeof(k), signed_part, n, mac);
        OPENSSL_cleanse(k, sizeof(k));
        return r;
}

int sbx_token_mint(const SbxClusterKey *key, const char *sandbox_id, const char *org, int64_t expires_at_ms,
                   char **ret)
{
        Sbx__V1__AccessTokenClaims c = SBX__V1__ACCESS_TOKEN_CLAIMS__INIT;
        _cleanup_free_ uint8_t *packed = NULL;
        _cleanup_free_ char *claims = NULL, *mac_b64 = NULL, *signed_part = NULL;
        uint8_t mac[SBX_SHA256_LEN];
        size_t n;
        int r;

        if (strlen(sandbox_id) >= sizeof(((SbxTokenClaims *)0)->sandbox_id) ||
            strlen(org) >= sizeof(((SbxTokenClaims *)0)->org))
                return -EINVAL;
        c.sandbox_id = (char *)sandbox_id;
        c.org = (char *)org;
        c.expires_at_ms = expires_at_ms;
        c.key_id = (char *)key->id;
        n = sbx__v1__access_token_claims__get_packed_size(&c);
        packed = malloc(n ? n : 1);
        if (!packed)
                return -ENOMEM;
        sbx__v1__access_token_claims__pack(&c, packed);
        if ((r = sbx_base64url_encode(packed, n, &claims)) < 0)
                return r;
        if (asprintf(&signed_part, PREFIX "%s", claims) < 0)
                return -ENOMEM;
        if ((r = sign(key, signed_part, strlen(signed_part), mac)) < 0 ||
            (r = sbx_base64url_encode(mac, sizeof(mac), &mac_b64)) < 0)
                return r;
        if (asprintf(ret, "%s.%s", signed_part, mac_b64) < 0)
                return -ENOMEM;
        return 0;
}

int sbx_token_verify(const SbxClusterKey *key, const char *token, const char *sandbox_id, int64_t now_ms,
                     SbxTokenClaims *ret_claims)
{
        _cleanup_free_ uint8_t *mac_given = NULL, *packed = NULL;
        uint8_t mac[SBX_SHA256_LEN];
        size_t mac_len, packed_len, len;
        const char *dot;
        Sbx__V1__AccessTokenClaims *c;
        int r;

        if (!token)
                return -SBX_E_UNAUTHENTICATED;
        len = strnlen(token, SBX_TOKEN_MAX + 1);
        if (len > SBX_TOKEN_MAX || strncmp(token, PREFIX, PREFIX_LEN) != 0)
                return -SBX_E_UNAUTHENTICATED;
        dot = strchr(token + PREFIX_LEN, '.');
        if (!dot || strchr(dot + 1, '.'))
                return -SBX_E_UNAUTHENTICATED;

        /* Check the signature before looking at what the claims say. */
        if (sbx_base64url_decode(dot + 1, strlen(dot + 1), &mac_given, &mac_len) < 0 ||
            mac_len != sizeof(mac))
                return -SBX_E_UNAUTHENTICATED;
        r = sign(key, token, (size_t)(dot - token), mac);
        if (r < 0)
                return r;
        if (!sbx_memeq_const(mac, mac_given, sizeof(mac)))
                return -SBX_E_UNAUTHENTICATED;

        if (sbx_base64url_decode(token + PREFIX_LEN, (size_t)(dot - token - (ptrdiff_t)PREFIX_LEN), &packed,
                                 &packed_len) < 0)
                return -SBX_E_UNAUTHENTICATED;
        c = sbx__v1__access_token_claims__unpack(NULL, packed_len, packed);
        if (!c)
                return -SBX_E_UNAUTHENTICATED;
        r = 0;
        if (!c->key_id || strcmp(c->key_id, key->id) != 0 || c->expires_at_ms <= now_ms)
                r = -SBX_E_UNAUTHENTICATED;
        else if (!c->sandbox_id || !sandbox_id || strcmp(c->sandbox_id, sandbox_id) != 0)
                r = -SBX_E_PERMISSION_DENIED;
        else if (strlen(c->sandbox_id) >= sizeof(ret_claims->sandbox_id) ||
                 strlen(c->org) >= sizeof(ret_claims->org))
                r = -SBX_E_UNAUTHENTICATED;
        if (r >= 0 && ret_claims) {
                snprintf(ret_claims->sandbox_id, sizeof(ret_claims->sandbox_id), "%s", c->sandbox_id);
                snprintf(ret_claims->org, sizeof(ret_claims->org), "%s", c->org);
                ret_claims->expires_at_ms = c->expires_at_ms;
        }
        sbx__v1__access_token_claims__free_unpacked(c, NULL);
        return r;
}
