/* sync: one pass over the API: which listings to read, and what each commit records. */
#include "sync.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anchor.h"
#include "buf.h"
#include "cursor.h"
#include "decide.h"
#include "log.h"
#include "metrics.h"
#include "pager.h"
#include "revisit.h"
#include "rows.h"
#include "track.h"
#include "writer.h"

#define SYNC_DB_ATTEMPTS 8                    /* reconnects before a pass gives up */
#define SYNC_DB_BACKOFF_CAP_MS 30000
#define SYNC_MAX_TRACKED 200000               /* unfinished calls tracked in one pass */
#define SYNC_URL_MAX (64 * 1024)              /* no server takes a longer request URL */
#define SYNC_BATCH_BYTES (4u << 20)           /* a commit's COPY text, whatever batch_rows says */

/* What to do again once PostgreSQL is back. */
enum db_redo { REDO_SCAN, REDO_NEXT_SCAN, REDO_RECONCILE };

/* What follows once every decided page is committed. */
enum sync_then {
	THEN_NOTHING,                  /* pages keep coming */
	THEN_NEXT_SCAN,
	THEN_SCAN,                     /* then_scan from then_offset (wrap, order change, probe) */
	THEN_RECONCILE,
	THEN_FAIL,                     /* finish with then_result and s->err */
};

/*
 * Where a scan stood after a commit: a commit that is lost with the
 * connection takes the scan back here, to read its pages again.
 */
struct sync_snap {
	bool ok;                       /* false: memory ran out copying the anchor */
	struct cursor cur;
	struct anchor *anchor;
	bool start_keys_set;
	size_t tracked;
	struct sync_state pending;
};

struct sync {
	const struct config *cfg;
	struct fetch *fetch;
	struct store *store;
	struct pager *pager;
	struct writer *writer;
	struct anchor *anchor;
	struct anchor *start_keys;     /* backfill: the calls of the first page it read */
	uv_timer_t retry_timer;

	int running;
	enum sync_mode mode;
	sync_done_cb done;
	void *done_arg;
	int64_t run_id;
	int64_t requests_base;         /* the pager's count when the pass began */
	long connections_base;         /* fetch's count of connections opened, likewise */
	struct store_stats stats;      /* as committed */
	struct sync_state state;       /* the cursor as committed (or loaded) */
	int backfill_failed;           /* auto mode: the last backfill pass failed */
	int mass_delete_confirmed;     /* the operator said a mass deletion is real */
	struct metrics *metrics;       /* told what each commit and pass recorded; NULL = none */
	int64_t started_us;            /* when the pass began (realtime) */

	bool start_keys_set;           /* a backfill kept the calls of its first page */

	/* the current scan: where it stands, and what the page being decided shows */
	struct cursor cur;
	struct cursor_page page;
	char *scan_value;              /* SCAN_CONTACT: the contact_id */
	char *prefix;                  /* the scan's request URL, up to the offset */
	struct revisit *revisit;       /* sampled keys of the scan, each where it was last read */

	/*
	 * Pages decided but not committed go into batch[fill]; the other batch
	 * may be in flight on the writer. pending is the cursor after the last
	 * page decided, tally the counters of the pages not yet handed over.
	 */
	struct rows *batch[2];
	int fill;
	size_t batch_pages;
	uint64_t batch_since;          /* loop time of the batch's first page */
	bool dirty;                    /* decided since the last commit was handed over */
	struct sync_state pending;
	struct store_stats tally;
	struct sync_state flight;      /* what the commit in flight writes */
	struct sync_snap at_commit;    /* the scan as of the last commit that went through */
	struct sync_snap in_flight;    /* the scan as of the commit in flight */
	bool holding;                  /* a full batch waits for the writer: no next page yet */
	bool complete;                 /* the pass's last commit went through */
	enum sync_then then;
	enum scan_kind then_scan;
	int64_t then_offset;
	enum sync_result then_result;

	int db_attempt;
	enum db_redo db_redo;

	struct track *track;           /* refreshing unfinished calls */

	char err[768];
	enum sync_result start_failure; /* of the last sync_start that failed */
};

static void sync_next_scan(struct sync *s);
static void sync_reconcile(struct sync *s);
static void on_page(void *arg, const struct pager_page *pp);
static void on_pager_fail(void *arg, enum pager_failure why, const char *msg);

const char *
sync_mode_name(enum sync_mode mode)
{
	return mode == SYNC_BACKFILL ? "backfill" : mode == SYNC_INCREMENTAL ? "incremental" :
	    "auto";
}

static int64_t
now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Keeps the first call of the page whose previous reading this scan was pages and pages back. */
static void
sync_note_revisit(struct sync *s, const char *key, int64_t at)
{
	int64_t last = revisit_note(s->revisit, key, at);

	if (last < 0 || s->page.repeat_at >= 0 ||
	    !decide_list_repeats(last, at, s->cfg->page_size))
		return;
	s->page.repeat_prev = last;
	s->page.repeat_at = at;
	snprintf(s->page.repeat_key, sizeof s->page.repeat_key, "%s", key);
}

static void
sync_release(struct sync *s)
{
	anchor_free(s->anchor);
	anchor_free(s->start_keys);
	anchor_free(s->at_commit.anchor);
	anchor_free(s->in_flight.anchor);
	revisit_free(s->revisit);
	track_free(s->track);
	rows_free(s->batch[0]);
	rows_free(s->batch[1]);
	free(s->scan_value);
	free(s->prefix);
	free(s);
}

struct sync *
sync_new(uv_loop_t *loop, const struct config *cfg, struct fetch *fetch, struct store *store)
{
	struct sync *s = calloc(1, sizeof *s);
	struct pager_cb cb = { on_page, on_pager_fail, s };
	/* a batch holds whole pages: one more past its thresholds at most */
	size_t batch_cap = SYNC_BATCH_BYTES + (size_t)cfg->max_body_bytes * 2 + 65536;

	if (s == NULL)
		return NULL;
	s->cfg = cfg;
	s->fetch = fetch;
	s->store = store;
	s->anchor = anchor_new((size_t)cfg->max_body_bytes + 1);
	s->start_keys = anchor_new((size_t)cfg->max_body_bytes + 1);
	s->at_commit.anchor = anchor_new((size_t)cfg->max_body_bytes + 1);
	s->in_flight.anchor = anchor_new((size_t)cfg->max_body_bytes + 1);
	s->revisit = revisit_new();
	s->track = track_new(SYNC_MAX_TRACKED);
	s->batch[0] = rows_new(batch_cap);
	s->batch[1] = rows_new(batch_cap);
	if (s->anchor == NULL || s->start_keys == NULL || s->at_commit.anchor == NULL ||
	    s->in_flight.anchor == NULL || s->revisit == NULL || s->track == NULL ||
	    s->batch[0] == NULL || s->batch[1] == NULL) {
		sync_release(s);
		return NULL;
	}
	if ((s->writer = writer_new(loop, store)) == NULL) {
		sync_release(s);
		return NULL;
	}
	if ((s->pager = pager_new(loop, cfg, fetch, cfg->concurrency, &cb)) == NULL) {
		writer_free(s->writer);
		sync_release(s);
		return NULL;
	}
	if (uv_timer_init(loop, &s->retry_timer) != 0) {
		pager_free(s->pager);
		writer_free(s->writer);
		sync_release(s);
		return NULL;
	}
	s->retry_timer.data = s;
	return s;
}

static void
on_uv_timer_closed(uv_handle_t *h)
{
	sync_release(h->data);
}

void
sync_set_mass_delete(struct sync *s, int confirmed)
{
	s->mass_delete_confirmed = confirmed;
}

void
sync_set_metrics(struct sync *s, struct metrics *m)
{
	s->metrics = m;
}

int
sync_concurrency(const struct sync *s)
{
	return pager_window(s->pager);
}

int64_t
sync_retries(const struct sync *s)
{
	return pager_retries(s->pager);
}

void
sync_free(struct sync *s)
{
	if (s == NULL)
		return;
	sync_stop(s);
	pager_free(s->pager);
	writer_free(s->writer);
	uv_close((uv_handle_t *)&s->retry_timer, on_uv_timer_closed);
}

const char *
sync_errmsg(const struct sync *s)
{
	return s->err;
}

int
sync_running(const struct sync *s)
{
	return s->running;
}

static int64_t
sync_requests(const struct sync *s)
{
	return pager_requests(s->pager) - s->requests_base;
}

/* The counters as the run's sync_runs row holds them now, to the metrics. */
static void
sync_report(struct sync *s)
{
	struct metrics_counts c = {
		.requests = s->stats.requests, .pages = s->stats.pages,
		.records_seen = s->stats.records_seen, .inserted = s->stats.inserted,
		.updated = s->stats.updated, .rejected = s->stats.rejected,
		.warnings = s->stats.warnings, .marked_deleted = s->stats.marked_deleted,
	};

	metrics_pass_progress(s->metrics, &c);
	if (s->state.newest_started_at != ROWS_NO_TIME)
		metrics_newest_call(s->metrics, (double)s->state.newest_started_at / 1e6);
}

/* A commit went through: its cursor and counters are the committed ones. */
static void
sync_took(struct sync *s, const struct sync_state *next, const struct store_stats *stats)
{
	s->state = *next;
	/* done once: the unseen calls are marked, and the seen set is gone */
	s->state.backfill_done = s->state.pass_done = s->state.refuse_now = 0;
	s->stats = *stats;
	log_debug("run %" PRId64 ": committed; so far %" PRId64 " pages, %" PRId64 " calls seen, %"
	    PRId64 " new, %" PRId64 " changed", s->run_id, s->stats.pages, s->stats.records_seen,
	    s->stats.inserted, s->stats.updated);
	sync_report(s);
}

/* Ends the pass in the database: nothing in flight, outcome recorded. */
static void
sync_end(struct sync *s, const char *outcome, const char *error)
{
	struct store_stats stats;

	s->running = 0;
	pager_abandon(s->pager);
	uv_timer_stop(&s->retry_timer);
	/* the commit in flight ends first (a stop signal cancels its statement) */
	if (writer_wait(s->writer, &stats) == 0)
		sync_took(s, &s->flight, &stats);
	s->holding = false;
	s->then = THEN_NOTHING;
	/* a statement cancelled by SIGTERM ends the pass as the signal would have */
	if (store_is_stopping() && strcmp(outcome, "failed") == 0) {
		outcome = "interrupted";
		error = "stopped by a signal";
	}
	s->stats.requests = sync_requests(s);
	if (store_run_finish(s->store, s->run_id, outcome, error, &s->stats) < 0)
		log_warnx("could not record the end of run %" PRId64 ": %s", s->run_id,
		    store_errmsg(s->store));
	else
		sync_report(s);
	metrics_pass_end(s->metrics, s->mode == SYNC_BACKFILL ? METRICS_BACKFILL :
	    METRICS_INCREMENTAL, strcmp(outcome, "ok") == 0 ? METRICS_OK :
	    strcmp(outcome, "interrupted") == 0 ? METRICS_INTERRUPTED : METRICS_FAILED, error,
	    (double)s->started_us / 1e6, (double)now_usec() / 1e6);
	track_clear(s->track);
}

static void
sync_finish(struct sync *s, enum sync_result res, const char *fmt, ...)
{
	char msg[sizeof s->err] = "";

	/* through a copy: the message may be s->err itself */
	if (fmt != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof msg, fmt, ap);
		va_end(ap);
		/* it may quote the API or the server: one clean line */
		log_clean(msg);
	}
	memcpy(s->err, msg, sizeof s->err);
	if (s->mode == SYNC_BACKFILL)
		s->backfill_failed = res != SYNC_OK;
	sync_end(s, res == SYNC_OK ? "ok" : "failed", res == SYNC_OK ? NULL : s->err);
	s->done(s->done_arg, res);
}

void
sync_stop(struct sync *s)
{
	/* stopped while the requests past the end of a list come back: nothing was lost */
	if (s->running)
		sync_end(s, s->complete ? "ok" : "interrupted", s->complete ? NULL :
		    "stopped by a signal");
}

/* Appends "&key=escaped(value)" to url: 0, or -1 past its cap. */
static int
url_param(struct buf *url, const char *key, const char *value)
{
	size_t klen;

	if (value == NULL)
		return 0;
	klen = strlen(key);
	/* "&key=", at most three bytes per byte of value, and the terminator */
	if (buf_reserve(url, klen + 2 + 3 * strlen(value) + 1) < 0)
		return -1;
	url->data[url->len++] = '&';
	memcpy(url->data + url->len, key, klen);
	url->len += klen;
	url->data[url->len++] = '=';
	if (fetch_escape(value, url->data + url->len, url->cap - url->len) < 0)
		return -1;
	url->len += strlen(url->data + url->len);
	return 0;
}

void
sync_fetch_opts(const struct config *cfg, struct fetch_opts *fo)
{
	memset(fo, 0, sizeof *fo);
	fo->bearer_token = cfg->api_token;
	fo->timeout_ms = (long)cfg->http_timeout_ms;
	fo->max_body_bytes = (size_t)cfg->max_body_bytes;
	/* config allowed http:// only for loopback or allow_insecure_http */
	fo->allow_http = strncmp(cfg->api_url, "http://", 7) == 0;
	/* one kept-alive connection per page in flight */
	fo->max_connections = cfg->concurrency;
}

char *
sync_list_url(const struct config *c, int limit, const char *status, const char *contact_id)
{
	struct buf url;
	int n;

	buf_init(&url, SYNC_URL_MAX - 24);
	n = snprintf(NULL, 0, "%s/calls?limit=%d", c->api_url, limit);
	if (n >= 0 && buf_reserve(&url, (size_t)n + 1) == 0) {
		snprintf(url.data, url.cap, "%s/calls?limit=%d", c->api_url, limit);
		url.len = (size_t)n;
		if (url_param(&url, "status", status) == 0 &&
		    url_param(&url, "contact_id", contact_id) == 0 &&
		    url_param(&url, "assistant_id", c->filter_assistant_id) == 0 &&
		    url_param(&url, "call_type", c->filter_call_type) == 0 &&
		    buf_append(&url, "&offset=", 9) == 0)
			return url.data;
	}
	buf_free(&url);
	return NULL;
}

/*
 * s->prefix for the scan s->cur.scan: the request URL up to the offset the
 * pager appends. 0, or -1 with s->err set (never a cut URL: the longest
 * offset has room).
 */
static int
sync_build_prefix(struct sync *s)
{
	const struct config *c = s->cfg;
	int contact_scan = s->cur.scan == SCAN_CONTACT;
	char *prefix;

	prefix = sync_list_url(c, c->page_size, s->cur.scan == SCAN_UNFINISHED ? "in-progress" :
	    c->filter_status, contact_scan ? s->scan_value : c->filter_contact_id);
	if (prefix != NULL) {
		free(s->prefix);
		s->prefix = prefix;
		return 0;
	}
	snprintf(s->err, sizeof s->err, "cannot build the request URL: it would be longer than "
	    "%d bytes (or memory is out)%s", SYNC_URL_MAX, contact_scan ?
	    "; the contact_id of a call to refresh is that long" :
	    "; check the filters in the configuration");
	return -1;
}

/* The scan as it stands now, to come back to if a commit is lost. */
static void
sync_snap_take(struct sync *s, struct sync_snap *snap)
{
	snap->cur = s->cur;
	/* without the anchor a page read again after a loss would join without proof */
	snap->ok = anchor_copy(snap->anchor, s->anchor) == 0;
	snap->start_keys_set = s->start_keys_set;
	snap->tracked = track_count(s->track);
	snap->pending = s->pending;
}

/* 0, or -1 when the scan cannot go back there (memory ran out): the pass must end. */
static int
sync_snap_restore(struct sync *s, const struct sync_snap *snap)
{
	if (!snap->ok || anchor_copy(s->anchor, snap->anchor) < 0)
		return -1;
	s->cur = snap->cur;
	s->start_keys_set = snap->start_keys_set;
	track_truncate(s->track, snap->tracked);
	s->pending = snap->pending;
	/* the calls read since may sit anywhere when they are read again */
	revisit_reset(s->revisit);
	return 0;
}

/* Nothing decided waits: both batches empty, the counters handed over. */
static void
sync_batches_drop(struct sync *s)
{
	rows_reset(s->batch[0]);
	rows_reset(s->batch[1]);
	s->batch_pages = 0;
	s->dirty = false;
	s->holding = false;
	memset(&s->tally, 0, sizeof s->tally);
}

/*
 * Reads the scan's pages from s->cur.offset on: a whole list with as many
 * in flight as allowed, another listing one at first.
 */
static int
sync_read_from_cursor(struct sync *s)
{
	if (s->prefix == NULL && sync_build_prefix(s) < 0)
		return -1;
	if (pager_start(s->pager, s->prefix, s->cur.offset,
	    s->cfg->page_size > 1 ? s->cfg->page_size - 1 : 1, s->cur.scan == SCAN_FULL) < 0) {
		snprintf(s->err, sizeof s->err, "out of memory starting a scan");
		return -1;
	}
	return 0;
}

/* Starts a scan at offset. -1 (s->err says why) when it cannot start. */
static int
sync_start_scan(struct sync *s, enum scan_kind kind, int64_t offset)
{
	cursor_scan_begin(&s->cur, kind, offset);
	anchor_reset(s->anchor);
	/* also a backfill's lap from 0, which reads again what its first lap read */
	revisit_reset(s->revisit);
	s->pending = s->state;
	sync_batches_drop(s);
	sync_snap_take(s, &s->at_commit);
	free(s->prefix);
	s->prefix = NULL;
	return sync_read_from_cursor(s);
}

static void
sync_go_scan(struct sync *s, enum scan_kind kind, int64_t offset)
{
	if (sync_start_scan(s, kind, offset) < 0)
		sync_finish(s, SYNC_ERR_API, "%s", s->err);
}

/* The order the pass relies on: the config's, else what the data showed. */
static enum config_order
sync_order(const struct sync *s)
{
	if (s->cfg->order != ORDER_AUTO)
		return s->cfg->order;
	if (strcmp(s->state.api_order, "oldest_first") == 0)
		return ORDER_OLDEST_FIRST;
	if (strcmp(s->state.api_order, "newest_first") == 0)
		return ORDER_NEWEST_FIRST;
	return ORDER_AUTO;
}

/*
 * For `run`: a backfill when one is pending or a full resync is due; but
 * after a backfill pass failed, one incremental pass first, so that a page
 * that keeps failing deep in the history does not stop new calls.
 */
static enum sync_mode
sync_choose_mode(struct sync *s, int64_t now_us)
{
	const struct sync_state *st = &s->state;
	uint64_t every = s->cfg->full_resync_ms;
	/* a refused reconciliation waits for the next interval too, not the next minute */
	int64_t last = st->refused_at != ROWS_NO_TIME && (st->last_backfill_at == ROWS_NO_TIME ||
	    st->refused_at > st->last_backfill_at) ? st->refused_at : st->last_backfill_at;

	if (s->backfill_failed) {
		s->backfill_failed = 0;
		return SYNC_INCREMENTAL;
	}
	if (st->backfill_offset >= 0)
		return SYNC_BACKFILL;
	if (every > 0 && (last == ROWS_NO_TIME || now_us - last >= (int64_t)every * 1000))
		return SYNC_BACKFILL;
	return SYNC_INCREMENTAL;
}

enum sync_result
sync_start_failure(const struct sync *s)
{
	return s->start_failure;
}

/*
 * The source's reporting settings, before the first batch so that the pass's
 * changes are recorded (or not) and dated as configured: a reloaded value
 * takes effect here, and a new zone rebuilds the rollup before any batch.
 */
static int
sync_configure(struct sync *s)
{
	bool rebuilt;

	if (store_configure_source(s->store, s->cfg->source, s->cfg->report_time_zone,
	    s->cfg->history != 0, &rebuilt) < 0) {
		snprintf(s->err, sizeof s->err, "%s", store_errmsg(s->store));
		if (store_failed_on_config(s->store))
			s->start_failure = SYNC_ERR_CONFIG;
		return -1;
	}
	if (rebuilt)
		log_info("report_time_zone is now %s: the rollup of source '%s' was rebuilt",
		    s->cfg->report_time_zone, s->cfg->source);
	return 0;
}

int
sync_start(struct sync *s, enum sync_mode mode, sync_done_cb done, void *arg)
{
	enum config_order order;
	enum scan_kind kind;
	int64_t now_us, pass_start_newest, from = 0;

	s->start_failure = SYNC_ERR_STORE;
	if (s->running) {
		snprintf(s->err, sizeof s->err, "a pass is already running");
		return -1;
	}
	memset(&s->stats, 0, sizeof s->stats);
	s->requests_base = pager_requests(s->pager);
	s->complete = false;
	s->connections_base = fetch_connections(s->fetch);
	now_us = now_usec();
	/*
	 * Late arrivals are defined against the newest call already mirrored,
	 * which may be newer than the cursor (an interrupted scan committed it).
	 */
	if (store_state_load(s->store, s->cfg->source, &s->state) < 0 ||
	    store_newest_mirrored(s->store, s->cfg->source, &pass_start_newest) < 0) {
		snprintf(s->err, sizeof s->err, "%s", store_errmsg(s->store));
		return -1;
	}
	if (mode == SYNC_AUTO)
		mode = sync_choose_mode(s, now_us);
	if (store_run_begin(s->store, s->cfg->source, sync_mode_name(mode), &s->run_id) < 0) {
		snprintf(s->err, sizeof s->err, "%s", store_errmsg(s->store));
		return -1;
	}
	s->mode = mode;
	s->done = done;
	s->done_arg = arg;
	s->running = 1;
	s->started_us = now_us;
	metrics_pass_begin(s->metrics, (double)now_us / 1e6);
	if (sync_configure(s) < 0) {
		/* the callback is never called when starting fails */
		sync_end(s, "failed", s->err);
		return -1;
	}
	if (pass_start_newest != ROWS_NO_TIME)
		metrics_newest_call(s->metrics, (double)pass_start_newest / 1e6);
	cursor_pass_begin(&s->cur, mode == SYNC_BACKFILL, s->run_id, s->cfg->page_size,
	    (int64_t)s->cfg->lookback_ms, now_us, pass_start_newest, &s->state);
	order = sync_order(s);

	s->start_keys_set = 0;
	anchor_reset(s->start_keys);
	if (mode == SYNC_BACKFILL) {
		/*
		 * It starts where the last one stopped, but trusts nothing that one
		 * read: it reads to the end, then from offset 0 back to where it began.
		 */
		kind = SCAN_FULL;
		from = s->cur.circle_start;
		if (from > 0)
			log_info("run %" PRId64 ": backfill of source '%s' from offset %" PRId64
			    " (where the last one stopped) to the end, then from offset 0 to there",
			    s->run_id, s->cfg->source, from);
		else
			log_info("run %" PRId64 ": backfill of source '%s' from offset 0", s->run_id,
			    s->cfg->source);
	} else if (s->cur.threshold == ROWS_NO_TIME || order == ORDER_AUTO) {
		kind = SCAN_FULL;
		log_debug("run %" PRId64 ": incremental pass of source '%s': %s, reading the whole "
		    "list", s->run_id, s->cfg->source, s->cur.threshold == ROWS_NO_TIME ?
		    "nothing mirrored yet" : "the API's order is not known");
	} else if (order == ORDER_NEWEST_FIRST) {
		kind = SCAN_TAIL_NEWEST;
		log_debug("run %" PRId64 ": incremental pass of source '%s' (newest first)",
		    s->run_id, s->cfg->source);
	} else {
		kind = SCAN_TAIL_OLDEST;
		from = s->state.window_offset > 0 ? s->state.window_offset : 0;
		log_debug("run %" PRId64 ": incremental pass of source '%s' (oldest first, from "
		    "offset %" PRId64 ")", s->run_id, s->cfg->source, from);
	}
	if (sync_start_scan(s, kind, from) < 0) {
		/* the callback is never called when starting fails */
		sync_end(s, "failed", s->err);
		return -1;
	}
	return 0;
}

static void
on_uv_db_retry(uv_timer_t *t)
{
	struct sync *s = t->data;
	uint64_t delay;

	if (store_reconnect(s->store) < 0) {
		if (!store_conn_lost(s->store) || ++s->db_attempt >= SYNC_DB_ATTEMPTS) {
			sync_finish(s, SYNC_ERR_STORE, "PostgreSQL: %s", store_errmsg(s->store));
			return;
		}
		delay = 1000ull << s->db_attempt;
		if (delay > SYNC_DB_BACKOFF_CAP_MS)
			delay = SYNC_DB_BACKOFF_CAP_MS;
		log_warnx("still no PostgreSQL (%s); trying again in %.0fs", store_errmsg(s->store),
		    delay / 1000.0);
		uv_timer_start(&s->retry_timer, on_uv_db_retry, delay, 0);
		return;
	}
	log_info("reconnected to PostgreSQL: %s", s->db_redo == REDO_SCAN ?
	    "reading the uncommitted pages again" : "finishing the pass");
	s->db_attempt = 0;
	if (s->db_redo == REDO_NEXT_SCAN)
		sync_next_scan(s);
	else if (s->db_redo == REDO_RECONCILE)
		sync_reconcile(s);
	else if (sync_read_from_cursor(s) < 0)
		sync_finish(s, SYNC_ERR_API, "%s", s->err);
}

/*
 * The connection to PostgreSQL died under a commit: PostgreSQL rolled the
 * transaction back (or, if its answer was lost, the compare-and-set of the
 * cursor will tell). Reconnect with backoff, then do the same work again.
 * Returns 1 when a retry is scheduled, 0 when a reconnect cannot cure it.
 */
static int
sync_db_lost(struct sync *s, enum db_redo redo)
{
	if (!store_conn_lost(s->store))
		return 0;
	log_warnx("lost PostgreSQL (%s); reconnecting", store_errmsg(s->store));
	s->db_redo = redo;
	s->db_attempt = 0;
	uv_timer_start(&s->retry_timer, on_uv_db_retry, 1000, 0);
	return 1;
}

/*
 * Commits the cursor `next` and the counters `stats` alone, right now (no
 * batch is pending: the scans are done); on success they become the
 * committed ones. On failure the pass is finished or a reconnect
 * scheduled, and -1 returned.
 */
static int
sync_commit(struct sync *s, struct sync_state *next, struct store_stats *stats)
{
	struct store_page page = {
		.source = s->cfg->source,
		.run_id = s->run_id,
		.rows = NULL,
		.backfill_gen = s->mode == SYNC_BACKFILL ? s->run_id : -1,
		.expect_pages = s->stats.pages,
	};

	stats->requests = sync_requests(s);
	if (store_commit_page(s->store, &page, &s->state, next, stats) < 0) {
		if (sync_db_lost(s, next->backfill_done || next->refuse_now ? REDO_RECONCILE :
		    REDO_NEXT_SCAN))
			return -1;
		sync_finish(s, SYNC_ERR_STORE, "writing the cursor failed: %s",
		    store_errmsg(s->store));
		return -1;
	}
	sync_took(s, next, stats);
	return 0;
}

/* The first page of a backfill's circle: the wrap ends where it meets one of its calls. */
static int
sync_keep_start_keys(struct sync *s)
{
	size_t n = anchor_page_count(s->anchor);
	const char **keys = calloc(n > 0 ? n : 1, sizeof *keys);

	if (keys == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		keys[i] = anchor_page_key(s->anchor, i);
	anchor_load(s->start_keys, keys, n);
	free(keys);
	s->start_keys_set = true;
	return 0;
}

/*
 * A backfill has read its whole circle. Mark the calls it did not see,
 * unless that is more than max_delete_fraction of the live ones: a partial
 * answer (an API bug, a changed filter, another account) looks exactly like
 * a mass deletion, so then nothing is marked until the operator confirms.
 */
static void
sync_reconcile(struct sync *s)
{
	struct sync_state next = s->state;
	struct store_stats stats = s->stats;
	int64_t unseen, live;

	if (store_backfill_unseen(s->store, s->cfg->source, s->run_id, &unseen, &live) < 0) {
		if (!sync_db_lost(s, REDO_RECONCILE))
			sync_finish(s, SYNC_ERR_STORE, "%s", store_errmsg(s->store));
		return;
	}
	next.backfill_offset = next.backfill_run_id = next.backfill_wrap_to = -1;
	if (decide_may_mark(unseen, live, s->cfg->max_delete_fraction,
	    s->mass_delete_confirmed)) {
		next.backfill_done = 1;
		next.refusal[0] = '\0';
		if (sync_commit(s, &next, &stats) < 0)
			return;
		sync_next_scan(s);
		return;
	}
	snprintf(next.refusal, sizeof next.refusal, "the backfill would mark %" PRId64 " of %"
	    PRId64 " live calls deleted (%.0f%%, more than max_delete_fraction %g%%): nothing "
	    "marked; if the API really deleted them, run `vozagent-sync backfill --wait "
	    "--allow-mass-delete` with this source's configuration (it waits for the "
	    "running daemon's pass in flight, the daemon then waits for it)", unseen, live,
	    100.0 * (double)unseen / (double)live, 100.0 * s->cfg->max_delete_fraction);
	next.refuse_now = 1;
	if (sync_commit(s, &next, &stats) < 0)
		return;
	sync_finish(s, SYNC_ERR_REFUSED, "%s", s->state.refusal);
}

/* Says what order a whole-list scan found the API in, when that is news. */
static void
sync_log_order(const char *order)
{
	log_info("the API lists calls %s", strcmp(order, "unknown") == 0 ? "in no order this "
	    "daemon can rely on: incremental passes will read the whole list" :
	    strcmp(order, "oldest_first") == 0 ? "oldest first" : "newest first");
}

static void sync_flush(struct sync *s);
static void on_committed(void *arg, int rc, const struct store_stats *stats);

/* Hands batch[fill] and the cursor after it to the writer, which must be idle. */
static int
sync_submit(struct sync *s)
{
	struct rows *batch = s->batch[s->fill];
	struct store_page page = {
		.source = s->cfg->source,
		.run_id = s->run_id,
		.rows = rows_count(batch) > 0 || rows_rejects(batch) > 0 ? batch : NULL,
		/* a backfill reconciles against the calls its own pass read, no others */
		.backfill_gen = s->mode == SYNC_BACKFILL ? s->run_id : -1,
		.expect_pages = s->stats.pages,
	};
	struct store_stats stats = s->stats;

	stats.requests = sync_requests(s);
	stats.pages += s->tally.pages;
	stats.records_seen += s->tally.records_seen;
	stats.rejected += s->tally.rejected;
	stats.warnings += s->tally.warnings;
	stats.drift_rereads += s->tally.drift_rereads;
	s->flight = s->pending;
	sync_snap_take(s, &s->in_flight);
	if (writer_commit(s->writer, &page, &s->state, &s->pending, &stats, on_committed, s) < 0) {
		snprintf(s->err, sizeof s->err, "cannot hand the pages to the writer (out of memory)");
		return -1;
	}
	memset(&s->tally, 0, sizeof s->tally);
	s->dirty = false;
	s->batch_pages = 0;
	s->fill ^= 1;
	rows_reset(s->batch[s->fill]);
	return 0;
}

/* Is batch[fill] full: by rows, by bytes, or by the age of its first page? */
static bool
sync_batch_is_full(const struct sync *s)
{
	const struct rows *b = s->batch[s->fill];
	size_t bytes;

	rows_copy_data(b, &bytes);
	return rows_count(b) >= (size_t)s->cfg->batch_rows || bytes >= SYNC_BATCH_BYTES ||
	    uv_now(uv_handle_get_loop((const uv_handle_t *)&s->retry_timer)) - s->batch_since >=
	    s->cfg->batch_time_ms;
}

/* What the scan asked for once everything it decided is committed. */
static void
sync_then(struct sync *s)
{
	enum sync_then then = s->then;

	s->then = THEN_NOTHING;
	switch (then) {
	case THEN_NOTHING:
		break;
	case THEN_NEXT_SCAN:
		sync_next_scan(s);
		break;
	case THEN_SCAN:
		sync_go_scan(s, s->then_scan, s->then_offset);
		break;
	case THEN_RECONCILE:
		sync_reconcile(s);
		break;
	case THEN_FAIL:
		sync_finish(s, s->then_result, "%s", s->err);
		break;
	}
}

/* The scan is over: commit what it decided (one batch at a time), then do what it asked. */
static void
sync_flush(struct sync *s)
{
	if (writer_is_busy(s->writer))
		return;      /* on_committed comes back here */
	if (s->dirty) {
		if (sync_submit(s) < 0)
			sync_finish(s, SYNC_ERR_STORE, "%s", s->err);
		return;
	}
	sync_then(s);
}

static void
on_committed(void *arg, int rc, const struct store_stats *stats)
{
	struct sync *s = arg;

	if (!s->running)
		return;
	if (rc < 0) {
		/* back to the last commit that went through, and read from there again */
		pager_stop(s->pager);
		sync_batches_drop(s);
		if (sync_snap_restore(s, &s->at_commit) < 0) {
			sync_finish(s, SYNC_ERR_STORE, "writing the pages from offset %" PRId64 " failed "
			    "(%s), and memory ran out going back to the last commit",
			    s->cur.offset, store_errmsg(s->store));
			return;
		}
		/* what the scan decided after that commit is decided again as its pages come back */
		s->then = THEN_NOTHING;
		if (sync_db_lost(s, REDO_SCAN))
			return;
		sync_finish(s, SYNC_ERR_STORE, "writing the pages from offset %" PRId64 " failed: %s",
		    s->cur.offset, store_errmsg(s->store));
		return;
	}
	sync_took(s, &s->flight, stats);
	/* what the scan decided up to this commit is safe: the snapshot of it becomes the base */
	{
		struct sync_snap tmp = s->at_commit;
		s->at_commit = s->in_flight;
		s->in_flight = tmp;
	}
	if (s->holding) {
		s->holding = false;
		if (sync_submit(s) < 0) {
			sync_finish(s, SYNC_ERR_STORE, "%s", s->err);
			return;
		}
		pager_next(s->pager);
		return;
	}
	if (s->then != THEN_NOTHING)
		sync_flush(s);
}

/* The page's rows and rejects, but for the calls an earlier page of the scan read. */
static int
sync_batch_page(struct sync *s, const struct pager_page *pp, const bool *known)
{
	struct rows *b = s->batch[s->fill];
	const struct rows *r = pp->rows;
	unsigned warnings = rows_warnings(b), rejected = rows_rejected(b);

	if (s->batch_pages++ == 0)
		s->batch_since = uv_now(uv_handle_get_loop((const uv_handle_t *)&s->retry_timer));
	for (size_t i = 0; i < rows_count(r); i++)
		if (!known[rows_record_index(r, i)] && rows_append_row(b, r, i) < 0)
			return -1;
	for (size_t j = 0; j < rows_rejects(r); j++)
		if (!known[rows_reject_index(r, j)] && rows_append_reject(b, r, j) < 0)
			return -1;
	s->tally.pages++;
	s->tally.records_seen += pp->listed;
	s->tally.rejected += rows_rejected(b) - rejected;
	s->tally.warnings += rows_warnings(b) - warnings;
	s->dirty = true;
	return 0;
}

/* The in-progress list's page: remember its calls to tell which finished. */
static int
sync_track(struct sync *s, const struct pager_page *pp, const bool *known)
{
	for (size_t i = 0; i < rows_count(pp->rows); i++)
		if (!known[rows_record_index(pp->rows, i)] &&
		    track_add(s->track, rows_id(pp->rows, i)) < 0)
			return -1;
	return 0;
}

/* The scan ends here: stop reading, commit what it decided, then `then`. */
static void
sync_scan_over(struct sync *s, enum sync_then then)
{
	pager_stop(s->pager);
	s->then = then;
	sync_flush(s);
}

static void
sync_fail_after_flush(struct sync *s, enum sync_result res)
{
	log_clean(s->err);
	s->then_result = res;
	sync_scan_over(s, THEN_FAIL);
}

/*
 * The next page in list order: replay its calls through the join proof
 * and the order detection exactly as if it had been read alone, decide
 * what it means, and put what it holds into the batch.
 */
static void
on_page(void *arg, const struct pager_page *pp)
{
	struct sync *s = arg;
	struct cursor_page *p = &s->page;
	struct cursor_decision d;
	bool known[100];
	int64_t offset = pp->offset;
	size_t kept = 0;

	if (!s->running)
		return;
	if (offset != s->cur.offset || pp->listed > sizeof known / sizeof known[0]) {
		snprintf(s->err, sizeof s->err, "internal error: page at offset %" PRId64 " handed "
		    "over while the scan stands at %" PRId64, offset, s->cur.offset);
		sync_fail_after_flush(s, SYNC_ERR_API);
		return;
	}
	anchor_page_begin(s->anchor);
	cursor_page_begin(&s->cur, p);
	p->read_before = anchor_count(s->anchor) > 0;
	for (unsigned i = 0; i < pp->listed; i++) {
		const char *key = pp->keys[i];
		anchor_page_add(s->anchor, key);
		/*
		 * A call of a page read before (the overlap, or more when calls were
		 * added ahead): it proves this page joins them. It is in the batch already.
		 */
		known[i] = p->read_before && anchor_has(s->anchor, key);
		cursor_page_call(&s->cur, p, i, pp->started[i], known[i]);
		if (s->cur.wrapped && anchor_has(s->start_keys, key))
			p->meets_start = true;
		sync_note_revisit(s, key, offset + i);
	}
	for (size_t i = 0; i < rows_count(pp->rows); i++)
		kept += !known[rows_record_index(pp->rows, i)];
	p->listed = pp->listed;
	p->kept = kept;
	cursor_page(&s->cur, p, &s->pending, &d);
	switch (d.verdict) {
	case CURSOR_FAIL_REPEAT:
		snprintf(s->err, sizeof s->err, "the API listed call %s at offset %" PRId64 " and "
		    "again at offset %" PRId64 ": the list repeats itself past its end (does the API "
		    "or a cache in front of it answer offsets past the end from the start of the "
		    "list?); giving up this scan", p->repeat_key, p->repeat_prev, p->repeat_at);
		sync_fail_after_flush(s, SYNC_ERR_API);
		return;
	case CURSOR_FAIL_NO_JOIN:
		snprintf(s->err, sizeof s->err, "the API's pages do not follow on from each other: "
		    "stepped back %d times near offset %" PRId64 " without reading anything new; "
		    "giving up this scan", DECIDE_MAX_REREADS, offset);
		sync_fail_after_flush(s, SYNC_ERR_API);
		return;
	case CURSOR_FAIL_STALL:
		snprintf(s->err, sizeof s->err, "the API keeps answering with calls this scan has "
		    "already read: %d full pages in a row, up to offset %" PRId64 ", listed nothing "
		    "new (does the API or a cache in front of it repeat the last page past the end "
		    "of the list?); giving up this scan", DECIDE_STALL_PAGES, offset);
		sync_fail_after_flush(s, SYNC_ERR_API);
		return;
	default:
		break;
	}
	/* its calls are real, whatever the page proves */
	if (sync_batch_page(s, pp, known) < 0) {
		snprintf(s->err, sizeof s->err, "out of memory batching the page at offset %" PRId64,
		    offset);
		sync_fail_after_flush(s, SYNC_ERR_STORE);
		return;
	}
	if (d.verdict == CURSOR_REREAD) {
		/*
		 * The page lists none of the calls read before it: calls were deleted
		 * ahead and the list moved back under the scan. Keep its rows, leave
		 * the cursor, and step back until a page joins again.
		 */
		s->tally.drift_rereads++;
		log_warnx("the list moved under the pass (calls deleted ahead of offset %" PRId64
		    "): reading again from offset %" PRId64, offset, d.next_offset);
		cursor_committed(&s->cur, p, &d);
		/* the calls read so far may sit anywhere now: where they were read proves nothing */
		revisit_reset(s->revisit);
		pager_restart(s->pager, d.next_offset);
		return;
	}
	if (d.order_learnt != NULL)
		sync_log_order(d.order_learnt);
	s->pending = d.next;
	if (s->mode == SYNC_BACKFILL && s->cur.scan == SCAN_FULL && !s->start_keys_set &&
	    sync_keep_start_keys(s) < 0) {
		snprintf(s->err, sizeof s->err, "out of memory keeping the first page's ids");
		sync_fail_after_flush(s, SYNC_ERR_STORE);
		return;
	}
	anchor_page_commit(s->anchor);
	if (s->cur.scan == SCAN_UNFINISHED && sync_track(s, pp, known) < 0) {
		snprintf(s->err, sizeof s->err, "out of memory tracking unfinished calls");
		sync_fail_after_flush(s, SYNC_ERR_STORE);
		return;
	}
	/* decided: what the page showed is now the scan's */
	cursor_committed(&s->cur, p, &d);
	switch (d.verdict) {
	case CURSOR_NEXT_PAGE:
		if (sync_batch_is_full(s)) {
			if (writer_is_busy(s->writer)) {
				/* on_committed hands this batch over and asks for the next page */
				s->holding = true;
				return;
			}
			if (sync_submit(s) < 0) {
				sync_fail_after_flush(s, SYNC_ERR_STORE);
				return;
			}
		}
		pager_next(s->pager);
		return;
	case CURSOR_ORDER_CHANGED:
		log_warnx("the API's order changed: reading the whole list instead");
		s->then_scan = SCAN_FULL;
		s->then_offset = 0;
		sync_scan_over(s, THEN_SCAN);
		return;
	case CURSOR_PROBE_BACK:
		log_debug("lookback window starts before offset %" PRId64 ": stepping back to %"
		    PRId64, offset, d.next_offset);
		s->then_scan = SCAN_TAIL_OLDEST;
		s->then_offset = d.next_offset;
		sync_scan_over(s, THEN_SCAN);
		return;
	case CURSOR_WRAP:
		log_info("run %" PRId64 ": read to the end of the list; now from offset 0 up to "
		    "where this backfill began (offset %" PRId64 ")", s->run_id, s->cur.circle_start);
		s->then_scan = SCAN_FULL;
		s->then_offset = 0;
		sync_scan_over(s, THEN_SCAN);
		return;
	case CURSOR_CLOSED:
		sync_scan_over(s, THEN_RECONCILE);
		return;
	default:
		sync_scan_over(s, THEN_NEXT_SCAN);
		return;
	}
}

static void
on_pager_fail(void *arg, enum pager_failure why, const char *msg)
{
	struct sync *s = arg;

	if (!s->running)
		return;
	snprintf(s->err, sizeof s->err, "%s", msg);
	sync_fail_after_flush(s, why == PAGER_FAIL_AUTH ? SYNC_ERR_AUTH :
	    why == PAGER_FAIL_REQUEST ? SYNC_ERR_REQUEST : SYNC_ERR_API);
}

/* The pass is complete, and nothing it asked for is in flight. */
static void
on_idle_done(void *arg)
{
	struct sync *s = arg;

	if (!s->running)
		return;
	s->stats.requests = sync_requests(s);
	log_info("run %" PRId64 ": %s pass done in %.1fs: %" PRId64 " requests over %ld new "
	    "connections, %" PRId64 " calls seen, %" PRId64 " new, %" PRId64 " changed, %" PRId64
	    " marked deleted, %" PRId64 " warnings, %" PRId64 " rejected", s->run_id,
	    sync_mode_name(s->mode), (double)(now_usec() - s->started_us) / 1e6, s->stats.requests,
	    fetch_connections(s->fetch) - s->connections_base, s->stats.records_seen,
	    s->stats.inserted, s->stats.updated, s->stats.marked_deleted, s->stats.warnings,
	    s->stats.rejected);
	sync_finish(s, SYNC_OK, NULL);
}

static void
sync_next_scan(struct sync *s)
{
	struct sync_state next;
	struct store_stats stats;
	const char *contact;

	if (s->mode == SYNC_INCREMENTAL && s->cur.scan != SCAN_UNFINISHED && s->cur.scan != SCAN_CONTACT &&
	    s->cfg->filter_status == NULL) {
		sync_go_scan(s, SCAN_UNFINISHED, 0);
		return;
	}
	if (s->cur.scan == SCAN_UNFINISHED && !track_is_overflowing(s->track) &&
	    track_stale_count(s->track) == 0) {
		if (store_unfinished(s->store, s->cfg->source, track_ids(s->track),
		    track_count(s->track), track_add_stale, s->track) < 0) {
			track_clear_stale(s->track);
			if (!sync_db_lost(s, REDO_NEXT_SCAN))
				sync_finish(s, SYNC_ERR_STORE, "%s", store_errmsg(s->store));
			return;
		}
		if (track_stale_count(s->track) > 0)
			log_info("%zu calls have left the in-progress list: refreshing them",
			    track_stale_count(s->track));
	}
	if (s->cur.scan == SCAN_UNFINISHED || s->cur.scan == SCAN_CONTACT) {
		contact = track_next_contact(s->track);
		if (contact != NULL) {
			char *value = strdup(contact);
			if (value == NULL) {
				sync_finish(s, SYNC_ERR_STORE, "out of memory");
				return;
			}
			free(s->scan_value);
			s->scan_value = value;
			sync_go_scan(s, SCAN_CONTACT, 0);
			return;
		}
	}
	/* the pass is complete: say so in the same transaction as the cursor */
	next = s->state;
	next.pass_done = 1;
	stats = s->stats;
	if (sync_commit(s, &next, &stats) < 0)
		return;
	s->complete = true;
	/* the pages asked for past the end of a list are answered first, so each is counted */
	pager_when_idle(s->pager, on_idle_done);
}
