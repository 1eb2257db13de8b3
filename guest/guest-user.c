/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Users and groups, read straight from /etc/passwd and /etc/group with fgetpwent/fgetgrent. The
 * NSS functions (getpwnam, initgroups) would dlopen the image's NSS modules into a static PID 1 and
 * into every child before exec: slower, and dependent on the image's glibc matching ours.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#include "common/base/parse.h"
#include "common/base/string-util.h"
#include "guest/guest.h"

static void add_groups(GuestUser *u)
{
        FILE *f = fopen("/etc/group", "re");
        struct group *g;

        u->n_groups = 0;
        if (!f)
                return;
        while ((g = fgetgrent(f)) && u->n_groups < ELEMENTSOF(u->groups)) {
                if (g->gr_gid == u->gid)
                        continue;
                for (char **m = g->gr_mem; m && *m; m++)
                        if (streq(*m, u->name)) {
                                u->groups[u->n_groups++] = g->gr_gid;
                                break;
                        }
        }
        fclose(f);
}

int guest_user_find(const char *name, GuestUser *ret)
{
        uint32_t n;
        bool numeric = sbx_parse_uint32(name, &n) >= 0;
        FILE *f = fopen("/etc/passwd", "re");
        struct passwd *pw;
        int r = -ESRCH;

        *ret = (GuestUser){ 0 };
        while (f && (pw = fgetpwent(f))) {
                if (numeric ? pw->pw_uid != n : !streq(pw->pw_name, name))
                        continue;
                if (strlen(pw->pw_name) >= sizeof(ret->name) || strlen(pw->pw_dir) >= sizeof(ret->home)) {
                        r = -ENAMETOOLONG;
                        break;
                }
                ret->uid = pw->pw_uid;
                ret->gid = pw->pw_gid;
                strcpy(ret->name, pw->pw_name);
                strcpy(ret->home, pw->pw_dir);
                r = 0;
                break;
        }
        if (f)
                fclose(f);
        if (r == -ESRCH && numeric) {
                /* A uid without an entry is still a uid: run as it, in its own group, from /. */
                ret->uid = n;
                ret->gid = n;
                snprintf(ret->name, sizeof(ret->name), "%u", n);
                strcpy(ret->home, "/");
                return 0;
        }
        if (r == 0)
                add_groups(ret);
        return r;
}
