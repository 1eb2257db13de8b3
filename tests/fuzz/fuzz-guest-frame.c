/* SPDX-License-Identifier: Apache-2.0 */
/* The guest channel carries bytes from a hostile guest to the agent: the frame reader must refuse
 * anything malformed without crashing, leaking or over-reading, whatever the split of the input. */
#include <stdint.h>
#include <stdlib.h>

#include "common/channel/channel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        SbxFrameReader r;
        SbxBuffer re = SBX_BUFFER_INIT;
        size_t off = 0;

        sbx_frame_reader_init(&r);
        /* Feed in pieces whose sizes come from the input itself, as a transport would deliver. */
        while (off < size) {
                size_t piece = 1 + data[off] % 97;
                if (piece > size - off)
                        piece = size - off;
                if (sbx_frame_reader_feed(&r, data + off, piece) < 0)
                        break;
                off += piece;
                Sbx__V1__Guest__GuestFrame *f;
                int k;
                while ((k = sbx_frame_reader_next(&r, &f)) == 1) {
                        /* Whatever decodes must encode again within limits. */
                        if (sbx_frame_append(&re, f) < 0 &&
                            sbx__v1__guest__guest_frame__get_packed_size(f) <= SBX_FRAME_MAX)
                                abort();
                        sbx__v1__guest__guest_frame__free_unpacked(f, NULL);
                }
                if (k < 0)
                        break;
        }
        sbx_buffer_done(&re);
        sbx_frame_reader_done(&r);
        return 0;
}
