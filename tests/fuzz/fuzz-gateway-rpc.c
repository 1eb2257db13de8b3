/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the JSON-RPC decoder of sbx-gateway (gateway/gw-jsonrpc.c) with WebSocket text frames:
 * every input is decoded; what decodes has its parameters read the way the method handlers read
 * them, and is answered through every encoder, so the id and the params survive a round trip.
 */
#include <stdint.h>
#include <stdlib.h>

#include "gateway/gw-jsonrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const keys[] = { "path", "streamId", "abortId", "pid",
                                            "data", "options",  "args",    "env" };
        GwRpcMessage m;
        json_t *id = NULL, *v;
        const char *problem, *s;
        long long n;
        bool b;

        if (gw_rpc_decode((const char *)data, size, &m, &id, &problem) < 0) {
                if (id)
                        free(gw_rpc_encode_rpc_error(id, GW_RPC_INVALID_REQUEST, problem));
                json_decref(id);
                return 0;
        }
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                (void)gw_param_string(m.params, keys[i], &s);
                (void)gw_param_int(m.params, keys[i], 0, 1LL << 53, &n);
                (void)gw_param_bool(m.params, keys[i], &b);
                (void)gw_param_object(m.params, keys[i], &v);
                (void)gw_param_array(m.params, keys[i], &v);
        }
        if (m.id) {
                free(gw_rpc_encode_ok(m.id, json_incref(m.params)));
                free(gw_rpc_encode_error(
                        m.id, json_pack("{s:s,s:s}", "constructorName", "Error", "message", m.method)));
                free(gw_rpc_encode_rpc_error(m.id, GW_RPC_METHOD_NOT_FOUND, m.method));
        } else
                free(gw_rpc_encode_notification(m.method, json_incref(m.params)));
        gw_rpc_message_done(&m);
        return 0;
}
