/* httpd: a small HTTP/1.x responder on the libuv loop: GET and HEAD, one response per connection. */
#include "httpd.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct httpd_conn {
	struct httpd *h;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wr;
	uv_shutdown_t sd;
	char in[HTTPD_MAX_REQUEST];
	size_t len;
	struct buf out;
	bool answered;      /* the response is written or being written: reads are discarded */
	bool closed;
	int handles_open;
	struct httpd_conn *prev, *next;
};

struct httpd {
	uv_tcp_t listener;
	httpd_respond_cb respond;
	void *arg;
	struct httpd_conn *conns;
	int nconns;
};

/* Where the headers end: just past the first empty line, or NULL. */
static const char *
headers_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return buf + i + 2;
		if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
			return buf + i + 3;
	}
	return NULL;
}

enum httpd_parsed
httpd_parse(const char *buf, size_t len, char *method, size_t methodlen, char *path,
    size_t pathlen)
{
	const char *eol;
	size_t ll, i, j, k, plen;

	if (headers_end(buf, len) == NULL)
		return len >= HTTPD_MAX_REQUEST ? HTTPD_TOO_LARGE : HTTPD_NEED_MORE;
	eol = memchr(buf, '\n', len);
	ll = (size_t)(eol - buf);
	if (ll > 0 && buf[ll - 1] == '\r')
		ll--;
	/* METHOD SP /target SP HTTP/1.x */
	for (i = 0; i < ll && buf[i] >= 'A' && buf[i] <= 'Z'; i++)
		;
	if (i == 0 || i > 15 || i >= methodlen || i >= ll || buf[i] != ' ')
		return HTTPD_BAD;
	j = i + 1;
	if (j >= ll || buf[j] != '/')
		return HTTPD_BAD;
	for (k = j; k < ll && buf[k] > ' ' && buf[k] < 0x7f; k++)
		;
	if (k >= ll || buf[k] != ' ')
		return HTTPD_BAD;
	if (ll - (k + 1) != 8 || (memcmp(buf + k + 1, "HTTP/1.0", 8) != 0 &&
	    memcmp(buf + k + 1, "HTTP/1.1", 8) != 0))
		return HTTPD_BAD;
	for (plen = 0; j + plen < k && buf[j + plen] != '?'; plen++)
		;
	if (plen >= pathlen)
		return HTTPD_BAD;
	memcpy(method, buf, i);
	method[i] = '\0';
	memcpy(path, buf + j, plen);
	path[plen] = '\0';
	return HTTPD_REQUEST;
}

static void
on_conn_closed(uv_handle_t *handle)
{
	struct httpd_conn *c = handle->data;

	if (--c->handles_open > 0)
		return;
	buf_free(&c->out);
	free(c);
}

static void
conn_close(struct httpd_conn *c)
{
	struct httpd *h = c->h;

	if (c->closed)
		return;
	c->closed = true;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	h->nconns--;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
	uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

/* The longest-held connection still waiting for its request; else c itself. */
static struct httpd_conn *
conn_oldest_waiting(struct httpd *h, struct httpd_conn *c)
{
	struct httpd_conn *old = c;

	/* newest first: the last one that waits is the oldest */
	for (struct httpd_conn *x = h->conns; x != NULL; x = x->next)
		if (!x->answered && x != c)
			old = x;
	return old;
}

static const char *
status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

static void
on_uv_shutdown(uv_shutdown_t *req, int status)
{
	struct httpd_conn *c = req->data;

	/* the client closes its side once it has read the answer; the timer bounds the wait */
	if (status < 0 && !c->closed)
		conn_close(c);
}

static void
on_uv_written(uv_write_t *req, int status)
{
	struct httpd_conn *c = req->data;

	if (c->closed)
		return;
	/*
	 * Half-close and read on until the client closes: closing with its
	 * unread bytes in the socket would send a reset that may destroy the answer.
	 */
	c->sd.data = c;
	if (status < 0 || uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_uv_shutdown) != 0)
		conn_close(c);
}

/* Writes the one response of the connection; with head_only, the headers alone. */
static void
conn_answer(struct httpd_conn *c, int status, const char *ctype, const char *extra,
    const char *body, size_t bodylen, bool head_only)
{
	char headers[512];
	int n;
	uv_buf_t b;

	c->answered = true;
	c->len = 0;
	n = snprintf(headers, sizeof headers, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n%s\r\n", status, status_text(status),
	    ctype, bodylen, extra);
	if (n < 0 || (size_t)n >= sizeof headers) {
		conn_close(c);
		return;
	}
	/* the response is built apart from the body buffer the callback may have used */
	{
		struct buf whole;
		buf_init(&whole, sizeof headers + HTTPD_MAX_BODY);
		if (buf_append(&whole, headers, (size_t)n) < 0 ||
		    (!head_only && buf_append(&whole, body, bodylen) < 0)) {
			buf_free(&whole);
			conn_close(c);
			return;
		}
		buf_free(&c->out);
		c->out = whole;
	}
	b = uv_buf_init(c->out.data, (unsigned)c->out.len);
	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_uv_written) != 0)
		conn_close(c);
}

static void
conn_serve(struct httpd_conn *c, const char *method, const char *path)
{
	static const char text[] = "text/plain; charset=utf-8";
	bool head_only = strcmp(method, "HEAD") == 0;
	const char *ctype = text;
	struct buf body;
	int status;

	if (strcmp(method, "GET") != 0 && !head_only) {
		conn_answer(c, 405, text, "Allow: GET, HEAD\r\n", "method not allowed\n", 19, false);
		return;
	}
	buf_init(&body, HTTPD_MAX_BODY);
	status = c->h->respond(c->h->arg, path, &body, &ctype);
	if (status == 404 && body.len == 0)
		conn_answer(c, 404, text, "", "not found\n", 10, head_only);
	else
		conn_answer(c, status, ctype, "", body.data != NULL ? body.data : "", body.len,
		    head_only);
	buf_free(&body);
}

static void
on_uv_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
	struct httpd_conn *c = handle->data;

	(void)suggested;
	/* once answered, whatever still comes is read into the start and dropped */
	*b = uv_buf_init(c->in + c->len, (unsigned)(sizeof c->in - c->len));
}

static void
on_uv_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	struct httpd_conn *c = stream->data;
	char method[16], path[1024];

	(void)b;
	if (c->closed)
		return;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	if (c->answered || nread == 0)
		return;
	c->len += (size_t)nread;
	switch (httpd_parse(c->in, c->len, method, sizeof method, path, sizeof path)) {
	case HTTPD_NEED_MORE:
		return;
	case HTTPD_BAD:
		conn_answer(c, 400, "text/plain; charset=utf-8", "", "bad request\n", 12, false);
		return;
	case HTTPD_TOO_LARGE:
		conn_answer(c, 431, "text/plain; charset=utf-8", "",
		    "request headers too large\n", 26, false);
		return;
	case HTTPD_REQUEST:
		conn_serve(c, method, path);
		return;
	}
}

static void
on_uv_conn_timeout(uv_timer_t *t)
{
	conn_close(t->data);
}

static void
on_uv_connection(uv_stream_t *server, int status)
{
	struct httpd *h = server->data;
	struct httpd_conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return;
	c->h = h;
	buf_init(&c->out, 0);
	if (uv_tcp_init(server->loop, &c->tcp) != 0) {
		free(c);
		return;
	}
	c->tcp.data = c;
	c->handles_open = 1;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
	    uv_timer_init(server->loop, &c->timer) != 0) {
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
		return;
	}
	c->timer.data = c;
	c->handles_open = 2;
	c->next = h->conns;
	if (h->conns != NULL)
		h->conns->prev = c;
	h->conns = c;
	h->nconns++;
	/*
	 * A slow client holds a connection at most this long, and only so many
	 * at once: past that the oldest still waiting for its request makes
	 * room, so idle connections cannot keep a scraper out.
	 */
	if (h->nconns > HTTPD_MAX_CONNECTIONS) {
		struct httpd_conn *victim = conn_oldest_waiting(h, c);

		conn_close(victim);
		if (victim == c)
			return;
	}
	if (uv_timer_start(&c->timer, on_uv_conn_timeout, HTTPD_TIMEOUT_MS, 0) != 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, on_uv_alloc, on_uv_read) != 0)
		conn_close(c);
}

static void
on_uv_listener_closed(uv_handle_t *handle)
{
	free(handle->data);
}

struct httpd *
httpd_new(uv_loop_t *loop, const char *host, int port, httpd_respond_cb respond, void *arg,
    char *err, size_t errlen)
{
	struct httpd *h = calloc(1, sizeof *h);
	struct sockaddr_storage sa;
	bool v6 = strchr(host, ':') != NULL;
	int rc;

	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->respond = respond;
	h->arg = arg;
	rc = v6 ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) :
	    uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
	if (rc == 0)
		rc = uv_tcp_init(loop, &h->listener);
	if (rc != 0) {
		snprintf(err, errlen, "%s%s%s:%d: %s", v6 ? "[" : "", host, v6 ? "]" : "", port,
		    uv_strerror(rc));
		free(h);
		return NULL;
	}
	h->listener.data = h;
	/* uv_tcp_bind defers some errors (EADDRINUSE) to listen */
	rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&sa, v6 ? UV_TCP_IPV6ONLY : 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&h->listener, 64, on_uv_connection);
	if (rc != 0) {
		snprintf(err, errlen, "cannot listen on %s%s%s:%d: %s", v6 ? "[" : "", host,
		    v6 ? "]" : "", port, uv_strerror(rc));
		uv_close((uv_handle_t *)&h->listener, on_uv_listener_closed);
		return NULL;
	}
	return h;
}

void
httpd_free(struct httpd *h)
{
	if (h == NULL)
		return;
	while (h->conns != NULL)
		conn_close(h->conns);
	uv_close((uv_handle_t *)&h->listener, on_uv_listener_closed);
}
