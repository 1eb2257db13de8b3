/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Strict parsers for numbers, booleans and sizes. "Strict" means: the whole string must be consumed,
 * no leading or trailing spaces, no leading '+', decimal only. -EINVAL on bad syntax, -ERANGE when
 * the value does not fit. The out-parameter is written only on success.
 */

#include <stdbool.h>
#include <stdint.h>

int sbx_parse_int64(const char *s, int64_t *ret);
int sbx_parse_uint64(const char *s, uint64_t *ret);
int sbx_parse_uint32(const char *s, uint32_t *ret);

/* Like sbx_parse_int64 but also checks min <= value <= max (-ERANGE otherwise). */
int sbx_parse_int64_range(const char *s, int64_t min, int64_t max, int64_t *ret);

/* "true", "yes", "on", "1" / "false", "no", "off", "0" (case-insensitive). */
int sbx_parse_bool(const char *s, bool *ret);

/*
 * A byte size: an integer with an optional unit B, K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024) or
 * kB, MB, GB, TB (powers of 1000). "10GiB", "512M", "4096".
 */
int sbx_parse_size(const char *s, uint64_t *ret_bytes);
