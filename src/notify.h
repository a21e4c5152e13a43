/* notify: tells systemd how the service is doing (sd_notify protocol). */
#ifndef VOZAGENT_NOTIFY_H
#define VOZAGENT_NOTIFY_H

#include <stdint.h>
#include <sys/types.h>

/*
 * Sends one notification ("READY=1", "STATUS=...", "STOPPING=1") to
 * $NOTIFY_SOCKET. Without that variable (not under systemd, or Type= is not
 * notify) it does nothing. Never fails the caller: a lost notification is
 * only logged at debug level.
 */
void notify_send(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/*
 * The systemd watchdog's period in microseconds ($WATCHDOG_USEC), or 0 when
 * there is none for this process ($WATCHDOG_PID names another one, or a
 * value does not parse).
 */
uint64_t notify_watchdog_usec(void);
/* The same decision from the two values (NULL = unset) and this process's pid. */
uint64_t notify_parse_watchdog(const char *usec, const char *pid, pid_t self);

#endif
