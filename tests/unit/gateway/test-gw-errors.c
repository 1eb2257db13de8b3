/* SPDX-License-Identifier: Apache-2.0 */
/* gateway/gw-errors: the SDK's error objects from data-plane statuses. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "gateway/gw-errors.h"

static const char *str(json_t *o, const char *k)
{
        return json_string_value(json_object_get(o, k));
}

Test(gw_errors, errno_from_the_guest_message_names_the_class)
{
        json_t *e = gw_error_from_status(SBX_STATUS_NOT_FOUND, "stat /nope: No such file or directory");

        cr_assert_str_eq(str(e, "constructorName"), "NotFound");
        cr_assert_str_eq(str(e, "code"), "ENOENT");
        cr_assert_str_eq(str(e, "message"), "No such file or directory (os error 2): stat /nope");
        json_decref(e);

        e = gw_error_from_status(SBX_STATUS_FAILED_PRECONDITION, "remove /d: Directory not empty");
        cr_assert_str_eq(str(e, "constructorName"), "Error");
        cr_assert_str_eq(str(e, "code"), "ENOTEMPTY");
        json_decref(e);

        e = gw_error_from_status(SBX_STATUS_ALREADY_EXISTS, "mkdir /tmp: File exists");
        cr_assert_str_eq(str(e, "constructorName"), "AlreadyExists");
        cr_assert_str_eq(str(e, "code"), "EEXIST");
        json_decref(e);

        e = gw_error_from_status(SBX_STATUS_FAILED_PRECONDITION, "open /etc/x/y: Not a directory");
        cr_assert_str_eq(str(e, "constructorName"), "NotADirectory");
        json_decref(e);
}

Test(gw_errors, status_alone)
{
        json_t *e = gw_error_from_status(SBX_STATUS_NOT_FOUND, "Sandbox sbx_ams_x does not run on node n");

        cr_assert_str_eq(str(e, "constructorName"), "NotFound");
        cr_assert_str_eq(str(e, "code"), "ENOENT");
        cr_assert_str_eq(str(e, "message"), "Sandbox sbx_ams_x does not run on node n");
        json_decref(e);
        e = gw_error_from_status(SBX_STATUS_UNAVAILABLE, NULL);
        cr_assert_str_eq(str(e, "constructorName"), "Error");
        cr_assert_str_eq(str(e, "message"), "UNAVAILABLE");
        cr_assert_null(json_object_get(e, "code"));
        json_decref(e);
}

Test(gw_errors, abort_and_not_supported)
{
        json_t *e = gw_error_abort();

        cr_assert_str_eq(str(e, "constructorName"), "DOMException");
        cr_assert_str_eq(str(e, "name"), "AbortError");
        json_decref(e);
        e = gw_error_not_supported("spawnDeno", "no Deno");
        cr_assert_str_eq(str(e, "constructorName"), "NotSupported");
        cr_assert(strstr(str(e, "message"), "spawnDeno"));
        json_decref(e);
}

Test(gw_errors, hostile_messages_stay_valid_json)
{
        json_t *e = gw_error_new("Error", NULL, "%s", "bad \xFF bytes");

        cr_assert_not_null(e);
        cr_assert_str_eq(str(e, "message"), "bad ? bytes");
        json_decref(e);
        cr_assert_eq(gw_errno_from_message("x: Not an errno text"), 0);
        cr_assert_eq(gw_errno_from_message(NULL), 0);
}
