/*
 * bench_store: what PostgreSQL costs per batch, through the store's own API.
 *
 *   bench_store CONNINFO PASSES PAGE.json...
 *
 * Each pass is one backfill of the given pages: every file (a JSON array of
 * calls, e.g. from `bench_parse --dump --records 5000 --seed S`) is parsed
 * into one batch and committed with store_commit_page as the daemon does,
 * then the pass reconciles (store_backfill_unseen + the commit that marks).
 * The first pass into an empty database inserts; the next ones re-read an
 * unchanged mirror. Prints, per pass, the wall time spent in the store, the
 * median and slowest batch commit, and the reconciliation.
 * Not a test: it asserts nothing about speed, and is not registered with ctest.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parse.h"
#include "rows.h"
#include "store.h"

#define BENCH_MAX_RECORD (1u << 20)
#define BENCH_MAX_BATCH (256u << 20)

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int
on_record(void *arg, const struct record *rec)
{
	return rows_add(arg, rec) < 0 ? -1 : 0;
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (buf = malloc((size_t)n + 1)) == NULL ||
	    fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "bench_store: cannot read %s\n", path);
		exit(2);
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void
die_store(struct store *s, const char *what)
{
	fprintf(stderr, "bench_store: %s: %s\n", what, store_errmsg(s));
	exit(1);
}

int
main(int argc, char **argv)
{
	struct store *s;
	struct rows *rows;
	struct parse *p;
	int passes, applied, npages;
	double *batch_ms;

	if (argc < 4) {
		fprintf(stderr, "usage: bench_store CONNINFO PASSES PAGE.json...\n");
		return 64;
	}
	passes = atoi(argv[2]);
	npages = argc - 3;
	batch_ms = calloc((size_t)npages, sizeof *batch_ms);
	s = store_new();
	rows = rows_new(BENCH_MAX_BATCH);
	p = parse_new(BENCH_MAX_RECORD, on_record, rows);
	if (s == NULL || rows == NULL || p == NULL || batch_ms == NULL)
		return 2;
	if (store_connect(s, argv[1]) < 0)
		die_store(s, "connect");
	if (store_migrate(s, &applied) < 0)
		die_store(s, "migrate");
	if (store_lock_source(s, "bench") != 0)
		die_store(s, "lock");
	for (int pass = 0; pass < passes; pass++) {
		struct sync_state st, next;
		struct store_stats stats;
		struct store_page page = { .source = "bench" };
		int64_t run_id, offset = 0, unseen, live;
		double t0, t, total = 0, reconcile;

		memset(&stats, 0, sizeof stats);
		if (store_state_load(s, "bench", &st) < 0)
			die_store(s, "state_load");
		if (store_run_begin(s, "bench", "backfill", &run_id) < 0)
			die_store(s, "run_begin");
		page.run_id = run_id;
		page.backfill_gen = run_id;
		page.rows = rows;
		for (int i = 0; i < npages; i++) {
			size_t len;
			char *body = read_file(argv[3 + i], &len);

			rows_reset(rows);
			parse_reset(p);
			rows_set_page_offset(rows, offset);
			if (parse_feed(p, body, len) < 0 || parse_finish(p) < 0) {
				fprintf(stderr, "bench_store: %s: %s\n", argv[3 + i], parse_errmsg(p));
				return 1;
			}
			free(body);
			offset += parse_records(p);
			next = st;
			next.backfill_offset = offset;
			next.backfill_run_id = run_id;
			page.expect_pages = stats.pages++;
			stats.records_seen += parse_records(p);
			t0 = now_ms();
			if (store_commit_page(s, &page, &st, &next, &stats) < 0)
				die_store(s, "commit");
			batch_ms[i] = now_ms() - t0;
			total += batch_ms[i];
			st = next;
		}
		t0 = now_ms();
		if (store_backfill_unseen(s, "bench", run_id, &unseen, &live) < 0)
			die_store(s, "backfill_unseen");
		next = st;
		next.backfill_offset = next.backfill_run_id = -1;
		next.backfill_done = next.pass_done = 1;
		page.rows = NULL;
		page.expect_pages = stats.pages;
		if (store_commit_page(s, &page, &st, &next, &stats) < 0)
			die_store(s, "reconcile");
		reconcile = now_ms() - t0;
		t = total + reconcile;
		if (store_run_finish(s, run_id, "ok", NULL, &stats) < 0)
			die_store(s, "run_finish");
		qsort(batch_ms, (size_t)npages, sizeof *batch_ms, cmp_double);
		printf("pass %d: %d batches, %" PRId64 " records: store %.0f ms; batch commit median "
		    "%.1f ms, max %.1f ms; reconcile %.1f ms; inserted %" PRId64 ", updated %" PRId64
		    ", marked %" PRId64 "\n", pass + 1, npages, stats.records_seen, t,
		    batch_ms[npages / 2], batch_ms[npages - 1], reconcile, stats.inserted,
		    stats.updated, stats.marked_deleted);
	}
	parse_free(p);
	rows_free(rows);
	store_free(s);
	free(batch_ms);
	return 0;
}
