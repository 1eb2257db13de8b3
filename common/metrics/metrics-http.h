/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The /metrics HTTP endpoint, built on libwebsockets running on the daemon's libuv loop (the
 * project's one HTTP library; docs/architecture.md says why). Serves:
 *
 *   GET /metrics   the registry's exposition, "text/plain; version=0.0.4; charset=utf-8"
 *   GET /healthz   "ok\n" (the process serves)
 *   GET /readyz    "ready\n", or 503 with the reason while the daemon is not ready for work
 *   anything else  404 (405 for methods other than GET and HEAD)
 *
 * The server runs on the loop thread; rendering happens there too, so collectors see daemon state
 * without locks.
 */

#include <stdbool.h>
#include <uv.h>

#include "common/metrics/metrics.h"

typedef struct SbxMetricsServer SbxMetricsServer;

/* Whether the daemon is ready for work; when not, *ret_why (optional) says why. */
typedef bool (*SbxReadyFn)(void *userdata, const char **ret_why);

/*
 * Starts listening on `address` ("127.0.0.1:9090", "[::1]:0", ":9090" for all addresses; port 0
 * picks a free port, reported in *ret_port when not NULL). The registry must outlive the server.
 * -EADDRINUSE, -EINVAL for a malformed address, -ENOMEM.
 */
int sbx_metrics_server_new(uv_loop_t *loop, SbxMetrics *metrics, const char *address, SbxMetricsServer **ret,
                           int *ret_port);

/* Sets what /readyz reports (without it: always ready). */
void sbx_metrics_server_set_ready(SbxMetricsServer *s, SbxReadyFn ready, void *userdata);

/*
 * Stops listening and releases the server. The loop must run afterwards until the server's libuv
 * handles have closed (sbx_loop_close_all() does that); `done` (optional) is called when they have.
 */
void sbx_metrics_server_close(SbxMetricsServer *s, void (*done)(void *userdata), void *userdata);
