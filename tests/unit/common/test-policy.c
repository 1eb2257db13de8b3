/* SPDX-License-Identifier: Apache-2.0 */
/* common/policy: allow-list entry syntax and matching, secret names and hosts. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/policy/policy.h"

Test(policy, valid_entries)
{
        SbxNetEntry e;
        const char *why = NULL;

        cr_assert_eq(sbx_net_entry_parse("Example.COM", &e, &why), 0);
        cr_assert_eq(e.kind, SBX_NET_HOST);
        cr_assert_str_eq(e.host, "example.com");
        cr_assert_eq(e.port, 0);
        cr_assert_eq(sbx_net_entry_parse("*.example.net:443", &e, &why), 0);
        cr_assert_eq(e.kind, SBX_NET_WILDCARD);
        cr_assert_str_eq(e.host, "example.net");
        cr_assert_eq(e.port, 443);
        cr_assert_eq(sbx_net_entry_parse("192.0.2.1:8080", &e, &why), 0);
        cr_assert_eq(e.kind, SBX_NET_IPV4);
        cr_assert_eq(e.port, 8080);
        cr_assert_eq(sbx_net_entry_parse("[2001:db8::1]", &e, &why), 0);
        cr_assert_eq(e.kind, SBX_NET_IPV6);
        cr_assert_eq(sbx_net_entry_parse("[2001:db8::1]:53", &e, &why), 0);
        cr_assert_eq(e.port, 53);
}

Test(policy, invalid_entries_say_why)
{
        static const struct {
                const char *in;
                const char *why;
        } cases[] = {
                { "", "empty entry" },
                { "example.com:0", "port must be a number in 1..65535" },
                { "example.com:65536", "port must be a number in 1..65535" },
                { "example.com:http", "port must be a number in 1..65535" },
                { "2001:db8::1", "IPv6 literals must be written in brackets, e.g. [2001:db8::1]:443" },
                { "[2001:db8::1", "IPv6 literal is missing its closing ']'" },
                { "[nonsense]", "not a valid IPv6 address" },
                { "[::1]x", "expected ':port' after ']'" },
                { "a.*.com", "a wildcard must be a leading '*.' followed by a domain" },
                { "*", "a wildcard must be a leading '*.' followed by a domain" },
                { "*.", "not a valid host name" },
                { "999.1.1.1", "not a valid IPv4 address" },
                { "exa mple.com", "not a valid host name" },
                { "-bad.com", "not a valid host name" },
                { "bad-.com", "not a valid host name" },
                { "a..b", "not a valid host name" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                SbxNetEntry e;
                const char *why = NULL;
                cr_assert_eq(sbx_net_entry_parse(cases[i].in, &e, &why), -EINVAL, "\"%s\" accepted",
                             cases[i].in);
                cr_assert_str_eq(why, cases[i].why, "\"%s\"", cases[i].in);
        }
}

Test(policy, matching)
{
        SbxNetEntry exact, wild, v4;
        const char *why;
        sbx_net_entry_parse("api.example.com", &exact, &why);
        sbx_net_entry_parse("*.example.com:443", &wild, &why);
        sbx_net_entry_parse("192.0.2.1", &v4, &why);

        cr_assert(sbx_net_entry_matches_host(&exact, "API.example.com.", 80));
        cr_assert_not(sbx_net_entry_matches_host(&exact, "xapi.example.com", 80));
        cr_assert(sbx_net_entry_matches_host(&wild, "a.b.example.com", 443));
        cr_assert_not(sbx_net_entry_matches_host(&wild, "example.com", 443), "the apex is not below itself");
        cr_assert_not(sbx_net_entry_matches_host(&wild, "badexample.com", 443));
        cr_assert_not(sbx_net_entry_matches_host(&wild, "a.example.com", 80), "wrong port");
        cr_assert_not(sbx_net_entry_matches_host(&v4, "192.0.2.1", 80), "addresses never match names");
}

Test(policy, secrets)
{
        SbxNetEntry e;
        const char *why = NULL;
        cr_assert(sbx_env_name_valid("OPENAI_API_KEY"));
        cr_assert(sbx_env_name_valid("_x1"));
        cr_assert_not(sbx_env_name_valid("1ABC"));
        cr_assert_not(sbx_env_name_valid("A-B"));
        cr_assert_not(sbx_env_name_valid(""));
        cr_assert_eq(sbx_secret_host_parse("api.openai.com", &e, &why), 0);
        cr_assert_eq(sbx_secret_host_parse("*.openai.com", &e, &why), 0);
        cr_assert_eq(sbx_secret_host_parse("192.0.2.1", &e, &why), -EINVAL);
        cr_assert_eq(sbx_secret_host_parse("api.openai.com:443", &e, &why), -EINVAL);
        cr_assert_str_eq(why, "secret hosts take no port");
}
