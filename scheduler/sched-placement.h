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
 * K"): placement stays O(K) in scoring however large the region, and — when the caller reads the
 * snapshot through a function (sched_place_among) — O(K) in nodes looked at too.
 *
 * A node marked `busy` (this replica has a placement on it in flight, so its usage is about to
 * change and a Txn deciding on the current value would lose its compare) is chosen only when no
 * other node fits.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct SchedNodeView {
        const char *name;
        const char *region;
        bool alive;
        bool cordoned;
        bool busy;
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
        /*
         * Exact when every node was looked at — always when none fits, so the counts can explain
         * why. When a large region was sampled they count only the nodes drawn.
         */
        /* Nodes in the region with a live lease. */
        unsigned in_region;
        /* Of those, how many are cordoned or draining. */
        unsigned cordoned;
        /* Of those, how many lack memory, vCPUs or slots for the request. */
        unsigned full;
        /* Nodes that fit. */
        unsigned fitting;
} SchedPlacementResult;

/* Fills the view of node i (0 <= i < n) of a snapshot; must give the same view for the same i
 * during one placement. */
typedef void (*SchedNodeViewFn)(size_t i, SchedNodeView *out, void *userdata);

/* Returns 0 with ret->index >= 0, or -SBX_E_NO_CAPACITY with the counts filled in (for the message). */
int sched_place(const SchedNodeView *nodes, size_t n, const SchedPlacementRequest *req,
                SchedPlacementResult *ret);
/* The same, reading node i through `view` only for the nodes it looks at. */
int sched_place_among(size_t n, SchedNodeViewFn view, void *userdata, const SchedPlacementRequest *req,
                      SchedPlacementResult *ret);
