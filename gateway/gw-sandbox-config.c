/* SPDX-License-Identifier: Apache-2.0 */
#include "gateway/gw-sandbox-config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "gateway/gw-values.h"

/* JavaScript's Number.MAX_SAFE_INTEGER: stop_at_ms comes from Date.now() + d. */
#define SAFE_INTEGER_MAX 9007199254740991LL

static int problem(char **ret, int r, const char *fmt, ...) _printf_(3, 4);

static int problem(char **ret, int r, const char *fmt, ...)
{
        va_list ap;

        if (ret) {
                va_start(ap, fmt);
                if (vasprintf(ret, fmt, ap) < 0)
                        *ret = NULL;
                va_end(ap);
        }
        return r;
}

void gw_sandbox_config_done(GwSandboxConfig *c)
{
        for (size_t i = 0; i < c->n_labels; i++) {
                free(c->labels[i].key);
                free(c->labels[i].value);
        }
        free(c->labels);
        strv_free(c->allow_net);
        for (size_t i = 0; i < c->n_secrets; i++) {
                free(c->secrets[i].name);
                strv_free(c->secrets[i].hosts);
                free(c->secrets[i].value);
        }
        free(c->secrets);
        *c = (GwSandboxConfig){ 0 };
}

/* btoa() made one byte of each UTF-16 code unit below 256: turn those bytes back into UTF-8. */
static char *latin1_to_utf8(const uint8_t *p, size_t n, size_t *ret_len)
{
        char *out = malloc(n * 2 + 1);
        size_t o = 0;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (p[i] < 0x80)
                        out[o++] = (char)p[i];
                else {
                        out[o++] = (char)(0xC0 | (p[i] >> 6));
                        out[o++] = (char)(0x80 | (p[i] & 0x3F));
                }
        }
        out[o] = '\0';
        *ret_len = o;
        return out;
}

/* A number that is an integer (JSON integers and integral reals). */
static bool integer_value(json_t *v, long long *ret)
{
        if (json_is_integer(v)) {
                *ret = json_integer_value(v);
                return true;
        }
        if (json_is_real(v)) {
                double d = json_real_value(v);
                if (isfinite(d) && d == floor(d) && fabs(d) <= (double)SAFE_INTEGER_MAX) {
                        *ret = (long long)d;
                        return true;
                }
        }
        return false;
}

/* Printable text: no control characters, which no label, host or name has any use for. */
static bool printable(const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p < 0x20 || *p == 0x7F)
                        return false;
        return true;
}

static bool env_name_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > GW_CONFIG_SECRET_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '_'))
                        return false;
        }
        return true;
}

/* A list of host strings ("allow_net", "secrets.X.hosts"). */
static int parse_hosts(json_t *v, const char *what, size_t max, bool nonempty, char ***ret,
                       char **ret_problem)
{
        _cleanup_strv_free_ char **l = NULL;
        size_t i;
        json_t *e;

        if (!json_is_array(v))
                return problem(ret_problem, -EINVAL, "%s: must be an array of host names", what);
        if (json_array_size(v) > max)
                return problem(ret_problem, -ERANGE, "%s: %zu entries given; at most %zu are allowed", what,
                               json_array_size(v), max);
        if (nonempty && json_array_size(v) == 0)
                return problem(ret_problem, -EINVAL, "%s: at least one host is required", what);
        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        json_array_foreach(v, i, e)
        {
                const char *s = json_string_value(e);
                if (!json_is_string(e) || json_string_length(e) == 0 ||
                    json_string_length(e) > GW_CONFIG_HOST_MAX || strlen(s) != json_string_length(e) ||
                    !printable(s) || strchr(s, ' '))
                        return problem(
                                ret_problem, -EINVAL,
                                "%s[%zu]: must be a host name of 1..%d printable bytes without spaces", what,
                                i, GW_CONFIG_HOST_MAX);
                if (strv_extend(&l, s) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static int parse_labels(json_t *v, GwSandboxConfig *c, char **ret_problem)
{
        const char *key;
        json_t *e;

        if (!json_is_object(v))
                return problem(ret_problem, -EINVAL, "labels: must be an object of strings");
        if (json_object_size(v) > GW_CONFIG_LABELS_MAX)
                return problem(ret_problem, -ERANGE, "labels: %zu labels given; at most %d are allowed",
                               json_object_size(v), GW_CONFIG_LABELS_MAX);
        c->labels = calloc(json_object_size(v) + 1, sizeof(GwLabel));
        if (!c->labels)
                return -ENOMEM;
        json_object_foreach(v, key, e)
        {
                size_t klen = strlen(key);
                if (klen == 0 || klen > GW_CONFIG_LABEL_KEY_MAX || !printable(key))
                        return problem(ret_problem, -ERANGE,
                                       "labels: key \"%.64s\" must be 1..%d printable bytes", key,
                                       GW_CONFIG_LABEL_KEY_MAX);
                if (!json_is_string(e))
                        return problem(ret_problem, -EINVAL, "labels.%s: the value must be a string", key);
                const char *s = json_string_value(e);
                if (json_string_length(e) > GW_CONFIG_LABEL_VALUE_MAX ||
                    strlen(s) != json_string_length(e) || !printable(s))
                        return problem(ret_problem, -ERANGE,
                                       "labels.%s: the value must be at most %d printable bytes", key,
                                       GW_CONFIG_LABEL_VALUE_MAX);
                GwLabel *l = &c->labels[c->n_labels];
                l->key = strdup(key);
                l->value = strdup(s);
                c->n_labels++;
                if (!l->key || !l->value)
                        return -ENOMEM;
        }
        return 0;
}

static int parse_secrets(json_t *v, GwSandboxConfig *c, char **ret_problem)
{
        const char *name;
        json_t *e;
        int r;

        if (!json_is_object(v))
                return problem(ret_problem, -EINVAL, "secrets: must be an object of {hosts, value}");
        if (json_object_size(v) > GW_CONFIG_SECRETS_MAX)
                return problem(ret_problem, -ERANGE, "secrets: %zu secrets given; at most %d are allowed",
                               json_object_size(v), GW_CONFIG_SECRETS_MAX);
        c->secrets = calloc(json_object_size(v) + 1, sizeof(GwSecret));
        if (!c->secrets)
                return -ENOMEM;
        json_object_foreach(v, name, e)
        {
                const char *k;
                json_t *f, *hosts = NULL, *value = NULL;
                char what[GW_CONFIG_SECRET_NAME_MAX + 32];

                if (!env_name_valid(name))
                        return problem(ret_problem, -EINVAL,
                                       "secrets: \"%.64s\" is not a valid environment variable name "
                                       "([A-Za-z_][A-Za-z0-9_]*, at most %d bytes)",
                                       name, GW_CONFIG_SECRET_NAME_MAX);
                if (!json_is_object(e))
                        return problem(ret_problem, -EINVAL, "secrets.%s: must be an object {hosts, value}",
                                       name);
                json_object_foreach(e, k, f)
                {
                        if (streq(k, "hosts"))
                                hosts = f;
                        else if (streq(k, "value"))
                                value = f;
                        else
                                return problem(ret_problem, -EINVAL, "secrets.%s: unknown key \"%.64s\"",
                                               name, k);
                }
                GwSecret *s = &c->secrets[c->n_secrets++];
                s->name = strdup(name);
                if (!s->name)
                        return -ENOMEM;
                snprintf(what, sizeof(what), "secrets.%s.hosts", name);
                r = parse_hosts(hosts ? hosts : json_null(), what, GW_CONFIG_SECRET_HOSTS_MAX, true,
                                &s->hosts, ret_problem);
                if (r < 0)
                        return r;
                if (!json_is_string(value) || json_string_length(value) == 0 ||
                    json_string_length(value) > GW_CONFIG_SECRET_VALUE_MAX ||
                    strlen(json_string_value(value)) != json_string_length(value))
                        return problem(ret_problem, -ERANGE,
                                       "secrets.%s.value: must be a string of 1..%d bytes", name,
                                       GW_CONFIG_SECRET_VALUE_MAX);
                s->value = strdup(json_string_value(value));
                if (!s->value)
                        return -ENOMEM;
        }
        return 0;
}

static int parse_object(json_t *root, const GwSandboxConfigLimits *lim, GwSandboxConfig *c,
                        char **ret_problem)
{
        const char *key;
        json_t *v;
        long long n;
        int r;

        c->memory_mb = lim->default_memory_mb;
        json_object_foreach(root, key, v)
        {
                /* Undefined values never reach the wire; a null is taken as the same thing. */
                if (json_is_null(v))
                        continue;
                if (streq(key, "stop_at_ms")) {
                        if (!integer_value(v, &n) || n <= 0 || n > SAFE_INTEGER_MAX)
                                return problem(ret_problem, -EINVAL,
                                               "stop_at_ms: must be a time in Unix milliseconds");
                        c->has_stop_at = true;
                        c->stop_at_ms = n;
                } else if (streq(key, "memory_mb")) {
                        if (!integer_value(v, &n))
                                return problem(ret_problem, -EINVAL, "memory_mb: must be an integer (MiB)");
                        if (n < lim->min_memory_mb || n > lim->max_memory_mb)
                                return problem(ret_problem, -ERANGE,
                                               "memory_mb: %lld is out of range; allowed: %u..%u MiB", n,
                                               lim->min_memory_mb, lim->max_memory_mb);
                        c->memory_mb = (uint32_t)n;
                } else if (streq(key, "labels")) {
                        r = parse_labels(v, c, ret_problem);
                        if (r < 0)
                                return r;
                } else if (streq(key, "allow_net")) {
                        r = parse_hosts(v, "allow_net", GW_CONFIG_ALLOW_NET_MAX, false, &c->allow_net,
                                        ret_problem);
                        if (r < 0)
                                return r;
                        c->has_allow_net = true;
                } else if (streq(key, "secrets")) {
                        r = parse_secrets(v, c, ret_problem);
                        if (r < 0)
                                return r;
                } else if (streq(key, "root")) {
                        return problem(ret_problem, -EOPNOTSUPP,
                                       "root: booting from a volume or snapshot is not supported by sbx; "
                                       "sandboxes start from the cluster's image");
                } else if (streq(key, "volumes")) {
                        if (!json_is_array(v))
                                return problem(ret_problem, -EINVAL, "volumes: must be an array");
                        if (json_array_size(v) > 0)
                                return problem(ret_problem, -EOPNOTSUPP,
                                               "volumes: mounting volumes is not supported by sbx");
                } else
                        return problem(ret_problem, -EINVAL,
                                       "unknown key \"%.64s\" in the sandbox configuration", key);
        }
        return 0;
}

int gw_sandbox_config_parse(const char *header, size_t len, const GwSandboxConfigLimits *limits,
                            GwSandboxConfig *ret, char **ret_problem)
{
        _cleanup_free_ uint8_t *raw = NULL;
        _cleanup_free_ char *text = NULL;
        GwSandboxConfig c = { 0 };
        size_t raw_len, text_len;
        json_error_t err;
        json_t *root;
        int r;

        if (ret_problem)
                *ret_problem = NULL;
        if (len > GW_CONFIG_HEADER_MAX)
                return problem(ret_problem, -ERANGE,
                               "x-deno-sandbox-config: %zu bytes; at most %d are allowed", len,
                               GW_CONFIG_HEADER_MAX);
        r = gw_base64_decode(header, len, &raw, &raw_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return problem(ret_problem, -EINVAL, "x-deno-sandbox-config: not base64");
        text = latin1_to_utf8(raw, raw_len, &text_len);
        if (!text)
                return -ENOMEM;
        root = json_loadb(text, text_len, JSON_REJECT_DUPLICATES, &err);
        if (!root)
                return problem(ret_problem, -EINVAL, "x-deno-sandbox-config: not JSON (%s at byte %d)",
                               err.text, err.position);
        if (!json_is_object(root)) {
                json_decref(root);
                return problem(ret_problem, -EINVAL, "x-deno-sandbox-config: must be a JSON object");
        }
        r = parse_object(root, limits, &c, ret_problem);
        json_decref(root);
        if (r < 0) {
                gw_sandbox_config_done(&c);
                return r;
        }
        *ret = c;
        return 0;
}
