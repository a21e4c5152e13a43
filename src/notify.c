/* notify: tells systemd how the service is doing (sd_notify protocol). */
#include "notify.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "utf8.h"

/*
 * The protocol is one datagram to a unix socket, so it is written here
 * rather than linking libsystemd for it. "@name" is the abstract namespace.
 */
void
notify_send(const char *fmt, ...)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	socklen_t salen;
	char msg[512];
	size_t plen;
	va_list ap;
	int fd, n;

	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return;
	plen = strlen(path);
	if (plen >= sizeof sa.sun_path)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof msg)
		n = sizeof msg - 1;
	/* STATUS may quote the API, and a %.Ns may cut a character: systemd wants UTF-8 */
	utf8_repair(msg);
	n = (int)strlen(msg);
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, plen);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_debug("sd_notify: socket: %s", strerror(errno));
		return;
	}
	if (sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
		log_debug("sd_notify to %s: %s", path, strerror(errno));
	close(fd);
}

/* A whole decimal number, nothing around it: 0 or -1. */
static int
parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || !isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

uint64_t
notify_parse_watchdog(const char *usec, const char *pid, pid_t self)
{
	uint64_t period, owner;

	if (parse_u64(usec, &period) < 0)
		return 0;
	/* the variables are inherited: a child must not ping for its parent (sd_watchdog_enabled) */
	if (pid != NULL && (parse_u64(pid, &owner) < 0 || owner != (uint64_t)self))
		return 0;
	return period;
}

uint64_t
notify_watchdog_usec(void)
{
	return notify_parse_watchdog(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"), getpid());
}
