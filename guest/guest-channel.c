/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest end of the channel: a virtio-serial port named "sbx.0" (QEMU), or a vsock listener
 * (Cloud Hypervisor; "sbx.channel=vsock:<port>" on the kernel command line). Frames are read with
 * the shared reader (common/channel) and dispatched by body; writes go through one queue that
 * producers watch, so output never piles up faster than the agent takes it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/fd-util.h"
#include "common/base/parse.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "guest/guest.h"

/* Producers pause above this much queued output and resume below half of it. */
#define OUT_HIGH (4u * 1024 * 1024)

static int chan_fd = -1;
static GuestWatch chan_watch = { .fd = -1 };
static SbxFrameReader reader;
static SbxBuffer out = SBX_BUFFER_INIT;
static bool broken;

static int find_port(char *path, size_t n)
{
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *de;
        int r = -ENOENT;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char name_path[512], name[64] = "";
                if (de->d_name[0] == '.')
                        continue;
                snprintf(name_path, sizeof(name_path), "/sys/class/virtio-ports/%s/name", de->d_name);
                _cleanup_close_ int fd = open(name_path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                ssize_t k = read(fd, name, sizeof(name) - 1);
                if (k <= 0)
                        continue;
                name[k] = '\0';
                name[strcspn(name, "\n")] = '\0';
                if (streq(name, "sbx.0")) {
                        snprintf(path, n, "/dev/%s", de->d_name);
                        r = 0;
                        break;
                }
        }
        closedir(d);
        return r;
}

/* "sbx.channel=vsock:1024" on the kernel command line selects vsock; the port is given there. */
static int vsock_port(void)
{
        _cleanup_free_ char *cmdline = NULL;
        uint32_t port;

        if (sbx_read_file("/proc/cmdline", 8192, &cmdline, NULL) < 0)
                return -1;
        char *p = strstr(cmdline, "sbx.channel=vsock:");
        if (!p)
                return -1;
        p += strlen("sbx.channel=vsock:");
        p[strcspn(p, " \n")] = '\0';
        if (sbx_parse_uint32(p, &port) < 0)
                return -1;
        return (int)port;
}

int guest_channel_open(void)
{
        char path[300];
        int port = vsock_port();

        sbx_frame_reader_init(&reader);
        if (port > 0) {
                struct sockaddr_vm a = { .svm_family = AF_VSOCK,
                                         .svm_cid = VMADDR_CID_ANY,
                                         .svm_port = (unsigned)port };
                _cleanup_close_ int lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1) < 0)
                        return -errno;
                chan_fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                return chan_fd < 0 ? -errno : 0;
        }
        /* The port appears once the virtio-serial driver has probed; wait for it a little. */
        for (int i = 0; i < 500; i++) {
                if (find_port(path, sizeof(path)) == 0) {
                        chan_fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
                        return chan_fd < 0 ? -errno : 0;
                }
                usleep(10000);
        }
        return -ENODEV;
}

int guest_channel_read_config(Sbx__V1__Guest__Config **ret)
{
        uint8_t buf[65536];

        for (;;) {
                Sbx__V1__Guest__GuestFrame *f = NULL;
                int r = sbx_frame_reader_next(&reader, &f);
                if (r < 0)
                        return r;
                if (r == 1) {
                        if (f->body_case != SBX__V1__GUEST__GUEST_FRAME__BODY_CONFIG) {
                                sbx__v1__guest__guest_frame__free_unpacked(f, NULL);
                                return -EBADMSG;
                        }
                        *ret = f->config;
                        f->config = NULL;
                        f->body_case = SBX__V1__GUEST__GUEST_FRAME__BODY__NOT_SET;
                        sbx__v1__guest__guest_frame__free_unpacked(f, NULL);
                        return 0;
                }
                ssize_t n = read(chan_fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EPIPE;
                r = sbx_frame_reader_feed(&reader, buf, (size_t)n);
                if (r < 0)
                        return r;
        }
}

static void (*drain_fn)(void);

void guest_channel_on_drain(void (*fn)(void))
{
        drain_fn = fn;
}

bool guest_channel_writable(void)
{
        return !broken && sbx_buffer_size(&out) < OUT_HIGH;
}

static void flush(void)
{
        while (sbx_buffer_size(&out) > 0) {
                ssize_t n = write(chan_fd, sbx_buffer_data(&out), sbx_buffer_size(&out));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN) {
                                broken = true;
                                sbx_buffer_clear(&out);
                                log_error_errno(-errno, "Guest channel write failed: %m");
                        }
                        break;
                }
                sbx_buffer_consume(&out, (size_t)n);
        }
        guest_watch_mod(&chan_watch, EPOLLIN | (sbx_buffer_size(&out) > 0 ? EPOLLOUT : 0));
}

int guest_send(const Sbx__V1__Guest__GuestFrame *f)
{
        bool was_empty = sbx_buffer_size(&out) == 0;
        int r;

        if (broken)
                return -EPIPE;
        r = sbx_frame_append(&out, f);
        if (r < 0)
                return r;
        if (was_empty && chan_watch.fd >= 0)
                flush();
        else if (chan_watch.fd < 0) {
                /* Before the loop runs (Hello): write synchronously. */
                (void)sbx_write_full(chan_fd, sbx_buffer_data(&out), sbx_buffer_size(&out));
                sbx_buffer_clear(&out);
        }
        return 0;
}

int guest_status_of_errno(int e)
{
        return (int)sbx_error_to_status(-e);
}

int guest_send_result(uint32_t stream, int error, const char *fmt, ...)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        Sbx__V1__Guest__Result res = SBX__V1__GUEST__RESULT__INIT;
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        if (fmt) {
                va_start(ap, fmt);
                if (vasprintf(&msg, fmt, ap) < 0)
                        msg = NULL;
                va_end(ap);
        }
        res.status = error < 0 ? guest_status_of_errno(-error) : 0;
        res.errno_value = error < 0 ? -error : 0;
        res.message = msg ? msg : (char *)"";
        f.stream = stream;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_RESULT;
        f.result = &res;
        return guest_send(&f);
}

int guest_send_credit(uint32_t stream, uint32_t bytes)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        f.stream = stream;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_CREDIT;
        f.credit = bytes;
        return guest_send(&f);
}

static void control(const Sbx__V1__Guest__GuestFrame *f)
{
        Sbx__V1__Guest__GuestFrame reply = SBX__V1__GUEST__GUEST_FRAME__INIT;

        switch (f->body_case) {
        case SBX__V1__GUEST__GUEST_FRAME__BODY_PING:
                reply.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_PONG;
                reply.pong = f->ping;
                guest_send(&reply);
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_POWER_OFF:
                guest_power_off();
                return;
        default:
                log_debug("Ignoring control frame %d", (int)f->body_case);
                return;
        }
}

static void dispatch(const Sbx__V1__Guest__GuestFrame *f)
{
        if (f->stream == 0) {
                control(f);
                return;
        }
        switch (f->body_case) {
        case SBX__V1__GUEST__GUEST_FRAME__BODY_SPAWN:
                guest_exec_spawn(f->stream, f->spawn);
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_FS:
                guest_fs_request(f->stream, f->fs);
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_ENV:
                guest_env_handle(f->stream, f->env);
                return;
        case SBX__V1__GUEST__GUEST_FRAME__BODY_RESET:
                guest_exec_reset(f->stream);
                guest_fs_frame(f);
                return;
        default:
                /* Stream frames (stdin, signals, credit, data, file ops) go to whoever owns the stream. */
                if (!guest_fs_frame(f))
                        guest_exec_frame(f);
                return;
        }
}

static void on_channel(GuestWatch *w, uint32_t events)
{
        if (events & EPOLLOUT) {
                bool was_high = !guest_channel_writable();
                flush();
                if ((was_high || sbx_buffer_size(&out) < OUT_HIGH / 2) && drain_fn)
                        drain_fn();
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                uint8_t buf[65536];
                ssize_t n = read(w->fd, buf, sizeof(buf));
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (n <= 0) {
                        /* virtio-serial reads 0 while the host end is disconnected: wait for it. */
                        if (n == 0 && (events & EPOLLHUP))
                                usleep(10000);
                        return;
                }
                if (sbx_frame_reader_feed(&reader, buf, (size_t)n) < 0)
                        goto bad;
                Sbx__V1__Guest__GuestFrame *f;
                int r;
                while ((r = sbx_frame_reader_next(&reader, &f)) == 1) {
                        dispatch(f);
                        sbx__v1__guest__guest_frame__free_unpacked(f, NULL);
                }
                if (r < 0)
                        goto bad;
        }
        return;
bad:
        /* The agent is trusted; a malformed frame means a bug or a corrupted transport. */
        log_error("Malformed frame on the guest channel; powering off");
        guest_power_off();
}

static void on_drain(void)
{
        guest_exec_resume();
        guest_fs_resume();
}

int guest_channel_start(void)
{
        int r = sbx_fd_nonblock(chan_fd, true);
        if (r < 0)
                return r;
        guest_channel_on_drain(on_drain);
        return guest_watch_add(&chan_watch, chan_fd, EPOLLIN, on_channel);
}
