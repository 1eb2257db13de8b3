/* SPDX-License-Identifier: Apache-2.0 */
/* Transactions: a builder for compares and the two branches of ops, then one Txn request. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/etcd/etcd-internal.h"

struct SbxEtcdTxn {
        Etcdserverpb__TxnRequest req;
        /* The first failure while building; commit reports it. */
        int error;
};

int sbx_etcd_txn_new(SbxEtcdTxn **ret)
{
        SbxEtcdTxn *t = new0(SbxEtcdTxn, 1);
        if (!t)
                return -ENOMEM;
        etcdserverpb__txn_request__init(&t->req);
        *ret = t;
        return 0;
}

static void free_range(Etcdserverpb__RangeRequest *q)
{
        free(q->key.data);
        free(q->range_end.data);
        free(q);
}

static void free_op(Etcdserverpb__RequestOp *op)
{
        switch (op->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
                free_range(op->request_range);
                break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
                free(op->request_put->key.data);
                free(op->request_put->value.data);
                free(op->request_put);
                break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
                free(op->request_delete_range->key.data);
                free(op->request_delete_range->range_end.data);
                free(op->request_delete_range);
                break;
        default:
                break;
        }
        free(op);
}

static void free_request(Etcdserverpb__TxnRequest *q)
{
        for (size_t i = 0; i < q->n_compare; i++) {
                if (q->compare[i]->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE)
                        free(q->compare[i]->value.data);
                free(q->compare[i]->key.data);
                free(q->compare[i]);
        }
        for (size_t i = 0; i < q->n_success; i++)
                free_op(q->success[i]);
        for (size_t i = 0; i < q->n_failure; i++)
                free_op(q->failure[i]);
        free(q->compare);
        free(q->success);
        free(q->failure);
}

SbxEtcdTxn *sbx_etcd_txn_free(SbxEtcdTxn *t)
{
        if (!t)
                return NULL;
        free_request(&t->req);
        free(t);
        return NULL;
}

/* Appends p to a protobuf-c repeated field (array + count). */
static int append(void ***array, size_t *n, void *p)
{
        void **a = realloc(*array, (*n + 1) * sizeof(void *));
        if (!a)
                return -ENOMEM;
        a[(*n)++] = p;
        *array = a;
        return 0;
}

static Etcdserverpb__Compare *add_compare(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op,
                                          Etcdserverpb__Compare__CompareTarget target)
{
        Etcdserverpb__Compare *c;

        if (t->error < 0)
                return NULL;
        c = new0(Etcdserverpb__Compare, 1);
        if (!c) {
                t->error = -ENOMEM;
                return NULL;
        }
        etcdserverpb__compare__init(c);
        c->result = (Etcdserverpb__Compare__CompareResult)op;
        c->target = target;
        if (sbx__etcd_bytes(&c->key, key, strlen(key)) < 0 ||
            append((void ***)&t->req.compare, &t->req.n_compare, c) < 0) {
                free(c->key.data);
                free(c);
                t->error = -ENOMEM;
                return NULL;
        }
        return c;
}

void sbx_etcd_txn_compare_value(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op, const void *value,
                                size_t size)
{
        Etcdserverpb__Compare *c = add_compare(t, key, op, ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE);
        if (!c)
                return;
        /* The oneof case must be set explicitly, or an empty value would not be encoded at all. */
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
        if (sbx__etcd_bytes(&c->value, value, size) < 0)
                t->error = -ENOMEM;
}

void sbx_etcd_txn_compare_version(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op, int64_t version)
{
        Etcdserverpb__Compare *c = add_compare(t, key, op, ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION);
        if (!c)
                return;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
        c->version = version;
}

void sbx_etcd_txn_compare_create_revision(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op, int64_t rev)
{
        Etcdserverpb__Compare *c = add_compare(t, key, op, ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE);
        if (!c)
                return;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
        c->create_revision = rev;
}

void sbx_etcd_txn_compare_mod_revision(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op, int64_t rev)
{
        Etcdserverpb__Compare *c = add_compare(t, key, op, ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD);
        if (!c)
                return;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
        c->mod_revision = rev;
}

void sbx_etcd_txn_compare_lease(SbxEtcdTxn *t, const char *key, SbxEtcdCompareOp op, int64_t lease)
{
        Etcdserverpb__Compare *c = add_compare(t, key, op, ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE);
        if (!c)
                return;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
        c->lease = lease;
}

static Etcdserverpb__RequestOp *add_op(SbxEtcdTxn *t, SbxEtcdBranch b)
{
        Etcdserverpb__RequestOp *op;
        int r;

        if (t->error < 0)
                return NULL;
        op = new0(Etcdserverpb__RequestOp, 1);
        if (!op) {
                t->error = -ENOMEM;
                return NULL;
        }
        etcdserverpb__request_op__init(op);
        if (b == SBX_ETCD_SUCCESS)
                r = append((void ***)&t->req.success, &t->req.n_success, op);
        else
                r = append((void ***)&t->req.failure, &t->req.n_failure, op);
        if (r < 0) {
                free(op);
                t->error = r;
                return NULL;
        }
        return op;
}

void sbx_etcd_txn_put(SbxEtcdTxn *t, SbxEtcdBranch b, const char *key, const void *value, size_t size,
                      int64_t lease)
{
        Etcdserverpb__RequestOp *op = add_op(t, b);
        Etcdserverpb__PutRequest *p;

        if (!op)
                return;
        p = new0(Etcdserverpb__PutRequest, 1);
        if (!p) {
                t->error = -ENOMEM;
                return;
        }
        etcdserverpb__put_request__init(p);
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        op->request_put = p;
        p->lease = lease;
        if (sbx__etcd_bytes(&p->key, key, strlen(key)) < 0 || sbx__etcd_bytes(&p->value, value, size) < 0)
                t->error = -ENOMEM;
}

void sbx_etcd_txn_delete(SbxEtcdTxn *t, SbxEtcdBranch b, const char *key, bool prefix)
{
        Etcdserverpb__RequestOp *op = add_op(t, b);
        Etcdserverpb__DeleteRangeRequest *d;

        if (!op)
                return;
        d = new0(Etcdserverpb__DeleteRangeRequest, 1);
        if (!d) {
                t->error = -ENOMEM;
                return;
        }
        etcdserverpb__delete_range_request__init(d);
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
        op->request_delete_range = d;
        if (sbx__etcd_key_range(&d->key, &d->range_end, key, prefix) < 0)
                t->error = -ENOMEM;
}

void sbx_etcd_txn_get(SbxEtcdTxn *t, SbxEtcdBranch b, const char *key, bool prefix)
{
        Etcdserverpb__RequestOp *op = add_op(t, b);
        Etcdserverpb__RangeRequest *q;

        if (!op)
                return;
        q = new0(Etcdserverpb__RangeRequest, 1);
        if (!q) {
                t->error = -ENOMEM;
                return;
        }
        etcdserverpb__range_request__init(q);
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
        op->request_range = q;
        if (sbx__etcd_key_range(&q->key, &q->range_end, key, prefix) < 0)
                t->error = -ENOMEM;
}

static void free_txn_message(ProtobufCMessage *m)
{
        SbxEtcdTxn *t = container_of((Etcdserverpb__TxnRequest *)m, SbxEtcdTxn, req);
        sbx_etcd_txn_free(t);
}

static void deliver_txn(SbxEtcdRequest *r, int error, const ProtobufCMessage *resp)
{
        r->cb.txn(error, (const Etcdserverpb__TxnResponse *)resp, r->userdata);
}

int sbx_etcd_txn_commit(SbxEtcd *e, SbxEtcdTxn *t, SbxEtcdTxnCallback cb, void *userdata)
{
        SbxEtcdRequest *req;
        int r;

        if (t->error < 0) {
                r = t->error;
                sbx_etcd_txn_free(t);
                return r;
        }
        r = sbx__etcd_request(e, &sbx__etcd_kv_txn, &t->req.base, free_txn_message, false, deliver_txn,
                              userdata, &req);
        if (r < 0)
                return r;
        req->cb.txn = cb;
        return 0;
}
