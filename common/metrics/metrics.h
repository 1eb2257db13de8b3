/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A metric registry and its Prometheus text exposition (format 0.0.4).
 *
 * Each daemon defines its metrics in one file (agent-metrics.c, ...) by registering families at
 * start-up; a family has a fixed list of label names. A series (one combination of label values) is
 * created on first use. Label values must come from a bounded set — method names, status codes,
 * regions — never sandbox ids or other unbounded values.
 *
 * Updating a series is thread-safe and lock-free once the series exists (atomics); looking up or
 * creating a series takes the family's mutex. Hot paths can keep a series handle.
 *
 *     SbxCounter *requests;
 *     sbx_metrics_counter(m, "sbx_rpc_server_requests_total", "RPCs handled.",
 *                         SBX_LABEL_NAMES("method", "code"), &requests);
 *     sbx_counter_inc(requests, SBX_LABELS("/sbx.v1.Sandboxes/Create", "OK"));
 */

#include <stddef.h>
#include <stdint.h>

#include "common/base/buffer.h"

typedef struct SbxMetrics SbxMetrics;
typedef struct SbxCounter SbxCounter;
typedef struct SbxGauge SbxGauge;
typedef struct SbxHistogram SbxHistogram;
typedef struct SbxMetricSeries SbxMetricSeries;

#define SBX_METRICS_MAX_LABELS 6

/* NULL-terminated lists built in place. */
#define SBX_LABEL_NAMES(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define SBX_LABELS(...)      ((const char *const[]){ __VA_ARGS__, NULL })

int sbx_metrics_new(SbxMetrics **ret);
/* Frees the registry and every family and series in it; accepts NULL; returns NULL. */
SbxMetrics *sbx_metrics_free(SbxMetrics *m);

/*
 * Registers a family. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]* and be unique in the registry
 * (-EEXIST otherwise); counters should end in "_total". `label_names` is NULL or a NULL-terminated
 * list of at most SBX_METRICS_MAX_LABELS valid label names (not starting with "__", not "le" for
 * histograms). The family belongs to the registry; *ret stays valid until sbx_metrics_free().
 * -EINVAL for bad names.
 */
int sbx_metrics_counter(SbxMetrics *m, const char *name, const char *help, const char *const *label_names,
                        SbxCounter **ret);
int sbx_metrics_gauge(SbxMetrics *m, const char *name, const char *help, const char *const *label_names,
                      SbxGauge **ret);
/* `buckets` are strictly increasing upper bounds; +Inf is implicit. At most 32 buckets. */
int sbx_metrics_histogram(SbxMetrics *m, const char *name, const char *help, const char *const *label_names,
                          const double *buckets, size_t n_buckets, SbxHistogram **ret);

/* Bucket sets for latencies in seconds: 0.5 ms .. 10 s, and 10 ms .. 60 s for boots. */
extern const double sbx_metrics_buckets_latency[];
extern const size_t sbx_metrics_buckets_latency_n;
extern const double sbx_metrics_buckets_boot[];
extern const size_t sbx_metrics_buckets_boot_n;

/*
 * Updates. `values` is NULL for a family without labels, else exactly one value per label name
 * (a wrong count is ignored rather than crashing a daemon; debug builds assert). Counters only go
 * up: a negative delta is ignored.
 */
void sbx_counter_add(SbxCounter *c, const char *const *values, double delta);
void sbx_counter_inc(SbxCounter *c, const char *const *values);
void sbx_gauge_set(SbxGauge *g, const char *const *values, double v);
void sbx_gauge_add(SbxGauge *g, const char *const *values, double delta);
void sbx_histogram_observe(SbxHistogram *h, const char *const *values, double v);

/* Removes every series of a gauge (before re-filling it from a snapshot in a collector). */
void sbx_gauge_reset(SbxGauge *g);

/* Reads a series' current value (tests, status pages); 0 when the series does not exist. */
double sbx_counter_get(SbxCounter *c, const char *const *values);
double sbx_gauge_get(SbxGauge *g, const char *const *values);
/* Total number of observations of a histogram series. */
uint64_t sbx_histogram_count(SbxHistogram *h, const char *const *values);

/*
 * A collector runs just before each exposition, on the thread that renders, so that a daemon can
 * refresh gauges computed from its state (for example sandboxes by state). Collectors run in
 * registration order.
 */
typedef void (*SbxMetricsCollector)(SbxMetrics *m, void *userdata);
int sbx_metrics_add_collector(SbxMetrics *m, SbxMetricsCollector fn, void *userdata);

/*
 * Appends the Prometheus text exposition of every family (in registration order, series sorted by
 * label values) to `out`: # HELP and # TYPE lines, escaped label values, histogram _bucket{le=...}
 * (cumulative), _sum and _count. A family without series is still listed with HELP and TYPE.
 */
int sbx_metrics_render(SbxMetrics *m, SbxBuffer *out);
