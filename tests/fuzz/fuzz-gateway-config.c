/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes sbx-gateway's decoder of the x-deno-sandbox-config header (gateway/gw-sandbox-config.c):
 * each input is tried as the header itself (base64 and all), and base64-encoded first, so that the
 * JSON and the validation behind the base64 see the fuzzer's bytes too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto/crypto.h"
#include "gateway/gw-sandbox-config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void try(const char *header, size_t len)
{
        static const GwSandboxConfigLimits limits = { .min_memory_mb = 768,
                                                      .max_memory_mb = 4096,
                                                      .default_memory_mb = 1280 };
        GwSandboxConfig c;
        char *problem = NULL;

        if (gw_sandbox_config_parse(header, len, &limits, &c, &problem) == 0)
                gw_sandbox_config_done(&c);
        free(problem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *b64 = NULL;

        try((const char *)data, size);
        if (sbx_base64_encode(data, size, &b64) == 0)
                try(b64, strlen(b64));
        free(b64);
        return 0;
}
