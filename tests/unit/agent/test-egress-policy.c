/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include "agent/egress-policy.h"

static EgressPolicy *policy(const char *const *entries, bool open)
{
        Sbx__V1__SandboxSpec spec = SBX__V1__SANDBOX_SPEC__INIT;
        Sbx__V1__AllowNet an = SBX__V1__ALLOW_NET__INIT;
        size_t n = 0;
        while (entries && entries[n])
                n++;
        if (!open) {
                an.entries = (char **)entries;
                an.n_entries = n;
                spec.allow_net = &an;
        }
        EgressPolicy *p = NULL;
        cr_assert_eq(egress_policy_new(&spec, &p), 0);
        return p;
}

static struct sockaddr_in v4(const char *s)
{
        struct sockaddr_in a = { .sin_family = AF_INET };
        cr_assert_eq(inet_pton(AF_INET, s, &a.sin_addr), 1);
        return a;
}

static struct sockaddr_in6 v6(const char *s)
{
        struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
        cr_assert_eq(inet_pton(AF_INET6, s, &a.sin6_addr), 1);
        return a;
}

#define SA(x) ((const struct sockaddr *)&(x))

Test(egress_policy, names_and_ports)
{
        EgressPolicy *p = policy(
                (const char *const[]){ "api.example.com:443", "*.cdn.example", "plain.example", NULL },
                false);
        cr_expect(egress_policy_name_allowed(p, "api.example.com"), "a name with a port still resolves");
        cr_expect(egress_policy_host_allowed(p, "API.example.com.", 443));
        cr_expect_not(egress_policy_host_allowed(p, "api.example.com", 80));
        cr_expect(egress_policy_host_allowed(p, "a.b.cdn.example", 8080));
        cr_expect_not(egress_policy_host_allowed(p, "cdn.example", 80),
                      "a wildcard does not cover its apex");
        cr_expect_not(egress_policy_name_allowed(p, "example.com"));
        cr_expect(egress_policy_host_allowed(p, "plain.example", 1));
        egress_policy_free(p);
}

Test(egress_policy, open_and_empty)
{
        EgressPolicy *open = policy(NULL, true), *none = policy((const char *const[]){ NULL }, false);
        struct sockaddr_in pub = v4("198.51.100.7"), priv = v4("10.1.2.3");
        cr_expect(egress_policy_name_allowed(open, "anything.example"));
        cr_expect(egress_policy_addr_allowed(open, SA(pub), 80));
        cr_expect_not(egress_policy_addr_allowed(open, SA(priv), 80),
                      "the open internet has no private ranges");
        cr_expect_not(egress_policy_name_allowed(none, "anything.example"));
        cr_expect_not(egress_policy_addr_allowed(none, SA(pub), 80));
        egress_policy_free(open);
        egress_policy_free(none);
}

Test(egress_policy, literals_may_name_private_addresses)
{
        EgressPolicy *p = policy((const char *const[]){ "10.1.2.3:5432", "[2001:db8::1]", NULL }, false);
        struct sockaddr_in db = v4("10.1.2.3"), other = v4("10.1.2.4");
        struct sockaddr_in6 six = v6("2001:db8::1");
        cr_expect(egress_policy_addr_allowed(p, SA(db), 5432));
        cr_expect_not(egress_policy_addr_allowed(p, SA(db), 5433));
        cr_expect_not(egress_policy_addr_allowed(p, SA(other), 5432));
        cr_expect(egress_policy_addr_allowed(p, SA(six), 443));
        egress_policy_free(p);
}

Test(egress_policy, blocked_ranges)
{
        const char *blocked[] = { "0.1.2.3",         "10.0.0.1",   "100.64.1.1",     "127.0.0.1",
                                  "169.254.169.254", "172.16.5.4", "172.31.255.255", "192.168.1.1",
                                  "192.0.0.8",       "224.0.0.1",  "255.255.255.255" };
        const char *fine[] = { "1.1.1.1",       "172.32.0.1",  "192.0.2.10",
                               "198.51.100.10", "203.0.113.9", "100.128.0.1" };
        for (size_t i = 0; i < sizeof(blocked) / sizeof(*blocked); i++) {
                struct sockaddr_in a = v4(blocked[i]);
                cr_expect(egress_addr_blocked(SA(a)), "%s", blocked[i]);
        }
        for (size_t i = 0; i < sizeof(fine) / sizeof(*fine); i++) {
                struct sockaddr_in a = v4(fine[i]);
                cr_expect_not(egress_addr_blocked(SA(a)), "%s", fine[i]);
        }
        const char *blocked6[] = {
                "::", "::1", "fd00::1", "fe80::1", "ff02::1", "::ffff:10.0.0.1", "64:ff9b::1.1.1.1"
        };
        for (size_t i = 0; i < sizeof(blocked6) / sizeof(*blocked6); i++) {
                struct sockaddr_in6 a = v6(blocked6[i]);
                cr_expect(egress_addr_blocked(SA(a)), "%s", blocked6[i]);
        }
        struct sockaddr_in6 g = v6("2001:db8::5"), m = v6("::ffff:198.51.100.1");
        cr_expect_not(egress_addr_blocked(SA(g)));
        cr_expect_not(egress_addr_blocked(SA(m)));
}

Test(egress_policy, secrets_by_host)
{
        Sbx__V1__SandboxSpec spec = SBX__V1__SANDBOX_SPEC__INIT;
        Sbx__V1__SecretRef a = SBX__V1__SECRET_REF__INIT, b = SBX__V1__SECRET_REF__INIT,
                           *refs[] = { &a, &b };
        char *ha[] = { (char *)"api.example.com" }, *hb[] = { (char *)"*.example.com" };
        a.name = (char *)"A";
        a.placeholder = (char *)"sbx_secret_a";
        a.hosts = ha;
        a.n_hosts = 1;
        b.name = (char *)"B";
        b.placeholder = (char *)"sbx_secret_b";
        b.hosts = hb;
        b.n_hosts = 1;
        spec.secrets = refs;
        spec.n_secrets = 2;
        EgressPolicy *p = NULL;
        cr_assert_eq(egress_policy_new(&spec, &p), 0);
        const EgressSecret *out[4];
        cr_expect_eq(egress_policy_secrets_for(p, "api.example.com", out, 4), 2);
        cr_expect_eq(egress_policy_secrets_for(p, "www.example.com", out, 4), 1);
        cr_expect_str_eq(out[0]->name, "B");
        cr_expect_eq(egress_policy_secrets_for(p, "example.com", out, 4), 0);
        egress_policy_free(p);
}
