/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base/sandbox-id.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/base/random-util.h"

static const char alphabet[] = "0123456789abcdefghjkmnpqrstuvwxyz";

bool sbx_region_valid(const char *region)
{
        if (!region || strlen(region) != 3)
                return false;
        for (int i = 0; i < 3; i++)
                if (region[i] < 'a' || region[i] > 'z')
                        return false;
        return true;
}

int sbx_sandbox_id_new(const char *region, char *buf, size_t n)
{
        if (!sbx_region_valid(region) || n < SBX_SANDBOX_ID_LEN + 1)
                return -EINVAL;
        memcpy(buf, "sbx_", 4);
        memcpy(buf + 4, region, 3);
        buf[7] = '_';
        /* One getrandom call per id rather than one per character: bytes at or above the largest
         * multiple of the alphabet's size are dropped, so every character stays equally likely. */
        const unsigned size = sizeof(alphabet) - 1, limit = 256 - 256 % size;
        uint8_t pool[2 * SBX_SANDBOX_ID_SUFFIX];
        size_t used = sizeof(pool);
        for (int i = 0; i < SBX_SANDBOX_ID_SUFFIX;) {
                if (used == sizeof(pool)) {
                        int r = sbx_random_bytes(pool, sizeof(pool));
                        if (r < 0)
                                return r;
                        used = 0;
                }
                uint8_t b = pool[used++];
                if (b < limit)
                        buf[8 + i++] = alphabet[b % size];
        }
        buf[SBX_SANDBOX_ID_LEN] = '\0';
        return 0;
}

bool sbx_sandbox_id_valid(const char *id)
{
        if (!id || strlen(id) != SBX_SANDBOX_ID_LEN || strncmp(id, "sbx_", 4) != 0 || id[7] != '_')
                return false;
        char region[4] = { id[4], id[5], id[6], 0 };
        if (!sbx_region_valid(region))
                return false;
        for (int i = 8; i < SBX_SANDBOX_ID_LEN; i++)
                if (!id[i] || !strchr(alphabet, id[i]))
                        return false;
        return true;
}

int sbx_sandbox_id_region(const char *id, char region[4])
{
        if (!sbx_sandbox_id_valid(id))
                return -EINVAL;
        memcpy(region, id + 4, 3);
        region[3] = '\0';
        return 0;
}
