/* test_metrics: the Prometheus text, label escaping, the histogram, counters across passes, health. */
#include <stdint.h>

#include "metrics.h"
#include "test.h"

static struct metrics_sample
sample(double now)
{
	struct metrics_sample s = {
		.now = now, .rss_bytes = 12345678, .open_connections = 3, .concurrency = 4,
		.http_class = { 10, 0, 2, 1 }, .http_timeouts = 5, .http_errors = 6,
		.http_429 = 2, .retries = 7,
	};
	return s;
}

/* The rendering, NUL-terminated, in a buffer the caller frees. */
static char *
render(const struct metrics *m, double now)
{
	struct buf b;
	struct metrics_sample s = sample(now);

	buf_init(&b, 1 << 20);
	if (metrics_render(m, &s, &b) < 0 || buf_append(&b, "", 1) < 0) {
		buf_free(&b);
		return NULL;
	}
	return b.data;
}

/* Every series has HELP and TYPE, the source label, and the sample's values. */
static void
test_render_plain(void)
{
	struct metrics *m = metrics_new("acme");
	char *t;

	ASSERT_TRUE(m != NULL);
	t = render(m, 1000);
	ASSERT_TRUE(t != NULL);
	ASSERT_CONTAINS(t, "# HELP vozagent_sync_passes_total ");
	ASSERT_CONTAINS(t, "# TYPE vozagent_sync_passes_total counter\n");
	ASSERT_CONTAINS(t, "vozagent_sync_passes_total{source=\"acme\",mode=\"backfill\","
	    "outcome=\"ok\"} 0\n");
	ASSERT_CONTAINS(t, "vozagent_sync_passes_total{source=\"acme\",mode=\"incremental\","
	    "outcome=\"interrupted\"} 0\n");
	ASSERT_CONTAINS(t, "# TYPE vozagent_sync_pass_duration_seconds histogram\n");
	ASSERT_CONTAINS(t, "# TYPE vozagent_sync_concurrency gauge\n");
	ASSERT_CONTAINS(t, "vozagent_sync_concurrency{source=\"acme\"} 4\n");
	ASSERT_CONTAINS(t, "vozagent_sync_open_connections{source=\"acme\"} 3\n");
	ASSERT_CONTAINS(t, "vozagent_sync_resident_memory_bytes{source=\"acme\"} 12345678\n");
	ASSERT_CONTAINS(t, "vozagent_sync_http_responses_total{source=\"acme\",class=\"2xx\"} 10\n");
	ASSERT_CONTAINS(t, "vozagent_sync_http_responses_total{source=\"acme\",class=\"5xx\"} 1\n");
	ASSERT_CONTAINS(t, "vozagent_sync_http_failures_total{source=\"acme\",kind=\"timeout\"} 5\n");
	ASSERT_CONTAINS(t, "vozagent_sync_http_failures_total{source=\"acme\",kind=\"error\"} 6\n");
	ASSERT_CONTAINS(t, "vozagent_sync_http_throttled_total{source=\"acme\"} 2\n");
	ASSERT_CONTAINS(t, "vozagent_sync_retries_total{source=\"acme\"} 7\n");
	/* no pass yet: the times are declared, with no made-up sample */
	ASSERT_CONTAINS(t, "# TYPE vozagent_sync_last_success_timestamp_seconds gauge\n");
	ASSERT_NOT_CONTAINS(t, "vozagent_sync_last_success_timestamp_seconds{");
	ASSERT_NOT_CONTAINS(t, "vozagent_sync_mirror_lag_seconds{");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_duration_seconds_bucket{source=\"acme\",le=\"+Inf\"} 0\n");
	/* every sample line belongs to a declared family and carries the label */
	for (char *line = t; *line != '\0'; line = strchr(line, '\n') + 1) {
		if (*line != '#')
			ASSERT_TRUE(strncmp(line, "vozagent_sync_", 14) == 0 &&
			    strstr(line, "{source=\"acme\"") != NULL);
		ASSERT_TRUE(strchr(line, '\n') != NULL);
	}
	free(t);
	metrics_free(m);
}

/* A source name with a backslash, a quote and a newline stays one label value. */
static void
test_label_escaping(void)
{
	struct metrics *m = metrics_new("a\\b\"c\nd");
	char *t = render(m, 1);

	ASSERT_TRUE(t != NULL);
	ASSERT_CONTAINS(t, "vozagent_sync_pages_total{source=\"a\\\\b\\\"c\\nd\"} 0\n");
	ASSERT_NOT_CONTAINS(t, "c\nd");
	free(t);
	metrics_free(m);
}

/* Buckets are cumulative, end with +Inf = _count, and _sum adds the durations. */
static void
test_histogram(void)
{
	struct metrics *m = metrics_new("s");
	char *t;

	/* 0.05 s, exactly 1 s (le is inclusive), 3 s, 5 h (past the last bound) */
	metrics_pass_end(m, METRICS_INCREMENTAL, METRICS_OK, NULL, 100, 100.05);
	metrics_pass_end(m, METRICS_INCREMENTAL, METRICS_OK, NULL, 200, 201);
	metrics_pass_end(m, METRICS_BACKFILL, METRICS_FAILED, "boom", 300, 303);
	metrics_pass_end(m, METRICS_BACKFILL, METRICS_OK, NULL, 400, 400 + 5 * 3600);
	t = render(m, 20000);
	ASSERT_TRUE(t != NULL);
	ASSERT_CONTAINS(t, "vozagent_sync_pass_duration_seconds_bucket{source=\"s\",le=\"0.1\"} 1\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_duration_seconds_bucket{source=\"s\",le=\"0.5\"} 1\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_duration_seconds_bucket{source=\"s\",le=\"1\"} 2\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_duration_seconds_bucket{source=\"s\",le=\"2.5\"} 2\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_duration_seconds_bucket{source=\"s\",le=\"5\"} 3\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_duration_seconds_bucket{source=\"s\",le=\"14400\"} 3\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_duration_seconds_bucket{source=\"s\",le=\"+Inf\"} 4\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_duration_seconds_count{source=\"s\"} 4\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_duration_seconds_sum{source=\"s\"} 18004.050000\n");
	ASSERT_CONTAINS(t, "vozagent_sync_passes_total{source=\"s\",mode=\"incremental\","
	    "outcome=\"ok\"} 2\n");
	ASSERT_CONTAINS(t, "vozagent_sync_passes_total{source=\"s\",mode=\"backfill\","
	    "outcome=\"failed\"} 1\n");
	ASSERT_CONTAINS(t, "vozagent_sync_passes_total{source=\"s\",mode=\"backfill\","
	    "outcome=\"ok\"} 1\n");
	/* the last ok pass started at 400, ended at 18400 */
	ASSERT_CONTAINS(t, "vozagent_sync_last_success_timestamp_seconds{source=\"s\"} 18400.000\n");
	ASSERT_CONTAINS(t, "vozagent_sync_mirror_lag_seconds{source=\"s\"} 19600.000\n");
	free(t);
	/* the bounds grow */
	for (int i = 1; i < METRICS_NBUCKETS; i++)
		ASSERT_TRUE(metrics_buckets[i] > metrics_buckets[i - 1]);
	metrics_free(m);
}

/* A pass's progress replaces its last report; ended passes add up. */
static void
test_counters_across_passes(void)
{
	struct metrics *m = metrics_new("s");
	struct metrics_counts a = { .requests = 3, .pages = 2, .records_seen = 150,
		.inserted = 100, .updated = 1, .rejected = 2, .warnings = 4, .marked_deleted = 0 };
	struct metrics_counts b = a;
	char *t;

	metrics_pass_begin(m, 10);
	metrics_pass_progress(m, &a);
	b.requests = 5;
	b.pages = 4;
	b.marked_deleted = 9;
	metrics_pass_progress(m, &b);
	t = render(m, 11);
	ASSERT_CONTAINS(t, "vozagent_sync_requests_total{source=\"s\"} 5\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_in_progress{source=\"s\"} 1\n");
	free(t);
	metrics_pass_end(m, METRICS_BACKFILL, METRICS_OK, NULL, 10, 12);
	metrics_pass_begin(m, 20);
	metrics_pass_progress(m, &a);
	t = render(m, 21);
	ASSERT_CONTAINS(t, "vozagent_sync_requests_total{source=\"s\"} 8\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pages_total{source=\"s\"} 6\n");
	ASSERT_CONTAINS(t, "vozagent_sync_records_seen_total{source=\"s\"} 300\n");
	ASSERT_CONTAINS(t, "vozagent_sync_records_inserted_total{source=\"s\"} 200\n");
	ASSERT_CONTAINS(t, "vozagent_sync_records_updated_total{source=\"s\"} 2\n");
	ASSERT_CONTAINS(t, "vozagent_sync_records_rejected_total{source=\"s\"} 4\n");
	ASSERT_CONTAINS(t, "vozagent_sync_warnings_total{source=\"s\"} 8\n");
	ASSERT_CONTAINS(t, "vozagent_sync_records_marked_deleted_total{source=\"s\"} 9\n");
	free(t);
	metrics_pass_end(m, METRICS_INCREMENTAL, METRICS_INTERRUPTED, "stopped", 20, 22);
	t = render(m, 23);
	ASSERT_CONTAINS(t, "vozagent_sync_requests_total{source=\"s\"} 8\n");
	ASSERT_CONTAINS(t, "vozagent_sync_pass_in_progress{source=\"s\"} 0\n");
	free(t);
	/* the newest call mirrored only moves forward */
	metrics_newest_call(m, 500.5);
	metrics_newest_call(m, 400);
	t = render(m, 24);
	ASSERT_CONTAINS(t, "vozagent_sync_newest_call_timestamp_seconds{source=\"s\"} 500.500\n");
	free(t);
	metrics_free(m);
}

/* Healthy while a pass succeeded within 3 poll intervals; else the reason. */
static void
test_health(void)
{
	struct metrics *m = metrics_new("s");
	char why[600];

	ASSERT_FALSE(metrics_is_healthy(m, 100, 10000, why, sizeof why));
	ASSERT_EQ_STR(why, "no successful pass yet");
	metrics_pass_begin(m, 100);
	ASSERT_FALSE(metrics_is_healthy(m, 101, 10000, why, sizeof why));
	ASSERT_EQ_STR(why, "no successful pass yet (the first pass is running)");
	metrics_pass_end(m, METRICS_INCREMENTAL, METRICS_OK, NULL, 100, 110);
	ASSERT_TRUE(metrics_is_healthy(m, 111, 10000, why, sizeof why));
	ASSERT_EQ_STR(why, "ok");
	/* one failed pass within the window is not yet unhealthy */
	metrics_pass_end(m, METRICS_INCREMENTAL, METRICS_FAILED, "giving up on page 0: HTTP 503",
	    120, 125);
	ASSERT_TRUE(metrics_is_healthy(m, 140, 10000, why, sizeof why));
	ASSERT_FALSE(metrics_is_healthy(m, 140.5, 10000, why, sizeof why));
	ASSERT_EQ_STR(why, "last pass failed: giving up on page 0: HTTP 503");
	metrics_pass_end(m, METRICS_INCREMENTAL, METRICS_OK, NULL, 150, 151);
	ASSERT_TRUE(metrics_is_healthy(m, 160, 10000, why, sizeof why));
	/* a pass that runs long: the reason says so */
	metrics_pass_begin(m, 170);
	ASSERT_FALSE(metrics_is_healthy(m, 200, 10000, why, sizeof why));
	ASSERT_EQ_STR(why, "no successful pass for 49 s (more than 3 poll intervals); a pass is "
	    "running");
	metrics_free(m);
}

/* A buffer too small fails the rendering instead of cutting it. */
static void
test_render_cap(void)
{
	struct metrics *m = metrics_new("s");
	struct metrics_sample s = sample(1);
	struct buf b;

	buf_init(&b, 100);
	ASSERT_EQ_INT(metrics_render(m, &s, &b), -1);
	ASSERT_TRUE(b.len <= 100);
	buf_free(&b);
	metrics_free(m);
}

static const struct test_case tests[] = {
	TEST(test_render_plain),
	TEST(test_label_escaping),
	TEST(test_histogram),
	TEST(test_counters_across_passes),
	TEST(test_health),
	TEST(test_render_cap),
};

int
main(int argc, char **argv)
{
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2,
	    argc > 2 ? argc - 2 : 0);
}
