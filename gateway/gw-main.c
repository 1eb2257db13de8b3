/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx-gateway: the HTTP + WebSocket protocol of Deno's @deno/sandbox SDK in front of an sbx
 * cluster (docs/deno-sdk.md). One libuv loop carries the listeners and the TLS relay, libwebsockets,
 * and the gRPC clients to the scheduler and to the nodes' data planes.
 */
#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/sandbox-id.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/loop/loop.h"
#include "gateway/gw.h"

/* Time for close frames to reach clients at shutdown before connections are cut. */
#define SHUTDOWN_FLUSH_MS 500

static Gateway gateway;
static SbxSignals *signals;
static bool done;
static uv_timer_t shutdown_timer;
static unsigned shutdown_step;

static void on_rpc_down(void *userdata)
{
        done = true;
}

static void on_metrics_down(void *userdata)
{
        Gateway *gw = userdata;
        gw->scheduler = sbx_rpc_channel_free(gw->scheduler);
        sbx_rpc_shutdown(gw->rpc, 0, on_rpc_down, gw);
}

static void on_http_closed(Gateway *gw)
{
        if (gw->metrics_server)
                sbx_metrics_server_close(gw->metrics_server, on_metrics_down, gw);
        else
                on_metrics_down(gw);
        gw->metrics_server = NULL;
}

static void on_shutdown_tick(uv_timer_t *t)
{
        Gateway *gw = t->data;

        if (shutdown_step++ == 0) {
                /* Close frames had their chance: cut what is left. */
                gw_conns_close_all(gw);
                uv_timer_start(t, on_shutdown_tick, 100, 0);
                return;
        }
        uv_close((uv_handle_t *)t, NULL);
        gw_http_close(gw, on_http_closed);
}

static void on_signal(int signo, void *userdata)
{
        Gateway *gw = userdata;

        if (gw->stopping)
                return;
        log_info("Received %s; shutting down", strsignal(signo));
        gw->stopping = true;
        for (size_t i = 0; i < gw->n_listeners; i++)
                gw_listener_close(gw->listeners[i]);
        gw->n_listeners = 0;
        gw_sandboxes_close_all(gw);
        uv_timer_init(gw->loop, &shutdown_timer);
        shutdown_timer.data = gw;
        uv_timer_start(&shutdown_timer, on_shutdown_tick, SHUTDOWN_FLUSH_MS, 0);
}

static int setup_tls(Gateway *gw)
{
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

        if (!ctx)
                return -ENOMEM;
        gw->tls = ctx;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        if (SSL_CTX_use_certificate_chain_file(ctx, gw->cfg.tls_cert) != 1)
                return log_error_errno(-EINVAL, "Cannot load the TLS certificate %s: %s", gw->cfg.tls_cert,
                                       ERR_reason_error_string(ERR_get_error()));
        if (SSL_CTX_use_PrivateKey_file(ctx, gw->cfg.tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1)
                return log_error_errno(-EINVAL, "Cannot load the TLS key %s (or it does not match %s): %s",
                                       gw->cfg.tls_key, gw->cfg.tls_cert,
                                       ERR_reason_error_string(ERR_get_error()));
        return 0;
}

static int listen_on(Gateway *gw, const char *address, const char *region)
{
        GwListener **l = reallocarray(gw->listeners, gw->n_listeners + 1, sizeof(GwListener *));
        int r, port;

        if (!l)
                return log_oom();
        gw->listeners = l;
        if (!sbx_region_valid(region))
                return log_error_errno(-EINVAL, "\"%s\" is not a region name (three lowercase letters)",
                                       region);
        r = gw_listener_new(gw, address, region, &gw->listeners[gw->n_listeners], &port);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on %s: %m", address);
        gw->n_listeners++;
        log_info("Serving region %s on %s (port %d, %s)", region, address, port, gw->tls ? "https" : "http");
        return 0;
}

static int setup(Gateway *gw)
{
        SbxRpcTls sched_tls = { .ca_file = gw->cfg.scheduler_ca,
                                .server_name = gw->cfg.scheduler_server_name,
                                .cert_file = gw->cfg.scheduler_cert,
                                .key_file = gw->cfg.scheduler_key };
        bool sched_use_tls = gw->cfg.scheduler_ca || gw->cfg.scheduler_cert;
        SbxRpcChannelOptions co = { .tls = sched_use_tls ? &sched_tls : NULL,
                                    .keepalive_time = 30 * USEC_PER_SEC,
                                    .max_reconnect_backoff = 5 * USEC_PER_SEC };
        int r;

        if (!!gw->cfg.tls_cert != !!gw->cfg.tls_key)
                return log_error_errno(-EINVAL, "tls-cert and tls-key go together");
        if (!!gw->cfg.scheduler_cert != !!gw->cfg.scheduler_key)
                return log_error_errno(-EINVAL, "scheduler-cert and scheduler-key go together");
        if (gw->cfg.min_memory_mb > gw->cfg.max_memory_mb)
                return log_error_errno(-EINVAL, "min-memory-mb is above max-memory-mb");
        gw->data_tls = (SbxRpcTls){ .ca_file = gw->cfg.data_ca, .server_name = gw->cfg.data_server_name };
        gw->data_use_tls = gw->cfg.data_ca != NULL;
        gw_list_init(&gw->conns);

        if ((r = sbx_hashmap_new(&gw->sandboxes)) < 0)
                return log_oom();
        if ((r = sbx_metrics_new(&gw->metrics)) < 0 || (r = gw_metrics_register(gw)) < 0)
                return log_error_errno(r, "Failed to set up metrics: %m");
        if ((r = sbx_rpc_new(gw->loop, &gw->rpc)) < 0)
                return log_error_errno(r, "Failed to start gRPC: %m");
        r = sbx_rpc_channel_new(gw->rpc, gw->cfg.scheduler, &co, &gw->scheduler);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the channel to the scheduler at %s: %m",
                                       gw->cfg.scheduler);
        if (gw->cfg.tls_cert && (r = setup_tls(gw)) < 0)
                return r;
        if ((r = gw_http_new(gw)) < 0)
                return log_error_errno(
                        r, "Failed to start libwebsockets (is libwebsockets-evlib-uv installed?): %m");

        if ((r = listen_on(gw, gw->cfg.listen, gw->cfg.default_region)) < 0)
                return r;
        STRV_FOREACH (e, gw->cfg.region_listen) {
                _cleanup_free_ char *region = NULL;
                const char *eq = strchr(*e, '=');
                if (!eq)
                        return log_error_errno(-EINVAL, "region-listen: \"%s\" is not REGION=ADDRESS", *e);
                region = strndup(*e, (size_t)(eq - *e));
                if (!region)
                        return log_oom();
                if ((r = listen_on(gw, eq + 1, region)) < 0)
                        return r;
        }
        if (gw->cfg.metrics_listen) {
                r = sbx_metrics_server_new(gw->loop, gw->metrics, gw->cfg.metrics_listen,
                                           &gw->metrics_server, NULL);
                if (r < 0)
                        return log_error_errno(r, "Failed to serve metrics on %s: %m",
                                               gw->cfg.metrics_listen);
        }
        if ((r = sbx_signals_new(gw->loop, on_signal, gw, &signals)) < 0)
                return log_error_errno(r, "Failed to set up signal handling: %m");
        log_info("sbx-gateway serving the @deno/sandbox protocol; scheduler %s (%s), data plane %s, metrics "
                 "on %s",
                 gw->cfg.scheduler, sched_use_tls ? "TLS" : "plaintext",
                 gw->data_use_tls ? "TLS" : "plaintext",
                 gw->cfg.metrics_listen ? gw->cfg.metrics_listen : "(off)");
        return 0;
}

int main(int argc, char **argv)
{
        Gateway *gw = &gateway;
        _cleanup_free_ char *error = NULL;
        uv_loop_t loop;
        int r;

        sbx_log_setup(argv[0], SBX_LOG_TEXT, SBX_LOG_INFO);
        r = sbx_config_load(&gw_config_table, &gw->cfg, argc, argv, &error);
        if (r == 1)
                return EXIT_SUCCESS;
        if (r < 0) {
                fprintf(stderr, "%s\n", error);
                sbx_config_done(&gw_config_table, &gw->cfg);
                return 2;
        }
        sbx_log_setup(argv[0], gw->cfg.log_format, gw->cfg.log_level);
        /* A client that goes away mid-write must not take the daemon with it. */
        signal(SIGPIPE, SIG_IGN);

        uv_loop_init(&loop);
        gw->loop = &loop;
        r = setup(gw);
        if (r < 0 && gw->rpc) {
                /* Unwind what was built, through the same asynchronous path as a shutdown. */
                gw->stopping = true;
                for (size_t i = 0; i < gw->n_listeners; i++)
                        gw_listener_close(gw->listeners[i]);
                gw->n_listeners = 0;
                if (gw->lws)
                        gw_http_close(gw, on_http_closed);
                else
                        on_http_closed(gw);
        }
        if (gw->rpc)
                while (!done)
                        uv_run(&loop, UV_RUN_ONCE);
        sbx_signals_close(signals);
        sbx_loop_close_all(&loop);
        free(gw->listeners);
        sbx_hashmap_free(gw->sandboxes, NULL);
        sbx_metrics_free(gw->metrics);
        SSL_CTX_free(gw->tls);
        sbx_config_done(&gw_config_table, &gw->cfg);
        if (r >= 0)
                log_info("Stopped");
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
