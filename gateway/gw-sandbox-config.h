/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The x-deno-sandbox-config header of `GET /api/v3/sandboxes/create` (deno-sandbox-protocol.md
 * §2.3, §4.1): base64 of JSON that the client encoded with btoa(), so its bytes are Latin-1, not
 * UTF-8. Keys: stop_at_ms, memory_mb, labels, root, volumes, allow_net, secrets.
 *
 * The header is untrusted input and is decoded strictly, with limits: an unknown key, a value of
 * the wrong type or out of range is refused with a message that names the key and what is allowed.
 * Nothing is created from a header that does not decode. Pure functions; no I/O.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits. The scheduler checks the same things again; these keep the gateway's own work bounded. */
#define GW_CONFIG_HEADER_MAX       (48 * 1024)
#define GW_CONFIG_LABELS_MAX       5
#define GW_CONFIG_LABEL_KEY_MAX    64
#define GW_CONFIG_LABEL_VALUE_MAX  128
#define GW_CONFIG_ALLOW_NET_MAX    64
#define GW_CONFIG_HOST_MAX         260
#define GW_CONFIG_SECRETS_MAX      16
#define GW_CONFIG_SECRET_NAME_MAX  128
#define GW_CONFIG_SECRET_HOSTS_MAX 16
#define GW_CONFIG_SECRET_VALUE_MAX 8192

typedef struct GwLabel {
        char *key;
        char *value;
} GwLabel;

typedef struct GwSecret {
        char *name;
        /* NULL-terminated. */
        char **hosts;
        char *value;
} GwSecret;

typedef struct GwSandboxConfig {
        /* Absent stop_at_ms means a "session" sandbox. */
        bool has_stop_at;
        int64_t stop_at_ms;
        uint32_t memory_mb;
        GwLabel *labels;
        size_t n_labels;
        /* Absent means no restriction; present and empty means no egress at all. */
        bool has_allow_net;
        /* NULL-terminated; may be empty when has_allow_net. */
        char **allow_net;
        GwSecret *secrets;
        size_t n_secrets;
} GwSandboxConfig;

typedef struct GwSandboxConfigLimits {
        /* Inclusive memory range in MiB (the SDK's own is 768..4096). */
        uint32_t min_memory_mb;
        uint32_t max_memory_mb;
        /* memory_mb when the key is absent (the SDK always sends it). */
        uint32_t default_memory_mb;
} GwSandboxConfigLimits;

/*
 * Decodes the header value (`len` bytes, not necessarily NUL-terminated). Returns 0 and fills *ret
 * (free with gw_sandbox_config_done()), or:
 *   -EINVAL      malformed: bad base64, not JSON, not an object, an unknown key, a wrong type;
 *   -ERANGE      a value out of range (memory, too many labels, too long a value);
 *   -EOPNOTSUPP  a feature sbx does not offer (a root volume or mounted volumes);
 *   -ENOMEM.
 * On failure *ret_problem (when not NULL) gets a malloc'ed message naming the key, the value and
 * what is allowed; *ret is not written.
 */
int gw_sandbox_config_parse(const char *header, size_t len, const GwSandboxConfigLimits *limits,
                            GwSandboxConfig *ret, char **ret_problem);

void gw_sandbox_config_done(GwSandboxConfig *c);
