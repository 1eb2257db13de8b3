/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The SDK's error objects (deno-sandbox-protocol.md §2.6): {constructorName, message, code?, name?}.
 * The client rebuilds Error, TypeError, DOMException and the Deno.errors classes from
 * constructorName, and copies `code` onto the error; processKill and friends ignore errors whose
 * code is "ENOENT", so "no such process" must carry it.
 *
 * Failures from the data plane arrive as a gRPC status and a message; the guest writes messages as
 * "<operation> <path>: <strerror text>", so the errno is recovered from that text where possible
 * and the error is then named as Deno names it (ENOENT → NotFound, EEXIST → AlreadyExists, ...).
 * Pure functions; no I/O.
 */

#include <jansson.h>

#include "common/base/error.h"
#include "common/base/macro.h"

/* {constructorName, message[, code]}; `code` may be NULL. NULL only when memory runs out. */
json_t *gw_error_new(const char *constructor, const char *code, const char *fmt, ...) _printf_(3, 4);

/* The DOMException AbortError that completes an aborted request (§2.8, abort protocol). */
json_t *gw_error_abort(void);

/* The NotSupported error of a method sbx does not offer (yet); `why` completes the message. */
json_t *gw_error_not_supported(const char *method, const char *why);

/* An errno value recovered from the end of a guest message ("stat /x: No such file or directory"
 * gives ENOENT), or 0. */
int gw_errno_from_message(const char *message);

/*
 * The error object for a failed data-plane call: the class and code from the errno in the message
 * when there is one, else from the status (NOT_FOUND → NotFound/ENOENT, ALREADY_EXISTS →
 * AlreadyExists/EEXIST, PERMISSION_DENIED → PermissionDenied, DEADLINE_EXCEEDED → TimedOut,
 * INVALID_ARGUMENT → TypeError, anything else → Error). The message keeps the server's text.
 */
json_t *gw_error_from_status(SbxStatus status, const char *message);

/* The error class Deno uses for an errno value ("NotFound" for ENOENT), "Error" when it has none. */
const char *gw_error_class_for_errno(int e);
