/*
 * fuzz_config: libFuzzer target for config_load.
 *
 * The input is a config file. It is written to a memfd (no disk, no cleanup)
 * that config_load opens by its /proc/self/fd path, in an environment cleaned
 * of VOZAGENT_* and CREDENTIALS_DIRECTORY once at start. Inputs that name a
 * path under /dev, /proc or /sys are skipped. Invariants, each an abort()
 * when broken:
 *  - config_load answers 0 with an empty message and a config that passes its
 *    own validation, or -1 with a non-empty message and nothing left to free;
 *  - the message is NUL-terminated inside the buffer, and with a small buffer
 *    it is the same message cut short (the buffers are malloc'ed to their exact
 *    size, so ASan sees any write past them);
 *  - the API token never reaches the message or api_token_origin: every
 *    `api_token = T` with T of 8 or more characters is loaded again with T
 *    replaced by other characters, and no 8 bytes of T may appear in the
 *    output unless they still do then (as when T is also a key name or holds
 *    a word of a message).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

#define ERR_MAIN 8192           /* main.c's buffer */
#define MAX_TOKENS 8
#define TOKEN_MIN 8             /* tokens this long and leaks this long are checked */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int conf_fd = -1;
static char conf_path[64];
/* FUZZ_CONFIG_LAX=urls: skip the check an open bug breaks (README.md) */
static int lax_urls;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4), noreturn))
#endif
static void
fuzz_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_config: invariant broken at %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#define CHECK(cond, ...)                                               \
	do {                                                           \
		if (!(cond))                                           \
			fuzz_fail(__FILE__, __LINE__, __VA_ARGS__);    \
	} while (0)

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char *names[256];
	const char *lax;
	size_t n = 0;
	int fd;

	(void)argc;
	(void)argv;
	/* collect first: unsetenv changes environ under our feet */
	for (char **e = environ; *e != NULL && n < sizeof names / sizeof names[0]; e++) {
		if (strncmp(*e, "VOZAGENT_", 9) == 0) {
			const char *eq = strchr(*e, '=');
			names[n++] = strndup(*e, eq != NULL ? (size_t)(eq - *e) : strlen(*e));
		}
	}
	for (size_t i = 0; i < n; i++) {
		unsetenv(names[i]);
		free(names[i]);
	}
	unsetenv("CREDENTIALS_DIRECTORY");
	lax = getenv("FUZZ_CONFIG_LAX");
	lax_urls = lax != NULL && strstr(lax, "urls") != NULL;
	/* api_token_file = /dev/stdin must not wait for a terminal */
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0 && fd != STDIN_FILENO) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	conf_fd = memfd_create("fuzz_config.conf", MFD_CLOEXEC);
	if (conf_fd < 0) {
		perror("fuzz_config: memfd_create");
		exit(1);
	}
	snprintf(conf_path, sizeof conf_path, "/proc/self/fd/%d", conf_fd);
	return 0;
}

static void
conf_write(const uint8_t *data, size_t size)
{
	size_t off = 0;

	if (ftruncate(conf_fd, 0) < 0) {
		perror("fuzz_config: ftruncate");
		abort();
	}
	while (off < size) {
		ssize_t n = pwrite(conf_fd, data + off, size - off, (off_t)off);
		if (n <= 0) {
			perror("fuzz_config: pwrite");
			abort();
		}
		off += (size_t)n;
	}
}

/* ---- one load ---- */

struct load {
	int rc;
	char *err;            /* exactly errlen bytes */
	size_t errlen;
	size_t msglen;
	char *origin;         /* a copy of api_token_origin, or NULL */
};

static int
has_text(const char *s)
{
	return s != NULL && *s != '\0';
}

/* What config_load promises about a config it accepted. */
static void
check_config(const struct config *cfg)
{
	CHECK(cfg->path != NULL && strcmp(cfg->path, conf_path) == 0, "path is '%s'",
	    cfg->path != NULL ? cfg->path : "(null)");
	CHECK(cfg->api_url != NULL, "api_url is NULL");
	/* a scheme and something after it: "http://" alone is no URL */
	CHECK(((strncmp(cfg->api_url, "http://", 7) == 0 && cfg->api_url[7] != '\0') ||
	    (strncmp(cfg->api_url, "https://", 8) == 0 && cfg->api_url[8] != '\0')) ||
	    (lax_urls && strncmp(cfg->api_url, "http", 4) == 0), "api_url is '%s'",
	    cfg->api_url);
	CHECK(cfg->api_url[strlen(cfg->api_url) - 1] != '/', "api_url '%s' ends in a slash",
	    cfg->api_url);
	CHECK(cfg->database_url != NULL, "database_url is NULL");
	CHECK(has_text(cfg->source), "source is empty");
	CHECK(cfg->page_size >= 1 && cfg->page_size <= 100, "page_size is %d", cfg->page_size);
	CHECK(cfg->poll_interval_ms >= 1000, "poll_interval is %llu ms",
	    (unsigned long long)cfg->poll_interval_ms);
	CHECK(cfg->http_timeout_ms >= 1000, "http_timeout is %llu ms",
	    (unsigned long long)cfg->http_timeout_ms);
	CHECK(cfg->max_body_bytes >= 65536 && cfg->max_body_bytes <= (1ull << 30),
	    "max_body_size is %llu", (unsigned long long)cfg->max_body_bytes);
	CHECK(cfg->order == ORDER_AUTO || cfg->order == ORDER_OLDEST_FIRST ||
	    cfg->order == ORDER_NEWEST_FIRST, "order is %d", (int)cfg->order);
	CHECK(cfg->log_level >= LOG_LEVEL_DEBUG && cfg->log_level <= LOG_LEVEL_ERROR,
	    "log_level is %d", (int)cfg->log_level);
	CHECK(cfg->filter_status == NULL || *cfg->filter_status != '\0', "empty status filter");
	CHECK(cfg->filter_assistant_id == NULL || *cfg->filter_assistant_id != '\0',
	    "empty assistant_id filter");
	CHECK(cfg->filter_contact_id == NULL || *cfg->filter_contact_id != '\0',
	    "empty contact_id filter");
	CHECK(cfg->filter_call_type == NULL || strcmp(cfg->filter_call_type, "inbound") == 0 ||
	    strcmp(cfg->filter_call_type, "outbound") == 0, "call_type filter is '%s'",
	    cfg->filter_call_type);
	if (cfg->api_token != NULL) {
		CHECK(*cfg->api_token != '\0', "the token is empty");
		for (const unsigned char *p = (const unsigned char *)cfg->api_token; *p; p++)
			CHECK(*p > ' ' && *p != 0x7f, "the token holds byte 0x%02x", *p);
		CHECK(has_text(cfg->api_token_origin), "a token without an origin");
	}
}

static void
load_run(struct load *l, size_t errlen)
{
	struct config cfg;

	memset(l, 0, sizeof *l);
	l->errlen = errlen;
	l->err = malloc(errlen > 0 ? errlen : 1);
	if (l->err == NULL)
		abort();
	memset(l->err, 'X', errlen);
	l->rc = config_load(&cfg, conf_path, 0, l->err, errlen);
	CHECK(l->rc == 0 || l->rc == -1, "config_load answered %d", l->rc);
	if (errlen > 0) {
		l->msglen = strnlen(l->err, errlen);
		CHECK(l->msglen < errlen, "the message is not terminated inside its %zu bytes",
		    errlen);
	}
	if (l->rc == 0) {
		CHECK(errlen == 0 || l->msglen == 0, "config_load succeeded with a message: %s",
		    l->err);
		check_config(&cfg);
		if (cfg.api_token_origin != NULL)
			l->origin = strdup(cfg.api_token_origin);
		config_free(&cfg);
		CHECK(cfg.api_token == NULL && cfg.api_url == NULL && cfg.path == NULL,
		    "config_free left pointers behind");
	} else {
		CHECK(errlen < 2 || l->msglen > 0, "config_load failed without a message");
		/* config_load freed what it had: a caller's config_free must be harmless */
		CHECK(cfg.path == NULL && cfg.api_url == NULL && cfg.api_token == NULL &&
		    cfg.api_token_origin == NULL && cfg.database_url == NULL && cfg.source == NULL,
		    "config_load failed and left memory in the config");
		config_free(&cfg);
	}
}

static void
load_free(struct load *l)
{
	free(l->err);
	free(l->origin);
}

/* ---- tokens ---- */

struct token {
	size_t off, len;
};

static int
token_char(unsigned char c)
{
	return c > ' ' && c != 0x7f && c != '"' && c != '#' && c != '\\';
}

/* Finds `api_token = T` and `api_token = "T"` lines the way config.c reads them. */
static size_t
tokens_find(const uint8_t *d, size_t size, struct token *t, size_t max)
{
	size_t nt = 0, ls = 0;

	while (ls < size && nt < max) {
		const uint8_t *nl = memchr(d + ls, '\n', size - ls);
		size_t le = nl != NULL ? (size_t)(nl - d) : size, i = ls, start;
		const uint8_t *nul = memchr(d + ls, '\0', le - ls);
		int quoted = 0;

		if (nul != NULL) /* fgets + strlen: the line ends at a NUL */
			le = (size_t)(nul - d);
		while (i < le && isspace(d[i]))
			i++;
		if (le - i > 9 && memcmp(d + i, "api_token", 9) == 0 &&
		    (isspace(d[i + 9]) || d[i + 9] == '=')) {
			i += 9;
			while (i < le && isspace(d[i]))
				i++;
			if (i < le && d[i] == '=') {
				i++;
				while (i < le && isspace(d[i]))
					i++;
				if (i < le && d[i] == '"') {
					quoted = 1;
					i++;
				}
				start = i;
				while (i < le && token_char(d[i]))
					i++;
				if (i - start >= TOKEN_MIN && (quoted ? i < le && d[i] == '"' :
				    i == le || isspace(d[i]))) {
					t[nt].off = start;
					t[nt].len = i - start;
					nt++;
				}
			}
		}
		ls = (nl != NULL ? (size_t)(nl - d) : size) + 1;
	}
	return nt;
}

static int
contains(const char *hay, size_t haylen, const uint8_t *needle, size_t len)
{
	return hay != NULL && memmem(hay, haylen, needle, len) != NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct load big, small, other;
	struct token tok[MAX_TOKENS];
	size_t nt, small_len;

	/*
	 * api_token_file reads whatever path the input names: keep away from
	 * files that block (/proc/kmsg, a terminal, a FIFO under /dev).
	 */
	if (memmem(data, size, "/dev/", 5) != NULL || memmem(data, size, "/proc/", 6) != NULL ||
	    memmem(data, size, "/sys/", 5) != NULL)
		return 0;
	conf_write(data, size);
	load_run(&big, ERR_MAIN);

	/* a small buffer, sized by the input: the same answer, the message cut short */
	small_len = size > 0 ? 1 + data[size / 2] % 160 : 1;
	load_run(&small, small_len);
	CHECK(small.rc == big.rc, "answer %d with %zu bytes for the message, %d with %d",
	    small.rc, small_len, big.rc, ERR_MAIN);
	CHECK(small.msglen == (big.msglen < small_len - 1 ? big.msglen : small_len - 1) &&
	    memcmp(small.err, big.err, small.msglen) == 0,
	    "with %zu bytes the message is '%s', not the start of '%s'", small_len, small.err,
	    big.err);
	load_free(&small);

	nt = tokens_find(data, size, tok, MAX_TOKENS);
	if (nt > 0) {
		uint8_t *copy = malloc(size);
		if (copy == NULL)
			abort();
		memcpy(copy, data, size);
		for (size_t i = 0; i < nt; i++)
			for (size_t k = 0; k < tok[i].len; k++)
				copy[tok[i].off + k] = data[tok[i].off + k] == 'Z' ? 'Q' : 'Z';
		conf_write(copy, size);
		load_run(&other, ERR_MAIN);
		CHECK(other.rc == big.rc, "the token's value changed the answer: %d, then %d",
		    big.rc, other.rc);
		/* every 8 bytes of the token, so a part of it counts as a leak too */
		for (size_t i = 0; i < nt; i++) {
			for (size_t k = 0; k + TOKEN_MIN <= tok[i].len; k++) {
				const uint8_t *t = data + tok[i].off + k;
				CHECK(!contains(big.err, big.msglen, t, TOKEN_MIN) ||
				    contains(other.err, other.msglen, t, TOKEN_MIN),
				    "the API token '%.*s' leaks into the message: %s",
				    (int)tok[i].len, data + tok[i].off, big.err);
				CHECK(!contains(big.origin, big.origin ? strlen(big.origin) : 0, t,
				    TOKEN_MIN) || contains(other.origin,
				    other.origin ? strlen(other.origin) : 0, t, TOKEN_MIN),
				    "the API token '%.*s' leaks into its origin: %s",
				    (int)tok[i].len, data + tok[i].off, big.origin);
			}
		}
		load_free(&other);
		free(copy);
	}
	load_free(&big);
	return 0;
}
