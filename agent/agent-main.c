/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx-agent: one per node. Registers the node under a lease, runs the microVMs etcd assigns to it,
 * and serves their data plane. On SIGTERM it stops its sandboxes, deregisters, and exits; after a
 * crash (or kill -9) the next start adopts the VMs that still run.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent-vmm.h"
#include "agent/agent.h"
#include "agent/egress.h"
#include "common/base/fd-util.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/loop/loop.h"
#include "common/store/store.h"

extern char **environ;

static Agent agent;
static SbxSignals *signals;
static bool rpc_down, metrics_down, egress_down;
static uv_timer_t stop_timer;
static usec_t stop_deadline;

/* ---- host facts ---- */

/* The TSC frequency, measured against CLOCK_MONOTONIC_RAW: TCG guests need it to boot reliably. */
/* The VMMs run as uids that own nothing (vmm-uid-base + slot), inside their sandbox directories
 * under state-dir, reading the image: every ancestor must let "others" through. Returns the first
 * directory that does not, or NULL. */
static const char *unsearchable_ancestor(const char *path)
{
        static char prefix[PATH_MAX];
        char resolved[PATH_MAX];

        if (!realpath(path, resolved))
                return NULL;
        for (char *p = resolved; p;) {
                char *slash = strchr(p + 1, '/');
                size_t len = slash ? (size_t)(slash - resolved) : strlen(resolved);
                struct stat st;
                snprintf(prefix, sizeof(prefix), "%.*s", (int)(len ? len : 1), resolved);
                if (stat(prefix, &st) < 0)
                        return NULL;
                if (S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH))
                        return prefix;
                p = slash;
        }
        return NULL;
}

/* KVM counts only if a VM actually boots with it: nested setups may expose /dev/kvm that cannot
 * run a guest kernel. The probe boots our kernel with "sbx.probe", on which sbx-init prints a
 * marker to the console and powers off. */
static bool probe_kvm(Agent *a)
{
        char console[600], append[256];
        int status;
        pid_t pid;

        if (access("/dev/kvm", R_OK | W_OK) < 0)
                return false;
        snprintf(console, sizeof(console), "%s/kvm-probe.log", a->cfg.state_dir);
        unlink(console);
        snprintf(append, sizeof(append), "console=ttyS0 quiet reboot=t panic=-1 sbx.probe");
        char chardev[700];
        snprintf(chardev, sizeof(chardev), "file,id=con,path=%s", console);
        char *argv[] = { a->cfg.qemu_binary,
                         (char *)"-M",
                         (char *)"microvm,x-option-roms=off,isa-serial=on",
                         (char *)"-accel",
                         (char *)"kvm",
                         (char *)"-cpu",
                         (char *)"host",
                         (char *)"-m",
                         (char *)"256",
                         (char *)"-nodefaults",
                         (char *)"-no-user-config",
                         (char *)"-nographic",
                         (char *)"-no-reboot",
                         (char *)"-chardev",
                         chardev,
                         (char *)"-serial",
                         (char *)"chardev:con",
                         (char *)"-kernel",
                         a->image.kernel,
                         (char *)"-initrd",
                         a->image.initramfs,
                         (char *)"-append",
                         append,
                         NULL };
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return false;
        for (int i = 0; i < 150; i++) {
                if (waitpid(pid, &status, WNOHANG) == pid)
                        break;
                usleep(100000);
                if (i == 149) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                }
        }
        _cleanup_free_ char *out = NULL;
        bool ok = sbx_read_file(console, 1 << 20, &out, NULL) >= 0 && strstr(out, "sbx-probe-ok");
        unlink(console);
        return ok;
}

static int load_image(Agent *a)
{
        static const struct {
                const char *name;
                size_t off;
        } files[] = {
                { "vmlinux", offsetof(AgentImage, kernel) },
                { "initramfs.cpio", offsetof(AgentImage, initramfs) },
                { "rootfs.ext4", offsetof(AgentImage, rootfs) },
                { "data-template.ext4", offsetof(AgentImage, data_template) },
        };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                char *p = (char *)&a->image + files[i].off;
                snprintf(p, 512, "%s/%s", a->cfg.image_dir, files[i].name);
                /* Resolve symlinks: the VMM runs unprivileged and must reach the real file. */
                char real[512];
                if (!realpath(p, real))
                        return log_error_errno(-errno, "Image file %s is missing (make image builds it): %m",
                                               p);
                snprintf(p, 512, "%s", real);
        }
        a->image.pvh = true;
        return 0;
}

static int parse_subnet(Agent *a)
{
        char buf[64];
        unsigned prefix;
        struct in_addr in;

        snprintf(buf, sizeof(buf), "%s", a->cfg.subnet);
        char *slash = strchr(buf, '/');
        if (!slash || sscanf(slash + 1, "%u", &prefix) != 1 || prefix < 8 || prefix > 28)
                return log_error_errno(-EINVAL, "subnet: \"%s\" is not an IPv4 CIDR between /8 and /28",
                                       a->cfg.subnet);
        *slash = '\0';
        if (inet_pton(AF_INET, buf, &in) != 1)
                return log_error_errno(-EINVAL, "subnet: \"%s\" is not an IPv4 CIDR", a->cfg.subnet);
        a->subnet_base = ntohl(in.s_addr) & (prefix ? ~0u << (32 - prefix) : 0);
        a->subnet_prefix = prefix;
        a->n_slots = (1u << (32 - prefix)) / 4;
        a->slots_used = calloc(a->n_slots, 1);
        return a->slots_used ? 0 : log_oom();
}

/* ---- shutdown ---- */

static void on_rpc_down(void *userdata)
{
        rpc_down = true;
}

static void on_metrics_down(void *userdata)
{
        metrics_down = true;
}

static void on_egress_down(void *userdata)
{
        egress_down = true;
}

static void finish_shutdown(Agent *a)
{
        agent_reconcile_stop(a);
        /* Every sandbox has ended: the table goes, and the forwarder and proxy stop. */
        egress_free(a->egress, on_egress_down, NULL);
        a->egress = NULL;
        agent_jail_fini(a);
        a->etcd = sbx_etcd_free(a->etcd);
        if (a->metrics_server)
                sbx_metrics_server_close(a->metrics_server, on_metrics_down, NULL);
        else
                metrics_down = true;
        a->metrics_server = NULL;
        sbx_rpc_shutdown(a->rpc, 0, on_rpc_down, a);
}

static void on_deregistered(Agent *a)
{
        /* The revoke's reply is in: nothing else is owed to etcd. */
        uv_timer_stop(&stop_timer);
        uv_close((uv_handle_t *)&stop_timer, NULL);
        finish_shutdown(a);
}

static void on_stop_tick(uv_timer_t *t)
{
        Agent *a = t->data;
        bool idle = sbx_hashmap_size(a->sandboxes) == 0 && sbx_etcd_pending(a->etcd) == 0;

        if (!idle && sbx_now_monotonic() < stop_deadline)
                return;
        if (!idle)
                log_warning("Stopping with %zu sandboxes not fully ended", sbx_hashmap_size(a->sandboxes));
        uv_timer_stop(t);
        agent_register_stop(a, on_deregistered);
}

static void on_server_down(void *userdata)
{
        Agent *a = userdata;
        size_t state = 0;
        const char *id;
        char **ids = NULL;

        /* Stop every sandbox (they end cleanly and report STOPPED), then deregister. */
        while (sbx_hashmap_next(a->sandboxes, &state, &id, NULL))
                strv_extend(&ids, id);
        STRV_FOREACH (i, ids) {
                AgentSandbox *sb = sbx_hashmap_get(a->sandboxes, *i);
                if (sb)
                        agent_sandbox_stop(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED,
                                           "node shutting down");
        }
        strv_free(ids);
        stop_deadline = sbx_now_monotonic() + a->cfg.stop_timeout + 3 * USEC_PER_SEC;
        uv_timer_init(a->loop, &stop_timer);
        stop_timer.data = a;
        uv_timer_start(&stop_timer, on_stop_tick, 20, 20);
}

static void on_signal(int signo, void *userdata)
{
        Agent *a = userdata;
        if (!a->data_server || a->stopping)
                return; /* set-up failed and is unwinding already, or a second signal */
        log_info("Received %s; stopping sandboxes and shutting down", strsignal(signo));
        sbx_rpc_server_shutdown(a->data_server, USEC_PER_SEC, on_server_down, a);
        a->stopping = true;
}

bool agent_is_ready(const Agent *a, const char **ret_why)
{
        *ret_why = a->stopping      ? "shutting down"
                   : !a->registered ? "the node is not registered in etcd"
                   : !a->settled    ? "reading assignments and adopting running sandboxes"
                                    : NULL;
        return !*ret_why;
}

static bool agent_ready(void *userdata, const char **ret_why)
{
        return agent_is_ready(userdata, ret_why);
}

/* ---- start ---- */

static int setup(Agent *a)
{
        SbxRpcTls etcd_tls = { .cert_file = a->cfg.etcd_cert,
                               .key_file = a->cfg.etcd_key,
                               .ca_file = a->cfg.etcd_ca };
        SbxRpcTls api_tls = { .cert_file = a->cfg.tls_cert,
                              .key_file = a->cfg.tls_key,
                              .ca_file = a->cfg.tls_client_ca };
        SbxRpcServerOptions so = { .max_message_size = 16u * 1024 * 1024 };
        char exe[512];
        struct passwd *pw;
        struct group *gr;
        int r;

        if (!!a->cfg.tls_cert != !!a->cfg.tls_key || (a->cfg.tls_client_ca && !a->cfg.tls_cert))
                return log_error_errno(-EINVAL,
                                       "tls-cert and tls-key go together, and tls-client-ca needs both");
        if (!!a->cfg.etcd_cert != !!a->cfg.etcd_key || (a->cfg.etcd_cert && !a->cfg.etcd_ca))
                return log_error_errno(-EINVAL, "etcd-cert and etcd-key go together, and need etcd-ca");
        /* First: a SIGTERM during the rest of the set-up (a probe boot can take a second) is then
         * handled once the loop runs, instead of killing the agent half-started. */
        if ((r = sbx_signals_new(a->loop, on_signal, a, &signals)) < 0)
                return log_error_errno(r, "Failed to set up signal handling: %m");
        if ((r = sbx_cluster_key_load(a->cfg.cluster_key_file, &a->key)) < 0)
                return log_error_errno(r, "Failed to load the cluster key from %s: %m",
                                       a->cfg.cluster_key_file);
        if ((r = load_image(a)) < 0 || (r = parse_subnet(a)) < 0)
                return r;
        if (mkdir(a->cfg.state_dir, 0755) < 0 && errno != EEXIST)
                return log_error_errno(-errno, "Failed to create %s: %m", a->cfg.state_dir);

        a->vmm_uid_base = a->cfg.vmm_uid_base;
        if ((uint64_t)a->vmm_uid_base + a->cfg.slots > UINT32_MAX - 1)
                return log_error_errno(-ERANGE, "vmm-uid-base: %u + slots %u leaves the uid range",
                                       a->vmm_uid_base, a->cfg.slots);
        if ((pw = getpwuid(a->vmm_uid_base)))
                log_warning("vmm-uid-base: uid %u belongs to the account %s; VMMs should run as uids no "
                            "account uses",
                            a->vmm_uid_base, pw->pw_name);
        /* The VMMs' uids own nothing of ours: what they must reach, "others" must be able to reach. */
        const char *blocked = unsearchable_ancestor(a->cfg.state_dir);
        if (blocked)
                return log_error_errno(-EACCES,
                                       "state-dir: the VMMs cannot reach %s: %s is not searchable by others "
                                       "(chmod o+x, or choose another state-dir)",
                                       a->cfg.state_dir, blocked);
        const char *image_files[] = { a->image.kernel, a->image.initramfs, a->image.rootfs };
        for (size_t i = 0; i < ELEMENTSOF(image_files); i++) {
                struct stat st;
                if ((blocked = unsearchable_ancestor(image_files[i])) ||
                    (stat(image_files[i], &st) == 0 && !(st.st_mode & S_IROTH)))
                        return log_error_errno(
                                -EACCES,
                                "image-dir: the VMMs cannot read %s (%s is closed to others); "
                                "keep the image where others can read it",
                                image_files[i], blocked ? blocked : "the file");
        }
        gr = getgrnam("kvm");
        a->kvm_gid = gr ? gr->gr_gid : (gid_t)-1;
        if (a->cfg.jailer)
                snprintf(a->jailer, sizeof(a->jailer), "%s", a->cfg.jailer);
        else {
                ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
                exe[n > 0 ? n : 0] = '\0';
                snprintf(a->jailer, sizeof(a->jailer), "%s/sbx-jailer", dirname(exe));
        }
        if (access(a->jailer, X_OK) < 0)
                return log_error_errno(-errno, "The jailer %s is not executable: %m", a->jailer);
        snprintf(a->cgroup_root, sizeof(a->cgroup_root), "sbx-agent-%s", a->cfg.name);

        a->tsc_khz = a->cfg.tsc_khz ? a->cfg.tsc_khz : agent_vmm_measure_tsc_khz();
        if (streq(a->cfg.accel, "kvm"))
                a->kvm = true;
        else if (streq(a->cfg.accel, "auto"))
                a->kvm = probe_kvm(a);
        if (streq(a->cfg.vmm, "auto"))
                a->vmm = a->cfg.ch_binary && a->kvm ? &agent_vmm_cloud_hypervisor : &agent_vmm_qemu;
        else
                a->vmm = agent_vmm_find(a->cfg.vmm);
        if (!a->vmm)
                return log_error_errno(-EINVAL, "vmm: unknown driver %s", a->cfg.vmm);
        if (a->vmm == &agent_vmm_cloud_hypervisor && !a->cfg.ch_binary)
                return log_error_errno(-EINVAL, "vmm: cloud-hypervisor needs ch-binary");
        if (a->vmm == &agent_vmm_cloud_hypervisor && !a->kvm)
                return log_error_errno(-EINVAL, "vmm: cloud-hypervisor needs KVM, which is not usable here; "
                                                "use vmm = qemu (TCG)");
        log_info("Using %s with %s%s (TSC %llu kHz)", a->vmm->name, a->kvm ? "KVM" : "TCG",
                 streq(a->cfg.accel, "auto")
                         ? (a->kvm ? ": a probe boot succeeded" : ": KVM is missing or cannot boot a guest")
                         : "",
                 (unsigned long long)a->tsc_khz);

        if ((r = sbx_metrics_new(&a->metrics)) < 0 || (r = agent_metrics_register(a)) < 0)
                return log_error_errno(r, "Failed to set up metrics: %m");
        sbx_gauge_set(a->m.accelerator, SBX_LABELS(a->vmm->name, a->kvm ? "kvm" : "tcg"), 1);
        so.metrics = a->metrics;
        if ((r = sbx_rpc_new(a->loop, &a->rpc)) < 0)
                return log_error_errno(r, "Failed to start gRPC: %m");
        SbxEtcdOptions eo = { .endpoints = a->cfg.etcd_endpoints, .tls = a->cfg.etcd_ca ? &etcd_tls : NULL };
        if ((r = sbx_etcd_new(a->rpc, &eo, &a->etcd)) < 0)
                return log_error_errno(r, "Failed to set up the etcd client: %m");
        if ((r = egress_new(a, &a->egress)) < 0)
                return log_error_errno(r, "Failed to set up egress enforcement: %m");
        if ((r = agent_reconcile_start(a)) < 0)
                return log_oom();

        if ((r = sbx_rpc_server_new(a->rpc, &so, &a->data_server)) < 0 ||
            (r = agent_data_register(a, a->data_server)) < 0)
                return log_error_errno(r, "Failed to set up the data plane: %m");
        r = sbx_rpc_server_listen(a->data_server, a->cfg.listen, a->cfg.tls_cert ? &api_tls : NULL, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on %s: %m", a->cfg.listen);
        sbx_rpc_server_start(a->data_server);
        if (a->cfg.metrics_listen && (r = sbx_metrics_server_new(a->loop, a->metrics, a->cfg.metrics_listen,
                                                                 &a->metrics_server, NULL)) < 0)
                return log_error_errno(r, "Failed to serve metrics on %s: %m", a->cfg.metrics_listen);
        if (a->metrics_server)
                sbx_metrics_server_set_ready(a->metrics_server, agent_ready, a);
        log_info("sbx-agent %s (region %s) serving the data plane on %s (%s)", a->cfg.name, a->cfg.region,
                 a->cfg.listen, a->cfg.tls_cert ? (a->cfg.tls_client_ca ? "mTLS" : "TLS") : "plaintext");
        return agent_register_start(a);
}

int main(int argc, char **argv)
{
        Agent *a = &agent;
        _cleanup_free_ char *error = NULL;
        uv_loop_t loop;
        int r;

        sbx_log_setup(argv[0], SBX_LOG_TEXT, SBX_LOG_INFO);
        r = sbx_config_load(&agent_config_table, &a->cfg, argc, argv, &error);
        if (r == 1)
                return EXIT_SUCCESS;
        if (r < 0) {
                fprintf(stderr, "%s\n", error);
                sbx_config_done(&agent_config_table, &a->cfg);
                return 2;
        }
        sbx_log_setup(argv[0], a->cfg.log_format, a->cfg.log_level);
        uv_loop_init(&loop);
        a->loop = &loop;
        r = setup(a);
        if (r < 0) {
                if (a->rpc) {
                        a->etcd = sbx_etcd_free(a->etcd);
                        if (a->metrics_server)
                                sbx_metrics_server_close(a->metrics_server, on_metrics_down, NULL);
                        else
                                metrics_down = true;
                        sbx_rpc_shutdown(a->rpc, 0, on_rpc_down, a);
                } else {
                        rpc_down = metrics_down = true;
                }
                egress_free(a->egress, on_egress_down, NULL);
                a->egress = NULL;
        }
        while (!rpc_down || !metrics_down || !egress_down)
                uv_run(&loop, UV_RUN_ONCE);
        sbx_signals_close(signals);
        sbx_loop_close_all(&loop);
        sbx_hashmap_free(a->sandboxes, NULL);
        sbx_metrics_free(a->metrics);
        sbx_cluster_key_wipe(&a->key);
        free(a->slots_used);
        sbx_config_done(&agent_config_table, &a->cfg);
        if (r >= 0)
                log_info("Stopped");
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
