/* rows: types parsed calls into table rows, batched as COPY text for a page. */
#ifndef VOZAGENT_ROWS_H
#define VOZAGENT_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "parse.h"

#define ROWS_NO_TIME INT64_MIN

struct rows;

/* A batch grows to at most max_bytes of COPY text; rows_add fails past it. */
struct rows *rows_new(size_t max_bytes);
void rows_reset(struct rows *r);
void rows_free(struct rows *r);

/*
 * Types rec into one row of the batch. A field of the wrong type leaves its
 * column NULL (the value stays in raw) and counts a warning. Returns 0 when
 * added, 1 when rejected (no string id, an id already in this batch, or a
 * record PostgreSQL cannot hold: rows_reject_reason says which), -1 when the
 * batch is over its cap.
 */
int rows_add(struct rows *r, const struct record *rec);
const char *rows_reject_reason(const struct rows *r);
/* The rejected records of the batch, with why, for vozagent.rejects; id NULL when none. */
size_t rows_rejects(const struct rows *r);
void rows_reject_at(const struct rows *r, size_t i, const char **reason, const char **raw,
    const char **id);

/* Where rejected record i was in its page (0-based, counting every record of the page). */
unsigned rows_reject_index(const struct rows *r, size_t i);
/* The offset of the page the records given to rows_add next come from (0 until set). */
void rows_set_page_offset(struct rows *r, int64_t offset);
/* Rejected record i: the offset of its page, and its own position in the listing. */
void rows_reject_where(const struct rows *r, size_t i, int64_t *page_offset,
    int64_t *position);

/*
 * Batches of several pages are built from pages' rows: row i of src goes
 * into dst, numbered in dst's order (the staging table's seq). A batch may
 * hold a call twice (read again after the list moved): the merge keeps the
 * later reading, the one with the larger seq. 0, or -1 past dst's cap. The
 * row's warnings count in dst's rows_warnings.
 */
int rows_append_row(struct rows *dst, const struct rows *src, size_t i);
/* Rejected record j of src goes into dst, where it was listed with it: 0 or -1. */
int rows_append_reject(struct rows *dst, const struct rows *src, size_t j);
/* Row i's record index in its page. */
unsigned rows_record_index(const struct rows *r, size_t i);

size_t rows_count(const struct rows *r);
unsigned rows_warnings(const struct rows *r);
unsigned rows_rejected(const struct rows *r);

/* The batch as PostgreSQL COPY text, in the column order of the staging table. */
const char *rows_copy_data(const struct rows *r, size_t *len);

/* What the sync logic needs to know of row i (0-based, in page order). */
const char *rows_id(const struct rows *r, size_t i);
int64_t rows_started_at(const struct rows *r, size_t i);   /* ROWS_NO_TIME if untyped */
int rows_in_progress(const struct rows *r, size_t i);

/* Strict RFC 3339 ("2024-01-15T10:30:00Z", "...00.123+02:00"; no zone = UTC). */
int rows_parse_timestamp(const char *s, size_t len, int64_t *usec);
/* usec since the epoch -> "2024-01-15T10:30:00.000000Z" */
void rows_format_timestamp(int64_t usec, char *buf, size_t buflen);

#endif
