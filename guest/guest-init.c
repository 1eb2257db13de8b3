/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx-init: PID 1 in every sandbox. It mounts the early file systems, waits for the agent's Config
 * on the guest channel, assembles the root (read-only base + writable disk, merged by overlayfs),
 * configures the network and the trust store, says Hello, and then serves the channel: processes,
 * files, environment. It reaps every orphan, as PID 1 must, and powers the machine off on request.
 *
 * It never exits: PID 1 exiting panics the kernel. On a fatal error it logs to the console and
 * powers off, so the agent sees the VM end instead of a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/fd-util.h"
#include "common/base/time-util.h"
#include "common/log/log.h"
#include "guest/guest.h"

static int epfd = -1;
static GuestWatch sigchld_watch;

int guest_watch_add(GuestWatch *w, int fd, uint32_t events, GuestWatchFn fn)
{
        struct epoll_event ev = { .events = events, .data.ptr = w };
        w->fd = fd;
        w->fn = fn;
        w->events = events;
        return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int guest_watch_mod(GuestWatch *w, uint32_t events)
{
        struct epoll_event ev = { .events = events, .data.ptr = w };
        if (w->fd < 0 || w->events == events)
                return 0;
        w->events = events;
        return epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0 ? -errno : 0;
}

void guest_watch_del(GuestWatch *w)
{
        if (w->fd >= 0)
                epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
        w->fd = -1;
}

_noreturn_ static void power_off(void)
{
        sync();
        reboot(RB_POWER_OFF);
        /* reboot() does not return on success; with "reboot=t -no-reboot" QEMU exits either way. */
        for (;;)
                pause();
}

_noreturn_ static void fatal(int r, const char *what)
{
        log_error_errno(r, "sbx-init: %s: %m; powering off", what);
        power_off();
}

static bool probe_requested(void)
{
        _cleanup_free_ char *cmdline = NULL;
        return sbx_read_file("/proc/cmdline", 8192, &cmdline, NULL) >= 0 && strstr(cmdline, "sbx.probe");
}

static void on_sigchld(GuestWatch *w, uint32_t events)
{
        struct signalfd_siginfo si;
        while (read(w->fd, &si, sizeof(si)) == sizeof(si))
                ;
        guest_exec_sigchld();
}

static uint64_t uptime_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void send_hello(const char *warning)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        Sbx__V1__Guest__Hello h = SBX__V1__GUEST__HELLO__INIT;
        struct utsname u;

        uname(&u);
        h.protocol_version = SBX__V1__GUEST__CONSTANTS__PROTOCOL_VERSION;
        h.kernel_release = u.release;
        h.uptime_ms = uptime_ms();
        h.warning = (char *)(warning ? warning : "");
        f.stream = 0;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_HELLO;
        f.hello = &h;
        guest_send(&f);
}

int main(int argc, char **argv)
{
        Sbx__V1__Guest__Config *config = NULL;
        char warning[256] = "";
        sigset_t mask;
        int r;

        sbx_log_setup("sbx-init", SBX_LOG_TEXT, SBX_LOG_INFO);
        if (getpid() != 1)
                log_warning("Not running as PID 1; orphans will not be reaped by us");

        /* SIGCHLD through a signalfd; the rest of the signals meant for PID 1 are ignored. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = guest_mount_early();
        if (r < 0)
                fatal(r, "mounting /proc, /sys and /dev");
        /* The OOM killer must pick a process of the sandbox, never its init (children reset it). */
        (void)sbx_write_string("/proc/self/oom_score_adj", "-1000");
        if (probe_requested()) {
                /* The agent boots us once with "sbx.probe" to learn whether KVM can run a guest. */
                log_info("sbx-probe-ok");
                power_off();
        }
        epfd = epoll_create1(EPOLL_CLOEXEC);
        if (epfd < 0)
                fatal(-errno, "epoll_create1");
        r = guest_channel_open();
        if (r < 0)
                fatal(r, "opening the guest channel");

        r = guest_channel_read_config(&config);
        if (r < 0)
                fatal(r, "reading the configuration from the agent");
        if (config->realtime_ms > 0) {
                struct timespec ts = { .tv_sec = config->realtime_ms / 1000,
                                       .tv_nsec = (long)(config->realtime_ms % 1000) * 1000000 };
                clock_settime(CLOCK_REALTIME, &ts);
        }
        r = guest_mount_root(config);
        if (r < 0)
                fatal(r, "assembling the root file system");
        if ((r = guest_net_setup(config)) < 0)
                snprintf(warning, sizeof(warning), "network setup failed: %s", sbx_error_message(r));
        if (config->ca_pem && *config->ca_pem && (r = guest_trust_ca(config->ca_pem)) < 0)
                snprintf(warning, sizeof(warning), "could not install the egress CA: %s",
                         sbx_error_message(r));
        if ((r = guest_env_init(config)) < 0)
                fatal(r, "setting up the environment");
        sbx__v1__guest__config__free_unpacked(config, NULL);

        int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (sfd < 0 || guest_watch_add(&sigchld_watch, sfd, EPOLLIN, on_sigchld) < 0)
                fatal(-errno, "signalfd");
        r = guest_channel_start();
        if (r < 0)
                fatal(r, "starting the channel");
        send_hello(*warning ? warning : NULL);
        log_info("sbx-init ready after %llu ms", (unsigned long long)uptime_ms());

        for (;;) {
                struct epoll_event events[32];
                int n = epoll_wait(epfd, events, 32, -1);
                if (n < 0 && errno != EINTR)
                        fatal(-errno, "epoll_wait");
                for (int i = 0; i < n; i++) {
                        GuestWatch *w = events[i].data.ptr;
                        w->fn(w, events[i].events);
                }
        }
}

void guest_power_off(void)
{
        log_info("Power-off requested by the agent");
        power_off();
}
