/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/sched-validate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "common/base/time-util.h"
#include "common/policy/policy.h"

static int refuse(char **ret, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(char **ret, int error, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(ret, fmt, ap) < 0)
                *ret = NULL;
        va_end(ap);
        return error;
}

/* Quotes a client-supplied value for a message: truncated, control bytes replaced. */
static const char *q(const char *s, char *buf, size_t n)
{
        size_t o = 0;
        for (size_t i = 0; s && s[i] && o + 4 < n; i++)
                buf[o++] = (unsigned char)s[i] < 0x20 || s[i] == '"' ? '?' : s[i];
        if (s && strlen(s) > o && o + 4 <= n) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = '\0';
        return buf;
}

bool sched_org_name_valid(const char *name)
{
        size_t n = strlen(name);
        if (n == 0 || n > 63 || name[0] == '-' || name[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
                      name[i] == '-'))
                        return false;
        return true;
}

int sched_validate_labels(Sbx__V1__CreateSandboxRequest__LabelsEntry *const *labels, size_t n,
                          char **ret_message)
{
        char b[80];

        if (n > SCHED_LABELS_MAX)
                return refuse(ret_message, -EINVAL, "labels: %zu labels given; at most %d are allowed", n,
                              SCHED_LABELS_MAX);
        for (size_t i = 0; i < n; i++) {
                const char *k = labels[i]->key ? labels[i]->key : "",
                           *v = labels[i]->value ? labels[i]->value : "";
                if (!*k)
                        return refuse(ret_message, -EINVAL, "labels: an empty key is not allowed");
                if (strlen(k) > SCHED_LABEL_KEY_MAX)
                        return refuse(ret_message, -EINVAL,
                                      "labels: key \"%s\" is %zu bytes; at most %d are allowed",
                                      q(k, b, sizeof(b)), strlen(k), SCHED_LABEL_KEY_MAX);
                if (strlen(v) > SCHED_LABEL_VALUE_MAX)
                        return refuse(ret_message, -EINVAL,
                                      "labels: value of \"%s\" is %zu bytes; at most %d are allowed",
                                      q(k, b, sizeof(b)), strlen(v), SCHED_LABEL_VALUE_MAX);
        }
        return 0;
}

static bool region_allowed(const SchedLimits *lim, const char *region)
{
        if (lim->n_org_allowed_regions == 0)
                return true;
        for (size_t i = 0; i < lim->n_org_allowed_regions; i++)
                if (streq(lim->org_allowed_regions[i], region))
                        return true;
        return false;
}

static int validate_secrets(const Sbx__V1__CreateSandboxRequest *req, char **ret_message)
{
        char b[80];

        if (req->n_secrets > SCHED_SECRETS_MAX)
                return refuse(ret_message, -EINVAL, "secrets: %zu secrets given; at most %d are allowed",
                              req->n_secrets, SCHED_SECRETS_MAX);
        for (size_t i = 0; i < req->n_secrets; i++) {
                const Sbx__V1__SecretInput *s = req->secrets[i];
                const char *name = s->name ? s->name : "";
                if (!sbx_env_name_valid(name))
                        return refuse(ret_message, -EINVAL,
                                      "secrets[%zu]: name \"%s\" is not a valid environment variable name "
                                      "([A-Za-z_][A-Za-z0-9_]*, at most 128 bytes)",
                                      i, q(name, b, sizeof(b)));
                for (size_t j = 0; j < i; j++)
                        if (streq(req->secrets[j]->name, name))
                                return refuse(ret_message, -EINVAL,
                                              "secrets[%zu]: name \"%s\" is given twice", i, name);
                if (s->n_hosts == 0)
                        return refuse(ret_message, -EINVAL,
                                      "secrets[%zu] (%s): at least one host is required: the value is only "
                                      "ever sent "
                                      "to the hosts named",
                                      i, name);
                if (s->n_hosts > SCHED_SECRET_HOSTS_MAX)
                        return refuse(ret_message, -EINVAL,
                                      "secrets[%zu] (%s): %zu hosts given; at most %d are allowed", i, name,
                                      s->n_hosts, SCHED_SECRET_HOSTS_MAX);
                for (size_t h = 0; h < s->n_hosts; h++) {
                        SbxNetEntry e;
                        const char *why = NULL;
                        if (sbx_secret_host_parse(s->hosts[h], &e, &why) < 0)
                                return refuse(ret_message, -EINVAL, "secrets[%zu] (%s): host \"%s\": %s", i,
                                              name, q(s->hosts[h], b, sizeof(b)), why);
                }
                size_t vl = s->value ? strlen(s->value) : 0;
                if (vl == 0 || vl > SCHED_SECRET_VALUE_MAX)
                        return refuse(ret_message, -EINVAL,
                                      "secrets[%zu] (%s): the value must be 1..%d bytes", i, name,
                                      SCHED_SECRET_VALUE_MAX);
        }
        return 0;
}

int sched_validate_create(const Sbx__V1__CreateSandboxRequest *req, const SchedLimits *lim,
                          SchedCreateSpec *ret, char **ret_message)
{
        SchedCreateSpec s = { 0 };
        char b[80], d1[SBX_DURATION_MAX], d2[SBX_DURATION_MAX];
        int r;

        /* Region. */
        s.region = req->region && *req->region ? req->region : lim->default_region;
        if (!sbx_region_valid(s.region))
                return refuse(ret_message, -EINVAL,
                              "region: \"%s\" is not a region name (three lowercase letters)",
                              q(s.region, b, sizeof(b)));
        if (!region_allowed(lim, s.region))
                return refuse(ret_message, -SBX_E_PERMISSION_DENIED,
                              "region: this organization may not use region \"%s\"", s.region);
        if (!lim->region_known(s.region, lim->userdata))
                return refuse(ret_message, -EINVAL,
                              "region: no live node serves region \"%s\"; known regions: %s", s.region,
                              isempty(lim->known_regions) ? "none" : lim->known_regions);

        /* Memory and vCPUs. */
        s.memory_mb = req->memory_mb ? req->memory_mb : lim->default_memory_mb;
        if (s.memory_mb < SCHED_MEMORY_MIN_MB || s.memory_mb > SCHED_MEMORY_MAX_MB)
                return refuse(ret_message, -EINVAL, "memory_mb: %u is out of range; allowed: %d..%d MiB",
                              s.memory_mb, SCHED_MEMORY_MIN_MB, SCHED_MEMORY_MAX_MB);
        if (s.memory_mb > lim->org_max_memory_mb)
                return refuse(ret_message, -EINVAL,
                              "memory_mb: %u exceeds this organization's maximum of %u MiB", s.memory_mb,
                              lim->org_max_memory_mb);
        s.vcpus = req->vcpus ? req->vcpus : lim->default_vcpus;
        if (s.vcpus > SCHED_VCPUS_MAX)
                return refuse(ret_message, -EINVAL, "vcpus: %u is out of range; allowed: 1..%d", s.vcpus,
                              SCHED_VCPUS_MAX);

        /* Lifetime. */
        s.session = req->session;
        if (req->session && req->lifetime_ms)
                return refuse(ret_message, -EINVAL,
                              "lifetime_ms: a session sandbox lives while attached and takes no lifetime "
                              "(got %llu)",
                              (unsigned long long)req->lifetime_ms);
        if (!req->session) {
                s.lifetime_ms = req->lifetime_ms ? req->lifetime_ms : lim->org_max_lifetime_ms;
                if (s.lifetime_ms < SCHED_LIFETIME_MIN_MS || s.lifetime_ms > lim->org_max_lifetime_ms)
                        return refuse(ret_message, -EINVAL,
                                      "lifetime_ms: %llu (%s) is out of range; allowed: 1s..%s",
                                      (unsigned long long)s.lifetime_ms,
                                      sbx_format_duration(d1, sizeof(d1), s.lifetime_ms * USEC_PER_MSEC),
                                      sbx_format_duration(d2, sizeof(d2),
                                                          lim->org_max_lifetime_ms * USEC_PER_MSEC));
        }

        /* Labels. */
        r = sched_validate_labels((Sbx__V1__CreateSandboxRequest__LabelsEntry *const *)req->labels,
                                  req->n_labels, ret_message);
        if (r < 0)
                return r;

        /* Egress allow-list. */
        if (req->allow_net) {
                if (req->allow_net->n_entries > SCHED_ALLOW_NET_MAX)
                        return refuse(ret_message, -EINVAL,
                                      "allow_net: %zu entries given; at most %d are allowed",
                                      req->allow_net->n_entries, SCHED_ALLOW_NET_MAX);
                for (size_t i = 0; i < req->allow_net->n_entries; i++) {
                        SbxNetEntry e;
                        const char *why = NULL;
                        if (sbx_net_entry_parse(req->allow_net->entries[i], &e, &why) < 0)
                                return refuse(ret_message, -EINVAL,
                                              "allow_net[%zu]: \"%s\": %s (allowed: host, *.domain, IPv4 or "
                                              "[IPv6], "
                                              "each with an optional :port)",
                                              i, q(req->allow_net->entries[i], b, sizeof(b)), why);
                }
        }

        r = validate_secrets(req, ret_message);
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}
