/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * VMM drivers behind one vtable, chosen by name at start-up: "qemu" (QEMU microvm, KVM or TCG)
 * and "cloud-hypervisor" (its REST API). The sandbox code spawns the VMM through the jailer with
 * the command a driver builds, lets the driver configure it (Cloud Hypervisor boots through its
 * API), and reaches the guest through the channel endpoint the driver names.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agent.h"

/* The fd number the VMM finds its tap on, when the driver asks for one (AgentVmmDriver.tap_fd). */
#define AGENT_VMM_TAP_FD 3

typedef struct AgentVmmSpec {
        /* The sandbox's directory: the VMM's sockets and files live here. */
        const char *dir;
        const AgentImage *image;
        /* The sandbox's writable disk. */
        const char *data_disk;
        uint32_t memory_mb;
        uint32_t vcpus;
        const AgentNet *net;
        bool kvm;
        /* Host TSC frequency, for TCG guests (0 under KVM). */
        uint64_t tsc_khz;
        /* Appended to the kernel command line (the guest-cmdline-extra setting), or NULL. */
        const char *cmdline_extra;
} AgentVmmSpec;

struct AgentVmmDriver {
        const char *name;
        /* The VMM command line (malloc'ed, NULL-terminated), run inside the jail. */
        int (*command)(Agent *a, const AgentVmmSpec *s, char ***ret_argv);
        /* Where the guest channel is reached once the VMM runs: a unix socket, plus the vsock port
         * to CONNECT to (0: the socket is the channel itself). */
        void (*channel)(const AgentVmmSpec *s, char *path, size_t n, int *ret_vsock_port);
        /* Called after the process started; drivers that boot through an API do it here. `done`
         * always runs (later), with 0 or an error. NULL: nothing to do. */
        int (*configure)(Agent *a, const AgentVmmSpec *s, void (*done)(int error, void *userdata),
                         void *userdata);
        /* Optional: the VMM's own account of why `configure` failed (Cloud Hypervisor: the request and
         * the API's answer), malloc'ed in *ret for the log line that reports the error; -ENODATA when
         * there is none. The account lives in the sandbox directory: ask from `done`, before the
         * directory is removed. NULL: the driver keeps no account. */
        int (*configure_error)(const AgentVmmSpec *s, char **ret);
        /* The VMM takes the tap as an open fd (AGENT_VMM_TAP_FD) rather than by name. */
        bool tap_fd;
        /* The block devices as the guest names them (Config.base_device, Config.data_device). */
        const char *base_device;
        const char *data_device;
};

extern const AgentVmmDriver agent_vmm_qemu;
extern const AgentVmmDriver agent_vmm_cloud_hypervisor;

/* The driver called `name`, or NULL. */
const AgentVmmDriver *agent_vmm_find(const char *name);

/* The host's TSC frequency in kHz, measured over 100 ms (TCG guests need it on their command line). */
uint64_t agent_vmm_measure_tsc_khz(void);

/* The kernel command line for a guest (malloc'ed). */
int agent_vmm_cmdline(const AgentVmmSpec *s, const char *extra, char **ret);
