/* sched: the loop's timetable: when passes start, signals, and shutdown. */
#include "sched.h"

#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "notify.h"

#define SCHED_PREPARE_BACKOFF_MIN_MS 1000
/* once/backfill: a "not now" from the prepare callback is tried again at least this often */
#define SCHED_WAIT_BACKOFF_MAX_MS 5000

#define SCHED_NHANDLES 5

struct sched {
	uv_loop_t *loop;
	struct sync *sync;
	uint64_t interval_ms;
	sched_prepare_cb prepare;
	void *prepare_arg;
	enum sched_job job;
	uv_timer_t tick;
	uv_timer_t watchdog;           /* WATCHDOG=1: from the loop, so it stops when the loop does */
	uv_signal_t sigint, sigterm, sighup;
	struct sched_hooks hooks;
	uint64_t pass_started;
	uint64_t prepare_backoff_ms;   /* while the prepare callback says "not now" */
	int ready;                     /* READY=1 was sent */
	int waiting;                   /* the prepare callback said "not now": backing off */
	int closing;
	struct sched_outcome out;
};

static void
sched_end(struct sched *s)
{
	uv_timer_stop(&s->tick);
	uv_stop(s->loop);
}

static void on_uv_tick(uv_timer_t *t);

static void
sched_next(struct sched *s)
{
	uint64_t now = uv_now(s->loop);
	uint64_t due = s->pass_started + s->interval_ms;

	uv_timer_start(&s->tick, on_uv_tick, due > now ? due - now : 0, 0);
}

static void
on_pass_done(void *arg, enum sync_result res)
{
	struct sched *s = arg;

	s->out.last = res;
	if (res != SYNC_OK) {
		log_errx("pass failed: %s", sync_errmsg(s->sync));
		notify_send("STATUS=Last pass failed: %.400s", sync_errmsg(s->sync));
	} else {
		notify_send("STATUS=Mirroring; last pass ok");
	}
	if (s->job != SCHED_DAEMON || res == SYNC_ERR_AUTH || res == SYNC_ERR_REQUEST) {
		/* a refused key or request will be refused again: stop rather than hammer */
		sched_end(s);
		return;
	}
	if (s->hooks.rest != NULL)
		s->hooks.rest(s->prepare_arg);
	sched_next(s);
}

static void
on_uv_tick(uv_timer_t *t)
{
	struct sched *s = t->data;
	int rc;

	s->pass_started = uv_now(s->loop);
	rc = s->prepare(s->prepare_arg);
	if (rc < 0) {
		s->out.gave_up = 1;
		sched_end(s);
		return;
	}
	if (rc == 2) {
		/*
		 * Waiting inside PostgreSQL, which timed out: queue again after a turn
		 * of the loop (signals, the watchdog). 1 ms, not 0: libuv before 1.48
		 * runs a timer re-armed at 0 from its own callback in the same turn.
		 */
		if (!s->waiting)
			notify_send("STATUS=Waiting for the source lock");
		s->waiting = 1;
		uv_timer_start(&s->tick, on_uv_tick, 1, 0);
		return;
	}
	if (rc > 0) {
		/* not ready (PostgreSQL down, source busy): try again soon, then less often */
		uint64_t wait = s->prepare_backoff_ms;
		uint64_t cap = s->job == SCHED_DAEMON || s->interval_ms < SCHED_WAIT_BACKOFF_MAX_MS ?
		    s->interval_ms : SCHED_WAIT_BACKOFF_MAX_MS;
		s->prepare_backoff_ms = wait * 2 > cap ? cap : wait * 2;
		s->waiting = 1;
		notify_send("STATUS=Waiting for PostgreSQL or the source lock; next try in %.0fs",
		    wait / 1000.0);
		uv_timer_start(&s->tick, on_uv_tick, wait, 0);
		return;
	}
	s->waiting = 0;
	s->prepare_backoff_ms = SCHED_PREPARE_BACKOFF_MIN_MS;
	if (!s->ready) {
		/*
		 * ready means: configured, connected, migrated, and the source is
		 * ours. A backfill's unit is Type=notify for its watchdog, which
		 * systemd arms at READY=1; the wait for the lock before is start-up.
		 */
		notify_send("READY=1\nSTATUS=%s", s->job == SCHED_DAEMON ?
		    "Connected; first pass starting" : "Source locked; pass running");
		s->ready = 1;
	}
	s->out.passes++;
	if (sync_start(s->sync, s->job == SCHED_BACKFILL ? SYNC_BACKFILL :
	    s->job == SCHED_DAEMON ? SYNC_AUTO : SYNC_INCREMENTAL, on_pass_done, s) < 0) {
		log_errx("cannot start a pass: %s", sync_errmsg(s->sync));
		s->out.last = sync_start_failure(s->sync);
		if (s->job != SCHED_DAEMON) {
			sched_end(s);
			return;
		}
		if (s->hooks.rest != NULL)
			s->hooks.rest(s->prepare_arg);
		sched_next(s);
	}
}

static void
on_uv_watchdog(uv_timer_t *t)
{
	(void)t;
	notify_send("WATCHDOG=1");
}

static uint64_t
monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* SIGHUP: systemd hears RELOADING=1 then READY=1, around the reload itself. */
static void
sched_reload(struct sched *s)
{
	char status[400] = "";

	if (s->hooks.reload == NULL) {
		log_info("SIGHUP: ignored (only run reloads its configuration)");
		return;
	}
	/* before the first READY=1, systemd still waits for that one: do not claim it */
	if (s->ready)
		notify_send("RELOADING=1\nMONOTONIC_USEC=%" PRIu64, monotonic_usec());
	s->hooks.reload(s->prepare_arg, status, sizeof status);
	if (s->ready)
		notify_send("READY=1\nSTATUS=%s", status);
	else if (status[0] != '\0')
		notify_send("STATUS=%s", status);
}

static void
on_uv_signal(uv_signal_t *h, int signum)
{
	struct sched *s = h->data;

	if (signum == SIGHUP) {
		sched_reload(s);
		return;
	}
	log_info("%s: stopping%s", signum == SIGINT ? "SIGINT" : "SIGTERM",
	    sync_running(s->sync) ? " (the page in flight is abandoned; committed pages stay)" : "");
	notify_send("STOPPING=1");
	/* store calls are synchronous, so no transaction is open at this point */
	sync_stop(s->sync);
	s->out.stopped = 1;
	sched_end(s);
}

static void
on_uv_closed(uv_handle_t *h)
{
	struct sched *s = h->data;

	if (++s->closing == SCHED_NHANDLES)
		free(s);
}

struct sched *
sched_new(uv_loop_t *loop, struct sync *sync, uint64_t interval_ms, sched_prepare_cb prepare,
    void *arg)
{
	struct sched *s = calloc(1, sizeof *s);
	uv_handle_t *handles[SCHED_NHANDLES];
	int ninit = 0;

	if (s == NULL)
		return NULL;
	/* in the order they are set up */
	handles[0] = (uv_handle_t *)&s->tick;
	handles[1] = (uv_handle_t *)&s->sigint;
	handles[2] = (uv_handle_t *)&s->sigterm;
	handles[3] = (uv_handle_t *)&s->sighup;
	handles[4] = (uv_handle_t *)&s->watchdog;
	s->loop = loop;
	s->sync = sync;
	s->interval_ms = interval_ms;
	s->prepare = prepare;
	s->prepare_arg = arg;
	s->prepare_backoff_ms = SCHED_PREPARE_BACKOFF_MIN_MS;
	if (uv_timer_init(loop, &s->tick) == 0)
		ninit = 1;
	if (ninit == 1 && uv_signal_init(loop, &s->sigint) == 0)
		ninit = 2;
	if (ninit == 2 && uv_signal_init(loop, &s->sigterm) == 0)
		ninit = 3;
	if (ninit == 3 && uv_signal_init(loop, &s->sighup) == 0)
		ninit = 4;
	if (ninit == 4 && uv_timer_init(loop, &s->watchdog) == 0)
		ninit = 5;
	if (ninit == SCHED_NHANDLES) {
		s->tick.data = s->sigint.data = s->sigterm.data = s->sighup.data = s;
		s->watchdog.data = s;
		return s;
	}
	/* the handles set up so far are closed on the loop's next turn, which frees s */
	if (ninit == 0) {
		free(s);
		return NULL;
	}
	s->closing = SCHED_NHANDLES - ninit;
	for (int i = 0; i < ninit; i++) {
		handles[i]->data = s;
		uv_close(handles[i], on_uv_closed);
	}
	return NULL;
}

int
sched_start(struct sched *s, enum sched_job job)
{
	uint64_t watchdog_usec = notify_watchdog_usec();

	s->job = job;
	if (uv_signal_start(&s->sigint, on_uv_signal, SIGINT) != 0 ||
	    uv_signal_start(&s->sigterm, on_uv_signal, SIGTERM) != 0 ||
	    uv_signal_start(&s->sighup, on_uv_signal, SIGHUP) != 0)
		return -1;
	if (watchdog_usec > 0) {
		/* at half the period, as sd_watchdog_enabled(3) advises: one late ping is no miss */
		uint64_t every = watchdog_usec / 2000 > 0 ? watchdog_usec / 2000 : 1;
		if (uv_timer_start(&s->watchdog, on_uv_watchdog, every, every) != 0)
			return -1;
		log_debug("systemd watchdog: WATCHDOG=1 every %" PRIu64 " ms", every);
	}
	/* even the first pass starts from the loop, like every later one */
	return uv_timer_start(&s->tick, on_uv_tick, 0, 0) == 0 ? 0 : -1;
}

void
sched_set_hooks(struct sched *s, const struct sched_hooks *hooks)
{
	s->hooks = *hooks;
}

void
sched_set_sync(struct sched *s, struct sync *sync)
{
	s->sync = sync;
}

void
sched_set_interval(struct sched *s, uint64_t interval_ms)
{
	s->interval_ms = interval_ms;
	/* the next pass is due at another time now; a wait for PostgreSQL keeps its backoff */
	if (s->job == SCHED_DAEMON && s->out.passes > 0 && !s->waiting && !sync_running(s->sync) &&
	    uv_is_active((uv_handle_t *)&s->tick))
		sched_next(s);
}

const struct sched_outcome *
sched_outcome(const struct sched *s)
{
	return &s->out;
}

void
sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	uv_close((uv_handle_t *)&s->tick, on_uv_closed);
	uv_close((uv_handle_t *)&s->sigint, on_uv_closed);
	uv_close((uv_handle_t *)&s->sigterm, on_uv_closed);
	uv_close((uv_handle_t *)&s->sighup, on_uv_closed);
	uv_close((uv_handle_t *)&s->watchdog, on_uv_closed);
}
