/* main: the command line, and setting the modules up in order. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/prctl.h>
#include <sys/resource.h>

#include <uv.h>

#include "check.h"
#include "config.h"
#include "fetch.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "sched.h"
#include "store.h"
#include "sync.h"

/* sysexits.h values: the systemd unit and operators' scripts rely on them */
enum {
	EXIT_OK = 0,
	EXIT_USAGE = 64,
	EXIT_DATAERR = 65,       /* a backfill refused to mark most of the mirror deleted */
	EXIT_UNAVAILABLE = 69,   /* PostgreSQL unreachable or unusable */
	EXIT_SOFTWARE = 70,
	EXIT_TEMPFAIL = 75,      /* the API failed, or the pass was interrupted: try again */
	EXIT_NOPERM = 77,        /* the API refused the key */
	EXIT_CONFIG = 78,
};

enum command { CMD_RUN, CMD_ONCE, CMD_BACKFILL, CMD_MIGRATE, CMD_STATUS, CMD_CHECK };

static const char *const command_names[] = { "run", "once", "backfill", "migrate", "status",
    "check" };

/*
 * `run` with metrics_listen: the metrics the passes report to, and the
 * listener reading them. A reload rebuilds fetch and sync, so what their
 * counters had reached is kept here: Prometheus counters never go back.
 */
struct app_serve {
	struct metrics *metrics;
	struct httpd *httpd;
	struct fetch_counts fetch_before;   /* of the fetches a reload replaced */
	int64_t retries_before;
};

struct app {
	struct config cfg;
	struct store *store;
	enum command cmd;
	int ready;           /* connected and migrated */
	int locked;          /* and the source is ours (run gives it back between passes) */
	int daemon;          /* run: and the source's daemon lock, held for the session's life */
	int daemon_busy_logged;
	int lock_busy_logged;
	int64_t pruned_at;   /* monotonic seconds of the last pruning; 0 = not yet */
	int allow_mass_delete;   /* backfill --allow-mass-delete */
	int wait;            /* once/backfill --wait: wait for the source's lock */
	int env_token;       /* the key came in VOZAGENT_API_TOKEN, wiped once read */
	/* the loop's modules: a reload rebuilds fetch and sync between passes */
	uv_loop_t *loop;
	struct fetch *fetch;
	struct sync *sync;
	struct sched *sched;
	struct config next;  /* reloaded, for the next pass */
	int has_next;
	struct app_serve serve;
};

/* `run` prunes the history at most this often; once and backfill once each. */
#define APP_PRUNE_EVERY_S 3600

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: vozagent-sync [-c FILE] COMMAND\n"
	    "       vozagent-sync [-c FILE] -n [COMMAND]\n"
	    "\n"
	    "Mirrors the VozAgent call log into PostgreSQL.\n"
	    "\n"
	    "commands:\n"
	    "  run        the daemon: an incremental pass every poll_interval, until SIGTERM\n"
	    "  once       one incremental pass, then exit\n"
	    "  backfill   a full pass from the start of the list (resumes if interrupted)\n"
	    "  migrate    create or upgrade the database schema, then exit\n"
	    "  status     show where each source stands\n"
	    "  check      check the configuration, the API and the database, then exit:\n"
	    "             0 all OK, 78 configuration, 77 key refused, 69 database, 75 API down\n"
	    "\n"
	    "options:\n"
	    "  -c, --config FILE  configuration file (default %s when it exists)\n"
	    "  -n, --check        check the configuration (for COMMAND, default run) and exit\n"
	    "      --allow-mass-delete\n"
	    "                     backfill only: mark calls deleted even beyond max_delete_fraction\n"
	    "      --wait         once and backfill: wait while another process syncs the source\n"
	    "                     (default: exit 75 at once)\n"
	    "  -h, --help         show this help\n"
	    "  -V, --version      show the version\n"
	    "\n"
	    "Every configuration key can also be set as VOZAGENT_<KEY> in the environment.\n",
	    CONFIG_DEFAULT_PATH);
}

/* Hands each line of a multi-line message to emit, after prefix. */
static void
each_line(const char *text, void (*emit)(const char *fmt, ...), const char *prefix)
{
	const char *w, *nl;

	for (w = text; w != NULL; w = nl != NULL ? nl + 1 : NULL) {
		nl = strchr(w, '\n');
		emit("%s%.*s", prefix, nl != NULL ? (int)(nl - w) : (int)strlen(w), w);
	}
}

static void LOG_PRINTF
warn_stderr(const char *fmt, ...)
{
	va_list ap;

	fputs("vozagent-sync: warning: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The configuration's warnings, one per line: to the log, or (-n) to stderr. */
static void
print_warnings(const char *warnings, int to_log)
{
	each_line(warnings, to_log ? log_warnx : warn_stderr, "");
}

/*
 * run: the source's daemon lock, so that a second daemon of the source (a
 * template instance whose config forgot `source`) waits instead of taking
 * turns with this one between passes: 0 ours, 1 not (busy or failed).
 */
static int
app_lock_daemon(struct app *a)
{
	int rc = store_lock_daemon(a->store, a->cfg.source);

	if (rc < 0) {
		log_errx("%s", store_errmsg(a->store));
		a->ready = 0;
		return 1;
	}
	if (rc > 0) {
		if (!a->daemon_busy_logged)
			log_errx("another vozagent-sync process runs source '%s' as a daemon (run) on "
			    "this database; waiting for it to stop", a->cfg.source);
		a->daemon_busy_logged = 1;
		return 1;
	}
	if (a->daemon_busy_logged)
		log_info("source '%s': the other daemon stopped; this one takes over",
		    a->cfg.source);
	a->daemon_busy_logged = 0;
	a->daemon = 1;
	return 0;
}

/*
 * Connects, migrates and takes the source's lock: 0 ready, 1 busy, 2 busy
 * and asking again at once (--wait, the wait timed out), -1 failed.
 */
static int
app_prepare(struct app *a)
{
	int applied, rc;

	/* a connection that died while idle shows only when used: ask it */
	if (!a->ready || store_conn_lost(a->store) || store_ping(a->store) < 0) {
		a->ready = a->locked = a->daemon = 0;
		if (store_connect(a->store, a->cfg.database_url) < 0 ||
		    store_migrate(a->store, &applied) < 0) {
			log_errx("%s", store_errmsg(a->store));
			/* run waits for a database that is away, not for one it must not write to */
			return a->cmd == CMD_RUN && store_conn_lost(a->store) ? 1 : -1;
		}
		if (applied > 0)
			log_info("database schema upgraded (%d migration%s applied)", applied,
			    applied == 1 ? "" : "s");
		a->ready = 1;
	}
	if (a->cmd == CMD_MIGRATE || a->cmd == CMD_STATUS || a->locked)
		return 0;
	if (a->cmd == CMD_RUN && !a->daemon && app_lock_daemon(a) != 0)
		return 1;
	rc = store_lock_source(a->store, a->cfg.source);
	/* --wait: in the server's queue, which hands the lock over at the holder's unlock */
	if (rc == 1 && a->wait) {
		if (!a->lock_busy_logged) {
			log_errx("another vozagent-sync process is syncing source '%s' on this "
			    "database; waiting for it to finish", a->cfg.source);
			/* the wait blocks the loop: say it before, not after the first minute */
			notify_send("STATUS=Waiting for another process's pass of source '%.200s'",
			    a->cfg.source);
		}
		a->lock_busy_logged = 1;
		rc = store_wait_source(a->store, a->cfg.source);
		if (rc == 1)
			return 2;
	}
	if (rc != 0) {
		int waits = a->cmd == CMD_RUN || a->wait;
		if (rc < 0) {
			/* a stop signal that cancelled the wait is no database error */
			if (!store_is_stopping())
				log_errx("%s", store_errmsg(a->store));
			/* a new connection drops nothing but our failed attempt */
			a->ready = 0;
		} else {
			if (!a->lock_busy_logged)
				log_errx("another vozagent-sync process is syncing source '%s' on this "
				    "database%s", a->cfg.source, waits ? "; waiting for it to finish" : "");
			/* busy, not broken: once/backfill exit 75, not 69 */
			a->lock_busy_logged = 1;
		}
		return a->cmd == CMD_RUN || (rc > 0 && a->wait) ? 1 : -1;
	}
	if (a->lock_busy_logged && (a->cmd == CMD_RUN || a->wait))
		log_info("source '%s' is ours again", a->cfg.source);
	a->lock_busy_logged = 0;
	a->locked = 1;
	if (store_abandon_runs(a->store, a->cfg.source) < 0) {
		log_errx("%s", store_errmsg(a->store));
		return a->cmd == CMD_RUN ? 1 : -1;
	}
	return 0;
}

/*
 * Before a pass, with the source ours: drop history older than
 * history_retention, and changes older than change_retention. A failure
 * costs nothing but a warning: the pass is what matters, and the next
 * pruning catches up.
 */
static void
app_prune(struct app *a)
{
	struct timespec ts;
	struct store_retention keep = { a->cfg.history_retention_ms, a->cfg.change_retention_ms };
	struct store_pruned gone;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if ((keep.history_ms == 0 && keep.changes_ms == 0) ||
	    (a->pruned_at != 0 && ts.tv_sec - a->pruned_at < APP_PRUNE_EVERY_S))
		return;
	a->pruned_at = ts.tv_sec > 0 ? ts.tv_sec : 1;
	if (store_prune(a->store, a->cfg.source, &keep, &gone) < 0) {
		log_warnx("cannot prune the history of source '%s': %s", a->cfg.source,
		    store_errmsg(a->store));
		return;
	}
	if (gone.runs > 0 || gone.rejects > 0)
		log_info("history_retention: removed %" PRId64 " old runs and %" PRId64
		    " old rejects of source '%s'", gone.runs, gone.rejects, a->cfg.source);
	if (gone.changes > 0)
		log_info("change_retention: removed %" PRId64 " old changes of source '%s'",
		    gone.changes, a->cfg.source);
}

/* The poll_interval in force: a reload moves the next pass at once, before its next pass. */
static uint64_t
app_poll_interval(const struct app *a)
{
	return a->has_next ? a->next.poll_interval_ms : a->cfg.poll_interval_ms;
}

/* fetch and sync for a->cfg (which they borrow): 0, or -1 with a message logged. */
static int
app_modules_new(struct app *a)
{
	struct fetch_opts fo;
	char err[256];

	sync_fetch_opts(&a->cfg, &fo);
	a->fetch = fetch_new(a->loop, &fo, err, sizeof err);
	if (a->fetch == NULL) {
		log_errx("%s", err);
		return -1;
	}
	a->sync = sync_new(a->loop, &a->cfg, a->fetch, a->store);
	if (a->sync == NULL) {
		log_errx("out of memory setting up a pass");
		fetch_free(a->fetch);
		a->fetch = NULL;
		return -1;
	}
	sync_set_mass_delete(a->sync, a->allow_mass_delete);
	if (a->serve.metrics != NULL)
		sync_set_metrics(a->sync, a->serve.metrics);
	return 0;
}

/* Closes fetch and sync; the loop's next turn frees them. */
static void
app_modules_free(struct app *a)
{
	if (a->fetch != NULL) {
		const struct fetch_counts *fc = fetch_counts(a->fetch);
		struct fetch_counts *kept = &a->serve.fetch_before;

		for (int i = 0; i < 6; i++)
			kept->status_class[i] += fc->status_class[i];
		kept->status_429 += fc->status_429;
		kept->timeouts += fc->timeouts;
		kept->errors += fc->errors;
	}
	if (a->sync != NULL)
		a->serve.retries_before += sync_retries(a->sync);
	sync_free(a->sync);
	fetch_free(a->fetch);
	a->sync = NULL;
	a->fetch = NULL;
}

/*
 * Between passes, a reloaded configuration takes over. fetch, the pager and
 * sync size their buffers, slots and connections from it and keep pointers
 * into it, so they are built anew rather than changed under a pass.
 */
static int
app_apply_reload(struct app *a)
{
	struct config old = a->cfg;

	a->has_next = 0;
	app_modules_free(a);
	a->cfg = a->next;
	memset(&a->next, 0, sizeof a->next);
	if (app_modules_new(a) < 0) {
		log_errx("cannot apply the reloaded configuration; keeping the previous one");
		config_free(&a->cfg);
		a->cfg = old;
		log_init(a->cfg.log_level);
		if (app_modules_new(a) < 0)
			return -1;
		sched_set_interval(a->sched, a->cfg.poll_interval_ms);
	} else {
		/* a new retention applies at this pass, not at the next hourly round */
		if (old.history_retention_ms != a->cfg.history_retention_ms ||
		    old.change_retention_ms != a->cfg.change_retention_ms)
			a->pruned_at = 0;
		config_free(&old);
		log_info("reloaded configuration in effect");
	}
	sched_set_sync(a->sched, a->sync);
	return 0;
}

static int
cb_prepare(void *arg)
{
	struct app *a = arg;
	int rc;

	if (a->has_next && app_apply_reload(a) < 0)
		return -1;
	rc = app_prepare(a);
	if (rc == 0)
		app_prune(a);
	/* busy is final for once/backfill without --wait: the other process does the work */
	if (rc == 1 && a->cmd != CMD_RUN && !a->wait)
		return -1;
	return rc;
}

/* After each pass of run: give the source back, so that a backfill waiting for it runs. */
static void
cb_rest(void *arg)
{
	struct app *a = arg;

	if (!a->locked)
		return;
	a->locked = 0;
	if (store_unlock_source(a->store) < 0) {
		/* a new session starts without the lock */
		log_debug("cannot give the source's lock back: %s", store_errmsg(a->store));
		a->ready = 0;
	}
}

/*
 * SIGHUP: the configuration file and environment again. Invalid, or naming
 * another mirror or endpoint: logged, and the one in use stays. Else it
 * waits for the next pass (the one in flight keeps what it borrowed).
 */
static void
cb_reload(void *arg, char *status, size_t statuslen)
{
	struct app *a = arg;
	struct config next;
	const char *changed[64];
	char err[8192], list[512] = "";
	size_t n, nfixed = 0, used = 0;

	log_info("SIGHUP: reloading the configuration%s%s", a->cfg.path != NULL ? " from " : "",
	    a->cfg.path != NULL ? a->cfg.path : "");
	/* wiped from the environment at start: the key from there stays for the process's life */
	if (a->env_token && setenv("VOZAGENT_API_TOKEN", a->cfg.api_token, 1) != 0) {
		log_warn("reload: cannot keep the API key from VOZAGENT_API_TOKEN");
		snprintf(status, statuslen, "Reload failed; running with the previous configuration");
		return;
	}
	if (config_load(&next, a->cfg.path, 1, err, sizeof err) < 0) {
		each_line(err, log_errx, "reload: ");
		log_errx("reload: the configuration is invalid; running with the previous one");
		snprintf(status, statuslen, "Reload failed: invalid configuration (see the log); "
		    "running with the previous one");
		return;
	}
	print_warnings(next.warnings, 1);
	n = config_changed_keys(&a->cfg, &next, changed, sizeof changed / sizeof changed[0]);
	if (n > sizeof changed / sizeof changed[0])
		n = sizeof changed / sizeof changed[0];
	for (size_t i = 0; i < n; i++) {
		if (config_key_is_reloadable(changed[i])) {
			int k = snprintf(list + used, sizeof list - used, "%s%s", used > 0 ? ", " : "",
			    changed[i]);
			if (k > 0 && (size_t)k < sizeof list - used)
				used += (size_t)k;
			continue;
		}
		log_errx("reload: %s changed: it names another mirror or endpoint; restart the "
		    "service to change it", changed[i]);
		nfixed++;
	}
	if (nfixed > 0) {
		log_errx("reload refused; running with the previous configuration");
		snprintf(status, statuslen, "Reload refused: a key that needs a restart changed "
		    "(see the log); running with the previous configuration");
		config_free(&next);
		return;
	}
	/* a later reload replaces one still waiting for its pass */
	if (a->has_next)
		config_free(&a->next);
	a->has_next = 0;
	if (n == 0) {
		config_free(&next);
		log_info("reload: nothing changed");
	} else {
		a->next = next;
		a->has_next = 1;
		log_info("reload: %s changed; in effect from the next pass", list);
	}
	/* these two are no pass's: at once */
	log_init(a->has_next ? a->next.log_level : a->cfg.log_level);
	sched_set_interval(a->sched, app_poll_interval(a));
	snprintf(status, statuslen, n == 0 ? "Configuration reloaded; nothing changed" :
	    "Configuration reloaded; in effect from the next pass");
}

static int
exit_code(const struct app *a, const struct sched_outcome *o)
{
	/* a signal that came during a store call may not have reached the loop yet */
	if (o->stopped || store_is_stopping())
		return a->cmd == CMD_RUN ? EXIT_OK : EXIT_TEMPFAIL;
	if (o->gave_up)
		return a->lock_busy_logged ? EXIT_TEMPFAIL : EXIT_UNAVAILABLE;
	switch (o->last) {
	case SYNC_OK:
		return EXIT_OK;
	case SYNC_ERR_AUTH:
		return EXIT_NOPERM;
	case SYNC_ERR_REQUEST:
		/* with filters set, a 400 points at them; without, at us */
		return config_has_filters(&a->cfg) ? EXIT_CONFIG : EXIT_SOFTWARE;
	case SYNC_ERR_API:
	case SYNC_ERR_STORE:
		return EXIT_TEMPFAIL;
	case SYNC_ERR_REFUSED:
		return EXIT_DATAERR;
	case SYNC_ERR_CONFIG:
		return EXIT_CONFIG;
	}
	return EXIT_SOFTWARE;
}

/* Resident memory from /proc/self/statm, read at each scrape; -1 when unknown. */
static int64_t
app_rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size, resident;
	int n;

	if (f == NULL)
		return -1;
	n = fscanf(f, "%ld %ld", &size, &resident);
	fclose(f);
	return n == 2 ? (int64_t)resident * sysconf(_SC_PAGESIZE) : -1;
}

static int
cb_respond(void *arg, const char *path, struct buf *body, const char **content_type)
{
	struct app *a = arg;
	struct app_serve *sv = &a->serve;
	struct timespec ts;
	double now;
	char why[768];
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	if (strcmp(path, "/metrics") == 0) {
		const struct fetch_counts *fc = fetch_counts(a->fetch), *kept = &sv->fetch_before;
		struct metrics_sample smp = {
			.now = now, .rss_bytes = app_rss_bytes(),
			.open_connections = fc->open_connections,
			.concurrency = sync_concurrency(a->sync),
			.http_timeouts = kept->timeouts + fc->timeouts,
			.http_errors = kept->errors + fc->errors,
			.http_429 = kept->status_429 + fc->status_429,
			.retries = sv->retries_before + sync_retries(a->sync),
		};
		for (int i = 0; i < 4; i++)
			smp.http_class[i] = kept->status_class[i + 2] + fc->status_class[i + 2];
		*content_type = "text/plain; version=0.0.4; charset=utf-8";
		if (metrics_render(sv->metrics, &smp, body) == 0)
			return 200;
		body->len = 0;
		return 500;
	}
	if (strcmp(path, "/healthz") != 0)
		return 404;
	/* the interval passes are due at now, which a reload may have changed already */
	ok = metrics_is_healthy(sv->metrics, now, app_poll_interval(a), why, sizeof why);
	if (buf_append(body, why, strlen(why)) < 0 || buf_append(body, "\n", 1) < 0)
		return 500;
	return ok ? 200 : 503;
}

/* Only `run` serves metrics: once and backfill end before anyone would scrape twice. */
static int
app_serve_start(struct app *a)
{
	struct app_serve *sv = &a->serve;
	char err[512];

	if (a->cmd != CMD_RUN || a->cfg.metrics_port == 0)
		return 0;
	sv->metrics = metrics_new(a->cfg.source);
	if (sv->metrics == NULL) {
		log_errx("out of memory");
		return -1;
	}
	sv->httpd = httpd_new(a->loop, a->cfg.metrics_host, a->cfg.metrics_port, cb_respond, a,
	    err, sizeof err);
	if (sv->httpd == NULL) {
		log_errx("metrics_listen = %s: %s", a->cfg.metrics_listen, err);
		return -1;
	}
	sync_set_metrics(a->sync, sv->metrics);
	log_info("metrics_listen: serving /metrics and /healthz on http://%s%s%s:%d/",
	    strchr(a->cfg.metrics_host, ':') != NULL ? "[" : "", a->cfg.metrics_host,
	    strchr(a->cfg.metrics_host, ':') != NULL ? "]" : "", a->cfg.metrics_port);
	return 0;
}

static int
run_loop(struct app *a)
{
	static const struct sched_hooks hooks = { cb_reload, cb_rest };
	uv_loop_t loop;
	int code;

	if (uv_loop_init(&loop) != 0) {
		log_errx("cannot set up the event loop");
		return EXIT_SOFTWARE;
	}
	a->loop = &loop;
	/* set up in order, order important: each module uses the ones before it */
	if (app_modules_new(a) < 0) {
		uv_loop_close(&loop);
		return EXIT_SOFTWARE;
	}
	a->sched = sched_new(&loop, a->sync, a->cfg.poll_interval_ms, cb_prepare, a);
	if (a->sched != NULL && a->cmd == CMD_RUN)
		sched_set_hooks(a->sched, &hooks);
	if (a->sched == NULL || sched_start(a->sched, a->cmd == CMD_RUN ? SCHED_DAEMON :
	    a->cmd == CMD_BACKFILL ? SCHED_BACKFILL : SCHED_ONCE) < 0) {
		log_errx("cannot set up the scheduler");
		code = EXIT_SOFTWARE;
	} else if (store_cancel_on_signal(SIGTERM) < 0 || store_cancel_on_signal(SIGINT) < 0) {
		log_warn("cannot set up cancelling statements on SIGTERM");
		code = EXIT_SOFTWARE;
	} else if (app_serve_start(a) < 0) {
		code = EXIT_CONFIG;
	} else {
		if (a->cmd == CMD_RUN)
			log_info("vozagent-sync %s: syncing source '%s' every %.0fs", VOZAGENT_VERSION,
			    a->cfg.source, a->cfg.poll_interval_ms / 1000.0);
		uv_run(&loop, UV_RUN_DEFAULT);
		code = exit_code(a, sched_outcome(a->sched));
	}
	/* tear down in reverse; closing handles needs one more turn of the loop */
	sched_free(a->sched);
	a->sched = NULL;
	app_modules_free(a);
	httpd_free(a->serve.httpd);
	a->serve.httpd = NULL;
	uv_run(&loop, UV_RUN_DEFAULT);
	/* after sync_free: the pass that a stop ended reported to it */
	metrics_free(a->serve.metrics);
	a->serve.metrics = NULL;
	if (uv_loop_close(&loop) != 0)
		log_warnx("event loop closed with handles still open");
	a->loop = NULL;
	return code;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "check", no_argument, NULL, 'n' },
		{ "allow-mass-delete", no_argument, NULL, 'D' },
		{ "wait", no_argument, NULL, 'W' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *cmdname;
	char err[8192];
	struct app a;
	struct rlimit core;
	int ch, code = EXIT_OK, found = 0, check_only = 0;

	memset(&a, 0, sizeof a);
	/*
	 * A reload is run's, once its loop is up (sched takes SIGHUP over then);
	 * until then, and for every other command, SIGHUP must not kill it.
	 */
	signal(SIGHUP, SIG_IGN);
	/*
	 * The API key is in this process's memory: no core file, and no
	 * ptrace or /proc/PID/mem for other processes of the same user.
	 */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		perror("vozagent-sync: cannot make the process non-dumpable");
		return EXIT_SOFTWARE;
	}
	/*
	 * And no core file even where suid_dumpable would allow one; best effort:
	 * the unit's LimitCORE=0 did it already, and a seccomp filter may refuse it.
	 */
	if (getrlimit(RLIMIT_CORE, &core) == 0 && (core.rlim_cur != 0 || core.rlim_max != 0)) {
		core.rlim_cur = core.rlim_max = 0;
		(void)setrlimit(RLIMIT_CORE, &core);
	}
	while ((ch = getopt_long(argc, argv, "c:hnV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'n':
			check_only = 1;
			break;
		case 'D':
			a.allow_mass_delete = 1;
			break;
		case 'W':
			a.wait = 1;
			break;
		case 'V':
			printf("vozagent-sync %s\n", VOZAGENT_VERSION);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	/* -n alone checks the configuration as `run` needs it */
	cmdname = argc > optind ? argv[optind] : check_only ? "run" : NULL;
	if (cmdname == NULL || argc - optind > 1) {
		fprintf(stderr, "vozagent-sync: %s\n", cmdname == NULL ? "missing command" :
		    "too many arguments");
		usage(stderr);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof command_names / sizeof command_names[0]; i++) {
		if (strcmp(cmdname, command_names[i]) == 0) {
			a.cmd = (enum command)i;
			found = 1;
		}
	}
	if (!found) {
		fprintf(stderr, "vozagent-sync: unknown command '%s'\n", cmdname);
		usage(stderr);
		return EXIT_USAGE;
	}
	/* a standing permission would defeat the check: one confirmed backfill at a time */
	if (a.allow_mass_delete && a.cmd != CMD_BACKFILL) {
		fprintf(stderr, "vozagent-sync: --allow-mass-delete is only valid with backfill\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	/* run waits anyway; migrate and status take no lock */
	if (a.wait && a.cmd != CMD_ONCE && a.cmd != CMD_BACKFILL) {
		fprintf(stderr, "vozagent-sync: --wait is only valid with once or backfill\n");
		usage(stderr);
		return EXIT_USAGE;
	}

	/* check loads the configuration itself: a bad one is one of its findings */
	if (a.cmd == CMD_CHECK && !check_only) {
		static const int check_exit[] = { [CHECK_OK] = EXIT_OK, [CHECK_CONFIG] = EXIT_CONFIG,
		    [CHECK_AUTH] = EXIT_NOPERM, [CHECK_DATABASE] = EXIT_UNAVAILABLE,
		    [CHECK_API] = EXIT_TEMPFAIL };
		enum check_result cr;

		signal(SIGPIPE, SIG_IGN);
		if (fetch_global_init() < 0) {
			fprintf(stderr, "vozagent-sync: cannot set up libcurl\n");
			return EXIT_SOFTWARE;
		}
		cr = check_all(path, stdout);
		fetch_global_cleanup();
		return check_exit[cr];
	}

	a.env_token = getenv("VOZAGENT_API_TOKEN") != NULL;
	/* configuration first: every mistake is reported before any network work */
	if (config_load(&a.cfg, path, a.cmd == CMD_RUN || a.cmd == CMD_ONCE ||
	    a.cmd == CMD_BACKFILL || a.cmd == CMD_CHECK, err, sizeof err) < 0) {
		fprintf(stderr, "vozagent-sync: configuration error%s:\n%s\n",
		    strchr(err, '\n') != NULL ? "s" : "", err);
		return EXIT_CONFIG;
	}
	if (check_only) {
		print_warnings(a.cfg.warnings, 0);
		printf("%s: configuration OK\n", a.cfg.path != NULL ? a.cfg.path : "(no file)");
		config_free(&a.cfg);
		return EXIT_OK;
	}
	log_init(a.cfg.log_level);
	print_warnings(a.cfg.warnings, 1);
	signal(SIGPIPE, SIG_IGN);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());

	a.store = store_new();
	if (a.store == NULL || fetch_global_init() < 0) {
		log_errx("out of memory");
		return EXIT_SOFTWARE;
	}
	switch (a.cmd) {
	case CMD_MIGRATE:
	case CMD_STATUS:
		if (app_prepare(&a) != 0) {
			code = EXIT_UNAVAILABLE;
			break;
		}
		if (a.cmd == CMD_STATUS && store_print_status(a.store, stdout) < 0) {
			log_errx("%s", store_errmsg(a.store));
			code = EXIT_UNAVAILABLE;
		} else if (a.cmd == CMD_MIGRATE) {
			log_info("database schema is up to date");
		}
		break;
	default:
		code = run_loop(&a);
	}
	store_free(a.store);
	fetch_global_cleanup();
	config_free(&a.cfg);
	if (a.has_next)
		config_free(&a.next);
	return code;
}
