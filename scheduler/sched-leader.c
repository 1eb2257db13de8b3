/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leadership: every replica campaigns for /sbx/v1/leader with a lease of its own; the one holding
 * the key runs the reconciler. A replica whose lease is lost stops leading at once and campaigns
 * again with a new lease.
 */
#include <errno.h>
#include <stdlib.h>

#include "common/log/log.h"
#include "common/store/store.h"
#include "scheduler/sched.h"

static void leader_campaign(Scheduler *s);

static void on_elected(SbxEtcdElection *el, void *userdata)
{
        Scheduler *s = userdata;
        log_info("This replica (%s) is now the leader", s->identity);
        sbx_gauge_set(s->m.leader, NULL, 1);
        sbx_counter_inc(s->m.leader_changes, NULL);
        sched_reconciler_set_leader(s->reconciler, true);
}

static void on_demoted(SbxEtcdElection *el, void *userdata)
{
        Scheduler *s = userdata;
        log_warning("This replica (%s) is no longer the leader", s->identity);
        sbx_gauge_set(s->m.leader, NULL, 0);
        sched_reconciler_set_leader(s->reconciler, false);
}

static void on_leader(SbxEtcdElection *el, const char *value, void *userdata)
{
        log_debug("Leader is now %s", value ? value : "(none)");
}

static const SbxEtcdElectionCallbacks election_cbs = {
        .on_elected = on_elected,
        .on_demoted = on_demoted,
        .on_leader = on_leader,
};

static void retry_campaign(uv_timer_t *t)
{
        leader_campaign(t->data);
}

static void schedule_retry(Scheduler *s)
{
        if (!s->leader_retry_init) {
                uv_timer_init(s->loop, &s->leader_retry);
                s->leader_retry.data = s;
                s->leader_retry_init = true;
        }
        if (!s->stopping)
                uv_timer_start(&s->leader_retry, retry_campaign, 1000, 0);
}

static void lease_lost(SbxEtcdLease *l, void *userdata)
{
        Scheduler *s = userdata;
        log_warning("Lost the leader-election lease; campaigning again");
        if (sbx_etcd_election_is_leader(s->election))
                on_demoted(s->election, s);
        s->election = sbx_etcd_election_free(s->election);
        s->lease = sbx_etcd_lease_free(s->lease);
        schedule_retry(s);
}

static void lease_granted(SbxEtcdLease *l, int error, void *userdata)
{
        Scheduler *s = userdata;

        if (error < 0) {
                log_debug("Could not get a lease for the leader election: %s; retrying",
                          sbx_error_message(error));
                s->lease = sbx_etcd_lease_free(s->lease);
                schedule_retry(s);
                return;
        }
        if (sbx_etcd_election_new(s->etcd, SBX_KEY_LEADER, s->identity, s->lease, &election_cbs, s,
                                  &s->election) < 0 ||
            sbx_etcd_election_campaign(s->election) < 0) {
                s->election = sbx_etcd_election_free(s->election);
                s->lease = sbx_etcd_lease_free(s->lease);
                schedule_retry(s);
        }
}

static void leader_campaign(Scheduler *s)
{
        static const SbxEtcdLeaseCallbacks cbs = { .on_granted = lease_granted, .on_lost = lease_lost };
        int64_t ttl = (int64_t)(s->cfg.leader_lease_ttl / USEC_PER_SEC);

        if (s->stopping || s->lease)
                return;
        if (sbx_etcd_lease_grant(s->etcd, ttl < 2 ? 2 : ttl, &cbs, s, &s->lease) < 0) {
                s->lease = NULL;
                schedule_retry(s);
        }
}

void sched_leader_start(Scheduler *s)
{
        leader_campaign(s);
}

void sched_leader_stop(Scheduler *s)
{
        if (s->leader_retry_init) {
                uv_close((uv_handle_t *)&s->leader_retry, NULL);
                s->leader_retry_init = false;
        }
        if (s->election) {
                if (sbx_etcd_election_is_leader(s->election))
                        sched_reconciler_set_leader(s->reconciler, false);
                /* Resigning hands over at once instead of after the lease TTL. */
                sbx_etcd_election_resign(s->election);
        }
}

void sched_leader_free(Scheduler *s)
{
        s->election = sbx_etcd_election_free(s->election);
        if (s->lease) {
                sbx_etcd_lease_revoke(s->lease, NULL, NULL);
                s->lease = NULL;
        }
}
