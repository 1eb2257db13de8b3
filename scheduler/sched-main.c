/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx-scheduler: the public control API. Every replica serves the API from its mirror of etcd;
 * one replica at a time leads and runs the reconciler.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/loop/loop.h"
#include "common/store/store.h"
#include "scheduler/sched.h"

/* How long running calls get to finish at shutdown. */
#define SHUTDOWN_GRACE (2 * USEC_PER_SEC)
/* How long shutdown waits for in-flight writes to etcd. */
#define SHUTDOWN_WRITES (5 * USEC_PER_SEC)

static Scheduler sched;
static SbxSignals *signals;
static bool done;
static uv_timer_t drain_timer;
static usec_t drain_deadline;

static void on_state_change(SchedState *st, SchedChange what, const char *name, void *userdata)
{
        Scheduler *s = userdata;
        if (what == SCHED_CHANGE_SANDBOX && name)
                sched_create_on_change(s, name);
        else if (what == SCHED_CHANGE_ORG_USAGE || what == SCHED_CHANGE_NODE_USAGE)
                sched_create_on_release(s, what, name);
        else if (what == SCHED_CHANGE_RESYNC) {
                /* Every waiter re-checks after a rebuild. */
                size_t state = 0;
                const char *id;
                char **ids = NULL;
                while (sbx_hashmap_next(s->waiters, &state, &id, NULL))
                        strv_extend(&ids, id);
                STRV_FOREACH (i, ids)
                        sched_create_on_change(s, *i);
                strv_free(ids);
                sched_create_on_release(s, what, name);
        }
}

static void on_bootstrapped(Scheduler *s, int error)
{
        if (error < 0)
                log_warning_errno(error, "Could not register the bootstrap admin token yet: %m");
        sched_leader_start(s);
}

static void on_ready(SchedState *st, void *userdata)
{
        Scheduler *s = userdata;
        log_info("Cluster state loaded at revision %lld; serving", (long long)sched_state_revision(st));
        if (sched_auth_bootstrap(s, on_bootstrapped, NULL) < 0)
                sched_leader_start(s);
}

/* /readyz: the cluster state read (before, every call answers UNAVAILABLE), and not stopping. */
static bool scheduler_ready(void *userdata, const char **ret_why)
{
        Scheduler *s = userdata;
        *ret_why = s->stopping                                 ? "shutting down"
                   : !s->state || !sched_state_ready(s->state) ? "reading the cluster state from etcd"
                                                               : NULL;
        return !*ret_why;
}

static bool rpc_down, metrics_down;

static void on_rpc_down(void *userdata)
{
        rpc_down = true;
        done = rpc_down && metrics_down;
}

static void on_metrics_down(void *userdata)
{
        metrics_down = true;
        done = rpc_down && metrics_down;
}

/*
 * Shutdown runs in phases, each waiting (bounded) for the writes of the one before, so no etcd
 * completion a caller depends on is dropped: API calls end; record writes and the resignation
 * finish; the election and the lease are released; then the clients go. The reconciler's writes
 * are not waited for: whoever leads next repeats what they did not finish.
 */
typedef enum ShutdownPhase {
        PHASE_WRITES,
        PHASE_LEASE,
} ShutdownPhase;

static ShutdownPhase phase;

static void finish_shutdown(Scheduler *s)
{
        s->state = sched_state_free(s->state);
        s->etcd = sbx_etcd_free(s->etcd);
        /* No Txn result comes back any more: end the writes still waiting for one. */
        sched_writes_cancel_all(s);
        if (s->metrics_server)
                sbx_metrics_server_close(s->metrics_server, on_metrics_down, NULL);
        else
                metrics_down = true;
        s->metrics_server = NULL;
        sbx_rpc_shutdown(s->rpc, 0, on_rpc_down, s);
}

static void on_drain_tick(uv_timer_t *t)
{
        Scheduler *s = t->data;
        unsigned writes;
        size_t requests;

        sched_writes_pending(s, &writes, &requests);
        bool idle = writes == 0 && requests == 0;
        if (!idle && sbx_now_monotonic() < drain_deadline)
                return;
        if (!idle)
                log_warning("Shutting down with %u record writes and %zu etcd requests unfinished", writes,
                            requests);
        if (phase == PHASE_WRITES) {
                phase = PHASE_LEASE;
                s->reconciler = sched_reconciler_free(s->reconciler);
                sched_leader_free(s);
                drain_deadline = sbx_now_monotonic() + SHUTDOWN_WRITES;
                return;
        }
        uv_close((uv_handle_t *)&drain_timer, NULL);
        finish_shutdown(s);
}

static void on_server_down(void *userdata)
{
        Scheduler *s = userdata;
        sched_reconciler_set_leader(s->reconciler, false);
        phase = PHASE_WRITES;
        drain_deadline = sbx_now_monotonic() + SHUTDOWN_WRITES;
        uv_timer_init(s->loop, &drain_timer);
        drain_timer.data = s;
        uv_timer_start(&drain_timer, on_drain_tick, 20, 20);
}

static void on_signal(int signo, void *userdata)
{
        Scheduler *s = userdata;
        log_info("Received %s; shutting down", strsignal(signo));
        s->stopping = true;
        sched_leader_stop(s);
        sbx_rpc_server_shutdown(s->server, SHUTDOWN_GRACE, on_server_down, s);
}

static int setup(Scheduler *s)
{
        SbxRpcTls etcd_tls = { .cert_file = s->cfg.etcd_cert,
                               .key_file = s->cfg.etcd_key,
                               .ca_file = s->cfg.etcd_ca };
        SbxRpcTls api_tls = { .cert_file = s->cfg.tls_cert,
                              .key_file = s->cfg.tls_key,
                              .ca_file = s->cfg.tls_client_ca };
        SbxRpcServerOptions so = { .metrics = NULL };
        char host[256] = "localhost";
        int r, port;

        r = sbx_cluster_key_load(s->cfg.cluster_key_file, &s->key);
        if (r == -EPERM)
                return log_error_errno(r, "The cluster key file %s is readable by others; chmod 600 it",
                                       s->cfg.cluster_key_file);
        if (r < 0)
                return log_error_errno(r, "Failed to load the cluster key from %s: %m",
                                       s->cfg.cluster_key_file);

        gethostname(host, sizeof(host) - 1);
        if (s->cfg.name)
                s->identity = strdup(s->cfg.name);
        else if (asprintf(&s->identity, "%s:%d", host, (int)getpid()) < 0)
                s->identity = NULL;
        if (!s->identity)
                return log_oom();

        if ((r = sbx_metrics_new(&s->metrics)) < 0 || (r = sched_metrics_register(s)) < 0)
                return log_error_errno(r, "Failed to set up metrics: %m");
        so.metrics = s->metrics;
        /* Everything the scheduler does arrives through gRPC (its API, etcd's answers and watch):
         * the loop thread polls gRPC itself, sparing a thread hand-off per completion. */
        if ((r = sbx_rpc_new_polling_loop(s->loop, &s->rpc)) < 0)
                return log_error_errno(r, "Failed to start gRPC: %m");

        SbxEtcdOptions eo = { .endpoints = s->cfg.etcd_endpoints, .tls = s->cfg.etcd_ca ? &etcd_tls : NULL };
        if ((r = sbx_etcd_new(s->rpc, &eo, &s->etcd)) < 0)
                return log_error_errno(r, "Failed to set up the etcd client: %m");
        LIST_INIT(&s->writes);
        TAILQ_INIT(&s->releases);
        if ((r = sbx_hashmap_new(&s->waiters)) < 0 || (r = sbx_hashmap_new(&s->org_lines)) < 0 ||
            (r = sched_state_new(s->etcd, &s->state)) < 0 ||
            (r = sched_state_listen(s->state, on_state_change, s)) < 0 ||
            (r = sched_reconciler_new(s, &s->reconciler)) < 0)
                return log_oom();

        if ((r = sbx_rpc_server_new(s->rpc, &so, &s->server)) < 0 ||
            (r = sched_api_sandboxes_register(s, s->server)) < 0 ||
            (r = sched_api_admin_register(s, s->server)) < 0)
                return log_error_errno(r, "Failed to set up the API server: %m");
        if (!!s->cfg.tls_cert != !!s->cfg.tls_key)
                return log_error_errno(-EINVAL, "tls-cert and tls-key go together");
        if (s->cfg.tls_client_ca && !s->cfg.tls_cert)
                return log_error_errno(-EINVAL,
                                       "tls-client-ca needs tls-cert and tls-key: mTLS is TLS first");
        if (!!s->cfg.etcd_cert != !!s->cfg.etcd_key)
                return log_error_errno(-EINVAL, "etcd-cert and etcd-key go together");
        if (s->cfg.etcd_cert && !s->cfg.etcd_ca)
                return log_error_errno(
                        -EINVAL, "etcd-cert needs etcd-ca: client certificates are only sent over TLS");
        r = sbx_rpc_server_listen(s->server, s->cfg.listen, s->cfg.tls_cert ? &api_tls : NULL, &port);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on %s: %m", s->cfg.listen);
        if ((r = sbx_rpc_server_start(s->server)) < 0)
                return log_error_errno(r, "Failed to start the API server: %m");

        if (s->cfg.metrics_listen) {
                r = sbx_metrics_server_new(s->loop, s->metrics, s->cfg.metrics_listen, &s->metrics_server,
                                           NULL);
                if (r < 0)
                        return log_error_errno(r, "Failed to serve metrics on %s: %m",
                                               s->cfg.metrics_listen);
                sbx_metrics_server_set_ready(s->metrics_server, scheduler_ready, s);
        }
        if ((r = sbx_signals_new(s->loop, on_signal, s, &signals)) < 0)
                return log_error_errno(r, "Failed to set up signal handling: %m");

        log_info("sbx-scheduler %s listening on %s (%s), metrics on %s, etcd %s", s->identity, s->cfg.listen,
                 s->cfg.tls_cert ? (s->cfg.tls_client_ca ? "mTLS" : "TLS") : "plaintext",
                 s->cfg.metrics_listen ? s->cfg.metrics_listen : "(off)", s->cfg.etcd_endpoints[0]);
        return sched_state_start(s->state, on_ready, s);
}

int main(int argc, char **argv)
{
        Scheduler *s = &sched;
        _cleanup_free_ char *error = NULL;
        uv_loop_t loop;
        int r;

        sbx_log_setup(argv[0], SBX_LOG_TEXT, SBX_LOG_INFO);
        r = sbx_config_load(&sched_config_table, &s->cfg, argc, argv, &error);
        if (r == 1)
                return EXIT_SUCCESS;
        if (r < 0) {
                fprintf(stderr, "%s\n", error);
                sbx_config_done(&sched_config_table, &s->cfg);
                return 2;
        }
        sbx_log_setup(argv[0], s->cfg.log_format, s->cfg.log_level);

        uv_loop_init(&loop);
        s->loop = &loop;
        s->seed = (uint64_t)getpid() << 32 ^ sbx_now_monotonic();
        r = setup(s);
        if (r >= 0) {
                while (!done)
                        sbx_rpc_run_once(&loop);
        } else if (s->rpc) {
                /* Tear down what was built, in order. */
                s->reconciler = sched_reconciler_free(s->reconciler);
                s->state = sched_state_free(s->state);
                s->etcd = sbx_etcd_free(s->etcd);
                if (s->metrics_server)
                        sbx_metrics_server_close(s->metrics_server, on_metrics_down, NULL);
                else
                        metrics_down = true;
                sbx_rpc_shutdown(s->rpc, 0, on_rpc_down, s);
                while (!done)
                        sbx_rpc_run_once(&loop);
        }
        sbx_signals_close(signals);
        sbx_loop_close_all(&loop);
        sbx_hashmap_free(s->waiters, NULL);
        sbx_hashmap_free(s->org_lines, free);
        sbx_metrics_free(s->metrics);
        sbx_cluster_key_wipe(&s->key);
        free(s->identity);
        sbx_config_done(&sched_config_table, &s->cfg);
        if (r >= 0)
                log_info("Stopped");
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
