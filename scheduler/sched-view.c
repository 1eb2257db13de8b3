/* SPDX-License-Identifier: Apache-2.0 */
/* What callers see of a sandbox: the API message built from record, status and node. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/buffer.h"
#include "common/base/string-util.h"
#include "common/store/store.h"
#include "common/token/token.h"
#include "scheduler/sched.h"

/* Access tokens outlive any possible stop time by this much (clock skew, last calls). */
#define TOKEN_SLACK_MS (10 * 60 * 1000LL)

void sched_view_sandbox(Scheduler *s, const SchedSandbox *sb, Sbx__V1__Sandbox *out)
{
        const Sbx__V1__SandboxRecord *r = sb->record;
        const Sbx__V1__SandboxStatus *st = sb->status;

        sbx__v1__sandbox__init(out);
        out->id = sb->id;
        out->state = sched_sandbox_state(sb);
        if (!r)
                return;
        out->org = r->org;
        out->region = r->spec ? r->spec->region : (char *)"";
        out->node = r->node;
        out->spec = r->spec;
        out->created_at_ms = r->created_at_ms;
        out->stop_at_ms = r->stop_at_ms;
        out->ended_at_ms = r->ended_at_ms;
        if (st && st->reason && *st->reason)
                out->reason = st->reason;
        else if (r->stop_reason && *r->stop_reason)
                out->reason = r->stop_reason;
        if (st)
                out->boot_duration_ms = st->boot_duration_us / 1000;
        SchedNode *n = r->node ? sched_state_node(s->state, r->node) : NULL;
        if (n && n->node)
                out->data_address = n->node->data_address;
}

int sched_access_token(Scheduler *s, const SchedSandbox *sb, char **ret)
{
        const Sbx__V1__SandboxRecord *r = sb->record;
        SchedOrg *o = r ? sched_state_org(s->state, r->org) : NULL;
        int64_t max_life = o && o->org ? (int64_t)o->org->max_lifetime_ms : 24 * 3600 * 1000LL;

        if (!r)
                return -ENOENT;
        return sbx_token_mint(&s->key, sb->id, r->org, r->created_at_ms + max_life + TOKEN_SLACK_MS, ret);
}

char *sched_known_regions(Scheduler *s)
{
        _cleanup_strv_free_ char **regions = sched_state_regions(s->state);
        char *out = NULL;

        if (!regions || strv_join(regions, ", ", &out) < 0)
                return NULL;
        return out;
}

bool sched_region_known(const char *region, void *userdata)
{
        Scheduler *s = userdata;
        SchedNode *const *nodes;
        return sched_state_region_nodes(s->state, region, &nodes) > 0;
}
