/* pager: the pages of one listing, several in flight, handed over in list order. */
#include "pager.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pace.h"
#include "parse.h"

#define PAGER_MAX_ATTEMPTS 5                  /* per page, for 5xx/network/bad body */
#define PAGER_MAX_429 20                      /* per page, for rate limiting */
#define PAGER_BACKOFF_BASE_MS 500
#define PAGER_BACKOFF_CAP_MS 30000
#define PAGER_URL_MAX (64 * 1024)             /* as sync builds the prefix */
/*
 * A listing that is not a whole list reads this many full pages one at a
 * time before it asks ahead: an incremental pass usually needs a page or
 * two, and requests past its end would be wasted.
 */
#define PAGER_RAMP_AFTER 8

enum slot_state {
	SLOT_FREE,
	SLOT_WAITING,             /* before a retry: its timer runs */
	SLOT_QUEUED,              /* to be requested (again) as soon as pace allows */
	SLOT_FETCHING,
	SLOT_READY,               /* read whole, waiting for its turn */
	SLOT_LENT,                /* handed over to the consumer */
	SLOT_ORPHAN,              /* in flight for a listing dropped since: its answer is ignored */
};

struct pager_slot {
	struct pager *pg;
	enum slot_state state;
	int attempts, attempts_429;
	uv_timer_t timer;         /* the retry's delay */
	struct parse *parse;
	struct pager_page page;
	unsigned keys_cap;
	char url[PAGER_URL_MAX];
};

struct pager {
	uv_loop_t *loop;
	const struct config *cfg;
	struct fetch *fetch;
	struct pager_cb cb;
	struct pace pace;
	struct pager_slot *slots;
	int nslots;
	int closing;              /* handles still to close before the memory goes */
	uv_timer_t pump_timer;    /* pace asked to wait */

	bool active;
	bool want;                /* the consumer waits for the page at deliver */
	bool pumping;             /* pager_pump is on the stack: do not hand over inside it */
	char *prefix;
	int64_t step;
	int64_t next;             /* offset of the next page not requested yet */
	int64_t deliver;          /* offset of the next page to hand over */
	int64_t end;              /* a short page was here: nothing past it is requested */
	int ramp;                 /* pages this listing may have in flight, growing */
	int full_pages;           /* full pages this listing has read */
	bool speculate;           /* a whole list: all the window's pages once one came back full */
	int in_flight;            /* requests sent and not answered, orphans included */
	int64_t requests;         /* requests answered (or failed), orphans included */
	int64_t retries;          /* page requests scheduled again */
	void (*idle)(void *arg);  /* to call once nothing is in flight */
};

static void pager_pump(struct pager *pg);

static uint64_t
pager_now(const struct pager *pg)
{
	return uv_now(pg->loop);
}

static int
slot_record(void *arg, const struct record *rec)
{
	struct pager_slot *sl = arg;
	struct pager_page *p = &sl->page;
	const struct field_value *tv = &rec->f[FIELD_CALL_STARTED_AT];
	int64_t t = ROWS_NO_TIME;
	int rc;

	/* parse caps the records of a page at its limit, so the index is in range */
	if (rec->index >= sl->keys_cap)
		return -1;
	if (tv->type == JSON_STRING && rows_parse_timestamp(tv->text, tv->len, &t) < 0)
		t = ROWS_NO_TIME;
	p->started[rec->index] = t;
	anchor_key(rec, p->keys[rec->index]);
	rc = rows_add(p->rows, rec);
	if (rc == 1)
		log_warnx("offset %" PRId64 ": %s: skipped", p->offset,
		    rows_reject_reason(p->rows));
	return rc < 0 ? -1 : 0;
}

static int
slot_data(void *arg, const char *buf, size_t len)
{
	struct pager_slot *sl = arg;
	return parse_feed(sl->parse, buf, len);
}

struct pager *
pager_new(uv_loop_t *loop, const struct config *cfg, struct fetch *fetch, int concurrency,
    const struct pager_cb *cb)
{
	struct pager *pg = calloc(1, sizeof *pg);
	unsigned keys = (unsigned)(cfg->page_size > 0 ? cfg->page_size : 1);

	if (pg == NULL)
		return NULL;
	pg->loop = loop;
	pg->cfg = cfg;
	pg->fetch = fetch;
	pg->cb = *cb;
	pace_init(&pg->pace, concurrency);
	pg->nslots = concurrency < 1 ? 1 : concurrency;
	pg->slots = calloc((size_t)pg->nslots, sizeof *pg->slots);
	if (pg->slots == NULL || uv_timer_init(loop, &pg->pump_timer) != 0) {
		free(pg->slots);
		free(pg);
		return NULL;
	}
	pg->pump_timer.data = pg;
	pg->closing = 1;
	for (int i = 0; i < pg->nslots; i++) {
		struct pager_slot *sl = &pg->slots[i];
		sl->pg = pg;
		sl->keys_cap = keys;
		/* a call is never larger than the body that holds it; COPY escaping at most doubles it */
		sl->parse = parse_new((size_t)cfg->max_body_bytes, slot_record, sl);
		sl->page.rows = rows_new((size_t)cfg->max_body_bytes * 2 + 65536);
		sl->page.keys = calloc(keys, sizeof *sl->page.keys);
		sl->page.started = calloc(keys, sizeof *sl->page.started);
		if (uv_timer_init(loop, &sl->timer) == 0) {
			sl->timer.data = sl;
			pg->closing++;
		}
	}
	for (int i = 0; i < pg->nslots; i++) {
		struct pager_slot *sl = &pg->slots[i];
		if (sl->parse == NULL || sl->page.rows == NULL || sl->page.keys == NULL ||
		    sl->page.started == NULL || sl->timer.data == NULL) {
			pager_free(pg);
			return NULL;
		}
	}
	return pg;
}

int64_t
pager_requests(const struct pager *pg)
{
	return pg->requests;
}

int64_t
pager_retries(const struct pager *pg)
{
	return pg->retries;
}

int
pager_window(const struct pager *pg)
{
	return pace_window(&pg->pace);
}

/* The slot goes back to the pool; a request in flight finishes as an orphan. */
static void
slot_release(struct pager_slot *sl)
{
	if (sl->state == SLOT_WAITING)
		uv_timer_stop(&sl->timer);
	if (sl->state == SLOT_FETCHING || sl->state == SLOT_ORPHAN)
		sl->state = SLOT_ORPHAN;
	else
		sl->state = SLOT_FREE;
}

/*
 * Everything of the listing goes: retries, pages read. Requests in flight
 * are left to finish (their answers ignored): cancelling one mid-transfer
 * closes its keep-alive connection, and the API has seen it anyway.
 */
static void
pager_drop(struct pager *pg)
{
	for (int i = 0; i < pg->nslots; i++)
		slot_release(&pg->slots[i]);
	uv_timer_stop(&pg->pump_timer);
}

void
pager_abandon(struct pager *pg)
{
	fetch_cancel(pg->fetch);
	for (int i = 0; i < pg->nslots; i++) {
		slot_release(&pg->slots[i]);
		pg->slots[i].state = SLOT_FREE;
	}
	pg->in_flight = 0;
	pg->active = false;
	pg->want = false;
	pg->idle = NULL;
	uv_timer_stop(&pg->pump_timer);
}

void
pager_when_idle(struct pager *pg, void (*idle)(void *arg))
{
	if (pg->in_flight == 0) {
		idle(pg->cb.arg);
		return;
	}
	pg->idle = idle;
}

static void
pager_fail(struct pager *pg, enum pager_failure why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
pager_fail(struct pager *pg, enum pager_failure why, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	pager_drop(pg);
	pg->active = false;
	pg->cb.fail(pg->cb.arg, why, msg);
}

int
pager_start(struct pager *pg, const char *prefix, int64_t offset, int64_t step,
    bool speculate)
{
	char *p = strdup(prefix);

	if (p == NULL)
		return -1;
	pager_drop(pg);
	free(pg->prefix);
	pg->prefix = p;
	pg->step = step > 0 ? step : 1;
	pg->next = pg->deliver = offset;
	pg->end = INT64_MAX;
	/* the first page alone: a refused key, or a list of one page, costs one request */
	pg->ramp = 1;
	pg->speculate = speculate;
	pg->full_pages = 0;
	pg->active = true;
	pg->want = true;
	pager_pump(pg);
	return 0;
}

void
pager_restart(struct pager *pg, int64_t offset)
{
	pager_drop(pg);
	pg->next = pg->deliver = offset;
	pg->end = INT64_MAX;
	pg->active = true;
	pg->want = true;
	pager_pump(pg);
}

void
pager_stop(struct pager *pg)
{
	pager_drop(pg);
	pg->active = false;
	pg->want = false;
}

static struct pager_slot *
pager_slot_at(struct pager *pg, int64_t offset, enum slot_state state)
{
	for (int i = 0; i < pg->nslots; i++)
		if (pg->slots[i].state == state && pg->slots[i].page.offset == offset)
			return &pg->slots[i];
	return NULL;
}

void
pager_next(struct pager *pg)
{
	struct pager_slot *sl = pager_slot_at(pg, pg->deliver, SLOT_LENT);

	if (sl != NULL)
		sl->state = SLOT_FREE;
	pg->deliver += pg->step;
	pg->want = true;
	pager_pump(pg);
}

static void on_slot_done(void *arg, const struct fetch_result *res);

/* Sends the slot's request. -1 when it cannot start (the listing has failed then). */
static int
slot_fetch(struct pager *pg, struct pager_slot *sl)
{
	int n;

	parse_reset(sl->parse);
	parse_set_max_records(sl->parse, (unsigned)pg->cfg->page_size);
	rows_reset(sl->page.rows);
	rows_set_page_offset(sl->page.rows, sl->page.offset);
	sl->page.listed = 0;
	n = snprintf(sl->url, sizeof sl->url, "%s%" PRId64, pg->prefix, sl->page.offset);
	if (n < 0 || (size_t)n >= sizeof sl->url) {
		pager_fail(pg, PAGER_FAIL_API, "cannot build the request URL: it would be longer "
		    "than %d bytes", PAGER_URL_MAX);
		return -1;
	}
	log_debug("GET %s", sl->url);
	if (fetch_get(pg->fetch, sl->url, slot_data, on_slot_done, sl) < 0) {
		pager_fail(pg, PAGER_FAIL_API, "cannot start a request to %s", sl->url);
		return -1;
	}
	pace_started(&pg->pace, pager_now(pg));
	sl->state = SLOT_FETCHING;
	pg->in_flight++;
	return 0;
}

/* The slot to request next: a page to read again first (the lowest), else the next new one. */
static struct pager_slot *
pager_pick(struct pager *pg)
{
	struct pager_slot *best = NULL, *free_slot = NULL;

	for (int i = 0; i < pg->nslots; i++) {
		struct pager_slot *sl = &pg->slots[i];
		if (sl->state == SLOT_QUEUED && (best == NULL || sl->page.offset < best->page.offset))
			best = sl;
		else if (sl->state == SLOT_FREE && free_slot == NULL)
			free_slot = sl;
	}
	if (best != NULL)
		return best;
	/* no page ahead of the one handed over further than the slots and the ramp allow */
	if (free_slot == NULL || pg->next > pg->end ||
	    (pg->next - pg->deliver) / pg->step >= pg->ramp)
		return NULL;
	free_slot->page.offset = pg->next;
	free_slot->attempts = free_slot->attempts_429 = 0;
	free_slot->state = SLOT_QUEUED;
	pg->next += pg->step;
	return free_slot;
}

static void
on_pump_timer(uv_timer_t *t)
{
	pager_pump(t->data);
}

/* Sends what pace allows, then hands over the next page if it is read and wanted. */
static void
pager_pump(struct pager *pg)
{
	struct pager_slot *sl;

	if (!pg->active || pg->pumping)
		return;
	pg->pumping = true;
	for (;;) {
		uint64_t wait = pace_wait(&pg->pace, pager_now(pg), pg->in_flight);
		if (wait == UINT64_MAX)
			break;
		if (wait > 0) {
			/* only when there is something to send */
			if (pager_pick(pg) != NULL)
				uv_timer_start(&pg->pump_timer, on_pump_timer, wait, 0);
			break;
		}
		if ((sl = pager_pick(pg)) == NULL)
			break;
		if (slot_fetch(pg, sl) < 0) {
			pg->pumping = false;
			return;
		}
	}
	pg->pumping = false;
	if (pg->active && pg->want && (sl = pager_slot_at(pg, pg->deliver, SLOT_READY)) != NULL) {
		pg->want = false;
		sl->state = SLOT_LENT;
		pg->cb.page(pg->cb.arg, &sl->page);
	}
}

static void
on_slot_timer(uv_timer_t *t)
{
	struct pager_slot *sl = t->data;

	sl->state = SLOT_QUEUED;
	pager_pump(sl->pg);
}

/* Retries the slot's page after a delay; false when it has been tried enough. */
static bool
slot_retry(struct pager *pg, struct pager_slot *sl, const struct fetch_result *res,
    const char *why)
{
	uint64_t now = pager_now(pg), delay;

	if (res->http_status == 429) {
		if (++sl->attempts_429 > PAGER_MAX_429)
			return false;
		delay = pace_throttled(&pg->pace, now, res->retry_after_s);
	} else {
		if (++sl->attempts >= PAGER_MAX_ATTEMPTS)
			return false;
		pace_failed(&pg->pace, now);
		delay = pace_backoff(sl->attempts, PAGER_BACKOFF_BASE_MS, PAGER_BACKOFF_CAP_MS,
		    (uint32_t)rand());
	}
	log_warnx("offset %" PRId64 ": %s; retrying in %.1fs", sl->page.offset, why,
	    delay / 1000.0);
	pg->retries++;
	sl->state = SLOT_WAITING;
	uv_timer_start(&sl->timer, on_slot_timer, delay, 0);
	return true;
}

static void
on_slot_done(void *arg, const struct fetch_result *res)
{
	struct pager_slot *sl = arg;
	struct pager *pg = sl->pg;
	long st = res->http_status;
	char why[768];

	if (sl->state != SLOT_FETCHING && sl->state != SLOT_ORPHAN)
		return;
	pg->in_flight--;
	pg->requests++;
	if (sl->state == SLOT_ORPHAN || !pg->active) {
		sl->state = SLOT_FREE;
		if (pg->in_flight == 0 && pg->idle != NULL) {
			void (*idle)(void *) = pg->idle;
			pg->idle = NULL;
			idle(pg->cb.arg);
			return;
		}
		pager_pump(pg);
		return;
	}
	sl->state = SLOT_FREE;
	/* past a short page: nobody will want it */
	if (sl->page.offset > pg->end) {
		pager_pump(pg);
		return;
	}
	if (st == 401 || st == 403) {
		pager_fail(pg, PAGER_FAIL_AUTH, "the API refused the key (HTTP %ld): check the key "
		    "in %s", st, pg->cfg->api_token_origin);
		return;
	}
	if (st == 400) {
		pager_fail(pg, PAGER_FAIL_REQUEST, "the API rejected the request (HTTP 400) GET %s: "
		    "%.300s%s", sl->url, res->excerpt, config_has_filters(pg->cfg) ?
		    " (check the filters status, contact_id, assistant_id and call_type in the "
		    "configuration)" : "");
		return;
	}
	if (res->aborted)
		snprintf(why, sizeof why, "bad body: %s", parse_errmsg(sl->parse));
	else if (res->transport_error || (st != 0 && (st < 200 || st > 299)))
		snprintf(why, sizeof why, "%s%s%.200s", res->error, res->excerpt[0] ? ": " : "",
		    res->excerpt);
	else if (parse_finish(sl->parse) < 0)
		snprintf(why, sizeof why, "bad body: %s", parse_errmsg(sl->parse));
	else {
		pace_ok(&pg->pace, pager_now(pg));
		sl->page.listed = parse_records(sl->parse);
		sl->state = SLOT_READY;
		if (sl->page.listed < (unsigned)pg->cfg->page_size) {
			/* the end of the list: drop what was read or asked past it */
			if (sl->page.offset < pg->end)
				pg->end = sl->page.offset;
			for (int i = 0; i < pg->nslots; i++) {
				struct pager_slot *o = &pg->slots[i];
				if (o->state != SLOT_FREE && o->state != SLOT_FETCHING &&
				    o->page.offset > pg->end)
					slot_release(o);
			}
		} else if (pg->ramp < pg->nslots) {
			/* a whole list opens up after its first page; another listing slowly */
			++pg->full_pages;
			if (pg->speculate)
				pg->ramp = pg->nslots;
			else if (pg->full_pages >= PAGER_RAMP_AFTER)
				pg->ramp = pg->ramp * 2 > pg->nslots ? pg->nslots : pg->ramp * 2;
		}
		pager_pump(pg);
		return;
	}
	log_clean(why);
	if (!slot_retry(pg, sl, res, why)) {
		pager_fail(pg, PAGER_FAIL_API, "giving up on the page at offset %" PRId64 ": %s",
		    sl->page.offset, why);
		return;
	}
	pager_pump(pg);
}

static void
pager_closed(struct pager *pg)
{
	if (--pg->closing > 0)
		return;
	for (int i = 0; i < pg->nslots; i++) {
		struct pager_slot *sl = &pg->slots[i];
		parse_free(sl->parse);
		rows_free(sl->page.rows);
		free(sl->page.keys);
		free(sl->page.started);
	}
	free(pg->slots);
	free(pg->prefix);
	free(pg);
}

static void
on_pump_timer_closed(uv_handle_t *h)
{
	pager_closed(h->data);
}

static void
on_slot_timer_closed(uv_handle_t *h)
{
	pager_closed(((struct pager_slot *)h->data)->pg);
}

void
pager_free(struct pager *pg)
{
	if (pg == NULL)
		return;
	pager_abandon(pg);
	for (int i = 0; i < pg->nslots; i++)
		if (pg->slots[i].timer.data != NULL)
			uv_close((uv_handle_t *)&pg->slots[i].timer, on_slot_timer_closed);
	uv_close((uv_handle_t *)&pg->pump_timer, on_pump_timer_closed);
}
