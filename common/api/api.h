/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The methods of sbx.v1.Sandboxes, sbx.v1.Admin and sbx.v1.SandboxData (proto/sbx/v1/), defined
 * once for every program that serves or calls them: the path, the kind of call and the message
 * types. tests/unit/common/test-api.c checks them against the service descriptors protoc-c made.
 */

#include "common/rpc/rpc.h"
#include "proto/sbx/v1/data.pb-c.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"

/* sbx.v1.Sandboxes */
extern const SbxRpcMethod sbx_api_sandboxes_create;
extern const SbxRpcMethod sbx_api_sandboxes_get;
extern const SbxRpcMethod sbx_api_sandboxes_list;
extern const SbxRpcMethod sbx_api_sandboxes_delete;
extern const SbxRpcMethod sbx_api_sandboxes_extend;
extern const SbxRpcMethod sbx_api_sandboxes_watch;
extern const SbxRpcMethod sbx_api_sandboxes_attach;
/* sbx.v1.Admin */
extern const SbxRpcMethod sbx_api_admin_create_org;
extern const SbxRpcMethod sbx_api_admin_list_orgs;
extern const SbxRpcMethod sbx_api_admin_update_org;
extern const SbxRpcMethod sbx_api_admin_create_token;
extern const SbxRpcMethod sbx_api_admin_revoke_token;
extern const SbxRpcMethod sbx_api_admin_list_tokens;
extern const SbxRpcMethod sbx_api_admin_list_nodes;
extern const SbxRpcMethod sbx_api_admin_cordon_node;
extern const SbxRpcMethod sbx_api_admin_drain_node;
/* sbx.v1.SandboxData */
extern const SbxRpcMethod sbx_api_data_exec;
extern const SbxRpcMethod sbx_api_data_read_file;
extern const SbxRpcMethod sbx_api_data_write_file;
extern const SbxRpcMethod sbx_api_data_stat;
extern const SbxRpcMethod sbx_api_data_read_dir;
extern const SbxRpcMethod sbx_api_data_make_dir;
extern const SbxRpcMethod sbx_api_data_remove;
extern const SbxRpcMethod sbx_api_data_rename;
extern const SbxRpcMethod sbx_api_data_copy_file;
extern const SbxRpcMethod sbx_api_data_chmod;
extern const SbxRpcMethod sbx_api_data_chown;
extern const SbxRpcMethod sbx_api_data_link;
extern const SbxRpcMethod sbx_api_data_read_link;
extern const SbxRpcMethod sbx_api_data_real_path;
extern const SbxRpcMethod sbx_api_data_truncate;
extern const SbxRpcMethod sbx_api_data_utime;
extern const SbxRpcMethod sbx_api_data_make_temp;
extern const SbxRpcMethod sbx_api_data_umask;
extern const SbxRpcMethod sbx_api_data_walk;
extern const SbxRpcMethod sbx_api_data_open_file;
extern const SbxRpcMethod sbx_api_data_env_get;
extern const SbxRpcMethod sbx_api_data_env_set;
extern const SbxRpcMethod sbx_api_data_env_delete;
extern const SbxRpcMethod sbx_api_data_env_list;
