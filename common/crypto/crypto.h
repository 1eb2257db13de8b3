/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Small, safe wrappers over OpenSSL 3: hashes, HMAC, HKDF, AES-256-GCM sealing, base64, random
 * tokens, and the cluster key. Nothing here logs; every function returns 0 or a negative error.
 * Secret material is wiped (OPENSSL_cleanse) before it is freed.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SBX_SHA256_LEN     32
#define SBX_SHA256_HEX_LEN 64
#define SBX_AEAD_KEY_LEN   32
#define SBX_AEAD_NONCE_LEN 12
#define SBX_AEAD_TAG_LEN   16

/* Lower-case hex SHA-256 of the bytes into out (SBX_SHA256_HEX_LEN + 1 bytes). */
void sbx_sha256_hex(const void *p, size_t n, char out[SBX_SHA256_HEX_LEN + 1]);

int sbx_hmac_sha256(const void *key, size_t key_len, const void *p, size_t n, uint8_t out[SBX_SHA256_LEN]);

/* HKDF-SHA-256 (RFC 5869) without salt: derives `out_len` bytes for the purpose named by `info`. */
int sbx_hkdf_sha256(const void *key, size_t key_len, const char *info, uint8_t *out, size_t out_len);

/* Zeroes memory in a way the compiler may not optimize away (secrets before free). */
void sbx_secure_zero(void *p, size_t n);

/* Constant-time comparison. */
bool sbx_memeq_const(const void *a, const void *b, size_t n);

/*
 * AES-256-GCM. seal writes a fresh random nonce to ret_nonce and ciphertext||tag (n + 16 bytes,
 * malloc'ed) to *ret; `aad` is authenticated but not encrypted. open returns -EBADMSG when the
 * tag does not verify (wrong key, tampering, or other aad), writing nothing.
 */
int sbx_aead_seal(const uint8_t key[SBX_AEAD_KEY_LEN], const void *aad, size_t aad_len, const void *p,
                  size_t n, uint8_t ret_nonce[SBX_AEAD_NONCE_LEN], uint8_t **ret, size_t *ret_len);
int sbx_aead_open(const uint8_t key[SBX_AEAD_KEY_LEN], const void *aad, size_t aad_len,
                  const uint8_t nonce[SBX_AEAD_NONCE_LEN], const void *c, size_t c_len, uint8_t **ret,
                  size_t *ret_len);

/* Base64 (RFC 4648 §4, with padding) and base64url (§5, without padding). Decoders are strict:
 * -EINVAL for characters outside the alphabet, bad padding, or a bad length. Results are malloc'ed
 * (and NUL-terminated for encoders and decoders alike, for convenience). */
int sbx_base64_encode(const void *p, size_t n, char **ret);
int sbx_base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len);
int sbx_base64url_encode(const void *p, size_t n, char **ret);
int sbx_base64url_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len);

/* `prefix` followed by base64url of `nbytes` random bytes, e.g. sbx_random_token("ddo_", 30, &t). */
int sbx_random_token(const char *prefix, size_t nbytes, char **ret);

/*
 * The cluster key: 32 random bytes shared by schedulers and agents, stored in a file as 64 hex
 * characters (a trailing newline allowed, nothing else). It seals secrets and, through HKDF, signs
 * sandbox access tokens. key_id names it without revealing it: the first 16 hex digits of
 * SHA-256("sbx key id" || key).
 */
typedef struct SbxClusterKey {
        uint8_t key[32];
        char id[17];
} SbxClusterKey;

/* -ENOENT, -EINVAL for a malformed file, -EPERM when group or others may read it. */
int sbx_cluster_key_load(const char *path, SbxClusterKey *ret);
/* Writes a new random key with mode 0600; -EEXIST when the file exists. */
int sbx_cluster_key_generate(const char *path);
void sbx_cluster_key_wipe(SbxClusterKey *k);
