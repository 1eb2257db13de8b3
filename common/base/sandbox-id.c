/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base/sandbox-id.h"

#include <errno.h>
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
        for (int i = 0; i < SBX_SANDBOX_ID_SUFFIX; i++)
                buf[8 + i] = alphabet[sbx_random_below(sizeof(alphabet) - 1)];
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
