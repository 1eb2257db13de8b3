/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's nftables table (libnftables, nft syntax): one table per node, named after it, rebuilt
 * whole at start-up and deleted at shutdown. Every sandbox tap is named "sbx…", which the base
 * chains match on:
 *
 *   prerouting (dstnat)  DNS (53) to the forwarder, TCP 80 and 443 to the proxy, from any tap
 *   input                from taps only the forwarder's and proxy's ports; those ports from nowhere
 *                        else (the forwarder and proxy listen on every address of the node)
 *   forward              into taps only replies; out of taps a jump to the sandbox's own chain via a
 *                        verdict map keyed by tap; unknown taps are dropped
 *   postrouting (srcnat) the sandboxes' subnet masqueraded toward everything but taps
 *
 * A sandbox's chain s<slot> drops spoofed sources and IPv6 (guests have IPv4 only), accepts
 * replies, then addresses in its sets (allow-list literals, and DNS answers for allowed names),
 * drops blocked ranges, and accepts everything else only for the open internet. Drops are counted
 * in named counters per sandbox and reason, read back for the metrics.
 *
 * Commands run synchronously on the loop: a batch takes 1–5 ms, and one runs per sandbox start and
 * stop and per DNS answer that teaches new addresses.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/egress.h"
#include "common/base/buffer.h"
#include "common/base/string-util.h"
#include "common/log/log.h"

static int run(Egress *e, const char *cmds)
{
        int r = nft_run_cmd_from_buffer(e->nft, cmds);
        const char *err = nft_ctx_get_error_buffer(e->nft);
        if (r != 0) {
                log_error("nftables refused a batch: %s", err && *err ? err : "(no message)");
                log_debug("The batch was:\n%s", cmds);
                return -EIO;
        }
        return 0;
}

static int run_buffer(Egress *e, SbxBuffer *b)
{
        if (sbx_buffer_append(b, "", 1) < 0)
                return -ENOMEM;
        return run(e, (const char *)sbx_buffer_data(b));
}

int egress_nft_init(Egress *e)
{
        const AgentConfig *c = &e->a->cfg;
        _cleanup_(sbx_buffer_done) SbxBuffer b = SBX_BUFFER_INIT;
        char subnet[64];
        struct in_addr base = { .s_addr = htonl(e->a->subnet_base) };

        e->nft = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!e->nft)
                return -ENOMEM;
        nft_ctx_buffer_output(e->nft);
        nft_ctx_buffer_error(e->nft);
        snprintf(subnet, sizeof(subnet), "%s/%u", inet_ntoa(base), e->a->subnet_prefix);

        /* "add; delete; define" in one batch: replaces a table a previous run left, atomically. */
        sbx_buffer_appendf(&b, "add table inet %s\ndelete table inet %s\n", e->table, e->table);
        sbx_buffer_appendf(
                &b,
                "table inet %s {\n"
                "  set blocked4 { type ipv4_addr; flags interval; elements = { 0.0.0.0/8, 10.0.0.0/8, "
                "100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.0.0.0/24, 192.168.0.0/16, "
                "198.18.0.0/15, 224.0.0.0/4, 240.0.0.0/4 }; }\n"
                "  map sandboxes { type ifname : verdict; }\n"
                "  chain prerouting {\n"
                "    type nat hook prerouting priority dstnat; policy accept;\n"
                "    iifname \"sbx*\" meta l4proto { tcp, udp } th dport 53 redirect to :%u\n"
                "    iifname \"sbx*\" tcp dport 80 redirect to :%u\n"
                "    iifname \"sbx*\" tcp dport 443 redirect to :%u\n"
                "  }\n"
                "  chain postrouting {\n"
                "    type nat hook postrouting priority srcnat; policy accept;\n"
                "    ip saddr %s oifname != \"sbx*\" masquerade\n"
                "  }\n"
                "  chain input {\n"
                "    type filter hook input priority filter; policy accept;\n"
                "    iifname \"sbx*\" meta l4proto { tcp, udp } th dport %u accept\n"
                "    iifname \"sbx*\" tcp dport { %u, %u } accept\n"
                "    iifname \"sbx*\" drop\n"
                "    meta l4proto { tcp, udp } th dport { %u, %u, %u } drop\n"
                "  }\n"
                "  chain forward {\n"
                "    type filter hook forward priority filter; policy accept;\n"
                "    oifname \"sbx*\" ct state established,related accept\n"
                "    oifname \"sbx*\" drop\n"
                "    iifname vmap @sandboxes\n"
                "    iifname \"sbx*\" drop\n"
                "  }\n"
                "}\n",
                e->table, c->dns_port, c->proxy_http_port, c->proxy_https_port, subnet, c->dns_port,
                c->proxy_http_port, c->proxy_https_port, c->dns_port, c->proxy_http_port,
                c->proxy_https_port);
        return run_buffer(e, &b);
}

void egress_nft_fini(Egress *e)
{
        char cmd[128];
        if (!e->nft)
                return;
        snprintf(cmd, sizeof(cmd), "delete table inet %s\n", e->table);
        (void)run(e, cmd);
        nft_ctx_free(e->nft);
        e->nft = NULL;
}

/* The allow-list's IPv4 literals go into the sets at once; names join them through DNS answers. */
static void append_literals(SbxBuffer *b, const Egress *e, const EgressSandbox *s)
{
        const EgressPolicy *p = s->policy;
        char addr[INET_ADDRSTRLEN];

        for (size_t i = 0; i < p->n_entries; i++) {
                const SbxNetEntry *x = &p->entries[i];
                if (x->kind != SBX_NET_IPV4)
                        continue;
                inet_ntop(AF_INET, &x->v4, addr, sizeof(addr));
                if (x->port == 0)
                        sbx_buffer_appendf(b, "add element inet %s s%d_any { %s }\n", e->table, s->slot,
                                           addr);
                else
                        sbx_buffer_appendf(b, "add element inet %s s%d_port { %s . %u }\n", e->table,
                                           s->slot, addr, x->port);
        }
}

int egress_nft_sandbox_add(Egress *e, EgressSandbox *s)
{
        _cleanup_(sbx_buffer_done) SbxBuffer b = SBX_BUFFER_INIT;
        char guest[INET_ADDRSTRLEN];
        const char *t = e->table;
        int n = s->slot;

        inet_ntop(AF_INET, &s->guest, guest, sizeof(guest));
        sbx_buffer_appendf(&b,
                           "add set inet %s s%d_any { type ipv4_addr; }\n"
                           "add set inet %s s%d_port { type ipv4_addr . inet_service; }\n"
                           "add counter inet %s s%d_spoofed\n"
                           "add counter inet %s s%d_blocked\n"
                           "add counter inet %s s%d_denied\n"
                           "add chain inet %s s%d\n"
                           "add rule inet %s s%d ip saddr != %s counter name s%d_spoofed drop\n"
                           "add rule inet %s s%d meta nfproto ipv6 counter name s%d_denied drop\n"
                           "add rule inet %s s%d ct state established,related accept\n"
                           "add rule inet %s s%d ip daddr @s%d_any accept\n"
                           "add rule inet %s s%d ip daddr . th dport @s%d_port accept\n"
                           "add rule inet %s s%d ip daddr @blocked4 counter name s%d_blocked drop\n",
                           t, n, t, n, t, n, t, n, t, n, t, n, t, n, guest, n, t, n, n, t, n, t, n, n, t, n,
                           n, t, n, n);
        if (s->policy->open)
                sbx_buffer_appendf(&b, "add rule inet %s s%d accept\n", t, n);
        else
                sbx_buffer_appendf(&b, "add rule inet %s s%d counter name s%d_denied drop\n", t, n, n);
        append_literals(&b, e, s);
        /* Last: the tap starts using the chain only once it is complete (one batch anyway). */
        sbx_buffer_appendf(&b, "add element inet %s sandboxes { \"%s\" : jump s%d }\n", t, s->tap, n);
        return run_buffer(e, &b);
}

void egress_nft_sandbox_remove(Egress *e, EgressSandbox *s)
{
        _cleanup_(sbx_buffer_done) SbxBuffer b = SBX_BUFFER_INIT;
        const char *t = e->table;
        int n = s->slot;

        if (!e->nft)
                return;
        /* The map element first: a chain cannot be deleted while something jumps to it. */
        sbx_buffer_appendf(&b,
                           "delete element inet %s sandboxes { \"%s\" }\n"
                           "delete chain inet %s s%d\n"
                           "delete set inet %s s%d_any\n"
                           "delete set inet %s s%d_port\n"
                           "delete counter inet %s s%d_spoofed\n"
                           "delete counter inet %s s%d_blocked\n"
                           "delete counter inet %s s%d_denied\n",
                           t, s->tap, t, n, t, n, t, n, t, n, t, n, t, n);
        (void)run_buffer(e, &b);
}

int egress_nft_allow(Egress *e, EgressSandbox *s, const struct in_addr *addrs, size_t k, uint16_t port)
{
        _cleanup_(sbx_buffer_done) SbxBuffer b = SBX_BUFFER_INIT;
        char addr[INET_ADDRSTRLEN];

        if (k == 0)
                return 0;
        sbx_buffer_appendf(&b, "add element inet %s s%d_%s { ", e->table, s->slot, port ? "port" : "any");
        for (size_t i = 0; i < k; i++) {
                inet_ntop(AF_INET, &addrs[i], addr, sizeof(addr));
                if (port)
                        sbx_buffer_appendf(&b, "%s%s . %u", i ? ", " : "", addr, port);
                else
                        sbx_buffer_appendf(&b, "%s%s", i ? ", " : "", addr);
        }
        sbx_buffer_appendf(&b, " }\n");
        return run_buffer(e, &b);
}

int egress_nft_disallow(Egress *e, EgressSandbox *s, const char *element)
{
        char cmd[256];
        /* element is "<addr>" (any port) or "<addr> . <port>". */
        snprintf(cmd, sizeof(cmd), "delete element inet %s s%d_%s { %s }\n", e->table, s->slot,
                 strchr(element, '.') && strstr(element, " . ") ? "port" : "any", element);
        return run(e, cmd);
}

void egress_nft_collect(Egress *e)
{
        char cmd[128];
        json_error_t jerr;

        if (!e->nft)
                return;
        snprintf(cmd, sizeof(cmd), "list counters table inet %s\n", e->table);
        nft_ctx_output_set_flags(e->nft, NFT_CTX_OUTPUT_JSON);
        int r = nft_run_cmd_from_buffer(e->nft, cmd);
        nft_ctx_output_set_flags(e->nft, 0);
        if (r != 0)
                return;
        json_t *root = json_loads(nft_ctx_get_output_buffer(e->nft), 0, &jerr);
        json_t *items = json_object_get(root, "nftables"), *it;
        size_t i;
        double spoofed = 0, blocked = 0, denied = 0;
        json_array_foreach(items, i, it)
        {
                json_t *c = json_object_get(it, "counter");
                const char *name = json_string_value(json_object_get(c, "name"));
                double packets = (double)json_integer_value(json_object_get(c, "packets"));
                if (!name)
                        continue;
                if (endswith(name, "_spoofed"))
                        spoofed += packets;
                else if (endswith(name, "_blocked"))
                        blocked += packets;
                else if (endswith(name, "_denied"))
                        denied += packets;
        }
        json_decref(root);
        /* Counters of running sandboxes only: a stopped one's drops leave the sum. The metric is a
         * gauge of packets dropped by the sandboxes running now. */
        sbx_gauge_set(e->m.nft_dropped, SBX_LABELS("spoofed"), spoofed);
        sbx_gauge_set(e->m.nft_dropped, SBX_LABELS("blocked"), blocked);
        sbx_gauge_set(e->m.nft_dropped, SBX_LABELS("denied"), denied);
}
