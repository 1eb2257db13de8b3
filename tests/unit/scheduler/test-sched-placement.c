/* SPDX-License-Identifier: Apache-2.0 */
/* scheduler/sched-placement.c: pure placement — filters, scoring, spreading, determinism, sampling. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/base/error.h"
#include "scheduler/sched-placement.h"

static SchedNodeView node(const char *name, const char *region, uint64_t mem, uint64_t used_mem,
                          uint32_t slots, uint32_t used_slots)
{
        return (SchedNodeView){ .name = name,
                                .region = region,
                                .alive = true,
                                .memory_mb = mem,
                                .used_memory_mb = used_mem,
                                .vcpus = 16,
                                .used_vcpus = 0,
                                .slots = slots,
                                .used_slots = used_slots };
}

Test(placement, filters_region_lease_cordon_and_capacity)
{
        SchedNodeView n[] = {
                node("ord-1", "ord", 16384, 0, 8, 0),        node("ams-dead", "ams", 16384, 0, 8, 0),
                node("ams-cordoned", "ams", 16384, 0, 8, 0), node("ams-full", "ams", 4096, 3000, 8, 0),
                node("ams-noslots", "ams", 16384, 0, 2, 2),  node("ams-ok", "ams", 16384, 8000, 8, 4),
        };
        n[1].alive = false;
        n[2].cordoned = true;
        SchedPlacementRequest req = { .region = "ams", .memory_mb = 1280, .vcpus = 2, .seed = 1 };
        SchedPlacementResult res;
        cr_assert_eq(sched_place(n, 6, &req, &res), 0);
        cr_assert_str_eq(n[res.index].name, "ams-ok");
        cr_assert_eq(res.in_region, 4, "the dead node does not count");
        cr_assert_eq(res.cordoned, 1);
        cr_assert_eq(res.full, 2);
        cr_assert_eq(res.fitting, 1);

        n[5].used_memory_mb = 16000;
        cr_assert_eq(sched_place(n, 6, &req, &res), -SBX_E_NO_CAPACITY);
        cr_assert_eq(res.index, -1);
        cr_assert_eq(res.full, 3);
        req.region = "xyz";
        cr_assert_eq(sched_place(n, 6, &req, &res), -SBX_E_NO_CAPACITY);
        cr_assert_eq(res.in_region, 0);
}

Test(placement, least_allocated_wins)
{
        SchedNodeView n[] = {
                node("busy", "ams", 16384, 12000, 8, 6),
                node("idle", "ams", 16384, 0, 8, 0),
                node("half", "ams", 16384, 8192, 8, 4),
        };
        SchedPlacementRequest req = { .region = "ams", .memory_mb = 1280, .vcpus = 2, .seed = 7 };
        SchedPlacementResult res;
        cr_assert_eq(sched_place(n, 3, &req, &res), 0);
        cr_assert_str_eq(n[res.index].name, "idle");
}

Test(placement, deterministic_under_a_seed_and_spreads_ties)
{
        SchedNodeView n[10];
        char names[10][8];
        unsigned hits[10] = { 0 };
        for (int i = 0; i < 10; i++) {
                snprintf(names[i], sizeof(names[i]), "n%d", i);
                n[i] = node(names[i], "ams", 16384, 0, 8, 0);
        }
        SchedPlacementRequest req = { .region = "ams", .memory_mb = 1280, .vcpus = 2 };
        SchedPlacementResult a, b;
        for (uint64_t seed = 0; seed < 1000; seed++) {
                req.seed = seed;
                cr_assert_eq(sched_place(n, 10, &req, &a), 0);
                cr_assert_eq(sched_place(n, 10, &req, &b), 0);
                cr_assert_eq(a.index, b.index, "same seed, same answer");
                hits[a.index]++;
        }
        /* Equal nodes: every one gets a fair share (about 100 of 1000). */
        for (int i = 0; i < 10; i++)
                cr_assert(hits[i] > 50 && hits[i] < 160, "node %d chosen %u times of 1000", i, hits[i]);
}

Test(placement, best_of_k_sampling_scores_only_k_and_stays_good)
{
        enum { N = 1000 };
        static SchedNodeView n[N];
        static char names[N][8];
        for (int i = 0; i < N; i++) {
                snprintf(names[i], sizeof(names[i]), "n%d", i);
                /* Usage rises with the index: low indices are emptier. */
                n[i] = node(names[i], "ams", 16384, (uint64_t)i * 12, 8, 0);
        }
        SchedPlacementRequest req = { .region = "ams", .memory_mb = 1280, .vcpus = 2, .sample = 16 };
        SchedPlacementResult res;
        double sum = 0;
        for (uint64_t seed = 0; seed < 200; seed++) {
                req.seed = seed;
                cr_assert_eq(sched_place(n, N, &req, &res), 0);
                /* Sampled: the counts cover the nodes drawn, not the region. */
                cr_assert_geq(res.fitting, 16);
                cr_assert_lt(res.fitting, N);
                sum += res.index;
        }
        /* The best of 16 random nodes sits around the 6th percentile; a random pick would average 500. */
        cr_assert_lt(sum / 200, 150, "mean chosen index %.1f: sampling does not prefer emptier nodes",
                     sum / 200);
}

/* A snapshot read through a function, counting how many node views placement asks for. */
typedef struct Counted {
        const SchedNodeView *nodes;
        unsigned views;
} Counted;

static void counted_view(size_t i, SchedNodeView *out, void *userdata)
{
        Counted *c = userdata;
        c->views++;
        *out = c->nodes[i];
}

Test(placement, large_region_looks_at_about_k_nodes_not_all)
{
        enum { N = 5000 };
        static SchedNodeView n[N];
        static char names[N][8];
        for (int i = 0; i < N; i++) {
                snprintf(names[i], sizeof(names[i]), "n%d", i);
                n[i] = node(names[i], "ams", 16384, 0, 8, 0);
        }
        SchedPlacementRequest req = { .region = "ams", .memory_mb = 1280, .vcpus = 2, .sample = 16 };
        SchedPlacementResult res;
        for (uint64_t seed = 0; seed < 50; seed++) {
                Counted c = { .nodes = n };
                req.seed = seed;
                cr_assert_eq(sched_place_among(N, counted_view, &c, &req, &res), 0);
                cr_assert_geq(res.index, 0);
                cr_assert_leq(c.views, 4 * 16, "placement looked at %u of %d nodes", c.views, N);
        }
}

Test(placement, full_large_region_falls_back_to_a_scan_with_exact_counts)
{
        enum { N = 1000 };
        static SchedNodeView n[N];
        static char names[N][8];
        for (int i = 0; i < N; i++) {
                snprintf(names[i], sizeof(names[i]), "n%d", i);
                n[i] = node(names[i], "ams", 16384, 16000, 8, 0);
        }
        n[10].cordoned = true;
        SchedPlacementRequest req = {
                .region = "ams", .memory_mb = 1280, .vcpus = 2, .sample = 16, .seed = 3
        };
        SchedPlacementResult res;
        cr_assert_eq(sched_place(n, N, &req, &res), -SBX_E_NO_CAPACITY);
        cr_assert_eq(res.in_region, N);
        cr_assert_eq(res.cordoned, 1);
        cr_assert_eq(res.full, N - 1);
        cr_assert_eq(res.fitting, 0);

        /* One node with room among 999 full ones: found by the scan that follows the draws. */
        n[777].used_memory_mb = 0;
        cr_assert_eq(sched_place(n, N, &req, &res), 0);
        cr_assert_str_eq(n[res.index].name, "n777");
}

Test(placement, busy_nodes_are_chosen_only_when_nothing_else_fits)
{
        SchedNodeView n[] = {
                node("idle-but-fuller", "ams", 16384, 8000, 8, 4),
                node("busy-empty", "ams", 16384, 0, 8, 0),
                node("busy-empty-2", "ams", 16384, 0, 8, 0),
        };
        n[1].busy = n[2].busy = true;
        SchedPlacementRequest req = { .region = "ams", .memory_mb = 1280, .vcpus = 2 };
        SchedPlacementResult res;
        for (uint64_t seed = 0; seed < 100; seed++) {
                req.seed = seed;
                cr_assert_eq(sched_place(n, 3, &req, &res), 0);
                cr_assert_str_eq(n[res.index].name, "idle-but-fuller",
                                 "a node with a placement in flight was preferred");
        }
        /* Every fitting node busy: placement still answers (the commit's compare decides). */
        n[0].used_memory_mb = 16000;
        cr_assert_eq(sched_place(n, 3, &req, &res), 0);
        cr_assert(res.index == 1 || res.index == 2);

        /* The same on the sampled path: 1000 nodes, the emptier half busy. */
        enum { N = 1000 };
        static SchedNodeView m[N];
        static char names[N][8];
        for (int i = 0; i < N; i++) {
                snprintf(names[i], sizeof(names[i]), "n%d", i);
                m[i] = node(names[i], "ams", 16384, i < N / 2 ? 0 : 4000, 8, 0);
                m[i].busy = i < N / 2;
        }
        req.sample = 16;
        for (uint64_t seed = 0; seed < 100; seed++) {
                req.seed = seed;
                cr_assert_eq(sched_place(m, N, &req, &res), 0);
                cr_assert_geq(res.index, N / 2, "seed %llu chose busy node %d", (unsigned long long)seed,
                              res.index);
        }
}
