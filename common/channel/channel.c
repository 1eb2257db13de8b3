/* SPDX-License-Identifier: Apache-2.0 */
#include "common/channel/channel.h"

#include <errno.h>

void sbx_frame_reader_init(SbxFrameReader *r)
{
        *r = (SbxFrameReader){ .buf = SBX_BUFFER_INIT };
        /* At most one whole frame and the start of the next may wait here. */
        sbx_buffer_set_limit(&r->buf, 2 * (SBX_FRAME_MAX + 4));
}

void sbx_frame_reader_done(SbxFrameReader *r)
{
        sbx_buffer_done(&r->buf);
}

int sbx_frame_reader_feed(SbxFrameReader *r, const void *p, size_t n)
{
        if (r->error < 0)
                return r->error;
        int k = sbx_buffer_append(&r->buf, p, n);
        if (k < 0)
                r->error = k;
        return k;
}

int sbx_frame_reader_next(SbxFrameReader *r, Sbx__V1__Guest__GuestFrame **ret)
{
        size_t have = sbx_buffer_size(&r->buf);
        const uint8_t *p = sbx_buffer_data(&r->buf);
        uint32_t len;

        if (r->error < 0)
                return r->error;
        if (have < 4)
                return 0;
        len = sbx_read_be32(p);
        if (len > SBX_FRAME_MAX)
                return r->error = -EMSGSIZE;
        if (have < 4 + (size_t)len)
                return 0;
        Sbx__V1__Guest__GuestFrame *f = sbx__v1__guest__guest_frame__unpack(NULL, len, p + 4);
        if (!f)
                return r->error = -EBADMSG;
        sbx_buffer_consume(&r->buf, 4 + (size_t)len);
        *ret = f;
        return 1;
}

int sbx_frame_append(SbxBuffer *out, const Sbx__V1__Guest__GuestFrame *f)
{
        size_t n = sbx__v1__guest__guest_frame__get_packed_size(f);
        uint8_t *p;
        int r;

        if (n > SBX_FRAME_MAX)
                return -EMSGSIZE;
        r = sbx_buffer_reserve(out, 4 + n, &p);
        if (r < 0)
                return r;
        sbx_write_be32(p, (uint32_t)n);
        sbx__v1__guest__guest_frame__pack(f, p + 4);
        sbx_buffer_commit(out, 4 + n);
        return 0;
}
