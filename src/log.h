/* log: leveled messages on stderr (journald-aware). */
#ifndef VOZAGENT_LOG_H
#define VOZAGENT_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

void log_init(enum log_level min);
int log_level_parse(const char *s, enum log_level *out);

#if defined(__GNUC__)
#define LOG_PRINTF __attribute__((format(printf, 1, 2)))
#else
#define LOG_PRINTF
#endif

void log_debug(const char *fmt, ...) LOG_PRINTF;
void log_info(const char *fmt, ...) LOG_PRINTF;
/* log_warn appends strerror(errno); log_warnx does not. */
void log_warn(const char *fmt, ...) LOG_PRINTF;
void log_warnx(const char *fmt, ...) LOG_PRINTF;
void log_errx(const char *fmt, ...) LOG_PRINTF;

/*
 * Makes text from outside (an API error body, a server message) fit for one
 * log line and a text column: control characters become spaces, bytes that
 * are not strict UTF-8 (utf8.h: overlongs, surrogates, past U+10FFFF) '?',
 * and a character cut by the end is dropped.
 */
void log_clean(char *s);

#endif
