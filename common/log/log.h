/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The one log API. Daemons log once, at the boundary where an error is handled; library code in
 * common/ logs at debug level at most and returns errors instead. Every line carries the program
 * name and pid; the format is text or JSON lines, chosen at start-up. Lines are written to stderr
 * with a single write(2), so lines from several threads never interleave.
 *
 *     return log_error_errno(r, "Failed to create tap %s: %m", name);
 *     log_info_fields(LOG_FIELDS({ "sandbox", id }, { "org", org }), "Sandbox started in %s", dur);
 *
 * In a format string, %m expands to the message of the error passed to the *_errno variants (or of
 * errno for the others).
 */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>

#include "common/base/macro.h"

typedef enum SbxLogLevel {
        SBX_LOG_DEBUG,
        SBX_LOG_INFO,
        SBX_LOG_WARNING,
        SBX_LOG_ERROR,
} SbxLogLevel;

typedef enum SbxLogFormat {
        SBX_LOG_TEXT,
        SBX_LOG_JSON,
} SbxLogFormat;

typedef struct SbxLogField {
        const char *key;
        const char *value; /* NULL values are skipped */
} SbxLogField;

/* A NULL-key-terminated array of fields, built in place. */
#define LOG_FIELDS(...) ((const SbxLogField[]){ __VA_ARGS__, { NULL, NULL } })

/* Sets the program name, format and threshold. Safe to call again (e.g. after loading config). */
void sbx_log_setup(const char *program, SbxLogFormat format, SbxLogLevel level);

/* Redirects output to another fd (tests); -1 restores stderr. */
void sbx_log_set_fd(int fd);

SbxLogLevel sbx_log_get_level(void);
bool sbx_log_enabled(SbxLogLevel level);

/* "debug", "info", "warning", "error" */
int sbx_log_level_from_string(const char *s, SbxLogLevel *ret);
const char *sbx_log_level_to_string(SbxLogLevel level);
/* "text", "json" */
int sbx_log_format_from_string(const char *s, SbxLogFormat *ret);

/*
 * Writes one line if `level` passes the threshold. `error` is a negative error (or 0) used for %m
 * and recorded as a field. Returns `error` if it is negative, else 0, so callers can return it.
 */
int sbx_log_internal(SbxLogLevel level, int error, const char *file, int line, const char *func,
                     const SbxLogField *fields, const char *format, ...) _printf_(7, 8);
int sbx_log_internalv(SbxLogLevel level, int error, const char *file, int line, const char *func,
                      const SbxLogField *fields, const char *format, va_list ap) _printf_(7, 0);

#define log_full_fields(level, error, fields, ...)                                                        \
        ({                                                                                                \
                int _e_ = (error);                                                                        \
                sbx_log_enabled(level)                                                                    \
                        ? sbx_log_internal(level, _e_, __FILE__, __LINE__, __func__, fields, __VA_ARGS__) \
                        : (_e_ < 0 ? _e_ : 0);                                                            \
        })

#define log_debug(...)   log_full_fields(SBX_LOG_DEBUG, 0, NULL, __VA_ARGS__)
#define log_info(...)    log_full_fields(SBX_LOG_INFO, 0, NULL, __VA_ARGS__)
#define log_warning(...) log_full_fields(SBX_LOG_WARNING, 0, NULL, __VA_ARGS__)
#define log_error(...)   log_full_fields(SBX_LOG_ERROR, 0, NULL, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_fields(SBX_LOG_DEBUG, e, NULL, __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_fields(SBX_LOG_INFO, e, NULL, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_fields(SBX_LOG_WARNING, e, NULL, __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_fields(SBX_LOG_ERROR, e, NULL, __VA_ARGS__)

#define log_oom() log_error_errno(-ENOMEM, "Out of memory")

#define log_debug_fields(f, ...)   log_full_fields(SBX_LOG_DEBUG, 0, f, __VA_ARGS__)
#define log_info_fields(f, ...)    log_full_fields(SBX_LOG_INFO, 0, f, __VA_ARGS__)
#define log_warning_fields(f, ...) log_full_fields(SBX_LOG_WARNING, 0, f, __VA_ARGS__)
#define log_error_fields(f, ...)   log_full_fields(SBX_LOG_ERROR, 0, f, __VA_ARGS__)
