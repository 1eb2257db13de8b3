/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The QEMU driver: -M microvm with direct kernel boot (PVH entry of the uncompressed kernel), no
 * firmware, no option ROMs; virtio-mmio devices for the two disks, the network and the channel (a
 * virtio-serial port named "sbx.0" behind a unix socket QEMU listens on); QMP on a second socket.
 * Under TCG the RTC stays on (rtc=off costs a second of boot) and the PIC and PIT are off; microvm
 * has no PCI bus, and "pci=off" spares the guest looking for one. QEMU's seccomp sandbox is on.
 *
 * TCG runs all of a guest's vCPUs on one host thread ("thread=single"). With a thread per vCPU,
 * QEMU 7.2 now and then let a vCPU trap on the int3 that Linux plants while it patches a static key
 * (text_poke_bp) when the patch was already complete, and the guest panicked in boot: in
 * sched_clock_idle_wakeup_event once the TSC was trusted, and in crng_make_state when the RNG became
 * ready just as init was exec'd (rare: twice in several hundred boots of the test suites). With one thread,
 * code that one vCPU rewrites under another is ordered as on a single CPU. Boot time measured the same (1.1
 * s a boot either way, 120 boots each); multi-threaded guest work gets one host core, and TCG is for
 * development machines anyway.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent-vmm.h"
#include "common/base/string-util.h"

static int qemu_command(Agent *a, const AgentVmmSpec *s, char ***ret)
{
        _cleanup_free_ char *cmdline = NULL;
        char **v = NULL;
        char buf[1024];
        int r;

        r = agent_vmm_cmdline(s, "pci=off", &cmdline);
        if (r < 0)
                return r;
#define ADD(x)                                      \
        do {                                        \
                if ((r = strv_extend(&v, (x))) < 0) \
                        goto fail;                  \
        } while (0)
#define ADDF(...)                                        \
        do {                                             \
                snprintf(buf, sizeof(buf), __VA_ARGS__); \
                ADD(buf);                                \
        } while (0)

        ADD(a->cfg.qemu_binary);
        ADD("-M");
        ADD(s->kvm ? "microvm,x-option-roms=off,isa-serial=on,rtc=off,pic=off,pit=off"
                   : "microvm,x-option-roms=off,isa-serial=on,pic=off,pit=off");
        ADD("-accel");
        ADD(s->kvm ? "kvm" : "tcg,thread=single");
        if (s->kvm) {
                ADD("-cpu");
                ADD("host");
        }
        ADD("-m");
        ADDF("%u", s->memory_mb);
        ADD("-smp");
        ADDF("%u", s->vcpus);
        /* seccomp: no obsolete syscalls, no privilege changes, no spawning, no scheduler or
         * resource games, should the VMM be taken over through a device model. */
        ADD("-sandbox");
        ADD("on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        ADD("-nodefaults");
        ADD("-no-user-config");
        ADD("-nographic");
        ADD("-no-reboot");
        ADD("-chardev");
        ADDF("file,id=con,path=%s/console.log", s->dir);
        ADD("-serial");
        ADD("chardev:con");
        ADD("-kernel");
        ADD(s->image->kernel);
        ADD("-initrd");
        ADD(s->image->initramfs);
        ADD("-append");
        ADD(cmdline);
        /* The base image is shared by every sandbox of the node: read-only, and never written back. */
        ADD("-drive");
        ADDF("id=base,file=%s,format=raw,if=none,readonly=on", s->image->rootfs);
        ADD("-device");
        ADD("virtio-blk-device,drive=base,serial=sbx-base");
        ADD("-drive");
        ADDF("id=data,file=%s,format=raw,if=none,cache=unsafe,discard=unmap", s->data_disk);
        ADD("-device");
        ADD("virtio-blk-device,drive=data,serial=sbx-data");
        if (s->net) {
                ADD("-netdev");
                ADDF("tap,id=n0,fd=%d,vhost=off", AGENT_VMM_TAP_FD);
                ADD("-device");
                ADDF("virtio-net-device,netdev=n0,mac=%s", s->net->mac);
        }
        ADD("-chardev");
        ADDF("socket,id=chan,path=%s/chan.sock,server=on,wait=off", s->dir);
        ADD("-device");
        ADD("virtio-serial-device,max_ports=2");
        ADD("-device");
        ADD("virtserialport,chardev=chan,name=sbx.0");
        ADD("-device");
        ADD("virtio-rng-device");
        ADD("-qmp");
        ADDF("unix:%s/qmp.sock,server=on,wait=off", s->dir);
        ADD("-pidfile");
        ADDF("%s/vmm.pid", s->dir);
#undef ADD
#undef ADDF
        *ret = v;
        return 0;
fail:
        strv_free(v);
        return r;
}

static void qemu_channel(const AgentVmmSpec *s, char *path, size_t n, int *ret_vsock_port)
{
        snprintf(path, n, "%s/chan.sock", s->dir);
        *ret_vsock_port = 0;
}

const AgentVmmDriver agent_vmm_qemu = {
        .name = "qemu",
        .command = qemu_command,
        .channel = qemu_channel,
        .configure = NULL,
        /* QEMU then needs no access to /dev/net/tun, which is root-only on many hosts. */
        .tap_fd = true,
        /* By serial: the guest's probe order of virtio-mmio devices is not something to rely on. */
        .base_device = "serial:sbx-base",
        .data_device = "serial:sbx-data",
};
