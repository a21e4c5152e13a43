/* httpd: a small HTTP/1.x responder on the libuv loop: GET and HEAD, one response per connection. */
#ifndef VOZAGENT_HTTPD_H
#define VOZAGENT_HTTPD_H

#include <stddef.h>

#include <uv.h>

#include "buf.h"

#define HTTPD_MAX_REQUEST 8192      /* request line and headers; larger: 431 */
#define HTTPD_TIMEOUT_MS 5000       /* a connection's whole life */
#define HTTPD_MAX_CONNECTIONS 16    /* more are closed as they come */
#define HTTPD_MAX_BODY (1u << 20)

/*
 * Answers a GET of path (the query cut off): the HTTP status (404 for a path
 * it does not serve), the body appended to body, and its Content-Type.
 */
typedef int (*httpd_respond_cb)(void *arg, const char *path, struct buf *body,
    const char **content_type);

enum httpd_parsed {
	HTTPD_NEED_MORE,     /* no blank line yet */
	HTTPD_REQUEST,       /* method and path filled in */
	HTTPD_BAD,           /* 400 */
	HTTPD_TOO_LARGE,     /* 431: no end of the headers within HTTPD_MAX_REQUEST bytes */
};

/*
 * Reads the request line of buf[0..len) once the headers are complete:
 * method (at most 15 characters) and path (the target up to '?', at most
 * pathlen - 1 bytes) are NUL-terminated. No I/O: the fuzz target calls it.
 */
enum httpd_parsed httpd_parse(const char *buf, size_t len, char *method, size_t methodlen,
    char *path, size_t pathlen);

struct httpd;

/*
 * Listens on host:port (numeric). NULL with err[] naming the address and the
 * reason (for example the address is in use); a handle set up so far is
 * closing then, so the caller runs the loop once more.
 */
struct httpd *httpd_new(uv_loop_t *loop, const char *host, int port, httpd_respond_cb respond,
    void *arg, char *err, size_t errlen);
/* Closes the listener and every connection; the caller runs the loop once more to finish. */
void httpd_free(struct httpd *h);

#endif
