/* SPDX-License-Identifier: Apache-2.0 */
#include "gateway/gw-errors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/string-util.h"

/* Messages longer than this are cut: they come from the guest, which is hostile. */
#define MESSAGE_MAX 4096

json_t *gw_error_new(const char *constructor, const char *code, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        json_t *e, *m;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg)
                return NULL;
        if (strlen(msg) > MESSAGE_MAX)
                msg[MESSAGE_MAX] = '\0';
        /* The message may hold bytes from the guest: json_string() refuses invalid UTF-8. */
        m = json_string(msg);
        if (!m) {
                for (char *p = msg; *p; p++)
                        if ((unsigned char)*p >= 0x80)
                                *p = '?';
                m = json_string(msg);
        }
        e = json_pack("{s:s, s:o}", "constructorName", constructor, "message", m);
        if (e && code && json_object_set_new(e, "code", json_string(code)) < 0)
                e = (json_decref(e), NULL);
        return e;
}

json_t *gw_error_abort(void)
{
        json_t *e = gw_error_new("DOMException", NULL, "The signal has been aborted");

        if (e && json_object_set_new(e, "name", json_string("AbortError")) < 0)
                e = (json_decref(e), NULL);
        return e;
}

json_t *gw_error_not_supported(const char *method, const char *why)
{
        return gw_error_new("NotSupported", NULL, "%s is not supported by sbx: %s", method, why);
}

int gw_errno_from_message(const char *message)
{
        const char *colon;

        if (isempty(message))
                return 0;
        /* The strerror text is what follows the last ": ". */
        colon = strrchr(message, ':');
        const char *text = colon && colon[1] == ' ' ? colon + 2 : message;
        for (int e = 1; e < 134; e++) {
                const char *s = strerrordesc_np(e);
                if (s && streq(s, text))
                        return e;
        }
        return 0;
}

const char *gw_error_class_for_errno(int e)
{
        switch (e) {
        case ENOENT:
        case ESRCH:
                return "NotFound";
        case EEXIST:
                return "AlreadyExists";
        case EACCES:
        case EPERM:
                return "PermissionDenied";
        case ENOTDIR:
                return "NotADirectory";
        case EISDIR:
                return "IsADirectory";
        case ELOOP:
                return "FilesystemLoop";
        case EINVAL:
                return "TypeError";
        case EBUSY:
                return "Busy";
        case EPIPE:
                return "BrokenPipe";
        case EAGAIN:
                return "WouldBlock";
        case EINTR:
                return "Interrupted";
        case ETIMEDOUT:
                return "TimedOut";
        case ECONNREFUSED:
                return "ConnectionRefused";
        case ECONNRESET:
                return "ConnectionReset";
        case ECONNABORTED:
                return "ConnectionAborted";
        case ENOTCONN:
                return "NotConnected";
        case EADDRINUSE:
                return "AddrInUse";
        case EADDRNOTAVAIL:
                return "AddrNotAvailable";
        case ENETUNREACH:
                return "NetworkUnreachable";
        case EBADF:
                return "BadResource";
        default:
                return "Error";
        }
}

json_t *gw_error_from_status(SbxStatus status, const char *message)
{
        const char *msg = isempty(message) ? sbx_status_name(status) : message;
        int e = gw_errno_from_message(message);

        if (e > 0) {
                /* Deno's form: "No such file or directory (os error 2): stat '/x'". */
                const char *colon = strrchr(msg, ':');
                size_t what = colon ? (size_t)(colon - msg) : 0;
                if (what > 0)
                        return gw_error_new(gw_error_class_for_errno(e), sbx_error_name(-e),
                                            "%s (os error %d): %.*s", strerrordesc_np(e), e, (int)what, msg);
                return gw_error_new(gw_error_class_for_errno(e), sbx_error_name(-e), "%s (os error %d)",
                                    strerrordesc_np(e), e);
        }
        switch (status) {
        case SBX_STATUS_NOT_FOUND:
                return gw_error_new("NotFound", "ENOENT", "%s", msg);
        case SBX_STATUS_ALREADY_EXISTS:
                return gw_error_new("AlreadyExists", "EEXIST", "%s", msg);
        case SBX_STATUS_PERMISSION_DENIED:
                return gw_error_new("PermissionDenied", "EACCES", "%s", msg);
        case SBX_STATUS_DEADLINE_EXCEEDED:
                return gw_error_new("TimedOut", "ETIMEDOUT", "%s", msg);
        case SBX_STATUS_INVALID_ARGUMENT:
                return gw_error_new("TypeError", NULL, "%s", msg);
        case SBX_STATUS_CANCELLED:
                return gw_error_new("Interrupted", NULL, "%s", msg);
        default:
                return gw_error_new("Error", NULL, "%s", msg);
        }
}
