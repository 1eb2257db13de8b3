/* SPDX-License-Identifier: Apache-2.0 */
/* Allow-list entries and secret hosts come from API clients: parsing must never crash, and a
 * parsed entry must satisfy its own invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        SbxNetEntry e;
        const char *why;

        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        if (sbx_net_entry_parse(s, &e, &why) == 0) {
                if ((e.kind == SBX_NET_HOST || e.kind == SBX_NET_WILDCARD) && !sbx_hostname_valid(e.host))
                        abort();
                (void)sbx_net_entry_matches_host(&e, s, e.port);
        } else if (!why) {
                abort(); /* every refusal says why */
        }
        if (sbx_secret_host_parse(s, &e, &why) == 0 && e.port != 0)
                abort();
        (void)sbx_env_name_valid(s);
        free(s);
        return 0;
}
