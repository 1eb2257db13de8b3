/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Declarations shared by the rpc module's files; not part of its API. */

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <pthread.h>
#include <sys/queue.h>

#include "common/loop/loop.h"
#include "common/rpc/rpc.h"

#define SBX_RPC_DEFAULT_MAX_MESSAGE (4u * 1024 * 1024)

/*
 * A completion tag. Every object that hands work to gRPC embeds one tag per kind of batch; gRPC
 * allows at most one outstanding batch of each kind per call, so a tag is never queued twice.
 */
typedef struct SbxRpcTag SbxRpcTag;
typedef void (*SbxRpcTagFn)(SbxRpcTag *tag, bool ok);
struct SbxRpcTag {
        SbxQueueItem item;
        SbxRpcTagFn fn;
        bool ok;
};

/* The loop-polling mode's helper (rpc-runtime.c): wakes the loop thread out of
 * grpc_completion_queue_next() when libuv has work. */
typedef struct SbxRpcWaker {
        pthread_t thread;
        bool running;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Guarded by lock: watch libuv's backend fd (set by the loop thread before it sleeps);
         * a wake-up call is in flight; the thread is to exit. */
        bool armed, in_flight, stop;
        int stop_fd; /* eventfd that interrupts the thread's poll() */
        grpc_channel *lame;
        grpc_call *call;
        grpc_metadata_array trailing;
        grpc_status_code status;
        grpc_slice details;
        SbxRpcTag tag;
} SbxRpcWaker;

struct SbxRpc {
        uv_loop_t *loop;
        grpc_completion_queue *cq;
        pthread_t poller;
        bool poller_running;
        /* sbx_rpc_new_polling_loop(): the loop thread polls the queue; no poller thread. */
        bool poll_on_loop;
        SbxRpcWaker waker;
        LIST_ENTRY(SbxRpc) polling_link;
        SbxQueue *queue;
        /* Tags handed to gRPC and not yet returned. Shutdown waits for zero. */
        size_t outstanding;
        LIST_HEAD(, SbxRpcServer) servers;
        LIST_HEAD(, SbxRpcChannel) channels;
        bool shutting_down;
        void (*shutdown_done)(void *userdata);
        void *shutdown_userdata;
};

/* Called before handing `tag` to gRPC, so shutdown knows what is in flight. */
static inline void *sbx__rpc_tag_arm(SbxRpc *rpc, SbxRpcTag *tag, SbxRpcTagFn fn)
{
        tag->fn = fn;
        rpc->outstanding++;
        return tag;
}

/* Completes `tag` through the loop's queue without gRPC: `fn` runs later on the loop with `ok`, as
 * for a gRPC completion (and shutdown waits for it the same way). For work that must not run inside
 * the caller, such as delivering a message held back while reading was paused. */
void sbx__rpc_tag_post(SbxRpc *rpc, SbxRpcTag *tag, SbxRpcTagFn fn, bool ok);

/* Re-checks whether a shutdown can complete (no servers, no channels, nothing outstanding). */
void sbx__rpc_maybe_finish_shutdown(SbxRpc *rpc);

/* A queue of packed messages waiting for the call's single SEND_MESSAGE slot. */
typedef struct SbxRpcSendItem {
        STAILQ_ENTRY(SbxRpcSendItem) link;
        grpc_byte_buffer *buffer;
        size_t size;
} SbxRpcSendItem;
STAILQ_HEAD(SbxRpcSendQueue, SbxRpcSendItem);

int sbx__rpc_pack(const ProtobufCMessage *m, size_t max, grpc_byte_buffer **ret, size_t *ret_size);
int sbx__rpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb, ProtobufCMessage **ret);
int sbx__rpc_send_queue_push(struct SbxRpcSendQueue *q, const ProtobufCMessage *m, size_t max,
                             size_t *pending);
SbxRpcSendItem *sbx__rpc_send_queue_pop(struct SbxRpcSendQueue *q, size_t *pending);
void sbx__rpc_send_queue_clear(struct SbxRpcSendQueue *q, size_t *pending);
void sbx__rpc_send_item_free(SbxRpcSendItem *it);

/* A malloc'ed NUL-terminated copy of a slice. */
char *sbx__rpc_slice_strdup(grpc_slice s);

/* A copy of received metadata, so it outlives the grpc_call. */
typedef struct SbxRpcMetadataCopy {
        char **keys;
        char **values;
        size_t n;
} SbxRpcMetadataCopy;
int sbx__rpc_metadata_copy(const grpc_metadata_array *a, SbxRpcMetadataCopy *ret);
const char *sbx__rpc_metadata_find(const SbxRpcMetadataCopy *m, const char *key);
void sbx__rpc_metadata_done(SbxRpcMetadataCopy *m);

/* Credentials from PEM files. */
int sbx__rpc_server_credentials(const SbxRpcTls *tls, grpc_server_credentials **ret);
int sbx__rpc_channel_credentials(const SbxRpcTls *tls, const char *bearer_token,
                                 grpc_channel_credentials **ret);

/* gRPC deadline from a relative timeout (0 = none). */
gpr_timespec sbx__rpc_deadline(usec_t timeout);

/* Shutdown helpers: every server of the runtime, every channel left. */
void sbx__rpc_servers_shutdown_all(SbxRpc *rpc, usec_t grace);
void sbx__rpc_channels_free_all(SbxRpc *rpc);
