/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the sbx stack costs on top of the microVM it runs, measured in one run on this machine:
 *
 *   vm.create_to_first_output   Create + Exec `echo hi` through scheduler, agent and data plane,
 *                               against a bare QEMU started with the same command line (the QEMU
 *                               driver's own), kernel, initramfs and root file system, its channel
 *                               driven directly: Config, then Spawn `echo hi`, to the same output.
 *   vm.exec_true_rtt            Exec `true` through the data plane (client → agent → guest and
 *                               back), against Spawn `true` straight over the guest channel.
 *   vm.agent_rss_per_sandbox    the agent's resident memory per running sandbox, against its idle
 *                               resident memory.
 *   vm.qemu_rss_per_sandbox     a VMM's resident memory, against the guest memory it was given.
 *
 * Prints "# ..." context lines and "RESULT name=... value=... unit=... baseline=... target=..."
 * lines that bench/run turns into BENCH lines. Runs in a private network namespace (root).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent-channel.h"
#include "agent/agent-vmm.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/base/time-util.h"
#include "common/loop/loop.h"
#include "common/store/store.h"
#include "tests/lib/agents.h"
#include "tests/lib/cluster.h"
#include "tests/lib/sandbox-client.h"

#define ROUNDS     5
#define RTT_ROUNDS 40
#define MEMORY_MB  1280

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
        qsort(v, n, sizeof(*v), cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void result(const char *name, double value, const char *unit, double baseline, const char *target)
{
        printf("RESULT name=%s value=%.2f unit=%s baseline=%.2f target=%s\n", name, value, unit, baseline,
               target);
        fflush(stdout);
}

/* ---- bare: QEMU and the guest channel, nothing else ---- */

typedef struct Bare {
        uv_loop_t *loop;
        AgentChannel *ch;
        AgentStream *st;
        bool hello, output, exited, closed;
        usec_t first_output;
        int error;
} Bare;

static void bare_hello(AgentChannel *ch, const Sbx__V1__Guest__Hello *h, void *userdata)
{
        ((Bare *)userdata)->hello = true;
}

static void bare_closed(AgentChannel *ch, int error, void *userdata)
{
        Bare *b = userdata;
        b->closed = true;
        b->error = error;
}

static void stream_frame(AgentStream *s, const Sbx__V1__Guest__GuestFrame *f, void *userdata)
{
        Bare *b = userdata;
        if (f->body_case == SBX__V1__GUEST__GUEST_FRAME__BODY_OUTPUT && !b->output) {
                b->output = true;
                b->first_output = sbx_now_monotonic();
        } else if (f->body_case == SBX__V1__GUEST__GUEST_FRAME__BODY_EXIT) {
                b->exited = true;
        }
}

static void stream_close(AgentStream *s, int error, void *userdata)
{
        ((Bare *)userdata)->exited = true;
}

static const AgentStreamOps stream_ops = { .on_frame = stream_frame, .on_close = stream_close };

static int run_until(uv_loop_t *loop, const bool *flag, const bool *failed, usec_t timeout)
{
        usec_t deadline = sbx_now_monotonic() + timeout;
        while (!*flag) {
                if (*failed || sbx_now_monotonic() > deadline)
                        return -ETIMEDOUT;
                uv_run(loop, UV_RUN_ONCE);
        }
        return 0;
}

/* Spawns argv over the channel and waits for its exit. */
static int bare_spawn(Bare *b, const char *const *argv)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        Sbx__V1__Guest__Spawn sp = SBX__V1__GUEST__SPAWN__INIT;
        size_t n = 0;
        int r;

        while (argv[n])
                n++;
        b->output = b->exited = false;
        if ((r = agent_stream_open(b->ch, &stream_ops, b, &b->st)) < 0)
                return r;
        sp.argv = (char **)argv;
        sp.n_argv = n;
        sp.stdout = sp.stderr = true;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_SPAWN;
        f.spawn = &sp;
        if ((r = agent_stream_send(b->st, &f)) < 0)
                return r;
        r = run_until(b->loop, &b->exited, &b->closed, 30 * USEC_PER_SEC);
        agent_stream_close(b->st, false);
        b->st = NULL;
        return r;
}

static void bare_ping_done(int error, usec_t rtt, void *userdata)
{
        usec_t *out = userdata;
        *out = error < 0 ? (usec_t)-1 : rtt;
}

typedef struct BareRun {
        double first_output_ms;
        double exec_true_ms;
        double ping_ms;
} BareRun;

static uint64_t tsc_khz;

static int bare_boot(const char *dir, const AgentImage *image, bool measure_rtt, BareRun *ret)
{
        static Agent a;
        uv_loop_t loop;
        char disk[600], chan[600], cmd[1400];
        char **argv = NULL;
        Bare b = { .loop = &loop };
        int r, port;

        a.cfg.qemu_binary = (char *)"qemu-system-x86_64";
        snprintf(disk, sizeof(disk), "%s/data.ext4", dir);
        AgentVmmSpec spec = { .dir = dir,
                              .image = image,
                              .data_disk = disk,
                              .memory_mb = MEMORY_MB,
                              .vcpus = 2,
                              .kvm = false,
                              .tsc_khz = tsc_khz };
        usec_t t0 = sbx_now_monotonic();
        /* The same per-sandbox work the agent does before its VMM starts: a sparse copy of the disk. */
        snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s", image->data_template, disk);
        if (system(cmd) != 0)
                return -EIO;
        if ((r = agent_vmm_qemu.command(&a, &spec, &argv)) < 0)
                return r;
        pid_t pid = sbx_test_spawn(argv, NULL);
        strv_free(argv);
        if (pid < 0)
                return pid;

        uv_loop_init(&loop);
        Sbx__V1__Guest__Config c = SBX__V1__GUEST__CONFIG__INIT;
        c.hostname = (char *)"bare";
        c.realtime_ms = sbx_now_ms();
        c.user = (char *)"app";
        c.base_device = (char *)agent_vmm_qemu.base_device;
        c.data_device = (char *)agent_vmm_qemu.data_device;
        agent_vmm_qemu.channel(&spec, chan, sizeof(chan), &port);
        static const AgentChannelCallbacks cbs = { .on_hello = bare_hello, .on_closed = bare_closed };
        r = agent_channel_connect(&loop, chan, port, &c, 60 * USEC_PER_SEC, &cbs, &b, &b.ch);
        if (r >= 0)
                r = run_until(&loop, &b.hello, &b.closed, 60 * USEC_PER_SEC);
        if (r >= 0)
                r = bare_spawn(&b, (const char *const[]){ "echo", "hi", NULL });
        if (r >= 0)
                ret->first_output_ms = (double)(b.first_output - t0) / USEC_PER_MSEC;
        if (r >= 0 && measure_rtt) {
                double t[RTT_ROUNDS], p[RTT_ROUNDS];
                for (int i = 0; i < RTT_ROUNDS && r >= 0; i++) {
                        usec_t s = sbx_now_monotonic();
                        r = bare_spawn(&b, (const char *const[]){ "true", NULL });
                        t[i] = (double)(sbx_now_monotonic() - s) / USEC_PER_MSEC;
                }
                for (int i = 0; i < RTT_ROUNDS && r >= 0; i++) {
                        usec_t rtt = 0;
                        if ((r = agent_channel_ping(b.ch, bare_ping_done, &rtt)) < 0)
                                break;
                        while (rtt == 0 && !b.closed)
                                uv_run(&loop, UV_RUN_ONCE);
                        p[i] = (double)rtt / USEC_PER_MSEC;
                }
                if (r >= 0) {
                        ret->exec_true_ms = median(t, RTT_ROUNDS);
                        ret->ping_ms = median(p, RTT_ROUNDS);
                }
        }
        if (b.ch && !b.closed) {
                Sbx__V1__Guest__GuestFrame off = SBX__V1__GUEST__GUEST_FRAME__INIT;
                off.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_POWER_OFF;
                off.power_off = true;
                agent_channel_send_control(b.ch, &off);
        }
        int status = sbx_test_stop(pid, 0, 10 * USEC_PER_SEC);
        (void)status;
        if (b.ch)
                agent_channel_close(b.ch);
        sbx_loop_close_all(&loop);
        uv_loop_close(&loop);
        unlink(disk);
        return r;
}

/* ---- the sbx stack ---- */

static long vmm_rss_kib(const SbxTestAgent *agent, const char *id)
{
        pid_t pid = sbx_test_agent_vmm_pid(agent, id);
        return pid > 0 ? sbx_test_rss_kib(pid, false) : -1;
}

/* Create + Exec `echo hi` to its first output, then delete; ms, or -1. */
static double full_round(SbxTestCluster *c, const char *token)
{
        SbxTestSandbox sb;
        SbxRpcStatus st = { 0 };
        SbxTestExecResult res;
        usec_t t0 = sbx_now_monotonic();

        if (sbx_test_sandbox_create(c, token, "ams", MEMORY_MB, 0, &sb, &st) < 0) {
                fprintf(stderr, "Create failed: %s\n", strempty(st.message));
                return -1;
        }
        SbxTestExecOptions o = { .argv = (const char *const[]){ "echo", "hi", NULL } };
        if (sbx_test_exec(&sb, &o, &res) < 0) {
                fprintf(stderr, "Exec failed: %s\n", strempty(res.status.message));
                return -1;
        }
        double ms = (double)(res.first_output - t0) / USEC_PER_MSEC;
        sbx_test_exec_result_done(&res);
        Sbx__V1__DeleteSandboxRequest del = SBX__V1__DELETE_SANDBOX_REQUEST__INIT;
        SbxRpcChannel *ch = sbx_test_channel(c, 0, token);
        del.id = sb.id;
        del.wait = true;
        sbx_test_call(c, ch, &sbx_api_sandboxes_delete, &del.base, &st, NULL);
        sbx_rpc_status_done(&st);
        sbx_rpc_channel_free(ch);
        sbx_test_sandbox_done(&sb);
        return ms;
}

int main(int argc, char **argv)
{
        SbxTestCluster c = { 0 };
        SbxTestAgent agent = { 0 };
        AgentImage image = { 0 };
        const char *image_dir = sbx_test_image_dir();
        double bare_first[ROUNDS], full_first[ROUNDS];
        BareRun bare = { 0 };
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (!image_dir)
                return 1;
        if (sbx_test_netns_enter() < 0) {
                fprintf(stderr, "vm-bench needs root (it makes a network namespace)\n");
                return 1;
        }
        snprintf(image.kernel, sizeof(image.kernel), "%s/vmlinux", image_dir);
        snprintf(image.initramfs, sizeof(image.initramfs), "%s/initramfs.cpio", image_dir);
        snprintf(image.rootfs, sizeof(image.rootfs), "%s/rootfs.ext4", image_dir);
        snprintf(image.data_template, sizeof(image.data_template), "%s/data-template.ext4", image_dir);

        /* The stack first (it idles while the bare boots run), then one warm-up boot of each that
         * does not count, then bare and sbx rounds alternately so that both see the same machine. */
        tsc_khz = agent_vmm_measure_tsc_khz();
        char *tmp = sbx_test_tempdir("sbx-vm-bench");
        chmod(tmp, 0711);
        if ((r = sbx_test_cluster_start(&c, 1)) < 0 ||
            (r = sbx_test_agent_start(&c, &agent, 0, "ams")) < 0) {
                fprintf(stderr, "could not start the cluster: %s\n", strerror(-r));
                return 1;
        }
        char *token = sbx_test_org(&c, "bench", 10);
        long agent_idle = sbx_test_rss_kib(agent.pid, false);
        printf("# bare: qemu-system-x86_64 with the QEMU driver's command line, its channel driven "
               "directly\n");
        printf("# sbx: Create + Exec `echo hi` through etcd, sbx-scheduler, sbx-agent (TCG here)\n");
        for (int i = -1; i < ROUNDS; i++) {
                BareRun one = { 0 };
                if ((r = bare_boot(tmp, &image, i == ROUNDS - 1, &one)) < 0) {
                        fprintf(stderr, "bare boot failed: %s\n", strerror(-r));
                        return 1;
                }
                double full = full_round(&c, token);
                if (full < 0)
                        return 1;
                if (i < 0)
                        continue; /* warm-up */
                bare_first[i] = one.first_output_ms;
                full_first[i] = full;
                if (i == ROUNDS - 1) {
                        bare.exec_true_ms = one.exec_true_ms;
                        bare.ping_ms = one.ping_ms;
                }
                printf("#   round %d: first output after %.0f ms bare, %.0f ms sbx\n", i + 1,
                       one.first_output_ms, full);
        }
        bare.first_output_ms = median(bare_first, ROUNDS);
        double full_first_ms = median(full_first, ROUNDS);

        /* Exec `true` round trips, and memory with three sandboxes running. */
        SbxTestSandbox sbs[3];
        double rtt[RTT_ROUNDS];
        for (int i = 0; i < 3; i++) {
                SbxRpcStatus st = { 0 };
                if (sbx_test_sandbox_create(&c, token, "ams", MEMORY_MB, 0, &sbs[i], &st) < 0) {
                        fprintf(stderr, "Create failed: %s\n", strempty(st.message));
                        return 1;
                }
        }
        for (int i = 0; i < RTT_ROUNDS; i++) {
                SbxTestExecOptions o = { .argv = (const char *const[]){ "true", NULL } };
                SbxTestExecResult res;
                usec_t t0 = sbx_now_monotonic();
                if (sbx_test_exec(&sbs[0], &o, &res) < 0)
                        return 1;
                rtt[i] = (double)(sbx_now_monotonic() - t0) / USEC_PER_MSEC;
                sbx_test_exec_result_done(&res);
        }
        double full_rtt = median(rtt, RTT_ROUNDS);
        long agent_busy = sbx_test_rss_kib(agent.pid, false);
        long qemu = 0;
        for (int i = 0; i < 3; i++)
                qemu += vmm_rss_kib(&agent, sbs[i].id);
        for (int i = 0; i < 3; i++)
                sbx_test_sandbox_done(&sbs[i]);

        printf("# bare channel ping round trip: %.2f ms; Spawn `true` over the channel: %.2f ms\n",
               bare.ping_ms, bare.exec_true_ms);
        printf("# agent resident memory: %ld KiB idle, %ld KiB with 3 sandboxes running\n", agent_idle,
               agent_busy);
        result("vm.create_to_first_output", full_first_ms, "ms", bare.first_output_ms, "<=1.1");
        result("vm.exec_true_rtt", full_rtt, "ms", bare.exec_true_ms, "<=1.5");
        result("vm.exec_true_rtt_vs_ping", full_rtt, "ms", bare.ping_ms, "none");
        result("vm.agent_rss_per_sandbox", (double)(agent_busy - agent_idle) / 3, "KiB", (double)agent_idle,
               "none");
        result("vm.qemu_rss_per_sandbox", (double)qemu / 3 / 1024, "MiB", MEMORY_MB, "none");

        sbx_test_agent_stop(&agent, SIGTERM);
        sbx_test_agent_cleanup(&agent);
        sbx_test_cluster_stop(&c);
        free(token);
        sbx_test_rmrf(tmp);
        free(tmp);
        return 0;
}
