/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Time in microseconds (usec_t), clocks, and strict duration parsing ("1h30m", "250ms", "2s"). */

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef uint64_t usec_t;

#define USEC_INFINITY   ((usec_t)UINT64_MAX)
#define NSEC_PER_USEC   ((uint64_t)1000ULL)
#define USEC_PER_MSEC   ((usec_t)1000ULL)
#define USEC_PER_SEC    ((usec_t)1000000ULL)
#define USEC_PER_MINUTE (60ULL * USEC_PER_SEC)
#define USEC_PER_HOUR   (60ULL * USEC_PER_MINUTE)
#define USEC_PER_DAY    (24ULL * USEC_PER_HOUR)

/* The current time of `clock` in microseconds. */
usec_t sbx_now(clockid_t clock);

static inline usec_t sbx_now_monotonic(void)
{
        return sbx_now(CLOCK_MONOTONIC);
}

static inline usec_t sbx_now_realtime(void)
{
        return sbx_now(CLOCK_REALTIME);
}

/*
 * Parses a duration made of one or more <integer><unit> parts, units us, ms, s, m, h, d; for example
 * "90s", "1h30m", "250ms". No sign, no spaces, no bare numbers. -EINVAL on bad syntax, -ERANGE on
 * overflow. *ret_usec is written only on success.
 */
int sbx_parse_duration(const char *s, usec_t *ret_usec);

/* Formats a duration compactly ("1h30m", "250ms", "0s") into buf; returns buf. */
#define SBX_DURATION_MAX 32
char *sbx_format_duration(char *buf, size_t n, usec_t usec);

/* Formats a realtime timestamp as RFC 3339 UTC with milliseconds ("2026-11-27T17:06:09.123Z"). */
#define SBX_TIMESTAMP_MAX 32
char *sbx_format_timestamp(char *buf, size_t n, usec_t realtime_usec);

/* Converts microseconds to milliseconds, rounding up so a non-zero duration never becomes 0. */
static inline uint64_t sbx_usec_to_msec_ceil(usec_t u)
{
        return (u + USEC_PER_MSEC - 1) / USEC_PER_MSEC;
}
