/* test_fetch: the pure helpers of fetch: query escaping and the key's redaction. */
#include <stdio.h>
#include <string.h>

#include "fetch.h"
#include "test.h"

static const char key[] = "sk-Secret-0123456789abcdef";

static void
setup(void)
{
}

static void
test_escape_fits_or_fails(void)
{
	char buf[16];

	ASSERT_EQ_INT(fetch_escape("a b/ü", buf, sizeof buf), 0);
	ASSERT_EQ_STR(buf, "a%20b%2F%C3%BC");
	/* 15 escaped bytes need 16 with the terminator: fits exactly */
	ASSERT_EQ_INT(fetch_escape("&&&&&", buf, sizeof buf), 0);
	ASSERT_EQ_STR(buf, "%26%26%26%26%26");
	/* one more does not: an error, never a cut value taken for the whole */
	ASSERT_EQ_INT(fetch_escape("&&&&&&", buf, sizeof buf), -1);
	ASSERT_EQ_INT(fetch_escape("x", buf, 0), -1);
}

static void
test_redact_whole_key(void)
{
	char in[256], out[256];

	snprintf(in, sizeof in, "Authorization: Bearer %s\nX: %s.", key, key);
	fetch_redact(in, strlen(in), key, out, sizeof out);
	ASSERT_EQ_STR(out, "Authorization: Bearer [redacted]\nX: [redacted].");
	/* no key, or no secret at all: copied as is */
	fetch_redact("plain text", 10, key, out, sizeof out);
	ASSERT_EQ_STR(out, "plain text");
	fetch_redact("plain text", 10, NULL, out, sizeof out);
	ASSERT_EQ_STR(out, "plain text");
}

static void
test_redact_key_cut_by_the_end(void)
{
	char in[256], out[256];

	/* what was kept of the body ends inside the key */
	snprintf(in, sizeof in, "Bearer %.10s", key);
	fetch_redact(in, strlen(in), key, out, sizeof out);
	ASSERT_EQ_STR(out, "Bearer [redacted]");
	ASSERT_NOT_CONTAINS(out, "sk-Se");
	/* three bytes tell nothing and may be anything: kept */
	fetch_redact("ab sk-", 6, key, out, sizeof out);
	ASSERT_EQ_STR(out, "ab sk-");
}

static void
test_redact_output_cut(void)
{
	char in[256], out[32];

	/* the key straddles the end of out: redacted first, then cut */
	snprintf(in, sizeof in, "0123456789012345678901234%s tail", key);
	fetch_redact(in, strlen(in), key, out, sizeof out);
	ASSERT_EQ_STR(out, "0123456789012345678901234[redac");
	ASSERT_NOT_CONTAINS(out, "sk-");
	/* bytes after a NUL are data too */
	memcpy(in, "a\0b", 3);
	memcpy(in + 3, key, sizeof key - 1);
	fetch_redact(in, 3 + sizeof key - 1, key, out, sizeof out);
	ASSERT_EQ_MEM(out, 13, "a\0b[redacted]", 13);
}

static const struct test_case tests[] = {
	TEST(test_escape_fits_or_fails),
	TEST(test_redact_whole_key),
	TEST(test_redact_key_cut_by_the_end),
	TEST(test_redact_output_cut),
};

int
main(int argc, char **argv)
{
	test_data_dir = argc > 1 ? argv[1] : NULL;
	return test_main(tests, sizeof tests / sizeof tests[0], setup, argv + 2,
	    argc > 2 ? argc - 2 : 0);
}
