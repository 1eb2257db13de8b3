/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * What a guest's serial console says about how it ended. The console is the guest's own output,
 * so it is read as untrusted bytes: any content, any length, NULs included.
 */

#include <stdbool.h>
#include <stddef.h>

/* The most bytes of a console's end worth reading for agent_console_panic_message(). */
#define AGENT_CONSOLE_TAIL_MAX 4096

/* Finds the last Linux kernel panic in `text` ("Kernel panic - not syncing: MESSAGE") and copies
 * MESSAGE to `buf`: up to the line's end, cut to fit `n` bytes with its NUL, anything but printable
 * ASCII replaced by '?'. Returns false (and leaves `buf` alone) when there is none or `n` is 0. */
bool agent_console_panic_message(const char *text, size_t len, char *buf, size_t n);
