/* fetch: HTTP GETs through one libcurl multi handle driven by the libuv loop. */
#ifndef VOZAGENT_FETCH_H
#define VOZAGENT_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct fetch_opts {
	const char *bearer_token;   /* copied; sent only in the Authorization header */
	long timeout_ms;            /* whole request */
	size_t max_body_bytes;      /* a longer 2xx body fails the request */
	int allow_http;             /* else https only */
	int max_connections;        /* kept-alive connections to the API, 0 = libcurl's default */
};

struct fetch_result {
	long http_status;           /* 0 when no response came */
	int transport_error;        /* connection, DNS, TLS, timeout, or body cap */
	int aborted;                /* the data callback refused the body */
	long retry_after_s;         /* Retry-After in seconds, -1 when absent */
	size_t body_bytes;
	char error[256];            /* what went wrong, for a person; "" on success */
	char excerpt[256];          /* start of a non-2xx body, the key redacted, for messages */
};

/* What the requests that ended met, for metrics. */
struct fetch_counts {
	int64_t status_class[6];    /* responses by the first digit of their status, 1..5 */
	int64_t status_429;
	int64_t timeouts;           /* requests that timed out before a response */
	int64_t errors;             /* other requests without a response (refused, reset, TLS) */
	int64_t open_connections;   /* sockets open to the API now */
};

/* Receives a 2xx body slice by slice; returns 0 to go on, -1 to abort. */
typedef int (*fetch_data_cb)(void *arg, const char *buf, size_t len);
/* Called once per fetch_get that returned 0, unless fetch_cancel() came first. */
typedef void (*fetch_done_cb)(void *arg, const struct fetch_result *res);

struct fetch;

struct fetch *fetch_new(uv_loop_t *loop, const struct fetch_opts *opts, char *err, size_t errlen);
/* Starts a GET of url. 0, or -1 (and the callbacks are never called). */
int fetch_get(struct fetch *f, const char *url, fetch_data_cb on_data, fetch_done_cb on_done,
    void *arg);
/* Abandons every request in flight; their callbacks are not called. */
void fetch_cancel(struct fetch *f);
/* Requests still in flight. */
int fetch_active(const struct fetch *f);
/* Connections opened so far by the requests that ended (fewer than requests: reuse). */
long fetch_connections(const struct fetch *f);
const struct fetch_counts *fetch_counts(const struct fetch *f);
/* Closes the libuv handles; the caller runs the loop once more to finish. */
void fetch_free(struct fetch *f);
/* Percent-encodes s for a query string into buf: 0, or -1 when it does not fit. */
int fetch_escape(const char *s, char *buf, size_t buflen);
/*
 * Copies in[0..len) to out (terminated, cut to outlen) with every occurrence
 * of secret, and a start of it cut by the end of in, replaced by "[redacted]".
 */
void fetch_redact(const char *in, size_t len, const char *secret, char *out, size_t outlen);

int fetch_global_init(void);
void fetch_global_cleanup(void);

#endif
