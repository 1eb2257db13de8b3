/* SPDX-License-Identifier: Apache-2.0 */
/* common/log: text and JSON lines, levels, fields, %m for errno and project errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/log/log.h"

static int pipefd[2];

static void setup(void)
{
        cr_assert_eq(pipe(pipefd), 0);
        sbx_log_set_fd(pipefd[1]);
}

static char *drain(void)
{
        static char buf[8192];
        close(pipefd[1]);
        ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);
        buf[n > 0 ? n : 0] = '\0';
        close(pipefd[0]);
        sbx_log_set_fd(-1);
        return buf;
}

TestSuite(log, .init = setup);

Test(log, text_line_with_fields_and_errno)
{
        sbx_log_setup("/usr/bin/sbx-agent", SBX_LOG_TEXT, SBX_LOG_INFO);
        int r = log_error_errno(-ENOENT, "Failed to open %s: %m", "disk.img");
        cr_assert_eq(r, -ENOENT, "log_*_errno returns the error");
        log_info_fields(LOG_FIELDS({ "sandbox", "sbx_ams_0123" }, { "org", "demo org" }), "Started");
        log_debug("not shown at info level");
        char *out = drain();
        cr_assert(strstr(out, "sbx-agent["), "%s", out);
        cr_assert(strstr(out, ": error: Failed to open disk.img: No such file or directory error=ENOENT\n"),
                  "%s", out);
        cr_assert(strstr(out, ": info: Started sandbox=sbx_ams_0123 org=\"demo org\"\n"), "%s", out);
        cr_assert_null(strstr(out, "not shown"));
}

Test(log, project_error_message_and_newlines)
{
        sbx_log_setup("sbx-scheduler", SBX_LOG_TEXT, SBX_LOG_DEBUG);
        log_warning_errno(-SBX_E_QUOTA_EXCEEDED, "Create refused: %m (100%% used)\nsecond line");
        char *out = drain();
        cr_assert(strstr(out, "warning: Create refused: Organization quota exceeded (100% used) second line "
                              "error=SBX_E_QUOTA_EXCEEDED\n"),
                  "%s", out);
        cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "one event, one line");
}

Test(log, json_lines)
{
        sbx_log_setup("sbx-gateway", SBX_LOG_JSON, SBX_LOG_INFO);
        log_info_fields(LOG_FIELDS({ "node", "n1" }), "quote \" and backslash \\");
        char *out = drain();
        json_error_t err;
        json_t *o = json_loads(out, 0, &err);
        cr_assert_not_null(o, "not JSON: %s (%s)", out, err.text);
        cr_assert_str_eq(json_string_value(json_object_get(o, "level")), "info");
        cr_assert_str_eq(json_string_value(json_object_get(o, "proc")), "sbx-gateway");
        cr_assert_str_eq(json_string_value(json_object_get(o, "node")), "n1");
        cr_assert_str_eq(json_string_value(json_object_get(o, "msg")), "quote \" and backslash \\");
        cr_assert_not_null(json_object_get(o, "time"));
        json_decref(o);
}

Test(log, level_and_format_names)
{
        SbxLogLevel l;
        SbxLogFormat f;
        cr_assert_eq(sbx_log_level_from_string("warning", &l), 0);
        cr_assert_eq(l, SBX_LOG_WARNING);
        cr_assert_eq(sbx_log_level_from_string("loud", &l), -EINVAL);
        cr_assert_eq(sbx_log_format_from_string("json", &f), 0);
        cr_assert_eq(f, SBX_LOG_JSON);
        cr_assert_eq(sbx_log_format_from_string("xml", &f), -EINVAL);
        drain();
}
