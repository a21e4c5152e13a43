/* test_decide: the pass's pure decisions: stalled scans, the backfill's circle, mass deletions. */
#include <stdbool.h>
#include <stdint.h>

#include "anchor.h"
#include "decide.h"
#include "test.h"

/* An API that repeats a page past the end: every page joins, none lists anything new. */
static void
test_repeated_page_stalls(void)
{
	struct decide_progress p;

	decide_progress_reset(&p);
	ASSERT_FALSE(decide_page_stalls(&p, 100));   /* the real last full page */
	for (int i = 1; i < DECIDE_STALL_PAGES; i++)
		ASSERT_FALSE(decide_page_stalls(&p, 0));
	ASSERT_TRUE(decide_page_stalls(&p, 0));
}

/* Calls inserted ahead push known calls into a page; one new call is progress. */
static void
test_drift_is_progress(void)
{
	struct decide_progress p;

	decide_progress_reset(&p);
	for (int round = 0; round < 100; round++) {
		for (int i = 1; i < DECIDE_STALL_PAGES; i++)
			ASSERT_FALSE(decide_page_stalls(&p, 0));
		ASSERT_FALSE(decide_page_stalls(&p, 1));
	}
}

/* Pages that never join: stepping back is bounded, and progress starts the count afresh. */
static void
test_rereads_bounded(void)
{
	struct decide_progress p;
	int n = 0;

	decide_progress_reset(&p);
	while (!decide_reread_stalls(&p))
		ASSERT_TRUE(++n <= DECIDE_MAX_REREADS);
	ASSERT_EQ_INT(n, DECIDE_MAX_REREADS);
	decide_progress_reset(&p);
	for (int i = 0; i < 10 * DECIDE_MAX_REREADS; i++) {
		ASSERT_FALSE(decide_reread_stalls(&p));
		ASSERT_FALSE(decide_page_stalls(&p, 3));
	}
}

static void
test_circle_from_zero(void)
{
	ASSERT_EQ_INT(decide_circle_step(0, false, false, false), CIRCLE_GO_ON);
	ASSERT_EQ_INT(decide_circle_step(0, false, true, false), CIRCLE_CLOSED);
}

/* A resumed backfill reads to the end, wraps, and closes where it began. */
static void
test_circle_resumed(void)
{
	ASSERT_EQ_INT(decide_circle_step(700, false, false, false), CIRCLE_GO_ON);
	/* its first page lists its own calls: that is not the wrap meeting them */
	ASSERT_EQ_INT(decide_circle_step(700, false, false, true), CIRCLE_GO_ON);
	ASSERT_EQ_INT(decide_circle_step(700, false, true, false), CIRCLE_WRAP);
	ASSERT_EQ_INT(decide_circle_step(700, true, false, false), CIRCLE_GO_ON);
	ASSERT_EQ_INT(decide_circle_step(700, true, false, true), CIRCLE_CLOSED);
	/* the first page's calls were all deleted meanwhile: the end closes it */
	ASSERT_EQ_INT(decide_circle_step(700, true, true, false), CIRCLE_CLOSED);
}

/* A call read again far beyond where it was read first: the list started over. */
static void
test_list_repeats(void)
{
	/* the reviewer's list: 300 calls, pages of 10, offsets past 300 answer from 0 */
	ASSERT_TRUE(decide_list_repeats(0, 300, 10));
	ASSERT_TRUE(decide_list_repeats(5, 5 + ANCHOR_PAGES * 10 + 1, 10));
	/* as far as drift can carry a call the anchor still joins: not proof */
	ASSERT_FALSE(decide_list_repeats(5, 5 + ANCHOR_PAGES * 10, 10));
	/* the overlap re-reads a call at the same offset, or one later when one landed ahead */
	ASSERT_FALSE(decide_list_repeats(99, 99, 10));
	ASSERT_FALSE(decide_list_repeats(99, 100, 10));
	/* calls landing ahead carry a read call along: each page reads it again, a page on */
	for (int64_t at = 494; at < 494 + 20 * 18; at += 18)
		ASSERT_FALSE(decide_list_repeats(at, at + 18, 20));
	/* a step back over deletions re-reads lower offsets */
	ASSERT_FALSE(decide_list_repeats(500, 120, 10));
	/* one call per page (no overlap) */
	ASSERT_TRUE(decide_list_repeats(0, ANCHOR_PAGES + 1, 1));
	ASSERT_FALSE(decide_list_repeats(0, ANCHOR_PAGES, 1));
}

static void
test_may_mark(void)
{
	/* the numbers of a short answer: 400 of 500 live */
	ASSERT_FALSE(decide_may_mark(400, 500, 0.1, false));
	ASSERT_TRUE(decide_may_mark(400, 500, 0.1, true));
	/* exactly the fraction is allowed, one more is not */
	ASSERT_TRUE(decide_may_mark(100, 1000, 0.1, false));
	ASSERT_FALSE(decide_may_mark(101, 1000, 0.1, false));
	/* a tiny mirror is not blocked by the floor */
	ASSERT_TRUE(decide_may_mark(1, 5, 0.1, false));
	ASSERT_TRUE(decide_may_mark(DECIDE_DELETE_FLOOR, DECIDE_DELETE_FLOOR, 0.1, false));
	ASSERT_FALSE(decide_may_mark(DECIDE_DELETE_FLOOR + 1, DECIDE_DELETE_FLOOR + 1, 0.1,
	    false));
	/* 100% turns the check off; 0% allows the floor only */
	ASSERT_TRUE(decide_may_mark(1000, 1000, 1.0, false));
	ASSERT_FALSE(decide_may_mark(11, 1000000, 0.0, false));
	ASSERT_TRUE(decide_may_mark(0, 0, 0.1, false));
}

int
main(int argc, char **argv)
{
	static const struct test_case tests[] = {
		TEST(test_repeated_page_stalls),
		TEST(test_drift_is_progress),
		TEST(test_rereads_bounded),
		TEST(test_circle_from_zero),
		TEST(test_circle_resumed),
		TEST(test_list_repeats),
		TEST(test_may_mark),
	};

	/* argv[1] is the data directory, unused here; then test names */
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2, argc > 2 ? argc - 2 : 0);
}
