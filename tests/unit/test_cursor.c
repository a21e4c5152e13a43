/* test_cursor: a scan's decisions page by page: order, window, tails, circle, rereads, stalls. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cursor.h"
#include "rows.h"
#include "test.h"

#define PS 10                                   /* page size */
#define SEC 1000000LL
#define T0 (1700000000LL * SEC)                 /* a call start */
#define NOW (T0 + 86400LL * SEC)                /* the pass's wall clock */
#define LOOKBACK_MS 600000LL                    /* ten minutes */

static struct sync_state
state_empty(void)
{
	struct sync_state st;

	memset(&st, 0, sizeof st);
	st.newest_started_at = st.window_base_at = ROWS_NO_TIME;
	st.last_backfill_at = st.refused_at = ROWS_NO_TIME;
	st.window_offset = st.backfill_offset = st.backfill_run_id = st.backfill_wrap_to = -1;
	return st;
}

/*
 * Reads a page of n calls, the first started at first, each dt after the one
 * before (dt < 0: newest first); known_first: its first call was read before
 * (the overlap); read_before: the scan holds calls a page can join.
 */
static void
read_page(const struct cursor *c, struct cursor_page *p, unsigned n, int64_t first, int64_t dt,
    bool known_first, bool read_before)
{
	cursor_page_begin(c, p);
	for (unsigned i = 0; i < n; i++)
		cursor_page_call(c, p, i, first + dt * (int64_t)i, i == 0 && known_first);
	p->listed = n;
	p->kept = n - (known_first && n > 0 ? 1 : 0);
	p->read_before = read_before;
}

static void
obs_calls(struct scan_obs *o, const int64_t *t, const bool *known, size_t n)
{
	cursor_obs_reset(o);
	for (size_t i = 0; i < n; i++)
		cursor_obs_call(o, t[i], known != NULL && known[i], NOW);
}

static void
test_order_detection(void)
{
	static const int64_t asc[] = { 1, 2, 3 }, desc[] = { 3, 2, 1 }, mixed[] = { 1, 3, 2 };
	static const int64_t same[] = { 5, 5, 5 }, one[] = { 7 };
	struct scan_obs o;

	obs_calls(&o, asc, NULL, 3);
	ASSERT_EQ_STR(cursor_order_detected(&o), "oldest_first");
	obs_calls(&o, desc, NULL, 3);
	ASSERT_EQ_STR(cursor_order_detected(&o), "newest_first");
	obs_calls(&o, mixed, NULL, 3);
	ASSERT_EQ_STR(cursor_order_detected(&o), "unknown");
	/* too few calls, or only equal starts: nothing to tell */
	obs_calls(&o, one, NULL, 1);
	ASSERT_TRUE(cursor_order_detected(&o) == NULL);
	obs_calls(&o, same, NULL, 3);
	ASSERT_TRUE(cursor_order_detected(&o) == NULL);
	/* untyped starts are skipped, not compared */
	{
		static const int64_t gap[] = { 1, ROWS_NO_TIME, 2 };
		obs_calls(&o, gap, NULL, 3);
		ASSERT_EQ_STR(cursor_order_detected(&o), "oldest_first");
	}
}

/* A call read before (the overlap, or drift) says nothing of order, but sets the place. */
static void
test_order_known_calls_set_place(void)
{
	static const int64_t t1[] = { 10, 20, 5, 30 };
	static const bool k1[] = { false, false, true, false };
	static const int64_t t2[] = { 30, 10, 20 };
	static const bool k2[] = { false, true, false };
	struct scan_obs o;

	/* 20 -> 5 is not counted: still oldest first */
	obs_calls(&o, t1, k1, 4);
	ASSERT_EQ_INT(o.desc, 0);
	ASSERT_EQ_INT(o.asc, 2);
	ASSERT_EQ_STR(cursor_order_detected(&o), "oldest_first");
	/* 20 follows 10 (known), not 30 */
	obs_calls(&o, t2, k2, 3);
	ASSERT_EQ_INT(o.desc, 0);
	ASSERT_EQ_STR(cursor_order_detected(&o), "oldest_first");
}

/* A start more than a day in the future would stop every later window short. */
static void
test_newest_ignores_future(void)
{
	struct scan_obs o;

	cursor_obs_reset(&o);
	cursor_obs_call(&o, T0, false, NOW);
	ASSERT_EQ_INT(o.newest, T0);
	cursor_obs_call(&o, NOW + CURSOR_FUTURE_SLACK_US + 1, false, NOW);
	ASSERT_EQ_INT(o.newest, T0);
	cursor_obs_call(&o, NOW + CURSOR_FUTURE_SLACK_US, false, NOW);
	ASSERT_EQ_INT(o.newest, NOW + CURSOR_FUTURE_SLACK_US);
	/* an older call does not move it back */
	cursor_obs_call(&o, T0 - SEC, false, NOW);
	ASSERT_EQ_INT(o.newest, NOW + CURSOR_FUTURE_SLACK_US);
}

static void
ring_add(struct scan_obs *o, int64_t offset, int64_t first)
{
	o->ring[o->ring_pos].offset = offset;
	o->ring[o->ring_pos].first_started = first;
	o->ring_pos = (o->ring_pos + 1) % CURSOR_WINDOW_RING;
	if (o->ring_len < CURSOR_WINDOW_RING)
		o->ring_len++;
}

/* The next window starts at the last page that starts before it. */
static void
test_window_from_ring(void)
{
	struct sync_state next = state_empty();
	struct scan_obs o;
	int64_t lookback = LOOKBACK_MS * 1000;
	const char *learnt;

	cursor_obs_reset(&o);
	/* pages oldest first, a minute apart */
	for (int i = 0; i < 10; i++)
		ring_add(&o, i * (PS - 1), T0 + i * 60 * SEC);
	cursor_obs_call(&o, T0, false, NOW);
	cursor_obs_call(&o, T0 + 9 * 60 * SEC + 30 * SEC, false, NOW);
	/* pass started with the newest at T0 + 15 min: the window starts at T0 + 5 min */
	learnt = cursor_complete(SCAN_FULL, &o, T0 + 15 * 60 * SEC, lookback, &next);
	ASSERT_EQ_STR(learnt, "oldest_first");
	ASSERT_EQ_STR(next.api_order, "oldest_first");
	ASSERT_EQ_INT(next.newest_started_at, T0 + 9 * 60 * SEC + 30 * SEC);
	ASSERT_EQ_INT(next.window_base_at, T0 + 15 * 60 * SEC);
	/* page 4 starts at T0 + 4 min, page 5 exactly at the window: not before it */
	ASSERT_EQ_INT(next.window_offset, 4 * (PS - 1));

	/* nothing mirrored when the pass began: the window hangs on what it read */
	next = state_empty();
	cursor_complete(SCAN_FULL, &o, ROWS_NO_TIME, lookback, &next);
	ASSERT_EQ_INT(next.window_base_at, T0 + 9 * 60 * SEC + 30 * SEC);
	ASSERT_EQ_INT(next.window_offset, 0);   /* T0 - 30 s: before every page */

	/* the order is known already: no news */
	snprintf(next.api_order, sizeof next.api_order, "oldest_first");
	ASSERT_TRUE(cursor_complete(SCAN_FULL, &o, T0, lookback, &next) == NULL);
}

/* The window starts before every page the ring remembers: take the oldest of them. */
static void
test_window_older_than_ring(void)
{
	struct sync_state next = state_empty();
	struct scan_obs o;

	cursor_obs_reset(&o);
	/* more pages than the ring holds: the first ones fall out */
	for (int i = 0; i < CURSOR_WINDOW_RING + 5; i++)
		ring_add(&o, 1000 + i * (PS - 1), T0 + i * SEC);
	cursor_obs_call(&o, T0 + 100 * SEC, false, NOW);
	cursor_complete(SCAN_TAIL_OLDEST, &o, T0, LOOKBACK_MS * 1000, &next);
	ASSERT_EQ_INT(next.window_offset, 1000 + 5 * (PS - 1));
	/* a tail scan learns no order */
	ASSERT_EQ_STR(next.api_order, "");
	/* newest first: no window offset to place */
	next = state_empty();
	cursor_complete(SCAN_TAIL_NEWEST, &o, T0, LOOKBACK_MS * 1000, &next);
	ASSERT_EQ_INT(next.window_offset, -1);
	ASSERT_EQ_INT(next.newest_started_at, T0 + 100 * SEC);
}

/* An incremental pass over the whole list: page by page to the short one. */
static void
test_full_scan_pages(void)
{
	struct sync_state st = state_empty();
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;

	cursor_pass_begin(&c, false, 7, PS, LOOKBACK_MS, NOW, ROWS_NO_TIME, &st);
	ASSERT_EQ_INT(c.threshold, ROWS_NO_TIME);
	cursor_scan_begin(&c, SCAN_FULL, 0);
	read_page(&c, &p, PS, T0, SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_NEXT_PAGE);
	ASSERT_EQ_INT(d.next_offset, PS - 1);   /* pages overlap by one call */
	ASSERT_TRUE(d.order_learnt == NULL);
	ASSERT_EQ_INT(d.next.window_offset, -1);
	cursor_committed(&c, &p, &d);
	ASSERT_EQ_INT(c.offset, PS - 1);
	ASSERT_EQ_INT(c.obs.ring_len, 1);
	/* the short page ends the scan and places the next window */
	read_page(&c, &p, 4, T0 + (PS - 1) * SEC, SEC, true, true);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_SCAN_END);
	ASSERT_EQ_STR(d.order_learnt, "oldest_first");
	ASSERT_EQ_STR(d.next.api_order, "oldest_first");
	ASSERT_EQ_INT(d.next.newest_started_at, T0 + (PS + 2) * SEC);
	ASSERT_EQ_INT(d.next.window_offset, 0);
	ASSERT_EQ_INT(d.next.backfill_offset, -1);
}

static void
pass_after(struct cursor *c, struct sync_state *st, const char *order, int64_t window_offset)
{
	*st = state_empty();
	snprintf(st->api_order, sizeof st->api_order, "%s", order);
	st->newest_started_at = T0;
	st->window_base_at = T0;
	st->window_offset = window_offset;
	cursor_pass_begin(c, false, 8, PS, LOOKBACK_MS, NOW, T0, st);
}

/* Newest first: a full page ends the scan once a call started before the window. */
static void
test_tail_newest_ends_past_threshold(void)
{
	struct sync_state st;
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;

	pass_after(&c, &st, "newest_first", -1);
	ASSERT_EQ_INT(c.threshold, T0 - LOOKBACK_MS * 1000);
	cursor_scan_begin(&c, SCAN_TAIL_NEWEST, 0);
	/* new calls, all inside the window: read on */
	read_page(&c, &p, PS, T0 + 100 * SEC, -SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_NEXT_PAGE);
	ASSERT_EQ_INT(d.next.newest_started_at, T0);    /* not moved before the end */
	cursor_committed(&c, &p, &d);
	/* its last call started before the window: the end, though the page is full */
	read_page(&c, &p, PS, T0 + 91 * SEC, -(91 * SEC + LOOKBACK_MS * 1000) / (PS - 1) - 1,
	    true, true);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_SCAN_END);
	ASSERT_EQ_INT(d.next.newest_started_at, T0 + 100 * SEC);
	ASSERT_EQ_INT(d.next.window_base_at, T0);       /* the newest when the pass began */
	ASSERT_EQ_INT(d.next.window_offset, -1);
	ASSERT_TRUE(d.order_learnt == NULL);
}

/* Oldest first: the probe page must start before the window, else it steps back, further each time. */
static void
test_tail_oldest_probe_restart(void)
{
	struct sync_state st;
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;
	int64_t thr;

	pass_after(&c, &st, "oldest_first", 500);
	thr = c.threshold;
	cursor_scan_begin(&c, SCAN_TAIL_OLDEST, 500);
	ASSERT_TRUE(c.probing);
	/* calls deleted behind the window moved it back: the page starts inside it */
	read_page(&c, &p, PS, thr + SEC, SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_PROBE_BACK);
	ASSERT_EQ_INT(d.next_offset, 500 - PS);
	ASSERT_EQ_INT(d.next.window_offset, 500);       /* the cursor stays */
	cursor_committed(&c, &p, &d);
	ASSERT_EQ_INT(c.step, 2 * PS);
	cursor_scan_begin(&c, SCAN_TAIL_OLDEST, d.next_offset);
	read_page(&c, &p, PS, thr + SEC, SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_PROBE_BACK);
	ASSERT_EQ_INT(d.next_offset, 500 - PS - 2 * PS);
	cursor_committed(&c, &p, &d);
	/* now it starts before the window: read on, probing is over */
	cursor_scan_begin(&c, SCAN_TAIL_OLDEST, d.next_offset);
	read_page(&c, &p, PS, thr - SEC, SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_NEXT_PAGE);
	cursor_committed(&c, &p, &d);
	ASSERT_FALSE(c.probing);
	ASSERT_EQ_INT(c.offset, 500 - 3 * PS + PS - 1);
	/* the short page: the window stays at the last page that starts before it */
	read_page(&c, &p, 3, thr + 8 * SEC, SEC, true, true);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_SCAN_END);
	ASSERT_EQ_INT(d.next.newest_started_at, T0);
	ASSERT_EQ_INT(d.next.window_offset, 500 - 3 * PS);
}

/* A tail scan that meets the other order: the order is unknown, and the whole list is read. */
static void
test_contradicting_order(void)
{
	struct sync_state st;
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;

	pass_after(&c, &st, "newest_first", -1);
	cursor_scan_begin(&c, SCAN_TAIL_NEWEST, 0);
	read_page(&c, &p, PS, T0, SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_ORDER_CHANGED);
	ASSERT_EQ_STR(d.next.api_order, "unknown");
	ASSERT_EQ_INT(d.next.newest_started_at, T0);    /* no cursor moved on a wrong order */
	ASSERT_EQ_INT(d.next_offset, 0);

	pass_after(&c, &st, "oldest_first", 0);
	cursor_scan_begin(&c, SCAN_TAIL_OLDEST, 0);
	read_page(&c, &p, 4, T0, -SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_ORDER_CHANGED);
	ASSERT_EQ_STR(d.next.api_order, "unknown");
	ASSERT_EQ_INT(d.next.window_offset, 0);
}

/* A resumed backfill: 700 to the end, wrap, 0 on until it meets its first page. */
static void
test_backfill_circle(void)
{
	struct sync_state st = state_empty();
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;

	st.backfill_offset = 700;
	cursor_pass_begin(&c, true, 42, PS, LOOKBACK_MS, NOW, ROWS_NO_TIME, &st);
	ASSERT_EQ_INT(c.circle_start, 700);
	ASSERT_FALSE(c.wrapped);
	cursor_scan_begin(&c, SCAN_FULL, c.circle_start);
	/* go on: the cursor says where to resume, in this run's circle */
	read_page(&c, &p, PS, T0, SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_NEXT_PAGE);
	ASSERT_EQ_INT(d.next.backfill_offset, 700 + PS - 1);
	ASSERT_EQ_INT(d.next.backfill_run_id, 42);
	ASSERT_EQ_INT(d.next.backfill_wrap_to, -1);
	cursor_committed(&c, &p, &d);
	st = d.next;
	/* wrap: the end of the list, on from 0 up to 700 */
	read_page(&c, &p, 3, T0 + 9 * SEC, SEC, true, true);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_WRAP);
	ASSERT_EQ_INT(d.next_offset, 0);
	ASSERT_EQ_INT(d.next.backfill_offset, 0);
	ASSERT_EQ_INT(d.next.backfill_run_id, 42);
	ASSERT_EQ_INT(d.next.backfill_wrap_to, 700);
	ASSERT_EQ_STR(d.order_learnt, "oldest_first");  /* the end of the list moves the cursor */
	ASSERT_EQ_INT(d.next.newest_started_at, T0 + 11 * SEC);
	cursor_committed(&c, &p, &d);
	ASSERT_TRUE(c.wrapped);
	st = d.next;
	cursor_scan_begin(&c, SCAN_FULL, 0);
	read_page(&c, &p, PS, T0 - 100 * SEC, SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_NEXT_PAGE);
	ASSERT_EQ_INT(d.next.backfill_offset, PS - 1);
	ASSERT_EQ_INT(d.next.backfill_wrap_to, 700);
	ASSERT_TRUE(d.order_learnt == NULL);            /* the wrap learns nothing */
	ASSERT_EQ_INT(d.next.newest_started_at, T0 + 11 * SEC);
	cursor_committed(&c, &p, &d);
	st = d.next;
	/* closed: a full page that lists a call of the first page read at 700 */
	read_page(&c, &p, PS, T0 - 91 * SEC, SEC, true, true);
	p.meets_start = true;
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_CLOSED);
	ASSERT_EQ_INT(d.next.backfill_offset, 2 * (PS - 1));
	ASSERT_EQ_INT(d.next.backfill_run_id, 42);
	ASSERT_EQ_INT(d.next.backfill_wrap_to, 700);
}

/* A backfill from offset 0 is a whole circle at the first short page. */
static void
test_backfill_from_zero_closes_at_end(void)
{
	struct sync_state st = state_empty();
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;

	cursor_pass_begin(&c, true, 3, PS, LOOKBACK_MS, NOW, ROWS_NO_TIME, &st);
	ASSERT_EQ_INT(c.circle_start, 0);
	cursor_scan_begin(&c, SCAN_FULL, 0);
	read_page(&c, &p, 5, T0, SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_CLOSED);
	ASSERT_EQ_INT(d.next.backfill_offset, 4);
	ASSERT_EQ_INT(d.next.backfill_run_id, 3);
	ASSERT_EQ_INT(d.next.backfill_wrap_to, -1);
	ASSERT_EQ_STR(d.next.api_order, "oldest_first");
}

/* A page that lists none of the calls read before: step back, further each time, cursor unchanged. */
static void
test_reread_on_no_join(void)
{
	struct sync_state st = state_empty();
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;
	struct scan_obs before;

	st.window_offset = 77;
	cursor_pass_begin(&c, false, 1, PS, LOOKBACK_MS, NOW, ROWS_NO_TIME, &st);
	cursor_scan_begin(&c, SCAN_FULL, 0);
	read_page(&c, &p, PS, T0, SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	cursor_committed(&c, &p, &d);
	c.offset = 200;
	before = c.obs;
	read_page(&c, &p, PS, T0 + 500 * SEC, SEC, false, true);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_REREAD);
	ASSERT_EQ_INT(d.gap_step, PS - 1);
	ASSERT_EQ_INT(d.next_offset, 200 - (PS - 1));
	ASSERT_EQ_INT(d.next.window_offset, 77);
	ASSERT_TRUE(memcmp(&d.next, &st, sizeof st) == 0);
	cursor_committed(&c, &p, &d);
	ASSERT_EQ_INT(c.offset, 200 - (PS - 1));
	ASSERT_EQ_INT(c.gap_step, PS - 1);
	/* the page proved nothing: what the scan observed stays */
	ASSERT_TRUE(memcmp(&c.obs, &before, sizeof before) == 0);
	read_page(&c, &p, PS, T0 + 500 * SEC, SEC, false, true);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_REREAD);
	ASSERT_EQ_INT(d.next_offset, 200 - (PS - 1) - 2 * (PS - 1));
	cursor_committed(&c, &p, &d);
	/* never before 0 */
	c.gap_step = 1000;
	read_page(&c, &p, PS, T0 + 500 * SEC, SEC, false, true);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_REREAD);
	ASSERT_EQ_INT(d.next_offset, 0);
	/* a page that joins moves on and ends the stepping back */
	cursor_committed(&c, &p, &d);
	read_page(&c, &p, PS, T0 + 500 * SEC, SEC, true, true);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_NEXT_PAGE);
	cursor_committed(&c, &p, &d);
	ASSERT_EQ_INT(c.gap_step, 0);
}

/* Stepping back without ever joining is bounded. */
static void
test_reread_gives_up(void)
{
	struct sync_state st = state_empty();
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;
	int n = 0;

	cursor_pass_begin(&c, false, 1, PS, LOOKBACK_MS, NOW, ROWS_NO_TIME, &st);
	cursor_scan_begin(&c, SCAN_FULL, 0);
	for (;;) {
		c.offset = 1000000;
		c.gap_step = 0;
		read_page(&c, &p, PS, T0, SEC, false, true);
		cursor_page(&c, &p, &st, &d);
		if (d.verdict != CURSOR_REREAD)
			break;
		ASSERT_TRUE(++n <= DECIDE_MAX_REREADS);
	}
	ASSERT_EQ_INT(d.verdict, CURSOR_FAIL_NO_JOIN);
	ASSERT_EQ_INT(n, DECIDE_MAX_REREADS);
}

/* At offset 0 nothing lies before the page: it joins by definition. */
static void
test_no_reread_at_offset_zero(void)
{
	struct sync_state st = state_empty();
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;

	cursor_pass_begin(&c, false, 1, PS, LOOKBACK_MS, NOW, ROWS_NO_TIME, &st);
	cursor_scan_begin(&c, SCAN_FULL, 0);
	read_page(&c, &p, PS, T0, SEC, false, true);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_NEXT_PAGE);
	/* nor with one call per page, where pages cannot overlap */
	cursor_pass_begin(&c, false, 1, 1, LOOKBACK_MS, NOW, ROWS_NO_TIME, &st);
	cursor_scan_begin(&c, SCAN_FULL, 5);
	read_page(&c, &p, 1, T0, SEC, false, true);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_NEXT_PAGE);
	ASSERT_EQ_INT(d.next_offset, 6);
}

/* Full pages that join but list nothing new: the API repeats itself past the end. */
static void
test_stall(void)
{
	struct sync_state st = state_empty();
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;

	cursor_pass_begin(&c, false, 1, PS, LOOKBACK_MS, NOW, ROWS_NO_TIME, &st);
	cursor_scan_begin(&c, SCAN_FULL, 0);
	read_page(&c, &p, PS, T0, SEC, false, false);
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_NEXT_PAGE);
	cursor_committed(&c, &p, &d);
	for (int i = 1; i < DECIDE_STALL_PAGES; i++) {
		read_page(&c, &p, PS, T0, 0, true, true);
		p.new_calls = 0;
		cursor_page(&c, &p, &st, &d);
		ASSERT_EQ_INT(d.verdict, CURSOR_NEXT_PAGE);
		cursor_committed(&c, &p, &d);
	}
	read_page(&c, &p, PS, T0, 0, true, true);
	p.new_calls = 0;
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_FAIL_STALL);
}

/* A call read again far beyond where it was read first: the list started over. */
static void
test_repeat_fails(void)
{
	struct sync_state st = state_empty();
	struct cursor c;
	struct cursor_page p;
	struct cursor_decision d;

	cursor_pass_begin(&c, false, 1, PS, LOOKBACK_MS, NOW, ROWS_NO_TIME, &st);
	cursor_scan_begin(&c, SCAN_FULL, 300);
	read_page(&c, &p, PS, T0, SEC, true, true);
	p.repeat_prev = 0;
	p.repeat_at = 300;
	cursor_page(&c, &p, &st, &d);
	ASSERT_EQ_INT(d.verdict, CURSOR_FAIL_REPEAT);
}

int
main(int argc, char **argv)
{
	static const struct test_case tests[] = {
		TEST(test_order_detection),
		TEST(test_order_known_calls_set_place),
		TEST(test_newest_ignores_future),
		TEST(test_window_from_ring),
		TEST(test_window_older_than_ring),
		TEST(test_full_scan_pages),
		TEST(test_tail_newest_ends_past_threshold),
		TEST(test_tail_oldest_probe_restart),
		TEST(test_contradicting_order),
		TEST(test_backfill_circle),
		TEST(test_backfill_from_zero_closes_at_end),
		TEST(test_reread_on_no_join),
		TEST(test_reread_gives_up),
		TEST(test_no_reread_at_offset_zero),
		TEST(test_stall),
		TEST(test_repeat_fails),
	};

	/* argv[1] is the data directory, unused here; then test names */
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2, argc > 2 ? argc - 2 : 0);
}
