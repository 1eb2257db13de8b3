/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Macros every sbx source file may use: scope-bound cleanup, ownership hand-off and a few
 * arithmetic helpers. Nothing here allocates or logs.
 */

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _unused_       __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_     __attribute__((noreturn))
#define _warn_unused_  __attribute__((warn_unused_result))
#define _likely_(x)    (__builtin_expect(!!(x), 1))
#define _unlikely_(x)  (__builtin_expect(!!(x), 0))
#define _fallthrough_  __attribute__((fallthrough))
#define _sentinel_     __attribute__((sentinel))

#define ELEMENTSOF(a)        (sizeof(a) / sizeof((a)[0]))
#define SBX_MIN(a, b)        ((a) < (b) ? (a) : (b))
#define SBX_MAX(a, b)        ((a) > (b) ? (a) : (b))
#define SBX_CLAMP(x, lo, hi) SBX_MIN(SBX_MAX((x), (lo)), (hi))
#define STRINGIFY_(x)        #x
#define STRINGIFY(x)         STRINGIFY_(x)

/* qsort(3) of an array that may be empty: protobuf-c and our own builders leave an empty array's
 * pointer NULL, and qsort's base must never be NULL, even for no elements. */
#define qsort_safe(base, n, size, cmp)               \
        do {                                         \
                size_t _n_ = (n);                    \
                if (_n_ > 1)                         \
                        qsort(base, _n_, size, cmp); \
        } while (0)

/* Recovers the enclosing struct from a pointer to one of its members. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Returns the pointer and forgets it, so that a cleanup attribute will not free it. */
#define TAKE_PTR(p)                      \
        ({                               \
                __typeof__(p) _p_ = (p); \
                (p) = NULL;              \
                _p_;                     \
        })

/* Returns the fd and forgets it, so that _cleanup_close_ will not close it. */
#define TAKE_FD(fd)              \
        ({                       \
                int _fd_ = (fd); \
                (fd) = -1;       \
                _fd_;            \
        })

/* Defines `name(type *p)`, a cleanup helper that calls `func(*p)` when *p is not NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func) \
        static inline void func##p(type *p)     \
        {                                       \
                if (*p)                         \
                        func(*p);               \
        }

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

/* Frees a NULL-terminated array of strings and the array itself; returns NULL. */
static inline char **strv_free(char **l)
{
        if (!l)
                return NULL;
        for (char **s = l; *s; s++)
                free(*s);
        free(l);
        return NULL;
}

static inline void strv_freep(char ***l)
{
        strv_free(*l);
}

#define _cleanup_free_      _cleanup_(freep)
#define _cleanup_close_     _cleanup_(closep)
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* Allocates zeroed memory for n objects of type t; NULL on overflow or exhaustion. */
#define new0(t, n) ((t *)calloc((n), sizeof(t)))

/* Turns a negative errno into a positive one for strerror()/%m. */
#define ERRNO_VALUE(r) (abs(r))

/* Returns -errno from the last failed libc call, never 0 (a missing errno becomes -EIO). */
static inline int negative_errno(void)
{
        return errno > 0 ? -errno : -EIO;
}

#define STRV_FOREACH(s, l) for (char **s = (l); s && *s; s++)
