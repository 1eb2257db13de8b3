/* SPDX-License-Identifier: Apache-2.0 */
/* gateway/gw-sandbox-config: the x-deno-sandbox-config header, decoded strictly. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/crypto/crypto.h"
#include "gateway/gw-sandbox-config.h"

static const GwSandboxConfigLimits limits = { .min_memory_mb = 768,
                                              .max_memory_mb = 4096,
                                              .default_memory_mb = 1280 };

/* base64 of the bytes of `json` (as btoa() makes it of a Latin-1 string). */
static int parse(const char *json, GwSandboxConfig *c, char **problem)
{
        _cleanup_free_ char *b64 = NULL;

        cr_assert_eq(sbx_base64_encode(json, strlen(json), &b64), 0);
        return gw_sandbox_config_parse(b64, strlen(b64), &limits, c, problem);
}

Test(gw_sandbox_config, defaults_of_the_sdk)
{
        GwSandboxConfig c;
        char *problem = NULL;

        cr_assert_eq(parse("{\"memory_mb\":1280,\"volumes\":[]}", &c, &problem), 0);
        cr_assert_not(c.has_stop_at, "no stop_at_ms means a session sandbox");
        cr_assert_eq(c.memory_mb, 1280);
        cr_assert_eq(c.n_labels, 0);
        cr_assert_not(c.has_allow_net);
        cr_assert_eq(c.n_secrets, 0);
        cr_assert_null(problem);
        gw_sandbox_config_done(&c);
}

Test(gw_sandbox_config, every_option)
{
        GwSandboxConfig c;
        char *problem = NULL;

        cr_assert_eq(parse("{\"stop_at_ms\":1795793829987,\"memory_mb\":2048,\"labels\":{\"team\":\"x\","
                           "\"purpose\":"
                           "\"demo\"},\"volumes\":[],\"allow_net\":[\"example.com\",\"*.example.net:443\"],"
                           "\"secrets\":{\"OPENAI_API_KEY\":{\"hosts\":[\"api.openai.com\"],\"value\":\"sk-"
                           "real\"}}}",
                           &c, &problem),
                     0, "%s", problem);
        cr_assert(c.has_stop_at);
        cr_assert_eq(c.stop_at_ms, 1795793829987LL);
        cr_assert_eq(c.memory_mb, 2048);
        cr_assert_eq(c.n_labels, 2);
        cr_assert_str_eq(c.labels[0].key, "team");
        cr_assert_str_eq(c.labels[1].value, "demo");
        cr_assert(c.has_allow_net);
        cr_assert_str_eq(c.allow_net[1], "*.example.net:443");
        cr_assert_null(c.allow_net[2]);
        cr_assert_eq(c.n_secrets, 1);
        cr_assert_str_eq(c.secrets[0].name, "OPENAI_API_KEY");
        cr_assert_str_eq(c.secrets[0].hosts[0], "api.openai.com");
        cr_assert_str_eq(c.secrets[0].value, "sk-real");
        gw_sandbox_config_done(&c);
}

Test(gw_sandbox_config, latin1_bytes_become_utf8)
{
        /* btoa("{"labels":{"k":"é"}}"): é is the single byte 0xE9. */
        static const char json[] = "{\"labels\":{\"k\":\"\xE9\"},\"volumes\":[]}";
        GwSandboxConfig c;

        cr_assert_eq(parse(json, &c, NULL), 0);
        cr_assert_str_eq(c.labels[0].value, "\xC3\xA9");
        gw_sandbox_config_done(&c);
}

Test(gw_sandbox_config, empty_allow_net_means_no_egress)
{
        GwSandboxConfig c;

        cr_assert_eq(parse("{\"memory_mb\":1280,\"volumes\":[],\"allow_net\":[]}", &c, NULL), 0);
        cr_assert(c.has_allow_net);
        cr_assert_null(c.allow_net[0]);
        gw_sandbox_config_done(&c);
}

Test(gw_sandbox_config, refusals_name_the_key)
{
        static const struct {
                const char *json;
                int error;
                const char *contains;
        } cases[] = {
                { "{\"memory_mb\":100,\"volumes\":[]}", -ERANGE,
                  "memory_mb: 100 is out of range; allowed: 768..4096" },
                { "{\"memory_mb\":100000,\"volumes\":[]}", -ERANGE, "memory_mb: 100000" },
                { "{\"memory_mb\":\"1280\"}", -EINVAL, "memory_mb: must be an integer" },
                { "{\"memory_mb\":1280.5}", -EINVAL, "memory_mb" },
                { "{\"stop_at_ms\":-5}", -EINVAL, "stop_at_ms" },
                { "{\"surprise\":1}", -EINVAL, "unknown key \"surprise\"" },
                { "[]", -EINVAL, "must be a JSON object" },
                { "{\"a\":1,\"a\":2}", -EINVAL, "not JSON" },
                { "{\"labels\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\",\"d\":\"4\",\"e\":\"5\",\"f\":\"6\"}}",
                  -ERANGE, "6 labels given; at most 5" },
                { "{\"labels\":{\"k\":1}}", -EINVAL, "labels.k: the value must be a string" },
                { "{\"allow_net\":\"example.com\"}", -EINVAL, "allow_net: must be an array" },
                { "{\"allow_net\":[\"a b\"]}", -EINVAL, "allow_net[0]" },
                { "{\"secrets\":{\"1BAD\":{\"hosts\":[\"h\"],\"value\":\"v\"}}}", -EINVAL,
                  "not a valid environment variable name" },
                { "{\"secrets\":{\"OK\":{\"hosts\":[],\"value\":\"v\"}}}", -EINVAL, "at least one host" },
                { "{\"secrets\":{\"OK\":{\"hosts\":[\"h\"],\"value\":\"\"}}}", -ERANGE, "secrets.OK.value" },
                { "{\"secrets\":{\"OK\":{\"hosts\":[\"h\"],\"value\":\"v\",\"x\":1}}}", -EINVAL,
                  "unknown key \"x\"" },
                { "{\"root\":{\"volume\":\"v\"}}", -EOPNOTSUPP, "root:" },
                { "{\"volumes\":[{\"volume\":\"v\",\"path\":\"/v\"}]}", -EOPNOTSUPP, "volumes:" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                GwSandboxConfig c = { 0 };
                char *problem = NULL;
                int r = parse(cases[i].json, &c, &problem);
                cr_assert_eq(r, cases[i].error, "%s: %d", cases[i].json, r);
                cr_assert_not_null(problem, "%s", cases[i].json);
                cr_assert(strstr(problem, cases[i].contains), "%s: \"%s\"", cases[i].json, problem);
                free(problem);
        }
}

Test(gw_sandbox_config, not_base64_and_too_large)
{
        GwSandboxConfig c;
        char *problem = NULL;
        _cleanup_free_ char *big = malloc(GW_CONFIG_HEADER_MAX + 2);

        cr_assert_eq(gw_sandbox_config_parse("!!!", 3, &limits, &c, &problem), -EINVAL);
        cr_assert(strstr(problem, "not base64"));
        free(problem);
        memset(big, 'A', GW_CONFIG_HEADER_MAX + 1);
        cr_assert_eq(gw_sandbox_config_parse(big, GW_CONFIG_HEADER_MAX + 1, &limits, &c, &problem), -ERANGE);
        free(problem);
}
