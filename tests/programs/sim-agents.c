/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SIMULATED agents as a process (tests/lib/sim-agents.h): registers simulated nodes in etcd and
 * answers their assignments, for tests written in other languages and for trying the scheduler
 * without microVMs.
 *
 *   sim-agents --etcd HOST:PORT [--regions ams,ord] [--nodes N] [--slots N] [--memory-mb N]
 *              [--vcpus N] [--boot-delay 100ms] [--failure-rate 0.1] [--lease-ttl 5] [--prefix sim]
 *
 * Prints "ready" once every node is registered; exits on SIGTERM or SIGINT, revoking its leases.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/parse.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/loop/loop.h"
#include "tests/lib/sim-agents.h"

static bool stop, down;

static void on_signal(int signo, void *userdata)
{
        stop = true;
}

static void on_down(void *userdata)
{
        down = true;
}

static int usage(const char *argv0)
{
        fprintf(stderr,
                "usage: %s --etcd HOST:PORT [--regions ams,ord] [--nodes N] [--slots N] [--memory-mb N] "
                "[--vcpus N]\n"
                "       [--boot-delay DURATION] [--failure-rate F] [--lease-ttl SECONDS] [--prefix NAME]\n",
                argv0);
        return 2;
}

int main(int argc, char **argv)
{
        _cleanup_strv_free_ char **regions = NULL;
        const char *etcd_ep = NULL;
        SbxSimOptions o = {
                .nodes_per_region = 2, .memory_mb = 16384, .vcpus = 16, .slots = 8, .lease_ttl = 5
        };
        uv_loop_t loop;
        SbxRpc *rpc;
        SbxEtcd *etcd;
        SbxSimCluster *c;
        SbxSignals *sig;
        bool announced = false;
        int r;

        sbx_log_setup(argv[0], SBX_LOG_TEXT, SBX_LOG_WARNING);
        for (int i = 1; i < argc; i++) {
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                uint32_t u;
                uint64_t u64;
                if (!v)
                        return usage(argv[0]);
                if (streq(argv[i], "--etcd"))
                        etcd_ep = v;
                else if (streq(argv[i], "--regions") && strv_split(v, ',', &regions) >= 0)
                        ;
                else if (streq(argv[i], "--nodes") && sbx_parse_uint32(v, &u) >= 0)
                        o.nodes_per_region = u;
                else if (streq(argv[i], "--slots") && sbx_parse_uint32(v, &u) >= 0)
                        o.slots = u;
                else if (streq(argv[i], "--vcpus") && sbx_parse_uint32(v, &u) >= 0)
                        o.vcpus = u;
                else if (streq(argv[i], "--memory-mb") && sbx_parse_uint64(v, &u64) >= 0)
                        o.memory_mb = u64;
                else if (streq(argv[i], "--lease-ttl") && sbx_parse_uint32(v, &u) >= 0)
                        o.lease_ttl = u;
                else if (streq(argv[i], "--boot-delay") && sbx_parse_duration(v, &o.boot_delay) >= 0)
                        ;
                else if (streq(argv[i], "--failure-rate"))
                        o.failure_rate = atof(v);
                else if (streq(argv[i], "--prefix"))
                        o.name_prefix = v;
                else
                        return usage(argv[0]);
                i++;
        }
        if (!etcd_ep)
                return usage(argv[0]);
        if (!regions && strv_split("ams,ord", ',', &regions) < 0)
                return 1;
        o.regions = (const char *const *)regions;

        uv_loop_init(&loop);
        o.loop = &loop;
        SbxEtcdOptions eo = { .endpoints = (char *const[]){ (char *)etcd_ep, NULL } };
        if ((r = sbx_rpc_new(&loop, &rpc)) < 0 || (r = sbx_etcd_new(rpc, &eo, &etcd)) < 0 ||
            (r = sbx_sim_cluster_new(etcd, &o, &c)) < 0 ||
            (r = sbx_signals_new(&loop, on_signal, NULL, &sig)) < 0)
                return log_error_errno(r, "Failed to start the simulated cluster: %m"), 1;
        while (!stop) {
                uv_run(&loop, UV_RUN_ONCE);
                if (!announced && sbx_sim_cluster_ready(c)) {
                        printf("ready\n");
                        fflush(stdout);
                        announced = true;
                }
        }
        sbx_sim_cluster_free(c);
        /* Let the lease revokes go out before the client goes. */
        usec_t until = sbx_now_monotonic() + 300 * USEC_PER_MSEC;
        while (sbx_now_monotonic() < until)
                uv_run(&loop, UV_RUN_NOWAIT);
        sbx_etcd_free(etcd);
        sbx_rpc_shutdown(rpc, 0, on_down, NULL);
        while (!down)
                uv_run(&loop, UV_RUN_ONCE);
        sbx_signals_close(sig);
        return sbx_loop_close_all(&loop) == 0 ? 0 : 1;
}
