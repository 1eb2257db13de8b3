/* SPDX-License-Identifier: Apache-2.0 */
#include "tests/lib/agents.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/fd-util.h"
#include "common/base/macro.h"
#include "common/base/parse.h"
#include "common/base/string-util.h"
#include "proto/sbx/v1/sandboxes.pb-c.h"

static const char *build_dir(void)
{
        const char *b = getenv("SBX_BUILD_DIR");
        return b && *b ? b : "build";
}

int sbx_test_netns_enter(void)
{
        struct ifreq ifr = { 0 };

        if (unshare(CLONE_NEWNET) < 0)
                return -errno;
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        ifr.ifr_flags |= IFF_UP;
        return ioctl(fd, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

const char *sbx_test_image_dir(void)
{
        static char dir[600];
        char p[700];

        snprintf(dir, sizeof(dir), "%s/build/image", sbx_test_srcdir());
        snprintf(p, sizeof(p), "%s/initramfs.cpio", dir);
        if (access(p, R_OK) < 0) {
                fprintf(stderr, "No guest image in %s: run `make image` (make check does)\n", dir);
                return NULL;
        }
        return dir;
}

static int node_ready(SbxTestCluster *c, const char *name)
{
        SbxRpcChannel *ch = sbx_test_channel(c, 0, c->admin_token);
        Sbx__V1__ListNodesRequest req = SBX__V1__LIST_NODES_REQUEST__INIT;
        Sbx__V1__ListNodesResponse *resp = NULL;
        SbxRpcStatus st = { 0 };
        int found = 0;

        if (!ch)
                return -ENOMEM;
        if (sbx_test_call(c, ch, &sbx_api_admin_list_nodes, &req.base, &st, (ProtobufCMessage **)&resp) ==
                    0 &&
            resp)
                for (size_t i = 0; i < resp->n_nodes; i++)
                        if (resp->nodes[i]->node && streq(resp->nodes[i]->node->name, name))
                                found = 1;
        if (resp)
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        sbx_rpc_status_done(&st);
        sbx_rpc_channel_free(ch);
        return found;
}

/* /readyz of the agent answers 200: registered, and what ran before a restart adopted. */
static bool agent_ready(const SbxTestAgent *a)
{
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "curl -sf -o /dev/null --max-time 1 http://127.0.0.1:%d/readyz",
                 a->metrics_port);
        return system(cmd) == 0;
}

int sbx_test_agent_start(SbxTestCluster *c, SbxTestAgent *a, unsigned index, const char *region)
{
        char bin[512], image_dir[700], opt[16][700];
        char *argv[48];
        size_t n = 0, k = 0;
        const char *image = sbx_test_image_dir();

        if (!image)
                return -ENOENT;
        if (!a->port) {
                a->index = index;
                a->port = sbx_test_free_port();
                a->metrics_port = sbx_test_free_port();
                snprintf(a->name, sizeof(a->name), "t%d-%u", (int)getpid(), index);
                snprintf(a->region, sizeof(a->region), "%s", region);
                snprintf(a->target, sizeof(a->target), "127.0.0.1:%d", a->port);
                snprintf(a->dir, sizeof(a->dir), "%s/agent-%u", c->dir, index);
                snprintf(a->log, sizeof(a->log), "%s/agent-%u.log", c->dir, index);
                /* The VMMs run as an unprivileged user: it must get through the test's directory. */
                if (chmod(c->dir, 0711) < 0 || (mkdir(a->dir, 0755) < 0 && errno != EEXIST))
                        return -errno;
        }
        snprintf(bin, sizeof(bin), "%s/bin/sbx-agent", build_dir());
        snprintf(image_dir, sizeof(image_dir), "--image-dir=%s", image);
        argv[n++] = bin;
        argv[n++] = image_dir;
#define OPT(...)                                               \
        do {                                                   \
                snprintf(opt[k], sizeof(opt[k]), __VA_ARGS__); \
                argv[n++] = opt[k++];                          \
        } while (0)
        OPT("--name=%s", a->name);
        OPT("--region=%s", a->region);
        OPT("--listen=127.0.0.1:%d", a->port);
        OPT("--metrics-listen=127.0.0.1:%d", a->metrics_port);
        OPT("--etcd-endpoints=%s", c->etcd->endpoint);
        OPT("--cluster-key-file=%s", c->key_file);
        OPT("--state-dir=%s", a->dir);
        /* Agents of one test share its network namespace: their sandbox subnets must differ. */
        OPT("--subnet=10.%u.0.0/16", 200 + index);
#undef OPT
        argv[n++] = (char *)"--memory=6GiB";
        argv[n++] = (char *)"--vcpus=8";
        argv[n++] = (char *)"--slots=4";
        argv[n++] = (char *)"--log-level=debug";
        for (size_t i = 0; a->args && a->args[i] && n < ELEMENTSOF(argv) - 1; i++)
                argv[n++] = (char *)a->args[i];
        argv[n] = NULL;
        a->pid = sbx_test_spawn(argv, a->log);
        if (a->pid < 0)
                return a->pid;

        usec_t deadline = sbx_now_monotonic() + 30 * USEC_PER_SEC;
        while (sbx_now_monotonic() < deadline) {
                if (waitpid(a->pid, NULL, WNOHANG) == a->pid) {
                        a->pid = 0;
                        fprintf(stderr, "[----] agent %s exited during start-up; log: %s\n", a->name,
                                a->log);
                        sbx_test_show_log(a->log, "agent", 40);
                        return -EIO;
                }
                /* After a restart the old node record may outlive the old process: the data plane
                 * answering is what says this one is up. */
                if (node_ready(c, a->name) == 1 && agent_ready(a))
                        return 0;
                sbx_test_cluster_run(c, 100 * USEC_PER_MSEC);
        }
        fprintf(stderr, "[----] agent %s did not register within 30 s; log: %s\n", a->name, a->log);
        sbx_test_show_log(a->log, "agent", 40);
        return -ETIMEDOUT;
}

int sbx_test_agent_stop(SbxTestAgent *a, int sig)
{
        int r = 0;
        if (a->pid > 0) {
                int status = sbx_test_stop(a->pid, sig, 30 * USEC_PER_SEC);
                if (sig == SIGTERM && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
                        fprintf(stderr, "[----] agent %s exited with status 0x%x; log: %s\n", a->name,
                                status, a->log);
                        sbx_test_show_log(a->log, "agent", 40);
                        r = -EIO;
                }
        }
        a->pid = 0;
        return r;
}

/* Processes whose command line mentions the agent's directory: its VMMs (and jailers). */
static int for_each_vmm(const SbxTestAgent *a, bool kill_them, char *report, size_t n, size_t *len)
{
        _cleanup_(closedirp) DIR *d = opendir("/proc");
        struct dirent *de;
        int found = 0;

        if (!d || !*a->dir)
                return 0;
        while ((de = readdir(d))) {
                char p[300];
                _cleanup_free_ char *cmd = NULL;
                size_t size;
                uint32_t pid;
                if (sbx_parse_uint32(de->d_name, &pid) < 0 || (pid_t)pid == getpid())
                        continue;
                snprintf(p, sizeof(p), "/proc/%u/cmdline", pid);
                if (sbx_read_file(p, 1 << 16, &cmd, &size) < 0 || size == 0)
                        continue;
                for (size_t i = 0; i + 1 < size; i++)
                        if (cmd[i] == '\0')
                                cmd[i] = ' ';
                /* The agent itself names its state directory too. */
                if (!strstr(cmd, a->dir) || strstr(cmd, "sbx-agent"))
                        continue;
                found++;
                if (kill_them)
                        kill((pid_t)pid, SIGKILL);
                else if (*len < n)
                        *len += (size_t)snprintf(report + *len, n - *len, "process %u: %.120s\n", pid, cmd);
        }
        return found;
}

static int cgroup_children(const char *root, bool remove, char *report, size_t n, size_t *len)
{
        _cleanup_(closedirp) DIR *d = opendir(root);
        struct dirent *de;
        int found = 0;

        if (!d)
                return 0;
        while ((de = readdir(d))) {
                char p[900];
                if (de->d_name[0] == '.' || de->d_type != DT_DIR)
                        continue;
                snprintf(p, sizeof(p), "%s/%s", root, de->d_name);
                found++;
                if (remove)
                        (void)rmdir(p);
                else if (*len < n)
                        *len += (size_t)snprintf(report + *len, n - *len, "cgroup %s\n", p);
        }
        return found;
}

static int cgroups(const SbxTestAgent *a, bool remove, char *report, size_t n, size_t *len)
{
        static const char *const roots[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/memory",
                                             "/sys/fs/cgroup/pids" };
        int found = 0;
        for (size_t i = 0; i < ELEMENTSOF(roots); i++) {
                char root[300];
                snprintf(root, sizeof(root), "%s/sbx-agent-%s", roots[i], a->name);
                found += cgroup_children(root, remove, report, n, len);
                if (remove)
                        (void)rmdir(root);
        }
        return found;
}

int sbx_test_agent_leftovers(const SbxTestAgent *a, char *report, size_t n)
{
        size_t len = 0;
        int found = 0;
        char p[600];

        if (n)
                report[0] = '\0';
        found += for_each_vmm(a, false, report, n, &len);
        found += cgroups(a, false, report, n, &len);

        /* Taps: every sandbox tap is named sbx<hex>; the test's namespace holds no others. */
        struct if_nameindex *ifs = if_nameindex();
        for (struct if_nameindex *i = ifs; i && i->if_index; i++)
                if (startswith(i->if_name, "sbx")) {
                        found++;
                        if (len < n)
                                len += (size_t)snprintf(report + len, n - len, "tap %s\n", i->if_name);
                }
        if (ifs)
                if_freenameindex(ifs);

        snprintf(p, sizeof(p), "%s/sandboxes", a->dir);
        _cleanup_(closedirp) DIR *d = opendir(p);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                found++;
                if (len < n)
                        len += (size_t)snprintf(report + len, n - len, "directory %s/%s\n", p, de->d_name);
        }
        return found;
}

void sbx_test_agent_cleanup(SbxTestAgent *a)
{
        size_t len = 0;
        if (a->pid > 0)
                sbx_test_agent_stop(a, SIGKILL);
        for (int i = 0; i < 50 && for_each_vmm(a, true, NULL, 0, &len) > 0; i++)
                usleep(20000);
        usleep(50000);
        cgroups(a, true, NULL, 0, &len);
}

pid_t sbx_test_agent_vmm_pid(const SbxTestAgent *a, const char *id)
{
        _cleanup_free_ char *text = NULL;
        char p[700];
        uint32_t pid;
        int r;

        snprintf(p, sizeof(p), "%s/sandboxes/%s/vmm.pid", a->dir, id);
        if ((r = sbx_read_file(p, 64, &text, NULL)) < 0)
                return r;
        text[strcspn(text, "\n")] = '\0';
        if ((r = sbx_parse_uint32(text, &pid)) < 0)
                return r;
        return (pid_t)pid;
}

long sbx_test_rss_kib(pid_t pid, bool peak)
{
        _cleanup_free_ char *text = NULL;
        char p[64];
        int r;

        snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
        if ((r = sbx_read_file(p, 1 << 16, &text, NULL)) < 0)
                return r;
        const char *key = peak ? "\nVmHWM:" : "\nVmRSS:";
        char *at = strstr(text, key);
        if (!at)
                return -ENOENT;
        return strtol(at + strlen(key), NULL, 10);
}
