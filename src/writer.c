/* writer: commits on a thread of libuv's pool, so the loop fetches and parses meanwhile. */
#include "writer.h"

#include <stdlib.h>

/*
 * One commit. The pool owns it from uv_queue_work to its after-work
 * callback, which frees it; the writer may have let go of it before (it
 * waited for it, or was freed), and then nobody is called back.
 */
struct writer_job {
	uv_work_t req;
	struct writer *w;          /* NULL once the writer let go of it */
	struct store *store;
	struct store_page page;
	struct sync_state expect, next;
	struct store_stats stats;
	int rc;
	bool finished;             /* under w's lock: the worker is done with the store */
	uv_mutex_t *lock;
	uv_cond_t *cond;
	writer_done_cb done;
	void *arg;
};

struct writer {
	uv_loop_t *loop;
	struct store *store;
	struct writer_job *job;    /* in flight, NULL when none */
	uv_mutex_t lock;
	uv_cond_t cond;
};

struct writer *
writer_new(uv_loop_t *loop, struct store *store)
{
	struct writer *w = calloc(1, sizeof *w);

	if (w == NULL)
		return NULL;
	if (uv_mutex_init(&w->lock) != 0) {
		free(w);
		return NULL;
	}
	if (uv_cond_init(&w->cond) != 0) {
		uv_mutex_destroy(&w->lock);
		free(w);
		return NULL;
	}
	w->loop = loop;
	w->store = store;
	return w;
}

static void
writer_work(uv_work_t *req)
{
	struct writer_job *j = req->data;
	int rc = store_commit_page(j->store, &j->page, &j->expect, &j->next, &j->stats);

	uv_mutex_lock(j->lock);
	j->rc = rc;
	j->finished = true;
	uv_cond_signal(j->cond);
	uv_mutex_unlock(j->lock);
}

static void
writer_after(uv_work_t *req, int status)
{
	struct writer_job *j = req->data;
	struct writer *w = j->w;

	(void)status;
	if (w != NULL) {
		w->job = NULL;
		j->done(j->arg, j->rc, &j->stats);
	}
	free(j);
}

int
writer_commit(struct writer *w, const struct store_page *page,
    const struct sync_state *expect, const struct sync_state *next,
    const struct store_stats *stats, writer_done_cb done, void *arg)
{
	struct writer_job *j;

	if (w->job != NULL || (j = calloc(1, sizeof *j)) == NULL)
		return -1;
	j->req.data = j;
	j->w = w;
	j->store = w->store;
	j->page = *page;
	j->expect = *expect;
	j->next = *next;
	j->stats = *stats;
	j->lock = &w->lock;
	j->cond = &w->cond;
	j->done = done;
	j->arg = arg;
	if (uv_queue_work(w->loop, &j->req, writer_work, writer_after) != 0) {
		free(j);
		return -1;
	}
	w->job = j;
	return 0;
}

bool
writer_is_busy(const struct writer *w)
{
	return w->job != NULL;
}

int
writer_wait(struct writer *w, struct store_stats *stats)
{
	struct writer_job *j = w->job;
	int rc;

	if (j == NULL)
		return 1;
	uv_mutex_lock(&w->lock);
	while (!j->finished)
		uv_cond_wait(&w->cond, &w->lock);
	rc = j->rc;
	if (stats != NULL)
		*stats = j->stats;
	uv_mutex_unlock(&w->lock);
	/* the pool still holds the job: its after-work callback frees it, calling nobody */
	j->w = NULL;
	w->job = NULL;
	return rc;
}

void
writer_free(struct writer *w)
{
	if (w == NULL)
		return;
	writer_wait(w, NULL);
	uv_cond_destroy(&w->cond);
	uv_mutex_destroy(&w->lock);
	free(w);
}
