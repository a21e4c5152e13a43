/* parse: streams a page body (a JSON array of call objects) into records. */
#include "parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "buf.h"
#include "utf8.h"

static const char *const field_names[FIELD_COUNT] = {
	"id", "contact_id", "assistant_id", "call_type", "call_status", "duration_seconds",
	"call_started_at", "call_ended_at", "appointment_booked", "lead_qualification",
	"call_intent",
};

/* Bytes handed to yajl at a time (curl hands over 16 KiB). */
#define PARSE_SLICE 65536

/* Depth of open containers: 1 = inside the page array, 2 = inside a call. */
enum { DEPTH_PAGE = 1, DEPTH_CALL = 2 };

struct parse {
	yajl_handle h;
	yajl_gen g;               /* re-encodes the current call for `raw` */
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
	struct buf filtered;      /* a chunk after the surrogate filter */
	struct {
		int in_str;           /* inside a JSON string */
		char pend[12];        /* an escape not yet decided on: \uXXXX[\uXXXX] */
		int npend;
	} esc;
	unsigned replaced;
	char rec_error[160];      /* why the current call cannot be stored, or "" */
	int gen_stopped;          /* too deep to re-encode: raw keeps what came before */
	char err[256];
};

/* Re-encode into raw, unless the call is already known to be unstorable. */
#define GEN(p, call) ((p)->gen_stopped ? 1 : parse_gen_ok((p), (call)))

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

/*
 * yajl decodes "\u0000" to a NUL byte and a lone "\udc00" to bytes that are
 * not UTF-8. Replace each such byte with U+FFFD so the call still fits in
 * PostgreSQL; the record counts the replacements.
 */
static int
parse_sanitize(struct parse *p, const unsigned char **s, size_t *len)
{
	static const char repl[] = "\xEF\xBF\xBD";
	size_t i = 0, out = 0, vl;

	while (i < *len && (vl = utf8_valid_len(*s + i, *len - i)) > 0)
		i += vl;
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
	const unsigned char *buf;
	size_t len;

	yajl_gen_get_buf(p->g, &buf, &len);
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

static int
parse_gen_ok(struct parse *p, yajl_gen_status st)
{
	/* the call is rejected, the page goes on: keep the part read so far */
	if (st == yajl_max_depth_exceeded) {
		parse_record_error(p, "it nests deeper than %d levels", YAJL_MAX_DEPTH - 2);
		p->gen_stopped = 1;
		return 1;
	}
	if (st != yajl_gen_status_ok)
		return parse_fail(p, "cannot re-encode call #%u (yajl_gen status %d)", p->count + 1,
		    (int)st);
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
	return GEN(p, yajl_gen_null(p->g));
}

static int
cb_boolean(void *ctx, int v)
{
	struct parse *p = ctx;
	if (p->depth < DEPTH_CALL)
		return parse_misplaced(p, JSON_BOOL);
	if (!parse_keep(p, JSON_BOOL, v ? "true" : "false", v ? 4 : 5))
		return 0;
	return GEN(p, yajl_gen_bool(p->g, v));
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
	return GEN(p, yajl_gen_number(p->g, s, len));
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
	return GEN(p, yajl_gen_string(p->g, s, len));
}

static int
cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
	struct parse *p = ctx;

	p->cur_field = -1;
	if (p->depth == DEPTH_CALL) {
		for (int f = 0; f < FIELD_COUNT; f++) {
			if (strlen(field_names[f]) == len && memcmp(field_names[f], s, len) == 0) {
				p->cur_field = f;
				break;
			}
		}
	}
	if (parse_sanitize(p, &s, &len) < 0)
		return 0;
	return GEN(p, yajl_gen_string(p->g, s, len));
}

static void
parse_record_begin(struct parse *p)
{
	yajl_gen_clear(p->g);
	yajl_gen_reset(p->g, NULL);
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
	const unsigned char *buf;
	size_t len;

	yajl_gen_get_buf(p->g, &buf, &len);
	memset(&rec, 0, sizeof rec);
	rec.index = p->count;
	rec.raw = (const char *)buf;
	rec.raw_len = len;
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
	return GEN(p, yajl_gen_map_open(p->g));
}

static int
cb_end_map(void *ctx)
{
	struct parse *p = ctx;

	p->depth--;
	if (!GEN(p, yajl_gen_map_close(p->g)))
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
	return GEN(p, yajl_gen_array_open(p->g));
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
	return GEN(p, yajl_gen_array_close(p->g));
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
	p->esc.in_str = 0;
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
	buf_init(&p->filtered, PARSE_SLICE + sizeof p->esc.pend);
	p->g = yajl_gen_alloc(NULL);
	if (p->g == NULL || parse_open(p) < 0) {
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
 * the 'A'. This filter in front of yajl rewrites such an escape to "\u0000"
 * (same length), which parse_sanitize then turns into U+FFFD like any NUL,
 * and counts. Escapes stay pending across chunk boundaries.
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

static void
esc_emit(struct parse *p, const char *b, size_t n)
{
	/* room was reserved for the whole chunk and a pending escape */
	memcpy(p->filtered.data + p->filtered.len, b, n);
	p->filtered.len += n;
}

static void
esc_lone_high(struct parse *p)
{
	memcpy(p->esc.pend + 2, "0000", 4);
	esc_emit(p, p->esc.pend, 6);
}

/* Decides on a complete \uXXXX in pend[0..5]: pass it on, or wait for a low one. */
static void
esc_first_done(struct parse *p)
{
	int v = hex4(p->esc.pend + 2);

	if (v < 0xD800 || v > 0xDBFF) {
		esc_emit(p, p->esc.pend, 6);
		p->esc.npend = 0;
	}
}

static void
esc_byte(struct parse *p, char c)
{
	char *pd = p->esc.pend;
	int n;

	if (p->esc.npend == 0) {
		if (!p->esc.in_str) {
			if (c == '"')
				p->esc.in_str = 1;
			esc_emit(p, &c, 1);
		} else if (c == '\\') {
			pd[0] = c;
			p->esc.npend = 1;
		} else {
			if (c == '"')
				p->esc.in_str = 0;
			esc_emit(p, &c, 1);
		}
		return;
	}
	n = p->esc.npend;
	pd[p->esc.npend++] = c;
	if ((n == 1 && c != 'u') || ((n >= 2 && n <= 5) && !is_hex(c)) ||
	    ((n >= 8 && n <= 11) && !is_hex(c))) {
		/* a simple escape, or one yajl will refuse: pass it on as it is */
		esc_emit(p, pd, (size_t)p->esc.npend);
		p->esc.npend = 0;
	} else if (n == 5) {
		esc_first_done(p);
	} else if (n == 6 && c != '\\') {
		/* a lone high surrogate before something else: that byte goes on alone */
		esc_lone_high(p);
		p->esc.npend = 0;
		esc_byte(p, c);
	} else if (n == 7 && c != 'u') {
		esc_lone_high(p);
		esc_emit(p, pd + 6, 2);
		p->esc.npend = 0;
	} else if (n == 11) {
		int v = hex4(pd + 8);
		if (v >= 0xDC00 && v <= 0xDFFF) {
			esc_emit(p, pd, 12);
			p->esc.npend = 0;
		} else {
			/* the first is lone; the second is decided on afresh */
			esc_lone_high(p);
			memmove(pd, pd + 6, 6);
			p->esc.npend = 6;
			esc_first_done(p);
		}
	}
}

static int
parse_yajl(struct parse *p, const unsigned char *buf, size_t len)
{
	yajl_status st = yajl_parse(p->h, buf, len);

	if (st == yajl_status_error)
		parse_yajl_error(p, buf, len);
	if (p->failed)
		return -1;
	p->fed += len;
	return 0;
}

int
parse_feed(struct parse *p, const void *buf, size_t len)
{
	const char *in = buf;

	if (p->failed)
		return -1;
	/* in slices, so the filter's buffer stays small whatever the caller hands over */
	for (size_t off = 0; off < len; off += PARSE_SLICE) {
		size_t n = len - off < PARSE_SLICE ? len - off : PARSE_SLICE;
		p->filtered.len = 0;
		if (buf_reserve(&p->filtered, n + sizeof p->esc.pend) < 0)
			return parse_fail(p, "out of memory"), -1;
		for (size_t i = 0; i < n;) {
			/* most bytes are neither a quote nor a backslash: pass runs of them on */
			if (p->esc.npend == 0) {
				size_t j = i;
				while (j < n && in[off + j] != '"' && in[off + j] != '\\')
					j++;
				esc_emit(p, in + off + i, j - i);
				if ((i = j) == n)
					break;
			}
			esc_byte(p, in[off + i++]);
		}
		if (parse_yajl(p, (const unsigned char *)p->filtered.data, p->filtered.len) < 0)
			return -1;
	}
	return 0;
}

int
parse_finish(struct parse *p)
{
	if (p->failed)
		return -1;
	/* an escape still pending at the end: the body is cut anyway; let yajl say so */
	if (p->esc.npend > 0 && parse_yajl(p, (const unsigned char *)p->esc.pend,
	    (size_t)p->esc.npend) < 0)
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
	if (p->g != NULL)
		yajl_gen_free(p->g);
	buf_free(&p->vals);
	buf_free(&p->scratch);
	buf_free(&p->filtered);
	free(p);
}
