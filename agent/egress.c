/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Egress as the rest of the agent sees it: set up once, a sandbox added before its VMM starts and
 * removed after it ends. The registry maps guest addresses to sandboxes for the forwarder and the
 * proxy; each sandbox's secrets are fetched sealed from etcd and opened here, into memory only.
 */
#include "agent/egress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/fd-util.h"
#include "common/base/string-util.h"
#include "common/log/log.h"
#include "common/store/store.h"

#define SWEEP_MS 5000

void egress_handle_closed(uv_handle_t *h)
{
        Egress *e = h->data;
        if (--e->closing == 0 && e->closed)
                e->closed(e);
}

static void collect(SbxMetrics *m, void *userdata)
{
        egress_nft_collect(userdata);
}

static int register_metrics(Egress *e)
{
        SbxMetrics *m = e->a->metrics;
        EgressMetrics *x = &e->m;
        int r;

        if ((r = sbx_metrics_counter(
                     m, "sbx_agent_egress_connections_total",
                     "Connections the egress proxy judged, by kind (http, https) and verdict.",
                     SBX_LABEL_NAMES("kind", "verdict"), &x->connections)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_agent_egress_denied_total",
                     "Egress proxy refusals, by reason (policy, blocked_address, no_server_name, "
                     "malformed, upstream).",
                     SBX_LABEL_NAMES("reason"), &x->denied)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_agent_egress_bytes_total",
                     "Bytes the egress proxy relayed, by direction (up: toward the internet).",
                     SBX_LABEL_NAMES("direction"), &x->bytes)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_agent_egress_preconnects_total",
                                     "Upstream connections the proxy opened at accept, before the request "
                                     "named its host, by result (used, unused: the name led elsewhere).",
                                     SBX_LABEL_NAMES("result"), &x->preconnects)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_agent_egress_interceptions_total",
                                     "HTTPS connections toward allowed hosts: substituted (intercepted, a "
                                     "secret was put in) or passed (spliced untouched).",
                                     SBX_LABEL_NAMES("result"), &x->interceptions)) < 0 ||
            (r = sbx_metrics_counter(
                     m, "sbx_agent_egress_certs_minted_total",
                     "Certificates the node's egress CA minted for intercepted server names.", NULL,
                     &x->certs_minted)) < 0 ||
            (r = sbx_metrics_counter(m, "sbx_agent_dns_queries_total",
                                     "DNS queries from sandboxes, by result (answered, refused: NXDOMAIN by "
                                     "policy, failed: upstream, malformed).",
                                     SBX_LABEL_NAMES("result"), &x->dns)) < 0 ||
            (r = sbx_metrics_gauge(
                     m, "sbx_agent_egress_dropped_packets",
                     "Packets nftables dropped for the sandboxes running now, by reason (spoofed "
                     "source, blocked range, denied by the allow-list).",
                     SBX_LABEL_NAMES("reason"), &x->nft_dropped)) < 0)
                return r;
        return sbx_metrics_add_collector(m, collect, e);
}

int egress_new(Agent *a, Egress **ret)
{
        Egress *e = calloc(1, sizeof(*e));
        int r;

        if (!e)
                return -ENOMEM;
        e->a = a;
        /* One table per agent, named after its node (nft identifiers take no '-'). */
        snprintf(e->table, sizeof(e->table), "sbx_%s", a->cfg.name);
        for (char *p = e->table; *p; p++)
                if (*p == '-')
                        *p = '_';
        if ((r = sbx_hashmap_new(&e->by_address)) < 0 || (r = register_metrics(e)) < 0)
                goto fail;
        /* Sandboxes reach the internet through this node: forwarding must be on in its namespace. */
        if ((r = sbx_write_string("/proc/sys/net/ipv4/ip_forward", "1")) < 0) {
                log_error_errno(r, "Failed to enable IPv4 forwarding: %m");
                goto fail;
        }
        if ((r = egress_ca_init(e)) < 0)
                goto fail;
        if ((r = egress_nft_init(e)) < 0) {
                log_error_errno(r, "Failed to set up the nftables table %s: %m", e->table);
                goto fail;
        }
        if ((r = egress_dns_start(e)) < 0 || (r = egress_proxy_start(e)) < 0)
                goto fail;
        uv_timer_init(a->loop, &e->sweep_timer);
        e->sweep_timer.data = e;
        *ret = e;
        return 0;
fail:
        egress_free(e, NULL, NULL);
        return r;
}

static void sweep(uv_timer_t *t);

static void all_closed(Egress *e)
{
        void (*done)(void *) = e->done;
        void *userdata = e->done_userdata;
        egress_ca_fini(e);
        sbx_hashmap_free(e->by_address, NULL);
        free(e);
        if (done)
                done(userdata);
}

void egress_free(Egress *e, void (*done)(void *userdata), void *userdata)
{
        if (!e) {
                if (done)
                        done(userdata);
                return;
        }
        egress_nft_fini(e);
        e->done = done;
        e->done_userdata = userdata;
        e->closed = all_closed;
        e->closing++; /* held until every close below has been issued */
        egress_dns_stop(e);
        egress_proxy_stop(e);
        if (e->sweep_timer.loop) {
                e->closing++;
                uv_close((uv_handle_t *)&e->sweep_timer, egress_handle_closed);
        }
        if (--e->closing == 0)
                all_closed(e);
}

const char *egress_ca_pem(const Egress *e)
{
        return e ? e->ca_pem : NULL;
}

EgressSandbox *egress_sandbox_by_address(Egress *e, const struct in_addr *guest)
{
        char key[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, guest, key, sizeof(key));
        return sbx_hashmap_get(e->by_address, key);
}

/* ---- secrets ---- */

static void secrets_fetched(int error, const Etcdserverpb__RangeResponse *r, void *userdata)
{
        EgressSandbox *s = userdata;
        Sbx__V1__SealedSecrets *sealed = NULL;
        Sbx__V1__SecretValues *values = NULL;
        uint8_t key[32], *plain = NULL;
        size_t plain_len = 0;
        int rr = error;

        if (s->removed)
                goto done;
        if (rr >= 0 && r->n_kvs != 1)
                rr = -ENOENT;
        if (rr >= 0)
                rr = sbx_store_unpack(&sbx__v1__sealed_secrets__descriptor, r->kvs[0]->value.data,
                                      r->kvs[0]->value.len, (ProtobufCMessage **)&sealed);
        if (rr >= 0 &&
            (sealed->nonce.len != SBX_AEAD_NONCE_LEN || strcmp(sealed->key_id, s->e->a->key.id) != 0))
                rr = -EKEYREJECTED;
        if (rr >= 0 && (rr = sbx_hkdf_sha256(s->e->a->key.key, sizeof(s->e->a->key.key), "sbx secrets v1",
                                             key, sizeof(key))) >= 0) {
                rr = sbx_aead_open(key, s->id, strlen(s->id), sealed->nonce.data, sealed->ciphertext.data,
                                   sealed->ciphertext.len, &plain, &plain_len);
                sbx_secure_zero(key, sizeof(key));
        }
        if (rr >= 0)
                rr = sbx_store_unpack(&sbx__v1__secret_values__descriptor, plain, plain_len,
                                      (ProtobufCMessage **)&values);
        for (size_t i = 0; rr >= 0 && i < values->n_values; i++)
                for (size_t j = 0; j < s->policy->n_secrets; j++)
                        if (streq(values->values[i]->name, s->policy->secrets[j].name) &&
                            !s->policy->secrets[j].value)
                                s->policy->secrets[j].value = strdup(values->values[i]->value);
        for (size_t j = 0; rr >= 0 && j < s->policy->n_secrets; j++)
                if (!s->policy->secrets[j].value)
                        rr = -ENOENT;
        if (values) {
                for (size_t i = 0; i < values->n_values; i++)
                        if (values->values[i]->value)
                                sbx_secure_zero(values->values[i]->value, strlen(values->values[i]->value));
                protobuf_c_message_free_unpacked(&values->base, NULL);
        }
        if (plain) {
                sbx_secure_zero(plain, plain_len);
                free(plain);
        }
        if (sealed)
                protobuf_c_message_free_unpacked(&sealed->base, NULL);
        /* Never the value, never the cause in detail toward the guest: the agent's log has it. */
        if (rr < 0)
                log_error_errno(rr, "Failed to open the secrets of sandbox %s: %m", s->id);
        else
                s->ready = true;
        s->ready_cb(rr, s->ready_userdata);
done:
        egress_sandbox_unref(s);
}

/* ---- sandboxes ---- */

static void learned_free(void *v)
{
        free(v);
}

void egress_sandbox_unref(EgressSandbox *s)
{
        if (!s || --s->refs > 0)
                return;
        egress_policy_free(s->policy);
        sbx_hashmap_free(s->learned, learned_free);
        free(s);
}

typedef struct ReadyLater {
        uv_timer_t t;
        EgressSandbox *s;
} ReadyLater;

static void ready_later_closed(uv_handle_t *h)
{
        free(h->data);
}

static void ready_later(uv_timer_t *t)
{
        ReadyLater *l = t->data;
        if (!l->s->removed)
                l->s->ready_cb(0, l->s->ready_userdata);
        egress_sandbox_unref(l->s);
        uv_close((uv_handle_t *)t, ready_later_closed);
}

int egress_sandbox_add(Egress *e, const char *id, const AgentNet *net, const Sbx__V1__SandboxSpec *spec,
                       void (*ready)(int error, void *userdata), void *userdata, EgressSandbox **ret)
{
        EgressSandbox *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->e = e;
        s->refs = 1;
        snprintf(s->id, sizeof(s->id), "%s", id);
        s->slot = net->slot;
        snprintf(s->tap, sizeof(s->tap), "%s", net->tap);
        s->ready_cb = ready;
        s->ready_userdata = userdata;
        if (inet_pton(AF_INET, net->guest_ip, &s->guest) != 1)
                r = -EINVAL;
        else if ((r = egress_policy_new(spec, &s->policy)) >= 0 && (r = sbx_hashmap_new(&s->learned)) >= 0)
                r = egress_nft_sandbox_add(e, s);
        if (r < 0) {
                egress_sandbox_unref(s);
                return r;
        }
        if ((r = sbx_hashmap_put(e->by_address, net->guest_ip, s, NULL)) < 0) {
                egress_nft_sandbox_remove(e, s);
                egress_sandbox_unref(s);
                return r;
        }
        if (!uv_is_active((uv_handle_t *)&e->sweep_timer))
                uv_timer_start(&e->sweep_timer, sweep, SWEEP_MS, SWEEP_MS);

        s->refs++;
        if (s->policy->n_secrets > 0) {
                char key[256];
                snprintf(key, sizeof(key), SBX_KEY_SECRETS "%s", id);
                if ((r = sbx_etcd_get(e->a->etcd, key, secrets_fetched, s)) < 0) {
                        s->refs--;
                        egress_sandbox_remove(s);
                        return r;
                }
        } else {
                /* Nothing to fetch; still answer later, never from inside this call. */
                ReadyLater *l = calloc(1, sizeof(*l));
                if (!l) {
                        s->refs--;
                        egress_sandbox_remove(s);
                        return -ENOMEM;
                }
                s->ready = true;
                l->s = s;
                uv_timer_init(e->a->loop, &l->t);
                l->t.data = l;
                uv_timer_start(&l->t, ready_later, 0, 0);
        }
        *ret = s;
        return 0;
}

void egress_sandbox_remove(EgressSandbox *s)
{
        char key[INET_ADDRSTRLEN];
        if (!s || s->removed)
                return;
        s->removed = true;
        inet_ntop(AF_INET, &s->guest, key, sizeof(key));
        if (sbx_hashmap_get(s->e->by_address, key) == s)
                sbx_hashmap_remove(s->e->by_address, key);
        egress_nft_sandbox_remove(s->e, s);
        /* The values leave memory now, even if a connection still holds the sandbox. */
        for (size_t i = 0; i < s->policy->n_secrets; i++)
                if (s->policy->secrets[i].value) {
                        sbx_secure_zero(s->policy->secrets[i].value, strlen(s->policy->secrets[i].value));
                        free(s->policy->secrets[i].value);
                        s->policy->secrets[i].value = NULL;
                }
        egress_sandbox_unref(s);
}

/* Addresses DNS taught a sandbox lapse when their answers' TTLs (plus a grace) have passed. */
static void sweep(uv_timer_t *t)
{
        Egress *e = t->data;
        size_t state = 0;
        void *v;
        int64_t now = sbx_now_ms();

        while (sbx_hashmap_next(e->by_address, &state, NULL, &v)) {
                EgressSandbox *s = v;
                size_t st2 = 0;
                const char *k;
                void *until;
                char **gone = NULL;
                while (sbx_hashmap_next(s->learned, &st2, &k, &until))
                        if (*(int64_t *)until < now)
                                strv_extend(&gone, k);
                STRV_FOREACH (g, gone) {
                        free(sbx_hashmap_remove(s->learned, *g));
                        (void)egress_nft_disallow(e, s, *g);
                }
                strv_free(gone);
        }
        if (sbx_hashmap_size(e->by_address) == 0)
                uv_timer_stop(t);
}
