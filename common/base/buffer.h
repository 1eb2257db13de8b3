/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A growable byte buffer with a hard size limit. Readers consume from the front, writers append at
 * the back; the buffer compacts itself lazily. Used for framing on sockets and for building text.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/macro.h"

typedef struct SbxBuffer {
        uint8_t *data;
        size_t start; /* offset of the first unread byte */
        size_t end;   /* offset one past the last byte */
        size_t alloc;
        size_t limit; /* 0 = no limit other than SIZE_MAX */
} SbxBuffer;

#define SBX_BUFFER_INIT \
        {               \
                0       \
        }

/* Sets the maximum number of unread bytes the buffer may hold; appends beyond it fail with -ENOBUFS. */
void sbx_buffer_set_limit(SbxBuffer *b, size_t limit);

/* Frees the storage; the buffer is reusable afterwards (empty, limit kept). */
void sbx_buffer_done(SbxBuffer *b);

/* Drops the contents but keeps the storage. */
void sbx_buffer_clear(SbxBuffer *b);

static inline size_t sbx_buffer_size(const SbxBuffer *b)
{
        return b->end - b->start;
}

static inline const uint8_t *sbx_buffer_data(const SbxBuffer *b)
{
        return b->data ? b->data + b->start : (const uint8_t *)"";
}

/* Ensures room for `n` more bytes and returns a pointer to it in *ret; commit with sbx_buffer_commit(). */
int sbx_buffer_reserve(SbxBuffer *b, size_t n, uint8_t **ret);
void sbx_buffer_commit(SbxBuffer *b, size_t n);

/* Appends bytes; -ENOBUFS past the limit, -ENOMEM on exhaustion. The buffer is unchanged on failure. */
int sbx_buffer_append(SbxBuffer *b, const void *p, size_t n);
int sbx_buffer_append_str(SbxBuffer *b, const char *s);
int sbx_buffer_appendf(SbxBuffer *b, const char *fmt, ...) _printf_(2, 3);
int sbx_buffer_appendv(SbxBuffer *b, const char *fmt, va_list ap) _printf_(2, 0);

/* Removes n bytes from the front (n must not exceed the size). */
void sbx_buffer_consume(SbxBuffer *b, size_t n);

/* Returns a NUL-terminated copy of the contents in *ret (caller frees). */
int sbx_buffer_steal_string(SbxBuffer *b, char **ret);

/* Read helpers for little binary headers: big-endian integers from the unread bytes at offset. */
uint32_t sbx_read_be32(const uint8_t *p);
void sbx_write_be32(uint8_t *p, uint32_t v);
