/* notify: tells systemd how the service is doing (sd_notify protocol). */
#ifndef VOZAGENT_NOTIFY_H
#define VOZAGENT_NOTIFY_H

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

#endif
