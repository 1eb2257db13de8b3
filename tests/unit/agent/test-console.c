/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <string.h>

#include "agent/agent-console.h"

/* A string literal's bytes without its NUL, into an array. */
#define PANIC(lit, buf) agent_console_panic_message((lit), sizeof(lit) - 1, (buf), sizeof(buf))

Test(console, a_console_without_a_panic_has_no_message)
{
        char buf[64] = "untouched";
        cr_expect_not(PANIC("Run /init as init process\nreboot: Power down\n", buf));
        cr_expect_not(PANIC("", buf));
        cr_expect_not(PANIC("Kernel panic - not syncing:", buf), "the marker without its space");
        cr_expect_str_eq(buf, "untouched");
}

Test(console, the_message_ends_at_the_line_end)
{
        char buf[128];
        cr_assert(PANIC("CR2: 0\nKernel panic - not syncing: Fatal exception in interrupt\r\nKernel Offset: "
                        "disabled\n",
                        buf));
        cr_expect_str_eq(buf, "Fatal exception in interrupt");
        cr_assert(PANIC("Kernel panic - not syncing: VFS: Unable to mount root fs", buf), "no newline");
        cr_expect_str_eq(buf, "VFS: Unable to mount root fs");
        cr_assert(PANIC("Kernel panic - not syncing: \n", buf));
        cr_expect_str_eq(buf, "");
}

Test(console, the_last_panic_wins)
{
        char buf[64];
        cr_assert(PANIC("Kernel panic - not syncing: first\nKernel panic - not syncing: second\n", buf));
        cr_expect_str_eq(buf, "second");
}

Test(console, the_message_is_cut_to_fit)
{
        char buf[6];
        cr_assert(PANIC("Kernel panic - not syncing: Attempted to kill init!\n", buf));
        cr_expect_str_eq(buf, "Attem");
        char one[1];
        cr_assert(PANIC("Kernel panic - not syncing: x\n", one));
        cr_expect_eq(one[0], '\0');
        cr_expect_not(agent_console_panic_message("Kernel panic - not syncing: x", 29, one, 0),
                      "no room at all");
}

Test(console, guest_bytes_become_printable_ascii)
{
        static const char text[] = "\0\xff junk Kernel panic - not syncing: a\tb\x1b[31mc\xc3\xa9\0d\n";
        char buf[64];
        cr_assert(agent_console_panic_message(text, sizeof(text) - 1, buf, sizeof(buf)),
                  "a NUL before the marker hid it");
        cr_expect_str_eq(buf, "a?b?[31mc???d");
}

Test(console, nothing_is_read_past_the_length)
{
        /* The bytes after `len` would complete the marker and the message. */
        static const char text[] = "Kernel panic - not syncing: shown\nKernel panic - not sync";
        char buf[64];
        cr_assert(agent_console_panic_message(text, sizeof(text) - 1, buf, sizeof(buf)));
        cr_expect_str_eq(buf, "shown");
        cr_assert(agent_console_panic_message(text, 31, buf, sizeof(buf)));
        cr_expect_str_eq(buf, "sho");
}
