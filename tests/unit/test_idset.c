/*
 * test_idset: the hash index rows and anchor use for their per-page checks,
 * with the real hash and with one that makes every string collide.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "idset.h"
#include "test.h"

/* Strings back to back in a buffer, as rows and anchor keep them. */
struct strings {
	struct buf b;
	struct idset set;
};

static int
strings_add(struct strings *s, const char *str)
{
	size_t off = s->b.len, len = strlen(str);

	if (buf_append(&s->b, str, len + 1) < 0)
		return -1;
	return idset_add(&s->set, s->b.data, off, len);
}

static bool
strings_has(const struct strings *s, const char *str)
{
	return idset_has(&s->set, s->b.data, str, strlen(str));
}

static void
check_many(uint64_t (*hash)(const char *, size_t), unsigned n)
{
	struct strings s;
	char id[64];

	buf_init(&s.b, (size_t)1 << 30);
	idset_init(&s.set);
	if (hash != NULL)
		s.set.hash = hash;
	ASSERT_FALSE(strings_has(&s, "anything"));
	for (unsigned i = 0; i < n; i++) {
		snprintf(id, sizeof id, "call-%08u", i);
		ASSERT_FALSE(strings_has(&s, id));
		ASSERT_EQ_INT(strings_add(&s, id), 0);
		ASSERT_TRUE(strings_has(&s, id));
	}
	ASSERT_EQ_UINT(idset_count(&s.set), n);
	for (unsigned i = 0; i < n; i++) {
		snprintf(id, sizeof id, "call-%08u", i);
		ASSERT_TRUE(strings_has(&s, id));
		/* a prefix, a longer one and a neighbour are other strings */
		snprintf(id, sizeof id, "call-%08u", i + n);
		ASSERT_FALSE(strings_has(&s, id));
		snprintf(id, sizeof id, "call-%08ux", i);
		ASSERT_FALSE(strings_has(&s, id));
		snprintf(id, sizeof id, "call-%07u", i);
		ASSERT_FALSE(strings_has(&s, id));
	}
	/* the empty string and embedded bytes count too */
	ASSERT_FALSE(idset_has(&s.set, s.b.data, "", 0));
	idset_clear(&s.set);
	s.b.len = 0;
	ASSERT_EQ_UINT(idset_count(&s.set), 0);
	snprintf(id, sizeof id, "call-%08u", 1u);
	ASSERT_FALSE(strings_has(&s, id));
	ASSERT_EQ_INT(strings_add(&s, ""), 0);
	ASSERT_TRUE(idset_has(&s.set, s.b.data, "", 0));
	idset_free(&s.set);
	buf_free(&s.b);
}

static void
test_many_distinct(void)
{
	check_many(NULL, 100000);
}

static uint64_t
hash_collide(const char *s, size_t len)
{
	(void)s;
	return len;     /* every id of one length lands on the same slot */
}

static void
test_all_collide(void)
{
	check_many(hash_collide, 3000);
}

static const struct test_case tests[] = {
	TEST(test_many_distinct),
	TEST(test_all_collide),
};

int
main(int argc, char **argv)
{
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2,
	    argc > 2 ? argc - 2 : 0);
}
