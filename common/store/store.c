/* SPDX-License-Identifier: Apache-2.0 */
#include "common/store/store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/time-util.h"

static const struct {
        const char *prefix;
        SbxKeyKind kind;
} prefixes[] = {
        { SBX_KEY_NODES, SBX_KEY_KIND_NODE },
        { SBX_KEY_NODECTL, SBX_KEY_KIND_NODECTL },
        { SBX_KEY_SANDBOXES, SBX_KEY_KIND_SANDBOX },
        { SBX_KEY_STATUS, SBX_KEY_KIND_STATUS },
        { SBX_KEY_ASSIGN, SBX_KEY_KIND_ASSIGN },
        { SBX_KEY_USAGE_ORGS, SBX_KEY_KIND_USAGE_ORG },
        { SBX_KEY_USAGE_NODES, SBX_KEY_KIND_USAGE_NODE },
        { SBX_KEY_ORGS, SBX_KEY_KIND_ORG },
        { SBX_KEY_TOKENS, SBX_KEY_KIND_TOKEN },
        { SBX_KEY_SECRETS, SBX_KEY_KIND_SECRET },
};

/* Copies one name component; fails on empty, too long, or embedded NUL or '/'. */
static int copy_name(const char *p, size_t n, char *out)
{
        if (n == 0 || n > SBX_KEY_NAME_MAX || memchr(p, '\0', n) || memchr(p, '/', n))
                return -EINVAL;
        memcpy(out, p, n);
        out[n] = '\0';
        return 0;
}

SbxKeyKind sbx_key_parse(const void *key, size_t len, char *a, char *b)
{
        const char *k = key;

        if (len == strlen(SBX_KEY_LEADER) && memcmp(k, SBX_KEY_LEADER, len) == 0)
                return SBX_KEY_KIND_LEADER;
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
                size_t pl = strlen(prefixes[i].prefix);
                if (len <= pl || memcmp(k, prefixes[i].prefix, pl) != 0)
                        continue;
                const char *rest = k + pl;
                size_t rl = len - pl;
                if (prefixes[i].kind == SBX_KEY_KIND_ASSIGN) {
                        const char *slash = memchr(rest, '/', rl);
                        if (!slash || copy_name(rest, (size_t)(slash - rest), a) < 0 ||
                            copy_name(slash + 1, rl - (size_t)(slash - rest) - 1, b) < 0)
                                return SBX_KEY_KIND_UNKNOWN;
                        return SBX_KEY_KIND_ASSIGN;
                }
                if (copy_name(rest, rl, a) < 0)
                        return SBX_KEY_KIND_UNKNOWN;
                return prefixes[i].kind;
        }
        return SBX_KEY_KIND_UNKNOWN;
}

int sbx_key_new(char **ret, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(ret, fmt, ap);
        va_end(ap);
        return r < 0 ? -ENOMEM : 0;
}

int sbx_store_pack(const ProtobufCMessage *m, uint8_t **ret, size_t *ret_len)
{
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *p = malloc(n ? n : 1);
        if (!p)
                return -ENOMEM;
        protobuf_c_message_pack(m, p);
        *ret = p;
        *ret_len = n;
        return 0;
}

int sbx_store_unpack(const ProtobufCMessageDescriptor *d, const void *p, size_t n, ProtobufCMessage **ret)
{
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, n, p);
        if (!m)
                return -EBADMSG;
        *ret = m;
        return 0;
}

int64_t sbx_now_ms(void)
{
        return (int64_t)(sbx_now_realtime() / USEC_PER_MSEC);
}
