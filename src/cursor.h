/* cursor: where a scan stands and what each page means for it, on plain data (no I/O). */
#ifndef VOZAGENT_CURSOR_H
#define VOZAGENT_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "anchor.h"
#include "decide.h"
#include "store.h"

#define CURSOR_WINDOW_RING 64                   /* pages remembered to place the lookback window */
#define CURSOR_FUTURE_SLACK_US (86400LL * 1000000) /* a start later than now + this is not a cursor */

/*
 * A pass is a sequence of scans. Each scan pages through one listing
 * (the whole list, or one filtered by status or contact) from an offset.
 */
enum scan_kind {
	SCAN_FULL,          /* whole list from an offset to its end */
	SCAN_TAIL_NEWEST,   /* newest-first: from 0 until past the lookback window */
	SCAN_TAIL_OLDEST,   /* oldest-first: from near the window to the end */
	SCAN_UNFINISHED,    /* status=in-progress, to learn which calls are still running */
	SCAN_CONTACT,       /* one contact's calls, to refresh calls that have finished */
};

struct window_mark {
	int64_t offset;
	int64_t first_started;
};

/*
 * What a scan has learnt from the pages it committed: the order of their
 * calls, the newest start, where pages started. A page works on a copy,
 * which replaces this only once the page is committed: a page that fails,
 * or whose commit is lost, leaves no trace.
 */
struct scan_obs {
	int64_t prev_started;          /* of the last call read, in list order */
	int64_t asc, desc;             /* neighbouring calls in each order */
	int64_t newest;                /* newest call_started_at (not in the future) */
	int64_t first_started;         /* of this page's first call */
	struct window_mark ring[CURSOR_WINDOW_RING];
	unsigned ring_len, ring_pos;
};

/* Everything a pass's scans decide on. */
struct cursor {
	/* the pass, set by cursor_pass_begin */
	bool backfill;                 /* a backfill pass (else incremental) */
	int64_t run_id;
	int64_t page_size;
	int64_t lookback_us;
	int64_t now_us;                /* wall clock at pass start */
	int64_t pass_start_newest;     /* newest call mirrored when the pass started */
	int64_t threshold;             /* window base - lookback, at pass start */

	/* a backfill's circle: from where the last one stopped to the end, then 0.. */
	int64_t circle_start;
	bool wrapped;                  /* reading from offset 0 again */

	/* the current scan, set by cursor_scan_begin */
	enum scan_kind scan;
	int64_t offset;                /* of the page being read */
	int64_t step;                  /* oldest-first: how far the window probe steps back */
	bool probing;                  /* oldest-first: first page, checking the start */
	int64_t gap_step;              /* stepping back over a shift; 0 = not */
	struct decide_progress progress;
	struct scan_obs obs;           /* as committed */
};

/* What one page showed, gathered while it was read. */
struct cursor_page {
	struct scan_obs obs;           /* the scan's, plus this page's calls */
	unsigned listed;               /* calls the page listed */
	size_t kept;                   /* rows it holds to write (not known, not rejected) */
	bool read_before;              /* the scan holds calls this page can join */
	bool joined;                   /* it listed a call read before */
	size_t new_calls;              /* calls the scan had not read */
	bool meets_start;              /* a backfill's wrap listed a call of its first page */
	int64_t repeat_prev, repeat_at; /* a call read far before, and here; -1: none */
	char repeat_key[ANCHOR_KEY_MAX + 1];
};

/* What a page means. Each but the FAILs commits the page with decision.next first. */
enum cursor_verdict {
	CURSOR_NEXT_PAGE,              /* then read the page at next_offset */
	CURSOR_REREAD,                 /* the page does not join: commit its rows, cursor unchanged,
	                                  and read again from next_offset */
	CURSOR_SCAN_END,               /* then the pass's next scan */
	CURSOR_WRAP,                   /* a backfill at the end: then the whole list from 0 */
	CURSOR_CLOSED,                 /* a backfill read its circle: then reconcile */
	CURSOR_ORDER_CHANGED,          /* a tail scan met the other order: then the whole list */
	CURSOR_PROBE_BACK,             /* oldest-first starts after the window: scan again from next_offset */
	CURSOR_FAIL_REPEAT,            /* the list repeats past its end (repeat_* say where) */
	CURSOR_FAIL_NO_JOIN,           /* stepped back DECIDE_MAX_REREADS times without joining */
	CURSOR_FAIL_STALL,             /* DECIDE_STALL_PAGES full pages listed nothing new */
};

struct cursor_decision {
	enum cursor_verdict verdict;
	struct sync_state next;        /* the cursor the commit writes */
	int64_t next_offset;
	int64_t gap_step;              /* CURSOR_REREAD: how far it stepped back */
	const char *order_learnt;      /* a whole-list scan found a new api_order; else NULL */
};

void cursor_obs_reset(struct scan_obs *o);
/*
 * One call in list order, started at t (ROWS_NO_TIME: untyped). A call the
 * scan read before (known) only sets the place, it says nothing of order.
 */
void cursor_obs_call(struct scan_obs *o, int64_t t, bool known, int64_t now_us);
/* "oldest_first", "newest_first", "unknown" (both seen), or NULL: too few calls to tell. */
const char *cursor_order_detected(const struct scan_obs *o);
/*
 * A whole-list or tail scan has reached its end: moves next (the state
 * before the commit) to where the next incremental pass starts. Returns the
 * order a whole-list scan found when it differs from next's; else NULL.
 */
const char *cursor_complete(enum scan_kind scan, const struct scan_obs *o,
    int64_t pass_start_newest, int64_t lookback_us, struct sync_state *next);

/*
 * A pass starts from the committed state st: the lookback threshold, and
 * for a backfill where its circle begins (where the last one stopped).
 */
void cursor_pass_begin(struct cursor *c, bool backfill, int64_t run_id, int64_t page_size,
    int64_t lookback_ms, int64_t now_us, int64_t pass_start_newest, const struct sync_state *st);
/* A scan starts at offset: nothing observed, nothing stalled. */
void cursor_scan_begin(struct cursor *c, enum scan_kind kind, int64_t offset);

/* The page at c->offset is about to be read. */
void cursor_page_begin(const struct cursor *c, struct cursor_page *p);
/* The page's call number index (0 = first) started at t; known: the scan read it before. */
void cursor_page_call(const struct cursor *c, struct cursor_page *p, unsigned index, int64_t t,
    bool known);
/*
 * The page p (listed, kept and read_before filled in) was read whole: what
 * it means, from the committed state. Counts it towards a stall (also when
 * its commit then fails, so a page read again counts again).
 */
void cursor_page(struct cursor *c, struct cursor_page *p, const struct sync_state *state,
    struct cursor_decision *d);
/* The commit d asked for went through: what the page showed is now the scan's. */
void cursor_committed(struct cursor *c, const struct cursor_page *p,
    const struct cursor_decision *d);

#endif
