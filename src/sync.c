/* sync: one pass over the API: which pages to read, and what each commit records. */
#include "sync.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anchor.h"
#include "cursor.h"
#include "decide.h"
#include "buf.h"
#include "log.h"
#include "parse.h"
#include "revisit.h"
#include "rows.h"
#include "track.h"

#define SYNC_MAX_ATTEMPTS 5                   /* per page, for 5xx/network/bad body */
#define SYNC_MAX_429 20                       /* per page, for rate limiting */
#define SYNC_BACKOFF_BASE_MS 500
#define SYNC_BACKOFF_CAP_MS 30000
#define SYNC_RETRY_AFTER_DEFAULT_S 5
#define SYNC_RETRY_AFTER_CAP_S 300
#define SYNC_THROTTLE_MIN_MS 500              /* after a 429: the least gap between requests */
#define SYNC_THROTTLE_MAX_MS 10000
#define SYNC_DB_ATTEMPTS 8                    /* reconnects before a pass gives up */
#define SYNC_DB_BACKOFF_CAP_MS 30000
#define SYNC_MAX_TRACKED 200000               /* unfinished calls tracked in one pass */
#define SYNC_URL_MAX (64 * 1024)              /* no server takes a longer request URL */

/* What to do again once PostgreSQL is back. */
enum db_redo { REDO_PAGE, REDO_NEXT_SCAN, REDO_RECONCILE };

struct sync {
	const struct config *cfg;
	struct fetch *fetch;
	struct store *store;
	struct parse *parse;
	struct rows *rows;
	struct anchor *anchor;
	struct anchor *start_keys;     /* backfill: the calls of the first page it read */
	uv_timer_t retry_timer;

	int running;
	enum sync_mode mode;
	sync_done_cb done;
	void *done_arg;
	int64_t run_id;
	struct store_stats stats;      /* as committed */
	struct sync_state state;       /* the cursor as committed (or loaded) */
	int backfill_failed;           /* auto mode: the last backfill pass failed */
	int mass_delete_confirmed;     /* the operator said a mass deletion is real */

	int start_keys_set;            /* a backfill kept the calls of its first page */

	/* the current scan: where it stands, and what the page being read shows */
	struct cursor cur;
	struct cursor_page page;
	char *scan_value;              /* SCAN_CONTACT: the contact_id */
	int attempt, attempts_429;
	struct revisit *revisit;       /* sampled keys of the scan, each where it was last read */
	uint64_t throttle_ms;          /* least gap between requests since a 429 */
	int db_attempt;
	enum db_redo db_redo;
	char *url;                     /* of the request in flight, for messages */

	struct track *track;           /* refreshing unfinished calls */

	char err[768];
};

static void on_fetch_done(void *arg, const struct fetch_result *res);
static void sync_next_scan(struct sync *s);
static void sync_reconcile(struct sync *s);

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

static int
cb_record(void *arg, const struct record *rec)
{
	struct sync *s = arg;
	const struct field_value *tv = &rec->f[FIELD_CALL_STARTED_AT];
	char key[ANCHOR_KEY_MAX + 1];
	int64_t t = ROWS_NO_TIME;
	int known, rc;

	if (tv->type == JSON_STRING && rows_parse_timestamp(tv->text, tv->len, &t) < 0)
		t = ROWS_NO_TIME;
	anchor_key(rec, key);
	anchor_page_add(s->anchor, key);
	/*
	 * A call of a page read before (the overlap, or more when calls were
	 * added ahead): it proves this page joins them. It is merged already.
	 */
	known = anchor_count(s->anchor) > 0 && anchor_has(s->anchor, key);
	cursor_page_call(&s->cur, &s->page, rec->index, t, known);
	if (s->cur.wrapped && anchor_has(s->start_keys, key))
		s->page.meets_start = true;
	sync_note_revisit(s, key, s->cur.offset + rec->index);
	if (known)
		return 0;
	rc = rows_add(s->rows, rec);
	if (rc == 1)
		log_warnx("offset %" PRId64 ": %s: skipped", s->cur.offset, rows_reject_reason(s->rows));
	return rc < 0 ? -1 : 0;
}

static int
cb_data(void *arg, const char *buf, size_t len)
{
	struct sync *s = arg;
	return parse_feed(s->parse, buf, len);
}

struct sync *
sync_new(uv_loop_t *loop, const struct config *cfg, struct fetch *fetch, struct store *store)
{
	struct sync *s = calloc(1, sizeof *s);

	if (s == NULL)
		return NULL;
	s->cfg = cfg;
	s->fetch = fetch;
	s->store = store;
	/* a call is never larger than the body that holds it; COPY escaping at most doubles it */
	s->parse = parse_new((size_t)cfg->max_body_bytes, cb_record, s);
	s->rows = rows_new((size_t)cfg->max_body_bytes * 2 + 65536);
	s->anchor = anchor_new((size_t)cfg->max_body_bytes + 1);
	s->start_keys = anchor_new((size_t)cfg->max_body_bytes + 1);
	s->revisit = revisit_new();
	s->track = track_new(SYNC_MAX_TRACKED);
	if (s->parse == NULL || s->rows == NULL || s->anchor == NULL || s->start_keys == NULL ||
	    s->revisit == NULL || s->track == NULL || uv_timer_init(loop, &s->retry_timer) != 0) {
		parse_free(s->parse);
		rows_free(s->rows);
		anchor_free(s->anchor);
		anchor_free(s->start_keys);
		revisit_free(s->revisit);
		track_free(s->track);
		free(s);
		return NULL;
	}
	s->retry_timer.data = s;
	return s;
}

static void
on_uv_timer_closed(uv_handle_t *h)
{
	struct sync *s = h->data;

	track_free(s->track);
	parse_free(s->parse);
	rows_free(s->rows);
	anchor_free(s->anchor);
	anchor_free(s->start_keys);
	revisit_free(s->revisit);
	free(s->scan_value);
	free(s->url);
	free(s);
}

void
sync_set_mass_delete(struct sync *s, int confirmed)
{
	s->mass_delete_confirmed = confirmed;
}

void
sync_free(struct sync *s)
{
	if (s == NULL)
		return;
	sync_stop(s);
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

/* Ends the pass in the database: nothing in flight, outcome recorded. */
static void
sync_end(struct sync *s, const char *outcome, const char *error)
{
	s->running = 0;
	fetch_cancel(s->fetch);
	uv_timer_stop(&s->retry_timer);
	/* a statement cancelled by SIGTERM ends the pass as the signal would have */
	if (store_is_stopping() && strcmp(outcome, "failed") == 0) {
		outcome = "interrupted";
		error = "stopped by a signal";
	}
	if (store_run_finish(s->store, s->run_id, outcome, error, &s->stats) < 0)
		log_warnx("could not record the end of run %" PRId64 ": %s", s->run_id,
		    store_errmsg(s->store));
	track_clear(s->track);
}

static void
sync_finish(struct sync *s, enum sync_result res, const char *fmt, ...)
{
	s->err[0] = '\0';
	if (fmt != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(s->err, sizeof s->err, fmt, ap);
		va_end(ap);
		/* it may quote the API or the server: one clean line */
		log_clean(s->err);
	}
	if (s->mode == SYNC_BACKFILL)
		s->backfill_failed = res != SYNC_OK;
	sync_end(s, res == SYNC_OK ? "ok" : "failed", res == SYNC_OK ? NULL : s->err);
	s->done(s->done_arg, res);
}

void
sync_stop(struct sync *s)
{
	if (s->running)
		sync_end(s, "interrupted", "stopped by a signal");
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

/* s->url for the page at s->cur.offset: 0, or -1 with s->err set (never a cut URL). */
static int
sync_build_url(struct sync *s)
{
	const struct config *c = s->cfg;
	int contact_scan = s->cur.scan == SCAN_CONTACT;
	struct buf url;
	int n;

	buf_init(&url, SYNC_URL_MAX);
	n = snprintf(NULL, 0, "%s/calls?limit=%d&offset=%" PRId64, c->api_url, c->page_size,
	    s->cur.offset);
	if (n >= 0 && buf_reserve(&url, (size_t)n + 1) == 0) {
		snprintf(url.data, url.cap, "%s/calls?limit=%d&offset=%" PRId64, c->api_url,
		    c->page_size, s->cur.offset);
		url.len = (size_t)n;
		if (url_param(&url, "status", s->cur.scan == SCAN_UNFINISHED ? "in-progress" :
		    c->filter_status) == 0 &&
		    url_param(&url, "contact_id", contact_scan ? s->scan_value :
		    c->filter_contact_id) == 0 &&
		    url_param(&url, "assistant_id", c->filter_assistant_id) == 0 &&
		    url_param(&url, "call_type", c->filter_call_type) == 0) {
			free(s->url);
			s->url = url.data;
			return 0;
		}
	}
	buf_free(&url);
	snprintf(s->err, sizeof s->err, "cannot build the request URL: it would be longer than "
	    "%d bytes (or memory is out)%s", SYNC_URL_MAX, contact_scan ?
	    "; the contact_id of a call to refresh is that long" :
	    "; check the filters in the configuration");
	return -1;
}

static int
sync_fetch_now(struct sync *s)
{
	parse_reset(s->parse);
	parse_set_max_records(s->parse, (unsigned)s->cfg->page_size);
	rows_reset(s->rows);
	anchor_page_begin(s->anchor);
	cursor_page_begin(&s->cur, &s->page);
	if (sync_build_url(s) < 0)
		return -1;
	log_debug("GET %s", s->url);
	s->stats.requests++;
	if (fetch_get(s->fetch, s->url, cb_data, on_fetch_done, s) < 0) {
		snprintf(s->err, sizeof s->err, "cannot start a request to %s", s->url);
		return -1;
	}
	return 0;
}

static void
on_uv_fetch(uv_timer_t *t)
{
	struct sync *s = t->data;

	if (sync_fetch_now(s) < 0)
		sync_finish(s, SYNC_ERR_API, "%s", s->err);
}

/*
 * Requests the page at s->cur.offset: now, or after the gap a recent 429 asks
 * for. The gap shrinks by a quarter with every page that went through.
 */
static int
sync_fetch_page(struct sync *s)
{
	uint64_t gap = s->throttle_ms;

	if (gap == 0)
		return sync_fetch_now(s);
	s->throttle_ms = gap * 3 / 4 < SYNC_THROTTLE_MIN_MS / 4 ? 0 : gap * 3 / 4;
	uv_timer_start(&s->retry_timer, on_uv_fetch, gap, 0);
	return 0;
}

/* Starts a scan at offset. -1 (s->err says why) when the request cannot start. */
static int
sync_start_scan(struct sync *s, enum scan_kind kind, int64_t offset)
{
	s->attempt = s->attempts_429 = 0;
	cursor_scan_begin(&s->cur, kind, offset);
	anchor_reset(s->anchor);
	/* also a backfill's lap from 0, which reads again what its first lap read */
	revisit_reset(s->revisit);
	return sync_fetch_page(s);
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

int
sync_start(struct sync *s, enum sync_mode mode, sync_done_cb done, void *arg)
{
	enum config_order order;
	enum scan_kind kind;
	int64_t now_us, pass_start_newest, from = 0;

	if (s->running) {
		snprintf(s->err, sizeof s->err, "a pass is already running");
		return -1;
	}
	memset(&s->stats, 0, sizeof s->stats);
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
		log_info("run %" PRId64 ": incremental pass of source '%s': %s, reading the whole "
		    "list", s->run_id, s->cfg->source, s->cur.threshold == ROWS_NO_TIME ?
		    "nothing mirrored yet" : "the API's order is not known");
	} else if (order == ORDER_NEWEST_FIRST) {
		kind = SCAN_TAIL_NEWEST;
		log_info("run %" PRId64 ": incremental pass of source '%s' (newest first)",
		    s->run_id, s->cfg->source);
	} else {
		kind = SCAN_TAIL_OLDEST;
		from = s->state.window_offset > 0 ? s->state.window_offset : 0;
		log_info("run %" PRId64 ": incremental pass of source '%s' (oldest first, from "
		    "offset %" PRId64 ")", s->run_id, s->cfg->source, from);
	}
	if (sync_start_scan(s, kind, from) < 0) {
		/* the callback is never called when starting fails */
		sync_end(s, "failed", s->err);
		return -1;
	}
	return 0;
}

/* Retries the page after a delay; false when it has been tried enough. */
static int
sync_retry(struct sync *s, const struct fetch_result *res, const char *why)
{
	uint64_t delay_ms;

	if (res != NULL && res->http_status == 429) {
		if (++s->attempts_429 > SYNC_MAX_429)
			return 0;
		/* and slow down for a while after it */
		s->throttle_ms = s->throttle_ms * 2 < SYNC_THROTTLE_MIN_MS ? SYNC_THROTTLE_MIN_MS :
		    s->throttle_ms * 2 > SYNC_THROTTLE_MAX_MS ? SYNC_THROTTLE_MAX_MS :
		    s->throttle_ms * 2;
		delay_ms = (uint64_t)(res->retry_after_s >= 0 ? res->retry_after_s :
		    SYNC_RETRY_AFTER_DEFAULT_S) * 1000;
		if (delay_ms > SYNC_RETRY_AFTER_CAP_S * 1000)
			delay_ms = SYNC_RETRY_AFTER_CAP_S * 1000;
	} else {
		uint64_t cap;
		if (++s->attempt >= SYNC_MAX_ATTEMPTS)
			return 0;
		/* exponential backoff with full jitter: at most 1, 2, 4, 8 s */
		cap = (uint64_t)SYNC_BACKOFF_BASE_MS << s->attempt;
		if (cap > SYNC_BACKOFF_CAP_MS)
			cap = SYNC_BACKOFF_CAP_MS;
		delay_ms = (uint64_t)rand() % (cap + 1);
	}
	log_warnx("offset %" PRId64 ": %s; retrying in %.1fs", s->cur.offset, why, delay_ms / 1000.0);
	uv_timer_start(&s->retry_timer, on_uv_fetch, delay_ms, 0);
	return 1;
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
	log_info("reconnected to PostgreSQL: %s", s->db_redo == REDO_PAGE ?
	    "reading the uncommitted page again" : "finishing the pass");
	s->db_attempt = 0;
	if (s->db_redo == REDO_NEXT_SCAN)
		sync_next_scan(s);
	else if (s->db_redo == REDO_RECONCILE)
		sync_reconcile(s);
	else if (sync_fetch_page(s) < 0)
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
 * Commits the page read (its rows, or none) with the cursor `next` and the
 * counters `stats`; on success they become the committed ones. On failure
 * the pass is finished or a reconnect scheduled, and -1 returned.
 */
static int
sync_commit(struct sync *s, struct rows *rows, struct sync_state *next,
    struct store_stats *stats)
{
	struct store_page page = {
		.source = s->cfg->source,
		.run_id = s->run_id,
		.offset = s->cur.offset,
		.rows = rows,
		/* a backfill reconciles against the calls its own pass read, no others */
		.backfill_gen = s->mode == SYNC_BACKFILL ? s->run_id : -1,
	};

	if (store_commit_page(s->store, &page, &s->state, next, stats) < 0) {
		if (sync_db_lost(s, rows != NULL ? REDO_PAGE : next->backfill_done ||
		    next->refuse_now ? REDO_RECONCILE : REDO_NEXT_SCAN))
			return -1;
		sync_finish(s, SYNC_ERR_STORE, "writing the page at offset %" PRId64 " failed: %s",
		    s->cur.offset, store_errmsg(s->store));
		return -1;
	}
	/* done once: the unseen calls are marked, and the seen set is gone */
	next->backfill_done = next->pass_done = next->refuse_now = 0;
	s->state = *next;
	s->stats = *stats;
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
	s->start_keys_set = 1;
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
		if (sync_commit(s, NULL, &next, &stats) < 0)
			return;
		sync_next_scan(s);
		return;
	}
	snprintf(next.refusal, sizeof next.refusal, "the backfill would mark %" PRId64 " of %"
	    PRId64 " live calls deleted (%.0f%%, more than max_delete_fraction %g%%): nothing "
	    "marked; if the API really deleted them, stop the service (`systemctl stop "
	    "vozagent-sync`: it holds the source's lock), run `vozagent-sync backfill "
	    "--allow-mass-delete`, then `systemctl start vozagent-sync`", unseen, live,
	    100.0 * (double)unseen / (double)live, 100.0 * s->cfg->max_delete_fraction);
	next.refuse_now = 1;
	if (sync_commit(s, NULL, &next, &stats) < 0)
		return;
	sync_finish(s, SYNC_ERR_REFUSED, "%s", s->state.refusal);
}

/* The in-progress list's page is committed: remember its calls to tell which finished. */
static int
sync_track(struct sync *s)
{
	size_t n = rows_count(s->rows);

	for (size_t i = 0; i < n; i++)
		if (track_add(s->track, rows_id(s->rows, i)) < 0)
			return -1;
	return 0;
}

/*
 * The page lists none of the calls read before it: calls were deleted ahead
 * of the pass and the list moved back under it, so calls between the two
 * pages may have been skipped. Keep what this page holds (its calls are
 * real), leave the cursor, and step back, further each time, until a page
 * joins again.
 */
static void
sync_reread(struct sync *s, const struct cursor_decision *d, struct store_stats *stats)
{
	struct sync_state next = d->next;

	stats->drift_rereads++;
	log_warnx("the list moved under the pass (calls deleted ahead of offset %" PRId64
	    "): reading again from offset %" PRId64, s->cur.offset, d->next_offset);
	if (sync_commit(s, s->rows, &next, stats) < 0)
		return;
	cursor_committed(&s->cur, &s->page, d);
	/* the calls read so far may sit anywhere now: where they were read proves nothing */
	revisit_reset(s->revisit);
	if (sync_fetch_page(s) < 0)
		sync_finish(s, SYNC_ERR_API, "%s", s->err);
}

/* Says what order a whole-list scan found the API in, when that is news. */
static void
sync_log_order(const char *order)
{
	log_info("the API lists calls %s", strcmp(order, "unknown") == 0 ? "in no order this "
	    "daemon can rely on: incremental passes will read the whole list" :
	    strcmp(order, "oldest_first") == 0 ? "oldest first" : "newest first");
}

/* A page was read whole: decide what it means, commit it, then act on that. */
static void
sync_page_done(struct sync *s)
{
	struct cursor_page *p = &s->page;
	struct cursor_decision d;
	struct store_stats stats = s->stats;
	int64_t offset = s->cur.offset;

	p->listed = parse_records(s->parse);
	p->kept = rows_count(s->rows);
	p->read_before = anchor_count(s->anchor) > 0;
	stats.pages++;
	stats.records_seen += p->listed;
	stats.rejected += rows_rejected(s->rows);
	stats.warnings += rows_warnings(s->rows);
	s->attempt = s->attempts_429 = 0;
	cursor_page(&s->cur, p, &s->state, &d);
	switch (d.verdict) {
	case CURSOR_FAIL_REPEAT:
		sync_finish(s, SYNC_ERR_API, "the API listed call %s at offset %" PRId64 " and again "
		    "at offset %" PRId64 ": the list repeats itself past its end (does the API or a "
		    "cache in front of it answer offsets past the end from the start of the list?); "
		    "giving up this scan", p->repeat_key, p->repeat_prev, p->repeat_at);
		return;
	case CURSOR_FAIL_NO_JOIN:
		sync_finish(s, SYNC_ERR_API, "the API's pages do not follow on from each other: "
		    "stepped back %d times near offset %" PRId64 " without reading anything new; "
		    "giving up this scan", DECIDE_MAX_REREADS, offset);
		return;
	case CURSOR_FAIL_STALL:
		sync_finish(s, SYNC_ERR_API, "the API keeps answering with calls this scan has "
		    "already read: %d full pages in a row, up to offset %" PRId64 ", listed nothing "
		    "new (does the API or a cache in front of it repeat the last page past the end "
		    "of the list?); giving up this scan", DECIDE_STALL_PAGES, offset);
		return;
	case CURSOR_REREAD:
		sync_reread(s, &d, &stats);
		return;
	case CURSOR_NEXT_PAGE:
	case CURSOR_SCAN_END:
	case CURSOR_WRAP:
	case CURSOR_CLOSED:
	case CURSOR_ORDER_CHANGED:
	case CURSOR_PROBE_BACK:
		break;
	}
	if (d.order_learnt != NULL)
		sync_log_order(d.order_learnt);
	if (sync_commit(s, s->rows, &d.next, &stats) < 0)
		return;
	if (s->mode == SYNC_BACKFILL && s->cur.scan == SCAN_FULL && !s->start_keys_set &&
	    sync_keep_start_keys(s) < 0) {
		sync_finish(s, SYNC_ERR_STORE, "out of memory keeping the first page's ids");
		return;
	}
	anchor_page_commit(s->anchor);
	if (s->cur.scan == SCAN_UNFINISHED && sync_track(s) < 0) {
		sync_finish(s, SYNC_ERR_STORE, "out of memory tracking unfinished calls");
		return;
	}
	/* committed: what the page showed is now the scan's */
	cursor_committed(&s->cur, p, &d);
	switch (d.verdict) {
	case CURSOR_ORDER_CHANGED:
		log_warnx("the API's order changed: reading the whole list instead");
		sync_go_scan(s, SCAN_FULL, 0);
		return;
	case CURSOR_PROBE_BACK:
		log_debug("lookback window starts before offset %" PRId64 ": stepping back to %"
		    PRId64, offset, d.next_offset);
		sync_go_scan(s, SCAN_TAIL_OLDEST, d.next_offset);
		return;
	case CURSOR_WRAP:
		log_info("run %" PRId64 ": read to the end of the list; now from offset 0 up to "
		    "where this backfill began (offset %" PRId64 ")", s->run_id, s->cur.circle_start);
		sync_go_scan(s, SCAN_FULL, 0);
		return;
	case CURSOR_CLOSED:
		sync_reconcile(s);
		return;
	case CURSOR_NEXT_PAGE:
		if (sync_fetch_page(s) < 0)
			sync_finish(s, SYNC_ERR_API, "%s", s->err);
		return;
	case CURSOR_SCAN_END:
	case CURSOR_REREAD:
	case CURSOR_FAIL_REPEAT:
	case CURSOR_FAIL_NO_JOIN:
	case CURSOR_FAIL_STALL:
		break;
	}
	sync_next_scan(s);
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
	if (sync_commit(s, NULL, &next, &stats) < 0)
		return;
	log_info("run %" PRId64 ": done: %" PRId64 " requests, %" PRId64 " calls seen, %" PRId64
	    " new, %" PRId64 " changed, %" PRId64 " marked deleted, %" PRId64 " warnings, %" PRId64
	    " rejected", s->run_id, s->stats.requests, s->stats.records_seen, s->stats.inserted,
	    s->stats.updated, s->stats.marked_deleted, s->stats.warnings, s->stats.rejected);
	sync_finish(s, SYNC_OK, NULL);
}

static void
on_fetch_done(void *arg, const struct fetch_result *res)
{
	struct sync *s = arg;
	char why[768];
	long st = res->http_status;

	if (!s->running)
		return;
	if (st == 401 || st == 403) {
		sync_finish(s, SYNC_ERR_AUTH, "the API refused the key (HTTP %ld): check the key "
		    "in %s", st, s->cfg->api_token_origin);
		return;
	}
	if (st == 400) {
		sync_finish(s, SYNC_ERR_REQUEST, "the API rejected the request (HTTP 400) GET %s: "
		    "%.300s%s", s->url, res->excerpt, config_has_filters(s->cfg) ?
		    " (check the filters status, contact_id, assistant_id and call_type in the "
		    "configuration)" : "");
		return;
	}
	if (res->aborted)
		snprintf(why, sizeof why, "bad body: %s", parse_errmsg(s->parse));
	else if (res->transport_error || (st != 0 && (st < 200 || st > 299)))
		snprintf(why, sizeof why, "%s%s%.200s", res->error, res->excerpt[0] ? ": " : "",
		    res->excerpt);
	else if (parse_finish(s->parse) < 0)
		snprintf(why, sizeof why, "bad body: %s", parse_errmsg(s->parse));
	else {
		sync_page_done(s);
		return;
	}
	log_clean(why);
	if (!sync_retry(s, res, why))
		sync_finish(s, SYNC_ERR_API, "giving up on the page at offset %" PRId64 ": %s",
		    s->cur.offset, why);
}
