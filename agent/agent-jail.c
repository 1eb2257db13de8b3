/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jail of each VMM (docs/jail.md): its own cgroup with memory.max = guest memory + overhead and
 * a pids limit, its own directory, and an unprivileged user. cgroup v2 is used where it is mounted
 * with controllers; on hosts still on cgroup v1 the memory and pids hierarchies are used instead.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/base/fd-util.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/log/log.h"

static bool cgroup_v2(void)
{
        return access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
}

void agent_jail_cgroup_path(Agent *a, const char *id, char *out, size_t n)
{
        if (cgroup_v2())
                snprintf(out, n, "/sys/fs/cgroup/%s/%s", a->cgroup_root, id);
        else
                snprintf(out, n, "/sys/fs/cgroup/memory/%s/%s", a->cgroup_root, id);
}

static int ensure_dir(const char *path)
{
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static void enable_controllers(const char *dir)
{
        char p[512];
        snprintf(p, sizeof(p), "%s/cgroup.subtree_control", dir);
        FILE *f = fopen(p, "we");
        if (f) {
                fputs("+memory +pids", f);
                fclose(f);
        }
}

static int prepare(Agent *a, const char *id, char paths[2][700], size_t *n)
{
        char root[300];
        int r;

        *n = 0;
        if (cgroup_v2()) {
                enable_controllers("/sys/fs/cgroup");
                snprintf(root, sizeof(root), "/sys/fs/cgroup/%s", a->cgroup_root);
                if ((r = ensure_dir(root)) < 0)
                        return r;
                enable_controllers(root);
                snprintf(paths[(*n)++], 700, "%s/%s", root, id);
        } else {
                static const char *const hier[] = { "memory", "pids" };
                for (size_t i = 0; i < ELEMENTSOF(hier); i++) {
                        snprintf(root, sizeof(root), "/sys/fs/cgroup/%s/%s", hier[i], a->cgroup_root);
                        if ((r = ensure_dir(root)) < 0)
                                return r;
                        snprintf(paths[(*n)++], 700, "%s/%s", root, id);
                }
        }
        for (size_t i = 0; i < *n; i++)
                if ((r = ensure_dir(paths[i])) < 0)
                        return r;
        return 0;
}

int agent_jail_argv(Agent *a, const char *id, const char *dir, uid_t uid, uint64_t memory_bytes,
                    char *const *argv, char ***ret)
{
        char paths[2][700];
        char **out = NULL;
        size_t n;
        int r;

        r = prepare(a, id, paths, &n);
        if (r < 0)
                return r;

#define PUSH(s)                                       \
        do {                                          \
                if ((r = strv_extend(&out, (s))) < 0) \
                        goto fail;                    \
        } while (0)
#define PUSHF(...)                                    \
        do {                                          \
                _cleanup_free_ char *_b = NULL;       \
                if (asprintf(&_b, __VA_ARGS__) < 0) { \
                        r = -ENOMEM;                  \
                        goto fail;                    \
                }                                     \
                PUSH(_b);                             \
        } while (0)

        PUSH(a->jailer);
        if (cgroup_v2()) {
                PUSH("--set");
                PUSHF("%s/memory.max=%llu", paths[0], (unsigned long long)memory_bytes);
                _cleanup_free_ char *swap = NULL;
                if (asprintf(&swap, "%s/memory.swap.max", paths[0]) >= 0 && access(swap, F_OK) == 0) {
                        PUSH("--set");
                        PUSHF("%s=0", swap);
                }
                PUSH("--set");
                PUSHF("%s/pids.max=%u", paths[0], a->cfg.pids_max);
                PUSH("--join");
                PUSH(paths[0]);
        } else {
                PUSH("--set");
                PUSHF("%s/memory.limit_in_bytes=%llu", paths[0], (unsigned long long)memory_bytes);
                PUSH("--set");
                PUSHF("%s/pids.max=%u", paths[1], a->cfg.pids_max);
                PUSH("--join");
                PUSH(paths[0]);
                PUSH("--join");
                PUSH(paths[1]);
        }
        PUSH("--chdir");
        PUSH(dir);
        if (uid != 0) {
                PUSH("--uid");
                PUSHF("%u", (unsigned)uid);
                PUSH("--gid");
                PUSHF("%u", (unsigned)uid);
                if (a->kvm_gid != (gid_t)-1) {
                        PUSH("--groups");
                        PUSHF("%u", (unsigned)a->kvm_gid);
                }
        }
        PUSH("--");
        for (size_t i = 0; argv[i]; i++)
                PUSH(argv[i]);
#undef PUSH
#undef PUSHF
        *ret = out;
        return 0;
fail:
        strv_free(out);
        return r;
}

void agent_jail_remove(Agent *a, const char *id)
{
        char p[512];
        if (cgroup_v2()) {
                snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/%s", a->cgroup_root, id);
                rmdir(p);
                return;
        }
        snprintf(p, sizeof(p), "/sys/fs/cgroup/memory/%s/%s", a->cgroup_root, id);
        rmdir(p);
        snprintf(p, sizeof(p), "/sys/fs/cgroup/pids/%s/%s", a->cgroup_root, id);
        rmdir(p);
}

int agent_jail_memory_current(Agent *a, const char *id, uint64_t *ret_bytes)
{
        _cleanup_free_ char *text = NULL;
        char p[512];
        int r;

        if (cgroup_v2())
                snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/%s/memory.current", a->cgroup_root, id);
        else
                snprintf(p, sizeof(p), "/sys/fs/cgroup/memory/%s/%s/memory.usage_in_bytes", a->cgroup_root,
                         id);
        r = sbx_read_file(p, 64, &text, NULL);
        if (r < 0)
                return r;
        *ret_bytes = strtoull(text, NULL, 10);
        return 0;
}

void agent_jail_fini(Agent *a)
{
        /* The node's own cgroups, once every sandbox's is gone (rmdir refuses a non-empty one). */
        static const char *const roots[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/memory",
                                             "/sys/fs/cgroup/pids" };
        char p[512];
        for (size_t i = 0; i < ELEMENTSOF(roots); i++) {
                snprintf(p, sizeof(p), "%s/%s", roots[i], a->cgroup_root);
                (void)rmdir(p);
        }
}
