/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbx-jailer: confines one VMM, then becomes it. The agent starts every VMM through it:
 *
 *   sbx-jailer [--set FILE=VALUE]... [--join DIR]... [--chdir DIR] [--uid N --gid N [--groups G,...]]
 *              -- PROGRAM ARG...
 *
 * In this order it writes each VALUE to FILE (cgroup limits: memory.max, pids.max, ...), moves
 * itself into each cgroup DIR (writing its pid to DIR/cgroup.procs), changes directory, drops to
 * the unprivileged user and its groups, forbids gaining privileges again (no_new_privs), and execs
 * the program. Every step must succeed; otherwise it exits 111 with a message on stderr, and no
 * VMM runs unconfined. It keeps no state and is small on purpose (docs/jail.md).
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/base/fd-util.h"
#include "common/base/parse.h"
#include "common/base/string-util.h"

#define JAIL_FAIL 111

static void die(const char *what, const char *arg, int e)
{
        fprintf(stderr, "sbx-jailer: %s %s: %s\n", what, arg ? arg : "", strerror(e));
        _exit(JAIL_FAIL);
}

static void write_to(const char *path, const char *value)
{
        FILE *f = fopen(path, "we");
        if (!f)
                die("cannot open", path, errno);
        if (fputs(value, f) < 0 || fclose(f) != 0)
                die("cannot write", path, errno);
}

int main(int argc, char **argv)
{
        const char *chdir_to = NULL, *groups = NULL;
        uint32_t uid = 0, gid = 0;
        bool have_uid = false;
        int i;

        for (i = 1; i < argc && !streq(argv[i], "--"); i++) {
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!v)
                        die("missing value for", argv[i], EINVAL);
                if (streq(argv[i], "--set")) {
                        char *eq = strchr(v, '=');
                        if (!eq)
                                die("expected FILE=VALUE, got", v, EINVAL);
                        *eq = '\0';
                        write_to(v, eq + 1);
                } else if (streq(argv[i], "--join")) {
                        char procs[4200];
                        snprintf(procs, sizeof(procs), "%s/cgroup.procs", v);
                        write_to(procs, "0");
                } else if (streq(argv[i], "--chdir")) {
                        chdir_to = v;
                } else if (streq(argv[i], "--uid")) {
                        if (sbx_parse_uint32(v, &uid) < 0)
                                die("bad uid", v, EINVAL);
                        have_uid = true;
                } else if (streq(argv[i], "--gid")) {
                        if (sbx_parse_uint32(v, &gid) < 0)
                                die("bad gid", v, EINVAL);
                } else if (streq(argv[i], "--groups")) {
                        groups = v;
                } else {
                        die("unknown option", argv[i], EINVAL);
                }
                i++;
        }
        if (i + 1 >= argc)
                die("usage: sbx-jailer [OPTIONS] -- PROGRAM ARG...", NULL, EINVAL);

        if (chdir_to && chdir(chdir_to) < 0)
                die("cannot chdir to", chdir_to, errno);
        if (have_uid) {
                gid_t list[16];
                size_t n = 0;
                char *copy = groups ? strdup(groups) : NULL, *save = NULL;
                for (char *g = copy ? strtok_r(copy, ",", &save) : NULL; g && n < 16;
                     g = strtok_r(NULL, ",", &save)) {
                        uint32_t v;
                        if (sbx_parse_uint32(g, &v) < 0)
                                die("bad group", g, EINVAL);
                        list[n++] = v;
                }
                free(copy);
                if (setgroups(n, list) < 0)
                        die("setgroups", NULL, errno);
                if (setgid(gid) < 0)
                        die("setgid", NULL, errno);
                if (setuid(uid) < 0)
                        die("setuid", NULL, errno);
                if (uid != 0 && setuid(0) == 0)
                        die("could regain root", NULL, EPERM);
        }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                die("no_new_privs", NULL, errno);
        execvp(argv[i + 1], argv + i + 1);
        die("cannot execute", argv[i + 1], errno);
        return JAIL_FAIL;
}
