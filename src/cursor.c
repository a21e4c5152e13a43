/* cursor: where a scan stands and what each page means for it, on plain data (no I/O). */
#include "cursor.h"

#include <stdio.h>
#include <string.h>

#include "rows.h"

void
cursor_obs_reset(struct scan_obs *o)
{
	memset(o, 0, sizeof *o);
	o->prev_started = o->newest = o->first_started = ROWS_NO_TIME;
}

void
cursor_obs_call(struct scan_obs *o, int64_t t, bool known, int64_t now_us)
{
	if (t == ROWS_NO_TIME)
		return;
	if (!known && o->prev_started != ROWS_NO_TIME) {
		if (t > o->prev_started)
			o->asc++;
		else if (t < o->prev_started)
			o->desc++;
	}
	o->prev_started = t;
	/* a start far in the future would stop every later window short */
	if (t <= now_us + CURSOR_FUTURE_SLACK_US && (o->newest == ROWS_NO_TIME || t > o->newest))
		o->newest = t;
}

const char *
cursor_order_detected(const struct scan_obs *o)
{
	if (o->asc > 0 && o->desc == 0)
		return "oldest_first";
	if (o->desc > 0 && o->asc == 0)
		return "newest_first";
	if (o->asc > 0 && o->desc > 0)
		return "unknown";
	return NULL; /* too few calls to tell */
}

const char *
cursor_complete(enum scan_kind scan, const struct scan_obs *o, int64_t pass_start_newest,
    int64_t lookback_us, struct sync_state *next)
{
	const char *order = cursor_order_detected(o);
	const char *learnt = NULL;
	int64_t newest = next->newest_started_at;

	if (scan == SCAN_FULL && order != NULL) {
		if (strcmp(order, next->api_order) != 0)
			learnt = order;
		snprintf(next->api_order, sizeof next->api_order, "%s", order);
	}
	if (o->newest != ROWS_NO_TIME && (newest == ROWS_NO_TIME || o->newest > newest))
		newest = o->newest;
	next->newest_started_at = newest;
	/*
	 * The next window starts lookback before the newest call known when this
	 * pass began: a late call that landed behind this pass's position while it
	 * paged is inside it.
	 */
	next->window_base_at = pass_start_newest != ROWS_NO_TIME ? pass_start_newest : newest;
	if (newest != ROWS_NO_TIME && (scan == SCAN_FULL || scan == SCAN_TAIL_OLDEST)) {
		/* the last page that starts before the next pass's window */
		int64_t limit = next->window_base_at - lookback_us;
		int64_t best = -1;
		for (unsigned i = 0; i < o->ring_len; i++)
			if (o->ring[i].first_started < limit && o->ring[i].offset > best)
				best = o->ring[i].offset;
		if (best < 0 && o->ring_len > 0) {
			/* the window starts before what we remember: take the oldest page */
			best = INT64_MAX;
			for (unsigned i = 0; i < o->ring_len; i++)
				if (o->ring[i].offset < best)
					best = o->ring[i].offset;
		}
		if (best >= 0)
			next->window_offset = best;
	}
	return learnt;
}

void
cursor_pass_begin(struct cursor *c, bool backfill, int64_t run_id, int64_t page_size,
    int64_t lookback_ms, int64_t now_us, int64_t pass_start_newest, const struct sync_state *st)
{
	int64_t base = st->window_base_at != ROWS_NO_TIME ? st->window_base_at :
	    st->newest_started_at;

	c->backfill = backfill;
	c->run_id = run_id;
	c->page_size = page_size;
	c->lookback_us = lookback_ms * 1000;
	c->now_us = now_us;
	c->pass_start_newest = pass_start_newest;
	c->threshold = base == ROWS_NO_TIME ? ROWS_NO_TIME : base - c->lookback_us;
	/* it trusts nothing the last one read: to the end, then from 0 back to where it began */
	c->circle_start = backfill && st->backfill_offset >= 0 ? st->backfill_offset : 0;
	c->wrapped = false;
	c->step = page_size;
}

void
cursor_scan_begin(struct cursor *c, enum scan_kind kind, int64_t offset)
{
	c->scan = kind;
	c->offset = offset;
	c->gap_step = 0;
	decide_progress_reset(&c->progress);
	cursor_obs_reset(&c->obs);
	c->probing = kind == SCAN_TAIL_OLDEST && offset > 0;
}

void
cursor_page_begin(const struct cursor *c, struct cursor_page *p)
{
	p->obs = c->obs;
	p->obs.first_started = ROWS_NO_TIME;
	p->listed = 0;
	p->kept = 0;
	p->read_before = false;
	p->joined = false;
	p->new_calls = 0;
	p->meets_start = false;
	p->repeat_prev = p->repeat_at = -1;
	p->repeat_key[0] = '\0';
}

void
cursor_page_call(const struct cursor *c, struct cursor_page *p, unsigned index, int64_t t,
    bool known)
{
	if (index == 0)
		p->obs.first_started = t;
	cursor_obs_call(&p->obs, t, known, c->now_us);
	if (known)
		p->joined = true;
	else
		p->new_calls++;
}

/* Remembers where the page started, to place the next pass's window. */
static void
cursor_ring_add(struct scan_obs *o, int64_t offset)
{
	o->ring[o->ring_pos].offset = offset;
	o->ring[o->ring_pos].first_started = o->first_started;
	o->ring_pos = (o->ring_pos + 1) % CURSOR_WINDOW_RING;
	if (o->ring_len < CURSOR_WINDOW_RING)
		o->ring_len++;
}

void
cursor_page(struct cursor *c, struct cursor_page *p, const struct sync_state *state,
    struct cursor_decision *d)
{
	bool last = p->listed < (uint64_t)c->page_size;
	bool overlap = c->page_size > 1;
	/* pages overlap by one call, so each can show it joins the ones before */
	int64_t after = c->offset + p->listed - (overlap && p->listed > 0 ? 1 : 0);
	struct scan_obs *o = &p->obs;
	bool contradicts = false, restart_probe = false;
	enum decide_circle circle = CIRCLE_GO_ON;

	d->next = *state;
	d->next_offset = after;
	d->gap_step = 0;
	d->order_learnt = NULL;
	/* no drift carries a call that far ahead: the API answers past the end from the start */
	if (p->repeat_at >= 0) {
		d->verdict = CURSOR_FAIL_REPEAT;
		return;
	}
	/* at offset 0 nothing lies before the page: it joins by definition */
	if (overlap && p->read_before && c->offset > 0 && !p->joined) {
		if (decide_reread_stalls(&c->progress)) {
			d->verdict = CURSOR_FAIL_NO_JOIN;
			return;
		}
		/* calls were deleted ahead: step back, further each time, until a page joins */
		d->gap_step = c->gap_step > 0 ? c->gap_step * 2 : c->page_size - 1;
		d->next_offset = c->offset > d->gap_step ? c->offset - d->gap_step : 0;
		d->verdict = CURSOR_REREAD;
		return;
	}
	/* a scan ends only on a short page: one that never comes must not keep it going */
	if (!last && decide_page_stalls(&c->progress, p->new_calls)) {
		d->verdict = CURSOR_FAIL_STALL;
		return;
	}
	if (p->kept > 0 && o->first_started != ROWS_NO_TIME)
		cursor_ring_add(o, c->offset);

	switch (c->scan) {
	case SCAN_FULL:
		if (!c->backfill) {
			if (last)
				d->order_learnt = cursor_complete(c->scan, o, c->pass_start_newest,
				    c->lookback_us, &d->next);
			break;
		}
		circle = decide_circle_step(c->circle_start, c->wrapped, last, p->meets_start);
		d->next.backfill_offset = after;
		d->next.backfill_run_id = c->run_id;
		d->next.backfill_wrap_to = c->wrapped ? c->circle_start : -1;
		if (!c->wrapped && last)
			d->order_learnt = cursor_complete(c->scan, o, c->pass_start_newest,
			    c->lookback_us, &d->next);
		if (circle == CIRCLE_WRAP) {
			d->next.backfill_offset = 0;
			d->next.backfill_wrap_to = c->circle_start;
		}
		/* the reconciliation is its own commit, once its numbers are known */
		last = circle != CIRCLE_GO_ON;
		break;
	case SCAN_TAIL_NEWEST:
		contradicts = o->asc > 0;
		/* past the window once a call started before it */
		if (!last && o->prev_started != ROWS_NO_TIME && o->prev_started < c->threshold)
			last = true;
		if (last && !contradicts)
			cursor_complete(c->scan, o, c->pass_start_newest, c->lookback_us, &d->next);
		break;
	case SCAN_TAIL_OLDEST:
		contradicts = o->desc > 0;
		/* the window must start inside or before the first page, else step back */
		restart_probe = c->probing &&
		    (o->first_started == ROWS_NO_TIME || o->first_started >= c->threshold);
		if (last && !contradicts && !restart_probe)
			cursor_complete(c->scan, o, c->pass_start_newest, c->lookback_us, &d->next);
		break;
	case SCAN_UNFINISHED:
	case SCAN_CONTACT:
		break;
	}
	if (contradicts) {
		snprintf(d->next.api_order, sizeof d->next.api_order, "unknown");
		d->next_offset = 0;
		d->verdict = CURSOR_ORDER_CHANGED;
	} else if (restart_probe) {
		d->next_offset = c->offset > c->step ? c->offset - c->step : 0;
		d->verdict = CURSOR_PROBE_BACK;
	} else if (circle == CIRCLE_WRAP) {
		d->next_offset = 0;
		d->verdict = CURSOR_WRAP;
	} else if (circle == CIRCLE_CLOSED) {
		d->verdict = CURSOR_CLOSED;
	} else {
		d->verdict = last ? CURSOR_SCAN_END : CURSOR_NEXT_PAGE;
	}
}

void
cursor_committed(struct cursor *c, const struct cursor_page *p,
    const struct cursor_decision *d)
{
	if (d->verdict == CURSOR_REREAD) {
		/* the page proved nothing about the scan: only where to read next */
		c->gap_step = d->gap_step;
		c->offset = d->next_offset;
		return;
	}
	c->obs = p->obs;
	c->gap_step = 0;
	switch (d->verdict) {
	case CURSOR_ORDER_CHANGED:
		break;
	case CURSOR_PROBE_BACK:
		c->step *= 2;
		break;
	default:
		c->probing = false;
		if (d->verdict == CURSOR_WRAP)
			c->wrapped = true;
		else if (d->verdict == CURSOR_NEXT_PAGE)
			c->offset = d->next_offset;
		break;
	}
}
