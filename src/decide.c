/* decide: a pass's decisions on plain data (no I/O), so each can be tested alone. */
#include "anchor.h"
#include "decide.h"

void
decide_progress_reset(struct decide_progress *p)
{
	p->stalled = 0;
	p->rereads = 0;
}

bool
decide_page_stalls(struct decide_progress *p, size_t new_calls)
{
	if (new_calls > 0) {
		decide_progress_reset(p);
		return false;
	}
	return ++p->stalled >= DECIDE_STALL_PAGES;
}

bool
decide_reread_stalls(struct decide_progress *p)
{
	return ++p->rereads > DECIDE_MAX_REREADS;
}

bool
decide_list_repeats(int64_t last_offset, int64_t offset, int64_t page_size)
{
	return offset - last_offset > (int64_t)ANCHOR_PAGES * page_size;
}

enum decide_circle
decide_circle_step(int64_t start, bool wrapped, bool last_page, bool meets_start)
{
	if (!wrapped) {
		if (!last_page)
			return CIRCLE_GO_ON;
		/* from offset 0 to the end is a whole circle already */
		return start <= 0 ? CIRCLE_CLOSED : CIRCLE_WRAP;
	}
	/* at the end again without meeting them: the first page's calls were all deleted */
	return meets_start || last_page ? CIRCLE_CLOSED : CIRCLE_GO_ON;
}

bool
decide_may_mark(int64_t unseen, int64_t live, double max_fraction, bool confirmed)
{
	if (confirmed || unseen <= DECIDE_DELETE_FLOOR)
		return true;
	if (live <= 0)
		return true;
	/* compare in integers where possible: 0.1 * 1000 must allow exactly 100 */
	return (double)unseen <= max_fraction * (double)live + 1e-9;
}
