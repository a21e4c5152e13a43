/* test_notify: when the systemd watchdog is ours, and its period. */
#include <stdint.h>
#include <stdio.h>

#include "notify.h"
#include "test.h"

static void
test_watchdog_period(void)
{
	ASSERT_EQ_UINT(notify_parse_watchdog("30000000", NULL, 42), 30000000);
	ASSERT_EQ_UINT(notify_parse_watchdog("30000000", "42", 42), 30000000);
}

static void
test_watchdog_not_ours(void)
{
	/* another process's watchdog, inherited through the environment */
	ASSERT_EQ_UINT(notify_parse_watchdog("30000000", "41", 42), 0);
	ASSERT_EQ_UINT(notify_parse_watchdog("30000000", "", 42), 0);
	ASSERT_EQ_UINT(notify_parse_watchdog("30000000", "42x", 42), 0);
}

static void
test_watchdog_unset_or_bad(void)
{
	ASSERT_EQ_UINT(notify_parse_watchdog(NULL, NULL, 42), 0);
	ASSERT_EQ_UINT(notify_parse_watchdog("", NULL, 42), 0);
	ASSERT_EQ_UINT(notify_parse_watchdog("-5", NULL, 42), 0);
	ASSERT_EQ_UINT(notify_parse_watchdog(" 5", NULL, 42), 0);
	ASSERT_EQ_UINT(notify_parse_watchdog("5s", NULL, 42), 0);
	ASSERT_EQ_UINT(notify_parse_watchdog("99999999999999999999999", NULL, 42), 0);
	ASSERT_EQ_UINT(notify_parse_watchdog("0", NULL, 42), 0);
}

static const struct test_case tests[] = {
	TEST(test_watchdog_period),
	TEST(test_watchdog_not_ours),
	TEST(test_watchdog_unset_or_bad),
};

int
main(int argc, char **argv)
{
	test_data_dir = argc > 1 ? argv[1] : NULL;
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2,
	    argc > 2 ? argc - 2 : 0);
}
