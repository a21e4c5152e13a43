/*
 * bench_parse: how fast a page body goes through parse + rows, next to bare yajl.
 *
 * The same page (a JSON array of call records, generated here like the
 * simulator's, or read from a file) is fed, in chunks the size curl hands
 * over, through three pipelines, interleaved and repeated:
 *
 *   yajl    yajl_parse with no callbacks: the floor, what tokenizing costs
 *   parse   parse_feed/parse_finish (yajl + re-encoding raw + known fields),
 *           record callback does nothing
 *   rows    parse + rows_add: the whole CPU path of a page before PostgreSQL
 *
 * It prints the median throughput of each and the median of the per-round
 * ratios to the floor; a round runs every pipeline once, in a rotating
 * order, so each ratio compares runs made seconds apart.
 *
 *   bench_parse [--file PAGE.json] [--records N] [--seed S] [--iters PAGES]
 *               [--reps R] [--chunk BYTES] [--only yajl|parse|rows] [--dump]
 *
 * --only runs one pipeline (for valgrind --tool=callgrind; see BENCHMARKS.md).
 * --dump writes the generated page to stdout and exits.
 * Not a test: it asserts nothing about speed, and is not registered with ctest.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <yajl/yajl_parse.h>

#include "log.h"
#include "parse.h"
#include "rows.h"

/* sync.c's caps, so the modules run as they do in the daemon */
#define BENCH_MAX_RECORD (1u << 20)
#define BENCH_MAX_BATCH (64u << 20)
#define BENCH_MAX_REPS 101

enum pipeline { PIPE_YAJL, PIPE_PARSE, PIPE_ROWS, PIPE_COUNT };
static const char *const pipe_names[PIPE_COUNT] = { "yajl", "parse", "rows" };
static const char *const pipe_desc[PIPE_COUNT] = {
	"bare yajl_parse, no callbacks (floor)",
	"parse_feed/finish, no-op record callback",
	"parse + rows_add (typed COPY text)",
};

/* ---- a growing buffer ---- */

struct sb {
	char *s;
	size_t len, cap;
};

static void
sb_put(struct sb *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->s = realloc(b->s, cap);
		if (b->s == NULL) {
			perror("realloc");
			exit(2);
		}
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
sb_str(struct sb *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void
sb_fmt(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sb_fmt(struct sb *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof tmp) {
		fprintf(stderr, "bench_parse: sb_fmt overflow\n");
		exit(2);
	}
	sb_put(b, tmp, (size_t)n);
}

/* ---- a page generator, after tests/sim/vozagent_sim.py ---- */

static uint64_t rng_state;

static uint64_t
rng_next(void)
{
	/* xorshift64*: deterministic for a seed, good enough for test data */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static double
rng_unit(void)
{
	return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static int
rng_int(int lo, int hi)
{
	return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1));
}

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
static const char *const intents[] = { "new_quote", "billing", "support", "reschedule",
	"cancel", "complaint", "información_general", "renewal" };
static const char *const tags[] = { "vip", "repeat", "spanish", "after-hours", "callback",
	"escalated", "spam?", "débito" };
static const char *const campaigns[] = { "spring-promo", "renewals-Q3", "café-leads",
	"webinar_2024", "🚀launch" };
#define PICK(a) (a[rng_next() % (sizeof a / sizeof a[0])])

/* Decodes one UTF-8 sequence (the generator's own strings are valid). */
static uint32_t
utf8_next(const unsigned char **p)
{
	const unsigned char *s = *p;
	uint32_t c = s[0];
	int n = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;

	if (n > 0)
		c &= 0x3Fu >> n;
	for (int i = 1; i <= n; i++)
		c = (c << 6) | (s[i] & 0x3F);
	*p = s + n + 1;
	return c;
}

/* A JSON string as Python's json.dumps writes it, ensure_ascii or not. */
static void
gen_string(struct sb *b, const char *str, int ascii)
{
	const unsigned char *p = (const unsigned char *)str;

	sb_put(b, "\"", 1);
	while (*p != '\0') {
		const unsigned char *start = p;
		uint32_t c = utf8_next(&p);
		switch (c) {
		case '"': sb_str(b, "\\\""); break;
		case '\\': sb_str(b, "\\\\"); break;
		case '\n': sb_str(b, "\\n"); break;
		case '\r': sb_str(b, "\\r"); break;
		case '\t': sb_str(b, "\\t"); break;
		default:
			if (c < 0x20)
				sb_fmt(b, "\\u%04x", (unsigned)c);
			else if (c < 0x80 || !ascii)
				sb_put(b, (const char *)start, (size_t)(p - start));
			else if (c < 0x10000)
				sb_fmt(b, "\\u%04x", (unsigned)c);
			else
				sb_fmt(b, "\\u%04x\\u%04x", (unsigned)(0xD800 + ((c - 0x10000) >> 10)),
				    (unsigned)(0xDC00 + ((c - 0x10000) & 0x3FF)));
		}
	}
	sb_put(b, "\"", 1);
}

struct gen {
	struct sb *b;
	int ascii;          /* this record: \u escapes and ", " / ": " separators */
	int first;          /* no comma before the next key */
};

static void
gen_key(struct gen *g, const char *k)
{
	if (!g->first)
		sb_str(g->b, g->ascii ? ", " : ",");
	g->first = 0;
	gen_string(g->b, k, g->ascii);
	sb_str(g->b, g->ascii ? ": " : ":");
}

static void
gen_kv_str(struct gen *g, const char *k, const char *v)
{
	gen_key(g, k);
	gen_string(g->b, v, g->ascii);
}

static void
gen_kv_raw(struct gen *g, const char *k, const char *v)
{
	gen_key(g, k);
	sb_str(g->b, v);
}

static void
gen_hex(char *out, int n)
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < n; i++)
		out[i] = hex[rng_next() & 15];
	out[n] = '\0';
}

static void
gen_ts(char *buf, size_t cap, int64_t usec, int offset0)
{
	rows_format_timestamp(usec, buf, cap); /* 2024-01-15T10:30:00.000000Z */
	if (usec % 1000000 == 0)
		buf[19] = '\0';
	else if (usec % 1000 == 0)
		buf[23] = '\0';
	else
		buf[26] = '\0';
	strcat(buf, offset0 ? "+00:00" : "Z");
}

static void
gen_tag_list(struct gen *g, int n)
{
	sb_str(g->b, "[");
	for (int i = 0; i < n; i++) {
		if (i > 0)
			sb_str(g->b, g->ascii ? ", " : ",");
		gen_string(g->b, PICK(tags), g->ascii);
	}
	sb_str(g->b, "]");
}

static void
gen_record(struct sb *b, int64_t start, char contacts[][24], char assistants[][20])
{
	struct gen g = { b, rng_unit() < 0.25, 1 };
	const char *sep = g.ascii ? ", " : ",";
	char id[64], h[4][9], ts[48], num[64];
	int in_progress = rng_unit() < 0.10, completed = rng_unit() < 0.82;

	gen_hex(h[0], 8), gen_hex(h[1], 4), gen_hex(h[2], 4), gen_hex(h[3], 4);
	snprintf(id, sizeof id, "call-%s-%s-%s-%s", h[0], h[1], h[2], h[3]);
	sb_str(b, "{");
	gen_kv_str(&g, "id", id);
	gen_kv_str(&g, "contact_id", contacts[rng_next() % 40]);
	gen_kv_str(&g, "assistant_id", assistants[rng_next() % 5]);
	gen_kv_str(&g, "call_type", rng_unit() < 0.6 ? "inbound" : "outbound");
	gen_kv_str(&g, "call_status", in_progress ? "in-progress" :
	    completed ? "completed" : "failed");
	gen_ts(ts, sizeof ts, start, rng_unit() < 0.05);
	gen_kv_str(&g, "call_started_at", ts);
	if (rng_unit() < 0.6)
		gen_kv_str(&g, "call_intent", PICK(intents));
	if (in_progress) {
		if (rng_unit() < 0.5)
			gen_kv_raw(&g, "duration_seconds", "null");
		if (rng_unit() < 0.3)
			gen_kv_raw(&g, "appointment_booked", "null");
	} else {
		double x = rng_unit();
		int secs = rng_int(5, 1800);
		if (x < 0.80)
			snprintf(num, sizeof num, "%d", secs);
		else if (x < 0.90)
			snprintf(num, sizeof num, "%d.%d", rng_int(5, 900), rng_int(1, 9));
		else if (x < 0.95)
			snprintf(num, sizeof num, "%d.%09d%09d7", rng_int(5, 900),
			    rng_int(0, 999999999), rng_int(0, 999999999));
		else if (x < 0.98)
			snprintf(num, sizeof num, "%d.%02d", rng_int(0, 59), rng_int(1, 99));
		else
			snprintf(num, sizeof num, "%d.%de2", rng_int(1, 9), rng_int(1, 9));
		gen_kv_raw(&g, "duration_seconds", num);
		gen_ts(ts, sizeof ts, start + (int64_t)secs * 1000000 + rng_int(0, 999) * 1000,
		    rng_unit() < 0.05);
		gen_kv_str(&g, "call_ended_at", ts);
		gen_kv_raw(&g, "appointment_booked", completed && rng_unit() < 0.3 ? "true" : "false");
		x = rng_unit();
		if (x < 0.70)
			gen_kv_str(&g, "lead_qualification", x < 0.2 ? "hot" : x < 0.45 ? "warm" : "cold");
		else if (x < 0.85)
			gen_kv_raw(&g, "lead_qualification", "null");
	}
	if (rng_unit() < 0.5) {
		snprintf(num, sizeof num, "0.%04d", rng_int(1, 9999));
		gen_kv_raw(&g, "cost_usd", num);
	}
	if (rng_unit() < 0.35) {
		char sig[17], url[160];
		gen_hex(sig, 16);
		snprintf(url, sizeof url, "https://rec.vozagent.ai/%s.mp3?sig=%s&exp=%d", id, sig,
		    rng_int(1000000000, 2000000000));
		gen_kv_str(&g, "recording_url", url);
	}
	if (rng_unit() < 0.3) {
		struct gen m = { b, g.ascii, 1 };
		gen_key(&g, "metadata");
		sb_str(b, "{");
		gen_kv_str(&m, "campaign", PICK(campaigns));
		gen_key(&m, "tags");
		gen_tag_list(&m, rng_int(0, 3));
		snprintf(num, sizeof num, "0.%03d", rng_int(0, 999));
		gen_kv_raw(&m, "score", num);
		gen_key(&m, "flags");
		sb_fmt(b, g.ascii ? "{\"vip\": %s, \"dnc\": false, \"notes\": null}" :
		    "{\"vip\":%s,\"dnc\":false,\"notes\":null}", rng_unit() < 0.2 ? "true" : "false");
		snprintf(num, sizeof num, "%d", rng_int(1, 5));
		gen_kv_raw(&m, "attempt", num);
		gen_kv_raw(&m, "nested", g.ascii ?
		    "{\"level2\": {\"level3\": [1, \"two\", {\"three\": 3.0}]}}" :
		    "{\"level2\":{\"level3\":[1,\"two\",{\"three\":3.0}]}}");
		if (rng_unit() < 0.2)
			gen_kv_str(&m, "métadonnées \"clé\"", "valeur\\échappée");
		sb_str(b, "}");
	}
	if (rng_unit() < 0.25)
		gen_kv_str(&g, "transcript_summary", PICK(texts));
	if (rng_unit() < 0.15)
		gen_kv_str(&g, "customer_name", PICK(names));
	if (rng_unit() < 0.2) {
		gen_key(&g, "tags");
		gen_tag_list(&g, rng_int(1, 4));
	}
	if (rng_unit() < 0.15) {
		int v = rng_int(-1000, 1000);
		snprintf(num, sizeof num, "%s%d.%03d", v < 0 ? "-" : "", abs(v) / 1000, abs(v) % 1000);
		gen_kv_raw(&g, "sentiment", num);
	}
	if (rng_unit() < 0.15)
		gen_kv_raw(&g, "transferred", rng_unit() < 0.5 ? "true" : "false");
	if (rng_unit() < 0.1)
		gen_kv_raw(&g, "voicemail_left", "null");
	if (rng_unit() < 0.08) {
		gen_key(&g, "segments");
		sb_str(b, "[{");
		struct gen s1 = { b, g.ascii, 1 }, s2 = { b, g.ascii, 1 };
		gen_kv_str(&s1, "speaker", "agent");
		gen_kv_raw(&s1, "start", "0");
		gen_kv_raw(&s1, "end", "12.5");
		gen_kv_str(&s1, "text", PICK(texts));
		sb_str(b, "}");
		sb_str(b, sep);
		sb_str(b, "{");
		gen_kv_str(&s2, "speaker", "caller");
		gen_kv_raw(&s2, "start", "12.5");
		gen_kv_raw(&s2, "end", "40");
		gen_kv_str(&s2, "text", PICK(texts));
		sb_str(b, "}]");
	}
	if (rng_unit() < 0.05) {
		snprintf(num, sizeof num, "1%018d", rng_int(0, 999999999));
		gen_kv_raw(&g, "sip_sequence", num); /* beyond int64 */
	}
	if (rng_unit() < 0.05)
		gen_kv_raw(&g, "precision_probe", "3.14159265358979323846264338327950288");
	if (rng_unit() < 0.04) {
		gen_kv_raw(&g, "empty_object", "{}");
		gen_kv_raw(&g, "empty_array", "[]");
	}
	if (rng_unit() < 0.03) {
		gen_kv_raw(&g, "tiny", "1e-7");
		gen_kv_raw(&g, "huge", "6.02214076E+23");
		gen_kv_raw(&g, "negative", "-42");
	}
	sb_str(b, "}");
}

/* The simulator's layout: "[\n" rec ",\n" rec ... "\n]\n". */
static void
gen_page(struct sb *b, int records, uint64_t seed)
{
	char contacts[40][24], assistants[5][20], h[4][9];
	int64_t t = INT64_C(1709971200000000); /* 2024-03-09T08:00:00Z */

	rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
	for (int i = 0; i < 40; i++) {
		gen_hex(h[0], 8), gen_hex(h[1], 4), gen_hex(h[2], 4), gen_hex(h[3], 4);
		snprintf(contacts[i], sizeof contacts[i], "%s-%s-%s-%s", h[0], h[1], h[2], h[3]);
	}
	for (int i = 0; i < 5; i++) {
		gen_hex(h[0], 8), gen_hex(h[1], 4), gen_hex(h[2], 4);
		snprintf(assistants[i], sizeof assistants[i], "%s-%s-%s", h[0], h[1], h[2]);
	}
	sb_str(b, "[\n");
	for (int i = 0; i < records; i++) {
		if (i > 0)
			sb_str(b, ",\n");
		gen_record(b, t, contacts, assistants);
		t += (int64_t)rng_int(60, 900) * 1000000;
		if (rng_unit() < 0.10)
			t += rng_int(1, 999) * 1000;
	}
	sb_str(b, "\n]\n");
}

static int
read_file(const char *path, struct sb *b)
{
	FILE *f = fopen(path, "rb");
	char buf[65536];
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "bench_parse: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		sb_put(b, buf, n);
	fclose(f);
	return 0;
}

/* ---- the pipelines ---- */

struct bench {
	const char *page;
	size_t len, chunk;
	struct parse *parse;
	struct rows *rows;
	int add_rows;        /* the record callback calls rows_add */
	unsigned records;    /* seen by the last page */
	int failed;
};

static int
cb_record(void *arg, const struct record *rec)
{
	struct bench *b = arg;

	b->records++;
	if (b->add_rows && rows_add(b->rows, rec) < 0)
		return -1;
	return 0;
}

static const yajl_callbacks no_callbacks;

/* noinline: callgrind attributes each pipeline's cost to its own function */
__attribute__((noinline)) static void
run_yajl(struct bench *b, long pages)
{
	for (long i = 0; i < pages; i++) {
		yajl_handle h = yajl_alloc(&no_callbacks, NULL, NULL);
		for (size_t off = 0; off < b->len; off += b->chunk) {
			size_t n = b->len - off < b->chunk ? b->len - off : b->chunk;
			if (yajl_parse(h, (const unsigned char *)b->page + off, n) != yajl_status_ok)
				b->failed = 1;
		}
		if (yajl_complete_parse(h) != yajl_status_ok)
			b->failed = 1;
		yajl_free(h);
	}
}

/* As sync.c does per page: reset both, feed what curl hands over, finish. */
__attribute__((noinline)) static void
run_parse(struct bench *b, long pages)
{
	for (long i = 0; i < pages; i++) {
		parse_reset(b->parse);
		rows_reset(b->rows);
		b->records = 0;
		for (size_t off = 0; off < b->len; off += b->chunk) {
			size_t n = b->len - off < b->chunk ? b->len - off : b->chunk;
			if (parse_feed(b->parse, b->page + off, n) < 0)
				b->failed = 1;
		}
		if (parse_finish(b->parse) < 0)
			b->failed = 1;
	}
}

__attribute__((noinline)) static void
run_pipeline(struct bench *b, enum pipeline p, long pages)
{
	b->add_rows = p == PIPE_ROWS;
	if (p == PIPE_YAJL)
		run_yajl(b, pages);
	else
		run_parse(b, pages);
}

static double
now_s(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
median(const double *v, int n)
{
	double s[BENCH_MAX_REPS];

	memcpy(s, v, (size_t)n * sizeof *s);
	qsort(s, (size_t)n, sizeof *s, cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double
min_of(const double *v, int n)
{
	double m = v[0];
	for (int i = 1; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return m;
}

static double
max_of(const double *v, int n)
{
	double m = v[0];
	for (int i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench_parse [--file PAGE.json] [--records N] [--seed S] "
	    "[--iters PAGES] [--reps R]\n"
	    "                   [--chunk BYTES] [--only yajl|parse|rows] [--dump]\n");
	exit(64);
}

static long
arg_long(int *i, int argc, char **argv, long lo, long hi)
{
	char *end;
	long v;

	if (*i + 1 >= argc)
		usage();
	v = strtol(argv[++*i], &end, 10);
	if (*end != '\0' || v < lo || v > hi)
		usage();
	return v;
}

int
main(int argc, char **argv)
{
	const char *file = NULL;
	long records = 100, seed = 1, iters = 1000, reps = 5, chunk = 16384;
	int only = -1, dump = 0, rc = 1;
	struct sb page = { 0 };
	struct bench b = { 0 };
	double wall[PIPE_COUNT][BENCH_MAX_REPS], cpu[PIPE_COUNT][BENCH_MAX_REPS];
	double ratio_w[PIPE_COUNT][BENCH_MAX_REPS], ratio_c[PIPE_COUNT][BENCH_MAX_REPS];
	double rows_only[BENCH_MAX_REPS];
	size_t copy_len;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
			file = argv[++i];
		else if (strcmp(argv[i], "--records") == 0)
			records = arg_long(&i, argc, argv, 1, 100000);
		else if (strcmp(argv[i], "--seed") == 0)
			seed = arg_long(&i, argc, argv, 0, 1L << 30);
		else if (strcmp(argv[i], "--iters") == 0)
			iters = arg_long(&i, argc, argv, 1, 100000000);
		else if (strcmp(argv[i], "--reps") == 0)
			reps = arg_long(&i, argc, argv, 1, BENCH_MAX_REPS);
		else if (strcmp(argv[i], "--chunk") == 0)
			chunk = arg_long(&i, argc, argv, 1, 1L << 30);
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
			i++;
			for (int p = 0; p < PIPE_COUNT; p++)
				if (strcmp(argv[i], pipe_names[p]) == 0)
					only = p;
			if (only < 0)
				usage();
		} else if (strcmp(argv[i], "--dump") == 0)
			dump = 1;
		else
			usage();
	}
	if (file != NULL ? read_file(file, &page) < 0 : (gen_page(&page, (int)records,
	    (uint64_t)seed), 0))
		return 1;
	if (dump) {
		fwrite(page.s, 1, page.len, stdout);
		free(page.s);
		return 0;
	}
	/* a warning per call per page would measure stderr: count them instead */
	log_init(LOG_LEVEL_ERROR);
	b.page = page.s;
	b.len = page.len;
	b.chunk = (size_t)chunk;
	b.parse = parse_new(BENCH_MAX_RECORD, cb_record, &b);
	b.rows = rows_new(BENCH_MAX_BATCH);
	if (b.parse == NULL || b.rows == NULL) {
		fprintf(stderr, "bench_parse: out of memory\n");
		goto out;
	}

	/* one checked page first: a benchmark of an error path measures nothing */
	b.add_rows = 1;
	run_parse(&b, 1);
	if (b.failed || b.records == 0) {
		fprintf(stderr, "bench_parse: %s%s\n", b.failed ? "the page does not parse: " :
		    "the page holds no records", b.failed ? parse_errmsg(b.parse) : "");
		goto out;
	}
	rows_copy_data(b.rows, &copy_len);
	printf("page: %s, %zu bytes, %u records (%.0f bytes/record), chunks of %ld bytes\n",
	    file != NULL ? file : "generated", b.len, b.records, (double)b.len / b.records, chunk);
	printf("rows: %zu typed, %u warnings, %u rejected, %zu bytes of COPY text\n",
	    rows_count(b.rows), rows_warnings(b.rows), rows_rejected(b.rows), copy_len);
	run_yajl(&b, 1);
	if (b.failed) {
		fprintf(stderr, "bench_parse: yajl rejects the page\n");
		goto out;
	}

	if (only >= 0) {
		run_pipeline(&b, (enum pipeline)only, iters);
		printf("ran %ld pages through %s only\n", iters, pipe_names[only]);
		rc = b.failed;
		goto out;
	}

	printf("%ld pages per run, %ld rounds, pipelines interleaved (order rotates per round)\n\n",
	    iters, reps);
	for (int p = 0; p < PIPE_COUNT; p++) /* warm up caches and the allocator */
		run_pipeline(&b, (enum pipeline)p, iters / 10 + 1);
	for (int r = 0; r < reps; r++) {
		for (int k = 0; k < PIPE_COUNT; k++) {
			int p = (r + k) % PIPE_COUNT;
			double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
			run_pipeline(&b, (enum pipeline)p, iters);
			cpu[p][r] = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
			wall[p][r] = now_s(CLOCK_MONOTONIC) - w0;
		}
		for (int p = 0; p < PIPE_COUNT; p++) {
			ratio_w[p][r] = wall[p][r] / wall[PIPE_YAJL][r];
			ratio_c[p][r] = cpu[p][r] / cpu[PIPE_YAJL][r];
		}
	}
	if (b.failed) {
		fprintf(stderr, "bench_parse: a page failed during the runs\n");
		goto out;
	}

	printf("%-6s %-42s %9s %11s %9s %10s %10s\n", "", "", "MB/s", "records/s", "us/page",
	    "time vs", "(cpu");
	printf("%-6s %-42s %9s %11s %9s %10s %10s\n", "", "", "median", "median", "median",
	    "yajl", "time)");
	for (int p = 0; p < PIPE_COUNT; p++) {
		double t = median(wall[p], (int)reps);
		printf("%-6s %-42s %9.1f %11.0f %9.1f %9.2fx %9.2fx\n", pipe_names[p], pipe_desc[p],
		    (double)b.len * iters / t / 1e6, (double)b.records * iters / t,
		    t / iters * 1e6, median(ratio_w[p], (int)reps), median(ratio_c[p], (int)reps));
	}
	printf("\nspread of the per-round ratios (min..max):");
	for (int p = 1; p < PIPE_COUNT; p++)
		printf("  %s/yajl %.2f..%.2f", pipe_names[p], min_of(ratio_w[p], (int)reps),
		    max_of(ratio_w[p], (int)reps));
	for (int r = 0; r < reps; r++)
		rows_only[r] = (wall[PIPE_ROWS][r] - wall[PIPE_PARSE][r]) / iters * 1e6;
	printf("\nrows_add alone (rows - parse, median of the rounds): %.1f us/page\n",
	    median(rows_only, (int)reps));
	rc = 0;
out:
	parse_free(b.parse);
	rows_free(b.rows);
	free(page.s);
	return rc;
}
