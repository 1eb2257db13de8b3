/* SPDX-License-Identifier: Apache-2.0 */
/* Messages, metadata, statuses, method tables and credentials: the pieces calls are made of. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/fd-util.h"
#include "common/base/string-util.h"
#include "common/rpc/rpc-internal.h"

/* PEM files are small; anything bigger is not a certificate. */
#define PEM_MAX (1024 * 1024)

int sbx__rpc_pack(const ProtobufCMessage *m, size_t max, grpc_byte_buffer **ret, size_t *ret_size)
{
        size_t n = protobuf_c_message_get_packed_size(m);

        if (max && n > max)
                return -EMSGSIZE;
        grpc_slice s = grpc_slice_malloc(n);
        protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
        *ret = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        if (ret_size)
                *ret_size = n;
        return 0;
}

int sbx__rpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb, ProtobufCMessage **ret)
{
        grpc_byte_buffer_reader reader;
        ProtobufCMessage *m;

        if (!grpc_byte_buffer_reader_init(&reader, bb))
                return -EBADMSG;
        grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
        grpc_slice_unref(s);
        if (!m)
                return -EBADMSG;
        *ret = m;
        return 0;
}

int sbx__rpc_send_queue_push(struct SbxRpcSendQueue *q, const ProtobufCMessage *m, size_t max,
                             size_t *pending)
{
        SbxRpcSendItem *it = new0(SbxRpcSendItem, 1);
        int r;

        if (!it)
                return -ENOMEM;
        r = sbx__rpc_pack(m, max, &it->buffer, &it->size);
        if (r < 0) {
                free(it);
                return r;
        }
        STAILQ_INSERT_TAIL(q, it, link);
        *pending += it->size;
        return 0;
}

SbxRpcSendItem *sbx__rpc_send_queue_pop(struct SbxRpcSendQueue *q, size_t *pending)
{
        SbxRpcSendItem *it = STAILQ_FIRST(q);
        if (!it)
                return NULL;
        STAILQ_REMOVE_HEAD(q, link);
        *pending -= it->size;
        return it;
}

void sbx__rpc_send_item_free(SbxRpcSendItem *it)
{
        if (!it)
                return;
        if (it->buffer)
                grpc_byte_buffer_destroy(it->buffer);
        free(it);
}

void sbx__rpc_send_queue_clear(struct SbxRpcSendQueue *q, size_t *pending)
{
        SbxRpcSendItem *it;
        while ((it = sbx__rpc_send_queue_pop(q, pending)))
                sbx__rpc_send_item_free(it);
}

char *sbx__rpc_slice_strdup(grpc_slice s)
{
        return strndup((const char *)GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
}

int sbx__rpc_metadata_copy(const grpc_metadata_array *a, SbxRpcMetadataCopy *ret)
{
        SbxRpcMetadataCopy m = { 0 };

        if (a->count > 0) {
                m.keys = new0(char *, a->count);
                m.values = new0(char *, a->count);
                if (!m.keys || !m.values)
                        goto oom;
        }
        for (size_t i = 0; i < a->count; i++) {
                m.keys[i] = sbx__rpc_slice_strdup(a->metadata[i].key);
                m.values[i] = sbx__rpc_slice_strdup(a->metadata[i].value);
                m.n = i + 1;
                if (!m.keys[i] || !m.values[i])
                        goto oom;
        }
        *ret = m;
        return 0;
oom:
        sbx__rpc_metadata_done(&m);
        return -ENOMEM;
}

const char *sbx__rpc_metadata_find(const SbxRpcMetadataCopy *m, const char *key)
{
        for (size_t i = 0; i < m->n; i++)
                if (m->keys[i] && streq(m->keys[i], key))
                        return m->values[i];
        return NULL;
}

void sbx__rpc_metadata_done(SbxRpcMetadataCopy *m)
{
        for (size_t i = 0; i < m->n; i++) {
                free(m->keys[i]);
                free(m->values[i]);
        }
        free(m->keys);
        free(m->values);
        *m = (SbxRpcMetadataCopy){ 0 };
}

void sbx_rpc_status_done(SbxRpcStatus *s)
{
        free(s->message);
        s->message = NULL;
}

int sbx_rpc_status_set(SbxRpcStatus *s, SbxStatus code, const char *fmt, ...)
{
        va_list ap;
        char *m = NULL;

        va_start(ap, fmt);
        int r = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        free(s->message);
        s->code = code;
        s->message = m;
        return 0;
}

int sbx_rpc_methods_check(const ProtobufCServiceDescriptor *service, const SbxRpcMethod *const *methods,
                          size_t n, const char **ret_bad)
{
        if (n != service->n_methods) {
                if (ret_bad)
                        *ret_bad = service->name;
                return -EINVAL;
        }
        for (unsigned i = 0; i < service->n_methods; i++) {
                const ProtobufCMethodDescriptor *md = &service->methods[i];
                char path[256];
                bool found = false;

                snprintf(path, sizeof(path), "/%s/%s", service->name, md->name);
                for (size_t j = 0; j < n; j++)
                        if (streq(methods[j]->path, path) && methods[j]->input == md->input &&
                            methods[j]->output == md->output)
                                found = true;
                if (!found) {
                        if (ret_bad)
                                *ret_bad = md->name;
                        return -EINVAL;
                }
        }
        return 0;
}

gpr_timespec sbx__rpc_deadline(usec_t timeout)
{
        if (timeout == 0 || timeout == USEC_INFINITY)
                return gpr_inf_future(GPR_CLOCK_REALTIME);
        return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                            gpr_time_from_micros((int64_t)timeout, GPR_TIMESPAN));
}

static int read_pem(const char *path, char **ret)
{
        if (!path) {
                *ret = NULL;
                return 0;
        }
        return sbx_read_file(path, PEM_MAX, ret, NULL);
}

int sbx__rpc_server_credentials(const SbxRpcTls *tls, grpc_server_credentials **ret)
{
        _cleanup_free_ char *cert = NULL, *key = NULL, *ca = NULL;
        int r;

        if (!tls) {
                *ret = grpc_insecure_server_credentials_create();
                return 0;
        }
        if (!tls->cert_file || !tls->key_file)
                return -EINVAL;
        if ((r = read_pem(tls->cert_file, &cert)) < 0 || (r = read_pem(tls->key_file, &key)) < 0 ||
            (r = read_pem(tls->ca_file, &ca)) < 0)
                return r;

        grpc_ssl_pem_key_cert_pair pair = { .private_key = key, .cert_chain = cert };
        grpc_server_credentials *c = grpc_ssl_server_credentials_create_ex(
                ca, &pair, 1,
                ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                   : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
                NULL);
        if (!c)
                return -EINVAL;
        *ret = c;
        return 0;
}

int sbx__rpc_channel_credentials(const SbxRpcTls *tls, const char *bearer_token,
                                 grpc_channel_credentials **ret)
{
        _cleanup_free_ char *cert = NULL, *key = NULL, *ca = NULL;
        grpc_channel_credentials *c;
        int r;

        if (!tls) {
                *ret = grpc_insecure_credentials_create();
                return 0;
        }
        if (!!tls->cert_file != !!tls->key_file)
                return -EINVAL;
        if ((r = read_pem(tls->cert_file, &cert)) < 0 || (r = read_pem(tls->key_file, &key)) < 0 ||
            (r = read_pem(tls->ca_file, &ca)) < 0)
                return r;

        grpc_ssl_pem_key_cert_pair pair = { .private_key = key, .cert_chain = cert };
        c = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
        if (!c)
                return -EINVAL;
        if (bearer_token) {
                /* Call credentials ride only on TLS; on plaintext the token goes into metadata. */
                grpc_call_credentials *tok = grpc_access_token_credentials_create(bearer_token, NULL);
                grpc_channel_credentials *comp = grpc_composite_channel_credentials_create(c, tok, NULL);
                grpc_call_credentials_release(tok);
                grpc_channel_credentials_release(c);
                if (!comp)
                        return -EINVAL;
                c = comp;
        }
        *ret = c;
        return 0;
}
