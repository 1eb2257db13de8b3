/* SPDX-License-Identifier: Apache-2.0 */
#include "gateway/gw-config.h"

#include <stddef.h>

#include "common/base/macro.h"

#define OPT(k, p, f, d, desc, ...)                                                          \
        {                                                                                   \
                .key = (k), .parse = sbx_config_parse_##p, .offset = offsetof(GwConfig, f), \
                .default_value = (d), .description = (desc), __VA_ARGS__                    \
        }

static const SbxConfigOption options[] = {
        OPT("listen", address, listen, "127.0.0.1:7480",
            "Address of the HTTP and WebSocket endpoint for the default region (what the SDK's "
            "DENO_SANDBOX_ENDPOINT and DENO_DEPLOY_ENDPOINT point at). Plaintext is meant for loopback; "
            "set tls-cert and tls-key for anything else."),
        OPT("region-listen", strv, region_listen, NULL,
            "Further endpoints, one per region, as REGION=ADDRESS (ord=127.0.0.1:7481): sandboxes created "
            "through one are placed in its region.",
            .metavar = "REGION=ADDRESS,..."),
        OPT("default-region", string, default_region, "ams", "Region of sandboxes created through listen."),
        OPT("tls-cert", string, tls_cert, NULL,
            "PEM certificate chain of the endpoints; enables TLS (https, wss)."),
        OPT("tls-key", string, tls_key, NULL, "PEM private key for tls-cert."),
        OPT("scheduler", string, scheduler, "127.0.0.1:7070", "host:port of the scheduler's gRPC API.",
            .required = true),
        OPT("scheduler-ca", string, scheduler_ca, NULL,
            "PEM CA bundle that signed the scheduler's certificate; enables TLS to the scheduler."),
        OPT("scheduler-server-name", string, scheduler_server_name, NULL,
            "Name the scheduler's certificate must carry; default: the host part of scheduler."),
        OPT("scheduler-cert", string, scheduler_cert, NULL,
            "PEM client certificate for the scheduler (mTLS)."),
        OPT("scheduler-key", string, scheduler_key, NULL, "PEM private key for scheduler-cert."),
        OPT("data-ca", string, data_ca, NULL,
            "PEM CA bundle that signed the node agents' certificates; enables TLS to the data plane."),
        OPT("data-server-name", string, data_server_name, NULL,
            "Name the agents' certificates must carry; default: the host part of each node's address."),
        OPT("metrics-listen", address, metrics_listen, "127.0.0.1:9490",
            "Address of /metrics and /healthz; empty disables it."),
        OPT("min-memory-mb", uint32, min_memory_mb, "768",
            "Smallest memory_mb the sandbox configuration header may ask for.", .min = 128, .max = 1048576),
        OPT("max-memory-mb", uint32, max_memory_mb, "4096",
            "Largest memory_mb the sandbox configuration header may ask for.", .min = 128, .max = 1048576),
        OPT("max-connections", uint32, max_connections, "1024",
            "Connections served at once; further ones are closed at once.", .min = 1, .max = 1000000),
        OPT("max-message-size", size, max_message_size, "64MiB",
            "Largest WebSocket message accepted from a client (a writeFile with inline content is one "
            "message).",
            .min = 1 << 16, .max = 1LL << 30),
        OPT("max-read-size", size, max_read_size, "64MiB",
            "Largest file readFile and readTextFile return in their one reply (the SDK's own limit is "
            "100 MiB).",
            .min = 1 << 16, .max = 1LL << 30),
        OPT("max-pending-requests", uint32, max_pending_requests, "4096",
            "Requests one connection may have outstanding; more are answered with an error.", .min = 16,
            .max = 1000000),
        OPT("max-processes", uint32, max_processes, "1024",
            "Processes one connection may have started and not yet reaped.", .min = 1, .max = 100000),
        OPT("create-timeout", duration, create_timeout, "90s",
            "How long a create (the WebSocket handshake) waits for the scheduler and the sandbox's boot.",
            .min = 1000000LL, .max = 3600 * 1000000LL),
        OPT("call-timeout", duration, call_timeout, "30s",
            "Deadline of short calls to the scheduler (connect, list, kill, extend).", .min = 1000000LL,
            .max = 3600 * 1000000LL),
        OPT("log-level", log_level, log_level, "info", "debug, info, warning or error."),
        OPT("log-format", log_format, log_format, "text", "text or json."),
};

const SbxConfigTable gw_config_table = {
        .program = "sbx-gateway",
        .summary = "The @deno/sandbox SDK's HTTP and WebSocket protocol in front of an sbx cluster.",
        .env_prefix = "SBX_GATEWAY_",
        .options = options,
        .n_options = ELEMENTSOF(options),
};
