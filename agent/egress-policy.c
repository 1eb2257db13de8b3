/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/egress-policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/crypto/crypto.h"

int egress_policy_new(const Sbx__V1__SandboxSpec *spec, EgressPolicy **ret)
{
        EgressPolicy *p = calloc(1, sizeof(*p));
        const char *why;

        if (!p)
                return -ENOMEM;
        p->open = !spec || !spec->allow_net;
        if (!p->open && spec->allow_net->n_entries > 0) {
                p->entries = calloc(spec->allow_net->n_entries, sizeof(*p->entries));
                if (!p->entries)
                        goto oom;
                for (size_t i = 0; i < spec->allow_net->n_entries; i++)
                        if (sbx_net_entry_parse(spec->allow_net->entries[i], &p->entries[i], &why) < 0) {
                                egress_policy_free(p);
                                return -EINVAL;
                        }
                p->n_entries = spec->allow_net->n_entries;
        }
        if (spec && spec->n_secrets > 0) {
                p->secrets = calloc(spec->n_secrets, sizeof(*p->secrets));
                if (!p->secrets)
                        goto oom;
                p->n_secrets = spec->n_secrets;
                for (size_t i = 0; i < spec->n_secrets; i++) {
                        const Sbx__V1__SecretRef *s = spec->secrets[i];
                        EgressSecret *e = &p->secrets[i];
                        e->name = strdup(s->name);
                        e->placeholder = strdup(s->placeholder);
                        e->hosts = calloc(s->n_hosts ? s->n_hosts : 1, sizeof(*e->hosts));
                        if (!e->name || !e->placeholder || !e->hosts)
                                goto oom;
                        for (size_t j = 0; j < s->n_hosts; j++)
                                if (sbx_secret_host_parse(s->hosts[j], &e->hosts[j], &why) < 0) {
                                        egress_policy_free(p);
                                        return -EINVAL;
                                }
                        e->n_hosts = s->n_hosts;
                }
        }
        *ret = p;
        return 0;
oom:
        egress_policy_free(p);
        return -ENOMEM;
}

EgressPolicy *egress_policy_free(EgressPolicy *p)
{
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_secrets; i++) {
                EgressSecret *e = &p->secrets[i];
                if (e->value) {
                        sbx_secure_zero(e->value, strlen(e->value));
                        free(e->value);
                }
                free(e->name);
                free(e->placeholder);
                free(e->hosts);
        }
        free(p->secrets);
        free(p->entries);
        free(p);
        return NULL;
}

bool egress_policy_name_allowed(const EgressPolicy *p, const char *name)
{
        if (p->open)
                return true;
        for (size_t i = 0; i < p->n_entries; i++)
                if (sbx_net_entry_matches_host(&p->entries[i], name, p->entries[i].port))
                        return true;
        return false;
}

bool egress_policy_host_allowed(const EgressPolicy *p, const char *host, uint16_t port)
{
        if (p->open)
                return true;
        for (size_t i = 0; i < p->n_entries; i++)
                if (sbx_net_entry_matches_host(&p->entries[i], host, port))
                        return true;
        return false;
}

static bool in4(uint32_t a, const char *net, unsigned bits)
{
        struct in_addr n;
        inet_pton(AF_INET, net, &n);
        uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
        return (a & mask) == (ntohl(n.s_addr) & mask);
}

static bool blocked4(uint32_t a)
{
        static const struct {
                const char *net;
                unsigned bits;
        } ranges[] = {
                { "0.0.0.0", 8 },      { "10.0.0.0", 8 },    { "100.64.0.0", 10 }, { "127.0.0.0", 8 },
                { "169.254.0.0", 16 }, { "172.16.0.0", 12 }, { "192.0.0.0", 24 },  { "192.168.0.0", 16 },
                { "198.18.0.0", 15 },  { "224.0.0.0", 4 },   { "240.0.0.0", 4 },
        };
        for (size_t i = 0; i < ELEMENTSOF(ranges); i++)
                if (in4(a, ranges[i].net, ranges[i].bits))
                        return true;
        return false;
}

bool egress_addr_blocked(const struct sockaddr *sa)
{
        if (sa->sa_family == AF_INET)
                return blocked4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
        if (sa->sa_family != AF_INET6)
                return true;
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        const uint8_t *b = a->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
                uint32_t v4 = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
                return blocked4(v4);
        }
        /* Unspecified, loopback, unique local (fc00::/7), link-local (fe80::/10), multicast, and
         * NAT64 (64:ff9b::/96), which would lead to any IPv4 address. */
        static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
        return IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a) || (b[0] & 0xfe) == 0xfc ||
               (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || b[0] == 0xff || memcmp(b, nat64, 12) == 0;
}

static bool literal_matches(const SbxNetEntry *e, const struct sockaddr *sa, uint16_t port)
{
        if (e->port != 0 && e->port != port)
                return false;
        if (e->kind == SBX_NET_IPV4 && sa->sa_family == AF_INET)
                return e->v4.s_addr == ((const struct sockaddr_in *)sa)->sin_addr.s_addr;
        if (e->kind == SBX_NET_IPV6 && sa->sa_family == AF_INET6)
                return memcmp(&e->v6, &((const struct sockaddr_in6 *)sa)->sin6_addr, sizeof(e->v6)) == 0;
        return false;
}

bool egress_policy_addr_allowed(const EgressPolicy *p, const struct sockaddr *sa, uint16_t port)
{
        for (size_t i = 0; i < p->n_entries; i++)
                if (literal_matches(&p->entries[i], sa, port))
                        return true;
        return p->open && !egress_addr_blocked(sa);
}

size_t egress_policy_secrets_for(const EgressPolicy *p, const char *host, const EgressSecret **out, size_t n)
{
        size_t k = 0;
        for (size_t i = 0; i < p->n_secrets && k < n; i++)
                for (size_t j = 0; j < p->secrets[i].n_hosts; j++)
                        if (sbx_net_entry_matches_host(&p->secrets[i].hosts[j], host, 0)) {
                                out[k++] = &p->secrets[i];
                                break;
                        }
        return k;
}
