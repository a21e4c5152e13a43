/*
 * fastapi: a fast local VozAgent API server for the benchmarks.
 *
 * Serves GET /v1/calls (and /calls) as /work/shared/api/calls.md documents
 * it, with generated calls shaped like those of tests/sim/vozagent_sim.py,
 * fast enough that the client, not the server, is what a benchmark measures:
 * every call is rendered to JSON once at start into one contiguous buffer,
 * so a page is a memcpy of a slice (oldest first) or of its records in
 * reverse (newest first), and one uv_write. HTTP/1.1 keep-alive, any number
 * of connections, one request at a time per connection (pipelined requests
 * are answered in order).
 *
 *   fastapi [--calls N] [--seed S] [--port P] [--port-file FILE] [--key K]
 *           [--order oldest_first|newest_first] [--latency-ms L] [--rate R]
 *           [--in-progress-recent N] [--in-progress-stuck M] [--newest-at SECONDS]
 *           [--dump-copy FILE]
 *
 * --port 0 (the default) takes a free port; the port is printed on stdout as
 * the first line, and written to --port-file (atomically) when given.
 * --latency-ms delays every answer by L ms on a timer (the loop goes on).
 * --rate R answers 429 with Retry-After: 1 beyond a token bucket of R
 * requests/s (burst R). --dump-copy writes, before listening, the rows the
 * daemon stores for these calls as COPY text of a table shaped like
 * vozagent.calls without its bookkeeping columns (id ... call_intent, raw).
 * GET /stats answers the counters as JSON (no key needed); SIGTERM/SIGINT
 * print them on one line to stderr and stop the server.
 *
 * Calls are deterministic for (seed, position): ids, contacts, fields,
 * extras and formatting (a quarter of records ASCII-escaped with spaces, the
 * rest compact UTF-8) follow the simulator's generator in kind and share,
 * not draw for draw. call_started_at ascends with the position up to the
 * newest call, which started at --newest-at (seconds since the epoch; by
 * default yesterday 00:00 UTC, so no call is in the future); calls that
 * start together are listed by id, as the simulator lists them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#define MAX_LIMIT       100
#define DEFAULT_LIMIT   50
#define NCONTACTS       40
#define NASSISTANTS     5
#define REQ_MAX         16384            /* request head cap: beyond it, 431 */
#define OUT_MAX         (64u << 20)      /* one answer's cap */
#define DATA_MAX        ((size_t)8 << 30) /* the rendered calls' cap */
#define STUCK_MIN_AGE   (2 * 86400 * INT64_C(1000000))
#define RECENT_FRACTION 0.3

/* ------------------------------------------------------------ buffers --- */

/* A growing byte buffer with a hard cap. */
struct ob {
	char *data;
	size_t len, cap, max;
};

static int
ob_reserve(struct ob *b, size_t more)
{
	size_t cap;
	char *n;

	if (b->len + more <= b->cap)
		return 0;
	if (b->len + more > b->max)
		return -1;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	if (cap > b->max)
		cap = b->max;
	if ((n = realloc(b->data, cap)) == NULL)
		return -1;
	b->data = n;
	b->cap = cap;
	return 0;
}

/* Appends; an overflow is caught once per record by ob_failed (it keeps the code flat). */
static void
ob_put(struct ob *b, const void *p, size_t n)
{
	if (ob_reserve(b, n) < 0) {
		b->len = b->max + 1;    /* marks the buffer failed */
		return;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static bool
ob_failed(const struct ob *b)
{
	return b->len > b->max;
}

static void
ob_str(struct ob *b, const char *s)
{
	ob_put(b, s, strlen(s));
}

static void
ob_printf(struct ob *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
ob_printf(struct ob *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n > 0)
		ob_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---------------------------------------------------------------- rng --- */

/* splitmix64: one stream per (seed, position, purpose), so any call can be regenerated alone. */
struct rng {
	uint64_t s;
};

static uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void
rng_init(struct rng *r, uint64_t seed, uint64_t pos, uint64_t purpose)
{
	r->s = mix64(seed * UINT64_C(0x9e3779b97f4a7c15) + purpose) ^ mix64(pos + 1);
}

static uint64_t
rng_next(struct rng *r)
{
	r->s += UINT64_C(0x9e3779b97f4a7c15);
	return mix64(r->s);
}

static double
rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static int64_t
rng_int(struct rng *r, int64_t lo, int64_t hi)   /* lo..hi, both included */
{
	return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

static void
rng_hex(struct rng *r, char *out, int n)
{
	for (int i = 0; i < n; i++)
		out[i] = "0123456789abcdef"[rng_next(r) & 15];
	out[n] = '\0';
}

/* --------------------------------------------------------------- JSON --- */

/*
 * Writes JSON as Python's json.dumps does: compact (",", ":") with UTF-8
 * kept, or, for the simulator's "ASCII" records, ", " and ": " with every
 * non-ASCII character escaped (surrogate pairs beyond the BMP).
 */
struct jw {
	struct ob *o;
	bool ascii;
	bool after_key;
	int depth;
	bool first[16];
};

static void
jw_sep(struct jw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->depth > 0) {
		if (!w->first[w->depth])
			ob_str(w->o, w->ascii ? ", " : ",");
		w->first[w->depth] = false;
	}
}

static void
jw_u(struct ob *o, unsigned cp)
{
	ob_printf(o, "\\u%04x", cp);
}

static void
jw_quoted(struct jw *w, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	ob_put(w->o, "\"", 1);
	while (*p) {
		unsigned c = *p, cp;
		int n;

		switch (c) {
		case '"': ob_put(w->o, "\\\"", 2); p++; continue;
		case '\\': ob_put(w->o, "\\\\", 2); p++; continue;
		case '\n': ob_put(w->o, "\\n", 2); p++; continue;
		case '\r': ob_put(w->o, "\\r", 2); p++; continue;
		case '\t': ob_put(w->o, "\\t", 2); p++; continue;
		case '\b': ob_put(w->o, "\\b", 2); p++; continue;
		case '\f': ob_put(w->o, "\\f", 2); p++; continue;
		}
		if (c < 0x20) {
			jw_u(w->o, c);
			p++;
			continue;
		}
		if (c < 0x80 || !w->ascii) {
			ob_put(w->o, p, 1);
			p++;
			continue;
		}
		/* the generator's texts are valid UTF-8 */
		n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
		cp = c & (n == 4 ? 0x07 : n == 3 ? 0x0f : 0x1f);
		for (int i = 1; i < n; i++)
			cp = (cp << 6) | (p[i] & 0x3f);
		p += n;
		if (cp >= 0x10000) {
			cp -= 0x10000;
			jw_u(w->o, 0xd800 | (cp >> 10));
			jw_u(w->o, 0xdc00 | (cp & 0x3ff));
		} else {
			jw_u(w->o, cp);
		}
	}
	ob_put(w->o, "\"", 1);
}

static void
jw_key(struct jw *w, const char *k)
{
	jw_sep(w);
	jw_quoted(w, k);
	ob_str(w->o, w->ascii ? ": " : ":");
	w->after_key = true;
}

static void
jw_open(struct jw *w, char c)
{
	jw_sep(w);
	ob_put(w->o, &c, 1);
	w->first[++w->depth] = true;
}

static void
jw_close(struct jw *w, char c)
{
	w->depth--;
	ob_put(w->o, &c, 1);
}

static void
jw_str(struct jw *w, const char *s)
{
	jw_sep(w);
	jw_quoted(w, s);
}

/* A number, null, true or false: written as given. */
static void
jw_lit(struct jw *w, const char *s)
{
	jw_sep(w);
	ob_str(w->o, s);
}

/* ---------------------------------------------------------- generator --- */

static const char *const texts[] = {
	"Señora García quiere reprogramar la cita del miércoles",
	"客户希望明天下午预约看房",
	"Très bien 👍 — rappeler à 15h, merci",
	"He said \"call me back\" and left C:\\Users\\ana\\notes.txt",
	"line one\nline two\ttabbed\r\nline three",
	"Ωμέγα ∑ ≠ ∞ · naïve façade coöperate",
	"emoji party 🎉📞🇪🇸 and a bell \a and unit sep \x1f",
	"plain ascii summary: interested in the premium plan",
	"słowa: zażółć gęślą jaźń; Ελληνικά; русский текст",
	"tab\there, slash / and backslash \\ and quote ' and \" double",
};
static const char *const names[] = { "José Núñez", "Zoë Ødegård", "李小龙", "Renée O'Connor",
	"Ana \"Nana\" Pérez", "Björn Ståhl", "محمد علي", "Łukasz Żółw" };
static const char *const intents[] = { "new_quote", "billing", "support", "reschedule", "cancel",
	"complaint", "información_general", "renewal" };
static const char *const tags[] = { "vip", "repeat", "spanish", "after-hours", "callback",
	"escalated", "spam?", "débito" };
static const char *const campaigns[] = { "spring-promo", "renewals-Q3", "café-leads",
	"webinar_2024", "🚀launch" };
static const char *const leads[] = { "hot", "warm", "cold" };

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

enum status { ST_COMPLETED, ST_IN_PROGRESS, ST_FAILED };
static const char *const status_names[] = { "completed", "in-progress", "failed" };
static const char *const type_names[] = { "inbound", "outbound" };

/* Streams of a call's randomness. */
enum { RNG_GAP = 1, RNG_ID, RNG_BODY };

/* The typed columns of one call, as the daemon stores them (NULL = SQL NULL). */
struct typed {
	const char *contact, *assistant, *type, *status, *lead, *intent;
	const char *duration, *started, *ended;
	int booked;               /* -1 NULL, 0, 1 */
	char dur[64], start_s[40], end_s[40];
};

struct dataset {
	uint64_t seed;
	size_t n;
	int64_t newest_us;        /* when the newest call started */
	char contacts[NCONTACTS][24];
	char assistants[NASSISTANTS][20];
	int64_t *start;           /* by position */
	uint8_t *in_progress;     /* by position */
	size_t *order;            /* list slot (oldest first) -> position */
	size_t *off;              /* slot -> where its text starts in text; off[n] = end */
	struct ob text;           /* every call's JSON, each followed by ",\n" */
	uint8_t *status, *type, *contact, *assistant;   /* by slot, for the filters */
};

/* Days since 1970-01-01 -> y, m, d (Howard Hinnant's civil_from_days). */
static void
civil(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp + (mp < 10 ? 3 : -9);
	*y = yoe + era * 400 + (*m <= 2);
}

enum ts_style { TS_Z, TS_OFFSET0, TS_OFFSET };

/* As the simulator's fmt_ts: millisecond or microsecond digits only when there are some. */
static void
fmt_ts(int64_t us, enum ts_style style, char *out, size_t outlen)
{
	int64_t shift = 0, secs, frac, days, rem, y, m, d;
	char fr[16] = "";
	char zone[8] = "Z";

	if (style == TS_OFFSET)
		shift = us % 2 ? 2 * 3600 : -(5 * 3600 + 30 * 60);
	/* floor division: a call before 1970 keeps a positive time of day */
	frac = ((us % 1000000) + 1000000) % 1000000;
	secs = (us - frac) / 1000000 + shift;
	rem = ((secs % 86400) + 86400) % 86400;
	days = (secs - rem) / 86400;
	civil(days, &y, &m, &d);
	if (frac != 0 && frac % 1000 == 0)
		snprintf(fr, sizeof fr, ".%03" PRId64, frac / 1000);
	else if (frac != 0)
		snprintf(fr, sizeof fr, ".%06" PRId64, frac);
	if (style != TS_Z) {
		int64_t mins = shift / 60;
		snprintf(zone, sizeof zone, "%c%02d:%02d", mins >= 0 ? '+' : '-',
		    (int)(llabs(mins) / 60), (int)(llabs(mins) % 60));
	}
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d%s%s", (int)y, (int)m, (int)d,
	    (int)(rem / 3600), (int)(rem % 3600 / 60), (int)(rem % 60), fr, zone);
}

static enum ts_style
ts_style(struct rng *r, bool ended)
{
	double x = rng_unit(r);
	if (x < 0.05)
		return TS_OFFSET0;
	if (ended && x < 0.08)
		return TS_OFFSET;
	return TS_Z;
}

/* Time from one call's start to the next one's: minutes, sometimes a night, sometimes 0. */
static int64_t
gen_gap(uint64_t seed, size_t pos)
{
	struct rng r;
	int64_t us;
	double x;

	rng_init(&r, seed, pos, RNG_GAP);
	if (rng_unit(&r) < 0.03)
		return 0;
	us = rng_int(&r, 60, 900) * 1000000;
	if (rng_unit(&r) < 0.05)
		us += rng_int(&r, 2, 12) * 3600 * INT64_C(1000000);
	x = rng_unit(&r);
	if (x < 0.10)
		us += rng_int(&r, 1, 999) * 1000;
	else if (x < 0.15)
		us += rng_int(&r, 1, 999999);
	return us;
}

/* "call-" and 8-4-4-4 hex; the first 16 digits are a bijection of the position: unique. */
static void
gen_id(uint64_t seed, size_t pos, char *out)
{
	struct rng r;
	uint64_t u = mix64(pos ^ mix64(seed + 0x5eed));
	char tail[5];

	rng_init(&r, seed, pos, RNG_ID);
	rng_hex(&r, tail, 4);
	snprintf(out, 32, "call-%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%s", u >> 32,
	    (u >> 16) & 0xffff, u & 0xffff, tail);
}

/* A finished call's duration, as text and in microseconds (the simulator's shares). */
static void
gen_duration(struct rng *r, char *out, size_t outlen, int64_t *us)
{
	double x = rng_unit(r);
	int64_t a, b;

	if (x < 0.80) {
		a = rng_int(r, 5, 1800);
		snprintf(out, outlen, "%" PRId64, a);
		*us = a * 1000000;
	} else if (x < 0.90) {
		a = rng_int(r, 5, 900), b = rng_int(r, 1, 9);
		snprintf(out, outlen, "%" PRId64 ".%" PRId64, a, b);
		*us = a * 1000000 + b * 100000;
	} else if (x < 0.95) {
		char digits[20];
		int64_t micro = 0;
		a = rng_int(r, 5, 900);
		for (int i = 0; i < 18; i++) {
			digits[i] = (char)('0' + rng_int(r, 0, 9));
			if (i < 6)
				micro = micro * 10 + (digits[i] - '0');
		}
		digits[18] = '\0';
		/* 19 decimals; the end time truncates to microseconds, as int(Decimal) does */
		snprintf(out, outlen, "%" PRId64 ".%s7", a, digits);
		*us = a * 1000000 + micro;
	} else if (x < 0.98) {
		a = rng_int(r, 0, 59), b = rng_int(r, 1, 99);
		snprintf(out, outlen, "%" PRId64 ".%02" PRId64, a, b);
		*us = a * 1000000 + b * 10000;
	} else {
		a = rng_int(r, 1, 9), b = rng_int(r, 1, 9);
		snprintf(out, outlen, "%" PRId64 ".%" PRId64 "E+2", a, b);   /* e.g. 1.8E+2 */
		*us = (a * 10 + b) * 10 * 1000000;
	}
}

/* k distinct tags in a random order (random.sample). */
static void
gen_tags(struct jw *w, struct rng *r, int k)
{
	int idx[NELEM(tags)];

	for (int i = 0; i < (int)NELEM(tags); i++)
		idx[i] = i;
	jw_open(w, '[');
	for (int i = 0; i < k; i++) {
		int j = (int)rng_int(r, i, NELEM(tags) - 1), t = idx[i];
		idx[i] = idx[j];
		idx[j] = t;
		jw_str(w, tags[idx[i]]);
	}
	jw_close(w, ']');
}

/* The fields beyond the documented ones: every JSON type, nesting, odd numbers. */
static void
gen_extras(struct jw *w, struct rng *r, const char *id)
{
	char tmp[256], hex[17];

	if (rng_unit(r) < 0.5) {
		jw_key(w, "cost_usd");
		snprintf(tmp, sizeof tmp, "0.%04d", (int)rng_int(r, 1, 9999));
		jw_lit(w, tmp);
	}
	if (rng_unit(r) < 0.35) {
		rng_hex(r, hex, 16);
		snprintf(tmp, sizeof tmp, "https://rec.vozagent.ai/%s.mp3?sig=%s&exp=%" PRId64, id, hex,
		    rng_int(r, 1000000000, 2000000000));
		jw_key(w, "recording_url");
		jw_str(w, tmp);
	}
	if (rng_unit(r) < 0.3) {
		jw_key(w, "metadata");
		jw_open(w, '{');
		jw_key(w, "campaign");
		jw_str(w, campaigns[rng_int(r, 0, NELEM(campaigns) - 1)]);
		jw_key(w, "tags");
		gen_tags(w, r, (int)rng_int(r, 0, 3));
		jw_key(w, "score");
		snprintf(tmp, sizeof tmp, "%.3f", rng_unit(r));
		jw_lit(w, tmp);
		jw_key(w, "flags");
		jw_open(w, '{');
		jw_key(w, "vip");
		jw_lit(w, rng_unit(r) < 0.2 ? "true" : "false");
		jw_key(w, "dnc");
		jw_lit(w, "false");
		jw_key(w, "notes");
		jw_lit(w, "null");
		jw_close(w, '}');
		jw_key(w, "attempt");
		snprintf(tmp, sizeof tmp, "%d", (int)rng_int(r, 1, 5));
		jw_lit(w, tmp);
		jw_key(w, "nested");
		jw_open(w, '{');
		jw_key(w, "level2");
		jw_open(w, '{');
		jw_key(w, "level3");
		jw_open(w, '[');
		jw_lit(w, "1");
		jw_str(w, "two");
		jw_open(w, '{');
		jw_key(w, "three");
		jw_lit(w, "3.0");
		jw_close(w, '}');
		jw_close(w, ']');
		jw_close(w, '}');
		jw_close(w, '}');
		if (rng_unit(r) < 0.2) {
			jw_key(w, "métadonnées \"clé\"");
			jw_str(w, "valeur\\échappée");
		}
		jw_close(w, '}');
	}
	if (rng_unit(r) < 0.25) {
		jw_key(w, "transcript_summary");
		jw_str(w, texts[rng_int(r, 0, NELEM(texts) - 1)]);
	}
	if (rng_unit(r) < 0.15) {
		jw_key(w, "customer_name");
		jw_str(w, names[rng_int(r, 0, NELEM(names) - 1)]);
	}
	if (rng_unit(r) < 0.2) {
		jw_key(w, "tags");
		gen_tags(w, r, (int)rng_int(r, 1, 4));
	}
	if (rng_unit(r) < 0.15) {
		jw_key(w, "sentiment");
		snprintf(tmp, sizeof tmp, "%.3f", rng_unit(r) * 2 - 1);
		jw_lit(w, tmp);
	}
	if (rng_unit(r) < 0.15) {
		jw_key(w, "transferred");
		jw_lit(w, rng_unit(r) < 0.5 ? "true" : "false");
	}
	if (rng_unit(r) < 0.1) {
		jw_key(w, "voicemail_left");
		jw_lit(w, "null");
	}
	if (rng_unit(r) < 0.08) {
		jw_key(w, "segments");
		jw_open(w, '[');
		jw_open(w, '{');
		jw_key(w, "speaker");
		jw_str(w, "agent");
		jw_key(w, "start");
		jw_lit(w, "0");
		jw_key(w, "end");
		jw_lit(w, "12.5");
		jw_key(w, "text");
		jw_str(w, texts[rng_int(r, 0, NELEM(texts) - 1)]);
		jw_close(w, '}');
		jw_open(w, '{');
		jw_key(w, "speaker");
		jw_str(w, "caller");
		jw_key(w, "start");
		jw_lit(w, "12.5");
		jw_key(w, "end");
		jw_lit(w, "40");
		jw_key(w, "text");
		jw_str(w, texts[rng_int(r, 0, NELEM(texts) - 1)]);
		jw_close(w, '}');
		jw_close(w, ']');
	}
	if (rng_unit(r) < 0.05) {
		/* beyond int64 */
		snprintf(tmp, sizeof tmp, "%" PRIu64,
		    UINT64_C(10000000000000000000) + (rng_next(r) % UINT64_C(1000000000000000001)));
		jw_key(w, "sip_sequence");
		jw_lit(w, tmp);
	}
	if (rng_unit(r) < 0.05) {
		jw_key(w, "precision_probe");
		jw_lit(w, "3.14159265358979323846264338327950288");
	}
	if (rng_unit(r) < 0.04) {
		jw_key(w, "empty_object");
		jw_lit(w, "{}");
		jw_key(w, "empty_array");
		jw_lit(w, "[]");
	}
	if (rng_unit(r) < 0.03) {
		jw_key(w, "tiny");
		jw_lit(w, "1E-7");
		jw_key(w, "huge");
		jw_lit(w, "6.02214076E+23");
		jw_key(w, "negative");
		jw_lit(w, "-42");
	}
}

/*
 * Renders the call at position pos into o, in the simulator's field order
 * (its finish() fills a finished call's fields in after call_intent), and
 * fills t with its typed columns. compact: the form the daemon stores in raw
 * whatever the record's served style; the same draws either way.
 */
static void
gen_call(const struct dataset *ds, size_t pos, bool compact, struct ob *o, struct typed *t)
{
	struct rng r;
	struct jw w = { .o = o };
	char id[32];
	int64_t start = ds->start[pos], dur_us = 0;
	bool in_prog = ds->in_progress[pos];
	double x;

	rng_init(&r, ds->seed, pos, RNG_BODY);
	w.ascii = rng_unit(&r) < 0.25 && !compact;
	gen_id(ds->seed, pos, id);
	memset(t, 0, sizeof *t);
	t->booked = -1;
	t->contact = ds->contacts[rng_int(&r, 0, NCONTACTS - 1)];
	t->assistant = ds->assistants[rng_int(&r, 0, NASSISTANTS - 1)];
	t->type = type_names[rng_unit(&r) < 0.6 ? 0 : 1];
	fmt_ts(start, ts_style(&r, false), t->start_s, sizeof t->start_s);
	t->started = t->start_s;
	t->status = status_names[ST_IN_PROGRESS];

	jw_open(&w, '{');
	jw_key(&w, "id");
	jw_str(&w, id);
	jw_key(&w, "contact_id");
	jw_str(&w, t->contact);
	jw_key(&w, "assistant_id");
	jw_str(&w, t->assistant);
	jw_key(&w, "call_type");
	jw_str(&w, t->type);
	bool failed = !in_prog && rng_unit(&r) >= 0.82;
	if (!in_prog)
		t->status = status_names[failed ? ST_FAILED : ST_COMPLETED];
	jw_key(&w, "call_status");
	jw_str(&w, t->status);
	jw_key(&w, "call_started_at");
	jw_str(&w, t->started);
	bool has_intent = rng_unit(&r) < 0.6;
	if (has_intent) {
		jw_key(&w, "call_intent");
		if (rng_unit(&r) < 0.9) {
			t->intent = intents[rng_int(&r, 0, NELEM(intents) - 1)];
			jw_str(&w, t->intent);
		} else {
			jw_lit(&w, "null");
		}
	}
	if (in_prog) {
		if (rng_unit(&r) < 0.5) {
			jw_key(&w, "duration_seconds");
			jw_lit(&w, "null");
		}
		if (rng_unit(&r) < 0.3) {
			jw_key(&w, "call_ended_at");
			jw_lit(&w, "null");
		}
		x = rng_unit(&r);
		if (x < 0.5) {
			jw_key(&w, "appointment_booked");
			jw_lit(&w, x < 0.3 ? "null" : "false");
			t->booked = x < 0.3 ? -1 : 0;
		}
		if (rng_unit(&r) < 0.3) {
			jw_key(&w, "lead_qualification");
			jw_lit(&w, "null");
		}
	} else {
		if (failed) {
			int64_t s = rng_int(&r, 0, 20);
			if (rng_unit(&r) < 0.3) {
				s = rng_int(&r, 0, 5);
				snprintf(t->dur, sizeof t->dur, "%" PRId64 ".5", s);
				dur_us = s * 1000000 + 500000;
			} else {
				snprintf(t->dur, sizeof t->dur, "%" PRId64, s);
				dur_us = s * 1000000;
			}
		} else {
			gen_duration(&r, t->dur, sizeof t->dur, &dur_us);
		}
		t->duration = t->dur;
		jw_key(&w, "duration_seconds");
		jw_lit(&w, t->dur);
		fmt_ts(start + dur_us, ts_style(&r, true), t->end_s, sizeof t->end_s);
		t->ended = t->end_s;
		jw_key(&w, "call_ended_at");
		jw_str(&w, t->ended);
		t->booked = !failed && rng_unit(&r) < 0.3;
		jw_key(&w, "appointment_booked");
		jw_lit(&w, t->booked ? "true" : "false");
		x = rng_unit(&r);
		if (x < 0.70) {
			t->lead = leads[rng_int(&r, 0, 2)];
			jw_key(&w, "lead_qualification");
			jw_str(&w, t->lead);
		} else if (x < 0.85) {
			jw_key(&w, "lead_qualification");
			jw_lit(&w, "null");
		}
		if (!has_intent && rng_unit(&r) < 0.5) {
			t->intent = intents[rng_int(&r, 0, NELEM(intents) - 1)];
			jw_key(&w, "call_intent");
			jw_str(&w, t->intent);
		}
	}
	gen_extras(&w, &r, id);
	jw_close(&w, '}');
}

static int
cmp_ids(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Which positions are in progress: the simulator's --in-progress-recent/--in-progress-stuck. */
static void
dataset_in_progress(struct dataset *ds, size_t recent, size_t stuck)
{
	size_t first_recent = ds->n > recent ? ds->n - recent : 0, pool = 0;
	int64_t newest = ds->n ? ds->start[ds->n - 1] : 0;

	for (size_t p = first_recent; p < ds->n; p++) {
		struct rng r;
		rng_init(&r, ds->seed, p, RNG_GAP + 100);
		ds->in_progress[p] = rng_unit(&r) < RECENT_FRACTION;
	}
	/* stuck calls, spread evenly over those started two days before the newest at least */
	while (pool < first_recent && newest - ds->start[pool] >= STUCK_MIN_AGE)
		pool++;
	if (pool < stuck)
		pool = first_recent;
	if (stuck > pool)
		stuck = pool;
	for (size_t j = 0; j < stuck; j++)
		ds->in_progress[(size_t)((j + 0.5) * (double)pool / (double)stuck)] = 1;
}

/* Generates and renders every call; 0, or -1 with a message in err. */
static int
dataset_build(struct dataset *ds, size_t recent, size_t stuck, char *err, size_t errlen)
{
	struct rng r;
	struct typed t;
	char (*ids)[32] = NULL;
	char **runs = NULL;
	size_t n = ds->n;

	rng_init(&r, ds->seed, 0, 0);
	for (int i = 0; i < NCONTACTS; i++) {
		char a[9], b[5], c[5], d[5];
		rng_hex(&r, a, 8), rng_hex(&r, b, 4), rng_hex(&r, c, 4), rng_hex(&r, d, 4);
		snprintf(ds->contacts[i], sizeof ds->contacts[i], "%s-%s-%s-%s", a, b, c, d);
	}
	for (int i = 0; i < NASSISTANTS; i++) {
		char a[9], b[5], c[5];
		rng_hex(&r, a, 8), rng_hex(&r, b, 4), rng_hex(&r, c, 4);
		snprintf(ds->assistants[i], sizeof ds->assistants[i], "%s-%s-%s", a, b, c);
	}
	ds->start = calloc(n + 1, sizeof *ds->start);
	ds->in_progress = calloc(n + 1, 1);
	ds->order = calloc(n + 1, sizeof *ds->order);
	ds->off = calloc(n + 1, sizeof *ds->off);
	ds->status = calloc(n + 1, 1);
	ds->type = calloc(n + 1, 1);
	ds->contact = calloc(n + 1, 1);
	ds->assistant = calloc(n + 1, 1);
	ids = calloc(n + 1, sizeof *ids);
	runs = calloc(n + 1, sizeof *runs);
	if (!ds->start || !ds->in_progress || !ds->order || !ds->off || !ds->status || !ds->type ||
	    !ds->contact || !ds->assistant || !ids || !runs) {
		snprintf(err, errlen, "out of memory for %zu calls", n);
		goto fail;
	}
	/*
	 * The newest call started at newest_us, the others before it: a real call
	 * log ends in the past. (The simulator counts forward from 2024 instead,
	 * which puts calls in the future from ~80000 calls on, and the daemon
	 * does not take a call from the future for the newest one it mirrored.)
	 */
	for (size_t p = 0; p < n; p++) {
		ds->start[p] = p == 0 ? 0 : ds->start[p - 1] + gen_gap(ds->seed, p - 1);
		gen_id(ds->seed, p, ids[p]);
		ds->order[p] = p;
	}
	for (size_t p = 0; p < n; p++)
		ds->start[p] += ds->newest_us - ds->start[n - 1];
	dataset_in_progress(ds, recent, stuck);

	/* calls that start together are listed by id */
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && ds->start[j] == ds->start[i])
			j++;
		if (j - i > 1) {
			for (size_t k = i; k < j; k++)
				runs[k - i] = ids[k];
			qsort(runs, j - i, sizeof *runs, cmp_ids);
			for (size_t k = i; k < j; k++)
				ds->order[k] = (size_t)(runs[k - i] - ids[0]) / sizeof *ids;
		}
		i = j;
	}

	ds->text.max = DATA_MAX;
	if (ob_reserve(&ds->text, n * 640 + 64) < 0) {
		snprintf(err, errlen, "out of memory for the rendered calls");
		goto fail;
	}
	for (size_t k = 0; k < n; k++) {
		size_t p = ds->order[k];

		ds->off[k] = ds->text.len;
		gen_call(ds, p, false, &ds->text, &t);
		ob_put(&ds->text, ",\n", 2);
		if (ob_failed(&ds->text)) {
			snprintf(err, errlen, "the rendered calls outgrow %zu bytes", (size_t)DATA_MAX);
			goto fail;
		}
		ds->status[k] = (uint8_t)(t.status == status_names[ST_COMPLETED] ? ST_COMPLETED :
		    t.status == status_names[ST_FAILED] ? ST_FAILED : ST_IN_PROGRESS);
		ds->type[k] = t.type == type_names[1];
		ds->contact[k] = (uint8_t)((t.contact - ds->contacts[0]) / sizeof ds->contacts[0]);
		ds->assistant[k] = (uint8_t)((t.assistant - ds->assistants[0]) /
		    sizeof ds->assistants[0]);
	}
	ds->off[n] = ds->text.len;
	free(ids);
	free(runs);
	return 0;
fail:
	free(ids);
	free(runs);
	return -1;
}

/* One COPY text field: backslash, newline, CR and tab escaped; NULL is \N. */
static void
copy_field(FILE *f, const char *s, size_t len, char end)
{
	if (s == NULL) {
		fputs("\\N", f);
	} else {
		for (size_t i = 0; i < len; i++) {
			switch (s[i]) {
			case '\\': fputs("\\\\", f); break;
			case '\n': fputs("\\n", f); break;
			case '\r': fputs("\\r", f); break;
			case '\t': fputs("\\t", f); break;
			default: putc(s[i], f);
			}
		}
	}
	putc(end, f);
}

static void
copy_str(FILE *f, const char *s)
{
	copy_field(f, s, s ? strlen(s) : 0, '\t');
}

/* The rows the daemon stores, in list order (oldest first), columns id .. call_intent, raw. */
static int
dataset_dump_copy(const struct dataset *ds, const char *path, char *err, size_t errlen)
{
	struct ob raw = { .max = OUT_MAX };
	struct typed t;
	char id[32];
	FILE *f = fopen(path, "w");

	if (f == NULL) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	for (size_t k = 0; k < ds->n; k++) {
		size_t p = ds->order[k];

		raw.len = 0;
		gen_call(ds, p, true, &raw, &t);
		gen_id(ds->seed, p, id);
		copy_str(f, id);
		copy_str(f, t.contact);
		copy_str(f, t.assistant);
		copy_str(f, t.type);
		copy_str(f, t.status);
		copy_str(f, t.duration);
		copy_str(f, t.started);
		copy_str(f, t.ended);
		copy_str(f, t.booked < 0 ? NULL : t.booked ? "t" : "f");
		copy_str(f, t.lead);
		copy_str(f, t.intent);
		copy_field(f, raw.data, raw.len, '\n');
	}
	free(raw.data);
	if (ferror(f) | (fclose(f) != 0)) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------- server --- */

struct counters {
	uint64_t requests;        /* to /v1/calls, whatever the answer */
	uint64_t pages;           /* answered 200 */
	uint64_t limited;         /* answered 429 */
	uint64_t errors;          /* answered 4xx other than 429 */
	uint64_t records;         /* calls sent */
	uint64_t bytes;           /* every byte written, headers included */
	uint64_t connections;     /* accepted */
};

struct server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_signal_t sigterm, sigint;
	struct dataset ds;
	const char *key;
	bool newest_first;
	uint64_t latency_ms;
	double rate, tokens;      /* token bucket: rate/s, burst rate */
	uint64_t refilled_ns;
	struct counters c;
};

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wreq;
	struct server *srv;
	char *in;                 /* bytes read, not yet consumed */
	size_t in_len;
	struct ob out;            /* the answer being delayed or written */
	bool busy;                /* an answer is pending: the next request waits */
	bool close_after;
	bool reading;             /* paused while the head buffer is full of pipelined requests */
	bool closing;
	int open_handles;
};

/* A filter of the list: -1 = any. A contact or assistant nobody has matches nothing (-2). */
struct query {
	size_t limit;
	uint64_t offset;
	int status, type, contact, assistant;
};

static void conn_process(struct conn *c);
static void conn_resume(struct conn *c);

static void
on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (--c->open_handles == 0) {
		free(c->in);
		free(c->out.data);
		free(c);
	}
}

static void
conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_close((uv_handle_t *)&c->timer, on_conn_closed);
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static const char *
reason(int code)
{
	switch (code) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	default: return "Error";
	}
}

/* Status line and headers of an answer whose body is len bytes. */
static void
answer_head(struct conn *c, int code, size_t len, const char *extra)
{
	ob_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n"
	    "Content-Length: %zu\r\n%s%s\r\n", code, reason(code), len, extra ? extra : "",
	    c->close_after ? "Connection: close\r\n" : "");
}

static void
answer_error(struct conn *c, int code, const char *error, const char *message, const char *extra)
{
	char body[256];
	int n;

	if (message != NULL)
		n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\"}\n", error,
		    message);
	else
		n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", error);
	answer_head(c, code, (size_t)n, extra);
	ob_put(&c->out, body, (size_t)n);
	if (code == 429)
		c->srv->c.limited++;
	else
		c->srv->c.errors++;
}

static bool
slot_matches(const struct dataset *ds, size_t k, const struct query *q)
{
	return (q->status < 0 || ds->status[k] == q->status) &&
	    (q->type < 0 || ds->type[k] == q->type) &&
	    (q->contact == -1 || ds->contact[k] == q->contact) &&
	    (q->assistant == -1 || ds->assistant[k] == q->assistant);
}

/* The slot listed at position i of the (unfiltered) list in API order. */
static size_t
list_slot(const struct server *s, size_t i)
{
	return s->newest_first ? s->ds.n - 1 - i : i;
}

/* One page: a slice of the rendered calls, or its records in reverse, or a scan for filters. */
static void
answer_page(struct conn *c, const struct query *q)
{
	const struct dataset *ds = &c->srv->ds;
	size_t picked[MAX_LIMIT], npicked = 0, body = 0;
	bool filtered = q->status >= 0 || q->type >= 0 || q->contact != -1 || q->assistant != -1;

	if (q->contact == -2 || q->assistant == -2 || q->limit == 0) {
		/* nothing can match */
	} else if (!filtered) {
		for (uint64_t i = q->offset; i < ds->n && npicked < q->limit; i++)
			picked[npicked++] = list_slot(c->srv, (size_t)i);
	} else {
		uint64_t seen = 0;
		for (size_t i = 0; i < ds->n && npicked < q->limit; i++) {
			size_t k = list_slot(c->srv, i);
			if (slot_matches(ds, k, q) && seen++ >= q->offset)
				picked[npicked++] = k;
		}
	}
	/* "[\n" + records joined by ",\n" + "\n]\n", as the simulator writes a page */
	for (size_t i = 0; i < npicked; i++)
		body += ds->off[picked[i] + 1] - ds->off[picked[i]];
	body += 2 + 3 - (npicked > 0 ? 2 : 0);    /* brackets, less the last separator */
	answer_head(c, 200, body, NULL);
	ob_put(&c->out, "[\n", 2);
	if (npicked > 0 && !filtered && !c->srv->newest_first) {
		/* consecutive slots: one copy, separators included */
		size_t a = ds->off[picked[0]], b = ds->off[picked[npicked - 1] + 1] - 2;
		ob_put(&c->out, ds->text.data + a, b - a);
	} else {
		for (size_t i = 0; i < npicked; i++) {
			size_t a = ds->off[picked[i]], b = ds->off[picked[i] + 1];
			ob_put(&c->out, ds->text.data + a, b - a - (i + 1 == npicked ? 2 : 0));
		}
	}
	ob_put(&c->out, "\n]\n", 3);
	c->srv->c.pages++;
	c->srv->c.records += npicked;
}

static int
hexval(char h)
{
	if (h >= '0' && h <= '9')
		return h - '0';
	h |= 0x20;
	return h >= 'a' && h <= 'f' ? h - 'a' + 10 : -1;
}

/* Percent-decodes s[0..len) ('+' is a space) into out; -1 when it does not fit. */
static int
url_decode(const char *s, size_t len, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (ch == '+') {
			ch = ' ';
		} else if (ch == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 &&
		    hexval(s[i + 2]) >= 0) {
			ch = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		}
		if (o + 1 >= outlen)
			return -1;
		out[o++] = ch;
	}
	out[o] = '\0';
	return 0;
}

/* Digits only: 0 and the value (saturated), else -1. */
static int
parse_count(const char *s, uint64_t *v)
{
	if (*s == '\0')
		return -1;
	*v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		*v = *v > UINT64_MAX / 20 ? UINT64_MAX / 20 : *v * 10 + (uint64_t)(*s - '0');
	}
	return 0;
}

static int
lookup(const char *v, const char *const *names_, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v, names_[i]) == 0)
			return i;
	return -1;
}

static int
query_error(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -1;
}

/* The query string's parameters, checked as the simulator checks them: 0, or -1 and why in err. */
static int
parse_query(const struct dataset *ds, const char *qs, size_t len, struct query *q, char *err,
    size_t errlen)
{
	static const char *const known[] = { "limit", "offset", "status", "call_type",
		"contact_id", "assistant_id" };
	bool seen[NELEM(known)] = { false };
	const char *p = qs, *end = qs + len;

	*q = (struct query){ .limit = DEFAULT_LIMIT, .status = -1, .type = -1, .contact = -1,
		.assistant = -1 };
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p)), *eq;
		char k[64], v[256];
		uint64_t n;
		int which;

		if (amp == NULL)
			amp = end;
		eq = memchr(p, '=', (size_t)(amp - p));
		if (amp == p) {
			p++;
			continue;
		}
		if (url_decode(p, (size_t)((eq ? eq : amp) - p), k, sizeof k) < 0 ||
		    url_decode(eq ? eq + 1 : amp, eq ? (size_t)(amp - eq - 1) : 0, v, sizeof v) < 0)
			return query_error(err, errlen, "a query parameter is too long");
		p = amp + 1;
		if ((which = lookup(k, known, NELEM(known))) < 0)
			continue;           /* unknown parameters are ignored */
		if (seen[which]) {
			snprintf(err, errlen, "parameter %s given more than once", k);
			return -1;
		}
		seen[which] = true;
		switch (which) {
		case 0:
			if (parse_count(v, &n) < 0 || n > MAX_LIMIT)
				return query_error(err, errlen, "limit must be an integer between 0 and 100");
			q->limit = (size_t)n;
			break;
		case 1:
			if (parse_count(v, &q->offset) < 0)
				return query_error(err, errlen, "offset must be a non-negative integer");
			break;
		case 2:
			if ((q->status = lookup(v, status_names, 3)) < 0)
				return query_error(err, errlen, "status must be one of completed, in-progress, failed");
			break;
		case 3:
			if ((q->type = lookup(v, type_names, 2)) < 0)
				return query_error(err, errlen, "call_type must be one of inbound, outbound");
			break;
		case 4:
			q->contact = -2;
			for (int i = 0; i < NCONTACTS; i++)
				if (strcmp(v, ds->contacts[i]) == 0)
					q->contact = i;
			break;
		case 5:
			q->assistant = -2;
			for (int i = 0; i < NASSISTANTS; i++)
				if (strcmp(v, ds->assistants[i]) == 0)
					q->assistant = i;
			break;
		}
	}
	return 0;
}

/* Whether a request may pass the rate limit now (one token each). */
static bool
rate_allows(struct server *s)
{
	uint64_t now = uv_hrtime();

	if (s->rate <= 0)
		return true;
	s->tokens += (double)(now - s->refilled_ns) * s->rate / 1e9;
	if (s->tokens > s->rate)
		s->tokens = s->rate;
	s->refilled_ns = now;
	if (s->tokens < 1)
		return false;
	s->tokens -= 1;
	return true;
}

static void
answer_stats(struct conn *c)
{
	struct server *s = c->srv;
	char body[512];
	int n = snprintf(body, sizeof body, "{\"calls\":%zu,\"requests\":%" PRIu64 ",\"pages\":%"
	    PRIu64 ",\"rate_limited\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"records\":%" PRIu64
	    ",\"bytes\":%" PRIu64 ",\"connections\":%" PRIu64 "}\n", s->ds.n, s->c.requests,
	    s->c.pages, s->c.limited, s->c.errors, s->c.records, s->c.bytes, s->c.connections);

	answer_head(c, 200, (size_t)n, NULL);
	ob_put(&c->out, body, (size_t)n);
}

/* The value of header name in head (lines after the request line), or NULL; *len set. */
static const char *
header(const char *head, size_t headlen, const char *name, size_t *len)
{
	size_t nl = strlen(name);
	const char *p = memchr(head, '\n', headlen), *end = head + headlen;

	while (p != NULL && ++p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl + 1, *ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			*len = (size_t)(ve - v);
			return v;
		}
		p = eol;
	}
	return NULL;
}

/* Answers the request whose head is in[0..headlen): fills c->out. */
static void
answer(struct conn *c, const char *head, size_t headlen)
{
	struct server *s = c->srv;
	const char *sp1 = memchr(head, ' ', headlen), *sp2, *qm, *v;
	size_t pathlen, vlen, keylen = strlen(s->key);
	struct query q;
	char bad[160];

	sp2 = sp1 ? memchr(sp1 + 1, ' ', headlen - (size_t)(sp1 + 1 - head)) : NULL;
	if (sp1 == NULL || sp2 == NULL) {
		c->close_after = true;
		answer_error(c, 400, "malformed request line", NULL, NULL);
		return;
	}
	if (strncmp(sp2 + 1, "HTTP/1.1", 8) != 0)
		c->close_after = true;
	if ((v = header(head, headlen, "Connection", &vlen)) != NULL) {
		if (vlen == 5 && strncasecmp(v, "close", 5) == 0)
			c->close_after = true;
		else if (vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0)
			c->close_after = false;
	}
	qm = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
	pathlen = (size_t)((qm ? qm : sp2) - sp1 - 1);
	while (pathlen > 1 && sp1[pathlen] == '/')
		pathlen--;
#define PATH_IS(lit) (pathlen == sizeof(lit) - 1 && memcmp(sp1 + 1, lit, pathlen) == 0)
	if (PATH_IS("/stats")) {
		answer_stats(c);
		return;
	}
	if (!PATH_IS("/v1/calls") && !PATH_IS("/calls")) {
		answer_error(c, 404, "not found", NULL, NULL);
		return;
	}
#undef PATH_IS
	s->c.requests++;
	if (sp1 - head != 3 || memcmp(head, "GET", 3) != 0) {
		answer_error(c, 405, "method not allowed", NULL, "Allow: GET\r\n");
		return;
	}
	v = header(head, headlen, "Authorization", &vlen);
	if (v == NULL || vlen != 7 + keylen || strncmp(v, "Bearer ", 7) != 0 ||
	    memcmp(v + 7, s->key, keylen) != 0) {
		answer_error(c, 401, "unauthorized", "invalid or missing API key",
		    "WWW-Authenticate: Bearer realm=\"vozagent\"\r\n");
		return;
	}
	if (!rate_allows(s)) {
		answer_error(c, 429, "rate_limited", "rate limit exceeded", "Retry-After: 1\r\n");
		return;
	}
	if (parse_query(&s->ds, qm ? qm + 1 : sp2, qm ? (size_t)(sp2 - qm - 1) : 0, &q, bad,
	    sizeof bad) < 0) {
		answer_error(c, 400, bad, NULL, NULL);
		return;
	}
	answer_page(c, &q);
}

static void
on_written(uv_write_t *req, int status)
{
	struct conn *c = req->data;

	c->busy = false;
	c->out.len = 0;
	if (status < 0 || c->close_after) {
		conn_close(c);
		return;
	}
	conn_process(c);
	conn_resume(c);
}

static void
conn_send(struct conn *c)
{
	uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);

	c->srv->c.bytes += c->out.len;
	c->wreq.data = c;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0)
		conn_close(c);
}

static void
on_latency(uv_timer_t *t)
{
	conn_send(t->data);
}

/* The blank line that ends a request head, or NULL. */
static char *
find_head_end(char *p, size_t len)
{
	for (size_t i = 3; i < len; i++)
		if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
			return p + i - 3;
	return NULL;
}

/* Answers the next complete request in c->in, if any and if no answer is pending. */
static void
conn_process(struct conn *c)
{
	char *end;
	size_t headlen, bodylen = 0, vlen;
	const char *v;

	if (c->busy || c->closing || c->in_len == 0)
		return;
	end = find_head_end(c->in, c->in_len);
	if (end == NULL) {
		if (c->in_len >= REQ_MAX) {
			c->close_after = true;
			c->busy = true;
			answer_error(c, 431, "request head too large", NULL, NULL);
			conn_send(c);
		}
		return;
	}
	headlen = (size_t)(end - c->in) + 4;
	if ((v = header(c->in, headlen, "Content-Length", &vlen)) != NULL)
		bodylen = strtoul(v, NULL, 10);
	if (bodylen > REQ_MAX) {
		c->close_after = true;
		bodylen = 0;
	}
	if (headlen + bodylen > c->in_len)
		return;                 /* the body is still coming */
	c->busy = true;
	c->out.len = 0;
	answer(c, c->in, headlen);
	memmove(c->in, c->in + headlen + bodylen, c->in_len - headlen - bodylen);
	c->in_len -= headlen + bodylen;
	if (ob_failed(&c->out)) {
		conn_close(c);
		return;
	}
	if (c->srv->latency_ms > 0)
		uv_timer_start(&c->timer, on_latency, c->srv->latency_ms, 0);
	else
		conn_send(c);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;

	(void)suggested;
	/* the head buffer has REQ_MAX + 1 bytes; a full one is answered 431 */
	b->base = c->in + c->in_len;
	b->len = REQ_MAX - c->in_len;
}

static void
on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = st->data;

	(void)b;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	c->in_len += (size_t)nread;
	if (c->in_len >= REQ_MAX && c->busy) {
		uv_read_stop(st);       /* a pipelining client waits for its answers */
		c->reading = false;
	}
	conn_process(c);
	conn_resume(c);
}

/* Reads again once answers have made room in the head buffer. */
static void
conn_resume(struct conn *c)
{
	if (!c->closing && !c->reading && c->in_len < REQ_MAX &&
	    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
}

static void
on_connection(uv_stream_t *listener, int status)
{
	struct server *s = listener->data;
	struct conn *c;

	if (status < 0)
		return;
	if ((c = calloc(1, sizeof *c)) == NULL || (c->in = malloc(REQ_MAX + 1)) == NULL) {
		free(c);
		return;
	}
	c->srv = s;
	c->out.max = OUT_MAX;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->open_handles = 2;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	s->c.connections++;
	conn_resume(c);
}

/* Closes every handle: a connection with its timer, then the listener and the signals. */
static void
on_walk_close(uv_handle_t *h, void *server)
{
	if (uv_is_closing(h))
		return;
	if (h->type == UV_TCP && h->data != server) {
		conn_close(h->data);
		return;
	}
	if (h->type != UV_TIMER)
		uv_close(h, NULL);
}

static void
on_signal(uv_signal_t *sig, int signum)
{
	struct server *s = sig->data;

	(void)signum;
	fprintf(stderr, "fastapi: requests=%" PRIu64 " pages=%" PRIu64 " 429s=%" PRIu64
	    " errors=%" PRIu64 " records=%" PRIu64 " bytes=%" PRIu64 " connections=%" PRIu64 "\n",
	    s->c.requests, s->c.pages, s->c.limited, s->c.errors, s->c.records, s->c.bytes,
	    s->c.connections);
	uv_walk(s->loop, on_walk_close, s);
}

/* ---------------------------------------------------------------- main --- */

static void
usage(void)
{
	fprintf(stderr, "usage: fastapi [--calls N] [--seed S] [--port P] [--port-file FILE]"
	    " [--key K]\n               [--order oldest_first|newest_first] [--latency-ms L]"
	    " [--rate R]\n               [--in-progress-recent N] [--in-progress-stuck M]"
	    " [--newest-at SECONDS]\n               [--dump-copy FILE]\n");
	exit(64);
}

/* A non-negative integer option's value, or exit with what was wrong. */
static uint64_t
opt_count(const char *name, const char *v)
{
	uint64_t n;

	if (v == NULL || parse_count(v, &n) < 0 || n >= UINT64_MAX / 20) {
		fprintf(stderr, "fastapi: %s needs a non-negative integer, not '%s'\n", name,
		    v ? v : "");
		exit(64);
	}
	return n;
}

static int
write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
	if ((f = fopen(tmp, "w")) == NULL)
		return -1;
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	static struct server s;
	const char *port_file = NULL, *dump = NULL;
	uint64_t port = 0, recent = 200, stuck = 10;
	int64_t newest_at = ((int64_t)time(NULL) / 86400 - 1) * 86400;    /* yesterday, 00:00Z */
	struct sockaddr_in addr;
	struct sockaddr_storage bound;
	int namelen = sizeof bound, rc;
	char err[256];

	s.ds.n = 1000;
	s.ds.seed = 1;
	s.key = "bench-token";
	/* each option takes its value: two arguments a turn */
	for (int i = 1; i < argc; i += 2) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(o, "--calls") == 0)
			s.ds.n = (size_t)opt_count(o, v);
		else if (strcmp(o, "--seed") == 0)
			s.ds.seed = opt_count(o, v);
		else if (strcmp(o, "--port") == 0)
			port = opt_count(o, v);
		else if (strcmp(o, "--latency-ms") == 0)
			s.latency_ms = opt_count(o, v);
		else if (strcmp(o, "--rate") == 0)
			s.rate = (double)opt_count(o, v);
		else if (strcmp(o, "--newest-at") == 0)
			newest_at = (int64_t)opt_count(o, v);
		else if (strcmp(o, "--in-progress-recent") == 0)
			recent = opt_count(o, v);
		else if (strcmp(o, "--in-progress-stuck") == 0)
			stuck = opt_count(o, v);
		else if (strcmp(o, "--port-file") == 0 && v != NULL)
			port_file = v;
		else if (strcmp(o, "--dump-copy") == 0 && v != NULL)
			dump = v;
		else if (strcmp(o, "--key") == 0 && v != NULL && *v != '\0')
			s.key = v;
		else if (strcmp(o, "--order") == 0 && v != NULL &&
		    (strcmp(v, "oldest_first") == 0 || strcmp(v, "newest_first") == 0))
			s.newest_first = v[0] == 'n';
		else
			usage();
	}
	if (port > 65535) {
		fprintf(stderr, "fastapi: --port must be 0-65535\n");
		return 64;
	}
	s.ds.newest_us = newest_at * 1000000;
	if (dataset_build(&s.ds, (size_t)recent, (size_t)stuck, err, sizeof err) < 0 ||
	    (dump != NULL && dataset_dump_copy(&s.ds, dump, err, sizeof err) < 0)) {
		fprintf(stderr, "fastapi: %s\n", err);
		return 1;
	}
	s.tokens = s.rate;
	s.refilled_ns = uv_hrtime();

	s.loop = uv_default_loop();
	uv_tcp_init(s.loop, &s.listener);
	s.listener.data = &s;
	uv_ip4_addr("127.0.0.1", (int)port, &addr);
	if ((rc = uv_tcp_bind(&s.listener, (const struct sockaddr *)&addr, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&s.listener, 511, on_connection)) < 0) {
		fprintf(stderr, "fastapi: cannot listen on 127.0.0.1:%d: %s\n", (int)port,
		    uv_strerror(rc));
		return 1;
	}
	uv_tcp_getsockname(&s.listener, (struct sockaddr *)&bound, &namelen);
	port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
	printf("%d\n", (int)port);
	fflush(stdout);
	if (port_file != NULL && write_port_file(port_file, (int)port) < 0) {
		fprintf(stderr, "fastapi: cannot write %s: %s\n", port_file, strerror(errno));
		return 1;
	}
	uv_signal_init(s.loop, &s.sigterm);
	uv_signal_init(s.loop, &s.sigint);
	s.sigterm.data = s.sigint.data = &s;
	uv_signal_start(&s.sigterm, on_signal, SIGTERM);
	uv_signal_start(&s.sigint, on_signal, SIGINT);
	uv_run(s.loop, UV_RUN_DEFAULT);
	uv_loop_close(s.loop);
	free(s.ds.text.data);
	return 0;
}
