/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One sandbox on this node: its directory, disk, tap, cgroup, VMM process and guest channel, and the
 * state machine that owns them:
 *
 *   PREPARING → BOOTING → RUNNING → STOPPING → ENDED
 *                  └──────────┴──────────┴──→ ENDED (failed: boot timeout, VMM died)
 *
 * Everything it creates it also removes, on every path; a sandbox in ENDED has nothing left on the
 * host. Observed states go to etcd as they happen (agent-status.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/agent-channel.h"
#include "agent/agent-console.h"
#include "agent/agent-vmm.h"
#include "agent/agent.h"
#include "agent/egress.h"
#include "common/base/fd-util.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"

struct AgentSandbox {
        Agent *a;
        char id[SBX_KEY_NAME_MAX + 1];
        char org[128];
        char dir[512];
        char data_disk[600];
        uint32_t memory_mb;
        uint32_t vcpus;
        int64_t stop_at_ms;
        AgentPhase phase;
        AgentNet net;
        bool net_up;
        AgentVmmSpec spec;
        /* The VMM: spawned (uv_process) or adopted after a restart (pidfd polled). */
        uv_process_t proc;
        bool proc_alive;
        bool proc_handle;
        pid_t pid;
        int pidfd;
        uv_poll_t pid_poll;
        bool pid_poll_handle;
        AgentChannel *ch;
        uv_timer_t boot_timer, life_timer, kill_timer;
        usec_t boot_started;
        uint64_t boot_duration_us;
        Sbx__V1__SandboxState final_state;
        char final_reason[256];
        char kernel_release[64];
        unsigned closing;
        /* The driver's configure() has not called back yet: that callback holds a reference. */
        bool configuring;
        /* The channel dropped while the sandbox ran; the VMM's own exit, if it follows, says why. */
        bool channel_lost;
        bool killed_by_us;
        /* Egress: its rules now, its secrets opened before the VMM starts. */
        EgressSandbox *egress;
        /* The guest's environment from the spec: each secret's name with its placeholder. */
        char **env_keys, **env_values;
};

#define SB_FIELDS(sb) LOG_FIELDS({ "sandbox", (sb)->id }, { "org", (sb)->org })

AgentPhase agent_sandbox_phase(const AgentSandbox *sb)
{
        return sb->phase;
}

AgentChannel *agent_sandbox_channel(AgentSandbox *sb)
{
        return sb->phase == PHASE_RUNNING ? sb->ch : NULL;
}

const char *agent_sandbox_id(const AgentSandbox *sb)
{
        return sb->id;
}

const char *agent_sandbox_org(const AgentSandbox *sb)
{
        return sb->org;
}

static void write_status(AgentSandbox *sb, Sbx__V1__SandboxState st, const char *reason)
{
        agent_status_write(sb->a, sb->id, st, reason, sb->boot_duration_us,
                           sb->net_up ? sb->net.guest_ip : NULL);
}

/* ---- files ---- */

/* Copies a sparse file keeping its holes: the 10 GiB template costs only its few metadata blocks. */
static int copy_sparse(const char *from, const char *to, uid_t uid, gid_t gid)
{
        _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = -1;
        struct stat st;
        off_t data = 0, hole;

        if (in < 0 || fstat(in, &st) < 0)
                return -errno;
        out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0)
                return -errno;
        if (ftruncate(out, st.st_size) < 0)
                return -errno;
        while ((data = lseek(in, data, SEEK_DATA)) >= 0) {
                hole = lseek(in, data, SEEK_HOLE);
                if (hole < 0)
                        return -errno;
                off_t off_in = data, off_out = data;
                size_t left = (size_t)(hole - data);
                while (left > 0) {
                        ssize_t n = copy_file_range(in, &off_in, out, &off_out, left, 0);
                        if (n <= 0)
                                return n < 0 ? -errno : -EIO;
                        left -= (size_t)n;
                }
                data = hole;
        }
        if (errno != ENXIO)
                return -errno;
        if (fchown(out, uid, gid) < 0)
                return -errno;
        return 0;
}

static int rm_rf(const char *dir)
{
        /* Only our own, flat sandbox directories: a handful of files, no subdirectories. */
        DIR *d = opendir(dir);
        struct dirent *de;
        char p[1024];

        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
                        unlink(p);
                }
        closedir(d);
        return rmdir(dir) < 0 ? -errno : 0;
}

/* ---- ending ---- */

static void sandbox_unref(AgentSandbox *sb)
{
        if (--sb->closing > 0)
                return;
        strv_free(sb->env_keys);
        strv_free(sb->env_values);
        free(sb);
}

static void sandbox_closed(uv_handle_t *h)
{
        sandbox_unref(h->data);
}

/* When a sandbox fails, the end of the VMM's own output and of the guest console usually says why;
 * they are about to be removed with the sandbox's directory, so they go to the log first. */
static void log_tail(AgentSandbox *sb, const char *name)
{
        char path[600], buf[1536];
        snprintf(path, sizeof(path), "%s/%s", sb->dir, name);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0)
                return;
        off_t from = st.st_size > (off_t)sizeof(buf) - 1 ? st.st_size - (off_t)sizeof(buf) + 1 : 0;
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
        if (n <= 0)
                return;
        buf[n] = '\0';
        log_warning_fields(SB_FIELDS(sb), "Last output of %s:\n%s", name, buf);
}

/* Called once the VMM is gone: removes everything and reports the final state. */
static void finish(AgentSandbox *sb)
{
        Agent *a = sb->a;

        if (sb->phase == PHASE_ENDED)
                return;
        if (sb->final_state == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED) {
                log_tail(sb, "vmm.log");
                log_tail(sb, "console.log");
        }
        sb->phase = PHASE_ENDED;
        uv_timer_stop(&sb->boot_timer);
        uv_timer_stop(&sb->life_timer);
        uv_timer_stop(&sb->kill_timer);
        if (sb->ch) {
                agent_channel_close(sb->ch);
                sb->ch = NULL;
        }
        if (sb->egress) {
                egress_sandbox_remove(sb->egress);
                sb->egress = NULL;
        }
        if (sb->net_up) {
                agent_net_remove(a, &sb->net);
                sb->net_up = false;
        }
        agent_jail_remove(a, sb->id);
        rm_rf(sb->dir);
        write_status(sb, sb->final_state, sb->final_reason);
        sbx_counter_inc(a->m.stops,
                        SBX_LABELS(sb->final_state == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED
                                           ? "failed"
                                           : "stopped"));
        log_info_fields(SB_FIELDS(sb), "Sandbox %s: %s",
                        sb->final_state == SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED ? "failed"
                                                                                        : "stopped",
                        sb->final_reason);
        agent_sandbox_forget(a, sb->id);

        /* Memory goes when the last handle has closed. */
        sb->closing =
                3 + (sb->proc_handle ? 1 : 0) + (sb->pid_poll_handle ? 1 : 0) + (sb->configuring ? 1 : 0);
        uv_close((uv_handle_t *)&sb->boot_timer, sandbox_closed);
        uv_close((uv_handle_t *)&sb->life_timer, sandbox_closed);
        uv_close((uv_handle_t *)&sb->kill_timer, sandbox_closed);
        if (sb->proc_handle)
                uv_close((uv_handle_t *)&sb->proc, sandbox_closed);
        if (sb->pid_poll_handle) {
                uv_close((uv_handle_t *)&sb->pid_poll, sandbox_closed);
                close(sb->pidfd);
        }
}

/* A VMM that exits by itself after a guest kernel panic (panic=-1 and -no-reboot) reports success;
 * the panic's own message, at the console's end, says what happened. */
static bool guest_panic_message(AgentSandbox *sb, char *buf, size_t n)
{
        char path[600], tail[AGENT_CONSOLE_TAIL_MAX];
        struct stat st;

        snprintf(path, sizeof(path), "%s/console.log", sb->dir);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return false;
        off_t from = st.st_size > (off_t)sizeof(tail) ? st.st_size - (off_t)sizeof(tail) : 0;
        ssize_t k = pread(fd, tail, sizeof(tail), from);
        return k > 0 && agent_console_panic_message(tail, (size_t)k, buf, n);
}

static void vmm_gone(AgentSandbox *sb, const char *how)
{
        char panic[160];

        sb->proc_alive = false;
        if (sb->phase == PHASE_STOPPING && !(sb->channel_lost && !sb->killed_by_us)) {
                finish(sb);
                return;
        }
        /* It died on its own, or the channel only dropped because it died: that is the reason to
         * report, and a stop that was not asked for fails the sandbox. */
        if (sb->phase != PHASE_STOPPING)
                sb->final_state = SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED;
        if (!sb->killed_by_us && guest_panic_message(sb, panic, sizeof(panic)))
                snprintf(sb->final_reason, sizeof(sb->final_reason), "the guest kernel panicked: %s", panic);
        else
                snprintf(sb->final_reason, sizeof(sb->final_reason), "the VMM %s", how);
        finish(sb);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
        AgentSandbox *sb = p->data;
        char how[64];
        if (sig)
                snprintf(how, sizeof(how), "was killed by signal %d (%s)", sig, strsignal(sig));
        else
                snprintf(how, sizeof(how), "exited with status %lld", (long long)status);
        vmm_gone(sb, how);
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
        AgentSandbox *sb = h->data;
        uv_poll_stop(h);
        vmm_gone(sb, "exited while the agent was away");
}

static void kill_vmm(AgentSandbox *sb)
{
        if (!sb->proc_alive)
                return;
        sb->killed_by_us = true;
        if (sb->proc_handle)
                uv_process_kill(&sb->proc, SIGKILL);
        else if (sb->pid > 0)
                kill(sb->pid, SIGKILL);
}

static void on_kill_timer(uv_timer_t *t)
{
        AgentSandbox *sb = t->data;
        log_debug_fields(SB_FIELDS(sb), "Guest did not power off in time; killing the VMM");
        kill_vmm(sb);
}

void agent_sandbox_stop(AgentSandbox *sb, Sbx__V1__SandboxState final, const char *reason)
{
        if (sb->phase == PHASE_STOPPING || sb->phase == PHASE_ENDED)
                return;
        bool graceful = sb->phase == PHASE_RUNNING && sb->ch;
        sb->final_state = final;
        snprintf(sb->final_reason, sizeof(sb->final_reason), "%s", reason ? reason : "stopped");
        sb->phase = PHASE_STOPPING;
        uv_timer_stop(&sb->boot_timer);
        uv_timer_stop(&sb->life_timer);
        write_status(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPING, sb->final_reason);
        if (!sb->proc_alive) {
                finish(sb);
                return;
        }
        if (graceful) {
                /* Let the guest sync its disk and power off; the VMM then exits by itself. */
                Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
                f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_POWER_OFF;
                f.power_off = true;
                if (agent_channel_send_control(sb->ch, &f) < 0)
                        graceful = false;
        }
        /* After a lost channel the VMM gets a moment to exit by itself (it usually is dying already),
         * so that its own exit status becomes the reason. */
        uint64_t grace = graceful           ? sbx_usec_to_msec_ceil(sb->a->cfg.stop_timeout)
                         : sb->channel_lost ? 500
                                            : 0;
        uv_timer_start(&sb->kill_timer, on_kill_timer, grace, 0);
}

/* ---- lifetime ---- */

static void on_life(uv_timer_t *t)
{
        AgentSandbox *sb = t->data;
        /* The scheduler's reconciler would stop it too; enforcing locally covers a control plane that
         * is unreachable. */
        agent_sandbox_stop(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED, "expired");
}

void agent_sandbox_set_stop_at(AgentSandbox *sb, int64_t stop_at_ms)
{
        sb->stop_at_ms = stop_at_ms;
        if (sb->phase != PHASE_RUNNING || stop_at_ms <= 0)
                return;
        int64_t left = stop_at_ms - sbx_now_ms();
        uv_timer_start(&sb->life_timer, on_life, left > 0 ? (uint64_t)left : 0, 0);
}

/* ---- booting ---- */

static void on_hello(AgentChannel *ch, const Sbx__V1__Guest__Hello *h, void *userdata)
{
        AgentSandbox *sb = userdata;
        char d[SBX_DURATION_MAX];

        if (sb->phase != PHASE_BOOTING)
                return;
        uv_timer_stop(&sb->boot_timer);
        sb->boot_duration_us = sbx_now_monotonic() - sb->boot_started;
        snprintf(sb->kernel_release, sizeof(sb->kernel_release), "%s",
                 h->kernel_release ? h->kernel_release : "");
        sb->phase = PHASE_RUNNING;
        sbx_histogram_observe(sb->a->m.boot_seconds, SBX_LABELS(sb->a->kvm ? "kvm" : "tcg"),
                              (double)sb->boot_duration_us / 1e6);
        sbx_counter_inc(sb->a->m.starts, SBX_LABELS("running"));
        if (h->warning && *h->warning)
                log_warning_fields(SB_FIELDS(sb), "Guest reports: %s", h->warning);
        log_info_fields(SB_FIELDS(sb), "Sandbox running after %s (guest kernel %s, guest uptime %llu ms)",
                        sbx_format_duration(d, sizeof(d), sb->boot_duration_us), sb->kernel_release,
                        (unsigned long long)h->uptime_ms);
        write_status(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING, NULL);
        agent_sandbox_set_stop_at(sb, sb->stop_at_ms);
}

static void on_channel_closed(AgentChannel *ch, int error, void *userdata)
{
        AgentSandbox *sb = userdata;

        sb->ch = NULL;
        agent_channel_close(ch);
        if (sb->phase == PHASE_STOPPING || sb->phase == PHASE_ENDED)
                return;
        sbx_counter_inc(sb->a->m.channel_errors, SBX_LABELS(error == -EPROTO ? "protocol" : "closed"));
        sb->channel_lost = true;
        /* A guest that breaks the protocol, or a channel that drops, ends the sandbox: nothing can be
         * run in it any more. */
        agent_sandbox_stop(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED,
                           error == -EPROTO ? "the guest broke the channel protocol"
                                            : "the guest channel closed");
}

static void on_boot_timeout(uv_timer_t *t)
{
        AgentSandbox *sb = t->data;
        char d[SBX_DURATION_MAX];
        char reason[128];

        sbx_counter_inc(sb->a->m.starts, SBX_LABELS("failed"));
        snprintf(reason, sizeof(reason), "did not boot within %s",
                 sbx_format_duration(d, sizeof(d), sb->a->cfg.boot_timeout));
        log_warning_fields(SB_FIELDS(sb), "Sandbox %s; see %s/console.log", reason, sb->dir);
        agent_sandbox_stop(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED, reason);
}

static const AgentChannelCallbacks channel_cbs = { .on_hello = on_hello, .on_closed = on_channel_closed };

static int connect_channel(AgentSandbox *sb, bool fresh)
{
        Agent *a = sb->a;
        Sbx__V1__Guest__Config c = SBX__V1__GUEST__CONFIG__INIT;
        char path[600];
        int port;

        a->vmm->channel(&sb->spec, path, sizeof(path), &port);
        if (!fresh)
                return agent_channel_connect(a->loop, path, port, NULL, 5 * USEC_PER_SEC, &channel_cbs, sb,
                                             &sb->ch);

        char *dns_default[] = { sb->net.host_ip, NULL };
        c.address = sb->net_up ? sb->net.guest_ip : (char *)"";
        c.prefix_len = sb->net.prefix;
        c.gateway = sb->net_up ? sb->net.host_ip : (char *)"";
        c.dns = a->cfg.guest_dns ? a->cfg.guest_dns : dns_default;
        c.n_dns = strv_length(c.dns);
        c.mtu = a->cfg.mtu;
        c.hostname = (char *)"sandbox";
        c.realtime_ms = sbx_now_ms();
        c.user = (char *)"app";
        c.ca_pem = (char *)(egress_ca_pem(a->egress) ? egress_ca_pem(a->egress) : "");
        size_t n_env = strv_length(sb->env_keys);
        /* The channel packs the Config at once: these live until it returns. */
        _cleanup_free_ Sbx__V1__Guest__Config__EnvEntry *entries = calloc(n_env + 1, sizeof(*entries));
        _cleanup_free_ Sbx__V1__Guest__Config__EnvEntry **ptrs = calloc(n_env + 1, sizeof(*ptrs));
        if (!entries || !ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n_env; i++) {
                sbx__v1__guest__config__env_entry__init(&entries[i]);
                entries[i].key = sb->env_keys[i];
                entries[i].value = sb->env_values[i];
                ptrs[i] = &entries[i];
        }
        c.env = ptrs;
        c.n_env = n_env;
        c.base_device = (char *)a->vmm->base_device;
        c.data_device = (char *)a->vmm->data_device;
        return agent_channel_connect(a->loop, path, port, &c, a->cfg.boot_timeout, &channel_cbs, sb,
                                     &sb->ch);
}

static void configured(int error, void *userdata)
{
        AgentSandbox *sb = userdata;
        const AgentVmmDriver *vmm = sb->a->vmm;

        sb->configuring = false;
        if (sb->phase == PHASE_ENDED) {
                /* The VMM died while the driver was still talking to it; this was the last reference. */
                sandbox_unref(sb);
                return;
        }
        if (error < 0 && sb->phase == PHASE_BOOTING) {
                _cleanup_free_ char *why = NULL;
                char reason[sizeof(sb->final_reason)];
                if (vmm->configure_error)
                        (void)vmm->configure_error(&sb->spec, &why);
                snprintf(reason, sizeof(reason), "%s could not boot the VM: %s", vmm->name,
                         why ? why : sbx_error_message(error));
                agent_sandbox_stop(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED, reason);
        }
}

static AgentSandbox *sandbox_new(Agent *a, const char *id, const Sbx__V1__SandboxRecord *rec)
{
        AgentSandbox *sb = calloc(1, sizeof(AgentSandbox));
        if (!sb)
                return NULL;
        sb->a = a;
        sb->pidfd = -1;
        sb->net.slot = -1;
        snprintf(sb->id, sizeof(sb->id), "%s", id);
        snprintf(sb->org, sizeof(sb->org), "%s", rec && rec->org ? rec->org : "");
        snprintf(sb->dir, sizeof(sb->dir), "%s/sandboxes/%s", a->cfg.state_dir, id);
        snprintf(sb->data_disk, sizeof(sb->data_disk), "%s/disk.ext4", sb->dir);
        sb->memory_mb = rec && rec->spec && rec->spec->memory_mb ? rec->spec->memory_mb : 1280;
        sb->vcpus = rec && rec->spec && rec->spec->vcpus ? rec->spec->vcpus : 2;
        sb->stop_at_ms = rec ? rec->stop_at_ms : 0;
        sb->final_state = SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED;
        uv_timer_init(a->loop, &sb->boot_timer);
        uv_timer_init(a->loop, &sb->life_timer);
        uv_timer_init(a->loop, &sb->kill_timer);
        sb->boot_timer.data = sb->life_timer.data = sb->kill_timer.data = sb;
        sb->spec = (AgentVmmSpec){ .dir = sb->dir,
                                   .image = &a->image,
                                   .data_disk = sb->data_disk,
                                   .memory_mb = sb->memory_mb,
                                   .vcpus = sb->vcpus,
                                   .net = &sb->net,
                                   .kvm = a->kvm,
                                   .tsc_khz = a->tsc_khz,
                                   .cmdline_extra = a->cfg.guest_cmdline_extra };
        return sb;
}

static int spawn_vmm(AgentSandbox *sb)
{
        Agent *a = sb->a;
        _cleanup_strv_free_ char **vmm = NULL, **argv = NULL;
        _cleanup_close_ int log_fd = -1;
        char log_path[600];
        int r;

        if ((r = a->vmm->command(a, &sb->spec, &vmm)) < 0)
                return r;
        uint64_t limit = (uint64_t)sb->memory_mb * 1048576ULL + a->cfg.vmm_overhead;
        if ((r = agent_jail_argv(a, sb->id, sb->dir, agent_vmm_uid(a, sb->net.slot), limit, vmm, &argv)) < 0)
                return r;
        snprintf(log_path, sizeof(log_path), "%s/vmm.log", sb->dir);
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (log_fd < 0)
                return -errno;

        _cleanup_close_ int tap_fd = -1;
        if (a->vmm->tap_fd && sb->spec.net && (tap_fd = agent_net_open_tap(sb->spec.net)) < 0)
                return tap_fd;
        /* The jailer passes every inherited fd on to the VMM. */
        uv_stdio_container_t stdio[AGENT_VMM_TAP_FD + 1] = {
                { .flags = UV_IGNORE },
                { .flags = UV_INHERIT_FD, .data.fd = log_fd },
                { .flags = UV_INHERIT_FD, .data.fd = log_fd },
                { .flags = tap_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = tap_fd },
        };
        uv_process_options_t o = {
                .file = argv[0],
                .args = argv,
                .exit_cb = on_exit_cb,
                .stdio = stdio,
                .stdio_count = tap_fd >= 0 ? AGENT_VMM_TAP_FD + 1 : 3,
                /* The VMM outlives an agent restart (it is adopted then), so it is not our process group. */
                .flags = UV_PROCESS_DETACHED,
        };
        sb->proc.data = sb;
        r = uv_spawn(a->loop, &sb->proc, &o);
        sb->proc_handle = true; /* uv_spawn initializes the handle even on failure */
        if (r < 0)
                return r;
        sb->proc_alive = true;
        sb->pid = sb->proc.pid;
        return 0;
}

static void prepare_failed(AgentSandbox *sb, const char *step, int r)
{
        log_error_errno(r, "Failed to prepare sandbox %s (%s): %m", sb->id, step);
        sbx_counter_inc(sb->a->m.starts, SBX_LABELS("failed"));
        sb->final_state = SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED;
        snprintf(sb->final_reason, sizeof(sb->final_reason), "could not prepare the sandbox (%s): %s", step,
                 sbx_error_message(r));
        sb->phase = PHASE_STOPPING;
        finish(sb);
}

/* The VMM starts once the sandbox's egress is in place and its secrets are open. */
static void egress_ready(int error, void *userdata)
{
        AgentSandbox *sb = userdata;
        Agent *a = sb->a;
        int r;

        if (sb->phase != PHASE_PREPARING)
                return;
        if (error < 0) {
                prepare_failed(sb, "opening its secrets", error);
                return;
        }
        if ((r = spawn_vmm(sb)) < 0) {
                prepare_failed(sb, "starting the VMM", r);
                return;
        }
        sb->phase = PHASE_BOOTING;
        uv_timer_start(&sb->boot_timer, on_boot_timeout, sbx_usec_to_msec_ceil(a->cfg.boot_timeout), 0);
        if (a->vmm->configure) {
                if ((r = a->vmm->configure(a, &sb->spec, configured, sb)) < 0)
                        goto fail_running;
                sb->configuring = true;
        }
        if ((r = connect_channel(sb, true)) < 0)
                goto fail_running;
        return;

fail_running:
        sb->final_state = SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED;
        snprintf(sb->final_reason, sizeof(sb->final_reason), "could not start: %s", sbx_error_message(r));
        agent_sandbox_stop(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED, sb->final_reason);
}

int agent_sandbox_start(Agent *a, const Sbx__V1__SandboxRecord *rec, AgentSandbox **ret)
{
        AgentSandbox *sb = sandbox_new(a, rec->id, rec);
        char net_file[600], slot[16];
        const char *step;
        int r;

        if (!sb)
                return -ENOMEM;
        sb->phase = PHASE_PREPARING;
        sb->boot_started = sbx_now_monotonic();
        write_status(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_STARTING, NULL);

        /* The network slot comes first: it also names the VMM's own uid. */
        step = "setting up its network";
        if ((r = agent_net_setup(a, sb->id, &sb->net)) < 0)
                goto fail;
        sb->net_up = true;
        uid_t uid = agent_vmm_uid(a, sb->net.slot);

        char parent[520];
        step = "making its directory";
        snprintf(parent, sizeof(parent), "%s/sandboxes", a->cfg.state_dir);
        (void)mkdir(parent, 0755);
        if (mkdir(sb->dir, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                goto fail;
        }
        if (chown(sb->dir, uid, uid) < 0) {
                r = -errno;
                goto fail;
        }
        snprintf(net_file, sizeof(net_file), "%s/net", sb->dir);
        snprintf(slot, sizeof(slot), "%d\n", sb->net.slot);
        (void)sbx_write_file_atomic(net_file, slot, strlen(slot), 0600);
        step = "copying its disk";
        if ((r = copy_sparse(a->image.data_template, sb->data_disk, uid, uid)) < 0)
                goto fail;

        step = "setting up its egress rules";
        for (size_t i = 0; rec->spec && i < rec->spec->n_secrets; i++)
                if ((r = strv_extend(&sb->env_keys, rec->spec->secrets[i]->name)) < 0 ||
                    (r = strv_extend(&sb->env_values, rec->spec->secrets[i]->placeholder)) < 0)
                        goto fail;
        if ((r = egress_sandbox_add(a->egress, sb->id, &sb->net, rec->spec, egress_ready, sb, &sb->egress)) <
            0)
                goto fail;
        /* egress_ready() boots it once the secrets are open. */
        *ret = sb;
        return 0;
fail:
        prepare_failed(sb, step, r);
        *ret = sb;
        return 0;
}

/* ---- adoption after an agent restart ---- */

static int read_pid(const char *dir, pid_t *ret)
{
        _cleanup_free_ char *text = NULL;
        char p[600];
        int r;

        snprintf(p, sizeof(p), "%s/vmm.pid", dir);
        r = sbx_read_file(p, 64, &text, NULL);
        if (r < 0)
                return r;
        long v = strtol(text, NULL, 10);
        if (v <= 1)
                return -EINVAL;
        *ret = (pid_t)v;
        return 0;
}

/* The process at `pid` is the VMM of `dir` (and not a recycled pid) when its command line names
 * the directory. */
static bool is_our_vmm(pid_t pid, const char *dir)
{
        _cleanup_free_ char *cmdline = NULL;
        char p[64];
        size_t n;

        snprintf(p, sizeof(p), "/proc/%d/cmdline", (int)pid);
        if (sbx_read_file(p, 1 << 20, &cmdline, &n) < 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (cmdline[i] == '\0')
                        cmdline[i] = ' ';
        return strstr(cmdline, dir) != NULL;
}

static void adopted_egress(int error, void *userdata)
{
        AgentSandbox *sb = userdata;
        if (error < 0)
                log_warning_fields(SB_FIELDS(sb),
                                   "The adopted sandbox's secrets could not be opened (%s); its "
                                   "requests leave with their placeholders",
                                   sbx_error_message(error));
}

int agent_sandbox_adopt(Agent *a, const char *id, const Sbx__V1__SandboxRecord *rec, AgentSandbox **ret)
{
        AgentSandbox *sb = sandbox_new(a, id, rec);
        pid_t pid;
        int r;

        if (!sb)
                return -ENOMEM;
        if (read_pid(sb->dir, &pid) < 0 || !is_our_vmm(pid, sb->dir)) {
                r = -ESRCH;
                goto fail;
        }
        sb->pid = pid;
        sb->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (sb->pidfd < 0) {
                r = -errno;
                goto fail;
        }
        uv_poll_init(a->loop, &sb->pid_poll, sb->pidfd);
        sb->pid_poll.data = sb;
        sb->pid_poll_handle = true;
        uv_poll_start(&sb->pid_poll, UV_READABLE, on_pidfd);
        sb->proc_alive = true;
        if ((r = agent_net_adopt(a, id, &sb->net)) >= 0)
                sb->net_up = true;
        /* The rules went with the agent's table at its restart: put them back, and the secrets. */
        if (sb->net_up && (r = egress_sandbox_add(a->egress, id, &sb->net, rec ? rec->spec : NULL,
                                                  adopted_egress, sb, &sb->egress)) < 0)
                log_warning_fields(SB_FIELDS(sb), "Could not restore the sandbox's egress rules: %s",
                                   sbx_error_message(r));
        sb->phase = PHASE_RUNNING;
        if ((r = connect_channel(sb, false)) < 0) {
                agent_sandbox_stop(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED,
                                   "could not re-attach to the guest");
                *ret = sb;
                return 0;
        }
        log_info_fields(SB_FIELDS(sb), "Adopted the running sandbox (VMM pid %d)", (int)pid);
        write_status(sb, SBX__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING, NULL);
        agent_sandbox_set_stop_at(sb, sb->stop_at_ms);
        *ret = sb;
        return 0;
fail:
        /* The handles close later; the memory must outlive them. */
        sb->closing = 3;
        uv_close((uv_handle_t *)&sb->boot_timer, sandbox_closed);
        uv_close((uv_handle_t *)&sb->life_timer, sandbox_closed);
        uv_close((uv_handle_t *)&sb->kill_timer, sandbox_closed);
        return r;
}

void agent_sandbox_cleanup_dir(Agent *a, const char *id)
{
        char dir[600];
        pid_t pid;
        AgentNet n = { .slot = -1 };

        snprintf(dir, sizeof(dir), "%s/sandboxes/%s", a->cfg.state_dir, id);
        /* A VMM still running there belongs to nobody now: end it. */
        if (read_pid(dir, &pid) >= 0 && is_our_vmm(pid, dir)) {
                kill(pid, SIGKILL);
                for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
                        usleep(10000);
        }
        agent_net_tap_name(id, n.tap);
        agent_net_remove(a, &n);
        agent_jail_remove(a, id);
        rm_rf(dir);
}
