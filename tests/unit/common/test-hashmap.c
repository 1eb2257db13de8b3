/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/base/hashmap.h"

Test(hashmap, put_get_replace_remove_iterate)
{
        SbxHashmap *h = NULL;
        void *old = (void *)1;
        char key[32];

        cr_assert_eq(sbx_hashmap_new(&h), 0);
        for (long i = 0; i < 5000; i++) {
                snprintf(key, sizeof(key), "k%ld", i);
                cr_assert_eq(sbx_hashmap_put(h, key, (void *)(i + 1), &old), 0);
                cr_assert_null(old);
        }
        cr_assert_eq(sbx_hashmap_size(h), 5000);
        cr_assert_eq(sbx_hashmap_get(h, "k4999"), (void *)5000);
        cr_assert_null(sbx_hashmap_get(h, "nope"));
        cr_assert_eq(sbx_hashmap_put(h, "k7", (void *)77, &old), 0);
        cr_assert_eq(old, (void *)8);
        cr_assert_eq(sbx_hashmap_size(h), 5000);
        cr_assert_eq(sbx_hashmap_remove(h, "k7"), (void *)77);
        cr_assert_null(sbx_hashmap_remove(h, "k7"));
        cr_assert_eq(sbx_hashmap_size(h), 4999);

        size_t state = 0, n = 0;
        long sum = 0;
        const char *k;
        void *v;
        while (sbx_hashmap_next(h, &state, &k, &v)) {
                n++;
                sum += (long)v;
        }
        cr_assert_eq(n, 4999);
        cr_assert_eq(sum, 5000L * 5001 / 2 - 8);
        sbx_hashmap_free(h, NULL);
}

Test(hashmap, free_values)
{
        SbxHashmap *h = NULL;
        cr_assert_eq(sbx_hashmap_new(&h), 0);
        for (int i = 0; i < 10; i++) {
                char key[8];
                snprintf(key, sizeof(key), "%d", i);
                sbx_hashmap_put(h, key, malloc(16), NULL);
        }
        sbx_hashmap_free(h, free); /* ASan proves nothing leaks */
}
