/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Framing of the guest channel (proto/sbx/v1/guest.proto), shared by the agent and sbx-init: a
 * 4-byte big-endian length, then one GuestFrame. The reader is incremental (feed it whatever the
 * transport delivered) and strict: a length above SBX_FRAME_MAX or bytes that are not a GuestFrame
 * are errors, after which the channel must be closed — the reader stays failed.
 */

#include <stddef.h>
#include <stdint.h>

#include "common/base/buffer.h"
#include "proto/sbx/v1/guest.pb-c.h"

#define SBX_FRAME_MAX      (1u << 20)
#define SBX_FRAME_CHUNK    65536u
#define SBX_CHANNEL_CREDIT 262144u

typedef struct SbxFrameReader {
        SbxBuffer buf;
        int error;
} SbxFrameReader;

void sbx_frame_reader_init(SbxFrameReader *r);
void sbx_frame_reader_done(SbxFrameReader *r);

/* Appends received bytes. -ENOBUFS when more than one maximal frame is pending (the peer ignores
 * framing), or the reader's earlier error. */
int sbx_frame_reader_feed(SbxFrameReader *r, const void *p, size_t n);

/*
 * Takes the next complete frame: returns 1 and the frame in *ret (free with
 * sbx__v1__guest__guest_frame__free_unpacked), 0 when more bytes are needed, -EMSGSIZE for an
 * oversized length, -EBADMSG for a frame that does not decode.
 */
int sbx_frame_reader_next(SbxFrameReader *r, Sbx__V1__Guest__GuestFrame **ret);

/* Appends a frame (length and body) to out. -EMSGSIZE when it exceeds SBX_FRAME_MAX. */
int sbx_frame_append(SbxBuffer *out, const Sbx__V1__Guest__GuestFrame *f);
