/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/agent-vmm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "common/base/string-util.h"

const AgentVmmDriver *agent_vmm_find(const char *name)
{
        if (streq(name, agent_vmm_qemu.name))
                return &agent_vmm_qemu;
        if (streq(name, agent_vmm_cloud_hypervisor.name))
                return &agent_vmm_cloud_hypervisor;
        return NULL;
}

int agent_vmm_cmdline(const AgentVmmSpec *s, const char *extra, char **ret)
{
        char tsc[80] = "";

        /* Under TCG the guest cannot calibrate its TSC on microvm and hangs in early boot without the
         * host's frequency (about 60% of boots); under KVM kvmclock supplies it. */
        /* Not "tsc=reliable", although without it a TCG guest finds its vCPUs' TSCs unsynchronized
         * and keeps the jiffies clocksource (4 ms resolution): with it the kernel marks sched_clock
         * stable after SMP start-up, patching a static key under the other vCPU's feet, and QEMU's
         * multi-threaded TCG crashed on that patch in about 1 of 40 boots under load (int3 in
         * sched_clock_idle_wakeup_event). TCG now runs single-threaded, which removes that class of
         * crash (agent-vmm-qemu.c), but that rate was not reproduced since, so it stays off by
         * default. KVM guests use kvm-clock and are not concerned. */
        if (!s->kvm && s->tsc_khz)
                snprintf(tsc, sizeof(tsc), " tsc_early_khz=%llu", (unsigned long long)s->tsc_khz);
        if (asprintf(ret, "console=ttyS0 quiet reboot=t panic=-1 random.trust_cpu=on%s%s%s%s%s", tsc,
                     extra ? " " : "", strempty(extra), s->cmdline_extra ? " " : "",
                     strempty(s->cmdline_extra)) < 0)
                return -ENOMEM;
        return 0;
}

uint64_t agent_vmm_measure_tsc_khz(void)
{
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC_RAW, &a);
        uint64_t t0 = __rdtsc();
        usleep(100000);
        uint64_t t1 = __rdtsc();
        clock_gettime(CLOCK_MONOTONIC_RAW, &b);
        double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
        return (uint64_t)((double)(t1 - t0) / ns * 1e6);
}
