/* writer: commits on a thread of libuv's pool, so the loop fetches and parses meanwhile. */
#ifndef VOZAGENT_WRITER_H
#define VOZAGENT_WRITER_H

#include <stdbool.h>

#include <uv.h>

#include "store.h"

/* rc and stats are store_commit_page's: stats holds what the commit added when rc is 0. */
typedef void (*writer_done_cb)(void *arg, int rc, const struct store_stats *stats);

struct writer;

/* store is borrowed: while a commit is in flight, only the writer's thread uses it. */
struct writer *writer_new(uv_loop_t *loop, struct store *store);
/*
 * Starts store_commit_page on the pool. page->rows must stay untouched and
 * the store unused until done is called on the loop. 0, or -1 when a
 * commit is in flight already or the pool refuses it (done is not called).
 */
int writer_commit(struct writer *w, const struct store_page *page,
    const struct sync_state *expect, const struct sync_state *next,
    const struct store_stats *stats, writer_done_cb done, void *arg);
bool writer_is_busy(const struct writer *w);
/*
 * Blocks until the commit in flight ends (a stop signal cancels its
 * statement) and returns its rc and stats; its done is then never called.
 * 1 when no commit was in flight.
 */
int writer_wait(struct writer *w, struct store_stats *stats);
/* Waits for the commit in flight, then frees; the loop must run once more to release it. */
void writer_free(struct writer *w);

#endif
