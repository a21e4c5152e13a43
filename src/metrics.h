/* metrics: what this process has done, kept as numbers and written as Prometheus text; no I/O. */
#ifndef VOZAGENT_METRICS_H
#define VOZAGENT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* A pass's counters as its sync_runs row holds them. */
struct metrics_counts {
	int64_t requests, pages, records_seen, inserted, updated, rejected, warnings;
	int64_t marked_deleted;
};

enum metrics_mode { METRICS_BACKFILL, METRICS_INCREMENTAL, METRICS_NMODES };
/* sync_runs.outcome of a pass that ended */
enum metrics_outcome { METRICS_OK, METRICS_FAILED, METRICS_INTERRUPTED, METRICS_NOUTCOMES };

/* What other modules own, read at scrape time. */
struct metrics_sample {
	double now;                  /* unix seconds */
	int64_t rss_bytes;           /* -1: unknown */
	int64_t open_connections;
	int64_t concurrency;         /* pages the pace allows in flight now */
	int64_t http_class[4];       /* responses 2xx, 3xx, 4xx, 5xx */
	int64_t http_timeouts;       /* requests that timed out without a response */
	int64_t http_errors;         /* other requests without a response (refused, reset, TLS) */
	int64_t http_429;
	int64_t retries;
};

#define METRICS_NBUCKETS 16

struct metrics;

struct metrics *metrics_new(const char *source);
void metrics_free(struct metrics *m);

/*
 * The pass reports, on the loop's thread. m may be NULL (no metrics): then
 * nothing happens. progress: the pass's counters as last committed (they
 * replace the previous report of the same pass); end: the pass is over.
 */
void metrics_pass_begin(struct metrics *m, double now);
void metrics_pass_progress(struct metrics *m, const struct metrics_counts *c);
void metrics_pass_end(struct metrics *m, enum metrics_mode mode, enum metrics_outcome outcome,
    const char *error, double started, double ended);
/* The start time (unix seconds) of a call now in the mirror; the newest is kept. */
void metrics_newest_call(struct metrics *m, double started);

/* Appends the Prometheus text (format 0.0.4): 0, or -1 past out's cap. */
int metrics_render(const struct metrics *m, const struct metrics_sample *now, struct buf *out);
/*
 * Has a pass succeeded within 3 poll intervals? If not, why[] says why in
 * one line ("last pass failed: ...", "no successful pass yet", ...).
 */
bool metrics_is_healthy(const struct metrics *m, double now, uint64_t poll_interval_ms,
    char *why, size_t whylen);

/* The pass-duration histogram's upper bounds, in seconds (+Inf is implied). */
extern const double metrics_buckets[METRICS_NBUCKETS];

#endif
