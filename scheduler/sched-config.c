/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/sched-config.h"

#include <stddef.h>

#include "common/base/macro.h"

#define OPT(k, p, f, d, desc, ...)                                                             \
        {                                                                                      \
                .key = (k), .parse = sbx_config_parse_##p, .offset = offsetof(SchedConfig, f), \
                .default_value = (d), .description = (desc), __VA_ARGS__                       \
        }

static const SbxConfigOption options[] = {
        OPT("listen", address, listen, "127.0.0.1:7070",
            "Address of the gRPC API (sbx.v1.Sandboxes and sbx.v1.Admin). Plaintext is meant for loopback; "
            "set tls-cert and tls-key for anything else."),
        OPT("metrics-listen", address, metrics_listen, "127.0.0.1:9470",
            "Address of the HTTP endpoint serving /metrics and /healthz; empty disables it."),
        OPT("tls-cert", string, tls_cert, NULL, "PEM certificate chain of the API server; enables TLS."),
        OPT("tls-key", string, tls_key, NULL, "PEM private key for tls-cert."),
        OPT("tls-client-ca", string, tls_client_ca, NULL,
            "PEM CA bundle; when set, API clients must present a certificate it signed (mTLS)."),
        OPT("etcd-endpoints", strv, etcd_endpoints, "127.0.0.1:2379",
            "Comma-separated host:port list of etcd members.", .required = true),
        OPT("etcd-cert", string, etcd_cert, NULL, "PEM client certificate for etcd (mTLS)."),
        OPT("etcd-key", string, etcd_key, NULL, "PEM private key for etcd-cert."),
        OPT("etcd-ca", string, etcd_ca, NULL,
            "PEM CA bundle that signed etcd's certificate; enables TLS to etcd."),
        OPT("name", string, name, NULL,
            "This replica's name in the leader election and in logs; default: host name and pid."),
        OPT("default-region", string, default_region, "ams", "Region of creates that name none."),
        OPT("default-memory-mb", uint32, default_memory_mb, "1280", "Memory of creates that ask for none.",
            .min = 768, .max = 4096),
        OPT("default-vcpus", uint32, default_vcpus, "2", "vCPUs of creates that ask for none.", .min = 1,
            .max = 16),
        OPT("default-max-sandboxes", uint32, default_max_sandboxes, "5",
            "Concurrent-sandbox quota of new organizations.", .min = 1, .max = 100000),
        OPT("default-max-memory-mb", uint32, default_max_memory_mb, "4096",
            "Largest sandbox memory new organizations may ask for.", .min = 768, .max = 4096),
        OPT("default-max-lifetime", duration, default_max_lifetime, "30m",
            "Longest sandbox lifetime of new organizations.", .min = 1 * 1000000LL,
            .max = 7 * 24 * 3600 * 1000000LL),
        OPT("cluster-key-file", string, cluster_key_file, NULL,
            "File holding the cluster key (64 hex characters, mode 0600) that seals secrets and signs "
            "access "
            "tokens; shared with the agents.",
            .required = true),
        OPT("admin-token-file", string, admin_token_file, NULL,
            "Bootstrap admin token: read at start and registered if new; created (mode 0600) when missing."),
        OPT("create-deadline", duration, create_deadline, "60s",
            "How long Create waits for the sandbox to be RUNNING before marking it FAILED.",
            .min = 1000000LL, .max = 3600 * 1000000LL),
        OPT("release-wait", duration, release_wait, "10s",
            "How long a Create that finds its org at quota, or its region full, waits for what sandboxes "
            "being stopped give back (only when some are); 0 fails at once.",
            .min = 0, .max = 300 * 1000000LL),
        OPT("retention", duration, retention, "1h", "How long ended sandboxes stay listable.", .min = 0,
            .max = 30 * 24 * 3600 * 1000000LL),
        OPT("leader-lease-ttl", duration, leader_lease_ttl, "10s",
            "TTL of the leader's lease: a dead leader is replaced within this time.", .min = 2000000LL,
            .max = 300 * 1000000LL),
        OPT("session-grace", duration, session_grace, "5s",
            "How long a session sandbox survives after its Attach stream ends.", .min = 0,
            .max = 3600 * 1000000LL),
        OPT("attach-timeout", duration, attach_timeout, "60s",
            "How long a session sandbox waits for its first Attach, and how far each Attach heartbeat "
            "extends it.",
            .min = 1000000LL, .max = 3600 * 1000000LL),
        OPT("reconcile-interval", duration, reconcile_interval, "1s",
            "Period of the leader's reconciler (it also runs on every change).", .min = 100000LL,
            .max = 600 * 1000000LL),
        OPT("placement-sample", uint32, placement_sample, "16",
            "Regions with more fitting nodes than this are sampled (best of this many) instead of scanned.",
            .min = 1, .max = 100000),
        OPT("log-level", log_level, log_level, "info", "debug, info, warning or error."),
        OPT("log-format", log_format, log_format, "text", "text or json."),
};

const SbxConfigTable sched_config_table = {
        .program = "sbx-scheduler",
        .summary = "The sbx control plane: authentication, quotas, placement and the sandbox lifecycle in "
                   "etcd.",
        .env_prefix = "SBX_SCHEDULER_",
        .options = options,
        .n_options = ELEMENTSOF(options),
};
