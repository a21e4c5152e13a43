/* test_revisit: the sampled map of keys a scan read, and the offset it last read each at. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "idset.h"
#include "revisit.h"
#include "test.h"

static bool
is_sampled(const char *key)
{
	return idset_hash(key, strlen(key)) % REVISIT_SAMPLE == 0;
}

/* The i-th key of a made-up list, as a string id. */
static void
key_of(char *key, size_t size, unsigned i)
{
	snprintf(key, size, "call-%08u", i);
}

/* A 300-call list read to its end and then again from its start, as a list that wraps. */
static void
test_second_lap_found(void)
{
	struct revisit *r = revisit_new();
	char key[32];
	unsigned sampled = 0, found = 0;

	ASSERT_TRUE(r != NULL);
	for (unsigned i = 0; i < 300; i++) {
		key_of(key, sizeof key, i);
		ASSERT_EQ_INT(revisit_note(r, key, i), -1);
		sampled += is_sampled(key);
	}
	ASSERT_TRUE(sampled > 0);
	for (unsigned i = 0; i < 300; i++) {
		int64_t first;

		key_of(key, sizeof key, i);
		first = revisit_note(r, key, 300 + i);
		if (is_sampled(key)) {
			ASSERT_EQ_INT(first, i);
			found++;
		} else {
			ASSERT_EQ_INT(first, -1);
		}
	}
	ASSERT_EQ_UINT(found, sampled);
	/* a third reading answers where the second one was */
	for (unsigned i = 0; i < 300; i++) {
		key_of(key, sizeof key, i);
		if (is_sampled(key)) {
			ASSERT_EQ_INT(revisit_note(r, key, 900), 300 + i);
			break;
		}
	}
	revisit_free(r);
}

/* A reset (a new scan, or a backfill's lap from 0) forgets every key. */
static void
test_reset_forgets(void)
{
	struct revisit *r = revisit_new();
	char key[32];

	ASSERT_TRUE(r != NULL);
	for (unsigned i = 0; i < 100; i++) {
		key_of(key, sizeof key, i);
		revisit_note(r, key, i);
	}
	revisit_reset(r);
	for (unsigned i = 0; i < 100; i++) {
		key_of(key, sizeof key, i);
		ASSERT_EQ_INT(revisit_note(r, key, 1000 + i), -1);
	}
	revisit_free(r);
}

/* A million calls: the table does not grow; the first keys are still found after it fills. */
static void
test_flat_when_full(void)
{
	struct revisit *r = revisit_new();
	char key[32];
	unsigned i, first_sampled = 0;

	ASSERT_TRUE(r != NULL);
	for (i = 0; i < 1000000; i++) {
		key_of(key, sizeof key, i);
		revisit_note(r, key, i);
	}
	for (i = 0; i < 1000; i++) {
		key_of(key, sizeof key, i);
		if (is_sampled(key))
			break;
	}
	first_sampled = i;
	ASSERT_TRUE(first_sampled < 1000);
	key_of(key, sizeof key, first_sampled);
	ASSERT_EQ_INT(revisit_note(r, key, 2000000), first_sampled);
	ASSERT_EQ_INT(revisit_note(r, key, 2000001), 2000000);
	/* a key the full table never kept is not found, and not mistaken for another */
	for (i = 999999; i > 0; i--) {
		key_of(key, sizeof key, i);
		if (is_sampled(key))
			break;
	}
	ASSERT_EQ_INT(revisit_note(r, key, 3000000), -1);
	revisit_free(r);
}

int
main(int argc, char **argv)
{
	static const struct test_case tests[] = {
		TEST(test_second_lap_found),
		TEST(test_reset_forgets),
		TEST(test_flat_when_full),
	};

	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2, argc > 2 ? argc - 2 : 0);
}
