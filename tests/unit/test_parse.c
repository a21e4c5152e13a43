/*
 * test_parse: the streaming page parser against golden files.
 *
 * Every tests/data/parse/<case>.json is fed to the parser and what it
 * delivers is printed (one block per record, then "ok" or the error); the
 * text must equal <case>.gold. Each case is fed whole, one byte at a time,
 * and cut in two at every possible byte: the output may not depend on where
 * the network cut the body.
 *
 *   test_parse DATA_DIR [test names...]    run the tests
 *   test_parse --regen DATA_DIR [case...]  rewrite .gold files from the whole-body run
 *
 * A regenerated .gold is a claim about what is right: read it before committing it.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>

#include "parse.h"
#include "test.h"

/* Small, so a case file can exceed it; sync.c uses a larger cap. */
#define MAX_RECORD 4096

/* ---- the driver ---- */

struct sink {
	FILE *out;
	char *text;
	size_t len;
	int stop_at;        /* index of the record to answer -1 to, or -1 */
	unsigned calls;     /* record callbacks seen */
};

static void
sink_open(struct sink *s, int stop_at)
{
	memset(s, 0, sizeof *s);
	s->out = open_memstream(&s->text, &s->len);
	if (s->out == NULL) {
		perror("open_memstream");
		exit(2);
	}
	s->stop_at = stop_at;
}

/* Closes the stream; s->text then holds everything printed (free it). */
static void
sink_close(struct sink *s)
{
	fclose(s->out);
	s->out = NULL;
}

/* A decoded string: C-style escapes for quotes, backslashes, controls and non-ASCII. */
static void
print_text(FILE *f, const char *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/*
 * The raw JSON as it is, except bytes outside printable ASCII as \xNN. In
 * JSON a backslash is never followed by 'x', so this cannot be misread.
 */
static void
print_raw(FILE *f, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

static const char *
type_name(enum json_type t)
{
	static const char *names[] = { "absent", "null", "bool", "number", "string", "object",
		"array" };
	return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "BAD-TYPE";
}

static int
cb_print(void *arg, const struct record *rec)
{
	struct sink *s = arg;
	FILE *f = s->out;

	s->calls++;
	fprintf(f, "record %u replaced_chars=%u\n", rec->index, rec->replaced_chars);
	if (rec->error != NULL)
		fprintf(f, "  error: %s\n", rec->error);
	for (int i = 0; i < FIELD_COUNT; i++) {
		const struct field_value *v = &rec->f[i];
		int has_text = v->type == JSON_STRING || v->type == JSON_NUMBER ||
		    v->type == JSON_BOOL;

		fprintf(f, "  %s %s", parse_field_name((enum field_id)i), type_name(v->type));
		/* the header's promise: text for strings, numbers and booleans, else NULL */
		if (has_text && v->text == NULL)
			fprintf(f, " !!text-is-NULL(len=%zu)", v->len);
		else if (!has_text && v->text != NULL)
			fprintf(f, " !!unexpected-text");
		else if (has_text && v->type == JSON_STRING) {
			fputc(' ', f);
			print_text(f, v->text, v->len);
		} else if (has_text) {
			fputc(' ', f);
			print_raw(f, v->text, v->len);
		}
		fputc('\n', f);
	}
	fputs("  raw ", f);
	if (rec->raw == NULL)
		fputs("!!NULL", f);
	else
		print_raw(f, rec->raw, rec->raw_len);
	fputc('\n', f);
	return s->stop_at >= 0 && rec->index == (unsigned)s->stop_at ? -1 : 0;
}

enum feed_mode { FEED_WHOLE, FEED_BYTES, FEED_SPLIT };

/* Checks the driver makes of the parser itself; a breach is printed into the output. */
static void
note(struct sink *s, const char *what)
{
	fprintf(s->out, "!! %s\n", what);
}

/*
 * Feeds body to p as mode says (FEED_SPLIT: two chunks cut at `at`), then
 * finishes, printing records and the outcome into s.
 */
static void
drive(struct parse *p, struct sink *s, const char *body, size_t len, enum feed_mode mode,
    size_t at)
{
	int failed = 0;

	switch (mode) {
	case FEED_WHOLE:
		failed = parse_feed(p, body, len) < 0;
		break;
	case FEED_BYTES:
		/* go on past a failure: every later call must fail too, and quietly */
		for (size_t i = 0; i < len; i++) {
			unsigned calls = s->calls;
			int rc = parse_feed(p, body + i, 1);
			if (failed && (rc != -1 || s->calls != calls))
				note(s, "parse_feed after a failure did not just fail");
			if (rc < 0)
				failed = 1;
		}
		break;
	case FEED_SPLIT:
		failed = parse_feed(p, body, at) < 0;
		if (!failed)
			failed = parse_feed(p, body + at, len - at) < 0;
		break;
	}
	if (failed && parse_errmsg(p)[0] == '\0')
		note(s, "parse_feed failed without a message");
	if (parse_finish(p) < 0) {
		fprintf(s->out, "records %u\nerror: %s\n", parse_records(p), parse_errmsg(p));
		if (parse_errmsg(p)[0] == '\0')
			note(s, "parse_finish failed without a message");
	} else {
		if (failed)
			note(s, "parse_finish succeeded after parse_feed had failed");
		fprintf(s->out, "records %u\nok\n", parse_records(p));
	}
	if (parse_records(p) != s->calls)
		note(s, "parse_records differs from the number of callbacks");
}

/* Runs one feeding of body on a new handle; returns the printed text (free it). */
static char *
run_once(const char *body, size_t len, enum feed_mode mode, size_t at)
{
	struct sink s;
	struct parse *p;

	sink_open(&s, -1);
	p = parse_new(MAX_RECORD, cb_print, &s);
	if (p == NULL) {
		fprintf(stderr, "parse_new failed\n");
		exit(2);
	}
	drive(p, &s, body, len, mode, at);
	parse_free(p);
	sink_close(&s);
	return s.text;
}

/* ---- case files ---- */

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			buf = realloc(buf, cap + 1);
			if (buf == NULL)
				exit(2);
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The case names (file names without .json) in DATA_DIR/parse, sorted. */
static char **
list_cases(const char *data_dir, size_t *n)
{
	char dir[PATH_MAX];
	DIR *d;
	struct dirent *e;
	char **names = NULL;
	size_t cap = 0;

	*n = 0;
	snprintf(dir, sizeof dir, "%s/parse", data_dir);
	d = opendir(dir);
	if (d == NULL)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l <= 5 || strcmp(e->d_name + l - 5, ".json") != 0)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof *names);
			if (names == NULL)
				exit(2);
		}
		names[(*n)++] = strndup(e->d_name, l - 5);
	}
	closedir(d);
	qsort(names, *n, sizeof *names, cmp_names);
	return names;
}

static void
free_cases(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static char *
case_file(const char *name, const char *ext, size_t *len)
{
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/parse/%s.%s", test_data_dir, name, ext);
	return read_file(path, len);
}

/* Prints where got and want first differ, a few lines of each. */
static void
show_difference(const char *got, const char *want)
{
	size_t i = 0, line = 1, start = 0;

	while (got[i] != '\0' && got[i] == want[i]) {
		if (got[i] == '\n') {
			line++;
			start = i + 1;
		}
		i++;
	}
	printf("      first difference at output line %zu\n", line);
	printf("      got:\n%.600s\n      expected:\n%.600s\n", got + start, want + start);
}

/* ---- tests ---- */

static const char *const mode_names[] = { "whole", "one byte at a time", "in two chunks" };

/* Feeds the case as mode says and compares with want; reports a difference. */
static int
case_matches(const char *name, const char *body, size_t len, const char *want,
    const char *want_name, enum feed_mode mode, size_t at)
{
	char *got = run_once(body, len, mode, at);
	int same = strcmp(got, want) == 0;

	if (!same) {
		char where[64] = "";
		if (mode == FEED_SPLIT)
			snprintf(where, sizeof where, " cut at byte %zu", at);
		test_report(__FILE__, __LINE__, "case %s fed %s%s differs from %s", name,
		    mode_names[mode], where, want_name);
		show_difference(got, want);
	}
	free(got);
	return same;
}

static void
test_golden_cases(void)
{
	size_t n, len, glen, checked = 0;
	char **names = list_cases(test_data_dir, &n);

	ASSERT_TRUE(names != NULL);
	ASSERT_TRUE(n >= 30);
	for (size_t c = 0; c < n; c++) {
		char *body = case_file(names[c], "json", &len);
		char *gold = case_file(names[c], "gold", &glen);
		char *whole;
		int ok;

		if (body == NULL || gold == NULL) {
			test_report(__FILE__, __LINE__, "case %s: cannot read its .json or .gold",
			    names[c]);
			free(body);
			free(gold);
			continue;
		}
		ok = case_matches(names[c], body, len, gold, "its .gold", FEED_WHOLE, 0);
		/*
		 * Chunking may not change anything: compare with the whole-body run,
		 * so a case whose .gold fails is still checked for that.
		 */
		whole = run_once(body, len, FEED_WHOLE, 0);
		ok &= case_matches(names[c], body, len, whole, "the whole-body run", FEED_BYTES, 0);
		/* chunks 0..at and at..len, the empty ones at both ends included */
		for (size_t at = 0; at <= len; at++)
			if (!case_matches(names[c], body, len, whole, "the whole-body run",
			    FEED_SPLIT, at)) {
				ok = 0;
				break;
			}
		checked += ok;
		free(whole);
		free(body);
		free(gold);
	}
	printf("  %zu of %zu cases match their .gold fed whole, byte by byte and split "
	    "everywhere\n", checked, n);
	free_cases(names, n);
}

/* One handle for every page, parse_reset between: nothing of a page may leak into the next. */
static void
test_reset_between_pages(void)
{
	size_t n, len, glen;
	char **names = list_cases(test_data_dir, &n);
	struct sink s;
	struct parse *p = parse_new(MAX_RECORD, cb_print, &s);

	ASSERT_TRUE(names != NULL && p != NULL);
	for (int round = 0; round < 2; round++) {
		for (size_t k = 0; k < n; k++) {
			/* forwards, then backwards: each page follows a different one */
			size_t c = round == 0 ? k : n - 1 - k;
			char *body = case_file(names[c], "json", &len);
			char *gold = case_file(names[c], "gold", &glen);

			if (body != NULL && gold != NULL) {
				parse_reset(p);
				sink_open(&s, -1);
				drive(p, &s, body, len, round == 0 ? FEED_WHOLE : FEED_BYTES, 0);
				sink_close(&s);
				if (strcmp(s.text, gold) != 0) {
					test_report(__FILE__, __LINE__, "case %s after parse_reset "
					    "differs from its .gold", names[c]);
					show_difference(s.text, gold);
				}
				free(s.text);
			}
			free(body);
			free(gold);
		}
	}
	parse_free(p);
	free_cases(names, n);
}

static const char page_two[] =
    "[{\"id\":\"p1\",\"call_intent\":\"x\",\"duration_seconds\":1},{\"id\":\"p2\"},{\"id\":\"p3\"}]";

/* The callback's -1 stops the parse: no later record is delivered. */
static void
test_callback_stops_parse(void)
{
	for (int mode = FEED_WHOLE; mode <= FEED_BYTES; mode++) {
		for (int stop = 0; stop < 3; stop++) {
			struct sink s;
			struct parse *p;
			char want[128];

			sink_open(&s, stop);
			p = parse_new(MAX_RECORD, cb_print, &s);
			ASSERT_TRUE(p != NULL);
			drive(p, &s, page_two, strlen(page_two), (enum feed_mode)mode, 0);
			sink_close(&s);
			ASSERT_EQ_UINT(s.calls, stop + 1);
			ASSERT_EQ_UINT(parse_records(p), stop + 1);
			snprintf(want, sizeof want, "stopped at call #%d by the receiver", stop + 1);
			ASSERT_EQ_STR(parse_errmsg(p), want);
			ASSERT_EQ_INT(parse_finish(p), -1);
			ASSERT_NOT_CONTAINS(s.text, "!!");
			free(s.text);
			parse_free(p);
		}
	}
}

/* parse_feed reports the stop itself, not only parse_finish. */
static void
test_callback_stop_fails_feed(void)
{
	struct sink s;
	struct parse *p;

	sink_open(&s, 0);
	p = parse_new(MAX_RECORD, cb_print, &s);
	ASSERT_TRUE(p != NULL);
	ASSERT_EQ_INT(parse_feed(p, page_two, strlen(page_two)), -1);
	ASSERT_EQ_INT(parse_feed(p, "", 0), -1);
	sink_close(&s);
	ASSERT_EQ_UINT(s.calls, 1);
	free(s.text);
	parse_free(p);
}

/* A page cut off mid-record, then reset: the next page starts clean. */
static void
test_reset_mid_record(void)
{
	static const char half[] = "[{\"id\":\"gone\",\"call_intent\":\"leftover\",\"meta\":{\"a\":[1,";
	static const char next[] = "[{\"contact_id\":\"c\"}]";
	static const char want[] =
	    "record 0 replaced_chars=0\n"
	    "  id absent\n"
	    "  contact_id string \"c\"\n"
	    "  assistant_id absent\n"
	    "  call_type absent\n"
	    "  call_status absent\n"
	    "  duration_seconds absent\n"
	    "  call_started_at absent\n"
	    "  call_ended_at absent\n"
	    "  appointment_booked absent\n"
	    "  lead_qualification absent\n"
	    "  call_intent absent\n"
	    "  raw {\"contact_id\":\"c\"}\n"
	    "records 1\n"
	    "ok\n";
	struct sink s;
	struct parse *p = parse_new(MAX_RECORD, cb_print, &s);

	ASSERT_TRUE(p != NULL);
	sink_open(&s, -1);
	ASSERT_EQ_INT(parse_feed(p, half, strlen(half)), 0);
	ASSERT_EQ_INT(parse_records(p), 0);
	parse_reset(p);
	ASSERT_EQ_STR(parse_errmsg(p), "");
	ASSERT_EQ_INT(parse_records(p), 0);
	drive(p, &s, next, strlen(next), FEED_WHOLE, 0);
	sink_close(&s);
	ASSERT_EQ_STR(s.text, want);
	free(s.text);
	parse_free(p);
}

/* After a failed page, reset gives a working handle again. */
static void
test_reset_after_error(void)
{
	struct sink s;
	struct parse *p = parse_new(MAX_RECORD, cb_print, &s);

	ASSERT_TRUE(p != NULL);
	sink_open(&s, -1);
	ASSERT_EQ_INT(parse_feed(p, "{\"error\":\"x\"}", 13), -1);
	ASSERT_CONTAINS(parse_errmsg(p), "JSON object");
	parse_reset(p);
	ASSERT_EQ_STR(parse_errmsg(p), "");
	ASSERT_EQ_INT(parse_feed(p, page_two, strlen(page_two)), 0);
	ASSERT_EQ_INT(parse_finish(p), 0);
	ASSERT_EQ_UINT(parse_records(p), 3);
	ASSERT_EQ_UINT(s.calls, 3);
	/* and an empty page right after a full one */
	parse_reset(p);
	ASSERT_EQ_INT(parse_feed(p, "[]", 2), 0);
	ASSERT_EQ_INT(parse_finish(p), 0);
	ASSERT_EQ_UINT(parse_records(p), 0);
	/* "empty" means this page's body, not the handle's history */
	parse_reset(p);
	ASSERT_EQ_INT(parse_finish(p), -1);
	ASSERT_CONTAINS(parse_errmsg(p), "empty");
	sink_close(&s);
	free(s.text);
	parse_free(p);
}

/* The cap is per record: a page far larger than it is fine. */
static void
test_cap_is_per_record(void)
{
	struct sink s;
	struct parse *p;
	char *page = malloc(200 * 64 + 16);
	size_t n = 0;

	ASSERT_TRUE(page != NULL);
	page[n++] = '[';
	for (int i = 0; i < 200; i++)
		n += (size_t)sprintf(page + n, "%s{\"id\":\"c%04d\",\"x\":\"%020d\"}", i ? "," : "",
		    i, i);
	page[n++] = ']';
	sink_open(&s, -1);
	p = parse_new(256, cb_print, &s);
	if (p == NULL || parse_feed(p, page, n) != 0 || parse_finish(p) != 0) {
		test_report(__FILE__, __LINE__, "a %zu-byte page of small calls failed: %s", n,
		    p != NULL ? parse_errmsg(p) : "parse_new");
	} else {
		ASSERT_EQ_UINT(parse_records(p), 200);
	}
	sink_close(&s);
	free(s.text);
	parse_free(p);
	free(page);
}

static void
test_field_names(void)
{
	static const char *names[FIELD_COUNT] = {
		[FIELD_ID] = "id", [FIELD_CONTACT_ID] = "contact_id",
		[FIELD_ASSISTANT_ID] = "assistant_id", [FIELD_CALL_TYPE] = "call_type",
		[FIELD_CALL_STATUS] = "call_status", [FIELD_DURATION_SECONDS] = "duration_seconds",
		[FIELD_CALL_STARTED_AT] = "call_started_at", [FIELD_CALL_ENDED_AT] = "call_ended_at",
		[FIELD_APPOINTMENT_BOOKED] = "appointment_booked",
		[FIELD_LEAD_QUALIFICATION] = "lead_qualification", [FIELD_CALL_INTENT] = "call_intent",
	};
	for (int i = 0; i < FIELD_COUNT; i++)
		ASSERT_EQ_STR(parse_field_name((enum field_id)i), names[i]);
	ASSERT_EQ_STR(parse_field_name(FIELD_COUNT), "?");
}

/* Reads every byte a record's fields name, so ASan or valgrind sees any that is not there. */
struct touch {
	unsigned calls;
	size_t bytes;
	unsigned sum;
};

static int
cb_touch(void *arg, const struct record *rec)
{
	struct touch *t = arg;

	t->calls++;
	for (int f = 0; f < FIELD_COUNT; f++) {
		const struct field_value *v = &rec->f[f];
		for (size_t i = 0; v->text != NULL && i < v->len; i++)
			t->sum += (unsigned char)v->text[i];
		t->bytes += v->len;
	}
	for (size_t i = 0; i < rec->raw_len; i++)
		t->sum += (unsigned char)rec->raw[i];
	return 0;
}

/*
 * A call nested past the re-encoder's limit stops growing raw; a string of
 * invalid bytes then triples when sanitized. The id must not be kept as
 * pointing past what was stored: the call is over the cap, and says so.
 */
static void
test_sanitized_value_past_depth_limit(void)
{
	const size_t cap = 4096, nff = 3000, depth = 200;
	char *body = malloc(nff + 2 * depth + 128);
	struct touch t = { 0 };
	struct parse *p;
	size_t n = 0;
	int rc;

	ASSERT_TRUE(body != NULL);
	n += (size_t)sprintf(body + n, "[{\"contact_id\":\"x\",\"a\":");
	memset(body + n, '[', depth);
	n += depth;
	memset(body + n, ']', depth);
	n += depth;
	n += (size_t)sprintf(body + n, ",\"id\":\"");
	memset(body + n, 0xFF, nff);
	n += nff;
	n += (size_t)sprintf(body + n, "\"}]");
	p = parse_new(cap, cb_touch, &t);
	ASSERT_TRUE(p != NULL);
	rc = parse_feed(p, body, n);
	if (rc == 0)
		rc = parse_finish(p);
	free(body);
	ASSERT_EQ_INT(rc, -1);
	ASSERT_EQ_UINT(t.calls, 0);
	ASSERT_CONTAINS(parse_errmsg(p), "call #1 of the page is larger than 4096 bytes");
	parse_free(p);
}

/* The same, one level shallower than the limit and with a small string: kept whole. */
static void
test_sanitized_value_within_cap(void)
{
	const size_t depth = 200;
	char body[1024];
	struct touch t = { 0 };
	struct parse *p;
	size_t n = 0;

	n += (size_t)sprintf(body + n, "[{\"contact_id\":\"x\",\"a\":");
	memset(body + n, '[', depth);
	n += depth;
	memset(body + n, ']', depth);
	n += depth;
	n += (size_t)sprintf(body + n, ",\"id\":\"\xFF\xFF\"}]");
	p = parse_new(4096, cb_touch, &t);
	ASSERT_TRUE(p != NULL);
	ASSERT_EQ_INT(parse_feed(p, body, n), 0);
	ASSERT_EQ_INT(parse_finish(p), 0);
	ASSERT_EQ_UINT(t.calls, 1);
	/* "x", and two U+FFFD */
	ASSERT_EQ_UINT(t.bytes, 1 + 6);
	parse_free(p);
}

/* Builds a page of n calls. */
static char *
page_of(unsigned n, size_t *len)
{
	char *page = malloc((size_t)n * 32 + 16);
	size_t k = 0;

	if (page == NULL)
		return NULL;
	page[k++] = '[';
	for (unsigned i = 0; i < n; i++)
		k += (size_t)sprintf(page + k, "%s{\"id\":\"c%07u\"}", i ? "," : "", i);
	page[k++] = ']';
	*len = k;
	return page;
}

/* More calls than the request's limit: the parse fails at call limit + 1, not at the end. */
static void
test_more_calls_than_limit(void)
{
	struct touch t = { 0 };
	struct parse *p;
	size_t len;
	char *page = page_of(40000, &len);

	ASSERT_TRUE(page != NULL);
	p = parse_new(1 << 20, cb_touch, &t);
	ASSERT_TRUE(p != NULL);
	parse_set_max_records(p, 100);
	ASSERT_EQ_INT(parse_feed(p, page, len), -1);
	ASSERT_EQ_STR(parse_errmsg(p), "the API returned more than 100 calls for limit=100");
	ASSERT_EQ_UINT(t.calls, 100);
	ASSERT_EQ_UINT(parse_records(p), 100);

	/* the cap stays across a reset; exactly limit calls is a good page */
	parse_reset(p);
	free(page);
	page = page_of(100, &len);
	ASSERT_TRUE(page != NULL);
	ASSERT_EQ_INT(parse_feed(p, page, len), 0);
	ASSERT_EQ_INT(parse_finish(p), 0);
	ASSERT_EQ_UINT(parse_records(p), 100);

	/* 0: no cap */
	parse_reset(p);
	parse_set_max_records(p, 0);
	free(page);
	page = page_of(40000, &len);
	ASSERT_TRUE(page != NULL);
	ASSERT_EQ_INT(parse_feed(p, page, len), 0);
	ASSERT_EQ_INT(parse_finish(p), 0);
	ASSERT_EQ_UINT(parse_records(p), 40000);
	free(page);
	parse_free(p);
}

/* The raw of the last record seen, kept past the callback. */
static int
cb_keep_raw(void *arg, const struct record *rec)
{
	char **raw = arg;

	free(*raw);
	*raw = strndup(rec->raw, rec->raw_len);
	return 0;
}

/*
 * raw is written by parse itself, not by yajl_gen: it must stay what yajl_gen
 * writes for the same tokens (escapes, hex case, separators), or a stored raw
 * would change between versions. Every byte 1..127 and some UTF-8, as a key
 * and as a value, inside nested containers.
 */
static void
test_raw_as_yajl_gen_writes_it(void)
{
	unsigned char str[160];
	size_t n = 0, len;
	char body[2048], *raw = NULL;
	const unsigned char *want;
	struct parse *p;
	yajl_gen g;

	for (int c = 1; c < 128; c++)
		str[n++] = (unsigned char)c;
	memcpy(str + n, "\xC3\xA9\xF0\x9F\x98\x80", 6);
	n += 6;
	g = yajl_gen_alloc(NULL);
	ASSERT_TRUE(g != NULL);
	yajl_gen_map_open(g);
	yajl_gen_string(g, (const unsigned char *)"id", 2);
	yajl_gen_string(g, str, n);
	yajl_gen_string(g, str, n);
	yajl_gen_array_open(g);
	yajl_gen_number(g, "-1.5e3", 6);
	yajl_gen_bool(g, 1);
	yajl_gen_null(g);
	yajl_gen_map_open(g);
	yajl_gen_map_close(g);
	yajl_gen_array_open(g);
	yajl_gen_array_close(g);
	yajl_gen_array_close(g);
	yajl_gen_string(g, (const unsigned char *)"b", 1);
	yajl_gen_bool(g, 0);
	yajl_gen_map_close(g);
	yajl_gen_get_buf(g, &want, &len);
	/* the page is the same object in an array: parse it back and compare */
	ASSERT_TRUE(len + 2 < sizeof body);
	body[0] = '[';
	memcpy(body + 1, want, len);
	body[len + 1] = ']';
	p = parse_new(MAX_RECORD, cb_keep_raw, &raw);
	ASSERT_TRUE(p != NULL);
	ASSERT_EQ_INT(parse_feed(p, body, len + 2), 0);
	ASSERT_EQ_INT(parse_finish(p), 0);
	ASSERT_TRUE(raw != NULL);
	ASSERT_EQ_MEM(raw, strlen(raw), want, len);
	yajl_gen_free(g);
	parse_free(p);
	free(raw);
}

/*
 * The surrogate filter hands yajl the input between backslashes and holds an
 * escape a chunk cuts: a lone high surrogate is found wherever the cuts fall,
 * a pair is kept, and the bytes around them arrive once and in order.
 */
static void
test_surrogate_filter_at_every_cut(void)
{
	static const char body[] = "[{\"id\":\"a\\ud800\\u0041b\\ud83d\\ude00\\\\\\\"\\ud800\"}]";
	static const char want[] = "{\"id\":\"a\xEF\xBF\xBD" "Ab\xF0\x9F\x98\x80" "\\\\\\\"\xEF\xBF\xBD\"}";
	size_t len = sizeof body - 1;

	for (size_t a = 0; a <= len; a++) {
		for (size_t b = a; b <= len; b++) {
			char *raw = NULL;
			struct parse *p = parse_new(MAX_RECORD, cb_keep_raw, &raw);

			ASSERT_TRUE(p != NULL);
			ASSERT_EQ_INT(parse_feed(p, body, a), 0);
			ASSERT_EQ_INT(parse_feed(p, body + a, b - a), 0);
			ASSERT_EQ_INT(parse_feed(p, body + b, len - b), 0);
			ASSERT_EQ_INT(parse_finish(p), 0);
			ASSERT_TRUE(raw != NULL);
			ASSERT_EQ_STR(raw, want);
			parse_free(p);
			free(raw);
		}
	}
}

static const struct test_case tests[] = {
	TEST(test_golden_cases),
	TEST(test_reset_between_pages),
	TEST(test_callback_stops_parse),
	TEST(test_callback_stop_fails_feed),
	TEST(test_reset_mid_record),
	TEST(test_reset_after_error),
	TEST(test_cap_is_per_record),
	TEST(test_field_names),
	TEST(test_sanitized_value_past_depth_limit),
	TEST(test_sanitized_value_within_cap),
	TEST(test_more_calls_than_limit),
	TEST(test_raw_as_yajl_gen_writes_it),
	TEST(test_surrogate_filter_at_every_cut),
};

/* Writes <case>.gold from the whole-body run of each case (all, or those named). */
static int
regen(const char *data_dir, char **only, int nonly)
{
	size_t n, len;
	char **names = list_cases(data_dir, &n);

	if (names == NULL) {
		fprintf(stderr, "%s/parse: %s\n", data_dir, strerror(errno));
		return 1;
	}
	test_data_dir = data_dir;
	for (size_t c = 0; c < n; c++) {
		char path[PATH_MAX], *body, *out;
		int wanted = nonly == 0;
		FILE *f;

		for (int i = 0; i < nonly; i++)
			wanted |= strcmp(only[i], names[c]) == 0;
		if (!wanted)
			continue;
		body = case_file(names[c], "json", &len);
		if (body == NULL)
			continue;
		out = run_once(body, len, FEED_WHOLE, 0);
		snprintf(path, sizeof path, "%s/parse/%s.gold", data_dir, names[c]);
		f = fopen(path, "wb");
		if (f == NULL || fputs(out, f) == EOF || fclose(f) != 0) {
			perror(path);
			return 1;
		}
		printf("wrote %s\n", path);
		free(out);
		free(body);
	}
	free_cases(names, n);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc > 2 && strcmp(argv[1], "--regen") == 0)
		return regen(argv[2], argv + 3, argc - 3);
	if (argc < 2) {
		fprintf(stderr, "usage: test_parse DATA_DIR [test...] | --regen DATA_DIR [case...]\n");
		return 2;
	}
	test_data_dir = argv[1];
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2, argc - 2);
}
