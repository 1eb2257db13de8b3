/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's egress CA. Its certificate is installed in every guest's trust store at boot, so that
 * the proxy can terminate TLS toward hosts that carry secrets with a certificate minted for the
 * server name the guest asked for. The key never leaves the agent's state directory (mode 0600) and
 * memory; it survives agent restarts so that running guests keep trusting the proxy.
 *
 * Leaf certificates share one key and are cached per server name for their life (7 days).
 */
#include <errno.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/egress.h"
#include "common/base/fd-util.h"
#include "common/log/log.h"

#define LEAF_DAYS 7

typedef struct Minted {
        SSL_CTX *ctx;
        time_t expires;
} Minted;

static EVP_PKEY *leaf_key;

static EVP_PKEY *new_key(void)
{
        return EVP_EC_gen("P-256");
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
        if (!ext)
                return -EINVAL;
        int ok = X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
        return ok ? 0 : -ENOMEM;
}

static X509 *new_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, long days)
{
        X509 *c = X509_new();
        uint8_t serial[16];
        BIGNUM *bn = NULL;

        if (!c)
                return NULL;
        RAND_bytes(serial, sizeof(serial));
        serial[0] &= 0x7f;
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        X509_set_version(c, 2);
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
        BN_free(bn);
        /* An hour of slack for clocks that are a little behind (a restored guest's, say). */
        X509_gmtime_adj(X509_getm_notBefore(c), -3600);
        X509_gmtime_adj(X509_getm_notAfter(c), days * 86400);
        X509_set_pubkey(c, key);
        X509_NAME *name = X509_get_subject_name(c);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
        X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
        if (!X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256())) {
                X509_free(c);
                return NULL;
        }
        return c;
}

static int generate_ca(Egress *e, const char *key_path, const char *cert_path)
{
        char cn[128];
        snprintf(cn, sizeof(cn), "sbx egress CA (node %s)", e->a->cfg.name);
        e->ca_key = new_key();
        if (!e->ca_key)
                return -ENOMEM;
        /* Extensions go on before signing: build, extend, then sign again. */
        X509 *c = new_cert(cn, e->ca_key, NULL, NULL, 3650);
        if (!c || add_ext(c, NULL, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
            add_ext(c, NULL, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
            add_ext(c, c, NID_subject_key_identifier, "hash") < 0 ||
            !X509_sign(c, e->ca_key, EVP_sha256())) {
                X509_free(c);
                return -EIO;
        }
        e->ca_cert = c;

        /* The key first, with its mode set before any byte is written. */
        FILE *f = fopen(key_path, "wxe");
        if (!f)
                return -errno;
        fchmod(fileno(f), 0600);
        int ok = PEM_write_PrivateKey(f, e->ca_key, NULL, NULL, 0, NULL, NULL);
        if (fclose(f) != 0 || !ok)
                return -EIO;
        f = fopen(cert_path, "we");
        if (!f)
                return -errno;
        ok = PEM_write_X509(f, e->ca_cert);
        return fclose(f) == 0 && ok ? 0 : -EIO;
}

static int load_ca(Egress *e, const char *key_path, const char *cert_path)
{
        FILE *k = fopen(key_path, "re"), *c = fopen(cert_path, "re");
        struct stat st;
        int r = 0;

        if (!k || !c)
                r = -errno;
        else if (fstat(fileno(k), &st) < 0 || (st.st_mode & 077))
                r = -EPERM;
        else {
                e->ca_key = PEM_read_PrivateKey(k, NULL, NULL, NULL);
                e->ca_cert = PEM_read_X509(c, NULL, NULL, NULL);
                if (!e->ca_key || !e->ca_cert || X509_cmp_current_time(X509_get0_notAfter(e->ca_cert)) <= 0)
                        r = -EINVAL;
        }
        if (k)
                fclose(k);
        if (c)
                fclose(c);
        return r;
}

int egress_ca_init(Egress *e)
{
        char key_path[600], cert_path[600];
        int r;

        snprintf(key_path, sizeof(key_path), "%s/egress-ca.key", e->a->cfg.state_dir);
        snprintf(cert_path, sizeof(cert_path), "%s/egress-ca.pem", e->a->cfg.state_dir);
        r = load_ca(e, key_path, cert_path);
        if (r < 0) {
                if (r != -ENOENT)
                        log_warning_errno(r, "The egress CA in %s cannot be used (%m); making a new one",
                                          key_path);
                EVP_PKEY_free(e->ca_key);
                X509_free(e->ca_cert);
                e->ca_key = NULL;
                e->ca_cert = NULL;
                unlink(key_path);
                unlink(cert_path);
                if ((r = generate_ca(e, key_path, cert_path)) < 0)
                        return log_error_errno(r, "Failed to create the egress CA in %s: %m", key_path);
        }
        BIO *b = BIO_new(BIO_s_mem());
        char *p;
        if (!b || !PEM_write_bio_X509(b, e->ca_cert)) {
                BIO_free(b);
                return -ENOMEM;
        }
        long n = BIO_get_mem_data(b, &p);
        e->ca_pem = strndup(p, (size_t)n);
        BIO_free(b);
        leaf_key = new_key();
        if (!e->ca_pem || !leaf_key || sbx_hashmap_new(&e->minted) < 0)
                return -ENOMEM;

        /* The context that verifies upstream servers of intercepted connections. */
        e->upstream_ctx = SSL_CTX_new(TLS_client_method());
        if (!e->upstream_ctx)
                return -ENOMEM;
        SSL_CTX_set_min_proto_version(e->upstream_ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(e->upstream_ctx, SSL_VERIFY_PEER, NULL);
        if (e->a->cfg.egress_upstream_ca) {
                if (SSL_CTX_load_verify_locations(e->upstream_ctx, e->a->cfg.egress_upstream_ca, NULL) != 1)
                        return log_error_errno(-EINVAL, "egress-upstream-ca: cannot load %s",
                                               e->a->cfg.egress_upstream_ca);
        } else if (SSL_CTX_set_default_verify_paths(e->upstream_ctx) != 1) {
                return log_error_errno(-EIO, "Failed to load the system trust store");
        }
        return 0;
}

static void minted_free(void *v)
{
        Minted *m = v;
        SSL_CTX_free(m->ctx);
        free(m);
}

void egress_ca_fini(Egress *e)
{
        sbx_hashmap_free(e->minted, minted_free);
        e->minted = NULL;
        SSL_CTX_free(e->upstream_ctx);
        e->upstream_ctx = NULL;
        EVP_PKEY_free(e->ca_key);
        X509_free(e->ca_cert);
        EVP_PKEY_free(leaf_key);
        leaf_key = NULL;
        e->ca_key = NULL;
        e->ca_cert = NULL;
        free(e->ca_pem);
        e->ca_pem = NULL;
}

SSL_CTX *egress_ca_server_ctx(Egress *e, const char *host)
{
        Minted *m = sbx_hashmap_get(e->minted, host);
        char san[300];

        if (m && m->expires > time(NULL) + 3600)
                return m->ctx;
        if (m) {
                sbx_hashmap_remove(e->minted, host);
                minted_free(m);
        }
        X509 *c = new_cert(host, leaf_key, e->ca_cert, e->ca_key, LEAF_DAYS);
        snprintf(san, sizeof(san), "DNS:%s", host);
        if (!c || add_ext(c, e->ca_cert, NID_subject_alt_name, san) < 0 ||
            add_ext(c, e->ca_cert, NID_ext_key_usage, "serverAuth") < 0 ||
            add_ext(c, e->ca_cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
            !X509_sign(c, e->ca_key, EVP_sha256())) {
                X509_free(c);
                return NULL;
        }
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        m = calloc(1, sizeof(*m));
        if (!ctx || !m || SSL_CTX_use_certificate(ctx, c) != 1 ||
            SSL_CTX_use_PrivateKey(ctx, leaf_key) != 1 || sbx_hashmap_put(e->minted, host, m, NULL) < 0) {
                X509_free(c);
                SSL_CTX_free(ctx);
                free(m);
                return NULL;
        }
        X509_free(c);
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        m->ctx = ctx;
        m->expires = time(NULL) + LEAF_DAYS * 86400;
        sbx_counter_inc(e->m.certs_minted, NULL);
        return ctx;
}
