/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sbx.test.Echo service as a standalone process, for the grpc-js interop suite, for tests that
 * kill a server mid-call, and for benchmarks.
 *
 *   echo-server --port N [--tls DIR]   (DIR from tests/lib/make-test-certs; enables mTLS)
 *
 * Prints "listening on <port>" once ready; exits cleanly on SIGTERM or SIGINT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/parse.h"
#include "common/log/log.h"
#include "common/loop/loop.h"
#include "common/rpc/rpc.h"
#include "tests/lib/echo-service.h"

typedef struct Server {
        SbxRpc *rpc;
        SbxSignals *signals;
        bool done;
} Server;

static void on_rpc_down(void *userdata)
{
        Server *s = userdata;
        s->done = true;
}

static void on_signal(int signo, void *userdata)
{
        Server *s = userdata;
        sbx_rpc_shutdown(s->rpc, USEC_PER_SEC, on_rpc_down, s);
}

int main(int argc, char **argv)
{
        uv_loop_t loop;
        Server srv = { 0 };
        SbxRpcServer *server;
        uint32_t port = 0;
        const char *tls_dir = NULL;
        char cert[4096], key[4096], ca[4096], addr[64];
        int bound, r;

        sbx_log_setup(argv[0], SBX_LOG_TEXT, SBX_LOG_WARNING);
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
                        if (sbx_parse_uint32(argv[++i], &port) < 0 || port > 65535) {
                                fprintf(stderr, "invalid port %s\n", argv[i]);
                                return 2;
                        }
                } else if (strcmp(argv[i], "--tls") == 0 && i + 1 < argc) {
                        tls_dir = argv[++i];
                } else {
                        fprintf(stderr, "usage: %s --port N [--tls DIR]\n", argv[0]);
                        return 2;
                }
        }

        uv_loop_init(&loop);
        if ((r = sbx_rpc_new(&loop, &srv.rpc)) < 0 || (r = sbx_rpc_server_new(srv.rpc, NULL, &server)) < 0 ||
            (r = sbx_test_echo_register(server, NULL)) < 0)
                return log_error_errno(r, "Failed to set up the server: %m"), 1;

        SbxRpcTls tls = { 0 };
        if (tls_dir) {
                snprintf(cert, sizeof(cert), "%s/server.pem", tls_dir);
                snprintf(key, sizeof(key), "%s/server.key", tls_dir);
                snprintf(ca, sizeof(ca), "%s/ca.pem", tls_dir);
                tls = (SbxRpcTls){ .cert_file = cert, .key_file = key, .ca_file = ca };
        }
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
        r = sbx_rpc_server_listen(server, addr, tls_dir ? &tls : NULL, &bound);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on %s: %m", addr), 1;
        sbx_rpc_server_start(server);
        sbx_signals_new(&loop, on_signal, &srv, &srv.signals);
        printf("listening on %d\n", bound);
        fflush(stdout);

        while (!srv.done)
                uv_run(&loop, UV_RUN_ONCE);
        sbx_signals_close(srv.signals);
        return sbx_loop_close_all(&loop) == 0 ? 0 : 1;
}
