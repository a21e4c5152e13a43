/* store: the PostgreSQL side: schema, page commits, cursor and run history. */
#include "store.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "migrations.h"

/* pg_advisory_lock key space of this program: 'VozA' */
#define STORE_LOCK_CLASS "1450801729"
/*
 * 'VozD': the daemon's of a source, held for its life. The source's own lock
 * is given back between passes; this one keeps a second daemon of the source
 * from taking turns with the first.
 */
#define STORE_DAEMON_CLASS "1450801732"
/* A wait for a lock that timed out (lock_timeout): still busy, not an error. */
#define STORE_LOCK_NOT_AVAILABLE "55P03"
/* A timestamptz from a bigint parameter of microseconds since the epoch, exactly. */
#define STORE_USEC(p) "('epoch'::timestamptz + " p "::bigint * interval '1 microsecond')"
#define STORE_COPY_CHUNK (1 << 20)
/* Pruning: rows per statement (a short lock), and per call (the rest waits for the next) */
#define STORE_PRUNE_BATCH 1000
#define STORE_PRUNE_MAX 50000

/*
 * Every statement the daemon runs, named once. The schema itself and the
 * merge logic live in sql/; what stays here is the per-session staging table
 * (its columns are the COPY format rows.c writes) and the bookkeeping.
 */
enum stmt_id {
	STMT_LOCK_SOURCE,
	STMT_UNLOCK_SOURCE,
	STMT_WAIT_SOURCE,
	STMT_LOCK_DAEMON,
	STMT_ABANDON_RUNS,
	STMT_STATE_LOAD,
	STMT_RUN_BEGIN,
	STMT_RUN_FINISH,
	STMT_MERGE,
	STMT_STATE_SAVE,
	STMT_UNFINISHED,
	STMT_FINISH_BACKFILL,
	STMT_SEEN_CLEAR,
	STMT_BACKFILL_UNSEEN,
	STMT_PING,
	STMT_NEWEST_MIRRORED,
	STMT_STATUS_SOURCES,
	STMT_STATUS_RUNS,
	STMT_PRUNE_RUNS,
	STMT_PRUNE_REJECTS,
	STMT_PRUNE_CHANGES,
	STMT_CONFIGURE_SOURCE,
	STMT_COUNT
};

static const struct {
	const char *name;
	int nparams;
	const char *sql;
} stmts[STMT_COUNT] = {
	[STMT_LOCK_SOURCE] = { "lock_source", 1,
	    "SELECT pg_try_advisory_lock(" STORE_LOCK_CLASS ", hashtext($1))" },
	[STMT_UNLOCK_SOURCE] = { "unlock_source", 1,
	    "SELECT pg_advisory_unlock(" STORE_LOCK_CLASS ", hashtext($1))" },
	/* bounded by the session's lock_timeout: the caller asks again */
	[STMT_WAIT_SOURCE] = { "wait_source", 1,
	    "SELECT pg_advisory_lock(" STORE_LOCK_CLASS ", hashtext($1))" },
	[STMT_LOCK_DAEMON] = { "lock_daemon", 1,
	    "SELECT pg_try_advisory_lock(" STORE_DAEMON_CLASS ", hashtext($1))" },
	[STMT_ABANDON_RUNS] = { "abandon_runs", 1,
	    "UPDATE vozagent.sync_runs SET outcome = 'interrupted', finished_at = now(),"
	    " error = coalesce(error, 'the process ended before the pass finished')"
	    " WHERE source = $1 AND outcome = 'running'" },
	[STMT_STATE_LOAD] = { "state_load", 1,
	    "SELECT coalesce(api_order, ''),"
	    " (extract(epoch FROM newest_started_at) * 1000000)::bigint,"
	    " (extract(epoch FROM window_base_at) * 1000000)::bigint,"
	    " window_offset, backfill_offset, backfill_run_id,"
	    " (extract(epoch FROM last_backfill_at) * 1000000)::bigint,"
	    " backfill_wrap_to, (extract(epoch FROM backfill_refused_at) * 1000000)::bigint,"
	    " coalesce(backfill_refusal, '')"
	    " FROM vozagent.sync_state WHERE source = $1" },
	[STMT_FINISH_BACKFILL] = { "finish_backfill", 2,
	    "SELECT vozagent.finish_backfill($1, $2)" },
	[STMT_BACKFILL_UNSEEN] = { "backfill_unseen", 2,
	    "SELECT unseen, live FROM vozagent.backfill_unseen($1, $2)" },
	[STMT_SEEN_CLEAR] = { "seen_clear", 1,
	    "DELETE FROM vozagent.backfill_seen_batches WHERE source = $1" },
	[STMT_RUN_BEGIN] = { "run_begin", 2,
	    "INSERT INTO vozagent.sync_runs (source, mode) VALUES ($1, $2) RETURNING id" },
	[STMT_RUN_FINISH] = { "run_finish", 12,
	    "UPDATE vozagent.sync_runs SET requests = $2, pages = $3, records_seen = $4,"
	    " inserted = $5, updated = $6, rejected = $7, warnings = $8, marked_deleted = $9,"
	    " drift_rereads = $10, outcome = $11, error = $12, finished_at = now() WHERE id = $1" },
	/* the staged rows, the rejects ($4-$8, arrays) and the seen set of a backfill ($3 >= 0) */
	[STMT_MERGE] = { "merge", 8,
	    "SELECT inserted, updated FROM vozagent.merge_batch($1, $2, $3, $4::bigint[],"
	    " $5::bigint[], $6::text[], $7::text[], $8::text[])" },
	/*
	 * Compare-and-set: the row is written only if its cursor is still the one
	 * this process last committed (or loaded). Another writer, or a commit of
	 * ours whose answer was lost with the connection, makes it write nothing.
	 * Times travel as exact microseconds since the epoch. The run's counters
	 * ($17 = run id, $18-$26) ride along: a failed compare-and-set rolls them back.
	 */
	[STMT_STATE_SAVE] = { "state_save", 27,
	    "WITH run AS (UPDATE vozagent.sync_runs SET requests = $18, pages = $19,"
	    "  records_seen = $20, inserted = $21, updated = $22, rejected = $23, warnings = $24,"
	    "  marked_deleted = $25, drift_rereads = $26 WHERE id = $17)"
	    " INSERT INTO vozagent.sync_state AS s (source, api_order, newest_started_at,"
	    "  window_offset, backfill_offset, backfill_run_id, last_backfill_at, last_pass_at,"
	    "  window_base_at, backfill_wrap_to, backfill_refusal,"
	    "  backfill_refused_at)"
	    " VALUES ($1, nullif($2, ''), " STORE_USEC("$3") ", $4, $5, $6,"
	    "  CASE WHEN $7::bool THEN now() END, CASE WHEN $8::bool THEN now() END,"
	    "  " STORE_USEC("$9") ", $14::bigint, nullif($15, ''),"
	    "  CASE WHEN $16::bool THEN now() END)"
	    " ON CONFLICT (source) DO UPDATE SET api_order = EXCLUDED.api_order,"
	    "  newest_started_at = EXCLUDED.newest_started_at,"
	    "  window_base_at = EXCLUDED.window_base_at,"
	    "  window_offset = EXCLUDED.window_offset,"
	    "  backfill_offset = EXCLUDED.backfill_offset,"
	    "  backfill_run_id = EXCLUDED.backfill_run_id,"
	    "  backfill_wrap_to = EXCLUDED.backfill_wrap_to,"
	    "  backfill_refusal = EXCLUDED.backfill_refusal,"
	    "  backfill_refused_at = CASE WHEN $16::bool THEN now()"
	    "   WHEN EXCLUDED.backfill_refusal IS NOT NULL THEN s.backfill_refused_at END,"
	    "  last_backfill_at = coalesce(EXCLUDED.last_backfill_at, s.last_backfill_at),"
	    "  last_pass_at = coalesce(EXCLUDED.last_pass_at, s.last_pass_at),"
	    "  updated_at = now()"
	    " WHERE s.newest_started_at IS NOT DISTINCT FROM " STORE_USEC("$10")
	    "  AND s.window_base_at IS NOT DISTINCT FROM " STORE_USEC("$11")
	    "  AND s.backfill_offset IS NOT DISTINCT FROM $12::bigint"
	    "  AND s.backfill_run_id IS NOT DISTINCT FROM $13::bigint"
	    /*
	     * and the run's pages as this process last committed them (the CTE's
	     * update is not visible here): a commit whose answer was lost moved
	     * them on even where it left the cursor as it was
	     */
	    "  AND (SELECT r.pages FROM vozagent.sync_runs r WHERE r.id = $17) = $27::bigint" },
	[STMT_PING] = { "ping", 0, "SELECT 1" },
	/* calls dated more than a day ahead are not a cursor (see sync.c) */
	[STMT_NEWEST_MIRRORED] = { "newest_mirrored", 1,
	    "SELECT (extract(epoch FROM max(call_started_at)) * 1000000)::bigint"
	    " FROM vozagent.calls WHERE source = $1 AND call_started_at <= now() + interval '1 day'" },
	[STMT_UNFINISHED] = { "unfinished", 2,
	    "SELECT id, contact_id FROM vozagent.calls"
	    " WHERE source = $1 AND call_status = 'in-progress' AND deleted_at IS NULL"
	    "  AND NOT (id = ANY ($2::text[])) ORDER BY contact_id, id" },
	[STMT_STATUS_SOURCES] = { "status_sources", 0,
	    "SELECT source, coalesce(api_order, 'not yet detected'),"
	    " coalesce(to_char(newest_started_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'none'),"
	    " coalesce(window_offset::text, '-'),"
	    " CASE WHEN backfill_offset IS NULL THEN coalesce((SELECT 'REFUSED at '"
	    "  || to_char(x.backfill_refused_at, 'YYYY-MM-DD HH24:MI:SS TZ') || ': '"
	    "  || x.backfill_refusal FROM vozagent.sync_state x WHERE x.source = v.source),"
	    "  'none running')"
	    "  ELSE 'interrupted at offset ' || backfill_offset || coalesce((SELECT"
	    "  ' (re-reading the list from the start; it began at offset ' || x.backfill_wrap_to"
	    "  || ')' FROM vozagent.sync_state x WHERE x.source = v.source), '')"
	    "  || ' (the next backfill resumes)' END,"
	    " coalesce(to_char(last_backfill_at, 'YYYY-MM-DD HH24:MI:SS TZ'), 'never'),"
	    " coalesce(to_char(last_pass_at, 'YYYY-MM-DD HH24:MI:SS TZ'), 'never'),"
	    " live_calls, deleted_calls, in_progress_calls || coalesce(' (oldest started '"
	    "  || to_char(oldest_in_progress_started_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || ')', '')"
	    " FROM vozagent.sync_status v ORDER BY source" },
	[STMT_STATUS_RUNS] = { "status_runs", 1,
	    "SELECT to_char(started_at, 'YYYY-MM-DD HH24:MI:SS'), mode, outcome,"
	    " coalesce(round(extract(epoch FROM finished_at - started_at)::numeric, 1) || 's', '-'),"
	    " requests || ' requests', records_seen || ' seen', inserted || ' new',"
	    " updated || ' changed', marked_deleted || ' marked deleted',"
	    " warnings || ' warnings', rejected || ' rejected',"
	    " CASE WHEN drift_rereads > 0 THEN drift_rereads || ' drift re-reads' ELSE '' END,"
	    " coalesce('error: ' || error, '')"
	    " FROM vozagent.sync_runs WHERE source = $1 ORDER BY id DESC LIMIT 5" },
	/*
	 * History older than the retention ($2 ms), a batch ($3 rows) per
	 * statement so no lock is held long. The source's last run stays (status
	 * shows it), and so does a running one and an unfinished backfill's.
	 */
	[STMT_PRUNE_RUNS] = { "prune_runs", 3,
	    "DELETE FROM vozagent.sync_runs WHERE id IN (SELECT r.id FROM vozagent.sync_runs r"
	    " WHERE r.source = $1 AND r.started_at < now() - $2::bigint * interval '1 ms'"
	    "  AND r.finished_at < now() - $2::bigint * interval '1 ms' AND r.outcome <> 'running'"
	    "  AND r.id < (SELECT max(id) FROM vozagent.sync_runs WHERE source = $1)"
	    "  AND r.id IS DISTINCT FROM (SELECT backfill_run_id FROM vozagent.sync_state"
	    "   WHERE source = $1)"
	    " ORDER BY r.started_at LIMIT $3)" },
	[STMT_PRUNE_REJECTS] = { "prune_rejects", 3,
	    "DELETE FROM vozagent.rejects WHERE id IN (SELECT id FROM vozagent.rejects"
	    " WHERE source = $1 AND last_seen_at < now() - $2::bigint * interval '1 ms'"
	    " ORDER BY last_seen_at LIMIT $3)" },
	[STMT_PRUNE_CHANGES] = { "prune_changes", 3,
	    "SELECT vozagent.prune_changes($1, now() - $2::bigint * interval '1 ms', $3)" },
	/* the source's reporting settings: true when a new zone rebuilt its rollup */
	[STMT_CONFIGURE_SOURCE] = { "configure_source", 3,
	    "SELECT vozagent.configure_source($1, $2, $3::boolean)" },
};

static const char stage_ddl[] =
    "CREATE TEMP TABLE IF NOT EXISTS calls_stage ("
    " seq integer NOT NULL, id text NOT NULL, contact_id text, assistant_id text,"
    " call_type text, call_status text, duration_seconds numeric,"
    " call_started_at timestamptz, call_ended_at timestamptz, appointment_booked boolean,"
    " lead_qualification text, call_intent text, raw jsonb NOT NULL"
    ") ON COMMIT DELETE ROWS";

static const char session_setup[] =
    "SET TimeZone = 'UTC';"
    "SET client_min_messages = warning;"
    /* a stuck database must not hang the daemon forever */
    "SET statement_timeout = '5min';"
    "SET lock_timeout = '1min';"
    "SET idle_in_transaction_session_timeout = '10min';"
    /*
     * and the server must notice a peer that vanished (network gone, host
     * reset) in a minute, not the kernel's two hours: until it does, the dead
     * session keeps the source's locks and a restarted daemon waits for itself
     */
    "SET tcp_keepalives_idle = 30;"
    "SET tcp_keepalives_interval = 10;"
    "SET tcp_keepalives_count = 3";

struct store {
	PGconn *conn;
	PGcancel *cancel;        /* of conn: what a stop signal uses to cancel its statement */
	int conn_lost;
	bool prepared;           /* every statement of stmts[] is prepared on conn */
	char *conninfo;          /* kept to reconnect */
	char *locked_source;     /* the source lock to take again after reconnecting */
	bool locked;             /* conn holds locked_source's lock */
	char *daemon_source;     /* the daemon lock to take again after reconnecting */
	bool daemon_locked;      /* conn holds daemon_source's daemon lock */
	char sqlstate[6];        /* of the last failure, "" when it had none */
	bool config_error;       /* the last failure was a setting the server refused */
	char err[1024];
};

/*
 * The store runs on one thread at a time (the writer's, while the loop thread
 * leaves it alone), but SIGTERM may come on any thread while a statement
 * runs, and a statement may block for up to statement_timeout. A real signal
 * handler cancels the statement in flight (PQcancel is async-signal-safe),
 * remembers the stop, and hands the signal on to the handler it replaced
 * (libuv's). It cancels only while a statement runs (store_in_statement): a
 * request sent with none running may land on the next one, the recording of
 * the run's end, and one sent to a server that is gone may block the handler
 * in its connect. What the handler and the writer share are lock-free atomics
 * (safe in a handler, and between threads); the PGcancel is freed only once no
 * handler holds it (store_cancel_users), as the handler may run on another
 * thread while the writer drops the connection.
 */
_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2 &&
    ATOMIC_BOOL_LOCK_FREE == 2, "the signal handler needs lock-free atomics");
static _Atomic(PGcancel *) store_signal_cancel;
static atomic_int store_cancel_users;
static atomic_bool store_signalled;
static atomic_bool store_in_statement;
static struct {
	int signum;
	struct sigaction prev;
} store_chain[2];

static void
on_store_signal(int signum, siginfo_t *info, void *context)
{
	int saved = errno;
	PGcancel *cancel;
	char buf[256];

	atomic_store(&store_signalled, true);
	/* announced before the pointer is read: store_disarm waits for it */
	atomic_fetch_add(&store_cancel_users, 1);
	cancel = atomic_load(&store_signal_cancel);
	if (cancel != NULL && atomic_load(&store_in_statement))
		(void)PQcancel(cancel, buf, sizeof buf);
	atomic_fetch_sub(&store_cancel_users, 1);
	for (size_t i = 0; i < sizeof store_chain / sizeof store_chain[0]; i++) {
		const struct sigaction *prev = &store_chain[i].prev;

		if (store_chain[i].signum != signum)
			continue;
		if ((prev->sa_flags & SA_SIGINFO) != 0)
			prev->sa_sigaction(signum, info, context);
		else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN)
			prev->sa_handler(signum);
	}
	errno = saved;
}

/* The handler stops using s->cancel; then it may be freed. */
static void
store_disarm(struct store *s)
{
	atomic_store(&store_signal_cancel, NULL);
	/* a handler on another thread may have read the pointer just before */
	while (atomic_load(&store_cancel_users) > 0)
		sched_yield();
	if (s->cancel != NULL)
		PQfreeCancel(s->cancel);
	s->cancel = NULL;
}

int
store_cancel_on_signal(int signum)
{
	struct sigaction sa;

	for (size_t i = 0; i < sizeof store_chain / sizeof store_chain[0]; i++) {
		if (store_chain[i].signum != 0 && store_chain[i].signum != signum)
			continue;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = on_store_signal;
		sigfillset(&sa.sa_mask);
		sa.sa_flags = SA_RESTART | SA_SIGINFO;
		store_chain[i].signum = signum;
		return sigaction(signum, &sa, &store_chain[i].prev);
	}
	return -1;
}

bool
store_is_stopping(void)
{
	return atomic_load(&store_signalled);
}

/* Forgets the session: disarm the signal handler first, it may use the cancel object. */
static void
store_close(struct store *s)
{
	store_disarm(s);
	if (s->conn != NULL)
		PQfinish(s->conn);
	s->conn = NULL;
	s->prepared = false;
	s->locked = false;
	s->daemon_locked = false;
}

struct store *
store_new(void)
{
	return calloc(1, sizeof(struct store));
}

void
store_free(struct store *s)
{
	if (s == NULL)
		return;
	store_close(s);
	free(s->conninfo);
	free(s->locked_source);
	free(s->daemon_source);
	free(s);
}

const char *
store_errmsg(const struct store *s)
{
	return s->err;
}

int
store_conn_lost(const struct store *s)
{
	return s->conn_lost;
}

bool
store_failed_on_config(const struct store *s)
{
	return s->config_error;
}


/* SQLSTATE 25006: a write refused by a standby or a read-only session. */
static bool
store_is_read_only_error(const PGresult *res)
{
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return state != NULL && strcmp(state, "25006") == 0;
}

/*
 * SQLSTATE class 08 (connection exception), or 57P01-57P03: the server is
 * shutting down, crashed, or not accepting connections yet. libpq hands
 * the FATAL message over before it has read the end of the connection, so
 * the connection can still look good at that moment.
 */
static bool
store_is_gone_error(const PGresult *res)
{
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return state != NULL && (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
	    strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0);
}

/* Records an error: what we were doing, then libpq's words on one line. */
static int
store_fail(struct store *s, const PGresult *res, const char *fmt, ...)
{
	va_list ap;
	size_t n;
	const char *pq = res != NULL ? PQresultErrorMessage(res) : "";
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	snprintf(s->sqlstate, sizeof s->sqlstate, "%s", state != NULL ? state : "");
	s->config_error = false;
	if ((pq == NULL || *pq == '\0') && s->conn != NULL)
		pq = PQerrorMessage(s->conn);
	va_start(ap, fmt);
	n = (size_t)vsnprintf(s->err, sizeof s->err, fmt, ap);
	va_end(ap);
	if (n < sizeof s->err && pq != NULL && *pq != '\0')
		snprintf(s->err + n, sizeof s->err - n, ": %s", pq);
	/* libpq's messages end in a newline and may span lines */
	{
		/* one line: newlines and tabs become single spaces */
		char *w = s->err;
		for (const char *r = s->err; *r != '\0'; r++) {
			char c = *r == '\n' || *r == '\t' ? ' ' : *r;
			if (c != ' ' || w == s->err || w[-1] != ' ')
				*w++ = c;
		}
		*w = '\0';
	}
	n = strlen(s->err);
	while (n > 0 && isspace((unsigned char)s->err[n - 1]))
		s->err[--n] = '\0';
	/*
	 * A server that became read-only (promoted away, default_transaction_read_only)
	 * is treated like a lost one: the reconnect looks for a writable server.
	 */
	if (store_is_read_only_error(res)) {
		store_close(s);
		snprintf(s->err + n, sizeof s->err - n, " (the server is read-only)");
	} else if (store_is_gone_error(res)) {
		store_close(s);
	}
	s->conn_lost = s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK;
	if (s->conn_lost && s->cancel != NULL) {
		/* the server is gone: nothing to cancel there, and it may not answer */
		store_disarm(s);
	}
	return -1;
}

/* Once a stop signal came, no new work starts; only the run's end is still recorded. */
static int
store_stopping_fail(struct store *s, const char *what)
{
	snprintf(s->err, sizeof s->err, "%s: not started, the process is stopping", what);
	s->conn_lost = 0;
	return -1;
}

/* Runs a command that returns no rows. */
static int
store_exec(struct store *s, const char *sql, const char *what)
{
	PGresult *res;
	int ok;

	atomic_store(&store_in_statement, true);
	if (atomic_load(&store_signalled)) {
		atomic_store(&store_in_statement, false);
		return store_stopping_fail(s, what);
	}
	res = PQexec(s->conn, sql);
	atomic_store(&store_in_statement, false);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok)
		store_fail(s, res, "%s", what);
	PQclear(res);
	return ok ? 0 : -1;
}

/*
 * Runs a query that returns rows, with n text parameters: its result (PQclear
 * it), or NULL with the error recorded. For the few queries that are not
 * prepared (check, migrate, inspect).
 */
static PGresult *
store_select_params(struct store *s, const char *sql, int n, const char *const *params,
    const char *what)
{
	PGresult *res;

	atomic_store(&store_in_statement, true);
	res = PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL, 0);
	atomic_store(&store_in_statement, false);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		store_fail(s, res, "%s", what);
		PQclear(res);
		return NULL;
	}
	return res;
}

static PGresult *
store_select(struct store *s, const char *sql, const char *what)
{
	return store_select_params(s, sql, 0, NULL, what);
}

static PGresult *
store_run(struct store *s, enum stmt_id id, const char *const *params, ExecStatusType want)
{
	PGresult *res;

	/* the run's end is recorded even when stopping: a stop must not cancel it */
	atomic_store(&store_in_statement, id != STMT_RUN_FINISH);
	if (atomic_load(&store_signalled) && id != STMT_RUN_FINISH) {
		atomic_store(&store_in_statement, false);
		store_stopping_fail(s, stmts[id].name);
		return NULL;
	}
	/* after a preparation that failed, the run's end must still be recorded */
	if (s->prepared)
		res = PQexecPrepared(s->conn, stmts[id].name, stmts[id].nparams, params, NULL,
		    NULL, 0);
	else
		res = PQexecParams(s->conn, stmts[id].sql, stmts[id].nparams, NULL, params, NULL,
		    NULL, 0);
	atomic_store(&store_in_statement, false);
	if (PQresultStatus(res) != want) {
		store_fail(s, res, "statement %s failed", stmts[id].name);
		PQclear(res);
		return NULL;
	}
	return res;
}

static void
store_rollback(struct store *s)
{
	if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK &&
	    PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		PQclear(PQexec(s->conn, "ROLLBACK"));
}

/* Server warnings go to our log, on one line, instead of raw to stderr. */
static void
on_pq_notice(void *arg, const char *message)
{
	size_t n = strlen(message);

	(void)arg;
	while (n > 0 && isspace((unsigned char)message[n - 1]))
		n--;
	log_warnx("PostgreSQL: %.*s", (int)n, message);
}

/* The effective connection options a reader may see (never the password), at debug level. */
static void
store_log_options(PGconn *conn)
{
	static const char *const shown[] = { "host", "hostaddr", "port", "dbname", "user",
		"client_encoding", "target_session_attrs", "connect_timeout", "tcp_user_timeout",
		"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
		"sslmode", NULL };
	PQconninfoOption *opts = PQconninfo(conn);
	char line[1024];
	size_t n = 0;

	if (opts == NULL)
		return;
	line[0] = '\0';
	for (const char *const *k = shown; *k != NULL; k++) {
		for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
			if (strcmp(o->keyword, *k) != 0 || o->val == NULL || *o->val == '\0')
				continue;
			if (n < sizeof line)
				n += (size_t)snprintf(line + n, sizeof line - n, " %s=%s", *k, o->val);
		}
	}
	PQconninfoFree(opts);
	log_debug("PostgreSQL connection options:%s", line);
}

/* A database that cannot hold what the API sends is refused, not written to. */
static int
store_check_encoding(struct store *s)
{
	const char *server = PQparameterStatus(s->conn, "server_encoding");
	const char *client = PQparameterStatus(s->conn, "client_encoding");

	if (server == NULL || strcmp(server, "UTF8") != 0) {
		snprintf(s->err, sizeof s->err, "database \"%s\" uses encoding %s: vozagent-sync "
		    "needs a UTF8 database, %s; create one with CREATE DATABASE ... ENCODING 'UTF8' "
		    "TEMPLATE template0", PQdb(s->conn), server != NULL ? server : "(unknown)",
		    server != NULL && strcmp(server, "SQL_ASCII") == 0 ?
		    "since SQL_ASCII stores bytes unchecked and text then compares and sorts as bytes" :
		    "since this one cannot store every character the API may send");
		s->conn_lost = 0;
		return -1;
	}
	if (client == NULL || strcmp(client, "UTF8") != 0) {
		snprintf(s->err, sizeof s->err, "the session's client_encoding is %s, not UTF8",
		    client != NULL ? client : "(unknown)");
		s->conn_lost = 0;
		return -1;
	}
	return 0;
}

/*
 * A standby (or a session that is read-only by default) cannot take a page:
 * the session is dropped and the failure reads as a lost server, so `run`
 * waits for a writable one instead of exiting.
 */
static int
store_check_writable(struct store *s)
{
	PGresult *res;
	bool recovery, read_only;

	res = store_select(s,
	    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')::bool",
	    "cannot ask PostgreSQL whether it is writable");
	if (res == NULL)
		return -1;
	recovery = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	read_only = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	PQclear(res);
	if (!recovery && !read_only)
		return 0;
	store_close(s);
	store_fail(s, NULL, "the PostgreSQL server is read-only (%s); vozagent-sync needs a "
	    "writable one", recovery ? "a standby in recovery" :
	    "default_transaction_read_only is on");
	return -1;
}

static int
store_open(struct store *s)
{
	/*
	 * Defaults come before dbname, so the operator's connection string
	 * overrides them: a dead server or network must not hang the daemon, a
	 * black-holed one must not hold a statement for the kernel's 15 minutes,
	 * and of several hosts the writable one is wanted. client_encoding comes
	 * after: the daemon sends UTF-8, whatever PGCLIENTENCODING or the string says.
	 */
	const char *keys[12], *vals[12];
	int n = 0;

#define STORE_OPT(k, v) (keys[n] = (k), vals[n] = (v), n++)
	STORE_OPT("connect_timeout", "10");
	STORE_OPT("keepalives", "1");
	STORE_OPT("keepalives_idle", "30");
	STORE_OPT("keepalives_interval", "10");
	STORE_OPT("keepalives_count", "3");
	/* an older libpq would refuse to connect at all over an option it does not know */
	if (PQlibVersion() >= 120000)
		STORE_OPT("tcp_user_timeout", "30000");
	/* an explicit default would hide the operator's PGTARGETSESSIONATTRS */
	if (getenv("PGTARGETSESSIONATTRS") == NULL)
		STORE_OPT("target_session_attrs", "read-write");
	STORE_OPT("dbname", s->conninfo);
	STORE_OPT("fallback_application_name", "vozagent-sync");
	STORE_OPT("client_encoding", "UTF8");
	STORE_OPT(NULL, NULL);
#undef STORE_OPT

	store_close(s);
	s->conn = PQconnectdbParams(keys, vals, 1);
	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK)
		return store_fail(s, NULL, "cannot connect to PostgreSQL");
	s->conn_lost = 0;
	s->cancel = PQgetCancel(s->conn);
	atomic_store(&store_signal_cancel, s->cancel);
	PQsetNoticeProcessor(s->conn, on_pq_notice, NULL);
	store_log_options(s->conn);
	if (store_check_encoding(s) < 0 || store_check_writable(s) < 0)
		return -1;
	return store_exec(s, session_setup, "cannot set up the database session");
}

int
store_connect(struct store *s, const char *conninfo)
{
	free(s->conninfo);
	s->conninfo = strdup(conninfo);
	if (s->conninfo == NULL)
		return store_fail(s, NULL, "out of memory");
	return store_open(s);
}

static int store_prepare(struct store *s);

int
store_reconnect(struct store *s)
{
	int rc;

	if (store_open(s) < 0 || store_prepare(s) < 0)
		return -1;
	/* the locks died with the old session: take them again, or give up the pass */
	rc = s->daemon_source != NULL ? store_lock_daemon(s, s->daemon_source) : 0;
	if (rc == 1) {
		/* another daemon of the source runs now: this one must wait, not write */
		store_close(s);
		store_fail(s, NULL, "another vozagent-sync process took source '%s' while the "
		    "connection was down", s->daemon_source);
		s->conn_lost = 0;
		return -1;
	}
	if (rc < 0 || s->locked_source == NULL)
		return rc;
	rc = store_lock_source(s, s->locked_source);
	if (rc == 1) {
		/*
		 * Drop the session: whoever uses this store next must connect and
		 * take the lock like a newcomer, not write without it.
		 */
		store_close(s);
		store_fail(s, NULL, "another process took source '%s' while the connection was "
		    "down", s->locked_source);
		s->conn_lost = 0;
	}
	return rc == 0 ? 0 : -1;
}

/* Statements and the staging table need the schema, so they come after migrate. */
static int
store_prepare(struct store *s)
{
	PGresult *res;

	s->prepared = false;
	if (store_exec(s, stage_ddl, "cannot create the staging table") < 0)
		return -1;
	for (int i = 0; i < STMT_COUNT; i++) {
		atomic_store(&store_in_statement, true);
		res = PQprepare(s->conn, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL);
		atomic_store(&store_in_statement, false);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			store_fail(s, res, "cannot prepare statement %s", stmts[i].name);
			PQclear(res);
			return -1;
		}
		PQclear(res);
	}
	s->prepared = true;
	return 0;
}

/* The schema's version: 0 before the first migration; reads only, no privilege beyond USAGE. */
static int
store_schema_version(struct store *s, int *version)
{
	PGresult *res;
	bool exists;

	res = store_select(s, "SELECT to_regclass('vozagent.schema_migrations') IS NOT NULL",
	    "cannot look for vozagent.schema_migrations");
	if (res == NULL)
		return -1;
	exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	*version = 0;
	if (!exists)
		return 0;
	res = store_select(s, "SELECT coalesce(max(version), 0) FROM vozagent.schema_migrations",
	    "cannot read vozagent.schema_migrations");
	if (res == NULL)
		return -1;
	*version = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

static int
store_schema_too_new(struct store *s, int current, int latest)
{
	store_fail(s, NULL, "the database schema is at version %d, newer than this "
	    "vozagent-sync knows (%d): upgrade vozagent-sync before running it on this "
	    "database", current, latest);
	s->conn_lost = 0;
	return -1;
}

int
store_migrate(struct store *s, int *applied)
{
	const int latest = migrations[migrations_count - 1].version;
	PGresult *res;
	int current;

	*applied = 0;
	/*
	 * An up-to-date schema needs no lock and no CREATE: the role that only
	 * writes the mirror (see the README's grants) must be able to start.
	 */
	if (store_schema_version(s, &current) < 0)
		return -1;
	if (current > latest)
		return store_schema_too_new(s, current, latest);
	if (current == latest)
		return store_prepare(s);
	if (store_exec(s,
	    "BEGIN;"
	    /* two processes starting at once must not both migrate */
	    "SELECT pg_advisory_xact_lock(" STORE_LOCK_CLASS ", 0);"
	    "CREATE SCHEMA IF NOT EXISTS vozagent;"
	    "CREATE TABLE IF NOT EXISTS vozagent.schema_migrations ("
	    " version integer PRIMARY KEY, name text NOT NULL,"
	    " applied_at timestamptz NOT NULL DEFAULT now())",
	    "cannot prepare the schema") < 0)
		goto fail;
	/* again, under the lock: another process may have migrated meanwhile */
	if (store_schema_version(s, &current) < 0)
		goto fail;
	if (current > latest) {
		store_schema_too_new(s, current, latest);
		goto fail;
	}
	for (int i = 0; i < migrations_count; i++) {
		char ver[16];
		const char *params[2] = { ver, migrations[i].name };

		if (migrations[i].version <= current)
			continue;
		if (store_exec(s, migrations[i].sql, migrations[i].name) < 0)
			goto fail;
		snprintf(ver, sizeof ver, "%d", migrations[i].version);
		atomic_store(&store_in_statement, true);
		res = PQexecParams(s->conn,
		    "INSERT INTO vozagent.schema_migrations (version, name) VALUES ($1, $2)", 2,
		    NULL, params, NULL, NULL, 0);
		atomic_store(&store_in_statement, false);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			store_fail(s, res, "cannot record migration %s", migrations[i].name);
			PQclear(res);
			goto fail;
		}
		PQclear(res);
		(*applied)++;
	}
	if (store_exec(s, "COMMIT", "cannot commit the migrations") < 0)
		goto fail;
	return store_prepare(s);
fail:
	store_rollback(s);
	return -1;
}

/*
 * Runs one of the lock statements for source: 0 taken, 1 busy (a try that
 * said no), -1 failed. *name and *held then say which lock the session
 * holds. The name is copied first: a lock taken but not remembered would
 * not be taken again on reconnect.
 */
static int
store_take_lock(struct store *s, enum stmt_id stmt, const char *source, char **name, bool *held,
    const char *what)
{
	const char *params[1] = { source };
	PGresult *res;
	char *copy = NULL;
	bool got;

	if (*name == NULL || strcmp(*name, source) != 0) {
		copy = strdup(source);
		if (copy == NULL) {
			snprintf(s->err, sizeof s->err, "out of memory taking the %s of source '%s'",
			    what, source);
			s->sqlstate[0] = '\0';
			return -1;
		}
	}
	res = store_run(s, stmt, params, PGRES_TUPLES_OK);
	if (res == NULL) {
		free(copy);
		return -1;
	}
	/* the try forms answer t or f; the waiting one returns void once it has it */
	got = strcmp(PQgetvalue(res, 0, 0), "f") != 0;
	PQclear(res);
	*held = got;
	if (got && copy != NULL) {
		free(*name);
		*name = copy;
	} else {
		free(copy);
	}
	return got ? 0 : 1;
}

int
store_lock_source(struct store *s, const char *source)
{
	return store_take_lock(s, STMT_LOCK_SOURCE, source, &s->locked_source, &s->locked, "lock");
}

int
store_unlock_source(struct store *s)
{
	const char *params[1] = { s->locked_source };
	PGresult *res = NULL;

	if (s->locked_source == NULL)
		return 0;
	if (s->locked && s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK)
		res = store_run(s, STMT_UNLOCK_SOURCE, params, PGRES_TUPLES_OK);
	/* forgotten either way: a session that failed to unlock is dropped by the caller */
	s->locked = false;
	free(s->locked_source);
	s->locked_source = NULL;
	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

int
store_lock_daemon(struct store *s, const char *source)
{
	return store_take_lock(s, STMT_LOCK_DAEMON, source, &s->daemon_source, &s->daemon_locked,
	    "daemon lock");
}

int
store_wait_source(struct store *s, const char *source)
{
	/* a stop signal cancels it (store_cancel_on_signal): it fails like any statement */
	int rc = store_take_lock(s, STMT_WAIT_SOURCE, source, &s->locked_source, &s->locked,
	    "lock");

	/* the wait is bounded by lock_timeout: still busy, the caller asks again */
	if (rc < 0 && strcmp(s->sqlstate, STORE_LOCK_NOT_AVAILABLE) == 0 && !store_is_stopping())
		return 1;
	return rc;
}

int
store_ping(struct store *s)
{
	PGresult *res;

	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK)
		return store_fail(s, NULL, "no connection to PostgreSQL");
	/*
	 * A reconnect that could not prepare or lock leaves a session good only
	 * to record the end of its pass: the next one must start over. (One that
	 * found the daemon lock taken closed its session; a daemon lock found
	 * busy on a live session is simply asked for again.)
	 */
	if (!s->prepared || (s->locked_source != NULL && !s->locked)) {
		snprintf(s->err, sizeof s->err, "the PostgreSQL session is %s",
		    !s->prepared ? "not prepared" : "without the source's lock");
		s->conn_lost = 0;
		return -1;
	}
	res = store_run(s, STMT_PING, NULL, PGRES_TUPLES_OK);
	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

int
store_abandon_runs(struct store *s, const char *source)
{
	const char *params[1] = { source };
	PGresult *res = store_run(s, STMT_ABANDON_RUNS, params, PGRES_COMMAND_OK);

	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

static int64_t
get_int64(const PGresult *res, int col, int64_t null_value)
{
	if (PQgetisnull(res, 0, col))
		return null_value;
	return strtoll(PQgetvalue(res, 0, col), NULL, 10);
}

int
store_state_load(struct store *s, const char *source, struct sync_state *st)
{
	const char *params[1] = { source };
	PGresult *res = store_run(s, STMT_STATE_LOAD, params, PGRES_TUPLES_OK);

	memset(st, 0, sizeof *st);
	st->newest_started_at = st->window_base_at = st->last_backfill_at = ROWS_NO_TIME;
	st->refused_at = ROWS_NO_TIME;
	st->window_offset = st->backfill_offset = st->backfill_run_id = st->backfill_wrap_to = -1;
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1) {
		snprintf(st->api_order, sizeof st->api_order, "%s", PQgetvalue(res, 0, 0));
		st->newest_started_at = get_int64(res, 1, ROWS_NO_TIME);
		st->window_base_at = get_int64(res, 2, ROWS_NO_TIME);
		st->window_offset = get_int64(res, 3, -1);
		st->backfill_offset = get_int64(res, 4, -1);
		st->backfill_run_id = get_int64(res, 5, -1);
		st->last_backfill_at = get_int64(res, 6, ROWS_NO_TIME);
		st->backfill_wrap_to = get_int64(res, 7, -1);
		st->refused_at = get_int64(res, 8, ROWS_NO_TIME);
		snprintf(st->refusal, sizeof st->refusal, "%s", PQgetvalue(res, 0, 9));
	}
	PQclear(res);
	return 0;
}

int
store_newest_mirrored(struct store *s, const char *source, int64_t *usec)
{
	const char *params[1] = { source };
	PGresult *res = store_run(s, STMT_NEWEST_MIRRORED, params, PGRES_TUPLES_OK);

	if (res == NULL)
		return -1;
	*usec = get_int64(res, 0, ROWS_NO_TIME);
	PQclear(res);
	return 0;
}

int
store_run_begin(struct store *s, const char *source, const char *mode, int64_t *run_id)
{
	const char *params[2] = { source, mode };
	PGresult *res = store_run(s, STMT_RUN_BEGIN, params, PGRES_TUPLES_OK);

	if (res == NULL)
		return -1;
	*run_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

/* Run id and counters as text parameters $1..$10. */
#define RUN_NUMS 10
struct run_params {
	char v[RUN_NUMS][24];
	const char *p[RUN_NUMS + 2];
};

static void
run_params_fill(struct run_params *rp, int64_t run_id, const struct store_stats *st)
{
	const int64_t nums[RUN_NUMS] = { run_id, st->requests, st->pages, st->records_seen,
		st->inserted, st->updated, st->rejected, st->warnings, st->marked_deleted,
		st->drift_rereads };
	for (int i = 0; i < RUN_NUMS; i++) {
		snprintf(rp->v[i], sizeof rp->v[i], "%" PRId64, nums[i]);
		rp->p[i] = rp->v[i];
	}
}

int
store_run_finish(struct store *s, int64_t run_id, const char *outcome, const char *error,
    const struct store_stats *stats)
{
	struct run_params rp;
	PGresult *res;

	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK)
		return store_fail(s, NULL, "cannot record the end of the pass");
	store_rollback(s);
	run_params_fill(&rp, run_id, stats);
	rp.p[RUN_NUMS] = outcome;
	rp.p[RUN_NUMS + 1] = error;
	res = store_run(s, STMT_RUN_FINISH, rp.p, PGRES_COMMAND_OK);
	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

/*
 * Opens the batch's transaction and, when it has rows, COPYs them into the
 * staging table: BEGIN, the run id the history triggers record
 * (vozagent.run_id, for this transaction only) and the COPY go in one round
 * trip. The whole COPY is one statement a stop signal may cancel.
 */
static int
store_begin_copy(struct store *s, struct rows *rows, int64_t run_id)
{
	size_t len = 0;
	const char *data = rows != NULL && rows_count(rows) > 0 ? rows_copy_data(rows, &len) : NULL;
	char sql[128];
	PGresult *res;
	int ok;

	snprintf(sql, sizeof sql, "BEGIN; SET LOCAL vozagent.run_id = '%" PRId64 "'%s", run_id,
	    data != NULL ? "; COPY pg_temp.calls_stage FROM STDIN" : "");
	if (data == NULL)
		return store_exec(s, sql, "cannot begin the batch's transaction");
	atomic_store(&store_in_statement, true);
	if (atomic_load(&store_signalled)) {
		atomic_store(&store_in_statement, false);
		return store_stopping_fail(s, "the batch's COPY");
	}
	res = PQexec(s->conn, sql);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		atomic_store(&store_in_statement, false);
		store_fail(s, res, "cannot start COPY into the staging table");
		PQclear(res);
		return -1;
	}
	PQclear(res);
	ok = 1;
	/* in pieces: PQputCopyData takes an int, and a batch may be larger */
	for (size_t off = 0; off < len && ok; off += STORE_COPY_CHUNK) {
		size_t n = len - off < STORE_COPY_CHUNK ? len - off : STORE_COPY_CHUNK;
		ok = PQputCopyData(s->conn, data + off, (int)n) == 1;
	}
	if (!ok || PQputCopyEnd(s->conn, NULL) != 1) {
		atomic_store(&store_in_statement, false);
		return store_fail(s, NULL, "cannot send the batch to PostgreSQL");
	}
	res = PQgetResult(s->conn);
	atomic_store(&store_in_statement, false);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		store_fail(s, res, "COPY of the batch failed");
	PQclear(res);
	/* drain, so the connection is ready for the next command */
	while ((res = PQgetResult(s->conn)) != NULL)
		PQclear(res);
	return ok ? 0 : -1;
}

/* A bigint parameter as text, or NULL (SQL NULL) when v is the null value. */
static const char *
param_int64(char *buf, size_t len, int64_t v, int64_t null_value)
{
	if (v == null_value)
		return NULL;
	snprintf(buf, len, "%" PRId64, v);
	return buf;
}

static char *text_array_literal(const char *const *items, size_t n);

/* The cursor's compare-and-set, with the run's counters `stats`. */
static int
store_save_state(struct store *s, const struct store_page *page,
    const struct sync_state *expect, const struct sync_state *st,
    const struct store_stats *stats)
{
	char num[11][24];
	struct run_params rp;
	PGresult *res;

	run_params_fill(&rp, page->run_id, stats);
	{
		const char *params[16 + RUN_NUMS + 1] = { page->source, st->api_order,
			param_int64(num[0], 24, st->newest_started_at, ROWS_NO_TIME),
			param_int64(num[1], 24, st->window_offset, -1),
			param_int64(num[2], 24, st->backfill_offset, -1),
			param_int64(num[3], 24, st->backfill_run_id, -1),
			st->backfill_done ? "true" : "false", st->pass_done ? "true" : "false",
			param_int64(num[4], 24, st->window_base_at, ROWS_NO_TIME),
			param_int64(num[5], 24, expect->newest_started_at, ROWS_NO_TIME),
			param_int64(num[6], 24, expect->window_base_at, ROWS_NO_TIME),
			param_int64(num[7], 24, expect->backfill_offset, -1),
			param_int64(num[8], 24, expect->backfill_run_id, -1),
			param_int64(num[9], 24, st->backfill_wrap_to, -1), st->refusal,
			st->refuse_now ? "true" : "false" };
		memcpy(&params[16], rp.p, RUN_NUMS * sizeof rp.p[0]);
		params[16 + RUN_NUMS] = param_int64(num[10], 24, page->expect_pages, -1);
		res = store_run(s, STMT_STATE_SAVE, params, PGRES_COMMAND_OK);
	}
	if (res == NULL)
		return -1;
	if (strcmp(PQcmdTuples(res), "1") != 0) {
		PQclear(res);
		s->conn_lost = 0;
		snprintf(s->err, sizeof s->err, "the cursor of source '%s' changed under this pass "
		    "(another process, or a commit whose answer was lost with the connection): "
		    "nothing of this batch was written; the next pass starts from the new cursor",
		    page->source);
		return -1;
	}
	PQclear(res);
	return 0;
}

/* {1,2}: a bigint[] literal. */
static char *
int_array_literal(const int64_t *v, size_t n)
{
	char *buf = malloc(n * 21 + 3), *w = buf;

	if (buf == NULL)
		return NULL;
	*w++ = '{';
	for (size_t i = 0; i < n; i++)
		w += sprintf(w, "%s%" PRId64, i > 0 ? "," : "", v[i]);
	*w++ = '}';
	*w = '\0';
	return buf;
}

/*
 * The batch's rejects as five array parameters of merge_batch, one element per
 * record: page offset, list position, id (NULL when none), reason, raw.
 */
enum { REJ_OFFSET, REJ_POSITION, REJ_ID, REJ_REASON, REJ_RAW, REJ_ARRAYS };

static int
store_reject_arrays(const struct store_page *page, char *arr[REJ_ARRAYS])
{
	size_t n = page->rows != NULL ? rows_rejects(page->rows) : 0;
	int64_t *off = calloc(n + 1, sizeof *off), *pos = calloc(n + 1, sizeof *pos);
	const char **ids = calloc(n + 1, sizeof *ids), **reasons = calloc(n + 1, sizeof *reasons);
	const char **raws = calloc(n + 1, sizeof *raws);
	int rc = -1;

	memset(arr, 0, REJ_ARRAYS * sizeof arr[0]);
	if (off == NULL || pos == NULL || ids == NULL || reasons == NULL || raws == NULL)
		goto out;
	for (size_t i = 0; i < n; i++) {
		rows_reject_at(page->rows, i, &reasons[i], &raws[i], &ids[i]);
		rows_reject_where(page->rows, i, &off[i], &pos[i]);
	}
	arr[REJ_OFFSET] = int_array_literal(off, n);
	arr[REJ_POSITION] = int_array_literal(pos, n);
	arr[REJ_ID] = text_array_literal(ids, n);
	arr[REJ_REASON] = text_array_literal(reasons, n);
	arr[REJ_RAW] = text_array_literal(raws, n);
	rc = 0;
	for (int i = 0; i < REJ_ARRAYS; i++)
		if (arr[i] == NULL)
			rc = -1;
out:
	free(off);
	free(pos);
	free(ids);
	free(reasons);
	free(raws);
	return rc;
}

/* The staged rows, the rejects and the seen set, in one statement. */
static int
store_merge(struct store *s, const struct store_page *page, struct store_stats *next)
{
	char run[24], gen[24], *arr[REJ_ARRAYS];
	PGresult *res = NULL;

	snprintf(run, sizeof run, "%" PRId64, page->run_id);
	snprintf(gen, sizeof gen, "%" PRId64, page->backfill_gen);
	if (store_reject_arrays(page, arr) < 0) {
		store_fail(s, NULL, "out of memory for the batch's rejects");
		s->conn_lost = 0;
	} else {
		const char *params[8] = { page->source, run, gen, arr[REJ_OFFSET],
			arr[REJ_POSITION], arr[REJ_ID], arr[REJ_REASON], arr[REJ_RAW] };
		res = store_run(s, STMT_MERGE, params, PGRES_TUPLES_OK);
	}
	for (int i = 0; i < REJ_ARRAYS; i++)
		free(arr[i]);
	if (res == NULL)
		return -1;
	next->inserted += strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	next->updated += strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	return 0;
}

int
store_commit_page(struct store *s, const struct store_page *page,
    const struct sync_state *expect, const struct sync_state *st, struct store_stats *stats)
{
	struct store_stats next = *stats;
	PGresult *res;
	char gen[24];
	const char *src_gen[2] = { page->source, gen };
	struct rows *rows = page->rows;

	snprintf(gen, sizeof gen, "%" PRId64, page->backfill_gen);
	if (store_begin_copy(s, rows, page->run_id) < 0)
		goto fail;
	if (rows != NULL && (rows_count(rows) > 0 || rows_rejects(rows) > 0) &&
	    store_merge(s, page, &next) < 0)
		goto fail;
	if (st->backfill_done) {
		res = store_run(s, STMT_FINISH_BACKFILL, src_gen, PGRES_TUPLES_OK);
		if (res == NULL)
			goto fail;
		next.marked_deleted += strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
	}
	if (st->refuse_now) {
		res = store_run(s, STMT_SEEN_CLEAR, src_gen, PGRES_COMMAND_OK);
		if (res == NULL)
			goto fail;
		PQclear(res);
	}
	if (store_save_state(s, page, expect, st, &next) < 0)
		goto fail;
	if (store_exec(s, "COMMIT", "cannot commit the batch") < 0)
		goto fail;
	*stats = next;
	return 0;
fail:
	store_rollback(s);
	return -1;
}

/* Deletes up to `max` rows with stmt, in batches of STORE_PRUNE_BATCH, each its own transaction. */
static int
store_prune_one(struct store *s, enum stmt_id stmt, const char *source, const char *ms,
    int64_t max, int64_t *deleted)
{
	char batch[24];
	const char *params[3] = { source, ms, batch };

	snprintf(batch, sizeof batch, "%d", STORE_PRUNE_BATCH);
	*deleted = 0;
	while (*deleted < max) {
		/* a DELETE says how many in its tag; a function, in its one value */
		bool is_function = stmt == STMT_PRUNE_CHANGES;
		PGresult *res = store_run(s, stmt, params, is_function ? PGRES_TUPLES_OK :
		    PGRES_COMMAND_OK);
		int64_t n;

		if (res == NULL)
			return -1;
		n = strtoll(is_function ? PQgetvalue(res, 0, 0) : PQcmdTuples(res), NULL, 10);
		PQclear(res);
		*deleted += n;
		if (n < STORE_PRUNE_BATCH)
			break;
	}
	return 0;
}

int
store_prune(struct store *s, const char *source, const struct store_retention *keep,
    struct store_pruned *gone)
{
	char ms[24];

	memset(gone, 0, sizeof *gone);
	store_rollback(s);
	if (keep->history_ms > 0) {
		snprintf(ms, sizeof ms, "%" PRIu64, keep->history_ms);
		if (store_prune_one(s, STMT_PRUNE_RUNS, source, ms, STORE_PRUNE_MAX,
		    &gone->runs) < 0 ||
		    store_prune_one(s, STMT_PRUNE_REJECTS, source, ms, STORE_PRUNE_MAX,
		    &gone->rejects) < 0)
			return -1;
	}
	if (keep->changes_ms > 0) {
		snprintf(ms, sizeof ms, "%" PRIu64, keep->changes_ms);
		if (store_prune_one(s, STMT_PRUNE_CHANGES, source, ms, STORE_PRUNE_MAX,
		    &gone->changes) < 0)
			return -1;
	}
	return 0;
}

/* SQLSTATE 22023 (invalid_parameter_value): what configure_source raises for a zone. */
#define STORE_INVALID_PARAMETER "22023"

int
store_configure_source(struct store *s, const char *source, const char *time_zone,
    bool history, bool *rebuilt)
{
	const char *params[3] = { source, time_zone, history ? "true" : "false" };
	PGresult *res = store_run(s, STMT_CONFIGURE_SOURCE, params, PGRES_TUPLES_OK);

	*rebuilt = false;
	if (res == NULL) {
		/* a configuration mistake, not a database failure: say which key to fix */
		if (strcmp(s->sqlstate, STORE_INVALID_PARAMETER) == 0) {
			snprintf(s->err, sizeof s->err, "report_time_zone '%.64s' is not a time zone "
			    "PostgreSQL knows: " STORE_TIME_ZONE_REMEDY " (the daemon takes it at a "
			    "reload); nothing was synced", time_zone);
			s->config_error = true;
		}
		return -1;
	}
	*rebuilt = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return 0;
}

int
store_time_zone_is_known(struct store *s, const char *time_zone, bool *known)
{
	const char *params[1] = { time_zone };
	/* what configure_source accepts; check prepares nothing, so an ad hoc statement */
	PGresult *res = store_select_params(s, "SELECT EXISTS (SELECT 1 FROM"
	    " pg_catalog.pg_timezone_names WHERE name = $1)", 1, params,
	    "cannot ask PostgreSQL which time zones it knows");

	if (res == NULL)
		return -1;
	*known = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return 0;
}

int
store_backfill_unseen(struct store *s, const char *source, int64_t gen, int64_t *unseen,
    int64_t *live)
{
	char g[24];
	const char *params[2] = { source, g };
	PGresult *res;

	snprintf(g, sizeof g, "%" PRId64, gen);
	res = store_run(s, STMT_BACKFILL_UNSEEN, params, PGRES_TUPLES_OK);
	if (res == NULL)
		return -1;
	*unseen = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	*live = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	return 0;
}

/* {"a","b",NULL}: a text[] literal; items are quoted, so any character is safe. */
static char *
text_array_literal(const char *const *items, size_t n)
{
	size_t cap = 3, o = 0;
	char *buf;

	for (size_t i = 0; i < n; i++)
		cap += (items[i] != NULL ? strlen(items[i]) * 2 : 4) + 3;
	buf = malloc(cap);
	if (buf == NULL)
		return NULL;
	buf[o++] = '{';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf[o++] = ',';
		if (items[i] == NULL) {
			memcpy(buf + o, "NULL", 4);
			o += 4;
			continue;
		}
		buf[o++] = '"';
		for (const char *p = items[i]; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				buf[o++] = '\\';
			buf[o++] = *p;
		}
		buf[o++] = '"';
	}
	buf[o++] = '}';
	buf[o] = '\0';
	return buf;
}

int
store_unfinished(struct store *s, const char *source, const char *const *skip, size_t nskip,
    store_call_cb cb, void *arg)
{
	char *arr = text_array_literal(skip, nskip);
	const char *params[2] = { source, arr };
	PGresult *res;
	int rc = 0;

	if (arr == NULL)
		return store_fail(s, NULL, "out of memory");
	res = store_run(s, STMT_UNFINISHED, params, PGRES_TUPLES_OK);
	free(arr);
	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res) && rc == 0; i++)
		rc = cb(arg, PQgetvalue(res, i, 0),
		    PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1));
	PQclear(res);
	return rc;
}

static void
print_result(FILE *out, const PGresult *res, const char *indent)
{
	int rows = PQntuples(res), cols = PQnfields(res);

	for (int r = 0; r < rows; r++) {
		fputs(indent, out);
		for (int c = 0; c < cols; c++) {
			const char *v = PQgetisnull(res, r, c) ? "-" : PQgetvalue(res, r, c);
			if (*v != '\0')
				fprintf(out, "%s%s", c > 0 ? "  " : "", v);
		}
		fputc('\n', out);
	}
}

int
store_print_status(struct store *s, FILE *out)
{
	static const char *labels[] = { "source", "API order", "newest call mirrored",
		"lookback window at offset", "backfill", "last complete backfill",
		"last successful pass", "calls (live)", "calls (deleted)",
		"unfinished calls tracked" };
	PGresult *sources, *res;

	sources = store_run(s, STMT_STATUS_SOURCES, NULL, PGRES_TUPLES_OK);
	if (sources == NULL)
		return -1;
	if (PQntuples(sources) == 0)
		fprintf(out, "No source has synced yet. Run `vozagent-sync backfill` first.\n");
	for (int i = 0; i < PQntuples(sources); i++) {
		const char *params[1] = { PQgetvalue(sources, i, 0) };

		fprintf(out, "%s%s\n", i > 0 ? "\n" : "", PQgetvalue(sources, i, 0));
		for (int c = 1; c < PQnfields(sources); c++)
			fprintf(out, "  %-27s %s\n", labels[c], PQgetvalue(sources, i, c));
		res = store_run(s, STMT_STATUS_RUNS, params, PGRES_TUPLES_OK);
		if (res == NULL) {
			PQclear(sources);
			return -1;
		}
		fprintf(out, "  last passes (newest first):\n");
		print_result(out, res, "    ");
		PQclear(res);
	}
	PQclear(sources);
	return 0;
}

/*
 * The writer's rights of docs/writer-role.sql, each one the role lacks named
 * once: exactly what the statements above and the functions they call need,
 * and no more (the history and rollup tables are written by SECURITY DEFINER
 * triggers). Objects an older schema lacks are skipped. has_*_privilege with
 * a list is true when any is held: one per call.
 */
static const char rights_missing_sql[] =
    "SELECT concat_ws(', ',"
    " CASE WHEN NOT has_database_privilege(current_database(), 'TEMPORARY')"
    "  THEN 'TEMPORARY on the database' END,"
    " CASE WHEN NOT has_schema_privilege('vozagent', 'USAGE')"
    "  THEN 'USAGE on schema vozagent' END,"
    " (SELECT string_agg(w.p || ' on ' || w.t, ', ' ORDER BY w.t, w.p) FROM (VALUES"
    "  ('vozagent.calls', 'SELECT'), ('vozagent.calls', 'INSERT'),"
    "  ('vozagent.calls', 'UPDATE'),"
    "  ('vozagent.sync_state', 'SELECT'), ('vozagent.sync_state', 'INSERT'),"
    "  ('vozagent.sync_state', 'UPDATE'),"
    "  ('vozagent.sync_runs', 'SELECT'), ('vozagent.sync_runs', 'INSERT'),"
    "  ('vozagent.sync_runs', 'UPDATE'), ('vozagent.sync_runs', 'DELETE'),"
    "  ('vozagent.rejects', 'SELECT'), ('vozagent.rejects', 'INSERT'),"
    "  ('vozagent.rejects', 'UPDATE'), ('vozagent.rejects', 'DELETE'),"
    "  ('vozagent.backfill_seen_batches', 'SELECT'),"
    "  ('vozagent.backfill_seen_batches', 'INSERT'),"
    "  ('vozagent.backfill_seen_batches', 'DELETE'),"
    "  ('vozagent.schema_migrations', 'SELECT'), ('vozagent.sync_status', 'SELECT')) w(t, p)"
    /* CASE: the planner may ask has_table_privilege before it filters */
    "  WHERE CASE WHEN to_regclass(w.t) IS NOT NULL"
    "   THEN NOT has_table_privilege(to_regclass(w.t), w.p) END),"
    " (SELECT string_agg('USAGE on ' || q.seq, ', ' ORDER BY q.seq) FROM (SELECT"
    "  CASE WHEN to_regclass(t) IS NOT NULL THEN pg_get_serial_sequence(t, 'id') END seq"
    "  FROM unnest(ARRAY['vozagent.sync_runs', 'vozagent.rejects']) t) q"
    "  WHERE CASE WHEN q.seq IS NOT NULL THEN NOT has_sequence_privilege(q.seq, 'USAGE') END),"
    " (SELECT string_agg('EXECUTE on ' || f, ', ' ORDER BY f) FROM unnest(ARRAY["
    "  'vozagent.merge_batch(text,bigint,bigint,bigint[],bigint[],text[],text[],text[])',"
    "  'vozagent.finish_backfill(text,bigint)', 'vozagent.backfill_unseen(text,bigint)',"
    "  'vozagent.backfill_seen_ids(text,bigint)',"
    "  'vozagent.configure_source(text,text,boolean)',"
    "  'vozagent.prune_changes(text,timestamptz,bigint)']) f"
    "  WHERE CASE WHEN to_regprocedure(f) IS NOT NULL"
    "   THEN NOT has_function_privilege(to_regprocedure(f), 'EXECUTE') END))";

int
store_inspect(struct store *s, struct store_inspection *out)
{
	PGresult *res;

	memset(out, 0, sizeof *out);
	out->latest = migrations[migrations_count - 1].version;
	/* without USAGE the schema's version cannot even be read: that is the finding */
	res = store_select(s, "SELECT coalesce((SELECT has_schema_privilege(oid, 'USAGE')"
	    " FROM pg_namespace WHERE nspname = 'vozagent'), true)",
	    "cannot ask PostgreSQL whether this role may use schema vozagent");
	if (res == NULL)
		return -1;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		out->current = -1;
		snprintf(out->missing, sizeof out->missing, "USAGE on schema vozagent");
	}
	PQclear(res);
	if (out->current < 0)
		return 0;
	if (store_schema_version(s, &out->current) < 0)
		return -1;
	/* what migrate needs: CREATE SCHEMA checks the database's CREATE even when it exists */
	res = store_select(s, "SELECT has_database_privilege(current_database(), 'CREATE') AND"
	    " coalesce((SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace"
	    " WHERE nspname = 'vozagent'), true)", "cannot ask PostgreSQL what this role may create");
	if (res == NULL)
		return -1;
	out->may_migrate = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (out->current == 0)
		return 0;
	res = store_select(s, rights_missing_sql, "cannot ask PostgreSQL what this role may write");
	if (res == NULL)
		return -1;
	snprintf(out->missing, sizeof out->missing, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}
