/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* File-descriptor helpers: flags, loops that survive EINTR and short transfers, whole-file reads. */

#include <stdbool.h>
#include <stddef.h>

int sbx_fd_nonblock(int fd, bool nonblock);
int sbx_fd_cloexec(int fd, bool cloexec);

/* Writes all n bytes (retrying on EINTR and short writes); blocking fds only. */
int sbx_write_full(int fd, const void *p, size_t n);

/* Reads up to n bytes, stopping early only at EOF; returns the count. */
int sbx_read_full(int fd, void *p, size_t n);

/* Reads a whole file of at most `limit` bytes into a NUL-terminated string; -EFBIG past the limit. */
int sbx_read_file(const char *path, size_t limit, char **ret, size_t *ret_size);

/* Writes a file atomically (temporary file + rename) with the given mode. */
int sbx_write_file_atomic(const char *path, const void *p, size_t n, unsigned mode);
