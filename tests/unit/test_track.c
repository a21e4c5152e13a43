/* test_track: unfinished-call tracking: the in-progress ids, their cap, the contacts to refresh. */
#include <stdbool.h>
#include <stddef.h>

#include "test.h"
#include "track.h"

static void
test_ids_in_order(void)
{
	struct track *t = track_new(10);

	ASSERT_TRUE(t != NULL);
	ASSERT_EQ_UINT(track_count(t), 0);
	ASSERT_EQ_INT(track_add(t, "c1"), 0);
	ASSERT_EQ_INT(track_add(t, "c2"), 0);
	ASSERT_EQ_UINT(track_count(t), 2);
	ASSERT_EQ_STR(track_ids(t)[0], "c1");
	ASSERT_EQ_STR(track_ids(t)[1], "c2");
	ASSERT_FALSE(track_is_overflowing(t));
	track_free(t);
}

/* Growing past the first allocation keeps every id. */
static void
test_many_ids(void)
{
	struct track *t = track_new(1000);
	char id[16];

	for (int i = 0; i < 1000; i++) {
		snprintf(id, sizeof id, "id%d", i);
		ASSERT_EQ_INT(track_add(t, id), 0);
	}
	ASSERT_EQ_UINT(track_count(t), 1000);
	ASSERT_EQ_STR(track_ids(t)[999], "id999");
	ASSERT_FALSE(track_is_overflowing(t));
	track_free(t);
}

/* One more than the cap: the pass cannot tell which finished, so it refreshes none. */
static void
test_overflow(void)
{
	struct track *t = track_new(3);

	for (int i = 0; i < 3; i++)
		ASSERT_EQ_INT(track_add(t, "x"), 0);
	ASSERT_FALSE(track_is_overflowing(t));
	ASSERT_EQ_INT(track_add(t, "y"), 0);
	ASSERT_TRUE(track_is_overflowing(t));
	ASSERT_EQ_UINT(track_count(t), 3);
	ASSERT_EQ_INT(track_add(t, "z"), 0);
	ASSERT_EQ_UINT(track_count(t), 3);
	/* a new pass starts afresh */
	track_clear(t);
	ASSERT_FALSE(track_is_overflowing(t));
	ASSERT_EQ_UINT(track_count(t), 0);
	ASSERT_EQ_INT(track_add(t, "a"), 0);
	ASSERT_EQ_UINT(track_count(t), 1);
	track_free(t);
}

/* Stale calls come sorted by contact: each contact once; no contact_id: skipped. */
static void
test_next_contact(void)
{
	struct track *t = track_new(10);

	ASSERT_TRUE(track_next_contact(t) == NULL);
	ASSERT_EQ_INT(track_add_stale(t, "c1", "alice"), 0);
	ASSERT_EQ_INT(track_add_stale(t, "c2", "alice"), 0);
	ASSERT_EQ_INT(track_add_stale(t, "c3", NULL), 0);
	ASSERT_EQ_INT(track_add_stale(t, "c4", "bob"), 0);
	ASSERT_EQ_INT(track_add_stale(t, "c5", "bob"), 0);
	ASSERT_EQ_INT(track_add_stale(t, "c6", "carol"), 0);
	ASSERT_EQ_UINT(track_stale_count(t), 6);
	ASSERT_EQ_STR(track_next_contact(t), "alice");
	ASSERT_EQ_STR(track_next_contact(t), "bob");
	ASSERT_EQ_STR(track_next_contact(t), "carol");
	ASSERT_TRUE(track_next_contact(t) == NULL);
	ASSERT_TRUE(track_next_contact(t) == NULL);
	track_free(t);
}

/* Clearing the stale calls leaves the tracked ids; clearing all forgets both. */
static void
test_clear_stale(void)
{
	struct track *t = track_new(10);

	ASSERT_EQ_INT(track_add(t, "c1"), 0);
	ASSERT_EQ_INT(track_add_stale(t, "c9", "dave"), 0);
	ASSERT_EQ_STR(track_next_contact(t), "dave");
	track_clear_stale(t);
	ASSERT_EQ_UINT(track_stale_count(t), 0);
	ASSERT_TRUE(track_next_contact(t) == NULL);
	ASSERT_EQ_UINT(track_count(t), 1);
	ASSERT_EQ_INT(track_add_stale(t, "c8", "erin"), 0);
	ASSERT_EQ_STR(track_next_contact(t), "erin");
	track_clear(t);
	ASSERT_EQ_UINT(track_count(t), 0);
	ASSERT_EQ_UINT(track_stale_count(t), 0);
	track_free(t);
}

int
main(int argc, char **argv)
{
	static const struct test_case tests[] = {
		TEST(test_ids_in_order),
		TEST(test_many_ids),
		TEST(test_overflow),
		TEST(test_next_contact),
		TEST(test_clear_stale),
	};

	/* argv[1] is the data directory, unused here; then test names */
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2, argc > 2 ? argc - 2 : 0);
}
