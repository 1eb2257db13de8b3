/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * One sandbox's egress policy, as the DNS forwarder, the proxy and the nftables rules apply it
 * (docs/networking.md):
 *
 *   allow_net absent   the open internet: any public address, any port
 *   allow_net empty    nothing at all
 *   allow_net entries  exactly those names (and the addresses DNS gives for them), wildcards, and
 *                      address literals, each on its port or on every port
 *
 * Whatever the list says, addresses in private, loopback, link-local (metadata), CGNAT, multicast
 * and reserved ranges are refused, unless the list names that very address as a literal.
 *
 * Pure functions of the spec and their inputs: no I/O, unit-tested (tests/unit/agent/).
 */

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/policy/policy.h"
#include "proto/sbx/v1/state.pb-c.h"

typedef struct EgressSecret {
        char *name;
        char *placeholder;
        /* Filled in once the sealed values are opened; NULL until then. Wiped when freed. */
        char *value;
        SbxNetEntry *hosts;
        size_t n_hosts;
} EgressSecret;

typedef struct EgressPolicy {
        bool open;
        SbxNetEntry *entries;
        size_t n_entries;
        EgressSecret *secrets;
        size_t n_secrets;
} EgressPolicy;

/* From a record's spec; -EINVAL for an entry that does not parse (the scheduler validated them, so
 * this means a record written by something else). */
int egress_policy_new(const Sbx__V1__SandboxSpec *spec, EgressPolicy **ret);
EgressPolicy *egress_policy_free(EgressPolicy *p);

/* May the sandbox resolve `name` (so that its addresses join the allowed set)? */
bool egress_policy_name_allowed(const EgressPolicy *p, const char *name);

/* May the sandbox connect to `host` (a name) on `port`? */
bool egress_policy_host_allowed(const EgressPolicy *p, const char *host, uint16_t port);

/* May the sandbox connect to this address on `port` when no name is involved (a literal, or the
 * open internet)? Refuses blocked ranges unless the list names the address itself. */
bool egress_policy_addr_allowed(const EgressPolicy *p, const struct sockaddr *sa, uint16_t port);

/* True for addresses nothing may reach except by literal allow-list entry: private, loopback,
 * link-local, CGNAT, multicast, reserved, unspecified (IPv4, and IPv6 including mapped IPv4). */
bool egress_addr_blocked(const struct sockaddr *sa);

/* The secrets to substitute toward `host` (on port `port`): fills `out` with up to `n` pointers
 * and returns how many. */
size_t egress_policy_secrets_for(const EgressPolicy *p, const char *host, const EgressSecret **out,
                                 size_t n);
