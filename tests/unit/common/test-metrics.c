/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "common/base/buffer.h"
#include "common/base/macro.h"
#include "common/base/string-util.h"
#include "common/metrics/metrics-http.h"
#include "common/metrics/metrics.h"

/* Every registry exposes this built-in family first. */
#define DROPPED_HEADER                                                                                     \
        "# HELP sbx_metrics_series_dropped_total Series not created because their family already had the " \
        "maximum number.\n"                                                                                \
        "# TYPE sbx_metrics_series_dropped_total counter\n"

/*
 * Criterion counts a test as passed even when LeakSanitizer reports its process at exit, so sanitizer
 * builds run a leak check at the end of each test instead.
 */
static void expect_no_leaks(void)
{
#if defined(__SANITIZE_ADDRESS__)
        cr_expect_eq(__lsan_do_recoverable_leak_check(), 0,
                     "LeakSanitizer found leaks, see its report above");
#endif
}

static SbxMetrics *new_registry(void)
{
        SbxMetrics *m = NULL;

        cr_assert_eq(sbx_metrics_new(&m), 0);
        cr_assert_not_null(m);
        return m;
}

/* Renders into a NUL-terminated string the caller frees. */
static char *render(SbxMetrics *m)
{
        SbxBuffer b = SBX_BUFFER_INIT;
        char *s = NULL;

        cr_assert_eq(sbx_metrics_render(m, &b), 0);
        cr_assert_eq(sbx_buffer_steal_string(&b, &s), 0);
        sbx_buffer_done(&b);
        return s;
}

/* ---- registration ---- */

Test(metrics, registration_rejects_bad_names)
{
        SbxMetrics *m = new_registry();
        SbxCounter *c = (SbxCounter *)0x1;
        SbxHistogram *h = (SbxHistogram *)0x1;

        cr_expect_eq(sbx_metrics_counter(m, "", "x", NULL, &c), -EINVAL);
        cr_expect_eq(sbx_metrics_counter(m, NULL, "x", NULL, &c), -EINVAL);
        cr_expect_eq(sbx_metrics_counter(m, "1abc", "x", NULL, &c), -EINVAL);
        cr_expect_eq(sbx_metrics_counter(m, "a-b", "x", NULL, &c), -EINVAL);
        cr_expect_eq(sbx_metrics_counter(m, "a b", "x", NULL, &c), -EINVAL);
        cr_expect_eq(sbx_metrics_counter(m, "ok_total", "x", SBX_LABEL_NAMES("__reserved"), &c), -EINVAL);
        cr_expect_eq(sbx_metrics_counter(m, "ok_total", "x", SBX_LABEL_NAMES("9lives"), &c), -EINVAL);
        cr_expect_eq(sbx_metrics_counter(m, "ok_total", "x", SBX_LABEL_NAMES("a:b"), &c), -EINVAL);
        cr_expect_eq(sbx_metrics_counter(m, "ok_total", "x", SBX_LABEL_NAMES(""), &c), -EINVAL);
        cr_expect_eq(sbx_metrics_counter(m, "ok_total", "x", SBX_LABEL_NAMES("a", "a"), &c), -EINVAL);
        cr_expect_eq(sbx_metrics_histogram(m, "h_seconds", "x", SBX_LABEL_NAMES("op", "le"),
                                           sbx_metrics_buckets_latency, sbx_metrics_buckets_latency_n, &h),
                     -EINVAL);
        /* Failures leave the out-parameter alone. */
        cr_expect_eq(c, (SbxCounter *)0x1);
        cr_expect_eq(h, (SbxHistogram *)0x1);

        /* Names with colons and digits after the first character are fine; "le" is only special for
         * histograms. */
        cr_expect_eq(sbx_metrics_counter(m, "sbx:rule_1_total", "x", SBX_LABEL_NAMES("le", "_a1"), &c), 0);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics, registration_rejects_duplicates_and_too_many_labels)
{
        SbxMetrics *m = new_registry();
        SbxCounter *c;
        SbxGauge *g;
        SbxHistogram *h;

        cr_assert_eq(sbx_metrics_counter(m, "a_total", "A.", NULL, &c), 0);
        cr_expect_eq(sbx_metrics_counter(m, "a_total", "A again.", NULL, &c), -EEXIST);
        cr_expect_eq(sbx_metrics_gauge(m, "a_total", "A as a gauge.", NULL, &g), -EEXIST);
        cr_expect_eq(sbx_metrics_counter(m, "sbx_metrics_series_dropped_total", "x", NULL, &c), -EEXIST);

        /* A histogram's sample names must not collide with another family's. */
        cr_assert_eq(sbx_metrics_histogram(m, "h", "H.", NULL, NULL, 0, &h), 0);
        cr_expect_eq(sbx_metrics_gauge(m, "h_count", "x", NULL, &g), -EEXIST);
        cr_expect_eq(sbx_metrics_gauge(m, "h_bucket", "x", NULL, &g), -EEXIST);
        cr_assert_eq(sbx_metrics_gauge(m, "g_sum", "x", NULL, &g), 0);
        cr_expect_eq(sbx_metrics_histogram(m, "g", "x", NULL, NULL, 0, &h), -EEXIST);

        cr_expect_eq(
                sbx_metrics_gauge(m, "wide", "x", SBX_LABEL_NAMES("a", "b", "c", "d", "e", "f", "g"), &g),
                -EINVAL);
        cr_expect_eq(sbx_metrics_gauge(m, "wide", "x", SBX_LABEL_NAMES("a", "b", "c", "d", "e", "f"), &g),
                     0);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics, registration_checks_buckets)
{
        SbxMetrics *m = new_registry();
        double many[33];
        SbxHistogram *h;

        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                many[i] = (double)i + 1;
        cr_expect_eq(sbx_metrics_histogram(m, "h1", "x", NULL, (double[]){ 1, 1 }, 2, &h), -EINVAL);
        cr_expect_eq(sbx_metrics_histogram(m, "h2", "x", NULL, (double[]){ 2, 1 }, 2, &h), -EINVAL);
        cr_expect_eq(sbx_metrics_histogram(m, "h3", "x", NULL, (double[]){ 1, NAN }, 2, &h), -EINVAL);
        cr_expect_eq(sbx_metrics_histogram(m, "h4", "x", NULL, (double[]){ 1, INFINITY }, 2, &h), -EINVAL);
        cr_expect_eq(sbx_metrics_histogram(m, "h5", "x", NULL, many, 33, &h), -EINVAL);
        cr_expect_eq(sbx_metrics_histogram(m, "h6", "x", NULL, many, 32, &h), 0);
        cr_expect_eq(sbx_metrics_histogram(m, "h7", "x", NULL, sbx_metrics_buckets_boot,
                                           sbx_metrics_buckets_boot_n, &h),
                     0);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics, bucket_constants)
{
        cr_assert_eq(sbx_metrics_buckets_latency[0], 0.0005);
        cr_assert_eq(sbx_metrics_buckets_latency[sbx_metrics_buckets_latency_n - 1], 10);
        cr_assert_eq(sbx_metrics_buckets_boot[0], 0.01);
        cr_assert_eq(sbx_metrics_buckets_boot[sbx_metrics_buckets_boot_n - 1], 60);
        for (size_t i = 1; i < sbx_metrics_buckets_latency_n; i++)
                cr_assert_gt(sbx_metrics_buckets_latency[i], sbx_metrics_buckets_latency[i - 1]);
        for (size_t i = 1; i < sbx_metrics_buckets_boot_n; i++)
                cr_assert_gt(sbx_metrics_buckets_boot[i], sbx_metrics_buckets_boot[i - 1]);
}

/* ---- values ---- */

Test(metrics, counter_values)
{
        SbxMetrics *m = new_registry();
        SbxCounter *plain, *labeled;

        cr_assert_eq(sbx_metrics_counter(m, "plain_total", "P.", NULL, &plain), 0);
        cr_assert_eq(sbx_metrics_counter(m, "labeled_total", "L.", SBX_LABEL_NAMES("code"), &labeled), 0);

        cr_expect_eq(sbx_counter_get(plain, NULL), 0);
        sbx_counter_inc(plain, NULL);
        sbx_counter_add(plain, NULL, 2.5);
        sbx_counter_add(plain, NULL, -10); /* counters only go up */
        sbx_counter_add(plain, NULL, NAN);
        cr_expect_eq(sbx_counter_get(plain, NULL), 3.5);

        sbx_counter_inc(labeled, SBX_LABELS("OK"));
        sbx_counter_inc(labeled, SBX_LABELS("OK"));
        sbx_counter_inc(labeled, SBX_LABELS("NOT_FOUND"));
        cr_expect_eq(sbx_counter_get(labeled, SBX_LABELS("OK")), 2);
        cr_expect_eq(sbx_counter_get(labeled, SBX_LABELS("NOT_FOUND")), 1);
        cr_expect_eq(sbx_counter_get(labeled, SBX_LABELS("INTERNAL")), 0);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics, gauge_values_and_reset)
{
        SbxMetrics *m = new_registry();
        SbxGauge *g;
        char *text;

        cr_assert_eq(sbx_metrics_gauge(m, "sandboxes", "Sandboxes by state.", SBX_LABEL_NAMES("state"), &g),
                     0);
        sbx_gauge_set(g, SBX_LABELS("running"), 5);
        sbx_gauge_add(g, SBX_LABELS("running"), -2);
        sbx_gauge_add(g, SBX_LABELS("stopped"), 1.5);
        cr_expect_eq(sbx_gauge_get(g, SBX_LABELS("running")), 3);
        cr_expect_eq(sbx_gauge_get(g, SBX_LABELS("stopped")), 1.5);

        sbx_gauge_reset(g);
        cr_expect_eq(sbx_gauge_get(g, SBX_LABELS("running")), 0);
        text = render(m);
        cr_expect_str_eq(text, DROPPED_HEADER "# HELP sandboxes Sandboxes by state.\n"
                                              "# TYPE sandboxes gauge\n");
        free(text);

        sbx_gauge_set(g, SBX_LABELS("stopped"), 7);
        text = render(m);
        cr_expect_str_eq(text, DROPPED_HEADER "# HELP sandboxes Sandboxes by state.\n"
                                              "# TYPE sandboxes gauge\n"
                                              "sandboxes{state=\"stopped\"} 7\n");
        free(text);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics, histogram_values)
{
        SbxMetrics *m = new_registry();
        SbxHistogram *h;

        cr_assert_eq(sbx_metrics_histogram(m, "op_seconds", "Ops.", SBX_LABEL_NAMES("op"),
                                           (double[]){ 0.1, 1 }, 2, &h),
                     0);
        cr_expect_eq(sbx_histogram_count(h, SBX_LABELS("read")), 0);
        sbx_histogram_observe(h, SBX_LABELS("read"), 0.1); /* bounds are inclusive */
        sbx_histogram_observe(h, SBX_LABELS("read"), 0.5);
        sbx_histogram_observe(h, SBX_LABELS("read"), 100);
        sbx_histogram_observe(h, SBX_LABELS("read"), NAN); /* ignored */
        sbx_histogram_observe(h, SBX_LABELS("write"), -1);
        cr_expect_eq(sbx_histogram_count(h, SBX_LABELS("read")), 3);
        cr_expect_eq(sbx_histogram_count(h, SBX_LABELS("write")), 1);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics, wrong_label_count_is_ignored)
{
        SbxMetrics *m = new_registry();
        SbxCounter *c, *plain;
        SbxHistogram *h;
        char *text;

        cr_assert_eq(sbx_metrics_counter(m, "two_total", "Two.", SBX_LABEL_NAMES("a", "b"), &c), 0);
        cr_assert_eq(sbx_metrics_counter(m, "none_total", "None.", NULL, &plain), 0);
        cr_assert_eq(sbx_metrics_histogram(m, "h", "H.", SBX_LABEL_NAMES("a"), NULL, 0, &h), 0);
        sbx_counter_inc(c, NULL);
        sbx_counter_inc(c, SBX_LABELS("x"));
        sbx_counter_inc(c, SBX_LABELS("x", "y", "z"));
        sbx_counter_inc(c, SBX_LABELS("1", "2", "3", "4", "5", "6", "7", "8"));
        sbx_counter_inc(plain, SBX_LABELS("x"));
        sbx_histogram_observe(h, NULL, 1);
        cr_expect_eq(sbx_counter_get(c, SBX_LABELS("x")), 0);

        text = render(m);
        cr_expect_str_eq(text, DROPPED_HEADER "# HELP two_total Two.\n"
                                              "# TYPE two_total counter\n"
                                              "# HELP none_total None.\n"
                                              "# TYPE none_total counter\n"
                                              "# HELP h H.\n"
                                              "# TYPE h histogram\n");
        free(text);
        sbx_metrics_free(m);
        expect_no_leaks();
}

#define N_THREADS    8
#define N_INCREMENTS 100000
#define N_NEW_SERIES 64

typedef struct Hammer {
        SbxCounter *c;
        SbxHistogram *h;
        int id;
} Hammer;

static void *hammer(void *arg)
{
        Hammer *w = arg;
        char label[16];

        for (int i = 0; i < N_INCREMENTS; i++) {
                sbx_counter_inc(w->c, SBX_LABELS("shared"));
                /* Every thread also creates series the others are creating at the same time. */
                if (i % 1000 == 0) {
                        snprintf(label, sizeof(label), "s%d", (i / 1000) % N_NEW_SERIES);
                        sbx_counter_inc(w->c, SBX_LABELS(label));
                        sbx_histogram_observe(w->h, NULL, 0.25);
                }
        }
        return NULL;
}

Test(metrics, concurrent_increments_are_exact)
{
        SbxMetrics *m = new_registry();
        pthread_t threads[N_THREADS];
        Hammer work[N_THREADS];
        SbxCounter *c;
        SbxHistogram *h;
        double per_series = 0;

        cr_assert_eq(sbx_metrics_counter(m, "hits_total", "Hits.", SBX_LABEL_NAMES("k"), &c), 0);
        cr_assert_eq(sbx_metrics_histogram(m, "h", "H.", NULL, (double[]){ 0.5 }, 1, &h), 0);
        for (int i = 0; i < N_THREADS; i++) {
                work[i] = (Hammer){ .c = c, .h = h, .id = i };
                cr_assert_eq(pthread_create(&threads[i], NULL, hammer, &work[i]), 0);
        }
        for (int i = 0; i < N_THREADS; i++)
                pthread_join(threads[i], NULL);

        cr_expect_eq(sbx_counter_get(c, SBX_LABELS("shared")), (double)N_THREADS * N_INCREMENTS);
        for (int i = 0; i < N_NEW_SERIES; i++) {
                char label[16];
                snprintf(label, sizeof(label), "s%d", i);
                per_series += sbx_counter_get(c, SBX_LABELS(label));
        }
        cr_expect_eq(per_series, (double)N_THREADS * (N_INCREMENTS / 1000));
        cr_expect_eq(sbx_histogram_count(h, NULL), (uint64_t)N_THREADS * (N_INCREMENTS / 1000));
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics, series_per_family_are_bounded)
{
        SbxMetrics *m = new_registry();
        SbxGauge *g;
        char label[16], *text;

        cr_assert_eq(sbx_metrics_gauge(m, "wide", "Wide.", SBX_LABEL_NAMES("id"), &g), 0);
        for (int i = 0; i < 10002; i++) {
                snprintf(label, sizeof(label), "%05d", i);
                sbx_gauge_set(g, SBX_LABELS(label), i);
        }
        /* The first 10,000 exist, the last two were dropped and counted; existing series still update. */
        cr_expect_eq(sbx_gauge_get(g, SBX_LABELS("09999")), 9999);
        cr_expect_eq(sbx_gauge_get(g, SBX_LABELS("10000")), 0);
        sbx_gauge_set(g, SBX_LABELS("00000"), -1);
        cr_expect_eq(sbx_gauge_get(g, SBX_LABELS("00000")), -1);

        text = render(m);
        cr_expect(strstr(text, "sbx_metrics_series_dropped_total{metric=\"wide\"} 2\n") != NULL);
        cr_expect(strstr(text, "wide{id=\"09999\"} 9999\n") != NULL);
        cr_expect(strstr(text, "wide{id=\"10000\"}") == NULL);
        free(text);
        sbx_metrics_free(m);
        expect_no_leaks();
}

/* ---- exposition ---- */

Test(metrics, exposition_is_exact)
{
        SbxMetrics *m = new_registry();
        SbxCounter *c;
        SbxGauge *g, *empty;
        SbxHistogram *h;
        char *text;

        cr_assert_eq(sbx_metrics_counter(m, "sbx_requests_total", "Requests handled.",
                                         SBX_LABEL_NAMES("method", "code"), &c),
                     0);
        cr_assert_eq(sbx_metrics_gauge(m, "sbx_temperature_celsius", "Temperature.", NULL, &g), 0);
        cr_assert_eq(sbx_metrics_histogram(m, "sbx_latency_seconds", "Latency.", SBX_LABEL_NAMES("op"),
                                           (double[]){ 0.1, 1 }, 2, &h),
                     0);
        cr_assert_eq(sbx_metrics_gauge(m, "sbx_empty", "No series yet.", SBX_LABEL_NAMES("k"), &empty), 0);

        /* Created out of order: the output is sorted by label values. */
        sbx_counter_inc(c, SBX_LABELS("b", "OK"));
        sbx_counter_add(c, SBX_LABELS("a", "OK"), 1);
        sbx_counter_add(c, SBX_LABELS("a", "NOT_FOUND"), 2);
        sbx_gauge_set(g, NULL, 21.5);
        sbx_histogram_observe(h, SBX_LABELS("y"), 2);
        sbx_histogram_observe(h, SBX_LABELS("x"), 0.0625);
        sbx_histogram_observe(h, SBX_LABELS("x"), 0.5);
        sbx_histogram_observe(h, SBX_LABELS("x"), 3);

        text = render(m);
        cr_expect_str_eq(text, DROPPED_HEADER "# HELP sbx_requests_total Requests handled.\n"
                                              "# TYPE sbx_requests_total counter\n"
                                              "sbx_requests_total{method=\"a\",code=\"NOT_FOUND\"} 2\n"
                                              "sbx_requests_total{method=\"a\",code=\"OK\"} 1\n"
                                              "sbx_requests_total{method=\"b\",code=\"OK\"} 1\n"
                                              "# HELP sbx_temperature_celsius Temperature.\n"
                                              "# TYPE sbx_temperature_celsius gauge\n"
                                              "sbx_temperature_celsius 21.5\n"
                                              "# HELP sbx_latency_seconds Latency.\n"
                                              "# TYPE sbx_latency_seconds histogram\n"
                                              "sbx_latency_seconds_bucket{op=\"x\",le=\"0.1\"} 1\n"
                                              "sbx_latency_seconds_bucket{op=\"x\",le=\"1\"} 2\n"
                                              "sbx_latency_seconds_bucket{op=\"x\",le=\"+Inf\"} 3\n"
                                              "sbx_latency_seconds_sum{op=\"x\"} 3.5625\n"
                                              "sbx_latency_seconds_count{op=\"x\"} 3\n"
                                              "sbx_latency_seconds_bucket{op=\"y\",le=\"0.1\"} 0\n"
                                              "sbx_latency_seconds_bucket{op=\"y\",le=\"1\"} 0\n"
                                              "sbx_latency_seconds_bucket{op=\"y\",le=\"+Inf\"} 1\n"
                                              "sbx_latency_seconds_sum{op=\"y\"} 2\n"
                                              "sbx_latency_seconds_count{op=\"y\"} 1\n"
                                              "# HELP sbx_empty No series yet.\n"
                                              "# TYPE sbx_empty gauge\n");
        free(text);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics, exposition_escapes_help_and_label_values)
{
        SbxMetrics *m = new_registry();
        SbxGauge *g;
        char *text;

        cr_assert_eq(sbx_metrics_gauge(m, "esc", "Back\\slash, \"quotes\" and\na newline.",
                                       SBX_LABEL_NAMES("v"), &g),
                     0);
        sbx_gauge_set(g, SBX_LABELS("a\\b\"c\nd"), 1);
        sbx_gauge_set(g, SBX_LABELS("bad\xff\xc3(\xed\xa0\x80"), 2);
        sbx_gauge_set(g, SBX_LABELS("good \xc3\xbc \xe2\x9c\x93 \xf0\x9f\x98\x80"), 3);
        text = render(m);
        /* HELP escapes only backslash and newline; label values also escape the double quote. Bytes that
         * are not UTF-8 (here a stray byte, a truncated sequence and a surrogate) become U+FFFD. */
        cr_expect_str_eq(text, DROPPED_HEADER
                         "# HELP esc Back\\\\slash, \"quotes\" and\\na newline.\n"
                         "# TYPE esc gauge\n"
                         "esc{v=\"a\\\\b\\\"c\\nd\"} 1\n"
                         "esc{v=\"bad\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 2\n"
                         "esc{v=\"good \xc3\xbc \xe2\x9c\x93 \xf0\x9f\x98\x80\"} 3\n");
        free(text);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics, exposition_number_formats)
{
        static const struct {
                const char *label;
                double value;
                const char *text;
        } cases[] = {
                { "a", 0, "0" },
                { "b", -0.0, "0" },
                { "c", 42, "42" },
                { "d", -7, "-7" },
                { "e", 1234567890123, "1234567890123" },
                { "f", 0.1, "0.1" },
                { "g", 1.0 / 3, "0.3333333333333333" },
                { "h", 2.5e-7, "2.5e-07" },
                { "i", 1e300, "1e+300" },
                { "j", INFINITY, "+Inf" },
                { "k", -INFINITY, "-Inf" },
                { "l", NAN, "NaN" },
                { "m", 9007199254740993.0 * 4, "3.602879701896397e+16" },
        };
        SbxMetrics *m = new_registry();
        SbxGauge *g;
        char *text, want[128];

        cr_assert_eq(sbx_metrics_gauge(m, "num", "Numbers.", SBX_LABEL_NAMES("k"), &g), 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                sbx_gauge_set(g, SBX_LABELS(cases[i].label), cases[i].value);
        text = render(m);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                snprintf(want, sizeof(want), "\nnum{k=\"%s\"} %s\n", cases[i].label, cases[i].text);
                cr_expect(strstr(text, want) != NULL, "missing %s in:\n%s", want + 1, text);
        }
        free(text);
        sbx_metrics_free(m);
        expect_no_leaks();
}

typedef struct CollectorState {
        SbxGauge *g;
        int calls;
        char order[8];
} CollectorState;

static void collector_a(SbxMetrics *m, void *userdata)
{
        CollectorState *st = userdata;

        st->order[strlen(st->order)] = 'a';
        sbx_gauge_reset(st->g);
        sbx_gauge_set(st->g, SBX_LABELS("running"), ++st->calls);
}

static void collector_b(SbxMetrics *m, void *userdata)
{
        CollectorState *st = userdata;

        st->order[strlen(st->order)] = 'b';
}

Test(metrics, collectors_run_before_render_in_order)
{
        SbxMetrics *m = new_registry();
        CollectorState st = { 0 };
        char *text;

        cr_assert_eq(sbx_metrics_gauge(m, "sandboxes", "By state.", SBX_LABEL_NAMES("state"), &st.g), 0);
        cr_assert_eq(sbx_metrics_add_collector(m, collector_a, &st), 0);
        cr_assert_eq(sbx_metrics_add_collector(m, collector_b, &st), 0);
        cr_expect_eq(sbx_metrics_add_collector(m, NULL, NULL), -EINVAL);

        text = render(m);
        cr_expect_str_eq(st.order, "ab");
        cr_expect(strstr(text, "sandboxes{state=\"running\"} 1\n") != NULL, "%s", text);
        free(text);
        text = render(m);
        cr_expect_str_eq(st.order, "abab");
        cr_expect(strstr(text, "sandboxes{state=\"running\"} 2\n") != NULL, "%s", text);
        free(text);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics, render_failure_leaves_buffer_unchanged)
{
        SbxMetrics *m = new_registry();
        SbxBuffer b = SBX_BUFFER_INIT;
        SbxGauge *g;

        cr_assert_eq(sbx_metrics_gauge(m, "g", "G.", NULL, &g), 0);
        sbx_gauge_set(g, NULL, 1);
        cr_assert_eq(sbx_buffer_append_str(&b, "keep"), 0);
        sbx_buffer_set_limit(&b, 64);
        cr_expect_eq(sbx_metrics_render(m, &b), -ENOBUFS);
        cr_expect_eq(sbx_buffer_size(&b), 4);
        cr_expect_eq(memcmp(sbx_buffer_data(&b), "keep", 4), 0);
        sbx_buffer_done(&b);
        sbx_metrics_free(m);
        expect_no_leaks();
}

static void fill_every_kind(SbxMetrics *m)
{
        SbxCounter *c, *plain;
        SbxGauge *g, *empty;
        SbxHistogram *h, *boot;

        cr_assert_eq(sbx_metrics_counter(m, "sbx_rpc_server_requests_total", "RPCs handled.",
                                         SBX_LABEL_NAMES("method", "code"), &c),
                     0);
        cr_assert_eq(sbx_metrics_counter(m, "sbx_restarts_total", "Restarts, with a \\ and a\nnewline.",
                                         NULL, &plain),
                     0);
        cr_assert_eq(
                sbx_metrics_gauge(m, "sbx_sandboxes", "Sandboxes by state.", SBX_LABEL_NAMES("state"), &g),
                0);
        cr_assert_eq(
                sbx_metrics_gauge(m, "sbx_unused", "A family without series.", SBX_LABEL_NAMES("k"), &empty),
                0);
        cr_assert_eq(sbx_metrics_histogram(m, "sbx_rpc_server_latency_seconds", "RPC latency.",
                                           SBX_LABEL_NAMES("method"), sbx_metrics_buckets_latency,
                                           sbx_metrics_buckets_latency_n, &h),
                     0);
        cr_assert_eq(sbx_metrics_histogram(m, "sbx_boot_seconds", "Boot time.", NULL,
                                           sbx_metrics_buckets_boot, sbx_metrics_buckets_boot_n, &boot),
                     0);

        sbx_counter_inc(c, SBX_LABELS("/sbx.v1.Sandboxes/Create", "OK"));
        sbx_counter_add(c, SBX_LABELS("/sbx.v1.Sandboxes/Delete", "NOT_FOUND"), 3);
        sbx_counter_add(plain, NULL, 0.5);
        sbx_gauge_set(g, SBX_LABELS("running"), 12);
        sbx_gauge_set(g, SBX_LABELS("quote\"back\\slash\nnewline"), -0.25);
        sbx_gauge_set(g, SBX_LABELS("inf"), INFINITY);
        sbx_gauge_set(g, SBX_LABELS("-inf"), -INFINITY);
        sbx_gauge_set(g, SBX_LABELS("nan"), NAN);
        sbx_gauge_set(g, SBX_LABELS("tiny"), 1e-300);
        sbx_gauge_set(g, SBX_LABELS("ütf-8 ✓"), 1e300);
        sbx_gauge_set(g, SBX_LABELS("not utf-8 \xff"), 2);
        for (int i = 0; i < 50; i++)
                sbx_histogram_observe(h, SBX_LABELS(i % 2 ? "Create" : "Delete"), i * 0.01);
        sbx_histogram_observe(boot, NULL, 2.7);
        sbx_histogram_observe(boot, NULL, 100);
}

Test(metrics, promtool_accepts_exposition, .timeout = 60)
{
        SbxMetrics *m = new_registry();
        char path[] = "/tmp/sbx-test-metrics-XXXXXX", out_path[] = "/tmp/sbx-test-promtool-XXXXXX";
        char *argv[] = { "promtool", "check", "metrics", NULL };
        posix_spawn_file_actions_t fa;
        _cleanup_free_ char *text = NULL;
        char output[4096] = "";
        int fd, out_fd, status, r;
        pid_t pid;

        fill_every_kind(m);
        text = render(m);
        /* Both files are unlinked at once: the open descriptors are all promtool and we need. */
        fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        unlink(path);
        cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
        out_fd = mkstemp(out_path);
        cr_assert_geq(out_fd, 0);
        unlink(out_path);

        /* promtool reads the exposition on stdin; its findings go to a file we show on failure. */
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fd, STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDERR_FILENO);
        r = posix_spawnp(&pid, "promtool", &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        cr_assert_eq(
                r, 0,
                "Cannot run promtool (%s). It is part of the Debian package 'prometheus', which `make deps` "
                "installs.",
                strerror(r));
        cr_assert_eq(waitpid(pid, &status, 0), pid);

        ssize_t n = pread(out_fd, output, sizeof(output) - 1, 0);
        output[n > 0 ? n : 0] = '\0';
        close(fd);
        close(out_fd);
        cr_assert(WIFEXITED(status), "promtool did not exit normally");
        cr_assert_eq(WEXITSTATUS(status), 0, "promtool check metrics failed with %d:\n%s\nExposition:\n%s",
                     WEXITSTATUS(status), output, text);
        sbx_metrics_free(m);
        expect_no_leaks();
}

/* ---- the HTTP endpoint ---- */

#define MAX_EXCHANGES 8

typedef struct Exchange {
        const char *request;
        char *response; /* everything read until the server closed the connection */
} Exchange;

typedef struct Client {
        int family;
        int port;
        Exchange exchanges[MAX_EXCHANGES];
        size_t n_exchanges;
        uv_async_t *finished;
} Client;

static int connect_to(int family, int port)
{
        struct sockaddr_storage sa = { 0 };
        socklen_t len;
        int fd;

        if (family == AF_INET6) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&sa;
                sin6->sin6_family = AF_INET6;
                sin6->sin6_port = htons((uint16_t)port);
                sin6->sin6_addr = in6addr_loopback;
                len = sizeof(*sin6);
        } else {
                struct sockaddr_in *sin = (struct sockaddr_in *)&sa;
                sin->sin_family = AF_INET;
                sin->sin_port = htons((uint16_t)port);
                sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                len = sizeof(*sin);
        }
        fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, len) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* A plain blocking HTTP/1.1 client: writes the request as given, reads until the server closes. */
static char *exchange(int family, int port, const char *request)
{
        SbxBuffer b = SBX_BUFFER_INIT;
        char buf[4096], *s = NULL;
        int fd = connect_to(family, port);
        ssize_t n;

        if (fd < 0)
                return NULL;
        if (write(fd, request, strlen(request)) != (ssize_t)strlen(request)) {
                close(fd);
                return NULL;
        }
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                if (sbx_buffer_append(&b, buf, (size_t)n) < 0)
                        break;
        close(fd);
        if (sbx_buffer_steal_string(&b, &s) < 0)
                s = NULL;
        sbx_buffer_done(&b);
        return s;
}

static void *client_thread(void *arg)
{
        Client *c = arg;

        for (size_t i = 0; i < c->n_exchanges; i++)
                c->exchanges[i].response = exchange(c->family, c->port, c->exchanges[i].request);
        /* The only thread-safe way into the loop. */
        uv_async_send(c->finished);
        return NULL;
}

typedef struct Harness {
        uv_loop_t loop;
        uv_async_t finished;
        uv_timer_t ticker;
        SbxMetricsServer *server;
        bool done;
        int ticks_after_done;
} Harness;

static void on_server_done(void *userdata)
{
        Harness *t = userdata;

        t->done = true;
}

static void on_tick(uv_timer_t *timer)
{
        Harness *t = timer->data;

        /* The caller's own handles keep working after the server is gone: lws did not stop the loop. */
        if (t->done && ++t->ticks_after_done == 3)
                uv_close((uv_handle_t *)timer, NULL);
}

static void on_client_finished(uv_async_t *async)
{
        Harness *t = async->data;

        sbx_metrics_server_close(t->server, on_server_done, t);
        uv_close((uv_handle_t *)async, NULL);
}

/* Starts a server on `address`, runs the client's exchanges from a thread, closes the server and runs the
 * loop until every handle is closed. */
static void serve(SbxMetrics *m, const char *address, Client *c)
{
        Harness t = { 0 };
        pthread_t thread;
        int port = -1;

        cr_assert_eq(uv_loop_init(&t.loop), 0);
        cr_assert_eq(sbx_metrics_server_new(&t.loop, m, address, &t.server, &port), 0);
        cr_assert_gt(port, 0);
        cr_assert_eq(uv_async_init(&t.loop, &t.finished, on_client_finished), 0);
        t.finished.data = &t;
        cr_assert_eq(uv_timer_init(&t.loop, &t.ticker), 0);
        t.ticker.data = &t;
        cr_assert_eq(uv_timer_start(&t.ticker, on_tick, 5, 5), 0);

        c->port = port;
        c->finished = &t.finished;
        cr_assert_eq(pthread_create(&thread, NULL, client_thread, c), 0);
        cr_assert_eq(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
        pthread_join(thread, NULL);

        cr_expect(t.done, "the done callback did not run");
        cr_expect_eq(t.ticks_after_done, 3);
        cr_expect_eq(uv_loop_close(&t.loop), 0);
}

static void free_exchanges(Client *c)
{
        for (size_t i = 0; i < c->n_exchanges; i++)
                free(c->exchanges[i].response);
}

/* Helpers over a raw response; lws writes header names in lower case. */
static int response_status(const char *raw)
{
        int status = 0;

        if (!raw || sscanf(raw, "HTTP/1.%*d %d", &status) != 1)
                return -1;
        return status;
}

static const char *response_body(const char *raw)
{
        const char *p = raw ? strstr(raw, "\r\n\r\n") : NULL;

        /* Something no expected body equals, so that comparisons fail instead of crashing. */
        return p ? p + 4 : "<no response or no end of headers>";
}

static bool response_has_header(const char *raw, const char *line)
{
        const char *end = raw ? strstr(raw, "\r\n\r\n") : NULL;
        const char *p = raw ? strstr(raw, line) : NULL;

        return p && p < end;
}

Test(metrics_http, serves_metrics_healthz_404_and_405, .timeout = 60)
{
        SbxMetrics *m = new_registry();
        Client c = {
                .family = AF_INET,
                .exchanges = {
                        { "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", NULL },
                        { "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", NULL },
                        { "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", NULL },
                        { "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                          NULL },
                        { "DELETE /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", NULL },
                        { "HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", NULL },
                        /* Keep-alive: both responses on one connection, the first without a body. */
                        { "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\nGET /metrics HTTP/1.1\r\nHost: t\r\n"
                          "Connection: close\r\n\r\n",
                          NULL },
                },
                .n_exchanges = 7,
        };
        SbxCounter *requests;
        char *expected, want[64];

        cr_assert_eq(sbx_metrics_counter(m, "sbx_requests_total", "Requests.", SBX_LABEL_NAMES("code"),
                                         &requests),
                     0);
        sbx_counter_add(requests, SBX_LABELS("OK"), 41);
        expected = render(m);

        serve(m, "127.0.0.1:0", &c);

        const char *r = c.exchanges[0].response;
        cr_assert_not_null(r);
        cr_expect_eq(response_status(r), 200, "%s", r);
        cr_expect(response_has_header(r, "\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
                  "%s", r);
        snprintf(want, sizeof(want), "\r\ncontent-length: %zu\r\n", strlen(expected));
        cr_expect(response_has_header(r, want), "%s", r);
        cr_expect_str_eq(response_body(r), expected);

        r = c.exchanges[1].response;
        cr_expect_eq(response_status(r), 200, "%s", r);
        cr_expect(response_has_header(r, "\r\ncontent-length: 3\r\n"), "%s", r);
        cr_expect_str_eq(response_body(r), "ok\n");

        r = c.exchanges[2].response;
        cr_expect_eq(response_status(r), 404, "%s", r);

        for (int i = 3; i <= 4; i++) {
                r = c.exchanges[i].response;
                cr_expect_eq(response_status(r), 405, "%s", r);
                cr_expect(response_has_header(r, "\r\nallow: GET, HEAD\r\n"), "%s", r);
        }

        r = c.exchanges[5].response;
        cr_expect_eq(response_status(r), 200, "%s", r);
        cr_expect(response_has_header(r, want), "%s", r);
        cr_expect_str_eq(response_body(r), "", "HEAD must not send a body");

        r = c.exchanges[6].response;
        cr_assert_not_null(r);
        cr_expect_eq(response_status(r), 200, "%s", r);
        cr_expect(response_has_header(r, want), "%s", r);
        const char *second = strstr(response_body(r), "HTTP/1.1 ");
        cr_assert_not_null(second, "%s", r);
        cr_expect_eq(response_status(second), 200, "%s", r);
        cr_expect_str_eq(response_body(second), expected);

        free(expected);
        free_exchanges(&c);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics_http, large_exposition_is_sent_whole, .timeout = 60)
{
        SbxMetrics *m = new_registry();
        Client c = {
                .family = AF_INET,
                .exchanges = { { "GET /metrics HTTP/1.0\r\n\r\n", NULL } },
                .n_exchanges = 1,
        };
        SbxGauge *g;
        char label[64], *expected;

        cr_assert_eq(sbx_metrics_gauge(m, "wide", "Wide.", SBX_LABEL_NAMES("id"), &g), 0);
        for (int i = 0; i < 5000; i++) {
                snprintf(label, sizeof(label), "a-rather-long-but-bounded-label-value-%05d", i);
                sbx_gauge_set(g, SBX_LABELS(label), i * 1.5);
        }
        expected = render(m);
        cr_assert_gt(strlen(expected), 200000);

        serve(m, ":0", &c);
        cr_assert_not_null(c.exchanges[0].response);
        cr_expect_eq(response_status(c.exchanges[0].response), 200);
        cr_expect_str_eq(response_body(c.exchanges[0].response), expected);

        free(expected);
        free_exchanges(&c);
        sbx_metrics_free(m);
        expect_no_leaks();
}

static bool ipv6_loopback_works(void)
{
        struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        if (fd < 0)
                return false;
        ok = bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) == 0;
        close(fd);
        return ok;
}

Test(metrics_http, listens_on_ipv6_and_all_addresses, .timeout = 60)
{
        SbxMetrics *m = new_registry();
        Client c4 = {
                .family = AF_INET,
                .exchanges = { { "GET /healthz HTTP/1.0\r\n\r\n", NULL } },
                .n_exchanges = 1,
        };

        serve(m, ":0", &c4);
        cr_expect_eq(response_status(c4.exchanges[0].response), 200);
        free_exchanges(&c4);

        if (ipv6_loopback_works()) {
                Client c6 = {
                        .family = AF_INET6,
                        .exchanges = { { "GET /healthz HTTP/1.0\r\n\r\n", NULL } },
                        .n_exchanges = 1,
                };
                Client c6_any = c6;

                serve(m, "[::1]:0", &c6);
                cr_expect_eq(response_status(c6.exchanges[0].response), 200);
                free_exchanges(&c6);
                /* ":port" is dual-stack. */
                serve(m, ":0", &c6_any);
                cr_expect_eq(response_status(c6_any.exchanges[0].response), 200);
                free_exchanges(&c6_any);
        } else {
                cr_log_warn("No IPv6 loopback on this host: the [::1] part of this test did not run.");
        }
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics_http, rejects_malformed_addresses)
{
        static const char *const bad[] = {
                "",
                "127.0.0.1",
                "127.0.0.1:",
                "127.0.0.1:65536",
                "127.0.0.1:-1",
                "127.0.0.1:+80",
                "127.0.0.1:8x",
                "::1:9090",
                "[::1]",
                "[::1]9090",
                "[]:9090",
                "[127.0.0.1]:9090",
                "localhost:9090",
                "1.2.3:9090",
        };
        SbxMetrics *m = new_registry();
        uv_loop_t loop;

        cr_assert_eq(uv_loop_init(&loop), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                SbxMetricsServer *s = (SbxMetricsServer *)0x1;
                int port = -7;

                cr_expect_eq(sbx_metrics_server_new(&loop, m, bad[i], &s, &port), -EINVAL, "address '%s'",
                             bad[i]);
                cr_expect_eq(s, (SbxMetricsServer *)0x1);
                cr_expect_eq(port, -7);
        }
        cr_expect_eq(sbx_metrics_server_new(&loop, m, NULL, &(SbxMetricsServer *){ NULL }, NULL), -EINVAL);
        /* Nothing was left on the loop. */
        cr_expect_eq(uv_loop_close(&loop), 0);
        sbx_metrics_free(m);
        expect_no_leaks();
}

Test(metrics_http, reports_address_in_use)
{
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sin);
        SbxMetrics *m = new_registry();
        SbxMetricsServer *s = NULL;
        char address[64];
        uv_loop_t loop;
        int fd;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        cr_assert_eq(listen(fd, 1), 0);
        cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
        snprintf(address, sizeof(address), "127.0.0.1:%d", ntohs(sin.sin_port));

        cr_assert_eq(uv_loop_init(&loop), 0);
        cr_expect_eq(sbx_metrics_server_new(&loop, m, address, &s, NULL), -EADDRINUSE);
        cr_expect_null(s);
        cr_expect_eq(uv_loop_close(&loop), 0);
        close(fd);
        sbx_metrics_free(m);
        expect_no_leaks();
}

static void set_flag(void *userdata)
{
        *(bool *)userdata = true;
}

Test(metrics_http, close_right_after_start, .timeout = 30)
{
        SbxMetrics *m = new_registry();
        SbxMetricsServer *s = NULL;
        uv_loop_t loop;
        bool done = false;
        int port = 0;

        cr_assert_eq(uv_loop_init(&loop), 0);
        cr_assert_eq(sbx_metrics_server_new(&loop, m, "127.0.0.1:0", &s, &port), 0);
        sbx_metrics_server_close(s, set_flag, &done);
        cr_expect_not(done, "done must come from the loop, not from the close call");
        cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
        cr_expect(done);
        cr_expect_eq(uv_loop_close(&loop), 0);
        sbx_metrics_free(m);
        expect_no_leaks();
}

typedef struct Stalled {
        int port;
        int fd;
        uv_async_t *sent;
} Stalled;

static void *stalled_client(void *arg)
{
        Stalled *st = arg;
        const char *req = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";

        st->fd = connect_to(AF_INET, st->port);
        if (st->fd >= 0 && write(st->fd, req, strlen(req)) == (ssize_t)strlen(req))
                usleep(200 * 1000); /* let the server fill the socket buffers */
        uv_async_send(st->sent);
        return NULL;
}

Test(metrics_http, close_with_a_response_in_flight, .timeout = 60)
{
        SbxMetrics *m = new_registry();
        Harness t = { 0 };
        Stalled st = { .fd = -1 };
        pthread_t thread;
        SbxGauge *g;
        char label[512];

        /* Several megabytes, so that the server is still writing when it is closed. */
        cr_assert_eq(sbx_metrics_gauge(m, "wide", "Wide.", SBX_LABEL_NAMES("id"), &g), 0);
        for (int i = 0; i < 10000; i++) {
                snprintf(label, sizeof(label), "%0400d", i);
                sbx_gauge_set(g, SBX_LABELS(label), i);
        }

        cr_assert_eq(uv_loop_init(&t.loop), 0);
        cr_assert_eq(sbx_metrics_server_new(&t.loop, m, "127.0.0.1:0", &t.server, &st.port), 0);
        cr_assert_eq(uv_async_init(&t.loop, &t.finished, on_client_finished), 0);
        t.finished.data = &t;
        cr_assert_eq(uv_timer_init(&t.loop, &t.ticker), 0);
        t.ticker.data = &t;
        cr_assert_eq(uv_timer_start(&t.ticker, on_tick, 5, 5), 0);
        st.sent = &t.finished;
        cr_assert_eq(pthread_create(&thread, NULL, stalled_client, &st), 0);

        cr_assert_eq(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
        pthread_join(thread, NULL);
        cr_expect_geq(st.fd, 0);
        if (st.fd >= 0)
                close(st.fd);
        cr_expect(t.done);
        cr_expect_eq(uv_loop_close(&t.loop), 0);
        sbx_metrics_free(m);
        expect_no_leaks();
}
