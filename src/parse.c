/* parse: streams a page body (a JSON array of call objects) into records. */
#include "parse.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_common.h>
#include <yajl/yajl_parse.h>

#include "buf.h"
#include "utf8.h"

static const char *const field_names[FIELD_COUNT] = {
	"id", "contact_id", "assistant_id", "call_type", "call_status", "duration_seconds",
	"call_started_at", "call_ended_at", "appointment_booked", "lead_qualification",
	"call_intent",
};

static const unsigned char field_lens[FIELD_COUNT] = { 2, 10, 12, 9, 11, 16, 15, 13, 18, 18, 11 };

/* Depth of open containers: 1 = inside the page array, 2 = inside a call. */
enum { DEPTH_PAGE = 1, DEPTH_CALL = 2 };

/*
 * Where raw's writer stands at each depth, as yajl_gen tracks it, so raw is
 * byte for byte what yajl_gen wrote (and stops where it stopped).
 */
enum gen_state { GEN_START, GEN_MAP_START, GEN_MAP_KEY, GEN_MAP_VAL, GEN_ARRAY_START,
	GEN_IN_ARRAY, GEN_COMPLETE };

struct parse {
	yajl_handle h;
	struct buf raw;           /* the current call re-encoded as compact JSON */
	unsigned char gstate[YAJL_MAX_DEPTH];
	int gdepth;
	parse_record_cb cb;
	void *arg;
	size_t max_record;
	unsigned max_records;     /* calls a page may hold (the request's limit), 0 = any */
	int depth;
	int closed;               /* the page array has ended */
	int failed;
	unsigned count;
	size_t fed;               /* bytes fed before the current chunk */
	int cur_field;            /* known key just read at DEPTH_CALL, or -1 */
	struct { enum json_type type; size_t off, len; } fv[FIELD_COUNT];
	struct buf vals;          /* texts of the known fields of the current call */
	struct buf scratch;       /* a string with replaced characters */
	struct {
		char pend[12];        /* an escape not yet decided on: \uXXXX[\uXXXX] */
		size_t npend;
	} esc;
	unsigned replaced;
	char rec_error[160];      /* why the current call cannot be stored, or "" */
	int gen_stopped;          /* too deep to re-encode: raw keeps what came before */
	char err[256];
};


int
parse_number_ok(const char *s, size_t len)
{
	size_t i = 0;
	long ints = 0, fracs = 0, exp = 0;
	int neg_exp = 0, in_frac = 0;

	for (; i < len && s[i] != 'e' && s[i] != 'E'; i++) {
		if (s[i] == '.')
			in_frac = 1;
		else if (s[i] >= '0' && s[i] <= '9')
			*(in_frac ? &fracs : &ints) += 1;
	}
	if (i < len) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			neg_exp = s[i++] == '-';
		/* the text is not NUL-terminated: read the exponent's digits by hand */
		for (; i < len; i++) {
			exp = exp * 10 + (s[i] - '0');
			if (exp > 10 * PARSE_NUMERIC_MAX_INT_DIGITS)
				return 0;
		}
		if (neg_exp)
			exp = -exp;
	}
	/* digits before and after the point once the exponent is applied */
	return ints + exp <= PARSE_NUMERIC_MAX_INT_DIGITS &&
	    fracs - exp <= PARSE_NUMERIC_MAX_FRAC_DIGITS;
}

const char *
parse_field_name(enum field_id f)
{
	return f < FIELD_COUNT ? field_names[f] : "?";
}

static int
parse_fail(struct parse *p, const char *fmt, ...)
{
	va_list ap;

	if (p->failed)
		return 0;
	p->failed = 1;
	va_start(ap, fmt);
	vsnprintf(p->err, sizeof p->err, fmt, ap);
	va_end(ap);
	return 0; /* for yajl: cancel the parse */
}

static size_t
parse_offset(const struct parse *p)
{
	return p->fed + yajl_get_bytes_consumed(p->h);
}

/*
 * Length of the valid UTF-8 character at s (1-4), or 0 when it is invalid or
 * a NUL: PostgreSQL text and jsonb can hold neither.
 */
static size_t
utf8_valid_len(const unsigned char *s, size_t n)
{
	return s[0] == 0 ? 0 : utf8_char_len(s, n);
}

/* 3 when s starts with a UTF-16 surrogate encoded as UTF-8 (ED A0-BF 80-BF), else 1. */
static size_t
utf8_surrogate_len(const unsigned char *s, size_t n)
{
	if (n >= 3 && s[0] == 0xED && s[1] >= 0xA0 && s[1] <= 0xBF && s[2] >= 0x80 && s[2] <= 0xBF)
		return 3;
	return 1;
}

/* Length of the prefix of s that is plain ASCII without NUL, eight bytes at a time. */
static size_t
parse_ascii_prefix(const unsigned char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t v;
		memcpy(&v, s + i, 8);
		/* a byte with its high bit set, or a zero byte */
		if (((v | ((v - ones) & ~v)) & highs) != 0)
			break;
	}
	return i;
}

/*
 * yajl decodes "\u0000" to a NUL byte and a lone "\udc00" to bytes that are
 * not UTF-8. Replace each such byte with U+FFFD so the call still fits in
 * PostgreSQL; the record counts the replacements.
 */
static int
parse_sanitize(struct parse *p, const unsigned char **s, size_t *len)
{
	static const char repl[] = "\xEF\xBF\xBD";
	size_t i = parse_ascii_prefix(*s, *len), out = 0, vl;

	while (i < *len) {
		if ((*s)[i] - 1u < 0x7Fu)
			i++;
		else if ((vl = utf8_valid_len(*s + i, *len - i)) > 0)
			i += vl;
		else
			break;
	}
	if (i == *len)
		return 0;
	if (*len > p->max_record)
		return parse_fail(p, "call #%u of the page is larger than %zu bytes",
		    p->count + 1, p->max_record), -1;
	p->scratch.len = 0;
	if (buf_reserve(&p->scratch, *len * 3) < 0)
		return parse_fail(p, "out of memory"), -1;
	memcpy(p->scratch.data, *s, i);
	out = i;
	while (i < *len) {
		vl = utf8_valid_len(*s + i, *len - i);
		if (vl == 0) {
			memcpy(p->scratch.data + out, repl, 3);
			out += 3;
			/* a surrogate yajl encoded as three bytes is one character */
			i += utf8_surrogate_len(*s + i, *len - i);
			p->replaced++;
		} else {
			memcpy(p->scratch.data + out, *s + i, vl);
			out += vl;
			i += vl;
		}
	}
	*s = (const unsigned char *)p->scratch.data;
	*len = out;
	return 0;
}

/* Do raw and the kept values of the call, with more bytes, stay within the record cap? */
static int
parse_fits(struct parse *p, size_t more)
{
	size_t len = p->raw.len;

	return len <= p->max_record && p->vals.len <= p->max_record - len &&
	    more <= p->max_record - len - p->vals.len;
}

static int
parse_check_size(struct parse *p)
{
	if (!parse_fits(p, 0))
		return parse_fail(p, "call #%u of the page is larger than %zu bytes (at byte %zu)",
		    p->count + 1, p->max_record, parse_offset(p));
	return 1;
}

static void
parse_record_error(struct parse *p, const char *fmt, ...)
{
	va_list ap;

	if (p->rec_error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(p->rec_error, sizeof p->rec_error, fmt, ap);
	va_end(ap);
}

/*
 * raw's writer. It writes what yajl_gen wrote (compact, the same escapes),
 * without a library call and a buffer check per byte run.
 */

/* The separator before a value or key, as yajl_gen puts it. */
static size_t
gen_sep(const struct parse *p, char *out)
{
	switch (p->gstate[p->gdepth]) {
	case GEN_MAP_KEY:
	case GEN_IN_ARRAY:
		*out = ',';
		return 1;
	case GEN_MAP_VAL:
		*out = ':';
		return 1;
	default:
		return 0;
	}
}

/* A value was written at the current depth: what comes next there. */
static void
gen_appended(struct parse *p)
{
	unsigned char *st = &p->gstate[p->gdepth];

	switch (*st) {
	case GEN_START:
		*st = GEN_COMPLETE;
		break;
	case GEN_MAP_START:
	case GEN_MAP_KEY:
		*st = GEN_MAP_VAL;
		break;
	case GEN_ARRAY_START:
		*st = GEN_IN_ARRAY;
		break;
	case GEN_MAP_VAL:
		*st = GEN_MAP_KEY;
		break;
	default:
		break;
	}
}

/* Appends n bytes to raw, n having been reserved. */
static void
gen_put(struct parse *p, const void *s, size_t n)
{
	memcpy(p->raw.data + p->raw.len, s, n);
	p->raw.len += n;
}

/* Reserves room in raw; past its cap the call is over the record cap anyway. */
static int
gen_reserve(struct parse *p, size_t n)
{
	if (n > p->max_record + 1 - p->raw.len)
		return parse_fail(p, "call #%u of the page is larger than %zu bytes (at byte %zu)",
		    p->count + 1, p->max_record, parse_offset(p));
	/* most tokens fit in what raw already holds: no call */
	if (n > p->raw.cap - p->raw.len && buf_reserve(&p->raw, n) < 0)
		return parse_fail(p, "out of memory");
	return 1;
}

/* A scalar written as it is (number, true, false, null). */
static int
gen_atom(struct parse *p, const char *s, size_t len)
{
	char sep;
	size_t ns;

	if (p->gen_stopped)
		return 1;
	ns = gen_sep(p, &sep);
	if (!gen_reserve(p, ns + len))
		return 0;
	gen_put(p, &sep, ns);
	gen_put(p, s, len);
	gen_appended(p);
	return parse_check_size(p);
}

/* What a byte of a string becomes in JSON: 0 = itself, else the escape's second letter ('u' = \u00XX). */
static const char gen_escape[256] = {
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
	['"'] = '"', ['\\'] = '\\',
};

/* Length of the prefix of s that JSON takes as it is, eight bytes at a time, then one by one. */
static size_t
gen_plain_run(const unsigned char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t v, q, bs;
		memcpy(&v, s + i, 8);
		q = v ^ (ones * '"');
		bs = v ^ (ones * '\\');
		/* a control character, a quote or a backslash: look closer */
		if ((((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & highs)
			break;
	}
	while (i < n && gen_escape[s[i]] == 0)
		i++;
	return i;
}

static int
gen_string(struct parse *p, const unsigned char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	char sep;
	size_t ns, i = 0, o;

	if (p->gen_stopped)
		return 1;
	ns = gen_sep(p, &sep);
	if (!gen_reserve(p, ns + 2 + len))
		return 0;
	o = p->raw.len;
	if (ns > 0)
		p->raw.data[o++] = sep;
	p->raw.data[o++] = '"';
	while (i < len) {
		size_t j = i + gen_plain_run(s + i, len - i);
		char e, *d;

		memcpy(p->raw.data + o, s + i, j - i);
		o += j - i;
		if (j == len)
			break;
		/* an escape grows the text: room for it, the rest and the quote, within the cap */
		p->raw.len = o;
		if (o > p->max_record)
			return parse_check_size(p);
		if (buf_reserve(&p->raw, 6 + (len - j - 1) + 1) < 0)
			return parse_fail(p, "out of memory");
		d = p->raw.data + o;
		e = gen_escape[s[j]];
		*d++ = '\\';
		*d++ = e;
		if (e == 'u') {
			*d++ = '0';
			*d++ = '0';
			*d++ = hex[s[j] >> 4];
			*d++ = hex[s[j] & 15];
		}
		o = (size_t)(d - p->raw.data);
		i = j + 1;
	}
	p->raw.data[o++] = '"';
	p->raw.len = o;
	gen_appended(p);
	return parse_check_size(p);
}

/* Opens an object ('{') or an array ('['); too deep stops raw where yajl_gen stopped it. */
static int
gen_open(struct parse *p, char c)
{
	char sep;
	size_t ns;

	if (p->gen_stopped)
		return 1;
	ns = gen_sep(p, &sep);
	/* no cap check yet: past the depth limit yajl_gen kept the separator unchecked */
	if (buf_reserve(&p->raw, ns + 1) < 0)
		return parse_fail(p, "out of memory");
	gen_put(p, &sep, ns);
	if (++p->gdepth >= YAJL_MAX_DEPTH) {
		/* the call is rejected, the page goes on: keep the part read so far */
		parse_record_error(p, "it nests deeper than %d levels", YAJL_MAX_DEPTH - 2);
		p->gen_stopped = 1;
		return 1;
	}
	p->gstate[p->gdepth] = c == '{' ? GEN_MAP_START : GEN_ARRAY_START;
	gen_put(p, &c, 1);
	return parse_check_size(p);
}

static int
gen_close(struct parse *p, char c)
{
	if (p->gen_stopped)
		return 1;
	if (!gen_reserve(p, 1))
		return 0;
	p->gdepth--;
	gen_appended(p);
	gen_put(p, &c, 1);
	return parse_check_size(p);
}

static const char *
json_type_name(enum json_type t)
{
	static const char *names[] = { "nothing", "null", "a boolean", "a number", "a string",
		"an object", "an array" };
	return names[t];
}

/* A value outside any call: the body is not an array of objects. */
static int
parse_misplaced(struct parse *p, enum json_type t)
{
	if (p->depth == 0)
		return parse_fail(p, "the body is %s, not a JSON array of calls", json_type_name(t));
	return parse_fail(p, "element #%u of the array is %s, not a call object (at byte %zu)",
	    p->count + 1, json_type_name(t), parse_offset(p));
}

/* Remember a scalar that sits directly in the call under a known key. */
static int
parse_keep(struct parse *p, enum json_type t, const char *s, size_t len)
{
	int f = p->cur_field;

	if (p->depth != DEPTH_CALL || f < 0)
		return 1;
	p->cur_field = -1;
	/*
	 * The value is stored before the field may point at it: a field never
	 * names bytes that are not there, whatever raw holds (it stops growing
	 * past the nesting limit) and however much sanitizing grew the value.
	 */
	if (!parse_fits(p, len))
		return parse_fail(p, "call #%u of the page is larger than %zu bytes (at byte %zu)",
		    p->count + 1, p->max_record, parse_offset(p));
	if (buf_append(&p->vals, s, len) < 0)
		return parse_fail(p, "out of memory");
	p->fv[f].type = t;
	p->fv[f].off = p->vals.len - len;
	p->fv[f].len = len;
	return 1;
}

static int
cb_null(void *ctx)
{
	struct parse *p = ctx;
	if (p->depth < DEPTH_CALL)
		return parse_misplaced(p, JSON_NULL);
	if (!parse_keep(p, JSON_NULL, NULL, 0))
		return 0;
	return gen_atom(p, "null", 4);
}

static int
cb_boolean(void *ctx, int v)
{
	struct parse *p = ctx;
	if (p->depth < DEPTH_CALL)
		return parse_misplaced(p, JSON_BOOL);
	if (!parse_keep(p, JSON_BOOL, v ? "true" : "false", v ? 4 : 5))
		return 0;
	return gen_atom(p, v ? "true" : "false", v ? 4 : 5);
}

static int
cb_number(void *ctx, const char *s, size_t len)
{
	struct parse *p = ctx;
	if (p->depth < DEPTH_CALL)
		return parse_misplaced(p, JSON_NUMBER);
	if (!parse_keep(p, JSON_NUMBER, s, len))
		return 0;
	if (!parse_number_ok(s, len))
		parse_record_error(p, "its number %.*s%s is beyond what PostgreSQL's numeric holds",
		    len > 40 ? 40 : (int)len, s, len > 40 ? "..." : "");
	/* the number as written: no precision is lost on the way to numeric */
	return gen_atom(p, s, len);
}

static int
cb_string(void *ctx, const unsigned char *s, size_t len)
{
	struct parse *p = ctx;
	if (p->depth < DEPTH_CALL)
		return parse_misplaced(p, JSON_STRING);
	if (parse_sanitize(p, &s, &len) < 0)
		return 0;
	if (!parse_keep(p, JSON_STRING, (const char *)s, len))
		return 0;
	return gen_string(p, s, len);
}

/* The known field a key names, or -1; by length first, as most keys differ in it. */
static int
parse_field_of(const char *s, size_t len)
{
	if (len < 2 || len > 18)
		return -1;
	for (int f = 0; f < FIELD_COUNT; f++)
		if (field_lens[f] == len && s[len - 1] == field_names[f][len - 1] &&
		    memcmp(field_names[f], s, len) == 0)
			return f;
	return -1;
}

static int
cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
	struct parse *p = ctx;

	p->cur_field = -1;
	if (p->depth == DEPTH_CALL)
		p->cur_field = parse_field_of((const char *)s, len);
	if (parse_sanitize(p, &s, &len) < 0)
		return 0;
	return gen_string(p, s, len);
}

static void
parse_record_begin(struct parse *p)
{
	p->raw.len = 0;
	p->gdepth = 0;
	p->gstate[0] = GEN_START;
	p->vals.len = 0;
	p->replaced = 0;
	p->rec_error[0] = '\0';
	p->gen_stopped = 0;
	p->cur_field = -1;
	memset(p->fv, 0, sizeof p->fv);
}

static int
parse_record_end(struct parse *p)
{
	struct record rec;

	memset(&rec, 0, sizeof rec);
	rec.index = p->count;
	/* raw is still NULL when nothing was written (a call too deep from its first byte) */
	rec.raw = p->raw.data != NULL ? p->raw.data : "";
	rec.raw_len = p->raw.len;
	rec.replaced_chars = p->replaced;
	rec.error = p->rec_error[0] != '\0' ? p->rec_error : NULL;
	for (int f = 0; f < FIELD_COUNT; f++) {
		rec.f[f].type = p->fv[f].type;
		if (p->fv[f].type == JSON_STRING || p->fv[f].type == JSON_NUMBER ||
		    p->fv[f].type == JSON_BOOL) {
			/* vals is still NULL when every value so far was empty */
			rec.f[f].text = p->vals.data != NULL ? p->vals.data + p->fv[f].off : "";
			rec.f[f].len = p->fv[f].len;
		}
	}
	p->count++;
	if (p->cb(p->arg, &rec) < 0)
		return parse_fail(p, "stopped at call #%u by the receiver", p->count);
	return 1;
}

static int
cb_start_map(void *ctx)
{
	struct parse *p = ctx;

	if (p->depth == 0)
		return parse_fail(p, "the body is a JSON object, not an array of calls");
	if (p->depth == DEPTH_PAGE) {
		/* more calls than asked for: the API misbehaves; stop before the work grows */
		if (p->max_records > 0 && p->count >= p->max_records)
			return parse_fail(p, "the API returned more than %u calls for limit=%u",
			    p->max_records, p->max_records);
		parse_record_begin(p);
	} else if (p->depth == DEPTH_CALL && p->cur_field >= 0) {
		p->fv[p->cur_field].type = JSON_OBJECT;
		p->cur_field = -1;
	}
	p->depth++;
	return gen_open(p, '{');
}

static int
cb_end_map(void *ctx)
{
	struct parse *p = ctx;

	p->depth--;
	if (!gen_close(p, '}'))
		return 0;
	if (p->depth == DEPTH_PAGE)
		return parse_record_end(p);
	p->cur_field = -1;
	return 1;
}

static int
cb_start_array(void *ctx)
{
	struct parse *p = ctx;

	if (p->depth == 0) {
		p->depth = DEPTH_PAGE;
		return 1;
	}
	if (p->depth == DEPTH_PAGE)
		return parse_misplaced(p, JSON_ARRAY);
	if (p->depth == DEPTH_CALL && p->cur_field >= 0) {
		p->fv[p->cur_field].type = JSON_ARRAY;
		p->cur_field = -1;
	}
	p->depth++;
	return gen_open(p, '[');
}

static int
cb_end_array(void *ctx)
{
	struct parse *p = ctx;

	p->depth--;
	if (p->depth == 0) {
		p->closed = 1;
		return 1;
	}
	p->cur_field = -1;
	return gen_close(p, ']');
}

static const yajl_callbacks callbacks = {
	.yajl_null = cb_null,
	.yajl_boolean = cb_boolean,
	.yajl_number = cb_number,
	.yajl_string = cb_string,
	.yajl_start_map = cb_start_map,
	.yajl_map_key = cb_map_key,
	.yajl_end_map = cb_end_map,
	.yajl_start_array = cb_start_array,
	.yajl_end_array = cb_end_array,
};

static int
parse_open(struct parse *p)
{
	p->depth = 0;
	p->closed = 0;
	p->failed = 0;
	p->count = 0;
	p->fed = 0;
	p->cur_field = -1;
	p->err[0] = '\0';
	p->esc.npend = 0;
	p->h = yajl_alloc(&callbacks, NULL, p);
	if (p->h == NULL)
		return -1;
	/*
	 * Invalid UTF-8 in a string must not fail the page (it would fail on
	 * every retry): parse_sanitize replaces it with U+FFFD, as for NUL.
	 */
	yajl_config(p->h, yajl_dont_validate_strings, 1);
	return 0;
}

struct parse *
parse_new(size_t max_record_bytes, parse_record_cb cb, void *arg)
{
	struct parse *p = calloc(1, sizeof *p);

	if (p == NULL)
		return NULL;
	p->cb = cb;
	p->arg = arg;
	p->max_record = max_record_bytes;
	/* one value is at most a record; a replaced string at most three times that */
	buf_init(&p->vals, max_record_bytes + 1);
	buf_init(&p->scratch, 3 * max_record_bytes + 3);
	/* an escape may take raw a few bytes and the string's rest past the cap before it fails */
	buf_init(&p->raw, 2 * max_record_bytes + 16);
	if (parse_open(p) < 0) {
		parse_free(p);
		return NULL;
	}
	return p;
}

void
parse_set_max_records(struct parse *p, unsigned n)
{
	p->max_records = n;
}

/* Turn yajl's own message into one line with the byte offset. */
static void
parse_yajl_error(struct parse *p, const unsigned char *buf, size_t len)
{
	unsigned char *msg = yajl_get_error(p->h, 0, buf, len);
	size_t n = msg != NULL ? strlen((char *)msg) : 0;
	const char *what = msg != NULL ? (char *)msg : "unknown error";

	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		n--;
	/*
	 * yajl's byte count for a syntax error depends on where the chunks were
	 * cut, so name the call instead; at the end of the body the offset is the
	 * body's length.
	 */
	if (buf == NULL)
		parse_fail(p, "invalid JSON at byte %zu (the end): %.*s", p->fed, (int)n, what);
	else if (p->closed)
		parse_fail(p, "unexpected text after the JSON array of %u calls: %.*s", p->count,
		    (int)n, what);
	else if (p->depth == 0)
		parse_fail(p, "the body is not JSON: %.*s", (int)n, what);
	else
		parse_fail(p, "invalid JSON in element #%u of the array: %.*s", p->count + 1,
		    (int)n, what);
	if (msg != NULL)
		yajl_free_error(p->h, msg);
}

/*
 * yajl decodes a high-surrogate escape that no low one follows wrongly:
 * "\ud800" becomes '?', and "\ud800\u0041" one wrong character that eats
 * the 'A'. The filter in front of yajl rewrites such an escape to "\u0000"
 * (same length), which parse_sanitize then turns into U+FFFD like any NUL,
 * and counts. It looks only at backslashes (outside a string one is an
 * error whatever follows it) and hands yajl the input itself between them;
 * an escape cut by the end of a chunk waits in esc.pend for the next one.
 */
static int
hex4(const char *h)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = h[i];
		v = v * 16 + (c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
		    c - 'A' + 10);
	}
	return v;
}

static int
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

enum esc_verdict {
	ESC_MORE,   /* n bytes do not tell yet */
	ESC_PASS,   /* the first *used bytes go to yajl as they are */
	ESC_LONE,   /* the first 6 bytes are a lone high surrogate: rewrite them */
};

/* Decides on the escape at s (s[0] is a backslash) from the n bytes known of it. */
static enum esc_verdict
esc_decide(const char *s, size_t n, size_t *used)
{
	size_t i;
	int v;

	if (n < 2)
		return ESC_MORE;
	if (s[1] != 'u') {
		*used = 2;
		return ESC_PASS;
	}
	/* malformed escapes pass: yajl refuses them */
	for (i = 2; i < 6; i++) {
		if (i >= n)
			return ESC_MORE;
		if (!is_hex(s[i])) {
			*used = i + 1;
			return ESC_PASS;
		}
	}
	v = hex4(s + 2);
	*used = 6;
	if (v < 0xD800 || v > 0xDBFF)
		return ESC_PASS;
	if (n < 7)
		return ESC_MORE;
	if (s[6] != '\\')
		return ESC_LONE;
	if (n < 8)
		return ESC_MORE;
	if (s[7] != 'u')
		return ESC_LONE;
	for (i = 8; i < 12; i++) {
		if (i >= n)
			return ESC_MORE;
		if (!is_hex(s[i])) {
			*used = i + 1;
			return ESC_PASS;
		}
	}
	v = hex4(s + 8);
	if (v >= 0xDC00 && v <= 0xDFFF) {
		*used = 12;
		return ESC_PASS;
	}
	/* the first is lone; the second is decided on afresh */
	return ESC_LONE;
}

static int
parse_yajl(struct parse *p, const unsigned char *buf, size_t len)
{
	yajl_status st;

	if (len == 0)
		return 0;
	st = yajl_parse(p->h, buf, len);
	if (st == yajl_status_error)
		parse_yajl_error(p, buf, len);
	if (p->failed)
		return -1;
	p->fed += len;
	return 0;
}

/* Hands yajl the escape at s, rewritten when it is a lone high surrogate. */
static int
esc_feed(struct parse *p, const char *s, enum esc_verdict v, size_t used)
{
	char lone[6];

	if (v == ESC_PASS)
		return parse_yajl(p, (const unsigned char *)s, used);
	memcpy(lone, s, 2);
	memcpy(lone + 2, "0000", 4);
	return parse_yajl(p, (const unsigned char *)lone, sizeof lone);
}

/* Takes one more byte of an escape cut by a chunk's end, and hands on what is decided. */
static int
esc_pend_byte(struct parse *p, char c)
{
	char *pd = p->esc.pend;
	enum esc_verdict v;
	size_t used, j;

	pd[p->esc.npend++] = c;
	while (p->esc.npend > 0) {
		if (pd[0] != '\\') {
			/* bytes after a decided escape, up to the next backslash */
			for (j = 1; j < p->esc.npend && pd[j] != '\\'; j++)
				;
			if (parse_yajl(p, (const unsigned char *)pd, j) < 0)
				return -1;
			used = j;
		} else if ((v = esc_decide(pd, p->esc.npend, &used)) == ESC_MORE) {
			return 0;
		} else if (esc_feed(p, pd, v, used) < 0) {
			return -1;
		}
		memmove(pd, pd + used, p->esc.npend - used);
		p->esc.npend -= used;
	}
	return 0;
}

int
parse_feed(struct parse *p, const void *buf, size_t len)
{
	const char *in = buf;
	size_t i = 0, run;

	if (p->failed)
		return -1;
	while (p->esc.npend > 0 && i < len)
		if (esc_pend_byte(p, in[i++]) < 0)
			return -1;
	/* in[run..i) is passed on as it is, in one piece up to the next rewrite */
	run = i;
	while (i < len) {
		const char *bs = memchr(in + i, '\\', len - i);
		enum esc_verdict v;
		size_t k, used;

		if (bs == NULL)
			break;
		k = (size_t)(bs - in);
		v = esc_decide(in + k, len - k, &used);
		if (v == ESC_PASS) {
			i = k + used;
			continue;
		}
		if (parse_yajl(p, (const unsigned char *)in + run, k - run) < 0)
			return -1;
		if (v == ESC_MORE) {
			memcpy(p->esc.pend, in + k, len - k);
			p->esc.npend = len - k;
			return 0;
		}
		if (esc_feed(p, in + k, v, used) < 0)
			return -1;
		i = run = k + 6;
	}
	return parse_yajl(p, (const unsigned char *)in + run, len - run);
}

int
parse_finish(struct parse *p)
{
	if (p->failed)
		return -1;
	/* an escape still pending at the end: the body is cut anyway; let yajl say so */
	if (p->esc.npend > 0 && parse_yajl(p, (const unsigned char *)p->esc.pend,
	    p->esc.npend) < 0)
		return -1;
	p->esc.npend = 0;
	if (p->fed == 0)
		return parse_fail(p, "the body is empty, not a JSON array of calls"), -1;
	if (yajl_complete_parse(p->h) == yajl_status_error && !p->failed) {
		if (p->depth > 0)
			parse_fail(p, "the body ended inside the JSON array after %zu bytes "
			    "and %u complete calls (cut off?)", p->fed, p->count);
		else
			parse_yajl_error(p, NULL, 0);
	}
	if (!p->failed && !p->closed)
		parse_fail(p, "the body ended after %zu bytes before the JSON array was closed",
		    p->fed);
	return p->failed ? -1 : 0;
}

void
parse_reset(struct parse *p)
{
	yajl_free(p->h);
	p->h = NULL;
	if (parse_open(p) < 0)
		parse_fail(p, "out of memory");
}

const char *
parse_errmsg(const struct parse *p)
{
	return p->err;
}

unsigned
parse_records(const struct parse *p)
{
	return p->count;
}

void
parse_free(struct parse *p)
{
	if (p == NULL)
		return;
	if (p->h != NULL)
		yajl_free(p->h);
	buf_free(&p->vals);
	buf_free(&p->scratch);
	buf_free(&p->raw);
	free(p);
}
