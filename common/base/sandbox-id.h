/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Sandbox ids in the form the @deno/sandbox SDK requires: "sbx_<region>_<suffix>", where the region
 * is three lowercase letters and the suffix is 20 characters of [0-9a-hjkmnp-z] (no i, l, o).
 */

#include <stdbool.h>
#include <stddef.h>

#define SBX_SANDBOX_ID_LEN    (4 + 3 + 1 + 20)
#define SBX_SANDBOX_ID_SUFFIX 20

/* True for three lowercase ASCII letters. */
bool sbx_region_valid(const char *region);

/* A new random id for `region` into buf (at least SBX_SANDBOX_ID_LEN + 1 bytes). -EINVAL for a bad
 * region. */
int sbx_sandbox_id_new(const char *region, char *buf, size_t n);

/* True when `id` has exactly the SDK's form. */
bool sbx_sandbox_id_valid(const char *id);

/* Copies the region of a valid id into region (4 bytes); -EINVAL for an invalid id. */
int sbx_sandbox_id_region(const char *id, char region[4]);
