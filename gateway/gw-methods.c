/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The method catalogue of deno-sandbox-protocol.md §2.8 (all 54 methods), the environment methods,
 * and the ones sbx does not offer: the Deno runtime (the image carries no Deno), exposeHttp and
 * vscode (no ingress yet). Those answer with a NotSupported error object, never a silent success;
 * a client stream they were handed (stdinStreamId) is cancelled so the client stops sending it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/api/api.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "gateway/gw-errors.h"
#include "gateway/gw-jsonrpc.h"
#include "gateway/gw-values.h"
#include "gateway/gw.h"

/* ---- environment ---- */

static void env_get_done(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response)
{
        const Sbx__V1__EnvGetResponse *resp = (const Sbx__V1__EnvGetResponse *)response;

        if (st->code != SBX_STATUS_OK)
                gw_request_status(r, st);
        else
                /* A missing variable is undefined in the SDK: null (the "ok" key must be there). */
                gw_request_ok(r, resp->found ? gw_json_text(resp->value, strlen(resp->value)) : json_null());
}

void gw_m_env_get(GwRequest *r, json_t *p)
{
        Sbx__V1__EnvRequest req = SBX__V1__ENV_REQUEST__INIT;
        const char *key;

        if (!gw_need_string(r, p, "key", &key))
                return;
        req.sandbox_id = (char *)gw_session_sandbox_id(r->s);
        req.key = (char *)key;
        gw_request_unary(r, &sbx_api_data_env_get, &req.base, env_get_done);
}

void gw_m_env_set(GwRequest *r, json_t *p)
{
        Sbx__V1__EnvSetRequest req = SBX__V1__ENV_SET_REQUEST__INIT;
        const char *key, *value;

        if (!gw_need_string(r, p, "key", &key) || !gw_need_string(r, p, "value", &value))
                return;
        req.sandbox_id = (char *)gw_session_sandbox_id(r->s);
        req.key = (char *)key;
        req.value = (char *)value;
        gw_request_unary(r, &sbx_api_data_env_set, &req.base, gw_request_done_null);
}

void gw_m_env_delete(GwRequest *r, json_t *p)
{
        Sbx__V1__EnvRequest req = SBX__V1__ENV_REQUEST__INIT;
        const char *key;

        if (!gw_need_string(r, p, "key", &key))
                return;
        req.sandbox_id = (char *)gw_session_sandbox_id(r->s);
        req.key = (char *)key;
        gw_request_unary(r, &sbx_api_data_env_delete, &req.base, gw_request_done_null);
}

static void env_list_done(GwRequest *r, const SbxRpcStatus *st, ProtobufCMessage *response)
{
        const Sbx__V1__EnvListResponse *resp = (const Sbx__V1__EnvListResponse *)response;
        json_t *o;

        if (st->code != SBX_STATUS_OK) {
                gw_request_status(r, st);
                return;
        }
        o = json_object();
        for (size_t i = 0; o && i < resp->n_env; i++)
                json_object_set_new(o, resp->env[i]->key,
                                    gw_json_text(resp->env[i]->value, strlen(resp->env[i]->value)));
        gw_request_ok(r, o);
}

void gw_m_env_to_object(GwRequest *r, json_t *p)
{
        Sbx__V1__EnvListRequest req = SBX__V1__ENV_LIST_REQUEST__INIT;

        req.sandbox_id = (char *)gw_session_sandbox_id(r->s);
        gw_request_unary(r, &sbx_api_data_env_list, &req.base, env_list_done);
}

/* ---- what sbx does not offer ---- */

static void not_supported(GwRequest *r, json_t *p, const char *why)
{
        long long stdin_id;

        if (gw_param_int(p, "stdinStreamId", 0, 1LL << 53, &stdin_id) == 0)
                gw_in_stream_cancel(r->s, (uint64_t)stdin_id);
        gw_request_error(r, gw_error_not_supported(r->method->name, why));
}

static void deno_not_supported(GwRequest *r, json_t *p)
{
        not_supported(r, p,
                      "the sandbox image does not carry the Deno runtime yet (run `deno` with spawn once "
                      "an image has it)");
}

static void expose_not_supported(GwRequest *r, json_t *p)
{
        not_supported(r, p, "sbx has no ingress yet: sandboxes cannot be reached from outside");
}

static void vscode_not_supported(GwRequest *r, json_t *p)
{
        not_supported(r, p, "VS Code in the sandbox needs ingress, which sbx does not have yet");
}

const GwMethod gw_methods[] = {
        { "abort", gw_m_abort },
        { "readFile", gw_m_read_file },
        { "readTextFile", gw_m_read_text_file },
        { "writeFile", gw_m_write_file },
        { "writeTextFile", gw_m_write_text_file },
        { "readDir", gw_m_read_dir },
        { "remove", gw_m_remove },
        { "mkdir", gw_m_mkdir },
        { "rename", gw_m_rename },
        { "stat", gw_m_stat },
        { "chmod", gw_m_chmod },
        { "chown", gw_m_chown },
        { "copyFile", gw_m_copy_file },
        { "link", gw_m_link },
        { "lstat", gw_m_lstat },
        { "makeTempDir", gw_m_make_temp_dir },
        { "makeTempFile", gw_m_make_temp_file },
        { "readLink", gw_m_read_link },
        { "realPath", gw_m_real_path },
        { "symlink", gw_m_symlink },
        { "truncate", gw_m_truncate },
        { "umask", gw_m_umask },
        { "utime", gw_m_utime },
        { "open", gw_m_open },
        { "create", gw_m_create },
        { "fileClose", gw_m_file_close },
        { "fileLock", gw_m_file_op },
        { "fileRead", gw_m_file_op },
        { "fileSeek", gw_m_file_op },
        { "fileStat", gw_m_file_op },
        { "fileSync", gw_m_file_op },
        { "fileSyncData", gw_m_file_op },
        { "fileTruncate", gw_m_file_op },
        { "fileUnlock", gw_m_file_op },
        { "fileUtime", gw_m_file_op },
        { "fileWrite", gw_m_file_op },
        { "walk", gw_m_walk },
        { "expandGlob", gw_m_expand_glob },
        { "spawn", gw_m_spawn },
        { "processWait", gw_m_process_wait },
        { "processKill", gw_m_process_kill },
        { "spawnDeno", deno_not_supported },
        { "denoHttpWait", deno_not_supported },
        { "spawnDenoRepl", deno_not_supported },
        { "denoReplClose", deno_not_supported },
        { "denoReplEval", deno_not_supported },
        { "denoReplCall", deno_not_supported },
        { "fetch", gw_m_fetch },
        { "exposeHttp", expose_not_supported },
        { "vscode", vscode_not_supported },
        { "envGet", gw_m_env_get },
        { "envSet", gw_m_env_set },
        { "envToObject", gw_m_env_to_object },
        { "envDelete", gw_m_env_delete },
};
const size_t gw_n_methods = ELEMENTSOF(gw_methods);

const GwMethod *gw_method_find(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(gw_methods); i++)
                if (streq(gw_methods[i].name, name))
                        return &gw_methods[i];
        return NULL;
}
