/* pace: how hard to press the API (requests in flight, their rate, retry delays); no I/O. */
#ifndef VOZAGENT_PACE_H
#define VOZAGENT_PACE_H

#include <stdbool.h>
#include <stdint.h>

/* Successful requests remembered to measure the rate the API allowed. */
#define PACE_HISTORY 64
/* A rate learnt from a 429 grows back by this share per second without one. */
#define PACE_RATE_GROWTH 0.01
/* Successes in the second before a 429 needed to learn a rate from it. */
#define PACE_MIN_SAMPLES 8
/* After a 429: pace at this share of the rate that was answered. */
#define PACE_RATE_MARGIN 0.95
/* A Retry-After beyond this is taken as this (seconds). */
#define PACE_RETRY_AFTER_CAP_S 300
#define PACE_RETRY_AFTER_DEFAULT_S 5

/*
 * Requests in flight follow AIMD: the window grows by one request per
 * window of successes and halves on a 429, a 5xx or a timeout (once per
 * burst of them). A 429 also stops every new request for its Retry-After,
 * and, when the API had let at least PACE_MIN_SAMPLES requests through in
 * the second before (and requests have been going for a second or more), from then on requests are spaced just under that
 * rate, growing back slowly; once it has doubled without a 429 (100 s) it
 * is forgotten. Times are milliseconds of any monotonic
 * clock.
 */
struct pace {
	int max;                  /* the configured concurrency */
	double window;            /* requests allowed in flight, 1..max */
	uint64_t cut_until;       /* failures before this are one burst: no second halving */
	uint64_t not_before;      /* Retry-After: no new request before this */
	double rate;              /* requests/s allowed since a 429, 0 = no limit known */
	uint64_t rate_since;      /* when rate was set: it grows from there */
	uint64_t next_at;         /* the spacing's earliest start of the next request */
	uint64_t ok_at[PACE_HISTORY]; /* when the last successes came, a ring */
	bool started;             /* a request has been sent */
	uint64_t first_at;        /* when the first was */
	unsigned nok, ok_pos;
};

void pace_init(struct pace *p, int max);
/* Requests allowed in flight now (at least 1). */
int pace_window(const struct pace *p);
/* Requests per second allowed now; 0 when no limit is known. */
double pace_rate(const struct pace *p, uint64_t now);
/*
 * With in_flight requests running, may another start at now? 0 = yes;
 * else how long to wait (ms), or UINT64_MAX until a request ends.
 */
uint64_t pace_wait(const struct pace *p, uint64_t now, int in_flight);
/* A request starts (it spends its place in the spacing). */
void pace_started(struct pace *p, uint64_t now);
/* A request was answered as hoped. */
void pace_ok(struct pace *p, uint64_t now);
/* A 5xx, a timeout, a broken connection: fewer requests in flight. */
void pace_failed(struct pace *p, uint64_t now);
/*
 * A 429: fewer in flight, none until Retry-After (retry_after_s < 0 when
 * absent), and a rate from then on. Returns how long the page waits (ms).
 */
uint64_t pace_throttled(struct pace *p, uint64_t now, long retry_after_s);
/*
 * Delay before retry `attempt` (1, 2, ...) of a failed request: exponential
 * backoff from base_ms, capped at cap_ms, with full jitter drawn from rnd.
 */
uint64_t pace_backoff(int attempt, uint64_t base_ms, uint64_t cap_ms, uint32_t rnd);

#endif
