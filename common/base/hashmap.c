/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base/hashmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/macro.h"
#include "common/base/random-util.h"

typedef struct Entry {
        struct Entry *next;
        uint64_t hash;
        void *value;
        char key[];
} Entry;

struct SbxHashmap {
        Entry **buckets;
        size_t n_buckets;
        size_t size;
        uint64_t seed;
};

/* FNV-1a over the key, seeded and finished with a 64-bit mixer so low bits spread well. */
static uint64_t hash_key(const SbxHashmap *h, const char *key)
{
        uint64_t x = 0xcbf29ce484222325ULL ^ h->seed;
        for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
                x ^= *p;
                x *= 0x100000001b3ULL;
        }
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 33;
        return x;
}

/* Every map gets its own seed, unpredictable from outside the process: a process-wide random key
 * (one getrandom call) mixed with a counter (splitmix64). Maps are made per request in the daemons,
 * and a system call each showed in their profiles. */
static uint64_t seed_key;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void seed_init(void)
{
        if (sbx_random_bytes(&seed_key, sizeof(seed_key)) < 0)
                seed_key = (uint64_t)(uintptr_t)&seed_key ^ (uint64_t)getpid() << 32;
}

static uint64_t next_seed(void)
{
        static uint64_t counter;
        pthread_once(&seed_once, seed_init);
        uint64_t z = seed_key + __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) * 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

int sbx_hashmap_new(SbxHashmap **ret)
{
        SbxHashmap *h = new0(SbxHashmap, 1);
        if (!h)
                return -ENOMEM;
        h->n_buckets = 16;
        h->buckets = new0(Entry *, h->n_buckets);
        if (!h->buckets) {
                free(h);
                return -ENOMEM;
        }
        h->seed = next_seed();
        *ret = h;
        return 0;
}

SbxHashmap *sbx_hashmap_free(SbxHashmap *h, void (*free_value)(void *value))
{
        if (!h)
                return NULL;
        for (size_t i = 0; i < h->n_buckets; i++)
                for (Entry *e = h->buckets[i], *next; e; e = next) {
                        next = e->next;
                        if (free_value)
                                free_value(e->value);
                        free(e);
                }
        free(h->buckets);
        free(h);
        return NULL;
}

static Entry **find(const SbxHashmap *h, const char *key, uint64_t hash)
{
        Entry **p = &h->buckets[hash & (h->n_buckets - 1)];
        for (; *p; p = &(*p)->next)
                if ((*p)->hash == hash && strcmp((*p)->key, key) == 0)
                        return p;
        return p;
}

static void grow(SbxHashmap *h)
{
        size_t n = h->n_buckets * 2;
        Entry **b = new0(Entry *, n);
        if (!b)
                return; /* keep working with longer chains */
        for (size_t i = 0; i < h->n_buckets; i++)
                for (Entry *e = h->buckets[i], *next; e; e = next) {
                        next = e->next;
                        e->next = b[e->hash & (n - 1)];
                        b[e->hash & (n - 1)] = e;
                }
        free(h->buckets);
        h->buckets = b;
        h->n_buckets = n;
}

int sbx_hashmap_put(SbxHashmap *h, const char *key, void *value, void **ret_old)
{
        uint64_t hash = hash_key(h, key);
        Entry **p = find(h, key, hash);

        if (*p) {
                if (ret_old)
                        *ret_old = (*p)->value;
                (*p)->value = value;
                return 0;
        }
        size_t l = strlen(key);
        Entry *e = malloc(sizeof(Entry) + l + 1);
        if (!e)
                return -ENOMEM;
        memcpy(e->key, key, l + 1);
        e->hash = hash;
        e->value = value;
        e->next = NULL;
        *p = e;
        h->size++;
        if (ret_old)
                *ret_old = NULL;
        if (h->size > h->n_buckets)
                grow(h);
        return 0;
}

void *sbx_hashmap_get(const SbxHashmap *h, const char *key)
{
        Entry **p = find(h, key, hash_key(h, key));
        return *p ? (*p)->value : NULL;
}

void *sbx_hashmap_remove(SbxHashmap *h, const char *key)
{
        Entry **p = find(h, key, hash_key(h, key));
        Entry *e = *p;
        void *v;

        if (!e)
                return NULL;
        *p = e->next;
        v = e->value;
        free(e);
        h->size--;
        return v;
}

size_t sbx_hashmap_size(const SbxHashmap *h)
{
        return h->size;
}

bool sbx_hashmap_next(const SbxHashmap *h, size_t *state, const char **ret_key, void **ret_value)
{
        /* state = bucket index << 32 | position in the chain. */
        size_t bucket = *state >> 32, pos = *state & 0xffffffff;

        for (; bucket < h->n_buckets; bucket++, pos = 0) {
                Entry *e = h->buckets[bucket];
                for (size_t i = 0; e && i < pos; i++)
                        e = e->next;
                if (e) {
                        if (ret_key)
                                *ret_key = e->key;
                        if (ret_value)
                                *ret_value = e->value;
                        *state = bucket << 32 | (pos + 1);
                        return true;
                }
        }
        *state = bucket << 32;
        return false;
}
