/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Test fixtures: ports, temporary directories, child processes, a real etcd per test, TLS test
 * certificates. Everything a fixture starts is stopped by its _stop/_free function, and child
 * processes die with the test process (PR_SET_PDEATHSIG via setpriv), so a crashing test leaves
 * nothing behind. Children are started with posix_spawn: gRPC and fork() do not mix.
 */

#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "common/base/time-util.h"

/* A TCP port on 127.0.0.1 that was free a moment ago, below the ephemeral range. */
int sbx_test_free_port(void);

/* mkdtemp under $TMPDIR (or /tmp) with the given prefix; caller frees the string and the tree. */
char *sbx_test_tempdir(const char *prefix);
/* rm -rf; refuses paths outside the temporary directory. */
void sbx_test_rmrf(const char *path);

/* Spawns argv[0] (PATH lookup) so that it is killed when this process dies; stdout and stderr go to
 * `log_path` when not NULL. Returns the pid or a negative error. */
pid_t sbx_test_spawn(char *const argv[], const char *log_path);
/* Prints the last `lines` lines of a daemon's log to stderr as "[----] <who>: <line>", the way
 * tests/lib/run-unit picks lines out of a failed test binary's output. */
void sbx_test_show_log(const char *log_path, const char *who, unsigned lines);
/* Sends `sig`, waits up to `timeout` for the exit, SIGKILLs after that; returns the wait status. */
int sbx_test_stop(pid_t pid, int sig, usec_t timeout);

/* Waits until a TCP connect to 127.0.0.1:port succeeds. -ETIMEDOUT otherwise. */
int sbx_test_wait_port(int port, usec_t timeout);

/* Runs `loop` until *flag is true or `timeout` passes; returns 0 or -ETIMEDOUT. */
int sbx_test_run_until(uv_loop_t *loop, const bool *flag, usec_t timeout);
/* Runs `loop` for `duration`. */
void sbx_test_run_for(uv_loop_t *loop, usec_t duration);

/* A real etcd (Debian's etcd-server) on ephemeral loopback ports with a temporary data dir. */
typedef struct SbxTestEtcd {
        pid_t pid;
        int client_port;
        int peer_port;
        char *dir;
        /* "127.0.0.1:<client_port>" */
        char endpoint[64];
} SbxTestEtcd;

/* Starts etcd and waits until it answers (about 0.3 s). NULL on failure (the reason on stderr). */
SbxTestEtcd *sbx_test_etcd_start(void);
/* Stops (SIGTERM) or kills (SIGKILL) the process but keeps the data dir and ports. */
void sbx_test_etcd_halt(SbxTestEtcd *e, int sig);
/* Starts it again on the same ports and data; 0 or a negative error. */
int sbx_test_etcd_restart(SbxTestEtcd *e);
/* Stops it and removes its data. Accepts NULL. */
void sbx_test_etcd_stop(SbxTestEtcd *e);
/* Runs etcdctl against it (ETCDCTL_API=3) with the given arguments; returns the exit status. */
int sbx_test_etcdctl(SbxTestEtcd *e, const char *const *args);

/*
 * TLS material in a new temporary directory: ca.pem; server.pem/server.key for "sbx-test-server"
 * (SANs: sbx-test-server, localhost, 127.0.0.1); client.pem/client.key (CN sbx-test-client)
 * signed by ca.pem; rogue-ca.pem and rogue-client.pem/.key from a CA nobody trusts. Made by
 * tests/lib/make-test-certs with the openssl command. Caller frees and removes the directory.
 */
char *sbx_test_make_certs(void);

/* Absolute path of a file of the source tree (tests run from the repository root or build/). */
const char *sbx_test_srcdir(void);
