/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The JSON-RPC 2.0 envelope the SDK speaks over its WebSocket (deno-sandbox-protocol.md §2.4):
 * decoding what the client sends (requests and notifications; text frames of untrusted bytes) and
 * encoding what the server sends (results wrapped as {"ok"} or {"error"}, JSON-RPC errors,
 * notifications). Every frame carries "jsonrpc":"2.0"; ids are echoed with their JSON type
 * (numbers stay numbers) and never null. Pure functions; no I/O.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* JSON-RPC error codes. */
#define GW_RPC_PARSE_ERROR      (-32700)
#define GW_RPC_INVALID_REQUEST  (-32600)
#define GW_RPC_METHOD_NOT_FOUND (-32601)
#define GW_RPC_INVALID_PARAMS   (-32602)
#define GW_RPC_INTERNAL_ERROR   (-32603)

/* Limits of the decoder, beyond the frame size the caller enforces. */
#define GW_RPC_METHOD_MAX    128
#define GW_RPC_ID_STRING_MAX 128
/* JavaScript's Number.MAX_SAFE_INTEGER: larger ids would not survive the client's JSON.parse. */
#define GW_RPC_ID_MAX 9007199254740991LL

typedef struct GwRpcMessage {
        /* Owns everything below. */
        json_t *root;
        /* NULL for a notification; else a JSON integer or string (borrowed from root). */
        json_t *id;
        const char *method;
        /* Always an object (an empty one when the message had no params); borrowed from root. */
        json_t *params;
} GwRpcMessage;

/*
 * Decodes one text frame. Returns 0 with *ret filled, or a negative error with *ret_problem set to a
 * static description: -EBADMSG when the bytes are not JSON, -EPROTO when the JSON is not a valid
 * request or notification. On -EPROTO, *ret_id (when not NULL) gets a new reference to the
 * message's id if it had a usable one, so that the caller can answer with an Invalid Request error;
 * otherwise NULL (a message without a usable id cannot be answered: id null is not allowed).
 */
int gw_rpc_decode(const char *data, size_t len, GwRpcMessage *ret, json_t **ret_id,
                  const char **ret_problem);

void gw_rpc_message_done(GwRpcMessage *m);

/*
 * Encoders. Each returns a malloc'ed, NUL-terminated compact JSON text (or NULL when memory runs
 * out) and steals the reference to `value` / `error` / `params` in every case; `id` is borrowed.
 */
/* {"jsonrpc":"2.0","id":id,"result":{"ok":value}}; NULL value means JSON null. */
char *gw_rpc_encode_ok(json_t *id, json_t *value);
/* {"jsonrpc":"2.0","id":id,"result":{"error":error}} */
char *gw_rpc_encode_error(json_t *id, json_t *error);
/* {"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message}} */
char *gw_rpc_encode_rpc_error(json_t *id, int code, const char *message);
/* {"jsonrpc":"2.0","method":method,"params":params} */
char *gw_rpc_encode_notification(const char *method, json_t *params);

/* Parameter readers for handlers. Each returns 0 and the value, -ENOENT when the key is absent or
 * null (optional parameters may be either: the SDK omits undefined ones, chown sends null), or
 * -EINVAL when it has the wrong type; *ret is only written on success. */
int gw_param_string(json_t *params, const char *key, const char **ret);
int gw_param_bool(json_t *params, const char *key, bool *ret);
/* An integer in [min, max]; JSON reals with an integral value are accepted (JavaScript has only
 * numbers). -ERANGE outside. */
int gw_param_int(json_t *params, const char *key, long long min, long long max, long long *ret);
int gw_param_object(json_t *params, const char *key, json_t **ret);
int gw_param_array(json_t *params, const char *key, json_t **ret);
