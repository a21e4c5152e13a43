/* rows: types parsed calls into table rows, batched as COPY text for a page. */
#include "rows.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "idset.h"
#include "log.h"

struct row_facts {
	size_t id_off;            /* into ids */
	size_t copy_off, copy_len; /* its line of COPY text, with the newline */
	int64_t started_at;
	unsigned rec_index;       /* where the record was in its page */
	unsigned warnings;        /* what typing it counted */
	int in_progress;
};

/* Where a rejected record was listed. */
struct reject_where {
	int64_t page_offset;
	unsigned index;           /* in its page */
};

struct rows {
	struct buf copy;          /* COPY text of the batch */
	struct buf ids;           /* NUL-terminated ids, back to back */
	struct idset id_index;    /* the ids of the rows, for the duplicate check */
	struct buf rejects;       /* reason NUL raw NUL id NUL (empty: none), per rejected record */
	size_t nrejects;
	struct buf reject_index;  /* struct reject_where, per rejected record */
	size_t *reject_off;       /* where each kept reject starts in rejects */
	size_t reject_cap;
	struct row_facts *facts;
	size_t n, facts_cap;
	unsigned warnings, rejected;
	int64_t page_offset;      /* of the records rows_add is given */
	char reject[160];
};

struct rows *
rows_new(size_t max_bytes)
{
	struct rows *r = calloc(1, sizeof *r);
	if (r != NULL) {
		buf_init(&r->copy, max_bytes);
		buf_init(&r->ids, max_bytes);
		buf_init(&r->rejects, max_bytes);
		buf_init(&r->reject_index, max_bytes);
		idset_init(&r->id_index);
	}
	return r;
}

void
rows_reset(struct rows *r)
{
	r->copy.len = r->ids.len = r->rejects.len = r->n = r->nrejects = 0;
	r->reject_index.len = 0;
	r->warnings = r->rejected = 0;
	r->page_offset = 0;
	r->reject[0] = '\0';
	idset_clear(&r->id_index);
}

void
rows_free(struct rows *r)
{
	if (r == NULL)
		return;
	buf_free(&r->copy);
	buf_free(&r->ids);
	buf_free(&r->rejects);
	buf_free(&r->reject_index);
	idset_free(&r->id_index);
	free(r->reject_off);
	free(r->facts);
	free(r);
}

/* What a byte becomes in COPY text: 0 = itself, else the letter after its backslash. */
static const char copy_escape[256] = {
	['\\'] = '\\', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
};

/* Length of the prefix of s holding no byte COPY escapes, eight bytes at a time, then one by one. */
static size_t
copy_plain_run(const unsigned char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t v, bs;
		memcpy(&v, s + i, 8);
		bs = v ^ (ones * '\\');
		/* a byte below 0x0E (tab, newline, return among them) or a backslash: look closer */
		if ((((v - ones * 0x0E) & ~v) | ((bs - ones) & ~bs)) & highs)
			break;
	}
	while (i < n && copy_escape[s[i]] == 0)
		i++;
	return i;
}

/* Appends s as one COPY text field (escaped), or \N when s is NULL. */
static int
copy_field(struct rows *r, const char *s, size_t len, int last)
{
	size_t worst = (s != NULL ? len * 2 : 2) + 1;
	const unsigned char *u = (const unsigned char *)s;
	char *o;

	if (worst > r->copy.cap - r->copy.len && buf_reserve(&r->copy, worst) < 0)
		return -1;
	o = r->copy.data + r->copy.len;
	if (s == NULL) {
		*o++ = '\\';
		*o++ = 'N';
	} else {
		/* runs of plain bytes are copied whole: most values hold no byte to escape */
		for (size_t i = 0; i < len;) {
			size_t j = i + copy_plain_run(u + i, len - i);
			memcpy(o, s + i, j - i);
			o += j - i;
			if (j == len)
				break;
			*o++ = '\\';
			*o++ = copy_escape[u[j]];
			i = j + 1;
		}
	}
	*o++ = last ? '\n' : '\t';
	r->copy.len = (size_t)(o - r->copy.data);
	return 0;
}

static int
digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's). */
static int64_t
days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;
	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int
rows_parse_timestamp(const char *s, size_t len, int64_t *usec)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	int64_t frac = 0, scale = 1000000;
	size_t i;

	/* YYYY-MM-DDTHH:MM:SS */
	if (len < 19 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
	    s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
	    digits(s + 17, 2, &sec))
		return -1;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
		return -1;
	if (d > mdays[mo - 1] + (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
		return -1;
	i = 19;
	if (i < len && s[i] == '.') {
		size_t start = ++i;
		while (i < len && isdigit((unsigned char)s[i])) {
			if (scale > 1) {
				scale /= 10;
				frac += (s[i] - '0') * scale;
			}
			i++;
		}
		if (i == start || i - start > 9)
			return -1;
	}
	if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i < len && (s[i] == '+' || s[i] == '-')) {
		sign = s[i] == '-' ? -1 : 1;
		if (len - i == 6 && s[i + 3] == ':' && !digits(s + i + 1, 2, &oh) &&
		    !digits(s + i + 4, 2, &om))
			i += 6;
		else if (len - i == 5 && !digits(s + i + 1, 2, &oh) && !digits(s + i + 3, 2, &om))
			i += 5;
		else
			return -1;
		if (oh > 15 || om > 59)
			return -1;
	}
	if (i != len)
		return -1;
	*usec = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) -
	    (int64_t)sign * (oh * 3600 + om * 60)) * 1000000 + frac;
	return 0;
}

void
rows_format_timestamp(int64_t usec, char *buf, size_t buflen)
{
	int64_t secs = usec / 1000000, frac = usec % 1000000;
	int64_t days, rem, z, era, doe, yoe, doy, mp, y, m, d;

	if (frac < 0) {
		frac += 1000000;
		secs--;
	}
	days = secs / 86400;
	rem = secs % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	/* civil_from_days, the inverse of days_from_civil */
	z = days + 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp + (mp < 10 ? 3 : -9);
	y += m <= 2;
	snprintf(buf, buflen, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%06lldZ", (long long)y,
	    (long long)m, (long long)d, (long long)(rem / 3600), (long long)(rem % 3600 / 60),
	    (long long)(rem % 60), (long long)frac);
}

static int rows_facts_room(struct rows *r);

/* Writes n in decimal (not terminated) and returns its length: snprintf costs more than a row's typing. */
static size_t
rows_utoa(uint64_t n, char *out)
{
	char tmp[24];
	size_t len = 0;

	do {
		tmp[len++] = (char)('0' + n % 10);
		n /= 10;
	} while (n > 0);
	for (size_t i = 0; i < len; i++)
		out[i] = tmp[len - 1 - i];
	return len;
}

static const char *
rows_id_of(const struct rows *r, size_t i)
{
	return r->ids.data + r->facts[i].id_off;
}

static void
rows_warn(struct rows *r, const char *id, enum field_id f, const struct field_value *v,
    const char *expected)
{
	static const char *tnames[] = { "absent", "null", "a boolean", "a number", "a string",
		"an object", "an array" };
	r->warnings++;
	if (v->text != NULL)
		log_warnx("call %s: %s is %s '%.*s', not %s: kept in raw, column left empty", id,
		    parse_field_name(f), tnames[v->type], v->len > 60 ? 60 : (int)v->len, v->text,
		    expected);
	else
		log_warnx("call %s: %s is %s, not %s: kept in raw, column left empty", id,
		    parse_field_name(f), tnames[v->type], expected);
}

/* Length of the longest prefix of s (valid UTF-8) of at most max bytes that ends on a character. */
static int
utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return (int)len;
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	return (int)max;
}

/* Room for one more reject offset: 0 or -1. */
static int
rows_reject_room(struct rows *r)
{
	size_t cap;
	size_t *no;

	if (r->nrejects < r->reject_cap)
		return 0;
	cap = r->reject_cap ? r->reject_cap * 2 : 16;
	if ((no = realloc(r->reject_off, cap * sizeof *no)) == NULL)
		return -1;
	r->reject_off = no;
	r->reject_cap = cap;
	return 0;
}

/* Keeps the record for vozagent.rejects; returns 1 (rejected) or -1 (batch full). */
static int
rows_reject(struct rows *r, const struct record *rec, const char *fmt, ...)
{
	va_list ap;
	size_t mark = r->rejects.len;
	struct reject_where where = { r->page_offset, rec->index };

	va_start(ap, fmt);
	vsnprintf(r->reject, sizeof r->reject, fmt, ap);
	va_end(ap);
	/*
	 * It goes into a text column and a log line: no control characters (an id
	 * may hold a tab), and not cut inside a character when it was cut short.
	 */
	log_clean(r->reject);
	const struct field_value *id = &rec->f[FIELD_ID];
	int has_id = id->type == JSON_STRING && id->len > 0 && memchr(id->text, '\0', id->len) == NULL;

	if (buf_append(&r->rejects, r->reject, strlen(r->reject) + 1) < 0 ||
	    buf_append(&r->rejects, rec->raw, rec->raw_len) < 0 ||
	    buf_append(&r->rejects, "", 1) < 0 ||
	    buf_append(&r->rejects, has_id ? id->text : "", has_id ? id->len : 0) < 0 ||
	    buf_append(&r->rejects, "", 1) < 0 || rows_reject_room(r) < 0 ||
	    buf_append(&r->reject_index, &where, sizeof where) < 0) {
		r->rejects.len = mark;
		r->reject_index.len = r->nrejects * sizeof where;
		return -1;
	}
	r->reject_off[r->nrejects] = mark;
	r->nrejects++;
	r->rejected++;
	return 1;
}

int
rows_add(struct rows *r, const struct record *rec)
{
	const struct field_value *idv = &rec->f[FIELD_ID];
	size_t mark_copy = r->copy.len, mark_ids = r->ids.len;
	unsigned mark_warnings = r->warnings;
	char seq[24], id[512];
	size_t idcut, seqlen;
	struct row_facts *fx;
	int64_t started = ROWS_NO_TIME, ts;

	if (idv->type != JSON_STRING || idv->len == 0 || memchr(idv->text, '\0', idv->len))
		return rows_reject(r, rec, "call #%u of the page has no string \"id\"",
		    rec->index + 1);
	/* for messages only: at most 100 bytes, cut on a character */
	idcut = (size_t)utf8_cut(idv->text, idv->len, 100);
	memcpy(id, idv->text, idcut);
	id[idcut] = '\0';
	if (rec->error != NULL)
		return rows_reject(r, rec, "call %s cannot be stored: %s", id, rec->error);
	if (idset_has(&r->id_index, r->ids.data, idv->text, idv->len))
		return rows_reject(r, rec, "call #%u of the page repeats id %s", rec->index + 1, id);
	if (rows_facts_room(r) < 0)
		return -1;
	fx = &r->facts[r->n];
	fx->id_off = r->ids.len;
	fx->copy_off = mark_copy;
	if (buf_append(&r->ids, idv->text, idv->len) < 0 || buf_append(&r->ids, "", 1) < 0) {
		r->ids.len = mark_ids;
		return -1;
	}

	if (rec->replaced_chars > 0) {
		r->warnings++;
		log_warnx("call %s: %u characters (NUL or invalid UTF-8) replaced by U+FFFD", id,
		    rec->replaced_chars);
	}

	seqlen = rows_utoa(rec->index, seq);
	if (copy_field(r, seq, seqlen, 0) < 0)
		goto full;
	for (int f = 0; f < FIELD_COUNT; f++) {
		const struct field_value *v = &rec->f[f];
		const char *out = NULL;
		size_t outlen = 0;

		switch (v->type == JSON_ABSENT || v->type == JSON_NULL ? -1 : f) {
		case -1:
			break;
		case FIELD_DURATION_SECONDS:
			if (v->type == JSON_NUMBER && parse_number_ok(v->text, v->len))
				out = v->text, outlen = v->len;
			else
				rows_warn(r, id, f, v, "a number numeric can hold");
			break;
		case FIELD_CALL_STARTED_AT:
		case FIELD_CALL_ENDED_AT:
			if (v->type == JSON_STRING && rows_parse_timestamp(v->text, v->len, &ts) == 0) {
				out = v->text, outlen = v->len;
				if (f == FIELD_CALL_STARTED_AT)
					started = ts;
			} else
				rows_warn(r, id, f, v, "an ISO 8601 timestamp");
			break;
		case FIELD_APPOINTMENT_BOOKED:
			if (v->type == JSON_BOOL)
				out = v->text[0] == 't' ? "t" : "f", outlen = 1;
			else
				rows_warn(r, id, f, v, "a boolean");
			break;
		default: /* the text columns, id included */
			if (v->type == JSON_STRING)
				out = v->text, outlen = v->len;
			else
				rows_warn(r, id, f, v, "a string");
		}
		if (copy_field(r, out, outlen, 0) < 0)
			goto full;
	}
	if (copy_field(r, rec->raw, rec->raw_len, 1) < 0 ||
	    idset_add(&r->id_index, r->ids.data, fx->id_off, idv->len) < 0)
		goto full;
	fx->copy_len = r->copy.len - mark_copy;
	fx->started_at = started;
	fx->rec_index = rec->index;
	fx->warnings = r->warnings - mark_warnings;
	fx->in_progress = rec->f[FIELD_CALL_STATUS].type == JSON_STRING &&
	    rec->f[FIELD_CALL_STATUS].len == 11 &&
	    memcmp(rec->f[FIELD_CALL_STATUS].text, "in-progress", 11) == 0;
	r->n++;
	return 0;
full:
	/* a refused row leaves no trace, so the caller may flush and add it again */
	r->copy.len = mark_copy;
	r->ids.len = mark_ids;
	r->warnings = mark_warnings;
	return -1;
}

const char *
rows_reject_reason(const struct rows *r)
{
	return r->reject;
}

size_t
rows_rejects(const struct rows *r)
{
	return r->nrejects;
}

void
rows_reject_at(const struct rows *r, size_t i, const char **reason, const char **raw,
    const char **id)
{
	const char *p = r->rejects.data + r->reject_off[i];

	*reason = p;
	*raw = p + strlen(p) + 1;
	*id = *raw + strlen(*raw) + 1;
	if (**id == '\0')
		*id = NULL;
}

void
rows_set_page_offset(struct rows *r, int64_t offset)
{
	r->page_offset = offset;
}

static struct reject_where
rows_where_of(const struct rows *r, size_t i)
{
	struct reject_where w;

	memcpy(&w, r->reject_index.data + i * sizeof w, sizeof w);
	return w;
}

unsigned
rows_reject_index(const struct rows *r, size_t i)
{
	return rows_where_of(r, i).index;
}

void
rows_reject_where(const struct rows *r, size_t i, int64_t *page_offset, int64_t *position)
{
	struct reject_where w = rows_where_of(r, i);

	*page_offset = w.page_offset;
	*position = w.page_offset + (int64_t)w.index;
}

unsigned
rows_record_index(const struct rows *r, size_t i)
{
	return r->facts[i].rec_index;
}

/* Room for one more row's facts: 0 or -1. */
static int
rows_facts_room(struct rows *r)
{
	size_t cap;
	struct row_facts *nf;

	if (r->n < r->facts_cap)
		return 0;
	cap = r->facts_cap ? r->facts_cap * 2 : 128;
	if ((nf = realloc(r->facts, cap * sizeof *nf)) == NULL)
		return -1;
	r->facts = nf;
	r->facts_cap = cap;
	return 0;
}

int
rows_append_row(struct rows *dst, const struct rows *src, size_t i)
{
	const struct row_facts *sf = &src->facts[i];
	const char *line = src->copy.data + sf->copy_off;
	const char *tab = memchr(line, '\t', sf->copy_len);
	const char *id = rows_id_of(src, i);
	size_t idlen = strlen(id), rest = sf->copy_len - (size_t)(tab - line);
	size_t mark_copy = dst->copy.len, mark_ids = dst->ids.len;
	struct row_facts *df;
	char seq[24];
	int n;

	if (rows_facts_room(dst) < 0)
		return -1;
	/* the batch numbers its rows itself: the later reading of a call comes later */
	n = snprintf(seq, sizeof seq, "%zu", dst->n);
	df = &dst->facts[dst->n];
	*df = *sf;
	df->id_off = dst->ids.len;
	df->copy_off = dst->copy.len;
	if (buf_append(&dst->ids, id, idlen + 1) < 0 || buf_append(&dst->copy, seq, (size_t)n) < 0 ||
	    buf_append(&dst->copy, tab, rest) < 0) {
		dst->copy.len = mark_copy;
		dst->ids.len = mark_ids;
		return -1;
	}
	df->copy_len = dst->copy.len - mark_copy;
	dst->warnings += df->warnings;
	dst->n++;
	return 0;
}

int
rows_append_reject(struct rows *dst, const struct rows *src, size_t j)
{
	const char *reason, *raw, *id;
	size_t mark = dst->rejects.len, len;
	struct reject_where w = rows_where_of(src, j);

	rows_reject_at(src, j, &reason, &raw, &id);
	/* reason NUL raw NUL id NUL, as rows_reject lays it out */
	len = strlen(reason) + 1 + strlen(raw) + 1 + (id != NULL ? strlen(id) : 0) + 1;
	if (rows_reject_room(dst) < 0 ||
	    buf_append(&dst->rejects, src->rejects.data + src->reject_off[j], len) < 0 ||
	    buf_append(&dst->reject_index, &w, sizeof w) < 0) {
		dst->rejects.len = mark;
		dst->reject_index.len = dst->nrejects * sizeof w;
		return -1;
	}
	dst->reject_off[dst->nrejects] = mark;
	dst->nrejects++;
	dst->rejected++;
	return 0;
}


size_t
rows_count(const struct rows *r)
{
	return r->n;
}

unsigned
rows_warnings(const struct rows *r)
{
	return r->warnings;
}

unsigned
rows_rejected(const struct rows *r)
{
	return r->rejected;
}

const char *
rows_copy_data(const struct rows *r, size_t *len)
{
	*len = r->copy.len;
	return r->copy.data;
}

const char *
rows_id(const struct rows *r, size_t i)
{
	return rows_id_of(r, i);
}

int64_t
rows_started_at(const struct rows *r, size_t i)
{
	return r->facts[i].started_at;
}

int
rows_in_progress(const struct rows *r, size_t i)
{
	return r->facts[i].in_progress;
}
