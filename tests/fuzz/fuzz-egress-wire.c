/* SPDX-License-Identifier: Apache-2.0 */
/* What a sandbox sends toward the outside world, as the agent's DNS forwarder and egress proxy read
 * it before applying the policy: a DNS query (over UDP or TCP), a TLS ClientHello's server name, an
 * HTTP request head.
 * Each reader gets every input; none may crash, over-read or hand back a name that is not one. */
#include <stdlib.h>
#include <string.h>

#include "common/policy/policy.h"
#include "common/wire/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        SbxDnsQuestion q;
        if (sbx_dns_query_parse(data, size, &q) == 0) {
                if (!sbx_hostname_valid(q.name))
                        abort();
                SbxBuffer out = SBX_BUFFER_INIT;
                if (sbx_dns_empty_answer(data, size, 3, &out) < 0 || sbx_buffer_size(&out) > size)
                        abort();
                sbx_buffer_done(&out);
        }

        size_t offset, len;
        int r = sbx_dns_tcp_message(data, size, &offset, &len);
        if (r == 1 && (offset + len > size || len > SBX_DNS_QUERY_MAX))
                abort();

        char host[256];
        r = sbx_tls_hello_sni(data, size, host, sizeof(host));
        if (r == 1 && !sbx_hostname_valid(host))
                abort();

        SbxHttpHead h;
        r = sbx_http_head_parse(data, size, &h);
        if (r == 1 && (h.length == 0 || h.length > size || strlen(h.host) >= sizeof(h.host)))
                abort();
        return 0;
}
