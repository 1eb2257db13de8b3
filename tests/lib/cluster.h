/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A control plane for integration tests: a real etcd, real sbx-scheduler processes (built binaries),
 * a cluster key, a bootstrap admin token, and gRPC channels to talk to them. Everything is started
 * on ephemeral loopback ports in a temporary directory and stopped and removed by
 * sbx_test_cluster_stop().
 */

#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "common/api/api.h"
#include "common/etcd/etcd.h"
#include "common/rpc/rpc.h"
#include "tests/lib/fixture.h"

#define SBX_TEST_MAX_SCHEDULERS 3

typedef struct SbxTestScheduler {
        pid_t pid;
        int port;
        int metrics_port;
        char name[32];
        char target[64];
        char log[512];
} SbxTestScheduler;

typedef struct SbxTestCluster {
        uv_loop_t loop;
        SbxRpc *rpc;
        SbxTestEtcd *etcd;
        SbxEtcd *etcd_client;
        char *dir;
        char key_file[512];
        char admin_token_file[512];
        char *admin_token;
        SbxTestScheduler schedulers[SBX_TEST_MAX_SCHEDULERS];
        unsigned n_schedulers;
        /* Extra scheduler flags ("--retention=1s", ...), NULL-terminated; set before start. */
        const char *const *scheduler_args;
        /* This process's loop thread polls gRPC itself (sbx_rpc_new_polling_loop), as sbx-scheduler
         * does; set before start. Run the loop with sbx_rpc_run_once() or the helpers here. */
        bool poll_on_loop;
} SbxTestCluster;

/* Starts etcd and `n` schedulers (named sched-0, sched-1, ...); waits until each answers. */
int sbx_test_cluster_start(SbxTestCluster *c, unsigned n);
/* Stops everything; -EIO when a scheduler did not exit cleanly on SIGTERM (a crash, or a leak in
 * a sanitizer build); its directory is then kept for the logs. */
int sbx_test_cluster_stop(SbxTestCluster *c);

/* Starts (again) scheduler i with the cluster's settings; waits until it answers. */
int sbx_test_scheduler_start(SbxTestCluster *c, unsigned i);
/* Sends `sig` to scheduler i and waits for it to exit; -EIO for an unclean exit after SIGTERM. */
int sbx_test_scheduler_stop(SbxTestCluster *c, unsigned i, int sig);

/* A channel to scheduler i with the given bearer token (caller frees with sbx_rpc_channel_free). */
SbxRpcChannel *sbx_test_channel(SbxTestCluster *c, unsigned i, const char *token);

/* Creates an organization with the given quota and returns a user token for it (malloc'ed). */
char *sbx_test_org(SbxTestCluster *c, const char *name, unsigned quota);

/* A blocking unary call on the cluster's loop; *ret_response (optional) owned by the caller. */
int sbx_test_call(SbxTestCluster *c, SbxRpcChannel *ch, const SbxRpcMethod *m, const ProtobufCMessage *req,
                  SbxRpcStatus *ret_status, ProtobufCMessage **ret_response);

/* Runs the loop for a while (simulated agents and watches make progress meanwhile). */
void sbx_test_cluster_run(SbxTestCluster *c, usec_t duration);
