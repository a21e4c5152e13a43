/*
 * fuzz_parse: libFuzzer target for the page parser and the COPY batch it fills.
 *
 * The input is a response body, fed as sync.c feeds it: parse_new, parse_feed
 * in chunks, parse_finish, every record into rows_add. Nothing is consumed as
 * a control byte, so the corpus stays plain JSON pages; the chunk size comes
 * from the first byte and the caps and receiver mode from the last one.
 *
 * Each input is parsed twice on one handle: in chunks on a fresh parser, then
 * in one piece after parse_reset (past a call cut off mid-way, as after a
 * dropped connection). Both runs must agree on everything (records,
 * COPY text, error), which proves that chunk boundaries do not matter and that
 * a reset parser is as good as a new one. Every record, every COPY line and
 * every batch is checked on the way; a broken invariant calls abort().
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "log.h"
#include "parse.h"
#include "rows.h"

#define COPY_FIELDS 13          /* seq, the FIELD_COUNT columns, raw */
#define PARSE_ERR_MAX 256       /* struct parse's err[] */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *report;            /* where broken invariants are told */
/*
 * FUZZ_PARSE_LAX=offsets,numbers,oom,reasons: skip the checks that known open
 * bugs break, to fuzz past them (README.md). Off by default.
 */
static int lax_offsets, lax_numbers, lax_oom, lax_reasons;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4), noreturn))
#endif
static void
fuzz_fail(const char *file, int line, const char *fmt, ...)
{
	FILE *f = report != NULL ? report : stderr;
	va_list ap;

	fprintf(f, "fuzz_parse: invariant broken at %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fflush(f);
	abort();
}

#define CHECK(cond, ...)                                               \
	do {                                                           \
		if (!(cond))                                           \
			fuzz_fail(__FILE__, __LINE__, __VA_ARGS__);    \
	} while (0)

/*
 * rows.c logs a warning for every mistyped field. The messages are still
 * formatted (a bad length there is a bug ASan should see) but written to
 * /dev/null through a buffer, unless FUZZ_PARSE_LOG=1. glibc lets stderr be
 * assigned; libFuzzer and the sanitizers keep writing to the real one.
 */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *keep = getenv("FUZZ_PARSE_LOG");
	const char *lax = getenv("FUZZ_PARSE_LAX");
	FILE *null;

	(void)argc;
	(void)argv;
	lax_offsets = lax != NULL && strstr(lax, "offsets") != NULL;
	lax_numbers = lax != NULL && strstr(lax, "numbers") != NULL;
	lax_oom = lax != NULL && strstr(lax, "oom") != NULL;
	lax_reasons = lax != NULL && strstr(lax, "reasons") != NULL;
	log_init(LOG_LEVEL_DEBUG);
	report = stderr;
	if (keep != NULL && strcmp(keep, "1") == 0)
		return 0;
	null = fopen("/dev/null", "w");
	if (null != NULL && setvbuf(null, NULL, _IOFBF, 1 << 16) == 0)
		stderr = null;
	return 0;
}

/* ---- a growing byte string for what the runs produced ---- */

struct out {
	char *data;
	size_t len, cap;
};

static void
out_add(struct out *o, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 1024;
		while (cap < o->len + n)
			cap *= 2;
		o->data = realloc(o->data, cap);
		if (o->data == NULL)
			abort();
		o->cap = cap;
	}
	memcpy(o->data + o->len, p, n);
	o->len += n;
}

static void
out_free(struct out *o)
{
	free(o->data);
	memset(o, 0, sizeof *o);
}

/* ---- text checks ---- */

/* Strict UTF-8 as PostgreSQL takes it: no overlongs, surrogates or NULs. */
static int
utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len, k;
		unsigned char lo = 0x80, hi = 0xBF;

		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			len = 2;
		else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			if (c == 0xE0)
				lo = 0xA0;
			if (c == 0xED)
				hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			if (c == 0xF0)
				lo = 0x90;
			if (c == 0xF4)
				hi = 0x8F;
		} else
			return 0;
		if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
			return 0;
		for (k = 2; k < len; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xBF)
				return 0;
		i += len;
	}
	return 1;
}

/*
 * Whether PostgreSQL (15) numeric, and so jsonb, takes the JSON number s:
 * at most 131072 digits before the decimal point, 16383 after it, and an
 * exponent under INT_MAX/2 ("value overflows numeric format" otherwise, which
 * fails the COPY of the whole page).
 */
static int
pg_numeric_ok(const char *s, size_t n)
{
	size_t i = 0, intsig = 0, frac = 0, lead_frac_zeros = 0;
	int nonzero = 0, expneg = 0;
	long long e = 0, msd, dscale;

	if (i < n && s[i] == '-')
		i++;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		if (s[i] != '0' || intsig > 0) {
			intsig++;
			nonzero = 1;
		}
	}
	if (i < n && s[i] == '.') {
		for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
			if (s[i] != '0')
				nonzero = 1;
			else if (!nonzero)
				lead_frac_zeros++;
			frac++;
		}
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			expneg = s[i++] == '-';
		for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			if (e < (1LL << 40))
				e = e * 10 + (s[i] - '0');
		if (expneg)
			e = -e;
	}
	if (e >= 1073741823LL || e <= -1073741823LL)
		return 0;
	dscale = (long long)frac - e;
	if (dscale > 16383)
		return 0;
	if (!nonzero)
		return 1;
	/* power of ten of the most significant digit */
	msd = intsig > 0 ? (long long)intsig - 1 + e : -(long long)lead_frac_zeros - 1 + e;
	return msd + 1 <= 131072;
}

/* ---- re-parse raw with a plain yajl handle ---- */

/* What raw says about a known field: its last top-level occurrence. */
struct expect {
	enum json_type type;
	char *text;
	size_t len;
};

struct reparse {
	int depth;                 /* 1 = directly inside the call object */
	int key;                   /* known field named by the last top-level key, or -1 */
	int bad;                   /* a decoded string was not clean UTF-8 */
	char bad_number[64];       /* the first number numeric cannot hold */
	int top_is_map;
	struct expect e[FIELD_COUNT];
};

static void
reparse_set(struct reparse *r, enum json_type t, const void *s, size_t len)
{
	struct expect *e;

	if (r->depth != 1 || r->key < 0)
		return;
	e = &r->e[r->key];
	r->key = -1;
	free(e->text);
	e->type = t;
	e->text = NULL;
	e->len = len;
	if (s != NULL) {
		e->text = malloc(len + 1);
		if (e->text == NULL)
			abort();
		memcpy(e->text, s, len);
	}
}

static int
rp_null(void *ctx)
{
	reparse_set(ctx, JSON_NULL, NULL, 0);
	return 1;
}

static int
rp_boolean(void *ctx, int v)
{
	reparse_set(ctx, JSON_BOOL, v ? "true" : "false", v ? 4 : 5);
	return 1;
}

static int
rp_number(void *ctx, const char *s, size_t len)
{
	struct reparse *r = ctx;

	if (r->bad_number[0] == '\0' && !pg_numeric_ok(s, len))
		snprintf(r->bad_number, sizeof r->bad_number, "%.*s", (int)len, s);
	reparse_set(r, JSON_NUMBER, s, len);
	return 1;
}

static int
rp_string(void *ctx, const unsigned char *s, size_t len)
{
	struct reparse *r = ctx;

	if (!utf8_ok(s, len))
		r->bad = 1;
	reparse_set(r, JSON_STRING, s, len);
	return 1;
}

static int
rp_map_key(void *ctx, const unsigned char *s, size_t len)
{
	struct reparse *r = ctx;

	if (!utf8_ok(s, len))
		r->bad = 1;
	r->key = -1;
	if (r->depth == 1)
		for (int f = 0; f < FIELD_COUNT; f++)
			if (strlen(parse_field_name(f)) == len &&
			    memcmp(parse_field_name(f), s, len) == 0)
				r->key = f;
	return 1;
}

static int
rp_start_map(void *ctx)
{
	struct reparse *r = ctx;

	if (r->depth == 0)
		r->top_is_map = 1;
	reparse_set(r, JSON_OBJECT, NULL, 0);
	r->depth++;
	return 1;
}

static int
rp_start_array(void *ctx)
{
	struct reparse *r = ctx;

	reparse_set(r, JSON_ARRAY, NULL, 0);
	r->depth++;
	return 1;
}

static int
rp_end(void *ctx)
{
	struct reparse *r = ctx;

	r->depth--;
	r->key = -1;
	return 1;
}

static const yajl_callbacks reparse_callbacks = {
	.yajl_null = rp_null,
	.yajl_boolean = rp_boolean,
	.yajl_number = rp_number,
	.yajl_string = rp_string,
	.yajl_start_map = rp_start_map,
	.yajl_map_key = rp_map_key,
	.yajl_end_map = rp_end,
	.yajl_start_array = rp_start_array,
	.yajl_end_array = rp_end,
};

/* A message that ends up in a text column or a log line. */
static int
text_ok(const char *s)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return n > 0 && utf8_ok((const unsigned char *)s, n);
}

/*
 * raw must be one valid JSON object that jsonb takes, whose known fields are
 * exactly rec->f. A record PostgreSQL cannot hold says why in rec->error;
 * its raw may then be cut short, and goes to a text column of
 * vozagent.rejects: it must still be UTF-8 without NUL.
 */
static void
check_raw(const struct record *rec, size_t max_record)
{
	struct reparse r;
	yajl_handle h;
	yajl_status st;

	CHECK(rec->raw != NULL && rec->raw_len > 0, "record #%u has no raw text", rec->index);
	CHECK(rec->raw_len <= max_record, "record #%u: raw is %zu bytes, cap %zu", rec->index,
	    rec->raw_len, max_record);
	CHECK(utf8_ok((const unsigned char *)rec->raw, rec->raw_len),
	    "record #%u: raw is not UTF-8 or holds a NUL", rec->index);
	if (rec->error != NULL) {
		CHECK(text_ok(rec->error), "record #%u: bad record error '%s'", rec->index,
		    rec->error);
		return;
	}

	memset(&r, 0, sizeof r);
	r.key = -1;
	h = yajl_alloc(&reparse_callbacks, NULL, &r);
	if (h == NULL)
		abort();
	st = yajl_parse(h, (const unsigned char *)rec->raw, rec->raw_len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	CHECK(st == yajl_status_ok, "record #%u: raw is not valid JSON: %.*s", rec->index,
	    (int)(rec->raw_len > 200 ? 200 : rec->raw_len), rec->raw);
	yajl_free(h);
	CHECK(r.top_is_map, "record #%u: raw is not a JSON object", rec->index);
	/* PostgreSQL jsonb refuses \u0000 and lone surrogates */
	CHECK(!r.bad, "record #%u: a string in raw decodes to a NUL or invalid UTF-8",
	    rec->index);
	CHECK(lax_numbers || r.bad_number[0] == '\0',
	    "record #%u: raw holds the number %s, which jsonb refuses", rec->index,
	    r.bad_number);

	for (int f = 0; f < FIELD_COUNT; f++) {
		const struct field_value *v = &rec->f[f];
		const struct expect *e = &r.e[f];
		int has_text = v->type == JSON_STRING || v->type == JSON_NUMBER ||
		    v->type == JSON_BOOL;

		CHECK(v->type == e->type, "record #%u: %s is type %d, raw says %d", rec->index,
		    parse_field_name(f), (int)v->type, (int)e->type);
		if (!has_text) {
			CHECK(v->text == NULL && v->len == 0, "record #%u: %s of type %d has text",
			    rec->index, parse_field_name(f), (int)v->type);
			continue;
		}
		CHECK(v->text != NULL, "record #%u: %s has no text", rec->index,
		    parse_field_name(f));
		CHECK(v->len == e->len && memcmp(v->text, e->text, e->len) == 0,
		    "record #%u: %s is '%.*s', raw says '%.*s'", rec->index, parse_field_name(f),
		    (int)(v->len > 100 ? 100 : v->len), v->text,
		    (int)(e->len > 100 ? 100 : e->len), e->text);
		if (v->type == JSON_STRING)
			CHECK(utf8_ok((const unsigned char *)v->text, v->len),
			    "record #%u: %s is not UTF-8 or holds a NUL", rec->index,
			    parse_field_name(f));
		if (v->type == JSON_BOOL)
			CHECK((v->len == 4 && memcmp(v->text, "true", 4) == 0) ||
			    (v->len == 5 && memcmp(v->text, "false", 5) == 0),
			    "record #%u: boolean %s is '%.*s'", rec->index, parse_field_name(f),
			    (int)v->len, v->text);
	}
	for (int f = 0; f < FIELD_COUNT; f++)
		free(r.e[f].text);
}

/* ---- COPY text ---- */

/*
 * Undoes copy_field's escaping of one field. Returns 0 for \N (NULL), else 1
 * with the value in o. Any escape copy_field never writes is a bug.
 */
static int
copy_unescape(const char *s, size_t n, struct out *o)
{
	o->len = 0;
	if (n == 2 && s[0] == '\\' && s[1] == 'N')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\\') {
			CHECK(i + 1 < n, "COPY field ends in a lone backslash");
			switch (s[++i]) {
			case '\\': c = '\\'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			default:
				fuzz_fail(__FILE__, __LINE__, "COPY field has escape \\%c", s[i]);
			}
		} else {
			CHECK(c != '\n' && c != '\r', "COPY field holds a raw line break");
		}
		out_add(o, &c, 1);
	}
	return 1;
}

/* Splits one COPY line (without its '\n') into its fields; returns how many. */
static size_t
copy_split(const char *line, size_t n, const char **start, size_t *len, size_t max)
{
	size_t nf = 0, from = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i == n || line[i] == '\t') {
			if (nf < max) {
				start[nf] = line + from;
				len[nf] = i - from;
			}
			nf++;
			from = i + 1;
		}
	}
	return nf;
}

/* Every line of a batch: 13 fields, UTF-8, no NUL, ends in '\n'. Returns lines. */
static size_t
check_batch(const char *text, size_t len)
{
	size_t lines = 0, from = 0;
	const char *start[COPY_FIELDS];
	size_t flen[COPY_FIELDS];

	if (len == 0)
		return 0;
	CHECK(text != NULL, "COPY text of %zu bytes is NULL", len);
	CHECK(memchr(text, '\0', len) == NULL, "COPY text holds a NUL byte");
	CHECK(utf8_ok((const unsigned char *)text, len), "COPY text is not valid UTF-8");
	CHECK(text[len - 1] == '\n', "COPY text does not end with a line break");
	for (size_t i = 0; i < len; i++) {
		if (text[i] != '\n')
			continue;
		size_t nf = copy_split(text + from, i - from, start, flen, COPY_FIELDS);
		CHECK(nf == COPY_FIELDS, "COPY line %zu has %zu fields, not %d", lines + 1, nf,
		    COPY_FIELDS);
		/* "\." alone ends COPY data early */
		CHECK(!(i - from == 2 && text[from] == '\\' && text[from + 1] == '.'),
		    "COPY line %zu is the end-of-data marker", lines + 1);
		lines++;
		from = i + 1;
	}
	return lines;
}

/* The line rows_add just appended says what the record says. */
static void
check_line(const struct rows *rows, size_t from, const struct record *rec)
{
	size_t len, n;
	const char *text = rows_copy_data(rows, &len);
	const char *start[COPY_FIELDS];
	size_t flen[COPY_FIELDS];
	struct out v = { 0 };
	char seq[24];
	int64_t ts;

	CHECK(len > from && text[len - 1] == '\n', "rows_add added no complete line");
	CHECK(memchr(text + from, '\n', len - from - 1) == NULL,
	    "rows_add added more than one line");
	n = copy_split(text + from, len - from - 1, start, flen, COPY_FIELDS);
	CHECK(n == COPY_FIELDS, "record #%u: COPY line has %zu fields, not %d", rec->index, n,
	    COPY_FIELDS);

	snprintf(seq, sizeof seq, "%u", rec->index);
	CHECK(copy_unescape(start[0], flen[0], &v) && v.len == strlen(seq) &&
	    memcmp(v.data, seq, v.len) == 0, "record #%u: wrong sequence field", rec->index);

	for (int f = 0; f < FIELD_COUNT; f++) {
		const struct field_value *fv = &rec->f[f];
		int notnull = copy_unescape(start[1 + f], flen[1 + f], &v);

		if (fv->type == JSON_ABSENT || fv->type == JSON_NULL) {
			CHECK(!notnull, "record #%u: %s is absent/null but the column is not NULL",
			    rec->index, parse_field_name(f));
			continue;
		}
		switch (f) {
		case FIELD_DURATION_SECONDS:
			if (notnull)
				CHECK(fv->type == JSON_NUMBER && v.len == fv->len &&
				    memcmp(v.data, fv->text, v.len) == 0 &&
				    pg_numeric_ok(v.data, v.len),
				    "record #%u: duration column is not the value or not numeric",
				    rec->index);
			break;
		case FIELD_CALL_STARTED_AT:
		case FIELD_CALL_ENDED_AT:
			CHECK(notnull == (fv->type == JSON_STRING &&
			    rows_parse_timestamp(fv->text, fv->len, &ts) == 0),
			    "record #%u: %s typed wrongly", rec->index, parse_field_name(f));
			if (notnull)
				CHECK(v.len == fv->len && memcmp(v.data, fv->text, v.len) == 0,
				    "record #%u: %s column differs from the value", rec->index,
				    parse_field_name(f));
			break;
		case FIELD_APPOINTMENT_BOOKED:
			CHECK(notnull == (fv->type == JSON_BOOL),
			    "record #%u: appointment_booked typed wrongly", rec->index);
			if (notnull)
				CHECK(v.len == 1 && v.data[0] == fv->text[0],
				    "record #%u: appointment_booked is '%.*s'", rec->index,
				    (int)v.len, v.data);
			break;
		default:
			CHECK(notnull == (fv->type == JSON_STRING), "record #%u: %s typed wrongly",
			    rec->index, parse_field_name(f));
			if (notnull)
				CHECK(v.len == fv->len && memcmp(v.data, fv->text, v.len) == 0,
				    "record #%u: %s column differs from the value", rec->index,
				    parse_field_name(f));
		}
	}
	CHECK(copy_unescape(start[COPY_FIELDS - 1], flen[COPY_FIELDS - 1], &v) &&
	    v.len == rec->raw_len && memcmp(v.data, rec->raw, v.len) == 0,
	    "record #%u: raw column differs from raw", rec->index);
	out_free(&v);
}

/* ---- one run over the input ---- */

struct run {
	size_t max_record;
	int flush_when_full;       /* else stop the parse, as sync.c does */
	struct rows *rows;
	unsigned seen;             /* record callbacks */
	int stopped;               /* the callback has answered -1 */
	unsigned added, rejected;
	struct out copy;           /* the COPY text of every batch, in order */
	struct out log;            /* one line per record: what rows_add answered */
};

/* The batch is done: check it as a whole and keep its text. */
static void
run_flush(struct run *r)
{
	size_t len;
	const char *text = rows_copy_data(r->rows, &len);
	size_t n = rows_count(r->rows);

	CHECK(check_batch(text, len) == n, "batch holds %zu lines for %zu rows",
	    check_batch(text, len), n);
	for (size_t i = 0; i < n; i++) {
		const char *id = rows_id(r->rows, i);
		CHECK(id != NULL && *id != '\0' && utf8_ok((const unsigned char *)id, strlen(id)),
		    "row %zu has a bad id", i);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(rows_id(r->rows, j), id) != 0,
			    "rows %zu and %zu share id %s", j, i, id);
	}
	out_add(&r->copy, text, len);
	for (size_t i = 0; i < rows_rejects(r->rows); i++) {
		const char *reason, *raw, *rid;
		rows_reject_at(r->rows, i, &reason, &raw, &rid);
		CHECK(lax_reasons || text_ok(reason), "reject %zu: reason is not clean UTF-8", i);
		CHECK(utf8_ok((const unsigned char *)raw, strlen(raw)),
		    "reject %zu: raw is not UTF-8", i);
		out_add(&r->log, "reject ", 7);
		out_add(&r->log, reason, strlen(reason) + 1);
		out_add(&r->log, raw, strlen(raw) + 1);
	}
	rows_reset(r->rows);
	rows_copy_data(r->rows, &len);
	CHECK(rows_count(r->rows) == 0 && rows_rejects(r->rows) == 0 && len == 0,
	    "rows_reset left rows behind");
}

/* One row went in: its facts must match the record. */
static void
check_facts(const struct rows *rows, size_t i, const struct record *rec)
{
	const struct field_value *id = &rec->f[FIELD_ID];
	const struct field_value *st = &rec->f[FIELD_CALL_STARTED_AT];
	const struct field_value *status = &rec->f[FIELD_CALL_STATUS];
	int64_t ts, want = ROWS_NO_TIME;
	char stamp[40];

	CHECK(strlen(rows_id(rows, i)) == id->len && memcmp(rows_id(rows, i), id->text,
	    id->len) == 0, "record #%u: rows_id differs from the id", rec->index);
	if (st->type == JSON_STRING && rows_parse_timestamp(st->text, st->len, &ts) == 0)
		want = ts;
	CHECK(rows_started_at(rows, i) == want, "record #%u: wrong started_at", rec->index);
	if (want != ROWS_NO_TIME)
		rows_format_timestamp(want, stamp, sizeof stamp); /* under ASan/UBSan */
	CHECK(rows_in_progress(rows, i) == (status->type == JSON_STRING && status->len == 11 &&
	    memcmp(status->text, "in-progress", 11) == 0),
	    "record #%u: wrong in_progress", rec->index);
}

static int
cb_record(void *arg, const struct record *rec)
{
	struct run *r = *(struct run **)arg;
	size_t before_len, after_len, before_n, before_rejects;
	unsigned before_rej;
	int rc;
	char line[64];

	CHECK(!r->stopped, "record callback called after it answered -1");
	CHECK(rec->index == r->seen, "record index %u, expected %u", rec->index, r->seen);
	r->seen++;
	check_raw(rec, r->max_record);

	for (int attempt = 0;; attempt++) {
		rows_copy_data(r->rows, &before_len);
		before_n = rows_count(r->rows);
		before_rej = rows_rejected(r->rows);
		before_rejects = rows_rejects(r->rows);
		rc = rows_add(r->rows, rec);
		rows_copy_data(r->rows, &after_len);
		if (rc == 0) {
			CHECK(rec->error == NULL, "record #%u went into COPY despite: %s",
			    rec->index, rec->error);
			CHECK(rows_count(r->rows) == before_n + 1, "rows_add 0 but no row counted");
			check_line(r->rows, before_len, rec);
			check_facts(r->rows, before_n, rec);
			r->added++;
			break;
		}
		CHECK(rows_count(r->rows) == before_n && after_len == before_len,
		    "rows_add answered %d and still changed the batch", rc);
		if (rc == 1) {
			const char *why = rows_reject_reason(r->rows), *reason, *raw, *rid;
			CHECK(rows_rejected(r->rows) == before_rej + 1, "a reject was not counted");
			CHECK(rows_rejects(r->rows) == before_rejects + 1, "a reject was not kept");
			CHECK(why != NULL && *why != '\0', "a reject without a reason");
			CHECK(rec->f[FIELD_ID].type != JSON_STRING || rec->f[FIELD_ID].len == 0 ||
			    rec->error != NULL || before_n > 0,
			    "an empty batch refused a call with a string id as duplicate");
			rows_reject_at(r->rows, before_rejects, &reason, &raw, &rid);
			CHECK(strcmp(reason, why) == 0, "kept reason is not rows_reject_reason");
			CHECK(strlen(raw) == rec->raw_len &&
			    memcmp(raw, rec->raw, rec->raw_len) == 0,
			    "the kept raw of record #%u is not its raw", rec->index);
			/* reason goes to a text column of vozagent.rejects */
			CHECK(lax_reasons || text_ok(why),
			    "record #%u: reject reason is not clean UTF-8: %s", rec->index, why);
			r->rejected++;
			break;
		}
		CHECK(rc == -1, "rows_add answered %d", rc);
		CHECK(rows_rejects(r->rows) == before_rejects &&
		    rows_rejected(r->rows) == before_rej,
		    "rows_add answered -1 and still kept a reject");
		/* full: sync.c gives up on the page; rows.h allows flushing and trying again */
		if (!r->flush_when_full || attempt > 0 || (before_n == 0 && before_rejects == 0)) {
			r->stopped = 1;
			break;
		}
		run_flush(r);
	}
	snprintf(line, sizeof line, "%u:%d\n", rec->index, rc);
	out_add(&r->log, line, strlen(line));
	return r->stopped ? -1 : 0;
}

struct result {
	int ok;
	unsigned records;
	char err[PARSE_ERR_MAX];
};

/* The message after a failure: one printable line that fits parse's buffer. */
static void
check_errmsg(const char *msg)
{
	size_t n;

	CHECK(msg != NULL, "parse_errmsg is NULL");
	n = strnlen(msg, PARSE_ERR_MAX);
	CHECK(n < PARSE_ERR_MAX, "parse_errmsg is not terminated within its buffer");
	CHECK(n > 0, "parse failed without a message");
	for (size_t i = 0; i < n; i++)
		CHECK((unsigned char)msg[i] >= 0x20 && msg[i] != 0x7f,
		    "parse_errmsg holds control character 0x%02x: %s", (unsigned char)msg[i], msg);
	CHECK(utf8_ok((const unsigned char *)msg, n), "parse_errmsg is not UTF-8: %s", msg);
	/* every allocation here is a few MiB at most: this is a cap that says the wrong thing */
	CHECK(lax_oom || strstr(msg, "out of memory") == NULL, "parse_errmsg: %s", msg);
}

static void
run_parse(struct parse *p, struct run *r, const uint8_t *data, size_t size, size_t chunk,
    struct result *res)
{
	int failed = 0;
	size_t off = 0;

	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (parse_feed(p, data + off, n) < 0) {
			failed = 1;
			break;
		}
		off += n;
	}
	if (failed) {
		unsigned seen = r->seen;
		/* a failed parse stays failed, and delivers nothing more */
		CHECK(parse_feed(p, "[", 1) < 0, "parse_feed works again after failing");
		CHECK(parse_finish(p) < 0, "parse_finish succeeds after parse_feed failed");
		CHECK(r->seen == seen, "records delivered after the parse failed");
	} else if (parse_finish(p) < 0) {
		failed = 1;
	}
	res->ok = !failed;
	res->records = parse_records(p);
	CHECK(res->records == r->seen, "parse_records says %u, the callback saw %u", res->records,
	    r->seen);
	if (failed) {
		check_errmsg(parse_errmsg(p));
		snprintf(res->err, sizeof res->err, "%s", parse_errmsg(p));
	} else {
		CHECK(!r->stopped, "the receiver stopped the parse but it succeeded");
		CHECK(size > 0, "an empty body parsed");
		res->err[0] = '\0';
	}
	if (r->stopped)
		CHECK(failed, "the receiver stopped the parse but it went on");
	run_flush(r);
}

static void
run_init(struct run *r, size_t max_record, size_t batch_cap, int flush_when_full)
{
	memset(r, 0, sizeof *r);
	r->max_record = max_record;
	r->flush_when_full = flush_when_full;
	r->rows = rows_new(batch_cap);
	if (r->rows == NULL)
		abort();
}

static void
run_free(struct run *r)
{
	rows_free(r->rows);
	out_free(&r->copy);
	out_free(&r->log);
}

/*
 * FUZZ_PARSE_LAX=offsets: ignore the byte offset of yajl's syntax errors when
 * comparing the two runs, to fuzz past that known difference (README.md)
 * while it is open. Off by default: the offset must not depend on where the
 * body was cut.
 */
static void
err_mask_offset(char *msg)
{
	static const char pre[] = "invalid JSON at byte ";
	char *p = strstr(msg, pre), *q;

	if (p == NULL)
		return;
	p += sizeof pre - 1;
	for (q = p; *q >= '0' && *q <= '9'; q++)
		;
	if (q > p) {
		*p = 'N';
		memmove(p + 1, q, strlen(q) + 1);
	}
}

static int
out_eq(const struct out *a, const struct out *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* 1 = byte by byte, as a slow network may deliver it */
	static const size_t chunks[] = { 1, 2, 3, 7, 16, 64, 500, 4096 };
	/*
	 * sync.c caps a call at max_body_size (64 MiB by default); these smaller
	 * caps are the ones inputs of -max_len can reach. 256 B
	 * is just past what nesting beyond yajl's depth limit takes, so a value
	 * that sanitizing triples after it can overrun the cap.
	 */
	static const size_t max_records[] = { 64 << 10, 1 << 20, 1 << 10, 256 };
	static const size_t batch_caps[] = { 4 << 10, 64 << 10, 512, 1 << 20 };
	/* a call cut off inside a nested value, with a string to sanitize */
	static const char dirty[] = "[{\"id\":\"x\",\"call_status\":[{\"a\\u0000\":\"\\udc00";
	uint8_t first = size > 0 ? data[0] : 0, last = size > 0 ? data[size - 1] : 0;
	size_t chunk = chunks[first & 7];
	size_t max_record = max_records[last & 3];
	size_t batch_cap = batch_caps[(last >> 2) & 3];
	int flush = (last >> 4) & 1;
	/* the request's limit: 0 = none, as in the pages the corpus holds */
	static const unsigned limits[] = { 0, 0, 0, 2 };
	unsigned limit = limits[(last >> 5) & 3];
	struct run a, b, junk, *cur;
	struct result ra, rb;
	struct parse *p;

	run_init(&a, max_record, batch_cap, flush);
	run_init(&b, max_record, batch_cap, flush);
	run_init(&junk, max_record, batch_cap, flush);
	p = parse_new(max_record, cb_record, &cur);
	if (p == NULL)
		abort();
	parse_set_max_records(p, limit);
	cur = &a;
	run_parse(p, &a, data, size, chunk, &ra);

	/* the handle is reused as sync.c reuses it: reset after a page, and after a broken one */
	cur = &junk;
	parse_reset(p);
	CHECK(parse_feed(p, dirty, sizeof dirty - 1) == 0, "the dirty prefix failed: %s",
	    parse_errmsg(p));
	CHECK(junk.seen == 0, "a record came out of a cut-off call");
	parse_reset(p);
	cur = &b;
	run_parse(p, &b, data, size, size > 0 ? size : 1, &rb);

	if (lax_offsets) {
		err_mask_offset(ra.err);
		err_mask_offset(rb.err);
	}
	CHECK(ra.ok == rb.ok, "chunks of %zu: %s; one piece after reset: %s", chunk,
	    ra.ok ? "ok" : ra.err, rb.ok ? "ok" : rb.err);
	CHECK(strcmp(ra.err, rb.err) == 0, "chunks of %zu: '%s'; one piece after reset: '%s'",
	    chunk, ra.err, rb.err);
	CHECK(ra.records == rb.records, "chunks of %zu: %u records; one piece after reset: %u",
	    chunk, ra.records, rb.records);
	CHECK(limit == 0 || ra.records <= limit, "%u records delivered for limit=%u", ra.records,
	    limit);
	CHECK(out_eq(&a.log, &b.log), "chunks of %zu and one piece typed records differently",
	    chunk);
	CHECK(out_eq(&a.copy, &b.copy), "chunks of %zu and one piece made different COPY text",
	    chunk);

	parse_free(p);
	run_free(&a);
	run_free(&b);
	run_free(&junk);
	return 0;
}
