/* SPDX-License-Identifier: Apache-2.0 */
/* A guest's console is its own output: finding a panic message in it must never read outside the
 * bytes given, and what it returns must fit and be printable ASCII, whatever the guest printed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent-console.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* An exact-size copy, so that the sanitizer catches any read past the end. */
        char *text = malloc(size ? size : 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        size_t sizes[] = { 1, 2, 17, 160 };
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                char buf[160];
                memset(buf, 'Z', sizeof(buf));
                if (!agent_console_panic_message(text, size, buf, sizes[s]))
                        continue;
                size_t len = strnlen(buf, sizes[s]);
                if (len >= sizes[s])
                        abort();
                for (size_t i = 0; i < len; i++)
                        if (buf[i] < 0x20 || buf[i] >= 0x7f)
                                abort();
        }
        free(text);
        return 0;
}
