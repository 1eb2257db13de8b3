/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "agent/agent-console.h"

bool agent_console_panic_message(const char *text, size_t len, char *buf, size_t n)
{
        static const char marker[] = "Kernel panic - not syncing: ";
        const size_t marker_len = sizeof(marker) - 1;
        const char *end = text + len, *msg = NULL;

        if (!text || n == 0)
                return false;
        for (const char *p = text; (p = memmem(p, (size_t)(end - p), marker, marker_len)); p += marker_len)
                msg = p + marker_len;
        if (!msg)
                return false;
        size_t i = 0;
        for (; i + 1 < n && msg + i < end && msg[i] != '\n' && msg[i] != '\r'; i++)
                buf[i] = msg[i] >= 0x20 && msg[i] < 0x7f ? msg[i] : '?';
        buf[i] = '\0';
        return true;
}
