/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * One error convention for the whole project: functions return 0 (or a positive count) on success
 * and a negative error on failure. An error is either -errno or -SBX_E_*, a project code taken
 * from the table below. Every error has a name, a message and the gRPC status it maps to, so that
 * an RPC handler can turn any failure into a status a person can act on.
 */

#include <stdbool.h>

/* gRPC status codes; the numbers are fixed by the gRPC protocol. */
typedef enum SbxStatus {
        SBX_STATUS_OK = 0,
        SBX_STATUS_CANCELLED = 1,
        SBX_STATUS_UNKNOWN = 2,
        SBX_STATUS_INVALID_ARGUMENT = 3,
        SBX_STATUS_DEADLINE_EXCEEDED = 4,
        SBX_STATUS_NOT_FOUND = 5,
        SBX_STATUS_ALREADY_EXISTS = 6,
        SBX_STATUS_PERMISSION_DENIED = 7,
        SBX_STATUS_RESOURCE_EXHAUSTED = 8,
        SBX_STATUS_FAILED_PRECONDITION = 9,
        SBX_STATUS_ABORTED = 10,
        SBX_STATUS_OUT_OF_RANGE = 11,
        SBX_STATUS_UNIMPLEMENTED = 12,
        SBX_STATUS_INTERNAL = 13,
        SBX_STATUS_UNAVAILABLE = 14,
        SBX_STATUS_DATA_LOSS = 15,
        SBX_STATUS_UNAUTHENTICATED = 16,
        _SBX_STATUS_MAX,
} SbxStatus;

/* Project error codes start well above any errno value. */
#define SBX_ERROR_BASE 10000

/* X(name, gRPC status, message) */
#define SBX_ERROR_TABLE(X)                                                                        \
        X(UNKNOWN, UNKNOWN, "Unknown error")                                                      \
        X(INTERNAL, INTERNAL, "Internal error")                                                   \
        X(UNAVAILABLE, UNAVAILABLE, "Service unavailable")                                        \
        X(UNAUTHENTICATED, UNAUTHENTICATED, "Missing or invalid credentials")                     \
        X(PERMISSION_DENIED, PERMISSION_DENIED, "Permission denied")                              \
        X(FAILED_PRECONDITION, FAILED_PRECONDITION, "Operation not allowed in the current state") \
        X(RESOURCE_EXHAUSTED, RESOURCE_EXHAUSTED, "Resource exhausted")                           \
        X(QUOTA_EXCEEDED, RESOURCE_EXHAUSTED, "Organization quota exceeded")                      \
        X(NO_CAPACITY, RESOURCE_EXHAUSTED, "No node has capacity")                                \
        X(ABORTED, ABORTED, "Operation aborted by a concurrent change")                           \
        X(TXN_CONFLICT, ABORTED, "Transaction compare failed")                                    \
        X(COMPACTED, OUT_OF_RANGE, "Requested revision has been compacted")                       \
        X(LEASE_LOST, UNAVAILABLE, "Lease lost")                                                  \
        X(NOT_LEADER, FAILED_PRECONDITION, "Not the leader")                                      \
        X(PROTOCOL, INVALID_ARGUMENT, "Malformed message")                                        \
        X(TOO_LARGE, RESOURCE_EXHAUSTED, "Message too large")                                     \
        X(DATA_LOSS, DATA_LOSS, "Data loss")                                                      \
        X(NOT_RUNNING, FAILED_PRECONDITION, "Sandbox is not running")

enum {
        _SBX_E_FIRST = SBX_ERROR_BASE - 1,
#define SBX_ERROR_ENUM(name, status, msg) SBX_E_##name,
        SBX_ERROR_TABLE(SBX_ERROR_ENUM)
#undef SBX_ERROR_ENUM
                _SBX_E_LAST,
};

/* The symbolic name of an error ("ENOENT", "SBX_E_QUOTA_EXCEEDED"); never NULL. Accepts r < 0 or r > 0. */
const char *sbx_error_name(int r);

/* A human-readable message for an error (strerror() for errno values); never NULL. */
const char *sbx_error_message(int r);

/* The gRPC status an error maps to. 0 maps to SBX_STATUS_OK. */
SbxStatus sbx_error_to_status(int r);

/* A representative negative error for a gRPC status; 0 for SBX_STATUS_OK. */
int sbx_error_from_status(SbxStatus status);

/* The canonical upper-case name of a gRPC status ("NOT_FOUND"); "UNKNOWN" for out-of-range values. */
const char *sbx_status_name(SbxStatus status);

/* Parses a status name as written by sbx_status_name(); returns -EINVAL if unknown. */
int sbx_status_from_name(const char *name, SbxStatus *ret_status);

/* True when a failure with this status may succeed if simply retried. */
bool sbx_status_is_retryable(SbxStatus status);
