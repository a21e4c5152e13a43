/* sched: the loop's timetable: when passes start, signals, and shutdown. */
#ifndef VOZAGENT_SCHED_H
#define VOZAGENT_SCHED_H

#include <stdint.h>

#include <uv.h>

#include "sync.h"

enum sched_job { SCHED_ONCE, SCHED_BACKFILL, SCHED_DAEMON };

/* Before each pass: 0 = go, 1 = not now (try at the next interval), -1 = give up. */
typedef int (*sched_prepare_cb)(void *arg);

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
const struct sched_outcome *sched_outcome(const struct sched *s);
/* Closes the handles; the caller runs the loop once more to finish. */
void sched_free(struct sched *s);

#endif
