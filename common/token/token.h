/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Sandbox access tokens: minted by the scheduler when it creates a sandbox, presented to the node's
 * agent on every data-plane call, verified there without calling the scheduler. A token is bound
 * to one sandbox id, its org and an expiry:
 *
 *   sbxat1.<base64url(AccessTokenClaims)>.<base64url(HMAC-SHA-256(key, "sbxat1." || claims))>
 *
 * The HMAC key is derived from the cluster key with HKDF ("sbx access token v1"), so the cluster
 * key itself never signs anything directly.
 */

#include <stdint.h>

#include "common/base/time-util.h"
#include "common/crypto/crypto.h"

/* Tokens longer than this are refused before any decoding. */
#define SBX_TOKEN_MAX 1024

typedef struct SbxTokenClaims {
        char sandbox_id[64];
        char org[128];
        int64_t expires_at_ms;
} SbxTokenClaims;

/* Mints a token (malloc'ed). -EINVAL when an id or org is too long for the claims. */
int sbx_token_mint(const SbxClusterKey *key, const char *sandbox_id, const char *org, int64_t expires_at_ms,
                   char **ret);

/*
 * Verifies a token for `sandbox_id` at `now_ms`. Errors (the message for each is the caller's to
 * word): -SBX_E_UNAUTHENTICATED for anything malformed, a bad signature, another key, or expiry;
 * -SBX_E_PERMISSION_DENIED for a valid token of another sandbox. *ret_claims (optional) is written
 * only on success.
 */
int sbx_token_verify(const SbxClusterKey *key, const char *token, const char *sandbox_id, int64_t now_ms,
                     SbxTokenClaims *ret_claims);
