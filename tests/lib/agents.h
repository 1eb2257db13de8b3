/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Real sbx-agent processes for integration tests: each boots real microVMs (QEMU, TCG on machines
 * without usable KVM) from the image `make image` built. Tests that use them first move themselves
 * into a private network namespace (sbx_test_netns_enter), so that the agents' taps, the etcd and
 * scheduler ports and everything else live in a namespace that disappears with the test, and no
 * test traffic can reach the machine's real network.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tests/lib/cluster.h"

typedef struct SbxTestAgent {
        pid_t pid;
        int port;
        int metrics_port;
        unsigned index;
        char name[48];
        char region[8];
        char target[64];
        char dir[512];
        char log[600];
        /* Extra agent flags ("--slots=1", ...), NULL-terminated; set before start. */
        const char *const *args;
} SbxTestAgent;

/* Moves the calling process (a Criterion test worker) into a new network namespace with only a
 * loopback device, up. */
int sbx_test_netns_enter(void);

/* The image directory (build/image of the source tree); NULL with a message when `make image` has
 * not been run. */
const char *sbx_test_image_dir(void);

/* Starts agent `index` of region `region` against the cluster's etcd (again, after a stop: same
 * name, ports and state directory); waits until its node is registered. */
int sbx_test_agent_start(SbxTestCluster *c, SbxTestAgent *a, unsigned index, const char *region);
/* Sends `sig` and waits for the exit; -EIO when SIGTERM did not end it cleanly (exit status 0). */
int sbx_test_agent_stop(SbxTestAgent *a, int sig);

/* Looks for what an agent must not leave behind once its sandboxes ended: VMM processes, taps,
 * cgroups, sandbox directories. Returns how many it found and describes them in `report`. */
int sbx_test_agent_leftovers(const SbxTestAgent *a, char *report, size_t n);
/* Kills whatever sbx_test_agent_leftovers would find and removes the agent's directory. */
void sbx_test_agent_cleanup(SbxTestAgent *a);

/* The pid of the VMM of sandbox `id` (from its vmm.pid), or a negative error. */
pid_t sbx_test_agent_vmm_pid(const SbxTestAgent *a, const char *id);
/* Resident memory of process `pid` in KiB (VmRSS; VmHWM when `peak`), or a negative error. */
long sbx_test_rss_kib(pid_t pid, bool peak);
