/* fetch: HTTP GETs through one libcurl multi handle driven by the libuv loop. */
#define _DEFAULT_SOURCE  /* explicit_bzero */
#include "fetch.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sys/socket.h>

#include <curl/curl.h>

#define FETCH_ERROR_BODY_MAX (64 * 1024)  /* we read no more of a non-2xx body */
#define FETCH_RETRY_AFTER_MAX 86400

struct fetch_req {
	struct fetch *f;
	CURL *easy;
	fetch_data_cb on_data;
	fetch_done_cb on_done;
	void *arg;
	int status_known, is_2xx;
	char *raw;                  /* start of a non-2xx body, before redaction */
	size_t raw_len, raw_max;
	struct fetch_result res;
	char curl_err[CURL_ERROR_SIZE];
	struct fetch_req *prev, *next;
};

struct fetch {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct curl_slist *headers;
	char *token;                /* to redact from error bodies */
	const char *protocols;      /* the only ones a request may use */
	long timeout_ms;
	size_t max_body;
	struct fetch_req *reqs;
	int active;
	long connections;           /* opened by the requests that ended */
	struct fetch_counts counts;
	struct fetch_sock *socks;   /* watched sockets, so fetch_free can close them all */
};

/* One per socket libcurl asks us to watch; freed in its close callback. */
struct fetch_sock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct fetch *f;
	struct fetch_sock *prev, *next;
};

static void fetch_check_done(struct fetch *f);

int
fetch_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void
fetch_global_cleanup(void)
{
	curl_global_cleanup();
}

int
fetch_escape(const char *s, char *buf, size_t buflen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (buflen == 0)
		return -1;
	for (; *s != '\0' && o + 4 <= buflen; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
			buf[o++] = (char)c;
		} else {
			buf[o++] = '%';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
	}
	buf[o] = '\0';
	return *s == '\0' ? 0 : -1;
}

void
fetch_redact(const char *in, size_t len, const char *secret, char *out, size_t outlen)
{
	static const char mark[] = "[redacted]";
	size_t slen = secret != NULL ? strlen(secret) : 0, o = 0, i = 0;

	if (outlen == 0)
		return;
	while (i < len && o + 1 < outlen) {
		size_t left = len - i;
		/* whole, or cut by the end of what was kept (a few bytes tell nothing) */
		if (slen > 0 && ((left >= slen && memcmp(in + i, secret, slen) == 0) ||
		    (left < slen && left >= 4 && memcmp(in + i, secret, left) == 0))) {
			size_t take = sizeof mark - 1 < outlen - 1 - o ? sizeof mark - 1 : outlen - 1 - o;
			memcpy(out + o, mark, take);
			o += take;
			i += left < slen ? left : slen;
			continue;
		}
		out[o++] = in[i++];
	}
	out[o] = '\0';
}

/* Frees what may hold the key (a copy of it, or an error body that echoed it). */
static void
wipe_free(void *p, size_t n)
{
	if (p != NULL)
		explicit_bzero(p, n);
	free(p);
}

static void
req_free(struct fetch_req *r)
{
	wipe_free(r->raw, r->raw_max);
	free(r);
}

/*
 * Keeps the start of an error body, with room for a key that starts inside the
 * excerpt and ends past it, so that the redaction sees it whole.
 */
static void
req_keep_body(struct fetch_req *r, const char *p, size_t n)
{
	if (r->raw == NULL) {
		r->raw_max = sizeof r->res.excerpt - 1 + strlen(r->f->token);
		r->raw = malloc(r->raw_max);
		if (r->raw == NULL)
			return;
	}
	if (n > r->raw_max - r->raw_len)
		n = r->raw_max - r->raw_len;
	memcpy(r->raw + r->raw_len, p, n);
	r->raw_len += n;
}

/* Limits a request to f->protocols; -1 when this libcurl cannot, and it must not be sent. */
static int
fetch_restrict(const struct fetch *f, CURL *easy)
{
#if LIBCURL_VERSION_NUM >= 0x075500
	return curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, f->protocols) == CURLE_OK ? 0 : -1;
#else
	long mask = strcmp(f->protocols, "https") == 0 ? CURLPROTO_HTTPS :
	    CURLPROTO_HTTP | CURLPROTO_HTTPS;
	return curl_easy_setopt(easy, CURLOPT_PROTOCOLS, mask) == CURLE_OK ? 0 : -1;
#endif
}

static void
on_uv_sock_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
fetch_sock_close(struct fetch_sock *s)
{
	struct fetch *f = s->f;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		f->socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, on_uv_sock_closed);
}

static void
on_uv_poll(uv_poll_t *h, int status, int events)
{
	struct fetch_sock *s = h->data;
	struct fetch *f = s->f;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(f->multi, s->fd, flags, &running);
	fetch_check_done(f);
}

static void
on_uv_timeout(uv_timer_t *t)
{
	struct fetch *f = t->data;
	int running;

	curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	fetch_check_done(f);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching a socket. */
static int
cb_socket(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
	struct fetch *f = userp;
	struct fetch_sock *s = socketp;
	int events = 0;

	(void)easy;
	if (action == CURL_POLL_REMOVE) {
		if (s != NULL) {
			curl_multi_assign(f->multi, fd, NULL);
			fetch_sock_close(s);
		}
		return 0;
	}
	if (s == NULL) {
		s = calloc(1, sizeof *s);
		if (s == NULL)
			return -1;
		s->fd = fd;
		s->f = f;
		if (uv_poll_init_socket(f->loop, &s->poll, fd) != 0) {
			free(s);
			return -1;
		}
		s->poll.data = s;
		s->next = f->socks;
		if (f->socks != NULL)
			f->socks->prev = s;
		f->socks = s;
		curl_multi_assign(f->multi, fd, s);
	}
	if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	return uv_poll_start(&s->poll, events, on_uv_poll) == 0 ? 0 : -1;
}

/* CURLOPT_OPENSOCKETFUNCTION and _CLOSESOCKETFUNCTION: count the sockets open now. */
static curl_socket_t
cb_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct fetch *f = clientp;
	curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);

	(void)purpose;
	if (fd != CURL_SOCKET_BAD)
		f->counts.open_connections++;
	return fd;
}

static int
cb_close_socket(void *clientp, curl_socket_t fd)
{
	struct fetch *f = clientp;

	f->counts.open_connections--;
	return close(fd);
}

/* CURLMOPT_TIMERFUNCTION: curl wants to be called back after timeout_ms. */
static int
cb_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct fetch *f = userp;

	(void)multi;
	if (timeout_ms < 0)
		return uv_timer_stop(&f->timer);
	/* 0 would run curl from inside its own callback: wait 1 ms instead */
	if (timeout_ms == 0)
		timeout_ms = 1;
	return uv_timer_start(&f->timer, on_uv_timeout, (uint64_t)timeout_ms, 0);
}

static void
req_check_status(struct fetch_req *r)
{
	long code = 0;

	if (r->status_known)
		return;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
	r->res.http_status = code;
	r->is_2xx = code >= 200 && code < 300;
	r->status_known = 1;
}

static size_t
cb_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct fetch_req *r = userdata;
	size_t n = size * nmemb;

	req_check_status(r);
	r->res.body_bytes += n;
	if (!r->is_2xx) {
		req_keep_body(r, ptr, n);
		return r->res.body_bytes > FETCH_ERROR_BODY_MAX ? 0 : n;
	}
	/*
	 * libcurl hands over the body decoded (gzip, deflate, br, zstd): the cap
	 * counts what it inflates to, so a small compressed body cannot grow past it.
	 */
	if (r->res.body_bytes > r->f->max_body) {
		r->res.transport_error = 1;
		snprintf(r->res.error, sizeof r->res.error,
		    "response body larger than the %zu-byte cap (max_body_size, counted after "
		    "decompression)", r->f->max_body);
		return 0;
	}
	if (r->on_data(r->arg, ptr, n) < 0) {
		r->res.aborted = 1;
		return 0;
	}
	return n;
}

/* Retry-After is delay-seconds or an HTTP date; anything else is ignored. */
static size_t
cb_header(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct fetch_req *r = userdata;
	size_t n = size * nitems;
	static const char name[] = "retry-after:";
	char val[128];
	size_t vlen;
	char *end;
	long secs;

	if (n <= sizeof name - 1 || strncasecmp(buf, name, sizeof name - 1) != 0)
		return n;
	vlen = n - (sizeof name - 1);
	if (vlen >= sizeof val)
		return n;
	memcpy(val, buf + sizeof name - 1, vlen);
	val[vlen] = '\0';
	while (vlen > 0 && isspace((unsigned char)val[vlen - 1]))
		val[--vlen] = '\0';
	end = val;
	while (isspace((unsigned char)*end))
		end++;
	if (isdigit((unsigned char)*end)) {
		secs = strtol(end, &end, 10);
		if (*end != '\0')
			return n;
	} else {
		time_t when = curl_getdate(end, NULL);
		if (when < 0)
			return n;
		secs = (long)(when - time(NULL));
		if (secs < 0)
			secs = 0;
	}
	r->res.retry_after_s = secs > FETCH_RETRY_AFTER_MAX ? FETCH_RETRY_AFTER_MAX : secs;
	return n;
}

struct fetch *
fetch_new(uv_loop_t *loop, const struct fetch_opts *opts, char *err, size_t errlen)
{
	struct fetch *f = calloc(1, sizeof *f);
	char *auth = NULL;
	size_t alen;
	CURL *probe;

	if (f == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	f->protocols = opts->allow_http ? "http,https" : "https";
	/* the key must go nowhere but to the API: fail closed if requests cannot be limited */
	probe = curl_easy_init();
	if (probe == NULL || fetch_restrict(f, probe) < 0) {
		snprintf(err, errlen, "this libcurl (%s) cannot limit requests to %s, so the API "
		    "key could be sent elsewhere: refusing to start (libcurl 7.85 or later needed)",
		    curl_version_info(CURLVERSION_NOW)->version, f->protocols);
		if (probe != NULL)
			curl_easy_cleanup(probe);
		free(f);
		return NULL;
	}
	curl_easy_cleanup(probe);
	f->loop = loop;
	f->timeout_ms = opts->timeout_ms;
	f->max_body = opts->max_body_bytes;
	f->multi = curl_multi_init();
	if (f->multi == NULL || uv_timer_init(loop, &f->timer) != 0) {
		snprintf(err, errlen, "cannot set up libcurl");
		if (f->multi != NULL)
			curl_multi_cleanup(f->multi);
		free(f);
		return NULL;
	}
	f->timer.data = f;
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, cb_socket);
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, cb_timer);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
	/* HTTP/2 over TLS carries every request on one connection (libcurl's default since 7.62) */
	curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	if (opts->max_connections > 0) {
		/* one connection per request in flight, each kept for the next one */
		curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)opts->max_connections);
		curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)opts->max_connections);
	}

	alen = strlen(opts->bearer_token) + 32;
	auth = malloc(alen);
	if (auth != NULL) {
		snprintf(auth, alen, "Authorization: Bearer %s", opts->bearer_token);
		f->headers = curl_slist_append(NULL, auth);
		wipe_free(auth, alen); /* the slist keeps its own copy */
	}
	if (f->headers != NULL)
		f->headers = curl_slist_append(f->headers, "Accept: application/json");
	f->token = strdup(opts->bearer_token);
	if (f->headers == NULL || f->token == NULL) {
		snprintf(err, errlen, "out of memory");
		fetch_free(f);
		return NULL;
	}
	return f;
}

static void
req_unlink(struct fetch_req *r)
{
	struct fetch *f = r->f;

	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		f->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	curl_multi_remove_handle(f->multi, r->easy);
	curl_easy_cleanup(r->easy);
	f->active--;
}

int
fetch_get(struct fetch *f, const char *url, fetch_data_cb on_data, fetch_done_cb on_done,
    void *arg)
{
	struct fetch_req *r = calloc(1, sizeof *r);

	if (r == NULL)
		return -1;
	r->easy = curl_easy_init();
	if (r->easy == NULL) {
		free(r);
		return -1;
	}
	r->f = f;
	r->on_data = on_data;
	r->on_done = on_done;
	r->arg = arg;
	r->res.retry_after_s = -1;
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, f->headers);
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "vozagent-sync/" VOZAGENT_VERSION);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->curl_err);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, cb_write);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, cb_header);
	curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, f->timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, f->timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_OPENSOCKETFUNCTION, cb_open_socket);
	curl_easy_setopt(r->easy, CURLOPT_OPENSOCKETDATA, f);
	curl_easy_setopt(r->easy, CURLOPT_CLOSESOCKETFUNCTION, cb_close_socket);
	curl_easy_setopt(r->easy, CURLOPT_CLOSESOCKETDATA, f);
	curl_easy_setopt(r->easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(r->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	/*
	 * Over https, requests started together wait for the first connection to
	 * say whether it multiplexes (h2); plain http is HTTP/1.1, where waiting
	 * would only hold a request back from a connection of its own.
	 */
	if (strncasecmp(url, "https:", 6) == 0)
		curl_easy_setopt(r->easy, CURLOPT_PIPEWAIT, 1L);
	/* never follow redirects: a 3xx is reported, and the key goes nowhere else */
	curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
	if (fetch_restrict(f, r->easy) < 0 || curl_multi_add_handle(f->multi, r->easy) != CURLM_OK) {
		curl_easy_cleanup(r->easy);
		free(r);
		return -1;
	}
	r->next = f->reqs;
	if (f->reqs != NULL)
		f->reqs->prev = r;
	f->reqs = r;
	f->active++;
	return 0;
}

static void
req_finish(struct fetch_req *r, CURLcode code)
{
	struct fetch_result *res = &r->res;

	req_check_status(r);
	if (r->raw != NULL)
		fetch_redact(r->raw, r->raw_len, r->f->token, res->excerpt, sizeof res->excerpt);
	if (code != CURLE_OK && !res->aborted && res->error[0] == '\0') {
		res->transport_error = 1;
		snprintf(res->error, sizeof res->error, "%s%s%s", curl_easy_strerror(code),
		    r->curl_err[0] != '\0' ? ": " : "", r->curl_err);
	} else if (code == CURLE_OK && !r->is_2xx) {
		snprintf(res->error, sizeof res->error, "HTTP %ld", res->http_status);
	}
}

static void
fetch_count(struct fetch *f, const struct fetch_result *res, CURLcode code)
{
	if (res->http_status >= 100 && res->http_status <= 599) {
		f->counts.status_class[res->http_status / 100]++;
		if (res->http_status == 429)
			f->counts.status_429++;
	} else if (code == CURLE_OPERATION_TIMEDOUT) {
		f->counts.timeouts++;
	} else if (code != CURLE_OK) {
		f->counts.errors++;
	}
}

static void
fetch_check_done(struct fetch *f)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
		struct fetch_req *r;
		struct fetch_result res;
		long conns = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &conns) == CURLE_OK)
			f->connections += conns;
		req_finish(r, msg->data.result);
		/* msg dies with the handle: copy the result, then let the caller go on */
		res = r->res;
		fetch_count(f, &res, msg->data.result);
		req_unlink(r);
		r->on_done(r->arg, &res);
		req_free(r);
	}
}

void
fetch_cancel(struct fetch *f)
{
	while (f->reqs != NULL) {
		struct fetch_req *r = f->reqs;
		req_unlink(r);
		req_free(r);
	}
}

int
fetch_active(const struct fetch *f)
{
	return f->active;
}

const struct fetch_counts *
fetch_counts(const struct fetch *f)
{
	return &f->counts;
}

long
fetch_connections(const struct fetch *f)
{
	return f->connections;
}

static void
on_uv_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

void
fetch_free(struct fetch *f)
{
	if (f == NULL)
		return;
	fetch_cancel(f);
	/* curl_multi_cleanup sends CURL_POLL_REMOVE for the sockets it still has */
	curl_multi_cleanup(f->multi);
	f->multi = NULL;
	while (f->socks != NULL)
		fetch_sock_close(f->socks);
	/* the slist holds "Authorization: Bearer <key>" */
	for (struct curl_slist *h = f->headers; h != NULL; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(f->headers);
	if (f->token != NULL)
		wipe_free(f->token, strlen(f->token));
	uv_timer_stop(&f->timer);
	uv_close((uv_handle_t *)&f->timer, on_uv_timer_closed);
}
