/* SPDX-License-Identifier: Apache-2.0 */
#include "gateway/gw-jsonrpc.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/string-util.h"

/* Usable as a reply id: an integer in 0..2^53-1 (the SDK counts up from 0) or a short string. */
static bool id_usable(json_t *id)
{
        if (json_is_integer(id))
                return json_integer_value(id) >= 0 && json_integer_value(id) <= GW_RPC_ID_MAX;
        if (json_is_string(id))
                return json_string_length(id) <= GW_RPC_ID_STRING_MAX;
        return false;
}

int gw_rpc_decode(const char *data, size_t len, GwRpcMessage *ret, json_t **ret_id, const char **ret_problem)
{
        json_error_t err;
        json_t *root, *v, *id, *params;
        const char *problem = NULL, *key;

        if (ret_id)
                *ret_id = NULL;
        /* Duplicate keys are refused: two "method"s would mean different things to different readers. */
        root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
        if (!root) {
                *ret_problem = "not JSON";
                return -EBADMSG;
        }
        if (!json_is_object(root)) {
                problem = "a message must be a JSON object";
                goto bad;
        }
        id = json_object_get(root, "id");

        v = json_object_get(root, "jsonrpc");
        if (!json_is_string(v) || !streq(json_string_value(v), "2.0")) {
                problem = "\"jsonrpc\" must be \"2.0\"";
                goto bad;
        }
        json_object_foreach(root, key, v)
        {
                if (!streq(key, "jsonrpc") && !streq(key, "id") && !streq(key, "method") &&
                    !streq(key, "params")) {
                        problem = streq(key, "result") || streq(key, "error")
                                          ? "the server takes requests and notifications, not responses"
                                          : "unknown member in a JSON-RPC message";
                        goto bad;
                }
        }
        if (id && !id_usable(id)) {
                problem = "\"id\" must be a non-negative integer below 2^53 or a short string";
                goto bad;
        }
        v = json_object_get(root, "method");
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > GW_RPC_METHOD_MAX ||
            strlen(json_string_value(v)) != json_string_length(v)) {
                problem = "\"method\" must be a non-empty string";
                goto bad;
        }
        params = json_object_get(root, "params");
        if (params && !json_is_object(params) && !json_is_null(params)) {
                problem = "\"params\" must be an object";
                goto bad;
        }
        if (!params || json_is_null(params)) {
                params = json_object();
                if (!params || json_object_set_new(root, "params", params) < 0) {
                        problem = "out of memory";
                        goto bad;
                }
        }

        *ret = (GwRpcMessage){
                .root = root,
                .id = id,
                .method = json_string_value(v),
                .params = params,
        };
        return 0;

bad:
        /* The caller answers an Invalid Request to the id, if there is one it can answer to. */
        id = json_is_object(root) ? json_object_get(root, "id") : NULL;
        if (ret_id && id && id_usable(id))
                *ret_id = json_incref(id);
        json_decref(root);
        *ret_problem = problem;
        return -EPROTO;
}

void gw_rpc_message_done(GwRpcMessage *m)
{
        json_decref(m->root);
        *m = (GwRpcMessage){ 0 };
}

static char *dump(json_t *msg)
{
        char *s;

        if (!msg)
                return NULL;
        /* Compact, and keys in insertion order so that "jsonrpc" leads as in every capture. */
        s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(msg);
        return s;
}

static json_t *envelope(json_t *id)
{
        json_t *m = json_object();

        if (!m || json_object_set_new(m, "jsonrpc", json_string("2.0")) < 0 ||
            (id && json_object_set(m, "id", id) < 0)) {
                json_decref(m);
                return NULL;
        }
        return m;
}

static char *encode_result(json_t *id, const char *key, json_t *value)
{
        json_t *result = json_object(), *m;

        /* json_object_set_new() consumes its value even when it fails. */
        if (!result) {
                json_decref(value);
                return NULL;
        }
        if (json_object_set_new(result, key, value ? value : json_null()) < 0) {
                json_decref(result);
                return NULL;
        }
        m = envelope(id);
        if (!m) {
                json_decref(result);
                return NULL;
        }
        if (json_object_set_new(m, "result", result) < 0) {
                json_decref(m);
                return NULL;
        }
        return dump(m);
}

char *gw_rpc_encode_ok(json_t *id, json_t *value)
{
        return encode_result(id, "ok", value);
}

char *gw_rpc_encode_error(json_t *id, json_t *error)
{
        if (!error)
                return NULL;
        return encode_result(id, "error", error);
}

char *gw_rpc_encode_rpc_error(json_t *id, int code, const char *message)
{
        json_t *m = envelope(id);

        if (!m ||
            json_object_set_new(m, "error", json_pack("{s:i, s:s}", "code", code, "message", message)) < 0) {
                json_decref(m);
                return NULL;
        }
        return dump(m);
}

char *gw_rpc_encode_notification(const char *method, json_t *params)
{
        json_t *m = envelope(NULL);

        if (!m || !params || json_object_set_new(m, "method", json_string(method)) < 0 ||
            json_object_set(m, "params", params) < 0) {
                json_decref(m);
                json_decref(params);
                return NULL;
        }
        json_decref(params);
        return dump(m);
}

static json_t *param(json_t *params, const char *key)
{
        json_t *v = json_is_object(params) ? json_object_get(params, key) : NULL;
        return json_is_null(v) ? NULL : v;
}

int gw_param_string(json_t *params, const char *key, const char **ret)
{
        json_t *v = param(params, key);

        if (!v)
                return -ENOENT;
        /* A string with an embedded NUL would be cut short on its way to C APIs: refuse it. */
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
                return -EINVAL;
        *ret = json_string_value(v);
        return 0;
}

int gw_param_bool(json_t *params, const char *key, bool *ret)
{
        json_t *v = param(params, key);

        if (!v)
                return -ENOENT;
        if (!json_is_boolean(v))
                return -EINVAL;
        *ret = json_is_true(v);
        return 0;
}

int gw_param_int(json_t *params, const char *key, long long min, long long max, long long *ret)
{
        json_t *v = param(params, key);
        long long n;

        if (!v)
                return -ENOENT;
        if (json_is_integer(v))
                n = json_integer_value(v);
        else if (json_is_real(v)) {
                double d = json_real_value(v);
                if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18)
                        return -EINVAL;
                n = (long long)d;
        } else
                return -EINVAL;
        if (n < min || n > max)
                return -ERANGE;
        *ret = n;
        return 0;
}

int gw_param_object(json_t *params, const char *key, json_t **ret)
{
        json_t *v = param(params, key);

        if (!v)
                return -ENOENT;
        if (!json_is_object(v))
                return -EINVAL;
        *ret = v;
        return 0;
}

int gw_param_array(json_t *params, const char *key, json_t **ret)
{
        json_t *v = param(params, key);

        if (!v)
                return -ENOENT;
        if (!json_is_array(v))
                return -EINVAL;
        *ret = v;
        return 0;
}
