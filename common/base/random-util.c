/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base/random-util.h"

#include <errno.h>
#include <sys/random.h>

#include "common/base/macro.h"

int sbx_random_bytes(void *p, size_t n)
{
        uint8_t *b = p;
        while (n > 0) {
                ssize_t r = getrandom(b, n, 0);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                b += r;
                n -= (size_t)r;
        }
        return 0;
}

uint64_t sbx_random_below(uint64_t bound)
{
        /* Rejection sampling avoids the modulo bias of a plain `%`. */
        uint64_t limit = UINT64_MAX - UINT64_MAX % bound, v;
        do {
                if (sbx_random_bytes(&v, sizeof(v)) < 0)
                        return 0;
        } while (v >= limit);
        return v % bound;
}
