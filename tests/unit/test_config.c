/* test_config: config_parse_duration, and config_load on real files and environments. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include "config.h"
#include "test.h"

extern char **environ;

static char tmpdir[] = "/tmp/vozagent-test-config-XXXXXX";
static char *tmpfiles[64];
static int ntmpfiles;

static struct config cfg;
static char err[8192];
static char conf_path[PATH_MAX];  /* the config file of the running test */

/* Writes name (in the temp dir) with exactly len bytes of content; returns its path. */
static const char *
tmp_write(const char *name, const char *content, size_t len)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(content, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
	for (int i = 0; i < ntmpfiles; i++)
		if (strcmp(tmpfiles[i], path) == 0)
			return tmpfiles[i];
	if (ntmpfiles == (int)(sizeof tmpfiles / sizeof tmpfiles[0])) {
		fprintf(stderr, "too many temp files\n");
		exit(2);
	}
	tmpfiles[ntmpfiles] = strdup(path);
	return tmpfiles[ntmpfiles++];
}

static const char *
tmp_file(const char *name, const char *content)
{
	return tmp_write(name, content, strlen(content));
}

/* Loads content as the config file "c.conf"; conf_path names it. */
static int
load(const char *content)
{
	snprintf(conf_path, sizeof conf_path, "%s", tmp_file("c.conf", content));
	return config_load(&cfg, conf_path, 0, err, sizeof err);
}

/* Does err hold a line that starts with "<conf_path>:<line>: " and contains sub? */
static int
err_line(int line, const char *sub)
{
	char prefix[PATH_MAX + 32];
	const char *s = err;
	size_t plen;

	if (line > 0)
		snprintf(prefix, sizeof prefix, "%s:%d: ", conf_path, line);
	else
		snprintf(prefix, sizeof prefix, "%s", "");
	plen = strlen(prefix);
	while (*s != '\0') {
		const char *nl = strchr(s, '\n');
		size_t n = nl != NULL ? (size_t)(nl - s) : strlen(s);
		char buf[2048];
		snprintf(buf, sizeof buf, "%.*s", (int)n, s);
		if (strncmp(buf, prefix, plen) == 0 && strstr(buf + plen, sub) != NULL)
			return 1;
		s += n;
		if (*s == '\n')
			s++;
	}
	return 0;
}

#define ASSERT_ERR_LINE(line, sub) do {                                                  \
		if (!err_line((line), (sub))) {                                          \
			test_report(__FILE__, __LINE__, "no error line %s:%d: ...%s...",  \
			    conf_path, (line), (sub));                                   \
			printf("      errors were:\n%s\n", err);                          \
			return;                                                          \
		}                                                                        \
	} while (0)

static int
err_lines(void)
{
	int n = err[0] != '\0';
	for (const char *p = err; *p != '\0'; p++)
		n += *p == '\n';
	return n;
}

/* No VOZAGENT_* variable nor CREDENTIALS_DIRECTORY may leak into a test. */
static void
env_clean(void)
{
	char *names[256];
	int n = 0;

	for (char **e = environ; *e != NULL && n < 256; e++) {
		const char *eq = strchr(*e, '=');
		if (eq == NULL)
			continue;
		if (strncmp(*e, "VOZAGENT_", 9) == 0 ||
		    strncmp(*e, "CREDENTIALS_DIRECTORY=", 22) == 0)
			names[n++] = strndup(*e, (size_t)(eq - *e));
	}
	for (int i = 0; i < n; i++) {
		unsetenv(names[i]);
		free(names[i]);
	}
}

static void
setup(void)
{
	env_clean();
	config_free(&cfg);
	memset(&cfg, 0, sizeof cfg);
	memset(err, 0, sizeof err);
	conf_path[0] = '\0';
}

/* ---- config_parse_duration ---- */

static void
test_duration_valid(void)
{
	static const struct { const char *s; uint64_t ms; } ok[] = {
		{ "0", 0 }, { "90", 90000 }, { "90s", 90000 }, { "1500ms", 1500 },
		{ "5m", 300000 }, { "2h", 7200000 }, { "1d", 86400000 }, { "0ms", 0 },
		{ "007s", 7000 }, { "876000h", 3153600000000ULL },
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		uint64_t ms = 12345;
		if (config_parse_duration(ok[i].s, &ms) != 0)
			TEST_FAIL_("'%s' was refused", ok[i].s);
		if (ms != ok[i].ms)
			TEST_FAIL_("'%s': got %ju ms, expected %ju", ok[i].s, (uintmax_t)ms,
			    (uintmax_t)ok[i].ms);
	}
}

static void
test_duration_invalid(void)
{
	static const char *bad[] = {
		"", "s", "ms", "-5", "+5", " 5", "5 ", "5x", "5S", "1.5h", "5sec", "5 s", "0x10",
		"5mm", "5hs", "h5", "1e3",
		"18446744073709551616",          /* does not fit strtoull */
		"99999999999999999999999999d",
		"18446744073709551615",          /* fits, but not once multiplied by 1000 */
		"999999999999d",                 /* the multiplication would overflow */
		"10000000h", "36601d",           /* over a century */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t ms = 0;
		if (config_parse_duration(bad[i], &ms) != -1)
			TEST_FAIL_("'%s' was accepted as %ju ms", bad[i], (uintmax_t)ms);
	}
}

/* ---- config_parse_fraction ---- */

static void
test_fraction(void)
{
	static const struct { const char *s; double v; } ok[] = {
		{ "10%", 0.1 }, { "0.1", 0.1 }, { "0", 0 }, { "100%", 1 }, { "1", 1 },
		{ "2.5%", 0.025 }, { "0%", 0 },
	};
	static const char *const bad[] = { "", " 10%", "10 %", "%", "110%", "1.5", "-1%",
		"ten", "10%%", "nan", "0.1x" };
	double v;

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		if (config_parse_fraction(ok[i].s, &v) != 0)
			TEST_FAIL_("'%s' was refused", ok[i].s);
		if (v < ok[i].v - 1e-12 || v > ok[i].v + 1e-12)
			TEST_FAIL_("'%s' is %g, expected %g", ok[i].s, v, ok[i].v);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (config_parse_fraction(bad[i], &v) != -1)
			TEST_FAIL_("'%s' was accepted as %g", bad[i], v);
}

/* ---- config_load: values ---- */

static void
check_defaults(void)
{
	ASSERT_EQ_STR(cfg.api_url, "https://api.vozagent.ai/v1");
	ASSERT_EQ_STR(cfg.database_url, "");
	ASSERT_EQ_STR(cfg.source, "default");
	ASSERT_EQ_UINT(cfg.poll_interval_ms, 60000);
	ASSERT_EQ_UINT(cfg.lookback_ms, 2 * 3600 * 1000);
	ASSERT_EQ_UINT(cfg.http_timeout_ms, 30000);
	ASSERT_EQ_INT(cfg.page_size, 100);
	ASSERT_EQ_INT(cfg.order, ORDER_AUTO);
	ASSERT_TRUE(cfg.filter_status == NULL);
	ASSERT_TRUE(cfg.filter_assistant_id == NULL);
	ASSERT_TRUE(cfg.filter_contact_id == NULL);
	ASSERT_TRUE(cfg.filter_call_type == NULL);
	ASSERT_EQ_INT(cfg.log_level, LOG_LEVEL_INFO);
	ASSERT_TRUE(cfg.max_delete_fraction > 0.0999 && cfg.max_delete_fraction < 0.1001);
	ASSERT_TRUE(cfg.api_token == NULL);
}

static void
test_load_empty_file_gives_defaults(void)
{
	char e2[512];

	ASSERT_EQ_INT(load(""), 0);
	ASSERT_EQ_STR(err, "");
	ASSERT_EQ_STR(cfg.path, conf_path);
	check_defaults();
	if (test_cur_failed)
		return;
	/* no token is fine unless the command needs one: then it is one more error */
	config_free(&cfg);
	ASSERT_EQ_INT(config_load(&cfg, conf_path, 1, e2, sizeof e2), -1);
	ASSERT_CONTAINS(e2, conf_path);
	ASSERT_CONTAINS(e2, "no API key");
}

static void
test_load_comments_and_blanks_only(void)
{
	ASSERT_EQ_INT(load("# a comment\n\n   \t\n   # indented comment = with equals\n"), 0);
	ASSERT_EQ_STR(err, "");
	check_defaults();
}

static void
test_load_missing_file(void)
{
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/does-not-exist.conf", tmpdir);
	ASSERT_EQ_INT(config_load(&cfg, path, 0, err, sizeof err), -1);
	ASSERT_CONTAINS(err, path);
	ASSERT_CONTAINS(err, "cannot read config file");
}

static void
test_load_every_key(void)
{
	char e2[64];

	ASSERT_EQ_INT(load(
	    "api_url = http://localhost:8080/v1//\n"
	    "api_token = tok-123\n"
	    "database_url = host=/tmp dbname=calls\n"
	    "source = tenant-a\n"
	    "poll_interval = 90s\n"
	    "page_size = 25\n"
	    "lookback = 1d\n"
	    "http_timeout = 1500ms\n"
	    "order = newest_first\n"
	    "status = completed\n"
	    "assistant_id = a1b2\n"
	    "contact_id = c1d2\n"
	    "call_type = outbound\n"
	    "log_level = debug\n"), 0);
	ASSERT_EQ_STR(err, "");
	ASSERT_EQ_STR(cfg.api_url, "http://localhost:8080/v1");
	ASSERT_EQ_STR(cfg.api_token, "tok-123");
	ASSERT_CONTAINS(cfg.api_token_origin, conf_path);
	ASSERT_CONTAINS(cfg.api_token_origin, ":2");
	ASSERT_EQ_STR(cfg.database_url, "host=/tmp dbname=calls");
	ASSERT_EQ_STR(cfg.source, "tenant-a");
	ASSERT_EQ_UINT(cfg.poll_interval_ms, 90000);
	ASSERT_EQ_INT(cfg.page_size, 25);
	ASSERT_EQ_UINT(cfg.lookback_ms, 86400000);
	ASSERT_EQ_UINT(cfg.http_timeout_ms, 1500);
	ASSERT_EQ_INT(cfg.order, ORDER_NEWEST_FIRST);
	ASSERT_EQ_STR(cfg.filter_status, "completed");
	ASSERT_EQ_STR(cfg.filter_assistant_id, "a1b2");
	ASSERT_EQ_STR(cfg.filter_contact_id, "c1d2");
	ASSERT_EQ_STR(cfg.filter_call_type, "outbound");
	ASSERT_EQ_INT(cfg.log_level, LOG_LEVEL_DEBUG);
	ASSERT_TRUE(cfg.api_token != NULL);
	(void)e2;
}

static void
test_load_other_enum_values(void)
{
	ASSERT_EQ_INT(load("order = oldest_first\nlog_level = warn\ncall_type = inbound\n"
	    "api_url = https://example.com\npage_size = 1\n"), 0);
	ASSERT_EQ_INT(cfg.order, ORDER_OLDEST_FIRST);
	ASSERT_EQ_INT(cfg.log_level, LOG_LEVEL_WARN);
	ASSERT_EQ_STR(cfg.filter_call_type, "inbound");
	ASSERT_EQ_STR(cfg.api_url, "https://example.com");
	ASSERT_EQ_INT(cfg.page_size, 1);
	config_free(&cfg);
	ASSERT_EQ_INT(load("order = auto\nlog_level = error\npage_size = 100\n"), 0);
	ASSERT_EQ_INT(cfg.order, ORDER_AUTO);
	ASSERT_EQ_INT(cfg.log_level, LOG_LEVEL_ERROR);
	ASSERT_EQ_INT(cfg.page_size, 100);
}

static void
test_load_quoted_values(void)
{
	ASSERT_EQ_INT(load(
	    "source = \"a # not a comment\"\n"
	    "status = \"say \\\"hi\\\" \\\\ back\"   # a real comment\n"
	    "contact_id = \"c:\\path\"\n"
	    "assistant_id = \"  spaced  \"\n"
	    "database_url=\"host='my host' dbname=x\"\n"
	    "call_type = \"\"\n"), 0);
	ASSERT_EQ_STR(err, "");
	ASSERT_EQ_STR(cfg.source, "a # not a comment");
	ASSERT_EQ_STR(cfg.filter_status, "say \"hi\" \\ back");
	/* only \" and \\ are escapes: any other backslash stays */
	ASSERT_EQ_STR(cfg.filter_contact_id, "c:\\path");
	ASSERT_EQ_STR(cfg.filter_assistant_id, "  spaced  ");
	ASSERT_EQ_STR(cfg.database_url, "host='my host' dbname=x");
	/* an empty filter is no filter */
	ASSERT_TRUE(cfg.filter_call_type == NULL);
}

static void
test_load_quoted_errors(void)
{
	ASSERT_EQ_INT(load(
	    "source = \"unterminated\n"
	    "status = \"done\" trailing\n"
	    "contact_id = \"ends with escaped quote\\\"\n"), -1);
	ASSERT_ERR_LINE(1, "unterminated quoted value for 'source'");
	ASSERT_ERR_LINE(2, "unexpected text after the quoted value of 'status'");
	ASSERT_ERR_LINE(3, "unterminated quoted value for 'contact_id'");
	ASSERT_EQ_INT(err_lines(), 3);
}

static void
test_load_inline_comments(void)
{
	ASSERT_EQ_INT(load(
	    "source = abc # the tenant\n"
	    "status = a#b\n"
	    "assistant_id = x\t# after a tab\n"
	    "contact_id = trailing   \n"
	    "   # an indented comment line\n"
	    "page_size = 42#no space, so not a comment\n"), -1);
	ASSERT_EQ_STR(cfg.source, NULL); /* the last line is an error, so cfg was freed */
	ASSERT_ERR_LINE(6, "page_size");
	ASSERT_ERR_LINE(6, "'42#no space, so not a comment'");
	ASSERT_EQ_INT(err_lines(), 1);

	ASSERT_EQ_INT(load(
	    "source = abc # the tenant\n"
	    "status = a#b\n"
	    "assistant_id = x\t# after a tab\n"
	    "contact_id = trailing   \n"
	    "   # an indented comment line\n"
	    "page_size = 42 # the largest\n"), 0);
	ASSERT_EQ_STR(cfg.source, "abc");
	ASSERT_EQ_STR(cfg.filter_status, "a#b");
	ASSERT_EQ_STR(cfg.filter_assistant_id, "x");
	ASSERT_EQ_STR(cfg.filter_contact_id, "trailing");
	ASSERT_EQ_INT(cfg.page_size, 42);
}

/*
 * "a comment starts at a # preceded by white space": with nothing but a
 * comment after the '=', the value is empty.
 */
static void
test_load_comment_right_after_equals(void)
{
	ASSERT_EQ_INT(load("status = # no filter\n"), 0);
	ASSERT_TRUE(cfg.filter_status == NULL);
}

static void
test_load_crlf(void)
{
	ASSERT_EQ_INT(load(
	    "source = crlf\r\n"
	    "# comment\r\n"
	    "\r\n"
	    "status = \"quoted\"\r\n"
	    "page_size = 7\r\n"
	    "lookback = 5m\r\n"), 0);
	ASSERT_EQ_STR(cfg.source, "crlf");
	ASSERT_EQ_STR(cfg.filter_status, "quoted");
	ASSERT_EQ_INT(cfg.page_size, 7);
	ASSERT_EQ_UINT(cfg.lookback_ms, 300000);
	config_free(&cfg);

	/* line numbers still count CRLF lines */
	ASSERT_EQ_INT(load("source = a\r\n\r\nsource = b\r\n"), -1);
	ASSERT_ERR_LINE(3, "key 'source' is set twice (first at line 1)");
}

static void
test_load_no_trailing_newline(void)
{
	ASSERT_EQ_INT(load("source = last"), 0);
	ASSERT_EQ_STR(cfg.source, "last");
}

/* ---- config_load: errors ---- */

static void
test_load_reports_all_errors(void)
{
	ASSERT_EQ_INT(load(
	    "# every line below but this one is wrong\n"  /* 1 */
	    "bogus_key = 1\n"                              /* 2 */
	    "page_size = 0\n"                              /* 3 */
	    "order = sideways\n"                           /* 4 */
	    "log_level = loud\n"                           /* 5 */
	    "api_url = ftp://example.com\n"                /* 6 */
	    "call_type = both\n"                           /* 7 */
	    "poll_interval = 0\n"                          /* 8 */
	    "database_url = port=abc = =\n"                /* 9 */
	    "page_size = 5\n"                              /* 10 */
	    "lookback = 1.5h\n"                            /* 11 */
	    "no equals sign here\n"                        /* 12 */
	    "http_timeout = 500ms\n"                       /* 13 */
	    "source = \"\"\n"),                            /* 14 */
	    -1);
	ASSERT_ERR_LINE(2, "unknown key 'bogus_key'");
	ASSERT_ERR_LINE(3, "page_size must be a whole number from 1 to 100, got '0'");
	ASSERT_ERR_LINE(4, "order must be auto, oldest_first or newest_first, got 'sideways'");
	ASSERT_ERR_LINE(5, "log_level must be debug, info, warn or error, got 'loud'");
	ASSERT_ERR_LINE(6, "api_url must start with http:// or https://, got 'ftp://example.com'");
	ASSERT_ERR_LINE(7, "call_type must be inbound or outbound, got 'both'");
	ASSERT_ERR_LINE(8, "poll_interval must be at least 1s");
	ASSERT_ERR_LINE(9, "database_url is not a valid libpq connection string");
	ASSERT_ERR_LINE(10, "key 'page_size' is set twice (first at line 3)");
	ASSERT_ERR_LINE(11, "lookback: '1.5h' is not a duration");
	ASSERT_ERR_LINE(12, "expected 'key = value'");
	ASSERT_ERR_LINE(13, "http_timeout must be at least 1s");
	ASSERT_ERR_LINE(14, "source must not be empty");
	ASSERT_EQ_INT(err_lines(), 13);
	/* a failed load leaves nothing behind */
	ASSERT_TRUE(cfg.path == NULL && cfg.api_url == NULL && cfg.source == NULL);
}

/* One mistake, one message: a value that is not a duration is not also "under 1s". */
static void
test_load_bad_duration_reported_once(void)
{
	ASSERT_EQ_INT(load("poll_interval = 5x\nhttp_timeout = soon\n"), -1);
	ASSERT_ERR_LINE(1, "poll_interval: '5x' is not a duration");
	ASSERT_ERR_LINE(2, "http_timeout: 'soon' is not a duration");
	ASSERT_EQ_INT(err_lines(), 2);
}

static void
test_load_page_size(void)
{
	static const char *bad[] = { "0", "101", "abc", "-1", "5x", "1e2", "99999999999999999999" };
	char text[128];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(text, sizeof text, "\npage_size = %s\n", bad[i]);
		if (load(text) != -1)
			TEST_FAIL_("page_size = %s was accepted as %d", bad[i], cfg.page_size);
		snprintf(text, sizeof text, "page_size must be a whole number from 1 to 100, got '%s'",
		    bad[i]);
		ASSERT_ERR_LINE(2, text);
		ASSERT_EQ_INT(err_lines(), 1);
	}
	ASSERT_EQ_INT(load("page_size = 100\n"), 0);
	ASSERT_EQ_INT(cfg.page_size, 100);
}

static void
test_load_poll_interval_minimum(void)
{
	ASSERT_EQ_INT(load("poll_interval = 999ms\n"), -1);
	ASSERT_ERR_LINE(1, "poll_interval must be at least 1s");
	ASSERT_EQ_INT(load("poll_interval = 1\n"), 0);
	ASSERT_EQ_UINT(cfg.poll_interval_ms, 1000);
}

static void
test_load_history_retention(void)
{
	ASSERT_EQ_INT(load(""), 0);
	ASSERT_EQ_UINT(cfg.history_retention_ms, 90ull * 86400 * 1000);
	config_free(&cfg);
	ASSERT_EQ_INT(load("history_retention = forever\n"), 0);
	ASSERT_EQ_UINT(cfg.history_retention_ms, 0);
	config_free(&cfg);
	ASSERT_EQ_INT(load("history_retention = 0\n"), 0);
	ASSERT_EQ_UINT(cfg.history_retention_ms, 0);
	config_free(&cfg);
	ASSERT_EQ_INT(load("history_retention = 30d\n"), 0);
	ASSERT_EQ_UINT(cfg.history_retention_ms, 30ull * 86400 * 1000);
	config_free(&cfg);
	/* a plain number is seconds: 90 is a typo for 90d, not 90 seconds of history */
	ASSERT_EQ_INT(load("history_retention = 90\n"), -1);
	ASSERT_ERR_LINE(1, "history_retention must be at least 1h");
	ASSERT_EQ_INT(load("history_retention = never\n"), -1);
	ASSERT_ERR_LINE(1, "history_retention: 'never' is not a duration");
}

/* report_time_zone, history and change_retention: the reporting settings of a source. */
static void
test_load_report_settings(void)
{
	static const char *const bad[] = {
		"report_time_zone = \"\"\n", "report_time_zone = /etc/passwd\n",
		"report_time_zone = Europe/../../etc\n", "report_time_zone = Europe/Mad rid\n",
		"report_time_zone = 'UTC;x'\n", "report_time_zone = Europe/Madrid\\\n",
		("report_time_zone = "
		    "Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"),
	};

	ASSERT_EQ_INT(load(""), 0);
	ASSERT_EQ_STR(cfg.report_time_zone, "UTC");
	ASSERT_EQ_INT(cfg.history, 1);
	ASSERT_EQ_UINT(cfg.change_retention_ms, 0);
	config_free(&cfg);
	ASSERT_EQ_INT(load("report_time_zone = America/Argentina/Buenos_Aires\n"
	    "history = off\nchange_retention = 400d\n"), 0);
	ASSERT_EQ_STR(cfg.report_time_zone, "America/Argentina/Buenos_Aires");
	ASSERT_EQ_INT(cfg.history, 0);
	ASSERT_EQ_UINT(cfg.change_retention_ms, 400ull * 86400 * 1000);
	config_free(&cfg);
	ASSERT_EQ_INT(load("report_time_zone = Etc/GMT+3\nhistory = yes\n"), 0);
	ASSERT_EQ_STR(cfg.report_time_zone, "Etc/GMT+3");
	ASSERT_EQ_INT(cfg.history, 1);
	config_free(&cfg);
	/* 64 bytes is the longest name taken */
	ASSERT_EQ_INT(load("report_time_zone = "
	    "Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"), 0);
	config_free(&cfg);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ASSERT_EQ_INT(load(bad[i]), -1);
		ASSERT_ERR_LINE(1, "report_time_zone");
		ASSERT_EQ_INT(err_lines(), 1);
	}
	ASSERT_EQ_INT(load("history = maybe\n"), -1);
	ASSERT_ERR_LINE(1, "history must be on or off (or yes/no, true/false, 1/0), got 'maybe'");
	/* like history_retention: a plain number is seconds, surely a typo */
	ASSERT_EQ_INT(load("change_retention = 30\n"), -1);
	ASSERT_ERR_LINE(1, "change_retention must be at least 1h");
	ASSERT_EQ_INT(load("change_retention = never\n"), -1);
	ASSERT_ERR_LINE(1, "change_retention: 'never' is not a duration");
	ASSERT_EQ_INT(load("change_retention = 0\n"), 0);
	ASSERT_EQ_UINT(cfg.change_retention_ms, 0);
	config_free(&cfg);
	/* from the environment, the message names the variable */
	setenv("VOZAGENT_REPORT_TIME_ZONE", "../UTC", 1);
	ASSERT_EQ_INT(load(""), -1);
	unsetenv("VOZAGENT_REPORT_TIME_ZONE");
	ASSERT_ERR_LINE(0, "VOZAGENT_REPORT_TIME_ZONE: report_time_zone '../UTC'");
}

static void
test_load_database_url(void)
{
	static const char *bad[] = {
		"port=abc = =", "host=x junk", "host='unterminated", "nosuchoption=1",
		"postgresql://h/db?bogus=1", "\"dbname=a b\"",
	};
	static const char *good[] = { "host=", "host=/tmp port=5432 dbname=x", "postgresql://u@h/db" };
	char text[256];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(text, sizeof text, "database_url = %s\n", bad[i]);
		if (load(text) != -1)
			TEST_FAIL_("database_url = %s was accepted", bad[i]);
		ASSERT_ERR_LINE(1, "database_url is not a valid libpq connection string: ");
		/* libpq's reason follows, on the same line */
		ASSERT_FALSE(err[strlen(err) - 1] == ' ');
		ASSERT_EQ_INT(err_lines(), 1);
	}
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		snprintf(text, sizeof text, "database_url = %s\n", good[i]);
		if (load(text) != 0)
			TEST_FAIL_("database_url = %s was refused: %s", good[i], err);
		ASSERT_EQ_STR(cfg.database_url, good[i]);
		config_free(&cfg);
	}
}

static void
test_load_long_line(void)
{
	char text[6000];
	size_t n;

	n = (size_t)snprintf(text, sizeof text, "source = a\n# ");
	memset(text + n, 'x', 5000);
	n += 5000;
	snprintf(text + n, sizeof text - n, "\npage_size = 7\nsource = b\n");
	ASSERT_EQ_INT(load(text), -1);
	ASSERT_ERR_LINE(2, "line longer than");
	/* the rest of the long line is skipped, and counting goes on */
	ASSERT_ERR_LINE(4, "key 'source' is set twice (first at line 1)");
	ASSERT_EQ_INT(err_lines(), 2);
}

static void
test_load_small_error_buffer(void)
{
	char small[40];

	memset(small, 'Z', sizeof small);
	snprintf(conf_path, sizeof conf_path, "%s",
	    tmp_file("c.conf", "bogus = 1\nother = 2\npage_size = 0\n"));
	ASSERT_EQ_INT(config_load(&cfg, conf_path, 0, small, sizeof small), -1);
	/* cut, but terminated inside the buffer */
	ASSERT_TRUE(memchr(small, '\0', sizeof small) != NULL);
	ASSERT_TRUE(strlen(small) > 0);
}

/* ---- the environment ---- */

static void
test_env_overrides_file(void)
{
	setenv("VOZAGENT_PAGE_SIZE", "20", 1);
	setenv("VOZAGENT_SOURCE", "from-env", 1);
	setenv("VOZAGENT_POLL_INTERVAL", "2m", 1);
	setenv("VOZAGENT_CALL_TYPE", "inbound", 1);
	ASSERT_EQ_INT(load("page_size = 10\nsource = from-file\n"), 0);
	ASSERT_EQ_INT(cfg.page_size, 20);
	ASSERT_EQ_STR(cfg.source, "from-env");
	ASSERT_EQ_UINT(cfg.poll_interval_ms, 120000);
	ASSERT_EQ_STR(cfg.filter_call_type, "inbound");
	config_free(&cfg);

	/* the environment replaces the file's value, even a bad one */
	ASSERT_EQ_INT(load("page_size = abc\n"), 0);
	ASSERT_EQ_INT(cfg.page_size, 20);
	config_free(&cfg);

	unsetenv("VOZAGENT_PAGE_SIZE");
	unsetenv("VOZAGENT_SOURCE");
	unsetenv("VOZAGENT_POLL_INTERVAL");
	unsetenv("VOZAGENT_CALL_TYPE");
	ASSERT_EQ_INT(load("page_size = 10\nsource = from-file\n"), 0);
	ASSERT_EQ_INT(cfg.page_size, 10);
	ASSERT_EQ_STR(cfg.source, "from-file");
	ASSERT_EQ_UINT(cfg.poll_interval_ms, 60000);
	ASSERT_TRUE(cfg.filter_call_type == NULL);
}

static void
test_env_errors_name_the_variable(void)
{
	setenv("VOZAGENT_PAGE_SIZE", "0", 1);
	setenv("VOZAGENT_LOOKBACK", "soon", 1);
	setenv("VOZAGENT_DATABASE_URL", "host=x junk", 1);
	setenv("VOZAGENT_API_URL", "localhost:8080", 1);
	ASSERT_EQ_INT(load("page_size = 10\n"), -1);
	conf_path[0] = '\0';
	ASSERT_ERR_LINE(0, "VOZAGENT_PAGE_SIZE: page_size must be a whole number from 1 to 100, got '0'");
	ASSERT_ERR_LINE(0, "VOZAGENT_LOOKBACK: lookback: 'soon' is not a duration");
	ASSERT_ERR_LINE(0, "VOZAGENT_DATABASE_URL: database_url is not a valid libpq connection string");
	ASSERT_ERR_LINE(0, "VOZAGENT_API_URL: api_url must start with http:// or https://");
	ASSERT_EQ_INT(err_lines(), 4);
}

static void
test_env_is_cleaned_between_tests(void)
{
	/* setup() ran env_clean(): nothing set by an earlier test survives */
	ASSERT_TRUE(getenv("VOZAGENT_PAGE_SIZE") == NULL);
	ASSERT_TRUE(getenv("VOZAGENT_API_TOKEN") == NULL);
	ASSERT_TRUE(getenv("CREDENTIALS_DIRECTORY") == NULL);
	setenv("VOZAGENT_PAGE_SIZE", "3", 1);
	setenv("CREDENTIALS_DIRECTORY", "/nonexistent", 1);
	env_clean();
	ASSERT_TRUE(getenv("VOZAGENT_PAGE_SIZE") == NULL);
	ASSERT_TRUE(getenv("CREDENTIALS_DIRECTORY") == NULL);
}

/* ---- the API token ---- */

static void
test_token_from_file_key(void)
{
	char text[PATH_MAX + 64];
	const char *tokpath = tmp_file("token", "tok-from-file\n");

	snprintf(text, sizeof text, "source = s\napi_token_file = %s\n", tokpath);
	ASSERT_EQ_INT(load(text), 0);
	ASSERT_EQ_STR(cfg.api_token, "tok-from-file");
	ASSERT_CONTAINS(cfg.api_token_origin, tokpath);
	config_free(&cfg);

	/* CRLF and trailing blanks go too */
	tmp_file("token", "tok-crlf\r\n  \n");
	ASSERT_EQ_INT(load(text), 0);
	ASSERT_EQ_STR(cfg.api_token, "tok-crlf");
	config_free(&cfg);

	/* no newline at all */
	tmp_file("token", "tok-bare");
	ASSERT_EQ_INT(load(text), 0);
	ASSERT_EQ_STR(cfg.api_token, "tok-bare");
}

static void
test_token_file_unreadable(void)
{
	char text[PATH_MAX + 64], missing[PATH_MAX];

	snprintf(missing, sizeof missing, "%s/no-such-token", tmpdir);
	snprintf(text, sizeof text, "\napi_token_file = %s\n", missing);
	ASSERT_EQ_INT(load(text), -1);
	ASSERT_ERR_LINE(2, missing);
	ASSERT_ERR_LINE(2, "api_token_file");
	ASSERT_EQ_INT(err_lines(), 1);
}

static void
test_token_file_too_large(void)
{
	static char big[5000];
	char text[PATH_MAX + 64];
	const char *tokpath;

	memset(big, 'k', sizeof big);
	tokpath = tmp_write("bigtoken", big, sizeof big);
	snprintf(text, sizeof text, "api_token_file = %s\n", tokpath);
	ASSERT_EQ_INT(load(text), -1);
	ASSERT_ERR_LINE(1, tokpath);
	ASSERT_NOT_CONTAINS(err, "kkkk");
}

static void
test_token_empty(void)
{
	char text[PATH_MAX + 64];
	const char *tokpath;

	ASSERT_EQ_INT(load("api_token = \"\"\n"), -1);
	ASSERT_CONTAINS(err, "the API token is empty");
	ASSERT_CONTAINS(err, conf_path);
	ASSERT_EQ_INT(load("api_token =\n"), -1);
	ASSERT_CONTAINS(err, "the API token is empty");

	tokpath = tmp_file("token", "\n");
	snprintf(text, sizeof text, "api_token_file = %s\n", tokpath);
	ASSERT_EQ_INT(load(text), -1);
	ASSERT_CONTAINS(err, "the API token is empty");
	ASSERT_CONTAINS(err, tokpath);

	setenv("VOZAGENT_API_TOKEN", "", 1);
	ASSERT_EQ_INT(load(""), -1);
	ASSERT_CONTAINS(err, "the API token is empty");
	ASSERT_CONTAINS(err, "VOZAGENT_API_TOKEN");
}

static void
test_token_with_space_or_newline(void)
{
	char text[PATH_MAX + 64];

	ASSERT_EQ_INT(load("api_token = \"sk-Secret1 withspace\"\n"), -1);
	ASSERT_CONTAINS(err, "white space or a control character");
	ASSERT_CONTAINS(err, conf_path);
	ASSERT_NOT_CONTAINS(err, "Secret1");
	ASSERT_NOT_CONTAINS(err, "withspace");

	snprintf(text, sizeof text, "api_token_file = %s\n",
	    tmp_file("token", "sk-Secret2\nsecondline\n"));
	ASSERT_EQ_INT(load(text), -1);
	ASSERT_CONTAINS(err, "white space or a control character");
	ASSERT_NOT_CONTAINS(err, "Secret2");
	ASSERT_NOT_CONTAINS(err, "secondline");

	setenv("VOZAGENT_API_TOKEN", "sk-Secret3\tx", 1);
	ASSERT_EQ_INT(load(""), -1);
	ASSERT_CONTAINS(err, "VOZAGENT_API_TOKEN");
	ASSERT_NOT_CONTAINS(err, "Secret3");
	setenv("VOZAGENT_API_TOKEN", "sk-Secret4\x7f", 1);
	ASSERT_EQ_INT(load(""), -1);
	ASSERT_NOT_CONTAINS(err, "Secret4");
}

static void
test_token_from_credentials_directory(void)
{
	char text[PATH_MAX + 64];

	tmp_file("api_token", "tok-credential\n");
	setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
	ASSERT_EQ_INT(load(""), 0);
	ASSERT_EQ_STR(cfg.api_token, "tok-credential");
	ASSERT_CONTAINS(cfg.api_token_origin, tmpdir);
	config_free(&cfg);

	/* a configured token beats the credential */
	ASSERT_EQ_INT(load("api_token = tok-config\n"), 0);
	ASSERT_EQ_STR(cfg.api_token, "tok-config");
	config_free(&cfg);
	snprintf(text, sizeof text, "api_token_file = %s\n", tmp_file("token", "tok-tokenfile\n"));
	ASSERT_EQ_INT(load(text), 0);
	ASSERT_EQ_STR(cfg.api_token, "tok-tokenfile");
	config_free(&cfg);

	/* an empty CREDENTIALS_DIRECTORY is not a directory */
	setenv("CREDENTIALS_DIRECTORY", "", 1);
	ASSERT_EQ_INT(load(""), 0);
	ASSERT_TRUE(cfg.api_token == NULL);
}

static void
test_token_env_wins(void)
{
	char text[PATH_MAX + 64], missing[PATH_MAX];

	setenv("VOZAGENT_API_TOKEN", "tok-env", 1);
	/* the file's api_token_file is not even read */
	snprintf(missing, sizeof missing, "%s/no-such-token", tmpdir);
	snprintf(text, sizeof text, "api_token_file = %s\n", missing);
	ASSERT_EQ_INT(load(text), 0);
	ASSERT_EQ_STR(cfg.api_token, "tok-env");
	ASSERT_CONTAINS(cfg.api_token_origin, "VOZAGENT_API_TOKEN");
	config_free(&cfg);

	/* read once, then gone from the environment (and /proc/PID/environ) */
	setenv("VOZAGENT_API_TOKEN", "tok-env", 1);
	ASSERT_EQ_INT(load("api_token = tok-config\n"), 0);
	ASSERT_TRUE(getenv("VOZAGENT_API_TOKEN") == NULL);
	ASSERT_EQ_STR(cfg.api_token, "tok-env");
	config_free(&cfg);
	unsetenv("VOZAGENT_API_TOKEN");

	/* both in the environment: api_token, as when both are in the file */
	setenv("VOZAGENT_API_TOKEN", "tok-env", 1);
	setenv("VOZAGENT_API_TOKEN_FILE", tmp_file("token", "tok-envfile\n"), 1);
	ASSERT_EQ_INT(load(""), 0);
	ASSERT_EQ_STR(cfg.api_token, "tok-env");
	config_free(&cfg);
	unsetenv("VOZAGENT_API_TOKEN");
	unsetenv("VOZAGENT_API_TOKEN_FILE");

	/* VOZAGENT_API_TOKEN_FILE beats the file's api_token */
	setenv("VOZAGENT_API_TOKEN_FILE", tmp_file("token", "tok-envfile\n"), 1);
	ASSERT_EQ_INT(load("api_token = tok-config\n"), 0);
	ASSERT_EQ_STR(cfg.api_token, "tok-envfile");
	ASSERT_CONTAINS(cfg.api_token_origin, "VOZAGENT_API_TOKEN_FILE");
}

static void
test_token_never_in_errors(void)
{
	char text[PATH_MAX + 256];

	ASSERT_EQ_INT(load(
	    "api_token = sk-LEAKCHECK-1\n"
	    "api_token = sk-LEAKCHECK-2\n"
	    "page_size = 0\n"
	    "api_token_file\n"
	    "api_tokenx = sk-LEAKCHECK-3\n"
	    "order = sk-\n"), -1);
	ASSERT_ERR_LINE(2, "key 'api_token' is set twice");
	ASSERT_ERR_LINE(5, "unknown key 'api_tokenx'");
	ASSERT_NOT_CONTAINS(err, "LEAKCHECK");

	ASSERT_EQ_INT(load("api_token = \"sk-LEAKCHECK-4\" junk\n"), -1);
	ASSERT_NOT_CONTAINS(err, "LEAKCHECK");
	ASSERT_EQ_INT(load("api_token = \"sk-LEAKCHECK-5\n"), -1);
	ASSERT_NOT_CONTAINS(err, "LEAKCHECK");

	setenv("VOZAGENT_API_TOKEN", "sk-LEAKCHECK-6 x", 1);
	snprintf(text, sizeof text, "api_token_file = %s\npage_size = 0\n",
	    tmp_file("token", "sk-LEAKCHECK-7 y\n"));
	ASSERT_EQ_INT(load(text), -1);
	ASSERT_NOT_CONTAINS(err, "LEAKCHECK");
	unsetenv("VOZAGENT_API_TOKEN");
	ASSERT_EQ_INT(load(text), -1);
	ASSERT_CONTAINS(err, "white space");
	ASSERT_NOT_CONTAINS(err, "LEAKCHECK");
}

/* ---- the key's safety: transport and file modes ---- */

static void
test_http_refused_for_remote_hosts(void)
{
	static const char *remote[] = {
		"http://api.vozagent.ai/v1", "http://10.0.0.5:8080/v1", "http://user:pw@example.com",
		"http://[2001:db8::1]/v1", "http://127.1/v1", "http://localhost.example.com/v1",
		"http://128.0.0.1/", "http://[::2]/",
	};
	char text[256];

	for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++) {
		snprintf(text, sizeof text, "source = s\napi_url = %s\n", remote[i]);
		ASSERT_EQ_INT(load(text), -1);
		ASSERT_ERR_LINE(2, "api_url uses http://");
		ASSERT_ERR_LINE(2, "allow_insecure_http");
		ASSERT_EQ_INT(err_lines(), 1);
	}
	/* from the environment, the variable is named */
	setenv("VOZAGENT_API_URL", "http://api.vozagent.ai/v1", 1);
	ASSERT_EQ_INT(load("source = s\n"), -1);
	ASSERT_CONTAINS(err, "VOZAGENT_API_URL: api_url uses http:// to 'api.vozagent.ai'");
}

static void
test_http_allowed_for_loopback(void)
{
	static const char *local[] = {
		"http://127.0.0.1:8080/v1", "http://127.255.3.4/v1", "http://localhost:1/v1",
		"http://LOCALHOST/v1", "http://[::1]:8080/v1", "http://u:p@127.0.0.1/v1",
		"http://[::ffff:127.0.0.1]/v1", "https://api.vozagent.ai/v1",
	};
	char text[256];

	for (size_t i = 0; i < sizeof local / sizeof local[0]; i++) {
		snprintf(text, sizeof text, "api_url = %s\n", local[i]);
		ASSERT_EQ_INT(load(text), 0);
		ASSERT_TRUE(cfg.warnings == NULL);
		config_free(&cfg);
	}
}

static void
test_http_allowed_when_insecure_is_set(void)
{
	ASSERT_EQ_INT(load("api_url = http://api.vozagent.ai/v1\nallow_insecure_http = yes\n"), 0);
	ASSERT_EQ_INT(cfg.allow_insecure_http, 1);
	ASSERT_CONTAINS(cfg.warnings, "api_url uses http:// to 'api.vozagent.ai'");
	ASSERT_CONTAINS(cfg.warnings, "unencrypted");
	config_free(&cfg);

	ASSERT_EQ_INT(load("api_url = http://api.vozagent.ai/v1\nallow_insecure_http = no\n"), -1);
	ASSERT_ERR_LINE(1, "api_url uses http://");

	ASSERT_EQ_INT(load("allow_insecure_http = maybe\n"), -1);
	ASSERT_ERR_LINE(1, "allow_insecure_http must be on or off (or yes/no, true/false, 1/0), got 'maybe'");
}

static void
test_token_file_mode_warning(void)
{
	char text[PATH_MAX + 64], want[PATH_MAX + 128];
	const char *tokpath = tmp_file("token", "tok-from-file\n");

	snprintf(text, sizeof text, "api_token_file = %s\n", tokpath);
	chmod(tokpath, 0600);
	ASSERT_EQ_INT(load(text), 0);
	ASSERT_TRUE(cfg.warnings == NULL);
	config_free(&cfg);

	chmod(tokpath, 0644);
	ASSERT_EQ_INT(load(text), 0);
	snprintf(want, sizeof want, "%s holds the API key and is readable by group/others "
	    "(mode 0644): chmod 600 it", tokpath);
	ASSERT_CONTAINS(cfg.warnings, want);
	config_free(&cfg);

	/* the key in the config file itself */
	ASSERT_EQ_INT(load("api_token = tok-config\n"), 0);
	chmod(conf_path, 0640);
	config_free(&cfg);
	ASSERT_EQ_INT(config_load(&cfg, conf_path, 0, err, sizeof err), 0);
	snprintf(want, sizeof want, "%s holds the API key and is readable by group/others "
	    "(mode 0640)", conf_path);
	ASSERT_CONTAINS(cfg.warnings, want);
	config_free(&cfg);
	/* the file still holds a key when the environment's wins */
	chmod(conf_path, 0604);
	setenv("VOZAGENT_API_TOKEN", "tok-env", 1);
	ASSERT_EQ_INT(config_load(&cfg, conf_path, 0, err, sizeof err), 0);
	ASSERT_EQ_STR(cfg.api_token, "tok-env");
	snprintf(want, sizeof want, "%s holds the API key and is readable by group/others "
	    "(mode 0604)", conf_path);
	ASSERT_CONTAINS(cfg.warnings, want);
	config_free(&cfg);
	chmod(conf_path, 0600);
	ASSERT_EQ_INT(config_load(&cfg, conf_path, 0, err, sizeof err), 0);
	ASSERT_TRUE(cfg.warnings == NULL);
	config_free(&cfg);

	/* a readable config file without the key is no concern */
	ASSERT_EQ_INT(load("source = s\n"), 0);
	chmod(conf_path, 0644);
	config_free(&cfg);
	ASSERT_EQ_INT(config_load(&cfg, conf_path, 0, err, sizeof err), 0);
	ASSERT_TRUE(cfg.warnings == NULL);
}

/* ---- config_changed_keys, config_key_is_reloadable ---- */

static void
test_changed_keys(void)
{
	struct config next;
	const char *names[8];

	ASSERT_EQ_INT(load("source = s\napi_token = k1\npoll_interval = 60s\n"), 0);
	ASSERT_EQ_INT(config_load(&next, conf_path, 0, err, sizeof err), 0);
	/* the same file twice: nothing differs */
	ASSERT_EQ_UINT(config_changed_keys(&cfg, &next, names, 8), 0);
	config_free(&next);

	ASSERT_EQ_INT(config_load(&next, tmp_file("d.conf", "source = t\napi_token = k2\n"
	    "poll_interval = 5s\nstatus = ended\nconcurrency = 2\nmax_body_size = 1M\n"
	    "log_level = debug\norder = newest_first\nmax_delete_fraction = 50%\n"),
	    0, err, sizeof err), 0);
	/* in the table's order; only the first 8 names, but every difference counted */
	ASSERT_EQ_UINT(config_changed_keys(&cfg, &next, names, 8), 9);
	ASSERT_EQ_STR(names[0], "api_token");
	ASSERT_EQ_STR(names[1], "source");
	ASSERT_EQ_STR(names[2], "poll_interval");
	ASSERT_EQ_STR(names[3], "concurrency");
	ASSERT_EQ_STR(names[4], "max_body_size");
	ASSERT_EQ_STR(names[5], "max_delete_fraction");
	ASSERT_EQ_STR(names[6], "order");
	ASSERT_EQ_STR(names[7], "status");
	/* a filter set where there was none differs; max 0 only counts */
	ASSERT_EQ_UINT(config_changed_keys(&next, &cfg, NULL, 0), 9);
	config_free(&next);
	config_free(&cfg);

	/* metrics_listen compares as written: another port is another listener */
	ASSERT_EQ_INT(load("api_token = k1\nmetrics_listen = 9464\n"), 0);
	ASSERT_EQ_INT(config_load(&next, tmp_file("m.conf", "api_token = k1\n"
	    "metrics_listen = 9465\n"), 0, err, sizeof err), 0);
	ASSERT_EQ_UINT(config_changed_keys(&cfg, &next, names, 8), 1);
	ASSERT_EQ_STR(names[0], "metrics_listen");
	config_free(&next);
}

static void
test_reloadable_keys(void)
{
	static const char *const fixed[] = {
		"source", "database_url", "api_url", "status", "assistant_id", "contact_id",
		"call_type", "metrics_listen",
	};
	static const char *const reloadable[] = {
		"api_token", "api_token_file", "poll_interval", "page_size", "concurrency",
		"batch_rows", "batch_time", "lookback", "http_timeout", "full_resync_interval",
		"history_retention", "max_body_size", "max_delete_fraction", "order", "log_level",
		"allow_insecure_http", "report_time_zone", "history", "change_retention",
	};

	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		ASSERT_FALSE(config_key_is_reloadable(fixed[i]));
	for (size_t i = 0; i < sizeof reloadable / sizeof reloadable[0]; i++)
		ASSERT_TRUE(config_key_is_reloadable(reloadable[i]));
}

/* metrics_listen: a port alone is loopback; numeric addresses only; every error names the line. */
static void
test_metrics_listen(void)
{
	ASSERT_EQ_INT(load(""), 0);
	ASSERT_EQ_INT(cfg.metrics_port, 0);
	config_free(&cfg);
	ASSERT_EQ_INT(load("metrics_listen = 9464\n"), 0);
	ASSERT_EQ_STR(cfg.metrics_host, "127.0.0.1");
	ASSERT_EQ_INT(cfg.metrics_port, 9464);
	config_free(&cfg);
	ASSERT_EQ_INT(load("metrics_listen = 0.0.0.0:1\n"), 0);
	ASSERT_EQ_STR(cfg.metrics_host, "0.0.0.0");
	ASSERT_EQ_INT(cfg.metrics_port, 1);
	config_free(&cfg);
	ASSERT_EQ_INT(load("metrics_listen = [::1]:65535\n"), 0);
	ASSERT_EQ_STR(cfg.metrics_host, "::1");
	ASSERT_EQ_INT(cfg.metrics_port, 65535);
	config_free(&cfg);
	ASSERT_EQ_INT(load("# bad ones, each on its line\n"
	    "metrics_listen = 127.0.0.1:65536\n"), -1);
	ASSERT_ERR_LINE(2, "metrics_listen = '127.0.0.1:65536': the port '65536' is not a number "
	    "from 1 to 65535");
	ASSERT_EQ_INT(load("metrics_listen = localhost:9464\n"), -1);
	ASSERT_ERR_LINE(1, "'localhost' is not a numeric IPv4 address (host names are not resolved");
	ASSERT_EQ_INT(load("metrics_listen = ::1:9464\n"), -1);
	ASSERT_ERR_LINE(1, "an IPv6 address goes in brackets");
	ASSERT_EQ_INT(load("metrics_listen = [::1]\n"), -1);
	ASSERT_ERR_LINE(1, "an IPv6 address is written [ADDR]:PORT");
	ASSERT_EQ_INT(load("metrics_listen = [127.0.0.1]:80\n"), -1);
	ASSERT_ERR_LINE(1, "not a numeric IPv6 address");
	ASSERT_EQ_INT(load("metrics_listen = 127.0.0.1:\n"), -1);
	ASSERT_ERR_LINE(1, "no port after the address");
	ASSERT_EQ_INT(load("metrics_listen = :9464\n"), -1);
	ASSERT_ERR_LINE(1, "no valid address before the port");
	ASSERT_EQ_INT(load("metrics_listen = 0\n"), -1);
	ASSERT_ERR_LINE(1, "the port '0' is not a number from 1 to 65535");
	ASSERT_EQ_INT(load("metrics_listen = 99999999999999999999\n"), -1);
	ASSERT_ERR_LINE(1, "is not a number from 1 to 65535");
	ASSERT_EQ_INT(load("metrics_listen = 1.2.3:80\n"), -1);
	ASSERT_ERR_LINE(1, "'1.2.3' is not a numeric IPv4 address");
	/* the environment names itself */
	setenv("VOZAGENT_METRICS_LISTEN", "x", 1);
	ASSERT_EQ_INT(load(""), -1);
	ASSERT_ERR_LINE(0, "VOZAGENT_METRICS_LISTEN: metrics_listen = 'x': the port 'x'");
	unsetenv("VOZAGENT_METRICS_LISTEN");
}

/* source names rows and labels metrics: Latin-1 or a control character would break both */
static void
test_source_text(void)
{
	ASSERT_EQ_INT(load("source = acm\xc3\xa9\n"), 0);
	ASSERT_EQ_STR(cfg.source, "acm\xc3\xa9");
	config_free(&cfg);
	ASSERT_EQ_INT(load("# Latin-1\nsource = acm\xe9\n"), -1);
	ASSERT_ERR_LINE(2, "source must be UTF-8 text without control characters");
	ASSERT_EQ_INT(load("source = a\x01b\n"), -1);
	ASSERT_ERR_LINE(1, "source must be UTF-8 text without control characters");
}

static const struct test_case tests[] = {
	TEST(test_metrics_listen),
	TEST(test_source_text),
	TEST(test_duration_valid),
	TEST(test_duration_invalid),
	TEST(test_fraction),
	TEST(test_load_empty_file_gives_defaults),
	TEST(test_load_comments_and_blanks_only),
	TEST(test_load_missing_file),
	TEST(test_load_every_key),
	TEST(test_load_other_enum_values),
	TEST(test_load_quoted_values),
	TEST(test_load_quoted_errors),
	TEST(test_load_inline_comments),
	TEST(test_load_comment_right_after_equals),
	TEST(test_load_crlf),
	TEST(test_load_no_trailing_newline),
	TEST(test_load_reports_all_errors),
	TEST(test_load_bad_duration_reported_once),
	TEST(test_load_page_size),
	TEST(test_load_poll_interval_minimum),
	TEST(test_load_history_retention),
	TEST(test_load_report_settings),
	TEST(test_load_database_url),
	TEST(test_load_long_line),
	TEST(test_load_small_error_buffer),
	TEST(test_env_overrides_file),
	TEST(test_env_errors_name_the_variable),
	TEST(test_env_is_cleaned_between_tests),
	TEST(test_token_from_file_key),
	TEST(test_token_file_unreadable),
	TEST(test_token_file_too_large),
	TEST(test_token_empty),
	TEST(test_token_with_space_or_newline),
	TEST(test_token_from_credentials_directory),
	TEST(test_token_env_wins),
	TEST(test_token_never_in_errors),
	TEST(test_http_refused_for_remote_hosts),
	TEST(test_http_allowed_for_loopback),
	TEST(test_http_allowed_when_insecure_is_set),
	TEST(test_token_file_mode_warning),
	TEST(test_changed_keys),
	TEST(test_reloadable_keys),
};

int
main(int argc, char **argv)
{
	int rc;

	test_data_dir = argc > 1 ? argv[1] : NULL;
	if (mkdtemp(tmpdir) == NULL) {
		perror(tmpdir);
		return 2;
	}
	rc = test_main(tests, sizeof tests / sizeof tests[0], setup, argv + 2,
	    argc > 2 ? argc - 2 : 0);
	config_free(&cfg);
	env_clean();
	for (int i = 0; i < ntmpfiles; i++) {
		unlink(tmpfiles[i]);
		free(tmpfiles[i]);
	}
	rmdir(tmpdir);
	return rc;
}
