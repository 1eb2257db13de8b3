/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Fills p with n bytes from the kernel's CSPRNG (getrandom); blocks only before the pool is seeded. */
int sbx_random_bytes(void *p, size_t n);

/* A uniformly distributed random number in [0, bound) (bound > 0), from the CSPRNG. */
uint64_t sbx_random_below(uint64_t bound);
