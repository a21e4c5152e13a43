/*
 * failpoints: an LD_PRELOAD module that makes one library call fail on
 * demand, to reach error paths a healthy machine never takes.
 *   E2E_FAIL_UV_SIGNAL_INIT=N  uv_signal_init() fails (UV_ENOMEM) after N calls
 *                              (uv_loop_init makes one)
 *   E2E_FAIL_STRDUP=TEXT       strdup(TEXT) fails (ENOMEM); other strings copy
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

int
uv_signal_init(uv_loop_t *loop, uv_signal_t *handle)
{
	static int (*real)(uv_loop_t *, uv_signal_t *);
	static int calls;
	const char *after = getenv("E2E_FAIL_UV_SIGNAL_INIT");

	if (after != NULL && calls++ >= atoi(after))
		return UV_ENOMEM;
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "uv_signal_init");
	return real(loop, handle);
}

char *
strdup(const char *s)
{
	static char *(*real)(const char *);
	const char *fail = getenv("E2E_FAIL_STRDUP");

	if (fail != NULL && strcmp(s, fail) == 0) {
		errno = ENOMEM;
		return NULL;
	}
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "strdup");
	return real(s);
}
