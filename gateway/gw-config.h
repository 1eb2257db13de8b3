/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* sbx-gateway's settings: one table, one struct (common/config). */

#include <stdint.h>

#include "common/base/time-util.h"
#include "common/config/config.h"
#include "common/log/log.h"

typedef struct GwConfig {
        char *listen;
        char **region_listen;
        char *default_region;
        char *tls_cert;
        char *tls_key;
        char *scheduler;
        char *scheduler_ca;
        char *scheduler_server_name;
        char *scheduler_cert;
        char *scheduler_key;
        char *data_ca;
        char *data_server_name;
        char *metrics_listen;
        uint32_t min_memory_mb;
        uint32_t max_memory_mb;
        uint32_t max_connections;
        uint64_t max_message_size;
        uint64_t max_read_size;
        uint32_t max_pending_requests;
        uint32_t max_processes;
        usec_t create_timeout;
        usec_t call_timeout;
        SbxLogLevel log_level;
        SbxLogFormat log_format;
} GwConfig;

extern const SbxConfigTable gw_config_table;
