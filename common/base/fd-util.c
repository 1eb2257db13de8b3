/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base/fd-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/macro.h"

int sbx_fd_nonblock(int fd, bool nonblock)
{
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return negative_errno();
        int nflags = nonblock ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
        if (nflags != flags && fcntl(fd, F_SETFL, nflags) < 0)
                return negative_errno();
        return 0;
}

int sbx_fd_cloexec(int fd, bool cloexec)
{
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0)
                return negative_errno();
        int nflags = cloexec ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
        if (nflags != flags && fcntl(fd, F_SETFD, nflags) < 0)
                return negative_errno();
        return 0;
}

int sbx_write_full(int fd, const void *p, size_t n)
{
        const char *b = p;
        while (n > 0) {
                ssize_t w = write(fd, b, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                b += w;
                n -= (size_t)w;
        }
        return 0;
}

int sbx_read_full(int fd, void *p, size_t n)
{
        char *b = p;
        size_t got = 0;
        while (got < n) {
                ssize_t r = read(fd, b + got, n - got);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (r == 0)
                        break;
                got += (size_t)r;
        }
        return (int)got;
}

int sbx_read_file(const char *path, size_t limit, char **ret, size_t *ret_size)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, alloc = 0;

        if (fd < 0)
                return negative_errno();
        for (;;) {
                if (alloc - size < 4096) {
                        size_t nalloc = alloc ? alloc * 2 : 8192;
                        char *nb = realloc(buf, nalloc + 1);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        alloc = nalloc;
                }
                ssize_t r = read(fd, buf + size, alloc - size);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (r == 0)
                        break;
                size += (size_t)r;
                if (size > limit)
                        return -EFBIG;
        }
        if (!buf) {
                buf = malloc(1);
                if (!buf)
                        return -ENOMEM;
        }
        buf[size] = '\0';
        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = size;
        return 0;
}

int sbx_write_file_atomic(const char *path, const void *p, size_t n, unsigned mode)
{
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        if (asprintf(&tmp, "%s.tmpXXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        r = sbx_write_full(fd, p, n);
        if (r >= 0 && fchmod(fd, (mode_t)mode) < 0)
                r = negative_errno();
        if (r >= 0 && fsync(fd) < 0)
                r = negative_errno();
        if (r >= 0 && rename(tmp, path) < 0)
                r = negative_errno();
        if (r < 0)
                unlink(tmp);
        return r;
}

int sbx_write_string(const char *path, const char *s)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return sbx_write_full(fd, s, strlen(s));
}
