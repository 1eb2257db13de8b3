/* SPDX-License-Identifier: Apache-2.0 */
#include "common/api/api.h"

/* sbx.v1.Sandboxes */
const SbxRpcMethod sbx_api_sandboxes_create =
        SBX_RPC_METHOD("/sbx.v1.Sandboxes/Create", UNARY, sbx__v1__create_sandbox_request__descriptor,
                       sbx__v1__sandbox__descriptor);
const SbxRpcMethod sbx_api_sandboxes_get =
        SBX_RPC_METHOD("/sbx.v1.Sandboxes/Get", UNARY, sbx__v1__get_sandbox_request__descriptor,
                       sbx__v1__sandbox__descriptor);
const SbxRpcMethod sbx_api_sandboxes_list =
        SBX_RPC_METHOD("/sbx.v1.Sandboxes/List", UNARY, sbx__v1__list_sandboxes_request__descriptor,
                       sbx__v1__list_sandboxes_response__descriptor);
const SbxRpcMethod sbx_api_sandboxes_delete =
        SBX_RPC_METHOD("/sbx.v1.Sandboxes/Delete", UNARY, sbx__v1__delete_sandbox_request__descriptor,
                       sbx__v1__delete_sandbox_response__descriptor);
const SbxRpcMethod sbx_api_sandboxes_extend =
        SBX_RPC_METHOD("/sbx.v1.Sandboxes/Extend", UNARY, sbx__v1__extend_sandbox_request__descriptor,
                       sbx__v1__extend_sandbox_response__descriptor);
const SbxRpcMethod sbx_api_sandboxes_watch =
        SBX_RPC_METHOD("/sbx.v1.Sandboxes/Watch", SERVER_STREAM,
                       sbx__v1__watch_sandboxes_request__descriptor, sbx__v1__sandbox_event__descriptor);
const SbxRpcMethod sbx_api_sandboxes_attach =
        SBX_RPC_METHOD("/sbx.v1.Sandboxes/Attach", BIDI, sbx__v1__attach_request__descriptor,
                       sbx__v1__attach_response__descriptor);
/* sbx.v1.Admin */
const SbxRpcMethod sbx_api_admin_create_org = SBX_RPC_METHOD(
        "/sbx.v1.Admin/CreateOrg", UNARY, sbx__v1__create_org_request__descriptor, sbx__v1__org__descriptor);
const SbxRpcMethod sbx_api_admin_list_orgs =
        SBX_RPC_METHOD("/sbx.v1.Admin/ListOrgs", UNARY, sbx__v1__list_orgs_request__descriptor,
                       sbx__v1__list_orgs_response__descriptor);
const SbxRpcMethod sbx_api_admin_update_org = SBX_RPC_METHOD(
        "/sbx.v1.Admin/UpdateOrg", UNARY, sbx__v1__update_org_request__descriptor, sbx__v1__org__descriptor);
const SbxRpcMethod sbx_api_admin_create_token =
        SBX_RPC_METHOD("/sbx.v1.Admin/CreateToken", UNARY, sbx__v1__create_token_request__descriptor,
                       sbx__v1__create_token_response__descriptor);
const SbxRpcMethod sbx_api_admin_revoke_token =
        SBX_RPC_METHOD("/sbx.v1.Admin/RevokeToken", UNARY, sbx__v1__revoke_token_request__descriptor,
                       sbx__v1__revoke_token_response__descriptor);
const SbxRpcMethod sbx_api_admin_list_tokens =
        SBX_RPC_METHOD("/sbx.v1.Admin/ListTokens", UNARY, sbx__v1__list_tokens_request__descriptor,
                       sbx__v1__list_tokens_response__descriptor);
const SbxRpcMethod sbx_api_admin_list_nodes =
        SBX_RPC_METHOD("/sbx.v1.Admin/ListNodes", UNARY, sbx__v1__list_nodes_request__descriptor,
                       sbx__v1__list_nodes_response__descriptor);
const SbxRpcMethod sbx_api_admin_cordon_node =
        SBX_RPC_METHOD("/sbx.v1.Admin/CordonNode", UNARY, sbx__v1__cordon_node_request__descriptor,
                       sbx__v1__node_info__descriptor);
const SbxRpcMethod sbx_api_admin_drain_node =
        SBX_RPC_METHOD("/sbx.v1.Admin/DrainNode", UNARY, sbx__v1__drain_node_request__descriptor,
                       sbx__v1__drain_node_response__descriptor);
/* sbx.v1.SandboxData */
const SbxRpcMethod sbx_api_data_exec =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/Exec", BIDI, sbx__v1__exec_request__descriptor,
                       sbx__v1__exec_response__descriptor);
const SbxRpcMethod sbx_api_data_read_file =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/ReadFile", SERVER_STREAM, sbx__v1__read_file_request__descriptor,
                       sbx__v1__file_chunk__descriptor);
const SbxRpcMethod sbx_api_data_write_file =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/WriteFile", CLIENT_STREAM,
                       sbx__v1__write_file_request__descriptor, sbx__v1__write_file_response__descriptor);
const SbxRpcMethod sbx_api_data_stat =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/Stat", UNARY, sbx__v1__stat_request__descriptor,
                       sbx__v1__file_info__descriptor);
const SbxRpcMethod sbx_api_data_read_dir =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/ReadDir", UNARY, sbx__v1__path_request__descriptor,
                       sbx__v1__read_dir_response__descriptor);
const SbxRpcMethod sbx_api_data_make_dir =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/MakeDir", UNARY, sbx__v1__make_dir_request__descriptor,
                       sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_remove =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/Remove", UNARY, sbx__v1__remove_request__descriptor,
                       sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_rename =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/Rename", UNARY, sbx__v1__rename_request__descriptor,
                       sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_copy_file =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/CopyFile", UNARY, sbx__v1__copy_file_request__descriptor,
                       sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_chmod = SBX_RPC_METHOD(
        "/sbx.v1.SandboxData/Chmod", UNARY, sbx__v1__chmod_request__descriptor, sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_chown = SBX_RPC_METHOD(
        "/sbx.v1.SandboxData/Chown", UNARY, sbx__v1__chown_request__descriptor, sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_link = SBX_RPC_METHOD(
        "/sbx.v1.SandboxData/Link", UNARY, sbx__v1__link_request__descriptor, sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_read_link =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/ReadLink", UNARY, sbx__v1__path_request__descriptor,
                       sbx__v1__path_response__descriptor);
const SbxRpcMethod sbx_api_data_real_path =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/RealPath", UNARY, sbx__v1__path_request__descriptor,
                       sbx__v1__path_response__descriptor);
const SbxRpcMethod sbx_api_data_truncate =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/Truncate", UNARY, sbx__v1__truncate_request__descriptor,
                       sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_utime = SBX_RPC_METHOD(
        "/sbx.v1.SandboxData/Utime", UNARY, sbx__v1__utime_request__descriptor, sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_make_temp =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/MakeTemp", UNARY, sbx__v1__make_temp_request__descriptor,
                       sbx__v1__path_response__descriptor);
const SbxRpcMethod sbx_api_data_umask =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/Umask", UNARY, sbx__v1__umask_request__descriptor,
                       sbx__v1__umask_response__descriptor);
const SbxRpcMethod sbx_api_data_walk =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/Walk", SERVER_STREAM, sbx__v1__walk_request__descriptor,
                       sbx__v1__walk_entry__descriptor);
const SbxRpcMethod sbx_api_data_open_file =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/OpenFile", BIDI, sbx__v1__file_op__descriptor,
                       sbx__v1__file_op_result__descriptor);
const SbxRpcMethod sbx_api_data_env_get =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/EnvGet", UNARY, sbx__v1__env_request__descriptor,
                       sbx__v1__env_get_response__descriptor);
const SbxRpcMethod sbx_api_data_env_set =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/EnvSet", UNARY, sbx__v1__env_set_request__descriptor,
                       sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_env_delete =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/EnvDelete", UNARY, sbx__v1__env_request__descriptor,
                       sbx__v1__empty__descriptor);
const SbxRpcMethod sbx_api_data_env_list =
        SBX_RPC_METHOD("/sbx.v1.SandboxData/EnvList", UNARY, sbx__v1__env_list_request__descriptor,
                       sbx__v1__env_list_response__descriptor);
