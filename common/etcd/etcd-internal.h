/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Declarations shared by the etcd client's files; not part of its API. */

#include <sys/queue.h>

#include "common/etcd/etcd.h"

extern const SbxRpcMethod sbx__etcd_kv_range;
extern const SbxRpcMethod sbx__etcd_kv_put;
extern const SbxRpcMethod sbx__etcd_kv_delete_range;
extern const SbxRpcMethod sbx__etcd_kv_txn;
extern const SbxRpcMethod sbx__etcd_kv_compact;
extern const SbxRpcMethod sbx__etcd_lease_grant;
extern const SbxRpcMethod sbx__etcd_lease_revoke;
extern const SbxRpcMethod sbx__etcd_lease_keepalive;
extern const SbxRpcMethod sbx__etcd_watch_watch;

typedef struct SbxEtcdRequest SbxEtcdRequest;

/* Hands a finished request's result to its typed callback. `resp` may be NULL on error. */
typedef void (*SbxEtcdDeliver)(SbxEtcdRequest *r, int error, const ProtobufCMessage *resp);

struct SbxEtcdRequest {
        /* NULL once the client was freed: the result is then dropped. */
        SbxEtcd *e;
        LIST_ENTRY(SbxEtcdRequest) link;
        const SbxRpcMethod *method;
        /* Owned; freed with free_request. */
        ProtobufCMessage *request;
        void (*free_request)(ProtobufCMessage *m);
        bool retry_unavailable;
        unsigned attempts;
        SbxRpcClientCall *call;
        SbxEtcdDeliver deliver;
        /* The typed callback, stored as one of these. */
        union {
                SbxEtcdRangeCallback range;
                SbxEtcdPutCallback put;
                SbxEtcdDeleteCallback del;
                SbxEtcdTxnCallback txn;
                void (*generic)(int error, const ProtobufCMessage *resp, void *userdata);
        } cb;
        void *userdata;
};

struct SbxEtcd {
        SbxRpc *rpc;
        char **endpoints;
        SbxRpcChannel **channels;
        size_t n_endpoints;
        size_t current;
        usec_t timeout;
        LIST_HEAD(, SbxEtcdRequest) requests;
        size_t n_requests;
};

/* Sends a unary request to the current endpoint and returns it in *ret so the caller can store its
 * typed callback (results are never delivered before the loop runs again). Takes ownership of
 * `request`, also on failure. */
int sbx__etcd_request(SbxEtcd *e, const SbxRpcMethod *m, ProtobufCMessage *request,
                      void (*free_request)(ProtobufCMessage *m), bool retry_unavailable,
                      SbxEtcdDeliver deliver, void *userdata, SbxEtcdRequest **ret);

/* The channel of the current endpoint, and moving on after a failure seen on `ch`. */
SbxRpcChannel *sbx__etcd_channel(SbxEtcd *e);
void sbx__etcd_endpoint_failed(SbxEtcd *e, SbxRpcChannel *ch);

/* Maps an RPC status to the client's errors (UNAVAILABLE, deadline, compaction ...). */
int sbx__etcd_status_error(const SbxRpcStatus *st);

/* Exponential backoff with jitter: 100 ms doubling to 5 s. */
usec_t sbx__etcd_backoff_next(usec_t *state);

/* Fills key and range_end of a Range, DeleteRange or Watch: a prefix becomes [key, prefix end). */
int sbx__etcd_key_range(ProtobufCBinaryData *key, ProtobufCBinaryData *end, const char *k, bool prefix);

/* Copies of protobuf byte fields. */
int sbx__etcd_bytes(ProtobufCBinaryData *b, const void *p, size_t n);
