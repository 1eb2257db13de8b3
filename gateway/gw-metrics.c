/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx-gateway's metrics, all in one place. Labels come from fixed sets: method names from the
 * catalogue (unknown ones as "unknown"), routes, results, directions; never sandbox ids.
 */
#include "common/metrics/metrics.h"

#include "gateway/gw.h"

int gw_metrics_register(Gateway *gw)
{
        SbxMetrics *m = gw->metrics;
        int r;

        if ((r = sbx_metrics_gauge(m, "sbx_gateway_connections",
                                   "Client connections open (HTTP and WebSocket).", NULL,
                                   &gw->m.connections)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_gateway_connections_total",
                     "Client connections accepted or refused (over max-connections, shutting down).",
                     SBX_LABEL_NAMES("result"), &gw->m.connections_total)) < 0 ||
            (r = sbx_metrics_gauge(m, "sbx_gateway_sessions", "SDK WebSocket sessions open.", NULL,
                                   &gw->m.sessions)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_gateway_sessions_total",
                                     "SDK WebSocket sessions opened: creator (the socket that holds a "
                                     "session sandbox) or other.",
                                     SBX_LABEL_NAMES("kind"), &gw->m.sessions_total)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_gateway_http_requests_total",
                     "HTTP requests by route (create, connect, kill, extend, list, expose_*, ...).",
                     SBX_LABEL_NAMES("route"), &gw->m.http_requests)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_gateway_rpc_calls_total",
                     "JSON-RPC calls answered, by method and result (ok, error, rpc_error, aborted).",
                     SBX_LABEL_NAMES("method", "result"), &gw->m.rpc_calls)) < 0 ||
            (r = sbx_metrics_histogram(m, "sbx_gateway_rpc_duration_seconds",
                                       "Time from a JSON-RPC request to its answer, by method.",
                                       SBX_LABEL_NAMES("method"), sbx_metrics_buckets_latency,
                                       sbx_metrics_buckets_latency_n, &gw->m.rpc_duration)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_gateway_bytes_total",
                     "Bytes through the gateway: in/out on client connections (TLS included), "
                     "ws_in as WebSocket payload.",
                     SBX_LABEL_NAMES("direction"), &gw->m.bytes)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_gateway_messages_refused_total",
                     "WebSocket messages refused: not JSON, or not a JSON-RPC request or notification.",
                     SBX_LABEL_NAMES("reason"), &gw->m.messages_refused)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_gateway_handshakes_total",
                     "Sandbox handshakes (create, connect) by result: OK or the refusal's status.",
                     SBX_LABEL_NAMES("kind", "result"), &gw->m.sandboxes_created)) < 0)
                return r;
        return 0;
}
