/* SPDX-License-Identifier: Apache-2.0 */
/* common/api: every sbx.v1 method defined once, checked here against the services that protoc-c
 * generated from proto/sbx/v1/ (paths, message types, and no method missing or extra). */
#include <criterion/criterion.h>
#include <errno.h>

#include "common/api/api.h"
#include "common/base/macro.h"

Test(api, sandboxes_matches_its_service)
{
        static const SbxRpcMethod *const methods[] = {
                &sbx_api_sandboxes_create, &sbx_api_sandboxes_get,    &sbx_api_sandboxes_list,
                &sbx_api_sandboxes_delete, &sbx_api_sandboxes_extend, &sbx_api_sandboxes_watch,
                &sbx_api_sandboxes_attach,
        };
        const char *bad = NULL;
        cr_assert_eq(
                sbx_rpc_methods_check(&sbx__v1__sandboxes__descriptor, methods, ELEMENTSOF(methods), &bad),
                0, "sbx.v1.Sandboxes: %s", bad ? bad : "?");
        cr_assert_eq(sbx_rpc_methods_check(&sbx__v1__sandboxes__descriptor, methods, ELEMENTSOF(methods) - 1,
                                           &bad),
                     -EINVAL, "a missing method is noticed");
}

Test(api, admin_matches_its_service)
{
        static const SbxRpcMethod *const methods[] = {
                &sbx_api_admin_create_org,   &sbx_api_admin_list_orgs,    &sbx_api_admin_update_org,
                &sbx_api_admin_create_token, &sbx_api_admin_revoke_token, &sbx_api_admin_list_tokens,
                &sbx_api_admin_list_nodes,   &sbx_api_admin_cordon_node,  &sbx_api_admin_drain_node,
        };
        const char *bad = NULL;
        cr_assert_eq(sbx_rpc_methods_check(&sbx__v1__admin__descriptor, methods, ELEMENTSOF(methods), &bad),
                     0, "sbx.v1.Admin: %s", bad ? bad : "?");
        cr_assert_eq(
                sbx_rpc_methods_check(&sbx__v1__admin__descriptor, methods, ELEMENTSOF(methods) - 1, &bad),
                -EINVAL, "a missing method is noticed");
}

Test(api, sandbox_data_matches_its_service)
{
        static const SbxRpcMethod *const methods[] = {
                &sbx_api_data_exec,      &sbx_api_data_read_file,  &sbx_api_data_write_file,
                &sbx_api_data_stat,      &sbx_api_data_read_dir,   &sbx_api_data_make_dir,
                &sbx_api_data_remove,    &sbx_api_data_rename,     &sbx_api_data_copy_file,
                &sbx_api_data_chmod,     &sbx_api_data_chown,      &sbx_api_data_link,
                &sbx_api_data_read_link, &sbx_api_data_real_path,  &sbx_api_data_truncate,
                &sbx_api_data_utime,     &sbx_api_data_make_temp,  &sbx_api_data_umask,
                &sbx_api_data_walk,      &sbx_api_data_open_file,  &sbx_api_data_env_get,
                &sbx_api_data_env_set,   &sbx_api_data_env_delete, &sbx_api_data_env_list,
        };
        const char *bad = NULL;
        cr_assert_eq(sbx_rpc_methods_check(&sbx__v1__sandbox_data__descriptor, methods, ELEMENTSOF(methods),
                                           &bad),
                     0, "sbx.v1.SandboxData: %s", bad ? bad : "?");
        cr_assert_eq(sbx_rpc_methods_check(&sbx__v1__sandbox_data__descriptor, methods,
                                           ELEMENTSOF(methods) - 1, &bad),
                     -EINVAL, "a missing method is noticed");
}
