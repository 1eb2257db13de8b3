/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drives the Cloud Hypervisor driver (agent/agent-vmm-ch.c) as the agent does, against whatever
 * answers on its API socket. The contract test (tests/interop/ch-contract.test.mjs) answers with a
 * fake Cloud Hypervisor that checks every request against the published OpenAPI file; no real Cloud
 * Hypervisor is involved.
 *
 *   ch-contract-client --api-socket DIR/api.sock [--no-net]
 *
 * DIR serves as the sandbox directory; nothing in it needs to exist (the image paths are made up).
 * Prints one fact per line:
 *
 *   argv <arg>                    the VMM's command line, one argument per line, in order
 *   channel <path> <vsock port>
 *   devices <base> <data>
 *   spec <key> <value>            what the VmConfig must say: kernel, initramfs, rootfs, data_disk,
 *                                 vcpus, memory_mb, and with a network tap and mac
 *   configure ok                  or: configure error <NAME> <message>
 *   account <text>                the driver's account of a failure, when it keeps one
 *   done-calls <n>
 *
 * Exits 0 when the driver kept its side of the interface (command built, `done` called exactly once
 * and never from inside configure()), whatever the VMM answered; 1 otherwise; 2 on a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent-vmm.h"
#include "agent/agent.h"
#include "common/base/error.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"

typedef struct Outcome {
        const AgentVmmSpec *spec;
        unsigned calls;
        bool inside_configure;
        bool early;
        int error;
} Outcome;

static void configured(int error, void *userdata)
{
        Outcome *o = userdata;

        o->calls++;
        o->error = error;
        if (o->inside_configure)
                o->early = true;
        if (error < 0) {
                printf("configure error %s %s\n", sbx_error_name(error), sbx_error_message(error));
                /* The interface promises the account is there to be asked for from here. */
                _cleanup_free_ char *account = NULL;
                if (agent_vmm_cloud_hypervisor.configure_error &&
                    agent_vmm_cloud_hypervisor.configure_error(o->spec, &account) >= 0)
                        printf("account %s\n", account);
        } else
                printf("configure ok\n");
}

static int usage(void)
{
        fprintf(stderr, "usage: ch-contract-client --api-socket DIR/api.sock [--no-net]\n");
        return 2;
}

int main(int argc, char **argv)
{
        const AgentVmmDriver *d = &agent_vmm_cloud_hypervisor;
        const char *api_socket = NULL;
        bool net = true;
        char dir[256], chan[600];
        int port, r;

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--api-socket") && i + 1 < argc)
                        api_socket = argv[++i];
                else if (streq(argv[i], "--no-net"))
                        net = false;
                else
                        return usage();
        }
        const char *slash = api_socket ? strrchr(api_socket, '/') : NULL;
        if (!slash || slash == api_socket || (size_t)(slash - api_socket) >= sizeof(dir))
                return usage();
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - api_socket), api_socket);

        uv_loop_t loop;
        if (uv_loop_init(&loop) < 0)
                return 1;
        static Agent a;
        a.loop = &loop;
        a.cfg.ch_binary = (char *)"/usr/local/bin/cloud-hypervisor";

        AgentImage image = { .pvh = true };
        snprintf(image.kernel, sizeof(image.kernel), "%s/vmlinux", dir);
        snprintf(image.initramfs, sizeof(image.initramfs), "%s/initramfs.cpio", dir);
        snprintf(image.rootfs, sizeof(image.rootfs), "%s/rootfs.ext4", dir);
        snprintf(image.data_template, sizeof(image.data_template), "%s/data-template.ext4", dir);
        AgentNet n = {
                .slot = 0,
                .tap = "sbxcontract0",
                .host_ip = "10.200.0.1",
                .guest_ip = "10.200.0.2",
                .mac = "02:00:0a:c8:00:02",
                .prefix = 30,
        };
        char data_disk[300];
        snprintf(data_disk, sizeof(data_disk), "%s/disk.ext4", dir);
        AgentVmmSpec spec = {
                .dir = dir,
                .image = &image,
                .data_disk = data_disk,
                .memory_mb = 512,
                .vcpus = 2,
                .net = net ? &n : NULL,
                .kvm = true,
        };

        _cleanup_strv_free_ char **cmd = NULL;
        r = d->command(&a, &spec, &cmd);
        if (r < 0) {
                printf("command error %s %s\n", sbx_error_name(r), sbx_error_message(r));
                return 1;
        }
        STRV_FOREACH (arg, cmd)
                printf("argv %s\n", *arg);
        d->channel(&spec, chan, sizeof(chan), &port);
        printf("channel %s %d\n", chan, port);
        printf("devices %s %s\n", d->base_device, d->data_device);
        printf("spec kernel %s\nspec initramfs %s\nspec rootfs %s\nspec data_disk %s\n", image.kernel,
               image.initramfs, image.rootfs, data_disk);
        printf("spec vcpus %u\nspec memory_mb %u\n", spec.vcpus, spec.memory_mb);
        if (net)
                printf("spec tap %s\nspec mac %s\n", n.tap, n.mac);
        fflush(stdout);

        Outcome o = { .spec = &spec };
        o.inside_configure = true;
        r = d->configure(&a, &spec, configured, &o);
        o.inside_configure = false;
        if (r < 0) {
                /* A refusal up front is an answer too, and then `done` must not run. */
                printf("configure error %s %s\n", sbx_error_name(r), sbx_error_message(r));
                uv_run(&loop, UV_RUN_DEFAULT);
                printf("done-calls %u\n", o.calls);
                return o.calls == 0 && uv_loop_close(&loop) == 0 ? 0 : 1;
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        printf("done-calls %u\n", o.calls);
        if (o.early)
                printf("FAIL done ran inside configure()\n");
        return o.calls == 1 && !o.early && uv_loop_close(&loop) == 0 ? 0 : 1;
}
