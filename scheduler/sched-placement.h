/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Placement, as a pure function: a snapshot of the nodes and a request in, a node (or the reason
 * there is none) out. No I/O, no clock, no global state: the same snapshot, request and seed give
 * the same answer, which is what the tests and the benchmark rely on.
 *
 * Filter: the request's region, a live lease, not cordoned or draining, and free memory, vCPUs and
 * slots for the request. Score: least allocated (the mean of the free fractions of memory, vCPUs
 * and slots after placing), ties broken at random under the seed, which spreads equal nodes.
 * When more than `sample` nodes fit, only `sample` of them, drawn at random, are scored ("best of
 * K"): placement stays O(K) in scoring however large the region.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct SchedNodeView {
        const char *name;
        const char *region;
        bool alive;
        bool cordoned;
        uint64_t memory_mb, used_memory_mb;
        uint32_t vcpus, used_vcpus;
        uint32_t slots, used_slots;
} SchedNodeView;

typedef struct SchedPlacementRequest {
        const char *region;
        uint64_t memory_mb;
        uint32_t vcpus;
        uint64_t seed;
        /* Best of this many fitting nodes; 0 means score them all. */
        unsigned sample;
} SchedPlacementRequest;

typedef struct SchedPlacementResult {
        /* Index of the chosen node in the snapshot, or -1. */
        int index;
        /* Nodes in the region with a live lease. */
        unsigned in_region;
        /* Of those, how many are cordoned or draining. */
        unsigned cordoned;
        /* Of those, how many lack memory, vCPUs or slots for the request. */
        unsigned full;
        /* Nodes that fit. */
        unsigned fitting;
} SchedPlacementResult;

/* Returns 0 with ret->index >= 0, or -SBX_E_NO_CAPACITY with the counts filled in (for the message). */
int sched_place(const SchedNodeView *nodes, size_t n, const SchedPlacementRequest *req,
                SchedPlacementResult *ret);
