/* check: `vozagent-sync check`: is everything `run` needs there? One line per check. */
#include "check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "config.h"
#include "fetch.h"
#include "log.h"
#include "parse.h"
#include "store.h"
#include "sync.h"

/* One request, on a loop of its own: what came back. */
struct check_api {
	struct parse *parse;
	int parse_failed;
	int done;
	struct fetch_result res;
};

/* The calls themselves do not matter: that the body is a list of them does. */
static int
cb_api_record(void *arg, const struct record *rec)
{
	(void)arg;
	(void)rec;
	return 0;
}

static int
cb_api_data(void *arg, const char *buf, size_t len)
{
	struct check_api *ca = arg;

	/* keep reading when the body is not a list: the status says more than the body */
	if (!ca->parse_failed && parse_feed(ca->parse, buf, len) < 0)
		ca->parse_failed = 1;
	return 0;
}

static void
cb_api_done(void *arg, const struct fetch_result *res)
{
	struct check_api *ca = arg;

	ca->res = *res;
	ca->done = 1;
}

static void
check_line(FILE *out, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
check_line(FILE *out, const char *what, const char *fmt, ...)
{
	va_list ap;

	fprintf(out, "%s: ", what);
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
	fflush(out);
}

/* The answer to one GET of the listing with limit=1, as a line. */
static enum check_result
check_api_answer(const struct config *cfg, struct check_api *ca, FILE *out)
{
	const struct fetch_result *r = &ca->res;
	char excerpt[sizeof r->excerpt];

	size_t n;

	memcpy(excerpt, r->excerpt, sizeof excerpt);
	log_clean(excerpt);
	for (n = strlen(excerpt); n > 0 && excerpt[n - 1] == ' '; n--)
		excerpt[n - 1] = '\0';
	if (r->http_status == 401 || r->http_status == 403) {
		check_line(out, "API", "FAIL: the API refused the key from %s (HTTP %ld%s%.120s): "
		    "check api_token / api_token_file / the credential holds the account's current key",
		    cfg->api_token_origin, r->http_status, *excerpt != '\0' ? ": " : "", excerpt);
		return CHECK_AUTH;
	}
	if (r->http_status == 400) {
		check_line(out, "API", "FAIL: the API refused the request (HTTP 400%s%.120s): %s",
		    *excerpt != '\0' ? ": " : "", excerpt, config_has_filters(cfg) ?
		    "check the filters status, assistant_id, contact_id and call_type" :
		    "check api_url points at the VozAgent API");
		return config_has_filters(cfg) ? CHECK_CONFIG : CHECK_API;
	}
	if (r->transport_error || r->http_status == 0) {
		check_line(out, "API", "FAIL: cannot reach %s: %s: check api_url, the network, "
		    "and that the API is up", cfg->api_url, r->error);
		return CHECK_API;
	}
	if (r->http_status < 200 || r->http_status > 299) {
		check_line(out, "API", "FAIL: the API answered HTTP %ld%s%.120s: it is failing; "
		    "try again later (`run` retries on its own)", r->http_status,
		    *excerpt != '\0' ? ": " : "", excerpt);
		return CHECK_API;
	}
	if (ca->parse_failed || parse_finish(ca->parse) < 0) {
		check_line(out, "API", "FAIL: the API answered HTTP %ld but not with a list of "
		    "calls (%s): check api_url points at the VozAgent API, not a proxy or a web page",
		    r->http_status, parse_errmsg(ca->parse));
		return CHECK_API;
	}
	check_line(out, "API", "OK (%s answered with %u call%s for limit=1)", cfg->api_url,
	    parse_records(ca->parse), parse_records(ca->parse) == 1 ? "" : "s");
	return CHECK_OK;
}

/* One limit=1 GET of the listing `run` reads, filters and all. */
static enum check_result
check_api(const struct config *cfg, FILE *out)
{
	struct fetch_opts fo;
	struct check_api ca;
	struct fetch *fetch;
	uv_loop_t loop;
	char err[256], *prefix, *url;
	enum check_result rc = CHECK_API;

	sync_fetch_opts(cfg, &fo);
	fo.max_connections = 1;    /* one request */
	memset(&ca, 0, sizeof ca);
	prefix = sync_list_url(cfg, 1, cfg->filter_status, cfg->filter_contact_id);
	url = prefix != NULL ? malloc(strlen(prefix) + 2) : NULL;
	if (url == NULL) {
		free(prefix);
		check_line(out, "API", "FAIL: cannot build the request URL (too long, or out of "
		    "memory): check the filters in the configuration");
		return CHECK_CONFIG;
	}
	/* the URL holds no secret: the key travels in the Authorization header only */
	snprintf(url, strlen(prefix) + 2, "%s0", prefix);
	free(prefix);
	ca.parse = parse_new((size_t)cfg->max_body_bytes, cb_api_record, NULL);
	if (ca.parse == NULL || uv_loop_init(&loop) != 0) {
		parse_free(ca.parse);
		free(url);
		check_line(out, "API", "FAIL: out of memory setting up the request");
		return CHECK_API;
	}
	fetch = fetch_new(&loop, &fo, err, sizeof err);
	if (fetch == NULL) {
		check_line(out, "API", "FAIL: %s", err);
	} else if (fetch_get(fetch, url, cb_api_data, cb_api_done, &ca) < 0) {
		check_line(out, "API", "FAIL: cannot start a request to %s", cfg->api_url);
	} else {
		uv_run(&loop, UV_RUN_DEFAULT);
		if (ca.done)
			rc = check_api_answer(cfg, &ca, out);
		else
			check_line(out, "API", "FAIL: the request to %s never ended", cfg->api_url);
	}
	/* closing handles needs one more turn of the loop */
	fetch_free(fetch);
	uv_run(&loop, UV_RUN_DEFAULT);
	(void)uv_loop_close(&loop);
	parse_free(ca.parse);
	free(url);
	return rc;
}

/* Does the server know report_time_zone? What each pass's configure_source would say. */
static enum check_result
check_time_zone(const struct config *cfg, struct store *st, FILE *out)
{
	bool known;

	if (store_time_zone_is_known(st, cfg->report_time_zone, &known) < 0) {
		check_line(out, "report_time_zone", "FAIL: %s", store_errmsg(st));
		return CHECK_DATABASE;
	}
	if (!known) {
		check_line(out, "report_time_zone", "FAIL: '%s' is not a time zone PostgreSQL knows: "
		    STORE_TIME_ZONE_REMEDY, cfg->report_time_zone);
		return CHECK_CONFIG;
	}
	check_line(out, "report_time_zone", "OK (%s)", cfg->report_time_zone);
	return CHECK_OK;
}

/* Connects as `run` does, then the schema and the role's rights, changing nothing. */
static enum check_result
check_database(const struct config *cfg, FILE *out)
{
	struct store_inspection in;
	struct store *st = store_new();
	enum check_result rc = CHECK_DATABASE, zone = CHECK_OK;

	if (st == NULL) {
		check_line(out, "database", "FAIL: out of memory");
		return CHECK_DATABASE;
	}
	if (store_connect(st, cfg->database_url) < 0) {
		check_line(out, "database", "FAIL: %s: check database_url, that PostgreSQL runs "
		    "and is writable, and the role's password (~/.pgpass or the URL)", store_errmsg(st));
		goto out;
	}
	check_line(out, "database", "OK (connected)");
	zone = check_time_zone(cfg, st, out);
	if (zone == CHECK_DATABASE)
		goto out;
	if (store_inspect(st, &in) < 0) {
		check_line(out, "schema", "FAIL: %s: check the role's USAGE on schema vozagent "
		    "(docs/writer-role.sql)", store_errmsg(st));
		goto out;
	}
	if (in.current < 0) {
		check_line(out, "schema", "FAIL: this role lacks %s, so cannot even read the "
		    "schema's version: grant the writer's rights as the schema's owner "
		    "(docs/writer-role.sql)", in.missing);
		goto out;
	}
	if (in.current > in.latest) {
		check_line(out, "schema", "FAIL: version %d, newer than this vozagent-sync knows "
		    "(%d): upgrade vozagent-sync", in.current, in.latest);
		goto out;
	}
	if (in.current < in.latest && !in.may_migrate) {
		if (in.current == 0) {
			check_line(out, "schema", "FAIL: not created yet, and this role may not "
			    "create it: run `vozagent-sync migrate` as the schema's owner");
			goto out;
		}
		check_line(out, "schema", "FAIL: at version %d, this vozagent-sync needs %d, and "
		    "this role may not migrate it: run `vozagent-sync migrate` as the schema's owner",
		    in.current, in.latest);
	} else if (in.current < in.latest) {
		check_line(out, "schema", "OK (%s %d: `run` migrates it at start, or run "
		    "`vozagent-sync migrate` now)", in.current == 0 ? "not created yet, this "
		    "vozagent-sync creates version" : "pending migrations up to version", in.latest);
	} else {
		check_line(out, "schema", "OK (version %d, up to date)", in.current);
	}
	if (in.missing[0] != '\0') {
		check_line(out, "rights", "FAIL: this role lacks %s: grant them as the schema's "
		    "owner (docs/writer-role.sql)", in.missing);
		goto out;
	}
	if (in.current < in.latest && !in.may_migrate)
		goto out;
	check_line(out, "rights", in.current == 0 ? "OK (this role may create the schema)" :
	    "OK (this role may write the mirror)");
	rc = CHECK_OK;
out:
	store_free(st);
	/* a zone to fix in the configuration outlasts what the database lacks */
	return zone == CHECK_CONFIG ? CHECK_CONFIG : rc;
}

enum check_result
check_all(const char *path, FILE *out)
{
	struct config cfg;
	char err[8192];
	enum check_result api, db;

	/* the configuration as `run` needs it, the key included */
	if (config_load(&cfg, path, 1, err, sizeof err) < 0) {
		for (char *line = strtok(err, "\n"); line != NULL; line = strtok(NULL, "\n"))
			check_line(out, "configuration", "FAIL: %s", line);
		check_line(out, "API", "not checked: fix the configuration first");
		check_line(out, "database", "not checked: fix the configuration first");
		return CHECK_CONFIG;
	}
	log_init(cfg.log_level);
	check_line(out, "configuration", "OK (%s, source '%s', key from %s)", cfg.path != NULL ?
	    cfg.path : "no file, environment only", cfg.source, cfg.api_token_origin);
	if (cfg.warnings != NULL)
		for (char *line = strtok(cfg.warnings, "\n"); line != NULL; line = strtok(NULL, "\n"))
			check_line(out, "configuration", "warning: %s", line);
	api = check_api(&cfg, out);
	db = check_database(&cfg, out);
	config_free(&cfg);
	/* the most lasting problem decides the status: a key or a database outlives an outage */
	return api == CHECK_CONFIG || api == CHECK_AUTH ? api : db != CHECK_OK ? db : api;
}
