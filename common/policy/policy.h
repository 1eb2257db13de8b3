/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Egress policy syntax shared by the scheduler (which validates create requests) and the agent
 * (which enforces them): allow-list entries and secret definitions.
 *
 * An allow-list entry is one of
 *   example.com          an exact host name (case-insensitive)
 *   *.example.com        any name strictly below example.com
 *   192.0.2.1            an IPv4 address
 *   [2001:db8::1]        an IPv6 address, in brackets
 * each optionally followed by ":port" (1..65535); without a port every port is allowed.
 */

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#define SBX_HOSTNAME_MAX 253

typedef enum SbxNetKind {
        SBX_NET_HOST,
        SBX_NET_WILDCARD,
        SBX_NET_IPV4,
        SBX_NET_IPV6,
} SbxNetKind;

typedef struct SbxNetEntry {
        SbxNetKind kind;
        /* Lower-case host name; for a wildcard the part after "*.". Empty for addresses. */
        char host[SBX_HOSTNAME_MAX + 1];
        struct in_addr v4;
        struct in6_addr v6;
        /* 0 means any port. */
        uint16_t port;
} SbxNetEntry;

/* Parses one entry. On failure returns -EINVAL and sets *ret_why to a static phrase saying what is
 * wrong ("port must be 1..65535"); *ret is written only on success. */
int sbx_net_entry_parse(const char *s, SbxNetEntry *ret, const char **ret_why);

/* True when a connection to `host` (a name, lower or upper case) on `port` is allowed by the entry.
 * Address entries never match names. */
bool sbx_net_entry_matches_host(const SbxNetEntry *e, const char *host, uint16_t port);

/* True for a valid DNS host name: labels of [A-Za-z0-9-], 1..63 bytes, not starting or ending with
 * '-', at most 253 bytes in all. */
bool sbx_hostname_valid(const char *s);

/* True for an environment variable name usable for a secret: [A-Za-z_][A-Za-z0-9_]*, at most 128
 * bytes. */
bool sbx_env_name_valid(const char *s);

/* A secret's host pattern: an exact host or a "*." wildcard, without a port. -EINVAL with *ret_why
 * otherwise. */
int sbx_secret_host_parse(const char *s, SbxNetEntry *ret, const char **ret_why);
