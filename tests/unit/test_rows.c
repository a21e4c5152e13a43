/* test_rows: typing parsed calls into COPY rows, timestamps, the batch's cap. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "parse.h"
#include "rows.h"
#include "test.h"

/* The staging table's columns, in COPY order. */
enum col {
	C_SEQ, C_ID, C_CONTACT, C_ASSISTANT, C_TYPE, C_STATUS, C_DURATION, C_STARTED, C_ENDED,
	C_BOOKED, C_LEAD, C_INTENT, C_RAW, NCOLS
};

#define MAX_ROWS 64

static struct rows *R;

/* rows_add's answer for each record of the last page added */
static int rcs[MAX_ROWS];
static unsigned nrcs;

/* The batch's COPY text decoded back: cells[row][col], NULL for \N. */
static char *cells[MAX_ROWS][NCOLS];
static int ncell_rows;

static void
cells_free(void)
{
	for (int r = 0; r < MAX_ROWS; r++)
		for (int c = 0; c < NCOLS; c++) {
			free(cells[r][c]);
			cells[r][c] = NULL;
		}
	ncell_rows = 0;
}

static void
setup(void)
{
	cells_free();
	rows_free(R);
	R = rows_new(1 << 20);
	if (R == NULL)
		exit(2);
	nrcs = 0;
}

/*
 * Decodes COPY text the way PostgreSQL's text format reads it (tab between
 * columns, newline after a row, backslash escapes, \N alone = NULL), but
 * strictly: every row must have NCOLS columns and end in a newline. Returns
 * the number of rows, or -1 (with a message printed) when malformed.
 */
static int
copy_decode(const char *s, size_t len)
{
	char *buf = malloc(len + 1);
	size_t b = 0, i = 0;
	int row = 0, col = 0, is_null = 0;

	cells_free();
	if (buf == NULL)
		exit(2);
	while (i < len) {
		char c = s[i++];
		if (c == '\t' || c == '\n') {
			if (row >= MAX_ROWS || col >= NCOLS) {
				printf("      COPY text: row %d has more than %d columns\n", row, NCOLS);
				goto bad;
			}
			cells[row][col] = is_null ? NULL : strndup(buf, b);
			b = 0;
			is_null = 0;
			col++;
			if (c == '\n') {
				if (col != NCOLS) {
					printf("      COPY text: row %d has %d columns\n", row, col);
					goto bad;
				}
				row++;
				col = 0;
			}
		} else if (c == '\\') {
			if (i == len) {
				printf("      COPY text: ends in a backslash\n");
				goto bad;
			}
			c = s[i++];
			switch (c) {
			case 'N':
				/* \N must be the whole field */
				if (b != 0 || is_null || (i < len && s[i] != '\t' && s[i] != '\n')) {
					printf("      COPY text: \\N inside a field of row %d\n", row);
					goto bad;
				}
				is_null = 1;
				break;
			case 't': buf[b++] = '\t'; break;
			case 'n': buf[b++] = '\n'; break;
			case 'r': buf[b++] = '\r'; break;
			case '\\': buf[b++] = '\\'; break;
			default:
				printf("      COPY text: unexpected escape \\%c in row %d\n", c, row);
				goto bad;
			}
		} else if (c == '\r' || c == '\0') {
			printf("      COPY text: raw CR or NUL in row %d\n", row);
			goto bad;
		} else {
			if (is_null) {
				printf("      COPY text: text after \\N in row %d\n", row);
				goto bad;
			}
			buf[b++] = c;
		}
	}
	if (col != 0 || b != 0) {
		printf("      COPY text: the last row is not ended by a newline\n");
		goto bad;
	}
	free(buf);
	ncell_rows = row;
	return row;
bad:
	free(buf);
	cells_free();
	return -1;
}

static int
decode_batch(void)
{
	size_t len;
	const char *s = rows_copy_data(R, &len);
	return copy_decode(s, len);
}

#define ASSERT_DECODED_ROWS(n) do {                                                       \
		int got_ = decode_batch();                                                \
		if (got_ != (int)(n))                                                          \
			TEST_FAIL_("the batch decodes to %d rows, expected %d", got_, (int)(n)); \
	} while (0)

#define ASSERT_CELL(row, col, want) ASSERT_EQ_STR(cells[row][col], (want))

/* Parses page with the real parser, handing every record to rows_add. */
static int
cb_add(void *arg, const struct record *rec)
{
	(void)arg;
	if (nrcs < MAX_ROWS)
		rcs[nrcs++] = rows_add(R, rec);
	return 0;
}

static int
add_page(const char *page)
{
	struct parse *p = parse_new(1 << 16, cb_add, NULL);
	int rc;

	if (p == NULL)
		exit(2);
	nrcs = 0;
	rc = parse_feed(p, page, strlen(page));
	if (rc == 0)
		rc = parse_finish(p);
	if (rc != 0)
		printf("      parse failed: %s\n", parse_errmsg(p));
	parse_free(p);
	return rc;
}

#define ASSERT_ADD_PAGE(page) do {                                                        \
		if (add_page(page) != 0)                                                  \
			TEST_FAIL_("the page did not parse: %s", (page));                 \
	} while (0)

/* A record built by hand; fields not set are absent. */
static struct record hrec;

static void
hand_record(const char *id, const char *raw)
{
	memset(&hrec, 0, sizeof hrec);
	if (id != NULL) {
		hrec.f[FIELD_ID].type = JSON_STRING;
		hrec.f[FIELD_ID].text = id;
		hrec.f[FIELD_ID].len = strlen(id);
	}
	hrec.raw = raw;
	hrec.raw_len = strlen(raw);
}

static void
hand_field(enum field_id f, enum json_type t, const char *text, size_t len)
{
	hrec.f[f].type = t;
	hrec.f[f].text = text;
	hrec.f[f].len = len;
}

/* ---- COPY text ---- */

static void
test_copy_exact_bytes(void)
{
	static const char want[] =
	    "0\te1\ta\\tb\\nc\\rd\\\\e\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"
	    "{\"id\":\"e1\",\"contact_id\":\"a\\\\tb\\\\nc\\\\rd\\\\\\\\e\"}\n";
	size_t len;
	const char *s;

	ASSERT_ADD_PAGE("[{\"id\":\"e1\",\"contact_id\":\"a\\tb\\nc\\rd\\\\e\"}]");
	ASSERT_EQ_INT(rcs[0], 0);
	s = rows_copy_data(R, &len);
	ASSERT_EQ_MEM(s, len, want, sizeof want - 1);
}

static void
test_copy_escaping_round_trip(void)
{
	ASSERT_ADD_PAGE("[{\"id\":\"tab\\there\",\"contact_id\":\"line1\\nline2\\r\\n\","
	    "\"call_intent\":\"back\\\\slash \\\\N \\\\t\",\"lead_qualification\":\"\\\\\","
	    "\"assistant_id\":\"\"}]");
	ASSERT_EQ_INT(rcs[0], 0);
	ASSERT_DECODED_ROWS(1);
	ASSERT_CELL(0, C_SEQ, "0");
	ASSERT_CELL(0, C_ID, "tab\there");
	ASSERT_CELL(0, C_CONTACT, "line1\nline2\r\n");
	/* a backslash-N in the data is text, not NULL */
	ASSERT_CELL(0, C_INTENT, "back\\slash \\N \\t");
	ASSERT_CELL(0, C_LEAD, "\\");
	/* an empty string is not NULL */
	ASSERT_CELL(0, C_ASSISTANT, "");
	ASSERT_CELL(0, C_RAW, "{\"id\":\"tab\\there\",\"contact_id\":\"line1\\nline2\\r\\n\","
	    "\"call_intent\":\"back\\\\slash \\\\N \\\\t\",\"lead_qualification\":\"\\\\\","
	    "\"assistant_id\":\"\"}");
	ASSERT_EQ_UINT(rows_warnings(R), 0);
	ASSERT_EQ_STR(rows_id(R, 0), "tab\there");
}

/* raw is escaped like any column (the parser never puts a raw tab in it; others might). */
static void
test_copy_escaping_in_raw(void)
{
	static const char raw[] = "{\"id\":\"h\",\n\t\"x\":\"\\\\\"}\r";

	hand_record("h", raw);
	ASSERT_EQ_INT(rows_add(R, &hrec), 0);
	ASSERT_DECODED_ROWS(1);
	ASSERT_CELL(0, C_RAW, raw);
	ASSERT_CELL(0, C_ID, "h");
}

static void
test_copy_nulls(void)
{
	ASSERT_ADD_PAGE("[{\"id\":\"n1\",\"contact_id\":null,\"duration_seconds\":null,"
	    "\"call_started_at\":null,\"appointment_booked\":null}]");
	ASSERT_DECODED_ROWS(1);
	for (int c = C_CONTACT; c <= C_INTENT; c++)
		if (cells[0][c] != NULL)
			TEST_FAIL_("column %d is '%s', expected NULL", c, cells[0][c]);
	/* null and absent are not type errors */
	ASSERT_EQ_UINT(rows_warnings(R), 0);
	ASSERT_EQ_INT(rows_started_at(R, 0), ROWS_NO_TIME);
	ASSERT_EQ_INT(rows_in_progress(R, 0), 0);
}

static void
test_copy_vendor_example(void)
{
	ASSERT_ADD_PAGE(
	    "[{\"id\":\"call-a1b2c3d4-e5f6-a7b8-c9d0\",\"contact_id\":\"c1a2b3c4-d5e6-f7a8-b9c0\","
	    "\"assistant_id\":\"a1b2c3d4-e5f6-a7b8\",\"call_type\":\"inbound\","
	    "\"call_status\":\"completed\",\"duration_seconds\":180,"
	    "\"call_started_at\":\"2024-01-15T10:30:00Z\",\"call_ended_at\":\"2024-01-15T10:33:00Z\","
	    "\"appointment_booked\":true,\"lead_qualification\":\"hot\",\"call_intent\":\"new_quote\"},"
	    "{\"id\":\"call-b2c3d4e5-f6a7-b8c9-d0e1\",\"call_type\":\"outbound\","
	    "\"call_status\":\"in-progress\",\"call_started_at\":\"2024-01-15T11:00:00Z\","
	    "\"appointment_booked\":false}]");
	ASSERT_EQ_INT(rcs[0], 0);
	ASSERT_EQ_INT(rcs[1], 0);
	ASSERT_EQ_UINT(rows_count(R), 2);
	ASSERT_DECODED_ROWS(2);
	ASSERT_CELL(0, C_SEQ, "0");
	ASSERT_CELL(0, C_ID, "call-a1b2c3d4-e5f6-a7b8-c9d0");
	ASSERT_CELL(0, C_CONTACT, "c1a2b3c4-d5e6-f7a8-b9c0");
	ASSERT_CELL(0, C_ASSISTANT, "a1b2c3d4-e5f6-a7b8");
	ASSERT_CELL(0, C_TYPE, "inbound");
	ASSERT_CELL(0, C_STATUS, "completed");
	ASSERT_CELL(0, C_DURATION, "180");
	ASSERT_CELL(0, C_STARTED, "2024-01-15T10:30:00Z");
	ASSERT_CELL(0, C_ENDED, "2024-01-15T10:33:00Z");
	ASSERT_CELL(0, C_BOOKED, "t");
	ASSERT_CELL(0, C_LEAD, "hot");
	ASSERT_CELL(0, C_INTENT, "new_quote");
	ASSERT_TRUE(strncmp(cells[0][C_RAW], "{\"id\":\"call-a1b2c3d4-e5f6-a7b8-c9d0\",", 37) == 0);
	ASSERT_CELL(1, C_SEQ, "1");
	ASSERT_CELL(1, C_BOOKED, "f");
	ASSERT_CELL(1, C_ENDED, NULL);
	ASSERT_CELL(1, C_DURATION, NULL);
	ASSERT_EQ_UINT(rows_warnings(R), 0);
	ASSERT_EQ_UINT(rows_rejected(R), 0);
	ASSERT_EQ_STR(rows_id(R, 0), "call-a1b2c3d4-e5f6-a7b8-c9d0");
	ASSERT_EQ_STR(rows_id(R, 1), "call-b2c3d4e5-f6a7-b8c9-d0e1");
	ASSERT_EQ_INT(rows_started_at(R, 0), INT64_C(1705314600000000));
	ASSERT_EQ_INT(rows_started_at(R, 1), INT64_C(1705316400000000));
	ASSERT_EQ_INT(rows_in_progress(R, 0), 0);
	ASSERT_EQ_INT(rows_in_progress(R, 1), 1);
}

/* ---- typing ---- */

/* Texts lent by the parser are not terminated: only len bytes of each are the value. */
static void
test_values_are_length_bounded(void)
{
	static const char mem[] = "1e5|2024-01-15T10:30:00Z|falseX|completed!in-progressZZ|idXY";

	hand_record("x", "{}");
	hand_field(FIELD_ID, JSON_STRING, mem + 56, 2);
	hand_field(FIELD_DURATION_SECONDS, JSON_NUMBER, mem, 3);
	hand_field(FIELD_CALL_STARTED_AT, JSON_STRING, mem + 4, 20);
	hand_field(FIELD_APPOINTMENT_BOOKED, JSON_BOOL, mem + 25, 5);
	hand_field(FIELD_CALL_TYPE, JSON_STRING, mem + 32, 9);
	hand_field(FIELD_CALL_STATUS, JSON_STRING, mem + 42, 11);
	hrec.index = 3;
	ASSERT_EQ_INT(rows_add(R, &hrec), 0);
	ASSERT_DECODED_ROWS(1);
	ASSERT_CELL(0, C_SEQ, "3");
	ASSERT_CELL(0, C_ID, "id");
	ASSERT_CELL(0, C_DURATION, "1e5");
	ASSERT_CELL(0, C_STARTED, "2024-01-15T10:30:00Z");
	ASSERT_CELL(0, C_BOOKED, "f");
	ASSERT_CELL(0, C_TYPE, "completed");
	ASSERT_CELL(0, C_STATUS, "in-progress");
	ASSERT_CELL(0, C_RAW, "{}");
	ASSERT_EQ_STR(rows_id(R, 0), "id");
	ASSERT_EQ_INT(rows_in_progress(R, 0), 1);
	ASSERT_EQ_INT(rows_started_at(R, 0), INT64_C(1705314600000000));
	ASSERT_EQ_UINT(rows_warnings(R), 0);
}

static void
test_duration_typing(void)
{
	ASSERT_ADD_PAGE("["
	    "{\"id\":\"d0\",\"duration_seconds\":95},"
	    "{\"id\":\"d1\",\"duration_seconds\":1.5e+3},"
	    "{\"id\":\"d2\",\"duration_seconds\":-0.000012345678901234567890},"
	    "{\"id\":\"d3\",\"duration_seconds\":123456789012345678901234567890.5},"
	    "{\"id\":\"d4\",\"duration_seconds\":\"abc\"},"
	    "{\"id\":\"d5\",\"duration_seconds\":\"95\"},"
	    "{\"id\":\"d6\",\"duration_seconds\":true},"
	    "{\"id\":\"d7\",\"duration_seconds\":{\"s\":1}},"
	    "{\"id\":\"d8\",\"duration_seconds\":[95]},"
	    "{\"id\":\"d9\",\"duration_seconds\":1e308},"
	    "{\"id\":\"d10\",\"duration_seconds\":1e1000}"
	    "]");
	ASSERT_EQ_UINT(rows_count(R), 11);
	ASSERT_DECODED_ROWS(11);
	/* numbers are kept as written */
	ASSERT_CELL(0, C_DURATION, "95");
	ASSERT_CELL(1, C_DURATION, "1.5e+3");
	ASSERT_CELL(2, C_DURATION, "-0.000012345678901234567890");
	ASSERT_CELL(3, C_DURATION, "123456789012345678901234567890.5");
	ASSERT_CELL(9, C_DURATION, "1e308");
	ASSERT_CELL(10, C_DURATION, "1e1000");
	/* anything else: NULL, one warning each, and raw still has it */
	for (int i = 4; i <= 8; i++)
		if (cells[i][C_DURATION] != NULL)
			TEST_FAIL_("row %d: duration is '%s', expected NULL", i,
			    cells[i][C_DURATION]);
	ASSERT_CONTAINS(cells[4][C_RAW], "\"duration_seconds\":\"abc\"");
	ASSERT_EQ_UINT(rows_warnings(R), 5);
	ASSERT_EQ_UINT(rows_rejected(R), 0);
}

/*
 * numeric (and so jsonb) holds 131072 digits before the point and 16383 after:
 * a call with a number beyond is rejected, kept whole; one just inside is not.
 */
static void
test_number_beyond_numeric_rejected(void)
{
	const char *reason, *raw, *rid;

	ASSERT_ADD_PAGE("["
	    "{\"id\":\"n0\",\"duration_seconds\":1e131072},"
	    "{\"id\":\"n1\",\"extra\":{\"x\":[1E-16384]}},"
	    "{\"id\":\"n2\",\"duration_seconds\":7,\"a\":1e131071,\"b\":1e-16383}"
	    "]");
	ASSERT_EQ_UINT(rows_count(R), 1);
	ASSERT_EQ_STR(rows_id(R, 0), "n2");
	ASSERT_EQ_UINT(rows_rejected(R), 2);
	ASSERT_EQ_UINT(rows_rejects(R), 2);
	rows_reject_at(R, 0, &reason, &raw, &rid);
	ASSERT_CONTAINS(reason, "n0");
	ASSERT_CONTAINS(reason, "numeric");
	ASSERT_EQ_STR(raw, "{\"id\":\"n0\",\"duration_seconds\":1e131072}");
	ASSERT_EQ_STR(rid, "n0");
	rows_reject_at(R, 1, &reason, &raw, &rid);
	ASSERT_CONTAINS(reason, "n1");
	ASSERT_EQ_STR(raw, "{\"id\":\"n1\",\"extra\":{\"x\":[1E-16384]}}");
}

/* A rejected record keeps its index in the page: its list position when it has no id. */
static void
test_reject_index(void)
{
	const char *reason, *raw, *rid;

	ASSERT_ADD_PAGE("[{\"id\":\"a\"},{\"x\":1},{\"id\":\"b\"},{\"id\":\"a\"},{\"id\":7}]");
	ASSERT_EQ_UINT(rows_count(R), 2);
	ASSERT_EQ_UINT(rows_rejects(R), 3);
	ASSERT_EQ_UINT(rows_reject_index(R, 0), 1);
	ASSERT_EQ_UINT(rows_reject_index(R, 1), 3);
	ASSERT_EQ_UINT(rows_reject_index(R, 2), 4);
	rows_reject_at(R, 1, &reason, &raw, &rid);
	ASSERT_EQ_STR(rid, "a");
	rows_reject_at(R, 2, &reason, &raw, &rid);
	ASSERT_TRUE(rid == NULL);
	rows_reset(R);
	ASSERT_ADD_PAGE("[{\"x\":2}]");
	ASSERT_EQ_UINT(rows_rejects(R), 1);
	ASSERT_EQ_UINT(rows_reject_index(R, 0), 0);
}

/*
 * A batch built from two pages (the caller leaves out page 2's first call,
 * read on page 1 already): rows are renumbered in batch order, and rejects
 * keep where they were listed.
 */
static void
test_append_pages_into_batch(void)
{
	struct rows *page1 = NULL, *page2 = NULL, *batch = rows_new(1 << 20);
	int64_t off, pos;
	const char *reason, *raw, *rid;

	ASSERT_TRUE(batch != NULL);
	rows_set_page_offset(R, 0);
	ASSERT_ADD_PAGE("[{\"id\":\"a\"},{\"x\":1},{\"id\":\"b\",\"duration_seconds\":\"x\"}]");
	page1 = R;
	R = rows_new(1 << 20);
	rows_set_page_offset(R, 2);
	ASSERT_ADD_PAGE("[{\"id\":\"b\"},{\"id\":\"c\",\"call_status\":\"in-progress\"},{\"y\":2}]");
	page2 = R;
	R = batch;
	for (size_t i = 0; i < rows_count(page1); i++)
		ASSERT_EQ_INT(rows_append_row(batch, page1, i), 0);
	ASSERT_EQ_INT(rows_append_row(batch, page2, 1), 0);
	ASSERT_EQ_UINT(rows_record_index(page2, 1), 1);
	for (size_t j = 0; j < rows_rejects(page1); j++)
		ASSERT_EQ_INT(rows_append_reject(batch, page1, j), 0);
	for (size_t j = 0; j < rows_rejects(page2); j++)
		ASSERT_EQ_INT(rows_append_reject(batch, page2, j), 0);
	ASSERT_EQ_UINT(rows_count(batch), 3);
	ASSERT_EQ_STR(rows_id(batch, 2), "c");
	ASSERT_TRUE(rows_in_progress(batch, 2));
	ASSERT_EQ_UINT(rows_rejected(batch), 2);
	/* b's warning came with b's row from page 1; page 2's b was not added */
	ASSERT_EQ_UINT(rows_warnings(batch), 1);
	rows_reject_where(batch, 1, &off, &pos);
	ASSERT_EQ_INT(off, 2);
	ASSERT_EQ_INT(pos, 4);
	rows_reject_at(batch, 1, &reason, &raw, &rid);
	ASSERT_EQ_STR(raw, "{\"y\":2}");
	ASSERT_TRUE(rid == NULL);
	ASSERT_DECODED_ROWS(3);
	ASSERT_CELL(0, 0, "0");
	ASSERT_CELL(1, 0, "1");
	ASSERT_CELL(2, 0, "2");
	ASSERT_CELL(2, 1, "c");
	ASSERT_TRUE(cells[1][6] == NULL);  /* b's duration stayed untyped */
	rows_free(page1);
	rows_free(page2);
}

static void
test_text_columns_typing(void)
{
	ASSERT_ADD_PAGE("[{\"id\":\"t1\",\"contact_id\":42,\"assistant_id\":true,"
	    "\"call_type\":{\"a\":1},\"call_status\":[\"x\"],\"lead_qualification\":\"warm\","
	    "\"call_intent\":null}]");
	ASSERT_DECODED_ROWS(1);
	ASSERT_CELL(0, C_CONTACT, NULL);
	ASSERT_CELL(0, C_ASSISTANT, NULL);
	ASSERT_CELL(0, C_TYPE, NULL);
	ASSERT_CELL(0, C_STATUS, NULL);
	ASSERT_CELL(0, C_LEAD, "warm");
	ASSERT_CELL(0, C_INTENT, NULL);
	ASSERT_EQ_UINT(rows_warnings(R), 4);
}

static void
test_appointment_booked(void)
{
	ASSERT_ADD_PAGE("[{\"id\":\"b1\",\"appointment_booked\":true},"
	    "{\"id\":\"b2\",\"appointment_booked\":false},"
	    "{\"id\":\"b3\",\"appointment_booked\":\"true\"},"
	    "{\"id\":\"b4\",\"appointment_booked\":1},"
	    "{\"id\":\"b5\",\"appointment_booked\":null}]");
	ASSERT_DECODED_ROWS(5);
	ASSERT_CELL(0, C_BOOKED, "t");
	ASSERT_CELL(1, C_BOOKED, "f");
	ASSERT_CELL(2, C_BOOKED, NULL);
	ASSERT_CELL(3, C_BOOKED, NULL);
	ASSERT_CELL(4, C_BOOKED, NULL);
	ASSERT_EQ_UINT(rows_warnings(R), 2);
}

static void
test_replaced_chars_warn(void)
{
	ASSERT_ADD_PAGE("[{\"id\":\"r1\",\"contact_id\":\"a\\u0000b\"},{\"id\":\"r2\"}]");
	ASSERT_DECODED_ROWS(2);
	ASSERT_CELL(0, C_CONTACT, "a\xEF\xBF\xBD" "b");
	ASSERT_EQ_UINT(rows_warnings(R), 1);
}

/* ---- timestamps in rows ---- */

static void
test_timestamp_columns(void)
{
	static const struct { const char *ts; int ok; int64_t usec; } cases[] = {
		{ "2024-01-15T10:30:00Z", 1, INT64_C(1705314600000000) },
		{ "2024-01-15T10:30:00.5Z", 1, INT64_C(1705314600500000) },
		{ "2024-01-15T10:30:00+02:00", 1, INT64_C(1705307400000000) },
		{ "2024-01-15T10:30:00-0530", 1, INT64_C(1705334400000000) },
		{ "2024-01-15T10:30:00", 1, INT64_C(1705314600000000) },
		{ "2024-02-29T12:00:00Z", 1, INT64_C(1709208000000000) },
		{ "2024-02-30T10:30:00Z", 0, 0 },
		{ "2023-02-29T10:30:00Z", 0, 0 },
		{ "2024-01-15T24:00:00Z", 0, 0 },
		{ "2024-01-15", 0, 0 },
		{ "yesterday", 0, 0 },
		{ "2024-13-01T10:30:00Z", 0, 0 },
		{ "", 0, 0 },
	};
	char page[4096];
	size_t n = 0, ncases = sizeof cases / sizeof cases[0];
	unsigned bad = 0;

	n += (size_t)snprintf(page + n, sizeof page - n, "[");
	for (size_t i = 0; i < ncases; i++)
		n += (size_t)snprintf(page + n, sizeof page - n,
		    "%s{\"id\":\"ts%zu\",\"call_started_at\":\"%s\",\"call_ended_at\":\"%s\"}",
		    i ? "," : "", i, cases[i].ts, cases[i].ts);
	snprintf(page + n, sizeof page - n, "]");
	ASSERT_ADD_PAGE(page);
	ASSERT_EQ_UINT(rows_count(R), ncases);
	ASSERT_DECODED_ROWS(ncases);
	for (size_t i = 0; i < ncases; i++) {
		if (cases[i].ok) {
			/* the column gets the text as sent; PostgreSQL reads it (in UTC) */
			ASSERT_CELL(i, C_STARTED, cases[i].ts);
			ASSERT_CELL(i, C_ENDED, cases[i].ts);
			if (rows_started_at(R, i) != cases[i].usec)
				TEST_FAIL_("%s: started_at %" PRId64 ", expected %" PRId64,
				    cases[i].ts, rows_started_at(R, i), cases[i].usec);
		} else {
			bad++;
			ASSERT_CELL(i, C_STARTED, NULL);
			ASSERT_CELL(i, C_ENDED, NULL);
			if (rows_started_at(R, i) != ROWS_NO_TIME)
				TEST_FAIL_("%s: started_at %" PRId64 ", expected ROWS_NO_TIME",
				    cases[i].ts, rows_started_at(R, i));
		}
	}
	/* one warning per bad column: two per bad row */
	ASSERT_EQ_UINT(rows_warnings(R), 2 * bad);
}

static void
test_timestamp_not_a_string(void)
{
	ASSERT_ADD_PAGE("[{\"id\":\"x1\",\"call_started_at\":1705314600,"
	    "\"call_ended_at\":{\"t\":\"2024-01-15T10:30:00Z\"}},"
	    "{\"id\":\"x2\",\"call_ended_at\":\"2024-01-15T10:30:00Z\"}]");
	ASSERT_DECODED_ROWS(2);
	ASSERT_CELL(0, C_STARTED, NULL);
	ASSERT_CELL(0, C_ENDED, NULL);
	ASSERT_EQ_INT(rows_started_at(R, 0), ROWS_NO_TIME);
	ASSERT_EQ_UINT(rows_warnings(R), 2);
	/* the end time says nothing about the start */
	ASSERT_CELL(1, C_ENDED, "2024-01-15T10:30:00Z");
	ASSERT_EQ_INT(rows_started_at(R, 1), ROWS_NO_TIME);
}

/* ---- rows_parse_timestamp / rows_format_timestamp ---- */

/* Parses s from a heap copy of exactly its length, so reading past it is caught by ASan. */
static int
parse_ts(const char *s, size_t len, int64_t *usec)
{
	char *copy = malloc(len ? len : 1);
	int rc;

	if (copy == NULL)
		exit(2);
	memcpy(copy, s, len);
	rc = rows_parse_timestamp(copy, len, usec);
	free(copy);
	return rc;
}

static void
test_parse_timestamp_values(void)
{
	static const struct { const char *s; int64_t usec; } ok[] = {
		{ "2024-01-15T10:30:00Z", INT64_C(1705314600000000) },
		{ "2024-01-15T10:30:00z", INT64_C(1705314600000000) },
		{ "2024-01-15t10:30:00Z", INT64_C(1705314600000000) },
		{ "2024-01-15 10:30:00Z", INT64_C(1705314600000000) },
		{ "2024-01-15T10:30:00", INT64_C(1705314600000000) },
		{ "2024-01-15T10:30:00+00:00", INT64_C(1705314600000000) },
		{ "2024-01-15T10:30:00-00:00", INT64_C(1705314600000000) },
		{ "2024-01-15T10:30:00+02:00", INT64_C(1705314600000000) - INT64_C(7200000000) },
		{ "2024-01-15T10:30:00+0200", INT64_C(1705314600000000) - INT64_C(7200000000) },
		{ "2024-01-15T10:30:00-05:30", INT64_C(1705314600000000) + INT64_C(19800000000) },
		{ "2024-01-15T10:30:00-0530", INT64_C(1705314600000000) + INT64_C(19800000000) },
		{ "2024-01-15T10:30:00.5Z", INT64_C(1705314600500000) },
		{ "2024-01-15T10:30:00.05Z", INT64_C(1705314600050000) },
		{ "2024-01-15T10:30:00.000001Z", INT64_C(1705314600000001) },
		{ "2024-01-15T10:30:00.123456Z", INT64_C(1705314600123456) },
		{ "2024-01-15T10:30:00.5+02:00", INT64_C(1705307400500000) },
		{ "2024-02-29T12:00:00Z", INT64_C(1709208000000000) },
		{ "2000-02-29T00:00:00Z", INT64_C(951782400000000) },
		{ "2024-12-31T23:59:59Z", INT64_C(1735689599000000) },
		{ "1970-01-01T00:00:00Z", 0 },
		{ "1970-01-01T01:00:00+01:00", 0 },
		{ "1969-12-31T23:59:59Z", INT64_C(-1000000) },
		{ "1969-12-31T23:59:59.5Z", INT64_C(-500000) },
		{ "1900-01-01T00:00:00Z", INT64_C(-2208988800000000) },
		{ "0001-01-01T00:00:00Z", INT64_C(-62135596800000000) },
		{ "9999-12-31T23:59:59.999999Z", INT64_C(253402300799999999) },
		{ "1600-02-29T06:07:08.000009Z", INT64_C(-11670976371999991) },
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		int64_t usec = 42;
		if (parse_ts(ok[i].s, strlen(ok[i].s), &usec) != 0)
			TEST_FAIL_("'%s' was refused", ok[i].s);
		if (usec != ok[i].usec)
			TEST_FAIL_("'%s': got %" PRId64 ", expected %" PRId64, ok[i].s, usec,
			    ok[i].usec);
	}
}

static void
test_parse_timestamp_fraction_past_microseconds(void)
{
	int64_t usec = 0;

	/* up to nanoseconds is accepted; only the microseconds can be kept */
	ASSERT_EQ_INT(parse_ts("2024-01-15T10:30:00.123456789Z", 30, &usec), 0);
	ASSERT_TRUE(usec >= INT64_C(1705314600123456) && usec <= INT64_C(1705314600123457));
	ASSERT_EQ_INT(parse_ts("2024-01-15T10:30:00.1234567890Z", 31, &usec), -1);
}

static void
test_parse_timestamp_invalid(void)
{
	static const char *bad[] = {
		"", "yesterday", "2024-01-15", "2024-01-15T10:30", "2024-01-15T10:30Z",
		"2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
		"2024-04-31T00:00:00Z", "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z",
		"2024-01-00T00:00:00Z", "2024-01-32T00:00:00Z", "0000-01-01T00:00:00Z",
		"2024-01-15T24:00:00Z", "2024-01-15T23:60:00Z", "2024-01-15T23:59:60Z",
		"2024-01-15T10:30:00ZZ", "2024-01-15T10:30:00 Z", "2024-01-15T10:30:00Z ",
		" 2024-01-15T10:30:00Z", "2024-01-15T10:30:00.Z", "2024-01-15T10:30:00.",
		"2024-01-15T10:30:00+02", "2024-01-15T10:30:00+2:00", "2024-01-15T10:30:00+02:0",
		"2024-01-15T10:30:00+02:000", "2024-01-15T10:30:00+16:00", "2024-01-15T10:30:00+02:60",
		"2024-01-15T10:30:00+02-00", "2024-1-15T10:30:00Z", "2024/01/15T10:30:00Z",
		"2024-01-15X10:30:00Z", "2024-01-15T10-30-00Z", "20240115T103000Z",
		"2024-01-15T10:30:00UTC", "-024-01-15T10:30:00Z", "2024-01-15T1a:30:00Z",
		"2024-01-15T10:30:00.12a4Z", "+2024-01-15T10:30:00Z",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int64_t usec = 0;
		if (parse_ts(bad[i], strlen(bad[i]), &usec) != -1)
			TEST_FAIL_("'%s' was accepted as %" PRId64, bad[i], usec);
	}
}

/* The text is not NUL-terminated: only len bytes count. */
static void
test_parse_timestamp_uses_len(void)
{
	static const char s[] = "2024-01-15T10:30:00Z+02:00garbage";
	int64_t usec = 0;

	ASSERT_EQ_INT(parse_ts(s, 20, &usec), 0);
	ASSERT_EQ_INT(usec, INT64_C(1705314600000000));
	ASSERT_EQ_INT(parse_ts(s, 19, &usec), 0);   /* no zone: UTC */
	ASSERT_EQ_INT(usec, INT64_C(1705314600000000));
	ASSERT_EQ_INT(parse_ts(s, 18, &usec), -1);
	ASSERT_EQ_INT(parse_ts(s, 21, &usec), -1);
	ASSERT_EQ_INT(parse_ts("2024-01-15T10:30:00+02:00", 22, &usec), -1);
	ASSERT_EQ_INT(parse_ts("2024-01-15T10:30:00+02:00", 24, &usec), -1);
	ASSERT_EQ_INT(parse_ts("2024-01-15T10:30:00.5", 20, &usec), -1);
	ASSERT_EQ_INT(parse_ts("2024-01-15T10:30:00.5", 21, &usec), 0);
	ASSERT_EQ_INT(usec, INT64_C(1705314600500000));
}

static void
test_format_timestamp(void)
{
	static const struct { int64_t usec; const char *s; } cases[] = {
		{ INT64_C(1705314600000000), "2024-01-15T10:30:00.000000Z" },
		{ INT64_C(1705314600500000), "2024-01-15T10:30:00.500000Z" },
		{ 0, "1970-01-01T00:00:00.000000Z" },
		{ 1, "1970-01-01T00:00:00.000001Z" },
		{ -1, "1969-12-31T23:59:59.999999Z" },
		{ INT64_C(-1000000), "1969-12-31T23:59:59.000000Z" },
		{ INT64_C(-86400000000), "1969-12-31T00:00:00.000000Z" },
		{ INT64_C(-86400000001), "1969-12-30T23:59:59.999999Z" },
		{ INT64_C(1709208000000000), "2024-02-29T12:00:00.000000Z" },
		{ INT64_C(951782400000000), "2000-02-29T00:00:00.000000Z" },
		{ INT64_C(-2208988800000000), "1900-01-01T00:00:00.000000Z" },
		{ INT64_C(-62135596800000000), "0001-01-01T00:00:00.000000Z" },
		{ INT64_C(253402300799999999), "9999-12-31T23:59:59.999999Z" },
		{ INT64_C(-11670976371999991), "1600-02-29T06:07:08.000009Z" },
	};
	char buf[64];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rows_format_timestamp(cases[i].usec, buf, sizeof buf);
		ASSERT_EQ_STR(buf, cases[i].s);
	}
	/* a short buffer is cut, and still terminated */
	memset(buf, 'X', sizeof buf);
	rows_format_timestamp(INT64_C(1705314600000000), buf, 11);
	ASSERT_EQ_STR(buf, "2024-01-15");
	ASSERT_EQ_INT(buf[11], 'X');
}

/* format then parse gives the same instant, over a spread of instants. */
static void
test_timestamp_round_trip(void)
{
	const int64_t lo = INT64_C(-62135596800000000), hi = INT64_C(253402300799999999);
	uint64_t x = 0x9E3779B97F4A7C15u;
	char buf[64];

	for (int i = 0; i < 20000; i++) {
		int64_t usec, back = 0;

		/* xorshift: deterministic, covers both sides of 1970 */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		usec = lo + (int64_t)(x % (uint64_t)(hi - lo));
		if (i < 4000)   /* and densely around the epoch, where signs flip */
			usec = (int64_t)(x % 400000000000ULL) - 200000000000;
		rows_format_timestamp(usec, buf, sizeof buf);
		if (rows_parse_timestamp(buf, strlen(buf), &back) != 0)
			TEST_FAIL_("%" PRId64 " formats as '%s', which does not parse", usec, buf);
		if (back != usec)
			TEST_FAIL_("%" PRId64 " -> '%s' -> %" PRId64, usec, buf, back);
	}
}

/* ---- ids, rejection, per-row facts ---- */

static void
test_id_rejected(void)
{
	size_t len;

	ASSERT_ADD_PAGE("[{\"call_status\":\"completed\"},{\"id\":123},{\"id\":\"\"},{\"id\":null},"
	    "{\"id\":{\"v\":\"x\"}},{\"id\":\"ok\"}]");
	ASSERT_EQ_UINT(nrcs, 6);
	for (int i = 0; i < 5; i++)
		if (rcs[i] != 1)
			TEST_FAIL_("record %d: rows_add gave %d, expected 1 (rejected)", i, rcs[i]);
	ASSERT_EQ_INT(rcs[5], 0);
	ASSERT_EQ_UINT(rows_rejected(R), 5);
	ASSERT_EQ_UINT(rows_count(R), 1);
	ASSERT_EQ_STR(rows_reject_reason(R), "call #5 of the page has no string \"id\"");
	ASSERT_DECODED_ROWS(1);
	/* the sequence column is the position in the page, rejected calls included */
	ASSERT_CELL(0, C_SEQ, "5");
	ASSERT_EQ_STR(rows_id(R, 0), "ok");
	rows_copy_data(R, &len);

	/* a rejected call adds nothing to the batch */
	hand_record(NULL, "{}");
	hrec.index = 6;
	ASSERT_EQ_INT(rows_add(R, &hrec), 1);
	ASSERT_EQ_STR(rows_reject_reason(R), "call #7 of the page has no string \"id\"");
	{
		size_t len2;
		rows_copy_data(R, &len2);
		ASSERT_EQ_UINT(len2, len);
	}
}

static void
test_id_with_nul_rejected(void)
{
	static const char id[] = { 'a', '\0', 'b' };

	hand_record("x", "{}");
	hrec.f[FIELD_ID].text = id;
	hrec.f[FIELD_ID].len = sizeof id;
	ASSERT_EQ_INT(rows_add(R, &hrec), 1);
	ASSERT_EQ_UINT(rows_count(R), 0);
}

static void
test_duplicate_id_rejected(void)
{
	ASSERT_ADD_PAGE("[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"a\",\"call_status\":\"failed\"},"
	    "{\"id\":\"ab\"},{\"id\":\"A\"}]");
	ASSERT_EQ_INT(rcs[0], 0);
	ASSERT_EQ_INT(rcs[1], 0);
	ASSERT_EQ_INT(rcs[2], 1);
	ASSERT_EQ_INT(rcs[3], 0);   /* a prefix is another id */
	ASSERT_EQ_INT(rcs[4], 0);   /* ids are case-sensitive */
	ASSERT_EQ_UINT(rows_count(R), 4);
	ASSERT_EQ_UINT(rows_rejected(R), 1);
	ASSERT_CONTAINS(rows_reject_reason(R), "call #3 of the page");
	ASSERT_CONTAINS(rows_reject_reason(R), "repeats id a");
	ASSERT_DECODED_ROWS(4);
	/* the first one stays */
	ASSERT_CELL(0, C_STATUS, NULL);
	ASSERT_EQ_STR(rows_id(R, 2), "ab");
	ASSERT_EQ_STR(rows_id(R, 3), "A");
}

static void
test_row_facts(void)
{
	ASSERT_ADD_PAGE("["
	    "{\"id\":\"f0\",\"call_status\":\"in-progress\",\"call_started_at\":\"2024-01-15T10:30:00Z\"},"
	    "{\"id\":\"f1\",\"call_status\":\"completed\",\"call_started_at\":\"1969-12-31T23:59:59Z\"},"
	    "{\"id\":\"f2\",\"call_status\":\"In-Progress\"},"
	    "{\"id\":\"f3\",\"call_status\":\"in-progress \"},"
	    "{\"id\":\"f4\",\"call_status\":\"in-progres\"},"
	    "{\"id\":\"f5\",\"call_status\":null,\"call_started_at\":\"2024-01-15T10:30:00+02:00\"},"
	    "{\"id\":\"f6\"},"
	    "{\"id\":\"f7\",\"call_status\":\"in-progresS\"}"
	    "]");
	ASSERT_EQ_UINT(rows_count(R), 8);
	ASSERT_EQ_INT(rows_in_progress(R, 0), 1);
	for (size_t i = 1; i < 8; i++)
		if (rows_in_progress(R, i) != 0)
			TEST_FAIL_("row %zu is taken as in-progress", i);
	ASSERT_EQ_INT(rows_started_at(R, 0), INT64_C(1705314600000000));
	ASSERT_EQ_INT(rows_started_at(R, 1), INT64_C(-1000000));
	ASSERT_EQ_INT(rows_started_at(R, 2), ROWS_NO_TIME);
	ASSERT_EQ_INT(rows_started_at(R, 5), INT64_C(1705307400000000));
	ASSERT_EQ_INT(rows_started_at(R, 6), ROWS_NO_TIME);
	for (size_t i = 0; i < 8; i++) {
		char want[8];
		snprintf(want, sizeof want, "f%zu", i);
		ASSERT_EQ_STR(rows_id(R, i), want);
	}
}

/* ---- the cap and reset ---- */

static void
test_cap_leaves_batch_unchanged(void)
{
	char before[4096], page[2048], big[1200];
	size_t len_before, len, count;
	unsigned warnings;
	const char *s;
	int added = 0, rc = 0;

	rows_free(R);
	R = rows_new(2048);
	ASSERT_TRUE(R != NULL);
	memset(big, 'z', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	/* rows of ~250 bytes of COPY text each, until one does not fit */
	for (int i = 0; i < 20 && rc == 0; i++) {
		snprintf(page, sizeof page, "[{\"id\":\"cap-%02d\",\"call_intent\":\"%.*s\"}]", i, 100,
		    big);
		s = rows_copy_data(R, &len_before);
		if (len_before > 0)
			memcpy(before, s, len_before);
		count = rows_count(R);
		ASSERT_ADD_PAGE(page);
		rc = rcs[0];
		if (rc == 0)
			added++;
	}
	ASSERT_EQ_INT(rc, -1);
	ASSERT_TRUE(added >= 4);
	/* the refused row left no trace */
	ASSERT_EQ_UINT(rows_count(R), count);
	s = rows_copy_data(R, &len);
	ASSERT_EQ_MEM(s, len, before, len_before);
	ASSERT_TRUE(len <= 2048);
	ASSERT_DECODED_ROWS(added);
	ASSERT_EQ_STR(rows_id(R, count - 1), cells[count - 1][C_ID]);

	/* a smaller row still fits, and the refused id is not "already in the batch" */
	snprintf(page, sizeof page, "[{\"id\":\"cap-%02d\"}]", added);
	ASSERT_ADD_PAGE(page);
	ASSERT_EQ_INT(rcs[0], 0);
	ASSERT_EQ_UINT(rows_count(R), count + 1);
	ASSERT_DECODED_ROWS(added + 1);
	for (size_t i = 0; i < count + 1; i++)
		ASSERT_EQ_STR(rows_id(R, i), cells[i][C_ID]);

	/* a row that needs warnings and does not fit changes no counter either */
	warnings = rows_warnings(R);
	snprintf(page, sizeof page, "[{\"id\":\"warn-big\",\"duration_seconds\":\"x\","
	    "\"call_intent\":\"%s\"}]", big);
	ASSERT_ADD_PAGE(page);
	ASSERT_EQ_INT(rcs[0], -1);
	ASSERT_EQ_UINT(rows_count(R), count + 1);
	ASSERT_EQ_UINT(rows_rejected(R), 0);
	ASSERT_EQ_UINT(rows_warnings(R), warnings);
}

/* A single row larger than the whole cap never fits. */
static void
test_cap_single_row_too_large(void)
{
	static char raw[600];

	rows_free(R);
	R = rows_new(512);
	ASSERT_TRUE(R != NULL);
	memset(raw, 'r', sizeof raw - 1);
	hand_record("only", raw);
	ASSERT_EQ_INT(rows_add(R, &hrec), -1);
	ASSERT_EQ_UINT(rows_count(R), 0);
	{
		size_t len;
		rows_copy_data(R, &len);
		ASSERT_EQ_UINT(len, 0);
	}
	hand_record("only", "{}");
	ASSERT_EQ_INT(rows_add(R, &hrec), 0);
	ASSERT_EQ_STR(rows_id(R, 0), "only");
}

static void
test_reset(void)
{
	size_t len;

	ASSERT_ADD_PAGE("[{\"id\":\"a\",\"duration_seconds\":\"x\"},{\"id\":\"a\"},{\"call_type\":\"y\"}]");
	ASSERT_EQ_UINT(rows_count(R), 1);
	ASSERT_EQ_UINT(rows_warnings(R), 1);
	ASSERT_EQ_UINT(rows_rejected(R), 2);
	ASSERT_TRUE(rows_reject_reason(R)[0] != '\0');
	rows_reset(R);
	ASSERT_EQ_UINT(rows_count(R), 0);
	ASSERT_EQ_UINT(rows_warnings(R), 0);
	ASSERT_EQ_UINT(rows_rejected(R), 0);
	ASSERT_EQ_STR(rows_reject_reason(R), "");
	rows_copy_data(R, &len);
	ASSERT_EQ_UINT(len, 0);
	/* the same id is new in the next batch */
	ASSERT_ADD_PAGE("[{\"id\":\"b\"},{\"id\":\"a\",\"call_status\":\"in-progress\"}]");
	ASSERT_EQ_INT(rcs[0], 0);
	ASSERT_EQ_INT(rcs[1], 0);
	ASSERT_EQ_UINT(rows_count(R), 2);
	ASSERT_EQ_STR(rows_id(R, 0), "b");
	ASSERT_EQ_STR(rows_id(R, 1), "a");
	ASSERT_EQ_INT(rows_in_progress(R, 1), 1);
	ASSERT_DECODED_ROWS(2);
	ASSERT_CELL(0, C_SEQ, "0");
	ASSERT_CELL(1, C_ID, "a");
}

/* Many rows: the batch's buffers grow and the ids stay right. */
static void
test_many_rows(void)
{
	char page[64];

	for (int i = 0; i < 1000; i++) {
		snprintf(page, sizeof page, "[{\"id\":\"id-%d\",\"duration_seconds\":%d}]", i, i);
		ASSERT_ADD_PAGE(page);
		ASSERT_EQ_INT(rcs[0], 0);
	}
	ASSERT_EQ_UINT(rows_count(R), 1000);
	for (size_t i = 0; i < 1000; i++) {
		char want[16];
		snprintf(want, sizeof want, "id-%zu", i);
		ASSERT_EQ_STR(rows_id(R, i), want);
	}
}

/* The duplicate check holds on many ids: each first one goes in, each repeat is rejected. */
static void
test_duplicate_check_many_ids(void)
{
	enum { N = 100000 };
	char id[32], raw[64];
	const char *reason, *kept_raw, *kept_id;

	rows_free(R);
	R = rows_new((size_t)64 << 20);
	ASSERT_TRUE(R != NULL);
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < N; i++) {
			snprintf(id, sizeof id, "call-%07u", i);
			snprintf(raw, sizeof raw, "{\"id\":\"%s\",\"pass\":%d}", id, pass);
			hand_record(id, raw);
			hrec.index = pass * N + i;
			ASSERT_EQ_INT(rows_add(R, &hrec), pass);
		}
	}
	ASSERT_EQ_UINT(rows_count(R), N);
	ASSERT_EQ_UINT(rows_rejected(R), N);
	ASSERT_EQ_UINT(rows_rejects(R), N);
	for (size_t i = 0; i < N; i += 997) {
		snprintf(id, sizeof id, "call-%07zu", i);
		ASSERT_EQ_STR(rows_id(R, i), id);
		rows_reject_at(R, i, &reason, &kept_raw, &kept_id);
		ASSERT_EQ_STR(kept_id, id);
		ASSERT_CONTAINS(reason, "repeats id");
		ASSERT_CONTAINS(kept_raw, "\"pass\":1");
	}
}

/* A row refused for the cap is not remembered: added again, it is not a duplicate. */
static void
test_refused_row_is_no_duplicate(void)
{
	static char big[2048];

	rows_free(R);
	R = rows_new(1024);
	ASSERT_TRUE(R != NULL);
	memset(big, 'x', sizeof big - 1);
	memcpy(big, "{\"id\":\"r1\",\"pad\":\"", 17);
	memcpy(big + sizeof big - 3, "\"}", 2);
	hand_record("r1", big);
	ASSERT_EQ_INT(rows_add(R, &hrec), -1);
	hand_record("r1", "{\"id\":\"r1\"}");
	ASSERT_EQ_INT(rows_add(R, &hrec), 0);
	ASSERT_EQ_INT(rows_add(R, &hrec), 1);
	rows_reset(R);
	ASSERT_EQ_INT(rows_add(R, &hrec), 0);
}

static const struct test_case tests[] = {
	TEST(test_copy_exact_bytes),
	TEST(test_copy_escaping_round_trip),
	TEST(test_copy_escaping_in_raw),
	TEST(test_copy_nulls),
	TEST(test_copy_vendor_example),
	TEST(test_values_are_length_bounded),
	TEST(test_duration_typing),
	TEST(test_number_beyond_numeric_rejected),
	TEST(test_reject_index),
	TEST(test_append_pages_into_batch),
	TEST(test_text_columns_typing),
	TEST(test_appointment_booked),
	TEST(test_replaced_chars_warn),
	TEST(test_timestamp_columns),
	TEST(test_timestamp_not_a_string),
	TEST(test_parse_timestamp_values),
	TEST(test_parse_timestamp_fraction_past_microseconds),
	TEST(test_parse_timestamp_invalid),
	TEST(test_parse_timestamp_uses_len),
	TEST(test_format_timestamp),
	TEST(test_timestamp_round_trip),
	TEST(test_id_rejected),
	TEST(test_id_with_nul_rejected),
	TEST(test_duplicate_id_rejected),
	TEST(test_duplicate_check_many_ids),
	TEST(test_refused_row_is_no_duplicate),
	TEST(test_row_facts),
	TEST(test_cap_leaves_batch_unchanged),
	TEST(test_cap_single_row_too_large),
	TEST(test_reset),
	TEST(test_many_rows),
};

int
main(int argc, char **argv)
{
	int rc;

	test_data_dir = argc > 1 ? argv[1] : NULL;
	/* the warnings rows_add logs are expected here; keep the output readable */
	log_init(LOG_LEVEL_ERROR);
	rc = test_main(tests, sizeof tests / sizeof tests[0], setup, argv + 2,
	    argc > 2 ? argc - 2 : 0);
	cells_free();
	rows_free(R);
	return rc;
}
