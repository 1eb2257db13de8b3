/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sandboxes end to end with REAL microVMs: a real etcd, a real sbx-scheduler and a real sbx-agent
 * that boots QEMU (TCG on machines without usable KVM) from the image `make image` built. Each test
 * runs in a network namespace of its own (tests/lib/agents.h) and checks at the end that the agent
 * left nothing behind: no VMM process, tap, cgroup or sandbox directory.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/random-util.h"
#include "common/base/string-util.h"
#include "common/crypto/crypto.h"
#include "common/store/store.h"
#include "common/token/token.h"
#include "tests/lib/agents.h"
#include "tests/lib/cluster.h"
#include "tests/lib/sandbox-client.h"

static SbxTestCluster C;
static SbxTestAgent A;
static char *token; /* org "acme" */

static void setup(void)
{
        memset(&C, 0, sizeof(C));
        memset(&A, 0, sizeof(A));
        cr_assert_eq(sbx_test_netns_enter(), 0, "cannot make a network namespace (tests need root)");
        cr_assert_eq(sbx_test_cluster_start(&C, 1), 0, "control plane did not start");
        cr_assert_eq(sbx_test_agent_start(&C, &A, 0, "ams"), 0, "agent did not start");
        token = sbx_test_org(&C, "acme", 5);
        cr_assert_not_null(token);
}

static void teardown(void)
{
        char report[2048];
        int stop = sbx_test_agent_stop(&A, SIGTERM);
        int left = sbx_test_agent_leftovers(&A, report, sizeof(report));
        sbx_test_agent_cleanup(&A);
        int r = sbx_test_cluster_stop(&C);
        free(token);
        token = NULL;
        cr_expect_eq(left, 0, "the agent left things behind:\n%s", report);
        cr_expect_eq(stop, 0, "the agent did not shut down cleanly");
        cr_expect_eq(r, 0, "the scheduler did not shut down cleanly");
}

TestSuite(sandbox, .init = setup, .fini = teardown, .timeout = 240);

/* ---- helpers ---- */

static void create(SbxTestSandbox *sb, uint32_t memory_mb, uint64_t lifetime_ms)
{
        SbxRpcStatus st = { 0 };
        int r = sbx_test_sandbox_create(&C, token, "ams", memory_mb, lifetime_ms, sb, &st);
        if (r < 0)
                sbx_test_show_log(A.log, "agent", 40);
        cr_assert_eq(r, 0, "Create failed: %d %s", st.code, strempty(st.message));
        sbx_rpc_status_done(&st);
}

static Sbx__V1__SandboxState state_of(const char *id, char *reason, size_t n)
{
        Sbx__V1__GetSandboxRequest req = SBX__V1__GET_SANDBOX_REQUEST__INIT;
        Sbx__V1__Sandbox *sb = NULL;
        SbxRpcStatus st = { 0 };
        SbxRpcChannel *ch = sbx_test_channel(&C, 0, token);
        Sbx__V1__SandboxState s = SBX__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED;

        req.id = (char *)id;
        if (sbx_test_call(&C, ch, &sbx_api_sandboxes_get, &req.base, &st, (ProtobufCMessage **)&sb) == 0) {
                s = sb->state;
                if (reason)
                        snprintf(reason, n, "%s", strempty(sb->reason));
                protobuf_c_message_free_unpacked(&sb->base, NULL);
        }
        sbx_rpc_status_done(&st);
        sbx_rpc_channel_free(ch);
        return s;
}

/* Waits until the sandbox is in state `want`; returns the time it took or -1. */
static double wait_state(const char *id, Sbx__V1__SandboxState want, double seconds, char *reason, size_t n)
{
        usec_t start = sbx_now_monotonic();
        while (sbx_now_monotonic() - start < (usec_t)(seconds * USEC_PER_SEC)) {
                if (state_of(id, reason, n) == want)
                        return (double)(sbx_now_monotonic() - start) / USEC_PER_SEC;
                sbx_test_cluster_run(&C, 50 * USEC_PER_MSEC);
        }
        return -1;
}

static bool process_gone(pid_t pid)
{
        char p[64];
        snprintf(p, sizeof(p), "/proc/%d", (int)pid);
        return access(p, F_OK) < 0;
}

static uid_t process_uid(pid_t pid)
{
        char p[64];
        struct stat st;
        snprintf(p, sizeof(p), "/proc/%d", (int)pid);
        return pid > 0 && stat(p, &st) == 0 ? st.st_uid : 0;
}

static SbxTestExecResult run(SbxTestSandbox *sb, const char *const *argv)
{
        SbxTestExecOptions o = { .argv = argv };
        SbxTestExecResult res;
        int r = sbx_test_exec(sb, &o, &res);
        cr_assert_eq(r, 0, "exec %s failed: %d %s", argv[0], res.status.code, strempty(res.status.message));
        return res;
}

static char *sh(SbxTestSandbox *sb, const char *script)
{
        char *out = NULL;
        int32_t code = -1;
        cr_assert_eq(sbx_test_sh(sb, script, &out, &code), 0);
        cr_assert_eq(code, 0, "`%s` exited with %d: %s", script, code, out);
        return out;
}

/* ---- processes ---- */

Test(sandbox, exec_echo_exit_codes_and_signals)
{
        SbxTestSandbox sb;
        create(&sb, 0, 0);
        cr_log_info("boot (create to RUNNING, agent-side): %llu ms",
                    (unsigned long long)sb.boot_duration_ms);

        SbxTestExecResult res = run(&sb, (const char *const[]){ "echo", "hello", NULL });
        cr_expect_eq(res.code, 0);
        cr_expect_eq(sbx_buffer_size(&res.out), 6);
        cr_expect_eq(memcmp(sbx_buffer_data(&res.out), "hello\n", 6), 0);
        sbx_test_exec_result_done(&res);

        res = run(&sb, (const char *const[]){ "sh", "-c", "echo oops >&2; exit 3", NULL });
        cr_expect_eq(res.code, 3);
        cr_expect_eq(sbx_buffer_size(&res.err), 5);
        sbx_test_exec_result_done(&res);

        SbxTestExecOptions o = { .argv = (const char *const[]){ "sleep", "100", NULL },
                                 .signal = "SIGTERM" };
        cr_assert_eq(sbx_test_exec(&sb, &o, &res), 0);
        cr_expect_eq(res.code, 143, "killed by SIGTERM: code %d", res.code);
        cr_expect_str_eq(res.signal, "SIGTERM");
        sbx_test_exec_result_done(&res);

        /* A command that does not exist: a clear error, not a hang. */
        o = (SbxTestExecOptions){ .argv = (const char *const[]){ "no-such-command", NULL } };
        cr_expect_neq(sbx_test_exec(&sb, &o, &res), 0);
        cr_expect_eq(res.status.code, SBX_STATUS_NOT_FOUND, "status %d: %s", res.status.code,
                     strempty(res.status.message));
        sbx_test_exec_result_done(&res);
        sbx_test_sandbox_done(&sb);
}

Test(sandbox, cat_10_mib_round_trip)
{
        SbxTestSandbox sb;
        size_t n = 10u << 20;
        uint8_t *data = malloc(n);
        cr_assert_not_null(data);
        sbx_random_bytes(data, n);
        create(&sb, 0, 0);

        SbxTestExecOptions o = { .argv = (const char *const[]){ "cat", NULL },
                                 .stdin_data = data,
                                 .stdin_size = n };
        SbxTestExecResult res;
        usec_t t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_test_exec(&sb, &o, &res), 0, "%s", strempty(res.status.message));
        double s = (double)(sbx_now_monotonic() - t0) / USEC_PER_SEC;
        cr_log_info("10 MiB through cat in %.2f s (%.1f MiB/s)", s, 10 / s);
        cr_expect_eq(res.code, 0);
        cr_assert_eq(sbx_buffer_size(&res.out), n);
        char a[SBX_SHA256_HEX_LEN + 1], b[SBX_SHA256_HEX_LEN + 1];
        sbx_sha256_hex(data, n, a);
        sbx_sha256_hex(sbx_buffer_data(&res.out), n, b);
        cr_expect_str_eq(a, b, "the bytes that came back differ");
        sbx_test_exec_result_done(&res);
        free(data);
        sbx_test_sandbox_done(&sb);
}

static long agent_rss_peak_kib;

static void sample_agent(void *userdata)
{
        long kib = sbx_test_rss_kib(A.pid, false);
        if (kib > agent_rss_peak_kib)
                agent_rss_peak_kib = kib;
}

Test(sandbox, stdout_100_mib_with_bounded_memory)
{
        SbxTestSandbox sb;
        create(&sb, 0, 0);
        long before = sbx_test_rss_kib(A.pid, false);
        agent_rss_peak_kib = before;

        SbxTestExecOptions o = { .argv = (const char *const[]){ "head", "-c", "104857600", "/dev/zero",
                                                                NULL },
                                 .count_only = true,
                                 .stdout_fill = 0,
                                 .sample = sample_agent };
        SbxTestExecResult res;
        usec_t t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_test_exec(&sb, &o, &res), 0, "%s", strempty(res.status.message));
        double s = (double)(sbx_now_monotonic() - t0) / USEC_PER_SEC;
        cr_expect_eq(res.code, 0);
        cr_expect_eq(res.out_bytes, 104857600ull);
        cr_expect_eq(res.out_mismatches, 0ull);
        sbx_test_exec_result_done(&res);

        /* The guest side: sbx-init's own peak resident memory. */
        char *hwm = sh(&sb, "sudo awk '/^VmHWM:/ {print $2}' /proc/1/status");
        long init_peak = strtol(hwm, NULL, 10);
        free(hwm);
        cr_log_info("100 MiB of stdout in %.2f s (%.1f MiB/s); agent RSS %ld KiB before, %ld KiB peak; "
                    "sbx-init peak RSS %ld KiB",
                    s, 100 / s, before, agent_rss_peak_kib, init_peak);
        /* Bounded: both sides hold a few MiB of window, never the stream. (Not under ASan, whose
         * quarantine keeps up to 256 MiB of freed memory resident by design.) */
        const char *build = getenv("SBX_BUILD_DIR");
        if (!build || !endswith(build, "/san"))
                cr_expect_lt(agent_rss_peak_kib - before, 32 * 1024, "the agent grew by %ld KiB",
                             agent_rss_peak_kib - before);
        cr_expect_lt(init_peak, 24 * 1024, "sbx-init peaked at %ld KiB", init_peak);
        sbx_test_sandbox_done(&sb);
}

Test(sandbox, out_of_memory_is_reported)
{
        SbxTestSandbox sb;
        create(&sb, 768, 0);
        /* 10 MB more on every round, touched at once, until something gives. */
        SbxTestExecResult res = run(
                &sb, (const char *const[]){ "perl", "-e", "my @a; push @a, 'x' x 10000000 while 1", NULL });
        cr_expect(res.oom, "not reported as OOM (code %d, signal %s)", res.code, res.signal);
        cr_expect_neq(res.code, 0);
        sbx_test_exec_result_done(&res);
        /* The sandbox survives its process's OOM. */
        res = run(&sb, (const char *const[]){ "true", NULL });
        cr_expect_eq(res.code, 0);
        sbx_test_exec_result_done(&res);
        sbx_test_sandbox_done(&sb);
}

Test(sandbox, guest_identity)
{
        SbxTestSandbox sb;
        struct utsname host;
        create(&sb, 1280, 0);
        uname(&host);

        char *release = sh(&sb, "uname -r");
        release[strcspn(release, "\n")] = '\0';
        cr_log_info("guest kernel %s, host kernel %s", release, host.release);
        cr_expect_str_neq(release, host.release, "uname -r shows the host's kernel");
        cr_expect(startswith(release, "6.1."), "guest kernel %s", release);
        free(release);

        char *nproc = sh(&sb, "nproc");
        cr_expect_str_eq(nproc, "2\n");
        free(nproc);

        /* The guest sees the requested memory, less what its kernel keeps. */
        char *mem = sh(&sb, "free -m | awk '/^Mem:/ {print $2}'");
        long total = strtol(mem, NULL, 10);
        free(mem);
        cr_expect(total > 1100 && total <= 1280, "free -m says %ld MiB of 1280", total);

        char *who = sh(&sb, "id -un; echo $HOME; sudo -n id -u");
        cr_expect_str_eq(who, "app\n/home/app\n0\n");
        free(who);
        sbx_test_sandbox_done(&sb);
}

/* ---- files ---- */

static SbxStatus file_call(SbxTestSandbox *sb, const char *method, const ProtobufCMessage *req,
                           ProtobufCMessage **resp)
{
        SbxRpcStatus st = { 0 };
        (void)sbx_test_data_call(sb, NULL, method, req, &st, resp);
        SbxStatus code = st.code;
        sbx_rpc_status_done(&st);
        return code;
}

Test(sandbox, files)
{
        SbxTestSandbox sb;
        SbxRpcStatus st;
        create(&sb, 0, 0);

        size_t n = 50u << 20;
        uint8_t *data = malloc(n);
        cr_assert_not_null(data);
        sbx_random_bytes(data, n);
        usec_t t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_test_write_file(&sb, "big.bin", data, n, &st), 0, "WriteFile: %s",
                     strempty(st.message));
        double up = (double)(sbx_now_monotonic() - t0) / USEC_PER_SEC;
        sbx_rpc_status_done(&st);
        SbxBuffer back = SBX_BUFFER_INIT;
        t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_test_read_file(&sb, "/home/app/big.bin", &back, &st), 0, "ReadFile: %s",
                     strempty(st.message));
        double down = (double)(sbx_now_monotonic() - t0) / USEC_PER_SEC;
        sbx_rpc_status_done(&st);
        cr_log_info("50 MiB up in %.2f s (%.1f MiB/s), down in %.2f s (%.1f MiB/s)", up, 50 / up, down,
                    50 / down);
        cr_assert_eq(sbx_buffer_size(&back), n);
        cr_expect_eq(memcmp(sbx_buffer_data(&back), data, n), 0, "the file read back differs");
        sbx_buffer_done(&back);
        free(data);

        /* stat: every field, checked against what the guest's own stat(1) says. */
        Sbx__V1__StatRequest sr = SBX__V1__STAT_REQUEST__INIT;
        Sbx__V1__FileInfo *fi = NULL;
        sr.sandbox_id = sb.id;
        sr.path = (char *)"/home/app/big.bin";
        sr.follow_symlinks = true;
        cr_assert_eq(file_call(&sb, "Stat", &sr.base, (ProtobufCMessage **)&fi), SBX_STATUS_OK);
        char *ref = sh(&sb, "stat -c '%s %a %h %u %g %i %b %B %Y' /home/app/big.bin");
        char mine[256];
        snprintf(mine, sizeof(mine), "%llu %o %llu %u %u %llu %llu %u %lld\n", (unsigned long long)fi->size,
                 fi->mode & 07777, (unsigned long long)fi->nlink, fi->uid, fi->gid,
                 (unsigned long long)fi->ino, (unsigned long long)fi->blocks, 512u,
                 (long long)(fi->mtime_ns / 1000000000));
        cr_expect_str_eq(mine, ref);
        cr_expect_eq(fi->type, SBX__V1__FILE_TYPE__FILE_TYPE_REGULAR);
        cr_expect_eq(fi->uid, 1000, "files written through the API belong to the sandbox user");
        cr_expect_gt(fi->blksize, 0);
        cr_expect_gt(fi->atime_ns, 0);
        cr_expect_gt(fi->ctime_ns, 0);
        free(ref);
        protobuf_c_message_free_unpacked(&fi->base, NULL);

        /* mkdir -p, readdir, errors, remove -r. */
        Sbx__V1__MakeDirRequest md = SBX__V1__MAKE_DIR_REQUEST__INIT;
        md.sandbox_id = sb.id;
        md.path = (char *)"/tmp/a/b/c";
        md.recursive = true;
        cr_expect_eq(file_call(&sb, "MakeDir", &md.base, NULL), SBX_STATUS_OK);
        cr_expect_eq(file_call(&sb, "MakeDir", &md.base, NULL), SBX_STATUS_OK,
                     "mkdir -p of an existing dir");
        md.recursive = false;
        cr_expect_eq(file_call(&sb, "MakeDir", &md.base, NULL), SBX_STATUS_ALREADY_EXISTS);
        md.path = (char *)"/tmp/x/y";
        cr_expect_eq(file_call(&sb, "MakeDir", &md.base, NULL), SBX_STATUS_NOT_FOUND,
                     "mkdir without parents");
        cr_assert_eq(sbx_test_write_file(&sb, "/tmp/a/file", "hi", 2, &st), 0);
        sbx_rpc_status_done(&st);

        Sbx__V1__PathRequest pr = SBX__V1__PATH_REQUEST__INIT;
        Sbx__V1__ReadDirResponse *rd = NULL;
        pr.sandbox_id = sb.id;
        pr.path = (char *)"/tmp/a";
        cr_assert_eq(file_call(&sb, "ReadDir", &pr.base, (ProtobufCMessage **)&rd), SBX_STATUS_OK);
        cr_assert_eq(rd->n_entries, 2);
        for (size_t i = 0; i < rd->n_entries; i++) {
                if (streq(rd->entries[i]->name, "b"))
                        cr_expect_eq(rd->entries[i]->type, SBX__V1__FILE_TYPE__FILE_TYPE_DIRECTORY);
                else
                        cr_expect(streq(rd->entries[i]->name, "file") &&
                                          rd->entries[i]->type == SBX__V1__FILE_TYPE__FILE_TYPE_REGULAR,
                                  "unexpected entry %s", rd->entries[i]->name);
        }
        protobuf_c_message_free_unpacked(&rd->base, NULL);
        pr.path = (char *)"/tmp/a/file";
        cr_expect_eq(file_call(&sb, "ReadDir", &pr.base, NULL), SBX_STATUS_FAILED_PRECONDITION,
                     "readdir of a file");
        sr.path = (char *)"/tmp/nothing-here";
        cr_expect_eq(file_call(&sb, "Stat", &sr.base, NULL), SBX_STATUS_NOT_FOUND);

        Sbx__V1__RemoveRequest rm = SBX__V1__REMOVE_REQUEST__INIT;
        rm.sandbox_id = sb.id;
        rm.path = (char *)"/tmp/a";
        cr_expect_eq(file_call(&sb, "Remove", &rm.base, NULL), SBX_STATUS_FAILED_PRECONDITION,
                     "non-recursive remove of a non-empty directory");
        rm.recursive = true;
        cr_expect_eq(file_call(&sb, "Remove", &rm.base, NULL), SBX_STATUS_OK);
        sr.path = (char *)"/tmp/a";
        cr_expect_eq(file_call(&sb, "Stat", &sr.base, NULL), SBX_STATUS_NOT_FOUND,
                     "still there after remove -r");
        cr_expect_eq(file_call(&sb, "Remove", &rm.base, NULL), SBX_STATUS_NOT_FOUND);
        sbx_test_sandbox_done(&sb);
}

/* ---- lifecycle ---- */

Test(sandbox, lifetime_expiry_stops_the_vm)
{
        SbxTestSandbox sb;
        create(&sb, 0, 4000);
        pid_t vmm = sbx_test_agent_vmm_pid(&A, sb.id);
        cr_assert_gt(vmm, 0);
        double t = wait_state(sb.id, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED, 10, NULL, 0);
        cr_expect_geq(t, 0, "not STOPPED after its lifetime");
        for (int i = 0; i < 50 && !process_gone(vmm); i++)
                sbx_test_cluster_run(&C, 50 * USEC_PER_MSEC);
        cr_expect(process_gone(vmm), "the VMM still runs after expiry");
        sbx_test_sandbox_done(&sb);
}

Test(sandbox, delete_tears_down_within_2s)
{
        SbxTestSandbox sb;
        create(&sb, 0, 0);
        pid_t vmm = sbx_test_agent_vmm_pid(&A, sb.id);
        cr_assert_gt(vmm, 0);

        Sbx__V1__DeleteSandboxRequest req = SBX__V1__DELETE_SANDBOX_REQUEST__INIT;
        SbxRpcStatus st = { 0 };
        SbxRpcChannel *ch = sbx_test_channel(&C, 0, token);
        req.id = sb.id;
        req.wait = true;
        usec_t t0 = sbx_now_monotonic();
        cr_assert_eq(sbx_test_call(&C, ch, &sbx_api_sandboxes_delete, &req.base, &st, NULL), 0, "%s",
                     strempty(st.message));
        while (!process_gone(vmm) && sbx_now_monotonic() - t0 < 5 * USEC_PER_SEC)
                sbx_test_cluster_run(&C, 10 * USEC_PER_MSEC);
        double s = (double)(sbx_now_monotonic() - t0) / USEC_PER_SEC;
        cr_log_info("delete to VMM gone: %.2f s", s);
        cr_expect(process_gone(vmm));
        cr_expect_lt(s, 2.0, "teardown took %.2f s", s);
        cr_expect_eq(state_of(sb.id, NULL, 0), SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED);
        sbx_rpc_status_done(&st);
        sbx_rpc_channel_free(ch);
        sbx_test_sandbox_done(&sb);
}

Test(sandbox, killed_vmm_is_failed_with_a_reason)
{
        SbxTestSandbox sb;
        char reason[256] = "";
        create(&sb, 0, 0);
        pid_t vmm = sbx_test_agent_vmm_pid(&A, sb.id);
        cr_assert_gt(vmm, 0);
        kill(vmm, SIGKILL);
        double t =
                wait_state(sb.id, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED, 10, reason, sizeof(reason));
        cr_expect_geq(t, 0, "not FAILED after kill -9 of its VMM");
        cr_log_info("FAILED after %.2f s: %s", t, reason);
        cr_expect(strstr(reason, "VMM") && strstr(reason, "signal 9"), "reason: %s", reason);
        sbx_test_sandbox_done(&sb);
}

/* QEMU exits with status 0 after a guest kernel panic (panic=-1, -no-reboot): the sandbox's reason is
 * the panic's own message. This agent's guests panic at boot, for want of an init. */
Test(sandbox, guest_kernel_panic_is_the_reason)
{
        static const char *const panicking[] = { "--guest-cmdline-extra=rdinit=/sbx-no-such-init", NULL };
        SbxTestSandbox sb;
        SbxRpcStatus st = { 0 };
        char reason[256] = "";

        cr_assert_eq(sbx_test_agent_stop(&A, SIGTERM), 0);
        A.args = panicking;
        cr_assert_eq(sbx_test_agent_start(&C, &A, 0, "ams"), 0, "agent did not restart");
        int r = sbx_test_sandbox_create(&C, token, "ams", 0, 0, &sb, &st);
        cr_log_info("Create: %d %s", st.code, strempty(st.message));
        cr_assert_lt(r, 0, "a guest without an init ran");
        cr_expect(strstr(strempty(st.message), "the guest kernel panicked: VFS: Unable to mount root fs"),
                  "message: %s", strempty(st.message));
        const char *id = strstr(strempty(st.message), "sbx_ams_");
        cr_assert_not_null(id, "no sandbox id in: %s", strempty(st.message));
        char sandbox_id[64];
        snprintf(sandbox_id, sizeof(sandbox_id), "%.*s", (int)strcspn(id, " :"), id);
        cr_expect_eq(state_of(sandbox_id, reason, sizeof(reason)),
                     SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED);
        cr_expect(strstr(reason, "the guest kernel panicked: "), "reason: %s", reason);
        sbx_rpc_status_done(&st);
}

Test(sandbox, agent_restart_adopts_running_sandboxes)
{
        SbxTestSandbox sb;
        create(&sb, 0, 0);
        pid_t vmm = sbx_test_agent_vmm_pid(&A, sb.id);
        char *before = sh(&sb, "echo $$ > /tmp/marker; cat /proc/sys/kernel/random/boot_id");

        cr_assert_eq(sbx_test_agent_stop(&A, SIGKILL), 0);
        cr_assert(!process_gone(vmm), "the VMM died with its agent");
        cr_assert_eq(sbx_test_agent_start(&C, &A, 0, "ams"), 0, "agent did not restart");

        /* Same VM (same boot id, same VMM), still RUNNING, and serving exec again. */
        cr_expect_eq(state_of(sb.id, NULL, 0), SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING);
        cr_expect_eq(sbx_test_agent_vmm_pid(&A, sb.id), vmm);
        char *after = sh(&sb, "test -f /tmp/marker && cat /proc/sys/kernel/random/boot_id");
        cr_expect_str_eq(before, after, "not the same VM after the restart");
        free(before);
        free(after);
        sbx_test_sandbox_done(&sb);
}

/* ---- access tokens ---- */

Test(sandbox, access_tokens)
{
        SbxTestSandbox a, b;
        create(&a, 0, 0);
        create(&b, 0, 0);

        /* The jail: each VMM runs as a uid of its own, never root. */
        uid_t ua = process_uid(sbx_test_agent_vmm_pid(&A, a.id)),
              ub = process_uid(sbx_test_agent_vmm_pid(&A, b.id));
        cr_expect(ua != 0 && ub != 0 && ua != ub, "VMM uids %u and %u", (unsigned)ua, (unsigned)ub);

        Sbx__V1__StatRequest sr = SBX__V1__STAT_REQUEST__INIT;
        sr.path = (char *)"/";
        SbxRpcStatus st = { 0 };

        /* a's token on a: fine. a's token naming b: refused. */
        sr.sandbox_id = b.id;
        SbxRpcChannel *with_a = sbx_test_data_channel(&b, a.access_token);
        sbx_test_data_call(&b, with_a, "Stat", &sr.base, &st, NULL);
        cr_expect(st.code == SBX_STATUS_PERMISSION_DENIED || st.code == SBX_STATUS_UNAUTHENTICATED,
                  "another sandbox's token: %d %s", st.code, strempty(st.message));
        sbx_rpc_status_done(&st);
        sbx_rpc_channel_free(with_a);

        /* Garbage. */
        SbxRpcChannel *bad = sbx_test_data_channel(&a, "sbxat1.garbage.garbage");
        sr.sandbox_id = a.id;
        sbx_test_data_call(&a, bad, "Stat", &sr.base, &st, NULL);
        cr_expect_eq(st.code, SBX_STATUS_UNAUTHENTICATED, "a forged token: %d %s", st.code,
                     strempty(st.message));
        sbx_rpc_status_done(&st);
        sbx_rpc_channel_free(bad);

        /* Expired: minted with the real cluster key, but an hour in the past. */
        SbxClusterKey key;
        _cleanup_free_ char *expired = NULL;
        cr_assert_eq(sbx_cluster_key_load(C.key_file, &key), 0);
        cr_assert_eq(sbx_token_mint(&key, a.id, "acme", sbx_now_ms() - 3600 * 1000, &expired), 0);
        sbx_cluster_key_wipe(&key);
        SbxRpcChannel *old = sbx_test_data_channel(&a, expired);
        sbx_test_data_call(&a, old, "Stat", &sr.base, &st, NULL);
        cr_expect_eq(st.code, SBX_STATUS_UNAUTHENTICATED, "an expired token: %d %s", st.code,
                     strempty(st.message));
        sbx_rpc_status_done(&st);
        sbx_rpc_channel_free(old);

        /* And the right one works. */
        cr_expect_eq(file_call(&a, "Stat", &sr.base, NULL), SBX_STATUS_OK);
        sbx_test_sandbox_done(&a);
        sbx_test_sandbox_done(&b);
}
