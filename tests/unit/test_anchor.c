/*
 * test_anchor: the keys a scan remembers, and the lookups that prove a page
 * joins them, on pages far longer than any limit.
 */
#include <stdio.h>
#include <string.h>

#include "anchor.h"
#include "test.h"

static void
key_of(unsigned page, unsigned i, char *key, size_t n)
{
	snprintf(key, n, "call-%03u-%06u", page, i);
}

/* Pages of many keys: every committed key is found, in the ring's last ANCHOR_PAGES pages. */
static void
test_ring_of_large_pages(void)
{
	enum { PAGE = 20000, PAGES = ANCHOR_PAGES + 2 };
	struct anchor *a = anchor_new((size_t)64 << 20);
	char key[64];

	ASSERT_TRUE(a != NULL);
	for (unsigned pg = 0; pg < PAGES; pg++) {
		anchor_page_begin(a);
		for (unsigned i = 0; i < PAGE; i++) {
			key_of(pg, i, key, sizeof key);
			anchor_page_add(a, key);
		}
		ASSERT_EQ_UINT(anchor_page_count(a), PAGE);
		key_of(pg, PAGE / 2, key, sizeof key);
		ASSERT_EQ_STR(anchor_page_key(a, PAGE / 2), key);
		/* the page being read is not among the remembered ones yet */
		ASSERT_FALSE(anchor_has(a, key));
		anchor_page_commit(a);
		ASSERT_TRUE(anchor_has(a, key));
	}
	ASSERT_EQ_UINT(anchor_count(a), (size_t)PAGE * ANCHOR_PAGES);
	for (unsigned pg = 0; pg < PAGES; pg++) {
		for (unsigned i = 0; i < PAGE; i += 101) {
			key_of(pg, i, key, sizeof key);
			ASSERT_EQ_INT(anchor_has(a, key), pg >= PAGES - ANCHOR_PAGES);
		}
	}
	ASSERT_FALSE(anchor_has(a, "call-000-00000"));
	ASSERT_FALSE(anchor_has(a, "call-009-0000001"));
	anchor_reset(a);
	ASSERT_EQ_UINT(anchor_count(a), 0);
	key_of(PAGES - 1, 1, key, sizeof key);
	ASSERT_FALSE(anchor_has(a, key));
	anchor_free(a);
}

static void
test_load(void)
{
	const char *keys[] = { "a", "b", "#id:0123456789abcdef" };
	struct anchor *a = anchor_new(1 << 20);

	ASSERT_TRUE(a != NULL);
	anchor_load(a, keys, 3);
	ASSERT_EQ_UINT(anchor_count(a), 3);
	ASSERT_TRUE(anchor_has(a, "a"));
	ASSERT_TRUE(anchor_has(a, "#id:0123456789abcdef"));
	ASSERT_FALSE(anchor_has(a, "c"));
	ASSERT_EQ_UINT(anchor_page_count(a), 0);
	anchor_free(a);
}

/* A copy answers as the original did, and goes on alone when the original moves on. */
static void
test_copy(void)
{
	struct anchor *a = anchor_new(1 << 20), *b = anchor_new(1 << 20);
	char key[64];

	ASSERT_TRUE(a != NULL && b != NULL);
	for (unsigned pg = 0; pg < ANCHOR_PAGES + 3; pg++) {
		anchor_page_begin(a);
		for (unsigned i = 0; i < 50; i++) {
			key_of(pg, i, key, sizeof key);
			anchor_page_add(a, key);
		}
		anchor_page_commit(a);
	}
	ASSERT_EQ_INT(anchor_copy(b, a), 0);
	ASSERT_EQ_UINT(anchor_count(b), anchor_count(a));
	key_of(ANCHOR_PAGES + 2, 7, key, sizeof key);
	ASSERT_TRUE(anchor_has(b, key));
	key_of(3, 7, key, sizeof key);
	ASSERT_TRUE(anchor_has(b, key));
	key_of(2, 7, key, sizeof key);
	ASSERT_FALSE(anchor_has(b, key));
	/* the original reads on; the copy still knows page 3, and rotates the same way */
	anchor_page_begin(a);
	anchor_page_add(a, "x");
	anchor_page_commit(a);
	key_of(3, 7, key, sizeof key);
	ASSERT_FALSE(anchor_has(a, key));
	ASSERT_TRUE(anchor_has(b, key));
	anchor_page_begin(b);
	anchor_page_add(b, "x");
	anchor_page_commit(b);
	ASSERT_FALSE(anchor_has(b, key));
	ASSERT_TRUE(anchor_has(b, "x"));
	anchor_free(a);
	anchor_free(b);
}

static const struct test_case tests[] = {
	TEST(test_copy),
	TEST(test_ring_of_large_pages),
	TEST(test_load),
};

int
main(int argc, char **argv)
{
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2,
	    argc > 2 ? argc - 2 : 0);
}
