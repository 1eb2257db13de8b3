/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Egress: what a sandbox may reach outside its VM, enforced on its node (docs/networking.md).
 *
 *   egress-nft.c     one nftables table per agent: NAT toward the DNS forwarder and the proxy,
 *                    anti-spoofing, a chain and address sets per sandbox, drop counters
 *   egress-dns.c     the DNS forwarder: allowed names are resolved upstream (c-ares) and their
 *                    addresses join the sandbox's set; other names get NXDOMAIN
 *   egress-proxy.c   the transparent proxy for TCP 80 and 443: Host / SNI against the policy,
 *                    splicing, or TLS interception to put secrets into requests toward their hosts
 *   egress-ca.c      the node's CA and the certificates it mints per server name
 *   egress-policy.c  the policy itself (pure)
 *   egress.c         the registry of sandboxes by guest address, their secrets, metrics
 */

#include <ares.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "agent/agent.h"
#include "agent/egress-policy.h"

typedef struct Egress Egress;
typedef struct EgressSandbox EgressSandbox;
typedef struct DnsConn DnsConn;

typedef struct EgressMetrics {
        SbxCounter *connections;   /* kind (http, https), verdict (allowed, denied) */
        SbxCounter *denied;        /* reason: policy, blocked_address, no_server_name, malformed, upstream */
        SbxCounter *bytes;         /* direction (up, down) */
        SbxCounter *interceptions; /* result (substituted, passed) */
        SbxCounter *preconnects;   /* result (used, unused) */
        SbxCounter *certs_minted;
        SbxCounter *dns;       /* result: answered, refused, failed, malformed */
        SbxGauge *nft_dropped; /* reason (spoofed, blocked, denied): packets dropped by running sandboxes */
} EgressMetrics;

struct EgressSandbox {
        Egress *e;
        char id[64];
        int slot;
        char tap[16];
        struct in_addr guest;
        EgressPolicy *policy;
        /* Secrets opened (or none needed): the sandbox may boot. */
        bool ready;
        void (*ready_cb)(int error, void *userdata);
        void *ready_userdata;
        /* Addresses DNS answers added to the sets, with when they lapse (ms). */
        SbxHashmap *learned;
        bool removed;
        unsigned refs;
};

struct Egress {
        Agent *a;
        char table[64];
        struct nft_ctx *nft;
        EgressMetrics m;
        /* Sandboxes by guest IPv4 address ("10.200.0.2"). */
        SbxHashmap *by_address;
        /* The node CA: its certificate goes into every guest's trust store. */
        EVP_PKEY *ca_key;
        X509 *ca_cert;
        char *ca_pem;
        SSL_CTX *upstream_ctx;
        SbxHashmap *minted; /* server name → MintedCert */
        /* DNS */
        ares_channel ares;
        uv_timer_t ares_timer;
        SbxHashmap *ares_polls; /* fd → uv_poll_t */
        SbxHashmap *dns_cache;  /* name → answer, for the proxy */
        uv_udp_t dns_udp;
        uv_tcp_t dns_tcp;
        LIST_HEAD(, DnsConn) dns_conns; /* guests' DNS-over-TCP connections */
        unsigned n_dns_conns;
        /* The proxy */
        uv_tcp_t http_listener;
        uv_tcp_t https_listener;
        uv_timer_t sweep_timer;
        unsigned closing;
        void (*closed)(Egress *e);
        void (*done)(void *userdata);
        void *done_userdata;
};

/* Sets up the table, the forwarder, the proxy and the CA. */
int egress_new(Agent *a, Egress **ret);
/* Removes the table and closes everything; `done` runs once the loop has let go of it all (it may
 * run before this returns). */
void egress_free(Egress *e, void (*done)(void *userdata), void *userdata);
const char *egress_ca_pem(const Egress *e);

/* A sandbox's egress: its chain and sets now, its secrets fetched from etcd and opened; `ready`
 * runs once that is done (or failed: the sandbox must not boot). */
int egress_sandbox_add(Egress *e, const char *id, const AgentNet *net, const Sbx__V1__SandboxSpec *spec,
                       void (*ready)(int error, void *userdata), void *userdata, EgressSandbox **ret);
void egress_sandbox_remove(EgressSandbox *s);
EgressSandbox *egress_sandbox_by_address(Egress *e, const struct in_addr *guest);

/* ---- between the egress files ---- */

int egress_nft_init(Egress *e);
void egress_nft_fini(Egress *e);
int egress_nft_sandbox_add(Egress *e, EgressSandbox *s);
void egress_nft_sandbox_remove(Egress *e, EgressSandbox *s);
/* Adds addresses (IPv4, network order) to a sandbox's set, on `port` or on every port (0). */
int egress_nft_allow(Egress *e, EgressSandbox *s, const struct in_addr *addrs, size_t n, uint16_t port);
int egress_nft_disallow(Egress *e, EgressSandbox *s, const char *element);
/* Packets dropped by each sandbox chain, summed by reason, into the metrics. */
void egress_nft_collect(Egress *e);

int egress_dns_start(Egress *e);
void egress_dns_stop(Egress *e);
void egress_dns_cache_free(Egress *e);
/* Resolves `host` for the proxy (IPv4); `cb` gets addresses or an error, at once from the cache of
 * recent answers when it can, later otherwise. */
int egress_dns_resolve(Egress *e, const char *host,
                       void (*cb)(int error, const struct in_addr *addrs, size_t n, void *userdata),
                       void *userdata);

int egress_proxy_start(Egress *e);
void egress_proxy_stop(Egress *e);

int egress_ca_init(Egress *e);
void egress_ca_fini(Egress *e);
/* An SSL_CTX presenting a certificate for `host` signed by the node CA (cached). */
SSL_CTX *egress_ca_server_ctx(Egress *e, const char *host);

void egress_sandbox_unref(EgressSandbox *s);
/* Close callback of the Egress's own handles (their data is the Egress): counts them down. */
void egress_handle_closed(uv_handle_t *h);
