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

typedef enum Fit {
        FIT_ELSEWHERE, /* another region, or no live lease */
        FIT_CORDONED,
        FIT_FULL,
        FIT_BUSY,
        FIT_OK,
} Fit;

static Fit classify(const SchedNodeView *v, const SchedPlacementRequest *req)
{
        if (!v->alive || !v->region || strcmp(v->region, req->region) != 0)
                return FIT_ELSEWHERE;
        if (v->cordoned)
                return FIT_CORDONED;
        if (!fits(v, req))
                return FIT_FULL;
        return v->busy ? FIT_BUSY : FIT_OK;
}

static void count(SchedPlacementResult *res, Fit f)
{
        if (f == FIT_ELSEWHERE)
                return;
        res->in_region++;
        if (f == FIT_CORDONED)
                res->cordoned++;
        else if (f == FIT_FULL)
                res->full++;
        else
                res->fitting++;
}

/* The best so far: the highest score, ties broken by a random draw so that equal nodes share. */
typedef struct Best {
        int index;
        double score;
        uint64_t tie;
} Best;

static void consider(Best *b, size_t i, const SchedNodeView *v, const SchedPlacementRequest *req,
                     uint64_t *rng)
{
        double sc = score(v, req);
        uint64_t tie = next_random(rng);
        if (b->index < 0 || sc > b->score + 1e-12 || (sc > b->score - 1e-12 && tie > b->tie))
                *b = (Best){ .index = (int)i, .score = sc, .tie = tie };
}

/*
 * Large regions: draw random nodes (with replacement) until `sample` of them fit and are not busy.
 * Returns false when that takes too many draws (a region mostly full, cordoned or busy), and the
 * caller then looks at every node.
 */
static bool place_sampled(size_t n, SchedNodeViewFn view, void *userdata, const SchedPlacementRequest *req,
                          SchedPlacementResult *res)
{
        uint64_t rng = req->seed;
        unsigned taken = 0, draws = 0, max_draws = 4 * req->sample;
        Best best = { .index = -1 };

        while (taken < req->sample && draws < max_draws) {
                size_t i = (size_t)(next_random(&rng) % n);
                SchedNodeView v;
                draws++;
                view(i, &v, userdata);
                Fit f = classify(&v, req);
                count(res, f);
                if (f != FIT_OK)
                        continue;
                taken++;
                consider(&best, i, &v, req, &rng);
        }
        if (taken < req->sample)
                return false;
        res->index = best.index;
        return true;
}

int sched_place_among(size_t n, SchedNodeViewFn view, void *userdata, const SchedPlacementRequest *req,
                      SchedPlacementResult *ret)
{
        SchedPlacementResult res = { .index = -1 };
        uint64_t rng = req->seed;
        unsigned idle = 0;
        Best best = { .index = -1 };

        /* Drawing pays only when the region is much larger than the sample. */
        if (req->sample > 0 && n > 2 * (size_t)req->sample) {
                if (place_sampled(n, view, userdata, req, &res)) {
                        *ret = res;
                        return 0;
                }
                res = (SchedPlacementResult){ .index = -1 };
        }

        /* First pass: count, so the sampling probability is known (reservoir-free and O(n)). */
        for (size_t i = 0; i < n; i++) {
                SchedNodeView v;
                view(i, &v, userdata);
                Fit f = classify(&v, req);
                count(&res, f);
                idle += f == FIT_OK;
        }
        if (res.fitting == 0) {
                *ret = res;
                return -SBX_E_NO_CAPACITY;
        }

        /* Second pass: score every candidate, or a random subset of about `sample` of them. The
         * candidates are the fitting nodes that are not busy, or all fitting ones if every one is. */
        unsigned pool = idle > 0 ? idle : res.fitting;
        unsigned want = req->sample && req->sample < pool ? req->sample : pool;
        unsigned left = pool, taken = 0;
        for (size_t i = 0; i < n && taken < want; i++) {
                SchedNodeView v;
                view(i, &v, userdata);
                Fit f = classify(&v, req);
                if (f != FIT_OK && !(f == FIT_BUSY && idle == 0))
                        continue;
                /* Selection sampling: take this node with probability (want - taken) / left. */
                bool take = want == pool || next_random(&rng) % left < want - taken;
                left--;
                if (!take)
                        continue;
                taken++;
                consider(&best, i, &v, req, &rng);
        }
        res.index = best.index;
        *ret = res;
        return 0;
}

static void view_array(size_t i, SchedNodeView *out, void *userdata)
{
        *out = ((const SchedNodeView *)userdata)[i];
}

int sched_place(const SchedNodeView *nodes, size_t n, const SchedPlacementRequest *req,
                SchedPlacementResult *ret)
{
        return sched_place_among(n, view_array, (void *)nodes, req, ret);
}
