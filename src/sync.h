/* sync: one pass over the API: which pages to read, and what each commit records. */
#ifndef VOZAGENT_SYNC_H
#define VOZAGENT_SYNC_H

#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "fetch.h"
#include "store.h"

enum sync_mode {
	SYNC_BACKFILL,
	SYNC_INCREMENTAL,
	SYNC_AUTO,        /* incremental, or a backfill when one is pending or due */
};

enum sync_result {
	SYNC_OK,
	SYNC_ERR_AUTH,        /* the API refused the key (401/403) */
	SYNC_ERR_REQUEST,     /* the API refused our request (400) */
	SYNC_ERR_API,         /* the API kept failing after retries */
	SYNC_ERR_STORE,       /* PostgreSQL failed */
	SYNC_ERR_REFUSED,     /* a backfill would mark too many calls deleted: marked none */
	SYNC_ERR_CONFIG,      /* PostgreSQL refused a setting (report_time_zone): none started */
};

typedef void (*sync_done_cb)(void *arg, enum sync_result res);

struct sync;

/* cfg, fetch and store are borrowed and must outlive the sync. */
struct sync *sync_new(uv_loop_t *loop, const struct config *cfg, struct fetch *fetch,
    struct store *store);
/*
 * Starts a pass. 0, and done is called once when it ends; or -1 (message in
 * sync_errmsg) and done is never called.
 */
int sync_start(struct sync *s, enum sync_mode mode, sync_done_cb done, void *arg);
/* Why the last sync_start failed: SYNC_ERR_CONFIG or SYNC_ERR_STORE. */
enum sync_result sync_start_failure(const struct sync *s);
/* Abandons the pass in flight (nothing half-written stays); done is not called. */
void sync_stop(struct sync *s);
int sync_running(const struct sync *s);
struct metrics;

/* Each commit and the end of each pass are reported to m (borrowed; NULL = none). */
void sync_set_metrics(struct sync *s, struct metrics *m);
/* Pages the pace allows in flight now, and page requests retried so far. */
int sync_concurrency(const struct sync *s);
int64_t sync_retries(const struct sync *s);
/* The operator confirmed that a backfill may mark any number of calls deleted. */
void sync_set_mass_delete(struct sync *s, int confirmed);
const char *sync_errmsg(const struct sync *s);
/* Closes its timer; the caller runs the loop once more to finish. */
void sync_free(struct sync *s);

const char *sync_mode_name(enum sync_mode mode);
/* The HTTP client's options for the API cfg names: its key, timeout, body cap, scheme. */
void sync_fetch_opts(const struct config *cfg, struct fetch_opts *fo);
/*
 * The listing URL with cfg's filters (status and contact_id given, as a scan
 * narrows them), up to the offset: "...&offset=". Malloc'd; NULL when it would
 * be too long for a server or memory is out.
 */
char *sync_list_url(const struct config *cfg, int limit, const char *status,
    const char *contact_id);

#endif
