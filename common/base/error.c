/* SPDX-License-Identifier: Apache-2.0 */
#include "common/base/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"

typedef struct ProjectError {
        const char *name;
        const char *message;
        SbxStatus status;
} ProjectError;

static const ProjectError project_errors[] = {
#define SBX_ERROR_ENTRY(n, s, m) { "SBX_E_" #n, m, SBX_STATUS_##s },
        SBX_ERROR_TABLE(SBX_ERROR_ENTRY)
#undef SBX_ERROR_ENTRY
};

static const char *const status_names[_SBX_STATUS_MAX] = {
        [SBX_STATUS_OK] = "OK",
        [SBX_STATUS_CANCELLED] = "CANCELLED",
        [SBX_STATUS_UNKNOWN] = "UNKNOWN",
        [SBX_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
        [SBX_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
        [SBX_STATUS_NOT_FOUND] = "NOT_FOUND",
        [SBX_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
        [SBX_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
        [SBX_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
        [SBX_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
        [SBX_STATUS_ABORTED] = "ABORTED",
        [SBX_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
        [SBX_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
        [SBX_STATUS_INTERNAL] = "INTERNAL",
        [SBX_STATUS_UNAVAILABLE] = "UNAVAILABLE",
        [SBX_STATUS_DATA_LOSS] = "DATA_LOSS",
        [SBX_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

static const ProjectError *project_error(int r)
{
        int e = ERRNO_VALUE(r);
        if (e > _SBX_E_FIRST && e < _SBX_E_LAST)
                return &project_errors[e - SBX_ERROR_BASE];
        return NULL;
}

const char *sbx_error_name(int r)
{
        const ProjectError *p = project_error(r);
        if (p)
                return p->name;
        const char *n = strerrorname_np(ERRNO_VALUE(r));
        return n ? n : "EUNKNOWN";
}

const char *sbx_error_message(int r)
{
        const ProjectError *p = project_error(r);
        if (p)
                return p->message;
        return strerror(ERRNO_VALUE(r));
}

SbxStatus sbx_error_to_status(int r)
{
        if (r == 0)
                return SBX_STATUS_OK;
        const ProjectError *p = project_error(r);
        if (p)
                return p->status;

        switch (ERRNO_VALUE(r)) {
        case EINVAL:
        case E2BIG:
        case ENAMETOOLONG:
        case EBADMSG:
        case EILSEQ:
                return SBX_STATUS_INVALID_ARGUMENT;
        case ENOENT:
        case ESRCH:
        case ENXIO:
                return SBX_STATUS_NOT_FOUND;
        case EEXIST:
                return SBX_STATUS_ALREADY_EXISTS;
        case EACCES:
        case EPERM:
        case EROFS:
                return SBX_STATUS_PERMISSION_DENIED;
        case ENOMEM:
        case ENOSPC:
        case EDQUOT:
        case EMFILE:
        case ENFILE:
        case EMSGSIZE:
        case EFBIG:
                return SBX_STATUS_RESOURCE_EXHAUSTED;
        case ENOTDIR:
        case EISDIR:
        case ENOTEMPTY:
        case EBUSY:
        case ELOOP:
        case EXDEV:
        case ETXTBSY:
                return SBX_STATUS_FAILED_PRECONDITION;
        case ERANGE:
        case EOVERFLOW:
                return SBX_STATUS_OUT_OF_RANGE;
        case ETIMEDOUT:
        case ETIME:
                return SBX_STATUS_DEADLINE_EXCEEDED;
        case ECANCELED:
                return SBX_STATUS_CANCELLED;
        case ENOSYS:
        case EOPNOTSUPP:
                return SBX_STATUS_UNIMPLEMENTED;
        case ENOTCONN:
        case ECONNREFUSED:
        case ECONNRESET:
        case ECONNABORTED:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case EPIPE:
        case EAGAIN:
        case ESHUTDOWN:
                return SBX_STATUS_UNAVAILABLE;
        case EIO:
                return SBX_STATUS_INTERNAL;
        default:
                return SBX_STATUS_UNKNOWN;
        }
}

int sbx_error_from_status(SbxStatus status)
{
        switch (status) {
        case SBX_STATUS_OK:
                return 0;
        case SBX_STATUS_CANCELLED:
                return -ECANCELED;
        case SBX_STATUS_INVALID_ARGUMENT:
                return -EINVAL;
        case SBX_STATUS_DEADLINE_EXCEEDED:
                return -ETIMEDOUT;
        case SBX_STATUS_NOT_FOUND:
                return -ENOENT;
        case SBX_STATUS_ALREADY_EXISTS:
                return -EEXIST;
        case SBX_STATUS_PERMISSION_DENIED:
                return -SBX_E_PERMISSION_DENIED;
        case SBX_STATUS_RESOURCE_EXHAUSTED:
                return -SBX_E_RESOURCE_EXHAUSTED;
        case SBX_STATUS_FAILED_PRECONDITION:
                return -SBX_E_FAILED_PRECONDITION;
        case SBX_STATUS_ABORTED:
                return -SBX_E_ABORTED;
        case SBX_STATUS_OUT_OF_RANGE:
                return -ERANGE;
        case SBX_STATUS_UNIMPLEMENTED:
                return -EOPNOTSUPP;
        case SBX_STATUS_INTERNAL:
                return -SBX_E_INTERNAL;
        case SBX_STATUS_UNAVAILABLE:
                return -SBX_E_UNAVAILABLE;
        case SBX_STATUS_DATA_LOSS:
                return -SBX_E_DATA_LOSS;
        case SBX_STATUS_UNAUTHENTICATED:
                return -SBX_E_UNAUTHENTICATED;
        case SBX_STATUS_UNKNOWN:
        default:
                return -SBX_E_UNKNOWN;
        }
}

const char *sbx_status_name(SbxStatus status)
{
        if ((unsigned)status >= _SBX_STATUS_MAX)
                return "UNKNOWN";
        return status_names[status];
}

int sbx_status_from_name(const char *name, SbxStatus *ret_status)
{
        for (unsigned i = 0; i < _SBX_STATUS_MAX; i++)
                if (strcmp(status_names[i], name) == 0) {
                        *ret_status = (SbxStatus)i;
                        return 0;
                }
        return -EINVAL;
}

bool sbx_status_is_retryable(SbxStatus status)
{
        return status == SBX_STATUS_UNAVAILABLE || status == SBX_STATUS_ABORTED;
}
