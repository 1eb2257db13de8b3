/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest's file systems. The root is an overlay: the shared, read-only base image (ext4 on the
 * first disk, shared by every sandbox of the node) below, the sandbox's own sparse disk (ext4 on
 * the second disk) above. sbx-init then pivots into it and keeps running there.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/base/fd-util.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "guest/guest.h"

static int mkdir_p(const char *path, mode_t mode)
{
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", path);
        for (char *p = buf + 1; *p; p++)
                if (*p == '/') {
                        *p = '\0';
                        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                                return -errno;
                        *p = '/';
                }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int mount_one(const char *src, const char *dst, const char *type, unsigned long flags,
                     const char *data)
{
        int r = mkdir_p(dst, 0755);
        if (r < 0)
                return r;
        if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
                return -errno;
        return 0;
}

int guest_mount_early(void)
{
        int r;
        if ((r = mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0 ||
            (r = mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0 ||
            (r = mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755")) < 0)
                return r;
        /* The console may only exist once /dev is mounted: reopen stdio on it for our logs. */
        int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0) {
                dup2(fd, STDIN_FILENO);
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                if (fd > 2)
                        close(fd);
        }
        return 0;
}

/* Mounts what every Linux user space expects, below `root`. */
static int mount_api_fs(const char *root)
{
        char p[256];
        static const struct {
                const char *src, *dst, *type;
                unsigned long flags;
                const char *data;
        } m[] = {
                { "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620,gid=5" },
                { "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
                { "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755" },
                { "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
                { "cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(m); i++) {
                snprintf(p, sizeof(p), "%s%s", root, m[i].dst);
                int r = mount_one(m[i].src, p, m[i].type, m[i].flags, m[i].data);
                if (r < 0)
                        log_warning_errno(r, "Failed to mount %s: %m", m[i].dst);
        }
        snprintf(p, sizeof(p), "%s/dev/ptmx", root);
        unlink(p);
        (void)symlink("pts/ptmx", p);
        return 0;
}

/* Finds the block device whose virtio serial is `serial` (in /sys/block/<dev>/serial). */
static int find_by_serial(const char *serial, char *path, size_t n)
{
        _cleanup_(closedirp) DIR *d = opendir("/sys/block");
        struct dirent *de;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char p[300];
                _cleanup_free_ char *value = NULL;
                if (de->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof(p), "/sys/block/%s/serial", de->d_name);
                if (sbx_read_file(p, 256, &value, NULL) < 0)
                        continue;
                value[strcspn(value, "\n")] = '\0';
                if (streq(value, serial)) {
                        snprintf(path, n, "/dev/%s", de->d_name);
                        return 0;
                }
        }
        return -ENOENT;
}

/* Waits up to 5 s for `dev` (a path, or "serial:<s>") to appear, and names its /dev path. */
static int wait_for(const char *dev, char *path, size_t n)
{
        const char *serial = startswith(dev, "serial:");
        for (int i = 0; i < 500; i++) {
                if (serial ? find_by_serial(serial, path, n) == 0 : access(dev, F_OK) == 0) {
                        if (!serial)
                                snprintf(path, n, "%s", dev);
                        return 0;
                }
                usleep(10000);
        }
        return -ENODEV;
}

int guest_mount_root(const Sbx__V1__Guest__Config *c)
{
        int r;

        if (isempty(c->base_device)) {
                /* No disks (tests of the initramfs alone): serve from the initramfs root. */
                mount_api_fs("");
                return 0;
        }
        char dev[300];
        if ((r = wait_for(c->base_device, dev, sizeof(dev))) < 0)
                return log_error_errno(r, "Base disk %s did not appear: %m", c->base_device);
        if ((r = mount_one(dev, "/sbx/base", "ext4", MS_RDONLY, NULL)) < 0)
                return log_error_errno(r, "Failed to mount the base image %s (%s): %m", c->base_device, dev);
        if (!isempty(c->data_device)) {
                if ((r = wait_for(c->data_device, dev, sizeof(dev))) < 0 ||
                    (r = mount_one(dev, "/sbx/data", "ext4", MS_NOATIME, NULL)) < 0)
                        return log_error_errno(r, "Failed to mount the sandbox disk %s: %m", c->data_device);
        } else if ((r = mount_one("tmpfs", "/sbx/data", "tmpfs", 0, "mode=0755")) < 0) {
                return r;
        }
        if ((r = mkdir_p("/sbx/data/upper", 0755)) < 0 || (r = mkdir_p("/sbx/data/work", 0755)) < 0)
                return r;
        r = mount_one("overlay", "/sbx/root", "overlay", 0,
                      "lowerdir=/sbx/base,upperdir=/sbx/data/upper,workdir=/sbx/data/work");
        if (r < 0)
                return log_error_errno(r, "Failed to mount the overlay root: %m");

        /* Move the API file systems over, then make the overlay the root. */
        static const char *const moves[] = { "/dev", "/proc", "/sys" };
        for (size_t i = 0; i < ELEMENTSOF(moves); i++) {
                char dst[64];
                snprintf(dst, sizeof(dst), "/sbx/root%s", moves[i]);
                mkdir_p(dst, 0755);
                if (mount(moves[i], dst, NULL, MS_MOVE, NULL) < 0)
                        return log_error_errno(-errno, "Failed to move %s: %m", moves[i]);
        }
        if (chdir("/sbx/root") < 0)
                return -errno;
        /* The initramfs cannot be pivoted away from; switch_root's way: move the new root onto "/". */
        if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
                return log_error_errno(-errno, "Failed to move the new root onto /: %m");
        if (chroot(".") < 0 || chdir("/") < 0)
                return log_error_errno(-errno, "Failed to enter the new root: %m");
        mount_api_fs("");
        return 0;
}
