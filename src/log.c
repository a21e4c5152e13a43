/* log: leveled messages on stderr (journald-aware). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utf8.h"

static enum log_level log_min = LOG_LEVEL_INFO;
static int log_journal; /* stderr is the journal: it stamps time, we prefix <prio> */

void
log_init(enum log_level min)
{
	log_min = min;
	log_journal = getenv("JOURNAL_STREAM") != NULL;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static void
log_vwrite(enum log_level lvl, const char *fmt, va_list ap, const char *suffix)
{
	/* syslog priorities: debug 7, info 6, warning 4, err 3 */
	static const int prio[] = { 7, 6, 4, 3 };
	static const char *tag[] = { "debug", "info", "warning", "error" };
	char line[2048];
	int n = 0;

	if (lvl < log_min)
		return;
	if (log_journal) {
		n = snprintf(line, sizeof line, "<%d>", prio[lvl]);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%SZ ", &tm);
		n += snprintf(line + n, sizeof line - (size_t)n, "%s: ", tag[lvl]);
	}
	if (n < (int)sizeof line)
		n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	if (suffix != NULL && n < (int)sizeof line)
		n += snprintf(line + n, sizeof line - (size_t)n, ": %s", suffix);
	if (n >= (int)sizeof line) /* truncated: still end the line */
		n = (int)sizeof line - 1;
	line[n] = '\0';
	/* values from outside must not break the line or forge another one */
	log_clean(line);
	n = (int)strlen(line);
	line[n++] = '\n';
	fwrite(line, 1, (size_t)n, stderr);
}

#define LOG_FN(name, lvl, with_errno)                                     \
	void name(const char *fmt, ...)                                   \
	{                                                                 \
		int saved = errno;                                        \
		va_list ap;                                               \
		va_start(ap, fmt);                                        \
		log_vwrite(lvl, fmt, ap, with_errno ? strerror(saved) : NULL); \
		va_end(ap);                                               \
		errno = saved;                                            \
	}

LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_errx, LOG_LEVEL_ERROR, 0)

void
log_clean(char *s)
{
	/* '?' for bytes that are not UTF-8, in place: callers pass fixed buffers */
	utf8_repair(s);
	for (unsigned char *p = (unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = ' ';
}
