/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* File-descriptor helpers: flags, loops that survive EINTR and short transfers, whole-file reads. */

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/base/macro.h"

/* _cleanup_(closedirp) DIR *d = opendir(...); */
DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

int sbx_fd_nonblock(int fd, bool nonblock);
int sbx_fd_cloexec(int fd, bool cloexec);

/* Writes all n bytes (retrying on EINTR and short writes); blocking fds only. */
int sbx_write_full(int fd, const void *p, size_t n);

/* Reads up to n bytes, stopping early only at EOF; returns the count. */
int sbx_read_full(int fd, void *p, size_t n);

/* Reads a whole file of at most `limit` bytes into a NUL-terminated string; -EFBIG past the limit. */
int sbx_read_file(const char *path, size_t limit, char **ret, size_t *ret_size);

/* Writes a file atomically (temporary file + rename) with the given mode. */
/* Writes a string to an existing file in one write (for /proc, /sys and cgroup files). */
int sbx_write_string(const char *path, const char *s);

int sbx_write_file_atomic(const char *path, const void *p, size_t n, unsigned mode);
