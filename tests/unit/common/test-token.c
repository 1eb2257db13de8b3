/* SPDX-License-Identifier: Apache-2.0 */
/* common/token: access tokens bound to a sandbox, an org, an expiry and the cluster key. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/token/token.h"

static SbxClusterKey key(uint8_t b)
{
        SbxClusterKey k;
        memset(&k, 0, sizeof(k));
        memset(k.key, b, sizeof(k.key));
        snprintf(k.id, sizeof(k.id), "key%02x", b);
        return k;
}

Test(token, mint_and_verify)
{
        SbxClusterKey k = key(7);
        char *t = NULL;
        SbxTokenClaims c;

        cr_assert_eq(sbx_token_mint(&k, "sbx_ams_0123456789abcdefghjk", "demo", 2000, &t), 0);
        cr_assert_eq(strncmp(t, "sbxat1.", 7), 0);
        cr_assert_eq(sbx_token_verify(&k, t, "sbx_ams_0123456789abcdefghjk", 1000, &c), 0);
        cr_assert_str_eq(c.org, "demo");
        cr_assert_eq(c.expires_at_ms, 2000);

        cr_assert_eq(sbx_token_verify(&k, t, "sbx_ams_0123456789abcdefghjk", 2000, NULL),
                     -SBX_E_UNAUTHENTICATED, "expired");
        cr_assert_eq(sbx_token_verify(&k, t, "sbx_ord_0123456789abcdefghjk", 1000, NULL),
                     -SBX_E_PERMISSION_DENIED, "a token for one sandbox used on another");
        SbxClusterKey other = key(8);
        cr_assert_eq(sbx_token_verify(&other, t, "sbx_ams_0123456789abcdefghjk", 1000, NULL),
                     -SBX_E_UNAUTHENTICATED, "another cluster's key");
        free(t);
}

Test(token, tampering_is_refused)
{
        SbxClusterKey k = key(7);
        char *t = NULL, *mint2 = NULL;

        cr_assert_eq(sbx_token_mint(&k, "sbx_ams_0123456789abcdefghjk", "demo", 5000, &t), 0);
        /* Flip every character in turn: no variant may verify. */
        size_t n = strlen(t);
        for (size_t i = 0; i < n; i++) {
                char saved = t[i];
                t[i] = saved == 'A' ? 'B' : 'A';
                cr_assert_neq(sbx_token_verify(&k, t, "sbx_ams_0123456789abcdefghjk", 1000, NULL), 0,
                              "token with byte %zu changed verified", i);
                t[i] = saved;
        }
        /* Claims of one token with the signature of another. */
        cr_assert_eq(sbx_token_mint(&k, "sbx_ams_0123456789abcdefghjk", "evil", 9999999, &mint2), 0);
        char *dot1 = strrchr(t, '.'), *dot2 = strrchr(mint2, '.');
        char spliced[1024];
        snprintf(spliced, sizeof(spliced), "%.*s%s", (int)(dot2 - mint2), mint2, dot1);
        cr_assert_eq(sbx_token_verify(&k, spliced, "sbx_ams_0123456789abcdefghjk", 1000, NULL),
                     -SBX_E_UNAUTHENTICATED);
        const char *junk[] = { "", "sbxat1.", "sbxat1..", "sbxat1.a.b.c", "Bearer x", "sbxat2.AAAA.AAAA" };
        for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
                cr_assert_eq(sbx_token_verify(&k, junk[i], "x", 0, NULL), -SBX_E_UNAUTHENTICATED);
        cr_assert_eq(sbx_token_verify(&k, NULL, "x", 0, NULL), -SBX_E_UNAUTHENTICATED);
        free(t);
        free(mint2);
}
