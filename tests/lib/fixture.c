/* SPDX-License-Identifier: Apache-2.0 */
#include "tests/lib/fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/macro.h"
#include "common/base/random-util.h"
#include "common/base/string-util.h"
#include "common/rpc/rpc.h"

extern char **environ;

/* The first port of the kernel's ephemeral range, from which connect() takes source ports. */
static unsigned ephemeral_low(void)
{
        unsigned low = 32768, high;
        FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
        if (f) {
                if (fscanf(f, "%u %u", &low, &high) != 2)
                        low = 32768;
                fclose(f);
        }
        return low;
}

/* Binds 127.0.0.1:port (0: any port the kernel chooses) and lets go again: the port, or -errno. */
static int try_port(unsigned port)
{
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons((uint16_t)port) };
        socklen_t l = sizeof(a);
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &l) < 0)
                return -errno;
        return ntohs(a.sin_port);
}

/* Drawn below the ephemeral range: a port from inside it, free when asked, can become the source
 * port of any outgoing connection before the daemon binds it (a scheduler's metrics port was once
 * taken that way in check-ops, most likely by its own reconnects to an absent etcd). And drawn above
 * 20000: the agent's own listeners have fixed default ports (10053, 10080, 10443), and a test's
 * port drawn as 10443 once kept an agent from starting. */
int sbx_test_free_port(void)
{
        const unsigned from = 20000, low = ephemeral_low();

        for (unsigned attempt = 0; low > from + 1000 && attempt < 200; attempt++) {
                int port = try_port(from + (unsigned)sbx_random_below(low - from));
                if (port > 0)
                        return port;
        }
        /* A machine whose ephemeral range leaves nothing below it: let the kernel choose. */
        return try_port(0);
}

void sbx_test_show_log(const char *log_path, const char *who, unsigned lines)
{
        char line[2048];
        size_t seen = 0;

        if (lines == 0)
                return;
        char **ring = calloc(lines, sizeof(char *));
        FILE *f = fopen(log_path, "re");
        if (!f || !ring) {
                fprintf(stderr, "[----] %s: no log at %s\n", who, log_path);
                goto out;
        }
        /* The last `lines` lines, in a ring. */
        for (; fgets(line, sizeof(line), f); seen++) {
                free(ring[seen % lines]);
                ring[seen % lines] = strdup(line);
        }
        for (size_t i = seen > lines ? seen - lines : 0; i < seen; i++) {
                const char *l = ring[i % lines];
                if (l)
                        fprintf(stderr, "[----] %s: %s%s", who, l, strchr(l, '\n') ? "" : "\n");
        }
out:
        if (f)
                fclose(f);
        for (size_t i = 0; ring && i < lines; i++)
                free(ring[i]);
        free(ring);
}

static const char *tmp_root(void)
{
        const char *t = getenv("TMPDIR");
        return t && *t ? t : "/tmp";
}

char *sbx_test_tempdir(const char *prefix)
{
        char *p = NULL;
        if (asprintf(&p, "%s/%s-XXXXXX", tmp_root(), prefix ? prefix : "sbx-test") < 0)
                return NULL;
        if (!mkdtemp(p)) {
                free(p);
                return NULL;
        }
        return p;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path) < 0 ? 0 : 0;
}

void sbx_test_rmrf(const char *path)
{
        if (!path || !startswith(path, tmp_root()) || strstr(path, ".."))
                return;
        nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

pid_t sbx_test_spawn(char *const argv[], const char *log_path)
{
        posix_spawn_file_actions_t fa;
        size_t n = 0;
        pid_t pid;
        int r;

        while (argv[n])
                n++;
        /* setpriv sets PR_SET_PDEATHSIG and execs the program: it dies with us. */
        char **args = new0(char *, n + 4);
        if (!args)
                return -ENOMEM;
        args[0] = (char *)"setpriv";
        args[1] = (char *)"--pdeathsig=KILL";
        args[2] = (char *)"--";
        for (size_t i = 0; i < n; i++)
                args[3 + i] = argv[i];

        posix_spawn_file_actions_init(&fa);
        if (log_path) {
                posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log_path, O_WRONLY | O_CREAT | O_APPEND,
                                                 0644);
                posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
        }
        r = posix_spawnp(&pid, "setpriv", &fa, NULL, args, environ);
        posix_spawn_file_actions_destroy(&fa);
        free(args);
        return r != 0 ? -r : pid;
}

int sbx_test_stop(pid_t pid, int sig, usec_t timeout)
{
        usec_t deadline = sbx_now_monotonic() + timeout;
        int status = 0;

        if (pid <= 0)
                return -EINVAL;
        kill(pid, sig);
        for (;;) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid || (w < 0 && errno == ECHILD))
                        return status;
                if (sbx_now_monotonic() >= deadline) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        return status;
                }
                usleep(10000);
        }
}

int sbx_test_wait_port(int port, usec_t timeout)
{
        usec_t deadline = sbx_now_monotonic() + timeout;
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

        while (sbx_now_monotonic() < deadline) {
                _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
                        return 0;
                usleep(20000);
        }
        return -ETIMEDOUT;
}

static void run_until_tick(uv_timer_t *t)
{
}

int sbx_test_run_until(uv_loop_t *loop, const bool *flag, usec_t timeout)
{
        usec_t deadline = sbx_now_monotonic() + timeout;
        uv_timer_t tick;

        /* A ticking timer makes UV_RUN_ONCE return regularly, so the deadline is checked. */
        uv_timer_init(loop, &tick);
        uv_timer_start(&tick, run_until_tick, 10, 10);
        while (!*flag && sbx_now_monotonic() < deadline)
                sbx_rpc_run_once(loop);
        uv_close((uv_handle_t *)&tick, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        return *flag ? 0 : -ETIMEDOUT;
}

void sbx_test_run_for(uv_loop_t *loop, usec_t duration)
{
        bool never = false;
        (void)sbx_test_run_until(loop, &never, duration);
}

static pid_t etcd_spawn(SbxTestEtcd *e)
{
        char client[64], peer[64], cluster[96], data[512], log[512];

        snprintf(client, sizeof(client), "http://127.0.0.1:%d", e->client_port);
        snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", e->peer_port);
        snprintf(cluster, sizeof(cluster), "default=%s", peer);
        snprintf(data, sizeof(data), "%s/data", e->dir);
        snprintf(log, sizeof(log), "%s/etcd.log", e->dir);
        char *const argv[] = {
                (char *)"etcd",
                (char *)"--name=default",
                (char *)"--data-dir",
                data,
                (char *)"--listen-client-urls",
                client,
                (char *)"--advertise-client-urls",
                client,
                (char *)"--listen-peer-urls",
                peer,
                (char *)"--initial-advertise-peer-urls",
                peer,
                (char *)"--initial-cluster",
                cluster,
                (char *)"--log-level=warn",
                NULL,
        };
        return sbx_test_spawn(argv, log);
}

static int etcd_wait_ready(SbxTestEtcd *e)
{
        const char *const args[] = { "endpoint", "health", NULL };
        usec_t deadline = sbx_now_monotonic() + 15 * USEC_PER_SEC;

        if (sbx_test_wait_port(e->client_port, 15 * USEC_PER_SEC) < 0)
                return -ETIMEDOUT;
        while (sbx_now_monotonic() < deadline) {
                if (sbx_test_etcdctl(e, args) == 0)
                        return 0;
                usleep(50000);
        }
        return -ETIMEDOUT;
}

SbxTestEtcd *sbx_test_etcd_start(void)
{
        SbxTestEtcd *e = new0(SbxTestEtcd, 1);

        if (!e)
                return NULL;
        for (int attempt = 0; attempt < 3; attempt++) {
                e->dir = sbx_test_tempdir("sbx-etcd");
                e->client_port = sbx_test_free_port();
                e->peer_port = sbx_test_free_port();
                snprintf(e->endpoint, sizeof(e->endpoint), "127.0.0.1:%d", e->client_port);
                e->pid = etcd_spawn(e);
                if (e->pid > 0 && etcd_wait_ready(e) == 0)
                        return e;
                fprintf(stderr, "etcd did not start on port %d (attempt %d); see %s/etcd.log\n",
                        e->client_port, attempt + 1, e->dir);
                if (e->pid > 0)
                        sbx_test_stop(e->pid, SIGKILL, USEC_PER_SEC);
                sbx_test_rmrf(e->dir);
                free(e->dir);
        }
        free(e);
        return NULL;
}

void sbx_test_etcd_halt(SbxTestEtcd *e, int sig)
{
        if (e->pid > 0)
                sbx_test_stop(e->pid, sig, 5 * USEC_PER_SEC);
        e->pid = 0;
}

int sbx_test_etcd_restart(SbxTestEtcd *e)
{
        e->pid = etcd_spawn(e);
        if (e->pid < 0)
                return e->pid;
        return etcd_wait_ready(e);
}

void sbx_test_etcd_stop(SbxTestEtcd *e)
{
        if (!e)
                return;
        sbx_test_etcd_halt(e, SIGTERM);
        sbx_test_rmrf(e->dir);
        free(e->dir);
        free(e);
}

int sbx_test_etcdctl(SbxTestEtcd *e, const char *const *args)
{
        char endpoints[96];
        char *argv[32];
        size_t n = 0;
        int status;
        pid_t pid;

        snprintf(endpoints, sizeof(endpoints), "--endpoints=%s", e->endpoint);
        argv[n++] = (char *)"etcdctl";
        argv[n++] = endpoints;
        argv[n++] = (char *)"--command-timeout=2s";
        for (size_t i = 0; args[i] && n < ELEMENTSOF(argv) - 1; i++)
                argv[n++] = (char *)args[i];
        argv[n] = NULL;

        setenv("ETCDCTL_API", "3", 1);
        pid = sbx_test_spawn(argv, "/dev/null");
        if (pid < 0)
                return pid;
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

const char *sbx_test_srcdir(void)
{
        static char dir[4096];
        const char *env = getenv("SBX_SRCDIR");

        if (env)
                return env;
        if (!dir[0] && !getcwd(dir, sizeof(dir)))
                snprintf(dir, sizeof(dir), ".");
        return dir;
}

char *sbx_test_make_certs(void)
{
        char script[4200];
        char *dir = sbx_test_tempdir("sbx-certs");
        int status;

        if (!dir)
                return NULL;
        snprintf(script, sizeof(script), "%s/tests/lib/make-test-certs", sbx_test_srcdir());
        char *const argv[] = { script, dir, NULL };
        pid_t pid = sbx_test_spawn(argv, "/dev/null");
        if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "tests/lib/make-test-certs failed\n");
                sbx_test_rmrf(dir);
                free(dir);
                return NULL;
        }
        return dir;
}
