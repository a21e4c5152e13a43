/* pager: the pages of one listing, several in flight, handed over in list order. */
#ifndef VOZAGENT_PAGER_H
#define VOZAGENT_PAGER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "anchor.h"
#include "config.h"
#include "fetch.h"
#include "rows.h"

/* A page read whole, parsed and typed; lent to the consumer until pager_next/_restart/_stop. */
struct pager_page {
	int64_t offset;
	unsigned listed;          /* records of the page, rejected ones included */
	struct rows *rows;        /* the records that are rows (rejects carry the offset) */
	char (*keys)[ANCHOR_KEY_MAX + 1]; /* per record, in page order: its anchor key */
	int64_t *started;         /* per record: call_started_at, ROWS_NO_TIME when untyped */
};

enum pager_failure {
	PAGER_FAIL_AUTH,          /* 401/403 */
	PAGER_FAIL_REQUEST,       /* 400 */
	PAGER_FAIL_API,           /* retries spent, or a request that cannot start */
};

struct pager_cb {
	/* The next page in list order. The consumer calls pager_next, _restart or _stop, now or later. */
	void (*page)(void *arg, const struct pager_page *page);
	/* The listing cannot go on; nothing more is called back until the next pager_start. */
	void (*fail)(void *arg, enum pager_failure why, const char *msg);
	void *arg;
};

struct pager;

/* cfg and fetch are borrowed; concurrency slots, each with its own parser and rows. */
struct pager *pager_new(uv_loop_t *loop, const struct config *cfg, struct fetch *fetch,
    int concurrency, const struct pager_cb *cb);
/*
 * Reads the listing whose URL is prefix followed by an offset, from offset
 * on, pages step apart (page_size - 1: they overlap by one call). With
 * speculate (a whole list), the first page alone, then as many as the
 * window allows; without (a listing that is usually a page or two long),
 * one at a time for its first full pages, then twice as many after each. Drops what a listing before held.
 */
int pager_start(struct pager *pg, const char *prefix, int64_t offset, int64_t step,
    bool speculate);
/* The page handed over is done with: hand over the one step after it. */
void pager_next(struct pager *pg);
/* The listing moved under the consumer: drop everything, read again from offset. */
void pager_restart(struct pager *pg, int64_t offset);
/*
 * The listing is done: nothing more is asked or called back. Requests in
 * flight finish on their own (their answers ignored), keeping their
 * connections for the next listing.
 */
void pager_stop(struct pager *pg);
/* The pass is over: cancel what is in flight too. */
void pager_abandon(struct pager *pg);
/* Calls idle(arg of the callbacks) once no request is in flight: now, or when the last ends. */
void pager_when_idle(struct pager *pg, void (*idle)(void *arg));
/* Requests answered or failed, in all listings (cancelled ones not). */
int64_t pager_requests(const struct pager *pg);
/* Page requests retried, in all listings. */
int64_t pager_retries(const struct pager *pg);
/* Requests pace allows in flight now. */
int pager_window(const struct pager *pg);
/* Closes its handles; the caller runs the loop once more to finish. */
void pager_free(struct pager *pg);

#endif
