/* main: the command line, and setting the modules up in order. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
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
#include "log.h"
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

struct app {
	struct config cfg;
	struct store *store;
	enum command cmd;
	int ready;           /* connected, migrated, and the source is ours */
	int lock_busy_logged;
	int64_t pruned_at;   /* monotonic seconds of the last pruning; 0 = not yet */
	int allow_mass_delete;   /* backfill --allow-mass-delete */
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
	    "  -h, --help         show this help\n"
	    "  -V, --version      show the version\n"
	    "\n"
	    "Every configuration key can also be set as VOZAGENT_<KEY> in the environment.\n",
	    CONFIG_DEFAULT_PATH);
}

/* The configuration's warnings, one per line: to the log, or (-n) to stderr. */
static void
print_warnings(const char *warnings, int to_log)
{
	const char *w, *nl;

	for (w = warnings; w != NULL; w = nl != NULL ? nl + 1 : NULL) {
		int n;
		nl = strchr(w, '\n');
		n = nl != NULL ? (int)(nl - w) : (int)strlen(w);
		if (to_log)
			log_warnx("%.*s", n, w);
		else
			fprintf(stderr, "vozagent-sync: warning: %.*s\n", n, w);
	}
}

/* Connects, migrates and takes the source's lock: 0 ready, 1 busy, -1 failed. */
static int
app_prepare(struct app *a)
{
	int applied, rc;

	/* a connection that died while idle shows only when used: ask it */
	if (a->ready && !store_conn_lost(a->store) && store_ping(a->store) == 0)
		return 0;
	a->ready = 0;
	if (store_connect(a->store, a->cfg.database_url) < 0 ||
	    store_migrate(a->store, &applied) < 0) {
		log_errx("%s", store_errmsg(a->store));
		/* run waits for a database that is away, not for one it must not write to */
		return a->cmd == CMD_RUN && store_conn_lost(a->store) ? 1 : -1;
	}
	if (applied > 0)
		log_info("database schema upgraded (%d migration%s applied)", applied,
		    applied == 1 ? "" : "s");
	if (a->cmd == CMD_MIGRATE || a->cmd == CMD_STATUS) {
		a->ready = 1;
		return 0;
	}
	rc = store_lock_source(a->store, a->cfg.source);
	if (rc != 0) {
		if (rc < 0)
			log_errx("%s", store_errmsg(a->store));
		else if (a->cmd != CMD_RUN || !a->lock_busy_logged)
			log_errx("another vozagent-sync process is syncing source '%s' on this "
			    "database%s", a->cfg.source, a->cmd == CMD_RUN ?
			    "; waiting for it to finish" : "");
		a->lock_busy_logged = 1;
		/* a new connection drops nothing but our failed attempt */
		a->ready = 0;
		return 1;
	}
	if (store_abandon_runs(a->store, a->cfg.source) < 0) {
		log_errx("%s", store_errmsg(a->store));
		return a->cmd == CMD_RUN ? 1 : -1;
	}
	a->ready = 1;
	return 0;
}

/*
 * Before a pass, with the source ours: drop history older than
 * history_retention. A failure costs nothing but a warning: the pass is
 * what matters, and the next pruning catches up.
 */
static void
app_prune(struct app *a)
{
	struct timespec ts;
	int64_t runs, rejects;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (a->cfg.history_retention_ms == 0 ||
	    (a->pruned_at != 0 && ts.tv_sec - a->pruned_at < APP_PRUNE_EVERY_S))
		return;
	a->pruned_at = ts.tv_sec > 0 ? ts.tv_sec : 1;
	if (store_prune(a->store, a->cfg.source, a->cfg.history_retention_ms, &runs,
	    &rejects) < 0) {
		log_warnx("cannot prune the history of source '%s': %s", a->cfg.source,
		    store_errmsg(a->store));
		return;
	}
	if (runs > 0 || rejects > 0)
		log_info("history_retention: removed %" PRId64 " old runs and %" PRId64
		    " old rejects of source '%s'", runs, rejects, a->cfg.source);
}

static int
cb_prepare(void *arg)
{
	struct app *a = arg;
	int rc = app_prepare(a);

	if (rc == 0)
		app_prune(a);
	/* busy is final for once/backfill: the other process does the work */
	if (rc == 1 && a->cmd != CMD_RUN)
		return -1;
	return rc;
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
	}
	return EXIT_SOFTWARE;
}

static int
run_loop(struct app *a)
{
	uv_loop_t loop;
	struct fetch_opts fo = {
		.bearer_token = a->cfg.api_token,
		.timeout_ms = (long)a->cfg.http_timeout_ms,
		.max_body_bytes = (size_t)a->cfg.max_body_bytes,
		/* config allowed http:// only for loopback or allow_insecure_http */
		.allow_http = strncmp(a->cfg.api_url, "http://", 7) == 0,
		/* one kept-alive connection per page in flight */
		.max_connections = a->cfg.concurrency,
	};
	struct fetch *fetch;
	struct sync *sync;
	struct sched *sched;
	char err[256];
	int code;

	if (uv_loop_init(&loop) != 0) {
		log_errx("cannot set up the event loop");
		return EXIT_SOFTWARE;
	}
	/* set up in order, order important: each module uses the ones before it */
	fetch = fetch_new(&loop, &fo, err, sizeof err);
	if (fetch == NULL) {
		log_errx("%s", err);
		uv_loop_close(&loop);
		return EXIT_SOFTWARE;
	}
	sync = sync_new(&loop, &a->cfg, fetch, a->store);
	if (sync != NULL)
		sync_set_mass_delete(sync, a->allow_mass_delete);
	sched = sync != NULL ? sched_new(&loop, sync, a->cfg.poll_interval_ms, cb_prepare, a) : NULL;
	if (sched == NULL || sched_start(sched, a->cmd == CMD_RUN ? SCHED_DAEMON :
	    a->cmd == CMD_BACKFILL ? SCHED_BACKFILL : SCHED_ONCE) < 0) {
		log_errx("cannot set up the scheduler");
		code = EXIT_SOFTWARE;
	} else if (store_cancel_on_signal(SIGTERM) < 0 || store_cancel_on_signal(SIGINT) < 0) {
		log_warn("cannot set up cancelling statements on SIGTERM");
		code = EXIT_SOFTWARE;
	} else {
		if (a->cmd == CMD_RUN)
			log_info("vozagent-sync %s: syncing source '%s' every %.0fs", VOZAGENT_VERSION,
			    a->cfg.source, a->cfg.poll_interval_ms / 1000.0);
		uv_run(&loop, UV_RUN_DEFAULT);
		code = exit_code(a, sched_outcome(sched));
	}
	/* tear down in reverse; closing handles needs one more turn of the loop */
	sched_free(sched);
	sync_free(sync);
	fetch_free(fetch);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		log_warnx("event loop closed with handles still open");
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
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *cmdname;
	char err[8192];
	struct app a;
	struct rlimit core;
	int ch, code = EXIT_OK, found = 0, check_only = 0;

	memset(&a, 0, sizeof a);
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
	return code;
}
