/* test_httpd: the request parser (request line, size cap, what is refused). */
#include "httpd.h"
#include "test.h"

static enum httpd_parsed
parse(const char *req, char *method, char *path)
{
	return httpd_parse(req, strlen(req), method, 16, path, 64);
}

static void
test_requests(void)
{
	char m[16], p[64];

	ASSERT_EQ_INT(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", m, p), HTTPD_REQUEST);
	ASSERT_EQ_STR(m, "GET");
	ASSERT_EQ_STR(p, "/metrics");
	/* the query is cut off; bare newlines are accepted */
	ASSERT_EQ_INT(parse("HEAD /healthz?x=1 HTTP/1.0\n\n", m, p), HTTPD_REQUEST);
	ASSERT_EQ_STR(m, "HEAD");
	ASSERT_EQ_STR(p, "/healthz");
	ASSERT_EQ_INT(parse("DELETE / HTTP/1.1\r\n\r\n", m, p), HTTPD_REQUEST);
	ASSERT_EQ_STR(m, "DELETE");
	ASSERT_EQ_STR(p, "/");
}

static void
test_incomplete(void)
{
	char m[16], p[64];

	ASSERT_EQ_INT(parse("", m, p), HTTPD_NEED_MORE);
	ASSERT_EQ_INT(parse("GET /metrics HTTP/1.1\r\n", m, p), HTTPD_NEED_MORE);
	ASSERT_EQ_INT(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r", m, p), HTTPD_NEED_MORE);
}

static void
test_bad(void)
{
	char m[16], p[64];
	char longpath[200];

	ASSERT_EQ_INT(parse("get /metrics HTTP/1.1\r\n\r\n", m, p), HTTPD_BAD);
	ASSERT_EQ_INT(parse("GET metrics HTTP/1.1\r\n\r\n", m, p), HTTPD_BAD);
	ASSERT_EQ_INT(parse("GET /metrics\r\n\r\n", m, p), HTTPD_BAD);
	ASSERT_EQ_INT(parse("GET /metrics HTTP/2.0\r\n\r\n", m, p), HTTPD_BAD);
	ASSERT_EQ_INT(parse("GET  /metrics HTTP/1.1\r\n\r\n", m, p), HTTPD_BAD);
	ASSERT_EQ_INT(parse("GET /a\x01 HTTP/1.1\r\n\r\n", m, p), HTTPD_BAD);
	ASSERT_EQ_INT(parse("VERYLONGMETHODNAME / HTTP/1.1\r\n\r\n", m, p), HTTPD_BAD);
	ASSERT_EQ_INT(parse("\r\n\r\n", m, p), HTTPD_BAD);
	/* a path longer than the caller's buffer */
	memset(longpath, 'a', sizeof longpath);
	longpath[0] = '/';
	snprintf(longpath + 100, sizeof longpath - 100, " HTTP/1.1\r\n\r\n");
	ASSERT_EQ_INT(parse(longpath, m, p), HTTPD_BAD);
}

/* No end of the headers within the cap: too large, not "wait for more". */
static void
test_too_large(void)
{
	char m[16], p[64];
	static char big[HTTPD_MAX_REQUEST];

	memset(big, 'x', sizeof big);
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	ASSERT_EQ_INT(httpd_parse(big, sizeof big, m, sizeof m, p, sizeof p), HTTPD_TOO_LARGE);
	ASSERT_EQ_INT(httpd_parse(big, sizeof big - 1, m, sizeof m, p, sizeof p),
	    HTTPD_NEED_MORE);
	/* ending exactly at the cap is still a request */
	memcpy(big + sizeof big - 4, "\r\n\r\n", 4);
	ASSERT_EQ_INT(httpd_parse(big, sizeof big, m, sizeof m, p, sizeof p), HTTPD_REQUEST);
}

static const struct test_case tests[] = {
	TEST(test_requests),
	TEST(test_incomplete),
	TEST(test_bad),
	TEST(test_too_large),
};

int
main(int argc, char **argv)
{
	return test_main(tests, sizeof tests / sizeof tests[0], NULL, argv + 2,
	    argc > 2 ? argc - 2 : 0);
}
