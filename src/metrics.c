/* metrics: what this process has done, kept as numbers and written as Prometheus text; no I/O. */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Passes last from a tenth of a second (nothing new) to hours (a first backfill). */
const double metrics_buckets[METRICS_NBUCKETS] = {
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400,
};

static const char *const mode_names[METRICS_NMODES] = { "backfill", "incremental" };
static const char *const outcome_names[METRICS_NOUTCOMES] = { "ok", "failed", "interrupted" };

struct metrics {
	char *label;                 /* source="...", escaped */
	struct metrics_counts done;  /* passes that ended */
	struct metrics_counts cur;   /* the pass running, as last committed */
	int64_t passes[METRICS_NMODES][METRICS_NOUTCOMES];
	uint64_t hist[METRICS_NBUCKETS + 1];   /* per bucket, not cumulative; last = +Inf */
	double hist_sum;
	bool running;
	double running_since;
	bool any_pass;
	enum metrics_outcome last_outcome;
	char last_error[512];
	double last_ok_start, last_ok_end;     /* 0: no pass succeeded yet */
	double newest_call;                    /* 0: none known */
};

/* The label value escaped as the text format wants: backslash, quote, newline. */
static char *
label_escape(const char *v)
{
	size_t n = strlen(v);
	char *out = malloc(sizeof "source=\"\"" + 2 * n), *o = out;

	if (out == NULL)
		return NULL;
	o += sprintf(o, "source=\"");
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"') {
			*o++ = '\\';
			*o++ = *v;
		} else if (*v == '\n') {
			*o++ = '\\';
			*o++ = 'n';
		} else {
			*o++ = *v;
		}
	}
	*o++ = '"';
	*o = '\0';
	return out;
}

struct metrics *
metrics_new(const char *source)
{
	struct metrics *m = calloc(1, sizeof *m);

	if (m == NULL)
		return NULL;
	m->label = label_escape(source);
	if (m->label == NULL) {
		free(m);
		return NULL;
	}
	return m;
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	free(m->label);
	free(m);
}

void
metrics_pass_begin(struct metrics *m, double now)
{
	if (m == NULL)
		return;
	memset(&m->cur, 0, sizeof m->cur);
	m->running = true;
	m->running_since = now;
}

void
metrics_pass_progress(struct metrics *m, const struct metrics_counts *c)
{
	if (m != NULL)
		m->cur = *c;
}

static void
counts_add(struct metrics_counts *to, const struct metrics_counts *c)
{
	to->requests += c->requests;
	to->pages += c->pages;
	to->records_seen += c->records_seen;
	to->inserted += c->inserted;
	to->updated += c->updated;
	to->rejected += c->rejected;
	to->warnings += c->warnings;
	to->marked_deleted += c->marked_deleted;
}

void
metrics_pass_end(struct metrics *m, enum metrics_mode mode, enum metrics_outcome outcome,
    const char *error, double started, double ended)
{
	double took = ended > started ? ended - started : 0;
	int b;

	if (m == NULL || mode >= METRICS_NMODES || outcome >= METRICS_NOUTCOMES)
		return;
	counts_add(&m->done, &m->cur);
	memset(&m->cur, 0, sizeof m->cur);
	m->running = false;
	m->passes[mode][outcome]++;
	for (b = 0; b < METRICS_NBUCKETS && took > metrics_buckets[b]; b++)
		;
	m->hist[b]++;
	m->hist_sum += took;
	m->any_pass = true;
	m->last_outcome = outcome;
	snprintf(m->last_error, sizeof m->last_error, "%s", error != NULL ? error : "");
	if (outcome == METRICS_OK) {
		m->last_ok_start = started;
		m->last_ok_end = ended;
	}
}

void
metrics_newest_call(struct metrics *m, double started)
{
	if (m != NULL && started > m->newest_call)
		m->newest_call = started;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
out(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n + 1) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

static int
head(struct buf *b, const char *name, const char *type, const char *help)
{
	return out(b, "# HELP vozagent_sync_%s %s\n# TYPE vozagent_sync_%s %s\n", name, help,
	    name, type);
}

/* One series with the source label alone. */
static int
one_int(struct buf *b, const struct metrics *m, const char *name, const char *type,
    const char *help, int64_t v)
{
	return head(b, name, type, help) < 0 ? -1 :
	    out(b, "vozagent_sync_%s{%s} %" PRId64 "\n", name, m->label, v);
}

static int
one_time(struct buf *b, const struct metrics *m, const char *name, const char *help,
    bool known, double v)
{
	if (head(b, name, "gauge", help) < 0)
		return -1;
	/* no sample rather than a made-up one: absent() tells "never" apart */
	return known ? out(b, "vozagent_sync_%s{%s} %.3f\n", name, m->label, v) : 0;
}

int
metrics_render(const struct metrics *m, const struct metrics_sample *now, struct buf *b)
{
	struct metrics_counts c = m->done;
	static const char *const classes[4] = { "2xx", "3xx", "4xx", "5xx" };
	uint64_t cum = 0;
	int rc = 0;

	counts_add(&c, &m->cur);
	rc |= head(b, "passes_total", "counter", "Passes that ended, by mode and sync_runs outcome.");
	for (int i = 0; i < METRICS_NMODES; i++)
		for (int j = 0; j < METRICS_NOUTCOMES; j++)
			rc |= out(b, "vozagent_sync_passes_total{%s,mode=\"%s\",outcome=\"%s\"} %"
			    PRId64 "\n", m->label, mode_names[i], outcome_names[j], m->passes[i][j]);
	rc |= one_int(b, m, "pass_in_progress", "gauge", "1 while a pass runs, else 0.",
	    m->running ? 1 : 0);
	rc |= one_int(b, m, "requests_total", "counter",
	    "API requests answered or failed (sync_runs.requests).", c.requests);
	rc |= one_int(b, m, "pages_total", "counter", "Pages committed (sync_runs.pages).",
	    c.pages);
	rc |= one_int(b, m, "records_seen_total", "counter",
	    "Calls listed by the pages committed (sync_runs.records_seen).", c.records_seen);
	rc |= one_int(b, m, "records_inserted_total", "counter",
	    "Calls new to the mirror (sync_runs.inserted).", c.inserted);
	rc |= one_int(b, m, "records_updated_total", "counter",
	    "Mirrored calls that changed (sync_runs.updated).", c.updated);
	rc |= one_int(b, m, "records_marked_deleted_total", "counter",
	    "Calls a backfill marked deleted (sync_runs.marked_deleted).", c.marked_deleted);
	rc |= one_int(b, m, "records_rejected_total", "counter",
	    "Records kept in vozagent.rejects instead of mirrored (sync_runs.rejected).",
	    c.rejected);
	rc |= one_int(b, m, "warnings_total", "counter",
	    "Values stored with a warning (sync_runs.warnings).", c.warnings);
	rc |= head(b, "http_responses_total", "counter", "API responses by status class.");
	for (int i = 0; i < 4; i++)
		rc |= out(b, "vozagent_sync_http_responses_total{%s,class=\"%s\"} %" PRId64 "\n",
		    m->label, classes[i], now->http_class[i]);
	rc |= head(b, "http_failures_total", "counter",
	    "API requests that got no response: timed out, or another transport error.");
	rc |= out(b, "vozagent_sync_http_failures_total{%s,kind=\"timeout\"} %" PRId64 "\n"
	    "vozagent_sync_http_failures_total{%s,kind=\"error\"} %" PRId64 "\n", m->label,
	    now->http_timeouts, m->label, now->http_errors);
	rc |= one_int(b, m, "http_throttled_total", "counter",
	    "API responses with status 429 (also in the 4xx class).", now->http_429);
	rc |= one_int(b, m, "retries_total", "counter", "Page requests retried.", now->retries);
	rc |= one_int(b, m, "concurrency", "gauge",
	    "Pages the pace allows in flight now (halved on 429, 5xx, timeouts).",
	    now->concurrency);
	rc |= one_int(b, m, "open_connections", "gauge", "Connections to the API open now.",
	    now->open_connections);
	rc |= one_time(b, m, "last_success_timestamp_seconds",
	    "When the last successful pass ended (unix time).", m->last_ok_end > 0,
	    m->last_ok_end);
	rc |= one_time(b, m, "newest_call_timestamp_seconds",
	    "Start time of the newest call in the mirror (unix time).", m->newest_call > 0,
	    m->newest_call);
	rc |= one_time(b, m, "mirror_lag_seconds",
	    "Seconds since the start of the last successful pass: the mirror holds every call "
	    "the API listed then.", m->last_ok_start > 0,
	    now->now > m->last_ok_start ? now->now - m->last_ok_start : 0);
	rc |= head(b, "pass_duration_seconds", "histogram", "Duration of the passes that ended.");
	for (int i = 0; i <= METRICS_NBUCKETS; i++) {
		cum += m->hist[i];
		if (i < METRICS_NBUCKETS)
			rc |= out(b, "vozagent_sync_pass_duration_seconds_bucket{%s,le=\"%g\"} %" PRIu64
			    "\n", m->label, metrics_buckets[i], cum);
		else
			rc |= out(b, "vozagent_sync_pass_duration_seconds_bucket{%s,le=\"+Inf\"} %"
			    PRIu64 "\n", m->label, cum);
	}
	rc |= out(b, "vozagent_sync_pass_duration_seconds_sum{%s} %.6f\n"
	    "vozagent_sync_pass_duration_seconds_count{%s} %" PRIu64 "\n", m->label, m->hist_sum,
	    m->label, cum);
	rc |= head(b, "resident_memory_bytes", "gauge", "Resident memory of the process.");
	if (now->rss_bytes >= 0)
		rc |= out(b, "vozagent_sync_resident_memory_bytes{%s} %" PRId64 "\n", m->label,
		    now->rss_bytes);
	return rc != 0 ? -1 : 0;
}

bool
metrics_is_healthy(const struct metrics *m, double now, uint64_t poll_interval_ms,
    char *why, size_t whylen)
{
	double limit = 3.0 * (double)poll_interval_ms / 1000.0;

	if (m->last_ok_end > 0 && now - m->last_ok_end <= limit) {
		snprintf(why, whylen, "ok");
		return true;
	}
	if (m->any_pass && m->last_outcome != METRICS_OK)
		snprintf(why, whylen, "last pass %s: %s", m->last_outcome == METRICS_FAILED ?
		    "failed" : "interrupted", m->last_error[0] != '\0' ? m->last_error :
		    "no error recorded");
	else if (m->last_ok_end <= 0)
		snprintf(why, whylen, "no successful pass yet%s", m->running ?
		    " (the first pass is running)" : "");
	else
		snprintf(why, whylen, "no successful pass for %.0f s (more than 3 poll intervals)%s",
		    now - m->last_ok_end, m->running ? "; a pass is running" : "");
	return false;
}
