/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The host end of the guest channel: a unix socket to the VMM (QEMU's virtio-serial chardev, or
 * Cloud Hypervisor's vsock socket after "CONNECT <port>"), carrying length-prefixed GuestFrames
 * (common/channel). Streams are multiplexed by id; the agent opens them (odd ids) and gives each
 * to an owner that receives its frames. The channel is the guest's untrusted voice: every frame
 * is size-checked by the reader, and anything malformed ends the channel.
 */

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/time-util.h"
#include "proto/sbx/v1/guest.pb-c.h"

typedef struct AgentChannel AgentChannel;
typedef struct AgentStream AgentStream;

typedef struct AgentChannelCallbacks {
        /* sbx-init said Hello (once). */
        void (*on_hello)(AgentChannel *ch, const Sbx__V1__Guest__Hello *h, void *userdata);
        /* The connection ended or the guest broke the protocol (error < 0). Streams were closed. */
        void (*on_closed)(AgentChannel *ch, int error, void *userdata);
} AgentChannelCallbacks;

/* Connects to `path` (retrying while the VMM creates it, up to `timeout`), sends `config` when
 * `config` is not NULL (a fresh boot; NULL when re-attaching to a running guest), and starts
 * reading. With vsock_port > 0 the "CONNECT <port>" handshake of Cloud Hypervisor comes first. */
int agent_channel_connect(uv_loop_t *loop, const char *path, int vsock_port,
                          const Sbx__V1__Guest__Config *config, usec_t timeout,
                          const AgentChannelCallbacks *cbs, void *userdata, AgentChannel **ret);
/* Closes the connection; streams get on_close(-ECANCELED). The object is freed through the loop. */
void agent_channel_close(AgentChannel *ch);
bool agent_channel_ready(const AgentChannel *ch);

/* Sends a frame on stream 0 (ping, power-off). */
int agent_channel_send_control(AgentChannel *ch, Sbx__V1__Guest__GuestFrame *f);

/* Round trip of a ping: `cb` gets the time in microseconds, or an error. */
int agent_channel_ping(AgentChannel *ch, void (*cb)(int error, usec_t rtt, void *userdata), void *userdata);

typedef struct AgentStreamOps {
        /* A frame from the guest for this stream. */
        void (*on_frame)(AgentStream *s, const Sbx__V1__Guest__GuestFrame *f, void *userdata);
        /* The channel went away before the stream ended. */
        void (*on_close)(AgentStream *s, int error, void *userdata);
} AgentStreamOps;

int agent_stream_open(AgentChannel *ch, const AgentStreamOps *ops, void *userdata, AgentStream **ret);
/* Sends a frame on the stream (its stream field is set here). */
int agent_stream_send(AgentStream *s, Sbx__V1__Guest__GuestFrame *f);
/* Ends the stream from our side; sends "reset" first when `reset` (the guest abandons its work). */
void agent_stream_close(AgentStream *s, bool reset);
uint32_t agent_stream_id(const AgentStream *s);
/* Bytes queued toward the guest on the whole channel (producers pause above a threshold). */
size_t agent_channel_pending(const AgentChannel *ch);
