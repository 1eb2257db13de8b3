/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/sched-placement.h"

#include <stdbool.h>
#include <string.h>

#include "common/base/error.h"

/* splitmix64: a tiny deterministic generator, good enough for sampling and tie-breaking. */
static uint64_t next_random(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static bool fits(const SchedNodeView *v, const SchedPlacementRequest *req)
{
        return v->used_memory_mb + req->memory_mb <= v->memory_mb &&
               v->used_vcpus + req->vcpus <= v->vcpus && v->used_slots + 1 <= v->slots;
}

/* The mean free fraction after placing: higher is emptier. */
static double score(const SchedNodeView *v, const SchedPlacementRequest *req)
{
        double m = v->memory_mb ? (double)(v->memory_mb - v->used_memory_mb - req->memory_mb) /
                                          (double)v->memory_mb
                                : 0;
        double c = v->vcpus ? (double)(v->vcpus - v->used_vcpus - req->vcpus) / (double)v->vcpus : 0;
        double s = v->slots ? (double)(v->slots - v->used_slots - 1) / (double)v->slots : 0;
        return (m + c + s) / 3.0;
}

int sched_place(const SchedNodeView *nodes, size_t n, const SchedPlacementRequest *req,
                SchedPlacementResult *ret)
{
        SchedPlacementResult res = { .index = -1 };
        uint64_t rng = req->seed;
        double best = -1;
        uint64_t best_tie = 0;

        /* First pass: count, so the sampling probability is known (reservoir-free and O(n)). */
        for (size_t i = 0; i < n; i++) {
                const SchedNodeView *v = &nodes[i];
                if (!v->alive || !v->region || strcmp(v->region, req->region) != 0)
                        continue;
                res.in_region++;
                if (v->cordoned)
                        res.cordoned++;
                else if (!fits(v, req))
                        res.full++;
                else
                        res.fitting++;
        }
        if (res.fitting == 0) {
                *ret = res;
                return -SBX_E_NO_CAPACITY;
        }

        /* Second pass: score every fitting node, or a random subset of about `sample` of them. */
        unsigned want = req->sample && req->sample < res.fitting ? req->sample : res.fitting;
        unsigned left = res.fitting, taken = 0;
        for (size_t i = 0; i < n && taken < want; i++) {
                const SchedNodeView *v = &nodes[i];
                if (!v->alive || v->cordoned || !v->region || strcmp(v->region, req->region) != 0 ||
                    !fits(v, req))
                        continue;
                /* Selection sampling: take this node with probability (want - taken) / left. */
                bool take = want == res.fitting || next_random(&rng) % left < want - taken;
                left--;
                if (!take)
                        continue;
                taken++;
                double sc = score(v, req);
                uint64_t tie = next_random(&rng);
                if (sc > best + 1e-12 || (sc > best - 1e-12 && tie > best_tie)) {
                        best = sc;
                        best_tie = tie;
                        res.index = (int)i;
                }
        }
        *ret = res;
        return 0;
}
