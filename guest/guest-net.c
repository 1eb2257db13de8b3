/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest network: lo, and eth0 as the agent's Config says (address, prefix, gateway, MTU, DNS).
 * Configured with the classic interface ioctls: the guest needs four settings, not a netlink
 * library in a static PID 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/fd-util.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "guest/guest.h"

static int if_up(int s, const char *name)
{
        struct ifreq ifr = { 0 };
        snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static int set_addr(int s, const char *name, unsigned long req, struct in_addr a)
{
        struct ifreq ifr = { 0 };
        struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
        snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
        sin->sin_family = AF_INET;
        sin->sin_addr = a;
        return ioctl(s, req, &ifr) < 0 ? -errno : 0;
}

static void write_text(const char *path, const char *text)
{
        int r = sbx_write_file_atomic(path, text, strlen(text), 0644);
        if (r < 0)
                log_warning_errno(r, "Failed to write %s: %m", path);
}

int guest_net_setup(const Sbx__V1__Guest__Config *c)
{
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct in_addr addr, mask, gw;
        char text[1024];
        int r;

        if (s < 0)
                return -errno;
        if (!isempty(c->hostname)) {
                sethostname(c->hostname, strlen(c->hostname));
                snprintf(text, sizeof(text), "%s\n", c->hostname);
                write_text("/etc/hostname", text);
        }
        snprintf(text, sizeof(text), "127.0.0.1 localhost\n::1 localhost\n127.0.1.1 %s\n",
                 isempty(c->hostname) ? "sandbox" : c->hostname);
        write_text("/etc/hosts", text);
        if ((r = if_up(s, "lo")) < 0)
                log_warning_errno(r, "Failed to bring lo up: %m");
        if (isempty(c->address))
                return 0;

        if (inet_pton(AF_INET, c->address, &addr) != 1 || c->prefix_len > 32)
                return -EINVAL;
        mask.s_addr = c->prefix_len ? htonl(~0u << (32 - c->prefix_len)) : 0;
        if ((r = set_addr(s, "eth0", SIOCSIFADDR, addr)) < 0 ||
            (r = set_addr(s, "eth0", SIOCSIFNETMASK, mask)) < 0)
                return log_error_errno(r, "Failed to address eth0: %m");
        if (c->mtu) {
                struct ifreq ifr = { .ifr_mtu = (int)c->mtu };
                snprintf(ifr.ifr_name, IFNAMSIZ, "eth0");
                if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
                        log_warning_errno(-errno, "Failed to set the MTU of eth0: %m");
        }
        if ((r = if_up(s, "eth0")) < 0)
                return log_error_errno(r, "Failed to bring eth0 up: %m");
        if (!isempty(c->gateway) && inet_pton(AF_INET, c->gateway, &gw) == 1) {
                struct rtentry rt = { 0 };
                struct sockaddr_in *dst = (struct sockaddr_in *)&rt.rt_dst,
                                   *g = (struct sockaddr_in *)&rt.rt_gateway,
                                   *m = (struct sockaddr_in *)&rt.rt_genmask;
                dst->sin_family = g->sin_family = m->sin_family = AF_INET;
                g->sin_addr = gw;
                rt.rt_flags = RTF_UP | RTF_GATEWAY;
                if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST)
                        return log_error_errno(-errno, "Failed to add the default route: %m");
        }
        size_t off = 0;
        text[0] = '\0';
        for (size_t i = 0; i < c->n_dns && off < sizeof(text); i++)
                off += (size_t)snprintf(text + off, sizeof(text) - off, "nameserver %s\n", c->dns[i]);
        if (c->n_dns > 0)
                write_text("/etc/resolv.conf", text);
        return 0;
}

int guest_trust_ca(const char *pem)
{
        static const char *const bundle = "/etc/ssl/certs/ca-certificates.crt";
        int r;

        (void)mkdir("/usr/local/share/ca-certificates", 0755);
        r = sbx_write_file_atomic("/usr/local/share/ca-certificates/sbx-egress.crt", pem, strlen(pem), 0644);
        if (r < 0)
                return r;
        /* Programs read the bundle, not the directory: append the CA to it as update-ca-certificates
         * would. */
        _cleanup_close_ int fd = open(bundle, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if ((r = sbx_write_full(fd, "\n", 1)) < 0 || (r = sbx_write_full(fd, pem, strlen(pem))) < 0)
                return r;
        return 0;
}
