/* SPDX-License-Identifier: Apache-2.0 */
#include "tests/lib/cluster.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/base/fd-util.h"
#include "common/base/macro.h"
#include "common/crypto/crypto.h"
#include "common/loop/loop.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"

static const char *build_dir(void)
{
        const char *b = getenv("SBX_BUILD_DIR");
        return b && *b ? b : "build";
}

void sbx_test_cluster_run(SbxTestCluster *c, usec_t duration)
{
        sbx_test_run_for(&c->loop, duration);
}

int sbx_test_call(SbxTestCluster *c, SbxRpcChannel *ch, const SbxRpcMethod *m, const ProtobufCMessage *req,
                  SbxRpcStatus *ret_status, ProtobufCMessage **ret_response)
{
        SbxRpcCallOptions o = { .timeout = 30 * USEC_PER_SEC };
        return sbx_rpc_unary_sync(ch, m, req, &o, ret_status, ret_response);
}

SbxRpcChannel *sbx_test_channel(SbxTestCluster *c, unsigned i, const char *token)
{
        SbxRpcChannel *ch = NULL;
        SbxRpcChannelOptions o = { .bearer_token = token };
        if (sbx_rpc_channel_new(c->rpc, c->schedulers[i].target, &o, &ch) < 0)
                return NULL;
        return ch;
}

/* Waits until the scheduler answers an admin call (its state is loaded and the admin token known). */
static int wait_ready(SbxTestCluster *c, unsigned i)
{
        usec_t deadline = sbx_now_monotonic() + 20 * USEC_PER_SEC;
        SbxRpcChannel *ch = sbx_test_channel(c, i, c->admin_token);
        Sbx__V1__ListOrgsRequest req = SBX__V1__LIST_ORGS_REQUEST__INIT;
        int r = -ETIMEDOUT;

        if (!ch)
                return -ENOMEM;
        while (sbx_now_monotonic() < deadline) {
                SbxRpcStatus st = { 0 };
                ProtobufCMessage *resp = NULL;
                SbxRpcCallOptions o = { .timeout = 2 * USEC_PER_SEC, .wait_for_ready = true };
                r = sbx_rpc_unary_sync(ch, &sbx_api_admin_list_orgs, &req.base, &o, &st, &resp);
                sbx_rpc_status_done(&st);
                if (resp)
                        protobuf_c_message_free_unpacked(resp, NULL);
                if (r == 0)
                        break;
                sbx_test_run_for(&c->loop, 100 * USEC_PER_MSEC);
        }
        sbx_rpc_channel_free(ch);
        return r;
}

int sbx_test_scheduler_start(SbxTestCluster *c, unsigned i)
{
        SbxTestScheduler *s = &c->schedulers[i];
        char bin[512], listen[64], metrics[64], endpoints[96], key[600], admin[600], name[64];
        char *argv[48];
        size_t n = 0;

        snprintf(bin, sizeof(bin), "%s/bin/sbx-scheduler", build_dir());
        if (!s->port) {
                s->port = sbx_test_free_port();
                s->metrics_port = sbx_test_free_port();
                snprintf(s->name, sizeof(s->name), "sched-%u", i);
                snprintf(s->target, sizeof(s->target), "127.0.0.1:%d", s->port);
                snprintf(s->log, sizeof(s->log), "%s/sched-%u.log", c->dir, i);
        }
        snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", s->port);
        snprintf(metrics, sizeof(metrics), "--metrics-listen=127.0.0.1:%d", s->metrics_port);
        snprintf(endpoints, sizeof(endpoints), "--etcd-endpoints=%s", c->etcd->endpoint);
        snprintf(key, sizeof(key), "--cluster-key-file=%s", c->key_file);
        snprintf(admin, sizeof(admin), "--admin-token-file=%s", c->admin_token_file);
        snprintf(name, sizeof(name), "--name=%s", s->name);
        argv[n++] = bin;
        argv[n++] = listen;
        argv[n++] = metrics;
        argv[n++] = endpoints;
        argv[n++] = key;
        argv[n++] = admin;
        argv[n++] = name;
        argv[n++] = (char *)"--leader-lease-ttl=3s";
        argv[n++] = (char *)"--create-deadline=10s";
        argv[n++] = (char *)"--reconcile-interval=200ms";
        argv[n++] = (char *)"--log-level=debug";
        for (size_t k = 0; c->scheduler_args && c->scheduler_args[k] && n < ELEMENTSOF(argv) - 1; k++)
                argv[n++] = (char *)c->scheduler_args[k];
        argv[n] = NULL;
        s->pid = sbx_test_spawn(argv, s->log);
        if (s->pid < 0)
                return s->pid;
        int r = wait_ready(c, i);
        if (r < 0) {
                fprintf(stderr, "[----] scheduler %s did not become ready; log: %s\n", s->name, s->log);
                sbx_test_show_log(s->log, "scheduler", 40);
        }
        return r;
}

int sbx_test_scheduler_stop(SbxTestCluster *c, unsigned i, int sig)
{
        SbxTestScheduler *s = &c->schedulers[i];
        int r = 0;
        if (s->pid > 0) {
                int status = sbx_test_stop(s->pid, sig, 10 * USEC_PER_SEC);
                if (sig == SIGTERM && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
                        fprintf(stderr, "[----] scheduler %s exited with status 0x%x; log: %s\n", s->name,
                                status, s->log);
                        sbx_test_show_log(s->log, "scheduler", 40);
                        r = -EIO;
                }
        }
        s->pid = 0;
        return r;
}

int sbx_test_cluster_start(SbxTestCluster *c, unsigned n)
{
        int r;

        if (n > SBX_TEST_MAX_SCHEDULERS)
                return -EINVAL;
        uv_loop_init(&c->loop);
        if ((r = c->poll_on_loop ? sbx_rpc_new_polling_loop(&c->loop, &c->rpc)
                                 : sbx_rpc_new(&c->loop, &c->rpc)) < 0)
                return r;
        c->dir = sbx_test_tempdir("sbx-cluster");
        if (!c->dir)
                return -ENOMEM;
        c->etcd = sbx_test_etcd_start();
        if (!c->etcd)
                return -EIO;
        SbxEtcdOptions eo = { .endpoints = (char *const[]){ c->etcd->endpoint, NULL } };
        if ((r = sbx_etcd_new(c->rpc, &eo, &c->etcd_client)) < 0)
                return r;
        snprintf(c->key_file, sizeof(c->key_file), "%s/cluster.key", c->dir);
        snprintf(c->admin_token_file, sizeof(c->admin_token_file), "%s/admin.token", c->dir);
        if ((r = sbx_cluster_key_generate(c->key_file)) < 0)
                return r;
        if ((r = sbx_random_token("sbxadm_", 30, &c->admin_token)) < 0)
                return r;
        char line[128];
        snprintf(line, sizeof(line), "%s\n", c->admin_token);
        if ((r = sbx_write_file_atomic(c->admin_token_file, line, strlen(line), 0600)) < 0)
                return r;
        c->n_schedulers = n;
        for (unsigned i = 0; i < n; i++)
                if ((r = sbx_test_scheduler_start(c, i)) < 0)
                        return r;
        return 0;
}

static bool down;
static void on_down(void *userdata)
{
        down = true;
}

int sbx_test_cluster_stop(SbxTestCluster *c)
{
        int r = 0;
        for (unsigned i = 0; i < c->n_schedulers; i++)
                if (sbx_test_scheduler_stop(c, i, SIGTERM) < 0)
                        r = -EIO;
        c->etcd_client = sbx_etcd_free(c->etcd_client);
        if (c->rpc) {
                down = false;
                sbx_rpc_shutdown(c->rpc, 0, on_down, NULL);
                sbx_test_run_until(&c->loop, &down, 10 * USEC_PER_SEC);
                c->rpc = NULL;
        }
        sbx_loop_close_all(&c->loop);
        sbx_test_etcd_stop(c->etcd);
        c->etcd = NULL;
        if (getenv("SBX_KEEP_TEST_DIRS") || r < 0)
                fprintf(stderr, "kept %s\n", c->dir);
        else
                sbx_test_rmrf(c->dir);
        free(c->dir);
        c->dir = NULL;
        free(c->admin_token);
        c->admin_token = NULL;
        return r;
}

char *sbx_test_org(SbxTestCluster *c, const char *name, unsigned quota)
{
        SbxRpcChannel *ch = sbx_test_channel(c, 0, c->admin_token);
        Sbx__V1__CreateOrgRequest org = SBX__V1__CREATE_ORG_REQUEST__INIT;
        Sbx__V1__CreateTokenRequest tok = SBX__V1__CREATE_TOKEN_REQUEST__INIT;
        Sbx__V1__CreateTokenResponse *resp = NULL;
        SbxRpcStatus st = { 0 };
        char *token = NULL;

        if (!ch)
                return NULL;
        org.name = (char *)name;
        org.max_sandboxes = quota;
        if (sbx_test_call(c, ch, &sbx_api_admin_create_org, &org.base, &st, NULL) < 0)
                fprintf(stderr, "CreateOrg %s: %s\n", name, st.message);
        sbx_rpc_status_done(&st);
        tok.org = (char *)name;
        tok.role = SBX__V1__ROLE__ROLE_USER;
        if (sbx_test_call(c, ch, &sbx_api_admin_create_token, &tok.base, &st, (ProtobufCMessage **)&resp) >=
            0) {
                token = strdup(resp->token);
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        } else {
                fprintf(stderr, "CreateToken %s: %s\n", name, st.message);
        }
        sbx_rpc_status_done(&st);
        sbx_rpc_channel_free(ch);
        return token;
}
