/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The sbx.test.Echo service (tests/proto/sbx_test.proto), served by C for rpc tests, interop and
 * benchmarks. Handlers honour delay_ms, fail_status, count and reply_size. */

#include "common/rpc/rpc.h"
#include "tests/proto/sbx_test.pb-c.h"

typedef struct SbxTestEchoStats {
        /* Calls whose on_done reported cancelled (client cancel, deadline, shutdown). */
        unsigned cancelled;
        /* Calls that finished normally. */
        unsigned completed;
        /* Calls started. */
        unsigned started;
} SbxTestEchoStats;

extern const SbxRpcMethod sbx_test_echo_unary;
extern const SbxRpcMethod sbx_test_echo_server_stream;
extern const SbxRpcMethod sbx_test_echo_client_stream;
extern const SbxRpcMethod sbx_test_echo_bidi;

/* Registers the four handlers; `stats` (optional) is updated as calls come and go. */
int sbx_test_echo_register(SbxRpcServer *s, SbxTestEchoStats *stats);
