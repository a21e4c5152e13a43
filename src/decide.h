/* decide: a pass's decisions on plain data (no I/O), so each can be tested alone. */
#ifndef VOZAGENT_DECIDE_H
#define VOZAGENT_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Full pages in a row that list no call the scan had not read: the API is repeating itself. */
#define DECIDE_STALL_PAGES 3
/* Steps back over a shift since the scan last moved on: more, and the API is not a list. */
#define DECIDE_MAX_REREADS 32
/* A reconciliation may always mark this many calls deleted, whatever the fraction. */
#define DECIDE_DELETE_FLOOR 10

/* How far one scan has got: reset when a scan starts. */
struct decide_progress {
	unsigned stalled;         /* full pages in a row that listed nothing new */
	unsigned rereads;         /* steps back since the last page that listed something new */
};

void decide_progress_reset(struct decide_progress *p);
/*
 * A full page joined the scan and listed new_calls calls the scan had not
 * read. True when the scan must stop: DECIDE_STALL_PAGES such pages in a row
 * listed nothing new. Real drift cannot look like that unless page_size - 1
 * calls land ahead of the position between every two requests.
 */
bool decide_page_stalls(struct decide_progress *p, size_t new_calls);
/* A page did not join, so the scan steps back. True when it has done so too often. */
bool decide_reread_stalls(struct decide_progress *p);
/*
 * One scan read a call at last_offset and, with no read of it in between,
 * again at offset. True when that proves the list starts over past its end:
 * more than ANCHOR_PAGES pages further on. Calls landing ahead carry a call
 * the scan read along with it, but then each page reads it again, a page at
 * most further on; a burst of more than ANCHOR_PAGES pages at once makes
 * the next page fail to join, and the step back starts the map afresh.
 */
bool decide_list_repeats(int64_t last_offset, int64_t offset, int64_t page_size);

/*
 * A backfill reads a full circle of the list itself, starting where the last
 * one stopped: start..end, then 0.. until a page lists a call of the first
 * page it read at start (or the end again).
 */
enum decide_circle {
	CIRCLE_GO_ON,             /* read the next page */
	CIRCLE_WRAP,              /* the end of the list: go on from offset 0 */
	CIRCLE_CLOSED,            /* every call of the list has been read by this command */
};

/*
 * After a page of a backfill: start is the offset this command began at,
 * wrapped says it is past the end already, last_page that the page was
 * short, meets_start that it listed a call of the first page read at start.
 */
enum decide_circle decide_circle_step(int64_t start, bool wrapped, bool last_page,
    bool meets_start);

/*
 * May one reconciliation mark `unseen` of a source's `live` calls deleted?
 * Up to DECIDE_DELETE_FLOOR calls always; more only up to max_fraction of
 * live (0..1), unless the operator confirmed a mass deletion.
 */
bool decide_may_mark(int64_t unseen, int64_t live, double max_fraction, bool confirmed);

#endif
