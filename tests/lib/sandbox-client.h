/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A data-plane client for integration tests: creates a sandbox through the scheduler, then talks
 * to its agent's SandboxData service with the access token, as any client would. Everything is
 * blocking (it runs the cluster's loop until the call ends).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/buffer.h"
#include "proto/sbx/v1/data.pb-c.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"
#include "tests/lib/cluster.h"

typedef struct SbxTestSandbox {
        SbxTestCluster *cluster;
        char id[64];
        char data_address[64];
        char node[64];
        char *access_token;
        SbxRpcChannel *data;
        uint64_t boot_duration_ms;
        /* For callers' own use (benchmarks mark sandboxes whose TLS the egress proxy intercepts). */
        bool intercepted;
} SbxTestSandbox;

/* Creates a sandbox (Create waits until it runs) with `org_token`; memory_mb/vcpus 0: defaults. */
int sbx_test_sandbox_create(SbxTestCluster *c, const char *org_token, const char *region, uint32_t memory_mb,
                            uint64_t lifetime_ms, SbxTestSandbox *ret, SbxRpcStatus *ret_status);
/* The same with a whole request (allow-list, secrets, ...). */
int sbx_test_sandbox_create_req(SbxTestCluster *c, const char *org_token,
                                const Sbx__V1__CreateSandboxRequest *req, SbxTestSandbox *ret,
                                SbxRpcStatus *ret_status);
/* Frees the client side (the sandbox itself is left alone). */
void sbx_test_sandbox_done(SbxTestSandbox *sb);

/* A channel to the sandbox's agent with another bearer token (for token tests). */
SbxRpcChannel *sbx_test_data_channel(SbxTestSandbox *sb, const char *token);

typedef struct SbxTestExecOptions {
        /* NULL-terminated; argv[0] is the command. */
        const char *const *argv;
        const void *stdin_data;
        size_t stdin_size;
        /* Keep stdin open after stdin_data (the caller signals the process). */
        bool keep_stdin_open;
        bool tty;
        const char *user;
        const char *cwd;
        /* "K=V" strings, NULL-terminated. */
        const char *const *env;
        /* Do not keep stdout; count it and check that every byte equals `stdout_fill`. */
        bool count_only;
        uint8_t stdout_fill;
        /* Sent once the process started (e.g. "SIGTERM"); NULL: none. */
        const char *signal;
        /* Called with the agent's pid about every 100 ms while the call runs (memory sampling). */
        void (*sample)(void *userdata);
        void *userdata;
        /* Whole call timeout; 0 means 120 s. */
        usec_t timeout;
} SbxTestExecOptions;

typedef struct SbxTestExecResult {
        SbxRpcStatus status;
        bool started;
        int32_t code;
        char signal[16];
        bool oom;
        SbxBuffer out;
        SbxBuffer err;
        uint64_t out_bytes;
        /* When the first stdout bytes arrived (monotonic), or 0. */
        usec_t first_output;
        /* Bytes of stdout that were not stdout_fill (count_only). */
        uint64_t out_mismatches;
} SbxTestExecResult;

/* Runs a process and waits for its end; returns 0 when the call completed with an exit status. */
int sbx_test_exec(SbxTestSandbox *sb, const SbxTestExecOptions *o, SbxTestExecResult *ret);
void sbx_test_exec_result_done(SbxTestExecResult *r);

/* Convenience: runs `sh -c script` and returns its stdout (malloc'ed, NUL-terminated) and code. */
int sbx_test_sh(SbxTestSandbox *sb, const char *script, char **ret_stdout, int32_t *ret_code);

/* A blocking unary data-plane call (method by name, e.g. "Stat"); *ret_response owned by caller. */
int sbx_test_data_call(SbxTestSandbox *sb, SbxRpcChannel *ch, const char *method,
                       const ProtobufCMessage *req, SbxRpcStatus *ret_status,
                       ProtobufCMessage **ret_response);

/* Uploads `n` bytes to `path` with WriteFile (in 64 KiB messages, respecting flow control). */
int sbx_test_write_file(SbxTestSandbox *sb, const char *path, const void *p, size_t n,
                        SbxRpcStatus *ret_status);
/* Downloads `path` with ReadFile. */
int sbx_test_read_file(SbxTestSandbox *sb, const char *path, SbxBuffer *out, SbxRpcStatus *ret_status);
