/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The value encodings of the @deno/sandbox wire protocol (deno-sandbox-protocol.md §2.5), as
 * jansson values: bytes as base64, dates as ISO-8601 strings with milliseconds (what JavaScript's
 * Date.toISOString() writes), text that may not be valid UTF-8 made valid the way TextDecoder does
 * it, and the 21-field FileInfo. Pure functions; no I/O.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/sbx/v1/data.pb-c.h"

/* Longest ISO string gw_iso_format() writes, with its NUL ("+275760-09-13T00:00:00.000Z"). */
#define GW_ISO_MAX 48

/* Writes the instant `ms` (Unix time in milliseconds) as JavaScript's toISOString() does:
 * "YYYY-MM-DDTHH:MM:SS.mmmZ", years outside 0..9999 as a signed six-digit year. -ERANGE beyond
 * JavaScript's date range (±8.64e15 ms). */
int gw_iso_format(int64_t ms, char buf[GW_ISO_MAX]);

/* Parses what gw_iso_format() writes (the milliseconds may be omitted) into Unix milliseconds.
 * -EINVAL for anything else, including impossible dates such as February 30th. */
int gw_iso_parse(const char *s, int64_t *ret_ms);

/* Nanoseconds since the epoch to milliseconds, rounding toward negative infinity as the kernel's
 * timespec does. */
int64_t gw_ns_to_ms(int64_t ns);

/* A JSON string of `n` bytes that may not be valid UTF-8: each maximal invalid subsequence becomes
 * U+FFFD, as the WHATWG decoder (TextDecoder, non-fatal) does. NULL only when memory runs out. */
json_t *gw_json_text(const void *p, size_t n);

/* Base64 (standard alphabet, padded) as a JSON string. NULL when memory runs out. */
json_t *gw_json_base64(const void *p, size_t n);

/* Decodes base64 leniently, as the SDK's client does: standard or URL-safe alphabet, with or
 * without padding. *ret is malloc'ed (NULL for empty input is never returned: an empty result is
 * a valid 1-byte allocation). -EINVAL for other characters or an impossible length. */
int gw_base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len);

/* The SDK's FileInfo: all 21 fields, none null (§1.4). Times that the file system does not record
 * (a zero birthtime) are given as the epoch. NULL when memory runs out. */
json_t *gw_file_info_json(const Sbx__V1__FileInfo *fi);

/* {name, isFile, isDirectory, isSymlink} for one directory entry. */
json_t *gw_dir_entry_json(const char *name, Sbx__V1__FileType type);
