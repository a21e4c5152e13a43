/* config: the key = value file, VOZAGENT_* overrides, validation. */
#ifndef VOZAGENT_CONFIG_H
#define VOZAGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CONFIG_DEFAULT_PATH "/etc/vozagent-sync/vozagent-sync.conf"

enum config_order { ORDER_AUTO, ORDER_OLDEST_FIRST, ORDER_NEWEST_FIRST };

struct config {
	char *path;               /* file read, or NULL when none was */
	char *api_url;            /* without trailing slash */
	int allow_insecure_http;  /* http:// to a host that is not loopback */
	char *api_token;          /* secret: never log it */
	char *api_token_origin;   /* where the token came from, for messages */
	char *database_url;       /* "" = libpq defaults */
	char *source;
	uint64_t poll_interval_ms;
	uint64_t lookback_ms;
	uint64_t http_timeout_ms;
	uint64_t full_resync_ms;     /* run: a backfill this often; 0 = never */
	uint64_t history_retention_ms; /* sync_runs and rejects older than this go; 0 = keep */
	char *report_time_zone;      /* IANA name: the day and hour of the source's reports */
	int history;                 /* write vozagent.call_changes for the source */
	uint64_t change_retention_ms; /* call_changes older than this go; 0 = keep */
	int page_size;
	int concurrency;             /* pages a scan may have in flight */
	int batch_rows;              /* a commit takes pages up to this many rows... */
	uint64_t batch_time_ms;      /* ...or this long since its first page */
	uint64_t max_body_bytes;     /* a longer response body fails its page */
	double max_delete_fraction;  /* of a source's live calls one backfill may mark, 0..1 */
	enum config_order order;
	char *filter_status;      /* API filters; NULL = unset */
	char *filter_assistant_id;
	char *filter_contact_id;
	char *filter_call_type;
	enum log_level log_level;
	char *metrics_listen;     /* as written; "" = no metrics listener */
	char metrics_host[48];    /* numeric address to bind, when metrics_port > 0 */
	int metrics_port;         /* 0 = off */
	char *warnings;           /* to log at start, one per line; NULL = none */
};

/*
 * Fills cfg from defaults, then the file (path; NULL = the default path when
 * it exists), then the environment. Returns 0, or -1 with every problem found
 * written to err, one per line, each naming the key and where it was set.
 * need_token: the command talks to the API, so a missing key is one of them.
 * VOZAGENT_API_TOKEN is wiped from the environment once read.
 */
int config_load(struct config *cfg, const char *path, int need_token, char *err,
    size_t errlen);
void config_free(struct config *cfg);

/* "90", "90s", "1500ms", "5m", "2h", "1d" -> milliseconds. 0 or -1. */
int config_parse_duration(const char *s, uint64_t *ms);
/* "65536", "512k", "64M", "1G" (binary units) -> bytes. 0 or -1. */
int config_parse_size(const char *s, uint64_t *bytes);
/* "10%" or "0.1" -> 0.1; a fraction from 0 to 1 (100%). 0 or -1. */
int config_parse_fraction(const char *s, double *fraction);
/*
 * metrics_listen's value: "" (off: port 0), "9464" (127.0.0.1), "ADDR:PORT" or
 * "[V6ADDR]:PORT", numeric addresses only. 0, or -1 with why[] saying what is wrong.
 */
int config_parse_listen(const char *s, char *host, size_t hostlen, int *port, char *why,
    size_t whylen);
/* True when any API filter is set: a 400 from the API then points at them. */
int config_has_filters(const struct config *cfg);

/*
 * The keys whose values differ between cur and next, in the table's order
 * (api_token stands for the key itself, whichever key or variable set it):
 * the first max of their names go into names; returns how many differ.
 */
size_t config_changed_keys(const struct config *cur, const struct config *next,
    const char **names, size_t max);
/*
 * May a running daemon take a new value of key on reload? The others name a
 * different mirror or endpoint (source, database, API and its filters, the
 * metrics listener): changing them needs a restart.
 */
bool config_key_is_reloadable(const char *key);

#endif
