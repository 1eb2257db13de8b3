/* SPDX-License-Identifier: Apache-2.0 */
/* gateway/gw-jsonrpc: the JSON-RPC 2.0 envelope of the SDK's WebSocket. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "gateway/gw-jsonrpc.h"

static int decode(const char *s, GwRpcMessage *m, json_t **id, const char **problem)
{
        return gw_rpc_decode(s, strlen(s), m, id, problem);
}

Test(gw_jsonrpc, request_with_a_numeric_id)
{
        GwRpcMessage m;
        const char *problem;

        cr_assert_eq(decode("{\"jsonrpc\":\"2.0\",\"id\":50,\"method\":\"spawn\",\"params\":{\"command\":"
                            "\"echo\"}}",
                            &m, NULL, &problem),
                     0);
        cr_assert(json_is_integer(m.id));
        cr_assert_eq(json_integer_value(m.id), 50);
        cr_assert_str_eq(m.method, "spawn");
        cr_assert_str_eq(json_string_value(json_object_get(m.params, "command")), "echo");
        gw_rpc_message_done(&m);
}

Test(gw_jsonrpc, notification_without_params_gets_an_empty_object)
{
        GwRpcMessage m;
        const char *problem;

        cr_assert_eq(decode("{\"jsonrpc\":\"2.0\",\"method\":\"$sandbox.stream.end\"}", &m, NULL, &problem),
                     0);
        cr_assert_null(m.id);
        cr_assert(json_is_object(m.params));
        cr_assert_eq(json_object_size(m.params), 0);
        gw_rpc_message_done(&m);
}

Test(gw_jsonrpc, refusals)
{
        static const struct {
                const char *in;
                int error;
                bool has_id;
        } cases[] = {
                { "not json", -EBADMSG, false },
                { "ping", -EBADMSG, false },
                { "[1,2]", -EPROTO, false },
                { "{\"id\":1,\"method\":\"x\"}", -EPROTO, true },
                { "{\"jsonrpc\":\"1.0\",\"id\":2,\"method\":\"x\"}", -EPROTO, true },
                { "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"x\"}", -EPROTO, false },
                { "{\"jsonrpc\":\"2.0\",\"id\":-1,\"method\":\"x\"}", -EPROTO, false },
                { "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"x\"}", -EPROTO, false },
                { "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"\"}", -EPROTO, true },
                { "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"x\",\"params\":[1]}", -EPROTO, true },
                { "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}", -EPROTO, true },
                { "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"a\",\"method\":\"b\"}", -EBADMSG, false },
                { "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"x\",\"extra\":1}", -EPROTO, true },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                GwRpcMessage m;
                json_t *id = NULL;
                const char *problem = NULL;
                cr_assert_eq(decode(cases[i].in, &m, &id, &problem), cases[i].error, "%s", cases[i].in);
                cr_assert_not_null(problem);
                cr_assert_eq(id != NULL, cases[i].has_id, "%s", cases[i].in);
                json_decref(id);
        }
}

Test(gw_jsonrpc, results_wrap_ok_and_error)
{
        json_t *id = json_integer(7);
        char *s;

        s = gw_rpc_encode_ok(id, NULL);
        cr_assert_str_eq(s, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"ok\":null}}");
        free(s);
        s = gw_rpc_encode_ok(id, json_pack("{s:i}", "pid", 100));
        cr_assert_str_eq(s, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"ok\":{\"pid\":100}}}");
        free(s);
        s = gw_rpc_encode_error(id,
                                json_pack("{s:s,s:s}", "constructorName", "NotFound", "message", "gone"));
        cr_assert_str_eq(
                s, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"error\":{\"constructorName\":\"NotFound\","
                   "\"message\":\"gone\"}}}");
        free(s);
        s = gw_rpc_encode_rpc_error(id, GW_RPC_METHOD_NOT_FOUND, "Method not found");
        cr_assert_str_eq(s, "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32601,\"message\":\"Method "
                            "not found\"}}");
        free(s);
        json_decref(id);
        id = json_string("abc");
        s = gw_rpc_encode_ok(id, json_true());
        cr_assert_str_eq(s, "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"result\":{\"ok\":true}}");
        free(s);
        json_decref(id);
}

Test(gw_jsonrpc, notifications)
{
        char *s = gw_rpc_encode_notification("$sandbox.stream.start", json_pack("{s:i}", "streamId", 1002));

        cr_assert_str_eq(
                s,
                "{\"jsonrpc\":\"2.0\",\"method\":\"$sandbox.stream.start\",\"params\":{\"streamId\":1002}}");
        free(s);
}

Test(gw_jsonrpc, parameter_readers)
{
        json_t *p = json_loads(
                "{\"s\":\"x\",\"b\":true,\"i\":5,\"r\":6.0,\"f\":6.5,\"n\":null,\"o\":{},\"a\":[]}", 0,
                NULL);
        const char *s;
        bool b;
        long long i;
        json_t *v;

        cr_assert_eq(gw_param_string(p, "s", &s), 0);
        cr_assert_eq(gw_param_string(p, "b", &s), -EINVAL);
        cr_assert_eq(gw_param_string(p, "missing", &s), -ENOENT);
        cr_assert_eq(gw_param_string(p, "n", &s), -ENOENT, "null is taken as absent");
        cr_assert_eq(gw_param_bool(p, "b", &b), 0);
        cr_assert(b);
        cr_assert_eq(gw_param_int(p, "i", 0, 10, &i), 0);
        cr_assert_eq(i, 5);
        cr_assert_eq(gw_param_int(p, "r", 0, 10, &i), 0, "an integral real is an integer");
        cr_assert_eq(i, 6);
        cr_assert_eq(gw_param_int(p, "f", 0, 10, &i), -EINVAL);
        cr_assert_eq(gw_param_int(p, "i", 0, 4, &i), -ERANGE);
        cr_assert_eq(gw_param_object(p, "o", &v), 0);
        cr_assert_eq(gw_param_array(p, "a", &v), 0);
        cr_assert_eq(gw_param_array(p, "o", &v), -EINVAL);
        json_decref(p);
}
