/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sandbox networking, the part the VM needs to boot: one tap device per sandbox and a /30 of the
 * agent's subnet (host .1 on the tap, guest .2 on eth0). The tap is created here, addressed and
 * brought up with libnl, and its file descriptor handed to the VMM; it is not persistent, so it
 * disappears with the VMM. Egress policy (nftables, DNS, proxy) is layered on top by agent-nft.c
 * and friends.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/base/macro.h"
#include "common/crypto/crypto.h"
#include "common/log/log.h"

void agent_net_tap_name(const char *id, char out[16])
{
        char hash[SBX_SHA256_HEX_LEN + 1];
        /* IFNAMSIZ is 16: "sbx" + 12 hex digits of the id's hash, stable across restarts. */
        sbx_sha256_hex(id, strlen(id), hash);
        snprintf(out, 16, "sbx%.12s", hash);
}

static void slot_addresses(Agent *a, int slot, AgentNet *n)
{
        struct in_addr h = { htonl(a->subnet_base + 4u * (uint32_t)slot + 1) };
        struct in_addr g = { htonl(a->subnet_base + 4u * (uint32_t)slot + 2) };
        n->slot = slot;
        n->prefix = 30;
        inet_ntop(AF_INET, &h, n->host_ip, sizeof(n->host_ip));
        inet_ntop(AF_INET, &g, n->guest_ip, sizeof(n->guest_ip));
        /* A locally administered MAC derived from the slot. */
        snprintf(n->mac, sizeof(n->mac), "52:54:%02x:%02x:%02x:%02x", (slot >> 24) & 0xff,
                 (slot >> 16) & 0xff, (slot >> 8) & 0xff, slot & 0xff);
}

static int pick_slot(Agent *a, const char *id)
{
        char hash[SBX_SHA256_HEX_LEN + 1];
        sbx_sha256_hex(id, strlen(id), hash);
        uint32_t start = (uint32_t)strtoul(hash + 56, NULL, 16) % a->n_slots;
        for (uint32_t i = 0; i < a->n_slots; i++) {
                uint32_t s = (start + i) % a->n_slots;
                if (!a->slots_used[s])
                        return (int)s;
        }
        return -ENOSPC;
}

/* Adds host_ip/30 to the tap and brings it up (libnl). */
static int address_link(const char *tap, const AgentNet *n)
{
        struct nl_sock *sk = nl_socket_alloc();
        struct rtnl_link *link = NULL, *change = NULL;
        struct rtnl_addr *addr = NULL;
        struct nl_addr *local = NULL;
        char cidr[32];
        int r = -ENOMEM;

        if (!sk)
                return -ENOMEM;
        if (nl_connect(sk, NETLINK_ROUTE) < 0) {
                r = -EIO;
                goto out;
        }
        if (rtnl_link_get_kernel(sk, 0, tap, &link) < 0) {
                r = -ENODEV;
                goto out;
        }
        snprintf(cidr, sizeof(cidr), "%s/%u", n->host_ip, n->prefix);
        addr = rtnl_addr_alloc();
        if (!addr || nl_addr_parse(cidr, AF_INET, &local) < 0)
                goto out;
        rtnl_addr_set_ifindex(addr, rtnl_link_get_ifindex(link));
        rtnl_addr_set_local(addr, local);
        if ((r = rtnl_addr_add(sk, addr, 0)) < 0 && r != -NLE_EXIST) {
                r = -EIO;
                goto out;
        }
        change = rtnl_link_alloc();
        if (!change)
                goto out;
        rtnl_link_set_flags(change, IFF_UP);
        r = rtnl_link_change(sk, link, change, 0) < 0 ? -EIO : 0;
out:
        if (change)
                rtnl_link_put(change);
        if (local)
                nl_addr_put(local);
        if (addr)
                rtnl_addr_put(addr);
        if (link)
                rtnl_link_put(link);
        nl_socket_free(sk);
        return r;
}

int agent_net_setup(Agent *a, const char *id, AgentNet *ret)
{
        AgentNet n = { .slot = -1 };
        struct ifreq ifr = { 0 };
        int slot, fd, r;

        slot = pick_slot(a, id);
        if (slot < 0)
                return slot;
        slot_addresses(a, slot, &n);
        agent_net_tap_name(id, n.tap);

        fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        snprintf(ifr.ifr_name, IFNAMSIZ, "%s", n.tap);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        /* Persistent, so that it can be addressed before the VMM exists and survives an agent restart;
         * the VMM gets an fd opened by us (agent_net_open_tap), so it needs no access to /dev/net/tun.
         * Owned by the VMM user for VMMs that must open it by name (Cloud Hypervisor). It is deleted
         * explicitly at teardown. */
        if (ioctl(fd, TUNSETOWNER, agent_vmm_uid(a, slot)) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        close(fd);
        r = address_link(n.tap, &n);
        if (r < 0) {
                agent_net_remove(a, &n);
                return r;
        }
        a->slots_used[slot] = 1;
        *ret = n;
        return 0;
}

int agent_net_adopt(Agent *a, const char *id, AgentNet *ret)
{
        AgentNet n;
        char path[1024];
        FILE *f;
        int slot = -1;

        snprintf(path, sizeof(path), "%s/sandboxes/%s/net", a->cfg.state_dir, id);
        f = fopen(path, "re");
        if (!f || fscanf(f, "%d", &slot) != 1 || slot < 0 || (uint32_t)slot >= a->n_slots) {
                if (f)
                        fclose(f);
                return -ENOENT;
        }
        fclose(f);
        slot_addresses(a, slot, &n);
        agent_net_tap_name(id, n.tap);
        if (if_nametoindex(n.tap) == 0)
                return -ENODEV;
        a->slots_used[slot] = 1;
        *ret = n;
        return 0;
}

void agent_net_remove(Agent *a, AgentNet *n)
{
        struct ifreq ifr = { 0 };
        int fd;

        if (n->slot >= 0 && (uint32_t)n->slot < a->n_slots)
                a->slots_used[n->slot] = 0;
        if (!*n->tap)
                return;
        /* Re-attach and clear persistence: the kernel deletes the tap when this fd closes. */
        fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return;
        snprintf(ifr.ifr_name, IFNAMSIZ, "%s", n->tap);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if (ioctl(fd, TUNSETIFF, &ifr) == 0)
                ioctl(fd, TUNSETPERSIST, 0);
        close(fd);
        n->slot = -1;
}

int agent_net_open_tap(const AgentNet *n)
{
        struct ifreq ifr = { 0 };
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        snprintf(ifr.ifr_name, IFNAMSIZ, "%s", n->tap);
        /* The same flags as at creation, or the kernel refuses to attach. */
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}
