/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Small string helpers: comparisons, NULL-terminated string vectors (strv), hex. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline bool streq(const char *a, const char *b)
{
        return strcmp(a, b) == 0;
}

static inline bool streq_ptr(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

static inline const char *strempty(const char *s)
{
        return s ? s : "";
}

static inline bool isempty(const char *s)
{
        return !s || !*s;
}

/* Returns a pointer past `prefix` in `s`, or NULL when s does not start with it. */
const char *startswith(const char *s, const char *prefix);
bool endswith(const char *s, const char *suffix);

/* Number of strings in a NULL-terminated vector (NULL counts as empty). */
size_t strv_length(char *const *l);

/* Appends a copy of `s` to *l (which may be NULL). -ENOMEM leaves *l unchanged. */
int strv_extend(char ***l, const char *s);

/* Splits `s` at every `sep`; empty items are dropped, items are trimmed of spaces. */
int strv_split(const char *s, char sep, char ***ret);

/* Joins with `sep` into a new string. */
int strv_join(char *const *l, const char *sep, char **ret);

/* Duplicates a vector. */
int strv_copy(char *const *l, char ***ret);

bool strv_contains(char *const *l, const char *s);

/* Lower-case hex of n bytes into a new string. */
int sbx_hex_encode(const void *p, size_t n, char **ret);

/* Replaces *dst with a copy of src (NULL allowed); -ENOMEM leaves *dst unchanged. */
int free_and_strdup(char **dst, const char *src);
