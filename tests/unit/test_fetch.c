/*
 * test_fetch: the pure helpers of fetch (query escaping, the key's redaction),
 * and its requests against a small HTTP/1.1 server in a thread of this test:
 * connections kept per request in flight, the body cap counted inflated.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "fetch.h"
#include "test.h"

static const char key[] = "sk-Secret-0123456789abcdef";

static void
setup(void)
{
}

/* ---- a keep-alive HTTP/1.1 server in threads, counting connections ---- */

struct srv {
	int lfd, port;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int conns, reqs;
	int hold;                   /* answer once this many requests came (at most 5 s later) */
	const char *body;           /* answered with Content-Encoding: gzip when gzip is set */
	size_t body_len;
	int gzip;
};

static struct srv srv;

static void
srv_write(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w <= 0)
			return;
		c += w;
		n -= (size_t)w;
	}
}

static void *
srv_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char req[8192];
	size_t have = 0, body_len;
	char *body;

	for (;;) {
		ssize_t r = read(fd, req + have, sizeof req - 1 - have);
		char head[256];
		struct timespec until;
		int n;

		if (r <= 0)
			break;
		have += (size_t)r;
		req[have] = '\0';
		if (strstr(req, "\r\n\r\n") == NULL)
			continue;
		have = 0;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		pthread_mutex_lock(&srv.mu);
		srv.reqs++;
		pthread_cond_broadcast(&srv.cv);
		while (srv.reqs < srv.hold &&
		    pthread_cond_timedwait(&srv.cv, &srv.mu, &until) == 0)
			;
		/* its own copy: the test may free the body while this thread still writes it */
		body_len = srv.body_len;
		body = malloc(body_len + 1);
		if (body != NULL)
			memcpy(body, srv.body, body_len);
		n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		    "%sContent-Length: %zu\r\n\r\n", srv.gzip ? "Content-Encoding: gzip\r\n" : "",
		    body_len);
		pthread_mutex_unlock(&srv.mu);
		if (body == NULL)
			break;
		srv_write(fd, head, (size_t)n);
		srv_write(fd, body, body_len);
		free(body);
	}
	close(fd);
	return NULL;
}

static void *
srv_accept(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(srv.lfd, NULL, NULL);
		pthread_t t;

		if (fd < 0)
			continue;
		pthread_mutex_lock(&srv.mu);
		srv.conns++;
		pthread_mutex_unlock(&srv.mu);
		if (pthread_create(&t, NULL, srv_conn, (void *)(intptr_t)fd) == 0)
			pthread_detach(t);
		else
			close(fd);
	}
	return NULL;
}

/* Starts the server once; each test sets what it answers and resets the counts. */
static void
srv_start(int hold, const char *body, size_t body_len, int gzip)
{
	static int started;
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	pthread_t t;

	if (!started) {
		pthread_mutex_init(&srv.mu, NULL);
		pthread_cond_init(&srv.cv, NULL);
		srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (srv.lfd < 0 || bind(srv.lfd, (struct sockaddr *)&a, sizeof a) < 0 ||
		    listen(srv.lfd, 64) < 0 || getsockname(srv.lfd, (struct sockaddr *)&a, &alen) < 0 ||
		    pthread_create(&t, NULL, srv_accept, NULL) != 0) {
			perror("test server");
			exit(2);
		}
		pthread_detach(t);
		srv.port = ntohs(a.sin_port);
		started = 1;
	}
	pthread_mutex_lock(&srv.mu);
	srv.conns = srv.reqs = 0;
	srv.hold = hold;
	srv.body = body;
	srv.body_len = body_len;
	srv.gzip = gzip;
	pthread_mutex_unlock(&srv.mu);
}

struct got {
	int done, failed;
	size_t bytes;
	char body[64];
	char error[256];
};

static int
on_data(void *arg, const char *buf, size_t len)
{
	struct got *g = arg;

	if (g->bytes + len < sizeof g->body)
		memcpy(g->body + g->bytes, buf, len);
	g->bytes += len;
	return 0;
}

static void
on_done(void *arg, const struct fetch_result *res)
{
	struct got *g = arg;

	g->done++;
	if (res->error[0] != '\0') {
		g->failed++;
		snprintf(g->error, sizeof g->error, "%s", res->error);
	}
}

/* Set-up that must work for the test to mean anything (in helpers that return a value). */
#define NEED(c) do {                                                                     \
		if (!(c)) {                                                                \
			fprintf(stderr, "%s:%d: test set-up failed: %s\n", __FILE__, __LINE__, #c); \
			exit(1);                                                           \
		}                                                                          \
	} while (0)

/* n GETs started together; returns fetch_connections() once all ended. */
static long
run_gets(int n, int max_connections, size_t max_body, struct got *g)
{
	struct fetch_opts o = { .bearer_token = key, .timeout_ms = 20000,
		.max_body_bytes = max_body, .allow_http = 1, .max_connections = max_connections };
	char url[64], err[256];
	uv_loop_t loop;
	struct fetch *f;
	long conns;

	memset(g, 0, sizeof *g);
	NEED(uv_loop_init(&loop) == 0);
	f = fetch_new(&loop, &o, err, sizeof err);
	NEED(f != NULL);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/calls", srv.port);
	for (int i = 0; i < n; i++)
		NEED(fetch_get(f, url, on_data, on_done, g) == 0);
	while (g->done < n)
		uv_run(&loop, UV_RUN_ONCE);
	conns = fetch_connections(f);
	fetch_free(f);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return conns;
}

/* gzip of "[" + n spaces + "]" */
static unsigned char *
gzip_of_spaces(size_t n, size_t *len)
{
	size_t cap = n / 100 + 4096;
	unsigned char *out = malloc(cap), *in = malloc(n + 2);
	z_stream z;

	NEED(out != NULL && in != NULL);
	in[0] = '[';
	memset(in + 1, ' ', n);
	in[n + 1] = ']';
	memset(&z, 0, sizeof z);
	NEED(deflateInit2(&z, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY) == Z_OK);
	z.next_in = in;
	z.avail_in = (uInt)(n + 2);
	z.next_out = out;
	z.avail_out = (uInt)cap;
	NEED(deflate(&z, Z_FINISH) == Z_STREAM_END);
	*len = z.total_out;
	deflateEnd(&z);
	free(in);
	return out;
}

/*
 * Requests in flight each keep their own connection and reuse it: with
 * max_connections 4, eight requests started together take four connections
 * (the server answers once four are in, so four are open at once); with no
 * limit, eight. fetch_connections() says what the server saw.
 */
static void
test_connections_per_request_in_flight(void)
{
	struct got g;

	srv_start(4, "[]", 2, 0);
	ASSERT_EQ_INT((int)run_gets(8, 4, 65536, &g), 4);
	ASSERT_EQ_INT(g.failed, 0);
	ASSERT_EQ_INT(srv.conns, 4);
	ASSERT_EQ_INT(srv.reqs, 8);

	srv_start(8, "[]", 2, 0);
	ASSERT_EQ_INT((int)run_gets(8, 0, 65536, &g), 8);
	ASSERT_EQ_INT(srv.conns, 8);

	/* one at a time: one connection, kept alive */
	srv_start(1, "[]", 2, 0);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ_INT((int)run_gets(1, 4, 65536, &g), 1);
	ASSERT_EQ_INT(g.bytes, 2);
}

/*
 * A gzip body is handed over inflated, and the cap counts inflated bytes: a
 * few hundred bytes on the wire that inflate past max_body fail the request
 * as over the cap, after no more than the cap was delivered.
 */
static void
test_body_cap_counts_inflated_bytes(void)
{
	struct got g;
	size_t len;
	unsigned char *gz = gzip_of_spaces(4 << 20, &len);

	ASSERT_TRUE(len < 65536);
	srv_start(1, (const char *)gz, len, 1);
	run_gets(1, 1, 65536, &g);
	ASSERT_EQ_INT(g.failed, 1);
	ASSERT_CONTAINS(g.error, "larger than the 65536-byte cap");
	ASSERT_CONTAINS(g.error, "decompression");
	ASSERT_TRUE(g.bytes <= 65536);
	free(gz);

	/* under the cap: the inflated body, whole */
	gz = gzip_of_spaces(10, &len);
	srv_start(1, (const char *)gz, len, 1);
	run_gets(1, 1, 65536, &g);
	ASSERT_EQ_INT(g.failed, 0);
	ASSERT_EQ_MEM(g.body, g.bytes, "[          ]", 12);
	free(gz);
}

static void
test_escape_fits_or_fails(void)
{
	char buf[16];

	ASSERT_EQ_INT(fetch_escape("a b/ü", buf, sizeof buf), 0);
	ASSERT_EQ_STR(buf, "a%20b%2F%C3%BC");
	/* 15 escaped bytes need 16 with the terminator: fits exactly */
	ASSERT_EQ_INT(fetch_escape("&&&&&", buf, sizeof buf), 0);
	ASSERT_EQ_STR(buf, "%26%26%26%26%26");
	/* one more does not: an error, never a cut value taken for the whole */
	ASSERT_EQ_INT(fetch_escape("&&&&&&", buf, sizeof buf), -1);
	ASSERT_EQ_INT(fetch_escape("x", buf, 0), -1);
}

static void
test_redact_whole_key(void)
{
	char in[256], out[256];

	snprintf(in, sizeof in, "Authorization: Bearer %s\nX: %s.", key, key);
	fetch_redact(in, strlen(in), key, out, sizeof out);
	ASSERT_EQ_STR(out, "Authorization: Bearer [redacted]\nX: [redacted].");
	/* no key, or no secret at all: copied as is */
	fetch_redact("plain text", 10, key, out, sizeof out);
	ASSERT_EQ_STR(out, "plain text");
	fetch_redact("plain text", 10, NULL, out, sizeof out);
	ASSERT_EQ_STR(out, "plain text");
}

static void
test_redact_key_cut_by_the_end(void)
{
	char in[256], out[256];

	/* what was kept of the body ends inside the key */
	snprintf(in, sizeof in, "Bearer %.10s", key);
	fetch_redact(in, strlen(in), key, out, sizeof out);
	ASSERT_EQ_STR(out, "Bearer [redacted]");
	ASSERT_NOT_CONTAINS(out, "sk-Se");
	/* three bytes tell nothing and may be anything: kept */
	fetch_redact("ab sk-", 6, key, out, sizeof out);
	ASSERT_EQ_STR(out, "ab sk-");
}

static void
test_redact_output_cut(void)
{
	char in[256], out[32];

	/* the key straddles the end of out: redacted first, then cut */
	snprintf(in, sizeof in, "0123456789012345678901234%s tail", key);
	fetch_redact(in, strlen(in), key, out, sizeof out);
	ASSERT_EQ_STR(out, "0123456789012345678901234[redac");
	ASSERT_NOT_CONTAINS(out, "sk-");
	/* bytes after a NUL are data too */
	memcpy(in, "a\0b", 3);
	memcpy(in + 3, key, sizeof key - 1);
	fetch_redact(in, 3 + sizeof key - 1, key, out, sizeof out);
	ASSERT_EQ_MEM(out, 13, "a\0b[redacted]", 13);
}

static const struct test_case tests[] = {
	TEST(test_escape_fits_or_fails),
	TEST(test_redact_whole_key),
	TEST(test_redact_key_cut_by_the_end),
	TEST(test_redact_output_cut),
	TEST(test_connections_per_request_in_flight),
	TEST(test_body_cap_counts_inflated_bytes),
};

int
main(int argc, char **argv)
{
	test_data_dir = argc > 1 ? argv[1] : NULL;
	if (fetch_global_init() < 0)
		return 2;
	return test_main(tests, sizeof tests / sizeof tests[0], setup, argv + 2,
	    argc > 2 ? argc - 2 : 0);
}
