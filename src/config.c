/* config: the key = value file, VOZAGENT_* overrides, validation. */
#define _DEFAULT_SOURCE  /* explicit_bzero */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <libpq-fe.h>

#include "utf8.h"

#define CONFIG_LINE_MAX 4096
#define CONFIG_TOKEN_MAX 4096
#define CONFIG_DURATION_MAX_MS (100ull * 366 * 86400 * 1000)

enum key_type {
	KEY_STRING, KEY_DURATION, KEY_INT, KEY_ORDER, KEY_LOG_LEVEL, KEY_URL, KEY_SIZE,
	KEY_FRACTION,
	KEY_TOKEN, /* api_token and api_token_file: resolved together by token_resolve() */
	KEY_RETENTION, /* a duration, or "forever" (0) */
	KEY_BOOL,
	KEY_LISTEN,    /* metrics_listen: "", PORT, IPV4:PORT or [IPV6]:PORT */
};

struct key_def {
	const char *name;
	enum key_type type;
	size_t offset;
	const char *defval;  /* NULL = unset */
	long min, max;       /* KEY_INT: the range allowed */
};

#define OFF(field) offsetof(struct config, field)
static const struct key_def keys[] = {
	{ "api_url", KEY_URL, OFF(api_url), "https://api.vozagent.ai/v1", 0, 0 },
	{ "allow_insecure_http", KEY_BOOL, OFF(allow_insecure_http), "no", 0, 0 },
	{ "api_token", KEY_TOKEN, 0, NULL, 0, 0 },
	{ "api_token_file", KEY_TOKEN, 0, NULL, 0, 0 },
	{ "database_url", KEY_STRING, OFF(database_url), "", 0, 0 },
	{ "source", KEY_STRING, OFF(source), "default", 0, 0 },
	{ "poll_interval", KEY_DURATION, OFF(poll_interval_ms), "60s", 0, 0 },
	{ "page_size", KEY_INT, OFF(page_size), "100", 1, 100 },
	{ "concurrency", KEY_INT, OFF(concurrency), "8", 1, 32 },
	{ "batch_rows", KEY_INT, OFF(batch_rows), "2000", 1, 50000 },
	{ "batch_time", KEY_DURATION, OFF(batch_time_ms), "1s", 0, 0 },
	{ "lookback", KEY_DURATION, OFF(lookback_ms), "2h", 0, 0 },
	{ "http_timeout", KEY_DURATION, OFF(http_timeout_ms), "30s", 0, 0 },
	{ "full_resync_interval", KEY_DURATION, OFF(full_resync_ms), "24h", 0, 0 },
	{ "history_retention", KEY_RETENTION, OFF(history_retention_ms), "90d", 0, 0 },
	{ "report_time_zone", KEY_STRING, OFF(report_time_zone), "UTC", 0, 0 },
	{ "history", KEY_BOOL, OFF(history), "on", 0, 0 },
	{ "change_retention", KEY_RETENTION, OFF(change_retention_ms), "forever", 0, 0 },
	{ "max_body_size", KEY_SIZE, OFF(max_body_bytes), "64M", 0, 0 },
	{ "max_delete_fraction", KEY_FRACTION, OFF(max_delete_fraction), "10%", 0, 0 },
	{ "order", KEY_ORDER, OFF(order), "auto", 0, 0 },
	{ "status", KEY_STRING, OFF(filter_status), NULL, 0, 0 },
	{ "assistant_id", KEY_STRING, OFF(filter_assistant_id), NULL, 0, 0 },
	{ "contact_id", KEY_STRING, OFF(filter_contact_id), NULL, 0, 0 },
	{ "call_type", KEY_STRING, OFF(filter_call_type), NULL, 0, 0 },
	{ "log_level", KEY_LOG_LEVEL, OFF(log_level), "info", 0, 0 },
	{ "metrics_listen", KEY_LISTEN, OFF(metrics_listen), "", 0, 0 },
};
#define NKEYS (sizeof keys / sizeof keys[0])

/* Where each key's value came from: "FILE:LINE" or "VOZAGENT_X". */
struct origin {
	char where[CONFIG_LINE_MAX / 4];
	int line;            /* file line, 0 = env or default */
	char *value;         /* owned raw text */
};

struct loader {
	struct origin set[NKEYS];
	int nerr_key[NKEYS];   /* errors reported for each key */
	char *err;
	size_t errlen;
	size_t errused;
	int nerr;
	int cur_key;           /* key being applied, or -1 */
	int oom;               /* out of memory: the values are incomplete */
	char warn[4096];       /* warnings, one per line */
	size_t warnused;
};

static void
loader_error(struct loader *ld, const char *fmt, ...)
{
	va_list ap;
	int n;

	ld->nerr++;
	if (ld->cur_key >= 0)
		ld->nerr_key[ld->cur_key]++;
	if (ld->errused + 1 >= ld->errlen)
		return;
	if (ld->errused > 0)
		ld->err[ld->errused++] = '\n';
	va_start(ap, fmt);
	n = vsnprintf(ld->err + ld->errused, ld->errlen - ld->errused, fmt, ap);
	va_end(ap);
	if (n > 0)
		ld->errused += (size_t)n;
	if (ld->errused >= ld->errlen)
		ld->errused = ld->errlen - 1;
}

static void
loader_warn(struct loader *ld, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ld->warnused + 1 >= sizeof ld->warn)
		return;
	if (ld->warnused > 0)
		ld->warn[ld->warnused++] = '\n';
	va_start(ap, fmt);
	n = vsnprintf(ld->warn + ld->warnused, sizeof ld->warn - ld->warnused, fmt, ap);
	va_end(ap);
	if (n > 0)
		ld->warnused += (size_t)n;
	if (ld->warnused >= sizeof ld->warn)
		ld->warnused = sizeof ld->warn - 1;
}

/* Frees a copy of a value that may be the API key, so no copy lingers in the heap. */
static void
wipe_free(char *s)
{
	if (s != NULL)
		explicit_bzero(s, strlen(s));
	free(s);
}

static const struct key_def *
key_find(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strlen(keys[i].name) == len && strncmp(keys[i].name, name, len) == 0)
			return &keys[i];
	return NULL;
}

/* A copy of s[0..n), or NULL (an error the load reports) when memory is out. */
static char *
loader_strndup(struct loader *ld, const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p == NULL) {
		if (!ld->oom)
			loader_error(ld, "out of memory while reading the configuration");
		ld->oom = 1;
		return NULL;
	}
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

struct unit {
	const char *suffix;
	uint64_t mult;
};

/* A whole number with one of the units' suffixes, times its multiplier, at most max. */
static int
parse_with_unit(const char *s, const struct unit *units, size_t nunits, uint64_t max,
    uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	for (size_t i = 0; i < nunits; i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			if (v > max / units[i].mult)
				return -1;
			*out = v * units[i].mult;
			return 0;
		}
	}
	return -1;
}

int
config_parse_duration(const char *s, uint64_t *ms)
{
	static const struct unit units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 },
	};
	/* a century is enough, and keeps every sum in microseconds in range */
	return parse_with_unit(s, units, sizeof units / sizeof units[0], CONFIG_DURATION_MAX_MS, ms);
}

int
config_parse_size(const char *s, uint64_t *bytes)
{
	static const struct unit units[] = {
		{ "", 1 }, { "k", 1024 }, { "K", 1024 }, { "M", 1024 * 1024 },
		{ "G", 1024 * 1024 * 1024 },
	};
	return parse_with_unit(s, units, sizeof units / sizeof units[0], UINT64_MAX, bytes);
}

int
config_parse_fraction(const char *s, double *fraction)
{
	char *end;
	double v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || v != v)
		return -1;
	if (*end == '%') {
		v /= 100;
		end++;
	}
	if (*end != '\0' || v < 0 || v > 1)
		return -1;
	*fraction = v;
	return 0;
}

int
config_has_filters(const struct config *cfg)
{
	return cfg->filter_status != NULL || cfg->filter_assistant_id != NULL ||
	    cfg->filter_contact_id != NULL || cfg->filter_call_type != NULL;
}

static bool
config_is_text(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return utf8_is_valid((const unsigned char *)s, strlen(s));
}

static bool
str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

static bool
key_differs(const struct key_def *k, const struct config *a, const struct config *b)
{
	const void *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;

	switch (k->type) {
	case KEY_TOKEN:
		/* both keys resolve into one value: report it once, as api_token */
		return strcmp(k->name, "api_token") == 0 && str_differs(a->api_token, b->api_token);
	case KEY_STRING:
	case KEY_URL:
	case KEY_LISTEN:     /* as written: its parsed host and port follow from it */
		return str_differs(*(char *const *)pa, *(char *const *)pb);
	case KEY_DURATION:
	case KEY_SIZE:
	case KEY_RETENTION:
		return *(const uint64_t *)pa != *(const uint64_t *)pb;
	case KEY_INT:
	case KEY_BOOL:
		return *(const int *)pa != *(const int *)pb;
	case KEY_FRACTION:
		return *(const double *)pa != *(const double *)pb;
	case KEY_ORDER:
		return *(const enum config_order *)pa != *(const enum config_order *)pb;
	case KEY_LOG_LEVEL:
		return *(const enum log_level *)pa != *(const enum log_level *)pb;
	}
	return true;
}

size_t
config_changed_keys(const struct config *cur, const struct config *next, const char **names,
    size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < NKEYS; i++) {
		if (!key_differs(&keys[i], cur, next))
			continue;
		if (n < max)
			names[n] = keys[i].name;
		n++;
	}
	return n;
}

bool
config_key_is_reloadable(const char *key)
{
	/* another value is another mirror (source, filters) or another endpoint */
	static const char *const fixed[] = {
		"source", "database_url", "api_url", "status", "assistant_id", "contact_id",
		"call_type", "metrics_listen",
	};

	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (strcmp(key, fixed[i]) == 0)
			return false;
	return true;
}

/* Store one raw value for a key, remembering where it was set. */
static void
loader_set(struct loader *ld, const struct key_def *k, const char *value, size_t len,
    const char *where, int line)
{
	struct origin *o = &ld->set[k - keys];

	if (line > 0 && o->line > 0) {
		loader_error(ld, "%s: key '%s' is set twice (first at line %d)", where, k->name,
		    o->line);
		return;
	}
	wipe_free(o->value);
	o->value = loader_strndup(ld, value, len);
	o->line = line;
	snprintf(o->where, sizeof o->where, "%s", where);
}

static int
key_looks_like_name(const char *s, size_t n)
{
	if (n == 0 || n > 32)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || s[i] == '_' ||
		    (i > 0 && isdigit((unsigned char)s[i]))))
			return 0;
	return 1;
}

/* Parses `key = value` (value optionally "quoted"), `# comment`, blank. */
static void
loader_line(struct loader *ld, const char *path, int lineno, char *s)
{
	char where[sizeof ((struct origin *)0)->where];
	char *key, *eq, *val, *end;
	const struct key_def *k;

	snprintf(where, sizeof where, "%s:%d", path, lineno);
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0' || *s == '#')
		return;
	eq = strchr(s, '=');
	if (eq == NULL) {
		loader_error(ld, "%s: expected 'key = value'", where);
		return;
	}
	key = s;
	end = eq;
	while (end > key && isspace((unsigned char)end[-1]))
		end--;
	k = key_find(key, (size_t)(end - key));
	if (k == NULL) {
		/* a pasted secret is no key name: show only what looks like one */
		if (key_looks_like_name(key, (size_t)(end - key)))
			loader_error(ld, "%s: unknown key '%.*s'", where, (int)(end - key), key);
		else
			loader_error(ld, "%s: expected 'key = value' (the text before '=' is not "
			    "a key name, and is not shown in case it is a secret)", where);
		return;
	}
	val = eq + 1;
	while (isspace((unsigned char)*val))
		val++;
	if (*val == '"') {
		/* quoted: \" and \\ escapes; a # inside is part of the value */
		char *out = ++val, *in = val;
		while (*in != '\0' && *in != '"') {
			if (*in == '\\' && (in[1] == '"' || in[1] == '\\'))
				in++;
			*out++ = *in++;
		}
		if (*in != '"') {
			loader_error(ld, "%s: unterminated quoted value for '%s'", where, k->name);
			return;
		}
		end = out;
		in++;
		while (isspace((unsigned char)*in))
			in++;
		if (*in != '\0' && *in != '#') {
			loader_error(ld, "%s: unexpected text after the quoted value of '%s'", where,
			    k->name);
			return;
		}
	} else {
		/* a comment starts at a # preceded by white space */
		for (end = val; *end != '\0'; end++)
			if (*end == '#' && (end == val || isspace((unsigned char)end[-1])))
				break;
		while (end > val && isspace((unsigned char)end[-1]))
			end--;
	}
	loader_set(ld, k, val, (size_t)(end - val), where, lineno);
}

/* Like ssh and libpq's .pgpass: a key others can read is no secret any more. */
static void
token_check_mode(struct loader *ld, const char *path, mode_t mode)
{
	if ((mode & (S_IRGRP | S_IROTH)) != 0)
		loader_warn(ld, "%s holds the API key and is readable by group/others (mode %04o): "
		    "chmod 600 it", path, (unsigned)(mode & 07777));
}

static int
loader_file(struct loader *ld, const char *path)
{
	char line[CONFIG_LINE_MAX], iobuf[BUFSIZ];
	int lineno = 0;
	FILE *f = fopen(path, "r");
	struct stat st;

	if (f == NULL) {
		loader_error(ld, "%s: cannot read config file: %s", path, strerror(errno));
		return -1;
	}
	/* stdio's own buffer would keep a copy of the file, key included, once freed */
	setvbuf(f, iobuf, _IOFBF, sizeof iobuf);
	while (fgets(line, sizeof line, f) != NULL) {
		size_t n = strlen(line);
		lineno++;
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		else if (!feof(f)) {
			int c;
			loader_error(ld, "%s:%d: line longer than %d bytes", path, lineno,
			    CONFIG_LINE_MAX - 2);
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			continue;
		}
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		loader_line(ld, path, lineno, line);
	}
	if (ferror(f))
		loader_error(ld, "%s: read error: %s", path, strerror(errno));
	/* the file holds a key, whether or not the environment overrides it */
	if (ld->set[key_find("api_token", 9) - keys].line > 0 && fstat(fileno(f), &st) == 0)
		token_check_mode(ld, path, st.st_mode);
	fclose(f);
	/* the last line read may have been the key */
	explicit_bzero(line, sizeof line);
	explicit_bzero(iobuf, sizeof iobuf);
	return 0;
}

static void
loader_env(struct loader *ld)
{
	for (size_t i = 0; i < NKEYS; i++) {
		char name[64] = "VOZAGENT_";
		size_t n = strlen(name);
		const char *v;

		for (const char *p = keys[i].name; *p != '\0' && n < sizeof name - 1; p++)
			name[n++] = (char)toupper((unsigned char)*p);
		name[n] = '\0';
		v = getenv(name);
		if (v == NULL)
			continue;
		/* the environment wins over the file, so forget the file's line */
		ld->set[i].line = 0;
		loader_set(ld, &keys[i], v, strlen(v), name, 0);
		if (strcmp(keys[i].name, "api_token") == 0) {
			/* else any process of the same user reads it in /proc/PID/environ */
			explicit_bzero((char *)v, strlen(v));
			unsetenv(name);
		}
	}
}

/*
 * Reads a token file: one line, trailing white space dropped. check_mode: warn
 * when others can read it (systemd's credentials are the service's alone).
 */
static char *
token_read_file(struct loader *ld, const char *path, const char *where, int check_mode)
{
	char buf[CONFIG_TOKEN_MAX + 2];
	char *tok;
	size_t n;
	struct stat st;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		loader_error(ld, "%s: cannot read api_token_file '%s': %s", where, path,
		    strerror(errno));
		return NULL;
	}
	/* unbuffered: fread fills buf directly, and no stdio buffer keeps a copy */
	setvbuf(f, NULL, _IONBF, 0);
	if (check_mode && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode))
		token_check_mode(ld, path, st.st_mode);
	n = fread(buf, 1, sizeof buf - 1, f);
	if (ferror(f)) {
		loader_error(ld, "%s: cannot read api_token_file '%s': %s", where, path,
		    strerror(errno));
		fclose(f);
		return NULL;
	}
	fclose(f);
	if (n > CONFIG_TOKEN_MAX) {
		loader_error(ld, "%s: api token file '%s' is larger than %d bytes", where, path,
		    CONFIG_TOKEN_MAX);
		explicit_bzero(buf, sizeof buf);
		return NULL;
	}
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	tok = loader_strndup(ld, buf, n);
	explicit_bzero(buf, sizeof buf);
	return tok;
}

/* A token becomes an HTTP header: refuse anything that could break it. */
static void
token_check(struct loader *ld, const struct config *cfg)
{
	const unsigned char *p = (const unsigned char *)cfg->api_token;

	if (p == NULL)
		return;
	if (*p == '\0') {
		loader_error(ld, "%s: the API token is empty", cfg->api_token_origin);
		return;
	}
	for (; *p != '\0'; p++) {
		if (*p <= ' ' || *p == 0x7f) {
			loader_error(ld, "%s: the API token contains white space or a control "
			    "character", cfg->api_token_origin);
			return;
		}
	}
}

static void
token_resolve(struct loader *ld, struct config *cfg)
{
	const struct origin *tok = &ld->set[key_find("api_token", 9) - keys];
	const struct origin *file = &ld->set[key_find("api_token_file", 14) - keys];
	const char *credir = getenv("CREDENTIALS_DIRECTORY");
	char where[CONFIG_LINE_MAX];

	/* an environment value beats a file value, whichever of the two keys it is */
	if (tok->value != NULL && (tok->line == 0 || file->value == NULL || file->line > 0)) {
		cfg->api_token = loader_strndup(ld, tok->value, strlen(tok->value));
		snprintf(where, sizeof where, "api_token (%s)", tok->where);
	} else if (file->value != NULL) {
		snprintf(where, sizeof where, "api_token_file '%.1024s' (%s)", file->value, file->where);
		cfg->api_token = token_read_file(ld, file->value, file->where, 1);
	} else if (credir != NULL && *credir != '\0') {
		char path[PATH_MAX];
		if ((size_t)snprintf(path, sizeof path, "%s/api_token", credir) >= sizeof path) {
			loader_error(ld, "$CREDENTIALS_DIRECTORY: '%.200s...' is too long for a path",
			    credir);
			return;
		}
		/* other credentials may be passed without this one */
		if (access(path, F_OK) != 0)
			return;
		snprintf(where, sizeof where, "systemd credential %.1024s", path);
		cfg->api_token = token_read_file(ld, path, "$CREDENTIALS_DIRECTORY", 0);
	} else {
		return;
	}
	cfg->api_token_origin = loader_strndup(ld, where, strlen(where));
	if (cfg->api_token_origin == NULL)
		return;
	token_check(ld, cfg);
}

/*
 * metrics_listen: "" (off), PORT (loopback), IPV4:PORT or [IPV6]:PORT.
 * Numeric addresses only: a host name would be resolved once at start and
 * could mean another interface tomorrow. 0, or -1 with why[] saying what is wrong.
 */
int
config_parse_listen(const char *s, char *host, size_t hostlen, int *port, char *why,
    size_t whylen)
{
	const char *p, *colon;
	unsigned char addr[sizeof(struct in6_addr)];
	char h[INET6_ADDRSTRLEN + 1];
	size_t hl;
	long n = 0;

	*port = 0;
	if (*s == '\0') {
		snprintf(host, hostlen, "%s", "");
		return 0;
	}
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':') {
			snprintf(why, whylen, "an IPv6 address is written [ADDR]:PORT, e.g. [::1]:9464");
			return -1;
		}
		hl = (size_t)(close - s - 1);
		colon = close + 1;
		p = s + 1;
	} else if ((colon = strrchr(s, ':')) != NULL) {
		if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
			snprintf(why, whylen, "an IPv6 address goes in brackets: [ADDR]:PORT, e.g. "
			    "[::1]:9464");
			return -1;
		}
		hl = (size_t)(colon - s);
		p = s;
	} else {
		colon = s - 1;
		p = "127.0.0.1";
		hl = strlen(p);
	}
	/* the port: 1 to 65535, digits only */
	if (colon[1] == '\0') {
		snprintf(why, whylen, "no port after the address");
		return -1;
	}
	for (const char *d = colon + 1; *d != '\0'; d++) {
		if (!isdigit((unsigned char)*d) || n > 65535) {
			snprintf(why, whylen, "the port '%.40s' is not a number from 1 to 65535",
			    colon + 1);
			return -1;
		}
		n = n * 10 + (*d - '0');
	}
	if (n < 1 || n > 65535) {
		snprintf(why, whylen, "the port '%.40s' is not a number from 1 to 65535", colon + 1);
		return -1;
	}
	if (hl == 0 || hl >= sizeof h) {
		snprintf(why, whylen, "no valid address before the port (numeric addresses only, "
		    "e.g. 127.0.0.1:9464 or [::1]:9464)");
		return -1;
	}
	memcpy(h, p, hl);
	h[hl] = '\0';
	if (inet_pton(*s == '[' ? AF_INET6 : AF_INET, h, addr) != 1) {
		snprintf(why, whylen, "'%.60s' is not a numeric %s address (host names are not "
		    "resolved: write e.g. 127.0.0.1:9464, 0.0.0.0:9464 or [::1]:9464)", h,
		    *s == '[' ? "IPv6" : "IPv4");
		return -1;
	}
	if (hl >= hostlen) {
		snprintf(why, whylen, "address too long");
		return -1;
	}
	memcpy(host, h, hl + 1);
	*port = (int)n;
	return 0;
}

static void
loader_apply(struct loader *ld, struct config *cfg, size_t i)
{
	const struct key_def *k = &keys[i];
	const char *v = ld->set[i].value;
	const char *where = ld->set[i].where;
	void *dst = (char *)cfg + k->offset;

	if (v == NULL)
		return;
	ld->cur_key = (int)i;
	switch (k->type) {
	case KEY_TOKEN:
		break;
	case KEY_STRING:
		if (*v == '\0' && k->defval == NULL) {
			/* an empty filter means "no filter", as when unset */
			return;
		}
		free(*(char **)dst);
		*(char **)dst = loader_strndup(ld, v, strlen(v));
		break;
	case KEY_URL: {
		size_t n = strlen(v);
		const char *host = strstr(v, "://");
		if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
			loader_error(ld, "%s: %s must start with http:// or https://, got '%s'",
			    where, k->name, v);
			return;
		}
		host += 3;
		if (*host == '\0' || *host == '/' || *host == '?' || *host == '#' ||
		    strpbrk(v, " \t\r\n") != NULL) {
			loader_error(ld, "%s: %s needs a host name and no spaces, got '%s'", where,
			    k->name, v);
			return;
		}
		while (n > 0 && v[n - 1] == '/')
			n--;
		free(*(char **)dst);
		*(char **)dst = loader_strndup(ld, v, n);
		break;
	}
	case KEY_RETENTION:
		if (strcmp(v, "forever") == 0)
			*(uint64_t *)dst = 0;
		else if (config_parse_duration(v, (uint64_t *)dst) < 0)
			loader_error(ld, "%s: %s: '%s' is not a duration (use e.g. 90d, 2160h) or "
			    "forever", where, k->name, v);
		break;
	case KEY_BOOL:
		if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "on") == 0 ||
		    strcmp(v, "1") == 0)
			*(int *)dst = 1;
		else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 ||
		    strcmp(v, "off") == 0 || strcmp(v, "0") == 0)
			*(int *)dst = 0;
		else
			loader_error(ld, "%s: %s must be on or off (or yes/no, true/false, 1/0), got '%s'",
			    where, k->name, v);
		break;
	case KEY_DURATION:
		if (config_parse_duration(v, (uint64_t *)dst) < 0)
			loader_error(ld, "%s: %s: '%s' is not a duration (use e.g. 90, 90s, 5m, 2h)",
			    where, k->name, v);
		break;
	case KEY_SIZE:
		if (config_parse_size(v, (uint64_t *)dst) < 0)
			loader_error(ld, "%s: %s: '%s' is not a size (use e.g. 65536, 512k, 64M, 1G)",
			    where, k->name, v);
		break;
	case KEY_FRACTION:
		if (config_parse_fraction(v, (double *)dst) < 0)
			loader_error(ld, "%s: %s: '%s' is not a fraction from 0 to 1 (use e.g. 10%% or "
			    "0.1; 100%% allows any)", where, k->name, v);
		break;
	case KEY_INT: {
		char *end;
		long n;
		errno = 0;
		n = strtol(v, &end, 10);
		if (errno != 0 || end == v || *end != '\0' || n < k->min || n > k->max)
			loader_error(ld, "%s: %s must be a whole number from %ld to %ld, got '%s'",
			    where, k->name, k->min, k->max, v);
		else
			*(int *)dst = (int)n;
		break;
	}
	case KEY_ORDER:
		if (strcmp(v, "auto") == 0)
			*(enum config_order *)dst = ORDER_AUTO;
		else if (strcmp(v, "oldest_first") == 0)
			*(enum config_order *)dst = ORDER_OLDEST_FIRST;
		else if (strcmp(v, "newest_first") == 0)
			*(enum config_order *)dst = ORDER_NEWEST_FIRST;
		else
			loader_error(ld, "%s: %s must be auto, oldest_first or newest_first, got '%s'",
			    where, k->name, v);
		break;
	case KEY_LISTEN: {
		char why[256];
		if (config_parse_listen(v, cfg->metrics_host, sizeof cfg->metrics_host,
		    &cfg->metrics_port, why, sizeof why) < 0) {
			loader_error(ld, "%s: %s = '%s': %s", where, k->name, v, why);
			break;
		}
		free(*(char **)dst);
		*(char **)dst = loader_strndup(ld, v, strlen(v));
		break;
	}
	case KEY_LOG_LEVEL:
		if (log_level_parse(v, (enum log_level *)dst) < 0)
			loader_error(ld, "%s: %s must be debug, info, warn or error, got '%s'",
			    where, k->name, v);
		break;
	}
}

/*
 * libpq quotes the offending part of a connection string in its message,
 * and that part may be a password: keep the message, drop what it quotes.
 */
static void
redact_quoted(const char *msg, char *out, size_t outlen)
{
	size_t o = 0;
	int quoted = 0;

	for (; *msg != '\0' && o + 4 < outlen; msg++) {
		if (*msg == '"') {
			if (!quoted) {
				memcpy(out + o, "\"...", 4);
				o += 4;
			} else {
				out[o++] = '"';
			}
			quoted = !quoted;
		} else if (!quoted) {
			out[o++] = *msg == '\n' ? ' ' : *msg;
		}
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

static int
loader_bad(const struct loader *ld, const char *name)
{
	return ld->nerr_key[key_find(name, strlen(name)) - keys] > 0;
}

/*
 * Is the host of an http:// URL a loopback address, so that the key never
 * leaves the machine? Anything unusual (a zone id, a short IPv4 form) is not.
 */
static int
url_host_is_loopback(const char *url, char *host, size_t hostlen)
{
	const char *h = url + strlen("http://"), *end, *p;
	unsigned char addr[sizeof(struct in6_addr)];

	end = h + strcspn(h, "/?#");
	/* user:password@ comes before the host */
	for (p = h; p < end; p++)
		if (*p == '@')
			h = p + 1;
	if (*h == '[') {
		const char *close = memchr(h, ']', (size_t)(end - h));
		if (close == NULL)
			close = end;
		h++;
		end = close;
	} else if ((p = memchr(h, ':', (size_t)(end - h))) != NULL) {
		end = p;
	}
	snprintf(host, hostlen, "%.*s", (int)(end - h), h);
	if ((size_t)(end - h) >= hostlen)
		return 0;
	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, addr) == 1)
		return addr[0] == 127;
	if (inet_pton(AF_INET6, host, addr) == 1)
		return IN6_IS_ADDR_LOOPBACK((struct in6_addr *)addr) ||
		    (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)addr) && addr[12] == 127);
	return 0;
}

/* The Bearer key must not cross a network in clear unless the operator says so. */
static void
config_check_url(struct loader *ld, const struct config *cfg)
{
	char host[256];

	if (cfg->api_url == NULL || strncmp(cfg->api_url, "http://", 7) != 0 ||
	    url_host_is_loopback(cfg->api_url, host, sizeof host))
		return;
	if (!cfg->allow_insecure_http) {
		loader_error(ld, "%s: api_url uses http:// to '%s', which is not a loopback address: "
		    "the API key would travel unencrypted; use https://, or set allow_insecure_http "
		    "= yes if the network to that host is trusted",
		    ld->set[key_find("api_url", 7) - keys].where, host);
		return;
	}
	loader_warn(ld, "api_url uses http:// to '%s' (allow_insecure_http = yes, %s): the API "
	    "key travels unencrypted", host,
	    ld->set[key_find("allow_insecure_http", 19) - keys].where);
}

/*
 * PostgreSQL alone knows which zones exist (the pass and `check` ask it);
 * here only what cannot be a zone name: IANA names are short, of these
 * characters, relative (the server would read "/x" or "../x" as a path).
 */
static void
config_check_time_zone(struct loader *ld, const struct config *cfg)
{
	const char *tz = cfg->report_time_zone, *where;
	size_t n = strlen(tz);

	if (loader_bad(ld, "report_time_zone"))
		return;
	where = ld->set[key_find("report_time_zone", 16) - keys].where;
	if (n == 0) {
		loader_error(ld, "%s: report_time_zone must not be empty (use an IANA name such as "
		    "UTC or Europe/Madrid)", where);
		return;
	}
	if (n > 64 || strspn(tz, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789/_+-") != n || tz[0] == '/' || strstr(tz, "..") != NULL)
		loader_error(ld, "%s: report_time_zone '%.80s%s' is not a time zone name (an IANA "
		    "name such as UTC or Europe/Madrid: at most 64 letters, digits and / _ + -, "
		    "not starting with /)", where, tz, n > 80 ? "..." : "");
}

static void
config_check(struct loader *ld, struct config *cfg)
{
	char *pqerr = NULL;
	PQconninfoOption *opts;

	config_check_url(ld, cfg);

	/* a value that did not parse was reported already: check ranges of the rest */
	if (cfg->poll_interval_ms < 1000 && !loader_bad(ld, "poll_interval"))
		loader_error(ld, "%s: poll_interval must be at least 1s",
		    ld->set[key_find("poll_interval", 13) - keys].where);
	if (cfg->http_timeout_ms < 1000 && !loader_bad(ld, "http_timeout"))
		loader_error(ld, "%s: http_timeout must be at least 1s",
		    ld->set[key_find("http_timeout", 12) - keys].where);
	/* a page of 100 small calls is ~50 kB; below 64 kB is surely a typo */
	if ((cfg->max_body_bytes < 65536 || cfg->max_body_bytes > (1ull << 30)) &&
	    !loader_bad(ld, "max_body_size"))
		loader_error(ld, "%s: max_body_size must be from 64k to 1G",
		    ld->set[key_find("max_body_size", 13) - keys].where);
	/* a plain number is seconds: "history_retention = 90" is surely not meant */
	if (cfg->history_retention_ms != 0 && cfg->history_retention_ms < 3600000 &&
	    !loader_bad(ld, "history_retention"))
		loader_error(ld, "%s: history_retention must be at least 1h, or 0 or forever to "
		    "keep all history", ld->set[key_find("history_retention", 17) - keys].where);
	if (cfg->change_retention_ms != 0 && cfg->change_retention_ms < 3600000 &&
	    !loader_bad(ld, "change_retention"))
		loader_error(ld, "%s: change_retention must be at least 1h, or 0 or forever to "
		    "keep every change", ld->set[key_find("change_retention", 16) - keys].where);
	config_check_time_zone(ld, cfg);
	if (*cfg->source == '\0')
		loader_error(ld, "%s: source must not be empty",
		    ld->set[key_find("source", 6) - keys].where);
	/* it names rows in a UTF-8 database and labels every metric: text, one line */
	else if (!config_is_text(cfg->source))
		loader_error(ld, "%s: source must be UTF-8 text without control characters",
		    ld->set[key_find("source", 6) - keys].where);
	if (cfg->filter_call_type != NULL && strcmp(cfg->filter_call_type, "inbound") != 0 &&
	    strcmp(cfg->filter_call_type, "outbound") != 0)
		loader_error(ld, "%s: call_type must be inbound or outbound, got '%s'",
		    ld->set[key_find("call_type", 9) - keys].where, cfg->filter_call_type);
	/* validate the connection string now, without connecting */
	opts = PQconninfoParse(cfg->database_url, &pqerr);
	if (opts == NULL) {
		char why[256];
		redact_quoted(pqerr != NULL ? pqerr : "out of memory", why, sizeof why);
		loader_error(ld, "%s: database_url is not a valid libpq connection string: %s",
		    ld->set[key_find("database_url", 12) - keys].where, why);
		PQfreemem(pqerr);
	} else {
		PQconninfoFree(opts);
	}
}

int
config_load(struct config *cfg, const char *path, int need_token, char *err, size_t errlen)
{
	struct loader ld;

	memset(cfg, 0, sizeof *cfg);
	memset(&ld, 0, sizeof ld);
	ld.err = err;
	ld.errlen = errlen;
	if (errlen > 0)
		err[0] = '\0';

	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].defval != NULL)
			loader_set(&ld, &keys[i], keys[i].defval, strlen(keys[i].defval),
			    "default", 0);
	if (path == NULL && access(CONFIG_DEFAULT_PATH, F_OK) == 0)
		path = CONFIG_DEFAULT_PATH;
	if (path != NULL) {
		cfg->path = loader_strndup(&ld, path, strlen(path));
		loader_file(&ld, path);
	}
	loader_env(&ld);
	ld.cur_key = -1;
	for (size_t i = 0; i < NKEYS; i++)
		loader_apply(&ld, cfg, i);
	ld.cur_key = -1;
	token_resolve(&ld, cfg);
	if (need_token && cfg->api_token == NULL)
		loader_error(&ld, "%s: no API key: set api_token or api_token_file, or "
		    "VOZAGENT_API_TOKEN, or provide the systemd credential 'api_token'",
		    path != NULL ? path : "(no config file)");
	/* after running out of memory, values are missing: nothing more to check */
	if (!ld.oom)
		config_check(&ld, cfg);
	for (size_t i = 0; i < NKEYS; i++)
		wipe_free(ld.set[i].value);
	if (ld.warnused > 0)
		cfg->warnings = loader_strndup(&ld, ld.warn, ld.warnused);
	if (ld.nerr > 0) {
		config_free(cfg);
		return -1;
	}
	return 0;
}

void
config_free(struct config *cfg)
{
	char **strings[] = {
		&cfg->path, &cfg->api_url, &cfg->api_token, &cfg->api_token_origin,
		&cfg->database_url, &cfg->source, &cfg->filter_status,
		&cfg->filter_assistant_id, &cfg->filter_contact_id, &cfg->filter_call_type,
		&cfg->warnings, &cfg->metrics_listen, &cfg->report_time_zone,
	};
	for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
		wipe_free(*strings[i]);
		*strings[i] = NULL;
	}
}
