/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The common/etcd side of the etcd benchmarks (docs/benchmarks.md): Put or Txn requests against
 * one etcd with `--concurrency` requests kept in flight on the loop, for a warm-up and then a
 * measured window. bench/node/etcd3-bench.mjs does the same with the npm etcd3 client.
 *
 *   etcd-bench --endpoint HOST:PORT --op put|txn --concurrency C [--seconds S] [--warmup-ms MS]
 *              [--prefix P] [--size BYTES]
 *
 * Each of the C workers owns its keys (<prefix>/<worker>/...), so workers never conflict:
 *
 *   put  Put <prefix>/<w>/put = <size> bytes.
 *   txn  the scheduler's optimistic update: if mod_revision(<prefix>/<w>/state) == the revision the
 *        worker last wrote, then Put .../state and Put .../aux; else Get .../state (to learn its
 *        revision and retry). A worker starts at revision 0 (the key does not exist yet).
 *
 * Requests completing inside the measured window are counted; value = ops/s. Output:
 *
 *   RESULT op=<op> concurrency=<C> value=<number> unit=ops/s
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/parse.h"
#include "common/etcd/etcd.h"
#include "common/log/log.h"
#include "common/loop/loop.h"
#include "common/rpc/rpc.h"

typedef enum Phase {
        PHASE_WARMUP,
        PHASE_MEASURE,
        PHASE_DRAIN,
} Phase;

typedef struct Options {
        const char *endpoint;
        bool txn;
        uint32_t concurrency;
        uint32_t seconds;
        uint32_t warmup_ms;
        uint32_t size;
        const char *prefix;
} Options;

typedef struct Bench Bench;

typedef struct Worker {
        Bench *bench;
        char *key;
        char *aux_key;
        /* The mod_revision the next Txn compares against. */
        int64_t revision;
        bool in_flight;
} Worker;

struct Bench {
        const Options *opt;
        SbxEtcd *etcd;
        Worker *workers;
        uint8_t *value;
        uv_timer_t timer;
        Phase phase;
        unsigned in_flight;
        usec_t measure_start, measure_end;
        uint64_t completed;
        uint64_t conflicts;
        uint64_t errors;
        int first_error;
        bool finished;
};

static void worker_issue(Worker *w);

static void worker_done(Worker *w, int error)
{
        Bench *b = w->bench;

        w->in_flight = false;
        b->in_flight--;
        if (error < 0) {
                b->errors++;
                if (b->first_error == 0)
                        b->first_error = error;
        } else if (b->phase == PHASE_MEASURE) {
                b->completed++;
        }
        if (b->phase != PHASE_DRAIN)
                worker_issue(w);
        else if (b->in_flight == 0)
                b->finished = true;
}

static void on_put(int error, const Etcdserverpb__PutResponse *r, void *userdata)
{
        worker_done(userdata, error);
}

static void on_txn(int error, const Etcdserverpb__TxnResponse *r, void *userdata)
{
        Worker *w = userdata;

        if (error >= 0 && r) {
                if (r->succeeded) {
                        /* Both puts carry the Txn's revision: that is the key's mod_revision now. */
                        w->revision = r->header ? r->header->revision : 0;
                } else {
                        /* Someone else wrote the key (never in this benchmark): retry from what it holds. */
                        const Etcdserverpb__RangeResponse *g =
                                r->n_responses > 0 ? r->responses[0]->response_range : NULL;
                        w->revision = g && g->n_kvs > 0 ? g->kvs[0]->mod_revision : 0;
                        w->bench->conflicts++;
                }
        }
        worker_done(w, error);
}

static void worker_issue(Worker *w)
{
        Bench *b = w->bench;
        int r;

        if (b->opt->txn) {
                SbxEtcdTxn *t;
                r = sbx_etcd_txn_new(&t);
                if (r >= 0) {
                        sbx_etcd_txn_compare_mod_revision(t, w->key, SBX_ETCD_EQUAL, w->revision);
                        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, w->key, b->value, b->opt->size, 0);
                        sbx_etcd_txn_put(t, SBX_ETCD_SUCCESS, w->aux_key, b->value, b->opt->size, 0);
                        sbx_etcd_txn_get(t, SBX_ETCD_FAILURE, w->key, false);
                        r = sbx_etcd_txn_commit(b->etcd, t, on_txn, w);
                }
        } else {
                r = sbx_etcd_put(b->etcd, w->key, b->value, b->opt->size, 0, on_put, w);
        }
        if (r < 0) {
                /* Nothing is in flight for this worker any more: stop the run. */
                b->errors++;
                if (b->first_error == 0)
                        b->first_error = r;
                b->phase = PHASE_DRAIN;
                if (b->in_flight == 0)
                        b->finished = true;
                return;
        }
        w->in_flight = true;
        b->in_flight++;
}

static void on_timer(uv_timer_t *t)
{
        Bench *b = t->data;

        if (b->phase == PHASE_WARMUP) {
                b->phase = PHASE_MEASURE;
                b->measure_start = sbx_now_monotonic();
                uv_timer_start(&b->timer, on_timer, (uint64_t)b->opt->seconds * 1000, 0);
        } else if (b->phase == PHASE_MEASURE) {
                b->measure_end = sbx_now_monotonic();
                b->phase = PHASE_DRAIN;
                if (b->in_flight == 0)
                        b->finished = true;
        }
}

static int bench_run(uv_loop_t *loop, SbxRpc *rpc, const Options *opt)
{
        char *const endpoints[] = { (char *)opt->endpoint, NULL };
        SbxEtcdOptions eo = { .endpoints = endpoints };
        Bench b = { .opt = opt };
        int r;

        b.workers = new0(Worker, opt->concurrency);
        b.value = malloc(opt->size ? opt->size : 1);
        if (!b.workers || !b.value) {
                r = log_error_errno(-ENOMEM, "Failed to allocate: %m");
                goto finish;
        }
        memset(b.value, 'v', opt->size);
        for (uint32_t i = 0; i < opt->concurrency; i++) {
                Worker *w = &b.workers[i];
                w->bench = &b;
                if (asprintf(&w->key, "%s/%" PRIu32 "/%s", opt->prefix, i, opt->txn ? "state" : "put") < 0 ||
                    asprintf(&w->aux_key, "%s/%" PRIu32 "/aux", opt->prefix, i) < 0) {
                        w->key = w->aux_key = NULL;
                        r = log_error_errno(-ENOMEM, "Failed to allocate: %m");
                        goto finish;
                }
        }
        r = sbx_etcd_new(rpc, &eo, &b.etcd);
        if (r < 0) {
                log_error_errno(r, "Failed to create the etcd client: %m");
                goto finish;
        }

        uv_timer_init(loop, &b.timer);
        b.timer.data = &b;
        uv_timer_start(&b.timer, on_timer, opt->warmup_ms, 0);
        for (uint32_t i = 0; i < opt->concurrency && b.phase != PHASE_DRAIN; i++)
                worker_issue(&b.workers[i]);
        while (!b.finished)
                uv_run(loop, UV_RUN_ONCE);
        uv_timer_stop(&b.timer);
        uv_close((uv_handle_t *)&b.timer, NULL);
        /* The timer lives on this stack frame: let its close complete before returning. */
        uv_run(loop, UV_RUN_NOWAIT);

        if (b.errors > 0) {
                log_error_errno(b.first_error, "%" PRIu64 " requests failed, the first with: %m", b.errors);
                r = b.first_error;
                goto finish;
        }
        double secs = (double)(b.measure_end - b.measure_start) / USEC_PER_SEC;
        double rate = (double)b.completed / secs;
        const char *op = opt->txn ? "txn" : "put";
        printf("# etcd %s c%" PRIu32 ": %" PRIu64 " requests in %.2f s after %" PRIu32
               " ms warm-up, %" PRIu32 "-byte values, %" PRIu64 " conflicts: %.0f ops/s\n",
               op, opt->concurrency, b.completed, secs, opt->warmup_ms, opt->size, b.conflicts, rate);
        printf("RESULT op=%s concurrency=%" PRIu32 " value=%.0f unit=ops/s\n", op, opt->concurrency, rate);
        r = 0;

finish:
        sbx_etcd_free(b.etcd);
        for (uint32_t i = 0; b.workers && i < opt->concurrency; i++) {
                free(b.workers[i].key);
                free(b.workers[i].aux_key);
        }
        free(b.workers);
        free(b.value);
        return r;
}

/* ---- main ---- */

static int parse_u32_arg(const char *name, const char *value, uint32_t min, uint32_t *ret)
{
        uint32_t v;

        if (sbx_parse_uint32(value, &v) < 0 || v < min) {
                fprintf(stderr, "invalid %s: %s\n", name, value);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int parse_args(int argc, char **argv, Options *o)
{
        const char *op = NULL;

        *o = (Options){ .concurrency = 1, .seconds = 3, .warmup_ms = 500, .size = 128, .prefix = "bench/c" };
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                int r = 0;

                if (!v)
                        goto usage;
                i++;
                if (strcmp(a, "--endpoint") == 0)
                        o->endpoint = v;
                else if (strcmp(a, "--op") == 0)
                        op = v;
                else if (strcmp(a, "--prefix") == 0)
                        o->prefix = v;
                else if (strcmp(a, "--concurrency") == 0)
                        r = parse_u32_arg(a, v, 1, &o->concurrency);
                else if (strcmp(a, "--seconds") == 0)
                        r = parse_u32_arg(a, v, 1, &o->seconds);
                else if (strcmp(a, "--warmup-ms") == 0)
                        r = parse_u32_arg(a, v, 0, &o->warmup_ms);
                else if (strcmp(a, "--size") == 0)
                        r = parse_u32_arg(a, v, 0, &o->size);
                else
                        goto usage;
                if (r < 0)
                        return r;
        }
        if (!o->endpoint || !op || o->concurrency > 4096)
                goto usage;
        if (strcmp(op, "txn") == 0)
                o->txn = true;
        else if (strcmp(op, "put") != 0)
                goto usage;
        return 0;

usage:
        fprintf(stderr,
                "usage: %s --endpoint HOST:PORT --op put|txn --concurrency C [--seconds S] [--warmup-ms "
                "MS]\n"
                "          [--prefix P] [--size BYTES]\n",
                argv[0]);
        return -EINVAL;
}

static void on_rpc_down(void *userdata)
{
        *(bool *)userdata = true;
}

int main(int argc, char **argv)
{
        uv_loop_t loop;
        SbxRpc *rpc = NULL;
        Options opt;
        bool down = false;
        int r;

        sbx_log_setup("etcd-bench", SBX_LOG_TEXT, SBX_LOG_WARNING);
        if (parse_args(argc, argv, &opt) < 0)
                return 2;

        r = uv_loop_init(&loop);
        if (r < 0)
                return log_error_errno(r, "Failed to create the loop: %m"), 1;
        r = sbx_rpc_new(&loop, &rpc);
        if (r < 0)
                return log_error_errno(r, "Failed to start gRPC: %m"), 1;
        r = bench_run(&loop, rpc, &opt);
        fflush(stdout);

        sbx_rpc_shutdown(rpc, 0, on_rpc_down, &down);
        while (!down)
                uv_run(&loop, UV_RUN_ONCE);
        if (sbx_loop_close_all(&loop) < 0)
                return 1;
        return r < 0 ? 1 : 0;
}
