/* store: the PostgreSQL side: schema, page commits, cursor and run history. */
#ifndef VOZAGENT_STORE_H
#define VOZAGENT_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rows.h"

/* vozagent.sync_state of one source; -1 / ROWS_NO_TIME / "" stand for NULL. Times in µs. */
struct sync_state {
	char api_order[16];
	int64_t newest_started_at;
	int64_t window_base_at;
	int64_t window_offset;
	int64_t backfill_offset;
	int64_t backfill_run_id;
	int64_t backfill_wrap_to; /* re-reading from offset 0: the offset the pass began at */
	int64_t last_backfill_at; /* read only: set by backfill_done */
	int64_t refused_at;       /* read only: set by refuse_now */
	char refusal[512];        /* why the last backfill marked nothing; "" = none */
	int backfill_done;        /* this commit completes a backfill: mark unseen calls */
	int refuse_now;           /* this commit ends a backfill that may not mark: record it */
	int pass_done;            /* this commit completes a pass */
};

struct store_stats {
	int64_t requests, pages, records_seen, inserted, updated, rejected, warnings;
	int64_t marked_deleted, drift_rereads;
};

struct store;

struct store *store_new(void);
void store_free(struct store *s);
/* Why the last call failed; never holds a password. */
const char *store_errmsg(const struct store *s);
/* The last failure was the connection itself (not a query error). */
int store_conn_lost(const struct store *s);
/* The last failure was the configuration's (a time zone the server does not know). */
bool store_failed_on_config(const struct store *s);

/*
 * Connects with client_encoding UTF8, and by default target_session_attrs
 * read-write and tcp_user_timeout 30 s (conninfo overrides the defaults).
 * Refuses a database not encoded UTF8; a read-only server fails as a lost one.
 */
int store_connect(struct store *s, const char *conninfo);
/* After a lost connection: connect again, prepare, and take the source lock again. */
int store_reconnect(struct store *s);
/*
 * Applies pending migrations (only then does it need CREATE), prepares the
 * statements; refuses a schema newer than this binary.
 */
int store_migrate(struct store *s, int *applied);
/* One writer per source: 0 = ours, 1 = held by another session, -1 = error. */
int store_lock_source(struct store *s, const char *source);
/*
 * Waits in PostgreSQL's queue for the source's lock, so that the server hands
 * it over at the holder's next unlock (a try-lock polled between the daemon's
 * passes may never land). 0 = ours, 1 = lock_timeout passed first: ask again,
 * -1 = error (or stopped by a signal).
 */
int store_wait_source(struct store *s, const char *source);
/*
 * `run` only, for its life: one daemon per source. A second one of the same
 * source gets 1 and must wait, even while the first gives the source's own
 * lock back between passes. 0 = ours, 1 = another daemon has it, -1 = error.
 * Taken again on reconnect, like the source's lock.
 */
int store_lock_daemon(struct store *s, const char *source);
/*
 * Gives the source's lock back (between passes, so that a waiting backfill
 * can run); the session stays. -1 when it could not: drop the session then.
 */
int store_unlock_source(struct store *s);
/* Marks runs of a process that died mid-pass as interrupted. */
int store_abandon_runs(struct store *s, const char *source);

int store_state_load(struct store *s, const char *source, struct sync_state *st);
/* The newest call_started_at mirrored for source (ROWS_NO_TIME when none). */
int store_newest_mirrored(struct store *s, const char *source, int64_t *usec);
int store_run_begin(struct store *s, const char *source, const char *mode, int64_t *run_id);
int store_run_finish(struct store *s, int64_t run_id, const char *outcome, const char *error,
    const struct store_stats *stats);

struct store_page {
	const char *source;
	int64_t run_id;
	struct rows *rows;        /* a batch of one or more pages; NULL: the cursor alone */
	int64_t backfill_gen;     /* a backfill pass: remember the ids as seen by it; -1 = not */
	int64_t expect_pages;     /* the run's pages as last committed: part of the compare-and-set */
};

/*
 * One transaction: the batch's rows (staged with COPY, merged into
 * vozagent.calls where they differ, the later reading of a call staged twice
 * winning, remembered as seen in a backfill), its rejected records, the
 * run's counters and the source's cursor; when
 * st->backfill_done, also the marking of calls the backfill did not see
 * (page->backfill_gen); when st->refuse_now, forgetting what it saw.
 * stats->inserted, ->updated and ->marked_deleted grow by what it changed.
 * The cursor is written only if it is still `expect` (compare-and-set);
 * otherwise nothing is, and the error says the cursor moved.
 */
int store_commit_page(struct store *s, const struct store_page *page,
    const struct sync_state *expect, const struct sync_state *st, struct store_stats *stats);
/*
 * Is the session still there, prepared and holding the source's lock? (A
 * dropped idle connection shows only when used.)
 */
int store_ping(struct store *s);
/* Live calls of source, and how many of them backfill generation gen has not seen. */
int store_backfill_unseen(struct store *s, const char *source, int64_t gen, int64_t *unseen,
    int64_t *live);

/* Calls of source still in progress in the mirror, except those in skip (sorted). */
typedef int (*store_call_cb)(void *arg, const char *id, const char *contact_id);
int store_unfinished(struct store *s, const char *source, const char *const *skip,
    size_t nskip, store_call_cb cb, void *arg);

/*
 * From now on signum also cancels the statement in flight, then reaches the
 * handler installed before (install this after libuv's). Once it came, no
 * new statement starts except the one that records the end of the run.
 */
int store_cancel_on_signal(int signum);
/* A stop signal came: a failure since then is an interruption. */
bool store_is_stopping(void);

/* How long the source's history is kept, in ms; 0 = forever. */
struct store_retention {
	uint64_t history_ms;  /* sync_runs and rejects */
	uint64_t changes_ms;  /* call_changes */
};

/* What store_prune deleted. */
struct store_pruned {
	int64_t runs, rejects, changes;
};

/*
 * Deletes the source's run history and rejects older than keep->history_ms
 * (finished runs started and finished before it, rejects not seen since), and
 * its call_changes observed before keep->changes_ms, in small batches, each its
 * own transaction; at most a bounded number of each per call, the rest is left
 * for the next.
 */
int store_prune(struct store *s, const char *source, const struct store_retention *keep,
    struct store_pruned *gone);

/* What to do about a report_time_zone PostgreSQL does not know (pass and `check` alike). */
#define STORE_TIME_ZONE_REMEDY "set report_time_zone to a name it lists (SELECT name FROM " \
    "pg_timezone_names), e.g. UTC or Europe/Madrid"

/*
 * At the start of a pass, with the source's lock held: the source's reporting
 * settings (vozagent.configure_source). *rebuilt: the zone changed and the
 * source's rollup was rebuilt. A zone PostgreSQL does not know fails with a
 * message naming report_time_zone.
 */
int store_configure_source(struct store *s, const char *source, const char *time_zone,
    bool history, bool *rebuilt);
/* Does PostgreSQL know time_zone (pg_timezone_names)? Reads only: for `check`. */
int store_time_zone_is_known(struct store *s, const char *time_zone, bool *known);

/* What `check` reports of the database, without changing it. */
struct store_inspection {
	int current;              /* the schema's version; 0 = not created, -1 = no USAGE */
	int latest;               /* the newest this binary knows */
	bool may_migrate;         /* the role may create the schema and its tables */
	char missing[512];        /* the writer's rights the role lacks, "" = none (cut to fit) */
};

/* After store_connect: the schema's version and the role's rights. */
int store_inspect(struct store *s, struct store_inspection *out);

/* Where every source stands, for a person. */
int store_print_status(struct store *s, FILE *out);

#endif
