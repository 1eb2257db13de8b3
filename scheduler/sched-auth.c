/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authentication: bearer tokens are looked up by their SHA-256 in the mirror of
 * /sbx/v1/tokens/, so a check costs a hash and a map lookup. The token itself is never stored.
 * The bootstrap admin token comes from a file, created with a fresh token when missing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base/fd-util.h"
#include "common/base/string-util.h"
#include "common/crypto/crypto.h"
#include "common/log/log.h"
#include "common/store/store.h"
#include "scheduler/sched.h"

#define TOKEN_MAX 512

void sched_token_hash(const char *token, char out[65])
{
        sbx_sha256_hex(token, strlen(token), out);
}

int sched_auth(Scheduler *s, SbxRpcServerCall *call, bool need_admin, SchedCaller *ret)
{
        const char *token = sbx_rpc_server_call_bearer_token(call);
        char hash[65];

        if (!sched_state_ready(s->state))
                return sbx_rpc_server_call_fail(
                               call, SBX_STATUS_UNAVAILABLE,
                               "The scheduler is still reading cluster state; retry shortly"),
                       -SBX_E_UNAVAILABLE;
        if (!token)
                return sbx_rpc_server_call_fail(
                               call, SBX_STATUS_UNAUTHENTICATED,
                               "Missing credentials: send \"authorization: Bearer <token>\""),
                       -SBX_E_UNAUTHENTICATED;
        if (strlen(token) > TOKEN_MAX)
                return sbx_rpc_server_call_fail(call, SBX_STATUS_UNAUTHENTICATED, "Invalid token"),
                       -SBX_E_UNAUTHENTICATED;
        sched_token_hash(token, hash);
        const Sbx__V1__TokenRecord *t = sched_state_token(s->state, hash);
        if (!t)
                return sbx_rpc_server_call_fail(call, SBX_STATUS_UNAUTHENTICATED,
                                                "Invalid or revoked token"),
                       -SBX_E_UNAUTHENTICATED;

        SchedCaller c = { .admin = t->role == SBX__V1__ROLE__ROLE_ADMIN };
        if (need_admin && !c.admin)
                return sbx_rpc_server_call_fail(call, SBX_STATUS_PERMISSION_DENIED,
                                                "This call needs an admin token"),
                       -SBX_E_PERMISSION_DENIED;
        if (!need_admin) {
                if (c.admin || !t->org || !*t->org)
                        return sbx_rpc_server_call_fail(call, SBX_STATUS_PERMISSION_DENIED,
                                                        "Admin tokens cannot manage sandboxes; use an "
                                                        "organization's token"),
                               -SBX_E_PERMISSION_DENIED;
                snprintf(c.org, sizeof(c.org), "%s", t->org);
        }
        *ret = c;
        return 0;
}

/* ---- bootstrap ---- */

typedef struct Bootstrap {
        Scheduler *s;
        void (*done)(Scheduler *s, int error);
} Bootstrap;

static void bootstrap_done(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        Bootstrap *b = userdata;
        if (error >= 0 && r->succeeded)
                log_info("Registered the bootstrap admin token from %s", b->s->cfg.admin_token_file);
        else if (error >= 0)
                log_debug("The cluster was bootstrapped before; %s is not registered again",
                          b->s->cfg.admin_token_file);
        b->done(b->s, error);
        free(b);
}

static int read_or_create_token(const char *path, char **ret)
{
        _cleanup_free_ char *t = NULL;
        size_t n;
        int r;

        r = sbx_read_file(path, 4096, &t, &n);
        if (r == -ENOENT) {
                r = sbx_random_token("sbxadm_", 30, &t);
                if (r < 0)
                        return r;
                _cleanup_free_ char *line = NULL;
                if (asprintf(&line, "%s\n", t) < 0)
                        return -ENOMEM;
                r = sbx_write_file_atomic(path, line, strlen(line), 0600);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(t);
                return 0;
        }
        if (r < 0)
                return r;
        while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
                t[--n] = '\0';
        if (n < 16)
                return -EINVAL;
        *ret = TAKE_PTR(t);
        return 0;
}

int sched_auth_bootstrap(Scheduler *s, void (*done)(Scheduler *s, int error), void *unused)
{
        _cleanup_free_ char *token = NULL, *key = NULL;
        _cleanup_free_ uint8_t *value = NULL;
        Sbx__V1__TokenRecord rec = SBX__V1__TOKEN_RECORD__INIT;
        char hash[65], id[32];
        SbxEtcdTxn *t;
        size_t n;
        int r;

        if (!s->cfg.admin_token_file) {
                done(s, 0);
                return 0;
        }
        r = read_or_create_token(s->cfg.admin_token_file, &token);
        if (r < 0)
                return log_error_errno(r, "Failed to read the admin token file %s: %m",
                                       s->cfg.admin_token_file);
        sched_token_hash(token, hash);
        snprintf(id, sizeof(id), "tok_%.12s", hash);
        rec.role = SBX__V1__ROLE__ROLE_ADMIN;
        rec.created_at_ms = sbx_now_ms();
        rec.description = (char *)"bootstrap admin token";
        rec.token_id = id;
        if ((r = sbx_key_new(&key, SBX_KEY_TOKENS "%s", hash)) < 0 ||
            (r = sbx_store_pack(&rec.base, &value, &n)) < 0 || (r = sbx_etcd_txn_new(&t)) < 0)
                return r;
        /* Only at the cluster's first start: a restart must not bring back a token an operator revoked.
         * The marker key records that bootstrapping happened. */
        sbx_etcd_txn_compare_create_revision(t, SBX_KEY_BOOTSTRAP, SBX_ETCD_EQUAL, 0);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, key, value, n, 0);
        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, SBX_KEY_BOOTSTRAP, "1", 1, 0);
        Bootstrap *b = calloc(1, sizeof(Bootstrap));
        if (!b) {
                sbx_etcd_txn_free(t);
                return -ENOMEM;
        }
        b->s = s;
        b->done = done;
        r = sbx_etcd_txn_commit(s->etcd, t, bootstrap_done, b);
        if (r < 0)
                free(b);
        return r;
}
