/* SPDX-License-Identifier: Apache-2.0 */
#include "common/log/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/buffer.h"
#include "common/base/error.h"
#include "common/base/fd-util.h"
#include "common/base/string-util.h"
#include "common/base/time-util.h"

static char log_program[64] = "sbx";
static _Atomic int log_level = SBX_LOG_INFO;
static _Atomic int log_format = SBX_LOG_TEXT;
static _Atomic int log_fd = -1;

static const char *const level_names[] = {
        [SBX_LOG_DEBUG] = "debug",
        [SBX_LOG_INFO] = "info",
        [SBX_LOG_WARNING] = "warning",
        [SBX_LOG_ERROR] = "error",
};

void sbx_log_setup(const char *program, SbxLogFormat format, SbxLogLevel level)
{
        if (program) {
                const char *base = strrchr(program, '/');
                snprintf(log_program, sizeof(log_program), "%s", base ? base + 1 : program);
        }
        log_format = format;
        log_level = level;
}

void sbx_log_set_fd(int fd)
{
        log_fd = fd;
}

SbxLogLevel sbx_log_get_level(void)
{
        return (SbxLogLevel)log_level;
}

bool sbx_log_enabled(SbxLogLevel level)
{
        return (int)level >= log_level;
}

int sbx_log_level_from_string(const char *s, SbxLogLevel *ret)
{
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (streq(s, level_names[i])) {
                        *ret = (SbxLogLevel)i;
                        return 0;
                }
        return -EINVAL;
}

const char *sbx_log_level_to_string(SbxLogLevel level)
{
        return (unsigned)level < ELEMENTSOF(level_names) ? level_names[level] : "unknown";
}

int sbx_log_format_from_string(const char *s, SbxLogFormat *ret)
{
        if (streq(s, "text"))
                *ret = SBX_LOG_TEXT;
        else if (streq(s, "json"))
                *ret = SBX_LOG_JSON;
        else
                return -EINVAL;
        return 0;
}

/* Expands %m to the error's message (with any '%' in it doubled), keeping "%%" intact. */
static char *expand_percent_m(const char *format, int error)
{
        SbxBuffer b = SBX_BUFFER_INIT;
        const char *msg = sbx_error_message(error ? error : -errno);
        char *ret = NULL;

        for (const char *p = format; *p; p++) {
                if (p[0] == '%' && p[1] == '%') {
                        sbx_buffer_append(&b, "%%", 2);
                        p++;
                } else if (p[0] == '%' && p[1] == 'm') {
                        for (const char *m = msg; *m; m++)
                                sbx_buffer_append(&b, *m == '%' ? "%%" : m, *m == '%' ? 2 : 1);
                        p++;
                } else
                        sbx_buffer_append(&b, p, 1);
        }
        if (sbx_buffer_steal_string(&b, &ret) < 0)
                return NULL;
        return ret;
}

static void emit(const char *line, size_t n)
{
        int fd = log_fd >= 0 ? log_fd : STDERR_FILENO;
        (void)sbx_write_full(fd, line, n);
}

static void emit_text(SbxLogLevel level, int error, const SbxLogField *fields, const char *msg)
{
        SbxBuffer b = SBX_BUFFER_INIT;
        char ts[SBX_TIMESTAMP_MAX];

        sbx_buffer_appendf(&b, "%s %s[%d]: %s: %s", sbx_format_timestamp(ts, sizeof(ts), sbx_now_realtime()),
                           log_program, (int)getpid(), level_names[level], msg);
        for (const SbxLogField *f = fields; f && f->key; f++)
                if (f->value)
                        sbx_buffer_appendf(&b, strpbrk(f->value, " \"=") ? " %s=\"%s\"" : " %s=%s", f->key,
                                           f->value);
        if (error < 0)
                sbx_buffer_appendf(&b, " error=%s", sbx_error_name(error));
        sbx_buffer_append(&b, "\n", 1);
        emit((const char *)sbx_buffer_data(&b), sbx_buffer_size(&b));
        sbx_buffer_done(&b);
}

static void emit_json(SbxLogLevel level, int error, const char *file, int line, const char *func,
                      const SbxLogField *fields, const char *msg)
{
        char ts[SBX_TIMESTAMP_MAX];
        json_t *o = json_object();

        if (!o)
                return;
        json_object_set_new(o, "time",
                            json_string(sbx_format_timestamp(ts, sizeof(ts), sbx_now_realtime())));
        json_object_set_new(o, "level", json_string(level_names[level]));
        json_object_set_new(o, "proc", json_string(log_program));
        json_object_set_new(o, "pid", json_integer(getpid()));
        json_object_set_new(o, "msg", json_string(msg));
        for (const SbxLogField *f = fields; f && f->key; f++)
                if (f->value)
                        json_object_set_new(o, f->key, json_string(f->value));
        if (error < 0)
                json_object_set_new(o, "error", json_string(sbx_error_name(error)));
        if (level == SBX_LOG_DEBUG) {
                json_object_set_new(o, "file", json_string(file));
                json_object_set_new(o, "line", json_integer(line));
                json_object_set_new(o, "func", json_string(func));
        }
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(o);
        if (!s)
                return;
        /* One write per line: append the newline to the document itself. */
        size_t n = strlen(s);
        char *out = realloc(s, n + 2);
        if (!out) {
                free(s);
                return;
        }
        out[n] = '\n';
        out[n + 1] = '\0';
        emit(out, n + 1);
        free(out);
}

int sbx_log_internalv(SbxLogLevel level, int error, const char *file, int line, const char *func,
                      const SbxLogField *fields, const char *format, va_list ap)
{
        int saved_errno = errno;
        int ret = error < 0 ? error : 0;

        if (!sbx_log_enabled(level))
                return ret;

        _cleanup_free_ char *fmt = expand_percent_m(format, error);
        _cleanup_free_ char *msg = NULL;
        if (!fmt || vasprintf(&msg, fmt, ap) < 0) {
                errno = saved_errno;
                return ret;
        }
        /* Keep one event on one line whatever the message holds. */
        for (char *c = msg; *c; c++)
                if (*c == '\n' || *c == '\r')
                        *c = ' ';

        if (log_format == SBX_LOG_JSON)
                emit_json(level, error, file, line, func, fields, msg);
        else
                emit_text(level, error, fields, msg);

        errno = saved_errno;
        return ret;
}

int sbx_log_internal(SbxLogLevel level, int error, const char *file, int line, const char *func,
                     const SbxLogField *fields, const char *format, ...)
{
        va_list ap;
        va_start(ap, format);
        int r = sbx_log_internalv(level, error, file, line, func, fields, format, ap);
        va_end(ap);
        return r;
}
