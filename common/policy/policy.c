/* SPDX-License-Identifier: Apache-2.0 */
#include "common/policy/policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/base/parse.h"
#include "common/base/string-util.h"

bool sbx_hostname_valid(const char *s)
{
        size_t n = strlen(s), label = 0;

        if (n == 0 || n > SBX_HOSTNAME_MAX)
                return false;
        for (size_t i = 0; i <= n; i++) {
                char c = s[i];
                if (c == '.' || c == '\0') {
                        if (label == 0 || label > 63 || s[i - 1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (!(isalnum((unsigned char)c) || c == '-'))
                        return false;
                if (label == 0 && c == '-')
                        return false;
                label++;
        }
        return true;
}

bool sbx_env_name_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 128 || isdigit((unsigned char)s[0]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
                        return false;
        return true;
}

static void lower(char *s)
{
        for (; *s; s++)
                *s = (char)tolower((unsigned char)*s);
}

static int parse_port(const char *s, uint16_t *ret, const char **why)
{
        uint32_t p;
        if (sbx_parse_uint32(s, &p) < 0 || p == 0 || p > 65535) {
                *why = "port must be a number in 1..65535";
                return -EINVAL;
        }
        *ret = (uint16_t)p;
        return 0;
}

int sbx_net_entry_parse(const char *s, SbxNetEntry *ret, const char **ret_why)
{
        SbxNetEntry e = { 0 };
        char buf[SBX_HOSTNAME_MAX + 16];
        const char *why = NULL;
        char *colon;

        if (!s || !*s) {
                *ret_why = "empty entry";
                return -EINVAL;
        }
        if (strlen(s) >= sizeof(buf)) {
                *ret_why = "entry is too long";
                return -EINVAL;
        }
        snprintf(buf, sizeof(buf), "%s", s);

        if (buf[0] == '[') {
                char *close = strchr(buf, ']');
                if (!close) {
                        *ret_why = "IPv6 literal is missing its closing ']'";
                        return -EINVAL;
                }
                *close = '\0';
                if (close[1] != '\0') {
                        if (close[1] != ':' || parse_port(close + 2, &e.port, &why) < 0) {
                                *ret_why = why ? why : "expected ':port' after ']'";
                                return -EINVAL;
                        }
                }
                if (inet_pton(AF_INET6, buf + 1, &e.v6) != 1) {
                        *ret_why = "not a valid IPv6 address";
                        return -EINVAL;
                }
                e.kind = SBX_NET_IPV6;
                *ret = e;
                return 0;
        }

        colon = strchr(buf, ':');
        if (colon) {
                if (strchr(colon + 1, ':')) {
                        *ret_why = "IPv6 literals must be written in brackets, e.g. [2001:db8::1]:443";
                        return -EINVAL;
                }
                *colon = '\0';
                if (parse_port(colon + 1, &e.port, &why) < 0) {
                        *ret_why = why;
                        return -EINVAL;
                }
        }

        if (inet_pton(AF_INET, buf, &e.v4) == 1) {
                e.kind = SBX_NET_IPV4;
                *ret = e;
                return 0;
        }
        const char *host = buf;
        e.kind = SBX_NET_HOST;
        if (startswith(buf, "*.")) {
                host = buf + 2;
                e.kind = SBX_NET_WILDCARD;
        } else if (strchr(buf, '*')) {
                *ret_why = "a wildcard must be a leading '*.' followed by a domain";
                return -EINVAL;
        }
        /* Digits-and-dots that inet_pton refused (e.g. 999.1.1.1, 1.2.3) are no host names either. */
        if (*host && strspn(host, "0123456789.") == strlen(host)) {
                *ret_why = "not a valid IPv4 address";
                return -EINVAL;
        }
        if (!sbx_hostname_valid(host)) {
                *ret_why = "not a valid host name";
                return -EINVAL;
        }
        snprintf(e.host, sizeof(e.host), "%s", host);
        lower(e.host);
        *ret = e;
        return 0;
}

bool sbx_net_entry_matches_host(const SbxNetEntry *e, const char *host, uint16_t port)
{
        char h[SBX_HOSTNAME_MAX + 1];
        size_t n, l;

        if (e->port != 0 && e->port != port)
                return false;
        if (e->kind != SBX_NET_HOST && e->kind != SBX_NET_WILDCARD)
                return false;
        n = strlen(host);
        if (n > SBX_HOSTNAME_MAX)
                return false;
        memcpy(h, host, n + 1);
        /* A fully qualified name may end with a dot. */
        if (n > 0 && h[n - 1] == '.')
                h[--n] = '\0';
        lower(h);
        if (e->kind == SBX_NET_HOST)
                return strcmp(h, e->host) == 0;
        /* "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com". */
        l = strlen(e->host);
        return n > l + 1 && h[n - l - 1] == '.' && strcmp(h + n - l, e->host) == 0;
}

int sbx_secret_host_parse(const char *s, SbxNetEntry *ret, const char **ret_why)
{
        SbxNetEntry e;
        int r = sbx_net_entry_parse(s, &e, ret_why);
        if (r < 0)
                return r;
        if (e.kind != SBX_NET_HOST && e.kind != SBX_NET_WILDCARD) {
                *ret_why = "secret hosts must be host names or '*.' wildcards (TLS needs a name)";
                return -EINVAL;
        }
        if (e.port != 0) {
                *ret_why = "secret hosts take no port";
                return -EINVAL;
        }
        *ret = e;
        return 0;
}
