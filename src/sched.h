/* sched: the loop's timetable: when passes start, signals, and shutdown. */
#ifndef VOZAGENT_SCHED_H
#define VOZAGENT_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "sync.h"

enum sched_job { SCHED_ONCE, SCHED_BACKFILL, SCHED_DAEMON };

/*
 * Before each pass: 0 = go, 1 = not now (try again after a backoff), 2 = not
 * now, again at once (it waited already), -1 = give up.
 */
typedef int (*sched_prepare_cb)(void *arg);

/* Optional, for the daemon; each gets the prepare callback's arg. */
struct sched_hooks {
	/* SIGHUP: re-read the configuration; status is the STATUS= line to send after. */
	void (*reload)(void *arg, char *status, size_t statuslen);
	/* After each pass, before the wait for the next (give the source's lock back). */
	void (*rest)(void *arg);
};

struct sched_outcome {
	int passes;
	enum sync_result last;     /* result of the last pass that ran */
	int stopped;               /* a signal ended it */
	int gave_up;               /* the prepare callback said -1 */
};

struct sched;

/* NULL when the loop's handles cannot be set up; run the loop once more to free them. */
struct sched *sched_new(uv_loop_t *loop, struct sync *sync, uint64_t interval_ms,
    sched_prepare_cb prepare, void *arg);
/* Arms the timetable; uv_run() then returns when the job is over. */
int sched_start(struct sched *s, enum sched_job job);
void sched_set_hooks(struct sched *s, const struct sched_hooks *hooks);
/* Between passes only (from the prepare callback or a hook): the passes' sync from now on. */
void sched_set_sync(struct sched *s, struct sync *sync);
/* A new poll interval; a pass already scheduled is moved to the new time. */
void sched_set_interval(struct sched *s, uint64_t interval_ms);
const struct sched_outcome *sched_outcome(const struct sched *s);
/* Closes the handles; the caller runs the loop once more to finish. */
void sched_free(struct sched *s);

#endif
