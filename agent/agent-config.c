/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/agent-config.h"

#include <stddef.h>

#include "common/base/macro.h"

#define OPT(k, p, f, d, desc, ...)                                                             \
        {                                                                                      \
                .key = (k), .parse = sbx_config_parse_##p, .offset = offsetof(AgentConfig, f), \
                .default_value = (d), .description = (desc), __VA_ARGS__                       \
        }

static const char *const vmm_choices[] = { "auto", "qemu", "cloud-hypervisor", NULL };
static const char *const accel_choices[] = { "auto", "kvm", "tcg", NULL };

static const SbxConfigOption options[] = {
        OPT("name", string, name, NULL, "This node's name ([a-z0-9-], unique in the cluster).",
            .required = true),
        OPT("region", string, region, NULL,
            "The region this node serves (three lowercase letters, e.g. ams).", .required = true),
        OPT("listen", address, listen, "127.0.0.1:7080",
            "Address of the data-plane gRPC service (sbx.v1.SandboxData)."),
        OPT("advertise", string, advertise, NULL,
            "host:port clients use to reach the data plane, announced in etcd; default: the listen "
            "address."),
        OPT("tls-cert", string, tls_cert, NULL, "PEM certificate of the data-plane server; enables TLS."),
        OPT("tls-key", string, tls_key, NULL, "PEM private key for tls-cert."),
        OPT("tls-client-ca", string, tls_client_ca, NULL,
            "PEM CA bundle: data-plane clients must present a certificate it signed."),
        OPT("metrics-listen", address, metrics_listen, "127.0.0.1:9480",
            "Address of /metrics and /healthz; empty disables it."),
        OPT("etcd-endpoints", strv, etcd_endpoints, "127.0.0.1:2379",
            "Comma-separated host:port list of etcd members.", .required = true),
        OPT("etcd-cert", string, etcd_cert, NULL, "PEM client certificate for etcd (mTLS)."),
        OPT("etcd-key", string, etcd_key, NULL, "PEM private key for etcd-cert."),
        OPT("etcd-ca", string, etcd_ca, NULL,
            "PEM CA bundle that signed etcd's certificate; enables TLS to etcd."),
        OPT("cluster-key-file", string, cluster_key_file, NULL,
            "The cluster key shared with the schedulers (verifies access tokens, opens sealed secrets).",
            .required = true),
        OPT("state-dir", string, state_dir, "/var/lib/sbx-agent",
            "Directory for per-sandbox disks, sockets and logs (one subdirectory per sandbox)."),
        OPT("image-dir", string, image_dir, "/var/lib/sbx/image",
            "Directory holding vmlinux, initramfs.cpio, rootfs.ext4 and data-template.ext4 (make image)."),
        OPT("vmm", choice, vmm, "auto",
            "VMM driver: qemu, cloud-hypervisor, or auto (cloud-hypervisor when its binary is set and KVM "
            "works, "
            "else qemu).",
            .choices = vmm_choices),
        OPT("accel", choice, accel, "auto",
            "Accelerator: kvm, tcg, or auto (KVM if a probe boot proves it usable, else TCG).",
            .choices = accel_choices),
        OPT("qemu-binary", string, qemu_binary, "qemu-system-x86_64", "The QEMU binary."),
        OPT("ch-binary", string, ch_binary, NULL,
            "The cloud-hypervisor binary; unset disables that driver."),
        OPT("jailer", string, jailer, NULL,
            "The sbx-jailer binary that confines each VMM; default: sbx-jailer next to sbx-agent."),
        OPT("vmm-uid-base", uint32, vmm_uid_base, "2000000000",
            "Each VMM runs as its own uid and gid: this base plus the sandbox's slot (0..slots-1). No "
            "account may use that range; the default lies above the ranges systemd hands to users and "
            "containers.",
            .min = 1000, .max = 2147483647u),
        OPT("memory", size, memory, "8GiB", "Memory offered to sandboxes in all.", .min = 1LL << 30,
            .max = INT64_MAX),
        OPT("vcpus", uint32, vcpus, "16", "vCPUs offered to sandboxes in all (they may exceed host cores).",
            .min = 1, .max = 4096),
        OPT("slots", uint32, slots, "16", "Most sandboxes running at once.", .min = 1, .max = 4096),
        OPT("vmm-overhead", size, vmm_overhead, "320MiB",
            "Memory allowed to each VMM beyond its guest's (its cgroup's memory.max is the sum).",
            .min = 16LL << 20, .max = 16LL << 30),
        OPT("pids-max", uint32, pids_max, "64", "pids.max of each VMM's cgroup.", .min = 8, .max = 100000),
        OPT("lease-ttl", duration, lease_ttl, "5s",
            "TTL of the node's lease: a dead agent's node vanishes after it.", .min = 2000000LL,
            .max = 600000000LL),
        OPT("boot-timeout", duration, boot_timeout, "60s",
            "How long a sandbox may take from VMM start to sbx-init's hello.", .min = 1000000LL,
            .max = 600000000LL),
        OPT("stop-timeout", duration, stop_timeout, "1500ms",
            "How long a guest gets to power off cleanly before its VMM is killed.", .min = 0,
            .max = 60000000LL),
        OPT("subnet", string, subnet, "10.200.0.0/16",
            "IPv4 range carved into one /30 per sandbox (host side .1, guest .2)."),
        OPT("mtu", uint32, mtu, "1500", "MTU of the sandboxes' network.", .min = 576, .max = 9000),
        OPT("guest-dns", strv, guest_dns, NULL,
            "DNS servers given to guests; default: the sandbox's gateway (the agent's forwarder, which "
            "enforces the allow-list: keep the default unless egress is enforced elsewhere)."),
        OPT("dns-port", uint32, dns_port, "10053",
            "Port of the agent's DNS forwarder; the sandboxes' DNS (port 53) is redirected to it.", .min = 1,
            .max = 65535),
        OPT("proxy-http-port", uint32, proxy_http_port, "10080",
            "Port of the egress proxy for the sandboxes' TCP port 80.", .min = 1, .max = 65535),
        OPT("proxy-https-port", uint32, proxy_https_port, "10443",
            "Port of the egress proxy for the sandboxes' TCP port 443.", .min = 1, .max = 65535),
        OPT("dns-upstream", strv, dns_upstream, NULL,
            "Comma-separated resolvers (ip or ip:port) the forwarder and proxy ask; default: those of "
            "/etc/resolv.conf."),
        OPT("egress-upstream-ca", string, egress_upstream_ca, NULL,
            "PEM CA bundle that upstream servers of intercepted connections are verified against; "
            "default: the system trust store."),
        OPT("tsc-khz", size, tsc_khz, NULL,
            "The host TSC frequency in kHz passed to TCG guests (they hang without it); default: measured."),
        OPT("guest-cmdline-extra", string, guest_cmdline_extra, NULL,
            "Appended to every guest's kernel command line (debugging: \"loglevel=7\"; benchmarks under "
            "TCG: \"tsc=reliable\" for a fine guest clock, which multi-threaded TCG crashed on in about "
            "1 of 40 boots)."),
        OPT("log-level", log_level, log_level, "info", "debug, info, warning or error."),
        OPT("log-format", log_format, log_format, "text", "text or json."),
};

const SbxConfigTable agent_config_table = {
        .program = "sbx-agent",
        .summary =
                "The sbx node agent: runs the microVMs assigned to this node and serves their data plane.",
        .env_prefix = "SBX_AGENT_",
        .options = options,
        .n_options = ELEMENTSOF(options),
};
