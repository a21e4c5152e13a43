/* parse: streams a page body (a JSON array of call objects) into records. */
#ifndef VOZAGENT_PARSE_H
#define VOZAGENT_PARSE_H

#include <stddef.h>

/* The top-level fields the mirror types into columns. */
enum field_id {
	FIELD_ID,
	FIELD_CONTACT_ID,
	FIELD_ASSISTANT_ID,
	FIELD_CALL_TYPE,
	FIELD_CALL_STATUS,
	FIELD_DURATION_SECONDS,
	FIELD_CALL_STARTED_AT,
	FIELD_CALL_ENDED_AT,
	FIELD_APPOINTMENT_BOOKED,
	FIELD_LEAD_QUALIFICATION,
	FIELD_CALL_INTENT,
	FIELD_COUNT
};

enum json_type { JSON_ABSENT, JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_OBJECT, JSON_ARRAY };

struct field_value {
	enum json_type type;
	const char *text;   /* decoded string, number as written, "true"/"false"; else NULL */
	size_t len;
};

/*
 * One call as it came off the wire. Everything points into the parser's
 * buffers and is valid only during the record callback: copy what you keep.
 */
struct record {
	unsigned index;            /* position in the page, from 0 */
	const char *raw;           /* the whole object re-encoded as compact JSON */
	size_t raw_len;
	struct field_value f[FIELD_COUNT];
	unsigned replaced_chars;   /* NULs and invalid UTF-8 replaced by U+FFFD */
	const char *error;         /* why PostgreSQL cannot hold it (raw is then partial), or NULL */
};

/* Returns 0 to go on, -1 to stop the parse (parse_feed then fails). */
typedef int (*parse_record_cb)(void *arg, const struct record *rec);

struct parse;

struct parse *parse_new(size_t max_record_bytes, parse_record_cb cb, void *arg);
/*
 * A page holding more than n calls fails the parse as soon as call n + 1
 * opens ("the API returned more than n calls for limit=n"); 0 = no cap.
 * Kept across parse_reset.
 */
void parse_set_max_records(struct parse *p, unsigned n);
/* Feed any slice of the body; chunk boundaries may fall anywhere. 0 or -1. */
int parse_feed(struct parse *p, const void *buf, size_t len);
/* The body has ended: 0 when it was one complete array, else -1. */
int parse_finish(struct parse *p);
/* Forget the current page and get ready for the next one. */
void parse_reset(struct parse *p);
/* Why the last call failed: says what was wrong and at which byte. */
const char *parse_errmsg(const struct parse *p);
unsigned parse_records(const struct parse *p);
void parse_free(struct parse *p);

const char *parse_field_name(enum field_id f);

/*
 * PostgreSQL's numeric (and so jsonb) holds at most 131072 digits before the
 * decimal point and 16383 after it, once the exponent is applied. A JSON
 * number beyond makes its call unstorable (record.error), not the page.
 */
#define PARSE_NUMERIC_MAX_INT_DIGITS 131072
#define PARSE_NUMERIC_MAX_FRAC_DIGITS 16383
int parse_number_ok(const char *s, size_t len);

#endif
