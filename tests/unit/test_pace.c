/* test_pace: requests in flight (AIMD), the rate learnt from a 429, Retry-After, backoff. */
#include <stdint.h>

#include "pace.h"
#include "test.h"

/* Full window at first; halves once per burst of failures; grows back one per window. */
static void
test_aimd_window(void)
{
	struct pace p;

	pace_init(&p, 8);
	ASSERT_EQ_INT(pace_window(&p), 8);
	pace_failed(&p, 1000);
	ASSERT_EQ_INT(pace_window(&p), 4);
	/* the other requests of the same burst fail too: still one halving */
	pace_failed(&p, 1010);
	pace_failed(&p, 1500);
	ASSERT_EQ_INT(pace_window(&p), 4);
	pace_failed(&p, 2100);
	ASSERT_EQ_INT(pace_window(&p), 2);
	pace_failed(&p, 3200);
	pace_failed(&p, 4300);
	pace_failed(&p, 5400);
	ASSERT_EQ_INT(pace_window(&p), 1);
	/* one success at 1 makes 2; then 1/2, 1/2.5, 1/2.9: 3 after three more */
	pace_ok(&p, 6000);
	ASSERT_EQ_INT(pace_window(&p), 2);
	pace_ok(&p, 6001);
	pace_ok(&p, 6002);
	ASSERT_EQ_INT(pace_window(&p), 2);
	pace_ok(&p, 6003);
	ASSERT_EQ_INT(pace_window(&p), 3);
	for (int i = 0; i < 100; i++)
		pace_ok(&p, 6100 + (uint64_t)i);
	ASSERT_EQ_INT(pace_window(&p), 8);
}

static void
test_wait_for_a_slot(void)
{
	struct pace p;

	pace_init(&p, 2);
	ASSERT_EQ_UINT(pace_wait(&p, 0, 0), 0);
	ASSERT_EQ_UINT(pace_wait(&p, 0, 1), 0);
	ASSERT_TRUE(pace_wait(&p, 0, 2) == UINT64_MAX);
	pace_init(&p, 0);
	ASSERT_EQ_INT(pace_window(&p), 1);
}

/*
 * 25 requests answered in the second before a 429 with Retry-After: 1:
 * nothing for a second, then one request per 1/(25 * margin) s, and the
 * spacing shortens slowly while no 429 comes.
 */
static void
test_rate_learnt_from_429(void)
{
	struct pace p;
	uint64_t now = 10000, wait;

	pace_init(&p, 8);
	/* the pass has been sending for a while: its first second teaches nothing */
	pace_started(&p, now - 5000);
	for (int i = 0; i < 25; i++) {
		ASSERT_EQ_UINT(pace_wait(&p, now, 0), 0);
		pace_started(&p, now);
		pace_ok(&p, now + 5);
		now += 10;
	}
	ASSERT_EQ_INT(pace_window(&p), 8);
	wait = pace_throttled(&p, now, 1);
	ASSERT_EQ_UINT(wait, 1000);
	ASSERT_EQ_INT(pace_window(&p), 4);
	ASSERT_EQ_UINT(pace_wait(&p, now, 0), 1000);
	ASSERT_EQ_UINT(pace_wait(&p, now + 999, 0), 1);
	ASSERT_EQ_UINT(pace_wait(&p, now + 1000, 0), 0);
	ASSERT_TRUE(pace_rate(&p, now) > 23.7 && pace_rate(&p, now) < 23.8);
	pace_started(&p, now + 1000);
	/* the rate has grown 1% in that second: 1000 / 23.99 = 41 ms later */
	ASSERT_EQ_UINT(pace_wait(&p, now + 1000, 0), 41);
	/* in-flight limit and spacing both hold */
	ASSERT_TRUE(pace_wait(&p, now + 1100, 4) == UINT64_MAX);
	/* ten seconds without a 429: ten per cent more */
	ASSERT_TRUE(pace_rate(&p, now + 10000) > 26.0 && pace_rate(&p, now + 10000) < 26.2);
	/* doubled without a 429 (100 s): the limit is forgotten, the spacing gone */
	ASSERT_TRUE(pace_rate(&p, now + 99000) > 47.0);
	ASSERT_TRUE(pace_rate(&p, now + 101000) == 0);
	ASSERT_EQ_UINT(pace_wait(&p, now + 101000, 0), 0);
}

/* The other 429s of the same burst do not cut the rate again; a later one cuts it below. */
static void
test_rate_cut_once_per_burst(void)
{
	struct pace p;
	uint64_t now = 5000;
	double r1;

	pace_init(&p, 8);
	pace_started(&p, now - 5000);
	for (int i = 0; i < 10; i++)
		pace_ok(&p, now - 900 + (uint64_t)i * 90);
	pace_throttled(&p, now, 2);
	r1 = pace_rate(&p, now);
	ASSERT_TRUE(r1 > 9.4 && r1 < 9.6);
	ASSERT_EQ_UINT(pace_wait(&p, now, 0), 2000);
	pace_throttled(&p, now + 10, 2);
	ASSERT_TRUE(pace_rate(&p, now + 10) >= r1);
	ASSERT_EQ_UINT(pace_wait(&p, now + 10, 0), 2000);
	/* later: pace under what came through (9 in the second), and under the rate itself */
	for (int i = 0; i < 9; i++)
		pace_ok(&p, now + 4000 + (uint64_t)i * 100);
	pace_throttled(&p, now + 4950, 1);
	ASSERT_TRUE(pace_rate(&p, now + 4950) <= 9 * PACE_RATE_MARGIN + 1e-9);
}

/* A 429 after a few requests: the pause, but no rate (too few to measure); absent: 5 s. */
static void
test_429_without_history(void)
{
	struct pace p;

	pace_init(&p, 4);
	ASSERT_EQ_UINT(pace_throttled(&p, 100, -1), (uint64_t)PACE_RETRY_AFTER_DEFAULT_S * 1000);
	ASSERT_TRUE(pace_rate(&p, 100) == 0);
	ASSERT_EQ_UINT(pace_wait(&p, 100, 0), 5000);
	ASSERT_EQ_UINT(pace_wait(&p, 5100, 0), 0);
	pace_init(&p, 4);
	for (int i = 0; i < PACE_MIN_SAMPLES - 1; i++)
		pace_ok(&p, 50 + (uint64_t)i);
	pace_throttled(&p, 100, 1);
	ASSERT_TRUE(pace_rate(&p, 100) == 0);
	pace_ok(&p, 1200);
	ASSERT_EQ_UINT(pace_wait(&p, 1200, 0), 0);
	pace_init(&p, 4);
	ASSERT_EQ_UINT(pace_throttled(&p, 100, 86400), (uint64_t)PACE_RETRY_AFTER_CAP_S * 1000);
	pace_init(&p, 4);
	ASSERT_EQ_UINT(pace_throttled(&p, 100, 0), 0);
}

/* A 429 in the first second (a burst spending what another client left): pause, no rate. */
static void
test_no_rate_from_the_first_second(void)
{
	struct pace p;

	pace_init(&p, 16);
	pace_started(&p, 1000);
	for (int i = 0; i < 12; i++)
		pace_ok(&p, 1010 + (uint64_t)i);
	ASSERT_EQ_UINT(pace_throttled(&p, 1100, 1), 1000);
	ASSERT_TRUE(pace_rate(&p, 1100) == 0);
	ASSERT_EQ_INT(pace_window(&p), 8);
	/* a second later the API lets 25 through, then says no: that is a rate */
	for (int i = 0; i < 25; i++)
		pace_ok(&p, 2150 + (uint64_t)i * 4);
	pace_throttled(&p, 2260, 1);
	ASSERT_TRUE(pace_rate(&p, 2260) > 23.7 && pace_rate(&p, 2260) < 23.8);
}

static void
test_backoff(void)
{
	ASSERT_EQ_UINT(pace_backoff(1, 500, 30000, UINT32_MAX), UINT32_MAX % 1001);
	ASSERT_EQ_UINT(pace_backoff(1, 500, 30000, 1000), 1000);
	ASSERT_EQ_UINT(pace_backoff(1, 500, 30000, 1001), 0);
	ASSERT_EQ_UINT(pace_backoff(4, 500, 30000, 8000), 8000);
	ASSERT_EQ_UINT(pace_backoff(4, 500, 30000, 8001), 0);
	ASSERT_EQ_UINT(pace_backoff(20, 500, 30000, 30000), 30000);
	ASSERT_EQ_UINT(pace_backoff(20, 500, 30000, 30001), 0);
	ASSERT_EQ_UINT(pace_backoff(0, 500, 30000, 500), 500);
}

static const struct test_case tests[] = {
	TEST(test_aimd_window),
	TEST(test_wait_for_a_slot),
	TEST(test_rate_learnt_from_429),
	TEST(test_rate_cut_once_per_burst),
	TEST(test_429_without_history),
	TEST(test_no_rate_from_the_first_second),
	TEST(test_backoff),
};

int
main(int argc, char **argv)
{
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2,
	    argc > 2 ? argc - 2 : 0);
}
