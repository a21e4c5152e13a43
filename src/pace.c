/* pace: how hard to press the API (requests in flight, their rate, retry delays); no I/O. */
#include "pace.h"

#include <string.h>

/* One burst of failures (requests that were in flight together) halves the window once. */
#define PACE_BURST_MS 1000

void
pace_init(struct pace *p, int max)
{
	memset(p, 0, sizeof *p);
	p->max = max < 1 ? 1 : max;
	p->window = p->max;
}

int
pace_window(const struct pace *p)
{
	int w = (int)p->window;

	return w < 1 ? 1 : w > p->max ? p->max : w;
}

double
pace_rate(const struct pace *p, uint64_t now)
{
	double grown;

	if (p->rate <= 0)
		return 0;
	grown = p->rate * (1.0 + PACE_RATE_GROWTH * (double)(now - p->rate_since) / 1000.0);
	/* twice the learnt rate without a 429 (100 s): the limit has gone, forget it */
	return grown >= p->rate * 2 ? 0 : grown;
}

uint64_t
pace_wait(const struct pace *p, uint64_t now, int in_flight)
{
	uint64_t at = p->not_before > p->next_at ? p->not_before : p->next_at;

	if (in_flight >= pace_window(p))
		return UINT64_MAX;
	return at > now ? at - now : 0;
}

void
pace_started(struct pace *p, uint64_t now)
{
	double rate = pace_rate(p, now);
	uint64_t from = p->next_at > now ? p->next_at : now;

	if (rate > 0)
		p->next_at = from + (uint64_t)(1000.0 / rate);
	if (!p->started)
		p->first_at = now;
	p->started = true;
}

void
pace_ok(struct pace *p, uint64_t now)
{
	p->ok_at[p->ok_pos] = now;
	p->ok_pos = (p->ok_pos + 1) % PACE_HISTORY;
	if (p->nok < PACE_HISTORY)
		p->nok++;
	/* additive increase: one more request in flight per window of successes */
	p->window += 1.0 / p->window;
	if (p->window > p->max)
		p->window = p->max;
}

/* Halves the window, once per burst: the requests in flight together failed together. */
static void
pace_cut(struct pace *p, uint64_t now)
{
	if (now < p->cut_until)
		return;
	p->window /= 2;
	if (p->window < 1)
		p->window = 1;
	p->cut_until = now + PACE_BURST_MS;
}

void
pace_failed(struct pace *p, uint64_t now)
{
	pace_cut(p, now);
}

/* Successes per second over the last second (or what the history holds of it). */
static double
pace_answered_rate(const struct pace *p, uint64_t now)
{
	unsigned n = 0;
	uint64_t oldest = now;

	for (unsigned i = 0; i < p->nok; i++) {
		uint64_t t = p->ok_at[i];
		if (now - t <= 1000) {
			n++;
			if (t < oldest)
				oldest = t;
		}
	}
	/* a full history inside the second: the rate is at least that, over its own span */
	if (n == PACE_HISTORY && now > oldest)
		return n * 1000.0 / (double)(now - oldest);
	return n;
}

uint64_t
pace_throttled(struct pace *p, uint64_t now, long retry_after_s)
{
	uint64_t wait_ms;
	double answered = pace_answered_rate(p, now);

	if (retry_after_s < 0)
		retry_after_s = PACE_RETRY_AFTER_DEFAULT_S;
	if (retry_after_s > PACE_RETRY_AFTER_CAP_S)
		retry_after_s = PACE_RETRY_AFTER_CAP_S;
	wait_ms = (uint64_t)retry_after_s * 1000;
	if (p->not_before < now + wait_ms)
		p->not_before = now + wait_ms;
	pace_cut(p, now);
	/*
	 * The API let `answered` requests through in the last second before it
	 * said no: space requests a little under that. Fewer than a handful say
	 * nothing of a rate (a 429 now and then), and neither does the first
	 * second of requests, whose burst spends what an earlier client left of
	 * the API's allowance: the pause alone answers them.
	 * A second 429 in the same burst says no more than the first did.
	 */
	if (answered >= PACE_MIN_SAMPLES && p->started && now >= p->first_at + PACE_BURST_MS &&
	    (now >= p->rate_since + PACE_BURST_MS || p->rate <= 0)) {
		double cur = pace_rate(p, now);
		double next = answered * PACE_RATE_MARGIN;
		if (cur > 0 && cur * PACE_RATE_MARGIN < next)
			next = cur * PACE_RATE_MARGIN;
		p->rate = next;
		p->rate_since = now;
	}
	p->next_at = p->not_before;
	return wait_ms;
}

uint64_t
pace_backoff(int attempt, uint64_t base_ms, uint64_t cap_ms, uint32_t rnd)
{
	uint64_t cap = base_ms;

	for (int i = 0; i < attempt && cap < cap_ms; i++)
		cap *= 2;
	if (cap > cap_ms)
		cap = cap_ms;
	return (uint64_t)rnd % (cap + 1);
}
