/* SPDX-License-Identifier: Apache-2.0 */
#include "common/metrics/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/log/log.h"

/*
 * Layout: a registry owns a list of families in registration order; a family owns an array of
 * series kept sorted by label values, so that lookups are a binary search and the exposition needs
 * no sort. Series are never freed before the registry is (a reset gauge only hides them), which is
 * what makes it safe to update a series through a pointer after the family's mutex was released.
 */

#define MAX_BUCKETS           32
#define MAX_SERIES_PER_FAMILY 10000
#define DROPPED_FAMILY_NAME   "sbx_metrics_series_dropped_total"

const double sbx_metrics_buckets_latency[] = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const size_t sbx_metrics_buckets_latency_n = ELEMENTSOF(sbx_metrics_buckets_latency);

const double sbx_metrics_buckets_boot[] = {
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60,
};
const size_t sbx_metrics_buckets_boot_n = ELEMENTSOF(sbx_metrics_buckets_boot);

typedef enum FamilyType {
        FAMILY_COUNTER,
        FAMILY_GAUGE,
        FAMILY_HISTOGRAM,
} FamilyType;

static const char *const family_type_names[] = {
        [FAMILY_COUNTER] = "counter",
        [FAMILY_GAUGE] = "gauge",
        [FAMILY_HISTOGRAM] = "histogram",
};

struct SbxMetricSeries {
        char *values[SBX_METRICS_MAX_LABELS];
        /* Bit pattern of a double: the value of a counter or gauge, the sum of a histogram. */
        _Atomic uint64_t value;
        /* Cleared by sbx_gauge_reset(): the series keeps its slot but is left out of the exposition. */
        _Atomic bool present;
        /* Histograms only: per-bucket (not cumulative) counts; the last one is the +Inf bucket. */
        _Atomic uint64_t buckets[];
};

typedef struct Family Family;
struct Family {
        SbxMetrics *registry;
        Family *next;
        FamilyType type;
        char *name;
        char *help;
        char *label_names[SBX_METRICS_MAX_LABELS];
        size_t n_labels;
        double buckets[MAX_BUCKETS];
        size_t n_buckets;

        pthread_mutex_t lock; /* guards series, n_series, n_alloc */
        SbxMetricSeries **series;
        size_t n_series;
        size_t n_alloc;
};

/* The public handle types are views of a family; they exist so that the compiler keeps them apart. */
struct SbxCounter {
        Family family;
};
struct SbxGauge {
        Family family;
};
struct SbxHistogram {
        Family family;
};

typedef struct Collector {
        SbxMetricsCollector fn;
        void *userdata;
} Collector;

struct SbxMetrics {
        pthread_mutex_t lock; /* guards the family list and the collector array */
        Family *families;
        Family *families_tail;
        Collector *collectors;
        size_t n_collectors;
        SbxCounter *dropped;
};

static uint64_t double_to_bits(double v)
{
        uint64_t u;

        memcpy(&u, &v, sizeof(u));
        return u;
}

static double bits_to_double(uint64_t u)
{
        double v;

        memcpy(&v, &u, sizeof(v));
        return v;
}

static double atomic_double_load(_Atomic uint64_t *p)
{
        return bits_to_double(atomic_load_explicit(p, memory_order_relaxed));
}

static void atomic_double_store(_Atomic uint64_t *p, double v)
{
        atomic_store_explicit(p, double_to_bits(v), memory_order_relaxed);
}

static void atomic_double_add(_Atomic uint64_t *p, double delta)
{
        uint64_t old = atomic_load_explicit(p, memory_order_relaxed);

        /* On failure the CAS reloads `old`, so each retry adds to the value another thread wrote. */
        while (!atomic_compare_exchange_weak_explicit(p, &old, double_to_bits(bits_to_double(old) + delta),
                                                      memory_order_relaxed, memory_order_relaxed))
                ;
}

static bool valid_metric_name(const char *s)
{
        if (isempty(s))
                return false;
        for (const char *p = s; *p; p++) {
                bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':';
                bool digit = *p >= '0' && *p <= '9';
                if (!alpha && !(digit && p != s))
                        return false;
        }
        return true;
}

static bool valid_label_name(const char *s)
{
        if (isempty(s) || startswith(s, "__"))
                return false;
        for (const char *p = s; *p; p++) {
                bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_';
                bool digit = *p >= '0' && *p <= '9';
                if (!alpha && !(digit && p != s))
                        return false;
        }
        return true;
}

static void series_free(SbxMetricSeries *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < SBX_METRICS_MAX_LABELS; i++)
                free(s->values[i]);
        free(s);
}

static void family_free(Family *f)
{
        if (!f)
                return;
        for (size_t i = 0; i < f->n_series; i++)
                series_free(f->series[i]);
        free(f->series);
        for (size_t i = 0; i < f->n_labels; i++)
                free(f->label_names[i]);
        free(f->name);
        free(f->help);
        pthread_mutex_destroy(&f->lock);
        free(f);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Family *, family_free);

/* True when exposing `a` would print a sample line named `b` (histograms print three suffixed names). */
static bool family_shadows(const Family *a, const char *b_name)
{
        static const char *const suffixes[] = { "_bucket", "_sum", "_count" };

        if (streq(a->name, b_name))
                return true;
        if (a->type != FAMILY_HISTOGRAM)
                return false;
        const char *rest = startswith(b_name, a->name);
        if (!rest)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++)
                if (streq(rest, suffixes[i]))
                        return true;
        return false;
}

/* Called with the registry lock held. */
static bool name_taken(SbxMetrics *m, const Family *f)
{
        for (const Family *i = m->families; i; i = i->next) {
                if (family_shadows(i, f->name) || family_shadows(f, i->name))
                        return true;
        }
        return false;
}

static int family_register(SbxMetrics *m, FamilyType type, const char *name, const char *help,
                           const char *const *label_names, const double *buckets, size_t n_buckets,
                           Family **ret)
{
        _cleanup_(family_freep) Family *f = NULL;
        size_t n_labels = 0;
        int r;

        if (!m || !ret || !valid_metric_name(name))
                return -EINVAL;

        while (label_names && label_names[n_labels]) {
                const char *l = label_names[n_labels];

                if (n_labels >= SBX_METRICS_MAX_LABELS || !valid_label_name(l))
                        return -EINVAL;
                /* "le" is the bucket label the exposition adds to every histogram sample. */
                if (type == FAMILY_HISTOGRAM && streq(l, "le"))
                        return -EINVAL;
                for (size_t j = 0; j < n_labels; j++)
                        if (streq(label_names[j], l))
                                return -EINVAL;
                n_labels++;
        }

        if (n_buckets > MAX_BUCKETS || (n_buckets > 0 && !buckets))
                return -EINVAL;
        for (size_t i = 0; i < n_buckets; i++) {
                /* +Inf is implicit; NaN or infinite bounds would make the cumulative counts meaningless. */
                if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
                        return -EINVAL;
        }

        f = new0(Family, 1);
        if (!f)
                return -ENOMEM;
        r = pthread_mutex_init(&f->lock, NULL);
        if (r != 0) {
                free(TAKE_PTR(f));
                return -r;
        }
        f->registry = m;
        f->type = type;
        f->name = strdup(name);
        f->help = strdup(strempty(help));
        if (!f->name || !f->help)
                return -ENOMEM;
        for (size_t i = 0; i < n_labels; i++) {
                f->label_names[i] = strdup(label_names[i]);
                if (!f->label_names[i])
                        return -ENOMEM;
                f->n_labels = i + 1;
        }
        if (type == FAMILY_HISTOGRAM) {
                if (n_buckets > 0)
                        memcpy(f->buckets, buckets, n_buckets * sizeof(double));
                f->n_buckets = n_buckets;
        }

        pthread_mutex_lock(&m->lock);
        if (name_taken(m, f)) {
                pthread_mutex_unlock(&m->lock);
                return -EEXIST;
        }
        if (m->families_tail)
                m->families_tail->next = f;
        else
                m->families = f;
        m->families_tail = f;
        pthread_mutex_unlock(&m->lock);

        *ret = TAKE_PTR(f);
        return 0;
}

int sbx_metrics_counter(SbxMetrics *m, const char *name, const char *help, const char *const *label_names,
                        SbxCounter **ret)
{
        Family *f;
        int r;

        r = family_register(m, FAMILY_COUNTER, name, help, label_names, NULL, 0, &f);
        if (r < 0)
                return r;
        *ret = container_of(f, SbxCounter, family);
        return 0;
}

int sbx_metrics_gauge(SbxMetrics *m, const char *name, const char *help, const char *const *label_names,
                      SbxGauge **ret)
{
        Family *f;
        int r;

        r = family_register(m, FAMILY_GAUGE, name, help, label_names, NULL, 0, &f);
        if (r < 0)
                return r;
        *ret = container_of(f, SbxGauge, family);
        return 0;
}

int sbx_metrics_histogram(SbxMetrics *m, const char *name, const char *help, const char *const *label_names,
                          const double *buckets, size_t n_buckets, SbxHistogram **ret)
{
        Family *f;
        int r;

        r = family_register(m, FAMILY_HISTOGRAM, name, help, label_names, buckets, n_buckets, &f);
        if (r < 0)
                return r;
        *ret = container_of(f, SbxHistogram, family);
        return 0;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(SbxMetrics *, sbx_metrics_free);

int sbx_metrics_new(SbxMetrics **ret)
{
        _cleanup_(sbx_metrics_freep) SbxMetrics *m = NULL;
        int r;

        m = new0(SbxMetrics, 1);
        if (!m)
                return -ENOMEM;
        r = pthread_mutex_init(&m->lock, NULL);
        if (r != 0) {
                free(TAKE_PTR(m));
                return -r;
        }

        /* Registered first so that every registry exposes it, and counted per family so an operator can
         * see which metric is being fed unbounded label values. */
        r = sbx_metrics_counter(m, DROPPED_FAMILY_NAME,
                                "Series not created because their family already had the maximum number.",
                                SBX_LABEL_NAMES("metric"), &m->dropped);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(m);
        return 0;
}

SbxMetrics *sbx_metrics_free(SbxMetrics *m)
{
        if (!m)
                return NULL;
        for (Family *f = m->families, *next; f; f = next) {
                next = f->next;
                family_free(f);
        }
        free(m->collectors);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
}

/* Number of values up to the NULL, or SIZE_MAX when there are more than any family can take. */
static size_t values_count(const char *const *values)
{
        size_t n = 0;

        while (values && values[n]) {
                if (n >= SBX_METRICS_MAX_LABELS)
                        return SIZE_MAX;
                n++;
        }
        return n;
}

static int series_cmp(const Family *f, const char *const *a, const char *const *b)
{
        for (size_t i = 0; i < f->n_labels; i++) {
                int c = strcmp(a[i], b[i]);
                if (c != 0)
                        return c;
        }
        return 0;
}

/* Binary search, called with the family lock held: true and the index when found, else the insert point. */
static bool series_find(const Family *f, const char *const *values, size_t *ret_index)
{
        size_t lo = 0, hi = f->n_series;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = series_cmp(f, (const char *const *)f->series[mid]->values, values);

                if (c == 0) {
                        *ret_index = mid;
                        return true;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_index = lo;
        return false;
}

static void count_dropped(Family *f)
{
        SbxMetrics *m = f->registry;

        /* The dropped counter has one series per family name, far below its own limit; the check only
         * keeps a pathological registry from recursing here. */
        if (&m->dropped->family == f)
                return;
        sbx_counter_inc(m->dropped, SBX_LABELS(f->name));
}

static SbxMetricSeries *series_new(const Family *f, const char *const *values)
{
        size_t n_slots = f->type == FAMILY_HISTOGRAM ? f->n_buckets + 1 : 0;
        SbxMetricSeries *s;

        s = calloc(1, sizeof(*s) + n_slots * sizeof(s->buckets[0]));
        if (!s)
                return NULL;
        for (size_t i = 0; i < f->n_labels; i++) {
                s->values[i] = strdup(values[i]);
                if (!s->values[i]) {
                        series_free(s);
                        return NULL;
                }
        }
        atomic_init(&s->value, double_to_bits(0));
        atomic_init(&s->present, true);
        for (size_t i = 0; i < n_slots; i++)
                atomic_init(&s->buckets[i], 0);
        return s;
}

/* Called with the family lock held; `idx` is the insert point series_find() returned. */
static SbxMetricSeries *series_insert(Family *f, const char *const *values, size_t idx)
{
        SbxMetricSeries *s;

        if (f->n_series == f->n_alloc) {
                size_t alloc = f->n_alloc ? f->n_alloc * 2 : 4;
                SbxMetricSeries **a = realloc(f->series, alloc * sizeof(*a));

                if (!a)
                        return NULL;
                f->series = a;
                f->n_alloc = alloc;
        }
        s = series_new(f, values);
        if (!s)
                return NULL;
        memmove(f->series + idx + 1, f->series + idx, (f->n_series - idx) * sizeof(*f->series));
        f->series[idx] = s;
        f->n_series++;
        return s;
}

/*
 * Returns the series for `values`, creating it when `create` is set. NULL when the label count is
 * wrong, the series does not exist (and create is false), memory ran out, or the family is full.
 */
static SbxMetricSeries *series_get(Family *f, const char *const *values, bool create)
{
        SbxMetricSeries *s = NULL;
        bool full = false;
        size_t n, idx;

        n = values_count(values);
        if (n != f->n_labels) {
                log_debug("Metric %s takes %zu label values, ignoring an update with %zu.", f->name,
                          f->n_labels, n == SIZE_MAX ? (size_t)SBX_METRICS_MAX_LABELS + 1 : n);
                return NULL;
        }

        pthread_mutex_lock(&f->lock);
        if (series_find(f, values, &idx))
                s = f->series[idx];
        else if (create && f->n_series < MAX_SERIES_PER_FAMILY)
                s = series_insert(f, values, idx);
        else
                full = create;
        pthread_mutex_unlock(&f->lock);

        if (full) {
                log_debug("Metric %s has %d series, dropping a new one.", f->name, MAX_SERIES_PER_FAMILY);
                count_dropped(f);
        }
        return s;
}

void sbx_counter_add(SbxCounter *c, const char *const *values, double delta)
{
        SbxMetricSeries *s;

        /* Written so that NaN is refused too: one NaN would stick to the counter forever. */
        if (!c || !(delta >= 0))
                return;
        s = series_get(&c->family, values, true);
        if (s)
                atomic_double_add(&s->value, delta);
}

void sbx_counter_inc(SbxCounter *c, const char *const *values)
{
        sbx_counter_add(c, values, 1);
}

void sbx_gauge_set(SbxGauge *g, const char *const *values, double v)
{
        SbxMetricSeries *s;

        if (!g)
                return;
        s = series_get(&g->family, values, true);
        if (!s)
                return;
        atomic_double_store(&s->value, v);
        atomic_store_explicit(&s->present, true, memory_order_relaxed);
}

void sbx_gauge_add(SbxGauge *g, const char *const *values, double delta)
{
        SbxMetricSeries *s;

        if (!g)
                return;
        s = series_get(&g->family, values, true);
        if (!s)
                return;
        atomic_double_add(&s->value, delta);
        atomic_store_explicit(&s->present, true, memory_order_relaxed);
}

void sbx_gauge_reset(SbxGauge *g)
{
        Family *f;

        if (!g)
                return;
        f = &g->family;
        /* Hidden and zeroed rather than freed: another thread may be updating a series it looked up. */
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < f->n_series; i++) {
                atomic_store_explicit(&f->series[i]->present, false, memory_order_relaxed);
                atomic_double_store(&f->series[i]->value, 0);
        }
        pthread_mutex_unlock(&f->lock);
}

void sbx_histogram_observe(SbxHistogram *h, const char *const *values, double v)
{
        SbxMetricSeries *s;
        size_t i;

        /* A NaN observation would turn the sum into NaN for the life of the process. */
        if (!h || isnan(v))
                return;
        s = series_get(&h->family, values, true);
        if (!s)
                return;
        for (i = 0; i < h->family.n_buckets; i++)
                if (v <= h->family.buckets[i])
                        break;
        atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
        atomic_double_add(&s->value, v);
}

double sbx_counter_get(SbxCounter *c, const char *const *values)
{
        SbxMetricSeries *s = c ? series_get(&c->family, values, false) : NULL;

        return s ? atomic_double_load(&s->value) : 0;
}

double sbx_gauge_get(SbxGauge *g, const char *const *values)
{
        SbxMetricSeries *s = g ? series_get(&g->family, values, false) : NULL;

        return s ? atomic_double_load(&s->value) : 0;
}

static uint64_t histogram_series_count(const Family *f, SbxMetricSeries *s)
{
        uint64_t n = 0;

        for (size_t i = 0; i <= f->n_buckets; i++)
                n += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        return n;
}

uint64_t sbx_histogram_count(SbxHistogram *h, const char *const *values)
{
        SbxMetricSeries *s = h ? series_get(&h->family, values, false) : NULL;

        return s ? histogram_series_count(&h->family, s) : 0;
}

int sbx_metrics_add_collector(SbxMetrics *m, SbxMetricsCollector fn, void *userdata)
{
        Collector *a;

        if (!m || !fn)
                return -EINVAL;
        pthread_mutex_lock(&m->lock);
        a = realloc(m->collectors, (m->n_collectors + 1) * sizeof(*a));
        if (!a) {
                pthread_mutex_unlock(&m->lock);
                return -ENOMEM;
        }
        a[m->n_collectors++] = (Collector){ fn, userdata };
        m->collectors = a;
        pthread_mutex_unlock(&m->lock);
        return 0;
}

/*
 * Formats a sample value the way Prometheus parses it back: "+Inf", "-Inf", "NaN", integers without
 * exponent or decimals, everything else with the fewest digits that still round-trip.
 */
static void format_value(double v, char buf[static 32])
{
        if (isnan(v)) {
                strcpy(buf, "NaN");
                return;
        }
        if (isinf(v)) {
                strcpy(buf, v > 0 ? "+Inf" : "-Inf");
                return;
        }
        if (v == 0) {
                /* Also turns -0 into 0. */
                strcpy(buf, "0");
                return;
        }
        /* Below 2^53 every integer is exact, so %.0f prints it digit for digit. */
        if (v == trunc(v) && fabs(v) < 9007199254740992.0) {
                snprintf(buf, 32, "%.0f", v);
                return;
        }
        for (int prec = 15; prec <= 17; prec++) {
                snprintf(buf, 32, "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        return;
        }
}

/* Length of the well-formed UTF-8 sequence at p (1 for ASCII), or 0 when p does not start one. */
static size_t utf8_sequence_length(const unsigned char *p)
{
        /* The && chains stop at the terminating NUL, which is never a continuation byte. */
        if (p[0] < 0x80)
                return 1;
        if (p[0] >= 0xc2 && p[0] <= 0xdf)
                return (p[1] & 0xc0) == 0x80 ? 2 : 0;
        if (p[0] >= 0xe0 && p[0] <= 0xef) {
                /* Excludes overlong forms (E0 80..9F) and UTF-16 surrogates (ED A0..BF). */
                unsigned lo = p[0] == 0xe0 ? 0xa0 : 0x80, hi = p[0] == 0xed ? 0x9f : 0xbf;
                return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
        }
        if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                /* Excludes overlong forms (F0 80..8F) and code points above U+10FFFF (F4 90..). */
                unsigned lo = p[0] == 0xf0 ? 0x90 : 0x80, hi = p[0] == 0xf4 ? 0x8f : 0xbf;
                return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80 ? 4 : 0;
        }
        return 0;
}

/*
 * Appends `s` escaped for a HELP line (backslash, newline) or a label value (also the double quote).
 * Bytes that are not UTF-8 become U+FFFD: Prometheus rejects a whole scrape over one invalid label
 * value, and label values may come from requests (RPC method names).
 */
static int append_escaped(SbxBuffer *out, const char *s, bool quote)
{
        const char *run = s;
        int r;

        for (const char *p = s;; p++) {
                const char *esc = NULL;
                size_t n;

                switch (*p) {
                case '\\':
                        esc = "\\\\";
                        break;
                case '\n':
                        esc = "\\n";
                        break;
                case '"':
                        if (!quote)
                                continue;
                        esc = "\\\"";
                        break;
                case '\0':
                        break;
                default:
                        n = utf8_sequence_length((const unsigned char *)p);
                        if (n > 0) {
                                p += n - 1;
                                continue;
                        }
                        esc = "\xef\xbf\xbd"; /* U+FFFD REPLACEMENT CHARACTER */
                        break;
                }

                r = sbx_buffer_append(out, run, (size_t)(p - run));
                if (r < 0)
                        return r;
                if (!esc)
                        return 0;
                r = sbx_buffer_append_str(out, esc);
                if (r < 0)
                        return r;
                run = p + 1;
        }
}

/* Appends `{l1="v1",...,extra="extra_value"}`, or nothing when there are no labels at all. */
static int append_labels(SbxBuffer *out, const Family *f, const SbxMetricSeries *s, const char *extra,
                         const char *extra_value)
{
        bool first = true;
        int r;

        if (f->n_labels == 0 && !extra)
                return 0;
        r = sbx_buffer_append_str(out, "{");
        if (r < 0)
                return r;
        for (size_t i = 0; i <= f->n_labels; i++) {
                const char *name = i < f->n_labels ? f->label_names[i] : extra;
                const char *value = i < f->n_labels ? s->values[i] : extra_value;

                if (!name)
                        break;
                r = sbx_buffer_appendf(out, "%s%s=\"", first ? "" : ",", name);
                if (r < 0)
                        return r;
                r = append_escaped(out, value, true);
                if (r < 0)
                        return r;
                r = sbx_buffer_append_str(out, "\"");
                if (r < 0)
                        return r;
                first = false;
        }
        return sbx_buffer_append_str(out, "}");
}

static int append_sample(SbxBuffer *out, const Family *f, const char *suffix, const SbxMetricSeries *s,
                         const char *extra, const char *extra_value, double v)
{
        char num[32];
        int r;

        r = sbx_buffer_appendf(out, "%s%s", f->name, suffix);
        if (r < 0)
                return r;
        r = append_labels(out, f, s, extra, extra_value);
        if (r < 0)
                return r;
        format_value(v, num);
        return sbx_buffer_appendf(out, " %s\n", num);
}

static int render_histogram_series(SbxBuffer *out, const Family *f, SbxMetricSeries *s)
{
        uint64_t cumulative = 0;
        char le[32];
        int r;

        /* _count is the +Inf bucket by construction, so the two agree even while observations race. */
        for (size_t i = 0; i <= f->n_buckets; i++) {
                cumulative += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
                format_value(i < f->n_buckets ? f->buckets[i] : INFINITY, le);
                r = append_sample(out, f, "_bucket", s, "le", le, (double)cumulative);
                if (r < 0)
                        return r;
        }
        r = append_sample(out, f, "_sum", s, NULL, NULL, atomic_double_load(&s->value));
        if (r < 0)
                return r;
        return append_sample(out, f, "_count", s, NULL, NULL, (double)cumulative);
}

static int render_family(SbxBuffer *out, Family *f)
{
        int r;

        /* An empty HELP line carries nothing; the format allows leaving it out. */
        if (!isempty(f->help)) {
                r = sbx_buffer_appendf(out, "# HELP %s ", f->name);
                if (r < 0)
                        return r;
                r = append_escaped(out, f->help, false);
                if (r < 0)
                        return r;
                r = sbx_buffer_append_str(out, "\n");
                if (r < 0)
                        return r;
        }
        r = sbx_buffer_appendf(out, "# TYPE %s %s\n", f->name, family_type_names[f->type]);
        if (r < 0)
                return r;

        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < f->n_series; i++) {
                SbxMetricSeries *s = f->series[i];

                if (!atomic_load_explicit(&s->present, memory_order_relaxed))
                        continue;
                if (f->type == FAMILY_HISTOGRAM)
                        r = render_histogram_series(out, f, s);
                else
                        r = append_sample(out, f, "", s, NULL, NULL, atomic_double_load(&s->value));
                if (r < 0)
                        break;
        }
        pthread_mutex_unlock(&f->lock);
        return r < 0 ? r : 0;
}

int sbx_metrics_render(SbxMetrics *m, SbxBuffer *out)
{
        size_t size_before;
        int r = 0;

        if (!m || !out)
                return -EINVAL;

        /* Collectors run without the registry lock held, so that they may use the whole API. */
        for (size_t i = 0;; i++) {
                Collector c;

                pthread_mutex_lock(&m->lock);
                if (i >= m->n_collectors) {
                        pthread_mutex_unlock(&m->lock);
                        break;
                }
                c = m->collectors[i];
                pthread_mutex_unlock(&m->lock);
                c.fn(m, c.userdata);
        }

        size_before = sbx_buffer_size(out);
        pthread_mutex_lock(&m->lock);
        for (Family *f = m->families; f; f = f->next) {
                r = render_family(out, f);
                if (r < 0)
                        break;
        }
        pthread_mutex_unlock(&m->lock);

        /* Leave no half exposition behind. Appending may compact the buffer but keeps `start` at the first
         * unread byte, so the earlier contents are exactly size_before bytes from there. */
        if (r < 0)
                out->end = out->start + size_before;
        return r;
}
