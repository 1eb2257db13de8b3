/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* sbx-scheduler's settings: one table, one struct (common/config). */

#include <stdbool.h>
#include <stdint.h>

#include "common/base/time-util.h"
#include "common/config/config.h"
#include "common/log/log.h"

typedef struct SchedConfig {
        char *listen;
        char *metrics_listen;
        char *tls_cert;
        char *tls_key;
        char *tls_client_ca;
        char **etcd_endpoints;
        char *etcd_cert;
        char *etcd_key;
        char *etcd_ca;
        char *name;
        char *default_region;
        uint32_t default_memory_mb;
        uint32_t default_vcpus;
        uint32_t default_max_sandboxes;
        uint32_t default_max_memory_mb;
        usec_t default_max_lifetime;
        char *cluster_key_file;
        char *admin_token_file;
        usec_t create_deadline;
        usec_t release_wait;
        usec_t retention;
        usec_t leader_lease_ttl;
        usec_t session_grace;
        usec_t attach_timeout;
        usec_t reconcile_interval;
        uint32_t placement_sample;
        SbxLogLevel log_level;
        SbxLogFormat log_format;
} SchedConfig;

extern const SbxConfigTable sched_config_table;
