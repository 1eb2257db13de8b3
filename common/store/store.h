/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The layout of sbx's state in etcd (proto/sbx/v1/state.proto lists each key with its writer) and
 * the encoding of its values: every value is a protobuf message from state.proto.
 */

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define SBX_KEY_ROOT        "/sbx/v1/"
#define SBX_KEY_NODES       "/sbx/v1/nodes/"
#define SBX_KEY_NODECTL     "/sbx/v1/nodectl/"
#define SBX_KEY_SANDBOXES   "/sbx/v1/sandboxes/"
#define SBX_KEY_STATUS      "/sbx/v1/status/"
#define SBX_KEY_ASSIGN      "/sbx/v1/assign/"
#define SBX_KEY_USAGE_ORGS  "/sbx/v1/usage/orgs/"
#define SBX_KEY_USAGE_NODES "/sbx/v1/usage/nodes/"
#define SBX_KEY_ORGS        "/sbx/v1/orgs/"
#define SBX_KEY_TOKENS      "/sbx/v1/tokens/"
#define SBX_KEY_SECRETS     "/sbx/v1/secrets/"
#define SBX_KEY_LEADER      "/sbx/v1/leader"
#define SBX_KEY_BOOTSTRAP   "/sbx/v1/bootstrap"

typedef enum SbxKeyKind {
        SBX_KEY_KIND_UNKNOWN,
        SBX_KEY_KIND_NODE,
        SBX_KEY_KIND_NODECTL,
        SBX_KEY_KIND_SANDBOX,
        SBX_KEY_KIND_STATUS,
        SBX_KEY_KIND_ASSIGN,
        SBX_KEY_KIND_USAGE_ORG,
        SBX_KEY_KIND_USAGE_NODE,
        SBX_KEY_KIND_ORG,
        SBX_KEY_KIND_TOKEN,
        SBX_KEY_KIND_SECRET,
        SBX_KEY_KIND_LEADER,
} SbxKeyKind;

/* Longest name we accept in a key component (node, org, sandbox id, token hash). */
#define SBX_KEY_NAME_MAX 128

/*
 * Classifies a key and extracts its names: `a` gets the node, org, sandbox id or token hash; for
 * assign keys `a` is the node and `b` the sandbox id. Both buffers hold SBX_KEY_NAME_MAX + 1 bytes.
 * Keys outside the layout, or with names too long or empty, are SBX_KEY_KIND_UNKNOWN.
 */
SbxKeyKind sbx_key_parse(const void *key, size_t len, char *a, char *b);

/* Formats a key into a malloc'ed string: sbx_key_new(&k, SBX_KEY_SANDBOXES "%s", id). */
int sbx_key_new(char **ret, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Packs a message into a malloc'ed buffer (never NULL, even for an empty message). */
int sbx_store_pack(const ProtobufCMessage *m, uint8_t **ret, size_t *ret_len);

/* Unpacks a value; -EBADMSG when it is not a valid message of that type. Free with
 * protobuf_c_message_free_unpacked. */
int sbx_store_unpack(const ProtobufCMessageDescriptor *d, const void *p, size_t n, ProtobufCMessage **ret);

/* Unix time in milliseconds. */
int64_t sbx_now_ms(void);
