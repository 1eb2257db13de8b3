/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A hash map from strings to pointers. Keys are copied; values belong to the caller (or to the
 * free function given to sbx_hashmap_free). The hash is seeded per map from the CSPRNG, so keys
 * chosen by others cannot be made to collide on purpose. Not thread-safe.
 */

#include <stdbool.h>
#include <stddef.h>

typedef struct SbxHashmap SbxHashmap;

int sbx_hashmap_new(SbxHashmap **ret);
/* Frees the map; calls free_value (when not NULL) on every value. Accepts NULL; returns NULL. */
SbxHashmap *sbx_hashmap_free(SbxHashmap *h, void (*free_value)(void *value));

/* Inserts or replaces. The replaced value (or NULL) goes to *ret_old when not NULL. -ENOMEM leaves
 * the map unchanged. */
int sbx_hashmap_put(SbxHashmap *h, const char *key, void *value, void **ret_old);
void *sbx_hashmap_get(const SbxHashmap *h, const char *key);
/* Removes the key and returns its value (NULL when absent). */
void *sbx_hashmap_remove(SbxHashmap *h, const char *key);
size_t sbx_hashmap_size(const SbxHashmap *h);

/* Iterates in no particular order: start with *state = 0; returns false at the end. The map must
 * not be modified during an iteration (collect keys first, then remove). */
bool sbx_hashmap_next(const SbxHashmap *h, size_t *state, const char **ret_key, void **ret_value);
