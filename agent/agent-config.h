/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* sbx-agent's settings: one table, one struct (common/config). */

#include <stdbool.h>
#include <stdint.h>

#include "common/base/time-util.h"
#include "common/config/config.h"
#include "common/log/log.h"

typedef struct AgentConfig {
        char *name;
        char *region;
        char *listen;
        char *advertise;
        char *tls_cert;
        char *tls_key;
        char *tls_client_ca;
        char *metrics_listen;
        char **etcd_endpoints;
        char *etcd_cert;
        char *etcd_key;
        char *etcd_ca;
        char *cluster_key_file;
        char *state_dir;
        char *image_dir;
        char *vmm;
        char *accel;
        char *qemu_binary;
        char *ch_binary;
        char *jailer;
        uint32_t vmm_uid_base;
        uint64_t memory;
        uint32_t vcpus;
        uint32_t slots;
        uint64_t vmm_overhead;
        uint32_t pids_max;
        usec_t lease_ttl;
        usec_t boot_timeout;
        usec_t stop_timeout;
        char *subnet;
        uint32_t mtu;
        char **guest_dns;
        uint32_t dns_port;
        uint32_t proxy_http_port;
        uint32_t proxy_https_port;
        char **dns_upstream;
        char *egress_upstream_ca;
        uint64_t tsc_khz;
        char *guest_cmdline_extra;
        SbxLogLevel log_level;
        SbxLogFormat log_format;
} AgentConfig;

extern const SbxConfigTable agent_config_table;
