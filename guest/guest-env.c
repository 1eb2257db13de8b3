/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox environment: variables applied to every process spawned later (the Config's
 * defaults, secret placeholders, then what envSet adds), and the default user processes run as.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/hashmap.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "guest/guest.h"

static SbxHashmap *env;
static GuestUser user = { .name = "root", .home = "/root" };

static int env_set(const char *k, const char *v)
{
        char *copy = strdup(v);
        void *old = NULL;
        if (!copy)
                return -ENOMEM;
        int r = sbx_hashmap_put(env, k, copy, &old);
        if (r < 0) {
                free(copy);
                return r;
        }
        free(old);
        return 0;
}

int guest_env_init(const Sbx__V1__Guest__Config *c)
{
        int r = sbx_hashmap_new(&env);
        if (r < 0)
                return r;
        if (!isempty(c->user)) {
                GuestUser u;
                if (guest_user_find(c->user, &u) >= 0)
                        user = u;
                else
                        log_warning("Default user %s does not exist in the image; processes run as root",
                                    c->user);
        }
        env_set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        env_set("HOME", user.home);
        env_set("USER", user.name);
        env_set("LOGNAME", user.name);
        env_set("SHELL", "/bin/bash");
        env_set("LANG", "C.UTF-8");
        env_set("TERM", "xterm-256color");
        for (size_t i = 0; i < c->n_env; i++)
                env_set(c->env[i]->key, c->env[i]->value);
        /* Relative paths of the file API resolve against the default user's home. */
        if (chdir(user.home) < 0)
                (void)chdir("/");
        return 0;
}

const GuestUser *guest_default_user(void)
{
        return &user;
}

char **guest_env_build(Sbx__V1__Guest__Spawn__EnvEntry **extra, size_t n_extra, bool clear)
{
        SbxHashmap *m = NULL;
        size_t state = 0;
        const char *k;
        void *v;
        char **out = NULL;

        if (sbx_hashmap_new(&m) < 0)
                return NULL;
        if (!clear)
                while (sbx_hashmap_next(env, &state, &k, &v))
                        sbx_hashmap_put(m, k, v, NULL);
        for (size_t i = 0; i < n_extra; i++)
                if (extra[i]->key && *extra[i]->key && !strchr(extra[i]->key, '='))
                        sbx_hashmap_put(m, extra[i]->key, extra[i]->value ? extra[i]->value : (char *)"",
                                        NULL);
        out = calloc(sbx_hashmap_size(m) + 1, sizeof(char *));
        if (out) {
                size_t n = 0;
                state = 0;
                while (sbx_hashmap_next(m, &state, &k, &v))
                        if (asprintf(&out[n], "%s=%s", k, (const char *)v) >= 0)
                                n++;
        }
        sbx_hashmap_free(m, NULL);
        return out;
}

static void reply(uint32_t stream, Sbx__V1__Guest__Result *res)
{
        Sbx__V1__Guest__GuestFrame f = SBX__V1__GUEST__GUEST_FRAME__INIT;
        f.stream = stream;
        f.body_case = SBX__V1__GUEST__GUEST_FRAME__BODY_RESULT;
        f.result = res;
        guest_send(&f);
}

void guest_env_handle(uint32_t stream, const Sbx__V1__Guest__EnvOp *op)
{
        Sbx__V1__Guest__Result res = SBX__V1__GUEST__RESULT__INIT;

        switch (op->op_case) {
        case SBX__V1__GUEST__ENV_OP__OP_GET: {
                Sbx__V1__EnvGetResponse g = SBX__V1__ENV_GET_RESPONSE__INIT;
                const char *v = sbx_hashmap_get(env, op->get);
                g.found = v != NULL;
                g.value = (char *)(v ? v : "");
                res.payload_case = SBX__V1__GUEST__RESULT__PAYLOAD_ENV_VALUE;
                res.env_value = &g;
                reply(stream, &res);
                return;
        }
        case SBX__V1__GUEST__ENV_OP__OP_SET:
                if (isempty(op->set->key) || strchr(op->set->key, '=')) {
                        guest_send_result(stream, -EINVAL, "key: \"%s\" is not a valid variable name",
                                          strempty(op->set->key));
                        return;
                }
                if (env_set(op->set->key, op->set->value ? op->set->value : "") < 0) {
                        guest_send_result(stream, -ENOMEM, "out of memory");
                        return;
                }
                guest_send_result(stream, 0, NULL);
                return;
        case SBX__V1__GUEST__ENV_OP__OP_DELETE:
                free(sbx_hashmap_remove(env, op->delete_));
                guest_send_result(stream, 0, NULL);
                return;
        case SBX__V1__GUEST__ENV_OP__OP_LIST: {
                Sbx__V1__EnvListResponse l = SBX__V1__ENV_LIST_RESPONSE__INIT;
                size_t n = sbx_hashmap_size(env), state = 0, i = 0;
                Sbx__V1__EnvListResponse__EnvEntry *entries = calloc(n + 1, sizeof(*entries));
                Sbx__V1__EnvListResponse__EnvEntry **ptrs = calloc(n + 1, sizeof(*ptrs));
                const char *k;
                void *v;
                if (!entries || !ptrs) {
                        free(entries);
                        free(ptrs);
                        guest_send_result(stream, -ENOMEM, "out of memory");
                        return;
                }
                while (sbx_hashmap_next(env, &state, &k, &v)) {
                        sbx__v1__env_list_response__env_entry__init(&entries[i]);
                        entries[i].key = (char *)k;
                        entries[i].value = v;
                        ptrs[i] = &entries[i];
                        i++;
                }
                l.env = ptrs;
                l.n_env = i;
                res.payload_case = SBX__V1__GUEST__RESULT__PAYLOAD_ENV;
                res.env = &l;
                reply(stream, &res);
                free(entries);
                free(ptrs);
                return;
        }
        default:
                guest_send_result(stream, -EINVAL, "unknown environment operation");
                return;
        }
}
