/* SPDX-License-Identifier: Apache-2.0 */
/* Access tokens arrive from clients: verification must refuse anything but a genuine token without
 * crashing, leaking or reading out of bounds. Also exercises the base64 decoders. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto/crypto.h"
#include "common/token/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        SbxClusterKey k = { .id = "fuzzkey000000000" };
        char *s = malloc(size + 1);
        uint8_t *out = NULL;
        size_t n;

        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        if (sbx_token_verify(&k, s, "sbx_ams_0123456789abcdefghjk", 0, NULL) == 0)
                abort(); /* nothing but a token minted with the key may verify */
        if (sbx_base64_decode(s, size, &out, &n) == 0)
                free(out);
        if (sbx_base64url_decode(s, size, &out, &n) == 0)
                free(out);
        free(s);
        return 0;
}
