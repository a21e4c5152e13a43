/* test: the unit tests' ASSERT_* macros and runner (one executable per module). */
#ifndef VOZAGENT_TEST_H
#define VOZAGENT_TEST_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Each test is a void function. An ASSERT_* that fails prints file:line with
 * both values and returns from the function it is in, so later steps never
 * run on a state already known to be wrong. Use them only in void functions.
 */

#if defined(__GNUC__)
#define TEST_UNUSED __attribute__((unused))
#else
#define TEST_UNUSED
#endif

static int test_cur_failed;                   /* assertions failed in the running test */
static const char *test_data_dir TEST_UNUSED; /* argv[1]: the tests/data directory */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void TEST_UNUSED
test_report(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	test_cur_failed++;
	fflush(stderr);
	printf("  %s:%d: ", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* Prints s as a C-ish literal (escapes control and non-ASCII bytes), cut at 400 bytes. */
static void TEST_UNUSED
test_print_mem(const char *s, size_t len)
{
	size_t shown = len > 400 ? 400 : len;

	if (s == NULL) {
		printf("NULL");
		return;
	}
	putchar('"');
	for (size_t i = 0; i < shown; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			printf("\\n");
		else if (c == '\t')
			printf("\\t");
		else if (c == '\r')
			printf("\\r");
		else if (c < 0x20 || c >= 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	putchar('"');
	if (shown < len)
		printf("... (%zu bytes)", len);
}

static int TEST_UNUSED
test_mem_differs(const char *file, int line, const char *an, const char *bn, const char *a,
    size_t alen, const char *b, size_t blen)
{
	if (a == NULL && b == NULL)
		return 0;
	if (a != NULL && b != NULL && alen == blen && memcmp(a, b, alen) == 0)
		return 0;
	test_report(file, line, "%s == %s", an, bn);
	printf("      got:      ");
	test_print_mem(a, alen);
	printf("\n      expected: ");
	test_print_mem(b, blen);
	printf("\n");
	return 1;
}

static int TEST_UNUSED
test_str_differs(const char *file, int line, const char *an, const char *bn, const char *a,
    const char *b)
{
	return test_mem_differs(file, line, an, bn, a, a != NULL ? strlen(a) : 0, b,
	    b != NULL ? strlen(b) : 0);
}

static int TEST_UNUSED
test_contains(const char *file, int line, const char *hn, const char *hay, const char *needle,
    int want)
{
	int has = hay != NULL && strstr(hay, needle) != NULL;

	if (has == want)
		return 0;
	test_report(file, line, "%s %s \"%s\"", hn, want ? "should contain" : "must not contain",
	    needle);
	printf("      it is: ");
	test_print_mem(hay, hay != NULL ? strlen(hay) : 0);
	printf("\n");
	return 1;
}

#define TEST_FAIL_(...) do { test_report(__FILE__, __LINE__, __VA_ARGS__); return; } while (0)

#define ASSERT_TRUE(c) do { if (!(c)) TEST_FAIL_("expected true: %s", #c); } while (0)
#define ASSERT_FALSE(c) do { if (c) TEST_FAIL_("expected false: %s", #c); } while (0)

#define ASSERT_EQ_INT(a, b) do {                                                        \
		intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                        \
		if (a_ != b_)                                                           \
			TEST_FAIL_("%s == %s: got %jd, expected %jd", #a, #b, a_, b_);  \
	} while (0)

#define ASSERT_NE_INT(a, b) do {                                                        \
		intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                        \
		if (a_ == b_)                                                           \
			TEST_FAIL_("%s != %s: both are %jd", #a, #b, a_);               \
	} while (0)

#define ASSERT_EQ_UINT(a, b) do {                                                       \
		uintmax_t a_ = (uintmax_t)(a), b_ = (uintmax_t)(b);                     \
		if (a_ != b_)                                                           \
			TEST_FAIL_("%s == %s: got %ju, expected %ju", #a, #b, a_, b_);  \
	} while (0)

#define ASSERT_EQ_STR(a, b) do {                                                        \
		if (test_str_differs(__FILE__, __LINE__, #a, #b, (a), (b)))             \
			return;                                                         \
	} while (0)

#define ASSERT_EQ_MEM(a, alen, b, blen) do {                                            \
		if (test_mem_differs(__FILE__, __LINE__, #a, #b, (const char *)(a),     \
		    (alen), (const char *)(b), (blen)))                                 \
			return;                                                         \
	} while (0)

#define ASSERT_CONTAINS(hay, needle) do {                                               \
		if (test_contains(__FILE__, __LINE__, #hay, (hay), (needle), 1))        \
			return;                                                         \
	} while (0)

#define ASSERT_NOT_CONTAINS(hay, needle) do {                                           \
		if (test_contains(__FILE__, __LINE__, #hay, (hay), (needle), 0))        \
			return;                                                         \
	} while (0)

struct test_case {
	const char *name;
	void (*fn)(void);
};

#define TEST(fn) { #fn, fn }

/*
 * Runs every test (or only those named in names[0..nnames)), calling setup
 * before each. The last line printed is "N passed, N failed"; returns the
 * process exit status.
 */
static int TEST_UNUSED
test_main(const struct test_case *tests, size_t ntests, void (*setup)(void),
    char **names, int nnames)
{
	int passed = 0, failed = 0;

	for (size_t i = 0; i < ntests; i++) {
		int selected = nnames == 0;
		for (int j = 0; j < nnames; j++)
			if (strcmp(names[j], tests[i].name) == 0)
				selected = 1;
		if (!selected)
			continue;
		test_cur_failed = 0;
		if (setup != NULL)
			setup();
		printf("-- %s\n", tests[i].name);
		fflush(stdout);
		tests[i].fn();
		fflush(stderr);
		if (test_cur_failed > 0) {
			printf("FAIL %s\n", tests[i].name);
			failed++;
		} else {
			printf("ok   %s\n", tests[i].name);
			passed++;
		}
		fflush(stdout);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed > 0 || passed == 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
