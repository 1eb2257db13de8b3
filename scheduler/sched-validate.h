/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Validation of create requests (pure: no I/O). Every refusal is INVALID_ARGUMENT (or
 * PERMISSION_DENIED for a region the organization may not use) with a message naming the field,
 * the value and what is allowed, e.g.
 *
 *   memory_mb: 9000 is out of range; allowed: 768..4096 MiB
 *   labels: 6 labels given; at most 5 are allowed
 *   allow_net[1]: "example.com:99999": port must be a number in 1..65535
 */

#include <stdbool.h>
#include <stdint.h>

#include "common/base/error.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"

#define SCHED_MEMORY_MIN_MB    768
#define SCHED_MEMORY_MAX_MB    4096
#define SCHED_VCPUS_MAX        16
#define SCHED_LABELS_MAX       5
#define SCHED_LABEL_KEY_MAX    64
#define SCHED_LABEL_VALUE_MAX  128
#define SCHED_ALLOW_NET_MAX    64
#define SCHED_SECRETS_MAX      16
#define SCHED_SECRET_HOSTS_MAX 16
#define SCHED_SECRET_VALUE_MAX 8192
#define SCHED_LIFETIME_MIN_MS  1000

typedef struct SchedLimits {
        uint32_t default_memory_mb;
        uint32_t default_vcpus;
        const char *default_region;
        /* The organization's limits. */
        uint32_t org_max_memory_mb;
        uint64_t org_max_lifetime_ms;
        /* NULL or empty: every region. */
        char **org_allowed_regions;
        size_t n_org_allowed_regions;
        /* Regions announced by live nodes, comma-separated, for messages; and the check itself. */
        bool (*region_known)(const char *region, void *userdata);
        const char *known_regions;
        void *userdata;
} SchedLimits;

/* What validation decided; string pointers borrow from the request. */
typedef struct SchedCreateSpec {
        const char *region;
        uint32_t memory_mb;
        uint32_t vcpus;
        uint64_t lifetime_ms;
        bool session;
} SchedCreateSpec;

/* 0, or a negative error with the status-worthy message in *ret_message (malloc'ed). */
int sched_validate_create(const Sbx__V1__CreateSandboxRequest *req, const SchedLimits *lim,
                          SchedCreateSpec *ret, char **ret_message);

/* Checks a label filter map the same way (List). */
int sched_validate_labels(Sbx__V1__CreateSandboxRequest__LabelsEntry *const *labels, size_t n,
                          char **ret_message);

/* Organization names: [a-z0-9-], 1..63 bytes, not starting or ending with '-'. */
bool sched_org_name_valid(const char *name);
