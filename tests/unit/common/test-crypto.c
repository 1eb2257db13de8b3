/* SPDX-License-Identifier: Apache-2.0 */
/* common/crypto: known-answer tests and the failure modes of sealing, base64 and the cluster key. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/crypto/crypto.h"
#include "tests/lib/fixture.h"

Test(crypto, sha256_and_hmac_known_answers)
{
        char hex[SBX_SHA256_HEX_LEN + 1];
        sbx_sha256_hex("abc", 3, hex);
        cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

        /* RFC 4231 test case 2. */
        uint8_t mac[32];
        cr_assert_eq(sbx_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac), 0);
        static const uint8_t want[32] = { 0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
                                          0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
                                          0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43 };
        cr_assert_eq(memcmp(mac, want, 32), 0);
}

Test(crypto, hkdf_separates_purposes)
{
        uint8_t a[32], b[32], a2[32];
        cr_assert_eq(sbx_hkdf_sha256("key", 3, "purpose a", a, 32), 0);
        cr_assert_eq(sbx_hkdf_sha256("key", 3, "purpose b", b, 32), 0);
        cr_assert_eq(sbx_hkdf_sha256("key", 3, "purpose a", a2, 32), 0);
        cr_assert_neq(memcmp(a, b, 32), 0);
        cr_assert_eq(memcmp(a, a2, 32), 0);
}

Test(crypto, aead_round_trip_and_tamper)
{
        uint8_t key[32] = { 1 }, other[32] = { 2 }, nonce[12];
        uint8_t *c = NULL, *p = NULL;
        size_t cl, pl;

        cr_assert_eq(sbx_aead_seal(key, "sbx_ams_x", 9, "secret value", 12, nonce, &c, &cl), 0);
        cr_assert_eq(cl, 12 + 16);
        cr_assert_null(memmem(c, cl, "secret", 6), "plaintext visible in the ciphertext");
        cr_assert_eq(sbx_aead_open(key, "sbx_ams_x", 9, nonce, c, cl, &p, &pl), 0);
        cr_assert_eq(pl, 12);
        cr_assert_eq(memcmp(p, "secret value", 12), 0);
        free(p);
        p = NULL;
        cr_assert_eq(sbx_aead_open(other, "sbx_ams_x", 9, nonce, c, cl, &p, &pl), -EBADMSG, "wrong key");
        cr_assert_eq(sbx_aead_open(key, "sbx_ams_y", 9, nonce, c, cl, &p, &pl), -EBADMSG, "other aad");
        c[3] ^= 1;
        cr_assert_eq(sbx_aead_open(key, "sbx_ams_x", 9, nonce, c, cl, &p, &pl), -EBADMSG, "tampered");
        cr_assert_eq(sbx_aead_open(key, NULL, 0, nonce, c, 10, &p, &pl), -EBADMSG, "too short");
        cr_assert_null(p);
        free(c);
}

Test(crypto, base64_strict)
{
        char *s = NULL;
        uint8_t *d = NULL;
        size_t n;

        cr_assert_eq(sbx_base64_encode("hello", 5, &s), 0);
        cr_assert_str_eq(s, "aGVsbG8=");
        cr_assert_eq(sbx_base64_decode(s, strlen(s), &d, &n), 0);
        cr_assert_eq(n, 5);
        cr_assert_eq(memcmp(d, "hello", 5), 0);
        free(s);
        free(d);
        cr_assert_eq(sbx_base64_encode("", 0, &s), 0);
        cr_assert_str_eq(s, "");
        free(s);
        const char *bad[] = { "aGVsbG8", "aGV sbG8=", "aG=sbG8=", "a===", "aGVsbG8*", "=aGV" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                cr_assert_eq(sbx_base64_decode(bad[i], strlen(bad[i]), &d, &n), -EINVAL, "\"%s\" accepted",
                             bad[i]);

        cr_assert_eq(sbx_base64url_encode("\xfb\xff", 2, &s), 0);
        cr_assert_str_eq(s, "-_8");
        cr_assert_eq(sbx_base64url_decode(s, strlen(s), &d, &n), 0);
        cr_assert_eq(n, 2);
        cr_assert_eq(d[0], 0xfb);
        free(s);
        free(d);
        cr_assert_eq(sbx_base64url_decode("+/8", 3, &d, &n), -EINVAL, "standard alphabet in base64url");
        cr_assert_eq(sbx_base64url_decode("a", 1, &d, &n), -EINVAL);
}

Test(crypto, random_token)
{
        char *a = NULL, *b = NULL;
        cr_assert_eq(sbx_random_token("ddo_", 30, &a), 0);
        cr_assert_eq(sbx_random_token("ddo_", 30, &b), 0);
        cr_assert_eq(strncmp(a, "ddo_", 4), 0);
        cr_assert_eq(strlen(a), 4 + 40);
        cr_assert_str_neq(a, b);
        free(a);
        free(b);
}

Test(crypto, cluster_key_file)
{
        char *dir = sbx_test_tempdir("sbx-key");
        char path[512];
        SbxClusterKey k1, k2;

        snprintf(path, sizeof(path), "%s/cluster.key", dir);
        cr_assert_eq(sbx_cluster_key_load(path, &k1), -ENOENT);
        cr_assert_eq(sbx_cluster_key_generate(path), 0);
        cr_assert_eq(sbx_cluster_key_generate(path), -EEXIST, "never overwrite a key");
        cr_assert_eq(sbx_cluster_key_load(path, &k1), 0);
        cr_assert_eq(sbx_cluster_key_load(path, &k2), 0);
        cr_assert_eq(memcmp(k1.key, k2.key, 32), 0);
        cr_assert_eq(strlen(k1.id), 16);
        chmod(path, 0644);
        cr_assert_eq(sbx_cluster_key_load(path, &k2), -EPERM, "a key readable by others is refused");
        FILE *f = fopen(path, "w");
        fputs("not hex\n", f);
        fclose(f);
        chmod(path, 0600);
        cr_assert_eq(sbx_cluster_key_load(path, &k2), -EINVAL);
        sbx_test_rmrf(dir);
        free(dir);
}
